//! The one closed table of every MCP method the firewall knows, in both
//! directions, and what it does with each.
//!
//! | direction | method | handling |
//! |---|---|---|
//! | client request | `initialize` | plumbing: initializes every upstream, answers with their merged result |
//! | client request | `ping` | local |
//! | client request | `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list` | filter: the firewall's own catalogue, each item through the policy (`hide`) |
//! | client request | `tools/call`, `prompts/get`, `resources/read`, `resources/subscribe`, `resources/unsubscribe`, `completion/complete` | decide: policy, audit, `Permit`, forward |
//! | client request | `logging/setLevel` | plumbing: a level from the closed RFC 5424 list, sent to upstreams that log |
//! | client request | `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/update` | decide: only for a task this session's decided `tools/call` created, forwarded to the upstream that created it (`tasks`); a result `tasks/get` inlines (2026-07-28 tasks extension) goes through the response phase and the input requests it carries are decided as server requests |
//! | client request | `tasks/list` | filter: the upstreams' listings, only this session's tasks |
//! | client request | anything else | refuse: `-32601`, audited |
//! | client notification | `notifications/initialized` | local (each upstream got its own) |
//! | client notification | `notifications/cancelled` | local: cancels the client's own in-flight request; a forwarded one is cancelled upstream (plumbing) |
//! | client notification | `notifications/progress` | plumbing, only for the token of a relayed server-to-client request, to its upstream |
//! | client notification | `notifications/roots/list_changed` | plumbing, to every upstream |
//! | client notification | anything else | dropped, logged and audited |
//! | server request | `sampling/createMessage`, `elicitation/create`, `roots/list` | decide (`input.direction = "server_to_client"`): relayed to the client only if allowed, else a JSON-RPC error to the upstream |
//! | server request | `ping` | local: the firewall answers |
//! | server request | anything else | refuse: `-32601` to the upstream, audited |
//! | server notification | `notifications/{tools,prompts,resources}/list_changed` | local (cache invalidated) and relayed |
//! | server notification | `notifications/resources/updated`, `notifications/progress`, `notifications/message` | relayed to the client |
//! | server notification | `notifications/cancelled` | relayed, renamed to the id the client knows, only for a relayed request |
//! | server notification | `notifications/tasks/status` | relayed only for a task this session created |
//! | server notification | anything else | dropped and logged |
//!
//! Every `match` on these enums is exhaustive with no catch-all arm, so a
//! new variant makes the compiler point at each place that must handle it.

/// Requests a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRequest {
    Initialize,
    Ping,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourceTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    PromptsList,
    PromptsGet,
    CompletionComplete,
    LoggingSetLevel,
    TasksGet,
    TasksResult,
    TasksCancel,
    TasksList,
    /// `tasks/update` (the 2026-07-28 tasks extension): the client's answers
    /// to a task's input requests.
    TasksUpdate,
}

/// What the firewall does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Policy decides; audited; forwarded only with a `Permit`.
    Decide,
    /// The firewall answers from its catalogue, each item through the policy.
    Filter,
    /// The firewall answers (or acts) itself; nothing reaches an upstream.
    Local,
    /// Protocol plumbing: a typed message from `upstream::plumbing`.
    Plumbing,
}

impl ClientRequest {
    pub const ALL: [ClientRequest; 18] = [
        ClientRequest::Initialize,
        ClientRequest::Ping,
        ClientRequest::ToolsList,
        ClientRequest::ToolsCall,
        ClientRequest::ResourcesList,
        ClientRequest::ResourceTemplatesList,
        ClientRequest::ResourcesRead,
        ClientRequest::ResourcesSubscribe,
        ClientRequest::ResourcesUnsubscribe,
        ClientRequest::PromptsList,
        ClientRequest::PromptsGet,
        ClientRequest::CompletionComplete,
        ClientRequest::LoggingSetLevel,
        ClientRequest::TasksGet,
        ClientRequest::TasksResult,
        ClientRequest::TasksCancel,
        ClientRequest::TasksList,
        ClientRequest::TasksUpdate,
    ];

