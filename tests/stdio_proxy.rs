//! The firewall as a transparent stdio proxy: what passes through unchanged,
//! what is relayed in both directions, and how bad input and dead upstreams
//! are handled. The policy here allows everything; decisions are tested in
//! `tests/decisions.rs`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;

/// A client that starts the firewall with its stderr on a pipe and never
/// reads it (an SDK client told `stderr: "pipe"` and nothing more). The
/// pipe holds 64 KiB. The upstream inherited that pipe, and the fixture
/// logs a line per call: once the pipe was full it stopped mid-call, and
/// every later call waited for ever; so did the firewall at its next line.
/// Now upstreams' lines come through the firewall, and lines the pipe
/// cannot take are dropped and counted, never waited for.
#[test]
fn a_stderr_nobody_reads_never_stalls_a_call() {
    let mut fw = Builder::new()
        .env("RUST_LOG", "mcp_firewall=debug")
        .stderr_unread()
        .wrap_fixture();
    fw.initialize();
    // The fixture inherits RUST_LOG, and its target (`mcp_firewall_fixture`)
    // falls under it: ~200 bytes of log per call, so 400 are past 64 KiB.
    for i in 0..400 {
        let said = format!("call {i}");
        assert_eq!(text(&fw.call("echo", json!({"text": said}))), said);
    }
}

/// Speak raw JSON-RPC to a process directly (no firewall), for comparisons.
fn direct_listing(method: &str, key: &str) -> Value {
    let mut child = std::process::Command::new(fixture_bin())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::{BufRead, Write};
    let mut stdin = child.stdin.take().unwrap();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"harness","version":"1.0"}}});
    writeln!(stdin, "{init}").unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc":"2.0","method":"notifications/initialized"})
    )
    .unwrap();
    writeln!(stdin, "{}", json!({"jsonrpc":"2.0","id":2,"method":method})).unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let result = loop {
        let msg: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if msg["id"] == 2 {
            break msg["result"][key].clone();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[test]
fn wrap_form_is_transparent_for_initialize_and_listings() {
    let mut fw = Builder::new().wrap_fixture();
    let init = fw.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-firewall-fixture");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);

    let tools = fw.request("tools/list", json!({}));
    assert_eq!(
        tools["result"]["tools"],
        direct_listing("tools/list", "tools"),
        "tools pass through unchanged"
    );
    let prompts = fw.request("prompts/list", json!({}));
    assert_eq!(
        prompts["result"]["prompts"],
        direct_listing("prompts/list", "prompts")
    );
    let resources = fw.request("resources/list", json!({}));
    assert_eq!(
        resources["result"]["resources"],
        direct_listing("resources/list", "resources")
    );

    let echo = fw.call("echo", json!({"text": "hello"}));
    assert_eq!(text(&echo), "hello");
    let add = fw.call("add", json!({"a": 2, "b": 40}));
    assert_eq!(
        add["result"]["structuredContent"]["sum"], 42,
        "structured content survives: {add}"
    );
    let read = fw.request("resources/read", json!({"uri": "fixture://notes/hello"}));
    assert_eq!(read["result"]["contents"][0]["text"], "world");
    let prompt = fw.request(
        "prompts/get",
        json!({"name": "greet", "arguments": {"name": "Ada"}}),
    );
    assert!(
        prompt["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("Ada")
    );
    let tmpl = fw.request("resources/templates/list", json!({}));
    assert_eq!(
        tmpl["result"]["resourceTemplates"][0]["uriTemplate"],
        "fixture://notes/{name}"
    );
}

#[test]
fn an_upstream_tool_error_is_returned_as_is() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    let fail = fw.call("fail", json!({}));
    assert_eq!(fail["result"]["isError"], true);
    assert_eq!(text(&fail), "fixture failure");
}

#[test]
fn malformed_input_gets_json_rpc_errors_and_the_session_goes_on() {
    let mut fw = Builder::new().wrap_fixture();
    fw.send_raw("this is not json");
    let parse = fw.recv_where("parse error", |m| m["error"]["code"] == -32700);
    assert_eq!(parse["id"], Value::Null);
    fw.send_raw(r#"{"jsonrpc":"2.0","id":"x","method":7}"#);
    assert_eq!(fw.response(&json!("x"))["error"]["code"], -32600);
    fw.send_raw("[1,2,3]");
    fw.recv_where("batch refusal", |m| {
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("batch"))
    });
    fw.send_bytes(b"\xff\xfe\xfd\n");
    fw.recv_where("utf-8 parse error", |m| m["error"]["code"] == -32700);
    fw.send_raw(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
    assert_eq!(
        fw.response(&json!(5))["error"]["data"]["kind"],
        "not_initialized"
    );

    fw.initialize();
    let wrong_type = fw.request("tools/call", json!({"name": 42}));
    assert_eq!(wrong_type["error"]["code"], -32602);
    let args_not_object = fw.request("tools/call", json!({"name": "echo", "arguments": [1]}));
    assert_eq!(args_not_object["error"]["code"], -32602);
    let unknown_method = fw.request("tools/teleport", json!({}));
    assert_eq!(unknown_method["error"]["code"], -32601);
    assert_eq!(
        text(&fw.call("echo", json!({"text": "still here"}))),
        "still here"
    );
}

#[test]
fn an_oversized_message_is_refused_and_the_next_one_served() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    let huge = "x".repeat(17 * 1024 * 1024);
    let line = json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": huge}}});
    fw.send(&line);
    let refused = fw.recv_where("size refusal", |m| {
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("larger"))
    });
    assert_eq!(refused["error"]["code"], -32600);
    // Answered as the request it was (its id stands before its params), so
    // the client is not left waiting for it.
    assert_eq!(refused["id"], 77, "{refused}");
    assert_eq!(text(&fw.call("echo", json!({"text": "after"}))), "after");

    // The top-level id only: here it comes after 17 MiB of params, where
    // the firewall no longer reads, and an `id` nested in the arguments
    // must not be taken for it.
    let nested = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"id":5,"text":"{huge}"}}}},"id":79}}"#
    );
    fw.send_raw(&nested);
    let refused = fw.recv_where("size refusal", |m| {
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("larger"))
    });
    assert_eq!(refused["id"], Value::Null, "{refused}");
}

