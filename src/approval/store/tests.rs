//! Tests for the approval store, each on a fresh temporary data directory and
//! with explicit times (the store never reads the clock).

use chrono::{Duration, TimeZone};
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::approval::model::Verdict;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// Where a test's store lives: a data directory, or (while
/// [`the_store_suite_runs_on_postgresql`] runs a test) a fresh PostgreSQL
/// database.
enum Place {
    Dir(TempDir),
    Postgres(String),
}

thread_local! {
    /// The database the running test uses instead of SQLite.
    static POSTGRES: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn open() -> (Place, ApprovalStore) {
    if let Some(url) = POSTGRES.with(|p| p.borrow().clone()) {
        let store = ApprovalStore::connect(&url).unwrap();
        return (Place::Postgres(url), store);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ApprovalStore::open(&dir.path().join("data/nested")).unwrap();
    (Place::Dir(dir), store)
}

/// Another handle on the same store (another process, another replica).
fn another(place: &Place) -> ApprovalStore {
    match place {
        Place::Dir(dir) => ApprovalStore::open(&dir.path().join("data/nested")).unwrap(),
        Place::Postgres(url) => ApprovalStore::connect(url).unwrap(),
    }
}

/// Request `id` for `digest` by alice, anyone may answer, quorum 1, expiring
/// after 600 s, grant valid for 60 s.
fn request(id: &str, digest: &str) -> NewApproval {
    NewApproval {
        id: id.into(),
        digest: digest.into(),
        principal: "alice".into(),
        server: "filesystem".into(),
        tool: "write_file".into(),
        request: json!({"tool": "write_file", "arguments": {"path": "/srv/x", "content": "***"}}),
        reasons: vec!["writes outside /tmp".into()],
        approvers: vec![],
        quorum: 1,
        created_at: t0(),
        expires_at: at(600),
        grant_ttl: Duration::seconds(60),
    }
}

fn with(mut new: NewApproval, f: impl FnOnce(&mut NewApproval)) -> NewApproval {
    f(&mut new);
    new
}

fn approve(by: &str) -> NewAnswer {
    NewAnswer {
        approver: by.into(),
        decision: Verdict::Approve,
        reason: "looks fine".into(),
        channel: "cli".into(),
        proof: Some(placeholder_proof()),
    }
}

/// The store only requires that a proof is present; verifying it is the
/// firewall's job (approval::proof), tested there and end to end.
fn placeholder_proof() -> crate::approval::Proof {
    crate::approval::Proof::SshKey {
        fingerprint: "SHA256:test".into(),
        signature: "test".into(),
        timestamp: 0,
    }
}

fn deny(by: &str) -> NewAnswer {
    NewAnswer {
        decision: Verdict::Deny,
        reason: "not today".into(),
        ..approve(by)
    }
}

fn rejection(r: Result<AnswerOutcome, StoreError>) -> AnswerRejection {
    match r {
        Err(StoreError::AnswerRejected(why)) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn status(store: &ApprovalStore, id: &str) -> Status {
    store.get(id).unwrap().unwrap().status
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ApprovalStore>();
}

#[test]
fn create_get_list_round_trip() {
    let (_dir, store) = open();
    let new = with(request("a1", "d1"), |n| {
        n.approvers = vec!["bob".into(), "carol".into()];
        n.quorum = 2;
    });
    let created = store.create(&new).unwrap();
    assert_eq!(created.id, "a1");
    assert_eq!(created.digest, "d1");
    assert_eq!(created.principal, "alice");
    assert_eq!(
        (created.server.as_str(), created.tool.as_str()),
        ("filesystem", "write_file")
    );
    assert_eq!(created.request, new.request);
    assert_eq!(created.reasons, new.reasons);
    assert_eq!(created.approvers, new.approvers);
    assert_eq!(created.quorum, 2);
    assert_eq!(created.status, Status::Pending);
    assert_eq!((created.created_at, created.expires_at), (t0(), at(600)));
    assert_eq!(
        (
            created.decided_at,
            created.grant_expires_at,
            created.status_reason.as_ref()
        ),
        (None, None, None)
    );
    assert!(created.answers.is_empty());
    assert_eq!(store.get("a1").unwrap(), Some(created.clone()));
    assert_eq!(store.get("nope").unwrap(), None);

    store
        .create(&with(request("a2", "d2"), |n| n.created_at = at(5)))
        .unwrap();
    store
        .create(&with(request("a3", "d3"), |n| n.created_at = at(10)))
        .unwrap();
    store.answer("a3", &deny("bob"), at(20)).unwrap();
    let ids = |s| {
        store
            .list(s)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(None), ["a3", "a2", "a1"]);
    assert_eq!(ids(Some(Status::Pending)), ["a2", "a1"]);
    assert_eq!(ids(Some(Status::Denied)), ["a3"]);
    assert!(ids(Some(Status::Used)).is_empty());
    assert_eq!(
        store.list(Some(Status::Denied)).unwrap()[0].answers.len(),
        1
    );
}

#[test]
fn duplicate_id_is_refused() {
    let (_dir, store) = open();
    store.create(&request("a1", "d1")).unwrap();
    assert!(matches!(
        store.create(&request("a1", "d2")),
        Err(StoreError::Sql(_) | StoreError::Postgres(_))
    ));
}

#[test]
fn invalid_requests_are_refused() {
    let (_dir, store) = open();
    let cases = [
        with(request("", "d"), |_| {}),
        with(request("x", ""), |_| {}),
        with(request("x", "d"), |n| n.principal = " ".into()),
        with(request("x", "d"), |n| n.quorum = 0),
        with(request("x", "d"), |n| n.expires_at = n.created_at),
        with(request("x", "d"), |n| n.grant_ttl = Duration::zero()),
        with(request("x", "d"), |n| {
            n.approvers = vec!["alice".into(), "bob".into(), "BOB".into()];
            n.quorum = 2;
        }),
    ];
    for new in cases {
        assert!(
            matches!(store.create(&new), Err(StoreError::InvalidApproval(_))),
            "{new:?}"
        );
    }
    assert!(store.list(None).unwrap().is_empty());
}

#[test]
fn pending_for_digest_ignores_expired_and_decided() {
    let (_dir, store) = open();
    store.create(&request("old", "d")).unwrap();
    assert_eq!(
        store.pending_for_digest("d", at(1)).unwrap().unwrap().id,
        "old"
    );
    assert_eq!(store.pending_for_digest("other", at(1)).unwrap(), None);
    // At and after expires_at it no longer counts, even before expire() ran.
    assert_eq!(store.pending_for_digest("d", at(600)).unwrap(), None);

    store
        .create(&with(request("newer", "d"), |n| n.created_at = at(5)))
        .unwrap();
    assert_eq!(
        store.pending_for_digest("d", at(6)).unwrap().unwrap().id,
        "newer"
    );
    store.answer("newer", &deny("bob"), at(7)).unwrap();
    assert_eq!(
        store.pending_for_digest("d", at(8)).unwrap().unwrap().id,
        "old"
    );
    store.answer("old", &approve("bob"), at(9)).unwrap();
    assert_eq!(store.pending_for_digest("d", at(10)).unwrap(), None);
}

#[test]
fn pending_requests_are_counted_per_principal_up_to_the_limit() {
    let (_dir, store) = open();
    let by = |id: &str, who: &str, secs: i64| {
        with(request(id, id), |n| {
            n.principal = who.into();
            n.created_at = at(secs);
        })
    };
    store.create_within(&by("a1", "alice", 0), 2).unwrap();
    store.create_within(&by("a2", "alice", 1), 2).unwrap();
    match store.create_within(&by("a3", "alice", 2), 2) {
        Err(StoreError::TooManyPending {
            principal,
            pending: 2,
            limit: 2,
        }) => assert_eq!(principal, "alice"),
        other => panic!("{other:?}"),
    }
    assert!(store.get("a3").unwrap().is_none(), "nothing recorded");
    // Another principal has its own count.
    store.create_within(&by("b1", "bob", 2), 2).unwrap();
    // A decided request no longer counts; nor does an expired one.
    store.answer("a1", &deny("bob"), at(3)).unwrap();
    store.create_within(&by("a3", "alice", 4), 2).unwrap();
    let late = with(by("a4", "alice", 600), |n| n.expires_at = at(1200));
    store.create_within(&late, 2).unwrap();
}

#[test]
fn the_pending_count_reads_an_index_not_every_request() {
    // Every held call counts its principal's pending requests: with the
    // table scanned, a store of 100,000 answered requests made each held
    // call read all of them.
    // A database of schema version 5 gains the index when opened.
    let dir = tempfile::tempdir().unwrap();
    drop(ApprovalStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    conn.execute_batch("DROP INDEX approvals_by_principal; PRAGMA user_version = 5;")
        .unwrap();
    drop(conn);
    let store = ApprovalStore::open(dir.path()).unwrap();
    let Backend::Sqlite(file) = &store.backend else {
        panic!("a SQLite store")
    };
    let conn = file.lock();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::PENDING_OF_PRINCIPAL
        ))
        .unwrap()
        .query_map(["alice", "pending", "0"], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|step| step.contains("approvals_by_principal")),
        "{plan:?}"
    );
}

#[test]
fn every_answer_rejection() {
    let (_dir, store) = open();
    store
        .create(&with(request("a", "d"), |n| {
            n.approvers = vec!["bob".into(), "carol".into(), "alice".into()]
        }))
        .unwrap();
    let reject = |answer: NewAnswer, when| rejection(store.answer("a", &answer, at(when)));

    assert!(
        matches!(store.answer("missing", &approve("bob"), at(1)), Err(StoreError::NotFound(id)) if id == "missing")
    );
    assert_eq!(reject(approve(""), 1), AnswerRejection::MissingApprover);
    assert_eq!(reject(approve("  "), 1), AnswerRejection::MissingApprover);
    assert_eq!(
        reject(
            NewAnswer {
                reason: "".into(),
                ..approve("bob")
            },
            1
        ),
        AnswerRejection::MissingReason
    );
    assert_eq!(
        reject(
            NewAnswer {
                reason: " \n".into(),
                ..deny("bob")
            },
            1
        ),
        AnswerRejection::MissingReason
    );
    assert_eq!(reject(approve("alice"), 1), AnswerRejection::SelfApproval);
    assert_eq!(reject(approve(" Alice "), 1), AnswerRejection::SelfApproval);
    // The spellings that once released alice's own call.
    for spelling in ["alice\u{200b}", "alice\u{00ad}", "ａｌｉｃｅ"] {
        assert_eq!(
            reject(approve(spelling), 1),
            AnswerRejection::SelfApproval,
            "{spelling:?}"
        );
    }
    assert!(matches!(
        reject(approve("\u{0430}lice"), 1),
        AnswerRejection::BadIdentity(_)
    ));
    assert!(matches!(
        reject(approve("b\u{043e}b"), 1),
        AnswerRejection::BadIdentity(_)
    ));
    assert_eq!(
        reject(
            NewAnswer {
                proof: None,
                ..approve("bob")
            },
            1
        ),
        AnswerRejection::Unsigned
    );
    assert_eq!(
        reject(approve("mallory"), 1),
        AnswerRejection::NotAnApprover
    );
    assert_eq!(reject(approve("bob"), 600), AnswerRejection::Expired);
    assert!(
        store.get("a").unwrap().unwrap().answers.is_empty(),
        "rejected answers leave no trace"
    );

    store.answer("a", &approve("bob"), at(2)).unwrap();
    assert_eq!(
        reject(approve("carol"), 3),
        AnswerRejection::NotPending(Status::Approved)
    );
}

#[test]
fn the_same_approver_cannot_answer_twice() {
    let (_dir, store) = open();
    store
        .create(&with(request("a", "d"), |n| n.quorum = 2))
        .unwrap();
    let first = store.answer("a", &approve("bob"), at(1)).unwrap();
    assert_eq!(
        first,
        AnswerOutcome {
            status: Status::Pending,
            approvals: 1,
            quorum: 2
        }
    );
    assert_eq!(
        rejection(store.answer("a", &approve("bob"), at(2))),
        AnswerRejection::AlreadyAnswered
    );
    assert_eq!(
        rejection(store.answer("a", &approve("BOB "), at(2))),
        AnswerRejection::AlreadyAnswered
    );
    assert_eq!(
        rejection(store.answer("a", &deny("bob"), at(2))),
        AnswerRejection::AlreadyAnswered
    );
    assert_eq!(status(&store, "a"), Status::Pending);
    assert_eq!(store.consume_grant("d", at(3)).unwrap(), None);
}

#[test]
fn quorum_two_needs_two_distinct_approvers_before_a_grant_exists() {
    let (_dir, store) = open();
    store
        .create(&with(request("a", "d"), |n| n.quorum = 2))
        .unwrap();
    store.answer("a", &approve("bob"), at(1)).unwrap();
    assert_eq!(
        store.consume_grant("d", at(2)).unwrap(),
        None,
        "one approval is not a quorum"
    );

    let done = store.answer("a", &approve("carol"), at(3)).unwrap();
    assert_eq!(
        done,
        AnswerOutcome {
            status: Status::Approved,
            approvals: 2,
            quorum: 2
        }
    );
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(record.status, Status::Approved);
    assert_eq!(record.decided_at, Some(at(3)));
    assert_eq!(record.grant_expires_at, Some(at(63)));
    assert_eq!(
        record.status_reason.as_deref(),
        Some("approved by bob, carol")
    );
    let who: Vec<_> = record
        .answers
        .iter()
        .map(|a| (a.approver.as_str(), a.decision, a.at))
        .collect();
    assert_eq!(
        who,
        [
            ("bob", Verdict::Approve, at(1)),
            ("carol", Verdict::Approve, at(3))
        ]
    );

    let grant = store.consume_grant("d", at(4)).unwrap().unwrap();
    assert_eq!((grant.approval_id(), grant.digest()), ("a", "d"));
    assert_eq!(grant.approvers(), ["bob", "carol"]);
}

#[test]
fn a_deny_after_one_approval_decides_denied_without_a_grant() {
    let (_dir, store) = open();
    store
        .create(&with(request("a", "d"), |n| n.quorum = 2))
        .unwrap();
    store.answer("a", &approve("bob"), at(1)).unwrap();
    let out = store.answer("a", &deny("carol"), at(2)).unwrap();
    assert_eq!(
        out,
        AnswerOutcome {
            status: Status::Denied,
            approvals: 1,
            quorum: 2
        }
    );
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(
        record.status_reason.as_deref(),
        Some("denied by carol: not today")
    );
    assert_eq!(record.grant_expires_at, None);
    assert_eq!(store.consume_grant("d", at(3)).unwrap(), None);
    assert_eq!(
        rejection(store.answer("a", &approve("dave"), at(4))),
        AnswerRejection::NotPending(Status::Denied)
    );
}

#[test]
fn consume_grant_is_single_use_digest_bound_and_expires() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    store.answer("a", &approve("bob"), at(10)).unwrap(); // grant valid until at(70)
    assert_eq!(store.consume_grant("other-digest", at(11)).unwrap(), None);
    assert_eq!(
        store.consume_grant("d", at(70)).unwrap(),
        None,
        "expired at its deadline"
    );
    let grant = store.consume_grant("d", at(69)).unwrap().unwrap();
    assert_eq!(grant.approval_id(), "a");
    assert_eq!(status(&store, "a"), Status::Used);
    assert_eq!(
        store.consume_grant("d", at(69)).unwrap(),
        None,
        "single use"
    );
}

#[test]
fn a_revoked_grant_is_never_consumed_and_a_used_one_cannot_be_revoked() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    store.answer("a", &approve("bob"), at(10)).unwrap();
    assert!(
        store
            .revoke_grant("a", "carol", "wrong host", at(11))
            .unwrap()
    );
    assert_eq!(status(&store, "a"), Status::Revoked);
    assert_eq!(store.consume_grant("d", at(12)).unwrap(), None);
    assert!(!store.revoke_grant("a", "carol", "again", at(13)).unwrap());
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(
        record.status_reason.as_deref(),
        Some("revoked by carol: wrong host")
    );

    store.create(&request("b", "e")).unwrap();
    store.answer("b", &approve("bob"), at(10)).unwrap();
    store.consume_grant("e", at(11)).unwrap().unwrap();
    assert!(
        !store
            .revoke_grant("b", "carol", "too late", at(12))
            .unwrap()
    );
    assert_eq!(status(&store, "b"), Status::Used);
}

