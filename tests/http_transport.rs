//! The HTTP listener, black-box: the real binary with `--listen
//! 127.0.0.1:0` (it prints `listening on http://ADDR` on stderr) in front
//! of the rmcp fixture server, spoken to by the Python MCP SDK over both
//! transports and by raw HTTP (reqwest) for the edges: authentication,
//! Origin, limits, session lifecycle, probes, isolation of sessions.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ALICE_TOKEN: &str = "alice-secret-token";
const BOB_TOKEN: &str = "bob-secret-token";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// A firewall serving HTTP, killed on drop.
struct Server {
    child: Child,
    base: String,
    audit: PathBuf,
    /// Every line the firewall wrote on stderr so far.
    log: Arc<Mutex<Vec<String>>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Processes whose parent is the firewall: its upstream servers.
    fn children(&self) -> usize {
        let me = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            .filter(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == me))
                    .unwrap_or(false)
            })
            .count()
    }

    /// The pids of the firewall's child processes.
    fn child_pids(&self) -> Vec<u32> {
        let me = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let (_, rest) = stat.rsplit_once(')')?;
                (rest.split_whitespace().nth(1)? == me).then_some(pid)
            })
            .collect()
    }

    /// Wait until the firewall has exactly `n` child processes.
    fn wait_children(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.children() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} upstream processes, have {}",
                self.children()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn audit(&self) -> Vec<Value> {
        read_audit(&self.audit)
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Wait for an audit record (records are written on other tasks).
    fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.audit().into_iter().find(&pred) {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no audit record {what}: {:#?}",
                self.audit()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn hex_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A config with the fixture upstream, alice (by digest) and bob (by env).
fn token_config(extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "fx"
command = "{fixture}"

[http]
tokens = [
  {{ principal = "alice", sha256 = "{alice}", attributes = {{ team = "sre" }} }},
  {{ principal = "bob", env = "BOB_TOKEN" }},
]
{extra}
"#,
        fixture = fixture_bin(),
        alice = hex_sha256(ALICE_TOKEN),
    )
}

/// Start the firewall (built by [`listening`]) and wait for its address.
fn start(builder: Builder) -> Server {
    try_start(builder).unwrap_or_else(|e| panic!("firewall did not start listening: {e}"))
}

fn try_start(builder: Builder) -> Result<Server, String> {
    try_start_with(builder, |_| {})
}

/// [`try_start`], with `prepare` applied to the command first.
fn try_start_with(
    mut builder: Builder,
    prepare: impl FnOnce(&mut std::process::Command),
) -> Result<Server, String> {
    let (mut cmd, audit) = builder.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    prepare(&mut cmd);
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcp-firewall");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            kept.lock().unwrap().push(line.clone());
            if !sent && let Some(addr) = line.strip_prefix("mcp-firewall: listening on ") {
                let _ = tx.send(Ok(addr.to_string()));
                sent = true;
            }
        }
        let _ = tx.send(Err("stderr closed before listening".to_string()));
    });
    let base = match rx.recv_timeout(WAIT).map_err(|e| e.to_string()) {
        Ok(Ok(base)) => base,
        Ok(Err(e)) | Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Server {
        child,
        base,
        audit,
        log,
        _dirs: builder.into_dirs(),
    })
}

fn with_config(text: &str) -> Builder {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp-firewall.toml");
    std::fs::write(&file, text).unwrap();
    listening()
        .arg("--config")
        .arg(file.to_str().unwrap())
        .env("BOB_TOKEN", BOB_TOKEN)
        .keep(dir)
}

/// `run ... --listen 127.0.0.1:0` (port chosen by the OS, read from stderr).
fn listening() -> Builder {
    Builder::new().arg("--listen").arg("127.0.0.1:0")
}

fn wrap_fixture() -> Builder {
    listening().arg("--").arg(fixture_bin())
}

fn client() -> reqwest::Client {
    // No connection reuse: after refusing an oversized body the server closes
    // the connection, and a pooled client would race that close.
    reqwest::Client::builder()
        .timeout(WAIT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// An `initialize` with a token nobody was given.
async fn with_a_wrong_token(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(url)
        .bearer_auth("not-a-token")
        .json(&initialize_body())
        .send()
        .await
        .unwrap()
}

fn initialize_body() -> Value {
    rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
               "clientInfo": {"name": "raw-http-test", "version": "1"}}),
    )
}

/// A raw Streamable HTTP session.
struct Raw {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session: String,
}

impl Raw {
    /// initialize + notifications/initialized.
    async fn open(server: &Server, token: Option<&str>) -> Raw {
        let http = client();
        let url = server.url("/mcp");
        let mut request = http
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .json(&initialize_body());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = response.json().await.unwrap();
        assert!(body["result"]["serverInfo"].is_object(), "{body}");
        let raw = Raw {
            http,
            url,
            token: token.map(str::to_string),
            session,
        };
        let status = raw
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .status();
        assert_eq!(status, StatusCode::ACCEPTED);
        raw
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.request_with(method, ACCEPT_BOTH, "2025-06-18")
    }

