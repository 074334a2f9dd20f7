#!/usr/bin/env python3
"""Read the logs scripts/bench.sh wrote and print issue 11's table:
each row's measured figure next to its target. Prints; asserts nothing.

  python3 scripts/bench_summary.py LOG_DIR
"""

import re
import sys
from pathlib import Path


def read(out, name):
    path = out / name
    return path.read_text(errors="replace") if path.exists() else ""


def num(pattern, text, group=1):
    m = re.search(pattern, text, re.M)
    return float(m.group(group).replace(",", "")) if m else None


def fmt(value, unit, sign=False):
    if value is None:
        return "not measured"
    return f"{value:+.2f} {unit}" if sign else f"{value:.2f} {unit}"


def main():
    out = Path(sys.argv[1])
    policy = read(out, "policy.log")
    latency = read(out, "latency.log")
    httpx = read(out, "httpx.log")
    t64 = read(out, "throughput64.log")
    fsync32 = read(out, "fsync32.log")
    peers = read(out, "peers.log")

    rows = []
    decision = num(r"build\+evaluate\+verdict, policies/, echo\s+p50\s+([\d.]+) µs", policy)
    rows.append(("one decision, shipped library (p50)", fmt(decision, "µs"), "<= 20 µs",
                 decision is not None and decision <= 20))

    # "firewall, policies/, audit fsync never" then its "added over direct" line.
    m = re.search(r"firewall, policies/, audit fsync never.*\n\s+added over direct: p50\s+([+-][\d.]+) µs\s+p99\s+([+-][\d.]+) µs", latency)
    added50 = float(m.group(1)) / 1000 if m else None
    added99 = float(m.group(2)) / 1000 if m else None
    rows.append(("added per allowed call, stdio, library + audit, p50", fmt(added50, "ms", True), "<= 0.15 ms",
                 added50 is not None and added50 <= 0.15))
    rows.append(("  the same, p99", fmt(added99, "ms", True), "<= 0.5 ms", added99 is not None and added99 <= 0.5))
    relay = num(r"bare relay.*\n\s+added over direct: p50\s+([+-][\d.]+) µs", latency)
    if relay is not None:
        rows.append(("  floor: a bare relay (copies bytes), added p50", fmt(relay / 1000, "ms", True),
                     "(no target)", None))

    burst = num(r"added over fsync never, 32 in flight: p50\s+([+-][\d.]+) µs", latency)
    rows.append(("fsync always, 32 calls in flight in one stdio session, added p50 over never",
                 fmt(burst / 1000 if burst is not None else None, "ms", True), "<= 0.5 ms",
                 burst is not None and burst <= 500))
    p50_never = num(r"^fsync never\s+32\s+[\d.]+\s+([\d.]+)", fsync32)
    p50_always = num(r"^fsync always\s+32\s+[\d.]+\s+([\d.]+)", fsync32)
    fsync_added = (p50_always - p50_never) / 1000 if p50_never and p50_always else None
    rows.append(("fsync always at 32 HTTP sessions, added p50 over fsync never", fmt(fsync_added, "ms", True),
                 "<= 0.5 ms", fsync_added is not None and fsync_added <= 0.5))

    burst_log = read(out, "fsync-burst.log")
    never_rate = num(r"fsync never\s+\d+ calls\s+([\d.]+) calls/s", burst_log)
    always = re.search(r"fsync always\s+\d+ calls\s+([\d.]+) calls/s\s+\((\d+) fsyncs for (\d+) records\)", burst_log)
    if never_rate is not None and always:
        rate, syncs, records = always.groups()
        rows.append(("  32 in flight, one stdio session: calls/s fsync never / always (records per fsync)",
                     f"{never_rate:.0f} / {rate} ({int(records) / int(syncs):.1f})", "(no target)", None))

    http_added = num(r"HTTP over stdio\s+p50\s+([+-][\d.]+) ms", httpx)
    rows.append(("sequential call over Streamable HTTP from httpx, added over stdio (p50)", fmt(http_added, "ms", True),
                 "<= 0.2 ms", http_added is not None and http_added <= 0.2))
    beyond = num(r"beyond a bare round trip\s+p50\s+([+-][\d.]+) ms", httpx)
    if beyond is not None:
        rows.append(("  the same, less a bare GET /healthz round trip (httpx's own cost)", fmt(beyond, "ms", True),
                     "(no target)", None))
    lean = num(r"from http.client\s+p50\s+([+-][\d.]+) ms", httpx)
    if lean is not None:
        rows.append(("  the same from Python's http.client (a leaner client)", fmt(lean, "ms", True),
                     "(no target)", None))

    rate64 = num(r"^\s+64\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", t64)
    p99_64 = num(r"^\s+64\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", t64, 3)
    rows.append(("Streamable HTTP, 64 sessions, fixture, library + audit: calls/s",
                 fmt(rate64, "calls/s"), ">= 10,000", rate64 is not None and rate64 >= 10000))
    rows.append(("  the same, p99", fmt(p99_64 / 1000 if p99_64 else None, "ms"), "<= 5 ms",
                 p99_64 is not None and p99_64 <= 5000))
    cpu64 = num(r"^\s+64\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", t64)
    if cpu64 is not None:
        rows.append(("  the firewall's CPU per call at that level (all its threads)",
                     fmt(cpu64, "µs"), "(no target)", None))
    direct64 = read(out, "direct64.log")
    direct_rate = num(r"^\s+64\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", direct64)
    if direct_rate is not None:
        rows.append(("  ceiling: 64 fixture processes called directly over stdio, no firewall",
                     fmt(direct_rate, "calls/s"), "(no target)", None))
    shared64 = read(out, "throughput64-shared.log")
    shared_rate = num(r"^\s+64\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", shared64)
    shared_p99 = num(r"^\s+64\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", shared64, 3)
    if shared_rate is not None:
        rows.append(("  the same with --shared (one fixture process): calls/s, p99",
                     f"{shared_rate:,.0f} calls/s, {shared_p99 / 1000:.1f} ms", "(no target)", None))

    for level in (1, 8, 64):
        m = re.search(rf"^{level}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+),\s+(\S+)$", peers, re.M)
        if m:
            fw, shared, ts, py, ratio, shared_ratio = m.groups()
            faster = lambda r: r.endswith("x") and float(r[:-1]) > 1.0
            rows.append((f"calls/s at {level} sessions, server-everything: firewall / shared / ts / python",
                         f"{fw} / {shared} / {ts} / {py} ({ratio}, {shared_ratio})", "faster than both",
                         faster(ratio) or faster(shared_ratio)))
        else:
            rows.append((f"calls/s at {level} sessions vs peers", "not measured", "faster than both", False))

    idle = num(r"HTTP, no session: ([\d.]+) MB", t64)
    spawn = num(r"spawn to initialize answer .*median ([\d.]+) ms", t64)
    rows.append(("idle RSS (HTTP, no session)", fmt(idle, "MB"), "<= 15 MB", idle is not None and idle <= 15))
    order = read(out, "text-order.log").strip()
    if order:
        rows.append(("  " + order.splitlines()[0].split(" are in ")[0], "", "", None))
    rows.append(("spawn to initialize answer (stdio)", fmt(spawn, "ms"), "<= 20 ms", spawn is not None and spawn <= 20))

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<28} {'target':<18} met")
    for name, measured, target, met in rows:
        verdict = "-" if met is None else "yes" if met else "no"
        print(f"{name:<{width}}  {measured:<28} {target:<18} {verdict}")


if __name__ == "__main__":
    main()
