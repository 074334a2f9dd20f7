//! One HTTP session: one [`Proxy`] with its own `Session` (principal,
//! history, audit session id), its own upstream processes, and the routing
//! of the proxy's outgoing messages to the HTTP streams that are open.
//!
//! Lifecycle: every session runs on the process runtime inside a
//! [`Scope`] of its own. Closing the session (DELETE, the legacy SSE stream
//! ending, idle timeout, a client that stops reading, SIGTERM) closes the
//! scope: every task of the session ends, each upstream process group is
//! killed and its child reaped, each HTTP upstream's session is ended with
//! its `DELETE`. Nothing of one session outlives it, and no session costs a
//! thread.
//!
//! Routing (see [`Routes::route`]): a response goes to the exchange that
//! carried its request; a progress notification goes to the exchange whose
//! request carried its `progressToken`; any other message goes to the one
//! streaming POST in flight if there is exactly one, else to the session
//! stream (`GET /mcp`, or the legacy `/sse` stream), else into a bounded
//! buffer flushed when a session stream opens. Queues are bounded and
//! written with `try_send`: a client that does not read its stream never
//! blocks the proxy, and a full queue closes the session (logged).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::jsonrpc::Message;
use crate::proxy::session::Session;
use crate::proxy::{ClientSink, Proxy, Shared, ToClient};
use crate::scope::Scope;
use crate::upstream::UpstreamError;

/// Requests of one session being worked on at once; beyond it, 429.
pub const MAX_INFLIGHT_PER_SESSION: usize = 32;
/// Messages queued on one HTTP stream (a POST's SSE answer, `GET /mcp`, the
/// legacy `/sse` stream). A client that lets this fill is not reading: its
/// session is closed rather than letting memory grow.
pub const STREAM_QUEUE: usize = 256;
/// Messages kept for a session with no stream open to take them (oldest
/// dropped first, logged). Not above [`STREAM_QUEUE`], so a flush fits.
pub const UNDELIVERED_BUFFER: usize = 256;
/// A Streamable HTTP session with no request, no open stream and nothing in
/// flight for this long is closed (clients that vanish without DELETE).
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a closing session's tasks may take to end (an upstream's
/// `DELETE`, reaping a killed process) before it is logged as stuck.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Which client-facing HTTP transport a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP, `/mcp` (MCP 2025-03-26 and later).
    Streamable,
    /// The legacy HTTP+SSE transport, `/sse` + `/messages` (MCP 2024-11-05).
    Sse,
}

impl Transport {
    /// `session.transport` in policy input and the audit log.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Streamable => "streamable-http",
            Transport::Sse => "sse",
        }
    }
}

/// Where the answer to one client request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A plain JSON response: only the response goes to the exchange.
    Json,
    /// An SSE response: the response and messages related to it.
    Stream,
    /// The session stream (legacy SSE: the POST itself gets 202).
    SessionStream,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("more than {MAX_INFLIGHT_PER_SESSION} requests in flight in this session")]
    TooMany,
    #[error("a request with id {0} is already in flight")]
    DuplicateId(String),
    #[error("session closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

