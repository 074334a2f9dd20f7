//! `[http]`: the validated settings of the client-facing HTTP listener.
//!
//! Tokens are validated here (principal non-empty, exactly one of `sha256`
//! or `env`, the digest 64 hex digits); environment variables are read when
//! the listener starts (`downstream::http::auth`), so a missing variable is
//! a start-up error naming it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::raw::{RawHttp, RawOAuth, RawToken};

/// Concurrent HTTP sessions (each one a `Proxy` with its own upstream
/// processes) unless `[http] max_sessions` says otherwise. Beyond it a new
/// session gets 503.
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// Validated `[http]` table (plus `--listen`).
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// `None`: no HTTP listener, serve stdio.
    pub listen: Option<SocketAddr>,
    pub tokens: Vec<TokenSpec>,
    /// `None`: only loopback origins (`http(s)://localhost|127.0.0.1|[::1][:port]`).
    pub allowed_origins: Option<Vec<String>>,
    /// `None`: loopback names on a loopback listener, any name otherwise.
    pub allowed_hosts: Option<Vec<String>>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_principal: Option<usize>,
    pub header_read_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub session_idle_timeout: Option<Duration>,
    /// `[[http.oauth]]`: authorization servers whose tokens are accepted.
    pub oauth: Vec<OAuthSpec>,
}

/// One authorization server whose JWT access tokens the listener accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSpec {
    /// Without a trailing `/`.
    pub issuer: String,
    pub audience: Option<String>,
    pub principal_claim: String,
    pub scopes: Vec<String>,
}

impl HttpSettings {
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS)
    }

    /// How long an HTTP session may sit idle before it is closed.
    pub fn session_idle_timeout(&self) -> Duration {
        self.session_idle_timeout
            .unwrap_or(crate::downstream::http::session::SESSION_IDLE_TIMEOUT)
    }

    /// Sessions one principal may hold: as configured; by default half the
    /// slots when the listener knows several principals (so one cannot
    /// take them all), else every slot.
    pub fn max_sessions_per_principal(&self) -> usize {
        match self.max_sessions_per_principal {
            Some(n) => n.min(self.max_sessions()),
            None if self.several_principals() => (self.max_sessions() / 2).max(1),
            None => self.max_sessions(),
        }
    }

    /// Whether more than one principal can reach the listener: tokens for
    /// two or more, or an authorization server (any number of them).
    pub fn several_principals(&self) -> bool {
        let mut named = self.tokens.iter().map(|t| t.principal.as_str());
        let first = named.next();
        !self.oauth.is_empty() || named.any(|p| Some(p) != first)
    }
}

/// One configured bearer token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    pub principal: String,
    pub secret: TokenSecret,
    /// A JSON object: `input.principal.claims`.
    pub attributes: Value,
}

/// Where a token's digest comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSecret {
    /// SHA-256 of the token, as written in the config.
    Sha256([u8; 32]),
    /// The token itself, in this environment variable.
    Env(String),
}

/// Check `[http]`; errors are `(key, message)` for the caller to place.
pub fn validate(raw: RawHttp) -> Result<HttpSettings, (String, String)> {
    let listen = match &raw.listen {
        Some(l) => Some(super::parse_listen(l).map_err(|m| ("http.listen".to_string(), m))?),
        None => None,
    };
    let tokens = raw
        .tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| token(i, t))
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in [
        ("http.max_sessions", raw.max_sessions.map(|n| n as u64)),
        (
            "http.max_sessions_per_principal",
            raw.max_sessions_per_principal.map(|n| n as u64),
        ),
        (
            "http.max_connections",
            raw.max_connections.map(|n| n as u64),
        ),
        (
            "http.header_read_timeout_seconds",
            raw.header_read_timeout_seconds,
        ),
        (
            "http.session_idle_timeout_seconds",
            raw.session_idle_timeout_seconds,
        ),
    ] {
        if value == Some(0) {
            return Err((key.into(), "expected a positive number".into()));
        }
    }
    if let Some(origins) = &raw.allowed_origins
        && let Some(bad) = origins.iter().find(|o| !o.contains("://"))
    {
        return Err((
            "http.allowed_origins".into(),
            format!("expected origins such as \"https://app.example\", got {bad:?}"),
        ));
    }
    Ok(HttpSettings {
        listen,
        tokens,
        allowed_origins: raw.allowed_origins,
        allowed_hosts: raw.allowed_hosts,
        max_sessions: raw.max_sessions,
        max_sessions_per_principal: raw.max_sessions_per_principal,
        header_read_timeout: raw.header_read_timeout_seconds.map(Duration::from_secs),
        max_connections: raw.max_connections,
        session_idle_timeout: raw.session_idle_timeout_seconds.map(Duration::from_secs),
        oauth: raw
            .oauth
            .into_iter()
            .enumerate()
            .map(|(i, o)| oauth(i, o))
            .collect::<Result<Vec<_>, _>>()?,
    })
}

