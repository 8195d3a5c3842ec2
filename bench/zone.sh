#!/usr/bin/env bash
# bench/zone.sh: DNSBL queries per second answered over UDP on loopback by mxguard's zone
# responder (bench/zone_server.cpp hosting mxguard::dnsbl::zone_responder) and by rbldnsd serving
# rbldnsd_export() of the same list, interleaved, --runs times each; medians, ratios and the
# servers' CPU per query into bench/RESULTS.md. The list: --listed /32s from 10.1.0.0 plus
# 10.2.0.0/16; the loadgen asks half listed, half unlisted (10.3.0.0 upward). Every process this
# script starts is stopped by PID on exit. See bench/README.md.
#   --duration S      seconds per run (default 10, at most 120)
#   --runs R          runs per server (default 3, at most 9)
#   --inflight N      queries outstanding (default 64)
#   --listed N        listed /32 entries (default 10000)
#   --build-dir DIR   CMake build directory (default build-bench)
#   --no-results      do not touch bench/RESULTS.md
# Environment: JOBS (build parallelism, default 1: the machine is shared).
set -euo pipefail
duration=10 runs=3 inflight=64 listed=10000 build_dir=build-bench write_results=1
command_line="bench/zone.sh${*:+$(printf ' %q' "$@")}"
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --listed) listed=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --no-results) write_results=0; shift ;;
    *) sed -n '8,14p' "$0" >&2; exit 2 ;;
  esac
done
for v in duration runs inflight listed; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "zone.sh: --$v wants a whole number" >&2; exit 2; }
done
((duration >= 1 && duration <= 120 && runs >= 1 && runs <= 9 && listed >= 1 && listed <= 60000)) ||
  { echo "zone.sh: --duration 1..120, --runs 1..9, --listed 1..60000" >&2; exit 2; }
command -v rbldnsd >/dev/null || { echo "zone.sh: rbldnsd is not installed" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf 'zone.sh: %s\n' "$*" >&2; }
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMXGUARD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j"${JOBS:-1}" --target mxguard-zone-server mxguard-dns-loadgen >/dev/null
server_bin=$build_dir/bench/mxguard-zone-server
loadgen=$build_dir/bench/mxguard-dns-loadgen

work=$(mktemp -d /tmp/mxgzone.XXXXXX)
chmod 755 "$work" # rbldnsd drops to nobody and reads its file there
pids=()
stop_pid() {
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  for ((i = 0; i < listed; i++)); do echo "10.1.$((i / 256)).$((i % 256)) listed by the zone benchmark"; done
  echo "10.2.0.0/16 listed range"
} >"$work/list.txt"
mx_port=$((20000 + RANDOM % 10000)) rbl_port=$((mx_port + 1))
"$server_bin" --zone bench.bl --listen "127.0.0.1:$mx_port" --list "$work/list.txt" \
  --export "$work/rbl.txt" >"$work/mxguard.log" 2>&1 &
mx_pid=$!
pids+=("$mx_pid")
for _ in $(seq 50); do [[ -s $work/rbl.txt ]] && grep -q ready "$work/mxguard.log" && break; sleep 0.1; done
grep -q ready "$work/mxguard.log" || { cat "$work/mxguard.log" >&2; log "mxguard-zone-server did not start"; exit 1; }
chmod 644 "$work/rbl.txt"
rbl_user=()
[[ $(id -u) -eq 0 ]] && rbl_user=(-u nobody)
rbldnsd -n -q -b "127.0.0.1/$rbl_port" -w "$work" "${rbl_user[@]}" bench.bl:combined:rbl.txt \
  >"$work/rbldnsd.log" 2>&1 &
rbl_pid=$!
pids+=("$rbl_pid")
sleep 0.5
kill -0 "$rbl_pid" 2>/dev/null || { cat "$work/rbldnsd.log" >&2; log "rbldnsd did not start"; exit 1; }

