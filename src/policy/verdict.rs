//! Turning the policy's rule values into a [`Verdict`].
//!
//! Job: type-check each decision rule and apply the precedence
//! `deny` > `approve` > `allow` > default hold. Pure: takes JSON, returns data.
//!
//! Input shape (built by the adapter module in [`super::engine`]): an object
//! mapping each rule name in [`RULES`] to an array holding the rule's value,
//! or an empty array when the rule is undefined. Sets arrive as arrays.
//!
//! Invariant: a value of the wrong type is a [`PolicyError::BadResult`],
//! never coerced or ignored; an undefined rule takes its documented default.

use serde_json::Value;

use super::decision::{DEFAULT_HOLD_REASON, Decision, Verdict};
use super::error::PolicyError;

/// The rules the firewall reads from the policy package.
pub(crate) const RULES: [&str; 8] = [
    "deny", "approve", "allow", "hide", "message", "approval", "redact", "warn",
];

/// The rules a request's decision reads.
pub(crate) const REQUEST_RULES: [&str; 6] =
    ["deny", "approve", "allow", "hide", "message", "approval"];

/// The rules the response phase reads (docs/policy-input.md).
pub(crate) const RESPONSE_RULES: [&str; 3] = ["deny", "redact", "warn"];

/// Longest rendering of an offending value kept in a `BadResult`.
const MAX_SHOWN_VALUE: usize = 200;

/// Builds the verdict from `{rule: [] | [value]}`.
pub(crate) fn from_rules(rules: &Value) -> Result<Verdict, PolicyError> {
    let deny = reasons(rules, "deny")?;
    let approve = reasons(rules, "approve")?;
    let allow = boolean(rules, "allow")?;
    let hide = boolean(rules, "hide")?;
    let redact = reasons(rules, "redact")?;
    let warn = reasons(rules, "warn")?;
    let message = typed(rules, "message", "a string", Value::as_str)?.map(str::to_owned);
    let obligations =
        typed(rules, "approval", "an object", Value::as_object)?.map(|o| Value::Object(o.clone()));
    let (decision, default_hold) = if !deny.is_empty() {
        (Decision::Deny { reasons: deny }, false)
    } else if !approve.is_empty() {
        let reasons = approve;
        (
            Decision::Approve {
                reasons,
                obligations,
            },
            false,
        )
    } else if allow {
        (Decision::Allow, false)
    } else {
        let reasons = vec![DEFAULT_HOLD_REASON.to_string()];
        (
            Decision::Approve {
                reasons,
                obligations,
            },
            true,
        )
    };
    Ok(Verdict {
        decision,
        hide,
        message,
        default_hold,
        redact,
        warn,
    })
}

/// The rule's value, `None` when undefined.
fn value<'a>(rules: &'a Value, rule: &str) -> Result<Option<&'a Value>, PolicyError> {
    match rules.get(rule).and_then(Value::as_array).map(Vec::as_slice) {
        Some([]) => Ok(None),
        Some([one]) => Ok(Some(one)),
        // The adapter always yields 0 or 1 element; anything else is our bug,
        // and still a refusal.
        _ => Err(bad(rule, "evaluated exactly once", rules)),
    }
}

fn typed<'a, T: ?Sized>(
    rules: &'a Value,
    rule: &str,
    expected: &'static str,
    cast: impl Fn(&'a Value) -> Option<&'a T>,
) -> Result<Option<&'a T>, PolicyError> {
    match value(rules, rule)? {
        None => Ok(None),
        Some(v) => cast(v).map(Some).ok_or_else(|| bad(rule, expected, v)),
    }
}

fn boolean(rules: &Value, rule: &str) -> Result<bool, PolicyError> {
    match value(rules, rule)? {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(rule, "a boolean", other)),
    }
}

fn reasons(rules: &Value, rule: &str) -> Result<Vec<String>, PolicyError> {
    const EXPECTED: &str = "a set or array of strings";
    let Some(items) = typed(rules, rule, EXPECTED, Value::as_array)? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(rule, EXPECTED, &Value::Array(items.clone())))
}

fn bad(rule: &str, expected: &'static str, got: &Value) -> PolicyError {
    let mut got = got.to_string();
    if got.len() > MAX_SHOWN_VALUE {
        let cut = (0..=MAX_SHOWN_VALUE)
            .rev()
            .find(|i| got.is_char_boundary(*i))
            .unwrap_or(0);
        got.truncate(cut);
        got.push_str("...");
    }
    PolicyError::BadResult {
        rule: rule.to_string(),
        expected,
        got,
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
