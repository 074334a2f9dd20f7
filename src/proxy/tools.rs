//! `tools/list` and `tools/call`.
//!
//! `tools/call` runs the whole pipeline: route (exposed name -> upstream and
//! its own name) -> validate the arguments against the tool's `inputSchema`
//! -> decide (policy) and audit -> forward with a `Permit` -> audit the
//! outcome. `tools/list` evaluates the policy once per tool and leaves out
//! what it hides (and, failing closed, any tool whose evaluation fails).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::input::{Subject, Target};
use super::pipeline::Refused;
use super::to_client::Shown;
use super::{Proxy, Reply};
use crate::error::Refusal;
use crate::upstream::{Entry, Named};

/// Validation errors reported back to the model; more would only be noise.
const MAX_REPORTED_SCHEMA_ERRORS: usize = 5;

impl Proxy {
    /// The tools the policy shows, written from the catalogue one definition
    /// at a time ([`super::to_client`]): a big listing is not copied whole.
    pub(super) async fn tools_list(&self) -> Reply {
        let tools = self.tools(false).await;
        let empty = json!({});
        let visible = self.visible(tools.iter(), "tools/list", |entry| Subject {
            method: "tools/list",
            server: &entry.server,
            target: Target::Tool(entry),
            arguments: &empty,
            params: &empty,
        });
        let shown = match visible {
            Ok(shown) => shown.iter().map(|e| e.exposed.clone()).collect(),
            Err(refused) => return Reply::Json(Err(refused)),
        };
        let item: fn(&Named, &String) -> Value = match self.shared.config.approval.tasks {
            true => |tools, exposed| {
                let def = tools.get(exposed).map_or(Value::Null, Entry::exposed_def);
                super::held_tasks::with_task_support(def)
            },
            false => |tools, exposed| tools.get(exposed).map_or(Value::Null, Entry::exposed_def),
        };
        Reply::List("tools", Box::new(Shown::new(tools, shown, item)))
    }

    pub(super) async fn tools_call(
        self: &Arc<Self>,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Some(
                Refusal::InvalidParams("tools/call needs a string `name`".into())
                    .answer(true, None),
            );
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !arguments.is_object() {
            return Some(
                Refusal::InvalidParams("`arguments` must be an object".into()).answer(true, None),
            );
        }
        let tools = self.tools_with(name).await;
        let entry = match tools.get(name) {
            Some(entry) => entry,
            None => {
                let refusal = match self.dead_owner(name) {
                    Some(exited) => Refusal::Upstream(exited),
                    None => Refusal::UnknownTool(name.to_string()),
                };
                let refused = self.refuse_unknown(name, &arguments, refusal);
                return Some(refused.answer(true));
            }
        };
        // What is decided is exactly what will be forwarded: the client's
        // params with the upstream's own tool name.
        let mut upstream_params = params.clone();
        upstream_params["name"] = json!(entry.name);
        let subject = Subject {
            method: "tools/call",
            server: &entry.server,
            target: Target::Tool(entry),
            arguments: &arguments,
            params: &upstream_params,
        };
        if let Err(refusal) = self.validate_arguments(entry, &arguments) {
            let refused = self.refuse_early(&subject, refusal);
            return Some(refused.answer(true));
        }
        if self.runs_as_task(&subject, entry) {
            return Some(self.start_task(entry, arguments.clone(), &params));
        }
        let answer = self.decide_and_forward(&subject, cancel).await;
        self.note_task(&answer, entry);
        answer
    }

    /// The merged tools, refreshed once if `name` is not among them (the
    /// client may call a tool it learned of before a change).
    pub(super) async fn tools_with(&self, name: &str) -> Arc<crate::upstream::Named> {
        let tools = self.tools(false).await;
        if tools.get(name).is_some() {
            return tools;
        }
        self.tools(true).await
    }

