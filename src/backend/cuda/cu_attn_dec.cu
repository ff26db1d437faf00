/* cu_attn_dec.cu — decode attention over an f16 KV cache for short contexts
 * (n_tok <= AT_SMALL_BATCH, position bucket up to AD_MAX_BUCKET cells).
 *
 * One block of AD_T threads per (query head, token), no splits and no combine pass: at
 * these sizes the per-op flash-decoding kernels (split blocks that each serve a group of
 * heads, then a merge) spend their time in block barriers, in the merge's dependent L2
 * round trips and in a second launch, not in arithmetic. Here:
 *  1. before the programmatic-launch wait, the block copies the K and V slices of its kv
 *     head for every cell that no kernel of this step writes (the cells before the first
 *     position the batch adds to this sequence) into shared memory (cp.async), while the
 *     kernel before (RoPE + KV store) still runs;
 *  2. after it: q and the new cells (one round trip), then one thread per cell scores
 *     q.k (K rows stored rotated by 16-byte piece, (piece + cell) % pieces, so the 8 lanes
 *     of a shared-memory phase read 8 different banks), a block max and sum, and the
 *     weighted sum of V with threads owning (dimension pair, cell residue class);
 *  3. the output row of the head, and its int8 quantization for the o product when asked
 *     (the arithmetic of act_quant_kernel).
 * Each token's arithmetic depends only on its own row, its cells and the head shape, never
 * on the batch, so a sequence decoded in a batch gives the bits it gives alone.
 * HEARTH_CUDA_ATTN_DEC=0 turns it off and HEARTH_CUDA_ATTN_DEC_MAX=N (128..8192, a power
 * of two) sets the largest bucket it takes; beyond it the split kernels run. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attn_dec.cuh"

#define AD_MAX_BUCKET 512     /* default: largest position bucket taken */
#define AD_MAX_SMEM (200 * 1024)

/* Grid (n_head, n_tok), AD_T threads; dynamic shared memory: the K and V stages
 * [cap][hd] f16, q [hd], the scores [cap], the partial value sums [AD_T / (hd / 2)][hd]. */
template <int HD>
static __global__ void __launch_bounds__(AD_T) attn_dec_kernel(const __grid_constant__ ad_args A) {
    CU_TR_ENTRY();
    extern __shared__ __align__(16) uint8_t ad_sm[];
    __shared__ float red[2][AD_T / 32]; /* the max's and the sum's: two barriers fewer than one array */
    int32_t h = blockIdx.x, t = blockIdx.y, hk = h / A.group, hd = HD ? HD : A.hd, rb = hd * 2;
    uint8_t *sk = ad_sm, *sv = sk + (size_t)A.cap * rb;
    float *qv = (float *)(sv + (size_t)A.cap * rb), *sc = qv + hd, *acc = sc + A.cap;
    int64_t lo;
    int32_t ncell, nold, sq = ad_cells(A.pos, A.seq, A.n_tok, A.window, A.cap, t, &lo, &ncell, &nold);
    const uint8_t *kb = A.kc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    const uint8_t *vb = A.vc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    ad_stage<HD>(A, sk, sv, kb, vb, lo, 0, nold, AD_T);
    cu_pdl_wait_e(); /* launched early (CU_LAUNCH): q and the new cells come from earlier work */
    cu_pdl_trigger();
    ad_stage<HD>(A, sk, sv, kb, vb, lo, nold, ncell, AD_T);
    for (int32_t i = threadIdx.x; i < hd; i += AD_T) qv[i] = A.q[(int64_t)t * A.qs + (int64_t)h * hd + i];
    CU_TR_MARK(1);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    CU_TR_MARK(2);
    ad_core<HD>(A, h, t, ncell, sk, sv, qv, sc, acc, red CU_TR_ARG);
    CU_TR_MARK(3);
    CU_TR_FLUSH();
}

/* The RoPE of q and k, the KV store and the attention in one kernel (cuda_rope_kv_attention
 * at short contexts; whole-head rotation, f16 cache): attn_dec_kernel's steps, with the
 * cells this step adds computed by the block instead of read back from the cache (other
 * blocks of the launch are writing them): before the wait it also computes the angles of
 * its sequence's tokens (rope_angle: rope_kernel's arithmetic); after it, q of its head and
 * the k and v rows of its kv head for those tokens are rotated (rope_pair) and rounded to
 * f16 (kv_put's rounding) straight into the stages, and the block of the kv head's first
 * query head stores its own token's cell. Same bits as rope_kernel + KV store +
 * attn_dec_kernel; q and k are only read. Extra shared memory: angles [n_tok][hd / 2]. */
