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

#include "backend/cuda/cu_attn.cuh"
#include "backend/cuda/cu_gemm.cuh" /* gm_cp16 */

#define AD_T 128              /* threads per block */
#define AD_MAX_BUCKET 512     /* default: largest position bucket taken */
#define AD_MAX_SMEM (200 * 1024)

typedef struct ad_args {
    const uint8_t *kc, *vc;
    size_t row_bytes;
    int64_t n_ctx;
    const int32_t *pos, *seq;
    const float *q;
    int64_t qs;
    float *out;
    int64_t os;
    int8_t *xq; /* non-NULL: also quantize the output (rows os == n_head * hd apart) */
    float *xd;
    int2 *xsum;
    int32_t n_tok, n_head, group, hd, window, cap; /* cap: cells of the stage */
    float scale, softcap;
} ad_args;

/* Copies cells [c0, c1) (positions lo + cc) of the head's K slice (rotated by piece) and V
 * slice (plain) into the stages. */
static __device__ __forceinline__ void ad_stage(const ad_args &A, uint8_t *sk, uint8_t *sv, const uint8_t *kb,
                                                const uint8_t *vb, int64_t lo, int32_t c0, int32_t c1) {
    int32_t np = A.hd >> 3, rb = A.hd * 2; /* 16-byte pieces per slice, slice bytes */
    for (int32_t i = c0 * np + threadIdx.x; i < c1 * np; i += AD_T) {
        int32_t cc = i / np, pc = i - cc * np, rot = (pc + cc) % np;
        size_t src = (size_t)(lo + cc) * A.row_bytes + (size_t)pc * 16;
        gm_cp16(sk + (size_t)cc * rb + rot * 16, kb + src);
        gm_cp16(sv + (size_t)cc * rb + pc * 16, vb + src);
    }
}

/* Sum (max when is_max) of v over the block; red: AD_T / 32 floats that no earlier
 * reduction of the kernel used (so no barrier is needed before writing them); every thread
 * gets it. */
static __device__ __forceinline__ float ad_block_reduce(float v, bool is_max, float *red) {
    v = is_max ? cu_warp_max(v) : cu_warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < AD_T / 32; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

/* Grid (n_head, n_tok), AD_T threads; dynamic shared memory: the K and V stages
 * [cap][hd] f16, q [hd], the scores [cap], the partial value sums [AD_T / (hd / 2)][hd]. */
static __global__ void __launch_bounds__(AD_T) attn_dec_kernel(const __grid_constant__ ad_args A) {
    CU_TR_ENTRY();
    extern __shared__ __align__(16) uint8_t ad_sm[];
    __shared__ float red[2][AD_T / 32]; /* the max's and the sum's: two barriers fewer than one array */
    int32_t h = blockIdx.x, t = blockIdx.y, hk = h / A.group, hd = A.hd, rb = hd * 2, np = hd >> 3;
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
    ad_stage(A, sk, sv, kb, vb, lo, 0, nold);
    cu_pdl_wait_e(); /* launched early (CU_LAUNCH): q and the new cells come from earlier work */
    cu_pdl_trigger();
    ad_stage(A, sk, sv, kb, vb, lo, nold, ncell);
    for (int32_t i = threadIdx.x; i < hd; i += AD_T) qv[i] = A.q[(int64_t)t * A.qs + (int64_t)h * hd + i];
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    /* scores: one thread per cell */
    float mx = -INFINITY;
    for (int32_t cc = threadIdx.x; cc < ncell; cc += AD_T) {
        const uint4 *kr = (const uint4 *)(sk + (size_t)cc * rb);
        float s = 0.0f;
        for (int32_t pc = 0; pc < np; pc++) {
            uint4 u = kr[(pc + cc) % np];
            const float4 *q4 = (const float4 *)(qv + pc * 8);
            float4 a = q4[0], b = q4[1];
            float2 k0 = __half22float2(*(const __half2 *)&u.x), k1 = __half22float2(*(const __half2 *)&u.y);
            float2 k2 = __half22float2(*(const __half2 *)&u.z), k3 = __half22float2(*(const __half2 *)&u.w);
            s += a.x * k0.x + a.y * k0.y + a.z * k1.x + a.w * k1.y + b.x * k2.x + b.y * k2.y + b.z * k3.x + b.w * k3.y;
        }
        s *= A.scale;
        if (A.softcap > 0.0f) s = A.softcap * tanhf(s / A.softcap);
        sc[cc] = s;
        mx = fmaxf(mx, s);
    }
    mx = ad_block_reduce(mx, true, red[0]);
    float sum = 0.0f;
    for (int32_t cc = threadIdx.x; cc < ncell; cc += AD_T) {
        float e = __expf(sc[cc] - mx);
        sc[cc] = e;
        sum += e;
    }
    sum = ad_block_reduce(sum, false, red[1]); /* its barrier also publishes the weights */
    /* values: thread (pair pr, class g) sums cells g, g + ng, ... for dimensions 2pr, 2pr+1 */
    int32_t pairs = hd >> 1, ng = AD_T / pairs, pr = threadIdx.x % pairs, g = threadIdx.x / pairs;
    if (g < ng) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int32_t cc = g; cc < ncell; cc += ng) {
            float2 v = __half22float2(*(const __half2 *)(sv + (size_t)cc * rb + pr * 4));
            float w = sc[cc];
            a0 += w * v.x, a1 += w * v.y;
        }
        acc[g * hd + 2 * pr] = a0, acc[g * hd + 2 * pr + 1] = a1;
    }
    __syncthreads();
    float *orow = A.out + (int64_t)t * A.os + (int64_t)h * hd;
    for (int32_t d = threadIdx.x; d < hd; d += AD_T) {
        float o = 0.0f;
        for (int32_t k = 0; k < ng; k++) o += acc[k * hd + d];
        o /= sum;
        orow[d] = o;
        if (A.xq) /* hd % 32 == 0 and AD_T % 32 == 0: whole warps, one chunk each */
            rq_chunk(o, threadIdx.x & 31, ((int64_t)t * A.os + (int64_t)h * hd + d) >> 5, A.xq, A.xd, A.xsum);
    }
    CU_TR_FLUSH();
}

