//! Configuration in three stages: [`raw`] (the TOML as written, unknown keys
//! rejected) -> [`Config`] (validated: names, paths and modes checked, paths
//! resolved against the config file's directory) -> the running proxy
//! (compiled policy, opened audit log; built in `proxy::Proxy::start`).
//!
//! Every error names the file, the key and what was expected, e.g.
//! `mcp-firewall.toml: upstream[1].name: "fs__x" must not contain "__"`.

pub mod http;
pub mod raw;
pub mod upstream;

pub use upstream::{
    DEFAULT_UPSTREAM_TIMEOUT, Headers, HttpSpec, HttpTransport, ProcessSpec, UpstreamKind,
    UpstreamSpec,
};

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::identity::Identity;

use crate::approval::ApprovalSettings;
use crate::approval::approvers::ApproverRegistry;
use crate::approval::directory::{ApproverDirectory, DirectoryEntry};
use crate::approval::service::{OidcSettings, SlackSettings, TeamsSettings};
use crate::audit::sink::SinkSettings;
use crate::audit::{CheckpointSettings, FsyncMode};
pub use http::{HttpSettings, OAuthSpec, TokenSecret, TokenSpec};

/// Package the firewall evaluates unless the config says otherwise.
pub const DEFAULT_PACKAGE: &str = "mcp.firewall";
/// Upstream name used by the wrap form (`run -- COMMAND ...`) without `--name`.
pub const DEFAULT_UPSTREAM_NAME: &str = "upstream";
/// Environment variable read for webhook secrets (comma-separated
/// `whsec_...`) unless the config names another.
pub const SECRET_ENV: &str = "MCP_FIREWALL_WEBHOOK_SECRET";

/// Separator between the upstream name and its own tool/prompt name when
/// several upstreams are merged (`fs__read_file`). Upstream names may not
/// contain it, so splitting at its first occurrence is unambiguous.
pub const NAMESPACE_SEPARATOR: &str = "__";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy_dir: PathBuf,
    pub package: String,
    /// Shadow mode: decisions are logged, not enforced.
    pub shadow: bool,
    pub audit_path: PathBuf,
    pub fsync: FsyncMode,
    pub mask_fields: Vec<String>,
    /// Signed checkpoints of the audit chain (`[audit] signing_key`).
    pub checkpoints: Option<CheckpointSettings>,
    /// Ship the audit log to a collector (`[audit.sink]`).
    pub sink: Option<SinkSettings>,
    pub principal: Option<String>,
    pub approval: ApprovalSettings,
    /// Where secrets come from when none are written in the config.
    pub secret_env: String,
    pub upstreams: Vec<UpstreamSpec>,
    /// True for the wrap form: one upstream, names passed through unchanged.
    pub passthrough_names: bool,
    /// The HTTP listener (`[http]`, `--listen`); no `listen`: stdio.
    pub http: HttpSettings,
    /// Where Prometheus metrics are served (`[metrics] listen`,
    /// `--metrics-listen`); none: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A cached tool listing older than this is fetched again before a call
    /// is decided, so a tool redefined without `list_changed` is noticed.
    pub tools_refresh: std::time::Duration,
    /// Results larger than this (bytes of JSON) are truncated with a note
    /// before the model sees them.
    pub max_result_bytes: usize,
    /// The memory all sessions together may spend reading big messages
    /// ([`crate::budget`]).
    pub message_memory_bytes: usize,
    /// The most of it one principal may hold; `None`: the default
    /// ([`Config::message_memory_per_principal`]).
    pub message_memory_per_principal_bytes: Option<usize>,
}

impl Config {
    /// The most of `message_memory_bytes` one principal may hold: as
    /// configured; by default half when the HTTP listener knows several
    /// principals (so one cannot spend it all and have the others'
    /// requests refused), else all of it.
    pub fn message_memory_per_principal(&self) -> usize {
        match self.message_memory_per_principal_bytes {
            Some(n) => n.min(self.message_memory_bytes),
            None if self.http.several_principals() => self.message_memory_bytes / 2,
            None => self.message_memory_bytes,
        }
    }
}

