//! The client-facing HTTP listener: Streamable HTTP (`/mcp`), the legacy
//! HTTP+SSE transport (`/sse` + `/messages`), and `/healthz`, `/readyz`.
//!
//! Hand-written on axum: rmcp has no SSE server transport, and the firewall
//! relays messages as JSON values rather than rmcp's typed models (see
//! `jsonrpc`), so this is only HTTP plumbing around [`Proxy::handle_message`].
//!
//! Every MCP request passes, in order: the `Origin` check (403), bearer
//! authentication (401 + `WWW-Authenticate`), the body's cap (413),
//! deadline (408) and share of the memory budget (503), then the
//! session rules: unknown session or another principal's session (404),
//! too many sessions (503), too many requests in flight (429).
//!
//! | module | job |
//! |---|---|
//! | [`body`] | a request's body: within the header-read deadline and the memory budget (408, 503) |
//! | [`front_door`] | accepting connections: `TCP_NODELAY`, header-read deadline, connection cap (503), bounded shutdown |
//! | [`auth`] | bearer tokens -> principal (constant-time digest compare) |
//! | [`origin`] | which `Origin` headers are accepted |
//! | [`session`] | one session = one `Proxy` on its own runtime; routing its messages |
//! | [`streamable`] | `POST`/`GET`/`DELETE /mcp` |
//! | [`stateless`] | MCP 2026-07-28 stateless requests on `POST /mcp`, bridged to 2025-era upstreams |
//! | [`legacy_sse`] | `GET /sse`, `POST /messages?sessionId=` |
//! | [`health`] | `/healthz`, `/readyz` |
//!
//! [`Proxy::handle_message`]: crate::proxy::Proxy::handle_message

pub mod auth;
pub(crate) mod body;
pub mod front_door;
pub mod health;
pub mod legacy_sse;
pub mod oauth;
pub mod origin;
mod own_wakes;
pub mod session;
pub mod stateless;
pub mod streamable;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::proxy::session::{Principal, Session};
use crate::proxy::{Shared, ToClient};
use auth::Authenticator;
use origin::{Hosts, Origins};
use session::{HttpSession, StartError, Transport};

/// Largest request body accepted (413 beyond). Smaller than stdio's
/// per-message cap: an HTTP listener may be reachable by more than one
/// client, and 4 MiB of arguments is already far more than a model writes.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How often idle and closed sessions are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const MIN_SWEEP_EVERY: Duration = Duration::from_millis(100);
/// The realm in `WWW-Authenticate`.
pub const REALM: &str = "mcp-firewall";

/// Why the listener will not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {0} without authentication: add [http] tokens to the config, or listen on a loopback address such as 127.0.0.1"
    )]
    Unauthenticated(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The state behind every handler.
pub struct App {
    shared: Arc<Shared>,
    auth: Authenticator,
    origins: Origins,
    hosts: Hosts,
    sessions: Registry,
    /// How long a request's body may take to arrive after its headers
    /// (the header-read timeout: see [`body`]).
    body_deadline: std::time::Duration,
}

/// The live sessions and the cap on their number.
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    /// Stateless (2026-07-28) bridges, by [`stateless::bridge_key`]. Not
    /// addressable by `Mcp-Session-Id`; each holds a session slot.
    bridges: Mutex<HashMap<String, Arc<stateless::Bridge>>>,
    /// Which bridge made each task a stateless client polls (2026-07-28
    /// tasks extension), so a poll reaches it whatever capabilities the
    /// poll itself declares.
    task_bridges: stateless::TaskBridges,
    slots: Arc<Semaphore>,
    /// Sessions plus bridges one principal may hold (`[http]
    /// max_sessions_per_principal`).
    per_principal: usize,
    /// A session with nothing in flight, no stream open and no request for
    /// this long is closed (`[http] session_idle_timeout_seconds`).
    idle_timeout: Duration,
    /// Woken by a session that closes itself (a client that stopped
    /// reading, the legacy stream ending), so the sweeper lets go of it at
    /// once: its proxy goes, and with it the `session.ended` record.
    closed: Arc<tokio::sync::Notify>,
}

impl Registry {
    fn new(max: usize, per_principal: usize, idle_timeout: Duration) -> Registry {
        Registry {
            sessions: Mutex::new(HashMap::new()),
            bridges: Mutex::new(HashMap::new()),
            task_bridges: stateless::TaskBridges::default(),
            slots: Arc::new(Semaphore::new(max)),
            per_principal,
            idle_timeout,
            closed: Arc::default(),
        }
    }

