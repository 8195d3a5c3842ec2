#!/usr/bin/env bash
# bench/firewall.sh: time from an offending event to the kernel's nftables set holding the
# address. mxguard runs in a network namespace this script creates, with
# [blocklist] nft_set = "inet mxguard blocked" and auto_block = ["relay 1/1m 1h"]; a client
# namespace joined by a veth pair carries --clients addresses. From each address in turn a
# client asks to relay; the clock starts when the client reads the 554 reply to its RCPT and
# stops when `nft monitor` in the guard's namespace prints the element's addition (each line
# timestamped as it arrives). The same for `mxguardctl block` (clock started just before the
# command runs). Median, p90 and max into bench/RESULTS.md. Needs root, ip, nft, python3.
# Every process it starts is stopped by PID and both namespaces are deleted on exit.
#   --clients N       addresses measured per path (default 20, at most 200)
#   --build-dir DIR   CMake build directory (default build; configured if it has no cache)
#   --mxguard PATH    run this mxguard binary (no build); --mxguardctl PATH likewise
#   --no-results      do not touch bench/RESULTS.md
# Environment: JOBS (build parallelism, default 1: the machine is shared).
set -euo pipefail
clients=20 build_dir=build write_results=1 mxguard="" mxguardctl=""
command_line="bench/firewall.sh${*:+$(printf ' %q' "$@")}"
while (($#)); do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --mxguard) mxguard=$2; shift 2 ;;
    --mxguardctl) mxguardctl=$2; shift 2 ;;
    --no-results) write_results=0; shift ;;
    *) sed -n '11,15p' "$0" >&2; exit 2 ;;
  esac
done
if ! [[ $clients =~ ^[0-9]+$ ]] || ((clients < 1 || clients > 200)); then
  echo "firewall.sh: --clients 1..200" >&2
  exit 2
fi
[[ $(id -u) -eq 0 ]] || { echo "firewall.sh: needs root (network namespaces, nftables)" >&2; exit 2; }
for tool in ip nft python3 stdbuf; do
  command -v "$tool" >/dev/null || { echo "firewall.sh: $tool is not installed" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf 'firewall.sh: %s\n' "$*" >&2; }
build_note="binaries given: $mxguard"
if [[ -z $mxguard || -z $mxguardctl ]]; then
  [[ -f $build_dir/CMakeCache.txt ]] ||
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXGUARD_TESTS=OFF >/dev/null
  build_note="$build_dir, $(grep -m1 '^CMAKE_BUILD_TYPE:' "$build_dir/CMakeCache.txt" | cut -d= -f2)"
  cmake --build "$build_dir" -j"${JOBS:-1}" --target mxguard mxguardctl >/dev/null
  mxguard=${mxguard:-$build_dir/guard/mxguard} mxguardctl=${mxguardctl:-$build_dir/ops/mxguardctl}
fi
for bin in "$mxguard" "$mxguardctl"; do
  [[ -x $bin ]] || { echo "firewall.sh: $bin is not an executable" >&2; exit 2; }
done
mxguard=$(realpath "$mxguard") mxguardctl=$(realpath "$mxguardctl")

work=$(mktemp -d /tmp/mxgfw.XXXXXX)
gns=mxgfw-g-$$ cns=mxgfw-c-$$ vg=vfg$$ vc=vfc$$
guard_addr=10.212.0.1 port=2525
pids=() made_ns=()
stop_pid() {
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local pid ns
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$gns" && made_ns+=("$gns")
ip netns add "$cns" && made_ns+=("$cns")
ip link add "$vg" netns "$gns" type veth peer name "$vc" netns "$cns"
ip -n "$gns" addr add "$guard_addr/16" dev "$vg"
client_addrs=()
for ((i = 0; i < clients; i++)); do
  a=10.212.$((1 + i / 250)).$((1 + i % 250))
  client_addrs+=("$a")
  ip -n "$cns" addr add "$a/16" dev "$vc"
done
for ns in "$gns" "$cns"; do ip -n "$ns" link set lo up; done
ip -n "$gns" link set "$vg" up
ip -n "$cns" link set "$vc" up

cat >"$work/mxguard.toml" <<EOT
[server]
listen = ["$guard_addr:$port"]
hostname = "mx.example.org"
workers = 1

[relay]
domains = ["example.org"]

[[route]]
domain = "example.org"
next_hops = ["127.0.0.1:9"]

[blocklist]
nft_set = "inet mxguard blocked"
auto_block = ["relay 1/1m 1h"]
never_block = []

[control]
socket = "$work/control.sock"
EOT

# nft monitor in the guard's namespace, every line timestamped (µs, wall clock) as it arrives.
mkfifo "$work/monitor.fifo"
while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done \
  <"$work/monitor.fifo" >"$work/monitor.log" &
pids+=($!)
ip netns exec "$gns" stdbuf -oL nft monitor >"$work/monitor.fifo" 2>&1 &
pids+=($!)

ip netns exec "$gns" "$mxguard" --config "$work/mxguard.toml" >"$work/mxguard.log" 2>&1 &
mx_pid=$!
pids+=("$mx_pid")
up=0
for _ in $(seq 100); do
  if ip netns exec "$cns" timeout 1 bash -c "exec 3<>/dev/tcp/$guard_addr/$port" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$mx_pid" 2>/dev/null || break
  sleep 0.1
done
((up)) || { cat "$work/mxguard.log" >&2; log "mxguard did not start"; exit 1; }
# The feeder's start-up flush-and-fill has made the set; wait for it before measuring.
for _ in $(seq 100); do
  ip netns exec "$gns" nft list set inet mxguard blocked >/dev/null 2>&1 && break
  sleep 0.05
done

# One relay attempt from SOURCE; prints the wall-clock time the 554 was read.
client_py='
import socket, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=5, source_address=(src, 0))
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line:
            sys.exit("connection closed")
        if line[3:4] != b"-":
            return line
