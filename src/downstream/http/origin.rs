//! The `Origin` check (MCP transport spec: servers MUST validate it, against
//! DNS rebinding). A request without `Origin` is not from a browser page and
//! passes; one with an `Origin` passes only if it is allowed.

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
