//! Who is calling: `Authorization: Bearer <token>` -> [`Principal`].
//!
//! Tokens are never kept: only their SHA-256 digests, compared in constant
//! time (`subtle`) against every configured digest, so neither timing nor
//! an early exit tells which entry came close. An [`Authenticator`] is an
//! enum so another scheme (JWT/OIDC) is one more variant, not a rewrite.

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{TokenSecret, TokenSpec};
use crate::proxy::session::Principal;

/// `Principal::source` of a token-authenticated principal.
pub const TOKEN_SOURCE: &str = "token";

/// How requests are authenticated.
pub enum Authenticator {
    /// No credentials asked: every request is this principal. Only allowed
    /// on a loopback listener (checked at start-up).
    Unauthenticated(Principal),
    /// Static bearer tokens from `[http] tokens`.
    Tokens(Vec<TokenEntry>),
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
        Ok(Authenticator::Tokens(entries))
    }

    pub fn requires_credentials(&self) -> bool {
        !matches!(self, Authenticator::Unauthenticated(_))
    }

    /// The principal these headers prove, or why not.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self {
            Authenticator::Unauthenticated(principal) => Ok(principal.clone()),
            Authenticator::Tokens(entries) => {
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
                let entry = found.ok_or(AuthError::Invalid)?;
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

    #[test]
    fn right_tokens_map_to_their_principals() {
        let auth = tokens();
        let alice = auth.authenticate(&headers("Bearer alice-token")).unwrap();
        assert_eq!((alice.id.as_str(), alice.source), ("alice", "token"));
        assert_eq!(alice.claims, json!({"team": "sre"}));
        let bot = auth.authenticate(&headers("bearer bot-token")).unwrap();
        assert_eq!(bot.id, "bot");
    }

    #[test]
    fn wrong_missing_or_malformed_tokens_are_refused() {
        let auth = tokens();
        assert_eq!(
            auth.authenticate(&HeaderMap::new()).unwrap_err(),
            AuthError::Missing
        );
        for bad in [
            "Bearer alice-token2",
            "Bearer ",
            "Basic alice-token",
            "alice-token",
        ] {
            assert!(auth.authenticate(&headers(bad)).is_err(), "{bad}");
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

    #[test]
    fn no_tokens_means_the_fallback_principal() {
        let auth = Authenticator::from_tokens(&[], |_| None, Principal::new("me", "os")).unwrap();
        assert!(!auth.requires_credentials());
        assert_eq!(auth.authenticate(&HeaderMap::new()).unwrap().id, "me");
    }
}
