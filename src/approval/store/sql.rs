//! The little SQL the store needs, over either database: statements with
//! positional parameters (`?1`, `?2` ...) and rows of plain values. The
//! store's logic (answering rules, grants, pins, tasks) is written once
//! against [`Db`]; SQLite ([`Lite`]) and PostgreSQL (`pg.rs`) carry it out.
//!
//! The SQL is the dialect both accept: `INSERT ... ON CONFLICT DO NOTHING`,
//! `CAST(? AS TEXT)` where a parameter's type could not be inferred, times
//! as integer microseconds, JSON as text, booleans as 0/1, and a `rowid`
//! column for insertion order (SQLite's own; a `BIGSERIAL` in PostgreSQL).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use serde::de::DeserializeOwned;

use super::StoreError;

/// One parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(i64::from(v))
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(i64::from(v))
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// `vals![a, b, c]`: a parameter list.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::approval::store::sql::Val::from($v)),*] };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

fn corrupt(i: usize, what: &str) -> StoreError {
    StoreError::Corrupt(format!("column {i}: expected {what}"))
}

impl Row {
    fn at(&self, i: usize) -> &Val {
        self.0.get(i).unwrap_or(&Val::Null)
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| corrupt(i, "an integer"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i) {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(_) => Err(corrupt(i, "an integer")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| corrupt(i, "text"))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i) {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            Val::Int(_) => Err(corrupt(i, "text")),
        }
    }

    /// A JSON text column. Reading a value the code could not have written
    /// is an error, never a default.
    pub fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(i)?)
            .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }

    /// A vocabulary column, in its `as_str` spelling.
    pub fn word<T>(&self, i: usize) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.text(i)?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }

    /// A time in integer microseconds.
    pub fn time(&self, i: usize) -> Result<DateTime<Utc>, StoreError> {
        let us = self.int(i)?;
        DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(i, "a time"))
    }

    pub fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.opt_int(i)? {
            None => Ok(None),
            Some(_) => self.time(i).map(Some),
        }
    }
}

/// Statements inside one transaction (or one read snapshot).
pub trait Db {
    /// Rows changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<usize, StoreError>;
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;

    fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Tell the other processes on this store that approval state changed,
    /// when the transaction commits. Nothing to do where no one listens
    /// (SQLite: the others poll).
    fn announce_change(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A SQLite transaction (or read snapshot) as a [`Db`].
pub struct Lite<'a>(pub &'a rusqlite::Connection);

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Val::Int(v) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(v) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

impl Db for Lite<'_> {
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<usize, StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(corrupt(i, "an integer or text"));
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}
