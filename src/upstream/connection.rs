//! One upstream MCP server running as a child process, spoken to over its
//! stdin/stdout with newline-delimited JSON-RPC.
//!
//! Invariants:
//! - every request the firewall sends carries an id the firewall chose
//!   (a counter), so ids never collide between the client's requests, the
//!   firewall's own requests (catalogue refreshes) and several upstreams;
//! - when the process exits, every pending request fails with
//!   [`UpstreamError::Exited`] and later requests fail at once: a caller never
//!   waits on a dead server;
//! - messages the server sends that are not responses (notifications and its
//!   own requests: sampling, elicitation, roots, ping) are handed to the proxy
//!   as [`UpstreamEvent`]s, in order.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::config::UpstreamSpec;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{self, Message};

/// Largest message accepted from an upstream. Tool results can carry files
/// and images, so this is generous; a server that exceeds it has its message
/// dropped (and the request it answered fails) rather than exhausting memory.
pub const MAX_UPSTREAM_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued for an upstream's stdin before senders wait. Bounded so a
/// server that stops reading slows its callers instead of growing memory.
const OUTBOUND_QUEUE: usize = 256;

/// Something an upstream said that is not a response to our request.
#[derive(Debug)]
pub enum UpstreamEvent {
    Notification {
        server: String,
        method: String,
        params: Value,
    },
    Request {
        server: String,
        id: Value,
        method: String,
        params: Value,
    },
    Exited {
        server: String,
        status: String,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream '{server}' could not be started: {message}")]
    Spawn { server: String, message: String },
    #[error("upstream '{server}' is not running ({status})")]
    Exited { server: String, status: String },
}

/// The answer to a request: the `result` value or the `error` object.
pub type Reply = Result<Value, Value>;

/// A live connection to one upstream server.
pub struct Upstream {
    name: String,
    outbound: mpsc::Sender<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    exit_status: Mutex<String>,
}

/// A request sent upstream whose answer has not arrived yet.
pub struct PendingReply {
    /// The id the upstream saw, for `notifications/cancelled`.
    pub upstream_id: u64,
    rx: oneshot::Receiver<Reply>,
    server: String,
}

impl PendingReply {
    /// Wait for the answer. Fails if the upstream exits first.
    pub async fn wait(self) -> Result<Reply, UpstreamError> {
        let server = self.server;
        self.rx.await.map_err(|_| UpstreamError::Exited {
            server,
            status: "exited".into(),
        })
    }
}

impl Upstream {
    /// Start the server process and the tasks that pump its pipes.
    pub fn spawn(
        spec: &UpstreamSpec,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<std::sync::Arc<Upstream>, UpstreamError> {
        let mut child = command(spec).spawn().map_err(|e| UpstreamError::Spawn {
            server: spec.name.clone(),
            message: format!("{}: {e}", spec.command),
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let upstream = std::sync::Arc::new(Upstream {
            name: spec.name.clone(),
            outbound,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            exit_status: Mutex::new(String::new()),
        });
        tokio::spawn(write_loop(stdin, rx));
        tokio::spawn(read_loop(upstream.clone(), stdout, child, events));
        Ok(upstream)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Send a request; the returned [`PendingReply`] resolves with the answer.
    pub async fn start_request(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<PendingReply, UpstreamError> {
        self.check_alive()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let line = jsonrpc::request(&Value::from(id), method, params).to_string();
        if self.outbound.send(line).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(self.exited());
        }
        Ok(PendingReply {
            upstream_id: id,
            rx,
            server: self.name.clone(),
        })
    }

    /// Send a request and wait for its answer.
    pub async fn request(&self, method: &str, params: &Value) -> Result<Reply, UpstreamError> {
        self.start_request(method, params).await?.wait().await
    }

    /// Send a notification (fire and forget; dropped if the server is gone).
    pub async fn notify(&self, method: &str, params: &Value) {
        if self.is_alive() {
            let _ = self
                .outbound
                .send(jsonrpc::notification(method, params).to_string())
                .await;
        }
    }

    /// Answer a request the server sent us (sampling, elicitation, roots, ping).
    pub async fn respond(&self, id: &Value, body: Reply) {
        if self.is_alive() {
            let _ = self
                .outbound
                .send(jsonrpc::response_message(id, body).to_string())
                .await;
        }
    }

    /// Stop waiting for a request's answer (after a cancellation); a late
    /// answer is then dropped with a warning.
    pub fn forget(&self, id: u64) {
        self.pending.lock().expect("pending lock").remove(&id);
    }

    /// The error a request to this upstream would get now, if any.
    pub fn start_request_error(&self) -> Option<UpstreamError> {
        self.check_alive().err()
    }

    fn check_alive(&self) -> Result<(), UpstreamError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(self.exited())
        }
    }

    fn exited(&self) -> UpstreamError {
        let status = self.exit_status.lock().expect("status lock").clone();
        UpstreamError::Exited {
            server: self.name.clone(),
            status,
        }
    }

    fn complete(&self, id: &Value, reply: Reply) {
        let Some(id) = id.as_u64() else {
            tracing::warn!(server = %self.name, %id, "response with an id we never sent");
            return;
        };
        match self.pending.lock().expect("pending lock").remove(&id) {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => {
                tracing::warn!(server = %self.name, id, "response to an unknown or finished request")
            }
        }
    }

    fn mark_exited(&self, status: String) {
        *self.exit_status.lock().expect("status lock") = status;
        self.alive.store(false, Ordering::Release);
        // Dropping the senders fails every waiter with `Exited`.
        self.pending.lock().expect("pending lock").clear();
    }
}

fn command(spec: &UpstreamSpec) -> Command {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The server's own logs go where ours go (stderr), never to the client.
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

async fn write_loop(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn read_loop(
    upstream: std::sync::Arc<Upstream>,
    stdout: tokio::process::ChildStdout,
    mut child: Child,
    events: mpsc::Sender<UpstreamEvent>,
) {
    let mut lines = LineReader::new(stdout, MAX_UPSTREAM_MESSAGE_BYTES);
    loop {
        let line = match lines.next().await {
            Ok(Some(Frame::Line(line))) => line,
            Ok(Some(Frame::TooLong)) => {
                tracing::warn!(server = %upstream.name, "dropped a message over {MAX_UPSTREAM_MESSAGE_BYTES} bytes");
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(server = %upstream.name, "reading from upstream failed: {e}");
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(event) = route_line(&upstream, &line) {
            let _ = events.send(event).await;
        }
    }
    let status = match child.wait().await {
        Ok(status) => status.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    tracing::warn!(server = %upstream.name, %status, "upstream server exited");
    upstream.mark_exited(status.clone());
    let _ = events
        .send(UpstreamEvent::Exited {
            server: upstream.name.clone(),
            status,
        })
        .await;
}

/// Complete a pending request, or turn the line into an event for the proxy.
fn route_line(upstream: &Upstream, line: &[u8]) -> Option<UpstreamEvent> {
    let server = upstream.name.clone();
    match jsonrpc::parse_bytes(line) {
        Ok(Message::Response { id, body }) => {
            upstream.complete(&id, body);
            None
        }
        Ok(Message::Notification { method, params }) => Some(UpstreamEvent::Notification {
            server,
            method,
            params,
        }),
        Ok(Message::Request { id, method, params }) => Some(UpstreamEvent::Request {
            server,
            id,
            method,
            params,
        }),
        Err(e) => {
            tracing::warn!(server = %upstream.name, "upstream sent an invalid message: {e}");
            None
        }
    }
}
