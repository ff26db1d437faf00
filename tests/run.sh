#!/usr/bin/env bash
# Runs every test binary in BUILD/tests (cmocka) and every tests/cli/*.sh script against
# BUILD/hearth, then prints "N passed, N failed" and writes it to BUILD/test-results.txt.
# TEST_JOBS programs run at a time (default 2: CI has 2 cores, and several tests use 2
# threads themselves). Each keeps its own log; failures are reported after all have ended,
# in a fixed order, so the output does not depend on which finished first. The time each
# program took goes to BUILD/test-times.txt (slowest first) and the slowest few are printed.
set -u
build=${1:-build}
jobs=${TEST_JOBS:-2}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ ! -d ../shared ]; then
  echo "tests: ../shared (fixtures and models) is missing next to the project; it is required" >&2
  echo "0 passed, 1 failed" | tee "$build/test-results.txt"
  exit 1
fi
export HEARTH_TEST_SHARED="$top/../shared" HEARTH="$top/$build/hearth"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/tests"

# Both lists are taken before anything runs (a script could leave executables behind).
bins=$(find "$build/tests" -type f -perm -u+x 2>/dev/null | sort)
clis=$(for s in tests/cli/*.sh; do [ -f "$s" ] && echo "$s"; done)
binlog() { echo "$1.log"; }
clilog() { echo "$build/tests/cli-$(basename "$1").log"; }

# One program: its output to its log, then "rc milliseconds" to LOG.rc.
run_one() { # kind path log
  local t0 rc
  t0=$(date +%s%N)
  if [ "$1" = bin ]; then "$2" >"$3" 2>&1 </dev/null; else bash "$2" >"$3" 2>&1 </dev/null; fi
  rc=$?
  echo "$rc $((($(date +%s%N) - t0) / 1000000))" >"$3.rc"
}

# The scripts start first: the browser and server tests are the longest, so the short
# cmocka programs fill the other slot meanwhile.
for s in $clis; do rm -f "$(clilog "$s").rc"; done
for t in $bins; do rm -f "$(binlog "$t").rc"; done
for job in $(for s in $clis; do echo "cli:$s"; done; for t in $bins; do echo "bin:$t"; done); do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  kind=${job%%:*}; path=${job#*:}
  if [ "$kind" = bin ]; then log=$(binlog "$path"); else log=$(clilog "$path"); fi
  run_one "$kind" "$path" "$log" &
done
wait

passed=0; failed=0; failures=""; : >"$build/test-times.txt.tmp"
status() { # log -> sets rc, ms (rc 125 when the program left no status: the runner died)
  rc=125; ms=0
  [ -f "$1.rc" ] && read -r rc ms <"$1.rc"
}
for t in $bins; do
  log=$(binlog "$t"); status "$log"
  echo "$ms $t" >>"$build/test-times.txt.tmp"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer report
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then failures="$failures $t"; echo "---- FAIL $t (rc=$rc)"; tail -40 "$log"; fi
done
for s in $clis; do
  log=$(clilog "$s"); status "$log"
  echo "$ms $s" >>"$build/test-times.txt.tmp"
  if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1)); failures="$failures $s"; echo "---- FAIL $s"; tail -40 "$log"; fi
done
sort -rn "$build/test-times.txt.tmp" >"$build/test-times.txt"; rm -f "$build/test-times.txt.tmp"
echo "[$build] slowest:$(head -5 "$build/test-times.txt" | awk '{printf " %s %.1fs", $2, $1 / 1000}' | sed "s#$build/tests/##g; s#tests/cli/##g")"
echo "[$build]$failures"
echo "$passed passed, $failed failed" | tee "$build/test-results.txt"
[ "$failed" -eq 0 ]