    /// `header()` adds a value rather than replacing one: tests that need
    /// other values for these headers build the request here.
    fn request_with(
        &self,
        method: reqwest::Method,
        accept: &str,
        version: &str,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, &self.url)
            .header("accept", accept)
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", version);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Read SSE `data:` payloads from a streaming response, one at a time.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Events {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            let chunk = self.response.chunk().await.unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn python() -> PathBuf {
    let p = repo_path("fixtures/python/.venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// Run fixtures/python/http_client.py and return its JSON report.
fn python_http_client(args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(repo_path("fixtures/python/http_client.py"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn python_sdk_over_streamable_http_and_legacy_sse_with_sampling() {
    let server = start(with_config(&token_config("")));
    for (transport, path) in [("streamable", "/mcp"), ("sse", "/sse")] {
        let url = server.url(path);
        let report = python_http_client(&[
            "--transport",
            transport,
            "--url",
            &url,
            "--token",
            ALICE_TOKEN,
            "--tool",
            "fx__sample",
            "--args",
            r#"{"prompt":"hello"}"#,
            "--sample-text",
            &format!("answer-over-{transport}"),
        ]);
        assert!(
            report["tools"]
                .as_array()
                .unwrap()
                .contains(&json!("fx__echo")),
            "{report}"
        );
        assert_eq!(
            report["result"]["content"][0]["text"],
            format!("sampled: answer-over-{transport}"),
            "{report}"
        );
        assert_eq!(report["sampling_prompts"], json!(["hello"]));
        let label = if transport == "sse" {
            "sse"
        } else {
            "streamable-http"
        };
        let started = server.wait_audit("session.started", |r| {
            r["event"] == "session.started" && r["transport"] == label
        });
        assert_eq!(
            started["principal"],
            json!({"id": "alice", "source": "token"})
        );
        let decided = server.wait_audit("call.decided in this session", |r| {
            r["event"] == "call.decided" && r["session_id"] == started["session_id"]
        });
        assert_eq!(decided["principal"]["id"], "alice");
    }
}

/// One principal cannot spend the memory budget for everyone. Alice, with
/// a valid token, sends two request bodies that together leave the 4 MiB
/// budget 152 bytes short of full, and stops sending. Before shares, Bob's
/// `initialize` (a few hundred bytes, counted twice) then got `503` for as
/// long as Alice held on. With two principals, each may hold half by
/// default: Alice's second body is refused, naming her share, and Bob's
/// request is served.
#[tokio::test]
async fn one_principal_cannot_spend_the_memory_budget_for_everyone() {
    use std::io::{Read, Write};
    let metrics = free_port();
    let budget = 4 * 1024 * 1024;
    let config = token_config(&format!(
        "header_read_timeout_seconds = 30\n\n[session]\nmessage_memory_bytes = {budget}\n\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    ));
    let server = start(with_config(&config));
    let addr = server.base.trim_start_matches("http://").to_string();
    let in_use = || metric_sample(metrics, "mcp_firewall_message_memory_bytes") as usize;
    let trickle = |sent: usize| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ALICE_TOKEN}\r\n\
             Content-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\n\
             Content-Length: 2000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        // A refused body's connection may be closed before all of it is sent.
        let _ = s.write_all(&vec![b' '; sent]);
        s
    };
    // Alice's first body: exactly half the budget, counted twice.
    let _first = trickle(budget / 4);
    wait_for(WAIT, || (in_use() >= budget / 2).then_some(())).expect("the first body is counted");
    let mut second = trickle(budget / 4 - 76);
    // The old build counts all of it (the budget is then all but 152 bytes
    // spent); this one refuses it at its first bytes.
    let answer = wait_for(WAIT, || {
        if in_use() >= budget - 152 {
            return Some(String::new());
        }
        let mut got = [0u8; 4096];
        match second.read(&mut got) {
            Ok(n) if n > 0 => Some(String::from_utf8_lossy(&got[..n]).into_owned()),
            _ => None,
        }
    })
    .expect("the second body is answered or counted");
    // Bob is served whatever Alice holds.
    let bob = Raw::open(&server, Some(BOB_TOKEN)).await;
    assert!(!bob.session.is_empty());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("alice already holds 2 MiB")
            && answer.contains("message_memory_per_principal_bytes"),
        "{answer}"
    );
    assert_eq!(in_use(), budget / 2, "Alice holds her share, no more");
}

/// A flood of requests refused before any session opens (a wrong token
/// each, as anyone who can reach the port can send) warned once per
/// request, into the client's log file, for as long as the flood lasted.
/// Now each place in the code writes a burst of lines, then one a second,
/// and a later line says how many it left out.
#[tokio::test]
async fn a_flood_of_refused_requests_leaves_a_few_log_lines() {
    let metrics = free_port();
    let server = start(with_config(&token_config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    ))));
    let http = client();
    for _ in 0..300 {
        let wrong = with_a_wrong_token(&http, &server.url("/mcp")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // The report comes within five seconds of the first line left out.
    let report = wait_for(WAIT, || {
        server
            .log_lines()
            .into_iter()
            .find(|l| l.contains("more lines from") && l.contains("were not written"))
    })
    .unwrap_or_else(|| {
        panic!(
            "no report of the lines left out:\n{}",
            server.log_lines().join("\n")
        )
    });
    let written = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("refused an HTTP request"))
        .count();
    // 20 at once, and one more for each second the flood took.
    assert!(
        (20..=40).contains(&written),
        "{written} warnings for 300 refused requests"
    );
    let left_out: usize = report
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a count in the report");
    assert_eq!(written + left_out, 300, "{report}");
    // The count stays whole where the lines do not.
    let counted = metric_sample(
        metrics,
        "mcp_firewall_http_refused_total{reason=\"unauthenticated\"}",
    );
    assert_eq!(counted, 300.0);
    // Nothing else was lost: a request with a good token is served.
    let session = Raw::open(&server, Some(ALICE_TOKEN)).await;
    assert!(!session.session.is_empty());
}

#[tokio::test]
async fn bearer_tokens_decide_who_the_principal_is() {
    let server = start(with_config(&token_config("")));
    let http = client();
    let mcp = server.url("/mcp");
    let missing = http
        .post(&mcp)
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"mcp-firewall\""
    );
    let wrong = with_a_wrong_token(&http, &mcp).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"mcp-firewall\"")
    );

    let alice = Raw::open(&server, Some(ALICE_TOKEN)).await;
    let call = rpc(
        2,
        "tools/call",
        json!({"name": "fx__echo", "arguments": {"text": "hi"}}),
    );
    // Accept allows SSE and this is a tools/call: the answer is a stream.
    let answer = Events::new(alice.post(&call).await).next().await.unwrap();
    assert_eq!(text(&answer), "hi");
    let decided = server.wait_audit("alice's call", |r| {
        r["event"] == "call.decided" && r["session_id"] == alice.session
    });
    assert_eq!(
        decided["principal"],
        json!({"id": "alice", "source": "token"})
    );
    assert_eq!(
        decided["input"]["principal"]["claims"],
        json!({"team": "sre"})
    );
    assert_eq!(decided["input"]["session"]["transport"], "streamable-http");

    // bob (token from the environment) cannot use alice's session id.
    let bob = Raw {
        http: client(),
        url: mcp.clone(),
        token: Some(BOB_TOKEN.into()),
        session: alice.session.clone(),
    };
    let stolen = bob.post(&rpc(3, "tools/list", json!({}))).await;
    assert_eq!(stolen.status(), StatusCode::NOT_FOUND);
    let bob = Raw::open(&server, Some(BOB_TOKEN)).await;
    assert_ne!(bob.session, alice.session);
    server.wait_audit("bob's session", |r| {
        r["event"] == "session.started" && r["principal"]["id"] == "bob"
    });
}

#[tokio::test]
async fn origin_body_size_session_header_and_protocol_version_are_checked() {
    let server = start(wrap_fixture());
    let http = client();
    let mcp = server.url("/mcp");
    let evil = http
        .post(&mcp)
        .header("origin", "https://evil.example")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let rebinding = http
        .post(&mcp)
        .header("origin", "http://localhost.evil.example")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), StatusCode::FORBIDDEN);
    let local = http
        .post(&mcp)
        .header("origin", "http://localhost:3000")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), StatusCode::OK);

    let raw = Raw::open(&server, None).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let big = raw
        .post(&rpc(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": huge}}),
        ))
        .await;
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let no_session = http
        .post(&mcp)
        .json(&rpc(3, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), StatusCode::BAD_REQUEST);
    let bad_version = raw
        .request_with(reqwest::Method::POST, ACCEPT_BOTH, "1999-01-01")
        .json(&rpc(4, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), StatusCode::BAD_REQUEST);
    let not_json = raw
        .request(reqwest::Method::POST)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let error: Value = not_json.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32700);
}

#[tokio::test]
async fn delete_ends_the_session_and_frees_its_slot() {
    let server = start(with_config(&token_config("max_sessions = 1")));
    let first = Raw::open(&server, Some(ALICE_TOKEN)).await;
    let full = client()
        .post(server.url("/mcp"))
        .bearer_auth(ALICE_TOKEN)
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);

    server.wait_children(1);
    let deleted = first.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // The session's upstream process went with it.
    server.wait_children(0);
    let after = first.post(&rpc(5, "tools/list", json!({}))).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let again = first.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // The slot is free again.
    let second = Raw::open(&server, Some(ALICE_TOKEN)).await;
    let tools: Value = second
        .post(&rpc(2, "tools/list", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert!(tools["result"]["tools"].is_array(), "{tools}");
}

/// A sequential call is handed to the proxy on its connection's task
/// (nothing else is running), not on a task of its own: it must still be
/// one of its session's, ended and recorded as `abandoned` when the session
/// is deleted, with its upstream stopped.
#[tokio::test]
async fn a_call_in_flight_ends_with_its_session() {
    let server = start(wrap_fixture());
    let raw = Raw::open(&server, None).await;
    let call = raw
        .post(&rpc(
            2,
            "tools/call",
            json!({"name": "slow", "arguments": {"seconds": 600}}),
        ))
        .await;
    assert_eq!(call.status(), StatusCode::OK);
    let decided = server.wait_audit("the slow call's decision", |r| {
        r["event"] == "call.decided" && r["target"] == "slow"
    });
    let deleted = raw.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // Its stream ends, without an answer.
    let rest = call.text().await.unwrap();
    assert!(!rest.contains("\"result\""), "{rest}");
    let completed = server.wait_audit("the slow call's outcome", |r| {
        r["event"] == "call.completed" && r["decision_id"] == decided["decision_id"]
    });
    assert_eq!(completed["outcome"], "abandoned", "{completed}");
    server.wait_children(0);
}

/// A hostile upstream starts a process that leaves its group (`setsid`)
/// and keeps its stderr open. Stopping the server with its session cannot
/// kill that process, but the firewall must not keep reading its pipe for
/// ever: a task and a descriptor per session, without end. Before, the
/// relay waited for the pipe to close.
#[tokio::test]
async fn an_escaped_process_does_not_keep_the_firewall_reading_its_stderr() {
    let (server, raw, escaped) = behind_an_escaping_upstream(Held::Stderr, &[]).await;
    let stderr_pipe = std::fs::read_link(format!("/proc/{}/fd/2", escaped.0)).unwrap();
    let held = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| target == stderr_pipe)
    };
    assert!(held(), "the firewall reads {stderr_pipe:?}");
    let deleted = raw.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    server.wait_children(0);
    // The escaped process lives on, holding the pipe; the firewall lets go.
    assert!(escaped.alive());
    let let_go = wait_for(WAIT, || (!held()).then_some(()));
    assert!(let_go.is_some(), "the firewall still holds {stderr_pipe:?}");
}

