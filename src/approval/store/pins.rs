//! Tool pins: the definition of each tool of each upstream as first seen
//! (trust on first use) or as a human last approved it, kept in the same
//! database as approvals so a restart or another session remembers them.
//!
//! # Invariants
//!
//! - A pin is keyed by the upstream's identity (its command line or URL,
//!   not the name the config gives it) and the tool's own name.
//! - The firewall never moves a pin to a changed definition by itself: only
//!   [`ApprovalStore::repin`] does, called when a human approved a call to
//!   that definition, or by a signed `mcp-firewall tools pin`.
//! - Observing a listing records the definition last seen next to the pin,
//!   so `tools diff` can show what changed, and reports each change once.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::rows::micros;
use super::sql::{Row, vals};
use super::{ApprovalStore, StoreError};

/// One tool as an upstream lists it now.
pub struct SeenTool<'a> {
    pub name: &'a str,
    pub fingerprint: &'a str,
    /// The pinned fields (name, title, description, schemas, annotations).
    pub definition: &'a Value,
}

/// What observing a listing changed, for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinEvent {
    pub tool: String,
    /// `tool.added` (pinned on first use), `tool.changed` (differs from its
    /// pin, reported once per new definition), `tool.removed`, `tool.returned`.
    pub event: &'static str,
    pub fingerprint: Option<String>,
}

/// A stored pin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pin {
    pub upstream: String,
    pub tool: String,
    pub fingerprint: String,
    pub definition: Value,
    pub first_seen: DateTime<Utc>,
    pub pinned_at: DateTime<Utc>,
    /// `first-use`, `approval apr_…`, `cli <approver> (<key fingerprint>)`.
    pub pinned_by: String,
    /// A human approved this definition (a call to it, or a signed pin).
    pub approved: bool,
    pub seen_fingerprint: Option<String>,
    pub seen_definition: Option<Value>,
    pub removed: bool,
}

const PIN_SELECT: &str = "SELECT upstream, tool, fingerprint, definition, first_seen, pinned_at,
    pinned_by, approved, seen_fingerprint, seen_definition, removed_at FROM tool_pins";

fn pin_from_row(row: &Row) -> Result<Pin, StoreError> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    Ok(Pin {
        upstream: row.text(0)?,
        tool: row.text(1)?,
        fingerprint: row.text(2)?,
        definition: json(row.opt_text(3)?).unwrap_or(Value::Null),
        first_seen: time(row.int(4)?),
        pinned_at: time(row.int(5)?),
        pinned_by: row.text(6)?,
        approved: row.int(7)? != 0,
        seen_fingerprint: row.opt_text(8)?,
        seen_definition: json(row.opt_text(9)?),
        removed: row.opt_int(10)?.is_some(),
    })
}

impl ApprovalStore {
    /// Record what `upstream` lists now: pin new tools on first use, note
    /// definitions that differ from their pin, mark missing tools removed.
    pub fn observe_tools(
        &self,
        upstream: &str,
        tools: &[SeenTool<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<PinEvent>, StoreError> {
        let now = micros(now);
        self.write(|tx| {
            let mut events = Vec::new();
            for t in tools {
                let existing = tx
                    .query_one(
                        "SELECT fingerprint, seen_fingerprint, removed_at FROM tool_pins
                         WHERE upstream = ?1 AND tool = ?2",
                        vals![upstream, t.name],
                    )?
                    .map(|r| Ok::<_, StoreError>((r.text(0)?, r.opt_text(1)?, r.opt_int(2)?)))
                    .transpose()?;
                let definition = t.definition.to_string();
                let event = |event| PinEvent {
                    tool: t.name.to_string(),
                    event,
                    fingerprint: Some(t.fingerprint.to_string()),
                };
                match existing {
                    None => {
                        tx.execute(
                            "INSERT INTO tool_pins (upstream, tool, fingerprint, definition, first_seen,
                                 pinned_at, pinned_by, approved, seen_fingerprint, seen_definition, seen_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'first-use', 0, ?3, ?4, ?5)",
                            vals![upstream, t.name, t.fingerprint, &definition, now],
                        )?;
                        events.push(event("tool.added"));
                    }
                    Some((pinned, seen, removed)) => {
                        if removed.is_some() {
                            events.push(event("tool.returned"));
                        }
                        if pinned != t.fingerprint && seen.as_deref() != Some(t.fingerprint) {
                            events.push(event("tool.changed"));
                        }
                        tx.execute(
                            "UPDATE tool_pins SET seen_fingerprint = ?3, seen_definition = ?4,
                                 seen_at = ?5, removed_at = NULL WHERE upstream = ?1 AND tool = ?2",
                            vals![upstream, t.name, t.fingerprint, &definition, now],
                        )?;
                    }
                }
            }
            // A set: an upstream chooses how many tools it lists, and a
            // search of the list per known tool was quadratic (100,000
            // listed tools took minutes).
            let listed: HashSet<&str> = tools.iter().map(|t| t.name).collect();
            let known = tx
                .query(
                    "SELECT tool FROM tool_pins WHERE upstream = ?1 AND removed_at IS NULL",
                    vals![upstream],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()?;
            for tool in known.into_iter().filter(|k| !listed.contains(&k.as_str())) {
                tx.execute(
                    "UPDATE tool_pins SET removed_at = ?3 WHERE upstream = ?1 AND tool = ?2",
                    vals![upstream, &tool, now],
                )?;
                events.push(PinEvent {
                    tool,
                    event: "tool.removed",
                    fingerprint: None,
                });
            }
            Ok(events)
        })
    }

    /// The pin of one tool, if any.
    pub fn pin(&self, upstream: &str, tool: &str) -> Result<Option<Pin>, StoreError> {
        self.read(|db| {
            let sql = format!("{PIN_SELECT} WHERE upstream = ?1 AND tool = ?2");
            db.query_one(&sql, vals![upstream, tool])?
                .as_ref()
                .map(pin_from_row)
                .transpose()
        })
    }

    /// Every pin, by upstream and tool.
    pub fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        self.read(|db| {
            let sql = format!("{PIN_SELECT} ORDER BY upstream, tool");
            db.query(&sql, &[])?.iter().map(pin_from_row).collect()
        })
    }

    /// Pin `definition` as the approved one (a human approved a call to it,
    /// or signed a `tools pin`).
    pub fn repin(
        &self,
        upstream: &str,
        tool: &str,
        fingerprint: &str,
        definition: &Value,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = micros(now);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tool_pins (upstream, tool, fingerprint, definition, first_seen, pinned_at,
                     pinned_by, approved, seen_fingerprint, seen_definition, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 1, ?3, ?4, ?5)
                 ON CONFLICT (upstream, tool) DO UPDATE SET fingerprint = ?3, definition = ?4,
                     pinned_at = ?5, pinned_by = ?6, approved = 1",
                vals![upstream, tool, fingerprint, definition.to_string(), now, by],
            )?;
            Ok(())
        })
    }

    /// Forget a pin: the next listing pins the tool again on first use.
    pub fn unpin(&self, upstream: &str, tool: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM tool_pins WHERE upstream = ?1 AND tool = ?2",
                vals![upstream, tool],
            )?;
            Ok(n == 1)
        })
    }
}
