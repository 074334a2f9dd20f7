//! Engines specialized to one tool (or one method), for requests and for
//! results.
//!
//! Job: regorus's interpreter runs every rule a decision reaches, so a call
//! to `echo` pays for the Claude Code hook rules, the rules about resources
//! and the rules about write tools, each of which gives up only after its
//! own guard fails. Much of the input is the same for every call to one
//! tool: the method, the server, whether it is trusted, the tool's
//! definition and pin. [`Specializer`] builds, per such *known part*, an
//! engine whose policy text says only what can still matter:
//!
//! - a rule that reads nothing but the known part, constant data and
//!   deterministic builtins is *folded*: evaluated once and replaced by its
//!   value (`write_tool := true`);
//! - a rule definition whose leading statements include one that is false
//!   for the known part is *dead* and blanked: a statement reading only the
//!   known part and folded rules is evaluated once (`input.method ==
//!   "hook/PreToolUse"`); one that refers to a rule all of whose definitions
//!   are dead is false by Rego's semantics (an undefined term makes its
//!   expression undefined; `some x in s` over an empty `s` fails). This runs
//!   to a fixed point, so `cc_tool in cc_write_tools` dies with `cc_tool`;
//! - a statement that cannot hold without a key of `input.arguments`
//!   (`p := input.arguments[key]` after `some key in path_keys`,
//!   `is_array(input.arguments.paths)`) is false for a call whose
//!   arguments lack it, whatever their values: which keys the arguments
//!   have is part of the known part ([`ARGUMENT_KEYS`]) when the policy has
//!   such a statement, so `echo {"message"}` runs no path or command rule;
//! - likewise `some s in strings` then `contains(s, "AKIA")`, where
//!   `strings` holds every string of the arguments, matches nothing for a
//!   call none of whose strings holds `AKIA`: which of these *needles* the
//!   strings hold is part of the known part too ([`ARGUMENT_NEEDLES`],
//!   requests only), so `echo {"text": "hello"}` runs no secret or URL
//!   rule and no `walk`; so are whether an input collection a statement
//!   iterates has items (`some url in input.urls`, [`INPUT_ITEMS`]) and
//!   whether a comparison with a constant holds (`n :=
//!   input.rate.principal_last_minute; n >= 120`, [`INPUT_BOUNDS`]), so a
//!   call below its rate limits runs no rate-limit rule. Each such fact can
//!   only leave a definition out: a `true` leaves it as written;
//! - rules no kept rule can reach any more are blanked too.
//!
//! Where that leaves every decision rule folded or dead, no engine is kept
//! at all: the adapter's value for the known part is
//! ([`Specialized::Constant`]). In the response phase the known part also
//! holds the result's findings when there are none, so rules over findings
//! fold away for most results; a result with findings is decided by the
//! whole response engine.
//!
//! Invariants:
//! - The same decision, or none: an engine is used only for inputs whose
//!   known part equals the one it was built for (the whole known part,
//!   compared as values, is the cache key: no hash a hostile upstream could
//!   collide). A policy using `with` anywhere is never specialized (a rule
//!   could be evaluated under another input). Anything the analysis cannot
//!   vouch for stays as written. Each new engine is cross-checked against
//!   the full one on the input that caused it; on any difference, that
//!   known part keeps the full engine.
//! - Errors: a statement is judged only after the statements before it
//!   evaluated true without error, and statements with no variables run
//!   first in regorus's scheduler, so blanking a dead definition never hides
//!   an error the full policy would raise on a closed guard. (A statement
//!   binding a variable from a dead rule, `some x in s` or `x := r`, can be
//!   scheduled after a later statement binding another variable; should
//!   that later statement fail with an error, the full policy refuses the
//!   call where the specialized one decides by the other rules, exactly as
//!   if that definition were absent, which it is for this tool.)
//! - Bounded: at most [`MAX_ENGINES`] specialized engines; a known part is
//!   specialized the second time it is seen, so a one-off call (`policy
//!   eval`, a listing) never pays for a build; one tool is keyed on at most
//!   [`MAX_KEY_SETS`] sets of the facts read from its calls' values
//!   ([`CALL_FACTS`]), which its caller chooses.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use regorus::unstable::{Expr, Literal, Rule, RuleHead};
use regorus::{Engine, Value};

use super::closed::{ArgumentKey, Bound, Closed, Comparison, call_of, var_name};
use super::loader::SourceFile;
use super::rule_graph::{Graph, Key, RESULT_FINDINGS, literal_path, rewrite, rewrite_with};

/// The input fields every `tools/call` of one tool shares (and its
/// results: `phase`).
const TOOL_FIELDS: [&str; 7] = [
    "version",
    "method",
    "direction",
    "phase",
    "server",
    "server_trusted",
    "tool",
];

/// The input fields every request of one method shares.
const METHOD_FIELDS: [&str; 4] = ["version", "method", "direction", "phase"];

/// In the response phase, also the result's findings: results without any
/// (most of them) share `[]`, so rules over findings fold away for them.
/// Results with findings are decided by the whole response engine (see
/// [`Specializer::plan_for`]): each set of findings would be a key of its
/// own.
const RESPONSE_TOOL_FIELDS: [&str; 8] = and_findings(TOOL_FIELDS);

const RESPONSE_METHOD_FIELDS: [&str; 5] = and_findings(METHOD_FIELDS);

/// `fields` and [`RESULT_FINDINGS`] (`M` is one more than `N`).
const fn and_findings<const N: usize, const M: usize>(
    fields: [&'static str; N],
) -> [&'static str; M] {
    let mut out = [RESULT_FINDINGS; M];
    let mut i = 0;
    while i < N {
        out[i] = fields[i];
        i += 1;
    }
    out
}

/// Which of the firewall's two evaluations an engine serves.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// Requests: the adapter's `verdict`, from the six decision rules.
    Request,
    /// Results: the adapter's `response`, from `deny`, `redact`, `warn`.
    Response,
}

impl Phase {
    pub(super) fn adapter_rule(self) -> &'static str {
        match self {
            Phase::Request => "verdict",
            Phase::Response => "response",
        }
    }

    /// The known fields of its two plans: one tool's calls, one method's.
    fn fields(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Phase::Request => (&TOOL_FIELDS, &METHOD_FIELDS),
            Phase::Response => (&RESPONSE_TOOL_FIELDS, &RESPONSE_METHOD_FIELDS),
        }
    }

    pub(super) fn roots(self) -> &'static [&'static str] {
        match self {
            Phase::Request => &super::verdict::REQUEST_RULES,
            Phase::Response => &super::verdict::RESPONSE_RULES,
        }
    }
}

/// How many specialized engines one policy keeps, the least recently used
/// going first (each holds its own copy of the policy and data: about
/// 0.5 MB with the shipped library).
pub(super) const MAX_ENGINES: usize = 32;

/// Rounds of specialization of one known part, at most (see
/// [`Plan::specialized`]): the shipped library needs three for `echo`.
const MAX_ROUNDS: usize = 4;

