//! `mcp-firewall tools list | diff | pin | unpin`: the tool pins in a data
//! directory.
//!
//! `list` and `diff` only read. `pin` (accept the definition an upstream
//! lists now as approved) and `unpin` (forget a pin, so the next listing pins
//! on first use) change what the firewall lets through, so, like answering
//! an approval, they must be signed with a registered approver's key: being
//! able to run this command proves nothing. The signed message is the
//! canonical JSON of `{"type": "mcp-firewall.tool-pin.v1", "action",
//! "upstream", "tool", "fingerprint", "approver", "timestamp"}` (SSHSIG,
//! namespace `mcp-firewall-approval`).

use std::path::Path;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use mcp_firewall::approval::approvers::{ApproverRegistry, sign_bytes_with_key_file};
use mcp_firewall::approval::store::pins::Pin;
use mcp_firewall::audit::canonical_json;
use mcp_firewall::identity::Identity;
use mcp_firewall::visible;

pub fn list(store_at: &super::StoreAt) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let pins = store.pins()?;
    if pins.is_empty() {
        println!("no pinned tools");
    }
    for p in pins {
        let status = match (&p.seen_fingerprint, p.removed) {
            (_, true) => "removed",
            (Some(seen), _) if *seen != p.fingerprint => "CHANGED",
            _ if p.approved => "approved",
            _ => "pinned",
        };
        let line = format!(
            "{:<9} {}  {}  {}  pinned {} by {}",
            status,
            p.tool,
            short(&p.fingerprint),
            p.upstream,
            p.pinned_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            p.pinned_by
        );
        println!("{}", visible::text(&line));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every pinned tool whose last-seen definition differs from its pin, field
/// by field (`-` pinned, `+` seen). Exit 1 when there is any.
pub fn diff(store_at: &super::StoreAt) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let mut any = false;
    for p in store.pins()? {
        let (Some(seen_fp), Some(seen)) = (&p.seen_fingerprint, &p.seen_definition) else {
            continue;
        };
        if *seen_fp == p.fingerprint {
            continue;
        }
        any = true;
        let head = format!(
            "{} ({}): {} -> {}",
            p.tool,
            p.upstream,
            short(&p.fingerprint),
            short(seen_fp)
        );
        println!("{}", visible::text(&head));
        for field in mcp_firewall::proxy::pins_fields() {
            let before = p.definition.get(field).unwrap_or(&Value::Null);
            let after = seen.get(field).unwrap_or(&Value::Null);
            if before != after {
                let (before, after) = (before.to_string(), after.to_string());
                println!(
                    "  {field}:\n    - {}\n    + {}",
                    visible::json(&before),
                    visible::json(&after)
                );
            }
        }
    }
    if !any {
        println!("no pinned tool has changed");
    }
    Ok(if any {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `pin` or `unpin`, signed by `approver` with the key at `key`.
pub fn change(
    store_at: &super::StoreAt,
    action: &str,
    tool: &str,
    upstream: Option<&str>,
    approver: &str,
    key: &Path,
) -> anyhow::Result<ExitCode> {
    let store = store_at.open()?;
    let refuse = |message: String| {
        eprintln!("{tool}: {action} refused: {message}");
        Ok(ExitCode::FAILURE)
    };
    let candidates: Vec<Pin> = store
        .pins()?
        .into_iter()
        .filter(|p| p.tool == tool && upstream.is_none_or(|u| p.upstream.contains(u)))
        .collect();
    let pin = match candidates.as_slice() {
        [one] => one.clone(),
        [] => return refuse("no such pinned tool (see `tools list`)".into()),
        _ => return refuse("several upstreams have this tool: give --upstream".into()),
    };
    let approver = match Identity::parse(approver) {
        Ok(a) => a,
        Err(e) => return refuse(format!("--as: {e}")),
    };
    let (fingerprint, definition) = match (&pin.seen_fingerprint, &pin.seen_definition) {
        (Some(fp), Some(def)) if action == "pin" => (fp.clone(), def.clone()),
        _ => (pin.fingerprint.clone(), pin.definition.clone()),
    };
    let timestamp = Utc::now().timestamp();
    let message = canonical_json(&json!({
        "type": "mcp-firewall.tool-pin.v1", "action": action, "upstream": pin.upstream,
        "tool": tool, "fingerprint": fingerprint, "approver": approver.as_str(),
        "timestamp": timestamp,
    }));
    let signature = match sign_bytes_with_key_file(key, message.as_bytes()) {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    let registry = match ApproverRegistry::parse(&store.approver_keys()?) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return refuse("no approver keys are registered in this data directory".into()),
        Err((line, e)) => return refuse(format!("registered keys, line {line}: {e}")),
    };
    let key_fp = match registry.verify_bytes(
        &approver,
        message.as_bytes(),
        timestamp,
        &signature,
        timestamp,
    ) {
        Ok(fp) => fp,
        Err(e) => return refuse(e.to_string()),
    };
    let by = format!("cli {approver} ({key_fp})");
    if action == "pin" {
        store.repin(
            &pin.upstream,
            tool,
            &fingerprint,
            &definition,
            &by,
            Utc::now(),
        )?;
        println!("{tool}: pinned {} as approved, {by}", short(&fingerprint));
    } else {
        store.unpin(&pin.upstream, tool)?;
        println!("{tool}: unpinned, {by}; the next listing pins it on first use");
    }
    Ok(ExitCode::SUCCESS)
}

fn short(fingerprint: &str) -> &str {
    let end = fingerprint.len().min("sha256:".len() + 12);
    &fingerprint[..end]
}
