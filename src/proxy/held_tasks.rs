//! Held calls as tasks (MCP 2025-11-25 tasks): with `[approval] tasks`, a
//! client's task-augmented `tools/call` to a tool whose server does not run
//! tasks itself becomes a task of the firewall's own. The client gets a
//! `CreateTaskResult` at once, however long a human takes; the call is
//! decided, held (until its approval is settled, not only the approval
//! wait), forwarded as a plain call, and its answer kept for `tasks/result`.
//!
//! - `tasks/get` reports the task (while held: "held for human approval
//!   apr_…"); `tasks/result` blocks until it ends and returns exactly what
//!   the call would have returned; `tasks/cancel` withdraws the approval
//!   request; `tasks/list` includes these tasks.
//! - A deny, an expiry or any failure ends the task `failed` with the reason
//!   (the refusal the call would have got is its result).
//! - State lives in the approval store, keyed by task id and principal: only
//!   the principal that created a task can see or cancel it, from any
//!   session. A task still running when the firewall stopped is resumed when
//!   it is next polled: its call goes through the pipeline again (a new
//!   decision under the policy in force), where an approval given meanwhile
//!   releases it through its grant, once.
//! - Tools are listed with `execution.taskSupport: "optional"` (unless their
//!   server says otherwise) and the `tasks` capability is declared, so
//!   clients know they may ask.
//!
//! A client that declared the 2026-07-28 tasks extension
//! (`io.modelcontextprotocol/tasks`, SEP-2663) does not ask: the server
//! decides. The firewall makes a task of exactly the calls the policy would
//! hold, and shows its tasks in that extension's shape: a flat
//! `CreateTaskResult` (`resultType: "task"`, `ttlMs`, `pollIntervalMs`),
//! `tasks/get` inlining the call's result (a refusal or tool error is a
//! `completed` task with an `isError` result) or its JSON-RPC error
//! (`failed`), `tasks/cancel` and `tasks/update` answered with an empty ack.
//! If the released call makes a task of the upstream's own, the firewall's
//! task polls it (`tasks/get`, through the pipeline) and takes its outcome;
//! an upstream task that asks for input is cancelled (a held task cannot
//! relay input requests) and the firewall's task fails, saying so.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{Subject, Target};
use crate::approval::store::tasks::StoredTask;
use crate::error::Refusal;
use crate::jsonrpc::{self, code};
use crate::upstream::Entry;

/// Ids of the firewall's own tasks start with this.
pub const TASK_PREFIX: &str = "fwt_";

/// Suggested milliseconds between `tasks/get` polls.
const POLL_INTERVAL_MS: u64 = 2000;

/// How often a blocked `tasks/result` looks at the task again.
const RESULT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest a task is kept after it was created.
const MAX_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Tasks whose call runs in this process, by task id: one job per task
/// across every session (two sessions of a principal polling the same task
/// must not both run it).
static JOBS: LazyLock<Mutex<HashMap<String, CancellationToken>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn jobs() -> std::sync::MutexGuard<'static, HashMap<String, CancellationToken>> {
    JOBS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running job's entry in [`JOBS`], removed however the job ends: also
/// when its session closes and drops it mid-way, so the task can be
/// resumed by the principal's next poll from another session.
struct JobEntry(String);

impl Drop for JobEntry {
    fn drop(&mut self) {
        jobs().remove(&self.0);
    }
}

/// A tool definition's `execution.taskSupport`, as its server lists it.
fn task_support(def: &Value) -> Option<&str> {
    def.get("execution")
        .and_then(|e| e.get("taskSupport"))
        .and_then(Value::as_str)
}

/// The tool's server runs task-augmented calls itself.
fn upstream_runs_tasks(entry: &Entry) -> bool {
    matches!(task_support(&entry.def), Some("optional" | "required"))
}

/// A tool definition as listed when the firewall runs tasks: may be called
/// as a task unless its server says how.
pub fn with_task_support(mut def: Value) -> Value {
    if def
        .get("execution")
        .and_then(|e| e.get("taskSupport"))
        .is_none()
    {
        let execution = def
            .as_object_mut()
            .map(|d| d.entry("execution").or_insert_with(|| json!({})));
        if let Some(Value::Object(e)) = execution {
            e.insert("taskSupport".into(), json!("optional"));
        }
    }
    def
}

