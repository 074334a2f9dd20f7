//! The audit log writer: appends hash-chained records to a JSON Lines file.
//!
//! Job: turn each event into one sealed record (see the `record` module), write it
//! as a single line, and only then report success, so the proxy can refuse to
//! forward a call whose decision is not on disk.
//!
//! Invariants:
//! - several writers, one chain: every record is written under an exclusive
//!   advisory lock (`flock`) on the file, taken for that one write. A writer
//!   that finds the file longer than it left it (another process appended:
//!   a running firewall, a Claude Code hook, a CLI answer) re-reads the last
//!   record and chains onto it. The lock is waited for at most
//!   [`LOCK_WAIT`]; a writer that cannot get it fails the append (and so
//!   refuses the call), never writes unlocked;
//! - a reopened log continues the chain from its last record (`seq` + 1,
//!   `prev` = its `hash`); a log whose last record is damaged is refused, never
//!   silently restarted;
//! - the in-memory chain head (`next_seq`, `last_hash`) advances only after the
//!   whole line was written (and synced in [`FsyncMode::Always`]);
//! - a failed write is rolled back by truncating to the length before it; if
//!   even that fails, every later append fails too (the file is in an unknown
//!   state and a restart plus `audit verify` is needed);
//! - in [`FsyncMode::Always`], a record counts only once it is durable
//!   (`append` returns then; `append_pending` hands back a [`Pending`] to
//!   wait or await), but records are synced in groups by one thread
//!   ([`super::durability`]): 32 concurrent calls cost a few `fsync`s, not
//!   32, and a call awaiting its record does not hold a thread. A failed
//!   `fsync` fails every record it was to cover and every later append:
//!   records already chained on them may not be on disk.
//!
//! - with a signing key ([`super::checkpoint`]), a signed checkpoint of the
//!   chain's head is appended to the checkpoint file whenever a record's
//!   `seq` is a multiple of `every_records` (and on [`AuditLog::checkpoint`]:
//!   on a timer, at shutdown), under the same lock and after an `fsync` of
//!   the records it covers; a checkpoint that cannot be written fails the
//!   append like a record that cannot;
//! - the log (and its checkpoint file) is created `0600`, and directories
//!   created for it `0700`: records hold tool arguments.
//!
//! Masking secrets is the caller's job ([`super::mask()`]) before `append`: the
//! writer records exactly what it is given.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use super::canonical::Canonical;
use super::checkpoint::{Checkpoint, CheckpointError, CheckpointSigner};
use super::durability::{Pending, Syncer};
use super::error::AuditError;
use super::record::{Fields, GENESIS_HASH, MAX_RECORD_BYTES, RESERVED_FIELDS, check_line, seal};

/// The field naming the replica that wrote a record (`with_replica`).
const REPLICA: &str = "replica";

/// How far back `open` reads per step while looking for the start of the last
/// record. Records are usually well under this, so one read is typical.
const TAIL_CHUNK_BYTES: usize = 64 * 1024;

/// The longest an append waits for another writer's lock. Writers hold it
/// for one `write(2)`, so only a stuck or hostile process holds it longer;
/// then the append fails closed rather than wait without a deadline.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// When a record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// `fsync` after every record: survives power loss, costs a disk flush per call.
    Always,
    /// One `write(2)` per record, no `fsync`: survives a crash of this process
    /// (the kernel has the bytes), not a power loss or kernel crash.
    Never,
}

/// What `append` hands back: where the record sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReceipt {
    pub seq: u64,
    pub hash: String,
}

