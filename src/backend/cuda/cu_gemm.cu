/* cu_gemm.cu — tensor-core matrix multiplies for batches (prefill, 17+ tokens):
 *     y[i][j] = sum_k x[i][k] * W[j][k]     x: [m][k] activations, W: [n][k] weight rows
 * accumulated in f32, with the residual add (add_to[i][j] += y[i][j]) in the epilogue.
 *
 * Quantized weights (gemm_q_<unpacker>, one kernel per type made by GQ_KERNEL from the
 * GQ_TYPES table; CUDA C, no templates): int8 tensor-core products (mma m16n8k32 s8) of int8
 * activations (codes + one scale per 32 values: the format and arithmetic of
 * cu_act_quantize, the scalar reference and the mat-vec kernels) with the weights' integer
 * codes. The raw
 * quant blocks of a tile are copied to shared memory as they are (asynchronous copies),
 * unpacked there once per block into int8 codes plus per-32 (or per-16) scales and offsets
 * with the per-type unpackers of cu_unpack.cuh, and every 32-element chunk's integer dot
 * products are scaled into the f32 accumulators: there is no dequantized copy of the
 * weight in memory, and the activations move as 1 byte per value instead of 4.
 *
 * Its cost is the scaling of every chunk's integer result (3 float operations per output
 * and 32 values of k), so it is bound by instruction issue (~130-150 TFLOPS-equivalent on an
 * H200 for TinyLlama shapes). Blocks of 8 warps own a 64 (tokens) x 64 (weight rows) tile,
 * each warp 32 x 16; 107 KB of shared memory lets 2 blocks share an SM.
 *
 * F16/BF16 weights (cu_gemm_f.cu; the shared helpers are in cu_gemm.cuh): f16 products
 * (mma m16n8k16) with f32 accumulation, warps of 32 x 32.
 * F16 rows that allow 16-byte copies (k % 8 == 0, aligned) take gemm_hh_<64|128>: the
 * activations are converted to f16 once per product group into a scratch buffer, then both
 * operands stream through a 4-stage ring of asynchronous copies, 64 values of k per stage,
 * 64 x 64 or 64 x 128 tiles chosen by grid size, q/k/v (gate/up) in one launch (~130-185
 * TFLOPS at TinyLlama shapes). Other shapes and BF16 take gemm_f_kernel (loads staged in
 * registers, converted on the way to shared memory); gemm_h_kernel (f32 activations in the
 * ring, converted per block; ~100-130 TFLOPS) remains behind HEARTH_GEMMF=0 for
 * comparisons.
 *
 * Shared-memory tiles have rows padded by 16 bytes so that the 8 row addresses of every
 * ldmatrix fall into distinct banks. (An f16 variant for quantized weights, unpacking the
 * tiles to f16 once per block, was measured slower: 42 against 34 us at 512x2048x2048 Q4_0.)
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_gemm.cuh"
#include "backend/cuda/cu_unpack.cuh"

/* ---- activation quantization for the quantized products ---------------------------------
 * The arithmetic and layout of cu_act_quantize (act_quant_kernel, cu_matmul.cu): per 32-value
 * chunk d = amax / 127, codes round(v * 127 / amax) (halves away from zero), and the code
 * sums of both 16-value halves; here 4 threads share a chunk (8 values each, 16-byte loads)
 * instead of a warp, which makes the pass bandwidth-bound for prefill batches. */
