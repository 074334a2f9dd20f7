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
//!   clients both interpret, like `file:///...`), so two upstreams can claim
//!   the same URI, by listing it or by a template whose literal prefix it
//!   starts with. Such a URI belongs to neither ([`Route::Contested`]): it is
//!   left out of the listing and a read of it is refused, because routing it
//!   to either would let an upstream answer for another (a hostile upstream
//!   listing `file:///home/` would otherwise receive, and forge, reads meant
//!   for the filesystem server). No order or prefix length settles it: a
//!   hostile upstream can come first or list a longer prefix.
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
    /// Listed URIs that more than one upstream claims (lists them, or has a
    /// template matching them), with those upstreams.
    contested: HashMap<String, Vec<String>>,
    templates: Vec<Resource>,
    /// The operator's `resource_prefixes`: (prefix, upstream).
    assigned: Vec<(String, String)>,
}

/// Where a resource URI goes.
#[derive(Debug)]
pub enum Route<'a> {
    /// To this upstream: the only one that claims it (lists it or has a
    /// template matching it), or the one the operator assigned it to
    /// (`resource_prefixes`). `listed` is its definition when it lists it.
    To {
        server: &'a str,
        listed: Option<&'a Value>,
    },
    /// Several upstreams claim it (named here); it goes to none.
    Contested(Vec<String>),
    /// No upstream claims it.
    Unclaimed,
}

