//! `hook claude-code`: Claude Code's `PreToolUse` and `PostToolUse` hooks.
//!
//! Claude Code runs the command once per tool use with the event's JSON on
//! stdin (hooks reference, docs/claude-code.md pins the version). Answers:
//! - allow (policy, or an approver): exit 0, `permissionDecision: "allow"`;
//! - a default hold with `--unmatched ask`: exit 0, `permissionDecision:
//!   "ask"` (Claude Code asks its user);
//! - everything else (deny, pending, expired, any error, even a panic):
//!   exit 2 with the reason on stderr, which blocks the tool in every
//!   Claude Code version and shows the reason to the model. Exit 1 or a
//!   crash would let the tool run ("non-blocking error"), so no path ends
//!   that way for `PreToolUse`.

use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::HookArgs;
use mcp_firewall::approval::Approvals;
use mcp_firewall::audit::{AuditLog, canonical_digest};
use mcp_firewall::config::Config;
use mcp_firewall::policy::PolicySet;
use mcp_firewall::proxy::hook::{HookAnswer, ToolUse, Unmatched};
use mcp_firewall::proxy::session::Session;
use mcp_firewall::proxy::{Proxy, Shared};

/// The largest hook input read (a `Write` of a big file carries it whole).
const MAX_HOOK_INPUT: u64 = 32 * 1024 * 1024;

/// How long a hook waits, after its answer, for deliveries to approvers
/// still in flight (webhook retries, Slack, Teams).
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Exit code that blocks the tool, with stderr shown to the model.
const BLOCK: u8 = 2;

pub fn claude_code(args: HookArgs) -> anyhow::Result<ExitCode> {
    let hook = match read_hook() {
        Ok(hook) => hook,
        Err(e) => return Ok(block(&format!("{e:#}"))),
    };
    let event = hook.get("hook_event_name").and_then(Value::as_str);
    match event {
        Some("PreToolUse") => {
            // Whatever goes wrong, the tool is blocked.
            match std::panic::catch_unwind(AssertUnwindSafe(|| pre_tool_use(&args, &hook))) {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(e)) => Ok(block(&format!("{e:#}"))),
                Err(_) => Ok(block("the hook failed unexpectedly")),
            }
        }
        Some(event @ ("PostToolUse" | "PostToolUseFailure")) => {
            // The tool already ran: a failure here is reported, not a block.
            match post_tool_use(&args, &hook, event) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("mcp-firewall: the outcome was not recorded: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        // Events this hook does not decide (the settings may route others
        // here by mistake): nothing to say.
        Some(_) => Ok(ExitCode::SUCCESS),
        None => Ok(block("the hook input has no `hook_event_name`")),
    }
}

fn block(reason: &str) -> ExitCode {
    let reason = reason.strip_prefix("mcp-firewall: ").unwrap_or(reason);
    eprintln!("mcp-firewall: {reason}");
    ExitCode::from(BLOCK)
}

fn read_hook() -> anyhow::Result<Value> {
    let mut text = Vec::new();
    std::io::stdin()
        .take(MAX_HOOK_INPUT + 1)
        .read_to_end(&mut text)
        .context("could not read the hook input")?;
    if text.len() as u64 > MAX_HOOK_INPUT {
        bail!("the hook input is larger than {MAX_HOOK_INPUT} bytes");
    }
    let hook: Value = serde_json::from_slice(&text).context("the hook input is not JSON")?;
    if !hook.is_object() {
        bail!("the hook input is not a JSON object");
    }
    Ok(hook)
}

/// The config the hook decides with: the file's (its upstreams are not
/// started) or the defaults, and the flags over either.
fn config(args: &HookArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(file) => Config::settings_from_file(file)?,
        None => Config::without_upstreams(),
    };
    config.upstreams.clear();
    super::apply_decision_flags(&args.decision, &mut config)?;
    Ok(config)
}

