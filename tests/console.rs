//! The approval console, tested as an approver uses it: Debian's chromium
//! (headless, driven by the pinned puppeteer-core in fixtures/console)
//! signs in at a real OpenID provider (the pinned npm `oidc-provider`, on
//! loopback), watches the queue, opens a held call and answers it; the
//! firewall, its upstream and the audit log are the real ones.
//!
//! Screenshots of the queue and of one approval page are written to
//! `target/console-screenshots/` (docs/ keeps a committed copy).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{Value, json};

const CLIENT_SECRET: &str = "console-client-secret-of-the-tests";

const HOLD_WRITES: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
approve contains "notes change: a human decides" if input.tool.name in {"write_note", "delete_note"}
"#;

/// The OpenID provider, stopped on drop.
struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn console_dir() -> PathBuf {
    repo_path("fixtures/console")
}

fn start_idp(redirect: &str) -> Idp {
    let port = free_port();
    let mut child = Command::new("node")
        .arg(console_dir().join("idp.mjs"))
        .arg(port.to_string())
        .arg(redirect)
        .arg(CLIENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node fixtures/console/idp.mjs (run scripts/setup.sh)");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep draining: a closed pipe would end the provider at its next write.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let issuer = line
        .trim()
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
        .to_string();
    Idp { child, issuer }
}

/// bob signs in by subject, carol by verified email; alice is the
/// requester; eve has an account at the provider but is no approver.
fn config(dir: &Path, issuer: &str, listen: &str) -> String {
    let text = format!(
        r#"
[approval]
listen = "{listen}"

[approval.oidc]
issuer = "{issuer}"
client_id = "mcp-firewall-console"
client_secret_env = "TEST_OIDC_CLIENT_SECRET"

[[approver]]
name = "bob"
oidc_subject = "bob"

[[approver]]
name = "carol"
email = "carol@example.com"

[[approver]]
name = "alice"
oidc_subject = "alice"

[[upstream]]
name = "notes"
command = "{fixture}"
"#,
        fixture = fixture_bin(),
    );
    let path = dir.join("mcp-firewall.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

struct Setup {
    fw: Firewall,
    console: String,
    _idp: Idp,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    start_with(HOLD_WRITES)
}

fn start_with(policy: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let console = format!("http://127.0.0.1:{port}");
    let idp = start_idp(&format!("{console}/oidc/callback"));
    let mut fw = Builder::new()
        .rego(policy)
        .data_dir(&dir.path().join("data"))
        .approval_wait(0)
        .env("TEST_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .args(&[
            "--principal",
            "alice",
            "--config",
            &config(dir.path(), &idp.issuer, &format!("127.0.0.1:{port}")),
        ])
        .start();
    fw.initialize();
    Setup {
        fw,
        console,
        _idp: idp,
        _dir: dir,
    }
}

/// Start the browser on `plan`; [`finish`] collects its step reports.
fn drive(console: &str, plan: Value) -> Child {
    Command::new("node")
        .arg(console_dir().join("drive.mjs"))
        .arg(console)
        .arg(plan.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node fixtures/console/drive.mjs")
}

fn finish(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let steps: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for s in &steps {
        assert!(s.get("error").is_none(), "browser step failed: {s}");
    }
    steps
}

fn run(console: &str, plan: Value) -> Vec<Value> {
    finish(drive(console, plan))
}

fn screenshots() -> PathBuf {
    let dir = repo_path("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn approval_id(resp: &Value) -> String {
    resp["result"]["_meta"]["mcp-firewall/approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {resp}"))
        .to_string()
}

#[test]
fn an_approver_signs_in_sees_the_held_call_appear_and_approves_it() {
    let Setup {
        mut fw,
        console,
        _idp,
        _dir,
    } = start();
    let shots = screenshots();
    // The browser signs in and waits on the queue; the call is held while
    // it waits, and the page shows it without a manual reload.
    let browser = drive(
        &console,
        json!([
            {"login": "bob"},
            {"waitFor": "[data-approval]"},
            {"screenshot": shots.join("queue.png")},
            {"open": "[data-approval] h3 a"},
            {"screenshot": shots.join("approval.png")},
            {"answer": "approve", "reason": "the note is expected"},
        ]),
    );
    let args = json!({"name": "release-plan", "content": "ship on Friday"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));
    let steps = finish(browser);
    assert!(
        steps[0]["text"]
            .as_str()
            .unwrap()
            .contains("signed in as bob"),
        "{}",
        steps[0]
    );
    let queue = steps[1]["text"].as_str().unwrap();
    assert!(queue.contains("notes / write_note"), "{queue}");
    assert!(queue.contains("asked by alice"), "{queue}");
    assert!(queue.contains("ship on Friday"), "arguments shown: {queue}");
    assert!(
        queue.contains("notes change: a human decides"),
        "reasons shown: {queue}"
    );
    let page = steps[3]["text"].as_str().unwrap();
    assert!(page.contains(&id), "{page}");
    assert!(page.contains("The audit log verifies"), "{page}");
    let answered = &steps[5];
    assert_eq!(answered["status"], 200, "{answered}");
    assert!(
        answered["text"].as_str().unwrap().contains("Approved."),
        "{answered}"
    );

    let issuer = fw
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "console.login")
        .unwrap()["issuer"]
        .clone();
    let record = fw.wait_audit("answer", |r| r["event"] == "approval.answered");
    assert_eq!(record["approver"], "bob");
    assert_eq!(record["channel"], "console");
    assert_eq!(
        record["verified_by"],
        format!("oidc issuer {}, subject bob", issuer.as_str().unwrap())
    );
    let resp = fw.call("notes__write_note", args);
    assert_eq!(
        resp["result"]["isError"], false,
        "the approved call runs: {resp}"
    );
    let released = fw.wait_audit("release", |r| r["event"] == "approval.released");
    assert_eq!(released["approvers"], json!(["bob"]));
    // The approval page now shows the release in its trail.
    let after = run(
        &console,
        json!([{"login": "carol"}, {"goto": format!("/approvals/{id}")}]),
    );
    let trail = after[1]["text"].as_str().unwrap();
    assert!(trail.contains("approval.released"), "{trail}");
    assert!(trail.contains("call.completed"), "{trail}");
}

#[test]
fn self_approval_reasonless_denies_forged_posts_strangers_and_revoked_grants_are_refused() {
    let Setup {
        mut fw,
        console,
        _idp,
        _dir,
    } = start();
    let args = json!({"name": "ops", "content": "rotate keys"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));
    let page = format!("/approvals/{id}");

    // alice made the call: she may sign in, but not approve it.
    let steps = run(
        &console,
        json!([{"login": "alice"}, {"goto": page}, {"answer": "approve", "reason": "mine"}]),
    );
    assert_eq!(steps[2]["status"], 403, "{}", steps[2]);
    assert!(
        steps[2]["text"]
            .as_str()
            .unwrap()
            .contains("you made this request"),
        "{}",
        steps[2]
    );

    // eve has an account at the provider but is not in the directory.
    let steps = run(&console, json!([{"login": "eve"}]));
    assert_eq!(steps[0]["status"], 403, "{}", steps[0]);
    assert!(
        steps[0]["text"]
            .as_str()
            .unwrap()
            .contains("no [[approver]]"),
        "{}",
        steps[0]
    );

    // carol (mapped by verified email): a deny needs a reason; a form post
    // without the CSRF token changes nothing; then she approves.
    let steps = run(
        &console,
        json!([
            {"login": "carol"},
            {"goto": page},
            {"answer": "deny", "reason": ""},
            {"forge": {"path": format!("/console/approvals/{id}/answer"),
                       "fields": {"decision": "approve", "reason": "forged"}}},
            {"forge": {"path": format!("/console/grants/{id}/revoke"), "fields": {}}},
            {"goto": page},
            {"answer": "approve", "reason": "fine"},
        ]),
    );
    assert_eq!(steps[2]["status"], 400, "{}", steps[2]);
    assert!(
        steps[2]["text"]
            .as_str()
            .unwrap()
            .contains("A deny needs a reason"),
        "{}",
        steps[2]
    );
    assert_eq!(steps[3]["status"], 403, "{}", steps[3]);
    assert!(
        steps[3]["text"].as_str().unwrap().contains("CSRF"),
        "{}",
        steps[3]
    );
    assert_eq!(steps[4]["status"], 403, "{}", steps[4]);
    assert!(
        steps[5]["text"]
            .as_str()
            .unwrap()
            .contains("No answers yet"),
        "the forged post recorded nothing: {}",
        steps[5]
    );
    assert!(
        steps[6]["text"].as_str().unwrap().contains("Approved."),
        "{}",
        steps[6]
    );
    let answered = fw.wait_audit("answer", |r| r["event"] == "approval.answered");
    assert_eq!(answered["approver"], "carol");
    assert!(
        answered["verified_by"]
            .as_str()
            .unwrap()
            .contains("subject carol")
    );

    // bob revokes the unused grant: the identical call no longer runs.
    let steps = run(&console, json!([{"login": "bob"}, {"revoke": id}]));
    assert!(
        steps[1]["text"].as_str().unwrap().contains("is revoked"),
        "{}",
        steps[1]
    );
    let revoked = fw.wait_audit("revoke", |r| r["event"] == "approval.revoked");
    assert_eq!(revoked["revoked_by"], "bob");
    let again = fw.call("notes__write_note", args);
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert!(
        !fw.audit_records()
            .iter()
            .any(|r| r["event"] == "approval.released"),
        "a revoked grant released nothing"
    );
}

/// The policy lets approvers approve identical calls for up to 10 minutes.
const SCOPED: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
approve contains "notes change: a human decides" if input.tool.name == "write_note"
approval := {"max_scope_seconds": 600}
"#;

#[test]
fn identical_calls_for_n_minutes_run_until_the_grant_is_revoked() {
    let Setup {
        mut fw,
        console,
        _idp,
        _dir,
    } = start_with(SCOPED);
    let args = json!({"name": "heartbeat", "content": "ok"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));
    let page = format!("/approvals/{id}");
    let steps = run(
        &console,
        json!([
            {"login": "bob"},
            {"goto": page},
            // Wider than the policy allows (a hand-edited form): refused.
            {"post": {"path": format!("/console/approvals/{id}/answer"),
                      "fields": {"decision": "approve", "reason": "x", "scope_minutes": "60"}}},
            {"answer": "approve", "reason": "routine", "scope": 10},
        ]),
    );
    assert!(
        steps[1]["text"]
            .as_str()
            .unwrap()
            .contains("identical calls for 10 minutes"),
        "{}",
        steps[1]
    );
    assert_eq!(steps[2]["status"], 400, "{}", steps[2]);
    assert!(
        steps[2]["text"]
            .as_str()
            .unwrap()
            .contains("does not allow"),
        "{}",
        steps[2]
    );
    assert!(
        steps[3]["text"].as_str().unwrap().contains("Approved."),
        "{}",
        steps[3]
    );
    for n in 0..3 {
        let resp = fw.call("notes__write_note", args.clone());
        assert_eq!(
            resp["result"]["isError"], false,
            "identical call {n} runs: {resp}"
        );
    }
    let released: Vec<Value> = fw
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "approval.released")
        .collect();
    assert_eq!(released.len(), 3);
    assert!(
        released[0]["scope"]["identical_calls_until"].is_string(),
        "{}",
        released[0]
    );
    // A different call is not covered.
    let other = fw.call(
        "notes__write_note",
        json!({"name": "heartbeat", "content": "other"}),
    );
    assert!(text(&other).starts_with("Approval pending"), "{other}");
    // Revoked: the identical call is held again, not run.
    run(&console, json!([{"login": "bob"}, {"revoke": id}]));
    let after = fw.call("notes__write_note", args);
    assert!(text(&after).starts_with("Approval pending"), "{after}");
    assert_eq!(
        fw.audit_records()
            .iter()
            .filter(|r| r["event"] == "approval.released")
            .count(),
        3
    );
}
