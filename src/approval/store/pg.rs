//! The store on PostgreSQL: the database several replicas share.
//!
//! The store's API is synchronous (it runs off the async workers, see
//! [`crate::scope::off_worker`]); tokio-postgres is async. Its connections
//! live on a small runtime of their own, on its own thread, and each
//! statement is handed to that runtime and waited for, with a deadline, so
//! this works from any thread: a runtime worker inside `block_in_place`, a
//! current-thread runtime, a plain CLI command.
//!
//! # Invariants
//!
//! - Every write runs in a transaction that first takes one advisory lock
//!   (`pg_advisory_xact_lock`), so writers are serialised across every
//!   replica exactly as SQLite's IMMEDIATE transactions serialise them
//!   across processes: checks and writes see the same state, a grant is
//!   consumed once. Reads run in a read-only snapshot.
//! - A statement that does not finish within [`STATEMENT_TIMEOUT`], or a
//!   connection that breaks, fails the operation (the caller fails closed);
//!   a broken connection is dropped, and the next operation connects anew.
//! - Migrations run at start-up under another advisory lock: several
//!   replicas starting at once migrate once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::StoreError;
use super::sql::{Db, Row, Val};

/// How long one statement (or connecting) may take.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept open between operations.
const IDLE_CONNECTIONS: usize = 8;
/// The advisory lock every write transaction takes (any constant would do;
/// this one reads "mcpfw" in ASCII).
const WRITE_LOCK: i64 = 0x006d_6370_6677;
/// The advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x006d_6370_6678;
/// Where replicas announce an approval's change (`NOTIFY`, on commit), so a
/// call held at one is released as soon as another records the answer;
/// polling remains the fallback.
const CHANNEL: &str = "mcp_firewall_approvals";
/// How long the listener waits before connecting again after losing its
/// connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The schema this build writes and understands: SQLite's five (see
/// `schema.rs` for what each added), then 6: `rate_calls`, the calls
/// replicas count together for `input.rate` (one process counts in memory),
/// and `audit_heads`, each replica's audit chain head as of its last signed
/// checkpoint (a log cut short is detected against it); 7: the index
/// `approvals_by_principal` (SQLite's version 6).
pub const SCHEMA_VERSION: i64 = 7;

/// The tables, in PostgreSQL's words. Integers are `BIGINT` (the store
/// reads every integer as an `i64`); `rowid` keeps insertion order, as
/// SQLite's implicit one does.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    rowid         BIGSERIAL,
    id            TEXT PRIMARY KEY NOT NULL,
    digest        TEXT NOT NULL,
    principal     TEXT NOT NULL,
    server        TEXT NOT NULL,
    tool          TEXT NOT NULL,
    request       TEXT NOT NULL,
    reasons       TEXT NOT NULL,
    approvers     TEXT NOT NULL,
    quorum        BIGINT NOT NULL CHECK (quorum >= 1),
    grant_ttl_us  BIGINT NOT NULL CHECK (grant_ttl_us >= 0),
    status        TEXT NOT NULL,
    status_reason TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    decided_at    BIGINT
);
CREATE INDEX IF NOT EXISTS approvals_by_digest ON approvals (digest, status);
CREATE INDEX IF NOT EXISTS approvals_by_created ON approvals (created_at);
CREATE INDEX IF NOT EXISTS approvals_by_principal ON approvals (principal, status, expires_at);

CREATE TABLE IF NOT EXISTS answers (
    rowid        BIGSERIAL,
    approval_id  TEXT NOT NULL REFERENCES approvals (id),
    approver_key TEXT NOT NULL,
    approver     TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    reason       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    at           BIGINT NOT NULL,
    proof        TEXT,
    PRIMARY KEY (approval_id, approver_key)
);

