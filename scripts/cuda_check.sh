#!/usr/bin/env bash
# cuda_check.sh — on a GPU machine: build with CUDA=1, run the CUDA kernel tests and the
# kernel benchmark, and (when models are given) the model-level checks. Logs go to $OUT
# (or ./cuda-logs) so they survive the machine; a short table is printed last.
#   scripts/cuda_check.sh [kernels] [bench] [fixtures] [models] [serve] [ab]
# MEGA=1: fixtures and models also run with the persistent decode kernel (HEARTH_CUDA_MEGA=1).
# KIT=dir: no build; binaries, libraries and shared data from a folder made by
#   scripts/cuda_kit.sh on a machine that can build (the GPU machine here has no -dev packages).
# ab: interleaved tg128 rounds of hearth variants on the TinyLlama files (the way to compare
#   builds or switches: machines differ by a few percent, rounds in one call do not):
#   RUNS="hearth_b: hearth: hearth:HEARTH_CUDA_GU3=0,HEARTH_CUDA_X=1" TYPES="q4_0 q8_0" ROUNDS=3
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${OUT:-$top/cuda-logs}
mkdir -p "$out"
export PATH=/usr/local/cuda/bin:$PATH
kit=${KIT:-}
if [ -n "$kit" ]; then
  [ -f "$kit/kit.tar.xz" ] || { echo "cuda_check: no $kit/kit.tar.xz (scripts/cuda_kit.sh makes it)"; exit 1; }
  rm -rf /tmp/hearth-kit && mkdir -p /tmp/hearth-kit && tar xJf "$kit/kit.tar.xz" -C /tmp/hearth-kit || exit 1
  kit=/tmp/hearth-kit
  export PREBUILT=1 HEARTH_TEST_SHARED=${HEARTH_TEST_SHARED:-$kit/shared}
fi
# cmocka may be carried in ext/ (header + shared library) on machines without it; a kit
# carries every library its binaries load
if [ -n "$kit" ]; then
  export LD_LIBRARY_PATH=$kit/ext/lib
elif [ -d ext ]; then
  export CPATH=$top/ext/include LIBRARY_PATH=$top/ext/lib LD_LIBRARY_PATH=$top/ext/lib
  [ -e ext/lib/libcmocka.so ] || ln -s libcmocka.so.0 ext/lib/libcmocka.so
fi
B=${kit:-$top}/build
what=${*:-kernels bench}
failed=0
# run_test LOG CMD...: runs a cmocka program, prints its exit status and OK/FAILED counts,
# and counts a failure (the script's exit status) when it did not exit 0.
run_test() {
  local log=$1 name rc
  shift
  name=$(basename "$log" .log)
  "$@" > "$log" 2>&1
  rc=$?
  echo "$name: rc=$rc $(grep -c '^\[       OK' "$log") ok, $(grep -c '^\[  FAILED' "$log") failed lines"
  [ "$rc" = 0 ] || { failed=$((failed + 1)); grep -E '^\[  (ERROR|FAILED)' "$log" | head -5; }
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
# Binaries built elsewhere (same x86-64 ABI) may be carried in build/ with PREBUILT=1.
if [ "${PREBUILT:-0}" != 1 ]; then
  t0=$(date +%s)
  cuda_tests=$(ls tests/cuda/test_cuda_*.c | sed 's|^tests/|build/tests/|; s|\.c$||')
  make CUDA=1 -j16 all $cuda_tests build/cuda_bench_kernels build/cuda_bench_model >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi
for w in $what; do
  case $w in
    kernels) # every CUDA test program (kernels against CPU references, fused paths against unfused)
      for t in $B/tests/cuda/test_cuda_*; do
        run_test "$out/$(basename "$t").log" "$t"
      done ;;
    bench)   $B/cuda_bench_kernels 100 2>&1 | tee "$out/bench.log" ;;
  esac
done

# Model-level checks on the GPU (the test programs pick the GPU by default when one is
# usable): every golden logit fixture present under $HEARTH_TEST_SHARED, the engine tests,
# the CLI logits test; then the same logits on CPU and GPU must differ (proof the GPU ran)
# while both pass.
for w in $what; do
  [ "$w" = fixtures ] || continue
  export HEARTH_TEST_SHARED=${HEARTH_TEST_SHARED:-$top/shared} HEARTH=$B/hearth
  for t in $B/tests/golden/test_logits $B/tests/unit/test_engine; do
    run_test "$out/$(basename "$t").log" "$t"
  done
  grep -E "nrmse|MISMATCH|FAIL|^ *[a-z0-9]+\.[A-Z0-9_]+ " "$out/test_logits.log" | head -80
  if [ "${MEGA:-0}" = 1 ]; then
    for t in $B/tests/golden/test_logits $B/tests/unit/test_engine; do
      run_test "$out/$(basename "$t")_mega.log" env HEARTH_CUDA_MEGA=1 "$t"
    done
  fi
  # The CLI test asserts that chunked batches give the same bytes as one batch: a CPU
  # property (on the GPU a long batch takes the prefill GEMM and 5-token chunks the decode
  # mat-vec, which round differently within the fixtures' bounds), so it runs on the CPU.
  HEARTH_BACKEND=cpu bash tests/cli/logits.sh > "$out/cli_logits.log" 2>&1 && echo "cli logits.sh (cpu): ok" ||
    { echo "cli logits.sh (cpu): FAIL"; tail -5 "$out/cli_logits.log"; failed=$((failed + 1)); }
  ids=$(cat "$HEARTH_TEST_SHARED/fixtures/logits/seqs/b.txt")
  HEARTH_BACKEND=cuda $B/hearth logits "$HEARTH_TEST_SHARED/models/stories260K.gguf" --tokens "$ids" --out "$out/gpu.f32" > /dev/null
  HEARTH_BACKEND=cpu $B/hearth logits "$HEARTH_TEST_SHARED/models/stories260K.gguf" --tokens "$ids" --out "$out/cpu.f32" > /dev/null
  cmp -s "$out/gpu.f32" "$out/cpu.f32" && echo "WARNING: GPU and CPU logits are bit-identical (GPU not used?)" || echo "GPU and CPU logits differ in rounding (GPU in use)"
