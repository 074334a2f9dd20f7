//! The `mcp-firewall` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod cli;

/// mimalloc: a decision allocates and frees many small values (the policy
/// input as regorus values, the interpreter's scratch); with the system
/// allocator malloc/free were about a third of a decision's time, and one
/// decision with the shipped library took ~400 µs against ~220 µs with
/// mimalloc (`cargo bench --bench policy_eval`, issue 11).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often a thread asks mimalloc to give freed memory back.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Give memory freed since the last look back to the system every
/// [`PURGE_INTERVAL`]. mimalloc purges freed pages 1 s after the free, but
/// only when it is next called: a firewall that went idle after answering a
/// 20 MB `tools/list` kept 141 MB resident, 368 MB after a 60 MB listing,
/// for as long as it stayed idle. Purging at once instead
/// (`MIMALLOC_PURGE_DELAY=0`) fixes that but cost 70 % more CPU per call
/// with 1 MB results (pages decommitted and faulted back on every call);
/// a forced collection every 2 s costs one wake-up (docs/performance.md).
fn purge_freed_memory_periodically() {
    let spawned = std::thread::Builder::new()
        .name("memory-purge".into())
        .spawn(|| {
            loop {
                std::thread::sleep(PURGE_INTERVAL);
                purge_freed_memory();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no memory-purge thread: {e}");
    }
}

/// How much of a worker's work may go uncollected: at most one collection
/// of its heap per this, when it parks.
const COLLECT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Run by each runtime worker as it parks (runs out of work): collect its
/// own heap, at most once per [`COLLECT_INTERVAL`]. A worker frees what
/// other workers allocated (tasks move between them), and mimalloc takes
/// such frees into the owner's pages only when the owner next allocates;
/// pages emptied that way go back to the system only once their owner
/// collects. [`purge_freed_memory`] collects the calling thread's heap, not
/// the workers', so a worker that parked for good after a burst kept them
/// for as long as the firewall stayed idle (docs/performance.md).
pub(crate) fn collect_when_parking() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> =
            const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    if LAST
        .get()
        .is_some_and(|last| now.duration_since(last) < COLLECT_INTERVAL)
    {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: as in `purge_freed_memory`; the calling thread is a worker
    // with a heap of its own.
    unsafe { mi_collect(false) };
}

// mimalloc's own API (mimalloc.h), in the library the `mimalloc` crate
// links. Declared here rather than through libmimalloc-sys's `extended`
// feature: a new dependency or feature changes the hash in every symbol of
// this crate, and with it the start-up order in link/text-order.txt.
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// Force mimalloc's pending purges, program-wide.
fn purge_freed_memory() {
    // mimalloc collects through the calling thread's heap, which a thread
    // gets on its first allocation: without one, this would do nothing.
    drop(std::hint::black_box(Box::new(0u64)));
    // SAFETY: mi_collect takes a C bool and may be called from any thread
    // at any time.
    unsafe { mi_collect(true) };
}

#[derive(Parser)]
#[command(
    name = "mcp-firewall",
    version,
    about = "Policy, approval and audit between AI clients and MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP (stdio, or HTTP with --listen) in front of one or more upstream servers.
    Run(Box<RunArgs>),
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Work with policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// List and answer held calls.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Put an AI client's MCP servers behind the firewall (backs up and
    /// rewrites its config; prints a diff). Claude Code also gets the hook.
    Install(InstallArgs),
    /// Undo `install`: the client's config as it was.
    Uninstall(InstallArgs),
    /// Write a starter config and the policy library (default
    /// ~/.config/mcp-firewall), then say what to do next.
    Init {
        /// Where to write them.
        dir: Option<PathBuf>,
    },
    /// Decide a client's own tool uses (Claude Code's PreToolUse/PostToolUse
    /// hook JSON on stdin) with the same policy, approvals and audit log.
    Hook(Box<HookArgs>),
    /// Show and manage tool pins (the definitions the firewall trusts).
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
}

/// Where `approvals` and `tools` find the store.
#[derive(Args)]
struct StoreArgs {
    /// Approval store directory (default ~/.local/share/mcp-firewall).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The PostgreSQL store replicas share (`postgres://...`), instead of a
    /// directory; keep a password out of argv with the environment variable.
    #[arg(
        long,
        env = "MCP_FIREWALL_STORE_URL",
        hide_env_values = true,
        conflicts_with = "data_dir"
    )]
    store_url: Option<String>,
}

