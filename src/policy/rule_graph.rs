//! The rules of a loaded policy and what each definition reads.
//!
//! Job: walk regorus's syntax tree once per load and record, for every rule
//! definition, which top-level `input` fields it reads, which rules it uses,
//! and whether it does anything the walk cannot follow. The response phase
//! ([`super::response_rules`]) and the per-call specializations
//! ([`super::specialize`]) both decide from these facts which rule text an
//! engine can do without.
//!
//! Invariant: sound, not precise. Whatever the walk cannot pin to a named
//! field of `input` or to a known rule (bare `input` or `data`, a computed
//! key into either, a `with` modifier, an import of either) is recorded as
//! reading any input (`any_input`) and possibly any rule (`opaque`).

use std::collections::{BTreeMap, BTreeSet};

use regorus::Engine;
use regorus::unstable::{Expr, Literal, Module, Query, Ref, Rule, RuleHead};

use super::loader::SourceFile;

/// A rule: its package path (`["mcp", "firewall"]`) and name.
pub(super) type Key = (Vec<String>, String);

/// The one input path below the top level the walk names apart from its
/// field: a result's `findings` (the response phase), known before its
/// rules run and most often empty. A read of `input.result.findings` is
/// recorded under this name; any other read of `input.result`, as `result`.
pub(super) const RESULT_FINDINGS: &str = "result.findings";

/// The name a read of `input.<first>.<second>...` is recorded under.
pub(super) fn input_field<'a>(first: &'a str, second: Option<&str>) -> &'a str {
    match (first, second) {
        ("result", Some("findings")) => RESULT_FINDINGS,
        _ => first,
    }
}

/// What the walk learned about one rule definition.
#[derive(Debug, Default, Clone)]
pub(super) struct Facts {
    /// The top-level `input` fields it reads by name (`tool` for
    /// `input.tool.name`).
    pub(super) inputs: BTreeSet<String>,
    /// Reads `input` whole, by a computed key, or through a path the walk
    /// cannot follow.
    pub(super) any_input: bool,
    /// Rules it refers to.
    pub(super) uses: BTreeSet<Key>,
    /// Refers to something that may be any rule (bare `data`, a whole
    /// package, a computed rule name, `with`): `uses` is not the whole story.
    pub(super) opaque: bool,
    /// Has a `with` modifier (evaluates something under another input).
    pub(super) with: bool,
    /// Calls a builtin whose answer is not a function of its arguments
    /// (`time.now_ns`, `rand.intn`, `http.send` ...).
    pub(super) nondeterministic: bool,
    /// Where it names a rule of its own package by a plain variable
    /// (`r`, `r[k]`, `r.f`): byte start, end and the name. Not merged
    /// across definitions.
    pub(super) rule_vars: Vec<(usize, usize, String)>,
    /// The names it binds (`some x in`, `x :=`, either side of `=`, a
    /// function's arguments ...): a rule of such a name may be shadowed
    /// in it. Not merged across definitions.
    pub(super) bound: BTreeSet<String>,
}

impl Facts {
    /// Whether it reads any of `fields` (or may).
    pub(super) fn reads_any(&self, fields: &[&str]) -> bool {
        self.any_input || fields.iter().any(|f| self.inputs.contains(*f))
    }

    fn merge(&mut self, other: &Facts) {
        self.inputs.extend(other.inputs.iter().cloned());
        self.any_input |= other.any_input;
        self.uses.extend(other.uses.iter().cloned());
        self.opaque |= other.opaque;
        self.with |= other.with;
        self.nondeterministic |= other.nondeterministic;
    }
}

/// Builtins whose answer may change between two calls with the same
/// arguments, or that reach outside the policy.
const NONDETERMINISTIC: [&str; 7] = [
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "http.send",
    "net.lookup_ip_addr",
    "opa.runtime",
    "trace",
];

/// Whether the call target `fcn` is one of [`NONDETERMINISTIC`].
pub(super) fn is_nondeterministic(fcn: &Expr) -> bool {
    let (root, path) = literal_path(fcn);
    let Expr::Var { span, .. } = root else {
        return false;
    };
    let name: Vec<&str> = std::iter::once(span.text())
        .chain(path.iter().map(|s| s.as_deref().unwrap_or("")))
        .collect();
    NONDETERMINISTIC.contains(&name.join(".").as_str())
}

/// One rule definition: where it is and what it reads.
pub(super) struct Definition {
    pub(super) key: Key,
    pub(super) rule: Ref<Rule>,
    pub(super) facts: Facts,
    /// The names its module's imports of `input` and `data` bind.
    pub(super) imported: BTreeSet<String>,
}

