//! The listener as an OAuth 2.1 resource server (MCP authorization,
//! 2025-11-25 and 2026-07-28): JWT access tokens from the configured
//! authorization servers (`[[http.oauth]]`) name the principal.
//!
//! - `/.well-known/oauth-protected-resource` (and its `/mcp` path-suffixed
//!   form, RFC 9728) names this resource, its authorization servers and the
//!   scopes they require; an unauthenticated request gets 401 with
//!   `WWW-Authenticate: Bearer resource_metadata="…"`.
//! - A token is checked against the issuer its (unverified) `iss` names,
//!   then fully: signature by a key from that issuer's JWKS (found by
//!   discovery, `ISSUER/.well-known/openid-configuration`, else RFC 8414
//!   `ISSUER/.well-known/oauth-authorization-server`; cached, refetched on an
//!   unknown `kid` at most every [`JWKS_REFETCH`]); only asymmetric
//!   algorithms (RS256, ES256, EdDSA and their kin; never `none`, never
//!   HMAC, whose "key" would be public); `iss`; `aud` (this resource's own
//!   URI, RFC 8707, unless configured); `exp` and `nbf` with [`LEEWAY`].
//! - The principal is the configured claim (`sub`); the token's claims and
//!   scopes reach the policy as `input.principal.claims` (`scopes` a list).
//!   Missing a required scope: 403 `insufficient_scope` naming it.
//! - Tokens are never forwarded: upstreams get only what their own config
//!   says.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{OAuthSpec, check_url};
use crate::proxy::session::Principal;

/// `Principal::source` of an OAuth-authenticated principal.
pub const OAUTH_SOURCE: &str = "oauth";
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// A JWKS is refetched for an unknown `kid` at most this often.
pub const JWKS_REFETCH: Duration = Duration::from_secs(5);
/// Where the metadata is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The signature algorithms accepted on JWTs (here and by the approval
/// console's sign-in): asymmetric only.
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a token is refused: 401 `invalid_token` or 403 `insufficient_scope`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("the access token lacks scope {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
}

/// The authorization servers this listener trusts.
pub struct ResourceServer {
    issuers: Vec<Issuer>,
    /// This resource's URI (`http://HOST:PORT/mcp`), set once bound.
    resource: OnceLock<String>,
}

struct Issuer {
    spec: OAuthSpec,
    http: reqwest::Client,
    jwks_uri: tokio::sync::OnceCell<String>,
    keys: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl ResourceServer {
    pub fn new(specs: &[OAuthSpec]) -> Option<ResourceServer> {
        if specs.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client with static settings");
        Some(ResourceServer {
            issuers: specs
                .iter()
                .map(|spec| Issuer {
                    spec: spec.clone(),
                    http: http.clone(),
                    jwks_uri: tokio::sync::OnceCell::new(),
                    keys: tokio::sync::Mutex::new(None),
                })
                .collect(),
            resource: OnceLock::new(),
        })
    }

    /// The listener is bound at `base` (`http://HOST:PORT`).
    pub fn bound(&self, base: &str) {
        let _ = self.resource.set(format!("{base}/mcp"));
    }

    pub fn resource(&self) -> &str {
        self.resource.get().map_or("", String::as_str)
    }

    /// Where clients find [`Self::metadata`].
    pub fn metadata_url(&self) -> String {
        let resource = self.resource();
        let base = resource.strip_suffix("/mcp").unwrap_or(resource);
        format!("{base}{METADATA_PATH}")
    }

    /// The RFC 9728 protected-resource metadata.
    pub fn metadata(&self) -> Value {
        let mut scopes: Vec<&str> = self
            .issuers
            .iter()
            .flat_map(|i| i.spec.scopes.iter().map(String::as_str))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        json!({
            "resource": self.resource(),
            "authorization_servers": self.issuers.iter().map(|i| &i.spec.issuer).collect::<Vec<_>>(),
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-firewall",
        })
    }

    /// The principal `token` proves.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, TokenError> {
        let bad = |m: String| TokenError::Invalid(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ASYMMETRIC_ALGORITHMS.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let claimed = unverified_issuer(token).ok_or_else(|| bad("no `iss` claim".into()))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.spec.issuer == claimed.trim_end_matches('/'))
            .ok_or_else(|| bad(format!("issuer {claimed:?} is not trusted here")))?;
        let key = issuer.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&claimed]);
        let audience = issuer.spec.audience.as_deref().unwrap_or(self.resource());
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        let mut claims = data.claims;
        let id = claims
            .get(&issuer.spec.principal_claim)
            .and_then(Value::as_str)
            .filter(|id| crate::identity::Identity::parse(id).is_ok())
            .ok_or_else(|| {
                bad(format!(
                    "claim {:?} does not name a principal",
                    issuer.spec.principal_claim
                ))
            })?
            .to_string();
        let scopes = scopes(&claims);
        let missing: Vec<String> = issuer
            .spec
            .scopes
            .iter()
            .filter(|s| !scopes.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(TokenError::InsufficientScope(missing));
        }
        claims.insert("scopes".into(), json!(scopes));
        Ok(Principal {
            id,
            source: OAUTH_SOURCE,
            claims: Value::Object(claims),
        })
    }
}

