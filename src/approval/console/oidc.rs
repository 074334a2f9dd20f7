//! Signing approvers in with OpenID Connect: the authorization code flow
//! with PKCE (RFC 7636, `S256`), a `state` bound to the browser and a
//! `nonce` bound to the ID token.
//!
//! # Checks on the ID token
//!
//! - the provider's metadata comes from `<issuer>/.well-known/openid-configuration`
//!   and must name exactly the configured issuer; every endpoint is https
//!   or loopback http;
//! - the signature verifies with a key from the provider's JWKS (fetched
//!   again, at most once a minute, when a token names an unknown `kid`); the
//!   algorithm is an asymmetric one (RS*, PS*, ES256/384, EdDSA) and matches
//!   the key: never `none`, never HMAC;
//! - `iss` is the issuer, `aud` contains our client id (and `azp` is our
//!   client id when there are several audiences), `exp` is in the future and
//!   `iat` not in it (60 s leeway), `nonce` is the one this login sent;
//! - the subject (or a *verified* email) maps to one approver in the
//!   directory; anyone else is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::approval::service::OidcSettings;
use crate::config::check_url;

/// How long a started sign-in may take.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in flight at once; beyond, the oldest are dropped.
const MAX_PENDING_LOGINS: usize = 1024;
/// Clock leeway for `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;
/// Unknown-`kid` refetches of the JWKS at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(60);
use crate::downstream::http::oauth::ASYMMETRIC_ALGORITHMS as ALLOWED_ALGORITHMS;

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Who signed in, as the ID token says.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    /// Present only when the provider says it is verified.
    pub email: Option<String>,
    pub name: Option<String>,
}

struct PendingLogin {
    nonce: String,
    verifier: String,
    started: Instant,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// One configured provider and the sign-ins in flight with it.
pub struct Oidc {
    settings: OidcSettings,
    client_secret: Option<String>,
    pub redirect_url: String,
    http: reqwest::Client,
    metadata: tokio::sync::OnceCell<Metadata>,
    keys: tokio::sync::Mutex<Option<Keys>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Provider(String),
    #[error("this sign-in was not started here, or took too long; sign in again")]
    UnknownState,
    #[error("the ID token was refused: {0}")]
    Token(String),
}

/// An error with its causes ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
}

impl Oidc {
    pub fn new(
        settings: OidcSettings,
        client_secret: Option<String>,
        redirect_url: String,
    ) -> Oidc {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client with static settings");
        Oidc {
            settings,
            client_secret,
            redirect_url,
            http,
            metadata: tokio::sync::OnceCell::new(),
            keys: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn metadata(&self) -> Result<&Metadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
                let meta: Metadata = self.get_json(&url).await?;
                if meta.issuer.trim_end_matches('/') != self.settings.issuer {
                    return Err(OidcError::Provider(format!(
                        "the discovery document names issuer {:?}, not {:?}",
                        meta.issuer, self.settings.issuer
                    )));
                }
                for url in [
                    &meta.authorization_endpoint,
                    &meta.token_endpoint,
                    &meta.jwks_uri,
                ] {
                    check_url(url).map_err(OidcError::Provider)?;
                }
                Ok(meta)
            })
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {}", chain(&e))))?;
        if !response.status().is_success() {
            return Err(OidcError::Provider(format!(
                "{url}: HTTP {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))
    }

    /// Starts a sign-in: the provider URL to send the browser to, and the
    /// `state` to bind to the browser (a cookie).
    pub async fn start(&self) -> Result<(String, String), OidcError> {
        let meta = self.metadata().await?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let mut url = reqwest::Url::parse(&meta.authorization_endpoint)
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let mut pending = self.pending.lock().expect("pending logins");
        pending.retain(|_, p| p.started.elapsed() < LOGIN_TTL);
        if pending.len() >= MAX_PENDING_LOGINS
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            state.clone(),
            PendingLogin {
                nonce,
                verifier,
                started: Instant::now(),
            },
        );
        Ok((url.to_string(), state))
    }

    /// Finishes a sign-in: `state` must be one this process started (and
    /// the caller checked it against the browser's cookie); the code is
    /// exchanged with the PKCE verifier and the ID token checked.
    pub async fn finish(&self, state: &str, code: &str) -> Result<SignedIn, OidcError> {
        let login = self
            .pending
            .lock()
            .expect("pending logins")
            .remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_TTL)
            .ok_or(OidcError::UnknownState)?;
        let meta = self.metadata().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", login.verifier.as_str()),
        ];
        let mut request = self.http.post(&meta.token_endpoint);
        match &self.client_secret {
            Some(secret) => request = request.basic_auth(&self.settings.client_id, Some(secret)),
            None => form.push(("client_id", self.settings.client_id.as_str())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {}", chain(&e))))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!(
                "token endpoint answered HTTP {status}: {}",
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("")
            )));
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| OidcError::Token("the token response has no id_token".into()))?;
        self.verify_id_token(id_token, &login.nonce).await
    }

    /// The checks of the module docs.
    pub async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<SignedIn, OidcError> {
        let bad = |m: String| OidcError::Token(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(bad("the nonce is not the one this sign-in sent".into()));
        }
        if claims.aud.as_array().is_some_and(|a| a.len() > 1)
            && claims.azp.as_deref() != Some(self.settings.client_id.as_str())
        {
            return Err(bad("several audiences and azp is not this client".into()));
        }
        Ok(SignedIn {
            issuer: self.settings.issuer.clone(),
            subject: claims.sub,
            email: claims.email.filter(|_| claims.email_verified == Some(true)),
            name: claims.name,
        })
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, OidcError> {
        let meta = self.metadata().await?;
        let mut keys = self.keys.lock().await;
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        if let Some(k) = keys.as_ref().and_then(|k| find(&k.set)) {
            return DecodingKey::from_jwk(&k).map_err(|e| OidcError::Token(e.to_string()));
        }
        let may_fetch = keys
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= JWKS_REFETCH);
        if !may_fetch {
            return Err(OidcError::Token(format!(
                "no provider key with kid {kid:?}"
            )));
        }
        let set: JwkSet = self.get_json(&meta.jwks_uri).await?;
        let found = find(&set);
        *keys = Some(Keys {
            set,
            fetched: Instant::now(),
        });
        let jwk =
            found.ok_or_else(|| OidcError::Token(format!("no provider key with kid {kid:?}")))?;
        DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Token(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636, appendix B.
    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[tokio::test]
    async fn an_unsigned_or_hmac_token_is_refused_before_any_key_is_fetched() {
        let oidc = Oidc::new(
            OidcSettings {
                issuer: "http://127.0.0.1:9".into(),
                client_id: "console".into(),
                client_secret_env: None,
                redirect_url: None,
            },
            None,
            "http://127.0.0.1:1/oidc/callback".into(),
        );
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let claims = b64(
            r#"{"sub":"bob","iss":"http://127.0.0.1:9","aud":"console","exp":9999999999,"iat":1,"nonce":"n"}"#,
        );
        for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS256"}"#] {
            let token = format!("{}.{claims}.", b64(header));
            let err = oidc.verify_id_token(&token, "n").await.unwrap_err();
            assert!(matches!(err, OidcError::Token(_)), "{header}: {err}");
        }
    }
}
