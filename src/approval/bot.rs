//! Answers from configured bots, signed with a webhook secret: the signed
//! POST to `/approvals/{id}` and the webhook's own synchronous response.
//!
//! Both carry the three Standard Webhooks headers over a body
//! `{"approval_id", "digest", "decision", "approver", "reason"}`. Checks, in
//! order: signature and freshness, webhook id not seen before (replay), body
//! shape, the body names the approval being answered (a signature replayed
//! on another approval's URL, or a body naming another approval, is
//! refused), then [`Approvals::answer`]: the digest matches the held call,
//! the approver has no registered key, and the store's answering rules.

use chrono::Utc;

use super::proof::{BotAnswer, Proof};
use super::signing::{SignatureError, verify};
use super::store::StoreError;
use super::{AnswerOutcome, Approvals, NewAnswer, Verdict};

/// The raw `webhook-*` header values of a bot answer.
#[derive(Debug, Clone, Copy)]
pub struct SignedBy<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BotAnswerError {
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("replayed webhook-id")]
    Replayed,
    #[error("expected {{approval_id, digest, decision, approver, reason}}: {0}")]
    Body(String),
    #[error("the signed answer is for approval {named:?}, not {answering}")]
    WrongApproval { named: String, answering: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Approvals {
    /// Check and record a bot's answer to approval `id` arriving on `channel`.
    pub fn answer_from_bot(
        &self,
        id: &str,
        signed: SignedBy<'_>,
        body: &[u8],
        channel: &str,
    ) -> Result<AnswerOutcome, BotAnswerError> {
        let result = self.check_bot_answer(id, signed, body, channel);
        if let Err(e) = &result
            && !matches!(e, BotAnswerError::Store(_))
        {
            // Store rejections are audited by `answer`; these never got there.
            self.audit_rejection(id, channel, &e.to_string());
        }
        result
    }

    fn check_bot_answer(
        &self,
        id: &str,
        signed: SignedBy<'_>,
        body: &[u8],
        channel: &str,
    ) -> Result<AnswerOutcome, BotAnswerError> {
        let now = Utc::now();
        verify(
            &self.verifier.secrets,
            signed.id,
            signed.timestamp,
            signed.signature,
            body,
            now.timestamp(),
        )?;
        let webhook_id = signed.id.unwrap_or_default().trim();
        if !self.store.remember_webhook_id(webhook_id, now)? {
            return Err(BotAnswerError::Replayed);
        }
        let parsed: BotAnswer =
            serde_json::from_slice(body).map_err(|e| BotAnswerError::Body(e.to_string()))?;
        if parsed.approval_id != id {
            return Err(BotAnswerError::WrongApproval {
                named: parsed.approval_id,
                answering: id.to_string(),
            });
        }
        let decision = match parsed.decision.as_str() {
            "approve" => Verdict::Approve,
            "deny" => Verdict::Deny,
            other => {
                return Err(BotAnswerError::Body(format!(
                    "decision must be approve or deny, got {other:?}"
                )));
            }
        };
        let proof = Proof::WebhookSecret {
            webhook_id: webhook_id.to_string(),
            timestamp: signed
                .timestamp
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or_default(),
            signature: signed.signature.unwrap_or_default().to_string(),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let answer = NewAnswer {
            approver: parsed.approver,
            decision,
            reason: parsed.reason,
            channel: channel.to_string(),
            proof: Some(proof),
        };
        Ok(self.answer(id, &answer)?)
    }
}
