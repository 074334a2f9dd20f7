//! The response phase leaves out exactly the `deny` rules that cannot see a
//! result; every way a rule can reach the result keeps it.

use std::path::Path;

use serde_json::{Value, json};

use crate::policy::{Decision, PolicySet};

use crate::policy::test_support::{load, shipped};

/// A result for `tools/call echo` whose text is "LEAK", and whose
/// arguments would trip the request-only rule `deny contains "arguments"`.
fn response() -> Value {
    json!({
        "version": 1, "method": "tools/call", "server": "fs", "phase": "response",
        "tool": {"name": "echo"}, "arguments": {"x": 1},
        "result": {"content": [{"type": "text", "text": "LEAK"}], "findings": []},
    })
}

fn denied(set: &PolicySet) -> Vec<String> {
    match set.evaluate(&response()).unwrap().decision {
        Decision::Deny { reasons } => reasons,
        _ => vec![],
    }
}

/// A rule that judges only the request, next to which each case is loaded.
const REQUEST_ONLY: &str = r#"package mcp.firewall
deny contains "arguments" if input.arguments.x == 1
"#;

#[test]
fn the_shipped_library_runs_no_request_deny_rule_per_result() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = shipped();
    let deny_rules: usize = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rego"))
        .filter(|p| !p.to_string_lossy().ends_with("_test.rego"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("deny contains"))
                .count()
        })
        .sum();
    assert!(deny_rules >= 8, "the library has {deny_rules} deny rules");
    assert_eq!(set.response_skips(), deny_rules);
    // redact and warn still run: a token found in a result is redacted.
    let mut input = response();
    input["result"]["findings"] = json!([{"kind": "github_token", "pointer": "/content/0/text"}]);
    input["arguments"] = json!({"path": "/etc/../passwd"});
    let verdict = set.evaluate(&input).unwrap();
    assert_eq!(verdict.redact, vec!["github_token".to_string()]);
    assert!(
        !matches!(verdict.decision, Decision::Deny { .. }),
        "the request's path rule was decided on the request"
    );
}

#[test]
fn a_rule_that_cannot_see_the_result_is_left_out() {
    let set = load(&[("a.rego", REQUEST_ONLY)]);
    assert_eq!(set.response_skips(), 1);
    assert_eq!(denied(&set), Vec::<String>::new());
    // The request itself is decided by every rule.
    let mut request = response();
    request.as_object_mut().unwrap().remove("phase");
    assert!(matches!(
        set.evaluate(&request).unwrap().decision,
        Decision::Deny { .. }
    ));
}

/// Each way a `deny` rule can reach the result: the rule must run on it.
#[test]
fn every_way_to_reach_the_result_keeps_the_rule() {
    let leak = r#"contains(json.marshal(r), "LEAK")"#;
    let cases: Vec<(&str, String)> = vec![
        ("directly", format!("deny contains \"hit\" if {{ r := input.result\n {leak} }}")),
        ("by string key", format!("deny contains \"hit\" if {{ r := input[\"result\"]\n {leak} }}")),
        ("by the phase", "deny contains \"hit\" if input.phase == \"response\"".into()),
        ("through a helper rule", format!("seen := input.result\ndeny contains \"hit\" if {{ r := seen\n {leak} }}")),
        ("through two helpers", format!("a := input.result\nb := a\ndeny contains \"hit\" if {{ r := b\n {leak} }}")),
        ("through a function", format!("f(_) := input.result\ndeny contains \"hit\" if {{ r := f(1)\n {leak} }}")),
        ("through a computed key", format!("deny contains \"hit\" if {{ k := \"result\"\n r := input[k]\n {leak} }}")),
        ("through object.get", format!("deny contains \"hit\" if {{ r := object.get(input, \"result\", {{}})\n {leak} }}")),
        ("through object.get with a path", format!("deny contains \"hit\" if {{ r := object.get(input, [\"result\", \"content\"], [])\n {leak} }}")),
        ("through object.get with a computed path", format!("deny contains \"hit\" if {{ k := \"result\"\n r := object.get(input, [k], [])\n {leak} }}")),
        ("through the whole input", format!("deny contains \"hit\" if {{ r := input\n {leak} }}")),
        ("through walk", "deny contains \"hit\" if { walk(input, [_, v])\n v == \"LEAK\" }".into()),
        ("through some-in", format!("deny contains \"hit\" if {{ some k, r in input\n k == \"result\"\n {leak} }}")),
        ("through data", format!("deny contains \"hit\" if {{ r := data.mcp.firewall.seen\n {leak} }}\nseen := input.result")),
        ("through a whole package", format!("deny contains \"hit\" if {{ r := data.mcp.helpers\n {leak} }}")),
        ("through object.get of data", format!("deny contains \"hit\" if {{ r := object.get(data, [\"mcp\", \"helpers\", \"seen\"], 0)\n {leak} }}")),
        ("through another package", format!("deny contains \"hit\" if {{ r := data.mcp.helpers.seen\n {leak} }}")),
        ("through an imported package", format!("deny contains \"hit\" if {{ r := helpers.seen\n {leak} }}")),
        ("through an imported input path", format!("deny contains \"hit\" if {{ r := res\n {leak} }}")),
        ("through an imported input", format!("deny contains \"hit\" if {{ r := inp.result\n {leak} }}")),
        ("through with", format!("seen := input.arguments\ndeny contains \"hit\" if {{ r := seen with input.arguments as input.result\n {leak} }}")),
        ("in the head", "deny contains input.result.content[0].text if true".into()),
        ("through a comprehension", format!("deny contains \"hit\" if {{ r := [c | some c in input.result.content]\n {leak} }}")),
        ("through every", "deny contains \"hit\" if { x := 1\n every c in input.result.content { c.text == \"LEAK\" } }".into()),
    ];
    let helpers = "package mcp.helpers\nseen := input.result\n";
    for (how, rule) in cases {
        let imports = match how {
            "through an imported package" => "import data.mcp.helpers\n",
            "through an imported input path" => "import input.result as res\n",
            "through an imported input" => "import input as inp\n",
            _ => "",
        };
        let rego = format!("package mcp.firewall\n{imports}{rule}\n");
        let set = load(&[
            ("a.rego", REQUEST_ONLY),
            ("b.rego", &rego),
            ("h.rego", helpers),
        ]);
        let expected = match how {
            "in the head" => vec!["LEAK".to_string()],
            // regorus passes `data` to a function without its rules; the
            // rule is kept all the same.
            "through object.get of data" => vec![],
            _ => vec!["hit".to_string()],
        };
        assert_eq!(denied(&set), expected, "{how}: {rego}");
        assert_eq!(
            set.response_skips(),
            1,
            "{how}: only the request-only rule is left out"
        );
    }
}

