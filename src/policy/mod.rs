//! STUB (replaced by the policy branch)
use std::path::{Path, PathBuf};
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision { Allow, Deny { reasons: Vec<String> }, Approve { reasons: Vec<String>, obligations: Option<serde_json::Value> } }
impl Decision { pub fn label(&self) -> &'static str { match self { Decision::Allow => "allow", Decision::Deny{..} => "deny", Decision::Approve{..} => "approve" } } }
#[derive(Debug, Clone)]
pub struct Verdict { pub decision: Decision, pub hide: bool, pub message: Option<String>, pub default_hold: bool }
#[derive(thiserror::Error, Debug, Clone)]
pub enum PolicyError { #[error("load {path}: {message}")] Load { path: PathBuf, message: String }, #[error("eval: {message}")] Eval { message: String } }
pub struct PolicySet { rev: String }
impl PolicySet {
    pub fn load_dir(_dir: &Path, _package: &str) -> Result<PolicySet, PolicyError> { Ok(PolicySet { rev: "sha256:stub".into() }) }
    pub fn revision(&self) -> &str { &self.rev }
    pub fn package(&self) -> &str { "mcp.firewall" }
    pub fn files(&self) -> &[PathBuf] { &[] }
    pub fn evaluate(&self, _input: &serde_json::Value) -> Result<Verdict, PolicyError> { Ok(Verdict { decision: Decision::Allow, hide: false, message: None, default_hold: false }) }
}
pub mod testing {
    use std::path::{Path, PathBuf}; use std::time::Duration;
    pub struct TestOutcome { pub package: String, pub name: String, pub file: PathBuf, pub passed: bool, pub error: Option<String>, pub prints: Vec<String>, pub duration: Duration }
    pub fn run_tests(_d: &Path) -> Result<Vec<TestOutcome>, super::PolicyError> { Ok(vec![]) }
}
