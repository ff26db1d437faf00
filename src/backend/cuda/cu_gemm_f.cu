/* cu_gemm_f.cu — tensor-core matrix multiplies for batches (prefill, 17+ tokens) of F16 and
 * BF16 weights: y[i][j] = sum_k x[i][k] * W[j][k] (+ add_to), f32 accumulation; the
 * quantized weights' kernels are in cu_gemm.cu (the file header there describes both paths
 * and their measured speed), the shared device helpers in cu_gemm.cuh.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_gemm.cuh"

/* ---- F16 / BF16 weights -------------------------------------------------------------------
 * 32 values of k per stage, two shared buffers: the next stage's global loads (f32
 * activations, 16-bit weights) are held in registers while the tensor cores work on this
 * one, then converted to f16 and stored. */
#define FBM 64
#define FBN 128
#define FBK 32
#define FROW 40 /* halves per shared row: 32 + 8 padding (80 bytes) */

typedef struct gf_args {
    const float *x;
    const uint8_t *w;
    int64_t row_bytes;
    int64_t m, n, k;
    int bf16;         /* weights are BF16 (else F16) */
    int vec_a, vec_b; /* 16-byte loads allowed (rows aligned) */
    float *y;
    int64_t ldy;
    float *add_to;
} gf_args;

static __device__ __forceinline__ void gf_load(const gf_args p, float4 ra[2], uint4 rb[2], int64_t i0, int64_t j0,
                                               int s) {
    int tid = threadIdx.x;
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 3, q = idx & 7;
        int64_t gi = min(i0 + r, p.m - 1), kk = (int64_t)s * FBK + q * 4;
        const float *src = p.x + gi * p.k + kk;
        if (p.vec_a && kk + 4 <= p.k) {
            ra[v] = *(const float4 *)src;
        } else {
            ra[v].x = kk < p.k ? src[0] : 0.0f;
            ra[v].y = kk + 1 < p.k ? src[1] : 0.0f;
            ra[v].z = kk + 2 < p.k ? src[2] : 0.0f;
            ra[v].w = kk + 3 < p.k ? src[3] : 0.0f;
        }
    }
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 2, q = idx & 3;
        int64_t gn = min(j0 + r, p.n - 1), kk = (int64_t)s * FBK + q * 8;
        const uint16_t *src = (const uint16_t *)(p.w + gn * p.row_bytes) + kk;
        if (p.vec_b && kk + 8 <= p.k) {
            rb[v] = *(const uint4 *)src;
        } else {
            unsigned h[8];
#pragma unroll
            for (int e = 0; e < 8; e++) h[e] = kk + e < p.k ? src[e] : 0u;
            rb[v] = make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
        }
    }
}

static __device__ __forceinline__ unsigned gf_bf2h2(unsigned u) {
    __half2 h = __floats2half2_rn(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    return *(unsigned *)&h;
}

static __device__ __forceinline__ void gf_put(const gf_args p, __half *sa, __half *sb, const float4 ra[2],
                                              const uint4 rb[2]) {
    int tid = threadIdx.x;
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 3, q = idx & 7;
        __half2 h0 = __floats2half2_rn(ra[v].x, ra[v].y), h1 = __floats2half2_rn(ra[v].z, ra[v].w);
        *(uint2 *)(sa + r * FROW + q * 4) = make_uint2(*(unsigned *)&h0, *(unsigned *)&h1);
    }
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 2, q = idx & 3;
        uint4 b = rb[v];
        if (p.bf16) b = make_uint4(gf_bf2h2(b.x), gf_bf2h2(b.y), gf_bf2h2(b.z), gf_bf2h2(b.w));
        *(uint4 *)(sb + r * FROW + q * 8) = b;
    }
}

