//! `mcp-firewall policy test|eval|replay`: the policy author's tools.
//!
//! Job: print what the library's [`run_tests_with`], [`explain`] and
//! [`replay_record`] return, and choose the exit code. Output formats are
//! documented in docs/policy-guide.md; tests in tests/policy_cli.rs pin them.
//!
//! Exit codes: `test` fails on any failing test (or none found); `eval`
//! fails only when the policy cannot load or evaluate; `replay` is a report,
//! so changed decisions exit 0 and only unreadable input exits non-zero.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use mcp_firewall::policy::{
    Decision, Explanation, FileCoverage, PolicySet, Replayed, TestOptions, TestOutcome, Verdict,
    explain, replay_record, run_tests_with,
};

/// `policy test [DIR] [--filter S] [--coverage]`.
pub fn test(dir: &Path, options: &TestOptions) -> anyhow::Result<ExitCode> {
    let run = run_tests_with(dir, options)?;
    for o in &run.outcomes {
        print_outcome(o);
    }
    if let Some(coverage) = &run.coverage {
        print_coverage(coverage);
    }
    let failed: Vec<String> = run
        .outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("{}.{}", o.package, o.name))
        .collect();
    let passed = run.outcomes.len() - failed.len();
    println!("{passed} passed, {} failed", failed.len());
    if run.outcomes.is_empty() {
        eprintln!("mcp-firewall: no test_* rules found in {}", dir.display());
        return Ok(ExitCode::FAILURE);
    }
    if !failed.is_empty() {
        eprintln!("mcp-firewall: failed: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `PASS  pkg.name  file  1.2ms`, then for a failure its error and prints.
fn print_outcome(o: &TestOutcome) {
    let verdict = if o.passed { "PASS" } else { "FAIL" };
    println!(
        "{verdict}  {}.{}  {}  {:.1?}",
        o.package,
        o.name,
        o.file.display(),
        o.duration
    );
    if o.passed {
        return;
    }
    if let Some(error) = &o.error {
        println!("    error: {error}");
    }
    for line in &o.prints {
        println!("    print: {line}");
    }
}

/// `coverage  policies/main.rego  87.5%  covered: 1,2  uncovered: 3`.
fn print_coverage(files: &[FileCoverage]) {
    let list = |lines: &std::collections::BTreeSet<u32>| {
        let shown: Vec<String> = lines.iter().map(u32::to_string).collect();
        if shown.is_empty() {
            "-".to_string()
        } else {
            shown.join(",")
        }
    };
    for f in files {
        if f.reached {
            println!(
                "coverage  {}  {:.1}%  covered: {}  uncovered: {}",
                f.file.display(),
                f.percent(),
                list(&f.covered),
                list(&f.uncovered)
            );
        } else {
            println!(
                "coverage  {}  0.0%  not reached by any test",
                f.file.display()
            );
        }
    }
}

/// `policy eval --input FILE [--policy DIR] [--explain]`.
pub fn eval(input: &Path, dir: &Path, package: &str, explained: bool) -> anyhow::Result<ExitCode> {
    let input = read_input(input)?;
    let out = if explained {
        let e = explain(dir, package, &input)?;
        let mut out = verdict_json(&e.verdict, &e.revision);
        out["explain"] = explanation_json(&e);
        out
    } else {
        let policy = PolicySet::load_dir(dir, package)?;
        let verdict = policy.evaluate(&input)?;
        verdict_json(&verdict, policy.revision())
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The input document in `path`: a bare input, or an audit record whose
/// `input` field is used.
fn read_input(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let is_record = doc.get("event").is_some() && doc.get("input").is_some();
    Ok(if is_record { doc["input"].clone() } else { doc })
}

fn verdict_json(verdict: &Verdict, revision: &str) -> Value {
    let (reasons, obligations) = match &verdict.decision {
        Decision::Allow => (vec![], Value::Null),
        Decision::Deny { reasons } => (reasons.clone(), Value::Null),
        Decision::Approve {
            reasons,
            obligations,
        } => (reasons.clone(), obligations.clone().unwrap_or_default()),
    };
    json!({
        "decision": verdict.decision.label(),
        "reasons": reasons,
        "obligations": obligations,
        "hide": verdict.hide,
        "message": verdict.message,
        "default_hold": verdict.default_hold,
        "redact": verdict.redact,
        "warn": verdict.warn,
        "policy_revision": revision,
    })
}

fn explanation_json(e: &Explanation) -> Value {
    let source = |s: &mcp_firewall::policy::ReasonSource| {
        let at = match (&s.file, s.line) {
            (Some(f), Some(l)) => Value::String(format!("{}:{l}", f.display())),
            _ => Value::Null,
        };
        json!({"rule": s.rule, "reason": s.reason, "at": at})
    };
    json!({
        "rules": e.rules,
        "reasons": e.sources.iter().map(source).collect::<Vec<_>>(),
        "unattributed": e.unattributed.iter().map(source).collect::<Vec<_>>(),
        "other_rules": e.other_rules,
    })
}

/// Counts for the replay summary.
#[derive(Default)]
struct Tally {
    read: u64,
    evaluated: u64,
    changed: u64,
    skipped: u64,
    eval_errors: u64,
    bad_lines: u64,
}

/// `policy replay AUDIT.jsonl [--policy DIR]`.
pub fn replay(log: &Path, dir: &Path, package: &str) -> anyhow::Result<ExitCode> {
    let policy = PolicySet::load_dir(dir, package)?;
    let file =
        std::fs::File::open(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut tally = Tally::default();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", log.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        tally.read += 1;
        let record: Value = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                tally.bad_lines += 1;
                eprintln!("{}:{}: not JSON: {e}", log.display(), index + 1);
                continue;
            }
        };
        match replay_record(&policy, &record) {
            Replayed::OtherEvent => {}
            Replayed::NoInput => tally.skipped += 1,
            Replayed::Same => tally.evaluated += 1,
            Replayed::Changed(change) => {
                tally.evaluated += 1;
                tally.changed += 1;
                tally.eval_errors += u64::from(change.eval_error);
                println!("{change}");
            }
        }
    }
    println!(
        "{} records read, {} decisions evaluated, {} changed, {} skipped (no input), {} evaluation errors, {} unreadable lines",
        tally.read,
        tally.evaluated,
        tally.changed,
        tally.skipped,
        tally.eval_errors,
        tally.bad_lines
    );
    Ok(if tally.bad_lines == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