template <int HD>
static __global__ void __launch_bounds__(AD_T) attn_dec_rope_kernel(const __grid_constant__ ad_args A,
                                                                    const __grid_constant__ adr_args R) {
    CU_TR_ENTRY();
    extern __shared__ __align__(16) uint8_t ad_sm[];
    __shared__ float red[2][AD_T / 32];
    int32_t h = blockIdx.x, t = blockIdx.y, hk = h / A.group, hd = HD ? HD : A.hd, rb = hd * 2, half = hd / 2, np = hd >> 3;
    uint8_t *sk = ad_sm, *sv = sk + (size_t)A.cap * rb;
    float *qv = (float *)(sv + (size_t)A.cap * rb), *sc = qv + hd, *acc = sc + A.cap;
    float2 *ang = (float2 *)(ad_sm + R.ang_off); /* [n_tok][half]: rows of this sequence's tokens */
    int64_t lo;
    int32_t ncell, nold, sq = ad_cells(A.pos, A.seq, A.n_tok, A.window, A.cap, t, &lo, &ncell, &nold);
    const uint8_t *kb = A.kc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    const uint8_t *vb = A.vc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    ad_stage<HD>(A, sk, sv, kb, vb, lo, 0, nold, AD_T);
    for (int32_t i = threadIdx.x; i < A.n_tok * half; i += AD_T) { /* positions are known before the step */
        int32_t u = i / half;
        if (A.seq[u] == sq)
            ang[i] = rope_angle(i - u * half, A.pos[u], hd, R.base, R.freq_scale, R.attn_factor, R.factors, R.inv);
    }
    __syncthreads();
    cu_pdl_wait_e(); /* q, k, v come from the q/k/v product */
    cu_pdl_trigger();
    for (int32_t i = nold * np + threadIdx.x; i < ncell * np; i += AD_T) { /* later cells no token writes */
        int32_t cc = i / np, pc = i - cc * np;
        if (adr_owner(A, sq, lo + cc) >= 0) continue;
        size_t src = (size_t)(lo + cc) * A.row_bytes + (size_t)pc * 16;
        gm_cp16(sk + (size_t)cc * rb + ((pc + cc) % np) * 16, kb + src);
        gm_cp16(sv + (size_t)cc * rb + pc * 16, vb + src);
    }
    /* q of this head (items 0..hd-1) and the cells this step adds (items hd..): one loop, so
     * that threads past the head's q read the new cells' k and v in the same L2 round trip
     * instead of a second one after q (one token, hd 64: one item per thread) */
    const float *qrow = A.q + (int64_t)t * A.qs + (int64_t)h * hd;
    bool store = h % A.group == 0; /* this kv head's first query head stores its token's cell */
    for (int32_t j = threadIdx.x; j < (A.n_tok + 1) * hd; j += AD_T) {
        if (j < hd) {
            qv[j] = adr_rot(qrow, j, hd, R.neox, ang + (size_t)t * half);
            continue;
        }
        int32_t i = j - hd, u = i / hd, d = i - u * hd;
        int64_t cc = A.pos[u] - lo;
        bool mine = store && u == t;
        if (A.seq[u] != sq || ((cc < nold || cc >= ncell) && !mine)) continue;
        const float *krow = R.k + (int64_t)u * R.ks + (int64_t)hk * hd;
        float kval = adr_rot(krow, d, hd, R.neox, ang + (size_t)u * half), vval = R.v[(int64_t)u * R.vs + (int64_t)hk * hd + d];
        if (cc >= nold && cc < ncell) {
            *(__half *)(sk + (size_t)cc * rb + (size_t)(((d >> 3) + cc) % np) * 16 + (d & 7) * 2) = __float2half_rn(kval);
            *(__half *)(sv + (size_t)cc * rb + (size_t)d * 2) = __float2half_rn(vval);
        }
        if (mine) {
            size_t cell = (size_t)sq * (size_t)A.n_ctx + (size_t)A.pos[u];
            kv_put((uint8_t *)A.kc + cell * A.row_bytes, 1, (int64_t)hk * hd + d, kval);
            kv_put((uint8_t *)A.vc + cell * A.row_bytes, 1, (int64_t)hk * hd + d, vval);
        }
    }
    CU_TR_MARK(1);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    CU_TR_MARK(2);
    ad_core<HD>(A, h, t, ncell, sk, sv, qv, sc, acc, red CU_TR_ARG);
    CU_TR_MARK(3);
    CU_TR_FLUSH();
}

/* The largest position bucket the kernel takes (HEARTH_CUDA_ATTN_DEC_MAX). */
static int32_t ad_max_bucket(const cuda_ctx *c) {
    return c->knobs.attn_dec_max ? c->knobs.attn_dec_max : AD_MAX_BUCKET;
}

