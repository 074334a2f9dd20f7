#!/usr/bin/env bash
# Build everything and install the pinned third-party test fixtures.
# Idempotent: safe to run again; only the package registries are contacted.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --all-targets

# Pinned npm MCP servers (@modelcontextprotocol/server-filesystem, server-everything).
npm ci --prefix fixtures/npm --no-audit --no-fund --loglevel=error

# The official MCP conformance suite and the Node 22 it needs (both pinned in
# fixtures/conformance/package.json; used by scripts/conformance.sh and tests/conformance.rs).
npm ci --prefix fixtures/conformance --no-audit --no-fund --loglevel=error

# The Python MCP SDK client used in the tests (pinned in requirements.txt).
if [ ! -x fixtures/python/.venv/bin/python ]; then
    python3 -m venv fixtures/python/.venv
fi
fixtures/python/.venv/bin/pip install --quiet --disable-pip-version-check -r fixtures/python/requirements.txt
echo "setup complete"