/// The `Task` object clients see.
fn task_json(task: &StoredTask) -> Value {
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut out = json!({
        "taskId": task.id,
        "status": task.status,
        "createdAt": at(task.created_at),
        "lastUpdatedAt": at(task.updated_at),
        "ttl": task.ttl_ms,
        "pollInterval": POLL_INTERVAL_MS,
    });
    if let Some(message) = &task.status_message {
        out["statusMessage"] = json!(message);
    }
    out
}

/// A task in the 2026-07-28 extension's shape: what `CreateTaskResult`
/// carries (`terminal: false`), or the `tasks/get` DetailedTask with the
/// call's outcome inlined once it has ended.
fn extension_task_json(task: &StoredTask, detailed: bool) -> Value {
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    // A refused call or a tool error is a tool result: the task completed.
    let status = match (task.status.as_str(), &task.result) {
        ("failed", Some(_)) => "completed",
        (status, _) => status,
    };
    let mut out = json!({
        "resultType": if detailed { "complete" } else { "task" },
        "taskId": task.id,
        "status": status,
        "createdAt": at(task.created_at),
        "lastUpdatedAt": at(task.updated_at),
        "ttlMs": task.ttl_ms,
        "pollIntervalMs": POLL_INTERVAL_MS,
    });
    if let Some(message) = &task.status_message {
        out["statusMessage"] = json!(message);
    }
    if detailed {
        match (status, &task.result, &task.error) {
            ("completed", Some(result), _) => out["result"] = result.clone(),
            ("failed", None, Some(error)) => out["error"] = error.clone(),
            _ => {}
        }
    }
    out
}

/// The empty acknowledgement of `tasks/cancel` and `tasks/update` in the
/// 2026-07-28 extension.
fn extension_ack() -> Result<Value, Value> {
    Ok(json!({"resultType": "complete"}))
}

fn task_error(message: String) -> Result<Value, Value> {
    Err(json!({"code": code::INVALID_PARAMS, "message": message}))
}

impl Proxy {
    /// Whether this `tools/call` runs as a firewall task: the client asked
    /// for a task and either the tool's server does not run tasks, or the
    /// policy would hold the call (then the firewall's task waits for the
    /// approval and drives the server's own task once released). A call
    /// the policy lets through to a task-running server keeps that
    /// server's task, routed as before.
    pub(super) fn runs_as_task(&self, subject: &Subject<'_>, entry: &Entry) -> bool {
        if !self.shared.config.approval.tasks {
            return false;
        }
        // The 2026 extension: the server decides, and a legacy `task` hint
        // promotes nothing; the firewall makes tasks of held calls only.
        if !self.session.speaks_tasks_extension() {
            if !subject.params.get("task").is_some_and(Value::is_object) {
                return false;
            }
            if !upstream_runs_tasks(entry) {
                return true;
            }
        }
        // A look ahead, recorded nowhere: the task's own run decides again,
        // on the record.
        matches!(
            self.input_for(subject).evaluate(&self.policy()),
            Ok(v) if matches!(v.decision, crate::policy::Decision::Approve { .. })
        )
    }

