//! The audit log through the real binary: what a session records, that the
//! chain survives restarts, that `audit verify` catches tampering, and that
//! a call whose record cannot be written is refused and never forwarded.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn verify(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(firewall_bin())
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A log with a few sessions' worth of records.
fn sample_log(dir: &std::path::Path) -> std::path::PathBuf {
    let audit = dir.join("audit.jsonl");
    let mut fw = Builder::new().audit(&audit).wrap_fixture();
    fw.initialize();
    for i in 0..3 {
        fw.call("echo", json!({"text": format!("call {i}")}));
    }
    fw.wait_audit("last completion", |r| {
        r["event"] == "call.completed" && r["seq"].as_u64() >= Some(8)
    });
    fw.shutdown();
    audit
}

#[test]
fn a_session_records_who_what_when_why_and_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut fw = Builder::new()
        .audit(&audit)
        .arg("--principal")
        .arg("alice")
        .wrap_fixture();
    fw.initialize();
    fw.call("write_note", json!({"name": "n", "content": "c"}));
    let done = fw.wait_audit("completion", |r| r["event"] == "call.completed");
    let records = fw.audit_records();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        &events[..2],
        ["policy.loaded", "session.started"],
        "{events:?}"
    );

    let decided = records
        .iter()
        .find(|r| r["event"] == "call.decided")
        .unwrap();
    assert!(
        decided["seq"].as_u64() < done["seq"].as_u64(),
        "decision recorded before the outcome"
    );
    assert_eq!(
        decided["principal"],
        json!({"id": "alice", "source": "flag"})
    );
    assert_eq!(decided["client"]["name"], "harness");
    assert_eq!(decided["server"], "upstream");
    assert_eq!(decided["target"], "write_note");
    assert_eq!(decided["result"]["decision"], "allow");
    assert_eq!(decided["arguments"], json!({"name": "n", "content": "c"}));
    assert!(
        decided["policy_revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        decided["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(decided["ts"].as_str().is_some() && decided["decision_id"].as_str().is_some());
    assert_eq!(done["decision_id"], decided["decision_id"]);
    assert_eq!(done["outcome"], "ok");

    // Refused before policy (not in the schema), yet recorded, with the secret masked.
    let invalid = fw.call("echo", json!({"text": "x", "password": "hunter2"}));
    assert_eq!(invalid["result"]["isError"], true);
    let refused = fw.wait_audit("invalid call", |r| {
        r["event"] == "call.decided" && r["target"] == "echo"
    });
    assert_eq!(refused["result"]["decision"], "deny");
    assert_eq!(refused["error"]["kind"], "invalid_arguments");
    assert_eq!(
        refused["arguments"]["password"], "***",
        "secrets are masked"
    );
    assert!(!std::fs::read_to_string(&audit).unwrap().contains("hunter2"));
    let session = decided["session_id"].clone();
    fw.shutdown();
    let last = read_audit(&audit).pop().unwrap();
    assert_eq!(last["event"], "session.ended", "{last}");
    assert_eq!(last["session_id"], session);
}

#[test]
fn the_chain_continues_across_restarts_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let audit = sample_log(dir.path());
    let first = read_audit(&audit).len();
    let again = sample_log(dir.path());
    assert_eq!(audit, again);
    let records = read_audit(&audit);
    assert!(records.len() > first);
    assert_eq!(
        records[first]["prev"],
        records[first - 1]["hash"],
        "the second run continues the chain"
    );
    let (ok, out) = verify(&audit);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} records", records.len())), "{out}");
}

#[test]
fn verify_names_the_first_bad_record_for_every_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let audit = sample_log(dir.path());
    let original = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 8);

    let target = lines.iter().position(|l| l.contains("call 0")).unwrap();
    let mut changed_byte = lines.clone();
    let edited = lines[target].replacen("call 0", "call 9", 1);
    changed_byte[target] = &edited;
    let changed_line = format!("line {}", target + 1);

    let mut removed = lines.clone();
    removed.remove(4);

    let mut reordered = lines.clone();
    reordered.swap(2, 3);

    let mut whitespace = lines.clone();
    let spaced = lines[5].replacen(",", ", ", 1);
    whitespace[5] = &spaced;

    let cases = [
        ("changed byte", changed_byte, changed_line.as_str()),
        ("removed", removed, "line 5"),
        ("reordered", reordered, "line 3"),
        ("whitespace", whitespace, "line 6"),
    ];
    for (what, lines, first_bad) in cases {
        let path = dir.path().join(format!("{}.jsonl", what.replace(' ', "_")));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let (ok, out) = verify(&path);
        assert!(!ok, "{what}: verify must fail");
        assert!(
            out.contains(first_bad),
            "{what}: expected {first_bad} in {out}"
        );
    }
    let (ok, out) = verify(&audit);
    assert!(ok, "untouched copy still verifies: {out}");
}

