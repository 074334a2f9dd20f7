//! Prometheus metrics (`--metrics-listen`): a real scrape of a running
//! firewall, parsed as the exposition format, after allowed, denied and
//! held calls; label values stay bounded whatever a client sends.

mod common;

use std::collections::BTreeMap;

use common::{Builder, Firewall, free_port, scrape_metrics};
use serde_json::json;

const POLICY: &str = r#"package mcp.firewall

allow if input.method != "tools/call"
allow if input.arguments.text == "fine"
deny contains "not that" if input.arguments.text == "forbidden"
"#;

/// The standard process metrics, the only names without the prefix.
const PROCESS: [&str; 7] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
];

/// Samples by `name{labels}` (labels as written), checking the format:
/// every sample's family has a `# TYPE`, and the text ends with `# EOF`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert_eq!(text.trim_end().lines().last(), Some("# EOF"), "{text}");
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("mcp_firewall_") || PROCESS.contains(&name),
            "{line}"
        );
        assert!(
            typed.iter().any(|family| name.starts_with(family.as_str())),
            "no # TYPE for {line}"
        );
        samples.insert(series.to_string(), value.parse::<f64>().expect(line));
    }
    samples
}

/// The firewall in front of the fixture, initialized, serving metrics on
/// the port returned.
fn serving_metrics() -> (Firewall, u16) {
    let port = free_port();
    let mut fw = Builder::new()
        .rego(POLICY)
        .args(&["--metrics-listen", &format!("127.0.0.1:{port}")])
        .wrap_fixture();
    fw.initialize();
    (fw, port)
}

