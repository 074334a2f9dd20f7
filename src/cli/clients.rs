//! The AI clients `install` knows: where each keeps its MCP servers, in
//! which shape, and how an entry is wrapped so the server runs through the
//! firewall (and unwrapped again).
//!
//! | client | file (user scope; project scope) | servers key | remote entry |
//! |---|---|---|---|
//! | Claude Desktop | macOS `~/Library/Application Support/Claude/claude_desktop_config.json`, Windows `%APPDATA%\Claude\…`, Linux `~/.config/Claude/…` | `mcpServers` | `url` |
//! | Claude Code | `~/.claude.json`; `.mcp.json` | `mcpServers` | `type` + `url` |
//! | Cursor | `~/.cursor/mcp.json`; `.cursor/mcp.json` | `mcpServers` | `url` |
//! | VS Code | `Code/User/mcp.json` in the user config dir; `.vscode/mcp.json` | `servers` | `type` + `url` |
//! | Windsurf | `~/.codeium/windsurf/mcp_config.json` | `mcpServers` | `serverUrl` |

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// One client's config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    VsCode,
    Windsurf,
}

/// Whose config: the user's, or the project's in the current directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Project,
}

/// Every client and the name `--client` takes for it.
pub const CLIENTS: [(Client, &str); 5] = [
    (Client::ClaudeDesktop, "claude-desktop"),
    (Client::ClaudeCode, "claude-code"),
    (Client::Cursor, "cursor"),
    (Client::VsCode, "vscode"),
    (Client::Windsurf, "windsurf"),
];

impl Client {
    pub fn parse(name: &str) -> Option<Client> {
        CLIENTS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    pub fn name(self) -> &'static str {
        CLIENTS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("", |(_, n)| n)
    }

    /// The key holding the server entries.
    pub fn servers_key(self) -> &'static str {
        match self {
            Client::VsCode => "servers",
            _ => "mcpServers",
        }
    }

    /// The key of a remote server's URL.
    fn url_key(self) -> &'static str {
        match self {
            Client::Windsurf => "serverUrl",
            _ => "url",
        }
    }

    /// Entries carry `"type": "stdio" | "http" | "sse"`.
    fn typed(self) -> bool {
        matches!(self, Client::ClaudeCode | Client::VsCode)
    }

    /// The config file of `scope`, on this operating system.
    pub fn config_path(self, scope: Scope, env: &Env) -> Result<PathBuf, String> {
        let project = |rel: &str| Ok(env.cwd.join(rel));
        match (self, scope) {
            (Client::ClaudeCode, Scope::Project) => project(".mcp.json"),
            (Client::Cursor, Scope::Project) => project(".cursor/mcp.json"),
            (Client::VsCode, Scope::Project) => project(".vscode/mcp.json"),
            (Client::ClaudeDesktop | Client::Windsurf, Scope::Project) => Err(format!(
                "{} has no project-scoped MCP config; use --scope user",
                self.name()
            )),
            (Client::ClaudeDesktop, Scope::User) => Ok(env
                .app_config_dir()?
                .join("Claude/claude_desktop_config.json")),
            (Client::ClaudeCode, Scope::User) => Ok(env.home()?.join(".claude.json")),
            (Client::Cursor, Scope::User) => Ok(env.home()?.join(".cursor/mcp.json")),
            (Client::VsCode, Scope::User) => Ok(env.app_config_dir()?.join("Code/User/mcp.json")),
            (Client::Windsurf, Scope::User) => {
                Ok(env.home()?.join(".codeium/windsurf/mcp_config.json"))
            }
        }
    }

    /// Claude Code's settings file, where its hooks live.
    pub fn hook_settings_path(scope: Scope, env: &Env) -> Result<PathBuf, String> {
        match scope {
            Scope::User => Ok(env.home()?.join(".claude/settings.json")),
            Scope::Project => Ok(env.cwd.join(".claude/settings.json")),
        }
    }
}

/// What the paths depend on (the process environment, or a test's).
pub struct Env {
    pub os: &'static str,
    pub home: Option<PathBuf>,
    /// `%APPDATA%` on Windows, `$XDG_CONFIG_HOME` elsewhere.
    pub config_home: Option<PathBuf>,
    pub cwd: PathBuf,
}

