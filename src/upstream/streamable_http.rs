//! The Streamable HTTP transport (MCP 2025-03-26 and later): every message
//! the firewall sends is one `POST` to the server's URL; the answer comes
//! back as the response body (`application/json`) or on an event stream the
//! response opens (`text/event-stream`), possibly after server requests and
//! notifications about it. Server-initiated messages outside any request
//! come on a `GET` event stream opened after `notifications/initialized`.
//!
//! Invariants:
//! - the session id the server assigned in its `initialize` response, and
//!   the protocol version it chose, are stored before that response is
//!   delivered, so every later message carries both;
//! - each request ends with its answer or with a [`Transport`] error (network
//!   failure, error status, stream ended without the answer): never a hang;
//! - a `404` for a request that carried a session id means the server has
//!   forgotten the session: the upstream is finished ("session expired"); a
//!   server that issued no session answering the GET stream with `404` just
//!   offers no such stream (like `405`);
//! - a POST stream that ends before its answer after naming event ids is
//!   resumed with a `GET` carrying `Last-Event-ID` (SEP-1699: a server may
//!   send a priming event and close the stream, then replay on the GET),
//!   after the server's `retry:` delay, until the answer comes or the server
//!   stops making progress; the call's own deadline bounds it all;
//! - POSTs run concurrently (a long tool call does not hold up the next
//!   message), at most [`MAX_CONCURRENT_POSTS`] at a time.
//!
//! [`Transport`]: super::UpstreamError::Transport

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::connection::{Outgoing, Upstream, UpstreamError, UpstreamEvent};
use super::event_stream::EventReader;
use super::http::{self, describe, media_type, status_error};
use crate::config::HttpSpec;

/// POSTs in flight at once. Each holds a connection (and, for a running
/// tool call, a server-side task); beyond this, messages wait in the queue.
pub const MAX_CONCURRENT_POSTS: usize = 64;
/// Wait before reopening the GET stream when the server gave no `retry:`.
const GET_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Consecutive failed attempts to (re)open the GET stream before giving up
/// on it; requests keep working without it.
const GET_MAX_FAILURES: u32 = 5;
/// Longest wait before resuming a stream a server may ask for with `retry:`;
/// a hostile server cannot park a call beyond its deadline anyway.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Resumptions of one POST stream in a row that bring no new event before
/// the call is failed.
const RESUME_MAX_IDLE: u32 = 3;

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// What one upstream's tasks share.
struct Session {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    events: mpsc::Sender<UpstreamEvent>,
    /// Assigned by the server in the `initialize` response, if it uses sessions.
    id: Mutex<Option<HeaderValue>>,
    /// The version the server answered `initialize` with.
    version: Mutex<Option<HeaderValue>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// How long a big message may take to arrive (the upstream's request
    /// deadline; see `framing::LineReader::deadline`).
    deadline: Duration,
}

/// Why a POST did not produce its answer.
enum Failure {
    /// The server no longer knows our session.
    Expired,
    Other(String),
}

pub(super) fn start(
    name: &str,
    spec: &HttpSpec,
    deadline: Duration,
    events: mpsc::Sender<UpstreamEvent>,
) -> Result<Arc<Upstream>, UpstreamError> {
    let client = http::client(name).map_err(|message| UpstreamError::Spawn {
        server: name.to_string(),
        message,
    })?;
    let (upstream, rx) = Upstream::new(name);
    let session = Arc::new(Session {
        client,
        url: spec.url.clone(),
        headers: http::header_map(&spec.headers),
        events,
        id: Mutex::new(None),
        version: Mutex::new(None),
        listener: Mutex::new(None),
        deadline,
    });
    crate::scope::spawn_lingering(pump(Arc::downgrade(&upstream), session, rx));
    Ok(upstream)
}

/// Send each queued message as its own POST; when the queue closes (the
/// upstream was dropped) or the firewall's session closes, stop listening
/// and end the upstream's session.
async fn pump(upstream: Weak<Upstream>, session: Arc<Session>, mut rx: mpsc::Receiver<Outgoing>) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_POSTS));
    while let Some(Some(message)) = crate::scope::unless_closed(rx.recv()).await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (upstream, session) = (upstream.clone(), session.clone());
        crate::scope::spawn(async move {
            exchange(upstream, session, message).await;
            drop(permit);
        });
    }
    if let Some(listener) = session.listener.lock().expect("listener lock").take() {
        listener.abort();
    }
    end_session(&session).await;
}

