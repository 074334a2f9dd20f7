//! Precedence, defaults and type checks of `verdict::from_rules`.

use serde_json::{Value, json};

use super::from_rules;
use crate::policy::{DEFAULT_HOLD_REASON, Decision, PolicyError};

/// The adapter's shape: every rule present, `[]` when undefined.
fn rules(deny: &[&str], approve: &[&str], allow: Option<bool>) -> Value {
    let wrap = |v: Option<Value>| Value::Array(v.into_iter().collect());
    json!({
        "deny": wrap(Some(json!(deny))),
        "approve": wrap(Some(json!(approve))),
        "allow": wrap(allow.map(Value::Bool)),
        "hide": [], "message": [], "approval": [], "redact": [], "warn": [],
    })
}

#[test]
fn precedence_every_combination() {
    for deny in [false, true] {
        for approve in [false, true] {
            for allow in [None, Some(false), Some(true)] {
                let d: &[&str] = if deny { &["d"] } else { &[] };
                let a: &[&str] = if approve { &["a"] } else { &[] };
                let v = from_rules(&rules(d, a, allow)).unwrap();
                let expected = if deny {
                    Decision::Deny {
                        reasons: vec!["d".into()],
                    }
                } else if approve {
                    Decision::Approve {
                        reasons: vec!["a".into()],
                        obligations: None,
                    }
                } else if allow == Some(true) {
                    Decision::Allow
                } else {
                    Decision::Approve {
                        reasons: vec![DEFAULT_HOLD_REASON.into()],
                        obligations: None,
                    }
                };
                assert_eq!(
                    v.decision, expected,
                    "deny={deny} approve={approve} allow={allow:?}"
                );
                let default = !deny && !approve && allow != Some(true);
                assert_eq!(v.default_hold, default);
            }
        }
    }
}

#[test]
fn everything_undefined_is_default_hold() {
    let all_undefined = json!({"deny": [], "approve": [], "allow": [], "hide": [], "message": [], "approval": [], "redact": [], "warn": []});
    let v = from_rules(&all_undefined).unwrap();
    assert!(v.default_hold);
    assert!(!v.hide);
    assert_eq!(v.message, None);
    assert_eq!(v.decision.label(), "approve");
}

#[test]
fn optional_rules_are_read() {
    let mut r = rules(&[], &["needs a human"], Some(true));
    r["hide"] = json!([true]);
    r["message"] = json!(["ask ops"]);
    r["approval"] = json!([{"approvers": "ops", "quorum": 2}]);
    let v = from_rules(&r).unwrap();
    assert!(v.hide);
    assert_eq!(v.message.as_deref(), Some("ask ops"));
    let obligations = Some(json!({"approvers": "ops", "quorum": 2}));
    assert_eq!(
        v.decision,
        Decision::Approve {
            reasons: vec!["needs a human".into()],
            obligations
        }
    );
}

#[test]
fn default_hold_carries_approval_obligations() {
    let mut r = rules(&[], &[], None);
    r["approval"] = json!([{"approvers": "ops"}]);
    let v = from_rules(&r).unwrap();
    assert!(matches!(
        v.decision,
        Decision::Approve {
            obligations: Some(_),
            ..
        }
    ));
}

fn bad_rule(rule: &str, value: Value) -> (String, &'static str) {
    let mut r = rules(&[], &[], Some(true));
    r[rule] = json!([value]);
    match from_rules(&r) {
        Err(PolicyError::BadResult { rule, expected, .. }) => (rule, expected),
        other => panic!("{rule}: expected BadResult, got {other:?}"),
    }
}

#[test]
fn each_wrong_type_is_bad_result() {
    let cases = [
        ("deny", json!("not a set"), "a set or array of strings"),
        ("deny", json!([1, 2]), "a set or array of strings"),
        ("approve", json!({"a": 1}), "a set or array of strings"),
        ("approve", json!(["ok", false]), "a set or array of strings"),
        ("allow", json!("true"), "a boolean"),
        ("allow", json!(1), "a boolean"),
        ("hide", json!("yes"), "a boolean"),
        ("message", json!(["x"]), "a string"),
        ("approval", json!("ops"), "an object"),
        (
            "redact",
            json!("aws_access_key"),
            "a set or array of strings",
        ),
        ("warn", json!([1]), "a set or array of strings"),
    ];
    for (rule, value, expected) in cases {
        assert_eq!(bad_rule(rule, value), (rule.to_string(), expected));
    }
}

#[test]
fn malformed_adapter_output_is_an_error_not_a_default() {
    assert!(from_rules(&json!({})).is_err());
    assert!(from_rules(&json!({"deny": [["a"], ["b"]]})).is_err());
}

#[test]
fn long_bad_values_are_truncated() {
    let mut r = rules(&[], &[], None);
    r["message"] = json!([["x".repeat(1000)]]);
    let Err(PolicyError::BadResult { got, .. }) = from_rules(&r) else {
        panic!()
    };
    assert!(got.len() < 300 && got.ends_with("..."));
}
