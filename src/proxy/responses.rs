//! The response phase: what an upstream returns for `tools/call`,
//! `resources/read` and `prompts/get` goes through the policy again before
//! the model sees it.
//!
//! In order: cap the size (truncate with a note), run the built-in
//! detectors ([`crate::inspect`]), evaluate the policy with the call's input
//! plus `input.phase = "response"` and `input.result` (the result with
//! `findings`, `size_bytes`, `truncated`), then apply its rules: `deny`
//! withholds the result, `redact` replaces spans or values, `warn` puts a
//! note in front. `allow`, `approve` and the default hold mean nothing here.
//! The call's `call.completed` record carries the inspection (`inspection`:
//! a digest of the original result, the findings' kinds and places, never
//! their text, what was redacted, whether it was withheld).
//!
//! Fail closed: an evaluation error, a bad `redact` rule or a failed audit
//! write withholds the result.

use serde_json::{Value, json};

use super::Proxy;
use super::input::{self, Subject};
use crate::audit::canonical_digest;
use crate::error::Refusal;
use crate::inspect::{self, Located};
use crate::policy::{Decision, PolicyError, PolicySet, Verdict, to_rego};

/// The part of a result that is inspected, if any: the whole result of
/// `tools/call`, `resources/read`, `prompts/get` and `tasks/result`; the tool
/// result a 2026 `tasks/get` inlines once the task has completed.
pub fn inspected_part<'a>(method: &str, result: &'a Value) -> Option<&'a Value> {
    match method {
        "tools/call" | "resources/read" | "prompts/get" | "tasks/result" => Some(result),
        "tasks/get" => result.get("result").filter(|r| r.is_object()),
        _ => None,
    }
}

/// The answer the client gets once [`inspected_part`] was inspected: for a
/// `tasks/get`, the task with the inspected result inlined (a refusal that is
/// not a tool result fails the task instead).
pub fn put_back(
    method: &str,
    result: &Value,
    inspected: Result<Value, Value>,
) -> Result<Value, Value> {
    if method != "tasks/get" {
        return inspected;
    }
    let mut task = result.clone();
    match inspected {
        Ok(inlined) => task["result"] = inlined,
        Err(error) => {
            if let Some(t) = task.as_object_mut() {
                t.remove("result");
            }
            task["status"] = json!("failed");
            task["error"] = error;
        }
    }
    Ok(task)
}

/// What the response phase did, for the audit record.
struct Inspection {
    findings: Vec<Located>,
    truncated: Option<(usize, usize)>,
    redacted: usize,
    withheld: Option<Vec<String>>,
    warnings: Vec<String>,
}

impl Proxy {
    /// Inspect `result`: what the client gets, and the fields of the
    /// inspection for the call's `call.completed` record.
    pub(super) fn inspect_response(
        &self,
        subject: &Subject<'_>,
        decision_id: &str,
        mut result: Value,
    ) -> (Result<Value, Value>, Value) {
        let digest = canonical_digest(&result);
        let original = self.shared.shadow.then(|| result.clone());
        let truncated = inspect::truncate(&mut result, self.shared.config.max_result_bytes);
        let findings = inspect::findings_in(&result);
        let mut inspection = Inspection {
            findings,
            truncated,
            redacted: 0,
            withheld: None,
            warnings: Vec::new(),
        };
        if let Err(reasons) = self.apply_response_policy(subject, &mut result, &mut inspection) {
            inspection.withheld = Some(reasons);
        }
        let record = json!({
            "result_digest": digest,
            "findings": inspection.findings.iter().map(Located::to_json).collect::<Vec<_>>(),
            "redacted": inspection.redacted,
            "warnings": inspection.warnings,
            "truncated": inspection.truncated.map(|(b, a)| json!({"from": b, "to": a})),
            "withheld": inspection.withheld.is_some(),
            "reasons": inspection.withheld,
            "shadow": self.shared.shadow,
        });
        // A task's inlined result is a tool result too.
        let tool_call = matches!(subject.method, "tools/call" | "tasks/get");
        let answer = match (original, inspection.withheld) {
            (Some(original), _) => Ok(original),
            (None, None) => Ok(result),
            (None, Some(reasons)) => Refusal::PolicyDenied {
                reasons: reasons
                    .into_iter()
                    .map(|r| format!("result withheld: {r}"))
                    .collect(),
                message: None,
            }
            .answer(tool_call, Some(decision_id)),
        };
        (answer, record)
    }

