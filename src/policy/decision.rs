//! The outcome of one policy evaluation, as plain data.
//!
//! Job: name what the policy decided ([`Decision`]) plus the side channels a
//! policy may set ([`Verdict`]: `hide`, `message`). No regorus types, no I/O.
//!
//! Invariants:
//! - `Allow` is only produced when the policy's `allow` rule was exactly `true`
//!   and neither `deny` nor `approve` had a member.
//! - A call nobody allowed is never forwarded: it becomes `Approve` with
//!   [`DEFAULT_HOLD_REASON`] and `Verdict::default_hold == true`.

/// Reason given when no rule allowed, denied or held the call and the default
/// ("hold for a human") applied. The proxy shows it to the client verbatim.
pub const DEFAULT_HOLD_REASON: &str = "no policy rule allowed this call";

/// What happens to one request.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward the request.
    Allow,
    /// Refuse the request, with the policy's `deny` reasons.
    Deny { reasons: Vec<String> },
    /// Hold the request for a human. `obligations` is the policy's `approval`
    /// object (approvers, quorum, timeout ...) when it defined one.
    Approve {
        reasons: Vec<String>,
        obligations: Option<serde_json::Value>,
    },
}

impl Decision {
    /// Short stable name for audit records and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Approve { .. } => "approve",
        }
    }
}

/// Everything the policy said about one request (or one list item).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    /// The `hide` rule: leave this item out of a list answer. Default false.
    pub hide: bool,
    /// The optional `message` rule: model-facing text used instead of the
    /// generic refusal text.
    pub message: Option<String>,
    /// True when no rule allowed/denied/approved and the default hold applied.
    pub default_hold: bool,
    /// Response phase: what to redact from the result (finding kinds,
    /// `re:PATTERN`, JSON pointers).
    pub redact: Vec<String>,
    /// Response phase: notes put in front of the result for the model.
    pub warn: Vec<String>,
}
