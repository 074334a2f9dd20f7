//! The firewall's own log on stderr, kept from stalling or flooding it.
//!
//! Job: the log is for people diagnosing; the audit log is the record. So a
//! line of it must never hold up a call, and what a hostile client makes it
//! say must stay small. Three pieces, set up by [`init`]:
//!
//! - [`Queue`]: in `run`, every line goes into a bounded queue that one
//!   thread writes to stderr. A client that launches the firewall and never
//!   reads its stderr fills the pipe (64 KiB on Linux); a direct `write(2)`
//!   would then block the worker that logged, and soon every worker. Here
//!   the lines past [`QUEUE_BYTES`] are dropped and counted instead.
//! - [`relay`]: an upstream server's stderr is read by the firewall and
//!   its lines queued the same way, each headed `[name]`. Inherited, the
//!   server wrote to the client's pipe itself, and a server that logs a line
//!   per call stopped, mid-call, once that pipe was full.
//! - [`Limiter`]: each place in the code that logs at info and above may
//!   write [`BURST`] lines at once, then one per [`REFILL`]. A flood of
//!   refused requests (bad tokens, bad bodies, a disallowed `Origin`), each
//!   of which warns, would otherwise write a line per request, into a
//!   client's log file, for as long as the flood lasts.
//!
//! Invariants:
//! - logging a line never waits for stderr; a line the queue cannot hold is
//!   dropped, counted (`mcp_firewall_log_lines_dropped_total`) and reported
//!   in a line of its own once the writer catches up;
//! - at info and above, a line over its place's allowance is not formatted
//!   at all; it is counted (`mcp_firewall_log_lines_suppressed_total`) and
//!   reported, per place, at most [`REPORT_EVERY`] later. Debug and trace
//!   lines, which someone asked for, are never limited (only queued);
//! - an upstream's lines are never limited, only queued, and each is cut
//!   at [`MAX_RELAYED_LINE`] bytes: a server may log as it likes, but one
//!   line never holds more than that of the firewall's memory;
//! - a line is written at most [`GATHER`] after it came (plus
//!   [`RELAY_GATHER`] for an upstream's), with the others that came
//!   meanwhile: one wake-up and one `write(2)` for them all;
//! - at exit the queue is written out, waiting at most [`FLUSH_WAIT`] for a
//!   stderr that does not drain.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How many bytes of lines may wait for stderr.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// How many lines one place may write at once.
pub const BURST: u32 = 20;

/// How often one place earns another line once its burst is spent.
pub const REFILL: Duration = Duration::from_secs(1);

/// How often lines dropped or suppressed are reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long the writer lets lines gather once one comes, before it writes
/// them all at once.
const GATHER: Duration = Duration::from_millis(5);

/// The longest an upstream's stderr gathers in its pipe between reads
/// (see [`relay_pause`]).
const RELAY_GATHER: Duration = Duration::from_millis(50);

/// How much of an upstream's stderr may gather between reads: half of a
/// Linux pipe's 64 KiB, so a server is not held up writing its stderr.
const RELAY_ROOM: usize = 32 * 1024;

/// Below this a pause is not worth its timer: read again at once.
const RELAY_MIN_PAUSE: Duration = Duration::from_millis(1);

/// The longest exit waits for the queue to be written out.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The most of one line of an upstream's stderr that is kept.
pub const MAX_RELAYED_LINE: usize = 16 * 1024;

