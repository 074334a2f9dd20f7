//! mcp-firewall: an MCP server that stands between an AI client and the real
//! MCP servers it uses, puts every request through a Rego policy, and writes
//! every decision to a hash-chained audit log before anything is forwarded.
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`config`] | TOML config: raw (serde, `deny_unknown_fields`) -> validated -> resolved |
//! | [`policy`] | pure decision types and the regorus adapter (no sockets, no tokio) |
//! | [`approval`] | held calls: signed webhooks, durable requests/answers/grants (SQLite) |
//! | [`audit`] | hash-chained JSON Lines writer, verifier and argument masking |
//! | [`jsonrpc`] | JSON-RPC 2.0 message shapes and the error codes we answer with |
//! | [`upstream`] | connections to the real MCP servers (stdio, Streamable HTTP, SSE), id mapping |
//! | [`proxy`] | the request pipeline: route, validate, decide, audit, forward |
//! | [`reload`] | live policy reload: watch, compile and test off the request path, swap atomically |
//! | [`scope`] | one session's tasks: spawned into it, all ended when it closes |
//! | [`downstream`] | the client-facing side: stdio, Streamable HTTP and legacy SSE |
//! | [`budget`] | the memory all sessions together may spend reading big messages |
//! | [`framing`] | newline-delimited framing with a size cap that survives bad lines |
//! | [`inspect`] | built-in findings (secrets, injection markers) over results, redaction, size cap |
//! | [`identity`] | canonical principal and approver names (NFKC, no invisibles, one script) |
//! | [`logging`] | the firewall's own log on stderr: queued, never waited for, each place limited |
//! | [`error`] | the failures that matter, mapped to client answers in one place |

pub mod approval;
pub mod audit;
pub mod budget;
pub mod config;
pub mod downstream;
pub mod error;
pub mod framing;
pub mod identity;
pub mod inspect;
pub mod jsonrpc;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod scope;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod upstream;
pub mod visible;
