//! The config file exactly as written: serde structs that reject unknown keys.
//!
//! Nothing here is checked beyond types; [`super::validate`] turns a
//! [`RawConfig`] into a [`super::Config`] and names the key of any mistake.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub approval: RawApproval,
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
    #[serde(default)]
    pub http: RawHttp,
    /// The approver directory (`[[approver]]`).
    #[serde(default)]
    pub approver: Vec<RawApprover>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub store: RawStore,
}

/// `[store]`: where approvals, grants, pins and tasks live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://...` shared by several replicas (default: SQLite in the
    /// data directory). `${VAR}` is expanded from the environment.
    pub url: Option<String>,
    /// This replica's name in its audit records and the store's chain heads
    /// (default: the host name).
    pub replica: Option<String>,
}

/// `[metrics]`: the Prometheus listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// HOST:PORT serving `GET /metrics`.
    pub listen: Option<String>,
}

/// One `[[approver]]`: a person and every identity they answer with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprover {
    pub name: String,
    /// OpenSSH public key lines (Ed25519).
    #[serde(default)]
    pub keys: Vec<String>,
    pub oidc_subject: Option<String>,
    pub email: Option<String>,
    pub slack_user: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[approval.oidc]`: console sign-in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    /// Environment variable holding the client secret (absent: a public
    /// client, PKCE only).
    pub client_secret_env: Option<String>,
    /// Where the provider sends the browser back; default
    /// `<console_url>/oidc/callback`.
    pub redirect_url: Option<String>,
}

/// `[approval.slack]`: Block Kit messages and button answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// An incoming-webhook URL (or use `bot_token_env` + `channel`).
    pub webhook_url: Option<String>,
    pub bot_token_env: Option<String>,
    pub channel: Option<String>,
    /// Environment variable holding the app's signing secret.
    pub signing_secret_env: String,
    /// Slack's Web API base (default `https://slack.com/api`).
    pub api_url: Option<String>,
}

/// `[approval.teams]`: an Adaptive Card to a Teams Workflows webhook.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeams {
    pub webhook_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Where approval requests are POSTed.
    pub webhook: Option<String>,
    /// `whsec_...` secrets (several during rotation). Prefer `secret_env`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Environment variable holding comma-separated secrets.
    pub secret_env: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub wait_seconds: Option<u64>,
    /// `HOST:PORT` of the signed answer endpoint.
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Approvers' public keys, OpenSSH `allowed_signers` format.
    pub approvers: Option<String>,
    /// The console's address as approvers reach it (links in Slack and
    /// Teams messages); default `http://<listen>`.
    pub console_url: Option<String>,
    /// Held calls become MCP tasks for clients that ask for them.
    pub tasks: Option<bool>,
    /// Unexpired pending requests one principal may have.
    pub max_pending_per_principal: Option<u64>,
    /// Connections the approval listener holds at once; beyond, 503.
    pub max_connections: Option<usize>,
    /// Seconds a connection to the approval listener has to send a
    /// request's headers, then its body.
    pub header_read_timeout_seconds: Option<u64>,
    pub oidc: Option<RawOidc>,
    pub slack: Option<RawSlack>,
    pub teams: Option<RawTeams>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub dir: Option<String>,
    pub package: Option<String>,
    /// Evaluate and log, but forward every call.
    pub shadow: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub path: Option<String>,
    pub fsync: Option<String>,
    /// Argument field names masked in the log, in addition to the defaults.
    #[serde(default)]
    pub mask_fields: Vec<String>,
    /// OpenSSH Ed25519 private key that signs checkpoints of the chain.
    pub signing_key: Option<String>,
    /// The checkpoint file (default: the log's path + `.checkpoints`).
    pub checkpoints: Option<String>,
    pub checkpoint_every_records: Option<u64>,
    pub checkpoint_every_seconds: Option<u64>,
    /// `[audit.sink]`: ship the log to a collector.
    pub sink: Option<RawSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub url: String,
    /// Environment variable holding a bearer token for the collector.
    pub bearer_env: Option<String>,
    pub batch_records: Option<usize>,
    pub interval_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub principal: Option<String>,
    /// Re-read tool definitions older than this before deciding a call.
    pub tools_refresh_seconds: Option<u64>,
    /// Results larger than this are truncated (bytes).
    pub max_result_bytes: Option<usize>,
    /// Memory for big messages being read, all sessions together (bytes).
    pub message_memory_bytes: Option<usize>,
    /// The most of it one principal may hold (bytes).
    pub message_memory_per_principal_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    /// Deadline of a forwarded request, in seconds (default 300).
    pub timeout_seconds: Option<u64>,
    /// Trust this server's tool annotations (default false).
    pub trust_annotations: Option<bool>,
    /// Resource URIs starting with one of these belong to this server.
    #[serde(default)]
    pub resource_prefixes: Vec<String>,
    /// A child process spoken to over stdio (exclusive with `url`).
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// One process for every session instead of one per session (default
    /// false); only for servers that keep no per-session state.
    pub shared: Option<bool>,
    /// A remote server over HTTP (exclusive with `command`).
    pub url: Option<String>,
    /// `"streamable-http"` (default) or `"sse"`; only with `url`.
    pub transport: Option<String>,
    /// Extra request headers; `${VAR}` is expanded from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[http]`: the client-facing HTTP listener (Streamable HTTP and legacy SSE).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `HOST:PORT`; `--listen` overrides.
    pub listen: Option<String>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// Exact `Origin` values accepted; absent: loopback origins only.
    pub allowed_origins: Option<Vec<String>>,
    /// Host names (optionally `name:port`) accepted in the `Host` header;
    /// absent: loopback names when the listener is on loopback, else any.
    pub allowed_hosts: Option<Vec<String>>,
    pub max_sessions: Option<usize>,
    /// Sessions (and stateless bridges) one principal may hold at once.
    pub max_sessions_per_principal: Option<usize>,
    /// Seconds a connection has to send a request's headers, then its
    /// body, and to start the next request on a kept-alive connection
    /// (default 30).
    pub header_read_timeout_seconds: Option<u64>,
    /// Open connections accepted at once (default: what the open-file
    /// limit leaves after the sessions' own descriptors); beyond, 503.
    pub max_connections: Option<usize>,
    /// Seconds an HTTP session (or stateless bridge) may sit with nothing
    /// in flight, no stream open and no request before it is closed and
    /// its upstreams stopped (default 1800).
    pub session_idle_timeout_seconds: Option<u64>,
    /// OAuth 2.1 authorization servers whose JWT access tokens are accepted.
    #[serde(default)]
    pub oauth: Vec<RawOAuth>,
}

/// One `[[http.oauth]]`: an authorization server (issuer).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub issuer: String,
    /// The `aud` tokens must carry (default: the listener's `/mcp` URL).
    pub audience: Option<String>,
    /// The claim that names the principal (default `sub`).
    pub principal_claim: Option<String>,
    /// Scopes every token must carry.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// One bearer token: its SHA-256 written in the file, or the token itself
/// in an environment variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub principal: String,
    pub sha256: Option<String>,
    pub env: Option<String>,
    /// Become `input.principal.claims`.
    #[serde(default)]
    pub attributes: toml::Table,
}
