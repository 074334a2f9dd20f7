//! Tool-definition scanning through the real binary: detection on a
//! poisoned set written from published attack patterns, false positives on
//! the pinned npm reference servers. Prints both figures:
//!
//!     cargo test --test description_scan -- --nocapture

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn flagged(fw: &Firewall) -> Vec<Value> {
    fw.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "tool.flagged")
        .collect()
}

fn listed(fw: &mut Firewall) -> usize {
    let tools = fw.request("tools/list", json!({}));
    tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .len()
}

#[test]
fn every_poisoned_definition_is_flagged_and_the_benign_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let poisoned = repo_path("fixtures/poisoned-tools/poisoned.json");
    let benign = repo_path("fixtures/poisoned-tools/benign.json");
    let config = dir.path().join("mcp-firewall.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "poison"
command = "python3"
args = ["{hostile}"]
env = {{ TOOLS_FILE = "{poisoned}" }}

[[upstream]]
name = "mail"
command = "python3"
args = ["{hostile}"]
env = {{ TOOLS_FILE = "{benign}" }}
"#,
            hostile = hostile.display(),
            poisoned = poisoned.display(),
            benign = benign.display(),
        ),
    )
    .unwrap();
    let mut fw = start_with_config(&config);
    let total = listed(&mut fw);
    let poisoned_defs: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&poisoned).unwrap()).unwrap();
    let flags = flagged(&fw);
    let poison_flagged = flags.iter().filter(|r| r["server"] == "poison").count();
    let benign_flagged = flags.iter().filter(|r| r["server"] == "mail").count();
    println!(
        "detection: {poison_flagged}/{} poisoned definitions flagged; benign flagged: {benign_flagged}/{}",
        poisoned_defs.len(),
        total - poisoned_defs.len()
    );
    for def in &poisoned_defs {
        assert!(
            flags.iter().any(|r| r["tool"] == def["name"]),
            "not flagged: {} ({})",
            def["name"],
            def["_pattern"]
        );
    }
    assert_eq!(benign_flagged, 0, "{flags:#?}");
    // Shadowing names the other server's tool.
    let shadow = flags.iter().find(|r| r["tool"] == "multiply").unwrap();
    assert!(
        shadow["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "shadowing" && f["names"] == "send_email"),
        "{shadow}"
    );
    // And the policy sees the findings: a poisoned tool is held by the
    // shipped rule (here: the finding is in the decided input).
    fw.call("poison__add", json!({"a": 1, "b": 2}));
    let decided = fw.wait_audit("decision", |r| {
        r["event"] == "call.decided" && r["exposed_name"] == "poison__add"
    });
    assert!(
        decided["input"]["tool"]["findings"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
}

fn npm_server(name: &str) -> String {
    repo_path(&format!(
        "fixtures/npm/node_modules/@modelcontextprotocol/{name}/dist/index.js"
    ))
    .to_str()
    .unwrap()
    .to_string()
}

/// The pinned reference servers' own tools: the target is zero flags.
#[test]
fn reference_servers_raise_no_false_positives() {
    let root = tempfile::tempdir().unwrap();
    let memory = root.path().join("memory.json");
    let servers: Vec<(&str, Vec<String>)> = vec![
        ("server-everything", vec!["stdio".into()]),
        (
            "server-filesystem",
            vec![root.path().to_str().unwrap().to_string()],
        ),
        ("server-memory", vec![]),
        ("server-sequential-thinking", vec![]),
        ("server-github", vec![]),
        ("server-brave-search", vec![]),
    ];
    let mut total_tools = 0;
    let mut total_flags = Vec::new();
    for (name, args) in servers {
        let script = npm_server(name);
        let mut cmd = vec!["node", script.as_str()];
        cmd.extend(args.iter().map(String::as_str));
        let mut fw = Builder::new()
            .rego(ALLOW_ALL)
            .env("MEMORY_FILE_PATH", memory.to_str().unwrap())
            .env("BRAVE_API_KEY", "not-a-real-key")
            .env("GITHUB_PERSONAL_ACCESS_TOKEN", "not-a-real-token")
            .wrap(&cmd);
        fw.initialize_with(json!({"sampling": {}, "elicitation": {}, "roots": {}}));
        let n = listed(&mut fw);
        let flags = flagged(&fw);
        println!("{name}: {n} tools, {} flagged", flags.len());
        total_tools += n;
        total_flags.extend(flags);
        assert!(Path::new(&script).exists());
    }
    println!(
        "false positives: {}/{total_tools} tools of 6 reference servers",
        total_flags.len()
    );
    assert!(total_tools > 40, "the servers listed their tools");
    assert!(total_flags.is_empty(), "{total_flags:#?}");
}
