#!/usr/bin/env python3
"""Sequential tools/call latency through the firewall from a real HTTP client
(httpx, as the Python SDK uses), over Streamable HTTP and, for comparison,
over stdio: prints p50/p99 of each, the firewall's CPU per call on each
(all its threads, from /proc), and the HTTP path's cost over stdio.

  fixtures/python/.venv/bin/python scripts/http_latency.py \
      [--firewall target/release/mcp-firewall] [--fixture target/release/mcp-firewall-fixture] [--calls 300]

Issue 11's row "sequential tools/call over Streamable HTTP ... added over
stdio". Also times `GET /healthz` on the same connection, which the
firewall answers at once: that round trip is the client's and the loopback
HTTP exchange's own cost, which no server can remove, and the last line
prints what the firewall's HTTP path adds beyond it; and makes the same
calls from Python's `http.client`, whose own HTTP work is a fraction of
httpx's, for the row as a leaner client sees it. Prints numbers; asserts
nothing.
"""

import argparse
from http.client import HTTPConnection
import json
import os
import statistics
import subprocess
import tempfile
import time

import httpx

from bench_support import firewall_cpu, start_http


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser()
    p.add_argument("--firewall", default=os.path.join(root, "target/release/mcp-firewall"))
    p.add_argument("--fixture", default=os.path.join(root, "target/release/mcp-firewall-fixture"))
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="http-latency-")
    policy = os.path.join(work, "policy")
    os.makedirs(policy)
    open(os.path.join(policy, "p.rego"), "w").write("package mcp.firewall\n\nallow := true\n")
    common = ["--policy", policy, "--audit-fsync", "never"]
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "latency", "version": "1"}}}
    call = lambda i: {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x"}}}

    # Streamable HTTP.
    fw, url = start_http([args.firewall, "run", "--listen", "127.0.0.1:0", *common,
                          "--audit-log", os.path.join(work, "http.jsonl"),
                          "--data-dir", os.path.join(work, "http-data"), "--", args.fixture])
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    http = []
    floor = []
    with httpx.Client(timeout=30) as client:
        r = client.post(url, json=init, headers=headers)
        headers["mcp-session-id"] = r.headers["mcp-session-id"]
        headers["mcp-protocol-version"] = "2025-06-18"
        client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        http_cpu = firewall_cpu(fw.pid)
        for i in range(1, args.calls + 1):
            start = time.perf_counter()
            r = client.post(url, json=call(i), headers=headers)
            r.read()
            http.append((time.perf_counter() - start) * 1000)
        http_cpu = firewall_cpu(fw.pid) - http_cpu
        # The client's own floor: the same connection, a GET the firewall
        # answers at once (no session, no policy, no upstream).
        health = url[: -len("/mcp")] + "/healthz"
        for _ in range(args.calls):
            start = time.perf_counter()
            client.get(health).read()
            floor.append((time.perf_counter() - start) * 1000)
        # The same calls from Python's own http.client on a keep-alive
        # connection: what a leaner client sees of the same firewall.
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        lean_client = HTTPConnection(host, int(port))
        lean = []
        for i in range(args.calls + 1, 2 * args.calls + 1):
            body = json.dumps(call(i))
            start = time.perf_counter()
            lean_client.request("POST", "/mcp", body=body, headers=headers)
            lean_client.getresponse().read()
            lean.append((time.perf_counter() - start) * 1000)
        lean_client.close()
    fw.kill()
    fw.wait()

    # stdio.
    fw = subprocess.Popen([args.firewall, "run", *common,
                           "--audit-log", os.path.join(work, "stdio.jsonl"),
                           "--data-dir", os.path.join(work, "stdio-data"), "--", args.fixture],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def roundtrip(msg):
        fw.stdin.write((json.dumps(msg) + "\n").encode())
        fw.stdin.flush()
        while True:
            line = json.loads(fw.stdout.readline())
            if line.get("id") == msg.get("id"):
                return line

    roundtrip(init)
    fw.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    stdio = []
    stdio_cpu = firewall_cpu(fw.pid)
    for i in range(1, args.calls + 1):
        start = time.perf_counter()
        roundtrip(call(i))
        stdio.append((time.perf_counter() - start) * 1000)
    stdio_cpu = firewall_cpu(fw.pid) - stdio_cpu
    fw.kill()
    fw.wait()

    for name, s in (("streamable-http", http), ("stdio", stdio), ("GET /healthz", floor),
                    ("http.client", lean)):
        print(f"{name:16} p50 {statistics.median(s):7.3f} ms   p99 {percentile(s, 0.99):7.3f} ms   ({len(s)} calls)")
    # The firewall's own CPU (all its threads) per call: steadier than
    # latency on a shared machine, and what caps throughput.
    for name, cpu in (("streamable-http", http_cpu), ("stdio", stdio_cpu)):
        print(f"{name:16} firewall CPU per call {cpu / args.calls * 1e6:5.0f} µs")
    added = statistics.median(http) - statistics.median(stdio)
    print(f"HTTP over stdio  p50 {added:+7.3f} ms")
    # What is left of it once an HTTP round trip that does nothing is paid
    # (httpx building the request and parsing the answer, the loopback TCP
    # exchange): the firewall's own Streamable HTTP handling.
    print(f"HTTP over stdio beyond a bare round trip  p50 {added - statistics.median(floor):+7.3f} ms")
    # The same row from a client whose own HTTP work is small.
    print(f"HTTP over stdio from http.client  p50 {statistics.median(lean) - statistics.median(stdio):+7.3f} ms")


if __name__ == "__main__":
    main()
