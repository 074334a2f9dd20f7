//! Links the binaries with packed relative relocations (`DT_RELR`) where the
//! C library they will run on understands them.
//!
//! A position-independent Rust binary carries one 24-byte `.rela.dyn` entry
//! per pointer in its read-only data (vtables, string tables): 1.6 MB for
//! mcp-firewall, which the dynamic loader reads in full at every start, so it
//! is resident in every process. Packed, the same relocations take a few
//! kilobytes. glibc loads packed relocations from 2.36 on, and a binary
//! linked with them refuses to start on an older one, so they are used only
//! when building on (and for) a glibc of at least 2.36; anything else links
//! as before.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native_gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("TARGET") == var("HOST");
    if native_gnu_linux && glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the build machine's glibc (`getconf GNU_LIBC_VERSION`, e.g.
/// `glibc 2.36`) is at least `major.minor`; `false` when it cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
