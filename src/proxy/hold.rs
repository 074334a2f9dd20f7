//! Holding a call the policy sent for human approval.
//!
//! `decide` -> `Approve` lands here. In order:
//! 1. a grant left by an earlier approval of this exact call (same digest)
//!    releases it, once;
//! 2. otherwise the pending request for the same call is reused, or a new
//!    one is recorded, audited and delivered to the webhook;
//! 3. the call waits for the answer, sending progress while it waits, until
//!    it is approved (released), denied, expired, withdrawn by the client's
//!    cancellation, or the wait limit passes ("pending approval <id>, call
//!    again": the request stays open and the identical call later consumes
//!    its grant).
//!
//! Every store or delivery failure refuses the call (fail closed).

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::Subject;
use super::obligations::Obligations;
use super::outcome::InFlight;
use super::pipeline::{Forwarded, Permit, Refused, forward};
use crate::approval::approvers::MAX_FUTURE_SKEW_SECS;
use crate::approval::digest::{CallIdentity, call_digest};
use crate::approval::service::{HOLD_POLL_INTERVAL, PROGRESS_INTERVAL};
use crate::approval::{ApprovalRecord, Approvals, ReleaseRules, Status};
use crate::error::Refusal;
use crate::jsonrpc;

/// How a hold ended.
pub enum Held {
    Released(Permit),
    Refused(Refused),
    Cancelled,
}

/// What is being held, beyond the subject.
pub struct HoldRequest<'a> {
    pub subject: &'a Subject<'a>,
    pub decision_id: String,
    pub reasons: Vec<String>,
    pub obligations: Option<Value>,
    pub progress_token: Option<Value>,
    /// Held as this firewall task: wait until the approval is settled (not
    /// only the approval wait) and keep the task's message current.
    pub task: Option<String>,
}

/// How a held call waits: for the approval wait (`None`), or as the
/// firewall task named here, until its approval is settled.
pub type Holding<'a> = Option<&'a str>;

impl Proxy {
    /// Decide `subject`; hold it for approval when the policy says so.
    /// `Err(None)` means the client cancelled: send nothing.
    pub(super) async fn authorize(
        &self,
        subject: &Subject<'_>,
        cancel: &CancellationToken,
        task: Holding<'_>,
    ) -> Result<Permit, Option<Refused>> {
        match self.decide(subject).await {
            Ok(permit) => Ok(permit),
            Err(Refused {
                decision_id: Some(decision_id),
                refusal:
                    Refusal::ApprovalRequired {
                        reasons,
                        obligations,
                        ..
                    },
            }) => {
                let progress_token = subject
                    .params
                    .get("_meta")
                    .and_then(|m| m.get("progressToken"))
                    .cloned();
                let request = HoldRequest {
                    subject,
                    decision_id,
                    reasons,
                    obligations: obligations.map(|o| *o),
                    progress_token,
                    task: task.map(str::to_string),
                };
                match self.hold(request, cancel).await {
                    Held::Released(permit) => Ok(permit),
                    Held::Refused(refused) => {
                        self.record_approval_failure(subject, &refused);
                        Err(Some(refused))
                    }
                    Held::Cancelled => Err(None),
                }
            }
            Err(refused) => Err(Some(refused)),
        }
    }

    /// The shared tail of every decided request: decide (holding for a human
    /// if the policy says so), forward with the permit, record the outcome,
    /// answer. `None`: the client cancelled, send nothing.
    pub(super) async fn decide_and_forward(
        &self,
        subject: &Subject<'_>,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        self.decide_and_forward_holding(subject, cancel, None).await
    }

