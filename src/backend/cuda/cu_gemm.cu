/* cu_gemm.cu — tensor-core matrix multiplies for batches (prefill, 17+ tokens):
 *     y[i][j] = sum_k x[i][k] * W[j][k]     x: [m][k] activations, W: [n][k] weight rows
 * accumulated in f32, with the residual add (add_to[i][j] += y[i][j]) in the epilogue.
 *
 * Quantized weights (gemm_q_kernel): int8 tensor-core products (mma m16n8k32 s8) of the
 * int8 activations of cu_act_quantize (codes + one scale per 32 values, the arithmetic of
 * the scalar reference and of the mat-vec kernels) with the weights' integer codes. The raw
 * quant blocks of a tile are copied to shared memory as they are (asynchronous copies),
 * unpacked there once per block into int8 codes plus per-32 (or per-16) scales and offsets
 * with the per-type unpackers of cu_unpack.cuh, and every 32-element chunk's integer dot
 * products are scaled into the f32 accumulators: there is no dequantized copy of the
 * weight in memory, and the activations move as 1 byte per value instead of 4.
 *
 * F16/BF16 weights (gemm_f_kernel): f16 products (mma m16n8k16) with f32 accumulation; the
 * f32 activations (and BF16 weights) are converted to f16 on their way into shared memory.
 *
 * Both kernels: 8 warps own a 64 (tokens) x 128 (weight rows) tile of y, each warp a
 * 32x32 quarter of it (2 x 4 fragments); m = 512 and n = 2048 make 128 blocks, one wave on
 * an H200. Shared-memory tiles have rows padded by 16 bytes so that the 8 row addresses of
 * every ldmatrix fall into distinct banks.
 */
#include "backend/cuda/cu_unpack.cuh"

/* ---- PTX helpers ------------------------------------------------------------------------ */

static __device__ __forceinline__ unsigned gm_smem(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void gm_cp16(void *s, const void *g) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(gm_smem(s)), "l"(g));
}

static __device__ __forceinline__ void gm_cp8(void *s, const void *g) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(gm_smem(s)), "l"(g));
}

static __device__ __forceinline__ void gm_cp4(void *s, const void *g) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(gm_smem(s)), "l"(g));
}

static __device__ __forceinline__ void gm_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void gm_wait_all(void) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* Four 8x8 matrices of 16-bit elements (8 rows of 16 bytes each); lane l gives the row
 * address of matrix l / 8, row l % 8. */
static __device__ __forceinline__ void gm_ldsm4(unsigned r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gm_smem(p)));
}

/* d = a . b + c over 16x8x32 int8 (all four c the same value). */
static __device__ __forceinline__ void gm_mma_k32(int d[4], const unsigned a[4], unsigned b0, unsigned b1, int c) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c), "r"(c), "r"(c), "r"(c));
}

/* d = a . b + c over 16x8x16 int8. */
static __device__ __forceinline__ void gm_mma_k16(int d[4], unsigned a0, unsigned a1, unsigned b0, int c) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(c), "r"(c), "r"(c), "r"(c));
}

