//! How an answer proves who gave it, and the check the firewall runs before
//! an approval releases a call.
//!
//! # Why the firewall checks again
//!
//! The approval store is a file the agent may be able to write (it often runs
//! as the firewall's OS user). So the store's `approved` status and its grant
//! rows are not trusted on their own: before a held call is released, the
//! firewall re-verifies every approving answer's [`Proof`] with what it holds
//! in memory (the approver registry and the webhook secrets it started with),
//! and re-applies the rules with the obligations of the call it is about to
//! release: no self-approval (look-alike names count as the same person),
//! listed approvers only, `quorum` distinct verified approvers. An answer
//! inserted by hand, or edited after it was signed, does not count.
//!
//! # Proofs
//!
//! - [`Proof::SshKey`]: an SSHSIG by a key registered for the approver over
//!   the message of [`super::approvers::AnswerMessage`];
//! - [`Proof::WebhookSecret`]: a Standard Webhooks HMAC, by a configured bot
//!   secret, over a body that names the approval id, the call digest, the
//!   decision, the approver and the reason. A bot cannot answer for an
//!   approver who has a registered key: such a person answers with the key.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::approvers::{AnswerMessage, ApproverRegistry};
use super::directory::ApproverDirectory;
use super::model::AnswerRecord;
use super::signing::{WebhookSecret, verify_signature_only};
use super::slack::{self, SlackSecret};
use super::{ApprovalRecord, Verdict};
use crate::identity::Identity;

/// What an answer carries to prove who gave it. Stored with the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Proof {
    SshKey {
        /// `SHA256:…` of the signing key.
        fingerprint: String,
        /// PEM `-----BEGIN SSH SIGNATURE-----`.
        signature: String,
        /// The timestamp inside the signed message.
        timestamp: i64,
    },
    WebhookSecret {
        webhook_id: String,
        timestamp: i64,
        signature: String,
        /// The signed body, byte for byte (UTF-8).
        body: String,
    },
    /// A Slack interaction request as Slack signed it.
    Slack {
        timestamp: i64,
        /// `v0=<hex>`.
        signature: String,
        /// The raw form body, byte for byte.
        body: String,
    },
    /// An answer given in the console by someone signed in through the
    /// OIDC issuer; tagged with this process's console key.
    Console {
        issuer: String,
        subject: String,
        /// The verified email the directory matched, when it was the email.
        email: Option<String>,
        timestamp: i64,
        /// 0: this call, once; else identical calls for this many seconds
        /// after `timestamp` (within the policy's `max_scope_seconds`).
        #[serde(default)]
        scope_seconds: u64,
        /// Hex HMAC-SHA256 by the process's console key over
        /// [`console_message`].
        tag: String,
    },
}

/// The bytes a console answer's tag covers.
#[allow(clippy::too_many_arguments)]
pub fn console_message(
    id: &str,
    digest: &str,
    approver: &str,
    decision: &str,
    reason: &str,
    issuer: &str,
    subject: &str,
    email: Option<&str>,
    timestamp: i64,
    scope_seconds: u64,
) -> Vec<u8> {
    crate::audit::canonical_json(&serde_json::json!({
        "type": "mcp-firewall.console-answer.v1",
        "approval_id": id, "digest": digest, "approver": approver, "decision": decision,
        "reason": reason.trim(), "issuer": issuer, "subject": subject, "email": email,
        "timestamp": timestamp, "scope_seconds": scope_seconds,
    }))
    .into_bytes()
}

/// The key console answers are tagged with. By default it lives only in
/// this process's memory, so nothing written to the store or readable from
/// the config or environment can forge one, and a console answer releases
/// calls only in the process that took it (after a restart, answer again).
/// Replicas behind one load balancer share one instead
/// ([`CONSOLE_KEY_ENV`], a secret kept from the agent like the webhook
/// secret), so an answer given at one releases the call held at another.
#[derive(Clone)]
pub struct ConsoleKey([u8; 32]);

/// The environment variable holding the console key replicas share.
pub const CONSOLE_KEY_ENV: &str = "MCP_FIREWALL_CONSOLE_KEY";

impl ConsoleKey {
    /// The shared key named by [`CONSOLE_KEY_ENV`] (at least 32
    /// characters), else a new key of this process's own.
    pub fn from_env() -> Result<ConsoleKey, String> {
        match std::env::var(CONSOLE_KEY_ENV) {
            Ok(secret) => ConsoleKey::from_secret(&secret),
            Err(_) => Ok(ConsoleKey::generate()),
        }
    }

    /// The key every replica derives from the same shared secret.
    pub fn from_secret(secret: &str) -> Result<ConsoleKey, String> {
        use sha2::Digest;
        if secret.trim().len() < 32 {
            return Err(format!("{CONSOLE_KEY_ENV} must be at least 32 characters"));
        }
        let digest =
            sha2::Sha256::digest(format!("mcp-firewall console key\n{}", secret.trim()).as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest);
        Ok(ConsoleKey(key))
    }

    pub fn generate() -> ConsoleKey {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        ConsoleKey(key)
    }

