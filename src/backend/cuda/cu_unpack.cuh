/* cu_unpack.cuh — per-type decoding of one 32-element chunk of a weight row, shared by the
 * matrix-vector kernels and the dequantization kernels (cu_matmul.cu).
 *
 * Every quantized type is read as chunks of 32 consecutive elements (a whole block of the
 * 32-element formats, a 32-element slice of a 256-element super-block). A chunk decodes to
 *   q[8]    32 small integer codes, 4 per word as signed bytes, element order (word k holds
 *           elements 4k..4k+3);
 *   a[2]    the scale of elements 0..15 and of 16..31;
 *   m[2]    an offset per half, so element e = a[h] * q[e] + m[h] (h = e / 16).
 * This is the arithmetic of the scalar reference (src/quant/ref_*.c): integer dot products
 * per half, scaled once. The byte layouts are documented in src/quant/blocks.h; loads are
 * as wide as each format's alignment allows (rows come from the file unchanged).
 */
#ifndef HEARTH_CU_UNPACK_CUH
#define HEARTH_CU_UNPACK_CUH

#include "backend/cuda/cu_internal.cuh"

static __device__ __forceinline__ uint32_t ld16(const uint8_t *p) {
    return *(const uint16_t *)p;
}

/* A 32-bit word from a 2-byte aligned address. */
static __device__ __forceinline__ uint32_t ld32_a2(const uint8_t *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | (uint32_t)h[1] << 16;
}

static __device__ __forceinline__ uint32_t ld32(const uint8_t *p) {
    return *(const uint32_t *)p;
}

/* The N 32-bit words from a 2-byte aligned address p, as N aligned 32-bit loads, one 16-bit
 * load and funnel shifts (shift 0 when p is 4-byte aligned) instead of 2N 16-bit loads:
 * the blocks of 18/22/34/210 bytes sit at alternating alignments, and every lane runs the
 * same instructions whichever it has. No byte outside [p - 2, p + 4N) is read: the
 * 16-bit load takes the last two bytes when p is misaligned, two bytes inside the range
 * (unused) when it is not. Decoding from shared memory was bound by these loads (the
 * gate/up kernel's Q8_0 dot products: 17 16-bit loads per chunk). */
template <int N> static __device__ __forceinline__ void ldw_a2(const uint8_t *p, uint32_t *out) {
    uintptr_t a = (uintptr_t)p;
    const uint8_t *base = p - (a & 2);
    unsigned sh = (unsigned)(a & 2) * 8;
    uint32_t w[N + 1];
#pragma unroll
    for (int k = 0; k < N; k++) w[k] = ld32(base + 4 * k);
    w[N] = ld16(base + (sh ? 4 * N : 4 * N - 2));
#pragma unroll
    for (int k = 0; k < N; k++) out[k] = __funnelshift_r(w[k], w[k + 1], sh);
}

/* Bits 0..3 of x to bit 0 of bytes 0..3 (the shifted copies never overlap, so no carries). */
static __device__ __forceinline__ uint32_t spread4(uint32_t x) {
    return (x * 0x00204081u) & 0x01010101u;
}

/* Maps 4 byte-sized codes 0..15 through the IQ4 level table (lut: 16 int8 in shared memory). */
static __device__ __forceinline__ uint32_t lut4(const int8_t *lut, uint32_t w) {
    return (uint32_t)(uint8_t)lut[w & 15] | (uint32_t)(uint8_t)lut[(w >> 8) & 15] << 8 |
           (uint32_t)(uint8_t)lut[(w >> 16) & 15] << 16 | (uint32_t)(uint8_t)lut[w >> 24] << 24;
}

/* Byte i (0..11) of three words, without indexing a register array. */
static __device__ __forceinline__ uint32_t byte12(uint32_t w0, uint32_t w1, uint32_t w2, int i) {
    uint32_t w = i < 4 ? w0 : (i < 8 ? w1 : w2);
    return (w >> (8 * (i & 3))) & 0xff;
}

#define UNPACK_ARGS const uint8_t *row, int c, const int8_t *lut, int *q, float *a, float *m