    /// [`Self::decide_and_forward`], holding as the firewall task `task`.
    pub(super) async fn decide_and_forward_holding(
        &self,
        subject: &Subject<'_>,
        cancel: &CancellationToken,
        task: Holding<'_>,
    ) -> Option<Result<Value, Value>> {
        let tool_call = subject.method == "tools/call";
        let permit = match self.authorize(subject, cancel, task).await {
            Ok(permit) => permit,
            Err(Some(Refused {
                decision_id,
                refusal,
            })) => return Some(refusal.answer(tool_call, decision_id.as_deref())),
            Err(None) => return None,
        };
        let Some(upstream) = self.upstream(subject.server).cloned() else {
            let gone = Refusal::InvalidParams(format!("no upstream named {}", subject.server));
            return Some(gone.answer(tool_call, Some(permit.decision_id())));
        };
        let decision_id = permit.decision_id().to_string();
        let in_flight = InFlight::start(self, subject, &decision_id);
        let started = in_flight.started;
        let timeout = self.spec_timeout(subject.server);
        let span = tracing::info_span!(
            "forward",
            mcp.server = subject.server,
            mcp.tool = subject.name()
        );
        let outcome =
            tracing::Instrument::instrument(forward(permit, &upstream, timeout, cancel), span)
                .await;
        in_flight.answered();
        crate::metrics::metrics().forwarded(
            subject.server,
            started.elapsed(),
            matches!(outcome, Forwarded::Failed(_)),
        );
        if let Forwarded::Answered(Ok(result)) = &outcome
            && let Some(part) = super::responses::inspected_part(subject.method, result)
        {
            let (answer, inspection) = self.inspect_response(subject, &decision_id, part.clone());
            let answer = super::responses::put_back(subject.method, result, answer);
            return Some(
                match self.record_outcome(&decision_id, started, &outcome, Some(inspection)) {
                    Ok(()) => answer,
                    // The response phase's record is part of its promise.
                    Err(e) => Refusal::AuditWriteFailed(e).answer(tool_call, Some(&decision_id)),
                },
            );
        }
        let _ = self.record_outcome(&decision_id, started, &outcome, None);
        match outcome {
            Forwarded::Answered(reply) => Some(reply),
            Forwarded::Cancelled => None,
            Forwarded::Failed(e) => {
                Some(Refusal::Upstream(e).answer(tool_call, Some(&decision_id)))
            }
        }
    }

    /// A held call that could not be put to approvers or released (the
    /// store unreachable, a bad obligation, an answer that did not verify)
    /// is refused; its decision record says "approve", so the failure gets
    /// a record of its own.
    fn record_approval_failure(&self, subject: &Subject<'_>, refused: &Refused) {
        let Refusal::ApprovalFailed(why) = &refused.refusal else {
            return;
        };
        let record = json!({"session_id": self.session.id, "decision_id": refused.decision_id,
                            "server": subject.server, "target": subject.name(),
                            "method": subject.method, "reason": why});
        if let Err(e) = self.shared.audit.append("approval.failed", record) {
            tracing::error!("audit write failed: {e}");
        }
    }

    #[tracing::instrument(name = "hold", skip_all)]
    pub(super) async fn hold(&self, req: HoldRequest<'_>, cancel: &CancellationToken) -> Held {
        let refuse = |refusal: Refusal| {
            Held::Refused(Refused {
                decision_id: Some(req.decision_id.clone()),
                refusal,
            })
        };
        let Some(approvals) = self.shared.approvals.clone() else {
            return refuse(Refusal::ApprovalRequired {
                reasons: req.reasons.clone(),
                message: None,
                obligations: None,
            });
        };
        let obligations = match Obligations::parse(req.obligations.as_ref(), &approvals.settings) {
            Ok(o) => o,
            Err(message) => {
                return refuse(Refusal::ApprovalFailed(format!(
                    "invalid approval obligations: {message}"
                )));
            }
        };
        let policy = self.policy();
        let meta = req.subject.meta();
        let extra = req.subject.extra_params();
        let digest = call_digest(&CallIdentity {
            server: req.subject.server,
            tool: req.subject.name(),
            arguments: req.subject.arguments,
            meta: &meta,
            extra_params: &extra,
            fingerprint: req.subject.fingerprint(),
            policy_revision: policy.revision(),
            principal: &self.session.principal.id,
        });
        match approvals.store.consume_grant(&digest, Utc::now()) {
            Ok(Some(grant)) => {
                return match self.released(&approvals, grant, &req, &obligations) {
                    Ok(permit) => Held::Released(permit),
                    Err(refusal) => refuse(refusal),
                };
            }
            Ok(None) => {}
            Err(e) => return refuse(Refusal::ApprovalFailed(e.to_string())),
        }
        let record = match approvals.store.pending_for_digest(&digest, Utc::now()) {
            Ok(Some(existing)) => existing,
            Ok(None) => match self.request_approval(&approvals, &req, &obligations, &digest) {
                Ok(created) => created,
                Err(message) => return refuse(Refusal::ApprovalFailed(message)),
            },
            Err(e) => return refuse(Refusal::ApprovalFailed(e.to_string())),
        };
        self.wait(&approvals, &req, &obligations, record, &digest, cancel)
            .await
    }

