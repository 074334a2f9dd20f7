//! Builds the policy input document (version 1, docs/policy-input.md).
//!
//! The shape is a contract with policy authors: fields are added, never
//! renamed or removed, without bumping [`INPUT_VERSION`].

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::session::Session;
use crate::upstream::Entry;

/// Version of the input document shape.
pub const INPUT_VERSION: u32 = 1;

/// What a decision is about.
pub struct Subject<'a> {
    pub method: &'a str,
    pub server: &'a str,
    pub target: Target<'a>,
    /// Tool or prompt arguments; `{}` when the method has none.
    pub arguments: &'a Value,
}

pub enum Target<'a> {
    Tool(&'a Entry),
    Prompt(&'a Entry),
    /// A resource: its URI and its listed definition when known.
    Resource(&'a str, Option<&'a Value>),
}

impl Subject<'_> {
    /// The name recorded in history and audit: tool/prompt name or URI.
    pub fn name(&self) -> &str {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => &e.name,
            Target::Resource(uri, _) => uri,
        }
    }

    /// The exposed tool/prompt name or the URI.
    pub fn exposed_name(&self) -> &str {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => &e.exposed,
            Target::Resource(uri, _) => uri,
        }
    }

    pub fn fingerprint(&self) -> Option<&str> {
        match &self.target {
            Target::Tool(e) | Target::Prompt(e) => Some(&e.fingerprint),
            Target::Resource(..) => None,
        }
    }
}

/// The input document for one decision.
pub fn build(subject: &Subject<'_>, session: &Session) -> Value {
    let now = Utc::now();
    let mut input = json!({
        "version": INPUT_VERSION,
        "method": subject.method,
        "server": subject.server,
        "arguments": subject.arguments,
        "principal": session.principal,
        "client": session.client_info(),
        "session": {
            "id": session.id,
            "transport": session.transport,
            "history": session.history(),
        },
        "time": {
            "rfc3339": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "unix": now.timestamp(),
        },
    });
    match &subject.target {
        Target::Tool(entry) => input["tool"] = tool(entry),
        Target::Prompt(entry) => input["prompt"] = prompt(entry),
        Target::Resource(uri, def) => input["resource"] = resource(uri, *def),
    }
    input
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
        "name": field(&def, "name"),
        "title": field(&def, "title"),
        "description": field(&def, "description"),
        "mime_type": field(&def, "mimeType"),
    })
}
