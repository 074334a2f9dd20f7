//! Fuzz target: the config parser (`Config::from_toml`).
//!
//! - Arbitrary text and mutated corpus files (`fuzz/corpus/config/`): never
//!   panics; an `Ok` config satisfies the validated invariants; an error's
//!   message starts with the file name.
//! - Structured configs built from a model (random names, including
//!   duplicates, `__`, trailing `_`, too long, non-ASCII; blank commands;
//!   good and bad URLs and transports; mixed command/url keys; other
//!   sections good or bad): `from_toml` accepts exactly when the model says
//!   the README's rules are met.
//!
//! Validated invariants: at least one upstream; names 1..=32 of
//! `[A-Za-z0-9_-]`, no `__`, not ending in `_`, unique; a process upstream's
//! command is not blank; an HTTP upstream's url is https with a host, or
//! http to a loopback host;
//! the package is a dotted name without empty parts; max_sessions and the
//! approval timeout are positive.

mod fuzz_support;

use std::collections::HashSet;
use std::path::Path;

use fuzz_support::*;
use mcp_firewall::config::{Config, UpstreamKind};
use proptest::prelude::*;

const FILES: &[&str] = &[
    "/etc/fw/mcp-firewall.toml",
    "mcp-firewall.toml",
    "dir with space/ü.toml",
];

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__")
        && !name.ends_with('_')
}

fn check_invariants(cfg: &Config) {
    assert!(!cfg.upstreams.is_empty());
    let mut seen = HashSet::new();
    for up in &cfg.upstreams {
        assert!(valid_name(&up.name), "name {:?}", up.name);
        assert!(seen.insert(up.name.clone()), "duplicate {:?}", up.name);
        match &up.kind {
            UpstreamKind::Process(p) => assert!(!p.command.trim().is_empty()),
            UpstreamKind::Http(h) => {
                let url = reqwest::Url::parse(&h.url).expect("url parses");
                assert!(
                    url.scheme() == "https" && url.host().is_some()
                        || url.scheme() == "http" && mcp_firewall::config::is_loopback_host(&url)
                );
            }
        }
    }
    assert!(
        !cfg.package.is_empty() && cfg.package.split('.').all(|p| !p.is_empty()),
        "package {:?}",
        cfg.package
    );
    assert!(cfg.http.max_sessions() > 0);
    assert!(!cfg.approval.timeout.is_zero());
    if let Some(p) = &cfg.principal {
        assert!(!p.trim().is_empty());
    }
    assert!(!cfg.passthrough_names);
}

/// The whole invariant for any text.
fn check_text(text: &str, file: &str) -> bool {
    match Config::from_toml(text, Path::new(file)) {
        Ok(cfg) => {
            check_invariants(&cfg);
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{file}: ")),
                "error does not start with the file name: {msg}"
            );
            false
        }
    }
}

#[test]
fn config_corpus_replays() {
    for (name, bytes) in corpus("config") {
        let text = String::from_utf8(bytes).unwrap();
        for file in FILES {
            let r = std::panic::catch_unwind(|| check_text(&text, file));
            assert!(r.is_ok(), "corpus entry {name}");
        }
    }
}

// ---- the model ----

#[derive(Debug, Clone)]
struct Up {
    name: String,
    command: Option<String>,
    url: Option<(String, bool)>,
    transport: Option<(String, bool)>,
    args: bool,
    header: Option<(String, String, bool)>,
}

#[derive(Debug, Clone)]
struct Model {
    upstreams: Vec<Up>,
    fsync: Option<(String, bool)>,
    package: Option<(String, bool)>,
    principal: Option<(String, bool)>,
    max_sessions: Option<i64>,
    timeout: Option<i64>,
}

