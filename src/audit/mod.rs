//! STUB (replaced by the audit branch)
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode { Always, Never }
pub struct AuditLog { path: PathBuf, inner: std::sync::Mutex<(std::fs::File, u64)> }
pub struct AuditReceipt { pub seq: u64, pub hash: String }
#[derive(thiserror::Error, Debug)]
pub enum AuditError { #[error("write failed {path}: {source}")] WriteFailed { path: PathBuf, source: std::io::Error } }
impl AuditLog {
    pub fn open(path: &Path, _f: FsyncMode) -> Result<AuditLog, AuditError> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|source| AuditError::WriteFailed{path: path.into(), source})?;
        Ok(AuditLog { path: path.into(), inner: std::sync::Mutex::new((f, 1)) })
    }
    pub fn append(&self, event: &str, mut body: serde_json::Value) -> Result<AuditReceipt, AuditError> {
        use std::io::Write;
        let mut g = self.inner.lock().unwrap();
        body["event"] = event.into(); body["seq"] = g.1.into();
        let line = format!("{body}\n");
        g.0.write_all(line.as_bytes()).map_err(|source| AuditError::WriteFailed{path: self.path.clone(), source})?;
        g.1 += 1;
        Ok(AuditReceipt { seq: g.1 - 1, hash: String::new() })
    }
    pub fn path(&self) -> &Path { &self.path }
}
pub struct MaskRules(Vec<String>);
impl MaskRules { pub fn new(f: impl IntoIterator<Item = String>) -> Self { MaskRules(f.into_iter().collect()) } pub fn default_rules() -> Self { MaskRules(vec![]) } pub fn default_field_names() -> Vec<String> { vec![] } }
pub fn mask(v: &serde_json::Value, _r: &MaskRules) -> serde_json::Value { v.clone() }
pub fn canonical_json(v: &serde_json::Value) -> String { v.to_string() }
pub fn sha256_tagged(b: &[u8]) -> String { format!("sha256:{}", b.len()) }
pub struct VerifySummary { pub records: u64, pub head: String }
#[derive(Debug)] pub struct VerifyError { pub line: u64, pub seq: Option<u64>, pub reason: String }
impl std::fmt::Display for VerifyError { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { write!(f, "line {}: {}", self.line, self.reason) } }
pub fn verify_file(_p: &Path) -> Result<VerifySummary, VerifyError> { Ok(VerifySummary{records:0, head: String::new()}) }