/// Default of `[session] max_result_bytes` / `--max-result-bytes`: a few
/// screens of text or a large image; more only fills the model's context.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;

/// Default of `[session] tools_refresh_seconds` / `--tools-refresh`.
pub const DEFAULT_TOOLS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Read, parse and validate a TOML config file.
    pub fn from_file(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, file)
    }

    /// Parse and validate TOML text; `file` names it in errors and anchors
    /// relative paths.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        let config = Validator { file, base }.config(raw)?;
        if config.upstreams.is_empty() {
            return Err(ConfigError::Invalid {
                file: file.into(),
                key: "upstream".into(),
                message: "expected at least one [[upstream]] table".into(),
            });
        }
        Ok(config)
    }

    /// A config file's settings (policy, audit, approvals ...) for a firewall
    /// whose upstream comes from elsewhere (the wrap form, a hook): it may
    /// name no `[[upstream]]`.
    pub fn settings_from_file(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let raw: raw::RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        Validator { file, base }.config(raw)
    }

    /// The wrap form for a remote server: one upstream at `url`.
    /// `headers` values may name `${VAR}`s, expanded from the environment
    /// (so a secret travels in the client's `env`, not on the command line).
    pub fn wrap_url(
        name: Option<String>,
        url: &str,
        transport: Option<String>,
        headers: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let file = Path::new("<command line>");
        let raw = raw::RawUpstream {
            name: name.unwrap_or_else(|| DEFAULT_UPSTREAM_NAME.to_string()),
            url: Some(url.to_string()),
            transport,
            headers: headers.iter().cloned().collect(),
            ..raw::RawUpstream::default()
        };
        check_name(&raw.name).map_err(|message| ConfigError::Invalid {
            file: file.into(),
            key: "--name".into(),
            message,
        })?;
        let spec = upstream::validate(raw, |p: &str| PathBuf::from(p), |v| std::env::var(v).ok())
            .map_err(|(field, message)| ConfigError::Invalid {
            file: file.into(),
            key: format!("--{field}"),
            message,
        })?;
        Ok(Config {
            upstreams: vec![spec],
            passthrough_names: true,
            ..Config::without_upstreams()
        })
    }

    /// The wrap form: one upstream started from a command line.
    pub fn wrap(name: Option<String>, command: Vec<String>) -> Result<Config, ConfigError> {
        let file = Path::new("<command line>");
        let mut parts = command.into_iter();
        let command = parts.next().ok_or_else(|| ConfigError::Invalid {
            file: file.into(),
            key: "COMMAND".into(),
            message: "expected the upstream server's command after `--`".into(),
        })?;
        let name = name.unwrap_or_else(|| DEFAULT_UPSTREAM_NAME.to_string());
        check_name(&name).map_err(|message| ConfigError::Invalid {
            file: file.into(),
            key: "--name".into(),
            message,
        })?;
        Ok(Config {
            upstreams: vec![UpstreamSpec::process(name, command, parts.collect())],
            passthrough_names: true,
            ..Config::without_upstreams()
        })
    }

    /// The defaults with no upstream: what `hook` decides with when no
    /// config file is given.
    pub fn without_upstreams() -> Config {
        Config {
            policy_dir: PathBuf::from("policies"),
            package: DEFAULT_PACKAGE.into(),
            shadow: false,
            audit_path: PathBuf::from("mcp-firewall-audit.jsonl"),
            fsync: FsyncMode::Never,
            mask_fields: Vec::new(),
            checkpoints: None,
            sink: None,
            principal: None,
            approval: ApprovalSettings::default(),
            secret_env: SECRET_ENV.into(),
            upstreams: Vec::new(),
            passthrough_names: false,
            http: HttpSettings::default(),
            metrics_listen: None,
            tools_refresh: DEFAULT_TOOLS_REFRESH,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            message_memory_bytes: crate::budget::DEFAULT_LIMIT,
            message_memory_per_principal_bytes: None,
        }
    }
}

