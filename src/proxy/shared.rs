//! State shared by every session of one firewall process: the policy in
//! force (swapped atomically on reload), the audit log, the approval
//! machinery and the rate counters that policies read in `input.rate`.
//!
//! Per-session state (upstream processes, catalogue, history) lives in
//! [`super::Proxy`]; this is what must be the same for all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::approval::Approvals;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::policy::PolicySet;

/// Calls remembered per (principal, tool) for rate counting. Bounds memory
/// when a client calls in a tight loop; counts saturate at this value.
pub const MAX_REMEMBERED_CALLS: usize = 10_000;
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl Shared {
    /// The state of one firewall process: `config`, the policy it loaded,
    /// its audit log and approvals.
    pub fn new(
        config: Config,
        policy: PolicySet,
        audit: Arc<AuditLog>,
        approvals: Arc<Approvals>,
    ) -> Shared {
        Shared {
            shadow: config.shadow,
            config,
            policy: PolicyCell::new(policy),
            audit,
            approvals: Some(approvals),
            rates: RateCounters::default(),
        }
    }
}

/// The policy in force. Readers take an `Arc` and keep it for the whole
/// request, so a reload never changes the rules under an in-flight call.
pub struct PolicyCell(RwLock<Arc<PolicySet>>);

impl PolicyCell {
    pub fn new(policy: PolicySet) -> PolicyCell {
        PolicyCell(RwLock::new(Arc::new(policy)))
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.0.read().expect("policy lock").clone()
    }

    /// Swap in a new policy; returns the one it replaced.
    pub fn replace(&self, policy: PolicySet) -> Arc<PolicySet> {
        std::mem::replace(&mut *self.0.write().expect("policy lock"), Arc::new(policy))
    }
}

/// Recent calls per principal and tool, for `input.rate`.
#[derive(Default)]
pub struct RateCounters {
    calls: Mutex<Calls>,
}

impl RateCounters {
    /// Counts of *earlier* calls, as the policy sees them.
    pub fn snapshot(&self, principal: &str, tool: &str) -> Value {
        counts(
            &self.calls.lock().expect("rate lock"),
            principal,
            tool,
            Instant::now(),
        )
    }

    pub fn record(&self, principal: &str, tool: &str) {
        push(
            &mut self.calls.lock().expect("rate lock"),
            principal,
            tool,
            Instant::now(),
        );
    }

    /// [`Self::snapshot`] then [`Self::record`] under one lock: what each
    /// `tools/call` does, so two concurrent calls never see the same count.
    pub fn observe(&self, principal: &str, tool: &str) -> Value {
        let now = Instant::now();
        let mut calls = self.calls.lock().expect("rate lock");
        let seen = counts(&calls, principal, tool, now);
        push(&mut calls, principal, tool, now);
        seen
    }
}

type Calls = HashMap<(String, String), VecDeque<Instant>>;

fn counts(calls: &Calls, principal: &str, tool: &str, now: Instant) -> Value {
    // Performance: each queue is in time order (pushed with a monotonic
    // clock), so the calls within `window` are a suffix found by binary
    // search. A linear walk from the back cost ~10,000 steps per call
    // once a busy principal's queue was full (`MAX_REMEMBERED_CALLS`).
    let within = |q: &VecDeque<Instant>, window: Duration| {
        q.len() - q.partition_point(|t| now - *t >= window)
    };
    let this_tool = calls.get(&(principal.to_string(), tool.to_string()));
    let principal_minute: usize = calls
        .iter()
        .filter(|((p, _), _)| p == principal)
        .map(|(_, q)| within(q, MINUTE))
        .sum();
    json!({
        "principal_tool_last_minute": this_tool.map_or(0, |q| within(q, MINUTE)),
        "principal_tool_last_hour": this_tool.map_or(0, |q| within(q, HOUR)),
        "principal_last_minute": principal_minute,
    })
}

fn push(calls: &mut Calls, principal: &str, tool: &str, now: Instant) {
    let q = calls
        .entry((principal.to_string(), tool.to_string()))
        .or_default();
    while q.front().is_some_and(|t| now - *t >= HOUR) || q.len() >= MAX_REMEMBERED_CALLS {
        q.pop_front();
    }
    q.push_back(now);
}

/// Everything one firewall process shares between its sessions.
pub struct Shared {
    pub config: Config,
    pub policy: PolicyCell,
    pub audit: Arc<AuditLog>,
    /// `None`: held calls are refused at once ("approval required").
    pub approvals: Option<Arc<Approvals>>,
    pub rates: RateCounters,
    /// Decide and log, but forward every call (policy roll-out).
    pub shadow: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_are_per_principal_and_tool() {
        let r = RateCounters::default();
        for _ in 0..3 {
            r.record("alice", "echo");
        }
        r.record("alice", "add");
        r.record("bob", "echo");
        let s = r.snapshot("alice", "echo");
        assert_eq!(s["principal_tool_last_minute"], 3);
        assert_eq!(s["principal_tool_last_hour"], 3);
        assert_eq!(s["principal_last_minute"], 4);
        assert_eq!(r.snapshot("carol", "echo")["principal_last_minute"], 0);
    }
}
