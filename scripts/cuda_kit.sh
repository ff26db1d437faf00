#!/usr/bin/env bash
# cuda_kit.sh — packs what scripts/cuda_check.sh needs on a GPU machine that cannot build
# hearth (no Debian -dev packages there, no network): the CUDA build's binaries (stripped),
# the shared libraries they load that are not glibc's, and the parts of ../shared the GPU
# checks read. Run here after the CUDA build, then carry the kit folder to the GPU machine
# and run `KIT=<folder> scripts/cuda_check.sh ...` there (docs/cuda.md, "Tests"); the folder
# holds one kit.tar.xz, which cuda_check.sh unpacks into /tmp/hearth-kit.
#   scripts/cuda_kit.sh [BUILD_DIR [KIT_DIR]]      defaults: build-cuda, .devkit
# The folder is rebuilt each time (KIT_MODELS: fixture models to take, by name; a model
# without its fixtures is useless to test_logits, which only checks the fixtures present).
# Also packed: BASELINE=path/to/hearth as build/hearth_b (and BASELINE2 as build/hearth_c),
# for interleaved A/B rounds.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bld=${1:-build-cuda}
kit=${2:-.devkit}
shared=${HEARTH_TEST_SHARED:-$top/../shared}
[ -x "$bld/hearth" ] || { echo "cuda_kit: no $bld/hearth (build it with make CUDA=1 BUILD=$bld)" >&2; exit 1; }
[ -d "$shared/models" ] || { echo "cuda_kit: no shared data at $shared" >&2; exit 1; }
# Every program the GPU checks run must exist and be linked after the library it uses: a
# build cut short (e.g. `make ... | head`, whose SIGPIPE stops make mid-link) would leave
# stale or missing test programs, and the GPU call would test old code or fail with 127.
for f in hearth tests/golden/test_logits tests/unit/test_engine $(cd "$bld" && ls tests/cuda/test_cuda_* 2>/dev/null | grep -v '\.'); do
  if [ ! -x "$bld/$f" ]; then echo "cuda_kit: $bld/$f is missing (build every CUDA target first)" >&2; exit 1; fi
  if [ "$bld/libhearth.a" -nt "$bld/$f" ]; then echo "cuda_kit: $bld/$f is older than $bld/libhearth.a (rebuild)" >&2; exit 1; fi
done
rm -rf "$kit"
mkdir -p "$kit/build/tests/golden" "$kit/build/tests/unit" "$kit/build/tests/cuda" "$kit/ext/lib" \
         "$kit/shared/models/random" "$kit/shared/fixtures/logits" "$kit/shared/vocab"
for f in hearth mkmodel cuda_bench_model cuda_bench_kernels; do
  [ -x "$bld/$f" ] && strip -o "$kit/build/$f" "$bld/$f"
done
[ -n "${BASELINE:-}" ] && strip -o "$kit/build/hearth_b" "$BASELINE"
[ -n "${BASELINE2:-}" ] && strip -o "$kit/build/hearth_c" "$BASELINE2"
for t in golden/test_logits unit/test_engine; do [ -x "$bld/tests/$t" ] && strip -o "$kit/build/tests/$t" "$bld/tests/$t"; done
# KIT_TESTS: the CUDA test programs to take, by name (default all; each carries the whole
# library's fatbin, ~9 MB, and the device tool carries 64 MiB in all)
for t in "$bld"/tests/cuda/test_cuda_*; do
  n=$(basename "$t")
  case " ${KIT_TESTS:-$n} " in *" $n "*) [ -x "$t" ] && strip -o "$kit/build/tests/cuda/$n" "$t" ;; esac
done
# every non-glibc library the binaries load (the GPU machine's image lacks most of them)
ldd "$kit"/build/hearth "$kit"/build/tests/golden/test_logits 2>/dev/null | awk '/=>/ {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
  while read -r l; do cp -L "$l" "$kit/ext/lib/"; done
cp "$shared/models/stories260K.gguf" "$kit/shared/models/"
cp "$shared/vocab/ggml-vocab-llama-spm.gguf" "$kit/shared/vocab/"
cp -r "$shared/fixtures/generation" "$shared/fixtures/embeddings" "$kit/shared/fixtures/"
cp -r "$shared/fixtures/logits/seqs" "$shared/fixtures/logits/"stories260K.* "$kit/shared/fixtures/logits/"
for m in ${KIT_MODELS:-llama.Q4_0 llama.Q4_K_M llama.Q8_0 llama.F16 llama.F32 phi3.F16 gemma2.Q4_K_M qwen3.Q8_0}; do
  cp "$shared/models/random/$m.gguf" "$kit/shared/models/random/"
  cp "$shared/fixtures/logits/$m".* "$kit/shared/fixtures/logits/"
done
# one compressed file: the binaries are mostly fatbin, and the device tool carries 64 MiB
tar cJf "$kit.tar.xz" -C "$kit" build ext shared
rm -rf "$kit"
mkdir -p "$kit"
mv "$kit.tar.xz" "$kit/kit.tar.xz"
ls -l "$kit/kit.tar.xz"