/// An open, append-only, hash-chained audit log. Cheap to share behind an
/// `Arc`; `append` takes `&self` and serializes writers with a short lock.
pub struct AuditLog {
    /// Signs checkpoints of the chain, when configured.
    checkpoints: Option<CheckpointSigner>,
    /// Which replica writes this chain: a `replica` field in every record
    /// (replicas sharing a store; see [`AuditLog::with_replica`]).
    replica: Option<String>,
    /// Told each checkpoint's `(seq, head)` once it is signed: replicas
    /// record their chain heads in the shared store.
    on_checkpoint: Option<HeadRecorder>,
    path: PathBuf,
    fsync: FsyncMode,
    // A std Mutex, not tokio's: the critical section is one small write and
    // never awaits.
    inner: Mutex<Inner>,
    /// Group commit ([`FsyncMode::Always`]): the `fsync` thread's state,
    /// and the thread (stopped and joined on drop).
    syncer: Option<Arc<Syncer>>,
    syncer_thread: Option<std::thread::JoinHandle<()>>,
    /// The same open file, whose advisory lock (shared with `inner.file`)
    /// serializes the writers, and which checkpoints sync.
    sync_file: File,
}

/// What is told each signed checkpoint's `(seq, head)`.
pub type HeadRecorder = Box<dyn Fn(u64, &str) + Send + Sync>;

#[derive(Debug)]
struct Inner {
    file: File,
    next_seq: u64,
    last_hash: String,
    /// File length after the last good record: what a failed write is rolled back to.
    len: u64,
    /// Set when a failed write could not be rolled back.
    broken: bool,
}

impl AuditLog {
    /// Open (creating it and its parent directories if needed) the log at
    /// `path` and continue its chain.
    pub fn open(path: &Path, fsync: FsyncMode) -> Result<AuditLog, AuditError> {
        let write_failed = |source| AuditError::WriteFailed {
            path: path.to_path_buf(),
            source,
        };
        let mut file = create_private(path, true).map_err(write_failed)?;
        let sync_file = file.try_clone().map_err(write_failed)?;
        let (len, next_seq, last_hash) = {
            let _locked = lock_within(&sync_file, LOCK_WAIT).map_err(|e| lock_failed(path, e))?;
            chain_head(&mut file, path)?
        };
        let inner = Inner {
            file,
            next_seq,
            last_hash,
            len,
            broken: false,
        };
        let (syncer, syncer_thread) = match fsync {
            FsyncMode::Always => {
                let file = sync_file.try_clone().map_err(write_failed)?;
                let (syncer, thread) =
                    Syncer::start(file, path.to_path_buf(), next_seq - 1).map_err(write_failed)?;
                (Some(syncer), Some(thread))
            }
            FsyncMode::Never => (None, None),
        };
        Ok(AuditLog {
            checkpoints: None,
            replica: None,
            on_checkpoint: None,
            path: path.to_path_buf(),
            fsync,
            inner: Mutex::new(inner),
            syncer,
            syncer_thread,
            sync_file,
        })
    }

    /// Seal `body` as the next record of kind `event` and write it.
    ///
    /// `body` must be a JSON object without the reserved fields (`seq`, `ts`,
    /// `event`, `prev`, `hash`). Returns only once the line is written (and
    /// synced in [`FsyncMode::Always`]); any error means the record is not in
    /// the log and the caller must fail closed.
    pub fn append(&self, event: &str, body: Value) -> Result<AuditReceipt, AuditError> {
        self.append_pending(event, body)?.wait()
    }

    /// [`Self::append`], returning once the line is written: the record
    /// counts once the [`Pending`] says it is durable (at once without
    /// `fsync`), which a task can await without holding its thread.
    pub fn append_pending(&self, event: &str, body: Value) -> Result<Pending, AuditError> {
        self.append_pending_with(event, body, Vec::new())
    }

    /// [`Self::append_pending`], with fields of the record already in
    /// canonical form beside `body`'s (a decision's input, whose session
    /// history was rendered once). Their keys follow `body`'s rules and
    /// must not also be in `body`.
    pub fn append_pending_with(
        &self,
        event: &str,
        body: Value,
        rendered: Vec<(String, Canonical)>,
    ) -> Result<Pending, AuditError> {
        let started = std::time::Instant::now();
        let written = self.write_record(event, body, rendered);
        if written.is_err() {
            crate::metrics::metrics().audit_write_failures.inc();
        }
        let receipt = written?;
        Ok(Pending::new(receipt, self.syncer.clone(), started))
    }