pub struct HttpSession {
    /// The `Mcp-Session-Id` / `sessionId`; the same id as the audit log's
    /// `session_id`.
    pub id: String,
    pub transport: Transport,
    /// Who opened the session; every later request must be the same principal.
    pub principal: String,
    proxy: Arc<Proxy>,
    /// Every task of the session; closed with it.
    scope: Scope,
    routes: Mutex<Routes>,
    inflight: Arc<Semaphore>,
    last_seen: Mutex<Instant>,
    /// The registry's slot, given back on close.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    /// The registry's sweeper, woken on close to let go of the session.
    on_close: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Routes {
    /// Requests in flight, by their id's JSON text.
    pending: HashMap<String, Pending>,
    /// progressToken JSON text -> request key.
    progress: HashMap<String, String>,
    /// `GET /mcp` or the legacy `/sse` stream.
    stream: Option<mpsc::Sender<ToClient>>,
    undelivered: VecDeque<ToClient>,
    /// A stateless (2026-07-28) bridge: there is no session stream, so
    /// messages tied to no exchange are dropped rather than buffered.
    stateless: bool,
}

struct Pending {
    /// `None`: the answer goes to the session stream.
    sink: Option<mpsc::Sender<ToClient>>,
    /// The sink also takes messages related to the request.
    streaming: bool,
    progress_token: Option<String>,
    _permit: OwnedSemaphorePermit,
}

impl HttpSession {
    /// Start the session's proxy (which spawns the upstream processes) in a
    /// scope of its own. `slot` is the registry's permit for this session;
    /// `on_close` is notified when the session closes.
    pub fn start(
        shared: Arc<Shared>,
        session: Session,
        transport: Transport,
        slot: OwnedSemaphorePermit,
        on_close: Arc<tokio::sync::Notify>,
    ) -> Result<Arc<HttpSession>, StartError> {
        let id = session.id.clone();
        let principal = session.principal.id.clone();
        let scope = Scope::for_principal(&principal);
        // The proxy hands its messages for the client straight to this
        // session's routes, on the task that sends them. It holds the
        // session weakly (the session holds the proxy), and the session is
        // made after the proxy, so the link is set just below.
        let this: Arc<OnceLock<Weak<HttpSession>>> = Arc::default();
        let sink = {
            let this = this.clone();
            ClientSink::Direct(Box::new(move |message| {
                match this.get().and_then(Weak::upgrade) {
                    Some(session) => session.outgoing(message),
                    None => tracing::debug!("no HTTP session to take a message: {message}"),
                }
            }))
        };
        let (proxy, events) = match scope.enter(|| Proxy::start(shared, session, sink)) {
            Ok(started) => started,
            Err(e) => {
                scope.close();
                return Err(e.into());
            }
        };
        let session = Arc::new(HttpSession {
            id,
            transport,
            principal,
            proxy: proxy.clone(),
            scope: scope.clone(),
            routes: Mutex::new(Routes::default()),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT_PER_SESSION)),
            last_seen: Mutex::new(Instant::now()),
            slot: Mutex::new(Some(slot)),
            on_close,
        });
        let _ = this.set(Arc::downgrade(&session));
        scope.spawn(proxy.run_events(events));
        tracing::info!(session = %session.id, principal = %session.principal, transport = transport.label(), "HTTP session started");
        Ok(session)
    }

    pub fn is_closed(&self) -> bool {
        self.scope.is_closed()
    }

    /// Stop the session: its streams end, its tasks end and its upstream
    /// processes are stopped (see [`HttpSession::finished`]). Idempotent.
    pub fn close(&self, why: &str) {
        if self.scope.is_closed() {
            return;
        }
        tracing::info!(session = %self.id, principal = %self.principal, "HTTP session closed: {why}");
        self.proxy.end(why);
        self.scope.close();
        *self.routes.lock().expect("routes lock") = Routes::default();
        self.slot.lock().expect("slot lock").take();
        self.on_close.notify_one();
    }

    /// Wait (at most [`CLOSE_GRACE`]) until a closed session's tasks have
    /// ended: its upstream processes reaped, its upstream sessions ended.
    pub async fn finished(&self) {
        if !self.scope.finished(CLOSE_GRACE).await {
            tracing::warn!(
                session = %self.id,
                tasks = self.scope.running(),
                "a closed session's tasks did not end within {CLOSE_GRACE:?}"
            );
        }
    }

    /// Register a client request before it is handed to the proxy; the
    /// receiver (for [`Answer::Json`] and [`Answer::Stream`]) yields the
    /// messages for this exchange and ends after the response.
    pub fn begin_request(
        &self,
        id: &Value,
        params: &Value,
        answer: Answer,
    ) -> Result<Option<mpsc::Receiver<ToClient>>, RequestError> {
        self.touch();
        let permit = self
            .inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| RequestError::TooMany)?;
        let key = id.to_string();
        let mut routes = self.routes.lock().expect("routes lock");
        if self.is_closed() {
            return Err(RequestError::Closed);
        }
        if routes.pending.contains_key(&key) {
            return Err(RequestError::DuplicateId(key));
        }
        let (sink, rx) = match answer {
            Answer::SessionStream => (None, None),
            Answer::Json | Answer::Stream => {
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                (Some(tx), Some(rx))
            }
        };
        let progress_token = params.pointer("/_meta/progressToken").map(Value::to_string);
        if let Some(token) = &progress_token {
            routes.progress.insert(token.clone(), key.clone());
        }
        routes.pending.insert(
            key,
            Pending {
                sink,
                streaming: answer == Answer::Stream,
                progress_token,
                _permit: permit,
            },
        );
        Ok(rx)
    }

    /// Hand one client message (parsed once, by the transport) to the
    /// proxy, in the session's scope, and wait until the proxy has taken it
    /// (requests then run on their own tasks), so messages POSTed one after
    /// another are handled in order.
    pub async fn feed(&self, message: Message) {
        self.touch();
        if let Message::Notification { method, params } = &message
            && method == "notifications/cancelled"
            && let Some(id) = params.get("requestId")
        {
            // A cancelled request gets no response: stop waiting for one.
            self.forget(&id.to_string());
        }
        // A request only takes a slot and spawns the request's task. While
        // fewer requests run than the runtime has workers, that is done
        // here: the request's task then starts on this worker, and nothing
        // wakes another one (two `futex` calls and a thread switched to, per
        // sequential call). Under load it is done on a task of its own:
        // the request's task would otherwise wait in this worker's LIFO
        // slot, which the other worker cannot steal, and 64 sessions each
        // with its own upstream process lost ~10 % of their calls/s
        // (docs/performance.md). Other messages always get a task of their
        // own: a notification's handling awaits, and must go on if the
        // client drops the connection.
        let proxy = self.proxy.clone();
        if matches!(message, Message::Request { .. })
            && crate::proxy::requests_running() < workers()
        {
            return self.scope.run(proxy.handle_message(message)).await;
        }
        let task = self
            .scope
            .spawn(async move { proxy.handle_message(message).await });
        let _ = task.await;
    }

    /// Stop waiting for the answer to a request (the exchange's stream ends).
    pub fn forget(&self, key: &str) {
        let mut routes = self.routes.lock().expect("routes lock");
        if let Some(p) = routes.pending.remove(key)
            && let Some(token) = p.progress_token
        {
            routes.progress.remove(&token);
        }
    }

    /// Open the session stream; `None` if one is already open. Messages
    /// buffered while none was open come first.
    pub fn open_stream(&self) -> Option<mpsc::Receiver<ToClient>> {
        self.touch();
        let mut routes = self.routes.lock().expect("routes lock");
        if self.is_closed() || routes.stream.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        for message in routes.undelivered.drain(..) {
            let _ = tx.try_send(message);
        }
        routes.stream = Some(tx);
        Some(rx)
    }

    /// Nothing in flight, no stream open, no request for `timeout`.
    pub fn idle_for(&self, timeout: Duration) -> bool {
        let routes = self.routes.lock().expect("routes lock");
        let streaming = routes.stream.as_ref().is_some_and(|s| !s.is_closed());
        routes.pending.is_empty()
            && !streaming
            && self.last_seen.lock().expect("last_seen lock").elapsed() >= timeout
    }

    /// Make this session a stateless bridge (see `stateless`): messages tied
    /// to no exchange are dropped, and server-to-client requests are refused
    /// back to the upstream, since a stateless client cannot answer them.
    pub fn mark_stateless(&self) {
        self.routes.lock().expect("routes lock").stateless = true;
    }

    fn is_stateless(&self) -> bool {
        self.routes.lock().expect("routes lock").stateless
    }

    fn touch(&self) {
        *self.last_seen.lock().expect("last_seen lock") = Instant::now();
    }

    /// One message of the proxy's for the client, into the session's
    /// streams (see [`Routes::route`]). A closed session takes no more.
    fn outgoing(&self, message: ToClient) {
        if self.is_closed() {
            return;
        }
        if let Some(request) = message.as_message()
            && request.get("method").is_some()
            && let Some(id) = request.get("id")
            && self.is_stateless()
        {
            refuse_server_request(self, id, request);
            return;
        }
        if let Err(why) = self.deliver(message) {
            if self.is_stateless() {
                // A bridge is shared: one client that stops reading loses
                // its own messages, not everyone's bridge.
                tracing::warn!(session = %self.id, "stateless bridge: dropped a message: {why}");
                return;
            }
            tracing::warn!(session = %self.id, "{why}");
            self.close(&why);
        }
    }

    fn deliver(&self, message: ToClient) -> Result<(), String> {
        self.routes.lock().expect("routes lock").route(message)
    }
}