def expect(code, cmd=None):
    if cmd:
        s.sendall(cmd)
    r = reply()
    if not r.startswith(code):
        sys.exit("unexpected reply %r" % r)
    return r
expect(b"220")
expect(b"250", b"EHLO bench.example\r\n")
expect(b"250", b"MAIL FROM:<a@remote.example>\r\n")
s.sendall(b"RCPT TO:<x@foreign.example>\r\n")
r = reply()
t = time.time()
if not r.startswith(b"554"):
    sys.exit("RCPT got %r, not 554" % r)
print("%.6f" % t)
try:
    s.sendall(b"QUIT\r\n")
    reply()
except OSError:
    pass
'

# Seconds until the monitor shows ADDR added; waits at most 5 s. Prints ms, or "timeout".
added_after() {
  local addr=$1 t0=$2 re
  re="add element inet mxguard blocked .*[{ ,]${addr//./\\.}[ ,}]"
  for _ in $(seq 1000); do
    local hit
    hit=$(grep -E -m1 "$re" "$work/monitor.log" || true)
    if [[ -n $hit ]]; then
      awk -v a="$t0" -v b="${hit%% *}" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
      return 0
    fi
    sleep 0.005
  done
  echo timeout
}

auto_ms=() manual_ms=() failures=0
for a in "${client_addrs[@]}"; do
  if ! t0=$(ip netns exec "$cns" python3 -c "$client_py" "$a" "$guard_addr" "$port" 2>"$work/client.err"); then
    log "client $a: $(cat "$work/client.err")"
    failures=$((failures + 1))
    continue
  fi
  ms=$(added_after "$a" "$t0")
  log "auto-block $a: $ms ms"
  if [[ $ms == timeout ]]; then failures=$((failures + 1)); else auto_ms+=("$ms"); fi
done
for ((i = 0; i < clients; i++)); do
  a=10.213.$((i / 250)).$((1 + i % 250))
  t0=$EPOCHREALTIME
  if ! "$mxguardctl" -s "$work/control.sock" block "$a" --for 1h --reason "firewall bench" >"$work/ctl.out" 2>&1; then
    log "mxguardctl block $a: $(cat "$work/ctl.out")"
    failures=$((failures + 1))
    continue
  fi
  ms=$(added_after "$a" "$t0")
  log "mxguardctl block $a: $ms ms"
  if [[ $ms == timeout ]]; then failures=$((failures + 1)); else manual_ms+=("$ms"); fi
done

stats() { # median p90 max of the arguments
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    if (!NR) { print "- | - | -"; exit }
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    i = int(NR * 0.9 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
    printf "%.1f | %.1f | %.1f\n", med, v[i], v[NR] }'
}
table=$(cat <<EOT
| path | addresses | median ms | p90 ms | max ms |
|---|---:|---:|---:|---:|
| auto-block: client reads 554 to RCPT → element added to the set | ${#auto_ms[@]} | $(stats "${auto_ms[@]}") |
| \`mxguardctl block\` started → element added to the set | ${#manual_ms[@]} | $(stats "${manual_ms[@]}") |
EOT
)
echo "$table"
((failures == 0)) || { log "$failures measurement(s) failed; see above"; exit 1; }
((write_results)) || exit 0

rev=$(git rev-parse --short HEAD 2>/dev/null || echo none)
[[ -z $(git status --porcelain -- guard ops ratelimit bench ':!bench/RESULTS.md' 2>/dev/null) ]] || rev="$rev (uncommitted changes)"
section=$(cat <<EOT
<!-- firewall.sh:begin -->
## Firewall: offending event → address in the kernel's nftables set

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision: $rev; nft: $(nft --version)
- nproc: $(nproc) (two cores, shared with other builders; mxguard, the client, \`nft\` and the
  monitor all run on them); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)
- command: \`$command_line\`
- setup: mxguard ($build_note) in a network namespace of its own, \`[blocklist] nft_set =
  "inet mxguard blocked"\`, \`auto_block = ["relay 1/1m 1h"]\`, \`never_block = []\`, the
  embedded state store; $clients client addresses on a veth in a second namespace, one after
  the other, each sending one relay attempt (refused 554 at RCPT, which blocks it). The clock
  starts when the client reads the 554 (Python, \`time.time()\`) or just before \`mxguardctl
  block\` runs, and stops when \`nft monitor\` in the guard's namespace prints the element's
  \`add element\` (timestamped by a bash read loop as the line arrives). Included: the block
  decision, the feeder's batching (\`batch_interval\` 100 ms), \`nft -f\`, and the kernel
  notification.

$table
<!-- firewall.sh:end -->
EOT
)
results=bench/RESULTS.md
if grep -q '<!-- firewall.sh:begin -->' "$results"; then
  python3 - "$results" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'<!-- firewall.sh:begin -->.*?<!-- firewall.sh:end -->', lambda m: section, text, flags=re.S)
open(path, 'w').write(text)
PY
else
  printf '\n%s\n' "$section" >>"$results"
fi
log "updated $results"