CREATE TABLE IF NOT EXISTS grants (
    approval_id    TEXT PRIMARY KEY NOT NULL REFERENCES approvals (id),
    digest         TEXT NOT NULL,
    approvers      TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    revoked_at     BIGINT,
    revoked_by     TEXT,
    reusable_until BIGINT,
    uses           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS grants_by_digest ON grants (digest, used_at);

CREATE TABLE IF NOT EXISTS webhook_ids (
    webhook_id TEXT PRIMARY KEY NOT NULL,
    seen_at    BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS approver_keys (
    approver    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    PRIMARY KEY (approver, fingerprint)
);

CREATE TABLE IF NOT EXISTS tool_pins (
    upstream         TEXT NOT NULL,
    tool             TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    definition       TEXT NOT NULL,
    first_seen       BIGINT NOT NULL,
    pinned_at        BIGINT NOT NULL,
    pinned_by        TEXT NOT NULL,
    approved         BIGINT NOT NULL DEFAULT 0,
    seen_fingerprint TEXT,
    seen_definition  TEXT,
    seen_at          BIGINT,
    removed_at       BIGINT,
    PRIMARY KEY (upstream, tool)
);

CREATE TABLE IF NOT EXISTS tasks (
    id             TEXT PRIMARY KEY NOT NULL,
    principal      TEXT NOT NULL,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    params         TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    approval_id    TEXT,
    ttl_ms         BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    result         TEXT,
    error          TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_principal ON tasks (principal, created_at);

CREATE TABLE IF NOT EXISTS rate_calls (
    principal TEXT NOT NULL,
    tool      TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_calls_by_principal ON rate_calls (principal, at);

CREATE TABLE IF NOT EXISTS audit_heads (
    replica TEXT NOT NULL,
    log     TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    head    TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (replica, log)
);
";

fn pg_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// Connections to one PostgreSQL database.
pub struct PgStore {
    config: tokio_postgres::Config,
    /// Where a safe description of the database is shown (no password).
    location: String,
    runtime: tokio::runtime::Handle,
    idle: Mutex<Vec<Connection>>,
    /// Woken by every `NOTIFY` on [`CHANNEL`], from any replica.
    changed: Arc<tokio::sync::Notify>,
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db`, or a socket
    /// directory: `postgres:///db?host=/run/postgresql`) and migrate.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("store URL: {e}")))?;
        // Connecting has a deadline too (the change listener connects
        // outside `block`'s), unless the URL sets its own.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(STATEMENT_TIMEOUT);
        }
        let location = describe(&config);
        let runtime = background_runtime()?;
        let store = PgStore {
            config,
            location,
            runtime,
            idle: Mutex::new(Vec::new()),
            changed: Arc::new(tokio::sync::Notify::new()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Resolves at the next announced change (once [`Self::listen`] runs).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Listen for changes announced by every process on this store, for as
    /// long as the process lives, connecting again when the connection is
    /// lost. Idempotent per store only in effect: call it once.
    pub fn listen(&self) {
        let (config, changed) = (self.config.clone(), self.changed.clone());
        self.runtime.spawn(async move {
            loop {
                match config.connect(NoTls).await {
                    Ok((client, mut connection)) => {
                        let listening = async {
                            client.batch_execute(&format!("LISTEN {CHANNEL}")).await
                        };
                        let messages = futures::stream::poll_fn(|cx| connection.poll_message(cx));
                        futures::pin_mut!(messages);
                        let mut listening = std::pin::pin!(listening);
                        let mut subscribed = false;
                        loop {
                            tokio::select! {
                                done = &mut listening, if !subscribed => {
                                    subscribed = true;
                                    if let Err(e) = done {
                                        tracing::warn!("LISTEN failed: {e}");
                                        break;
                                    }
                                    // Changes made while we were away.
                                    changed.notify_waiters();
                                }
                                message = futures::StreamExt::next(&mut messages) => match message {
                                    Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                        changed.notify_waiters();
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(e)) => {
                                        tracing::warn!("the store's change listener lost its connection: {e}");
                                        break;
                                    }
                                    None => break,
                                },
                            }
                        }
                    }
                    Err(e) => tracing::debug!("the store's change listener cannot connect: {e}"),
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        });
    }

    /// The database, for messages (host, port, name; never a password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Run `f` inside a write transaction holding the write lock.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction("BEGIN ISOLATION LEVEL READ COMMITTED", Some(WRITE_LOCK), f)
    }

    /// Run `f` inside a write transaction holding the lock named `key`
    /// (the same on every replica), not the store-wide one: writes under
    /// different keys do not wait for each other.
    pub fn write_keyed<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.transaction(
            "BEGIN ISOLATION LEVEL READ COMMITTED",
            Some(i64::from_be_bytes(first)),
            f,
        )
    }

    /// Run `f` in a read-only snapshot.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None, f)
    }

    fn transaction<T>(
        &self,
        begin: &str,
        lock: Option<i64>,
        f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut db = PgDb {
            connection: self.checkout()?,
            runtime: self.runtime.clone(),
        };
        let outcome = (|| {
            // One round trip: the transaction and its lock.
            match lock {
                Some(key) => db.batch(&format!("{begin}; SELECT pg_advisory_xact_lock({key})"))?,
                None => db.batch(begin)?,
            }
            let out = f(&mut db)?;
            db.batch("COMMIT")?;
            Ok(out)
        })();
        match &outcome {
            Ok(_) => self.checkin(db.connection),
            Err(_) => {
                // Roll back and keep the connection only if it still works.
                if db.batch("ROLLBACK").is_ok() {
                    self.checkin(db.connection);
                }
            }
        }
        outcome
    }

    fn checkout(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(connection) if !connection.client.is_closed() => Ok(connection),
            _ => Ok(Connection {
                client: self.open_connection()?,
                statements: Arc::new(Mutex::new(HashMap::new())),
            }),
        }
    }

    fn checkin(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS && !connection.client.is_closed() {
            idle.push(connection);
        }
    }

    fn open_connection(&self) -> Result<Arc<Client>, StoreError> {
        let config = self.config.clone();
        let location = self.location.clone();
        let client = block(&self.runtime, async move {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| StoreError::Postgres(format!("cannot connect to {location}: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("PostgreSQL connection ended: {e}");
                }
            });
            Ok(client)
        })?;
        Ok(Arc::new(client))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.transaction("BEGIN", Some(MIGRATION_LOCK), |db| {
            db.execute(
                "CREATE TABLE IF NOT EXISTS mcp_firewall_schema (version BIGINT NOT NULL)",
                &[],
            )?;
            let found = db
                .query_one("SELECT MAX(version) FROM mcp_firewall_schema", &[])?
                .and_then(|row| row.opt_int(0).ok().flatten())
                .unwrap_or(0);
            if found > SCHEMA_VERSION {
                return Err(StoreError::Postgres(format!(
                    "the store has schema version {found}; this mcp-firewall understands up to {SCHEMA_VERSION}"
                )));
            }
            if found < SCHEMA_VERSION {
                for statement in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
                    db.execute(statement, &[])?;
                }
                db.execute("DELETE FROM mcp_firewall_schema", &[])?;
                db.execute(
                    "INSERT INTO mcp_firewall_schema (version) VALUES (?1)",
                    &[Val::Int(SCHEMA_VERSION)],
                )?;
            }
            Ok(())
        })
    }
}

