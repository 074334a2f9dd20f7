//! Human approval of held calls, through the real binary, a real upstream
//! and a real webhook receiver (fixtures/webhook/receiver.py: Python's
//! standard library, an implementation of Standard Webhooks independent of
//! ours). Short configured timeouts, never long sleeps.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "whsec_bWNwLWZpcmV3YWxsLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=";
const OTHER_SECRET: &str = "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0zMmI=";

/// write_note and delete_note need a human; read-only tools are allowed.
const HOLD_WRITES: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
approve contains "notes change: a human decides" if input.tool.name in {"write_note", "delete_note"}
"#;

fn quorum_policy(quorum: u32) -> String {
    format!(
        "{HOLD_WRITES}\napproval := {{\"quorum\": {quorum}, \"approvers\": [\"bob\", \"carol\", \"dave\"]}}\n"
    )
}

/// The Python receiver, listening on an ephemeral loopback port.
struct Receiver {
    child: Child,
    port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(mode: &str, secrets: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(repo_path("fixtures/webhook/receiver.py")).args([
            "--mode",
            mode,
            "--approver",
            "bob",
        ]);
        cmd.args(["--reason", "looks fine"])
            .arg("--record")
            .arg(&record);
        for s in secrets {
            cmd.args(["--secret", s]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .expect("LISTENING <port>")
            .parse()
            .unwrap();
        Receiver {
            child,
            port,
            record,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn records(&self) -> Vec<Value> {
        events(&self.record)
    }

    fn wait_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_event(&self.record, what, pred)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The approver registry of every firewall here (`allowed_signers`): carol
/// and dave answer with their keys, alice (the requester) has one too; bob
/// has none, so he is the name the webhook bot answers as; eve's key is
/// registered for nobody.
fn approvers_file(data: &Path) -> String {
    let path = data.join("allowed_signers");
    let line = |name: &str| {
        let key = std::fs::read_to_string(repo_path(&format!("fixtures/keys/{name}.pub"))).unwrap();
        format!("{name} {key}")
    };
    let text = ["alice", "carol", "dave"].map(line).join("");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn key(name: &str) -> String {
    repo_path(&format!("fixtures/keys/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// `approvals approve|deny ID --as NAME --key fixtures/keys/KEY --reason R`.
fn answer(
    data: &Path,
    verb: &str,
    id: &str,
    name: &str,
    key_of: &str,
    reason: &str,
) -> (bool, String) {
    cli(
        data,
        &[
            verb,
            id,
            "--as",
            name,
            "--key",
            &key(key_of),
            "--reason",
            reason,
        ],
    )
}

/// The call digest of a stored approval.
fn digest_of(data: &Path, id: &str) -> String {
    let (ok, out) = cli(data, &["show", id]);
    assert!(ok, "{out}");
    let record: Value = serde_json::from_str(&out).unwrap();
    record["digest"].as_str().unwrap().to_string()
}

/// A bot's answer body, bound to approval `id` and call `digest`.
fn bot_body(id: &str, digest: &str, decision: &str, approver: &str, reason: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"approval_id": id, "digest": digest, "decision": decision,
                               "approver": approver, "reason": reason}),
    )
    .unwrap()
}

/// A firewall in front of the fixture with approvals configured.
fn firewall(policy: &str, data: &Path, wait: u64, extra: &[&str]) -> Firewall {
    let mut b = Builder::new()
        .rego(policy)
        .data_dir(data)
        .approval_wait(wait)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET);
    b = b
        .arg("--principal")
        .arg("alice")
        .arg("--approvers")
        .arg(&approvers_file(data));
    for a in extra {
        b = b.arg(a);
    }
    let mut fw = b.wrap_fixture();
    fw.initialize();
    fw
}

fn approval_id(resp: &Value) -> String {
    resp["result"]["_meta"]["mcp-firewall/approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {resp}"))
        .to_string()
}

fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(firewall_bin())
        .arg("approvals")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

type Headers = Vec<(&'static str, String)>;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn a_webhook_that_approves_releases_the_call_and_everything_is_recorded() {
    let receiver = Receiver::start("approve", &[SECRET]);
    let data = tempfile::tempdir().unwrap();
    let events_log = tempfile::NamedTempFile::new().unwrap();
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .approval_wait(20)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .env("FIXTURE_EVENT_LOG", events_log.path().to_str().unwrap())
        .arg("--principal")
        .arg("alice")
        .arg("--approvers")
        .arg(&approvers_file(data.path()))
        .arg("--approval-webhook")
        .arg(&receiver.url())
        .wrap_fixture();
    fw.initialize();
    let resp = fw.call("write_note", json!({"name": "plan", "content": "ship it"}));
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    wait_event(events_log.path(), "the released call", |e| {
        e["event"] == "call_tool" && e["name"] == "write_note"
    });

    let delivery = receiver.wait_record("delivery", |r| r["body"]["type"] == "approval.requested");
    assert_eq!(
        delivery["verified"], true,
        "the independent verifier accepts our signature: {delivery}"
    );
    let approval = &delivery["body"]["approval"];
    assert_eq!(approval["principal"]["id"], "alice");
    assert_eq!(approval["tool"], "write_note");
    assert_eq!(
        approval["arguments"],
        json!({"name": "plan", "content": "ship it"})
    );
    assert_eq!(
        approval["reasons"],
        json!(["notes change: a human decides"])
    );
    assert!(approval["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        delivery["body"]["respond"]["cli"]
            .as_str()
            .unwrap()
            .contains("approvals approve")
    );

    let id = approval["id"].as_str().unwrap();
    for event in [
        "approval.requested",
        "approval.delivered",
        "approval.answered",
        "approval.released",
    ] {
        let r = fw.wait_audit(event, |r| r["event"] == event && r["approval_id"] == id);
        if event == "approval.answered" {
            assert_eq!(
                (r["approver"].as_str(), r["channel"].as_str()),
                (Some("bob"), Some("webhook-response"))
            );
            assert_eq!(r["reason"], "looks fine");
            assert!(
                r["verified_by"]
                    .as_str()
                    .unwrap()
                    .starts_with("webhook-secret whsec#"),
                "how the bot was verified: {r}"
            );
        }
    }
    let released = fw.wait_audit("released", |r| r["event"] == "approval.released");
    assert_eq!(released["approvers"], json!(["bob"]));
    assert!(
        released["verified_by"][0]
            .as_str()
            .unwrap()
            .starts_with("webhook-secret")
    );
    fw.wait_audit("outcome", |r| {
        r["event"] == "call.completed" && r["decision_id"] == released["decision_id"]
    });
    let (ok, out) = cli(data.path(), &["show", id]);
    assert!(ok && out.contains("\"used\""), "{out}");
}

#[test]
fn a_webhook_that_denies_refuses_the_call_with_the_approvers_reason() {
    let receiver = Receiver::start("deny", &[SECRET]);
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(
        HOLD_WRITES,
        data.path(),
        20,
        &["--approval-webhook", &receiver.url()],
    );
    let resp = fw.call("delete_note", json!({"name": "hello"}));
    assert_eq!(resp["result"]["isError"], true);
    let message = text(&resp);
    assert!(
        message.contains("was denied") && message.contains("bob: looks fine"),
        "{message}"
    );
    assert_eq!(
        text(&fw.call("read_note", json!({"name": "hello"}))),
        "world",
        "the note was not deleted"
    );
    fw.wait_audit("denied", |r| r["event"] == "approval.denied");
}

#[test]
fn an_unreachable_webhook_denies_and_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/nobody", free_port());
    let mut fw = firewall(
        HOLD_WRITES,
        data.path(),
        20,
        &["--approval-webhook", &url, "--approval-timeout", "2"],
    );
    let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(resp["result"]["isError"], true);
    assert!(text(&resp).contains("webhook delivery failed"), "{resp}");
    let failed = fw.wait_audit("delivery failure", |r| {
        r["event"] == "approval.delivery_failed"
    });
    assert!(
        failed["attempts"].as_u64().unwrap() >= 2,
        "retried: {failed}"
    );
}

#[test]
fn five_hundreds_and_429_are_retried_with_the_same_webhook_id() {
    for mode in ["flaky", "rate-limited"] {
        let receiver = Receiver::start(mode, &[SECRET]);
        let data = tempfile::tempdir().unwrap();
        let mut fw = firewall(
            HOLD_WRITES,
            data.path(),
            20,
            &["--approval-webhook", &receiver.url()],
        );
        let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
        assert_eq!(resp["result"]["isError"], false, "{mode}: {resp}");
        let posts: Vec<Value> = receiver
            .records()
            .into_iter()
            .filter(|r| r.get("headers").is_some())
            .collect();
        let expected = if mode == "flaky" { 3 } else { 2 };
        assert_eq!(posts.len(), expected, "{mode}: {posts:#?}");
        let id = &posts[0]["headers"]["webhook-id"];
        assert!(
            posts
                .iter()
                .all(|p| &p["headers"]["webhook-id"] == id && p["verified"] == true)
        );
        let delivered = fw.wait_audit("delivered", |r| r["event"] == "approval.delivered");
        assert_eq!(delivered["attempts"], expected as u64);
    }
}

#[test]
fn an_approver_can_answer_through_the_signed_callback_endpoint() {
    let receiver = Receiver::start("callback-approve", &[SECRET]);
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut fw = firewall(
        HOLD_WRITES,
        data.path(),
        20,
        &[
            "--approval-webhook",
            &receiver.url(),
            "--approval-listen",
            &listen,
        ],
    );
    let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    let callback = receiver.wait_record("callback", |r| r.get("callback_status").is_some());
    assert_eq!(callback["callback_status"], 200, "{callback}");
    let answered = fw.wait_audit("answer", |r| r["event"] == "approval.answered");
    assert_eq!(answered["channel"], "endpoint");
}

#[test]
fn the_endpoint_refuses_every_bad_signature() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let rotated = format!("{SECRET},{OTHER_SECRET}");
    let mut b = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .env("MCP_FIREWALL_WEBHOOK_SECRET", &rotated);
    b = b
        .arg("--principal")
        .arg("alice")
        .arg("--approval-listen")
        .arg(&listen);
    let mut fw = b.wrap_fixture();
    fw.initialize();
    let held = fw.call("write_note", json!({"name": "a", "content": "b"}));
    let id = approval_id(&held);
    let path = format!("/approvals/{id}");
    let digest = digest_of(data.path(), &id);
    let body_vec = bot_body(&id, &digest, "approve", "bob", "fine");
    let body: &[u8] = &body_vec;
    let reserialised =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
    let good = |msg: &str, ts: i64| signed_headers(SECRET, msg, ts, body);
    let sig_of = |h: &[(&str, String)]| h[2].1.clone();
    let with_sig = |msg: &str, sig: String| {
        vec![
            ("webhook-id", msg.to_string()),
            ("webhook-timestamp", now().to_string()),
            ("webhook-signature", sig),
        ]
    };

    let valid = sig_of(&good("m-x", now()));
    let mac = valid.strip_prefix("v1,").unwrap().to_string();
    let retired = "whsec_cmV0aXJlZC1zZWNyZXQtcmV0aXJlZC1zZWNyZXQtMzI=";
    let cases: Vec<(&str, Headers, &[u8])> = vec![
        ("empty signature", with_sig("m1", "v1,".into()), body),
        (
            "truncated",
            with_sig("m2", format!("v1,{}", &mac[..20])),
            body,
        ),
        ("extended", with_sig("m3", format!("v1,{mac}AAAA")), body),
        (
            "wrong version",
            with_sig(
                "m4",
                format!(
                    "v2,{}",
                    sig_of(&good("m4", now())).strip_prefix("v1,").unwrap()
                ),
            ),
            body,
        ),
        (
            "wrong secret",
            signed_headers(
                "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC0zMmJ5",
                "m5",
                now(),
                body,
            ),
            body,
        ),
        (
            "rotated-out secret",
            signed_headers(retired, "m6", now(), body),
            body,
        ),
        // Whole seconds outside the 300 s window, with room for the clock
        // to tick between signing here and checking there (at exactly
        // `now() + 301` a second boundary in between made it 300: accepted).
        ("330 s old", good("m7", now() - 330), body),
        ("330 s ahead", good("m8", now() + 330), body),
        ("re-serialised body", good("m9", now()), &reserialised),
        ("no headers", vec![], body),
    ];
    for (what, headers, sent) in cases {
        let (status, reply) = http_post(port, &path, &headers, sent);
        assert_eq!(status, 401, "{what}: {reply}");
    }
    let (ok, out) = cli(data.path(), &["show", &id]);
    assert!(
        ok && out.contains("\"pending\""),
        "nothing was accepted: {out}"
    );

    // The second configured secret (rotation) is accepted; its id only once.
    let headers = signed_headers(OTHER_SECRET, "m-final", now(), body);
    let (status, reply) = http_post(port, &path, &headers, body);
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = http_post(port, &path, &headers, body);
    assert_eq!(status, 409, "replayed webhook-id: {reply}");
    assert!(reply.contains("replay"), "{reply}");

    let released = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(
        released["result"]["isError"], false,
        "approved call goes through: {released}"
    );
}

#[test]
fn the_requester_cannot_approve_their_own_call() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut fw = firewall(
        HOLD_WRITES,
        data.path(),
        0,
        &["--approval-listen", &format!("127.0.0.1:{port}")],
    );
    let id = approval_id(&fw.call("write_note", json!({"name": "a", "content": "b"})));
    // alice has a key of her own; signing with it proves she is alice.
    for spelling in ["alice", "alice\u{200b}", "ａｌｉｃｅ", "alice\u{00ad}"] {
        let (ok, out) = answer(data.path(), "approve", &id, spelling, "alice", "trust me");
        assert!(
            !ok && out.contains("you made this request"),
            "{spelling:?}: {out}"
        );
    }
    // Cyrillic а: refused before anything else.
    let (ok, out) = answer(
        data.path(),
        "approve",
        &id,
        "\u{0430}lice",
        "alice",
        "trust me",
    );
    assert!(!ok && out.contains("mixes letters"), "{out}");
    // The bot cannot speak for alice either, however she is spelled.
    let digest = digest_of(data.path(), &id);
    for (n, spelling) in ["Alice", "alice\u{200b}", "ａｌｉｃｅ"].iter().enumerate() {
        let body = bot_body(&id, &digest, "approve", spelling, "trust me");
        let (status, reply) = http_post(
            port,
            &format!("/approvals/{id}"),
            &signed_headers(SECRET, &format!("self-{n}"), now(), &body),
            &body,
        );
        assert_eq!(status, 403, "{spelling:?}: {reply}");
    }
    let rejected = fw.wait_audit("rejected answer", |r| {
        r["event"] == "approval.answer_rejected" && r["approver"] == "Alice"
    });
    assert!(rejected["error"].as_str().is_some());
    let again = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert!(
        text(&again).starts_with("Approval pending"),
        "still held: {again}"
    );
}

#[test]
fn a_quorum_of_two_needs_two_distinct_listed_approvers() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(&quorum_policy(2), data.path(), 0, &[]);
    let args = json!({"name": "q", "content": "two keys"});
    let id = approval_id(&fw.call("write_note", args.clone()));
    let (ok, out) = answer(data.path(), "approve", &id, "mallory", "eve", "sure");
    assert!(!ok, "no key registered for mallory: {out}");
    let (ok, out) = answer(data.path(), "approve", &id, "carol", "eve", "sure");
    assert!(
        !ok && out.contains("not registered for"),
        "eve's key is not carol's: {out}"
    );
    let (ok, out) = answer(data.path(), "approve", &id, "carol", "carol", "ok by me");
    assert!(
        ok && out.contains("pending") && out.contains("1/2"),
        "{out}"
    );
    let again = fw.call("write_note", args.clone());
    assert_eq!(
        approval_id(&again),
        id,
        "the repeated call waits on the same request"
    );
    let (ok, out) = answer(data.path(), "approve", &id, "CAROL", "carol", "me again");
    assert!(!ok, "the same approver twice does not count: {out}");
    let (ok, out) = answer(data.path(), "approve", &id, "dave", "dave", "agreed");
    assert!(ok && out.contains("approved"), "{out}");
    let released = fw.call("write_note", args.clone());
    assert_eq!(released["result"]["isError"], false, "{released}");
    let third = fw.call("write_note", args);
    assert!(
        text(&third).starts_with("Approval pending"),
        "single use: {third}"
    );
    assert_ne!(approval_id(&third), id);
}

#[test]
fn an_unanswered_request_expires_and_denies() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 10, &["--approval-timeout", "1"]);
    let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert!(text(&resp).contains("expired"), "{resp}");
    fw.wait_audit("expiry", |r| r["event"] == "approval.expired");
    let (_, out) = cli(data.path(), &["list"]);
    assert!(out.contains("expired"), "{out}");
}