static __device__ __forceinline__ void up_q4_0(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)c * 18;
    float d = cu_f16(ld16(b));
    uint32_t ws[4];
    ldw_a2<4>(b + 2, ws);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        q[k] = (int)(ws[k] & 0x0f0f0f0fu);
        q[k + 4] = (int)((ws[k] >> 4) & 0x0f0f0f0fu);
    }
    a[0] = a[1] = d;
    m[0] = m[1] = -8.0f * d;
}

static __device__ __forceinline__ void up_q4_1(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)c * 20;
    uint32_t dm = ld32(b);
    float d = cu_f16((uint16_t)dm), mn = cu_f16((uint16_t)(dm >> 16));
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t v = ld32(b + 4 + 4 * k);
        q[k] = (int)(v & 0x0f0f0f0fu);
        q[k + 4] = (int)((v >> 4) & 0x0f0f0f0fu);
    }
    a[0] = a[1] = d;
    m[0] = m[1] = mn;
}

static __device__ __forceinline__ void up_q5_0(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)c * 22;
    float d = cu_f16(ld16(b));
    uint32_t ws[5];
    ldw_a2<5>(b + 2, ws);
    uint32_t qh = ws[0];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t w = ws[k + 1];
        q[k] = (int)((w & 0x0f0f0f0fu) | spread4((qh >> (4 * k)) & 15) << 4);
        q[k + 4] = (int)(((w >> 4) & 0x0f0f0f0fu) | spread4((qh >> (16 + 4 * k)) & 15) << 4);
    }
    a[0] = a[1] = d;
    m[0] = m[1] = -16.0f * d;
}

static __device__ __forceinline__ void up_q5_1(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)c * 24;
    uint32_t dm = ld32(b), qh = ld32(b + 4);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t w = ld32(b + 8 + 4 * k);
        q[k] = (int)((w & 0x0f0f0f0fu) | spread4((qh >> (4 * k)) & 15) << 4);
        q[k + 4] = (int)(((w >> 4) & 0x0f0f0f0fu) | spread4((qh >> (16 + 4 * k)) & 15) << 4);
    }
    a[0] = a[1] = cu_f16((uint16_t)dm);
    m[0] = m[1] = cu_f16((uint16_t)(dm >> 16));
}

static __device__ __forceinline__ void up_q8_0(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)c * 34;
    float d = cu_f16(ld16(b));
    uint32_t ws[8];
    ldw_a2<8>(b + 2, ws);
#pragma unroll
    for (int k = 0; k < 8; k++) q[k] = (int)ws[k];
    a[0] = a[1] = d;
    m[0] = m[1] = 0.0f;
}

static __device__ __forceinline__ void up_iq4_nl(UNPACK_ARGS) {
    const uint8_t *b = row + (size_t)c * 18;
    float d = cu_f16(ld16(b));
    uint32_t ws[4];
    ldw_a2<4>(b + 2, ws);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        q[k] = (int)lut4(lut, ws[k] & 0x0f0f0f0fu);
        q[k + 4] = (int)lut4(lut, (ws[k] >> 4) & 0x0f0f0f0fu);
    }
    a[0] = a[1] = d;
    m[0] = m[1] = 0.0f;
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j from the 12 packed bytes (s0..s2). */
static __device__ __forceinline__ void kq_scale_min(uint32_t s0, uint32_t s1, uint32_t s2, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = (int)((s0 >> (8 * j)) & 63);
        *mn = (int)((s1 >> (8 * j)) & 63);
    } else {
        int i = j - 4;
        uint32_t lo = (s2 >> (8 * i)) & 0xff;
        *sc = (int)((lo & 15) | (((s0 >> (8 * i + 6)) & 3) << 4));
        *mn = (int)((lo >> 4) | (((s1 >> (8 * i + 6)) & 3) << 4));
    }
}

