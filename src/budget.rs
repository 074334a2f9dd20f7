//! The memory all sessions together may spend on big messages while they
//! are read.
//!
//! Each reader caps one message (16 MiB from a client, 64 MiB from an
//! upstream), but nothing capped them together: 64 HTTP sessions whose
//! upstreams each send a 64 MiB answer, or trickle one out and stop short
//! of its end, made the firewall hold ~9 GB and let the kernel kill it,
//! with every session in it. A message is read into
//! [`crate::framing::Pieces`]; once it is over [`FREE_BYTES`] it holds a
//! [`Lease`] on the process's budget for twice its bytes so far (its bytes,
//! and the message parsed from them or their joined copy), grown as it
//! grows. A message that would take the budget past its limit is refused
//! and the rest of it skipped, as an oversized one is: the call it answers
//! fails with a message that says why, and the process stays up for the
//! others. Small messages never count, so ordinary traffic is never
//! refused for want of memory.
//!
//! One principal may hold at most its share of the budget
//! ([`Budget::set_share`]: `[session] message_memory_per_principal_bytes`;
//! by default half, when the HTTP listener knows several principals). A
//! lease is charged to the principal whose session or request reads the
//! message ([`Holder`]): a session's tasks carry it in their scope
//! ([`crate::scope`]), an HTTP request body names it itself. Without
//! shares, one principal that trickled bodies (or asked an upstream for
//! big answers) until the budget was spent had every other principal's
//! request bodies refused with `503` for as long as it went on. A shared
//! upstream process belongs to no session, so what it sends is counted in
//! the budget only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Messages up to this size are not counted.
pub const FREE_BYTES: usize = 1024 * 1024;

/// Default of `[session] message_memory_bytes` / `--message-memory-bytes`:
/// eight upstream answers at the 64 MiB cap read at once.
pub const DEFAULT_LIMIT: usize = 1024 * 1024 * 1024;

/// Bytes leased out of a limit, shared by every reader of the process.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicUsize,
    held: AtomicUsize,
    /// The most one principal may hold (`usize::MAX`: no share).
    share: AtomicUsize,
    /// Each principal holding leases (or whose session may), by id.
    holders: Mutex<BTreeMap<String, Weak<Holder>>>,
}

/// Add `bytes` to `held` unless that would pass `limit`; what was held
/// when refused.
fn take_within(held: &AtomicUsize, bytes: usize, limit: usize) -> Result<(), usize> {
    held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        held.checked_add(bytes).filter(|&after| after <= limit)
    })
    .map(|_| ())
}

/// What one principal holds of a [`Budget`], over all its leases.
#[derive(Debug)]
pub struct Holder {
    principal: String,
    held: AtomicUsize,
}

