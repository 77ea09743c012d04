#!/usr/bin/env bash
# Runs every test of the project: the Rust unit and integration tests (the integration tests
# start the real `vela` binary and talk HTTP to it), then the client interop test that drives
# the real OpenStack CLIs (python-openstackclient and python-glanceclient from PyPI) against a
# release build of the server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --release
cargo build --release --bin vela
VELA_BIN="${VELA_BIN:-${CARGO_TARGET_DIR:-target}/release/vela}" bash e2e/interop.sh
