#!/usr/bin/env bash
# bench/dnsbl.sh: what a DNSBL check costs. First mxguard-dnsbl-bench (cached and uncached scores
# per second through mxguard::dnsbl against rbldnsd); then the admission cost of listed and
# unlisted clients through the real mxguard daemon and through Postfix postscreen, side by side,
# interleaved, --runs times each: clients/s and the CPU the servers used per client. Records the
# medians and the ratios mxguard/postscreen in bench/RESULTS.md. See bench/README.md.
#
# Everything runs inside a network namespace made for the run (clients need source addresses in
# 198.18.0.0/24, postscreen's resolver must be rbldnsd on port 53): rbldnsd, mxguard, Postfix
# and the loadgen talk only to its loopback. Every process this script starts is stopped by PID
# on exit, and the namespace, its /etc/netns entry and the temp dir are removed.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/dnsbl.sh [options]          (as root: it creates a network namespace)
  --duration S          seconds per loadgen run (default 10, at most 600)
  --runs R              runs per path, interleaved (default 3, at most 9)
  --concurrency N       concurrent sessions (default 50)
  --threads T           loadgen I/O threads (default 1)
  --workers W           mxguard [server] workers (default 2)
  --bench-duration S    mxguard-dnsbl-bench: cap per phase (default 5)
  --uncached N          mxguard-dnsbl-bench: distinct addresses scored uncached (default 20000)
  --build-dir DIR       CMake build directory (default build-bench)
  --mxguard PATH        run this mxguard binary instead of building DIR/guard/mxguard
  --no-postfix          measure mxguard only
  --no-results          do not touch bench/RESULTS.md
EOF
}

