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

use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{json_col, micros, to_json};
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
    tx: &Transaction<'_>,
    approval_id: &str,
    digest: &str,
    approvers: &[String],
    expires_at_us: i64,
    reusable_until_us: Option<i64>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO grants (approval_id, digest, approvers, expires_at, reusable_until)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
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
    tx: &Transaction<'_>,
    digest: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<Grant>> {
    let now = micros(now);
    let found = tx
        .query_row(
            "SELECT g.approval_id, g.approvers, g.reusable_until FROM grants g JOIN approvals a ON a.id = g.approval_id
             WHERE g.digest = ?1 AND g.used_at IS NULL AND g.revoked_at IS NULL AND g.expires_at > ?2 AND a.status = ?3
             ORDER BY g.expires_at LIMIT 1",
            params![digest, now, Status::Approved.as_str()],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    json_col::<Vec<String>>(row, 1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((approval_id, approvers, reusable_until)) = found else {
        return Ok(None);
    };
    if let Some(until) = reusable_until.filter(|until| *until > now) {
        tx.execute(
            "UPDATE grants SET uses = uses + 1 WHERE approval_id = ?1",
            params![approval_id],
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
        params![now, approval_id],
    )?;
    tx.execute(
        "UPDATE approvals SET status = ?1 WHERE id = ?2",
        params![Status::Used.as_str(), approval_id],
    )?;
    Ok(Some(Grant {
        approval_id,
        digest: digest.to_owned(),
        approvers,
        reusable_until: None,
    }))
}