/// One POST and everything that comes back on it.
async fn exchange(upstream: Weak<Upstream>, session: Arc<Session>, message: Outgoing) {
    let request_id = message.request_id;
    let method = message.method.clone();
    let outcome = post(&upstream, &session, message).await;
    let Some(up) = upstream.upgrade() else {
        return;
    };
    match outcome {
        Ok(()) => {
            if let Some(id) = request_id.filter(|&id| up.is_pending(id)) {
                up.fail(id, "the server ended its response without answering".into());
            }
            if method.as_deref() == Some("notifications/initialized") {
                let listener = crate::scope::spawn(listen(upstream.clone(), session.clone()));
                *session.listener.lock().expect("listener lock") = Some(listener);
            }
        }
        Err(Failure::Expired) => {
            up.finish(&session.events, "session expired (HTTP 404)".into())
                .await;
        }
        Err(Failure::Other(message)) => match request_id {
            Some(id) => up.fail(id, message),
            None => tracing::warn!(server = %up.name(), "message not delivered: {message}"),
        },
    }
}

async fn post(
    upstream: &Weak<Upstream>,
    session: &Session,
    message: Outgoing,
) -> Result<(), Failure> {
    let initialize = message.method.as_deref() == Some("initialize");
    let request_id = message.request_id;
    let had_session = session.has_id();
    let request = session
        .with_session(session.client.post(&session.url))
        .header(ACCEPT, ACCEPT_BOTH)
        .header(CONTENT_TYPE, "application/json")
        .body(message.body);
    let response = request
        .send()
        .await
        .map_err(|e| Failure::Other(describe(e)))?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND && had_session {
        return Err(Failure::Expired);
    }
    if !status.is_success() {
        return Err(Failure::Other(status_error(response).await));
    }
    if initialize && let Some(id) = response.headers().get(SESSION_ID) {
        *session.id.lock().expect("id lock") = Some(id.clone());
    }
    // Before delivery: the proxy's next message must carry the version.
    let note_version = |body: &[u8]| {
        if initialize {
            session.note_version(body);
        }
    };
    match media_type(&response).as_str() {
        // Accepted, or a success without a body (lenient: nothing to deliver).
        _ if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT => Ok(()),
        "" => Ok(()),
        "application/json" => {
            http::deliver_json(
                upstream,
                &session.events,
                response,
                session.deadline,
                note_version,
            )
            .await
        }
        "text/event-stream" => {
            let mut reader = EventReader::new(response, session.deadline);
            let delivered =
                http::deliver_events(upstream, &session.events, &mut reader, note_version).await;
            let unanswered =
                request_id.filter(|&id| upstream.upgrade().is_some_and(|up| up.is_pending(id)));
            match (unanswered, reader.parser.last_id.take()) {
                (Some(id), Some(last_id)) => {
                    let retry = reader.parser.retry.unwrap_or(GET_RETRY_DELAY);
                    return resume(upstream, session, id, last_id, retry).await;
                }
                _ => delivered,
            }
        }
        other => Err(format!("unexpected Content-Type {other:?} (HTTP {status})")),
    }
    .map_err(Failure::Other)
}