/// Issue 11: a client's big message counts against the process's budget
/// for big messages too. With 2 MiB, a 1.5 MiB request (counted twice) is
/// refused with the reason, and the session goes on; a 0.9 MiB one is
/// never counted.
#[test]
fn a_message_the_memory_budget_cannot_cover_is_refused_and_the_next_one_served() {
    let mut fw = Builder::new()
        .args(&["--message-memory-bytes", &(2 << 20).to_string()])
        .wrap_fixture();
    fw.initialize();
    let big = "x".repeat(3 << 19);
    fw.send(&json!({"jsonrpc": "2.0", "id": 78, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"text": big}}}));
    let refused = fw.recv_where("budget refusal", |m| {
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("message_memory_bytes"))
    });
    assert_eq!(refused["error"]["code"], -32600);
    assert_eq!(refused["id"], 78, "{refused}");
    let fits = "y".repeat(900 * 1024);
    assert_eq!(text(&fw.call("echo", json!({"text": fits}))), fits);
}

#[test]
fn ping_is_answered() {
    let mut fw = Builder::new().wrap_fixture();
    assert_eq!(
        fw.request("ping", json!({}))["result"],
        json!({}),
        "ping works before initialize"
    );
    fw.initialize();
    assert_eq!(fw.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn sampling_elicitation_and_roots_requests_reach_the_client_and_back() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize_with(json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}}));

    let id = fw.send_request(
        "tools/call",
        json!({"name": "sample", "arguments": {"prompt": "hi"}}),
    );
    let req = fw.server_request("sampling/createMessage");
    assert_eq!(req["params"]["messages"][0]["content"]["text"], "hi");
    fw.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result":
        {"role": "assistant", "content": {"type": "text", "text": "from-client"}, "model": "m"}}));
    assert_eq!(text(&fw.response(&id)), "sampled: from-client");

    let id = fw.send_request(
        "tools/call",
        json!({"name": "elicit", "arguments": {"message": "ok?"}}),
    );
    let req = fw.server_request("elicitation/create");
    fw.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {"action": "accept", "content": {"answer": "yes"}}}));
    assert!(text(&fw.response(&id)).starts_with("elicited: accept"));

    let id = fw.send_request("tools/call", json!({"name": "list_roots", "arguments": {}}));
    let req = fw.server_request("roots/list");
    fw.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {"roots": [{"uri": "file:///work", "name": "w"}]}}));
    assert!(text(&fw.response(&id)).contains("file:///work"));
}