/// The longest value written in place of a folded rule's name, in bytes
/// of Rego. Only scalars are: regorus builds an array or object literal
/// afresh wherever it is evaluated, and one indexed inside a loop
/// (`{...}[check[0]]` in the rate limits) made an `echo` decision 31 µs
/// slower than the rule lookup it replaced.
const MAX_WRITTEN_IN: usize = 512;

/// Builds under way at once, at most.
const MAX_BUILDING: usize = 2;

/// Known parts seen once, remembered to build on the second sighting.
const MAX_SEEN: usize = 1024;

/// Sets of argument keys one tool's calls are specialized on, at most
/// (see `Cache::key_for`).
const MAX_KEY_SETS: usize = 8;

/// Prefix of the probe rules added to the analysis engine.
const PROBE: &str = "__mcp_firewall_probe_";

/// The known part's field for which keys the call's arguments have (an
/// object from each key to `true`; absent when the arguments are not an
/// object). Only probes read it: no policy field of that name is ever
/// known, so a policy reading it is decided as written.
const ARGUMENT_KEYS: &str = "__mcp_firewall_argument_keys";

/// The known part's field for which of the policy's *needles* some string
/// in the call's arguments contains (an object from each needle to a
/// boolean; absent when the arguments are). A needle is the literal of a
/// `contains(s, "AKIA")` right after `some s in R`, where `R` holds every
/// string of the arguments (see [`argument_strings_rules`]): for a call
/// whose strings hold no `AKIA`, that definition matches nothing, so
/// `echo {"text": "hello"}` runs no secret or URL rule and no `walk`.
/// Only in the request phase: the response phase looks kept verdicts up by
/// argument keys alone (`proxy::responses`), without the values needles
/// are read from.
const ARGUMENT_NEEDLES: &str = "__mcp_firewall_argument_needles";

/// The known part's field for which of the input collections a policy
/// iterates (`some url in input.urls`) have items: an object from each
/// path (as JSON text) to a boolean, `false` for an empty array, set or
/// object or an undefined path, where the statement matches nothing.
/// `input.urls` is empty for a call without a URL, so its URL rules go.
/// Requests only, as for needles.
const INPUT_ITEMS: &str = "__mcp_firewall_input_items";

/// The known part's field for which comparisons of an input value with a
/// constant hold: `n := input.rate.principal_last_minute; is_number(n);
/// n >= 120` fails for a call that has made fewer, so a rate limit not
/// reached runs no rule. An object from each comparison (as JSON text:
/// path, number guard, operator, bound) to a boolean. Requests only.
const INPUT_BOUNDS: &str = "__mcp_firewall_input_bounds";

/// The known part's fields read from a call's own values, which an agent
/// chooses: a tool is keyed on at most [`MAX_KEY_SETS`] sets of them.
const CALL_FACTS: [&str; 4] = [ARGUMENT_KEYS, ARGUMENT_NEEDLES, INPUT_ITEMS, INPUT_BOUNDS];

/// What a rule's definitions produce.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `r := v`, `r if ...`: one value, or undefined.
    Complete,
    /// `r contains x if ...`: a set, empty when nothing matches.
    Set,
    /// Anything else (functions, `a.b := 1`, `a[k] := v`, mixed kinds).
    Other,
}

/// One leading statement of a definition, and what can decide it.
#[derive(Debug, Default)]
pub(super) struct Statement {
    /// Its probe, when it reads only the known part and folded rules.
    probe: Option<usize>,
    /// Rules it refers to where an undefined value makes it undefined.
    pub(super) refs: BTreeSet<Key>,
    /// Rules it indexes or iterates (`r[x]`, `some x in r`): an empty set
    /// makes it fail too.
    pub(super) iterated: BTreeSet<Key>,
}

/// One definition as the specializer sees it.
#[derive(Debug)]
struct Def {
    key: Key,
    /// Its text: file label, start, end (`None`: end of file).
    extent: (String, usize, Option<usize>),
    /// Whether blanking it leaves its rule's other definitions meaning the
    /// same (a plain head and one body).
    can_die: bool,
    is_default: bool,
    uses: BTreeSet<Key>,
    opaque: bool,
    /// Where it names a rule of its package, and the names it binds (see
    /// [`super::rule_graph::Facts`]): a folded rule it names is written in
    /// as its value, unless the name is bound there.
    rule_vars: Vec<(usize, usize, String)>,
    bound: BTreeSet<String>,
    /// Its leading statements, up to the first the analysis cannot judge.
    statements: Vec<Statement>,
}

/// Everything about one choice of known fields that does not depend on
/// their values: computed once per load.
#[derive(Debug)]
struct Plan {
    fields: &'static [&'static str],
    foldable: BTreeSet<Key>,
    defs: Vec<Def>,
    kinds: BTreeMap<Key, Kind>,
    probes: Vec<Probe>,
    /// Rules defined exactly as an earlier rule of their package is (one
    /// definition each, the same text but for the name, no imports):
    /// the kept text names the earlier one instead (`argument_strings` and
    /// `egress_strings`, the same `walk` in two library files).
    same_as: BTreeMap<Key, Key>,
    /// Whether a probe reads which keys the arguments have: then they are
    /// part of the known part ([`ARGUMENT_KEYS`]).
    keyed: bool,
    /// The needles probes ask about ([`ARGUMENT_NEEDLES`]).
    needles: BTreeSet<String>,
    /// The input paths probes ask about ([`INPUT_ITEMS`]).
    items: BTreeSet<Vec<String>>,
    /// The comparisons probes ask about, by their key in [`INPUT_BOUNDS`],
    /// with the value of their bound.
    bounds: BTreeMap<String, (Comparison, Value)>,
    /// Whether facts read from a call's values (needles, items, bounds)
    /// may be asked about: in the request phase only.
    value_facts: bool,
    roots: BTreeSet<Key>,
    /// Whether any definition has a statement the analysis can judge:
    /// without one, a specialized engine could only fold rules that cost
    /// next to nothing (an allow-all policy), and computing the key per
    /// call would cost more than it saves.
    useful: bool,
}

/// What says whether one statement can hold: a rule added to the analysis
/// engine, or a fact looked up in the known part.
#[derive(Debug)]
struct Probe {
    /// The file and package it goes in.
    label: String,
    package: Vec<String>,
    text: String,
    ask: Ask,
}

#[derive(Debug, PartialEq)]
enum Ask {
    /// The probe rule's value on the known part.
    Rule,
    /// The probe rule reads [`ARGUMENT_KEYS`]: it can only say `false`
    /// for a call whose arguments are an object without the key.
    ArgumentKey,
    /// Whether some string of the arguments contains the needle
    /// ([`ARGUMENT_NEEDLES`]); no rule is added. Only `false` says
    /// anything: the statement then matches nothing.
    Needle(String),
    /// Whether the input collection at this path has an item
    /// ([`INPUT_ITEMS`]); as for a needle.
    Items(Vec<String>),
    /// Whether a comparison holds ([`INPUT_BOUNDS`], by this key); as for
    /// a needle.
    Bound(String),
}

impl Probe {
    /// A probe answered from the known part's facts (no rule is added).
    fn fact(label: &str, package: &[String], ask: Ask) -> Probe {
        Probe {
            label: label.to_string(),
            package: package.to_vec(),
            text: String::new(),
            ask,
        }
    }

