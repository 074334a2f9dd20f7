//! One upstream process for every session (`[[upstream]] shared = true`).
//!
//! By default each session starts its own upstream processes: nothing one
//! session does can reach another through the server, at the price of a
//! process per session (64 HTTP sessions in front of a Node server are 64
//! Node processes). A server that keeps no per-session state can instead be
//! shared: one process, started by the first session that needs it, kept
//! until it exits or the firewall stops.
//!
//! Each session still gets its own [`Upstream`] (its own id counter,
//! pending requests and event queue, so the proxy cannot tell the
//! difference); this module is that connection's transport. A multiplexer
//! ([`Mux`]) owns the process and carries every session's messages over it:
//!
//! - requests get an id unique on the process and their answers go back to
//!   the session that asked, with its own id;
//! - `initialize` reaches the server once; later sessions get the first
//!   handshake's result (`notifications/initialized` is sent once too);
//! - `notifications/progress` follows its token to the session whose
//!   request carried it; `notifications/cancelled` from a session names its
//!   own request, rewritten to the process's id;
//! - list-changed and `resources/updated` notifications go to every
//!   session; any other notification or server-to-client request (sampling,
//!   elicitation, roots) goes to the one session with a request in flight
//!   to the server, and when there is not exactly one it is not delivered:
//!   a notification is dropped, a request is refused back to the server. A
//!   shared server's output never reaches a session that cannot have caused
//!   it; `ping` is answered here;
//! - a session that closes has its requests still in flight cancelled
//!   upstream; the process goes on serving the others. If the process
//!   exits, every session's connection ends as a per-session server's would,
//!   and the next session to start starts a new process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::connection::{
    MAX_UPSTREAM_MESSAGE_BYTES, Outgoing, Upstream, UpstreamError, UpstreamEvent,
};
use crate::config::ProcessSpec;
use crate::framing::{Frame, LineReader};
use crate::jsonrpc;

/// Running shared processes, by upstream name and command line.
static MUXES: LazyLock<Mutex<HashMap<String, Arc<Mux>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Lines queued for the shared process's stdin.
const WRITE_QUEUE: usize = 1024;
/// Server-to-client requests of one shared process waiting for their
/// sessions' answers; beyond it, more are refused back to the server.
const MAX_SERVER_REQUESTS: usize = 1024;

/// Notifications every session is told about.
const BROADCAST: &[&str] = &[
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
];

/// A session's connection to the shared process `name` (started if it is
/// not running).
pub(super) fn connect(
    name: &str,
    spec: &ProcessSpec,
    deadline: Duration,
    events: mpsc::Sender<UpstreamEvent>,
) -> Result<Arc<Upstream>, UpstreamError> {
    let key = format!("{name}\u{0}{}\u{0}{:?}", spec.command, spec.args);
    let mux = {
        let mut muxes = MUXES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match muxes.get(&key).filter(|m| m.is_alive()) {
            Some(mux) => mux.clone(),
            None => {
                let mux = Mux::start(name, spec, key.clone(), deadline)?;
                muxes.insert(key, mux.clone());
                mux
            }
        }
    };
    let (upstream, rx) = Upstream::new(name);
    let view = mux.attach(View {
        upstream: Arc::downgrade(&upstream),
        events,
    });
    // The session's side: ends with the session (its scope) or its
    // connection; either way the session is detached from the process.
    crate::scope::spawn_lingering(session_pump(mux, view, rx));
    Ok(upstream)
}

/// Carry one session's messages to the process until the session's
/// connection is dropped or its scope closes.
async fn session_pump(mux: Arc<Mux>, view: u64, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(Some(message)) = crate::scope::unless_closed(rx.recv()).await {
        mux.send_for(view, message).await;
    }
    mux.detach(view).await;
}

/// One session attached to the process.
#[derive(Clone)]
struct View {
    upstream: Weak<Upstream>,
    events: mpsc::Sender<UpstreamEvent>,
}

impl View {
    /// Hand `message` to the session's connection, as if its own process
    /// had sent it (nothing, if the session is gone).
    async fn deliver(self, message: Value) {
        if let Some(up) = self.upstream.upgrade() {
            up.deliver_value(&self.events, message).await;
        }
    }
}

struct Mux {
    name: String,
    key: String,
    stdin: mpsc::Sender<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    alive: bool,
    views: HashMap<u64, View>,
    next_view: u64,
    next_id: u64,
    /// Requests in flight on the process: its id -> (session, session's id).
    requests: HashMap<u64, (u64, Value)>,
    /// Progress tokens of requests in flight: the process's `fw-<id>` by
    /// its id -> (session, the session's token).
    progress: HashMap<u64, (u64, Value)>,
    /// Server-to-client requests handed to a session: the id the session
    /// saw -> (session, the server's id).
    server_requests: HashMap<u64, (u64, Value)>,
    handshake: Handshake,
    /// `notifications/initialized` has reached the process.
    initialized: bool,
}

