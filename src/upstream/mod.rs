//! Connections to the real MCP servers ("upstreams") and the merged
//! catalogue of what they offer.
//!
//! - [`connection`]: one child process spoken to over stdio, with its own id
//!   space and a clear error when it exits;
//! - [`catalogue`]: merging tools/prompts/resources of several upstreams into
//!   one namespace, and tool fingerprints.

pub mod catalogue;
pub mod connection;

pub use catalogue::{Entry, Named, Naming, Resource, Resources};
pub use connection::{PendingReply, Reply, Upstream, UpstreamError, UpstreamEvent};
