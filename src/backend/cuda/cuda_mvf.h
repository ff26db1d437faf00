/* cuda_mvf.h — float-weight (F32/F16/BF16) matrix x vector products at decode (cu_mvf.cu),
 * C interface for cu_matmul.cu and be_cuda.c.
 *
 * One launch multiplies up to three weights of one type and row length by the same
 * activations (q/k/v, gate/up) for any number of tokens (groups of 8 per launch), with
 * optional fusions that replace neighbouring ops of a decode step:
 *  - residual add: add_to[i][t][r] += y (as cuda_matmul_ex);
 *  - RMSNorm prologue: x is the norm's input; every block normalizes it into its own shared
 *    memory (the same arithmetic as cuda_mvf_rmsnorm), block 0 also writes the normalized
 *    rows to norm_y so later readers of the norm's output see what they saw before;
 *  - GLU epilogue: w[0] = gate, w[1] = up (same row count); the warp that computes gate row i
 *    and up row i also writes glu_out[t][i] = act(gate) * up.
 * Results for one token do not depend on how many tokens are multiplied together.
 * All pointers are device memory; nothing is owned by the call.
 */
#ifndef HEARTH_CUDA_MVF_H
#define HEARTH_CUDA_MVF_H

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuda_mvf_call {
    int n;                        /* weights, 1..3: same type (F32/F16/BF16) and n_cols */
    const cuda_weight *w[3];
    float *y[3];                  /* y[i][t * ldy[i] + r] */
    int64_t ldy[3];
    float *add_to[3];             /* NULL or: add_to[i][t * ldy[i] + r] += result */
    const float *x;               /* [n_tok] rows x_stride apart (the norm's input with norm) */
    int64_t x_stride;
    int64_t n_tok;
    int norm;                     /* 1: RMSNorm prologue (needs cuda_mvf_norm_ok) */
    const float *norm_w;          /* n_cols norm weights or NULL */
    float eps;
    float *norm_y;                /* NULL or: normalized rows, norm_ys apart (must not overlap x) */
    int64_t norm_ys;
    int glu;                      /* 0; 1 SiLU; 2 GELU (tanh): n == 2, equal row counts */
    float *glu_out;               /* glu_out[t * glu_os + r] */
    int64_t glu_os;
    int add_early;                /* add_to may be read before the PDL wait (cuda_mm_opt.add_early) */
} cuda_mvf_call;

/* Runs the product(s) described by m (checks its shapes first). */
int cuda_mvf(cuda_ctx *c, const cuda_mvf_call *m, hb_err *err);

/* True when a product of w over n_tok tokens can take the RMSNorm prologue (the fast
 * kernel's alignment, and the normalized activations fit in shared memory). */
int cuda_mvf_norm_ok(const cuda_weight *w, int64_t n_tok);

/* Whether a product of w over x (rows xs floats apart) can take a folded norm in the
 * four-row kernel's epilogue (x times the norm weights in the dot products, the norm factor
 * applied to the sums: no prologue); a call with norm = 1 then needs no cuda_mvf_norm_ok. */
int cuda_mvf_enorm_ok(const cuda_knobs *k, const cuda_weight *w, const float *x, int64_t xs);

/* How many products ran in the persistent one-token kernel on c (HEARTH_CUDA_MVF_PS;
 * a testing aid). */
uint64_t cuda_mvf_ps_launches(const cuda_ctx *c);
/* How many ran in the persistent batch kernel (HEARTH_CUDA_MVF_PB; a testing aid). */
uint64_t cuda_mvf_pb_launches(const cuda_ctx *c);

/* RMSNorm as cuda_rmsnorm, with the arithmetic of the mat-vec's prologue (so a folded and a
 * standalone norm give the same bits): several blocks per row when x and y do not overlap. */
int cuda_mvf_rmsnorm(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                     const float *w, float eps, hb_err *err);

#ifdef __cplusplus
}
#endif

#endif
