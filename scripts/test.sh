#!/usr/bin/env bash
# Runs every test of the project:
#   1. Rust: unit tests and end-to-end suites of every crate (needs PostgreSQL, see README);
#   2. tests/node: the official socket.io-client 4.x against the real binary;
#   3. tests/browser: headless Chromium (Debian's) driving the demo page.
# Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --all-targets

echo "== JavaScript clients (socket.io-client, headless Chromium)"
# `cargo test` built target/debug/chorus for the integration tests; a separate `cargo build`
# would recompile crates whose features differ without dev-dependencies.
[ -x target/debug/chorus ] || cargo build --bin chorus
(
  cd tests
  npm ci --no-audit --no-fund --loglevel=error
  CHORUS_BIN="$PWD/../target/debug/chorus" npm test
)
