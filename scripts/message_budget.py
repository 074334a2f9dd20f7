#!/usr/bin/env python3
"""What several upstreams sending big answers at once make the firewall hold.

Starts the firewall (stdio, allow-all) with N hostile upstreams
(fixtures/hostile-upstream), calls `big` on each, all at once, and has each
send MiB mebibytes of its answer and stop short of its end, as a slow or
hostile server would. When every upstream has sent what it will (or been
refused), prints the firewall's peak resident memory (`VmHWM`) and how many
calls were refused for want of memory; then lets the upstreams finish.

  scripts/message_budget.py [--bin-dir target/release] [--upstreams 8] [--mib 60]
                            [--budget BYTES]   (message_memory_bytes; default:
                                                the firewall's own, 1 GiB)

Run it against an older build (`--bin-dir`, without `--budget`) to see what
the same answers cost without a process-wide bound.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_support import ROOT, resident

POLICY = "package mcp.firewall\n\nallow := true\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--upstreams", type=int, default=8)
    ap.add_argument("--mib", type=int, default=60)
    ap.add_argument("--budget", type=int)
    args = ap.parse_args()

    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "policy"))
    with open(os.path.join(work, "policy", "allow.rego"), "w") as f:
        f.write(POLICY)
    hostile = os.path.join(ROOT, "fixtures", "hostile-upstream", "upstream.py")
    config = ""
    if args.budget:
        config += f"[session]\nmessage_memory_bytes = {args.budget}\n\n"
    for i in range(args.upstreams):
        config += (f'[[upstream]]\nname = "u{i}"\ncommand = "python3"\nargs = ["{hostile}"]\n'
                   f'env = {{ BIG_BYTES = "{args.mib << 20}" }}\ntimeout_seconds = 600\n\n')
    with open(os.path.join(work, "config.toml"), "w") as f:
        f.write(config)
    fw = subprocess.Popen(
        [os.path.join(args.bin_dir, "mcp-firewall"), "run", "--config",
         os.path.join(work, "config.toml"), "--policy", os.path.join(work, "policy"),
         "--audit-log", os.path.join(work, "audit.jsonl")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(message):
        fw.stdin.write((json.dumps(message) + "\n").encode())
        fw.stdin.flush()

    seen = {}

    def answer(wanted):
        while wanted not in seen:
            line = fw.stdout.readline()
            if not line:
                sys.exit("the firewall exited")
            message = json.loads(line)
            seen[message.get("id")] = message
        return seen.pop(wanted)

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "message_budget", "version": "1"}}})
    answer(0)
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    answer(1)
    release = os.path.join(work, "release")
    for i in range(args.upstreams):
        send({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
              "params": {"name": f"u{i}__big", "arguments": {"until": release}}})
    # An upstream that was refused never finishes writing (the firewall
    # skips its line), so "sent" cannot be waited for: wait until the
    # firewall's memory stops growing instead.
    started = time.time()
    last, still = -1, 0
    while still < 6 and time.time() - started < 300:
        time.sleep(0.5)
        now = resident(fw.pid)["VmRSS"]
        still = still + 1 if now == last else 0
        last = now
    memory = resident(fw.pid)
    hwm, rss = memory["VmHWM"], memory["VmRSS"]
    open(release, "w").close()
    refused = answered = 0
    for i in range(args.upstreams):
        message = answer(100 + i)
        if "memory" in json.dumps(message.get("error", {})):
            refused += 1
        elif "result" in message:
            answered += 1
    fw.stdin.close()
    fw.wait()
    budget = f"budget {args.budget >> 20} MiB" if args.budget else "default budget"
    print(f"{args.upstreams} upstreams x {args.mib} MiB, {budget}: firewall VmHWM "
          f"{hwm / 1024:.0f} MB (RSS {rss / 1024:.0f} MB while held); "
          f"{answered} answered, {refused} refused for memory")


if __name__ == "__main__":
    main()
