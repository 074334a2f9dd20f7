//! The compatibility matrix (docs/compatibility.md): real client SDKs
//! (TypeScript v1 and v2, Python 2.x, pinned in fixtures/compat) run the same
//! operations against the npm reference server `server-everything` directly
//! and through the firewall, over stdio and Streamable HTTP, with the
//! handshake and with auto negotiation. Fails on any difference that
//! fixtures/compat/expected-differences.txt does not explain. Needs
//! scripts/setup.sh: a missing install is a failure with that hint.

use std::{path::Path, process::Command};

#[test]
fn clients_see_the_same_direct_and_through_the_firewall() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts/compat.sh"))
        .env("FIREWALL_BIN", env!("CARGO_BIN_EXE_mcp-firewall"))
        .output()
        .expect("run scripts/compat.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "scripts/compat.sh failed ({}):\n{}",
        output.status,
        stdout
            .lines()
            .filter(|l| l.starts_with("UNEXPECTED") || l.starts_with("compat:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for row in [
        "| python-2 | auto | http |",
        "| ts-v1 | legacy | stdio |",
        "| ts-v2 | auto | http |",
    ] {
        assert!(stdout.contains(row), "the matrix lacks {row}:\n{stdout}");
    }
}