/// Parse an fsync mode name.
pub fn parse_fsync(value: &str) -> Result<FsyncMode, String> {
    match value {
        "always" => Ok(FsyncMode::Always),
        "never" => Ok(FsyncMode::Never),
        other => Err(format!("expected \"always\" or \"never\", got {other:?}")),
    }
}

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Validator<'_> {
    fn config(&self, raw: raw::RawConfig) -> Result<Config, ConfigError> {
        let mut seen = HashSet::new();
        let mut upstreams = Vec::new();
        for (i, up) in raw.upstream.into_iter().enumerate() {
            let key = |field: &str| format!("upstream[{i}].{field}");
            check_name(&up.name).map_err(|m| self.err(&key("name"), m))?;
            if !seen.insert(up.name.clone()) {
                return Err(self.err(
                    &key("name"),
                    format!("duplicate upstream name {:?}", up.name),
                ));
            }
            let spec = upstream::validate(up, |p| self.path(p), |v| std::env::var(v).ok())
                .map_err(|(field, m)| self.err(&key(&field), m))?;
            upstreams.push(spec);
        }
        let fsync = match &raw.audit.fsync {
            Some(mode) => parse_fsync(mode).map_err(|m| self.err("audit.fsync", m))?,
            None => FsyncMode::Never,
        };
        let audit_path = self.path(
            raw.audit
                .path
                .as_deref()
                .unwrap_or("mcp-firewall-audit.jsonl"),
        );
        let checkpoints = self.checkpoints(&raw.audit, &audit_path)?;
        let sink = match &raw.audit.sink {
            None => None,
            Some(s) => {
                check_url(&s.url).map_err(|m| self.err("audit.sink.url", m))?;
                if s.batch_records == Some(0) {
                    return Err(self.err(
                        "audit.sink.batch_records",
                        "expected a positive number".into(),
                    ));
                }
                Some(SinkSettings {
                    url: s.url.clone(),
                    bearer_env: s.bearer_env.clone(),
                    batch: s.batch_records.unwrap_or(crate::audit::sink::DEFAULT_BATCH),
                    every: match s.interval_seconds {
                        Some(secs) => positive_secs(secs)
                            .map_err(|m| self.err("audit.sink.interval_seconds", m))?,
                        None => crate::audit::sink::DEFAULT_EVERY,
                    },
                })
            }
        };
        let package = raw.policy.package.unwrap_or_else(|| DEFAULT_PACKAGE.into());
        if package.is_empty() || package.split('.').any(|p| p.is_empty()) {
            return Err(self.err(
                "policy.package",
                format!("expected a dotted Rego package name, got {package:?}"),
            ));
        }
        if let Some(p) = &raw.session.principal {
            Identity::parse(p).map_err(|e| self.err("session.principal", e.to_string()))?;
        }
        let mut approval = self.approval(&raw.approval)?;
        if let Some(url) = &raw.store.url {
            let url = upstream::expand_env(url, &|v| std::env::var(v).ok())
                .map_err(|m| self.err("store.url", m))?;
            approval.store_url = Some(check_store_url(&url).map_err(|m| self.err("store.url", m))?);
        }
        if let Some(replica) = &raw.store.replica {
            approval.replica =
                Some(check_replica(replica).map_err(|m| self.err("store.replica", m))?);
        }
        approval.directory = self.directory(&raw.approver)?;
        for entry in &approval.directory {
            for group in &entry.groups {
                let members = approval.groups.entry(group.clone()).or_default();
                if !members.iter().any(|m| m == entry.name.as_str()) {
                    members.push(entry.name.as_str().to_string());
                }
            }
        }
        let http = http::validate(raw.http).map_err(|(key, m)| self.err(&key, m))?;
        let metrics_listen = raw
            .metrics
            .listen
            .as_deref()
            .map(parse_listen)
            .transpose()
            .map_err(|m| self.err("metrics.listen", m))?;
        Ok(Config {
            http,
            metrics_listen,
            approval,
            shadow: raw.policy.shadow.unwrap_or(false),
            secret_env: raw
                .approval
                .secret_env
                .clone()
                .unwrap_or_else(|| SECRET_ENV.into()),
            policy_dir: self.path(raw.policy.dir.as_deref().unwrap_or("policies")),
            package,
            audit_path,
            fsync,
            mask_fields: raw.audit.mask_fields,
            checkpoints,
            sink,
            principal: raw.session.principal,
            upstreams,
            passthrough_names: false,
            max_result_bytes: match raw.session.max_result_bytes {
                None => DEFAULT_MAX_RESULT_BYTES,
                Some(n) => {
                    positive_bytes(n).map_err(|m| self.err("session.max_result_bytes", m))?
                }
            },
            message_memory_bytes: match raw.session.message_memory_bytes {
                None => crate::budget::DEFAULT_LIMIT,
                Some(n) => {
                    positive_bytes(n).map_err(|m| self.err("session.message_memory_bytes", m))?
                }
            },
            message_memory_per_principal_bytes: raw
                .session
                .message_memory_per_principal_bytes
                .map(positive_bytes)
                .transpose()
                .map_err(|m| self.err("session.message_memory_per_principal_bytes", m))?,
            tools_refresh: match raw.session.tools_refresh_seconds {
                None => DEFAULT_TOOLS_REFRESH,
                Some(secs) => {
                    positive_secs(secs).map_err(|m| self.err("session.tools_refresh_seconds", m))?
                }
            },
        })
    }

    fn approval(&self, raw: &raw::RawApproval) -> Result<ApprovalSettings, ConfigError> {
        let mut settings = ApprovalSettings::default();
        if let Some(url) = &raw.webhook {
            check_url(url).map_err(|m| self.err("approval.webhook", m))?;
            settings.webhook_url = Some(url.clone());
        }
        settings.secrets = raw.secrets.clone();
        if let Some(secs) = raw.timeout_seconds {
            settings.timeout =
                positive_secs(secs).map_err(|m| self.err("approval.timeout_seconds", m))?;
        }
        if let Some(secs) = raw.wait_seconds {
            settings.wait = std::time::Duration::from_secs(secs);
        }
        if let Some(listen) = &raw.listen {
            settings.listen =
                Some(parse_listen(listen).map_err(|m| self.err("approval.listen", m))?);
        }
        if let Some(dir) = &raw.data_dir {
            settings.data_dir = self.path(dir);
        }
        for (group, names) in &raw.groups {
            for name in names {
                Identity::parse(name)
                    .map_err(|e| self.err(&format!("approval.groups.{group}"), e.to_string()))?;
            }
        }
        settings.groups = raw.groups.clone();
        if let Some(file) = &raw.approvers {
            settings.approvers_file = Some(self.path(file));
        }
        settings.tasks = raw.tasks.unwrap_or(false);
        match raw.max_pending_per_principal {
            None => {}
            Some(0) => {
                return Err(self.err(
                    "approval.max_pending_per_principal",
                    "expected a positive number of requests".into(),
                ));
            }
            Some(n) => {
                settings.max_pending_per_principal = usize::try_from(n).unwrap_or(usize::MAX)
            }
        }
        if let Some(n) = raw.max_connections {
            if n == 0 {
                return Err(self.err(
                    "approval.max_connections",
                    "expected a positive number of connections".into(),
                ));
            }
            settings.max_connections = n;
        }
        if let Some(secs) = raw.header_read_timeout_seconds {
            settings.header_read_timeout = positive_secs(secs)
                .map_err(|m| self.err("approval.header_read_timeout_seconds", m))?;
        }
        if let Some(url) = &raw.console_url {
            check_console_url(url).map_err(|m| self.err("approval.console_url", m))?;
            settings.console_url = Some(url.trim_end_matches('/').to_string());
        }
        if let Some(oidc) = &raw.oidc {
            check_url(&oidc.issuer).map_err(|m| self.err("approval.oidc.issuer", m))?;
            if let Some(url) = &oidc.redirect_url {
                check_console_url(url).map_err(|m| self.err("approval.oidc.redirect_url", m))?;
            }
            if oidc.client_id.trim().is_empty() {
                return Err(self.err("approval.oidc.client_id", "must not be empty".into()));
            }
            settings.oidc = Some(OidcSettings {
                issuer: oidc.issuer.trim_end_matches('/').to_string(),
                client_id: oidc.client_id.clone(),
                client_secret_env: oidc.client_secret_env.clone(),
                redirect_url: oidc.redirect_url.clone(),
            });
        }
        if let Some(slack) = &raw.slack {
            settings.slack = Some(self.slack(slack)?);
        }
        if let Some(teams) = &raw.teams {
            check_url(&teams.webhook_url).map_err(|m| self.err("approval.teams.webhook_url", m))?;
            settings.teams = Some(TeamsSettings {
                webhook_url: teams.webhook_url.clone(),
            });
        }
        Ok(settings)
    }

    fn slack(&self, raw: &raw::RawSlack) -> Result<SlackSettings, ConfigError> {
        match (&raw.webhook_url, &raw.bot_token_env, &raw.channel) {
            (Some(url), None, None) => {
                check_url(url).map_err(|m| self.err("approval.slack.webhook_url", m))?
            }
            (None, Some(_), Some(_)) => {}
            _ => {
                return Err(self.err(
                    "approval.slack",
                    "set either webhook_url, or bot_token_env and channel".into(),
                ));
            }
        }
        let api_url = raw
            .api_url
            .clone()
            .unwrap_or_else(|| "https://slack.com/api".into());
        check_url(&api_url).map_err(|m| self.err("approval.slack.api_url", m))?;
        Ok(SlackSettings {
            webhook_url: raw.webhook_url.clone(),
            bot_token_env: raw.bot_token_env.clone(),
            channel: raw.channel.clone(),
            signing_secret_env: raw.signing_secret_env.clone(),
            api_url: api_url.trim_end_matches('/').to_string(),
        })
    }

    fn directory(&self, raw: &[raw::RawApprover]) -> Result<Vec<DirectoryEntry>, ConfigError> {
        let mut entries = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let key = |field: &str| format!("approver[{i}].{field}");
            let name =
                Identity::parse(&a.name).map_err(|e| self.err(&key("name"), e.to_string()))?;
            for line in &a.keys {
                ApproverRegistry::parse(&format!("\"{}\" {line}", name.as_str()))
                    .map_err(|(_, m)| self.err(&key("keys"), m))?;
            }
            let nonempty = |field: &str, v: &Option<String>| match v {
                Some(s) if s.trim().is_empty() => {
                    Err(self.err(&key(field), "must not be empty".into()))
                }
                _ => Ok(v.clone()),
            };
            entries.push(DirectoryEntry {
                name,
                keys: a.keys.clone(),
                oidc_subject: nonempty("oidc_subject", &a.oidc_subject)?,
                email: nonempty("email", &a.email)?,
                slack_user: nonempty("slack_user", &a.slack_user)?,
                groups: a.groups.clone(),
            });
        }
        ApproverDirectory::new(entries.clone())
            .map_err(|(i, m)| self.err(&format!("approver[{i}]"), m))?;
        Ok(entries)
    }

    /// `[audit]`'s checkpoint settings: none without a signing key.
    fn checkpoints(
        &self,
        audit: &raw::RawAudit,
        log: &Path,
    ) -> Result<Option<CheckpointSettings>, ConfigError> {
        let Some(key) = &audit.signing_key else {
            if audit.checkpoints.is_some() {
                return Err(self.err("audit.checkpoints", "needs audit.signing_key".into()));
            }
            return Ok(None);
        };
        let mut settings = CheckpointSettings::beside(log, self.path(key));
        if let Some(path) = &audit.checkpoints {
            settings.path = self.path(path);
        }
        if let Some(n) = audit.checkpoint_every_records {
            settings.every_records = n;
        }
        if let Some(secs) = audit.checkpoint_every_seconds {
            settings.every =
                positive_secs(secs).map_err(|m| self.err("audit.checkpoint_every_seconds", m))?;
        }
        Ok(Some(settings))
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            message,
        }
    }
}

