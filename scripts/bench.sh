#!/usr/bin/env bash
# Build release and run every benchmark in one go; prints the machine and
# the numbers (docs/performance.md says how to read them).
#
#   scripts/bench.sh            # all: latency, policy micro-bench, throughput
#   ROUNDS=3 scripts/bench.sh   # repeat the latency and throughput runs
#
# Knobs passed through to the benches: BENCH_CALLS (latency rows, default
# 5000), BENCH_SECONDS (per throughput level, default 3), BENCH_POLICY
# (=allow-all for the throughput run), BENCH_MAX_CLIENTS (default 64).
# Honours CARGO_TARGET_DIR. Loopback only; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-1}"

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); kernel $(uname -r)"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --bins
# Build the bench binaries before timing anything.
cargo bench --no-run --bench stdio_latency --bench policy_eval --bench http_throughput

for r in $(seq 1 "$ROUNDS"); do
  echo; echo "== latency (round $r/$ROUNDS)"
  cargo bench --bench stdio_latency
done

echo; echo "== policy evaluation (criterion)"
cargo bench --bench policy_eval

for r in $(seq 1 "$ROUNDS"); do
  echo; echo "== throughput and memory (round $r/$ROUNDS)"
  cargo bench --bench http_throughput
done
