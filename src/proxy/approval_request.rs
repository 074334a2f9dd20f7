//! Creating an approval request for a held call, delivering it to the
//! webhook (and taking a synchronous answer from the response), and
//! withdrawing it when the client cancels.
//!
//! Delivery runs on its own task so the hold can keep the client informed;
//! its outcome lands in the store and the audit log, where the waiting call
//! picks it up.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Proxy;
use super::hold::HoldRequest;
use super::input::Target;
use super::obligations::Obligations;
use crate::approval::bot::SignedBy;
use crate::approval::{ApprovalRecord, Approvals, NewApproval};
use crate::audit::mask;

/// How many of the session's last calls an approval request shows.
const RECENT_CALLS: usize = 10;

/// Shortest time given to deliver the webhook, even when the client's wait
/// is shorter: the request stays open after the client is told "pending".
const MIN_DELIVERY_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Proxy {
    /// Record a new approval request, audit it and start delivering it.
    pub(super) fn request_approval(
        &self,
        approvals: &Arc<Approvals>,
        req: &HoldRequest<'_>,
        obligations: &Obligations,
        digest: &str,
    ) -> Result<ApprovalRecord, String> {
        let id = format!("apr_{}", uuid::Uuid::new_v4().simple());
        let now = Utc::now();
        let expires_at =
            now + chrono::Duration::from_std(obligations.timeout).map_err(|e| e.to_string())?;
        let document =
            self.approval_document(approvals, req, obligations, &id, digest, now, expires_at);
        let new = NewApproval {
            id: id.clone(),
            digest: digest.to_string(),
            principal: self.session.principal.id.clone(),
            server: req.subject.server.to_string(),
            tool: req.subject.name().to_string(),
            request: document.clone(),
            reasons: req.reasons.clone(),
            approvers: obligations.approvers.clone(),
            quorum: obligations.quorum,
            created_at: now,
            expires_at,
            grant_ttl: chrono::Duration::from_std(obligations.timeout)
                .map_err(|e| e.to_string())?,
        };
        let limit = approvals.settings.max_pending_per_principal;
        let record = approvals
            .store
            .create_within(&new, limit)
            .map_err(|e| e.to_string())?;
        let audit = json!({"approval_id": id, "decision_id": req.decision_id, "digest": digest, "approval": document["approval"]});
        approvals
            .audit()
            .append("approval.requested", audit)
            .map_err(|e| e.to_string())?;
        crate::logging::line(&crate::visible::text(&held_hint(approvals, req, &id)));
        if approvals.slack.is_some() || approvals.teams.is_some() {
            approvals.deliveries.spawn(notify_people(
                approvals.clone(),
                id.clone(),
                document.clone(),
            ));
        }
        if approvals.webhook.is_some() {
            let window = approvals
                .settings
                .wait
                .max(MIN_DELIVERY_WINDOW)
                .min(obligations.timeout);
            approvals.deliveries.spawn(deliver(
                approvals.clone(),
                id,
                document,
                Instant::now() + window,
            ));
        }
        Ok(record)
    }

    /// The document approvers see (webhook body; stored with the request).
    #[allow(clippy::too_many_arguments)]
    fn approval_document(
        &self,
        approvals: &Approvals,
        req: &HoldRequest<'_>,
        obligations: &Obligations,
        id: &str,
        digest: &str,
        created: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Value {
        let subject = req.subject;
        let (description, annotations) = match &subject.target {
            Target::Tool(e) | Target::Prompt(e) => (
                e.def.get("description").cloned(),
                e.def.get("annotations").cloned(),
            ),
            Target::Resource(..) | Target::Template(_) => (None, None),
        };
        let data_dir = approvals.settings.data_dir.display();
        json!({
            "type": "approval.requested",
            "approval": {
                "id": id,
                "digest": digest,
                "status": "pending",
                "created_at": created.to_rfc3339_opts(SecondsFormat::Secs, true),
                "expires_at": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
                "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
                "client": self.session.client_info(),
                "session_id": self.session.id,
                "decision_id": req.decision_id,
                "method": subject.method,
                "server": subject.server,
                "tool": subject.name(),
                "tool_description": description,
                "annotations": annotations,
                "arguments": mask(subject.arguments, &self.mask),
                "reasons": req.reasons,
                "obligations": obligations.describe(),
                "policy_revision": self.policy().revision(),
                "tool_pin": self.pin_for_approvers(subject),
                "recent_calls": self.recent_calls(),
            },
            "respond": {
                "callback_url": approvals.callback_url(id),
                "synchronous": "reply 200 with a body {\"approval_id\",\"digest\",\"decision\":\"approve\"|\"deny\",\"approver\",\"reason\"} signed with webhook-id/webhook-timestamp/webhook-signature headers",
                "cli": format!("mcp-firewall approvals approve {id} --as NAME --key ~/.ssh/id_ed25519 --reason TEXT --data-dir {data_dir}"),
            },
        })
    }

    /// The session's last calls, newest last, as approvers see them.
    fn recent_calls(&self) -> Value {
        Value::Array(self.session.recent(RECENT_CALLS))
    }

    /// The client gave up: withdraw the request and tell the receiver.
    pub(super) async fn withdraw(&self, approvals: &Arc<Approvals>, id: &str) {
        match approvals
            .store
            .withdraw(id, "cancelled by the client", Utc::now())
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::error!("could not withdraw approval {id}: {e}"),
        }
        let record = json!({"approval_id": id, "reason": "cancelled by the client"});
        if let Err(e) = approvals.audit().append("approval.withdrawn", record) {
            tracing::error!("audit write failed: {e}");
        }
        if approvals.webhook.is_some() {
            let approvals = approvals.clone();
            let body = json!({"type": "approval.withdrawn", "approval": {"id": id, "reason": "cancelled by the client"}});
            tokio::spawn(async move {
                if let Some(webhook) = &approvals.webhook {
                    webhook.notify(&body).await;
                }
            });
        }
    }
}

