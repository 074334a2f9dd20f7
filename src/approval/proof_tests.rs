use std::path::PathBuf;

use chrono::Utc;

use super::*;
use crate::approval::approvers::sign_with_key_file;
use crate::approval::signing::sign;
use crate::approval::{ApprovalRecord, Status};

const NOW: i64 = 1_795_000_000;

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/keys")
}

fn verifier() -> AnswerVerifier {
    let line = |n: &str| {
        let key = std::fs::read_to_string(keys().join(format!("{n}.pub"))).unwrap();
        format!("{n} {key}")
    };
    let text = ["alice", "carol", "dave"].map(line).join("");
    AnswerVerifier {
        registry: ApproverRegistry::parse(&text).unwrap(),
        secrets: vec![
            WebhookSecret::parse("whsec_bWNwLWZpcmV3YWxsLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=").unwrap(),
        ],
        ..Default::default()
    }
}

fn keyed(name: &str, key: &str, decision: Verdict, at: i64) -> AnswerRecord {
    let message = AnswerMessage {
        approval_id: "apr_1",
        digest: "sha256:d",
        approver: name,
        decision: decision.as_str(),
        reason: "ok",
        timestamp: at,
    };
    let signature = sign_with_key_file(&keys().join(key), &message).unwrap();
    let fingerprint = verifier()
        .registry
        .verify(&Identity::parse(name).unwrap(), &message, &signature, at)
        .unwrap_or_else(|_| "SHA256:unregistered".into());
    AnswerRecord {
        approver: name.into(),
        decision,
        reason: "ok".into(),
        channel: "cli".into(),
        at: Utc::now(),
        proof: Some(Proof::SshKey {
            fingerprint,
            signature,
            timestamp: at,
        }),
    }
}

fn bot(body: Value, approver: &str) -> AnswerRecord {
    let body = body.to_string();
    let signature = sign(&verifier().secrets, "msg_1", NOW, body.as_bytes());
    AnswerRecord {
        approver: approver.into(),
        decision: Verdict::Approve,
        reason: "ok".into(),
        channel: "endpoint".into(),
        at: Utc::now(),
        proof: Some(Proof::WebhookSecret {
            webhook_id: "msg_1".into(),
            timestamp: NOW,
            signature,
            body,
        }),
    }
}

fn record(answers: Vec<AnswerRecord>) -> ApprovalRecord {
    ApprovalRecord {
        id: "apr_1".into(),
        digest: "sha256:d".into(),
        principal: "alice".into(),
        server: "s".into(),
        tool: "t".into(),
        request: Value::Null,
        reasons: vec![],
        approvers: vec![],
        quorum: 1,
        status: Status::Approved,
        status_reason: None,
        created_at: Utc::now(),
        expires_at: Utc::now(),
        decided_at: None,
        grant_expires_at: None,
        answers,
    }
}

fn rules(quorum: u32, approvers: &[String]) -> ReleaseRules<'_> {
    ReleaseRules {
        principal: "alice",
        approvers,
        quorum,
        max_age_secs: 600,
        now: NOW,
    }
}

#[test]
fn a_quorum_counts_only_distinct_verified_eligible_approvers() {
    let v = verifier();
    let answers = vec![
        keyed("alice", "alice", Verdict::Approve, NOW), // the requester
        keyed("carol", "carol", Verdict::Approve, NOW),
        keyed("CAROL", "carol", Verdict::Approve, NOW), // counted once
        keyed("dave", "eve", Verdict::Approve, NOW),    // wrong key
        keyed("dave", "dave", Verdict::Approve, NOW - 601), // too old
    ];
    let err = v
        .verify_release(&record(answers.clone()), &rules(2, &[]))
        .unwrap_err();
    assert!(err.starts_with("1 of 2"), "{err}");
    let mut ok = answers;
    ok.push(keyed("dave", "dave", Verdict::Approve, NOW));
    let counted = v
        .verify_release(&record(ok.clone()), &rules(2, &[]))
        .unwrap();
    assert_eq!(counted.len(), 2);
    assert!(
        counted
            .iter()
            .all(|c| c.verified_by.starts_with("ssh-key SHA256:"))
    );
    let only_carol = ["carol".to_string()];
    assert!(
        v.verify_release(&record(ok), &rules(2, &only_carol))
            .is_err()
    );
}

#[test]
fn a_bot_answer_is_bound_to_its_approval_call_and_words() {
    let v = verifier();
    let good = bot_answer_body("apr_1", "sha256:d", "approve", "bob", "ok");
    assert!(
        v.verify_release(&record(vec![bot(good, "bob")]), &rules(1, &[]))
            .is_ok()
    );
    for (body, name) in [
        (
            bot_answer_body("apr_2", "sha256:d", "approve", "bob", "ok"),
            "bob",
        ),
        (
            bot_answer_body("apr_1", "sha256:other", "approve", "bob", "ok"),
            "bob",
        ),
        (
            bot_answer_body("apr_1", "sha256:d", "deny", "bob", "ok"),
            "bob",
        ),
        (
            bot_answer_body("apr_1", "sha256:d", "approve", "mallory", "ok"),
            "bob",
        ),
        // carol has a registered key: a bot cannot speak for her.
        (
            bot_answer_body("apr_1", "sha256:d", "approve", "carol", "ok"),
            "carol",
        ),
    ] {
        let answer = bot(body.clone(), name);
        assert!(
            v.verify("apr_1", "sha256:d", &answer, NOW).is_err(),
            "{body}"
        );
    }
    let mut forged = bot(
        bot_answer_body("apr_1", "sha256:d", "approve", "bob", "ok"),
        "bob",
    );
    if let Some(Proof::WebhookSecret { signature, .. }) = &mut forged.proof {
        *signature = "v1,AAAA".into();
    }
    assert!(v.verify("apr_1", "sha256:d", &forged, NOW).is_err());
}

