#!/usr/bin/env python3
"""Session churn: does the firewall give back what sessions took?

Starts the firewall over HTTP (release build, the shipped library with its
rate limits raised, a fixture process per session) and, from `--workers`
threads for `--seconds`, opens sessions, makes `--calls` calls in each and
ends them every way a client can:

  delete     DELETE /mcp
  vanish     the client goes away without a word (idle expiry ends it)
  cut        a 1 s call in flight when the client goes away
  stream     DELETE with a GET /mcp stream open
  legacy     a legacy /sse session whose stream the client drops

Every `--every` seconds it prints the firewall's resident memory, open
descriptors, threads and child processes, and from its metrics listener
the sessions, connections, requests in flight and runtime tasks. After each of `--rounds` rounds
it waits `--settle` seconds (idle expiry, the allocator's purge) and takes
a settled sample. A firewall that keeps anything per ended session shows
it as a slope from round to round: sessions, connections, requests,
tasks, descriptors and children must come back to where they were, and
memory must level off.

  scripts/soak.py [--bin-dir target/release] [--rounds 3] [--seconds 60]
                  [--workers 8] [--calls 5] [--every 5] [--settle 15]

Prints numbers; asserts nothing (tests/http_transport.rs
`churned_sessions_leave_nothing_behind` is the test).
"""

import argparse
import http.client
import itertools
import json
import os
import socket
import tempfile
import threading
import time
import urllib.request

from bench_support import library_policy, resident, start_http

IDLE_SECONDS = 2
ENDINGS = ("delete", "vanish", "cut", "stream", "legacy")


def rpc(i, method, params):
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params})


