//! `initialize`: the firewall negotiates with the client and, on the
//! client's behalf, with every upstream.
//!
//! Each upstream is initialized with the client's own capabilities and
//! client info (so servers offer sampling, elicitation and roots exactly
//! when the client supports them) and the protocol version the firewall
//! chose. In the wrap form the client sees the upstream's own answer, so the
//! firewall is invisible; with several upstreams it sees a merged answer
//! under the firewall's name.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Proxy;
use crate::error::Refusal;
use crate::jsonrpc::{code, error_object};
use crate::upstream::{OwnRequest, Plumbing};

/// How long an upstream may take to answer `initialize` (or its own
/// `timeout_seconds`, if smaller). `npx -y` may download the package on the
/// first run, which is slow; but some desktop clients give up on any request
/// after about 60 s, so the client hears back before that: an error naming
/// the upstream beats silence.
const UPSTREAM_INIT_TIMEOUT: Duration = Duration::from_secs(50);

/// Protocol versions the firewall understands, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What the firewall offers a client that asks for a version it does not know.
pub const LATEST_VERSION: &str = "2025-11-25";

impl Proxy {
    pub(super) async fn initialize(&self, params: Value) -> Result<Value, Value> {
        if self.initialized.load(std::sync::atomic::Ordering::Acquire) {
            return Err(error_object(
                code::INVALID_REQUEST,
                "initialize was already called in this session",
            ));
        }
        let Some(info) = params.get("clientInfo").filter(|v| v.is_object()) else {
            return Refusal::InvalidParams("initialize needs a clientInfo object".into())
                .answer(false, None);
        };
        let _ = self.session.client.set(info.clone());
        let extension = params
            .pointer("/capabilities/extensions")
            .and_then(|e| e.get(super::tasks::EXTENSION))
            .is_some();
        let _ = self.session.tasks_extension.set(extension);
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LATEST_VERSION);
        let version = if SUPPORTED_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_VERSION
        };
        let mut upstream_params = params.clone();
        upstream_params["protocolVersion"] = json!(version);
        // The client's own task support (server-to-client requests run as
        // client-side tasks, polled with `tasks/get` sent to the client) is
        // not offered upstream: the firewall relays no request an upstream
        // sends the client beyond sampling, elicitation, roots and ping, so
        // those upstreams ask the plain way instead, which it does relay.
        if let Some(caps) = upstream_params
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
        {
            caps.remove("tasks");
        }

        let ready = self.initialize_upstreams(&upstream_params).await;
        if ready.is_empty() {
            return Err(error_object(
                code::UPSTREAM_UNAVAILABLE,
                "no upstream server could be initialized; see the firewall's log",
            ));
        }
        let answer = self.merged_answer(&ready, version);
        self.catalogue.write().expect("catalogue lock").ready = ready;
        let record = json!({
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "client": self.session.client_info(),
            "transport": self.session.transport,
            "protocol_version": answer["protocolVersion"],
            "policy_revision": self.policy().revision(),
        });
        if let Err(e) = self.shared.audit.append("session.started", record) {
            return Refusal::AuditWriteFailed(e).answer(false, None);
        }
        crate::metrics::metrics().session(self.session.transport, true);
        self.initialized
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(answer)
    }

    /// Initialize every upstream concurrently; returns those that answered.
    async fn initialize_upstreams(&self, params: &Value) -> HashMap<String, Value> {
        let attempts = self.upstreams.iter().map(|u| async move {
            let reply = u
                .own_request(
                    OwnRequest::Initialize(params.clone()),
                    UPSTREAM_INIT_TIMEOUT.min(self.spec_timeout(u.name())),
                )
                .await;
            let outcome = match reply {
                Ok(Ok(result)) => {
                    u.plumb(Plumbing::Initialized).await;
                    Ok(result)
                }
                Ok(Err(error)) => Err(format!("initialize failed: {error}")),
                Err(e) => Err(e.to_string()),
            };
            (u.name().to_string(), outcome)
        });
        let mut ready = HashMap::new();
        for (name, outcome) in futures::future::join_all(attempts).await {
            match outcome {
                Ok(result) => {
                    ready.insert(name, result);
                }
                Err(message) => {
                    tracing::error!(server = %name, "upstream left out of this session: {message}");
                    let record =
                        json!({"session_id": self.session.id, "server": name, "error": message});
                    if let Err(e) = self.shared.audit.append("upstream.failed", record) {
                        tracing::error!("audit write failed: {e}");
                    }
                }
            }
        }
        ready
    }

    /// The client's initialize result: the upstream's own in the wrap form,
    /// otherwise a merge under the firewall's name.
    fn merged_answer(&self, ready: &HashMap<String, Value>, version: &str) -> Value {
        if self.naming.passthrough
            && let Some(only) = ready.values().next()
        {
            let mut answer = only.clone();
            if self.shared.config.approval.tasks
                && let Some(caps) = answer
                    .get_mut("capabilities")
                    .and_then(Value::as_object_mut)
            {
                caps.insert("tasks".into(), firewall_tasks());
                let extensions = caps.entry("extensions").or_insert_with(|| json!({}));
                extensions[super::tasks::EXTENSION] = json!({});
            }
            return answer;
        }
        // The oldest version any upstream settled on: the client must be able
        // to speak to all of them through us.
        let negotiated = ready
            .values()
            .filter_map(|r| r.get("protocolVersion").and_then(Value::as_str))
            .min()
            .unwrap_or(version)
            .to_string();
        let mut caps = Map::new();
        for (name, result) in self.in_config_order(ready) {
            let Some(theirs) = result.get("capabilities").and_then(Value::as_object) else {
                continue;
            };
            for family in ["tools", "resources", "prompts"] {
                if let Some(c) = theirs.get(family) {
                    let entry = caps
                        .entry(family)
                        .or_insert_with(|| json!({"listChanged": true}));
                    if family == "resources" && c.get("subscribe") == Some(&Value::Bool(true)) {
                        entry["subscribe"] = json!(true);
                    }
                }
            }
            for family in ["logging", "completions"] {
                if theirs.contains_key(family) {
                    caps.insert(family.into(), json!({}));
                }
            }
            // Tasks: routed to the upstream that created each one (`tasks`).
            if let Some(Value::Object(tasks)) = theirs.get("tasks") {
                let entry = caps.entry("tasks").or_insert_with(|| json!({}));
                for key in ["list", "cancel"] {
                    if tasks.contains_key(key) {
                        entry[key] = json!({});
                    }
                }
                if tasks
                    .get("requests")
                    .and_then(|r| r.get("tools"))
                    .and_then(|t| t.get("call"))
                    .is_some()
                {
                    entry["requests"] = json!({"tools": {"call": {}}});
                }
            }
            // The 2026-07-28 tasks extension: routed the same way.
            if let Some(Value::Object(extensions)) = theirs.get("extensions")
                && extensions.contains_key(super::tasks::EXTENSION)
            {
                let entry = caps.entry("extensions").or_insert_with(|| json!({}));
                entry[super::tasks::EXTENSION] = json!({});
            }
            tracing::debug!(server = %name, "merged capabilities");
        }
        if self.shared.config.approval.tasks {
            caps.insert("tasks".into(), firewall_tasks());
            let extensions = caps.entry("extensions").or_insert_with(|| json!({}));
            extensions[super::tasks::EXTENSION] = json!({});
        }
        let instructions: Vec<String> = self
            .in_config_order(ready)
            .filter_map(|(name, r)| {
                r.get("instructions")
                    .and_then(Value::as_str)
                    .map(|i| format!("[{name}] {i}"))
            })
            .collect();
        let mut answer = json!({
            "protocolVersion": negotiated,
            "capabilities": caps,
            "serverInfo": {"name": "mcp-firewall", "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            answer["instructions"] = json!(instructions.join("\n\n"));
        }
        answer
    }

    fn in_config_order<'a>(
        &'a self,
        ready: &'a HashMap<String, Value>,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.upstreams
            .iter()
            .filter_map(|u| ready.get(u.name()).map(|r| (u.name(), r)))
    }
}

/// The `tasks` capability when the firewall runs task-augmented calls itself
/// (`held_tasks`): listing, cancelling and task-augmented `tools/call`.
fn firewall_tasks() -> Value {
    json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
}