    pub fn tag(&self, message: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    fn verifies(&self, message: &[u8], tag: &str) -> bool {
        use hmac::{KeyInit, Mac};
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(message);
        mac.verify_slice(&tag).is_ok()
    }
}

impl Default for ConsoleKey {
    fn default() -> Self {
        ConsoleKey::generate()
    }
}

impl std::fmt::Debug for ConsoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleKey(…)")
    }
}

/// The signed body of a bot answer (endpoint POST or synchronous response).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotAnswer {
    pub approval_id: String,
    pub digest: String,
    pub decision: String,
    pub approver: String,
    #[serde(default)]
    pub reason: String,
}

/// Checks proofs with the keys and secrets this process started with.
#[derive(Debug, Clone, Default)]
pub struct AnswerVerifier {
    pub registry: ApproverRegistry,
    pub secrets: Vec<WebhookSecret>,
    /// `[[approver]]`: who a Slack user or an OIDC identity is.
    pub directory: ApproverDirectory,
    pub slack: Option<SlackSecret>,
    pub console_key: ConsoleKey,
}

/// An approving answer that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedAnswer {
    pub approver: String,
    pub verified_by: String,
    /// The signed scope: `Some(until)` when the approver approved identical
    /// calls until this Unix time, `None` for this call once.
    pub reusable_until: Option<i64>,
    /// The signed scope in seconds (0: this call, once).
    pub scope_seconds: u64,
}

impl Proof {
    /// The signed scope in seconds (0: this call, once). Only console
    /// answers offer a wider scope.
    pub fn scope_seconds(&self) -> u64 {
        match self {
            Proof::Console { scope_seconds, .. } => *scope_seconds,
            _ => 0,
        }
    }

    /// When the proof was made (inside what was signed).
    pub fn timestamp(&self) -> i64 {
        match self {
            Proof::SshKey { timestamp, .. }
            | Proof::WebhookSecret { timestamp, .. }
            | Proof::Slack { timestamp, .. }
            | Proof::Console { timestamp, .. } => *timestamp,
        }
    }
}

/// What a release is checked against: the releasing call's obligations.
pub struct ReleaseRules<'a> {
    pub principal: &'a str,
    /// Who may approve (canonical names); empty: anyone but the principal.
    pub approvers: &'a [String],
    pub quorum: u32,
    /// An answer signed longer ago than this does not count: it bounds how
    /// long a signed answer stays usable if the store's expiry times or
    /// "used" marks are rolled back by someone who can write the file.
    pub max_age_secs: i64,
    pub now: i64,
}

impl AnswerVerifier {
    /// Verify one answer to approval `id` of the call `digest`; on success,
    /// how it was verified (`ssh-key SHA256:…` or `webhook-secret <id>`).
    pub fn verify(
        &self,
        id: &str,
        digest: &str,
        answer: &AnswerRecord,
        now: i64,
    ) -> Result<String, String> {
        let approver = Identity::parse(&answer.approver).map_err(|e| e.to_string())?;
        match &answer.proof {
            None => Err("the answer carries no signature".into()),
            Some(Proof::SshKey {
                fingerprint,
                signature,
                timestamp,
            }) => {
                let message = AnswerMessage {
                    approval_id: id,
                    digest,
                    approver: &answer.approver,
                    decision: answer.decision.as_str(),
                    reason: &answer.reason,
                    timestamp: *timestamp,
                };
                let used = self
                    .registry
                    .verify(&approver, &message, signature, now)
                    .map_err(|e| e.to_string())?;
                if &used != fingerprint {
                    return Err(format!("signed by {used}, recorded as {fingerprint}"));
                }
                Ok(format!("ssh-key {used}"))
            }
            Some(Proof::WebhookSecret {
                webhook_id,
                timestamp,
                signature,
                body,
            }) => {
                if self.registry.has_keys(&approver) || self.directory.vouched(&approver) {
                    return Err(format!(
                        "{approver} has a registered key or identity and must answer with it, not through a bot"
                    ));
                }
                let secret = verify_signature_only(
                    &self.secrets,
                    webhook_id,
                    *timestamp,
                    signature,
                    body.as_bytes(),
                )
                .map_err(|e| e.to_string())?;
                let signed: BotAnswer = serde_json::from_str(body)
                    .map_err(|e| format!("signed body is not an answer: {e}"))?;
                check_binding(&signed, id, digest, answer, &approver)?;
                Ok(format!("webhook-secret {secret}"))
            }
            Some(Proof::Slack {
                timestamp,
                signature,
                body,
            }) => {
                let secret = self
                    .slack
                    .as_ref()
                    .ok_or("no Slack signing secret is configured")?;
                slack::verify_signature_only(secret, *timestamp, signature, body.as_bytes())
                    .map_err(|e| e.to_string())?;
                let click = slack::parse_interaction(body.as_bytes())?;
                if click.approval_id != id || click.digest != digest {
                    return Err("the Slack click is for another approval or call".into());
                }
                if click.decision != Some(answer.decision) || click.reason() != answer.reason.trim()
                {
                    return Err("the recorded answer differs from the Slack click".into());
                }
                match self.directory.by_slack_user(&click.user) {
                    Some(entry) if entry.name.same_person(&approver) => {
                        Ok(format!("slack user {}", click.user))
                    }
                    _ => Err(format!(
                        "Slack user {} is not {approver} in the approver directory",
                        click.user
                    )),
                }
            }
            Some(Proof::Console {
                issuer,
                subject,
                email,
                timestamp,
                scope_seconds,
                tag,
            }) => {
                let message = console_message(
                    id,
                    digest,
                    &answer.approver,
                    answer.decision.as_str(),
                    &answer.reason,
                    issuer,
                    subject,
                    email.as_deref(),
                    *timestamp,
                    *scope_seconds,
                );
                if !self.console_key.verifies(&message, tag) {
                    return Err("the console answer was not given in this firewall process".into());
                }
                match self.directory.by_oidc(subject, email.as_deref()) {
                    Some(entry) if entry.name.same_person(&approver) => {
                        Ok(format!("oidc issuer {issuer}, subject {subject}"))
                    }
                    _ => Err(format!(
                        "OIDC subject {subject} is not {approver} in the approver directory"
                    )),
                }
            }
        }
    }

