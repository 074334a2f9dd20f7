//! Upstreams over HTTP: the real firewall binary in front of a real HTTP MCP
//! server on 127.0.0.1 (an ephemeral port), speaking Streamable HTTP at
//! `/mcp` and the legacy HTTP+SSE transport at `/sse` + `/messages`, beside
//! a stdio upstream (the fixture server) in the same config.
//!
//! The test server lives in this file: small, and able to record every
//! header it receives, drop a session, ask the client for sampling over its
//! event stream, and vanish.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

const TOKEN_VAR: &str = "MCPFW_TEST_UPSTREAM_TOKEN";
const TOKEN: &str = "tok-123";
const SESSION: &str = "session-1";
const LEGACY_SESSION: &str = "legacy-1";

// ---------------------------------------------------------------- server

/// One request the test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
}

#[derive(Clone)]
struct Server(Arc<Inner>);

struct Inner {
    seen: Mutex<Vec<Seen>>,
    /// The session id the server currently honours (Streamable HTTP).
    session: Mutex<Option<String>>,
    /// Server-initiated messages: the GET stream (Streamable HTTP) or the
    /// event stream (legacy SSE, where answers go too).
    push_tx: mpsc::UnboundedSender<Value>,
    push_rx: Mutex<Option<mpsc::UnboundedReceiver<Value>>>,
    /// Answers the client owes to our requests, by id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// `/resumable`: answers held back for a `GET` with `Last-Event-ID`,
    /// by the id of the priming event that stood in for them.
    resumable: Mutex<HashMap<String, Value>>,
}

impl Server {
    fn new() -> Server {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        Server(Arc::new(Inner {
            seen: Mutex::new(vec![]),
            session: Mutex::new(None),
            push_tx,
            push_rx: Mutex::new(Some(push_rx)),
            waiting: Mutex::new(HashMap::new()),
            resumable: Mutex::new(HashMap::new()),
        }))
    }

    fn record(&self, method: &str, path: &str, headers: &HeaderMap) {
        self.0.seen.lock().unwrap().push(Seen {
            method: method.into(),
            path: path.into(),
            headers: headers.clone(),
        });
    }

    /// The stream of pushed messages, for the one GET that may have it.
    fn push_stream(
        &self,
    ) -> Option<impl futures::Stream<Item = Result<Event, Infallible>> + use<>> {
        let rx = self.0.push_rx.lock().unwrap().take()?;
        Some(futures::stream::unfold(rx, |mut rx| async move {
            let msg = rx.recv().await?;
            Some((Ok(Event::default().data(msg.to_string())), rx))
        }))
    }

    /// The answer to one message, if it is a request.
    async fn handle(&self, msg: Value) -> Option<Value> {
        let id = msg.get("id").cloned();
        let Some(method) = msg["method"].as_str() else {
            // A response to a request of ours.
            let key = id.map(|i| i.to_string()).unwrap_or_default();
            if let Some(tx) = self.0.waiting.lock().unwrap().remove(&key) {
                let _ = tx.send(msg);
            }
            return None;
        };
        let id = id?;
        let result = match method {
            "initialize" => json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "http-test", "version": "1.0"},
            }),
            "tools/list" => json!({"tools": [
                {"name": "echo", "description": "echo",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                 "required": ["text"]}},
                {"name": "ask", "description": "asks the client to sample",
                 "inputSchema": {"type": "object", "properties": {}}},
                {"name": "big", "description": "answers with `bytes` bytes of text",
                 "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer"}}}},
                {"name": "stall", "description": "sends `bytes` bytes of a JSON answer, and no more",
                 "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer"}}}},
            ]}),
            "tools/call" if msg["params"]["name"] == "echo" => {
                let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
                tool_text(&format!("[remote] {text}"))
            }
            "tools/call" if msg["params"]["name"] == "big" => {
                let bytes = msg["params"]["arguments"]["bytes"].as_u64().unwrap_or(0);
                tool_text(&"x".repeat(bytes as usize))
            }
            "tools/call" if msg["params"]["name"] == "ask" => {
                let answer = self.ask_sampling().await;
                let said = answer["result"]["content"]["text"].as_str().unwrap_or("?");
                tool_text(&format!("sampled: {said}"))
            }
            "ping" => json!({}),
            other => {
                return Some(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": format!("no {other}")}}));
            }
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    /// Send `sampling/createMessage` on the event stream and wait for the answer.
    async fn ask_sampling(&self) -> Value {
        let (tx, rx) = oneshot::channel();
        let id = json!("sample-1");
        self.0.waiting.lock().unwrap().insert(id.to_string(), tx);
        let _ = self.0.push_tx.send(json!({
            "jsonrpc": "2.0", "id": id, "method": "sampling/createMessage",
            "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi?"}}],
                       "maxTokens": 10},
        }));
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("client answered sampling")
            .unwrap()
    }
}

