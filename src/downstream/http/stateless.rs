//! MCP 2026-07-28 stateless requests on `POST /mcp`, bridged to upstreams
//! that stay on the 2025 (stateful) era.
//!
//! A 2026-07-28 client sends no `initialize` and no `Mcp-Session-Id`: every
//! request carries `MCP-Protocol-Version: 2026-07-28`, the `Mcp-Method` (and
//! for named targets `Mcp-Name`) headers, and in `params._meta` its protocol
//! version, client info and client capabilities. The firewall negotiates
//! with each side separately:
//!
//! - toward the client it checks those headers and `_meta` fields (HTTP 400
//!   with JSON-RPC `-32020` header mismatch, `-32022` unsupported version,
//!   `-32602` missing `_meta`), answers `server/discover`, and gives results
//!   the 2026 shape (`resultType`, and `ttlMs`/`cacheScope` on cacheable
//!   results);
//! - toward the upstreams it keeps one ordinary [`HttpSession`] (one `Proxy`,
//!   its own upstream processes) per bridge key (principal, client
//!   capabilities, client info), created on first use and initialized once
//!   with protocol 2025-11-25 and the client's capabilities and info. Every
//!   request then goes through that proxy, so through the same policy,
//!   approval and audit pipeline as a session client, with
//!   `session.transport = "streamable-http"` and the principal of the token.
//!
//! Request ids and progress tokens are rewritten (`sl-<n>`) on the way in,
//! since clients sharing a bridge choose them independently, and restored on
//! the way out.
//!
//! Never a feature lost by putting the firewall in front: `server/discover`
//! lists 2026-07-28 among `supportedVersions` only when the bridge can carry
//! everything this client and the upstreams use ([`bridge_losses`]): the
//! client declares no sampling, elicitation or roots, and no upstream offers
//! logging, resource subscriptions or tasks. Otherwise it lists the
//! handshake-era versions only, so an SDK in auto mode (the Python SDK's
//! default, the TypeScript v2 client's `auto`) falls back to `initialize`
//! and gets the full session lifecycle, as it would direct against a
//! 2025-era server; `_meta["mcp-firewall/stateless"]` says why.
//!
//! Tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663):
//! `tasks/get`, `tasks/update` and `tasks/cancel` are relayed (and decided)
//! like any request, to the bridge whose `tools/call` made the task (the
//! principal must match; anything else is an unknown task, `-32602`); a
//! request whose `_meta` does not declare the extension gets `-32021`
//! (missing required client capability), as the extension says. The v1
//! methods `tasks/result` and `tasks/list` do not exist in 2026-07-28
//! (`-32601`). An upstream's task results and input requests go through the
//! proxy's response phase and server-request decisions (`proxy::tasks`).
//!
//! Not bridged (yet): server-to-client requests (sampling, elicitation,
//! roots) are impossible in the stateless lifecycle; the bridge answers them
//! to the upstream with an error (see `session::refuse_server_request`).
//! SEP-2322 `InputRequiredResult` round trips would need upstream support.
//! Log notifications reach the client only if its request's `_meta` asked
//! for a log level (filtered here; the shared upstreams' level is not set).
//! Notifications from a stateless client are accepted (202) and dropped;
//! `subscriptions/listen` is not implemented (`-32601`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, mpsc};

use super::session::{Answer, HttpSession, Transport};
use super::streamable::{
    PROTOCOL_HEADER, PROTOCOL_VERSIONS, STREAMED_METHODS, accepts_sse, request_error,
};
use super::{App, sse_response};
use crate::jsonrpc::{Message, code};
use crate::proxy::session::Principal;
use crate::proxy::{TASKS_EXTENSION, ToClient};

