//! Fuzz target: the JSON-RPC path end to end through the real binary.
//!
//! `mcp-firewall run` (allow-all policy) wraps the fixture server; after
//! `initialize`, a run sends `FUZZ_E2E_MESSAGES` (default 200) random lines:
//! garbage bytes, structured-but-wrong envelopes, huge and odd ids, unknown
//! methods, `tools/call` with random names and arguments, mutated corpus
//! lines, interleaved with valid pings. Invariants:
//! - every line that is a request with a usable id gets exactly one
//!   response with that id (result xor a well-formed error), and an invalid
//!   message with a usable id exactly one -32600 with that id;
//! - every unusable line gets exactly one error with id null: -32700 for
//!   non-JSON, -32600 otherwise; blank lines, notifications and stray
//!   responses get nothing;
//! - stdout carries only JSON-RPC (one JSON object per line);
//! - the process never exits, and a final valid `tools/call` still works.
//!
//! Lines that could legitimately go unanswered or take long are left out
//! (tools that crash the fixture, write files, sleep, or wait for the
//! client: `crash`, `write_file`, `slow`, `sample`, `elicit`,
//! `list_roots`; a `notifications/cancelled` naming one of our ids).

mod common;
mod fuzz_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::*;
use fuzz_support::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const UNSAFE_TOOLS: &[&str] = &[
    "crash",
    "write_file",
    "slow",
    "sample",
    "elicit",
    "list_roots",
];
const TOOLS: &[&str] = &[
    "echo",
    "add",
    "read_note",
    "write_note",
    "delete_note",
    "log",
    "fail",
    "add_tool",
    "extra",
    "nope",
    "",
    "echo ",
    "ECHO",
    "upstream__echo",
];

fn runs() -> u32 {
    env_u32("FUZZ_E2E_RUNS", 2)
}

fn messages() -> usize {
    env_u32("FUZZ_E2E_MESSAGES", 200) as usize
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    let ping = id_value().prop_map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
    let tool_call = (
        id_value(),
        proptest::sample::select(TOOLS),
        prop_oneof![
            3 => json_object().prop_map(Value::Object),
            1 => json_value(),
            1 => Just(json!({"text": "hi"})),
            1 => Just(json!({"a": 1, "b": -2})),
            1 => Just(json!({"a": u64::MAX, "b": 1})),
        ],
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(id, name, arguments, with_args)| {
            let mut params = json!({"name": name});
            if with_args {
                params["arguments"] = arguments;
            }
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        });
    let known = (id_value(), proptest::sample::select(METHODS), json_object()).prop_map(
        |(id, method, params)| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    );
    let unknown = (id_value(), any_text(), json_value()).prop_map(
        |(id, method, params)| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    );
    let notification = (
        prop_oneof![
            proptest::sample::select(METHODS).prop_map(String::from),
            any_text(),
            Just("notifications/cancelled".to_string()),
        ],
        json_object(),
    )
        .prop_map(|(method, params)| json!({"jsonrpc": "2.0", "method": method, "params": params}));
    let encode = |v: Value| serde_json::to_vec(&v).unwrap();
    prop_oneof![
        4 => ping.prop_map(encode),
        3 => tool_call.prop_map(encode),
        2 => known.prop_map(encode),
        1 => unknown.prop_map(encode),
        1 => notification.prop_map(encode),
        3 => envelope().prop_map(encode),
        2 => proptest::collection::vec(any::<u8>(), 0..80),
        2 => mutated(corpus_bytes("jsonrpc"), 4),
        1 => Just(b"   ".to_vec()),
        1 => Just(br#"{"jsonrpc":"2.0","id":99999999999999999999999,"method":"ping"}"#.to_vec()),
    ]
    .prop_map(|mut line| {
        // One line each: a raw newline would split it.
        for b in &mut line {
            if *b == b'\n' {
                *b = b' ';
            }
        }
        line
    })
}

/// What we wait for after sending the lines.
#[derive(Default, Debug)]
struct Plan {
    lines: Vec<Vec<u8>>,
    /// id key -> Some(code) when the answer must be that error code.
    by_id: HashMap<String, (Value, Option<i64>)>,
    null_parse: usize,
    null_invalid: usize,
}

fn key(id: &Value) -> String {
    id.to_string()
}

fn is_unsafe(method: &str, params: &Value, ids: &HashSet<String>) -> bool {
    match method {
        "tools/call" => params
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| UNSAFE_TOOLS.contains(&n)),
        "notifications/cancelled" => params.get("requestId").is_some_and(|r| {
            ids.contains(&key(r)) || r.is_string() && r.as_str().unwrap().starts_with("fw-")
        }),
        _ => false,
    }
}