fn tool_text(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

/// Streamable HTTP: POST /mcp.
async fn mcp_post(State(s): State<Server>, headers: HeaderMap, body: Bytes) -> Response {
    s.record("POST", "/mcp", &headers);
    let msg: Value = serde_json::from_slice(&body).unwrap();
    if msg["method"] == "initialize" {
        *s.0.session.lock().unwrap() = Some(SESSION.into());
        let reply = s.handle(msg).await.unwrap();
        return ([("mcp-session-id", SESSION)], axum::Json(reply)).into_response();
    }
    let current = s.0.session.lock().unwrap().clone();
    let given = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    if current.as_deref() != given {
        return StatusCode::NOT_FOUND.into_response();
    }
    let is_call = msg["method"] == "tools/call";
    if is_call && msg["params"]["name"] == "stall" {
        // The head of a JSON answer, `bytes` of its text, then nothing more
        // while the connection stays open.
        let bytes = msg["params"]["arguments"]["bytes"].as_u64().unwrap_or(0) as usize;
        let mut head = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":""#,
            msg["id"]
        )
        .into_bytes();
        head.resize(head.len() + bytes, b'x');
        let body = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(head))])
            .chain(futures::stream::pending());
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            axum::body::Body::from_stream(body),
        )
            .into_response();
    }
    let big = msg["params"]["name"] == "big";
    match s.handle(msg).await {
        None => StatusCode::ACCEPTED.into_response(),
        // `big` answers with a JSON body.
        Some(reply) if big => axum::Json(reply).into_response(),
        // Tool results come as an event stream, pretty-printed so the data
        // spans several `data:` lines, after a notification about the call.
        Some(reply) if is_call => {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                              "params": {"level": "info", "data": "calling"}});
            let events = vec![
                Ok::<_, Infallible>(Event::default().data(note.to_string())),
                Ok(Event::default()
                    .id("e1")
                    .data(serde_json::to_string_pretty(&reply).unwrap())),
            ];
            Sse::new(futures::stream::iter(events)).into_response()
        }
        Some(reply) => axum::Json(reply).into_response(),
    }
}

/// Streamable HTTP: GET /mcp, the stream of server-initiated messages.
async fn mcp_get(State(s): State<Server>, headers: HeaderMap) -> Response {
    s.record("GET", "/mcp", &headers);
    match s.push_stream() {
        Some(stream) => Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_millis(100)))
            .into_response(),
        None => StatusCode::CONFLICT.into_response(),
    }
}

