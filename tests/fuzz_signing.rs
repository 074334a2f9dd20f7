//! Fuzz target: webhook signatures (`approval::signing`).
//!
//! Invariants:
//! - `WebhookSecret::parse` and `verify` never panic on any header strings
//!   or body;
//! - for random keys, ids, timestamps and bodies, `verify(sign(..))` is Ok
//!   at any `now` within the tolerance, and Err just outside it;
//! - changing any byte of the body, id, timestamp header or signature header
//!   makes it Err (single secret: one `v1,` entry), and so does any
//!   insertion into or deletion from them, with two exceptions that are
//!   part of the contract: whitespace at either end of a header (HTTP
//!   strips it) and, in the signature header, extra space-separated
//!   entries (rotation);
//! - empty, truncated or extended tags are Err, a verifier holding other
//!   secrets never accepts, and random header strings are never accepted.

mod fuzz_support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fuzz_support::*;
use mcp_firewall::approval::signing::{
    SignatureError, TIMESTAMP_TOLERANCE_SECS, WebhookSecret, sign, verify,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

fn secret_from_key(key: &[u8]) -> WebhookSecret {
    WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode(key))).unwrap()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 24..=64)
}

/// Delivery ids: what we generate (`apr_...`), and any non-empty text
/// without whitespace at the ends (HTTP trims header values).
fn delivery_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "apr_[0-9a-f]{8}",
        "[!-~]{1,40}",
        any_text().prop_filter("non-blank, no outer whitespace", |s| {
            !s.is_empty() && s.trim() == s
        }),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn check(
    secrets: &[WebhookSecret],
    id: &str,
    ts: &str,
    sig: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    verify(secrets, Some(id), Some(ts), Some(sig), body, now)
}