#[test]
fn cancelling_a_held_call_withdraws_the_request_and_tells_the_receiver() {
    let receiver = Receiver::start("none", &[SECRET]);
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(
        HOLD_WRITES,
        data.path(),
        30,
        &["--approval-webhook", &receiver.url()],
    );
    let id = fw.send_request(
        "tools/call",
        json!({"name": "write_note", "arguments": {"name": "a", "content": "b"}, "_meta": {"progressToken": "p1"}}),
    );
    let progress = fw.notification("notifications/progress");
    assert_eq!(progress["params"]["progressToken"], "p1");
    assert!(
        progress["params"]["message"]
            .as_str()
            .unwrap()
            .contains("approval")
    );
    let delivery = receiver.wait_record("delivery", |r| r["body"]["type"] == "approval.requested");
    let approval = delivery["body"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    fw.notify("notifications/cancelled", json!({"requestId": id}));
    let withdrawn =
        receiver.wait_record("withdrawal", |r| r["body"]["type"] == "approval.withdrawn");
    assert_eq!(withdrawn["body"]["approval"]["id"], approval.as_str());
    assert_eq!(withdrawn["verified"], true);
    fw.wait_audit("withdrawn", |r| {
        r["event"] == "approval.withdrawn" && r["approval_id"] == approval.as_str()
    });
    let (_, out) = cli(data.path(), &["show", &approval]);
    assert!(out.contains("\"withdrawn\""), "{out}");
    assert_eq!(text(&fw.call("echo", json!({"text": "next"}))), "next");
    assert!(
        !fw.backlog.iter().any(|m| m["id"] == id),
        "no answer to a cancelled call"
    );
}

#[test]
fn pending_then_repeat_releases_only_the_identical_call_once() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &[]);
    let args = json!({"name": "n1", "content": "v1"});
    let pending = fw.call("write_note", args.clone());
    assert!(
        text(&pending).contains("repeat the identical call"),
        "{pending}"
    );
    let id = approval_id(&pending);
    let (ok, out) = answer(data.path(), "approve", &id, "carol", "carol", "fine");
    assert!(ok, "{out}");
    let different = fw.call("write_note", json!({"name": "n1", "content": "v2"}));
    assert!(
        text(&different).starts_with("Approval pending"),
        "different arguments: {different}"
    );
    let released = fw.call("write_note", args.clone());
    assert_eq!(released["result"]["isError"], false, "{released}");
    let again = fw.call("write_note", args);
    assert!(
        text(&again).starts_with("Approval pending"),
        "used once: {again}"
    );
    let (ok, out) = answer(
        data.path(),
        "deny",
        &approval_id(&again),
        "carol",
        "carol",
        "",
    );
    assert!(!ok, "a deny needs a reason: {out}");
}