#[test]
fn logging_progress_and_list_changed_notifications_are_relayed() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    fw.call("log", json!({"message": "note this"}));
    let log = fw.notification("notifications/message");
    assert_eq!(log["params"]["data"], "note this");

    let id = fw.send_request(
        "tools/call",
        json!({"name": "slow", "arguments": {"seconds": 0.2, "steps": 2}, "_meta": {"progressToken": "tok-1"}}),
    );
    let progress = fw.notification("notifications/progress");
    assert_eq!(progress["params"]["progressToken"], "tok-1");
    assert!(text(&fw.response(&id)).starts_with("done"));

    fw.call("add_tool", json!({}));
    fw.notification("notifications/tools/list_changed");
    let tools = fw.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"extra"),
        "the new tool is listed after list_changed: {names:?}"
    );
    fw.wait_audit("tool.added for extra", |r| {
        r["event"] == "tool.added" && r["tool"] == "extra"
    });
}

#[test]
fn cancellation_from_the_client_reaches_the_upstream_and_no_response_is_sent() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let path = events.path().to_str().unwrap().to_string();
    let mut fw = Builder::new()
        .env("FIXTURE_EVENT_LOG", &path)
        .wrap_fixture();
    fw.initialize();
    let id = fw.send_request(
        "tools/call",
        json!({"name": "slow", "arguments": {"seconds": 30, "steps": 30}}),
    );
    wait_event(events.path(), "the slow call", |e| {
        e["event"] == "call_tool" && e["name"] == "slow"
    });
    fw.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "user pressed stop"}),
    );
    wait_event(events.path(), "cancellation", |e| e["event"] == "cancelled");
    wait_event(events.path(), "the slow call stopping", |e| {
        e["event"] == "slow_cancelled"
    });
    fw.wait_audit("cancelled outcome", |r| {
        r["event"] == "call.completed" && r["outcome"] == "cancelled"
    });
    // The session goes on, and the cancelled request never got an answer.
    assert_eq!(text(&fw.call("echo", json!({"text": "next"}))), "next");
    assert!(
        !fw.backlog.iter().any(|m| m["id"] == id),
        "a cancelled request must not be answered"
    );
}

#[test]
fn requests_run_concurrently() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    let slow = fw.send_request(
        "tools/call",
        json!({"name": "slow", "arguments": {"seconds": 5, "steps": 1}}),
    );
    // The quick call is answered while the slow one is still running.
    assert_eq!(text(&fw.call("echo", json!({"text": "quick"}))), "quick");
    assert!(
        !fw.backlog.iter().any(|m| m["id"] == slow),
        "slow call finished first?"
    );
    fw.notify("notifications/cancelled", json!({"requestId": slow}));
}

#[test]
fn a_crashed_upstream_fails_its_calls_clearly() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    crash_fails_its_calls_clearly(&mut fw);
}

