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
UPSTREAMS=${CONFORMANCE_UPSTREAMS:-"fixture everything"}
EVERYTHING=$ROOT/fixtures/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js

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

# run_suite UPSTREAM VERSION PATH URL: the suite's summary goes to
# $OUT/UPSTREAM-VERSION-PATH.txt.
run_suite() {
    local upstream=$1 version=$2 path=$3 url=$4
    echo "conformance: $upstream $version $path: $url" >&2
    # The suite's own exit code is not the verdict (see expected-failures.txt).
    "$NODE" "$SUITE" server --url "$url" --requirements "$version" \
        --timeout 20000 -o "$OUT/$upstream-$version-$path" >"$OUT/$upstream-$version-$path.txt" 2>&1 || true
}

# start_firewall NAME ARGS...: a listening firewall with an allow-all policy;
# sets URL to its /mcp URL. (Not run in $(...): the firewall would hold the
# substitution's pipe open, and its pid would be lost with the subshell.)
start_firewall() {
    local name=$1
    shift
    "$FIREWALL_BIN" run --listen 127.0.0.1:0 --policy "$WORK/policy" \
        --audit-log "$WORK/audit-$name.jsonl" --data-dir "$WORK/data-$name" \
        --approval-wait 0 "$@" </dev/null >/dev/null 2>"$WORK/firewall-$name.err" &
    PIDS+=($!)
    URL="$(wait_for "$WORK/firewall-$name.err" '^mcp-firewall: listening on (http://[^ ]+).*$')/mcp"
}

for upstream in $UPSTREAMS; do
for version in $VERSIONS; do
    # Fresh processes per version: the firewall keeps one session (and one
    # upstream process) per `initialize`, bounded by max_sessions.
    case $upstream in
    fixture)
        "$FIXTURE_BIN" --listen 127.0.0.1:0 </dev/null >/dev/null 2>"$WORK/fixture-$version.err" &
        PIDS+=($!)
        direct_url=$(wait_for "$WORK/fixture-$version.err" '^conformance-fixture: listening on (http://[^ ]+).*$')
        start_firewall "fixture-$version" -- "$FIXTURE_BIN"
        firewall_url=$URL
        run_suite "$upstream" "$version" direct "$direct_url"
        run_suite "$upstream" "$version" firewall "$firewall_url"
        ;;
    everything)
        mkdir -p "$WORK/inner-$version"
        # The pinned npm reference server, which this project did not write:
        # direct over its own Streamable HTTP; through the firewall with it
        # as a stdio upstream, as a Streamable HTTP upstream, and chained
        # (HTTP firewall -> stdio firewall -> stdio server).
        if [ ! -f "$EVERYTHING" ]; then
            echo "conformance: $EVERYTHING is missing; run scripts/setup.sh" >&2
            exit 2
        fi
        node "$ROOT/fixtures/conformance/everything-loopback.mjs" </dev/null >/dev/null 2>"$WORK/everything-$version.err" &
        PIDS+=($!)
        direct_url=$(wait_for "$WORK/everything-$version.err" '^everything: listening on (http://[^ ]+).*$')
        start_firewall "everything-stdio-$version" -- node "$EVERYTHING" stdio
        stdio_url=$URL
        printf '[[upstream]]\nname = "everything"\nurl = "%s"\n' "$direct_url" >"$WORK/http-upstream-$version.toml"
        start_firewall "everything-http-$version" --config "$WORK/http-upstream-$version.toml"
        http_url=$URL
        # One inner firewall per outer session, each with its own audit log
        # (a log has one writer at a time) and data dir.
        start_firewall "everything-chained-$version" -- sh -c \
            'exec "$0" run --policy "$1" --audit-log "$2/inner-$$.jsonl" --data-dir "$2/data-$$" --approval-wait 0 -- node "$3" stdio' \
            "$FIREWALL_BIN" "$WORK/policy" "$WORK/inner-$version" "$EVERYTHING"
        chained_url=$URL
        run_suite "$upstream" "$version" direct "$direct_url"
        run_suite "$upstream" "$version" firewall-stdio "$stdio_url"
        run_suite "$upstream" "$version" firewall-http "$http_url"
        run_suite "$upstream" "$version" chained "$chained_url"
        ;;
    *)
        echo "conformance: unknown upstream '$upstream' (fixture, everything)" >&2
        exit 2
        ;;
    esac
