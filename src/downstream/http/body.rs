//! A client's request body, read within bounds (issue 11, item 6).
//!
//! hyper bounds how long a connection may take to send its headers, not
//! its body, and axum's `Bytes` extractor bounds only its size. So a
//! client could open as many connections as the connection cap allows
//! (thousands) and trickle a body of up to 4 MiB on each for as long as it
//! liked: gigabytes held, none of it counted anywhere. Here every body:
//!
//! - must arrive whole within the listener's header-read timeout
//!   (`[http] header_read_timeout_seconds`, default 30 s) after its
//!   headers, or it is dropped: `408`, and the connection is closed;
//! - counts in the process's memory budget for messages being read
//!   (`[session] message_memory_bytes`) from its first byte, not only past
//!   1 MiB as a stdio line does, because there is one stdio client and may
//!   be thousands of HTTP connections. A body the budget cannot cover is
//!   dropped: `503` with `Retry-After`, answered under the request's id when
//!   its first bytes name one;
//! - is charged to its principal's share of that budget, so one principal
//!   cannot spend it all and have every other principal's bodies refused;
//! - is held in pieces joined once ([`Pieces`]), and keeps its share of the
//!   budget until the message is parsed from it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::{App, MAX_REQUEST_BODY_BYTES, plain};
use crate::budget::{Budget, Holder};
use crate::framing::{KEPT_PREFIX_BYTES, Line, Pieces};
use crate::jsonrpc;
use crate::proxy::session::Principal;

/// A request body read whole: its bytes, holding their share of the budget
/// until dropped.
pub struct ClientBody(pub Line);

impl FromRequest<Arc<App>> for ClientBody {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<ClientBody, Response> {
        let budget = crate::budget::big_messages();
        // Authentication ran first: every request here has its principal.
        let holder = req
            .extensions()
            .get::<Principal>()
            .map(|p| budget.holder(&p.id));
        read(
            req.into_body(),
            MAX_REQUEST_BODY_BYTES,
            app.body_deadline,
            budget,
            holder,
        )
        .await
        .map(ClientBody)
    }
}

/// What [`in_time`] reads is not counted: its listener's connection cap
/// and body cap bound it already (256 x 64 KiB for the approval
/// endpoint), and counting it in the shared budget would let a hostile
/// upstream that fills the budget shut out approvers' answers.
static UNCOUNTED: Budget = Budget::new(usize::MAX);

