//! Keeping the merged catalogue fresh: fetch every page of every live
//! upstream's listing, merge, and audit tool definitions that changed.
//!
//! A listing is fetched when first needed and again after the upstream says
//! `notifications/*/list_changed` (which clears it). A changed tool
//! definition (same name, new fingerprint) is an audit record, since a tool
//! that changes its description after approval is a known attack.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Proxy;
use crate::inspect::json_len;
use crate::upstream::connection::MAX_UPSTREAM_MESSAGE_BYTES;
use crate::upstream::{ListMethod, Named, OwnRequest, Resources, Upstream};

/// Pages fetched from one upstream for one listing. A server that keeps
/// returning cursors beyond this is cut off rather than looping forever.
const MAX_LIST_PAGES: usize = 100;
/// Bytes of JSON one upstream's listing may take, every page together. A
/// server that lists more is cut off, as one that pages forever is: what
/// the firewall holds of a listing stays bounded (100 pages of the 64 MiB a
/// message may take were 6.4 GB it would have parsed and kept).
const MAX_LISTING_BYTES: usize = MAX_UPSTREAM_MESSAGE_BYTES;
/// Bytes of JSON one listed item (a tool, prompt, resource or template
/// definition) may take. Every decision's input and audit record carry the
/// definition of what is called, so an upstream listing a 60 MB description
/// would make each call to that tool cost the firewall a 60 MB record (a
/// 1 MB one: 2 ms of CPU and 1 MB of log per call). Real definitions are a
/// few KB; one over this is left out of the listing (it cannot be called)
/// and the omission is on record.
const MAX_ITEM_BYTES: usize = 256 * 1024;
/// Bytes a listed item's name, URI or URI template may take. A name is
/// carried many times over: in every decision's input (the call's and, in
/// the history, the last 32 calls'), every audit record and every approval.
/// MCP asks for names of at most 128 characters; one over this limit, or
/// one holding characters that change how text is displayed
/// ([`crate::visible::is_hidden`]: terminal controls, bidi overrides, which
/// no name needs and which could disguise a call to an approver), is left
/// out of the listing, and the omission is on record.
const MAX_NAME_BYTES: usize = 1024;
/// How many left-out items an `upstream.degraded` record names.
const NAMED_OMISSIONS: usize = 10;
/// How often a listing is fetched again for a name it lacks (an unknown tool
/// or prompt, a URI no upstream lists): a client naming unknown things must
/// not turn each of its requests into a listing of every upstream (200
/// calls to unknown tools were 201 listings). A listing an upstream says
/// changed (`list_changed`) is fetched at its next use regardless.
const FORCED_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long one upstream's whole listing (every page) may take. One slow or
/// silent upstream must not hold up the others' tools: past this, it is left
/// out of this listing and reported as degraded.
pub const CATALOGUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Default)]
pub struct Catalogue {
    /// Upstreams that completed `initialize`, with their initialize result.
    pub ready: HashMap<String, Value>,
    pub tools: Option<Arc<Named>>,
    pub prompts: Option<Arc<Named>>,
    pub resources: Option<Arc<Resources>>,
    /// Tools as last seen, kept across invalidation to detect changes.
    pub last_tools: Arc<Named>,
    /// When `tools` was fetched: older than `tools_refresh`, it is fetched
    /// again before use.
    pub tools_at: Option<std::time::Instant>,
    pub prompts_at: Option<std::time::Instant>,
    pub resources_at: Option<std::time::Instant>,
    /// How many `list_changed` notifications were taken. A listing whose
    /// fetch saw one arrive is used for the request that fetched it but not
    /// kept: it may predate the change.
    pub changes: u64,
}

/// One fetch of each listing at a time per session: requests that need the
/// same listing while it is being fetched wait for that fetch and use it.
#[derive(Default)]
pub struct Fetching {
    tools: tokio::sync::Mutex<()>,
    prompts: tokio::sync::Mutex<()>,
    resources: tokio::sync::Mutex<()>,
}

/// Where the catalogue keeps one listing, and how old it may grow.
struct Kept<'a, T> {
    lock: &'a tokio::sync::Mutex<()>,
    max_age: std::time::Duration,
    get: fn(&Catalogue) -> (Option<T>, Option<std::time::Instant>),
    set: fn(&mut Catalogue, T, std::time::Instant),
}

