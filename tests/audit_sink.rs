//! Decision logs shipped (`[audit.sink]`): a collector on loopback that
//! first refuses, then takes gzip batches; across a restart of the firewall
//! every record arrives, in order, each id the record's own hash, with
//! duplicates (if any) only under the same id.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{Builder, WAIT, read_audit};
use serde_json::{Value, json};

#[derive(Default)]
struct Collector {
    refusals_left: usize,
    events: Vec<Value>,
    gzip: bool,
}

/// A collector on 127.0.0.1 that refuses its first `refusals` batches.
async fn collector(refusals: usize) -> (String, Arc<Mutex<Collector>>) {
    let state = Arc::new(Mutex::new(Collector {
        refusals_left: refusals,
        ..Collector::default()
    }));
    let shared = state.clone();
    let app = axum::Router::new().route(
        "/logs",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move {
                let mut s = state.lock().unwrap();
                if s.refusals_left > 0 {
                    s.refusals_left -= 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                s.gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
                let mut text = String::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut text)
                    .unwrap();
                let batch: Vec<Value> = serde_json::from_str(&text).unwrap();
                s.events.extend(batch);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/logs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// Wait (off the runtime's thread) until the collector holds every record
/// of `log`.
async fn wait_for_all(state: &Arc<Mutex<Collector>>, log: &std::path::Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = read_audit(log).len();
        let have = state
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .max();
        if have == Some(last as u64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "collector has up to seq {have:?} of {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_across_refusals_and_a_restart() {
    let (url, state) = collector(2).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = dir.path().join("mcp-firewall.toml");
    let key = dir.path().join("signing");
    std::fs::copy(common::repo_path("fixtures/keys/carol"), &key).unwrap();
    std::fs::write(
        &config,
        format!(
            "[audit]\nsigning_key = \"{key}\"\ncheckpoint_every_records = 4\n\n\
             [audit.sink]\nurl = \"{url}\"\ninterval_seconds = 1\nbatch_records = 5\n",
            key = key.display()
        ),
    )
    .unwrap();
    // Three runs: what one run wrote as it stopped is shipped by the next.
    let mut records = Vec::new();
    for run in 0..3 {
        let (log_c, config) = (log.clone(), config.clone());
        let fw = tokio::task::spawn_blocking(move || {
            let mut fw = Builder::new()
                .audit(&log_c)
                .args(&["--config", config.to_str().unwrap()])
                .wrap_fixture();
            fw.initialize();
            for i in 0..4 {
                fw.call("echo", json!({"text": format!("run {run} call {i}")}));
            }
            fw
        })
        .await
        .unwrap();
        // Left running until the collector has it all, then stopped.
        wait_for_all(&state, &log).await;
        records = read_audit(&log);
        tokio::task::spawn_blocking(move || assert!(fw.shutdown().success()))
            .await
            .unwrap();
    }
    let s = state.lock().unwrap();
    assert!(s.gzip, "batches are gzip-encoded");
    assert_eq!(s.refusals_left, 0, "the refused batches were retried");
    // First arrival of each id, in arrival order: exactly the log, in order.
    let mut seen = std::collections::HashSet::new();
    let (checkpoints, events): (Vec<&Value>, Vec<&Value>) =
        s.events.iter().partition(|e| e["type"] == "checkpoint");
    let firsts: Vec<&Value> = events
        .iter()
        .copied()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
        .collect();
    assert!(firsts.len() >= records.len(), "no record lost");
    let firsts = &firsts[..records.len()];
    for (event, record) in firsts.iter().zip(&records) {
        assert_eq!(event["id"], record["hash"], "{event}");
        assert_eq!(event["seq"], record["seq"]);
        assert_eq!(&event["record"], record);
        assert_eq!(event["labels"]["app"], "mcp-firewall");
    }
    // A duplicate (a batch re-sent after a restart) carries the same id and
    // the same record.
    let all = read_audit(&log);
    for e in &events {
        let record = &all[e["seq"].as_u64().unwrap() as usize - 1];
        assert_eq!(e["id"], record["hash"]);
    }
    // The signed checkpoints went along, each matching the log, none missing.
    let mut seen = std::collections::HashSet::new();
    let checkpoints: Vec<&Value> = checkpoints
        .into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
        .collect();
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    for (i, cp) in checkpoints.iter().enumerate() {
        let signed = &cp["checkpoint"];
        assert_eq!(signed["n"], i as u64 + 1, "{cp}");
        let seq = signed["seq"].as_u64().unwrap() as usize;
        assert_eq!(signed["head"], all[seq - 1]["hash"], "{cp}");
        assert!(signed["sig"].is_string());
    }
    let position: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("audit.jsonl.sink-position")).unwrap(),
    )
    .unwrap();
    assert!(position["seq"].as_u64().unwrap() >= records.len() as u64);
}