#[derive(Default)]
enum Handshake {
    #[default]
    NotStarted,
    /// Sent as process id `.0`; the sessions waiting for its answer.
    InFlight(u64, Vec<(u64, Value)>),
    Done(Value),
}

/// Where one message from the process goes.
enum Route {
    To(u64, Value),
    Everyone(Value),
    Answer(Value),
    Nowhere,
}

impl Mux {
    fn start(
        name: &str,
        spec: &ProcessSpec,
        key: String,
        deadline: Duration,
    ) -> Result<Arc<Mux>, UpstreamError> {
        let (mut child, group) = super::process::spawn(name, spec)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let mux = Arc::new(Mux {
            name: name.to_string(),
            key,
            stdin: tx,
            state: Mutex::new(State {
                alive: true,
                ..State::default()
            }),
        });
        tracing::info!(server = %name, pid = ?child.id(), "shared upstream started");
        // The process belongs to no session: it lives on the runtime.
        tokio::spawn(write_lines(stdin, rx));
        tokio::spawn(read_lines(mux.clone(), stdout, child, group, deadline));
        Ok(mux)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_alive(&self) -> bool {
        self.lock().alive
    }

    fn attach(&self, view: View) -> u64 {
        let mut state = self.lock();
        state.next_view += 1;
        let id = state.next_view;
        state.views.insert(id, view);
        id
    }

    /// A session's message, rewritten for the process.
    async fn send_for(&self, view: u64, message: Outgoing) {
        let Ok(mut value) = serde_json::from_str::<Value>(&message.body) else {
            return;
        };
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = value.get("id").cloned();
        let line = match (method.as_deref(), id) {
            (Some("initialize"), Some(id)) => self.initialize(view, id, value),
            (Some(_), Some(id)) => {
                let mut state = self.lock();
                state.next_id += 1;
                let ours = state.next_id;
                // Two sessions may pick the same token: the process sees one
                // of its own, unique like the id.
                if let Some(token) = value.pointer_mut("/params/_meta/progressToken") {
                    let original = std::mem::replace(token, json!(format!("fw-{ours}")));
                    state.progress.insert(ours, (view, original));
                }
                state.requests.insert(ours, (view, id));
                value["id"] = json!(ours);
                Some(value)
            }
            (Some("notifications/initialized"), None) => {
                // Once, after the first handshake; later sessions' are the
                // process's news already.
                let mut state = self.lock();
                let first = matches!(state.handshake, Handshake::Done(_)) && !state.initialized;
                state.initialized |= first;
                first.then_some(value)
            }
            (Some("notifications/cancelled"), None) => {
                let theirs = value.pointer("/params/requestId").cloned();
                let state = self.lock();
                let ours = state
                    .requests
                    .iter()
                    .find(|(_, (v, id))| *v == view && Some(id) == theirs.as_ref())
                    .map(|(ours, _)| *ours);
                drop(state);
                ours.map(|ours| {
                    value["params"]["requestId"] = json!(ours);
                    value
                })
            }
            (Some(_), None) => Some(value),
            // The session's answer to a server-to-client request.
            (None, Some(id)) => {
                let taken = id
                    .as_u64()
                    .and_then(|id| self.lock().server_requests.remove(&id));
                match taken {
                    Some((owner, original)) if owner == view => {
                        value["id"] = original;
                        Some(value)
                    }
                    _ => None,
                }
            }
            (None, None) => None,
        };
        if let Some(line) = line {
            let _ = self.stdin.send(line.to_string()).await;
        }
    }

    /// A session's `initialize`: the first goes to the process; the others
    /// wait for (or get at once) its result.
    fn initialize(&self, view: u64, id: Value, mut value: Value) -> Option<Value> {
        let mut state = self.lock();
        match &mut state.handshake {
            Handshake::Done(result) => {
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": result.clone()});
                if let Some(target) = state.views.get(&view) {
                    tokio::spawn(target.clone().deliver(answer));
                }
                None
            }
            Handshake::InFlight(_, waiting) => {
                waiting.push((view, id));
                None
            }
            Handshake::NotStarted => {
                state.next_id += 1;
                let ours = state.next_id;
                state.handshake = Handshake::InFlight(ours, vec![(view, id)]);
                value["id"] = json!(ours);
                Some(value)
            }
        }
    }

    /// One line from the process: to whom it goes.
    fn route(&self, message: Value) -> Vec<(View, Value)> {
        let mut state = self.lock();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = message.get("id").cloned();
        // Only sorted here; each session's connection checks the message
        // in full when it is delivered.
        let route = match (method, id) {
            (None, Some(id)) => state.response(message, &id),
            (Some(method), Some(id)) => state.server_request(message, id, &method),
            (Some(method), None) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                state.notification(message, &method, &params)
            }
            (None, None) => Route::Nowhere,
        };
        let out = |view: &View, message: Value| (view.clone(), message);
        match route {
            Route::To(view, message) => state
                .views
                .get(&view)
                .map(|v| out(v, message))
                .into_iter()
                .collect(),
            Route::Everyone(message) => state
                .views
                .values()
                .map(|v| out(v, message.clone()))
                .collect(),
            Route::Answer(answer) => {
                drop(state);
                let _ = self.stdin.try_send(answer.to_string());
                Vec::new()
            }
            Route::Nowhere => Vec::new(),
        }
    }

