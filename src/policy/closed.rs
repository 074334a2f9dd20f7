//! Which statements of a rule body a known part of the input decides.
//!
//! Job: for [`super::specialize`], classify expressions: *closed* ones read
//! only the known input fields, rules that fold to a value, constants and
//! deterministic builtins, so evaluating them once on the known part gives
//! their value for every call that shares it; and the rules an expression
//! refers to where an undefined value (or an empty set, where iterated)
//! makes the whole statement fail.
//!
//! Also the key of `input.arguments` a statement cannot hold without
//! ([`Closed::argument_read`]): which keys a call's arguments have is part
//! of its known part, so `p := input.arguments[key]` fails for every call
//! to `echo` that has no such key, whatever its values.
//!
//! Invariant: conservative. Anything not recognised (local variables,
//! comprehensions, user functions, imports, computed keys) is not closed,
//! and references inside comprehensions or `print` never fail a statement.

use std::collections::BTreeSet;

use regorus::Value;
use regorus::unstable::{AssignOp, BoolOp, Expr, Literal, LiteralStmt, Ref};

use super::rule_graph::{
    Graph, Key, input_field, is_nondeterministic, literal_path, string_literal,
};
use super::specialize::Statement;

/// Which expressions read only the known part, folded rules and constants.
pub(super) struct Closed<'a> {
    pub(super) graph: &'a Graph,
    pub(super) here: &'a [String],
    pub(super) imported: &'a BTreeSet<String>,
    pub(super) fields: &'a [&'a str],
    pub(super) foldable: &'a BTreeSet<Key>,
}

/// A key of `input.arguments` a statement reads (`input.arguments.k`,
/// `input.arguments["k"]`, `input.arguments[v]`).
#[derive(Debug, PartialEq)]
pub(super) enum ArgumentKey {
    Literal(String),
    /// A variable, which must be bound before the statement.
    Var(String),
}

/// `input.<path> <op> <bound>`, and whether the value must be a number.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Comparison {
    pub(super) path: Vec<String>,
    pub(super) number: bool,
    pub(super) op: BoolOp,
    pub(super) bound: Bound,
}

/// What a value is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bound {
    Value(Value),
    /// A rule whose value is the same for every input.
    Rule(Key),
}

impl Comparison {
    /// Whether it holds for `input`, compared as regorus compares (its
    /// values' order), once the bound is `value`.
    pub(super) fn holds(&self, input: &Value, value: &Value) -> bool {
        let mut got = input;
        for field in &self.path {
            got = &got[field.as_str()];
        }
        if *got == Value::Undefined || (self.number && !matches!(got, Value::Number(_))) {
            return false;
        }
        match self.op {
            BoolOp::Lt => got < value,
            BoolOp::Le => got <= value,
            BoolOp::Eq => got == value,
            BoolOp::Ge => got >= value,
            BoolOp::Gt => got > value,
            BoolOp::Ne => got != value,
        }
    }
}

/// The name of a variable.
pub(super) fn var_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Var { span, .. } => Some(span.text()),
        _ => None,
    }
}

/// The arguments of `stmt` when it is a call of `name` alone.
pub(super) fn call_of<'a>(stmt: &'a LiteralStmt, name: &str) -> Option<&'a [Ref<Expr>]> {
    let Literal::Expr { expr, .. } = &stmt.literal else {
        return None;
    };
    match expr.as_ref() {
        Expr::Call { fcn, params, .. }
            if stmt.with_mods.is_empty() && var_name(fcn) == Some(name) =>
        {
            Some(params.as_slice())
        }
        _ => None,
    }
}

/// `b op a` written as `a op' b`.
fn flipped(op: &BoolOp) -> BoolOp {
    match op {
        BoolOp::Lt => BoolOp::Gt,
        BoolOp::Le => BoolOp::Ge,
        BoolOp::Ge => BoolOp::Le,
        BoolOp::Gt => BoolOp::Lt,
        BoolOp::Eq => BoolOp::Eq,
        BoolOp::Ne => BoolOp::Ne,
    }
}

