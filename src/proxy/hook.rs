//! Claude Code's `PreToolUse` hook: a tool use of the client's own (`Bash`,
//! `Edit`, `Read`, `WebFetch` ...) or of one of its MCP servers
//! (`mcp__server__tool`), decided by the same policy, held by the same
//! approvals and recorded in the same audit log as an MCP `tools/call`.
//!
//! The input is the `tools/call` document with `method = "hook/PreToolUse"`,
//! `input.tool.name` the tool (for `mcp__server__tool`: `tool`, and
//! `input.server` the server; `claude-code` for the client's own tools),
//! `input.arguments` the tool input, and `input.hook` the hook's context
//! (docs/claude-code.md). Nothing is forwarded: the answer goes back to
//! Claude Code, which runs the tool or not.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Proxy;
use super::hold::{Held, HoldRequest};
use super::input::{Subject, Target};
use super::pipeline::Refused;
use crate::audit::{canonical_json, sha256_tagged};
use crate::error::Refusal;
use crate::policy::DEFAULT_HOLD_REASON;
use crate::upstream::Entry;

/// `input.server` of the client's own tools.
pub const CLIENT_SERVER: &str = "claude-code";

/// `input.method` of a tool use decided through the hook.
pub const PRE_TOOL_USE: &str = "hook/PreToolUse";

/// One tool use, as the hook's JSON describes it.
#[derive(Debug, Clone)]
pub struct ToolUse {
    /// The name as Claude Code gives it: `Bash`, `mcp__github__create_issue`.
    pub tool_name: String,
    pub tool_input: Value,
    pub tool_use_id: Option<String>,
    pub session_id: String,
    pub cwd: String,
    pub permission_mode: Option<String>,
    /// Where Claude Code was started (`CLAUDE_PROJECT_DIR` in the hook's
    /// environment), when known.
    pub project_dir: Option<String>,
}

impl ToolUse {
    /// Read the hook's JSON. Every field Claude Code documents as required
    /// for `PreToolUse` must be there with its type: a malformed input is
    /// refused (the caller blocks the tool), never guessed at.
    pub fn parse(hook: &Value) -> Result<ToolUse, String> {
        let text = |key: &str| -> Result<String, String> {
            match hook.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(format!("`{key}` must be a non-empty string")),
                None => Err(format!("`{key}` is missing")),
            }
        };
        let optional = |key: &str| hook.get(key).and_then(Value::as_str).map(str::to_string);
        let tool_input = match hook.get("tool_input") {
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err("`tool_input` must be an object".into()),
            None => return Err("`tool_input` is missing".into()),
        };
        Ok(ToolUse {
            tool_name: text("tool_name")?,
            tool_input,
            tool_use_id: optional("tool_use_id"),
            session_id: text("session_id")?,
            cwd: text("cwd")?,
            permission_mode: optional("permission_mode"),
            project_dir: None,
        })
    }

    /// `(input.server, input.tool.name)`: `mcp__server__tool` names an MCP
    /// server's tool; anything else is the client's own.
    pub fn target(&self) -> (String, String) {
        if let Some(rest) = self.tool_name.strip_prefix("mcp__")
            && let Some((server, tool)) = rest.split_once("__")
            && !server.is_empty()
            && !tool.is_empty()
        {
            return (server.to_string(), tool.to_string());
        }
        (CLIENT_SERVER.to_string(), self.tool_name.clone())
    }

    /// `input.hook`: what the hook says about where the tool runs.
    pub fn context(&self, event: &str) -> Value {
        let (server, _) = self.target();
        json!({
            "event": event,
            "client": CLIENT_SERVER,
            "tool_name": self.tool_name,
            "tool_use_id": self.tool_use_id,
            "cwd": self.cwd,
            "project_dir": self.project_dir,
            "permission_mode": self.permission_mode,
            "builtin": server == CLIENT_SERVER,
        })
    }
}

/// What happens to a tool use no rule allows and nothing asks a human for
/// (the default hold, [`DEFAULT_HOLD_REASON`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Held for an approver, as an MCP call would be.
    Hold,
    /// Handed to the person at the keyboard: Claude Code's own permission
    /// prompt (`permissionDecision: "ask"`).
    Ask,
}

/// The hook's answer, each with its reason (naming the recorded decision).
#[derive(Debug, PartialEq, Eq)]
pub enum HookAnswer {
    /// Run it: allowed by policy, or approved.
    Allow(String),
    /// Let Claude Code ask its user.
    Ask(String),
    /// Do not run it; the reason is shown to the model.
    Deny(String),
}