/// `--shared`: the one server process crashes while a process it started
/// with `setsid` keeps its stdout open. The call that crashed it fails at
/// once, as without that process. Before, the crash was seen only at
/// end-of-file, so the call waited for the upstream deadline (300 s).
#[tokio::test]
async fn a_crashed_shared_upstream_is_seen_though_a_process_it_left_holds_its_stdout() {
    let (_server, raw, escaped) = behind_an_escaping_upstream(Held::Stdout, &["--shared"]).await;
    let crash = raw
        .post(&rpc(
            2,
            "tools/call",
            json!({"name": "crash", "arguments": {}}),
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        crash.contains("is not running") && !crash.contains("\"result\""),
        "{crash}"
    );
    assert!(escaped.alive());
}

/// A firewall in front of [`Escape`]'s upstream (with `flags`), a session
/// opened, and the process the upstream let escape.
async fn behind_an_escaping_upstream(held: Held, flags: &[&str]) -> (Server, Raw, Escaped) {
    let escape = Escape::new(held);
    let mut builder = listening();
    for flag in flags {
        builder = builder.arg(flag);
    }
    let server = start(builder.arg("--").arg("sh").arg("-c").arg(&escape.script));
    let raw = Raw::open(&server, None).await;
    let escaped = escape.escaped();
    (server, raw, escaped)
}

#[tokio::test]
async fn healthz_and_readyz() {
    let server = start(wrap_fixture());
    let http = client();
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let broken = start(listening().arg("--").arg("/nonexistent/mcp-server"));
    let health = http.get(broken.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http.get(broken.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("/nonexistent/mcp-server"),
        "{body}"
    );
}

#[test]
fn a_non_loopback_listener_without_tokens_refuses_to_start() {
    let mut builder = Builder::new()
        .arg("--listen")
        .arg("0.0.0.0:0")
        .arg("--")
        .arg(fixture_bin());
    let (mut cmd, _) = builder.command();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
}

/// Eight sessions call `sample` at once; each sampling request reaches only
/// the session whose call caused it, and each answer only its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_each_see_only_their_own_sampling_request() {
    let server = start(with_config(&token_config("")));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let raw = Raw::open(&server, Some(ALICE_TOKEN)).await;
        tasks.push(tokio::spawn(async move {
            let prompt = format!("prompt-{i}");
            let response = raw
                .post(&rpc(
                    7,
                    "tools/call",
                    json!({"name": "fx__sample", "arguments": {"prompt": prompt}}),
                ))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let mut events = Events::new(response);
            let request = events.next().await.expect("a sampling request");
            assert_eq!(request["method"], "sampling/createMessage", "{request}");
            assert_eq!(
                request["params"]["messages"][0]["content"]["text"], prompt,
                "session {i} saw another session's request"
            );
            let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
                "role": "assistant", "model": "test", "stopReason": "endTurn",
                "content": {"type": "text", "text": format!("answer-{i}")}}});
            assert_eq!(raw.post(&answer).await.status(), StatusCode::ACCEPTED);
            let result = events.next().await.expect("the call's response");
            assert_eq!(result["id"], 7);
            assert_eq!(text(&result), format!("sampled: answer-{i}"));
            assert!(
                events.next().await.is_none(),
                "the stream ends after the response"
            );
            raw.session
        }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await.unwrap());
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 8);
}

/// Logs read by no terminal carry no colour codes: MCP clients keep a
/// server's stderr in log files, where escape codes are noise to read and
/// to grep.
#[test]
fn logs_to_a_pipe_carry_no_terminal_escape_codes() {
    let mut builder = wrap_fixture();
    let (mut cmd, _audit) = builder.command();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("NO_COLOR")
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("mcp-firewall: listening on ");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    // The tokenless listener's warning, with its field, is logged before.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("principal=root")),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped logs: {text:?}"
    );
}

/// A server request with no POST stream to carry it waits for the session's
/// GET stream.
#[tokio::test]
async fn get_stream_carries_messages_not_tied_to_a_streaming_request() {
    let server = start(wrap_fixture());
    let raw = Raw::open(&server, None).await;
    // JSON-only Accept: the call is answered with JSON, so the sampling
    // request must go elsewhere.
    let call = {
        let r = raw
            .request_with(reqwest::Method::POST, "application/json", "2025-06-18")
            .json(&rpc(
                9,
                "tools/call",
                json!({"name": "sample", "arguments": {"prompt": "via-get"}}),
            ));
        tokio::spawn(r.send())
    };
    let stream = raw.request(reqwest::Method::GET).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let second = raw.request(reqwest::Method::GET).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let mut events = Events::new(stream);
    let request = events.next().await.unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "model": "t", "content": {"type": "text", "text": "got-it"}}});
    assert_eq!(raw.post(&answer).await.status(), StatusCode::ACCEPTED);
    let response: Value = call.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(text(&response), "sampled: got-it");
}

/// A raw MCP 2026-07-28 (stateless) request: no session, the lifecycle
/// headers, and the client's version, info and capabilities in `_meta`.
fn stateless(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    id: i64,
    method: &str,
    params: Value,
) -> reqwest::RequestBuilder {
    let client = json!({"name": "stateless-test", "version": "1"});
    stateless_as(
        http,
        server,
        token,
        (id, method, params),
        &client,
        &json!({}),
    )
}

/// [`stateless`] from a client with this info and these capabilities.
fn stateless_as(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    (id, method, mut params): (i64, &str, Value),
    client: &Value,
    capabilities: &Value,
) -> reqwest::RequestBuilder {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": client,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    });
    let mut r = http
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    let name = match method {
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => params.get("name"),
    };
    if let Some(name) = name.and_then(Value::as_str) {
        r = r.header("mcp-name", name);
    }
    r.json(&rpc(id, method, params))
}

