//! Tasks (MCP 2025-11-25, SEP-1686): `tasks/get`, `tasks/result`,
//! `tasks/cancel` and `tasks/list`.
//!
//! A task is created by a task-augmented `tools/call` (params `task`), which
//! the policy decided like any call; the upstream answers with a
//! `CreateTaskResult` naming the task id. The firewall remembers which
//! upstream (and which tool) each task id of this session came from, and:
//!
//! - routes `tasks/get`, `tasks/result` and `tasks/cancel` to that upstream
//!   only, decided by the policy with `input.method` naming the task method,
//!   `input.tool` the tool that created the task and `input.task.id` the
//!   task; a task id this session did not create is refused (`-32602`), so
//!   no client reaches another session's or another upstream's tasks;
//! - puts what `tasks/result` returns (the tool's real result) through the
//!   response phase, exactly as a direct `tools/call` result;
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
use super::methods::ClientRequest;
use crate::error::Refusal;
use crate::upstream::{Entry, ListMethod};

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
        let id = result
            .get("task")
            .and_then(|t| t.get("taskId"))
            .and_then(Value::as_str)?;
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
        self.decide_and_forward(&subject, cancel).await
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