static __device__ __forceinline__ void gf_mma(const __half *sa, const __half *sb, float acc[2][4][4]) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = warp >> 2, wn = warp & 3;
    const __half *pa = sa + (wm * 32 + (lane & 7) + ((lane >> 3) & 1) * 8) * FROW + (lane >> 4) * 8;
    const __half *pb = sb + (wn * 32 + (lane & 7) + (lane >> 4) * 8) * FROW + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < FBK; kk += 16) {
        unsigned af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) gm_ldsm4(af[mi], pa + mi * 16 * FROW + kk);
#pragma unroll
        for (int nb = 0; nb < 2; nb++) {
            unsigned r[4];
            gm_ldsm4(r, pb + nb * 16 * FROW + kk);
            bf[2 * nb][0] = r[0], bf[2 * nb][1] = r[1], bf[2 * nb + 1][0] = r[2], bf[2 * nb + 1][1] = r[3];
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) gm_mma_f16(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
}

static __global__ void __launch_bounds__(256) gemm_f_kernel(gf_args p) {
    __shared__ __align__(16) __half sa[2][FBM * FROW];
    __shared__ __align__(16) __half sb[2][FBN * FROW];
    int64_t i0 = (int64_t)blockIdx.y * FBM, j0 = (int64_t)blockIdx.x * FBN;
    int nst = (int)((p.k + FBK - 1) / FBK);
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
    float4 ra[2];
    uint4 rb[2];
    gf_load(p, ra, rb, i0, j0, 0);
    gf_put(p, sa[0], sb[0], ra, rb);
    __syncthreads();
    for (int s = 0; s < nst; s++) {
        if (s + 1 < nst) gf_load(p, ra, rb, i0, j0, s + 1);
        gf_mma(sa[s & 1], sb[s & 1], acc);
        if (s + 1 < nst) gf_put(p, sa[(s + 1) & 1], sb[(s + 1) & 1], ra, rb);
        __syncthreads();
    }
    int warp = threadIdx.x >> 5;
    gm_store4(acc, i0 + (warp >> 2) * 32, j0 + (warp & 3) * 32, p.m, p.n, p.y, p.ldy, p.add_to);
}

/* F16 weights with 16-byte aligned rows (k % 8 == 0): both operands stream through a
 * 4-stage ring of asynchronous copies (f32 activations [64][36], f16 weights [128][40]);
 * the activations of stage s + 1 are converted to f16 (double buffer) while stage s is
 * multiplied, so no loads wait in registers. */
#define HST 4
#define HAROW 36 /* floats per activation row in the ring: 32 + 4 padding */
#define HS_A 0
#define HS_B (FBM * HAROW * 4)
#define HS_BYTES (HS_B + FBN * FROW * 2)
#define HS_A16 (HST * HS_BYTES)
#define H_SMEM (HS_A16 + 2 * FBM * FROW * 2)

static __device__ __forceinline__ void gh_issue(const gf_args p, uint8_t *st, const float *const a[2],
                                                const uint8_t *const b[2], int s) {
    int tid = threadIdx.x;
    int64_t k0 = (int64_t)s * FBK;
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 3, q = idx & 7;
        bool ok = k0 + q * 4 < p.k;
        gm_cp16z(st + HS_A + (r * HAROW + q * 4) * 4, ok ? (const void *)(a[v] + k0) : (const void *)a[v], ok);
    }
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 2, q = idx & 3;
        bool ok = k0 + q * 8 < p.k;
        gm_cp16z(st + HS_B + (r * FROW + q * 8) * 2, ok ? (const void *)(b[v] + k0 * 2) : (const void *)b[v], ok);
    }
}

/* f32 activations of a ring stage -> the f16 tile: 8 values per thread. */
static __device__ __forceinline__ void gh_convert(const uint8_t *st, __half *a16) {
    int tid = threadIdx.x, r = tid >> 2, q = tid & 3;
    const float4 *src = (const float4 *)(st + HS_A + (r * HAROW + q * 8) * 4);
    float4 x0 = src[0], x1 = src[1];
    __half2 h0 = __floats2half2_rn(x0.x, x0.y), h1 = __floats2half2_rn(x0.z, x0.w);
    __half2 h2 = __floats2half2_rn(x1.x, x1.y), h3 = __floats2half2_rn(x1.z, x1.w);
    *(uint4 *)(a16 + r * FROW + q * 8) =
        make_uint4(*(unsigned *)&h0, *(unsigned *)&h1, *(unsigned *)&h2, *(unsigned *)&h3);
}

