//! The decision step and the only way to forward a decided request.
//!
//! Order, for every policed request: build the input -> evaluate the policy
//! -> record the decision in the audit log -> only then hand out a
//! [`Permit`]. A `Permit` can be made only here, and [`forward`] requires
//! one, so code that skips the decision or the audit record does not compile
//! into a forwarded call. Any failure on the way (policy error, audit write
//! error) is a refusal: fail closed.

use std::time::Instant;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{self, Subject};
use crate::approval::Grant;
use crate::audit::mask;
use crate::error::Refusal;
use crate::policy::{Decision, PolicyError, Verdict};
use crate::upstream::{Reply, Upstream, UpstreamError};

/// Proof that policy allowed this request and the decision is on record.
/// Deliberately not `Clone`: one decision, one forwarded request.
#[derive(Debug)]
pub struct Permit {
    decision_id: String,
}

impl Permit {
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// A held call a human approved: the consumed [`Grant`] (which only the
    /// approval store can make, once per approval) is the proof.
    pub fn for_grant(grant: Grant, decision_id: &str) -> Permit {
        drop(grant);
        Permit {
            decision_id: decision_id.to_string(),
        }
    }
}

/// A refusal with the id of the recorded decision that produced it.
#[derive(Debug)]
pub struct Refused {
    pub decision_id: Option<String>,
    pub refusal: Refusal,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            decision_id: None,
            refusal,
        }
    }
}

/// How a forwarded request ended.
pub enum Forwarded {
    Answered(Reply),
    Cancelled,
    Failed(UpstreamError),
}