/// The one line on stderr when a call is held: what, why, how long the
/// client waits, and where to answer (the console when there is one, else
/// the CLI).
fn held_hint(approvals: &Approvals, req: &HoldRequest<'_>, id: &str) -> String {
    let wait = approvals.settings.wait.as_secs();
    let answer_at = match approvals.console_link(id) {
        Some(link) => format!("answer at {link}"),
        None => format!(
            "answer with `mcp-firewall approvals approve {id} --as NAME --key KEY --reason TEXT --data-dir {}`",
            approvals.settings.data_dir.display()
        ),
    };
    format!(
        "mcp-firewall: HELD {} on {} as approval {id} ({}); {answer_at}; the client waits {wait}s, then is told to retry",
        req.subject.exposed_name(),
        req.subject.server,
        req.reasons.join("; "),
    )
}

/// Post the request to Slack and Teams. Best effort: a failure is audited
/// and the request stays answerable on every other channel.
async fn notify_people(approvals: Arc<Approvals>, id: String, document: Value) {
    let link = approvals.console_link(&id);
    let mut outcomes = Vec::new();
    if let Some(slack) = &approvals.slack {
        let message = crate::approval::slack::message(&document, link.as_deref());
        outcomes.push(("slack", slack.post(&id, &message).await));
    }
    if let Some(teams) = &approvals.teams {
        let card = crate::approval::teams::card(&document, link.as_deref());
        outcomes.push(("teams", teams.post(&card).await));
    }
    for (channel, outcome) in outcomes {
        let record = match &outcome {
            Ok(()) => json!({"approval_id": id, "channel": channel}),
            Err(e) => json!({"approval_id": id, "channel": channel, "error": e}),
        };
        let event = if outcome.is_ok() {
            "approval.notified"
        } else {
            "approval.notify_failed"
        };
        if let Err(e) = approvals.audit().append(event, record) {
            tracing::error!("audit write failed: {e}");
        }
    }
}

/// Count a delivery's attempts: all but the last were retried; the last
/// delivered or failed.
fn delivery_attempts(attempts: u32, delivered: bool) {
    use crate::metrics::{Outcome, metrics};
    let count = |outcome, n: u32| {
        metrics()
            .webhook_deliveries
            .get_or_create(&Outcome { outcome })
            .inc_by(u64::from(n));
    };
    count("retried", attempts.saturating_sub(1));
    count(if delivered { "delivered" } else { "failed" }, 1);
}

/// Deliver a new request; record the outcome; take a synchronous answer.
async fn deliver(approvals: Arc<Approvals>, id: String, document: Value, deadline: Instant) {
    let Some(webhook) = &approvals.webhook else {
        return;
    };
    match webhook.deliver(&document, deadline).await {
        Ok(delivered) => {
            delivery_attempts(delivered.attempts, true);
            let record = json!({"approval_id": id, "webhook_id": delivered.webhook_id,
                                "attempts": delivered.attempts, "status": delivered.status});
            if let Err(e) = approvals.audit().append("approval.delivered", record) {
                tracing::error!("audit write failed: {e}");
            }
            if let Some(answer) = delivered.answer {
                let signed = SignedBy {
                    id: answer.webhook_id.as_deref(),
                    timestamp: answer.timestamp.as_deref(),
                    signature: answer.signature.as_deref(),
                };
                // Accepted or rejected, the answer is in the audit log.
                let _ = approvals.answer_from_bot(&id, signed, &answer.body, "webhook-response");
            }
        }
        Err(e) => {
            delivery_attempts(e.attempts(), false);
            let record =
                json!({"approval_id": id, "attempts": e.attempts(), "error": e.to_string()});
            if let Err(e) = approvals.audit().append("approval.delivery_failed", record) {
                tracing::error!("audit write failed: {e}");
            }
            if let Err(e) =
                approvals
                    .store
                    .fail(&id, &format!("webhook delivery failed: {e}"), Utc::now())
            {
                tracing::error!("could not fail approval {id}: {e}");
            }
            approvals.changed.notify_waiters();
        }
    }
}
