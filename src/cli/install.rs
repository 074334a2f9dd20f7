//! `install`, `uninstall` and `init`: put a client's MCP servers behind the
//! firewall in one command, and take them out again exactly.
//!
//! `install` rewrites every server entry of the client's config file so it
//! runs through `mcp-firewall run` (see [`super::clients`]), prints a diff
//! and writes the file, after saving a sidecar next to it
//! (`<file>.mcp-firewall-backup.json`: the original bytes, each original
//! entry, and a digest of what was written). Running it again changes only
//! entries added since. `uninstall` writes the original bytes back when the
//! file is as `install` left it; when the client (or the user) changed it
//! since, it puts back each wrapped entry's original and keeps every other
//! change. For Claude Code, its settings file gets the PreToolUse and
//! PostToolUse hooks too, managed the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::clients::{Client, Env, Scope, Wrapped, Wrapper, is_wrapped, wrap};

/// Print a line; a closed stdout (`| head`) must not stop a half-done
/// install or uninstall.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Seconds Claude Code gives the hook; longer than the approval wait
/// (`wait_seconds`, 50 by default) so a held call ends with the firewall's
/// "pending" message, never with Claude Code killing the hook.
pub const HOOK_TIMEOUT_SECS: u64 = 120;

const SIDECAR_SUFFIX: &str = ".mcp-firewall-backup.json";

/// What `install` and `uninstall` were asked.
pub struct Request {
    pub client: Client,
    pub scope: Scope,
    /// The client's config file, instead of its usual place.
    pub config: Option<PathBuf>,
    /// The firewall's own settings file (default: the one `init` wrote).
    pub firewall_config: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub dry_run: bool,
}

pub fn install(req: &Request) -> anyhow::Result<ExitCode> {
    let env = Env::current();
    let (path, hooks) = client_files(req, &env)?;
    let settings = firewall_settings(req, &env)?;
    let wrapper = Wrapper {
        program: firewall_program()?,
        settings: settings.clone(),
    };
    let client = req.client;
    let changed = manage(&path, req.dry_run, |doc, saved| {
        let mut notes = Vec::new();
        let mut seen = 0;
        for (scope, servers) in server_maps(doc, client)? {
            for (name, entry) in servers.iter_mut() {
                seen += 1;
                let key = format!("{scope}{name}");
                match wrap(client, name, entry, &wrapper) {
                    Wrapped::Now(new) => {
                        saved.insert(key.clone(), entry.clone());
                        *entry = new;
                        notes.push(format!("  {key}: now runs through mcp-firewall"));
                    }
                    Wrapped::Already => {
                        notes.push(format!("  {key}: already runs through mcp-firewall"))
                    }
                    Wrapped::Unknown => {
                        notes.push(format!("  {key}: left alone (neither a command nor a URL)"))
                    }
                }
            }
        }
        if seen == 0 {
            notes.push("  (no MCP servers configured yet)".into());
        }
        Ok(notes)
    })?;
    if let Some(hooks) = hooks {
        let command = hook_command(&wrapper.program, &settings);
        manage(&hooks, req.dry_run, |doc, _| add_hooks(doc, &command))?;
    }
    if req.dry_run {
        say!("dry run: nothing was written");
    } else if changed {
        say!(
            "installed: restart {} to use it; `mcp-firewall uninstall --client {}` undoes this",
            client.name(),
            client.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(req: &Request) -> anyhow::Result<ExitCode> {
    let env = Env::current();
    let (path, hooks) = client_files(req, &env)?;
    let files = std::iter::once(path.clone()).chain(hooks);
    let mut any = false;
    for file in files {
        any |= restore(&file, req.client, req.dry_run)?;
    }
    if !any {
        say!(
            "{}: nothing to uninstall (no {SIDECAR_SUFFIX} next to it)",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The client's config file, and (Claude Code) the settings file its hooks
/// go in: with `--config`, `.claude/settings.json` beside it.
fn client_files(req: &Request, env: &Env) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    let path = match &req.config {
        Some(p) => p.clone(),
        None => req
            .client
            .config_path(req.scope, env)
            .map_err(|e| anyhow!(e))?,
    };
    if req.client != Client::ClaudeCode {
        return Ok((path, None));
    }
    let hooks = match &req.config {
        Some(p) => p
            .parent()
            .unwrap_or(Path::new("."))
            .join(".claude/settings.json"),
        None => Client::hook_settings_path(req.scope, env).map_err(|e| anyhow!(e))?,
    };
    Ok((path, Some(hooks)))
}

/// The sidecar: enough to give the file back exactly.
#[derive(Serialize, serde::Deserialize)]
struct Sidecar {
    version: u32,
    /// The file's bytes before the first install (`None`: there was no file).
    original: Option<String>,
    /// SHA-256 of the bytes the last install wrote.
    installed_sha256: String,
    /// Each entry as it was before it was wrapped, by name.
    entries: Map<String, Value>,
    /// The file's directory was made by install (removed again if empty).
    #[serde(default)]
    created_dir: bool,
}

fn sidecar_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    file.with_file_name(name)
}

/// The sidecar at `path`, `None` when there is none. One that cannot be
/// read or parsed is an error: starting a new one would lose the original.
fn read_sidecar(path: &Path) -> anyhow::Result<Option<Sidecar>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is damaged; it holds the original config: repair it or move it away",
            path.display()
        )
    })
}