/// Keep the lines whose outcome is unambiguous and note what each must get.
fn plan(candidates: Vec<Vec<u8>>) -> Plan {
    let mut plan = Plan::default();
    let mut used: HashSet<String> = ["\"init\"", "\"barrier\"", "\"final\""]
        .into_iter()
        .map(String::from)
        .collect();
    for line in candidates {
        let expect = expect_line(&line);
        let claim = |id: &Value, code, plan: &mut Plan, used: &mut HashSet<String>| {
            let k = key(id);
            if id.as_str().is_some_and(|s| s.starts_with("fw-")) || !used.insert(k.clone()) {
                return false;
            }
            plan.by_id.insert(k, (id.clone(), code));
            true
        };
        let keep = match &expect {
            Expect::Blank => true,
            Expect::Parse => {
                plan.null_parse += 1;
                true
            }
            Expect::Invalid(Value::Null) => {
                plan.null_invalid += 1;
                true
            }
            Expect::Invalid(id) => claim(id, Some(-32600), &mut plan, &mut used),
            Expect::Request { id, method, params } => {
                !is_unsafe(method, params, &used) && claim(id, None, &mut plan, &mut used)
            }
            Expect::Notification { method, params } => !is_unsafe(method, params, &used),
            // A stray answer to a request we never got: ignored, unless it
            // names a relayed id (fw-N), which we never send.
            Expect::Response { id, .. } => !id.as_str().is_some_and(|s| s.starts_with("fw-")),
        };
        if keep {
            plan.lines.push(line);
        }
    }
    plan
}

struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_session(candidates: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    let plan = plan(candidates);
    let mut builder = Builder::new().arg("--").arg(fixture_bin());
    let (mut cmd, _audit) = builder.command();
    let dirs = builder.into_dirs();
    let stderr_path = dirs.last().unwrap().path().join("stderr.log");
    cmd.env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // Killed and reaped on every path, early failures included.
    let mut child = Reap(cmd.spawn().expect("start mcp-firewall"));
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = channel::<Result<Value, String>>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let msg = serde_json::from_str::<Value>(&line)
                .ok()
                .filter(Value::is_object)
                .ok_or(line);
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let mut send = |bytes: &[u8]| {
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = |what: &str| -> Result<Value, TestCaseError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(line)) => Err(TestCaseError::fail(format!(
                "stdout carried a non-JSON-object line: {line:?}"
            ))),
            Err(RecvTimeoutError::Timeout) => {
                Err(TestCaseError::fail(format!("timed out waiting for {what}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(TestCaseError::fail(format!(
                "firewall closed stdout while waiting for {what}; stderr:\n{}",
                stderr()
            ))),
        }
    };

    send(
        &serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": "init", "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "fuzz", "version": "1"}}}),
        )
        .unwrap(),
    );
    loop {
        let m = next("initialize")?;
        if m["id"] == "init" {
            prop_assert!(m.get("result").is_some(), "initialize failed: {}", m);
            break;
        }
    }
    send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    for line in &plan.lines {
        send(line);
    }
    // The null-id errors are queued before the barrier's answer (they are
    // sent before the next line is read); responses to requests come in any
    // order, so wait for all of them, then the barrier.
    send(br#"{"jsonrpc":"2.0","id":"barrier","method":"ping"}"#);
    let mut pending: HashMap<String, (Value, Option<i64>)> = plan.by_id.clone();
    let (mut parse, mut invalid) = (0usize, 0usize);
    let mut barrier = false;
    let mut seen: HashSet<String> = HashSet::new();
    while !(barrier && pending.is_empty()) {
        let what = format!(
            "responses to {:?} (barrier {barrier})",
            pending.keys().take(5).collect::<Vec<_>>()
        );
        let m = next(&what)?;
        if m.get("method").is_some() {
            // A notification, or a server request we must answer.
            if let Some(id) = m.get("id") {
                send(
                    &serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "fuzz client"}}))
                    .unwrap(),
                );
            }
            continue;
        }
        assert_response(&m);
        let id = &m["id"];
        if id.is_null() {
            prop_assert!(!barrier, "null-id error after the barrier: {}", m);
            match m["error"]["code"].as_i64() {
                Some(-32700) => parse += 1,
                Some(-32600) => invalid += 1,
                _ => prop_assert!(false, "unexpected null-id answer {}", m),
            }
            continue;
        }
        if *id == "barrier" {
            barrier = true;
            continue;
        }
        let k = key(id);
        prop_assert!(
            seen.insert(k.clone()),
            "second response for id {}: {}",
            k,
            m
        );
        let Some((_, code)) = pending.remove(&k) else {
            prop_assert!(false, "response for an id we did not send: {}", m);
            unreachable!()
        };
        if let Some(code) = code {
            prop_assert_eq!(m["error"]["code"].as_i64(), Some(code), "{}", m);
        }
    }
    prop_assert_eq!(
        (parse, invalid),
        (plan.null_parse, plan.null_invalid),
        "null-id errors"
    );
    // Still alive, still relaying: a final valid call.
    send(br#"{"jsonrpc":"2.0","id":"final","method":"tools/call","params":{"name":"echo","arguments":{"text":"still here"}}}"#);
    loop {
        let m = next("the final tools/call")?;
        if m.get("method").is_some() {
            continue;
        }
        prop_assert!(
            m["id"] == "final",
            "unexpected message after the barrier: {}",
            m
        );
        prop_assert_eq!(&m["result"]["content"][0]["text"], "still here", "{}", m);
        break;
    }
    prop_assert!(child.0.try_wait().unwrap().is_none(), "the firewall exited");
    drop(child);
    drop(dirs);
    Ok(())
}

proptest! {
    #![proptest_config({
        let mut c = config(runs());
        c.cases = runs();
        // Each case is a whole session: shrink for at most a minute.
        c.max_shrink_time = 60_000;
        c
    })]

    #[test]
    fn proxy_survives_random_messages(
        lines in proptest::collection::vec(line_strategy(), messages()..=messages()),
    ) {
        run_session(lines)?;
    }
}
