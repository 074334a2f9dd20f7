//! Tests of the writer and verifier together: round trips, resuming, every
//! kind of tampering, torn writes, concurrency, and a byte-flip sweep.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("audit.jsonl");
    (dir, path)
}

fn append_n(log: &AuditLog, n: u64) -> Vec<AuditReceipt> {
    (0..n)
        .map(|i| {
            let body = json!({
                "decision_id": format!("d-{i}"),
                "server": "filesystem",
                "tool": "write_file",
                "input": {"path": format!("/srv/{i}"), "content": "héllo \"world\"\n"},
                "result": if i % 2 == 0 { "allow" } else { "deny" },
            });
            log.append("call.decided", body).unwrap()
        })
        .collect()
}

fn write_log(path: &Path, n: u64) -> Vec<AuditReceipt> {
    let log = AuditLog::open(path, FsyncMode::Never).unwrap();
    append_n(&log, n)
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().map(str::to_string).collect()
}

fn join_lines(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

fn verify_bytes(bytes: &[u8]) -> Result<VerifySummary, VerifyError> {
    verify_reader(bytes)
}

/// Verify `lines` and return the error, checking its line, seq and reason prefix.
fn expect_break(lines: &[String], line: u64, seq: Option<u64>, reason_prefix: &str) {
    let err = verify_bytes(&join_lines(lines)).unwrap_err();
    assert_eq!((err.line, err.seq), (line, seq), "{err}");
    assert!(err.reason.starts_with(reason_prefix), "{err}");
}

fn parse(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(line).unwrap() {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn round_trip_writer_to_verifier() {
    let (_dir, path) = temp_log();
    let receipts = write_log(&path, 5);
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let summary = verify_file(&path).unwrap();
    assert_eq!(
        summary,
        VerifySummary {
            records: 5,
            head: receipts[4].hash.clone()
        }
    );

    let lines = read_lines(&path);
    let mut prev = GENESIS_HASH.to_string();
    for (line, receipt) in lines.iter().zip(&receipts) {
        let rec = parse(line);
        assert_eq!(rec["seq"], json!(receipt.seq));
        assert_eq!(rec["hash"], json!(receipt.hash));
        assert_eq!(rec["prev"], json!(prev));
        assert_eq!(rec["event"], json!("call.decided"));
        assert_eq!(rec["server"], json!("filesystem"));
        prev = receipt.hash.clone();
    }
}

#[test]
fn record_fields_have_the_documented_shape() {
    let (_dir, path) = temp_log();
    let receipt = write_log(&path, 1).remove(0);
    let line = read_lines(&path).remove(0);
    assert_eq!(line, canonical_json(&serde_json::from_str(&line).unwrap()));
    let mut rec = parse(&line);
    assert_eq!(rec["prev"], json!(GENESIS_HASH));
    // ts: RFC 3339, UTC, exactly millisecond precision.
    let ts = rec["ts"].as_str().unwrap().to_string();
    assert_eq!(ts.len(), "2026-11-22T10:00:00.123Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    chrono::DateTime::parse_from_rfc3339(&ts).unwrap();
    // hash covers everything but itself.
    rec.remove("hash");
    assert_eq!(
        receipt.hash,
        sha256_tagged(canonical_json(&Value::Object(rec)).as_bytes())
    );
}

#[test]
fn reopen_resumes_the_chain() {
    let (_dir, path) = temp_log();
    let first = write_log(&path, 3);
    let second = write_log(&path, 2);
    assert_eq!(second[0].seq, 4);
    assert_eq!(second[1].seq, 5);
    let rec4 = parse(&read_lines(&path)[3]);
    assert_eq!(rec4["prev"], json!(first[2].hash));
    assert_eq!(verify_file(&path).unwrap().records, 5);
}

#[test]
fn reopen_finds_a_last_record_longer_than_one_read_chunk() {
    let (_dir, path) = temp_log();
    {
        let log = AuditLog::open(&path, FsyncMode::Never).unwrap();
        append_n(&log, 2);
        let big = "x".repeat(300 * 1024);
        log.append("call.decided", json!({"big": big})).unwrap();
    }
    let again = write_log(&path, 1);
    assert_eq!(again[0].seq, 4);
    assert_eq!(verify_file(&path).unwrap().records, 4);
}

#[test]
fn reopen_of_an_empty_existing_file_starts_at_one() {
    let (_dir, path) = temp_log();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "").unwrap();
    assert_eq!(write_log(&path, 1)[0].seq, 1);
}

#[test]
fn fsync_always_mode_writes_a_valid_chain() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Always).unwrap();
    append_n(&log, 3);
    assert_eq!(log.path(), path);
    assert_eq!(verify_file(&path).unwrap().records, 3);
}

/// Two writers on one file (a running firewall and a hook process) keep
/// one chain: each continues from the other's last record. The old writer
/// refused the second open; two writers that each kept their own head
/// would fork the chain.
#[test]
fn two_writers_on_the_same_file_keep_one_chain() {
    let (_dir, path) = temp_log();
    let first = AuditLog::open(&path, FsyncMode::Never).unwrap();
    let second = AuditLog::open(&path, FsyncMode::Never).unwrap();
    for i in 0..5 {
        let a = first.append("call.decided", json!({"n": i})).unwrap();
        let b = second.append("call.decided", json!({"n": i})).unwrap();
        assert_eq!(b.seq, a.seq + 1);
    }
    let threads: Vec<_> = [first, second]
        .into_iter()
        .map(|log| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    log.append("call.decided", json!({"n": i})).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(verify_file(&path).unwrap().records, 410);
}

/// A writer that cannot get the lock fails the append (the call is
/// refused) instead of writing unlocked or waiting forever.
#[test]
fn a_writer_held_off_by_a_stuck_lock_fails_closed() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Never).unwrap();
    let holder = fs::File::open(&path).unwrap();
    holder.lock().unwrap();
    let err = log.append("call.decided", json!({"n": 1})).unwrap_err();
    assert!(matches!(err, AuditError::InUse { .. }), "{err}");
    holder.unlock().unwrap();
    log.append("call.decided", json!({"n": 2})).unwrap();
    assert_eq!(verify_file(&path).unwrap().records, 1);
}

