//! Durable approval state: requests, answers, grants and seen webhook ids in
//! one SQLite file, `approvals.db`, inside the firewall's data directory.
//!
//! # Job
//!
//! The firewall records every held call here and waits for its status to
//! change; the approval endpoint, the webhook-response reader and the
//! `mcp-firewall approvals` CLI (a separate process on the same file) record
//! answers; the proxy consumes the resulting grant when the identical call
//! comes back. A restart loses nothing.
//!
//! # Invariants
//!
//! - Plain synchronous code, run off the async workers: every transaction
//!   goes through [`crate::scope::off_worker`], so a busy database (another
//!   process holding the write lock for up to [`BUSY_TIMEOUT`]) stalls only
//!   the call that needs it, never the other sessions on the runtime.
//! - One writing connection behind a mutex; reads take a read-only
//!   connection of their own from a small pool, so in WAL mode a read never
//!   queues behind a write waiting for the lock (a call's pin lookup behind
//!   a held call's grant check). A store is `Send + Sync`.
//! - Every state change is one IMMEDIATE transaction: the write lock is taken
//!   before the first read, so checks and writes see the same state even with
//!   another process writing (a deferred transaction could read, then fail
//!   to upgrade to a write with `SQLITE_BUSY` despite the busy timeout).
//! - Time is always the caller's `now`; nothing here reads the clock.
//! - Status moves only forward: `pending -> approved -> used`, or
//!   `pending -> denied | expired | withdrawn`. Only `pending` takes answers.
//! - A grant is single use, bound to its approval's digest, and expires; see
//!   [`Grant`].

mod answer;
mod error;
mod grant;
mod pg;
pub use pg::describe_url;
pub mod pins;
mod rows;
mod schema;
pub(crate) mod sql;
pub mod tasks;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};

pub use error::{AnswerRejection, StoreError};
pub use grant::Grant;
pub use schema::{BUSY_TIMEOUT, SCHEMA_VERSION};

use crate::approval::model::{AnswerOutcome, ApprovalRecord, NewAnswer, NewApproval, Status};
use crate::approval::signing::TIMESTAMP_TOLERANCE_SECS;
use rows::{RECORD_SELECT, load_record, micros, records, to_json};
use sql::{Db, Lite, vals};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "approvals.db";

/// How long a webhook id is remembered. A signed request is accepted only
/// while its timestamp is within the tolerance of our clock, and that
/// timestamp may be up to one tolerance ahead of the moment we first saw it;
/// so a replay can arrive at most 2 × tolerance after the first sighting.
/// Forgetting ids older than that cannot let a replay through.
const WEBHOOK_ID_RETENTION_US: i64 = 2 * TIMESTAMP_TOLERANCE_SECS * 1_000_000;

/// A replica's audit chain head as of a signed checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditHead {
    /// The log's path on the replica.
    pub log: String,
    pub seq: u64,
    pub head: String,
    pub at: DateTime<Utc>,
}

/// Durable approval state; see the module docs.
pub struct ApprovalStore {
    backend: Backend,
}

enum Backend {
    /// `approvals.db` in the data directory: one machine.
    Sqlite(SqliteFile),
    /// A database several replicas share (`[store] url`).
    Postgres(pg::PgStore),
}

struct SqliteFile {
    conn: Mutex<Connection>,
    /// Idle read-only connections (at most [`IDLE_READERS`]).
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

/// Read connections kept open between reads.
const IDLE_READERS: usize = 4;

/// How many unexpired requests of a principal are pending (index
/// `approvals_by_principal`).
const PENDING_OF_PRINCIPAL: &str = "SELECT COUNT(*) FROM approvals
     WHERE principal = ?1 AND status = ?2 AND expires_at > ?3";

impl ApprovalStore {
    /// Opens `data_dir/approvals.db`, creating the directory and the database
    /// as needed and migrating the schema.
    pub fn open(data_dir: &Path) -> Result<ApprovalStore, StoreError> {
        let path = data_dir.join(DB_FILE_NAME);
        // The database (requests, arguments, answers) is the user's alone:
        // created 0600 in a directory created 0700; SQLite gives its
        // journal files the database's mode.
        crate::audit::writer::create_private(&path, true).map_err(|source| {
            StoreError::CreateDir {
                path: data_dir.to_owned(),
                source,
            }
        })?;
        let conn = schema::open_connection(&path)?;
        Ok(ApprovalStore {
            backend: Backend::Sqlite(SqliteFile {
                conn: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                path,
            }),
        })
    }

    /// Connects to the PostgreSQL database `url` names and migrates it
    /// (see `pg.rs`).
    pub fn connect(url: &str) -> Result<ApprovalStore, StoreError> {
        Ok(ApprovalStore {
            backend: Backend::Postgres(pg::PgStore::connect(url)?),
        })
    }

