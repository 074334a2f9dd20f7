//! One test per bug found by the fuzz targets (`tests/fuzz_*.rs`), named
//! after the bug, with the smallest input that showed it. See
//! `docs/fuzzing.md` ("Findings").

use mcp_firewall::approval::signing::{SignatureError, WebhookSecret, sign, verify};

/// tests/fuzz_signing.rs (`other_spellings_of_the_timestamp_are_refused`):
/// `webhook-timestamp: 01614265330` verified against a signature made for
/// `1614265330`, because the MAC was computed over the parsed value, not
/// the header as sent. A leading zero is now `BadTimestamp`, as the
/// module's docs always said.
#[test]
fn webhook_timestamp_with_leading_zero_was_accepted() {
    let secrets = [WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()];
    let (id, ts, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, b"{}");
    let sig = sign(&secrets, id, ts, body);
    let check = |ts_header: &str| verify(&secrets, Some(id), Some(ts_header), Some(&sig), body, ts);
    assert_eq!(check("1614265330"), Ok(()));
    for spelled in ["01614265330", "001614265330"] {
        assert_eq!(
            check(spelled),
            Err(SignatureError::BadTimestamp),
            "{spelled}"
        );
    }
    // The minimal input the fuzzer found: "00" for timestamp 0.
    let sig0 = sign(&secrets, id, 0, body);
    assert_eq!(
        verify(&secrets, Some(id), Some("0"), Some(&sig0), body, 0),
        Ok(())
    );
    assert_eq!(
        verify(&secrets, Some(id), Some("00"), Some(&sig0), body, 0),
        Err(SignatureError::BadTimestamp)
    );
}
