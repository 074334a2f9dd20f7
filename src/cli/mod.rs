//! What each subcommand does. `anyhow` lives here, at the edge.

pub mod approvals;
pub mod clients;
pub mod hook;
pub mod install;
pub mod library;
pub mod policy;
pub mod tools;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use crate::{DecisionArgs, RunArgs};
use mcp_firewall::approval::{Approvals, endpoint};
use mcp_firewall::audit::{
    AuditLog, CheckpointSettings, CheckpointSigner, checkpoint, verify_checkpoints,
    verify_file_hashes,
};
use mcp_firewall::config::{
    Config, check_url, parse_fsync, parse_listen, positive_bytes, positive_secs,
};
use mcp_firewall::downstream::http::Listener;
use mcp_firewall::downstream::http::auth::Authenticator;
use mcp_firewall::downstream::http::session::CLOSE_GRACE;
use mcp_firewall::downstream::stdio;
use mcp_firewall::policy::PolicySet;
use mcp_firewall::proxy::session::{Principal, Session};
use mcp_firewall::proxy::{CLIENT_QUEUE, Proxy, Shared};
use mcp_firewall::reload;
use mcp_firewall::scope::Scope;

/// The process's runtime: every session, connection and upstream on it.
/// Its workers collect their own heaps as they park
/// ([`crate::collect_when_parking`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::collect_when_parking)
        .build()
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = resolve_config(&args)?;
    if args.shadow {
        config.shadow = true;
    }
    let budget = mcp_firewall::budget::big_messages();
    budget.set_limit(config.message_memory_bytes);
    budget.set_share(config.message_memory_per_principal());
    let policy = PolicySet::load_dir(&config.policy_dir, &config.package)
        .with_context(|| format!("policy in {} failed to load", config.policy_dir.display()))?;
    let audit = Arc::new(open_audit(&config)?);
    let approvals = Arc::new(Approvals::open(config.approval.clone(), audit.clone())?);
    let principal = principal_for(&args.decision, &config);
    let record = json!({
        "revision": policy.revision(),
        "package": policy.package(),
        "files": policy.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "shadow": config.shadow,
    });
    audit.append("policy.loaded", record)?;
    if config.shadow {
        tracing::warn!(
            "SHADOW MODE: every decision is evaluated and logged, but calls are forwarded regardless"
        );
    }
    let listen = config.http.listen;
    let shared = Arc::new(Shared::new(config, policy, audit.clone(), approvals));
    let runtime = runtime()?;
    if let Some(every) = audit.checkpoint_every() {
        runtime.spawn(checkpoint_timer(audit.clone(), every));
    }
    if let Some(sink) = shared.config.sink.clone() {
        let checkpoints = shared.config.checkpoints.as_ref().map(|c| c.path.clone());
        runtime.spawn(mcp_firewall::audit::sink::run(
            shared.config.audit_path.clone(),
            checkpoints,
            sink,
        ));
    }
    mcp_firewall::metrics::metrics().policy(shared.policy.current().revision());
    if let Some(addr) = shared.config.metrics_listen {
        let bound = runtime
            .block_on(mcp_firewall::metrics::serve(
                addr,
                pending_approvals(&shared),
            ))
            .with_context(|| format!("metrics listener on {addr}"))?;
        // One plain line, like the MCP listener's: scripts read the port.
        mcp_firewall::logging::line(&format!("mcp-firewall: metrics on http://{bound}/metrics"));
    }
    // For the final chain head (below), after `shared` is handed over.
    let approvals = shared.approvals.clone();
    match listen {
        Some(addr) if args.stdio => runtime.block_on(async {
            let stdio =
                serve_stdio_session(shared.clone(), Session::new("stdio", principal.clone()));
            let (http, stdio) = tokio::join!(serve_http(addr, shared, principal), stdio);
            http.and(stdio)
        })?,
        Some(addr) => runtime.block_on(serve_http(addr, shared, principal))?,
        None => {
            let revision = shared.policy.current().revision().to_string();
            tracing::info!(%revision, audit = %shared.config.audit_path.display(), "mcp-firewall ready on stdio");
            runtime.block_on(serve_stdio(shared, Session::new("stdio", principal)))?;
        }
    }
    // Upstream processes are killed when the runtime drops their handles.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // The last records of the run, signed; on a shared store the head is
    // recorded here, as the recording thread may not outlive the process.
    if let (Some(last), Some(approvals), Some(replica)) =
        (audit.checkpoint()?, &approvals, audit.replica())
    {
        let log = audit.path().display().to_string();
        if let Err(e) = approvals.store.record_audit_head(
            replica,
            &log,
            last.seq,
            &last.head,
            chrono::Utc::now(),
        ) {
            tracing::error!("could not record the final audit chain head in the store: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What refreshes the pending-approvals gauge before a scrape: the store's
/// count (it is shared with hook processes and the CLI).
fn pending_approvals(shared: &Arc<Shared>) -> Arc<dyn Fn() + Send + Sync> {
    let approvals = shared.approvals.clone();
    Arc::new(move || {
        let pending = approvals
            .as_ref()
            .and_then(|a| {
                a.store
                    .list(Some(mcp_firewall::approval::Status::Pending))
                    .ok()
            })
            .map_or(0, |l| l.len());
        mcp_firewall::metrics::metrics()
            .approvals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    })
}

/// The audit log of `config`, signing checkpoints when it has a key (a key
/// that cannot be loaded stops the start: no silent unsigned log).
pub(crate) fn open_audit(config: &Config) -> anyhow::Result<AuditLog> {
    let audit = AuditLog::open(&config.audit_path, config.fsync)?;
    let mut audit = match &config.checkpoints {
        Some(settings) => audit.with_checkpoints(CheckpointSigner::load(settings.clone())?),
        None => audit,
    };
    // Replicas sharing a store: each names itself in its records and
    // records its chain head there at every signed checkpoint.
    if let Some(url) = &config.approval.store_url {
        let replica = match &config.approval.replica {
            Some(name) => name.clone(),
            None => host_name(),
        };
        audit = audit.with_replica(replica.clone());
        if config.checkpoints.is_some() {
            let store = mcp_firewall::approval::ApprovalStore::connect(url)?;
            audit.on_checkpoint(record_heads(store, replica, &config.audit_path));
        }
    }
    Ok(audit)
}

/// This machine's name (the default replica id).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a buffer of the length we pass; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    mcp_firewall::config::check_replica(&name).unwrap_or_else(|_| "replica".into())
}

/// Signed heads waiting for the recording thread; heads only move forward,
/// so when the store falls this far behind, a later head stands in for the
/// ones dropped (and the last of a run is recorded at exit).
const PENDING_HEADS: usize = 16;

/// Hand each signed checkpoint's head to a thread that records it in the
/// store: the audit log's lock is never held across a database round trip,
/// and a store that is down costs a logged error, not an audit write.
fn record_heads(
    store: mcp_firewall::approval::ApprovalStore,
    replica: String,
    log: &Path,
) -> mcp_firewall::audit::writer::HeadRecorder {
    let log = log.display().to_string();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, String)>(PENDING_HEADS);
    std::thread::Builder::new()
        .name("audit-heads".into())
        .spawn(move || {
            for (seq, head) in rx {
                if let Err(e) =
                    store.record_audit_head(&replica, &log, seq, &head, chrono::Utc::now())
                {
                    tracing::error!("could not record the audit chain head in the store: {e}");
                }
            }
        })
        .expect("a thread for the audit heads");
    Box::new(move |seq, head| {
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = tx.try_send((seq, head.to_string())) {
            tracing::warn!(
                seq,
                "the store is behind on audit chain heads; this one is skipped"
            );
        }
    })
}

/// Sign a checkpoint every `every` while records are being written.
async fn checkpoint_timer(audit: Arc<AuditLog>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let audit = audit.clone();
        match tokio::task::spawn_blocking(move || audit.checkpoint()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("audit checkpoint failed: {e}"),
            Err(e) => tracing::error!("audit checkpoint task failed: {e}"),
        }
    }
}