#[test]
fn a_grant_scoped_to_identical_calls_is_reused_until_its_window_ends() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    let mut answer = approve("bob");
    answer.proof = Some(crate::approval::Proof::Console {
        issuer: "http://idp".into(),
        subject: "bob".into(),
        email: None,
        timestamp: 0,
        scope_seconds: 30,
        tag: "00".into(),
    });
    store.answer("a", &answer, at(10)).unwrap(); // reusable until at(40)
    for t in [11, 20, 39] {
        let grant = store.consume_grant("d", at(t)).unwrap().unwrap();
        assert_eq!(grant.reusable_until(), Some(at(40)));
        assert_eq!(status(&store, "a"), Status::Approved);
    }
    assert_eq!(
        store.consume_grant("d", at(40)).unwrap(),
        None,
        "window over"
    );
    // Revoking ends the window early.
    store.create(&request("b", "e")).unwrap();
    store.answer("b", &answer, at(10)).unwrap();
    store.consume_grant("e", at(11)).unwrap().unwrap();
    assert!(store.revoke_grant("b", "carol", "enough", at(12)).unwrap());
    assert_eq!(store.consume_grant("e", at(13)).unwrap(), None);
}

#[test]
fn withdraw_transitions_and_blocks_answers() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    assert!(store.withdraw("a", "client cancelled", at(5)).unwrap());
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(
        (record.status, record.decided_at),
        (Status::Withdrawn, Some(at(5)))
    );
    assert_eq!(record.status_reason.as_deref(), Some("client cancelled"));
    assert!(!store.withdraw("a", "again", at(6)).unwrap());
    assert!(!store.withdraw("missing", "x", at(6)).unwrap());
    assert_eq!(
        rejection(store.answer("a", &approve("bob"), at(7))),
        AnswerRejection::NotPending(Status::Withdrawn)
    );
}