/// Protocol versions served statelessly.
pub const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];
/// The version the bridge speaks to its upstreams.
pub const UPSTREAM_VERSION: &str = "2025-11-25";
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Log levels, least severe first (RFC 5424 names, as MCP uses them).
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";
/// JSON-RPC codes of the 2026-07-28 transport.
pub const HEADER_MISMATCH: i64 = -32020;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// The methods of the tasks extension, which need the client to declare it.
const TASK_METHODS: &[&str] = &["tasks/get", "tasks/update", "tasks/cancel"];
/// Task ids remembered for routing; beyond this, tasks of closed bridges are
/// forgotten first, then the oldest.
const MAX_TASK_ROUTES: usize = 16_384;
/// Client requests of the 2026-07-28 lifecycle that the bridge relays.
const BRIDGED_METHODS: &[&str] = &[
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];
/// Results that carry caching hints (`ttlMs`, `cacheScope`).
const CACHEABLE_METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];
/// The id of the bridge's own `initialize` toward its proxy.
const BRIDGE_INIT_ID: &str = "fw-bridge-initialize";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Task id -> the bridge whose `tools/call` created it, in creation order.
#[derive(Clone, Default)]
pub struct TaskBridges(Arc<Mutex<TaskRoutes>>);

#[derive(Default)]
struct TaskRoutes {
    by_id: HashMap<String, (u64, Weak<Bridge>)>,
    next: u64,
}

impl TaskBridges {
    /// Remember that `bridge` made task `id` (the first claim stands).
    fn insert(&self, id: &str, bridge: &Arc<Bridge>) {
        let mut routes = self.0.lock().expect("task routes lock");
        if routes.by_id.contains_key(id) {
            return;
        }
        if routes.by_id.len() >= MAX_TASK_ROUTES {
            routes.by_id.retain(|_, (_, b)| b.strong_count() > 0);
        }
        if routes.by_id.len() >= MAX_TASK_ROUTES
            && let Some(oldest) = routes
                .by_id
                .iter()
                .min_by_key(|(_, (seq, _))| *seq)
                .map(|(k, _)| k.clone())
        {
            routes.by_id.remove(&oldest);
        }
        routes.next += 1;
        let seq = routes.next;
        routes
            .by_id
            .insert(id.to_string(), (seq, Arc::downgrade(bridge)));
    }

    /// The live bridge that made task `id`, if `principal` owns it.
    fn get(&self, id: &str, principal: &str) -> Option<Arc<Bridge>> {
        let routes = self.0.lock().expect("task routes lock");
        let bridge = routes.by_id.get(id)?.1.upgrade()?;
        (bridge.session.principal == principal && !bridge.session.is_closed()).then_some(bridge)
    }
}

/// One bridge: a session toward the upstreams, initialized once.
pub struct Bridge {
    pub session: Arc<HttpSession>,
    /// The proxy's (merged) initialize result.
    init: OnceCell<Value>,
}

/// Whether this POST is a stateless request: `MCP-Protocol-Version` says
/// 2026-07-28; or, outside a session and not `initialize`, it names a
/// version the session lifecycle does not know (answered with `-32022`), or
/// is absent while `_meta` carries a protocol version.
pub fn applies(headers: &HeaderMap, message: &Message, session_id: Option<&str>) -> bool {
    let sessionless_request = session_id.is_none()
        && matches!(message, Message::Request { method, .. } if method != "initialize");
    match header(headers, PROTOCOL_HEADER) {
        Ok(Some(v)) if STATELESS_VERSIONS.contains(&v) => true,
        Ok(Some(v)) => sessionless_request && !PROTOCOL_VERSIONS.contains(&v),
        Ok(None) => {
            sessionless_request
                && matches!(message, Message::Request { params, .. }
                    if params.pointer("/_meta").and_then(|m| m.get(META_PROTOCOL_VERSION)).is_some())
        }
        Err(_) => false,
    }
}

/// The bridge a client belongs to: its principal, capabilities and info.
pub fn bridge_key(principal: &Principal, capabilities: &Value, info: &Value) -> String {
    format!("{}\n{capabilities}\n{info}", principal.id)
}

