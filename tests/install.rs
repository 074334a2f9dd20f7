//! `init`, `install` and `uninstall` through the real binary, for each
//! client's config format: the rewritten entries start the firewall in
//! front of the real servers (a local command and a remote one behind a
//! bearer token), a second install changes nothing, and uninstall gives the
//! file back byte for byte.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;

use common::{WAIT, firewall_bin, fixture_bin};
use serde_json::{Value, json};

const TOKEN: &str = "remote-secret-123";

/// A remote MCP server: a firewall serving Streamable HTTP in front of the
/// fixture, that wants `Authorization: Bearer TOKEN`.
struct Remote {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Remote {
    fn start() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("remote.toml");
        let policy = common::policy_dir(common::ALLOW_ALL);
        let text = format!(
            "[policy]\ndir = {:?}\n[audit]\npath = \"remote-audit.jsonl\"\n\
             [[upstream]]\nname = \"fx\"\ncommand = {:?}\n\
             [http]\ntokens = [{{ principal = \"desk\", env = \"REMOTE_TOKEN\" }}]\n",
            policy.path(),
            fixture_bin()
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(firewall_bin())
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .env("REMOTE_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("mcp-firewall: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx.recv_timeout(WAIT).expect("the remote server listens");
        std::mem::forget(policy);
        Remote {
            child,
            url: format!("{base}/mcp"),
            _dir: dir,
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn firewall(args: &[&str]) -> (bool, String) {
    let out = Command::new(firewall_bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Start `entry` as the client would (command, args, env, cwd) and list
/// its tools over stdio.
fn tools_through(entry: &Value) -> Vec<String> {
    let mut cmd = Command::new(entry["command"].as_str().expect("a command"));
    for arg in entry["args"].as_array().unwrap() {
        cmd.arg(arg.as_str().unwrap());
    }
    // Like the MCP SDKs' stdio clients: a few variables, plus the entry's.
    cmd.env_clear();
    for key in ["HOME", "PATH"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    if let Some(env) = entry["env"].as_object() {
        for (k, v) in env {
            cmd.env(k, v.as_str().unwrap());
        }
    }
    if let Some(cwd) = entry["cwd"].as_str() {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let ask =
        |stdin: &mut std::process::ChildStdin, id: i64, method: &str, params: Value| -> Value {
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            writeln!(stdin, "{msg}").unwrap();
            loop {
                let v = rx.recv_timeout(WAIT).expect("an answer");
                if v["id"] == json!(id) {
                    return v;
                }
            }
        };
    let init = ask(
        &mut stdin,
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "install-test", "version": "1"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    let list = ask(&mut stdin, 2, "tools/list", json!({}));
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// install -> start both entries -> install again -> uninstall, for the
/// client config `template` (`{fixture}`, `{cwd}`, `{remote}`, `{token}`
/// filled in).
fn round_trip(client: &str, servers_key: &str, template: &str) -> (tempfile::TempDir, PathBuf) {
    let remote = Remote::start();
    let dir = tempfile::tempdir().unwrap();
    let original = template
        .replace("{fixture}", fixture_bin())
        .replace("{cwd}", dir.path().to_str().unwrap())
        .replace("{remote}", &remote.url)
        .replace("{token}", TOKEN);
    let original = original.as_str();
    let home = dir.path().join("fw");
    let (ok, out) = firewall(&["init", home.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("mcp-firewall install --client"),
        "init names the next step: {out}"
    );
    let settings = home.join("mcp-firewall.toml");
    let file = dir.path().join("client").join("config.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, original).unwrap();
    let install = [
        "install",
        "--client",
        client,
        "--config",
        file.to_str().unwrap(),
        "--firewall-config",
        settings.to_str().unwrap(),
    ];
    let (ok, out) = firewall(&install);
    assert!(ok, "{out}");
    assert!(
        out.contains("now runs through mcp-firewall") && out.contains("+++"),
        "{out}"
    );
    let installed = std::fs::read_to_string(&file).unwrap();
    let doc: Value = serde_json::from_str(&installed).unwrap();
    let servers = &doc[servers_key];
    // Keys the firewall does not own are as they were.
    assert_eq!(servers["local"]["env"]["FIXTURE_GREETING"], "hello");
    assert_eq!(servers["local"]["cwd"], dir.path().to_str().unwrap());
    assert!(tools_through(&servers["local"]).contains(&"echo".to_string()));
    // The remote firewall names its upstream's tools `fx__...`.
    assert!(tools_through(&servers["remote"]).contains(&"fx__echo".to_string()));
    assert!(
        !servers["remote"]["args"].to_string().contains(TOKEN),
        "the token stays off argv"
    );

    if client == "claude-code" {
        // Claude Code also gets the hook: its own tools go through the policy.
        let hooks = file.parent().unwrap().join(".claude/settings.json");
        let hooks: Value = serde_json::from_str(&std::fs::read_to_string(hooks).unwrap()).unwrap();
        for event in ["PreToolUse", "PostToolUse"] {
            let command = hooks["hooks"][event][0]["hooks"][0]["command"]
                .as_str()
                .unwrap();
            assert!(command.contains(" hook claude-code --config "), "{command}");
        }
    }
    let (ok, out) = firewall(&install);
    assert!(
        ok && out.contains("already runs through mcp-firewall"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        installed,
        "a second install changes nothing"
    );

    let (ok, out) = firewall(&[
        "uninstall",
        "--client",
        client,
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "byte-identical round trip"
    );
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["config.json"], "the backup is gone");
    (dir, file)
}

#[test]
fn claude_desktop() {
    round_trip(
        "claude-desktop",
        "mcpServers",
        r#"{
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "local": {"command": "{fixture}", "args": [], "env": {"FIXTURE_GREETING": "hello"}, "cwd": "{cwd}"},
        "remote": {"url": "{remote}", "headers": {"Authorization": "Bearer {token}"}}
    },
    "preferences": {"menuBarEnabled": false}
}
"#,
    );
}

#[test]
fn claude_code_project_scope_with_its_hooks() {
    let (dir, file) = round_trip(
        "claude-code",
        "mcpServers",
        r#"{
  "mcpServers": {
    "local": {
      "type": "stdio",
      "command": "{fixture}",
      "args": [],
      "env": {"FIXTURE_GREETING": "hello"},
      "cwd": "{cwd}"
    },
    "remote": {
      "type": "http",
      "url": "{remote}",
      "headers": {"Authorization": "Bearer {token}"}
    }
  }
}"#,
    );
    // The hook settings went in and came out with the rest.
    let settings = file.parent().unwrap().join(".claude/settings.json");
    assert!(
        !settings.exists(),
        "uninstall removed the settings it created"
    );
    drop(dir);
}

#[test]
fn cursor() {
    round_trip(
        "cursor",
        "mcpServers",
        r#"{"mcpServers":{"local":{"command":"{fixture}","env":{"FIXTURE_GREETING":"hello"},"cwd":"{cwd}"},"remote":{"url":"{remote}","headers":{"Authorization":"Bearer {token}"}}}}"#,
    );
}

#[test]
fn vscode_with_comments_and_inputs() {
    round_trip(
        "vscode",
        "servers",
        r#"{
	// Servers for this workspace.
	"inputs": [{"type": "promptString", "id": "token", "description": "Token", "password": true}],
	"servers": {
		"local": {"type": "stdio", "command": "{fixture}", "args": [], "env": {"FIXTURE_GREETING": "hello"}, "cwd": "{cwd}"},
		/* a remote one */
		"remote": {"type": "http", "url": "{remote}", "headers": {"Authorization": "Bearer {token}"}}
	}
}
"#,
    );
}

#[test]
fn windsurf() {
    round_trip(
        "windsurf",
        "mcpServers",
        r#"{
  "mcpServers": {
    "local": {"command": "{fixture}", "args": [], "env": {"FIXTURE_GREETING": "hello"}, "cwd": "{cwd}"},
    "remote": {"serverUrl": "{remote}", "headers": {"Authorization": "Bearer {token}"}}
  }
}
"#,
    );
}

/// The client or the user changed the file after install: uninstall puts
/// back each wrapped entry and keeps the other changes.
#[test]
fn uninstall_after_the_client_rewrote_the_file_keeps_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claude_desktop_config.json");
    let settings = dir.path().join("fw.toml");
    std::fs::write(&settings, "[policy]\ndir = \"policies\"\n").unwrap();
    let original =
        json!({"mcpServers": {"a": {"command": "node", "args": ["a.js"], "env": {"K": "v"}}}});
    std::fs::write(&file, original.to_string()).unwrap();
    let f = file.to_str().unwrap();
    let (ok, out) = firewall(&[
        "install",
        "--client",
        "claude-desktop",
        "--config",
        f,
        "--firewall-config",
        settings.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["mcpServers"]["b"] = json!({"command": "python3", "args": ["b.py"]});
    doc["theme"] = json!("dark");
    std::fs::write(&file, doc.to_string()).unwrap();
    let (ok, out) = firewall(&["uninstall", "--client", "claude-desktop", "--config", f]);
    assert!(ok && out.contains("changed since install"), "{out}");
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(after["mcpServers"]["a"], original["mcpServers"]["a"]);
    assert_eq!(
        after["mcpServers"]["b"],
        json!({"command": "python3", "args": ["b.py"]})
    );
    assert_eq!(after["theme"], "dark");
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.json");
    let text = r#"{"mcpServers":{"a":{"command":"node"}}}"#;
    std::fs::write(&file, text).unwrap();
    let settings = dir.path().join("fw.toml");
    std::fs::write(&settings, "").unwrap();
    let (ok, out) = firewall(&[
        "install",
        "--client",
        "cursor",
        "--dry-run",
        "--config",
        file.to_str().unwrap(),
        "--firewall-config",
        settings.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains("dry run") && out.contains("+++"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// Claude Code's user file `~/.claude.json` also holds each project's own
/// servers (`projects.<path>.mcpServers`, where `claude mcp add` puts them
/// by default): they are wrapped too, found through $HOME, with the hooks
/// in `~/.claude/settings.json`.
#[test]
fn claude_code_user_scope_wraps_every_projects_servers() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".claude.json");
    let original = json!({
        "numStartups": 3,
        "mcpServers": {"top": {"type": "stdio", "command": fixture_bin(), "args": []}},
        "projects": {
            "/home/u/app": {"allowedTools": [], "mcpServers": {
                "local": {"type": "stdio", "command": fixture_bin(), "args": [], "env": {"FIXTURE_GREETING": "hi"}}
            }},
            "/home/u/empty": {"allowedTools": []}
        }
    })
    .to_string();
    std::fs::write(&file, &original).unwrap();
    let settings = home.path().join("fw.toml");
    let policy = common::policy_dir(common::ALLOW_ALL);
    std::fs::write(&settings, format!("[policy]\ndir = {:?}\n", policy.path())).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(firewall_bin())
            .args(args)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let out = run(&[
        "install",
        "--client",
        "claude-code",
        "--firewall-config",
        settings.to_str().unwrap(),
    ]);
    assert!(
        out.contains("projects//home/u/app/local: now runs through mcp-firewall"),
        "{out}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let local = &doc["projects"]["/home/u/app"]["mcpServers"]["local"];
    assert_eq!(local["env"]["FIXTURE_GREETING"], "hi");
    assert!(tools_through(local).contains(&"echo".to_string()));
    assert!(tools_through(&doc["mcpServers"]["top"]).contains(&"echo".to_string()));
    assert!(home.path().join(".claude/settings.json").exists());
    run(&["uninstall", "--client", "claude-code"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert!(!home.path().join(".claude").exists());
}