#[test]
fn expire_only_after_the_deadline_and_blocks_answers() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    assert!(!store.expire("a", at(599)).unwrap());
    assert_eq!(status(&store, "a"), Status::Pending);
    assert!(store.expire("a", at(600)).unwrap());
    assert_eq!(status(&store, "a"), Status::Expired);
    assert!(!store.expire("a", at(700)).unwrap());
    assert_eq!(
        rejection(store.answer("a", &approve("bob"), at(1))),
        AnswerRejection::NotPending(Status::Expired)
    );
}

#[test]
fn fail_denies_with_a_system_reason_and_blocks_answers() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    assert!(
        store
            .fail("a", "webhook unreachable after 5 attempts", at(3))
            .unwrap()
    );
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(record.status, Status::Denied);
    assert_eq!(
        record.status_reason.as_deref(),
        Some("webhook unreachable after 5 attempts")
    );
    assert!(!store.fail("a", "again", at(4)).unwrap());
    assert_eq!(
        rejection(store.answer("a", &approve("bob"), at(5))),
        AnswerRejection::NotPending(Status::Denied)
    );
}

#[test]
fn final_states_are_not_reopened() {
    let (_dir, store) = open();
    store.create(&request("a", "d")).unwrap();
    store.answer("a", &approve("bob"), at(1)).unwrap();
    assert!(!store.withdraw("a", "x", at(2)).unwrap());
    assert!(!store.fail("a", "x", at(2)).unwrap());
    assert!(!store.expire("a", at(900)).unwrap());
    assert_eq!(status(&store, "a"), Status::Approved);
}

