//! Reading a policy directory into a regorus engine.
//!
//! Job: find the `.rego` and data files under a directory (recursively, in a
//! deterministic sorted order), hash them into a revision, and add them to a
//! fresh `regorus::Engine` with the execution time limit set. Shared by the
//! decision engine ([`super::engine`]) and the test runner ([`super::testing`]).
//!
//! Invariants:
//! - Files are ordered by their path relative to the directory, so the same
//!   directory always loads, and hashes, the same way.
//! - Hidden entries (names starting with `.`) are skipped; symlinked
//!   directories are not followed (no loops), symlinked files are read.
//! - Data files (`*.json`, `*.yaml`, `*.yml`) must hold an object at the top
//!   level; it is deep-merged into `data` at the root, whatever the file's
//!   subdirectory. Two files setting the same key to different values is a
//!   load error.
//! - Every failure names the file it came from.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};
use sha2::{Digest, Sha256};

use super::error::PolicyError;

/// How deep we descend into subdirectories. Policy trees are shallow; the
/// bound only stops a pathological tree from making load take forever.
const MAX_DIR_DEPTH: usize = 16;

/// regorus looks at the clock once every this many work units (statements,
/// loop iterations). Small enough that a runaway loop overshoots the limit by
/// well under a millisecond, large enough that reading the clock costs
/// nothing measurable on a normal evaluation.
const TIMER_CHECK_INTERVAL: u32 = 64;

/// Builtins regorus registers but does not implement: they return undefined
/// instead of failing, so `deny if { http.send(req).body.blocked }` would
/// silently never deny. We shadow each with an extension that errors.
const STUB_BUILTINS: [(&str, u8); 1] = [("http.send", 1)];

/// Text in every error for a builtin regorus lacks or we refuse; `engine.rs`
/// looks for it to fail such policies at load.
pub(crate) const UNSUPPORTED_MARKERS: [&str; 2] = [
    "could not find function",
    "is not available in mcp-firewall policies",
];

/// OPA builtin families regorus does not implement at all. A call to one is
/// reported as "could not find function crypto.sha256"; we add a sentence
/// saying the builtin is missing from regorus, not misspelt by the author.
const MISSING_FAMILIES: [&str; 2] = ["crypto.", "io.jwt."];

/// What a file under the policy directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Rego,
    Json,
    Yaml,
}

/// One file read from the policy directory.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Path relative to the policy directory (used for the revision hash).
    pub rel: PathBuf,
    /// Path as given (directory joined with `rel`); shown in error messages.
    pub path: PathBuf,
    pub kind: Kind,
    pub text: String,
}

impl SourceFile {
    /// The name regorus knows this module by (appears in its error pointers).
    pub fn label(&self) -> String {
        self.path.display().to_string()
    }
}

/// Reads every policy and data file under `dir`. `*_test.rego` files are
/// included only when `include_tests` is set.
pub(crate) fn collect(dir: &Path, include_tests: bool) -> Result<Vec<SourceFile>, PolicyError> {
    let mut rels = Vec::new();
    walk(dir, Path::new(""), 0, &mut rels)?;
    rels.sort();
    let mut files = Vec::new();
    for rel in rels {
        let Some(kind) = kind_of(&rel, include_tests) else {
            continue;
        };
        let path = dir.join(&rel);
        let text = std::fs::read_to_string(&path).map_err(|e| load_err(&path, e))?;
        files.push(SourceFile {
            rel,
            path,
            kind,
            text,
        });
    }
    Ok(files)
}

