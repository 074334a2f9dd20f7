//! The compiled policy set and its evaluation.
//!
//! Job: load a policy directory once ([`PolicySet::load_dir`]) and decide
//! requests against it ([`PolicySet::evaluate`]).
//!
//! How a decision is read: at load we add one small adapter module that
//! gathers the decision rules into a single object,
//! `{"deny": [x | x := data.<pkg>.deny], ...}`. Each comprehension yields `[]`
//! when its rule is undefined (or not declared at all), so one `eval_rule`
//! reads every rule, shares helper-rule results between them, and never
//! confuses "undefined" with "error". (Evaluating the rules one by one cleans
//! regorus's state between calls and recomputes shared helpers.)
//!
//! The adapter has one such object per phase, and each reads only the rules
//! that phase acts on: `verdict` (requests) the six decision rules,
//! `response` (what an upstream returned) `deny`, `redact` and `warn`, with
//! the others fixed at `[]` (undefined). Rules a phase ignores are never
//! evaluated there, so a result costs only its own rules (in the shipped
//! library, no `approve` rule runs a second time per call).
//!
//! Invariants:
//! - The stored engine is already prepared (analysed and scheduled), so the
//!   per-request `clone()` is cheap and every request starts from the same state.
//! - Every evaluation runs under [`EVAL_TIME_LIMIT`].
//! - Load fails (not the first request) on parse/compile errors, a missing
//!   package, and calls to functions regorus does not have that an
//!   evaluation with empty input reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regorus::{Engine, Value};

use super::decision::Verdict;
use super::error::PolicyError;
use super::loader::{self, SourceFile};
use super::response_rules;
use super::rule_graph::{self, Graph};
use super::specialize::{Phase, Specialized, Specializer, Text};
use super::verdict::{self, REQUEST_RULES, RESPONSE_RULES, RULES};

/// Longest one decision may take. A policy decides on a request the client is
/// waiting for; a quarter second is far above any sane policy (the shipped
/// ones take ~150 µs in release builds) and short enough that a runaway loop
/// is a prompt deny, not a hang.
pub const EVAL_TIME_LIMIT: Duration = Duration::from_millis(250);

/// Package of the adapter module; chosen so it cannot clash with `mcp.*` or
/// any package a user is likely to write.
pub(super) const ADAPTER_PACKAGE: &str = "mcp_firewall_adapter";
/// Source label of the adapter module (appears in regorus error pointers).
const ADAPTER_LABEL: &str = "<mcp-firewall adapter>";

