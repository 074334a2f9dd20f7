//! The 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`,
//! SEP-2663) through the firewall, against the conformance fixture's task
//! tools: a client that declares the extension gets the upstream's flat
//! `CreateTaskResult`, polls it with `tasks/get` and answers its input
//! requests with `tasks/update`. What an upstream puts into a task does not
//! get past the policy that way: the result `tasks/get` inlines goes through
//! the response phase, and every input request it carries is decided as the
//! server-to-client request it is.

mod common;

use std::time::Instant;

use common::{Builder, Firewall, WAIT};
use serde_json::{Value, json};

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// The firewall over stdio in front of the conformance fixture, initialized
/// by a client that declares the tasks extension.
fn firewall(policy: &str) -> Firewall {
    firewall_from(Builder::new().rego(policy))
}

fn firewall_from(builder: Builder) -> Firewall {
    let mut fw = builder.wrap(&[env!("CARGO_BIN_EXE_mcp-firewall-conformance-fixture")]);
    let init = fw.initialize_with(json!({"elicitation": {}, "extensions": {TASKS: {}}}));
    assert!(
        init["result"]["capabilities"]["extensions"][TASKS].is_object(),
        "{init}"
    );
    fw
}

/// Call a task tool; the task's id.
fn start_task(fw: &mut Firewall, tool: &str, arguments: Value) -> String {
    let created = fw.call(tool, arguments);
    let result = &created["result"];
    assert_eq!(result["resultType"], "task", "{created}");
    result["taskId"].as_str().expect("a task id").to_string()
}

/// Poll `tasks/get` until the task leaves `working`.
fn settled(fw: &mut Firewall, task: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = fw.request("tasks/get", json!({"taskId": task}));
        let status = got["result"]["status"].as_str().unwrap_or("");
        if status != "working" {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "task {task} still working: {got}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The task ends `completed`, its inlined result's text containing `text`.
fn completes_with(fw: &mut Firewall, task: &str, text: &str) {
    let done = settled(fw, task);
    assert_eq!(done["result"]["status"], "completed", "{done}");
    let shown = done["result"]["result"]["content"][0]["text"].as_str();
    assert!(shown.is_some_and(|t| t.contains(text)), "{done}");
}

/// A task's result is a tool result: a response-phase `deny` withholds it
/// from `tasks/get` as it would from a direct call.
#[test]
fn a_tasks_inlined_result_goes_through_the_response_phase() {
    let mut fw = firewall(
        r#"package mcp.firewall
allow := true
deny contains "no computation leaves this server" if {
	input.phase == "response"
	some block in input.result.content
	contains(block.text, "computed after")
}
"#,
    );
    let task = start_task(&mut fw, "slow_compute", json!({"seconds": 0}));
    let got = settled(&mut fw, &task);
    let result = &got["result"];
    assert_eq!(result["status"], "completed", "{got}");
    assert_eq!(result["result"]["isError"], true, "{got}");
    let shown = result["result"]["content"].to_string();
    assert!(shown.contains("no computation leaves this server"), "{got}");
    assert!(!shown.contains("computed after"), "withheld: {got}");
    let record = fw.wait_audit("the withheld task result", |r| {
        r["event"] == "call.completed" && r["inspection"]["withheld"] == true
    });
    let decided = fw.wait_audit("its decision", |r| {
        r["event"] == "call.decided" && r["decision_id"] == record["decision_id"]
    });
    assert_eq!(decided["input"]["method"], "tasks/get", "{decided}");
}

/// The input requests a task carries are decided one by one: an allowed one
/// reaches the client and its answer (`tasks/update`) resumes the task; a
/// refused one ends the task, which the client sees failed with the reasons.
#[test]
fn a_tasks_input_requests_are_decided_and_a_refused_one_ends_it() {
    let mut fw = firewall(
        r#"package mcp.firewall
allow if not input.direction == "server_to_client"
allow if {
	input.direction == "server_to_client"
	not contains(input.params.message, "Second")
}
deny contains "the second question is not for this client" if {
	input.direction == "server_to_client"
	contains(input.params.message, "Second")
}
"#,
    );
    let task = start_task(&mut fw, "confirm_delete", json!({"filename": "a.txt"}));
    let waiting = settled(&mut fw, &task);
    assert_eq!(waiting["result"]["status"], "input_required", "{waiting}");
    let request = &waiting["result"]["inputRequests"]["confirm"];
    assert_eq!(request["method"], "elicitation/create", "{waiting}");
    let ack = fw.request(
        "tasks/update",
        json!({"taskId": task, "inputResponses": {
            "confirm": {"action": "accept", "content": {"confirm": true}}}}),
    );
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    completes_with(&mut fw, &task, "confirm_delete a.txt");
    fw.wait_audit("the allowed input request", |r| {
        r["event"] == "server_request.decided"
            && r["method"] == "elicitation/create"
            && r["result"]["decision"] == "allow"
    });

    let task = start_task(&mut fw, "multi_input", json!({}));
    let deadline = Instant::now() + WAIT;
    let ended = loop {
        let got = settled(&mut fw, &task);
        if got["result"]["status"] != "input_required" {
            break got;
        }
        // The two questions may surface one poll apart.
        assert!(Instant::now() < deadline, "{got}");
    };
    let result = &ended["result"];
    assert_eq!(result["status"], "failed", "{ended}");
    assert!(result.get("inputRequests").is_none(), "{ended}");
    assert!(
        result["error"]["data"]["reasons"]
            .to_string()
            .contains("the second question is not for this client"),
        "{ended}"
    );
    fw.wait_audit("the refused input request", |r| {
        r["event"] == "server_request.decided" && r["result"]["decision"] == "deny"
    });
    // It stays failed: the firewall cancelled the upstream's task.
    let again = fw.request("tasks/get", json!({"taskId": task}));
    assert_eq!(again["result"]["status"], "failed", "{again}");
}

/// Calls to `slow_compute` are held; everything else (its task's polls
/// included) is allowed.
const HOLD_SLOW_CALLS: &str = r#"package mcp.firewall
allow if input.method != "tools/call"
allow if input.tool.name != "slow_compute"
"#;

/// A held call (`--approval-tasks`) is a task of the firewall's own; once
/// approved, the upstream makes a task of its own for it, which the
/// firewall's task follows (polling it through the pipeline) to its end.
#[test]
fn a_released_held_task_follows_the_upstreams_own_task() {
    let dir = tempfile::tempdir().unwrap();
    let approvers = dir.path().join("allowed_signers");
    common::approvers_file(&approvers, &["carol"]);
    let data = dir.path().join("data");
    let mut fw = firewall_from(Builder::new().rego(HOLD_SLOW_CALLS).data_dir(&data).args(&[
        "--approvers",
        approvers.to_str().unwrap(),
        "--approval-tasks",
    ]));
    let task = start_task(&mut fw, "slow_compute", json!({"seconds": 1}));
    assert!(task.starts_with("fwt_"), "the firewall's own task: {task}");
    let deadline = Instant::now() + WAIT;
    let approval = loop {
        let got = fw.request("tasks/get", json!({"taskId": task}));
        let message = got["result"]["statusMessage"].as_str().unwrap_or("");
        if let Some(id) = message.split_whitespace().find(|w| w.starts_with("apr_")) {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "never held: {got}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    common::answer_with_key(&data, "approve", &approval, "carol");
    completes_with(&mut fw, &task, "computed after 1");
}
