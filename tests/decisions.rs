//! Policy decisions through the real binary: the decision contract
//! (deny > approve > allow > default hold), what the client sees for each,
//! list filtering, argument validation, and every fail-closed case.

mod common;

use common::*;
use serde_json::json;

/// Allow read-only tools, hold destructive ones, deny one by name.
const CONTRACT: &str = r#"package mcp.firewall

allow if input.tool.annotations.readOnlyHint == true
allow if input.method in {"tools/list", "prompts/list", "resources/list", "prompts/get"}

approve contains "destructive tool" if input.tool.annotations.destructiveHint == true

deny contains sprintf("notes named %s are private", [input.arguments.name]) if {
    input.tool.name == "read_note"
    input.arguments.name == "diary"
}

hide if input.tool.name == "crash"

allow if {
    input.method == "resources/read"
    not contains(input.resource.uri, "secret")
}
deny contains "secret resources are off limits" if contains(input.resource.uri, "secret")

deny contains "no greeting Mallory" if {
    input.method == "prompts/get"
    input.arguments.name == "Mallory"
}
"#;

#[test]
fn allow_deny_approve_and_default_hold_reach_the_client_as_documented() {
    let mut fw = Builder::new().rego(CONTRACT).wrap_fixture();
    fw.initialize();

    assert_eq!(text(&fw.call("echo", json!({"text": "ok"}))), "ok");

    let denied = fw.call("read_note", json!({"name": "diary"}));
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(
        text(&denied),
        "Denied by policy: notes named diary are private"
    );
    let decision_id = denied["result"]["_meta"]["mcp-firewall/decision_id"]
        .as_str()
        .unwrap()
        .to_string();

    let held = fw.call("delete_note", json!({"name": "hello"}));
    assert_eq!(held["result"]["isError"], true);
    assert!(
        text(&held).starts_with("Approval pending: this call is held as approval apr_"),
        "{held}"
    );

    // write_note is neither read-only nor destructive: no rule allows it.
    let default = fw.call("write_note", json!({"name": "a", "content": "b"}));
    assert!(text(&default).starts_with("Approval pending"), "{default}");
    assert_eq!(
        text(&fw.call("read_note", json!({"name": "hello"}))),
        "world",
        "nothing held ran"
    );

    let records = fw.audit_records();
    let deny = records
        .iter()
        .find(|r| r["decision_id"] == decision_id.as_str())
        .unwrap();
    assert_eq!(deny["result"]["decision"], "deny");
    assert_eq!(
        deny["result"]["reasons"],
        json!(["notes named diary are private"])
    );
    let hold = fw.wait_audit("default hold", |r| {
        r["event"] == "call.decided" && r["target"] == "write_note"
    });
    assert_eq!(hold["result"]["decision"], "approve");
    assert_eq!(hold["result"]["default_hold"], true);
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "call.completed" && r["decision_id"] == decision_id.as_str())
    );
}

#[test]
fn hidden_tools_are_not_listed_and_cannot_be_called() {
    let mut fw = Builder::new().rego(CONTRACT).wrap_fixture();
    fw.initialize();
    let tools = fw.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"crash") && names.contains(&"echo"),
        "{names:?}"
    );
    let call = fw.call("crash", json!({}));
    assert_eq!(call["result"]["isError"], true, "{call}");
    let listed = fw.wait_audit("list decision", |r| r["event"] == "list.decided");
    assert_eq!(listed["hidden"], json!(["crash"]));
}

