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

use regorus::Engine;
use regorus::unstable::{Expr, Literal, Module, Query, Ref, Rule, RuleHead};

use super::loader::SourceFile;

/// The top-level `input` fields only the response phase has.
const RESPONSE_FIELDS: [&str; 2] = ["result", "phase"];

/// The rules the response phase reads besides `deny`.
const RESPONSE_ONLY_RULES: [&str; 2] = ["redact", "warn"];

/// A rule: its package path (`["mcp", "firewall"]`) and name.
type Key = (Vec<String>, String);

/// What the walk learned about one rule definition.
#[derive(Debug, Default)]
struct Facts {
    /// Reads `input.result`, `input.phase`, or something that may be either.
    reads_response: bool,
    /// Rules it refers to.
    uses: BTreeSet<Key>,
    /// Refers to something that may be any rule (bare `data`, a whole
    /// package, a computed rule name, `with`): `uses` is not the whole story.
    opaque: bool,
}

/// The policy files with every `deny` rule of `package` that cannot see the
/// result blanked out, and how many were; `None` when none can be left out
/// (or the analysis cannot vouch for leaving any out).
pub(crate) fn response_sources(
    engine: &mut Engine,
    files: &[SourceFile],
    package: &[&str],
    adapter_package: &str,
) -> Option<(Vec<SourceFile>, usize)> {
    let package: Vec<String> = package.iter().map(|c| c.to_string()).collect();
    let modules = engine.get_modules().clone();
    let mut packages: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let path = package_path(module)?;
        let names = packages.entry(path).or_default();
        for rule in &module.policy {
            names.insert(rule_name(rule)?);
        }
    }
    packages
        .entry(vec![adapter_package.to_string()])
        .or_default();
    // Facts per definition, and merged per rule name.
    let mut definitions = Vec::new();
    let mut by_key: BTreeMap<Key, Facts> = BTreeMap::new();
    for module in &modules {
        let here = package_path(module)?;
        let imports = imports(module)?;
        for rule in &module.policy {
            let mut walk = Walk {
                packages: &packages,
                here: &here,
                adapter: adapter_package,
                imports: &imports,
                facts: Facts::default(),
            };
            walk.rule(rule);
            let key = (here.clone(), rule_name(rule)?);
            let merged = by_key.entry(key.clone()).or_default();
            merged.reads_response |= walk.facts.reads_response;
            merged.opaque |= walk.facts.opaque;
            merged.uses.extend(walk.facts.uses.iter().cloned());
            definitions.push((key, rule.clone(), walk.facts));
        }
    }
    let deny: Key = (package.clone(), "deny".to_string());
    let mut roots: BTreeSet<Key> = RESPONSE_ONLY_RULES
        .iter()
        .map(|r| (package.clone(), r.to_string()))
        .collect();
    let mut left_out = BTreeSet::new();
    let mut opaque = false;
    for (i, (key, rule, facts)) in definitions.iter().enumerate() {
        if *key != deny {
            continue;
        }
        let sees_result = matches!(rule.as_ref(), Rule::Default { .. })
            || facts.reads_response
            || facts
                .uses
                .iter()
                .any(|used| used == &deny || reads_response(used, &by_key, &mut BTreeSet::new()));
        if sees_result {
            roots.extend(facts.uses.iter().cloned());
            opaque |= facts.opaque;
        } else {
            left_out.insert(i);
        }
    }
    // What the kept rules use must not include `deny`, whose definitions change.
    let mut reached = BTreeSet::new();
    for root in &roots {
        reach(root, &by_key, &mut reached);
    }
    if left_out.is_empty() || reached.contains(&deny) {
        return None;
    }
    // Rules nothing kept can reach go too (a smaller engine), unless a kept
    // rule may reach rules by a path the walk could not follow.
    opaque |= reached
        .iter()
        .any(|k| by_key.get(k).is_some_and(|f| f.opaque));
    let mut blank = Vec::new();
    for (i, (key, rule, _)) in definitions.iter().enumerate() {
        let unreached = !opaque && *key != deny && !reached.contains(key);
        if left_out.contains(&i) || unreached {
            blank.push(extent(&modules, rule)?);
        }
    }
    let count = left_out.len();
    let mut out = files.to_vec();
    for (label, start, end) in blank {
        let file = out.iter_mut().find(|f| f.label() == label)?;
        let end = end.unwrap_or(file.text.len());
        blank_out(&mut file.text, start, end)?;
    }
    Some((out, count))
}

