#!/usr/bin/env bash
# Every performance figure of docs/performance.md in one run, then a table
# of measured vs target (issue 11's rows). Release build; loopback only.
#
#   scripts/bench.sh                 # all rows (~6 minutes on 2 cores)
#   QUICK=1 scripts/bench.sh         # fewer calls and shorter levels
#
# Needs the set-up command first (the npm reference server, the Python
# httpx client, the peer proxies in fixtures/peers). Knobs passed through:
# BENCH_CALLS, BENCH_SECONDS, BENCH_PEER_SESSIONS, BENCH_PEERS.
# Honours CARGO_TARGET_DIR. Logs of each step are kept in $BENCH_OUT
# (default: a temp dir, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${BENCH_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
if [ -n "${QUICK:-}" ]; then
    export BENCH_CALLS="${BENCH_CALLS:-1000}" BENCH_SECONDS="${BENCH_SECONDS:-2}"
fi
TARGET="${CARGO_TARGET_DIR:-target}"

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee "$OUT/machine.log"
echo "== nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); kernel $(uname -r)" | tee -a "$OUT/machine.log"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.log"

cargo build --release --bins
cargo bench --no-run --bench stdio_latency --bench policy_eval --bench http_throughput --bench peer_proxies
# `cargo bench` relinks the binaries the benches start. Whether their
# start-up code is gathered first (build.rs, link/text-order.txt): the
# idle RSS row depends on it.
python3 scripts/text_order.py check --bin-dir "$TARGET/release" | tee "$OUT/text-order.log"

echo; echo "== one decision (policy_eval)"
cargo bench --bench policy_eval -- decision/ 2>&1 | tee "$OUT/policy.log"

echo; echo "== sequential latency, stdio and HTTP (stdio_latency)"
cargo bench --bench stdio_latency 2>&1 | tee "$OUT/latency.log"

echo; echo "== sequential latency from httpx (scripts/http_latency.py)"
fixtures/python/.venv/bin/python scripts/http_latency.py \
    --firewall "$TARGET/release/mcp-firewall" --fixture "$TARGET/release/mcp-firewall-fixture" \
    --calls "${BENCH_CALLS:-2000}" 2>&1 | tee "$OUT/httpx.log"

echo; echo "== 64 sessions, fixture upstream, fsync never (http_throughput)"
BENCH_LEVELS=64 cargo bench --bench http_throughput 2>&1 | tee "$OUT/throughput64.log"
echo; echo "== no firewall: 64 fixture processes called directly over stdio (http_throughput)"
BENCH_LEVELS=64 BENCH_DIRECT=1 cargo bench --bench http_throughput 2>&1 | tee "$OUT/direct64.log"
echo; echo "== the same with --shared: one fixture process for all 64 sessions (http_throughput)"
BENCH_LEVELS=64 BENCH_SHARED=1 cargo bench --bench http_throughput 2>&1 | tee "$OUT/throughput64-shared.log"

echo; echo "== 32 concurrent calls, fsync never vs always in turns (http_throughput)"
BENCH_LEVELS=32 BENCH_FSYNC=never,always BENCH_SECONDS="$(( ${BENCH_SECONDS:-3} * 2 ))" \
    cargo bench --bench http_throughput 2>&1 | tee "$OUT/fsync32.log"

echo; echo "== group commit: 32 calls in flight in one stdio session (scripts/fsync_burst.py)"
python3 scripts/fsync_burst.py --firewall "$TARGET/release/mcp-firewall" \
    --fixture "$TARGET/release/mcp-firewall-fixture" 2>&1 | tee "$OUT/fsync-burst.log"

echo; echo "== against the peer proxies, npm reference server upstream (peer_proxies)"
cargo bench --bench peer_proxies 2>&1 | tee "$OUT/peers.log"

echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.log"
echo
python3 scripts/bench_summary.py "$OUT"
echo "(logs in $OUT)"