static __device__ __forceinline__ void up_q4_K(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)(c >> 3) * 144;
    int j = c & 7, sc, mn;
    uint4 hd = *(const uint4 *)b; /* d, dmin, scales[12] */
    kq_scale_min(hd.y, hd.z, hd.w, j, &sc, &mn);
    const uint4 *qs = (const uint4 *)(b + 16 + 32 * (j >> 1));
    uint4 w0 = qs[0], w1 = qs[1];
    int sh = 4 * (j & 1);
    q[0] = (int)((w0.x >> sh) & 0x0f0f0f0fu), q[1] = (int)((w0.y >> sh) & 0x0f0f0f0fu);
    q[2] = (int)((w0.z >> sh) & 0x0f0f0f0fu), q[3] = (int)((w0.w >> sh) & 0x0f0f0f0fu);
    q[4] = (int)((w1.x >> sh) & 0x0f0f0f0fu), q[5] = (int)((w1.y >> sh) & 0x0f0f0f0fu);
    q[6] = (int)((w1.z >> sh) & 0x0f0f0f0fu), q[7] = (int)((w1.w >> sh) & 0x0f0f0f0fu);
    float d = cu_f16((uint16_t)hd.x), dmin = cu_f16((uint16_t)(hd.x >> 16));
    a[0] = a[1] = d * (float)sc;
    m[0] = m[1] = -dmin * (float)mn;
}

static __device__ __forceinline__ void up_q5_K(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)(c >> 3) * 176;
    int j = c & 7, sc, mn;
    uint4 hd = *(const uint4 *)b;
    kq_scale_min(hd.y, hd.z, hd.w, j, &sc, &mn);
    const uint4 *qh = (const uint4 *)(b + 16);
    const uint4 *qs = (const uint4 *)(b + 48 + 32 * (j >> 1));
    uint4 h0 = qh[0], h1 = qh[1], w0 = qs[0], w1 = qs[1];
    int sh = 4 * (j & 1);
#define Q5K_WORD(w, h) (int)((((w) >> sh) & 0x0f0f0f0fu) | ((((h) >> j) & 0x01010101u) << 4))
    q[0] = Q5K_WORD(w0.x, h0.x), q[1] = Q5K_WORD(w0.y, h0.y), q[2] = Q5K_WORD(w0.z, h0.z), q[3] = Q5K_WORD(w0.w, h0.w);
    q[4] = Q5K_WORD(w1.x, h1.x), q[5] = Q5K_WORD(w1.y, h1.y), q[6] = Q5K_WORD(w1.z, h1.z), q[7] = Q5K_WORD(w1.w, h1.w);
#undef Q5K_WORD
    float d = cu_f16((uint16_t)hd.x), dmin = cu_f16((uint16_t)(hd.x >> 16));
    a[0] = a[1] = d * (float)sc;
    m[0] = m[1] = -dmin * (float)mn;
}

/* Q6_K codes of chunk c: q - 32 as signed bytes (OFFSET 0), or the stored 6-bit q (0..63;
 * OFFSET 1: the dot product subtracts 32 x the activations' half sums instead, exactly the
 * same integer, see mq_chunk_dot's has_min 2) — the per-byte subtraction is emulated by
 * ~6 instructions per word on current GPUs and was a third of the chunk's decode. */
template <int OFFSET> static __device__ __forceinline__ void up_q6_K_t(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)(c >> 3) * 210;
    int j = c & 7, h = j >> 2, k = j & 3;
    const uint8_t *ql = b + 64 * h + 32 * (k & 1), *qh = b + 128 + 32 * h;
    /* ldw_a2's aligned loads, with its alignment shift and the code's bit position in one
     * funnel shift per word (ql and qh are equally aligned: 32-byte offsets in the block).
     * Shifting the 64-bit pair by sh + shl instead of by sh, then the 32-bit result by shl,
     * differs only in the top shl bits, which the masks drop. */
    uintptr_t al = (uintptr_t)ql & 2;
    const uint8_t *bl = ql - al, *bh = qh - al;
    unsigned sh = (unsigned)al * 8, shl = sh + 4 * (k >> 1), shh = sh + 2 * k;
    uint32_t wl[9], wh[9];
#pragma unroll
    for (int i = 0; i < 8; i++) wl[i] = ld32(bl + 4 * i), wh[i] = ld32(bh + 4 * i);
    wl[8] = ld16(bl + (al ? 32 : 30)), wh[8] = ld16(bh + (al ? 32 : 30));
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint32_t lo = __funnelshift_r(wl[i], wl[i + 1], shl) & 0x0f0f0f0fu;
        uint32_t hi = __funnelshift_r(wh[i], wh[i + 1], shh) & 0x03030303u;
        q[i] = OFFSET ? (int)(lo | hi << 4) : (int)__vsub4(lo | hi << 4, 0x20202020u);
    }
    uint32_t sc = ld16(b + 192 + 2 * j);
    float d = cu_f16(ld16(b + 208));
    a[0] = d * (float)(int8_t)(sc & 0xff);
    a[1] = d * (float)(int8_t)(sc >> 8);
    m[0] = m[1] = 0.0f;
}

