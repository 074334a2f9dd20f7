//! How a forwarded call ends, on the record.
//!
//! Every call the firewall forwards has a `call.decided` record before it
//! goes upstream and exactly one `call.completed` record after, with the
//! same `decision_id`; its `outcome` is an [`Outcome`]
//! (docs/audit-format.md lists them).
//!
//! Invariant: the record is written even when the call's task never sees
//! the answer. A session that closes (the client stopped reading,
//! `DELETE`, idle expiry, stdin closed, SIGTERM) drops its tasks at their
//! awaits; [`InFlight`], held across the await on the upstream, records
//! such a call as [`Outcome::Abandoned`] with the session's reason
//! ([`Proxy::end`]).

use std::time::Instant;

use serde_json::{Value, json};

use super::Proxy;
use super::input::Subject;
use super::pipeline::Forwarded;
use crate::upstream::UpstreamError;

/// How a forwarded call ended: the `outcome` of its `call.completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Answered with `isError: true`.
    ToolError,
    /// Answered with a JSON-RPC error.
    Error,
    /// The client cancelled it; the cancel was passed on upstream.
    Cancelled,
    /// No answer within the upstream's deadline; cancelled upstream.
    Timeout,
    /// The upstream exited, or answered over the size cap or not in JSON.
    UpstreamFailed,
    /// Still in flight when its session ended.
    Abandoned,
}

impl Outcome {
    /// The label the audit log carries.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::Abandoned => "abandoned",
        }
    }

    /// The outcome of `forwarded`, with what explains it.
    fn of(forwarded: &Forwarded) -> (Outcome, Value) {
        match forwarded {
            Forwarded::Answered(Ok(result))
                if result.get("isError") == Some(&Value::Bool(true)) =>
            {
                (Outcome::ToolError, Value::Null)
            }
            Forwarded::Answered(Ok(_)) => (Outcome::Ok, Value::Null),
            Forwarded::Answered(Err(error)) => (Outcome::Error, error.clone()),
            Forwarded::Cancelled => (Outcome::Cancelled, Value::Null),
            Forwarded::Failed(e @ UpstreamError::Timeout { .. }) => {
                (Outcome::Timeout, json!(e.to_string()))
            }
            Forwarded::Failed(e) => (Outcome::UpstreamFailed, json!(e.to_string())),
        }
    }
}

impl Proxy {
    /// Record how a forwarded call ended, with what the response phase did
    /// (`inspection`: its fields join the record, one write per call). The
    /// call already ran, so a failed write cannot refuse it; the caller
    /// withholds an inspected result instead, and it is logged loudly.
    ///
    /// With `fsync` the result does not wait for this record to be on disk:
    /// it is written, and the `fsync` that the next forwarded call waits for
    /// covers it. Waiting gated nothing (the call has run; a power loss
    /// before that `fsync` leaves a decision without its outcome, as one
    /// during the call does) and cost each call a second `fsync` wait.
    pub(super) fn record_outcome(
        &self,
        decision_id: &str,
        started: Instant,
        outcome: &Forwarded,
        inspection: Option<Value>,
    ) -> Result<(), crate::audit::AuditError> {
        let (outcome, detail) = Outcome::of(outcome);
        self.record_completion(decision_id, started, outcome, detail, inspection)
    }

    /// The `call.completed` record of a forwarded call, `detail` what
    /// explains its `outcome`.
    fn record_completion(
        &self,
        decision_id: &str,
        started: Instant,
        outcome: Outcome,
        detail: Value,
        inspection: Option<Value>,
    ) -> Result<(), crate::audit::AuditError> {
        let mut record = json!({
            "decision_id": decision_id,
            "session_id": self.session.id,
            "outcome": outcome.label(),
            "detail": detail,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        });
        if let (Some(Value::Object(fields)), Some(out)) = (inspection, record.as_object_mut()) {
            out.insert("inspection".into(), Value::Object(fields));
        }
        self.shared
            .audit
            .append_pending("call.completed", record)
            .map(|record| {
                record.unawaited();
            })
            .inspect_err(|e| tracing::error!("audit write failed for a completed call: {e}"))
    }
}

/// A call forwarded upstream whose outcome is not in hand yet, listed in
/// [`Proxy::forwarding`] while it is.
///
/// The task of a forwarded call can be dropped at its await on the
/// upstream: the session closed under it (DELETE, idle expiry, a client
/// that stopped reading, stdin closed, SIGTERM). Dropped before
/// [`InFlight::answered`], it still records how the call ended,
/// `abandoned` with the session's reason ([`Proxy::end`]): an allowed call
/// never sits on the log with a decision and no outcome.
pub(super) struct InFlight<'a> {
    proxy: &'a Proxy,
    /// Its key in [`Proxy::forwarding`], whose entry names the decision.
    seq: u64,
    pub(super) started: Instant,
    answered: bool,
}

impl<'a> InFlight<'a> {
    pub(super) fn start(
        proxy: &'a Proxy,
        subject: &Subject<'_>,
        decision_id: &str,
    ) -> InFlight<'a> {
        let seq = proxy
            .relay_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = (
            subject.server.to_string(),
            subject.exposed_name().to_string(),
            decision_id.to_string(),
        );
        proxy
            .forwarding
            .lock()
            .expect("forwarding lock")
            .insert(seq, entry);
        InFlight {
            proxy,
            seq,
            started: Instant::now(),
            answered: false,
        }
    }

    /// The upstream's answer (or its failure, the deadline, the client's
    /// cancellation) is in hand: the caller records it.
    pub(super) fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let entry = self
            .proxy
            .forwarding
            .lock()
            .expect("forwarding lock")
            .remove(&self.seq);
        let Some((_, _, decision_id)) = entry.filter(|_| !self.answered) else {
            return;
        };
        let why = self.proxy.ending.get().map_or(
            "the call's task ended before the upstream answered",
            String::as_str,
        );
        tracing::info!(%decision_id, "forwarded call abandoned: {why}");
        // A failed write is logged there; nothing is left to refuse.
        let _ = self.proxy.record_completion(
            &decision_id,
            self.started,
            Outcome::Abandoned,
            json!(why),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::ToolError,
        Outcome::Error,
        Outcome::Cancelled,
        Outcome::Timeout,
        Outcome::UpstreamFailed,
        Outcome::Abandoned,
    ];

    /// A new variant stops this match compiling: add it here and to `ALL`.
    #[allow(dead_code)]
    fn listed(outcome: Outcome) {
        match outcome {
            Outcome::Ok
            | Outcome::ToolError
            | Outcome::Error
            | Outcome::Cancelled
            | Outcome::Timeout
            | Outcome::UpstreamFailed
            | Outcome::Abandoned => {}
        }
    }

    /// docs/audit-format.md is what a verifier or a SIEM rule is written
    /// from: every label the firewall writes is in its table, once.
    #[test]
    fn every_outcome_label_is_documented_and_distinct() {
        let doc = include_str!("../../docs/audit-format.md");
        let mut labels: Vec<&str> = ALL.iter().map(|o| o.label()).collect();
        for label in &labels {
            assert!(
                doc.contains(&format!("| `{label}` |")),
                "outcome `{label}` is not in docs/audit-format.md"
            );
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ALL.len());
    }
}
