//! Explanations: rule values, reasons credited to file and line.

use serde_json::json;
use tempfile::TempDir;

use super::explain;

fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const A: &str =
    "package mcp.firewall\n\nallow if input.ro\n\ndeny contains \"from a\" if input.bad\n";
const B: &str = "package mcp.firewall\n\nflagged := true if input.bad\n\n# deny contains \"comment\"\ndeny contains msg if {\n\tinput.bad\n\tmsg := sprintf(\"from b: %v\", [input.bad])\n}\n\napprove contains \"hold\" if input.hold\n";

#[test]
fn reasons_are_credited_to_their_rule() {
    let dir = dir_with(&[("a.rego", A), ("b.rego", B)]);
    let e = explain(dir.path(), "mcp.firewall", &json!({"bad": 1, "hold": true})).unwrap();
    assert_eq!(e.verdict.decision.label(), "deny");
    let mut got: Vec<(String, String, usize)> = e
        .sources
        .iter()
        .map(|s| {
            let file = s.file.as_ref().unwrap().file_name().unwrap();
            (
                s.reason.clone(),
                file.to_string_lossy().into_owned(),
                s.line.unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("from a".to_string(), "a.rego".to_string(), 5),
            ("from b: 1".to_string(), "b.rego".to_string(), 6),
            ("hold".to_string(), "b.rego".to_string(), 11),
        ]
    );
    assert!(e.unattributed.is_empty());
    assert_eq!(e.rules["deny"], json!(["from a", "from b: 1"]));
    assert_eq!(e.rules["allow"], json!(null));
    assert_eq!(e.other_rules["flagged"], json!(true));
}

#[test]
fn complete_rules_are_unattributed_and_verdict_is_unchanged() {
    let rego = "package mcp.firewall\n\ndeny := {\"whole\"} if input.x\n";
    let dir = dir_with(&[("p.rego", rego)]);
    let e = explain(dir.path(), "mcp.firewall", &json!({"x": true})).unwrap();
    assert_eq!(e.verdict.decision.label(), "deny");
    assert_eq!(e.unattributed.len(), 1);
    assert_eq!(e.unattributed[0].reason, "whole");
}

/// A result is explained by what the response phase ran: a request-only
/// `deny` rule whose condition holds in the input is neither in the verdict
/// nor credited with a reason.
#[test]
fn a_result_is_explained_by_the_rules_the_response_phase_runs() {
    let rego = "package mcp.firewall\n\ndeny contains \"request\" if input.bad\n\ndeny contains \"result\" if input.result.bad\n";
    let dir = dir_with(&[("a.rego", rego)]);
    let input = json!({"bad": true, "phase": "response", "result": {"bad": true}});
    let e = explain(dir.path(), "mcp.firewall", &input).unwrap();
    let reasons: Vec<&str> = e.sources.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons, ["result"]);
    assert_eq!(e.sources[0].line, Some(5));
    assert_eq!(
        e.verdict.decision,
        crate::policy::Decision::Deny {
            reasons: vec!["result".into()]
        }
    );
}
