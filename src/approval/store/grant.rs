//! Grants: the single-use permission an approved request leaves behind.
//!
//! # Invariants
//!
//! - [`Grant`] has private fields and no public constructor: only
//!   [`consume`] (called by `ApprovalStore::consume_grant`) makes one, and only
//!   after it marked the grant used in the same transaction. Holding a
//!   `Grant` therefore proves a human-approved grant was consumed, which is
//!   what the proxy asks for before it builds a forwarding `Permit`.
//! - `Grant` is deliberately not `Clone`: one consumption, one proof.
//! - A grant is usable while `now < expires_at`, for its own digest only, and
//!   only while its approval is `approved`; consuming it moves the approval to
//!   `used`, except inside a reuse window (`reusable_until`, an approval
//!   scoped "identical calls for N minutes"), where it stays `approved` and
//!   counts the use. A revoked grant is never consumed.

use super::StoreError;
use super::rows::{micros, to_json};
use super::sql::{Db, vals};
use crate::approval::model::Status;
use chrono::{DateTime, Utc};

/// Proof that a human-approved grant for `digest` was consumed.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    approval_id: String,
    digest: String,
    approvers: Vec<String>,
    reusable_until: Option<DateTime<Utc>>,
}

impl Grant {
    /// The approval request that produced this grant.
    pub fn approval_id(&self) -> &str {
        &self.approval_id
    }

    /// The call digest the grant was bound to (equal to the one consumed).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Who approved, in the order they answered.
    pub fn approvers(&self) -> &[String] {
        &self.approvers
    }

    /// `Some` when the grant releases identical calls until then (and so
    /// was not used up by this one).
    pub fn reusable_until(&self) -> Option<DateTime<Utc>> {
        self.reusable_until
    }
}

/// Records the grant for an approval that just reached its quorum.
pub(super) fn insert(
    tx: &mut dyn Db,
    approval_id: &str,
    digest: &str,
    approvers: &[String],
    expires_at_us: i64,
    reusable_until_us: Option<i64>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO grants (approval_id, digest, approvers, expires_at, reusable_until)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        vals![
            approval_id,
            digest,
            to_json(&approvers),
            expires_at_us,
            reusable_until_us
        ],
    )?;
    Ok(())
}

/// Takes the oldest-expiring usable grant for `digest`, marking it used and
/// its approval `used`. `None` when there is none.
pub(super) fn consume(
    tx: &mut dyn Db,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<Grant>, StoreError> {
    let now = micros(now);
    let Some(row) = tx.query_one(
        "SELECT g.approval_id, g.approvers, g.reusable_until FROM grants g JOIN approvals a ON a.id = g.approval_id
         WHERE g.digest = ?1 AND g.used_at IS NULL AND g.revoked_at IS NULL AND g.expires_at > ?2 AND a.status = ?3
         ORDER BY g.expires_at LIMIT 1",
        vals![digest, now, Status::Approved.as_str()],
    )?
    else {
        return Ok(None);
    };
    let approval_id = row.text(0)?;
    let approvers: Vec<String> = row.json(1)?;
    let reusable_until = row.opt_int(2)?;
    if let Some(until) = reusable_until.filter(|until| *until > now) {
        tx.execute(
            "UPDATE grants SET uses = uses + 1 WHERE approval_id = ?1",
            vals![&approval_id],
        )?;
        return Ok(Some(Grant {
            approval_id,
            digest: digest.to_owned(),
            approvers,
            reusable_until: DateTime::from_timestamp_micros(until),
        }));
    }
    tx.execute(
        "UPDATE grants SET used_at = ?1 WHERE approval_id = ?2",
        vals![now, &approval_id],
    )?;
    tx.execute(
        "UPDATE approvals SET status = ?1 WHERE id = ?2",
        vals![Status::Used.as_str(), &approval_id],
    )?;
    Ok(Some(Grant {
        approval_id,
        digest: digest.to_owned(),
        approvers,
        reusable_until: None,
    }))
}
