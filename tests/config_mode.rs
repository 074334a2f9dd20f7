//! `run --config FILE`: several upstreams merged into one namespaced
//! catalogue, and config mistakes reported with file, key and expectation.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn write_config(dir: &Path, policy: &Path, extra: &str) -> std::path::PathBuf {
    let fixture = fixture_bin();
    let text = format!(
        r#"
[policy]
dir = "{policy}"

[audit]
path = "audit.jsonl"
mask_fields = ["content"]

[session]
principal = "config-alice"

[[upstream]]
name = "alpha"
command = "{fixture}"
env = {{ FIXTURE_NAME = "alpha" }}

[[upstream]]
name = "beta"
command = "{fixture}"
env = {{ FIXTURE_NAME = "beta" }}
{extra}
"#,
        policy = policy.display()
    );
    let path = dir.join("mcp-firewall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(extra: &str) -> (Firewall, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(policy.join("policy.rego"), ALLOW_ALL).unwrap();
    let config = write_config(dir.path(), &policy, extra);
    // The harness passes --policy/--audit-log; point them where the config does.
    let fw = Builder::new()
        .policy_path(&policy)
        .audit(&dir.path().join("audit.jsonl"))
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start();
    (fw, dir)
}

/// The operator settles which upstream a URI belongs to: with
/// `resource_prefixes` on beta, beta lists and serves the notes both list,
/// and what neither was given stays refused.
#[test]
fn resource_prefixes_give_contested_uris_to_one_upstream() {
    let (mut fw, _dir) = start("resource_prefixes = [\"fixture://notes/\"]\n");
    fw.initialize();
    let listed = fw.request("resources/list", json!({}));
    let uris = listed_uris(&listed);
    assert!(uris.contains(&"fixture://notes/hello"), "{listed}");
    assert!(!uris.contains(&"fixture://secret/key"), "{listed}");
    let read = fw.request("resources/read", json!({"uri": "fixture://notes/hello"}));
    assert_eq!(read["result"]["contents"][0]["text"], "world", "{read}");
    let decided = fw.wait_audit("resource decision", |r| {
        r["event"] == "call.decided" && r["method"] == "resources/read"
    });
    assert_eq!(decided["server"], "beta", "{decided}");
    let secret = fw.request("resources/read", json!({"uri": "fixture://secret/key"}));
    assert_eq!(
        secret["error"]["data"]["kind"], "resource_contested",
        "{secret}"
    );
}

#[test]
fn two_upstreams_are_merged_with_prefixed_names() {
    let (mut fw, _dir) = start("");
    let init = fw.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-firewall");
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);

    let tools = fw.request("tools/list", json!({}));
    let names: Vec<String> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"alpha__echo".to_string()) && names.contains(&"beta__echo".to_string()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("alpha__") || n.starts_with("beta__"))
    );

    assert_eq!(
        text(&fw.call("alpha__echo", json!({"text": "hi"}))),
        "[alpha] hi"
    );
    assert_eq!(
        text(&fw.call("beta__echo", json!({"text": "hi"}))),
        "[beta] hi"
    );
    let unknown = fw.call("echo", json!({"text": "hi"}));
    assert_eq!(
        unknown["error"]["code"], -32602,
        "un-prefixed names do not exist: {unknown}"
    );

    let prompts = fw.request("prompts/list", json!({}));
    assert!(
        prompts["result"]["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "beta__greet")
    );
    let greet = fw.request(
        "prompts/get",
        json!({"name": "beta__greet", "arguments": {"name": "Bo"}}),
    );
    assert!(
        greet["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("Bo")
    );

    // Both list fixture://notes/hello: it goes to neither (either could
    // answer for the other), and neither listing shows it.
    let read = fw.request("resources/read", json!({"uri": "fixture://notes/hello"}));
    assert_eq!(read["error"]["code"], -32002, "{read}");
    assert_eq!(
        read["error"]["data"]["kind"], "resource_contested",
        "{read}"
    );
    assert!(
        read["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(alpha, beta)"),
        "{read}"
    );
    let decided = fw.wait_audit("resource decision", |r| {
        r["event"] == "call.decided" && r["method"] == "resources/read"
    });
    assert_eq!(decided["result"]["decision"], "deny", "{decided}");
    let listed = fw.request("resources/list", json!({}));
    assert_eq!(listed["result"]["resources"], json!([]), "{listed}");
}

#[test]
fn the_config_principal_and_mask_fields_reach_the_audit_log() {
    let (mut fw, _dir) = start("");
    fw.initialize();
    fw.call(
        "alpha__write_note",
        json!({"name": "n", "content": "top secret"}),
    );
    let decided = fw.wait_audit("write_note decision", |r| {
        r["event"] == "call.decided" && r["target"] == "write_note"
    });
    assert_eq!(decided["principal"]["id"], "config-alice");
    assert_eq!(decided["principal"]["source"], "config");
    assert_eq!(
        decided["arguments"]["content"], "***",
        "configured field is masked"
    );
    assert_eq!(decided["arguments"]["name"], "n");
}

#[test]
fn when_one_upstream_dies_the_other_keeps_serving() {
    let (mut fw, _dir) = start("");
    fw.initialize();
    let crash = fw.call("beta__crash", json!({}));
    assert!(crash.get("error").is_some(), "{crash}");
    fw.notification("notifications/tools/list_changed");
    let dead = fw.call("beta__echo", json!({"text": "x"}));
    assert_eq!(dead["error"]["code"], -32003, "{dead}");
    assert!(dead["error"]["message"].as_str().unwrap().contains("beta"));
    assert_eq!(
        text(&fw.call("alpha__echo", json!({"text": "alive"}))),
        "[alpha] alive"
    );
    let tools = fw.request("tools/list", json!({}));
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"].as_str().unwrap().starts_with("alpha__"))
    );
}

#[test]
fn config_mistakes_name_the_file_and_key_and_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\ncolour = \"red\"\n",
            "colour",
        ),
        (
            "[[upstream]]\nname = \"a__b\"\ncommand = \"x\"\n",
            "upstream[0].name",
        ),
        ("[[upstream]]\nname = \"a\"\n", "command"),
        (
            "[policy]\ndir = 5\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n",
            "dir",
        ),
    ];
    for (text, key) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(firewall_bin())
            .args(["run", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bad.toml") && stderr.contains(key),
            "{text:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout: it belongs to MCP"
        );
    }
}
