#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for a bounded time on a scratch
# copy of its seed corpus (tests/fuzz/corpus/<target>/ is never written to).
# Fails if any target crashes, leaks, hits UB, times out on an input or
# cannot run at all; the scratch directory with the crashing inputs is kept
# and named.
#
# Usage: tests/fuzz/run.sh [seconds-per-target]        (default 60)
# Environment:
#   BUILD_DIR     build directory (default: <repo>/build-fuzz)
#   FUZZ_TARGETS  the targets to run (default: all seven)
#   FUZZ_ARGS     extra libFuzzer flags, e.g. "-jobs=2 -workers=2"
#   KEEP_SCRATCH  1 = keep the scratch directory (grown corpora) on success
set -euo pipefail

seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-fuzz_smtp_command fuzz_data_reader fuzz_header_rules fuzz_proxy_header fuzz_config fuzz_dns_response fuzz_zone_query}

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" -DMXGUARD_FUZZ=ON \
  -DMXGUARD_TESTS=OFF -DMXGUARD_BENCH=OFF >/dev/null
# shellcheck disable=SC2086  # a list of target names
cmake --build "$build" -j"$(nproc)" --target $targets

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mxguard-fuzz.XXXXXX")
failed=()
printf '\n%-20s %8s %14s %10s  %s\n' target seconds executions corpus result
for t in $targets; do
  work=$scratch/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here/corpus/$t/"* "$work/corpus/"
  dict=()
  [[ -f $here/$t.dict ]] && dict=(-dict="$here/$t.dict")
  rc=0
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  (cd "$work" && "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$work/artifacts/" ${FUZZ_ARGS:-} corpus >"$work/log" 2>&1) || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  entries=$(find "$work/corpus" -type f | wc -l)
  result=ok
  if [[ $rc -ne 0 || -n $(ls -A "$work/artifacts") ]]; then
    result="FAILED (exit $rc; see $work/log, inputs in $work/artifacts)"
    failed+=("$t")
  fi
  printf '%-20s %8s %14s %10s  %s\n' "$t" "$seconds" "${execs:-?}" "$entries" "$result"
done

if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]} (scratch kept: $scratch)" >&2
  exit 1
fi
if [[ ${KEEP_SCRATCH:-0} == 1 ]]; then
  echo "scratch kept: $scratch"
else
  rm -rf "$scratch"
fi