static __global__ void __launch_bounds__(256, 2) gemm_h_kernel(gf_args p) {
    extern __shared__ __align__(16) uint8_t gh_smem[];
    int64_t i0 = (int64_t)blockIdx.y * FBM, j0 = (int64_t)blockIdx.x * FBN;
    int nst = (int)((p.k + FBK - 1) / FBK), tid = threadIdx.x;
    const float *a[2];
    const uint8_t *b[2];
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256;
        a[v] = p.x + min(i0 + (idx >> 3), p.m - 1) * p.k + (idx & 7) * 4;
        b[v] = p.w + min(j0 + (idx >> 2), p.n - 1) * p.row_bytes + (idx & 3) * 16;
    }
    __half *a16 = (__half *)(gh_smem + HS_A16);
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
#pragma unroll
    for (int s = 0; s < HST - 1; s++) {
        if (s < nst) gh_issue(p, gh_smem + s * HS_BYTES, a, b, s);
        gm_commit();
    }
    gm_wait_2(); /* stage 0 */
    __syncthreads();
    gh_convert(gh_smem, a16);
    for (int s = 0; s < nst; s++) {
        gm_wait_1(); /* stage s + 1 landed; every warp is done with stage s - 1 */
        __syncthreads();
        if (s + HST - 1 < nst) gh_issue(p, gh_smem + ((s + HST - 1) % HST) * HS_BYTES, a, b, s + HST - 1);
        gm_commit();
        if (s + 1 < nst) gh_convert(gh_smem + ((s + 1) % HST) * HS_BYTES, a16 + ((s + 1) & 1) * FBM * FROW);
        gf_mma(a16 + (s & 1) * FBM * FROW, (const __half *)(gh_smem + (s % HST) * HS_BYTES + HS_B), acc);
    }
    gm_wait_all();
    int warp = threadIdx.x >> 5;
    gm_store4(acc, i0 + (warp >> 2) * 32, j0 + (warp & 3) * 32, p.m, p.n, p.y, p.ldy, p.add_to);
}


/* ---- F16 weights, f16 activations (the default F16 path) ----------------------------------
 * The f32 activations are converted to f16 once per product (or once for the 2-3 products
 * over the same activations: q/k/v, gate/up) into the scratch c->f16a, so both operands
 * stream through the same ring of asynchronous copies (half the bytes of f32 activations,
 * no conversion pass per block). A stage covers 64 values of k (four k16 steps per warp and
 * barrier); 4 stages rotate (3 in flight). Tiles are 64 tokens x BN weight rows, warps of
 * 32 x 32 (2 x BN/32 warps): BN = 128 (8 warps, 2 blocks per SM) where the grid fills the
 * SMs evenly, else 64 (4 warps, 3 blocks per SM; gg_launch). Both give bit-identical
 * results: every output accumulates its k16 steps in the same order whatever the tile. Up
 * to 3 weights (segments of column tiles along blockIdx.x, like gq_segment) share a
 * launch. Measured on an H200 at 512 tokens, kernel + conversion (gemm_h_kernel before):
 * 512x2048x2048 31 us, 137 TFLOPS (40 us); q/k/v 2048 + 256 + 256 rows 41 us (120 us as
 * three launches); gate/up 2 x 5632 rows 129 us, 183 TFLOPS (194 us); 512x2048x5632 75 us,
 * 157 TFLOPS (103 us). */
#define GBK 64
#define GST 4
#define GROW 72 /* halves per shared row: 64 + 8 padding (144 bytes: distinct ldmatrix banks) */
#define GS_A_BYTES (FBM * GROW * 2)
#define G_STAGE(BN) (GS_A_BYTES + (BN) * GROW * 2)
#define G_SMEM(BN) (GST * G_STAGE(BN))

