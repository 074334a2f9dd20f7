use std::sync::mpsc;

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// What the writer thread wrote, shared with the test.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Written {
    fn text(&self) -> String {
        String::from_utf8(lock(&self.0).clone()).unwrap()
    }
}

impl Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log through a queue into `written`, limited as in the binary, while
/// `body` runs; then write the queue out.
fn logged(body: impl FnOnce()) -> String {
    let written = Written::default();
    let limiter = Arc::new(Limiter::default());
    let (queue, flush) = Queue::start(written.clone(), limiter.clone());
    let admitted = Admitted(limiter.clone());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(queue)
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG.and(admitted));
    let subscriber = tracing_subscriber::registry().with(fmt);
    tracing::subscriber::with_default(subscriber, body);
    drop(flush);
    written.text()
}

#[test]
fn a_place_writes_its_burst_then_its_lines_are_counted() {
    let text = logged(|| {
        for i in 0..100 {
            tracing::warn!("refused request {i}");
        }
        tracing::warn!("another place");
    });
    let written = text.matches("refused request").count();
    // One more may have been earned while the loop ran on a slow machine.
    assert!(
        (BURST as usize..=BURST as usize + 1).contains(&written),
        "{written} lines written:\n{text}"
    );
    assert!(text.contains("another place"), "{text}");
    let report = text
        .lines()
        .find(|l| l.contains("were not written"))
        .unwrap_or_else(|| panic!("no report of the suppressed lines:\n{text}"));
    assert!(
        report.contains(&format!(
            "{} more lines from src/logging/tests.rs:",
            100 - written
        )),
        "{report}"
    );
    assert!(report.contains("WARN"), "{report}");
}

#[test]
fn debug_lines_are_never_limited() {
    let text = logged(|| {
        for i in 0..200 {
            tracing::debug!("step {i}");
        }
    });
    assert_eq!(text.matches("step ").count(), 200, "{text}");
    assert!(!text.contains("were not written"), "{text}");
}

#[test]
fn a_place_earns_a_line_a_second_up_to_its_burst() {
    let callsite = tracing::callsite! {
        name: "session started",
        kind: tracing::metadata::Kind::EVENT,
        level: Level::INFO,
        fields:
    };
    let meta = tracing::Callsite::metadata(callsite);
    let limiter = Limiter::default();
    let t0 = Instant::now();
    let admitted = |at: Instant, n: usize| (0..n).filter(|_| limiter.admit_at(meta, at)).count();
    assert_eq!(admitted(t0, 50), BURST as usize);
    assert_eq!(admitted(t0 + REFILL / 2, 5), 0);
    assert_eq!(admitted(t0 + REFILL, 5), 1);
    assert_eq!(admitted(t0 + REFILL * 3, 5), 2);
    // Quiet for long: the allowance is the burst again, never more.
    assert_eq!(admitted(t0 + REFILL * 1000, 100), BURST as usize);
    let reports = limiter.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let refused = (50 - BURST as usize) + 5 + 4 + 3 + (100 - BURST as usize);
    assert!(
        reports[0].contains(&format!(" {refused} more lines")),
        "{reports:?}"
    );
    assert!(
        limiter.reports().is_empty(),
        "counts start again after a report"
    );
}