/// `crash` the fixture: that call and the next fail at once, naming the
/// upstream as not running, and its exit is on the record.
fn crash_fails_its_calls_clearly(fw: &mut Firewall) {
    let crash = fw.call("crash", json!({}));
    let message = crash["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("upstream") && message.contains("not running"),
        "{crash}"
    );
    let after = fw.call("echo", json!({"text": "x"}));
    assert_eq!(after["error"]["code"], -32003, "{after}");
    fw.wait_audit("upstream.exited", |r| r["event"] == "upstream.exited");
}

/// The server starts a process that leaves its group (`setsid`) and keeps
/// its stdout, then crashes. Its stdout never reaches its end, but the
/// server is gone: its calls fail at once, as without that process. Before,
/// the crash was seen only at end-of-file, so the call waited for the
/// upstream deadline (300 s), and every later call with it.
#[test]
fn a_crashed_upstream_is_seen_though_a_process_it_left_holds_its_stdout() {
    let escape = Escape::new(Held::Stdout);
    let mut fw = Builder::new().wrap(&["sh", "-c", &escape.script]);
    fw.initialize();
    let escaped = escape.escaped();
    crash_fails_its_calls_clearly(&mut fw);
    // The escaped process still holds the pipe.
    assert!(escaped.alive());
}

#[test]
fn stdin_closing_ends_the_firewall_cleanly() {
    let mut fw = Builder::new().wrap_fixture();
    fw.initialize();
    let status = fw.shutdown();
    assert!(status.success(), "{status}");
}

#[test]
fn a_missing_upstream_command_stops_start_up() {
    let mut b = Builder::new();
    b = b.arg("--").arg("/nonexistent/mcp-server");
    let (mut cmd, _) = b.command();
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/mcp-server"), "{stderr}");
}

#[test]
fn stdio_and_http_can_serve_from_one_process() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut fw = Builder::new()
        .arg("--listen")
        .arg(&listen)
        .arg("--stdio")
        .wrap_fixture();
    fw.initialize();
    assert_eq!(text(&fw.call("echo", json!({"text": "both"}))), "both");
    let mut stream = std::net::TcpStream::connect(&listen).expect("the HTTP listener is up");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let started = fw.wait_audit("stdio session", |r| r["event"] == "session.started");
    assert_eq!(started["transport"], "stdio");
}

/// Issue 12, item 1: over stdio the last progress notification of a call
/// was sometimes written after the call's response, so SDK progress
/// callbacks missed it. Whatever an upstream sends before a response must
/// reach the client before that response. (A race: many concurrent calls
/// make it show; the old code failed this within a few rounds.)
#[test]
fn progress_sent_before_a_response_reaches_the_client_before_it() {
    let mut fw = Builder::new()
        .rego("package mcp.firewall\nallow := true\n")
        .wrap_fixture();
    fw.initialize();
    for round in 0..30 {
        let calls: Vec<(Value, String)> = (0..8)
            .map(|i| {
                let token = format!("p{round}-{i}");
                let id = fw.send_request(
                    "tools/call",
                    json!({"name": "slow", "arguments": {"seconds": 0, "steps": 3},
                           "_meta": {"progressToken": token}}),
                );
                (id, token)
            })
            .collect();
        // Read messages in arrival order until every response is in.
        fw.backlog.clear();
        let mut progress: std::collections::HashMap<String, usize> = Default::default();
        let mut answered = 0;
        while answered < calls.len() {
            let m = fw.recv_where("the next message", |_| true);
            if m["method"] == "notifications/progress" {
                let token = m["params"]["progressToken"].as_str().unwrap().to_string();
                *progress.entry(token).or_default() += 1;
            } else if let Some((_, token)) = calls.iter().find(|(id, _)| m.get("id") == Some(id)) {
                answered += 1;
                let seen = progress.get(token).copied().unwrap_or(0);
                assert_eq!(
                    seen, 3,
                    "round {round}, {token}: only {seen} of 3 progress notifications came before the response"
                );
            }
        }
        fw.backlog.clear();
    }
}

