/* cu_attn_dec.cuh — the device code of the short-context decode attention (cu_attn_dec.cu),
 * shared with the fused q/k/v + attention kernel (cu_qkva.cu) so that both give the same
 * bits: the arguments, the K/V staging, the block reductions and the attention of one
 * (query head, token) over staged cells. Device code only. */
#ifndef HEARTH_CU_ATTN_DEC_CUH
#define HEARTH_CU_ATTN_DEC_CUH

#include "backend/cuda/cu_attn.cuh"
#include "backend/cuda/cu_gemm.cuh" /* gm_cp16 */

#define AD_T 128              /* threads per block */

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

/* Whether the short-context kernels take attention a (f16 cache, at most AT_SMALL_BATCH
 * tokens, equal K/V head sizes, a multiple of 32 and <= 2 * AD_T, bucket <= the knob's,
 * 16-byte rows) with `extra` bytes of shared memory past attn_dec_kernel's own; fills A
 * and *smem (that kernel's) when they do. Host code (cu_attn_dec.cu). */
bool ad_plan(const cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
             size_t extra, ad_args *A, size_t *smem);

/* The cells token t sees: the first visible position *lo (the sliding window's start or
 * 0), how many cells from there (*ncell; cap: the bucket is >= its position + 1) and how
 * many of those no kernel of this step writes (*nold: the cells before the first position
 * the batch adds to t's sequence). Returns t's sequence. Positions and sequences are
 * uploaded before the step, so this runs before the PDL wait. */
static __device__ __forceinline__ int32_t ad_cells(const int32_t *pos, const int32_t *seq, int32_t n_tok,
                                                   int32_t window, int32_t cap, int32_t t, int64_t *lo,
                                                   int32_t *ncell, int32_t *nold) {
    int64_t p = pos[t], l = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0, pnew = p;
    int32_t nc = (int32_t)min(p + 1 - l, (int64_t)cap), sq = seq[t];
    for (int32_t u = 0; u < n_tok; u++)
        if (seq[u] == sq && pos[u] < pnew) pnew = pos[u];
    *lo = l, *ncell = nc, *nold = pnew > l ? (int32_t)min(pnew - l, (int64_t)nc) : 0;
    return sq;
}

/* The RoPE arguments of the fused kernels (attn_dec_rope_kernel, cu_attn_tc.cu). */
typedef struct adr_args {
    const float *k, *v;
    int64_t ks, vs;
    int neox;
    float base, freq_scale, attn_factor;
    const float *factors;
    const double *inv;
    size_t ang_off; /* byte offset of the angles in dynamic shared memory */
} adr_args;

/* The token of this step that writes cell `pos` of sequence sq, or -1. */
static __device__ __forceinline__ int32_t adr_owner(const ad_args &A, int32_t sq, int64_t pos) {
    int32_t o = -1;
    for (int32_t u = 0; u < A.n_tok; u++)
        if (A.seq[u] == sq && A.pos[u] == pos) o = u;
    return o;
}

/* Element d of a rotated head row x (hd values, pair angles ang): rope_kernel's value. */
static __device__ __forceinline__ float adr_rot(const float *x, int32_t d, int32_t hd, int neox, const float2 *ang) {
    int32_t half = hd / 2, j = neox ? d % half : d / 2, a = neox ? j : 2 * j, b = neox ? j + half : 2 * j + 1;
    float y0, y1;
    rope_pair(x[a], x[b], ang[j].x, ang[j].y, &y0, &y1);
    return d == a ? y0 : y1;
}

/* Copies cells [c0, c1) (positions lo + cc) of the head's K slice (rotated by piece) and V
 * slice (plain) into the stages; the block's nt threads share the copies. HD: the head
 * size when the kernel was compiled for it (64, 128: divisions become shifts), else 0 (A.hd). */
template <int HD = 0>
static __device__ __forceinline__ void ad_stage(const ad_args &A, uint8_t *sk, uint8_t *sv, const uint8_t *kb,
                                                const uint8_t *vb, int64_t lo, int32_t c0, int32_t c1, int nt) {
    int32_t hd = HD ? HD : A.hd, np = hd >> 3, rb = hd * 2; /* 16-byte pieces per slice, slice bytes */
    for (int32_t i = c0 * np + threadIdx.x; i < c1 * np; i += nt) {
        int32_t cc = i / np, pc = i - cc * np, rot = (pc + cc) % np;
        size_t src = (size_t)(lo + cc) * A.row_bytes + (size_t)pc * 16;
        gm_cp16(sk + (size_t)cc * rb + rot * 16, kb + src);
        gm_cp16(sv + (size_t)cc * rb + pc * 16, vb + src);
    }
}

/* Sum (max when is_max) of v over threads 0..AD_T-1 (every thread of the block calls it;
 * the others' values are left out); red: AD_T / 32 floats that no earlier reduction of the
 * kernel used (so no barrier is needed before writing them); every thread gets it. */
