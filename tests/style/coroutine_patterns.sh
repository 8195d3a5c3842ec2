#!/usr/bin/env bash
# GCC 12 miscompiles two coroutine shapes we hit (garbage replies, aborts):
# a conditional operator holding co_await, and braced temporaries as
# arguments of a co_await'ed call. Write them as if/else and named values.
# This check keeps them from coming back; it looks at the sources only.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
dirs=(guard dnsbl ratelimit scan ops)
status=0
if grep -rnE '\?[^;]*co_await' --include='*.cpp' --include='*.hpp' "${dirs[@]}" \
    | grep -vE '^[^:]+:[0-9]+: *//'; then
  echo "coroutine_patterns: a conditional operator with co_await (GCC 12 miscompiles it)" >&2
  status=1
fi
if grep -rnE 'co_await [A-Za-z_][A-Za-z0-9_.>:-]*\((\{|[^;]*, *\{)' --include='*.cpp' --include='*.hpp' "${dirs[@]}" \
    | grep -vE '^[^:]+:[0-9]+: *//'; then
  echo "coroutine_patterns: a braced temporary as a co_await'ed call's argument (GCC 12)" >&2
  status=1
fi
exit $status