#[test]
fn an_approval_is_not_usable_after_it_expires() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &["--approval-timeout", "1"]);
    let args = json!({"name": "late", "content": "x"});
    let id = approval_id(&fw.call("write_note", args.clone()));
    let (ok, out) = answer(data.path(), "approve", &id, "carol", "carol", "ok");
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    let late = fw.call("write_note", args);
    assert!(
        text(&late).starts_with("Approval pending"),
        "the grant expired: {late}"
    );
}

#[test]
fn approvals_survive_a_restart_and_an_answer_given_while_down_still_counts() {
    let data = tempfile::tempdir().unwrap();
    let audit = data.path().join("audit.jsonl");
    let args = json!({"name": "durable", "content": "yes"});
    let id = {
        let mut fw = Builder::new()
            .rego(HOLD_WRITES)
            .data_dir(data.path())
            .audit(&audit)
            .arg("--principal")
            .arg("alice")
            .arg("--approvers")
            .arg(&approvers_file(data.path()))
            .wrap_fixture();
        fw.initialize();
        let id = approval_id(&fw.call("write_note", args.clone()));
        fw.shutdown();
        id
    };
    let (ok, out) = cli(data.path(), &["list", "--status", "pending"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out) = answer(
        data.path(),
        "approve",
        &id,
        "carol",
        "carol",
        "approved while it was down",
    );
    assert!(ok, "{out}");
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .audit(&audit)
        .arg("--principal")
        .arg("alice")
        .arg("--approvers")
        .arg(&approvers_file(data.path()))
        .wrap_fixture();
    fw.initialize();
    let released = fw.call("write_note", args);
    assert_eq!(released["result"]["isError"], false, "{released}");
    let record = fw.wait_audit("release", |r| {
        r["event"] == "approval.released" && r["approval_id"] == id.as_str()
    });
    assert_eq!(record["answers"][0]["channel"], "cli");
    assert_eq!(record["answers"][0]["reason"], "approved while it was down");
    assert!(
        record["verified_by"][0]
            .as_str()
            .unwrap()
            .starts_with("ssh-key SHA256:"),
        "{record}"
    );
}

#[test]
fn invalid_obligations_fail_closed() {
    let data = tempfile::tempdir().unwrap();
    let policy = format!("{HOLD_WRITES}\napproval := {{\"on_timeout\": \"allow\"}}\n");
    let mut fw = firewall(&policy, data.path(), 0, &[]);
    let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert_eq!(resp["result"]["isError"], true);
    assert!(text(&resp).contains("on_timeout"), "{resp}");
}

// ---- The authorization boundary: who can approve, and what an answer binds.

#[test]
fn the_cli_without_a_registered_key_records_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &[]);
    let id = approval_id(&fw.call("write_note", json!({"name": "a", "content": "b"})));
    // What an agent with a shell would try: no key at all.
    let (ok, out) = cli(
        data.path(),
        &["approve", &id, "--as", "carol", "--reason", "sure"],
    );
    assert!(!ok, "{out}");
    // A key of its own, registered for nobody, or for someone else.
    let (ok, out) = answer(data.path(), "approve", &id, "carol", "eve", "sure");
    assert!(!ok && out.contains("not registered for"), "{out}");
    let (ok, out) = answer(data.path(), "approve", &id, "eve", "eve", "sure");
    assert!(!ok && out.contains("no key is registered"), "{out}");
    let (ok, out) = answer(
        data.path(),
        "approve",
        &id,
        "carol",
        "dave_encrypted",
        "sure",
    );
    assert!(!ok && out.contains("ssh-keygen -Y sign"), "{out}");
    let (_, shown) = cli(data.path(), &["show", &id]);
    let record: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(record["status"], "pending");
    assert_eq!(record["answers"], json!([]), "nothing recorded");
}

