//! Tasks: MCP 2025-11-25 (SEP-1686: `tasks/get`, `tasks/result`,
//! `tasks/cancel`, `tasks/list`) and the 2026-07-28 tasks extension
//! (`io.modelcontextprotocol/tasks`, SEP-2663: `tasks/get`, `tasks/update`,
//! `tasks/cancel`).
//!
//! A task is created by a `tools/call` the policy decided like any call
//! (task-augmented with params `task` in 2025-11-25; at the server's choice
//! for a client that declared the extension in 2026-07-28); the upstream
//! answers with a `CreateTaskResult` naming the task id (nested under `task`,
//! or flat with `resultType: "task"`). The firewall remembers which upstream
//! (and which tool) each task id of this session came from, and:
//!
//! - routes `tasks/get`, `tasks/result`, `tasks/cancel` and `tasks/update` to
//!   that upstream only, decided by the policy with `input.method` naming the
//!   task method, `input.tool` the tool that created the task and
//!   `input.task.id` the task; a task id this session did not create is
//!   refused (`-32602`), so no client reaches another session's or another
//!   upstream's tasks;
//! - puts what `tasks/result` returns (the tool's real result), and the
//!   result a 2026 `tasks/get` inlines, through the response phase, exactly
//!   as a direct `tools/call` result;
//! - decides every input request a 2026 `tasks/get` carries (`inputRequests`:
//!   elicitation, sampling, roots) as the server-to-client request it is,
//!   once per request; the client sees only those the policy allows, and an
//!   upstream that asks for what the policy refuses has its task cancelled
//!   (the client sees it `failed`, with the reasons);
//! - answers `tasks/list` itself: the upstreams' listings, keeping only this
//!   session's tasks;
//! - relays `notifications/tasks/status` only for this session's tasks.
//!
//! A second upstream claiming a task id another upstream already owns does
//! not take it over: the first owner keeps it and the claim is logged.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{Subject, Target};
use super::methods::{ClientRequest, ServerRequest};
use crate::error::Refusal;
use crate::jsonrpc::code;
use crate::upstream::{Entry, ListMethod, OwnRequest};

/// The 2026-07-28 tasks extension's id (`capabilities.extensions`).
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Input requests decided per task at most; an upstream asking for more is
/// refused them (and so ends its task).
pub const MAX_INPUT_REQUESTS_PER_TASK: usize = 64;

/// The id of the task a `CreateTaskResult` names, flat (2026-07-28
/// extension, `resultType: "task"`) or nested under `task` (2025-11-25).
pub fn created_task_id(result: &Value) -> Option<&str> {
    match result.get("resultType").and_then(Value::as_str) {
        Some("task") => result.get("taskId"),
        _ => result.get("task").and_then(|t| t.get("taskId")),
    }
    .and_then(Value::as_str)
}

/// Whether `result` is the 2026 extension's flat `CreateTaskResult`.
pub fn is_flat_task(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("task")
}

/// Tasks remembered per session; beyond this the oldest are forgotten (and
/// can no longer be reached through the firewall).
pub const MAX_TASKS_PER_SESSION: usize = 4096;

/// Where a task came from.
#[derive(Debug, Clone)]
pub struct TaskOwner {
    /// The tool whose task-augmented call created it (its upstream is
    /// `entry.server`).
    pub entry: Entry,
    /// Order of creation, for forgetting the oldest.
    seq: u64,
    /// The input requests decided so far, by key: `None` if relayed to the
    /// client, else the reasons it was refused.
    inputs: HashMap<String, Option<Vec<String>>>,
    /// What `tasks/get` answers once the firewall ended the task.
    ended: Option<Value>,
}

/// This session's tasks, by task id.
#[derive(Debug, Default)]
pub struct Tasks {
    owners: HashMap<String, TaskOwner>,
    next: u64,
}