#[test]
fn refused_resource_reads_and_prompts_are_json_rpc_errors() {
    let mut fw = Builder::new().rego(CONTRACT).wrap_fixture();
    fw.initialize();
    let ok = fw.request("resources/read", json!({"uri": "fixture://notes/hello"}));
    assert_eq!(ok["result"]["contents"][0]["text"], "world");
    let secret = fw.request("resources/read", json!({"uri": "fixture://secret/key"}));
    assert_eq!(secret["error"]["code"], -32001, "{secret}");
    assert_eq!(secret["error"]["data"]["decision"], "deny");
    assert_eq!(
        secret["error"]["data"]["reasons"],
        json!(["secret resources are off limits"])
    );
    assert!(secret["error"]["data"]["decision_id"].is_string());

    let greet = fw.request(
        "prompts/get",
        json!({"name": "greet", "arguments": {"name": "Mallory"}}),
    );
    assert_eq!(greet["error"]["code"], -32001, "{greet}");
    let fine = fw.request(
        "prompts/get",
        json!({"name": "greet", "arguments": {"name": "Ada"}}),
    );
    assert!(fine.get("result").is_some(), "{fine}");
}

#[test]
fn the_policy_message_is_what_the_model_reads() {
    let rego = "package mcp.firewall\n\ndeny contains \"raw reason\" if true\n\nmessage := \"Please ask your admin for access.\"\n";
    let mut fw = Builder::new().rego(rego).wrap_fixture();
    fw.initialize();
    let denied = fw.call("echo", json!({"text": "x"}));
    assert_eq!(text(&denied), "Please ask your admin for access.");
    let record = fw.wait_audit("deny", |r| {
        r["event"] == "call.decided" && r["target"] == "echo"
    });
    assert_eq!(
        record["result"]["reasons"],
        json!(["raw reason"]),
        "the log keeps the real reasons"
    );
}

#[test]
fn invalid_arguments_are_refused_before_policy_naming_the_field() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    let bad = fw.call("echo", json!({"text": 5}));
    assert_eq!(bad["result"]["isError"], true);
    let message = text(&bad);
    assert!(
        message.contains("/text") && message.contains("string"),
        "{message}"
    );
    let missing = fw.call("add", json!({"a": 1}));
    assert!(text(&missing).contains("b"), "{missing}");
    let record = fw.wait_audit("invalid", |r| {
        r["event"] == "call.decided" && r["error"]["kind"] == "invalid_arguments"
    });
    assert_eq!(record["result"]["decision"], "deny");
}

#[test]
fn the_input_carries_principal_client_and_session_history() {
    let rego = r#"package mcp.firewall

allow if {
    input.principal.id == "alice"
    input.client.name == "harness"
    input.session.transport == "stdio"
    input.version == 1
}

deny contains "echo after read_note is exfiltration" if {
    input.tool.name == "echo"
    some h in input.session.history
    h.tool == "read_note"
}
"#;
    let policy = policy_dir(rego);
    let mut fw = Builder::new()
        .policy_path(policy.path())
        .arg("--principal")
        .arg("alice")
        .wrap_fixture();
    fw.initialize();
    assert_eq!(text(&fw.call("echo", json!({"text": "before"}))), "before");
    assert_eq!(
        text(&fw.call("read_note", json!({"name": "hello"}))),
        "world"
    );
    let after = fw.call("echo", json!({"text": "after"}));
    assert_eq!(
        text(&after),
        "Denied by policy: echo after read_note is exfiltration"
    );

    // The log keeps the history each decision read (rendered once per
    // entry, issue 11), so replaying the log decides every call as live.
    let denied = fw.wait_audit("the denied echo", |r| {
        r["event"] == "call.decided" && r["result"]["decision"] == "deny"
    });
    let history = denied["input"]["session"]["history"].as_array().unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h["method"].as_str(),
                h["tool"].as_str(),
                h["decision"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen[seen.len() - 2..],
        [
            (Some("tools/call"), Some("echo"), Some("allow")),
            (Some("tools/call"), Some("read_note"), Some("allow")),
        ],
        "{denied}"
    );
    let out = std::process::Command::new(firewall_bin())
        .args(["policy", "replay"])
        .arg(&fw.audit_path)
        .arg("--policy")
        .arg(policy.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(" 0 changed, "), "{report}");
    assert_chain_verifies(&fw.audit_path);
}