/// Issue 12, item 5: SIGTERM used to end a stdio firewall but leave its
/// upstream running, re-parented to init. Now a signal stops the session and
/// the upstream's whole process group: here a `sh -c` wrapper whose server
/// exits on end of input but whose `sleep` would not.
#[test]
fn sigterm_stops_the_whole_upstream() {
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let script = format!("python3 {}; sleep 300", hostile.display());
    let mut fw = Builder::new()
        .rego("package mcp.firewall\nallow := true\n")
        .wrap(&["sh", "-c", &script]);
    fw.initialize();
    let leader = upstream_leader(&fw.child);
    unsafe {
        libc::kill(fw.child.id() as i32, libc::SIGTERM);
    }
    let status = wait_exit(&mut fw.child);
    assert!(status.code().is_some() || status.signal().is_some());
    assert_group_gone(leader);
}

/// Issue 12, item 5: the client closes its input while the upstream hangs in
/// `initialize`. The firewall used to handle `initialize` before reading the
/// next line, so it noticed end of input only after the upstream's deadline;
/// now it ends at once and takes the upstream with it.
#[test]
fn end_of_input_during_a_hanging_initialize_stops_firewall_and_upstream() {
    let hostile = repo_path("fixtures/hostile-upstream/upstream.py");
    let mut fw = Builder::new()
        .rego("package mcp.firewall\nallow := true\n")
        .env("HANG_INIT", "1")
        .wrap(&["python3", hostile.to_str().unwrap()]);
    fw.send_request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "harness", "version": "1.0"}}),
    );
    let leader = upstream_leader(&fw.child);
    fw.close_stdin();
    // The initialize deadline is 50 s; wait_exit gives up well before it.
    let status = wait_exit(&mut fw.child);
    assert!(status.code().is_some() || status.signal().is_some());
    assert_group_gone(leader);
}

/// Requests a client pipelines behind `initialize` wait for its answer and
/// are then served in order, not refused as "not initialized".
#[test]
fn requests_pipelined_behind_initialize_are_served() {
    let mut fw = Builder::new()
        .rego("package mcp.firewall\nallow := true\n")
        .wrap_fixture();
    let init = fw.send_request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "harness", "version": "1.0"}}),
    );
    fw.notify("notifications/initialized", json!({}));
    let list = fw.send_request("tools/list", json!({}));
    let again = fw.send_request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "harness", "version": "1.0"}}),
    );
    assert!(fw.response(&init)["result"]["serverInfo"].is_object());
    let tools = fw.response(&list);
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{tools}"
    );
    let second = fw.response(&again);
    assert_eq!(second["error"]["code"], -32600, "{second}");
}