impl Closed<'_> {
    /// The key of `input.arguments` without which `literal` fails, and
    /// fails without an error, whatever else it says. Only shapes where
    /// regorus turns an undefined operand into an undefined (false)
    /// statement before anything could raise an error are recognised:
    /// `some x in R`, `x := R` (or `=`), `R` alone, a builtin of one
    /// argument `f(R)` (alone or assigned), and `R` compared with a scalar
    /// literal; `R` is a reference through `input.arguments`.
    pub(super) fn argument_read(&self, literal: &Literal) -> Option<ArgumentKey> {
        let expr = match literal {
            Literal::SomeIn { collection, .. } => return self.argument_key(collection),
            Literal::Expr { expr, .. } => expr,
            _ => return None,
        };
        match expr.as_ref() {
            Expr::AssignExpr { rhs, .. } => self.strict_operand(rhs),
            Expr::BoolExpr { lhs, rhs, .. } => {
                let scalar = |e: &Expr| {
                    matches!(
                        e,
                        Expr::String { .. }
                            | Expr::RawString { .. }
                            | Expr::Number { .. }
                            | Expr::Bool { .. }
                            | Expr::Null { .. }
                    )
                };
                match (scalar(lhs), scalar(rhs)) {
                    (true, false) => self.argument_key(rhs),
                    (false, true) => self.argument_key(lhs),
                    _ => None,
                }
            }
            expr => self.strict_operand(expr),
        }
    }

    /// The path of `input.p.q` when `stmt` is `some x in input.p.q` (or
    /// `some k, x in ...`), a literal path outside the known fields and the
    /// arguments: it matches nothing, without an error, when the collection
    /// is empty or undefined.
    pub(super) fn input_items(&self, stmt: &LiteralStmt) -> Option<Vec<String>> {
        let Literal::SomeIn {
            key,
            value,
            collection,
            ..
        } = &stmt.literal
        else {
            return None;
        };
        let binds = |e: &Expr| matches!(e, Expr::Var { .. }) && !self.names(e);
        if !key.as_ref().is_none_or(|k| binds(k)) || !binds(value) {
            return None;
        }
        self.input_path(collection)
    }

    /// The path of `expr` when it is `input.p.q`, a literal path outside
    /// the known fields and the arguments.
    fn input_path(&self, expr: &Expr) -> Option<Vec<String>> {
        let (root, path) = literal_path(expr);
        let input = var_name(root) == Some("input") && !self.imported.contains("input");
        let path: Vec<String> = path.into_iter().collect::<Option<_>>()?;
        let first = path.first()?;
        (input && first != "arguments" && !self.fields.contains(&first.as_str())).then_some(path)
    }

    /// The arguments of `stmt` when it is a call of the builtin `name`
    /// alone (no rule or import of the package by that name).
    fn builtin_call<'a>(&self, stmt: &'a LiteralStmt, name: &str) -> Option<&'a [Ref<Expr>]> {
        call_of(stmt, name).filter(|_| !self.is_rule(name) && !self.imported.contains(name))
    }

    /// The comparison a definition cannot hold without, when `stmts` at
    /// `at` are `v := input.p.q`, optionally `is_number(v)`, then `v >= b`
    /// (any of `<`, `<=`, `==`, `!=`, `>`, `>=`, either way round), `b` a
    /// number literal or a rule of the package (named by a plain variable
    /// the definition does not bind), and the path outside the known
    /// fields and the arguments. None of the three raises an error:
    /// regorus orders any two values.
    pub(super) fn bound(
        &self,
        stmts: &[LiteralStmt],
        at: usize,
        bound: &BTreeSet<String>,
    ) -> Option<Comparison> {
        let plain = |stmt: &LiteralStmt| match &stmt.literal {
            Literal::Expr { expr, .. } if stmt.with_mods.is_empty() => Some(expr.clone()),
            _ => None,
        };
        let assign = plain(stmts.get(at)?)?;
        let Expr::AssignExpr {
            lhs,
            rhs,
            op: AssignOp::ColEq,
            ..
        } = assign.as_ref()
        else {
            return None;
        };
        let var = var_name(lhs)?;
        if self.names(lhs) {
            return None;
        }
        let path = self.input_path(rhs)?;
        let is_var = |e: &Expr| var_name(e) == Some(var);
        let guard = stmts.get(at + 1)?;
        let number = matches!(self.builtin_call(guard, "is_number"), Some([p]) if is_var(p));
        let next = plain(stmts.get(at + 1 + usize::from(number))?)?;
        let Expr::BoolExpr { op, lhs, rhs, .. } = next.as_ref() else {
            return None;
        };
        let (op, other) = match (is_var(lhs), is_var(rhs)) {
            (true, false) => (op.clone(), rhs),
            (false, true) => (flipped(op), lhs),
            _ => return None,
        };
        let bound = match other.as_ref() {
            Expr::Number { value, .. } => Bound::Value(value.clone()),
            Expr::Var { span, .. }
                if self.is_rule(span.text())
                    && !bound.contains(span.text())
                    && !self.imported.contains(span.text()) =>
            {
                Bound::Rule((self.here.to_vec(), span.text().to_string()))
            }
            _ => return None,
        };
        Some(Comparison {
            path,
            number,
            op,
            bound,
        })
    }

    /// The needle when `stmt` is `some s in R`, `R` one of `strings` (it
    /// holds every string of the arguments), and `next` is `contains(s,
    /// "needle")`: the two hold together only for a string that contains
    /// the needle, and neither raises an error (`s` is a string).
    pub(super) fn needle(
        &self,
        stmt: &LiteralStmt,
        next: Option<&LiteralStmt>,
        strings: &BTreeSet<Key>,
    ) -> Option<String> {
        let Literal::SomeIn {
            key: None,
            value,
            collection,
            ..
        } = &stmt.literal
        else {
            return None;
        };
        let (Expr::Var { span: item, .. }, Expr::Var { span: rule, .. }) =
            (value.as_ref(), collection.as_ref())
        else {
            return None;
        };
        let rule = (self.here.to_vec(), rule.text().to_string());
        if self.names(value) || !strings.contains(&rule) || self.imported.contains(&rule.1) {
            return None;
        }
        let [text, needle] = self.builtin_call(next?, "contains")? else {
            return None;
        };
        (var_name(text) == Some(item.text()))
            .then(|| string_literal(needle))
            .flatten()
    }

    /// `R` or a builtin of one argument `f(R)` (not `print`, which takes
    /// undefined in its stride).
    fn strict_operand(&self, expr: &Expr) -> Option<ArgumentKey> {
        if let Expr::Call { fcn, params, .. } = expr {
            let print = matches!(fcn.as_ref(), Expr::Var { span, .. } if span.text() == "print");
            return match params.as_slice() {
                [param] if !print && self.builtin(fcn) => self.argument_key(param),
                _ => None,
            };
        }
        self.argument_key(expr)
    }

    /// The key when `expr` is a reference through `input.arguments`.
    fn argument_key(&self, mut expr: &Expr) -> Option<ArgumentKey> {
        loop {
            let (refr, key) = match expr {
                Expr::RefDot { refr, field, .. } => {
                    (refr, Some(ArgumentKey::Literal(field.0.text().to_string())))
                }
                Expr::RefBrack { refr, index, .. } => {
                    let key = match index.as_ref() {
                        Expr::Var { span, .. } if !self.names(index) => {
                            Some(ArgumentKey::Var(span.text().to_string()))
                        }
                        index => string_literal(index).map(ArgumentKey::Literal),
                    };
                    (refr, key)
                }
                _ => return None,
            };
            let (root, path) = literal_path(refr);
            let through = matches!(root, Expr::Var { span, .. } if span.text() == "input")
                && path == [Some("arguments".to_string())];
            if through {
                return key;
            }
            expr = refr;
        }
    }

    pub(super) fn expr(&self, expr: &Expr) -> bool {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => true,
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().all(|i| self.expr(i))
            }
            Expr::Object { fields, .. } => fields
                .iter()
                .all(|(_, key, value)| self.expr(key) && self.expr(value)),
            Expr::Call { fcn, params, .. } => {
                self.builtin(fcn) && params.iter().all(|p| self.expr(p))
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. } => self.expr(lhs) && self.expr(rhs),
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => key.is_none() && self.expr(value) && self.expr(collection),
            // Assignments and comprehensions bind variables.
            Expr::AssignExpr { .. }
            | Expr::ArrayCompr { .. }
            | Expr::SetCompr { .. }
            | Expr::ObjectCompr { .. } => false,
        }
    }

    /// A call to a deterministic builtin (not a rule of a package).
    fn builtin(&self, fcn: &Expr) -> bool {
        let Expr::Var { span, .. } = literal_path(fcn).0 else {
            return false;
        };
        let name = span.text();
        let user = self.is_rule(name) || self.imported.contains(name);
        !(user || name == "data" || name == "input" || is_nondeterministic(fcn))
    }

    /// Whether `name` is a rule of this package.
    fn is_rule(&self, name: &str) -> bool {
        self.graph
            .packages
            .get(self.here)
            .is_some_and(|rules| rules.contains(name))
    }

    /// Whether `expr` names something other than a fresh variable.
    pub(super) fn names(&self, expr: &Expr) -> bool {
        let Expr::Var { span, .. } = expr else {
            return true;
        };
        let name = span.text();
        matches!(name, "_" | "input" | "data") || self.imported.contains(name) || self.is_rule(name)
    }

    fn reference(&self, expr: &Expr) -> bool {
        let (root, path) = literal_path(expr);
        let Expr::Var { span, .. } = root else {
            return false;
        };
        if path.iter().any(Option::is_none) {
            return false;
        }
        let path: Vec<&str> = path.iter().map_while(|s| s.as_deref()).collect();
        match span.text() {
            "input" => path
                .first()
                .is_some_and(|f| self.fields.contains(&input_field(f, path.get(1).copied()))),
            "data" => self.data(&path),
            name if self.imported.contains(name) => false,
            name => self
                .foldable
                .contains(&(self.here.to_vec(), name.to_string())),
        }
    }

    /// Plain data (no package on the path), or a foldable rule.
    fn data(&self, path: &[&str]) -> bool {
        self.graph.packages.keys().all(|package| {
            let n = package.len().min(path.len());
            let related = package.iter().zip(path).take(n).all(|(a, b)| a == b);
            // Unrelated, or a rule of this package that folds (a path that
            // stops at or above a package may reach any of its rules).
            !related
                || (path.len() > package.len()
                    && self
                        .foldable
                        .contains(&(package.clone(), path[package.len()].to_string())))
        })
    }

    /// The rules `expr` refers to outside comprehensions: an undefined one
    /// makes the expression undefined; `iterated` (or an index into the
    /// rule) fails on an empty set too.
    pub(super) fn refs(&self, expr: &Expr, into: &mut Statement, iterated: bool) {
        match expr {
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let (root, path) = literal_path(expr);
                let mut walk = expr;
                // Computed keys are expressions too.
                while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = walk {
                    if let Expr::RefBrack { index, .. } = walk {
                        self.refs(index, into, false);
                    }
                    walk = refr;
                }
                let Expr::Var { span, .. } = root else {
                    return;
                };
                // The rule referred to, and whether the reference goes
                // below it (`r.x`, `r[i]`).
                let (key, below) = match span.text() {
                    name if self.imported.contains(name) => return,
                    "input" => return,
                    "data" => {
                        let literal: Vec<&str> = path.iter().map_while(|s| s.as_deref()).collect();
                        let Some(key) = self.data_rule(&literal) else {
                            return;
                        };
                        let below = literal.len() > key.0.len() + 1;
                        (key, below)
                    }
                    name if self.is_rule(name) => {
                        ((self.here.to_vec(), name.to_string()), !path.is_empty())
                    }
                    _ => return,
                };
                if iterated || below {
                    into.iterated.insert(key.clone());
                }
                into.refs.insert(key);
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| self.refs(i, into, false));
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.refs(key, into, false);
                    self.refs(value, into, false);
                }
            }
            // `print` succeeds whatever it is given, undefined included.
            Expr::Call { fcn, .. } if matches!(fcn.as_ref(), Expr::Var { span, .. } if span.text() == "print") =>
                {}
            Expr::Call { params, .. } => params.iter().for_each(|p| self.refs(p, into, false)),
            Expr::UnaryExpr { expr, .. } => self.refs(expr, into, false),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.refs(lhs, into, false);
                self.refs(rhs, into, false);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    self.refs(key, into, false);
                }
                self.refs(value, into, false);
                self.refs(collection, into, false);
            }
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
            | Expr::ArrayCompr { .. }
            | Expr::SetCompr { .. }
            | Expr::ObjectCompr { .. } => {}
        }
    }

    /// The rule a literal `data` path names, when it runs through exactly
    /// one package and names a rule of it.
    fn data_rule(&self, path: &[&str]) -> Option<Key> {
        let mut found = None;
        for (package, rules) in &self.graph.packages {
            let through =
                package.len() < path.len() && package.iter().zip(path).all(|(a, b)| a == b);
            let above =
                package.len() >= path.len() && path.iter().zip(package).all(|(a, b)| a == b);
            if above || (through && found.is_some()) {
                return None;
            }
            if through && rules.contains(path[package.len()]) {
                found = Some((package.clone(), path[package.len()].to_string()));
            }
        }
        found
    }
}
