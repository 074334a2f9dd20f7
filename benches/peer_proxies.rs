//! Calls per second through the firewall and through two peer proxies, all
//! in front of the same npm reference server (`server-everything`, stdio),
//! at 1 / 8 / 64 concurrent Streamable HTTP sessions, one run (issue 11).
//!
//! - the firewall: `run --listen` with the shipped library (rate limits out
//!   of reach, plus one rule allowing `echo`) and the audit log on;
//! - the TypeScript `mcp-proxy` (npm) and the Python `mcp-proxy` (PyPI),
//!   pinned in `fixtures/peers/` and installed by the set-up command. They
//!   decide and record nothing: the comparison is the price of doing so.
//!
//! Each session is one keep-alive connection making sequential
//! `tools/call echo` requests for `BENCH_SECONDS` (default 3) after a
//! 0.5 s warm-up. A level whose sessions cannot all be opened within 60 s
//! is reported as failed. Knobs: `BENCH_PEER_SESSIONS` (default
//! "1,8,64"), `BENCH_PEERS` (default "firewall,fw-shared,ts,python"; `fw-shared` is the
//! firewall with `--shared`: one upstream process for every session).
//!
//! Run: `cargo bench --bench peer_proxies` after `cargo build --release --bins`
//! and the set-up command. Loopback only.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mcp_firewall::testing::free_port;
use serde_json::json;

const OPEN_DEADLINE: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn everything() -> PathBuf {
    repo("fixtures/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// One proxy under test: how to start it on `port`, and its MCP path.
struct Contender {
    name: &'static str,
    path: &'static str,
    command: Box<dyn Fn(u16) -> Option<Command>>,
}

fn contenders(work: &Path) -> Vec<Contender> {
    let policy = library_policy(work, "library");
    std::fs::write(
        policy.join("bench_echo.rego"),
        "package mcp.firewall\n\nallow if {\n\tinput.method == \"tools/call\"\n\tinput.tool.name == \"echo\"\n}\n",
    )
    .unwrap();
    let audit = work.join("audit.jsonl");
    let firewall = move |shared: bool| {
        let (policy, audit) = (policy.clone(), audit.clone());
        move |port: u16| {
            let mut cmd = Command::new(firewall_bin());
            cmd.arg("run")
                .arg("--policy")
                .arg(&policy)
                .arg("--audit-log")
                .arg(&audit)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"));
            if shared {
                cmd.arg("--shared");
            }
            cmd.arg("--")
                .arg("node")
                .arg(everything())
                .arg("stdio")
                .env_remove("RUST_LOG");
            Some(cmd)
        }
    };
    // Both peers: `mcp-proxy --port P --host 127.0.0.1 [extra] -- node everything stdio`.
    let peer = |bin: &'static str, extra: &'static [&'static str]| {
        move |port: u16| {
            let bin = repo(bin);
            bin.exists().then(|| {
                let mut cmd = Command::new(bin);
                cmd.arg("--port")
                    .arg(port.to_string())
                    .arg("--host")
                    .arg("127.0.0.1")
                    .args(extra)
                    .arg("--")
                    .arg("node")
                    .arg(everything())
                    .arg("stdio");
                cmd
            })
        }
    };
    let ts = peer("fixtures/peers/node_modules/.bin/mcp-proxy", &[]);
    let python = peer(
        "fixtures/peers/.venv/bin/mcp-proxy",
        &["--log-level", "WARNING"],
    );
    vec![
        Contender {
            name: "firewall",
            path: "/mcp",
            command: Box::new(firewall(false)),
        },
        Contender {
            name: "fw-shared",
            path: "/mcp",
            command: Box::new(firewall(true)),
        },
        Contender {
            name: "ts",
            path: "/mcp",
            command: Box::new(ts),
        },
        Contender {
            name: "python",
            path: "/mcp",
            command: Box::new(python),
        },
    ]
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // The proxies run their upstreams as children: end the whole group.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(300));
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn start(mut cmd: Command, port: u16) -> Option<Running> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let running = Running(cmd.spawn().ok()?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(running);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Open `n` sessions at once; `None` if they are not all open in time.
fn open_sessions(addr: &str, path: &'static str, n: usize) -> Option<Vec<HttpPeer>> {
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                std::panic::catch_unwind(|| HttpPeer::open_session_at(&addr, path)).ok()
            })
        })
        .collect();
    let peers: Option<Vec<HttpPeer>> = handles.into_iter().map(|h| h.join().ok()?).collect();
    (started.elapsed() < OPEN_DEADLINE).then_some(peers?)
}

