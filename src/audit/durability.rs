//! Group commit for `--audit-fsync always`: one thread makes records durable.
//!
//! Job: a writer appends its record (one `write(2)` under the log's lock)
//! and then waits until an `fsync` that began after that write has finished.
//! One thread runs the `fsync`s: whenever someone waits for a record that
//! no finished `fsync` covers, it syncs everything written so far, and the
//! records written meanwhile wait for its next one, together. A record
//! nobody waits for (a call's outcome: [`Pending::unawaited`]) starts no
//! `fsync` of its own: the next one anyone waits for covers it, or, when
//! none comes, one [`UNAWAITED_WITHIN`] after it was written. (An `fsync`
//! started for it at once made the next call's decision wait for that
//! one to finish before its own could start: two `fsync`s per call.)
//! When the last `fsync` served more than one wait (calls are arriving
//! together; records nobody waited for do not count), the thread first
//! lingers for half as long as that `fsync` took, at most
//! [`MAX_LINGER`], so the next one covers more: on a fast
//! disk, `fsync`s back to back each covered ~2.4 records at 32 calls in
//! flight, and the kernel's journal work took CPU from the calls. A waiter
//! blocks a thread ([`Pending::wait`]) or awaits ([`Pending::durable`]):
//! a call awaiting its record leaves its worker free to decide the next call
//! while the disk works.
//!
//! Invariants:
//! - `synced` only grows, and only to a `written` read before the `fsync`
//!   began: a record counts as durable only after an `fsync` that began
//!   after it was written;
//! - a failed `fsync` fails every record it was to cover, every later wait
//!   and every later append (records chained on them may not be on disk);
//! - dropping the log stops the thread after it synced everything written,
//!   so no waiter is left waiting;
//! - a record nobody waits for is on disk once the next record someone
//!   waits for is, and at most [`UNAWAITED_WITHIN`] (plus an `fsync`)
//!   after the thread saw it written.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::AuditError;
use super::writer::AuditReceipt;

/// The longest the `fsync` thread lingers for more records (see
/// [`linger`]).
const MAX_LINGER: Duration = Duration::from_micros(300);

/// How long a record nobody waits for may stay unsynced when no record
/// anyone waits for follows it.
pub(crate) const UNAWAITED_WITHIN: Duration = Duration::from_millis(100);

/// How long to wait for more records before an `fsync`, after one that
/// served `last_batch` waits in `last_sync`: none when it served one (a
/// call alone waits for nothing), else half as long as it took, at most
/// [`MAX_LINGER`], so a call waits at most half an `fsync` more.
fn linger(last_batch: u64, last_sync: Duration) -> Duration {
    match last_batch {
        0 | 1 => Duration::ZERO,
        _ => (last_sync / 2).min(MAX_LINGER),
    }
}

/// Why records are not durable: the failed `fsync`, for every later error.
type Failure = Arc<str>;

/// What the `fsync` thread has done, for waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every record up to this `seq` is on disk.
    synced: u64,
    failed: Option<Failure>,
}

#[derive(Debug, Default)]
struct Durable {
    progress: Progress,
    /// `fsync` calls made (for tests and benchmarks).
    syncs: u64,
    /// Set when the log is dropped: sync what is written, then stop.
    closing: bool,
    /// Tests: start no `fsync` while set.
    paused: bool,
    /// When records nobody waits for are synced at the latest, once seen.
    unawaited_due: Option<Instant>,
    /// [`UNAWAITED_WITHIN`] (tests change it).
    unawaited_within: Duration,
    /// The thread is waiting on `wake` (for work, or for unawaited records
    /// to fall due): only then does a writer need to wake it.
    thread_waiting: bool,
}

/// The state shared by the log, its `fsync` thread and the waiters.
pub(crate) struct Syncer {
    /// The log file (a clone of the writer's handle).
    file: File,
    path: PathBuf,
    /// `seq` of the last record written.
    written: AtomicU64,
    /// The highest `seq` someone waits for.
    awaited: AtomicU64,
    /// Waits begun since the last `fsync` started: how many calls one
    /// `fsync` served (records nobody waits for do not count, or every
    /// call's `fsync`, covering the last call's outcome too, would look
    /// shared and linger).
    waits: AtomicU64,
    state: Mutex<Durable>,
    /// Wakes the thread (new records, closing) and blocked waiters (progress).
    wake: Condvar,
    /// The same progress, for waiters that await.
    progress: watch::Sender<Progress>,
}