/// Read `file`, let `change` edit it (saving originals into the map), and
/// write it back with a diff when it changed. Returns whether it changed.
fn manage(
    file: &Path,
    dry_run: bool,
    change: impl FnOnce(&mut Value, &mut Map<String, Value>) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<bool> {
    let before = match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut doc = match &before {
        Some(text) => {
            parse_jsonc(text).with_context(|| format!("{} is not valid JSON", file.display()))?
        }
        None => json!({}),
    };
    let sidecar_file = sidecar_path(file);
    let mut sidecar = read_sidecar(&sidecar_file)?;
    let mut saved = Map::new();
    let notes = change(&mut doc, &mut saved)?;
    say!("{}:", file.display());
    for note in &notes {
        say!("{note}");
    }
    let after = render(&doc, before.as_deref());
    if before.as_deref() == Some(after.as_str()) {
        return Ok(false);
    }
    print_diff(file, before.as_deref().unwrap_or(""), &after);
    if dry_run {
        return Ok(true);
    }
    let side = sidecar.get_or_insert_with(|| Sidecar {
        version: 1,
        original: before.clone(),
        installed_sha256: String::new(),
        entries: Map::new(),
        created_dir: file
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && !p.exists()),
    });
    for (name, entry) in saved {
        side.entries.entry(name).or_insert(entry);
    }
    side.installed_sha256 = sha256_hex(&after);
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    write_private(&sidecar_file, &serde_json::to_string_pretty(side)?)?;
    std::fs::write(file, &after).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(true)
}

