#!/usr/bin/env bash
# bench/relay.sh: the same SMTP load against smtp-sink directly and through mxguard relaying to
# that sink, interleaved, --runs times each; prints medians and the ratios mxguard/sink and
# records them in bench/RESULTS.md. Everything listens on 127.0.0.1 only; every process this
# script starts is stopped by PID on exit. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/relay.sh [options]
  --duration S              seconds per run (default 10, at most 600)
  --concurrency N           concurrent sessions (default 50)
  --size B                  DATA bytes per message (default 4096)
  --messages-per-session K  messages per connection (default 1)
  --threads T               loadgen I/O threads (default 1)
  --runs R                  runs per target, interleaved (default 3, at most 9)
  --workers W               mxguard [server] workers (default 2)
  --guard-extra FILE        TOML appended to the generated mxguard config
  --build-dir DIR           CMake build directory (default build)
  --mxguard PATH            run this mxguard binary instead of building DIR/guard/mxguard
  --sink-only               measure smtp-sink alone and record that as the baseline
  --no-results              do not touch bench/RESULTS.md
EOF
}

duration=10 concurrency=50 size=4096 per_session=1 threads=1 runs=3 workers=2
guard_extra="" build_dir=build mxguard_override="" sink_only=0 write_results=1
command_line="bench/relay.sh${*:+$(printf ' %q' "$@")}"
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --messages-per-session) per_session=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --guard-extra) guard_extra=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --mxguard) mxguard_override=$(realpath "$2"); shift 2 ;;
    --sink-only) sink_only=1; shift ;;
    --no-results) write_results=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "relay.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in duration concurrency size per_session threads runs workers; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "relay.sh: --${v//_/-} wants a whole number" >&2; exit 2; }
done
((duration >= 1 && duration <= 600)) || { echo "relay.sh: --duration must be 1..600" >&2; exit 2; }
((runs >= 1 && runs <= 9)) || { echo "relay.sh: --runs must be 1..9" >&2; exit 2; }
[[ -z $guard_extra || -r $guard_extra ]] || { echo "relay.sh: cannot read $guard_extra" >&2; exit 2; }
[[ -z $guard_extra ]] || guard_extra=$(realpath "$guard_extra")

cd "$(dirname "$0")/.."
root=$PWD
out="$root/bench/out/relay-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

log() { printf 'relay.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- processes: started in the background, remembered by PID, stopped on any exit -------------
started_pids=()
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # run the EXIT trap on Ctrl-C too

# --- build ---------------------------------------------------------------------------------------
# The root project builds the daemon and the loadgen, without tests: a broken test tree must not
# stop a benchmark. While the root does not configure, bench/ is built alone
# (bench/CMakeLists.txt supports that) so the sink baseline still works.
loadgen="" mxguard="$root/$build_dir/guard/mxguard" guard_problem=""
log "building in $build_dir (Release, MXGUARD_BENCH=ON, MXGUARD_TESTS=OFF; logs in $out)"
if cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMXGUARD_BENCH=ON -DMXGUARD_TESTS=OFF \
  >"$out/configure.log" 2>&1; then
  cmake --build "$build_dir" -j2 --target mxguard-loadgen >"$out/build-loadgen.log" 2>&1 ||
    die "building mxguard-loadgen failed, see $out/build-loadgen.log"
  loadgen="$root/$build_dir/bench/mxguard-loadgen"
  if [[ -z $mxguard_override ]]; then
    cmake --build "$build_dir" -j2 --target mxguard >"$out/build-mxguard.log" 2>&1 ||
      guard_problem="building mxguard failed, see $out/build-mxguard.log"
  fi
else
  guard_problem="the root project does not configure, see $out/configure.log"
  log "$guard_problem; building bench/ alone in build-bench"
  { cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release &&
    cmake --build build-bench -j2; } >"$out/build-loadgen.log" 2>&1 ||
    die "building mxguard-loadgen failed, see $out/build-loadgen.log"
  loadgen="$root/build-bench/mxguard-loadgen"
fi
if [[ -n $mxguard_override ]]; then
  mxguard=$mxguard_override guard_problem=""
fi
if [[ -z $guard_problem && ! -x $mxguard ]]; then
  guard_problem="$mxguard does not exist after the build"
fi

# --- helpers -------------------------------------------------------------------------------------
# Listening ports come from below the ephemeral range (32768+ here), so neither the loadgen's nor
# mxguard's outgoing connections can take them between the check and the bind.
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

# True once host:port answers with a 2xx banner, within $2 seconds.
wait_banner() {
  local target=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    "$loadgen" --target "$target" --mode greet --messages 1 --concurrency 1 --timeout 1 \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# Clients come from 127.0.0.2, 127.0.0.3, ... (all on lo without setup), about 5 sessions per
# address: a benchmark of the relay path should not run into mxguard's per-IP session cap
# (server.max_sessions_per_ip, default 20), and real traffic comes from many addresses too.
source_count=$(((concurrency + 4) / 5))
((source_count <= 250)) || source_count=250
source_ips=$(seq -s, -f '127.0.0.%g' 2 $((source_count + 1)))

# CPU seconds (user + system, all threads) a process has used so far; 0 without one.
clk_tck=$(getconf CLK_TCK)
proc_cpu() {
  [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
  # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$clk_tck" '{ print ($12 + $13) / hz }'
}

# One loadgen run; its JSON line goes to $2.json, its human line to $2.txt and the terminal,
# and the CPU of loadgen, smtp-sink and mxguard during the run, in % of one core, to $2.cpu.
run_load() {
  local target=$1 name=$2
  local sink0 guard0 sink1 guard1 elapsed
  sink0=$(proc_cpu "$sink_pid") guard0=$(proc_cpu "$guard_pid")
  "$loadgen" --target "$target" --json --duration "$duration" --concurrency "$concurrency" \
    --size "$size" --messages-per-session "$per_session" --threads "$threads" \
    --source-ips "$source_ips" \
    >"$out/$name.json" 2>"$out/$name.txt" || true # ok == 0 exits 1; the table shows it
  printf '  %-8s %s\n' "$name" "$(cat "$out/$name.txt")" >&2
  grep -q '^{' "$out/$name.json" || die "loadgen produced no result for $name, see $out/$name.txt"
  sink1=$(proc_cpu "$sink_pid") guard1=$(proc_cpu "$guard_pid")
  elapsed=$(json_num "$out/$name.json" elapsed_s)
  awk -v l="$(json_num "$out/$name.json" cpu_s)" -v e="$elapsed" -v s0="$sink0" -v s1="$sink1" \
    -v g0="$guard0" -v g1="$guard1" \
    'BEGIN { printf "%.0f %.0f %.0f\n", 100 * l / e, 100 * (s1 - s0) / e, 100 * (g1 - g0) / e }' \
    >"$out/$name.cpu"
}

# A number from a loadgen JSON line; the keys used here are unique in it.
json_num() { sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" "$1"; }

# Median of a field over the runs of one target (files $out/<prefix>-*.json).
median() {
  local prefix=$1 key=$2 f
  for f in "$out/$prefix"-*.json; do json_num "$f" "$key"; done | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Median over runs of column $2 (1 loadgen, 2 smtp-sink, 3 mxguard) of the .cpu files.
median_cpu() {
  cat "$out/$1"-*.cpu | awk -v c="$2" '{ print $c }' | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

sum_failed() {
  local f
  for f in "$out/$1"-*.json; do json_num "$f" failed; done | awk '{ s += $1 } END { print s + 0 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- smtp-sink: the next hop, and the baseline -----------------------------------------------
sink_port=$(free_port)
sink_user=()
[[ $(id -u) -ne 0 ]] || sink_user=(-u nobody) # smtp-sink refuses to run as root without -u
sink_max=$((concurrency * 2 > 256 ? concurrency * 2 : 256))
smtp-sink "${sink_user[@]}" -m "$sink_max" "127.0.0.1:$sink_port" 1024 >"$out/smtp-sink.log" 2>&1 &
sink_pid=$!
started_pids+=("$sink_pid")
wait_banner "127.0.0.1:$sink_port" 5 || die "smtp-sink did not answer on 127.0.0.1:$sink_port"

# --- mxguard in front of the same sink -----------------------------------------------------------
guard_port="" guard_pid=""
if ((sink_only)); then
  guard_problem="not measured (--sink-only)"
elif [[ -z $guard_problem ]]; then
  guard_port=$(free_port)
  while [[ $guard_port == "$sink_port" ]]; do guard_port=$(free_port); done
  cat >"$out/mxguard.toml" <<EOF
[server]
listen = ["127.0.0.1:$guard_port"]
hostname = "mx.bench.test"
workers = $workers

[relay]
domains = ["example.org"]

[[route]]
domain = "example.org"
next_hops = ["127.0.0.1:$sink_port"]
EOF
  [[ -z $guard_extra ]] || { echo && cat "$guard_extra"; } >>"$out/mxguard.toml"
  "$mxguard" --config "$out/mxguard.toml" >"$out/mxguard.log" 2>&1 &
  guard_pid=$!
  started_pids+=("$guard_pid")
  if ! wait_banner "127.0.0.1:$guard_port" 5; then
    guard_problem="mxguard did not answer its banner on 127.0.0.1:$guard_port within 5 s"
    guard_problem+=" (config $out/mxguard.toml, log $out/mxguard.log)"
    tail -n 20 "$out/mxguard.log" >&2 || true
    guard_port=""
  fi
fi
[[ -z $guard_problem ]] || log "mxguard: $guard_problem; measuring smtp-sink direct only"

# --- runs, interleaved so drift on the machine hits both targets alike -------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "$runs x ${duration}s per target, concurrency $concurrency from $source_count addresses, size $size, nproc $(nproc)"
for i in $(seq "$runs"); do
  run_load "127.0.0.1:$sink_port" "sink-$i"
  [[ -z $guard_port ]] || run_load "127.0.0.1:$guard_port" "mxguard-$i"
done

# --- table ---------------------------------------------------------------------------------------
row() { # name prefix
  printf '| %s | %.1f | %.3f | %.3f | %s | %s%% | %s%% | %s |\n' "$1" \
    "$(median "$2" messages_per_s)" "$(median "$2" p50)" "$(median "$2" p99)" \
    "$(sum_failed "$2")" "$(median_cpu "$2" 1)" "$(median_cpu "$2" 2)" \
    "$([[ $2 == sink ]] && echo - || echo "$(median_cpu "$2" 3)%")"
}
table="| path | msg/s | p50 ms | p99 ms | failed (all runs) | cpu loadgen | cpu smtp-sink | cpu mxguard |
|---|---:|---:|---:|---:|---:|---:|---:|
$(row "smtp-sink direct" sink)"
if [[ -n $guard_port ]]; then
  table+="
$(row "mxguard → smtp-sink" mxguard)
| ratio mxguard/sink | $(ratio "$(median mxguard messages_per_s)" "$(median sink messages_per_s)") | \
$(ratio "$(median mxguard p50)" "$(median sink p50)") | \
$(ratio "$(median mxguard p99)" "$(median sink p99)") | | | | |"
else
  table+="
| mxguard → smtp-sink | $guard_problem | | | | | | |"
fi
echo
echo "Medians of $runs runs of ${duration} s, concurrency $concurrency, $size-byte messages:"
echo "$table"

# --- bench/RESULTS.md: this script's section is replaced, the rest of the file kept --------------
if ((write_results)) && { [[ -n $guard_port ]] || ((sink_only)); }; then
  results="$root/bench/RESULTS.md"
  rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  [[ -z $(git -C "$root" status --porcelain 2>/dev/null) ]] || rev+=" (uncommitted changes)"
  section="<!-- relay.sh:begin -->
## Relay: smtp-sink direct vs. mxguard → smtp-sink

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- revision: $rev
- nproc: $(nproc) (loadgen, mxguard and smtp-sink share these cores); load average before
  the runs: $load_before (anything above ~0 means other work competed with the benchmark)
- command: \`$command_line\`
- load: medians of $runs interleaved runs of $duration s, concurrency $concurrency from
  $source_count loopback addresses, $size-byte messages, $per_session per connection,
  $threads loadgen thread(s), mxguard workers $workers

$table
<!-- relay.sh:end -->"
  [[ -f $results ]] || printf '# Benchmark results\n\nEach section is rewritten by the script it names; git history keeps the earlier ones.\n' >"$results"
  if grep -q '^<!-- relay.sh:begin -->$' "$results"; then
    SECTION="$section" awk '
      /^<!-- relay.sh:begin -->$/ { print ENVIRON["SECTION"]; skip = 1; next }
      /^<!-- relay.sh:end -->$/ { skip = 0; next }
      !skip { print }' "$results" >"$results.tmp"
    mv "$results.tmp" "$results"
  else
    printf '\n%s\n' "$section" >>"$results"
  fi
  log "updated $results"
fi

if [[ -z $guard_port ]] && ((!sink_only)); then
  die "mxguard was not measured: $guard_problem"
fi