impl Syncer {
    /// Start the `fsync` thread for `file`, whose records up to `synced`
    /// are already on disk.
    pub(crate) fn start(
        file: File,
        path: PathBuf,
        synced: u64,
    ) -> std::io::Result<(Arc<Syncer>, std::thread::JoinHandle<()>)> {
        let progress = Progress {
            synced,
            failed: None,
        };
        let syncer = Arc::new(Syncer {
            file,
            path,
            written: AtomicU64::new(synced),
            awaited: AtomicU64::new(synced),
            waits: AtomicU64::new(0),
            state: Mutex::new(Durable {
                progress: progress.clone(),
                unawaited_within: UNAWAITED_WITHIN,
                ..Durable::default()
            }),
            wake: Condvar::new(),
            progress: watch::Sender::new(progress),
        });
        let thread = std::thread::Builder::new()
            .name("audit-fsync".into())
            .spawn({
                let syncer = syncer.clone();
                move || syncer.run()
            })?;
        Ok((syncer, thread))
    }

    /// Record `seq` was written: the thread has work, due at once when
    /// someone waits for it ([`Self::awaits`]), else within
    /// [`UNAWAITED_WITHIN`].
    pub(crate) fn wrote(&self, seq: u64) {
        // Writers report after leaving the log's lock, so not in order:
        // `written` must never move back past a record already reported.
        self.written.fetch_max(seq, Ordering::AcqRel);
        self.nudge();
    }

    /// Someone waits for record `seq`: sync it without delay.
    fn awaits(&self, seq: u64) {
        self.waits.fetch_add(1, Ordering::AcqRel);
        if self.awaited.fetch_max(seq, Ordering::AcqRel) < seq {
            self.nudge();
        }
    }

    /// Wake the thread to look again, if it is waiting. It reads `written`
    /// and `awaited` under the lock before every wait, so while it syncs
    /// or lingers it sees them anyway. (Waking it on every record was a
    /// `futex` call per record, ~2 per call at 32 calls in flight.)
    fn nudge(&self) {
        // Taking the lock orders this against the thread's check-then-wait,
        // so the wake-up cannot fall between the two.
        if self.lock().thread_waiting {
            self.wake.notify_all();
        }
    }

    /// Tests: how long a record nobody waits for may stay unsynced.
    #[cfg(test)]
    pub(crate) fn set_unawaited_within(&self, within: Duration) {
        self.lock().unawaited_within = within;
        self.nudge();
    }

    /// Why records may not be on disk, once an `fsync` failed.
    pub(crate) fn failure(&self) -> Option<AuditError> {
        // From the published progress, not the state lock: a writer never
        // waits on the thread's bookkeeping before writing.
        let failed = self.progress.borrow().failed.clone();
        failed.map(|why| self.error(&why))
    }

