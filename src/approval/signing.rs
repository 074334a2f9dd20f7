//! Standard Webhooks signatures (<https://www.standardwebhooks.com>) for the
//! approval webhook we send and the signed answers we receive.
//!
//! # Job
//!
//! [`sign`] produces the `webhook-signature` header value for a delivery;
//! [`verify`] checks the three `webhook-*` headers of an incoming request
//! against its raw body bytes. The scheme: the signed content is
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, the tag is HMAC-SHA256 keyed
//! with the secret's bytes, and the header is a space-separated list of
//! `v1,<standard base64 tag>` entries, one per current secret, so a receiver
//! holding either the old or the new secret accepts a delivery made during
//! rotation. Secrets travel as `whsec_<standard base64 key>`.
//!
//! # Invariants
//!
//! - Tags are compared with [`Mac::verify_slice`]: constant time AND
//!   length-checked. An empty, truncated or extended tag never matches (the
//!   Standard Webhooks Rust verifier once accepted an empty signature because a
//!   `zip` comparison ignored the length difference).
//! - Only `v1` entries count; other versions (`v1a`, `v2`, ...) are skipped,
//!   never "upgraded" to v1.
//! - The body is verified byte for byte as received: callers must pass the raw
//!   request body, never a re-serialised JSON value.
//! - The timestamp must be a plain decimal integer within
//!   [`TIMESTAMP_TOLERANCE_SECS`] of `now`, either way; replays inside that
//!   window are the caller's job (the store's `remember_webhook_id`).
//! - No secret, no match: an empty secret list verifies nothing.
//! - A secret's key bytes never appear in `Debug` output.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a webhook timestamp may be from our clock, either way. Bounds the
/// replay window (ids seen inside it are remembered) and tolerates clock skew
/// between the firewall and the approver's service. The value Standard
/// Webhooks recommends.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// The shortest key we accept. Standard Webhooks asks for 24 to 64 random
/// bytes; anything shorter is guessable enough that we refuse to start with it.
pub const MIN_SECRET_BYTES: usize = 24;

/// Key length of [`WebhookSecret::generate`]: 256 bits, the HMAC-SHA256 block
/// strength, comfortably inside the 24..=64 range Standard Webhooks asks for.
const GENERATED_SECRET_BYTES: usize = 32;

/// The prefix that marks a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Header names, as Standard Webhooks spells them.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The only signature version we produce or accept.
const VERSION_V1: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a webhook signature or secret was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum SignatureError {
    #[error("missing or empty {0} header")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a whole number of seconds since 1970")]
    BadTimestamp,
    #[error("webhook-timestamp is more than {TIMESTAMP_TOLERANCE_SECS} s in the past")]
    TimestampTooOld,
    #[error("webhook-timestamp is more than {TIMESTAMP_TOLERANCE_SECS} s in the future")]
    TimestampTooNew,
    #[error("no v1 signature matches any current webhook secret")]
    NoMatchingSignature,
    #[error("bad webhook secret: {0}")]
    BadSecret(String),
}

/// An HMAC key for webhook signatures. `Debug` shows only the key length.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses `whsec_<standard base64>` (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<WebhookSecret, SignatureError> {
        let encoded = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| bad_secret(format!("expected it to start with {SECRET_PREFIX:?}")))?;
        let key = STANDARD.decode(encoded).map_err(|e| {
            bad_secret(format!(
                "the part after {SECRET_PREFIX:?} is not standard base64: {e}"
            ))
        })?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(bad_secret(format!(
                "the key is {} bytes; at least {MIN_SECRET_BYTES} are required",
                key.len()
            )));
        }
        Ok(WebhookSecret { key })
    }

    /// A fresh random secret of 32 bytes, made of two v4 UUIDs. uuid draws
    /// them from the operating system's CSPRNG (getrandom); the 6 fixed
    /// version/variant bits per UUID leave 244 random bits, well above need.
    pub fn generate() -> WebhookSecret {
        let mut key = Vec::with_capacity(GENERATED_SECRET_BYTES);
        while key.len() < GENERATED_SECRET_BYTES {
            key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        WebhookSecret { key }
    }

    /// The `whsec_<base64>` form, for configuration files and approvers.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// A short public name for the secret in audit records: `whsec#` and the
    /// first 8 hex digits of SHA-256 over the key (reveals nothing usable).
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::digest(&self.key);
        format!("whsec#{}", hex::encode(&digest[..4]))
    }

    /// A MAC that has already absorbed `"{id}.{timestamp}."`.
    fn mac_over_prefix(&self, id: &str, timestamp: i64) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac
    }

    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = self.mac_over_prefix(id, timestamp);
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    fn verifies(&self, id: &str, timestamp: i64, body: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac_over_prefix(id, timestamp);
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret(<redacted, {} bytes>)", self.key.len())
    }
}

