#!/usr/bin/env python3
"""Group commit under load: one stdio session with 32 `tools/call`s in
flight at a time, the shipped library (rate limits and working hours out of
reach), `--audit-fsync never` then `always`. Prints calls/s and, for
`always`, how many `fsync`s the records took (the firewall logs the count
when its audit log closes). Prints numbers; asserts nothing.

  python3 scripts/fsync_burst.py [--firewall target/release/mcp-firewall]
      [--fixture target/release/mcp-firewall-fixture] [--rounds 60]
"""

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench_support import ROOT, library_policy

REPO = Path(ROOT)


def run(args, work, lib, fsync):
    err_path = work / f"stderr-{fsync}.txt"
    with open(err_path, "w") as err:
        p = subprocess.Popen(
            [args.firewall, "run", "--policy", str(lib), "--audit-log", str(work / f"audit-{fsync}.jsonl"),
             "--audit-fsync", fsync, "--trust-annotations", "--", args.fixture],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"})

        def send(msg):
            p.stdin.write((json.dumps(msg) + "\n").encode())
            p.stdin.flush()

        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "burst", "version": "1"}}})
        p.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        n = 0
        started = time.perf_counter()
        for _ in range(args.rounds):
            for _ in range(32):
                n += 1
                send({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x"}}})
            for _ in range(32):
                p.stdout.readline()
        elapsed = time.perf_counter() - started
        p.stdin.close()
        p.wait()
    syncs = re.search(r"last_seq\W+(\d+).*fsyncs\W+(\d+)", err_path.read_text())
    line = f"fsync {fsync:<6}  {n} calls  {n / elapsed:8.0f} calls/s"
    if syncs:
        line += f"  ({syncs.group(2)} fsyncs for {syncs.group(1)} records)"
    print(line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--firewall", default=str(REPO / "target/release/mcp-firewall"))
    parser.add_argument("--fixture", default=str(REPO / "target/release/mcp-firewall-fixture"))
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        lib = Path(library_policy(work))
        for fsync in ("never", "always"):
            run(args, work, lib, fsync)


if __name__ == "__main__":
    main()