#[test]
fn a_scrape_shows_decisions_upstreams_approvals_audit_sessions_and_the_policy() {
    let (mut fw, port) = serving_metrics();
    for text in ["fine", "fine", "forbidden", "held for a human"] {
        fw.call("echo", json!({"text": text}));
    }
    // A method outside the table, written to break out of a label.
    fw.request("tools/call\"} 1\nmcp_firewall_evil 1", json!({}));

    let (content_type, text) = scrape_metrics(port);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let samples = parse(&text);
    let get = |series: &str| {
        samples
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let decided = |result: &str| {
        get(&format!(
            "mcp_firewall_decisions_total{{method=\"tools/call\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(decided("allow"), 2.0);
    assert_eq!(decided("deny"), 1.0);
    assert_eq!(decided("approve"), 1.0);
    assert!(get("mcp_firewall_decision_seconds_count{method=\"tools/call\"}") >= 4.0);
    let upstream = samples
        .keys()
        .find_map(|k| k.strip_prefix("mcp_firewall_upstream_up{"))
        .expect("an upstream")
        .to_string();
    assert_eq!(get(&format!("mcp_firewall_upstream_up{{{upstream}")), 1.0);
    assert!(
        get(&format!(
            "mcp_firewall_upstream_request_seconds_count{{{upstream}"
        )) >= 2.0
    );
    assert_eq!(get("mcp_firewall_approvals_pending"), 1.0);
    assert!(get("mcp_firewall_audit_write_seconds_count") >= 8.0);
    assert_eq!(get("mcp_firewall_audit_write_failures_total"), 0.0);
    assert_eq!(get("mcp_firewall_sessions{transport=\"stdio\"}"), 1.0);
    assert_eq!(
        get("mcp_firewall_sessions_started_total{transport=\"stdio\"}"),
        1.0
    );
    let loaded = fw.wait_audit("policy.loaded", |r| r["event"] == "policy.loaded");
    let revision = loaded["revision"].as_str().unwrap();
    assert_eq!(
        get(&format!(
            "mcp_firewall_policy_info{{revision=\"{revision}\"}}"
        )),
        1.0
    );
    // What a client writes never becomes a label or a series.
    assert!(!text.contains("evil"), "{text}");
    assert!(
        samples
            .keys()
            .filter(|k| k.starts_with("mcp_firewall_decisions_total"))
            .all(|k| k.contains("method=\"tools/call\"")
                || k.contains("method=\"tools/list\"")
                || k.contains("method=\"other\"")),
        "{text}"
    );
}

/// The metrics listener goes through the same front door as the others: a
/// connection cap (32) and a header-read deadline. Served bare, every idle
/// connection to it held a descriptor for ever, and enough of them left
/// the process none for its clients, upstreams or audit log. Here, with
/// 40 idle connections open, a new one is refused at once (`503`); once
/// they close, a scrape is served. The old build served the new one.
#[test]
fn idle_connections_to_the_metrics_port_are_capped() {
    use std::io::{Read, Write};
    let (_fw, port) = serving_metrics();
    scrape_metrics(port);
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let one_more = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    one_more
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let get =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let answer = |mut stream: std::net::TcpStream| {
        let _ = stream.write_all(get.as_bytes());
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let got = answer(one_more);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    drop(idle);
    // The slots come back as the firewall sees the connections close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = answer(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        if got.starts_with("HTTP/1.1 200") {
            assert!(got.contains("mcp_firewall_sessions"), "{got}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What an operator watches for a firewall that holds on to what it should
/// give back: the standard process metrics (under their usual names, so
/// existing dashboards apply), the runtime's tasks, the requests in flight
/// and the open connections, each read at the scrape. The scrape's own
/// connection is one of the metrics listener's.
#[test]
fn a_scrape_shows_the_process_the_runtime_and_open_connections() {
    let (fw, port) = serving_metrics();
    let samples = parse(&scrape_metrics(port).1);
    let get = |series: &str| {
        samples
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
    };
    for name in PROCESS {
        assert!(get(name) >= 0.0, "{name}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", fw.child.id())).unwrap();
    let threads: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (get("process_threads") - threads).abs() <= 2.0,
        "{threads} threads"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", fw.child.id()))
        .unwrap()
        .count() as f64;
    assert!((get("process_open_fds") - fds).abs() <= 2.0, "{fds} fds");
    assert!(get("process_max_fds") >= get("process_open_fds"));
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = get("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} vs {now}"
    );
    assert!(get("mcp_firewall_runtime_tasks") >= 1.0);
    assert_eq!(get("mcp_firewall_requests_in_flight"), 0.0);
    assert_eq!(
        get("mcp_firewall_http_connections{listener=\"metrics\"}"),
        1.0
    );
}

/// With `--audit-fsync always`, each `fsync` of the group commit is timed:
/// its count against the records' says how many records one `fsync`
/// covered, and its sum how long the disk took, where an operator looks
/// when calls slow down. Without it, no `fsync` is counted.
#[test]
fn each_fsync_of_the_audit_log_is_timed() {
    for (fsync, synced) in [("always", true), ("never", false)] {
        let port = free_port();
        let mut fw = Builder::new()
            .rego(POLICY)
            .args(&[
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
                "--audit-fsync",
                fsync,
            ])
            .wrap_fixture();
        fw.initialize();
        for _ in 0..5 {
            fw.call("echo", json!({"text": "fine"}));
        }
        let samples = parse(&scrape_metrics(port).1);
        let get = |series: &str| samples.get(series).copied().unwrap_or(0.0);
        let records = get("mcp_firewall_audit_write_seconds_count");
        let syncs = get("mcp_firewall_audit_fsync_seconds_count");
        assert!(records >= 10.0, "{fsync}: {records} records");
        if synced {
            // Five calls one after another: their decisions were each
            // waited for, so each took an `fsync` of its own at least.
            assert!(
                (5.0..=records).contains(&syncs),
                "{syncs} fsyncs for {records} records"
            );
            assert!(get("mcp_firewall_audit_fsync_seconds_sum") > 0.0);
        } else {
            assert!(samples.contains_key("mcp_firewall_audit_fsync_seconds_count"));
            assert_eq!(syncs, 0.0);
        }
    }
}