impl Env {
    pub fn current() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let os = std::env::consts::OS;
        Env {
            os,
            home: if os == "windows" {
                var("USERPROFILE")
            } else {
                var("HOME")
            },
            config_home: if os == "windows" {
                var("APPDATA")
            } else {
                var("XDG_CONFIG_HOME")
            },
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    fn home(&self) -> Result<PathBuf, String> {
        self.home
            .clone()
            .ok_or_else(|| "no home directory (HOME / USERPROFILE); give --config".to_string())
    }

    /// Where desktop apps keep their settings on this OS.
    pub fn app_config_dir(&self) -> Result<PathBuf, String> {
        match self.os {
            "macos" => Ok(self.home()?.join("Library/Application Support")),
            "windows" => self
                .config_home
                .clone()
                .ok_or_else(|| "APPDATA is not set; give --config".to_string()),
            _ => match &self.config_home {
                Some(dir) => Ok(dir.clone()),
                None => Ok(self.home()?.join(".config")),
            },
        }
    }
}

/// How a wrapped entry runs the firewall.
pub struct Wrapper {
    /// The firewall binary, absolute.
    pub program: String,
    /// Arguments every wrapped entry gets after `run` (`--config FILE`,
    /// `--policy DIR`).
    pub settings: Vec<String>,
}

/// What [`wrap`] did to one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrapped {
    /// The new entry.
    Now(Value),
    /// Already runs through the firewall.
    Already,
    /// Neither a command nor a URL: left alone.
    Unknown,
}

/// Whether `entry` already runs through a firewall (`mcp-firewall run ...`).
pub fn is_wrapped(entry: &Value) -> bool {
    let command = entry.get("command").and_then(Value::as_str).unwrap_or("");
    let stem = Path::new(command)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let first = entry
        .get("args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    stem == "mcp-firewall" && first == Some("run")
}

/// A server name as `input.server` may spell it (letters, digits, `-`,
/// `_`; at most 32; no `__`).
pub fn upstream_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let mut out: String = out.chars().take(32).collect();
    if out.is_empty() {
        out = "server".into();
    }
    out
}

/// The entry `name` rewritten to run through the firewall. Every key the
/// firewall does not own (env, cwd, envFile, disabled ...) is kept as it was.
pub fn wrap(client: Client, name: &str, entry: &Value, wrapper: &Wrapper) -> Wrapped {
    let Some(fields) = entry.as_object() else {
        return Wrapped::Unknown;
    };
    if is_wrapped(entry) {
        return Wrapped::Already;
    }
    let mut args = vec![json!("run")];
    args.extend(wrapper.settings.iter().map(|a| json!(a)));
    args.extend([json!("--name"), json!(upstream_name(name))]);
    let mut out = fields.clone();
    if let Some(command) = fields.get("command").and_then(Value::as_str) {
        args.push(json!("--"));
        args.push(json!(command));
        if let Some(original) = fields.get("args").and_then(Value::as_array) {
            args.extend(original.iter().cloned());
        }
    } else if let Some(url) = fields.get(client.url_key()).and_then(Value::as_str) {
        args.extend([json!("--url"), json!(url)]);
        let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "sse" || fields.get("transport").and_then(Value::as_str) == Some("sse") {
            args.extend([json!("--transport"), json!("sse")]);
        }
        // Header values move into the entry's env, so a token never shows
        // on the firewall's command line; the firewall reads `${VAR}`.
        let mut env = fields
            .get("env")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(headers) = fields.get("headers").and_then(Value::as_object) {
            for (header, value) in headers {
                let var = format!("MCP_FIREWALL_HEADER_{}", env_word(header));
                args.extend([json!("--header"), json!(format!("{header}: ${{{var}}}"))]);
                env.insert(var, value.clone());
            }
        }
        for key in [client.url_key(), "headers", "transport"] {
            out.remove(key);
        }
        if !env.is_empty() {
            out.insert("env".into(), Value::Object(env));
        }
        if client.typed() {
            out.insert("type".into(), json!("stdio"));
        }
    } else {
        return Wrapped::Unknown;
    }
    out.insert("command".into(), json!(wrapper.program));
    out.insert("args".into(), Value::Array(args));
    Wrapped::Now(Value::Object(reorder(fields, out)))
}

/// `out`'s keys in the original entry's order, new keys after.
fn reorder(original: &Map<String, Value>, mut out: Map<String, Value>) -> Map<String, Value> {
    let mut ordered = Map::new();
    for key in original.keys() {
        if let Some(v) = out.remove(key) {
            ordered.insert(key.clone(), v);
        }
    }
    for key in ["command", "args", "env"] {
        if let Some(v) = out.remove(key) {
            ordered.insert(key.into(), v);
        }
    }
    ordered.extend(out);
    ordered
}