/// A replica name: letters, digits, `.`, `-`, `_`, at most 64.
pub fn check_replica(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "expected letters, digits, '.', '-' or '_' (at most 64), got {name:?}"
        ))
    }
}

/// A store URL must name PostgreSQL; returned as given.
pub fn check_store_url(url: &str) -> Result<String, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "expected a postgres:// URL (the SQLite store needs none), got {:?}",
            url.split('@').next_back().unwrap_or_default()
        ));
    }
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    Ok(url.to_string())
}

/// A URL approvers open in a browser: http(s) with a host. Plain http off
/// loopback is allowed (a console behind a TLS-terminating proxy is often
/// configured by its inner address) but the session cookie is then marked
/// `Secure`, so sign-in needs https in the browser.
fn check_console_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{url:?}: expected an http(s) URL with a host")),
        Err(e) => Err(format!("{url:?}: {e}")),
    }
}

/// A URL the firewall will connect to (webhook, remote upstream): https
/// with a host, or plain http only to a loopback host (the network is not
/// trusted: an answer or a tool result over plain http could be forged).
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(()),
        Ok(u) if u.scheme() == "http" && is_loopback_host(&u) => Ok(()),
        Ok(u) if u.scheme() == "http" && u.host().is_some() => Err(format!(
            "{url:?}: plain http is accepted only to a loopback host (127.0.0.1, ::1, localhost); use https"
        )),
        _ => Err(format!(
            "expected an https:// (or loopback http://) URL, got {url:?}"
        )),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `HOST:PORT` for a listener.