duration=10 runs=3 concurrency=50 threads=1 workers=2 bench_duration=5 uncached=20000
build_dir=build-bench mxguard_override="" with_postfix=1 write_results=1
command_line="bench/dnsbl.sh${*:+$(printf ' %q' "$@")}"
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --bench-duration) bench_duration=$2; shift 2 ;;
    --uncached) uncached=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --mxguard) mxguard_override=$(realpath -m "$2"); shift 2 ;;
    --no-postfix) with_postfix=0; shift ;;
    --no-results) write_results=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "dnsbl.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in duration runs concurrency threads workers bench_duration uncached; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "dnsbl.sh: --${v//_/-} wants a whole number" >&2; exit 2; }
done
((duration >= 1 && duration <= 600)) || { echo "dnsbl.sh: --duration must be 1..600" >&2; exit 2; }
((bench_duration >= 1 && bench_duration <= 600)) || { echo "dnsbl.sh: --bench-duration must be 1..600" >&2; exit 2; }
((runs >= 1 && runs <= 9)) || { echo "dnsbl.sh: --runs must be 1..9" >&2; exit 2; }
((concurrency >= 1 && concurrency <= 90)) ||
  { echo "dnsbl.sh: --concurrency must be 1..90 (postscreen's pre-queue limit is 100)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "dnsbl.sh: must run as root (ip netns, postfix start)" >&2; exit 2; }
for tool in ip rbldnsd; do
  command -v "$tool" >/dev/null || { echo "dnsbl.sh: $tool is not installed" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
root=$PWD
out="$root/bench/out/dnsbl-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

log() { printf 'dnsbl.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- cleanup: processes by PID, then the namespace, /etc/netns entry and temp dir ---------------
ns="mxgbench$$"
work="" ns_created=0 netns_etc_created=0 postfix_etc="" master_pid=""
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
# Every descendant of a PID (Postfix's master forks its services).
descendants() {
  ps -e -o pid=,ppid= | awk -v r="$1" '
    { parent[$1] = $2 }
    END {
      do { n = 0
        for (p in parent) if (!(p in d) && (parent[p] == r || (parent[p] in d))) { d[p] = 1; n++ }
      } while (n)
      for (p in d) print p
    }'
}
stop_postfix() {
  [[ -n $master_pid ]] || return 0
  local kids
  kids=$(descendants "$master_pid")
  ip netns exec "$ns" postfix -c "$postfix_etc" stop >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    kill -0 "$master_pid" 2>/dev/null || break
    sleep 0.1
  done
  local pid
  for pid in $master_pid $kids; do stop_pid "$pid"; done
  master_pid=""
}
cleanup() {
  local pid
  stop_postfix
  for pid in "${started_pids[@]}"; do stop_pid "$pid"; done
  if ((ns_created)); then ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"; fi
  rm -rf "/etc/netns/$ns"
  if ((netns_etc_created)); then rmdir /etc/netns 2>/dev/null || true; fi
  if [[ -n $work && -d $work ]]; then
    # Keep what explains a failure: the configs and the ends of the logs.
    for f in "$work"/*.log "$work"/maillog; do
      if [[ -f $f ]]; then tail -n 200 "$f" >"$out/$(basename "$f").tail"; fi
    done
    if [[ -f $work/etc/main.cf ]]; then cp "$work/etc/main.cf" "$work/etc/master.cf" "$out/"; fi
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---------------------------------------------------------------------------------------
log "building in $build_dir (Release, MXGUARD_TESTS=OFF; logs in $out)"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMXGUARD_BENCH=ON -DMXGUARD_TESTS=OFF \
  >"$out/configure.log" 2>&1 || die "the project does not configure, see $out/configure.log"
cmake --build "$build_dir" -j2 --target mxguard-loadgen mxguard-dnsbl-bench >"$out/build-bench.log" 2>&1 ||
  die "building mxguard-loadgen and mxguard-dnsbl-bench failed, see $out/build-bench.log"
loadgen="$root/$build_dir/bench/mxguard-loadgen"
dnsbl_bench="$root/$build_dir/bench/mxguard-dnsbl-bench"
mxguard="$root/$build_dir/guard/mxguard" guard_problem=""
if [[ -n $mxguard_override ]]; then
  mxguard=$mxguard_override
elif ! cmake --build "$build_dir" -j2 --target mxguard >"$out/build-mxguard.log" 2>&1; then
  guard_problem="building mxguard failed, see $out/build-mxguard.log"
fi
[[ -n $guard_problem || -x $mxguard ]] || guard_problem="$mxguard is not an executable file"
postfix_problem=""
((with_postfix)) || postfix_problem="skipped (--no-postfix)"
if [[ -z $postfix_problem ]] && ! command -v postfix >/dev/null; then
  postfix_problem="postfix is not installed"
fi

# --- the namespace: lo with 127.0.0.1 and 198.18.0.0/24; resolv.conf pointing at rbldnsd -------
work=$(mktemp -d /tmp/mxgbench.XXXXXX)
chmod 755 "$work" # rbldnsd and Postfix drop to their own users and must read their files here
[[ -d /etc/netns ]] || netns_etc_created=1
mkdir -p "/etc/netns/$ns"
# `ip netns exec` bind-mounts /etc/netns/NS/* over /etc/*: glibc's resolver (Postfix's dnsblog)
# asks rbldnsd, on port 53 of the namespace's loopback.
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n' >"/etc/netns/$ns/resolv.conf"
ip netns add "$ns" || die "cannot create network namespace $ns"
ns_created=1
ip -n "$ns" link set lo up
# On a loopback device the whole prefix is local: every 198.18.0.x can be bound.
ip -n "$ns" addr add 198.18.0.1/24 dev lo
in_ns() { ip netns exec "$ns" "$@"; }

# Listed clients: 198.18.0.128-254; unlisted: 198.18.0.2-127 (.0, .1 and .255 are left out:
# network, the namespace's own address and broadcast). RFC 5782 test point 127.0.0.2 is listed.
listed_ips=$(seq -s, -f '198.18.0.%g' 128 254)
unlisted_ips=$(seq -s, -f '198.18.0.%g' 2 127)
cat >"$work/bl.zone" <<'EOF'
:127.0.0.2:Listed by the mxguard DNSBL benchmark
198.18.0.128/25
127.0.0.2
EOF
chmod 644 "$work/bl.zone"
# Started with `ip netns exec` itself, not through in_ns: a function run with & is a subshell,
# and $! would be that shell's PID, not the server's (`ip netns exec` execs the command).
ip netns exec "$ns" rbldnsd -n -b 127.0.0.1/53 -w "$work" bl.bench:ip4set:bl.zone \
  >"$work/rbldnsd.log" 2>&1 &
rbl_pid=$!
started_pids+=("$rbl_pid")

# CPU seconds a process has used so far (user + system, all threads), 0 when it is gone.
clk_tck=$(getconf CLK_TCK)
proc_cpu() {
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$clk_tck" '{ print ($12 + $13) / hz }'
}
# "pid comm self reaped" for a process and all its descendants: its own CPU seconds and those of
# its children that ended and were reaped (cutime + cstime). sum(self + reaped) after minus the
# same before is the CPU of the whole tree in between, processes that started or ended included.
tree_snapshot() {
  local pid
  for pid in "$1" $(descendants "$1"); do
    [[ -r /proc/$pid/stat ]] || continue
    awk -v hz="$clk_tck" -v pid="$pid" '{
        comm = $0; sub(/^[^(]*\(/, "", comm); sub(/\).*$/, "", comm)
        rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
        print pid, comm, (f[12] + f[13]) / hz, (f[14] + f[15]) / hz
      }' "/proc/$pid/stat" 2>/dev/null || true
  done
}

# True once 127.0.0.1:$1 in the namespace answers with a 2xx banner, within $2 seconds.
wait_banner() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    in_ns "$loadgen" --target "127.0.0.1:$1" --mode greet --messages 1 --concurrency 1 --timeout 2 \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# rbldnsd answers once the test point resolves (the loadgen cannot ask DNS; dnsbl-bench can).
rbl_up=0
for _ in $(seq 50); do
  if in_ns "$dnsbl_bench" --resolver 127.0.0.1:53 --cached-addresses 1 --cached-base 127.0.0.2 \
    --cached-lookups 1 --threads-list 1 --uncached 0 --duration 1 >/dev/null 2>&1; then
    rbl_up=1
    break
  fi
  sleep 0.1
done
((rbl_up)) || { cat "$work/rbldnsd.log" >&2; die "rbldnsd did not answer in namespace $ns"; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. mxguard-dnsbl-bench, --runs times --------------------------------------------------------
log "mxguard-dnsbl-bench: $runs runs (cached 1 and 2 threads, ${bench_duration}s cap each; $uncached uncached)"
for i in $(seq "$runs"); do
  rbl0=$(proc_cpu "$rbl_pid")
  in_ns "$dnsbl_bench" --resolver 127.0.0.1:53 --duration "$bench_duration" --uncached "$uncached" \
    --json >"$out/dnsbl-bench-$i.json" 2>"$out/dnsbl-bench-$i.txt" ||
    log "mxguard-dnsbl-bench run $i reported timeouts or errors (see $out/dnsbl-bench-$i.txt)"
  rbl1=$(proc_cpu "$rbl_pid")
  sed 's/^/  /' "$out/dnsbl-bench-$i.txt" >&2
  # rbldnsd's CPU over the run: the cached phases ask it only to prime, so this is the uncached
  # phase's queries.
  awk -v a="$rbl0" -v b="$rbl1" 'BEGIN { print b - a }' >"$out/dnsbl-bench-$i.rbl"
done

# --- 2. the servers ------------------------------------------------------------------------------
# mxguard: three instances on the namespace's loopback, differing only in [dnsbl]:
#   2525 action "connect", default cache (answers kept 60 s .. 1 h): the normal configuration
#   2526 the same with min_ttl = max_ttl = 0: every connection asks rbldnsd, like postscreen
#   2527 action "rcpt": refuse at RCPT after logging, the dialogue of postscreen's "enforce"
mx_pids=()
start_mxguard() { # port extra-dnsbl-lines
  cat >"$work/mxguard-$1.toml" <<EOF
[server]
listen = ["127.0.0.1:$1"]
hostname = "mx.bench.test"
workers = $workers

[relay]
domains = ["example.org"]

[[route]]
domain = "example.org"
next_hops = ["127.0.0.1:10025"]   # never reached: listed clients are refused by then

[dnsbl]
resolvers = ["127.0.0.1:53"]
sites = ["bl.bench=127.0.0.2"]
$2
EOF
  # O_APPEND (>>), so that the log can be emptied between runs while mxguard writes to it.
  ip netns exec "$ns" "$mxguard" --config "$work/mxguard-$1.toml" >>"$work/mxguard-$1.log" 2>&1 &
  mx_pids+=($!)
  started_pids+=($!)
}
if [[ -z $guard_problem ]]; then
  start_mxguard 2525 ""
  start_mxguard 2526 $'min_ttl = "0s"\nmax_ttl = "0s"'
  start_mxguard 2527 'action = "rcpt"'
  for port in 2525 2526 2527; do
    if ! wait_banner "$port" 5; then
      guard_problem="mxguard did not answer its banner on 127.0.0.1:$port within 5 s"
      tail -n 20 "$work/mxguard-$port.log" >&2 || true
      break
    fi
  done
fi
[[ -z $guard_problem ]] || log "mxguard: $guard_problem"

# Postfix: one instance with its own config and queue directories under $work, postscreen on
# 2625 (dnsbl action enforce) and 2626 (drop), smtpd behind it, dnsblog asking rbldnsd through
# the namespace's resolv.conf, logging to a file through postlogd (there is no syslog here).
if [[ -z $postfix_problem ]]; then
  postfix_etc="$work/etc"
  mkdir -p "$postfix_etc" "$work/queue" "$work/data"
  chown postfix: "$work/data"
  cat >"$postfix_etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $work/queue
data_directory = $work/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postscreen.bench.test
mydomain = bench.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
relay_domains = example.org
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
maillog_file = $work/maillog
maillog_file_prefixes = $work
smtpd_peername_lookup = no
# postscreen: every client is screened (no access list), by DNSBL alone, without the greet
# wait (no pregreet test, no banner), and without its cache, so every connection is tested.
postscreen_access_list =
postscreen_dnsbl_sites = bl.bench=127.0.0.2
postscreen_dnsbl_threshold = 1
postscreen_dnsbl_action = enforce
postscreen_greet_action = ignore
postscreen_greet_banner =
postscreen_cache_map =
EOF
  cat >"$postfix_etc/master.cf" <<'EOF'
127.0.0.1:2625 inet n - n - 1 postscreen
127.0.0.1:2626 inet n - n - 1 postscreen -o postscreen_dnsbl_action=drop
smtpd     pass  - - n - - smtpd
dnsblog   unix  - - n - 0 dnsblog
tlsproxy  unix  - - n - 0 tlsproxy
postlog   unix-dgram n - n - 1 postlogd
anvil     unix  - - n - 1 anvil
rewrite   unix  - - n - - trivial-rewrite
cleanup   unix  n - n - 0 cleanup
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
EOF
  # postfix(1) reports on stderr only to a terminal, otherwise to the maillog.
  if in_ns postfix -c "$postfix_etc" start >"$work/postfix-start.log" 2>&1; then
    for _ in $(seq 50); do
      [[ -s $work/queue/pid/master.pid ]] && break
      sleep 0.1
    done
    master_pid=$(tr -dc '0-9' <"$work/queue/pid/master.pid" 2>/dev/null || true)
  fi
  if [[ -z $master_pid ]] || ! kill -0 "$master_pid" 2>/dev/null; then
    postfix_problem="postfix -c $postfix_etc start failed: $(tail -n 3 "$work/maillog" 2>/dev/null | tr '\n' ' ')"
    master_pid=""
  else
    for port in 2625 2626; do
      if ! wait_banner "$port" 10; then
        postfix_problem="postscreen did not pass a client to smtpd on 127.0.0.1:$port within 10 s"
        break
      fi
    done
  fi
fi
[[ -z $postfix_problem ]] || log "postscreen: $postfix_problem"
[[ -z $guard_problem || -z $postfix_problem ]] || die "neither mxguard nor postscreen could be measured"
problems=""
[[ -z $guard_problem ]] || problems+=$'\n'"mxguard not measured: $guard_problem"$'\n'
[[ -z $postfix_problem ]] || problems+=$'\n'"postscreen not measured: $postfix_problem"$'\n'

# --- the paths: name|port|loadgen mode|clients|server ------------------------------------------
paths=()
if [[ -z $guard_problem ]]; then
  paths+=("mx-listed|2525|connect-refused|listed|mxguard"
    "mx-listed-nocache|2526|connect-refused|listed|mxguard"
    "mx-listed-rcpt|2527|refused|listed|mxguard"
    "mx-unlisted|2525|greet|unlisted|mxguard"
    "mx-unlisted-nocache|2526|greet|unlisted|mxguard")
fi
if [[ -z $postfix_problem ]]; then
  paths+=("ps-listed-drop|2626|connect-refused|listed|postfix"
    "ps-listed-enforce|2625|refused|listed|postfix"
    "ps-unlisted|2625|greet|unlisted|postfix")
fi
server_pid() { # port kind
  case $2 in
    mxguard) case $1 in 2525) echo "${mx_pids[0]}" ;; 2526) echo "${mx_pids[1]}" ;; *) echo "${mx_pids[2]}" ;; esac ;;
    postfix) echo "$master_pid" ;;
  esac
}
json_num() { sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" "$1" | head -n 1; }

# One loadgen run of a path: $out/<name>-<i>.{json,txt}, and in .cpu: loadgen, server (the
# process tree), rbldnsd, each in % of one core over the run, and the server's CPU microseconds
# per successful client; in .procs the server's CPU by process name in % of one core.
run_path() { # spec run-index ("w" = warm-up)
  local name port mode clients kind
  IFS='|' read -r name port mode clients kind <<<"$1"
  local tag="$name-$2" sources pid before after rbl0 rbl1
  [[ $clients == listed ]] && sources=$listed_ips || sources=$unlisted_ips
  pid=$(server_pid "$port" "$kind")
  before=$(tree_snapshot "$pid") rbl0=$(proc_cpu "$rbl_pid")
  in_ns "$loadgen" --target "127.0.0.1:$port" --mode "$mode" --json \
    --duration "$([[ $2 == w ]] && echo 2 || echo "$duration")" --concurrency "$concurrency" \
    --threads "$threads" --source-ips "$sources" >"$out/$tag.json" 2>"$out/$tag.txt" || true
  after=$(tree_snapshot "$pid") rbl1=$(proc_cpu "$rbl_pid")
  printf '  %-22s %s\n' "$tag" "$(cat "$out/$tag.txt")" >&2
  grep -q '^{' "$out/$tag.json" || die "loadgen produced no result for $tag, see $out/$tag.txt"
  local elapsed ok lcpu
  elapsed=$(json_num "$out/$tag.json" elapsed_s) ok=$(json_num "$out/$tag.json" ok)
  lcpu=$(json_num "$out/$tag.json" cpu_s)
  # Server CPU: sum over the tree after minus before (see tree_snapshot).
  awk -v e="$elapsed" -v ok="$ok" -v l="$lcpu" -v r0="$rbl0" -v r1="$rbl1" '
    FNR == 1 { file++ }
    file == 1 { b += $3 + $4 } file == 2 { a += $3 + $4 }
    END { s = a - b; printf "%.1f %.1f %.1f %.1f\n", 100 * l / e, 100 * s / e, 100 * (r1 - r0) / e,
          (ok > 0 ? 1e6 * s / ok : 0) }' <(echo "$before") <(echo "$after") >"$out/$tag.cpu"
  # By process name: pids alive at the end, minus what they had used at the start; what is left
  # of the tree total went to processes that ended during the run ("exited").
  awk -v e="$elapsed" '
    FNR == 1 { file++ }
    file == 1 { b[$1] = $3; bt += $3 + $4; next }
    { d = $3 - ($1 in b ? b[$1] : 0); by[$2] += d; at += $3 + $4; named += d }
    END { by["exited"] = (at - bt) - named
          for (c in by) printf "%s %.1f\n", c, 100 * by[c] / e }' \
    <(echo "$before") <(echo "$after") | sort >"$out/$tag.procs"
  # The daemons log every session; keep the files small between runs.
  [[ ! -f $work/mxguard-$port.log ]] || : >"$work/mxguard-$port.log"
  [[ ! -f $work/maillog ]] || : >"$work/maillog"
}

# Warm-up: 2 s per path, not counted (Postfix forks its dnsblog and smtpd processes, mxguard
# fills its cache); it also checks that every path gives the expected replies.
log "warm-up, then $runs x ${duration}s per path, interleaved; concurrency $concurrency, nproc $(nproc)"
for p in "${paths[@]}"; do run_path "$p" w; done
for i in $(seq "$runs"); do
  for p in "${paths[@]}"; do run_path "$p" "$i"; done
done

# --- tables --------------------------------------------------------------------------------------
median_of() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median() { # name key
  local f
  for f in "$out/$1"-[0-9]*.json; do json_num "$f" "$2"; done | median_of
}
median_cpu() { # name column
  local f
  for f in "$out/$1"-[0-9]*.cpu; do awk -v c="$2" '{ print $c }' "$f"; done | median_of
}
sum_failed() {
  local f
  for f in "$out/$1"-[0-9]*.json; do json_num "$f" failed; done | awk '{ s += $1 } END { print s + 0 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
have() { [[ -n $(ls "$out/$1"-1.json 2>/dev/null) ]]; }

describe() {
  case $1 in
    mx-listed) echo "mxguard, action connect | listed | 554 at connect" ;;
    mx-listed-nocache) echo "mxguard, action connect, no cache | listed | 554 at connect" ;;
    mx-listed-rcpt) echo "mxguard, action rcpt | listed | EHLO, MAIL, 554 at RCPT" ;;
    mx-unlisted) echo "mxguard | unlisted | 220, QUIT" ;;
    mx-unlisted-nocache) echo "mxguard, no cache | unlisted | 220, QUIT" ;;
    ps-listed-drop) echo "postscreen, drop | listed | 521 at connect" ;;
    ps-listed-enforce) echo "postscreen, enforce | listed | EHLO, MAIL, 550 at RCPT" ;;
    ps-unlisted) echo "postscreen → smtpd | unlisted | 220 (smtpd), QUIT" ;;
  esac
}
admission_table="| path | client | dialogue | clients/s | p50 ms | p99 ms | failed (all runs) | server CPU | server CPU µs/client | rbldnsd CPU | loadgen CPU |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for p in "${paths[@]}"; do
  name=${p%%|*}
  admission_table+="
| $(describe "$name") | $(printf '%.0f' "$(median "$name" messages_per_s)") | $(median "$name" p50) | \
$(median "$name" p99) | $(sum_failed "$name") | $(median_cpu "$name" 2)% | \
$(printf '%.0f' "$(median_cpu "$name" 4)") | $(median_cpu "$name" 3)% | $(median_cpu "$name" 1)% |"
done

ratio_table="| mxguard path | postscreen path | clients/s ratio | server CPU per client ratio |
|---|---|---:|---:|"
ratio_row() { # mx-name ps-name
  have "$1" && have "$2" || return 0
  ratio_table+="
| $(describe "$1" | cut -d'|' -f1)| $(describe "$2" | cut -d'|' -f1)| \
$(ratio "$(median "$1" messages_per_s)" "$(median "$2" messages_per_s)") | \
$(ratio "$(median_cpu "$1" 4)" "$(median_cpu "$2" 4)") |"
}
ratio_row mx-listed ps-listed-drop
ratio_row mx-listed-nocache ps-listed-drop
ratio_row mx-listed-rcpt ps-listed-enforce
ratio_row mx-unlisted ps-unlisted
ratio_row mx-unlisted-nocache ps-unlisted
[[ $ratio_table == *$'\n'*$'\n'* ]] || ratio_table="(no ratios: one side was not measured)"

# Postfix's CPU by process, median over runs of each process name's % of one core.
procs_lines=""
for p in "${paths[@]}"; do
  name=${p%%|*}
  [[ $name == ps-* ]] || continue
  line=""
  # shellcheck disable=SC2013 # process names are single words
  for comm in $(awk '{ print $1 }' "$out/$name"-[0-9]*.procs | sort -u); do
    v=$(for f in "$out/$name"-[0-9]*.procs; do awk -v c="$comm" '$1 == c { print $2 }' "$f"; done | median_of)
    # Idle helpers (and rounding around 0 for "exited") are left out.
    awk -v v="$v" 'BEGIN { exit !(v >= 0.05) }' || continue
    line+="${line:+, }$comm $(printf '%.1f' "$v")%"
  done
  procs_lines+="- $name: $line
"
done

bench_median() { # phase threads key
  local f
  for f in "$out"/dnsbl-bench-[0-9]*.json; do
    grep -o "{\"phase\":\"$1\",\"threads\":$2,[^}]*}[^}]*}" "$f" |
      sed -n "s/.*\"$3\":\([0-9.eE+-]*\).*/\1/p"
  done | median_of
}
rbl_us_per_query=$(for f in "$out"/dnsbl-bench-[0-9]*.rbl; do
  awk -v n="$uncached" '{ if (n > 0) print 1e6 * $1 / n; else print 0 }' "$f"; done | median_of)
bench_table="| phase | threads | scores/s | CPU µs/score | p50 µs | p99 µs | timeouts + errors (median) |
|---|---:|---:|---:|---:|---:|---:|"
for spec in "cached 1" "cached 2" "uncached 1"; do
  read -r ph th <<<"$spec"
  [[ $ph == uncached ]] && ((uncached == 0)) && continue
  bench_table+="
| $ph | $th | $(printf '%.0f' "$(bench_median "$ph" "$th" scores_per_s)") | \
$(bench_median "$ph" "$th" cpu_us_per_score) | $(bench_median "$ph" "$th" p50) | \
$(bench_median "$ph" "$th" p99) | $(($(printf '%.0f' "$(bench_median "$ph" "$th" timeouts)") + $(printf '%.0f' "$(bench_median "$ph" "$th" errors)"))) |"
done

echo
echo "mxguard-dnsbl-bench, medians of $runs runs (rbldnsd: $(printf '%.1f' "$rbl_us_per_query") µs CPU per uncached query):"
echo "$bench_table"
echo
echo "Admission, medians of $runs runs of $duration s, concurrency $concurrency:"
echo "$admission_table"
printf '%s\n' "$problems"
echo "$ratio_table"
[[ -z $procs_lines ]] || { echo; echo "Postfix CPU by process (% of one core):"; printf '%s' "$procs_lines"; }

# --- bench/RESULTS.md: this script's section is replaced, the rest of the file kept --------------
if ((write_results)); then
  results="$root/bench/RESULTS.md"
  rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  [[ -z $(git -C "$root" status --porcelain 2>/dev/null) ]] || rev+=" (uncommitted changes)"
  binary_note=""
  [[ -z $mxguard_override ]] ||
    binary_note=" mxguard binary: \`${mxguard_override#"$root"/}\` ($(date -u -r "$mxguard_override" '+built %Y-%m-%d %H:%M UTC'))."
  section="<!-- dnsbl.sh:begin -->
## DNSBL: mxguard::dnsbl alone, and admission of listed/unlisted clients, mxguard vs. postscreen

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- revision: $rev;$binary_note Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), rbldnsd on the namespace's loopback
- nproc: $(nproc) (loadgen, servers and rbldnsd share these cores); load average before
  the runs: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) (anything above ~0 means other
  work competed with the benchmark: compare CPU per client, not clients/s)
- command: \`$command_line\`
- load: medians of $runs interleaved runs of $duration s per path, concurrency $concurrency,
  $threads loadgen thread(s), mxguard workers $workers; listed clients from 198.18.0.128-254,
  unlisted from 198.18.0.2-127, all on the loopback of a network namespace

### mxguard-dnsbl-bench (one site; cached: 256 addresses kept in cache, 16 scores in flight per thread, ${bench_duration} s; uncached: $uncached distinct addresses, 100 in flight, one thread)

$bench_table

rbldnsd used $(printf '%.1f' "$rbl_us_per_query") µs CPU per uncached query (median).

### Admission through the daemons

$admission_table
$problems
Ratios are mxguard/postscreen: clients/s above 1 means mxguard admitted more per second; server CPU per client below 1 means it spent less per client.

$ratio_table

Postfix CPU by process, % of one core (median over runs; \`exited\`: processes that ended during a run):

${procs_lines:-"- (postscreen not measured)
"}<!-- dnsbl.sh:end -->"
  [[ -f $results ]] || printf '# Benchmark results\n\nEach section is rewritten by the script it names; git history keeps the earlier ones.\n' >"$results"
  if grep -q '^<!-- dnsbl.sh:begin -->$' "$results"; then
    SECTION="$section" awk '
      /^<!-- dnsbl.sh:begin -->$/ { print ENVIRON["SECTION"]; skip = 1; next }
      /^<!-- dnsbl.sh:end -->$/ { skip = 0; next }
      !skip { print }' "$results" >"$results.tmp"
    mv "$results.tmp" "$results"
  else
    printf '\n%s\n' "$section" >>"$results"
  fi
  log "updated $results"
fi

[[ -z $guard_problem ]] || die "mxguard was not measured: $guard_problem"
