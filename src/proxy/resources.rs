//! `resources/list`, `resources/templates/list`, `resources/read`,
//! `resources/subscribe` and `resources/unsubscribe`.
//!
//! Reads are decided per call like tool calls; a refused read is a JSON-RPC
//! error (`-32001`, `data.reasons`). URIs are routed by the merged listing,
//! then by resource-template prefix; they are never rewritten.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{Subject, Target};

use crate::error::Refusal;

impl Proxy {
    pub(super) async fn resources_list(&self) -> Result<Value, Value> {
        let resources = self.resources(false).await;
        let empty = json!({});
        let visible = self.visible(resources.iter(), "resources/list", |r| Subject {
            method: "resources/list",
            server: &r.server,
            target: Target::Resource(
                r.def.get("uri").and_then(Value::as_str).unwrap_or(""),
                Some(&r.def),
            ),
            arguments: &empty,
        })?;
        Ok(json!({"resources": visible.iter().map(|r| r.def.clone()).collect::<Vec<_>>()}))
    }

    pub(super) async fn resource_templates_list(&self) -> Result<Value, Value> {
        let resources = self.resources(false).await;
        let templates: Vec<Value> = resources
            .templates()
            .iter()
            .map(|t| t.def.clone())
            .collect();
        Ok(json!({"resourceTemplates": templates}))
    }

    pub(super) async fn resources_read(
        &self,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let Some(uri) = params.get("uri").and_then(Value::as_str) else {
            return Some(
                Refusal::InvalidParams("resources/read needs a string `uri`".into())
                    .answer(false, None),
            );
        };
        let owner = match self.resources(false).await.owner(uri) {
            Some(owner) => Some(owner.clone()),
            None => self.resources(true).await.owner(uri).cloned(),
        };
        let empty = json!({});
        let (server, def) = match &owner {
            Some(o) => (o.server.clone(), o.def.get("uri").map(|_| &o.def)),
            // The wrap form has one upstream: it may serve URIs it does not list.
            None if self.naming.passthrough => (self.upstreams[0].name().to_string(), None),
            None => {
                let subject = Subject {
                    method: "resources/read",
                    server: "",
                    target: Target::Resource(uri, None),
                    arguments: &empty,
                };
                let refused =
                    self.refuse_early(&subject, Refusal::ResourceNotFound(uri.to_string()));
                return Some(
                    refused
                        .refusal
                        .answer(false, refused.decision_id.as_deref()),
                );
            }
        };
        let subject = Subject {
            method: "resources/read",
            server: &server,
            target: Target::Resource(uri, def),
            arguments: &empty,
        };
        self.decide_and_forward(&subject, "resources/read", &params, &params, cancel)
            .await
    }

    /// Subscriptions only announce changes; the content still goes through
    /// `resources/read`, which is decided. So they are routed, not decided.
    pub(super) async fn resources_subscribe(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let Some(uri) = params.get("uri").and_then(Value::as_str) else {
            return Refusal::InvalidParams(format!("{method} needs a string `uri`"))
                .answer(false, None);
        };
        let server = match self.resources(false).await.owner(uri) {
            Some(owner) => owner.server.clone(),
            None if self.naming.passthrough => self.upstreams[0].name().to_string(),
            None => return Refusal::ResourceNotFound(uri.to_string()).answer(false, None),
        };
        self.relay(&server, method, &params).await
    }

    /// Forward an undecided, side-effect-free request to one upstream.
    pub(super) async fn relay(
        &self,
        server: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, Value> {
        let Some(upstream) = self.upstream(server) else {
            return Refusal::InvalidParams(format!("no upstream named {server}"))
                .answer(false, None);
        };
        match upstream.request(method, params).await {
            Ok(reply) => reply,
            Err(e) => Refusal::Upstream(e).answer(false, None),
        }
    }
}