    fn write_record(
        &self,
        event: &str,
        body: Value,
        rendered: Vec<(String, Canonical)>,
    ) -> Result<AuditReceipt, AuditError> {
        let body = match body {
            Value::Object(map) => map,
            other => {
                return Err(AuditError::InvalidBody(format!(
                    "body must be a JSON object, got {}",
                    json_kind(&other)
                )));
            }
        };
        if let Some(field) = RESERVED_FIELDS.iter().find(|f| body.contains_key(**f)) {
            return Err(AuditError::InvalidBody(format!(
                "body sets reserved field `{field}`"
            )));
        }
        if let Some((field, _)) = rendered.iter().find(|(k, _)| {
            RESERVED_FIELDS.contains(&k.as_str()) || k == REPLICA || body.contains_key(k)
        }) {
            return Err(AuditError::InvalidBody(format!(
                "rendered field `{field}` is reserved or set twice"
            )));
        }
        if event.is_empty() {
            return Err(AuditError::InvalidBody("event name is empty".into()));
        }
        let mut body = body;
        if let Some(replica) = &self.replica {
            body.insert(REPLICA.into(), Value::String(replica.clone()));
        }
        let fields = Fields::render(body, rendered);
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| self.write_failed(io::Error::other("writer lock poisoned by a panic")))?;
        if inner.broken {
            return Err(self.write_failed(io::Error::other(
                "an earlier write failed and could not be rolled back; \
                 restart and run `mcp-firewall audit verify`",
            )));
        }
        if let Some(failed) = self.syncer.as_ref().and_then(|s| s.failure()) {
            return Err(failed);
        }
        // `sync_file` shares the open file (and so its lock) with `inner.file`.
        let locked =
            lock_within(&self.sync_file, LOCK_WAIT).map_err(|e| lock_failed(&self.path, e))?;
        inner.catch_up(&self.path)?;
        // The timestamp is taken under the lock so `ts` follows `seq` order
        // (as far as the wall clock itself does).
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let (hash, mut line) = seal(&fields, inner.next_seq, &ts, event, &inner.last_hash);
        if line.len() > MAX_RECORD_BYTES {
            return Err(AuditError::InvalidBody(format!(
                "record is {} bytes, more than the {MAX_RECORD_BYTES}-byte limit",
                line.len()
            )));
        }
        line.push('\n');
        if let Err(source) = inner.write_line(line.as_bytes()) {
            inner.roll_back();
            return Err(self.write_failed(source));
        }
        let seq = inner.next_seq;
        if let Some(signer) = self.checkpoints.as_ref().filter(|c| c.due(seq)) {
            self.sign_locked(signer, seq, &hash)?;
        }
        drop(locked);
        inner.next_seq += 1;
        inner.last_hash.clone_from(&hash);
        inner.len += line.len() as u64;
        drop(inner);
        if let Some(syncer) = &self.syncer {
            syncer.wrote(seq);
        }
        Ok(AuditReceipt { seq, hash })
    }

    /// Sign checkpoints of the chain with `signer` from now on.
    pub fn with_checkpoints(mut self, signer: CheckpointSigner) -> AuditLog {
        self.checkpoints = Some(signer);
        self
    }

    /// Every record names `replica` (one of several firewalls sharing a
    /// store, each with its own chain).
    pub fn with_replica(mut self, replica: String) -> AuditLog {
        self.replica = Some(replica);
        self
    }

    /// Call `recorder` with each checkpoint's `(seq, head)` once signed.
    pub fn on_checkpoint(&mut self, recorder: HeadRecorder) {
        self.on_checkpoint = Some(recorder);
    }

    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// With checkpoints configured: sign the chain's current head into the
    /// checkpoint file, unless the last checkpoint already covers it (a
    /// timer calls this, and shutdown). `Ok(None)`: nothing new to sign, or
    /// no checkpoints configured.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let Some(signer) = &self.checkpoints else {
            return Ok(None);
        };
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| self.write_failed(io::Error::other("writer lock poisoned by a panic")))?;
        let _locked =
            lock_within(&self.sync_file, LOCK_WAIT).map_err(|e| lock_failed(&self.path, e))?;
        inner.catch_up(&self.path)?;
        let seq = inner.next_seq - 1;
        if seq == 0 {
            return Ok(None);
        }
        self.sign_locked(signer, seq, &inner.last_hash)
    }

    /// [`Self::checkpoint`], only if the last one is older than `age`: what
    /// a short-lived writer (a hook process) does as it exits.
    pub fn checkpoint_if_older(&self, age: std::time::Duration) -> Result<(), AuditError> {
        let stale = match &self.checkpoints {
            Some(signer) => signer.stale(age).map_err(|e| self.checkpoint_failed(e))?,
            None => false,
        };
        if stale {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// How often checkpoints are due on a timer, if configured.
    pub fn checkpoint_every(&self) -> Option<std::time::Duration> {
        self.checkpoints.as_ref().map(|c| c.settings().every)
    }

    /// Under the log's lock: make the records up to `seq` durable, then sign
    /// `(seq, head)` into the checkpoint file.
    fn sign_locked(
        &self,
        signer: &CheckpointSigner,
        seq: u64,
        head: &str,
    ) -> Result<Option<Checkpoint>, AuditError> {
        self.sync_file
            .sync_data()
            .map_err(|e| self.write_failed(e))?;
        let signed = signer
            .write(seq, head)
            .map_err(|e| self.checkpoint_failed(e))?;
        if let (Some(recorder), Some(checkpoint)) = (&self.on_checkpoint, &signed) {
            recorder(checkpoint.seq, &checkpoint.head);
        }
        Ok(signed)
    }

    fn checkpoint_failed(&self, e: CheckpointError) -> AuditError {
        self.write_failed(io::Error::other(e.to_string()))
    }

    /// Start no `fsync` while the guard lives (tests: queue writers).
    #[cfg(test)]
    pub(crate) fn pause_syncs(&self) -> super::durability::Paused<'_> {
        self.syncer.as_ref().expect("fsync always").pause()
    }

    /// How long a record nobody waits for may stay unsynced (tests).
    #[cfg(test)]
    pub(crate) fn set_unawaited_within(&self, within: std::time::Duration) {
        self.syncer
            .as_ref()
            .expect("fsync always")
            .set_unawaited_within(within);
    }

    /// `seq` of the last record written, durable or not (fsync always).
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.syncer.as_ref().map_or(0, |s| s.written())
    }

    /// `fsync` calls made so far (group commit makes far fewer than records).
    pub fn syncs(&self) -> u64 {
        self.syncer.as_ref().map_or(0, |s| s.syncs())
    }

    /// The file this log writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_failed(&self, source: io::Error) -> AuditError {
        AuditError::WriteFailed {
            path: self.path.clone(),
            source,
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("fsync", &self.fsync)
            .field(
                "checkpoints",
                &self.checkpoints.as_ref().map(|c| c.settings()),
            )
            .finish_non_exhaustive()
    }
}