/// Issue 16, item 3: the 2026-07-28 tasks extension through the stateless
/// bridge. Its methods need the client to declare the extension (`-32021`);
/// a task is polled through the bridge that made it, whatever the poll's
/// own client info, and only by its principal; the v1 methods are gone.
#[tokio::test]
async fn stateless_tasks_need_the_extension_and_stay_with_their_principal() {
    let config = format!(
        r#"
[[upstream]]
name = "conf"
command = "{fixture}"

[http]
tokens = [
  {{ principal = "alice", sha256 = "{alice}" }},
  {{ principal = "bob", env = "BOB_TOKEN" }},
]

[approval]
tasks = true
"#,
        fixture = env!("CARGO_BIN_EXE_mcp-firewall-conformance-fixture"),
        alice = hex_sha256(ALICE_TOKEN),
    );
    let hold_greetings = "package mcp.firewall\n\nallow if not input.tool.name == \"greet\"\n";
    let server = start(with_config(&config).rego(hold_greetings));
    let http = client();
    let tasks = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let sdk = json!({"name": "sdk", "version": "2"});
    let send = |token, id, method, params: Value, client: &Value, caps: &Value| {
        json_of(stateless_as(
            &http,
            &server,
            token,
            (id, method, params),
            client,
            caps,
        ))
    };

    let discover = send(ALICE_TOKEN, 1, "server/discover", json!({}), &sdk, &tasks).await;
    let caps = &discover["result"]["capabilities"];
    assert!(
        caps["extensions"]["io.modelcontextprotocol/tasks"].is_object(),
        "{discover}"
    );
    let created = send(
        ALICE_TOKEN,
        2,
        "tools/call",
        json!({"name": "conf__slow_compute", "arguments": {"seconds": 60}}),
        &sdk,
        &tasks,
    )
    .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_string();

    // Without the extension: -32021, naming it.
    let undeclared = send(
        ALICE_TOKEN,
        3,
        "tasks/get",
        json!({"taskId": task}),
        &sdk,
        &json!({}),
    )
    .await;
    assert_eq!(undeclared["error"]["code"], -32021, "{undeclared}");
    assert!(
        undeclared["error"]["data"]["requiredCapabilities"]["extensions"]
            ["io.modelcontextprotocol/tasks"]
            .is_object(),
        "{undeclared}"
    );
    // Another client of alice's (another bridge) reaches her task.
    let other = json!({"name": "other-client", "version": "1"});
    let got = send(
        ALICE_TOKEN,
        4,
        "tasks/get",
        json!({"taskId": task}),
        &other,
        &tasks,
    )
    .await;
    assert_eq!(got["result"]["taskId"], task.as_str(), "{got}");
    assert_eq!(got["result"]["status"], "working", "{got}");
    // Bob does not, with any method.
    for (id, method, params) in [
        (5, "tasks/get", json!({"taskId": task})),
        (6, "tasks/cancel", json!({"taskId": task})),
        (
            7,
            "tasks/update",
            json!({"taskId": task, "inputResponses": {}}),
        ),
    ] {
        let refused = send(BOB_TOKEN, id, method, params, &sdk, &tasks).await;
        assert_eq!(refused["error"]["code"], -32602, "{method}: {refused}");
    }
    // The v1 methods are not part of 2026-07-28.
    for (id, method) in [(8, "tasks/result"), (9, "tasks/list")] {
        let gone = send(
            ALICE_TOKEN,
            id,
            method,
            json!({"taskId": task}),
            &sdk,
            &tasks,
        )
        .await;
        assert_eq!(gone["error"]["code"], -32601, "{method}: {gone}");
    }
    let ack = send(
        ALICE_TOKEN,
        10,
        "tasks/cancel",
        json!({"taskId": task}),
        &sdk,
        &tasks,
    )
    .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}), "{ack}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = send(
            ALICE_TOKEN,
            11,
            "tasks/get",
            json!({"taskId": task}),
            &sdk,
            &tasks,
        )
        .await;
        if got["result"]["status"] == "cancelled" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A call the policy holds is a task of the firewall's own, at once.
    let held = send(
        ALICE_TOKEN,
        12,
        "tools/call",
        json!({"name": "conf__greet", "arguments": {"name": "held"}}),
        &sdk,
        &tasks,
    )
    .await;
    assert_eq!(held["result"]["resultType"], "task", "{held}");
    let held_id = held["result"]["taskId"].as_str().unwrap().to_string();
    assert!(held_id.starts_with("fwt_"), "{held}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = send(
            ALICE_TOKEN,
            13,
            "tasks/get",
            json!({"taskId": held_id}),
            &other,
            &tasks,
        )
        .await;
        assert_eq!(got["result"]["status"], "working", "{got}");
        if got["result"]["statusMessage"].to_string().contains("apr_") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.wait_audit("bob's refused poll", |r| {
        r["event"] == "call.decided"
            && r["method"] == "tasks/get"
            && r["principal"]["id"] == "bob"
            && r["result"]["decision"] == "deny"
    });
}