/// The manual route: `approvals message` prints the bytes, `ssh-keygen -Y
/// sign` signs them, `--signature` records the answer.
#[test]
fn an_ssh_keygen_signature_is_an_equally_valid_answer() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &[]);
    let args = json!({"name": "k", "content": "signed elsewhere"});
    let id = approval_id(&fw.call("write_note", args.clone()));
    let ts = now().to_string();
    let (ok, message) = cli(
        data.path(),
        &[
            "message",
            &id,
            "--decision",
            "approve",
            "--as",
            "carol",
            "--reason",
            "by hand",
            "--timestamp",
            &ts,
        ],
    );
    assert!(ok, "{message}");
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("answer.json");
    std::fs::write(&msg, &message).unwrap();
    let private = dir.path().join("carol");
    std::fs::copy(key("carol"), &private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "mcp-firewall-approval", "-f"])
        .arg(&private)
        .arg(&msg)
        .status()
        .unwrap();
    assert!(status.success());
    let sig = dir.path().join("answer.json.sig");
    let (ok, out) = cli(
        data.path(),
        &[
            "approve",
            &id,
            "--as",
            "carol",
            "--reason",
            "by hand",
            "--signature",
            sig.to_str().unwrap(),
            "--timestamp",
            &ts,
        ],
    );
    assert!(ok && out.contains("approved"), "{out}");
    let released = fw.call("write_note", args);
    assert_eq!(released["result"]["isError"], false, "{released}");
}

