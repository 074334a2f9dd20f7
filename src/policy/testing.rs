//! A minimal `opa test`: runs the `test_*` rules of a policy directory.
//!
//! Job: load every `.rego` file (including `*_test.rego`) and data file under
//! a directory, find each rule whose name starts with `test_` in every
//! package, evaluate it, and report pass/fail with captured `print` output.
//! `with input as ...` / `with data.x as ...` inside tests are handled by
//! regorus's evaluator.
//!
//! How test rules are found: regorus 0.14 exposes no stable rule listing, so
//! we take every identifier in a file's text that starts with `test_` as a
//! candidate (a superset: it includes names in comments, strings and bodies)
//! and keep those regorus confirms are declared rule heads in that file
//! (`Engine::has_declared_rule_rooted_at`). No test is missed; no non-rule is run.
//!
//! Invariants: a test passes only if its rule evaluates to exactly `true`;
//! an undefined, false or non-boolean result, an error or a timeout fails it.
//! Each test runs on its own clone of the loaded engine.
//!
//! Options ([`TestOptions`]): `filter` runs only tests whose
//! `<package>.<name>` contains a substring; `coverage` has regorus record the
//! lines each test evaluated, merged per policy file by [`super::coverage`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regorus::{Engine, Value};

use super::coverage::{self, FileCoverage};
use super::error::PolicyError;
use super::loader::{self, Kind, SourceFile};

/// Longest one test may run. Tests may build bigger inputs than a live
/// request, so this is looser than the decision limit, but still a bound.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Prefix that marks a rule as a test (the `opa test` convention).
const TEST_PREFIX: &str = "test_";

/// The result of one test rule.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// Package of the test, e.g. `mcp.firewall_test`.
    pub package: String,
    /// Rule name, e.g. `test_read_only_tool_allowed`.
    pub name: String,
    /// File that declares the test.
    pub file: PathBuf,
    pub passed: bool,
    /// Evaluation error, or why a defined result was not `true`.
    pub error: Option<String>,
    /// Output of `print` calls made while the test ran.
    pub prints: Vec<String>,
    pub duration: Duration,
}

/// What to run and what to gather.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Run only tests whose `<package>.<name>` contains this substring.
    pub filter: Option<String>,
    /// Gather line coverage of the policy (non-test) files.
    pub coverage: bool,
}

/// The outcome of a whole test run.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// One per test that ran, in file order then source order.
    pub outcomes: Vec<TestOutcome>,
    /// Per policy file, when [`TestOptions::coverage`] was set.
    pub coverage: Option<Vec<FileCoverage>>,
}

/// Runs every `test_*` rule under `dir`, in file order then source order.
pub fn run_tests(dir: &Path) -> Result<Vec<TestOutcome>, PolicyError> {
    run_tests_with(dir, &TestOptions::default()).map(|run| run.outcomes)
}

/// Runs the `test_*` rules under `dir` that `options` selects.
pub fn run_tests_with(dir: &Path, options: &TestOptions) -> Result<TestRun, PolicyError> {
    let files = loader::collect(dir, true)?;
    let mut engine = loader::build_engine(&files, TEST_TIME_LIMIT)?;
    engine.set_enable_coverage(options.coverage);
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| loader::load_err(dir, e))?;
    // Preparing once up front makes compile errors load errors and keeps
    // per-test clones cheap. A query, since there may be no rule to name.
    engine
        .eval_query("true".to_string(), false)
        .map_err(|e| loader::load_err(dir, e))?;
    let mut seen = BTreeSet::new();
    let mut outcomes = Vec::new();
    let mut reports = Vec::new();
    let rego = files.iter().filter(|f| f.kind == Kind::Rego);
    for (file, package) in rego.zip(packages.iter().map(|p| &p.components)) {
        for name in test_rules(&engine, file) {
            let full = format!("{}.{name}", package.join("."));
            let wanted = options.filter.as_ref().is_none_or(|f| full.contains(f));
            if wanted && seen.insert((package.clone(), name.clone())) {
                let (outcome, report) = run_one(&engine, package, name, file);
                outcomes.push(outcome);
                reports.extend(report);
            }
        }
    }
    let coverage = options.coverage.then(|| coverage::merge(&files, &reports));
    Ok(TestRun { outcomes, coverage })
}

/// Names of the `test_*` rules declared in `file`, in source order.
fn test_rules(engine: &Engine, file: &SourceFile) -> Vec<String> {
    let mut names = Vec::new();
    for candidate in identifiers(&file.text).filter(|i| i.starts_with(TEST_PREFIX)) {
        if names.iter().any(|n| n == candidate) {
            continue;
        }
        // An error here means "not a valid rule path", i.e. not a rule.
        let declared = engine.has_declared_rule_rooted_at(&file.label(), candidate);
        if matches!(declared, Ok(true)) {
            names.push(candidate.to_string());
        }
    }
    names
}

/// Every maximal run of identifier characters that starts like an identifier.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

/// Runs one test on a clone of `engine`; also returns the clone's coverage
/// report when coverage is enabled.
fn run_one(
    engine: &Engine,
    package: &[String],
    name: String,
    file: &SourceFile,
) -> (TestOutcome, Option<regorus::coverage::Report>) {
    let mut engine = engine.clone();
    engine.set_gather_prints(true);
    let started = Instant::now();
    let result = engine.eval_rule(rule_path(package, &name));
    let duration = started.elapsed();
    let (passed, error) = match result {
        Ok(Value::Bool(true)) => (true, None),
        Ok(Value::Bool(false)) => (false, None),
        Ok(Value::Undefined) => (
            false,
            Some("undefined: some expression in the test was false or undefined".to_string()),
        ),
        Ok(other) => (false, Some(format!("expected true, got {other}"))),
        Err(e) => (
            false,
            Some(loader::eval_err(e, TEST_TIME_LIMIT).to_string()),
        ),
    };
    let outcome = TestOutcome {
        package: package.join("."),
        name,
        file: file.path.clone(),
        passed,
        error,
        prints: engine.take_prints().unwrap_or_default(),
        duration,
    };
    (outcome, engine.get_coverage_report().ok())
}

/// `data.a.b.test_x`, quoting components that are not plain identifiers.
fn rule_path(package: &[String], name: &str) -> String {
    let mut path = String::from("data");
    for component in package.iter().map(String::as_str).chain([name]) {
        let plain = component.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && component
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            path.push('.');
            path.push_str(component);
        } else {
            let quoted = serde_json::Value::String(component.to_string());
            path.push_str(&format!("[{quoted}]"));
        }
    }
    path
}

#[cfg(test)]
#[path = "testing_tests.rs"]
mod tests;