/// Undo [`manage`] for `file`. Returns false when it was never managed.
fn restore(file: &Path, client: Client, dry_run: bool) -> anyhow::Result<bool> {
    let sidecar_file = sidecar_path(file);
    let Some(sidecar) = read_sidecar(&sidecar_file)? else {
        return Ok(false);
    };
    let current = std::fs::read_to_string(file).ok();
    let untouched =
        current.as_deref().map(sha256_hex).as_deref() == Some(&sidecar.installed_sha256);
    say!("{}:", file.display());
    let restored = if untouched {
        say!("  unchanged since install: the original is put back byte for byte");
        sidecar.original.clone()
    } else {
        say!(
            "  changed since install: each wrapped entry gets its original back, other changes stay"
        );
        let Some(current) = &current else {
            bail!(
                "{} is gone; its original is in {}",
                file.display(),
                sidecar_file.display()
            );
        };
        let mut doc = parse_jsonc(current)?;
        unwrap_entries(&mut doc, client, &sidecar.entries);
        Some(render(&doc, Some(current)))
    };
    print_diff(
        file,
        current.as_deref().unwrap_or(""),
        restored.as_deref().unwrap_or(""),
    );
    if dry_run {
        return Ok(true);
    }
    match &restored {
        Some(text) => std::fs::write(file, text)?,
        None => {
            let _ = std::fs::remove_file(file);
        }
    }
    std::fs::remove_file(&sidecar_file)?;
    if sidecar.created_dir
        && let Some(dir) = file.parent()
    {
        // Only if empty: anything else put there stays.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(true)
}

/// Put back every wrapped server entry and remove the firewall's hooks.
fn unwrap_entries(doc: &mut Value, client: Client, originals: &Map<String, Value>) {
    if doc.get(client.servers_key()).is_some() {
        for (scope, servers) in server_maps(doc, client).unwrap_or_default() {
            for (name, entry) in servers.iter_mut() {
                if is_wrapped(entry)
                    && let Some(original) = originals.get(&format!("{scope}{name}"))
                {
                    *entry = original.clone();
                }
            }
        }
    }
    if let Some(hooks) = doc.get_mut("hooks").and_then(Value::as_object_mut) {
        for event in ["PreToolUse", "PostToolUse"] {
            if let Some(list) = hooks.get_mut(event).and_then(Value::as_array_mut) {
                list.retain(|group| !is_our_hook(group));
                if list.is_empty() {
                    hooks.remove(event);
                }
            }
        }
        if hooks.is_empty()
            && let Some(top) = doc.as_object_mut()
        {
            top.remove("hooks");
        }
    }
}

fn is_our_hook(group: &Value) -> bool {
    group["hooks"].as_array().is_some_and(|hooks| {
        hooks.iter().any(|h| {
            h["command"]
                .as_str()
                .is_some_and(|c| c.contains("mcp-firewall") && c.contains(" hook claude-code"))
        })
    })
}

/// Add the PreToolUse and PostToolUse hooks unless they are there.
fn add_hooks(doc: &mut Value, command: &str) -> anyhow::Result<Vec<String>> {
    let top = doc
        .as_object_mut()
        .ok_or_else(|| anyhow!("the settings file is not a JSON object"))?;
    let hooks = top.entry("hooks").or_insert_with(|| json!({}));
    let hooks = hooks
        .as_object_mut()
        .ok_or_else(|| anyhow!("`hooks` in the settings file is not an object"))?;
    let mut notes = Vec::new();
    for event in ["PreToolUse", "PostToolUse"] {
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or_else(|| anyhow!("`hooks.{event}` is not an array"))?;
        if list.iter().any(is_our_hook) {
            notes.push(format!("  hooks.{event}: already decided by mcp-firewall"));
            continue;
        }
        list.push(json!({"matcher": "*", "hooks": [
            {"type": "command", "command": command, "timeout": HOOK_TIMEOUT_SECS}
        ]}));
        notes.push(format!(
            "  hooks.{event}: every tool use goes through mcp-firewall"
        ));
    }
    Ok(notes)
}

/// The hook's command line, quoted for the shell Claude Code runs it with.
fn hook_command(program: &str, settings: &[String]) -> String {
    let mut words = vec![shell_quote(program), "hook".into(), "claude-code".into()];
    words.extend(settings.iter().map(|s| shell_quote(s)));
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Every servers object of a client config, each with the prefix its
/// entries are saved under: the top-level one (created when missing;
/// prefix ""), and for Claude Code's `~/.claude.json` each project's own
/// (`projects.<path>.mcpServers`, where `claude mcp add` puts servers by
/// default; prefix `projects/<path>/`).
fn server_maps(
    doc: &mut Value,
    client: Client,
) -> anyhow::Result<Vec<(String, &mut Map<String, Value>)>> {
    let key = client.servers_key();
    let top = doc
        .as_object_mut()
        .ok_or_else(|| anyhow!("the config file is not a JSON object"))?;
    top.entry(key).or_insert_with(|| json!({}));
    let mut maps = Vec::new();
    for (field, value) in top.iter_mut() {
        if field == key {
            let servers = value
                .as_object_mut()
                .ok_or_else(|| anyhow!("`{key}` is not an object"))?;
            maps.push((String::new(), servers));
        } else if field == "projects" && client == Client::ClaudeCode {
            for (path, project) in value.as_object_mut().into_iter().flatten() {
                if let Some(servers) = project.get_mut(key).and_then(Value::as_object_mut) {
                    maps.push((format!("projects/{path}/"), servers));
                }
            }
        }
    }
    Ok(maps)
}

/// JSON, or VS Code's JSON with comments.
fn parse_jsonc(text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(plain) => {
            let stripped = json_comments::StripComments::new(text.as_bytes());
            serde_json::from_reader(stripped).map_err(|_| anyhow!(plain))
        }
    }
}

/// Pretty JSON indented as `like` is (two spaces when unknown), with the
/// trailing newline `like` had.
fn render(doc: &Value, like: Option<&str>) -> String {
    let indent = like
        .and_then(|t| {
            t.lines()
                .skip(1)
                .find(|l| !l.trim().is_empty())
                .map(|l| l[..l.len() - l.trim_start().len()].to_string())
        })
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "  ".into());
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    doc.serialize(&mut ser).expect("a JSON value serializes");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    if like.is_none_or(|t| t.ends_with('\n')) {
        text.push('\n');
    }
    text
}

fn print_diff(file: &Path, before: &str, after: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    let name = file.display().to_string();
    say!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("{name} (before)"), &format!("{name} (after)"))
    );
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Create or replace `file` readable by its owner only (it holds the
/// original config, which may carry tokens).
fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// This binary's absolute path, as wrapped entries and hooks run it.
fn firewall_program() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the mcp-firewall binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    Ok(exe.to_string_lossy().into_owned())
}

