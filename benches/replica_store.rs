//! The PostgreSQL store, measured (issue 14): added latency of an allowed
//! `tools/call` over stdio with the store on PostgreSQL vs SQLite, and how
//! long a call held at one replica takes to be released once another
//! process records the answer. A throwaway cluster is started here (like
//! the tests), on loopback.
//!
//! Run: `cargo bench --bench replica_store` after `cargo build --release
//! --bins` and the set-up command. Knobs: `BENCH_CALLS` (per latency row,
//! default 2000), `BENCH_RELEASES` (default 20).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use mcp_firewall::testing::PgCluster;
use serde_json::{Value, json};

const SECRET: &str = "whsec_bWNwLWZpcmV3YWxsLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=";

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn latency_row(name: &str, cmd: &mut Command, calls: u64) {
    let mut peer = StdioPeer::start(cmd.env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET));
    for id in 1..=200 {
        peer.rpc(id, "tools/call", &echo_call());
    }
    let mut samples: Vec<f64> = (0..calls)
        .map(|i| {
            let started = Instant::now();
            let answer = peer.rpc(1000 + i, "tools/call", &echo_call());
            assert!(answered(&answer), "{answer}");
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<44} p50 {:>8.0} µs   p99 {:>8.0} µs",
        pct(&samples, 0.5),
        pct(&samples, 0.99)
    );
}

fn main() {
    if !benching() {
        return;
    }
    println!("machine: {}", machine());
    let calls: u64 = env_or("BENCH_CALLS", 2000);
    let releases: usize = env_or("BENCH_RELEASES", 20);
    let work = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start();
    let audit = work.path().join("audit.jsonl");
    let data = work.path().join("data");
    let data = data.to_str().unwrap();

    // Rate counts are kept in the store only when the policy reads them:
    // allow-all reads nothing, the shipped library reads input.rate.
    for (label, policy) in [
        ("allow-all", allow_all_policy(work.path())),
        ("library", library_policy(work.path(), "library")),
    ] {
        let url = cluster.create_database();
        latency_row(
            &format!("stdio, {label}, SQLite store"),
            &mut firewall_cmd(&policy, &audit, "never", &["--data-dir", data]),
            calls,
        );
        latency_row(
            &format!("stdio, {label}, PostgreSQL store"),
            &mut firewall_cmd(&policy, &audit, "never", &["--store-url", &url]),
            calls,
        );
    }

    // Release across replicas: a call held at one firewall (waiting), the
    // answer recorded by another process (the CLI, as any replica would).
    let url = cluster.create_database();
    let signers = work.path().join("allowed_signers");
    let carol = std::fs::read_to_string(repo("fixtures/keys/carol.pub")).unwrap();
    std::fs::write(&signers, format!("carol {carol}")).unwrap();
    let hold = work.path().join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    std::fs::write(
        hold.join("hold.rego"),
        "package mcp.firewall\n\napprove contains \"bench\" if input.tool.name == \"write_note\"\n",
    )
    .unwrap();
    let mut held = firewall_cmd(
        &hold,
        &audit,
        "never",
        &[
            "--store-url",
            &url,
            "--approvers",
            signers.to_str().unwrap(),
            "--approval-wait",
            "60",
            "--principal",
            "alice",
        ],
    );
    let mut child = held
        .env("MCP_FIREWALL_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |msg: Value| writeln!(stdin, "{msg}").unwrap();
    let mut read = |id: u64| loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0);
        let msg: Value = serde_json::from_str(&line).unwrap();
        if msg["id"] == id {
            return msg;
        }
    };
    send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params()}));
    read(0);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let key = repo("fixtures/keys/carol");
    let mut waits = Vec::new();
    for i in 0..releases {
        let id = 100 + i as u64;
        send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "write_note", "arguments": {"name": format!("n{i}"), "content": "x"}}}));
        // Find the pending request, answer it, and time the release.
        let approval = loop {
            let out = Command::new(firewall_bin())
                .args([
                    "approvals",
                    "list",
                    "--status",
                    "pending",
                    "--store-url",
                    &url,
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(w) = text.split_whitespace().find(|w| w.starts_with("apr_")) {
                break w
                    .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .to_string();
            }
        };
        let out = Command::new(firewall_bin())
            .args([
                "approvals",
                "approve",
                &approval,
                "--as",
                "carol",
                "--reason",
                "bench",
            ])
            .arg("--key")
            .arg(&key)
            .args(["--store-url", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answered_at = Instant::now();
        let answer = read(id);
        assert!(answer["result"]["isError"] == false, "{answer}");
        waits.push(answered_at.elapsed().as_secs_f64() * 1e3);
    }
    let _ = child.kill();
    let _ = child.wait();
    waits.sort_by(f64::total_cmp);
    println!(
        "release across replicas (answer recorded -> call answered): p50 {:.1} ms, max {:.1} ms over {releases}",
        pct(&waits, 0.5),
        waits.last().copied().unwrap_or(0.0)
    );
}
