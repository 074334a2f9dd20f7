#!/usr/bin/env python3
"""The order of the release binary's code: start-up first, then the call path.

A process maps its binary's code on demand, and each page fault maps the
64 KB around the page touched (fault-around), so what an idle firewall
keeps resident is 64 KB for every place start-up touched, not the size of
the code that ran. Linked in the default order, the ~2 MB of functions
that start-up runs are spread over 131 of the 310 64-KB blocks of a
19 MB `.text`: 9.3 MB resident. `link/text-order.txt` lists those
functions first, then those an allowed call runs over Streamable HTTP and
over stdio, and `build.rs` hands the list to the linker
(`--symbol-ordering-file`, LLD, release builds only).

  scripts/text_order.py write                               # regenerate link/text-order.txt (~10 min)
  scripts/text_order.py check [--bin-dir target/release]   # how much of the list the binary holds

`write` builds the firewall twice (see BUILDS: a plain release build, and
the build `cargo bench` makes, whose dependencies have the
dev-dependencies' features too, so about half of its symbols carry other
hashes), and runs each build under valgrind's callgrind (which records
every function that ran) three times: an HTTP firewall started and
stopped with no session; the same with one session making allowed calls;
a stdio firewall making allowed calls. Each uses the shipped library
(rate limits and working hours opened as `benches/common/mod.rs` does).
The list holds the first build's functions, then the second's that the
first lacks; the linker skips names a binary does not define. Most names
carry a hash that stays the same while the dependencies, their features,
the profile and the compiler do, so the list goes stale slowly: after
upgrading Rust or a dependency, run `write` (`check`, which
`scripts/bench.sh` runs, says how much still matches), then rebuild.
`cargo install` without `--locked` resolves newer dependencies, and so
other names.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench_support import ROOT, library_policy, start_http

ORDER = os.path.join(ROOT, "link", "text-order.txt")
CALLS = 20
HEADER = """\
# The functions mcp-firewall runs at start-up, then in allowed calls over
# Streamable HTTP and stdio, in the order the linker places them first: a
# release build's, then those of the build `cargo bench` makes that the
# first lacks. Written by `scripts/text_order.py write`; read by build.rs
# (`--symbol-ordering-file`). See docs/performance.md.
"""

def initialize(i):
    return {"jsonrpc": "2.0", "id": i, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "text-order", "version": "1"}}}


def call(i):
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": f"hello {i}"}}}


def under_callgrind(out, argv):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--demangle=no", *argv]


def http_run(firewall, fixture, common, work, name, calls):
    """An HTTP firewall under callgrind: start, `calls` allowed calls in one
    session (none: no session at all), SIGTERM."""
    out = os.path.join(work, f"{name}.callgrind")
    fw, url = start_http(
        under_callgrind(out, [firewall, "run", "--listen", "127.0.0.1:0", *common,
                              "--audit-log", os.path.join(work, f"{name}.jsonl"), "--", fixture]))
    if url is None:
        sys.exit(f"{name}: the firewall exited before listening")
    if calls:
        headers = {"accept": "application/json, text/event-stream",
                   "content-type": "application/json"}

        def post(message):
            request = urllib.request.Request(url, json.dumps(message).encode(), headers)
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                return response.headers

        session = post(initialize(0))["mcp-session-id"]
        headers["mcp-session-id"] = session
        headers["mcp-protocol-version"] = "2025-06-18"
        post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        for i in range(2, calls + 2):
            post(call(i))
    else:
        time.sleep(3)
    fw.send_signal(signal.SIGTERM)
    fw.wait(timeout=120)
    return out


def stdio_run(firewall, fixture, common, work, calls):
    """A stdio firewall under callgrind: `calls` allowed calls, then stdin closed."""
    out = os.path.join(work, "stdio.callgrind")
    fw = subprocess.Popen(
        under_callgrind(out, [firewall, "run", *common,
                              "--audit-log", os.path.join(work, "stdio.jsonl"), "--", fixture]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def rpc(message):
        fw.stdin.write((json.dumps(message) + "\n").encode())
        fw.stdin.flush()
        if "id" in message:
            return json.loads(fw.stdout.readline())

    rpc(initialize(0))
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
    rpc({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    for i in range(2, calls + 2):
        rpc(call(i))
    fw.stdin.close()
    fw.wait(timeout=120)
    return out


def functions_run(path):
    """The mangled names of the functions a callgrind profile saw run, in
    the order the profile first names them."""
    names, seen = [], set()
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m and m.group(1) not in seen:
                seen.add(m.group(1))
                names.append(m.group(1))
    return names


def defined_functions(binary):
    """Name -> size of every function the binary defines."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def listed():
    with open(ORDER) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