/// Every rule definition of an engine's modules, and the facts merged per
/// rule.
pub(super) struct Graph {
    pub(super) modules: Vec<Ref<Module>>,
    /// Every package and the names of its rules.
    pub(super) packages: BTreeMap<Vec<String>, BTreeSet<String>>,
    pub(super) definitions: Vec<Definition>,
    pub(super) by_key: BTreeMap<Key, Facts>,
}

impl Graph {
    /// Walks every module of `engine`. `adapter_package` is the firewall's
    /// own module (added later), whose rules read every decision rule.
    /// `None` when a module has a shape the walk does not know.
    pub(super) fn build(engine: &mut Engine, adapter_package: &str) -> Option<Graph> {
        let modules = engine.get_modules().clone();
        let mut packages = packages(&modules)?;
        packages
            .entry(vec![adapter_package.to_string()])
            .or_default();
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
                by_key.entry(key.clone()).or_default().merge(&walk.facts);
                definitions.push(Definition {
                    key,
                    rule: rule.clone(),
                    facts: walk.facts,
                    imported: imports.keys().cloned().collect(),
                });
            }
        }
        Some(Graph {
            modules,
            packages,
            definitions,
            by_key,
        })
    }

    /// Whether one of `rules` of `package` can be defined where roots keyed
    /// by the package (`(package, "deny")`) do not look: by a rule of an
    /// enclosing package whose path leads into it (`package mcp` with
    /// `firewall.deny contains ...`), or by a package below it named after
    /// the rule (`package mcp.firewall.approval` with `approvers := ...`).
    pub(super) fn defines_into(&self, package: &[&str], rules: &[&str]) -> bool {
        let from_outside = defined_from_outside(&self.packages, package);
        let from_below = self.packages.keys().any(|path| {
            path.len() > package.len()
                && path[..package.len()] == *package
                && rules.contains(&path[package.len()].as_str())
        });
        from_outside || from_below
    }

    /// Every rule `roots` reach through the rules they use, roots included.
    pub(super) fn reached<'a>(&self, roots: impl IntoIterator<Item = &'a Key>) -> BTreeSet<Key> {
        let mut reached = BTreeSet::new();
        for root in roots {
            reach(root, &self.by_key, &mut reached);
        }
        reached
    }

    /// Whether `roots` decide every input alike: nothing they reach reads
    /// `input` (by name, whole, through an import or a computed key), calls
    /// a builtin whose answer may change ([`NONDETERMINISTIC`]), has a
    /// `with` modifier, or refers to rules the walk could not follow.
    pub(super) fn input_free(&self, roots: &BTreeSet<Key>) -> bool {
        self.reached(roots).iter().all(|key| {
            self.by_key.get(key).is_none_or(|f| {
                !f.any_input && f.inputs.is_empty() && !f.opaque && !f.with && !f.nondeterministic
            })
        })
    }

    /// Whether any of `keys` refers to rules the walk could not follow.
    pub(super) fn any_opaque(&self, keys: &BTreeSet<Key>) -> bool {
        keys.iter()
            .any(|k| self.by_key.get(k).is_some_and(|f| f.opaque))
    }

    /// Where `rule`'s text lies; see [`extent`].
    pub(super) fn extent(&self, rule: &Rule) -> Option<(String, usize, Option<usize>)> {
        extent(&self.modules, rule)
    }
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

/// `files` with each extent in `blank` blanked out and each `(label,
/// text)` of `append` added at the end of its file. `None` when an extent
/// or label matches no file.
pub(super) fn rewrite(
    files: &[SourceFile],
    blank: &[(String, usize, Option<usize>)],
    append: &[(String, String)],
) -> Option<Vec<SourceFile>> {
    rewrite_with(files, blank, &[], append)
}