typedef struct gg_seg {
    const uint8_t *w;
    int64_t n, ldy;
    float *y, *add_to;
    unsigned blk_end; /* one past this segment's last column tile */
} gg_seg;

typedef struct gg_args {
    const __half *a; /* [m][k] f16 activations */
    int64_t m, k, row_bytes;
    int nst;         /* stages: ceil(k / GBK) */
    gg_seg s0, s1, s2;
} gg_args;

/* This block's segment and its first weight row j0 (selects, no indexing into the
 * parameter space, which would copy it to local memory). */
static __device__ __forceinline__ gg_seg gg_segment(const gg_args *p, int bn, int64_t *j0) {
    unsigned bx = blockIdx.x, b0 = 0;
    gg_seg g = p->s0;
    if (bx >= p->s0.blk_end) {
        b0 = p->s0.blk_end, g = p->s1;
        if (bx >= p->s1.blk_end) b0 = p->s1.blk_end, g = p->s2;
    }
    *j0 = (int64_t)(bx - b0) * bn;
    return g;
}

/* Copies stage s: A [64][64] and W [BN][64] halves, 16 bytes per copy, zero past k. */
#define GG_ISSUE(st, BN, NT, s)                                                                               \
    do {                                                                                                      \
        int64_t k0_ = (int64_t)(s) * GBK;                                                                     \
        _Pragma("unroll") for (int v_ = 0; v_ < (FBM * 8) / (NT); v_++) {                                     \
            int idx_ = tid + v_ * (NT), r_ = idx_ >> 3, q_ = idx_ & 7;                                        \
            bool ok_ = k0_ + q_ * 8 < p.k;                                                                    \
            gm_cp16z((st) + (r_ * GROW + q_ * 8) * 2, ok_ ? (const void *)(pa[v_] + k0_) : (const void *)pa[v_], \
                     ok_);                                                                                    \
        }                                                                                                     \
        _Pragma("unroll") for (int v_ = 0; v_ < ((BN) * 8) / (NT); v_++) {                                    \
            int idx_ = tid + v_ * (NT), r_ = idx_ >> 3, q_ = idx_ & 7;                                        \
            bool ok_ = k0_ + q_ * 8 < p.k;                                                                    \
            gm_cp16z((st) + GS_A_BYTES + (r_ * GROW + q_ * 8) * 2,                                            \
                     ok_ ? (const void *)(pb[v_] + k0_ * 2) : (const void *)pb[v_], ok_);                     \
        }                                                                                                     \
    } while (0)

/* One stage of a warp's 16MI x 32 tile (MI 16-token fragments): four k16 steps. */
#define GG_MMA_FN(NAME, MI)                                                                                   \
static __device__ __forceinline__ void NAME(const __half *sa, const __half *sb, int wm, int wn,              \
                                            float acc[MI][4][4]) {                                           \
    int lane = threadIdx.x & 31;                                                                              \
    const __half *qa = sa + (wm * 16 * (MI) + (lane & 7) + ((lane >> 3) & 1) * 8) * GROW + (lane >> 4) * 8;  \
    const __half *qb = sb + (wn * 32 + (lane & 7) + (lane >> 4) * 8) * GROW + ((lane >> 3) & 1) * 8;          \
_Pragma("unroll")                                                                                                \
    for (int kk = 0; kk < GBK; kk += 16) {                                                                    \
        unsigned af[MI][4], bf[4][2];                                                                         \
_Pragma("unroll")                                                                                                \
        for (int mi = 0; mi < (MI); mi++) gm_ldsm4(af[mi], qa + mi * 16 * GROW + kk);                         \
_Pragma("unroll")                                                                                                \
        for (int nb = 0; nb < 2; nb++) {                                                                      \
            unsigned r[4];                                                                                    \
            gm_ldsm4(r, qb + nb * 16 * GROW + kk);                                                            \
            bf[2 * nb][0] = r[0], bf[2 * nb][1] = r[1], bf[2 * nb + 1][0] = r[2], bf[2 * nb + 1][1] = r[3];   \
        }                                                                                                     \
_Pragma("unroll")                                                                                                \
        for (int mi = 0; mi < (MI); mi++)                                                                     \
_Pragma("unroll")                                                                                                \
            for (int ni = 0; ni < 4; ni++) gm_mma_f16(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);             \
    }                                                                                                         \
}
GG_MMA_FN(gg_mma2, 2)
GG_MMA_FN(gg_mma4, 4)

