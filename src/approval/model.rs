//! Plain data of the approval lifecycle: what the proxy asks the store to
//! record, what the store hands back, and the two small vocabularies
//! ([`Status`], [`Verdict`]) with their stored spellings.
//!
//! # Invariants
//!
//! - No I/O and no policy here: these types only carry data between the proxy,
//!   the store, the webhook/endpoint code and the CLI.
//! - The stored spelling of a [`Status`] or [`Verdict`] (`as_str`) is part of
//!   the database format: renaming one needs a schema migration.
//! - The proof that an approved call may be released, `Grant`, is *not* here:
//!   it lives in the store so that nothing else can construct one.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::proof::Proof;

/// Where an approval request is in its lifecycle. `Pending` is the only state
/// that accepts answers; every other state is final except `Approved`, which
/// becomes `Used` when its grant releases the call, or `Revoked` when an
/// approver withdraws the grant before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Withdrawn,
    Used,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::Expired,
        Status::Withdrawn,
        Status::Used,
        Status::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Withdrawn => "withdrawn",
            Status::Used => "used",
            Status::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not one of a vocabulary's spellings.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[error("unknown {kind} {value:?} (expected one of: {expected})")]
pub struct UnknownWord {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Status {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Status, UnknownWord> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownWord {
                kind: "status",
                value: s.to_owned(),
                expected: "pending, approved, denied, expired, withdrawn, used, revoked",
            })
    }
}

/// One approver's answer. Named for the approver's side so it does not read
/// like the policy's decision (`policy::Decision`/`policy::Verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Verdict, UnknownWord> {
        match s {
            "approve" => Ok(Verdict::Approve),
            "deny" => Ok(Verdict::Deny),
            _ => Err(UnknownWord {
                kind: "verdict",
                value: s.to_owned(),
                expected: "approve, deny",
            }),
        }
    }
}

/// A held call, as the proxy asks the store to record it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// Unique, chosen by the caller (it also names the webhook delivery).
    pub id: String,
    /// The call digest this approval is bound to; only an identical call can
    /// consume the resulting grant.
    pub digest: String,
    /// Who made the call. Never allowed to answer it.
    pub principal: String,
    pub server: String,
    pub tool: String,
    /// The full (masked) approval document shown to approvers.
    pub request: Value,
    /// Why the policy held the call.
    pub reasons: Vec<String>,
    /// Who may answer; empty means anyone but the principal.
    pub approvers: Vec<String>,
    /// Distinct approvals needed; at least 1.
    pub quorum: u32,
    pub created_at: DateTime<Utc>,
    /// After this instant the request accepts no answers.
    pub expires_at: DateTime<Utc>,
    /// How long the grant lives once the quorum is reached.
    pub grant_ttl: Duration,
}

/// One approver's answer, as a channel (webhook response, endpoint, CLI)
/// received it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnswer {
    pub approver: String,
    pub decision: Verdict,
    pub reason: String,
    /// `"webhook-response"`, `"endpoint"` or `"cli"`.
    pub channel: String,
    /// How the approver proved who they are; checked again by the firewall
    /// before the answer helps release a call.
    pub proof: Option<Proof>,
}

/// A stored approval request with its answers (oldest answer first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    pub id: String,
    pub digest: String,
    pub principal: String,
    pub server: String,
    pub tool: String,
    pub request: Value,
    pub reasons: Vec<String>,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub status: Status,
    /// Why it left `Pending` (the deny reason, "withdrawn: ...", ...).
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Until when the grant may be consumed; set once the quorum is reached.
    pub grant_expires_at: Option<DateTime<Utc>>,
    pub answers: Vec<AnswerRecord>,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerRecord {
    pub approver: String,
    pub decision: Verdict,
    pub reason: String,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub proof: Option<Proof>,
}

/// The state of an approval right after an accepted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerOutcome {
    pub status: Status,
    /// Distinct approvers who have approved so far.
    pub approvals: u32,
    pub quorum: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_spellings_round_trip() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>(), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), Value::from(st.as_str()));
        }
        assert!("Pending".parse::<Status>().is_err());
    }

    #[test]
    fn verdict_spellings_round_trip() {
        for v in [Verdict::Approve, Verdict::Deny] {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
        }
        assert!("allow".parse::<Verdict>().is_err());
    }
}
