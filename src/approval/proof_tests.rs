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