/* acc += a . b over 16x8x16 f16. */
static __device__ __forceinline__ void gm_mma_f16(float acc[4], const unsigned a[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* The integer products start from this bias: 0x4B400000 + i read as a float is exactly
 * 12582912 + i for |i| < 2^22 (a chunk's dot is at most 32 * 127 * 127), so one float
 * subtraction converts the result. */
#define GM_BIAS 0x4B400000
#define GM_BIAS_F 12582912.0f

/* Stores a warp's 32x32 accumulators (fragment layout of mma: rows g, g + 8, columns 2t,
 * 2t + 1 of each 16x8 piece) and adds them into add_to when given. */
static __device__ __forceinline__ void gm_store(const float acc[2][4][4], int64_t r0, int64_t c0, int64_t m,
                                                int64_t n, float *y, int64_t ldy, float *add_to) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t r = r0 + mi * 16 + g + 8 * h;
            if (r >= m) continue;
#pragma unroll
            for (int ni = 0; ni < 4; ni++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int64_t col = c0 + ni * 8 + 2 * t + e;
                    if (col >= n) continue;
                    float v = acc[mi][ni][2 * h + e];
                    y[r * ldy + col] = v;
                    if (add_to) add_to[r * ldy + col] += v; /* fused residual add */
                }
        }
}

/* ---- quantized weights ------------------------------------------------------------------
 * Stage s covers chunks [4s, 4s + 4) of k (128 values). A stage buffer holds the int8
 * activation codes [64][144 B], their scales [64][4] and half sums [64][4], and the raw
 * bytes of the weight rows' blocks that contain the stage's chunks [128][272 B] (for
 * 256-value super-blocks the whole super-block, copied for both of its stages). Three stage
 * buffers rotate: while stage s is multiplied, s + 1 is unpacked and s + 2 is in flight.
 * The unpacked weight (codes [128][144 B] and {a0, a1, m0, m1} per row and chunk) is
 * double-buffered. */
#define QBM 64
#define QBN 128
#define QCH 4      /* 32-value chunks per stage */
#define QROW 144   /* bytes per row of a code tile: 128 + 16 padding */
#define QRAW 272   /* bytes per raw weight row: a 210-byte super-block + alignment slack */
#define QS_A 0
#define QS_XD (QS_A + QBM * QROW)
#define QS_XS (QS_XD + QBM * QCH * 4)
#define QS_W (QS_XS + QBM * QCH * 8)
#define QS_BYTES (QS_W + QBN * QRAW)
#define QU_S (QBN * QROW)
#define QU_BYTES (QU_S + QCH * QBN * 16)
#define Q_SMEM (3 * QS_BYTES + 2 * QU_BYTES)

typedef struct gq_args {
    const int8_t *xq;
    const float *xd;
    const int2 *xs;
    const uint8_t *w;
    int64_t row_bytes;
    int64_t m, n, k;
    int nch;    /* k / 32 */
    int qb, bb; /* values and bytes per quant block */
    int vw;     /* width of the raw copies: 16, 8, 4 (cp.async) or 2 (plain loads) */
    float *y;
    int64_t ldy;
    float *add_to;
} gq_args;

/* Per-type unpacking: halves (a scale per 16 values), has_min (offsets m), off (a constant
 * code offset folded into signed codes: a * (q - off) with m = -off * a). */
template <int T> struct gq_t;
#define GQ_TYPE(T_, FN, HALVES, MIN, OFF)                                                                 \
    template <> struct gq_t<T_> {                                                                         \
        static constexpr bool halves = HALVES, has_min = MIN;                                             \
        static constexpr unsigned off = OFF;                                                              \
        static __device__ __forceinline__ void unpack(UNPACK_ARGS) {                                      \
            FN(row, c, lut, q, a, m);                                                                     \
        }                                                                                                 \
    };
GQ_TYPE(QT_Q4_0, up_q4_0, false, false, 8)
GQ_TYPE(QT_Q4_1, up_q4_1, false, true, 0)
GQ_TYPE(QT_Q5_0, up_q5_0, false, false, 16)
GQ_TYPE(QT_Q5_1, up_q5_1, false, true, 0)
GQ_TYPE(QT_Q8_0, up_q8_0, false, false, 0)
GQ_TYPE(QT_IQ4_NL, up_iq4_nl, false, false, 0)
GQ_TYPE(QT_Q2_K, up_q2_K, true, true, 0)
GQ_TYPE(QT_Q3_K, up_q3_K, true, false, 0)
GQ_TYPE(QT_Q4_K, up_q4_K, false, true, 0)
GQ_TYPE(QT_Q5_K, up_q5_K, false, true, 0)
GQ_TYPE(QT_Q6_K, up_q6_K, true, false, 0)
GQ_TYPE(QT_IQ4_XS, up_iq4_xs, false, false, 0)

/* IQ4_NL / IQ4_XS code levels (the format's table). */
static __constant__ int8_t k_gm_iq4[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/* The weight blocks of stage s: byte range [off, end) of a row, copied as [lo, hi). */
typedef struct gq_span {
    int nck, off, lo, hi, cbase;
} gq_span;

static __device__ __forceinline__ gq_span gq_stage_span(const gq_args &p, int s) {
    gq_span sp;
    int c0 = s * QCH;
    sp.nck = min(QCH, p.nch - c0);
    int per = p.qb / 32, b_lo = c0 / per, b_hi = (c0 + sp.nck + per - 1) / per;
    sp.off = b_lo * p.bb;
    sp.lo = sp.off & -p.vw;
    sp.hi = (b_hi * p.bb + p.vw - 1) & -p.vw; /* <= row_bytes: row_bytes % vw == 0 */
    sp.cbase = c0 - b_lo * per;               /* chunk index of the stage's first chunk in the copy */
    return sp;
}

/* Starts the copies of stage s into buffer st. Rows past m or n repeat the last row (their
 * results are never stored). */
static __device__ __forceinline__ void gq_issue(const gq_args &p, uint8_t *st, int64_t i0, int64_t j0, int s) {
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int c0 = s * QCH;
    gq_span sp = gq_stage_span(p, s);
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = tid + v * 256, r = idx >> 3, q = idx & 7;
        if (q < 2 * sp.nck) {
            int64_t gi = min(i0 + r, p.m - 1);
            gm_cp16(st + QS_A + r * QROW + q * 16, p.xq + gi * p.k + (int64_t)c0 * 32 + q * 16);
        }
    }
    {
        int r = tid >> 2, j = tid & 3;
        if (j < sp.nck) {
            int64_t gi = min(i0 + r, p.m - 1);
            gm_cp4(st + QS_XD + (r * QCH + j) * 4, p.xd + gi * p.nch + c0 + j);
            gm_cp8(st + QS_XS + (r * QCH + j) * 8, p.xs + gi * p.nch + c0 + j);
        }
    }
    int ncp = (sp.hi - sp.lo) / p.vw;
    for (int rr = warp; rr < QBN; rr += 8) {
        int64_t gn = min(j0 + rr, p.n - 1);
        const uint8_t *src = p.w + gn * p.row_bytes + sp.lo;
        uint8_t *dst = st + QS_W + rr * QRAW;
        for (int j = lane; j < ncp; j += 32) {
            if (p.vw == 16) gm_cp16(dst + j * 16, src + j * 16);
            else if (p.vw == 8) gm_cp8(dst + j * 8, src + j * 8);
            else if (p.vw == 4) gm_cp4(dst + j * 4, src + j * 4);
            else ((uint16_t *)dst)[j] = ((const uint16_t *)src)[j];
        }
    }
}

/* Unpacks the weight of stage s (buffer st) into codes and scales (buffer u). */
template <int T>
static __device__ __forceinline__ void gq_unpack(const gq_args &p, const uint8_t *st, uint8_t *u, const int8_t *lut,
                                                 int s) {
    gq_span sp = gq_stage_span(p, s);
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int it = threadIdx.x + v * 256, rr = it >> 2, jj = it & 3;
        if (jj >= sp.nck) continue;
        int q[8];
        float a[2], mn[2];
        gq_t<T>::unpack(st + QS_W + rr * QRAW + (sp.off - sp.lo), sp.cbase + jj, lut, q, a, mn);
        if (gq_t<T>::off) {
#pragma unroll
            for (int i = 0; i < 8; i++) q[i] = (int)__vsub4((unsigned)q[i], gq_t<T>::off * 0x01010101u);
        }
        uint4 *dc = (uint4 *)(u + rr * QROW + jj * 32);
        dc[0] = make_uint4((unsigned)q[0], (unsigned)q[1], (unsigned)q[2], (unsigned)q[3]);
        dc[1] = make_uint4((unsigned)q[4], (unsigned)q[5], (unsigned)q[6], (unsigned)q[7]);
        *(float4 *)(u + QU_S + (jj * QBN + rr) * 16) = make_float4(a[0], a[1], mn[0], mn[1]);
    }
}