/// Handle one stateless POST.
pub async fn post(
    app: &App,
    principal: Principal,
    headers: &HeaderMap,
    message: Message,
) -> Response {
    let Message::Request { id, method, params } = message else {
        // Notifications and responses have no meaning without a session.
        return StatusCode::ACCEPTED.into_response();
    };
    if let Err(e) = check(headers, &id, &method, &params) {
        return e;
    }
    if !(method == "server/discover"
        || method == "ping"
        || BRIDGED_METHODS.contains(&method.as_str()))
    {
        return error(
            StatusCode::NOT_FOUND,
            &id,
            code::METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
            None,
        );
    }
    let meta = params.get("_meta").cloned().unwrap_or(Value::Null);
    let capabilities = meta
        .get(META_CLIENT_CAPABILITIES)
        .cloned()
        .unwrap_or_else(|| json!({}));
    if TASK_METHODS.contains(&method.as_str()) && !declares_tasks(&capabilities) {
        let required = json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}});
        return error(
            StatusCode::OK,
            &id,
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            &format!(
                "Missing required client capability: {method} needs the {TASKS_EXTENSION} extension"
            ),
            Some(required),
        );
    }
    // A task is polled through the bridge that made it.
    let owner = TASK_METHODS
        .contains(&method.as_str())
        .then(|| params.get("taskId").and_then(Value::as_str))
        .flatten()
        .and_then(|task| app.sessions.task_bridges.get(task, &principal.id));
    if let Some(bridge) = owner {
        return relay(app, &bridge, headers, id, method, params).await;
    }
    let info = meta
        .get(META_CLIENT_INFO)
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"name": "unknown-stateless-client", "version": "0"}));
    let (bridge, init) = match bridge(app, principal, &capabilities, &info).await {
        Ok(b) => b,
        Err(mut body) => {
            body["id"] = id;
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
    };
    if method == "server/discover" {
        let losses = bridge_losses(&capabilities, &init);
        let body = json!({"jsonrpc": "2.0", "id": id, "result": discover(&init, &losses)});
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    if method == "ping" {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete"}});
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    relay(app, &bridge, headers, id, method, params).await
}

/// Whether these client capabilities declare the tasks extension.
fn declares_tasks(capabilities: &Value) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some()
}

/// After a `tools/call` answer: remember the task it created, if any.
fn note_task(routes: &TaskBridges, bridge: &Arc<Bridge>, method: &str, answer: &Value) {
    if method != "tools/call" {
        return;
    }
    let Some(result) = answer.get("result") else {
        return;
    };
    if crate::proxy::is_flat_task(result)
        && let Some(task) = crate::proxy::created_task_id(result)
    {
        routes.insert(task, bridge);
    }
}

/// Header and `_meta` rules of the 2026-07-28 transport, in the order the
/// reference implementations apply them.
#[allow(clippy::result_large_err)]
fn check(headers: &HeaderMap, id: &Value, method: &str, params: &Value) -> Result<(), Response> {
    let mismatch = |m: &str| Err(error(StatusCode::BAD_REQUEST, id, HEADER_MISMATCH, m, None));
    let version = match header(headers, PROTOCOL_HEADER) {
        Ok(Some(v)) => v,
        Ok(None) => return mismatch("Missing MCP-Protocol-Version header"),
        Err(e) => return mismatch(&e),
    };
    match header(headers, METHOD_HEADER) {
        Ok(Some(m)) if m == method => {}
        Ok(Some(m)) => {
            return mismatch(&format!(
                "Mcp-Method header `{m}` does not match body method `{method}`"
            ));
        }
        Ok(None) => return mismatch("missing required Mcp-Method header"),
        Err(e) => return mismatch(&e),
    }
    if let Some(expected) = target_name(method, params) {
        match header(headers, NAME_HEADER) {
            Ok(Some(raw)) => match decode(raw) {
                Some(name) if name == expected => {}
                Some(name) => {
                    return mismatch(&format!(
                        "Mcp-Name header `{name}` does not match body value `{expected}`"
                    ));
                }
                None => return mismatch("Mcp-Name header is not valid Base64"),
            },
            Ok(None) => {
                return mismatch(&format!("missing required Mcp-Name header for `{method}`"));
            }
            Err(e) => return mismatch(&e),
        }
    }
    let meta = params.get("_meta");
    let field = |k: &str| meta.and_then(|m| m.get(k));
    let missing: Vec<&str> = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| field(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            id,
            code::INVALID_PARAMS,
            &format!("Invalid params: missing _meta keys: {}", missing.join(", ")),
            None,
        ));
    }
    if let Some(meta_version) = field(META_PROTOCOL_VERSION)
        && meta_version.as_str() != Some(version)
    {
        return mismatch(&format!(
            "MCP-Protocol-Version header ({version}) does not match request _meta protocolVersion ({meta_version})"
        ));
    }
    if !STATELESS_VERSIONS.contains(&version) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            id,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            Some(json!({"supported": STATELESS_VERSIONS, "requested": version})),
        ));
    }
    Ok(())
}

