//! Policy decision micro-benchmark (criterion): building the input document
//! (`proxy::input::build` + `input.rate`, as the pipeline does), evaluating
//! it against a loaded `PolicySet`, and reading the verdict.
//!
//! Groups:
//! - `decision/*`: the shipped `policies/` library vs an allow-all policy,
//!   with the steps apart and together, for an `echo` call with a full
//!   session history (32 entries, what every call sees after the 32nd);
//! - `rules/N`: the library plus N synthetic `deny` rules (N = 0..1000);
//! - `args/*`: the library with a 1 KB / 10 KB / 100 KB string argument and
//!   deeply nested / wide arguments (`secrets.rego` walks every string);
//! - `scan/*`: the built-in detectors (`inspect::findings::scan`, run on
//!   every string of every result) over 100 KB of source text, the same
//!   with non-ASCII letters, two shapes written against the scanner, and
//!   1 MB of high-entropy tokens (every one a finding);
//! - `redact/*`: finding and redacting 1 MB of AWS key ids in one result.
//!
//! Before criterion runs, a plain loop prints p50/p99 of the whole decision
//! for the library (criterion reports means; the target is a p50).
//!
//! Run: `cargo bench --bench policy_eval` (add a filter: `-- rules`). For a
//! profiler, `POLICY_EVAL_LOOP=N` runs N library decisions and nothing else.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion};
use mcp_firewall::audit::{MaskRules, canonical_json, mask_owned};
use mcp_firewall::policy::PolicySet;
use mcp_firewall::proxy::RateCounters;
use mcp_firewall::proxy::input::{self, Input, Subject, Target};
use mcp_firewall::proxy::session::{HISTORY_LEN, Principal, Session};
use mcp_firewall::upstream::Entry;
use serde_json::{Value, json};

/// The firewall's own allocator (src/main.rs), so the numbers are its numbers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PACKAGE: &str = "mcp.firewall";

/// The fixture's `echo` tool as the catalogue holds it.
fn echo_entry() -> Entry {
    Entry::new(
        "echo".into(),
        "fixture".into(),
        "echo".into(),
        json!({
            "name": "echo",
            "description": "Returns `text` unchanged (prefixed with [FIXTURE_NAME] when that is set)",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true},
        }),
        "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
    )
}

fn session() -> Session {
    let session = Session::new("stdio", Principal::new("bench", "flag"));
    for _ in 0..HISTORY_LEN {
        session.record(history_entry(), &MaskRules::default_rules());
    }
    session
}

fn history_entry() -> Value {
    json!({
        "method": "tools/call", "server": "fixture", "tool": "echo",
        "decision": "allow", "time": "2026-01-01T00:00:00Z",
    })
}

/// What `Proxy::decide` does before evaluating: build + rate counts (which
/// saturate at `MAX_REMEMBERED_CALLS` in a tight loop, as under load).
fn build(entry: &Entry, session: &Session, rates: &RateCounters, args: &Value) -> Input {
    let subject = Subject {
        method: "tools/call",
        server: &entry.server,
        target: Target::Tool(entry),
        arguments: args,
        params: args,
    };
    let mut input = input::build(&subject, session);
    input["rate"] = rates.observe("bench", "echo");
    // What `Proxy::input_for` adds: the fixture is configured with
    // `trust_annotations`, the definition has no findings.
    input["server_trusted"] = json!(true);
    input["tool"]["findings"] = json!([]);
    input
}

fn decide(
    policy: &PolicySet,
    entry: &Entry,
    session: &Session,
    rates: &RateCounters,
    args: &Value,
) -> bool {
    let input = build(entry, session, rates, args);
    let verdict = input.evaluate(policy).expect("evaluates");
    matches!(verdict.decision, mcp_firewall::policy::Decision::Allow)
}

/// The library (rate limits out of reach) plus `n` synthetic deny rules.
fn library_with_rules(n: usize, work: &Path) -> PolicySet {
    let dir = common::library_policy(work, &format!("rules-{n}"));
    let mut text = String::from("package mcp.firewall\n\n");
    for k in 0..n {
        // Alternate a tool-name rule and an argument rule; none matches echo.
        if k % 2 == 0 {
            text.push_str(&format!(
                "deny contains \"synthetic rule {k}\" if {{\n\tinput.method == \"tools/call\"\n\tinput.tool.name == \"blocked_{k}\"\n}}\n\n"
            ));
        } else {
            text.push_str(&format!(
                "deny contains \"synthetic rule {k}\" if {{\n\tinput.tool.name == \"echo\"\n\tinput.arguments.text == \"forbidden-{k}\"\n}}\n\n"
            ));
        }
    }
    std::fs::write(dir.join("synthetic.rego"), text).unwrap();
    PolicySet::load_dir(&dir, PACKAGE).unwrap()
}