static __global__ void gemm_act_quant_kernel(const float4 *x, int64_t n_thr, uint2 *xq, float *xd, int2 *xs) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    bool ok = i < n_thr;
    float4 a = ok ? x[2 * i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 b = ok ? x[2 * i + 1] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float v[8] = { a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w };
    float amax = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) amax = fmaxf(amax, fabsf(v[e]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    unsigned w[2] = { 0u, 0u };
    int sum = 0;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        float sc = v[e] * id;
        int q = (int)(sc >= 0.0f ? sc + 0.5f : sc - 0.5f);
        q = q > 127 ? 127 : (q < -127 ? -127 : q);
        sum += q;
        w[e >> 2] |= (unsigned)(q & 0xff) << (8 * (e & 3));
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* the 16-value half of this thread */
    int hi = __shfl_down_sync(0xffffffffu, sum, 2);
    if (!ok) return;
    xq[i] = make_uint2(w[0], w[1]);
    if ((threadIdx.x & 3) == 0) {
        xd[i >> 2] = amax / 127.0f;
        xs[i >> 2] = make_int2(sum, hi);
    }
}

/* x [n_tok][n] (n % 32 == 0) quantized into the activation scratch (cu_act_buffers). */
int cu_gemm_act_quantize(cuda_ctx *c, const float *x, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs,
                         hb_err *err) {
    if ((uintptr_t)x % 16) return cu_act_quantize(c, x, n_tok, n, 0, xq, xd, xs, err);
    int rc = cu_act_buffers(c, n_tok, n, xq, xd, xs, err);
    if (rc) return rc;
    if ((uintptr_t)*xq % 8) return cu_act_quantize(c, x, n_tok, n, 0, xq, xd, xs, err);
    int64_t n_thr = n_tok * n / 8;
    gemm_act_quant_kernel<<<cu_blocks(n_thr, 256), 256, 0, c->stream>>>((const float4 *)x, n_thr, (uint2 *)*xq, *xd,
                                                                       *xs);
    return cu_check_launch(err, "quantizing activations");
}

/* ---- quantized weights ------------------------------------------------------------------
 * Stage s covers chunks [4s, 4s + 4) of k (128 values). A stage buffer holds the int8
 * activation codes [64][144 B], their scales [64][4] and half sums [64][4], and the raw
 * bytes of the weight rows' blocks that contain the stage's chunks [64][240 B] (for
 * 256-value super-blocks the whole super-block, copied for both of its stages). Three stage
 * buffers rotate: while stage s is multiplied, s + 1 is unpacked and s + 2 is in flight.
 * The unpacked weight (codes [64][144 B]; scales a0, a1 and offsets m0, m1 as [64][4]
 * floats each) is double-buffered. */
#define QBM 64
#define QBN 64
#define QCH 4      /* 32-value chunks per stage */
#define QROW 144   /* bytes per row of a code tile: 128 + 16 padding */
#define QRAW 240   /* bytes per raw weight row: a 210-byte super-block + alignment slack */
#define QS_A 0
#define QS_XD (QS_A + QBM * QROW)
#define QS_XS (QS_XD + QBM * QCH * 4)
#define QS_W (QS_XS + QBM * QCH * 8)
#define QS_BYTES (QS_W + QBN * QRAW)
#define QU_S (QBN * QROW) /* then a0, a1, m0, m1: [QBN][QCH] floats each */
#define QU_A0 QU_S
#define QU_A1 (QU_S + QBN * QCH * 4)
#define QU_M0 (QU_S + 2 * QBN * QCH * 4)
#define QU_M1 (QU_S + 3 * QBN * QCH * 4)
#define QU_BYTES (QU_S + 4 * QBN * QCH * 4)
#define Q_SMEM (3 * QS_BYTES + 2 * QU_BYTES)

typedef struct gq_args {
    const int8_t *xq;
    const float *xd;
    const int2 *xs;
    const uint8_t *w;
    int64_t row_bytes;
    int64_t m, n, k;
    int nch;    /* k / 32 */
    int vwl; /* log2 of the width of the raw weight copies: 16, 8, 4 (cp.async) or 2 bytes */
    float *y;
    int64_t ldy;
    float *add_to;
    /* more weights of the same type and row length over the same activations (q/k/v,
     * gate/up) in the same launch: segment i >= 1 is sw[i-1] with sn rows, its output sy
     * (rows sld apart, sadd the residual target), owning the sblk column tiles after the
     * previous segment's (segment 0 owns blk0) */
    int nseg;
    unsigned blk0, sblk[2];
    const uint8_t *sw[2];
    int64_t sn[2], sld[2];
    float *sy[2], *sadd[2];
} gq_args;

/* This block's segment: its weight, rows, output and first column (weight row) j0. */
typedef struct gq_seg {
    const uint8_t *w;
    int64_t n, ldy, j0;
    float *y, *add_to;
} gq_seg;

static __device__ __forceinline__ gq_seg gq_segment(const gq_args p) {
    gq_seg g = { p.w, p.n, p.ldy, 0, p.y, p.add_to };
    unsigned bx = blockIdx.x;
    if (p.nseg > 1 && bx >= p.blk0) {
        /* the segment is picked with selects, not an index: a runtime index into the
         * parameter arrays would copy the whole struct to local memory (a stack frame) */
        bool i = p.nseg > 2 && bx >= p.blk0 + p.sblk[0];
        bx -= p.blk0 + (i ? p.sblk[0] : 0);
        g.w = i ? p.sw[1] : p.sw[0], g.n = i ? p.sn[1] : p.sn[0], g.ldy = i ? p.sld[1] : p.sld[0];
        g.y = i ? p.sy[1] : p.sy[0], g.add_to = i ? p.sadd[1] : p.sadd[0];
    }
    g.j0 = (int64_t)bx * QBN;
    return g;
}

/* Per-type unpacking: qb / bb (values / bytes per block), halves (a scale per 16 values),
 * has_min (offsets m), off (a constant code offset folded into signed codes: a * (q - off)
 * with m = -off * a). */
#define GQ_TYPES(X)                                                                                           \
    X(QT_Q4_0, up_q4_0, 32, 18, 0, 0, 8)                                                                      \
    X(QT_Q4_1, up_q4_1, 32, 20, 0, 1, 0)                                                                      \
    X(QT_Q5_0, up_q5_0, 32, 22, 0, 0, 16)                                                                     \
    X(QT_Q5_1, up_q5_1, 32, 24, 0, 1, 0)                                                                      \
    X(QT_Q8_0, up_q8_0, 32, 34, 0, 0, 0)                                                                      \
    X(QT_IQ4_NL, up_iq4_nl, 32, 18, 0, 0, 0)                                                                  \
    X(QT_Q2_K, up_q2_K, 256, 84, 1, 1, 0)                                                                     \
    X(QT_Q3_K, up_q3_K, 256, 110, 1, 0, 0)                                                                    \
    X(QT_Q4_K, up_q4_K, 256, 144, 0, 1, 0)                                                                    \
    X(QT_Q5_K, up_q5_K, 256, 176, 0, 1, 0)                                                                    \
    X(QT_Q6_K, up_q6_K, 256, 210, 1, 0, 0)                                                                    \
    X(QT_IQ4_XS, up_iq4_xs, 256, 136, 0, 0, 0)

/* The traits of type T; every caller passes a literal T (one kernel per type, all helpers
 * inlined), so the switches fold away at compile time. */
#define GQ_CASE_QB(T_, FN, QB, BB, H, MN, OFF) case T_: return QB;
#define GQ_CASE_BB(T_, FN, QB, BB, H, MN, OFF) case T_: return BB;
#define GQ_CASE_H(T_, FN, QB, BB, H, MN, OFF) case T_: return H;
#define GQ_CASE_MN(T_, FN, QB, BB, H, MN, OFF) case T_: return MN;
#define GQ_CASE_OFF(T_, FN, QB, BB, H, MN, OFF) case T_: return OFF;
#define GQ_CASE_UP(T_, FN, QB, BB, H, MN, OFF) case T_: FN(row, c, lut, q, a, m); return;
static __device__ __forceinline__ int gq_qb(int T) { switch (T) { GQ_TYPES(GQ_CASE_QB) } return 32; }
static __device__ __forceinline__ int gq_bb(int T) { switch (T) { GQ_TYPES(GQ_CASE_BB) } return 0; }
static __device__ __forceinline__ bool gq_halves(int T) { switch (T) { GQ_TYPES(GQ_CASE_H) } return false; }
static __device__ __forceinline__ bool gq_has_min(int T) { switch (T) { GQ_TYPES(GQ_CASE_MN) } return false; }
static __device__ __forceinline__ unsigned gq_off(int T) { switch (T) { GQ_TYPES(GQ_CASE_OFF) } return 0; }
static __device__ __forceinline__ void gq_unpack_chunk(int T, UNPACK_ARGS) { switch (T) { GQ_TYPES(GQ_CASE_UP) } }

/* IQ4_NL / IQ4_XS code levels (the format's table). */
static __constant__ int8_t k_gm_iq4[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/* The weight blocks of stage s: byte range [off, end) of a row, copied as [lo, hi) in
 * pieces of vw = 1 << vwl bytes; cbase: index of the stage's first chunk in the copy. */
typedef struct gq_span {
    int nck, off, lo, ncp, cbase;
} gq_span;

static __device__ __forceinline__ gq_span gq_stage_span(int T, const gq_args p, int s) {
    gq_span sp;
    int c0 = s * QCH;
    sp.nck = min(QCH, p.nch - c0);
    int end;
    if (gq_qb(T) == 32) {
        sp.off = c0 * gq_bb(T), end = (c0 + sp.nck) * gq_bb(T), sp.cbase = 0;
    } else { /* rows are whole super-blocks of 8 chunks; a stage is half of one */
        sp.off = (c0 >> 3) * gq_bb(T), end = sp.off + gq_bb(T), sp.cbase = c0 & 7;
    }
    int vw = 1 << p.vwl;
    sp.lo = sp.off & -vw;
    sp.ncp = (((end + vw - 1) & -vw) - sp.lo) >> p.vwl; /* the end stays <= row_bytes: row_bytes % vw == 0 */
    return sp;
}

/* Per-thread sources of the copies, fixed for the whole k loop. Rows past m or n repeat the
 * last row (their results are never stored). */
typedef struct gq_src {
    const int8_t *a[2]; /* activation codes: rows tid / 8 and + 32, 16-byte piece tid % 8 */
    const float *xd;    /* scales / half sums: row tid / 4, chunk tid % 4 */
    const int2 *xs;
    const uint8_t *w; /* weight row tid / 4 */
} gq_src;

static __device__ __forceinline__ gq_src gq_sources(const gq_args p, int64_t i0, int64_t j0) {
    gq_src g;
    int tid = threadIdx.x;
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int r = (tid + v * 256) >> 3;
        g.a[v] = p.xq + min(i0 + r, p.m - 1) * p.k + (tid & 7) * 16;
    }
    int64_t ra = min(i0 + (tid >> 2), p.m - 1);
    g.xd = p.xd + ra * p.nch + (tid & 3);
    g.xs = p.xs + ra * p.nch + (tid & 3);
    g.w = p.w + min(j0 + (tid >> 2), p.n - 1) * p.row_bytes;
    return g;
}

/* Starts the copies of stage s into buffer st. */
static __device__ __forceinline__ void gq_issue(int T, const gq_args p, const gq_src g, uint8_t *st, int s) {
    int tid = threadIdx.x;
    int c0 = s * QCH;
    gq_span sp = gq_stage_span(T, p, s);
    if ((tid & 7) < 2 * sp.nck) {
#pragma unroll
        for (int v = 0; v < 2; v++)
            gm_cp16(st + QS_A + ((tid + v * 256) >> 3) * QROW + (tid & 7) * 16, g.a[v] + c0 * 32);
    }
    if ((tid & 3) < sp.nck) {
        gm_cp4(st + QS_XD + tid * 4, g.xd + c0);
        if (gq_has_min(T)) gm_cp8(st + QS_XS + tid * 8, g.xs + c0);
    }
    const uint8_t *src = g.w + sp.lo;
    uint8_t *dst = st + QS_W + (tid >> 2) * QRAW;
    if (p.vwl == 4) {
        for (int j = tid & 3; j < sp.ncp; j += 4) gm_cp16(dst + j * 16, src + j * 16);
    } else if (p.vwl == 3) {
        for (int j = tid & 3; j < sp.ncp; j += 4) gm_cp8(dst + j * 8, src + j * 8);
    } else if (p.vwl == 2) {
        for (int j = tid & 3; j < sp.ncp; j += 4) gm_cp4(dst + j * 4, src + j * 4);
    } else {
        for (int j = tid & 3; j < sp.ncp; j += 4) ((uint16_t *)dst)[j] = ((const uint16_t *)src)[j];
    }
}

/* Subtracts k (<= 16) from 4 byte codes of 0..31 without borrows between the bytes. */
static __device__ __forceinline__ unsigned gq_sub_bytes(unsigned x, unsigned k) {
    return ((x | 0x80808080u) - k * 0x01010101u) ^ 0x80808080u;
}

/* Unpacks the weight of stage s (buffer st) into codes and scales (buffer u). */
static __device__ __forceinline__ void gq_unpack(int T, const gq_args p, const uint8_t *st, uint8_t *u, const int8_t *lut,
                                                 int s) {
    gq_span sp = gq_stage_span(T, p, s);
    {
        int rr = threadIdx.x >> 2, jj = threadIdx.x & 3;
        if (jj >= sp.nck) return;
        int q[8];
        float a[2], mn[2];
        gq_unpack_chunk(T, st + QS_W + rr * QRAW + (sp.off - sp.lo), sp.cbase + jj, lut, q, a, mn);
        if (gq_off(T)) {
#pragma unroll
            for (int i = 0; i < 8; i++) q[i] = (int)gq_sub_bytes((unsigned)q[i], gq_off(T));
        }
        uint4 *dc = (uint4 *)(u + rr * QROW + jj * 32);
        dc[0] = make_uint4((unsigned)q[0], (unsigned)q[1], (unsigned)q[2], (unsigned)q[3]);
        dc[1] = make_uint4((unsigned)q[4], (unsigned)q[5], (unsigned)q[6], (unsigned)q[7]);
        int so = (rr * QCH + jj) * 4;
        *(float *)(u + QU_A0 + so) = a[0];
        if (gq_halves(T)) *(float *)(u + QU_A1 + so) = a[1];
        if (gq_has_min(T)) *(float *)(u + QU_M0 + so) = mn[0];
        if (gq_halves(T) && gq_has_min(T)) *(float *)(u + QU_M1 + so) = mn[1];
    }
}

/* Multiplies stage s: activation codes and scales from st, weight codes and scales from u.
 * Warp w owns rows 32 (w / 4) .. + 32 and weight rows 16 (w % 4) .. + 16 of the tile. */
static __device__ __forceinline__ void gq_mma(int T, const uint8_t *st, const uint8_t *u, int nck, float acc[2][2][4]) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    int wm = warp >> 2, wn = warp & 3;
    const uint8_t *pa = st + QS_A + (wm * 32 + (lane & 7) + ((lane >> 3) & 1) * 8) * QROW + (lane >> 4) * 16;
    const uint8_t *pb = u + (wn * 16 + (lane & 7) + (lane >> 4) * 8) * QROW + ((lane >> 3) & 1) * 16;
    /* the scales of the stage's 4 chunks: one 16-byte load per row / column */
    float4 dx4[2][2], ca0[2][2], ca1[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++)
            dx4[mi][h] = *(const float4 *)(st + QS_XD + (wm * 32 + mi * 16 + g + 8 * h) * QCH * 4);
#pragma unroll
    for (int ni = 0; ni < 2; ni++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int co = (wn * 16 + ni * 8 + 2 * t + e) * QCH * 4;
            ca0[ni][e] = *(const float4 *)(u + QU_A0 + co);
            if (gq_halves(T)) ca1[ni][e] = *(const float4 *)(u + QU_A1 + co);
        }
#pragma unroll
    for (int j = 0; j < QCH; j++) {
        if (j >= nck) break;
        unsigned af[2][4], bf[2][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) gm_ldsm4(af[mi], pa + mi * 16 * QROW + j * 32);
        {
            unsigned r[4];
            gm_ldsm4(r, pb + j * 32);
            bf[0][0] = r[0], bf[0][1] = r[1], bf[1][0] = r[2], bf[1][1] = r[3];
        }
        float dx[2][2], ux[2][2][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                dx[mi][h] = gm_f4(dx4[mi][h], j);
                if (gq_has_min(T)) { /* the code sums of the chunk's halves */
                    int2 sx = *(const int2 *)(st + QS_XS + ((wm * 32 + mi * 16 + g + 8 * h) * QCH + j) * 8);
                    if (gq_halves(T)) {
                        ux[mi][h][0] = dx[mi][h] * (float)sx.x;
                        ux[mi][h][1] = dx[mi][h] * (float)sx.y;
                    } else {
                        ux[mi][h][0] = dx[mi][h] * (float)(sx.x + sx.y);
                    }
                }
            }
        float4 cs[2][2]; /* a0, a1, m0, m1 of the chunk */
#pragma unroll
        for (int ni = 0; ni < 2; ni++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                cs[ni][e].x = gm_f4(ca0[ni][e], j);
                cs[ni][e].y = gq_halves(T) ? gm_f4(ca1[ni][e], j) : 0.0f;
                /* offsets: loaded per chunk (fewer live registers) */
                int co = (wn * 16 + ni * 8 + 2 * t + e) * QCH * 4 + j * 4;
                cs[ni][e].z = gq_has_min(T) ? *(const float *)(u + QU_M0 + co) : 0.0f;
                cs[ni][e].w = gq_halves(T) && gq_has_min(T) ? *(const float *)(u + QU_M1 + co) : 0.0f;
            }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 2; ni++) {
                if (!gq_halves(T)) {
                    int d[4];
                    gm_mma_k32(d, af[mi], bf[ni][0], bf[ni][1], GM_BIAS);
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float f = __int_as_float(d[2 * h + e]) - GM_BIAS_F;
                            float v = fmaf(f, dx[mi][h] * cs[ni][e].x, acc[mi][ni][2 * h + e]);
                            if (gq_has_min(T)) v = fmaf(ux[mi][h][0], cs[ni][e].z, v);
                            acc[mi][ni][2 * h + e] = v;
                        }
                } else {
                    int d0[4], d1[4];
                    gm_mma_k16(d0, af[mi][0], af[mi][1], bf[ni][0], GM_BIAS);
                    gm_mma_k16(d1, af[mi][2], af[mi][3], bf[ni][1], GM_BIAS);
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float f0 = __int_as_float(d0[2 * h + e]) - GM_BIAS_F;
                            float f1 = __int_as_float(d1[2 * h + e]) - GM_BIAS_F;
                            float v = fmaf(f0, dx[mi][h] * cs[ni][e].x, acc[mi][ni][2 * h + e]);
                            v = fmaf(f1, dx[mi][h] * cs[ni][e].y, v);
                            if (gq_has_min(T)) {
                                v = fmaf(ux[mi][h][0], cs[ni][e].z, v);
                                v = fmaf(ux[mi][h][1], cs[ni][e].w, v);
                            }
                            acc[mi][ni][2 * h + e] = v;
                        }
                }
            }
    }
}

