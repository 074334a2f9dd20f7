//! Throughput and memory over Streamable HTTP, loopback only, bounded in
//! time. The firewall runs `--listen 127.0.0.1:0` in front of the stdio
//! fixture with the shipped `policies/` library (rate limits raised out of reach, see
//! `common::library_policy`) and the audit log on
//! (fsync never). N clients, each with its own session (so its own
//! upstream process, by design) and one keep-alive connection, make
//! sequential `tools/call echo` requests. N doubles (1, 2, 4, ... up to
//! 64, the default `max_sessions`) until throughput stops growing (< 5%
//! over the best so far, twice); the best level is the knee.
//!
//! Also prints the firewall's idle RSS after start-up (HTTP with no
//! session; stdio with its one session initialized) and its peak RSS
//! (`VmHWM`) at the end.
//!
//! Also: spawn-to-`initialize`-answer of the stdio form (median of 10).
//!
//! Knobs: `BENCH_SECONDS` per level (default 3), `BENCH_POLICY=allow-all`,
//! `BENCH_MAX_CLIENTS` (default 64), `BENCH_FSYNC` (`never`, the default, or
//! `always`; or `never,always`: a firewall in each mode, and one level,
//! the first of `BENCH_LEVELS`, measured on each in turn, [`TURNS`] times
//! for `BENCH_SECONDS` in all: a drift of the machine falls on both
//! alike), `BENCH_LEVELS` (e.g. `32,64`: exactly these levels, no knee
//! search), `BENCH_SHARED=1` (`--shared`: one fixture process serves every
//! session, instead of one per session), `BENCH_DIRECT=1` (no firewall:
//! at each level, that many fixture processes called directly over stdio,
//! one client thread each: the ceiling of any proxy that runs a process
//! per session on this machine).
//!
//! Run: `cargo bench --bench http_throughput` after `cargo build --release --bins`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

struct Level {
    clients: usize,
    rate: f64,
    /// The firewall's CPU per call while the level was measured, in µs.
    cpu_per_call: Option<f64>,
    p50: f64,
    p99: f64,
    /// Every call's latency, µs, sorted.
    samples: Vec<f64>,
}

/// Every peer calls `echo` for warm-up + `secs`; returns the peers and
/// the latencies measured after warm-up. A failed call stops the bench.
fn run_level(peers: Vec<HttpPeer>, secs: f64, firewall: u32) -> (Vec<HttpPeer>, Level) {
    let n = peers.len();
    // The firewall's CPU over the measured window (after the warm-up).
    let cpu = std::thread::spawn(move || {
        std::thread::sleep(LOAD_WARMUP);
        let start = proc_cpu_secs(firewall)?;
        std::thread::sleep(Duration::from_secs_f64(secs));
        Some(proc_cpu_secs(firewall)? - start)
    });
    let ok = |resp: &Value| {
        debug_assert_eq!(resp["result"]["content"][0]["text"], "hello");
        answered(resp)
    };
    let mut back = Vec::with_capacity(n);
    let mut all = Vec::new();
    for run in drive(peers, &echo_call(), secs, ok) {
        assert!(!run.failed, "a call failed");
        back.extend(run.peer);
        all.extend(run.samples);
    }
    all.sort_by(f64::total_cmp);
    let cpu_per_call = cpu
        .join()
        .ok()
        .flatten()
        .filter(|_| !all.is_empty())
        .map(|cpu| cpu / all.len() as f64 * 1e6);
    let level = Level {
        clients: n,
        rate: all.len() as f64 / secs,
        cpu_per_call,
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        samples: all,
    };
    (back, level)
}

/// Turns each `--audit-fsync` mode gets in [`fsync_in_turns`].
const TURNS: usize = 4;

