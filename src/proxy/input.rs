//! Builds the policy input document (version 1, docs/policy-input.md).
//!
//! The shape is a contract with policy authors: fields are added, never
//! renamed or removed, without bumping [`INPUT_VERSION`].

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::methods::ClientRequest;
use super::session::{HistorySnapshot, Session};
use crate::audit::{Canonical, MaskRules, mask_owned};
use crate::policy::{
    PolicyError, PolicySet, Splice, Verdict, to_rego, to_rego_over, to_rego_spliced,
};
use crate::upstream::{Entry, PolicyView};

/// Version of the input document shape.
pub const INPUT_VERSION: u32 = 1;

/// What a decision is about.
pub struct Subject<'a> {
    pub method: &'a str,
    pub server: &'a str,
    pub target: Target<'a>,
    /// Tool or prompt arguments; `{}` when the method has none.
    pub arguments: &'a Value,
    /// The exact params that will be forwarded if the request is permitted
    /// (`{}` for list items). `_meta` and extra keys in it are part of the
    /// input and of the approval digest.
    pub params: &'a Value,
}

#[derive(Clone, Copy)]
pub enum Target<'a> {
    Tool(&'a Entry),
    Prompt(&'a Entry),
    /// A resource: its URI and its listed definition when known.
    Resource(&'a str, Option<&'a Value>),
    /// A resource template, as listed.
    Template(&'a Value),
}

impl Subject<'_> {
    /// The name recorded in history and audit: tool/prompt name or URI.
    pub fn name(&self) -> &str {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => &e.name,
            Target::Resource(uri, _) => uri,
            Target::Template(def) => template_uri(def),
        }
    }

    /// The exposed tool/prompt name or the URI.
    pub fn exposed_name(&self) -> &str {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => &e.exposed,
            Target::Resource(uri, _) => uri,
            Target::Template(def) => template_uri(def),
        }
    }

    pub fn fingerprint(&self) -> Option<&str> {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => Some(&e.fingerprint),
            Target::Resource(..) | Target::Template(_) => None,
        }
    }

    /// `params._meta` without the progress token (which the firewall
    /// rewrites and a retry may change); `{}` when absent.
    pub fn meta(&self) -> Value {
        let mut meta = self
            .params
            .get("_meta")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.remove("progressToken");
        }
        meta
    }

    /// Params keys the method does not define (and not `_meta`).
    pub fn extra_params(&self) -> Value {
        let known = ClientRequest::parse(self.method)
            .map(ClientRequest::known_params)
            .unwrap_or(&[]);
        let extra: serde_json::Map<String, Value> = self
            .params
            .as_object()
            .map(|p| {
                p.iter()
                    .filter(|(k, _)| *k != "_meta" && !known.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Value::Object(extra)
    }
}

fn template_uri(def: &Value) -> &str {
    def.get("uriTemplate").and_then(Value::as_str).unwrap_or("")
}

/// An input document, with the part the session keeps (`session.history`)
/// already converted for the policy engine and rendered for the audit log,
/// and the tool's catalogue entry as converted once for all its calls.
/// Derefs to the JSON document, which holds `null` for the history.
pub struct Input {
    doc: Value,
    history: HistorySnapshot,
    tool: Option<regorus::Value>,
}

/// Where the history goes in the document.
const HISTORY_PATH: &[&str] = &["session", "history"];

/// Where the tool goes in the document.
const TOOL_PATH: &[&str] = &["tool"];

impl Input {
    /// The whole input as the audit log records it, masked by `mask`, in
    /// canonical form: the document with the session's rendered history
    /// in its place (unless masking replaced it).
    pub fn into_record(self, mask: &MaskRules) -> Canonical {
        Canonical::spliced(
            &mask_owned(self.doc, mask),
            HISTORY_PATH,
            &self.history.text,
        )
    }

    /// Decide this input with `policy`.
    pub fn evaluate(&self, policy: &PolicySet) -> Result<Verdict, PolicyError> {
        policy.evaluate_converted(|| self.converted())
    }

    /// Decide this input's response phase with `policy` (see
    /// [`PolicySet::evaluate_response_converted`]).
    pub fn evaluate_response(&self, policy: &PolicySet) -> Result<Verdict, PolicyError> {
        policy.evaluate_response_converted(|| self.converted())
    }

    /// This input converted for the policy engine.
    pub(super) fn converted(&self) -> Result<regorus::Value, PolicyError> {
        let history = Splice {
            path: HISTORY_PATH,
            value: self.history.rego.clone(),
        };
        match tool_splice(&self.doc, self.tool.as_ref())? {
            Some(tool) => to_rego_spliced(&self.doc, &[history, tool]),
            None => to_rego_spliced(&self.doc, &[history]),
        }
    }
}

/// `arguments` with every value null: what a known part reads of them
/// (which keys they have) and nothing it does not. Arguments that are not
/// an object say nothing about keys, and stay null.
pub fn argument_keys(arguments: &Value) -> Value {
    match arguments {
        Value::Object(fields) => Value::Object(
            fields
                .keys()
                .map(|key| (key.clone(), Value::Null))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// [`head`] (perhaps with more fields) converted for the policy engine,
/// its tool from the tool's catalogue entry.
pub fn converted_head(head: &Value, subject: &Subject<'_>) -> Result<regorus::Value, PolicyError> {
    match tool_splice(head, tool_view(subject).as_ref())? {
        Some(tool) => to_rego_spliced(head, &[tool]),
        None => to_rego(head),
    }
}

/// The subject's tool as its catalogue entry keeps it converted (see
/// [`Entry`]'s `policy_view`): `input.tool` before the proxy adds the
/// tool's findings and pin. `None` for other targets.
fn tool_view(subject: &Subject<'_>) -> Option<regorus::Value> {
    let Target::Tool(entry) = subject.target else {
        return None;
    };
    policy_view(entry)?.rego.clone()
}

/// The largest tool definition (as JSON) whose policy view an entry keeps.
/// A kept view holds the definition twice more (as a document and
/// converted) for as long as the listing lasts, and an upstream may list
/// up to 64 MB: past this, each call builds and drops its own, as real
/// servers' definitions (a few kilobytes) never need.
pub const MAX_KEPT_TOOL_BYTES: usize = 64 * 1024;

/// `entry` as a policy reads it, built on its first use; `None` for a
/// definition over [`MAX_KEPT_TOOL_BYTES`].
fn policy_view(entry: &Entry) -> Option<&PolicyView> {
    let view = entry.policy_view.get_or_init(|| {
        (crate::inspect::json_len(&entry.def) <= MAX_KEPT_TOOL_BYTES).then(|| {
            let json = tool(entry);
            let rego = to_rego(&json).ok();
            PolicyView { json, rego }
        })
    });
    view.as_ref()
}

/// `doc`'s tool converted over `view`: the fields the entry names shared
/// with every other call to it, those the proxy added converted.
fn tool_splice(
    doc: &Value,
    view: Option<&regorus::Value>,
) -> Result<Option<Splice<'static>>, PolicyError> {
    let (Some(view), Some(tool)) = (view, doc.get("tool")) else {
        return Ok(None);
    };
    Ok(Some(Splice {
        path: TOOL_PATH,
        value: to_rego_over(tool, view)?,
    }))
}

impl std::ops::Deref for Input {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.doc
    }
}

impl std::ops::DerefMut for Input {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.doc
    }
}

/// The input document for one decision, as far as the request and the
/// session tell it (the proxy adds what it holds: `Proxy::input_for`).
pub fn build(subject: &Subject<'_>, session: &Session) -> Input {
    complete(head(subject), subject, session)
}

/// [`head`] (perhaps with more fields) completed into the input for one
/// decision: what is derived from the arguments and params, the caller,
/// the session, its history, and the time.
pub fn complete(mut input: Value, subject: &Subject<'_>, session: &Session) -> Input {
    input["urls"] = json!(super::urls::urls_in(subject.arguments));
    input["meta"] = subject.meta();
    input["extra_params"] = subject.extra_params();
    let history = add_context(&mut input, session);
    Input {
        doc: input,
        history,
        tool: tool_view(subject),
    }
}

/// The fields of the input that say what is called and with what
/// arguments, without who calls it, when, or after what (no principal,
/// client, session, history or time), nor what is derived from the
/// arguments and params (urls, meta, extra params).
pub fn head(subject: &Subject<'_>) -> Value {
    head_with(subject, |view| view.json.clone())
}

/// [`head`] for an input that is only converted, never recorded (the
/// response phase's): a tool whose converted view the entry keeps is an
/// outline, its fields' names with `null` values, since converting over
/// the view ([`tool_splice`]) takes every field the view holds from the
/// view. A copy of the definition would be a deep copy per result, for a
/// value nobody reads (~3,500 instructions for the fixture's small `echo`,
/// more for a real schema).
pub fn head_outline(subject: &Subject<'_>) -> Value {
    head_with(subject, |view| match (&view.json, &view.rego) {
        (Value::Object(fields), Some(_)) => Value::Object(
            fields
                .keys()
                .map(|key| (key.clone(), Value::Null))
                .collect(),
        ),
        _ => view.json.clone(),
    })
}

fn head_with(subject: &Subject<'_>, tool_of: impl Fn(&PolicyView) -> Value) -> Value {
    let mut input = json!({
        "version": INPUT_VERSION,
        "direction": "client_to_server",
        "method": subject.method,
        "server": subject.server,
        "arguments": subject.arguments,
    });
    match &subject.target {
        Target::Tool(entry) => {
            input["tool"] = match policy_view(entry) {
                Some(view) => tool_of(view),
                None => tool(entry),
            }
        }
        Target::Prompt(entry) => input["prompt"] = prompt(entry),
        Target::Resource(uri, def) => input["resource"] = resource(uri, *def),
        Target::Template(def) => input["resource_template"] = template(def),
    }
    input
}

/// The input for a request an upstream sent the client (sampling,
/// elicitation, roots). `cause` is the client call in flight to that
/// upstream when there is exactly one (the likely cause), else null.
pub fn build_server_request(
    server: &str,
    method: &str,
    params: &Value,
    cause: Value,
    session: &Session,
) -> Input {
    let mut input = json!({
        "version": INPUT_VERSION,
        "direction": "server_to_client",
        "method": method,
        "server": server,
        "params": params,
        "arguments": {},
        "caused_by": cause,
    });
    let history = add_context(&mut input, session);
    Input {
        doc: input,
        history,
        tool: None,
    }
}

/// The fields every input has: who, which client and session, and when.
/// The history is a `null` in the document; returns it as the engine and
/// the audit log read it.
fn add_context(input: &mut Value, session: &Session) -> HistorySnapshot {
    let now = Utc::now();
    input["principal"] = json!(session.principal);
    input["client"] = session.client_info();
    input["session"] = json!({
        "id": session.id,
        "transport": session.transport,
        "history": null,
    });
    if let Some(hook) = session.hook.get() {
        input["session"]["cwd"] = hook.get("cwd").cloned().unwrap_or(Value::Null);
        input["hook"] = hook.clone();
    }
    input["time"] = json!({
        "rfc3339": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "unix": now.timestamp(),
    });
    session.history_snapshot()
}

fn template(def: &Value) -> Value {
    json!({
        "uri_template": field(def, "uriTemplate"),
        "name": field(def, "name"),
        "title": field(def, "title"),
        "description": field(def, "description"),
        "mime_type": field(def, "mimeType"),
    })
}

fn field(def: &Value, key: &str) -> Value {
    def.get(key).cloned().unwrap_or(Value::Null)
}

fn tool(entry: &Entry) -> Value {
    let def = &entry.def;
    json!({
        "name": entry.name,
        "exposed_name": entry.exposed,
        "title": field(def, "title"),
        "description": field(def, "description"),
        "annotations": def.get("annotations").cloned().unwrap_or_else(|| json!({})),
        "input_schema": field(def, "inputSchema"),
        "fingerprint": entry.fingerprint,
    })
}

fn prompt(entry: &Entry) -> Value {
    let def = &entry.def;
    json!({
        "name": entry.name,
        "exposed_name": entry.exposed,
        "title": field(def, "title"),
        "description": field(def, "description"),
        "arguments": def.get("arguments").cloned().unwrap_or_else(|| json!([])),
        "fingerprint": entry.fingerprint,
    })
}

fn resource(uri: &str, def: Option<&Value>) -> Value {
    let def = def.cloned().unwrap_or(Value::Null);
    json!({
        "uri": uri,
        "uri_decoded": super::urls::decoded(uri),
        "name": field(&def, "name"),
        "title": field(&def, "title"),
        "description": field(&def, "description"),
        "mime_type": field(&def, "mimeType"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical_json;
    use crate::policy::to_rego;
    use crate::proxy::session::Principal;

    /// An entry of server `fs` named `name`, defined as `def`.
    fn entry(name: &str, def: Value) -> Entry {
        Entry::new(
            name.into(),
            "fs".into(),
            name.into(),
            def,
            "sha256:00".into(),
        )
    }

    /// A `tools/call` of `entry` with `args`.
    fn call<'a>(entry: &'a Entry, args: &'a Value) -> Subject<'a> {
        Subject {
            method: "tools/call",
            server: &entry.server,
            target: Target::Tool(entry),
            arguments: args,
            params: args,
        }
    }

    /// `input`'s document with `history` where the session's goes: what
    /// the whole input is, converted or recorded.
    fn whole(input: &Input, history: Value) -> Value {
        let mut whole = input.doc.clone();
        whole["session"]["history"] = history;
        whole
    }

    /// The audit record's input is the whole document, history in place,
    /// masked as the whole would be (keys inside history entries, the
    /// history itself, the session around it); policy reads the history
    /// unmasked.
    #[test]
    fn the_record_is_the_whole_input_masked_and_policy_reads_it_unmasked() {
        let entries = [
            json!({"method": "tools/call", "tool": "echo", "decision": "allow"}),
            json!({"method": "x", "Token": "abc", "nested": [{"Api-Key": 1}]}),
        ];
        let template = json!({"uriTemplate": "file:///{p}", "name": "t"});
        let args = json!({"text": "t", "token": "s"});
        let subject = Subject {
            method: "resources/read",
            server: "srv",
            target: Target::Template(&template),
            arguments: &args,
            params: &args,
        };
        for fields in [
            &["token", "api_key", "tool"][..],
            &["history"],
            &["session"],
            &[],
        ] {
            let mask = MaskRules::new(fields.iter().map(|f| f.to_string()));
            let session = Session::new("stdio", Principal::new("p", "flag"));
            for entry in &entries {
                session.record(entry.clone(), &mask);
            }
            let input = build(&subject, &session);
            let whole = whole(&input, json!(entries));
            assert_eq!(input.converted().unwrap(), to_rego(&whole).unwrap());
            let expected = canonical_json(&mask_owned(whole, &mask));
            assert_eq!(input.into_record(&mask).as_str(), expected, "{fields:?}");
        }
    }

    /// A tool's input converts as the whole document would, with what the
    /// proxy adds to the tool (findings, pin); the part its catalogue
    /// entry names is converted once, and every call to it shares it.
    #[test]
    fn a_tool_input_converts_as_a_whole_and_shares_its_entry() {
        let entry = entry(
            "read",
            json!({"name": "read", "description": "reads", "inputSchema": {"type": "object"},
                   "annotations": {"readOnlyHint": true}}),
        );
        let args = json!({"path": "/tmp/a"});
        let subject = call(&entry, &args);
        let session = Session::new("stdio", Principal::new("p", "flag"));
        let mut schemas = Vec::new();
        for pin in ["new", "changed"] {
            let mut input = build(&subject, &session);
            input["tool"]["findings"] = json!([{"kind": "hidden_instructions"}]);
            input["tool"]["pin"] = json!({"status": pin});
            let converted = input.converted().unwrap();
            assert_eq!(converted, to_rego(&whole(&input, json!([]))).unwrap());
            let mut head = head(&subject);
            head["tool"]["pin"] = json!({"status": pin});
            assert_eq!(
                converted_head(&head, &subject).unwrap(),
                to_rego(&head).unwrap()
            );
            let regorus::Value::Object(schema) = &converted["tool"]["input_schema"] else {
                panic!("an object");
            };
            schemas.push(schema.clone());
        }
        assert!(std::sync::Arc::ptr_eq(&schemas[0], &schemas[1]));
    }

    /// A definition too large to keep twice more (a hostile upstream may
    /// list 64 MB) keeps no view: each call builds its own, and decides
    /// on the same input.
    #[test]
    fn a_huge_definition_keeps_no_view_and_converts_as_a_whole() {
        let description = "x".repeat(MAX_KEPT_TOOL_BYTES);
        let entry = entry(
            "big",
            json!({"name": "big", "description": description, "inputSchema": {"type": "object"}}),
        );
        let args = json!({});
        let subject = call(&entry, &args);
        let session = Session::new("stdio", Principal::new("p", "flag"));
        let mut input = build(&subject, &session);
        input["tool"]["pin"] = json!({"status": "new"});
        assert!(entry.policy_view.get().is_some_and(Option::is_none));
        assert_eq!(input["tool"]["description"], description.as_str());
        let whole = whole(&input, json!([]));
        assert_eq!(input.converted().unwrap(), to_rego(&whole).unwrap());
    }
}