#[tokio::test]
async fn stateless_2026_requests_are_bridged_decided_and_audited() {
    const POLICY: &str = r#"package mcp.firewall

allow if not input.arguments.text == "forbidden"
deny contains "forbidden text" if input.arguments.text == "forbidden"
"#;
    let server = start(with_config(&token_config("")).rego(POLICY));
    let http = client();

    // server/discover comes from the bridge's (2025-11-25) initialize. The
    // fixture offers logging, which the stateless lifecycle cannot carry
    // (logging/setLevel), so 2026-07-28 is not offered: a client in auto
    // mode takes the session lifecycle, as it would direct.
    let discover = stateless(&http, &server, ALICE_TOKEN, 1, "server/discover", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(discover.status(), StatusCode::OK);
    assert!(discover.headers().get("mcp-session-id").is_none());
    let discover: Value = discover.json().await.unwrap();
    let result = &discover["result"];
    assert_eq!(result["resultType"], "complete", "{discover}");
    let versions = result["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!("2025-11-25")), "{discover}");
    assert!(!versions.contains(&json!("2026-07-28")), "{discover}");
    let why = result["_meta"]["mcp-firewall/stateless"]["why"].to_string();
    assert!(why.contains("logging"), "{discover}");
    assert!(result["capabilities"]["tools"].is_object(), "{discover}");
    assert!(result["_meta"]["io.modelcontextprotocol/serverInfo"].is_object());
    // A client that asks for 2026-07-28 anyway is still served by the bridge.

    // A tools/call is decided by the policy and audited under the token's
    // principal, with the client's own id back and a 2026 result shape.
    let call = json!({"name": "fx__echo", "arguments": {"text": "hi"}});
    let answer: Value = stateless(&http, &server, ALICE_TOKEN, 41, "tools/call", call)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], 41, "{answer}");
    assert_eq!(answer["result"]["resultType"], "complete");
    assert_eq!(text(&answer), "hi");
    let decided = server.wait_audit("the stateless call", |r| {
        r["event"] == "call.decided" && r["arguments"]["text"] == "hi"
    });
    assert_eq!(
        decided["principal"],
        json!({"id": "alice", "source": "token"})
    );
    assert_eq!(decided["input"]["session"]["transport"], "streamable-http");
    assert_eq!(decided["result"]["decision"], "allow");
    let started = server.wait_audit("the bridge session", |r| {
        r["event"] == "session.started" && r["session_id"] == decided["session_id"]
    });
    assert_eq!(started["client"]["name"], "stateless-test");

    let refused = json!({"name": "fx__echo", "arguments": {"text": "forbidden"}});
    let answer: Value = stateless(&http, &server, ALICE_TOKEN, 42, "tools/call", refused)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], 42);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let denied = server.wait_audit("the refused call", |r| {
        r["event"] == "call.decided" && r["arguments"]["text"] == "forbidden"
    });
    assert_eq!(denied["result"]["decision"], "deny");
    assert_eq!(denied["session_id"], decided["session_id"], "one bridge");

    // The 2026 transport's checks answer with JSON-RPC errors.
    let wrong_name = stateless(
        &http,
        &server,
        ALICE_TOKEN,
        43,
        "tools/call",
        json!({"name": "fx__echo"}),
    )
    .header("mcp-name", "other")
    .send()
    .await
    .unwrap();
    assert_eq!(wrong_name.status(), StatusCode::BAD_REQUEST);
    let body: Value = wrong_name.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    let unknown = stateless(&http, &server, ALICE_TOKEN, 44, "tools/teleport", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // Another principal gets a bridge (and upstream processes) of its own.
    let answer: Value = stateless(
        &http,
        &server,
        BOB_TOKEN,
        45,
        "tools/call",
        json!({"name": "fx__echo", "arguments": {"text": "bob"}}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(text(&answer), "bob");
    let bobs = server.wait_audit("bob's call", |r| {
        r["event"] == "call.decided" && r["arguments"]["text"] == "bob"
    });
    assert_eq!(bobs["principal"]["id"], "bob");
    assert_ne!(bobs["session_id"], decided["session_id"]);
}

/// Sampling needs a server-to-client request, which a stateless client
/// cannot receive: the bridge refuses it to the upstream, which reports the
/// failure in its result, and nothing is left waiting.
#[tokio::test]
async fn stateless_bridge_refuses_server_to_client_requests() {
    let server = start(with_config(&token_config("")));
    let http = client();
    let call = json!({"name": "fx__sample", "arguments": {"prompt": "p"}});
    let response = stateless(&http, &server, ALICE_TOKEN, 7, "tools/call", call)
        .header("accept", ACCEPT_BOTH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = Events::new(response);
    let answer = events.next().await.expect("the call's response");
    assert!(
        answer.get("method").is_none(),
        "no request reaches the client: {answer}"
    );
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(text(&answer).contains("stateless"), "{answer}");
    assert!(
        events.next().await.is_none(),
        "the stream ends after the response"
    );
}

/// Issue 12, item 2: `server/discover` offers 2026-07-28 only when nothing
/// would be lost: here the upstream offers only tools and the client
/// declares nothing the bridge cannot carry, so it is offered; the same
/// client declaring sampling is steered to the session lifecycle.
#[tokio::test]
async fn discover_offers_the_stateless_era_only_when_nothing_is_lost() {
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let tools_dir = tempfile::tempdir().unwrap();
    let tools_file = tools_dir.path().join("tools.json");
    std::fs::write(
        &tools_file,
        json!([{"name": "later", "description": "runs as a task",
                "inputSchema": {"type": "object"},
                "execution": {"taskSupport": "optional"}}])
        .to_string(),
    )
    .unwrap();
    let config = format!(
        "[[upstream]]\nname = \"plain\"\ncommand = \"python3\"\nargs = [\"{}\"]\n\
         env = {{ TOOLS_FILE = \"{}\" }}\n\n\
         [http]\ntokens = [{{ principal = \"alice\", sha256 = \"{}\" }}]\n",
        hostile.display(),
        tools_file.display(),
        hex_sha256(ALICE_TOKEN),
    );
    let server = start(with_config(&config).rego("package mcp.firewall\nallow := true\n"));
    let http = client();
    let versions = |body: &Value| -> Vec<String> {
        body["result"]["supportedVersions"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let plain: Value = json_of(stateless(
        &http,
        &server,
        ALICE_TOKEN,
        1,
        "server/discover",
        json!({}),
    ))
    .await;
    assert!(
        versions(&plain).contains(&"2026-07-28".to_string()),
        "{plain}"
    );
    let mut sampling = stateless(&http, &server, ALICE_TOKEN, 2, "server/discover", json!({}));
    sampling = sampling.json(&rpc(
        2,
        "server/discover",
        json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "stateless-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
        }}),
    ));
    let steered: Value = sampling.send().await.unwrap().json().await.unwrap();
    assert!(
        !versions(&steered).contains(&"2026-07-28".to_string()),
        "{steered}"
    );
    assert!(
        steered["result"]["_meta"]["mcp-firewall/stateless"]["why"]
            .to_string()
            .contains("sampling"),
        "{steered}"
    );
    let ping: Value = json_of(stateless(&http, &server, ALICE_TOKEN, 3, "ping", json!({}))).await;
    assert_eq!(ping["result"]["resultType"], "complete", "{ping}");
    // Tool definitions keep every field through the bridge
    // (`execution.taskSupport` among them).
    let listed: Value = json_of(stateless(
        &http,
        &server,
        ALICE_TOKEN,
        4,
        "tools/list",
        json!({}),
    ))
    .await;
    assert_eq!(
        listed["result"]["tools"][0]["execution"]["taskSupport"], "optional",
        "{listed}"
    );
}

/// Send a request and read its JSON body.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Issue 11, item 6: every connection the listener accepts has
/// `TCP_NODELAY` set (axum leaves it off; Nagle's algorithm then holds small
/// responses for a client's delayed ACK, ~40 ms each). Measures nothing:
/// reads the option off the firewall's own socket (pidfd_getfd).
#[test]
fn accepted_connections_have_tcp_nodelay() {
    use std::io::{Read, Write};
    let server = start(wrap_fixture());
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    // One request and its answer: the connection is accepted and kept alive.
    write!(
        conn,
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1"), "{first:?}");
    let server_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let client_port = conn.local_addr().unwrap().port();
    let fd = accepted_socket_fd(server.child.id(), server_port, client_port)
        .expect("the firewall holds the accepted socket");
    assert!(tcp_nodelay_of(server.child.id(), fd), "TCP_NODELAY is off");
}

/// The firewall's file descriptor for the loopback connection
/// `127.0.0.1:server_port <- 127.0.0.1:client_port` (from /proc/net/tcp).
fn accepted_socket_fd(pid: u32, server_port: u16, client_port: u16) -> Option<i32> {
    let local = format!("0100007F:{server_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f[9].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .find_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            (link.to_str()? == target).then(|| e.file_name().to_str()?.parse().ok())?
        })
}

/// `TCP_NODELAY` of another process's socket, via a duplicate of its fd.
fn tcp_nodelay_of(pid: u32, fd: i32) -> bool {
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let ours = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        assert!(
            ours >= 0,
            "pidfd_getfd: {}",
            std::io::Error::last_os_error()
        );
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let rc = libc::getsockopt(
            ours,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        );
        libc::close(ours);
        libc::close(pidfd);
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value != 0
    }
}

/// Issue 11, item 6: DNS rebinding. A tokenless loopback listener used to
/// accept any `Host`, so a web page whose name resolves to 127.0.0.1 could
/// open sessions (and spawn upstream processes) with a same-origin request
/// that carries no `Origin`. Now only loopback names are served.
#[test]
fn a_loopback_listener_refuses_foreign_host_names() {
    use std::io::{Read, Write};
    let server = start(wrap_fixture());
    let addr = server.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let body = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "rebinding", "version": "1"}}),
    )
    .to_string();
    let status = |host: &str| -> String {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        response.lines().next().unwrap_or("").to_string()
    };
    assert!(status(&format!("evil.example:{port}")).contains(" 403 "));
    assert!(status(&format!("localhost:{port}")).contains(" 200 "));
    let sessions = server
        .audit()
        .iter()
        .filter(|r| r["event"] == "session.started")
        .count();
    assert_eq!(sessions, 1, "only the loopback name started a session");
}

/// Issue 11, item 6: SIGTERM with event streams open (a session's `GET
/// /mcp` and a legacy `/sse` stream). Graceful shutdown used to wait for
/// every open connection, so the process never exited while a client held a
/// stream; now every session is closed at once and the process exits within
/// a bounded grace, its upstream processes stopped. A call still in flight
/// then is recorded as `abandoned`, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_listener_with_event_streams_open() {
    let mut server = start(wrap_fixture().rego(ALLOW_ALL));
    let raw = Raw::open(&server, None).await;
    let stream = raw.request(reqwest::Method::GET).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let slow = json!({"name": "slow", "arguments": {"seconds": 60, "steps": 1}});
    let in_flight = raw.post(&rpc(5, "tools/call", slow)).await;
    assert_eq!(in_flight.status(), StatusCode::OK);
    server.wait_audit("the slow call's decision", |r| {
        r["event"] == "call.decided" && r["target"] == "slow"
    });
    let legacy = client()
        .get(server.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), StatusCode::OK);
    server.wait_children(2);
    let upstreams = server.child_pids();
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::block_in_place(|| wait_exit(&mut server.child));
    assert!(status.success(), "{status:?}");
    // Each upstream was stopped, not left behind (re-parented to init).
    let deadline = std::time::Instant::now() + WAIT;
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
    };
    while upstreams.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !upstreams.iter().any(alive),
        "upstreams left running: {upstreams:?}"
    );
    let records = server.audit();
    let abandoned = records
        .iter()
        .find(|r| r["event"] == "call.completed")
        .unwrap_or_else(|| panic!("no outcome for the slow call: {records:#?}"));
    assert_eq!(abandoned["outcome"], "abandoned", "{abandoned}");
    assert_eq!(abandoned["detail"], "the firewall is shutting down");
    drop((stream, legacy, in_flight));
}

/// Issue 11, item 6: the firewall raises its soft open-file limit to the
/// hard limit at start (a few hundred idle connections used to exhaust the
/// usual 1,024). Started here with a soft limit of 256 under a hard 4,096.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let mut builder = wrap_fixture();
    let (mut cmd, _audit) = builder.command();
    limit_open_files(&mut cmd, 256, 4096);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    let mut seen = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        seen.push_str(&line);
        line.clear();
    }
    assert!(
        line.contains("listening on"),
        "the firewall did not start: {seen}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(fields[3], "4096", "{open_files}");
    drop(builder);
}

