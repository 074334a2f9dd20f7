//! `policy eval --explain`: which rules fired, and where each reason came from.
//!
//! Job: for one input, report the value of every decision rule, the file and
//! line of the `deny`/`approve` rule that produced each reason, and every
//! other rule of the package that evaluated to something (not `false`, not
//! empty). Used by the CLI only; the request path never calls this.
//!
//! How reasons are attributed: regorus 0.14's explanation support needs its
//! non-default `explanations` feature and the RVM, so instead we load a
//! second engine in which every partial-set head `deny contains` /
//! `approve contains` that starts a line in a file of the decision package is
//! renamed to a rule of its own (`__explain_deny_<file>_<line>`), and one
//! added module defines `deny`/`approve` as the union of those rules. The
//! package then decides exactly as before, and each renamed rule's members are
//! the reasons that one rule produced. Reasons from rules written any other
//! way (a complete `deny := {...}`, a head split oddly across lines) land in
//! `unattributed`.
//!
//! Invariant: the verdict reported is the one [`PolicySet::evaluate`] gives on
//! the unmodified policy; the renamed engine is only used for attribution.

use std::path::{Path, PathBuf};

use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::decision::Verdict;
use super::engine::{EVAL_TIME_LIMIT, PolicySet};
use super::error::PolicyError;
use super::loader::{self, Kind, SourceFile};
use super::verdict::RULES;

/// Prefix of the renamed rules; cannot clash with a name a user would write.
const RENAMED_PREFIX: &str = "__explain_";
/// The set rules whose reasons we attribute.
const ATTRIBUTED: [&str; 2] = ["deny", "approve"];

/// Everything `--explain` reports for one input.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub verdict: Verdict,
    pub revision: String,
    /// Each decision rule's value; `null` when undefined.
    pub rules: Map<String, serde_json::Value>,
    /// One entry per reason a `deny`/`approve` rule produced.
    pub sources: Vec<ReasonSource>,
    /// `deny`/`approve` reasons no single rule could be credited with.
    pub unattributed: Vec<ReasonSource>,
    /// Other rules of the package with a defined, non-false, non-empty value.
    pub other_rules: Map<String, serde_json::Value>,
}

/// Where one reason came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonSource {
    /// `deny` or `approve`.
    pub rule: String,
    pub reason: String,
    /// File and 1-based line of the rule head; `None` when unattributed.
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

/// One renamed rule head: its new name and where it was.
struct Renamed {
    name: String,
    rule: &'static str,
    file: PathBuf,
    line: usize,
}

/// Decides `input` with the policy in `dir` and explains the decision.
pub fn explain(
    dir: &Path,
    package: &str,
    input: &serde_json::Value,
) -> Result<Explanation, PolicyError> {
    let set = PolicySet::load_dir(dir, package)?;
    let verdict = set.evaluate(input)?;
    let mut files = loader::collect(dir, false)?;
    if input.get("phase").and_then(serde_json::Value::as_str) == Some("response") {
        // Explain what the response phase ran, not the request's rules too.
        files = response_files(&files, package)?;
    }
    let (mut engine, renamed) = renamed_engine(&files, package)?;
    engine.set_input(Value::deserialize(input).map_err(|e| PolicyError::Eval {
        message: format!("input document is not representable: {e}"),
    })?);
    let results = engine
        .eval_query(format!("data.{package}"), false)
        .map_err(|e| loader::eval_err(e, EVAL_TIME_LIMIT))?;
    let values = results
        .result
        .first()
        .and_then(|r| r.expressions.first())
        .map(|e| serde_json::to_value(&e.value).unwrap_or_default())
        .unwrap_or_default();
    let values = values.as_object().cloned().unwrap_or_default();
    Ok(assemble(
        verdict,
        set.revision().to_string(),
        &values,
        &renamed,
    ))
}