/// Where `rule`'s text lies: its file, its start, and the start of the rule
/// after it in that file (`None`: the end of the file). A rule's own span
/// can end inside its last token (before a closing quote), so the text up
/// to the next rule goes with it (the rest is space and comments).
fn extent(modules: &[Ref<Module>], rule: &Rule) -> Option<(String, usize, Option<usize>)> {
    let span = rule.span();
    let file = span.source.file();
    let module = modules
        .iter()
        .find(|m| m.package.span.source.file() == file)?;
    let next = module
        .policy
        .iter()
        .map(|r| r.span().start)
        .filter(|&start| start > span.start)
        .min();
    Some((file.clone(), span.start as usize, next.map(|n| n as usize)))
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
    let reads = facts.reads_response || facts.uses.iter().any(|u| reads_response(u, rules, seen));
    seen.remove(key);
    reads
}

fn reach(key: &Key, rules: &BTreeMap<Key, Facts>, reached: &mut BTreeSet<Key>) {
    if !reached.insert(key.clone()) {
        return;
    }
    if let Some(facts) = rules.get(key) {
        for used in &facts.uses {
            reach(used, rules, reached);
        }
    }
}

/// Replace `text[start..end]` with spaces, keeping newlines and every
/// byte offset (a multi-byte character becomes as many spaces).
fn blank_out(text: &mut String, start: usize, end: usize) -> Option<()> {
    let range = text.get(start..end)?;
    let blanked: String = range
        .chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c => " ".repeat(c.len_utf8()),
        })
        .collect();
    text.replace_range(start..end, &blanked);
    Some(())
}

fn package_path(module: &Module) -> Option<Vec<String>> {
    let (root, path) = literal_path(&module.package.refr);
    let Expr::Var { span, .. } = root else {
        return None;
    };
    let mut out = vec![span.text().to_string()];
    for segment in path {
        out.push(segment?);
    }
    Some(out)
}

/// A rule's name: the first segment of its head (`deny` in `deny contains
/// x`, `f` in `f(x)`, `a` in `a.b := 1`).
fn rule_name(rule: &Rule) -> Option<String> {
    let refr = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    match literal_path(refr).0 {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        _ => None,
    }
}

/// Where an import points: `input` or `data`, and the path below it.
#[derive(Debug, Clone)]
enum Root {
    Input,
    Data,
}

/// A module's imports of `input` and `data`, by the name they bind.
type Imports = BTreeMap<String, (Root, Vec<Option<String>>)>;

fn imports(module: &Module) -> Option<Imports> {
    let mut out = BTreeMap::new();
    for import in &module.imports {
        let (root, path) = literal_path(&import.refr);
        let Expr::Var { span, .. } = root else {
            return None;
        };
        let root = match span.text() {
            "input" => Root::Input,
            "data" => Root::Data,
            _ => continue, // `rego.v1`, `future.keywords...`
        };
        let name = match (&import.r#as, path.last()) {
            (Some(alias), _) => alias.text().to_string(),
            (None, Some(Some(last))) => last.clone(),
            (None, None) => span.text().to_string(),
            (None, Some(None)) => return None,
        };
        out.insert(name, (root, path));
    }
    Some(out)
}

/// A reference's root expression and its path: `Some(field)` for a literal
/// field or string key, `None` for anything computed.
fn literal_path(mut expr: &Expr) -> (&Expr, Vec<Option<String>>) {
    let mut reversed = Vec::new();
    loop {
        match expr {
            Expr::RefDot { refr, field, .. } => {
                reversed.push(Some(field.0.text().to_string()));
                expr = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                reversed.push(string_literal(index));
                expr = refr;
            }
            _ => break,
        }
    }
    reversed.reverse();
    (expr, reversed)
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

/// One rule definition's walk.
struct Walk<'a> {
    packages: &'a BTreeMap<Vec<String>, BTreeSet<String>>,
    here: &'a [String],
    adapter: &'a str,
    imports: &'a Imports,
    facts: Facts,
}

