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
//!
//! Release builds of mcp-firewall also place the functions listed in
//! `link/text-order.txt` (written by `scripts/text_order.py`) first in the
//! binary's code, in that order: those an HTTP firewall's start-up runs,
//! then those of an allowed call. A page fault on code maps the 64 KB
//! around it, so start-up code spread over the whole 19 MB `.text` kept
//! 9.3 MB of it resident in an idle firewall; gathered, 2.7 MB. The list
//! names mangled symbols, which debug builds do not share (it holds those
//! of a release build and of the build `cargo bench` makes), and only
//! linkers that take `--symbol-ordering-file` (LLD, rustc's default linker
//! on x86_64 Linux, and mold) can use it, so the build asks the linker
//! first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The list of functions placed first, relative to the package.
const TEXT_ORDER: &str = "link/text-order.txt";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let native_gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("TARGET") == var("HOST");
    if native_gnu_linux && glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo::rerun-if-changed={TEXT_ORDER}");
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(TEXT_ORDER);
    if var("PROFILE") == "release" && order.is_file() && linker_orders_symbols() {
        let order = order.display();
        println!("cargo::rustc-link-arg-bin=mcp-firewall=-Wl,--symbol-ordering-file={order}");
        // The list outlives some functions (renamed, inlined): not an error.
        println!("cargo::rustc-link-arg-bin=mcp-firewall=-Wl,--no-warn-symbol-ordering");
    }
}

/// The build variable `name`, empty when unset.
fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Whether the linker rustc will use takes `--symbol-ordering-file`: links
/// an empty program with the target, linker and flags of this build.
fn linker_orders_symbols() -> bool {
    let out = PathBuf::from(var("OUT_DIR"));
    let empty = out.join("empty-order.txt");
    if std::fs::write(&empty, "").is_err() {
        return false;
    }
    let mut rustc = Command::new(var("RUSTC"));
    rustc
        .args([
            "--crate-type",
            "bin",
            "--crate-name",
            "order_probe",
            "--target",
        ])
        .arg(var("TARGET"))
        .arg("-o")
        .arg(out.join("order-probe"))
        .arg("-C")
        .arg(format!(
            "link-arg=-Wl,--symbol-ordering-file={}",
            empty.display()
        ));
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        rustc.arg("-C").arg(format!("linker={linker}"));
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    rustc.args(flags.split('\u{1f}').filter(|f| !f.is_empty()));
    let Ok(mut child) = rustc
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let written = child
        .stdin
        .take()
        .is_some_and(|mut stdin| std::io::Write::write_all(&mut stdin, b"fn main() {}").is_ok());
    child.wait().is_ok_and(|status| status.success()) && written
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