fn pre_tool_use(args: &HookArgs, hook: &Value) -> anyhow::Result<ExitCode> {
    let mut tool_use = ToolUse::parse(hook).map_err(|e| anyhow!("bad PreToolUse input: {e}"))?;
    tool_use.project_dir = std::env::var("CLAUDE_PROJECT_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    let unmatched = match args.unmatched.as_str() {
        "hold" => Unmatched::Hold,
        _ => Unmatched::Ask,
    };
    let config = config(args)?;
    let policy = PolicySet::load_dir(&config.policy_dir, &config.package)
        .with_context(|| format!("policy in {} failed to load", config.policy_dir.display()))?;
    let audit = Arc::new(super::open_audit(&config)?);
    let approvals = Arc::new(Approvals::open(config.approval.clone(), audit.clone())?);
    let mut session = Session::new("hook", super::principal_for(&args.decision, &config));
    session.id = tool_use.session_id.clone();
    let _ = session
        .client
        .set(json!({"name": "claude-code", "version": ""}));
    let _ = session.hook.set(tool_use.context("PreToolUse"));
    let shared = Arc::new(Shared::new(config, policy, audit.clone(), approvals));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(async {
        // Nothing is sent to a client: the answer is the exit code.
        let (client, _unread) = tokio::sync::mpsc::channel(16);
        let approvals = shared.approvals.clone();
        let (proxy, _events) = Proxy::start(shared, session, client)?;
        let answer = proxy.decide_tool_use(&tool_use, unmatched).await;
        // A request held past the wait is still being delivered to the
        // approvers: let that finish (bounded) before the process ends.
        if let Some(approvals) = approvals {
            approvals.deliveries.close();
            let _ = tokio::time::timeout(DELIVERY_GRACE, approvals.deliveries.wait()).await;
        }
        anyhow::Ok(answer)
    })?;
    checkpoint_on_exit(&audit)?;
    Ok(match answer {
        HookAnswer::Allow(reason) => decision("allow", &reason),
        HookAnswer::Ask(reason) => decision("ask", &reason),
        HookAnswer::Deny(reason) => block(&reason),
    })
}

/// Exit 0 with a `PreToolUse` decision on stdout.
fn decision(permission: &str, reason: &str) -> ExitCode {
    let out = json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": permission,
        "permissionDecisionReason": reason,
    }});
    println!("{out}");
    ExitCode::SUCCESS
}

/// Record how a tool use ended (`call.completed`, linked to its decision by
/// `session_id` and `tool_use_id`): a digest of the response, never the
/// response itself.
fn post_tool_use(args: &HookArgs, hook: &Value, event: &str) -> anyhow::Result<()> {
    let config = config(args)?;
    let audit = super::open_audit(&config)?;
    let field = |key: &str| hook.get(key).cloned().unwrap_or(Value::Null);
    let response = field("tool_response");
    let failed = event == "PostToolUseFailure"
        || response.get("is_error") == Some(&Value::Bool(true))
        || response.get("success") == Some(&Value::Bool(false));
    let mut record = json!({
        "session_id": field("session_id"),
        "tool_use_id": field("tool_use_id"),
        "tool": field("tool_name"),
        "client": {"name": "claude-code"},
        "hook_event": event,
        "outcome": if failed { "error" } else { "ok" },
        "response_digest": canonical_digest(&response),
        "response_bytes": response.to_string().len(),
    });
    if let Some(error) = hook.get("error") {
        // The error text may quote a secret: its digest only.
        record["error_digest"] = json!(canonical_digest(error));
    }
    audit.append("call.completed", record)?;
    checkpoint_on_exit(&audit)
}

/// A hook process lives for one tool use: it signs a checkpoint as it ends
/// only when the last one is older than the checkpoint interval (besides the
/// every-N-records ones any writer signs).
fn checkpoint_on_exit(audit: &AuditLog) -> anyhow::Result<()> {
    if let Some(every) = audit.checkpoint_every() {
        audit.checkpoint_if_older(every)?;
    }
    Ok(())
}