/* HEARTH_CUDA_ATTN_DEC=0 turns the kernel off (read once). */
static bool ad_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *s = getenv("HEARTH_CUDA_ATTN_DEC");
        on = s && *s == '0' ? 0 : 1;
    }
    return on == 1;
}

/* The largest position bucket the kernel takes (HEARTH_CUDA_ATTN_DEC_MAX, read once). */
static int32_t ad_max_bucket(void) {
    static int32_t v = 0;
    if (!v) {
        const char *s = getenv("HEARTH_CUDA_ATTN_DEC_MAX");
        int x = s ? atoi(s) : 0;
        v = x >= 128 && x <= 8192 && !(x & (x - 1)) ? x : AD_MAX_BUCKET;
    }
    return v;
}

int cu_attn_dec(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
                int *done, hb_err *err) {
    int rc;
    *done = 0;
    const cuda_kv *kv = a->kv;
    /* cells a token can see: up to its position bucket, never more than the cache holds */
    int32_t hd = a->head_dim_k, bucket = a->max_pos_host + 1;
    int32_t cap = (int64_t)bucket < kv->n_ctx ? bucket : (int32_t)kv->n_ctx;
    if (!ad_on() || a->n_tok > AT_SMALL_BATCH || kv->type != QT_F16 || a->head_dim_v != hd || hd % 32 ||
        hd > 2 * AD_T || bucket > ad_max_bucket() || cap < 1 ||
        ((uintptr_t)kv->k | (uintptr_t)kv->v | kv->row_bytes) % 16)
        return HEARTH_OK;
    int32_t ng = AD_T / (hd / 2);
    size_t smem = (size_t)cap * hd * 4 + ((size_t)hd + cap + (size_t)ng * hd) * sizeof(float);
    if (smem > AD_MAX_SMEM) return HEARTH_OK;
    ad_args A = { (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->row_bytes, kv->n_ctx, a->pos, a->seq, q, qs,
                  out, os, NULL, NULL, NULL, a->n_tok, a->n_head, a->n_head / a->n_head_kv, hd, a->window, cap,
                  a->scale, a->softcap };
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_dec_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return cu_fail(err, e, "raising the decode attention kernel's shared memory");
    }
    CU_LAUNCH(err, "launching decode attention", attn_dec_kernel, dim3((unsigned)a->n_head, (unsigned)a->n_tok), AD_T,
              smem, c->stream, A);
    if ((rc = cu_check_launch(err, "decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}
