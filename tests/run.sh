#!/usr/bin/env bash
# Installs what is missing, builds mxguard and runs the whole test suite:
# unit tests and integration tests against real peers (smtp-sink, swaks,
# openssl) on loopback ports the tests pick.
set -euo pipefail
cd "$(dirname "$0")/.."

ops/install-deps.sh
build_dir=${MXGUARD_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
cd "$build_dir"
ctest --output-on-failure -j"$(nproc)" --timeout 300
