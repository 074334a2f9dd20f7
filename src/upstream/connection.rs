//! One connection to an upstream MCP server, whatever carries it: the
//! bookkeeping every transport shares. The transports ([`super::process`],
//! [`super::streamable_http`], [`super::sse`]) are an outbound pump that
//! takes [`Outgoing`] messages from the queue and an inbound feed that hands
//! each received message to [`Upstream::deliver`].
//!
//! Invariants:
//! - every request the firewall sends carries an id the firewall chose
//!   (a counter), so ids never collide between the client's requests, the
//!   firewall's own requests (catalogue refreshes) and several upstreams;
//! - when the connection ends, every pending request fails with
//!   [`UpstreamError::Exited`] and later requests fail at once: a caller never
//!   waits on a dead server;
//! - a transport that cannot deliver one request fails just that request
//!   ([`UpstreamError::Transport`]);
//! - everything the server sends (responses, notifications and its own
//!   requests: sampling, elicitation, roots, ping) is handed to the proxy as
//!   [`UpstreamEvent`]s, in the order each feed received them, so nothing the
//!   server sent before a response reaches the client after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::plumbing::{CancelHandle, OwnRequest, Plumbing, Wire};
use crate::config::{HttpTransport, UpstreamKind, UpstreamSpec};
use crate::jsonrpc::{self, Message};
use crate::proxy::pipeline::Permit;

/// Largest message accepted from an upstream. Tool results can carry files
/// and images, so this is generous; a server that exceeds it has its message
/// dropped (and the request it answered fails) rather than exhausting memory.
pub const MAX_UPSTREAM_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued for an upstream before senders wait. Bounded so a server
/// that stops reading slows its callers instead of growing memory.
pub(super) const OUTBOUND_QUEUE: usize = 256;

/// Something an upstream said, in the order it said it. Responses travel
/// the same queue as notifications and requests, so whatever a server sent
/// before a response (progress, log messages) reaches the client before the
/// request that response completes can answer.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// The answer to a request the firewall sent: already taken out of the
    /// pending requests (so the transport knows it was answered), handed to
    /// its waiter by the proxy's event loop ([`ReplySlot::fill`]).
    Response {
        slot: ReplySlot,
        body: Reply,
    },
    Notification {
        server: String,
        method: String,
        params: Value,
    },
    Request {
        server: String,
        id: Value,
        method: String,
        params: Value,
    },
    Exited {
        server: String,
        status: String,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream '{server}' could not be started: {message}")]
    Spawn { server: String, message: String },
    #[error("upstream '{server}' is not running ({status})")]
    Exited { server: String, status: String },
    /// The transport could not carry one request or its answer (an HTTP
    /// error status, a refused connection, an answer too large or not JSON);
    /// the upstream may still be up.
    #[error("upstream '{server}' could not be reached: {message}")]
    Transport { server: String, message: String },
    /// No answer within the request's deadline; the request was cancelled.
    #[error("upstream '{server}' did not answer within {after:?}; the request was cancelled")]
    Timeout {
        server: String,
        after: std::time::Duration,
    },
}

/// The answer to a request: the `result` value or the `error` object.
pub type Reply = Result<Value, Value>;

/// One message for the transport to send, with what it needs to know about
/// it without parsing it again.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub body: String,
    /// Set for requests: the id whose answer the transport must produce.
    pub request_id: Option<u64>,
    /// Set for requests and notifications.
    pub method: Option<String>,
}

type Waiter = oneshot::Sender<Result<Reply, UpstreamError>>;

/// Where one answer goes: the waiting request. Filled by the proxy's event
/// loop after everything the upstream sent before the answer.
#[derive(Debug)]
pub struct ReplySlot(Waiter);

impl ReplySlot {
    pub fn fill(self, reply: Reply) {
        let _ = self.0.send(Ok(reply));
    }
}

/// A live connection to one upstream server.
pub struct Upstream {
    name: String,
    outbound: mpsc::Sender<Outgoing>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    exit_status: Mutex<String>,
}

/// A request sent upstream whose answer has not arrived yet.
pub struct PendingReply {
    /// The id the upstream saw.
    upstream_id: u64,
    rx: oneshot::Receiver<Result<Reply, UpstreamError>>,
    server: String,
}