class Session:
    """One Streamable HTTP session on a keep-alive connection."""

    HEADERS = {"accept": "application/json, text/event-stream",
               "content-type": "application/json"}

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.headers = dict(self.HEADERS)
        self.post(rpc(0, "initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "soak", "version": "1"}}))
        self.headers["mcp-protocol-version"] = "2025-06-18"
        self.post(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def post(self, body, conn=None):
        conn = conn or self.conn
        conn.request("POST", "/mcp", body=body, headers=self.headers)
        response = conn.getresponse()
        text = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{response.status}: {text[:200]!r}")
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
        return text

    def call(self, i):
        text = self.post(rpc(i, "tools/call", {"name": "echo", "arguments": {"text": "soak"}}))
        if b'"result"' not in text:
            raise RuntimeError(f"call failed: {text[:200]!r}")

    def delete(self):
        self.conn.request("DELETE", "/mcp", headers=self.headers)
        self.conn.getresponse().read()
        self.conn.close()

    def raw(self, request):
        """A second connection that sends `request` (bytes) and reads the
        response's head: a stream the client will drop."""
        sock = socket.create_connection((self.host, self.port), timeout=30)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return sock, head

    def request_bytes(self, method, body=b""):
        lines = [f"{method} /mcp HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        lines += [f"content-length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body


def legacy(host, port):
    """A legacy HTTP+SSE session: open the stream, initialize, one call,
    then drop the stream (which ends the session)."""
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(f"GET /sse HTTP/1.1\r\nhost: {host}:{port}\r\naccept: text/event-stream\r\n\r\n"
                 .encode())
    seen = b""
    while b"sessionId=" not in seen or b"\n" not in seen.split(b"sessionId=", 1)[1]:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("legacy stream ended before its endpoint")
        seen += chunk
    endpoint = "/messages?sessionId=" + seen.split(b"sessionId=", 1)[1].split(b"\n", 1)[0] \
        .strip().decode()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i, (method, params) in enumerate((
            ("initialize", {"protocolVersion": "2024-11-05", "capabilities": {},
                            "clientInfo": {"name": "soak", "version": "1"}}),
            ("tools/call", {"name": "echo", "arguments": {"text": "soak"}}))):
        conn.request("POST", endpoint, body=rpc(i, method, params),
                     headers={"content-type": "application/json"})
        conn.getresponse().read()
        while f'"id":{i}'.encode() not in seen:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("legacy stream ended before an answer")
            seen += chunk
    conn.close()
    sock.close()


def churn(host, port, calls, ending):
    if ending == "legacy":
        legacy(host, port)
        return
    s = Session(host, port)
    for i in range(1, calls + 1):
        s.call(i)
    if ending == "delete":
        s.delete()
    elif ending == "vanish":
        s.conn.close()
    elif ending == "cut":
        body = rpc(calls + 1, "tools/call",
                   {"name": "slow", "arguments": {"seconds": 1, "steps": 1}}).encode()
        sock, _ = s.raw(s.request_bytes("POST", body))
        sock.close()
        s.conn.close()
    elif ending == "stream":
        sock, head = s.raw(s.request_bytes("GET"))
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"GET stream refused: {head[:100]!r}")
        s.delete()
        sock.close()


def children(pid):
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        n += 1
            except (OSError, ValueError):
                pass
    return n


def scrape(url):
    """The firewall's own gauges, from its metrics listener."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return {
        "sessions": sum(v for k, v in values.items() if k.startswith("mcp_firewall_sessions{")),
        "connections": values.get('mcp_firewall_http_connections{listener="mcp"}', 0),
        "requests": values.get("mcp_firewall_requests_in_flight", 0),
        "tasks": values.get("mcp_firewall_runtime_tasks", 0),
    }


def sample(fw):
    return {
        "rss_mb": resident(fw.pid)["VmRSS"] / 1024,
        "fds": len(os.listdir(f"/proc/{fw.pid}/fd")),
        "threads": len(os.listdir(f"/proc/{fw.pid}/task")),
        "children": children(fw.pid),
        **scrape(fw.metrics_url),
    }


COLUMNS = ("rss_mb", "fds", "threads", "children", "sessions", "connections", "requests",
           "tasks")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", default=os.path.join(root, "target/release"))
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--every", type=float, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settle", type=float, default=15)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="soak-")
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write(f"[http]\nsession_idle_timeout_seconds = {IDLE_SECONDS}\n"
                "max_sessions = 1024\nmax_sessions_per_principal = 1024\n")
    fw, url = start_http([
        os.path.join(args.bin_dir, "mcp-firewall"), "run", "--listen", "127.0.0.1:0",
        "--config", config, "--policy", library_policy(work),
        "--audit-log", os.path.join(work, "audit.jsonl"), "--audit-fsync", "never",
        "--trust-annotations", "--metrics-listen", "127.0.0.1:0",
        "--data-dir", os.path.join(work, "data"), "--",
        os.path.join(args.bin_dir, "mcp-firewall-fixture")])
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    port = int(port)

    done = {e: 0 for e in ENDINGS}
    failures = []
    lock = threading.Lock()

    def worker(offset, deadline):
        for ending in itertools.islice(itertools.cycle(ENDINGS), offset, None):
            if time.monotonic() >= deadline:
                return
            try:
                churn(host, port, args.calls, ending)
                with lock:
                    done[ending] += 1
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    failures.append(f"{ending}: {e}")

    first = sample(fw)
    print(f"{'s':>5} {'ended':>7} " + " ".join(f"{c:>11}" for c in COLUMNS))

    def show(at, s):
        print(f"{at:5.0f} {sum(done.values()):7d} " + " ".join(f"{s[c]:11g}" for c in COLUMNS),
              flush=True)

    started = time.monotonic()
    show(0, first)
    settled = []
    for round_ in range(args.rounds):
        deadline = time.monotonic() + args.seconds
        threads = [threading.Thread(target=worker, args=(i, deadline))
                   for i in range(args.workers)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(args.every)
            show(time.monotonic() - started, sample(fw))
        for t in threads:
            t.join()
        # Every session left behind ends by idle expiry (the cut calls end
        # within a second of it), and the allocator's purge (every 2 s) and
        # tokio's idle blocking threads (10 s) have their time.
        time.sleep(args.settle)
        settled.append(sample(fw))
        print(f"round {round_ + 1} settled:", end="")
        show(time.monotonic() - started, settled[-1])
    fw.kill()
    fw.wait()
    total = sum(done.values())
    print(f"sessions: {total} ({', '.join(f'{k} {v}' for k, v in done.items())}), "
          f"{total * args.calls} calls, {len(failures)} failed")
    for f in failures[:5]:
        print(f"  {f}")
    for key in COLUMNS:
        print(f"{key:>8}: at start {first[key]:g}, settled after each round "
              + " / ".join(f"{s[key]:g}" for s in settled))


if __name__ == "__main__":
    main()