/* Whether the short-context kernels take attention a (f16 cache, at most AT_SMALL_BATCH
 * tokens, equal K/V head sizes, a multiple of 32 and <= 2 * AD_T, bucket <= the knob's,
 * 16-byte rows) with `extra` bytes of shared memory past their own (16-aligned); fills A
 * and *smem when it does. */
bool ad_plan(const cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                    size_t extra, ad_args *A, size_t *smem) {
    const cuda_kv *kv = a->kv;
    /* cells a token can see: up to its position bucket, never more than the cache holds */
    int32_t hd = a->head_dim_k, bucket = a->max_pos_host + 1;
    int32_t cap = (int64_t)bucket < kv->n_ctx ? bucket : (int32_t)kv->n_ctx;
    if (!c->knobs.attn_dec /* HEARTH_CUDA_ATTN_DEC=0 */ || a->n_tok > AT_SMALL_BATCH || kv->type != QT_F16 ||
        a->head_dim_v != hd || hd % 32 || hd > 2 * AD_T || bucket > ad_max_bucket(c) || cap < 1 ||
        ((uintptr_t)kv->k | (uintptr_t)kv->v | kv->row_bytes) % 16)
        return false;
    int32_t ng = AD_T / (hd / 2);
    *smem = ((size_t)cap * hd * 4 + ((size_t)hd + cap + (size_t)ng * hd) * sizeof(float) + 15) / 16 * 16 + extra;
    if (*smem > AD_MAX_SMEM) return false;
    ad_args B = { (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->row_bytes, kv->n_ctx, a->pos, a->seq, q, qs,
                  out, os, NULL, NULL, NULL, a->n_tok, a->n_head, a->n_head / a->n_head_kv, hd, a->window, cap,
                  a->scale, a->softcap };
    *A = B;
    return true;
}

/* The kernels' instances by head size: 64 and 128 compiled for that size (index arithmetic
 * by shifts and unrolled per-cell loops: ~40% fewer instructions, and a smaller body that
 * stays in the SM's instruction cache, which every kernel of a decode step competes for),
 * any other multiple of 32 by the generic instance. Same arithmetic, same bits. */
typedef void (*ad_fn)(ad_args);
typedef void (*adr_fn)(ad_args, adr_args);
static ad_fn ad_pick(int32_t hd) {
    return hd == 64 ? attn_dec_kernel<64> : hd == 128 ? attn_dec_kernel<128> : attn_dec_kernel<0>;
}
static adr_fn adr_pick(int32_t hd) {
    return hd == 64 ? attn_dec_rope_kernel<64> : hd == 128 ? attn_dec_rope_kernel<128> : attn_dec_rope_kernel<0>;
}

int cu_attn_dec(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
                int *done, hb_err *err) {
    int rc;
    ad_args A;
    size_t smem;
    *done = 0;
    if ((rc = cu_attn_tc(c, a, q, qs, out, os, quant, done, err)) || *done) return rc; /* the tensor-core kernel */
    if (!ad_plan(c, a, q, qs, out, os, 0, &A, &smem)) return HEARTH_OK;
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    ad_fn fn = ad_pick(A.hd);
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    CU_LAUNCH(err, "launching decode attention", fn, dim3((unsigned)a->n_head, (unsigned)a->n_tok), AD_T,
              smem, c, A);
    if ((rc = cu_check_launch(err, "decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}

int cu_attn_dec_rope(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs, const float *k,
                     int64_t ks, const float *v, int64_t vs, float *out, int64_t os, bool quant, int *done,
                     hb_err *err) {
    int rc;
    ad_args A;
    size_t smem, angb = (size_t)a->n_tok * (size_t)(a->head_dim_k / 2) * sizeof(float2);
    *done = 0;
    if (!c->knobs.attn_dec_rope) return HEARTH_OK; /* HEARTH_CUDA_ATTN_DEC_ROPE=0 */
    if ((rc = cu_attn_tc_rope(c, a, r, q, qs, k, ks, v, vs, out, os, quant, done, err)) || *done) return rc;
    if (r->n_rot != a->head_dim_k ||
        !ad_plan(c, a, q, qs, out, os, angb, &A, &smem))
        return HEARTH_OK;
    adr_args R = { k, v, ks, vs, r->neox, r->base, r->freq_scale, r->attn_factor, r->factors, r->inv, smem - angb };
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    adr_fn fn = adr_pick(A.hd);
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    CU_LAUNCH(err, "launching fused decode attention", fn, dim3((unsigned)a->n_head, (unsigned)a->n_tok),
              AD_T, smem, c, A, R);
    if ((rc = cu_check_launch(err, "fused decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}
