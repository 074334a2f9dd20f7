//! Round-trip latency of an allowed `tools/call` (the fixture's `echo`),
//! one call at a time, over stdio and over Streamable HTTP:
//!
//! - stdio: the fixture called directly; behind a bare relay (this bench
//!   re-run as a process that only copies bytes both ways: the floor of
//!   any stdio proxy, two more pipe hops and wake-ups); through the
//!   firewall with an
//!   allow-all policy; with the shipped `policies/` library (rate limits
//!   raised out of reach, see `common::library_policy`); and the library
//!   with `--audit-fsync always`. The audit log is on in every firewall row
//!   (default fsync mode `never`: one write(2) per record, two records per
//!   call: `call.decided` before forwarding, `call.completed` after).
//! - HTTP: the fixture has no HTTP mode, so the floor is a minimal axum
//!   server in this process that answers `echo` itself (client + loopback
//!   TCP + hyper/axum, no MCP server behind it). Then the firewall with
//!   `--listen 127.0.0.1:0` in front of the stdio fixture, same three
//!   policy/fsync rows. HTTP rows are compared with the same configuration
//!   over stdio (what the HTTP transport adds) and with floor + direct
//!   fixture (what the firewall adds over an HTTP echo plus the upstream).
//!
//! Run: `cargo bench --bench stdio_latency` after `cargo build --release
//! --bins` (prints p50/p99/p999 in µs; asserts nothing about them).
//! `BENCH_CALLS` (default 5000) sets the measured calls per row.

mod common;

use std::time::Instant;

use common::*;
use serde_json::{Value, json};

const WARMUP: usize = 300;

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn measure(name: &str, calls: usize, mut call: impl FnMut(u64) -> Value) -> Row {
    for i in 0..WARMUP {
        call(i as u64 + 1);
    }
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        let resp = call((WARMUP + i) as u64 + 1);
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(resp["result"]["content"][0]["text"], "hello", "{resp}");
    }
    Row::printed(name, samples)
}

impl Row {
    /// The row of latency `samples` (µs), printed.
    fn printed(name: &str, mut samples: Vec<f64>) -> Row {
        samples.sort_by(f64::total_cmp);
        let row = Row {
            name: name.to_string(),
            p50: pct(&samples, 0.5),
            p99: pct(&samples, 0.99),
            p999: pct(&samples, 0.999),
        };
        println!(
            "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs",
            row.name, row.p50, row.p99, row.p999
        );
        row
    }
}

fn added(row: &Row, base: &Row, what: &str) {
    println!(
        "{:<44} added over {what}: p50 {:>+8.1} µs  p99 {:>+8.1} µs",
        "",
        row.p50 - base.p50,
        row.p99 - base.p99
    );
}

/// The floor of any stdio proxy: start `program`, copy stdin to its stdin
/// and its stdout to stdout as bytes arrive, one blocked thread each way.
fn relay(program: &std::ffi::OsStr) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    fn copy(mut from: impl Read, mut to: impl Write) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                break;
            }
        }
    }
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the relayed program");
    let (to_child, from_child) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let down = std::thread::spawn(move || copy(from_child, std::io::stdout().lock()));
    copy(std::io::stdin().lock(), to_child);
    let _ = child.wait();
    let _ = down.join();
}

/// The HTTP floor: answers `initialize`, notifications and `echo` itself.
fn http_floor() -> (String, std::thread::JoinHandle<()>) {
    use axum::Json;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    async fn mcp(_headers: HeaderMap, Json(msg): Json<Value>) -> axum::response::Response {
        let Some(id) = msg.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": PROTOCOL, "capabilities": {"tools": {}}, "serverInfo": {"name": "floor", "version": "1"}})
            }
            _ => {
                json!({"content": [{"type": "text", "text": msg["params"]["arguments"]["text"]}], "isError": false})
            }
        };
        let mut r = Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
        r.headers_mut()
            .insert("mcp-session-id", "floor".parse().unwrap());
        r
    }
    let app = axum::Router::new().route("/mcp", axum::routing::post(mcp));
    let handle = std::thread::spawn(move || {
        runtime.block_on(async { axum::serve(listener, app).await.unwrap() });
    });
    (addr, handle)
}

/// Set on this bench's own process when it runs as the bare relay in front
/// of the program the variable names.
const RELAY_FOR: &str = "MCP_FIREWALL_BENCH_RELAY_FOR";

