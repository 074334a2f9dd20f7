use std::path::PathBuf;

use super::*;

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keys")
        .join(name)
}

fn public(name: &str) -> String {
    std::fs::read_to_string(key_path(&format!("{name}.pub"))).unwrap()
}

fn registry(lines: &str) -> ApproverRegistry {
    ApproverRegistry::parse(lines).unwrap()
}

fn message<'a>(approver: &'a str, decision: &'a str) -> AnswerMessage<'a> {
    AnswerMessage {
        approval_id: "apr_1",
        digest: "sha256:abc",
        approver,
        decision,
        reason: "looks fine",
        timestamp: 1_795_000_000,
    }
}

const NOW: i64 = 1_795_000_010;

#[test]
fn a_registered_key_verifies_its_own_answer_and_nothing_else() {
    let reg = registry(&format!("bob {}", public("bob")));
    let bob = Identity::parse("bob").unwrap();
    let signed = sign_with_key_file(&key_path("bob"), &message("bob", "approve")).unwrap();
    let fp = reg
        .verify(&bob, &message("bob", "approve"), &signed, NOW)
        .unwrap();
    assert!(fp.starts_with("SHA256:"));
    // Same signature, any other field changed: refused.
    assert_eq!(
        reg.verify(&bob, &message("bob", "deny"), &signed, NOW),
        Err(KeyProofError::BadSignature)
    );
    let mut other = message("bob", "approve");
    other.approval_id = "apr_2";
    assert_eq!(
        reg.verify(&bob, &other, &signed, NOW),
        Err(KeyProofError::BadSignature)
    );
}

#[test]
fn a_key_answers_only_for_the_names_it_is_registered_for() {
    let reg = registry(&format!("bob {}\ncarol {}", public("bob"), public("carol")));
    let signed_by_eve = sign_with_key_file(&key_path("eve"), &message("bob", "approve")).unwrap();
    let bob = Identity::parse("bob").unwrap();
    assert!(matches!(
        reg.verify(&bob, &message("bob", "approve"), &signed_by_eve, NOW),
        Err(KeyProofError::WrongKey(..))
    ));
    let signed_by_carol =
        sign_with_key_file(&key_path("carol"), &message("bob", "approve")).unwrap();
    assert!(matches!(
        reg.verify(&bob, &message("bob", "approve"), &signed_by_carol, NOW),
        Err(KeyProofError::WrongKey(..))
    ));
    let mallory = Identity::parse("mallory").unwrap();
    assert!(matches!(
        reg.verify(
            &mallory,
            &message("mallory", "approve"),
            &signed_by_eve,
            NOW
        ),
        Err(KeyProofError::UnknownApprover(_))
    ));
}

#[test]
fn registry_lines_are_parsed_strictly() {
    let bob = public("bob");
    let ok = registry(&format!(
        "# comment\n\nbob,ops@example.com namespaces=\"git,{NAMESPACE}\" {bob}"
    ));
    assert!(ok.has_keys(&Identity::parse("OPS@example.com").unwrap()));
    for bad in [
        format!("* {bob}"),
        format!("bob cert-authority {bob}"),
        format!("bob namespaces=\"git\" {bob}"),
        format!("b\u{043e}b {bob}"),
        "bob ssh-ed25519 notbase64".to_string(),
        "bob".to_string(),
    ] {
        assert!(ApproverRegistry::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn an_encrypted_key_is_refused_with_a_way_forward() {
    let err =
        sign_with_key_file(&key_path("dave_encrypted"), &message("dave", "approve")).unwrap_err();
    assert!(err.contains("ssh-keygen -Y sign"), "{err}");
}

#[test]
fn a_timestamp_from_the_future_is_refused() {
    let reg = registry(&format!("bob {}", public("bob")));
    let mut m = message("bob", "approve");
    m.timestamp = NOW + MAX_FUTURE_SKEW_SECS + 60;
    let signed = sign_with_key_file(&key_path("bob"), &m).unwrap();
    let bob = Identity::parse("bob").unwrap();
    assert_eq!(
        reg.verify(&bob, &m, &signed, NOW),
        Err(KeyProofError::FromTheFuture)
    );
}

/// `ssh-keygen -Y sign -n mcp-firewall-approval` over the same message bytes
/// makes a signature the registry accepts (the documented manual route).
#[test]
fn ssh_keygen_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bob");
    std::fs::copy(key_path("bob"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let msg = dir.path().join("message.json");
    std::fs::write(&msg, message("bob", "approve").to_bytes()).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(&key)
        .arg(&msg)
        .status()
        .expect("ssh-keygen runs (openssh-client is installed by scripts/setup.sh)");
    assert!(status.success());
    let signature = std::fs::read_to_string(dir.path().join("message.json.sig")).unwrap();
    let reg = registry(&format!("bob {}", public("bob")));
    let bob = Identity::parse("bob").unwrap();
    reg.verify(&bob, &message("bob", "approve"), &signature, NOW)
        .unwrap();
}