/// The walk names reads of `input.result.findings` apart from the rest of
/// the result (the specializer knows findings before the rules run); a
/// `deny` rule reading them sees the result all the same.
#[test]
fn a_rule_over_the_findings_is_kept() {
    for rule in [
        "deny contains \"hit\" if { some f in input.result.findings\n f.kind == \"jwt\" }",
        "deny contains \"hit\" if count(input.result.findings) > 0",
        "deny contains \"hit\" if input.result.findings[0].kind == \"jwt\"",
        "deny contains \"hit\" if input.result[\"findings\"][_].kind == \"jwt\"",
    ] {
        let rego = format!("package mcp.firewall\n{rule}\n");
        let set = load(&[("a.rego", REQUEST_ONLY), ("b.rego", &rego)]);
        assert_eq!(set.response_skips(), 1, "{rule}");
        let mut input = response();
        input["result"]["findings"] = json!([{"kind": "jwt", "pointer": "/content/0/text"}]);
        for _ in 0..3 {
            let verdict = set.evaluate(&input).unwrap();
            assert_eq!(
                verdict.decision,
                Decision::Deny {
                    reasons: vec!["hit".into()]
                },
                "{rule}"
            );
        }
        assert_eq!(denied(&set), Vec::<String>::new(), "{rule}: no findings");
    }
}

#[test]
fn nothing_is_left_out_when_a_kept_rule_reads_deny() {
    let rego = r#"package mcp.firewall
warn contains sprintf("%d reasons", [count(deny)]) if input.phase == "response"
"#;
    let set = load(&[("a.rego", REQUEST_ONLY), ("b.rego", rego)]);
    assert_eq!(set.response_skips(), 0);
    assert_eq!(denied(&set), vec!["arguments".to_string()]);
}

/// Blanking keeps every line and column: an error in a kept rule after a
/// left-out one (with multi-byte characters) points where the file says.
#[test]
fn errors_in_the_response_phase_point_at_the_file_lines() {
    let rego = "package mcp.firewall\n\n# A rule — with “quotes” — that only judges the request:\ndeny contains \"é\" if {\n\tinput.arguments.x == \"ü\"\n}\n\ndeny contains \"hit\" if {\n\tx := 1 / input.result.zero\n\tx > 0\n}\n";
    let set = load(&[("a.rego", rego)]);
    assert_eq!(set.response_skips(), 1);
    let mut input = response();
    input["result"]["zero"] = json!(0);
    let err = set.evaluate(&input).unwrap_err().to_string();
    assert!(err.contains("a.rego:9:"), "{err}");
}

/// `data.mcp.firewall.h.seen` is both rule `h` of `mcp.firewall` (a ref
/// head `h.seen`) and rule `seen` of package `mcp.firewall.h`: the walk
/// follows both, not only the longer package.
#[test]
fn a_path_through_two_packages_reaches_the_rules_of_both() {
    let rego = r#"package mcp.firewall
h.seen := input.result
deny contains "hit" if {
	r := data.mcp.firewall.h.seen
	contains(json.marshal(r), "LEAK")
}
"#;
    let sub = "package mcp.firewall.h\nother := 1\n";
    let set = load(&[("a.rego", REQUEST_ONLY), ("b.rego", rego), ("c.rego", sub)]);
    assert_eq!(denied(&set), vec!["hit".to_string()]);
    assert_eq!(set.response_skips(), 1);
}

/// A `deny` rule defined from an enclosing package (`package mcp` with
/// `firewall.deny`) is a decision rule the walk does not key as `deny`:
/// results are then judged by the whole policy, that rule included.
#[test]
fn a_deny_rule_defined_from_an_enclosing_package_judges_results() {
    let outer = "package mcp\nfirewall.deny contains \"leak\" if contains(json.marshal(input.result), \"LEAK\")\n";
    let set = load(&[("a.rego", REQUEST_ONLY), ("b.rego", outer)]);
    assert!(
        denied(&set).contains(&"leak".to_string()),
        "{:?}",
        denied(&set)
    );
    assert_eq!(set.response_skips(), 0);
}
