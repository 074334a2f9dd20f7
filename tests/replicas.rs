//! Several replicas on one PostgreSQL store (issue 14), through the real
//! binary: three firewalls with their own audit logs and the same
//! `--store-url`, a throwaway cluster started here (`initdb` + `pg_ctl`),
//! the fixture behind each replica recording what it ran into one shared
//! event log.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use mcp_firewall::testing::PgCluster;
use serde_json::{Value, json};

const SECRET: &str = "whsec_bWNwLWZpcmV3YWxsLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=";

/// write_note needs a human; read-only tools are allowed.
const HOLD_WRITES: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
approve contains "notes change: a human decides" if input.tool.name == "write_note"
"#;

fn approvers_file(dir: &Path) -> String {
    let path = dir.join("allowed_signers");
    let key = std::fs::read_to_string(repo_path("fixtures/keys/carol.pub")).unwrap();
    std::fs::write(&path, format!("carol {key}")).unwrap();
    path.to_str().unwrap().to_string()
}

/// A replica of alice's firewall with `policy` on the shared store `url`
/// (stdio, its own audit log); callers add what differs.
fn replica_of(policy: &str, url: &str, approvers: &str) -> Builder {
    Builder::new()
        .rego(policy)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .args(&[
            "--principal",
            "alice",
            "--approvers",
            approvers,
            "--store-url",
            url,
        ])
}

/// Started in front of the fixture, initialized.
fn started(builder: Builder) -> Firewall {
    let mut fw = builder.wrap_fixture();
    fw.initialize();
    fw
}

/// One replica holding writes, its fixture recording into `events`.
fn replica(url: &str, approvers: &str, events: &Path, wait: u64) -> Firewall {
    started(
        replica_of(HOLD_WRITES, url, approvers)
            .approval_wait(wait)
            .env("FIXTURE_EVENT_LOG", events.to_str().unwrap()),
    )
}

/// `approvals <args> --store-url URL` (the CLI on the shared store).
fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(firewall_bin())
        .arg("approvals")
        .args(args)
        .args(["--store-url", url])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn approval_id(resp: &Value) -> String {
    resp["result"]["_meta"]["mcp-firewall/approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {resp}"))
        .to_string()
}

fn approve(url: &str, id: &str) {
    let key = repo_path("fixtures/keys/carol");
    let (ok, out) = cli(
        url,
        &[
            "approve",
            id,
            "--as",
            "carol",
            "--key",
            key.to_str().unwrap(),
            "--reason",
            "fine by me",
        ],
    );
    assert!(ok, "{out}");
}

fn writes_run(events: &Path) -> usize {
    common::events(events)
        .iter()
        .filter(|e| e["event"] == "call_tool" && e["name"] == "write_note")
        .count()
}

/// A call held at one replica is approved through the store (the CLI,
/// as at any replica) and released where it waits; once approved, the
/// identical call fired at all three replicas at once runs exactly once.
/// Before, there was no `--store-url`: each replica had its own store.
#[test]
fn an_approval_releases_the_call_at_another_replica_exactly_once() {
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let approvers = approvers_file(dir.path());
    let events = dir.path().join("events.jsonl");
    let mut a = replica(&url, &approvers, &events, 0);
    let mut b = replica(&url, &approvers, &events, 5);
    let mut c = replica(&url, &approvers, &events, 0);

    // Held at B, which waits; the request is visible to every replica's
    // store (the CLI lists it) and answered there.
    let note = json!({"name": "plan", "content": "ship it"});
    b.send(&json!({"jsonrpc": "2.0", "id": 50, "method": "tools/call",
                   "params": {"name": "write_note", "arguments": note}}));
    let pending = wait_for_pending(&url);
    approve(&url, &pending);
    let released = b.response(&json!(50));
    assert_eq!(
        released["result"]["isError"], false,
        "B was not released by an answer given through the shared store: {released}"
    );
    assert_eq!(writes_run(&events), 1);

    // A second approval, then the identical call at all three at once.
    let other = json!({"name": "plan", "content": "ship it again"});
    let held = a.call("write_note", other.clone());
    let id = approval_id(&held);
    approve(&url, &id);
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "write_note", "arguments": other.clone()}})
    };
    a.send(&call(60));
    b.send(&call(61));
    c.send(&call(62));
    let answers = [
        a.response(&json!(60)),
        b.response(&json!(61)),
        c.response(&json!(62)),
    ];
    let ran: Vec<&Value> = answers
        .iter()
        .filter(|r| r["result"]["_meta"]["mcp-firewall/approval_id"].is_null())
        .collect();
    assert_eq!(ran.len(), 1, "one approval, one execution: {answers:#?}");
    assert_eq!(
        writes_run(&events),
        2,
        "the grant was consumed more than once"
    );
    // Each replica keeps its own chain.
    for fw in [&a, &b, &c] {
        assert_chain_verifies(&fw.audit_path);
    }
}

