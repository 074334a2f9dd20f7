//! Audit log append micro-benchmark (criterion): one `call.decided`-sized
//! record per append, `fsync never`, on a temp file. Each append takes the
//! file's advisory lock and checks the file's length (another writer may
//! have appended: a hook process, another firewall), so this is the cost of
//! sharing one chain between processes. `contended` interleaves two
//! writers on one file, so every append also re-reads the other's last
//! record.
//!
//! Run: `cargo bench --bench audit_append`.

mod common;

use std::hint::black_box;

use criterion::Criterion;
use mcp_firewall::audit::{AuditLog, FsyncMode};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn record() -> serde_json::Value {
    json!({
        "decision_id": "0b6d1a8e-2f4c-4e1a-9f63-1c2d3e4f5a6b",
        "session_id": "5e7f9a1b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        "principal": {"id": "alice", "source": "os"},
        "method": "tools/call", "server": "fs", "target": "read_file",
        "arguments": {"path": "/srv/notes/today.md"},
        "result": {"decision": "allow", "reasons": []},
        "policy_revision": "sha256:3f1e...",
    })
}

fn main() {
    if !common::benching() {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().expect("temp dir");
    let one = AuditLog::open(&dir.path().join("one.jsonl"), FsyncMode::Never).expect("log");
    c.bench_function("append/one_writer", |b| {
        b.iter(|| black_box(one.append("call.decided", record()).expect("append")))
    });
    let path = dir.path().join("two.jsonl");
    let a = AuditLog::open(&path, FsyncMode::Never).expect("log");
    let b2 = AuditLog::open(&path, FsyncMode::Never).expect("log");
    let mut flip = false;
    c.bench_function("append/contended", |b| {
        b.iter(|| {
            flip = !flip;
            let log = if flip { &a } else { &b2 };
            black_box(log.append("call.decided", record()).expect("append"))
        })
    });
    c.final_summary();
}
