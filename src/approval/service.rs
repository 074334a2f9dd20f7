//! The approval side of a running firewall: the store, the webhook, the
//! audit log and a wake-up signal for held calls, in one place.
//!
//! Answers arriving in this process (the webhook's own response, the signed
//! endpoint) go through [`Approvals::answer`], which records them in the
//! store and the audit log and wakes the held calls. Answers given with the
//! `mcp-firewall approvals` command land in the store from another process;
//! held calls poll the store, so they see those too, and audit them when
//! they do.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::Notify;

use super::approvers::{ApproverRegistry, RegistryError};
use super::directory::{ApproverDirectory, DirectoryEntry};
use super::model::AnswerRecord;
use super::proof::AnswerVerifier;
use super::proof::ConsoleKey;
use super::slack::Slack;
use super::store::{AnswerRejection, ApprovalStore, StoreError};
use super::teams::Teams;
use super::webhook::Webhook;
use super::{AnswerOutcome, NewAnswer, WebhookSecret};
use crate::audit::AuditLog;
use crate::identity::Identity;

/// How long an approval request stays answerable unless policy says
/// otherwise (`approval.timeout_seconds`).
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client's call is kept waiting before it gets "pending
/// approval <id>, call again". Below the ~60 s after which some desktop
/// clients abort any call regardless of progress.
pub const DEFAULT_APPROVAL_WAIT: Duration = Duration::from_secs(50);
/// How often a held call with a progress token hears that it is still held.
/// Well inside the 60 s idle timeout of SDK clients, which progress resets.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How often a held call re-reads the store, to see answers given by the
/// CLI in another process.
pub const HOLD_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Approval settings after validation.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    pub data_dir: PathBuf,
    /// `[store] url` / `--store-url`: PostgreSQL shared by replicas instead
    /// of `approvals.db` in `data_dir`.
    pub store_url: Option<String>,
    /// `[store] replica` / `--replica-id`: this firewall's name among the
    /// replicas sharing `store_url` (default: the host name).
    pub replica: Option<String>,
    pub webhook_url: Option<String>,
    pub secrets: Vec<String>,
    pub timeout: Duration,
    pub wait: Duration,
    pub listen: Option<SocketAddr>,
    /// `group:NAME` in an `approvers` obligation expands to these names.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Approvers and their public keys (`allowed_signers` format).
    pub approvers_file: Option<PathBuf>,
    /// `[[approver]]`: names, keys, OIDC/Slack identities, groups.
    pub directory: Vec<DirectoryEntry>,
    /// Where approvers open the console (links in messages); default the
    /// approval listener's own address.
    pub console_url: Option<String>,
    pub oidc: Option<OidcSettings>,
    pub slack: Option<SlackSettings>,
    pub teams: Option<TeamsSettings>,
    /// Run task-augmented `tools/call`s as the firewall's own tasks, so a
    /// held call answers at once and waits for its approval as a task
    /// (`[approval] tasks`, `--approval-tasks`).
    pub tasks: bool,
    /// `[approval] max_pending_per_principal`: how many unexpired pending
    /// requests one principal may have; a call held past it is refused, so
    /// one agent cannot bury the approvers (and the others' requests).
    pub max_pending_per_principal: usize,
    /// `[approval] max_connections`: connections the approval listener
    /// (endpoint, console, Slack) holds at once; beyond, `503` at once.
    pub max_connections: usize,
    /// `[approval] header_read_timeout_seconds`: how long a connection to
    /// the approval listener has to send a request's headers, then its
    /// body (`408`), so clients that trickle cannot keep the slots that
    /// approvers' and Slack's answers need.
    pub header_read_timeout: Duration,
}

/// `[approval.oidc]`, validated; the secret is read at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub redirect_url: Option<String>,
}