    /// Evaluate the response phase and apply `redact` and `warn`; `Err`
    /// with the reasons to withhold the result.
    fn apply_response_policy(
        &self,
        subject: &Subject<'_>,
        result: &mut Value,
        inspection: &mut Inspection,
    ) -> Result<(), Vec<String>> {
        let policy = self.policy();
        let verdict = match policy.constant_response() {
            // Rules that read nothing of the result need no input built.
            Some(verdict) => verdict.clone(),
            None => self
                .decide_response(subject, result, inspection, &policy)
                .map_err(|e| vec![format!("the response policy failed: {e}")])?,
        };
        if let Decision::Deny { reasons } = verdict.decision {
            return Err(reasons);
        }
        inspection.redacted =
            inspect::redact(result, &verdict.redact, &inspection.findings).map_err(|e| vec![e])?;
        if !verdict.warn.is_empty()
            && let Some(Value::Array(blocks)) = result.get_mut("content")
        {
            let note = format!("[mcp-firewall] {}", verdict.warn.join(" "));
            blocks.insert(0, json!({"type": "text", "text": note}));
        }
        inspection.warnings = verdict.warn;
        Ok(())
    }

    /// The response phase's verdict for `result`. Its input is the
    /// request's with `phase` and the result as the policy sees it
    /// (findings, size, truncation); but a verdict kept for the result's
    /// known part (its tool, its findings; see `PolicySet::kept_response`)
    /// is looked up first with the fields that name the call and the
    /// findings alone, so the content of a result decided that way is
    /// neither copied, measured nor converted, and no more than those
    /// fields of the input is built.
    fn decide_response(
        &self,
        subject: &Subject<'_>,
        result: &Value,
        inspection: &Inspection,
        policy: &PolicySet,
    ) -> Result<Verdict, PolicyError> {
        if !result.is_object() {
            let mut input = self.input_for(subject);
            input["phase"] = json!("response");
            input["result"] = result.clone();
            return input.evaluate_response(policy);
        }
        // A kept verdict's known part is made of fields that name the
        // call and the keys of its arguments, so the lookup needs only
        // those: the argument values (a file's contents, say), the caller,
        // the time and the history are built and converted for a result
        // the policy reads.
        if policy.keeps_responses() && inspection.findings.is_empty() {
            let keys = input::argument_keys(subject.arguments);
            let named = Subject {
                arguments: &keys,
                ..*subject
            };
            let head = self.response_head(&named, json!([]));
            if let Some(verdict) = policy.kept_response(&input::converted_head(&head, &named)?) {
                return Ok(verdict);
            }
        }
        let findings = json!(
            inspection
                .findings
                .iter()
                .map(Located::to_json)
                .collect::<Vec<_>>()
        );
        let head = self.response_head(subject, findings.clone());
        let mut converted = input::complete(head, subject, &self.session).converted()?;
        let mut shown = result.clone();
        if let Some(obj) = shown.as_object_mut() {
            obj.insert("findings".into(), findings);
            obj.insert("size_bytes".into(), json!(inspect::json_len(result)));
            obj.insert("truncated".into(), json!(inspection.truncated.is_some()));
        }
        let fields = converted.as_object_mut().map_err(|e| PolicyError::Eval {
            message: format!("the response input is not an object: {e}"),
        })?;
        fields.insert(regorus::Value::from("result"), to_rego(&shown)?);
        policy.evaluate_response_converted(|| Ok(converted))
    }

    /// The fields of the response input that name the call, with the
    /// result's `findings`.
    fn response_head(&self, subject: &Subject<'_>, findings: Value) -> Value {
        let mut head = self.head_outline_for(subject);
        head["phase"] = json!("response");
        head["result"] = json!({ "findings": findings });
        head
    }
}