impl PendingReply {
    /// Wait for the answer. Fails if the upstream exits first or the
    /// transport could not carry the request.
    pub async fn wait(self) -> Result<Reply, UpstreamError> {
        let server = self.server;
        self.rx.await.unwrap_or_else(|_| {
            Err(UpstreamError::Exited {
                server,
                status: "exited".into(),
            })
        })
    }
}

/// A connection dropped while still alive (its session closed) stops
/// counting as running.
impl Drop for Upstream {
    fn drop(&mut self) {
        if self.is_alive() {
            crate::metrics::metrics().upstream_running(&self.name, false);
        }
    }
}

impl Upstream {
    /// Connect to the upstream the spec names: start its process, or set up
    /// its HTTP transport (which connects lazily, on the first message).
    pub fn connect(
        spec: &UpstreamSpec,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        match &spec.kind {
            UpstreamKind::Process(p) if p.shared => {
                super::shared::connect(&spec.name, p, spec.timeout, events)
            }
            UpstreamKind::Process(p) => super::process::start(&spec.name, p, spec.timeout, events),
            UpstreamKind::Http(h) => match h.transport {
                HttpTransport::StreamableHttp => {
                    super::streamable_http::start(&spec.name, h, spec.timeout, events)
                }
                HttpTransport::Sse => super::sse::start(&spec.name, h, spec.timeout, events),
            },
        }
    }

    /// The name the proxy has always called; the same as [`Upstream::connect`].
    pub fn spawn(
        spec: &UpstreamSpec,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        Upstream::connect(spec, events)
    }

    /// A connection whose transport reads from the returned queue.
    pub(super) fn new(name: &str) -> (Arc<Upstream>, mpsc::Receiver<Outgoing>) {
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let upstream = Arc::new(Upstream {
            name: name.to_string(),
            outbound,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            exit_status: Mutex::new(String::new()),
        });
        crate::metrics::metrics().upstream_running(name, true);
        (upstream, rx)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Forward a decided request: the only way a client's request reaches an
    /// upstream. The [`Permit`] is consumed, and it carries the exact method
    /// and params that were decided, so what is sent is what was decided.
    pub async fn forward(
        &self,
        permit: Permit,
    ) -> Result<(PendingReply, CancelHandle), UpstreamError> {
        let (method, params) = permit.into_request();
        let pending = self.send_request(&method, &params).await?;
        let handle = CancelHandle {
            upstream_id: pending.upstream_id,
        };
        Ok((pending, handle))
    }

    /// A request the firewall makes on its own behalf (handshake, catalogue
    /// pages, log level); see [`OwnRequest`]. Cancelled upstream if no answer
    /// comes within `timeout`.
    pub async fn own_request(
        &self,
        request: OwnRequest,
        timeout: std::time::Duration,
    ) -> Result<Reply, UpstreamError> {
        let params = request.params();
        let pending = self.send_request(request.method(), &params).await?;
        let handle = CancelHandle {
            upstream_id: pending.upstream_id,
        };
        let never = CancellationToken::new();
        match self.await_reply(pending, handle, timeout, &never).await {
            Some(reply) => reply,
            None => unreachable!("`never` is never cancelled"),
        }
    }

    /// Wait for the reply to a request this connection sent; past `timeout`,
    /// or when `cancel` fires, cancel it upstream. `None`: cancelled.
    pub async fn await_reply(
        &self,
        pending: PendingReply,
        handle: CancelHandle,
        timeout: std::time::Duration,
        cancel: &CancellationToken,
    ) -> Option<Result<Reply, UpstreamError>> {
        tokio::select! {
            reply = tokio::time::timeout(timeout, pending.wait()) => match reply {
                Ok(reply) => Some(reply),
                Err(_) => {
                    self.plumb(Plumbing::Cancel(handle)).await;
                    Some(Err(UpstreamError::Timeout {
                        server: self.name.clone(),
                        after: timeout,
                    }))
                }
            },
            _ = cancel.cancelled() => {
                self.plumb(Plumbing::Cancel(handle)).await;
                None
            }
        }
    }

    /// Send one plumbing message (fire and forget; dropped if the server is
    /// gone). A cancellation also stops waiting for the request's answer.
    pub async fn plumb(&self, message: Plumbing) {
        if let Plumbing::Cancel(handle) = &message {
            self.forget(handle.upstream_id);
        }
        if !self.is_alive() {
            return;
        }
        let outgoing = match message.into_wire() {
            Wire::Notification(method, params) => Outgoing {
                body: jsonrpc::notification(method, &params).to_string(),
                request_id: None,
                method: Some(method.to_string()),
            },
            Wire::Response(id, reply) => Outgoing {
                body: jsonrpc::response_message(&id, reply).to_string(),
                request_id: None,
                method: None,
            },
        };
        let _ = self.outbound.send(outgoing).await;
    }

    /// Send a request; the returned [`PendingReply`] resolves with the answer.
    /// Private: callers go through [`Self::forward`] or [`Self::own_request`].
    async fn send_request(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<PendingReply, UpstreamError> {
        self.check_alive()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        // `finish` clears `pending` after clearing `alive`: checking again
        // after inserting means a waiter is never left behind by a race.
        if !self.is_alive() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(self.exited());
        }
        let message = Outgoing {
            body: jsonrpc::request(&Value::from(id), method, params).to_string(),
            request_id: Some(id),
            method: Some(method.to_string()),
        };
        if self.outbound.send(message).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(self.exited());
        }
        Ok(PendingReply {
            upstream_id: id,
            rx,
            server: self.name.clone(),
        })
    }