    /// The approving answers that count towards releasing `record` for a
    /// call by `principal` under these obligations; `Err` says why the
    /// approval does not release the call.
    pub fn verify_release(
        &self,
        record: &ApprovalRecord,
        rules: &ReleaseRules<'_>,
    ) -> Result<Vec<VerifiedAnswer>, String> {
        let (quorum, now) = (rules.quorum, rules.now);
        let principal = Identity::parse(rules.principal).map_err(|e| format!("principal: {e}"))?;
        let listed: Vec<String> = rules
            .approvers
            .iter()
            .filter_map(|a| Identity::parse(a).ok().map(|i| i.key().to_string()))
            .collect();
        let mut counted: Vec<(Identity, VerifiedAnswer)> = Vec::new();
        let mut problems = Vec::new();
        for answer in record
            .answers
            .iter()
            .filter(|a| a.decision == Verdict::Approve)
        {
            let who = match Identity::parse(&answer.approver) {
                Ok(who) => who,
                Err(e) => {
                    problems.push(format!("{:?}: {e}", answer.approver));
                    continue;
                }
            };
            if who.same_person(&principal) {
                problems.push(format!("{who}: the requester cannot approve"));
            } else if !listed.is_empty() && !listed.iter().any(|k| k == who.key()) {
                problems.push(format!("{who}: not an approver for this call"));
            } else if counted.iter().any(|(c, _)| c.same_person(&who)) {
                problems.push(format!("{who}: already counted"));
            } else if answer
                .proof
                .as_ref()
                .is_some_and(|p| now - p.timestamp() > rules.max_age_secs)
            {
                problems.push(format!(
                    "{who}: the signed answer is too old to release a call"
                ));
            } else {
                match self.verify(&record.id, &record.digest, answer, now) {
                    Ok(verified_by) => counted.push((
                        who.clone(),
                        VerifiedAnswer {
                            approver: who.to_string(),
                            verified_by,
                            reusable_until: answer.proof.as_ref().and_then(|p| {
                                let scope = i64::try_from(p.scope_seconds()).ok()?;
                                (scope > 0).then(|| p.timestamp().saturating_add(scope))
                            }),
                            scope_seconds: answer.proof.as_ref().map_or(0, Proof::scope_seconds),
                        },
                    )),
                    Err(e) => problems.push(format!("{who}: {e}")),
                }
            }
        }
        if counted.len() as u64 >= u64::from(quorum) {
            Ok(counted.into_iter().map(|(_, v)| v).collect())
        } else {
            Err(format!(
                "{} of {quorum} required approvals verified{}",
                counted.len(),
                if problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problems.join("; "))
                }
            ))
        }
    }
}

/// The signed body must answer exactly this approval of this call, with
/// the decision, approver and reason recorded.
fn check_binding(
    signed: &BotAnswer,
    id: &str,
    digest: &str,
    answer: &AnswerRecord,
    approver: &Identity,
) -> Result<(), String> {
    if signed.approval_id != id {
        return Err(format!(
            "the signed answer is for approval {:?}, not {id}",
            signed.approval_id
        ));
    }
    if signed.digest != digest {
        return Err("the signed answer is for a different call (digest mismatch)".into());
    }
    let same_approver = Identity::parse(&signed.approver)
        .map(|s| s.key() == approver.key())
        .unwrap_or(false);
    if signed.decision != answer.decision.as_str()
        || !same_approver
        || signed.reason.trim() != answer.reason.trim()
    {
        return Err("the recorded answer differs from the signed one".into());
    }
    Ok(())
}

/// A body value for tests and the fixture bots.
pub fn bot_answer_body(
    id: &str,
    digest: &str,
    decision: &str,
    approver: &str,
    reason: &str,
) -> Value {
    serde_json::json!({"approval_id": id, "digest": digest, "decision": decision,
                       "approver": approver, "reason": reason})
}

#[cfg(test)]
#[path = "proof_tests.rs"]
mod tests;
