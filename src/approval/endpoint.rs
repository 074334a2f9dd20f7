//! The firewall's own approval endpoint: `POST /approvals/{id}` with a
//! Standard Webhooks signature over the raw body, for approvers that answer
//! asynchronously (a chat bot, a small web page).
//!
//! Checks, in order, each with its own status: signature and timestamp
//! (401; ±5 minutes), `webhook-id` not seen before (409; replay), body shape
//! (400), body size (413, axum's limit), then the store's rules (404 unknown
//! id, 409 not pending / expired / duplicate approver, 403 self-approval or
//! not an allowed approver). The body is verified as received, never
//! re-serialized.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::service::Approvals;
use super::signing::verify;
use super::store::StoreError;
use super::{AnswerRejection, NewAnswer, Verdict};

/// Largest answer body accepted: an answer is three short strings.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    decision: String,
    approver: String,
    #[serde(default)]
    reason: String,
}

/// Bind the endpoint and serve it in the background; returns the bound
/// address (the port may have been 0).
pub async fn serve(approvals: Arc<Approvals>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "approval endpoint listens beyond loopback; answers are still signature-checked");
    }
    approvals.set_callback_base(format!("http://{bound}"));
    let app = router(approvals);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("approval endpoint stopped: {e}");
        }
    });
    tracing::info!(%bound, "approval endpoint listening");
    Ok(bound)
}

pub fn router(approvals: Arc<Approvals>) -> Router {
    Router::new()
        .route("/approvals/{id}", post(answer))
        .layer(DefaultBodyLimit::max(MAX_ANSWER_BYTES))
        .with_state(approvals)
}

async fn answer(
    State(approvals): State<Arc<Approvals>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = Utc::now();
    if let Err(e) = verify(
        &approvals.secrets,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        now.timestamp(),
    ) {
        tracing::warn!(approval = %id, "refused an unsigned or badly signed answer: {e}");
        return reply(
            StatusCode::UNAUTHORIZED,
            &format!("signature rejected: {e}"),
        );
    }
    let webhook_id = header("webhook-id").unwrap_or_default();
    match approvals.store.remember_webhook_id(webhook_id, now) {
        Ok(true) => {}
        Ok(false) => return reply(StatusCode::CONFLICT, "replayed webhook-id"),
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let body: AnswerBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("expected {{decision, approver, reason}}: {e}"),
            );
        }
    };
    let decision = match body.decision.as_str() {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        other => {
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("decision must be approve or deny, got {other:?}"),
            );
        }
    };
    let answer = NewAnswer {
        approver: body.approver,
        decision,
        reason: body.reason,
        channel: "endpoint".into(),
    };
    match approvals.answer(&id, &answer) {
        Ok(outcome) => (
            StatusCode::OK,
            axum::Json(json!({"status": outcome.status.as_str(), "approvals": outcome.approvals, "quorum": outcome.quorum})),
        )
            .into_response(),
        Err(e) => reply(status_for(&e), &e.to_string()),
    }
}

fn status_for(error: &StoreError) -> StatusCode {
    match error {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::AnswerRejected(
            AnswerRejection::SelfApproval | AnswerRejection::NotAnApprover,
        ) => StatusCode::FORBIDDEN,
        StoreError::AnswerRejected(
            AnswerRejection::MissingReason | AnswerRejection::MissingApprover,
        ) => StatusCode::BAD_REQUEST,
        StoreError::AnswerRejected(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn reply(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({"error": error}))).into_response()
}
