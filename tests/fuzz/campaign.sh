#!/usr/bin/env bash
# A fuzz campaign measured in CPU time, resumable across runs: each target
# keeps its grown corpus and the CPU seconds, executions and coverage it has
# had so far under CAMPAIGN_DIR, and is run (again) until its total reaches
# the budget. CPU time, not wall time, is what counts: the fuzzers run at
# nice 19 so they can share a busy machine, and a target stopped because
# the budget is reached gets SIGINT, on which libFuzzer prints its final
# statistics. Crashes, leaks, UB and slow inputs stop the campaign with the
# input kept in <target>/artifacts.
#
# Do not pause the fuzzers (SIGSTOP) to free the machine: libFuzzer's
# -timeout is wall time, and a unit paused for longer is reported as a slow
# input. Send SIGINT to a fuzzer instead: its CPU time so far is kept and
# the next call goes on from there.
#
# Usage: tests/fuzz/campaign.sh [cpu-seconds-per-target]     (default 3600)
# Environment:
#   CAMPAIGN_DIR  where corpora and totals live (default: <repo>/build-fuzz/campaign)
#   BUILD_DIR     build directory (default: <repo>/build-fuzz)
#   FUZZ_TARGETS  the targets (default: all seven)
#   JOBS          targets run at once (default: 1)
# Prints a Markdown table of the totals at the end.
set -euo pipefail

budget=${1:-3600}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
campaign=${CAMPAIGN_DIR:-$build/campaign}
targets=${FUZZ_TARGETS:-fuzz_smtp_command fuzz_data_reader fuzz_header_rules fuzz_proxy_header fuzz_config fuzz_dns_response fuzz_zone_query}
jobs=${JOBS:-1}
ticks=$(getconf CLK_TCK)

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" -DMXGUARD_FUZZ=ON \
  -DMXGUARD_TESTS=OFF -DMXGUARD_BENCH=OFF >/dev/null
# shellcheck disable=SC2086  # a list of target names
nice -n 19 cmake --build "$build" -j"$(nproc)" --target $targets

# state file per target: "cpu_seconds executions"
total_of() { cat "$campaign/$1/total" 2>/dev/null || echo "0 0"; }

cpu_seconds_of() { # pid -> CPU seconds used so far (user + system)
  local fields
  read -r -a fields <"/proc/$1/stat" || return 1
  # utime and stime are fields 14 and 15; the command names here hold no spaces
  echo $(((fields[13] + fields[14]) / ticks))
}

# A "slow unit" or "timeout" found at nice 19 on a busy machine may be wall
# time the fuzzer spent waiting for a CPU (or paused): such an input is run
# again alone, at normal priority, and kept as a finding only if it is slow
# there too; otherwise it goes to <target>/not-reproduced/ and fuzzing goes on.
# Crashes, leaks and out-of-memory inputs always count.
real_findings() { # target dir -> prints the artifacts that stand
  local t=$1 dir=$2 f
  for f in "$dir"/artifacts/*; do
    [[ -e $f ]] || continue
    case $(basename "$f") in
      slow-unit-* | timeout-*)
        if timeout 60 "$build/tests/fuzz/$t" -timeout=10 -rss_limit_mb=2048 "$f" \
          >"$f.rerun" 2>&1; then
          mkdir -p "$dir/not-reproduced"
          mv "$f" "$f.rerun" "$dir/not-reproduced/"
          continue
        fi
        ;;
    esac
    echo "$f"
  done
}

run_target() {
  local t=$1 dir=$campaign/$1 used execs pid spent rc
  mkdir -p "$dir/corpus" "$dir/artifacts"
  [[ -n $(ls -A "$dir/corpus") ]] || cp "$here/corpus/$t/"* "$dir/corpus/"
  local dict=()
  [[ -f $here/$t.dict ]] && dict=(-dict="$here/$t.dict")
  for (( ; ; )); do
    read -r used execs < <(total_of "$t")
    if ((used >= budget)); then return 0; fi
    spent=0 rc=0
    local log
    log=$dir/log.$(date +%s)
    (cd "$dir" && exec nice -n 19 "$build/tests/fuzz/$t" -timeout=10 -report_slow_units=60 \
      -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$dir/artifacts/" corpus >"$log" 2>&1) &
    pid=$!
    # the subshell exec()s nice, which exec()s the fuzzer: $pid is the fuzzer
    local child=$pid run_execs=0
    while kill -0 "$pid" 2>/dev/null; do
      spent=$(cpu_seconds_of "$child" 2>/dev/null || echo "$spent")
      # Totals kept current, so a campaign killed outright loses little.
      run_execs=$({ tail -c 4096 "$log" | grep -ao '^#[0-9]*' | tail -1 | tr -d '#'; } 2>/dev/null ||
        true)
      echo "$((used + spent)) $((execs + ${run_execs:-0}))" >"$dir/total"
      if ((used + spent >= budget)); then
        kill -INT "$child" 2>/dev/null || true
        break
      fi
      sleep 5
    done
    wait "$pid" || rc=$?
    local final
    final=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "$((used + spent)) $((execs + ${final:-${run_execs:-0}}))" >"$dir/total"
    if [[ -n $(real_findings "$t" "$dir") ]]; then
      echo "$t: FAILED (exit $rc; see $log, inputs in $dir/artifacts)" >&2
      return 1
    fi
    # 72: SIGINT (the budget reached, or someone else's); 70 and 0 after a
    # timeout or slow unit that did not reproduce: go on.
    if [[ $rc -ne 0 && $rc -ne 72 && $rc -ne 70 ]]; then
      echo "$t: FAILED (exit $rc; see $log)" >&2
      return 1
    fi
    [[ $rc -eq 72 ]] && return 0
  done
}

failed=0
running=()
for t in $targets; do
  while ((${#running[@]} >= jobs)); do
    wait -n || failed=1
    local_running=()
    for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && local_running+=("$p"); done
    running=("${local_running[@]}")
  done
  run_target "$t" &
  running+=($!)
done
for p in "${running[@]}"; do wait "$p" || failed=1; done

printf '\n| target | CPU seconds | executions | corpus | coverage (cov/ft) | crashes |\n'
printf '|---|---:|---:|---:|---|---:|\n'
for t in $targets; do
  dir=$campaign/$t
  read -r used execs < <(total_of "$t")
  last=$(ls -t "$dir"/log.* 2>/dev/null | head -1)
  cov=$(grep -ho 'cov: [0-9]* ft: [0-9]*' "$last" 2>/dev/null | tail -1 | sed 's/cov: \([0-9]*\) ft: \([0-9]*\)/\1 \/ \2/')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$used" "$execs" \
    "$(find "$dir/corpus" -type f 2>/dev/null | wc -l)" "${cov:-?}" \
    "$(find "$dir/artifacts" -type f 2>/dev/null | wc -l)"
done
exit "$failed"