/// The bridge for this client, started and initialized on first use. An
/// error is a JSON-RPC error response (its id is filled in by the caller).
async fn bridge(
    app: &App,
    principal: Principal,
    capabilities: &Value,
    info: &Value,
) -> Result<(Arc<Bridge>, Value), Value> {
    let key = bridge_key(&principal, capabilities, info);
    let bridge = {
        let mut bridges = app.sessions.bridges.lock().expect("bridges lock");
        match bridges.get(&key) {
            Some(b) if !b.session.is_closed() => b.clone(),
            _ => {
                let held = app.sessions.held_by(&principal.id, &bridges);
                let session = app
                    .start_session(principal, Transport::Streamable, held)
                    .map_err(|r| {
                        let message = r.body["error"]
                            .as_str()
                            .or(r.body.pointer("/error/message").and_then(Value::as_str))
                            .unwrap_or("could not start a session")
                            .to_string();
                        crate::jsonrpc::error_response(
                            &Value::Null,
                            code::UPSTREAM_UNAVAILABLE,
                            &message,
                            None,
                        )
                    })?;
                session.mark_stateless();
                let b = Arc::new(Bridge {
                    session,
                    init: OnceCell::new(),
                });
                bridges.insert(key.clone(), b.clone());
                b
            }
        }
    };
    let init = bridge
        .init
        .get_or_try_init(|| initialize(&bridge.session, capabilities, info))
        .await;
    match init {
        Ok(result) => Ok((bridge.clone(), result.clone())),
        Err(e) => {
            let mut bridges = app.sessions.bridges.lock().expect("bridges lock");
            if bridges.get(&key).is_some_and(|b| Arc::ptr_eq(b, &bridge)) {
                bridges.remove(&key);
            }
            bridge
                .session
                .close("the stateless bridge could not be initialized");
            Err(e)
        }
    }
}

/// `initialize` the bridge's proxy (and so its upstreams) as a 2025-11-25
/// client with the stateless client's capabilities and info.
async fn initialize(
    session: &HttpSession,
    capabilities: &Value,
    info: &Value,
) -> Result<Value, Value> {
    let id = json!(BRIDGE_INIT_ID);
    let params = json!({
        "protocolVersion": UPSTREAM_VERSION,
        "capabilities": capabilities,
        "clientInfo": info,
    });
    let message = Message::Request {
        id: id.clone(),
        method: "initialize".into(),
        params: params.clone(),
    };
    let unavailable =
        |m: &str| crate::jsonrpc::error_response(&Value::Null, code::UPSTREAM_UNAVAILABLE, m, None);
    let mut rx = session
        .begin_request(&id, &params, Answer::Json)
        .map_err(|e| unavailable(&e.to_string()))?
        .expect("a JSON exchange");
    session.feed(message).await;
    let answer = rx
        .recv()
        .await
        .map(ToClient::into_value)
        .ok_or_else(|| unavailable("initialize was not answered"))?;
    if let Some(result) = answer.get("result") {
        let message = Message::Notification {
            method: "notifications/initialized".into(),
            params: Value::Null,
        };
        session.feed(message).await;
        return Ok(result.clone());
    }
    Err(
        json!({"jsonrpc": "2.0", "id": Value::Null, "error": answer.get("error").cloned().unwrap_or_else(|| json!({"code": code::INTERNAL_ERROR, "message": "initialize failed"}))}),
    )
}

