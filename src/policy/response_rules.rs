//! Which `deny` rules the response phase runs.
//!
//! Job: every forwarded call is decided twice, on the request and on what the
//! upstream returned. A result can only be judged by rules that see it: a
//! `deny` rule that reads neither `input.result` nor `input.phase` (itself or
//! through any rule or function it uses) was already decided on the request,
//! where it did not fire (or the call would not have been forwarded), and
//! running it again per result costs as much as the request's own decision.
//! [`response_sources`] returns the policy text without those rules, for the
//! engine the response phase evaluates.
//!
//! Invariants:
//! - Sound, not precise: whatever the walk cannot pin to a named field of
//!   `input` or to a known rule (bare `input` or `data`, a computed key into
//!   either, a `with` modifier, an import of either) counts as reading the
//!   result, so a rule is left out only when it provably cannot see it.
//! - Of the rules the response phase reads, only `deny` rules of the
//!   decision package are ever left out. If a rule it keeps depends on
//!   `deny` itself, nothing is left out. Rules none of the kept ones can
//!   reach (the request's `approve`, `allow` and their helpers) are left out
//!   of the response engine too, so it stays small; not when a kept rule
//!   refers to rules by a path the walk cannot follow.
//! - Removed text is blanked with spaces (newlines kept), so line and column
//!   numbers in the response engine's errors are the files' own.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::Rule;

use super::loader::SourceFile;
use super::rule_graph::{Facts, Graph, Key, RESULT_FINDINGS, rewrite};

/// The top-level `input` fields only the response phase has.
const RESPONSE_FIELDS: [&str; 3] = ["result", RESULT_FINDINGS, "phase"];

/// The rules the response phase reads besides `deny`.
const RESPONSE_ONLY_RULES: [&str; 2] = ["redact", "warn"];

/// The policy files with every `deny` rule of `package` that cannot see the
/// result blanked out, and how many were; `None` when none can be left out
/// (or the analysis cannot vouch for leaving any out).
pub(crate) fn response_sources(
    graph: &Graph,
    files: &[SourceFile],
    package: &[&str],
) -> Option<(Vec<SourceFile>, usize)> {
    let package: Vec<String> = package.iter().map(|c| c.to_string()).collect();
    let deny: Key = (package.clone(), "deny".to_string());
    let mut roots: BTreeSet<Key> = RESPONSE_ONLY_RULES
        .iter()
        .map(|r| (package.clone(), r.to_string()))
        .collect();
    let mut left_out = BTreeSet::new();
    let mut opaque = false;
    for (i, definition) in graph.definitions.iter().enumerate() {
        let facts = &definition.facts;
        if definition.key != deny {
            continue;
        }
        let sees_result = matches!(definition.rule.as_ref(), Rule::Default { .. })
            || facts.reads_any(&RESPONSE_FIELDS)
            || facts.uses.iter().any(|used| {
                used == &deny || reads_response(used, &graph.by_key, &mut BTreeSet::new())
            });
        if sees_result {
            roots.extend(facts.uses.iter().cloned());
            opaque |= facts.opaque;
        } else {
            left_out.insert(i);
        }
    }
    // What the kept rules use must not include `deny`, whose definitions change.
    let reached = graph.reached(&roots);
    if left_out.is_empty() || reached.contains(&deny) {
        return None;
    }
    // Rules nothing kept can reach go too (a smaller engine), unless a kept
    // rule may reach rules by a path the walk could not follow.
    opaque |= graph.any_opaque(&reached);
    let mut blank = Vec::new();
    for (i, definition) in graph.definitions.iter().enumerate() {
        let key = &definition.key;
        let unreached = !opaque && *key != deny && !reached.contains(key);
        if left_out.contains(&i) || unreached {
            blank.push(graph.extent(&definition.rule)?);
        }
    }
    let out = rewrite(files, &blank, &[])?;
    Some((out, left_out.len()))
}

/// Whether `key` (any definition of it, or anything it uses) reads the
/// response's fields. A rule unknown here (a builtin's namespace, data) reads
/// nothing; a cycle (Rego forbids recursion) counts as reading.
fn reads_response(key: &Key, rules: &BTreeMap<Key, Facts>, seen: &mut BTreeSet<Key>) -> bool {
    let Some(facts) = rules.get(key) else {
        return false;
    };
    if !seen.insert(key.clone()) {
        return true;
    }
    let reads = facts.reads_any(&RESPONSE_FIELDS)
        || facts.uses.iter().any(|u| reads_response(u, rules, seen));
    seen.remove(key);
    reads
}

#[cfg(test)]
#[path = "response_rules_tests.rs"]
mod tests;