/// `/stateless`: Streamable HTTP without sessions and without a GET stream
/// (`404`), as a POST-only server may be.
async fn stateless_post(State(s): State<Server>, headers: HeaderMap, body: Bytes) -> Response {
    s.record("POST", "/stateless", &headers);
    let msg: Value = serde_json::from_slice(&body).unwrap();
    match s.handle(msg).await {
        Some(reply) => axum::Json(reply).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn stateless_get(State(s): State<Server>, headers: HeaderMap) -> StatusCode {
    s.record("GET", "/stateless", &headers);
    StatusCode::NOT_FOUND
}

/// `/resumable` (SEP-1699): a tool call's POST stream carries one priming
/// event (an id, a `retry`, no data) and closes; the answer comes on a `GET`
/// naming that id in `Last-Event-ID`.
async fn resumable_post(State(s): State<Server>, headers: HeaderMap, body: Bytes) -> Response {
    s.record("POST", "/resumable", &headers);
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let is_call = msg["method"] == "tools/call";
    match s.handle(msg).await {
        Some(reply) if is_call => {
            let event_id = format!("prime-{}", reply["id"]);
            s.0.resumable
                .lock()
                .unwrap()
                .insert(event_id.clone(), reply);
            let priming = Event::default()
                .id(event_id)
                .retry(Duration::from_millis(50))
                .data("");
            Sse::new(futures::stream::iter([Ok::<_, Infallible>(priming)])).into_response()
        }
        Some(reply) => axum::Json(reply).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn resumable_get(State(s): State<Server>, headers: HeaderMap) -> Response {
    s.record("GET", "/resumable", &headers);
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let Some(reply) = last.and_then(|id| s.0.resumable.lock().unwrap().remove(id)) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let event = Event::default().id("answer").data(reply.to_string());
    Sse::new(futures::stream::iter([Ok::<_, Infallible>(event)])).into_response()
}

async fn mcp_delete(State(s): State<Server>, headers: HeaderMap) -> StatusCode {
    s.record("DELETE", "/mcp", &headers);
    StatusCode::OK
}

/// Legacy SSE: GET /sse names the endpoint, then carries every message.
async fn legacy_get(State(s): State<Server>, headers: HeaderMap) -> Response {
    s.record("GET", "/sse", &headers);
    let Some(stream) = s.push_stream() else {
        return StatusCode::CONFLICT.into_response();
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={LEGACY_SESSION}"));
    let stream = futures::stream::once(async move { Ok(endpoint) }).chain(stream);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(100)))
        .into_response()
}

/// Legacy SSE with an endpoint on another origin, which must not be used.
async fn legacy_get_elsewhere(State(s): State<Server>, headers: HeaderMap) -> Response {
    s.record("GET", "/sse-elsewhere", &headers);
    let endpoint = Event::default()
        .event("endpoint")
        .data("http://192.0.2.1:1/messages");
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(endpoint) })
        .chain(futures::stream::pending());
    Sse::new(stream).into_response()
}

/// Legacy SSE: POST /messages, answered on the event stream.
async fn legacy_post(State(s): State<Server>, headers: HeaderMap, body: Bytes) -> StatusCode {
    s.record("POST", "/messages", &headers);
    let msg: Value = serde_json::from_slice(&body).unwrap();
    tokio::spawn(async move {
        if let Some(reply) = s.handle(msg).await {
            let _ = s.0.push_tx.send(reply);
        }
    });
    StatusCode::ACCEPTED
}

/// The server on its own runtime, so stopping it closes every connection.
struct TestServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    state: Server,
}

impl TestServer {
    fn start() -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Server::new();
        let app = Router::new()
            .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
            .route("/stateless", post(stateless_post).get(stateless_get))
            .route("/resumable", post(resumable_post).get(resumable_get))
            .route("/sse", get(legacy_get))
            .route("/sse-elsewhere", get(legacy_get_elsewhere))
            .route("/messages", post(legacy_post))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        TestServer {
            runtime: Some(runtime),
            addr,
            state,
        }
    }

    /// Vanish: stop listening and drop every open connection.
    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.0.seen.lock().unwrap().clone()
    }

    /// Wait until the server has seen a request matching `pred`.
    fn wait_seen(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.seen().into_iter().find(&pred) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server never saw {what}: {:#?}",
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- firewall

#[derive(Clone, Copy, PartialEq, Debug)]
enum Transport {
    StreamableHttp,
    Sse,
}

/// The firewall with `remote` (the test server over `transport`) and
/// `local` (the stdio fixture) upstreams.
fn firewall(server: &TestServer, transport: Transport) -> (Firewall, tempfile::TempDir) {
    let path = match transport {
        Transport::StreamableHttp => "/mcp",
        Transport::Sse => "/sse",
    };
    firewall_at(server, transport, path)
}

fn firewall_at(
    server: &TestServer,
    transport: Transport,
    path: &str,
) -> (Firewall, tempfile::TempDir) {
    firewall_with(server, transport, path, &[])
}

/// [`firewall_at`], with more arguments for the firewall.
fn firewall_with(
    server: &TestServer,
    transport: Transport,
    path: &str,
    args: &[&str],
) -> (Firewall, tempfile::TempDir) {
    let url = format!("http://{}{path}", server.addr);
    let name = match transport {
        Transport::StreamableHttp => "streamable-http",
        Transport::Sse => "sse",
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp-firewall.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "remote"
url = "{url}"
transport = "{name}"
headers = {{ Authorization = "Bearer ${{{TOKEN_VAR}}}", X-Tenant = "acme" }}

[[upstream]]
name = "local"
command = "{fixture}"
env = {{ FIXTURE_NAME = "local" }}
"#,
            fixture = fixture_bin()
        ),
    )
    .unwrap();
    let fw = Builder::new()
        .arg("--config")
        .arg(config.to_str().unwrap())
        .args(args)
        .env(TOKEN_VAR, TOKEN)
        // Loopback must never go through a proxy a CI machine may set.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .start();
    (fw, dir)
}

fn tool_names(fw: &mut Firewall) -> Vec<String> {
    let tools = fw.request("tools/list", json!({}));
    tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The headers a request may carry: the protocol's and the configured ones.
const EXPECTED_HEADERS: &[&str] = &[
    "host",
    "accept",
    "accept-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "authorization",
    "x-tenant",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

fn assert_headers(seen: &[Seen]) {
    assert!(!seen.is_empty());
    for s in seen {
        let h = &s.headers;
        assert_eq!(
            h.get("authorization").unwrap(),
            &format!("Bearer {TOKEN}"),
            "${{VAR}} expanded: {s:?}"
        );
        assert_eq!(h.get("x-tenant").unwrap(), "acme", "{s:?}");
        for name in h.keys() {
            assert!(
                EXPECTED_HEADERS.contains(&name.as_str()),
                "unexpected header {name} on {} {}",
                s.method,
                s.path
            );
        }
    }
}

fn round_trip(transport: Transport) {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, transport);
    let init = fw.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-firewall");
    let names = tool_names(&mut fw);
    for want in ["remote__echo", "remote__ask", "local__echo"] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "hi"}))),
        "[remote] hi"
    );
    assert_eq!(
        text(&fw.call("local__echo", json!({"text": "hi"}))),
        "[local] hi"
    );
    assert_headers(&server.seen());
}

