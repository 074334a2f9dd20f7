//! Data-driven decision cases: every `tests/cases/*.json` file is one input
//! run through `PolicySet::evaluate`, with the decision it must get.
//!
//! A case is `{"description", "policy_dir" | "rego", "data"?, "input",
//! "expected": {"decision", "reasons_contain"?}}`. `policy_dir` is relative to
//! the repository; `data`, when given, replaces that directory's data files
//! (a copy is made). The files double as fuzz seeds: plain JSON inputs with
//! known decisions.

use std::path::{Path, PathBuf};

use mcp_firewall::policy::{Decision, PolicySet};
use serde_json::Value;

const PACKAGE: &str = "mcp.firewall";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory holding the case's policy; the TempDir keeps it alive.
fn policy_for(case: &Value) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    if let Some(rego) = case["rego"].as_str() {
        std::fs::write(tmp.path().join("policy.rego"), rego).unwrap();
    } else {
        let src = repo().join(case["policy_dir"].as_str().expect("policy_dir or rego"));
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let is_data = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            );
            if path.is_file() && !(is_data && case.get("data").is_some()) {
                std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    if let Some(data) = case.get("data") {
        std::fs::write(tmp.path().join("case-data.json"), data.to_string()).unwrap();
    }
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn check(file: &Path) -> Result<(), String> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
        .map_err(|e| format!("not JSON: {e}"))?;
    let (_keep, dir) = policy_for(&case);
    let set = PolicySet::load_dir(&dir, PACKAGE).map_err(|e| e.to_string())?;
    let verdict = set.evaluate(&case["input"]).map_err(|e| e.to_string())?;
    let expected = &case["expected"];
    let label = verdict.decision.label();
    if expected["decision"] != label {
        return Err(format!(
            "decision {label}, expected {}: {:?}",
            expected["decision"], verdict.decision
        ));
    }
    let reasons = match &verdict.decision {
        Decision::Allow => Vec::new(),
        Decision::Deny { reasons } | Decision::Approve { reasons, .. } => reasons.clone(),
    };
    for want in expected["reasons_contain"].as_array().into_iter().flatten() {
        let want = want.as_str().unwrap();
        if !reasons.iter().any(|r| r.contains(want)) {
            return Err(format!("no reason contains {want:?}: {reasons:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_case_gets_its_expected_decision() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} cases", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