/// Start `cmd` with `RLIMIT_NOFILE` set to `soft` / `hard`.
fn limit_open_files(cmd: &mut std::process::Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Issue 11, item 6: idle and slow connections cannot lock legitimate
/// clients out. The firewall runs with 256 file descriptors (soft = hard)
/// and a 2 s header-read deadline; 300 connections that send nothing come
/// first. Those beyond the connection cap are answered 503 at once (so is a
/// legitimate client while the cap is full: an answer, not a hang), the
/// rest are closed at the deadline, as are a connection dribbling its
/// headers and a kept-alive connection left idle after a response; then
/// the legitimate client gets in. Before: the idle connections used up
/// every descriptor, `accept` failed, and the legitimate client hung.
#[test]
fn idle_and_slow_connections_cannot_lock_clients_out() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let config = token_config("max_sessions = 4\nheader_read_timeout_seconds = 2\n");
    let server =
        try_start_with(with_config(&config), |cmd| limit_open_files(cmd, 256, 256)).unwrap();
    let addr = server.base.trim_start_matches("http://").to_string();
    let connect = || {
        let stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    };
    /// Everything the server sends until it closes the connection.
    fn until_closed(mut stream: &TcpStream) -> String {
        let mut got = Vec::new();
        match stream.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
        String::from_utf8_lossy(&got).into_owned()
    }
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");

    let idle: Vec<TcpStream> = (0..300).map(|_| connect()).collect();
    let legitimate = connect();
    (&legitimate).write_all(healthz.as_bytes()).unwrap();
    let answer = until_closed(&legitimate);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");

    let mut refused = 0;
    for stream in &idle {
        let got = until_closed(stream);
        if got.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            assert_eq!(got, "", "an idle connection got an answer");
        }
    }
    assert!(refused > 0 && refused < idle.len(), "{refused} refused");
    drop(idle);

    let slow = connect();
    (&slow).write_all(b"POST /mcp HTTP/1.1\r\n").unwrap();
    let dribble = std::thread::spawn({
        let slow = slow.try_clone().unwrap();
        move || {
            for i in 0..40 {
                std::thread::sleep(Duration::from_millis(250));
                if (&slow)
                    .write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                    .is_err()
                {
                    return true;
                }
            }
            false
        }
    });
    let kept_alive = connect();
    (&kept_alive).write_all(healthz.as_bytes()).unwrap();
    let answer = until_closed(&kept_alive);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!until_closed(&slow).starts_with("HTTP/1.1 2"));
    assert!(
        dribble.join().unwrap(),
        "the dribbling client was never cut off"
    );

    let legitimate = connect();
    (&legitimate).write_all(healthz.as_bytes()).unwrap();
    let answer = until_closed(&legitimate);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Issue 11: a session left idle is closed and leaves nothing behind: its
/// upstream process is stopped and reaped, and its id is unknown.
/// (`[http] session_idle_timeout_seconds`; before, the timeout was a fixed
/// 30 minutes and could not be tested or tuned.)
#[tokio::test]
async fn an_idle_session_is_closed_with_its_upstream() {
    let server = start(with_config(&token_config(
        "session_idle_timeout_seconds = 1\n",
    )));
    let raw = Raw::open(&server, Some(ALICE_TOKEN)).await;
    server.wait_children(1);
    // Nothing in flight, no stream open: after the timeout it is gone (a
    // zombie would still count as a child).
    server.wait_children(0);
    let after = raw.post(&rpc(2, "tools/list", json!({}))).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
}

/// The firewall's threads.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// Issue 11, item 3: sessions share the process runtime. Twelve more
/// sessions cost no thread each, and closing them (DELETE) stops and reaps
/// every upstream process. Before, each session ran a runtime on a thread
/// of its own (twelve sessions, twelve more threads).
#[tokio::test]
async fn sessions_share_the_runtime_and_leave_nothing_behind() {
    let server = start(with_config(&token_config("")));
    let first = Raw::open(&server, Some(ALICE_TOKEN)).await;
    server.wait_children(1);
    let before = threads_of(server.child.id());
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(Raw::open(&server, Some(ALICE_TOKEN)).await);
    }
    server.wait_children(13);
    for s in &sessions {
        let tools: Value = s
            .post(&rpc(2, "tools/list", json!({})))
            .await
            .json()
            .await
            .unwrap();
        assert!(tools["result"]["tools"].is_array(), "{tools}");
    }
    let after = threads_of(server.child.id());
    assert!(
        after < before + 6,
        "12 sessions took {} more threads ({before} -> {after})",
        after - before
    );
    for s in sessions.iter().chain([&first]) {
        let deleted = s.request(reqwest::Method::DELETE).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }
    server.wait_children(0);
}

/// Issue 11, item 3: with `--listen --stdio`, the stdio session ends when
/// stdin closes and stops its upstream, while HTTP keeps serving. Before,
/// the session's tasks kept its upstream process alive until the whole
/// firewall stopped.
#[tokio::test]
async fn the_stdio_session_beside_http_stops_its_upstream_when_stdin_closes() {
    use std::io::Write;
    let mut server = try_start_with(
        listening().arg("--stdio").arg("--").arg(fixture_bin()),
        |cmd| {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        },
    )
    .unwrap();
    let mut stdin = server.child.stdin.take().unwrap();
    let mut stdout = BufReader::new(server.child.stdout.take().unwrap());
    writeln!(
        stdin,
        "{}",
        rpc(1, "initialize", initialize_body()["params"].clone())
    )
    .unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    server.wait_children(1);
    drop(stdin);
    server.wait_children(0);
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let raw = Raw::open(&server, None).await;
    server.wait_children(1);
    drop(raw);
}

/// Issue 11, item 6: the per-principal share holds under concurrent
/// opens. Six simultaneous `initialize`s by alice with a share of two: two
/// sessions, four 503s. Before, every open counted the sessions before any
/// was registered, so more than two could pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_cannot_exceed_a_principals_share() {
    let server = start(with_config(&token_config(
        "max_sessions = 8\nmax_sessions_per_principal = 2\n",
    )));
    let http = client();
    let opens = (0..6).map(|_| {
        http.post(server.url("/mcp"))
            .bearer_auth(ALICE_TOKEN)
            .header("accept", ACCEPT_BOTH)
            .json(&initialize_body())
            .send()
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    let opened = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((opened, refused), (2, 4), "{statuses:?}");
}

/// Issue 11, item 6: one principal cannot take every session slot. With
/// four slots and a share of two, alice's third session is refused (503)
/// while bob still gets one.
#[tokio::test]
async fn one_principal_cannot_take_every_session_slot() {
    let server = start(with_config(&token_config(
        "max_sessions = 4\nmax_sessions_per_principal = 2\n",
    )));
    let http = client();
    let open = |token: &'static str| {
        http.post(server.url("/mcp"))
            .bearer_auth(token)
            .header("accept", ACCEPT_BOTH)
            .json(&initialize_body())
            .send()
    };
    for _ in 0..2 {
        assert_eq!(open(ALICE_TOKEN).await.unwrap().status(), StatusCode::OK);
    }
    let third = open(ALICE_TOKEN).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.text().await.unwrap().contains("alice"));
    assert_eq!(open(BOB_TOKEN).await.unwrap().status(), StatusCode::OK);
}