#[test]
fn reopening_keeps_everything() {
    let (place, first) = open();
    let before = {
        let store = first;
        store
            .create(&with(request("a", "d"), |n| n.quorum = 2))
            .unwrap();
        store.answer("a", &approve("bob"), at(1)).unwrap();
        store.create(&request("b", "e")).unwrap();
        store.answer("b", &approve("bob"), at(2)).unwrap();
        assert!(store.remember_webhook_id("msg_1", at(2)).unwrap());
        store.list(None).unwrap()
    };
    let store = another(&place);
    if let Place::Dir(dir) = &place {
        assert_eq!(
            store.location(),
            dir.path()
                .join("data/nested")
                .join(DB_FILE_NAME)
                .display()
                .to_string()
        );
    }
    assert_eq!(store.list(None).unwrap(), before);
    // Mid-quorum state survived: the second approval completes it.
    assert_eq!(
        store.answer("a", &approve("carol"), at(3)).unwrap().status,
        Status::Approved
    );
    assert_eq!(
        store
            .consume_grant("e", at(4))
            .unwrap()
            .unwrap()
            .approval_id(),
        "b"
    );
    assert!(!store.remember_webhook_id("msg_1", at(5)).unwrap());
}

#[test]
fn two_handles_on_one_directory_see_each_others_writes() {
    let (place, firewall) = open();
    let cli = another(&place);
    firewall.create(&request("a", "d")).unwrap();
    assert_eq!(cli.list(Some(Status::Pending)).unwrap().len(), 1);
    cli.answer("a", &approve("bob"), at(1)).unwrap();
    assert_eq!(firewall.get("a").unwrap().unwrap().status, Status::Approved);
    assert!(firewall.consume_grant("d", at(2)).unwrap().is_some());
    assert_eq!(
        cli.consume_grant("d", at(2)).unwrap(),
        None,
        "single use across processes"
    );
    assert_eq!(cli.get("a").unwrap().unwrap().status, Status::Used);
}

