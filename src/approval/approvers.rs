//! Approvers who prove who they are with a key: the registry (an OpenSSH
//! `allowed_signers` file), the exact message an answer signs, and signing
//! and verifying it.
//!
//! # The signed message
//!
//! An answer signs the canonical JSON (keys sorted, no whitespace, as the
//! audit log canonicalises) of
//!
//! ```json
//! {"approval_id":"apr_…","approver":"bob","decision":"approve",
//!  "digest":"sha256:…","reason":"looks fine","timestamp":1795000000,
//!  "type":"mcp-firewall.approval-answer.v1"}
//! ```
//!
//! as an SSHSIG signature (OpenSSH `PROTOCOL.sshsig`) in the namespace
//! [`NAMESPACE`], so `ssh-keygen -Y sign -n mcp-firewall-approval -f KEY
//! message.json` produces an equally valid signature. The approval id and the
//! call digest are inside, so a signature answers one approval of one call and
//! nothing else; the approver name is inside, so a key answers only for the
//! names the registry gives it.
//!
//! # Invariants
//!
//! - Names in the registry are canonical [`Identity`]s; a line with a name
//!   that is not (mixed scripts, controls) refuses the whole file.
//! - Only Ed25519 keys, and no wildcard principals, `cert-authority` or
//!   unknown options: a registry that might mean more than it says is refused.
//! - A key whose `namespaces=` option excludes [`NAMESPACE`] cannot answer.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::audit::canonical_json;
use crate::identity::{Identity, IdentityError};

/// The SSHSIG namespace of approval answers.
pub const NAMESPACE: &str = "mcp-firewall-approval";
/// The `type` inside every signed answer message.
pub const MESSAGE_TYPE: &str = "mcp-firewall.approval-answer.v1";
/// How far a signed answer's timestamp may be ahead of our clock.
pub const MAX_FUTURE_SKEW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Why a key-signed answer does not count.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyProofError {
    #[error("no key is registered for approver {0:?}")]
    UnknownApprover(String),
    #[error("the signature is not a valid SSH signature: {0}")]
    Malformed(String),
    #[error("the signing key {0} is not registered for approver {1:?}")]
    WrongKey(String, String),
    #[error("the signature does not verify for this approval, call, decision and reason")]
    BadSignature,
    #[error("the signature's timestamp is in the future")]
    FromTheFuture,
}

/// The message an answer signs; see the module docs.
pub struct AnswerMessage<'a> {
    pub approval_id: &'a str,
    pub digest: &'a str,
    pub approver: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub timestamp: i64,
}

impl AnswerMessage<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(&json!({
            "type": MESSAGE_TYPE,
            "approval_id": self.approval_id,
            "digest": self.digest,
            "approver": self.approver,
            "decision": self.decision,
            "reason": self.reason,
            "timestamp": self.timestamp,
        }))
        .into_bytes()
    }
}

/// One registered key.
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    pub key: PublicKey,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Approvers and their keys, from an `allowed_signers` file.
#[derive(Debug, Clone, Default)]
pub struct ApproverRegistry {
    /// By [`Identity::key`].
    keys: BTreeMap<String, (Identity, Vec<RegisteredKey>)>,
}

