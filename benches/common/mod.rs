//! Shared by the custom-harness benches: where the release binaries are,
//! starting the firewall (stdio or `--listen 127.0.0.1:0`), a stdio MCP
//! peer, a minimal blocking HTTP/1.1 client for Streamable HTTP, and
//! percentiles. No assertions about speed: these print numbers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const PROTOCOL: &str = "2025-06-18";

/// `cargo test --all-targets` runs bench targets without `--bench`: they
/// must do nothing then.
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The directory holding the release `mcp-firewall` and
/// `mcp-firewall-fixture`: `$MCP_FIREWALL_BIN_DIR`, else the directory the
/// bench binary was built into (`<target>/release/deps/..`), which also
/// works with a shared `CARGO_TARGET_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MCP_FIREWALL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("bench binary lives in <target>/<profile>/deps")
        .to_path_buf();
    for bin in ["mcp-firewall", "mcp-firewall-fixture"] {
        assert!(
            dir.join(bin).exists(),
            "{} missing: run `cargo build --release --bins` first",
            dir.join(bin).display()
        );
    }
    dir
}

pub fn firewall_bin() -> PathBuf {
    bin_dir().join("mcp-firewall")
}

pub fn fixture_bin() -> PathBuf {
    bin_dir().join("mcp-firewall-fixture")
}

pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A copy of the shipped library (tests left out) whose rate limits are
/// raised out of reach and whose working hours never end: a benchmark makes thousands of calls a minute, and
/// with the shipped limits (30 calls per tool per minute) it would measure
/// refusals. Every rule still runs, the counting included.
pub fn library_policy(work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(policies_dir()).unwrap() {
        let f = f.unwrap().path();
        let file = f.file_name().unwrap().to_str().unwrap().to_string();
        if !file.ends_with("_test.rego") {
            std::fs::copy(&f, dir.join(&file)).unwrap();
        }
    }
    let data = dir.join("data.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    v["mcp_firewall"]["ratelimit"] = json!({
        "per_tool_per_minute": 1_000_000_000u64,
        "per_tool_per_hour": 1_000_000_000u64,
        "per_principal_per_minute": 1_000_000_000u64,
    });
    // Working hours all week, all day: a tool that is not trusted read-only
    // (the reference server's `echo`) is otherwise held at night.
    v["mcp_firewall"]["timewindow"] = json!({
        "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        "start_hour": 0,
        "end_hour": 24,
    });
    std::fs::write(&data, v.to_string()).unwrap();
    dir
}

/// A directory with a one-line allow-all policy.
pub fn allow_all_policy(work: &Path) -> PathBuf {
    let dir = work.join("allow-all");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.rego"),
        "package mcp.firewall\n\nallow := true\n",
    )
    .unwrap();
    dir
}

/// `mcp-firewall run --policy P --audit-log A --audit-fsync F [extra] -- fixture`.
pub fn firewall_cmd(policy: &Path, audit: &Path, fsync: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(firewall_bin());
    cmd.arg("run")
        .arg("--policy")
        .arg(policy)
        .arg("--audit-log")
        .arg(audit)
        .arg("--audit-fsync")
        .arg(fsync)
        // The fixture's `echo` is read-only; the shipped library believes
        // that only of a server whose annotations are trusted.
        .arg("--trust-annotations")
        .args(extra)
        .arg("--")
        .arg(fixture_bin())
        // The default (info) logs session start/stop only; keep the
        // request path as it ships.
        .env_remove("RUST_LOG");
    cmd
}

pub fn initialize_params() -> Value {
    json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
}

pub fn echo_call() -> Value {
    json!({"name": "echo", "arguments": {"text": "hello"}})
}

