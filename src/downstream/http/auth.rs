//! Who is calling: `Authorization: Bearer <token>` -> [`Principal`].
//!
//! Tokens are never kept: only their SHA-256 digests, compared in constant
//! time (`subtle`) against every configured digest, so neither timing nor
//! an early exit tells which entry came close. A bearer token that is no
//! static token is tried as an OAuth access token when `[[http.oauth]]`
//! names authorization servers ([`super::oauth`]).

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::oauth::{ResourceServer, TokenError};
use crate::config::{TokenSecret, TokenSpec};
use crate::proxy::session::Principal;

/// `Principal::source` of a token-authenticated principal.
pub const TOKEN_SOURCE: &str = "token";

/// How requests are authenticated.
pub enum Authenticator {
    /// No credentials asked: every request is this principal. Only allowed
    /// on a loopback listener (checked at start-up).
    Unauthenticated(Principal),
    /// Bearer tokens: static ones from `[http] tokens`, and JWT access
    /// tokens of the `[[http.oauth]]` authorization servers.
    Bearer {
        tokens: Vec<TokenEntry>,
        oauth: Option<ResourceServer>,
    },
}

/// One accepted token: its digest and who it is.
pub struct TokenEntry {
    digest: [u8; 32],
    principal: String,
    attributes: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    #[error(transparent)]
    Token(#[from] TokenError),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("http.tokens[{index}] ({principal}): environment variable {env} is not set or empty")]
    MissingEnv {
        index: usize,
        principal: String,
        env: String,
    },
}

impl Authenticator {
    /// Token authentication from the config, reading `env` tokens now; with
    /// no tokens, `fallback` is who every request is.
    pub fn from_tokens(
        tokens: &[TokenSpec],
        env: impl Fn(&str) -> Option<String>,
        fallback: Principal,
    ) -> Result<Authenticator, AuthSetupError> {
        if tokens.is_empty() {
            return Ok(Authenticator::Unauthenticated(fallback));
        }
        let mut entries = Vec::with_capacity(tokens.len());
        for (index, spec) in tokens.iter().enumerate() {
            let digest = match &spec.secret {
                TokenSecret::Sha256(d) => *d,
                TokenSecret::Env(name) => match env(name).filter(|t| !t.is_empty()) {
                    Some(token) => sha256(token.as_bytes()),
                    None => {
                        return Err(AuthSetupError::MissingEnv {
                            index,
                            principal: spec.principal.clone(),
                            env: name.clone(),
                        });
                    }
                },
            };
            entries.push(TokenEntry {
                digest,
                principal: spec.principal.clone(),
                attributes: spec.attributes.clone(),
            });
        }
        Ok(Authenticator::Bearer {
            tokens: entries,
            oauth: None,
        })
    }

    /// Also accept the access tokens of `oauth`'s authorization servers.
    pub fn with_oauth(self, oauth: Option<ResourceServer>) -> Authenticator {
        let Some(oauth) = oauth else {
            return self;
        };
        match self {
            Authenticator::Unauthenticated(_) => Authenticator::Bearer {
                tokens: Vec::new(),
                oauth: Some(oauth),
            },
            Authenticator::Bearer { tokens, .. } => Authenticator::Bearer {
                tokens,
                oauth: Some(oauth),
            },
        }
    }

    /// The resource server, when OAuth is configured.
    pub fn oauth(&self) -> Option<&ResourceServer> {
        match self {
            Authenticator::Bearer { oauth, .. } => oauth.as_ref(),
            Authenticator::Unauthenticated(_) => None,
        }
    }

    pub fn requires_credentials(&self) -> bool {
        !matches!(self, Authenticator::Unauthenticated(_))
    }

    /// The principal these headers prove, or why not.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self {
            Authenticator::Unauthenticated(principal) => Ok(principal.clone()),
            Authenticator::Bearer {
                tokens: entries,
                oauth,
            } => {
                let token = bearer(headers).ok_or(AuthError::Missing)?;
                let presented = sha256(token.as_bytes());
                // Look at every entry, whatever matched, so the time taken
                // does not depend on which entry (if any) matches.
                let mut found = None;
                for entry in entries {
                    if bool::from(entry.digest.ct_eq(&presented)) {
                        found = Some(entry);
                    }
                }
                let entry = match (found, oauth) {
                    (Some(entry), _) => entry,
                    (None, Some(oauth)) if token.matches('.').count() == 2 => {
                        return Ok(oauth.authenticate(token).await?);
                    }
                    (None, _) => return Err(AuthError::Invalid),
                };
                Ok(Principal {
                    id: entry.principal.clone(),
                    source: TOKEN_SOURCE,
                    claims: entry.attributes.clone(),
                })
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive, RFC 6750).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", auth.parse().unwrap());
        h
    }

    fn tokens() -> Authenticator {
        let specs = vec![
            TokenSpec {
                principal: "alice".into(),
                secret: TokenSecret::Sha256(sha256(b"alice-token")),
                attributes: json!({"team": "sre"}),
            },
            TokenSpec {
                principal: "bot".into(),
                secret: TokenSecret::Env("BOT_TOKEN".into()),
                attributes: json!({}),
            },
        ];
        let env = |name: &str| (name == "BOT_TOKEN").then(|| "bot-token".to_string());
        Authenticator::from_tokens(&specs, env, Principal::new("nobody", "os")).unwrap()
    }

    #[tokio::test]
    async fn right_tokens_map_to_their_principals() {
        let auth = tokens();
        let alice = auth
            .authenticate(&headers("Bearer alice-token"))
            .await
            .unwrap();
        assert_eq!((alice.id.as_str(), alice.source), ("alice", "token"));
        assert_eq!(alice.claims, json!({"team": "sre"}));
        let bot = auth
            .authenticate(&headers("bearer bot-token"))
            .await
            .unwrap();
        assert_eq!(bot.id, "bot");
    }

    #[tokio::test]
    async fn wrong_missing_or_malformed_tokens_are_refused() {
        let auth = tokens();
        assert_eq!(
            auth.authenticate(&HeaderMap::new()).await.unwrap_err(),
            AuthError::Missing
        );
        for bad in [
            "Bearer alice-token2",
            "Bearer ",
            "Basic alice-token",
            "alice-token",
        ] {
            assert!(auth.authenticate(&headers(bad)).await.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_env_token_is_a_setup_error() {
        let specs = vec![TokenSpec {
            principal: "bot".into(),
            secret: TokenSecret::Env("NOPE".into()),
            attributes: json!({}),
        }];
        let err = Authenticator::from_tokens(&specs, |_| None, Principal::new("x", "os"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("NOPE"), "{err}");
    }

    #[tokio::test]
    async fn no_tokens_means_the_fallback_principal() {
        let auth = Authenticator::from_tokens(&[], |_| None, Principal::new("me", "os")).unwrap();
        assert!(!auth.requires_credentials());
        assert_eq!(auth.authenticate(&HeaderMap::new()).await.unwrap().id, "me");
    }
}
