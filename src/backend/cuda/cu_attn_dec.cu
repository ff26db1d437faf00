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
static __global__ void __launch_bounds__(AD_T) attn_dec_kernel(const __grid_constant__ ad_args A) {
    CU_TR_ENTRY();
    extern __shared__ __align__(16) uint8_t ad_sm[];
    __shared__ float red[2][AD_T / 32]; /* the max's and the sum's: two barriers fewer than one array */
    int32_t h = blockIdx.x, t = blockIdx.y, hk = h / A.group, hd = A.hd, rb = hd * 2;
    uint8_t *sk = ad_sm, *sv = sk + (size_t)A.cap * rb;
    float *qv = (float *)(sv + (size_t)A.cap * rb), *sc = qv + hd, *acc = sc + A.cap;
    /* positions and sequences are uploaded before the step: readable before the wait */
    int64_t p = A.pos[t], lo = A.window > 0 && p - A.window + 1 > 0 ? p - A.window + 1 : 0;
    int32_t ncell = (int32_t)min(p + 1 - lo, (int64_t)A.cap), sq = A.seq[t]; /* cap: bucket >= p + 1 */
    int64_t pnew = p; /* cells from here on may be written by this step's KV store */
    for (int32_t u = 0; u < A.n_tok; u++)
        if (A.seq[u] == sq && A.pos[u] < pnew) pnew = A.pos[u];
    int32_t nold = pnew > lo ? (int32_t)min(pnew - lo, (int64_t)ncell) : 0;
    const uint8_t *kb = A.kc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    const uint8_t *vb = A.vc + (size_t)sq * A.n_ctx * A.row_bytes + (size_t)hk * rb;
    ad_stage(A, sk, sv, kb, vb, lo, 0, nold, AD_T);
    cu_pdl_wait_e(); /* launched early (CU_LAUNCH): q and the new cells come from earlier work */
    cu_pdl_trigger();
    ad_stage(A, sk, sv, kb, vb, lo, nold, ncell, AD_T);
    for (int32_t i = threadIdx.x; i < hd; i += AD_T) qv[i] = A.q[(int64_t)t * A.qs + (int64_t)h * hd + i];
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    ad_core(A, h, t, ncell, sk, sv, qv, sc, acc, red);
    CU_TR_FLUSH();
}

/* The largest position bucket the kernel takes (HEARTH_CUDA_ATTN_DEC_MAX). */
static int32_t ad_max_bucket(const cuda_ctx *c) {
    return c->knobs.attn_dec_max ? c->knobs.attn_dec_max : AD_MAX_BUCKET;
}

int cu_attn_dec(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
                int *done, hb_err *err) {
    int rc;
    *done = 0;
    const cuda_kv *kv = a->kv;
    /* cells a token can see: up to its position bucket, never more than the cache holds */
    int32_t hd = a->head_dim_k, bucket = a->max_pos_host + 1;
    int32_t cap = (int64_t)bucket < kv->n_ctx ? bucket : (int32_t)kv->n_ctx;
    if (!c->knobs.attn_dec /* HEARTH_CUDA_ATTN_DEC=0 */ || a->n_tok > AT_SMALL_BATCH || kv->type != QT_F16 || a->head_dim_v != hd || hd % 32 ||
        hd > 2 * AD_T || bucket > ad_max_bucket(c) || cap < 1 ||
        ((uintptr_t)kv->k | (uintptr_t)kv->v | kv->row_bytes) % 16)
        return HEARTH_OK;
    int32_t ng = AD_T / (hd / 2);
    size_t smem = (size_t)cap * hd * 4 + ((size_t)hd + cap + (size_t)ng * hd) * sizeof(float);
    if (smem > AD_MAX_SMEM) return HEARTH_OK;
    ad_args A = { (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->row_bytes, kv->n_ctx, a->pos, a->seq, q, qs,
                  out, os, NULL, NULL, NULL, a->n_tok, a->n_head, a->n_head / a->n_head_kv, hd, a->window, cap,
                  a->scale, a->softcap };
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    if ((rc = cu_smem_allow(c, (const void *)attn_dec_kernel, smem, err))) return rc;
    CU_LAUNCH(err, "launching decode attention", attn_dec_kernel, dim3((unsigned)a->n_head, (unsigned)a->n_tok), AD_T,
              smem, c, A);
    if ((rc = cu_check_launch(err, "decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}