/// The process's queue, once [`init`] started one: where [`relay`] writes.
static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// Set the process's log up: stderr (through a [`Queue`] when `queued`),
/// filtered by `RUST_LOG` or `default`, places limited by a [`Limiter`];
/// spans also exported over OTLP when the `OTEL_EXPORTER_OTLP_*` variables
/// ask for it. Keep what it returns until the process ends.
pub fn init(default: &str, queued: bool) -> Started {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A call's own spans (request, decide, forward) are for traces; the
    // log names them around its lines only when it is verbose. Formatting
    // their fields for the log was ~10 % of an allowed call's instructions
    // (callgrind, allow-all policy), for lines that are rarely written.
    let verbose = filter
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG);
    let quiet_calls = filter_fn(move |meta| {
        verbose || !meta.is_span() || !crate::telemetry::CALL_SPANS.contains(&meta.name())
    });
    let limiter = Arc::new(Limiter::default());
    let admitted = Admitted(limiter.clone());
    let (writer, flush) = if queued {
        let (queue, flush) = Queue::start(std::io::stderr(), limiter.clone());
        let _ = QUEUE.set(queue.0.clone());
        (BoxMakeWriter::new(queue), Some(flush))
    } else {
        (BoxMakeWriter::new(Direct::new(limiter)), None)
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colour_on_stderr())
        .with_target(false);
    // Traces do not depend on how verbose the logs are: the firewall's own
    // spans (info and up) are exported whatever RUST_LOG says.
    let spans = tracing_subscriber::filter::Targets::new().with_target("mcp_firewall", Level::INFO);
    let (otel, telemetry) = match crate::telemetry::layer() {
        Some((layer, telemetry)) => (Some(layer.with_filter(spans)), Some(telemetry)),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter.and(quiet_calls).and(admitted)))
        .with(otel)
        .init();
    Started { telemetry, flush }
}

/// Colour in logs only for a person at a terminal: MCP clients keep a
/// server's stderr in log files (Claude Desktop's `mcp-server-*.log`), and
/// escape codes there are noise to read and to grep. `NO_COLOR` turns it
/// off at a terminal too. (Colouring every span's fields also cost CPU on
/// every call.)
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What [`init`] set up, ended when the process ends.
pub struct Started {
    telemetry: Option<crate::telemetry::Telemetry>,
    flush: Option<Flush>,
}

impl Started {
    /// Export the traces still buffered and write out the queued lines.
    pub fn finish(self) {
        if let Some(telemetry) = self.telemetry {
            telemetry.shutdown();
        }
        drop(self.flush);
    }
}

/// The [`Limiter`] as a filter of the log's lines: asked per line, never
/// per place once (a place's answer changes from line to line).
pub struct Admitted(pub Arc<Limiter>);

impl<S> tracing_subscriber::layer::Filter<S> for Admitted {
    fn enabled(&self, _: &Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.admit(event.metadata())
    }
}

/// Where each place that logs stands against its allowance.
#[derive(Default)]
pub struct Limiter {
    places: Mutex<HashMap<Identifier, Place>>,
}

struct Place {
    /// Lines it may still write now.
    allowance: f64,
    /// When `allowance` was last brought up to date.
    at: Instant,
    /// Lines refused since the last report.
    suppressed: u64,
    level: Level,
    /// `file:line`, for the report.
    source: String,
}

impl Limiter {
    /// Whether the line `meta` describes may be written now. Spans, and
    /// lines at debug and trace, always may.
    pub fn admit(&self, meta: &Metadata<'_>) -> bool {
        self.admit_at(meta, Instant::now())
    }

    fn admit_at(&self, meta: &Metadata<'_>, now: Instant) -> bool {
        if !meta.is_event() || *meta.level() > Level::INFO {
            return true;
        }
        let mut places = lock(&self.places);
        let place = places.entry(meta.callsite()).or_insert_with(|| Place {
            allowance: f64::from(BURST),
            at: now,
            suppressed: 0,
            level: *meta.level(),
            source: format!(
                "{}:{}",
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or_default()
            ),
        });
        let earned = now.saturating_duration_since(place.at).as_secs_f64() / REFILL.as_secs_f64();
        place.allowance = (place.allowance + earned).min(f64::from(BURST));
        place.at = now;
        if place.allowance >= 1.0 {
            place.allowance -= 1.0;
            return true;
        }
        place.suppressed += 1;
        crate::metrics::metrics().log_lines_suppressed.inc();
        false
    }