/// The one pending request in the store, once there is one.
fn wait_for_pending(url: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ok, out) = cli(url, &["list", "--status", "pending"]);
        assert!(ok, "{out}");
        if let Some(id) = out
            .split_whitespace()
            .find(|w| w.starts_with("apr_"))
            .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        {
            return id.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pending approval: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The database goes away mid-run: a call that needs the store is refused
/// (fail closed, on the record), a call that needs nothing from it still
/// runs, and once the database is back the replica uses it again without a
/// restart.
#[test]
fn losing_the_database_fails_closed_and_the_replica_reconnects() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let approvers = approvers_file(dir.path());
    let events = dir.path().join("events.jsonl");
    let mut fw = replica(&url, &approvers, &events, 0);
    assert!(
        !fw.call("read_note", json!({"name": "hello"}))["result"]["isError"]
            .as_bool()
            .unwrap_or(true)
    );

    cluster.stop();
    let refused = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    let text = text(&refused);
    assert!(
        text.contains("approval database error") && text.contains("not run"),
        "{text}"
    );
    let record = fw.wait_audit("the refusal", |r| r["event"] == "approval.failed");
    assert_eq!(record["target"], "write_note", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("approval database error")),
        "{record}"
    );
    // Allowed calls need nothing from the store (the tool's pin was read
    // when it was first called).
    let read = fw.call("read_note", json!({"name": "hello"}));
    assert_eq!(read["result"]["isError"], false, "{read}");
    assert_eq!(writes_run(&events), 0);

    cluster.restart();
    let held = fw.call("write_note", json!({"name": "a", "content": "b"}));
    let id = approval_id(&held);
    approve(&url, &id);
    let released = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(released["result"]["isError"], false, "{released}");
    assert_eq!(writes_run(&events), 1);
}

/// `input.rate` counts the calls of every replica: a limit of four calls a
/// minute holds in total while three replicas take calls at once. Before,
/// each process counted its own (three replicas, three times the limit).
#[test]
fn rate_limits_hold_across_replicas() {
    const LIMIT: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
deny contains "more than 4 reads a minute" if input.rate.principal_tool_last_minute >= 4
"#;
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let approvers = approvers_file(dir.path());
    let mut replicas: Vec<Firewall> = (0..3)
        .map(|_| started(replica_of(LIMIT, &url, &approvers)))
        .collect();
    for round in 0..3 {
        for (i, fw) in replicas.iter_mut().enumerate() {
            fw.send(
                &json!({"jsonrpc": "2.0", "id": 100 + round * 3 + i as i64, "method": "tools/call",
                            "params": {"name": "read_note", "arguments": {"name": "hello"}}}),
            );
        }
    }
    let mut allowed = 0;
    for round in 0..3 {
        for (i, fw) in replicas.iter_mut().enumerate() {
            let answer = fw.response(&json!(100 + round * 3 + i as i64));
            if answer["result"]["isError"] == false {
                allowed += 1;
            } else {
                assert!(text(&answer).contains("more than 4 reads"), "{answer}");
            }
        }
    }
    assert_eq!(
        allowed, 4,
        "the limit is four calls a minute across replicas"
    );
}

