//! The request pipeline: every client message enters here, is routed to the
//! module for its method family, and leaves as an answer or a relay.
//!
//! | module | methods |
//! |---|---|
//! | [`methods`] | the one closed table of every method in both directions and how each is handled |
//! | [`initialize`] | `initialize` (and initializing every upstream) |
//! | [`tools`] | `tools/list`, `tools/call` |
//! | [`resources`] | `resources/list`, `resources/templates/list`, `resources/read`, `resources/subscribe`, `resources/unsubscribe` |
//! | [`prompts`] | `prompts/list`, `prompts/get`, `completion/complete`, `logging/setLevel` |
//! | [`notifications`] | notifications both ways, server-to-client requests, cancellation |
//! | [`pipeline`] | decide -> audit -> `Permit` -> forward, shared by the families |
//! | [`outcome`] | how a forwarded call ends, on the record: `call.completed`, a call cut off by its session's close |
//! | [`hold`] | holding an `approve` decision for a human; releasing it with a grant |
//! | [`approval_request`] | creating, delivering and withdrawing an approval request |
//! | [`obligations`] | the policy's `approval` object: approvers, quorum, timeout |
//! | [`responses`] | the response phase: results capped, scanned, put through the policy again |
//! | [`pins`] | tool pins: first-use pinning, `input.tool.pin`, re-pinning on approval |
//! | [`tooldefs`] | scanning tool definitions for poisoning and shadowing (`input.tool.findings`) |
//! | [`urls`] | URLs in arguments as a WHATWG parser reads them (`input.urls`) |
//! | [`catalogue`] | fetching and merging listings within deadlines; refresh when stale |
//! | [`held_tasks`] | task-augmented `tools/call`s as the firewall's own tasks: a held call answers at once, waits as a task, survives a restart |
//! | [`hook`] | `hook/PreToolUse`: Claude Code's own tool uses, decided and held like `tools/call`, never forwarded |
//! | [`tasks`] | `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`: routed to the upstream that created the task |
//! | [`to_client`] | what goes to the client: messages, and list answers written one definition at a time from the catalogue |
//!
//! Methods the firewall does not know are refused (`-32601`) and recorded,
//! not relayed: an unknown method could act without a policy decision. The
//! only ways to write to an upstream are `Upstream::forward` (which consumes
//! a [`pipeline::Permit`]), `Upstream::own_request` and `Upstream::plumb`
//! (closed enums of protocol plumbing, `crate::upstream::plumbing`).

mod approval_request;
mod catalogue;
mod held_tasks;
mod hold;
pub mod hook;
mod initialize;
pub mod input;
pub mod methods;
mod notifications;
pub mod obligations;
mod outcome;
mod pins;
pub mod pipeline;
mod prompts;
mod resources;
mod responses;
pub mod session;
pub mod shared;
mod tasks;
pub mod to_client;
mod tooldefs;
mod tools;
pub mod urls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use shared::{PolicyCell, RateCounters, Shared};
pub use tasks::{EXTENSION as TASKS_EXTENSION, created_task_id, is_flat_task};
use to_client::ListAnswer;
pub use to_client::ToClient;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, MaskRules};
use crate::error::Refusal;
use crate::jsonrpc::{self, Message};
use crate::policy::PolicySet;
use crate::upstream::{Naming, Upstream, UpstreamError, UpstreamEvent};
use catalogue::Catalogue;
use methods::ClientRequest;

/// The fields of a tool definition that pins cover (for `tools diff`).
pub fn pins_fields() -> [&'static str; 6] {
    pins::PINNED_FIELDS
}
use session::Session;

/// Messages queued for the client before the proxy waits for the writer.
pub const CLIENT_QUEUE: usize = 1024;