/// [`rewrite`], also putting text in place of byte ranges
/// (`(file label, start, end, text)`) that no blanked range overlaps.
pub(super) fn rewrite_with(
    files: &[SourceFile],
    blank: &[(String, usize, Option<usize>)],
    replace: &[(String, usize, usize, String)],
    append: &[(String, String)],
) -> Option<Vec<SourceFile>> {
    let mut out = files.to_vec();
    for (label, start, end) in blank {
        let file = out.iter_mut().find(|f| f.label() == *label)?;
        let end = end.unwrap_or(file.text.len());
        blank_out(&mut file.text, *start, end)?;
    }
    // Last first, so each range still means what it meant.
    let mut replace: Vec<&(String, usize, usize, String)> = replace.iter().collect();
    replace.sort_by(|a, b| (&a.0, b.1).cmp(&(&b.0, a.1)));
    let mut previous: Option<(&str, usize)> = None;
    for (label, start, end, text) in replace {
        // Overlapping ranges cannot both be replaced.
        if previous.is_some_and(|(l, s)| l == label && *end > s) {
            return None;
        }
        let file = out.iter_mut().find(|f| f.label() == *label)?;
        file.text.get(*start..*end)?;
        file.text.replace_range(*start..*end, text);
        previous = Some((label, *start));
    }
    for (label, text) in append {
        let file = out.iter_mut().find(|f| f.label() == *label)?;
        file.text.push('\n');
        file.text.push_str(text);
        file.text.push('\n');
    }
    Some(out)
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

/// Each package of `modules` and the names of the rules defined in it.
/// `None` when a package or a rule's name is not a plain path.
pub(super) fn packages(modules: &[Ref<Module>]) -> Option<BTreeMap<Vec<String>, BTreeSet<String>>> {
    let mut packages: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for module in modules {
        let names = packages.entry(package_path(module)?).or_default();
        for rule in &module.policy {
            names.insert(rule_name(rule)?);
        }
    }
    Some(packages)
}

/// Whether a rule of a package enclosing `package` leads into it
/// (`package mcp` with `firewall.deny contains ...`), and so may define any
/// of its names.
pub(super) fn defined_from_outside(
    packages: &BTreeMap<Vec<String>, BTreeSet<String>>,
    package: &[&str],
) -> bool {
    (1..package.len()).any(|len| {
        packages
            .iter()
            .any(|(path, names)| *path == package[..len] && names.contains(package[len]))
    })
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
pub(super) fn rule_name(rule: &Rule) -> Option<String> {
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
pub(super) fn literal_path(mut expr: &Expr) -> (&Expr, Vec<Option<String>>) {
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

pub(super) fn string_literal(expr: &Expr) -> Option<String> {
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
                        args.iter().for_each(|a| self.binds(a));
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
                self.facts.any_input = true;
                self.facts.opaque = true;
                self.facts.with = true;
            }
            match &stmt.literal {
                Literal::SomeVars { vars, .. } => {
                    let names = vars.iter().map(|v| v.text().to_string());
                    self.facts.bound.extend(names);
                }
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    key.iter().for_each(|k| self.binds(k));
                    self.binds(value);
                    self.membership(key.as_ref(), value, collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every {
                    key,
                    value,
                    domain,
                    query,
                    ..
                } => {
                    let names = key.iter().chain([value]).map(|v| v.text().to_string());
                    self.facts.bound.extend(names);
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
            Expr::AssignExpr { lhs, rhs, .. } => {
                // `:=` binds its left side; `=` may bind either.
                self.binds(lhs);
                if let Expr::AssignExpr {
                    op: regorus::unstable::AssignOp::Eq,
                    ..
                } = expr
                {
                    self.binds(rhs);
                }
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. } => {
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

    /// Every variable `pattern` names, as bound (a pattern may bind
    /// variables anywhere in arrays and objects; a reference binds none of
    /// its own, but its computed keys may).
    fn binds(&mut self, pattern: &Expr) {
        match pattern {
            Expr::Var { span, .. } => {
                self.facts.bound.insert(span.text().to_string());
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| self.binds(i));
            }
            Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
                self.binds(k);
                self.binds(v);
            }),
            Expr::RefDot { refr, .. } => self.binds(refr),
            Expr::RefBrack { refr, index, .. } => {
                self.binds(refr);
                self.binds(index);
            }
            _ => {}
        }
    }

    /// A variable or a reference (`input.tool.name`, `data.x.y`, `rule.f`).
    fn reference(&mut self, expr: &Expr) {
        self.computed_keys(expr);
        let (root, path) = literal_path(expr);
        match root {
            Expr::Var { span, .. } => self.name(span, &path),
            other => self.expr(other),
        }
    }

    /// The variable at `span` (`path` follows it).
    fn name(&mut self, span: &regorus::unstable::Span, path: &[Option<String>]) {
        let name = span.text();
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
                    let (start, end) = (span.start as usize, span.end as usize);
                    self.facts.rule_vars.push((start, end, name.to_string()));
                }
                // Else a local variable, or a builtin's namespace (`regex`).
            }
        }
    }

    fn input(&mut self, path: &[Option<String>]) {
        match path.first() {
            Some(Some(field)) => {
                let second = path.get(1).and_then(Option::as_deref);
                self.facts
                    .inputs
                    .insert(input_field(field, second).to_string());
            }
            _ => self.facts.any_input = true,
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
        self.facts.any_input = true;
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
        self.facts.nondeterministic |= is_nondeterministic(fcn);
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