static __device__ __forceinline__ void up_q6_K(UNPACK_ARGS) {
    up_q6_K_t<0>(row, c, lut, q, a, m);
}

/* For the decode products: has_min 2 (see up_q6_K_t). */
static __device__ __forceinline__ void up_q6_Ku(UNPACK_ARGS) {
    up_q6_K_t<1>(row, c, lut, q, a, m);
}

static __device__ __forceinline__ void up_q2_K(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)(c >> 3) * 84;
    int j = c & 7, h = j >> 2, k = j & 3;
    const uint8_t *qs = b + 16 + 32 * h;
#pragma unroll
    for (int i = 0; i < 8; i++) q[i] = (int)((ld32(qs + 4 * i) >> (2 * k)) & 0x03030303u);
    uint32_t sc = ld16(b + 2 * j), dd = ld32(b + 80);
    float d = cu_f16((uint16_t)dd), dmin = cu_f16((uint16_t)(dd >> 16));
    a[0] = d * (float)(sc & 15);
    m[0] = -dmin * (float)((sc >> 4) & 15);
    a[1] = d * (float)((sc >> 8) & 15);
    m[1] = -dmin * (float)((sc >> 12) & 15);
}

/* Q3_K scale s (0..15) from the 12 packed bytes, bias removed. */
static __device__ __forceinline__ int q3k_scale(uint32_t w0, uint32_t w1, uint32_t w2, int s) {
    uint32_t lo = s < 8 ? (byte12(w0, w1, w2, s) & 15) : (byte12(w0, w1, w2, s - 8) >> 4);
    uint32_t hi = (byte12(w0, w1, w2, 8 + (s & 3)) >> (2 * (s >> 2))) & 3;
    return (int)(lo | hi << 4) - 32;
}

static __device__ __forceinline__ void up_q3_K(UNPACK_ARGS) {
    (void)lut;
    const uint8_t *b = row + (size_t)(c >> 3) * 110;
    int j = c & 7, h = j >> 2, k = j & 3;
    const uint8_t *qs = b + 32 + 32 * h;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint32_t lo = (ld32_a2(qs + 4 * i) >> (2 * k)) & 0x03030303u;
        uint32_t hb = (ld32_a2(b + 4 * i) >> j) & 0x01010101u;
        q[i] = (int)__vsub4(lo | hb << 2, 0x04040404u);
    }
    uint32_t w0 = ld32_a2(b + 96), w1 = ld32_a2(b + 100), w2 = ld32_a2(b + 104);
    float d = cu_f16(ld16(b + 108));
    a[0] = d * (float)q3k_scale(w0, w1, w2, 2 * j);
    a[1] = d * (float)q3k_scale(w0, w1, w2, 2 * j + 1);
    m[0] = m[1] = 0.0f;
}

static __device__ __forceinline__ void up_iq4_xs(UNPACK_ARGS) {
    const uint8_t *b = row + (size_t)(c >> 3) * 136;
    int j = c & 7;
    uint2 hd = *(const uint2 *)b; /* d, scales_h, scales_l[4] */
    const uint2 *qs = (const uint2 *)(b + 8 + 16 * j);
    uint2 w0 = qs[0], w1 = qs[1];
    q[0] = (int)lut4(lut, w0.x & 0x0f0f0f0fu), q[4] = (int)lut4(lut, (w0.x >> 4) & 0x0f0f0f0fu);
    q[1] = (int)lut4(lut, w0.y & 0x0f0f0f0fu), q[5] = (int)lut4(lut, (w0.y >> 4) & 0x0f0f0f0fu);
    q[2] = (int)lut4(lut, w1.x & 0x0f0f0f0fu), q[6] = (int)lut4(lut, (w1.x >> 4) & 0x0f0f0f0fu);
    q[3] = (int)lut4(lut, w1.y & 0x0f0f0f0fu), q[7] = (int)lut4(lut, (w1.y >> 4) & 0x0f0f0f0fu);
    uint32_t lo = (hd.y >> (8 * (j >> 1) + 4 * (j & 1))) & 15;
    uint32_t hi = (hd.x >> (16 + 2 * j)) & 3;
    float d = cu_f16((uint16_t)hd.x);
    a[0] = a[1] = d * (float)((int)(lo | hi << 4) - 32);
    m[0] = m[1] = 0.0f;
}

