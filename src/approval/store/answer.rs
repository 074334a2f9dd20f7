//! Recording one approver's answer: the answering rules and the quorum.
//!
//! # Invariants (all checked inside the caller's IMMEDIATE transaction, so two
//! answers racing from different processes are serialised)
//!
//! - rules are checked in a fixed order and the first broken one is reported:
//!   exists, pending, not expired (`now >= expires_at` is expired), approver
//!   given, reason given, approver is not the principal, approver is listed
//!   (when a list exists), approver has not answered before;
//! - identities are canonical ([`crate::identity`]): `Alice`, `ａｌｉｃｅ` or
//!   `alice\u{200b}` cannot approve `alice`'s call nor count twice towards a
//!   quorum, and a name that mixes scripts is refused; every answer must
//!   carry a proof (the firewall verifies it again before releasing);
//! - one eligible deny decides `denied`; `quorum` distinct approvals decide
//!   `approved` and create the grant in the same transaction.

use chrono::{DateTime, Utc};

use super::error::{AnswerRejection, StoreError};
use super::grant;
use super::rows::micros;
use super::sql::{Db, vals};
use crate::approval::model::{AnswerOutcome, NewAnswer, Status, Verdict};
use crate::approval::proof::Proof;
use crate::identity::Identity;

/// The stored key of an answer's approver: the confusable skeleton of the
/// canonical identity, so look-alike names are one approver to the
/// database's "one answer each" rule.
pub(super) fn answer_key(identity: &Identity) -> String {
    identity.skeleton()
}

/// What the rules need to know about the approval being answered.
struct Held {
    status: Status,
    digest: String,
    principal: String,
    approvers: Vec<String>,
    quorum: u32,
    expires_at_us: i64,
    grant_ttl_us: i64,
}

fn load_held(tx: &mut dyn Db, id: &str) -> Result<Option<Held>, StoreError> {
    let Some(row) = tx.query_one(
        "SELECT status, digest, principal, approvers, quorum, expires_at, grant_ttl_us
         FROM approvals WHERE id = ?1",
        vals![id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Held {
        status: row.word(0)?,
        digest: row.text(1)?,
        principal: row.text(2)?,
        approvers: row.json(3)?,
        quorum: u32::try_from(row.int(4)?)
            .map_err(|_| StoreError::Corrupt("quorum out of range".into()))?,
        expires_at_us: row.int(5)?,
        grant_ttl_us: row.int(6)?,
    }))
}

/// The rules that need nothing but the approval and the answer.
fn check(held: &Held, answer: &NewAnswer, now_us: i64) -> Result<Identity, AnswerRejection> {
    if held.status != Status::Pending {
        return Err(AnswerRejection::NotPending(held.status));
    }
    if now_us >= held.expires_at_us {
        return Err(AnswerRejection::Expired);
    }
    let approver = Identity::parse(&answer.approver)?;
    let principal = Identity::parse(&held.principal).ok();
    if answer.reason.trim().is_empty() {
        Err(AnswerRejection::MissingReason)
    } else if answer.proof.is_none() {
        Err(AnswerRejection::Unsigned)
    } else if principal.is_none_or(|p| p.same_person(&approver)) {
        Err(AnswerRejection::SelfApproval)
    } else if !held.approvers.is_empty()
        && !held
            .approvers
            .iter()
            .any(|a| crate::identity::key(a).is_ok_and(|k| k == approver.key()))
    {
        Err(AnswerRejection::NotAnApprover)
    } else {
        Ok(approver)
    }
}

/// Applies `answer` to approval `id`; see the module invariants.
pub(super) fn record(
    tx: &mut dyn Db,
    id: &str,
    answer: &NewAnswer,
    now: DateTime<Utc>,
) -> Result<AnswerOutcome, StoreError> {
    let held = load_held(tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    let now_us = micros(now);
    let approver = check(&held, answer, now_us)?;
    if !insert_answer(tx, id, &approver, answer, now_us)? {
        return Err(AnswerRejection::AlreadyAnswered.into());
    }
    let approvers = approving(tx, id)?;
    let approvals = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
    let status = match answer.decision {
        Verdict::Deny => {
            let why = format!("denied by {}: {}", approver, answer.reason.trim());
            decide(tx, id, Status::Denied, &why, now_us)?;
            Status::Denied
        }
        Verdict::Approve if approvals >= held.quorum => {
            decide(
                tx,
                id,
                Status::Approved,
                &format!("approved by {}", approvers.join(", ")),
                now_us,
            )?;
            // Every approver must have approved the wider scope for it to
            // hold; the narrowest one wins (0: this call, once).
            let scope_us = approving_scope_secs(tx, id)?.saturating_mul(1_000_000);
            let (until, reusable_until) = if scope_us > 0 {
                let until = now_us.saturating_add(scope_us);
                (until, Some(until))
            } else {
                (now_us.saturating_add(held.grant_ttl_us), None)
            };
            grant::insert(tx, id, &held.digest, &approvers, until, reusable_until)?;
            Status::Approved
        }
        Verdict::Approve => Status::Pending,
    };
    Ok(AnswerOutcome {
        status,
        approvals,
        quorum: held.quorum,
    })
}

/// Inserts the answer; false if this approver already answered (the primary
/// key on the normalised identity says so).
fn insert_answer(
    tx: &mut dyn Db,
    id: &str,
    approver: &Identity,
    answer: &NewAnswer,
    now_us: i64,
) -> Result<bool, StoreError> {
    let proof = answer
        .proof
        .as_ref()
        .map(|p| serde_json::to_string(p).expect("proof serializes"));
    let inserted = tx.execute(
        "INSERT INTO answers (approval_id, approver_key, approver, decision, reason, channel, at, proof)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        vals![
            id,
            answer_key(approver),
            approver.as_str(),
            answer.decision.as_str(),
            answer.reason.trim(),
            &answer.channel,
            now_us,
            proof
        ],
    )?;
    Ok(inserted == 1)
}

/// The approvers who approved, in answer order.
fn approving(tx: &mut dyn Db, id: &str) -> Result<Vec<String>, StoreError> {
    tx.query(
        "SELECT approver FROM answers WHERE approval_id = ?1 AND decision = ?2 ORDER BY at, rowid",
        vals![id, Verdict::Approve.as_str()],
    )?
    .iter()
    .map(|row| row.text(0))
    .collect()
}

/// The narrowest scope, in seconds, among the approving answers' proofs.
fn approving_scope_secs(tx: &mut dyn Db, id: &str) -> Result<i64, StoreError> {
    let proofs = tx.query(
        "SELECT proof FROM answers WHERE approval_id = ?1 AND decision = ?2",
        vals![id, Verdict::Approve.as_str()],
    )?;
    let mut narrowest = i64::MAX;
    for row in proofs {
        let scope = row
            .opt_text(0)?
            .and_then(|p| serde_json::from_str::<Proof>(&p).ok())
            .map_or(0, |p| i64::try_from(p.scope_seconds()).unwrap_or(0));
        narrowest = narrowest.min(scope);
    }
    Ok(if narrowest == i64::MAX { 0 } else { narrowest })
}

fn decide(
    tx: &mut dyn Db,
    id: &str,
    status: Status,
    why: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE approvals SET status = ?1, status_reason = ?2, decided_at = ?3 WHERE id = ?4",
        vals![status.as_str(), why, now_us, id],
    )?;
    Ok(())
}