impl Proxy {
    /// Decide `subject`, record the decision, and return a [`Permit`] only
    /// if the policy allowed it and the record was written.
    pub(super) fn decide(&self, subject: &Subject<'_>) -> Result<Permit, Refused> {
        let decision_id = uuid::Uuid::new_v4().to_string();
        let policy = self.policy();
        let mut input = input::build(subject, &self.session);
        let principal = &self.session.principal.id;
        if subject.method == "tools/call" {
            // Counts of earlier calls; this one is counted whatever the outcome.
            input["rate"] = self.shared.rates.observe(principal, subject.exposed_name());
        }
        let verdict = policy.evaluate(&input);
        let refusal = refusal_for(&verdict);
        let label = match (&verdict, &refusal) {
            (Ok(v), _) if !v.hide => v.decision.label(),
            _ => "deny",
        };
        let mut record = self.record_base(subject, &decision_id);
        record["policy_revision"] = json!(policy.revision());
        // The whole input (secrets masked), as OPA decision logs keep it, so
        // `policy replay` can run past decisions through a new policy.
        record["input"] = mask(&input, &self.mask);
        record["result"] = match &verdict {
            Ok(v) => json!({
                "decision": label,
                "reasons": refusal.as_ref().map(Refusal::reasons).unwrap_or_default(),
                "hide": v.hide,
                "default_hold": v.default_hold,
                "obligations": obligations(&v.decision),
            }),
            Err(e) => json!({"decision": "deny", "reasons": [e.to_string()]}),
        };
        if let Some(r) = &refusal {
            record["error"] = json!({"kind": r.kind(), "message": r.to_string()});
        }
        if self.shared.shadow {
            // Logged as it would have been decided; forwarded regardless.
            record["shadow"] = json!(true);
            record["result"]["enforced"] = json!(false);
        }
        self.session.record(json!({
            "method": subject.method,
            "server": subject.server,
            "tool": subject.name(),
            "decision": label,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
        if let Err(e) = self.shared.audit.append("call.decided", record) {
            tracing::error!("audit write failed, refusing the call: {e}");
            return Err(Refused {
                decision_id: Some(decision_id),
                refusal: e.into(),
            });
        }
        match refusal {
            None => Ok(Permit { decision_id }),
            Some(_) if self.shared.shadow => Ok(Permit { decision_id }),
            Some(refusal) => Err(Refused {
                decision_id: Some(decision_id),
                refusal,
            }),
        }
    }

    /// Record a request refused before policy ran (unknown tool, invalid
    /// arguments) so the log shows every refusal, not only policy ones.
    pub(super) fn refuse_early(&self, subject: &Subject<'_>, refusal: Refusal) -> Refused {
        let decision_id = uuid::Uuid::new_v4().to_string();
        let mut record = self.record_base(subject, &decision_id);
        record["policy_revision"] = json!(self.policy().revision());
        record["result"] = json!({"decision": "deny", "reasons": refusal.reasons()});
        record["error"] = json!({"kind": refusal.kind(), "message": refusal.to_string()});
        if let Err(e) = self.shared.audit.append("call.decided", record) {
            tracing::error!("audit write failed: {e}");
            return Refused {
                decision_id: Some(decision_id),
                refusal: e.into(),
            };
        }
        Refused {
            decision_id: Some(decision_id),
            refusal,
        }
    }

    /// The who/what/where fields shared by decision records.
    fn record_base(&self, subject: &Subject<'_>, decision_id: &str) -> Value {
        json!({
            "decision_id": decision_id,
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "client": self.session.client_info(),
            "method": subject.method,
            "server": subject.server,
            "target": subject.name(),
            "exposed_name": subject.exposed_name(),
            "fingerprint": subject.fingerprint(),
            "arguments": mask(subject.arguments, &self.mask),
            "labels": {"app": "mcp-firewall", "version": env!("CARGO_PKG_VERSION")},
        })
    }

    /// Record how a forwarded call ended. The call already ran, so a failed
    /// write here cannot refuse it; it is logged loudly instead.
    pub(super) fn record_outcome(&self, permit: &Permit, started: Instant, outcome: &Forwarded) {
        let (label, detail) = match outcome {
            Forwarded::Answered(Ok(result))
                if result.get("isError") == Some(&Value::Bool(true)) =>
            {
                ("tool_error", Value::Null)
            }
            Forwarded::Answered(Ok(_)) => ("ok", Value::Null),
            Forwarded::Answered(Err(error)) => ("error", error.clone()),
            Forwarded::Cancelled => ("cancelled", Value::Null),
            Forwarded::Failed(e) => ("upstream_failed", json!(e.to_string())),
        };
        let record = json!({
            "decision_id": permit.decision_id,
            "session_id": self.session.id,
            "outcome": label,
            "detail": detail,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        });
        if let Err(e) = self.shared.audit.append("call.completed", record) {
            tracing::error!("audit write failed for a completed call: {e}");
        }
    }
}

/// Send a permitted request upstream and wait for the answer, the upstream's
/// exit, or the client's cancellation (which is passed on upstream).
pub async fn forward(
    _permit: &Permit,
    upstream: &Upstream,
    method: &str,
    params: &Value,
    cancel: &CancellationToken,
) -> Forwarded {
    let pending = match upstream.start_request(method, params).await {
        Ok(p) => p,
        Err(e) => return Forwarded::Failed(e),
    };
    let upstream_id = pending.upstream_id;
    tokio::select! {
        reply = pending.wait() => match reply {
            Ok(reply) => Forwarded::Answered(reply),
            Err(e) => Forwarded::Failed(e),
        },
        _ = cancel.cancelled() => {
            upstream.forget(upstream_id);
            let params = json!({"requestId": upstream_id, "reason": "cancelled by the client"});
            upstream.notify("notifications/cancelled", &params).await;
            Forwarded::Cancelled
        }
    }
}

/// Map the policy's verdict to a refusal, or `None` to allow.
fn refusal_for(verdict: &Result<Verdict, PolicyError>) -> Option<Refusal> {
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => return Some(Refusal::PolicyFailed(e.clone())),
    };
    if verdict.hide {
        return Some(Refusal::PolicyDenied {
            reasons: vec!["hidden by policy".into()],
            message: None,
        });
    }
    let message = verdict.message.clone();
    match &verdict.decision {
        Decision::Allow => None,
        Decision::Deny { reasons } => Some(Refusal::PolicyDenied {
            reasons: reasons.clone(),
            message,
        }),
        Decision::Approve {
            reasons,
            obligations,
        } => Some(Refusal::ApprovalRequired {
            reasons: reasons.clone(),
            message,
            obligations: obligations.clone(),
        }),
    }
}

fn obligations(decision: &Decision) -> Value {
    match decision {
        Decision::Approve {
            obligations: Some(o),
            ..
        } => o.clone(),
        _ => Value::Null,
    }
}
