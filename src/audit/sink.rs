//! Shipping the audit log to a collector (`[audit.sink]`): decision logs in
//! the team's SIEM, without ever delaying a decision.
//!
//! A background task reads the log file from where it last stopped (never
//! the writer's lock, never the decision path), POSTs batches of records as
//! a gzip-compressed JSON array to `url`, and after each acknowledged batch
//! (2xx) stores its position durably in `LOG.sink-position`. A failed POST
//! is retried with exponential backoff (1 s doubling to 60 s) forever: the
//! log on disk is the queue, so nothing is dropped, however long the
//! collector is away. After a restart it resumes from the stored position;
//! a batch acknowledged but not yet recorded as such is sent again, with the
//! same ids (a collector dedupes on `id`).
//!
//! Each event (OPA decision-log-like):
//!
//! ```json
//! {"id":"sha256:…","seq":12,"timestamp":"…","event":"call.decided","decision_id":"…",
//!  "labels":{"app":"mcp-firewall","version":"0.1.0","log":"/var/log/mcp-firewall/audit.jsonl"},
//!  "record":{…the audit record as written…}}
//! ```
//!
//! `id` is the record's own chain hash, unique and stable; `type` is
//! `record`. With signed checkpoints ([`super::checkpoint`]), each new
//! checkpoint is shipped too, after the records it covers, as
//! `{"type":"checkpoint","id":"checkpoint:N:HEAD","seq":…,"timestamp":…,
//! "labels":…,"checkpoint":{…the line as signed…}}`: a copy off the machine
//! that an editor of the local files cannot take back.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::metrics::metrics;

/// Records per POST at most.
pub const DEFAULT_BATCH: usize = 500;
/// How often the log is looked at for new records.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bytes read from the log per look at most.
const READ_CHUNK: u64 = 4 * 1024 * 1024;

/// `[audit.sink]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    pub url: String,
    /// The environment variable holding a bearer token for the collector.
    pub bearer_env: Option<String>,
    pub batch: usize,
    pub every: Duration,
}

/// Where shipping stands: the log's byte offset after the last shipped
/// record, and that record's `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub seq: u64,
    /// `n` of the last checkpoint shipped.
    #[serde(default)]
    pub checkpoint: u64,
}

/// The position file of the log at `log`.
pub fn position_path(log: &Path) -> PathBuf {
    let mut path = log.as_os_str().to_owned();
    path.push(".sink-position");
    PathBuf::from(path)
}

fn load_position(path: &Path) -> Position {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Write the position durably: a temporary file, synced, renamed over.
fn store_position(path: &Path, position: Position) -> std::io::Result<()> {
    let tmp = path.with_extension("sink-position.tmp");
    let mut file = super::writer::create_private(&tmp, false)?;
    file.set_len(0)?;
    file.write_all(&serde_json::to_vec(&position).expect("plain numbers"))?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The next batch after `from`: events and the position after them. A
/// position that no longer fits the file (the log was replaced) starts over.
fn next_batch(log: &Path, from: Position, batch: usize) -> std::io::Result<(Vec<Value>, Position)> {
    let mut file = std::fs::File::open(log)?;
    let len = file.metadata()?.len();
    let mut from = from;
    if from.offset > len {
        tracing::warn!(log = %log.display(), "the audit log is shorter than what was shipped; shipping it again from the start");
        from = Position::default();
    }
    file.seek(SeekFrom::Start(from.offset))?;
    let mut buf = Vec::new();
    file.take(READ_CHUNK).read_to_end(&mut buf)?;
    let mut events = Vec::new();
    let mut position = from;
    let mut consumed = 0usize;
    for line in buf.split_inclusive(|b| *b == b'\n') {
        if events.len() >= batch || !line.ends_with(b"\n") {
            break;
        }
        consumed += line.len();
        let Ok(record) = serde_json::from_slice::<Value>(line) else {
            tracing::error!(
                offset = from.offset + consumed as u64,
                "an audit line that does not parse is not shipped"
            );
            continue;
        };
        let seq = record["seq"].as_u64().unwrap_or(0);
        if events.is_empty() && from.seq > 0 && seq != from.seq + 1 {
            tracing::warn!(
                expected = from.seq + 1,
                found = seq,
                "the audit log does not continue where shipping stopped; shipping it again from the start"
            );
            return next_batch(log, Position::default(), batch);
        }
        events.push(event(log, record));
        position = Position {
            offset: from.offset + consumed as u64,
            seq,
            checkpoint: from.checkpoint,
        };
    }
    Ok((events, position))
}

/// Checkpoints after `after` (by `n`), as events.
fn new_checkpoints(log: &Path, checkpoints: &Path, after: u64) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(checkpoints) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|cp| cp["n"].as_u64().is_some_and(|n| n > after))
        .map(|cp| {
            json!({
                "type": "checkpoint",
                "id": format!("checkpoint:{}:{}", cp["n"], cp["head"].as_str().unwrap_or("")),
                "seq": cp["seq"],
                "timestamp": cp["time"],
                "labels": labels(log),
                "checkpoint": cp,
            })
        })
        .collect()
}

