//! Everything that is not a client request, by the method table
//! ([`super::methods`]): notifications both ways, requests an upstream sends
//! the client (sampling, elicitation, roots, ping) and the client's answers
//! to them, and cancellation.
//!
//! - Client notifications are an allow-list; anything else is dropped,
//!   logged and audited, never relayed (an id-less `tools/call` once reached
//!   upstreams this way).
//! - Server-to-client requests are decided by the policy
//!   (`input.direction = "server_to_client"`) before the client sees them; a
//!   refusal answers the upstream with a JSON-RPC error. Allowed ones get a
//!   firewall-chosen id (`fw-<n>`) on the client side, so two upstreams using
//!   the same ids never collide, and the client's answer goes back under the
//!   upstream's id with the decision's [`RelayPermit`].

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Proxy;
use super::catalogue::Kind;
use super::methods::{ClientNotification, ServerNotification, ServerRequest};
use super::pipeline::{Refused, RelayPermit};
use crate::error::Refusal;
use crate::jsonrpc;
use crate::upstream::{Plumbing, UpstreamEvent};

/// Server-to-client requests one session keeps waiting for the client's
/// answer. A hostile upstream could otherwise grow the map without bound;
/// past this, new ones are refused to the upstream.
pub const MAX_RELAYED: usize = 64;
/// How long a relayed request waits for the client's answer before it is
/// forgotten (the upstream then gets an error). Sampling and elicitation
/// wait on a person, so this is generous.
pub const RELAY_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// A server-to-client request relayed to the client, awaiting its answer.
pub(super) struct Relayed {
    server: String,
    at: std::time::Instant,
    upstream_id: Value,
    permit: RelayPermit,
    /// The upstream's progress token, so the client's progress on this
    /// request (and only on it) goes back to that upstream.
    progress_token: Option<Value>,
}

