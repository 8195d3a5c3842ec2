#!/usr/bin/env bash
# Builds the `sanitize` CMake preset (AddressSanitizer + UndefinedBehavior-
# Sanitizer, -O0, in build-sanitize/) and runs the unit and integration tests
# under it. Any sanitizer report fails the run — also one from an mxguard
# daemon that an integration test started and stopped: such a test can pass
# while the daemon reports at exit (a use-after-free in teardown, a leak), so
# every process writes its reports into one directory, checked at the end.
#
# Nothing is excluded. The daemons the integration tests start are the
# sanitized binary; the peers (smtp-sink, redis-server, rbldnsd, swaks,
# Chromium for the HTML report) are not instrumented and ignore the options.
#
# MXGUARD_JOBS sets the build's parallel jobs (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$PWD

ops/install-deps.sh
started=$SECONDS
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize -j"${MXGUARD_JOBS:-$(nproc)}"
echo "sanitize: build took $((SECONDS - started)) s"

reports=$(mktemp -d /tmp/mxguard-sanitize.XXXXXX)
# Daemons that drop privileges (server.user) write their reports here too.
chmod 1777 "$reports"

# halt_on_error: the first report ends the process (UBSan: with
# -fno-sanitize-recover=undefined from CMakeLists.txt as well).
# detect_stack_use_after_return: safe with Asio's C++20 coroutines, which are
# stackless (their frames are on the heap; a resumed coroutine runs on the
# ordinary stack of the thread that resumes it), so ASan's fake stack frames
# are never switched under it; the whole suite passes with it on.
# check_initialization_order/strict_init_order: static initialisers that use
# another translation unit's globals.
# log_path/log_exe_name: reports go to $reports/asan.PROGRAM.PID rather than
# stderr, which the integration tests send to log files they delete.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1"
ASAN_OPTIONS+=":check_initialization_order=1:strict_init_order=1"
ASAN_OPTIONS+=":log_path=$reports/asan:log_exe_name=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan:log_exe_name=1"
# Leaks of third-party libraries only; every entry says why it is not ours.
export LSAN_OPTIONS="suppressions=$source_dir/tests/sanitize.supp:print_suppressions=0"

cd build-sanitize
status=0
started=$SECONDS
ctest --output-on-failure -j"$(nproc)" --timeout 300 -L 'unit|integration' || status=$?

echo "sanitize: tests took $((SECONDS - started)) s"

shopt -s nullglob
found=("$reports"/*)
if [ ${#found[@]} -gt 0 ]; then
  echo "sanitize: ${#found[@]} sanitizer report(s):" >&2
  for f in "${found[@]}"; do
    echo "---- $f" >&2
    cat "$f" >&2
  done
  status=1
else
  rm -rf "$reports"
fi
if [ "$status" -eq 0 ]; then
  echo "sanitize: all tests passed, no sanitizer reports"
fi
exit "$status"