    /// Stop waiting for a request's answer (after a cancellation); a late
    /// answer is then dropped with a warning.
    fn forget(&self, id: u64) {
        self.pending.lock().expect("pending lock").remove(&id);
    }

    /// The error a request to this upstream would get now, if any.
    pub fn start_request_error(&self) -> Option<UpstreamError> {
        self.check_alive().err()
    }

    fn check_alive(&self) -> Result<(), UpstreamError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(self.exited())
        }
    }

    fn exited(&self) -> UpstreamError {
        let status = self.exit_status.lock().expect("status lock").clone();
        UpstreamError::Exited {
            server: self.name.clone(),
            status,
        }
    }

    /// Whether a request is still waiting for its answer.
    pub(super) fn is_pending(&self, id: u64) -> bool {
        self.pending.lock().expect("pending lock").contains_key(&id)
    }

    /// A message that could not be read (not JSON, or over the size cap, of
    /// which `prefix` is the start): if it names a pending request's id, fail
    /// that request now rather than leave it to its deadline. The id is found
    /// leniently (`"id":<digits>` in the first bytes); a wrong guess can only
    /// fail a request early, never complete one.
    pub(super) fn fail_by_prefix(&self, prefix: &[u8], reason: &str) {
        if let Some(id) = leading_id(prefix)
            && self.is_pending(id)
        {
            self.fail(id, reason.to_string());
        }
    }

    /// Fail one request because the transport could not carry it.
    pub(super) fn fail(&self, id: u64, message: String) {
        if let Some(tx) = self.pending.lock().expect("pending lock").remove(&id) {
            tracing::warn!(server = %self.name, id, "request failed: {message}");
            let _ = tx.send(Err(UpstreamError::Transport {
                server: self.name.clone(),
                message,
            }));
        }
    }

    /// Take the waiter of the pending request `id` out of the pending map.
    fn take_waiter(&self, id: &Value) -> Option<ReplySlot> {
        let Some(id) = id.as_u64() else {
            tracing::warn!(server = %self.name, %id, "response with an id we never sent");
            return None;
        };
        let waiter = self.pending.lock().expect("pending lock").remove(&id);
        if waiter.is_none() {
            tracing::warn!(server = %self.name, id, "response to an unknown or finished request");
        }
        waiter.map(ReplySlot)
    }

    /// Handle one message the server sent: complete a pending request or
    /// pass it on to the proxy. Its text is let go once parsed, before the
    /// message is handed on: the task it goes to may run at once on the
    /// other worker, and a big answer's text and what is made from it
    /// must not be held at once for as long as this task waits its turn.
    pub(super) async fn deliver<M: AsRef<[u8]>>(
        &self,
        events: &mpsc::Sender<UpstreamEvent>,
        message: M,
    ) {
        let bytes = message.as_ref();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let parsed = jsonrpc::parse_bytes(bytes);
        if let Err(e) = &parsed {
            self.fail_by_prefix(bytes, &invalid_answer(e));
        }
        drop(message);
        self.hand_on(events, parsed).await;
    }

    /// [`Self::deliver`] for a message already parsed (a shared process's,
    /// routed to this session): not written out and parsed again.
    pub(super) async fn deliver_value(&self, events: &mpsc::Sender<UpstreamEvent>, message: Value) {
        let id = message.get("id").and_then(Value::as_u64);
        let classified = jsonrpc::classify(message);
        if let (Err(e), Some(id)) = (&classified, id)
            && self.is_pending(id)
        {
            self.fail(id, invalid_answer(e));
        }
        self.hand_on(events, classified).await;
    }

    async fn hand_on(
        &self,
        events: &mpsc::Sender<UpstreamEvent>,
        message: Result<Message, jsonrpc::MessageError>,
    ) {
        if let Some(event) = self.route(message) {
            let _ = events.send(event).await;
        }
    }

    /// The connection is over: fail everything waiting and tell the proxy.
    /// Only the first call counts.
    pub(super) async fn finish(&self, events: &mpsc::Sender<UpstreamEvent>, status: String) {
        {
            // Status before `alive`: whoever sees the upstream dead reads why.
            let mut exit_status = self.exit_status.lock().expect("status lock");
            if !self.is_alive() {
                return;
            }
            *exit_status = status.clone();
            self.alive.store(false, Ordering::Release);
            crate::metrics::metrics().upstream_running(&self.name, false);
        }
        tracing::warn!(server = %self.name, %status, "upstream server exited");
        let waiters: Vec<Waiter> = {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.drain().map(|(_, tx)| tx).collect()
        };
        for tx in waiters {
            let _ = tx.send(Err(self.exited()));
        }
        let _ = events
            .send(UpstreamEvent::Exited {
                server: self.name.clone(),
                status,
            })
            .await;
    }

    /// Complete a pending request, or turn the message into an event.
    fn route(&self, message: Result<Message, jsonrpc::MessageError>) -> Option<UpstreamEvent> {
        let server = self.name.clone();
        match message {
            Ok(Message::Response { id, body }) => self
                .take_waiter(&id)
                .map(|slot| UpstreamEvent::Response { slot, body }),
            Ok(Message::Notification { method, params }) => Some(UpstreamEvent::Notification {
                server,
                method,
                params,
            }),
            Ok(Message::Request { id, method, params }) => Some(UpstreamEvent::Request {
                server,
                id,
                method,
                params,
            }),
            Err(e) => {
                tracing::warn!(server = %self.name, "upstream sent an invalid message: {e}");
                None
            }
        }
    }
}

/// Why a call failed when its answer was not a JSON-RPC message.
pub(super) fn invalid_answer(why: impl std::fmt::Display) -> String {
    format!("the answer is not valid JSON-RPC: {why}")
}

/// Why a call failed when its answer was dropped as it arrived.
pub(super) fn dropped_answer(why: impl std::fmt::Display) -> String {
    format!("the answer was dropped: {why}")
}

/// How much of a message is searched for its id.
pub(super) const ID_SEARCH_BYTES: usize = 4096;

/// The first `"id": <digits>` in the first [`ID_SEARCH_BYTES`] of `message`.
pub(super) fn leading_id(message: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(&message[..message.len().min(ID_SEARCH_BYTES)]);
    let at = text.find("\"id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::leading_id;

    #[test]
    fn the_id_of_an_unreadable_answer_is_found_leniently() {
        assert_eq!(
            leading_id(br#"{"jsonrpc":"2.0","id":17,"result":{"x":"#),
            Some(17)
        );
        assert_eq!(leading_id(br#"{"id" : 3 , garbage"#), Some(3));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id":"abc"}"#), None);
        assert_eq!(leading_id(b"not json at all"), None);
    }
}
