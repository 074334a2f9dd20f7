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
//! The rows of each table are measured in turns, [`BLOCK`] calls at a time
//! (every process started and warmed first): the machine's speed drifts
//! during a run (other work, frequency, a neighbour on the host), and a
//! drift that fell on one row while the next ran later put run-to-run swings
//! of 70 µs into what the firewall adds. Taken in turns, a drift falls on
//! every row alike. The same for the 32-in-flight rows, burst by burst.
//!
//! Run: `cargo bench --bench stdio_latency` after `cargo build --release
//! --bins` (prints p50/p99/p999 in µs; asserts nothing about them).
//! `BENCH_CALLS` (default 5000) sets the measured calls per row;
//! `BENCH_BREAKDOWN=1` adds the allow-all and library firewalls with the
//! audit log on /dev/null to the stdio rows (what the disk costs).

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

/// Calls each row makes at a time before the next row's turn.
const BLOCK: usize = 100;

/// A row to measure: its name and how it makes call `id`.
type Caller<'a> = (String, Box<dyn FnMut(u64) -> Value + 'a>);

/// Each row's `calls` round trips, taken in turns of [`BLOCK`] after
/// [`WARMUP`] calls each.
fn measure_in_turns(calls: usize, mut rows: Vec<Caller<'_>>) -> Vec<Row> {
    let mut id = 0;
    for (_, call) in &mut rows {
        for _ in 0..WARMUP {
            id += 1;
            call(id);
        }
    }
    let mut samples: Vec<Vec<f64>> = rows.iter().map(|_| Vec::with_capacity(calls)).collect();
    while samples[0].len() < calls {
        let turn = BLOCK.min(calls - samples[0].len());
        for ((_, call), samples) in rows.iter_mut().zip(&mut samples) {
            for _ in 0..turn {
                id += 1;
                let start = Instant::now();
                let resp = call(id);
                samples.push(start.elapsed().as_secs_f64() * 1e6);
                assert_eq!(resp["result"]["content"][0]["text"], "hello", "{resp}");
            }
        }
    }
    rows.into_iter()
        .zip(samples)
        .map(|((name, _), samples)| Row::of(&name, samples))
        .collect()
}

impl Row {
    /// The row of latency `samples` (µs).
    fn of(name: &str, mut samples: Vec<f64>) -> Row {
        samples.sort_by(f64::total_cmp);
        Row {
            name: name.to_string(),
            p50: pct(&samples, 0.5),
            p99: pct(&samples, 0.99),
            p999: pct(&samples, 0.999),
        }
    }

