#!/usr/bin/env bash
# hearth bench: stories260K, one prompt and one generation test as JSON with llama-bench's
# field names and the roofline fields; the table form; the note when --backend cuda falls
# back to the CPU; bad options exit 1 with one message.
set -u
S=${HEARTH_TEST_SHARED:?}
H=${HEARTH:?}
M=$S/models/stories260K.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$H" bench -m "$M" -p 16 -n 4 -r 2 -t 2 --bw-mib 64 -o json > "$tmp/o.json" || { echo "bench failed"; exit 1; }
python3 - "$tmp/o.json" <<'PY' || exit 1
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 2, rows
pp, tg = rows
for r in rows:
    for k in ("model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt",
              "n_gen", "avg_ts", "stddev_ts", "samples_ts", "avg_ns", "samples_ns"):
        assert k in r, k
    assert r["n_threads"] == 2 and len(r["samples_ts"]) == 2 and r["avg_ts"] > 0
assert (pp["n_prompt"], pp["n_gen"]) == (16, 0) and (tg["n_prompt"], tg["n_gen"]) == (0, 4)
assert tg["weight_gbps"] > 0 and tg["read_bw_gbps"] > 0 and tg["roofline_frac"] > 0
assert abs(tg["weight_gbps"] - tg["weight_bytes_per_token"] * tg["avg_ts"] / 1e9) < 1e-6 * tg["weight_gbps"] + 1e-9
PY
# --parallel: S sequences together; tokens of all of them per second, one weight read per step
"$H" bench -m "$M" -p 0 -n 3 -r 2 --bw-mib 64 --parallel 2,5 -o json > "$tmp/p.json" || { echo "parallel failed"; exit 1; }
python3 - "$tmp/p.json" <<'PY' || exit 1
import json, sys
rows = json.load(open(sys.argv[1]))
assert [(r["n_gen"], r["n_parallel"]) for r in rows] == [(3, 1), (3, 2), (3, 5)], rows
for r in rows:
    assert abs(r["weight_gbps"] - r["weight_bytes_per_token"] * r["avg_ts"] / r["n_parallel"] / 1e9) < 1e-6 * r["weight_gbps"] + 1e-9
    for ns, ts in zip(r["samples_ns"], r["samples_ts"]):
        assert abs(ts - r["n_parallel"] * 3 * 1e9 / ns) < 1e-6 * ts, (ns, ts)
PY
"$H" bench -m "$M" -p 0 -n 2 -r 1 -npl 3 | grep -q "| *tg2 x3 *|" || { echo "no tg2 x3 row"; exit 1; }
"$H" bench -m "$M" -p 8 -n 0 -r 1 -pg 4,2 > "$tmp/t.txt" || { echo "table run failed"; exit 1; }
grep -q "| *pp8 *|" "$tmp/t.txt" && grep -q "pp4+tg2" "$tmp/t.txt" || { echo "table rows missing"; cat "$tmp/t.txt"; exit 1; }
for args in "-p 8 -n 0 -o xml" "-p 0 -n 0" "-pg 1" "-p 8 -n 1 --bw-mib 3" "-n 2 --parallel 1" "-n 2 --parallel 4,x" \
            "-n 2 --parallel 300" "-n 2 --parallel ," "-n 2 --parallel 4," "-n 2 --parallel=" "-n 2 --parallel 2,3,4,5,6,7,8,9,10" "-n 0 --parallel 4"; do
  # shellcheck disable=SC2086
  if "$H" bench -m "$M" $args > /dev/null 2> "$tmp/err"; then echo "accepted: $args"; exit 1; fi
  [ "$(wc -l < "$tmp/err")" -eq 1 ] || { echo "not one message for $args:"; cat "$tmp/err"; exit 1; }
done
# a GPU asked for that this build or machine cannot give: the CPU runs it, and stderr says
# so once (not once per test or per model)
"$H" bench -m "$M" -m "$M" --backend cuda -p 4 -n 2 -r 1 > "$tmp/t.txt" 2> "$tmp/err" || { echo "cuda fallback failed"; exit 1; }
[ "$(grep -c "running on the CPU" "$tmp/err")" -eq 1 ] || { echo "no single fallback note:"; cat "$tmp/err"; exit 1; }
grep -q "| CPU " "$tmp/t.txt" || { echo "fallback rows do not say CPU"; cat "$tmp/t.txt"; exit 1; }
if "$H" bench -m "$tmp/none.gguf" -p 4 -n 0 > /dev/null 2> "$tmp/err"; then echo "missing model accepted"; exit 1; fi
if "$H" bench -p 4 2> "$tmp/err"; then echo "no model accepted"; exit 1; fi
echo ok