/// An MCP client over a child's stdin/stdout, one request at a time.
pub struct StdioPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl StdioPeer {
    pub fn start(cmd: &mut Command) -> StdioPeer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut peer = StdioPeer {
            child,
            stdin,
            stdout,
            line: String::new(),
        };
        peer.rpc(0, "initialize", &initialize_params());
        writeln!(
            peer.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        peer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rpc(&mut self, id: u64, method: &str, params: &Value) -> Value {
        let mut out = serde_json::to_string(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .unwrap();
        out.push('\n');
        self.stdin.write_all(out.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        loop {
            self.line.clear();
            let n = self.stdout.read_line(&mut self.line).unwrap();
            assert!(n > 0, "peer closed its stdout");
            let msg: Value = serde_json::from_str(&self.line).unwrap();
            if msg["id"] == id {
                return msg;
            }
        }
    }
}

impl StdioPeer {
    /// Send `n` requests at once (ids `first..first + n`), then read the
    /// answers; returns each call's latency in µs, send to answer.
    pub fn burst(&mut self, first: u64, n: u64, method: &str, params: &Value) -> Vec<f64> {
        let mut sent = HashMap::new();
        let mut out = String::new();
        for id in first..first + n {
            out.clear();
            out.push_str(
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                    .to_string(),
            );
            out.push('\n');
            self.stdin.write_all(out.as_bytes()).unwrap();
            self.stdin.flush().unwrap();
            sent.insert(id, std::time::Instant::now());
        }
        let mut latencies = Vec::with_capacity(n as usize);
        while latencies.len() < n as usize {
            self.line.clear();
            let read = self.stdout.read_line(&mut self.line).unwrap();
            assert!(read > 0, "peer closed its stdout");
            let msg: Value = serde_json::from_str(&self.line).unwrap();
            if let Some(at) = msg["id"].as_u64().and_then(|id| sent.get(&id)) {
                latencies.push(at.elapsed().as_secs_f64() * 1e6);
            }
        }
        latencies
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A firewall serving Streamable HTTP on an ephemeral loopback port.
pub struct HttpFirewall {
    pub child: Child,
    pub addr: String,
}

impl HttpFirewall {
    pub fn start(mut cmd: Command) -> HttpFirewall {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stderr (session logs) so the firewall never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("firewall did not report its address");
        HttpFirewall { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpFirewall {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Streamable HTTP session over one keep-alive connection, JSON
/// answers (`Accept: application/json`), written by hand so the client
/// costs as little CPU as possible next to the server on a small machine.
pub struct HttpPeer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: String,
    path: String,
    session: Option<String>,
    buf: Vec<u8>,
    /// Accept SSE answers too (other servers insist on both media types).
    sse: bool,
}

pub struct HttpAnswer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpPeer {
    pub fn connect(addr: &str) -> HttpPeer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        HttpPeer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            addr: addr.to_string(),
            path: "/mcp".to_string(),
            session: None,
            buf: Vec::new(),
            sse: false,
        }
    }

    /// Connect, `initialize` (opening a session), `notifications/initialized`.
    pub fn open_session(addr: &str) -> HttpPeer {
        HttpPeer::open_session_with(HttpPeer::connect(addr))
    }

    /// [`Self::open_session`] at `path`, accepting JSON or SSE answers, as
    /// other proxies' Streamable HTTP endpoints require.
    pub fn open_session_at(addr: &str, path: &str) -> HttpPeer {
        let mut peer = HttpPeer::connect(addr);
        peer.path = path.to_string();
        peer.sse = true;
        HttpPeer::open_session_with(peer)
    }

    fn open_session_with(mut peer: HttpPeer) -> HttpPeer {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params()});
        let answer = peer.post(&init.to_string());
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        peer.session = Some(
            answer
                .headers
                .get("mcp-session-id")
                .expect("Mcp-Session-Id on initialize")
                .clone(),
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = peer.post(&note.to_string());
        assert!(matches!(answer.status, 200 | 202), "{}", answer.status);
        peer
    }

    pub fn rpc(&mut self, id: u64, method: &str, params: &Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.post(&body.to_string());
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let is_sse = answer
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if !is_sse {
            return serde_json::from_slice(&answer.body).unwrap();
        }
        // The last `data:` event carrying a response.
        String::from_utf8_lossy(&answer.body)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .rfind(|v| v.get("id").is_some() && v.get("method").is_none())
            .unwrap_or_else(|| panic!("no response in {}", String::from_utf8_lossy(&answer.body)))
    }

    pub fn close(mut self) {
        if let Some(session) = self.session.take() {
            let req = format!(
                "DELETE {} HTTP/1.1\r\nHost: {}\r\nMcp-Session-Id: {session}\r\nContent-Length: 0\r\n\r\n",
                self.path, self.addr
            );
            if self.writer.write_all(req.as_bytes()).is_ok() {
                let _ = self.read_answer();
            }
        }
    }

    pub fn post(&mut self, body: &str) -> HttpAnswer {
        self.buf.clear();
        write!(
            self.buf,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: {}\r\nMCP-Protocol-Version: {PROTOCOL}\r\nContent-Length: {}\r\n",
            self.path,
            self.addr,
            if self.sse { "application/json, text/event-stream" } else { "application/json" },
            body.len()
        )
        .unwrap();
        if let Some(s) = &self.session {
            write!(self.buf, "Mcp-Session-Id: {s}\r\n").unwrap();
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(body.as_bytes());
        self.writer.write_all(&self.buf).unwrap();
        self.read_answer().expect("HTTP answer")
    }

    fn read_answer(&mut self) -> std::io::Result<HttpAnswer> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = HashMap::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if let Some(len) = headers.get("content-length") {
            body.resize(len.parse().unwrap(), 0);
            self.reader.read_exact(&mut body)?;
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let start = body.len();
                body.resize(start + n, 0);
                self.reader.read_exact(&mut body[start..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(HttpAnswer {
            status,
            headers,
            body,
        })
    }
}

/// Sorted samples -> value at quantile `p`.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `VmRSS` / `VmHWM` (kB) of a process.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system, every thread) process `pid` has used, in seconds.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime, stime
    // are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks as f64 / 100.0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cpus, {cpu}, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    )
}

/// Warm-up of every load level before its calls are measured.
pub const LOAD_WARMUP: Duration = Duration::from_millis(500);

/// `$name` parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client did during a load level.
pub struct ClientRun {
    /// The client, for the next level (`None` if its connection broke).
    pub peer: Option<HttpPeer>,
    /// Latency of each call after the warm-up, µs.
    pub samples: Vec<f64>,
    /// A call failed (`ok` said no, or the connection broke); the client
    /// stopped there.
    pub failed: bool,
}

/// Every peer calls `tools/call` with `params` in a loop, all starting
/// together, for [`LOAD_WARMUP`] plus `secs`; `ok` judges each answer.
pub fn drive(
    peers: Vec<HttpPeer>,
    params: &Value,
    secs: f64,
    ok: fn(&Value) -> bool,
) -> Vec<ClientRun> {
    let barrier = Arc::new(Barrier::new(peers.len() + 1));
    let handles: Vec<_> = peers
        .into_iter()
        .enumerate()
        .map(|(k, mut peer)| {
            let barrier = barrier.clone();
            let params = params.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let measure_from = Instant::now() + LOAD_WARMUP;
                let end = measure_from + Duration::from_secs_f64(secs);
                let mut samples = Vec::new();
                let mut id = (k as u64) << 40;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        return ClientRun {
                            peer: Some(peer),
                            samples,
                            failed: false,
                        };
                    }
                    id += 1;
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        peer.rpc(id, "tools/call", &params)
                    }));
                    match answer {
                        Ok(resp) if ok(&resp) => {
                            if t >= measure_from {
                                samples.push(t.elapsed().as_secs_f64() * 1e6);
                            }
                        }
                        Ok(_) => {
                            return ClientRun {
                                peer: Some(peer),
                                samples,
                                failed: true,
                            };
                        }
                        Err(_) => {
                            return ClientRun {
                                peer: None,
                                samples,
                                failed: true,
                            };
                        }
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or(ClientRun {
                peer: None,
                samples: Vec::new(),
                failed: true,
            })
        })
        .collect()
}

/// An answer that is a result and not a tool error.
pub fn answered(resp: &Value) -> bool {
    resp.get("error").is_none() && resp["result"]["isError"] != true
}