    /// Create the task, start its call, answer with `CreateTaskResult`.
    pub(super) fn start_task(
        self: &Arc<Self>,
        entry: &Entry,
        arguments: Value,
        client_params: &Value,
    ) -> Result<Value, Value> {
        let Some(approvals) = self.shared.approvals.clone() else {
            return Refusal::ApprovalFailed("no approval store".into()).answer(false, None);
        };
        // Answered at once, the task runs on: it holds a place among the
        // session's running tasks until it ends, or tasks would be a way
        // around the bound on requests in flight.
        let Some(slot) = self.running_tasks.take() else {
            return Err(self.busy(&self.running_tasks, "tools/call"));
        };
        let requested = client_params
            .get("task")
            .and_then(|t| t.get("ttl"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        // Long enough to outlive the approval request it may wait for.
        let floor =
            i64::try_from(approvals.settings.timeout.as_millis()).unwrap_or(MAX_TTL_MS) + 3_600_000;
        let mut params = client_params.clone();
        // A server that requires tasks gets the call as a task (the
        // firewall's task then waits on the server's); any other, plainly.
        if task_support(&entry.def) != Some("required")
            && let Some(p) = params.as_object_mut()
        {
            p.remove("task");
        }
        let now = Utc::now();
        let task = StoredTask {
            id: format!("{TASK_PREFIX}{}", uuid::Uuid::new_v4().simple()),
            principal: self.session.principal.id.clone(),
            server: entry.server.clone(),
            tool: entry.exposed.clone(),
            params,
            status: "working".into(),
            status_message: Some("deciding".into()),
            approval_id: None,
            ttl_ms: requested.max(floor).min(MAX_TTL_MS),
            created_at: now,
            updated_at: now,
            result: None,
            error: None,
        };
        if let Err(e) = approvals.store.create_task(&task) {
            return Refusal::ApprovalFailed(e.to_string()).answer(false, None);
        }
        let record = json!({"task_id": task.id, "session_id": self.session.id,
                            "server": task.server, "tool": task.tool});
        if let Err(e) = self.shared.audit.append("task.created", record) {
            return Refusal::AuditWriteFailed(e).answer(false, None);
        }
        self.run_task(
            task.id.clone(),
            entry.clone(),
            arguments,
            task.params.clone(),
            Some(slot),
        );
        if self.session.speaks_tasks_extension() {
            let mut created = extension_task_json(&task, false);
            created["_meta"] = json!({"io.modelcontextprotocol/model-immediate-response": format!(
                "mcp-firewall runs this call as task {}: it is held for a human's approval; \
                 poll tasks/get for its status and result",
                task.id
            )});
            return Ok(created);
        }
        let notice = format!(
            "mcp-firewall runs this call as task {}: it may be held for a human's approval; \
             poll tasks/get for its status and tasks/result for its result",
            task.id
        );
        Ok(json!({
            "task": task_json(&task),
            "_meta": {"io.modelcontextprotocol/model-immediate-response": notice},
        }))
    }

    /// Run the task's call in the background: the whole pipeline, holding
    /// until the approval is settled; its answer ends the task.
    fn run_task(
        self: &Arc<Self>,
        id: String,
        entry: Entry,
        arguments: Value,
        params: Value,
        slot: Option<super::Slot>,
    ) {
        let cancel = CancellationToken::new();
        {
            let mut jobs = jobs();
            if jobs.contains_key(&id) {
                return;
            }
            jobs.insert(id.clone(), cancel.clone());
        }
        let proxy = self.clone();
        self.scope.spawn(async move {
            let _slot = slot;
            let entry_guard = JobEntry(id.clone());
            let mut upstream_params = params;
            upstream_params["name"] = json!(entry.name);
            let subject = Subject {
                method: "tools/call",
                server: &entry.server,
                target: Target::Tool(&entry),
                arguments: &arguments,
                params: &upstream_params,
            };
            let mut answer = match proxy.validate_arguments(&entry, &arguments) {
                Err(refusal) => Some(proxy.refuse_early(&subject, refusal).answer(true)),
                Ok(()) => {
                    proxy
                        .decide_and_forward_holding(&subject, &cancel, Some(&id))
                        .await
                }
            };
            // Released to a server that made a task of its own: its result
            // (fetched through the pipeline, decided like any tasks/result
            // or tasks/get) is this task's.
            let flat = matches!(&answer, Some(Ok(r)) if super::tasks::is_flat_task(r));
            if let Some(upstream_task) = proxy.note_task(&answer, &entry) {
                let message = format!(
                    "released; running as task {upstream_task} of {}",
                    entry.server
                );
                let _ = proxy
                    .shared
                    .approvals
                    .as_ref()
                    .map(|a| a.store.note_task(&id, &message, None, Utc::now()));
                answer = if flat {
                    proxy
                        .await_upstream_task(&entry, &upstream_task, &cancel)
                        .await
                } else {
                    proxy
                        .task_call(
                            crate::proxy::methods::ClientRequest::TasksResult,
                            json!({"taskId": upstream_task}),
                            &cancel,
                        )
                        .await
                };
            }
            drop(entry_guard);
            // None: cancelled; tasks/cancel already ended the task.
            if let Some(answer) = answer {
                proxy.finish_task(&id, answer).await;
            }
        });
    }

    /// Poll an upstream's 2026 task (through the pipeline) until it ends,
    /// for at most as long as a task is kept ([`MAX_TTL_MS`]); its outcome
    /// as a `tools/call` answer. `None` if cancelled.
    async fn await_upstream_task(
        self: &Arc<Self>,
        entry: &Entry,
        upstream_task: &str,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let ended = |message: String| {
            Some(Err(
                json!({"code": code::INTERNAL_ERROR, "message": message}),
            ))
        };
        let longest = std::time::Duration::from_millis(u64::try_from(MAX_TTL_MS).unwrap_or(0));
        let deadline = tokio::time::Instant::now() + longest;
        loop {
            if tokio::time::Instant::now() >= deadline {
                self.cancel_upstream_task(&entry.server, upstream_task)
                    .await;
                return ended(format!(
                    "{}'s task did not end within the longest a task is kept; it was cancelled",
                    entry.server
                ));
            }
            let got = self
                .task_call(
                    crate::proxy::methods::ClientRequest::TasksGet,
                    json!({"taskId": upstream_task}),
                    cancel,
                )
                .await?;
            let task = match got {
                Ok(task) => task,
                Err(error) => return Some(Err(error)),
            };
            match task["status"].as_str().unwrap_or("") {
                "completed" => {
                    return Some(Ok(task
                        .get("result")
                        .cloned()
                        .unwrap_or_else(|| json!({"content": []}))));
                }
                "failed" => {
                    let error = task.get("error").cloned();
                    return match error {
                        Some(error) => Some(Err(error)),
                        None => ended(format!("{} failed its task", entry.server)),
                    };
                }
                "cancelled" => return ended(format!("{} cancelled its task", entry.server)),
                "input_required" => {
                    self.cancel_upstream_task(&entry.server, upstream_task)
                        .await;
                    return ended(format!(
                        "{} asked for input during the released call, which a held task \
                         cannot relay; its task was cancelled (call again without a hold)",
                        entry.server
                    ));
                }
                _ => {}
            }
            let every = task["pollIntervalMs"]
                .as_u64()
                .unwrap_or(500)
                .clamp(100, 5000);
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(every)) => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    async fn finish_task(&self, id: &str, answer: Result<Value, Value>) {
        let Some(approvals) = &self.shared.approvals else {
            return;
        };
        let (status, message) = match &answer {
            Ok(r) if r.get("isError") == Some(&Value::Bool(true)) => {
                let text = r["content"][0]["text"]
                    .as_str()
                    .unwrap_or("the tool failed");
                ("failed", text.to_string())
            }
            Ok(_) => ("completed", "the call ran".to_string()),
            Err(e) => (
                "failed",
                e["message"]
                    .as_str()
                    .unwrap_or("the call failed")
                    .to_string(),
            ),
        };
        match approvals
            .store
            .finish_task(id, status, &message, &answer, Utc::now())
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!("could not end task {id}: {e}");
                return;
            }
        }
        let record = json!({"task_id": id, "session_id": self.session.id, "status": status});
        if let Err(e) = self.shared.audit.append("task.finished", record) {
            tracing::error!("audit write failed: {e}");
        }
        // The 2026 extension has no status notification on the session
        // (it would come on `subscriptions/listen`): its clients poll.
        if self.session.speaks_tasks_extension() {
            return;
        }
        if let Ok(Some(task)) = approvals.store.task(id, &self.session.principal.id) {
            let note = jsonrpc::notification("notifications/tasks/status", &task_json(&task));
            self.send(note).await;
        }
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel` for a firewall task;
    /// `None` when `id` is not one of this principal's.
    pub(super) async fn own_task_call(
        self: &Arc<Self>,
        method: &str,
        id: &str,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        if !id.starts_with(TASK_PREFIX) {
            return None;
        }
        let approvals = self.shared.approvals.clone()?;
        let principal = self.session.principal.id.clone();
        let task = match approvals.store.task(id, &principal) {
            Ok(Some(task)) => task,
            Ok(None) => return None,
            Err(e) => return Some(task_error(format!("task {id}: {e}"))),
        };
        if task.expired(Utc::now()) {
            return Some(task_error(format!("task {id} has expired")));
        }
        let extension = self.session.speaks_tasks_extension();
        if method == "tasks/cancel" {
            // Never resumed first: re-running the call of a task being
            // cancelled could consume its grant and run it.
            if extension && task.is_terminal() {
                return Some(extension_ack());
            }
            let cancelled = self.cancel_task(task).await;
            return Some(if extension {
                cancelled.and_then(|_| extension_ack())
            } else {
                cancelled
            });
        }
        if method == "tasks/update" {
            // A held call asks the client nothing: nothing to update.
            return Some(extension_ack());
        }
        self.resume(&task).await;
        Some(match method {
            "tasks/get" if extension => {
                let now = approvals
                    .store
                    .task(id, &principal)
                    .ok()
                    .flatten()
                    .unwrap_or(task);
                Ok(extension_task_json(&now, true))
            }
            "tasks/get" => Ok(task_json(&task)),
            _ => self.task_result(id, &principal, cancel).await?,
        })
    }

    /// A running task whose job is not in this process (the firewall was
    /// restarted): run its call again.
    async fn resume(self: &Arc<Self>, task: &StoredTask) {
        if task.is_terminal() || jobs().contains_key(&task.id) {
            return;
        }
        let tools = self.tools_with(&task.tool).await;
        let Some(entry) = tools.get(&task.tool).cloned() else {
            let gone = Refusal::UnknownTool(task.tool.clone()).answer(true, None);
            self.finish_task(&task.id, gone).await;
            return;
        };
        let arguments = task
            .params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        tracing::info!(task = %task.id, "resuming a task left running by an earlier run");
        // A resumed task takes a place when there is one; it exists already,
        // so it runs either way.
        let slot = self.running_tasks.take();
        self.run_task(task.id.clone(), entry, arguments, task.params.clone(), slot);
    }

    /// Block until the task ends; return what its call returned.
    async fn task_result(
        &self,
        id: &str,
        principal: &str,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let approvals = self.shared.approvals.clone()?;
        loop {
            let task = match approvals.store.task(id, principal) {
                Ok(Some(task)) => task,
                Ok(None) => return Some(task_error(format!("task {id} vanished"))),
                Err(e) => return Some(task_error(format!("task {id}: {e}"))),
            };
            if task.is_terminal() {
                let related = json!({"taskId": id});
                return Some(match (task.result, task.error) {
                    (Some(mut result), _) => {
                        if let Some(r) = result.as_object_mut() {
                            let meta = r.entry("_meta").or_insert_with(|| json!({}));
                            meta["io.modelcontextprotocol/related-task"] = related;
                        }
                        Ok(result)
                    }
                    (None, Some(error)) => Err(error),
                    (None, None) => Err(json!({"code": code::INTERNAL_ERROR,
                        "message": format!("task {id} ended without an answer")})),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(RESULT_POLL) => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Cancel a running task: stop its job and withdraw its approval request.
    async fn cancel_task(&self, task: StoredTask) -> Result<Value, Value> {
        if task.is_terminal() {
            return task_error(format!(
                "task {} has already ended ({})",
                task.id, task.status
            ));
        }
        let Some(approvals) = self.shared.approvals.clone() else {
            return task_error("no approval store".into());
        };
        if let Some(job) = jobs().remove(&task.id) {
            job.cancel();
        }
        if let Some(approval) = &task.approval_id {
            self.withdraw(&approvals, approval).await;
        }
        let cancelled = Err(json!({"code": code::INVALID_REQUEST,
                                   "message": "the task was cancelled by the client"}));
        let now = Utc::now();
        if let Err(e) = approvals.store.finish_task(
            &task.id,
            "cancelled",
            "cancelled by the client",
            &cancelled,
            now,
        ) {
            return task_error(format!("task {}: {e}", task.id));
        }
        let record =
            json!({"task_id": task.id, "session_id": self.session.id, "status": "cancelled"});
        if let Err(e) = self.shared.audit.append("task.finished", record) {
            tracing::error!("audit write failed: {e}");
        }
        match approvals.store.task(&task.id, &task.principal) {
            Ok(Some(t)) => Ok(task_json(&t)),
            _ => task_error(format!("task {} vanished", task.id)),
        }
    }

    /// This principal's firewall tasks, for `tasks/list`.
    pub(super) fn own_tasks(&self) -> Vec<Value> {
        let Some(approvals) = &self.shared.approvals else {
            return Vec::new();
        };
        let now = Utc::now();
        approvals
            .store
            .tasks_of(&self.session.principal.id)
            .unwrap_or_default()
            .iter()
            .filter(|t| !t.expired(now))
            .map(task_json)
            .collect()
    }
}
