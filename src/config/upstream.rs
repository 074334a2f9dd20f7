//! `[[upstream]]` tables: how to reach one upstream MCP server, either as a
//! child process (`command`) or over HTTP (`url`, Streamable HTTP or legacy
//! SSE, with configured headers).
//!
//! Invariants of a validated [`UpstreamSpec`]:
//! - exactly one of `command` / `url` was given, and keys of the other kind
//!   were not;
//! - header names and values are valid HTTP, `${VAR}` references are expanded
//!   from the environment at start-up (a missing variable is an error naming
//!   the key), and headers the transport itself sets cannot be overridden;
//! - header values are secrets: [`Headers`] never prints them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawUpstream;

/// How to start or reach one upstream MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    pub name: String,
    pub kind: UpstreamKind,
    /// How long a forwarded request may wait for its answer.
    pub timeout: Duration,
    /// Whether this server's tool annotations (`readOnlyHint` ...) are
    /// trusted: `input.server_trusted`. Untrusted unless configured.
    pub trust_annotations: bool,
    /// Resource URIs starting with one of these are this server's, whatever
    /// other servers list: the operator's answer to a URI two upstreams
    /// claim (see `upstream::catalogue`).
    pub resource_prefixes: Vec<String>,
}

/// Default deadline of a forwarded request (`timeout_seconds`). Long enough
/// for slow tools (clients that give up sooner cancel, which is passed on);
/// short enough that a server that never answers cannot hold a call forever.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamKind {
    Process(ProcessSpec),
    Http(HttpSpec),
}

/// A server started as a child process and spoken to over stdio.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// One process serves every session (`shared = true`); see
    /// `upstream::shared`. Default: a process per session.
    pub shared: bool,
}

/// A remote server reached over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub url: String,
    pub transport: HttpTransport,
    pub headers: Headers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpTransport {
    /// MCP 2025-03-26 and later: POST per message, optional GET stream.
    StreamableHttp,
    /// MCP 2024-11-05: a GET event stream plus a POST endpoint it names.
    Sse,
}

/// Configured request headers, already expanded. `Debug` shows the names
/// only: values are typically bearer tokens.
#[derive(Clone, PartialEq, Default)]
pub struct Headers(pub BTreeMap<String, String>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Headers the HTTP transports set themselves; configuring one would break
/// the protocol (or smuggle a second session id), so it is refused.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

impl UpstreamSpec {
    /// What identifies this server across restarts and config edits, for
    /// tool pins: its command line, or its URL (not the name the config
    /// gives it, which a rename would change).
    pub fn identity(&self) -> String {
        match &self.kind {
            UpstreamKind::Process(p) => {
                let mut words = vec![p.command.clone()];
                words.extend(p.args.iter().cloned());
                format!("cmd:{}", serde_json::Value::from(words))
            }
            UpstreamKind::Http(h) => format!("url:{}", h.url),
        }
    }

    /// A process upstream (the wrap form and tests).
    pub fn process(name: String, command: String, args: Vec<String>) -> UpstreamSpec {
        UpstreamSpec {
            name,
            kind: UpstreamKind::Process(ProcessSpec {
                command,
                args,
                env: BTreeMap::new(),
                cwd: None,
                shared: false,
            }),
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            trust_annotations: false,
            resource_prefixes: Vec::new(),
        }
    }
}

/// Validate one raw `[[upstream]]`. Errors are `(key, message)`, the key
/// relative to the table (`command`, `headers.Authorization`); `path`
/// resolves a relative `cwd`; `env` looks up `${VAR}` references.
pub(super) fn validate(
    raw: RawUpstream,
    path: impl Fn(&str) -> PathBuf,
    env: impl Fn(&str) -> Option<String>,
) -> Result<UpstreamSpec, (String, String)> {
    let err = |key: &str, message: String| (key.to_string(), message);
    let kind = match (raw.command, raw.url) {
        (Some(_), Some(_)) => {
            return Err(err(
                "url",
                "expected either `command` or `url`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(err(
                "command",
                "expected `command` (a process) or `url` (an HTTP server)".into(),
            ));
        }
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(err("command", "expected a non-empty command".into()));
            }
            if raw.transport.is_some() {
                return Err(err("transport", "only applies to a `url` upstream".into()));
            }
            if !raw.headers.is_empty() {
                return Err(err("headers", "only apply to a `url` upstream".into()));
            }
            UpstreamKind::Process(ProcessSpec {
                command,
                args: raw.args,
                env: raw.env,
                cwd: raw.cwd.map(|c| path(&c)),
                shared: raw.shared.unwrap_or(false),
            })
        }
        (None, Some(url)) => {
            for (key, given) in [
                ("args", !raw.args.is_empty()),
                ("env", !raw.env.is_empty()),
                ("cwd", raw.cwd.is_some()),
                ("shared", raw.shared.is_some()),
            ] {
                if given {
                    return Err(err(key, "only applies to a `command` upstream".into()));
                }
            }
            super::check_url(&url).map_err(|m| err("url", m))?;
            let transport = match raw.transport.as_deref() {
                None | Some("streamable-http") => HttpTransport::StreamableHttp,
                Some("sse") => HttpTransport::Sse,
                Some(other) => {
                    return Err(err(
                        "transport",
                        format!("expected \"streamable-http\" or \"sse\", got {other:?}"),
                    ));
                }
            };
            let mut headers = BTreeMap::new();
            for (name, value) in raw.headers {
                let key = format!("headers.{name}");
                let value = check_header(&name, &value, &env).map_err(|m| err(&key, m))?;
                headers.insert(name, value);
            }
            UpstreamKind::Http(HttpSpec {
                url,
                transport,
                headers: Headers(headers),
            })
        }
    };
    let timeout = match raw.timeout_seconds {
        None => DEFAULT_UPSTREAM_TIMEOUT,
        Some(0) => {
            return Err(err(
                "timeout_seconds",
                "expected a positive number of seconds".into(),
            ));
        }
        Some(secs) => Duration::from_secs(secs),
    };
    if raw.resource_prefixes.iter().any(|p| p.is_empty()) {
        return Err(err(
            "resource_prefixes",
            "an empty prefix would claim every URI".into(),
        ));
    }
    Ok(UpstreamSpec {
        name: raw.name,
        kind,
        timeout,
        trust_annotations: raw.trust_annotations.unwrap_or(false),
        resource_prefixes: raw.resource_prefixes,
    })
}

/// Expand and check one header; returns the value to send.
fn check_header(
    name: &str,
    value: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name:?} is set by the transport itself"));
    }
    let value = expand_env(value, env)?;
    if reqwest::header::HeaderValue::from_str(&value).is_err() {
        // The value may hold a secret: say what is wrong, not what it is.
        return Err("the (expanded) value is not a valid HTTP header value".into());
    }
    Ok(value)
}

/// Replace every `${NAME}` with the variable's value. A `$` not followed by
/// `{` is literal. Unknown variables and unclosed references are errors.
pub fn expand_env(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
        let var = &after[..end];
        let value = env(var).ok_or_else(|| {
            format!("environment variable {var:?} is not set (referenced as \"${{{var}}}\")")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_variables_and_keeps_lone_dollars() {
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(expand_env("a$b ${TOKEN}$", &env).unwrap(), "a$b s3cret$");
        assert!(
            expand_env("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING")
        );
        assert!(
            expand_env("${TOKEN", &env)
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn debug_never_shows_header_values() {
        let h = Headers(BTreeMap::from([(
            "Authorization".into(),
            "Bearer x".into(),
        )]));
        let shown = format!("{h:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("Bearer"),
            "{shown}"
        );
    }
}
