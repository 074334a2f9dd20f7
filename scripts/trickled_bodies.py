#!/usr/bin/env python3
"""What clients that trickle request bodies make an HTTP firewall hold.

Starts the firewall (`--listen 127.0.0.1:0`, allow-all, in front of the
fixture) and opens N connections, each sending the headers of a `POST /mcp`
whose body is 4 MiB (the cap) and then KIB kibibytes of it, and no more, as
a slow or hostile client would. When every connection has sent what it
will (or been answered), prints the firewall's peak resident memory
(`VmHWM`) and how the connections were answered: `503` (the memory budget
was spent), `408` (the body did not arrive within the header-read
timeout), or nothing (still held).

  scripts/trickled_bodies.py [--bin-dir target/release] [--connections 200]
                             [--kib 3072] [--budget BYTES] [--wait SECONDS]

`--budget` sets `message_memory_bytes` (default: the firewall's own, 1 GiB);
the header-read timeout is 10 s, and `--wait` (default 12) is how long the
script waits for answers after the last byte it sends. Run it against an
older build (`--bin-dir`) to see what the same clients cost without a bound.
"""
import argparse
import os
import select
import socket
import tempfile
import time

from bench_support import resident, start_http

POLICY = "package mcp.firewall\n\nallow := true\n"
CAP = 4 * 1024 * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--kib", type=int, default=3072)
    ap.add_argument("--budget", type=int)
    ap.add_argument("--wait", type=float, default=12.0)
    args = ap.parse_args()

    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "policy"))
    with open(os.path.join(work, "policy", "allow.rego"), "w") as f:
        f.write(POLICY)
    config = "[http]\nheader_read_timeout_seconds = 10\n"
    if args.budget:
        config += f"\n[session]\nmessage_memory_bytes = {args.budget}\n"
    with open(os.path.join(work, "config.toml"), "w") as f:
        f.write(config)
    # start_http drains the firewall's log: every refused body logs a line,
    # and a full pipe would stall the firewall.
    fw, url = start_http(
        [os.path.join(args.bin_dir, "mcp-firewall"), "run", "--config",
         os.path.join(work, "config.toml"), "--policy", os.path.join(work, "policy"),
         "--audit-log", os.path.join(work, "audit.jsonl"), "--listen", "127.0.0.1:0",
         "--", os.path.join(args.bin_dir, "mcp-firewall-fixture")])
    addr = url.removeprefix("http://").removesuffix("/mcp")
    host, port = addr.rsplit(":", 1)
    before = resident(fw.pid)["VmHWM"]

    head = (f"POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {CAP}\r\n\r\n")
    part = b" " * (args.kib * 1024)
    conns = []
    for _ in range(args.connections):
        s = socket.create_connection((host, int(port)))
        s.sendall(head.encode())
        conns.append(s)
    answers = {}
    step = 64 * 1024
    for s in conns:
        s.setblocking(False)
    # Send every connection's part, a piece at a time, round robin; a
    # connection the firewall answered or closed stops there.
    sent = {s: 0 for s in conns}
    while any(sent[s] < len(part) for s in conns if s not in answers):
        for s in conns:
            if s in answers or sent[s] >= len(part):
                continue
            try:
                sent[s] += s.send(part[sent[s]:sent[s] + step])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                answers[s] = "closed"
        readable, _, _ = select.select([s for s in conns if s not in answers], [], [], 0)
        for s in readable:
            answers[s] = (s.recv(64) or b"closed").decode(errors="replace")[:12]
    sent_at = time.time()
    peak_sent = resident(fw.pid)["VmHWM"]
    while time.time() - sent_at < args.wait and len(answers) < len(conns):
        readable, _, _ = select.select([s for s in conns if s not in answers], [], [], 0.2)
        for s in readable:
            try:
                answers[s] = (s.recv(64) or b"closed").decode(errors="replace")[:12]
            except OSError:
                answers[s] = "closed"
    peak = resident(fw.pid)["VmHWM"]
    counts = {}
    for s in conns:
        what = answers.get(s, "no answer")
        key = what.split(" ")[1] if what.startswith("HTTP/1.1 ") else what
        counts[key] = counts.get(key, 0) + 1
    print(f"{args.connections} connections x {args.kib} KiB of a {CAP >> 20} MiB body: "
          f"VmHWM {before / 1024:.1f} MB at start, {peak_sent / 1024:.1f} MB when all was sent, "
          f"{peak / 1024:.1f} MB after {args.wait:.0f} s; answers: {counts}")
    for s in conns:
        s.close()
    fw.terminate()
    fw.wait()


if __name__ == "__main__":
    main()