fn nested(depth: usize) -> Value {
    let mut v = json!({"text": "leaf"});
    for i in 0..depth {
        v = json!({format!("level{i}"): v, "n": i});
    }
    v
}

fn argument_cases() -> Vec<(String, Value)> {
    let string = |n: usize| json!({"text": "x".repeat(n)});
    vec![
        ("string_1KB".into(), string(1024)),
        ("string_10KB".into(), string(10 * 1024)),
        ("string_100KB".into(), string(100 * 1024)),
        (
            "nested_depth_16".into(),
            json!({"text": "t", "deep": nested(16)}),
        ),
        (
            "nested_depth_64".into(),
            json!({"text": "t", "deep": nested(64)}),
        ),
        (
            "wide_1000_strings".into(),
            json!({"text": "t", "items": (0..1000).map(|i| format!("item {i}")).collect::<Vec<_>>()}),
        ),
    ]
}

/// p50/p99 of the whole decision with a plain loop (criterion gives means).
fn percentiles(
    name: &str,
    policy: &PolicySet,
    entry: &Entry,
    session: &Session,
    rates: &RateCounters,
    args: &Value,
) {
    for _ in 0..200 {
        black_box(decide(policy, entry, session, rates, args));
    }
    // The engine specialized to this tool builds on a thread of its own.
    std::thread::sleep(Duration::from_millis(100));
    let mut samples: Vec<f64> = (0..3000)
        .map(|_| {
            let t = Instant::now();
            black_box(decide(policy, entry, session, rates, args));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<48} p50 {:>7.1} µs  p99 {:>7.1} µs  (3000 decisions)",
        common::pct(&samples, 0.5),
        common::pct(&samples, 0.99)
    );
}

