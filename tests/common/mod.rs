//! Black-box test harness: starts the real `mcp-firewall` binary in front of
//! real upstream processes and speaks newline-delimited JSON-RPC to it, as a
//! client would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a test waits for an expected message before failing. Generous:
/// CI machines are slow and tests never assert on timing.
pub const WAIT: Duration = Duration::from_secs(30);

/// A port free on loopback now (for listeners the firewall binds itself),
/// outside the range the kernel hands out ([`mcp_firewall::testing::free_port`]).
pub fn free_port() -> u16 {
    mcp_firewall::testing::free_port()
}

/// The binary under test. `MCP_FIREWALL_TEST_BIN` points the suite at another
/// build, e.g. an older release, to check that a new test fails there.
pub fn firewall_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("MCP_FIREWALL_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-firewall").to_string())
    })
}

pub fn fixture_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-firewall-fixture")
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A policy directory holding `policy.rego` (package mcp.firewall) and any
/// extra files.
pub fn policy_dir(rego: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.rego"), rego).unwrap();
    dir
}

/// Allows everything: for tests about relaying, not deciding.
pub const ALLOW_ALL: &str = "package mcp.firewall\n\nallow := true\n";

/// A running firewall and the client end of its stdio.
pub struct Firewall {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Messages received while waiting for something else.
    pub backlog: Vec<Value>,
    pub audit_path: PathBuf,
    next_id: i64,
    /// stderr, when it is a pipe nobody reads ([`Builder::stderr_unread`]).
    _stderr: Option<std::process::ChildStderr>,
    _dirs: Vec<tempfile::TempDir>,
}

