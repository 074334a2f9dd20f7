//! Converting between Rust values and the columns of `approvals.db`: times as
//! integer microseconds, lists and documents as JSON text, vocabularies as
//! their `as_str` spelling. Reading a value the code could not have written
//! is an error (a `FromSqlConversionFailure`), never a default.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::de::DeserializeOwned;

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

fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let us: i64 = row.get(idx)?;
    DateTime::from_timestamp_micros(us).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, us))
}

fn opt_time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(_) => time_col(row, idx).map(Some),
    }
}

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

pub fn json_col<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion(idx, e))
}

pub fn word_col<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| conversion(idx, e))
}

/// JSON text for a list or document column. Serialising these types cannot
/// fail (string lists and `serde_json::Value`).
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain JSON values serialise")
}

/// An approval row in [`RECORD_SELECT`] order; `answers` left empty.
pub fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    Ok(ApprovalRecord {
        id: row.get(0)?,
        digest: row.get(1)?,
        principal: row.get(2)?,
        server: row.get(3)?,
        tool: row.get(4)?,
        request: json_col(row, 5)?,
        reasons: json_col(row, 6)?,
        approvers: json_col(row, 7)?,
        quorum: row.get(8)?,
        status: word_col(row, 9)?,
        status_reason: row.get(10)?,
        created_at: time_col(row, 11)?,
        expires_at: time_col(row, 12)?,
        decided_at: opt_time_col(row, 13)?,
        grant_expires_at: opt_time_col(row, 14)?,
        answers: Vec::new(),
    })
}

fn answers_for(conn: &Connection, id: &str) -> rusqlite::Result<Vec<AnswerRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT approver, decision, reason, channel, at, proof FROM answers
         WHERE approval_id = ?1 ORDER BY at, rowid",
    )?;
    let rows = stmt.query_map(params![id], |row| {
        Ok(AnswerRecord {
            approver: row.get(0)?,
            decision: word_col(row, 1)?,
            reason: row.get(2)?,
            channel: row.get(3)?,
            at: time_col(row, 4)?,
            // A proof that does not parse proves nothing: read as absent.
            proof: row
                .get::<_, Option<String>>(5)?
                .and_then(|p| serde_json::from_str(&p).ok()),
        })
    })?;
    rows.collect()
}

/// Fills in each record's answers (one query per record: the CLI lists tens
/// of approvals, not millions).
pub fn with_answers(
    conn: &Connection,
    mut records: Vec<ApprovalRecord>,
) -> rusqlite::Result<Vec<ApprovalRecord>> {
    for r in &mut records {
        r.answers = answers_for(conn, &r.id)?;
    }
    Ok(records)
}

/// The full record for `id`, answers included.
pub fn load_record(conn: &Connection, id: &str) -> rusqlite::Result<Option<ApprovalRecord>> {
    let sql = format!("{RECORD_SELECT} WHERE a.id = ?1");
    let record = conn
        .query_row(&sql, params![id], record_from_row)
        .optional()?;
    let Some(record) = record else {
        return Ok(None);
    };
    Ok(with_answers(conn, vec![record])?.pop())
}
