//! The record format, shared by the writer and the verifier.
//!
//! Job: say what one audit line is, build ("seal") a record, and check that one
//! line is a well-formed, self-consistent record. Linking a record to its
//! neighbours (`seq`, `prev`) is the verifier's job; here we only look at one line.
//!
//! A record is one JSON object on one line, in canonical form
//! ([`canonical_json`]), followed by `\n`. Besides the caller's fields it carries:
//!
//! | field | meaning |
//! |---|---|
//! | `seq` | 1, 2, 3 ... with no gaps |
//! | `ts` | RFC 3339 UTC, milliseconds: `2026-11-22T10:00:00.123Z` |
//! | `event` | what happened, e.g. `call.decided` |
//! | `prev` | `hash` of the previous record, [`GENESIS_HASH`] for the first |
//! | `hash` | `sha256_tagged(canonical_json(record without "hash"))` |
//!
//! Invariant: a line accepted by [`check_line`] is byte-for-byte the canonical
//! form of the object it parses to, and its `hash` matches its content.

use serde_json::{Map, Value};

use super::canonical::{Canonical, canonical_json, sha256_tagged, write_string};

pub const SEQ: &str = "seq";
pub const TS: &str = "ts";
pub const EVENT: &str = "event";
pub const PREV: &str = "prev";
pub const HASH: &str = "hash";

/// Fields the log owns; a caller's body may not set them.
pub const RESERVED_FIELDS: [&str; 5] = [SEQ, TS, EVENT, PREV, HASH];

/// The `prev` of the first record: the tagged hash form with all-zero digits.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Largest record line (without its `\n`) the writer will write and the
/// verifier will read. It bounds the memory both need per line, and lets
/// `AuditLog::open` find the last record by reading backwards at most this far.
/// 16 MiB is far above any MCP tool call we expect to log; a bigger one is
/// refused (and so the call denied) rather than left unreadable.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// What [`check_line`] learns from a good line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
}

/// Why a line is not a good record. `seq` is filled in whenever the line parsed
/// far enough to have one, so errors can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFault {
    pub seq: Option<u64>,
    pub reason: String,
}

/// A record's own fields in canonical form, sorted by key: all but the
/// log's (`seq`, `ts`, `event`, `prev`, `hash`), which only the writer
/// knows, under its lock. Rendered before the lock is taken, so concurrent
/// writers wait only for sealing and the write.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// `body`'s fields and `rendered`'s (key, value already in canonical
    /// form); a key must not be in both. The log's fields in `body` are
    /// left out (the writer refuses such a body before this).
    pub fn render(body: Map<String, Value>, rendered: Vec<(String, Canonical)>) -> Fields {
        let mut entries: Vec<(String, String)> = body
            .into_iter()
            .filter(|(k, _)| !RESERVED_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k, canonical_json(&v)))
            .chain(rendered.into_iter().map(|(k, v)| (k, v.into_string())))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Fields(entries)
    }
}