    /// How often to look for idle sessions: often enough that one is
    /// closed within about half its timeout beyond it.
    fn sweep_every(&self) -> Duration {
        SWEEP_EVERY.min(self.idle_timeout / 2).max(MIN_SWEEP_EVERY)
    }

    /// Live sessions and stateless bridges held by `principal`; `bridges`
    /// is the bridge map, which a caller creating a bridge already holds
    /// locked (lock order: bridges, then sessions).
    fn held_by(&self, principal: &str, bridges: &HashMap<String, Arc<stateless::Bridge>>) -> usize {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .values()
            .filter(|s| s.principal == principal && !s.is_closed())
            .count()
            + bridges
                .values()
                .filter(|b| b.session.principal == principal && !b.session.is_closed())
                .count()
    }

    /// The live session with this id, if `principal` opened it. Another
    /// principal's session is reported as absent (404), not as forbidden,
    /// so ids cannot be probed.
    pub fn get(&self, id: &str, principal: &Principal) -> Option<Arc<HttpSession>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.get(id)?.clone();
        if session.is_closed() {
            sessions.remove(id);
            return None;
        }
        (session.principal == principal.id).then_some(session)
    }

    pub fn remove(&self, id: &str) -> Option<Arc<HttpSession>> {
        self.sessions.lock().expect("sessions lock").remove(id)
    }

    fn sweep(&self) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        for s in sessions.values() {
            if s.transport == Transport::Streamable && s.idle_for(self.idle_timeout) {
                s.close("idle timeout");
            }
        }
        sessions.retain(|_, s| !s.is_closed());
        drop(sessions);
        let mut bridges = self.bridges.lock().expect("bridges lock");
        for b in bridges.values() {
            if b.session.idle_for(self.idle_timeout) {
                b.session.close("idle timeout (stateless bridge)");
            }
        }
        bridges.retain(|_, b| !b.session.is_closed());
    }

    /// Close every session; returns them, so the caller can wait until
    /// their upstreams are stopped. They stay registered (closed) until the
    /// next sweep, so a second call finds them again.
    fn close_all(&self) -> Vec<Arc<HttpSession>> {
        let mut closed: Vec<_> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect();
        let bridges = self.bridges.lock().expect("bridges lock");
        closed.extend(bridges.values().map(|b| b.session.clone()));
        drop(bridges);
        for s in &closed {
            s.close("the firewall is shutting down");
        }
        closed
    }
}

impl App {
    /// Start a new session for `principal` (503 when full).
    fn open_session(
        &self,
        principal: Principal,
        transport: Transport,
    ) -> Result<Arc<HttpSession>, Refused> {
        // Count, start and register under the bridges lock, as a new bridge
        // is: two concurrent starts by one principal cannot both pass the
        // count before either is registered (lock order: bridges, sessions).
        let bridges = self.sessions.bridges.lock().expect("bridges lock");
        let held = self.sessions.held_by(&principal.id, &bridges);
        let session = self.start_session(principal, transport, held)?;
        self.sessions
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(session.id.clone(), session.clone());
        drop(bridges);
        Ok(session)
    }

    /// Start a session (503 when full, or when `principal` already holds
    /// `held` sessions and bridges, its share) without registering it for
    /// `Mcp-Session-Id` lookups.
    fn start_session(
        &self,
        principal: Principal,
        transport: Transport,
        held: usize,
    ) -> Result<Arc<HttpSession>, Refused> {
        let limit = self.sessions.per_principal;
        if held >= limit {
            tracing::warn!(principal = %principal.id, limit, "refused a new HTTP session: the principal holds its share of the slots");
            crate::metrics::metrics().refused("principal_sessions");
            return Err(Refused::error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "too many sessions for principal {} (limit {limit})",
                    principal.id
                ),
            ));
        }
        let slot = self
            .sessions
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                tracing::warn!("refused a new HTTP session: all session slots are in use");
                crate::metrics::metrics().refused("sessions");
                Refused::error(StatusCode::SERVICE_UNAVAILABLE, "too many sessions")
            })?;
        let session = Session::new(transport.label(), principal);
        let closed = self.sessions.closed.clone();
        let started = HttpSession::start(self.shared.clone(), session, transport, slot, closed);
        let session = started.map_err(|e: StartError| {
            tracing::error!("could not start an HTTP session: {e}");
            let body = crate::jsonrpc::error_response(
                &Value::Null,
                crate::jsonrpc::code::UPSTREAM_UNAVAILABLE,
                &e.to_string(),
                None,
            );
            Refused::new(StatusCode::INTERNAL_SERVER_ERROR, body)
        })?;
        Ok(session)
    }
}