    /// An answer that could not be read fails the request it names (found
    /// leniently, as a per-session connection does) instead of leaving it
    /// to its deadline.
    fn fail_by_prefix(&self, prefix: &[u8], reason: String) {
        let Some(ours) = super::connection::leading_id(prefix) else {
            return;
        };
        let mut state = self.lock();
        let Some((view, theirs)) = state.requests.remove(&ours) else {
            return;
        };
        let upstream = state.views.get(&view).and_then(|v| v.upstream.upgrade());
        drop(state);
        if let (Some(up), Some(theirs)) = (upstream, theirs.as_u64()) {
            up.fail(theirs, reason);
        }
    }

    /// The session closed: what it had in flight is cancelled upstream and
    /// server requests waiting on it are refused.
    async fn detach(&self, view: u64) {
        let lines: Vec<Value> = {
            let mut state = self.lock();
            state.views.remove(&view);
            let mut lines = Vec::new();
            state.requests.retain(|ours, (v, _)| {
                if *v == view {
                    lines.push(jsonrpc::notification(
                        "notifications/cancelled",
                        &json!({"requestId": ours, "reason": "the client's session closed"}),
                    ));
                }
                *v != view
            });
            state.progress.retain(|_, (v, _)| *v != view);
            state.server_requests.retain(|_, (v, original)| {
                if *v == view {
                    lines.push(refusal(original, "the session that was asked has closed"));
                }
                *v != view
            });
            if let Handshake::InFlight(_, waiting) = &mut state.handshake {
                waiting.retain(|(v, _)| *v != view);
            }
            lines
        };
        for line in lines {
            let _ = self.stdin.send(line.to_string()).await;
        }
    }

    /// The process is gone: every session's connection ends, and the next
    /// session starts a new process.
    async fn exited(&self, status: String) {
        let views: Vec<View> = {
            let mut state = self.lock();
            state.alive = false;
            state.views.drain().map(|(_, v)| v).collect()
        };
        MUXES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, m| !std::ptr::eq(m.as_ref(), self));
        tracing::warn!(server = %self.name, key = %self.key, %status, "shared upstream exited");
        for view in views {
            if let Some(up) = view.upstream.upgrade() {
                up.finish(&view.events, status.clone()).await;
            }
        }
    }
}

impl State {
    fn response(&mut self, mut message: Value, id: &Value) -> Route {
        let Some(ours) = id.as_u64() else {
            return Route::Nowhere;
        };
        if let Handshake::InFlight(sent, _) = &self.handshake
            && *sent == ours
        {
            let Handshake::InFlight(_, waiting) = std::mem::take(&mut self.handshake) else {
                unreachable!()
            };
            if let Some(result) = message.get("result").cloned() {
                self.handshake = Handshake::Done(result);
            }
            // Everyone who waited gets the answer with their own id (an
            // error leaves the handshake to be tried again).
            for (view, theirs) in waiting.iter().skip(1) {
                let mut copy = message.clone();
                copy["id"] = theirs.clone();
                if let Some(v) = self.views.get(view) {
                    tokio::spawn(v.clone().deliver(copy));
                }
            }
            return match waiting.into_iter().next() {
                Some((view, theirs)) => {
                    message["id"] = theirs;
                    Route::To(view, message)
                }
                None => Route::Nowhere,
            };
        }
        let Some((view, theirs)) = self.requests.remove(&ours) else {
            return Route::Nowhere;
        };
        self.progress.remove(&ours);
        message["id"] = theirs;
        Route::To(view, message)
    }

