#!/usr/bin/env bash
# Build everything and install the pinned third-party test fixtures.
# Idempotent: safe to run again; only the package registries are contacted.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use: ssh-keygen (approver keys: the documented
# `ssh-keygen -Y sign` route), prlimit (audit-failure tests) and chromium. Installed only
# when missing; apt-get needs root, as on CI.
missing=()
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v prlimit >/dev/null || missing+=(util-linux)
# Debian's chromium: the approval console's browser tests (tests/console.rs).
command -v chromium >/dev/null || missing+=(chromium)
# Debian's PostgreSQL: the store tests start their own throwaway cluster
# with its initdb and pg_ctl (src/testing.rs); nothing runs as a service.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

cargo build --all-targets

# Pinned npm MCP servers (@modelcontextprotocol/server-filesystem, server-everything).
npm ci --prefix fixtures/npm --no-audit --no-fund --loglevel=error

# The official MCP conformance suite and the Node 22 it needs (both pinned in
# fixtures/conformance/package.json; used by scripts/conformance.sh and tests/conformance.rs).
npm ci --prefix fixtures/conformance --no-audit --no-fund --loglevel=error

# The approval console's browser tests: a real OpenID provider (oidc-provider)
# and puppeteer-core driving chromium, both pinned in fixtures/console/package.json.
npm ci --prefix fixtures/console --no-audit --no-fund --loglevel=error

# The Python MCP SDK client used in the tests (pinned in requirements.txt).
if [ ! -x fixtures/python/.venv/bin/python ]; then
    python3 -m venv fixtures/python/.venv
fi
fixtures/python/.venv/bin/pip install --quiet --disable-pip-version-check -r fixtures/python/requirements.txt

# The client SDKs of the compatibility matrix (scripts/compat.sh, tests/compat.rs):
# TypeScript v1 and v2 (fixtures/compat/package.json) and the Python SDK 2.x
# (fixtures/compat/requirements.txt), each pinned.
npm ci --prefix fixtures/compat --no-audit --no-fund --loglevel=error
if [ ! -x fixtures/compat/.venv/bin/python ]; then
    python3 -m venv fixtures/compat/.venv
fi
fixtures/compat/.venv/bin/pip install --quiet --disable-pip-version-check -r fixtures/compat/requirements.txt
# The peer proxies scripts/bench.sh compares against (benches/peer_proxies.rs):
# the TypeScript mcp-proxy (npm) and the Python mcp-proxy (PyPI), both pinned
# in fixtures/peers. Not used by the tests.
npm ci --prefix fixtures/peers --no-audit --no-fund --loglevel=error
if [ ! -x fixtures/peers/.venv/bin/python ]; then
    python3 -m venv fixtures/peers/.venv
fi
fixtures/peers/.venv/bin/pip install --quiet --disable-pip-version-check -r fixtures/peers/requirements.txt
echo "setup complete"