impl StoreArgs {
    fn at(&self) -> anyhow::Result<cli::StoreAt> {
        use mcp_firewall::approval::ApprovalSettings;
        Ok(match (&self.store_url, &self.data_dir) {
            (Some(url), _) => cli::StoreAt::Url(
                mcp_firewall::config::check_store_url(url)
                    .map_err(|m| anyhow::anyhow!("--store-url: {m}"))?,
            ),
            (None, dir) => cli::StoreAt::Dir(
                dir.clone()
                    .unwrap_or_else(ApprovalSettings::default_data_dir),
            ),
        })
    }
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Every pinned tool, its status, fingerprint and who pinned it.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Pinned tools whose definition changed since, field by field (exit 1 if any).
    Diff {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Accept the definition a tool has now as approved (signed with your key).
    Pin(PinArgs),
    /// Forget a tool's pin (signed); the next listing pins it on first use.
    Unpin(PinArgs),
}

#[derive(Args)]
struct PinArgs {
    tool: String,
    /// Part of the upstream's identity (its command line or URL), when
    /// several upstreams have a tool of this name.
    #[arg(long)]
    upstream: Option<String>,
    #[arg(long = "as")]
    approver: String,
    /// Your OpenSSH Ed25519 private key, registered in the --approvers file.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List approval requests, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this status: pending, approved, denied, expired, withdrawn, used.
        #[arg(long)]
        status: Option<String>,
    },
    /// Print one approval request with its answers.
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Approve a held call (signed with your registered SSH key).
    Approve(AnswerArgs),
    /// Deny a held call (signed with your registered SSH key).
    Deny(AnswerArgs),
    /// Print the exact message an answer signs, for `ssh-keygen -Y sign -n mcp-firewall-approval`.
    Message {
        id: String,
        /// approve or deny.
        #[arg(long)]
        decision: String,
        #[arg(long = "as")]
        approver: String,
        #[arg(long)]
        reason: String,
        /// Unix seconds to sign (pass the same to approve/deny --timestamp).
        #[arg(long)]
        timestamp: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args)]
struct AnswerArgs {
    id: String,
    /// Who is answering (recorded; may not be the requester).
    #[arg(long = "as")]
    approver: String,
    /// Why (required).
    #[arg(long)]
    reason: String,
    /// Your OpenSSH Ed25519 private key (unencrypted), registered for NAME
    /// in the firewall's --approvers file.
    #[arg(
        long,
        required_unless_present = "signature",
        conflicts_with = "signature"
    )]
    key: Option<PathBuf>,
    /// A signature made with `ssh-keygen -Y sign -n mcp-firewall-approval`
    /// over the output of `approvals message` (needs --timestamp).
    #[arg(long, requires = "timestamp")]
    signature: Option<PathBuf>,
    /// The timestamp given to `approvals message`.
    #[arg(long, requires = "signature")]
    timestamp: Option<i64>,
    #[command(flatten)]
    store: StoreArgs,
}

