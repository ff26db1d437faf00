#!/usr/bin/env bash
# cuda_profile.sh — per-kernel GPU time of a few decode steps (Nsight Compute, clocks left
# alone), summed by kernel name. Needs a model: scripts/cuda_profile.sh MODEL.gguf
set -u
out=${OUT:-/tmp}
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || ls /usr/local/cuda/bin/ncu)
"$ncu" --clock-control none --graph-profiling node --metrics gpu__time_duration.sum --csv -c ${COUNT:-1200} \
  build/hearth logits "$1" --tokens 1,2,3,4 --greedy 3 > "$out/ncu.csv" 2> "$out/ncu.err"
python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows[1:]:
    try: v = float(r[vi].replace(",", ""))
    except ValueError: continue
    name = r[ki].split("(")[0]
    tot[name] += v; cnt[name] += 1
all_ns = sum(tot.values())
print(f"total {all_ns/1e3:.1f} us over {sum(cnt.values())} kernels")
for k, v in tot.most_common(25):
    print(f"{v/1e3:10.1f} us  {cnt[k]:5d} x {v/cnt[k]/1e3:7.2f} us  {k}")
PY
