//! Signed checkpoints of the audit chain, against someone who can write the
//! log file: an edited record with the chain recomputed, a deleted record
//! with the chain recomputed, records cut off the end and a forged
//! checkpoint all pass the plain chain check and are caught by the signed
//! checkpoints, by `mcp-firewall audit verify --checkpoints` and by the
//! independent Python verifier (`scripts/verify_audit.py`). And what the
//! firewall writes is created for its user only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ALLOW_ALL, Builder, firewall_bin, repo_path};
use mcp_firewall::audit::{canonical_json, sha256_tagged};
use serde_json::Value;

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    /// A firewall run with a signing key and a checkpoint every 4 records:
    /// policy.loaded, session.started, 2 tools/list records and 2 records
    /// per call, then the shutdown checkpoint.
    fn new() -> Run {
        let run = Run {
            dir: tempfile::tempdir().unwrap(),
        };
        let key = run.path("keys/signing");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::copy(repo_path("fixtures/keys/carol"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = run.path("mcp-firewall.toml");
        std::fs::write(
            &config,
            format!(
                "[audit]\npath = \"{}\"\nsigning_key = \"{}\"\ncheckpoint_every_records = 4\n",
                run.log().display(),
                key.display()
            ),
        )
        .unwrap();
        let mut fw = Builder::new()
            .rego(ALLOW_ALL)
            .audit(&run.log())
            .data_dir(&run.path("state/data"))
            .args(&["--config", config.to_str().unwrap()])
            .wrap_fixture();
        fw.initialize();
        for i in 0..5 {
            fw.call("echo", serde_json::json!({"text": format!("call {i}")}));
        }
        assert!(fw.shutdown().success());
        run
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log(&self) -> PathBuf {
        self.path("logs/audit.jsonl")
    }

    fn checkpoints(&self) -> PathBuf {
        self.path("logs/audit.jsonl.checkpoints")
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Write `records` as a freshly chained log: what an editor with write
    /// access and the hash algorithm does to hide an edit.
    fn rechain(&self, records: Vec<Value>) {
        let mut prev = mcp_firewall::audit::GENESIS_HASH.to_string();
        let mut out = String::new();
        for (i, mut record) in records.into_iter().enumerate() {
            let obj = record.as_object_mut().unwrap();
            obj.remove("hash");
            obj.insert("seq".into(), (i as u64 + 1).into());
            obj.insert("prev".into(), prev.clone().into());
            let hash = sha256_tagged(canonical_json(&record).as_bytes());
            record["hash"] = hash.clone().into();
            out.push_str(&canonical_json(&record));
            out.push('\n');
            prev = hash;
        }
        std::fs::write(self.log(), out).unwrap();
    }

    /// `(exit ok, stdout)` of the firewall's verifier and the Python one.
    fn verify(&self, checkpoints: &Path) -> [(bool, String); 2] {
        let args: [std::ffi::OsString; 5] = [
            self.log().into(),
            "--checkpoints".into(),
            checkpoints.into(),
            "--public-key".into(),
            repo_path("fixtures/keys/carol.pub").into(),
        ];
        let rust = Command::new(firewall_bin())
            .args(["audit", "verify"])
            .args(&args)
            .output()
            .unwrap();
        let python = Command::new(repo_path("fixtures/python/.venv/bin/python"))
            .arg(repo_path("scripts/verify_audit.py"))
            .args(&args)
            .output()
            .unwrap();
        [rust, python].map(|out| {
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    }
}

fn assert_caught(verdicts: [(bool, String); 2], what: &str) {
    for (ok, out) in verdicts {
        assert!(!ok, "not caught: {out}");
        assert!(out.contains(what), "expected {what:?} in: {out}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_signed_run_verifies_and_its_files_are_private() {
    let run = Run::new();
    let records = run.records();
    let checkpoints = std::fs::read_to_string(run.checkpoints()).unwrap();
    let lines: Vec<Value> = checkpoints
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() >= 3,
        "every 4 records and at shutdown: {checkpoints}"
    );
    assert_eq!(lines[0]["n"], 1);
    assert_eq!(lines[0]["seq"], 4);
    let last = lines.last().unwrap();
    assert_eq!(last["seq"], records.len(), "shutdown signs the last record");
    assert_eq!(last["head"], records.last().unwrap()["hash"]);
    for (ok, out) in run.verify(&run.checkpoints()) {
        assert!(ok, "{out}");
        assert!(out.contains("checkpoint"), "{out}");
    }

    assert_eq!(mode(&run.log()), 0o600, "audit log");
    assert_eq!(mode(&run.checkpoints()), 0o600, "checkpoints");
    assert_eq!(mode(&run.path("logs")), 0o700, "the log's directory");
    assert_eq!(mode(&run.path("state/data")), 0o700, "data directory");
    assert_eq!(mode(&run.path("state")), 0o700, "its parent, created too");
    let db = std::fs::read_dir(run.path("state/data")).unwrap();
    for file in db {
        let file = file.unwrap().path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

/// Rewrite a signed run's log with `edit` and the chain recomputed: the
/// chain alone still verifies; the checkpoints say `what`.
fn rewritten_is_caught(edit: impl FnOnce(&mut Vec<Value>), what: &str) {
    let run = Run::new();
    let mut records = run.records();
    edit(&mut records);
    run.rechain(records);
    common::assert_chain_verifies(&run.log());
    assert_caught(run.verify(&run.checkpoints()), what);
}

#[test]
fn a_record_edited_and_rechained_is_caught_at_the_next_checkpoint() {
    rewritten_is_caught(
        |records| records[5]["event"] = "call.edited".into(),
        "diverges from checkpoint n 2",
    );
}

#[test]
fn a_record_deleted_and_rechained_is_caught() {
    rewritten_is_caught(
        |records| {
            records.remove(2);
        },
        "diverges from checkpoint n 1",
    );
}

#[test]
fn records_cut_off_the_end_are_caught() {
    rewritten_is_caught(
        |records| records.truncate(records.len() - 2),
        "cut off the end",
    );
}

#[test]
fn a_forged_or_removed_checkpoint_is_caught() {
    let run = Run::new();
    let text = std::fs::read_to_string(run.checkpoints()).unwrap();
    // Re-pointed at another head without the key: the signature fails.
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut forged = lines.clone();
    forged[0]["head"] = forged[1]["head"].clone();
    let forged_path = run.path("forged.checkpoints");
    let write = |path: &Path, items: &[Value]| {
        let body: String = items.iter().map(|v| canonical_json(v) + "\n").collect();
        std::fs::write(path, body).unwrap();
    };
    write(&forged_path, &forged);
    assert_caught(run.verify(&forged_path), "bad signature");
    // A checkpoint taken out of the middle leaves a gap in `n`.
    lines.remove(1);
    let gap_path = run.path("gap.checkpoints");
    write(&gap_path, &lines);
    assert_caught(run.verify(&gap_path), "n 3 where n 2 was expected");
}