#[test]
fn streamable_http_round_trip_with_configured_headers_and_session() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, Transport::StreamableHttp);
    fw.initialize();
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "a\nb"}))),
        "[remote] a\nb",
        "a result sent as multi-line SSE data"
    );
    // The notification the server sent on the call's stream was relayed.
    let note = fw.notification("notifications/message");
    assert_eq!(note["params"]["data"], "calling");

    let seen = server.seen();
    assert_headers(&seen);
    let init = &seen[0];
    assert_eq!((init.method.as_str(), init.path.as_str()), ("POST", "/mcp"));
    assert!(init.headers.get("mcp-session-id").is_none());
    let accept = init.headers.get("accept").unwrap().to_str().unwrap();
    assert!(
        accept.contains("application/json") && accept.contains("text/event-stream"),
        "{accept}"
    );
    for later in &seen[1..] {
        assert_eq!(later.headers.get("mcp-session-id").unwrap(), SESSION);
        assert_eq!(
            later.headers.get("mcp-protocol-version").unwrap(),
            "2025-06-18"
        );
    }
    // The GET stream for server-initiated messages was opened.
    server.wait_seen("the GET stream", |s| s.method == "GET");
}

#[test]
fn streamable_http_initialize_list_and_call() {
    round_trip(Transport::StreamableHttp);
}

#[test]
fn legacy_sse_initialize_list_and_call() {
    round_trip(Transport::Sse);
    // (round_trip checked the headers of the GET and every POST.)
}

#[test]
fn legacy_sse_posts_to_the_endpoint_the_stream_named() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, Transport::Sse);
    fw.initialize();
    let seen = server.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].headers.get("accept").unwrap(), "text/event-stream");
    assert!(seen[1..].iter().all(|s| s.path == "/messages"), "{seen:#?}");
}

fn server_request_reaches_the_client(transport: Transport) {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, transport);
    fw.initialize_with(json!({"sampling": {}}));
    let call = fw.send_request(
        "tools/call",
        json!({"name": "remote__ask", "arguments": {}}),
    );
    let ask = fw.server_request("sampling/createMessage");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "hi?");
    fw.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "model": "test",
        "content": {"type": "text", "text": "forty-two"}}}));
    let done = fw.response(&call);
    assert_eq!(text(&done), "sampled: forty-two", "{done}");
}

#[test]
fn streamable_http_server_request_on_the_get_stream_is_answered() {
    server_request_reaches_the_client(Transport::StreamableHttp);
}

#[test]
fn legacy_sse_server_request_is_answered() {
    server_request_reaches_the_client(Transport::Sse);
}

fn vanishing_upstream(transport: Transport) {
    let mut server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, transport);
    fw.initialize();
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "1"}))),
        "[remote] 1"
    );
    server.stop();
    let dead = fw.call("remote__echo", json!({"text": "2"}));
    assert_eq!(dead["error"]["code"], -32003, "{dead}");
    assert!(
        dead["error"]["message"]
            .as_str()
            .unwrap()
            .contains("remote"),
        "{dead}"
    );
    assert_eq!(
        text(&fw.call("local__echo", json!({"text": "still"}))),
        "[local] still"
    );
}