async fn start_background(shared: &Arc<Shared>) -> anyhow::Result<()> {
    if let (Some(approvals), Some(addr)) = (&shared.approvals, shared.config.approval.listen) {
        endpoint::serve(approvals.clone(), addr)
            .await
            .with_context(|| format!("approval endpoint on {addr}"))?;
    }
    tokio::spawn(reload::watch(shared.clone()));
    Ok(())
}

/// HTTP mode: every session gets its own proxy; stdin is not read. With no
/// `[http] tokens`, every request is `principal` (loopback only).
async fn serve_http(
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    principal: Principal,
) -> anyhow::Result<()> {
    start_background(&shared).await?;
    let oauth =
        mcp_firewall::downstream::http::oauth::ResourceServer::new(&shared.config.http.oauth);
    let auth = Authenticator::from_tokens(
        &shared.config.http.tokens,
        |name| std::env::var(name).ok(),
        principal,
    )?
    .with_oauth(oauth);
    let revision = shared.policy.current().revision().to_string();
    let listener = Listener::bind(addr, shared, auth).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%revision, "mcp-firewall ready: Streamable HTTP at http://{bound}/mcp, legacy SSE at http://{bound}/sse");
    // One plain line on stderr whatever RUST_LOG says: scripts and tests
    // that asked for port 0 read the port from it.
    mcp_firewall::logging::line(&format!("mcp-firewall: listening on http://{bound}"));
    listener.serve(shutdown_signal()).await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: closing every session and stopping its upstreams");
}

