//! The accept loop in front of the client listener and the approval
//! endpoint: what axum's `serve` does, plus what a listener open to
//! untrusted connections needs (issue 11, item 6).
//!
//! - `TCP_NODELAY` on every accepted socket (Nagle's algorithm meeting a
//!   client's delayed ACKs held each small response for up to 40 ms).
//! - A header-read deadline: a connection must send its first request's
//!   headers within `header_read_timeout`, and on a keep-alive connection
//!   the next request's headers within the same time after the last
//!   response (hyper's HTTP/1 timer). A peer that sends nothing at all is
//!   cut at the same deadline before protocol detection, where hyper-util
//!   has no timer of its own.
//! - A cap on open connections below the open-file limit: beyond it a new
//!   connection is answered `503` and closed at once, so idle connections
//!   can never use up the descriptors legitimate clients need.
//! - A connection that wakes itself is polled again at once rather than
//!   handed back to the runtime ([`Repoll`]).
//! - Graceful shutdown that waits at most a bounded time for open
//!   connections (an SSE stream may stay open for ever).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::own_wakes::Repoll;

/// Default deadline for a request's headers (and for the idle time between
/// requests on a keep-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors kept back from connections for everything else the
/// process opens (upstream pipes, the audit log, SQLite, sockets to
/// upstreams), per allowed session, plus a fixed base.
const FDS_PER_SESSION: u64 = 12;
const FDS_BASE: u64 = 128;
/// The fewest connections a listener accepts, whatever the limit says.
const MIN_CONNECTIONS: usize = 16;
/// Pause after an accept error that is about the process (no descriptors
/// left), not the connection, before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 59\r\n\
\r\n\
mcp-firewall: too many open connections; try again shortly\n";

/// How a listener treats the connections it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// The listener's name in `mcp_firewall_http_connections`.
    pub listener: &'static str,
}

impl Limits {
    /// The configured values, or defaults derived from the open-file limit
    /// (read after `main` raised the soft limit to the hard one).
    pub fn new(
        header_read_timeout: Option<Duration>,
        max_connections: Option<usize>,
        max_sessions: usize,
    ) -> Limits {
        Limits {
            header_read_timeout: header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: max_connections
                .unwrap_or_else(|| connections_within(open_file_limit(), max_sessions)),
            listener: "mcp",
        }
    }

    /// A listener beside the MCP one (approvals, metrics), named `listener`
    /// in the metrics: the default header-read deadline, at most
    /// `max_connections` connections.
    pub fn beside(listener: &'static str, max_connections: usize) -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections,
            listener,
        }
    }
}

/// Connections that fit under an open-file limit of `fds` with room kept
/// for `max_sessions` sessions' own descriptors.
pub fn connections_within(fds: u64, max_sessions: usize) -> usize {
    let reserve = FDS_BASE + FDS_PER_SESSION * max_sessions as u64;
    let spare = usize::try_from(fds.saturating_sub(reserve)).unwrap_or(usize::MAX);
    spare.max(MIN_CONNECTIONS)
}

/// This process's `RLIMIT_NOFILE`, if it can be read.
fn nofile() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The soft `RLIMIT_NOFILE`; `u64::MAX` when unlimited or unreadable.
pub fn open_file_limit() -> u64 {
    match nofile() {
        Some(limit) if limit.rlim_cur != libc::RLIM_INFINITY => limit.rlim_cur,
        _ => u64::MAX,
    }
}

/// Raise the soft limit on open files to the hard limit. Each HTTP client
/// holds a socket and each session its upstreams' pipes; the usual soft
/// limit of 1,024 is reached by a few hundred idle connections, locking
/// legitimate clients out (issue 11). Called once at start, before any
/// listener computes its connection cap from the limit.
pub fn raise_open_file_limit() {
    let Some(mut limit) = nofile().filter(|l| l.rlim_cur < l.rlim_max) else {
        return;
    };
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit on our own process with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::debug!(before, "could not raise the open-file limit");
    }
}

/// Serve a listener beside the MCP one (approvals, metrics) in the
/// background until the process ends, within `limits`.
pub fn serve_beside(listener: TcpListener, router: Router, limits: Limits) {
    tokio::spawn(serve(
        listener,
        router,
        limits,
        std::future::pending(),
        Duration::ZERO,
    ));
}

/// Serve `router` on `listener` until `shutdown` resolves, then give open
/// connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set on an accepted connection: {e}");
        }
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let watcher = graceful.watcher();
                tokio::spawn(connection(stream, router.clone(), limits, slot, watcher));
            }
            Err(_) => refuse(stream, peer),
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {grace:?} after shutdown began; closing them");
    }
}

/// A connection counted in `mcp_firewall_http_connections` while it lives.
struct Open(Gauge);

impl Open {
    fn count(listener: &'static str) -> Open {
        let gauge = crate::metrics::metrics()
            .http_connections
            .get_or_create(&crate::metrics::Listener { listener })
            .clone();
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serve one accepted connection, holding its slot until it ends.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    watcher: Watcher,
) {
    let _open = Open::count(limits.listener);
    // Until its first byte a connection is in hyper-util's protocol
    // detection, which has no timer: bound that wait here.
    let mut byte = [0u8; 1];
    let first_byte = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut byte));
    if first_byte.await.is_err() {
        tracing::debug!("closing a connection that sent nothing");
        return;
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = Repoll::new(watcher.watch(conn.into_owned())).await {
        tracing::debug!("connection ended: {e}");
    }
}

/// Answer an over-capacity connection `503` and close it, there and then:
/// a few non-blocking system calls, no task, nothing to queue. Before the
/// close, whatever the client already sent (its request) is read and
/// dropped: closing a socket with unread bytes sends a reset, which can
/// destroy the answer before the client reads it.
fn refuse(stream: TcpStream, peer: SocketAddr) {
    use std::io::{Read, Write};
    tracing::warn!(%peer, "too many open connections; refusing one");
    crate::metrics::metrics().refused("connections");
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    // A fresh socket's send buffer takes the whole answer at once.
    let _ = stream.write_all(REFUSAL);
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Errors about one connection (the peer went away during accept), as
/// opposed to errors about the process such as running out of descriptors.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_sessions() {
        assert_eq!(connections_within(1024, 64), 1024 - 128 - 12 * 64);
        assert_eq!(connections_within(256, 64), MIN_CONNECTIONS);
        assert_eq!(connections_within(u64::MAX, 64), (u64::MAX - 896) as usize);
    }

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
    }
}