/// Rules that read nothing of the input are decided once, at load
/// (`PolicySet::constant_verdict`): every call still gets their verdict,
/// every result their warning, and every decision its full audit record.
#[test]
fn a_policy_reading_nothing_of_the_input_still_decides_and_records_every_call() {
    let rego = "package mcp.firewall\n\nallow := true\n\nwarn contains \"results are reviewed later\" if true\n";
    let mut fw = Builder::new().rego(rego).wrap_fixture();
    fw.initialize();
    for word in ["one", "two"] {
        let resp = fw.call("echo", json!({"text": word}));
        assert_eq!(
            text(&resp),
            "[mcp-firewall] results are reviewed later",
            "{resp}"
        );
        assert_eq!(resp["result"]["content"][1]["text"], word, "{resp}");
        let record = fw.wait_audit("the decision", |r| {
            r["event"] == "call.decided" && r["input"]["arguments"]["text"] == word
        });
        assert_eq!(record["result"]["decision"], "allow");
        assert_eq!(record["input"]["tool"]["name"], "echo");
    }

    let rego = "package mcp.firewall\n\ndeny contains \"closed for maintenance\" if true\n";
    let mut fw = Builder::new().rego(rego).wrap_fixture();
    fw.initialize();
    let denied = fw.call("echo", json!({"text": "x"}));
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    assert_eq!(text(&denied), "Denied by policy: closed for maintenance");
    let record = fw.wait_audit("the denial", |r| r["event"] == "call.decided");
    assert_eq!(record["result"]["decision"], "deny");
    assert_eq!(record["input"]["arguments"]["text"], "x");
}

/// A tool's results whose verdict is kept (every result rule folds for
/// it) are looked up with the fields that name the call alone; a result
/// rule that reads who calls, or what came before, still judges each of
/// its tool's results, for each caller.
#[test]
fn result_rules_over_the_caller_and_history_judge_every_result() {
    let rego = "package mcp.firewall\n\nallow := true\n\n\
        warn contains \"sums are reviewed\" if { input.phase == \"response\"; input.tool.name == \"add\" }\n\
        warn contains \"for mallory\" if { input.phase == \"response\"; input.tool.name == \"echo\"; input.principal.id == \"mallory\" }\n\
        warn contains \"a repeat\" if { input.phase == \"response\"; input.tool.name == \"echo\"; count(input.session.history) > 4 }\n";
    for principal in ["mallory", "alice"] {
        let mut fw = Builder::new()
            .rego(rego)
            .arg("--principal")
            .arg(principal)
            .wrap_fixture();
        fw.initialize();
        // Enough calls of each tool for its result engine to be built (on
        // the second sighting, in the background) and used.
        for i in 0..6 {
            let sum = fw.call("add", json!({"a": i, "b": 1}));
            assert_eq!(text(&sum), "[mcp-firewall] sums are reviewed", "{sum}");
            let echoed = fw.call("echo", json!({"text": format!("call {i}")}));
            let expected = match (principal, i) {
                ("mallory", 0..=1) => Some("[mcp-firewall] for mallory"),
                ("mallory", _) => Some("[mcp-firewall] a repeat for mallory"),
                (_, 0..=1) => None,
                _ => Some("[mcp-firewall] a repeat"),
            };
            let first = &echoed["result"]["content"][0]["text"];
            match expected {
                Some(note) => assert_eq!(first, note, "{principal} {i}: {echoed}"),
                None => assert_eq!(
                    first,
                    format!("call {i}").as_str(),
                    "{principal} {i}: {echoed}"
                ),
            }
        }
    }
}