/// A loaded, compiled policy directory.
#[derive(Clone)]
pub struct PolicySet {
    engine: Engine,
    /// What the response phase evaluates: the same policy without the
    /// `deny` rules that cannot see a result (see [`response_rules`]), or
    /// `None` when every rule may.
    response: Option<Engine>,
    /// Request engines specialized to one tool or method (see
    /// [`specialize`]); `None` when the policy cannot be specialized.
    specializer: Option<Arc<Specializer>>,
    /// The same for the response phase (built from `response`'s text).
    results: Option<Arc<Specializer>>,
    /// How many `deny` rules the response phase leaves out.
    response_skips: usize,
    /// What every request gets, when the request rules read nothing of
    /// the input (see [`Self::constant_verdict`]).
    constant_request: Option<Verdict>,
    /// What every result gets, likewise.
    constant_response: Option<Verdict>,
    package: String,
    revision: String,
    files: Vec<PathBuf>,
    /// Whether any loaded file could define `hide` (see [`Self::may_hide`]).
    may_hide: bool,
    /// Whether any loaded file could read `input.rate`.
    may_read_rate: bool,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("package", &self.package)
            .field("revision", &self.revision)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Loads every `*.rego` (except `*_test.rego`) and data file under `dir`
    /// and checks that `package` (e.g. `mcp.firewall`) is declared.
    pub fn load_dir(dir: &Path, package: &str) -> Result<PolicySet, PolicyError> {
        let no_package = || PolicyError::NoPackage {
            package: package.to_string(),
        };
        let components = package_components(package).ok_or_else(no_package)?;
        let files = loader::collect(dir, false)?;
        let mut engine = loader::build_engine(&files, EVAL_TIME_LIMIT)?;
        if !declares_package(&engine, &components) {
            return Err(no_package());
        }
        // One walk of the policy serves every analysis of it below.
        // A decision rule defined from an enclosing package or by a package
        // below is beyond the analyses: the whole policy decides every input.
        let graph = Graph::build(&mut engine, ADAPTER_PACKAGE)
            .filter(|g| !g.defines_into(&components, &RULES));
        let (request_free, whole_response_free) = input_free(graph.as_ref(), &components);
        let trimmed = graph
            .as_ref()
            .and_then(|g| response_rules::response_sources(g, &files, &components));
        // `MCP_FIREWALL_SPECIALIZE=0`: every request runs the whole policy
        // (slower, never less strict; for comparisons and for doubt).
        let wanted = std::env::var_os("MCP_FIREWALL_SPECIALIZE").is_none_or(|v| v != "0");
        let specialize = |graph: Option<&Graph>, sources: &[SourceFile], phase: Phase| {
            let finish = {
                let (package, dir) = (package.to_string(), dir.to_path_buf());
                Box::new(move |text: &Text| -> Option<Engine> {
                    let mut engine = loader::build_engine(&text.sources, EVAL_TIME_LIMIT).ok()?;
                    add_adapter(&mut engine, &package, &text.roots).ok()?;
                    prepare(&mut engine, &dir).ok()?;
                    Some(engine)
                })
            };
            let specializer = Specializer::new(graph?, sources, &components, phase, finish);
            specializer.filter(|_| wanted).map(Arc::new)
        };
        let specializer = specialize(graph.as_ref(), &files, Phase::Request);
        let mut results = match trimmed {
            None => specialize(graph.as_ref(), &files, Phase::Response),
            Some(_) => None,
        };
        add_adapter(&mut engine, package, &BTreeMap::new())
            .map_err(|e| loader::load_err(dir, e))?;
        prepare(&mut engine, dir)?;
        // The policy itself loaded; should the trimmed copy not (a bug of
        // ours, not the author's), results are judged by the whole policy.
        let response = trimmed.and_then(|(sources, skipped)| {
            let mut response = loader::build_engine(&sources, EVAL_TIME_LIMIT).ok()?;
            let graph = Graph::build(&mut response, ADAPTER_PACKAGE)
                .filter(|g| !g.defines_into(&components, &RULES));
            let (_, free) = input_free(graph.as_ref(), &components);
            results = specialize(graph.as_ref(), &sources, Phase::Response);
            add_adapter(&mut response, package, &BTreeMap::new()).ok()?;
            prepare(&mut response, dir).ok()?;
            Some((response, skipped, free))
        });
        let (response, response_skips, response_free) = match response {
            Some((engine, skipped, free)) => (Some(engine), skipped, free),
            None => (None, 0, whole_response_free),
        };
        let constant_request = request_free
            .then(|| constant(&engine, Phase::Request))
            .flatten();
        let constant_response = response_free
            .then(|| constant(response.as_ref().unwrap_or(&engine), Phase::Response))
            .flatten();
        Ok(PolicySet {
            engine,
            response,
            specializer,
            results,
            response_skips,
            constant_request,
            constant_response,
            package: package.to_string(),
            revision: loader::revision(&files),
            may_hide: files.iter().any(loader::may_define_hide),
            may_read_rate: files.iter().any(loader::may_read_rate),
            files: files.into_iter().map(|f: SourceFile| f.path).collect(),
        })
    }

    /// This policy without specialized request engines: every request is
    /// decided by the whole policy (for comparisons in benchmarks).
    pub fn unspecialized(mut self) -> PolicySet {
        self.specializer = None;
        self.results = None;
        self
    }

    /// Whether the policy could ever hide an item. `false` only when no
    /// Rego file mentions `hide` outside full-line comments and the
    /// statement `default hide := false`: then the per-call "is this item
    /// hidden?" evaluation is skipped, since its answer is always no.
    /// Deliberately lexical and conservative: any other mention says yes.
    pub fn may_hide(&self) -> bool {
        self.may_hide
    }

    /// Whether the policy could read `input.rate` (lexical and
    /// conservative, as [`Self::may_hide`]). With a store shared by
    /// replicas, counting a call there is skipped when it cannot matter.
    pub fn may_read_rate(&self) -> bool {
        self.may_read_rate
    }

