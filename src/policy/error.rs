//! Every way loading or evaluating a policy can fail.
//!
//! Job: one `thiserror` type the proxy maps to a deny (fail closed). Each
//! variant carries enough text for an operator to fix the policy: the file
//! and line for load errors, the rule and the offending value for bad results.
//!
//! Invariant: no variant means "allow"; a caller that gets any of these must
//! refuse the request.

use std::path::PathBuf;

#[derive(thiserror::Error, Debug, Clone)]
pub enum PolicyError {
    /// IO, parse or compile error. `message` carries regorus's
    /// `--> file:line:col` pointer when the error is inside a file.
    #[error("cannot load policy {}: {message}", path.display())]
    Load { path: PathBuf, message: String },

    /// No loaded `.rego` file declares the configured package.
    #[error("no policy declares package `{package}`")]
    NoPackage { package: String },

    /// regorus reported an error while evaluating (including calls to
    /// builtins regorus does not implement, named in the message).
    #[error("policy evaluation failed: {message}")]
    Eval { message: String },

    /// Evaluation ran past the execution time limit.
    #[error("policy evaluation exceeded its {limit_ms} ms time limit")]
    Timeout { limit_ms: u64 },

    /// A decision rule produced a value of the wrong type.
    #[error("policy rule `{rule}` must be {expected}, got {got}")]
    BadResult {
        rule: String,
        expected: &'static str,
        got: String,
    },
}
