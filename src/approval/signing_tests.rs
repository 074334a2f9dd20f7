//! Tests for `signing`: known-answer vectors computed by independent
//! implementations, rotation, and one refusal per way a signature can be wrong.

use super::*;

// Known answer 1: the Standard Webhooks specification's published vector,
// reproduced independently with Python's `hmac` + `base64`:
//   key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//   base64.b64encode(hmac.new(key, b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}',
//                             hashlib.sha256).digest())
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// Known answer 2: our own 32-byte key, computed the same way in Python:
//   key = b"mcp-firewall approval test key!!"
//   hmac.new(key, b'apr_0001.1795000000.{"a":1}', hashlib.sha256)
const OWN_SECRET: &str = "whsec_bWNwLWZpcmV3YWxsIGFwcHJvdmFsIHRlc3Qga2V5ISE=";
const OWN_ID: &str = "apr_0001";
const OWN_TS: i64 = 1_795_000_000;
const OWN_BODY: &[u8] = br#"{"a":1}"#;
const OWN_SIG: &str = "v1,xr3ehvib5LQtmqPwWdK3GjVZG/iNLGqxjS8PuqgxsIc=";

fn secret(s: &str) -> WebhookSecret {
    WebhookSecret::parse(s).unwrap()
}

fn spec() -> Vec<WebhookSecret> {
    vec![secret(SPEC_SECRET)]
}

/// Verifies against the spec vector's id/timestamp/body with `sig`, at the
/// signing time.
fn check_spec_sig(sig: &str) -> Result<(), SignatureError> {
    verify(
        &spec(),
        Some(SPEC_ID),
        Some(&SPEC_TS.to_string()),
        Some(sig),
        SPEC_BODY,
        SPEC_TS,
    )
}

fn spec_tag_b64() -> &'static str {
    SPEC_SIG.strip_prefix("v1,").unwrap()
}

#[test]
fn spec_known_answer_signs_and_verifies() {
    assert_eq!(sign(&spec(), SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    assert_eq!(check_spec_sig(SPEC_SIG), Ok(()));
}

#[test]
fn own_known_answer_signs_and_verifies() {
    let secrets = vec![secret(OWN_SECRET)];
    assert_eq!(sign(&secrets, OWN_ID, OWN_TS, OWN_BODY), OWN_SIG);
    let ts = OWN_TS.to_string();
    assert_eq!(
        verify(
            &secrets,
            Some(OWN_ID),
            Some(&ts),
            Some(OWN_SIG),
            OWN_BODY,
            OWN_TS
        ),
        Ok(())
    );
}

#[test]
fn signed_headers_carry_the_signature() {
    let h = SignedHeaders::new(&spec(), SPEC_ID, SPEC_TS, SPEC_BODY);
    assert_eq!(
        h,
        SignedHeaders {
            id: SPEC_ID.into(),
            timestamp: SPEC_TS,
            signature: SPEC_SIG.into()
        }
    );
}

#[test]
fn rotation_signs_with_every_secret_and_either_verifies() {
    let both = vec![secret(SPEC_SECRET), secret(OWN_SECRET)];
    let header = sign(&both, SPEC_ID, SPEC_TS, SPEC_BODY);
    let entries: Vec<&str> = header.split(' ').collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], SPEC_SIG);
    assert!(entries[1].starts_with("v1,") && entries[1] != SPEC_SIG);

    let ts = SPEC_TS.to_string();
    for only in [secret(SPEC_SECRET), secret(OWN_SECRET)] {
        let r = verify(
            &[only],
            Some(SPEC_ID),
            Some(&ts),
            Some(&header),
            SPEC_BODY,
            SPEC_TS,
        );
        assert_eq!(r, Ok(()));
    }
    // A receiver holding both accepts a sender that signs with either.
    assert_eq!(
        verify(
            &both,
            Some(SPEC_ID),
            Some(&ts),
            Some(SPEC_SIG),
            SPEC_BODY,
            SPEC_TS
        ),
        Ok(())
    );
}

