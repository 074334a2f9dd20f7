//! Prometheus metrics (`--metrics-listen HOST:PORT`, `[metrics] listen`):
//! the firewall's health for the team's monitoring.
//!
//! Process-wide counters, gauges and histograms, updated where things
//! happen (the decision pipeline, the forward path, the audit writer, the
//! approval flow, sessions, policy reloads) and served in the OpenMetrics
//! text format at `GET /metrics` on a listener of their own (never on the
//! MCP listener: no MCP client, and no agent, needs to reach it).
//!
//! Label values are bounded: methods from the firewall's closed method table
//! (anything else is `other`), upstream names from the configuration,
//! decision results, outcomes and transports from fixed lists, and the
//! policy revision (one series at a time). No arguments, principals or tool
//! names.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mcp_firewall_decisions_total` | counter | `method`, `result` (allow, deny, approve, error) |
//! | `mcp_firewall_decision_seconds` | histogram | `method` |
//! | `mcp_firewall_upstream_request_seconds` | histogram | `upstream` |
//! | `mcp_firewall_upstream_errors_total` | counter | `upstream` |
//! | `mcp_firewall_upstream_up` | gauge | `upstream` (1 while a process/connection of it runs) |
//! | `mcp_firewall_upstream_running` | gauge | `upstream` (how many) |
//! | `mcp_firewall_approvals_pending` | gauge | |
//! | `mcp_firewall_approval_answer_seconds` | histogram | `decision` (approved, denied) |
//! | `mcp_firewall_webhook_deliveries_total` | counter | `outcome` (delivered, failed, retried) |
//! | `mcp_firewall_audit_write_seconds` | histogram | |
//! | `mcp_firewall_audit_write_failures_total` | counter | |
//! | `mcp_firewall_audit_fsync_seconds` | histogram | (each `fsync` of the group commit, `--audit-fsync always`: its count against `audit_write_seconds`' is records per `fsync`) |
//! | `mcp_firewall_sessions` | gauge | `transport` |
//! | `mcp_firewall_sessions_started_total` | counter | `transport` |
//! | `mcp_firewall_policy_info` | gauge (1) | `revision` |
//! | `mcp_firewall_policy_reloads_total` | counter | `result` (ok, error) |
//! | `mcp_firewall_policy_specializations_total` | counter | `result` (built, refused: the cross-check disagreed, a bug to report; failed: not specializable) |
//! | `mcp_firewall_audit_sink_lag_bytes` | gauge | |
//! | `mcp_firewall_audit_sink_shipped_records_total` | counter | |
//! | `mcp_firewall_audit_sink_failures_total` | counter | |
//! | `mcp_firewall_message_memory_bytes` | gauge | (big messages being read, as counted against `message_memory_bytes`) |
//! | `mcp_firewall_messages_over_budget_total` | counter | (big messages dropped for want of that memory) |
//! | `mcp_firewall_http_refused_total` | counter | `reason` (host, origin, unauthenticated, forbidden, connections, sessions, principal_sessions, body_too_large, body_too_slow, body_over_budget, body_unreadable, malformed) |
//! | `mcp_firewall_log_lines_dropped_total` | counter | (log lines stderr could not take in time; see [`crate::logging`]) |
//! | `mcp_firewall_log_lines_suppressed_total` | counter | (log lines over their place's allowance) |
//! | `mcp_firewall_http_connections` | gauge | `listener` (mcp, approvals, metrics) |
//! | `mcp_firewall_requests_in_flight` | gauge | (client requests being decided, held or forwarded, every session) |
//! | `mcp_firewall_runtime_tasks` | gauge | (tasks alive on the async runtime) |
//!
//! Beside them, the standard process metrics every Prometheus client
//! library exports, under their usual unprefixed names so that existing
//! dashboards and alerts apply: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_threads` and
//! `process_start_time_seconds` (read from `/proc/self` at each scrape;
//! [`ProcessCollector`]). With `mcp_firewall_sessions`, the connections and
//! the tasks, they show whether the firewall gives back what ended sessions
//! took: each comes back to where it was when the sessions are gone
//! (`scripts/soak.py`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::proxy::methods::{ClientRequest, ServerRequest};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Decision {
    pub method: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Upstream {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Answer {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Transport {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Revision {
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Listener {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Result_ {
    pub result: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the firewall keeps.
pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics, unprefixed.
    process: Registry,
    pub decisions: Family<Decision, Counter>,
    pub decision_seconds: Histograms<Method>,
    pub upstream_seconds: Histograms<Upstream>,
    pub upstream_errors: Family<Upstream, Counter>,
    pub upstream_up: Family<Upstream, Gauge>,
    pub upstream_running: Family<Upstream, Gauge>,
    pub approvals_pending: Gauge,
    pub approval_answer_seconds: Histograms<Answer>,
    pub webhook_deliveries: Family<Outcome, Counter>,
    pub audit_write_seconds: Histogram,
    pub audit_write_failures: Counter,
    pub audit_fsync_seconds: Histogram,
    pub sessions: Family<Transport, Gauge>,
    pub sessions_started: Family<Transport, Counter>,
    pub policy_info: Family<Revision, Gauge>,
    pub policy_reloads: Family<Result_, Counter>,
    pub policy_specializations: Family<Result_, Counter>,
    pub sink_lag_bytes: Gauge,
    pub sink_shipped: Counter,
    pub sink_failures: Counter,
    pub message_memory: Gauge,
    pub messages_over_budget: Counter,
    pub http_refused: Family<Reason, Counter>,
    pub log_lines_dropped: Counter,
    pub log_lines_suppressed: Counter,
    pub http_connections: Family<Listener, Gauge>,
    requests_in_flight: Gauge,
    runtime_tasks: Gauge,
}

/// 50 µs .. ~26 s, doubling: decisions are tens of microseconds, upstream
/// requests milliseconds to seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// 1 s .. ~9 h, doubling: how long humans take to answer.
fn human() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("mcp_firewall"),
            process: Registry::default(),
            decisions: Family::default(),
            decision_seconds: Family::new_with_constructor(latency),
            upstream_seconds: Family::new_with_constructor(latency),
            upstream_errors: Family::default(),
            upstream_up: Family::default(),
            upstream_running: Family::default(),
            approvals_pending: Gauge::default(),
            approval_answer_seconds: Family::new_with_constructor(human),
            webhook_deliveries: Family::default(),
            audit_write_seconds: latency(),
            audit_write_failures: Counter::default(),
            audit_fsync_seconds: latency(),
            sessions: Family::default(),
            sessions_started: Family::default(),
            policy_info: Family::default(),
            policy_reloads: Family::default(),
            policy_specializations: Family::default(),
            sink_lag_bytes: Gauge::default(),
            sink_shipped: Counter::default(),
            sink_failures: Counter::default(),
            message_memory: Gauge::default(),
            messages_over_budget: Counter::default(),
            http_refused: Family::default(),
            log_lines_dropped: Counter::default(),
            log_lines_suppressed: Counter::default(),
            http_connections: Family::default(),
            requests_in_flight: Gauge::default(),
            runtime_tasks: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "decisions",
            "Requests decided, by method and result",
            m.decisions.clone(),
        );
        r.register(
            "decision_seconds",
            "Time to decide one request (input, policy, audit record)",
            m.decision_seconds.clone(),
        );
        r.register(
            "upstream_request_seconds",
            "Time an upstream took to answer a forwarded request",
            m.upstream_seconds.clone(),
        );
        r.register(
            "upstream_errors",
            "Forwarded requests that failed at the upstream (no answer, exited, timed out)",
            m.upstream_errors.clone(),
        );
        r.register(
            "upstream_up",
            "1 while at least one process or connection of the upstream runs",
            m.upstream_up.clone(),
        );
        r.register(
            "upstream_running",
            "Processes or connections of the upstream running (one per session)",
            m.upstream_running.clone(),
        );
        r.register(
            "approvals_pending",
            "Approval requests waiting for an answer",
            m.approvals_pending.clone(),
        );
        r.register(
            "approval_answer_seconds",
            "Time from an approval request to its answer",
            m.approval_answer_seconds.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Approval webhook delivery attempts, by outcome",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "audit_write_seconds",
            "Time to append one audit record (and sync it, with fsync always)",
            m.audit_write_seconds.clone(),
        );
        r.register(
            "audit_write_failures",
            "Audit records that could not be written (each refused its call)",
            m.audit_write_failures.clone(),
        );
        r.register(
            "audit_fsync_seconds",
            "Time of each fsync of the audit log (fsync always; one covers every record written before it began)",
            m.audit_fsync_seconds.clone(),
        );
        r.register("sessions", "Client sessions open", m.sessions.clone());
        r.register(
            "sessions_started",
            "Client sessions started",
            m.sessions_started.clone(),
        );
        r.register(
            "policy_info",
            "The policy revision in force (1)",
            m.policy_info.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy reloads, by result",
            m.policy_reloads.clone(),
        );
        r.register(
            "policy_specializations",
            "Engines specialized to one tool or method, by result (refused: the cross-check disagreed)",
            m.policy_specializations.clone(),
        );
        r.register(
            "audit_sink_lag_bytes",
            "Bytes of the audit log not yet acknowledged by the decision-log collector",
            m.sink_lag_bytes.clone(),
        );
        r.register(
            "audit_sink_shipped_records",
            "Audit records the decision-log collector acknowledged",
            m.sink_shipped.clone(),
        );
        r.register(
            "audit_sink_failures",
            "Batches the decision-log collector did not acknowledge (each retried)",
            m.sink_failures.clone(),
        );
        r.register(
            "message_memory_bytes",
            "Memory counted for big messages being read, against message_memory_bytes",
            m.message_memory.clone(),
        );
        r.register(
            "messages_over_budget",
            "Big messages dropped because message_memory_bytes was spent",
            m.messages_over_budget.clone(),
        );
        r.register(
            "http_refused",
            "HTTP requests and connections refused at the front door (MCP and approval listeners), by reason",
            m.http_refused.clone(),
        );
        r.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not take them as fast as they came",
            m.log_lines_dropped.clone(),
        );
        r.register(
            "log_lines_suppressed",
            "Log lines not written: their place in the code was over its allowance",
            m.log_lines_suppressed.clone(),
        );
        r.register(
            "http_connections",
            "HTTP connections open, by listener",
            m.http_connections.clone(),
        );
        r.register(
            "requests_in_flight",
            "Client requests being decided, held or forwarded, in every session",
            m.requests_in_flight.clone(),
        );
        r.register(
            "runtime_tasks",
            "Tasks alive on the async runtime (sessions, connections, calls, upstreams)",
            m.runtime_tasks.clone(),
        );
        m.process.register_collector(Box::new(ProcessCollector));
        m
    }

    /// The exposition (OpenMetrics text format).
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.message_memory
            .set(gauge(crate::budget::big_messages().held()));
        self.requests_in_flight
            .set(gauge(crate::proxy::requests_running()));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(gauge(runtime.metrics().num_alive_tasks()));
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String");
        out
    }

    /// An HTTP request or connection was refused at the front door for
    /// `reason` (one of the fixed list in this module's table): the count
    /// stays whole when the log line saying so is left out.
    pub fn refused(&self, reason: &'static str) {
        self.http_refused.get_or_create(&Reason { reason }).inc();
    }

    /// One decision of `method` ended with `result`; `took` when the policy
    /// ran (a refusal before it, e.g. an unknown tool, is counted, not timed).
    pub fn decided(&self, method: &str, result: &'static str, took: Option<Duration>) {
        let method = method_label(method);
        self.decisions
            .get_or_create(&Decision { method, result })
            .inc();
        if let Some(took) = took {
            self.decision_seconds
                .get_or_create(&Method { method })
                .observe(took.as_secs_f64());
        }
    }

    /// A forwarded request to `upstream` ended after `took`.
    pub fn forwarded(&self, upstream: &str, took: Duration, failed: bool) {
        let labels = Upstream {
            upstream: upstream.to_string(),
        };
        self.upstream_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.upstream_errors.get_or_create(&labels).inc();
        }
    }

    /// A process or connection of `upstream` started (`true`) or ended.
    pub fn upstream_running(&self, upstream: &str, running: bool) {
        let labels = Upstream {
            upstream: upstream.to_string(),
        };
        let count = self.upstream_running.get_or_create(&labels);
        let now = if running {
            count.inc() + 1
        } else {
            count.dec() - 1
        };
        self.upstream_up
            .get_or_create(&labels)
            .set(i64::from(now > 0));
    }

    /// A session of `transport` opened (`true`) or closed.
    pub fn session(&self, transport: &'static str, open: bool) {
        let labels = Transport { transport };
        if open {
            self.sessions_started.get_or_create(&labels).inc();
            self.sessions.get_or_create(&labels).inc();
        } else {
            self.sessions.get_or_create(&labels).dec();
        }
    }

    /// The policy now in force.
    pub fn policy(&self, revision: &str) {
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&Revision {
                revision: revision.to_string(),
            })
            .set(1);
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at each scrape
/// (Linux; elsewhere only what `getrlimit` tells).
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self/stat` says of the process.
struct Stat {
    cpu_seconds: f64,
    threads: i64,
    start_time_seconds: f64,
    virtual_bytes: i64,
    resident_bytes: i64,
}

impl Stat {
    fn read() -> Option<Stat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name (which may hold spaces and parentheses),
        // fields from the third (`state`) on; `proc(5)` numbers them from 1.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        // SAFETY: sysconf only reads configuration.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let (ticks, page) = (ticks.max(1) as f64, u64::try_from(page).unwrap_or(4096));
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|t| t.trim().parse::<u64>().ok())
        })?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Some(Stat {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            threads: as_i64(field(20)?),
            start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
            virtual_bytes: as_i64(field(23)?),
            resident_bytes: as_i64(field(24)?.saturating_mul(page)),
        })
    }
}

/// Descriptors open now (the directory's own excluded).
fn open_fds() -> Option<i64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(n.saturating_sub(1)).ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let limit = crate::downstream::http::front_door::open_file_limit();
        if let Ok(limit) = i64::try_from(limit) {
            encode_one(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                ConstGauge::new(limit),
            )?;
        }
        if let Some(fds) = open_fds() {
            encode_one(
                e,
                "process_open_fds",
                "Number of open file descriptors",
                ConstGauge::new(fds),
            )?;
        }
        let Some(stat) = Stat::read() else {
            return Ok(());
        };
        encode_one(
            e,
            "process_threads",
            "Number of OS threads in the process",
            ConstGauge::new(stat.threads),
        )?;
        encode_one(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(stat.resident_bytes),
        )?;
        encode_one(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            ConstGauge::new(stat.virtual_bytes),
        )?;
        encode_one(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            ConstGauge::new(stat.start_time_seconds),
        )?;
        encode_one(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(stat.cpu_seconds),
        )
    }
}

/// One metric without labels, `name` and `help` as given.
fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// `method` if the firewall's method table knows it, else `other`: the
/// label never carries a client's free text.
pub fn method_label(method: &str) -> &'static str {
    if let Some(m) = ClientRequest::parse(method) {
        return m.as_str();
    }
    if let Some(m) = ServerRequest::parse(method) {
        return m.as_str();
    }
    match method {
        "hook/PreToolUse" => "hook/PreToolUse",
        _ => "other",
    }
}

/// Connections the metrics listener holds at once (scrapers need one or
/// two); beyond, `503` at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Serve `GET /metrics` on `addr` until the process ends; `refresh` runs
/// before each scrape (gauges read from elsewhere, e.g. the approval store).
pub async fn serve(
    addr: std::net::SocketAddr,
    refresh: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<std::net::SocketAddr> {
    use axum::http::header;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let refresh = refresh.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || {
                    refresh();
                    metrics().encode()
                })
                .await
                .unwrap_or_default();
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "metrics are served beyond loopback; they carry no secrets, \
            but upstream names and the policy revision: restrict who can reach this port");
    }
    // Through the front door, as the other listeners: a header-read
    // deadline and a connection cap. Served bare, every idle connection
    // to this port held a descriptor for ever, and enough of them left the
    // process none for its clients, upstreams or audit log.
    use crate::downstream::http::front_door::{Limits, serve_beside};
    serve_beside(listener, app, Limits::beside("metrics", MAX_CONNECTIONS));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_in_the_method_table() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("elicitation/create"), "elicitation/create");
        assert_eq!(method_label("tools/call\"} 1\nevil"), "other");
        assert_eq!(method_label("x".repeat(10_000).as_str()), "other");
    }

    #[test]
    fn the_exposition_names_every_metric_with_the_prefix() {
        let m = metrics();
        m.decided("tools/call", "allow", Some(Duration::from_micros(30)));
        m.policy("sha256:abc");
        let text = m.encode();
        assert!(
            text.contains("mcp_firewall_decisions_total{method=\"tools/call\",result=\"allow\"}"),
            "{text}"
        );
        assert!(
            text.contains("mcp_firewall_policy_info{revision=\"sha256:abc\"} 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
        // The process metrics follow, unprefixed, before the one `# EOF`.
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(!text.contains("mcp_firewall_process_"), "{text}");
    }
}
