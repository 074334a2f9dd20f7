//! The legacy HTTP+SSE transport (MCP 2024-11-05), for clients that have
//! not moved to Streamable HTTP:
//!
//! - `GET /sse` opens a session; its first event is `endpoint` with
//!   `/messages?sessionId=<id>`, and every message for the client follows
//!   on this stream. The session lives exactly as long as the stream: when
//!   the client disconnects, the session and its upstream processes end.
//! - `POST /messages?sessionId=<id>` carries one JSON-RPC message and is
//!   answered 202; the response arrives on the stream.

use std::sync::Arc;

use super::body::ClientBody;
use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{Answer, HttpSession, Transport};
use super::streamable::{parse, request_error};
use super::{App, plain, sse_response};
use crate::jsonrpc::Message;
use crate::proxy::session::Principal;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sse", get(open))
        .route("/messages", post(post_message))
}

#[derive(Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

async fn open(State(app): State<Arc<App>>, Extension(principal): Extension<Principal>) -> Response {
    let session = match app.open_session(principal, Transport::Sse) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(rx) = session.open_stream() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "session stream unavailable",
        );
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={}", session.id));
    let guard = EndOnDrop {
        app: app.clone(),
        session,
    };
    sse_response(Some(endpoint), rx, Some(Box::new(guard)))
}

async fn post_message(
    State(app): State<Arc<App>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<SessionQuery>,
    ClientBody(body): ClientBody,
) -> Response {
    let Some(session) = app
        .sessions
        .get(&query.session_id, &principal)
        .filter(|s| s.transport == Transport::Sse)
    else {
        return plain(StatusCode::NOT_FOUND, "no such session");
    };
    let message = match parse(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    drop(body);
    if let Message::Request { id, params, .. } = &message
        && let Err(e) = session.begin_request(id, params, Answer::SessionStream)
    {
        return request_error(id, e);
    }
    session.feed(message).await;
    StatusCode::ACCEPTED.into_response()
}

/// Held by the `/sse` response stream: when the client disconnects and the
/// stream is dropped, the session ends.
struct EndOnDrop {
    app: Arc<App>,
    session: Arc<HttpSession>,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.app.sessions.remove(&self.session.id);
        self.session.close("the SSE stream closed");
    }
}
