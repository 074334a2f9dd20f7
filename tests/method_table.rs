//! The method table through the real binary: nothing reaches an upstream
//! undecided. The upstream is fixtures/recording-upstream/upstream.py, a
//! line-based server that records every line it reads, so these tests see
//! exactly what crossed the firewall.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// What the firewall may send an upstream without a decision.
const PLUMBING: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "logging/setLevel",
    "notifications/roots/list_changed",
];

struct Recorded {
    fw: Firewall,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(policy: &str) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let upstream = repo_path("fixtures/recording-upstream/upstream.py");
    let mut fw = Builder::new()
        .rego(policy)
        .env("RECORD", record.to_str().unwrap())
        .arg("--principal")
        .arg("alice")
        .wrap(&["python3", upstream.to_str().unwrap()]);
    fw.initialize_with(json!({"sampling": {}, "elicitation": {}, "roots": {}}));
    Recorded {
        fw,
        record,
        _dir: dir,
    }
}

/// Every message the upstream received, parsed (unparseable lines as strings).
fn received(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let line = serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_string();
            serde_json::from_str(&line).unwrap_or(Value::String(line))
        })
        .collect()
}

fn methods(record: &Path) -> Vec<String> {
    received(record)
        .iter()
        .filter_map(|m| m["method"].as_str().map(str::to_string))
        .collect()
}

/// A round trip through the firewall and the upstream, so everything sent
/// before it has been handled.
fn sync(r: &mut Recorded) {
    let resp = r.fw.request("tools/list", json!({}));
    assert!(resp.get("result").is_some(), "{resp}");
}

const ALLOW_ALL: &str = r#"package mcp.firewall
allow := true
"#;

#[test]
fn id_less_requests_and_unknown_notifications_reach_no_upstream() {
    let mut r = start(ALLOW_ALL);
    // Exactly what once reached a line-based upstream and ran.
    r.fw.notify(
        "tools/call",
        json!({"name": "wipe", "arguments": {"all": true}}),
    );
    r.fw.notify("resources/subscribe", json!({"uri": "note://secret"}));
    r.fw.notify("notifications/whatever", json!({"x": 1}));
    r.fw.notify(
        "notifications/progress",
        json!({"progressToken": "nobody's", "progress": 1}),
    );
    r.fw.notify("notifications/roots/list_changed", json!({}));
    sync(&mut r);
    let seen = methods(&r.record);
    assert!(!seen.iter().any(|m| m == "tools/call"), "{seen:?}");
    for m in &seen {
        assert!(
            PLUMBING.contains(&m.as_str()),
            "{m} reached the upstream: {seen:?}"
        );
    }
    assert!(seen.iter().any(|m| m == "notifications/roots/list_changed"));
    let dropped: Vec<Value> =
        r.fw.audit_records()
            .into_iter()
            .filter(|x| x["event"] == "message.dropped")
            .collect();
    assert_eq!(dropped.len(), 4, "{dropped:#?}");
    assert!(dropped.iter().any(|d| d["method"] == "tools/call"));
}

const GUARDED: &str = r#"package mcp.firewall
import rego.v1