#[test]
fn torn_last_line_is_refused_on_open() {
    let (_dir, path) = temp_log();
    write_log(&path, 3);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"decision_id":"d-3","ev"#);
    fs::write(&path, &bytes).unwrap();
    let err = AuditLog::open(&path, FsyncMode::Never).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("mcp-firewall audit verify"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // Nothing was appended on top of the damage.
    assert_eq!(fs::read(&path).unwrap(), bytes);
    // The verifier agrees and points at the torn line.
    let err = verify_file(&path).unwrap_err();
    assert_eq!(err.line, 4);
    assert!(err.reason.starts_with("torn write"), "{err}");
}

#[test]
fn damaged_complete_last_line_is_refused_on_open() {
    let (_dir, path) = temp_log();
    write_log(&path, 2);
    let mut lines = read_lines(&path);
    lines[1] = lines[1].replace("/srv/1", "/srv/9");
    fs::write(&path, join_lines(&lines)).unwrap();
    let err = AuditLog::open(&path, FsyncMode::Never).unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");

    fs::write(&path, "not json\n").unwrap();
    let err = AuditLog::open(&path, FsyncMode::Never).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
}

#[test]
fn invalid_bodies_are_refused_and_write_nothing() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Never).unwrap();
    for body in [json!([1]), json!("x"), json!(null)] {
        let err = log.append("e", body).unwrap_err();
        assert!(matches!(err, AuditError::InvalidBody(_)), "{err}");
    }
    for key in ["seq", "ts", "event", "prev", "hash"] {
        let err = log.append("e", json!({ key: 1 })).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
    // Fields handed over rendered obey the same rules, and cannot repeat
    // a body's field (the record would hold the key twice).
    for (key, body) in [
        ("seq", json!({})),
        ("hash", json!({})),
        ("replica", json!({})),
        ("input", json!({"input": 1})),
    ] {
        let rendered = vec![(key.to_string(), Canonical::of(&json!(1)))];
        let Err(err) = log.append_pending_with("e", body, rendered) else {
            panic!("{key} accepted");
        };
        assert!(err.to_string().contains(key), "{err}");
    }
    assert!(matches!(
        log.append("", json!({})),
        Err(AuditError::InvalidBody(_))
    ));
    let huge = "x".repeat(MAX_RECORD_BYTES);
    assert!(matches!(
        log.append("e", json!({"big": huge})),
        Err(AuditError::InvalidBody(_))
    ));
    assert_eq!(fs::read(&path).unwrap(), b"");
    // The chain did not advance.
    assert_eq!(log.append("e", json!({})).unwrap().seq, 1);
}