impl ApproverRegistry {
    pub fn load(path: &Path) -> Result<ApproverRegistry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ApproverRegistry::parse(&text).map_err(|(line, message)| RegistryError::Line {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    /// Parses `allowed_signers` text; errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<ApproverRegistry, (usize, String)> {
        let mut registry = ApproverRegistry::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (names, key) = parse_line(line).map_err(|m| (n + 1, m))?;
            for name in names {
                registry
                    .keys
                    .entry(name.key().to_string())
                    .or_insert_with(|| (name.clone(), Vec::new()))
                    .1
                    .push(key.clone());
            }
        }
        Ok(registry)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds every key of `other` (the directory's keys beside the file's).
    pub fn extend(&mut self, other: ApproverRegistry) {
        for (key, (name, keys)) in other.keys {
            let slot = self
                .keys
                .entry(key)
                .or_insert_with(|| (name.clone(), Vec::new()));
            for k in keys {
                if !slot.1.iter().any(|have| have.fingerprint == k.fingerprint) {
                    slot.1.push(k);
                }
            }
        }
    }

    /// Whether `name` has at least one key (and so must answer with it).
    pub fn has_keys(&self, name: &Identity) -> bool {
        self.keys.contains_key(name.key())
    }

    /// Every (name, fingerprint, public key line) pair, for the store's copy.
    pub fn entries(&self) -> Vec<(String, String, String)> {
        self.keys
            .values()
            .flat_map(|(id, keys)| {
                keys.iter().map(move |k| {
                    let line = k.key.to_openssh().unwrap_or_default();
                    (id.as_str().to_string(), k.fingerprint.clone(), line)
                })
            })
            .collect()
    }

    /// Check a PEM SSHSIG over `message` by `approver`; the fingerprint of
    /// the key that made it on success.
    pub fn verify(
        &self,
        approver: &Identity,
        message: &AnswerMessage<'_>,
        signature_pem: &str,
        now: i64,
    ) -> Result<String, KeyProofError> {
        self.verify_bytes(
            approver,
            &message.to_bytes(),
            message.timestamp,
            signature_pem,
            now,
        )
    }

    /// [`Self::verify`] for any signed message (`timestamp` is the one inside it).
    pub fn verify_bytes(
        &self,
        approver: &Identity,
        message: &[u8],
        timestamp: i64,
        signature_pem: &str,
        now: i64,
    ) -> Result<String, KeyProofError> {
        let (_, keys) = self
            .keys
            .get(approver.key())
            .ok_or_else(|| KeyProofError::UnknownApprover(approver.to_string()))?;
        let signature =
            SshSig::from_pem(signature_pem).map_err(|e| KeyProofError::Malformed(e.to_string()))?;
        let key = keys
            .iter()
            .find(|k| k.key.key_data() == signature.public_key())
            .ok_or_else(|| {
                let fp = PublicKey::from(signature.public_key().clone())
                    .fingerprint(HashAlg::Sha256)
                    .to_string();
                KeyProofError::WrongKey(fp, approver.to_string())
            })?;
        key.key
            .verify(NAMESPACE, message, &signature)
            .map_err(|_| KeyProofError::BadSignature)?;
        if timestamp > now + MAX_FUTURE_SKEW_SECS {
            return Err(KeyProofError::FromTheFuture);
        }
        Ok(key.fingerprint.clone())
    }
}

/// Sign `message` with an unencrypted OpenSSH Ed25519 private key file.
pub fn sign_with_key_file(path: &Path, message: &AnswerMessage<'_>) -> Result<String, String> {
    sign_bytes_with_key_file(path, &message.to_bytes())
}

/// [`sign_with_key_file`] for any message.
pub fn sign_bytes_with_key_file(path: &Path, message: &[u8]) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = PrivateKey::from_openssh(&text)
        .map_err(|e| format!("{}: not an OpenSSH private key: {e}", path.display()))?;
    if key.is_encrypted() {
        return Err(format!(
            "{}: the key is passphrase-protected; sign the message with `ssh-keygen -Y sign` \
             and pass --signature instead (docs/approvals.md)",
            path.display()
        ));
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "{}: only Ed25519 keys are accepted",
            path.display()
        ));
    }
    let signature = key
        .sign(NAMESPACE, HashAlg::Sha512, message)
        .map_err(|e| e.to_string())?;
    signature.to_pem(LineEnding::LF).map_err(|e| e.to_string())
}

/// `principals [options] keytype base64 [comment]`.
fn parse_line(line: &str) -> Result<(Vec<Identity>, RegisteredKey), String> {
    let tokens = tokenize(line)?;
    let mut rest = tokens.iter().map(String::as_str);
    let principals = rest.next().ok_or("missing principals")?;
    let mut next = rest.next().ok_or("missing key")?;
    if !next.starts_with("ssh-") && !next.starts_with("ecdsa-") && !next.starts_with("sk-") {
        check_options(next)?;
        next = rest.next().ok_or("missing key")?;
    }
    let blob = rest.next().ok_or("missing key data")?;
    let key = PublicKey::from_openssh(&format!("{next} {blob}"))
        .map_err(|e| format!("bad public key: {e}"))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "only ssh-ed25519 keys are accepted, not {}",
            key.algorithm()
        ));
    }
    let names = principals
        .split(',')
        .map(|p| {
            if p.contains(['*', '?', '!']) {
                return Err(format!("wildcard principal {p:?} is not supported"));
            }
            Identity::parse(p).map_err(|e: IdentityError| format!("principal {p:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    Ok((names, RegisteredKey { key, fingerprint }))
}

/// Options: only `namespaces="…"` (which must include ours) is understood.
fn check_options(options: &str) -> Result<(), String> {
    let Some(value) = options
        .strip_prefix("namespaces=")
        .or_else(|| options.strip_prefix("NAMESPACES="))
    else {
        return Err(format!("unsupported option {options:?}"));
    };
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| format!("unsupported option {options:?}"))?;
    if value.split(',').any(|n| n == NAMESPACE) {
        Ok(())
    } else {
        Err(format!("namespaces={value:?} does not include {NAMESPACE}"))
    }
}

/// Whitespace-separated tokens; double quotes group (and are kept inside an
/// option token, as in `namespaces="a,b"`, but dropped around principals).
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if current.contains('=') {
                    current.push(c);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

#[cfg(test)]
#[path = "approvers_tests.rs"]
mod tests;
