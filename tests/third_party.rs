//! Real third-party peers: the official Python MCP SDK as the client, and
//! the npm reference servers (`server-filesystem`, `server-everything`) as
//! upstreams. They are installed by `scripts/setup.sh`; a missing install is
//! a failure with that hint, never a silent skip.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn python() -> PathBuf {
    let p = repo_path("fixtures/python/.venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

fn npm_server(package: &str) -> String {
    let p = repo_path(&format!(
        "fixtures/npm/node_modules/@modelcontextprotocol/{package}/dist/index.js"
    ));
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p.display().to_string()
}

/// Run fixtures/python/client.py against `server` (a full command line) and
/// return its JSON report.
fn python_client(args: &[&str], server: &[String]) -> Value {
    let out = Command::new(python())
        .arg(repo_path("fixtures/python/client.py"))
        .args(args)
        .arg("--")
        .args(server)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `mcp-firewall run --policy P --audit-log A -- upstream...` as a command line.
fn firewall_cmd(rego: &str, upstream: &[String]) -> (Vec<String>, tempfile::TempDir) {
    let dir = policy_dir(rego);
    let audit = dir.path().join("audit.jsonl");
    let mut cmd = vec![
        firewall_bin().to_string(),
        "run".into(),
        "--policy".into(),
        dir.path().display().to_string(),
        "--audit-log".into(),
        audit.display().to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--".into(),
    ];
    cmd.extend(upstream.iter().cloned());
    (cmd, dir)
}

#[test]
fn python_sdk_client_through_the_firewall_sees_what_it_sees_directly() {
    let fixture = vec![fixture_bin().to_string()];
    let direct = python_client(
        &["--tool", "sample", "--args", r#"{"prompt":"x"}"#],
        &fixture,
    );
    let (fw, dir) = firewall_cmd(ALLOW_ALL, &fixture);
    let proxied = python_client(&["--tool", "sample", "--args", r#"{"prompt":"x"}"#], &fw);
    assert_eq!(proxied["protocol_version"], direct["protocol_version"]);
    assert_eq!(proxied["tools"], direct["tools"]);
    assert_eq!(proxied["result"], direct["result"]);
    assert_eq!(
        proxied["result"]["content"][0]["text"],
        "sampled: from-python-client"
    );
    assert!(
        proxied["server_requests"]
            .as_array()
            .unwrap()
            .contains(&json!("sampling/createMessage"))
    );
    let audit = read_audit(&dir.path().join("audit.jsonl"));
    let decided = audit
        .iter()
        .find(|r| r["event"] == "call.decided")
        .expect("decision recorded");
    assert_eq!(
        decided["client"]["name"], "mcp-firewall-python-client",
        "the SDK's clientInfo is recorded: {decided}"
    );
}

#[test]
fn python_sdk_client_sees_a_policy_denial_as_a_tool_error() {
    let rego = "package mcp.firewall\n\nallow if input.tool.name != \"echo\"\n\ndeny contains \"echo is off limits\" if input.tool.name == \"echo\"\n";
    let (fw, _dir) = firewall_cmd(rego, &[fixture_bin().to_string()]);
    let report = python_client(&["--tool", "echo", "--args", r#"{"text":"x"}"#], &fw);
    assert_eq!(report["result"]["isError"], true, "{report}");
    assert_eq!(
        report["result"]["content"][0]["text"],
        "Denied by policy: echo is off limits"
    );
}

#[test]
fn python_sdk_progress_and_elicitation_through_the_firewall() {
    let (fw, _dir) = firewall_cmd(ALLOW_ALL, &[fixture_bin().to_string()]);
    let report = python_client(
        &[
            "--progress",
            "--tool",
            "slow",
            "--args",
            r#"{"seconds":0.3,"steps":3}"#,
        ],
        &fw,
    );
    assert!(
        !report["progress"].as_array().unwrap().is_empty(),
        "progress relayed: {report}"
    );
    let report = python_client(&["--tool", "elicit", "--args", r#"{"message":"ok?"}"#], &fw);
    assert!(
        report["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("elicited: accept"),
        "{report}"
    );
}

#[test]
fn npm_server_filesystem_behind_the_shipped_policy() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::write(root_path.join("a.txt"), "alpha").unwrap();
    let data = json!({"mcp_firewall": {"filesystem": {"allowed_roots": [root_path.display().to_string()]}}});
    let policy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_path("policies")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policy.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(policy.path().join("data.json"), data.to_string()).unwrap();

    // The operator vouches for the reference server's annotations.
    let mut fw = Builder::new()
        .policy_path(policy.path())
        .keep(policy)
        .arg("--trust-annotations")
        .wrap(&[
            "node",
            &npm_server("server-filesystem"),
            root_path.to_str().unwrap(),
        ]);
    // No roots capability: the server keeps its command-line directory.
    fw.initialize();
    let tools = fw.request("tools/list", json!({}));
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "read_text_file")
    );

    let read = fw.call("read_text_file", json!({"path": root_path.join("a.txt")}));
    assert_eq!(text(&read), "alpha", "read-only tool allowed: {read}");

    let outside = fw.call(
        "write_file",
        json!({"path": "/etc/evil.txt", "content": "x"}),
    );
    assert_eq!(outside["result"]["isError"], true);
    assert!(text(&outside).starts_with("Denied by policy"), "{outside}");

    let inside = fw.call(
        "write_file",
        json!({"path": root_path.join("b.txt"), "content": "beta"}),
    );
    assert_eq!(inside["result"]["isError"], true);
    assert!(
        text(&inside).starts_with("Approval pending"),
        "destructive write is held: {inside}"
    );
    assert!(!root_path.join("b.txt").exists(), "a held call never runs");
}

#[test]
fn npm_server_everything_relays_sampling_and_lists() {
    let mut fw = Builder::new().wrap(&["node", &npm_server("server-everything"), "stdio"]);
    fw.initialize_with(json!({"sampling": {}}));
    let tools = fw.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    assert_eq!(
        text(&fw.call("echo", json!({"message": "hey"}))),
        "Echo: hey"
    );
    let sum = fw.call("get-sum", json!({"a": 1, "b": 2}));
    assert!(text(&sum).contains('3'), "{sum}");
    let prompts = fw.request("prompts/list", json!({}));
    assert!(!prompts["result"]["prompts"].as_array().unwrap().is_empty());
}

/// Initialize at 2025-11-25, the version that has tasks.
fn initialize_2025_11_25(fw: &mut Firewall) -> Value {
    let resp = fw.request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "harness", "version": "1.0"}}),
    );
    assert!(resp.get("result").is_some(), "initialize failed: {resp}");
    fw.notify("notifications/initialized", json!({}));
    resp
}

/// Issue 12, item 3: a task-augmented call to server-everything's
/// `simulate-research-query` creates a task; `tasks/get`, `tasks/list` and
/// `tasks/result` reach the upstream that created it (they used to be
/// refused with -32601, so the result could never be fetched), decided and
/// audited like any call, and the result goes through the response phase.
/// A task id the session did not create is refused.
#[test]
fn npm_server_everything_tasks_are_routed_to_their_upstream() {
    let rego = "package mcp.firewall\nallow := true\n\
                redact contains \"re:Key Concepts\" if input.phase == \"response\"\n";
    let mut fw =
        Builder::new()
            .rego(rego)
            .wrap(&["node", &npm_server("server-everything"), "stdio"]);
    let init = initialize_2025_11_25(&mut fw);
    assert!(
        init["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"].is_object(),
        "{init}"
    );
    let created = fw.request(
        "tools/call",
        json!({"name": "simulate-research-query", "arguments": {"topic": "firewalls"},
               "task": {"ttl": 60000}}),
    );
    let task_id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {created}"))
        .to_string();
    let got = fw.request("tasks/get", json!({"taskId": task_id}));
    assert_eq!(got["result"]["taskId"], task_id.as_str(), "{got}");
    let listed = fw.request("tasks/list", json!({}));
    let ids: Vec<&str> = listed["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    assert_eq!(ids, vec![task_id.as_str()], "{listed}");
    // Blocks until the task completes (four one-second stages).
    let result = fw.request("tasks/result", json!({"taskId": task_id}));
    let report = text(&result);
    assert!(report.contains("firewalls"), "{result}");
    assert!(
        !report.contains("Key Concepts"),
        "the response phase ran: {report}"
    );
    let unknown = fw.request("tasks/get", json!({"taskId": "someone-elses-task"}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let records = fw.audit_records();
    let decided = records
        .iter()
        .find(|r| r["event"] == "call.decided" && r["method"] == "tasks/result")
        .expect("tasks/result decided");
    assert_eq!(decided["input"]["task"]["id"], task_id.as_str());
    assert_eq!(decided["input"]["tool"]["name"], "simulate-research-query");
    assert!(
        records.iter().any(|r| r["event"] == "call.decided"
            && r["method"] == "tasks/get"
            && r["result"]["decision"] == "deny"),
        "the unknown task's refusal is on record"
    );
}

/// The policy decides task methods: here it lets the call create its task
/// but denies fetching that tool's results.
#[test]
fn a_policy_can_deny_a_task_result() {
    let rego = "package mcp.firewall\nallow := true\n\
                deny contains \"results of research tasks stay upstream\" if {\n\
                    input.method == \"tasks/result\"\n\
                    input.tool.name == \"simulate-research-query\"\n}\n";
    let mut fw =
        Builder::new()
            .rego(rego)
            .wrap(&["node", &npm_server("server-everything"), "stdio"]);
    initialize_2025_11_25(&mut fw);
    let created = fw.request(
        "tools/call",
        json!({"name": "simulate-research-query", "arguments": {"topic": "x"},
               "task": {"ttl": 60000}}),
    );
    let task_id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let denied = fw.request("tasks/result", json!({"taskId": task_id}));
    assert!(
        denied["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stay upstream")),
        "{denied}"
    );
}

/// Config form: the merged answer advertises tasks when an upstream does
/// (it used to drop the capability), and a namespaced task-augmented call's
/// task is routed to its upstream, not to the other one.
#[test]
fn config_form_advertises_and_routes_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp-firewall.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nname = \"local\"\ncommand = \"{fixture}\"\n\n\
             [[upstream]]\nname = \"everything\"\ncommand = \"node\"\nargs = [\"{everything}\", \"stdio\"]\n",
            fixture = fixture_bin(),
            everything = npm_server("server-everything"),
        ),
    )
    .unwrap();
    let mut fw = Builder::new()
        .rego("package mcp.firewall\nallow := true\n")
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start();
    let init = initialize_2025_11_25(&mut fw);
    assert!(
        init["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"].is_object(),
        "{init}"
    );
    let created = fw.request(
        "tools/call",
        json!({"name": "everything__simulate-research-query", "arguments": {"topic": "y"},
               "task": {"ttl": 60000}}),
    );
    let task_id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let got = fw.request("tasks/get", json!({"taskId": task_id}));
    assert_eq!(got["result"]["taskId"], task_id.as_str(), "{got}");
    let decided = fw.wait_audit("tasks/get decided", |r| {
        r["event"] == "call.decided" && r["method"] == "tasks/get"
    });
    assert_eq!(decided["server"], "everything");
}

/// Issue 16, item 3: with `--approval-tasks`, a held task-augmented call to
/// a tool whose server requires tasks (`simulate-research-query`) is
/// answered at once with the firewall's task; once a registered key
/// approves it, the firewall sends the call as a task to the server and its
/// task ends with the server's result. (Before, the client got "pending"
/// where it expected a task.)
#[test]
fn a_held_call_to_a_task_running_server_is_a_firewall_task_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = dir.path().join("allowed_signers");
    approvers_file(&approvers, &["carol"]);
    let data = dir.path().join("data");
    let rego = "package mcp.firewall\nallow if input.method != \"tools/call\"\n";
    let mut fw = Builder::new()
        .rego(rego)
        .data_dir(&data)
        .args(&[
            "--approvers",
            approvers.to_str().unwrap(),
            "--approval-tasks",
        ])
        .wrap(&["node", &npm_server("server-everything"), "stdio"]);
    initialize_2025_11_25(&mut fw);
    let created = fw.request(
        "tools/call",
        json!({"name": "simulate-research-query", "arguments": {"topic": "held research"},
               "task": {"ttl": 60000}}),
    );
    let task_id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {created}"))
        .to_string();
    assert!(
        task_id.starts_with("fwt_"),
        "the firewall's task: {created}"
    );
    let approval = {
        let deadline = std::time::Instant::now() + common::WAIT;
        loop {
            let got = fw.request("tasks/get", json!({"taskId": task_id}));
            let message = got["result"]["statusMessage"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(id) = message.split_whitespace().find(|w| w.starts_with("apr_")) {
                break id.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "never held: {got}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    answer_with_key(&data, "approve", &approval, "carol");
    // Blocks through the server's own task (four one-second stages).
    let result = fw.request("tasks/result", json!({"taskId": task_id}));
    assert!(text(&result).contains("held research"), "{result}");
    let done = fw.request("tasks/get", json!({"taskId": task_id}));
    assert_eq!(done["result"]["status"], "completed", "{done}");
}