/// What this client would lose through the stateless bridge that it keeps
/// with the session lifecycle: empty when the bridge carries everything.
pub fn bridge_losses(client_capabilities: &Value, init: &Value) -> Vec<String> {
    let mut losses = Vec::new();
    for (capability, what) in [
        ("sampling", "sampling requests from upstreams"),
        ("elicitation", "elicitation requests from upstreams"),
        ("roots", "roots requests from upstreams"),
    ] {
        if client_capabilities.get(capability).is_some() {
            losses.push(format!(
                "the client offers {capability}, but {what} cannot be relayed statelessly"
            ));
        }
    }
    let offered = init.get("capabilities").cloned().unwrap_or(Value::Null);
    if offered.get("logging").is_some() {
        losses.push("an upstream offers logging (logging/setLevel)".into());
    }
    if offered.pointer("/resources/subscribe") == Some(&Value::Bool(true)) {
        losses.push("an upstream offers resource subscriptions".into());
    }
    if offered.get("tasks").is_some() {
        losses.push("an upstream offers tasks".into());
    }
    losses
}

/// `server/discover`, from the bridge's initialize result. 2026-07-28 is
/// offered only when nothing would be lost (`losses` empty).
fn discover(init: &Value, losses: &[String]) -> Value {
    let mut versions: Vec<&str> = PROTOCOL_VERSIONS.to_vec();
    if losses.is_empty() {
        versions.extend_from_slice(STATELESS_VERSIONS);
    }
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "ttlMs": 0,
        "cacheScope": "private",
    });
    if let Some(instructions) = init.get("instructions").filter(|v| v.is_string()) {
        result["instructions"] = instructions.clone();
    }
    if let Some(info) = init.get("serverInfo") {
        result["_meta"] = json!({ META_SERVER_INFO: info });
    }
    if !losses.is_empty() {
        result["_meta"]["mcp-firewall/stateless"] = json!({
            "offered": false,
            "why": losses,
        });
    }
    result
}

/// Relay one request through the bridge's proxy and give its answer the
/// 2026-07-28 shape.
async fn relay(
    app: &App,
    bridge: &Arc<Bridge>,
    headers: &HeaderMap,
    id: Value,
    method: String,
    mut params: Value,
) -> Response {
    let session = &bridge.session;
    let routes = app.sessions.task_bridges.clone();
    let log_level = params
        .pointer("/_meta")
        .and_then(|m| m.get(META_LOG_LEVEL))
        .and_then(Value::as_str)
        .and_then(|l| LOG_LEVELS.iter().position(|x| *x == l));
    strip_meta(&mut params);
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let inner = json!(format!("sl-{n}"));
    // Clients sharing a bridge choose progress tokens independently too.
    let progress = params.pointer_mut("/_meta/progressToken").map(|token| {
        (
            std::mem::replace(token, json!(format!("sl-{n}-progress"))),
            json!(format!("sl-{n}-progress")),
        )
    });
    let answer = if accepts_sse(headers) && STREAMED_METHODS.contains(&method.as_str()) {
        Answer::Stream
    } else {
        Answer::Json
    };
    let mut rx = match session.begin_request(&inner, &params, answer) {
        Ok(rx) => rx.expect("an exchange for JSON and stream answers"),
        Err(e) => return request_error(&id, e),
    };
    let message = Message::Request {
        id: inner.clone(),
        method: method.clone(),
        params,
    };
    session.feed(message).await;
    match answer {
        Answer::Stream => {
            let (tx, out) = mpsc::channel(super::session::STREAM_QUEUE);
            let bridge = bridge.clone();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    let mut m = m.into_value();
                    if !log_wanted(&m, log_level) {
                        continue;
                    }
                    if let Some((theirs, ours)) = &progress
                        && m["method"] == "notifications/progress"
                        && m.pointer("/params/progressToken") == Some(ours)
                    {
                        m["params"]["progressToken"] = theirs.clone();
                    }
                    let last = m.get("method").is_none();
                    if last {
                        note_task(&routes, &bridge, &method, &m);
                    }
                    let m = if last { reshape(m, &id, &method) } else { m };
                    if tx.send(m.into()).await.is_err() || last {
                        return;
                    }
                }
                let _ = tx.send(unanswered(&id).into()).await;
            });
            sse_response(None, out, None)
        }
        _ => match rx.recv().await.map(ToClient::into_value) {
            Some(m) => {
                note_task(&routes, bridge, &method, &m);
                json(reshape(m, &id, &method))
            }
            None => json(unanswered(&id)),
        },
    }
}

