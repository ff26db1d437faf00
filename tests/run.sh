#!/usr/bin/env bash
# Runs every test binary in BUILD/tests (cmocka) and every tests/cli/*.sh script against
# BUILD/hearth, then prints "N passed, N failed" and writes it to BUILD/test-results.txt.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ ! -d ../shared ]; then
  echo "tests: ../shared (fixtures and models) is missing next to the project; it is required" >&2
  echo "0 passed, 1 failed" | tee "$build/test-results.txt"
  exit 1
fi
passed=0; failed=0; failures=""
export HEARTH_TEST_SHARED="$top/../shared" HEARTH="$top/$build/hearth"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $(find "$build/tests" -type f -perm -u+x 2>/dev/null | sort); do
  log="$t.log"
  "$t" >"$log" 2>&1; rc=$?
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer report
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then failures="$failures $t"; echo "---- FAIL $t (rc=$rc)"; tail -40 "$log"; fi
done
for s in tests/cli/*.sh; do
  [ -f "$s" ] || continue
  log="$build/tests/cli-$(basename "$s").log"
  mkdir -p "$build/tests"
  if bash "$s" >"$log" 2>&1; then passed=$((passed + 1)); else
    failed=$((failed + 1)); failures="$failures $s"; echo "---- FAIL $s"; tail -40 "$log"; fi
done
echo "[$build]$failures"
echo "$passed passed, $failed failed" | tee "$build/test-results.txt"
[ "$failed" -eq 0 ]
