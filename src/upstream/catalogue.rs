//! The merged catalogue of tools, prompts and resources across upstreams,
//! and the naming scheme that makes it one namespace.
//!
//! Naming (documented in README "Several servers"):
//! - wrap form (one upstream): names pass through unchanged;
//! - config form: tools and prompts are exposed as `<upstream>__<name>`.
//!   Upstream names cannot contain `__` (config validation), so the first
//!   `__` always splits an exposed name back into server and own name, and
//!   two upstreams can never produce the same exposed name. If one upstream
//!   lists the same name twice, the first definition wins and the duplicate
//!   is logged and left out;
//! - resource URIs are never rewritten (they are identifiers servers and
//!   clients both interpret, like `file:///...`); a URI listed by two
//!   upstreams belongs to the first in config order, the other is logged
//!   and left out.
//!
//! Every tool carries a fingerprint (SHA-256 over the canonical JSON of its
//! definition) so policy and audit can tell when a definition changes.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::audit::{canonical_json, sha256_tagged};
use crate::config::NAMESPACE_SEPARATOR;

/// A tool or prompt as the client sees it, and where it really lives.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name the client sees.
    pub exposed: String,
    /// The upstream that serves it.
    pub server: String,
    /// The upstream's own name for it.
    pub name: String,
    /// The definition as the upstream sent it.
    pub def: Value,
    /// `sha256:<hex>` of the canonical definition.
    pub fingerprint: String,
    /// The entry as a policy reads it (`input.tool` before the proxy adds
    /// what it holds), built on first use (`proxy::input`), so every call
    /// to it shares one build and one conversion; `None` inside: the
    /// definition is too large to keep twice more, and each call builds
    /// its own. The fields above are not changed once an entry exists.
    pub(crate) policy_view: OnceLock<Option<PolicyView>>,
}

/// A tool as a policy reads it: the document, and the document converted
/// for the policy engine (`None` if it cannot be).
#[derive(Debug, Clone)]
pub(crate) struct PolicyView {
    pub(crate) json: Value,
    pub(crate) rego: Option<regorus::Value>,
}

impl Entry {
    pub fn new(
        exposed: String,
        server: String,
        name: String,
        def: Value,
        fingerprint: String,
    ) -> Entry {
        Entry {
            exposed,
            server,
            name,
            def,
            fingerprint,
            policy_view: OnceLock::new(),
        }
    }

    /// A name no listing has (an unknown tool, a task this session did not
    /// create), for recording the refusal: no server, no fingerprint.
    pub fn unknown(name: &str) -> Entry {
        let def = serde_json::json!({"name": name});
        Entry::new(
            name.to_string(),
            String::new(),
            name.to_string(),
            def,
            String::new(),
        )
    }

    /// The definition with the name the client should see.
    pub fn exposed_def(&self) -> Value {
        let mut def = self.def.clone();
        def["name"] = Value::String(self.exposed.clone());
        def
    }
}

/// A resource and the upstream that serves it.
#[derive(Debug, Clone)]
pub struct Resource {
    pub server: String,
    pub def: Value,
}

/// The naming rule in one place.
#[derive(Debug, Clone, Copy)]
pub struct Naming {
    pub passthrough: bool,
}

impl Naming {
    pub fn expose(&self, server: &str, name: &str) -> String {
        if self.passthrough {
            name.to_string()
        } else {
            format!("{server}{NAMESPACE_SEPARATOR}{name}")
        }
    }
}

/// Named items (tools or prompts) of all upstreams, in listing order.
#[derive(Debug, Default, Clone)]
pub struct Named {
    order: Vec<String>,
    by_name: HashMap<String, Entry>,
}

impl Named {
    /// Merge per-upstream listings (in config order) into one namespace.
    pub fn merge(naming: Naming, listings: Vec<(String, Vec<Value>)>) -> Named {
        let mut merged = Named::default();
        for (server, defs) in listings {
            for def in defs {
                let Some(name) = def.get("name").and_then(Value::as_str).map(str::to_string) else {
                    tracing::warn!(%server, "upstream listed an item without a name; left out");
                    continue;
                };
                let exposed = naming.expose(&server, &name);
                if merged.by_name.contains_key(&exposed) {
                    tracing::warn!(%server, %name, "duplicate name in listing; the first definition wins");
                    continue;
                }
                let fingerprint = sha256_tagged(canonical_json(&def).as_bytes());
                merged.order.push(exposed.clone());
                let entry = Entry::new(exposed.clone(), server.clone(), name, def, fingerprint);
                merged.by_name.insert(exposed, entry);
            }
        }
        merged
    }