    /// One line per place that refused lines since the last report, naming
    /// how many; the counts start again.
    fn reports(&self) -> Vec<String> {
        let mut places = lock(&self.places);
        let mut reports: Vec<String> = places
            .values_mut()
            .filter(|p| p.suppressed > 0)
            .map(|p| {
                let n = std::mem::take(&mut p.suppressed);
                notice(
                    p.level,
                    &format!(
                        "{n} more lines from {} were not written: each place in the code \
                         writes at most {BURST} lines at once, then one a second",
                        p.source
                    ),
                )
            })
            .collect();
        reports.sort();
        reports
    }
}

/// A line of the log's own, in the shape the formatter gives the others.
fn notice(level: Level, text: &str) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!("{ts} {level:>5} {text}\n")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can be left half done by a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines waiting for the thread that writes them out.
pub struct Queue {
    state: Mutex<Waiting>,
    /// Wakes the writer (a line, closing) and [`Flush`] (written out).
    wake: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Waiting {
    /// The lines, one after another.
    lines: Vec<u8>,
    dropped: u64,
    closing: bool,
    /// The writer wrote everything and stopped.
    done: bool,
}

impl Queue {
    /// Start the thread writing lines to `out`, reporting what `limiter`
    /// refused. Lines are queued through the returned handle (a
    /// [`MakeWriter`]) until the [`Flush`] is dropped.
    pub fn start<W: Write + Send + 'static>(out: W, limiter: Arc<Limiter>) -> (QueueHandle, Flush) {
        Queue::start_with(out, limiter, QUEUE_BYTES)
    }

    fn start_with<W: Write + Send + 'static>(
        out: W,
        limiter: Arc<Limiter>,
        capacity: usize,
    ) -> (QueueHandle, Flush) {
        let queue = Arc::new(Queue {
            state: Mutex::new(Waiting::default()),
            wake: Condvar::new(),
            capacity,
        });
        let writer = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.write_out(out, &limiter));
        if let Err(e) = spawned {
            // Without the thread nothing would ever be written: say so once,
            // directly, and drop lines from here on (the queue is closed).
            eprintln!("mcp-firewall: the log writer did not start ({e}); logging is off");
            lock(&queue.state).closing = true;
        }
        (QueueHandle(queue.clone()), Flush(queue))
    }

    fn push(&self, line: &[u8]) {
        let mut waiting = lock(&self.state);
        if waiting.closing || waiting.lines.len() + line.len() > self.capacity {
            waiting.dropped += 1;
            crate::metrics::metrics().log_lines_dropped.inc();
            return;
        }
        // Only the first line waiting wakes the writer: it takes the lines
        // that come meanwhile with it (a line per call would otherwise
        // cost a thread wake-up per call).
        let first = waiting.lines.is_empty();
        waiting.lines.extend_from_slice(line);
        drop(waiting);
        if first {
            self.wake.notify_all();
        }
    }

    /// The writer thread: write lines as they come, and the reports of
    /// what was dropped or suppressed, until closed.
    fn write_out<W: Write>(&self, mut out: W, limiter: &Limiter) {
        let mut report_due = Instant::now() + REPORT_EVERY;
        loop {
            let (lines, dropped, closing) = {
                let left = report_due.saturating_duration_since(Instant::now());
                let (mut waiting, _) = self
                    .wake
                    .wait_timeout_while(lock(&self.state), left, |w| {
                        w.lines.is_empty() && w.dropped == 0 && !w.closing
                    })
                    .unwrap_or_else(|e| e.into_inner());
                if !waiting.lines.is_empty() && !waiting.closing {
                    // Let the lines of the next moment join these: one
                    // wake-up and one write for them all.
                    drop(waiting);
                    std::thread::sleep(GATHER);
                    waiting = lock(&self.state);
                }
                (
                    std::mem::take(&mut waiting.lines),
                    std::mem::take(&mut waiting.dropped),
                    waiting.closing,
                )
            };
            // Errors writing stderr (closed, full disk) have nowhere to go.
            let _ = out.write_all(&lines);
            if dropped > 0 {
                let text = format!(
                    "{dropped} log lines were dropped: stderr was not read as fast as \
                     they came (at most {} KiB wait)",
                    self.capacity / 1024
                );
                let _ = out.write_all(notice(Level::WARN, &text).as_bytes());
            }
            if closing || Instant::now() >= report_due {
                for report in limiter.reports() {
                    let _ = out.write_all(report.as_bytes());
                }
                report_due = Instant::now() + REPORT_EVERY;
            }
            let _ = out.flush();
            if closing && lock(&self.state).lines.is_empty() {
                lock(&self.state).done = true;
                self.wake.notify_all();
                return;
            }
        }
    }
}