/// Open `path` for appending (and reading, with `read`), creating it `0600`
/// and any missing parent directories `0700`: what the audit log, its
/// checkpoints and the approval store hold is not for other users.
pub fn create_private(path: &Path, read: bool) -> io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    OpenOptions::new()
        .read(read)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Some(syncer) = &self.syncer {
            // The thread syncs what is written before it stops.
            syncer.close();
            if let Some(thread) = self.syncer_thread.take() {
                let _ = thread.join();
            }
            tracing::info!(
                last_seq = syncer.written(),
                fsyncs = syncer.syncs(),
                "audit log closed (group commit: fsyncs made for the records of this run)"
            );
        }
    }
}

impl Inner {
    /// Under the file lock: if another writer appended since our last
    /// record, continue from its last record instead.
    fn catch_up(&mut self, path: &Path) -> Result<(), AuditError> {
        if file_len(&self.file, path)? == self.len {
            return Ok(());
        }
        let (len, next_seq, last_hash) = chain_head(&mut self.file, path)?;
        self.len = len;
        self.next_seq = next_seq;
        self.last_hash = last_hash;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        // One write_all on an O_APPEND file: the record lands contiguously at
        // the end, and a crash leaves at most one torn last line, which
        // `open` and `verify` both detect.
        self.file.write_all(line)?;
        self.file.flush()
    }

