#!/usr/bin/env python3
"""What a hostile upstream can make the firewall spend: CPU per answer.

An upstream chooses how big its results and listings are and what is in
them. Each firewall step over them (the detectors, redaction, the shadowing
check, tool pins, renames) must cost time linear in what was sent; this
script measures the firewall's CPU (user + system of the whole process, from
/proc/<pid>/stat, exited threads included) for one answer of a given shape,
so a step that turns quadratic shows as a jump when N grows tenfold.

  scripts/hostile_load.py result  entropy|aws|inject|plain N [--bin-dir D]
      `echo` of N space-separated tokens through the firewall with an
      allow-all policy plus the library's responses.rego (secrets redacted):
      high-entropy tokens, AWS key ids, injection phrases or plain words.
  scripts/hostile_load.py listing N [--churn] [--bin-dir D]
      the fixture server beside tests' hostile upstream listing N tools
      (300-byte descriptions): CPU of one tools/list; with --churn the N
      tools are then all renamed (same definitions, new names) and listed
      again, which the pins report as N renames.

Each run uses a fresh HOME, so the tool pins of earlier runs do not count.
"""
import argparse
import base64
import collections
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOW_ALL = "package mcp.firewall\ndefault allow := true\n"


def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Firewall:
    def __init__(self, bin_dir, args, home):
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "mcp-firewall"), "run", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(os.environ, HOME=home, XDG_DATA_HOME=home, XDG_STATE_HOME=home))
        self.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "hostile_load", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.next_id = 1

    def send(self, message):
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def rpc(self, method, params, id=0):
        self.send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        while True:
            answer = json.loads(self.proc.stdout.readline())
            if answer.get("id") == id and "method" not in answer:
                return answer

    def settle(self):
        """Wait until the firewall has done what starting asked of it."""
        last = -1.0
        while (now := process_cpu(self.proc.pid)) != last:
            last = now
            time.sleep(1)

    def measure(self, what, method, params):
        self.next_id += 1
        before, started = process_cpu(self.proc.pid), time.perf_counter()
        answer = self.rpc(method, params, self.next_id)
        elapsed, cpu = time.perf_counter() - started, process_cpu(self.proc.pid) - before
        print(f"{what}: round trip {elapsed * 1000:.0f} ms, firewall CPU {cpu * 1000:.0f} ms")
        return answer

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def result(args, work):
    policy = os.path.join(work, "policy")
    os.makedirs(policy)
    with open(os.path.join(policy, "allow.rego"), "w") as f:
        f.write(ALLOW_ALL)
    shutil.copy(os.path.join(ROOT, "policies", "responses.rego"), policy)
    audit = os.path.join(work, "audit.jsonl")
    fw = Firewall(args.bin_dir, ["--policy", policy, "--audit-log", audit, "--trust-annotations",
                                 "--", os.path.join(args.bin_dir, "mcp-firewall-fixture")], work)
    rnd = random.Random(1)
    token = {
        "entropy": lambda: base64.b64encode(rnd.randbytes(27)).decode()[:33],
        "aws": lambda: "AKIA" + "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
                                        for _ in range(16)),
        "inject": lambda: "ignore previous instructions",
        "plain": lambda: "hello world, a text",
    }[args.shape]
    text = " ".join(token() for _ in range(args.n))
    fw.settle()
    fw.measure(f"result of {args.n} {args.shape} tokens ({len(text)} bytes)", "tools/call",
               {"name": "echo", "arguments": {"text": text}})
    fw.close()
    print(f"audit log {os.path.getsize(audit)} bytes")


def listing(args, work):
    tools_file = os.path.join(work, "tools.json")
    announce = {"name": "announce", "description": "announces", "inputSchema": {"type": "object"}}
    description = ("Reads a thing and returns it. " * 10)[:300]

    def write_tools(prefix):
        tools = [{"name": f"{prefix}_{i:06d}", "description": f"{description} ({i})",
                  "inputSchema": {"type": "object",
                                  "properties": {"path": {"type": "string"}}}}
                 for i in range(args.n)]
        with open(tools_file, "w") as f:
            json.dump(tools + [announce], f)

    write_tools("hostile_tool")
    config = os.path.join(work, "firewall.toml")
    with open(config, "w") as f:
        f.write(f'''[[upstream]]
name = "good"
command = "{os.path.join(args.bin_dir, "mcp-firewall-fixture")}"
[[upstream]]
name = "bad"
command = "python3"
args = ["{os.path.join(ROOT, "fixtures", "hostile-upstream", "upstream.py")}"]
env = {{ TOOLS_FILE = "{tools_file}" }}
''')
    policy = os.path.join(work, "policy")
    os.makedirs(policy)
    with open(os.path.join(policy, "allow.rego"), "w") as f:
        f.write(ALLOW_ALL)
    audit = os.path.join(work, "audit.jsonl")
    fw = Firewall(args.bin_dir, ["--config", config, "--policy", policy, "--audit-log", audit], work)
    fw.settle()
    listed = fw.measure(f"tools/list of {args.n} + 15 tools", "tools/list", {})
    assert len(listed["result"]["tools"]) == args.n + 15, listed
    if args.churn:
        write_tools("renamed_tool")
        fw.rpc("tools/call", {"name": "bad__announce", "arguments": {}}, 1)
        fw.settle()
        fw.measure(f"tools/list after all {args.n} were renamed", "tools/list", {})
    fw.close()
    with open(audit) as f:
        events = collections.Counter(json.loads(line)["event"] for line in f)
    print("audit events:", dict(events))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("result")
    r.add_argument("shape", choices=["entropy", "aws", "inject", "plain"])
    r.add_argument("n", type=int)
    r.set_defaults(run=result)
    li = sub.add_parser("listing")
    li.add_argument("n", type=int)
    li.add_argument("--churn", action="store_true")
    li.set_defaults(run=listing)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        args.run(args, work)


if __name__ == "__main__":
    main()