impl Routes {
    fn route(&mut self, message: ToClient) -> Result<(), String> {
        if message.method().is_none() {
            let key = message.id().map(Value::to_string).unwrap_or_default();
            if let Some(pending) = self.pending.remove(&key) {
                if let Some(token) = &pending.progress_token {
                    self.progress.remove(token);
                }
                if let Some(sink) = pending.sink {
                    return push(&sink, message);
                }
            }
            return self.session_stream(message);
        }
        if let Some(sink) = self.related_sink(&message) {
            let sink = sink.clone();
            return push(&sink, message);
        }
        self.session_stream(message)
    }

    /// The streaming exchange a notification or server request belongs to:
    /// the one whose progress token it carries, else the only one open.
    fn related_sink(&self, message: &ToClient) -> Option<&mpsc::Sender<ToClient>> {
        let open = |p: &&Pending| p.streaming && p.sink.as_ref().is_some_and(|s| !s.is_closed());
        if let Some(message) = message.as_message()
            && message["method"] == "notifications/progress"
            && let Some(token) = message.pointer("/params/progressToken")
            && let Some(key) = self.progress.get(&token.to_string())
            && let Some(pending) = self.pending.get(key).filter(open)
        {
            return pending.sink.as_ref();
        }
        let mut streaming = self.pending.values().filter(open);
        match (streaming.next(), streaming.next()) {
            (Some(only), None) => only.sink.as_ref(),
            _ => None,
        }
    }

