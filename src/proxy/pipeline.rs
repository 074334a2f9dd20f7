//! The decision step and the only way to forward a decided request.
//!
//! Order, for every policed request: build the input -> evaluate the policy
//! -> record the decision in the audit log -> only then hand out a
//! [`Permit`]. A `Permit` can be made only here, and [`forward`] requires
//! one, so code that skips the decision or the audit record does not compile
//! into a forwarded call. Any failure on the way (policy error, audit write
//! error) is a refusal: fail closed.

use crate::metrics::metrics;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::input::{self, Input, Subject, Target};
use crate::approval::Grant;
use crate::audit::{Pending, mask};
use crate::error::Refusal;
use crate::policy::PolicySet;
use crate::policy::{Decision, PolicyError, Verdict};
use crate::upstream::{Reply, Upstream, UpstreamError};

/// Proof that policy allowed this request and the decision is on record,
/// carrying the exact request that was decided. Deliberately not `Clone`:
/// one decision, one forwarded request. [`Upstream::forward`] consumes it.
#[derive(Debug)]
pub struct Permit {
    decision_id: String,
    method: String,
    params: Value,
}

impl Permit {
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// A held call a human approved: the consumed [`Grant`] (which only the
    /// approval store can make, once per approval) is the proof.
    pub(super) fn for_grant(grant: Grant, decision_id: &str, subject: &Subject<'_>) -> Permit {
        drop(grant);
        Permit::new(decision_id, subject)
    }

    fn new(decision_id: &str, subject: &Subject<'_>) -> Permit {
        Permit {
            decision_id: decision_id.to_string(),
            method: subject.method.to_string(),
            params: subject.params.clone(),
        }
    }

    /// The same request carrying the trace context of the span forwarding
    /// it (`_meta.traceparent`, `tracestate`), so a tracing upstream
    /// continues the trace: transport metadata, not what was decided.
    fn with_trace(mut self, trace: std::collections::HashMap<String, String>) -> Permit {
        if let Some(params) = self.params.as_object_mut() {
            let meta = params.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                for (key, value) in trace {
                    meta.insert(key, Value::String(value));
                }
            }
        }
        self
    }

    /// The decided method and params, for the upstream connection to send.
    pub(crate) fn into_request(self) -> (String, Value) {
        (self.method, self.params)
    }
}

/// Proof that policy allowed a request an upstream sent the client; the
/// client's answer goes back upstream only with it
/// ([`crate::upstream::Plumbing::Answer`]).
#[derive(Debug)]
pub struct RelayPermit {
    decision_id: String,
}

impl RelayPermit {
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }
}

/// A refusal with the id of the recorded decision that produced it.
#[derive(Debug)]
pub struct Refused {
    pub decision_id: Option<String>,
    pub refusal: Refusal,
}

impl Refused {
    /// The answer to the client, naming the recorded decision.
    pub fn answer(&self, tool_call: bool) -> Result<Value, Value> {
        self.refusal.answer(tool_call, self.decision_id.as_deref())
    }
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

/// A decision whose record is written, not yet known to be durable.
struct Recorded {
    decision_id: String,
    decided: Result<Permit, Refused>,
    record: Pending,
}

impl Proxy {
    /// Decide `subject`, record the decision, and return a [`Permit`] only
    /// if the policy allowed it and the record is durable (with `fsync`,
    /// awaited: the worker decides other calls while the disk syncs).
    pub(super) async fn decide(&self, subject: &Subject<'_>) -> Result<Permit, Refused> {
        let Recorded {
            decision_id,
            decided,
            record,
        } = self.decide_and_record(subject)?;
        match record.durable().await {
            Ok(_) => decided,
            Err(e) => {
                tracing::error!("audit write failed, refusing the call: {e}");
                Err(Refused {
                    decision_id: Some(decision_id),
                    refusal: e.into(),
                })
            }
        }
    }