/// The answer when the bridge ended before the request was answered (a
/// stateless client has no way to cancel, so this is never a cancellation).
fn unanswered(id: &Value) -> Value {
    crate::jsonrpc::error_response(
        id,
        code::UPSTREAM_UNAVAILABLE,
        "the stateless bridge closed before the request was answered",
        None,
    )
}

/// Log notifications reach a stateless client only when its request asked
/// for them (`_meta` log level), and only at that level or above. The
/// bridge's upstreams are shared, so their own log level is not changed.
fn log_wanted(message: &Value, wanted: Option<usize>) -> bool {
    if message["method"] != "notifications/message" {
        return true;
    }
    let level = message
        .pointer("/params/level")
        .and_then(Value::as_str)
        .and_then(|l| LOG_LEVELS.iter().position(|x| *x == l));
    matches!((wanted, level), (Some(w), Some(l)) if l >= w)
}

/// The 2026-07-28 shape of a response: the client's id back, and on a
/// result `resultType` (and caching hints where the method has them).
fn reshape(mut response: Value, id: &Value, method: &str) -> Value {
    response["id"] = id.clone();
    if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| json!("complete"));
        if CACHEABLE_METHODS.contains(&method) {
            result.entry("ttlMs").or_insert_with(|| json!(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| json!("private"));
        }
    }
    response
}

/// A JSON answer with the status [`status_of`] gives it.
fn json(response: Value) -> Response {
    (status_of(&response), axum::Json(response)).into_response()
}

/// HTTP status of a JSON answer, as the 2026-07-28 transport maps errors.
fn status_of(response: &Value) -> StatusCode {
    match response.pointer("/error/code").and_then(Value::as_i64) {
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(HEADER_MISMATCH | UNSUPPORTED_PROTOCOL_VERSION) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Drop the 2026 lifecycle fields from `_meta` before the request goes to a
/// 2025-era upstream (which negotiated these at initialize).
fn strip_meta(params: &mut Value) {
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return;
    };
    for key in [
        META_PROTOCOL_VERSION,
        META_CLIENT_INFO,
        META_CLIENT_CAPABILITIES,
        META_LOG_LEVEL,
    ] {
        meta.remove(key);
    }
    if meta.is_empty()
        && let Some(p) = params.as_object_mut()
    {
        p.remove("_meta");
    }
}

/// The value `Mcp-Name` must carry for this request, if any.
fn target_name<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params.get(key)?.as_str()
}

/// A single-valued header, trimmed; an error if repeated or not text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("duplicate {name} header"));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| format!("{name} header contains invalid characters"))
}

