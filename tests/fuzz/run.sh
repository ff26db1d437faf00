#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_<name>.c with clang's libFuzzer (+ASan/UBSan) against an
# instrumented libhearth and runs each for FUZZ_SECONDS (default 20). Seed inputs come from
# the paths listed in tests/fuzz/<name>.seeds (one directory or file per line, relative to
# the project root). Prints "N passed, N failed" (one test per target).
#   tests/fuzz/run.sh [OUT [build|run]]   build: only build; run: only run; default both.
# A library that does not build fails the build step; a target that does not build is
# left without a binary and counted as a failed test by the run step.
# FUZZ_JOBS targets run at a time (default 2; each is single-threaded and runs for its full
# FUZZ_SECONDS of wall time whatever the others do, so two cores give each the same work).
# The library is built by make, which joins the caller's jobserver when run from a make
# recipe marked recursive ("+"), so `make -j2 test` compiles it alongside the other builds.
set -u
out=${1:-build-fuzz}
mode=${2:-all}
secs=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-2}
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
mkdir -p "$out"
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang not found; skipping fuzz targets"
  echo "0 passed, 0 failed" | tee "$out/test-results.txt"
  exit 0
fi
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
targets=$(for src in tests/fuzz/fuzz_*.c; do [ -f "$src" ] && basename "$src" .c; done)

# Built first, so that a parallel make overlaps the rest with it: this file alone takes about
# four minutes under clang's UBSan on the 2-core CI machine (gcc or clang without UBSan: ~30 s).
slow_first="src/backend/cpu/matmul_avx512.c"

build() {
  rm -f "$out/test-results.txt"
  local first="" f
  for f in $slow_first; do [ -f "$f" ] && first="$first $out/obj/${f%.c}.o"; done
  make --no-print-directory CC=clang BUILD="$out" OPT=-O1 SAN="$san -fsanitize=fuzzer-no-link" $first "$out/libhearth.a" >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log"; echo "0 passed, 1 failed" | tee "$out/test-results.txt"; return 1; }
  local cflags libs name
  cflags="-std=c17 -D_GNU_SOURCE -Iinclude -Isrc -g $(pkg-config --cflags jansson libpcre2-8 libutf8proc 2>/dev/null)"
  libs="$(pkg-config --libs jansson libpcre2-8 libutf8proc libmicrohttpd libcurl libcrypto zlib 2>/dev/null) -lm -pthread"
  for name in $targets; do
    rm -f "$out/$name"
    if ! clang $cflags $san -fsanitize=fuzzer "tests/fuzz/$name.c" "$out/libhearth.a" $libs -o "$out/$name" >"$out/$name.build.log" 2>&1; then
      cat "$out/$name.build.log"   # left without a binary: run() counts it as failed
    fi
  done
  return 0
}

# One target: its output to OUT/NAME.log, then its exit status to OUT/NAME.rc.
fuzz_one() {
  local name=$1 bin="$out/$1" corpus="$out/corpus/$1" seeds=() s
  mkdir -p "$corpus"
  if [ -f "tests/fuzz/$name.seeds" ]; then
    while read -r s; do [ -n "$s" ] && [ -e "$s" ] && seeds+=("$s"); done < "tests/fuzz/$name.seeds"
  fi
  ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$out/$name-" "$corpus" "${seeds[@]}" >"$out/$name.log" 2>&1 </dev/null
  echo $? >"$out/$name.rc"
}

run() {
  local name passed=0 failed=0 rc
  for name in $targets; do
    rm -f "$out/$name.rc"
    [ -x "$out/$name" ] || continue   # not built: reported below
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    fuzz_one "$name" &
  done
  wait
  for name in $targets; do
    rc=125; [ -f "$out/$name.rc" ] && read -r rc <"$out/$name.rc"
    if [ ! -x "$out/$name" ]; then
      failed=$((failed + 1)); echo "---- FAIL fuzz $name (not built)"
    elif [ "$rc" -eq 0 ]; then
      passed=$((passed + 1)); echo "fuzz: $name ok ($(grep -c . "$out/$name.log") log lines)"
    else
      failed=$((failed + 1)); echo "---- FAIL fuzz $name"; tail -40 "$out/$name.log"
    fi
  done
  echo "$passed passed, $failed failed" | tee "$out/test-results.txt"
  [ "$failed" -eq 0 ]
}

case "$mode" in
  build) build ;;
  run) run ;;
  *) build && run ;;
esac
