//! OpenTelemetry traces over OTLP (the standard `OTEL_EXPORTER_OTLP_*`
//! variables): a loopback OTLP/HTTP receiver (JSON encoding) decodes the
//! spans of a call that carried a W3C `traceparent` in `_meta`: the request
//! span continues the caller's trace, `decide` and `forward` are its
//! children with the decision's attributes, and the upstream received the
//! trace context of the `forward` span.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Builder, WAIT, repo_path};
use serde_json::{Value, json};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver on loopback: every span it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let shared = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let spans = shared.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = resource["resource"]["attributes"].clone();
                            spans.lock().unwrap().push(span);
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_spans_continue_the_callers_trace_and_reach_the_upstream() {
    let (endpoint, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let record_c = record.clone();
    tokio::task::spawn_blocking(move || {
        let upstream = repo_path("fixtures/recording-upstream/upstream.py");
        let mut fw = Builder::new()
            .env("RECORD", record_c.to_str().unwrap())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_SERVICE_NAME", "firewall-under-test")
            .wrap(&["python3", upstream.to_str().unwrap()]);
        fw.initialize();
        let answer = fw.request(
            "tools/call",
            json!({"name": "peek", "arguments": {},
                   "_meta": {"traceparent": format!("00-{TRACE}-{CALLER_SPAN}-01")}}),
        );
        assert!(answer.get("result").is_some(), "{answer}");
        assert!(fw.shutdown().success());
    })
    .await
    .unwrap();

    let deadline = Instant::now() + WAIT;
    let spans = loop {
        let got = spans.lock().unwrap().clone();
        if got.iter().any(|s| s["name"] == "forward") {
            break got;
        }
        assert!(Instant::now() < deadline, "no spans arrived: {got:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = named(&spans, "tools/call");
    assert_eq!(request["traceId"], TRACE, "{request}");
    assert_eq!(
        request["parentSpanId"], CALLER_SPAN,
        "continues the caller's span"
    );
    assert!(
        request["service"]
            .to_string()
            .contains("firewall-under-test")
    );
    let decide = named(&spans, "decide");
    let forward = named(&spans, "forward");
    for child in [decide, forward] {
        assert_eq!(child["traceId"], TRACE);
        assert_eq!(child["parentSpanId"], request["spanId"], "{child}");
    }
    assert_eq!(
        attribute(decide, "mcp.decision").unwrap()["stringValue"],
        "allow",
        "{decide}"
    );
    assert_eq!(
        attribute(decide, "mcp.tool").unwrap()["stringValue"],
        "peek"
    );
    assert!(attribute(decide, "mcp.server").is_some(), "{decide}");
    let decision_id = attribute(decide, "mcp.decision_id").unwrap()["stringValue"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(decision_id.len(), 36, "a decision id: {decide}");

    // The upstream got the trace context of the `forward` span.
    let received: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let call = received
        .iter()
        .find(|m| m["method"] == "tools/call")
        .expect("the call reached the upstream");
    let traceparent = call["params"]["_meta"]["traceparent"].as_str().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{TRACE}-{}-01", forward["spanId"].as_str().unwrap())
    );
}
