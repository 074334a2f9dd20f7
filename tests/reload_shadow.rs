//! Live policy reload, shadow mode and rate counters, through the real
//! binary. Reload tests change the policy under a running firewall and wait
//! (bounded) for the next calls to be decided by the new one.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const DENY_ECHO: &str = "package mcp.firewall\n\nallow := true\n\ndeny contains \"echo is off\" if input.tool.name == \"echo\"\n";
const ALLOW_ALL_V2: &str = "package mcp.firewall\n\n# version 2\nallow := true\n";

/// Call echo until `pred` holds for the response (the reload is
/// asynchronous); fail after a generous bound.
fn call_until(fw: &mut Firewall, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = fw.call("echo", json!({"text": "x"}));
        if pred(&resp) {
            return resp;
        }
        assert!(Instant::now() < deadline, "{what}: last response {resp}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn denied(resp: &Value) -> bool {
    resp["result"]["isError"] == true
}

#[test]
fn a_changed_policy_decides_the_next_calls() {
    let dir = policy_dir(DENY_ECHO);
    let mut fw = Builder::new().policy_path(dir.path()).wrap_fixture();
    fw.initialize();
    assert!(denied(&fw.call("echo", json!({"text": "x"}))));
    let old = fw.audit_records()[0]["revision"]
        .as_str()
        .unwrap()
        .to_string();

    std::fs::write(dir.path().join("policy.rego"), ALLOW_ALL_V2).unwrap();
    let allowed = call_until(&mut fw, "the new policy allows echo", |r| !denied(r));
    assert_eq!(text(&allowed), "x");
    let reload = fw.wait_audit("reload record", |r| r["event"] == "policy.reload");
    assert_eq!(reload["outcome"], "applied");
    assert_eq!(reload["old_revision"], old.as_str());
    let new = reload["new_revision"].as_str().unwrap();
    assert_ne!(new, old);
    let last = fw
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "call.decided")
        .unwrap();
    assert_eq!(
        last["policy_revision"], new,
        "new calls carry the new revision"
    );
}

#[test]
fn a_broken_policy_is_refused_and_the_old_one_keeps_deciding() {
    let dir = policy_dir(DENY_ECHO);
    let mut fw = Builder::new().policy_path(dir.path()).wrap_fixture();
    fw.initialize();
    std::fs::write(
        dir.path().join("policy.rego"),
        "package mcp.firewall\n\nallow if {\n",
    )
    .unwrap();
    let rejected = fw.wait_audit("rejected reload", |r| {
        r["event"] == "policy.reload" && r["outcome"] == "rejected"
    });
    assert!(
        rejected["error"].as_str().unwrap().contains("policy.rego"),
        "{rejected}"
    );
    assert!(
        denied(&fw.call("echo", json!({"text": "x"}))),
        "the old policy still decides"
    );

    // A set whose own tests fail is refused too.
    std::fs::write(dir.path().join("policy.rego"), ALLOW_ALL_V2).unwrap();
    std::fs::write(
        dir.path().join("policy_test.rego"),
        "package mcp.firewall_test\n\nimport data.mcp.firewall\n\ntest_echo_is_denied if {\n\tfirewall.deny[_] with input as {\"tool\": {\"name\": \"echo\"}}\n}\n",
    )
    .unwrap();
    let failed = fw.wait_audit("test failure", |r| {
        r["event"] == "policy.reload"
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("test_echo_is_denied"))
    });
    assert_eq!(failed["outcome"], "rejected");
    assert!(denied(&fw.call("echo", json!({"text": "x"}))));

    // Fix the tests' expectation: now the set loads, passes and applies.
    std::fs::remove_file(dir.path().join("policy_test.rego")).unwrap();
    call_until(&mut fw, "the fixed policy applies", |r| !denied(r));
}

#[test]
fn sighup_reloads_too() {
    let dir = policy_dir(DENY_ECHO);
    let mut fw = Builder::new().policy_path(dir.path()).wrap_fixture();
    fw.initialize();
    std::fs::write(dir.path().join("policy.rego"), ALLOW_ALL_V2).unwrap();
    unsafe { libc::kill(fw.child.id() as i32, libc::SIGHUP) };
    call_until(&mut fw, "reloaded", |r| !denied(r));
    fw.wait_audit("reload", |r| {
        r["event"] == "policy.reload" && r["outcome"] == "applied"
    });
}

#[test]
fn shadow_mode_logs_the_decision_and_forwards_the_call() {
    let mut fw = Builder::new()
        .rego(DENY_ECHO)
        .arg("--shadow")
        .wrap_fixture();
    fw.initialize();
    let resp = fw.call("echo", json!({"text": "through"}));
    assert_eq!(text(&resp), "through", "forwarded despite the deny");
    let decided = fw.wait_audit("shadow decision", |r| r["event"] == "call.decided");
    assert_eq!(decided["shadow"], true);
    assert_eq!(decided["result"]["decision"], "deny");
    assert_eq!(decided["result"]["enforced"], false);
    assert_eq!(
        fw.audit_records()[0]["shadow"],
        true,
        "policy.loaded says shadow mode"
    );
}

#[test]
fn rate_counters_reach_the_policy() {
    let rego = "package mcp.firewall\n\nallow := true\n\ndeny contains \"more than 2 echo calls a minute\" if {\n\tinput.tool.name == \"echo\"\n\tinput.rate.principal_tool_last_minute >= 2\n}\n";
    let mut fw = Builder::new().rego(rego).wrap_fixture();
    fw.initialize();
    assert_eq!(text(&fw.call("echo", json!({"text": "1"}))), "1");
    assert_eq!(text(&fw.call("echo", json!({"text": "2"}))), "2");
    let third = fw.call("echo", json!({"text": "3"}));
    assert_eq!(
        text(&third),
        "Denied by policy: more than 2 echo calls a minute"
    );
    assert_eq!(
        text(&fw.call("add", json!({"a": 1, "b": 1}))),
        "2",
        "other tools are counted apart"
    );
    let decided = fw.wait_audit("third", |r| {
        r["event"] == "call.decided" && r["input"]["rate"]["principal_tool_last_minute"] == 2
    });
    assert_eq!(decided["input"]["rate"]["principal_last_minute"], 2);
}
