#!/usr/bin/env python3
"""Firewall CPU time and round trip per sequential stdio `tools/call`.

Starts the firewall (release build) in front of the fixture server, makes
warm-up calls, then N calls to `echo` one at a time, and prints the p50
round trip and the firewall's own CPU time per call (user + system of all
its threads, from /proc/<pid>/task/*/stat before and after). CPU per call is
steadier than latency on a shared machine: compare builds with it.

  scripts/cpu_per_call.py --policy policies [--bin-dir target/release] [--calls 3000]
                          [--text-bytes N]   (echo N bytes: a big argument and result)
                          [--instructions]   (instructions per call under callgrind)
                          [--profile FILE]   (with --instructions: keep the callgrind
                                              profile of the measured run)
                          [--http]           (Streamable HTTP on one keep-alive
                                              connection, SSE answers, instead of stdio)

`--instructions` runs the firewall under valgrind's callgrind twice, with
the warm-up calls alone and with the warm-up and `--calls` more (use a few
hundred), and prints the difference per call. Other work on the machine
does not move it; the firewall's own threads and timestamps do, by 1-2 %
between runs of one binary, so alternate builds and repeat. valgrind
hides the CPU's SHA extensions, so SHA-256 counts more there than it costs.

With the shipped library, raise the rate limits first (a copy of policies/
with data.json changed as benches/common/mod.rs `library_policy` does), or
the calls after the 30th are refusals.
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import tempfile
import time

from bench_support import firewall_cpu, start_http


class Stdio:
    """The firewall as a client's stdio server."""

    def __init__(self, cmd):
        # Buffered pipes, flushed after each request: an unbuffered `readline`
        # reads one byte per system call (a 50 KB answer took ~25 ms to read).
        self.fw = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)

    def rpc(self, message):
        self.fw.stdin.write((json.dumps(message) + "\n").encode())
        self.fw.stdin.flush()
        if "id" in message:
            return json.loads(self.fw.stdout.readline())

    def close(self):
        self.fw.stdin.close()
        self.fw.wait()


class Http:
    """The firewall listening for Streamable HTTP; one keep-alive
    connection, accepting SSE answers as SDK clients do."""

    def __init__(self, cmd):
        self.fw, url = start_http(cmd)
        assert url, "the firewall did not listen"
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.conn = http.client.HTTPConnection(host, int(port))
        self.headers = {"Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream"}

    def rpc(self, message):
        self.conn.request("POST", "/mcp", json.dumps(message), self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if "mcp-session-id" in response.headers:
            self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        if "id" not in message:
            return None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:] for line in body.split(b"\n") if line.startswith(b"data:")]
            return json.loads(data[-1])
        return json.loads(body)

    def close(self):
        self.conn.close()
        self.fw.terminate()
        self.fw.wait()


def session(args, calls, callgrind=False, profile="/dev/null"):
    """Warm-up calls, then `calls` measured ones: (round trips, firewall CPU
    seconds, instructions the firewall ran in all when under callgrind)."""
    audit = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    cmd = [
        os.path.join(args.bin_dir, "mcp-firewall"), "run", "--policy", args.policy,
        *(["--listen", "127.0.0.1:0"] if args.http else []),
        "--audit-log", audit, "--audit-fsync", args.fsync, "--trust-annotations",
        "--", os.path.join(args.bin_dir, "mcp-firewall-fixture"),
    ]
    valgrind_log = os.path.join(os.path.dirname(audit), "valgrind.log")
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}",
               f"--log-file={valgrind_log}", *cmd]
    client = (Http if args.http else Stdio)(cmd)
    rpc, fw = client.rpc, client.fw
    rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "cpu_per_call", "version": "1"}}})
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})

    text = ("hello " * (args.text_bytes // 6 + 1))[:args.text_bytes]

    def call(i):
        answer = rpc({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": text}}})
        content = answer.get("result", {}).get("content") or [{}]
        assert content[-1].get("text") == text, answer

    for i in range(300):
        call(i + 1)
    before = firewall_cpu(fw.pid)
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        call(1000 + i)
        latencies.append(time.perf_counter() - started)
    cpu = firewall_cpu(fw.pid) - before
    client.close()
    instructions = None
    if callgrind:
        with open(valgrind_log) as log:
            collected = re.search(r"Collected : (\d+)", log.read())
        instructions = int(collected.group(1)) if collected else None
    return sorted(latencies), cpu, instructions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--fsync", default="never")
    ap.add_argument("--text-bytes", type=int, default=5)
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--profile", help="with --instructions: keep the measured run's "
                    "callgrind profile here (read it with callgrind_annotate)")
    args = ap.parse_args()
    if args.instructions:
        _, _, warm_up = session(args, 0, callgrind=True)
        _, _, measured = session(args, args.calls, callgrind=True,
                                 profile=args.profile or "/dev/null")
        print(f"{args.calls} calls: {(measured - warm_up) / args.calls:,.0f} "
              "instructions per call (firewall process, callgrind)")
        return
    latencies, cpu, _ = session(args, args.calls)
    print(f"{args.calls} calls: round trip p50 {latencies[len(latencies) // 2] * 1e6:.0f} µs; "
          f"firewall CPU per call {cpu / args.calls * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