impl Model {
    fn valid(&self) -> bool {
        let mut names = HashSet::new();
        !self.upstreams.is_empty()
            && self
                .upstreams
                .iter()
                .all(|u| valid_name(&u.name) && names.insert(u.name.clone()) && u.valid())
            && self.fsync.as_ref().is_none_or(|f| f.1)
            && self.package.as_ref().is_none_or(|f| f.1)
            && self.principal.as_ref().is_none_or(|f| f.1)
            && self.max_sessions != Some(0)
            && self.timeout != Some(0)
    }

    fn to_toml(&self) -> String {
        use toml::{Table, Value as T};
        let mut root = Table::new();
        let mut sub = |section: &str, key: &str, v: T| {
            root.entry(section)
                .or_insert_with(|| T::Table(Table::new()))
                .as_table_mut()
                .unwrap()
                .insert(key.into(), v);
        };
        if let Some((f, _)) = &self.fsync {
            sub("audit", "fsync", T::String(f.clone()));
        }
        if let Some((p, _)) = &self.package {
            sub("policy", "package", T::String(p.clone()));
        }
        if let Some((p, _)) = &self.principal {
            sub("session", "principal", T::String(p.clone()));
        }
        if let Some(n) = self.max_sessions {
            sub("http", "max_sessions", T::Integer(n));
        }
        if let Some(n) = self.timeout {
            sub("approval", "timeout_seconds", T::Integer(n));
        }
        let ups = self
            .upstreams
            .iter()
            .map(|u| {
                let mut t = Table::new();
                t.insert("name".into(), T::String(u.name.clone()));
                if let Some(c) = &u.command {
                    t.insert("command".into(), T::String(c.clone()));
                }
                if let Some((url, _)) = &u.url {
                    t.insert("url".into(), T::String(url.clone()));
                }
                if let Some((tr, _)) = &u.transport {
                    t.insert("transport".into(), T::String(tr.clone()));
                }
                if u.args {
                    t.insert("args".into(), T::Array(vec![T::String("-y".into())]));
                }
                if let Some((k, v, _)) = &u.header {
                    let mut h = Table::new();
                    h.insert(k.clone(), T::String(v.clone()));
                    t.insert("headers".into(), T::Table(h));
                }
                T::Table(t)
            })
            .collect();
        root.insert("upstream".into(), T::Array(ups));
        toml::to_string(&root).unwrap()
    }
}

impl Up {
    fn valid(&self) -> bool {
        match (&self.command, &self.url) {
            (Some(c), None) => {
                !c.trim().is_empty() && self.transport.is_none() && self.header.is_none()
            }
            (None, Some((_, url_ok))) => {
                *url_ok
                    && !self.args
                    && self.transport.as_ref().is_none_or(|t| t.1)
                    && self.header.as_ref().is_none_or(|h| h.2)
            }
            _ => false,
        }
    }
}

fn good_or_bad(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        3 => proptest::sample::select(good).prop_map(|s| (s.to_string(), true)),
        1 => proptest::sample::select(bad).prop_map(|s| (s.to_string(), false)),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z][a-z0-9-]{0,6}",
        2 => "[A-Za-z0-9_-]{0,40}",
        1 => proptest::sample::select(vec!["a__b", "a_", "__", "_", "fs", "é", "a b", "a.b", ""])
            .prop_map(String::from),
        1 => any_text(),
    ]
}