/// Add the log's fields to `fields`, hash the record, and return
/// `(hash, line)` where `line` is the canonical record including `hash`,
/// without the trailing `\n`.
pub fn seal(fields: &Fields, seq: u64, ts: &str, event: &str, prev: &str) -> (String, String) {
    let quoted = |s: &str| {
        let mut out = String::with_capacity(s.len() + 2);
        write_string(s, &mut out);
        out
    };
    let log = [
        (SEQ, seq.to_string()),
        (TS, quoted(ts)),
        (EVENT, quoted(event)),
        (PREV, quoted(prev)),
    ];
    // Performance: each top-level entry is serialized once. The hashed
    // text is the canonical record without `hash`; the line is the same
    // entries with `"hash":...` spliced in at its sorted place, which is
    // exactly `canonical_json` of the record with `hash` (checked by the
    // tests).
    let mut entries: Vec<(&str, &str)> = fields
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(log.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let join = |entries: &[(&str, &str)], out: &mut String| {
        for (key, value) in entries {
            if out.len() > 1 {
                out.push(',');
            }
            write_string(key, out);
            out.push(':');
            out.push_str(value);
        }
    };
    let mut unhashed = String::from("{");
    join(&entries, &mut unhashed);
    unhashed.push('}');
    let hash = sha256_tagged(unhashed.as_bytes());
    let at = entries.partition_point(|(k, _)| *k < HASH);
    let mut line = String::with_capacity(unhashed.len() + hash.len() + 10);
    line.push('{');
    join(&entries[..at], &mut line);
    if line.len() > 1 {
        line.push(',');
    }
    write_string(HASH, &mut line);
    line.push(':');
    write_string(&hash, &mut line);
    join(&entries[at..], &mut line);
    line.push('}');
    (hash, line)
}

/// Check one line (without its `\n`): JSON object, canonical bytes, required
/// fields present with the right types, and `hash` matching the content.
pub fn check_line(line: &[u8]) -> Result<RecordHead, LineFault> {
    let fault = |seq, reason: String| LineFault { seq, reason };
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| fault(None, format!("unparsable: not valid JSON ({e})")))?;
    let seq = value.get(SEQ).and_then(Value::as_u64);
    // Compare bytes before anything else about the content: it catches edits
    // that parse to the same value (whitespace, key order, escapes, duplicate
    // keys), which the hash alone cannot see.
    let canonical_bytes_match = canonical_json(&value).as_bytes() == line;
    let Value::Object(mut map) = value else {
        return Err(fault(None, "unparsable: not a JSON object".into()));
    };
    if !canonical_bytes_match {
        return Err(fault(
            seq,
            "not canonical: bytes differ from the canonical form \
             (whitespace, key order or escaping changed)"
                .into(),
        ));
    }
    let Some(seq) = seq.filter(|s| *s >= 1) else {
        return Err(fault(
            None,
            format!("missing field: `{SEQ}` must be an integer >= 1"),
        ));
    };
    let string_field = |name: &str| match map.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(fault(
            Some(seq),
            format!("missing field: `{name}` must be a string"),
        )),
    };
    string_field(TS)?;
    string_field(EVENT)?;
    let prev = string_field(PREV)?;
    let hash = string_field(HASH)?;
    map.remove(HASH);
    let recomputed = sha256_tagged(canonical_json(&Value::Object(map)).as_bytes());
    if recomputed != hash {
        return Err(fault(
            Some(seq),
            "hash mismatch: record was modified".into(),
        ));
    }
    Ok(RecordHead { seq, prev, hash })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("test body must be an object"),
        }
    }

    #[test]
    fn sealed_line_checks() {
        let ts = "2026-11-22T10:00:00.123Z".to_string();
        let (hash, line) = seal(
            &Fields::render(body(json!({"tool": "x"})), Vec::new()),
            1,
            &ts,
            "call.decided",
            GENESIS_HASH,
        );
        let head = check_line(line.as_bytes()).unwrap();
        assert_eq!(
            head,
            RecordHead {
                seq: 1,
                prev: GENESIS_HASH.into(),
                hash
            }
        );
    }

    #[test]
    fn faults_name_the_reason() {
        let (_, line) = seal(
            &Fields::render(body(json!({"a": 1})), Vec::new()),
            3,
            "t",
            "e",
            GENESIS_HASH,
        );
        let spaced = line.replacen(',', ", ", 1);
        let f = check_line(spaced.as_bytes()).unwrap_err();
        assert_eq!(f.seq, Some(3));
        assert!(f.reason.starts_with("not canonical"), "{}", f.reason);

        let edited = line.replace("\"a\":1", "\"a\":2");
        let f = check_line(edited.as_bytes()).unwrap_err();
        assert!(f.reason.starts_with("hash mismatch"), "{}", f.reason);

        let f = check_line(b"[1]").unwrap_err();
        assert!(f.reason.starts_with("unparsable"), "{}", f.reason);
        let f = check_line(b"{\"seq\":1").unwrap_err();
        assert!(f.reason.starts_with("unparsable"), "{}", f.reason);
        let f = check_line(br#"{"seq":1}"#).unwrap_err();
        assert!(f.reason.starts_with("missing field"), "{}", f.reason);
    }

    #[test]
    fn sealed_line_is_the_canonical_record() {
        let b = body(json!({"a": {"z": 1, "b": [true, null]}, "zz": "é\"", "h": 2, "i": 3}));
        let fields = Fields::render(b.clone(), Vec::new());
        let (hash, line) = seal(&fields, 7, "t", "e", GENESIS_HASH);
        let mut record = b;
        record.insert(SEQ.into(), json!(7));
        record.insert(TS.into(), json!("t"));
        record.insert(EVENT.into(), json!("e"));
        record.insert(PREV.into(), json!(GENESIS_HASH));
        assert_eq!(
            hash,
            sha256_tagged(canonical_json(&Value::Object(record.clone())).as_bytes())
        );
        record.insert(HASH.into(), json!(hash));
        assert_eq!(line, canonical_json(&Value::Object(record)));
    }

    /// Fields handed over already rendered seal exactly as the same fields
    /// in the body, wherever they sort (before and after `hash` too).
    #[test]
    fn rendered_fields_seal_as_the_body_would() {
        let whole =
            body(json!({"a": [1, {"y": 2, "x": "é"}], "input": {"k": null}, "m": 1, "z": "t"}));
        for moved in [&["a"][..], &["input", "z"], &["a", "input", "m", "z"]] {
            let mut rest = whole.clone();
            let rendered = moved
                .iter()
                .map(|k| (k.to_string(), Canonical::of(&rest.remove(*k).unwrap())))
                .collect();
            let split = seal(&Fields::render(rest, rendered), 9, "t", "e", GENESIS_HASH);
            let whole_fields = Fields::render(whole.clone(), Vec::new());
            let together = seal(&whole_fields, 9, "t", "e", GENESIS_HASH);
            assert_eq!(split, together, "{moved:?}");
        }
    }

    #[test]
    fn genesis_hash_has_the_tagged_shape() {
        assert_eq!(GENESIS_HASH.len(), "sha256:".len() + 64);
    }
}
