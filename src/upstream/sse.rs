//! The legacy HTTP+SSE transport (MCP 2024-11-05): a `GET` opens an event
//! stream whose first `endpoint` event names the URL to `POST` messages to;
//! every server message (answers included) then arrives as a `message`
//! event on that stream.
//!
//! Invariants:
//! - messages queued before the endpoint is known wait for it (bounded by
//!   the outbound queue and [`ENDPOINT_TIMEOUT`]);
//! - the endpoint must have the stream's origin (scheme, host, port), as the
//!   official SDKs require: a server cannot make the firewall send its
//!   configured credentials elsewhere;
//! - the stream ending, for whatever reason, ends the upstream;
//! - a POST that fails fails its request with a transport error.

use std::sync::{Arc, Weak};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use tokio::sync::{Semaphore, mpsc};

use super::connection::{Outgoing, Upstream, UpstreamError, UpstreamEvent};
use super::event_stream::{EventReader, Item};
use super::http::{self, describe, media_type, status_error};
use super::streamable_http::MAX_CONCURRENT_POSTS;
use crate::config::HttpSpec;

/// How long the server may take to name its message endpoint after the
/// stream opened. It normally does so at once.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn start(
    name: &str,
    spec: &HttpSpec,
    deadline: Duration,
    events: mpsc::Sender<UpstreamEvent>,
) -> Result<Arc<Upstream>, UpstreamError> {
    let spawn_error = |message: String| UpstreamError::Spawn {
        server: name.to_string(),
        message,
    };
    let client = http::client(name).map_err(spawn_error)?;
    let url = Url::parse(&spec.url).map_err(|e| spawn_error(format!("{}: {e}", spec.url)))?;
    let (upstream, rx) = Upstream::new(name);
    let link = Link {
        client,
        headers: http::header_map(&spec.headers),
        upstream: Arc::downgrade(&upstream),
        events,
        deadline,
    };
    crate::scope::spawn(run(link, url, rx));
    Ok(upstream)
}

/// What the stream reader and the POST pump share.
#[derive(Clone)]
struct Link {
    client: reqwest::Client,
    headers: HeaderMap,
    upstream: Weak<Upstream>,
    events: mpsc::Sender<UpstreamEvent>,
    /// How long a big message may take to arrive ([`EventReader::new`]).
    deadline: Duration,
}

/// Read the stream until it ends, then finish the upstream.
async fn run(link: Link, url: Url, rx: mpsc::Receiver<Outgoing>) {
    let status = match read_stream(&link, url, rx).await {
        Ok(()) => "the server closed its event stream".to_string(),
        Err(message) => message,
    };
    if let Some(up) = link.upstream.upgrade() {
        up.finish(&link.events, status).await;
    }
}

async fn read_stream(link: &Link, url: Url, rx: mpsc::Receiver<Outgoing>) -> Result<(), String> {
    let response = link
        .client
        .get(url.clone())
        .headers(link.headers.clone())
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| format!("could not open the event stream: {}", describe(e)))?;
    if !response.status().is_success() {
        let refused = status_error(response).await;
        return Err(format!("the event stream was refused: {refused}"));
    }
    let kind = media_type(&response);
    if kind != "text/event-stream" {
        return Err(format!(
            "expected an event stream, got Content-Type {kind:?}"
        ));
    }
    let mut reader = EventReader::new(response, link.deadline);
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, endpoint(&mut reader, &url))
        .await
        .map_err(|_| format!("no endpoint event within {ENDPOINT_TIMEOUT:?}"))??;
    let pump = crate::scope::spawn(pump(link.clone(), endpoint, rx));
    let result = http::deliver_events(&link.upstream, &link.events, &mut reader, |_| {}).await;
    pump.abort();
    result.map_err(|e| format!("the event stream broke: {e}"))
}

/// Wait for the `endpoint` event and resolve it against the stream's URL.
async fn endpoint(reader: &mut EventReader, base: &Url) -> Result<Url, String> {
    loop {
        match reader.next().await.map_err(describe)? {
            Some(Item::Event(e)) if e.event == "endpoint" => {
                let url = base
                    .join(e.data.trim())
                    .map_err(|err| format!("bad endpoint {:?}: {err}", e.data))?;
                if url.origin() != base.origin() {
                    return Err(format!(
                        "endpoint {url} is not on the stream's origin {}",
                        base.origin().ascii_serialization()
                    ));
                }
                return Ok(url);
            }
            Some(other) => tracing::debug!("event before the endpoint ignored: {other:?}"),
            None => return Err("the event stream ended before naming an endpoint".into()),
        }
    }
}

/// POST each queued message to the endpoint; answers come on the stream.
async fn pump(link: Link, endpoint: Url, mut rx: mpsc::Receiver<Outgoing>) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_POSTS));
    while let Some(message) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (link, endpoint) = (link.clone(), endpoint.clone());
        crate::scope::spawn(async move {
            let request_id = message.request_id;
            if let Err(error) = post(&link, endpoint, message).await
                && let Some(up) = link.upstream.upgrade()
            {
                match request_id {
                    Some(id) => up.fail(id, error),
                    None => tracing::warn!(server = %up.name(), "message not delivered: {error}"),
                }
            }
            drop(permit);
        });
    }
}

async fn post(link: &Link, endpoint: Url, message: Outgoing) -> Result<(), String> {
    let response = link
        .client
        .post(endpoint)
        .headers(link.headers.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(message.body)
        .send()
        .await
        .map_err(describe)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(status_error(response).await)
    }
}