/// `BENCH_FSYNC=never,always`: a firewall per mode, `clients` sessions on
/// each, the level run on each in turn, [`TURNS`] times; prints a line per
/// mode over all its turns.
fn fsync_in_turns(
    modes: &[&str],
    clients: usize,
    secs: f64,
    policy: &std::path::Path,
    work: &std::path::Path,
) {
    let servers: Vec<HttpFirewall> = modes
        .iter()
        .map(|mode| {
            HttpFirewall::start(firewall_cmd(
                policy,
                &work.join(format!("turns-{mode}.jsonl")),
                mode,
                &["--listen", "127.0.0.1:0"],
            ))
        })
        .collect();
    let mut peers: Vec<Vec<HttpPeer>> = servers
        .iter()
        .map(|s| {
            (0..clients)
                .map(|_| HttpPeer::open_session(&s.addr))
                .collect()
        })
        .collect();
    let mut samples = vec![Vec::new(); modes.len()];
    let mut cpu = vec![Some(0.0); modes.len()];
    for _ in 0..TURNS {
        for (i, server) in servers.iter().enumerate() {
            let (back, level) = run_level(
                std::mem::take(&mut peers[i]),
                secs / TURNS as f64,
                server.pid(),
            );
            peers[i] = back;
            cpu[i] = cpu[i]
                .zip(level.cpu_per_call)
                .map(|(sum, us)| sum + us * level.samples.len() as f64);
            samples[i].extend(level.samples);
        }
    }
    println!(
        "Streamable HTTP, {clients} sessions, audit fsync {} in turns ({TURNS} of {:.1} s each)",
        modes.join(" / "),
        secs / TURNS as f64
    );
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>10} {:>14}",
        "", "clients", "calls/s", "p50 µs", "p99 µs", "CPU µs/call"
    );
    for ((mode, mut all), cpu) in modes.iter().zip(samples).zip(cpu) {
        all.sort_by(f64::total_cmp);
        println!(
            "{:<14} {:>8} {:>10.0} {:>10.1} {:>10.1} {:>14}",
            format!("fsync {mode}"),
            clients,
            all.len() as f64 / secs,
            pct(&all, 0.5),
            pct(&all, 0.99),
            cpu.map_or("?".to_string(), |sum| format!(
                "{:.0}",
                sum / all.len() as f64
            ))
        );
    }
    for p in peers.into_iter().flatten() {
        p.close();
    }
}

/// `BENCH_DIRECT=1`: at each level, one fixture process per client thread,
/// `echo` called over stdio in a closed loop, no firewall anywhere.
fn direct_levels(levels: &[usize], secs: f64) {
    println!("no firewall: a fixture process per client thread, stdio; {secs} s per level");
    println!(
        "{:>8} {:>10} {:>10} {:>10}",
        "clients", "calls/s", "p50 µs", "p99 µs"
    );
    for &n in levels {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let barrier = barrier.clone();
                let mut peer = StdioPeer::start(&mut std::process::Command::new(fixture_bin()));
                std::thread::spawn(move || {
                    let echo = echo_call();
                    barrier.wait();
                    let from = std::time::Instant::now() + LOAD_WARMUP;
                    let end = from + Duration::from_secs_f64(secs);
                    let mut samples = Vec::new();
                    for id in 1.. {
                        let t = std::time::Instant::now();
                        if t >= end {
                            break;
                        }
                        let resp = peer.rpc(id, "tools/call", &echo);
                        assert!(answered(&resp), "{resp}");
                        if t >= from {
                            samples.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                    }
                    samples
                })
            })
            .collect();
        barrier.wait();
        let mut all: Vec<f64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_by(f64::total_cmp);
        println!(
            "{:>8} {:>10.0} {:>10.1} {:>10.1}",
            n,
            all.len() as f64 / secs,
            pct(&all, 0.5),
            pct(&all, 0.99)
        );
    }
}