    /// Drop whatever part of a failed record reached the file, so the next
    /// record does not land after a torn line.
    fn roll_back(&mut self) {
        if self.file.set_len(self.len).is_err() {
            self.broken = true;
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The file's exclusive lock, released when dropped (on every path out).
struct Locked<'a>(&'a File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Take the file's exclusive lock, retrying for at most `wait`.
fn lock_within(file: &File, wait: std::time::Duration) -> io::Result<Locked<'_>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Locked(file)),
            Err(TryLockError::Error(e)) => return Err(e),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "another writer held the log's lock too long",
                ));
            }
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

fn lock_failed(path: &Path, e: io::Error) -> AuditError {
    if e.kind() == io::ErrorKind::TimedOut {
        return AuditError::InUse {
            path: path.to_path_buf(),
        };
    }
    AuditError::WriteFailed {
        path: path.to_path_buf(),
        source: e,
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64, AuditError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|source| AuditError::WriteFailed {
            path: path.to_path_buf(),
            source,
        })
}

/// The file's length and where its chain continues (next `seq`, `prev`);
/// read under the lock.
fn chain_head(file: &mut File, path: &Path) -> Result<(u64, u64, String), AuditError> {
    let len = file_len(file, path)?;
    if len == 0 {
        return Ok((0, 1, GENESIS_HASH.to_string()));
    }
    let (next_seq, last_hash) = resume_point(file, len).map_err(|e| match e {
        TailError::Io(source) => AuditError::WriteFailed {
            path: path.to_path_buf(),
            source,
        },
        TailError::Corrupt(reason) => AuditError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
    })?;
    Ok((len, next_seq, last_hash))
}

enum TailError {
    Io(io::Error),
    Corrupt(String),
}

impl From<io::Error> for TailError {
    fn from(e: io::Error) -> Self {
        TailError::Io(e)
    }
}

/// Read and check the last record of a non-empty log; return the next `seq`
/// and the `prev` for it.
fn resume_point(file: &mut File, len: u64) -> Result<(u64, String), TailError> {
    let line = read_last_line(file, len)?;
    let head = check_line(&line).map_err(|fault| {
        let which = fault
            .seq
            .map_or_else(String::new, |s| format!(" (seq {s})"));
        TailError::Corrupt(format!("last record{which} is damaged: {}", fault.reason))
    })?;
    let next_seq = head
        .seq
        .checked_add(1)
        .ok_or_else(|| TailError::Corrupt("last record has the largest possible seq".into()))?;
    Ok((next_seq, head.hash))
}

/// The bytes of the last line of a non-empty file, without its `\n`, read
/// backwards from the end so a large log is not read whole.
fn read_last_line(file: &mut File, len: u64) -> Result<Vec<u8>, TailError> {
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        return Err(TailError::Corrupt(
            "the last line has no trailing newline (a torn or interrupted write)".into(),
        ));
    }
    let end = len - 1; // the line's content ends just before its `\n`
    let mut pos = end;
    let mut chunks: Vec<Vec<u8>> = Vec::new(); // newest (rightmost) first
    let mut taken: usize = 0;
    while pos > 0 {
        let n = usize::try_from(pos).map_or(TAIL_CHUNK_BYTES, |p| p.min(TAIL_CHUNK_BYTES));
        pos -= n as u64;
        let mut chunk = vec![0u8; n];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            chunks.push(chunk.split_off(i + 1));
            break;
        }
        taken += n;
        if taken > MAX_RECORD_BYTES {
            return Err(TailError::Corrupt(format!(
                "the last line is longer than the {MAX_RECORD_BYTES}-byte record limit"
            )));
        }
        chunks.push(chunk);
    }
    let line: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    if line.len() > MAX_RECORD_BYTES {
        return Err(TailError::Corrupt(format!(
            "the last line is longer than the {MAX_RECORD_BYTES}-byte record limit"
        )));
    }
    Ok(line)
}
