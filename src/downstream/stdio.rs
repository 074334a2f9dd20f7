//! Serve one MCP session over stdin/stdout, newline-delimited JSON-RPC.
//!
//! Invariant: stdout carries only MCP messages, written by one task, one
//! whole line at a time; logs go to stderr.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::framing::{Frame, LineReader};
use crate::proxy::Proxy;

/// Largest message accepted from the client. Arguments can carry file
/// contents, so this is generous; a larger line is refused with a JSON-RPC
/// error and skipped, and the session goes on.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Write every queued message to stdout until the queue closes.
pub async fn write_stdout(mut rx: mpsc::Receiver<Value>) {
    let mut stdout = tokio::io::stdout();
    while let Some(message) = rx.recv().await {
        let mut line = message.to_string();
        line.push('\n');
        if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
            tracing::warn!("stdout closed; the client is gone");
            break;
        }
    }
}

/// Feed stdin to the proxy until the client closes it.
pub async fn read_stdin(proxy: Arc<Proxy>) {
    let mut lines = LineReader::new(tokio::io::stdin(), MAX_CLIENT_MESSAGE_BYTES);
    loop {
        match lines.next().await {
            Ok(Some(Frame::Line(line))) => proxy.handle_bytes(&line).await,
            Ok(Some(Frame::TooLong)) => {
                let reason =
                    format!("message larger than {MAX_CLIENT_MESSAGE_BYTES} bytes refused");
                tracing::warn!("{reason}");
                proxy.reject_unreadable(&reason).await;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("stdin failed: {e}");
                break;
            }
        }
    }
}
