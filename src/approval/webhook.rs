//! Delivering an approval request to the configured webhook, signed the
//! Standard Webhooks way, with retries inside the hold's deadline.
//!
//! - One `webhook-id` per message, reused by its retries (receivers
//!   deduplicate on it); a fresh timestamp and signatures per attempt.
//! - Retried: connection errors, timeouts, 5xx and 429 (honouring
//!   `Retry-After` in seconds), with exponential backoff, never past the
//!   deadline. Not retried: other 4xx (the receiver refused the message).
//! - A 200 whose body has a `decision` is a synchronous answer: it counts only
//!   if the response is signed with the webhook secret and names this
//!   approval and call ([`super::bot`]); any other 2xx means "received,
//!   answer later". Webhook URLs are https or loopback http (config check),
//!   so the answer cannot be forged on the wire.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::signing::{WebhookSecret, sign};

/// Longest a single delivery attempt may take; a receiver that needs longer
/// should answer 202 and call back.
pub const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay; doubled each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A `Retry-After` longer than this is capped: the hold has a deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where and how approval requests are sent.
pub struct Webhook {
    pub url: String,
    pub secrets: Vec<WebhookSecret>,
    client: reqwest::Client,
}

/// A 200 response that carries a decision: its signature headers and raw
/// body, checked like any bot answer ([`super::bot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncAnswer {
    pub webhook_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

/// A message that reached the receiver.
#[derive(Debug)]
pub struct Delivered {
    pub webhook_id: String,
    pub attempts: u32,
    pub status: u16,
    /// `Some` when the response carried a decision (not yet verified).
    pub answer: Option<SyncAnswer>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("webhook unreachable after {attempts} attempt(s): {last_error}")]
    Unreachable { attempts: u32, last_error: String },
    #[error("webhook refused the message with HTTP {status}")]
    Refused { status: u16, attempts: u32 },
}

impl DeliveryError {
    pub fn attempts(&self) -> u32 {
        match self {
            DeliveryError::Unreachable { attempts, .. }
            | DeliveryError::Refused { attempts, .. } => *attempts,
        }
    }
}

/// What one attempt led to.
enum Attempt {
    Done(u16, Option<SyncAnswer>),
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Refused(u16),
}

impl Webhook {
    pub fn new(url: String, secrets: Vec<WebhookSecret>) -> Webhook {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client with static settings");
        Webhook {
            url,
            secrets,
            client,
        }
    }

    /// POST `body` until it is accepted, refused, or `deadline` passes.
    pub async fn deliver(
        &self,
        body: &Value,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let bytes = serde_json::to_vec(body).expect("JSON value serializes");
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let wait = match self.attempt(&webhook_id, &bytes, deadline).await {
                Attempt::Done(status, answer) => {
                    return Ok(Delivered {
                        webhook_id,
                        attempts,
                        status,
                        answer,
                    });
                }
                Attempt::Refused(status) => {
                    return Err(DeliveryError::Refused { status, attempts });
                }
                Attempt::Retry { error, after } => {
                    tracing::warn!(url = %self.url, attempts, "webhook delivery failed: {error}");
                    let wait = after.map(|a| a.min(MAX_RETRY_AFTER)).unwrap_or(backoff);
                    if Instant::now() + wait >= deadline {
                        return Err(DeliveryError::Unreachable {
                            attempts,
                            last_error: error,
                        });
                    }
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Best effort, one attempt: tell the receiver a request was withdrawn.
    pub async fn notify(&self, body: &Value) {
        let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let bytes = serde_json::to_vec(body).expect("JSON value serializes");
        let deadline = Instant::now() + WEBHOOK_ATTEMPT_TIMEOUT;
        if let Attempt::Retry { error, .. } = self.attempt(&webhook_id, &bytes, deadline).await {
            tracing::warn!(url = %self.url, "could not notify the webhook: {error}");
        }
    }

    async fn attempt(&self, webhook_id: &str, body: &[u8], deadline: Instant) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&self.secrets, webhook_id, timestamp, body);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(WEBHOOK_ATTEMPT_TIMEOUT);
        let request = self
            .client
            .post(&self.url)
            .timeout(left.max(Duration::from_millis(1)))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: e.to_string(),
                    after: None,
                };
            }
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = retry_after(&response);
            return Attempt::Retry {
                error: format!("HTTP {status}"),
                after,
            };
        }
        if !status.is_success() {
            return Attempt::Refused(status.as_u16());
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (webhook_id, timestamp, signature) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        );
        let body = response.bytes().await.unwrap_or_default().to_vec();
        let answer = carries_answer(status.as_u16(), &body).then_some(SyncAnswer {
            webhook_id,
            timestamp,
            signature,
            body,
        });
        Attempt::Done(status.as_u16(), answer)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a response carries a synchronous answer: a 200 whose body is a
/// JSON object with `decision`. `{}`, an empty body or a body without
/// `decision` means "answer later".
fn carries_answer(status: u16, body: &[u8]) -> bool {
    status == 200
        && serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("decision").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_recognised_only_in_a_200_with_a_decision() {
        let answer = br#"{"decision":"approve","approver":"b","reason":"r"}"#;
        assert!(!carries_answer(202, answer));
        assert!(carries_answer(200, answer));
        assert!(!carries_answer(200, b"{}"));
        assert!(!carries_answer(200, b""));
    }
}
