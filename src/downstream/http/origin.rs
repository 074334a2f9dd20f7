//! The `Origin` check (MCP transport spec: servers MUST validate it, against
//! DNS rebinding). A request without `Origin` is not from a browser page and
//! passes; one with an `Origin` passes only if it is allowed.

/// Which `Host` header values are accepted (DNS rebinding: a page on
/// `evil.example` whose name resolves to 127.0.0.1 reaches a loopback
/// listener with `Host: evil.example`, and a same-origin GET carries no
/// `Origin`).
#[derive(Debug, Clone)]
pub enum Hosts {
    /// A loopback listener's default: `localhost`, `127.0.0.1`, `[::1]`.
    Loopback,
    /// `[http] allowed_hosts`: these names (or `name:port`), case-insensitive.
    List(Vec<String>),
    /// A listener beyond loopback without `allowed_hosts` (tokens are
    /// required there): any name.
    Any,
}

impl Hosts {
    pub fn new(list: Option<&Vec<String>>, loopback_listener: bool) -> Hosts {
        match list {
            Some(list) => Hosts::List(list.iter().map(|h| h.to_ascii_lowercase()).collect()),
            None if loopback_listener => Hosts::Loopback,
            None => Hosts::Any,
        }
    }

    /// Whether a request with this `Host` header (`None`: absent) passes.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(str::to_ascii_lowercase) else {
            return matches!(self, Hosts::Any);
        };
        let name = host_name(&host);
        match self {
            Hosts::Any => true,
            Hosts::Loopback => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Hosts::List(list) => list.iter().any(|h| *h == host || h == name),
        }
    }
}

/// `name` of `name[:port]`, `[v6][:port]` -> `v6`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Which `Origin` values are accepted.
#[derive(Debug, Clone)]
pub enum Origins {
    /// Default: pages served from this machine (`http(s)://localhost`,
    /// `127.0.0.1`, `[::1]`, any port).
    Loopback,
    /// Exactly these (`[http] allowed_origins`), compared case-insensitively.
    List(Vec<String>),
}

impl Origins {
    pub fn from_config(list: Option<&Vec<String>>) -> Origins {
        match list {
            Some(list) => Origins::List(
                list.iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
            None => Origins::Loopback,
        }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        match self {
            Origins::List(list) => list.contains(&origin),
            Origins::Loopback => is_loopback_origin(&origin),
        }
    }
}

/// `scheme://host[:port]` with an http(s) scheme and a loopback host, and
/// nothing after: `http://localhost.evil.example` is not loopback.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix("[::1]") {
        Some(after) => return port_only(after),
        None => rest,
    };
    let (name, after) = match host.find(':') {
        Some(i) => host.split_at(i),
        None => (host, ""),
    };
    matches!(name, "localhost" | "127.0.0.1") && port_only(after)
}

/// Empty, or `:` followed by digits.
fn port_only(after: &str) -> bool {
    after.is_empty()
        || after
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_default() {
        let o = Origins::Loopback;
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:80",
            "HTTP://LOCALHOST:1/",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "http://localhost:80@evil.example",
            "https://evil.example",
            "null",
            "file://localhost",
        ] {
            assert!(!o.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_list_is_exact() {
        let o = Origins::from_config(Some(&vec!["https://app.example".into()]));
        assert!(o.allows("https://app.example"));
        assert!(o.allows("https://APP.example/"));
        assert!(!o.allows("https://app.example.evil"));
        assert!(!o.allows("http://localhost"));
    }
}

#[cfg(test)]
mod host_tests {
    use super::Hosts;

    #[test]
    fn a_loopback_listener_serves_loopback_names_only() {
        let hosts = Hosts::new(None, true);
        for ok in [
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:9",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(hosts.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::2]:1",
        ] {
            assert!(!hosts.allows(Some(bad)), "{bad}");
        }
        assert!(!hosts.allows(None));
    }

    #[test]
    fn configured_names_and_any() {
        let hosts = Hosts::new(Some(&vec!["mcp.example.com".into()]), false);
        assert!(hosts.allows(Some("mcp.example.com:443")));
        assert!(hosts.allows(Some("MCP.example.com")));
        assert!(!hosts.allows(Some("localhost")));
        assert!(Hosts::new(None, false).allows(Some("anything")));
    }
}