/// A bound listener, not yet serving.
pub struct Listener {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    limits: front_door::Limits,
}

impl Listener {
    /// Check the exposure rules and bind. With no tokens the listener must
    /// be loopback, and every request is `fallback`.
    pub async fn bind(
        addr: SocketAddr,
        shared: Arc<Shared>,
        auth: Authenticator,
    ) -> Result<Listener, ListenError> {
        if !auth.requires_credentials() && !addr.ip().is_loopback() {
            return Err(ListenError::Unauthenticated(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        if let (Some(oauth), Ok(bound)) = (auth.oauth(), listener.local_addr()) {
            oauth.bound(&format!("http://{bound}"));
        }
        if let Authenticator::Unauthenticated(p) = &auth {
            tracing::warn!(
                principal = %p.id,
                "HTTP listener without [http] tokens: every request is {} (loopback only)", p.id
            );
        }
        let http = &shared.config.http;
        let limits = front_door::Limits::new(
            http.header_read_timeout,
            http.max_connections,
            http.max_sessions(),
        );
        tracing::debug!(?limits, "HTTP listener limits");
        let app = Arc::new(App {
            origins: Origins::from_config(http.allowed_origins.as_ref()),
            hosts: Hosts::new(http.allowed_hosts.as_ref(), addr.ip().is_loopback()),
            sessions: Registry::new(
                http.max_sessions(),
                http.max_sessions_per_principal(),
                http.session_idle_timeout(),
            ),
            body_deadline: limits.header_read_timeout,
            shared,
            auth,
        });
        Ok(Listener {
            listener,
            app,
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` resolves, then close every session (and so
    /// stop every upstream process).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.app.clone();
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&app)));
        let stop_sweeping = sweeper.abort_handle();
        let reaper = tokio::spawn(reap_children());
        // On the signal: close every session first (stopping its upstreams
        // and ending its event streams), then let open connections finish,
        // for at most SHUTDOWN_GRACE. Graceful shutdown alone would wait
        // for every open SSE stream, which a client may hold for ever.
        let closer = app.clone();
        let signal = async move {
            shutdown.await;
            // Closed sessions stay registered from now on: they are waited
            // for below, once the connections are done.
            stop_sweeping.abort();
            closer.sessions.close_all();
        };
        front_door::serve(
            self.listener,
            router(app.clone()),
            self.limits,
            signal,
            SHUTDOWN_GRACE,
        )
        .await;
        sweeper.abort();
        let closed = app.sessions.close_all();
        futures::future::join_all(closed.iter().map(|s| s.finished())).await;
        reaper.abort();
        Ok(())
    }
}

/// How long open connections may take to finish after shutdown began
/// (every session is closed by then); then the process stops regardless.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Wake the runtime on every SIGCHLD. A closing session reaps its own
/// upstreams; a child dropped without that (a start that failed half-way,
/// a panicking task) is reaped by tokio when its process driver wakes after
/// a SIGCHLD, and without this an idle server would keep it as a zombie
/// until some other wake-up.
async fn reap_children() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        tracing::warn!("cannot watch SIGCHLD; ended sessions' upstreams are reaped later");
        return;
    };
    while sigchld.recv().await.is_some() {}
}

async fn sweep(app: std::sync::Weak<App>) {
    let Some((period, closed)) = app
        .upgrade()
        .map(|a| (a.sessions.sweep_every(), a.sessions.closed.clone()))
    else {
        return;
    };
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = closed.notified() => {}
        }
        match app.upgrade() {
            Some(app) => app.sessions.sweep(),
            None => return,
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let mcp = Router::new()
        .merge(streamable::routes())
        .merge(legacy_sse::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES));
    Router::new()
        .merge(health::routes())
        .route(oauth::METADATA_PATH, axum::routing::get(protected_resource))
        .route(
            &format!("{}/mcp", oauth::METADATA_PATH),
            axum::routing::get(protected_resource),
        )
        .merge(mcp)
        .with_state(app)
}

/// RFC 9728 protected-resource metadata; 404 without `[[http.oauth]]`.
async fn protected_resource(State(app): State<Arc<App>>) -> Response {
    match app.auth.oauth() {
        Some(oauth) => axum::Json(oauth.metadata()).into_response(),
        None => plain(StatusCode::NOT_FOUND, "no authorization servers configured"),
    }
}

/// Host check (DNS rebinding), Origin check, then authentication; the principal goes on to the handler
/// as a request extension.
async fn guard(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    // HTTP/2 carries the host in the URI's authority, not a `Host` header.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !app.hosts.allows(host) {
        tracing::warn!(
            host = host.unwrap_or("(none)"),
            "refused a request for a host name this listener does not serve"
        );
        crate::metrics::metrics().refused("host");
        return plain(StatusCode::FORBIDDEN, "host not allowed");
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !app.origins.allows(origin) {
            tracing::warn!(%origin, "refused a request from a disallowed Origin");
            crate::metrics::metrics().refused("origin");
            return plain(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    match app.auth.authenticate(request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            tracing::warn!("refused an HTTP request: {e}");
            // Where an OAuth client learns which authorization server to ask.
            let metadata = app
                .auth
                .oauth()
                .map(|o| format!(", resource_metadata=\"{}\"", o.metadata_url()))
                .unwrap_or_default();
            let quoted = |s: &str| s.replace(['"', '\\'], "'");
            let (status, challenge) = match &e {
                auth::AuthError::Missing => (
                    StatusCode::UNAUTHORIZED,
                    format!("Bearer realm=\"{REALM}\"{metadata}"),
                ),
                auth::AuthError::Invalid => (
                    StatusCode::UNAUTHORIZED,
                    format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"{metadata}"),
                ),
                auth::AuthError::Token(oauth::TokenError::Invalid(why)) => (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"{metadata}",
                        quoted(why)
                    ),
                ),
                auth::AuthError::Token(oauth::TokenError::InsufficientScope(scopes)) => (
                    StatusCode::FORBIDDEN,
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"{metadata}",
                        quoted(&scopes.join(" "))
                    ),
                ),
            };
            crate::metrics::metrics().refused(if status == StatusCode::FORBIDDEN {
                "forbidden"
            } else {
                "unauthenticated"
            });
            let mut response = plain(status, &e.to_string());
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

/// A short JSON error body with this status.
pub(crate) fn plain(status: StatusCode, error: &str) -> Response {
    Refused::new(status, json!({"error": error})).into_response()
}

/// An HTTP-level refusal: a status and a JSON body (small, unlike a built
/// `Response`, so it can sit in a `Result`).
pub(crate) struct Refused {
    status: StatusCode,
    body: Box<Value>,
}

impl Refused {
    pub(crate) fn new(status: StatusCode, body: Value) -> Refused {
        Refused {
            status,
            body: Box::new(body),
        }
    }

    pub(crate) fn error(status: StatusCode, error: &str) -> Refused {
        Refused::new(status, json!({"error": error}))
    }
}

/// A JSON answer, written in the pieces it was serialized into
/// ([`ToClient::to_chunks`]), with its length.
pub(crate) fn json_response(status: StatusCode, message: &ToClient) -> Response {
    let chunks = message.to_chunks();
    let len = chunks.len();
    let pieces = chunks.into_pieces();
    let body = match pieces.len() {
        1 => axum::body::Body::from(pieces.into_iter().next().unwrap_or_default()),
        _ => axum::body::Body::from_stream(futures::stream::iter(
            pieces
                .into_iter()
                .map(|p| Ok::<_, Infallible>(axum::body::Bytes::from(p))),
        )),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, axum::Json(*self.body)).into_response()
    }
}

/// An SSE response carrying `first` (if any) and then every message from
/// `rx` as a `message` event, until the channel closes.
pub(crate) fn sse_response(
    first: Option<Event>,
    rx: mpsc::Receiver<ToClient>,
    guard: Option<Box<dyn Send + Sync>>,
) -> Response {
    Sse::new(events(first, rx, guard))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn events(
    first: Option<Event>,
    rx: mpsc::Receiver<ToClient>,
    guard: Option<Box<dyn Send + Sync>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let head = futures::stream::iter(first.map(Ok));
    let body = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        // Serialized straight into the event: no text copied in between.
        let event = Event::default()
            .event("message")
            .json_data(&message)
            .expect("a JSON-RPC message serializes");
        Some((Ok(event), (rx, guard)))
    });
    futures::StreamExt::chain(head, body)
}
