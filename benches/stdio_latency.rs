//! Round-trip latency of an allowed `tools/call` over stdio: the fixture
//! server called directly, and through the firewall (allow-all policy, and
//! the shipped policy library), audit log on (fsync never).
//!
//! Run: `cargo bench --bench stdio_latency` (prints p50/p99/p999 in µs).
//! Prints numbers; asserts nothing about them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

const WARMUP: usize = 200;
const CALLS: usize = 5000;

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut peer = Peer {
            child,
            stdin,
            stdout,
        };
        peer.rpc(0, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}));
        writeln!(
            peer.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        peer
    }

    fn rpc(&mut self, id: u64, method: &str, params: Value) -> Value {
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).unwrap();
            let msg: Value = serde_json::from_str(&line).unwrap();
            if msg["id"] == id {
                return msg;
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(name: &str, peer: &mut Peer) -> f64 {
    let args = json!({"name": "echo", "arguments": {"text": "hello"}});
    for i in 0..WARMUP {
        peer.rpc(i as u64 + 1, "tools/call", args.clone());
    }
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let start = Instant::now();
        let resp = peer.rpc((WARMUP + i) as u64 + 1, "tools/call", args.clone());
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(resp["result"]["content"][0]["text"], "hello", "{resp}");
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<40} p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs",
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    pct(0.5)
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: skip.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let target = std::path::Path::new(root).join("target/release");
    let fixture = target.join("mcp-firewall-fixture");
    let firewall = target.join("mcp-firewall");
    assert!(
        fixture.exists() && firewall.exists(),
        "build first: cargo build --release"
    );
    let work = tempfile::tempdir().unwrap();
    let allow_all = work.path().join("allow");
    std::fs::create_dir(&allow_all).unwrap();
    std::fs::write(
        allow_all.join("p.rego"),
        "package mcp.firewall\n\nallow := true\n",
    )
    .unwrap();

    println!("{CALLS} sequential tools/call echo round trips over stdio (release build)");
    let direct = measure(
        "direct to the fixture",
        &mut Peer::start(&mut Command::new(&fixture)),
    );
    for (name, policy) in [
        ("firewall, allow-all policy", allow_all.clone()),
        (
            "firewall, shipped policies",
            std::path::Path::new(root).join("policies"),
        ),
    ] {
        let audit = work.path().join(format!("{}.jsonl", name.len()));
        let mut cmd = Command::new(&firewall);
        cmd.arg("run")
            .arg("--policy")
            .arg(&policy)
            .arg("--audit-log")
            .arg(&audit)
            .arg("--")
            .arg(&fixture);
        if name.contains("shipped") {
            // The shipped policy allows read-only tools: echo is one.
        }
        let p50 = measure(name, &mut Peer::start(&mut cmd));
        println!("{:<40} added p50 {:>6.1} µs", "", p50 - direct);
    }
}
