//! `prompts/list`, `prompts/get`, `completion/complete` and
//! `logging/setLevel`.
//!
//! Prompts are namespaced like tools and decided per `prompts/get`; a
//! refusal is a JSON-RPC error. Completion requests are decided too (they
//! reveal argument values of the prompt or resource they complete, so a
//! hidden or denied prompt must not leak through them): `input.method` is
//! `completion/complete`, `input.prompt` or `input.resource` the reference,
//! `input.arguments` the argument being completed (`{name, value}`).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::input::{Subject, Target};
use super::to_client::Shown;
use super::{Proxy, Reply};

use crate::error::Refusal;
use crate::upstream::{Entry, LogLevel, Named, OwnRequest, Route};

/// How long `logging/setLevel` waits for each upstream.
const LOG_LEVEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Proxy {
    pub(super) async fn prompts_list(&self) -> Reply {
        let prompts = self.prompts(false).await;
        let empty = json!({});
        let visible = self.visible(prompts.iter(), "prompts/list", |entry| Subject {
            method: "prompts/list",
            server: &entry.server,
            target: Target::Prompt(entry),
            arguments: &empty,
            params: &empty,
        });
        let shown = match visible {
            Ok(shown) => shown.iter().map(|e| e.exposed.clone()).collect(),
            Err(refused) => return Reply::Json(Err(refused)),
        };
        let item = |prompts: &Named, exposed: &String| {
            prompts.get(exposed).map_or(Value::Null, Entry::exposed_def)
        };
        Reply::List("prompts", Box::new(Shown::new(prompts, shown, item)))
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
        let Some(entry) = self.prompt_named(name).await else {
            return Some(Refusal::UnknownPrompt(name.to_string()).answer(false, None));
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut upstream_params = params.clone();
        upstream_params["name"] = json!(entry.name);
        let subject = Subject {
            method: "prompts/get",
            server: &entry.server,
            target: Target::Prompt(&entry),
            arguments: &arguments,
            params: &upstream_params,
        };
        self.decide_and_forward(&subject, cancel).await
    }

    pub(super) async fn completion(
        &self,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let reference = params.get("ref").cloned().unwrap_or(Value::Null);
        let argument = params
            .get("argument")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let mut upstream_params = params.clone();
        let refuse = |r: Refusal| Some(r.answer(false, None));
        match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(entry) = self.prompt_named(name).await else {
                    return refuse(Refusal::UnknownPrompt(name.to_string()));
                };
                upstream_params["ref"]["name"] = json!(entry.name);
                let subject = Subject {
                    method: "completion/complete",
                    server: &entry.server,
                    target: Target::Prompt(&entry),
                    arguments: &argument,
                    params: &upstream_params,
                };
                self.decide_and_forward(&subject, cancel).await
            }
            Some("ref/resource") => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                let resources = self.resources(false).await;
                let (server, def) = match resources.route(uri) {
                    Route::To { server, listed } => (server.to_string(), listed),
                    Route::Contested(servers) => {
                        return refuse(Refusal::ResourceContested {
                            uri: uri.to_string(),
                            servers,
                        });
                    }
                    Route::Unclaimed if self.naming.passthrough => {
                        (self.upstreams[0].name().to_string(), None)
                    }
                    Route::Unclaimed => return refuse(Refusal::ResourceNotFound(uri.to_string())),
                };
                let subject = Subject {
                    method: "completion/complete",
                    server: &server,
                    target: Target::Resource(uri, def),
                    arguments: &argument,
                    params: &upstream_params,
                };
                self.decide_and_forward(&subject, cancel).await
            }
            _ => refuse(Refusal::InvalidParams(
                "completion/complete needs ref/prompt or ref/resource".into(),
            )),
        }
    }

    async fn prompt_named(&self, name: &str) -> Option<crate::upstream::Entry> {
        match self.prompts(false).await.get(name) {
            Some(e) => Some(e.clone()),
            None => self.prompts(true).await.get(name).cloned(),
        }
    }

    /// `logging/setLevel` applies to every upstream that logs. Only a level
    /// from the spec's list is passed on, never the client's other params.
    pub(super) async fn set_log_level(&self, params: Value) -> Result<Value, Value> {
        let Some(level) = params
            .get("level")
            .and_then(Value::as_str)
            .and_then(LogLevel::parse)
        else {
            return Refusal::InvalidParams(
                "logging/setLevel needs `level`: debug, info, notice, warning, error, critical, alert or emergency".into(),
            )
            .answer(false, None);
        };
        for upstream in self.live_upstreams() {
            if self.offers(upstream.name(), "logging")
                && let Ok(Err(error)) | Err(error) = upstream
                    .own_request(OwnRequest::SetLogLevel(level), LOG_LEVEL_TIMEOUT)
                    .await
                    .map_err(|e| json!(e.to_string()))
            {
                tracing::warn!(server = upstream.name(), %error, "logging/setLevel failed");
            }
        }
        Ok(json!({}))
    }
}