#[test]
fn streamable_http_upstream_that_vanishes_fails_its_calls_and_the_rest_keeps_serving() {
    vanishing_upstream(Transport::StreamableHttp);
}

#[test]
fn legacy_sse_upstream_that_vanishes_fails_its_calls_and_the_rest_keeps_serving() {
    vanishing_upstream(Transport::Sse);
}

#[test]
fn an_expired_session_finishes_the_upstream() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, Transport::StreamableHttp);
    fw.initialize();
    *server.state.0.session.lock().unwrap() = None;
    let expired = fw.call("remote__echo", json!({"text": "x"}));
    assert_eq!(expired["error"]["code"], -32003, "{expired}");
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session expired"),
        "{expired}"
    );
    fw.notification("notifications/tools/list_changed");
    let later = fw.call("remote__echo", json!({"text": "y"}));
    assert!(
        later["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not running (session expired"),
        "{later}"
    );
    assert_eq!(
        text(&fw.call("local__echo", json!({"text": "ok"}))),
        "[local] ok"
    );
}

#[test]
fn a_missing_header_variable_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("remote.toml");
    std::fs::write(
        &file,
        "[[upstream]]\nname = \"remote\"\nurl = \"http://127.0.0.1:9/mcp\"\n\
         headers = { Authorization = \"Bearer ${MCPFW_TEST_SURELY_UNSET}\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(firewall_bin())
        .args(["run", "--config"])
        .arg(&file)
        .env_remove("MCPFW_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote.toml")
            && stderr.contains("upstream[0].headers.Authorization")
            && stderr.contains("MCPFW_TEST_SURELY_UNSET"),
        "{stderr}"
    );
}

#[test]
fn legacy_sse_endpoint_on_another_origin_is_refused() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall_at(&server, Transport::Sse, "/sse-elsewhere");
    fw.initialize();
    let failed = fw.wait_audit("remote left out", |r| r["event"] == "upstream.failed");
    assert_eq!(failed["server"], "remote");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("not on the stream's origin"), "{error}");
    let names = tool_names(&mut fw);
    assert!(names.iter().all(|n| n.starts_with("local__")), "{names:?}");
    assert!(
        server.seen().iter().all(|s| s.method == "GET"),
        "nothing was posted anywhere"
    );
}

/// Issue 12, item 4: a server that issued no session and answers the GET
/// stream with 404 offers no such stream; it used to be taken for an
/// expired session, so the upstream was finished and its tools vanished.
#[test]
fn a_sessionless_server_without_a_get_stream_keeps_serving() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall_at(&server, Transport::StreamableHttp, "/stateless");
    fw.initialize();
    server.wait_seen("the GET stream attempt", |s| s.method == "GET");
    // The GET's outcome is handled before the next listing is read.
    std::thread::sleep(Duration::from_millis(300));
    let names = tool_names(&mut fw);
    assert!(names.contains(&"remote__echo".to_string()), "{names:?}");
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "still here"}))),
        "[remote] still here"
    );
    let records = fw.audit_records();
    assert!(
        !records.iter().any(|r| r["event"] == "upstream.exited"),
        "{records:#?}"
    );
}

/// Issue 12, item 4: SEP-1699. The server primes the call's stream with an
/// event id and closes it; the firewall resumes with `Last-Event-ID` and the
/// call gets its answer (it used to fail with -32003).
#[test]
fn a_closed_call_stream_is_resumed_with_last_event_id() {
    let server = TestServer::start();
    let (mut fw, _dir) = firewall_at(&server, Transport::StreamableHttp, "/resumable");
    fw.initialize();
    let done = fw.call("remote__echo", json!({"text": "resumed"}));
    assert_eq!(text(&done), "[remote] resumed", "{done}");
    let resumed = server.wait_seen("the resuming GET", |s| {
        s.method == "GET" && s.headers.contains_key("last-event-id")
    });
    assert!(
        resumed.headers["last-event-id"]
            .to_str()
            .unwrap()
            .starts_with("prime-"),
        "{resumed:?}"
    );
}

