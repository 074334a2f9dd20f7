//! `resources/list`, `resources/templates/list`, `resources/read`,
//! `resources/subscribe` and `resources/unsubscribe`.
//!
//! Both listings are filtered through the policy item by item (`hide`).
//! Reads and (un)subscriptions are decided per call like tool calls, with
//! `input.method` naming which; a refusal is a JSON-RPC error (`-32001`,
//! `data.reasons`). URIs are routed by the merged listing, then by
//! resource-template prefix; they are never rewritten. A URI that two
//! upstreams claim is routed to neither (see `upstream::catalogue`).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::input::{Subject, Target};
use super::to_client::Shown;
use super::{Proxy, Reply};

use crate::error::Refusal;
use crate::upstream::{Resource, Resources, Route};

impl Proxy {
    /// The one initialized upstream that declares resources, if exactly one
    /// does.
    fn sole_resource_server(&self) -> Option<String> {
        let mut offering = self
            .upstreams
            .iter()
            .filter(|u| self.offers(u.name(), "resources"));
        match (offering.next(), offering.next()) {
            (Some(only), None) => Some(only.name().to_string()),
            _ => None,
        }
    }

    pub(super) async fn resources_list(&self) -> Reply {
        let resources = self.resources(false).await;
        let empty = json!({});
        let visible = self.visible(resources.iter(), "resources/list", |r| Subject {
            method: "resources/list",
            server: &r.server,
            target: Target::Resource(
                r.def.get("uri").and_then(Value::as_str).unwrap_or(""),
                Some(&r.def),
            ),
            arguments: &empty,
            params: &empty,
        });
        let shown = match visible {
            Ok(shown) => shown
                .iter()
                .filter_map(|r| r.def.get("uri")?.as_str())
                .map(str::to_string)
                .collect(),
            Err(refused) => return Reply::Json(Err(refused)),
        };
        let item = |resources: &Resources, uri: &String| {
            resources.listed(uri).map_or(Value::Null, |r| r.def.clone())
        };
        Reply::List("resources", Box::new(Shown::new(resources, shown, item)))
    }

    pub(super) async fn resource_templates_list(&self) -> Reply {
        let resources = self.resources(false).await;
        let empty = json!({});
        let templates: Vec<(usize, &Resource)> = resources.templates().iter().enumerate().collect();
        let visible = self.visible(templates.iter(), "resources/templates/list", |(_, t)| {
            Subject {
                method: "resources/templates/list",
                server: &t.server,
                target: Target::Template(&t.def),
                arguments: &empty,
                params: &empty,
            }
        });
        let shown = match visible {
            Ok(shown) => shown.iter().map(|(at, _)| *at).collect(),
            Err(refused) => return Reply::Json(Err(refused)),
        };
        let item = |resources: &Resources, at: &usize| resources.templates()[*at].def.clone();
        Reply::List(
            "resourceTemplates",
            Box::new(Shown::new(resources, shown, item)),
        )
    }

    /// `resources/read`, `resources/subscribe` and `resources/unsubscribe`:
    /// route the URI, decide, forward. Subscriptions are decided too: a
    /// subscription tells the subscriber when a resource changes, which is
    /// itself information, and the upstream acts on it.
    pub(super) async fn resource_call(
        &self,
        method: &'static str,
        params: Value,
        cancel: &CancellationToken,
    ) -> Option<Result<Value, Value>> {
        let Some(uri) = params.get("uri").and_then(Value::as_str) else {
            return Some(
                Refusal::InvalidParams(format!("{method} needs a string `uri`"))
                    .answer(false, None),
            );
        };
        let route = |resources: &Resources| match resources.route(uri) {
            Route::To { server, listed } => Ok(Some((server.to_string(), listed.cloned()))),
            Route::Contested(servers) => Err(servers),
            Route::Unclaimed => Ok(None),
        };
        // Not routable by the kept listings: perhaps by fresh ones.
        let owner = match route(&*self.resources(false).await) {
            Ok(Some(owner)) => Ok(Some(owner)),
            _ => route(&*self.resources(true).await),
        };
        let empty = json!({});
        let refuse = |refusal| {
            let subject = Subject {
                method,
                server: "",
                target: Target::Resource(uri, None),
                arguments: &empty,
                params: &params,
            };
            Some(self.refuse_early(&subject, refusal).answer(false))
        };
        let (server, def) = match &owner {
            Ok(Some((server, listed))) => (server.clone(), listed.as_ref()),
            Err(servers) => {
                return refuse(Refusal::ResourceContested {
                    uri: uri.to_string(),
                    servers: servers.clone(),
                });
            }
            // The wrap form has one upstream: it may serve URIs it does not
            // list. So may the only upstream that offers resources at all.
            Ok(None) if self.naming.passthrough => (self.upstreams[0].name().to_string(), None),
            Ok(None) if let Some(only) = self.sole_resource_server() => (only, None),
            Ok(None) => return refuse(Refusal::ResourceNotFound(uri.to_string())),
        };
        let subject = Subject {
            method,
            server: &server,
            target: Target::Resource(uri, def),
            arguments: &empty,
            params: &params,
        };
        self.decide_and_forward(&subject, cancel).await
    }
}
