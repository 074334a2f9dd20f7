//! Slack and Teams approvals through the real binary: a fake Slack (a
//! loopback HTTP server standing in for the incoming webhook and the
//! interactions' `response_url`) receives the Block Kit message; the tests
//! post button clicks to `/slack/interactions` signed the way Slack
//! documents it (`v0=` HMAC-SHA256 over `v0:timestamp:body`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mcp_firewall::approval::slack::SlackSecret;
use serde_json::{Value, json};

const SIGNING_SECRET: &str = "slack-signing-secret-of-the-tests";
const WEBHOOK_SECRET: &str = "whsec_bWNwLWZpcmV3YWxsLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=";
/// What the fake answers every POST with: the Web API's success shape.
const WEB_API_OK: &str = r#"{"ok":true,"channel":"C0APPROVALS","ts":"1700000000.000100"}"#;

const HOLD_WRITES: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
approve contains "notes change: a human decides" if input.tool.name in {"write_note", "delete_note"}
"#;

/// A loopback HTTP server that records every POST (path, JSON body).
struct FakeSlack {
    port: u16,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeSlack {
    fn start() -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let record = record.clone();
                std::thread::spawn(move || serve_one(stream, &record));
            }
        });
        FakeSlack { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The first POST to `path` whose body satisfies `pred`.
    fn wait(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((_, body)) = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|(p, b)| p == path && pred(b))
            {
                return body.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nothing posted to {path}: {:?}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(stream: TcpStream, record: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    record
        .lock()
        .unwrap()
        .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    let mut stream = stream;
    let _ =
        stream.write_all(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{WEB_API_OK}",
            WEB_API_OK.len()
        )
        .as_bytes());
}

/// bob answers in Slack as U0BOB; alice (the requester) is U0ALICE.
fn config(dir: &Path, slack: &FakeSlack, listen: &str, bot: bool) -> String {
    let target = if bot {
        format!(
            "bot_token_env = \"TEST_SLACK_BOT_TOKEN\"\nchannel = \"C0APPROVALS\"\napi_url = \"{}\"",
            slack.url("/api")
        )
    } else {
        format!("webhook_url = \"{}\"", slack.url("/webhook"))
    };
    let text = format!(
        r#"
[approval]
listen = "{listen}"

[approval.slack]
{target}
signing_secret_env = "TEST_SLACK_SIGNING_SECRET"

[approval.teams]
webhook_url = "{teams}"

[[approver]]
name = "bob"
slack_user = "U0BOB"
groups = ["sre"]

[[approver]]
name = "alice"
slack_user = "U0ALICE"

[[upstream]]
name = "notes"
command = "{fixture}"
"#,
        teams = slack.url("/teams"),
        fixture = fixture_bin(),
    );
    let path = dir.join("mcp-firewall.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn start(slack: &FakeSlack) -> (Firewall, u16, tempfile::TempDir) {
    start_as(slack, false)
}

fn start_as(slack: &FakeSlack, bot: bool) -> (Firewall, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut fw = Builder::new()
        .rego(HOLD_WRITES)
        .data_dir(&dir.path().join("data"))
        .approval_wait(0)
        .env("TEST_SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("TEST_SLACK_BOT_TOKEN", "xoxb-test-token")
        .env("MCP_FIREWALL_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .args(&[
            "--principal",
            "alice",
            "--config",
            &config(dir.path(), slack, &listen, bot),
        ])
        .start();
    fw.initialize();
    (fw, port, dir)
}

fn approval_id(resp: &Value) -> String {
    resp["result"]["_meta"]["mcp-firewall/approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {resp}"))
        .to_string()
}

/// A `block_actions` payload as Slack sends it for a click on `action`.
fn click(message: &Value, user: &str, action: &str, reason: &str, response_url: &str) -> Vec<u8> {
    let actions = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    let button = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action_id"] == action)
        .unwrap();
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action, "block_id": actions["block_id"],
                     "value": button["value"], "action_ts": "1700000001.000200"}],
        "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
    });
    url_encode_payload(&payload.to_string())
}