    fn session_stream(&mut self, message: ToClient) -> Result<(), String> {
        if self.stateless {
            tracing::debug!("stateless bridge: dropped a message tied to no request: {message}");
            return Ok(());
        }
        if let Some(stream) = &self.stream {
            if !stream.is_closed() {
                return push(stream, message);
            }
            self.stream = None;
        }
        if self.undelivered.len() >= UNDELIVERED_BUFFER {
            let dropped = self.undelivered.pop_front();
            tracing::warn!(
                "no stream open to take server messages; dropped the oldest buffered one: {}",
                dropped.map(|m| m.to_string()).unwrap_or_default()
            );
        }
        self.undelivered.push_back(message);
        Ok(())
    }
}

/// Queue without waiting. A closed stream (the client went away from it)
/// loses the message; a full one means the client is not reading.
fn push(sink: &mpsc::Sender<ToClient>, message: ToClient) -> Result<(), String> {
    match sink.try_send(message) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(m)) => {
            tracing::debug!("stream closed before this message could be sent: {m}");
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
            "the client is not reading: {STREAM_QUEUE} messages queued on one stream"
        )),
    }
}

/// A stateless (2026-07-28) client cannot be sent a request: answer the
/// proxy (and through it the upstream) with an error instead.
fn refuse_server_request(session: &HttpSession, id: &Value, message: &Value) {
    let method = message["method"].as_str().unwrap_or_default();
    tracing::warn!(
        session = %session.id,
        "refused a server-to-client request ({method}): the client is a stateless MCP 2026-07-28 client"
    );
    let error = Message::Response {
        id: id.clone(),
        body: Err(crate::jsonrpc::error_object(
            crate::jsonrpc::code::METHOD_NOT_FOUND,
            &format!(
                "{method} is not available: the client uses the stateless MCP 2026-07-28 lifecycle, which has no server-to-client requests"
            ),
        )),
    };
    // On its own task: the proxy is sending this very message now.
    let proxy = session.proxy.clone();
    session
        .scope
        .spawn(async move { proxy.handle_message(error).await });
}