    pub fn get(&self, exposed: &str) -> Option<&Entry> {
        self.by_name.get(exposed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.order.iter().filter_map(|n| self.by_name.get(n))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Entries whose definition changed or that are new compared to `old`
    /// (name, old fingerprint if any, new fingerprint).
    pub fn changes_since(&self, old: &Named) -> Vec<(String, Option<String>, String)> {
        self.iter()
            .filter_map(|e| {
                let before = old.get(&e.exposed).map(|o| o.fingerprint.clone());
                (before.as_deref() != Some(e.fingerprint.as_str()))
                    .then(|| (e.exposed.clone(), before, e.fingerprint.clone()))
            })
            .collect()
    }
}

/// Resources and resource templates of all upstreams.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    order: Vec<String>,
    by_uri: HashMap<String, Resource>,
    templates: Vec<Resource>,
}

impl Resources {
    pub fn merge(
        listings: Vec<(String, Vec<Value>)>,
        templates: Vec<(String, Vec<Value>)>,
    ) -> Resources {
        let mut merged = Resources::default();
        for (server, defs) in listings {
            for def in defs {
                let Some(uri) = def.get("uri").and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                if let Some(owner) = merged.by_uri.get(&uri) {
                    tracing::warn!(%uri, first = %owner.server, %server, "resource URI listed twice; the first upstream keeps it");
                    continue;
                }
                merged.order.push(uri.clone());
                merged.by_uri.insert(
                    uri,
                    Resource {
                        server: server.clone(),
                        def,
                    },
                );
            }
        }
        for (server, defs) in templates {
            merged
                .templates
                .extend(defs.into_iter().map(|def| Resource {
                    server: server.clone(),
                    def,
                }));
        }
        merged
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.order.iter().filter_map(|u| self.by_uri.get(u))
    }

    pub fn templates(&self) -> &[Resource] {
        &self.templates
    }

    /// The upstream serving `uri`: a listed resource, else the first
    /// template whose literal prefix (up to its first `{`) the URI starts with.
    pub fn owner(&self, uri: &str) -> Option<&Resource> {
        self.by_uri.get(uri).or_else(|| {
            self.templates.iter().find(|t| {
                let template = t
                    .def
                    .get("uriTemplate")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let prefix = template.split('{').next().unwrap_or("");
                !prefix.is_empty() && uri.starts_with(prefix)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespacing_prefixes_and_passthrough_does_not() {
        let listings = vec![
            ("fs".to_string(), vec![json!({"name": "read"})]),
            (
                "git".to_string(),
                vec![json!({"name": "read"}), json!({"name": "read"})],
            ),
        ];
        let named = Named::merge(Naming { passthrough: false }, listings);
        let names: Vec<_> = named.iter().map(|e| e.exposed.as_str()).collect();
        assert_eq!(names, ["fs__read", "git__read"]);
        assert_eq!(named.get("git__read").unwrap().name, "read");
        assert_eq!(
            named.get("git__read").unwrap().exposed_def()["name"],
            "git__read"
        );

        let single = Named::merge(
            Naming { passthrough: true },
            vec![("u".into(), vec![json!({"name": "read"})])],
        );
        assert_eq!(single.get("read").unwrap().server, "u");
    }

    #[test]
    fn fingerprint_changes_with_the_definition() {
        let a = Named::merge(
            Naming { passthrough: true },
            vec![("u".into(), vec![json!({"name": "t", "description": "a"})])],
        );
        let b = Named::merge(
            Naming { passthrough: true },
            vec![("u".into(), vec![json!({"description": "a", "name": "t"})])],
        );
        let c = Named::merge(
            Naming { passthrough: true },
            vec![("u".into(), vec![json!({"name": "t", "description": "b"})])],
        );
        assert!(b.changes_since(&a).is_empty(), "key order must not matter");
        assert_eq!(c.changes_since(&a).len(), 1);
    }

    #[test]
    fn resources_route_by_uri_then_template_and_first_owner_wins() {
        let res = Resources::merge(
            vec![
                ("a".into(), vec![json!({"uri": "x://1"})]),
                (
                    "b".into(),
                    vec![json!({"uri": "x://1"}), json!({"uri": "y://2"})],
                ),
            ],
            vec![("b".into(), vec![json!({"uriTemplate": "notes://{name}"})])],
        );
        assert_eq!(res.owner("x://1").unwrap().server, "a");
        assert_eq!(res.owner("y://2").unwrap().server, "b");
        assert_eq!(res.owner("notes://z").unwrap().server, "b");
        assert!(res.owner("other://z").is_none());
    }
}
