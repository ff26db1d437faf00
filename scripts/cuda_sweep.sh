#!/usr/bin/env bash
# cuda_sweep.sh — switch sweeps of generation speed, alone and in batches, on a GPU machine:
# for each round, file type and run, `hearth bench --backend cuda -p 0 -n 64 -r 3 -npl NPL`
# with that run's environment, one line of t/s (tg64, then tg64 xS for each S of NPL).
#   RUNS="X=0 HEARTH_CUDA_GU_T=4 HEARTH_CUDA_MVT=0,HEARTH_CUDA_PQ=1" scripts/cuda_sweep.sh
# A run is VAR=v[,VAR=v...] (X=0 for the defaults). TYPES (default "q4_0 q4_k_m q8_0"), NPL
# (default 4,8), ROUNDS (default 2; rounds interleave the runs), KIT (default .devkit: the
# folder scripts/cuda_kit.sh made, unpacked to /tmp/hearth-kit). TinyLlama-shape files are
# made in /tmp/tl by the kit's mkmodel when missing.
set -u
K=/tmp/hearth-kit
mkdir -p $K /tmp/tl && tar xJf "${KIT:-.devkit}/kit.tar.xz" -C $K || { echo "cuda_sweep: no kit" >&2; exit 1; }
export LD_LIBRARY_PATH=$K/ext/lib
types=${TYPES:-q4_0 q4_k_m q8_0}
for t in $types; do
  [ -f /tmp/tl/tl-$t.gguf ] || $K/build/mkmodel --shape tinyllama --type "$t" -t 16 \
    --vocab $K/shared/vocab/ggml-vocab-llama-spm.gguf -o /tmp/tl/tl-$t.gguf > /dev/null 2>&1 || echo "mkmodel $t failed"
done
for r in $(seq "${ROUNDS:-2}"); do
  for t in $types; do
    for v in ${RUNS:-X=0}; do
      out=$(env ${v//,/ } $K/build/hearth bench --backend cuda -m /tmp/tl/tl-$t.gguf -p 0 -n 64 -r 3 --bw-mib 0 \
              -npl "${NPL:-4,8}" 2>&1 | grep -E "tg64" | awk -F'|' '{print $8}' | tr '\n' ' ')
      echo "round $r $t $v: $out"
    done
  done
done