/// Client requests one session may have in flight. Each is a task holding
/// its input, its decision and its upstream request until answered (~25 KB:
/// 20,000 calls an upstream never answered held 522 MB), so a client that
/// sends without waiting for answers is refused past this instead of
/// growing the firewall without bound. Responses and notifications from the
/// client are still read (a call in flight may be waiting for one).
pub const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// Client requests running on their tasks, in every session of the
/// process ([`requests_running`]).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many client requests are running on their tasks, process-wide: how
/// busy the runtime is, for a transport choosing whether to hand a request
/// over to another worker (`HttpSession::feed`).
pub fn requests_running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

/// A request counted in [`requests_running`] while it lives.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Calls one session may have running as the firewall's own tasks. A task
/// is answered at once and runs on, so tasks have their own bound (a
/// client must still be able to poll and cancel them when it is reached).
pub const MAX_TASKS_RUNNING: usize = 256;

/// A bound on how many of something a session holds at once (requests in
/// flight, calls running as tasks), and whether it is refusing now (so each
/// run of refusals is recorded once).
pub(super) struct Bound {
    held: Arc<AtomicUsize>,
    limit: usize,
    what: &'static str,
    refusing: AtomicBool,
}

impl Bound {
    fn new(limit: usize, what: &'static str) -> Bound {
        Bound {
            held: Arc::new(AtomicUsize::new(0)),
            limit,
            what,
            refusing: AtomicBool::new(false),
        }
    }

    /// A place, if one is free; taking one ends a run of refusals.
    fn take(&self) -> Option<Slot> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()?;
        self.refusing.store(false, Ordering::Release);
        Some(Slot(self.held.clone()))
    }

    /// Whether this refusal begins a run of them.
    fn first_refusal(&self) -> bool {
        !self.refusing.swap(true, Ordering::AcqRel)
    }
}

/// A place held under a [`Bound`], given back when dropped (its task ended,
/// or the session dropped it).
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the proxy's messages for the client go.
pub enum ClientSink {
    /// A queue the transport's writer drains (stdio).
    Queue(mpsc::Sender<ToClient>),
    /// Handed on at once, on the task that sends, never waiting (HTTP: a
    /// message is routed straight to the exchange or stream it belongs
    /// to). No task sits between the proxy and the client's connection,
    /// so an answer wakes one task, not two.
    Direct(Box<dyn Fn(ToClient) + Send + Sync>),
}

impl From<mpsc::Sender<ToClient>> for ClientSink {
    fn from(queue: mpsc::Sender<ToClient>) -> ClientSink {
        ClientSink::Queue(queue)
    }
}

