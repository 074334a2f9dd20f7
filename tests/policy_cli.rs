//! `mcp-firewall policy test|eval|replay` through the real binary: output
//! formats, exit codes, and the guide's example policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn firewall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-firewall"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn shipped_library_tests_pass_with_one_line_each() {
    let out = firewall(&["policy", "test", "policies"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let pass_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("PASS  ")).collect();
    assert!(pass_lines.len() >= 50, "{text}");
    for file in [
        "main",
        "filesystem",
        "secrets",
        "shell",
        "egress",
        "ratelimit",
        "timewindow",
        "claude_code",
    ] {
        assert!(
            text.contains(&format!("policies/{file}_test.rego")),
            "{file}: {text}"
        );
    }
    // PASS  <package>.<name>  <file>  <duration>
    let fields: Vec<&str> = pass_lines[0].split("  ").collect();
    assert_eq!(fields.len(), 4, "{}", pass_lines[0]);
    assert!(fields[1].starts_with("mcp.firewall_test.test_"));
    assert!(fields[2].ends_with("_test.rego"));
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn failing_test_exits_non_zero_naming_it_with_its_prints() {
    let out = firewall(&["policy", "test", "tests/cases/guide/failing"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  mcp.firewall_test.test_fails_with_print  "),
        "{text}"
    );
    assert!(text.contains("print: "), "{text}");
    assert!(text.contains("tool is close_ticket"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    assert!(
        stderr(&out).contains("failed: mcp.firewall_test.test_fails_with_print"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn filter_runs_only_matching_tests() {
    let out = firewall(&["policy", "test", "policies", "--filter", "fork_bomb"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("PASS")).count(),
        1,
        "{text}"
    );
}

#[test]
fn coverage_prints_a_percentage_per_policy_file() {
    let out = firewall(&["policy", "test", "policies", "--coverage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("coverage  "))
        .collect();
    assert_eq!(lines.len(), 10, "{text}");
    for line in &lines {
        assert!(line.contains("%  covered: "), "{line}");
        assert!(!line.contains("_test.rego"), "{line}");
    }
}

fn eval(input: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let mut args = vec!["policy", "eval", "--input", file.to_str().unwrap()];
    args.extend(extra);
    let out = firewall(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn call(tool: &str, annotations: Value, arguments: Value) -> Value {
    json!({"version": 1, "method": "tools/call", "server": "fs", "server_trusted": true,
           "tool": {"name": tool, "annotations": annotations},
           "arguments": arguments, "principal": {"id": "alice"}})
}

#[test]
fn eval_explain_credits_each_reason_to_its_file_and_line() {
    let input = call(
        "write_file",
        json!({"destructiveHint": true}),
        json!({"path": "/etc/x"}),
    );
    let out = eval(&input, &["--explain"]);
    assert_eq!(out["decision"], "deny");
    let explain = &out["explain"];
    let reasons = explain["reasons"].as_array().unwrap();
    let at = |rule: &str| {
        reasons
            .iter()
            .find(|r| r["rule"] == rule)
            .map(|r| r["at"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(
        at("deny").starts_with("policies/filesystem.rego:"),
        "{explain}"
    );
    assert!(
        at("approve").starts_with("policies/main.rego:"),
        "{explain}"
    );
    assert_eq!(explain["rules"]["allow"], Value::Null);
    assert_eq!(explain["other_rules"]["write_tool"], true);
    // Without --explain: the plain decision document.
    let plain = eval(&input, &[]);
    assert!(plain.get("explain").is_none());
    assert_eq!(plain["decision"], "deny");
}

#[test]
fn eval_accepts_an_audit_record_and_the_guide_policy() {
    let record = json!({"seq": 3, "event": "call.decided",
        "input": call("read_file", json!({"readOnlyHint": true}), json!({"path": "/srv/a"}))});
    assert_eq!(eval(&record, &[])["decision"], "allow");
    let input = json!({"method": "tools/call", "tool": {"name": "delete_ticket"},
                       "arguments": {"project": "LEGAL"}, "principal": {"id": "bob"}});
    let out = eval(
        &input,
        &["--policy", "tests/cases/guide/policy", "--explain"],
    );
    assert_eq!(out["reasons"], json!(["project LEGAL is protected"]));
    assert!(
        out["explain"]["reasons"][0]["at"]
            .as_str()
            .unwrap()
            .contains("tickets.rego:"),
        "{out}"
    );
}

fn decided(seq: u64, tool: &str, annotations: Value, arguments: Value, old: &str) -> Value {
    json!({"seq": seq, "event": "call.decided", "method": "tools/call", "server": "fs",
           "target": tool, "result": {"decision": old},
           "input": call(tool, annotations, arguments)})
}

#[test]
fn replay_reports_exactly_the_changed_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let records = [
        json!({"seq": 1, "event": "policy.loaded", "revision": "sha256:x"}),
        // unchanged: read-only allowed
        decided(
            2,
            "read_file",
            json!({"readOnlyHint": true}),
            json!({"path": "/srv/a"}),
            "allow",
        ),
        // changed: the old policy allowed a shell command the library denies
        decided(
            3,
            "run_command",
            json!({}),
            json!({"command": "rm -rf /"}),
            "allow",
        ),
        // unchanged: destructive write held
        decided(
            4,
            "write_file",
            json!({"destructiveHint": true}),
            json!({"path": "/srv/a"}),
            "approve",
        ),
        // changed: an external fetch that used to be allowed is now held
        decided(
            5,
            "fetch",
            json!({"readOnlyHint": true}),
            json!({"url": "https://x.example.com/?t=1"}),
            "allow",
        ),
        // skipped: refused before policy ran, no input
        json!({"seq": 6, "event": "call.decided", "method": "tools/call", "target": "nope",
               "result": {"decision": "deny"}}),
    ];
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&log, text).unwrap();
    let out = firewall(&[
        "policy",
        "replay",
        log.to_str().unwrap(),
        "--policy",
        "policies",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("seq=3 tools/call fs run_command: allow -> deny (shell tool run_command: command denied: recursive delete"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("seq=5 tools/call fs fetch: allow -> approve (tool fetch sends a request to x.example.com"),
        "{text}"
    );
    assert_eq!(
        lines[2],
        "6 records read, 4 decisions evaluated, 2 changed, 1 skipped (no input), 0 evaluation errors, 0 unreadable lines"
    );
}

#[test]
fn replay_fails_on_unreadable_lines_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    std::fs::write(&log, "{not json\n").unwrap();
    let out = firewall(&["policy", "replay", log.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("audit.jsonl:1: not JSON"),
        "{}",
        stderr(&out)
    );
    let out = firewall(&["policy", "replay", "/nonexistent/audit.jsonl"]);
    assert!(!out.status.success());
}

#[test]
fn missing_builtin_is_named_as_unavailable_in_regorus() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package mcp.firewall\n\ndeny contains \"bad\" if crypto.sha256(\"x\") == \"y\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in.json"), "{}").unwrap();
    let input = dir.path().join("in.json");
    let out = firewall(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--policy",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("builtin crypto.sha256 is unavailable: regorus"),
        "{}",
        stderr(&out)
    );
}

/// Every example policy file under tests/cases/guide/policy appears verbatim
/// in docs/policy-guide.md, so the guide shows exactly what the tests run.
#[test]
fn guide_examples_are_the_tested_files() {
    let guide = std::fs::read_to_string(repo("docs/policy-guide.md")).unwrap();
    for name in ["tickets.rego", "tickets_test.rego", "data.yaml"] {
        let text = std::fs::read_to_string(repo("tests/cases/guide/policy").join(name)).unwrap();
        assert!(
            guide.contains(text.trim()),
            "{name} is not in the guide verbatim"
        );
    }
    let out = firewall(&["policy", "test", "tests/cases/guide/policy"]);
    assert!(out.status.success(), "{}", stdout(&out));
}
