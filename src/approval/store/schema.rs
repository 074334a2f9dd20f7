//! Opening `approvals.db`: connection settings and the versioned schema.
//!
//! # Invariants
//!
//! - WAL journal, so the CLI can read while the firewall writes;
//!   `synchronous = FULL`, so a committed answer or grant consumption survives
//!   a power cut (with `NORMAL` the last commits can vanish, which could hand a
//!   consumed single-use grant back);
//! - every connection waits up to [`BUSY_TIMEOUT`] for the other process's
//!   write lock instead of failing at once;
//! - the schema version lives in `PRAGMA user_version`; migrations run inside
//!   an IMMEDIATE transaction that re-reads the version, so two processes
//!   opening a fresh database at once migrate it exactly once; a database from
//!   a newer release is refused, never modified.
//! - times are stored as integer microseconds since the Unix epoch (UTC), so
//!   SQL compares and orders them directly.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::error::StoreError;

/// How long a statement waits for the other process (firewall or
/// `mcp-firewall approvals`) to release the write lock. Transactions here
/// are a few statements long, so 5 s only runs out if something is stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema this build writes and understands.
pub const SCHEMA_VERSION: i64 = 6;

/// Version 1. `answers.approver_key` is the normalised identity
/// (`identity_key`): the primary key makes "one answer per approver" a
/// database rule, not only a check in code.
const SCHEMA_V1: &str = "
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY NOT NULL,
    digest        TEXT NOT NULL,
    principal     TEXT NOT NULL,
    server        TEXT NOT NULL,
    tool          TEXT NOT NULL,
    request       TEXT NOT NULL,
    reasons       TEXT NOT NULL,
    approvers     TEXT NOT NULL,
    quorum        INTEGER NOT NULL CHECK (quorum >= 1),
    grant_ttl_us  INTEGER NOT NULL CHECK (grant_ttl_us >= 0),
    status        TEXT NOT NULL,
    status_reason TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    decided_at    INTEGER
);
CREATE INDEX approvals_by_digest ON approvals (digest, status);
CREATE INDEX approvals_by_created ON approvals (created_at);

CREATE TABLE answers (
    approval_id  TEXT NOT NULL REFERENCES approvals (id),
    approver_key TEXT NOT NULL,
    approver     TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    reason       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (approval_id, approver_key)
);

CREATE TABLE grants (
    approval_id TEXT PRIMARY KEY NOT NULL REFERENCES approvals (id),
    digest      TEXT NOT NULL,
    approvers   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX grants_by_digest ON grants (digest, used_at);

CREATE TABLE webhook_ids (
    webhook_id TEXT PRIMARY KEY NOT NULL,
    seen_at    INTEGER NOT NULL
);
";

/// Version 2: each answer keeps its proof (signature and what was signed)
/// so the firewall can verify it again before it releases a call; the
/// firewall's approver registry is copied for the CLI's up-front check (the
/// firewall itself only trusts its own in-memory copy). `approver_key` now
/// holds the confusable skeleton of the canonical identity, so look-alike
/// names cannot answer twice.
const SCHEMA_V2: &str = "
ALTER TABLE answers ADD COLUMN proof TEXT;
CREATE TABLE approver_keys (
    approver    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    PRIMARY KEY (approver, fingerprint)
);
";

/// Version 3: tool pins (`pins.rs`): the definition of each upstream tool as
/// first seen or last approved, and the one last seen.
const SCHEMA_V3: &str = "
CREATE TABLE tool_pins (
    upstream         TEXT NOT NULL,
    tool             TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    definition       TEXT NOT NULL,
    first_seen       INTEGER NOT NULL,
    pinned_at        INTEGER NOT NULL,
    pinned_by        TEXT NOT NULL,
    approved         INTEGER NOT NULL DEFAULT 0,
    seen_fingerprint TEXT,
    seen_definition  TEXT,
    seen_at          INTEGER,
    removed_at       INTEGER,
    PRIMARY KEY (upstream, tool)
);
";

/// Version 4: a grant can be revoked before it is used (status `revoked`;
/// who and when), and can release identical calls until `reusable_until`
/// (an approval scoped "identical calls for N minutes"; `uses` counts
/// them). An older build would not know the status nor the reuse, so the
/// version moves and it refuses the database.
const SCHEMA_V4: &str = "
ALTER TABLE grants ADD COLUMN revoked_at INTEGER;
ALTER TABLE grants ADD COLUMN revoked_by TEXT;
ALTER TABLE grants ADD COLUMN reusable_until INTEGER;
ALTER TABLE grants ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
";

/// Version 5: tasks the firewall runs for task-augmented `tools/call`s
/// (held calls answered at once with a task), so a restart loses none.
const SCHEMA_V5: &str = "
CREATE TABLE tasks (
    id             TEXT PRIMARY KEY NOT NULL,
    principal      TEXT NOT NULL,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    params         TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    approval_id    TEXT,
    ttl_ms         INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    result         TEXT,
    error          TEXT
);
CREATE INDEX tasks_by_principal ON tasks (principal, created_at);
";

/// Version 6: the count of a principal's pending requests, taken for every
/// held call (`ApprovalStore::create_within`), reads an index instead of
/// every request ever filed.
const SCHEMA_V6: &str = "
CREATE INDEX approvals_by_principal ON approvals (principal, status, expires_at);
";

/// Opens (creating if needed) and migrates the database at `path`.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    let journal = while_busy(|| configure(&conn)).map_err(open_err)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_owned(),
            journal,
        });
    }
    let found = while_busy(|| migrate(&mut conn)).map_err(open_err)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// A read-only connection to a database [`open_connection`] has opened
/// (and so migrated): in WAL mode it reads while another connection writes.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    Ok(conn)
}

/// Runs `step` again while SQLite reports the database busy, for at most
/// [`BUSY_TIMEOUT`]. Processes opening a new database together (hooks
/// started at once) can meet in rollback mode, each holding a shared lock
/// the other must see go: SQLite answers one of them "busy" at once,
/// without its busy handler, rather than wait for a deadlock.
fn while_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Applies the connection settings; returns the journal mode SQLite actually
/// chose (it keeps the old mode when it cannot switch, e.g. on some network
/// file systems).
fn configure(conn: &Connection) -> rusqlite::Result<String> {
    // First, so that even switching to WAL waits for a concurrent opener.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let journal: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(journal)
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version found, which
/// the caller refuses if it is newer than ours.
fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found == 0 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if found < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if found < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if found < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    if found < 5 {
        tx.execute_batch(SCHEMA_V5)?;
    }
    if found < 6 {
        tx.execute_batch(SCHEMA_V6)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(found)
}