/// A request's answer: a result or an error, or a list written item by
/// item from the catalogue ([`to_client::ListAnswer`]).
enum Reply {
    Json(Result<Value, Value>),
    List(&'static str, Box<dyn to_client::Listed>),
}

/// The firewall for one client session.
pub struct Proxy {
    upstreams: Vec<Arc<Upstream>>,
    naming: Naming,
    shared: Arc<Shared>,
    mask: MaskRules,
    session: Session,
    catalogue: RwLock<Catalogue>,
    fetching: catalogue::Fetching,
    schemas: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    client: ClientSink,
    initialized: AtomicBool,
    /// `true` while an `initialize` is being worked on. Requests that come
    /// behind it (a client may pipeline them) wait for it to settle instead
    /// of being refused; reading the client's input goes on meanwhile, so
    /// end of input is seen even while an upstream hangs in its handshake.
    initializing: tokio::sync::watch::Sender<bool>,
    /// Client requests being worked on, by the client's id, so a
    /// `notifications/cancelled` can stop them.
    inflight: Mutex<HashMap<String, CancellationToken>>,
    /// Client requests with a task now ([`MAX_REQUESTS_IN_FLIGHT`]).
    requests: Bound,
    /// Calls running as the firewall's tasks now ([`MAX_TASKS_RUNNING`]).
    pub(super) running_tasks: Bound,
    /// Server-to-client requests relayed to the client, by our id.
    relayed: Mutex<HashMap<String, notifications::Relayed>>,
    relay_seq: AtomicU64,
    /// Requests forwarded and not yet answered, by a local sequence number:
    /// (upstream, exposed name, decision id). A server-to-client request
    /// names the one in flight to its upstream as its likely cause.
    forwarding: Mutex<HashMap<u64, (String, String, String)>>,
    /// Contested resource URIs already on record, with their claimants.
    contests_recorded: Mutex<std::collections::HashSet<(String, Vec<String>)>>,
    /// Why the session is ending ([`Proxy::end`]): the outcome of calls cut
    /// off by its close, and the reason in its `session.ended` record.
    ending: std::sync::OnceLock<String>,
    /// Tools first pinned by this session's listings: `(upstream identity,
    /// tool)`, whose pin status is `new`.
    new_tools: Mutex<std::collections::HashSet<(String, String)>>,
    /// Findings of the tool-definition scan, by exposed name: (fingerprint,
    /// findings).
    tool_findings: Mutex<HashMap<String, (String, Vec<Value>)>>,
    /// Tools renamed by a listing: (upstream identity, new name) -> old name.
    renamed: Mutex<HashMap<(String, String), String>>,
    /// `input.tool.pin` by (exposed name, fingerprint), so a call does not
    /// read the store. Cleared by every listing and every re-pin here; a
    /// `tools pin|unpin` from the CLI is seen at the next listing.
    pin_cache: Mutex<HashMap<(String, String), Value>>,
    /// Tasks this session's calls created, and where they live.
    tasks: Mutex<tasks::Tasks>,
    /// The session's task scope: closing it ends every task the proxy and
    /// its upstreams started.
    scope: crate::scope::Scope,
}

impl Proxy {
    /// Start every upstream process and return the proxy plus the stream of
    /// upstream events that [`Proxy::run_events`] consumes.
    pub fn start(
        shared: Arc<Shared>,
        session: Session,
        client: impl Into<ClientSink>,
    ) -> Result<(Arc<Proxy>, mpsc::Receiver<UpstreamEvent>), UpstreamError> {
        let (events_tx, events_rx) = mpsc::channel(CLIENT_QUEUE);
        let config = &shared.config;
        // The caller's scope (a session's), or one of our own that lives as
        // long as the runtime does.
        let scope = crate::scope::Scope::current().unwrap_or_default();
        let upstreams = scope.enter(|| {
            config
                .upstreams
                .iter()
                .map(|spec| Upstream::spawn(spec, events_tx.clone()))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut mask_fields: Vec<String> = crate::audit::DEFAULT_MASKED_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        mask_fields.extend(config.mask_fields.iter().cloned());
        let proxy = Proxy {
            upstreams,
            naming: Naming {
                passthrough: config.passthrough_names,
            },
            shared: shared.clone(),
            mask: MaskRules::new(mask_fields),
            session,
            catalogue: RwLock::new(Catalogue::default()),
            fetching: catalogue::Fetching::default(),
            schemas: Mutex::new(HashMap::new()),
            client: client.into(),
            initialized: AtomicBool::new(false),
            initializing: tokio::sync::watch::Sender::new(false),
            inflight: Mutex::new(HashMap::new()),
            requests: Bound::new(MAX_REQUESTS_IN_FLIGHT, "requests in flight"),
            running_tasks: Bound::new(MAX_TASKS_RUNNING, "tasks running"),
            relayed: Mutex::new(HashMap::new()),
            relay_seq: AtomicU64::new(1),
            forwarding: Mutex::new(HashMap::new()),
            contests_recorded: Mutex::default(),
            ending: std::sync::OnceLock::new(),
            new_tools: Mutex::new(std::collections::HashSet::new()),
            tool_findings: Mutex::new(HashMap::new()),
            renamed: Mutex::new(HashMap::new()),
            pin_cache: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tasks::Tasks::default()),
            scope,
        };
        Ok((Arc::new(proxy), events_rx))
    }

    /// The policy in force now. In-flight calls keep the `Arc` they took.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.shared.policy.current()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.shared.audit
    }