impl Tasks {
    /// Remember that `entry`'s upstream created task `id`. `false` if another
    /// upstream already owns that id (the claim is refused).
    fn insert(&mut self, id: &str, entry: &Entry) -> bool {
        if let Some(owner) = self.owners.get(id) {
            return owner.entry.server == entry.server;
        }
        if self.owners.len() >= MAX_TASKS_PER_SESSION
            && let Some(oldest) = self
                .owners
                .iter()
                .min_by_key(|(_, o)| o.seq)
                .map(|(k, _)| k.clone())
        {
            self.owners.remove(&oldest);
        }
        self.next += 1;
        let owner = TaskOwner {
            entry: entry.clone(),
            seq: self.next,
            inputs: HashMap::new(),
            ended: None,
        };
        self.owners.insert(id.to_string(), owner);
        true
    }

    fn owner(&self, id: &str) -> Option<&TaskOwner> {
        self.owners.get(id)
    }
}

impl Proxy {
    /// After a forwarded `tools/call`: if the upstream answered with a
    /// `CreateTaskResult`, remember the task as `entry`'s. Returns its id
    /// when it is now routed to `entry`'s upstream.
    pub(super) fn note_task(
        &self,
        answer: &Option<Result<Value, Value>>,
        entry: &Entry,
    ) -> Option<String> {
        let Some(Ok(result)) = answer else {
            return None;
        };
        let id = created_task_id(result)?;
        if !self.tasks.lock().expect("tasks lock").insert(id, entry) {
            tracing::warn!(server = %entry.server, task = %id,
                "upstream claimed a task id another upstream owns; not routed to it");
            return None;
        }
        Some(id.to_string())
    }