    /// Where the store is: the SQLite file, or the PostgreSQL database
    /// (never its password).
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(file) => file.path.display().to_string(),
            Backend::Postgres(pg) => pg.location().to_string(),
        }
    }

    /// Records a new pending approval request and returns it as stored.
    pub fn create(&self, new: &NewApproval) -> Result<ApprovalRecord, StoreError> {
        validate(new)?;
        self.write(|tx| {
            insert_approval(tx, new)?;
            load_record(tx, &new.id)?.ok_or_else(|| StoreError::NotFound(new.id.clone()))
        })
    }

    /// [`ApprovalStore::create`], unless the requester already has `limit`
    /// pending requests that have not expired: then nothing is recorded and
    /// the count is the error. Counted in the insert's own transaction.
    pub fn create_within(
        &self,
        new: &NewApproval,
        limit: usize,
    ) -> Result<ApprovalRecord, StoreError> {
        validate(new)?;
        self.write(|tx| {
            let pending = tx
                .query(
                    PENDING_OF_PRINCIPAL,
                    vals![
                        new.principal.as_str(),
                        Status::Pending.as_str(),
                        micros(new.created_at)
                    ],
                )?
                .first()
                .map_or(Ok(0), |row| row.int(0))?;
            let pending = usize::try_from(pending).unwrap_or(usize::MAX);
            if pending >= limit {
                return Err(StoreError::TooManyPending {
                    principal: new.principal.clone(),
                    pending,
                    limit,
                });
            }
            insert_approval(tx, new)?;
            load_record(tx, &new.id)?.ok_or_else(|| StoreError::NotFound(new.id.clone()))
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read(|db| load_record(db, id))
    }

    /// All approvals, or those with `status`, newest first.
    pub fn list(&self, status: Option<Status>) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.read(|db| {
            let sql = format!(
                "{RECORD_SELECT} WHERE CAST(?1 AS TEXT) IS NULL OR a.status = ?1
                 ORDER BY a.created_at DESC, a.rowid DESC"
            );
            records(db, &sql, vals![status.map(Status::as_str)])
        })
    }

    /// The pending request for this digest that has not expired at `now`
    /// (the newest, if several): a repeated call while pending reuses it.
    pub fn pending_for_digest(
        &self,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read(|db| {
            let sql = format!(
                "{RECORD_SELECT} WHERE a.digest = ?1 AND a.status = ?2 AND a.expires_at > ?3
                 ORDER BY a.created_at DESC, a.rowid DESC LIMIT 1"
            );
            Ok(records(
                db,
                &sql,
                vals![digest, Status::Pending.as_str(), micros(now)],
            )?
            .pop())
        })
    }

    /// Records one approver's answer; see `answer.rs` for the rules. A deny
    /// from an eligible approver decides `Denied`; `quorum` distinct approvals
    /// decide `Approved` and create a grant valid until `now + grant_ttl`.
    pub fn answer(
        &self,
        id: &str,
        answer: &NewAnswer,
        now: DateTime<Utc>,
    ) -> Result<AnswerOutcome, StoreError> {
        self.write(|tx| {
            let outcome = answer::record(tx, id, answer, now)?;
            tx.announce_change()?;
            Ok(outcome)
        })
    }

    /// Resolves when another process on a shared store announces an
    /// approval's change (see `pg.rs`); never on SQLite, whose readers poll.
    pub async fn changed_elsewhere(&self) {
        match &self.backend {
            Backend::Postgres(pg) => pg.changed().await,
            Backend::Sqlite(_) => std::future::pending().await,
        }
    }

    /// Start listening for changes announced by other processes (a firewall
    /// on a shared store; the CLI does not need to).
    pub fn listen_for_changes(&self) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.listen();
        }
    }

    /// Atomically takes the unused, unexpired grant for this digest. Single
    /// use: a second call gets `None`. The approval becomes `Used`.
    pub fn consume_grant(
        &self,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Grant>, StoreError> {
        self.write(|tx| grant::consume(tx, digest, now))
    }

    /// Approved (grant not yet used) -> Revoked, by `by`. False if there
    /// was no unused grant.
    pub fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE grants SET revoked_at = ?1, revoked_by = ?2
                 WHERE approval_id = ?3 AND used_at IS NULL AND revoked_at IS NULL",
                vals![now, by, id],
            )?;
            if changed == 1 {
                tx.execute(
                    "UPDATE approvals SET status = ?1, status_reason = ?2 WHERE id = ?3 AND status = ?4",
                    vals![
                        Status::Revoked.as_str(),
                        format!("revoked by {by}: {}", reason.trim()),
                        id,
                        Status::Approved.as_str()
                    ],
                )?;
            }
            Ok(changed == 1)
        })
    }

    /// Pending -> Withdrawn (the client cancelled). False if it was not pending.
    pub fn withdraw(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.close_pending(id, Status::Withdrawn, reason, now, false)
    }

    /// Pending and past `expires_at` (`now >= expires_at`) -> Expired. False
    /// otherwise.
    pub fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.close_pending(
            id,
            Status::Expired,
            "no decision before the request expired",
            now,
            true,
        )
    }

    /// Pending -> Denied with a system reason (e.g. the webhook could not be
    /// reached). False if it was not pending.
    pub fn fail(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.close_pending(id, Status::Denied, reason, now, false)
    }

    /// Replay protection for the approval endpoint: true the first time a
    /// webhook id is seen, false after. Ids seen more than
    /// 2 × [`TIMESTAMP_TOLERANCE_SECS`] ago are pruned (see
    /// `WEBHOOK_ID_RETENTION_US` for why that is safe).
    pub fn remember_webhook_id(
        &self,
        webhook_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        self.write(|tx| {
            tx.execute(
                "DELETE FROM webhook_ids WHERE seen_at < ?1",
                vals![now.saturating_sub(WEBHOOK_ID_RETENTION_US)],
            )?;
            let inserted = tx.execute(
                "INSERT INTO webhook_ids (webhook_id, seen_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                vals![webhook_id, now],
            )?;
            Ok(inserted == 1)
        })
    }

    /// Moves a pending approval to a final `status`; with `only_if_expired`,
    /// only once `now >= expires_at`.
    /// Replace the copy of the firewall's approver registry (name,
    /// fingerprint, public key line) that the CLI checks answers against.
    pub fn replace_approver_keys(
        &self,
        keys: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM approver_keys", &[])?;
            for (name, fingerprint, line) in keys {
                tx.execute(
                    "INSERT INTO approver_keys (approver, fingerprint, public_key) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    vals![name, fingerprint, line],
                )?;
            }
            Ok(())
        })
    }

    /// The registry copy as `allowed_signers` text.
    pub fn approver_keys(&self) -> Result<String, StoreError> {
        self.read(|db| {
            let lines = db
                .query("SELECT approver, public_key FROM approver_keys", &[])?
                .iter()
                .map(|row| Ok(format!("\"{}\" {}", row.text(0)?, row.text(1)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(lines.join("\n"))
        })
    }

    fn close_pending(
        &self,
        id: &str,
        status: Status,
        reason: &str,
        now: DateTime<Utc>,
        only_if_expired: bool,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE approvals SET status = ?1, status_reason = ?2, decided_at = ?3
                 WHERE id = ?4 AND status = ?5 AND (?6 = 0 OR expires_at <= ?3)",
                vals![
                    status.as_str(),
                    reason,
                    now,
                    id,
                    Status::Pending.as_str(),
                    only_if_expired
                ],
            )?;
            Ok(changed == 1)
        })
    }

    /// Whether replicas share this store (PostgreSQL): then rate counts
    /// live here too ([`Self::observe_rate`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Counts of `principal`'s earlier calls (to `tool` in the last minute
    /// and hour, to anything in the last minute), then this call counted:
    /// `input.rate` across every replica of a shared store, exact under
    /// concurrent calls (one lock per principal). A store of one process
    /// keeps no counts (the process counts in memory).
    pub fn observe_rate(
        &self,
        principal: &str,
        tool: &str,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, StoreError> {
        let Backend::Postgres(pg) = &self.backend else {
            return Err(StoreError::Postgres(
                "this store keeps no rate counts".into(),
            ));
        };
        let now = micros(now);
        let minute = now - 60_000_000;
        let hour = now - 3_600_000_000;
        crate::scope::off_worker(|| {
            pg.write_keyed(&format!("rate\n{principal}"), |tx| {
                // One statement: prune, count the earlier calls (the
                // snapshot does not see this statement's own insert), count
                // this one.
                let row = tx.query_one(
                    "WITH pruned AS (DELETE FROM rate_calls WHERE principal = ?1 AND at <= ?4),
                          counted AS (INSERT INTO rate_calls (principal, tool, at) VALUES (?1, ?2, ?5))
                     SELECT COUNT(*) FILTER (WHERE tool = ?2 AND at > ?3),
                            COUNT(*) FILTER (WHERE tool = ?2),
                            COUNT(*) FILTER (WHERE at > ?3)
                     FROM rate_calls WHERE principal = ?1 AND at > ?4",
                    vals![principal, tool, minute, hour, now],
                )?;
                let count = |i| row.as_ref().map_or(Ok(0), |r| r.int(i));
                Ok(serde_json::json!({
                    "principal_tool_last_minute": count(0)?,
                    "principal_tool_last_hour": count(1)?,
                    "principal_last_minute": count(2)?,
                }))
            })
        })
    }

    /// Record the head of `replica`'s audit chain in `log` as of a signed
    /// checkpoint (never moving it back). Only a shared store keeps heads.
    pub fn record_audit_head(
        &self,
        replica: &str,
        log: &str,
        seq: u64,
        head: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Backend::Postgres(pg) = &self.backend else {
            return Ok(());
        };
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        crate::scope::off_worker(|| {
            pg.write_keyed(&format!("audit\n{replica}"), |tx| {
                tx.execute(
                    "INSERT INTO audit_heads (replica, log, seq, head, at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (replica, log) DO UPDATE SET seq = ?3, head = ?4, at = ?5
                     WHERE audit_heads.seq < ?3",
                    vals![replica, log, seq, head, micros(now)],
                )?;
                Ok(())
            })
        })
    }

    /// The chain heads recorded for `replica`, by log.
    pub fn audit_heads(&self, replica: &str) -> Result<Vec<AuditHead>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT log, seq, head, at FROM audit_heads WHERE replica = ?1 ORDER BY log",
                vals![replica],
            )?
            .iter()
            .map(|r| {
                Ok(AuditHead {
                    log: r.text(0)?,
                    seq: u64::try_from(r.int(1)?).unwrap_or(0),
                    head: r.text(2)?,
                    at: r.time(3)?,
                })
            })
            .collect()
        })
    }

    /// Runs `f` in a transaction that serialises it with every other
    /// writer (of this process, and of the others on the same store);
    /// commits only if `f` succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(file) => file.write(f),
            Backend::Postgres(pg) => crate::scope::off_worker(|| pg.write(f)),
        }
    }

    /// Runs `f` in a read transaction, so multi-query reads see one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(file) => file.read(f),
            Backend::Postgres(pg) => crate::scope::off_worker(|| pg.read(f)),
        }
    }
}

