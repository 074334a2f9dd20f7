//! Held calls as MCP tasks (`--approval-tasks`): a task-augmented
//! `tools/call` that policy holds answers at once with a task; the task is
//! released by a signed approval, fails on a deny, is withdrawn by
//! `tasks/cancel`, survives a restart of the firewall, and belongs to its
//! principal only.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Builder, Firewall, WAIT, firewall_bin};
use serde_json::{Value, json};

/// Lists are allowed; every tool call is held (the default).
const HOLD_CALLS: &str = "package mcp.firewall\n\nallow if input.method == \"tools/list\"\n\nallow if startswith(input.method, \"tasks/\")\n";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        common::approvers_file(&setup.approvers(), &["carol"]);
        std::fs::write(setup.dir.path().join("policy.rego"), HOLD_CALLS).unwrap();
        setup
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn approvers(&self) -> PathBuf {
        self.dir.path().join("allowed_signers")
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The firewall with tasks for `principal`, not yet initialized.
    fn start(&self, principal: &str) -> Firewall {
        Builder::new()
            .policy_path(self.dir.path())
            .audit(&self.audit())
            .data_dir(&self.data())
            .args(&["--approvers", self.approvers().to_str().unwrap()])
            .args(&["--principal", principal, "--approval-tasks"])
            .wrap_fixture()
    }

    fn firewall(&self, principal: &str) -> Firewall {
        let mut fw = self.start(principal);
        let init = fw.initialize_with(json!({"tasks": {"list": {}, "cancel": {}}}));
        assert_eq!(
            init["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"],
            json!({}),
            "{init}"
        );
        fw
    }

    /// A firewall whose client declared the 2026-07-28 tasks extension.
    fn extension_firewall(&self, principal: &str) -> Firewall {
        let mut fw = self.start(principal);
        let init = fw.initialize_with(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}}));
        assert!(
            init["result"]["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"]
                .is_object(),
            "{init}"
        );
        fw
    }

    fn answer(&self, verb: &str, id: &str) {
        common::answer_with_key(&self.data(), verb, id, "carol");
    }
}

/// A task-augmented call: the `CreateTaskResult`'s task.
fn call_as_task(fw: &mut Firewall, text: &str) -> Value {
    let answer = fw.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": text}, "task": {"ttl": 60000}}),
    );
    let task = answer["result"]["task"].clone();
    assert_eq!(task["status"], "working", "{answer}");
    assert!(
        task["taskId"].as_str().unwrap().starts_with("fwt_"),
        "{answer}"
    );
    task
}

