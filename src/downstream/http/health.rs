//! Probes for orchestrators; neither needs a token (they reveal no more
//! than "up" and which configured command is missing).
//!
//! - `/healthz`: 200 while the process serves HTTP (liveness).
//! - `/readyz`: 200 when a new session could start: the policy is loaded
//!   (always true once listening: a policy that does not compile stops
//!   start-up) and every upstream command resolves to an executable file.
//!   Else 503 with `{"status": "not ready", "reasons": [...]}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::App;
use crate::config::UpstreamSpec;
use crate::config::upstream::{ProcessSpec, UpstreamKind};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let reasons = not_ready(&app.shared.config.upstreams);
    if reasons.is_empty() {
        let body =
            json!({"status": "ready", "policy_revision": app.shared.policy.current().revision()});
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        let body = json!({"status": "not ready", "reasons": reasons});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

/// Why an upstream could not be started now, one reason per upstream.
/// Remote (HTTP) upstreams are not probed: reaching them is the session's
/// job, and a probe per readiness check would load the remote server.
pub fn not_ready(upstreams: &[UpstreamSpec]) -> Vec<String> {
    upstreams
        .iter()
        .filter_map(|u| match &u.kind {
            UpstreamKind::Process(p) if resolve(p).is_none() => Some(format!(
                "upstream '{}': command {:?} is not an executable file",
                u.name, p.command
            )),
            _ => None,
        })
        .collect()
}

/// Where the command would be found: a path (relative to the upstream's
/// cwd), or the first executable on `PATH` (the upstream's own if set).
fn resolve(spec: &ProcessSpec) -> Option<PathBuf> {
    let command = Path::new(&spec.command);
    if command.components().count() > 1 {
        let path = match &spec.cwd {
            Some(cwd) if command.is_relative() => cwd.join(command),
            _ => command.to_path_buf(),
        };
        return is_executable(&path).then_some(path);
    }
    let path = spec
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str) -> UpstreamSpec {
        let config = crate::config::Config::wrap(None, vec![command.into()]).unwrap();
        config.upstreams[0].clone()
    }

    #[test]
    fn commands_on_path_or_by_path_are_ready() {
        assert!(not_ready(&[spec("sh"), spec("/bin/sh")]).is_empty());
        let reasons = not_ready(&[spec("no-such-command-xyz"), spec("/etc/passwd")]);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("no-such-command-xyz"));
    }
}