    /// `sha256:<hex>` over the sorted relative paths and contents of every
    /// loaded file. Changes whenever any loaded file changes.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The package the decision rules are read from.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// Every loaded file, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Decides one input document: a request, or with `phase = "response"`
    /// an upstream's result (see [`Self::evaluate_response_converted`]).
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Verdict, PolicyError> {
        let converted = super::to_rego(input)?;
        match input.get("phase").and_then(serde_json::Value::as_str) {
            Some("response") => self.evaluate_response_converted(|| Ok(converted)),
            _ => self.evaluate_converted(|| Ok(converted)),
        }
    }

    /// Decides one request whose input `convert` gives, converted (see
    /// [`super::to_rego_spliced`]); `convert` runs only when the policy
    /// reads the input.
    pub fn evaluate_converted(
        &self,
        convert: impl FnOnce() -> Result<Value, PolicyError>,
    ) -> Result<Verdict, PolicyError> {
        self.decide(Phase::Request, convert)
    }

    /// Decides one upstream result (input with `phase = "response"` and
    /// `result`): only `deny`, `redact` and `warn` are evaluated; the verdict
    /// has no `approve` or `allow`, so an empty `deny` reads as the default
    /// hold, which the response phase ignores.
    pub fn evaluate_response_converted(
        &self,
        convert: impl FnOnce() -> Result<Value, PolicyError>,
    ) -> Result<Verdict, PolicyError> {
        self.decide(Phase::Response, convert)
    }

    /// The verdict of `phase` for the input `convert` gives, which runs
    /// only when the phase's verdict is not the same for every input
    /// (see [`Self::constant_verdict`]).
    fn decide(
        &self,
        phase: Phase,
        convert: impl FnOnce() -> Result<Value, PolicyError>,
    ) -> Result<Verdict, PolicyError> {
        let constant = match phase {
            Phase::Request => &self.constant_request,
            Phase::Response => &self.constant_response,
        };
        if let Some(verdict) = constant {
            return Ok(verdict.clone());
        }
        let rules = self.eval_adapter(phase, convert()?, true)?;
        verdict::from_rules(&rules)
    }

    /// The verdict every request gets, when nothing the request rules
    /// reach reads the input, calls a builtin whose answer may change, or
    /// refers where the analysis cannot follow (an allow-all policy, a
    /// deny-all one): evaluated once at load, so a call neither converts
    /// its input nor runs the engine. `None`: each request is evaluated.
    pub fn constant_verdict(&self) -> Option<&Verdict> {
        self.constant_request.as_ref()
    }

    /// The verdict every result gets, likewise (`deny`, `redact` and `warn`
    /// as the response phase reads them): then the response phase need not
    /// even build its input.
    pub fn constant_response(&self) -> Option<&Verdict> {
        self.constant_response.as_ref()
    }

    /// The verdict kept for `input`'s known part in the response phase,
    /// when every rule it reads folds or dies for it (see
    /// `Specializer`): a lookup, which neither evaluates nor starts a
    /// build. `input` needs only the known fields: those that name the call
    /// (method, server, tool ..., the arguments' keys) and `result.findings`
    /// (only a result without findings can have a kept verdict); `None`:
    /// evaluate the whole input.
    pub fn kept_response(&self, input: &Value) -> Option<Verdict> {
        let rules = self.results.as_ref()?.kept_constant(input)?;
        verdict::from_rules(&rules).ok()
    }

    /// Whether [`Self::kept_response`] can ever find a verdict: only a
    /// policy whose response phase is specialized keeps any.
    pub fn keeps_responses(&self) -> bool {
        self.results.is_some()
    }

    /// How many `deny` rules the response phase leaves out because they
    /// cannot see a result (they were decided on the request).
    pub fn response_skips(&self) -> usize {
        self.response_skips
    }

    /// Decides a request with the full engine, never a specialized one.
    #[cfg(test)]
    pub(super) fn evaluate_unspecialized(
        &self,
        input: &serde_json::Value,
    ) -> Result<Verdict, PolicyError> {
        let phase = match input.get("phase").and_then(serde_json::Value::as_str) {
            Some("response") => Phase::Response,
            _ => Phase::Request,
        };
        let rules = self.eval_adapter(phase, super::to_rego(input)?, false)?;
        verdict::from_rules(&rules)
    }

