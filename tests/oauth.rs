//! The HTTP listener as an OAuth 2.1 resource server, against a real
//! authorization server (the pinned npm `oidc-provider`,
//! `fixtures/console/as.mjs`) issuing JWT access tokens for the firewall's
//! resource indicator: valid tokens name the principal (and their claims
//! and scopes reach the policy); wrong audience, expired, wrong issuer, bad
//! signature, `alg: none`, HMAC and unknown keys get 401; a missing scope
//! gets 403 naming it; a key rotated at the provider is picked up; static
//! tokens keep working.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{WAIT, fixture_bin, free_port, read_audit, repo_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

const STATIC_TOKEN: &str = "ops-static-token";
/// Tool calls need the `mcp:admin` scope: the token's claims reach policy.
const POLICY: &str = r#"package mcp.firewall
allow if input.method != "tools/call"
allow if "mcp:admin" in input.principal.claims.scopes
"#;

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` and wait for a stderr/stdout line starting with `prefix`.
fn start_until(mut cmd: Command, prefix: &'static str, stderr: bool) -> Running {
    let mut child = if stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null())
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null())
    }
    .stdin(Stdio::null())
    .spawn()
    .expect("start");
    let out: Box<dyn std::io::Read + Send> = if stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.starts_with(prefix) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("never printed {prefix:?}"));
    Running(child)
}

fn authorization_server(port: u16, generation: u32) -> Running {
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_path("fixtures/console"))
        .arg("as.mjs")
        .arg(port.to_string())
        .arg(generation.to_string());
    start_until(cmd, "issuer ", false)
}

struct Setup {
    _dir: tempfile::TempDir,
    audit: std::path::PathBuf,
    issuer: String,
    as_port: u16,
    resource: String,
    base: String,
}

fn firewall(as_port: u16) -> (Running, Setup) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{as_port}");
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(policy.join("policy.rego"), POLICY).unwrap();
    let config = dir.path().join("mcp-firewall.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "fx"
command = "{fixture}"

[http]
tokens = [{{ principal = "ops", env = "OPS_TOKEN" }}]

[[http.oauth]]
issuer = "{issuer}"
scopes = ["mcp:tools"]
"#,
            fixture = fixture_bin(),
        ),
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut cmd = Command::new(common::firewall_bin());
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--policy")
        .arg(&policy)
        .arg("--audit-log")
        .arg(&audit)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--approval-wait", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("OPS_TOKEN", STATIC_TOKEN)
        .env("RUST_LOG", "warn");
    let running = start_until(cmd, "mcp-firewall: listening on ", true);
    let base = format!("http://127.0.0.1:{port}");
    let setup = Setup {
        _dir: dir,
        audit,
        issuer,
        as_port,
        resource: format!("{base}/mcp"),
        base,
    };
    (running, setup)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Setup {
    /// A token from the provider's token endpoint (client credentials).
    async fn token(&self, client: &str, resource: &str, scope: &str) -> String {
        let response = self
            .http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_string()
    }

    /// A token the provider's test-only endpoint signs with these claims.
    async fn minted(&self, claims: Value, stray_key: bool) -> String {
        let mut url = reqwest::Url::parse(&format!("{}/test/mint", self.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("claims", &claims.to_string());
        if stray_key {
            url.query_pairs_mut().append_pair("key", "stray");
        }
        self.http()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn http(&self) -> reqwest::Client {
        client()
    }

    /// `initialize` with this bearer token: the response.
    async fn initialize(&self, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http()
            .post(&self.resource)
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "oauth-test", "version": "1"}}}),
            );
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().await.unwrap()
    }

    /// A session with `token`, then one `tools/call`: its JSON-RPC answer.
    async fn call(&self, token: &str) -> Value {
        let opened = self.initialize(Some(token)).await;
        assert_eq!(opened.status(), StatusCode::OK);
        let session = opened.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let post = |body: Value| {
            self.http()
                .post(&self.resource)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", "2025-06-18")
                .json(&body)
        };
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .unwrap();
        let response = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                   "params": {"name": "fx__echo", "arguments": {"text": "hi"}}}))
        .send()
        .await
        .unwrap();
        // JSON, or an event stream whose last `data:` is the answer.
        let text = response.text().await.unwrap();
        let json = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap_or(&text);
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn claims(&self, extra: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"iss": self.issuer, "sub": "minted", "aud": self.resource,
                                "exp": now + 300, "iat": now, "scope": "mcp:tools"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }
}

/// The `WWW-Authenticate` of a refusal with this status.
async fn refused(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

fn unsigned(header: Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(&header),
        part(claims),
        URL_SAFE_NO_PAD.encode(b"sig")
    )
}

#[tokio::test]
async fn access_tokens_from_a_real_provider_name_the_principal_and_bad_ones_are_refused() {
    let as_port = free_port();
    let provider = authorization_server(as_port, 1);
    let (_firewall, fw) = firewall(as_port);

    // Unauthenticated: 401 pointing at the metadata, which names the issuer.
    let challenge = refused(fw.initialize(None).await, StatusCode::UNAUTHORIZED).await;
    let metadata_url = format!("{}/.well-known/oauth-protected-resource", fw.base);
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    for url in [metadata_url.clone(), format!("{metadata_url}/mcp")] {
        let metadata: Value = client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["resource"], fw.resource.as_str(), "{metadata}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([fw.issuer]),
            "{metadata}"
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp:tools"]),
            "{metadata}"
        );
    }

    // A valid token: the principal is its subject; its scopes reach policy.
    let agent = fw.token("agent", &fw.resource, "mcp:tools mcp:admin").await;
    let called = fw.call(&agent).await;
    assert_eq!(called["result"]["content"][0]["text"], "hi", "{called}");
    let reader = fw.token("reader", &fw.resource, "mcp:tools").await;
    let denied = fw.call(&reader).await;
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    let records = read_audit(&fw.audit);
    let decided = records
        .iter()
        .find(|r| r["event"] == "call.decided" && r["principal"]["id"] == "agent")
        .expect("agent's call decided");
    assert_eq!(decided["principal"]["source"], "oauth", "{decided}");
    assert_eq!(
        decided["input"]["principal"]["claims"]["client_id"], "agent",
        "{decided}"
    );

    // Static tokens keep working.
    assert_eq!(
        fw.initialize(Some(STATIC_TOKEN)).await.status(),
        StatusCode::OK
    );

    // Refused with 401 invalid_token.
    let other_resource = fw
        .token("agent", "http://127.0.0.1:1/mcp", "mcp:tools")
        .await;
    let now = chrono::Utc::now().timestamp();
    let expired = fw
        .minted(
            fw.claims(json!({"exp": now - 3600, "iat": now - 7200})),
            false,
        )
        .await;
    let wrong_issuer = fw
        .minted(fw.claims(json!({"iss": "http://127.0.0.1:1"})), false)
        .await;
    let unknown_key = fw.minted(fw.claims(json!({})), true).await;
    let good = fw.minted(fw.claims(json!({})), false).await;
    let mut bad_signature = good.clone();
    let flipped = if bad_signature.ends_with('A') {
        'B'
    } else {
        'A'
    };
    bad_signature.pop();
    bad_signature.push(flipped);
    let claims = fw.claims(json!({}));
    let none = unsigned(json!({"alg": "none", "typ": "JWT"}), &claims);
    let hmac = unsigned(
        json!({"alg": "HS256", "typ": "JWT", "kid": "key-1"}),
        &claims,
    );
    for (what, token) in [
        ("wrong audience", &other_resource),
        ("expired", &expired),
        ("wrong issuer", &wrong_issuer),
        ("unknown key", &unknown_key),
        ("bad signature", &bad_signature),
        ("alg none", &none),
        ("hmac", &hmac),
    ] {
        let challenge = refused(fw.initialize(Some(token)).await, StatusCode::UNAUTHORIZED).await;
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains("resource_metadata="),
            "{what}: {challenge}"
        );
    }
    // The well-formed minted token itself is fine: the refusals were for
    // what each changed.
    assert_eq!(fw.initialize(Some(&good)).await.status(), StatusCode::OK);

    // A token without the required scope: 403 naming it.
    let unscoped = fw.minted(fw.claims(json!({"scope": "other"})), false).await;
    let challenge = refused(fw.initialize(Some(&unscoped)).await, StatusCode::FORBIDDEN).await;
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp:tools\""), "{challenge}");

    // Key rotation at the provider: a token signed with the new key is
    // accepted once the firewall refetches the keys (rate-limited).
    drop(provider);
    let _rotated = authorization_server(fw.as_port, 2);
    let rotated = fw.token("agent", &fw.resource, "mcp:tools").await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(rotated.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "key-2");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = fw.initialize(Some(&rotated)).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