#[cfg(target_os = "linux")]
#[test]
fn write_failure_is_reported_and_fails_closed() {
    // /dev/full accepts the open and refuses every write with ENOSPC.
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let log = AuditLog::open(path, FsyncMode::Never).unwrap();
    let err = log.append("e", json!({})).unwrap_err();
    assert!(matches!(err, AuditError::WriteFailed { .. }), "{err}");
    assert!(err.to_string().contains("/dev/full"), "{err}");
    // The rollback (truncate) cannot work on a device, so the log stays shut.
    let err = log.append("e", json!({})).unwrap_err();
    assert!(matches!(err, AuditError::WriteFailed { .. }), "{err}");
}

/// Group commit: writers that queue while an `fsync` is under way are
/// covered by one `fsync`, not one each, and each still returns only once
/// its record is synced. Before, 1 + 16 records cost 17 `fsync`s.
#[test]
fn fsync_always_commits_concurrent_records_in_one_group() {
    const WRITERS: u64 = 16;
    let (_dir, path) = temp_log();
    let log = Arc::new(AuditLog::open(&path, FsyncMode::Always).unwrap());
    append_n(&log, 1);
    assert_eq!(log.syncs(), 1);
    let paused = log.pause_syncs();
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.append("call.decided", json!({"i": i})).unwrap())
        })
        .collect();
    while log.written() < 1 + WRITERS {
        std::thread::yield_now();
    }
    drop(paused);
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(
        log.syncs(),
        2,
        "one fsync for the first record, one for the group"
    );
    assert_eq!(verify_file(&path).unwrap().records, 1 + WRITERS);
}

/// A task awaiting its record's `fsync` holds no thread: on a runtime with
/// one thread, another task runs while the record waits, and the record is
/// reported durable only after the `fsync` thread covered it. (Before, the
/// wait blocked the thread: nothing else ran until the disk answered.)
#[test]
fn awaiting_a_durable_record_leaves_the_thread_free() {
    let (_dir, path) = temp_log();
    let log = Arc::new(AuditLog::open(&path, FsyncMode::Always).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let paused = log.pause_syncs();
    let (durable, other) = runtime.block_on(async {
        let pending = log.append_pending("call.decided", json!({"i": 1})).unwrap();
        let waiting = tokio::spawn(pending.durable());
        let other = tokio::spawn(async { "ran" }).await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "durable before any fsync covered it"
        );
        assert_eq!(log.syncs(), 0);
        drop(paused);
        (waiting.await.unwrap(), other)
    });
    assert_eq!(other, "ran");
    assert_eq!(durable.unwrap().seq, 1);
    assert!(log.syncs() >= 1);
    assert_eq!(verify_file(&path).unwrap().records, 1);
}

/// A record left unawaited (a call's outcome) is handed back at once and
/// starts no `fsync` of its own; the next record anyone waits for is
/// durable only once one `fsync` covered both: nothing forwarded after an
/// outcome is on disk without it. (When the outcome started an `fsync` at
/// once, the next decision waited for that one and then its own.)
#[test]
fn an_unawaited_record_is_covered_by_the_next_awaited_one() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Always).unwrap();
    log.set_unawaited_within(std::time::Duration::from_secs(3600));
    let outcome = log.append_pending("call.completed", json!({})).unwrap();
    assert_eq!(outcome.unawaited().seq, 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(log.syncs(), 0, "an fsync for a record nobody waits for");
    let next = log.append_pending("call.decided", json!({})).unwrap();
    assert_eq!(next.wait().unwrap().seq, 2);
    assert_eq!(log.syncs(), 1, "one fsync covered both");
    assert_eq!(verify_file(&path).unwrap().records, 2);
}

/// A record nobody waits for, with no other after it, is still synced:
/// once it is due.
#[test]
fn an_unawaited_record_alone_is_synced_when_due() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Always).unwrap();
    log.set_unawaited_within(std::time::Duration::from_millis(5));
    log.append_pending("call.completed", json!({}))
        .unwrap()
        .unawaited();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.syncs() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(log.syncs(), 1, "never synced");
}

/// Dropping the log syncs what was written before the `fsync` thread
/// stops, so a record handed back as pending is never left behind.
#[test]
fn closing_the_log_syncs_what_is_written() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path, FsyncMode::Always).unwrap();
    let paused = log.pause_syncs();
    let pending = log.append_pending("call.decided", json!({})).unwrap();
    drop(paused);
    let waiter = std::thread::spawn(move || pending.wait().map(|r| r.seq));
    drop(log);
    assert_eq!(waiter.join().unwrap().unwrap(), 1);
}

