//! Shared pieces of the property-based fuzz targets (`tests/fuzz_*.rs`).
//!
//! The targets run on stable as plain `cargo test` with proptest: a fixed,
//! small number of cases by default (CI), more with `FUZZ_CASES=N`, a fixed
//! seed with `FUZZ_SEED=N`. Each target also replays its seed corpus
//! (`fuzz/corpus/<target>/`) as-is and uses it as the starting points of
//! byte-level mutations. See `docs/fuzzing.md`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Number, Value};

/// Cases per property: `FUZZ_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The proptest configuration every target uses: `cases(default)` cases, no
/// regression files written next to the sources (findings become named
/// tests in `tests/regression.rs` instead), and `FUZZ_SEED` for a
/// reproducible run.
pub fn config(default: u32) -> Config {
    let mut config = Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    };
    if let Some(seed) = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()) {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config
}

pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of `fuzz/corpus/<target>/`, sorted by name, as `(name, bytes)`.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let out: Vec<_> = entries
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    assert!(!out.is_empty(), "corpus {} is empty", dir.display());
    out
}

/// The corpus entries' bytes only.
pub fn corpus_bytes(target: &str) -> Vec<Vec<u8>> {
    corpus(target).into_iter().map(|(_, b)| b).collect()
}

/// One byte-level edit, positions taken modulo the current length.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    /// Replace one byte by another (possibly the same).
    Set(Index, u8),
    /// Repeat a slice right after itself.
    Duplicate(Index, Index),
    /// Cut everything from here on.
    Truncate(Index),
    /// Insert one of the `TOKENS`.
    Token(Index, Index),
    /// Swap two bytes.
    Swap(Index, Index),
}

/// Bytes that tend to matter to JSON, TOML and our own formats.
pub const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1.5",
    b"1e999",
    b"-0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\"2.0\"",
    b"\"id\"",
    b"\"method\"",
    b"\"params\"",
    b"\"result\"",
    b"\"error\"",
    b"__",
    b"${",
    b"[[upstream]]",
    b"\n",
    b"\r",
    b" ",
    b"\xff",
    b"\xc3\xa9",
    b"v1,",
    b"whsec_",
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

/// Apply `edits` in order.
pub fn apply(mut data: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for edit in edits {
        let len = data.len();
        // A position in 0..len (or 0 for an empty buffer) and one in 0..=len.
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        let gap = |i: &Index| i.index(len + 1);
        match edit {
            Mutation::Flip(i, m) if len > 0 => data[at(i)] ^= m,
            Mutation::Insert(i, b) => data.insert(gap(i), *b),
            Mutation::Delete(i) if len > 0 => {
                data.remove(at(i));
            }
            Mutation::Set(i, b) if len > 0 => data[at(i)] = *b,
            Mutation::Duplicate(i, n) if len > 0 => {
                let start = at(i);
                let end = start + 1 + n.index(len - start);
                let slice = data[start..end].to_vec();
                data.splice(end..end, slice);
            }
            Mutation::Truncate(i) => data.truncate(gap(i)),
            Mutation::Token(i, t) => {
                let token = TOKENS[t.index(TOKENS.len())];
                let pos = gap(i);
                data.splice(pos..pos, token.iter().copied());
            }
            Mutation::Swap(i, j) if len > 0 => data.swap(at(i), at(j)),
            _ => {}
        }
    }
    data
}

/// A seed from `seeds` with up to `max_edits` mutations applied.
pub fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(mutation(), 0..=max_edits),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits))
}

/// Strings that stress encoders: ASCII words, any Unicode (control
/// characters, surrogates' neighbours, astral planes), JSON-ish text.
pub fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./-]{0,12}",
        proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
        "[\\x00-\\x1f\"\\\\/ \u{7f}\u{80}\u{2028}\u{feff}\u{10ffff}]{0,6}",
    ]
}