    async fn wait(
        &self,
        approvals: &Arc<Approvals>,
        req: &HoldRequest<'_>,
        obligations: &Obligations,
        record: ApprovalRecord,
        digest: &str,
        cancel: &CancellationToken,
    ) -> Held {
        let refuse = |refusal: Refusal| {
            Held::Refused(Refused {
                decision_id: Some(req.decision_id.clone()),
                refusal,
            })
        };
        let id = record.id.clone();
        let started = Instant::now();
        // A task waits until the approval is settled (answered, expired or
        // withdrawn): its client polls instead of holding a request open.
        let patience = match &req.task {
            Some(task) => {
                let message = format!(
                    "held for human approval {id} ({}); answerable until {}",
                    record.reasons.join("; "),
                    record.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
                if let Err(e) = approvals
                    .store
                    .note_task(task, &message, Some(&id), Utc::now())
                {
                    tracing::error!("could not note task {task}: {e}");
                }
                std::time::Duration::MAX
            }
            None => approvals.settings.wait,
        };
        let mut progress = 0u64;
        let mut next_progress = started + PROGRESS_INTERVAL;
        loop {
            let record = match approvals.store.get(&id) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return refuse(Refusal::ApprovalFailed(format!(
                        "approval {id} vanished from the store"
                    )));
                }
                Err(e) => return refuse(Refusal::ApprovalFailed(e.to_string())),
            };
            if let Some(end) = self.settled(approvals, &record, digest, req, obligations) {
                return match end {
                    Ok(permit) => Held::Released(permit),
                    Err(refusal) => refuse(refusal),
                };
            }
            if started.elapsed() >= patience {
                let expires_at = record.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
                return refuse(Refusal::ApprovalPending {
                    id,
                    reasons: record.reasons,
                    expires_at,
                });
            }
            tokio::select! {
                _ = approvals.changed.notified() => {}
                _ = approvals.store.changed_elsewhere() => {}
                _ = tokio::time::sleep(HOLD_POLL_INTERVAL) => {}
                _ = cancel.cancelled() => {
                    self.withdraw(approvals, &id).await;
                    return Held::Cancelled;
                }
            }
            if let Some(token) = &req.progress_token
                && Instant::now() >= next_progress
            {
                progress += 1;
                next_progress += PROGRESS_INTERVAL;
                let params = json!({"progressToken": token, "progress": progress,
                                    "message": format!("waiting for human approval {id}")});
                self.send(jsonrpc::notification("notifications/progress", &params))
                    .await;
            }
        }
    }

    /// `Some` once the request has left `Pending` (or expired now).
    fn settled(
        &self,
        approvals: &Approvals,
        record: &ApprovalRecord,
        digest: &str,
        req: &HoldRequest<'_>,
        obligations: &Obligations,
    ) -> Option<Result<Permit, Refusal>> {
        let id = record.id.clone();
        let now = Utc::now();
        match record.status {
            Status::Pending if now >= record.expires_at => {
                if let Err(e) = approvals.store.expire(&id, now) {
                    return Some(Err(Refusal::ApprovalFailed(e.to_string())));
                }
                self.audit_outcome(approvals, "approval.expired", record);
                Some(Err(Refusal::ApprovalExpired { id }))
            }
            Status::Pending => None,
            Status::Approved => Some(match approvals.store.consume_grant(digest, now) {
                Ok(Some(grant)) => self.released(approvals, grant, req, obligations),
                Ok(None) => Err(Refusal::ApprovalFailed(format!(
                    "approval {id} was already used by an identical call"
                ))),
                Err(e) => Err(Refusal::ApprovalFailed(e.to_string())),
            }),
            Status::Denied => {
                self.audit_outcome(approvals, "approval.denied", record);
                let mut reasons: Vec<String> = record
                    .answers
                    .iter()
                    .filter(|a| a.decision == crate::approval::Verdict::Deny)
                    .map(|a| format!("{}: {}", a.approver, a.reason))
                    .collect();
                if reasons.is_empty() {
                    reasons.push(
                        record
                            .status_reason
                            .clone()
                            .unwrap_or_else(|| "denied".into()),
                    );
                }
                Some(Err(Refusal::ApprovalDenied { id, reasons }))
            }
            Status::Expired => Some(Err(Refusal::ApprovalExpired { id })),
            Status::Withdrawn | Status::Used | Status::Revoked => Some(Err(
                Refusal::ApprovalFailed(format!("approval {id} is {}", record.status.as_str())),
            )),
        }
    }

    /// Turn a consumed grant into a permit, on the record. The approval's
    /// answers are verified again with this process's keys and secrets and
    /// this call's obligations (the store may have been written by anyone
    /// with access to the file), and the release must be in the audit log:
    /// either failing refuses the call.
    fn released(
        &self,
        approvals: &Approvals,
        grant: crate::approval::Grant,
        req: &HoldRequest<'_>,
        obligations: &Obligations,
    ) -> Result<Permit, Refusal> {
        let id = grant.approval_id().to_string();
        let record = approvals
            .store
            .get(&id)
            .map_err(|e| Refusal::ApprovalFailed(e.to_string()))?
            .ok_or_else(|| Refusal::ApprovalFailed(format!("approval {id} vanished")))?;
        // A signed answer counts for at most the request's lifetime plus the
        // grant's (both `obligations.timeout`), plus the clock skew allowed.
        // An approval of identical calls stays usable for its scope.
        let lifetime = i64::try_from(obligations.timeout.as_secs()).unwrap_or(i64::MAX / 4);
        let scope = i64::try_from(obligations.max_scope.as_secs()).unwrap_or(0);
        let rules = ReleaseRules {
            principal: &self.session.principal.id,
            approvers: &obligations.approvers,
            quorum: obligations.quorum,
            max_age_secs: lifetime
                .saturating_mul(2)
                .max(lifetime.saturating_add(scope))
                .saturating_add(MAX_FUTURE_SKEW_SECS),
            now: Utc::now().timestamp(),
        };
        let verified = approvals
            .verifier
            .verify_release(&record, &rules)
            .and_then(|v| {
                if approvals.is_revoked(&id) {
                    return Err("the grant was revoked".to_string());
                }
                Ok(v)
            })
            .and_then(|v| match grant.reusable_until() {
                // A reusable grant: every counted approver must have signed
                // a scope that still covers now and that this call's
                // policy allows; the store's window alone proves nothing.
                Some(_) => reuse_is_signed(&v, obligations, rules.now).map(|()| v),
                None if approvals.mark_released(&id) => Ok(v),
                None => Err("this approval already released a call in this process".to_string()),
            });
        let verified = match verified {
            Ok(v) => v,
            Err(why) => {
                let body = json!({"approval_id": id, "decision_id": req.decision_id,
                                  "digest": grant.digest(), "error": why});
                if let Err(e) = approvals.audit().append("approval.unverified", body) {
                    tracing::error!("audit write failed: {e}");
                }
                return Err(Refusal::ApprovalFailed(format!(
                    "approval {id} does not release this call: {why}"
                )));
            }
        };
        let record = json!({
            "approval_id": id,
            "decision_id": req.decision_id,
            "digest": grant.digest(),
            "approvers": verified.iter().map(|v| &v.approver).collect::<Vec<_>>(),
            "verified_by": verified.iter().map(|v| &v.verified_by).collect::<Vec<_>>(),
            "scope": match grant.reusable_until() {
                Some(until) => json!({"identical_calls_until": until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
                None => json!("once"),
            },
            "answers": record.answers.iter().map(|a| json!({"approver": a.approver,
                "decision": a.decision.as_str(), "reason": a.reason, "channel": a.channel})).collect::<Vec<_>>(),
        });
        if let Err(e) = approvals.audit().append("approval.released", record) {
            tracing::error!("audit write failed for a released approval, refusing: {e}");
            return Err(Refusal::AuditWriteFailed(e));
        }
        // The approver saw this definition (the request says approving pins
        // it): it becomes the tool's approved pin.
        if let super::input::Target::Tool(entry) = req.subject.target {
            self.repin_approved(entry, &id);
        }
        Ok(Permit::for_grant(grant, &req.decision_id, req.subject))
    }

    fn audit_outcome(&self, approvals: &Approvals, event: &str, record: &ApprovalRecord) {
        let body = json!({"approval_id": record.id, "digest": record.digest, "answers": record.answers,
                          "status_reason": record.status_reason});
        if let Err(e) = approvals.audit().append(event, body) {
            tracing::error!("audit write failed: {e}");
        }
    }
}

/// A grant that stays usable for identical calls is honoured only inside
/// every counted approver's signed scope, and only as far as the releasing
/// call's policy allows (`max_scope_seconds`).
fn reuse_is_signed(
    verified: &[crate::approval::VerifiedAnswer],
    obligations: &Obligations,
    now: i64,
) -> Result<(), String> {
    let allowed = i64::try_from(obligations.max_scope.as_secs()).unwrap_or(i64::MAX);
    for v in verified {
        match v.reusable_until {
            None => {
                return Err(format!(
                    "{} approved this call once, not identical calls",
                    v.approver
                ));
            }
            Some(until) if until <= now => {
                return Err(format!(
                    "{}'s approval of identical calls has ended",
                    v.approver
                ));
            }
            Some(_) if i64::try_from(v.scope_seconds).unwrap_or(i64::MAX) > allowed => {
                return Err(format!(
                    "{}'s approval of identical calls is wider than the policy's max_scope_seconds ({allowed})",
                    v.approver
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::VerifiedAnswer;
    use std::time::Duration;

    fn verified(scope_seconds: u64, signed_at: i64) -> VerifiedAnswer {
        VerifiedAnswer {
            approver: "bob".into(),
            verified_by: "oidc issuer x, subject bob".into(),
            reusable_until: (scope_seconds > 0).then(|| signed_at + scope_seconds as i64),
            scope_seconds,
        }
    }

    fn allowing(max_scope: u64) -> Obligations {
        Obligations {
            approvers: vec![],
            quorum: 1,
            timeout: Duration::from_secs(300),
            max_scope: Duration::from_secs(max_scope),
        }
    }

    /// A store edited to make a grant reusable proves nothing: reuse needs
    /// every counted approver's signed scope, inside the window, within
    /// the releasing call's policy.
    #[test]
    fn reuse_needs_a_signed_scope_that_the_policy_allows() {
        assert!(reuse_is_signed(&[verified(600, 1000)], &allowing(600), 1100).is_ok());
        let once = reuse_is_signed(&[verified(0, 1000)], &allowing(600), 1100);
        assert!(once.unwrap_err().contains("once"));
        let over = reuse_is_signed(&[verified(600, 1000)], &allowing(600), 1600);
        assert!(over.unwrap_err().contains("ended"));
        let wider = reuse_is_signed(&[verified(600, 1000)], &allowing(300), 1100);
        assert!(wider.unwrap_err().contains("max_scope_seconds"));
        let mixed = reuse_is_signed(
            &[verified(600, 1000), verified(0, 1000)],
            &allowing(600),
            1100,
        );
        assert!(mixed.is_err());
    }
}
