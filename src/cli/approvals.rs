//! `mcp-firewall approvals list | show ID | approve ID | deny ID`: answering
//! held calls from the machine the firewall runs on.
//!
//! The command writes to the same approval store (SQLite in `--data-dir`) as
//! the running firewall, which sees the answer on its next poll. An answer
//! must be signed with the approver's OpenSSH Ed25519 key (`--key`, or
//! `--signature` made by `ssh-keygen -Y sign` over `approvals message`): being
//! able to run this command proves nothing, since an agent with a shell can
//! run it too. The same rules apply as on every channel: a reason is
//! required, the requester cannot answer their own call, policy may restrict
//! who answers; and the firewall verifies the signature again itself.

use std::path::Path;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};

use mcp_firewall::approval::approvers::{AnswerMessage, ApproverRegistry, sign_with_key_file};
use mcp_firewall::approval::{ApprovalRecord, NewAnswer, Proof, Status, Verdict};
use mcp_firewall::identity::Identity;
use mcp_firewall::visible;

pub fn list(store_at: &super::StoreAt, status: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let status = status
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
    let records = store.list(status)?;
    if records.is_empty() {
        println!("no approvals");
    }
    for r in records {
        println!("{}", visible::text(&summary(&r)));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(store_at: &super::StoreAt, id: &str) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let Some(record) = store.get(id)? else {
        eprintln!("no approval {id}");
        return Ok(ExitCode::FAILURE);
    };
    println!("{}", visible::json(&serde_json::to_string_pretty(&record)?));
    Ok(ExitCode::SUCCESS)
}

/// How the approver signs: with a key file here, or a signature made
/// elsewhere (`ssh-keygen -Y sign` over `approvals message`'s output).
pub enum Signer<'a> {
    KeyFile(&'a Path),
    Signature { file: &'a Path, timestamp: i64 },
}

/// `approvals approve|deny`: sign the answer, check it against the
/// registered keys, record it. Exit 0 only when it was recorded.
pub fn answer(
    store_at: &super::StoreAt,
    id: &str,
    decision: Verdict,
    approver: &str,
    reason: &str,
    signer: Signer<'_>,
) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let refuse = |message: String| {
        eprintln!("{id}: answer refused: {message}");
        Ok(ExitCode::FAILURE)
    };
    let Some(record) = store.get(id)? else {
        return refuse(format!("no approval {id} in {store_at}"));
    };
    let approver = match Identity::parse(approver) {
        Ok(a) => a,
        Err(e) => return refuse(format!("--as: {e}")),
    };
    let timestamp = match signer {
        Signer::KeyFile(_) => Utc::now().timestamp(),
        Signer::Signature { timestamp, .. } => timestamp,
    };
    let message = answer_message(id, &record, &approver, decision, reason, timestamp);
    let signature = match signer {
        Signer::KeyFile(path) => match sign_with_key_file(path, &message) {
            Ok(s) => s,
            Err(e) => return refuse(e),
        },
        Signer::Signature { file, .. } => {
            std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
    };
    // The firewall verifies again with its own copy; this check only spares
    // an approver a recorded answer that would never count.
    let registry = match ApproverRegistry::parse(&store.approver_keys()?) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            return refuse(
                "no approver keys are registered in this data directory; start the firewall with --approvers FILE".into(),
            );
        }
        Err((line, e)) => return refuse(format!("registered keys, line {line}: {e}")),
    };
    let fingerprint = match registry.verify(&approver, &message, &signature, Utc::now().timestamp())
    {
        Ok(fp) => fp,
        Err(e) => return refuse(e.to_string()),
    };
    let answer = NewAnswer {
        approver: approver.to_string(),
        decision,
        reason: reason.to_string(),
        channel: "cli".into(),
        proof: Some(Proof::SshKey {
            fingerprint: fingerprint.clone(),
            signature,
            timestamp,
        }),
    };
    match store.answer(id, &answer, Utc::now()) {
        Ok(outcome) => {
            println!(
                "{id}: {} ({}/{} approvals), signed by {approver} with {fingerprint}",
                outcome.status.as_str(),
                outcome.approvals,
                outcome.quorum
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refuse(e.to_string()),
    }
}

/// `approvals message`: print the exact bytes an answer signs, for
/// `ssh-keygen -Y sign -n mcp-firewall-approval` (passphrase-protected or
/// hardware keys, keys held by an agent).
pub fn message(
    store_at: &super::StoreAt,
    id: &str,
    decision: Verdict,
    approver: &str,
    reason: &str,
    timestamp: i64,
) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let Some(record) = store.get(id)? else {
        eprintln!("no approval {id}");
        return Ok(ExitCode::FAILURE);
    };
    let approver = Identity::parse(approver).map_err(|e| anyhow::anyhow!("--as: {e}"))?;
    let message = answer_message(id, &record, &approver, decision, reason, timestamp);
    use std::io::Write;
    std::io::stdout().write_all(&message.to_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// What `approver` signs to answer `record`: the canonical name and the
/// trimmed reason, as the store records them and the firewall re-verifies.
fn answer_message<'a>(
    id: &'a str,
    record: &'a ApprovalRecord,
    approver: &'a Identity,
    decision: Verdict,
    reason: &'a str,
    timestamp: i64,
) -> AnswerMessage<'a> {
    AnswerMessage {
        approval_id: id,
        digest: &record.digest,
        approver: approver.as_str(),
        decision: decision.as_str(),
        reason: reason.trim(),
        timestamp,
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