pub fn parse_listen(value: &str) -> Result<std::net::SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("expected HOST:PORT such as 127.0.0.1:8787, got {value:?}"))
}

pub fn positive_bytes(bytes: usize) -> Result<usize, String> {
    if bytes == 0 {
        return Err("expected a positive number of bytes".into());
    }
    Ok(bytes)
}

pub fn positive_secs(secs: u64) -> Result<std::time::Duration, String> {
    if secs == 0 {
        return Err("expected a positive number of seconds".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Upstream names become tool-name prefixes, so they are restricted to
/// characters every client accepts in tool names and may not contain the
/// separator.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!("{name:?}: expected 1 to 32 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{name:?}: expected only letters, digits, '-' and '_'"
        ));
    }
    if name.contains(NAMESPACE_SEPARATOR) || name.ends_with('_') {
        return Err(format!(
            "{name:?} must not contain {NAMESPACE_SEPARATOR:?} or end with '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/fw/mcp-firewall.toml"))
    }

    #[test]
    fn a_principals_share_of_message_memory() {
        let two = r#"
            [[upstream]]
            name = "fs"
            command = "x"
            [http]
            tokens = [{ principal = "a", env = "A" }, { principal = "b", env = "B" }]
            [session]
            message_memory_bytes = 1000
        "#;
        assert_eq!(parse(two).unwrap().message_memory_per_principal(), 500);
        let one = two.replace(", { principal = \"b\", env = \"B\" }", "");
        assert_eq!(parse(&one).unwrap().message_memory_per_principal(), 1000);
        let set = format!("{two}message_memory_per_principal_bytes = 800\n");
        assert_eq!(parse(&set).unwrap().message_memory_per_principal(), 800);
        let over = format!("{two}message_memory_per_principal_bytes = 5000\n");
        assert_eq!(parse(&over).unwrap().message_memory_per_principal(), 1000);
        let zero = format!("{two}message_memory_per_principal_bytes = 0\n");
        assert!(
            parse(&zero)
                .unwrap_err()
                .to_string()
                .contains("session.message_memory_per_principal_bytes")
        );
    }

    #[test]
    fn full_config_resolves_relative_paths_against_the_file() {
        let cfg = parse(
            r#"
            [policy]
            dir = "rego"
            [audit]
            path = "/var/log/audit.jsonl"
            fsync = "always"
            mask_fields = ["ssn"]
            [session]
            principal = "alice"
            [approval]
            approvers = "allowed_signers"
            max_connections = 8
            header_read_timeout_seconds = 5
            [[upstream]]
            name = "fs"
            command = "npx"
            timeout_seconds = 30
            trust_annotations = true
            resource_prefixes = ["file:///srv/"]
            args = ["-y", "server"]
            env = { A = "1" }
            cwd = "work"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.policy_dir, PathBuf::from("/etc/fw/rego"));
        assert_eq!(cfg.audit_path, PathBuf::from("/var/log/audit.jsonl"));
        assert_eq!(cfg.fsync, FsyncMode::Always);
        assert_eq!(
            cfg.approval.approvers_file,
            Some(PathBuf::from("/etc/fw/allowed_signers"))
        );
        assert_eq!(cfg.approval.max_connections, 8);
        assert_eq!(
            cfg.approval.header_read_timeout,
            std::time::Duration::from_secs(5)
        );
        let UpstreamKind::Process(fs) = &cfg.upstreams[0].kind else {
            panic!("expected a process upstream: {cfg:?}");
        };
        assert_eq!(fs.cwd, Some(PathBuf::from("/etc/fw/work")));
        assert_eq!(cfg.upstreams[0].timeout, std::time::Duration::from_secs(30));
        assert!(cfg.upstreams[0].trust_annotations);
        assert_eq!(cfg.upstreams[0].resource_prefixes, ["file:///srv/"]);
        assert_eq!(fs.env["A"], "1");
        assert!(!cfg.passthrough_names);
    }

    #[test]
    fn an_empty_resource_prefix_is_refused() {
        let err =
            parse("[[upstream]]\nname = \"fs\"\ncommand = \"x\"\nresource_prefixes = [\"\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("resource_prefixes"), "{err}");
        assert!(err.contains("every URI"), "{err}");
    }

    #[test]
    fn the_approver_directory_adds_its_groups() {
        let cfg = parse(
            "[approval]\ngroups={sre=['carol']}\n[[approver]]\nname='bob'\nslack_user='U0BOB'\ngroups=['sre']\n[[upstream]]\nname='a'\ncommand='x'",
        )
        .unwrap();
        assert_eq!(cfg.approval.groups["sre"], vec!["carol", "bob"]);
        assert_eq!(
            cfg.approval.directory[0].slack_user.as_deref(),
            Some("U0BOB")
        );
    }

    #[test]
    fn mistakes_name_the_file_and_key() {
        let cases = [
            ("[[upstream]]\nname='a'\ncommand='x'\nbogus=1", "bogus"),
            ("[[upstream]]\nname='a__b'\ncommand='x'", "upstream[0].name"),
            (
                "[[upstream]]\nname='a'\ncommand='x'\n[[upstream]]\nname='a'\ncommand='y'",
                "upstream[1].name",
            ),
            ("[[upstream]]\nname='a'\ncommand=''", "upstream[0].command"),
            (
                "[[upstream]]\nname='a'\ncommand='x'\n[audit]\nfsync='sometimes'",
                "audit.fsync",
            ),
            ("[[upstream]]\nname='a'\ncommand=3", "command"),
            ("[[upstream]]\nname='a'", "upstream[0].command"),
            (
                "[[upstream]]\nname='a'\ncommand='x'\nurl='http://h/mcp'",
                "upstream[0].url",
            ),
            (
                "[[upstream]]\nname='a'\nurl='ftp://h/mcp'",
                "upstream[0].url",
            ),
            (
                "[[upstream]]\nname='a'\nurl='https://h/mcp'\ntransport='ws'",
                "upstream[0].transport",
            ),
            (
                "[[upstream]]\nname='a'\nurl='https://h/mcp'\nargs=['x']",
                "upstream[0].args",
            ),
            (
                "[[upstream]]\nname='a'\ncommand='x'\nheaders={A='1'}",
                "upstream[0].headers",
            ),
            (
                "[[upstream]]\nname='a'\nurl='https://h/mcp'\nheaders={X-Key='${MCP_FW_TEST_UNSET_VAR}'}",
                "upstream[0].headers.X-Key",
            ),
            (
                "[[upstream]]\nname='a'\nurl='https://h/mcp'\nheaders={Mcp-Session-Id='x'}",
                "upstream[0].headers.Mcp-Session-Id",
            ),
            ("", "upstream"),
            (
                "[[approver]]\nname='bob'\n[[approver]]\nname='Bob'\n[[upstream]]\nname='a'\ncommand='x'",
                "approver[1]",
            ),
            (
                "[[approver]]\nname='bob'\nkeys=['ssh-rsa AAAA']\n[[upstream]]\nname='a'\ncommand='x'",
                "approver[0].keys",
            ),
            (
                "[[approver]]\nname='bob'\nslack_user='U1'\n[[approver]]\nname='carol'\nslack_user='U1'\n[[upstream]]\nname='a'\ncommand='x'",
                "approver[1]",
            ),
            (
                "[approval.slack]\nsigning_secret_env='S'\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.slack",
            ),
            (
                "[approval.teams]\nwebhook_url='http://teams.example.com/x'\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.teams.webhook_url",
            ),
            (
                "[[upstream]]\nname='a'\ncommand='x'\ntimeout_seconds=0",
                "upstream[0].timeout_seconds",
            ),
            // Plain http only to loopback (the network is not trusted).
            (
                "[[upstream]]\nname='a'\nurl='http://example.com/mcp'",
                "upstream[0].url",
            ),
            (
                "[approval]\nwebhook='http://hooks.example.com/x'\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.webhook",
            ),
            (
                "[approval]\nmax_connections=0\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.max_connections",
            ),
            (
                "[approval]\nheader_read_timeout_seconds=0\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.header_read_timeout_seconds",
            ),
            (
                "[session]\nprincipal='b\u{043e}b'\n[[upstream]]\nname='a'\ncommand='x'",
                "session.principal",
            ),
            (
                "[approval]\ngroups={sre=['al\u{0456}ce']}\n[[upstream]]\nname='a'\ncommand='x'",
                "approval.groups.sre",
            ),
            (
                "[http]\ntokens=[{principal='b\u{043e}b', env='T'}]\n[[upstream]]\nname='a'\ncommand='x'",
                "http.tokens[0].principal",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with("/etc/fw/mcp-firewall.toml: "), "{err}");
            assert!(err.contains(key), "{text:?} -> {err}");
        }
    }

    #[test]
    fn url_upstreams_default_to_streamable_http() {
        let cfg = parse(
            r#"
            [[upstream]]
            name = "remote"
            url = "https://mcp.example.com/mcp"
            headers = { Authorization = "Bearer static" }
            [[upstream]]
            name = "legacy"
            url = "http://127.0.0.1:9/sse"
            transport = "sse"
            "#,
        )
        .unwrap();
        let UpstreamKind::Http(remote) = &cfg.upstreams[0].kind else {
            panic!("expected an HTTP upstream: {cfg:?}");
        };
        assert_eq!(remote.transport, HttpTransport::StreamableHttp);
        assert_eq!(remote.headers.0["Authorization"], "Bearer static");
        let UpstreamKind::Http(legacy) = &cfg.upstreams[1].kind else {
            panic!("expected an HTTP upstream: {cfg:?}");
        };
        assert_eq!(legacy.transport, HttpTransport::Sse);
    }

    #[test]
    fn wrap_form_needs_a_command() {
        assert!(Config::wrap(None, vec![]).is_err());
        let cfg = Config::wrap(None, vec!["node".into(), "server.js".into()]).unwrap();
        assert_eq!(cfg.upstreams[0].name, DEFAULT_UPSTREAM_NAME);
        let UpstreamKind::Process(p) = &cfg.upstreams[0].kind else {
            panic!("wrap form is a process");
        };
        assert_eq!(p.args, vec!["server.js"]);
        assert!(cfg.passthrough_names);
    }
}
