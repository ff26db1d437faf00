#!/usr/bin/env python3
"""Reads a decode-step trace written by a CUDA_TRACE=1 build (HEARTH_CUDA_TRACE=file, see
docs/cuda.md "Tracing a decode step") and prints the kernels in the order their PDL waits
returned: when each grid's first/last block arrived, when its wait returned, and the time
to the next kernel's wait (the kernel's share of the step's critical path), then the sum
per kernel (source file:line of its cu_pdl_wait, grid size). Kernels built with
CU_TR_ENTRY (their "arrive" is the block's start, not its arrival at the wait) and
CU_TR_MARK(k) also get a line of averages: start after the previous kernel's wait, start
to wait, share, and each mark of block 0 relative to its wait (us).
usage: cuda_trace.py TRACE [N_ROWS_TO_LIST]"""
import collections
import sys


def marks(rows):
    agg = collections.defaultdict(list)
    for i, (w0, f, ln, grid, blk, e0, e1, w1, mk) in enumerate(rows):
        if not any(mk):
            continue
        nxt = rows[i + 1][0] if i + 1 < len(rows) else w1
        prev = rows[i - 1][0] if i > 0 else w0
        agg[f"{f}:{ln} grid {grid} x {blk}"].append(
            ((e0 - prev) / 1e3, (w0 - e0) / 1e3, (nxt - w0) / 1e3, [(x - w0) / 1e3 if x else None for x in mk]))
    for k, v in agg.items():
        n = len(v)
        ms = []
        for j in range(9):
            vals = [x[3][j] for x in v if x[3][j] is not None]
            if vals:
                ms.append(f"{'m%d' % j if j < 8 else 'end'} {sum(vals) / len(vals):5.2f}")
        print(f"{k:40s} n={n:3d} start {sum(x[0] for x in v) / n:5.2f} to wait {sum(x[1] for x in v) / n:5.2f} "
              f"share {sum(x[2] for x in v) / n:5.2f} | {' '.join(ms)}")


def main():
    rows = []
    for line in open(sys.argv[1]):
        p = line.split()
        if len(p) < 8:
            continue
        f = p[0].split('/')[-1]
        ln, grid, blk, e0, e1, w0, w1 = map(int, p[1:8])
        mk = list(map(int, p[8:16])) if len(p) >= 16 else [0] * 8
        mk.append(int(p[16]) if len(p) >= 17 else 0)  # the grid's last block end (CU_TR_FLUSH kernels)
        rows.append((w0, f, ln, grid, blk, e0, e1, w1, mk))
    if not rows:
        sys.exit("no trace records")
    rows.sort()
    t0 = min(r[5] for r in rows)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    tot = {}
    for i, (w0, f, ln, grid, blk, e0, e1, w1, mk) in enumerate(rows):
        nxt = rows[i + 1][0] if i + 1 < len(rows) else w1
        key = f"{f}:{ln} grid {grid} x {blk}"
        s = tot.setdefault(key, [0, 0])
        s[0] += nxt - w0
        s[1] += 1
        if i < n:
            print(f"{f}:{ln:<4d} grid {grid:6d} x {blk:4d}  arrive {(e0 - t0) / 1e3:8.2f}..{(e1 - t0) / 1e3:8.2f}"
                  f"  wait done {(w0 - t0) / 1e3:8.2f}..{(w1 - t0) / 1e3:8.2f}  -> next {(nxt - w0) / 1e3:6.2f} us"
                  + (f"  last end {(mk[8] - t0) / 1e3:8.2f}" if mk[8] else ""))
    print(f"span {(rows[-1][7] - t0) / 1e3:.1f} us, {len(rows)} kernels")
    for k, (s, c) in sorted(tot.items(), key=lambda x: -x[1][0]):
        print(f"{k:44s} n={c:4d} sum={s / 1e3:8.1f} us avg={s / c / 1e3:6.2f} us")
    marks(rows)


if __name__ == "__main__":
    main()
