#!/usr/bin/env python3
"""Resident memory of a stdio firewall after a hostile upstream lists many
large tools: `--tools` tools with `--kb` KB descriptions each, listed once,
then `--calls` of them called once each. Prints VmRSS and VmHWM; asserts
nothing.

  scripts/listing_memory.py --policy <library> [--bin-dir target/release]
                            [--tools 200] [--kb 100] [--calls 20] [--idle 0.5]
                            [--again] [--big-result MB]

`--idle` is how long the firewall sits idle before memory is read: its
memory-purge thread runs every 2 s, so 0.5 shows what mimalloc alone gave
back and 2.5 what the firewall gives back when it goes idle.

`--again` then lists a second time, from the catalogue the first listing
filled, with the peak reset first (`/proc/<pid>/clear_refs`): what answering
alone adds at its peak.

`--big-result MB` then calls the upstream's `big` tool, which answers with
one line of that many MB, and prints what reading it added at the peak (the
firewall caps the result it passes on; the whole line is read and parsed).

The upstream is fixtures/hostile-upstream/upstream.py, which serves the
tools of the file `TOOLS_FILE` names. With the shipped library, raise the
rate limits first (bench_support.library_policy).
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

from bench_support import ROOT, resident


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--tools", type=int, default=200)
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--idle", type=float, default=0.5)
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--big-result", type=float)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="listing-memory-")
    tools = [{"name": f"t{i}", "description": (f"d{i} " * (args.kb * 1024))[: args.kb * 1024],
              "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
             for i in range(args.tools)]
    if args.big_result:
        tools.append({"name": "big", "description": "answers with one big line",
                      "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}})
    tools_file = os.path.join(work, "tools.json")
    with open(tools_file, "w") as f:
        json.dump(tools, f)
    fw = subprocess.Popen(
        [os.path.join(args.bin_dir, "mcp-firewall"), "run", "--policy", args.policy,
         "--trust-annotations", "--audit-log", os.path.join(work, "audit.jsonl"),
         "--data-dir", os.path.join(work, "data"), "--",
         "python3", os.path.join(ROOT, "fixtures/hostile-upstream/upstream.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, TOOLS_FILE=tools_file,
                 BIG_BYTES=str(int((args.big_result or 1) * 1024 * 1024))))

    def rpc(message):
        fw.stdin.write((json.dumps(message) + "\n").encode())
        fw.stdin.flush()
        while "id" in message:
            answer = json.loads(fw.stdout.readline())
            if answer.get("id") == message["id"]:
                return answer
        return None

    rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "listing_memory", "version": "1"}}})
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
    listed = rpc({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    for i in range(args.calls):
        rpc({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
             "params": {"name": f"t{i}", "arguments": {}}})
    time.sleep(args.idle)
    memory = resident(fw.pid)
    if args.again:
        with open(f"/proc/{fw.pid}/clear_refs", "w") as f:
            f.write("5")
        before = resident(fw.pid)
        rpc({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        after = resident(fw.pid)
        print(f"listed again: VmRSS {before['VmRSS']} before, VmHWM {after['VmHWM']} at the peak: "
              f"+{(after['VmHWM'] - before['VmRSS']) / 1024:.1f} MB")
    if args.big_result:
        with open(f"/proc/{fw.pid}/clear_refs", "w") as f:
            f.write("5")
        before = resident(fw.pid)
        rpc({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "big", "arguments": {}}})
        after = resident(fw.pid)
        print(f"a {args.big_result:g} MB result: VmRSS {before['VmRSS']} before, VmHWM {after['VmHWM']} "
              f"at the peak: +{(after['VmHWM'] - before['VmRSS']) / 1024:.1f} MB")
    fw.kill()
    fw.wait()
    print(f"{len(listed['result']['tools'])} tools listed ({args.kb} KB descriptions), "
          f"{args.calls} called, {args.idle} s idle: VmRSS {memory['VmRSS']} kB, VmHWM {memory['VmHWM']} kB")


if __name__ == "__main__":
    main()