clk_tck=$(getconf CLK_TCK)
proc_cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$clk_tck" '{ print ($12 + $13) / hz }'; }
json() { grep -o "\"$2\":[0-9.]*" <<<"$1" | cut -d: -f2; }
median() { grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A qps p50 p99 cpu_us bad
for name in mxguard rbldnsd; do qps[$name]="" p50[$name]="" p99[$name]="" cpu_us[$name]="" bad[$name]=0; done
for ((run = 1; run <= runs; run++)); do
  for name in mxguard rbldnsd; do
    if [[ $name == mxguard ]]; then port=$mx_port pid=$mx_pid; else port=$rbl_port pid=$rbl_pid; fi
    c0=$(proc_cpu "$pid")
    out=$("$loadgen" --target "127.0.0.1:$port" --zone bench.bl --duration "$duration" \
      --inflight "$inflight" --listed-count "$listed")
    c1=$(proc_cpu "$pid")
    log "run $run $name: $out"
    answered=$(json "$out" answered)
    qps[$name]+="$(json "$out" queries_per_s)"$'\n'
    p50[$name]+="$(json "$out" p50_us)"$'\n'
    p99[$name]+="$(json "$out" p99_us)"$'\n'
    cpu_us[$name]+="$(awk -v a="$c0" -v b="$c1" -v n="$answered" 'BEGIN { printf "%.2f", n ? (b - a) * 1e6 / n : 0 }')"$'\n'
    bad[$name]=$((bad[$name] + $(json "$out" wrong) + $(json "$out" timeouts)))
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

row() {
  printf '| %s | %s | %s | %s | %s | %s |\n' "$2" "$(median <<<"${qps[$1]}")" \
    "$(median <<<"${p50[$1]}")" "$(median <<<"${p99[$1]}")" "$(median <<<"${cpu_us[$1]}")" "${bad[$1]}"
}
ratio() { awk -v a="$(median <<<"$1")" -v b="$(median <<<"$2")" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
table=$(cat <<EOT
| server | queries/s | p50 µs | p99 µs | server CPU µs/query | wrong + timeouts (all runs) |
|---|---:|---:|---:|---:|---:|
$(row mxguard "mxguard zone_responder")
$(row rbldnsd "rbldnsd $(dpkg-query -W -f='${Version}' rbldnsd 2>/dev/null || echo '?')")

Ratios mxguard/rbldnsd: queries/s $(ratio "${qps[mxguard]}" "${qps[rbldnsd]}"), server CPU per query $(ratio "${cpu_us[mxguard]}" "${cpu_us[rbldnsd]}") (above 1: mxguard spends more).
EOT
)
echo "$table"
((write_results)) || exit 0

rev=$(git rev-parse --short HEAD 2>/dev/null || echo none)
[[ -z $(git status --porcelain -- dnsbl bench 2>/dev/null) ]] || rev="$rev (uncommitted changes)"
section=$(cat <<EOT
<!-- zone.sh:begin -->
## DNSBL zone: mxguard's zone responder vs rbldnsd, same list, UDP on loopback

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision: $rev
- nproc: $(nproc) (loadgen and server share these cores, and the machine is shared with other
  builders); load average before the runs: $load_before, after: $load_after. Compare CPU per
  query and the ratios rather than absolute queries/s.
- command: \`$command_line\`
- load: medians of $runs interleaved runs of $duration s per server; one loadgen thread with
  $inflight queries in flight; type A queries, half for listed addresses ($listed /32s and a /16),
  half unlisted (NXDOMAIN); rbldnsd serves \`bench.bl:combined\` from \`rbldnsd_export()\` of the
  same list (ip4trie); mxguard-zone-server looks addresses up in per-prefix-length hash maps

$table
<!-- zone.sh:end -->
EOT
)
results=bench/RESULTS.md
if grep -q '<!-- zone.sh:begin -->' "$results"; then
  python3 - "$results" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'<!-- zone.sh:begin -->.*?<!-- zone.sh:end -->', lambda m: section, text, flags=re.S)
open(path, 'w').write(text)
PY
else
  printf '\n%s\n' "$section" >>"$results"
fi
log "updated $results"