impl Resources {
    /// Merge per-upstream listings and templates (in config order).
    /// `assigned` holds the operator's `resource_prefixes`, (prefix,
    /// upstream): a URI under one belongs to that upstream whatever the
    /// others list, and their listings of it are left out.
    pub fn merge(
        listings: Vec<(String, Vec<Value>)>,
        templates: Vec<(String, Vec<Value>)>,
        assigned: Vec<(String, String)>,
    ) -> Resources {
        let mut merged = Resources {
            assigned,
            ..Resources::default()
        };
        for (server, defs) in listings {
            for def in defs {
                let Some(uri) = def.get("uri").and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                match merged.assignee(&uri) {
                    Assignee::One(owner) if owner != server => {
                        tracing::debug!(%uri, %server, %owner, "resource URI under another upstream's resource_prefixes; left out");
                        continue;
                    }
                    Assignee::Tied(_) => continue,
                    _ => {}
                }
                if let Some(owner) = merged.by_uri.get(&uri) {
                    if contest(&mut merged.contested, &uri, &owner.server, &server) {
                        tracing::warn!(%uri, first = %owner.server, %server, "resource URI listed by two upstreams; it is left out and reads of it are refused");
                    }
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
        // A listed URI that another upstream's template matches is
        // contested too.
        for uri in &merged.order {
            if !matches!(merged.assignee(uri), Assignee::None) {
                continue;
            }
            let owner = &merged.by_uri[uri].server;
            for t in templates_matching(&merged.templates, uri) {
                if contest(&mut merged.contested, uri, owner, &t.server) {
                    tracing::warn!(%uri, listed_by = %owner, template_of = %t.server, "resource URI claimed by two upstreams; it is left out and reads of it are refused");
                }
            }
        }
        merged
    }

    /// Listed URIs more than one upstream claims, with those upstreams, in
    /// listing order: left out of the listing, and their reads refused.
    pub fn contested(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.order
            .iter()
            .filter_map(|u| Some((u.as_str(), self.contested.get(u)?.as_slice())))
    }

    /// The listed resources that exactly one upstream claims.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.order
            .iter()
            .filter(|u| !self.contested.contains_key(*u))
            .filter_map(|u| self.by_uri.get(u))
    }

    /// The listed resource `uri`, unless it is contested.
    pub fn listed(&self, uri: &str) -> Option<&Resource> {
        match self.contested.contains_key(uri) {
            true => None,
            false => self.by_uri.get(uri),
        }
    }

    pub fn templates(&self) -> &[Resource] {
        &self.templates
    }

    /// The upstream serving `uri`. Every upstream that lists it or has a
    /// template whose literal prefix (up to its first `{`) it starts with
    /// claims it; it is routed only if they are all the same upstream.
    pub fn route(&self, uri: &str) -> Route<'_> {
        // Under an assigned prefix only the assignee lists (see `merge`).
        let listed = self.by_uri.get(uri).map(|r| &r.def);
        match self.assignee(uri) {
            Assignee::One(server) => return Route::To { server, listed },
            Assignee::Tied(servers) => return Route::Contested(servers),
            Assignee::None => {}
        }
        if let Some(servers) = self.contested.get(uri) {
            return Route::Contested(servers.clone());
        }
        if let Some(listed) = self.by_uri.get(uri) {
            return Route::To {
                server: &listed.server,
                listed: Some(&listed.def),
            };
        }
        let servers = distinct(templates_matching(&self.templates, uri).map(|t| t.server.as_str()));
        match servers.as_slice() {
            [] => Route::Unclaimed,
            [server] => Route::To {
                server,
                listed: None,
            },
            _ => Route::Contested(servers.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// Whom the operator's `resource_prefixes` give a URI to.
enum Assignee<'a> {
    None,
    One(&'a str),
    /// Two upstreams were given the same (longest) prefix.
    Tied(Vec<String>),
}

impl Resources {
    /// The upstream with the longest `resource_prefixes` entry `uri` starts with.
    fn assignee(&self, uri: &str) -> Assignee<'_> {
        let matching = self
            .assigned
            .iter()
            .filter(|(p, _)| uri.starts_with(p.as_str()));
        let Some(longest) = matching.clone().map(|(p, _)| p.len()).max() else {
            return Assignee::None;
        };
        let servers = distinct(
            matching
                .filter(|(p, _)| p.len() == longest)
                .map(|(_, s)| s.as_str()),
        );
        match servers.as_slice() {
            [one] => Assignee::One(one),
            _ => Assignee::Tied(servers.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// Records that `other` claims `uri` too, which `owner` claims; true when
/// that is news (a different upstream, not recorded yet).
fn contest(
    contested: &mut HashMap<String, Vec<String>>,
    uri: &str,
    owner: &str,
    other: &str,
) -> bool {
    if owner == other {
        return false;
    }
    let claimants = contested
        .entry(uri.to_string())
        .or_insert_with(|| vec![owner.to_string()]);
    let news = !claimants.iter().any(|c| c == other);
    if news {
        claimants.push(other.to_string());
    }
    news
}

/// `servers` without repeats, in first-seen order.
fn distinct<'a>(servers: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for server in servers {
        if !seen.contains(&server) {
            seen.push(server);
        }
    }
    seen
}

/// Templates whose literal prefix (up to the first `{`) `uri` starts with.
fn templates_matching<'a, 'u>(
    templates: &'a [Resource],
    uri: &'u str,
) -> impl Iterator<Item = &'a Resource> + use<'a, 'u> {
    templates.iter().filter(move |t| {
        let template = t
            .def
            .get("uriTemplate")
            .and_then(Value::as_str)
            .unwrap_or("");
        let prefix = template.split('{').next().unwrap_or("");
        !prefix.is_empty() && uri.starts_with(prefix)
    })
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
    fn resources_route_by_uri_then_template() {
        let res = Resources::merge(
            vec![
                ("a".into(), vec![json!({"uri": "x://1"})]),
                ("b".into(), vec![json!({"uri": "y://2"})]),
            ],
            vec![("b".into(), vec![json!({"uriTemplate": "notes://{name}"})])],
            vec![],
        );
        let owner = |uri| match res.route(uri) {
            Route::To { server, .. } => Some(server.to_string()),
            Route::Contested(servers) => panic!("{uri} contested by {servers:?}"),
            Route::Unclaimed => None,
        };
        assert_eq!(owner("x://1").as_deref(), Some("a"));
        assert_eq!(owner("y://2").as_deref(), Some("b"));
        assert_eq!(owner("notes://z").as_deref(), Some("b"));
        assert_eq!(owner("other://z"), None);
    }

    /// Neither config order nor a longer prefix hands one upstream's URI to
    /// another: a URI two upstreams claim goes to neither.
    #[test]
    fn a_uri_two_upstreams_claim_goes_to_neither() {
        let res = Resources::merge(
            vec![
                ("evil".into(), vec![json!({"uri": "file:///etc/key"})]),
                (
                    "fs".into(),
                    vec![
                        json!({"uri": "file:///etc/key"}),
                        json!({"uri": "file:///a"}),
                    ],
                ),
            ],
            vec![
                (
                    "evil".into(),
                    vec![json!({"uriTemplate": "file:///home/me/{p}"})],
                ),
                ("fs".into(), vec![json!({"uriTemplate": "file:///{path}"})]),
            ],
            vec![],
        );
        let contested = |uri| match res.route(uri) {
            Route::Contested(servers) => servers,
            other => panic!("{uri}: {other:?}"),
        };
        assert_eq!(contested("file:///etc/key"), ["evil", "fs"]);
        assert_eq!(contested("file:///home/me/notes"), ["evil", "fs"]);
        // A listed URI of one upstream that another's template matches.
        let listed = Resources::merge(
            vec![("fs".into(), vec![json!({"uri": "file:///home/me/x"})])],
            vec![(
                "evil".into(),
                vec![json!({"uriTemplate": "file:///home/{p}"})],
            )],
            vec![],
        );
        assert!(matches!(
            listed.route("file:///home/me/x"),
            Route::Contested(_)
        ));
        // The listing shows only what one upstream claims.
        let uris: Vec<_> = res.iter().map(|r| r.def["uri"].as_str().unwrap()).collect();
        assert_eq!(uris, ["file:///a"]);
        // One upstream listing a URI twice and matching its own template is
        // still the one owner.
        let own = Resources::merge(
            vec![(
                "fs".into(),
                vec![json!({"uri": "file:///b"}), json!({"uri": "file:///b"})],
            )],
            vec![("fs".into(), vec![json!({"uriTemplate": "file:///{path}"})])],
            vec![],
        );
        assert!(matches!(
            own.route("file:///b"),
            Route::To {
                server: "fs",
                listed: Some(_)
            }
        ));
    }

    /// The operator settles a URI two upstreams claim (`resource_prefixes`):
    /// under an assigned prefix only the assigned upstream lists and serves,
    /// the longest assigned prefix wins, and a tie is contested.
    #[test]
    fn an_assigned_prefix_belongs_to_its_upstream() {
        let listings = || {
            vec![
                (
                    "evil".into(),
                    vec![json!({"uri": "file:///srv/a"}), json!({"uri": "evil://x"})],
                ),
                ("fs".into(), vec![json!({"uri": "file:///srv/a"})]),
            ]
        };
        let templates = || vec![("evil".into(), vec![json!({"uriTemplate": "file:///{p}"})])];
        let res = Resources::merge(
            listings(),
            templates(),
            vec![("file:///srv/".into(), "fs".into())],
        );
        assert!(matches!(
            res.route("file:///srv/a"),
            Route::To {
                server: "fs",
                listed: Some(_)
            }
        ));
        assert!(matches!(
            res.route("file:///srv/unlisted"),
            Route::To {
                server: "fs",
                listed: None
            }
        ));
        // Outside the prefix the contest stands.
        assert!(matches!(
            res.route("file:///etc/x"),
            Route::To {
                server: "evil",
                listed: None
            }
        ));
        let uris: Vec<_> = res
            .iter()
            .map(|r| (r.server.as_str(), r.def["uri"].as_str().unwrap()))
            .collect();
        assert_eq!(uris, [("evil", "evil://x"), ("fs", "file:///srv/a")]);

        let nested = Resources::merge(
            listings(),
            templates(),
            vec![
                ("file:///".into(), "evil".into()),
                ("file:///srv/".into(), "fs".into()),
            ],
        );
        assert!(matches!(
            nested.route("file:///srv/a"),
            Route::To {
                server: "fs",
                listed: Some(_)
            }
        ));
        assert!(matches!(
            nested.route("file:///etc/x"),
            Route::To {
                server: "evil",
                listed: None
            }
        ));

        let tied = Resources::merge(
            listings(),
            templates(),
            vec![
                ("file:///srv/".into(), "fs".into()),
                ("file:///srv/".into(), "evil".into()),
            ],
        );
        assert!(matches!(tied.route("file:///srv/a"), Route::Contested(s) if s == ["fs", "evil"]));
        assert_eq!(tied.iter().count(), 1, "only evil://x is listed");
    }
}