    /// Waits for specialized builds under way; returns how many builds the
    /// cross-check refused so far.
    #[cfg(test)]
    pub(super) fn settle_specialized(&self) -> usize {
        [&self.specializer, &self.results]
            .into_iter()
            .flatten()
            .map(|s| {
                s.settle();
                s.disagreements()
            })
            .sum()
    }

    /// The response phase's specializer, for tests.
    #[cfg(test)]
    pub(super) fn results_specializer(&self) -> Option<&Specializer> {
        self.results.as_deref()
    }

    /// The specializer, for tests that look at what it built.
    #[cfg(test)]
    pub(super) fn specializer(&self) -> Option<&Specializer> {
        self.specializer.as_deref()
    }

    /// How many specialized engines (requests and results) are cached.
    #[cfg(test)]
    pub(super) fn specialized_engines(&self) -> usize {
        let count = |s: &Option<Arc<Specializer>>| s.as_ref().map_or(0, |s| s.cached());
        count(&self.specializer) + count(&self.results)
    }

    /// Runs the adapter rule of `phase` on a clone of that phase's engine
    /// (the one specialized to `input`, when `specialized` and one is built;
    /// see [`Specializer::engine_for`]); returns its JSON value, which for
    /// some known parts is known without running an engine.
    fn eval_adapter(
        &self,
        phase: Phase,
        input: Value,
        specialized: bool,
    ) -> Result<serde_json::Value, PolicyError> {
        let (whole, specializer) = match phase {
            Phase::Request => (&self.engine, &self.specializer),
            Phase::Response => (
                self.response.as_ref().unwrap_or(&self.engine),
                &self.results,
            ),
        };
        let specialized = specializer
            .as_ref()
            .filter(|_| specialized)
            .and_then(|s| s.engine_for(&input, whole));
        let mut engine = match &specialized {
            Some(Specialized::Constant(rules)) => return Ok((**rules).clone()),
            Some(Specialized::Engine(engine)) => engine.as_ref().clone(),
            None => whole.clone(),
        };
        engine.set_input(input);
        let value = engine
            .eval_rule(adapter_rule(phase.adapter_rule()))
            .map_err(|e| loader::eval_err(e, EVAL_TIME_LIMIT))?;
        serde_json::to_value(&value).map_err(|e| PolicyError::BadResult {
            rule: "verdict".to_string(),
            expected: "JSON-representable values",
            got: e.to_string(),
        })
    }
}

/// Whether the request rules and the response rules of a policy walked as
/// `graph` decide every input alike ([`Graph::input_free`]); `false` when
/// the walk did not know a module's shape (`None`).
fn input_free(graph: Option<&Graph>, package: &[&str]) -> (bool, bool) {
    let Some(graph) = graph else {
        return (false, false);
    };
    let package: Vec<String> = package.iter().map(|c| c.to_string()).collect();
    let free = |phase: Phase| {
        let roots = phase
            .roots()
            .iter()
            .map(|rule| (package.clone(), rule.to_string()))
            .collect();
        graph.input_free(&roots)
    };
    (free(Phase::Request), free(Phase::Response))
}

/// The verdict a prepared `engine` gives in `phase` to an empty input,
/// which is every input's when its rules read none ([`input_free`]).
/// `None` when it fails: then each input is evaluated, and fails alike.
fn constant(engine: &Engine, phase: Phase) -> Option<Verdict> {
    let mut engine = engine.clone();
    engine.set_input(Value::new_object());
    let rules = engine.eval_rule(adapter_rule(phase.adapter_rule())).ok()?;
    verdict::from_rules(&serde_json::to_value(&rules).ok()?).ok()
}

/// `mcp.firewall` -> `["mcp", "firewall"]`; `None` unless every component is
/// a plain Rego identifier (so it can be spliced into a rule path safely).
fn package_components(package: &str) -> Option<Vec<&str>> {
    let ident = |c: &str| {
        let mut chars = c.chars();
        chars
            .next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    };
    let parts: Vec<&str> = package.split('.').collect();
    parts.iter().all(|p| ident(p)).then_some(parts)
}

fn declares_package(engine: &Engine, components: &[&str]) -> bool {
    engine
        .get_policy_package_components()
        .map(|pkgs| pkgs.iter().any(|p| p.components == components))
        .unwrap_or(false)
}