    /// Handle one line from the client. Requests run on their own task so a
    /// slow call never blocks the next message.
    pub async fn handle_bytes(self: &Arc<Self>, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match jsonrpc::parse_bytes(line) {
            Ok(message) => self.handle_message(message).await,
            Err(e) => {
                tracing::warn!("refused a malformed message from the client: {e}");
                self.send(e.to_response()).await;
            }
        }
    }

    /// Handle one client message already parsed (the HTTP transports parse
    /// a body once, to route it, and hand the message on).
    pub async fn handle_message(self: &Arc<Self>, message: Message) {
        match message {
            // initialize runs on its own task like every request, but opens
            // the gate the requests behind it wait at (`dispatch`) before the
            // next line is read. One at a time.
            Message::Request { id, method, params } if method == "initialize" => {
                let started = self
                    .initializing
                    .send_if_modified(|busy| !std::mem::replace(busy, true));
                if !started {
                    let error = jsonrpc::error_object(
                        jsonrpc::code::INVALID_REQUEST,
                        "initialize is already in progress in this session",
                    );
                    self.send(jsonrpc::response_message(&id, Err(error))).await;
                    return;
                }
                let proxy = self.clone();
                self.scope.spawn(async move {
                    proxy.clone().handle_request(id, method, params).await;
                    proxy.initializing.send_replace(false);
                });
            }
            Message::Request { id, method, params } => {
                let Some(slot) = self.requests.take() else {
                    let error = self.busy(&self.requests, &method);
                    self.send(jsonrpc::response_message(&id, Err(error))).await;
                    return;
                };
                let proxy = self.clone();
                let running = Running::start();
                self.scope.spawn(async move {
                    proxy.handle_request(id, method, params).await;
                    drop(slot);
                    drop(running);
                });
            }
            Message::Notification { method, params } => {
                self.client_notification(&method, params).await
            }
            Message::Response { id, body } => self.client_response(id, body).await,
        }
    }

    /// The error for a `method` refused because the session holds all
    /// `bound` allows. The first refusal of a run is on the log
    /// (`session.throttled`); the rest are answered only.
    pub(super) fn busy(&self, bound: &Bound, method: &str) -> Value {
        let (what, limit) = (bound.what, bound.limit);
        if bound.first_refusal() {
            tracing::warn!(
                session = %self.session.id,
                "the client has {limit} {what}; refusing more until some end"
            );
            let record = serde_json::json!({"session_id": self.session.id, "method": method,
                                            "what": what, "limit": limit});
            if let Err(e) = self.shared.audit.append("session.throttled", record) {
                tracing::error!("audit write failed: {e}");
            }
        }
        jsonrpc::error_object(
            jsonrpc::code::TOO_MANY_REQUESTS,
            &format!(
                "too many {what} in this session ({limit}); this one was not run: \
                 send it again once some have ended"
            ),
        )
    }

    /// Answer a message the transport could not even read (e.g. too large),
    /// whose first bytes were `prefix` ([`jsonrpc::unread_refusal`]).
    pub async fn reject_unreadable(&self, prefix: &[u8], reason: &str) {
        self.send(jsonrpc::unread_refusal(prefix, reason)).await;
    }

    async fn handle_request(self: Arc<Self>, id: Value, method: String, params: Value) {
        let key = id.to_string();
        let cancel = CancellationToken::new();
        self.inflight
            .lock()
            .expect("inflight lock")
            .insert(key.clone(), cancel.clone());
        let span = tracing::info_span!(
            "mcp.request",
            otel.name = %method,
            rpc.system = "jsonrpc",
            rpc.method = %method,
            rpc.jsonrpc.request_id = %key,
            mcp.tool = params.get("name").and_then(serde_json::Value::as_str).unwrap_or(""),
        );
        crate::telemetry::continue_from(&span, &params);
        let answer =
            tracing::Instrument::instrument(self.dispatch(&method, params, &cancel), span).await;
        self.inflight.lock().expect("inflight lock").remove(&key);
        if let Some(Reply::Json(answer)) = &answer {
            self.record_unrecorded_refusal(&method, answer);
        }
        // A cancelled request gets no response (MCP cancellation rules).
        if cancel.is_cancelled() {
            return;
        }
        match answer {
            Some(Reply::Json(body)) => self.send(jsonrpc::response_message(&id, body)).await,
            Some(Reply::List(key, items)) => {
                self.send(ToClient::List(ListAnswer::new(id, key, items)))
                    .await
            }
            None => {}
        }
    }