    /// Decide `subject` and write the decision's record.
    fn decide_and_record(&self, subject: &Subject<'_>) -> Result<Recorded, Refused> {
        let started = std::time::Instant::now();
        let decision_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!(
            "decide",
            mcp.method = subject.method,
            mcp.server = subject.server,
            mcp.tool = subject.name(),
            mcp.decision_id = %decision_id,
            mcp.decision = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let policy = self.policy();
        let mut input = self.input_for(subject);
        let principal = &self.session.principal.id;
        let mut rate_failure = None;
        if subject.method == "tools/call" {
            // Counts of earlier calls; this one is counted whatever the
            // outcome. Replicas sharing a store count there, when the
            // policy could read the counts; a count that cannot be taken
            // refuses the call (a limit must not lapse with the database).
            input["rate"] = match &self.shared.approvals {
                Some(approvals) if approvals.store.is_shared() && policy.may_read_rate() => {
                    approvals
                        .store
                        .observe_rate(principal, subject.exposed_name(), chrono::Utc::now())
                        .unwrap_or_else(|e| {
                            rate_failure =
                                Some(format!("the shared rate counts are unavailable: {e}"));
                            Value::Null
                        })
                }
                _ => self.shared.rates.observe(principal, subject.exposed_name()),
            };
        }
        let verdict = match rate_failure {
            Some(message) => Err(crate::policy::PolicyError::Eval { message }),
            None => input.evaluate(&policy),
        };
        let hidden = self.hidden_in_list(subject, &policy);
        let refusal = match &hidden {
            Ok(true) => Some(Refusal::PolicyDenied {
                reasons: vec![format!("{} is hidden by policy", subject.exposed_name())],
                message: None,
            }),
            Ok(false) => refusal_for(&verdict),
            Err(e) => Some(Refusal::PolicyFailed(e.clone())),
        };
        let label = match (&verdict, &refusal) {
            (Ok(v), None) => v.decision.label(),
            (Ok(v), Some(Refusal::ApprovalRequired { .. })) => v.decision.label(),
            _ => "deny",
        };
        let mut record = self.record_base(subject, &decision_id);
        record["policy_revision"] = json!(policy.revision());
        // The whole input (secrets masked), as OPA decision logs keep it, so
        // `policy replay` can run past decisions through a new policy.
        let input = input.into_record(&self.mask);
        record["result"] = match &verdict {
            Ok(v) => json!({
                "decision": label,
                "reasons": refusal.as_ref().map(Refusal::reasons).unwrap_or_default(),
                "hide": v.hide,
                "hidden_in_list": hidden.as_ref().ok(),
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
        self.session.record(
            json!({
                "method": subject.method,
                "server": subject.server,
                "tool": subject.name(),
                "decision": label,
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            &self.mask,
        );
        let rendered = vec![("input".to_string(), input)];
        let record = match self
            .shared
            .audit
            .append_pending_with("call.decided", record, rendered)
        {
            Ok(record) => record,
            Err(e) => {
                tracing::error!("audit write failed, refusing the call: {e}");
                metrics().decided(subject.method, "error", Some(started.elapsed()));
                return Err(Refused {
                    decision_id: Some(decision_id),
                    refusal: e.into(),
                });
            }
        };
        let result = match (&verdict, &hidden) {
            (Ok(_), Ok(_)) => label,
            _ => "error",
        };
        metrics().decided(subject.method, result, Some(started.elapsed()));
        span.record("mcp.decision", result);
        let decided = match refusal {
            None => Ok(Permit::new(&decision_id, subject)),
            Some(_) if self.shared.shadow => Ok(Permit::new(&decision_id, subject)),
            Some(refusal) => Err(Refused {
                decision_id: Some(decision_id.clone()),
                refusal,
            }),
        };
        Ok(Recorded {
            decision_id,
            decided,
            record,
        })
    }

    /// Record a request refused before policy ran (unknown tool, invalid
    /// arguments) so the log shows every refusal, not only policy ones.
    pub(super) fn refuse_early(&self, subject: &Subject<'_>, refusal: Refusal) -> Refused {
        let decision_id = uuid::Uuid::new_v4().to_string();
        let mut record = self.record_base(subject, &decision_id);
        record["policy_revision"] = json!(self.policy().revision());
        record["result"] = json!({"decision": "deny", "reasons": refusal.reasons()});
        record["error"] = json!({"kind": refusal.kind(), "message": refusal.to_string()});
        metrics().decided(subject.method, "deny", None);
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
}

impl Proxy {
    /// The policy input for `subject`: [`Self::head_for`] completed with
    /// the caller, the time and the history ([`input::complete`]).
    pub(super) fn input_for(&self, subject: &Subject<'_>) -> Input {
        input::complete(self.head_for(subject), subject, &self.session)
    }

    /// [`input::head`] with [`Self::add_facts`]: every field of
    /// [`Self::input_for`]'s input that names the call, none that names
    /// its caller or its time.
    pub(super) fn head_for(&self, subject: &Subject<'_>) -> Value {
        let mut head = input::head(subject);
        self.add_facts(&mut head, subject);
        head
    }

    /// [`Self::head_for`] for an input that is only converted, never
    /// recorded: its tool an outline ([`input::head_outline`]).
    pub(super) fn head_outline_for(&self, subject: &Subject<'_>) -> Value {
        let mut head = input::head_outline(subject);
        self.add_facts(&mut head, subject);
        head
    }

    /// What the firewall holds about `subject` that the request does not
    /// say: whether its server's annotations are trusted, the task asked
    /// about, the tool's findings and pin.
    fn add_facts(&self, input: &mut Value, subject: &Subject<'_>) {
        input["server_trusted"] = json!(self.trusts(subject.server));
        if subject.method.starts_with("tasks/") {
            input["task"] = json!({"id": subject.params.get("taskId")});
        }
        if let Target::Tool(entry) = subject.target
            && !entry.server.is_empty()
        {
            input["tool"]["findings"] = self.tool_findings_for(entry);
            if subject.method == "tools/call" {
                input["tool"]["pin"] = self.pin_input(entry);
            }
        }
    }

    /// Whether `server`'s annotations are trusted (`trust_annotations`).
    fn trusts(&self, server: &str) -> bool {
        self.spec(server).is_some_and(|s| s.trust_annotations)
    }

    /// Whether the policy hides the subject's item from its listing. A call
    /// to a hidden item is refused whatever rule allows the call: hidden
    /// means neither listed nor callable. Evaluated with the list method's
    /// input, exactly as the listing would.
    fn hidden_in_list(
        &self,
        subject: &Subject<'_>,
        policy: &PolicySet,
    ) -> Result<bool, PolicyError> {
        if !policy.may_hide() {
            return Ok(false);
        }
        let list_method = match subject.target {
            Target::Tool(_) => "tools/list",
            Target::Prompt(_) => "prompts/list",
            Target::Resource(..) => "resources/list",
            Target::Template(_) => "resources/templates/list",
        };
        let empty = json!({});
        let listed = Subject {
            method: list_method,
            server: subject.server,
            target: subject.target,
            arguments: &empty,
            params: &empty,
        };
        self.input_for(&listed).evaluate(policy).map(|v| v.hide)
    }

    /// Decide a request an upstream sent the client (sampling, elicitation,
    /// roots) and record it. Only an `allow` relays it: a server-to-client
    /// request cannot be held for a human (the upstream is waiting on it), so
    /// `approve` refuses it, as does every failure.
    pub(super) fn decide_server_request(
        &self,
        server: &str,
        method: &str,
        params: &Value,
        cause: Value,
    ) -> Result<RelayPermit, Refused> {
        let started = std::time::Instant::now();
        let decision_id = uuid::Uuid::new_v4().to_string();
        let policy = self.policy();
        let mut input = input::build_server_request(server, method, params, cause, &self.session);
        input["server_trusted"] = json!(self.trusts(server));
        let verdict = input.evaluate(&policy);
        let refusal = match refusal_for(&verdict) {
            Some(Refusal::ApprovalRequired { mut reasons, .. }) => {
                reasons.push("requests from a server cannot wait for a human; refused".into());
                Some(Refusal::PolicyDenied {
                    reasons,
                    message: None,
                })
            }
            other => other,
        };
        let record = json!({
            "decision_id": decision_id,
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "direction": "server_to_client",
            "method": method,
            "server": server,
            "policy_revision": policy.revision(),
            "result": {
                "decision": if refusal.is_none() { "allow" } else { "deny" },
                "reasons": refusal.as_ref().map(Refusal::reasons).unwrap_or_default(),
            },
            "labels": {"app": "mcp-firewall", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = if refusal.is_none() { "allow" } else { "deny" };
        metrics().decided(method, result, Some(started.elapsed()));
        let rendered = vec![("input".to_string(), input.into_record(&self.mask))];
        let written = self
            .shared
            .audit
            .append_pending_with("server_request.decided", record, rendered)
            .and_then(|pending| pending.wait());
        if let Err(e) = written {
            tracing::error!("audit write failed, refusing the server's request: {e}");
            return Err(Refused {
                decision_id: Some(decision_id),
                refusal: e.into(),
            });
        }
        match refusal {
            None => Ok(RelayPermit { decision_id }),
            Some(_) if self.shared.shadow => Ok(RelayPermit { decision_id }),
            Some(refusal) => Err(Refused {
                decision_id: Some(decision_id),
                refusal,
            }),
        }
    }
}

/// Send a permitted request upstream and wait for the answer, the upstream's
/// exit, the client's cancellation, or the deadline (`timeout`, counted from
/// now: for a held call, from its release). Cancellation and the deadline
/// are passed on upstream as `notifications/cancelled`.
pub async fn forward(
    permit: Permit,
    upstream: &Upstream,
    timeout: std::time::Duration,
    cancel: &CancellationToken,
) -> Forwarded {
    let permit = match crate::telemetry::current_context() {
        Some(trace) => permit.with_trace(trace),
        None => permit,
    };
    let (pending, handle) = match upstream.forward(permit).await {
        Ok(p) => p,
        Err(e) => return Forwarded::Failed(e),
    };
    match upstream.await_reply(pending, handle, timeout, cancel).await {
        Some(Ok(reply)) => Forwarded::Answered(reply),
        Some(Err(e)) => Forwarded::Failed(e),
        None => Forwarded::Cancelled,
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
            obligations: obligations.clone().map(Box::new),
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
