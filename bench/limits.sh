#!/usr/bin/env bash
# bench/limits.sh: rate-limit checks per second and the latency a check adds,
# embedded store vs a local redis-server (pipelined through one connection),
# 3 runs each; medians into bench/RESULTS.md. Loopback only; every process
# started here is stopped by PID on exit.
#   --build-dir DIR   CMake build directory (default build-bench)
#   --no-results      do not touch bench/RESULTS.md
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=build-bench
write_results=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    --no-results) write_results=0; shift ;;
    *) echo "usage: bench/limits.sh [--build-dir DIR] [--no-results]" >&2; exit 2 ;;
  esac
done
cd "$root"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMXGUARD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target mxguard-limits-bench >/dev/null
bench=$build_dir/bench/mxguard-limits-bench

port=$((20000 + RANDOM % 10000))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

run() { "$bench" --checks 200000 --seconds 10 --inflight "$2" $1 | tail -1; }
median() { sort -n | sed -n '2p'; }
declare -A rate p50 p99
for mode in embedded redis1 redis32; do
  args=""; inflight=32
  [[ $mode == redis* ]] && args="--redis redis://127.0.0.1:$port/0"
  [[ $mode == redis1 ]] && inflight=1
  out=$(for _ in 1 2 3; do run "$args" "$inflight"; done)
  rate[$mode]=$(grep -o '"per_second":[0-9.]*' <<<"$out" | cut -d: -f2 | median)
  p50[$mode]=$(grep -o '"p50_us":[0-9.]*' <<<"$out" | cut -d: -f2 | median)
  p99[$mode]=$(grep -o '"p99_us":[0-9.]*' <<<"$out" | cut -d: -f2 | median)
done

table=$(cat <<EOT
| store | checks in flight | checks/s | p50 µs | p99 µs |
|---|---:|---:|---:|---:|
| embedded | 32 | ${rate[embedded]} | ${p50[embedded]} | ${p99[embedded]} |
| Redis, one at a time | 1 | ${rate[redis1]} | ${p50[redis1]} | ${p99[redis1]} |
| Redis, pipelined | 32 | ${rate[redis32]} | ${p50[redis32]} | ${p99[redis32]} |
EOT
)
echo "$table"
[[ $write_results == 1 ]] || exit 0
section=$(cat <<EOT
<!-- limits.sh:begin -->
## Rate-limit checks: embedded store vs Redis

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision: $(git rev-parse --short HEAD 2>/dev/null || echo none); nproc: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)
- command: \`bench/limits.sh\` (redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on loopback, no persistence)
- load: one thread, one GCRA check per call on 10,000 client keys, medians of 3 runs of up to 200,000 checks / 10 s;
  the p50/p99 of "Redis, one at a time" is what a Redis check adds to a session

$table
<!-- limits.sh:end -->
EOT
)
results=bench/RESULTS.md
if grep -q '<!-- limits.sh:begin -->' "$results"; then
  python3 - "$results" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'<!-- limits.sh:begin -->.*?<!-- limits.sh:end -->', lambda m: section, text, flags=re.S)
open(path, 'w').write(text)
PY
else
  printf '\n%s\n' "$section" >>"$results"
fi
echo "limits.sh: updated $results"