pub struct Builder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    policy: Option<PathBuf>,
    audit: Option<PathBuf>,
    dirs: Vec<tempfile::TempDir>,
    rlimit_fsize: Option<u64>,
    data_dir: Option<PathBuf>,
    approval_wait: u64,
    stderr_unread: bool,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            args: vec![],
            envs: vec![],
            policy: None,
            audit: None,
            dirs: vec![],
            rlimit_fsize: None,
            data_dir: None,
            approval_wait: 0,
            stderr_unread: false,
        }
    }

    /// Policy from Rego text (a temp dir is made and kept alive).
    pub fn rego(mut self, rego: &str) -> Builder {
        let dir = policy_dir(rego);
        self.policy = Some(dir.path().to_path_buf());
        self.dirs.push(dir);
        self
    }

    pub fn policy_path(mut self, path: &Path) -> Builder {
        self.policy = Some(path.to_path_buf());
        self
    }

    pub fn audit(mut self, path: &Path) -> Builder {
        self.audit = Some(path.to_path_buf());
        self
    }

    pub fn arg(mut self, arg: &str) -> Builder {
        self.args.push(arg.to_string());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Builder {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Builder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Approval store directory (default: a fresh temp dir per firewall).
    pub fn data_dir(mut self, path: &Path) -> Builder {
        self.data_dir = Some(path.to_path_buf());
        self
    }

    /// Seconds a held call waits (default 0 here: "pending" at once).
    pub fn approval_wait(mut self, secs: u64) -> Builder {
        self.approval_wait = secs;
        self
    }

    /// Limit the size of files the firewall may write (audit-failure tests).
    pub fn file_size_limit(mut self, bytes: u64) -> Builder {
        self.rlimit_fsize = Some(bytes);
        self
    }

    /// stderr on a pipe that is never read (as a client that pipes it and
    /// forgets it): it fills after 64 KiB.
    pub fn stderr_unread(mut self) -> Builder {
        self.stderr_unread = true;
        self
    }

    /// Keep a temp dir alive as long as the firewall.
    pub fn keep(mut self, dir: tempfile::TempDir) -> Builder {
        self.dirs.push(dir);
        self
    }

    /// The temp dirs this builder made or was given, to keep alive as long
    /// as a process started from [`Builder::command`].
    pub fn into_dirs(self) -> Vec<tempfile::TempDir> {
        self.dirs
    }

    /// `run --policy P --audit-log A <args>`.
    pub fn command(&mut self) -> (Command, PathBuf) {
        let work = tempfile::tempdir().unwrap();
        let audit = self
            .audit
            .clone()
            .unwrap_or_else(|| work.path().join("audit.jsonl"));
        let policy = match &self.policy {
            Some(p) => p.clone(),
            None => {
                let p = work.path().join("policy");
                std::fs::create_dir(&p).unwrap();
                std::fs::write(p.join("policy.rego"), ALLOW_ALL).unwrap();
                p
            }
        };
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| work.path().join("data"));
        self.dirs.push(work);
        let mut cmd = Command::new(firewall_bin());
        cmd.arg("run")
            .arg("--policy")
            .arg(&policy)
            .arg("--audit-log")
            .arg(&audit);
        cmd.arg("--data-dir").arg(&data_dir);
        cmd.arg("--approval-wait")
            .arg(self.approval_wait.to_string());
        cmd.args(&self.args);
        cmd.env(
            "RUST_LOG",
            std::env::var("MCP_FIREWALL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        cmd.envs(self.envs.iter().cloned());
        if let Some(limit) = self.rlimit_fsize {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Ignored so an over-limit write fails with EFBIG instead
                    // of killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                    Ok(())
                });
            }
        }
        (cmd, audit)
    }

    /// Start the firewall wrapping `upstream` (wrap form).
    pub fn wrap(mut self, upstream: &[&str]) -> Firewall {
        self.args.push("--".into());
        self.args.extend(upstream.iter().map(|s| s.to_string()));
        self.start()
    }

    /// Start the firewall wrapping the fixture server.
    pub fn wrap_fixture(self) -> Firewall {
        self.wrap(&[fixture_bin()])
    }

    pub fn start(mut self) -> Firewall {
        let (mut cmd, audit_path) = self.command();
        // Under a file-size limit, stderr must not be a (large) log file:
        // CI redirects output to one, and writes past the limit would fail.
        let stderr = if self.stderr_unread {
            Stdio::piped()
        } else if self.rlimit_fsize.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start mcp-firewall");
        let stdout = child.stdout.take().unwrap();
        let unread = child.stderr.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Firewall {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            backlog: vec![],
            audit_path,
            next_id: 1000,
            _stderr: unread,
            _dirs: self.dirs,
        }
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Firewall {
    pub fn send(&mut self, msg: &Value) {
        self.send_raw(&msg.to_string());
    }

    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Next message matching `pred`, keeping the others in the backlog.
    pub fn recv_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(msg) if pred(&msg) => return msg,
                Ok(msg) => self.backlog.push(msg),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for {what}; got meanwhile: {:#?}",
                        self.backlog
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "firewall closed stdout while waiting for {what}; got: {:#?}",
                        self.backlog
                    )
                }
            }
        }
    }

    /// The response with this id.
    pub fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_where(&format!("response {id}"), move |m| {
            m.get("id") == Some(&id) && m.get("method").is_none()
        })
    }

    /// The next notification with this method.
    pub fn notification(&mut self, method: &str) -> Value {
        self.recv_where(method, |m| m["method"] == method && m.get("id").is_none())
    }

    /// The next request (server-to-client) with this method.
    pub fn server_request(&mut self, method: &str) -> Value {
        self.recv_where(method, |m| m["method"] == method && m.get("id").is_some())
    }

    /// Send a request and wait for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.response(&id)
    }

    /// Send a request, return its id without waiting.
    pub fn send_request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// `initialize` + `notifications/initialized` with the given client capabilities.
    pub fn initialize_with(&mut self, capabilities: Value) -> Value {
        let resp = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": capabilities,
                   "clientInfo": {"name": "harness", "version": "1.0"}}),
        );
        assert!(resp.get("result").is_some(), "initialize failed: {resp}");
        self.notify("notifications/initialized", json!({}));
        resp
    }

    pub fn initialize(&mut self) -> Value {
        self.initialize_with(json!({}))
    }

    /// `tools/call` and its response.
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    /// Every record in the audit log so far.
    pub fn audit_records(&self) -> Vec<Value> {
        read_audit(&self.audit_path)
    }

    /// Wait until an audit record satisfies `pred` (records are written on
    /// other tasks; the response can reach us first).
    pub fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.audit_records().into_iter().find(&pred) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no audit record {what}: {:#?}",
                self.audit_records()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Close stdin and wait for the process to exit.
    pub fn shutdown(mut self) -> std::process::ExitStatus {
        self.close_stdin();
        wait_exit(&mut self.child)
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `probe` every 50 ms until it finds something, for at most `within`.
pub fn wait_for<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn read_audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Text of the first content item of a tool result response.
/// An allow-all firewall started with `--config config`, initialized.
pub fn start_with_config(config: &Path) -> Firewall {
    let mut fw = Builder::new()
        .rego(ALLOW_ALL)
        .arg("--config")
        .arg(config.to_str().unwrap())
        .start();
    fw.initialize();
    fw
}

/// The `uri`s of a `resources/list` answer, in order (panics on an error).
pub fn listed_uris(resp: &Value) -> Vec<&str> {
    resp["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a resource listing: {resp}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect()
}

pub fn text(resp: &Value) -> String {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {resp}"))
        .to_string()
}

/// Lines of a fixture event log (FIXTURE_EVENT_LOG).
pub fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait until the fixture event log has an event satisfying `pred`.
pub fn wait_event(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(e) = events(path).into_iter().find(&pred) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "fixture never saw {what}: {:#?}",
            events(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An OpenSSH `allowed_signers` file at `path` registering each name with
/// the key `fixtures/keys/<name>.pub`.
pub fn approvers_file(path: &Path, names: &[&str]) {
    let line = |name: &&str| {
        let key = std::fs::read_to_string(repo_path(&format!("fixtures/keys/{name}.pub"))).unwrap();
        format!("{name} {key}")
    };
    std::fs::write(path, names.iter().map(line).collect::<String>()).unwrap();
}

/// `mcp-firewall approvals approve|deny ID --as WHO --key fixtures/keys/WHO`
/// on the store in `data`; panics unless it succeeds.
pub fn answer_with_key(data: &Path, verb: &str, id: &str, who: &str) {
    let out = Command::new(firewall_bin())
        .args(["approvals", verb, id, "--as", who, "--key"])
        .arg(repo_path(&format!("fixtures/keys/{who}")))
        .args(["--reason", "looked at it", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mcp-firewall audit verify LOG` passes (the chain alone).
pub fn assert_chain_verifies(log: &Path) {
    let out = Command::new(firewall_bin())
        .args(["audit", "verify"])
        .arg(log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// POST with explicit headers over a plain socket; returns (status, body).
/// The headers of a webhook answer signed with `secret` (Standard Webhooks:
/// message id, timestamp, signature), for [`http_post`].
pub fn signed_headers(secret: &str, id: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let secrets = [mcp_firewall::approval::WebhookSecret::parse(secret).unwrap()];
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            mcp_firewall::approval::signing::sign(&secrets, id, ts, body),
        ),
    ]
}

pub fn http_post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `(VmRSS, VmHWM)` of a process, in KiB.
pub fn resident_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What `work` returns, and the memory process `pid` newly held at its
/// peak while `work` ran, in bytes. The peak (`VmHWM`) is first reset to
/// what is resident now (`/proc/PID/clear_refs`), so only what `work` makes
/// the process hold counts.
pub fn new_memory_at_peak<T>(pid: u32, work: impl FnOnce() -> T) -> (T, u64) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let (before, _) = resident_kib(pid);
    let done = work();
    let (_, peak) = resident_kib(pid);
    (done, peak.saturating_sub(before) * 1024)
}

/// [`new_memory_at_peak`] over `tries` runs of `work`: the last result and
/// the least growth. One peak read is noisy (a 33 MB answer read +74 to
/// +128 MB across twelve runs of two builds, with or without load), while
/// a regression shows in every run.
pub fn least_new_memory_at_peak<T>(
    pid: u32,
    tries: usize,
    mut work: impl FnMut() -> T,
) -> (T, u64) {
    let mut least = None;
    for _ in 1..tries {
        let (_, grown) = new_memory_at_peak(pid, &mut work);
        least = Some(least.map_or(grown, |l: u64| l.min(grown)));
        // The firewall gives freed memory back every 2 s while it is idle.
        std::thread::sleep(Duration::from_secs(3));
    }
    let (done, grown) = new_memory_at_peak(pid, work);
    (done, least.map_or(grown, |l| l.min(grown)))
}

/// `GET /metrics`: the content type and the body.
pub fn scrape_metrics(port: u16) -> (String, String) {
    let deadline = Instant::now() + WAIT;
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("metrics listener never came up: {e}"),
        }
    };
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// Every sample on a scrape of `port`, by series as written
/// (`name{labels}`).
pub fn metric_samples(port: u16) -> std::collections::BTreeMap<String, f64> {
    let (_, scraped) = scrape_metrics(port);
    scraped
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample `name` (no labels) on a scrape of `port`.
pub fn metric_sample(port: u16, name: &str) -> f64 {
    let samples = metric_samples(port);
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

/// Taken by the tests of one file that read a firewall's peak memory, and
/// by those that make a firewall read big messages: two at once skew the
/// peaks read (the machine's two cores shared, tasks moved between worker
/// threads, freed memory not yet reused), and an HTTP answer's peak read
/// ~20 % over its usual in one run of six.
pub fn one_big_message_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static BIG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    BIG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which of the fixture's pipes the escaped process of [`Escape`] keeps.
pub enum Held {
    Stdout,
    Stderr,
}

/// An upstream that starts a process outside its process group (`setsid
/// sleep 3600`, which the firewall cannot kill with the group) keeping one
/// of its pipes open, then runs the fixture: run `sh -c SCRIPT`.
pub struct Escape {
    _dir: tempfile::TempDir,
    pid_file: PathBuf,
    pub script: String,
}

impl Escape {
    pub fn new(held: Held) -> Escape {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("escaped.pid");
        let other = match held {
            Held::Stdout => "2>/dev/null",
            Held::Stderr => ">/dev/null",
        };
        let script = format!(
            "setsid sleep 3600 </dev/null {other} & echo $! > '{}'; exec '{}'",
            pid_file.display(),
            fixture_bin()
        );
        Escape {
            _dir: dir,
            pid_file,
            script,
        }
    }

    /// The escaped process, once the upstream started it.
    pub fn escaped(&self) -> Escaped {
        let pid = wait_for(WAIT, || {
            std::fs::read_to_string(&self.pid_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .expect("the escaped process's pid");
        Escaped(pid)
    }
}

/// A process an upstream let escape: killed however the test ends.
pub struct Escaped(pub u32);

impl Escaped {
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.0)).exists()
    }
}

impl Drop for Escaped {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid the test's upstream started.
        unsafe {
            libc::kill(self.0 as i32, libc::SIGKILL);
        }
    }
}
