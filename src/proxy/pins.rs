//! Tool pins in the proxy: what a listing changed, what `input.tool.pin`
//! says, and re-pinning when a human approves a changed tool.
//!
//! An upstream controls its tool definitions and can change them at any
//! time (a "rug pull": a tool approved as harmless turns into another). The
//! firewall pins each tool's definition per upstream identity on first use,
//! compares every later listing with the pin, and tells the policy
//! (`input.tool.pin.status`: `new`, `pinned`, `changed`). A pin moves only
//! when a human approves a call to the new definition.
//!
//! Pinned fields: name, title, description, inputSchema, outputSchema,
//! annotations. Other fields (icons, `_meta`) may change freely.

use std::collections::HashMap;

use chrono::SecondsFormat;
use serde_json::{Map, Value, json};

use super::Proxy;
use crate::approval::store::pins::{Pin, PinEvent, SeenTool};
use crate::audit::{canonical_json, sha256_tagged};
use crate::upstream::{Entry, Named};

/// The fields of a tool definition a pin covers.
pub const PINNED_FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// The pinned fields of `def` (absent ones as `null`).
pub fn pinned_definition(def: &Value) -> Value {
    let fields: Map<String, Value> = PINNED_FIELDS
        .iter()
        .map(|f| (f.to_string(), def.get(*f).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(fields)
}

/// `sha256:` over the canonical JSON of the pinned fields.
pub fn pin_fingerprint(def: &Value) -> String {
    sha256_tagged(canonical_json(&pinned_definition(def)).as_bytes())
}

/// The pinned fields whose values differ, and their previous values.
pub fn changes(pinned: &Value, now: &Value) -> (Vec<String>, Value) {
    let mut fields = Vec::new();
    let mut previous = Map::new();
    for f in PINNED_FIELDS {
        let before = pinned.get(f).unwrap_or(&Value::Null);
        if before != now.get(f).unwrap_or(&Value::Null) {
            fields.push(f.to_string());
            previous.insert(f.to_string(), before.clone());
        }
    }
    (fields, Value::Object(previous))
}

impl Proxy {
    /// The identity pins are keyed by for the upstream named `server`.
    fn upstream_identity(&self, server: &str) -> Option<String> {
        self.spec(server).map(|s| s.identity())
    }

    /// Compare a fresh listing with the pins, pin new tools on first use,
    /// and audit what was added, changed, removed. Store errors are logged:
    /// the pin status of a call is then computed from whatever is stored.
    pub(super) fn observe_pins(&self, named: &Named) {
        let Some(approvals) = &self.shared.approvals else {
            return;
        };
        self.pin_cache.lock().expect("pin cache lock").clear();
        for upstream in &self.shared.config.upstreams {
            let defs: Vec<(String, Value, String)> = named
                .iter()
                .filter(|e| e.server == upstream.name)
                .map(|e| {
                    let pinned = pinned_definition(&e.def);
                    (e.name.clone(), pinned, pin_fingerprint(&e.def))
                })
                .collect();
            if defs.is_empty() && !self.listed(&upstream.name) {
                continue;
            }
            let seen: Vec<SeenTool<'_>> = defs
                .iter()
                .map(|(name, definition, fingerprint)| SeenTool {
                    name,
                    fingerprint,
                    definition,
                })
                .collect();
            let identity = upstream.identity();
            match approvals
                .store
                .observe_tools(&identity, &seen, chrono::Utc::now())
            {
                Ok(events) => {
                    self.report_renames(&upstream.name, &identity, &events);
                    for e in events {
                        if e.event == "tool.added" {
                            self.new_tools
                                .lock()
                                .expect("new tools lock")
                                .insert((identity.clone(), e.tool.clone()));
                        }
                        let record = json!({"session_id": self.session.id, "server": upstream.name,
                                            "upstream": identity, "tool": e.tool,
                                            "fingerprint": e.fingerprint});
                        if let Err(err) = self.shared.audit.append(e.event, record) {
                            tracing::error!("audit write failed: {err}");
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(server = %upstream.name, "tool pins not updated: {err}")
                }
            }
        }
    }

    /// A tool removed and another added in the same listing with the same
    /// definition but the name is a rename: audited as `tool.renamed`, and
    /// the new name's `input.tool.pin.renamed_from` says so.
    fn report_renames(&self, server: &str, identity: &str, events: &[PinEvent]) {
        let Some(approvals) = &self.shared.approvals else {
            return;
        };
        let without_name = |def: &Value| {
            let mut def = def.clone();
            if let Some(obj) = def.as_object_mut() {
                obj.remove("name");
            }
            def
        };
        let pins_of = |event: &str| -> Vec<Pin> {
            events
                .iter()
                .filter(|e| e.event == event)
                .filter_map(|e| approvals.store.pin(identity, &e.tool).ok().flatten())
                .collect()
        };
        let removed = pins_of("tool.removed");
        if removed.is_empty() {
            return;
        }
        // Removed definitions by their canonical text: each added one is
        // compared with those that read the same, not with every removed
        // one (an upstream that swaps 10,000 tools for 10,000 others made
        // that 10^8 comparisons of cloned definitions).
        let mut by_text: HashMap<String, Vec<(&Pin, Value)>> = HashMap::new();
        for r in &removed {
            let def = without_name(&r.definition);
            by_text
                .entry(canonical_json(&def))
                .or_default()
                .push((r, def));
        }
        for added in pins_of("tool.added") {
            let def = without_name(&added.definition);
            let Some(old) = by_text
                .get(&canonical_json(&def))
                .and_then(|same| same.iter().find(|(_, d)| *d == def))
                .map(|(r, _)| *r)
            else {
                continue;
            };
            self.renamed
                .lock()
                .expect("renamed lock")
                .insert((identity.to_string(), added.tool.clone()), old.tool.clone());
            let record = json!({"session_id": self.session.id, "server": server,
                                "upstream": identity, "from": old.tool, "to": added.tool});
            if let Err(e) = self.shared.audit.append("tool.renamed", record) {
                tracing::error!("audit write failed: {e}");
            }
        }
    }

    /// Whether `server` answered its last tool listing (so an empty one
    /// means its tools were removed, not that it failed).
    fn listed(&self, server: &str) -> bool {
        self.catalogue
            .read()
            .expect("catalogue lock")
            .ready
            .contains_key(server)
            && self.offers(server, "tools")
    }

    /// `input.tool.pin` for a tool as listed now. Fails closed: a store
    /// error makes the status `unknown`, which the shipped library holds.
    pub(super) fn pin_input(&self, entry: &Entry) -> Value {
        let key = (entry.exposed.clone(), entry.fingerprint.clone());
        if let Some(cached) = self.pin_cache.lock().expect("pin cache lock").get(&key) {
            return cached.clone();
        }
        let pin = self.read_pin(entry);
        if pin["status"] != "unknown" {
            self.pin_cache
                .lock()
                .expect("pin cache lock")
                .insert(key, pin.clone());
        }
        pin
    }

    fn read_pin(&self, entry: &Entry) -> Value {
        let (Some(approvals), Some(identity)) = (
            &self.shared.approvals,
            self.upstream_identity(&entry.server),
        ) else {
            return json!({"status": "unknown"});
        };
        let pin = match approvals.store.pin(&identity, &entry.name) {
            Ok(Some(pin)) => pin,
            Ok(None) => return json!({"status": "new"}),
            Err(e) => return json!({"status": "unknown", "error": e.to_string()}),
        };
        let current = pinned_definition(&entry.def);
        let key = (identity, entry.name.clone());
        let is_new = self
            .new_tools
            .lock()
            .expect("new tools lock")
            .contains(&key);
        let mut out = describe(&pin, &current, pin_fingerprint(&entry.def), is_new);
        if let Some(from) = self.renamed.lock().expect("renamed lock").get(&key) {
            out["renamed_from"] = json!(from);
        }
        out
    }

    /// What an approver is told about the tool's pin: its status and, for a
    /// changed tool, what changed, and that approving pins the new
    /// definition. `null` for prompts and resources.
    pub(super) fn pin_for_approvers(&self, subject: &super::input::Subject<'_>) -> Value {
        let super::input::Target::Tool(entry) = subject.target else {
            return Value::Null;
        };
        if subject.method.starts_with("hook/") {
            // A client's own tool (Bash, Edit ...): nothing is pinned.
            return Value::Null;
        }
        let mut pin = self.pin_input(entry);
        pin["on_approve"] =
            json!("approving this call pins the tool's current definition as approved");
        pin
    }

    /// A human approved a call to this tool as it is defined now: that
    /// definition becomes the pin (approved). Returns the previous pin's
    /// fingerprint when it moved.
    pub(super) fn repin_approved(&self, entry: &Entry, approval_id: &str) -> Option<String> {
        let approvals = self.shared.approvals.as_ref()?;
        let identity = self.upstream_identity(&entry.server)?;
        let before = approvals.store.pin(&identity, &entry.name).ok().flatten();
        let fingerprint = pin_fingerprint(&entry.def);
        let unchanged = before
            .as_ref()
            .is_some_and(|p| p.fingerprint == fingerprint && p.approved);
        if unchanged {
            return None;
        }
        let by = format!("approval {approval_id}");
        let definition = pinned_definition(&entry.def);
        self.pin_cache.lock().expect("pin cache lock").clear();
        if let Err(e) = approvals.store.repin(
            &identity,
            &entry.name,
            &fingerprint,
            &definition,
            &by,
            chrono::Utc::now(),
        ) {
            tracing::error!("could not re-pin {}: {e}", entry.name);
            return None;
        }
        let record = json!({"session_id": self.session.id, "server": entry.server,
                            "upstream": identity, "tool": entry.name, "fingerprint": fingerprint,
                            "previous_fingerprint": before.as_ref().map(|p| p.fingerprint.clone()),
                            "approval_id": approval_id});
        if let Err(e) = self.shared.audit.append("tool.pinned", record) {
            tracing::error!("audit write failed: {e}");
        }
        before.map(|p| p.fingerprint)
    }
}

/// `input.tool.pin` from the stored pin and the definition listed now.
fn describe(pin: &Pin, current: &Value, fingerprint: String, is_new: bool) -> Value {
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut out = json!({
        "first_seen": time(pin.first_seen),
        "pinned_at": time(pin.pinned_at),
        "pinned_by": pin.pinned_by,
        "approved": pin.approved,
        "fingerprint": fingerprint,
    });
    if pin.fingerprint == fingerprint {
        // `new` only while the first-use pin stands: once a human approved
        // (re-pinned) it, it is `pinned`.
        let first_use = is_new && !pin.approved;
        out["status"] = json!(if first_use { "new" } else { "pinned" });
    } else {
        let (fields, previous) = changes(&pin.definition, current);
        out["status"] = json!("changed");
        out["changed_fields"] = json!(fields);
        out["previous"] = previous;
        out["pinned_fingerprint"] = json!(pin.fingerprint);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_fields_count() {
        let a = json!({"name": "t", "description": "reads", "annotations": {"readOnlyHint": true},
                       "icons": [1]});
        let b = json!({"name": "t", "description": "reads", "annotations": {"readOnlyHint": true},
                       "icons": [2], "_meta": {"x": 1}});
        assert_eq!(pin_fingerprint(&a), pin_fingerprint(&b));
        let c = json!({"name": "t", "description": "drops the database",
                       "annotations": {"readOnlyHint": true}});
        assert_ne!(pin_fingerprint(&a), pin_fingerprint(&c));
        let (fields, previous) = changes(&pinned_definition(&a), &pinned_definition(&c));
        assert_eq!(fields, ["description"]);
        assert_eq!(previous["description"], "reads");
    }
}