/// Poll `tasks/get` until its message names the approval; return its id.
fn approval_of(fw: &mut Firewall, task_id: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = fw.request("tasks/get", json!({"taskId": task_id}));
        let message = got["result"]["statusMessage"].as_str().unwrap_or("");
        if let Some(word) = message.split_whitespace().find(|w| w.starts_with("apr_")) {
            assert_eq!(got["result"]["status"], "working", "{got}");
            return word.to_string();
        }
        assert!(Instant::now() < deadline, "never held: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(data: &Path, id: &str) -> String {
    let out = Command::new(firewall_bin())
        .args(["approvals", "show", id, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_held_call_is_a_task_released_by_its_approval() {
    let setup = Setup::new();
    let mut fw = setup.firewall("alice");
    let tools = fw.request("tools/list", json!({}));
    assert_eq!(
        tools["result"]["tools"][0]["execution"]["taskSupport"], "optional",
        "{tools}"
    );
    let task = call_as_task(&mut fw, "hello task");
    let id = task["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &id);
    // tasks/result blocks while the call is held.
    let result_id = fw.send_request("tasks/result", json!({"taskId": id}));
    setup.answer("approve", &approval);
    let result = fw.response(&result_id);
    assert_eq!(
        result["result"]["content"][0]["text"], "hello task",
        "{result}"
    );
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str()
    );
    let done = fw.request("tasks/get", json!({"taskId": id}));
    assert_eq!(done["result"]["status"], "completed", "{done}");
    let listed = fw.request("tasks/list", json!({}));
    assert!(listed.to_string().contains(&id), "{listed}");
    fw.wait_audit("the task's end", |r| {
        r["event"] == "task.finished" && r["status"] == "completed"
    });
    assert!(
        fw.audit_records()
            .iter()
            .any(|r| r["event"] == "approval.released")
    );
}

#[test]
fn a_denied_task_fails_with_the_reason_and_a_cancelled_one_withdraws_its_request() {
    let setup = Setup::new();
    let mut fw = setup.firewall("alice");
    let denied = call_as_task(&mut fw, "no");
    let denied_id = denied["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &denied_id);
    setup.answer("deny", &approval);
    let result = fw.request("tasks/result", json!({"taskId": denied_id}));
    assert_eq!(result["result"]["isError"], true, "{result}");
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("was denied"),
        "{result}"
    );
    let got = fw.request("tasks/get", json!({"taskId": denied_id}));
    assert_eq!(got["result"]["status"], "failed", "{got}");

    let cancelled = call_as_task(&mut fw, "never mind");
    let cancelled_id = cancelled["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &cancelled_id);
    let answer = fw.request("tasks/cancel", json!({"taskId": cancelled_id}));
    assert_eq!(answer["result"]["status"], "cancelled", "{answer}");
    assert!(
        status(&setup.data(), &approval).contains("withdrawn"),
        "{}",
        status(&setup.data(), &approval)
    );
    let again = fw.request("tasks/cancel", json!({"taskId": cancelled_id}));
    assert_eq!(again["error"]["code"], -32602, "{again}");
    // The fixture never saw either call.
    assert!(
        !fw.audit_records()
            .iter()
            .any(|r| r["event"] == "call.completed")
    );
}

#[test]
fn a_task_survives_a_restart_and_belongs_to_its_principal() {
    let setup = Setup::new();
    let mut fw = setup.firewall("alice");
    let task = call_as_task(&mut fw, "after restart");
    let id = task["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &id);
    drop(fw);
    setup.answer("approve", &approval);

    // Another principal does not see it.
    let mut mallory = setup.firewall("mallory");
    let peek = mallory.request("tasks/get", json!({"taskId": id}));
    assert_eq!(peek["error"]["code"], -32602, "{peek}");
    let steal = mallory.request("tasks/cancel", json!({"taskId": id}));
    assert_eq!(steal["error"]["code"], -32602, "{steal}");
    drop(mallory);

    let mut fw = setup.firewall("alice");
    let result = fw.request("tasks/result", json!({"taskId": id}));
    assert_eq!(
        result["result"]["content"][0]["text"], "after restart",
        "{result}"
    );
    let done = fw.request("tasks/get", json!({"taskId": id}));
    assert_eq!(done["result"]["status"], "completed", "{done}");
}

/// A task cancelled after a restart is not run first: its approval, given
/// while the firewall was down, must not release the call on the way to the
/// cancellation.
#[test]
fn a_task_cancelled_after_a_restart_never_runs() {
    let setup = Setup::new();
    let mut fw = setup.firewall("alice");
    let task = call_as_task(&mut fw, "do not run");
    let id = task["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &id);
    drop(fw);
    setup.answer("approve", &approval);
    let mut fw = setup.firewall("alice");
    let cancelled = fw.request("tasks/cancel", json!({"taskId": id}));
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    let got = fw.request("tasks/get", json!({"taskId": id}));
    assert_eq!(got["result"]["status"], "cancelled", "{got}");
    std::thread::sleep(Duration::from_millis(300));
    let records = fw.audit_records();
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "call.completed" || r["event"] == "approval.released"),
        "the cancelled task's call ran"
    );
}

/// Poll `tasks/get` until the task is no longer working.
fn ended(fw: &mut Firewall, task_id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = fw.request("tasks/get", json!({"taskId": task_id}));
        if got["result"]["status"] != "working" {
            return got;
        }
        assert!(Instant::now() < deadline, "still working: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of the 2026-07-28 tasks extension does not ask for a task: the
/// firewall makes one of every call it holds, in that extension's shape
/// (flat `CreateTaskResult`, the outcome inlined in `tasks/get`, empty acks).
#[test]
fn an_extension_client_gets_its_held_calls_as_tasks_of_the_extensions_shape() {
    let setup = Setup::new();
    let mut fw = setup.extension_firewall("alice");
    let created = fw.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "held, then run"}}),
    );
    let result = &created["result"];
    assert_eq!(result["resultType"], "task", "{created}");
    assert!(result.get("task").is_none(), "flat: {created}");
    assert!(
        result["ttlMs"].is_u64() && result["pollIntervalMs"].is_u64(),
        "{created}"
    );
    assert!(
        result.get("ttl").is_none() && result.get("result").is_none(),
        "{created}"
    );
    let id = result["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &id);
    let update = fw.request("tasks/update", json!({"taskId": id, "inputResponses": {}}));
    assert_eq!(
        update["result"],
        json!({"resultType": "complete"}),
        "{update}"
    );
    setup.answer("approve", &approval);
    let done = ended(&mut fw, &id);
    assert_eq!(done["result"]["status"], "completed", "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["result"]["content"][0]["text"], "held, then run",
        "{done}"
    );

    // A denied call is a completed task whose result is the refusal.
    let denied = fw.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "no"}}),
    );
    let denied_id = denied["result"]["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &denied_id);
    setup.answer("deny", &approval);
    let got = ended(&mut fw, &denied_id);
    assert_eq!(got["result"]["status"], "completed", "{got}");
    assert_eq!(got["result"]["result"]["isError"], true, "{got}");
    assert!(got.to_string().contains("was denied"), "{got}");

    // Cancelling acknowledges with nothing else, also once it has ended.
    let dropped = fw.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "drop"}}),
    );
    let dropped_id = dropped["result"]["taskId"].as_str().unwrap().to_string();
    let approval = approval_of(&mut fw, &dropped_id);
    for _ in 0..2 {
        let ack = fw.request("tasks/cancel", json!({"taskId": dropped_id}));
        assert_eq!(ack["result"], json!({"resultType": "complete"}), "{ack}");
    }
    let got = fw.request("tasks/get", json!({"taskId": dropped_id}));
    assert_eq!(got["result"]["status"], "cancelled", "{got}");
    assert!(status(&setup.data(), &approval).contains("withdrawn"));
}
