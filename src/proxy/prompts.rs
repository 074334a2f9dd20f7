//! `prompts/list`, `prompts/get` and `completion/complete`.
//!
//! Prompts are namespaced like tools and decided per `prompts/get`; a
//! refusal is a JSON-RPC error. Completion requests only suggest argument
//! values, so they are routed to the owning upstream without a decision.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{Subject, Target};

use crate::error::Refusal;

impl Proxy {
    pub(super) async fn prompts_list(&self) -> Result<Value, Value> {
        let prompts = self.prompts(false).await;
        let empty = json!({});
        let visible = self.visible(prompts.iter(), "prompts/list", |entry| Subject {
            method: "prompts/list",
            server: &entry.server,
            target: Target::Prompt(entry),
            arguments: &empty,
        })?;
        Ok(json!({"prompts": visible.iter().map(|e| e.exposed_def()).collect::<Vec<_>>()}))
    }

    pub(super) async fn prompts_get(
        &self,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Some(
                Refusal::InvalidParams("prompts/get needs a string `name`".into())
                    .answer(false, None),
            );
        };
        let entry = match self.prompts(false).await.get(name) {
            Some(e) => Some(e.clone()),
            None => self.prompts(true).await.get(name).cloned(),
        };
        let Some(entry) = entry else {
            return Some(Refusal::UnknownPrompt(name.to_string()).answer(false, None));
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let subject = Subject {
            method: "prompts/get",
            server: &entry.server,
            target: Target::Prompt(&entry),
            arguments: &arguments,
        };
        let mut upstream_params = params.clone();
        upstream_params["name"] = json!(entry.name);
        self.decide_and_forward(&subject, "prompts/get", &upstream_params, &params, cancel)
            .await
    }

    pub(super) async fn completion(&self, params: Value) -> Result<Value, Value> {
        let reference = params.get("ref").cloned().unwrap_or(Value::Null);
        let mut upstream_params = params.clone();
        let server = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(entry) = self.prompts(false).await.get(name).cloned() else {
                    return Refusal::UnknownPrompt(name.to_string()).answer(false, None);
                };
                upstream_params["ref"]["name"] = json!(entry.name);
                entry.server
            }
            Some("ref/resource") => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                match self.resources(false).await.owner(uri) {
                    Some(owner) => owner.server.clone(),
                    None if self.naming.passthrough => self.upstreams[0].name().to_string(),
                    None => return Refusal::ResourceNotFound(uri.to_string()).answer(false, None),
                }
            }
            _ => {
                return Refusal::InvalidParams(
                    "completion/complete needs ref/prompt or ref/resource".into(),
                )
                .answer(false, None);
            }
        };
        self.relay(&server, "completion/complete", &upstream_params)
            .await
    }

    /// `logging/setLevel` applies to every upstream that logs.
    pub(super) async fn set_log_level(&self, params: Value) -> Result<Value, Value> {
        for upstream in self.live_upstreams() {
            if self.offers(upstream.name(), "logging")
                && let Ok(Err(error)) | Err(error) = upstream
                    .request("logging/setLevel", &params)
                    .await
                    .map_err(|e| json!(e.to_string()))
            {
                tracing::warn!(server = upstream.name(), %error, "logging/setLevel failed");
            }
        }
        Ok(json!({}))
    }
}