/// An agent that can write the approval database (same OS user) forges an
/// approved answer and a grant, or moves a real signed answer onto another
/// approval: the firewall verifies every answer itself and releases nothing.
#[test]
fn answers_written_straight_into_the_store_release_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &[]);
    let forged_args = json!({"name": "forged", "content": "x"});
    let forged = approval_id(&fw.call("write_note", forged_args.clone()));
    let real_args = json!({"name": "real", "content": "y"});
    let real = approval_id(&fw.call("write_note", real_args.clone()));
    let (ok, out) = answer(
        data.path(),
        "approve",
        &real,
        "carol",
        "carol",
        "this one only",
    );
    assert!(ok, "{out}");

    let db = rusqlite::Connection::open(data.path().join("approvals.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let digest = digest_of(data.path(), &forged);
    // Carol's genuine proof, from the real approval, copied onto the forged one.
    let proof: String = db
        .query_row(
            "SELECT proof FROM answers WHERE approval_id = ?1",
            [&real],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "INSERT INTO answers (approval_id, approver_key, approver, decision, reason, channel, at, proof)
         VALUES (?1, 'carol', 'carol', 'approve', 'this one only', 'cli', 0, ?2)",
        rusqlite::params![forged, proof],
    )
    .unwrap();
    db.execute(
        "UPDATE approvals SET status = 'approved' WHERE id = ?1",
        [&forged],
    )
    .unwrap();
    db.execute(
        "INSERT INTO grants (approval_id, digest, approvers, expires_at) VALUES (?1, ?2, '[\"carol\"]', 9999999999999999)",
        rusqlite::params![forged, digest],
    )
    .unwrap();
    let refused = fw.call("write_note", forged_args);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        text(&refused).contains("does not release this call"),
        "{refused}"
    );
    let unverified = fw.wait_audit("unverified", |r| {
        r["event"] == "approval.unverified" && r["approval_id"] == forged.as_str()
    });
    assert!(
        unverified["error"].as_str().unwrap().contains("carol"),
        "{unverified}"
    );
    // The genuine one still releases its own call, once ...
    let released = fw.call("write_note", real_args.clone());
    assert_eq!(released["result"]["isError"], false, "{released}");
    // ... even if its "used" marks are rolled back in the file.
    db.execute(
        "UPDATE approvals SET status = 'approved' WHERE id = ?1",
        [&real],
    )
    .unwrap();
    db.execute(
        "UPDATE grants SET used_at = NULL WHERE approval_id = ?1",
        [&real],
    )
    .unwrap();
    let replayed = fw.call("write_note", real_args);
    assert_eq!(replayed["result"]["isError"], true, "{replayed}");
    assert!(text(&replayed).contains("already released"), "{replayed}");
}