/* The body of the per-type kernels (gemm_q_<unpacker>, GQ_KERNEL): T is a literal there. */
static __device__ __forceinline__ void gq_body(int T, gq_args p, uint8_t *gq_smem, int8_t *lut) {
    if (threadIdx.x < 16) lut[threadIdx.x] = k_gm_iq4[threadIdx.x];
    gq_seg sg = gq_segment(p);
    p.w = sg.w, p.n = sg.n;
    int64_t i0 = (int64_t)blockIdx.y * QBM, j0 = sg.j0;
    uint8_t *ub = gq_smem + 3 * QS_BYTES;
    int nst = (p.nch + QCH - 1) / QCH;
    float acc[2][2][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 2; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
    gq_src g = gq_sources(p, i0, j0);
    gq_issue(T, p, g, gq_smem, 0);
    gm_commit();
    if (nst > 1) gq_issue(T, p, g, gq_smem + QS_BYTES, 1);
    gm_commit();
    gm_wait_all();
    __syncthreads();
    gq_unpack(T, p, gq_smem, ub, lut, 0);
    for (int s = 0; s < nst; s++) {
        /* stage s + 1 landed; every warp is done with stage s - 1 (its buffers are free) */
        gm_wait_all();
        __syncthreads();
        if (s + 2 < nst) gq_issue(T, p, g, gq_smem + ((s + 2) % 3) * QS_BYTES, s + 2);
        gm_commit();
        if (s + 1 < nst) gq_unpack(T, p, gq_smem + ((s + 1) % 3) * QS_BYTES, ub + ((s + 1) & 1) * QU_BYTES, lut, s + 1);
        gq_mma(T, gq_smem + (s % 3) * QS_BYTES, ub + (s & 1) * QU_BYTES, min(QCH, p.nch - s * QCH), acc);
    }
    int warp = threadIdx.x >> 5;
    sg = gq_segment(p); /* again: cheaper than keeping it live through the k loop */
    gm_store2(acc, i0 + (warp >> 2) * 32, sg.j0 + (warp & 3) * 16, p.m, sg.n, sg.y, sg.ldy, sg.add_to);
}

#define GQ_KERNEL(T_, FN, QB, BB, H, MN, OFF)                                                             \
    static __global__ void __launch_bounds__(256, 2) gemm_q_##FN(gq_args p) {                            \
        extern __shared__ __align__(16) uint8_t gq_smem[];                                               \
        __shared__ int8_t lut[16];                                                                       \
        gq_body(T_, p, gq_smem, lut);                                                                    \
    }