# The builds whose binaries the list serves. `cargo bench` builds the
# binaries the benches start with the dev-dependencies' features unified
# in, so many of its symbols carry other hashes than a plain release
# build's; the list holds the functions of both.
BUILDS = [
    ["cargo", "build", "--release", "--bins"],
    ["cargo", "bench", "--no-run", "--bench", "http_throughput"],
]


def profile_build(build, work):
    """Build, then the functions the binary runs, in order (`write`)."""
    subprocess.run(build, cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    bins = tempfile.mkdtemp(dir=work)
    for name in ("mcp-firewall", "mcp-firewall-fixture"):
        shutil.copy(os.path.join(target, "release", name), bins)
    firewall = os.path.join(bins, "mcp-firewall")
    fixture = os.path.join(bins, "mcp-firewall-fixture")
    common = ["--policy", library_policy(bins), "--audit-fsync", "never",
              "--trust-annotations", "--data-dir", os.path.join(bins, "data")]
    profiles = [
        http_run(firewall, fixture, common, bins, "start", 0),
        http_run(firewall, fixture, common, bins, "http", CALLS),
        stdio_run(firewall, fixture, common, bins, CALLS),
    ]
    for name in ("http", "stdio"):
        records = [json.loads(line) for line in open(os.path.join(bins, f"{name}.jsonl"))]
        allowed = sum(r["event"] == "call.decided" and r["result"]["decision"] == "allow"
                      for r in records)
        if allowed < CALLS:
            sys.exit(f"{name}: {allowed} of {CALLS} calls were allowed; see {bins}")
    defined = defined_functions(firewall)
    order, seen = [], set()
    for profile in profiles:
        for name in functions_run(profile):
            if name in defined and name not in seen:
                seen.add(name)
                order.append(name)
    return order, defined


def write(args):
    work = tempfile.mkdtemp(prefix="text-order-")
    order, seen, counts = [], set(), []
    for build in BUILDS:
        names, defined = profile_build(build, work)
        size = sum(defined[n] for n in names)
        counts.append(f"# functions of `{' '.join(build)}`: {len(names)} ({size / 2**20:.2f} MB)\n")
        order.extend(n for n in names if n not in seen)
        seen.update(names)
    os.makedirs(os.path.dirname(ORDER), exist_ok=True)
    with open(ORDER, "w") as f:
        f.write(HEADER)
        f.writelines(counts)
        f.write("\n".join(order) + "\n")
    print(f"{len(order)} functions written to {ORDER}; rebuild to link with them")


def check(args):
    firewall = os.path.join(args.bin_dir, "mcp-firewall")
    defined = defined_functions(firewall)
    names = listed()
    present = [n for n in names if n in defined]
    # Each build holds the functions of its own profile (see BUILDS).
    with open(ORDER) as f:
        own = [int(m.group(1)) for m in re.finditer(r"^# functions of .*: (\d+)", f.read(), re.M)]
    expected = min(own) if own else len(names)
    out = subprocess.run(["nm", "-n", "--defined-only", firewall],
                         capture_output=True, text=True, check=True).stdout
    first_text = next((line.split()[2] for line in out.splitlines()
                       if len(line.split()) == 3 and line.split()[1] in "tT"), None)
    in_order = bool(present) and first_text == present[0]
    print(f"text order: {len(present)} of {len(names)} listed functions are in {firewall}; "
          f"placed first: {'yes' if in_order else 'no'}")
    if len(present) < 0.9 * expected:
        print("text order: the list is stale; run scripts/text_order.py write")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["write", "check"])
    p.add_argument("--bin-dir", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release"))
    args = p.parse_args()
    {"write": write, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
