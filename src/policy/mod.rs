//! Policy: plain decision types and the regorus adapter.
//!
//! Job: load a directory of Rego policies, decide one request at a time, and
//! run the policies' own `test_*` rules. No tokio, no sockets, no file
//! watching: the proxy calls [`PolicySet::evaluate`] and enforces the result.
//!
//! | file | job |
//! |---|---|
//! | `decision.rs` | [`Decision`] and [`Verdict`], pure data |
//! | `error.rs` | [`PolicyError`], every way deciding can fail |
//! | `loader.rs` | directory walk, revision hash, engine construction |
//! | `convert.rs` | JSON -> regorus values, with already-converted parts spliced in |
//! | `engine.rs` | [`PolicySet`]: load once, evaluate per request |
//! | `rule_graph.rs` | what each rule definition reads and uses (regorus's syntax tree) |
//! | `closed.rs` | which statements a known part of the input decides |
//! | `specialize.rs` | request engines specialized to one tool or method, cached |
//! | `response_rules.rs` | which `deny` rules the response phase can leave out |
//! | `verdict.rs` | rule values -> [`Verdict`]: type checks and precedence |
//! | `testing.rs` | [`run_tests`], a minimal `opa test` |
//! | `coverage.rs` | [`FileCoverage`]: line coverage merged over a test run |
//! | `explain.rs` | [`explain`]: rule values and the rule behind each reason |
//! | `replay.rs` | [`replay_record`]: re-decide an audit record with a new policy |
//!
//! Invariant (fail closed): every failure is a [`PolicyError`]; the caller
//! turns it into a deny. Nothing here panics on bad policy or input, and
//! nothing defaults to allow. The contract is documented in
//! `docs/policy-input.md`.

mod closed;
mod convert;
mod coverage;
mod decision;
mod engine;
mod error;
mod explain;
mod loader;
mod replay;
mod response_rules;
mod rule_graph;
mod specialize;
#[cfg(test)]
mod test_support;
mod testing;
mod verdict;

pub use convert::{Splice, to_rego, to_rego_over, to_rego_spliced};
pub use coverage::FileCoverage;
pub use decision::{DEFAULT_HOLD_REASON, Decision, Verdict};
pub use engine::{EVAL_TIME_LIMIT, PolicySet};
pub use error::PolicyError;
pub use explain::{Explanation, ReasonSource, explain};
pub use loader::discard_library_backtraces;
pub use replay::{Change, DECIDED_EVENT, Replayed, replay_record};
pub use testing::{TEST_TIME_LIMIT, TestOptions, TestOutcome, TestRun, run_tests, run_tests_with};
