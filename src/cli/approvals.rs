//! `mcp-firewall approvals list | show ID | approve ID | deny ID`: answering
//! held calls from the machine the firewall runs on.
//!
//! The command writes to the same approval store (SQLite in `--data-dir`) as
//! the running firewall, which sees the answer on its next poll. The same
//! rules apply as on every channel: a reason is required, the requester
//! cannot answer their own call, policy may restrict who answers.

use std::path::Path;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};

use mcp_firewall::approval::{ApprovalRecord, ApprovalStore, NewAnswer, Status, Verdict};

pub fn list(data_dir: &Path, status: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = ApprovalStore::open(data_dir)?;
    let status = status
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
    let records = store.list(status)?;
    if records.is_empty() {
        println!("no approvals");
    }
    for r in records {
        println!("{}", summary(&r));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(data_dir: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let store = ApprovalStore::open(data_dir)?;
    let Some(record) = store.get(id)? else {
        eprintln!("no approval {id}");
        return Ok(ExitCode::FAILURE);
    };
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(ExitCode::SUCCESS)
}

pub fn answer(
    data_dir: &Path,
    id: &str,
    decision: Verdict,
    approver: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let store = ApprovalStore::open(data_dir)?;
    let answer = NewAnswer {
        approver: approver.to_string(),
        decision,
        reason: reason.to_string(),
        channel: "cli".into(),
    };
    match store.answer(id, &answer, Utc::now()) {
        Ok(outcome) => {
            println!(
                "{id}: {} ({}/{} approvals)",
                outcome.status.as_str(),
                outcome.approvals,
                outcome.quorum
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{id}: answer refused: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn summary(r: &ApprovalRecord) -> String {
    let approvals = r
        .answers
        .iter()
        .filter(|a| a.decision == Verdict::Approve)
        .count();
    format!(
        "{}  {:<9} {}/{}  by {}  {}/{}  expires {}  reasons: {}",
        r.id,
        r.status.as_str(),
        approvals,
        r.quorum,
        r.principal,
        r.server,
        r.tool,
        r.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        r.reasons.join("; ")
    )
}