impl Walk<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.head(refr);
                        if let Some(assign) = assign {
                            self.expr(&assign.value);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.head(refr);
                        if let Some(key) = key {
                            self.expr(key);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        self.head(refr);
                        args.iter().for_each(|a| self.expr(a));
                        if let Some(assign) = assign {
                            self.expr(&assign.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(assign) = &body.assign {
                        self.expr(&assign.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default { args, value, .. } => {
                args.iter().for_each(|a| self.expr(a));
                self.expr(value);
            }
        }
    }

    /// A rule head names the rule being defined; only computed keys in it
    /// (`a[input.x] := 1`) read anything.
    fn head(&mut self, refr: &Expr) {
        self.computed_keys(refr);
    }

    fn computed_keys(&mut self, mut expr: &Expr) {
        loop {
            match expr {
                Expr::RefDot { refr, .. } => expr = refr,
                Expr::RefBrack { refr, index, .. } => {
                    if string_literal(index).is_none() {
                        self.expr(index);
                    }
                    expr = refr;
                }
                _ => return,
            }
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            if !stmt.with_mods.is_empty() {
                // `with input as ...`, `with data.x as ...`: not followed.
                self.facts.reads_response = true;
                self.facts.opaque = true;
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => self.membership(key.as_ref(), value, collection),
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| self.expr(i));
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.expr(key);
                    self.expr(value);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call { fcn, params, .. } => self.call(fcn, params),
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => self.membership(key.as_ref(), value, collection),
        }
    }

    /// `some key, value in collection` and `key, value in collection`.
    fn membership(&mut self, key: Option<&Ref<Expr>>, value: &Expr, collection: &Expr) {
        if let Some(key) = key {
            self.expr(key);
        }
        self.expr(value);
        self.expr(collection);
    }

    /// A variable or a reference (`input.tool.name`, `data.x.y`, `rule.f`).
    fn reference(&mut self, expr: &Expr) {
        self.computed_keys(expr);
        let (root, path) = literal_path(expr);
        match root {
            Expr::Var { span, .. } => self.name(span.text(), &path),
            other => self.expr(other),
        }
    }

    fn name(&mut self, name: &str, path: &[Option<String>]) {
        match name {
            "input" => self.input(path),
            "data" => self.data(path),
            _ => {
                if let Some((root, prefix)) = self.imports.get(name) {
                    let full: Vec<Option<String>> =
                        prefix.iter().chain(path.iter()).cloned().collect();
                    match root {
                        Root::Input => self.input(&full),
                        Root::Data => self.data(&full),
                    }
                } else if self
                    .packages
                    .get(self.here)
                    .is_some_and(|rules| rules.contains(name))
                {
                    self.facts
                        .uses
                        .insert((self.here.to_vec(), name.to_string()));
                }
                // Else a local variable, or a builtin's namespace (`regex`).
            }
        }
    }

    fn input(&mut self, path: &[Option<String>]) {
        match path.first() {
            Some(Some(field)) if !RESPONSE_FIELDS.contains(&field.as_str()) => {}
            _ => self.facts.reads_response = true,
        }
    }

    /// `data.<path>`: rules of loaded packages, or plain data (which the
    /// response phase shares with the request). Every package the path runs
    /// through counts: `data.a.b.c` is rule `b` of package `a` and rule `c`
    /// of package `a.b` when both exist.
    fn data(&mut self, path: &[Option<String>]) {
        let literal: Vec<&str> = path.iter().map_while(|s| s.as_deref()).collect();
        let same = |package: &[String], n: usize| {
            package.iter().zip(&literal).take(n).all(|(a, b)| a == b)
        };
        let mut any_rule = false;
        let mut uses = Vec::new();
        for package in self.packages.keys() {
            if package.len() > literal.len() {
                // A package below the path (`data`, `data.mcp`, `data[x]`):
                // the path may reach any rule in it.
                any_rule |= same(package, literal.len());
            } else if same(package, package.len()) {
                match literal.get(package.len()) {
                    _ if package.len() == 1 && package[0] == self.adapter => any_rule = true,
                    Some(rule) => uses.push((package.clone(), rule.to_string())),
                    // A whole package, or a computed rule name in it.
                    None => any_rule = true,
                }
            }
        }
        self.facts.uses.extend(uses);
        if any_rule {
            self.reads_any_rule();
        }
    }

    /// A reference that may reach any rule, so any input.
    fn reads_any_rule(&mut self) {
        self.facts.reads_response = true;
        self.facts.opaque = true;
    }

    fn call(&mut self, fcn: &Expr, params: &[Ref<Expr>]) {
        let (root, path) = literal_path(fcn);
        if let Expr::Var { span, .. } = root
            && span.text() == "object"
            && path == [Some("get".to_string())]
            && !self.imports.contains_key("object")
            && params.len() == 3
            && self.object_get(&params[0], &params[1])
        {
            self.expr(&params[2]);
            return;
        }
        self.reference(fcn);
        params.iter().for_each(|p| self.expr(p));
    }

    /// `object.get(input, key, default)` and `object.get(data, path,
    /// default)` with a literal key or path read that path, not the whole
    /// document. Returns whether it handled the call.
    fn object_get(&mut self, object: &Expr, key: &Expr) -> bool {
        let root = match object {
            Expr::Var { span, .. } if span.text() == "input" => Root::Input,
            Expr::Var { span, .. } if span.text() == "data" => Root::Data,
            _ => return false,
        };
        let path: Vec<Option<String>> = match key {
            Expr::Array { items, .. } => items
                .iter()
                .map(|item| {
                    let literal = string_literal(item);
                    if literal.is_none() {
                        self.expr(item);
                    }
                    literal
                })
                .collect(),
            other => {
                let literal = string_literal(other);
                if literal.is_none() {
                    self.expr(other);
                }
                vec![literal]
            }
        };
        match root {
            Root::Input => self.input(&path),
            Root::Data => self.data(&path),
        }
        true
    }
}

#[cfg(test)]
#[path = "response_rules_tests.rs"]
mod tests;