fn main() {
    if let Some(program) = std::env::var_os(RELAY_FOR) {
        return relay(&program);
    }
    if !benching() {
        return;
    }
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5000);
    let work = tempfile::tempdir().unwrap();
    let allow_all = allow_all_policy(work.path());
    let library = library_policy(work.path(), "library");
    let configs = [
        ("allow-all, audit fsync never", &allow_all, "never"),
        ("policies/, audit fsync never", &library, "never"),
        ("policies/, audit fsync always", &library, "always"),
    ];
    let audit = |i: usize, t: &str| work.path().join(format!("audit-{t}-{i}.jsonl"));
    println!("machine: {}", machine());
    println!(
        "{calls} sequential tools/call echo round trips per row, after {WARMUP} warm-up calls (release build)"
    );
    let echo = echo_call();

    println!("\n-- stdio --");
    let mut peer = StdioPeer::start(&mut std::process::Command::new(fixture_bin()));
    let direct = measure("fixture direct (no firewall)", calls, |id| {
        peer.rpc(id, "tools/call", &echo)
    });
    drop(peer);
    let mut relayed = std::process::Command::new(std::env::current_exe().unwrap());
    relayed.env(RELAY_FOR, fixture_bin());
    let mut peer = StdioPeer::start(&mut relayed);
    let relay_row = measure("bare relay (copies bytes, nothing else)", calls, |id| {
        peer.rpc(id, "tools/call", &echo)
    });
    added(&relay_row, &direct, "direct");
    drop(peer);
    let mut stdio_rows = Vec::new();
    for (i, (name, policy, fsync)) in configs.iter().enumerate() {
        let mut peer = StdioPeer::start(&mut firewall_cmd(policy, &audit(i, "stdio"), fsync, &[]));
        let row = measure(&format!("firewall, {name}"), calls, |id| {
            peer.rpc(id, "tools/call", &echo)
        });
        added(&row, &direct, "direct");
        stdio_rows.push(row);
    }

    // Group commit: 32 calls in flight at once in one session, so their
    // records can share an fsync; per-call latency, fsync always vs never.
    println!("\n-- stdio, 32 concurrent calls in one session, policies/ --");
    let mut burst_rows = Vec::new();
    for (i, fsync) in ["never", "always"].iter().enumerate() {
        let mut peer =
            StdioPeer::start(&mut firewall_cmd(&library, &audit(i, "burst"), fsync, &[]));
        let rounds = (calls / 32).max(10) as u64;
        let mut samples = Vec::new();
        for round in 0..rounds + 5 {
            let latencies = peer.burst(1_000 + round * 32, 32, "tools/call", &echo);
            if round >= 5 {
                samples.extend(latencies);
            }
        }
        burst_rows.push(Row::printed(
            &format!("32 in flight, audit fsync {fsync}"),
            samples,
        ));
    }
    added(&burst_rows[1], &burst_rows[0], "fsync never, 32 in flight");

    println!("\n-- Streamable HTTP (JSON answers, one keep-alive connection) --");
    let (floor_addr, _floor) = http_floor();
    let mut peer = HttpPeer::open_session(&floor_addr);
    let floor = measure("HTTP floor (axum echo, no MCP server)", calls, |id| {
        peer.rpc(id, "tools/call", &echo)
    });
    let floor_plus = Row {
        name: "floor + fixture direct".into(),
        p50: floor.p50 + direct.p50,
        p99: floor.p99 + direct.p99,
        p999: floor.p999 + direct.p999,
    };
    println!(
        "{:<44} p50 {:>8.1} µs  (sum of the two p50s, an estimate)",
        floor_plus.name, floor_plus.p50
    );
    for (i, (name, policy, fsync)) in configs.iter().enumerate() {
        let server = HttpFirewall::start(firewall_cmd(
            policy,
            &audit(i, "http"),
            fsync,
            &["--listen", "127.0.0.1:0"],
        ));
        let mut peer = HttpPeer::open_session(&server.addr);
        let row = measure(&format!("firewall HTTP, {name}"), calls, |id| {
            peer.rpc(id, "tools/call", &echo)
        });
        added(&row, &stdio_rows[i], "stdio, same config");
        added(&row, &floor_plus, "floor + fixture");
        peer.close();
    }
}
