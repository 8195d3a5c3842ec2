#!/usr/bin/env bash
# Builds mxguard and runs it on its embedded default (no Redis) with the
# example configuration: SMTP on 127.0.0.1:2525, relaying example.org to a
# demo next hop on 127.0.0.1:10025 — Postfix's smtp-sink, started here, which
# accepts every message and throws it away. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

ops/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mxguard

sink_args=()
[ "$(id -u)" -eq 0 ] && sink_args=(-u nobody)
/usr/sbin/smtp-sink "${sink_args[@]}" 127.0.0.1:10025 256 &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null || true' EXIT

echo "demo: smtp-sink (next hop) on 127.0.0.1:10025, pid $sink_pid"
echo "demo: mxguard on 127.0.0.1:2525 — try: swaks --server 127.0.0.1:2525 --to postmaster@example.org"
build/guard/mxguard --config ops/mxguard.example.toml