fn main() {
    if !benching() {
        return;
    }
    let secs: f64 = env_or("BENCH_SECONDS", 3.0);
    let max_clients: usize = env_or("BENCH_MAX_CLIENTS", 64);
    let work = tempfile::tempdir().unwrap();
    let (policy_name, policy) = match std::env::var("BENCH_POLICY").as_deref() {
        Ok("allow-all") => ("allow-all", allow_all_policy(work.path())),
        _ => ("policies/", library_policy(work.path(), "library")),
    };
    let fsync = std::env::var("BENCH_FSYNC").unwrap_or_else(|_| "never".into());
    let fixed_levels: Option<Vec<usize>> = std::env::var("BENCH_LEVELS")
        .ok()
        .map(|l| l.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    println!("machine: {}", machine());
    if std::env::var("BENCH_DIRECT").is_ok_and(|v| v == "1") {
        return direct_levels(&fixed_levels.unwrap_or(vec![64]), secs);
    }
    if fsync.contains(',') {
        let modes: Vec<&str> = fsync.split(',').collect();
        let level = fixed_levels.as_ref().and_then(|l| l.first()).copied();
        return fsync_in_turns(&modes, level.unwrap_or(32), secs, &policy, work.path());
    }

    // Spawn to the answer of `initialize` (upstream started and initialized).
    let mut spawn_ms: Vec<f64> = (0..10)
        .map(|i| {
            let t = std::time::Instant::now();
            let peer = StdioPeer::start(&mut firewall_cmd(
                &policy,
                &work.path().join(format!("spawn-{i}.jsonl")),
                "never",
                &[],
            ));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            drop(peer);
            ms
        })
        .collect();
    spawn_ms.sort_by(f64::total_cmp);
    println!(
        "spawn to initialize answer (stdio, {policy_name}): median {:.1} ms",
        pct(&spawn_ms, 0.5)
    );

    // Idle RSS, stdio: one session (its upstream initialized), nothing in flight.
    let stdio = StdioPeer::start(&mut firewall_cmd(
        &policy,
        &work.path().join("stdio.jsonl"),
        "never",
        &[],
    ));
    std::thread::sleep(Duration::from_secs(1));
    let stdio_rss = proc_status_kb(stdio.pid(), "VmRSS").unwrap_or(0);
    drop(stdio);

    let shared = std::env::var("BENCH_SHARED").is_ok_and(|v| v == "1");
    let listen: &[&str] = if shared {
        &["--listen", "127.0.0.1:0", "--shared"]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let server = HttpFirewall::start(firewall_cmd(
        &policy,
        &work.path().join("http.jsonl"),
        &fsync,
        listen,
    ));
    std::thread::sleep(Duration::from_secs(1));
    let http_idle = proc_status_kb(server.pid(), "VmRSS").unwrap_or(0);
    println!(
        "idle RSS after start-up ({policy_name}): stdio, one session initialized: {:.1} MB; HTTP, no session: {:.1} MB",
        stdio_rss as f64 / 1024.0,
        http_idle as f64 / 1024.0
    );
    let upstreams = if shared {
        "one shared fixture process"
    } else {
        "a fixture process per session"
    };
    println!(
        "Streamable HTTP, {policy_name}, audit fsync {fsync}, {upstreams}; {secs} s per level after {} ms warm-up; sequential tools/call echo per client",
        LOAD_WARMUP.as_millis()
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "clients", "calls/s", "p50 µs", "p99 µs", "VmHWM MB", "CPU µs/call"
    );

    let mut peers: Vec<HttpPeer> = Vec::new();
    let mut best: Option<Level> = None;
    let mut flat = 0;
    let levels: Vec<usize> = fixed_levels.unwrap_or_else(|| {
        std::iter::successors(Some(1usize), |n| Some(n * 2))
            .take_while(|n| *n <= max_clients)
            .collect()
    });
    let search = std::env::var("BENCH_LEVELS").is_err();
    for n in levels {
        // Sessions are opened before the level starts: each one spawns an
        // upstream process, which is not what is being measured.
        while peers.len() < n {
            peers.push(HttpPeer::open_session(&server.addr));
        }
        let (back, level) = run_level(std::mem::take(&mut peers), secs, server.pid());
        peers = back;
        let hwm = proc_status_kb(server.pid(), "VmHWM").unwrap_or(0);
        println!(
            "{:>8} {:>10.0} {:>10.1} {:>10.1} {:>12.1} {:>14}",
            level.clients,
            level.rate,
            level.p50,
            level.p99,
            hwm as f64 / 1024.0,
            level
                .cpu_per_call
                .map_or("?".to_string(), |us| format!("{us:.0}"))
        );
        match &best {
            Some(b) if level.rate < b.rate * 1.05 => {
                flat += 1;
                if flat >= 2 && search {
                    break;
                }
            }
            _ => {
                flat = 0;
                best = Some(level);
            }
        }
    }
    let best = best.expect("at least one level");
    let hwm = proc_status_kb(server.pid(), "VmHWM").unwrap_or(0);
    println!(
        "knee: {} clients, {:.0} calls/s, p50 {:.1} µs, p99 {:.1} µs; firewall peak RSS (VmHWM) {:.1} MB with {} sessions open",
        best.clients,
        best.rate,
        best.p50,
        best.p99,
        hwm as f64 / 1024.0,
        peers.len()
    );
    for p in peers {
        p.close();
    }
}