/// Resume a POST stream that ended before answering request `id`: `GET`
/// with `Last-Event-ID` after `retry`, deliver what the server replays, and
/// go on while it makes progress (new event ids) and the request is pending.
async fn resume(
    upstream: &Weak<Upstream>,
    session: &Session,
    id: u64,
    mut last_id: String,
    mut retry: Duration,
) -> Result<(), Failure> {
    let had_session = session.has_id();
    let mut idle = 0;
    loop {
        tokio::time::sleep(retry.min(MAX_RETRY_DELAY)).await;
        match upstream.upgrade() {
            Some(up) if up.is_alive() && up.is_pending(id) => {}
            _ => return Ok(()),
        }
        let response = session
            .with_session(session.client.get(&session.url))
            .header(ACCEPT, "text/event-stream")
            .header(LAST_EVENT_ID, &last_id)
            .send()
            .await
            .map_err(|e| Failure::Other(format!("resuming the stream: {}", describe(e))))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && had_session {
            return Err(Failure::Expired);
        }
        if !status.is_success() || media_type(&response) != "text/event-stream" {
            let message = status_error(response).await;
            return Err(Failure::Other(format!("resuming the stream: {message}")));
        }
        let mut reader = EventReader::new(response, session.deadline);
        let delivered = http::deliver_events(upstream, &session.events, &mut reader, |_| {}).await;
        if !upstream.upgrade().is_some_and(|up| up.is_pending(id)) {
            return delivered.map_err(Failure::Other);
        }
        match reader.parser.last_id.take() {
            Some(newer) if newer != last_id => {
                last_id = newer;
                idle = 0;
            }
            _ => idle += 1,
        }
        if idle >= RESUME_MAX_IDLE {
            return Err(Failure::Other(format!(
                "the server's stream ended {RESUME_MAX_IDLE} times without the answer or a new event"
            )));
        }
        retry = reader.parser.retry.unwrap_or(retry);
    }
}

/// The GET stream for server-initiated messages, reopened when it ends
/// (with `Last-Event-ID`, so a server that supports resumption can replay).
async fn listen(upstream: Weak<Upstream>, session: Arc<Session>) {
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    let mut delay = GET_RETRY_DELAY;
    loop {
        let name = match upstream.upgrade() {
            Some(up) if up.is_alive() => up.name().to_string(),
            _ => return,
        };
        let mut request = session
            .with_session(session.client.get(&session.url))
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header(LAST_EVENT_ID, id);
        }
        match request.send().await {
            Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(server = %name, "server offers no GET stream");
                return;
            }
            Ok(response) if response.status() == StatusCode::NOT_FOUND && !session.has_id() => {
                tracing::debug!(server = %name, "server issued no session and offers no GET stream");
                return;
            }
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                if let Some(up) = upstream.upgrade() {
                    up.finish(&session.events, "session expired (HTTP 404)".into())
                        .await;
                }
                return;
            }
            Ok(response) if response.status().is_success() => {
                failures = 0;
                let mut reader = EventReader::new(response, session.deadline);
                let result =
                    http::deliver_events(&upstream, &session.events, &mut reader, |_| {}).await;
                if let Err(e) = result {
                    tracing::debug!(server = %name, "GET stream broke: {e}");
                }
                last_id = reader.parser.last_id.clone().or(last_id);
                delay = reader.parser.retry.unwrap_or(delay);
            }
            Ok(response) => {
                let message = status_error(response).await;
                tracing::warn!(server = %name, "GET stream refused ({message}); not retried");
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(server = %name, "GET stream failed: {}", describe(e));
                if failures >= GET_MAX_FAILURES {
                    return;
                }
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Tell the server the session is over (best effort: it may not support
/// DELETE, and we are shutting down anyway).
async fn end_session(session: &Session) {
    if !session.has_id() {
        return;
    }
    let request = session
        .with_session(session.client.delete(&session.url))
        .timeout(http::SHUTDOWN_REQUEST_TIMEOUT);
    if let Err(e) = request.send().await {
        tracing::debug!(url = %session.url, "DELETE of the session failed: {}", describe(e));
    }
}

impl Session {
    /// Whether the server assigned a session id.
    fn has_id(&self) -> bool {
        self.id.lock().expect("id lock").is_some()
    }

    /// Configured headers, then the session id and protocol version once known.
    fn with_session(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut request = request.headers(self.headers.clone());
        if let Some(id) = self.id.lock().expect("id lock").clone() {
            request = request.header(SESSION_ID, id);
        }
        if let Some(version) = self.version.lock().expect("version lock").clone() {
            request = request.header(PROTOCOL_VERSION, version);
        }
        request
    }

    /// Remember the protocol version from an `initialize` result.
    fn note_version(&self, message: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(message) else {
            return;
        };
        if let Some(version) = value["result"]["protocolVersion"].as_str()
            && let Ok(header) = HeaderValue::from_str(version)
        {
            *self.version.lock().expect("version lock") = Some(header);
        }
    }
}