/// `run`: `--config FILE` naming the upstreams, or the wrap form (`--
/// COMMAND ARGS...` or `--url URL`), whose settings may come from a
/// `--config FILE` without upstreams.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML config: upstreams and settings, or (with the wrap form) only
    /// settings (see README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Wrap a remote MCP server (Streamable HTTP or SSE) instead of a command.
    #[arg(long, conflicts_with = "command")]
    pub url: Option<String>,
    /// With --url: a request header `Name: value`; `${VAR}` in the value is
    /// read from the environment (keep secrets off the command line).
    #[arg(long = "header", requires = "url")]
    pub headers: Vec<String>,
    /// With --url: `streamable-http` (default) or `sse`.
    #[arg(long, requires = "url")]
    pub transport: Option<String>,
    #[command(flatten)]
    pub decision: DecisionArgs,
    /// Evaluate and log every decision but forward every call (policy roll-out).
    #[arg(long)]
    pub shadow: bool,
    /// Seconds a forwarded request may wait for the upstream's answer (default 300).
    #[arg(long)]
    pub upstream_timeout: Option<u64>,
    /// Trust the upstream's tool annotations (readOnlyHint, destructiveHint ...);
    /// policies see it as `input.server_trusted`. Default: untrusted hints.
    #[arg(long)]
    pub trust_annotations: bool,
    /// Results larger than this many bytes are truncated, with a note, before
    /// the model sees them (default 4 MiB).
    #[arg(long)]
    pub max_result_bytes: Option<usize>,
    /// Memory all sessions together may spend reading messages over 1 MiB,
    /// each counted at twice its size (default 1 GiB); a message that would
    /// go past it is refused, and the call it answers fails.
    #[arg(long)]
    pub message_memory_bytes: Option<usize>,
    /// The most of that memory one principal may hold (default: half when
    /// the HTTP listener knows several principals, else all of it).
    #[arg(long)]
    pub message_memory_per_principal_bytes: Option<usize>,
    /// Re-read tool definitions older than this many seconds before deciding
    /// a call (default 30), so a redefinition without list_changed is noticed.
    #[arg(long)]
    pub tools_refresh: Option<u64>,
    /// Upstream name in the wrap form, as policies see it in `input.server`.
    #[arg(long)]
    pub name: Option<String>,
    /// In the wrap form with --listen: one upstream process for every HTTP
    /// session instead of one per session (`shared = true`; only for
    /// servers that keep no per-session state, see README).
    #[arg(long, conflicts_with = "url")]
    pub shared: bool,
    /// Serve the signed answer endpoint on HOST:PORT (loopback).
    #[arg(long)]
    pub approval_listen: Option<String>,
    /// Answer a client's task-augmented tools/call with a task of the
    /// firewall's own: a held call returns at once and waits as a task
    /// (tools are listed with `execution.taskSupport: "optional"`).
    #[arg(long)]
    pub approval_tasks: bool,
    /// Serve MCP over HTTP on HOST:PORT (Streamable HTTP at /mcp, legacy SSE
    /// at /sse) instead of stdio; stdin is then ignored unless --stdio.
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (names start
    /// with `mcp_firewall_`).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// With --listen: also serve one session on stdin/stdout (same policy,
    /// audit log and approvals). HTTP keeps serving after stdin closes.
    #[arg(long, requires = "listen")]
    pub stdio: bool,
    /// The upstream server's command and arguments (wrap form).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Where decisions come from and go: the policy, the audit log and the
/// approvals (shared by `run` and `hook`).
#[derive(Args, Debug, Default)]
pub struct DecisionArgs {
    /// Directory of Rego policies (and JSON data files).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Rego package to evaluate.
    #[arg(long)]
    pub package: Option<String>,
    /// Audit log file (JSON Lines, hash-chained).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// `never` (write per record, the default) or `always` (fsync per record).
    #[arg(long)]
    pub audit_fsync: Option<String>,
    /// Sign checkpoints of the audit chain with this OpenSSH Ed25519 private
    /// key (`ssh-keygen -t ed25519`); keep it unreadable to the agent.
    #[arg(long)]
    pub audit_signing_key: Option<PathBuf>,
    /// The checkpoint file (default: the audit log's path + `.checkpoints`).
    #[arg(long)]
    pub audit_checkpoints: Option<PathBuf>,
    /// Principal of this stdio session (default: the OS user).
    #[arg(long)]
    pub principal: Option<String>,
    /// POST approval requests here (secret: env MCP_FIREWALL_WEBHOOK_SECRET=whsec_...).
    #[arg(long)]
    pub approval_webhook: Option<String>,
    /// Seconds an approval request stays answerable (default 300).
    #[arg(long)]
    pub approval_timeout: Option<u64>,
    /// Seconds a held call waits before answering "pending, call again" (default 50).
    #[arg(long)]
    pub approval_wait: Option<u64>,
    /// Unexpired pending approval requests one principal may have; calls held
    /// past it are refused (default 50).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub approval_max_pending: Option<u64>,
    /// Approvers' public keys (OpenSSH allowed_signers: `NAME ssh-ed25519 KEY`).
    /// CLI answers count only when signed by a key registered for the approver.
    #[arg(long)]
    pub approvers: Option<PathBuf>,
    /// Approval store directory (default ~/.local/share/mcp-firewall).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL store shared by several replicas (`postgres://...`;
    /// overrides `[store] url`); keep a password out of argv with the
    /// environment variable.
    #[arg(long, env = "MCP_FIREWALL_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    /// This replica's name in its audit records and in the store's chain
    /// heads (default: the host name; give each replica on one host its own).
    #[arg(long)]
    pub replica_id: Option<String>,
}

/// `install` / `uninstall`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// claude-desktop, claude-code, cursor, vscode or windsurf.
    #[arg(long, value_parser = cli::clients::CLIENTS.map(|(_, name)| name))]
    pub client: String,
    /// The client's config file, instead of where the client keeps it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `user` (default) or `project` (the current directory's `.mcp.json`,
    /// `.cursor/mcp.json` or `.vscode/mcp.json`).
    #[arg(long, default_value = "user", value_parser = ["user", "project"])]
    pub scope: String,
    /// The firewall's settings file for the wrapped servers (default: the
    /// one `init` writes, created if missing).
    #[arg(long)]
    pub firewall_config: Option<PathBuf>,
    /// Policy directory for the wrapped servers (overrides the settings file).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl InstallArgs {
    fn request(&self) -> cli::install::Request {
        cli::install::Request {
            client: cli::clients::Client::parse(&self.client).expect("checked by clap"),
            scope: if self.scope == "project" {
                cli::clients::Scope::Project
            } else {
                cli::clients::Scope::User
            },
            config: self.config.clone(),
            firewall_config: self.firewall_config.clone(),
            policy: self.policy.clone(),
            dry_run: self.dry_run,
        }
    }
}