allow if input.method in {"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
allow if input.method in {"tools/call", "prompts/get", "completion/complete", "resources/subscribe", "resources/unsubscribe", "resources/read"}

# Written like the example in policies/main.rego.
hide if {
	input.method == "tools/list"
	startswith(input.tool.name, "debug_")
}
hide if {
	input.method == "prompts/list"
	input.prompt.name == "hidden_prompt"
}
hide if {
	input.method == "resources/templates/list"
	input.resource_template.name == "hidden_tpl"
}

deny contains "secret notes are off limits" if {
	contains(input.resource.uri, "secret")
}
deny contains "no extra params" if count(input.extra_params) > 0
deny contains "no injected _meta" if input.meta.injected
"#;

#[test]
fn completion_subscriptions_and_templates_are_decided_and_hidden_means_not_callable() {
    let mut r = start(GUARDED);
    let tools = r.fw.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"debug_dump"), "{names:?}");
    let hidden_call = r.fw.call("debug_dump", json!({}));
    assert_eq!(hidden_call["result"]["isError"], true, "{hidden_call}");
    assert!(
        text(&hidden_call).contains("hidden by policy"),
        "{hidden_call}"
    );

    let templates = r.fw.request("resources/templates/list", json!({}));
    let names: Vec<&str> = templates["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["notes"], "{templates}");

    let hidden_completion = r.fw.request(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "hidden_prompt"}, "argument": {"name": "name", "value": "a"}}),
    );
    assert_eq!(
        hidden_completion["error"]["code"], -32001,
        "{hidden_completion}"
    );
    let ok_completion = r.fw.request(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name", "value": "a"}}),
    );
    assert!(ok_completion.get("result").is_some(), "{ok_completion}");
    let hidden_prompt =
        r.fw.request("prompts/get", json!({"name": "hidden_prompt"}));
    assert_eq!(hidden_prompt["error"]["code"], -32001, "{hidden_prompt}");

    let secret_sub =
        r.fw.request("resources/subscribe", json!({"uri": "note://secret"}));
    assert_eq!(secret_sub["error"]["code"], -32001, "{secret_sub}");
    let public_sub =
        r.fw.request("resources/subscribe", json!({"uri": "note://public"}));
    assert!(public_sub.get("result").is_some(), "{public_sub}");

    let extra = r.fw.request(
        "tools/call",
        json!({"name": "peek", "arguments": {}, "sneaky": {"run_as": "root"}}),
    );
    assert!(text(&extra).contains("no extra params"), "{extra}");
    let meta = r.fw.request(
        "tools/call",
        json!({"name": "peek", "arguments": {}, "_meta": {"injected": true, "progressToken": 7}}),
    );
    assert!(text(&meta).contains("no injected _meta"), "{meta}");
    let plain = r.fw.request(
        "tools/call",
        json!({"name": "peek", "arguments": {}, "_meta": {"progressToken": 8}}),
    );
    assert_eq!(text(&plain), "ran peek", "{plain}");

    sync(&mut r);
    let got = received(&r.record);
    let calls: Vec<&Value> = got
        .iter()
        .filter(|m| !PLUMBING.contains(&m["method"].as_str().unwrap_or("")))
        .collect();
    // Exactly the three allowed requests, forwarded as decided.
    let methods: Vec<&str> = calls
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["completion/complete", "resources/subscribe", "tools/call"],
        "{calls:#?}"
    );
    assert_eq!(calls[1]["params"]["uri"], "note://public");
    assert_eq!(calls[2]["params"]["_meta"], json!({"progressToken": 8}));

    let decided: Vec<Value> =
        r.fw.audit_records()
            .into_iter()
            .filter(|x| x["event"] == "call.decided")
            .collect();
    for method in ["completion/complete", "resources/subscribe"] {
        assert!(
            decided
                .iter()
                .any(|d| d["method"] == method && d["result"]["decision"] == "deny"),
            "{method} refusal on record"
        );
    }
}

#[test]
fn a_server_request_outside_the_table_is_refused_and_never_reaches_the_client() {
    let mut r = start(ALLOW_ALL);
    let resp = r.fw.call("server_asks", json!({}));
    let reply: Value = serde_json::from_str(&text(&resp)).unwrap();
    assert_eq!(reply["error"]["code"], -32601, "{reply}");
    assert!(
        !r.fw
            .backlog
            .iter()
            .any(|m| m["method"] == "wallet/transfer"),
        "{:#?}",
        r.fw.backlog
    );
    r.fw.wait_audit("dropped server request", |x| {
        x["event"] == "message.dropped" && x["method"] == "wallet/transfer"
    });
}

/// Random JSON-RPC traffic under a policy that decides nothing (every call
/// is held, and with no approver it stays held): the upstream sees only
/// plumbing, and every request that could act has its audit record.
#[test]
fn random_traffic_under_a_policy_that_decides_nothing_reaches_no_upstream() {
    let mut r = start("package mcp.firewall\n");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let methods = [
        "tools/call",
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "tasks/get",
        "tools/teleport",
        "logging/setLevel",
        "notifications/cancelled",
        "notifications/progress",
        "sampling/createMessage",
        "ping",
    ];
    let names = ["wipe", "peek", "debug_dump", "greet", "nope", ""];
    let uris = ["note://public", "note://secret", "file:///etc/passwd"];
    let mut request_ids = Vec::new();
    for i in 0..300 {
        let method = methods[next(methods.len() as u64) as usize];
        let params = match next(5) {
            0 => json!({"name": names[next(6) as usize], "arguments": {"x": i}}),
            1 => json!({"uri": uris[next(3) as usize]}),
            2 => json!({"ref": {"type": "ref/prompt", "name": names[next(6) as usize]},
                        "argument": {"name": "name", "value": "v"}}),
            3 => json!({"name": names[next(6) as usize], "_meta": {"x": i}, "extra": true}),
            _ => json!({"level": "debug"}),
        };
        let with_id = next(3) != 0;
        let mut msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if with_id {
            msg["id"] = json!(format!("r{i}"));
            request_ids.push((format!("r{i}"), method));
        }
        r.fw.send(&msg);
    }
    for (id, _) in &request_ids {
        r.fw.response(&json!(id));
    }
    sync(&mut r);
    let seen = methods_of(&r.record);
    for m in &seen {
        assert!(PLUMBING.contains(&m.as_str()), "{m} reached the upstream");
    }
    let audit = r.fw.audit_records();
    let decided = audit
        .iter()
        .filter(|x| x["event"] == "call.decided")
        .count();
    let acting = request_ids
        .iter()
        .filter(|(_, m)| !matches!(*m, "ping" | "logging/setLevel"))
        .count();
    assert_eq!(
        decided,
        acting,
        "one decision record per request that could act ({} requests in all)",
        request_ids.len()
    );
}