fn bad_secret(why: String) -> SignatureError {
    SignatureError::BadSecret(why)
}

/// The three header values of one signed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl SignedHeaders {
    /// Signs `body` for delivery `id` at `timestamp` with every secret.
    pub fn new(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
        SignedHeaders {
            id: id.to_owned(),
            timestamp,
            signature: sign(secrets, id, timestamp, body),
        }
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` for every secret,
/// space-separated (during rotation all current secrets sign). Callers must
/// hold at least one secret (config validation guarantees it): with none the
/// result is empty and no receiver will accept the delivery.
pub fn sign(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "{VERSION_V1},{}",
                STANDARD.encode(s.tag(id, timestamp, body))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies raw header values against the raw body bytes at time `now` (Unix
/// seconds). Checks, in order: all three headers present and non-empty, the
/// timestamp a plain decimal integer within ±[`TIMESTAMP_TOLERANCE_SECS`] of
/// `now`, and at least one `v1,<sig>` entry matching any secret.
pub fn verify(
    secrets: &[WebhookSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let id = required(id, HEADER_ID)?;
    let timestamp = parse_timestamp(required(timestamp, HEADER_TIMESTAMP)?)?;
    let signature = required(signature, HEADER_SIGNATURE)?;
    check_freshness(timestamp, now)?;
    verify_signature_only(secrets, id, timestamp, signature, body).map(drop)
}

/// The MAC check of [`verify`] without the freshness check, for answers
/// re-verified after they were accepted (freshness was checked on arrival).
/// Returns the [`WebhookSecret::id`] of the secret that matched.
pub fn verify_signature_only(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> Result<String, SignatureError> {
    for tag in v1_tags(signature) {
        if let Some(s) = secrets
            .iter()
            .find(|s| s.verifies(id, timestamp, body, &tag))
        {
            return Ok(s.id());
        }
    }
    Err(SignatureError::NoMatchingSignature)
}

fn required<'a>(value: Option<&'a str>, header: &'static str) -> Result<&'a str, SignatureError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(SignatureError::MissingHeader(header)),
    }
}

/// Digits only, in canonical form: no sign, no fraction, no exponent, no
/// leading zero. The MAC is computed over the parsed value's canonical
/// decimal, so a non-canonical spelling ("+17", "017") must be refused here:
/// otherwise "017" would verify against a signature made for "17", a header
/// value `sign` never produced (found by tests/fuzz_signing.rs).
fn parse_timestamp(raw: &str) -> Result<i64, SignatureError> {
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let value = raw
        .parse::<i64>()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if value.to_string() != raw {
        return Err(SignatureError::BadTimestamp);
    }
    Ok(value)
}

fn check_freshness(timestamp: i64, now: i64) -> Result<(), SignatureError> {
    let age = now.saturating_sub(timestamp);
    if age > TIMESTAMP_TOLERANCE_SECS {
        Err(SignatureError::TimestampTooOld)
    } else if age < -TIMESTAMP_TOLERANCE_SECS {
        Err(SignatureError::TimestampTooNew)
    } else {
        Ok(())
    }
}

/// The decoded tags of the `v1,` entries; other versions and entries whose
/// base64 does not decode are skipped (they cannot match anyway).
fn v1_tags(header: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION_V1)
        .filter_map(|(_, tag)| STANDARD.decode(tag).ok())
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
