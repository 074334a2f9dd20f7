#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance,
# server mode, pinned in fixtures/conformance/package.json) against our
# conformance fixture twice per spec version: directly (the fixture's own
# Streamable HTTP server) and through the firewall (`mcp-firewall run --listen`
# with an allow-all policy in front of the same fixture over stdio).
#
# Prints a table (scenario x direct/firewall) per version and exits non-zero
# if a scenario fails that fixtures/conformance/expected-failures.txt does not
# list for that version and path. See docs/conformance.md.
#
# Environment:
#   CONFORMANCE_VERSIONS  spec versions to run (default "2025-11-25 2026-07-28")
#   FIREWALL_BIN, FIXTURE_BIN  use these binaries instead of building them
#   CONFORMANCE_OUT       keep the suite's results (checks.json per scenario) here
#   CONFORMANCE_TABLE     also write the Markdown table to this file
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE_DIR=$ROOT/fixtures/conformance
NODE=$SUITE_DIR/node_modules/node/bin/node
SUITE=$SUITE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js
EXPECTED=$SUITE_DIR/expected-failures.txt
VERSIONS=${CONFORMANCE_VERSIONS:-"2025-11-25 2026-07-28"}

if [ ! -x "$NODE" ] || [ ! -f "$SUITE" ]; then
    echo "conformance: the pinned suite is not installed; run: npm ci --prefix fixtures/conformance (scripts/setup.sh does)" >&2
    exit 2
fi

if [ -z "${FIREWALL_BIN:-}" ] || [ -z "${FIXTURE_BIN:-}" ]; then
    cargo build --quiet --bin mcp-firewall --bin mcp-firewall-conformance-fixture
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    FIREWALL_BIN=${FIREWALL_BIN:-$TARGET_DIR/debug/mcp-firewall}
    FIXTURE_BIN=${FIXTURE_BIN:-$TARGET_DIR/debug/mcp-firewall-conformance-fixture}
fi

WORK=$(mktemp -d)
OUT=${CONFORMANCE_OUT:-$WORK/results}
mkdir -p "$OUT" "$WORK/policy"
printf 'package mcp.firewall\n\nallow := true\n' >"$WORK/policy/policy.rego"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE REGEX: the first capture of REGEX (sed -E) in FILE, within 20 s.
wait_for() {
    local file=$1 regex=$2 value i
    for i in $(seq 1 200); do
        value=$(sed -nE "s#${regex}#\\1#p" "$file" | head -n1)
        if [ -n "$value" ]; then
            echo "$value"
            return 0
        fi
        sleep 0.1
    done
    echo "conformance: timed out waiting for '$regex' in $file:" >&2
    cat "$file" >&2
    return 1
}

# run_suite VERSION PATH URL: the suite's summary goes to $OUT/VERSION-PATH.txt.
run_suite() {
    local version=$1 path=$2 url=$3
    echo "conformance: $version $path: $url" >&2
    # The suite's own exit code is not the verdict (see expected-failures.txt).
    "$NODE" "$SUITE" server --url "$url" --requirements "$version" \
        --timeout 20000 -o "$OUT/$version-$path" >"$OUT/$version-$path.txt" 2>&1 || true
}

for version in $VERSIONS; do
    # Fresh processes per version: the firewall keeps one session (and one
    # upstream process) per `initialize`, bounded by max_sessions.
    "$FIXTURE_BIN" --listen 127.0.0.1:0 2>"$WORK/fixture-$version.err" &
    PIDS+=($!)
    direct_url=$(wait_for "$WORK/fixture-$version.err" '^conformance-fixture: listening on (http://[^ ]+).*$')

    "$FIREWALL_BIN" run --listen 127.0.0.1:0 --policy "$WORK/policy" \
        --audit-log "$WORK/audit-$version.jsonl" --data-dir "$WORK/data-$version" \
        --approval-wait 0 -- "$FIXTURE_BIN" 2>"$WORK/firewall-$version.err" &
    PIDS+=($!)
    firewall_url=$(wait_for "$WORK/firewall-$version.err" '^mcp-firewall: listening on (http://[^ ]+).*$')/mcp

    run_suite "$version" direct "$direct_url"
    run_suite "$version" firewall "$firewall_url"
done