/// The runtime's workers (read once).
fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| tokio::runtime::Handle::current().metrics().num_workers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(sink: Option<mpsc::Sender<ToClient>>, streaming: bool) -> Pending {
        Pending {
            sink,
            streaming,
            progress_token: None,
            _permit: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
        }
    }

    #[test]
    fn responses_go_to_their_exchange_and_the_rest_to_the_one_stream() {
        let mut routes = Routes::default();
        let (a_tx, mut a) = mpsc::channel(8);
        let (b_tx, mut b) = mpsc::channel(8);
        routes.pending.insert("1".into(), pending(Some(a_tx), true));
        routes
            .pending
            .insert("2".into(), pending(Some(b_tx), false));
        routes
            .route(json!({"method": "notifications/message", "params": {}}).into())
            .unwrap();
        routes.route(json!({"id": 2, "result": {}}).into()).unwrap();
        routes.route(json!({"id": 1, "result": {}}).into()).unwrap();
        assert_eq!(
            a.try_recv().unwrap().into_value()["method"],
            "notifications/message"
        );
        assert_eq!(a.try_recv().unwrap().into_value()["id"], 1);
        assert_eq!(b.try_recv().unwrap().into_value()["id"], 2);
        assert!(routes.pending.is_empty());
    }

    #[test]
    fn with_two_streams_open_unrelated_messages_go_to_the_session_stream_or_buffer() {
        let mut routes = Routes::default();
        let (a_tx, _a) = mpsc::channel(8);
        let (b_tx, _b) = mpsc::channel(8);
        routes.pending.insert("1".into(), pending(Some(a_tx), true));
        routes.pending.insert("2".into(), pending(Some(b_tx), true));
        routes
            .route(json!({"id": "fw-1", "method": "sampling/createMessage"}).into())
            .unwrap();
        assert_eq!(routes.undelivered.len(), 1);
        let (s_tx, mut s) = mpsc::channel(8);
        routes.stream = Some(s_tx);
        routes
            .route(json!({"method": "notifications/x"}).into())
            .unwrap();
        assert_eq!(
            s.try_recv().unwrap().into_value()["method"],
            "notifications/x"
        );
    }

    #[test]
    fn progress_follows_its_token() {
        let mut routes = Routes::default();
        let (a_tx, mut a) = mpsc::channel(8);
        let (b_tx, _b) = mpsc::channel(8);
        let mut p = pending(Some(a_tx), true);
        p.progress_token = Some("\"tok\"".into());
        routes.pending.insert("1".into(), p);
        routes.pending.insert("2".into(), pending(Some(b_tx), true));
        routes.progress.insert("\"tok\"".into(), "1".into());
        routes
            .route(json!({"method": "notifications/progress", "params": {"progressToken": "tok", "progress": 1}}).into())
            .unwrap();
        assert_eq!(a.try_recv().unwrap().into_value()["params"]["progress"], 1);
    }

    #[test]
    fn a_full_stream_is_an_error_and_the_buffer_is_bounded() {
        let mut routes = Routes::default();
        for i in 0..UNDELIVERED_BUFFER + 5 {
            routes
                .route(json!({"method": "n", "params": {"i": i}}).into())
                .unwrap();
        }
        assert_eq!(routes.undelivered.len(), UNDELIVERED_BUFFER);
        assert_eq!(
            routes.undelivered[0].as_message().unwrap()["params"]["i"],
            5
        );
        let (tx, _rx) = mpsc::channel(1);
        routes.stream = Some(tx);
        routes.undelivered.clear();
        routes.route(json!({"method": "n"}).into()).unwrap();
        assert!(routes.route(json!({"method": "n"}).into()).is_err());
    }
}
