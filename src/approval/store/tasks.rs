//! Tasks the firewall itself runs for task-augmented `tools/call`s (MCP
//! tasks, 2025-11-25): a held call answers the client at once with a task,
//! and its state lives here so it survives a restart.
//!
//! Status moves only forward: `working -> completed | failed | cancelled`;
//! a terminal task never changes again (every update is conditional on a
//! non-terminal status).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::rows::micros;
use super::sql::{Row, vals};
use super::{ApprovalStore, StoreError};

/// One task the firewall runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    pub id: String,
    /// Who created it: only this principal may read or cancel it.
    pub principal: String,
    pub server: String,
    /// The tool's exposed name.
    pub tool: String,
    /// The `tools/call` params to run (without `task`).
    pub params: Value,
    /// `working`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub status_message: Option<String>,
    pub approval_id: Option<String>,
    pub ttl_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The `tools/call` answer once terminal: a result ...
    pub result: Option<Value>,
    /// ... or a JSON-RPC error.
    pub error: Option<Value>,
}

impl StoredTask {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }

    /// Past its time to live: gone, as far as the client is concerned.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now > self.created_at + chrono::Duration::milliseconds(self.ttl_ms)
    }
}

const TASK_SELECT: &str = "SELECT id, principal, server, tool, params, status, status_message,
    approval_id, ttl_ms, created_at, updated_at, result, error FROM tasks";

fn task_from_row(row: &Row) -> Result<StoredTask, StoreError> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    Ok(StoredTask {
        id: row.text(0)?,
        principal: row.text(1)?,
        server: row.text(2)?,
        tool: row.text(3)?,
        params: json(row.opt_text(4)?).unwrap_or(Value::Null),
        status: row.text(5)?,
        status_message: row.opt_text(6)?,
        approval_id: row.opt_text(7)?,
        ttl_ms: row.int(8)?,
        created_at: time(row.int(9)?),
        updated_at: time(row.int(10)?),
        result: json(row.opt_text(11)?),
        error: json(row.opt_text(12)?),
    })
}

impl ApprovalStore {
    /// Record a new task (status `working`).
    pub fn create_task(&self, task: &StoredTask) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tasks (id, principal, server, tool, params, status, status_message,
                    approval_id, ttl_ms, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'working', ?6, NULL, ?7, ?8, ?8)",
                vals![
                    &task.id,
                    &task.principal,
                    &task.server,
                    &task.tool,
                    task.params.to_string(),
                    task.status_message.clone(),
                    task.ttl_ms,
                    micros(task.created_at),
                ],
            )?;
            Ok(())
        })
    }

    /// The task `id` if `principal` created it.
    pub fn task(&self, id: &str, principal: &str) -> Result<Option<StoredTask>, StoreError> {
        self.read(|db| {
            db.query_one(
                &format!("{TASK_SELECT} WHERE id = ?1 AND principal = ?2"),
                vals![id, principal],
            )?
            .as_ref()
            .map(task_from_row)
            .transpose()
        })
    }

    /// Every task of `principal`, newest first.
    pub fn tasks_of(&self, principal: &str) -> Result<Vec<StoredTask>, StoreError> {
        self.read(|db| {
            db.query(
                &format!("{TASK_SELECT} WHERE principal = ?1 ORDER BY created_at DESC"),
                vals![principal],
            )?
            .iter()
            .map(task_from_row)
            .collect()
        })
    }

    /// A still-running task's message (and the approval it waits for).
    /// `false` if it is already terminal.
    pub fn note_task(
        &self,
        id: &str,
        message: &str,
        approval_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE tasks SET status_message = ?2, approval_id = COALESCE(CAST(?3 AS TEXT), approval_id),
                    updated_at = ?4
                 WHERE id = ?1 AND status = 'working'",
                vals![id, message, approval_id, micros(now)],
            )?;
            Ok(n == 1)
        })
    }

    /// End a running task: `status` with its answer (a result or an error).
    /// `false` if it had already ended (a cancelled task stays cancelled).
    pub fn finish_task(
        &self,
        id: &str,
        status: &str,
        message: &str,
        answer: &Result<Value, Value>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (result, error) = match answer {
            Ok(r) => (Some(r.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE tasks SET status = ?2, status_message = ?3, result = ?4, error = ?5,
                    updated_at = ?6
                 WHERE id = ?1 AND status = 'working'",
                vals![id, status, message, result, error, micros(now)],
            )?;
            Ok(n == 1)
        })
    }
}
