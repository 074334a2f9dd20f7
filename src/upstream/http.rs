//! What the two HTTP transports share: the client and its bounds, the
//! configured headers, and turning a response body into delivered messages.
//!
//! The only headers sent are the protocol's own and the ones configured for
//! this upstream: the firewall never forwards anything of its client's.

use std::sync::Weak;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::mpsc;

use super::connection::{MAX_UPSTREAM_MESSAGE_BYTES, Upstream, UpstreamEvent, dropped_answer};
use super::event_stream::{EventReader, Item};
use crate::config::Headers;

/// How long establishing a TCP/TLS connection may take. Short: a server
/// that cannot be reached should fail the call quickly, not hang it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No overall request timeout: a tool call may legitimately run for many
/// minutes, and event streams stay open for the whole session. The client
/// cancels calls it gives up on; a dead connection is caught by TCP keepalive.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// How long a best-effort request at shutdown (`DELETE` of the session) may take.
pub const SHUTDOWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of an error response's body is quoted in the error message.
const ERROR_BODY_QUOTE: usize = 200;

/// A client for one upstream. Redirects are not followed: an MCP endpoint
/// has no reason to redirect, and following one could carry the configured
/// credentials to another host.
pub fn client(server: &str) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(TCP_KEEPALIVE)
        // Small JSON-RPC messages must not wait for Nagle's algorithm.
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-firewall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client for '{server}': {e}"))
}

/// The configured headers as a header map (validated by the config stage).
pub fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &headers.0 {
        let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        value.set_sensitive(true);
        map.insert(name, value);
    }
    map
}

/// The response's media type, lowercased, without parameters.
pub fn media_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `HTTP 401 Unauthorized: <start of body>` for an error message.
pub async fn status_error(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let quote: String = body.chars().take(ERROR_BODY_QUOTE).collect();
    if quote.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", quote.trim())
    }
}

/// Read an `application/json` body (one message or a batch) and deliver it.
/// `seen` looks at each message first.
/// A body past 1 MiB must arrive whole within `deadline`, or it is
/// dropped (see `framing::LineReader::deadline`).
pub async fn deliver_json(
    upstream: &Weak<Upstream>,
    events: &mpsc::Sender<UpstreamEvent>,
    mut response: reqwest::Response,
    deadline: Duration,
    seen: impl Fn(&[u8]),
) -> Result<(), String> {
    // In pieces joined once, not a buffer regrown by doubling (`framing`).
    let mut body = crate::framing::Pieces::default();
    loop {
        let read = response.chunk();
        let next = crate::budget::before_deadline(body.big_since(), deadline, read)
            .await
            .ok_or_else(|| dropped_answer(crate::budget::too_slow(deadline)))?;
        let Some(chunk) = next.map_err(describe)? else {
            break;
        };
        if body.len() + chunk.len() > MAX_UPSTREAM_MESSAGE_BYTES {
            return Err(format!(
                "response over {MAX_UPSTREAM_MESSAGE_BYTES} bytes dropped"
            ));
        }
        body.push(&chunk).map_err(dropped_answer)?;
    }
    // Kept, with its lease, until the message parsed from it is delivered.
    let body = body.into_line();
    seen(&body);
    let up = live(upstream)?;
    deliver_message(&up, events, body).await;
    Ok(())
}

/// Deliver every `message` event of an event stream until it ends.
/// `seen` looks at each message first.
pub async fn deliver_events(
    upstream: &Weak<Upstream>,
    events: &mpsc::Sender<UpstreamEvent>,
    reader: &mut EventReader,
    seen: impl Fn(&[u8]),
) -> Result<(), String> {
    while let Some(item) = reader.next().await.map_err(describe)? {
        let up = live(upstream)?;
        match item {
            // A priming event (SEP-1699): an id for resumption, no message.
            Item::Event(e) if e.data.trim().is_empty() => {}
            Item::Event(e) if e.event == "message" => {
                seen(e.data.as_bytes());
                deliver_message(&up, events, e.data).await
            }
            Item::Event(e) => {
                tracing::debug!(server = %up.name(), event = %e.event, "ignored event")
            }
            Item::Dropped { why, prefix } => {
                let reason = dropped_answer(why);
                tracing::warn!(server = %up.name(), "{reason}");
                up.fail_by_prefix(&prefix, &reason);
            }
        }
    }
    Ok(())
}

/// The upstream, unless the proxy has let go of it.
fn live(upstream: &Weak<Upstream>) -> Result<std::sync::Arc<Upstream>, String> {
    upstream
        .upgrade()
        .ok_or_else(|| "the connection was closed".to_string())
}

/// Deliver one message, or each message of a JSON-RPC batch.
async fn deliver_message<M: AsRef<[u8]>>(
    upstream: &Upstream,
    events: &mpsc::Sender<UpstreamEvent>,
    body: M,
) {
    let bytes = body.as_ref();
    if bytes.trim_ascii_start().starts_with(b"[")
        && let Ok(Value::Array(batch)) = serde_json::from_slice(bytes)
    {
        drop(body);
        for message in batch {
            upstream.deliver_value(events, message).await;
        }
        return;
    }
    upstream.deliver(events, body).await;
}

/// A reqwest error with its cause chain (reqwest's own text is often just
/// "error sending request").
pub fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