/// `hook claude-code`: one tool use from Claude Code's hook, on stdin.
#[derive(Args, Debug)]
pub struct HookArgs {
    /// The client whose hook calls this (only `claude-code` for now).
    #[arg(value_parser = ["claude-code"])]
    pub client: String,
    /// The firewall's TOML config (policy, audit, approvals, approvers);
    /// its upstreams are not started.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub decision: DecisionArgs,
    /// A tool use no rule allows and no rule holds: `ask` hands it to the
    /// client's own permission prompt (the person at the keyboard), `hold`
    /// holds it for an approver like an MCP call.
    #[arg(long, default_value = "ask", value_parser = ["ask", "hold"])]
    pub unmatched: String,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit 0 if intact, 1 naming the first bad record.
    /// With --checkpoints and --public-key, also check the signed
    /// checkpoints: a record edited or removed with the chain recomputed, or
    /// records cut off the end, no longer match what was signed.
    Verify {
        /// One log, or each replica's log: every chain is checked and
        /// reported on its own.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The checkpoint file the firewall signed (`--audit-checkpoints`).
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The signing key's OpenSSH public key (`KEY.pub`).
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
        /// The store replicas share: each log must still hold the chain
        /// head its replica recorded there at its last checkpoint (a log
        /// cut short, or rewritten, no longer does).
        #[arg(long, env = "MCP_FIREWALL_STORE_URL", hide_env_values = true)]
        store_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run every `test_*` rule in the policy directory.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Run only tests whose `<package>.<name>` contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Print per-file line coverage of the policy files.
        #[arg(long)]
        coverage: bool,
    },
    /// Print the decision for one input document (or audit record).
    Eval {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = "policies")]
        policy: PathBuf,
        #[arg(long, default_value = mcp_firewall::config::DEFAULT_PACKAGE)]
        package: String,
        /// Also show each rule's value and which rule gave each reason.
        #[arg(long)]
        explain: bool,
    },
    /// Re-decide the logged `call.decided` records; print the ones that change.
    Replay {
        audit_log: PathBuf,
        #[arg(long, default_value = "policies")]
        policy: PathBuf,
        #[arg(long, default_value = mcp_firewall::config::DEFAULT_PACKAGE)]
        package: String,
    },
}

