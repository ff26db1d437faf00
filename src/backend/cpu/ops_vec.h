/* ops_vec.h — the SIMD side of the CPU ops (attention, f16 stores, GLU, RMSNorm sums),
 * shared by ops.c / ops_attn.c (dispatch) and the ISA files ops_attn_avx512.c /
 * ops_attn_avx2.c (one implementation each, compiled from ops_attn_kern.h). Internal to
 * src/backend/cpu.
 *
 * Vector attention work item (see ops_attn_kern.h for the algorithm): up to BQ consecutive
 * tokens of one sequence x the G query heads that share one KV head, over a range of cache
 * cells [ca, cb). Its rows (token-major: row r = token r / G, head r % G) are padded to
 * ATTN_RALIGN; value dims to ATTN_DALIGN.
 */
#ifndef HEARTH_CPU_OPS_VEC_H
#define HEARTH_CPU_OPS_VEC_H

#include "backend/cpu/ops.h"

#define ATTN_T 64         /* cache cells per K/V tile */
#define ATTN_TS 72        /* rows of the score and K tile buffers: ATTN_T rounded up to any
                           * micro-tile cell count (AK_CB <= 8) */
#define ATTN_RALIGN 16    /* query rows of an item are padded to a multiple of this */
#define ATTN_DALIGN 16    /* value dims are padded to a multiple of this */

/* What every item of one attention call shares (read-only during the call). */
typedef struct attn_geom {
    const be_attn *a;
    const float *q;      /* [n_tok][qs], head h at h * head_dim_k */
    int64_t qs;
    float *out;          /* [n_tok][os], head h at h * head_dim_v */
    int64_t os;
    int32_t G;           /* query heads per KV head */
    int32_t dvp;         /* head_dim_v rounded up to ATTN_DALIGN */
} attn_geom;

/* One work item. part == NULL: the item covers every visible cell of its tokens and writes
 * the normalized result to out. Otherwise it covers one chunk of cells and leaves its
 * softmax state in part: m[rp], l[rp], then o[rp][dvp] (unnormalized), rp = padded rows;
 * the caller merges the chunks in cell order. */
typedef struct attn_work {
    int32_t t0, n;       /* batch tokens t0 .. t0+n-1: one sequence, consecutive positions */
    int32_t hk;          /* KV head */
    int64_t ca, cb;      /* cells [ca, cb) of the sequence's stream */
    float *part;
} attn_work;

static inline int64_t attn_rpad(int64_t rows) {
    return (rows + ATTN_RALIGN - 1) / ATTN_RALIGN * ATTN_RALIGN;
}

/* Floats of per-thread scratch an item with rp padded rows needs (see ops_attn_kern.h):
 * q^T [dk][rp], scores [ATTN_TS][rp], K tile [ATTN_TS][dk], V tile [ATTN_T][dvp],
 * o [rp][dvp], m/l/alpha [rp], lo/hi/live flags [rp] (int32 in float slots), 16 floats of
 * slack. */
static inline size_t attn_scratch_floats(int64_t rp, int64_t dk, int64_t dvp) {
    return (size_t)(dk * rp + ATTN_TS * rp + ATTN_TS * dk + ATTN_T * dvp + rp * dvp + 6 * rp + 16);
}

/* One ISA's implementations. All pointers non-NULL. */
typedef struct cpu_vec {
    const char *name;
    /* One attention item (g, w); scratch: attn_scratch_floats(...) floats owned by the
     * calling thread. */
    void (*attn)(const attn_geom *g, const attn_work *w, float *scratch);
    /* y[i] = f16(x[i]) rounded to nearest even (same bits as hb_f32_to_f16 but for NaN
     * payloads). */
    void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n);
    /* o[i] = act(g[i]) * u[i] (act = SiLU or tanh-GELU, written as x * sigmoid(...)). */
    void (*glu)(be_glu kind, const float *g, const float *u, float *o, int64_t n);
    /* sum of x[i]^2 accumulated in double. */
    double (*sumsq)(const float *x, int64_t n);
    /* y[i] = x[i] * k * w[i] (w NULL: x[i] * k); x == y allowed. Same bits as scalar. */
    void (*scale_rows)(const float *x, float k, const float *w, float *y, int64_t n);
    /* y[i] += x[i]. Same bits as scalar. */
    void (*add)(float *y, const float *x, int64_t n);
    /* y[i] = exp(x[i]) with the vector exponential attention and GLU use: relative error
     * <= 4 ulp-ish (tested: < 5e-7) for x in [-87.3, 88.3]; below -87.33 it returns 0,
     * above 88.37 +inf. Exposed for tests. */
    void (*exp)(const float *x, float *y, int64_t n);
} cpu_vec;

#if defined(__x86_64__)
extern const cpu_vec cpu_vec_avx512;
extern const cpu_vec cpu_vec_avx2;
#endif

/* The implementation for the current cpu_isa_level(), or NULL at the scalar level (and on
 * machines without x86-64 SIMD): callers then run the scalar reference code. */
const cpu_vec *cpu_vec_get(void);

#endif
