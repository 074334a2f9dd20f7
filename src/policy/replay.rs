//! `policy replay`: run past decisions from an audit log through a new policy.
//!
//! Job: for each `call.decided` record that carries the (masked) policy
//! `input`, decide it again with a [`PolicySet`] and say whether the decision
//! label would change. Pure over already-read lines: the CLI does the I/O.
//!
//! Invariants:
//! - The new label is computed exactly as the proxy labels a decision: a
//!   verdict with `hide` set, or an evaluation error, is `deny`.
//! - A record without `input` (written before the proxy logged it, or refused
//!   before policy ran) is skipped, never guessed at.
//! - Arguments in `input` were masked when logged, so a rule matching a
//!   secret's value may decide differently on replay; the replay reports what
//!   the policy says about the logged input, nothing more.

use serde_json::Value;

use super::decision::Decision;
use super::engine::PolicySet;

/// The event name of a decision record.
pub const DECIDED_EVENT: &str = "call.decided";

/// What replaying one audit line gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Replayed {
    /// Not a `call.decided` record.
    OtherEvent,
    /// A decision without an `input` field.
    NoInput,
    /// Decided again; same label as before.
    Same,
    /// Decided again; the label changed.
    Changed(Change),
}

/// A decision the new policy makes differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: Option<u64>,
    pub method: String,
    pub server: String,
    pub target: String,
    pub old: String,
    pub new: String,
    /// The new decision's reasons (the error text on an evaluation error).
    pub reasons: Vec<String>,
    /// True when the new policy failed to evaluate this input.
    pub eval_error: bool,
}

/// Replays one parsed audit record.
pub fn replay_record(set: &PolicySet, record: &Value) -> Replayed {
    if record.get("event").and_then(Value::as_str) != Some(DECIDED_EVENT) {
        return Replayed::OtherEvent;
    }
    let Some(input) = record.get("input").filter(|i| i.is_object()) else {
        return Replayed::NoInput;
    };
    let old = text(record.pointer("/result/decision"));
    let (new, reasons, eval_error) = match set.evaluate(input) {
        Ok(v) if v.hide => ("deny".to_string(), vec!["hidden by policy".into()], false),
        Ok(v) => (v.decision.label().to_string(), reasons(&v.decision), false),
        Err(e) => ("deny".to_string(), vec![e.to_string()], true),
    };
    if new == old {
        return Replayed::Same;
    }
    Replayed::Changed(Change {
        seq: record.get("seq").and_then(Value::as_u64),
        method: text(record.get("method").or_else(|| input.get("method"))),
        server: text(record.get("server").or_else(|| input.get("server"))),
        target: text(record.get("target")),
        old,
        new,
        reasons,
        eval_error,
    })
}

fn reasons(decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Allow => Vec::new(),
        Decision::Deny { reasons } | Decision::Approve { reasons, .. } => reasons.clone(),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

impl std::fmt::Display for Change {
    /// `seq=12 tools/call fs write_file: allow -> deny (reason; reason)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = self.seq.map_or("-".to_string(), |s| s.to_string());
        write!(
            f,
            "seq={seq} {} {} {}: {} -> {}",
            self.method, self.server, self.target, self.old, self.new
        )?;
        if !self.reasons.is_empty() {
            write!(f, " ({})", self.reasons.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