/* Multiplies stage s: activation codes and scales from st, weight codes and scales from u. */
template <int T>
static __device__ __forceinline__ void gq_mma(const uint8_t *st, const uint8_t *u, int nck, float acc[2][4][4]) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    int wm = warp >> 2, wn = warp & 3;
    const uint8_t *pa = st + QS_A + (wm * 32 + (lane & 7) + ((lane >> 3) & 1) * 8) * QROW + (lane >> 4) * 16;
    const uint8_t *pb = u + (wn * 32 + (lane & 7) + (lane >> 4) * 8) * QROW + ((lane >> 3) & 1) * 16;
#pragma unroll
    for (int j = 0; j < QCH; j++) {
        if (j >= nck) break;
        unsigned af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) gm_ldsm4(af[mi], pa + mi * 16 * QROW + j * 32);
#pragma unroll
        for (int nb = 0; nb < 2; nb++) {
            unsigned r[4];
            gm_ldsm4(r, pb + nb * 16 * QROW + j * 32);
            bf[2 * nb][0] = r[0], bf[2 * nb][1] = r[1], bf[2 * nb + 1][0] = r[2], bf[2 * nb + 1][1] = r[3];
        }
        float dx[2][2], ux[2][2][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int r = wm * 32 + mi * 16 + g + 8 * h;
                dx[mi][h] = *(const float *)(st + QS_XD + (r * QCH + j) * 4);
                if (gq_t<T>::has_min) {
                    int2 sx = *(const int2 *)(st + QS_XS + (r * QCH + j) * 8);
                    if (gq_t<T>::halves) {
                        ux[mi][h][0] = dx[mi][h] * (float)sx.x;
                        ux[mi][h][1] = dx[mi][h] * (float)sx.y;
                    } else {
                        ux[mi][h][0] = dx[mi][h] * (float)(sx.x + sx.y);
                    }
                }
            }
        float4 cs[4][2];
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 2; e++)
                cs[ni][e] = *(const float4 *)(u + QU_S + (j * QBN + wn * 32 + ni * 8 + 2 * t + e) * 16);
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                if (!gq_t<T>::halves) {
                    int d[4];
                    gm_mma_k32(d, af[mi], bf[ni][0], bf[ni][1], GM_BIAS);
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float f = __int_as_float(d[2 * h + e]) - GM_BIAS_F;
                            float v = fmaf(f, dx[mi][h] * cs[ni][e].x, acc[mi][ni][2 * h + e]);
                            if (gq_t<T>::has_min) v = fmaf(ux[mi][h][0], cs[ni][e].z, v);
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
                            if (gq_t<T>::has_min) {
                                v = fmaf(ux[mi][h][0], cs[ni][e].z, v);
                                v = fmaf(ux[mi][h][1], cs[ni][e].w, v);
                            }
                            acc[mi][ni][2 * h + e] = v;
                        }
                }
            }
    }
}

