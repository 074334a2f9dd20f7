//! Live policy reload: watch the policy directory (and listen for SIGHUP),
//! compile the new set off the request path, run its `test_*` rules, and
//! swap it in atomically only if both succeed. Otherwise the last good set
//! keeps deciding. Either way a `policy.reload` audit record names the old
//! and new revisions and the outcome.
//!
//! Watching is a cheap poll of file names, sizes and modification times
//! every [`RELOAD_POLL_INTERVAL`]: no platform file-notification API to go
//! wrong, and a change is picked up well within the 2 s promised to
//! policy authors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::policy::{PolicySet, run_tests};
use crate::proxy::Shared;

/// How often the policy directory is checked for changes.
pub const RELOAD_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied { old: String, new: String },
    Unchanged,
    Rejected { reason: String },
}

/// Watch for changes and SIGHUP until the process ends.
pub async fn watch(shared: Arc<Shared>) {
    let dir = shared.config.policy_dir.clone();
    let mut last = fingerprint(&dir);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let trigger = tokio::select! {
            _ = tokio::time::sleep(RELOAD_POLL_INTERVAL) => "file change",
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
        };
        let now = fingerprint(&dir);
        if trigger == "file change" && now == last {
            continue;
        }
        last = now;
        let shared = shared.clone();
        let outcome = tokio::task::spawn_blocking(move || reload(&shared, trigger)).await;
        if let Err(e) = outcome {
            tracing::error!("policy reload task failed: {e}");
        }
    }
}

/// Try to load, test and swap in the policy directory's current contents.
pub fn reload(shared: &Shared, trigger: &str) -> Outcome {
    let old = shared.policy.current();
    let config = &shared.config;
    let outcome = match candidate(&config.policy_dir, &config.package) {
        Ok(new) if new.revision() == old.revision() => Outcome::Unchanged,
        Ok(new) => {
            let revision = new.revision().to_string();
            shared.policy.replace(new);
            Outcome::Applied {
                old: old.revision().to_string(),
                new: revision,
            }
        }
        Err(reason) => Outcome::Rejected { reason },
    };
    let record = match &outcome {
        Outcome::Unchanged => return outcome,
        Outcome::Applied { old, new } => {
            tracing::info!(%old, %new, trigger, "policy reloaded");
            crate::metrics::metrics().policy(new);
            crate::metrics::metrics()
                .policy_reloads
                .get_or_create(&crate::metrics::Result_ { result: "ok" })
                .inc();
            json!({"outcome": "applied", "trigger": trigger, "old_revision": old, "new_revision": new})
        }
        Outcome::Rejected { reason } => {
            crate::metrics::metrics()
                .policy_reloads
                .get_or_create(&crate::metrics::Result_ { result: "error" })
                .inc();
            tracing::error!(
                trigger,
                "policy reload rejected, keeping {}: {reason}",
                old.revision()
            );
            json!({"outcome": "rejected", "trigger": trigger, "old_revision": old.revision(), "error": reason})
        }
    };
    if let Err(e) = shared.audit.append("policy.reload", record) {
        tracing::error!("audit write failed for a policy reload: {e}");
    }
    outcome
}

/// Load the directory and run its tests; the set is usable only if both pass.
fn candidate(dir: &Path, package: &str) -> Result<PolicySet, String> {
    let set = PolicySet::load_dir(dir, package).map_err(|e| e.to_string())?;
    let outcomes = run_tests(dir).map_err(|e| e.to_string())?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{}.{}", t.package, t.name))
        .collect();
    if failed.is_empty() {
        Ok(set)
    } else {
        Err(format!("policy tests failed: {}", failed.join(", ")))
    }
}

/// Names, sizes and modification times of the files a policy set is made of.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rego" | "json" | "yaml" | "yml")
            ) {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}