/// Each replica keeps its own chain, names itself in every record and
/// records its chain head in the store at each signed checkpoint;
/// `audit verify` takes every replica's log, and with the store it finds a
/// log cut short below a recorded head. Before, there was no replica id,
/// `audit verify` took one file and knew nothing of the store.
#[test]
fn each_replica_has_its_chain_and_a_truncated_log_is_caught_against_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing");
    std::fs::copy(repo_path("fixtures/keys/carol"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut logs = Vec::new();
    for replica in ["r1", "r2"] {
        let log = dir.path().join(format!("{replica}.jsonl"));
        let config = dir.path().join(format!("{replica}.toml"));
        std::fs::write(
            &config,
            format!(
                "[audit]\npath = \"{}\"\nsigning_key = \"{}\"\ncheckpoint_every_records = 4\n\n[store]\nreplica = \"{replica}\"\n",
                log.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut fw = Builder::new()
            .rego("package mcp.firewall\n\nallow := true\n")
            .audit(&log)
            .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
            .args(&["--config", config.to_str().unwrap(), "--store-url", &url])
            .wrap_fixture();
        fw.initialize();
        for i in 0..6 {
            fw.call("echo", json!({"text": format!("{replica} call {i}")}));
        }
        let records = fw.audit_records();
        assert!(
            records.iter().all(|r| r["replica"] == replica),
            "{records:#?}"
        );
        assert!(fw.shutdown().success());
        logs.push(log);
    }
    let verify = |files: &[&Path]| {
        let out = Command::new(firewall_bin())
            .args(["audit", "verify"])
            .args(files)
            .args(["--store-url", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, out) = verify(&[&logs[0], &logs[1]]);
    assert!(ok, "{out}");
    // The head of the final checkpoint (taken as the firewall stopped)
    // reached the store: the whole log is covered.
    for log in &logs {
        let records = std::fs::read_to_string(log).unwrap().lines().count();
        assert!(
            out.contains(&format!("{}, seq {records}, ", log.display())),
            "{out}"
        );
    }
    for replica in ["r1", "r2"] {
        assert!(
            out.contains(&format!(
                "ok: replica {replica}: the head it recorded in the store"
            )),
            "{out}"
        );
    }
    // Cut r1's log short: its chain still verifies on its own, but the
    // store knows a later head.
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&logs[0], kept.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&[&logs[0], &logs[1]]);
    assert!(!ok, "{out}");
    assert!(out.contains("TRUNCATED: replica r1"), "{out}");
    assert!(out.contains("ok: replica r2"), "{out}");
}

/// A quorum of two answered at two places (bob's bot answer at replica A's
/// signed endpoint, carol's signed CLI answer) releases the call held at
/// replica B; the bot's webhook replayed byte for byte at B's endpoint is
/// refused as a replay, because A recorded its id in the shared store.
#[test]
fn quorum_and_replay_protection_span_replicas() {
    let policy = format!(
        "{HOLD_WRITES}\napproval := {{\"quorum\": 2, \"approvers\": [\"bob\", \"carol\"]}}\n"
    );
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let approvers = approvers_file(dir.path());
    let start = |port: u16, wait: u64| {
        started(
            replica_of(&policy, &url, &approvers)
                .approval_wait(wait)
                .args(&["--approval-listen", &format!("127.0.0.1:{port}")]),
        )
    };
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start(port_a, 0);
    let mut b = start(port_b, 20);
    b.send(&json!({"jsonrpc": "2.0", "id": 70, "method": "tools/call",
                   "params": {"name": "write_note", "arguments": {"name": "q", "content": "2"}}}));
    let id = wait_for_pending(&url);
    let (ok, shown) = cli(&url, &["show", &id]);
    assert!(ok, "{shown}");
    let digest = serde_json::from_str::<Value>(&shown).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::to_vec(
        &json!({"approval_id": id, "digest": digest, "decision": "approve",
                                          "approver": "bob", "reason": "looks fine"}),
    )
    .unwrap();
    let headers = signed_headers(SECRET, "msg-across", chrono::Utc::now().timestamp(), &body);
    let path = format!("/approvals/{id}");
    let (status, reply) = http_post(port_a, &path, &headers, &body);
    assert_eq!(status, 200, "{reply}");
    // One of two: still held.
    let (_, shown) = cli(&url, &["show", &id]);
    assert!(shown.contains("\"pending\""), "{shown}");
    approve(&url, &id);
    let released = b.response(&json!(70));
    assert_eq!(released["result"]["isError"], false, "{released}");
    let (status, reply) = http_post(port_b, &path, &headers, &body);
    assert_eq!(
        status, 409,
        "the webhook seen at A was accepted again at B: {reply}"
    );
    assert!(reply.contains("replay"), "{reply}");
}