/// Where Slack messages go, and the signing secret's variable.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackSettings {
    pub webhook_url: Option<String>,
    pub bot_token_env: Option<String>,
    pub channel: Option<String>,
    pub signing_secret_env: String,
    pub api_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamsSettings {
    pub webhook_url: String,
}

impl ApprovalSettings {
    /// Where approvals live when `--data-dir` is not given:
    /// `$XDG_DATA_HOME/mcp-firewall`, else `~/.local/share/mcp-firewall`.
    pub fn default_data_dir() -> PathBuf {
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("mcp-firewall");
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/share/mcp-firewall"),
            None => PathBuf::from(".mcp-firewall"),
        }
    }
}

/// Pending approval requests one principal may have at once, by default:
/// far more than approvers answer in one sitting, far fewer than a looping
/// agent would file.
pub const DEFAULT_MAX_PENDING_PER_PRINCIPAL: usize = 50;

/// Connections the approval listener holds at once, by default: answering
/// bots, Slack and approvers' browsers need a few each.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            data_dir: ApprovalSettings::default_data_dir(),
            store_url: None,
            replica: None,
            webhook_url: None,
            secrets: Vec::new(),
            timeout: DEFAULT_APPROVAL_TIMEOUT,
            wait: DEFAULT_APPROVAL_WAIT,
            listen: None,
            groups: BTreeMap::new(),
            approvers_file: None,
            directory: Vec::new(),
            console_url: None,
            tasks: false,
            max_pending_per_principal: DEFAULT_MAX_PENDING_PER_PRINCIPAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: crate::downstream::http::front_door::DEFAULT_HEADER_READ_TIMEOUT,
            oidc: None,
            slack: None,
            teams: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalSetupError {
    #[error("approval store: {0}")]
    Store(#[from] StoreError),
    #[error("webhook secret: {0}")]
    Secret(String),
    #[error("approvers file: {0}")]
    Approvers(#[from] RegistryError),
    #[error("{0}")]
    Invalid(String),
}

/// The approval machinery shared by every held call and the endpoint.
pub struct Approvals {
    pub store: ApprovalStore,
    pub webhook: Option<Webhook>,
    pub settings: ApprovalSettings,
    /// The keys and bot secrets answers are verified with, as loaded at
    /// start-up; never re-read from anything the agent could write.
    pub verifier: AnswerVerifier,
    /// Block Kit messages and button answers, when configured.
    pub slack: Option<Slack>,
    /// Adaptive Card notifications, when configured.
    pub teams: Option<Teams>,
    /// Woken whenever an in-process answer lands.
    pub changed: Notify,
    /// Deliveries and notifications in flight (webhook, Slack, Teams), so a
    /// short-lived process (a hook) can let them finish before it exits.
    pub deliveries: tokio_util::task::TaskTracker,
    /// Approvals this process has released. Single use is the store's rule;
    /// this also holds it in-process if the store's "used" marks are rolled
    /// back by someone who can write the file.
    released: Mutex<HashSet<String>>,
    /// Grants revoked through this process: refused at release even if the
    /// store's revocation is rolled back by someone who can write the file.
    revoked: Mutex<HashSet<String>>,
    audit: Arc<AuditLog>,
    callback_url: OnceLock<String>,
}

impl Approvals {
    pub fn open(
        settings: ApprovalSettings,
        audit: Arc<AuditLog>,
    ) -> Result<Approvals, ApprovalSetupError> {
        let secrets = settings
            .secrets
            .iter()
            .map(|s| WebhookSecret::parse(s).map_err(|e| ApprovalSetupError::Secret(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let people_answer_there = settings.slack.is_some() || settings.oidc.is_some();
        if (settings.webhook_url.is_some() || (settings.listen.is_some() && !people_answer_there))
            && secrets.is_empty()
        {
            return Err(ApprovalSetupError::Invalid(
                "a webhook or approval endpoint needs a secret: set MCP_FIREWALL_WEBHOOK_SECRET=whsec_...".into(),
            ));
        }
        if (settings.slack.is_some() || settings.oidc.is_some()) && settings.listen.is_none() {
            return Err(ApprovalSetupError::Invalid(
                "Slack answers and the console arrive at the approval listener: set --approval-listen (or [approval] listen)".into(),
            ));
        }
        let directory = ApproverDirectory::new(settings.directory.clone())
            .map_err(|(i, m)| ApprovalSetupError::Invalid(format!("approver[{i}]: {m}")))?;
        let slack = settings
            .slack
            .as_ref()
            .map(|s| Slack::new(s, |var| std::env::var(var).ok()))
            .transpose()
            .map_err(|e| ApprovalSetupError::Invalid(format!("[approval.slack]: {e}")))?;
        let teams = settings.teams.as_ref().map(|t| Teams::new(&t.webhook_url));
        let webhook = settings
            .webhook_url
            .clone()
            .map(|url| Webhook::new(url, secrets.clone()));
        let mut registry = match &settings.approvers_file {
            Some(path) => ApproverRegistry::load(path)?,
            None => ApproverRegistry::default(),
        };
        registry.extend(
            ApproverRegistry::parse(&directory.allowed_signers())
                .map_err(|(_, m)| ApprovalSetupError::Invalid(format!("approver keys: {m}")))?,
        );
        let store = match &settings.store_url {
            Some(url) => ApprovalStore::connect(url)?,
            None => ApprovalStore::open(&settings.data_dir)?,
        };
        store.listen_for_changes();
        // A copy for the CLI's up-front check; the firewall trusts only its own.
        store.replace_approver_keys(&registry.entries())?;
        Ok(Approvals {
            store,
            webhook,
            settings,
            verifier: AnswerVerifier {
                registry,
                secrets,
                directory,
                slack: slack.as_ref().map(|s| s.secret.clone()),
                console_key: ConsoleKey::from_env().map_err(ApprovalSetupError::Invalid)?,
            },
            slack,
            teams,
            changed: Notify::new(),
            deliveries: tokio_util::task::TaskTracker::new(),
            released: Mutex::new(HashSet::new()),
            revoked: Mutex::new(HashSet::new()),
            audit,
            callback_url: OnceLock::new(),
        })
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The URL approvers POST answers to, once the endpoint is listening.
    pub fn callback_url(&self, id: &str) -> Option<String> {
        self.callback_url
            .get()
            .map(|base| format!("{base}/approvals/{id}"))
    }

    pub fn set_callback_base(&self, base: String) {
        let _ = self.callback_url.set(base);
    }

    /// The console page of approval `id`, once the listener is up.
    pub fn console_link(&self, id: &str) -> Option<String> {
        let base = self
            .settings
            .console_url
            .clone()
            .or_else(|| self.callback_url.get().cloned())?;
        Some(format!("{base}/approvals/{id}"))
    }

    /// Record an answer given in this process: its proof must verify (bound
    /// to this approval and its call digest) before the store sees it. The
    /// answer is audited, accepted or rejected, and held calls are woken.
    pub fn answer(&self, id: &str, answer: &NewAnswer) -> Result<AnswerOutcome, StoreError> {
        let now = Utc::now();
        let found = self.store.get(id)?;
        let requested_at = found.as_ref().map(|r| r.created_at);
        let checked = match found {
            None => Err(StoreError::NotFound(id.to_string())),
            Some(_) if let Err(e) = Identity::parse(&answer.approver) => {
                Err(AnswerRejection::from(e).into())
            }
            Some(record) => {
                let stored = AnswerRecord {
                    approver: answer.approver.clone(),
                    decision: answer.decision,
                    reason: answer.reason.clone(),
                    channel: answer.channel.clone(),
                    at: now,
                    proof: answer.proof.clone(),
                };
                self.verifier
                    .verify(id, &record.digest, &stored, now.timestamp())
                    .map_err(|e| AnswerRejection::BadProof(e).into())
            }
        };
        let outcome = checked.and_then(|verified_by| {
            self.store
                .answer(id, answer, now)
                .map(|outcome| (outcome, verified_by))
        });
        if let Ok((o, _)) = &outcome
            && matches!(
                o.status,
                crate::approval::Status::Approved | crate::approval::Status::Denied
            )
            && let Some(requested_at) = requested_at
        {
            let took = (now - requested_at).to_std().unwrap_or_default();
            let decision = if o.status == crate::approval::Status::Approved {
                "approved"
            } else {
                "denied"
            };
            crate::metrics::metrics()
                .approval_answer_seconds
                .get_or_create(&crate::metrics::Answer { decision })
                .observe(took.as_secs_f64());
        }
        let record = json!({
            "approval_id": id,
            "approver": answer.approver,
            "decision": answer.decision.as_str(),
            "reason": answer.reason,
            "channel": answer.channel,
        });
        let (event, record) = match &outcome {
            Ok((o, verified_by)) => (
                "approval.answered",
                with(
                    with(record, "status", o.status.as_str()),
                    "verified_by",
                    verified_by,
                ),
            ),
            Err(e) => (
                "approval.answer_rejected",
                with(record, "error", &e.to_string()),
            ),
        };
        if let Err(e) = self.audit.append(event, record) {
            tracing::error!("audit write failed for an approval answer: {e}");
        }
        self.changed.notify_waiters();
        if let Ok((o, _)) = &outcome
            && answer.channel != "slack"
            && matches!(o.status, super::Status::Approved | super::Status::Denied)
        {
            let verb = if o.status == super::Status::Approved {
                "Approved"
            } else {
                "Denied"
            };
            self.update_slack(
                id,
                &format!(
                    "`{id}` {verb} by {} (via {}): {}",
                    answer.approver,
                    answer.channel,
                    answer.reason.trim()
                ),
            );
        }
        outcome.map(|(o, _)| o)
    }

    /// Replace approval `id`'s Slack message (bot token only), in the background.
    fn update_slack(&self, id: &str, summary: &str) {
        if let (Some(slack), Ok(runtime)) = (&self.slack, tokio::runtime::Handle::try_current())
            && let Some(task) = slack.update(id, summary)
        {
            runtime.spawn(task);
        }
    }

    /// Revoke the unused grant of approval `id` on behalf of `by`; audited.
    /// False when there was no unused grant.
    pub fn revoke(&self, id: &str, by: &str, reason: &str) -> Result<bool, StoreError> {
        self.revoked
            .lock()
            .expect("revoked lock")
            .insert(id.to_string());
        let revoked = self.store.revoke_grant(id, by, reason, Utc::now())?;
        if revoked {
            self.update_slack(
                id,
                &format!("`{id}` grant revoked by {by}: {}", reason.trim()),
            );
            let record = json!({"approval_id": id, "revoked_by": by, "reason": reason.trim()});
            if let Err(e) = self.audit.append("approval.revoked", record) {
                tracing::error!("audit write failed: {e}");
            }
        }
        self.changed.notify_waiters();
        Ok(revoked)
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked.lock().expect("revoked lock").contains(id)
    }

    /// Mark `id` released in this process; false if it already was.
    pub fn mark_released(&self, id: &str) -> bool {
        self.released
            .lock()
            .expect("released lock")
            .insert(id.to_string())
    }

    /// Record a refused answer that never reached the store.
    pub(super) fn audit_rejection(&self, id: &str, channel: &str, error: &str) {
        let record = json!({"approval_id": id, "channel": channel, "error": error});
        if let Err(e) = self.audit.append("approval.answer_rejected", record) {
            tracing::error!("audit write failed: {e}");
        }
    }
}

fn with(mut record: serde_json::Value, key: &str, value: &str) -> serde_json::Value {
    record[key] = json!(value);
    record
}