/// Issue 11, item 5: `shared = true` runs one upstream process for every
/// session. Four sessions of two principals call the same slow tool at
/// once with the same progress token: each sees only its own progress and
/// its own answer. A sampling request goes to the one session with a call
/// in flight. Sessions ending leave the process serving the next one.
/// Before, `shared` was an unknown key and every session had a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_upstream_serves_every_session_from_one_process() {
    let config = token_config("").replace("name = \"fx\"\n", "name = \"fx\"\nshared = true\n");
    let server = start(with_config(&config));
    let mut sessions = Vec::new();
    for token in [ALICE_TOKEN, ALICE_TOKEN, BOB_TOKEN, BOB_TOKEN] {
        sessions.push(Raw::open(&server, Some(token)).await);
    }
    server.wait_children(1);

    let mut calls = Vec::new();
    for (i, raw) in sessions.into_iter().enumerate() {
        calls.push(tokio::spawn(async move {
            let steps = i + 2;
            let response = raw
                .post(&rpc(
                    9,
                    "tools/call",
                    json!({"name": "fx__slow", "arguments": {"seconds": 0.6, "steps": steps},
                           "_meta": {"progressToken": "tok"}}),
                ))
                .await;
            let mut events = Events::new(response);
            let mut progress = Vec::new();
            loop {
                let m = events.next().await.expect("progress, then the answer");
                if m["method"] == "notifications/progress" {
                    assert_eq!(m["params"]["progressToken"], "tok", "{m}");
                    progress.push(m["params"]["total"].as_f64().unwrap() as usize);
                    continue;
                }
                assert_eq!(m["id"], 9, "{m}");
                assert_eq!(text(&m), format!("done after {steps} steps"));
                break;
            }
            assert_eq!(
                progress,
                vec![steps; steps],
                "session {i} got another's progress"
            );
            raw
        }));
    }
    let mut sessions = Vec::new();
    for call in calls {
        sessions.push(call.await.unwrap());
    }

    // With one call in flight, the server's sampling request finds it.
    let raw = &sessions[2];
    let response = raw
        .post(&rpc(
            10,
            "tools/call",
            json!({"name": "fx__sample", "arguments": {"prompt": "p"}}),
        ))
        .await;
    let mut events = Events::new(response);
    let request = events.next().await.expect("a sampling request");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "model": "test", "stopReason": "endTurn",
        "content": {"type": "text", "text": "yes"}}});
    assert_eq!(raw.post(&answer).await.status(), StatusCode::ACCEPTED);
    let result = events.next().await.expect("the call's response");
    assert_eq!(text(&result), "sampled: yes");

    for s in &sessions {
        let deleted = s.request(reqwest::Method::DELETE).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }
    let next = Raw::open(&server, Some(BOB_TOKEN)).await;
    let tools: Value = next
        .post(&rpc(2, "tools/list", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    assert_eq!(
        server.children(),
        1,
        "the shared process serves the next session"
    );
}

/// Issue 11, item 5, the hostile case: with two sessions' calls in flight
/// on a shared process, a server request cannot be tied to either, so it
/// is refused back to the server; neither session is shown it (it could be
/// the other principal's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_upstreams_request_that_fits_no_one_session_is_refused() {
    let config = token_config("").replace("name = \"fx\"\n", "name = \"fx\"\nshared = true\n");
    let server = start(with_config(&config));
    let alice = Raw::open(&server, Some(ALICE_TOKEN)).await;
    let bob = Raw::open(&server, Some(BOB_TOKEN)).await;
    let slow = alice
        .post(&rpc(
            3,
            "tools/call",
            json!({"name": "fx__slow", "arguments": {"seconds": 1.5, "steps": 1}}),
        ))
        .await;
    // Alice's call is in flight upstream before bob's begins.
    server.wait_audit("alice's call forwarded", |r| {
        r["event"] == "call.decided" && r.to_string().contains("slow")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sample = bob
        .post(&rpc(
            4,
            "tools/call",
            json!({"name": "fx__sample", "arguments": {"prompt": "p"}}),
        ))
        .await;
    let mut events = Events::new(sample);
    let answer = events.next().await.expect("bob's answer");
    assert_eq!(answer["id"], 4, "bob was shown a server request: {answer}");
    assert!(text(&answer).starts_with("sampling failed"), "{answer}");
    let mut events = Events::new(slow);
    let answer = events.next().await.expect("alice's answer");
    assert_eq!(
        answer["id"], 3,
        "alice was shown a server request: {answer}"
    );
}

/// `run --shared -- COMMAND`: the wrap form's `shared = true`.
#[tokio::test]
async fn the_wrap_forms_shared_flag_starts_one_process_for_all_sessions() {
    let server = start(listening().arg("--shared").arg("--").arg(fixture_bin()));
    let first = Raw::open(&server, None).await;
    let second = Raw::open(&server, None).await;
    for raw in [&first, &second] {
        let tools: Value = raw
            .post(&rpc(2, "tools/list", json!({})))
            .await
            .json()
            .await
            .unwrap();
        assert!(tools["result"]["tools"].is_array(), "{tools}");
    }
    assert_eq!(server.children(), 1);
}

/// Issue 11: a client that stops reading while its upstream floods it
/// loses its session, not the firewall's memory. The upstream answers one
/// call with 100,000 notifications of 1 KiB (~110 MB of JSON) on the call's
/// event stream, which the client never reads. The stream's queue fills,
/// the session is closed and its upstream stopped and reaped, the call is
/// recorded as `abandoned` with the reason, and another principal's session
/// goes on working. Before, the cut-off call had a decision and no outcome
/// on the log, and `session.ended` did not say why.
#[tokio::test]
async fn a_client_that_stops_reading_loses_its_session_not_the_firewalls_memory() {
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let config = format!(
        "[[upstream]]\nname = \"loud\"\ncommand = \"python3\"\nargs = [\"{}\"]\n\n\
         [http]\ntokens = [{{ principal = \"alice\", sha256 = \"{}\" }}, \
         {{ principal = \"bob\", env = \"BOB_TOKEN\" }}]\n",
        hostile.display(),
        hex_sha256(ALICE_TOKEN),
    );
    let server = start(with_config(&config).rego(ALLOW_ALL));
    let stalled = Raw::open(&server, Some(ALICE_TOKEN)).await;
    let reader = Raw::open(&server, Some(BOB_TOKEN)).await;
    server.wait_children(2);
    let (_, before) = resident_kib(server.child.id());

    let flood = json!({"name": "loud__notify", "arguments": {"count": 100_000, "bytes": 1024}});
    let unread = stalled.post(&rpc(2, "tools/call", flood)).await;
    assert_eq!(unread.status(), StatusCode::OK);
    // Its body is never read; the session goes, with its upstream.
    server.wait_children(1);
    let done = server.wait_audit("the flooded call's outcome", |r| {
        r["event"] == "call.completed" && r["outcome"] == "abandoned"
    });
    let why = done["detail"].as_str().unwrap_or_default();
    assert!(why.contains("the client is not reading"), "{done}");
    let ended = server.wait_audit("the end of the stalled session", |r| {
        r["event"] == "session.ended" && r["principal"]["id"] == "alice"
    });
    assert_eq!(ended["reason"], why, "{ended}");
    let gone = stalled.post(&rpc(3, "tools/list", json!({}))).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    drop(unread);

    let call = rpc(
        4,
        "tools/call",
        json!({"name": "loud__echo", "arguments": {"still": "here"}}),
    );
    let answer = Events::new(reader.post(&call).await).next().await.unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["still"], "here",
        "{answer}"
    );
    let grew = resident_kib(server.child.id()).1.saturating_sub(before);
    assert!(
        grew < 48 * 1024,
        "the firewall's peak memory grew by {} MiB under the flood",
        grew / 1024
    );
}

/// Issue 11: one session works on at most 32 requests at once. The 33rd is
/// refused at once with 429 and a JSON-RPC error naming the limit rather
/// than queued, and cancelling one of the 32 makes room again.
#[tokio::test]
async fn a_session_works_on_at_most_32_requests_at_once() {
    let server = start(wrap_fixture().rego(ALLOW_ALL));
    let raw = Raw::open(&server, None).await;
    let slow = json!({"name": "slow", "arguments": {"seconds": 60, "steps": 1}});
    let mut held = Vec::new();
    for id in 10..42 {
        let response = raw.post(&rpc(id, "tools/call", slow.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let echo = json!({"name": "echo", "arguments": {"text": "room"}});
    let over = raw.post(&rpc(99, "tools/call", echo.clone())).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let refusal: Value = over.json().await.unwrap();
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("32 requests in flight"), "{refusal}");

    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 10, "reason": "making room"}});
    assert_eq!(raw.post(&cancel).await.status(), StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let again = raw.post(&rpc(100, "tools/call", echo.clone())).await;
        if again.status() == StatusCode::OK {
            let answer = Events::new(again).next().await.unwrap();
            assert_eq!(text(&answer), "room", "{answer}");
            break;
        }
        assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            std::time::Instant::now() < deadline,
            "a cancelled request never gave its place back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

/// Issue 11: a listing of several hundred kilobytes is answered over
/// Streamable HTTP in the pieces it was written in (one copy of each
/// definition at a time, see `proxy::to_client`), with its length, and is
/// exactly the listing the upstream gave.
#[tokio::test]
async fn a_big_listing_is_answered_whole_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let tools_file = dir.path().join("tools.json");
    let listed: Vec<Value> = (0..12)
        .map(|i| {
            json!({"name": format!("t{i}"), "description": format!("\"{i}\" é\n").repeat(20_000),
                   "inputSchema": {"type": "object"}})
        })
        .collect();
    std::fs::write(&tools_file, Value::Array(listed.clone()).to_string()).unwrap();
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let config = format!(
        "[[upstream]]\nname = \"big\"\ncommand = \"python3\"\nargs = [\"{}\"]\n\
         env = {{ TOOLS_FILE = \"{}\" }}\n",
        hostile.display(),
        tools_file.display(),
    );
    let server = start(with_config(&config).rego(ALLOW_ALL));
    let session = Raw::open(&server, None).await;
    let response = session.post(&rpc(2, "tools/list", json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    assert!(length > 1_000_000, "{length} bytes: more than one piece");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let tools = answer["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), listed.len());
    for (got, def) in tools.iter().zip(&listed) {
        assert_eq!(
            got["name"],
            format!("big__{}", def["name"].as_str().unwrap())
        );
        assert_eq!(got["description"], def["description"]);
    }
}

/// Issue 11, item 6: a request's body is bounded in time and counted in
/// the memory budget. hyper bounded the headers' time and axum the body's
/// size, nothing its time: a client could trickle a 4 MiB body on each of
/// thousands of connections (the cap is the open-file limit) and hold
/// gigabytes for as long as it liked. Three clients stop 600 KB into their
/// bodies: their bytes count in `message_memory_bytes` (4 MiB here), a
/// fourth body the rest cannot cover is refused at once (503, under its
/// id), and the three are cut off at the header-read deadline (408) and
/// give their memory back. The old build served the fourth (a 400 for its
/// missing session) and never answered the three.
#[tokio::test]
async fn trickled_request_bodies_are_counted_and_cut_off() {
    use std::io::{Read, Write};
    let metrics = free_port();
    let config = token_config(&format!(
        "header_read_timeout_seconds = 2\n\n[session]\nmessage_memory_bytes = {0}\n\
         message_memory_per_principal_bytes = {0}\n\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
        4 * 1024 * 1024
    ));
    let server = start(with_config(&config));
    let addr = server.base.trim_start_matches("http://").to_string();
    let in_use = || metric_sample(metrics, "mcp_firewall_message_memory_bytes");
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + WAIT;
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let head = format!(
                "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ALICE_TOKEN}\r\n\
                 Content-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\n\
                 Content-Length: 1000000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&[b' '; 600_000]).unwrap();
            s
        })
        .collect();
    wait_for("the stalled bodies are counted", &|| {
        in_use() >= 3.0 * 1_200_000.0
    });

    let pad = "x".repeat(600_000);
    let refused = client()
        .post(server.url("/mcp"))
        .bearer_auth(ALICE_TOKEN)
        .header("accept", ACCEPT_BOTH)
        .json(&rpc(41, "ping", json!({ "pad": pad })))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["id"], 41, "{answer}");
    let reason = answer["error"]["message"].as_str().unwrap();
    assert!(reason.contains("message_memory_bytes"), "{answer}");

    for mut s in stalled {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("did not arrive whole within 2s"), "{got}");
    }
    wait_for("the cut-off bodies give their memory back", &|| {
        in_use() == 0.0
    });
    Raw::open(&server, Some(ALICE_TOKEN)).await;
}

/// What must come back to where it was once sessions are over, from the
/// firewall's metrics.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    sessions: f64,
    connections: f64,
    requests: f64,
    tasks: f64,
    descriptors: f64,
}

