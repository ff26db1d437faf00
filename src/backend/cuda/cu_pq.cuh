/* cu_pq.cuh — the activation prologue shared by the decode products that prepare their own
 * input (cu_mvq.cu, cu_mvr.cu): every block reads the f32 input rows, optionally RMSNorms
 * them, and quantizes them into shared memory (int8 codes, scales, half sums: exactly what
 * the activation scratch would hold), with the arithmetic of the separate RMSNorm +
 * quantize kernels bit for bit. Device code only; include after cu_unpack.cuh. */
#ifndef HEARTH_CU_PQ_CUH
#define HEARTH_CU_PQ_CUH

#include "backend/cuda/cu_unpack.cuh"

#define PQ_T CU_MV_T /* most tokens */

/* Where the activations come from and what block 0 leaves behind. */
typedef struct pq_in {
    const float *x;    /* [n_tok] rows of n floats, xs apart (16-byte aligned) */
    int64_t xs;
    const float *nw;   /* RMSNorm weight or NULL */
    float eps;
    int norm;          /* 0: quantize x as it is */
    float *ny;         /* normalized rows [n_tok][n] (block 0), or NULL */
    int8_t *gq;        /* activation scratch for the input (block 0), or NULL */
    float *gd;
    int2 *gs;
} pq_in;

/* Norm weights of the first 16-value half a thread quantizes (fetched before the PDL wait:
 * model data no kernel writes). */
static __device__ __forceinline__ void pq_prefetch_w(pq_in in, int n, int n_tok, float4 *w) {
    int nch = n / 32, h = threadIdx.x;
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    if (in.norm && in.nw && h < n_tok * nch * 2) {
        const float4 *p = (const float4 *)(in.nw + (h % (2 * nch)) * 16);
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = p[k];
    }
}

/* The block's activations into shared memory: codes sq [n_tok][n], half sums ssum and
 * scales sd [n_tok][n/32]. Each thread quantizes 16-value halves (its partner lane holds
 * the other half of the chunk). Called by every thread after cu_pdl_wait; ends with a
 * block barrier. red: [4][PQ_T] shared. */
static __device__ __forceinline__ void pq_prologue(pq_in in, int n, int n_tok, const float4 *wpre, int8_t *sq,
                                                   int2 *ssum, float *sd, float *red,
                                                   unsigned long long *tm = nullptr) {
    int tid = threadIdx.x, nth = blockDim.x, lane = tid & 31, warp = tid >> 5, nch = n / 32;
    if (in.norm) {
        if (warp < 4) /* 128 threads: the order of the multi-block RMSNorm */
            for (int t = 0; t < n_tok; t++) {
                float s = cu_warp_sum(cu_ss_part((const float4 *)(in.x + t * in.xs), n / 4, tid));
                if (lane == 0) red[warp * PQ_T + t] = s;
            }
#ifdef HEARTH_CUDA_TRACE
        if (tm) tm[0] = cu_gtime();
#endif
        __syncthreads();
    }
    int nh = n_tok * nch * 2;
    for (int h0 = 0; h0 < nh; h0 += nth) { /* uniform trip count: the partner shuffle needs every lane */
        int h = h0 + tid, t = 0, e0 = 0;
        bool on = h < nh;
        float v[16];
        if (on) {
            t = h / (2 * nch);
            e0 = (h - t * 2 * nch) * 16; /* chunk * 32 + half * 16 */
            const float4 *xp = (const float4 *)(in.x + t * in.xs + e0);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float4 a = xp[k];
                v[4 * k] = a.x, v[4 * k + 1] = a.y, v[4 * k + 2] = a.z, v[4 * k + 3] = a.w;
            }
            if (in.norm) {
                float tot = 0.0f;
#pragma unroll
                for (int i = 0; i < 4; i++) tot += red[i * PQ_T + t];
                float kk = rsqrtf(tot / (float)n + in.eps);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    float4 wv = h0 == 0 ? wpre[k]
                                        : (in.nw ? ((const float4 *)(in.nw + e0))[k] : make_float4(1.0f, 1.0f, 1.0f, 1.0f));
                    v[4 * k] = v[4 * k] * kk * wv.x, v[4 * k + 1] = v[4 * k + 1] * kk * wv.y;
                    v[4 * k + 2] = v[4 * k + 2] * kk * wv.z, v[4 * k + 3] = v[4 * k + 3] * kk * wv.w;
                }
            }
            if (in.ny && blockIdx.x == 0) {
                float4 *yp = (float4 *)(in.ny + (int64_t)t * n + e0);
#pragma unroll
                for (int k = 0; k < 4; k++) yp[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++) v[i] = 0.0f;
        }
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int hs = 0;
        uint32_t wd[4] = { 0, 0, 0, 0 };
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float s = v[i] * id;
            int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            hs += q;
            wd[i >> 2] |= (uint32_t)(uint8_t)(int8_t)q << (8 * (i & 3));
        }
        if (on) {
            int half = (e0 >> 4) & 1;
            int64_t ci = (int64_t)t * nch + (e0 >> 5);
            int4 codes = make_int4((int)wd[0], (int)wd[1], (int)wd[2], (int)wd[3]);
            *(int4 *)(sq + (int64_t)t * n + e0) = codes;
            ((int *)(ssum + ci))[half] = hs;
            if (!half) sd[ci] = amax / 127.0f;
            if (in.gq && blockIdx.x == 0) {
                *(int4 *)(in.gq + (int64_t)t * n + e0) = codes;
                ((int *)(in.gs + ci))[half] = hs;
                if (!half) in.gd[ci] = amax / 127.0f;
            }
        }
    }
#ifdef HEARTH_CUDA_TRACE
    if (tm) tm[7] = cu_gtime();
#endif
    __syncthreads();
}

#endif