/// Splits the package's rule values into the report's sections.
fn assemble(
    verdict: Verdict,
    revision: String,
    values: &Map<String, serde_json::Value>,
    renamed: &[Renamed],
) -> Explanation {
    let rules: Map<_, _> = RULES
        .iter()
        .map(|r| (r.to_string(), values.get(*r).cloned().unwrap_or_default()))
        .collect();
    let mut sources = Vec::new();
    for r in renamed {
        for reason in strings(values.get(&r.name)) {
            sources.push(ReasonSource {
                rule: r.rule.to_string(),
                reason,
                file: Some(r.file.clone()),
                line: Some(r.line),
            });
        }
    }
    let mut unattributed = Vec::new();
    for rule in ATTRIBUTED {
        for reason in strings(values.get(rule)) {
            if !sources.iter().any(|s| s.rule == rule && s.reason == reason) {
                let (file, line) = (None, None);
                let rule = rule.to_string();
                unattributed.push(ReasonSource {
                    rule,
                    reason,
                    file,
                    line,
                });
            }
        }
    }
    let other_rules = values
        .iter()
        .filter(|(k, v)| {
            !RULES.contains(&k.as_str()) && !k.starts_with(RENAMED_PREFIX) && is_interesting(v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Explanation {
        verdict,
        revision,
        rules,
        sources,
        unattributed,
        other_rules,
    }
}

fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    value
        .and_then(serde_json::Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Defined, not `false`, not an empty collection.
fn is_interesting(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `files` as the response phase's engine holds them (the `deny` rules that
/// cannot see a result blanked; see [`super::response_rules`]).
fn response_files(files: &[SourceFile], package: &str) -> Result<Vec<SourceFile>, PolicyError> {
    let mut engine = loader::build_engine(files, EVAL_TIME_LIMIT)?;
    let components: Vec<&str> = package.split('.').collect();
    let graph = super::rule_graph::Graph::build(&mut engine, super::engine::ADAPTER_PACKAGE);
    let trimmed = graph
        .as_ref()
        .and_then(|g| super::response_rules::response_sources(g, files, &components));
    Ok(trimmed.map_or_else(|| files.to_vec(), |(files, _)| files))
}

/// An engine over `files` with the package's `deny`/`approve` heads renamed,
/// plus the module that unions them back.
fn renamed_engine(
    files: &[SourceFile],
    package: &str,
) -> Result<(Engine, Vec<Renamed>), PolicyError> {
    let mut renamed = Vec::new();
    let rewritten: Vec<SourceFile> = files
        .iter()
        .enumerate()
        .map(|(index, file)| {
            let mut file = file.clone();
            if file.kind == Kind::Rego && declares(&file.text, package) {
                file.text = rename_heads(&file, index, &mut renamed);
            }
            file
        })
        .collect();
    let mut engine = loader::build_engine(&rewritten, EVAL_TIME_LIMIT)?;
    let mut union = format!("package {package}\n");
    for r in &renamed {
        union.push_str(&format!(
            "\n{} contains x if some x in {}\n",
            r.rule, r.name
        ));
    }
    engine
        .add_policy("<mcp-firewall explain>".to_string(), union)
        .map_err(|e| loader::load_err(Path::new("<mcp-firewall explain>"), e))?;
    Ok((engine, renamed))
}

/// True when a `package <package>` line opens the module.
fn declares(text: &str, package: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("package "))
        .is_some_and(|l| l["package ".len()..].trim() == package)
}

/// `file`'s text with each line-leading `deny contains` / `approve contains`
/// renamed; records each rename in `renamed`.
fn rename_heads(file: &SourceFile, index: usize, renamed: &mut Vec<Renamed>) -> String {
    let mut out = String::with_capacity(file.text.len() + 64);
    for (number, line) in file.text.split_inclusive('\n').enumerate() {
        let head = ATTRIBUTED.into_iter().find(|rule| {
            line.strip_prefix(rule)
                .and_then(|rest| rest.strip_prefix(' '))
                .is_some_and(|rest| rest.trim_start().starts_with("contains "))
        });
        match head {
            Some(rule) => {
                let name = format!("{RENAMED_PREFIX}{rule}_{index}_{}", number + 1);
                out.push_str(&name);
                out.push_str(&line[rule.len()..]);
                renamed.push(Renamed {
                    name,
                    rule,
                    file: file.path.clone(),
                    line: number + 1,
                });
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