fn methods_of(record: &Path) -> Vec<String> {
    methods(record)
}

const GUARD_ELICITATION: &str = r#"package mcp.firewall
import rego.v1

allow := true

deny contains "elicitation may not ask for passwords" if {
	input.direction == "server_to_client"
	input.method == "elicitation/create"
	contains(lower(input.params.message), "password")
}
"#;

/// Requests an upstream sends the client are decided: a refused one is
/// answered upstream with an error and never shown to the client; an
/// allowed one is relayed, answered, and both ends are on record.
#[test]
fn server_to_client_requests_are_decided() {
    let mut fw = Builder::new()
        .rego(GUARD_ELICITATION)
        .arg("--principal")
        .arg("alice")
        .wrap_fixture();
    fw.initialize_with(json!({"sampling": {}, "elicitation": {}, "roots": {}}));
    let refused = fw.call("elicit", json!({"message": "Type your password"}));
    assert!(
        text(&refused).contains("elicitation failed"),
        "the upstream got an error: {refused}"
    );
    assert!(
        !fw.backlog
            .iter()
            .any(|m| m["method"] == "elicitation/create"),
        "the client never saw it: {:#?}",
        fw.backlog
    );
    let decided = fw.wait_audit("refused server request", |r| {
        r["event"] == "server_request.decided" && r["result"]["decision"] == "deny"
    });
    assert_eq!(decided["method"], "elicitation/create");
    assert_eq!(decided["input"]["direction"], "server_to_client");
    assert_eq!(decided["input"]["caused_by"]["name"], "elicit", "{decided}");

    let id = fw.send_request(
        "tools/call",
        json!({"name": "elicit", "arguments": {"message": "Your name?"}}),
    );
    let asked = fw.server_request("elicitation/create");
    fw.send(&json!({"jsonrpc": "2.0", "id": asked["id"],
                    "result": {"action": "accept", "content": {"answer": "Bob"}}}));
    let answered = fw.response(&id);
    assert!(text(&answered).contains("Bob"), "{answered}");
    fw.wait_audit("relayed answer", |r| {
        r["event"] == "server_request.completed" && r["outcome"] == "ok"
    });
}

/// The shipped library checks URLs and URIs in the firewall's normalised
/// reading: spellings Node resolves to another host, and percent-encoded
/// URIs, no longer slip through.
#[test]
fn spelling_tricks_do_not_get_past_the_shipped_rules() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let upstream = repo_path("fixtures/recording-upstream/upstream.py");
    let mut fw = Builder::new()
        .policy_path(&repo_path("policies"))
        .env("RECORD", record.to_str().unwrap())
        .arg("--trust-annotations")
        .wrap(&["python3", upstream.to_str().unwrap()]);
    fw.initialize();
    let fine = fw.call("peek", json!({"url": "http://127.0.0.1/health"}));
    assert_eq!(text(&fine), "ran peek", "{fine}");
    for raw in [
        "https://evil.example\\@127.0.0.1/x",
        "https:evil.example/x",
        "https:/evil.example/x",
        "https:\\\\evil.example/x",
    ] {
        let resp = fw.call("peek", json!({"url": raw}));
        assert!(text(&resp).starts_with("Approval pending"), "{raw}: {resp}");
        assert!(text(&resp).contains("evil.example"), "{raw}: {resp}");
    }
    let secret = fw.request("resources/read", json!({"uri": "evil://public/%73ecret"}));
    assert_eq!(secret["error"]["code"], -32001, "{secret}");
    let decided = fw.wait_audit("normalised input", |r| {
        r["event"] == "call.decided"
            && r["method"] == "tools/call"
            && r["input"]["urls"][0]["host"] == "evil.example"
    });
    assert_eq!(decided["input"]["urls"][0]["scheme"], "https");
    let calls: Vec<Value> = received(&record)
        .into_iter()
        .filter(|m| m["method"] == "tools/call" || m["method"] == "resources/read")
        .collect();
    assert_eq!(calls.len(), 1, "only the loopback call ran: {calls:#?}");
}