GQ_TYPES(GQ_KERNEL)

typedef void (*gq_fn)(gq_args);

typedef struct gq_entry {
    uint32_t type;
    gq_fn fn;
    int qb, bb;
} gq_entry;

#define GQ_ENTRY(T_, FN, QB, BB, H, MN, OFF) { T_, gemm_q_##FN, QB, BB },
static const gq_entry k_gq[] = { GQ_TYPES(GQ_ENTRY) };
#define GQ_N (sizeof k_gq / sizeof k_gq[0])

/* y = x W^T for a quantized W, x given as int8 codes xq [m][k], scales xd and half sums xs
 * [m][k / 32] (cu_act_quantize). add_to (optional) gets y added. */
/* y_i = x W_i^T for n (1..3) quantized weights of one type and row length, x given as int8
 * codes xq [m][k], scales xd and half sums xs [m][k / 32] (cu_act_quantize), in one launch;
 * adds[i] (optional) gets y_i added. */
int cu_gemm_quant_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                        float *const *adds, const int8_t *xq, const float *xd, const int2 *xs, int64_t m, hb_err *err) {
    const cuda_weight *w = ws[0];
    size_t i = 0;
    while (i < GQ_N && k_gq[i].type != w->type) i++;
    if (i == GQ_N) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no tensor-core kernel for %s", quant_type_name(w->type));
    int64_t nblk = w->n_cols / k_gq[i].qb;
    if (n < 1 || n > 3 || w->n_cols % k_gq[i].qb || nblk <= 0 || w->row_bytes != (size_t)nblk * (size_t)k_gq[i].bb)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unexpected row layout for %s", quant_type_name(w->type));
    uintptr_t al = (uintptr_t)w->row_bytes;
    unsigned blocks = 0;
    gq_args p;
    memset(&p, 0, sizeof p);
    for (int s = 0; s < n; s++) {
        if (ws[s]->type != w->type || ws[s]->n_cols != w->n_cols || ws[s]->row_bytes != w->row_bytes)
            return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: tensor-core multi-product over different weights");
        al |= (uintptr_t)ws[s]->data;
        unsigned b = (unsigned)((ws[s]->n_rows + QBN - 1) / QBN);
        if (s == 0) {
            p.w = (const uint8_t *)w->data, p.n = w->n_rows, p.y = ys[0], p.ldy = ldys[0], p.add_to = adds[0];
            p.blk0 = b;
        } else {
            p.sw[s - 1] = (const uint8_t *)ws[s]->data, p.sn[s - 1] = ws[s]->n_rows, p.sy[s - 1] = ys[s];
            p.sld[s - 1] = ldys[s], p.sadd[s - 1] = adds[s], p.sblk[s - 1] = b;
        }
        blocks += b;
    }
    if (al % 2) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: weight rows are not 2-byte aligned");
    p.nseg = n;
    p.vwl = al % 16 == 0 ? 4 : (al % 8 == 0 ? 3 : (al % 4 == 0 ? 2 : 1));
    p.xq = xq, p.xd = xd, p.xs = xs, p.row_bytes = (int64_t)w->row_bytes;
    p.m = m, p.k = w->n_cols, p.nch = (int)(w->n_cols / 32);
    int rc = cu_smem_allow(c, (const void *)k_gq[i].fn, Q_SMEM, err);
    if (rc) return rc;
    dim3 grid(blocks, (unsigned)((m + QBM - 1) / QBM));
    k_gq[i].fn<<<grid, 256, Q_SMEM, c->stream>>>(p);
    return cu_check_launch(err, "tensor-core matrix multiply");
}

int cu_gemm_quant(cuda_ctx *c, const cuda_weight *w, const int8_t *xq, const float *xd, const int2 *xs, int64_t m,
                  float *y, int64_t ldy, float *add_to, hb_err *err) {
    return cu_gemm_quant_multi(c, 1, &w, &y, &ldy, &add_to, xq, xd, xs, m, err);
}
