/* cuda_mvr.h — the q/k/v decode product with RoPE and the KV-cache store in its epilogue
 * (cu_mvr.cu), C interface for be_cuda.c.
 *
 * One launch multiplies up to three quantized weights of one type and row length by the same
 * int8 activations (as cuda_matmul_multi, 1..8 tokens) and finishes each weight's rows by its
 * role: plain (stored as the product), q (rotated, stored), k (rotated, stored, and stored
 * into the K cache cell (seq[t], pos[t])) or v (stored, and stored into the V cache cell).
 * The result is bitwise that of cuda_matmul_multi followed by cuda_rope_kv (or
 * cuda_rope_apply2 without a cache): the same dot-product arithmetic, the same angles (in
 * double, from r->inv or a double pow), the same pair rounding and cache rounding. A token's
 * results do not depend on the other tokens of the launch.
 * All pointers are device memory; nothing is owned by the call.
 */
#ifndef HEARTH_CUDA_MVR_H
#define HEARTH_CUDA_MVR_H

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CUDA_QKVR_PLAIN = 0, CUDA_QKVR_Q = 1, CUDA_QKVR_K = 2, CUDA_QKVR_V = 3 };

typedef struct cuda_qkvr {
    const int32_t *pos, *seq; /* [n_tok] device (seq only with kv); read before the kernel's
                               * programmatic-launch wait, so no kernel just before may write them */
    const cuda_rope *rope;    /* whole heads: rope->n_rot == head_dim */
    int32_t head_dim;         /* even; q/k weights have a whole number of heads of rows */
    const cuda_kv *kv;        /* NULL: no cache store (then no role is CUDA_QKVR_V) */
    int role[3];              /* per weight, CUDA_QKVR_*; a k row r is cache element r, a v row too */
    /* Optional RMSNorm folded in (norm_x != NULL; see cuda_qkvr_norm_ok): every block
     * normalizes rows norm_x (norm_xs apart) with weight norm_w and eps and quantizes them
     * itself, and block 0 writes the normalized rows to x (the call's x, as the separate
     * norm would) and the activation scratch; the bits are those of the separate kernels. */
    const float *norm_x;
    int64_t norm_xs;
    const float *norm_w;
    float eps;
} cuda_qkvr;

/* Whether the fused product can run n_tok tokens of weight type `type` with rope r over
 * heads of head_dim and cache kv (may be NULL): quantized type with a mat-vec kernel,
 * n_tok <= 8, whole-head rotation, f16/f32 cache. */
int cuda_qkvr_ok(uint32_t type, int64_t n_tok, const cuda_rope *r, int32_t head_dim, const cuda_kv *kv);

/* Whether the RMSNorm of n_tok rows of n floats (x rows xs apart, weight w) can be folded
 * into the product (cuda_qkvr.norm_x): alignment, and the quantized rows fit the block's
 * shared memory. */
int cuda_qkvr_norm_ok(int64_t n_tok, int64_t n, const float *x, int64_t xs, const float *w);

/* True when weights of type `type` (the first) and `alt` may share one launch: one token,
 * rows of n_cols (a whole number of 256-value super-blocks, up to 2048), and a kernel for
 * the pair (Q4_K with Q6_K: the v rows of a Q4_K_M file's "more bits" layers). No folded
 * norm (cuda_qkvr.norm_x) with them. */
int cuda_qkvr_mixed_ok(uint32_t type, uint32_t alt, int64_t n_tok, int64_t n_cols);

/* ys[i][t][r] = W_i x[t] finished by role (see above); reuse_act: the activation scratch
 * already holds x quantized (else it is quantized first, as cuda_matmul_multi does).
 * Weights: same type (or two types, see cuda_qkvr_mixed_ok) and n_cols; a q/k weight's
 * n_rows a multiple of head_dim, a k weight's
 * n_rows == kv->kv_dim == a v weight's n_rows. HEARTH_E_INTERNAL for anything else. */
int cuda_matmul_qkvr(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                     const float *x, int64_t n_tok, int reuse_act, const cuda_qkvr *q, hb_err *err);

/* One token's q/k/v product with RoPE and the KV store (as cuda_matmul_qkvr with one weight
 * of each role q, k, v; mixed Q4_K q/k with Q6_K v too) followed by its decode attention
 * (as cuda_attention, or cuda_attention_q8 when quant) in ONE launch (cu_qkva.cu): one
 * block per query head, clusters of the query heads of a KV head sharing the new cell
 * through distributed shared memory. Bitwise the separate kernels' results: ys (by the
 * weights' order, as cuda_matmul_qkvr), the cache cell, out [n_head * head_dim]; but the
 * quantized output (quant) goes to the SECOND activation scratch, so the product that
 * reads it must ask for reuse 2 (cuda_mm_opt.reuse_act). a->kv must be q->kv's cache, f16.
 * cuda_qkva_ok says whether a call would be taken (one token, group <= 8 query heads per
 * KV head, head_dim % 32 == 0 and <= 256, a whole number of rotation pairs of k per block,
 * rows of <= 2048 values of Q4_0 / Q8_0 / Q4_K / Q6_K (v may be Q6_K beside Q4_K), the
 * position bucket <= 512, the block's shared memory). The decode step uses it only with
 * HEARTH_CUDA_QKVA=1 (be_cuda_fuse.c: slower than the two kernels on an H200).
 * HEARTH_E_INTERNAL for a call it would not take. Nothing is owned by the call. */
int cuda_qkva_ok(const cuda_knobs *k, const cuda_weight *const *ws, const cuda_qkvr *q, const cuda_attn *a);
int cuda_matmul_qkva(cuda_ctx *c, const cuda_weight *const *ws, float *const *ys, const float *x, int reuse_act,
                     const cuda_qkvr *q, const cuda_attn *a, float *out, int64_t os, int quant, hb_err *err);

/* How many fused launches c has run (a testing aid). */
uint64_t cuda_qkvr_launches(const cuda_ctx *c);

#ifdef __cplusplus
}
#endif

#endif