fn main() -> ExitCode {
    mcp_firewall::policy::discard_library_backtraces();
    let cli = Cli::parse();
    // A hook's stderr is what the model reads when a tool is blocked: only
    // warnings and errors go there.
    // A server's lines are queued for stderr, so a client that does not
    // read it never stalls a call; a one-shot command writes them directly.
    let logging = mcp_firewall::logging::init(
        if matches!(cli.command, Command::Hook(_)) {
            "mcp_firewall=warn"
        } else {
            "mcp_firewall=info"
        },
        matches!(cli.command, Command::Run(_)),
    );
    // A file-size limit (RLIMIT_FSIZE) hit by an audit write must fail that
    // write, which refuses the call; the default action of SIGXFSZ would kill
    // the process instead.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread is
    // started has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    mcp_firewall::downstream::http::front_door::raise_open_file_limit();
    let outcome = match cli.command {
        Command::Run(args) => {
            purge_freed_memory_periodically();
            cli::run(*args)
        }
        Command::Hook(args) => cli::hook::claude_code(*args),
        Command::Install(args) => cli::install::install(&args.request()),
        Command::Uninstall(args) => cli::install::uninstall(&args.request()),
        Command::Init { dir } => cli::install::init(dir),
        Command::Approvals { command } => approvals(command),
        Command::Tools { command } => tools(command),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    checkpoints,
                    public_key,
                    store_url,
                },
        } => cli::audit_verify(
            &files,
            checkpoints.as_deref().zip(public_key.as_deref()),
            store_url.as_deref(),
        ),
        Command::Policy { command } => policy(command),
    };
    logging.finish();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-firewall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn policy(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Test {
            dir,
            filter,
            coverage,
        } => cli::policy::test(
            &dir,
            &mcp_firewall::policy::TestOptions { filter, coverage },
        ),
        PolicyCommand::Eval {
            input,
            policy,
            package,
            explain,
        } => cli::policy::eval(&input, &policy, &package, explain),
        PolicyCommand::Replay {
            audit_log,
            policy,
            package,
        } => cli::policy::replay(&audit_log, &policy, &package),
    }
}

fn tools(command: ToolsCommand) -> anyhow::Result<ExitCode> {
    let change = |a: PinArgs, action: &str| {
        cli::tools::change(
            &a.store.at()?,
            action,
            &a.tool,
            a.upstream.as_deref(),
            &a.approver,
            &a.key,
        )
    };
    match command {
        ToolsCommand::List { store } => cli::tools::list(&store.at()?),
        ToolsCommand::Diff { store } => cli::tools::diff(&store.at()?),
        ToolsCommand::Pin(a) => change(a, "pin"),
        ToolsCommand::Unpin(a) => change(a, "unpin"),
    }
}