fn walk(root: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let dir = root.join(rel);
    if depth > MAX_DIR_DEPTH {
        return Err(load_err(
            &dir,
            format!("nested deeper than {MAX_DIR_DEPTH} directories"),
        ));
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| load_err(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| load_err(&dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let child = rel.join(&name);
        let file_type = entry
            .file_type()
            .map_err(|e| load_err(&root.join(&child), e))?;
        if file_type.is_dir() {
            walk(root, &child, depth + 1, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

fn kind_of(rel: &Path, include_tests: bool) -> Option<Kind> {
    let name = rel.file_name()?.to_string_lossy();
    if name.ends_with("_test.rego") {
        return include_tests.then_some(Kind::Rego);
    }
    match rel.extension()?.to_str()? {
        "rego" => Some(Kind::Rego),
        "json" => Some(Kind::Json),
        "yaml" | "yml" => Some(Kind::Yaml),
        _ => None,
    }
}

/// `sha256:<hex>` over every file's relative path and contents, in order.
/// Each field is length-prefixed so no two different trees hash alike.
pub(crate) fn revision(files: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        for field in [file.rel.to_string_lossy().as_bytes(), file.text.as_bytes()] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field);
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// A fresh engine holding `files`, with the execution time limit set.
pub(crate) fn build_engine(files: &[SourceFile], limit: Duration) -> Result<Engine, PolicyError> {
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    });
    for (name, nargs) in STUB_BUILTINS {
        let message = format!(
            "{name} {} (regorus has only a stub that returns undefined): policies may not make network calls",
            UNSUPPORTED_MARKERS[1]
        );
        let refuse = move |_: Vec<Value>| -> anyhow::Result<Value> { anyhow::bail!("{message}") };
        engine
            .add_extension(name.to_string(), nargs, Box::new(refuse))
            .map_err(|e| load_err(Path::new(name), e))?;
    }
    for file in files {
        add_file(&mut engine, file)?;
    }
    Ok(engine)
}

/// Whether `file` could define the `hide` rule; see `PolicySet::may_hide`.
pub(crate) fn may_define_hide(file: &SourceFile) -> bool {
    mentions(file, "hide", "default hide := false")
}

/// Whether a Rego file could read `input.rate` (the same lexical,
/// conservative test: any mention of the word `rate` outside full-line
/// comments says yes).
pub(crate) fn may_read_rate(file: &SourceFile) -> bool {
    mentions(file, "rate", "")
}

/// `word` as a whole identifier on a line that is not a comment, once
/// `except` is taken out of it.
fn mentions(file: &SourceFile, word: &str, except: &str) -> bool {
    if !matches!(file.kind, Kind::Rego) {
        return false;
    }
    file.text.lines().any(|line| {
        let code = line.trim();
        if code.starts_with('#') {
            return false;
        }
        let code = if except.is_empty() {
            code.to_string()
        } else {
            code.replace(except, "")
        };
        code.match_indices(word).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + word.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    })
}

fn add_file(engine: &mut Engine, file: &SourceFile) -> Result<(), PolicyError> {
    let result = match file.kind {
        Kind::Rego => engine.add_policy(file.label(), file.text.clone()).map(drop),
        Kind::Json => Value::from_json_str(&file.text).and_then(|v| add_data(engine, v)),
        Kind::Yaml => Value::from_yaml_str(&file.text).and_then(|v| add_data(engine, v)),
    };
    result.map_err(|e| load_err(&file.path, e))
}

fn add_data(engine: &mut Engine, value: Value) -> anyhow::Result<()> {
    if value.as_object().is_err() {
        anyhow::bail!("a data file must hold an object at the top level");
    }
    engine.add_data(value)
}

/// A `Load` error for `path`. regorus's own messages start with a newline
/// and a `--> file:line:col` pointer; we keep the pointer, drop the newline.
pub(crate) fn load_err(path: &Path, err: impl std::fmt::Display) -> PolicyError {
    PolicyError::Load {
        path: path.to_path_buf(),
        message: err.to_string().trim().to_string(),
    }
}

/// Maps a regorus evaluation error: its time limit becomes `Timeout`,
/// everything else `Eval` with regorus's text (which names the rule's file,
/// line and, for a missing builtin, the builtin).
pub(crate) fn eval_err(err: anyhow::Error, limit: Duration) -> PolicyError {
    let timed_out = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<LimitError>(),
            Some(LimitError::TimeLimitExceeded { .. })
        )
    }) || err.to_string().contains("exceeded time limit");
    if timed_out {
        PolicyError::Timeout {
            limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }
    } else {
        PolicyError::Eval {
            message: name_unsupported(err.to_string().trim()),
        }
    }
}

/// `message` plus, when it reports a missing function from a family regorus
/// lacks, a sentence naming the builtin as unavailable in regorus.
pub(crate) fn name_unsupported(message: &str) -> String {
    const MISSING: &str = "could not find function ";
    let name = message.find(MISSING).map(|at| {
        let rest = &message[at + MISSING.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        &rest[..end]
    });
    match name {
        Some(name) if MISSING_FAMILIES.iter().any(|f| name.starts_with(f)) => format!(
            "{message}\nbuiltin {name} is unavailable: regorus, the Rego engine mcp-firewall embeds, does not implement crypto.* or io.jwt.*"
        ),
        _ => message.to_string(),
    }
}

/// Turns off the stack traces `anyhow` captures for library errors, unless
/// `RUST_LIB_BACKTRACE` asks for them. Call it first thing in `main`,
/// before any other thread starts.
///
/// regorus's parser signals a failed alternative with an `anyhow` error that
/// it then drops, dozens of times per policy file. With `RUST_BACKTRACE=1`
/// in the environment (common in a Rust developer's shell, and Claude Code
/// passes its environment to hooks) each of those errors walked the stack:
/// +3 ms on every start, every hook run and every engine specialized for a
/// tool. The firewall prints its errors with `{:#}`, never their traces, so
/// nothing is lost. Panics still print a backtrace: their hook reads
/// `RUST_BACKTRACE` on its own.
///
/// std reads the variables once and keeps the answer, so the variable is
/// set, read through one capture, and removed again: upstream processes
/// inherit the environment as it was.
pub fn discard_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_some() {
        return;
    }
    // SAFETY: the caller runs this before any other thread exists, so no
    // one reads the environment while it changes.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let _ = std::backtrace::Backtrace::capture();
    // SAFETY: as above.
    unsafe { std::env::remove_var("RUST_LIB_BACKTRACE") };
}