/// A stderr nobody reads: every write waits until `release` is sent.
struct Stuck {
    release: mpsc::Receiver<()>,
    released: bool,
    written: Written,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.released {
            let _ = self.release.recv();
            self.released = true;
        }
        self.written.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stderr_that_does_not_drain_costs_lines_never_a_wait() {
    let (release, released) = mpsc::channel();
    let written = Written::default();
    let stuck = Stuck {
        release: released,
        released: false,
        written: written.clone(),
    };
    let (queue, flush) = Queue::start_with(stuck, Arc::new(Limiter::default()), 1024);
    let (done, finished) = mpsc::channel();
    let logging = std::thread::spawn(move || {
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        for _ in 0..1000 {
            queue.make_writer().write_all(&line).unwrap();
        }
        done.send(()).unwrap();
    });
    // A thousand lines while stderr takes nothing: none of them waits.
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("logging waited for a stderr that does not drain");
    logging.join().unwrap();
    release.send(()).unwrap();
    drop(flush);
    let text = written.text();
    let kept = text.lines().filter(|l| l.starts_with('x')).count();
    assert!(kept < 1000, "{kept} of 1000 lines kept in a 1 KiB queue");
    let notice = text
        .lines()
        .find(|l| l.contains("log lines were dropped"))
        .unwrap_or_else(|| panic!("no notice of the dropped lines:\n{text}"));
    assert!(notice.contains("WARN"), "{notice}");
}

#[test]
fn an_upstreams_lines_are_headed_with_its_name_and_cut_when_long() {
    let long = "y".repeat(MAX_RELAYED_LINE + 100);
    let stderr = format!("starting\n{long}\n\nlast words");
    let expected = [
        "[fs] starting\n".to_string(),
        format!(
            "[fs] {} [100 more bytes of this line not kept]\n",
            "y".repeat(MAX_RELAYED_LINE)
        ),
        "[fs] \n".to_string(),
        "[fs] last words\n".to_string(),
    ];
    // However the pipe hands the bytes over.
    for size in [1, 7, 4096, stderr.len()] {
        let mut lines = Vec::new();
        let mut out = |line: &[u8]| lines.push(String::from_utf8(line.to_vec()).unwrap());
        let mut relayed = Relayed::new("fs");
        for piece in stderr.as_bytes().chunks(size) {
            relayed.feed(piece, &mut out);
        }
        relayed.finish(&mut out);
        assert_eq!(lines, expected, "pieces of {size} bytes");
    }
}

#[tokio::test]
async fn an_upstreams_pipe_is_read_to_its_end() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let writing = std::thread::spawn(move || {
        for i in 0..1000 {
            writeln!(writer, "line {i}").unwrap();
        }
        write!(writer, "no newline").unwrap();
    });
    let mut lines = Vec::new();
    relay_into(
        "up",
        reader.into(),
        std::future::pending(),
        &mut |line: &[u8]| lines.push(String::from_utf8(line.to_vec()).unwrap()),
    )
    .await;
    writing.join().unwrap();
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[0], "[up] line 0\n");
    assert_eq!(lines[999], "[up] line 999\n");
    assert_eq!(lines[1000], "[up] no newline\n");
}

#[test]
fn an_upstreams_stderr_is_read_as_often_as_its_pace_needs() {
    let ms = Duration::from_millis;
    // A line per call: read a few times a second.
    assert_eq!(relay_pause(RELAY_GATHER, 200), RELAY_GATHER);
    assert_eq!(relay_pause(RELAY_GATHER, 0), RELAY_GATHER);
    // The pipe filled over the whole pause: at that pace, half the time.
    let full = relay_pause(RELAY_GATHER, 64 * 1024);
    assert_eq!(full, ms(25));
    // Still filling: shorter, until it is read again at once.
    let mut pause = full;
    for _ in 0..8 {
        pause = relay_pause(pause, 64 * 1024);
    }
    assert_eq!(pause, Duration::ZERO);
    // Read at once and still finding a full pipe: at once again.
    assert_eq!(relay_pause(Duration::ZERO, 64 * 1024), Duration::ZERO);
    // The server quietened: back to the longest pause.
    assert_eq!(relay_pause(Duration::ZERO, 100), RELAY_GATHER);
}

#[tokio::test]
async fn a_chatty_upstream_is_relayed_whole() {
    // 4 MiB of stderr, far more than the pipe holds: the writer must
    // finish (it blocks while the pipe is full) and every line arrive.
    let (reader, mut writer) = std::io::pipe().unwrap();
    let writing = std::thread::spawn(move || {
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..4096 {
            writer.write_all(line.as_bytes()).unwrap();
        }
    });
    let mut count = 0;
    relay_into(
        "up",
        reader.into(),
        std::future::pending(),
        &mut |line: &[u8]| {
            assert_eq!(line.len(), "[up] ".len() + 1024);
            count += 1;
        },
    )
    .await;
    writing.join().unwrap();
    assert_eq!(count, 4096);
}

#[tokio::test]
async fn a_pipe_held_open_after_the_server_is_gone_is_let_go() {
    // A process that left the server's group keeps the pipe's write end:
    // it never closes.
    let (reader, mut writer) = std::io::pipe().unwrap();
    writeln!(writer, "last words").unwrap();
    let mut lines = Vec::new();
    let mut out = |line: &[u8]| lines.push(String::from_utf8(line.to_vec()).unwrap());
    let stop = tokio::time::sleep(Duration::from_millis(200));
    let relay = relay_into("up", reader.into(), stop, &mut out);
    // Its last words are read, then the pipe is let go when told to stop,
    // though it is still open.
    let ended = tokio::time::timeout(Duration::from_secs(60), relay).await;
    assert!(ended.is_ok(), "the relay still waits on the pipe");
    assert_eq!(lines, ["[up] last words\n"]);
    drop(writer);
}