impl Holder {
    /// Bytes this principal holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize, share: usize) -> Result<(), OverBudget> {
        take_within(&self.held, bytes, share).map_err(|held| OverBudget {
            held,
            limit: share,
            principal: Some(self.principal.clone()),
        })
    }

    fn give(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

static BIG_MESSAGES: Budget = Budget::new(DEFAULT_LIMIT);

/// The process's budget for big messages.
pub fn big_messages() -> &'static Budget {
    &BIG_MESSAGES
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
            share: AtomicUsize::new(usize::MAX),
            holders: Mutex::new(BTreeMap::new()),
        }
    }

    /// The most one principal may hold; `usize::MAX` for no share.
    pub fn set_share(&self, share: usize) {
        self.share.store(share, Ordering::Relaxed);
    }

    pub fn share(&self) -> usize {
        self.share.load(Ordering::Relaxed)
    }

    /// What `principal` holds, shared by all its leases while any lives.
    pub fn holder(&self, principal: &str) -> Arc<Holder> {
        let mut holders = self
            .holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(holder) = holders.get(principal).and_then(Weak::upgrade) {
            return holder;
        }
        // Principals that hold nothing any more are forgotten here, when a
        // new one comes: the map stays as small as the principals in play.
        holders.retain(|_, h| h.strong_count() > 0);
        let holder = Arc::new(Holder {
            principal: principal.to_string(),
            held: AtomicUsize::new(0),
        });
        holders.insert(principal.to_string(), Arc::downgrade(&holder));
        holder
    }

    /// Set at start-up from the configuration.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes leased out now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        let limit = self.limit();
        take_within(&self.held, bytes, limit).map_err(|held| OverBudget {
            held,
            limit,
            principal: None,
        })
    }

    fn give(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Why a big message was given up: it took longer than `deadline` to
/// arrive from its first MiB, holding its share of the budget all along.
pub fn too_slow(deadline: std::time::Duration) -> String {
    format!(
        "it did not arrive whole within {}s of its first MiB",
        deadline.as_secs()
    )
}

/// `read`, unless the deadline of a big message being read passes first
/// (`None` then): `deadline` from `since`, when the message passed
/// [`FREE_BYTES`]; no bound while it has not (`since` is `None`).
pub async fn before_deadline<F: std::future::Future>(
    since: Option<tokio::time::Instant>,
    deadline: std::time::Duration,
    read: F,
) -> Option<F::Output> {
    match since {
        Some(since) => tokio::time::timeout_at(since + deadline, read).await.ok(),
        None => Some(read.await),
    }
}

/// What one message being read holds of a [`Budget`]; given back when
/// dropped.
#[derive(Debug)]
pub struct Lease {
    budget: &'static Budget,
    held: usize,
    /// Up to this many bytes, nothing is counted.
    free: usize,
    /// The principal charged, when known.
    holder: Option<Arc<Holder>>,
}

impl Lease {
    /// A lease charged to the principal of the session running it, if any.
    pub fn of(budget: &'static Budget) -> Lease {
        Lease {
            budget,
            held: 0,
            free: FREE_BYTES,
            holder: crate::scope::holder(),
        }
    }

    /// Charge this lease to `holder`'s share (an HTTP request body, read
    /// before it has a session); before it holds anything.
    pub fn charged_to(mut self, holder: Arc<Holder>) -> Lease {
        debug_assert_eq!(self.held, 0, "a lease changes holders only empty");
        self.holder = Some(holder);
        self
    }

    /// A lease that counts a message from its first byte: for readers of
    /// which there may be thousands at once (HTTP request bodies), where
    /// the bytes under [`FREE_BYTES`] add up too.
    pub fn every_byte(budget: &'static Budget) -> Lease {
        let mut lease = Lease::of(budget);
        lease.free = 0;
        lease
    }

    /// Cover a message of `len` bytes so far: nothing up to
    /// [`FREE_BYTES`] (or none, [`Lease::every_byte`]), twice `len` past
    /// it. On refusal the lease keeps what it held.
    pub fn cover(&mut self, len: usize) -> Result<(), OverBudget> {
        if len <= self.free {
            return Ok(());
        }
        let want = len.saturating_mul(2);
        if want > self.held {
            let more = want - self.held;
            // The whole budget first: when both are spent (one principal,
            // its share all of it), the reason names the budget.
            let taken = self.budget.take(more).and_then(|()| match &self.holder {
                Some(holder) => holder
                    .take(more, self.budget.share())
                    .inspect_err(|_| self.budget.give(more)),
                None => Ok(()),
            });
            taken.inspect_err(|_| {
                crate::metrics::metrics().messages_over_budget.inc();
            })?;
            self.held = want;
        }
        Ok(())
    }
}

impl Default for Lease {
    fn default() -> Lease {
        Lease::of(big_messages())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give(self.held);
            if let Some(holder) = &self.holder {
                holder.give(self.held);
            }
        }
    }
}

/// A message refused because the budget, or its principal's share of it,
/// was spent.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub held: usize,
    pub limit: usize,
    /// Whose share was spent; `None`: the whole budget was.
    pub principal: Option<String>,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (held, limit) = (self.held / (1024 * 1024), self.limit / (1024 * 1024));
        match &self.principal {
            None => write!(
                f,
                "the firewall is already holding {held} MiB of big messages being read, and \
                 its limit is {limit} MiB (message_memory_bytes)"
            ),
            Some(principal) => write!(
                f,
                "{principal} already holds {held} MiB of big messages being read, and one \
                 principal may hold at most {limit} MiB (message_memory_per_principal_bytes)"
            ),
        }
    }
}