/// Middleware for a listener whose handlers take the body as axum
/// extracts it (the approval endpoint): the body is read here first, at
/// most `max` bytes within `deadline` of the headers, so a client that
/// trickles one cannot keep a connection slot for ever.
pub(crate) async fn in_time(
    max: usize,
    deadline: Duration,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    match read(body, max, deadline, &UNCOUNTED, None).await {
        Ok(line) => {
            let body = axum::body::Body::from(line.into_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refused) => refused,
    }
}

/// Read `body` whole: at most `max` bytes, within `deadline` and `budget`
/// (and `holder`'s share of it), or the answer that refuses it.
async fn read(
    body: axum::body::Body,
    max: usize,
    deadline: Duration,
    budget: &'static Budget,
    holder: Option<Arc<Holder>>,
) -> Result<Line, Response> {
    let until = tokio::time::Instant::now() + deadline;
    let mut chunks = body.into_data_stream();
    let mut body = Pieces::counting_every_byte(budget, holder);
    loop {
        let chunk = match tokio::time::timeout_at(until, chunks.next()).await {
            Err(_) => return Err(too_slow(deadline)),
            Ok(None) => return Ok(body.into_line()),
            Ok(Some(Err(e))) => {
                tracing::debug!("a request body could not be read: {e}");
                crate::metrics::metrics().refused("body_unreadable");
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if body.len() + chunk.len() > max {
            crate::metrics::metrics().refused("body_too_large");
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {max} bytes refused"),
            ));
        }
        if let Err(over) = body.push(&chunk) {
            tracing::warn!("refused an HTTP request body: {over}");
            crate::metrics::metrics().refused("body_over_budget");
            // The refused chunk may be the first: the id is in what came.
            let mut prefix = body.prefix(KEPT_PREFIX_BYTES);
            let more = KEPT_PREFIX_BYTES
                .saturating_sub(prefix.len())
                .min(chunk.len());
            prefix.extend_from_slice(&chunk[..more]);
            return Err(over_budget(&prefix, &over.to_string()));
        }
    }
}

fn too_slow(deadline: Duration) -> Response {
    tracing::warn!("dropped an HTTP request body that did not arrive within {deadline:?}");
    crate::metrics::metrics().refused("body_too_slow");
    let text = format!(
        "the request body did not arrive whole within {}s of its headers",
        deadline.as_secs()
    );
    let mut response = plain(StatusCode::REQUEST_TIMEOUT, &text);
    // The rest of the body may still come: the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `503`, with the JSON-RPC error under the request's id when `prefix`
/// names one (as stdio answers a line it refused unread).
fn over_budget(prefix: &[u8], reason: &str) -> Response {
    let body = jsonrpc::unread_refusal(prefix, &format!("message refused: {reason}"));
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};

    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_holds_its_share_until_dropped() {
        let b = budget(1 << 20);
        let chunks = ["{\"jsonrpc\":", "\"2.0\"}"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let line = read(
            body,
            MAX_REQUEST_BODY_BYTES,
            Duration::from_secs(5),
            b,
            None,
        )
        .await
        .unwrap();
        assert_eq!(&line[..], b"{\"jsonrpc\":\"2.0\"}");
        assert_eq!(b.held(), 2 * line.len(), "every byte counts, twice");
        drop(line);
        assert_eq!(b.held(), 0);
    }

    #[tokio::test]
    async fn a_body_the_budget_cannot_cover_is_refused_under_its_id() {
        let b = budget(100);
        let text_of = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
            "x".repeat(100)
        );
        let refused = read(
            Body::from(text_of),
            MAX_REQUEST_BODY_BYTES,
            Duration::from_secs(5),
            b,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let answer: serde_json::Value = serde_json::from_str(&text(refused).await).unwrap();
        assert_eq!(answer["id"], 7, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("message_memory_bytes")
        );
        assert_eq!(b.held(), 0, "nothing is kept of a refused body");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_dropped_at_the_deadline() {
        let b = budget(1 << 20);
        let head = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("{\"jsonrpc\""))]);
        let body = Body::from_stream(head.chain(futures::stream::pending()));
        let refused = read(
            body,
            MAX_REQUEST_BODY_BYTES,
            Duration::from_millis(200),
            b,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
        assert!(text(refused).await.contains("arrive whole within"));
        assert_eq!(b.held(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_as_too_large() {
        let b = budget(usize::MAX);
        let body = Body::from(vec![b' '; MAX_REQUEST_BODY_BYTES + 1]);
        let refused = read(
            body,
            MAX_REQUEST_BODY_BYTES,
            Duration::from_secs(5),
            b,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_is_charged_to_its_principals_share() {
        let b = budget(1 << 20);
        b.set_share(100);
        let alice = b.holder("alice");
        let small = read(
            Body::from("{\"jsonrpc\":\"2.0\"}"),
            MAX_REQUEST_BODY_BYTES,
            Duration::from_secs(5),
            b,
            Some(alice.clone()),
        )
        .await
        .unwrap();
        assert_eq!(alice.held(), 2 * small.len());
        let refused = read(
            Body::from(format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":\"{}\"}}",
                "x".repeat(40)
            )),
            MAX_REQUEST_BODY_BYTES,
            Duration::from_secs(5),
            b,
            Some(alice.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let answer: serde_json::Value = serde_json::from_str(&text(refused).await).unwrap();
        assert_eq!(answer["id"], 3, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("alice already holds"),
            "{answer}"
        );
        drop(small);
        assert_eq!((alice.held(), b.held()), (0, 0));
    }
}