python3 - "$OUT" "$EXPECTED" "${CONFORMANCE_TABLE:-}" $VERSIONS <<'PY'
import re, sys

out, expected_path, table_path, versions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

# expected-failures.txt: VERSION SCENARIO WHERE REASON..., WHERE = direct|firewall|both
expected = {}
for number, line in enumerate(open(expected_path, encoding="utf-8"), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    parts = line.split(None, 3)
    if len(parts) < 4 or parts[2] not in ("direct", "firewall", "both"):
        sys.exit(f"{expected_path}:{number}: want 'VERSION SCENARIO direct|firewall|both REASON'")
    version, scenario, where, reason = parts
    expected[(version, scenario)] = (where, reason)

def parse(path):
    """scenario -> (passed?, 'P/F' checks); plus the set of not-scored scenarios."""
    results, not_scored, section = {}, {}, None
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return results, not_scored
    for line in text.splitlines():
        if line.startswith("=== SUMMARY"):
            section = "summary"
        elif line.startswith("Not scored"):
            section = "not_scored"
        m = re.match(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed", line)
        if m and section == "summary":
            results[m.group(2)] = (m.group(1) == "✓", f"{m.group(3)}/{int(m.group(3)) + int(m.group(4))}")
        m = re.match(r"^\s+[✓✗] (\S+) \(([^)]+)\)", line)
        if m and section == "not_scored":
            not_scored[m.group(1)] = m.group(2)
    return results, not_scored

problems, stale, lines = [], [], []
for version in versions:
    direct, ns1 = parse(f"{out}/{version}-direct.txt")
    firewall, ns2 = parse(f"{out}/{version}-firewall.txt")
    not_scored = {**ns1, **ns2}
    if not direct:
        problems.append(f"{version}: no results from the direct run (see {version}-direct.txt)")
    if not firewall:
        problems.append(f"{version}: no results from the firewall run (see {version}-firewall.txt)")
    lines.append(f"\n### {version}\n")
    lines.append("| scenario | scored | direct | through firewall | expected failure |")
    lines.append("| --- | --- | --- | --- | --- |")
    counts = {"direct": 0, "firewall": 0, "total": 0}
    for scenario in list(dict.fromkeys([*direct, *firewall])):
        d, f = direct.get(scenario), firewall.get(scenario)
        where, _ = expected.get((version, scenario), ("", ""))
        def cell(r):
            return "missing" if r is None else ("pass" if r[0] else "FAIL") + f" ({r[1]})"
        counts["total"] += 1
        counts["direct"] += bool(d and d[0])
        counts["firewall"] += bool(f and f[0])
        scored = "no: " + not_scored[scenario] if scenario in not_scored else "yes"
        lines.append(f"| {scenario} | {scored} | {cell(d)} | {cell(f)} | {where or '-'} |")
        d_ok, f_ok = bool(d and d[0]), bool(f and f[0])
        if not d_ok and where not in ("direct", "both"):
            problems.append(f"{version} {scenario}: fails directly, not in expected-failures.txt")
        if not f_ok and where not in ("firewall", "both"):
            if d_ok:
                problems.append(f"{version} {scenario}: passes directly but FAILS THROUGH THE FIREWALL, not in expected-failures.txt")
            else:
                problems.append(f"{version} {scenario}: fails through the firewall, not in expected-failures.txt")
        if where and d_ok and f_ok:
            stale.append(f"{version} {scenario}: listed ({where}) but passes both ways")
        if where == "firewall" and not d_ok:
            stale.append(f"{version} {scenario}: listed as 'firewall' but fails directly too (use 'both')")
        if where in ("direct", "both") and d_ok:
            stale.append(f"{version} {scenario}: listed as '{where}' but passes directly")
    lines.append(f"\n{version}: direct {counts['direct']}/{counts['total']} pass, through the firewall {counts['firewall']}/{counts['total']} pass")

table = "\n".join(lines)
print(table)
if table_path:
    open(table_path, "w", encoding="utf-8").write(table.lstrip() + "\n")
for note in stale:
    print(f"note: stale expected failure: {note}")
if problems:
    print()
    for problem in problems:
        print(f"UNEXPECTED: {problem}")
    print(f"conformance: {len(problems)} unexpected failure(s)")
    sys.exit(1)
print("conformance: no unexpected failures")
PY