/// The response phase sees the whole tool definition, with or without
/// findings in the result: it converts an outline of the tool (its fields'
/// names) over the catalogue entry's converted view, so a value lost on
/// the way would fail this rule over the schema and description.
#[test]
fn result_rules_read_the_whole_tool_definition() {
    let rego = "package mcp.firewall\n\nallow := true\n\n\
        warn contains \"schema seen\" if { input.phase == \"response\"; \
        input.tool.input_schema.properties.text.type == \"string\"; \
        startswith(input.tool.description, \"Returns `text`\"); \
        input.tool.annotations.readOnlyHint == true }\n";
    let mut fw = Builder::new().rego(rego).wrap_fixture();
    fw.initialize();
    let calls = (0..6)
        .map(|i| json!({"text": format!("plain {i}")}))
        .chain([json!({"text": "key AKIAIOSFODNN7EXAMPLE"})]);
    for arguments in calls {
        let answer = fw.call("echo", arguments);
        assert_eq!(
            answer["result"]["content"][0]["text"], "[mcp-firewall] schema seen",
            "{answer}"
        );
    }
}

/// A kept result verdict is looked up with the keys of a call's arguments,
/// not their values: a result rule over an argument's value still judges
/// each result, however many results of the same tool with the same keys
/// came before it (and were decided without the rule firing). The same
/// for a rule over every string of the arguments: the request phase knows
/// which of a policy's needles (`contains(s, "LOUD")`) the strings hold,
/// the response phase must not.
#[test]
fn result_rules_over_argument_values_judge_every_result() {
    let over_value = "warn contains \"shouted\" if { input.phase == \"response\"; input.arguments.text == \"LOUD\" }";
    let over_strings = "strings contains s if { walk(input.arguments, [_, s]); is_string(s) }\n\n\
        warn contains \"shouted\" if { input.phase == \"response\"; some s in strings; contains(s, \"LOUD\") }";
    for rule in [over_value, over_strings] {
        let rego = format!("package mcp.firewall\n\nallow := true\n\n{rule}\n");
        let mut fw = Builder::new().rego(&rego).wrap_fixture();
        fw.initialize();
        for i in 0..6 {
            let quiet = fw.call("echo", json!({"text": format!("quiet {i}")}));
            assert_eq!(text(&quiet), format!("quiet {i}"), "{quiet}");
        }
        let loud = fw.call("echo", json!({"text": "LOUD"}));
        assert_eq!(
            loud["result"]["content"][0]["text"], "[mcp-firewall] shouted",
            "{rule}: {loud}"
        );
    }
}

/// After plain calls to a tool (decided, from the second on, by an engine
/// built for calls whose strings hold none of the library's needles), a
/// call to it whose argument holds an AWS key id is still refused.
#[test]
fn a_secret_after_plain_calls_to_the_same_tool_is_refused() {
    let mut fw = library_firewall(library_copy());
    echo_six_times(&mut fw, "plain");
    let refused = fw.call("echo", json!({"text": "key AKIAABCDEFGHIJKLMNOP"}));
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        text(&refused).contains("arguments contain an AWS access key id"),
        "{refused}"
    );
}

/// An agent repeating a call meets the shipped library's rate limit as the
/// policy's data sets it, both while the whole policy decides and once the
/// engine built for the tool (from its second call on, in the background),
/// with the limit written in as a number, does.
#[test]
fn an_agent_repeating_a_call_meets_the_shipped_rate_limit_its_data_sets() {
    let policy = library_copy();
    let data_path = policy.path().join("data.json");
    let mut data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    data["mcp_firewall"]["ratelimit"] = json!({"per_tool_per_minute": 6});
    std::fs::write(&data_path, data.to_string()).unwrap();
    let mut fw = library_firewall(policy);
    echo_six_times(&mut fw, "call");
    for made in 6..9 {
        let refused = fw.call("echo", json!({"text": "once more"}));
        assert_eq!(refused["result"]["isError"], true, "{refused}");
        let expected = format!(
            "already made {made} calls to this tool in the last minute (limit 6; echo on server"
        );
        assert!(
            text(&refused).starts_with("Denied by policy: rate limit: "),
            "{refused}"
        );
        assert!(text(&refused).contains(&expected), "{refused}");
    }
}