/// `postgres://host:port/dbname` of a store URL, never its password (nor,
/// when it does not parse, anything of it).
pub fn describe_url(url: &str) -> String {
    url.parse::<tokio_postgres::Config>()
        .map(|config| describe(&config))
        .unwrap_or_else(|_| "the PostgreSQL store".into())
}

/// `host:port/dbname` of a config (a socket directory shows as its path).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// The runtime the connections live on: two workers on a thread of their
/// own, for the life of the process.
fn background_runtime() -> Result<tokio::runtime::Handle, StoreError> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("postgres")
        .enable_all()
        .build()
        .map_err(pg_error)?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("postgres-runtime".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(pg_error)?;
    Ok(RUNTIME.get_or_init(|| handle).clone())
}

/// Run `work` on the connections' runtime and wait for it (at most
/// [`STATEMENT_TIMEOUT`]) from whatever thread this is.
fn block<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let outcome = match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Postgres(format!(
                "no answer from PostgreSQL within {STATEMENT_TIMEOUT:?}"
            ))),
        };
        let _ = tx.send(outcome);
    });
    crate::scope::off_worker(|| {
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Postgres(
                "the connection runtime stopped".into(),
            ))
        })
    })
}

/// A pooled connection and the statements it has prepared (by their
/// PostgreSQL text): each is prepared once per connection.
#[derive(Clone)]
struct Connection {
    client: Arc<Client>,
    statements: Arc<Mutex<HashMap<String, tokio_postgres::Statement>>>,
}

