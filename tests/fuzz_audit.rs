//! Fuzz target: the audit chain verifier (`audit::verify_reader`).
//!
//! A valid log is written with the real `AuditLog` (random events and
//! bodies: every JSON number kind, any Unicode, nesting), then mutated (byte
//! flips, insertions, deletions, line deletions, swaps, duplications,
//! truncation inside a line). Invariants:
//! - the original verifies, with `records` = number of lines and `head` = the
//!   last record's hash;
//! - a mutated log verifies only if it is byte-identical to the original or
//!   is the original cut after a whole line (dropping records off the end
//!   is undetectable from the file alone: the documented limit), or is
//!   another valid chain altogether (ditto);
//! - whenever `verify_reader` accepts anything (also arbitrary bytes), an
//!   independent re-implementation in this file agrees the chain is intact:
//!   each line is its own canonical form (keys sorted by byte order, no
//!   whitespace), `hash` = sha256 of the record without `hash`, `seq` counts
//!   from 1, `prev` is the previous hash (zeros first).

mod fuzz_support;

use std::collections::BTreeMap;

use fuzz_support::*;
use mcp_firewall::audit::{AuditLog, FsyncMode, verify_reader};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

// ---- independent checker ----

fn canon(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&[u8], (&String, &Value)> =
                m.iter().map(|(k, v)| (k.as_bytes(), (k, v))).collect();
            out.push('{');
            for (i, (_, (k, v))) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                canon(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
}

/// `Some((records, head))` if `log` is an intact chain by this file's own
/// reading of the format.
fn independent_check(log: &[u8]) -> Option<(u64, String)> {
    if log.is_empty() {
        return Some((0, GENESIS.into()));
    }
    let body = log.strip_suffix(b"\n")?;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for line in body.split(|b| *b == b'\n') {
        let v: Value = serde_json::from_slice(line).ok()?;
        let mut s = String::new();
        canon(&v, &mut s);
        if s.as_bytes() != line {
            return None;
        }
        let mut m = v.as_object()?.clone();
        let hash = m.remove("hash")?.as_str()?.to_string();
        n += 1;
        if m.get("seq")?.as_u64()? != n || m.get("prev")?.as_str()? != prev {
            return None;
        }
        m.get("ts")?.as_str()?;
        m.get("event")?.as_str()?;
        let mut without = String::new();
        canon(&Value::Object(m), &mut without);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(without.as_bytes())));
        if digest != hash {
            return None;
        }
        prev = hash;
    }
    Some((n, prev))
}

fn verify(log: &[u8]) -> Result<(u64, String), String> {
    verify_reader(log)
        .map(|s| (s.records, s.head))
        .map_err(|e| e.to_string())
}

/// Accepted by the verifier => intact by the independent check, same
/// count and head.
fn check_acceptance_is_sound(log: &[u8]) {
    if let Ok(got) = verify(log) {
        assert_eq!(
            independent_check(log),
            Some(got),
            "verifier accepted a log the independent check rejects: {:?}",
            String::from_utf8_lossy(log)
        );
    }
}

// ---- generating logs ----

/// A body the writer accepts: an object without the reserved fields.
fn body() -> impl Strategy<Value = Map<String, Value>> {
    prop_oneof![json_object(), proptest::sample::select(corpus_bodies()),].prop_map(|mut m| {
        for f in ["seq", "ts", "event", "prev", "hash"] {
            m.remove(f);
        }
        m
    })
}

fn corpus_bodies() -> Vec<Map<String, Value>> {
    corpus_bytes("audit")
        .into_iter()
        .map(|b| match serde_json::from_slice(&b).unwrap() {
            Value::Object(m) => m,
            other => panic!("audit corpus entries are objects: {other}"),
        })
        .collect()
}

fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec!["call.decided", "session.started", "upstream.exited"])
            .prop_map(String::from),
        any_text().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn write_log(records: &[(String, Map<String, Value>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, FsyncMode::Never).unwrap();
    for (event, body) in records {
        log.append(event, Value::Object(body.clone())).unwrap();
    }
    drop(log);
    std::fs::read(&path).unwrap()
}

#[derive(Debug, Clone)]
enum LogEdit {
    Bytes(Vec<Mutation>),
    DeleteLine(Index),
    SwapLines(Index, Index),
    DuplicateLine(Index, Index),
    /// Cut the file inside a line (not at a line end).
    TruncateInLine(Index, Index),
    /// Replace one line by a line of another valid log (same seq).
    Transplant(Index),
}

fn log_edit() -> impl Strategy<Value = LogEdit> {
    prop_oneof![
        4 => proptest::collection::vec(mutation(), 1..4).prop_map(LogEdit::Bytes),
        1 => any::<Index>().prop_map(LogEdit::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LogEdit::SwapLines(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LogEdit::DuplicateLine(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LogEdit::TruncateInLine(a, b)),
        1 => any::<Index>().prop_map(LogEdit::Transplant),
    ]
}

fn lines_of(log: &[u8]) -> Vec<Vec<u8>> {
    // Each element keeps its `\n`.
    log.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply_edit(log: &[u8], other: &[u8], edit: &LogEdit) -> Vec<u8> {
    let mut lines = lines_of(log);
    let n = lines.len();
    match edit {
        LogEdit::Bytes(m) => return apply(log.to_vec(), m),
        _ if n == 0 => return log.to_vec(),
        LogEdit::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        LogEdit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        LogEdit::DuplicateLine(a, b) => {
            let line = lines[a.index(n)].clone();
            lines.insert(b.index(n + 1), line);
        }
        LogEdit::TruncateInLine(a, b) => {
            let i = a.index(n);
            let keep = b.index(lines[i].len()); // < len: the `\n` is lost at least
            lines[i].truncate(keep);
            lines.truncate(i + 1);
        }
        LogEdit::Transplant(i) => {
            let others = lines_of(other);
            let i = i.index(n);
            if let Some(line) = others.get(i) {
                lines[i] = line.clone();
            }
        }
    }
    lines.concat()
}

fn records() -> impl Strategy<Value = Vec<(String, Map<String, Value>)>> {
    proptest::collection::vec((event(), body()), 0..8)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn mutated_logs_are_rejected(
        recs in records(),
        other_recs in records(),
        edits in proptest::collection::vec(log_edit(), 1..3),
    ) {
        let original = write_log(&recs);
        // The original verifies, and the independent check agrees.
        let summary = verify(&original);
        prop_assert_eq!(&summary, &independent_check(&original).ok_or("independent".to_string()));
        prop_assert_eq!(summary.as_ref().unwrap().0, recs.len() as u64);

        let other = write_log(&other_recs);
        let mut mutated = original.clone();
        for edit in &edits {
            mutated = apply_edit(&mutated, &other, edit);
        }
        // The documented limits: records dropped off the end, or the whole
        // file replaced by another valid chain (here: the other log, which
        // a transplanted first line turns a one-record log into).
        let whole_line_prefix = |of: &[u8]| {
            of.starts_with(&mutated) && (mutated.is_empty() || mutated.last() == Some(&b'\n'))
        };
        let result = verify(&mutated);
        if mutated == original || whole_line_prefix(&original) || whole_line_prefix(&other) {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            prop_assert!(
                result.is_err(),
                "accepted a tampered log (edits {:?}):\n{}",
                edits,
                String::from_utf8_lossy(&mutated)
            );
        }
        check_acceptance_is_sound(&mutated);
    }

    #[test]
    fn arbitrary_bytes_never_verify_unsoundly(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            mutated(corpus_bytes("audit"), 6),
        ],
    ) {
        check_acceptance_is_sound(&bytes);
    }
}

#[test]
fn audit_corpus_bodies_round_trip() {
    // Every corpus body, logged one after another, verifies.
    let recs: Vec<_> = corpus_bodies()
        .into_iter()
        .map(|b| ("call.decided".to_string(), b))
        .collect();
    let log = write_log(&recs);
    assert_eq!(verify(&log).unwrap().0, recs.len() as u64);
    assert!(independent_check(&log).is_some());
}