impl Footprint {
    fn now(metrics_port: u16) -> Footprint {
        let g = metric_samples(metrics_port);
        Footprint {
            sessions: g
                .iter()
                .filter(|(k, _)| k.starts_with("mcp_firewall_sessions{"))
                .map(|(_, v)| v)
                .sum(),
            connections: g[r#"mcp_firewall_http_connections{listener="mcp"}"#],
            requests: g["mcp_firewall_requests_in_flight"],
            tasks: g["mcp_firewall_runtime_tasks"],
            descriptors: g["process_open_fds"],
        }
    }

    /// No session, connection or request left.
    fn over(&self) -> bool {
        self.sessions == 0.0 && self.connections == 0.0 && self.requests == 0.0
    }

    /// No more tasks than `before`, and at most eight more descriptors
    /// (the approval store's pooled readers, two files each).
    fn back_to(&self, before: &Footprint) -> bool {
        self.tasks <= before.tasks && self.descriptors <= before.descriptors + 8.0
    }
}

/// A legacy HTTP+SSE session: open the stream, initialize through its
/// endpoint, see the answer, and drop the stream (which ends the session).
async fn legacy_session(server: &Server) {
    let http = client();
    let mut stream = http
        .get(server.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let endpoint = loop {
        let chunk = stream.chunk().await.unwrap().expect("the endpoint event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if let Some((_, rest)) = seen.split_once("data: ")
            && let Some((endpoint, _)) = rest.split_once('\n')
        {
            break endpoint.trim().to_string();
        }
    };
    let posted = http
        .post(server.url(&endpoint))
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    while !seen.contains("serverInfo") {
        let chunk = stream.chunk().await.unwrap().expect("the answer");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Wait until no session, connection, request or upstream process is
/// left, and (given what was held `before`) the tasks and descriptors are
/// back to it: what is held then.
async fn settle(server: &Server, metrics_port: u16, before: Option<Footprint>) -> Footprint {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = Footprint::now(metrics_port);
        if now.over() && server.children() == 0 && before.is_none_or(|b| now.back_to(&b)) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now:?}, before {before:?}; {} upstream processes",
            server.children()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One session, ended as `ending` says, after a call.
async fn churn_one(server: &Server, ending: usize) {
    if ending == 4 {
        return legacy_session(server).await;
    }
    let raw = Raw::open(server, None).await;
    let echo = json!({"name": "echo", "arguments": {"text": "x"}});
    let answer = raw
        .post(&rpc(2, "tools/call", echo))
        .await
        .text()
        .await
        .unwrap();
    assert!(answer.contains("\"result\""), "{answer}");
    match ending {
        // DELETE.
        0 => {
            let deleted = raw.request(reqwest::Method::DELETE).send().await.unwrap();
            assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        }
        // Gone without a word: idle expiry ends it.
        1 => {}
        // Gone with a call in flight (its answer's stream dropped).
        2 => {
            let slow = json!({"name": "slow", "arguments": {"seconds": 1, "steps": 1}});
            let cut = raw.post(&rpc(3, "tools/call", slow)).await;
            assert_eq!(cut.status(), StatusCode::OK);
        }
        // DELETE with a GET stream open.
        _ => {
            let stream = raw.request(reqwest::Method::GET).send().await.unwrap();
            assert_eq!(stream.status(), StatusCode::OK);
            let deleted = raw.request(reqwest::Method::DELETE).send().await.unwrap();
            assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        }
    }
}

/// Issue 11, steady under load: sessions ended every way a client can end
/// them (DELETE; going away, left to idle expiry; going away with a call in
/// flight; DELETE with a GET stream open; dropping a legacy `/sse` stream)
/// give back what they took. Sixty sessions from six concurrent clients,
/// then, once they are over: no session, connection, request in flight or
/// runtime task more than before, no upstream process, and no descriptor
/// beyond the approval store's few pooled readers. A hostile client that
/// churns sessions cannot grow the firewall this way; `scripts/soak.py`
/// does the same for minutes with the release build.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churned_sessions_leave_nothing_behind() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let server = start(
        with_config("[http]\nsession_idle_timeout_seconds = 1\n")
            .rego(ALLOW_ALL)
            .args(&["--metrics-listen", &metrics, "--", fixture_bin()]),
    );
    // Warm: one session of each ending, so what is made once (the
    // store's readers, the tool catalogue) is there before the count.
    for ending in 0..5 {
        churn_one(&server, ending).await;
    }
    let before = settle(&server, port, None).await;
    let clients = (0..6).map(|client| {
        let server = &server;
        async move {
            for n in 0..10 {
                churn_one(server, (client + n) % 5).await;
            }
        }
    });
    futures::future::join_all(clients).await;
    let after = settle(&server, port, Some(before)).await;
    eprintln!("before {before:?}, after {after:?}");
}