/// The `fsync` thread is woken only while it waits (a record written
/// while it syncs is seen when it looks again): writers that wait for
/// their records, mixed with records nobody waits for, all finish, and no
/// wake-up is lost. A lost one leaves a writer waiting for ever; here that
/// fails after 60 s instead.
#[test]
fn fsync_always_loses_no_wake_up_under_concurrent_writers() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 100;
    let (_dir, path) = temp_log();
    let log = Arc::new(AuditLog::open(&path, FsyncMode::Always).unwrap());
    let (done, finished) = std::sync::mpsc::channel();
    for t in 0..THREADS {
        let (log, done) = (Arc::clone(&log), done.clone());
        std::thread::spawn(move || {
            for i in 0..PER_THREAD {
                let pending = log
                    .append_pending("call.decided", json!({"thread": t, "i": i}))
                    .unwrap();
                if i % 3 == 0 {
                    pending.unawaited();
                } else {
                    pending.wait().unwrap();
                }
            }
            done.send(t).unwrap();
        });
    }
    for _ in 0..THREADS {
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a writer still waits for its record's fsync");
    }
    assert!(log.syncs() < THREADS * PER_THREAD, "{} fsyncs", log.syncs());
    drop(log);
    assert_eq!(verify_file(&path).unwrap().records, THREADS * PER_THREAD);
}

#[test]
fn concurrent_appends_make_one_valid_chain() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50;
    let (_dir, path) = temp_log();
    let log = Arc::new(AuditLog::open(&path, FsyncMode::Never).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        log.append("call.decided", json!({"thread": t, "i": i}))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=THREADS * PER_THREAD).collect::<Vec<_>>());
    assert_eq!(verify_file(&path).unwrap().records, THREADS * PER_THREAD);
}

#[test]
fn audit_log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AuditLog>();
}

#[test]
fn empty_log_is_valid() {
    let summary = verify_bytes(b"").unwrap();
    assert_eq!(
        summary,
        VerifySummary {
            records: 0,
            head: GENESIS_HASH.into()
        }
    );
}

#[test]
fn missing_file_is_reported_without_a_line() {
    let (_dir, path) = temp_log();
    let err = verify_file(&path).unwrap_err();
    assert_eq!(err.line, 0);
    assert!(err.to_string().starts_with("cannot open"), "{err}");
}

#[test]
fn error_display_names_line_and_seq() {
    let err = VerifyError {
        line: 7,
        seq: Some(7),
        reason: "hash mismatch: record was modified".into(),
    };
    assert_eq!(
        err.to_string(),
        "line 7 (seq 7): hash mismatch: record was modified"
    );
    let err = VerifyError {
        line: 2,
        seq: None,
        reason: "unparsable: x".into(),
    };
    assert_eq!(err.to_string(), "line 2: unparsable: x");
}

mod tampering {
    use super::*;

    fn log_lines(n: u64) -> Vec<String> {
        let (_dir, path) = temp_log();
        write_log(&path, n);
        read_lines(&path)
    }

    #[test]
    fn one_byte_changed_in_a_value() {
        let mut lines = log_lines(6);
        lines[2] = lines[2].replacen("/srv/2", "/srv/3", 1);
        expect_break(&lines, 3, Some(3), "hash mismatch: record was modified");
    }

    #[test]
    fn whitespace_added() {
        let mut lines = log_lines(6);
        lines[3] = lines[3].replacen(":", ": ", 1);
        expect_break(&lines, 4, Some(4), "not canonical");
        let mut lines = log_lines(3);
        lines[1].push(' ');
        expect_break(&lines, 2, Some(2), "not canonical");
    }

    #[test]
    fn keys_reordered() {
        let mut lines = log_lines(3);
        // Same value, different key order: only the byte comparison sees it.
        let rec = parse(&lines[1]);
        let mut reordered: Vec<String> = rec
            .iter()
            .map(|(k, v)| format!("{}:{}", json!(k), canonical_json(v)))
            .collect();
        reordered.sort();
        reordered.reverse();
        lines[1] = format!("{{{}}}", reordered.join(","));
        expect_break(&lines, 2, Some(2), "not canonical");
    }

    #[test]
    fn two_lines_swapped() {
        let mut lines = log_lines(6);
        lines.swap(2, 3);
        expect_break(&lines, 3, Some(4), "out of order");
    }

    #[test]
    fn middle_line_deleted() {
        let mut lines = log_lines(6);
        lines.remove(2);
        expect_break(&lines, 3, Some(4), "missing record");
    }

    #[test]
    fn first_line_deleted() {
        let mut lines = log_lines(6);
        lines.remove(0);
        expect_break(&lines, 1, Some(2), "missing record");
    }