    /// `None` means cancelled: send nothing.
    async fn dispatch(
        self: &Arc<Self>,
        method: &str,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Reply> {
        // The method table (`methods`): anything not in it is refused, and
        // the refusal is on record.
        let Some(request) = ClientRequest::parse(method) else {
            self.refuse_unknown_method(method);
            return Some(Reply::Json(
                Refusal::MethodNotFound(method.to_string()).answer(false, None),
            ));
        };
        if !matches!(request, ClientRequest::Initialize | ClientRequest::Ping) {
            // Behind an initialize still being worked on: wait for its answer.
            let mut gate = self.initializing.subscribe();
            let _ = gate.wait_for(|busy| !busy).await;
        }
        let ready = self.initialized.load(Ordering::Acquire);
        if !ready && !matches!(request, ClientRequest::Initialize | ClientRequest::Ping) {
            return Some(Reply::Json(Refusal::NotInitialized.answer(false, None)));
        }
        if let Some(capability) = request.listed_capability()
            && !self.offered_by_any(capability)
            && !(capability == "tasks" && self.shared.config.approval.tasks)
        {
            return Some(Reply::Json(
                Refusal::MethodNotFound(method.to_string()).answer(false, None),
            ));
        }
        let answer = match request {
            ClientRequest::Initialize => Some(self.initialize(params).await),
            ClientRequest::Ping => Some(Ok(serde_json::json!({}))),
            ClientRequest::ToolsList => return Some(self.tools_list().await),
            ClientRequest::ToolsCall => self.tools_call(params, cancel).await,
            ClientRequest::ResourcesList => return Some(self.resources_list().await),
            ClientRequest::ResourceTemplatesList => {
                return Some(self.resource_templates_list().await);
            }
            ClientRequest::ResourcesRead
            | ClientRequest::ResourcesSubscribe
            | ClientRequest::ResourcesUnsubscribe => {
                self.resource_call(request.as_str(), params, cancel).await
            }
            ClientRequest::PromptsList => return Some(self.prompts_list().await),
            ClientRequest::PromptsGet => self.prompts_get(params, cancel).await,
            ClientRequest::CompletionComplete => self.completion(params, cancel).await,
            ClientRequest::LoggingSetLevel => Some(self.set_log_level(params).await),
            ClientRequest::TasksGet
            | ClientRequest::TasksResult
            | ClientRequest::TasksCancel
            | ClientRequest::TasksUpdate => self.task_call(request, params, cancel).await,
            ClientRequest::TasksList => Some(self.tasks_list().await),
        };
        answer.map(Reply::Json)
    }

    /// Queue a message for the client. If the client is gone there is no one
    /// to tell, so the message is dropped.
    pub(crate) async fn send(&self, message: impl Into<ToClient>) {
        let message = message.into();
        match &self.client {
            ClientSink::Queue(queue) => {
                let _ = queue.send(message).await;
            }
            ClientSink::Direct(deliver) => deliver(message),
        }
    }

    /// A decided method refused before the decision step (malformed params,
    /// unknown tool without a record, ...) still leaves an audit record:
    /// every refusal of a request that could act is on the log.
    fn record_unrecorded_refusal(&self, method: &str, answer: &Result<Value, Value>) {
        let Some(request) = ClientRequest::parse(method) else {
            return;
        };
        if request.handling() != methods::Handling::Decide {
            return;
        }
        let (meta, kind) = match answer {
            Ok(result) => (result.get("_meta"), "mcp-firewall/refusal"),
            Err(error) => (error.get("data"), "kind"),
        };
        let Some(kind) = meta.and_then(|m| m.get(kind)) else {
            return;
        };
        let recorded = meta.is_some_and(|m| {
            m.get("mcp-firewall/decision_id").is_some() || m.get("decision_id").is_some()
        });
        if recorded {
            return;
        }
        let message = match answer {
            Ok(result) => result["content"][0]["text"].clone(),
            Err(error) => error["message"].clone(),
        };
        let record = serde_json::json!({
            "decision_id": uuid::Uuid::new_v4().to_string(),
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "method": method,
            "result": {"decision": "deny", "reasons": [message]},
            "error": {"kind": kind, "message": message},
        });
        if let Err(e) = self.shared.audit.append("call.decided", record) {
            tracing::error!("audit write failed: {e}");
        }
    }

    /// Audit a request for a method outside the table.
    fn refuse_unknown_method(&self, method: &str) {
        let record = serde_json::json!({
            "decision_id": uuid::Uuid::new_v4().to_string(),
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "method": method.chars().take(200).collect::<String>(),
            "result": {"decision": "deny", "reasons": ["method not in the firewall's method table"]},
            "error": {"kind": "method_not_found"},
        });
        if let Err(e) = self.shared.audit.append("call.decided", record) {
            tracing::error!("audit write failed: {e}");
        }
    }

    /// Say why the session is ending, before its scope closes (the client
    /// stopped reading, DELETE, idle expiry, stdin closed, a signal). Calls
    /// still forwarded when the scope closes are recorded as `abandoned`
    /// with this reason, and the `session.ended` record carries it. The
    /// first reason given stays.
    pub fn end(&self, why: &str) {
        let _ = self.ending.set(why.to_string());
    }

    /// The call in flight to `server` when there is exactly one: the likely
    /// cause of a request that server sends the client.
    fn likely_cause(&self, server: &str) -> Value {
        let forwarding = self.forwarding.lock().expect("forwarding lock");
        let mut to_server = forwarding.values().filter(|(s, ..)| s == server);
        match (to_server.next(), to_server.next()) {
            (Some((_, name, decision_id)), None) => {
                serde_json::json!({"name": name, "decision_id": decision_id})
            }
            _ => Value::Null,
        }
    }

    /// The configured deadline of requests forwarded to `server`.
    fn spec_timeout(&self, server: &str) -> std::time::Duration {
        self.spec(server)
            .map_or(crate::config::DEFAULT_UPSTREAM_TIMEOUT, |s| s.timeout)
    }

    /// The configuration of the upstream named `server`.
    fn spec(&self, server: &str) -> Option<&crate::config::UpstreamSpec> {
        self.shared
            .config
            .upstreams
            .iter()
            .find(|s| s.name == server)
    }

    fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }

    /// Upstreams that are initialized and still running.
    fn live_upstreams(&self) -> Vec<Arc<Upstream>> {
        let catalogue = self.catalogue.read().expect("catalogue lock");
        self.upstreams
            .iter()
            .filter(|u| u.is_alive() && catalogue.ready.contains_key(u.name()))
            .cloned()
            .collect()
    }
}

/// The session's last record: when it ended and how much it did. Written
/// when the last handle goes (stdin closed, HTTP session deleted or expired).
impl Drop for Proxy {
    fn drop(&mut self) {
        if !self.initialized.load(Ordering::Acquire) {
            return;
        }
        crate::metrics::metrics().session(self.session.transport, false);
        let mut record = serde_json::json!({
            "session_id": self.session.id,
            "principal": {"id": self.session.principal.id, "source": self.session.principal.source},
            "transport": self.session.transport,
        });
        if let Some(why) = self.ending.get() {
            record["reason"] = why.as_str().into();
        }
        if let Err(e) = self.shared.audit.append("session.ended", record) {
            tracing::error!("audit write failed for the end of a session: {e}");
        }
    }
}
