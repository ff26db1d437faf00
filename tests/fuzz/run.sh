#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_<name>.c with clang's libFuzzer (+ASan/UBSan) against an
# instrumented libhearth and runs each for FUZZ_SECONDS (default 20). Seed inputs come from
# the paths listed in tests/fuzz/<name>.seeds (one directory or file per line, relative to
# the project root). Prints "N passed, N failed" (one test per target).
set -u
out=${1:-build-fuzz}
secs=${FUZZ_SECONDS:-20}
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
mkdir -p "$out"
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang not found; skipping fuzz targets"
  echo "0 passed, 0 failed" | tee "$out/test-results.txt"
  exit 0
fi
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
make --no-print-directory CC=clang BUILD="$out" OPT=-O1 SAN="$san -fsanitize=fuzzer-no-link" "$out/libhearth.a" >"$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log"; echo "0 passed, 1 failed" | tee "$out/test-results.txt"; exit 1; }
passed=0; failed=0
cflags="-std=c17 -D_GNU_SOURCE -Iinclude -Isrc -g $(pkg-config --cflags jansson libpcre2-8 libutf8proc 2>/dev/null)"
libs="$(pkg-config --libs jansson libpcre2-8 libutf8proc libmicrohttpd libcurl libcrypto zlib 2>/dev/null) -lm -pthread"
for src in tests/fuzz/fuzz_*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c)
  bin="$out/$name"
  if ! clang $cflags $san -fsanitize=fuzzer "$src" "$out/libhearth.a" $libs -o "$bin" >"$out/$name.build.log" 2>&1; then
    cat "$out/$name.build.log"; failed=$((failed + 1)); continue
  fi
  corpus="$out/corpus/$name"; mkdir -p "$corpus"
  seeds=()
  if [ -f "tests/fuzz/$name.seeds" ]; then
    while read -r s; do [ -n "$s" ] && [ -e "$s" ] && seeds+=("$s"); done < "tests/fuzz/$name.seeds"
  fi
  if ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$out/$name-" "$corpus" "${seeds[@]}" >"$out/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "fuzz: $name ok ($(grep -c . "$out/$name.log") log lines)"
  else
    failed=$((failed + 1)); echo "---- FAIL fuzz $name"; tail -40 "$out/$name.log"
  fi
done
echo "$passed passed, $failed failed" | tee "$out/test-results.txt"
[ "$failed" -eq 0 ]