fn with_people() -> AnswerVerifier {
    use crate::approval::directory::{ApproverDirectory, DirectoryEntry};
    let bob = DirectoryEntry {
        name: crate::identity::Identity::parse("bob").unwrap(),
        keys: vec![],
        oidc_subject: Some("sub-bob".into()),
        email: None,
        slack_user: Some("U0BOB".into()),
        groups: vec![],
    };
    AnswerVerifier {
        directory: ApproverDirectory::new(vec![bob]).unwrap(),
        slack: Some(SlackSecret::new("slack-signing-secret-for-tests").unwrap()),
        ..verifier()
    }
}

fn slack_answer(
    v: &AnswerVerifier,
    user: &str,
    decision: &str,
    reason: &str,
    id: &str,
) -> AnswerRecord {
    let payload = serde_json::json!({"type": "block_actions", "user": {"id": user},
        "actions": [{"action_id": decision, "block_id": "mcpfw:sha256:d", "value": id}],
        "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}}});
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let signature = v.slack.as_ref().unwrap().sign(1000, body.as_bytes());
    AnswerRecord {
        approver: "bob".into(),
        decision: decision.parse().unwrap(),
        reason: if reason.is_empty() {
            "approved in Slack".into()
        } else {
            reason.into()
        },
        channel: "slack".into(),
        at: chrono::Utc::now(),
        proof: Some(Proof::Slack {
            timestamp: 1000,
            signature,
            body,
        }),
    }
}

#[test]
fn a_slack_click_counts_only_for_its_mapped_approver_approval_and_words() {
    let v = with_people();
    let ok = slack_answer(&v, "U0BOB", "approve", "", "apr_1");
    assert_eq!(
        v.verify("apr_1", "sha256:d", &ok, 1000).unwrap(),
        "slack user U0BOB"
    );
    // The same click moved to another approval or call.
    assert!(v.verify("apr_2", "sha256:d", &ok, 1000).is_err());
    assert!(v.verify("apr_1", "sha256:e", &ok, 1000).is_err());
    // The store's copy edited after the click.
    let edited = AnswerRecord {
        reason: "something else".into(),
        ..ok.clone()
    };
    assert!(v.verify("apr_1", "sha256:d", &edited, 1000).is_err());
    // A user the directory does not map to bob.
    let eve = slack_answer(&v, "U0EVE", "approve", "", "apr_1");
    assert!(v.verify("apr_1", "sha256:d", &eve, 1000).is_err());
    // Without the signing secret nothing verifies.
    let no_secret = AnswerVerifier {
        slack: None,
        ..with_people()
    };
    assert!(no_secret.verify("apr_1", "sha256:d", &ok, 1000).is_err());
    // A bot cannot answer for an approver the directory vouches for.
    let bot = bot(
        bot_answer_body("apr_1", "sha256:d", "approve", "bob", "ok"),
        "bob",
    );
    assert!(
        v.verify("apr_1", "sha256:d", &bot, 1000)
            .unwrap_err()
            .contains("must answer with it")
    );
}

#[test]
fn a_console_answer_verifies_only_with_this_process_key() {
    let v = with_people();
    let message = console_message(
        "apr_1",
        "sha256:d",
        "bob",
        "approve",
        "ok",
        "http://idp",
        "sub-bob",
        None,
        1000,
        0,
    );
    let answer = AnswerRecord {
        approver: "bob".into(),
        decision: Verdict::Approve,
        reason: "ok".into(),
        channel: "console".into(),
        at: chrono::Utc::now(),
        proof: Some(Proof::Console {
            issuer: "http://idp".into(),
            subject: "sub-bob".into(),
            email: None,
            timestamp: 1000,
            scope_seconds: 0,
            tag: v.console_key.tag(&message),
        }),
    };
    assert_eq!(
        v.verify("apr_1", "sha256:d", &answer, 1000).unwrap(),
        "oidc issuer http://idp, subject sub-bob"
    );
    // Another process (or someone writing the store) has another key.
    let other = with_people();
    assert!(other.verify("apr_1", "sha256:d", &answer, 1000).is_err());
    // Named as someone else.
    let carol = AnswerRecord {
        approver: "carol".into(),
        ..answer.clone()
    };
    assert!(v.verify("apr_1", "sha256:d", &carol, 1000).is_err());
}

/// Replicas sharing `MCP_FIREWALL_CONSOLE_KEY` derive one key: a console
/// answer tagged at one verifies at another; a process of its own, or a
/// short secret, does not.
#[test]
fn replicas_with_one_console_secret_verify_each_others_answers() {
    let secret = "a-console-secret-of-at-least-32-characters";
    let (a, b) = (
        ConsoleKey::from_secret(secret).unwrap(),
        ConsoleKey::from_secret(secret).unwrap(),
    );
    let tag = a.tag(b"an answer");
    assert!(b.verifies(b"an answer", &tag));
    assert!(!b.verifies(b"another answer", &tag));
    assert!(!ConsoleKey::generate().verifies(b"an answer", &tag));
    assert!(ConsoleKey::from_secret("too short").is_err());
}