/// Any JSON value: every number kind serde_json can hold (i64, u64, finite
/// f64), strings from [`any_text`], nesting up to a few levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        proptest::num::f64::ANY
            .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(any_text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object with keys from [`any_text`].
pub fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(any_text(), json_value(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

// ---- JSON-RPC: what a line should become (an oracle written from the spec) ----

/// What the firewall must make of one line, decided from JSON-RPC 2.0 and
/// the crate's documented choices (no batches, ids are strings or integers),
/// without calling the crate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Only whitespace: ignored, no answer.
    Blank,
    /// Not JSON (or not UTF-8): -32700 with id null.
    Parse,
    /// JSON but not a valid message: -32600 with this id (null when the
    /// message had none usable).
    Invalid(Value),
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        body: Result<Value, Value>,
    },
}

pub fn usable_id(id: &Value) -> bool {
    id.is_string() || id.is_u64() || id.is_i64()
}

pub fn expect_line(line: &[u8]) -> Expect {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Expect::Blank;
    }
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Expect::Parse;
    };
    let Value::Object(obj) = value else {
        return Expect::Invalid(Value::Null);
    };
    let id = obj.get("id").cloned();
    if id.as_ref().is_some_and(|id| !usable_id(id)) {
        return Expect::Invalid(Value::Null);
    }
    let answer_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Expect::Invalid(answer_id);
    }
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !(params.is_null() || params.is_object() || params.is_array()) {
        return Expect::Invalid(answer_id);
    }
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => Expect::Request {
            id,
            method: m.clone(),
            params,
        },
        (Some(Value::String(m)), None) => Expect::Notification {
            method: m.clone(),
            params,
        },
        (Some(_), id) => Expect::Invalid(id.unwrap_or(Value::Null)),
        (None, None) => Expect::Invalid(Value::Null),
        (None, Some(id)) => match (obj.get("result"), obj.get("error")) {
            (Some(r), None) => Expect::Response {
                id,
                body: Ok(r.clone()),
            },
            (None, Some(e)) if e.is_object() => Expect::Response {
                id,
                body: Err(e.clone()),
            },
            _ => Expect::Invalid(id),
        },
    }
}

/// Panics unless `v` is a JSON-RPC 2.0 error response: `jsonrpc` "2.0", an
/// `id` that is null or usable, an `error` object with an integer `code` and
/// a string `message`, and no `result`.
pub fn assert_error_response(v: &Value) -> i64 {
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    let id = v.get("id").unwrap_or_else(|| panic!("no id: {v}"));
    assert!(id.is_null() || usable_id(id), "bad id: {v}");
    assert!(v.get("result").is_none(), "error with result: {v}");
    let error = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    assert!(error["message"].is_string(), "message not a string: {v}");
    error["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("code not an integer: {v}"))
}

/// Panics unless `v` is a JSON-RPC 2.0 response (result xor error).
pub fn assert_response(v: &Value) {
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert!(v.get("method").is_none(), "{v}");
    match (v.get("result"), v.get("error")) {
        (Some(_), None) => {}
        (None, Some(_)) => {
            assert_error_response(v);
        }
        _ => panic!("response needs exactly one of result/error: {v}"),
    }
}

// ---- structured JSON-RPC envelopes ----

/// A JSON member that may be absent.
fn member(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 4 => values.prop_map(Some)]
}

pub fn id_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(0)),
        any_text().prop_map(Value::String),
        "[a-z0-9-]{1,80}".prop_map(Value::String),
        Just(Value::from(1.5)),
        Just(Value::Null),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1])),
        Just(Value::Bool(true)),
    ]
}

/// Method names: the ones the firewall knows, MCP ones it refuses, noise.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "server/discover",
    "rpc.discover",
    "",
];

pub fn method_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::sample::select(METHODS).prop_map(Value::from),
        2 => any_text().prop_map(Value::String),
        1 => json_value(),
    ]
}

/// A JSON object shaped like a JSON-RPC message, every member possibly
/// missing, mistyped or extra.
pub fn envelope() -> impl Strategy<Value = Value> {
    (
        member(prop_oneof![
            6 => Just(Value::from("2.0")),
            1 => Just(Value::from("1.0")),
            1 => Just(Value::from(2.0)),
            1 => json_value(),
        ]),
        member(id_value()),
        member(method_value()),
        member(prop_oneof![
            3 => json_object().prop_map(Value::Object),
            1 => proptest::collection::vec(json_value(), 0..3).prop_map(Value::Array),
            1 => json_value(),
        ]),
        member(json_value()),
        member(prop_oneof![
            2 => (any::<i64>(), any_text())
                .prop_map(|(c, m)| serde_json::json!({"code": c, "message": m})),
            1 => json_value(),
        ]),
        proptest::option::of((any_text(), json_value())),
    )
        .prop_map(|(jsonrpc, id, method, params, result, error, extra)| {
            let mut obj = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    obj.insert(k.to_string(), v);
                }
            };
            put("jsonrpc", jsonrpc);
            put("id", id);
            put("method", method);
            put("params", params);
            // A request with a result/error is rare; keep them mostly on
            // messages without a method so responses get exercised.
            put("result", result);
            put("error", error);
            if let Some((k, v)) = extra {
                obj.entry(k).or_insert(v);
            }
            Value::Object(obj)
        })
}
