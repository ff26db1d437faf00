/* cpu.h — CPU backend primitives: a persistent thread pool and the weight matrix multiply
 * that dominates inference time.
 *
 * Contract for the fast kernels (src/backend/cpu/): cpu_matmul must give the same result as
 * the scalar reference (src/quant: quantize activations to the type's vec_dot_type, then
 * quant_vec_dot per row) up to float summation order. Kernels are chosen at run time from
 * what the CPU and OS allow; the reference path always remains.
 */
#ifndef HEARTH_CPU_H
#define HEARTH_CPU_H

#include <stdint.h>

#include "base/base.h"
#include "quant/quant.h"

/* ---- thread pool -----------------------------------------------------------------------
 * Threads are created once; cpu_pool_run wakes them, runs fn(ctx, ith, nth) on every
 * thread (the calling thread is ith 0) and returns when all have finished. Not re-entrant:
 * one cpu_pool_run at a time per pool. */
typedef struct cpu_pool cpu_pool;
typedef void (*cpu_task_fn)(void *ctx, int ith, int nth);

int cpu_pool_new(int n_threads, cpu_pool **out, hb_err *err); /* caller frees with cpu_pool_free */
void cpu_pool_free(cpu_pool *p);
int cpu_pool_n_threads(const cpu_pool *p);
void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *ctx);

/* ---- weights -----------------------------------------------------------------------------
 * A 2-D weight [n_rows][n_cols] of `type`, rows row_bytes apart, data borrowed from the
 * model mapping. cpu_weight_prepare may build a repacked copy the kernels prefer (owned by
 * the weight, freed by cpu_weight_release). */
typedef struct cpu_weight {
    uint32_t type;
    int64_t n_rows, n_cols;
    size_t row_bytes;
    const void *data;        /* borrowed: [n_rows][row_bytes] */
    void *packed;            /* owned, kernel-specific layout, or NULL */
    int packed_kind;         /* kernel-specific tag, 0 = none */
} cpu_weight;

int cpu_weight_prepare(cpu_weight *w, hb_err *err);
void cpu_weight_release(cpu_weight *w);

/* Scratch memory for quantized activations; grown on demand, owned by the caller's
 * context (one per context, not shared between threads running different matmuls). */
typedef struct cpu_scratch {
    void *buf;
    size_t cap;
} cpu_scratch;
void cpu_scratch_free(cpu_scratch *s);

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok, r < n_rows.
 * x: [n_tok][n_cols] f32 (contiguous), y: [n_tok][ldy] f32 with ldy >= n_rows.
 * Returns HEARTH_E_NOMEM if scratch cannot grow, HEARTH_E_UNSUPPORTED for a non-compute type. */
int cpu_matmul(cpu_pool *pool, const cpu_weight *w, const float *x, int64_t n_tok,
               float *y, int64_t ldy, cpu_scratch *scratch);

#endif
