//! The closed set of messages the firewall may write to an upstream without
//! a policy decision: protocol plumbing.
//!
//! Everything else reaches an upstream only through
//! [`Upstream::forward`](super::Upstream::forward), which consumes a
//! [`Permit`](crate::proxy::pipeline::Permit). The sending primitives of a
//! connection are private to [`super::connection`], so a new method added to
//! the proxy cannot write to an upstream without either a `Permit` or a new
//! variant here, where a reviewer sees it.
//!
//! Every variant carries only typed fields the firewall itself chose or
//! checked; none carries free-form params from the client.

use serde_json::{Value, json};

use super::connection::Reply;
use crate::proxy::pipeline::RelayPermit;

/// Requests the firewall makes of an upstream on its own behalf.
#[derive(Debug)]
pub enum OwnRequest {
    /// The handshake, with the client's initialize params (capabilities,
    /// client info, protocol version) as the firewall passes them on.
    Initialize(Value),
    /// One page of a catalogue listing (cursor as the upstream gave it).
    List {
        method: ListMethod,
        cursor: Option<Value>,
    },
    /// `logging/setLevel` with a level from the spec's closed list.
    SetLogLevel(LogLevel),
    /// `tasks/cancel` of a task the upstream made for this session, when
    /// the firewall ends it itself (it asked for input the policy refused).
    CancelTask(String),
}

/// The catalogue listings the firewall fetches to build its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMethod {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
    /// `tasks/list`, answered with only the session's own tasks.
    Tasks,
}

impl ListMethod {
    pub fn method(self) -> &'static str {
        match self {
            ListMethod::Tools => "tools/list",
            ListMethod::Prompts => "prompts/list",
            ListMethod::Resources => "resources/list",
            ListMethod::ResourceTemplates => "resources/templates/list",
            ListMethod::Tasks => "tasks/list",
        }
    }
}

/// RFC 5424 severities, the only values `logging/setLevel` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl OwnRequest {
    pub(super) fn method(&self) -> &'static str {
        match self {
            OwnRequest::Initialize(_) => "initialize",
            OwnRequest::List { method, .. } => method.method(),
            OwnRequest::SetLogLevel(_) => "logging/setLevel",
            OwnRequest::CancelTask(_) => "tasks/cancel",
        }
    }

    pub(super) fn params(&self) -> Value {
        match self {
            OwnRequest::Initialize(params) => params.clone(),
            OwnRequest::List { cursor: None, .. } => json!({}),
            OwnRequest::List {
                cursor: Some(c), ..
            } => json!({"cursor": c}),
            OwnRequest::SetLogLevel(level) => json!({"level": level.as_str()}),
            OwnRequest::CancelTask(id) => json!({"taskId": id}),
        }
    }
}

/// A request forwarded under a `Permit`, identified so that only it can be
/// cancelled. Made only by [`Upstream::forward`](super::Upstream::forward).
#[derive(Debug)]
pub struct CancelHandle {
    pub(super) upstream_id: u64,
}

impl CancelHandle {
    /// The id the upstream saw.
    pub fn upstream_id(&self) -> u64 {
        self.upstream_id
    }
}

/// Notifications and answers that are plumbing.
#[derive(Debug)]
pub enum Plumbing {
    /// `notifications/initialized`, once, right after a successful initialize.
    Initialized,
    /// `notifications/cancelled` for a request forwarded under a Permit.
    Cancel(CancelHandle),
    /// `notifications/roots/list_changed` (the client's roots changed; the
    /// upstream will ask `roots/list`, which is decided).
    RootsListChanged,
    /// The client's progress on a server-to-client request that was decided
    /// and relayed; the proxy checks the token belongs to that request.
    Progress {
        token: Value,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    /// The client's answer to a server-to-client request that policy allowed.
    Answer {
        permit: RelayPermit,
        id: Value,
        reply: Reply,
    },
    /// The firewall's own refusal of a server-to-client request.
    Refuse { id: Value, error: Value },
    /// The firewall's own answer to the upstream's `ping`.
    Pong { id: Value },
}

/// What a [`Plumbing`] message becomes on the wire.
pub(super) enum Wire {
    Notification(&'static str, Value),
    Response(Value, Reply),
}

impl Plumbing {
    pub(super) fn into_wire(self) -> Wire {
        match self {
            Plumbing::Initialized => Wire::Notification("notifications/initialized", Value::Null),
            Plumbing::Cancel(handle) => Wire::Notification(
                "notifications/cancelled",
                json!({"requestId": handle.upstream_id, "reason": "cancelled by the client"}),
            ),
            Plumbing::RootsListChanged => {
                Wire::Notification("notifications/roots/list_changed", Value::Null)
            }
            Plumbing::Progress {
                token,
                progress,
                total,
                message,
            } => {
                let mut params = json!({"progressToken": token, "progress": progress});
                if let Some(total) = total {
                    params["total"] = json!(total);
                }
                if let Some(message) = message {
                    params["message"] = json!(message);
                }
                Wire::Notification("notifications/progress", params)
            }
            Plumbing::Answer { permit, id, reply } => {
                drop(permit);
                Wire::Response(id, reply)
            }
            Plumbing::Refuse { id, error } => Wire::Response(id, Err(error)),
            Plumbing::Pong { id } => Wire::Response(id, Ok(json!({}))),
        }
    }
}