    #[test]
    fn copied_line_inserted() {
        let mut lines = log_lines(6);
        let copy = lines[1].clone();
        lines.insert(5, copy);
        expect_break(&lines, 6, Some(2), "out of order");

        let mut lines = log_lines(6);
        let copy = lines[1].clone();
        lines.insert(2, copy);
        expect_break(&lines, 3, Some(2), "out of order");
    }

    #[test]
    fn record_edited_and_rehashed_is_caught_by_the_next_prev() {
        let mut lines = log_lines(6);
        let mut rec = parse(&lines[2]);
        rec.insert("result".into(), json!("allow-forged"));
        rec.remove("hash");
        let hash = sha256_tagged(canonical_json(&Value::Object(rec.clone())).as_bytes());
        rec.insert("hash".into(), json!(hash));
        lines[2] = canonical_json(&Value::Object(rec));
        expect_break(&lines, 4, Some(4), "chain broken");
    }

    #[test]
    fn final_newline_removed() {
        let lines = log_lines(3);
        let mut bytes = join_lines(&lines);
        bytes.pop();
        let err = verify_bytes(&bytes).unwrap_err();
        assert_eq!((err.line, err.seq), (3, Some(3)), "{err}");
        assert!(err.reason.starts_with("torn write"), "{err}");
    }

    #[test]
    fn garbage_and_blank_lines() {
        let mut lines = log_lines(3);
        lines.insert(1, String::new());
        expect_break(&lines, 2, None, "unparsable");
        let mut lines = log_lines(3);
        lines[2] = "[1,2]".into();
        expect_break(&lines, 3, None, "unparsable");
    }

    /// Flip bits in single bytes of a 50-record log: verification must fail,
    /// and name the line that holds the changed byte. Every byte of the first,
    /// second, a middle and the last line is tried (the first and last records
    /// have special roles in the chain), then 500 pseudo-random positions with
    /// random bit patterns. Sweeping every byte of the file works too but takes
    /// about 40 s in a debug build.
    #[test]
    fn any_single_byte_change_is_detected() {
        const RECORDS: u64 = 50;
        const SAMPLES: usize = 500;
        const FULLY_SWEPT_LINES: [u64; 4] = [1, 2, RECORDS / 2, RECORDS];
        let lines = log_lines(RECORDS);
        let original = join_lines(&lines);
        assert_eq!(verify_bytes(&original).unwrap().records, RECORDS);
        // Line number (1-based) of every byte.
        let mut line_of = Vec::with_capacity(original.len());
        let mut line = 1u64;
        for b in &original {
            line_of.push(line);
            if *b == b'\n' {
                line += 1;
            }
        }
        let check = |pos: usize, flip: u8| {
            let mut bytes = original.clone();
            bytes[pos] ^= flip;
            match verify_bytes(&bytes) {
                Ok(_) => panic!("flipping byte {pos} with {flip:#04x} went unnoticed"),
                Err(err) => assert_eq!(err.line, line_of[pos], "byte {pos}: {err}"),
            }
        };
        for pos in (0..original.len()).filter(|p| FULLY_SWEPT_LINES.contains(&line_of[*p])) {
            check(pos, 0x01);
        }
        // Fixed-seed LCG: reproducible without a rand dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..SAMPLES {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let pos = (state >> 33) as usize % original.len();
            let flip = ((state >> 17) as u8).max(1);
            check(pos, flip);
        }
    }
}

/// A record whose hash was computed by an independent implementation (Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"))` and `hashlib.sha256`):
/// pins the format, so a change to canonical form or hashing shows up here.
const GOLDEN_RECORD: &str = r#"{"decision_id":"d-1","event":"call.decided","hash":"sha256:9a559ca5c53a652fef681e1b335327f181a15f1a421e5541ccade55f1dc932b2","input":{"password":"***","path":"/srv/x"},"prev":"sha256:0000000000000000000000000000000000000000000000000000000000000000","result":"allow","seq":1,"server":"filesystem","tool":"write_file","ts":"2026-11-22T10:00:00.123Z"}"#;

#[test]
fn golden_record_from_an_independent_implementation_verifies() {
    let line = format!("{GOLDEN_RECORD}\n");
    let summary = verify_bytes(line.as_bytes()).unwrap();
    assert_eq!(summary.records, 1);
    assert_eq!(
        summary.head,
        "sha256:9a559ca5c53a652fef681e1b335327f181a15f1a421e5541ccade55f1dc932b2"
    );
}