/* NAME: 64 x BN tiles, warps of 16MI x 32 (64 / 16MI x BN / 32 warps), MINB blocks per SM. */
#define GG_KERNEL(NAME, BN, MI, MINB)                                                                         \
    static __global__ void __launch_bounds__((64 / (16 * (MI))) * (BN), MINB) NAME(gg_args p) {             \
        extern __shared__ __align__(16) uint8_t gg_smem[];                                                   \
        const int NT = (64 / (16 * (MI))) * (BN), WN = (BN) / 32;                                            \
        int tid = threadIdx.x, warp = tid >> 5, wm = warp / WN, wn = warp % WN;                              \
        int64_t i0 = (int64_t)blockIdx.y * FBM, j0;                                                          \
        gg_seg g = gg_segment(&p, BN, &j0);                                                                  \
        const __half *pa[(FBM * 8) / NT];                                                                    \
        const uint8_t *pb[((BN) * 8) / NT];                                                                  \
        _Pragma("unroll") for (int v = 0; v < (FBM * 8) / NT; v++) {                                         \
            int idx = tid + v * NT;                                                                          \
            pa[v] = p.a + min(i0 + (idx >> 3), p.m - 1) * p.k + (idx & 7) * 8;                               \
        }                                                                                                    \
        _Pragma("unroll") for (int v = 0; v < ((BN) * 8) / NT; v++) {                                        \
            int idx = tid + v * NT;                                                                          \
            pb[v] = g.w + min(j0 + (idx >> 3), g.n - 1) * p.row_bytes + (idx & 7) * 16;                      \
        }                                                                                                    \
        float acc[MI][4][4];                                                                                 \
        _Pragma("unroll") for (int mi = 0; mi < (MI); mi++)                                                  \
        _Pragma("unroll") for (int ni = 0; ni < 4; ni++)                                                     \
        _Pragma("unroll") for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;                                 \
        _Pragma("unroll") for (int s = 0; s < GST - 1; s++) {                                                \
            if (s < p.nst) GG_ISSUE(gg_smem + s * G_STAGE(BN), BN, NT, s);                                   \
            gm_commit();                                                                                     \
        }                                                                                                    \
        for (int s = 0; s < p.nst; s++) {                                                                    \
            gm_wait_2(); /* stage s landed */                                                                \
            __syncthreads(); /* every warp is done with stage s - 1: its buffer takes s + 3 */               \
            if (s + GST - 1 < p.nst) GG_ISSUE(gg_smem + ((s + GST - 1) % GST) * G_STAGE(BN), BN, NT, s + GST - 1); \
            gm_commit();                                                                                     \
            const uint8_t *st = gg_smem + (s % GST) * G_STAGE(BN);                                           \
            gg_mma##MI((const __half *)st, (const __half *)(st + GS_A_BYTES), wm, wn, acc);                  \
        }                                                                                                    \
        gm_wait_all();                                                                                       \
        _Pragma("unroll") for (int h = 0; h < (MI) / 2; h++)                                                 \
            gm_store4(acc + 2 * h, i0 + wm * 16 * (MI) + 32 * h, j0 + wn * 32, p.m, g.n, g.y, g.ldy, g.add_to); \
    }
GG_KERNEL(gemm_hh_128, 128, 2, 2)
GG_KERNEL(gemm_hh_64, 64, 2, 3)
/* experimental (HEARTH_GEMMF_WIDE=1 in place of gemm_hh_128): 4 warps of 64 x 32, 6 fragment
 * loads per 16 products instead of 4 per 8 */