static __device__ __forceinline__ float ad_block_reduce(float v, bool is_max, float *red) {
    v = is_max ? cu_warp_max(v) : cu_warp_sum(v);
    if ((threadIdx.x & 31) == 0 && threadIdx.x < AD_T) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < AD_T / 32; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

/* The attention of query head h, token t over the ncell staged cells (K rotated by piece,
 * V plain, [cell][hd] f16 each) with the rotated query qv [hd] in shared memory: scores
 * (two threads per cell), a block max and sum, the weighted sum of V (threads own a
 * dimension pair and a cell residue class), then the output row and its quantization when
 * A.xq is set. sc: [ncell] floats, acc: [AD_T / (hd / 2)][hd] floats, red: two reduction
 * arrays. Threads 0..AD_T-1 compute; every thread of the block must call it (barriers), so
 * a larger block gives the same bits as an AD_T-thread one. tm: trace builds only, the
 * kernel's CU_TR_MARK slots (4 scores, 5 max, 6 exp + sum, 7 values); NULL or unused
 * elsewhere. HD as for ad_stage: the arithmetic is the same for every HD, so are the bits. */
#ifdef HEARTH_CUDA_TRACE
#define AD_MARK(k) (tm ? (void)(tm[(k)] = cu_gtime()) : (void)0) /* block 0's phases (trace builds) */
#else
#define AD_MARK(k) (void)0
#endif
template <int HD = 0>
static __device__ __forceinline__ void ad_core(const ad_args &A, int32_t h, int32_t t, int32_t ncell,
                                               const uint8_t *sk, const uint8_t *sv, const float *qv, float *sc,
                                               float *acc, float (*red)[AD_T / 32], unsigned long long *tm = nullptr) {
    (void)tm;
    int32_t hd = HD ? HD : A.hd, rb = hd * 2, np = hd >> 3;
    /* scores: two threads per cell (lanes 2c and 2c + 1), each over half of the K slice's
     * pieces, their sums added by one shuffle (the same bits in both: a + b == b + a); the
     * loop is uniform over a warp, so every lane reaches the shuffle */
    float mx = -INFINITY;
    int32_t half = threadIdx.x & 1, hp = np >> 1, pc0 = half * hp; /* hd % 32 == 0: np even */
    for (int32_t c0 = 0; c0 < ncell && threadIdx.x < AD_T; c0 += AD_T / 2) {
        int32_t cc = c0 + (int32_t)(threadIdx.x >> 1);
        float s = 0.0f;
        if (cc < ncell) {
            const uint4 *kr = (const uint4 *)(sk + (size_t)cc * rb);
            int32_t idx = (pc0 + cc) % np; /* K pieces are stored rotated by the cell */
            for (int32_t i = 0; i < hp; i++) {
                uint4 u = kr[idx];
                idx = idx + 1 == np ? 0 : idx + 1;
                const float4 *q4 = (const float4 *)(qv + (pc0 + i) * 8);
                float4 a = q4[0], b = q4[1];
                float2 k0 = __half22float2(*(const __half2 *)&u.x), k1 = __half22float2(*(const __half2 *)&u.y);
                float2 k2 = __half22float2(*(const __half2 *)&u.z), k3 = __half22float2(*(const __half2 *)&u.w);
                s += a.x * k0.x + a.y * k0.y + a.z * k1.x + a.w * k1.y + b.x * k2.x + b.y * k2.y + b.z * k3.x +
                     b.w * k3.y;
            }
        }
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s *= A.scale;
        if (A.softcap > 0.0f) s = A.softcap * tanhf(s / A.softcap);
        if (cc < ncell) {
            if (!half) sc[cc] = s;
            mx = fmaxf(mx, s);
        }
    }
    AD_MARK(4);
    mx = ad_block_reduce(mx, true, red[0]);
    AD_MARK(5);
    float sum = 0.0f;
    for (int32_t cc = threadIdx.x; cc < ncell && threadIdx.x < AD_T; cc += AD_T) {
        float e = __expf(sc[cc] - mx);
        sc[cc] = e;
        sum += e;
    }
    sum = ad_block_reduce(sum, false, red[1]); /* its barrier also publishes the weights */
    AD_MARK(6);
    /* values: thread (pair pr, class g) sums cells g, g + ng, ... for dimensions 2pr, 2pr+1,
     * alternate cells into two sums (two dependency chains) added at the end */
    int32_t pairs = hd >> 1, ng = AD_T / pairs, pr = threadIdx.x % pairs, g = threadIdx.x / pairs;
    if (g < ng) {
        float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
        int32_t cc = g;
        for (; cc + ng < ncell; cc += 2 * ng) {
            float2 v = __half22float2(*(const __half2 *)(sv + (size_t)cc * rb + pr * 4));
            float2 u = __half22float2(*(const __half2 *)(sv + (size_t)(cc + ng) * rb + pr * 4));
            float w = sc[cc], x = sc[cc + ng];
            a0 += w * v.x, a1 += w * v.y, b0 += x * u.x, b1 += x * u.y;
        }
        if (cc < ncell) {
            float2 v = __half22float2(*(const __half2 *)(sv + (size_t)cc * rb + pr * 4));
            float w = sc[cc];
            a0 += w * v.x, a1 += w * v.y;
        }
        acc[g * hd + 2 * pr] = a0 + b0, acc[g * hd + 2 * pr + 1] = a1 + b1;
    }
    __syncthreads();
    AD_MARK(7);
    float *orow = A.out + (int64_t)t * A.os + (int64_t)h * hd;
    for (int32_t d = threadIdx.x; d < hd && threadIdx.x < AD_T; d += AD_T) {
        float o = 0.0f;
        for (int32_t k = 0; k < ng; k++) o += acc[k * hd + d];
        o /= sum;
        orow[d] = o;
        if (A.xq) /* hd % 32 == 0 and AD_T % 32 == 0: whole warps, one chunk each */
            rq_chunk(o, threadIdx.x & 31, ((int64_t)t * A.os + (int64_t)h * hd + d) >> 5, A.xq, A.xd, A.xsum);
    }
}

#endif