/// One connection inside a transaction, as a [`Db`].
struct PgDb {
    connection: Connection,
    runtime: tokio::runtime::Handle,
}

impl PgDb {
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let client = self.connection.client.clone();
        let sql = sql.to_string();
        block(&self.runtime, async move {
            client.batch_execute(&sql).await.map_err(pg_error)
        })
    }

    /// Prepare (PostgreSQL spelling), bind by the types it inferred, run.
    fn run(
        &mut self,
        sql: &str,
        params: &[Val],
        rows: bool,
    ) -> Result<(u64, Vec<Row>), StoreError> {
        let Connection { client, statements } = self.connection.clone();
        let sql = dollar_placeholders(sql);
        let params = params.to_vec();
        block(&self.runtime, async move {
            let cached = statements
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&sql)
                .cloned();
            let statement = match cached {
                Some(statement) => statement,
                None => {
                    let statement = client.prepare(&sql).await.map_err(pg_error)?;
                    statements
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(sql.clone(), statement.clone());
                    statement
                }
            };
            let bound = bind(statement.params(), &params)?;
            let refs: Vec<&(dyn ToSql + Sync)> = bound
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            if !rows {
                let n = client.execute(&statement, &refs).await.map_err(pg_error)?;
                return Ok((n, Vec::new()));
            }
            let found = client.query(&statement, &refs).await.map_err(pg_error)?;
            let rows = found.iter().map(read_row).collect::<Result<Vec<_>, _>>()?;
            Ok((rows.len() as u64, rows))
        })
    }
}

impl Db for PgDb {
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<usize, StoreError> {
        let (n, _) = self.run(sql, params, false)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn announce_change(&mut self) -> Result<(), StoreError> {
        self.batch(&format!("NOTIFY {CHANNEL}"))
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        Ok(self.run(sql, params, true)?.1)
    }
}

/// `?N` -> `$N` (no statement of the store has a `?` inside a literal).
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

type Bound = Box<dyn ToSql + Sync + Send>;

/// Each value as the type PostgreSQL inferred for its parameter.
fn bind(types: &[Type], params: &[Val]) -> Result<Vec<Bound>, StoreError> {
    if types.len() != params.len() {
        return Err(StoreError::Postgres(format!(
            "statement takes {} parameters, given {}",
            types.len(),
            params.len()
        )));
    }
    types
        .iter()
        .zip(params)
        .map(|(ty, val)| -> Result<Bound, StoreError> {
            let mismatch = || StoreError::Postgres(format!("cannot bind {val:?} as {ty}"));
            Ok(match (ty, val) {
                (&Type::INT8, Val::Int(v)) => Box::new(Some(*v)),
                (&Type::INT8, Val::Null) => Box::new(None::<i64>),
                (&Type::INT4, Val::Int(v)) => {
                    Box::new(Some(i32::try_from(*v).map_err(|_| mismatch())?))
                }
                (&Type::INT4, Val::Null) => Box::new(None::<i32>),
                (&Type::BOOL, Val::Int(v)) => Box::new(Some(*v != 0)),
                (&Type::BOOL, Val::Null) => Box::new(None::<bool>),
                (&Type::TEXT | &Type::VARCHAR, Val::Text(v)) => Box::new(Some(v.clone())),
                (&Type::TEXT | &Type::VARCHAR, Val::Null) => Box::new(None::<String>),
                _ => return Err(mismatch()),
            })
        })
        .collect()
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int)),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Val::Int(i64::from(v)))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Val::Int(i64::from(v)))),
            Type::TEXT | Type::VARCHAR => row
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Val::Text)),
            Type::VOID => Ok(None),
            ref other => {
                return Err(StoreError::Corrupt(format!(
                    "column {i} has type {other}, which the store never writes"
                )));
            }
        }
        .map_err(pg_error)?;
        values.push(value.unwrap_or(Val::Null));
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::dollar_placeholders;

    #[test]
    fn placeholders_become_postgres_ones() {
        assert_eq!(
            dollar_placeholders("SELECT ?1, ?12 WHERE x = '?' AND CAST(?2 AS TEXT)"),
            "SELECT $1, $12 WHERE x = '?' AND CAST($2 AS TEXT)"
        );
    }
}