/// Resident memory of a process and all its descendants (the proxy and
/// its upstreams, whatever process groups they run in), MB.
fn tree_rss_mb(root: u32) -> f64 {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            // state ppid ...
            Some((pid, rest.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    let kb: u64 = tree
        .iter()
        .filter_map(|&pid| proc_status_kb(pid, "VmRSS:"))
        .sum();
    kb as f64 / 1024.0
}

/// Calls per second over `secs`, and the sessions that saw a failed call.
fn run(peers: Vec<HttpPeer>, secs: f64) -> (f64, usize) {
    let echo = json!({"name": "echo", "arguments": {"message": "hello"}});
    let runs = drive(peers, &echo, secs, answered);
    let calls: usize = runs.iter().map(|r| r.samples.len()).sum();
    let failed = runs.iter().filter(|r| r.failed).count();
    (calls as f64 / secs, failed)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    if !benching() {
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    println!("machine: {}", machine());
    let secs: f64 = env_or("BENCH_SECONDS", 3.0);
    let levels: Vec<usize> = env_list("BENCH_PEER_SESSIONS", "1,8,64")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let wanted = env_list("BENCH_PEERS", "firewall,fw-shared,ts,python");
    let work = tempfile::tempdir().unwrap();
    let contenders: Vec<Contender> = contenders(work.path())
        .into_iter()
        .filter(|c| wanted.iter().any(|w| w == c.name))
        .collect();
    // results[level][contender]
    let mut results: Vec<Vec<Option<f64>>> = Vec::new();
    for &n in &levels {
        let mut row = Vec::new();
        for c in &contenders {
            let port = free_port();
            let Some(cmd) = (c.command)(port) else {
                println!(
                    "{:<9} {n:>3} sessions: not installed (run the set-up command)",
                    c.name
                );
                row.push(None);
                continue;
            };
            let Some(_running) = start(cmd, port) else {
                println!("{:<9} {n:>3} sessions: did not start listening", c.name);
                row.push(None);
                continue;
            };
            let addr = format!("127.0.0.1:{port}");
            let Some(peers) = open_sessions(&addr, c.path, n) else {
                println!("{:<9} {n:>3} sessions: sessions failed to open", c.name);
                row.push(None);
                continue;
            };
            let rss = tree_rss_mb(_running.0.id());
            let (rate, failed) = run(peers, secs);
            println!(
                "{:<9} {n:>3} sessions: {rate:>8.0} calls/s, {rss:>7.0} MB resident (proxy + upstreams){}",
                c.name,
                if failed > 0 {
                    format!("  ({failed} sessions saw a failed call)")
                } else {
                    String::new()
                }
            );
            row.push(Some(rate));
        }
        results.push(row);
    }
    println!();
    print!("{:<10}", "sessions");
    for c in &contenders {
        print!("{:>12}", c.name);
    }
    println!("   firewall, fw-shared / best peer");
    for (level, row) in levels.iter().zip(&results) {
        print!("{level:<10}");
        for r in row {
            match r {
                Some(r) => print!("{r:>12.0}"),
                None => print!("{:>12}", "failed"),
            }
        }
        let ours = |c: &Contender| c.name.starts_with("f");
        let best_peer = contenders
            .iter()
            .zip(row)
            .filter(|(c, _)| !ours(c))
            .filter_map(|(_, r)| *r)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let ratios: Vec<String> = contenders
            .iter()
            .zip(row)
            .filter(|(c, _)| ours(c))
            .map(|(_, r)| match (r, best_peer) {
                (Some(f), Some(p)) => format!("{:.2}x", f / p),
                _ => "-".into(),
            })
            .collect();
        println!("   {}", ratios.join(", "));
    }
}