    /// Whether only its `false` is an answer (`true` leaves what the
    /// statement says, and whether it raises an error, open).
    fn partial(&self) -> bool {
        self.ask != Ask::Rule
    }
}

/// The policy text specialized to one known part.
pub(super) struct Text {
    pub(super) sources: Vec<SourceFile>,
    /// Whether the decision rules then decide every input alike: each is
    /// folded, dead, or never defined.
    alike: bool,
    /// The decision rules whose value the text knows, each as the adapter
    /// gathers it (`[true]`, `[]`, `[set()]`), by name.
    pub(super) roots: BTreeMap<String, String>,
}

/// What the analysis concluded for one known part.
struct Outcome {
    dead: BTreeSet<usize>,
    folded: BTreeMap<Key, Value>,
    dead_rules: BTreeMap<Key, Kind>,
    reached: Option<BTreeSet<Key>>,
}

/// Builds and caches specialized request engines for one loaded policy.
pub(crate) struct Specializer {
    tool: Plan,
    method: Plan,
    files: Vec<SourceFile>,
    phase: Phase,
    finish: Finish,
    cache: Mutex<Cache>,
    /// Builds the cross-check refused (each one a bug of the analysis).
    disagreements: AtomicUsize,
}

/// How a known part is decided (`None`: by the full engine) and when it
/// was last used.
struct Cached {
    decided_by: Option<Specialized>,
    used: u64,
}

/// What decides the inputs of one known part.
#[derive(Clone)]
pub(super) enum Specialized {
    /// An engine whose policy text is specialized to it.
    Engine(Arc<Engine>),
    /// The adapter's value itself: every rule the phase reads is folded or
    /// dead, so every input with this known part gets this value and no
    /// engine need run.
    Constant(Arc<serde_json::Value>),
}

/// Keyed by the known part itself (it holds `method`, so the two plans'
/// keys never meet).
#[derive(Default)]
struct Cache {
    engines: BTreeMap<Known, Cached>,
    /// Counts lookups, to find the least recently used engine.
    clock: u64,
    seen: BTreeSet<Known>,
    /// Known parts whose engine is being built.
    building: BTreeSet<Known>,
    /// The argument-key sets each known part (without them) was keyed on.
    key_sets: BTreeMap<Known, BTreeSet<Value>>,
    /// The most builds ever under way at once.
    peak_building: usize,
}

impl Cache {
    /// The cache key of `known`: with its argument keys while its tool (or
    /// method) has been keyed on at most [`MAX_KEY_SETS`] sets of them,
    /// without past that. An agent choosing its own argument names could
    /// otherwise make each of its calls a known part of its own, and each
    /// known part seen twice costs a build (~13 ms of CPU for the library).
    fn key_for(&mut self, known: Value) -> Known {
        let (base, keys) = without_argument_facts(known);
        let mut base = Known(base);
        let Some(keys) = keys else {
            return base;
        };
        if self.key_sets.len() >= MAX_SEEN && !self.key_sets.contains_key(&base) {
            self.key_sets.clear();
        }
        let sets = self.key_sets.entry(base.clone()).or_default();
        if !sets.contains(&keys) && sets.len() >= MAX_KEY_SETS {
            return base;
        }
        sets.insert(keys.clone());
        if let (Ok(fields), Ok(facts)) = (base.0.as_object_mut(), keys.as_object()) {
            for (name, fact) in facts.iter() {
                fields.insert(name.clone(), fact.clone());
            }
        }
        base
    }
}

/// A known part as a cache key. Ordered exactly as regorus orders values,
/// except that two values sharing one allocation are equal at once,
/// without a walk: a catalogue entry's tool is converted once for all its
/// calls (`proxy::input`), so a lookup compares the few fields around its
/// definition, not the definition, schema and description, at every step.
#[derive(Clone)]
struct Known(Value);

impl Ord for Known {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_shared(&self.0, &other.0)
    }
}