impl std::error::Error for OverBudget {}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    #[test]
    fn small_messages_are_free_and_big_ones_count_twice() {
        let b = budget(10 * FREE_BYTES);
        let mut lease = Lease::of(b);
        lease.cover(FREE_BYTES).unwrap();
        assert_eq!(b.held(), 0);
        lease.cover(FREE_BYTES + 1).unwrap();
        assert_eq!(b.held(), 2 * FREE_BYTES + 2);
        lease.cover(3 * FREE_BYTES).unwrap();
        assert_eq!(b.held(), 6 * FREE_BYTES);
        drop(lease);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn a_lease_past_the_limit_is_refused_and_keeps_what_it_had() {
        let b = budget(8 * FREE_BYTES);
        let mut first = Lease::of(b);
        first.cover(3 * FREE_BYTES).unwrap();
        let mut second = Lease::of(b);
        let refused = second.cover(2 * FREE_BYTES).unwrap_err();
        assert_eq!(
            refused,
            OverBudget {
                held: 6 * FREE_BYTES,
                limit: 8 * FREE_BYTES,
                principal: None,
            }
        );
        assert!(refused.to_string().contains("holding 6 MiB"), "{refused}");
        assert_eq!(b.held(), 6 * FREE_BYTES);
        first.cover(4 * FREE_BYTES).unwrap();
        assert!(first.cover(5 * FREE_BYTES).is_err());
        assert_eq!(b.held(), 8 * FREE_BYTES);
        drop(first);
        second.cover(2 * FREE_BYTES).unwrap();
        assert_eq!(b.held(), 4 * FREE_BYTES);
    }

    /// Leases taken and given back from many threads at once leave the
    /// budget where it started, and never over its limit.
    #[test]
    fn concurrent_leases_never_pass_the_limit() {
        let b = budget(16 * FREE_BYTES);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..2_000 {
                        let mut lease = Lease::of(b);
                        let _ = lease.cover((2 + i % 5) * FREE_BYTES);
                        assert!(b.held() <= b.limit());
                    }
                });
            }
        });
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn one_principal_holds_at_most_its_share() {
        let b = budget(8 * FREE_BYTES);
        b.set_share(4 * FREE_BYTES);
        let alice = b.holder("alice");
        let mut first = Lease::of(b).charged_to(alice.clone());
        first.cover(2 * FREE_BYTES).unwrap();
        assert_eq!(alice.held(), 4 * FREE_BYTES);
        // Alice's second message finds her share spent, the budget not.
        let mut second = Lease::of(b).charged_to(b.holder("alice"));
        let refused = second.cover(FREE_BYTES + 1).unwrap_err();
        assert_eq!(refused.principal.as_deref(), Some("alice"));
        assert!(
            refused.to_string().contains("alice already holds 4 MiB")
                && refused.to_string().contains("at most 4 MiB"),
            "{refused}"
        );
        assert_eq!(b.held(), 4 * FREE_BYTES, "a refusal takes nothing");
        // Bob still has his.
        let mut bob = Lease::of(b).charged_to(b.holder("bob"));
        bob.cover(2 * FREE_BYTES).unwrap();
        assert_eq!(b.held(), 8 * FREE_BYTES);
        // The budget's own limit still holds for everyone.
        let mut carol = Lease::of(b).charged_to(b.holder("carol"));
        let spent = carol.cover(FREE_BYTES + 1).unwrap_err();
        assert_eq!(spent.principal, None, "{spent}");
        assert_eq!(b.holder("carol").held(), 0, "carol's share was given back");
        drop(first);
        assert_eq!(alice.held(), 0);
        second.cover(FREE_BYTES + 1).unwrap();
    }

    #[test]
    fn holders_are_forgotten_once_nothing_holds_them() {
        let b = budget(8 * FREE_BYTES);
        let alice = b.holder("alice");
        assert!(Arc::ptr_eq(&alice, &b.holder("alice")));
        drop(alice);
        b.holder("bob");
        assert_eq!(
            b.holders.lock().unwrap().len(),
            1,
            "only bob's entry is left"
        );
    }
}