fn url_encode_payload(payload: &str) -> Vec<u8> {
    let mut out = String::from("payload=");
    for b in payload.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out.into_bytes()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POST a click signed with `secret` at `ts`; returns (status, body).
fn post_click(port: u16, body: &[u8], secret: &str, ts: i64) -> (u16, String) {
    let signature = SlackSecret::new(secret).unwrap().sign(ts, body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /slack/interactions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {signature}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

#[test]
fn a_signed_click_by_a_directory_approver_releases_the_call() {
    let slack = FakeSlack::start();
    let (mut fw, port, _dir) = start(&slack);
    let args = json!({"name": "plan", "content": "ship it"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));

    let message = slack.wait("/webhook", |m| m.to_string().contains(&id));
    let text = message.to_string();
    assert!(
        text.contains("Approval needed: notes / write_note"),
        "{text}"
    );
    assert!(text.contains("notes change: a human decides"), "{text}");
    assert!(text.contains("ship it"), "arguments are shown: {text}");
    assert!(
        text.contains(&format!("/approvals/{id}")),
        "console link: {text}"
    );
    // Teams gets an Adaptive Card with the same summary and the link.
    let card = slack.wait("/teams", |m| m.to_string().contains(&id));
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(card.to_string().contains(&format!("/approvals/{id}")));

    let body = click(&message, "U0BOB", "approve", "", &slack.url("/respond/1"));
    let (status, reply) = post_click(port, &body, SIGNING_SECRET, now());
    assert_eq!(status, 200, "{reply}");
    // The original message is replaced with the outcome.
    let update = slack.wait("/respond/1", |_| true);
    assert_eq!(update["replace_original"], true, "{update}");
    assert!(
        update["text"].as_str().unwrap().contains("Approved by bob"),
        "{update}"
    );
    // The same request again is a replay.
    let (status, _) = post_click(port, &body, SIGNING_SECRET, now());
    assert!(status == 409 || status == 200, "replay: {status}");

    let resp = fw.call("notes__write_note", args);
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    let released = fw.wait_audit("release", |r| r["event"] == "approval.released");
    assert_eq!(released["approvers"], json!(["bob"]));
    assert_eq!(released["verified_by"], json!(["slack user U0BOB"]));
    assert_eq!(released["answers"][0]["channel"], "slack");
    let notified = fw.wait_audit("notified", |r| r["event"] == "approval.notified");
    assert_eq!(notified["approval_id"], id.as_str());
}

#[test]
fn forged_stale_unmapped_self_and_reasonless_clicks_are_refused() {
    let slack = FakeSlack::start();
    let (mut fw, port, _dir) = start(&slack);
    let args = json!({"name": "plan", "content": "forged"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));
    let message = slack.wait("/webhook", |m| m.to_string().contains(&id));

    // Signed with another secret, or too old: not from Slack.
    let body = click(&message, "U0BOB", "approve", "", &slack.url("/r/forged"));
    let (status, _) = post_click(port, &body, "not-the-signing-secret-at-all", now());
    assert_eq!(status, 401);
    let (status, _) = post_click(port, &body, SIGNING_SECRET, now() - 6 * 60);
    assert_eq!(status, 401);

    // A Slack user the directory does not know is told why.
    let body = click(&message, "U0EVE", "approve", "", &slack.url("/r/eve"));
    let (status, _) = post_click(port, &body, SIGNING_SECRET, now());
    assert_eq!(status, 200);
    let told = slack.wait("/r/eve", |_| true);
    assert_eq!(told["response_type"], "ephemeral");
    assert!(
        told["text"]
            .as_str()
            .unwrap()
            .contains("not in mcp-firewall's approver directory"),
        "{told}"
    );

    // The requester, signed in to Slack as herself, cannot approve.
    let body = click(&message, "U0ALICE", "approve", "", &slack.url("/r/alice"));
    post_click(port, &body, SIGNING_SECRET, now());
    let told = slack.wait("/r/alice", |_| true);
    assert!(
        told["text"]
            .as_str()
            .unwrap()
            .contains("you made this request"),
        "{told}"
    );

    // A deny needs a reason.
    let body = click(&message, "U0BOB", "deny", "  ", &slack.url("/r/noreason"));
    post_click(port, &body, SIGNING_SECRET, now());
    let told = slack.wait("/r/noreason", |_| true);
    assert!(
        told["text"].as_str().unwrap().contains("needs a reason"),
        "{told}"
    );

    // Still held: none of that counted.
    let again = fw.call("notes__write_note", args.clone());
    assert!(text(&again).starts_with("Approval pending"), "{again}");

    // A deny with a reason ends it, and the client hears the reason.
    let body = click(
        &message,
        "U0BOB",
        "deny",
        "not today",
        &slack.url("/r/deny"),
    );
    let (status, _) = post_click(port, &body, SIGNING_SECRET, now());
    assert_eq!(status, 200);
    let update = slack.wait("/r/deny", |_| true);
    assert!(
        update["text"].as_str().unwrap().contains("Denied by bob"),
        "{update}"
    );
    let denied = fw.wait_audit("deny", |r| {
        r["event"] == "approval.answered" && r["decision"] == "deny"
    });
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["reason"], "not today");
    assert_eq!(denied["verified_by"], "slack user U0BOB");
    let rejected: Vec<Value> = fw
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "approval.answer_rejected" && r["channel"] == "slack")
        .collect();
    assert!(
        rejected.len() >= 4,
        "every refusal is audited: {rejected:?}"
    );
}

#[test]
fn with_a_bot_token_the_message_goes_through_chat_post_message() {
    let slack = FakeSlack::start();
    let (mut fw, port, _dir) = start_as(&slack, true);
    let args = json!({"name": "bot", "content": "posted by the app"});
    let id = approval_id(&fw.call("notes__write_note", args.clone()));
    let message = slack.wait("/api/chat.postMessage", |m| m.to_string().contains(&id));
    assert_eq!(message["channel"], "C0APPROVALS");
    let body = click(
        &message,
        "U0BOB",
        "approve",
        "fine",
        &slack.url("/respond/bot"),
    );
    let (status, _) = post_click(port, &body, SIGNING_SECRET, now());
    assert_eq!(status, 200);
    let resp = fw.call("notes__write_note", args);
    assert_eq!(resp["result"]["isError"], false, "{resp}");
}

#[test]
fn an_answer_given_elsewhere_updates_the_bot_message() {
    use mcp_firewall::approval::WebhookSecret;
    use mcp_firewall::approval::signing::sign;
    let slack = FakeSlack::start();
    let (mut fw, port, _dir) = start_as(&slack, true);
    let id = approval_id(&fw.call("notes__write_note", json!({"name": "x", "content": "y"})));
    let message = slack.wait("/api/chat.postMessage", |m| m.to_string().contains(&id));
    // The message's ts is remembered once Slack's answer is read; the
    // notification is on record after that (answering before it raced).
    fw.wait_audit("the Slack notification", |r| {
        r["event"] == "approval.notified" && r["approval_id"] == id.as_str()
    });
    let digest = message
        .to_string()
        .split("mcpfw:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // A bot answers at the signed endpoint, for an approver with no Slack identity.
    let body = serde_json::to_vec(
        &json!({"approval_id": id, "digest": digest, "decision": "deny",
        "approver": "deploy-bot", "reason": "not in the window"}),
    )
    .unwrap();
    let ts = now();
    let secrets = [WebhookSecret::parse(WEBHOOK_SECRET).unwrap()];
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /approvals/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nwebhook-id: msg_1\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {}\r\n\r\n",
        body.len(),
        sign(&secrets, "msg_1", ts, &body)
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let update = slack.wait("/api/chat.update", |_| true);
    assert_eq!(update["ts"], "1700000000.000100");
    assert_eq!(update["channel"], "C0APPROVALS");
    let text = update["text"].as_str().unwrap();
    assert!(
        text.contains("Denied by deploy-bot (via endpoint): not in the window"),
        "{text}"
    );
}