done
done

python3 - "$OUT" "$EXPECTED" "${CONFORMANCE_TABLE:-}" "$UPSTREAMS" $VERSIONS <<'PY'
import os, re, sys

out, expected_path, table_path, upstreams, versions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5:]

# expected-failures.txt: [UPSTREAM] VERSION SCENARIO WHERE REASON...,
# UPSTREAM = fixture (default) | everything, WHERE = direct|firewall|both
expected = {}
for number, line in enumerate(open(expected_path, encoding="utf-8"), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    upstream = "fixture"
    if not re.match(r"^\d{4}-\d{2}-\d{2} ", line):
        upstream, line = line.split(None, 1)
    parts = line.split(None, 3)
    if len(parts) < 4 or parts[2] not in ("direct", "firewall", "both"):
        sys.exit(f"{expected_path}:{number}: want '[UPSTREAM] VERSION SCENARIO direct|firewall|both REASON'")
    version, scenario, where, reason = parts
    expected[(upstream, version, scenario)] = (where, reason)

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
for upstream in upstreams:
  for version in versions:
    prefix = f"{out}/{upstream}-{version}-"
    paths = sorted(f[len(os.path.basename(prefix)):-4] for f in os.listdir(out)
                   if f.startswith(os.path.basename(prefix)) and f.endswith(".txt"))
    paths = [p for p in paths if p != "direct"]
    direct, ns = parse(f"{prefix}direct.txt")
    via = {}
    for path in paths:
        via[path], more = parse(f"{prefix}{path}.txt")
        ns.update(more)
    not_scored = ns
    name = f"{upstream} {version}"
    if not direct:
        problems.append(f"{name}: no results from the direct run (see {upstream}-{version}-direct.txt)")
    for path in paths:
        if not via[path]:
            problems.append(f"{name}: no results through {path} (see {upstream}-{version}-{path}.txt)")
    lines.append(f"\n### {upstream} ({version})\n")
    lines.append("| scenario | scored | direct | " + " | ".join(f"through {p}" for p in paths) + " | expected failure |")
    lines.append("| --- | --- | --- | " + " | ".join("---" for _ in paths) + " | --- |")
    counts = {"direct": 0, "total": 0, **{p: 0 for p in paths}}
    scenarios = list(dict.fromkeys([*direct, *[s for p in paths for s in via[p]]]))
    for scenario in scenarios:
        d = direct.get(scenario)
        where, _ = expected.get((upstream, version, scenario), ("", ""))
        def cell(r):
            return "missing" if r is None else ("pass" if r[0] else "FAIL") + f" ({r[1]})"
        counts["total"] += 1
        counts["direct"] += bool(d and d[0])
        d_ok = bool(d and d[0])
        f_all = True
        for path in paths:
            f = via[path].get(scenario)
            f_ok = bool(f and f[0])
            counts[path] += f_ok
            f_all = f_all and f_ok
            if not f_ok and where not in ("firewall", "both"):
                if d_ok:
                    problems.append(f"{name} {scenario}: passes directly but FAILS THROUGH {path.upper()}, not in expected-failures.txt")
                else:
                    problems.append(f"{name} {scenario}: fails through {path}, not in expected-failures.txt")
        scored = "no: " + not_scored[scenario] if scenario in not_scored else "yes"
        lines.append(f"| {scenario} | {scored} | {cell(d)} | " + " | ".join(cell(via[p].get(scenario)) for p in paths) + f" | {where or '-'} |")
        if not d_ok and where not in ("direct", "both"):
            problems.append(f"{name} {scenario}: fails directly, not in expected-failures.txt")
        if where and d_ok and f_all:
            stale.append(f"{name} {scenario}: listed ({where}) but passes every way")
        if where == "firewall" and not d_ok:
            stale.append(f"{name} {scenario}: listed as 'firewall' but fails directly too (use 'both')")
        if where in ("direct", "both") and d_ok:
            stale.append(f"{name} {scenario}: listed as '{where}' but passes directly")
    summary = ", ".join(f"through {p} {counts[p]}/{counts['total']} pass" for p in paths)
    lines.append(f"\n{name}: direct {counts['direct']}/{counts['total']} pass, {summary}")

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
