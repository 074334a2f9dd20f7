//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! server mode, pinned in fixtures/conformance/package.json) against the
//! conformance fixture directly and through the firewall, and against the
//! pinned npm reference server `server-everything` directly and through the
//! firewall as a stdio upstream, a Streamable HTTP upstream and chained
//! (HTTP firewall -> stdio firewall), for every spec version the suite knows
//! (2025-11-25, 2026-07-28). Runs
//! `scripts/conformance.sh` with the binaries cargo just built; it fails if
//! a scenario fails that fixtures/conformance/expected-failures.txt does not
//! list. Needs `npm ci --prefix fixtures/conformance` (scripts/setup.sh does
//! it): a missing install is a failure with that hint, never a silent skip.

use std::{path::Path, process::Command};

#[test]
fn conformance_suite_through_the_firewall() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root
        .join("fixtures/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        suite.is_file(),
        "{} is missing: run `npm ci --prefix fixtures/conformance` (or scripts/setup.sh)",
        suite.display()
    );
    let output = Command::new("bash")
        .arg(root.join("scripts/conformance.sh"))
        .env("FIREWALL_BIN", env!("CARGO_BIN_EXE_mcp-firewall"))
        .env(
            "FIXTURE_BIN",
            env!("CARGO_BIN_EXE_mcp-firewall-conformance-fixture"),
        )
        .output()
        .expect("run scripts/conformance.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "scripts/conformance.sh failed ({}):\n{}",
        output.status,
        stdout
            .lines()
            .filter(|line| line.starts_with("UNEXPECTED") || line.starts_with("conformance:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for run in [
        "fixture 2025-11-25: direct",
        "fixture 2026-07-28: direct",
        "everything 2025-11-25: direct",
        "everything 2026-07-28: direct",
    ] {
        assert!(stdout.contains(run), "the table lacks `{run}`:\n{stdout}");
    }
    for path in [
        "through firewall-stdio",
        "through firewall-http",
        "through chained",
    ] {
        assert!(stdout.contains(path), "the table lacks `{path}`:\n{stdout}");
    }
}