/// The first child process of the firewall: the upstream's process group
/// leader.
fn upstream_leader(child: &std::process::Child) -> u32 {
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| {
                let t = t.ok()?.file_name().into_string().ok()?;
                std::fs::read_to_string(format!("/proc/{pid}/task/{t}/children")).ok()
            })
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .next();
        if let Some(leader) = found {
            return leader;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never ran as a child of the firewall"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait (up to 10 s) until no live process is `leader` or in its group.
fn assert_group_gone(leader: u32) {
    let members = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
            .filter(|p| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                    return false;
                };
                let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
                let fields: Vec<&str> = after.split_whitespace().collect();
                fields.first() != Some(&"Z")
                    && (fields.get(2) == Some(&leader.to_string().as_str()) || *p == leader)
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !members().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(members().is_empty(), "still running: {:?}", members());
}

/// A pipe: (read end, write end), close-on-exec in this process.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both fds on success; each is owned exactly once.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Whether the open file description behind `fd` is in non-blocking mode.
fn nonblocking(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL only reads the flags of a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

/// Runs one session with stdin and stdout on pipes made here (stderr on the
/// stdout pipe too when `shared_stderr`); returns whether the firewall put
/// its stdin and its stdout in non-blocking mode, after checking a call is
/// answered.
fn pipe_modes(shared_stderr: bool) -> (bool, bool) {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let (stdin_read, stdin_write) = pipe();
    let (stdout_read, stdout_write) = pipe();
    let mut builder = Builder::new().args(&["--", fixture_bin()]);
    let (mut cmd, _audit) = builder.command();
    cmd.env("RUST_LOG", "debug")
        .stdin(Stdio::from(stdin_read.try_clone().unwrap()))
        .stdout(Stdio::from(stdout_write.try_clone().unwrap()));
    if shared_stderr {
        cmd.stderr(Stdio::from(stdout_write.try_clone().unwrap()));
    } else {
        cmd.stderr(Stdio::null());
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = std::fs::File::from(stdin_write);
    let mut output = std::io::BufReader::new(std::fs::File::from(stdout_read));
    let mut answer = |line: Value| -> Value {
        writeln!(input, "{line}").unwrap();
        let mut text = String::new();
        loop {
            text.clear();
            assert!(output.read_line(&mut text).unwrap() > 0, "stdout closed");
            // With stderr on the same pipe, log lines come in between.
            if let Ok(v) = serde_json::from_str::<Value>(&text)
                && v.get("id") == line.get("id")
            {
                return v;
            }
        }
    };
    let init = answer(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "pipes", "version": "1"}}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    let call = answer(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"}}}));
    assert_eq!(call["result"]["content"][0]["text"], "hi", "{call}");
    let modes = (nonblocking(&stdin_read), nonblocking(&stdout_write));
    let _ = child.kill();
    let _ = child.wait();
    modes
}

#[test]
fn piped_stdin_and_stdout_are_served_without_blocking_threads() {
    // Non-blocking mode is how the firewall reads and writes its pipes on
    // the reactor instead of handing each read and write to a thread.
    assert_eq!(pipe_modes(false), (true, true));
}

#[test]
fn a_stdout_shared_with_stderr_stays_blocking() {
    // `2>&1`: the same pipe is the log writer's and every inheriting
    // child's stderr, which must not start failing with EAGAIN.
    assert_eq!(pipe_modes(true), (true, false));
}

/// `build.rs`: where glibc loads packed relative relocations (2.36 on),
/// the binary carries them (`DT_RELR`) instead of one 24-byte `.rela.dyn`
/// entry per pointer, which the loader reads in full at every start (1.6 MB
/// of every process's resident memory before). Where glibc is older the
/// binary must not carry them: it would not start.
/// The debug build the tests run keeps line tables only (`Cargo.toml`,
/// `[profile.dev]`): with full debug information this binary took 418 MB,
/// each of ~45 test executables ~340 MB, and a clean build of the suite
/// filled a CI machine's disk (LLD died with SIGBUS). Line tables only:
/// 98 MB; full debug information for this crate alone: 180 MB.
#[test]
fn the_debug_binary_keeps_line_tables_only() {
    if !firewall_bin().contains("/debug/") {
        return;
    }
    let bytes = std::fs::metadata(firewall_bin()).unwrap().len();
    assert!(
        bytes < 150 * 1024 * 1024,
        "{} is {bytes} bytes: full debug information again? (Cargo.toml [profile.dev])",
        firewall_bin()
    );
}

#[test]
fn the_binary_packs_its_relocations_where_glibc_can_load_them() {
    let glibc = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version: Vec<u32> = glibc
        .strip_prefix("glibc ")
        .unwrap_or("0.0")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    let dynamic = std::process::Command::new("readelf")
        .args(["--dynamic", "--wide"])
        .arg(firewall_bin())
        .output()
        .expect("readelf (binutils) runs");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    let relr = dynamic.contains("(RELR)");
    if version.as_slice() >= [2, 36].as_slice() {
        assert!(relr, "{glibc}: no DT_RELR in\n{dynamic}");
        let rela = dynamic
            .lines()
            .find(|l| l.contains("(RELASZ)"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(rela < 64 * 1024, "{rela} bytes of .rela.dyn left");
    } else {
        assert!(!relr, "{glibc} cannot load DT_RELR");
    }
}