fn oauth(i: usize, raw: RawOAuth) -> Result<OAuthSpec, (String, String)> {
    let key = |field: &str| format!("http.oauth[{i}].{field}");
    let issuer = raw.issuer.trim_end_matches('/').to_string();
    super::check_url(&issuer).map_err(|m| (key("issuer"), m))?;
    if let Some(scope) = raw.scopes.iter().find(|s| s.is_empty() || s.contains(' ')) {
        return Err((key("scopes"), format!("not a scope: {scope:?}")));
    }
    Ok(OAuthSpec {
        issuer,
        audience: raw.audience,
        principal_claim: raw.principal_claim.unwrap_or_else(|| "sub".into()),
        scopes: raw.scopes,
    })
}

fn token(i: usize, raw: RawToken) -> Result<TokenSpec, (String, String)> {
    let key = |field: &str| format!("http.tokens[{i}].{field}");
    if let Err(e) = crate::identity::Identity::parse(&raw.principal) {
        return Err((key("principal"), e.to_string()));
    }
    let secret = match (raw.sha256, raw.env) {
        (Some(hex), None) => {
            TokenSecret::Sha256(parse_digest(&hex).map_err(|m| (key("sha256"), m))?)
        }
        (None, Some(env)) if !env.is_empty() => TokenSecret::Env(env),
        _ => {
            return Err((
                key("sha256"),
                "expected exactly one of sha256 = \"<64 hex digits>\" or env = \"VARIABLE\"".into(),
            ));
        }
    };
    let attributes = serde_json::to_value(&raw.attributes)
        .map_err(|e| (key("attributes"), format!("not representable as JSON: {e}")))?;
    Ok(TokenSpec {
        principal: raw.principal,
        secret,
        attributes,
    })
}

/// 64 hex digits (either case) -> 32 bytes.
pub fn parse_digest(hex_text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut out)
        .map_err(|_| format!("expected the token's SHA-256 as 64 hex digits, got {hex_text:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpSettings, (String, String)> {
        #[derive(serde::Deserialize)]
        struct W {
            http: RawHttp,
        }
        validate(toml::from_str::<W>(text).unwrap().http)
    }

    #[test]
    fn tokens_by_digest_and_by_env() {
        let digest = "ab".repeat(32);
        let s = parse(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntokens = [{{ principal = \"alice\", sha256 = \"{digest}\", attributes = {{ team = \"sre\" }} }}, {{ principal = \"bot\", env = \"BOT_TOKEN\" }}]"
        ))
        .unwrap();
        assert_eq!(s.tokens[0].secret, TokenSecret::Sha256([0xab; 32]));
        assert_eq!(s.tokens[0].attributes, serde_json::json!({"team": "sre"}));
        assert_eq!(s.tokens[1].secret, TokenSecret::Env("BOT_TOKEN".into()));
        assert_eq!(s.max_sessions(), DEFAULT_MAX_SESSIONS);
    }

    /// Two tokens for one principal are one principal; an authorization
    /// server may vouch for any number.
    #[test]
    fn several_principals_are_several_names_or_oauth() {
        let token = |p: &str| format!("{{ principal = \"{p}\", env = \"T_{p}\" }}");
        let with = |tokens: &[&str]| {
            let list: Vec<String> = tokens.iter().map(|p| token(p)).collect();
            parse(&format!("[http]\ntokens = [{}]", list.join(", "))).unwrap()
        };
        assert!(!with(&[]).several_principals());
        assert!(!with(&["alice"]).several_principals());
        assert!(!with(&["alice", "alice"]).several_principals());
        assert!(with(&["alice", "bob"]).several_principals());
        let mut oauth = with(&[]);
        oauth.oauth.push(OAuthSpec {
            issuer: "https://id.example".into(),
            audience: None,
            principal_claim: "sub".into(),
            scopes: vec![],
        });
        assert!(oauth.several_principals());
        assert_eq!(
            with(&["alice", "bob"]).max_sessions_per_principal(),
            DEFAULT_MAX_SESSIONS / 2
        );
        assert_eq!(
            with(&["alice", "alice"]).max_sessions_per_principal(),
            DEFAULT_MAX_SESSIONS
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            ("[http]\nlisten = \"localhost\"", "http.listen"),
            (
                "[http]\ntokens = [{ principal = \"a\" }]",
                "http.tokens[0].sha256",
            ),
            (
                "[http]\ntokens = [{ principal = \"a\", sha256 = \"xyz\" }]",
                "http.tokens[0].sha256",
            ),
            (
                "[http]\ntokens = [{ principal = \" \", env = \"X\" }]",
                "http.tokens[0].principal",
            ),
            ("[http]\nmax_sessions = 0", "http.max_sessions"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            (
                "[http]\nheader_read_timeout_seconds = 0",
                "http.header_read_timeout_seconds",
            ),
            (
                "[http]\nsession_idle_timeout_seconds = 0",
                "http.session_idle_timeout_seconds",
            ),
            (
                "[http]\nmax_sessions_per_principal = 0",
                "http.max_sessions_per_principal",
            ),
            (
                "[http]\nallowed_origins = [\"example.com\"]",
                "http.allowed_origins",
            ),
        ];
        for (text, key) in cases {
            let (k, _) = parse(text).expect_err(text);
            assert_eq!(k, key, "{text}");
        }
    }
}