template <int T>
static __global__ void __launch_bounds__(256, 1) gemm_q_kernel(gq_args p) {
    extern __shared__ __align__(16) uint8_t gq_smem[];
    __shared__ int8_t lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = k_gm_iq4[threadIdx.x];
    int64_t i0 = (int64_t)blockIdx.y * QBM, j0 = (int64_t)blockIdx.x * QBN;
    uint8_t *ub = gq_smem + 3 * QS_BYTES;
    int nst = (p.nch + QCH - 1) / QCH;
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
    gq_issue(p, gq_smem, i0, j0, 0);
    gm_commit();
    if (nst > 1) gq_issue(p, gq_smem + QS_BYTES, i0, j0, 1);
    gm_commit();
    gm_wait_all();
    __syncthreads();
    gq_unpack<T>(p, gq_smem, ub, lut, 0);
    for (int s = 0; s < nst; s++) {
        /* stage s + 1 landed; every warp is done with stage s - 1 (its buffers are free) */
        gm_wait_all();
        __syncthreads();
        if (s + 2 < nst) gq_issue(p, gq_smem + ((s + 2) % 3) * QS_BYTES, i0, j0, s + 2);
        gm_commit();
        if (s + 1 < nst) gq_unpack<T>(p, gq_smem + ((s + 1) % 3) * QS_BYTES, ub + ((s + 1) & 1) * QU_BYTES, lut, s + 1);
        gq_mma<T>(gq_smem + (s % 3) * QS_BYTES, ub + (s & 1) * QU_BYTES, min(QCH, p.nch - s * QCH), acc);
    }
    int warp = threadIdx.x >> 5;
    gm_store(acc, i0 + (warp >> 2) * 32, j0 + (warp & 3) * 32, p.m, p.n, p.y, p.ldy, p.add_to);
}

typedef void (*gq_fn)(gq_args);

typedef struct gq_entry {
    uint32_t type;
    gq_fn fn;
    int qb;
} gq_entry;

