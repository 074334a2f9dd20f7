//! The firewall's own approval endpoint: `POST /approvals/{id}` with a
//! Standard Webhooks signature over the raw body, for approvers that answer
//! asynchronously (a chat bot, a small web page).
//!
//! The body is `{"approval_id", "digest", "decision", "approver", "reason"}`
//! ([`super::bot`]). Checks, in order, each with its own status: signature
//! and timestamp (401; ±5 minutes), `webhook-id` not seen before (409;
//! replay), body shape (400), body size (413, axum's limit), the body names
//! this URL's approval (403), then the proof and the store's rules (404
//! unknown id, 403 digest mismatch / approver with a registered key /
//! self-approval / not an allowed approver, 409 not pending / expired /
//! duplicate approver). The body is verified as received, never
//! re-serialized.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::downstream::http::{body, front_door};

use super::AnswerRejection;
use super::bot::{BotAnswerError, SignedBy};
use super::console::oidc::Oidc;
use super::console::{self, Console, Listener};
use super::service::Approvals;
use super::store::StoreError;

/// Largest answer body accepted: an answer is three short strings.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Bind the endpoint and serve it in the background; returns the bound
/// address (the port may have been 0).
pub async fn serve(approvals: Arc<Approvals>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "approval endpoint listens beyond loopback; answers are still signature-checked");
    }
    approvals.set_callback_base(format!("http://{bound}"));
    let console = console_for(&approvals, bound)?;
    let limits = front_door::Limits {
        header_read_timeout: approvals.settings.header_read_timeout,
        max_connections: approvals.settings.max_connections,
        listener: "approvals",
    };
    let app = router(approvals, console);
    front_door::serve_beside(listener, app, limits);
    tracing::info!(%bound, "approval endpoint listening");
    Ok(bound)
}

/// The console, when `[approval.oidc]` is configured.
fn console_for(approvals: &Approvals, bound: SocketAddr) -> std::io::Result<Option<Arc<Console>>> {
    let Some(settings) = approvals.settings.oidc.clone() else {
        return Ok(None);
    };
    let base = approvals
        .settings
        .console_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let secret = match &settings.client_secret_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            std::io::Error::other(format!(
                "[approval.oidc] client_secret_env: {var} is not set"
            ))
        })?),
        None => None,
    };
    let redirect = settings
        .redirect_url
        .clone()
        .unwrap_or_else(|| format!("{base}/oidc/callback"));
    // Secure cookies unless the browser reaches the console over plain
    // http on loopback (where a Secure cookie would never be sent back).
    let secure = base.starts_with("https://") || !bound.ip().is_loopback();
    Ok(Some(Arc::new(Console::new(
        Oidc::new(settings, secret, redirect),
        secure,
    ))))
}

pub fn router(approvals: Arc<Approvals>, console: Option<Arc<Console>>) -> Router {
    let deadline = approvals.settings.header_read_timeout;
    Router::new()
        .route("/approvals/{id}", get(console::approval_page).post(answer))
        .route("/slack/interactions", post(slack_interaction))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(MAX_ANSWER_BYTES))
        // Bodies within the header-read deadline: clients trickling answers
        // could otherwise hold every connection slot, and no approver's or
        // Slack's answer would get in.
        .layer(axum::middleware::from_fn(move |req, next| {
            body::in_time(MAX_ANSWER_BYTES, deadline, req, next)
        }))
        .with_state(Listener { approvals, console })
}

async fn answer(
    State(approvals): State<Arc<Approvals>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedBy {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    match approvals.answer_from_bot(&id, signed, &body, "endpoint") {
        Ok(outcome) => (
            StatusCode::OK,
            axum::Json(json!({"status": outcome.status.as_str(), "approvals": outcome.approvals, "quorum": outcome.quorum})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(approval = %id, "refused an answer: {e}");
            reply(bot_status(&e), &e.to_string())
        }
    }
}

/// `POST /slack/interactions`: a button click, as Slack sends it.
async fn slack_interaction(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let answered = approvals.answer_from_slack(
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
    );
    if let Some((url, message)) = answered.follow_up {
        let approvals = approvals.clone();
        tokio::spawn(async move {
            if let Some(slack) = &approvals.slack {
                slack.respond(&url, &message).await;
            }
        });
    }
    let status = StatusCode::from_u16(answered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answered.error {
        Some(error) => {
            tracing::warn!("Slack interaction: {error}");
            reply(status, &error)
        }
        None => status.into_response(),
    }
}

fn bot_status(error: &BotAnswerError) -> StatusCode {
    match error {
        BotAnswerError::Signature(_) => StatusCode::UNAUTHORIZED,
        BotAnswerError::Replayed => StatusCode::CONFLICT,
        BotAnswerError::Body(_) => StatusCode::BAD_REQUEST,
        BotAnswerError::WrongApproval { .. } => StatusCode::FORBIDDEN,
        BotAnswerError::Store(e) => status_for(e),
    }
}

fn status_for(error: &StoreError) -> StatusCode {
    match error {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::AnswerRejected(
            AnswerRejection::SelfApproval
            | AnswerRejection::NotAnApprover
            | AnswerRejection::BadProof(_)
            | AnswerRejection::Unsigned,
        ) => StatusCode::FORBIDDEN,
        StoreError::AnswerRejected(
            AnswerRejection::MissingReason
            | AnswerRejection::MissingApprover
            | AnswerRejection::BadIdentity(_),
        ) => StatusCode::BAD_REQUEST,
        StoreError::AnswerRejected(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn reply(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({"error": error}))).into_response()
}