/* ---- helpers shared by the matrix-vector code of cu_matmul.cu and cu_mega.cu ---- */

/* Global -> shared copies of 4, 8 or 16 bytes that bypass registers. */
static __device__ __forceinline__ void mq_cp(uint8_t *dst, const uint8_t *src, int vw) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    if (vw == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src));
    else if (vw == 8) asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(src));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src));
}

/* 8 consecutive weights of a float row as f32 (vector path: 16/32-byte aligned). */
static __device__ __forceinline__ void fw_load8(uint32_t type, const uint8_t *row, int64_t i, float *v) {
    if (type == QT_F32) {
        const float4 *p = (const float4 *)(row + i * 4);
        float4 a = p[0], b = p[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        uint4 u = *(const uint4 *)(row + i * 2);
        uint32_t wd[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint16_t lo = (uint16_t)wd[k], hi = (uint16_t)(wd[k] >> 16);
            v[2 * k] = type == QT_F16 ? cu_f16(lo) : cu_bf16(lo);
            v[2 * k + 1] = type == QT_F16 ? cu_f16(hi) : cu_bf16(hi);
        }
    }
}

static __device__ __forceinline__ float fw_load1(uint32_t type, const uint8_t *row, int64_t i) {
    if (type == QT_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return type == QT_F16 ? cu_f16(h) : cu_bf16(h);
}

/* A chunk's float value from its two halves' integer sums i0, i1 (codes x activation
 * codes): the one expression every quantized product uses (mq_chunk_dot, and the int8
 * tensor-core batch kernel in cu_mmt.cu, whose mma sums are the same integers), so that
 * a token's bits do not depend on which kernel ran. */
static __device__ __forceinline__ float mq_chunk_ffin(float f0, float f1, const float a[2], const float m[2],
                                                      float s0, float s1, int has_min) {
    float v = a[0] * f0 + a[1] * f1;
    if (has_min == 1) v += m[0] * s0 + m[1] * s1;
    return v;
}

/* The same from the integers (i0, i1 and the half sums exactly representable: the float
 * form above takes them converted by any exact means). */
static __device__ __forceinline__ float mq_chunk_fin(int i0, int i1, const float a[2], const float m[2], int2 sx,
                                                     int has_min) {
    if (has_min == 2) i0 -= 32 * sx.x, i1 -= 32 * sx.y; /* codes stored + 32 (up_q6_Ku) */
    return mq_chunk_ffin((float)i0, (float)i1, a, m, (float)sx.x, (float)sx.y, has_min);
}

/* One decoded 32-element chunk against its int8 activations: q (8 words: halves 0-3, 4-7)
 * dotted with x0/x1 (16 activation bytes each), each half scaled by a, plus the per-half
 * offsets m times the activation half sums sx when the type has them (has_min 1), or with
 * 32 x the half sums taken off the integer sums first (has_min 2: codes stored with +32,
 * up_q6_Ku — the same integers as the signed codes give). Shared by every mat-vec kernel
 * so they all round alike. */
static __device__ __forceinline__ float mq_chunk_dot(const int q[8], int4 x0, int4 x1, const float a[2],
                                                     const float m[2], int2 sx, int has_min) {
    int i0 = __dp4a(q[0], x0.x, 0);
    i0 = __dp4a(q[1], x0.y, i0);
    i0 = __dp4a(q[2], x0.z, i0);
    i0 = __dp4a(q[3], x0.w, i0);
    int i1 = __dp4a(q[4], x1.x, 0);
    i1 = __dp4a(q[5], x1.y, i1);
    i1 = __dp4a(q[6], x1.z, i1);
    i1 = __dp4a(q[7], x1.w, i1);
    return mq_chunk_fin(i0, i1, a, m, sx, has_min);
}

#define CU_MV_T 8 /* most tokens of a decode mat-vec pass */

/* cu_mv_store's sums of acc[0..V) (V a power of two <= 32) in one reduction, the values
 * split between the lanes level by level (ps_tsum: cu_warp_sum's pairings, own value first,
 * so the same bits as V separate sums); the first lane of each token's share stores it. */
template <int V>
static __device__ __forceinline__ void cu_mv_store_v(const float *acc, int lane, int64_t r, int n_tok, float *y,
                                                     int64_t ldy, float *add_to) {
    constexpr int SH = V == 8 ? 2 : (V == 4 ? 3 : (V == 2 ? 4 : 5)); /* lane >> SH: the token */
    float v[V];
#pragma unroll
    for (int t = 0; t < V; t++) v[t] = acc[t];
    float s = ps_tsum<V>(v, lane);
    int t = lane >> SH;
    if ((lane & ((1 << SH) - 1)) == 0 && t < n_tok) {
        y[(int64_t)t * ldy + r] = s;
        if (add_to) add_to[(int64_t)t * ldy + r] += s; /* fused residual add */
    }
}

/* Decode mat-vec epilogue (cu_matmul.cu, cu_mvq.cu): sums acc[t] (acc: CU_MV_T values) over
 * the warp for each of n_tok (<= CU_MV_T) tokens; the lane holding a token's sum stores row r
 * of its output and adds it into add_to when given (a fused residual add). Several tokens
 * share one reduction (cu_mv_store_v): 5 / 6 / 9 shuffles for 2 / 3-4 / 5-8 tokens instead
 * of 5 per token, the same bits (MVT_KERNEL's four-token version measured +12-20% on
 * batches of 4-8, session 21). */
static __device__ __forceinline__ void cu_mv_store(const float *acc, int lane, int64_t r, int n_tok, float *y,
                                                   int64_t ldy, float *add_to) {
    if (n_tok > 4) cu_mv_store_v<CU_MV_T>(acc, lane, r, n_tok, y, ldy, add_to);
    else if (n_tok > 2) cu_mv_store_v<4>(acc, lane, r, n_tok, y, ldy, add_to);
    else if (n_tok == 2) cu_mv_store_v<2>(acc, lane, r, n_tok, y, ldy, add_to);
    else cu_mv_store_v<1>(acc, lane, r, n_tok, y, ldy, add_to);
}

/* The single-token mat-vec kernels' two halves (cu_matmul.cu MV1_KERNEL, cu_mvr.cu): the
 * activations of the lane's chunks c = lane + 32 j (j < J, c < nch) into registers (codes
 * xa/xb, scale dx, half sums sx; one L2 round trip, issued while the row's copies are in
 * flight), then those chunks of the staged row sm dotted with them into acc. */
#define MV1_LOAD_ACT(J, HAS_MIN, xq, xd, xs, nch, lane, xa, xb, dx, sx)                                 \
    _Pragma("unroll") for (int j_ = 0; j_ < (J); j_++) {                                                 \
        int c_ = (lane) + 32 * j_;                                                                       \
        if (c_ < (nch)) {                                                                                \
            const int4 *xp_ = (const int4 *)((xq) + (int64_t)c_ * 32);                                   \
            xa[j_] = xp_[0], xb[j_] = xp_[1], dx[j_] = (xd)[c_];                                         \
            sx[j_] = HAS_MIN ? (xs)[c_] : make_int2(0, 0);                                               \
        }                                                                                                \
    }
#define MV1_DOT(J, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, acc)                             \
    _Pragma("unroll") for (int j_ = 0; j_ < (J); j_++) {                                                 \
        int c_ = (lane) + 32 * j_;                                                                       \
        if (c_ < (nch)) {                                                                                \
            int q_[8];                                                                                   \
            float a_[2], m_[2];                                                                          \
            UNPACK(sm, c_, lut, q_, a_, m_);                                                             \
            acc += dx[j_] * mq_chunk_dot(q_, xa[j_], xb[j_], a_, m_, sx[j_], HAS_MIN);                   \
        }                                                                                                \
    }

#endif