fn labels(log: &Path) -> Value {
    json!({"app": "mcp-firewall", "version": env!("CARGO_PKG_VERSION"),
           "log": log.display().to_string()})
}

fn event(log: &Path, record: Value) -> Value {
    json!({
        "type": "record",
        "id": record["hash"],
        "seq": record["seq"],
        "timestamp": record["ts"],
        "event": record["event"],
        "decision_id": record.get("decision_id").cloned().unwrap_or(Value::Null),
        "labels": labels(log),
        "record": record,
    })
}

fn gzip(events: &[Value]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let body = serde_json::to_vec(events).expect("JSON values");
    encoder.write_all(&body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Ship `log` (and its checkpoint file, if any) to the collector until the
/// process ends.
pub async fn run(log: PathBuf, checkpoints: Option<PathBuf>, settings: SinkSettings) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client with static settings");
    let token = settings
        .bearer_env
        .as_deref()
        .and_then(|name| std::env::var(name).ok());
    let position_file = position_path(&log);
    let mut position = load_position(&position_file);
    let mut backoff = Duration::from_secs(1);
    loop {
        let (log_c, from, batch) = (log.clone(), position, settings.batch);
        let cps = checkpoints.clone();
        let read = tokio::task::spawn_blocking(move || {
            let len = std::fs::metadata(&log_c).map(|m| m.len()).unwrap_or(0);
            let batch = next_batch(&log_c, from, batch).map(|(events, next)| {
                if !events.is_empty() {
                    return (events, next);
                }
                // Records all shipped: now the checkpoints that cover them.
                let signed =
                    cps.map_or_else(Vec::new, |c| new_checkpoints(&log_c, &c, from.checkpoint));
                let last = signed
                    .iter()
                    .filter_map(|e| e["checkpoint"]["n"].as_u64())
                    .max();
                let checkpoint = last.unwrap_or(from.checkpoint);
                (signed, Position { checkpoint, ..next })
            });
            (batch, len)
        })
        .await;
        let (events, next, len) = match read {
            Ok((Ok((events, next)), len)) => (events, next, len),
            Ok((Err(e), _)) => {
                tracing::warn!(log = %log.display(), "audit sink cannot read the log: {e}");
                tokio::time::sleep(settings.every).await;
                continue;
            }
            Err(_) => return,
        };
        metrics()
            .sink_lag_bytes
            .set(i64::try_from(len.saturating_sub(position.offset)).unwrap_or(i64::MAX));
        if events.is_empty() {
            tokio::time::sleep(settings.every).await;
            continue;
        }
        let mut request = http
            .post(&settings.url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip(&events));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                metrics().sink_shipped.inc_by(events.len() as u64);
                position = next;
                let (file, at) = (position_file.clone(), position);
                match tokio::task::spawn_blocking(move || store_position(&file, at)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("audit sink cannot store its position: {e}"),
                    Err(_) => return,
                }
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), url = %settings.url, "audit sink: the collector refused a batch; retrying")
            }
            Err(e) => tracing::warn!(url = %settings.url, "audit sink: {e}; retrying"),
        }
        metrics().sink_failures.inc();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_position_and_a_torn_last_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.jsonl");
        let line = |seq: u64| {
            format!("{{\"event\":\"x\",\"hash\":\"h{seq}\",\"seq\":{seq},\"ts\":\"t\"}}\n")
        };
        std::fs::write(
            &log,
            format!("{}{}{}{{\"seq\":4", line(1), line(2), line(3)),
        )
        .unwrap();
        let (events, at) = next_batch(&log, Position::default(), 2).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["id"], "h2");
        assert_eq!(at.seq, 2);
        let (events, at) = next_batch(&log, at, 10).unwrap();
        assert_eq!(events.len(), 1, "the torn line is not shipped yet");
        assert_eq!(at.seq, 3);
        // A position that does not fit the file starts over.
        let after_first = line(1).len() as u64;
        let moved = Position {
            offset: after_first,
            seq: 7,
            checkpoint: 0,
        };
        let (events, _) = next_batch(&log, moved, 10).unwrap();
        assert_eq!(events[0]["seq"], 1);
        let pos = dir.path().join("p");
        store_position(&pos, at).unwrap();
        assert_eq!(load_position(&pos), at);
    }
}