impl SqliteFile {
    fn idle_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection. A panic while it was held cannot leave a transaction
    /// half-applied (dropping a `Transaction` rolls it back), so a poisoned
    /// lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An IMMEDIATE transaction: the write lock is taken before the first
    /// read.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        crate::scope::off_worker(|| {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&mut Lite(&tx))?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        crate::scope::off_worker(|| {
            let idle = self.idle_readers().pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => schema::open_reader(&self.path)?,
            };
            let out = (|| {
                let tx = conn.transaction()?;
                let out = f(&mut Lite(&tx))?;
                tx.commit()?;
                Ok(out)
            })();
            let mut idle = self.idle_readers();
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            out
        })
    }
}

/// Refuses requests that could never be answered correctly.
fn validate(new: &NewApproval) -> Result<(), StoreError> {
    let invalid = |why: &str| {
        Err(StoreError::InvalidApproval(format!(
            "{why} (approval {:?})",
            new.id
        )))
    };
    if new.id.trim().is_empty() {
        return invalid("empty id");
    }
    if new.digest.trim().is_empty() {
        return invalid("empty digest");
    }
    if new.principal.trim().is_empty() {
        return invalid("empty principal");
    }
    if new.quorum < 1 {
        return invalid("quorum must be at least 1");
    }
    if new.expires_at <= new.created_at {
        return invalid("expires_at must be after created_at");
    }
    if new.grant_ttl <= chrono::Duration::zero() {
        return invalid("grant_ttl must be positive");
    }
    if !new.approvers.is_empty() && eligible_approvers(new) < new.quorum as usize {
        return invalid("quorum is larger than the number of approvers other than the principal");
    }
    Ok(())
}

/// Distinct listed approvers who are not the principal.
fn eligible_approvers(new: &NewApproval) -> usize {
    let principal = crate::identity::key(&new.principal).unwrap_or_default();
    let keys: HashSet<String> = new
        .approvers
        .iter()
        .filter_map(|a| crate::identity::key(a).ok())
        .collect();
    keys.into_iter().filter(|k| *k != principal).count()
}

fn insert_approval(tx: &mut dyn Db, new: &NewApproval) -> Result<(), StoreError> {
    let ttl_us = new.grant_ttl.num_microseconds().unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO approvals (id, digest, principal, server, tool, request, reasons, approvers,
                                quorum, grant_ttl_us, status, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        vals![
            &new.id,
            &new.digest,
            &new.principal,
            &new.server,
            &new.tool,
            to_json(&new.request),
            to_json(&new.reasons),
            to_json(&new.approvers),
            new.quorum,
            ttl_us,
            Status::Pending.as_str(),
            micros(new.created_at),
            micros(new.expires_at),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