async fn serve_stdio(shared: Arc<Shared>, session: Session) -> anyhow::Result<()> {
    start_background(&shared).await?;
    serve_stdio_session(shared, session).await
}

/// How long calls in flight may still answer after the client closed stdin.
const STDIN_CLOSED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// One session on stdin/stdout, until stdin closes or a signal comes, in a
/// scope of its own: then every task of the session ends and its upstream
/// processes are stopped and reaped, while an HTTP listener beside it
/// (`--listen --stdio`) keeps serving.
async fn serve_stdio_session(shared: Arc<Shared>, session: Session) -> anyhow::Result<()> {
    let scope = Scope::for_principal(&session.principal.id);
    let (tx, rx) = tokio::sync::mpsc::channel(CLIENT_QUEUE);
    let mut writer = tokio::spawn(stdio::write_stdout(rx));
    let (proxy, events) = scope.enter(|| Proxy::start(shared, session, tx))?;
    scope.spawn(proxy.clone().run_events(events));
    let reader = scope.spawn(stdio::read_stdin(proxy.clone()));
    let stdin_closed = tokio::select! {
        _ = reader => true,
        _ = shutdown_signal() => false,
    };
    proxy.end(if stdin_closed {
        "the client closed stdin"
    } else {
        "the firewall is shutting down"
    });
    drop(proxy);
    if stdin_closed {
        // A client may write its requests and close stdin at once: calls
        // in flight get a moment to answer.
        let _ = tokio::time::timeout(STDIN_CLOSED_GRACE, &mut writer).await;
    }
    scope.close();
    if !scope.finished(CLOSE_GRACE).await {
        tracing::warn!(
            tasks = scope.running(),
            "the stdio session's tasks did not end within {CLOSE_GRACE:?}"
        );
    }
    let _ = tokio::time::timeout(STDIN_CLOSED_GRACE, writer).await;
    Ok(())
}

