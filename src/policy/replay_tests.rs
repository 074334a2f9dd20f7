//! Replaying audit records through a policy.

use serde_json::json;
use tempfile::TempDir;

use super::{Replayed, replay_record};
use crate::policy::PolicySet;

fn set(rego: &str) -> (TempDir, PolicySet) {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("p.rego"), rego).unwrap();
    let set = PolicySet::load_dir(dir.path(), "mcp.firewall").unwrap();
    (dir, set)
}

fn record(seq: u64, tool: &str, old: &str) -> serde_json::Value {
    json!({
        "seq": seq, "event": "call.decided", "method": "tools/call", "server": "fs",
        "target": tool, "result": {"decision": old},
        "input": {"method": "tools/call", "server": "fs", "tool": {"name": tool}, "arguments": {}},
    })
}

#[test]
fn reports_only_changed_labels() {
    let (_d, set) = set(
        "package mcp.firewall\nallow if input.tool.name == \"read\"\ndeny contains \"no rm\" if input.tool.name == \"rm\"\nhide if input.tool.name == \"secret\"\n",
    );
    assert_eq!(
        replay_record(&set, &record(1, "read", "allow")),
        Replayed::Same
    );
    let Replayed::Changed(c) = replay_record(&set, &record(2, "rm", "approve")) else {
        panic!("expected a change");
    };
    assert_eq!(
        c.to_string(),
        "seq=2 tools/call fs rm: approve -> deny (no rm)"
    );
    let Replayed::Changed(c) = replay_record(&set, &record(3, "secret", "allow")) else {
        panic!("hidden tools are denied");
    };
    assert_eq!(c.new, "deny");
    // default hold
    let Replayed::Changed(c) = replay_record(&set, &record(4, "other", "allow")) else {
        panic!("expected a change");
    };
    assert_eq!(c.new, "approve");
}

#[test]
fn skips_other_events_and_records_without_input() {
    let (_d, set) = set("package mcp.firewall\nallow := true\n");
    let mut r = record(1, "x", "deny");
    r.as_object_mut().unwrap().remove("input");
    assert_eq!(replay_record(&set, &r), Replayed::NoInput);
    assert_eq!(
        replay_record(&set, &json!({"event": "policy.loaded"})),
        Replayed::OtherEvent
    );
}

#[test]
fn evaluation_errors_are_deny_changes() {
    let (_d, set) =
        set("package mcp.firewall\nallow := true\ndeny contains x if x := 1 / input.zero\n");
    let mut r = record(5, "x", "allow");
    r["input"]["zero"] = json!(0);
    let Replayed::Changed(c) = replay_record(&set, &r) else {
        panic!("expected a change");
    };
    assert!(c.eval_error && c.new == "deny", "{c:?}");
}