fn upstream() -> impl Strategy<Value = Up> {
    (
        name(),
        proptest::option::of(prop_oneof![
            3 => Just("npx".to_string()),
            1 => Just("".to_string()),
            1 => Just("  ".to_string()),
            1 => any_text(),
        ]),
        proptest::option::of(good_or_bad(
            &[
                "http://localhost/mcp",
                "https://mcp.example.com/mcp",
                "http://127.0.0.1:9/sse",
                "https://[::1]:8443/x?y=1",
            ],
            &[
                "ftp://h/mcp",
                // Plain http beyond loopback: the network is not trusted.
                "http://h/mcp",
                "",
                "mcp.example.com",
                "http//h",
                "file:///etc/passwd",
                "data:text/plain,x",
            ],
        )),
        proptest::option::of(good_or_bad(
            &["streamable-http", "sse"],
            &["ws", "", "SSE", "stdio"],
        )),
        proptest::bool::weighted(0.2),
        proptest::option::of(prop_oneof![
            3 => Just(("Authorization".to_string(), "Bearer x".to_string(), true)),
            1 => Just(("X-Key".to_string(), "${MCP_FW_FUZZ_SURELY_UNSET}".to_string(), false)),
            1 => Just(("Mcp-Session-Id".to_string(), "x".to_string(), false)),
            1 => Just(("Bad Name".to_string(), "x".to_string(), false)),
            1 => Just(("X-Ok".to_string(), "line\nbreak".to_string(), false)),
        ]),
        (0u8..10, proptest::bool::weighted(0.8)),
    )
        .prop_map(
            |(name, command, url, transport, args, header, (shape, clean))| {
                // Mostly one of command/url with only its own keys, as real
                // configs are; sometimes anything goes.
                let mut up = Up {
                    name,
                    command,
                    url,
                    transport,
                    args,
                    header,
                };
                match shape {
                    0..=4 => {
                        up.url = None;
                        up.command.get_or_insert_with(|| "npx".into());
                        if clean {
                            (up.transport, up.header) = (None, None);
                        }
                    }
                    5..=8 => {
                        up.command = None;
                        up.url
                            .get_or_insert_with(|| ("http://localhost/mcp".into(), true));
                        if clean {
                            up.args = false;
                        }
                    }
                    _ => {}
                }
                up
            },
        )
}

fn model() -> impl Strategy<Value = Model> {
    (
        prop_oneof![1 => Just(vec![]), 6 => proptest::collection::vec(upstream(), 1..4)],
        proptest::option::of(good_or_bad(
            &["always", "never"],
            &["sometimes", "", "Always"],
        )),
        proptest::option::of(good_or_bad(
            &["mcp.firewall", "a", "a.b.c"],
            &["", ".", "a..b", "a."],
        )),
        proptest::option::of(good_or_bad(&["alice", "a b"], &["", "   "])),
        proptest::option::of(prop_oneof![Just(0i64), 1i64..100]),
        proptest::option::of(prop_oneof![Just(0i64), 1i64..100]),
    )
        .prop_map(
            |(upstreams, fsync, package, principal, max_sessions, timeout)| Model {
                upstreams,
                fsync,
                package,
                principal,
                max_sessions,
                timeout,
            },
        )
}

/// The model must produce valid configs often enough to test acceptance.
#[test]
fn config_model_produces_valid_configs() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let valid = (0..400)
        .filter(|_| model().new_tree(&mut runner).unwrap().current().valid())
        .count();
    assert!(valid >= 40, "only {valid} of 400 models are valid");
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_arbitrary_text(text in prop_oneof![
        any_text(),
        proptest::collection::vec(any::<char>(), 0..200).prop_map(|c| c.into_iter().collect()),
    ], file in proptest::sample::select(FILES)) {
        check_text(&text, file);
    }

    #[test]
    fn config_mutated_corpus(bytes in mutated(corpus_bytes("config"), 8), file in proptest::sample::select(FILES)) {
        // from_toml takes text: mutations that break UTF-8 are read lossily.
        check_text(&String::from_utf8_lossy(&bytes), file);
    }

    #[test]
    fn config_model_accepts_exactly_the_valid(m in model(), file in proptest::sample::select(FILES)) {
        let text = m.to_toml();
        let ok = check_text(&text, file);
        prop_assert_eq!(
            ok,
            m.valid(),
            "model says {}, from_toml says {}: {:?}\n{}",
            m.valid(),
            ok,
            Config::from_toml(&text, Path::new(file)).err().map(|e| e.to_string()),
            text
        );
    }

    #[test]
    fn config_mutated_model(m in model(), edits in proptest::collection::vec(mutation(), 1..4)) {
        let bytes = apply(m.to_toml().into_bytes(), &edits);
        check_text(&String::from_utf8_lossy(&bytes), FILES[0]);
    }
}