    fn server_request(&mut self, mut message: Value, id: Value, method: &str) -> Route {
        if method == "ping" {
            return Route::Answer(json!({"jsonrpc": "2.0", "id": id, "result": {}}));
        }
        let Some(view) = self.only_busy_session() else {
            tracing::warn!(
                "a shared upstream asked {method} while {} sessions had requests in flight; refused",
                self.busy_sessions().len()
            );
            return Route::Answer(refusal(
                &id,
                "this server is shared between sessions and the request could not be tied to one",
            ));
        };
        if self.server_requests.len() >= MAX_SERVER_REQUESTS {
            return Route::Answer(refusal(
                &id,
                "too many requests of this server are waiting for its clients",
            ));
        }
        self.next_id += 1;
        let ours = self.next_id;
        self.server_requests.insert(ours, (view, id));
        message["id"] = json!(ours);
        Route::To(view, message)
    }

    fn notification(&mut self, mut message: Value, method: &str, params: &Value) -> Route {
        if BROADCAST.contains(&method) {
            return Route::Everyone(message);
        }
        if method == "notifications/progress" {
            let ours = params
                .get("progressToken")
                .and_then(Value::as_str)
                .and_then(|t| t.strip_prefix("fw-"))
                .and_then(|n| n.parse::<u64>().ok());
            return match ours.and_then(|ours| self.progress.get(&ours)) {
                Some((view, original)) => {
                    message["params"]["progressToken"] = original.clone();
                    Route::To(*view, message)
                }
                None => Route::Nowhere,
            };
        }
        if method == "notifications/cancelled" {
            // The server withdrew one of its requests: the session it went
            // to sees its own id.
            let original = params.get("requestId");
            let found = self
                .server_requests
                .iter()
                .find(|(_, (_, id))| Some(id) == original)
                .map(|(ours, (view, _))| (*ours, *view));
            return match found {
                Some((ours, view)) => {
                    self.server_requests.remove(&ours);
                    message["params"]["requestId"] = json!(ours);
                    Route::To(view, message)
                }
                None => Route::Nowhere,
            };
        }
        match self.only_busy_session() {
            Some(view) => Route::To(view, message),
            None => {
                tracing::debug!(
                    "a shared upstream's {method} could not be tied to one session; dropped"
                );
                Route::Nowhere
            }
        }
    }

    fn busy_sessions(&self) -> HashSet<u64> {
        self.requests.values().map(|(view, _)| *view).collect()
    }

    /// The one session with a request in flight, if exactly one has.
    fn only_busy_session(&self) -> Option<u64> {
        let busy = self.busy_sessions();
        match busy.len() {
            1 => busy.into_iter().next(),
            _ => None,
        }
    }
}

/// An error answer to a server's request.
fn refusal(id: &Value, why: &str) -> Value {
    jsonrpc::error_response(id, jsonrpc::code::INTERNAL_ERROR, why, None)
}

async fn write_lines(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn read_lines(
    mux: Arc<Mux>,
    stdout: tokio::process::ChildStdout,
    child: tokio::process::Child,
    group: super::process::ProcessGroup,
    deadline: Duration,
) {
    let _group = group;
    let mut lines = LineReader::new(stdout, MAX_UPSTREAM_MESSAGE_BYTES).deadline(deadline);
    let mut exit = super::process::Exit::new(child);
    loop {
        let next = tokio::select! {
            next = lines.next() => next,
            () = exit.stdout_done() => {
                exit.held_open(&mux.name);
                break;
            }
        };
        match next {
            Ok(Some(Frame::Line(line))) => {
                let message = match serde_json::from_slice::<Value>(&line) {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(server = %mux.name, "shared upstream sent a line that is not JSON");
                        mux.fail_by_prefix(&line, super::connection::invalid_answer(e));
                        continue;
                    }
                };
                drop(line);
                for (view, message) in mux.route(message) {
                    view.deliver(message).await;
                }
            }
            Ok(Some(Frame::TooLong)) => {
                tracing::warn!(server = %mux.name, "dropped a message over {MAX_UPSTREAM_MESSAGE_BYTES} bytes");
                mux.fail_by_prefix(
                    lines.discarded_prefix(),
                    format!("the answer is over the {MAX_UPSTREAM_MESSAGE_BYTES}-byte limit"),
                );
            }
            Ok(Some(dropped @ (Frame::OverBudget(_) | Frame::TooSlow(_)))) => {
                let why = dropped.dropped_because().unwrap_or_default();
                let reason = super::connection::dropped_answer(why);
                tracing::warn!(server = %mux.name, "{reason}");
                mux.fail_by_prefix(lines.discarded_prefix(), reason);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(server = %mux.name, "reading from the shared upstream failed: {e}");
                break;
            }
        }
    }
    mux.exited(exit.status().await).await;
}
