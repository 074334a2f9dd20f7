//! The client-facing side. Today: stdio, what desktop clients launch.
//! Streamable HTTP and SSE listeners will live beside it.

pub mod stdio;
