//! Streamable HTTP (MCP 2025-06-18 / 2025-11-25), one endpoint, `/mcp`:
//!
//! - `POST` one JSON-RPC message. `initialize` (without `Mcp-Session-Id`)
//!   opens a session and its answer carries the new `Mcp-Session-Id`;
//!   everything after must carry it (400 without, 404 for an unknown or
//!   ended session). A request is answered with `application/json`, or with
//!   `text/event-stream` (related notifications and server requests, then
//!   the response) when the client accepts it and the method is one that
//!   reaches an upstream and may make it talk back (`tools/call`,
//!   `resources/read`, `prompts/get`). Notifications and responses get 202.
//! - `GET` opens the session stream for messages tied to no request.
//! - `DELETE` ends the session: its proxy and upstream processes go away.
//!
//! `MCP-Protocol-Version`, when sent, must be a version we speak (400).
//! A POST with `MCP-Protocol-Version: 2026-07-28` (or, without a session,
//! a 2026-07-28 `_meta`) is a stateless request: see [`super::stateless`].

use std::sync::Arc;

use super::body::ClientBody;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::session::{Answer, HttpSession, RequestError, Transport};
use super::{App, Refused, json_response, plain, sse_response, stateless};
use crate::jsonrpc::{self, Message};
use crate::proxy::ToClient;
use crate::proxy::session::Principal;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// Versions accepted in `MCP-Protocol-Version` (those negotiated at initialize).
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Methods answered with an SSE stream when the client accepts one: they
/// reach an upstream, which may send progress, logs or requests meanwhile.
/// The stream's head goes out at once, so the client reads it while the
/// call is decided and forwarded: waiting to send a response that came
/// back alone as JSON instead was measured slower end to end (httpx, p50
/// 0.65 -> 0.73 ms) for no less CPU here (docs/performance.md).
pub(super) const STREAMED_METHODS: &[&str] = &["tools/call", "resources/read", "prompts/get"];

pub fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/mcp",
        post(post_message).get(open_stream).delete(end_session),
    )
}

async fn post_message(
    State(app): State<Arc<App>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ClientBody(body): ClientBody,
) -> Response {
    let message = match parse(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    // The text (and its share of the budget) goes once the message is parsed.
    drop(body);
    if stateless::applies(&headers, &message, session_id(&headers)) {
        return stateless::post(&app, principal, &headers, message).await;
    }
    if let Err(r) = check_version(&headers) {
        return r.into_response();
    }
    let session = match (&message, session_id(&headers)) {
        (Message::Request { method, .. }, None) if method == "initialize" => {
            return initialize(&app, principal, message).await;
        }
        (_, None) => return plain(StatusCode::BAD_REQUEST, "Mcp-Session-Id header required"),
        (_, Some(id)) => match app.sessions.get(id, &principal) {
            Some(s) => s,
            None => return plain(StatusCode::NOT_FOUND, "no such session"),
        },
    };
    let Message::Request { id, method, params } = &message else {
        session.feed(message).await;
        return StatusCode::ACCEPTED.into_response();
    };
    let answer = if accepts_sse(&headers) && STREAMED_METHODS.contains(&method.as_str()) {
        Answer::Stream
    } else {
        Answer::Json
    };
    let rx = match session.begin_request(id, params, answer) {
        Ok(rx) => rx.expect("an exchange for JSON and stream answers"),
        Err(e) => return request_error(id, e),
    };
    session.feed(message).await;
    match answer {
        Answer::Stream => sse_response(None, rx, None),
        _ => json_answer(rx).await,
    }
}

/// Open a session, run `initialize` in it, and answer with its id. A
/// failed initialize closes the session again.
async fn initialize(app: &App, principal: Principal, message: Message) -> Response {
    let Message::Request { id, params, .. } = &message else {
        unreachable!("initialize is a request")
    };
    let session = match app.open_session(principal, Transport::Streamable) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let rx = match session.begin_request(id, params, Answer::Json) {
        Ok(rx) => rx.expect("a JSON exchange"),
        Err(e) => return request_error(id, e),
    };
    session.feed(message).await;
    let mut rx = rx;
    let Some(answer) = rx.recv().await.map(ToClient::into_value) else {
        end(app, &session, "initialize was not answered");
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "initialize was not answered",
        );
    };
    if answer.get("error").is_some() {
        end(app, &session, "initialize failed");
        return (StatusCode::OK, axum::Json(answer)).into_response();
    }
    let mut response = (StatusCode::OK, axum::Json(answer)).into_response();
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

async fn open_stream(
    State(app): State<Arc<App>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_version(&headers) {
        return r.into_response();
    }
    let Some(id) = session_id(&headers) else {
        return plain(StatusCode::BAD_REQUEST, "Mcp-Session-Id header required");
    };
    let Some(session) = app.sessions.get(id, &principal) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    match session.open_stream() {
        Some(rx) => sse_response(None, rx, None),
        None => plain(
            StatusCode::CONFLICT,
            "this session already has a stream open",
        ),
    }
}

async fn end_session(
    State(app): State<Arc<App>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = session_id(&headers) else {
        return plain(StatusCode::BAD_REQUEST, "Mcp-Session-Id header required");
    };
    let Some(session) = app.sessions.get(id, &principal) else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    end(&app, &session, "the client ended it (DELETE)");
    StatusCode::NO_CONTENT.into_response()
}

fn end(app: &App, session: &HttpSession, why: &str) {
    app.sessions.remove(&session.id);
    session.close(why);
}

/// Wait for the response alone. A request cancelled meanwhile gets none:
/// 202 with no body.
async fn json_answer(mut rx: tokio::sync::mpsc::Receiver<ToClient>) -> Response {
    match rx.recv().await {
        Some(answer) => json_response(StatusCode::OK, &answer),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// One JSON-RPC message, or the 400 that answers it.
pub(super) fn parse(body: &[u8]) -> Result<Message, Refused> {
    jsonrpc::parse_bytes(body).map_err(|e| {
        tracing::warn!("refused a malformed message from an HTTP client: {e}");
        crate::metrics::metrics().refused("malformed");
        Refused::new(StatusCode::BAD_REQUEST, e.to_response())
    })
}

pub(super) fn request_error(id: &Value, e: RequestError) -> Response {
    let status = match e {
        RequestError::TooMany => StatusCode::TOO_MANY_REQUESTS,
        RequestError::DuplicateId(_) => StatusCode::BAD_REQUEST,
        RequestError::Closed => StatusCode::NOT_FOUND,
    };
    let body = jsonrpc::error_response(id, jsonrpc::code::INVALID_REQUEST, &e.to_string(), None);
    (status, axum::Json(body)).into_response()
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER)?.to_str().ok()
}

pub(super) fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn check_version(headers: &HeaderMap) -> Result<(), Refused> {
    match headers
        .get(PROTOCOL_HEADER)
        .map(|v| v.to_str().unwrap_or(""))
    {
        Some(v) if !PROTOCOL_VERSIONS.contains(&v) => Err(Refused::error(
            StatusCode::BAD_REQUEST,
            &format!("unsupported MCP-Protocol-Version {v:?}"),
        )),
        _ => Ok(()),
    }
}
