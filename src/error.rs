//! Every reason the firewall refuses or fails a client request, and the one
//! place where each becomes what the client sees.
//!
//! Two shapes reach the client (documented in docs/policy-input.md):
//! - a refused `tools/call` that the *model* should read (policy deny, held
//!   for approval, invalid arguments, a policy or audit failure) is a normal
//!   tool result with `isError: true`, so the model can adjust;
//! - everything else (unknown tool, a refused `resources/read` or
//!   `prompts/get`, a dead upstream, protocol misuse) is a JSON-RPC error,
//!   with `data.decision_id` when a decision was recorded.

use serde_json::{Value, json};

use crate::audit::AuditError;
use crate::jsonrpc::code;
use crate::policy::PolicyError;
use crate::upstream::UpstreamError;

/// Why a request was not forwarded (or not completed).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("Unknown tool: {0}")]
    UnknownTool(String),
    #[error("Unknown prompt: {0}")]
    UnknownPrompt(String),
    #[error("Resource not found: {0}")]
    ResourceNotFound(String),
    #[error(
        "Resource {uri} is claimed by more than one upstream ({}); the firewall sends it to none of them \
         (an operator settles this with `resource_prefixes` on one of them)",
        .servers.join(", ")
    )]
    ResourceContested { uri: String, servers: Vec<String> },
    #[error("Invalid arguments for tool {tool}: {}", .errors.join("; "))]
    InvalidArguments { tool: String, errors: Vec<String> },
    #[error("Tool {tool} has an input schema the firewall cannot compile: {message}")]
    BadSchema { tool: String, message: String },
    #[error("Denied by policy: {}", .reasons.join("; "))]
    PolicyDenied {
        reasons: Vec<String>,
        message: Option<String>,
    },
    #[error("Approval required: {}. This call was held for human approval and was not run.", .reasons.join("; "))]
    ApprovalRequired {
        reasons: Vec<String>,
        message: Option<String>,
        /// Boxed: a `Value` is large, and refusals travel in `Result`s.
        obligations: Option<Box<Value>>,
    },
    #[error(
        "Approval pending: this call is held as approval {id} ({}) and was not run. \
         Once an approver has approved it, repeat the identical call before {expires_at}.",
        .reasons.join("; ")
    )]
    ApprovalPending {
        id: String,
        reasons: Vec<String>,
        expires_at: String,
    },
    #[error("Approval {id} was denied: {}. The call was not run.", .reasons.join("; "))]
    ApprovalDenied { id: String, reasons: Vec<String> },
    #[error("Approval {id} expired without an answer; the call was not run.")]
    ApprovalExpired { id: String },
    #[error("The approval could not be requested ({0}); the call was not run.")]
    ApprovalFailed(String),
    #[error("Denied: the policy could not be evaluated ({0})")]
    PolicyFailed(#[from] PolicyError),
    #[error("Denied: the audit log could not be written ({0})")]
    AuditWriteFailed(#[from] AuditError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    #[error("The session is not initialized: send initialize first")]
    NotInitialized,
}

impl Refusal {
    /// Short machine-readable kind, used in audit records and error data.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownTool(_) => "unknown_tool",
            Refusal::UnknownPrompt(_) => "unknown_prompt",
            Refusal::ResourceNotFound(_) => "resource_not_found",
            Refusal::ResourceContested { .. } => "resource_contested",
            Refusal::InvalidArguments { .. } => "invalid_arguments",
            Refusal::BadSchema { .. } => "bad_schema",
            Refusal::PolicyDenied { .. } => "policy_denied",
            Refusal::ApprovalRequired { .. } => "approval_required",
            Refusal::ApprovalPending { .. } => "approval_pending",
            Refusal::ApprovalDenied { .. } => "approval_denied",
            Refusal::ApprovalExpired { .. } => "approval_expired",
            Refusal::ApprovalFailed(_) => "approval_failed",
            Refusal::PolicyFailed(_) => "policy_error",
            Refusal::AuditWriteFailed(_) => "audit_write_failed",
            Refusal::Upstream(_) => "upstream_unavailable",
            Refusal::MethodNotFound(_) => "method_not_found",
            Refusal::InvalidParams(_) => "invalid_params",
            Refusal::NotInitialized => "not_initialized",
        }
    }

    /// The text the model or user reads: the policy's own `message` when it
    /// gave one, otherwise the reasons.
    pub fn text(&self) -> String {
        match self {
            Refusal::PolicyDenied {
                message: Some(m), ..
            }
            | Refusal::ApprovalRequired {
                message: Some(m), ..
            } => m.clone(),
            other => other.to_string(),
        }
    }

    fn code(&self) -> i64 {
        match self {
            Refusal::UnknownTool(_) | Refusal::UnknownPrompt(_) | Refusal::InvalidParams(_) => {
                code::INVALID_PARAMS
            }
            Refusal::InvalidArguments { .. } => code::INVALID_PARAMS,
            Refusal::ResourceNotFound(_) | Refusal::ResourceContested { .. } => {
                code::RESOURCE_NOT_FOUND
            }
            Refusal::BadSchema { .. }
            | Refusal::PolicyDenied { .. }
            | Refusal::ApprovalRequired { .. }
            | Refusal::ApprovalPending { .. }
            | Refusal::ApprovalDenied { .. }
            | Refusal::ApprovalExpired { .. }
            | Refusal::ApprovalFailed(_)
            | Refusal::PolicyFailed(_) => code::POLICY_DENIED,
            Refusal::AuditWriteFailed(_) => code::AUDIT_UNAVAILABLE,
            Refusal::Upstream(_) => code::UPSTREAM_UNAVAILABLE,
            Refusal::MethodNotFound(_) => code::METHOD_NOT_FOUND,
            Refusal::NotInitialized => code::INVALID_REQUEST,
        }
    }

    /// True when a refused `tools/call` should be a tool result the model
    /// reads rather than a protocol error.
    fn is_tool_result(&self) -> bool {
        matches!(
            self,
            Refusal::InvalidArguments { .. }
                | Refusal::BadSchema { .. }
                | Refusal::PolicyDenied { .. }
                | Refusal::ApprovalRequired { .. }
                | Refusal::ApprovalPending { .. }
                | Refusal::ApprovalDenied { .. }
                | Refusal::ApprovalExpired { .. }
                | Refusal::ApprovalFailed(_)
                | Refusal::PolicyFailed(_)
                | Refusal::AuditWriteFailed(_)
        )
    }

    /// The reasons to record and to put in error data.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Refusal::PolicyDenied { reasons, .. } | Refusal::ApprovalRequired { reasons, .. } => {
                reasons.clone()
            }
            other => vec![other.to_string()],
        }
    }

    /// The approval request this refusal is about, if any.
    pub fn approval_id(&self) -> Option<&str> {
        match self {
            Refusal::ApprovalPending { id, .. }
            | Refusal::ApprovalDenied { id, .. }
            | Refusal::ApprovalExpired { id } => Some(id),
            _ => None,
        }
    }

    /// The answer to the client: `Ok(result)` for a tool result, `Err(error
    /// object)` for a JSON-RPC error. `tool_call` says whether the request
    /// was a `tools/call`.
    pub fn answer(&self, tool_call: bool, decision_id: Option<&str>) -> Result<Value, Value> {
        if tool_call && self.is_tool_result() {
            let mut result = json!({
                "content": [{"type": "text", "text": self.text()}],
                "isError": true,
            });
            let mut meta = json!({"mcp-firewall/refusal": self.kind()});
            if let Some(id) = decision_id {
                meta["mcp-firewall/decision_id"] = json!(id);
            }
            if let Some(id) = self.approval_id() {
                meta["mcp-firewall/approval_id"] = json!(id);
            }
            result["_meta"] = meta;
            return Ok(result);
        }
        let mut error = json!({"code": self.code(), "message": self.text()});
        let mut data = json!({"kind": self.kind()});
        if let Refusal::PolicyDenied { reasons, .. } | Refusal::ApprovalRequired { reasons, .. } =
            self
        {
            data["reasons"] = json!(reasons);
            data["decision"] = json!(if matches!(self, Refusal::PolicyDenied { .. }) {
                "deny"
            } else {
                "approve"
            });
        }
        if let Some(id) = self.approval_id() {
            data["approval_id"] = json!(id);
        }
        if let Some(id) = decision_id {
            data["decision_id"] = json!(id);
        }
        error["data"] = data;
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_tool_call_is_a_tool_result_the_model_reads() {
        let r = Refusal::PolicyDenied {
            reasons: vec!["outside /srv".into()],
            message: None,
        };
        let ok = r.answer(true, Some("d1")).unwrap();
        assert_eq!(ok["isError"], true);
        assert_eq!(ok["content"][0]["text"], "Denied by policy: outside /srv");
        assert_eq!(ok["_meta"]["mcp-firewall/decision_id"], "d1");
    }

    #[test]
    fn the_policy_message_replaces_the_reasons_for_the_model() {
        let r = Refusal::PolicyDenied {
            reasons: vec!["r".into()],
            message: Some("Ask a human.".into()),
        };
        assert_eq!(
            r.answer(true, None).unwrap()["content"][0]["text"],
            "Ask a human."
        );
    }

    #[test]
    fn a_denied_resource_read_is_a_json_rpc_error_with_data() {
        let r = Refusal::PolicyDenied {
            reasons: vec!["secret".into()],
            message: None,
        };
        let err = r.answer(false, Some("d2")).unwrap_err();
        assert_eq!(err["code"], code::POLICY_DENIED);
        assert_eq!(err["data"]["decision"], "deny");
        assert_eq!(err["data"]["reasons"][0], "secret");
        assert_eq!(err["data"]["decision_id"], "d2");
    }

    #[test]
    fn unknown_tool_is_a_protocol_error_even_for_tools_call() {
        let err = Refusal::UnknownTool("x".into())
            .answer(true, None)
            .unwrap_err();
        assert_eq!(err["code"], code::INVALID_PARAMS);
    }
}