fn main() {
    if !common::benching() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let library =
        PolicySet::load_dir(&common::library_policy(work.path(), "library"), PACKAGE).unwrap();
    let allow_all = PolicySet::load_dir(&common::allow_all_policy(work.path()), PACKAGE).unwrap();
    let entry = echo_entry();
    let session = session();
    let rates = RateCounters::default();
    let echo_args = json!({"text": "hello"});
    assert!(
        decide(&library, &entry, &session, &rates, &echo_args),
        "the library allows echo"
    );

    // For a profiler: `POLICY_EVAL_LOOP=N` runs N library decisions and
    // nothing else.
    if let Some(n) = std::env::var("POLICY_EVAL_LOOP")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        // Errors are let go: under valgrind the first, unspecialized
        // decisions can outrun the evaluation time limit.
        for _ in 0..n {
            let input = build(&entry, &session, &rates, &echo_args);
            let _ = black_box(input.evaluate(&library));
        }
        return;
    }
    println!("machine: {}", common::machine());
    percentiles(
        "build+evaluate+verdict, policies/, echo",
        &library,
        &entry,
        &session,
        &rates,
        &echo_args,
    );
    // A URL in the arguments: the egress rules run (and hold the call).
    percentiles(
        "the same, a URL in the arguments",
        &library,
        &entry,
        &session,
        &rates,
        &json!({"text": "see https://example.org/a?b=c"}),
    );
    let whole = library.clone().unspecialized();
    percentiles(
        "the same, whole policy (not specialized)",
        &whole,
        &entry,
        &session,
        &rates,
        &echo_args,
    );
    percentiles(
        "build+evaluate+verdict, allow-all, echo",
        &allow_all,
        &entry,
        &session,
        &rates,
        &echo_args,
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();

    {
        let mut g = c.benchmark_group("decision");
        g.bench_function("input_build", |b| {
            b.iter(|| black_box(build(&entry, &session, &rates, &echo_args)))
        });
        let input = build(&entry, &session, &rates, &echo_args);
        g.bench_function("evaluate_policies", |b| {
            b.iter(|| black_box(input.evaluate(&library).unwrap()))
        });
        g.bench_function("evaluate_allow_all", |b| {
            b.iter(|| black_box(input.evaluate(&allow_all).unwrap()))
        });
        // The same input converted whole, as before the session kept its
        // history converted (issue 11): the difference is what that saves.
        let mut whole_doc = (*input).clone();
        whole_doc["session"]["history"] = json!(vec![history_entry(); HISTORY_LEN]);
        g.bench_function("evaluate_allow_all_whole_conversion", |b| {
            b.iter(|| black_box(allow_all.evaluate(&whole_doc).unwrap()))
        });
        // The audit record's input: masked and rendered with the session's
        // history rendered once, vs the whole document masked and rendered
        // per decision (before 2026-12-04).
        let mask = MaskRules::default_rules();
        g.bench_function("record_input", |b| {
            b.iter_batched(
                || build(&entry, &session, &rates, &echo_args),
                |input| black_box(input.into_record(&mask)),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("record_input_whole", |b| {
            b.iter_batched(
                || whole_doc.clone(),
                |doc| black_box(canonical_json(&mask_owned(doc, &mask))),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("build_evaluate_verdict_policies", |b| {
            b.iter(|| black_box(decide(&library, &entry, &session, &rates, &echo_args)))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("rules");
        for n in [0usize, 10, 100, 1000] {
            let policy = library_with_rules(n, work.path());
            g.bench_with_input(BenchmarkId::from_parameter(n), &policy, |b, p| {
                b.iter(|| black_box(decide(p, &entry, &session, &rates, &echo_args)))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("args");
        for (name, args) in argument_cases() {
            let allowed = decide(&library, &entry, &session, &rates, &args);
            assert!(allowed, "{name} is allowed");
            g.bench_with_input(BenchmarkId::from_parameter(&name), &args, |b, a| {
                b.iter(|| black_box(decide(&library, &entry, &session, &rates, a)))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("scan");
        for (name, text) in scan_cases() {
            g.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, t| {
                b.iter(|| black_box(mcp_firewall::inspect::findings::scan(t)))
            });
        }
        g.finish();
    }
    {
        // A result an upstream filled with secrets: every key found, every
        // one redacted (both were quadratic in the number of findings).
        // AWS access key ids: `AKIA` and 16 of `[A-Z2-7]`.
        let text = tokens(1_000_000, "AKIA", &BASE64[..26], 16);
        let result = serde_json::json!({"content": [{"type": "text", "text": text}]});
        let rules = vec!["aws_access_key".to_string()];
        let mut g = c.benchmark_group("redact");
        g.sample_size(20);
        g.bench_function("aws_keys_1m", |b| {
            b.iter_batched(
                || result.clone(),
                |mut r| {
                    let found = mcp_firewall::inspect::findings_in(&r);
                    black_box(mcp_firewall::inspect::redact(&mut r, &rules, &found))
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
    c.final_summary();
}

/// Pseudo-random tokens, each `prefix` and `n` bytes of `alphabet`,
/// separated by spaces, `len` bytes in all.
fn tokens(len: usize, prefix: &str, alphabet: &[u8], n: usize) -> String {
    let mut state = 0x2545_f491_u32;
    let mut out = String::with_capacity(len + prefix.len() + n + 1);
    while out.len() < len {
        out.push_str(prefix);
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            out.push(char::from(alphabet[state as usize % alphabet.len()]));
        }
        out.push(' ');
    }
    out
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// ~100 KB texts for the detectors: this crate's own source, the same with
/// every tenth space an `é`, and two shapes that made the old scanner (with
/// Unicode word boundaries) fall back to its slow engine.
fn scan_cases() -> Vec<(&'static str, String)> {
    let source: String = [
        include_str!("../src/proxy/pipeline.rs"),
        include_str!("../src/proxy/hold.rs"),
        include_str!("../src/proxy/mod.rs"),
        include_str!("../src/proxy/held_tasks.rs"),
        include_str!("../src/downstream/http/stateless.rs"),
    ]
    .concat();
    let source: String = source.chars().cycle().take(100_000).collect();
    let mut accented = String::new();
    for (i, word) in source.split(' ').enumerate() {
        accented.push_str(word);
        accented.push(if i % 10 == 0 { 'é' } else { ' ' });
    }
    vec![
        ("source_100k", source),
        ("source_accented_100k", accented),
        (
            "markers_accented_100k",
            "ignore é previous you é now é do not tell é ".repeat(2300),
        ),
        ("digits_accented_100k", "1é2 3é4 5-6é7 ".repeat(7000)),
        // ~30,000 high-entropy tokens: every one a finding.
        ("tokens_1m", tokens(1_000_000, "", BASE64, 32)),
    ]
}