impl Proxy {
    /// Decide one tool use; hold it for an approver when the policy says
    /// so, for at most the approval wait.
    pub async fn decide_tool_use(&self, tool_use: &ToolUse, unmatched: Unmatched) -> HookAnswer {
        let (server, name) = tool_use.target();
        let def = json!({"name": name, "client": CLIENT_SERVER, "server": server});
        let fingerprint = sha256_tagged(canonical_json(&def).as_bytes());
        let entry = Entry::new(tool_use.tool_name.clone(), server, name, def, fingerprint);
        let params = json!({});
        let subject = Subject {
            method: PRE_TOOL_USE,
            server: &entry.server,
            target: Target::Tool(&entry),
            arguments: &tool_use.tool_input,
            params: &params,
        };
        let refused = match self.decide(&subject).await {
            Ok(permit) => {
                return HookAnswer::Allow(format!(
                    "mcp-firewall: allowed by policy (decision {})",
                    permit.decision_id()
                ));
            }
            Err(refused) => refused,
        };
        let (decision_id, reasons, obligations) = match refused {
            Refused {
                decision_id: Some(decision_id),
                refusal:
                    Refusal::ApprovalRequired {
                        reasons,
                        obligations,
                        ..
                    },
            } => (decision_id, reasons, obligations),
            other => return deny(other),
        };
        if unmatched == Unmatched::Ask && reasons == [DEFAULT_HOLD_REASON] {
            return self.hand_to_user(decision_id);
        }
        let request = HoldRequest {
            subject: &subject,
            decision_id: decision_id.clone(),
            reasons,
            obligations: obligations.map(|o| *o),
            progress_token: None,
            task: None,
        };
        match self.hold(request, &CancellationToken::new()).await {
            Held::Released(permit) => HookAnswer::Allow(format!(
                "mcp-firewall: approved by a human (decision {})",
                permit.decision_id()
            )),
            Held::Refused(refused) => deny(refused),
            Held::Cancelled => HookAnswer::Deny(format!(
                "mcp-firewall: the wait for approval was cancelled (decision {decision_id})"
            )),
        }
    }

    /// A default hold given to Claude Code's own prompt: on the record, so
    /// the log shows who was asked.
    fn hand_to_user(&self, decision_id: String) -> HookAnswer {
        let record = json!({"decision_id": decision_id, "session_id": self.session.id,
                            "to": "the client's permission prompt",
                            "reason": DEFAULT_HOLD_REASON});
        if let Err(e) = self.shared.audit.append("hook.asked", record) {
            return deny(Refused {
                decision_id: Some(decision_id),
                refusal: e.into(),
            });
        }
        HookAnswer::Ask(format!(
            "mcp-firewall: {DEFAULT_HOLD_REASON}; the user decides (decision {decision_id})"
        ))
    }
}

fn deny(refused: Refused) -> HookAnswer {
    let mut reason = format!("mcp-firewall: {}", refused.refusal.text());
    if let Some(id) = &refused.decision_id {
        reason.push_str(&format!(" (decision {id})"));
    }
    HookAnswer::Deny(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_use(name: &str) -> ToolUse {
        ToolUse::parse(&json!({"session_id": "s", "cwd": "/p", "tool_name": name,
                               "tool_input": {}, "hook_event_name": "PreToolUse"}))
        .unwrap()
    }

    #[test]
    fn mcp_tool_names_name_their_server() {
        assert_eq!(
            tool_use("mcp__github__create_issue").target(),
            ("github".into(), "create_issue".into())
        );
        assert_eq!(
            tool_use("mcp__fs__read__deep").target(),
            ("fs".into(), "read__deep".into())
        );
        assert_eq!(
            tool_use("Bash").target(),
            (CLIENT_SERVER.into(), "Bash".into())
        );
        // Not a well-formed MCP name: the client's own tool of that name.
        assert_eq!(tool_use("mcp__x").target().0, CLIENT_SERVER);
        assert_eq!(tool_use("mcp____t").target().0, CLIENT_SERVER);
    }

    #[test]
    fn malformed_hook_input_is_refused() {
        for bad in [
            json!({}),
            json!({"session_id": "s", "cwd": "/p", "tool_name": "Bash"}),
            json!({"session_id": "s", "cwd": "/p", "tool_name": "Bash", "tool_input": "rm -rf /"}),
            json!({"session_id": 1, "cwd": "/p", "tool_name": "Bash", "tool_input": {}}),
            json!({"session_id": "s", "cwd": "/p", "tool_name": "", "tool_input": {}}),
        ] {
            assert!(ToolUse::parse(&bad).is_err(), "{bad}");
        }
    }
}
