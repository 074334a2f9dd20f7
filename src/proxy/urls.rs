//! URLs in a call's arguments, parsed the way a browser or Node would, so
//! policies check the host a request will really reach.
//!
//! A policy that finds hosts with a regular expression is fooled by
//! spellings a WHATWG parser resolves differently: `https://evil.example\@127.0.0.1/x`
//! (a backslash ends the authority of a special scheme), `https:evil.example/x`,
//! `https:/evil.example/x`, `https:\\evil.example/x` all reach `evil.example`
//! under Node's `new URL()`. The `url` crate implements the same WHATWG URL
//! Standard, so `input.urls` carries its reading: scheme, host, port, path
//! (percent-decoded), whether user info was present.
//!
//! Bounded: at most [`MAX_URLS`] URLs from strings of at most
//! [`MAX_STRING_BYTES`] each are reported (a call with more is unusual, and the
//! policy still sees the raw arguments).

use serde_json::{Value, json};

/// Most URLs reported per call.
pub const MAX_URLS: usize = 64;
/// Longer strings are searched only in their first this many bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// Schemes whose URLs name a network host (WHATWG "special" schemes that do).
const NETWORK_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "ftp"];

/// Every network URL in the strings of `arguments`, as parsed by a WHATWG
/// parser: `[{"raw", "scheme", "host", "port", "path", "userinfo"}]`.
pub fn urls_in(arguments: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut strings = Vec::new();
    collect_strings(arguments, &mut strings);
    for s in strings {
        let s = truncate(s, MAX_STRING_BYTES);
        for candidate in candidates(s) {
            if out.len() >= MAX_URLS {
                return out;
            }
            if let Some(parsed) = parse(candidate) {
                out.push(parsed);
            }
        }
    }
    out
}

/// `uri` with every `%XX` decoded (lossy UTF-8), lower-cased: what a
/// server that decodes its paths would see.
pub fn decoded(uri: &str) -> String {
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Substrings that start with a network scheme and a colon (any case, any
/// slashes after it), up to whitespace or a quote/bracket.
fn candidates(s: &str) -> Vec<&str> {
    let lower = s.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(':') {
        let colon = from + pos;
        from = colon + 1;
        let start = lower[..colon]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        let scheme = &lower[start..colon];
        if !NETWORK_SCHEMES.contains(&scheme) {
            continue;
        }
        let end = s[colon..]
            .find(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
            .map_or(s.len(), |i| colon + i);
        found.push(&s[start..end]);
    }
    found
}

fn parse(candidate: &str) -> Option<Value> {
    let url = url::Url::parse(candidate).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some(json!({
        "raw": candidate,
        "scheme": url.scheme(),
        "host": host,
        "port": url.port_or_known_default(),
        "path": decoded(url.path()),
        "userinfo": !url.username().is_empty() || url.password().is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(s: &str) -> Vec<String> {
        urls_in(&json!({"x": s}))
            .iter()
            .map(|u| u["host"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn spellings_node_resolves_to_the_same_host_are_read_the_same_way() {
        for s in [
            "https://evil.example\\@127.0.0.1/x",
            "https:evil.example/x",
            "https:/evil.example/x",
            "https:\\\\evil.example/x",
            "HTTPS://EVIL.example:443/x",
            "see https://user:pw@evil.example/x now",
        ] {
            assert_eq!(hosts(s), ["evil.example"], "{s}");
        }
    }

    #[test]
    fn ordinary_urls_and_non_urls() {
        assert_eq!(hosts("http://127.0.0.1:8080/health"), ["127.0.0.1"]);
        assert_eq!(hosts("http://[::1]/x"), ["::1"]);
        assert!(hosts("note: nothing here; mailto:a@b.c file:///etc/passwd").is_empty());
        let nested = urls_in(&json!({"a": [{"b": "go to wss://chat.example/room"}]}));
        assert_eq!(nested[0]["scheme"], "wss");
        assert_eq!(nested[0]["port"], 443);
    }

    #[test]
    fn paths_and_uris_are_percent_decoded() {
        assert_eq!(decoded("evil://public/%73ecret"), "evil://public/secret");
        assert_eq!(decoded("x%2"), "x%2");
        let u = urls_in(&json!("https://h.example/%2E%2E/admin"));
        assert_eq!(u[0]["path"], "/admin");
    }
}
