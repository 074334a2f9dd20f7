//! Connections to the real MCP servers ("upstreams") and the merged
//! catalogue of what they offer.
//!
//! - [`connection`]: the transport-independent core: ids, pending requests,
//!   alive state, routing of what the server sends;
//! - [`process`]: a child process spoken to over stdio;
//! - [`shared`]: one child process for every session (`shared = true`),
//!   each session's messages multiplexed over it;
//! - [`streamable_http`]: a remote server over Streamable HTTP;
//! - [`sse`]: a remote server over the legacy HTTP+SSE transport;
//! - [`http`], [`event_stream`]: what the HTTP transports share (client,
//!   bounds, headers, Server-Sent Events parsing);
//! - [`plumbing`]: the closed set of messages sent without a decision;
//! - [`catalogue`]: merging tools/prompts/resources of several upstreams into
//!   one namespace, and tool fingerprints.

pub mod catalogue;
pub mod connection;
pub mod event_stream;
pub mod http;
pub mod plumbing;
mod process;
mod shared;
mod sse;
pub mod streamable_http;

pub(crate) use catalogue::PolicyView;
pub use catalogue::{Entry, Named, Naming, Resource, Resources, Route};
pub use connection::{PendingReply, Reply, Upstream, UpstreamError, UpstreamEvent};
pub use plumbing::{CancelHandle, ListMethod, LogLevel, OwnRequest, Plumbing};
