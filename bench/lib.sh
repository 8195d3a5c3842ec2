# shellcheck shell=bash
# bench/lib.sh: shared preamble of the bench/ scripts (sourced, not run).
#
#   lib_init NAME             log prefix, $root (the checkout), $out (bench/out/NAME-<time>-<pid>)
#   log / die MSG             messages on stderr prefixed with NAME; die exits 1
#   lib_build DIR TARGET...   configure DIR (Release, MXGUARD_BENCH=ON, MXGUARD_TESTS=OFF) and build
#                             the targets with nice -n 5 and -j${JOBS:-1}; logs in $out
#   lib_start CMD...          start CMD in the background, remember its PID in $started_pid and
#                             in the list cleanup stops (by PID, TERM then KILL)
#   stop_pid PID              TERM, wait up to 3 s, KILL
#   descendants PID           every descendant of PID, one per line
#   lib_on_exit 'CMD'         run CMD (eval) at exit, before the processes are stopped
#   lib_netns NAME            create network namespace NAME with lo up and a resolv.conf that
#                             points to 127.0.0.1 (/etc/netns/NAME), deleted at exit; in_ns CMD...
#   free_port                 a free TCP port on 127.0.0.1 below the ephemeral range
#   proc_cpu PID              user+system CPU seconds of PID so far (0 when gone)
#   tree_cpu PID              CPU seconds of PID and all its descendants, reaped children included
#   pss_kb PID                Pss in kB from /proc/PID/smaps_rollup (0 when gone)
#   json_num FILE KEY         first number after "KEY": in FILE
#   median_of                 median of the numbers on stdin (0 when none)
#   ratio A B                 A/B with 2 decimals, n/a when B is 0
#   write_section FILE MARK TEXT   replace <!-- MARK:begin --> .. <!-- MARK:end --> in FILE with
#                             TEXT (which carries the markers), or append it; the rest is kept
#
# Every process started with lib_start, the namespace, its /etc/netns entry and $work (when set)
# are removed on exit, error or Ctrl-C (the script's EXIT trap is set by lib_init).

lib_init() {
  lib_name=$1
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
  root=$PWD
  out="$root/bench/out/$lib_name-$(date +%Y%m%d-%H%M%S)-$$"
  mkdir -p "$out"
  started_pids=() lib_exit_cmds=() lib_ns="" lib_netns_etc_created=0 work=""
  clk_tck=$(getconf CLK_TCK)
  trap lib_cleanup EXIT
  trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C too
}

log() { printf '%s: %s\n' "$lib_name" "$*" >&2; }
die() { log "$*"; exit 1; }

stop_pid() {
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

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

# Not through a function run with & (that would be a subshell, and $! its PID): the caller's
# command is exec'd by the background job, so $! is the program itself (`ip netns exec` execs too).
lib_start() {
  "$@" &
  started_pid=$!
  started_pids+=("$started_pid")
}

lib_on_exit() { lib_exit_cmds+=("$1"); }

lib_cleanup() {
  local rc=$? cmd pid
  trap - INT TERM
  for cmd in "${lib_exit_cmds[@]}"; do eval "$cmd" || true; done
  for pid in "${started_pids[@]}"; do stop_pid "$pid"; done
  if [[ -n $lib_ns ]]; then
    ip netns del "$lib_ns" 2>/dev/null || log "could not delete namespace $lib_ns"
    rm -rf "/etc/netns/$lib_ns"
    if ((lib_netns_etc_created)); then rmdir /etc/netns 2>/dev/null || true; fi
  fi
  if [[ -n $work && -d $work ]]; then rm -rf "$work"; fi
  return "$rc"
}

lib_build() { # build-dir target...
  local dir=$1
  shift
  log "building $* in $dir (Release, MXGUARD_BENCH=ON, MXGUARD_TESTS=OFF, -j${JOBS:-1}; logs in $out)"
  nice -n 5 cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMXGUARD_BENCH=ON \
    -DMXGUARD_TESTS=OFF >"$out/configure.log" 2>&1 || return 1
  nice -n 5 cmake --build "$dir" -j"${JOBS:-1}" --target "$@" >"$out/build.log" 2>&1
}

lib_netns() { # name
  lib_ns=$1
  [[ -d /etc/netns ]] || lib_netns_etc_created=1
  mkdir -p "/etc/netns/$lib_ns"
  # `ip netns exec` bind-mounts /etc/netns/NS/* over /etc/*: glibc's resolver (Postfix) asks
  # whatever listens on port 53 of the namespace's loopback.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n' >"/etc/netns/$lib_ns/resolv.conf"
  ip netns add "$lib_ns" || { lib_ns=""; return 1; }
  ip -n "$lib_ns" link set lo up
}
in_ns() { ip netns exec "$lib_ns" "$@"; }

# Below the ephemeral range (32768+), so no outgoing connection can take it meanwhile.
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

proc_cpu() {
  [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
  # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v hz="$clk_tck" '{ print ($12 + $13) / hz }' || echo 0
}

# Own CPU plus that of reaped children (cutime + cstime) over the whole tree: the difference of
# two readings is the tree's CPU in between, processes that started or ended meanwhile included.
tree_cpu() {
  local pid
  [[ -n $1 ]] || { echo 0; return; }
  for pid in "$1" $(descendants "$1"); do
    [[ -r /proc/$pid/stat ]] || continue
    sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null || true
  done | awk -v hz="$clk_tck" '{ s += $12 + $13 + $14 + $15 } END { printf "%.2f\n", s / hz }'
}

pss_kb() {
  awk '/^Pss:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}

json_num() { sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" "$1" | head -n 1; }

median_of() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

write_section() { # file marker text
  local file=$1 mark=$2
  [[ -f $file ]] || printf '# Benchmark results\n\nEach section is rewritten by the script it names; git history keeps the earlier ones.\n' >"$file"
  if grep -q "^<!-- $mark:begin -->\$" "$file"; then
    SECTION="$3" MARK="$mark" awk '
      $0 == "<!-- " ENVIRON["MARK"] ":begin -->" { print ENVIRON["SECTION"]; skip = 1; next }
      $0 == "<!-- " ENVIRON["MARK"] ":end -->" { skip = 0; next }
      !skip { print }' "$file" >"$file.tmp"
    mv "$file.tmp" "$file"
  else
    printf '\n%s\n' "$3" >>"$file"
  fi
}
