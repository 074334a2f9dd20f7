#!/usr/bin/env python3
"""What a flood of refused requests costs the firewall: N `POST /mcp` with a
wrong bearer token (anyone who can reach the port can send them), from
several clients at once, a connection each (a refusal ends its connection). Prints requests/s, the firewall's CPU per
request, and how many log lines and bytes it wrote on stderr.

    scripts/refused_flood.py --bin-dir target/release --requests 20000
"""

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_support  # noqa: E402

CONFIG = """
[[upstream]]
name = "fx"
command = "{fixture}"

[http]
tokens = [{{ principal = "alice", env = "ALICE_TOKEN" }}]
"""


def flood(port, count, body):
    headers = {"Authorization": "Bearer not-a-token", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    for _ in range(count):
        # A refusal before the body is read ends its connection: one each.
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/mcp", body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        conn.close()
        if answer.status != 401:
            raise SystemExit(f"expected 401, got {answer.status}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    config = os.path.join(work, "mcp-firewall.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(fixture=os.path.join(args.bin_dir, "mcp-firewall-fixture")))
    policy = os.path.join(work, "policy")
    os.makedirs(policy)
    with open(os.path.join(policy, "p.rego"), "w") as f:
        f.write("package mcp.firewall\n\nallow := true\n")
    logged = {"lines": 0, "bytes": 0}

    def count(line):
        logged["lines"] += 1
        logged["bytes"] += len(line)

    os.environ["ALICE_TOKEN"] = "alice-secret-token"
    os.environ["RUST_LOG"] = "mcp_firewall=info"
    fw, url = bench_support.start_http(
        [os.path.join(args.bin_dir, "mcp-firewall"), "run", "--config", config,
         "--policy", policy, "--audit-log", os.path.join(work, "audit.jsonl"),
         "--data-dir", os.path.join(work, "data"), "--listen", "127.0.0.1:0"], on_line=count)
    if url is None:
        raise SystemExit("the firewall did not start")
    port = int(url.split(":")[2].split("/")[0])
    body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'
    flood(port, 50, body)  # warm up: connections, allocator
    time.sleep(1)
    before = dict(logged)
    cpu = bench_support.firewall_cpu(fw.pid)
    each = args.requests // args.connections
    threads = [threading.Thread(target=flood, args=(port, each, body))
               for _ in range(args.connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    cpu = bench_support.firewall_cpu(fw.pid) - cpu
    time.sleep(6)  # the report of lines left out comes within 5 s
    sent = each * args.connections
    print(f"{sent} refused requests in {took:.2f} s: {sent / took:,.0f}/s, "
          f"firewall CPU {cpu / sent * 1e6:.1f} µs each")
    print(f"stderr: {logged['lines'] - before['lines']} lines, "
          f"{logged['bytes'] - before['bytes']:,} bytes")
    fw.terminate()
    fw.wait()


if __name__ == "__main__":
    main()
