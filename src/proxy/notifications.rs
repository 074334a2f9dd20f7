//! Everything that is not a client request: notifications both ways,
//! requests an upstream sends the client (sampling, elicitation, roots,
//! ping) and the client's answers to them, and cancellation.
//!
//! Server-to-client requests get a firewall-chosen id (`fw-<n>`) on the
//! client side, so two upstreams using the same ids never collide; the
//! client's answer is routed back to the upstream under its own id.

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Proxy;
use super::catalogue::Kind;
use crate::jsonrpc;
use crate::upstream::UpstreamEvent;

impl Proxy {
    /// Consume upstream events until every upstream is gone.
    pub async fn run_events(self: std::sync::Arc<Self>, mut events: mpsc::Receiver<UpstreamEvent>) {
        while let Some(event) = events.recv().await {
            match event {
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
        match method {
            // Each upstream already got its own `initialized` right after
            // its `initialize`.
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let key = params
                    .get("requestId")
                    .map(Value::to_string)
                    .unwrap_or_default();
                if let Some(cancel) = self.inflight.lock().expect("inflight lock").get(&key) {
                    cancel.cancel();
                }
            }
            // roots/list_changed, progress for a relayed request, and
            // anything newer: every upstream may care.
            _ => {
                for upstream in self.live_upstreams() {
                    upstream.notify(method, &params).await;
                }
            }
        }
    }

    /// The client answered a request an upstream sent it.
    pub(super) async fn client_response(&self, id: Value, body: Result<Value, Value>) {
        let key = id.as_str().unwrap_or_default().to_string();
        let Some((server, upstream_id)) = self.relayed.lock().expect("relay lock").remove(&key)
        else {
            tracing::warn!(%id, "client answered a request we did not send; ignored");
            return;
        };
        if let Some(upstream) = self.upstream(&server) {
            upstream.respond(&upstream_id, body).await;
        }
    }

    async fn upstream_notification(&self, server: &str, method: &str, mut params: Value) {
        match method {
            "notifications/tools/list_changed" => self.invalidate(Kind::Tools),
            "notifications/prompts/list_changed" => self.invalidate(Kind::Prompts),
            "notifications/resources/list_changed" => self.invalidate(Kind::Resources),
            "notifications/cancelled" => {
                // The upstream withdrew a request it sent the client: name it
                // by the id the client knows.
                let upstream_id = params.get("requestId").cloned().unwrap_or(Value::Null);
                let ours = self
                    .relayed
                    .lock()
                    .expect("relay lock")
                    .iter()
                    .find(|(_, (s, id))| s == server && *id == upstream_id)
                    .map(|(k, _)| k.clone());
                match ours {
                    Some(ours) => params["requestId"] = json!(ours),
                    None => return,
                }
            }
            _ => {}
        }
        self.send(jsonrpc::notification(method, &params)).await;
    }

    async fn upstream_request(&self, server: String, id: Value, method: &str, params: Value) {
        let ours = format!(
            "fw-{}",
            self.relay_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.relayed
            .lock()
            .expect("relay lock")
            .insert(ours.clone(), (server, id));
        self.send(jsonrpc::request(&json!(ours), method, &params))
            .await;
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