/// Whether a listing whose fetch began at `at` serves a request: one made
/// (`asked`) before that fetch began waited for it; a forced refresh (`refresh`,
/// a name the listing lacks) uses it while younger than
/// [`FORCED_REFRESH_INTERVAL`]; any other while younger than `max_age`.
fn serves(
    at: std::time::Instant,
    refresh: bool,
    asked: Option<std::time::Instant>,
    max_age: std::time::Duration,
) -> bool {
    if asked.is_some_and(|asked| at >= asked) {
        return true;
    }
    match refresh {
        true => at.elapsed() < FORCED_REFRESH_INTERVAL,
        false => at.elapsed() < max_age,
    }
}

/// Which listing a `list_changed` notification invalidates.
pub enum Kind {
    Tools,
    Prompts,
    Resources,
}

impl Proxy {
    pub(super) fn invalidate(&self, kind: Kind) {
        let mut cat = self.catalogue.write().expect("catalogue lock");
        cat.changes += 1;
        match kind {
            Kind::Tools => cat.tools = None,
            Kind::Prompts => cat.prompts = None,
            Kind::Resources => cat.resources = None,
        }
    }

    /// The merged tools, fetched if not cached (or `refresh`: fetched again
    /// unless fetched within [`FORCED_REFRESH_INTERVAL`]).
    pub(super) async fn tools(&self, refresh: bool) -> Arc<Named> {
        let slot = Kept {
            lock: &self.fetching.tools,
            max_age: self.shared.config.tools_refresh,
            get: |cat| (cat.tools.clone(), cat.tools_at),
            set: |cat, tools, at| (cat.tools, cat.tools_at) = (Some(tools), Some(at)),
        };
        self.listing(slot, refresh, self.fetch_tools()).await
    }

    /// Fetch and merge the tools, and note what changed since the last
    /// listing (pins, or `tool.changed`/`tool.added` records).
    async fn fetch_tools(&self) -> Arc<Named> {
        let listings = self.fetch_all(ListMethod::Tools, "tools").await;
        let named = Arc::new(Named::merge(self.naming, listings));
        self.scan_tools(&named);
        if self.shared.approvals.is_some() {
            // Pins remember definitions across sessions and restarts.
            self.observe_pins(&named);
        } else {
            let old = self
                .catalogue
                .read()
                .expect("catalogue lock")
                .last_tools
                .clone();
            if !old.is_empty() {
                for (name, before, after) in named.changes_since(&old) {
                    let record = json!({"session_id": self.session.id, "tool": name, "old_fingerprint": before, "new_fingerprint": after});
                    let event = if before.is_some() {
                        "tool.changed"
                    } else {
                        "tool.added"
                    };
                    if let Err(e) = self.shared.audit.append(event, record) {
                        tracing::error!("audit write failed: {e}");
                    }
                }
            }
        }
        self.catalogue.write().expect("catalogue lock").last_tools = named.clone();
        named
    }

    pub(super) async fn prompts(&self, refresh: bool) -> Arc<Named> {
        let slot = Kept {
            lock: &self.fetching.prompts,
            max_age: std::time::Duration::MAX,
            get: |cat| (cat.prompts.clone(), cat.prompts_at),
            set: |cat, prompts, at| (cat.prompts, cat.prompts_at) = (Some(prompts), Some(at)),
        };
        let fetch = async {
            let listings = self.fetch_all(ListMethod::Prompts, "prompts").await;
            Arc::new(Named::merge(self.naming, listings))
        };
        self.listing(slot, refresh, fetch).await
    }

    pub(super) async fn resources(&self, refresh: bool) -> Arc<Resources> {
        let slot = Kept {
            lock: &self.fetching.resources,
            max_age: std::time::Duration::MAX,
            get: |cat| (cat.resources.clone(), cat.resources_at),
            set: |cat, resources, at| {
                (cat.resources, cat.resources_at) = (Some(resources), Some(at))
            },
        };
        let fetch = async {
            let listings = self.fetch_all(ListMethod::Resources, "resources").await;
            let templates = self
                .fetch_all(ListMethod::ResourceTemplates, "resourceTemplates")
                .await;
            let assigned = self
                .shared
                .config
                .upstreams
                .iter()
                .flat_map(|u| {
                    u.resource_prefixes
                        .iter()
                        .map(|p| (p.clone(), u.name.clone()))
                })
                .collect();
            let merged = Resources::merge(listings, templates, assigned);
            self.record_contested(&merged);
            Arc::new(merged)
        };
        self.listing(slot, refresh, fetch).await
    }