fn env_word(header: &str) -> String {
    header
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper() -> Wrapper {
        Wrapper {
            program: "/usr/local/bin/mcp-firewall".into(),
            settings: vec![
                "--config".into(),
                "/home/u/.config/mcp-firewall/mcp-firewall.toml".into(),
            ],
        }
    }

    #[test]
    fn a_stdio_entry_keeps_env_cwd_and_unknown_keys() {
        let entry = json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
                           "env": {"TOKEN": "x"}, "cwd": "/srv", "disabled": false});
        let Wrapped::Now(out) = wrap(Client::ClaudeDesktop, "file system", &entry, &wrapper())
        else {
            panic!()
        };
        assert_eq!(out["command"], "/usr/local/bin/mcp-firewall");
        assert_eq!(
            out["args"],
            json!([
                "run",
                "--config",
                "/home/u/.config/mcp-firewall/mcp-firewall.toml",
                "--name",
                "file-system",
                "--",
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/srv"
            ])
        );
        assert_eq!(out["env"], entry["env"]);
        assert_eq!(out["cwd"], "/srv");
        assert_eq!(out["disabled"], false);
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["command", "args", "env", "cwd", "disabled"]);
        assert_eq!(
            wrap(Client::ClaudeDesktop, "x", &out, &wrapper()),
            Wrapped::Already
        );
    }

    #[test]
    fn a_remote_entry_runs_a_local_firewall_with_its_headers_in_env() {
        let entry = json!({"type": "http", "url": "https://mcp.example.com/mcp",
                           "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}});
        let Wrapped::Now(out) = wrap(Client::ClaudeCode, "github", &entry, &wrapper()) else {
            panic!()
        };
        assert_eq!(out["type"], "stdio");
        let args = out["args"].as_array().unwrap();
        let tail: Vec<&str> = args[5..].iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(
            tail,
            [
                "--url",
                "https://mcp.example.com/mcp",
                "--header",
                "Authorization: ${MCP_FIREWALL_HEADER_AUTHORIZATION}"
            ]
        );
        assert_eq!(
            out["env"]["MCP_FIREWALL_HEADER_AUTHORIZATION"],
            "Bearer ${GITHUB_TOKEN}"
        );
        assert!(out.get("url").is_none() && out.get("headers").is_none());
        let sse = json!({"serverUrl": "https://x.example/sse", "transport": "sse"});
        let Wrapped::Now(out) = wrap(Client::Windsurf, "x", &sse, &wrapper()) else {
            panic!()
        };
        assert!(
            out["args"].to_string().contains(r#""--transport","sse""#),
            "{out}"
        );
        assert!(out.get("type").is_none());
    }

    #[test]
    fn names_become_upstream_names() {
        assert_eq!(upstream_name("github"), "github");
        assert_eq!(upstream_name("my server__x"), "my-server-x");
        assert_eq!(upstream_name("@scope/pkg"), "scope-pkg");
        assert_eq!(upstream_name("!!!"), "server");
        assert_eq!(upstream_name(&"a".repeat(40)).len(), 32);
    }

    #[test]
    fn paths_follow_the_operating_system() {
        let env = |os| Env {
            os,
            home: Some(PathBuf::from("/h")),
            config_home: None,
            cwd: PathBuf::from("/p"),
        };
        let desktop = |os| {
            Client::ClaudeDesktop
                .config_path(Scope::User, &env(os))
                .unwrap()
        };
        assert_eq!(
            desktop("linux"),
            PathBuf::from("/h/.config/Claude/claude_desktop_config.json")
        );
        assert_eq!(
            desktop("macos"),
            PathBuf::from("/h/Library/Application Support/Claude/claude_desktop_config.json")
        );
        let mut windows = env("windows");
        windows.config_home = Some(PathBuf::from("C:/Users/u/AppData/Roaming"));
        assert_eq!(
            Client::VsCode.config_path(Scope::User, &windows).unwrap(),
            PathBuf::from("C:/Users/u/AppData/Roaming/Code/User/mcp.json")
        );
        assert_eq!(
            Client::ClaudeCode
                .config_path(Scope::Project, &env("linux"))
                .unwrap(),
            PathBuf::from("/p/.mcp.json")
        );
        assert!(
            Client::Windsurf
                .config_path(Scope::Project, &env("linux"))
                .is_err()
        );
    }
}