impl Issuer {
    async fn jwks_uri(&self) -> Result<&str, TokenError> {
        let unavailable = |m: String| TokenError::Invalid(format!("issuer unavailable: {m}"));
        self.jwks_uri
            .get_or_try_init(|| async {
                let base = &self.spec.issuer;
                let mut last = String::new();
                for path in [
                    "/.well-known/openid-configuration",
                    "/.well-known/oauth-authorization-server",
                ] {
                    match self.get::<Discovery>(&format!("{base}{path}")).await {
                        Ok(d) if d.issuer.trim_end_matches('/') == base => {
                            check_url(&d.jwks_uri).map_err(unavailable)?;
                            return Ok(d.jwks_uri);
                        }
                        Ok(d) => {
                            return Err(unavailable(format!(
                                "discovery names issuer {:?}, not {base:?}",
                                d.issuer
                            )));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(unavailable(last))
            })
            .await
            .map(String::as_str)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("{url}: {e}"))
    }

    /// The key for `kid`, refetching the JWKS (at a bounded rate) when it
    /// is unknown: how a key rotated at the provider is picked up.
    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        let bad = |m: String| TokenError::Invalid(m);
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let uri = self.jwks_uri().await?.to_string();
        let mut keys = self.keys.lock().await;
        if let Some(jwk) = keys.as_ref().and_then(|(set, _)| find(set)) {
            return DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()));
        }
        if keys
            .as_ref()
            .is_some_and(|(_, fetched)| fetched.elapsed() < JWKS_REFETCH)
        {
            return Err(bad(format!("no key with kid {kid:?} at the issuer")));
        }
        let set: JwkSet = self
            .get(&uri)
            .await
            .map_err(|e| bad(format!("issuer keys unavailable: {e}")))?;
        let found = find(&set);
        *keys = Some((set, Instant::now()));
        let jwk = found.ok_or_else(|| bad(format!("no key with kid {kid:?} at the issuer")))?;
        DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))
    }
}

/// The `iss` of a token's payload, before anything is verified: only to
/// pick which issuer's keys and checks apply.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// The token's scopes: `scope` (space-separated, RFC 8693/9068) or `scp`.
fn scopes(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_owned).collect(),
        (_, Some(Value::Array(items))) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ResourceServer {
        let rs = ResourceServer::new(&[OAuthSpec {
            issuer: "http://127.0.0.1:9".into(),
            audience: None,
            principal_claim: "sub".into(),
            scopes: vec!["mcp".into()],
        }])
        .unwrap();
        rs.bound("http://127.0.0.1:8080");
        rs
    }

    fn unsigned(header: Value, claims: Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", part(&header), part(&claims))
    }

    #[tokio::test]
    async fn none_and_hmac_are_refused_before_any_key_is_fetched() {
        let rs = server();
        let claims = json!({"iss": "http://127.0.0.1:9", "sub": "mallory", "aud": rs.resource(), "exp": 4_000_000_000u64});
        for alg in ["none", "HS256"] {
            let token = unsigned(json!({"alg": alg, "typ": "JWT"}), claims.clone());
            let err = rs.authenticate(&token).await.unwrap_err();
            assert!(matches!(err, TokenError::Invalid(_)), "{alg}: {err}");
        }
    }

    #[test]
    fn metadata_names_the_resource_and_its_servers() {
        let rs = server();
        let m = rs.metadata();
        assert_eq!(m["resource"], "http://127.0.0.1:8080/mcp");
        assert_eq!(m["authorization_servers"][0], "http://127.0.0.1:9");
        assert_eq!(m["scopes_supported"], json!(["mcp"]));
        assert_eq!(
            rs.metadata_url(),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(scopes(&c(json!({"scope": "a b"}))), ["a", "b"]);
        assert_eq!(scopes(&c(json!({"scp": ["a"]}))), ["a"]);
        assert!(scopes(&c(json!({}))).is_empty());
    }
}