pub(super) fn adapter_rule(rule: &str) -> String {
    format!("data.{ADAPTER_PACKAGE}.{rule}")
}

/// Adds the module that gathers the rules each phase reads into one object;
/// `known` holds, by name, rules whose gathered value is known without a
/// lookup (see [`Text::roots`]).
fn add_adapter(
    engine: &mut Engine,
    package: &str,
    known: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let components: Vec<&str> = package.split('.').collect();
    let defined = defined_rules(engine, &components);
    let text = adapter_text(package, defined.as_ref(), known);
    engine.add_policy(ADAPTER_LABEL.to_string(), text).map(drop)
}

/// The adapter's source. A rule the phase reads is gathered only where
/// `defined` (when known) says the policy can give it a value; elsewhere it
/// is undefined, which the adapter writes as `[]` without a lookup. Each
/// lookup of `data.<pkg>.<rule>` costs regorus a walk over every module
/// (~3-4 µs), undefined rule or not; a rule in `known` is written down.
fn adapter_text(
    package: &str,
    defined: Option<&BTreeSet<String>>,
    known: &BTreeMap<String, String>,
) -> String {
    let object = |read: &[&str]| -> String {
        let fields: Vec<String> = RULES
            .iter()
            .map(|r| {
                let may_be_defined = defined.is_none_or(|d| d.contains(*r));
                match (read.contains(r) && may_be_defined, known.get(*r)) {
                    (true, Some(value)) => format!("  \"{r}\": {value},"),
                    (true, None) => format!("  \"{r}\": [x | x := data.{package}.{r}],"),
                    (false, _) => format!("  \"{r}\": [],"),
                }
            })
            .collect();
        format!("{{\n{}\n}}", fields.join("\n"))
    };
    format!(
        "package {ADAPTER_PACKAGE}\n\nready := true\n\nverdict := {}\n\nresponse := {}\n",
        object(&REQUEST_RULES),
        object(&RESPONSE_RULES)
    )
}

/// The names under `data.<package>` that `engine` can give a value: its
/// rules in that package, the packages below it, and its data there.
/// `None` (any name) when a module's package or a rule's name is not a
/// plain path, or when a module of an enclosing package defines a rule
/// whose path leads into `package` (`package mcp` with
/// `firewall.deny contains ...`).
fn defined_rules(engine: &mut Engine, package: &[&str]) -> Option<BTreeSet<String>> {
    let packages = rule_graph::packages(engine.get_modules())?;
    if rule_graph::defined_from_outside(&packages, package) {
        return None;
    }
    let mut defined = BTreeSet::new();
    for (path, names) in &packages {
        if *path == package {
            defined.extend(names.iter().cloned());
        } else if path.len() > package.len() && path[..package.len()] == *package {
            defined.insert(path[package.len()].clone());
        }
    }
    let data = engine.get_data();
    let mut at = &data;
    for component in package {
        at = &at[*component];
    }
    if let Ok(fields) = at.as_object() {
        for key in fields.keys() {
            match key {
                Value::String(name) => defined.insert(name.to_string()),
                _ => return None,
            };
        }
    }
    Some(defined)
}

/// Prepares the engine (so clones start prepared) and surfaces compile-class
/// errors at load. `ready` evaluates nothing of the user's policy, so any
/// error from it is a compile error. Then one evaluation of the decision with
/// empty input catches calls to functions regorus lacks (`crypto.*`,
/// `io.jwt.*`, `http.send` ...) on paths that do not depend on input; other
/// errors from that probe depend on input and are left to `evaluate`.
/// (`http.send` exists in regorus only as a stub returning undefined; the
/// loader replaces it with an extension that errors, caught the same way.)
fn prepare(engine: &mut Engine, dir: &Path) -> Result<(), PolicyError> {
    engine
        .eval_rule(adapter_rule("ready"))
        .map_err(|e| loader::load_err(dir, e))?;
    engine.set_input(Value::new_object());
    match engine.eval_rule(adapter_rule("verdict")) {
        Err(e) if is_unsupported(&e) => Err(loader::load_err(
            dir,
            loader::name_unsupported(e.to_string().trim()),
        )),
        _ => Ok(()),
    }
}

fn is_unsupported(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    loader::UNSUPPORTED_MARKERS.iter().any(|m| text.contains(m))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