fn approvals(command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    use mcp_firewall::approval::Verdict;
    let answer = |a: AnswerArgs, decision: Verdict| {
        let signer = match (&a.key, &a.signature, a.timestamp) {
            (Some(key), _, _) => cli::approvals::Signer::KeyFile(key),
            (None, Some(file), Some(timestamp)) => {
                cli::approvals::Signer::Signature { file, timestamp }
            }
            _ => anyhow::bail!(
                "an answer must be signed: give --key FILE (or --signature FILE --timestamp T)"
            ),
        };
        cli::approvals::answer(
            &a.store.at()?,
            &a.id,
            decision,
            &a.approver,
            &a.reason,
            signer,
        )
    };
    match command {
        ApprovalsCommand::List { store, status } => {
            cli::approvals::list(&store.at()?, status.as_deref())
        }
        ApprovalsCommand::Show { id, store } => cli::approvals::show(&store.at()?, &id),
        ApprovalsCommand::Approve(a) => answer(a, Verdict::Approve),
        ApprovalsCommand::Deny(a) => answer(a, Verdict::Deny),
        ApprovalsCommand::Message {
            id,
            decision,
            approver,
            reason,
            timestamp,
            store,
        } => {
            let decision: Verdict = decision
                .parse()
                .map_err(|e| anyhow::anyhow!("--decision: {e}"))?;
            cli::approvals::message(&store.at()?, &id, decision, &approver, &reason, timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// In the parent: run the test `name` alone in a child process (so the
    /// harness's own allocations do not count) and check it passed; false.
    /// In that child: true, run the test's body.
    fn in_a_child_process(name: &str) -> bool {
        if std::env::var_os("MCP_FIREWALL_TEST_MEMORY_CHILD").is_some() {
            return true;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("MCP_FIREWALL_TEST_MEMORY_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }

    /// What a big listing leaves behind (many values of all sizes, freed on
    /// the thread that made them) is given back by a purge from another
    /// thread.
    #[test]
    fn a_purge_from_another_thread_gives_freed_memory_back() {
        if !in_a_child_process("tests::a_purge_from_another_thread_gives_freed_memory_back") {
            return;
        }
        let before = resident_kb();
        // The thread that made and freed them is still alive (a runtime
        // worker, say), so its heap still holds the freed pages.
        let (freed_tx, freed_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let listing: Vec<serde_json::Value> = (0..200)
                .map(|i| serde_json::json!({"name": format!("t{i}"), "description": "x".repeat(100_000)}))
                .collect();
            let text = serde_json::to_string(&listing).unwrap();
            assert!(text.len() > 20_000_000);
            drop((listing, text));
            freed_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        freed_rx.recv().unwrap();
        let freed = resident_kb();
        std::thread::spawn(purge_freed_memory).join().unwrap();
        let purged = resident_kb();
        eprintln!("VmRSS kB: before {before}, freed {freed}, purged {purged}");
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(
            freed > before + 30_000,
            "the allocations were resident: {freed} vs {before}"
        );
        assert!(purged < before + 10_000, "given back: {purged} vs {before}");
    }

    /// Small values made on a runtime worker and freed on another thread
    /// (tasks move between workers) stay resident, whatever another thread
    /// purges, until the worker that made them collects its heap: which the
    /// workers of `cli::runtime` do as they park. Before, a worker that
    /// parked for good after a burst kept them (90 MB here, against 4 MB).
    #[test]
    fn a_worker_gives_back_what_others_freed_when_it_parks() {
        if !in_a_child_process("tests::a_worker_gives_back_what_others_freed_when_it_parks") {
            return;
        }
        let runtime = cli::runtime().unwrap();
        let before = resident_kb();
        let (elsewhere_tx, elsewhere_rx) = std::sync::mpsc::channel::<Vec<String>>();
        let (freed_tx, freed_rx) = tokio::sync::oneshot::channel();
        let freer = std::thread::spawn(move || {
            drop(elsewhere_rx.recv().unwrap());
            // Past the workers' collection interval, so the park after
            // this is one that collects.
            std::thread::sleep(COLLECT_INTERVAL * 3);
            freed_tx.send(()).unwrap();
        });
        let made = runtime.spawn(async move {
            // Of all sizes, interleaved: half freed here, half elsewhere.
            let (mut here, mut elsewhere) = (Vec::new(), Vec::new());
            for i in 0..80_000 {
                let value = "x".repeat(16 + (i * 37) % 2000);
                if i % 2 == 0 {
                    here.push(value);
                } else {
                    elsewhere.push(value);
                }
            }
            drop(here);
            elsewhere_tx.send(elsewhere).unwrap();
            freed_rx.await.unwrap();
        });
        runtime.block_on(made).unwrap();
        freer.join().unwrap();
        // The worker has parked (nothing left to run); then the 2 s purge.
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::thread::spawn(purge_freed_memory).join().unwrap();
        let after = resident_kb();
        eprintln!("VmRSS kB: before {before}, after {after}");
        assert!(
            after < before + 10_000,
            "given back once the worker parked: {after} vs {before}"
        );
        drop(runtime);
    }
}