impl Proxy {
    /// Consume upstream events until every upstream is gone.
    pub async fn run_events(self: std::sync::Arc<Self>, mut events: mpsc::Receiver<UpstreamEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                // Everything this upstream sent before was handled above
                // (notifications queued for the client), so the answer it
                // completes is written after them.
                UpstreamEvent::Response { slot, body } => slot.fill(body),
                UpstreamEvent::Notification {
                    server,
                    method,
                    params,
                } => self.upstream_notification(&server, &method, params).await,
                UpstreamEvent::Request {
                    server,
                    id,
                    method,
                    params,
                } => self.upstream_request(server, id, &method, params).await,
                UpstreamEvent::Exited { server, status } => {
                    self.upstream_exited(&server, &status).await
                }
            }
        }
    }

    pub(super) async fn client_notification(&self, method: &str, params: Value) {
        let Some(notification) = ClientNotification::parse(method) else {
            self.dropped("client", method, "not an allowed client notification");
            return;
        };
        match notification {
            // Each upstream already got its own `initialized` right after
            // its `initialize`.
            ClientNotification::Initialized => {}
            ClientNotification::Cancelled => {
                let key = params
                    .get("requestId")
                    .map(Value::to_string)
                    .unwrap_or_default();
                if let Some(cancel) = self.inflight.lock().expect("inflight lock").get(&key) {
                    cancel.cancel();
                }
            }
            ClientNotification::Progress => self.client_progress(&params).await,
            ClientNotification::RootsListChanged => {
                for upstream in self.live_upstreams() {
                    upstream.plumb(Plumbing::RootsListChanged).await;
                }
            }
        }
    }

    /// Progress the client reports on a relayed server request goes to the
    /// upstream that sent it; any other progress is dropped.
    async fn client_progress(&self, params: &Value) {
        let token = params.get("progressToken").cloned().unwrap_or(Value::Null);
        let server = self
            .relayed
            .lock()
            .expect("relay lock")
            .values()
            .find(|r| r.progress_token.as_ref() == Some(&token) && !token.is_null())
            .map(|r| r.server.clone());
        let (Some(server), Some(progress)) =
            (server, params.get("progress").and_then(Value::as_f64))
        else {
            self.dropped(
                "client",
                "notifications/progress",
                "no relayed request has this token",
            );
            return;
        };
        if let Some(upstream) = self.upstream(&server) {
            let message = Plumbing::Progress {
                token,
                progress,
                total: params.get("total").and_then(Value::as_f64),
                message: params
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            upstream.plumb(message).await;
        }
    }

    /// The client answered a request an upstream sent it.
    pub(super) async fn client_response(&self, id: Value, body: Result<Value, Value>) {
        let key = id.as_str().unwrap_or_default().to_string();
        let Some(relayed) = self.relayed.lock().expect("relay lock").remove(&key) else {
            tracing::warn!(%id, "client answered a request we did not send; ignored");
            return;
        };
        let record = json!({
            "decision_id": relayed.permit.decision_id(),
            "session_id": self.session.id,
            "server": relayed.server,
            "outcome": if body.is_ok() { "ok" } else { "error" },
        });
        if let Err(e) = self.shared.audit.append("server_request.completed", record) {
            tracing::error!("audit write failed for a relayed answer: {e}");
        }
        if let Some(upstream) = self.upstream(&relayed.server) {
            let answer = Plumbing::Answer {
                permit: relayed.permit,
                id: relayed.upstream_id,
                reply: body,
            };
            upstream.plumb(answer).await;
        }
    }

    async fn upstream_notification(&self, server: &str, method: &str, mut params: Value) {
        let Some(notification) = ServerNotification::parse(method) else {
            self.dropped(server, method, "not a notification the firewall relays");
            return;
        };
        match notification {
            ServerNotification::ToolsListChanged => self.invalidate(Kind::Tools),
            ServerNotification::PromptsListChanged => self.invalidate(Kind::Prompts),
            ServerNotification::ResourcesListChanged => self.invalidate(Kind::Resources),
            ServerNotification::Cancelled => {
                // The upstream withdrew a request it sent the client: name it
                // by the id the client knows.
                let upstream_id = params.get("requestId").cloned().unwrap_or(Value::Null);
                let ours = self
                    .relayed
                    .lock()
                    .expect("relay lock")
                    .iter()
                    .find(|(_, r)| r.server == server && r.upstream_id == upstream_id)
                    .map(|(k, _)| k.clone());
                match ours {
                    Some(ours) => params["requestId"] = json!(ours),
                    None => return,
                }
            }
            ServerNotification::TaskStatus => {
                let id = params.get("taskId").and_then(Value::as_str).unwrap_or("");
                if !self.knows_task(id) {
                    self.dropped(server, method, "not a task this session created");
                    return;
                }
            }
            ServerNotification::ResourceUpdated
            | ServerNotification::Progress
            | ServerNotification::LogMessage => {}
        }
        self.send(jsonrpc::notification(method, &params)).await;
    }

    async fn upstream_request(&self, server: String, id: Value, method: &str, params: Value) {
        let Some(upstream) = self.upstream(&server).cloned() else {
            return;
        };
        let request = match ServerRequest::parse(method) {
            Some(ServerRequest::Ping) => {
                upstream.plumb(Plumbing::Pong { id }).await;
                return;
            }
            Some(
                r @ (ServerRequest::CreateMessage
                | ServerRequest::Elicit
                | ServerRequest::RootsList),
            ) => r,
            None => {
                self.dropped(
                    &server,
                    method,
                    "not a request an upstream may send the client",
                );
                let error = jsonrpc::error_object(
                    jsonrpc::code::METHOD_NOT_FOUND,
                    &format!(
                        "method {:?} is not relayed by mcp-firewall",
                        truncate(method)
                    ),
                );
                upstream.plumb(Plumbing::Refuse { id, error }).await;
                return;
            }
        };
        if let Some(error) = self.relay_slot_refusal(&upstream).await {
            upstream.plumb(Plumbing::Refuse { id, error }).await;
            return;
        }
        let cause = self.likely_cause(&server);
        let permit = match self.decide_server_request(&server, request.as_str(), &params, cause) {
            Ok(permit) => permit,
            Err(Refused {
                decision_id,
                refusal,
            }) => {
                let error = server_refusal(&refusal, decision_id.as_deref());
                upstream.plumb(Plumbing::Refuse { id, error }).await;
                return;
            }
        };
        let ours = format!(
            "fw-{}",
            self.relay_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .cloned();
        self.relayed.lock().expect("relay lock").insert(
            ours.clone(),
            Relayed {
                server,
                at: std::time::Instant::now(),
                upstream_id: id,
                permit,
                progress_token,
            },
        );
        self.send(jsonrpc::request(&json!(ours), method, &params))
            .await;
    }

    /// Forget relayed requests older than [`RELAY_TTL`] (their upstreams get
    /// an error), then `Some(error)` if [`MAX_RELAYED`] are still waiting.
    async fn relay_slot_refusal(&self, upstream: &crate::upstream::Upstream) -> Option<Value> {
        let expired: Vec<Relayed> = {
            let mut relayed = self.relayed.lock().expect("relay lock");
            let old: Vec<String> = relayed
                .iter()
                .filter(|(_, r)| r.at.elapsed() >= RELAY_TTL)
                .map(|(k, _)| k.clone())
                .collect();
            old.iter().filter_map(|k| relayed.remove(k)).collect()
        };
        for r in expired {
            let error = jsonrpc::error_object(
                jsonrpc::code::INTERNAL_ERROR,
                "the client did not answer in time",
            );
            if let Some(up) = self.upstream(&r.server) {
                up.plumb(Plumbing::Refuse {
                    id: r.upstream_id,
                    error,
                })
                .await;
            }
        }
        let waiting = self.relayed.lock().expect("relay lock").len();
        if waiting < MAX_RELAYED {
            return None;
        }
        self.dropped(
            upstream.name(),
            "(server request)",
            "too many requests waiting for the client",
        );
        Some(jsonrpc::error_object(
            jsonrpc::code::INTERNAL_ERROR,
            &format!("too many requests ({MAX_RELAYED}) already waiting for the client"),
        ))
    }

    /// Record a message the table does not let through.
    fn dropped(&self, from: &str, method: &str, why: &str) {
        tracing::warn!(from, method, "dropped: {why}");
        let record = json!({"session_id": self.session.id, "from": from,
                            "method": truncate(method), "reason": why});
        if let Err(e) = self.shared.audit.append("message.dropped", record) {
            tracing::error!("audit write failed: {e}");
        }
    }

    async fn upstream_exited(&self, server: &str, status: &str) {
        let record = json!({"session_id": self.session.id, "server": server, "status": status});
        if let Err(e) = self.shared.audit.append("upstream.exited", record) {
            tracing::error!("audit write failed: {e}");
        }
        // Its tools, prompts and resources are gone: tell the client.
        self.invalidate(Kind::Tools);
        self.invalidate(Kind::Prompts);
        self.invalidate(Kind::Resources);
        if self.initialized.load(std::sync::atomic::Ordering::Acquire) {
            self.send(jsonrpc::notification(
                "notifications/tools/list_changed",
                &Value::Null,
            ))
            .await;
        }
    }
}

/// The JSON-RPC error an upstream gets for a refused request.
fn server_refusal(refusal: &Refusal, decision_id: Option<&str>) -> Value {
    let mut error = jsonrpc::error_object(
        jsonrpc::code::POLICY_DENIED,
        &format!("refused by mcp-firewall: {refusal}"),
    );
    error["data"] = json!({"reasons": refusal.reasons(), "decision_id": decision_id});
    error
}

/// Method names from a peer are logged, but not at any length.
fn truncate(method: &str) -> String {
    method.chars().take(200).collect()
}