/// Relay the lines an upstream server writes on its stderr (the pipe
/// `from`) to the firewall's, each headed `[name] `, until it closes or
/// `stop` resolves (the caller's: a while after the server is gone, for its
/// last words).
pub async fn relay(name: &str, from: OwnedFd, stop: impl Future<Output = ()>) {
    relay_into(name, from, stop, &mut write_raw).await;
}

/// [`relay`], each line (ending in a newline) handed to `out`.
///
/// What has come is read at once, then the pipe is taken off the reactor
/// for [`RELAY_GATHER`] while more gathers in it. A server that logs a
/// line per call (the Python SDK's servers do) otherwise woke the runtime
/// once per line, ~25 µs of the firewall's CPU per call on a slow machine:
/// a pipe the reactor watches wakes it on every write, even while the task
/// that reads it sleeps. Each pause costs a registration and a timer, so it
/// is as long as the server's pace allows ([`relay_pause`]).
async fn relay_into(
    name: &str,
    from: OwnedFd,
    stop: impl Future<Output = ()>,
    out: &mut impl FnMut(&[u8]),
) {
    use tokio::net::unix::pipe::Receiver;
    let mut lines = Relayed::new(name);
    let mut read = vec![0u8; 64 * 1024];
    let mut fd = from;
    let mut pause = RELAY_GATHER;
    // A process that left the server's group (`setsid`) may hold the pipe
    // open after the server is stopped: the relay does not wait for it.
    tokio::pin!(stop);
    let mut stopped = false;
    loop {
        let Ok(pipe) = Receiver::from_owned_fd(fd) else {
            break;
        };
        if stopped {
            // What came during the last pause, if the reactor says so at once.
            let _ = tokio::time::timeout(RELAY_MIN_PAUSE, pipe.readable()).await;
        } else {
            tokio::select! {
                ready = pipe.readable() => if ready.is_err() { break },
                () = &mut stop => stopped = true,
            }
        }
        let (got, ended) = drain(&pipe, &mut read, &mut lines, out);
        fd = match pipe.into_nonblocking_fd() {
            Ok(fd) if !ended && !stopped => fd,
            _ => break,
        };
        pause = relay_pause(pause, got);
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut stop, if !stopped => stopped = true,
            }
        }
    }
    lines.finish(out);
}

