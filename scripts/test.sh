#!/usr/bin/env bash
# The test command: the whole suite, as CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo run --quiet --bin mcp-firewall -- policy test policies