/// A bot answer is bound to its approval and call: a body naming another
/// approval, or one signed for approval A replayed byte for byte to B on a
/// second firewall sharing the secret, is refused.
#[test]
fn bot_answers_are_bound_to_their_approval() {
    let data_a = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let mut fw_a = firewall(
        HOLD_WRITES,
        data_a.path(),
        0,
        &["--approval-listen", &format!("127.0.0.1:{port_a}")],
    );
    let mut fw_b = firewall(
        HOLD_WRITES,
        data_b.path(),
        0,
        &["--approval-listen", &format!("127.0.0.1:{port_b}")],
    );
    let args = json!({"name": "one", "content": "call"});
    let args_b = json!({"name": "another", "content": "call"});
    let id_a = approval_id(&fw_a.call("write_note", args.clone()));
    let id_b = approval_id(&fw_b.call("write_note", args_b.clone()));
    let digest_a = digest_of(data_a.path(), &id_a);
    let digest_b = digest_of(data_b.path(), &id_b);

    let body_a = bot_body(&id_a, &digest_a, "approve", "bob", "fine");
    let headers_a = signed_headers(SECRET, "msg-for-a", now(), &body_a);
    let (status, reply) = http_post(port_b, &format!("/approvals/{id_b}"), &headers_a, &body_a);
    assert_eq!(status, 403, "A's answer replayed at B: {reply}");
    // Naming B, but for another call's digest.
    let misbound = bot_body(&id_b, &digest_a, "approve", "bob", "fine");
    let (status, reply) = http_post(
        port_b,
        &format!("/approvals/{id_b}"),
        &signed_headers(SECRET, "msg-b-1", now(), &misbound),
        &misbound,
    );
    assert_ne!(digest_a, digest_b);
    assert_eq!(status, 403, "digest mismatch: {reply}");
    let still = fw_b.call("write_note", args_b);
    assert!(text(&still).starts_with("Approval pending"), "{still}");
    // A's own answer at A works, once.
    let (status, reply) = http_post(port_a, &format!("/approvals/{id_a}"), &headers_a, &body_a);
    assert_eq!(status, 200, "{reply}");
    let released = fw_a.call("write_note", args);
    assert_eq!(released["result"]["isError"], false, "{released}");
    fw_b.wait_audit("rejection at B", |r| {
        r["event"] == "approval.answer_rejected"
    });
}

#[test]
fn an_unsigned_or_misbound_synchronous_answer_releases_nothing() {
    for mode in ["approve-unsigned", "approve-other"] {
        let receiver = Receiver::start(mode, &[SECRET]);
        let data = tempfile::tempdir().unwrap();
        let mut fw = firewall(
            HOLD_WRITES,
            data.path(),
            2,
            &["--approval-webhook", &receiver.url()],
        );
        let resp = fw.call("write_note", json!({"name": "a", "content": "b"}));
        assert!(
            text(&resp).starts_with("Approval pending"),
            "{mode}: {resp}"
        );
        let rejected = fw.wait_audit("rejected sync answer", |r| {
            r["event"] == "approval.answer_rejected" && r["channel"] == "webhook-response"
        });
        assert!(rejected["error"].as_str().is_some(), "{mode}: {rejected}");
    }
}

#[test]
fn a_plain_http_webhook_beyond_loopback_is_refused_at_start() {
    let out = Command::new(firewall_bin())
        .args([
            "run",
            "--approval-webhook",
            "http://hooks.example.com/approve",
            "--",
            "true",
        ])
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain http is accepted only to a loopback host"),
        "{err}"
    );
}