    /// The listing `slot` keeps if it serves this request ([`serves`]),
    /// else `fetch`ed: one fetch at a time, whose result requests waiting
    /// for it use, kept unless a `list_changed` arrived while it ran.
    async fn listing<T: Clone>(
        &self,
        slot: Kept<'_, T>,
        refresh: bool,
        fetch: impl std::future::Future<Output = T>,
    ) -> T {
        let cached = |asked| {
            let (kept, at) = (slot.get)(&self.catalogue.read().expect("catalogue lock"));
            let fresh = at.is_some_and(|at| serves(at, refresh, asked, slot.max_age));
            kept.filter(|_| fresh)
        };
        if let Some(kept) = cached(None) {
            return kept;
        }
        let asked = std::time::Instant::now();
        let _one = slot.lock.lock().await;
        if let Some(kept) = cached(Some(asked)) {
            return kept;
        }
        let changes = self.catalogue.read().expect("catalogue lock").changes;
        let began = std::time::Instant::now();
        let fetched = fetch.await;
        let mut cat = self.catalogue.write().expect("catalogue lock");
        if cat.changes == changes {
            (slot.set)(&mut cat, fetched.clone(), began);
        }
        fetched
    }

    /// Every item of `method` from every live upstream that offers the
    /// capability, in config order. A failing upstream contributes nothing
    /// (logged) rather than failing the whole listing.
    pub(super) async fn fetch_all(
        &self,
        method: ListMethod,
        key: &str,
    ) -> Vec<(String, Vec<Value>)> {
        let name = method.method();
        let capability = name.split('/').next().unwrap_or(name);
        let fetches = self
            .live_upstreams()
            .into_iter()
            .filter(|u| self.offers(u.name(), capability))
            .map(|u| {
                let budget = CATALOGUE_TIMEOUT.min(self.spec_timeout(u.name()));
                async move {
                    let listing = fetch_pages(&u, method, key, budget).await;
                    (u.name().to_string(), listing)
                }
            });
        let mut listings = Vec::new();
        for (server, (items, problem)) in futures::future::join_all(fetches).await {
            if let Some(problem) = problem {
                self.degraded(&server, name, &problem);
            }
            listings.push((server, items));
        }
        listings
    }

    /// An upstream's listing failed or timed out: the others are served
    /// without it (its items are missing from this listing), and it is on
    /// record.
    fn degraded(&self, server: &str, method: &str, problem: &str) {
        tracing::warn!(server, method, "upstream degraded: {problem}");
        let record = json!({"session_id": self.session.id, "server": server,
                            "method": method, "error": problem});
        if let Err(e) = self.shared.audit.append("upstream.degraded", record) {
            tracing::error!("audit write failed: {e}");
        }
    }

    /// A resource URI two upstreams claim is an upstream reaching for
    /// another's data (or a configuration to fix with `resource_prefixes`):
    /// on record once per session and set of claimants, as
    /// `resource.contested`, not only in the log's warnings.
    fn record_contested(&self, resources: &Resources) {
        for (uri, servers) in resources.contested() {
            let key = (uri.to_string(), servers.to_vec());
            if !self
                .contests_recorded
                .lock()
                .expect("contests lock")
                .insert(key)
            {
                continue;
            }
            let record = json!({"session_id": self.session.id, "uri": uri, "servers": servers,
                                "reason": "claimed by more than one upstream: left out of the listing, and reads of it are refused"});
            if let Err(e) = self.shared.audit.append("resource.contested", record) {
                tracing::error!("audit write failed: {e}");
            }
        }
    }

    /// Whether any initialized upstream declares `capability`.
    pub(super) fn offered_by_any(&self, capability: &str) -> bool {
        let cat = self.catalogue.read().expect("catalogue lock");
        cat.ready.values().any(|init| declares(init, capability))
    }

    /// Whether the upstream declared `capability` at initialize.
    pub(super) fn offers(&self, server: &str, capability: &str) -> bool {
        let cat = self.catalogue.read().expect("catalogue lock");
        cat.ready
            .get(server)
            .is_some_and(|init| declares(init, capability))
    }
}

/// Whether an upstream's initialize result declares `capability`.
fn declares(init: &Value, capability: &str) -> bool {
    init.get("capabilities")
        .and_then(|c| c.get(capability))
        .is_some()
}