    /// Stop the thread once everything written is on disk.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// `seq` of the last record written, durable or not.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Start no `fsync` until the guard is dropped (tests: let writers
    /// queue up behind the thread).
    #[cfg(test)]
    pub(crate) fn pause(&self) -> Paused<'_> {
        self.lock().paused = true;
        Paused(self)
    }

    fn lock(&self) -> MutexGuard<'_, Durable> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent numbers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        let (mut last_batch, mut last_sync) = (0, Duration::ZERO);
        loop {
            let upto = self.written.load(Ordering::Acquire);
            if state.progress.failed.is_some() || (state.closing && upto <= state.progress.synced) {
                return;
            }
            if upto <= state.progress.synced || state.paused {
                state.thread_waiting = true;
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                state.thread_waiting = false;
                continue;
            }
            // Only records nobody waits for: not before they are due.
            if !state.closing && self.awaited.load(Ordering::Acquire) <= state.progress.synced {
                let now = Instant::now();
                let within = state.unawaited_within;
                let due = *state.unawaited_due.get_or_insert(now + within);
                if now < due {
                    state.thread_waiting = true;
                    state = self
                        .wake
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    state.thread_waiting = false;
                    continue;
                }
            }
            let wait = if state.closing {
                Duration::ZERO
            } else {
                linger(last_batch, last_sync)
            };
            drop(state);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            // What was written while lingering is covered too.
            let upto = self.written.load(Ordering::Acquire);
            let waits = self.waits.swap(0, Ordering::AcqRel);
            let started = Instant::now();
            let synced = self.file.sync_data();
            (last_batch, last_sync) = (waits, started.elapsed());
            crate::metrics::metrics()
                .audit_fsync_seconds
                .observe(last_sync.as_secs_f64());
            state = self.lock();
            state.syncs += 1;
            state.unawaited_due = None;
            match synced {
                Ok(()) => state.progress.synced = upto,
                Err(e) => {
                    let why = format!(
                        "fsync failed ({e}); records from seq {} on may not be on disk; \
                         restart and run `mcp-firewall audit verify`",
                        state.progress.synced + 1
                    );
                    // Said here too: the records it covered may be
                    // outcomes nobody waits for, and no call may follow.
                    tracing::error!(path = %self.path.display(), "audit log: {why}");
                    state.progress.failed = Some(why.into());
                }
            }
            self.progress.send_replace(state.progress.clone());
            self.wake.notify_all();
        }
    }

    /// Block until record `seq` is on disk.
    fn wait(&self, seq: u64) -> Result<(), AuditError> {
        self.awaits(seq);
        let blocking = || {
            let mut state = self.lock();
            loop {
                match state.progress.failed.clone() {
                    _ if state.progress.synced >= seq => return Ok(()),
                    Some(why) => return Err(self.error(&why)),
                    None => state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        // On a multi-threaded runtime, let its other tasks move off this
        // worker while it waits for the disk.
        crate::scope::off_worker(blocking)
    }

    /// Wait, without holding a thread, until record `seq` is on disk.
    async fn durable(&self, seq: u64) -> Result<(), AuditError> {
        let mut progress = self.progress.subscribe();
        self.awaits(seq);
        let reached = progress
            .wait_for(|p| p.synced >= seq || p.failed.is_some())
            .await
            .map(|p| p.clone());
        match reached {
            Ok(p) if p.synced >= seq => Ok(()),
            Ok(p) => Err(self.error(p.failed.as_deref().unwrap_or("fsync failed"))),
            // The sender lives as long as `self`: not reached.
            Err(_) => Err(self.error("the audit log closed")),
        }
    }

    fn error(&self, why: &str) -> AuditError {
        AuditError::WriteFailed {
            path: self.path.clone(),
            source: std::io::Error::other(why.to_string()),
        }
    }
}

/// While alive, the `fsync` thread starts no `fsync`.
#[cfg(test)]
pub(crate) struct Paused<'a>(&'a Syncer);

#[cfg(test)]
impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.lock().paused = false;
        self.0.wake.notify_all();
    }
}

/// A record written to the log, durable once [`Pending::wait`] or
/// [`Pending::durable`] returns `Ok` (at once when the log does not `fsync`).
#[must_use = "a record counts only once it is durable: wait for it"]
pub struct Pending {
    receipt: AuditReceipt,
    syncer: Option<Arc<Syncer>>,
    started: Instant,
}

impl Pending {
    pub(crate) fn new(
        receipt: AuditReceipt,
        syncer: Option<Arc<Syncer>>,
        started: Instant,
    ) -> Self {
        Pending {
            receipt,
            syncer,
            started,
        }
    }

    /// Block the calling thread until the record is durable.
    pub fn wait(self) -> Result<AuditReceipt, AuditError> {
        let waited = match &self.syncer {
            Some(syncer) => syncer.wait(self.receipt.seq),
            None => Ok(()),
        };
        self.finish(waited)
    }

    /// Await the record's durability; the task's thread stays free.
    pub async fn durable(self) -> Result<AuditReceipt, AuditError> {
        let waited = match &self.syncer {
            Some(syncer) => syncer.durable(self.receipt.seq).await,
            None => Ok(()),
        };
        self.finish(waited)
    }

    /// Leave the record to the `fsync` thread without waiting: it is
    /// written (a failed write was already an error), and the next `fsync`
    /// covers it: the one the next record anyone waits for waits for, or
    /// one [`UNAWAITED_WITHIN`] after it was written. For a record that
    /// gates nothing after it (a call's outcome, once the call has run).
    pub fn unawaited(self) -> AuditReceipt {
        crate::metrics::metrics()
            .audit_write_seconds
            .observe(self.started.elapsed().as_secs_f64());
        self.receipt
    }

    fn finish(self, waited: Result<(), AuditError>) -> Result<AuditReceipt, AuditError> {
        match waited {
            Ok(()) => Ok(self.unawaited()),
            Err(e) => {
                crate::metrics::metrics().audit_write_failures.inc();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call alone never waits for company; calls arriving together wait
    /// at most half an `fsync`, and never more than [`MAX_LINGER`] however
    /// slow the disk.
    #[test]
    fn the_thread_lingers_only_after_a_shared_fsync_and_briefly() {
        let ms = Duration::from_millis;
        assert_eq!(linger(0, ms(5)), Duration::ZERO);
        assert_eq!(linger(1, ms(5)), Duration::ZERO);
        assert_eq!(
            linger(2, Duration::from_micros(100)),
            Duration::from_micros(50)
        );
        assert_eq!(linger(32, ms(40)), MAX_LINGER);
    }
}