static const gq_entry k_gq[] = {
    { QT_Q4_0, gemm_q_kernel<QT_Q4_0>, 32 },       { QT_Q4_1, gemm_q_kernel<QT_Q4_1>, 32 },
    { QT_Q5_0, gemm_q_kernel<QT_Q5_0>, 32 },       { QT_Q5_1, gemm_q_kernel<QT_Q5_1>, 32 },
    { QT_Q8_0, gemm_q_kernel<QT_Q8_0>, 32 },       { QT_IQ4_NL, gemm_q_kernel<QT_IQ4_NL>, 32 },
    { QT_Q2_K, gemm_q_kernel<QT_Q2_K>, 256 },      { QT_Q3_K, gemm_q_kernel<QT_Q3_K>, 256 },
    { QT_Q4_K, gemm_q_kernel<QT_Q4_K>, 256 },      { QT_Q5_K, gemm_q_kernel<QT_Q5_K>, 256 },
    { QT_Q6_K, gemm_q_kernel<QT_Q6_K>, 256 },      { QT_IQ4_XS, gemm_q_kernel<QT_IQ4_XS>, 256 },
};
#define GQ_N (sizeof k_gq / sizeof k_gq[0])

/* y = x W^T for a quantized W, x given as int8 codes xq [m][k], scales xd and half sums xs
 * [m][k / 32] (cu_act_quantize). add_to (optional) gets y added. */
int cu_gemm_quant(cuda_ctx *c, const cuda_weight *w, const int8_t *xq, const float *xd, const int2 *xs, int64_t m,
                  float *y, int64_t ldy, float *add_to, hb_err *err) {
    static bool smem_set[GQ_N];
    size_t i = 0;
    while (i < GQ_N && k_gq[i].type != w->type) i++;
    if (i == GQ_N) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no tensor-core kernel for %s", quant_type_name(w->type));
    gq_args p;
    p.qb = k_gq[i].qb;
    int64_t nblk = w->n_cols / p.qb;
    if (w->n_cols % p.qb || nblk <= 0 || w->row_bytes % (size_t)nblk || w->row_bytes / (size_t)nblk > 210)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unexpected row layout for %s", quant_type_name(w->type));
    p.bb = (int)(w->row_bytes / (size_t)nblk);
    uintptr_t al = (uintptr_t)w->data | (uintptr_t)w->row_bytes;
    p.vw = al % 16 == 0 ? 16 : (al % 8 == 0 ? 8 : (al % 4 == 0 ? 4 : 2));
    if (al % 2) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: weight rows are not 2-byte aligned");
    p.xq = xq, p.xd = xd, p.xs = xs, p.w = (const uint8_t *)w->data, p.row_bytes = (int64_t)w->row_bytes;
    p.m = m, p.n = w->n_rows, p.k = w->n_cols, p.nch = (int)(w->n_cols / 32);
    p.y = y, p.ldy = ldy, p.add_to = add_to;
    if (!smem_set[i]) {
        cudaError_t e = cudaFuncSetAttribute(k_gq[i].fn, cudaFuncAttributeMaxDynamicSharedMemorySize, Q_SMEM);
        if (e != cudaSuccess) return cu_fail(err, e, "configuring the tensor-core matrix multiply");
        smem_set[i] = true;
    }
    dim3 grid((unsigned)((p.n + QBN - 1) / QBN), (unsigned)((m + QBM - 1) / QBM));
    k_gq[i].fn<<<grid, 256, Q_SMEM, c->stream>>>(p);
    return cu_check_launch(err, "tensor-core matrix multiply");
}

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

static __device__ __forceinline__ void gf_load(const gf_args &p, float4 ra[2], uint4 rb[2], int64_t i0, int64_t j0,
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

static __device__ __forceinline__ void gf_put(const gf_args &p, __half *sa, __half *sb, const float4 ra[2],
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
    gm_store(acc, i0 + (warp >> 2) * 32, j0 + (warp & 3) * 32, p.m, p.n, p.y, p.ldy, p.add_to);
}

/* y = x W^T for an F16 or BF16 W and f32 x [m][n_cols]. add_to (optional) gets y added. */
int cu_gemm_float(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t m, float *y, int64_t ldy,
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
    gemm_f_kernel<<<grid, 256, 0, c->stream>>>(p);
    return cu_check_launch(err, "tensor-core matrix multiply");
}
