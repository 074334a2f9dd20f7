//! What the policy module's tests share: policy directories made on the
//! spot, and the shipped library.

use std::path::Path;

use tempfile::TempDir;

use super::{PolicyError, PolicySet};

/// The decision package every test policy declares.
pub(super) const PKG: &str = "mcp.firewall";

/// A temporary directory holding `files` (names may have subdirectories).
pub(super) fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Loads `files` as a policy directory.
pub(super) fn try_load(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
    let dir = dir_with(files);
    PolicySet::load_dir(dir.path(), PKG)
}

/// Loads `files`, which must load.
pub(super) fn load(files: &[(&str, &str)]) -> PolicySet {
    try_load(files).unwrap()
}

/// The shipped library (`policies/`).
pub(super) fn shipped() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    PolicySet::load_dir(&dir, PKG).unwrap()
}