/// Look-alike names cannot make a quorum: `bob` and `bоb` (Cyrillic о).
#[test]
fn look_alike_approvers_do_not_make_a_quorum() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut fw = firewall(
        &quorum_policy(2),
        data.path(),
        0,
        &["--approval-listen", &format!("127.0.0.1:{port}")],
    );
    let args = json!({"name": "q", "content": "look-alikes"});
    let id = approval_id(&fw.call("write_note", args.clone()));
    let digest = digest_of(data.path(), &id);
    for (n, (name, expected)) in [
        ("bob", 200),
        ("b\u{043e}b", 400),
        ("BOB", 409),
        ("bob\u{200b}", 409),
    ]
    .into_iter()
    .enumerate()
    {
        let body = bot_body(&id, &digest, "approve", name, "ok");
        let (status, reply) = http_post(
            port,
            &format!("/approvals/{id}"),
            &signed_headers(SECRET, &format!("q-{n}"), now(), &body),
            &body,
        );
        assert_eq!(status, expected, "{name:?}: {reply}");
    }
    let still = fw.call("write_note", args);
    assert!(
        text(&still).starts_with("Approval pending"),
        "one approver is not two: {still}"
    );
}

/// If the release cannot be written to the audit log, the call is refused.
#[test]
fn a_release_that_cannot_be_audited_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let events_log = tempfile::NamedTempFile::new().unwrap();
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .approval_wait(30)
        .env("FIXTURE_EVENT_LOG", events_log.path().to_str().unwrap())
        .arg("--principal")
        .arg("alice")
        .arg("--approvers")
        .arg(&approvers_file(data.path()))
        .wrap_fixture();
    fw.initialize();
    // Grow the audit log past the approval database's files, so the size
    // limit below stops audit writes while SQLite can still write.
    let big = "x".repeat(512 * 1024);
    for _ in 0..6 {
        assert_eq!(
            text(&fw.call("echo", json!({"text": big}))).len(),
            big.len()
        );
    }
    let id = fw.send_request(
        "tools/call",
        json!({"name": "write_note", "arguments": {"name": "audited", "content": "or not at all"}}),
    );
    let requested = fw.wait_audit("request", |r| r["event"] == "approval.requested");
    let approval = requested["approval_id"].as_str().unwrap().to_string();
    // From now on the firewall cannot grow its audit log.
    let size = std::fs::metadata(&fw.audit_path).unwrap().len();
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", fw.child.id()))
        .arg(format!("--fsize={size}"))
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, out) = answer(
        data.path(),
        "approve",
        &approval,
        "carol",
        "carol",
        "go ahead",
    );
    assert!(ok, "{out}");
    let resp = fw.response(&id);
    assert_eq!(resp["result"]["isError"], true, "{resp}");
    assert!(text(&resp).to_lowercase().contains("audit"), "{resp}");
    let ran = std::fs::read_to_string(events_log.path()).unwrap_or_default();
    assert!(!ran.contains("write_note"), "the call never ran: {ran}");
}

/// `_meta` (but the progress token) and extra params are part of the call
/// an approver approved: changing them needs a new approval.
#[test]
fn meta_and_extra_params_are_bound_into_the_approval() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &[]);
    let call = |meta: Value| json!({"name": "write_note", "arguments": {"name": "m", "content": "c"}, "_meta": meta});
    let pending = fw.request(
        "tools/call",
        call(json!({"trace": "a", "progressToken": 1})),
    );
    let id = approval_id(&pending);
    let (ok, out) = answer(
        data.path(),
        "approve",
        &id,
        "carol",
        "carol",
        "trace a only",
    );
    assert!(ok, "{out}");
    let other_meta = fw.request("tools/call", call(json!({"trace": "b"})));
    assert!(
        text(&other_meta).starts_with("Approval pending"),
        "{other_meta}"
    );
    let mut with_extra = call(json!({"trace": "a"}));
    with_extra["run_as"] = json!("root");
    let extra = fw.request("tools/call", with_extra);
    assert!(text(&extra).starts_with("Approval pending"), "{extra}");
    let same = fw.request(
        "tools/call",
        call(json!({"trace": "a", "progressToken": 99})),
    );
    assert_eq!(same["result"]["isError"], false, "{same}");
}

/// Issue 11, item 4: a busy approval database stalls only the calls that
/// need it. Another process holds `approvals.db`'s write lock; four held
/// calls wait on it (SQLite's busy timeout) on a firewall with two runtime
/// workers; a read-only call sent after them is answered before any of
/// them. Before, each waiting call blocked a worker, and with both blocked
/// nothing else in the process ran until the timeout refused the calls.
#[test]
fn a_locked_approval_database_stalls_only_the_calls_that_need_it() {
    let data = tempfile::tempdir().unwrap();
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .approval_wait(1)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .env("TOKIO_WORKER_THREADS", "2")
        .arg("--principal")
        .arg("alice")
        .arg("--approvers")
        .arg(&approvers_file(data.path()))
        .wrap_fixture();
    fw.initialize();
    // Listed (and the tools pinned) before the database is locked.
    fw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    let listed = fw.response(&json!(1));
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    // Take the database's write lock.
    let db = data.path().join("approvals.db");
    let mut locker = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('LOCKED', flush=True)\n\
             sys.stdin.readline()\n\
             c.execute('ROLLBACK')\n",
        )
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "LOCKED");

    for i in 0..4 {
        fw.send(&json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                        "params": {"name": "write_note", "arguments": {"name": format!("n{i}"), "content": "x"}}}));
    }
    // All four decided (held): now each waits for the database.
    let deadline = std::time::Instant::now() + WAIT;
    while fw
        .audit_records()
        .iter()
        .filter(|r| r["event"] == "call.decided" && r.to_string().contains("write_note"))
        .count()
        < 4
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the held calls were never decided"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    fw.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "read_note", "arguments": {"name": "hello"}}}));
    let first = fw.recv_where("the first answer", |m| {
        m.get("id").is_some() && m.get("method").is_none()
    });
    let stdin = locker.stdin.take();
    drop(stdin);
    let _ = locker.wait();
    assert_eq!(
        first["id"], 7,
        "the read-only call waited behind the calls stuck on the database: {first}"
    );
    assert!(first["result"]["content"][0]["text"].is_string(), "{first}");
    // The held calls end one way or the other (refused when the lock
    // outlived the busy timeout, else held); none is lost.
    for i in 0..4 {
        let answer = fw.response(&json!(100 + i));
        assert!(
            answer.get("result").is_some() || answer.get("error").is_some(),
            "{answer}"
        );
    }
}