/// Read what the pipe holds into `lines`: how many bytes, and whether
/// it ended (closed, or failed).
fn drain(
    pipe: &tokio::net::unix::pipe::Receiver,
    read: &mut [u8],
    lines: &mut Relayed,
    out: &mut impl FnMut(&[u8]),
) -> (usize, bool) {
    let mut got = 0;
    loop {
        match pipe.try_read(read) {
            Ok(0) => return (got, true),
            Ok(n) => {
                got += n;
                lines.feed(&read[..n], out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (got, false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}

/// The pause before the next read of an upstream's stderr, after one that
/// found `got` bytes gathered over `last`: at that pace, at most
/// [`RELAY_ROOM`] gathers, and never more than [`RELAY_GATHER`] goes by. A
/// server that logs a line per call is read a few times a second; one that
/// fills its pipe is read again at once.
fn relay_pause(last: Duration, got: usize) -> Duration {
    let pace = last.max(RELAY_MIN_PAUSE);
    let pause = pace.mul_f64(RELAY_ROOM as f64 / got.max(1) as f64);
    if pause < RELAY_MIN_PAUSE {
        Duration::ZERO
    } else {
        pause.min(RELAY_GATHER)
    }
}

/// An upstream's stderr cut into lines headed `[name] `, each at most
/// [`MAX_RELAYED_LINE`] bytes of text.
struct Relayed {
    line: Vec<u8>,
    head: usize,
    /// Bytes of the current line not kept.
    cut: usize,
}

impl Relayed {
    fn new(name: &str) -> Relayed {
        let line = format!("[{name}] ").into_bytes();
        Relayed {
            head: line.len(),
            line,
            cut: 0,
        }
    }

    /// Take `bytes` as they came, handing `out` each line they end.
    fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let (text, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (at, true),
                None => (bytes.len(), false),
            };
            let room = MAX_RELAYED_LINE.saturating_sub(self.line.len() - self.head);
            self.line.extend_from_slice(&bytes[..text.min(room)]);
            self.cut += text.saturating_sub(room);
            bytes = &bytes[text + usize::from(ended)..];
            if ended {
                self.emit(out);
            }
        }
    }

    /// The last line, when the pipe closed without ending it.
    fn finish(mut self, out: &mut impl FnMut(&[u8])) {
        if self.line.len() > self.head || self.cut > 0 {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut impl FnMut(&[u8])) {
        if self.cut > 0 {
            let note = format!(" [{} more bytes of this line not kept]", self.cut);
            self.line.extend_from_slice(note.as_bytes());
        }
        self.line.push(b'\n');
        out(&self.line);
        self.line.truncate(self.head);
        self.cut = 0;
    }
}

/// A plain line of the firewall's own on stderr (where it listens, a held
/// call's hint): in order with the log's lines, and in a server never
/// waited for.
pub fn line(text: &str) {
    let mut line = Vec::with_capacity(text.len() + 1);
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    write_raw(&line);
}

/// Queue `line` (which ends in a newline), or write it at once when there
/// is no queue (a one-shot command).
fn write_raw(line: &[u8]) {
    match QUEUE.get() {
        Some(queue) => queue.push(line),
        None => {
            let _ = std::io::stderr().write_all(line);
        }
    }
}

/// Queues each formatted line (the formatter writes a line in one call).
#[derive(Clone)]
pub struct QueueHandle(Arc<Queue>);

impl<'a> MakeWriter<'a> for QueueHandle {
    type Writer = &'a Queue;

    fn make_writer(&'a self) -> &'a Queue {
        &self.0
    }
}

impl Write for &Queue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the queue out when dropped: at exit.
pub struct Flush(Arc<Queue>);

impl Drop for Flush {
    fn drop(&mut self) {
        let mut waiting = lock(&self.0.state);
        waiting.closing = true;
        self.0.wake.notify_all();
        // A stderr that does not drain keeps the writer: exit goes on.
        let _ = self
            .0
            .wake
            .wait_timeout_while(waiting, FLUSH_WAIT, |w| !w.done);
    }
}

/// Straight to stderr (one-shot commands: a hook's stderr is what the
/// model reads, and it exits at once), with the limiter's reports written
/// before the next line of a place that had lines refused.
#[derive(Clone)]
struct Direct {
    limiter: Arc<Limiter>,
}

impl Direct {
    fn new(limiter: Arc<Limiter>) -> Direct {
        Direct { limiter }
    }
}

impl<'a> MakeWriter<'a> for Direct {
    type Writer = DirectLine<'a>;

    fn make_writer(&'a self) -> DirectLine<'a> {
        DirectLine(&self.limiter)
    }
}

struct DirectLine<'a>(&'a Limiter);

impl Write for DirectLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        for report in self.0.reports() {
            err.write_all(report.as_bytes())?;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests;
