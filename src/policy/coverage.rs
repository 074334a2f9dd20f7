//! Line coverage of policy files, merged over a test run.
//!
//! Job: regorus records, per engine, which lines of each module an evaluation
//! reached. Every test runs on its own engine clone, so each yields its own
//! report; [`merge`] unions them into one [`FileCoverage`] per policy file.
//!
//! Invariants:
//! - A line is covered if any test reached it; it is uncovered only if no
//!   test did (so `covered` and `uncovered` never overlap).
//! - Only policy files are reported, not `*_test.rego` files (whose lines are
//!   the tests themselves).
//! - A policy file no test reached at all is still listed, with no line
//!   numbers and `reached == false`: regorus reports nothing for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use regorus::coverage::Report;

use super::loader::{Kind, SourceFile};

/// Coverage of one policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileCoverage {
    pub file: PathBuf,
    /// Line numbers (1-based) some test evaluated.
    pub covered: BTreeSet<u32>,
    /// Line numbers holding rule code no test evaluated.
    pub uncovered: BTreeSet<u32>,
    /// False when no test evaluated anything in this file.
    pub reached: bool,
}

impl FileCoverage {
    /// Covered share of the lines regorus counts, in percent. `0.0` for a
    /// file no test reached; `100.0` for a file with no countable lines.
    pub fn percent(&self) -> f64 {
        let total = self.covered.len() + self.uncovered.len();
        match (self.reached, total) {
            (false, _) => 0.0,
            (true, 0) => 100.0,
            (true, _) => 100.0 * self.covered.len() as f64 / total as f64,
        }
    }
}

/// One entry per policy (non-test `.rego`) file in `files`, in load order.
pub(crate) fn merge(files: &[SourceFile], reports: &[Report]) -> Vec<FileCoverage> {
    let mut lines: BTreeMap<&str, (BTreeSet<u32>, BTreeSet<u32>)> = BTreeMap::new();
    for file in reports.iter().flat_map(|r| &r.files) {
        let entry = lines.entry(file.path.as_str()).or_default();
        entry.0.extend(&file.covered);
        entry.1.extend(&file.not_covered);
    }
    files
        .iter()
        .filter(|f| f.kind == Kind::Rego && !f.rel.to_string_lossy().ends_with("_test.rego"))
        .map(|f| {
            let label = f.label();
            let (covered, seen) = lines.remove(label.as_str()).unwrap_or_default();
            let reached = !covered.is_empty();
            let uncovered = seen.difference(&covered).copied().collect();
            FileCoverage {
                file: f.path.clone(),
                covered,
                uncovered,
                reached,
            }
        })
        .collect()
}
