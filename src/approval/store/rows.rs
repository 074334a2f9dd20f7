//! Converting between Rust values and the store's columns: times as integer
//! microseconds, lists and documents as JSON text, vocabularies as their
//! `as_str` spelling. Reading a value the code could not have written is an
//! error ([`StoreError::Corrupt`]), never a default.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::{Db, Row, vals};
use crate::approval::model::{AnswerRecord, ApprovalRecord};

/// The approval columns [`record_from_row`] reads, in order, with the grant's
/// expiry joined in.
pub const RECORD_SELECT: &str = "
SELECT a.id, a.digest, a.principal, a.server, a.tool, a.request, a.reasons,
       a.approvers, a.quorum, a.status, a.status_reason, a.created_at,
       a.expires_at, a.decided_at, g.expires_at
FROM approvals a LEFT JOIN grants g ON g.approval_id = a.id";

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// JSON text for a list or document column. Serialising these types cannot
/// fail (string lists and `serde_json::Value`).
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain JSON values serialise")
}

/// An approval row in [`RECORD_SELECT`] order; `answers` left empty.
pub fn record_from_row(row: &Row) -> Result<ApprovalRecord, StoreError> {
    Ok(ApprovalRecord {
        id: row.text(0)?,
        digest: row.text(1)?,
        principal: row.text(2)?,
        server: row.text(3)?,
        tool: row.text(4)?,
        request: row.json(5)?,
        reasons: row.json(6)?,
        approvers: row.json(7)?,
        quorum: u32::try_from(row.int(8)?)
            .map_err(|_| StoreError::Corrupt("quorum out of range".into()))?,
        status: row.word(9)?,
        status_reason: row.opt_text(10)?,
        created_at: row.time(11)?,
        expires_at: row.time(12)?,
        decided_at: row.opt_time(13)?,
        grant_expires_at: row.opt_time(14)?,
        answers: Vec::new(),
    })
}

fn answers_for(db: &mut dyn Db, id: &str) -> Result<Vec<AnswerRecord>, StoreError> {
    db.query(
        "SELECT approver, decision, reason, channel, at, proof FROM answers
         WHERE approval_id = ?1 ORDER BY at, rowid",
        vals![id],
    )?
    .iter()
    .map(|row| {
        Ok(AnswerRecord {
            approver: row.text(0)?,
            decision: row.word(1)?,
            reason: row.text(2)?,
            channel: row.text(3)?,
            at: row.time(4)?,
            // A proof that does not parse proves nothing: read as absent.
            proof: row.opt_text(5)?.and_then(|p| serde_json::from_str(&p).ok()),
        })
    })
    .collect()
}

/// Approval rows of a query in [`RECORD_SELECT`] order, answers filled in
/// (one query per record: the CLI lists tens of approvals, not millions).
pub fn records(
    db: &mut dyn Db,
    sql: &str,
    params: &[super::sql::Val],
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut records = db
        .query(sql, params)?
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    for r in &mut records {
        r.answers = answers_for(db, &r.id)?;
    }
    Ok(records)
}

/// The full record for `id`, answers included.
pub fn load_record(db: &mut dyn Db, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    let sql = format!("{RECORD_SELECT} WHERE a.id = ?1");
    Ok(records(db, &sql, vals![id])?.pop())
}