    fn print(&self) {
        println!(
            "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs",
            self.name, self.p50, self.p99, self.p999
        );
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
    let mut direct = StdioPeer::start(&mut std::process::Command::new(fixture_bin()));
    let mut relayed = std::process::Command::new(std::env::current_exe().unwrap());
    relayed.env(RELAY_FOR, fixture_bin());
    let mut relay = StdioPeer::start(&mut relayed);
    let mut firewalls: Vec<StdioPeer> = configs
        .iter()
        .enumerate()
        .map(|(i, (_, policy, fsync))| {
            StdioPeer::start(&mut firewall_cmd(policy, &audit(i, "stdio"), fsync, &[]))
        })
        .collect();
    // `BENCH_BREAKDOWN=1`: the same firewalls with the audit log on
    // /dev/null (records sealed and written, no file behind them), after
    // the rows above: what the disk adds, and what the library does.
    let floors = [("allow-all", &allow_all), ("policies/", &library)];
    let mut floor_peers: Vec<StdioPeer> = if env_or("BENCH_BREAKDOWN", 0) == 1 {
        floors
            .iter()
            .map(|(_, policy)| {
                StdioPeer::start(&mut firewall_cmd(
                    policy,
                    std::path::Path::new("/dev/null"),
                    "never",
                    &[],
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut callers: Vec<Caller<'_>> = vec![
        caller("fixture direct (no firewall)", &mut direct, &echo),
        caller("bare relay (copies bytes, nothing else)", &mut relay, &echo),
    ];
    for ((name, _, _), peer) in configs.iter().zip(&mut firewalls) {
        callers.push(caller(&format!("firewall, {name}"), peer, &echo));
    }
    for ((name, _), peer) in floors.iter().zip(&mut floor_peers) {
        callers.push(caller(
            &format!("firewall, {name}, audit log on /dev/null"),
            peer,
            &echo,
        ));
    }
    let stdio_rows = measure_in_turns(calls, callers);
    let (direct_row, stdio_rows) = stdio_rows.split_first().unwrap();
    direct_row.print();
    for row in stdio_rows {
        row.print();
        added(row, direct_row, "direct");
    }
    let stdio_rows = &stdio_rows[1..];
    drop((direct, relay, firewalls, floor_peers));

    // Group commit: 32 calls in flight at once in one session, so their
    // records can share an fsync; per-call latency, fsync always vs never,
    // a burst on each in turn.
    println!("\n-- stdio, 32 concurrent calls in one session, policies/ --");
    let fsyncs = ["never", "always"];
    let mut peers: Vec<StdioPeer> = fsyncs
        .iter()
        .enumerate()
        .map(|(i, fsync)| {
            StdioPeer::start(&mut firewall_cmd(&library, &audit(i, "burst"), fsync, &[]))
        })
        .collect();
    let rounds = (calls / 32).max(10) as u64;
    let mut samples = vec![Vec::new(); fsyncs.len()];
    // What the disk takes for one `fdatasync` of a record-sized append,
    // beside the logs, once per round: the row moves with it.
    let mut probe = std::fs::File::create(work.path().join("fsync-probe")).unwrap();
    let mut disk = Vec::new();
    for round in 0..rounds + 5 {
        for (peer, samples) in peers.iter_mut().zip(&mut samples) {
            let latencies = peer.burst(1_000 + round * 32, 32, "tools/call", &echo);
            if round >= 5 {
                samples.extend(latencies);
            }
        }
        std::io::Write::write_all(&mut probe, &[b'x'; 1500]).unwrap();
        let start = Instant::now();
        probe.sync_data().unwrap();
        disk.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(peers);
    disk.sort_by(f64::total_cmp);
    let burst_rows: Vec<Row> = fsyncs
        .iter()
        .zip(samples)
        .map(|(fsync, samples)| Row::of(&format!("32 in flight, audit fsync {fsync}"), samples))
        .collect();
    burst_rows.iter().for_each(Row::print);
    added(&burst_rows[1], &burst_rows[0], "fsync never, 32 in flight");
    println!(
        "{:<44} one fdatasync of 1,500 bytes appended, beside the logs: p50 {:.1} µs  p99 {:.1} µs",
        "",
        pct(&disk, 0.5),
        pct(&disk, 0.99)
    );

    println!("\n-- Streamable HTTP (JSON answers, one keep-alive connection) --");
    let (floor_addr, _floor) = http_floor();
    let servers: Vec<HttpFirewall> = configs
        .iter()
        .enumerate()
        .map(|(i, (_, policy, fsync))| {
            HttpFirewall::start(firewall_cmd(
                policy,
                &audit(i, "http"),
                fsync,
                &["--listen", "127.0.0.1:0"],
            ))
        })
        .collect();
    let mut floor_peer = HttpPeer::open_session(&floor_addr);
    let mut http_peers: Vec<HttpPeer> = servers
        .iter()
        .map(|s| HttpPeer::open_session(&s.addr))
        .collect();
    let mut callers: Vec<Caller<'_>> = vec![(
        "HTTP floor (axum echo, no MCP server)".into(),
        Box::new(|id| floor_peer.rpc(id, "tools/call", &echo)),
    )];
    for ((name, _, _), peer) in configs.iter().zip(&mut http_peers) {
        let echo = &echo;
        callers.push((
            format!("firewall HTTP, {name}"),
            Box::new(move |id| peer.rpc(id, "tools/call", echo)),
        ));
    }
    let http_rows = measure_in_turns(calls, callers);
    let (floor, http_rows) = http_rows.split_first().unwrap();
    floor.print();
    let floor_plus = Row {
        name: "floor + fixture direct".into(),
        p50: floor.p50 + direct_row.p50,
        p99: floor.p99 + direct_row.p99,
        p999: floor.p999 + direct_row.p999,
    };
    println!(
        "{:<44} p50 {:>8.1} µs  (sum of the two p50s, an estimate)",
        floor_plus.name, floor_plus.p50
    );
    for (row, stdio_row) in http_rows.iter().zip(stdio_rows) {
        row.print();
        added(row, stdio_row, "stdio, same config");
        added(row, &floor_plus, "floor + fixture");
    }
    http_peers.into_iter().for_each(HttpPeer::close);
}

/// A row calling `echo` through `peer` over stdio.
fn caller<'a>(name: &str, peer: &'a mut StdioPeer, echo: &'a Value) -> Caller<'a> {
    (
        name.to_string(),
        Box::new(move |id| peer.rpc(id, "tools/call", echo)),
    )
}
