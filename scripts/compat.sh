#!/usr/bin/env bash
# The compatibility matrix (docs/compatibility.md): real client SDKs (Python
# 2.x, TypeScript v1 and v2, pinned in fixtures/compat) x stdio / Streamable
# HTTP x legacy / auto negotiation x operation, against the pinned npm
# server-everything, direct and through the firewall. Exits 1 on a difference
# fixtures/compat/expected-differences.txt does not explain.
#
# Environment:
#   FIREWALL_BIN     use this binary instead of building it
#   COMPAT_OUT       write the Markdown (default: print only; the docs copy is
#                    refreshed with COMPAT_OUT=docs/compatibility.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=fixtures/compat/.venv/bin/python
if [ ! -x "$PYTHON" ] || [ ! -d fixtures/compat/node_modules/@modelcontextprotocol/client ]; then
    echo "compat: the pinned client SDKs are not installed; run scripts/setup.sh" >&2
    exit 2
fi
if [ -z "${FIREWALL_BIN:-}" ]; then
    cargo build --quiet --bin mcp-firewall
    FIREWALL_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/mcp-firewall
fi
exec python3 fixtures/compat/matrix.py --firewall "$FIREWALL_BIN" --python "$PYTHON" ${COMPAT_OUT:+--out "$COMPAT_OUT"}
