//! The `opa test` replacement, on small trees and on the shipped policies.

use std::path::Path;

use tempfile::TempDir;

use super::run_tests;
use crate::policy::PolicyError;

fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const POLICY: &str = "package app\n\nallow if input.user == data.admin\n";

const TESTS: &str = r#"package app_test

import data.app

# test_in_comment is not a rule
test_admin_allowed if app.allow with input as {"user": "root"}

test_other_denied if not app.allow with input as {"user": "bob"}

test_fails_with_print if {
	print("checking", "bob")
	app.allow with input as {"user": "bob"}
}

test_data_override if app.allow with input as {"user": "x"} with data.admin as "x"

test_not_boolean := 5

test_error if 1 / 0 == 1

helper_test_ := "test_in_string"
"#;

#[test]
fn runs_tests_and_reports_each() {
    let dir = dir_with(&[
        ("app.rego", POLICY),
        ("app_test.rego", TESTS),
        ("d.json", r#"{"admin": "root"}"#),
    ]);
    let outcomes = run_tests(dir.path()).unwrap();
    let summary: Vec<(&str, bool)> = outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.passed))
        .collect();
    assert_eq!(
        summary,
        [
            ("test_admin_allowed", true),
            ("test_other_denied", true),
            ("test_fails_with_print", false),
            ("test_data_override", true),
            ("test_not_boolean", false),
            ("test_error", false),
        ]
    );
    let by_name = |n: &str| outcomes.iter().find(|o| o.name == n).unwrap();
    let failed = by_name("test_fails_with_print");
    assert_eq!(failed.package, "app_test");
    assert!(failed.file.ends_with("app_test.rego"));
    assert_eq!(failed.prints.len(), 1);
    assert!(
        failed.prints[0].contains("checking bob"),
        "{:?}",
        failed.prints
    );
    assert!(
        by_name("test_not_boolean")
            .error
            .as_deref()
            .unwrap()
            .contains('5')
    );
    assert!(
        by_name("test_error")
            .error
            .as_deref()
            .unwrap()
            .contains("divide by zero")
    );
    assert!(by_name("test_admin_allowed").error.is_none());
}

#[test]
fn broken_test_file_is_a_load_error() {
    let dir = dir_with(&[
        ("app.rego", POLICY),
        ("bad_test.rego", "package t\ntest_x if {\n"),
    ]);
    let err = run_tests(dir.path()).unwrap_err();
    assert!(
        matches!(err, PolicyError::Load { .. }) && err.to_string().contains("bad_test.rego"),
        "{err}"
    );
}

#[test]
fn shipped_policies_pass_their_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let outcomes = run_tests(&dir).unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(outcomes.len() >= 15, "only {} tests", outcomes.len());
}

#[test]
fn filter_and_coverage() {
    use super::{TestOptions, run_tests_with};
    let dir = dir_with(&[
        ("app.rego", POLICY),
        ("app_test.rego", TESTS),
        ("d.json", r#"{"admin": "root"}"#),
        ("unused.rego", "package other\n\nx if {\n\tinput.never\n}\n"),
    ]);
    let options = TestOptions {
        filter: Some("admin".to_string()),
        coverage: true,
    };
    let run = run_tests_with(dir.path(), &options).unwrap();
    let names: Vec<&str> = run.outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["test_admin_allowed"]);
    let coverage = run.coverage.unwrap();
    assert_eq!(coverage.len(), 2, "{coverage:?}");
    let app = &coverage[0];
    assert!(app.file.ends_with("app.rego"));
    assert!(app.reached && app.covered.contains(&3), "{app:?}");
    assert_eq!(app.percent(), 100.0);
    let unused = &coverage[1];
    assert!(!unused.reached && unused.percent() == 0.0, "{unused:?}");
}