GG_KERNEL(gemm_hh_128w, 128, 4, 2)

/* f32 [n8 * 8] -> f16, 8 values per thread (the rounding of gh_convert / gf_put). */
static __global__ void gemm_to_f16_kernel(const float4 *x, int64_t n8, uint4 *y) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    float4 x0 = x[2 * i], x1 = x[2 * i + 1];
    __half2 h0 = __floats2half2_rn(x0.x, x0.y), h1 = __floats2half2_rn(x0.z, x0.w);
    __half2 h2 = __floats2half2_rn(x1.x, x1.y), h3 = __floats2half2_rn(x1.z, x1.w);
    y[i] = make_uint4(*(unsigned *)&h0, *(unsigned *)&h1, *(unsigned *)&h2, *(unsigned *)&h3);
}

/* HEARTH_GEMMF=0: the previous F16 kernels (gemm_h_kernel, one product per launch), for
 * before/after measurements; HEARTH_GEMMF_BN=64|128 forces the tile width, HEARTH_GEMMF_WIDE=1 takes gemm_hh_128w
 * for the 128-row tiles. */
static int gg_mode(const cuda_ctx *c, int *force_bn, int *wide) {
    *force_bn = c->knobs.gemmf_bn;
    *wide = c->knobs.gemmf_wide;
    return c->knobs.gemmf;
}

/* Whether the f16-activation path takes these products: F16 weights of one row length with
 * 16-byte aligned rows, aligned x, k % 8 == 0. */
static bool gg_eligible(int n, const cuda_weight *const *ws, const float *x) {
    const cuda_weight *w = ws[0];
    if (n < 1 || n > 3 || (uintptr_t)x % 16 || w->n_cols % 8 || w->row_bytes % 16 || w->n_cols <= 0) return false;
    for (int i = 0; i < n; i++)
        if (ws[i]->type != QT_F16 || ws[i]->n_cols != w->n_cols || ws[i]->row_bytes != w->row_bytes ||
            (uintptr_t)ws[i]->data % 16 || ws[i]->n_rows <= 0)
            return false;
    return true;
}

/* Column-tile segments of the launch for tile width bn; returns the number of column tiles. */
static unsigned gg_segments(gg_args *p, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                            float *const *adds, int bn) {
    gg_seg *sg[3] = { &p->s0, &p->s1, &p->s2 };
    unsigned blocks = 0;
    for (int i = 0; i < 3; i++) {
        int j = i < n ? i : n - 1; /* unused segments repeat the last (never selected) */
        if (i < n) blocks += (unsigned)((ws[j]->n_rows + bn - 1) / bn);
        *sg[i] = (gg_seg){ (const uint8_t *)ws[j]->data, ws[j]->n_rows, ldys[j], ys[j], adds[j], blocks };
    }
    return blocks;
}