fn resolve_config(args: &RunArgs) -> anyhow::Result<Config> {
    let wrapped = match (&args.url, args.command.is_empty()) {
        (Some(url), _) => {
            let headers = args
                .headers
                .iter()
                .map(|h| match h.split_once(':') {
                    Some((name, value)) if !name.trim().is_empty() => {
                        Ok((name.trim().to_string(), value.trim().to_string()))
                    }
                    _ => Err(anyhow::anyhow!(
                        "--header: expected `Name: value`, got {h:?}"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Some(Config::wrap_url(
                args.name.clone(),
                url,
                args.transport.clone(),
                &headers,
            )?)
        }
        (None, false) => Some(Config::wrap(args.name.clone(), args.command.clone())?),
        (None, true) => None,
    };
    let mut config = match (&args.config, wrapped) {
        (Some(file), None) => Config::from_file(file)?,
        (None, Some(wrapped)) => wrapped,
        (Some(file), Some(wrapped)) => {
            let mut config = Config::settings_from_file(file)?;
            if !config.upstreams.is_empty() {
                bail!(
                    "{} names [[upstream]] tables: with a wrapped server (-- COMMAND or --url) the config may hold only settings",
                    file.display()
                );
            }
            config.upstreams = wrapped.upstreams;
            config.passthrough_names = true;
            config
        }
        (None, None) => {
            bail!("nothing to run: give --config FILE, -- COMMAND ARGS... or --url URL")
        }
    };
    apply_decision_flags(&args.decision, &mut config)?;
    if args.approval_tasks {
        config.approval.tasks = true;
    }
    if let Some(listen) = &args.approval_listen {
        config.approval.listen =
            Some(parse_listen(listen).map_err(|m| anyhow::anyhow!("--approval-listen: {m}"))?);
    }
    if let Some(listen) = &args.listen {
        config.http.listen =
            Some(parse_listen(listen).map_err(|m| anyhow::anyhow!("--listen: {m}"))?);
    }
    if let Some(listen) = &args.metrics_listen {
        config.metrics_listen =
            Some(parse_listen(listen).map_err(|m| anyhow::anyhow!("--metrics-listen: {m}"))?);
    }
    if let Some(bytes) = args.max_result_bytes {
        config.max_result_bytes =
            positive_bytes(bytes).map_err(|m| anyhow::anyhow!("--max-result-bytes: {m}"))?;
    }
    if let Some(bytes) = args.message_memory_bytes {
        config.message_memory_bytes =
            positive_bytes(bytes).map_err(|m| anyhow::anyhow!("--message-memory-bytes: {m}"))?;
    }
    if let Some(bytes) = args.message_memory_per_principal_bytes {
        config.message_memory_per_principal_bytes = Some(
            positive_bytes(bytes)
                .map_err(|m| anyhow::anyhow!("--message-memory-per-principal-bytes: {m}"))?,
        );
    }
    if let Some(secs) = args.tools_refresh {
        config.tools_refresh =
            positive_secs(secs).map_err(|m| anyhow::anyhow!("--tools-refresh: {m}"))?;
    }
    // Wrap-form settings of the one upstream (a config file sets them per
    // `[[upstream]]`; the flags override every upstream there too).
    for upstream in &mut config.upstreams {
        if let Some(secs) = args.upstream_timeout {
            upstream.timeout =
                positive_secs(secs).map_err(|m| anyhow::anyhow!("--upstream-timeout: {m}"))?;
        }
        if args.trust_annotations {
            upstream.trust_annotations = true;
        }
        if args.shared
            && let mcp_firewall::config::UpstreamKind::Process(process) = &mut upstream.kind
        {
            process.shared = true;
        }
    }
    Ok(config)
}

/// Where a command finds the store: a data directory (SQLite) or the
/// PostgreSQL database replicas share.
#[derive(Debug, Clone)]
pub enum StoreAt {
    Dir(std::path::PathBuf),
    Url(String),
}

impl StoreAt {
    pub fn open(&self) -> anyhow::Result<mcp_firewall::approval::ApprovalStore> {
        use mcp_firewall::approval::ApprovalStore;
        Ok(match self {
            StoreAt::Dir(dir) => ApprovalStore::open(dir)?,
            StoreAt::Url(url) => ApprovalStore::connect(url)?,
        })
    }
}

/// Shown in messages: never a password.
impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::Dir(dir) => write!(f, "{}", dir.display()),
            StoreAt::Url(url) => f.write_str(&mcp_firewall::approval::store::describe_url(url)),
        }
    }
}

/// The flags `run` and `hook` share, over the config's settings.
fn apply_decision_flags(args: &DecisionArgs, config: &mut Config) -> anyhow::Result<()> {
    if let Some(dir) = &args.policy {
        config.policy_dir = dir.clone();
    }
    if let Some(package) = &args.package {
        config.package = package.clone();
    }
    if let Some(path) = &args.audit_log {
        // Checkpoints that were to sit beside the old log move with it.
        if let Some(settings) = &mut config.checkpoints
            && settings.path == checkpoint::default_path(&config.audit_path)
        {
            settings.path = checkpoint::default_path(path);
        }
        config.audit_path = path.clone();
    }
    if let Some(mode) = &args.audit_fsync {
        config.fsync = parse_fsync(mode).map_err(|m| anyhow::anyhow!("--audit-fsync: {m}"))?;
    }
    if let Some(key) = &args.audit_signing_key {
        let settings = config
            .checkpoints
            .get_or_insert_with(|| CheckpointSettings::beside(&config.audit_path, key.clone()));
        settings.key = key.clone();
    }
    if let Some(path) = &args.audit_checkpoints {
        let Some(settings) = &mut config.checkpoints else {
            anyhow::bail!("--audit-checkpoints needs --audit-signing-key (or [audit] signing_key)");
        };
        settings.path = path.clone();
    }
    if let Some(p) = &args.principal {
        mcp_firewall::identity::Identity::parse(p)
            .map_err(|e| anyhow::anyhow!("--principal: {e}"))?;
    }
    let approval = &mut config.approval;
    if let Some(url) = &args.approval_webhook {
        check_url(url).map_err(|m| anyhow::anyhow!("--approval-webhook: {m}"))?;
        approval.webhook_url = Some(url.clone());
    }
    if let Some(secs) = args.approval_timeout {
        approval.timeout =
            positive_secs(secs).map_err(|m| anyhow::anyhow!("--approval-timeout: {m}"))?;
    }
    if let Some(secs) = args.approval_wait {
        approval.wait = std::time::Duration::from_secs(secs);
    }
    if let Some(n) = args.approval_max_pending {
        approval.max_pending_per_principal = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(dir) = &args.data_dir {
        approval.data_dir = dir.clone();
    }
    if let Some(url) = &args.store_url {
        approval.store_url = Some(
            mcp_firewall::config::check_store_url(url)
                .map_err(|m| anyhow::anyhow!("--store-url: {m}"))?,
        );
    }
    if let Some(name) = &args.replica_id {
        approval.replica = Some(
            mcp_firewall::config::check_replica(name)
                .map_err(|m| anyhow::anyhow!("--replica-id: {m}"))?,
        );
    }
    if let Some(file) = &args.approvers {
        approval.approvers_file = Some(file.clone());
    }
    if approval.secrets.is_empty()
        && let Ok(value) = std::env::var(&config.secret_env)
    {
        approval.secrets = value
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    Ok(())
}

/// Who the session is: `--principal`, the config's, or the OS user.
fn principal_for(args: &DecisionArgs, config: &Config) -> Principal {
    match (&args.principal, &config.principal) {
        (Some(p), _) => Principal::new(p, "flag"),
        (None, Some(p)) => Principal::new(p, "config"),
        (None, None) => Principal::os_user(),
    }
}

/// `audit verify FILE [--checkpoints CP --public-key KEY]`.
pub fn audit_verify(
    files: &[std::path::PathBuf],
    signed: Option<(&Path, &Path)>,
    store_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if files.len() > 1 && signed.is_some() {
        bail!("--checkpoints belongs to one log: verify one log at a time with it");
    }
    let store = store_url
        .map(|url| {
            mcp_firewall::config::check_store_url(url)
                .map_err(|m| anyhow::anyhow!("--store-url: {m}"))
                .and_then(|url| Ok(mcp_firewall::approval::ApprovalStore::connect(&url)?))
        })
        .transpose()?;
    let mut intact = true;
    for file in files {
        if files.len() > 1 {
            println!("{}:", file.display());
        }
        intact &= verify_log(file, signed, store.as_ref())? == ExitCode::SUCCESS;
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The replica a log's records name (its first record that names one).
fn replica_of(file: &Path) -> Option<String> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    reader.lines().map_while(Result::ok).find_map(|line| {
        serde_json::from_str::<serde_json::Value>(&line)
            .ok()?
            .get("replica")?
            .as_str()
            .map(str::to_string)
    })
}

/// Compare a verified log with the chain heads its replica recorded in the
/// store; `false` if a recorded head is missing from it or differs.
fn matches_store_heads(
    file: &Path,
    hashes: &[String],
    store: &mcp_firewall::approval::ApprovalStore,
) -> anyhow::Result<bool> {
    let Some(replica) = replica_of(file) else {
        println!("WARNING: no record names a replica: nothing to compare with the store");
        return Ok(true);
    };
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let heads: Vec<_> = store
        .audit_heads(&replica)?
        .into_iter()
        .filter(|h| {
            Path::new(&h.log)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                == name
        })
        .collect();
    if heads.is_empty() {
        println!("WARNING: the store has no chain head of replica {replica} for this log yet");
        return Ok(true);
    }
    let mut intact = true;
    for h in heads {
        let (log, seq, head) = (h.log, h.seq, h.head);
        let at = h.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match usize::try_from(seq)
            .ok()
            .and_then(|s| hashes.get(s.checked_sub(1)?))
        {
            Some(found) if *found == head => println!(
                "ok: replica {replica}: the head it recorded in the store ({log}, seq {seq}, {at}) is in this log"
            ),
            Some(found) => {
                intact = false;
                println!(
                    "TAMPERED: replica {replica} recorded seq {seq} with head {head} in the store ({at}); this log's record {seq} has {found}"
                );
            }
            None => {
                intact = false;
                println!(
                    "TRUNCATED: replica {replica} recorded seq {seq} (head {head}) in the store ({at}); this log ends at seq {}",
                    hashes.len()
                );
            }
        }
    }
    Ok(intact)
}

fn verify_log(
    file: &Path,
    signed: Option<(&Path, &Path)>,
    store: Option<&mcp_firewall::approval::ApprovalStore>,
) -> anyhow::Result<ExitCode> {
    let (summary, hashes) = match verify_file_hashes(file) {
        Ok(verified) => verified,
        Err(e) => {
            println!("BROKEN: {}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("ok: {} records, head {}", summary.records, summary.head);
    if let Some(store) = store
        && !matches_store_heads(file, &hashes, store)?
    {
        return Ok(ExitCode::FAILURE);
    }
    let Some((checkpoints, public_key)) = signed else {
        return Ok(ExitCode::SUCCESS);
    };
    match verify_checkpoints(&hashes, checkpoints, public_key) {
        Ok(report) => {
            match &report.last {
                Some((seq, time)) => println!(
                    "ok: {} checkpoint(s) signed by {} match; the last covers seq {seq} (signed {time}); \
                     records after it: {}",
                    report.checkpoints,
                    report.key,
                    summary.records - seq
                ),
                None => println!(
                    "WARNING: {} has no checkpoints yet: nothing is signed",
                    checkpoints.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("TAMPERED: {}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