#[test]
fn the_wrong_principal_falls_to_the_default_hold() {
    let rego = "package mcp.firewall\n\nallow if input.principal.id == \"alice\"\n";
    let mut fw = Builder::new()
        .rego(rego)
        .arg("--principal")
        .arg("mallory")
        .wrap_fixture();
    fw.initialize();
    assert!(text(&fw.call("echo", json!({"text": "x"}))).starts_with("Approval pending"));
}

/// Every way the decision can go wrong denies, with the cause in the log.
#[test]
fn evaluation_failures_deny_and_are_recorded() {
    let cases = [
        ("allow := \"yes\"\n", "allow"),
        ("deny contains 7 if true\nallow := true\n", "deny"),
        (
            "approve := {\"not\": \"a set\"}\nallow := true\n",
            "approve",
        ),
        ("hide := 3\nallow := true\n", "hide"),
        (
            // Many small steps, so the evaluation time limit trips (one huge
            // builtin call would allocate first and check the clock later).
            "allow if {\n  count([x | some a in numbers.range(1, 5000); some b in numbers.range(1, 5000); x := a * b]) > 0\n}\n",
            "time",
        ),
    ];
    for (body, cause) in cases {
        let rego = format!("package mcp.firewall\n\n{body}");
        let mut fw = Builder::new().rego(&rego).wrap_fixture();
        fw.initialize();
        let resp = fw.call("echo", json!({"text": "x"}));
        assert_eq!(resp["result"]["isError"], true, "{body}: {resp}");
        assert!(
            text(&resp).starts_with("Denied: the policy could not be evaluated"),
            "{body}: {resp}"
        );
        let record = fw.wait_audit("policy error", |r| {
            r["event"] == "call.decided" && r["target"] == "echo"
        });
        assert_eq!(record["result"]["decision"], "deny");
        assert_eq!(record["error"]["kind"], "policy_error");
        let message = record["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains(cause), "{body}: {message}");
    }
}

#[test]
fn a_policy_that_does_not_compile_stops_start_up_with_file_and_line() {
    let dir = policy_dir("package mcp.firewall\n\nallow if {\n    input.method ==\n}\n");
    let mut b = Builder::new().policy_path(dir.path());
    b = b.arg("--").arg(fixture_bin());
    let (mut cmd, _) = b.command();
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy.rego") && stderr.contains(":5"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_policy_directory_without_the_package_stops_start_up() {
    let dir = policy_dir("package something.else\n\nallow := true\n");
    let mut b = Builder::new().policy_path(dir.path());
    b = b.arg("--").arg(fixture_bin());
    let (mut cmd, _) = b.command();
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mcp.firewall"));
}

/// The shipped library without its tests, in a directory of its own.
fn library_copy() -> tempfile::TempDir {
    let policy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_path("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with("_test.rego") {
            std::fs::copy(&path, policy.path().join(&name)).unwrap();
        }
    }
    policy
}

/// The firewall in front of the fixture with the library in `policy`,
/// trusting the fixture's annotations, initialized.
fn library_firewall(policy: tempfile::TempDir) -> Firewall {
    let mut fw = Builder::new()
        .policy_path(policy.path())
        .keep(policy)
        .arg("--trust-annotations")
        .wrap_fixture();
    fw.initialize();
    fw
}

/// Six allowed calls to `echo` (`"{label} {i}"`), leaving time after the
/// second for the engine built for echo to be ready.
fn echo_six_times(fw: &mut Firewall, label: &str) {
    for i in 0..6 {
        let echoed = fw.call("echo", json!({"text": format!("{label} {i}")}));
        assert_eq!(text(&echoed), format!("{label} {i}"), "{echoed}");
        if i == 1 {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}