static int gg_launch(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                     float *const *adds, const float *x, int64_t m, int force_bn, int wide, hb_err *err) {
    int64_t k = ws[0]->n_cols, n8 = m * k / 8;
    int rc = cu_scratch_reserve(&c->f16a, (size_t)(m * k) * sizeof(__half), err);
    if (rc) return rc;
    gemm_to_f16_kernel<<<cu_blocks(n8, 256), 256, 0, c->stream>>>((const float4 *)x, n8, (uint4 *)c->f16a.p);
    if ((rc = cu_check_launch(err, "converting activations to f16"))) return rc;
    if ((rc = cu_smem_allow(c, (const void *)gemm_hh_128, G_SMEM(128), err)) ||
        (rc = cu_smem_allow(c, (const void *)gemm_hh_64, G_SMEM(64), err)) ||
        (rc = cu_smem_allow(c, (const void *)gemm_hh_128w, G_SMEM(128), err)))
        return rc;
    gg_args p;
    memset(&p, 0, sizeof p);
    p.a = (const __half *)c->f16a.p, p.m = m, p.k = k, p.row_bytes = (int64_t)ws[0]->row_bytes;
    p.nst = (int)((k + GBK - 1) / GBK);
    unsigned mt = (unsigned)((m + FBM - 1) / FBM);
    /* 128-row tiles when they fill the GPU evenly enough: two or more blocks per SM, or one
     * block on more than half of the SMs and none waiting (n = 2048 at 512 tokens: 128
     * blocks); else 64-row tiles (q/k/v at 512 tokens: 160 blocks of 128 would leave 28 SMs
     * with two and the rest with one). Measured on an H200, see docs/cuda.md. */
    unsigned t128 = gg_segments(&p, n, ws, ys, ldys, adds, 128);
    int64_t b128 = (int64_t)t128 * mt, sms = c->info.sm_count;
    int bn = force_bn ? force_bn : (b128 >= 2 * sms || (b128 <= sms && 2 * b128 > sms) ? 128 : 64);
    unsigned tiles = bn == 128 ? t128 : gg_segments(&p, n, ws, ys, ldys, adds, 64);
    dim3 grid(tiles, mt);
    if (bn == 128 && wide) gemm_hh_128w<<<grid, 128, G_SMEM(128), c->stream>>>(p);
    else if (bn == 128) gemm_hh_128<<<grid, 256, G_SMEM(128), c->stream>>>(p);
    else gemm_hh_64<<<grid, 128, G_SMEM(64), c->stream>>>(p);
    return cu_check_launch(err, "tensor-core matrix multiply");
}

/* One product by the previous kernels: gemm_h_kernel (F16, aligned) or gemm_f_kernel. */
static int gf_launch(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t m, float *y, int64_t ldy,
                     float *add_to, hb_err *err) {
    if (w->type != QT_F16 && w->type != QT_BF16)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: no f16 tensor-core kernel for %s", quant_type_name(w->type));
    gf_args p;
    p.x = x, p.w = (const uint8_t *)w->data, p.row_bytes = (int64_t)w->row_bytes;
    p.m = m, p.n = w->n_rows, p.k = w->n_cols, p.bf16 = w->type == QT_BF16;
    p.vec_a = ((uintptr_t)x % 16 == 0) && p.k % 4 == 0;
    p.vec_b = ((uintptr_t)w->data % 16 == 0) && w->row_bytes % 16 == 0;
    p.y = y, p.ldy = ldy, p.add_to = add_to;
    dim3 grid((unsigned)((p.n + FBN - 1) / FBN), (unsigned)((m + FBM - 1) / FBM));
    if (!p.bf16 && p.vec_a && p.vec_b && p.k % 8 == 0) {
        int rc = cu_smem_allow(c, (const void *)gemm_h_kernel, H_SMEM, err);
        if (rc) return rc;
        gemm_h_kernel<<<grid, 256, H_SMEM, c->stream>>>(p);
    } else {
        gemm_f_kernel<<<grid, 256, 0, c->stream>>>(p);
    }
    return cu_check_launch(err, "tensor-core matrix multiply");
}

/* y_i = x W_i^T for n (1..3) F16/BF16 weights of one row length over the same f32 x
 * [m][n_cols] (one launch on the f16-activation path); adds[i] (optional) gets y_i added. */
int cu_gemm_float_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                        float *const *adds, const float *x, int64_t m, hb_err *err) {
    int force_bn, wide, rc = HEARTH_OK;
    if (gg_mode(c, &force_bn, &wide) && gg_eligible(n, ws, x))
        return gg_launch(c, n, ws, ys, ldys, adds, x, m, force_bn, wide, err);
    for (int i = 0; i < n && !rc; i++) rc = gf_launch(c, ws[i], x, m, ys[i], ldys[i], adds[i], err);
    return rc;
}

/* y = x W^T for an F16 or BF16 W and f32 x [m][n_cols]. add_to (optional) gets y added. */
int cu_gemm_float(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t m, float *y, int64_t ldy,
                  float *add_to, hb_err *err) {
    return cu_gemm_float_multi(c, 1, &w, &y, &ldy, &add_to, x, m, err);
}
