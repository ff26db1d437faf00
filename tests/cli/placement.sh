#!/usr/bin/env bash
# Layer placement from the CLI without a GPU: HEARTH_BACKEND=cpu-split makes a second CPU
# backend stand in for the accelerator. --gpu-layers/-ngl on run, show, bench (and serve's
# help); a split run prints the placement with --verbose and generates the same greedy text
# as the CPU alone (the greedy fixture); bad layer counts exit 1 with one clear message.
set -u
H=${HEARTH:?HEARTH must point to the hearth binary}
S=${HEARTH_TEST_SHARED:?}
M=$S/models/stories260K.gguf
[ -f "$M" ] || { echo "missing $M"; exit 1; }
fail=0
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
unset HEARTH_GPU_LAYERS

for n in 0 2 5; do
  HEARTH_BACKEND=cpu-split "$H" run "$M" --raw "" --temp 0 -n 200 -ngl $n --verbose >"$t/g$n.txt" 2>"$t/v$n"
  check "-ngl $n: greedy 200 tokens equal the fixture" "cmp -s '$t/g$n.txt' '$S/fixtures/generation/stories260K.greedy.txt'"
done
check "--verbose prints a split placement" "grep -q 'placement: 2/5 layers on cpu, 3 on cpu, output on cpu' '$t/v2'"
check "--verbose prints an all-layers placement" "grep -q 'placement: 5/5 layers on cpu, output on cpu' '$t/v5'"
HEARTH_BACKEND=cpu-split HEARTH_GPU_LAYERS=3 "$H" run "$M" --raw "" --temp 0 -n 20 --verbose >/dev/null 2>"$t/env"
check "HEARTH_GPU_LAYERS is honoured" "grep -q 'placement: 3/5 layers' '$t/env'"

"$H" show --verbose "$M" >"$t/show" || fail=1
check "show --verbose prints the placement" "grep -q '^  placement  *5/5 layers on cpu, output on cpu' '$t/show'"
HEARTH_BACKEND=cpu-split "$H" show --verbose --json -ngl 4 "$M" >"$t/show.json" || fail=1
check "show --json has the planned split" "python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))[\"placement\"]; assert p[\"n_gpu_layers\"]==4 and p[\"n_layer\"]==5 and not p[\"output_on_gpu\"] and p[\"gpu_bytes\"]>0' '$t/show.json'"

HEARTH_BACKEND=cpu-split "$H" bench -m "$M" -p 8 -n 4 -r 1 -t 1 -ngl 2 --bw-mib 0 -o json >"$t/b.json" || fail=1
check "bench JSON names the split" "python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert len(r)==2 and all(x[\"n_gpu_layers\"]==2 and x[\"backends\"]==\"CPU+CPU\" for x in r)' '$t/b.json'"
"$H" bench -m "$M" -p 0 -n 4 -r 1 -t 1 --backend cpu --bw-mib 64 -o json >"$t/c.json" || fail=1
check "bench on the CPU keeps its roofline" "python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; assert r[\"backends\"]==\"CPU\" and r[\"n_gpu_layers\"]==0 and r[\"read_bw_of\"]==\"cpu\" and r[\"roofline_frac\"]>0' '$t/c.json'"
check "serve --help lists --gpu-layers" "'$H' serve --help 2>&1 | grep -q -- '--gpu-layers'"

"$H" run "$M" --raw "x" -n 1 --gpu-layers -2 >/dev/null 2>"$t/e1"; rc=$?
check "--gpu-layers -2 is refused with one message" "[ $rc -eq 1 ] && [ \$(wc -l < '$t/e1') -eq 1 ]"
HEARTH_GPU_LAYERS=lots "$H" run "$M" --raw "x" -n 1 >/dev/null 2>"$t/e2"; rc=$?
check "a bad HEARTH_GPU_LAYERS is refused clearly" "[ $rc -eq 1 ] && grep -q 'HEARTH_GPU_LAYERS=lots' '$t/e2'"
HEARTH_BACKEND=cuda "$H" run "$M" --raw "" --temp 0 -n 200 -ngl 3 >"$t/nocuda.txt" 2>"$t/note"; rc=$?
check "cuda asked on a machine without it: CPU result" "[ $rc -eq 0 ] && cmp -s '$t/nocuda.txt' '$S/fixtures/generation/stories260K.greedy.txt'"
for verb in "bench -m $M -p 8 -n 4 -r 1" "serve --host 127.0.0.1:0"; do
  timeout 20 "$H" $verb --backend gpu >/dev/null 2>"$t/e3"; rc=$?
  check "${verb%% *} --backend gpu is refused at the door" "[ $rc -eq 1 ] && [ \$(wc -l < '$t/e3') -eq 1 ] && grep -q \"unknown backend 'gpu'\" '$t/e3'"
done
exit $fail