#[test]
fn concurrent_consumers_get_exactly_one_grant() {
    let (place, setup) = open();
    setup.create(&request("a", "d")).unwrap();
    setup.answer("a", &approve("bob"), at(1)).unwrap();
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let store = another(&place);
                    usize::from(store.consume_grant("d", at(2)).unwrap().is_some())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
}

#[test]
fn remember_webhook_id_refuses_replays_and_prunes_old_ids() {
    let (_dir, store) = open();
    assert!(store.remember_webhook_id("msg_1", at(0)).unwrap());
    assert!(!store.remember_webhook_id("msg_1", at(1)).unwrap());
    assert!(store.remember_webhook_id("msg_2", at(1)).unwrap());
    // Still remembered at exactly 2 × tolerance (600 s) after first sight...
    assert!(!store.remember_webhook_id("msg_1", at(600)).unwrap());
    // ...and forgotten after that, when its signature would be too old anyway.
    assert!(store.remember_webhook_id("msg_1", at(601)).unwrap());
}

#[test]
fn a_database_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(ApprovalStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = ApprovalStore::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, StoreError::UnsupportedSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
}

#[test]
fn the_database_uses_wal() {
    let (_dir, store) = open();
    let Backend::Sqlite(file) = &store.backend else {
        panic!("a SQLite store")
    };
    let mode: String = file
        .lock()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// The tests above that say nothing SQLite-specific, on PostgreSQL: each
/// on a fresh database of one throwaway cluster (issue 14: the same suite
/// against both stores).
#[test]
fn the_store_suite_runs_on_postgresql() {
    let suite: &[(&str, fn())] = &[
        ("create_get_list_round_trip", create_get_list_round_trip),
        ("duplicate_id_is_refused", duplicate_id_is_refused),
        ("invalid_requests_are_refused", invalid_requests_are_refused),
        (
            "pending_requests_are_counted_per_principal_up_to_the_limit",
            pending_requests_are_counted_per_principal_up_to_the_limit,
        ),
        (
            "pending_for_digest_ignores_expired_and_decided",
            pending_for_digest_ignores_expired_and_decided,
        ),
        ("every_answer_rejection", every_answer_rejection),
        (
            "the_same_approver_cannot_answer_twice",
            the_same_approver_cannot_answer_twice,
        ),
        (
            "quorum_two_needs_two_distinct_approvers_before_a_grant_exists",
            quorum_two_needs_two_distinct_approvers_before_a_grant_exists,
        ),
        (
            "a_deny_after_one_approval_decides_denied_without_a_grant",
            a_deny_after_one_approval_decides_denied_without_a_grant,
        ),
        (
            "consume_grant_is_single_use_digest_bound_and_expires",
            consume_grant_is_single_use_digest_bound_and_expires,
        ),
        (
            "a_revoked_grant_is_never_consumed_and_a_used_one_cannot_be_revoked",
            a_revoked_grant_is_never_consumed_and_a_used_one_cannot_be_revoked,
        ),
        (
            "a_grant_scoped_to_identical_calls_is_reused_until_its_window_ends",
            a_grant_scoped_to_identical_calls_is_reused_until_its_window_ends,
        ),
        (
            "withdraw_transitions_and_blocks_answers",
            withdraw_transitions_and_blocks_answers,
        ),
        (
            "expire_only_after_the_deadline_and_blocks_answers",
            expire_only_after_the_deadline_and_blocks_answers,
        ),
        (
            "fail_denies_with_a_system_reason_and_blocks_answers",
            fail_denies_with_a_system_reason_and_blocks_answers,
        ),
        (
            "final_states_are_not_reopened",
            final_states_are_not_reopened,
        ),
        ("reopening_keeps_everything", reopening_keeps_everything),
        (
            "two_handles_on_one_directory_see_each_others_writes",
            two_handles_on_one_directory_see_each_others_writes,
        ),
        (
            "concurrent_consumers_get_exactly_one_grant",
            concurrent_consumers_get_exactly_one_grant,
        ),
        (
            "remember_webhook_id_refuses_replays_and_prunes_old_ids",
            remember_webhook_id_refuses_replays_and_prunes_old_ids,
        ),
    ];
    let cluster = crate::testing::PgCluster::start();
    for (name, test) in suite {
        let url = cluster.create_database();
        POSTGRES.with(|p| *p.borrow_mut() = Some(url));
        eprintln!("on PostgreSQL: {name}");
        test();
    }
    POSTGRES.with(|p| *p.borrow_mut() = None);
    // The URL may name a socket directory instead of a host.
    let url = cluster.create_database();
    let db = url.rsplit('/').next().unwrap();
    let store = ApprovalStore::connect(&cluster.socket_url(db)).unwrap();
    store.create(&request("s", "d")).unwrap();
    assert_eq!(store.get("s").unwrap().unwrap().status, Status::Pending);
}

/// Sixteen processes' worth of handles opening one new database at once
/// (Claude Code starts hooks together): every one opens it. SQLite answers
/// one of two openers meeting in rollback mode "busy" at once, without
/// waiting; before, that failed the open ("database is locked").
#[test]
fn many_openers_of_a_new_database_all_get_in() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let openers: Vec<_> = (0..16)
            .map(|_| {
                let dir = dir.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    ApprovalStore::open(&dir)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
    }
}
