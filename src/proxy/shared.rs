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

/// Each principal's recent calls by tool, each queue in time order.
#[derive(Default)]
struct Calls {
    by_principal: HashMap<String, HashMap<String, VecDeque<Instant>>>,
    /// When what had fallen out of the hour was last forgotten.
    swept: Option<Instant>,
}

/// How often [`sweep`] runs: once a minute at most, on a call.
const SWEEP_EVERY: Duration = MINUTE;

fn counts(calls: &Calls, principal: &str, tool: &str, now: Instant) -> Value {
    // Performance: each queue is in time order (pushed with a monotonic
    // clock), so the calls within `window` are a suffix found by binary
    // search. A linear walk from the back cost ~10,000 steps per call
    // once a busy principal's queue was full (`MAX_REMEMBERED_CALLS`).
    let within = |q: &VecDeque<Instant>, window: Duration| {
        q.len() - q.partition_point(|t| now - *t >= window)
    };
    let tools = calls.by_principal.get(principal);
    let this_tool = tools.and_then(|tools| tools.get(tool));
    // Only this principal's tools: every call walked every principal's
    // before, which grew with each (principal, tool) ever seen.
    let principal_minute: usize = tools
        .into_iter()
        .flat_map(HashMap::values)
        .map(|q| within(q, MINUTE))
        .sum();
    json!({
        "principal_tool_last_minute": this_tool.map_or(0, |q| within(q, MINUTE)),
        "principal_tool_last_hour": this_tool.map_or(0, |q| within(q, HOUR)),
        "principal_last_minute": principal_minute,
    })
}

fn push(calls: &mut Calls, principal: &str, tool: &str, now: Instant) {
    if calls.swept.is_none_or(|at| now - at >= SWEEP_EVERY) {
        sweep(calls, now);
    }
    let q = slot(slot(&mut calls.by_principal, principal), tool);
    while q.front().is_some_and(|t| now - *t >= HOUR) || q.len() >= MAX_REMEMBERED_CALLS {
        q.pop_front();
    }
    q.push_back(now);
}

/// `map[key]`, inserted empty when missing; the key is copied only then
/// (`entry` takes an owned key: two copies per call).
fn slot<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
        .expect("present: inserted above if missing")
}

/// Forget calls older than an hour everywhere, and the tools and
/// principals left with none; give back what a burst's queue took once it
/// has emptied out. Without it, every (principal, tool) ever called stayed,
/// its queue at its largest (up to 256 KiB), for the process's life.
fn sweep(calls: &mut Calls, now: Instant) {
    calls.swept = Some(now);
    calls.by_principal.retain(|_, tools| {
        tools.retain(|_, q| {
            while q.front().is_some_and(|t| now - *t >= HOUR) {
                q.pop_front();
            }
            if q.len() * 4 < q.capacity() {
                q.shrink_to(q.len() * 2);
            }
            !q.is_empty()
        });
        !tools.is_empty()
    });
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

    /// (principal, tool) pairs remembered, and the calls their queues
    /// have room for.
    fn remembered(calls: &Calls) -> (usize, usize) {
        let queues = || calls.by_principal.values().flat_map(HashMap::values);
        (queues().count(), queues().map(VecDeque::capacity).sum())
    }

    /// A tool called once and never again, by a principal never seen
    /// again, is forgotten once its calls are an hour old, and so is the
    /// room a burst took: neither stays for the process's life, and no
    /// later call walks them.
    #[test]
    fn what_fell_out_of_the_hour_is_forgotten() {
        let start = Instant::now();
        let mut calls = Calls::default();
        for tool in 0..1_000 {
            push(&mut calls, "alice", &format!("tool-{tool}"), start);
        }
        push(&mut calls, "bob", "echo", start);
        for i in 0..MAX_REMEMBERED_CALLS as u32 {
            push(
                &mut calls,
                "alice",
                "busy",
                start + Duration::from_micros(i.into()),
            );
        }
        let (pairs, room) = remembered(&calls);
        assert_eq!(pairs, 1_002);
        assert!(room >= MAX_REMEMBERED_CALLS, "{room}");

        // A minute on, nothing is an hour old yet: all still counted.
        let later = start + MINUTE;
        push(&mut calls, "alice", "echo", later);
        assert_eq!(remembered(&calls).0, 1_003);
        assert_eq!(
            counts(&calls, "alice", "busy", later + Duration::from_secs(1))["principal_tool_last_hour"],
            MAX_REMEMBERED_CALLS
        );

        // Past the hour: only the call of a minute later is left.
        let past = start + HOUR + MINUTE / 2;
        push(&mut calls, "carol", "echo", past);
        let (pairs, room) = remembered(&calls);
        assert_eq!(pairs, 2, "alice's echo and carol's echo");
        assert!(room < 64, "{room}");
        assert!(!calls.by_principal.contains_key("bob"));
        let seen = counts(&calls, "alice", "busy", past);
        assert_eq!(seen["principal_tool_last_hour"], 0);
        assert_eq!(
            counts(&calls, "alice", "echo", past)["principal_tool_last_hour"],
            1
        );
    }

    /// A principal's minute counts its own tools only, however many other
    /// principals called the same tools.
    #[test]
    fn a_principals_minute_is_its_own() {
        let now = Instant::now();
        let mut calls = Calls::default();
        for p in 0..50 {
            push(&mut calls, &format!("p{p}"), "echo", now);
        }
        push(&mut calls, "p7", "add", now);
        let seen = counts(&calls, "p7", "echo", now);
        assert_eq!(seen["principal_last_minute"], 2);
        assert_eq!(seen["principal_tool_last_minute"], 1);
        assert_eq!(
            counts(&calls, "nobody", "echo", now)["principal_last_minute"],
            0
        );
    }
}