/// The arguments every wrapped entry and the hook get: the firewall's
/// settings file (written by `init` if missing) and `--policy` if given.
fn firewall_settings(req: &Request, env: &Env) -> anyhow::Result<Vec<String>> {
    let config = match &req.firewall_config {
        Some(file) => file.clone(),
        None => {
            let home = firewall_home(env)?;
            let file = home.join(CONFIG_FILE);
            if !file.exists() {
                if req.dry_run {
                    say!("(would first run `mcp-firewall init {}`)", home.display());
                } else {
                    init_dir(&home)?;
                }
            }
            file
        }
    };
    let config = config.canonicalize().unwrap_or(config);
    let mut args = vec![
        "--config".to_string(),
        config.to_string_lossy().into_owned(),
    ];
    if let Some(policy) = &req.policy {
        let policy = policy.canonicalize().unwrap_or_else(|_| policy.clone());
        args.extend([
            "--policy".to_string(),
            policy.to_string_lossy().into_owned(),
        ]);
    }
    Ok(args)
}

/// The firewall's settings file `init` writes.
pub const CONFIG_FILE: &str = "mcp-firewall.toml";

/// Where `init` puts things by default: `~/.config/mcp-firewall`
/// (`%APPDATA%\mcp-firewall` on Windows).
pub fn firewall_home(env: &Env) -> anyhow::Result<PathBuf> {
    let base = if env.os == "windows" {
        env.app_config_dir()
    } else {
        match &env.config_home {
            Some(dir) => Ok(dir.clone()),
            None => env
                .home
                .clone()
                .map(|h| h.join(".config"))
                .ok_or_else(|| "no home directory (HOME)".to_string()),
        }
    };
    Ok(base.map_err(|e| anyhow!(e))?.join("mcp-firewall"))
}

/// `init [DIR]`.
pub fn init(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => firewall_home(&Env::current())?,
    };
    init_dir(&dir)?;
    let config = dir.join(CONFIG_FILE);
    say!(
        "\nNext: put your AI client's MCP servers behind it, e.g.\n  \
         mcp-firewall install --client claude-desktop   (or claude-code, cursor, vscode, windsurf)\n\
         or try one server by hand:\n  \
         mcp-firewall run --config {} -- npx -y @modelcontextprotocol/server-everything\n\
         Policies: {} (`mcp-firewall policy test {}` runs their tests).",
        config.display(),
        dir.join("policies").display(),
        dir.join("policies").display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Write the starter config and policy library into `dir`, keeping any
/// file that is already there.
fn init_dir(dir: &Path) -> anyhow::Result<()> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)
        .with_context(|| format!("cannot create {}", policies.display()))?;
    let mut files: Vec<(PathBuf, &str)> = vec![(dir.join(CONFIG_FILE), STARTER_CONFIG)];
    files.extend(
        super::library::FILES
            .iter()
            .map(|(name, text)| (policies.join(name), *text)),
    );
    for (path, text) in files {
        if path.exists() {
            say!("kept     {}", path.display());
            continue;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        say!("wrote    {}", path.display());
    }
    Ok(())
}

/// The settings `init` starts from: no upstreams (the wrapped entries name
/// theirs), the policy and log beside it, approvals commented out.
const STARTER_CONFIG: &str = r#"# mcp-firewall settings, written by `mcp-firewall init`.
# Wrapped servers (`mcp-firewall run --config THIS -- COMMAND ...`) and the
# Claude Code hook (`mcp-firewall hook claude-code --config THIS`) read it.
# Reference: https://github.com/ (README "Configuration") and docs/.

[policy]
# The Rego policy library (policy test: `mcp-firewall policy test policies`).
dir = "policies"

[audit]
# Every decision, hash-chained (`mcp-firewall audit verify audit.jsonl`).
path = "audit.jsonl"

[approval]
# A held call waits this long for an answer, then the client is told
# "pending approval apr_..., call again" (desktop clients give up at ~60 s).
wait_seconds = 50
# An approval request stays answerable this long.
timeout_seconds = 300
# Who may approve: OpenSSH allowed_signers lines (`NAME ssh-ed25519 KEY`).
# Answer with `mcp-firewall approvals approve apr_... --as NAME --key KEY`.
# approvers = "allowed_signers"
# Tell approvers by a signed webhook (secret in MCP_FIREWALL_WEBHOOK_SECRET):
# webhook = "https://approvals.example.com/mcp-firewall"
# The approval console and signed answers (see docs/approvals.md):
# listen = "127.0.0.1:7777"
"#;