    /// Whether this session created task `id`.
    pub(super) fn knows_task(&self, id: &str) -> bool {
        self.tasks.lock().expect("tasks lock").owner(id).is_some()
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel`: decided, then forwarded
    /// to the upstream that created the task.
    pub(super) async fn task_call(
        self: &Arc<Self>,
        request: ClientRequest,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let method = request.as_str();
        let Some(id) = params.get("taskId").and_then(Value::as_str) else {
            return Some(
                Refusal::InvalidParams(format!("{method} needs a string `taskId`"))
                    .answer(false, None),
            );
        };
        if let Some(answer) = self.own_task_call(method, id, cancel).await {
            return Some(answer);
        }
        let owner = self.tasks.lock().expect("tasks lock").owner(id).cloned();
        let empty = json!({});
        let Some(owner) = owner else {
            let unknown = Entry::unknown("");
            let subject = Subject {
                method,
                server: "",
                target: Target::Tool(&unknown),
                arguments: &empty,
                params: &params,
            };
            let refusal = Refusal::InvalidParams(format!(
                "unknown task {id:?}: this session created no such task"
            ));
            let refused = self.refuse_early(&subject, refusal);
            return Some(refused.answer(false));
        };
        let subject = Subject {
            method,
            server: &owner.entry.server,
            target: Target::Tool(&owner.entry),
            arguments: &empty,
            params: &params,
        };
        let answer = self.decide_and_forward(&subject, cancel).await;
        match (request, answer) {
            (ClientRequest::TasksGet, Some(Ok(task))) => {
                Some(Ok(self.screen_input_requests(id, &owner.entry, task).await))
            }
            (_, answer) => answer,
        }
    }

    /// A 2026 `tasks/get` answer with `inputRequests`: each one decided (once)
    /// as the server-to-client request it is; the client sees the allowed
    /// ones. A refused one ends the task: the upstream's task is cancelled and
    /// the client sees it `failed` with the reasons.
    async fn screen_input_requests(&self, id: &str, entry: &Entry, mut task: Value) -> Value {
        let ended = self
            .tasks
            .lock()
            .expect("tasks lock")
            .owner(id)
            .and_then(|o| o.ended.clone());
        if let Some(ended) = ended {
            return ended;
        }
        let Some(Value::Object(requests)) = task.get_mut("inputRequests") else {
            return task;
        };
        let mut refused = Vec::new();
        for (key, request) in requests.iter() {
            let (known, decided) = self
                .tasks
                .lock()
                .expect("tasks lock")
                .owner(id)
                .map_or((None, 0), |o| (o.inputs.get(key).cloned(), o.inputs.len()));
            let verdict = match known {
                Some(verdict) => verdict,
                None if decided >= MAX_INPUT_REQUESTS_PER_TASK => Some(vec![format!(
                    "the server asked for more than {MAX_INPUT_REQUESTS_PER_TASK} inputs in one task"
                )]),
                None => {
                    let verdict = self.decide_input_request(id, entry, request);
                    if let Some(owner) = self.tasks.lock().expect("tasks lock").owners.get_mut(id) {
                        owner.inputs.insert(key.clone(), verdict.clone());
                    }
                    verdict
                }
            };
            if let Some(reasons) = verdict {
                refused.extend(reasons);
            }
        }
        if refused.is_empty() {
            return task;
        }
        self.cancel_upstream_task(&entry.server, id).await;
        let mut failed = json!({
            "resultType": "complete",
            "taskId": id,
            "status": "failed",
            "statusMessage": "the server asked for input the firewall's policy refused",
            "error": {
                "code": code::POLICY_DENIED,
                "message": format!(
                    "mcp-firewall ended this task: the server asked for input the policy refused: {}",
                    refused.join("; ")
                ),
                "data": {"kind": "policy_denied", "reasons": refused},
            },
        });
        for key in ["createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"] {
            if let Some(v) = task.get(key) {
                failed[key] = v.clone();
            }
        }
        if let Some(owner) = self.tasks.lock().expect("tasks lock").owners.get_mut(id) {
            owner.ended = Some(failed.clone());
        }
        failed
    }

    /// Ask `server` to cancel its task `id` (the firewall ends it itself);
    /// bounded by the upstream's request timeout, a failure only logged.
    pub(super) async fn cancel_upstream_task(&self, server: &str, id: &str) {
        let Some(upstream) = self.upstream(server) else {
            return;
        };
        let cancel = upstream.own_request(
            OwnRequest::CancelTask(id.to_string()),
            self.spec_timeout(server),
        );
        if let Err(e) = cancel.await {
            tracing::warn!(server = %server, task = %id, "could not cancel the task: {e}");
        }
    }

    /// Decide one of a task's input requests; `None` if allowed, else the
    /// reasons it is refused.
    fn decide_input_request(
        &self,
        id: &str,
        entry: &Entry,
        request: &Value,
    ) -> Option<Vec<String>> {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        if ServerRequest::parse(method).is_none_or(|m| m == ServerRequest::Ping) {
            return Some(vec![format!(
                "input request method {method:?} is not one a server may send a client"
            )]);
        }
        let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
        let cause = json!({"name": entry.exposed, "task_id": id});
        match self.decide_server_request(&entry.server, method, &params, cause) {
            Ok(_) => None,
            Err(refused) => {
                let mut reasons = refused.refusal.reasons();
                if reasons.is_empty() {
                    reasons.push(refused.refusal.text());
                }
                Some(reasons)
            }
        }
    }

    /// `tasks/list`: the upstreams' listings of this session's tasks.
    pub(super) async fn tasks_list(&self) -> Result<Value, Value> {
        let listings = self.fetch_all(ListMethod::Tasks, "tasks").await;
        let tasks = self.tasks.lock().expect("tasks lock");
        let mine: Vec<Value> = listings
            .into_iter()
            .flat_map(|(server, items)| items.into_iter().map(move |t| (server.clone(), t)))
            .filter(|(server, task)| {
                task.get("taskId")
                    .and_then(Value::as_str)
                    .and_then(|id| tasks.owner(id))
                    .is_some_and(|owner| &owner.entry.server == server)
            })
            .map(|(_, task)| task)
            .collect();
        drop(tasks);
        let mut all = self.own_tasks();
        all.extend(mine);
        Ok(json!({"tasks": all}))
    }
}