done

# TinyLlama-1.1B-shape random-weight models of $TYPES in /tmp/tl (made here by mkmodel,
# never committed), kept between modes of one run.
make_tl() {
  mkdir -p /tmp/tl
  for t in ${TYPES:-q4_0 q4_k_m q8_0 f16}; do
    [ -f /tmp/tl/tl-$t.gguf ] || "${MKMODEL:-$B/mkmodel}" --shape tinyllama --type "$t" -t 16 \
      --vocab "${VOCAB:-${HEARTH_TEST_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf}" -o /tmp/tl/tl-$t.gguf \
      > /dev/null 2>&1 || echo "mkmodel $t failed"
  done
}

# Speed: pp512 / tg128 / bandwidth fraction / batch-of-8 check of those models, on the GPU.
for w in $what; do
  [ "$w" = models ] || continue
  make_tl
  $B/cuda_bench_model /tmp/tl/tl-*.gguf 2>&1 | tee "$out/bench_model.log"
  grep -q 'batch8==alone: NO' "$out/bench_model.log" && { echo "models: batch of 8 != alone"; failed=$((failed + 1)); }
  [ "${MEGA:-0}" = 1 ] && HEARTH_CUDA_MEGA=1 $B/cuda_bench_model /tmp/tl/tl-*.gguf 2>&1 | tee "$out/bench_model_mega.log"
done

# The server on the GPU (serve): a stored copy of a float fixture model, /api/generate then
# /api/embed (the embedding context must reuse the generation context's device weights:
# the placement line says "shared with another context"), /api/ps's size_vram (the whole
# model on the GPU: equal to size) and `hearth ps` saying 100% GPU.
http_post() { # port path json -> body on stdout (HTTP/1.0 over bash's /dev/tcp; no curl needed)
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'POST %s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$2" "${#3}" "$3" >&3
  sed '1,/^\r$/d' <&3; exec 3<&-
}
for w in $what; do
  [ "$w" = serve ] || continue
  export HEARTH_TEST_SHARED=${HEARTH_TEST_SHARED:-$top/shared}
  st=$(mktemp -d) port=${SERVE_PORT:-11599}
  printf 'FROM %s\n' "$HEARTH_TEST_SHARED/models/random/llama.F16.gguf" > "$st/Modelfile"
  HEARTH_MODELS=$st/m $B/hearth create tiny -f "$st/Modelfile" > /dev/null 2>&1 || { echo "serve: create failed"; failed=$((failed + 1)); continue; }
  HEARTH_MODELS=$st/m $B/hearth serve --host 127.0.0.1:$port -v > "$out/serve.log" 2>&1 &
  spid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  http_post $port /api/generate '{"model":"tiny","prompt":"hi","stream":false,"options":{"num_predict":4}}' > "$out/serve_gen.json"
  http_post $port /api/embed '{"model":"tiny","input":"hello"}' > "$out/serve_embed.json"
  exec 3<>"/dev/tcp/127.0.0.1/$port"; printf 'GET /api/ps HTTP/1.0\r\n\r\n' >&3; sed '1,/^\r$/d' <&3 > "$out/serve_ps.json"; exec 3<&-
  HEARTH_HOST=127.0.0.1:$port $B/hearth ps > "$out/serve_ps.txt" 2>&1
  kill $spid; wait $spid 2>/dev/null
  ok() { if eval "$2"; then echo "serve: ok   $1"; else echo "serve: FAIL $1"; failed=$((failed + 1)); fi; }
  ok "generate answered" "grep -q '\"done\":true' '$out/serve_gen.json'"
  ok "embed answered" "grep -q '\"embeddings\"' '$out/serve_embed.json'"
  ok "the embedding context reused the device weights" "grep -q 'shared with another context' '$out/serve.log'"
  ok "/api/ps size_vram == size (all on the GPU)" "python3 -c 'import json,sys; m=json.load(open(\"$out/serve_ps.json\"))[\"models\"][0]; sys.exit(m[\"size_vram\"] != m[\"size\"] or m[\"size\"] == 0)'"
  ok "hearth ps says 100% GPU" "grep -q '100% GPU' '$out/serve_ps.txt'"
  grep -i placement "$out/serve.log" | head -4
  rm -rf "$st"
done

# Interleaved A/B rounds (see the header): per round, per file, every variant of RUNS
# (binary:VAR=1,VAR2=2) runs `hearth bench -p 0 -n 128 -r 3` once.
for w in $what; do
  [ "$w" = ab ] || continue
  make_tl
  for r in $(seq "${ROUNDS:-3}"); do
    for t in ${TYPES:-q4_0 q4_k_m q8_0 f16}; do
      for run in ${RUNS:-hearth:}; do
        bin=${run%%:*} vars=${run#*:}
        tg=$(env ${vars//,/ } "$B/$bin" bench --backend cuda -m /tmp/tl/tl-$t.gguf -p 0 -n 128 -r 3 2>&1 |
             grep tg128 | grep -oE '[0-9]+\.[0-9]+ ± [0-9.]+' | head -1)
        echo "round $r $t $bin [$vars] tg128 $tg" | tee -a "$out/ab.log"
      done
    done
  done
done
[ "$failed" = 0 ] || { echo "cuda_check: $failed check(s) failed"; exit 1; }