/// Fetch every page of one listing within `budget` (the smaller of
/// [`CATALOGUE_TIMEOUT`] and the upstream's own deadline); what was fetched,
/// and why the listing is incomplete if it is (cut off, failed, or items
/// over [`MAX_ITEM_BYTES`] left out).
async fn fetch_pages(
    upstream: &Upstream,
    list: ListMethod,
    key: &str,
    budget: std::time::Duration,
) -> (Vec<Value>, Option<String>) {
    let mut omitted = Omitted::default();
    let (items, problem) = fetch_bounded(upstream, list, key, budget, &mut omitted).await;
    let describe = |mut labels: Vec<String>, what: &str| {
        (!labels.is_empty()).then(|| {
            let count = labels.len();
            labels.truncate(NAMED_OMISSIONS);
            format!(
                "{count} definition(s) {what} left out: {}",
                labels.join(", ")
            )
        })
    };
    let problem = [
        problem,
        describe(
            omitted.oversized,
            &format!("over the {MAX_ITEM_BYTES}-byte limit"),
        ),
        describe(
            omitted.badly_named,
            &format!(
                "with a name, URI or template over {MAX_NAME_BYTES} bytes or holding control or bidi characters"
            ),
        ),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    (items, (!problem.is_empty()).then(|| problem.join("; ")))
}

/// Items [`fetch_bounded`] left out, labelled.
#[derive(Default)]
struct Omitted {
    /// Over [`MAX_ITEM_BYTES`], with their size.
    oversized: Vec<String>,
    /// A name, URI or template that [`badly_named`] refuses.
    badly_named: Vec<String>,
}

/// [`fetch_pages`]'s pages, with the items over [`MAX_ITEM_BYTES`] or
/// [`badly_named`] taken out and named in `omitted`.
async fn fetch_bounded(
    upstream: &Upstream,
    list: ListMethod,
    key: &str,
    budget: std::time::Duration,
    omitted: &mut Omitted,
) -> (Vec<Value>, Option<String>) {
    let deadline = tokio::time::Instant::now() + budget;
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    let mut bytes = 0;
    for _ in 0..MAX_LIST_PAGES {
        let request = OwnRequest::List {
            method: list,
            cursor: cursor.take(),
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match upstream.own_request(request, left).await {
            Ok(Ok(mut result)) => {
                bytes += json_len(&result);
                if let Some(Value::Array(page)) = result.get_mut(key) {
                    page.retain(|item| {
                        let size = json_len(item);
                        if size > MAX_ITEM_BYTES {
                            omitted
                                .oversized
                                .push(format!("{} ({size} bytes)", item_label(item)));
                            return false;
                        }
                        if badly_named(item) {
                            omitted.badly_named.push(item_label(item));
                            return false;
                        }
                        true
                    });
                    items.append(page);
                }
                if bytes > MAX_LISTING_BYTES {
                    let problem = format!(
                        "listing cut off after {bytes} bytes, over the {MAX_LISTING_BYTES}-byte limit"
                    );
                    return (items, Some(problem));
                }
                cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
                if cursor.is_none() {
                    return (items, None);
                }
            }
            Ok(Err(error)) => return (items, Some(format!("listing failed: {error}"))),
            Err(e) => return (items, Some(format!("listing failed: {e}"))),
        }
    }
    (
        items,
        Some(format!("listing cut off after {MAX_LIST_PAGES} pages")),
    )
}

/// A listed item's name (or URI, or URI template) for a record, at most 100
/// characters of it: the name itself may be what is oversized.
/// The keys that name a listed item (tool and prompt, resource, template).
const NAME_KEYS: [&str; 3] = ["name", "uri", "uriTemplate"];

fn item_label(item: &Value) -> String {
    let label = NAME_KEYS
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
        .unwrap_or("(unnamed)");
    let label = match label.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &label[..cut]),
        None => label.to_string(),
    };
    crate::visible::text(&label).into_owned()
}

/// Whether `item`'s name, URI or URI template is over [`MAX_NAME_BYTES`] or
/// holds a character that changes how text is displayed.
fn badly_named(item: &Value) -> bool {
    NAME_KEYS
        .iter()
        .filter_map(|k| item.get(*k).and_then(Value::as_str))
        .any(|s| s.len() > MAX_NAME_BYTES || s.chars().any(crate::visible::is_hidden))
}