    /// `None`: not in the table, so refused.
    pub fn parse(method: &str) -> Option<ClientRequest> {
        ClientRequest::ALL
            .into_iter()
            .find(|m| m.as_str() == method)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientRequest::Initialize => "initialize",
            ClientRequest::Ping => "ping",
            ClientRequest::ToolsList => "tools/list",
            ClientRequest::ToolsCall => "tools/call",
            ClientRequest::ResourcesList => "resources/list",
            ClientRequest::ResourceTemplatesList => "resources/templates/list",
            ClientRequest::ResourcesRead => "resources/read",
            ClientRequest::ResourcesSubscribe => "resources/subscribe",
            ClientRequest::ResourcesUnsubscribe => "resources/unsubscribe",
            ClientRequest::PromptsList => "prompts/list",
            ClientRequest::PromptsGet => "prompts/get",
            ClientRequest::CompletionComplete => "completion/complete",
            ClientRequest::LoggingSetLevel => "logging/setLevel",
            ClientRequest::TasksGet => "tasks/get",
            ClientRequest::TasksResult => "tasks/result",
            ClientRequest::TasksCancel => "tasks/cancel",
            ClientRequest::TasksList => "tasks/list",
            ClientRequest::TasksUpdate => "tasks/update",
        }
    }

    pub fn handling(self) -> Handling {
        match self {
            ClientRequest::Initialize | ClientRequest::LoggingSetLevel => Handling::Plumbing,
            ClientRequest::Ping => Handling::Local,
            ClientRequest::ToolsList
            | ClientRequest::ResourcesList
            | ClientRequest::ResourceTemplatesList
            | ClientRequest::PromptsList
            | ClientRequest::TasksList => Handling::Filter,
            ClientRequest::TasksGet
            | ClientRequest::TasksResult
            | ClientRequest::TasksCancel
            | ClientRequest::TasksUpdate => Handling::Decide,
            ClientRequest::ToolsCall
            | ClientRequest::ResourcesRead
            | ClientRequest::ResourcesSubscribe
            | ClientRequest::ResourcesUnsubscribe
            | ClientRequest::PromptsGet
            | ClientRequest::CompletionComplete => Handling::Decide,
        }
    }

    /// The server capability a listing the firewall answers itself needs:
    /// with no upstream declaring it, the client gets the `-32601` it would
    /// get direct, not an empty list the firewall made up.
    pub fn listed_capability(self) -> Option<&'static str> {
        match self {
            ClientRequest::ToolsList => Some("tools"),
            ClientRequest::ResourcesList | ClientRequest::ResourceTemplatesList => {
                Some("resources")
            }
            ClientRequest::PromptsList => Some("prompts"),
            ClientRequest::TasksList => Some("tasks"),
            ClientRequest::Initialize
            | ClientRequest::Ping
            | ClientRequest::ToolsCall
            | ClientRequest::ResourcesRead
            | ClientRequest::ResourcesSubscribe
            | ClientRequest::ResourcesUnsubscribe
            | ClientRequest::PromptsGet
            | ClientRequest::CompletionComplete
            | ClientRequest::LoggingSetLevel
            | ClientRequest::TasksGet
            | ClientRequest::TasksResult
            | ClientRequest::TasksCancel
            | ClientRequest::TasksUpdate => None,
        }
    }

    /// The params keys the method defines besides `_meta`; anything else is
    /// an extra param, shown to the policy as `input.extra_params` and bound
    /// into the approval digest.
    pub fn known_params(self) -> &'static [&'static str] {
        match self {
            // `task` asks for task execution (MCP tasks): how, not what.
            ClientRequest::ToolsCall => &["name", "arguments", "task"],
            ClientRequest::PromptsGet => &["name", "arguments"],
            ClientRequest::ResourcesRead
            | ClientRequest::ResourcesSubscribe
            | ClientRequest::ResourcesUnsubscribe => &["uri"],
            ClientRequest::CompletionComplete => &["ref", "argument"],
            ClientRequest::TasksGet | ClientRequest::TasksResult | ClientRequest::TasksCancel => {
                &["taskId"]
            }
            ClientRequest::TasksUpdate => &["taskId", "inputResponses"],
            ClientRequest::LoggingSetLevel => &["level"],
            ClientRequest::ToolsList
            | ClientRequest::ResourcesList
            | ClientRequest::ResourceTemplatesList
            | ClientRequest::PromptsList
            | ClientRequest::TasksList => &["cursor"],
            ClientRequest::Initialize | ClientRequest::Ping => &[],
        }
    }
}

/// Notifications a client may send; anything else is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNotification {
    Initialized,
    Cancelled,
    Progress,
    RootsListChanged,
}

impl ClientNotification {
    pub fn parse(method: &str) -> Option<ClientNotification> {
        match method {
            "notifications/initialized" => Some(ClientNotification::Initialized),
            "notifications/cancelled" => Some(ClientNotification::Cancelled),
            "notifications/progress" => Some(ClientNotification::Progress),
            "notifications/roots/list_changed" => Some(ClientNotification::RootsListChanged),
            _ => None,
        }
    }
}

/// Requests an upstream may send the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRequest {
    CreateMessage,
    Elicit,
    RootsList,
    Ping,
}

impl ServerRequest {
    pub fn parse(method: &str) -> Option<ServerRequest> {
        match method {
            "sampling/createMessage" => Some(ServerRequest::CreateMessage),
            "elicitation/create" => Some(ServerRequest::Elicit),
            "roots/list" => Some(ServerRequest::RootsList),
            "ping" => Some(ServerRequest::Ping),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerRequest::CreateMessage => "sampling/createMessage",
            ServerRequest::Elicit => "elicitation/create",
            ServerRequest::RootsList => "roots/list",
            ServerRequest::Ping => "ping",
        }
    }
}

/// Notifications an upstream may send; anything else is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNotification {
    ToolsListChanged,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    Progress,
    LogMessage,
    Cancelled,
    TaskStatus,
}

impl ServerNotification {
    pub fn parse(method: &str) -> Option<ServerNotification> {
        match method {
            "notifications/tools/list_changed" => Some(ServerNotification::ToolsListChanged),
            "notifications/prompts/list_changed" => Some(ServerNotification::PromptsListChanged),
            "notifications/resources/list_changed" => {
                Some(ServerNotification::ResourcesListChanged)
            }
            "notifications/resources/updated" => Some(ServerNotification::ResourceUpdated),
            "notifications/progress" => Some(ServerNotification::Progress),
            "notifications/message" => Some(ServerNotification::LogMessage),
            "notifications/cancelled" => Some(ServerNotification::Cancelled),
            "notifications/tasks/status" => Some(ServerNotification::TaskStatus),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_request_round_trips_and_unknown_methods_are_not_in_the_table() {
        for m in ClientRequest::ALL {
            assert_eq!(ClientRequest::parse(m.as_str()), Some(m));
        }
        for unknown in ["tasks/teleport", "tools/teleport", "", "TOOLS/CALL"] {
            assert_eq!(ClientRequest::parse(unknown), None);
        }
    }

    #[test]
    fn methods_that_act_are_decided() {
        for m in ["tools/call", "completion/complete", "resources/subscribe"] {
            assert_eq!(
                ClientRequest::parse(m).unwrap().handling(),
                Handling::Decide
            );
        }
        assert_eq!(ClientNotification::parse("tools/call"), None);
    }
}