/// Issue 11: a big answer from an HTTP upstream (a JSON body) is not held
/// over and over on its way in. Its digest for the record is hashed as it
/// is written, and the body is read in pieces joined once, not into a
/// buffer regrown by doubling. (An answer on an event stream is read the
/// same way, and its data line becomes the message where it lies:
/// `event_stream`'s unit tests.) 24 MiB: the old release took 106-119 MB
/// at the peak, this one ~84 MB (3.3x; over stdio 2.3x, see
/// docs/performance.md).
#[test]
fn a_big_answer_over_http_costs_under_four_times_its_size_to_read() {
    let _one = one_big_message_test_at_a_time();
    let size: u64 = 24 << 20;
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, Transport::StreamableHttp);
    fw.initialize();
    let pid = fw.child.id();
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "warm"}))),
        "[remote] warm"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (big, grown) =
        least_new_memory_at_peak(pid, 2, || fw.call("remote__big", json!({"bytes": size})));
    let note = big["result"]["content"].as_array().unwrap().last().unwrap()["text"].clone();
    assert!(note.as_str().unwrap().contains("truncated"), "{note}");
    assert!(
        grown < size * 4,
        "reading a {size}-byte answer took {grown} bytes more at its peak"
    );
}

/// Issue 11: an answer from an HTTP upstream counts against the process's
/// budget for big messages as it is read, as a JSON body (Streamable HTTP)
/// or an event (legacy SSE). With 8 MiB, a 6 MiB answer (counted twice)
/// is dropped and its call fails at once with the reason; a 3 MiB one is
/// answered, and so is the next small call.
#[test]
fn an_http_answer_the_memory_budget_cannot_cover_fails_its_call() {
    let _one = one_big_message_test_at_a_time();
    for (transport, path) in [
        (Transport::StreamableHttp, "/mcp"),
        (Transport::Sse, "/sse"),
    ] {
        let server = TestServer::start();
        let (mut fw, _dir) = firewall_with(
            &server,
            transport,
            path,
            &["--message-memory-bytes", &(8 << 20).to_string()],
        );
        fw.initialize();
        let refused = fw.call("remote__big", json!({"bytes": 6 << 20}));
        assert_eq!(refused["error"]["code"], -32003, "{path}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("message_memory_bytes"),
            "{path}: {message}"
        );
        let fits = fw.call("remote__big", json!({"bytes": 3 << 20}));
        assert!(fits["result"]["content"].is_array(), "{path}: {fits}");
        assert_eq!(
            text(&fw.call("remote__echo", json!({"text": "still here"}))),
            "[remote] still here"
        );
    }
}

/// An event over the 64 MiB cap on a legacy SSE stream fails the call it
/// answers at once, with the reason, as an oversized line from a stdio
/// upstream or JSON body does; the stream goes on. Before, the event was
/// skipped with a log line, and the call waited for its deadline (300 s).
#[test]
fn an_oversized_event_fails_its_call_at_once() {
    let _one = one_big_message_test_at_a_time();
    let server = TestServer::start();
    let (mut fw, _dir) = firewall(&server, Transport::Sse);
    fw.initialize();
    let refused = fw.call("remote__big", json!({"bytes": 65 << 20}));
    assert_eq!(refused["error"]["code"], -32003, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("-byte limit"), "{message}");
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "still here"}))),
        "[remote] still here"
    );
}

/// A JSON body past 1 MiB must arrive whole within the upstream's request
/// deadline: one that stops half-way (the connection left open) is dropped
/// then, its share of the memory for big messages given back, and its call
/// fails. Before, the body was read for as long as the server kept the
/// connection, holding its memory.
#[test]
fn a_big_json_body_that_stops_arriving_is_dropped_at_the_deadline() {
    let _one = one_big_message_test_at_a_time();
    let server = TestServer::start();
    let url = format!("http://{}/mcp", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp-firewall.toml");
    let metrics = free_port();
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[[upstream]]\nname = \"remote\"\n\
             url = \"{url}\"\ntimeout_seconds = 2\n\
             headers = {{ Authorization = \"Bearer ${{{TOKEN_VAR}}}\" }}\n"
        ),
    )
    .unwrap();
    let mut fw = Builder::new()
        .arg("--config")
        .arg(config.to_str().unwrap())
        .env(TOKEN_VAR, TOKEN)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .start();
    fw.initialize();
    let stalled = fw.call("remote__stall", json!({"bytes": 3 << 20}));
    assert_eq!(stalled["error"]["code"], -32003, "{stalled}");
    let memory = || metric_sample(metrics, "mcp_firewall_message_memory_bytes");
    let deadline = std::time::Instant::now() + WAIT;
    while memory() > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled body still holds {} bytes",
            memory()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        text(&fw.call("remote__echo", json!({"text": "after"}))),
        "[remote] after"
    );
}