/// A header value, Base64-unwrapped when it uses the `=?base64?...?=` form.
fn decode(value: &str) -> Option<String> {
    use base64::Engine;
    match value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|inner| inner.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

fn error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    let body = crate::jsonrpc::error_response(id, code, message, data);
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn meta() -> Value {
        json!({"_meta": {
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {},
        }})
    }

    fn code_of(r: Result<(), Response>) -> Option<StatusCode> {
        r.err().map(|r| r.status())
    }

    #[test]
    fn which_requests_are_stateless() {
        let call = Message::Request {
            id: json!(1),
            method: "tools/list".into(),
            params: meta(),
        };
        let init = Message::Request {
            id: json!(1),
            method: "initialize".into(),
            params: meta(),
        };
        let v2026 = headers(&[("mcp-protocol-version", "2026-07-28")]);
        let v2025 = headers(&[("mcp-protocol-version", "2025-11-25")]);
        let unknown = headers(&[("mcp-protocol-version", "v999")]);
        assert!(applies(&v2026, &call, None));
        assert!(applies(&v2026, &call, Some("s")));
        assert!(
            !applies(&v2025, &call, None),
            "2025 without a session: 400 as before"
        );
        assert!(
            applies(&unknown, &call, None),
            "-32022 lists what we support"
        );
        assert!(!applies(&unknown, &init, None));
        assert!(applies(&HeaderMap::new(), &call, None));
        assert!(!applies(&HeaderMap::new(), &call, Some("s")));
        assert!(!applies(&HeaderMap::new(), &init, None));
    }

    #[test]
    fn header_and_meta_rules() {
        let ok = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "  =?base64?ZWNobw==?=  "),
        ]);
        let mut params = meta();
        params["name"] = json!("echo");
        assert!(check(&ok, &json!(1), "tools/call", &params).is_ok());
        let wrong_method = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "Tools/call"),
            ("mcp-name", "echo"),
        ]);
        assert_eq!(
            code_of(check(&wrong_method, &json!(1), "tools/call", &params)),
            Some(StatusCode::BAD_REQUEST)
        );
        let no_name = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ]);
        assert!(check(&no_name, &json!(1), "tools/call", &params).is_err());
        let list = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        assert!(check(&list, &json!(1), "tools/list", &json!({})).is_err());
        assert!(check(&list, &json!(1), "tools/list", &meta()).is_ok());
    }

    #[test]
    fn responses_get_the_2026_shape_and_ids_back() {
        let r = reshape(
            json!({"jsonrpc": "2.0", "id": "sl-9", "result": {"tools": []}}),
            &json!(3),
            "tools/list",
        );
        assert_eq!(r["id"], 3);
        assert_eq!(r["result"]["resultType"], "complete");
        assert_eq!(r["result"]["ttlMs"], 0);
        assert_eq!(r["result"]["cacheScope"], "private");
        let r = reshape(
            json!({"jsonrpc": "2.0", "id": "sl-9", "result": {"content": []}}),
            &json!("a"),
            "tools/call",
        );
        assert!(r["result"].get("ttlMs").is_none());
        let e = reshape(
            json!({"jsonrpc": "2.0", "id": "sl-9", "error": {"code": -32601, "message": "x"}}),
            &json!(4),
            "tools/call",
        );
        assert_eq!(e["id"], 4);
        assert_eq!(status_of(&e), StatusCode::NOT_FOUND);
    }

    #[test]
    fn logs_only_when_asked_and_at_or_above_the_level() {
        let log = |l: &str| json!({"method": "notifications/message", "params": {"level": l}});
        assert!(!log_wanted(&log("error"), None));
        assert!(log_wanted(&log("error"), Some(3)));
        assert!(!log_wanted(&log("info"), Some(3)));
        assert!(log_wanted(
            &json!({"method": "notifications/progress"}),
            None
        ));
        let mut params =
            json!({"_meta": {META_LOG_LEVEL: "info", "progressToken": 1, META_CLIENT_INFO: {}}});
        strip_meta(&mut params);
        assert_eq!(params, json!({"_meta": {"progressToken": 1}}));
    }
}