    /// If `name` would belong to an upstream that has exited, the error that
    /// says so: "its server is down" is more useful than "unknown tool".
    fn dead_owner(&self, name: &str) -> Option<crate::upstream::UpstreamError> {
        let server = if self.naming.passthrough {
            self.upstreams.first()?.name()
        } else {
            name.split_once(crate::config::NAMESPACE_SEPARATOR)?.0
        };
        let upstream = self.upstream(server)?;
        if upstream.is_alive() {
            return None;
        }
        upstream.start_request_error()
    }

    fn refuse_unknown(&self, name: &str, arguments: &Value, refusal: Refusal) -> Refused {
        let unknown = Entry::unknown(name);
        let subject = Subject {
            method: "tools/call",
            server: "",
            target: Target::Tool(&unknown),
            arguments,
            params: arguments,
        };
        self.refuse_early(&subject, refusal)
    }

    /// Check the arguments against the tool's `inputSchema`. Validators are
    /// compiled once per tool definition (keyed by fingerprint). A schema the
    /// firewall cannot compile refuses the call: it cannot be checked.
    pub(super) fn validate_arguments(
        &self,
        entry: &Entry,
        arguments: &Value,
    ) -> Result<(), Refusal> {
        let Some(schema) = entry.def.get("inputSchema") else {
            return Ok(());
        };
        let validator = self
            .validator(&entry.fingerprint, schema)
            .map_err(|message| Refusal::BadSchema {
                tool: entry.exposed.clone(),
                message,
            })?;
        let errors: Vec<String> = validator
            .iter_errors(arguments)
            .take(MAX_REPORTED_SCHEMA_ERRORS)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path
                };
                format!("{at}: {}", e.masked())
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal::InvalidArguments {
                tool: entry.exposed.clone(),
                errors,
            })
        }
    }

    fn validator(
        &self,
        fingerprint: &str,
        schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.schemas.lock().expect("schema lock").get(fingerprint) {
            return Ok(v.clone());
        }
        // Built without remote fetching (crate features), so `$ref` to a URL
        // fails here instead of reaching the network.
        let validator = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
        self.schemas
            .lock()
            .expect("schema lock")
            .insert(fingerprint.to_string(), validator.clone());
        Ok(validator)
    }

    /// Items of a listing that the policy does not hide. One audit record per
    /// listing names what was hidden; if it cannot be written the listing is
    /// refused.
    pub(super) fn visible<'a, T>(
        &self,
        items: impl Iterator<Item = &'a T>,
        method: &str,
        subject: impl Fn(&'a T) -> Subject<'a>,
    ) -> Result<Vec<&'a T>, Value>
    where
        T: 'a,
    {
        let policy = self.policy();
        let mut shown = Vec::new();
        let mut hidden = Vec::new();
        let mut failed = Vec::new();
        for item in items {
            if !policy.may_hide() {
                // Nothing in the policy can hide an item: evaluating it per
                // item (the whole policy, every listed tool) would only say so.
                shown.push(item);
                continue;
            }
            let subject = subject(item);
            let input = self.input_for(&subject);
            match input.evaluate(&policy) {
                Ok(verdict) if verdict.hide => {
                    hidden.push(subject.exposed_name().to_string());
                    // Shadow mode: log what would be hidden, list it anyway.
                    if self.shared.shadow {
                        shown.push(item);
                    }
                }
                Ok(_) => shown.push(item),
                Err(e) => {
                    failed.push(json!({"name": subject.exposed_name(), "error": e.to_string()}))
                }
            }
        }
        let record = json!({
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "method": method,
            "policy_revision": policy.revision(),
            "listed": shown.len(),
            "hidden": hidden,
            "failed": failed,
            "shadow": self.shared.shadow,
        });
        if let Err(e) = self.shared.audit.append("list.decided", record) {
            return Err(Refusal::AuditWriteFailed(e)
                .answer(false, None)
                .unwrap_err());
        }
        Ok(shown)
    }
}