fn ts_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        0i64..=4_102_444_800,
        Just(0i64),
        Just(i64::MAX),
        Just(i64::MAX - TIMESTAMP_TOLERANCE_SECS),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn signed_deliveries_verify_within_tolerance(
        keys in proptest::collection::vec(key(), 1..4),
        id in delivery_id(),
        ts in ts_strategy(),
        body in body(),
        skew in -TIMESTAMP_TOLERANCE_SECS..=TIMESTAMP_TOLERANCE_SECS,
        pick in any::<Index>(),
    ) {
        let secrets: Vec<_> = keys.iter().map(|k| secret_from_key(k)).collect();
        let sig = sign(&secrets, &id, ts, &body);
        let ts_text = ts.to_string();
        let now = ts.saturating_add(skew);
        prop_assert_eq!(check(&secrets, &id, &ts_text, &sig, &body, now), Ok(()));
        // Any one of the current secrets is enough (rotation), and each
        // entry alone verifies with its own secret.
        let one = &secrets[pick.index(secrets.len())];
        prop_assert_eq!(check(std::slice::from_ref(one), &id, &ts_text, &sig, &body, now), Ok(()));
        for (entry, secret) in sig.split(' ').zip(&secrets) {
            prop_assert_eq!(
                check(std::slice::from_ref(secret), &id, &ts_text, entry, &body, now),
                Ok(())
            );
        }
        // Just outside the window either way.
        if let Some(late) = ts.checked_add(TIMESTAMP_TOLERANCE_SECS + 1) {
            prop_assert_eq!(
                check(&secrets, &id, &ts_text, &sig, &body, late),
                Err(SignatureError::TimestampTooOld)
            );
        }
        prop_assert_eq!(
            check(&secrets, &id, &ts_text, &sig, &body, ts - TIMESTAMP_TOLERANCE_SECS - 1),
            Err(SignatureError::TimestampTooNew)
        );
        // No secrets: nothing verifies.
        prop_assert!(check(&[], &id, &ts_text, &sig, &body, now).is_err());
    }

    #[test]
    fn any_change_to_a_signed_delivery_is_refused(
        key in key(),
        id in delivery_id(),
        ts in 0i64..=4_102_444_800,
        body in body(),
        field in 0usize..4,
        edits in proptest::collection::vec(mutation(), 1..4),
    ) {
        let secrets = [secret_from_key(&key)];
        let sig = sign(&secrets, &id, ts, &body);
        let ts_text = ts.to_string();
        let mut fields = [
            id.clone().into_bytes(),
            ts_text.clone().into_bytes(),
            sig.clone().into_bytes(),
            body.clone(),
        ];
        let original = fields[field].clone();
        fields[field] = apply(original.clone(), &edits);
        let target = fields[field].clone();
        let [id_b, ts_b, sig_b, body_b] = fields;
        // Headers are strings: an edit that breaks UTF-8 cannot be a header.
        let (Ok(id2), Ok(ts2), Ok(sig2)) = (
            String::from_utf8(id_b),
            String::from_utf8(ts_b),
            String::from_utf8(sig_b),
        ) else {
            return Ok(());
        };
        let changed = target != original;
        // The allowed differences: outer whitespace of a header (trimmed as
        // HTTP does), and extra entries in the signature list.
        let same_after_trim = field < 3 && {
            let t = String::from_utf8_lossy(&target).trim().to_string();
            t.as_bytes() == original.as_slice()
        };
        let still_has_entry = field == 2 && sig2.trim().split(' ').any(|e| e == sig);
        let result = check(&secrets, &id2, &ts2, &sig2, &body_b, ts);
        if !changed || same_after_trim || still_has_entry {
            prop_assert_eq!(result, Ok(()), "id {:?} ts {:?} sig {:?}", id2, ts2, sig2);
        } else {
            prop_assert!(
                result.is_err(),
                "accepted a changed delivery: field {} id {:?} ts {:?} sig {:?} body {:?} (signed id {:?} ts {} sig {:?} body {:?})",
                field, id2, ts2, sig2, body_b, id, ts, sig, body
            );
        }
    }

    #[test]
    fn other_spellings_of_the_timestamp_are_refused(
        key in key(),
        id in delivery_id(),
        ts in 0i64..=4_102_444_800,
        body in body(),
        prefix in proptest::sample::select(vec!["", "0", "00", "+", "-", "0x", "\u{663}"]),
        suffix in proptest::sample::select(vec!["", "0", ".0", "e0", "\u{0}"]),
    ) {
        // The signed content is "{id}.{timestamp}.{body}" with the header
        // value as sent: only the exact decimal that `sign` wrote verifies.
        let secrets = [secret_from_key(&key)];
        let sig = sign(&secrets, &id, ts, &body);
        let spelled = format!("{prefix}{ts}{suffix}");
        let r = check(&secrets, &id, &spelled, &sig, &body, ts);
        if spelled == ts.to_string() {
            prop_assert_eq!(r, Ok(()));
        } else {
            prop_assert!(r.is_err(), "accepted timestamp {:?} for {}", spelled, ts);
        }
    }

    #[test]
    fn empty_truncated_and_extended_tags_are_refused(
        key in key(),
        id in delivery_id(),
        ts in 0i64..=4_102_444_800,
        body in body(),
        cut in any::<Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let secrets = [secret_from_key(&key)];
        let sig = sign(&secrets, &id, ts, &body);
        let tag = STANDARD.decode(sig.strip_prefix("v1,").unwrap()).unwrap();
        let ts_text = ts.to_string();
        let with_tag = |t: &[u8]| format!("v1,{}", STANDARD.encode(t));
        let truncated = &tag[..cut.index(tag.len())];
        let mut extended = tag.clone();
        extended.extend_from_slice(&extra);
        for bad in [
            "".to_string(),
            "v1,".to_string(),
            "v1".to_string(),
            with_tag(truncated),
            with_tag(&extended),
            sig.replacen("v1,", "v1a,", 1),
            sig.replacen("v1,", "v2,", 1),
            sig.replacen("v1,", "V1,", 1),
            sig.trim_end_matches('=').to_string(),
        ] {
            prop_assert!(
                check(&secrets, &id, &ts_text, &bad, &body, ts).is_err(),
                "accepted {:?}", bad
            );
        }
    }

    #[test]
    fn other_secrets_never_verify(
        key in key(),
        others in proptest::collection::vec(key(), 1..3),
        id in delivery_id(),
        ts in 0i64..=4_102_444_800,
        body in body(),
    ) {
        prop_assume!(!others.contains(&key));
        let sig = sign(&[secret_from_key(&key)], &id, ts, &body);
        let others: Vec<_> = others.iter().map(|k| secret_from_key(k)).collect();
        prop_assert_eq!(
            check(&others, &id, &ts.to_string(), &sig, &body, ts),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn random_headers_never_verify(
        key in key(),
        id in proptest::option::of(any_text()),
        ts in proptest::option::of(prop_oneof![any_text(), "[0-9]{0,25}", "[ +-]?[0-9]{1,12}"]),
        sig in proptest::option::of(prop_oneof![
            any_text(),
            "(v1,[A-Za-z0-9+/=]{0,50} ?){0,3}",
            mutated(vec![b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_vec()], 4)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]),
        body in body(),
        now in any::<i64>(),
    ) {
        let secrets = [secret_from_key(&key)];
        let r = verify(&secrets, id.as_deref(), ts.as_deref(), sig.as_deref(), &body, now);
        prop_assert!(r.is_err(), "accepted random headers");
    }

    #[test]
    fn secret_parsing_never_panics(text in prop_oneof![
        any_text(),
        "whsec_[A-Za-z0-9+/=]{0,90}",
        mutated(vec![b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()], 4)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        if let Ok(secret) = WebhookSecret::parse(&text) {
            // A parsed secret round-trips through its whsec_ form and has
            // at least the minimum key length.
            let again = WebhookSecret::parse(&secret.to_whsec()).unwrap();
            prop_assert_eq!(again.to_whsec(), secret.to_whsec());
            let key = STANDARD.decode(secret.to_whsec().strip_prefix("whsec_").unwrap()).unwrap();
            prop_assert!(key.len() >= 24);
            let shown = format!("{secret:?}");
            prop_assert!(!shown.contains(&secret.to_whsec()[6..]));
        }
    }
}

/// The seed corpus: header triples with their expected outcome.
#[test]
fn signing_corpus_replays() {
    for (name, bytes) in corpus("signing") {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let secrets = [WebhookSecret::parse(v["secret"].as_str().unwrap()).unwrap()];
        let r = verify(
            &secrets,
            v["id"].as_str(),
            v["timestamp"].as_str(),
            v["signature"].as_str(),
            v["body"].as_str().unwrap().as_bytes(),
            v["now"].as_i64().unwrap(),
        );
        assert_eq!(r.is_ok(), v["valid"].as_bool().unwrap(), "{name}: {r:?}");
    }
}