impl PartialOrd for Known {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Known {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Known {}

/// `a.cmp(b)` (regorus: by variant, then objects by their sorted entries
/// and arrays by their items, in order), taking values that share an
/// allocation as equal without looking inside.
fn cmp_shared(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        (Value::Array(x), Value::Array(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        (Value::String(x), Value::String(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        (Value::Object(x), Value::Object(y)) => lexicographic(
            x.iter_sorted(),
            y.iter_sorted(),
            |(k, v), (their_k, their_v)| {
                cmp_shared(k, their_k).then_with(|| cmp_shared(v, their_v))
            },
        ),
        (Value::Array(x), Value::Array(y)) => lexicographic(x.iter(), y.iter(), cmp_shared),
        _ => a.cmp(b),
    }
}

/// `mine` and `theirs` ordered item by item with `cmp`, a prefix first
/// (what `Iterator::cmp` does with `Ord`).
fn lexicographic<T>(
    mine: impl Iterator<Item = T>,
    mut theirs: impl Iterator<Item = T>,
    cmp: impl Fn(T, T) -> std::cmp::Ordering,
) -> std::cmp::Ordering {
    for item in mine {
        let Some(their_item) = theirs.next() else {
            return std::cmp::Ordering::Greater;
        };
        let order = cmp(item, their_item);
        if order.is_ne() {
            return order;
        }
    }
    match theirs.next() {
        Some(_) => std::cmp::Ordering::Less,
        None => std::cmp::Ordering::Equal,
    }
}

/// `known` without its facts read from the call's values ([`CALL_FACTS`]),
/// and those facts, by field name.
fn without_argument_facts(mut known: Value) -> (Value, Option<Value>) {
    let Ok(fields) = known.as_object_mut() else {
        return (known, None);
    };
    let facts: BTreeMap<Value, Value> = CALL_FACTS
        .iter()
        .filter_map(|name| {
            let name = Value::from(*name);
            fields.remove(&name).map(|fact| (name, fact))
        })
        .collect();
    let facts = (!facts.is_empty()).then(|| Value::from(facts));
    (known, facts)
}

/// Turns policy text into a finished engine (the adapter added, writing
/// down the decision rules the text knows; prepared).
pub(super) type Finish = Box<dyn Fn(&Text) -> Option<Engine> + Send + Sync>;

impl Specializer {
    /// The plans for `files` as `graph` walked them (before the adapter);
    /// `None` when the policy cannot be specialized (`with` anywhere, or a
    /// shape the plans do not know).
    pub(super) fn new(
        graph: &Graph,
        files: &[SourceFile],
        package: &[&str],
        phase: Phase,
        finish: Finish,
    ) -> Option<Specializer> {
        let package: Vec<String> = package.iter().map(|c| c.to_string()).collect();
        let roots: BTreeSet<Key> = phase
            .roots()
            .iter()
            .map(|r| (package.clone(), r.to_string()))
            .collect();
        let (tool, method) = phase.fields();
        // Needles and items are read from a call's values, which the
        // response phase does not look its kept verdicts up by.
        let value_facts = matches!(phase, Phase::Request);
        // Rules a comparison's bound names, valued once: they read no input.
        let mut engine = None;
        let mut constant = |key: &Key| -> Option<Value> {
            let free = graph.reached([key]).iter().all(|k| {
                graph.by_key.get(k).is_some_and(|f| {
                    !f.any_input
                        && f.inputs.is_empty()
                        && !f.opaque
                        && !f.with
                        && !f.nondeterministic
                })
            });
            if !free {
                return None;
            }
            if engine.is_none() {
                engine = super::loader::build_engine(files, super::engine::EVAL_TIME_LIMIT).ok();
            }
            let path = format!("data.{}.{}", key.0.join("."), key.1);
            let value = engine.as_mut()?.eval_rule(path).ok()?;
            matches!(value, Value::Number(_)).then_some(value)
        };
        Some(Specializer {
            tool: Plan::new(graph, tool, &roots, value_facts, &mut constant)?,
            method: Plan::new(graph, method, &roots, value_facts, &mut constant)?,
            files: files.to_vec(),
            phase,
            finish,
            cache: Mutex::new(Cache::default()),
            disagreements: AtomicUsize::new(0),
        })
    }

    /// The specialized engine for `input`'s known part, if one is built;
    /// `None`: decide with the full engine. The second sighting of a known
    /// part starts its build on a thread of its own, so no call waits for
    /// one.
    pub(super) fn engine_for(
        self: &Arc<Self>,
        input: &Value,
        full: &Engine,
    ) -> Option<Specialized> {
        let known = self.plan_for(input)?.known_part(input);
        let mut cache = self.cache.lock().ok()?;
        let key = cache.key_for(known);
        cache.clock += 1;
        let now = cache.clock;
        if let Some(cached) = cache.engines.get_mut(&key) {
            cached.used = now;
            return cached.decided_by.clone();
        }
        if cache.building.contains(&key) {
            return None;
        }
        // At most MAX_BUILDING builds at once: a flood of new tools costs a
        // bounded amount of CPU; the others wait for their next sighting.
        if cache.seen.contains(&key) && cache.building.len() < MAX_BUILDING {
            cache.seen.remove(&key);
            cache.building.insert(key.clone());
            cache.peak_building = cache.peak_building.max(cache.building.len());
            let (this, full, input) = (self.clone(), full.clone(), input.clone());
            let building = key.clone();
            let spawned = std::thread::Builder::new()
                .name("policy-specialize".to_string())
                .spawn(move || this.build_and_keep(building, &input, &full));
            if spawned.is_err() {
                tracing::warn!("could not start a thread to specialize the policy");
                cache.building.remove(&key);
            }
            return None;
        }
        if cache.seen.len() >= MAX_SEEN {
            cache.seen.clear();
        }
        cache.seen.insert(key);
        None
    }

    /// The value kept for `input`'s known part, when it is decided by one
    /// ([`Specialized::Constant`]); a lookup only (no sighting counted, no
    /// build started).
    pub(super) fn kept_constant(&self, input: &Value) -> Option<Arc<serde_json::Value>> {
        let known = self.plan_for(input)?.known_part(input);
        let mut cache = self.cache.lock().ok()?;
        cache.clock += 1;
        let now = cache.clock;
        // Keyed on the argument facts while the tool was, else without.
        let known = Known(known);
        let key = match cache.engines.contains_key(&known) {
            true => known,
            false => Known(without_argument_facts(known.0).0),
        };
        let cached = cache.engines.get_mut(&key)?;
        match &cached.decided_by {
            Some(Specialized::Constant(rules)) => {
                cached.used = now;
                Some(rules.clone())
            }
            _ => None,
        }
    }

    /// The plan for `input`'s method; `None` when it has nothing to judge,
    /// or `input` is a result with findings.
    fn plan_for(&self, input: &Value) -> Option<&Plan> {
        let findings = &input["result"]["findings"];
        if let Phase::Response = self.phase
            && *findings != Value::Undefined
            && !findings.as_array().is_ok_and(|f| f.is_empty())
        {
            return None;
        }
        let plan = match input["method"].as_string().ok()?.as_ref() {
            "tools/call" => &self.tool,
            _ => &self.method,
        };
        plan.useful.then_some(plan)
    }

    /// Builds the engine for `known` (the known part of `input`, also its
    /// cache key) and keeps it.
    fn build_and_keep(&self, known: Known, input: &Value, full: &Engine) {
        let built = match self.plan_for(input) {
            Some(plan) => self.build(plan, &known.0, input, full),
            None => Err("failed"),
        };
        let result = built.as_ref().map_or_else(|e| *e, |_| "built");
        crate::metrics::metrics()
            .policy_specializations
            .get_or_create(&crate::metrics::Result_ { result })
            .inc();
        let built = built.ok();
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        cache.building.remove(&known);
        if cache.engines.len() >= MAX_ENGINES {
            let oldest = cache
                .engines
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone());
            oldest.map(|k| cache.engines.remove(&k));
        }
        let used = cache.clock;
        cache.engines.insert(
            known,
            Cached {
                decided_by: built,
                used,
            },
        );
    }

    /// Waits until no build is under way.
    #[cfg(test)]
    pub(super) fn settle(&self) {
        while self.cache.lock().is_ok_and(|c| !c.building.is_empty()) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The most builds ever under way at once.
    #[cfg(test)]
    pub(super) fn peak_building(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.peak_building)
    }

    /// How many builds the cross-check refused.
    #[cfg(test)]
    pub(super) fn disagreements(&self) -> usize {
        self.disagreements.load(Ordering::Relaxed)
    }

    /// Whether an engine for `input`'s known part is cached.
    #[cfg(test)]
    pub(super) fn has_engine_for(&self, input: &Value) -> bool {
        let Some(key) = self.plan_for(input).map(|p| Known(p.known_part(input))) else {
            return false;
        };
        self.cache
            .lock()
            .is_ok_and(|c| c.engines.get(&key).is_some_and(|c| c.decided_by.is_some()))
    }

    /// Whether `input`'s known part is decided by a constant.
    #[cfg(test)]
    pub(super) fn is_constant_for(&self, input: &Value) -> bool {
        let Some(key) = self.plan_for(input).map(|p| Known(p.known_part(input))) else {
            return false;
        };
        self.cache.lock().is_ok_and(|c| {
            c.engines
                .get(&key)
                .is_some_and(|c| matches!(c.decided_by, Some(Specialized::Constant(_))))
        })
    }

    /// How many specialized engines are cached.
    #[cfg(test)]
    pub(super) fn cached(&self) -> usize {
        self.cache
            .lock()
            .map(|c| {
                c.engines
                    .values()
                    .filter(|c| c.decided_by.is_some())
                    .count()
            })
            .unwrap_or(0)
    }

    /// The policy text specialized to `input`'s known part, when the
    /// analysis vouches for one.
    #[cfg(test)]
    pub(super) fn text_for(&self, input: &Value) -> Option<String> {
        let plan = self.plan_for(input)?;
        let text = plan.specialized(&self.files, &plan.known_part(input))?;
        Some(
            text.sources
                .iter()
                .map(|f| f.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// The decision rules the text for `input`'s known part knows, as the
    /// adapter writes them down.
    #[cfg(test)]
    pub(super) fn roots_for(&self, input: &Value) -> Option<BTreeMap<String, String>> {
        let plan = self.plan_for(input)?;
        Some(
            plan.specialized(&self.files, &plan.known_part(input))?
                .roots,
        )
    }

    /// The engine for `input`'s known part, cross-checked on `input`; the
    /// error is the metric's label: `failed` (the analysis or the build
    /// could not vouch for one) or `refused` (the cross-check disagreed).
    fn build(
        &self,
        plan: &Plan,
        known: &Value,
        input: &Value,
        full: &Engine,
    ) -> Result<Specialized, &'static str> {
        let text = plan.specialized(&self.files, known).ok_or("failed")?;
        let engine = (self.finish)(&text).ok_or("failed")?;
        // The cross-check: both engines decide the input that caused this.
        let decide = |engine: &Engine| {
            let mut engine = engine.clone();
            engine.set_input(input.clone());
            engine
                .eval_rule(super::engine::adapter_rule(self.phase.adapter_rule()))
                .map_err(|e| e.to_string())
        };
        let (theirs, ours) = (decide(full), decide(&engine));
        if theirs.is_ok() != ours.is_ok() || (theirs.is_ok() && theirs != ours) {
            self.disagreements.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                full = ?theirs,
                specialized = ?ours,
                "a specialized policy engine disagreed with the full policy; using the full policy for this tool"
            );
            return Err("refused");
        }
        match ours
            .ok()
            .filter(|_| text.alike)
            .map(|v| serde_json::to_value(&v))
        {
            Some(Ok(rules)) => Ok(Specialized::Constant(Arc::new(rules))),
            _ => Ok(Specialized::Engine(Arc::new(engine))),
        }
    }
}

impl Plan {
    /// This plan's fields of `input`, as an object (absent fields stay
    /// absent): what every input sharing them is decided alike on.
    fn known_part(&self, input: &Value) -> Value {
        let mut known = BTreeMap::new();
        for field in self.fields {
            let (name, value) = match *field {
                RESULT_FINDINGS => {
                    let findings = &input["result"]["findings"];
                    let result = || {
                        Value::from(BTreeMap::from([(
                            Value::from("findings"),
                            findings.clone(),
                        )]))
                    };
                    ("result", (*findings != Value::Undefined).then(result))
                }
                name => {
                    let value = &input[name];
                    (name, (*value != Value::Undefined).then(|| value.clone()))
                }
            };
            if let Some(value) = value {
                known.insert(Value::from(name), value);
            }
        }
        if self.keyed
            && let Ok(arguments) = input["arguments"].as_object()
        {
            let keys = arguments.keys().map(|k| (k.clone(), Value::from(true)));
            known.insert(
                Value::from(ARGUMENT_KEYS),
                Value::from(keys.collect::<BTreeMap<_, _>>()),
            );
        }
        let arguments = &input["arguments"];
        if !self.needles.is_empty() && *arguments != Value::Undefined {
            known.insert(
                Value::from(ARGUMENT_NEEDLES),
                needles_found(&self.needles, arguments),
            );
        }
        if !self.items.is_empty() {
            let items = self.items.iter().filter_map(|path| {
                let mut value = input;
                for field in path {
                    value = &value[field.as_str()];
                }
                let has_items = match value {
                    Value::Undefined => false,
                    Value::Array(items) => !items.is_empty(),
                    Value::Set(items) => !items.is_empty(),
                    Value::Object(fields) => !fields.is_empty(),
                    _ => true,
                };
                let path = serde_json::to_string(path).ok()?;
                Some((Value::from(path), Value::from(has_items)))
            });
            known.insert(
                Value::from(INPUT_ITEMS),
                Value::from(items.collect::<BTreeMap<_, _>>()),
            );
        }
        if !self.bounds.is_empty() {
            let bounds = self.bounds.iter().map(|(key, (comparison, value))| {
                (
                    Value::from(key.as_str()),
                    Value::from(comparison.holds(input, value)),
                )
            });
            known.insert(
                Value::from(INPUT_BOUNDS),
                Value::from(bounds.collect::<BTreeMap<_, _>>()),
            );
        }
        Value::from(known)
    }

    /// The policy text specialized to `known`, when the analysis vouches
    /// for one, with what it knows of the decision rules.
    ///
    /// In rounds: a rule that died is a constant in the text one round
    /// gives (`shell_commands := set()`), so the next round, walking that
    /// text afresh, can judge the statements over it
    /// (`count(shell_commands) > 0`). Each round's text decides every
    /// input with this known part as the one before it did; the rounds
    /// stop when one changes nothing, after [`MAX_ROUNDS`], or when one
    /// cannot vouch for its text (the last text that could is kept).
    fn specialized(&self, files: &[SourceFile], known: &Value) -> Option<Text> {
        let mut text = self.round(files, known)?;
        for _ in 1..MAX_ROUNDS {
            if text.alike {
                break;
            }
            let Some(next) = self.next_round(&text.sources, known) else {
                break;
            };
            let unchanged = next
                .sources
                .iter()
                .zip(&text.sources)
                .all(|(a, b)| a.text == b.text);
            text = next;
            if unchanged {
                break;
            }
        }
        Some(text)
    }

    /// One round of [`Plan::specialized`] with this plan.
    fn round(&self, files: &[SourceFile], known: &Value) -> Option<Text> {
        let outcome = self.analyse(files, known)?;
        let alike = self.roots.iter().all(|root| {
            outcome.folded.contains_key(root)
                || outcome.dead_rules.contains_key(root)
                || !self.kinds.contains_key(root)
        });
        // What the adapter can write down instead of looking up.
        let mut roots = BTreeMap::new();
        for root in &self.roots {
            let gathered = match (outcome.folded.get(root), outcome.dead_rules.get(root)) {
                (Some(Value::Undefined), _) | (None, Some(Kind::Complete)) => "[]".to_string(),
                (Some(value), _) => match rego_text(value) {
                    Some(text) => format!("[{text}]"),
                    None => continue,
                },
                (None, Some(Kind::Set)) => "[set()]".to_string(),
                _ => continue,
            };
            roots.insert(root.1.clone(), gathered);
        }
        Some(Text {
            sources: self.sources(files, &outcome)?,
            alike,
            roots,
        })
    }

    /// The round after the one that gave `sources`: a plan for that text.
    fn next_round(&self, sources: &[SourceFile], known: &Value) -> Option<Text> {
        let mut engine =
            super::loader::build_engine(sources, super::engine::EVAL_TIME_LIMIT).ok()?;
        let graph = Graph::build(&mut engine, super::engine::ADAPTER_PACKAGE)?;
        // Bounds are literals by now (folded rules are written in).
        Plan::new(
            &graph,
            self.fields,
            &self.roots,
            self.value_facts,
            &mut |_| None,
        )?
        .round(sources, known)
    }

    /// `None` for a policy using `with` anywhere (a rule could be
    /// evaluated under another input) or of a shape the plan does not know.
    fn new(
        graph: &Graph,
        fields: &'static [&'static str],
        roots: &BTreeSet<Key>,
        value_facts: bool,
        constant: &mut dyn FnMut(&Key) -> Option<Value>,
    ) -> Option<Plan> {
        if graph.definitions.iter().any(|d| d.facts.with) {
            return None;
        }
        let mut kinds: BTreeMap<Key, Kind> = BTreeMap::new();
        for definition in &graph.definitions {
            let kind = match definition.rule.as_ref() {
                Rule::Spec { head, .. } => head_kind(head),
                Rule::Default { refr, args, .. } if args.is_empty() && is_plain(refr) => {
                    Kind::Complete
                }
                Rule::Default { .. } => Kind::Other,
            };
            kinds
                .entry(definition.key.clone())
                .and_modify(|k| {
                    if *k != kind {
                        *k = Kind::Other;
                    }
                })
                .or_insert(kind);
        }
        let foldable: BTreeSet<Key> = kinds
            .iter()
            .filter(|(key, kind)| {
                **kind != Kind::Other
                    && graph.reached([*key]).iter().all(|k| {
                        graph.by_key.get(k).is_none_or(|f| {
                            !f.any_input
                                && !f.opaque
                                && !f.with
                                && !f.nondeterministic
                                && f.inputs.iter().all(|i| fields.contains(&i.as_str()))
                        })
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        let strings = match value_facts {
            true => argument_strings_rules(graph, &kinds),
            false => BTreeSet::new(),
        };
        let mut probes = Vec::new();
        let mut defs = Vec::new();
        let (mut needles, mut items, mut bounds) =
            (BTreeSet::new(), BTreeSet::new(), BTreeMap::new());
        for definition in &graph.definitions {
            let extent = graph.extent(&definition.rule)?;
            let (can_die, is_default, stmts) = match definition.rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    let single = bodies.len() == 1 && !bodies[0].is_else;
                    let can_die = single && head_kind(head) != Kind::Other;
                    let stmts = if can_die {
                        Some(&bodies[0].query.stmts)
                    } else {
                        None
                    };
                    (can_die, false, stmts)
                }
                Rule::Default { .. } => (false, true, None),
            };
            let mut statements = Vec::new();
            // The closed statements so far, and the variables they bind:
            // a probe on an argument key read by a variable repeats them.
            let mut prefix: Vec<String> = Vec::new();
            let mut bound: BTreeSet<String> = BTreeSet::new();
            let check = Closed {
                graph,
                here: &definition.key.0,
                imported: &definition.imported,
                fields,
                foldable: &foldable,
            };
            let stmts = stmts.map_or(&[][..], |s| s.as_slice());
            for (at, stmt) in stmts.iter().enumerate() {
                if !stmt.with_mods.is_empty() {
                    break;
                }
                let mut statement = Statement::default();
                let closed = match &stmt.literal {
                    Literal::Expr { expr, .. } => {
                        check.refs(expr, &mut statement, false);
                        check.expr(expr)
                    }
                    Literal::SomeIn {
                        key,
                        value,
                        collection,
                        ..
                    } => {
                        check.refs(collection, &mut statement, true);
                        let binds = |e: &Expr| matches!(e, Expr::Var { .. }) && !check.names(e);
                        key.as_ref().is_none_or(|k| binds(k))
                            && binds(value)
                            && check.expr(collection)
                    }
                    _ => break,
                };
                let name = format!("{PROBE}{}", probes.len());
                if closed {
                    let text = statement_text(&stmt.span)?;
                    if let Literal::SomeIn { key, value, .. } = &stmt.literal {
                        bound.extend(
                            key.iter()
                                .chain([value])
                                .map(|v| v.span().text().to_string()),
                        );
                    }
                    statement.probe = Some(probes.len());
                    probes.push(Probe {
                        label: extent.0.clone(),
                        package: definition.key.0.clone(),
                        text: format!("{name} if {{\n{text}\n}}"),
                        ask: Ask::Rule,
                    });
                    prefix.push(text);
                } else if let Some(key) = check.argument_read(&stmt.literal) {
                    // Holds only if the call's arguments have the key.
                    let index = match key {
                        ArgumentKey::Literal(k) => Some(serde_json::to_string(&k).ok()?),
                        ArgumentKey::Var(v) => bound.contains(&v).then_some(v),
                    };
                    if let Some(index) = index {
                        statement.probe = Some(probes.len());
                        let body = prefix.join("\n");
                        probes.push(Probe {
                            label: extent.0.clone(),
                            package: definition.key.0.clone(),
                            text: format!(
                                "{name} if {{\n{body}\ninput.{ARGUMENT_KEYS}[{index}]\n}}"
                            ),
                            ask: Ask::ArgumentKey,
                        });
                    }
                } else {
                    let fact = if let Some(needle) = check.needle(stmt, stmts.get(at + 1), &strings)
                    {
                        // With the statement after it, holds only if some
                        // string of the arguments contains the needle.
                        needles.insert(needle.clone());
                        Some(Ask::Needle(needle))
                    } else if let Some((key, comparison, value)) = value_facts
                        .then(|| check.bound(stmts, at, &definition.facts.bound))
                        .flatten()
                        .and_then(|c| {
                            let value = match &c.bound {
                                Bound::Value(value) => value.clone(),
                                Bound::Rule(rule) => constant(rule)?,
                            };
                            Some((bound_key(&c, &value)?, c, value))
                        })
                    {
                        // Holds only if the comparison does.
                        bounds.insert(key.clone(), (comparison, value));
                        Some(Ask::Bound(key))
                    } else if let Some(path) = check.input_items(stmt).filter(|_| value_facts) {
                        // Holds only if the collection has an item.
                        items.insert(path.clone());
                        Some(Ask::Items(path))
                    } else {
                        None
                    };
                    if let Some(ask) = fact {
                        statement.probe = Some(probes.len());
                        probes.push(Probe::fact(&extent.0, &definition.key.0, ask));
                    }
                }
                let judged = statement.probe.is_some()
                    || !statement.refs.is_empty()
                    || !statement.iterated.is_empty();
                if !judged {
                    break;
                }
                statements.push(statement);
            }
            defs.push(Def {
                key: definition.key.clone(),
                extent,
                can_die,
                is_default,
                uses: definition.facts.uses.clone(),
                opaque: definition.facts.opaque,
                rule_vars: definition.facts.rule_vars.clone(),
                bound: definition.facts.bound.clone(),
                statements,
            });
        }
        let useful = defs.iter().any(|d| !d.statements.is_empty());
        Some(Plan {
            same_as: same_definitions(graph, &kinds),
            useful,
            keyed: probes.iter().any(|p| p.ask == Ask::ArgumentKey),
            needles,
            items,
            bounds,
            value_facts,
            fields,
            foldable,
            defs,
            kinds,
            probes,
            roots: roots.clone(),
        })
    }

    /// Runs the probes on `known` and finds the dead definitions and the
    /// folded values.
    fn analyse(&self, files: &[SourceFile], known: &Value) -> Option<Outcome> {
        let appended: Vec<(String, String)> = self
            .probes
            .iter()
            .filter(|p| matches!(p.ask, Ask::Rule | Ask::ArgumentKey))
            .map(|p| (p.label.clone(), p.text.clone()))
            .collect();
        let sources = rewrite(files, &[], &appended)?;
        let mut probe =
            super::loader::build_engine(&sources, super::engine::EVAL_TIME_LIMIT).ok()?;
        probe.set_input(known.clone());
        // Without the argument keys (arguments that are not an object), a
        // keyed probe knows nothing.
        let keys_known = known[ARGUMENT_KEYS] != Value::Undefined;
        // Some(true): the statement holds; Some(false): it fails; None: error.
        let answers: Vec<Option<bool>> = self
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                match &p.ask {
                    Ask::ArgumentKey if !keys_known => return None,
                    Ask::Needle(needle) => {
                        return known[ARGUMENT_NEEDLES][needle.as_str()]
                            .as_bool()
                            .ok()
                            .copied();
                    }
                    Ask::Items(path) => {
                        let path = serde_json::to_string(path).ok()?;
                        return known[INPUT_ITEMS][path.as_str()].as_bool().ok().copied();
                    }
                    Ask::Bound(key) => {
                        return known[INPUT_BOUNDS][key.as_str()].as_bool().ok().copied();
                    }
                    _ => {}
                }
                let path = format!("data.{}.{PROBE}{i}", p.package.join("."));
                match probe.eval_rule(path) {
                    Ok(Value::Undefined) => Some(false),
                    Ok(_) => Some(true),
                    Err(_) => None,
                }
            })
            .collect();
        // Dead definitions and rules, to a fixed point.
        let mut dead: BTreeSet<usize> = BTreeSet::new();
        let mut dead_rules: BTreeMap<Key, Kind> = BTreeMap::new();
        loop {
            let mut changed = false;
            for (i, def) in self.defs.iter().enumerate() {
                if dead.contains(&i) || !def.can_die || self.foldable.contains(&def.key) {
                    continue;
                }
                for statement in &def.statements {
                    // An undefined rule makes the statement undefined; an
                    // empty set only where it is iterated or indexed.
                    let fails = statement
                        .refs
                        .iter()
                        .any(|r| dead_rules.get(r) == Some(&Kind::Complete))
                        || statement
                            .iterated
                            .iter()
                            .any(|r| dead_rules.contains_key(r));
                    let answer = statement.probe.and_then(|p| answers[p]);
                    if fails || answer == Some(false) {
                        dead.insert(i);
                        changed = true;
                        break;
                    }
                    // A keyed probe only asks whether the arguments have the
                    // key, a needle whether some string holds it: `true`
                    // leaves what the statement says (and whether it raises
                    // an error) open.
                    let partial = statement.probe.is_some_and(|p| self.probes[p].partial());
                    if answer != Some(true) || partial {
                        break;
                    }
                }
            }
            for (key, kind) in &self.kinds {
                if *kind == Kind::Other || dead_rules.contains_key(key) {
                    continue;
                }
                let mut defs = self.defs.iter().enumerate().filter(|(_, d)| d.key == *key);
                if defs.all(|(i, d)| !d.is_default && dead.contains(&i)) {
                    dead_rules.insert(key.clone(), *kind);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // What the kept definitions still reach; folded and dead rules end
        // the walk (their text goes).
        let mut reached = BTreeSet::new();
        let mut opaque = false;
        let mut stack: Vec<Key> = self.roots.iter().cloned().collect();
        while let Some(key) = stack.pop() {
            if !reached.insert(key.clone())
                || self.foldable.contains(&key)
                || dead_rules.contains_key(&key)
            {
                continue;
            }
            for (i, def) in self.defs.iter().enumerate() {
                if def.key == key && !dead.contains(&i) {
                    opaque |= def.opaque;
                    stack.extend(def.uses.iter().cloned());
                }
            }
        }
        let mut folded = BTreeMap::new();
        for key in self.foldable.iter().filter(|k| reached.contains(*k)) {
            let path = format!("data.{}.{}", key.0.join("."), key.1);
            // A rule that fails to evaluate here stays as written: the
            // decision raises its error as before.
            if let Ok(value) = probe.eval_rule(path) {
                folded.insert(key.clone(), value);
            }
        }
        Some(Outcome {
            dead,
            folded,
            dead_rules,
            reached: (!opaque).then_some(reached),
        })
    }

    /// The policy text for `outcome`: dead definitions, folded and dead
    /// rules and (unless something opaque is kept) unreached rules blanked;
    /// the values of folded and dead rules still reached appended; in the
    /// definitions kept, a folded rule named by a plain variable written in
    /// as its value (regorus looks a rule up at a cost of microseconds;
    /// a small literal costs less).
    fn sources(&self, files: &[SourceFile], outcome: &Outcome) -> Option<Vec<SourceFile>> {
        let mut blank = Vec::new();
        let mut written_in = Vec::new();
        let mut appended: BTreeMap<Key, (String, String)> = BTreeMap::new();
        for (i, def) in self.defs.iter().enumerate() {
            let unreached = outcome
                .reached
                .as_ref()
                .is_some_and(|r| !r.contains(&def.key));
            let replaced =
                outcome.folded.contains_key(&def.key) || outcome.dead_rules.contains_key(&def.key);
            if !(outcome.dead.contains(&i) || replaced || unreached) {
                for (start, end, name) in &def.rule_vars {
                    let key = (def.key.0.clone(), name.clone());
                    // A rule defined as another is: name that one, while
                    // it is kept as written.
                    let kept = |k: &Key| {
                        outcome.reached.as_ref().is_none_or(|r| r.contains(k))
                            && !outcome.folded.contains_key(k)
                            && !outcome.dead_rules.contains_key(k)
                    };
                    if let Some(same) = self.same_as.get(&key)
                        && kept(same)
                        && !def.bound.contains(name)
                        && !def.bound.contains(&same.1)
                    {
                        written_in.push((def.extent.0.clone(), *start, *end, same.1.clone()));
                        continue;
                    }
                    let value = outcome
                        .folded
                        .get(&key)
                        .filter(|v| is_scalar(v) && !def.bound.contains(name));
                    let Some(text) = value.and_then(rego_text) else {
                        continue;
                    };
                    if text.len() <= MAX_WRITTEN_IN {
                        written_in.push((def.extent.0.clone(), *start, *end, text));
                    }
                }
                continue;
            }
            blank.push(def.extent.clone());
            if replaced && !unreached && !appended.contains_key(&def.key) {
                let text = match (
                    outcome.folded.get(&def.key),
                    outcome.dead_rules.get(&def.key),
                ) {
                    (Some(Value::Undefined), _) | (None, Some(Kind::Complete)) => {
                        format!("{} if false", def.key.1)
                    }
                    (Some(value), _) => format!("{} := {}", def.key.1, rego_text(value)?),
                    (None, _) => format!("{} := set()", def.key.1),
                };
                appended.insert(def.key.clone(), (def.extent.0.clone(), text));
            }
        }
        let appended: Vec<(String, String)> = appended.into_values().collect();
        rewrite_with(files, &blank, &written_in, &appended)
    }
}

/// A statement's source text. regorus's spans stop before a closing quote
/// or backtick, so one that follows the span is taken too (nothing else
/// can follow an expression directly). Should the text be cut wrong anyway,
/// the probe engine does not load and the policy is not specialized.
fn statement_text(span: &regorus::unstable::Span) -> Option<String> {
    let contents = span.source.contents();
    let (start, mut end) = (span.start as usize, span.end as usize);
    if matches!(contents.as_bytes().get(end), Some(b'"' | b'`')) {
        end += 1;
    }
    contents.get(start..end).map(str::to_string)
}

fn is_plain(refr: &Expr) -> bool {
    matches!(refr, Expr::Var { .. })
}

fn head_kind(head: &RuleHead) -> Kind {
    match head {
        RuleHead::Compr { refr, .. } if is_plain(refr) => Kind::Complete,
        RuleHead::Set {
            refr, key: Some(_), ..
        } if is_plain(refr) => Kind::Set,
        _ => Kind::Other,
    }
}

/// The rules that hold every string of the call's arguments, and nothing
/// else: one definition, in a module without imports, written
/// `r contains s if { walk(input.arguments, [_, s]); is_string(s) }`, with
/// `walk` and `is_string` the builtins (no rule of the package by that
/// name). Each string anywhere in the arguments is in such a rule's set,
/// whatever its depth (regorus's `walk` visits every value).
fn argument_strings_rules(graph: &Graph, kinds: &BTreeMap<Key, Kind>) -> BTreeSet<Key> {
    let mut count: BTreeMap<&Key, usize> = BTreeMap::new();
    for definition in &graph.definitions {
        *count.entry(&definition.key).or_default() += 1;
    }
    let mut rules = BTreeSet::new();
    for definition in &graph.definitions {
        let key = &definition.key;
        let builtins = graph
            .packages
            .get(&key.0)
            .is_some_and(|names| !names.contains("walk") && !names.contains("is_string"));
        if kinds.get(key) != Some(&Kind::Set)
            || count.get(key) != Some(&1)
            || !definition.imported.is_empty()
            || !builtins
        {
            continue;
        }
        let Rule::Spec {
            head: RuleHead::Set {
                key: Some(item), ..
            },
            bodies,
            ..
        } = definition.rule.as_ref()
        else {
            continue;
        };
        let (Some(item), [body]) = (var_name(item), bodies.as_slice()) else {
            continue;
        };
        let [walked, string] = body.query.stmts.as_slice() else {
            continue;
        };
        let walks = match call_of(walked, "walk") {
            Some([root, pair]) => {
                let (from, path) = literal_path(root);
                let pair = match pair.as_ref() {
                    Expr::Array { items, .. } => match items.as_slice() {
                        [path, value] => {
                            var_name(path) == Some("_") && var_name(value) == Some(item)
                        }
                        _ => false,
                    },
                    _ => false,
                };
                var_name(from) == Some("input") && path == [Some("arguments".to_string())] && pair
            }
            _ => false,
        };
        let strings =
            matches!(call_of(string, "is_string"), Some([value]) if var_name(value) == Some(item));
        if walks && strings && !body.is_else && body.assign.is_none() {
            rules.insert(key.clone());
        }
    }
    rules
}

/// A comparison's key in [`INPUT_BOUNDS`], with its bound's value.
fn bound_key(comparison: &Comparison, value: &Value) -> Option<String> {
    let op = format!("{:?}", comparison.op);
    serde_json::to_string(&(&comparison.path, comparison.number, op, value)).ok()
}

/// For each of `needles`, whether some string in `arguments` contains it:
/// an object from needle to boolean. Object keys are searched too, which
/// `walk` does not visit: a needle found only there costs a `true` (the
/// rule runs), never a wrong `false`.
fn needles_found(needles: &BTreeSet<String>, arguments: &Value) -> Value {
    let mut found: BTreeMap<&str, bool> = needles.iter().map(|n| (n.as_str(), false)).collect();
    let mut missing = needles.len();
    let mut search = |text: &str, found: &mut BTreeMap<&str, bool>| {
        for (needle, seen) in found.iter_mut() {
            if !*seen && text.contains(needle) {
                *seen = true;
                missing -= 1;
            }
        }
        missing == 0
    };
    let mut stack = vec![arguments];
    while let Some(value) = stack.pop() {
        let done = match value {
            Value::String(text) => search(text, &mut found),
            Value::Array(items) => {
                stack.extend(items.iter());
                false
            }
            Value::Set(items) => {
                stack.extend(items.iter());
                false
            }
            Value::Object(fields) => {
                let mut done = false;
                for (name, field) in fields.iter() {
                    if let Value::String(name) = name {
                        done |= search(name, &mut found);
                    }
                    stack.push(field);
                }
                done
            }
            _ => false,
        };
        if done {
            break;
        }
    }
    Value::from(
        found
            .into_iter()
            .map(|(needle, seen)| (Value::from(needle), Value::from(seen)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Each rule defined exactly as an earlier rule of its package, and that
/// rule: one definition each with a plain head (`r contains x if`,
/// `r := v if`), one body, no imports in either module, and the same text
/// once the name is taken off the front and whitespace collapsed.
fn same_definitions(graph: &Graph, kinds: &BTreeMap<Key, Kind>) -> BTreeMap<Key, Key> {
    let mut count: BTreeMap<&Key, usize> = BTreeMap::new();
    for definition in &graph.definitions {
        *count.entry(&definition.key).or_default() += 1;
    }
    let mut first: BTreeMap<(Vec<String>, String), Key> = BTreeMap::new();
    let mut same = BTreeMap::new();
    for definition in &graph.definitions {
        let key = &definition.key;
        let plain = kinds.get(key).is_some_and(|k| *k != Kind::Other);
        let Rule::Spec { span, bodies, .. } = definition.rule.as_ref() else {
            continue;
        };
        if !plain
            || count.get(key) != Some(&1)
            || bodies.len() != 1
            || bodies[0].is_else
            || !definition.imported.is_empty()
        {
            continue;
        }
        let Some(rest) = span.text().strip_prefix(key.1.as_str()) else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_whitespace() || c == ':' || c == '=') {
            continue;
        }
        let text = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        match first.entry((key.0.clone(), text)) {
            Entry::Occupied(earlier) => {
                same.insert(key.clone(), earlier.get().clone());
            }
            Entry::Vacant(slot) => {
                slot.insert(key.clone());
            }
        }
    }
    same
}

/// A string, number, boolean or null.
fn is_scalar(value: &Value) -> bool {
    matches!(
        value,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

/// A value as Rego source text; `None` for `undefined` inside it.
fn rego_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_string(value).ok()?
        }
        Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(rego_text).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Set(items) if items.is_empty() => "set()".to_string(),
        Value::Set(items) => {
            let items: Option<Vec<String>> = items.iter().map(rego_text).collect();
            format!("{{{}}}", items?.join(", "))
        }
        Value::Object(fields) => {
            let fields: Option<Vec<String>> = fields
                .iter()
                .map(|(k, v)| Some(format!("{}: {}", rego_text(k)?, rego_text(v)?)))
                .collect();
            format!("{{{}}}", fields?.join(", "))
        }
        Value::Undefined => return None,
    })
}

#[cfg(test)]
#[path = "specialize_tests.rs"]
mod tests;
