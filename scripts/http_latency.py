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
httpx's, for the row as a leaner client sees it. The four kinds of round
trip are taken in turns of 100 calls, both firewalls running throughout.
Prints numbers; asserts nothing.
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


# Calls of each kind before measuring, and per turn.
WARMUP = 100
TURN = 100


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

    # Both firewalls start first; then the four kinds of round trip are
    # taken in turns of TURN calls, so a drift of the machine's speed
    # during the run falls on all of them alike (one after the other,
    # the row swung by more than it measures).
    fw_http, url = start_http([args.firewall, "run", "--listen", "127.0.0.1:0", *common,
                               "--audit-log", os.path.join(work, "http.jsonl"),
                               "--data-dir", os.path.join(work, "http-data"), "--", args.fixture])
    fw_stdio = subprocess.Popen([args.firewall, "run", *common,
                                 "--audit-log", os.path.join(work, "stdio.jsonl"),
                                 "--data-dir", os.path.join(work, "stdio-data"), "--", args.fixture],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def roundtrip(msg):
        fw_stdio.stdin.write((json.dumps(msg) + "\n").encode())
        fw_stdio.stdin.flush()
        while True:
            line = json.loads(fw_stdio.stdout.readline())
            if line.get("id") == msg.get("id"):
                return line

    roundtrip(init)
    fw_stdio.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    http, floor, lean, stdio = [], [], [], []
    http_cpu = stdio_cpu = 0.0
    ids = iter(range(1, 10**9))
    with httpx.Client(timeout=30) as client:
        r = client.post(url, json=init, headers=headers)
        headers["mcp-session-id"] = r.headers["mcp-session-id"]
        headers["mcp-protocol-version"] = "2025-06-18"
        client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        # The client's own floor: the same connection, a GET the firewall
        # answers at once (no session, no policy, no upstream).
        health = url[: -len("/mcp")] + "/healthz"
        # The same calls from Python's own http.client on a keep-alive
        # connection: what a leaner client sees of the same firewall.
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        lean_client = HTTPConnection(host, int(port))

        def by_httpx():
            client.post(url, json=call(next(ids)), headers=headers).read()

        def by_http_client():
            lean_client.request("POST", "/mcp", body=json.dumps(call(next(ids))), headers=headers)
            lean_client.getresponse().read()

        def by_stdio():
            roundtrip(call(next(ids)))

        kinds = ((by_httpx, http), (lambda: client.get(health).read(), floor),
                 (by_http_client, lean), (by_stdio, stdio))
        for once, _ in kinds:
            for _ in range(WARMUP):
                once()
        while len(http) < args.calls:
            turn = min(TURN, args.calls - len(http))
            for once, samples in kinds:
                fw = fw_stdio if samples is stdio else fw_http
                cpu = firewall_cpu(fw.pid)
                for _ in range(turn):
                    start = time.perf_counter()
                    once()
                    samples.append((time.perf_counter() - start) * 1000)
                # The firewall's CPU over its calls (the HTTP one's over
                # httpx's calls alone).
                if samples is http:
                    http_cpu += firewall_cpu(fw.pid) - cpu
                elif samples is stdio:
                    stdio_cpu += firewall_cpu(fw.pid) - cpu
        lean_client.close()
    for fw in (fw_http, fw_stdio):
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