#[test]
fn a_call_whose_audit_record_cannot_be_written_is_refused_and_never_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // Grow the log first, so the file-size limit below bites the audit log
    // long before the small fixture event log.
    {
        let mut fw = Builder::new().audit(&audit).wrap_fixture();
        fw.initialize();
        for i in 0..40 {
            fw.call("echo", json!({"text": format!("warm-up {i}")}));
        }
        fw.wait_audit("warm-up done", |r| {
            r["event"] == "call.completed" && r["seq"].as_u64() >= Some(80)
        });
        fw.shutdown();
    }
    let size = std::fs::metadata(&audit).unwrap().len();
    let events = dir.path().join("events.jsonl");
    let mut fw = Builder::new()
        .audit(&audit)
        .env("FIXTURE_EVENT_LOG", events.to_str().unwrap())
        .file_size_limit(size + 6000)
        .wrap_fixture();
    fw.initialize();
    let mut refused_at = None;
    for i in 0..40 {
        let resp = fw.call("echo", json!({"text": format!("marker-{i}")}));
        if resp["result"]["isError"] == true {
            assert!(
                text(&resp).contains("audit log could not be written"),
                "{resp}"
            );
            refused_at = Some(i);
            break;
        }
        assert_eq!(text(&resp), format!("marker-{i}"));
    }
    let refused_at = refused_at.expect("the audit log filled up and a call was refused");
    let seen = std::fs::read_to_string(&events).unwrap();
    assert!(
        !seen.contains(&format!("marker-{refused_at}\"")),
        "the refused call reached the upstream"
    );
    // Still refusing, still answering.
    let again = fw.call("echo", json!({"text": "after"}));
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert!(
        !std::fs::read_to_string(&events)
            .unwrap()
            .contains("\"after\"")
    );
    drop(fw);
    let (ok, out) = verify(&audit);
    assert!(ok, "a failed write leaves the chain intact: {out}");
}

/// With `--audit-fsync always`, calls in flight together wait for their
/// records on the log's `fsync` thread (group commit) rather than each on a
/// worker: every one is answered, ran once, and has its decision and its
/// outcome in a chain that verifies.
#[test]
fn with_fsync_always_concurrent_calls_are_each_recorded_and_answered() {
    const CALLS: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let events = dir.path().join("events.jsonl");
    let mut fw = Builder::new()
        .audit(&audit)
        .args(&["--audit-fsync", "always"])
        .env("FIXTURE_EVENT_LOG", events.to_str().unwrap())
        .wrap_fixture();
    fw.initialize();
    let ids: Vec<_> = (0..CALLS)
        .map(|i| {
            fw.send_request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("burst-{i}")}}),
            )
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let resp = fw.response(id);
        assert_eq!(text(&resp), format!("burst-{i}"), "{resp}");
    }
    assert!(fw.shutdown().success());
    let records = read_audit(&audit);
    for i in 0..CALLS {
        let marker = format!("burst-{i}");
        let decided: Vec<_> = records
            .iter()
            .filter(|r| r["event"] == "call.decided" && r["arguments"]["text"] == marker)
            .collect();
        assert_eq!(decided.len(), 1, "{marker}");
        let id = &decided[0]["decision_id"];
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "call.completed" && &r["decision_id"] == id),
            "{marker} has its outcome recorded"
        );
    }
    let ran = std::fs::read_to_string(&events).unwrap();
    for i in 0..CALLS {
        assert_eq!(ran.matches(&format!("\"burst-{i}\"")).count(), 1, "{ran}");
    }
    assert_chain_verifies(&audit);
}
