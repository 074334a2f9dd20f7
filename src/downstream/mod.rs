//! The client-facing side: [`stdio`] (what desktop clients launch) and
//! [`http`] (Streamable HTTP and legacy SSE, one `Proxy` per session).

pub mod http;
pub mod stdio;