/// One principal's pending requests are bounded: past the limit a call that
/// would be held is refused and recorded, so a looping agent cannot bury the
/// approvers in requests. A repeat of a pending call is not a new request;
/// a decided request frees its place; another principal sharing the store
/// still files its own.
#[test]
fn a_principal_cannot_file_more_pending_requests_than_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let limit = ["--approval-max-pending", "2"];
    let mut fw = firewall(HOLD_WRITES, data.path(), 0, &limit);
    let note = |name: &str| json!({"name": name, "content": "x"});
    let first = fw.call("write_note", note("a"));
    assert!(text(&first).starts_with("Approval pending"), "{first}");
    let second = fw.call("write_note", note("b"));
    assert!(text(&second).starts_with("Approval pending"), "{second}");
    let repeat = fw.call("write_note", note("a"));
    assert_eq!(approval_id(&repeat), approval_id(&first));

    let third = fw.call("write_note", note("c"));
    assert_eq!(third["result"]["isError"], true, "{third}");
    assert!(
        text(&third).contains("alice already has 2 approval requests pending (the limit is 2)"),
        "{third}"
    );
    let failed = fw.wait_audit("approval.failed", |r| r["event"] == "approval.failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("the limit is 2"),
        "{failed}"
    );

    let (ok, out) = answer(
        data.path(),
        "deny",
        &approval_id(&first),
        "carol",
        "carol",
        "no",
    );
    assert!(ok, "{out}");
    let after = fw.call("write_note", note("c"));
    assert!(text(&after).starts_with("Approval pending"), "{after}");

    let mut bob = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data.path())
        .approval_wait(0)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .args(&[
            "--principal",
            "bob",
            "--approvers",
            &approvers_file(data.path()),
        ])
        .args(&limit)
        .wrap_fixture();
    bob.initialize();
    let theirs = bob.call("write_note", note("d"));
    assert!(text(&theirs).starts_with("Approval pending"), "{theirs}");
}

/// A firewall holding `write_note` calls, answerable on its approval
/// listener (returned), with `settings` under `[approval]`.
fn answerable_with(data: &Path, settings: &str) -> (Firewall, String) {
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("mcp-firewall.toml");
    std::fs::write(&file, format!("[approval]\n{settings}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(data)
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .args(&[
            "--config",
            file.to_str().unwrap(),
            "--approval-listen",
            &listen,
        ])
        .keep(config)
        .wrap_fixture();
    fw.initialize();
    (fw, listen)
}

/// A client that sends part of an answer's body and stops is cut off at
/// the header-read deadline (`[approval] header_read_timeout_seconds`, 30 s
/// by default, 2 s here): `408`, and its connection slot is free. Before,
/// it held the slot as long as it liked, and 256 such clients left no slot
/// for an approver's or Slack's answer.
#[test]
fn a_trickled_answer_is_cut_off_at_the_deadline() {
    use std::io::{Read, Write};
    let data = tempfile::tempdir().unwrap();
    let (mut fw, listen) = answerable_with(data.path(), "header_read_timeout_seconds = 2");
    let held = fw.call("write_note", json!({"name": "a", "content": "b"}));
    let id = approval_id(&held);
    let mut slow = std::net::TcpStream::connect(&listen).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "POST /approvals/{id} HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"decision\""
    );
    slow.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("did not arrive whole within 2s"), "{got}");
}

/// `[approval] max_connections` caps the approval listener (256 by
/// default): with the cap at 4 and six idle connections open, one more is
/// refused at once (`503`); once they close, a request is served again. A
/// team whose approvers' browsers and bots need more can raise it; before,
/// the cap was a constant and the setting refused the config.
#[test]
fn the_approval_listener_holds_as_many_connections_as_configured() {
    use std::io::{Read, Write};
    let data = tempfile::tempdir().unwrap();
    let (_fw, listen) = answerable_with(data.path(), "max_connections = 4");
    let get =
        format!("GET /approvals/apr_none HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
    let answer = |mut stream: std::net::TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(get.as_bytes());
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let idle: Vec<std::net::TcpStream> = (0..6)
        .map(|_| std::net::TcpStream::connect(&listen).unwrap())
        .collect();
    // The refusal comes once the firewall has taken the idle ones in.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = answer(std::net::TcpStream::connect(&listen).unwrap());
        if got.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = answer(std::net::TcpStream::connect(&listen).unwrap());
        if !got.starts_with("HTTP/1.1 503") && got.starts_with("HTTP/1.1 ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still refused: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