#[test]
fn a_rotated_out_secret_is_refused() {
    let old = secret(SPEC_SECRET);
    let new = WebhookSecret::generate();
    let header = sign(&[old], SPEC_ID, SPEC_TS, SPEC_BODY);
    let ts = SPEC_TS.to_string();
    let r = verify(
        &[new],
        Some(SPEC_ID),
        Some(&ts),
        Some(&header),
        SPEC_BODY,
        SPEC_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
}

#[test]
fn wrong_secret_is_refused() {
    let wrong = vec![secret(OWN_SECRET)];
    let ts = SPEC_TS.to_string();
    let r = verify(
        &wrong,
        Some(SPEC_ID),
        Some(&ts),
        Some(SPEC_SIG),
        SPEC_BODY,
        SPEC_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
}

#[test]
fn no_secrets_verify_nothing() {
    let ts = SPEC_TS.to_string();
    let r = verify(
        &[],
        Some(SPEC_ID),
        Some(&ts),
        Some(SPEC_SIG),
        SPEC_BODY,
        SPEC_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
}

#[test]
fn empty_signature_is_refused() {
    // The regression that once got through a zip-based comparison.
    assert_eq!(
        check_spec_sig("v1,"),
        Err(SignatureError::NoMatchingSignature)
    );
    assert_eq!(
        check_spec_sig("v1, v1,"),
        Err(SignatureError::NoMatchingSignature)
    );
}

#[test]
fn truncated_signature_is_refused() {
    let tag = STANDARD.decode(spec_tag_b64()).unwrap();
    for len in [1, 16, 31] {
        let sig = format!("v1,{}", STANDARD.encode(&tag[..len]));
        assert_eq!(
            check_spec_sig(&sig),
            Err(SignatureError::NoMatchingSignature),
            "{len} bytes"
        );
    }
}

#[test]
fn extended_signature_is_refused() {
    let mut tag = STANDARD.decode(spec_tag_b64()).unwrap();
    tag.extend_from_slice(b"\0extra");
    let sig = format!("v1,{}", STANDARD.encode(&tag));
    assert_eq!(
        check_spec_sig(&sig),
        Err(SignatureError::NoMatchingSignature)
    );
}

#[test]
fn other_versions_are_ignored_even_with_a_correct_mac() {
    for version in ["v2", "v1a", "V1", "v0", ""] {
        let sig = format!("{version},{}", spec_tag_b64());
        assert_eq!(
            check_spec_sig(&sig),
            Err(SignatureError::NoMatchingSignature),
            "{version:?}"
        );
    }
    // ...but a valid v1 entry next to them still counts.
    let mixed = format!("v2,{} {SPEC_SIG}", spec_tag_b64());
    assert_eq!(check_spec_sig(&mixed), Ok(()));
}

#[test]
fn garbage_base64_is_refused() {
    for sig in [
        "v1,!!!not-base64!!!",
        "v1,g0hM9SsE",
        "v1",
        "garbage",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
    ] {
        assert_eq!(
            check_spec_sig(sig),
            Err(SignatureError::NoMatchingSignature),
            "{sig:?}"
        );
    }
}

#[test]
fn timestamp_window_is_300_seconds_either_way() {
    let header = |ts: i64| sign(&spec(), SPEC_ID, ts, SPEC_BODY);
    let at = |ts: i64, now: i64| {
        verify(
            &spec(),
            Some(SPEC_ID),
            Some(&ts.to_string()),
            Some(&header(ts)),
            SPEC_BODY,
            now,
        )
    };
    assert_eq!(at(SPEC_TS, SPEC_TS + 300), Ok(()));
    assert_eq!(at(SPEC_TS, SPEC_TS - 300), Ok(()));
    assert_eq!(
        at(SPEC_TS, SPEC_TS + 301),
        Err(SignatureError::TimestampTooOld)
    );
    assert_eq!(
        at(SPEC_TS, SPEC_TS - 301),
        Err(SignatureError::TimestampTooNew)
    );
}

#[test]
fn re_serialised_body_is_refused() {
    let secrets = vec![secret(OWN_SECRET)];
    let ts = OWN_TS.to_string();
    let spaced = br#"{"a": 1}"#;
    let r = verify(
        &secrets,
        Some(OWN_ID),
        Some(&ts),
        Some(OWN_SIG),
        spaced,
        OWN_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
}

#[test]
fn a_different_id_or_timestamp_is_refused() {
    let ts = SPEC_TS.to_string();
    let r = verify(
        &spec(),
        Some("msg_other"),
        Some(&ts),
        Some(SPEC_SIG),
        SPEC_BODY,
        SPEC_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
    let ts1 = (SPEC_TS + 1).to_string();
    let r = verify(
        &spec(),
        Some(SPEC_ID),
        Some(&ts1),
        Some(SPEC_SIG),
        SPEC_BODY,
        SPEC_TS,
    );
    assert_eq!(r, Err(SignatureError::NoMatchingSignature));
}

#[test]
fn each_missing_header_is_named() {
    let ts = SPEC_TS.to_string();
    let (id, t, s) = (Some(SPEC_ID), Some(ts.as_str()), Some(SPEC_SIG));
    let v = |id, t, s| verify(&spec(), id, t, s, SPEC_BODY, SPEC_TS);
    assert_eq!(v(None, t, s), Err(SignatureError::MissingHeader(HEADER_ID)));
    assert_eq!(
        v(id, None, s),
        Err(SignatureError::MissingHeader(HEADER_TIMESTAMP))
    );
    assert_eq!(
        v(id, t, None),
        Err(SignatureError::MissingHeader(HEADER_SIGNATURE))
    );
    assert_eq!(
        v(Some(""), t, s),
        Err(SignatureError::MissingHeader(HEADER_ID))
    );
    assert_eq!(
        v(id, Some(" "), s),
        Err(SignatureError::MissingHeader(HEADER_TIMESTAMP))
    );
    assert_eq!(
        v(id, t, Some("")),
        Err(SignatureError::MissingHeader(HEADER_SIGNATURE))
    );
}

#[test]
fn non_numeric_timestamp_is_refused() {
    for ts in [
        "abc",
        "1614265330.5",
        "+1614265330",
        "-1",
        "1e9",
        "99999999999999999999",
    ] {
        let r = verify(
            &spec(),
            Some(SPEC_ID),
            Some(ts),
            Some(SPEC_SIG),
            SPEC_BODY,
            SPEC_TS,
        );
        assert_eq!(r, Err(SignatureError::BadTimestamp), "{ts:?}");
    }
}

#[test]
fn secret_parsing_refuses_bad_input() {
    let bad = |s: &str| matches!(WebhookSecret::parse(s), Err(SignatureError::BadSecret(_)));
    assert!(bad("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "missing prefix");
    assert!(bad("whsec_"), "empty key");
    assert!(bad("whsec_!!!!"), "bad base64");
    assert!(bad("whsec_c2hvcnQ="), "too short");
    assert!(
        bad("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "prefix is case-sensitive"
    );
}

#[test]
fn secrets_round_trip_and_generate_distinct_keys() {
    assert_eq!(secret(SPEC_SECRET).to_whsec(), SPEC_SECRET);
    assert_eq!(secret(&format!(" {OWN_SECRET}\n")).to_whsec(), OWN_SECRET);
    let (a, b) = (WebhookSecret::generate(), WebhookSecret::generate());
    assert_eq!(secret(&a.to_whsec()).to_whsec(), a.to_whsec());
    assert_eq!(
        STANDARD
            .decode(&a.to_whsec()[SECRET_PREFIX.len()..])
            .unwrap()
            .len(),
        32
    );
    assert_ne!(a.to_whsec(), b.to_whsec());
}

#[test]
fn debug_does_not_print_the_key() {
    let s = secret(SPEC_SECRET);
    let shown = format!("{s:?} {s:#?}");
    assert!(
        !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{shown}"
    );
    let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(!shown.contains(&format!("{key:?}")), "{shown}");
    assert!(shown.contains("redacted"));
}
