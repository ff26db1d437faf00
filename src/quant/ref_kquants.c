/* ref_kquants.c — scalar reference for the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and their
 * activation format Q8_K.
 *
 * Each format is described twice, by an unpack (bytes -> quant_kq_unpacked, see ref.h) and
 * a pack (the exact inverse). Dequantization and dot products then run on the unpacked
 * form, so the bit layout lives in one place per format and the math in one place for all.
 *
 * Quantizers: each sub-block gets a least-squares fitted scale (and min, for the affine
 * formats) chosen among a sweep of candidate grid scalings, refined by alternating
 * "assign codes / re-solve the 2x2 normal equations"; the sub-block scales are then
 * quantized against the f16 super-scale(s) and the codes re-assigned with the scales
 * exactly as stored. Plain squared error is minimized (no importance weights).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/ref.h"

#define FIT_STEPS 8     /* candidate grid scalings on each side of the nominal one */
#define FIT_REFINE 3    /* assign/re-solve rounds after the sweep */

static float f16_round(float x, uint16_t *bits) {
    *bits = hb_f32_to_f16(x);
    return hb_f16_to_f32(*bits);
}

/* ---- unpacked math (shared with ref_iquants.c) --------------------------------------------- */

void quant_kq_dequant_unpacked(const quant_kq_unpacked *u, float *dst) {
    int len = QK_K / u->nsub;
    for (int s = 0; s < u->nsub; s++) {
        float sc = u->d * (float)u->sc[s], mn = u->dmin * (float)u->mn[s];
        for (int l = 0; l < len; l++) dst[s * len + l] = sc * (float)u->q[s * len + l] - mn;
    }
}

double quant_kq_dot_unpacked(const quant_kq_unpacked *u, const block_q8_K *x) {
    int len = QK_K / u->nsub;
    double acc = 0.0;
    for (int s = 0; s < u->nsub; s++) {
        int32_t isum = 0, xsum = 0;
        for (int l = 0; l < len; l++) {
            isum += u->q[s * len + l] * x->qs[s * len + l];
            xsum += x->qs[s * len + l];
        }
        acc += (double)u->d * u->sc[s] * isum - (double)u->dmin * u->mn[s] * xsum;
    }
    return acc * x->d;
}

/* ---- per-sub-block fitting ----------------------------------------------------------------- */

/* Least squares x ≈ a*q + b for fixed codes q; b is held <= 0 because the formats store the
 * min as an unsigned magnitude. Returns the squared error. */
static float solve_affine(const float *x, const int *q, int n, float *a, float *b) {
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; i++) {
        sq += q[i], sqq += (double)q[i] * q[i], sx += x[i], sqx += (double)q[i] * x[i];
    }
    double det = n * sqq - sq * sq, aa = 0, bb = 0;
    if (det > 0) {
        aa = (n * sqx - sq * sx) / det;
        bb = (sqq * sx - sq * sqx) / det;
    }
    if (det <= 0 || bb > 0) { /* all codes equal, or the best offset is positive */
        bb = 0;
        aa = sqq > 0 ? sqx / sqq : 0;
    }
    if (aa < 0) aa = 0;
    *a = (float)aa, *b = (float)bb;
    float err = 0;
    for (int i = 0; i < n; i++) err += (*a * q[i] + *b - x[i]) * (*a * q[i] + *b - x[i]);
    return err;
}

static void assign_affine(const float *x, int n, int nmax, float a, float b, int *q) {
    float ia = a > 0 ? 1.0f / a : 0.0f;
    for (int i = 0; i < n; i++) q[i] = a > 0 ? quant_round_clamp((x[i] - b) * ia, 0, nmax) : 0;
}

/* Fits x[0..n) ≈ a*q + b with q in 0..nmax, a >= 0, b <= 0. */
static void fit_affine(const float *x, int n, int nmax, float *a_out, float *b_out) {
    float lo = 0, hi = -FLT_MAX;
    for (int i = 0; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    *a_out = 0, *b_out = lo;
    if (hi <= lo) return; /* all values equal (and <= 0): the offset alone is exact */
    int q[32];
    float best = FLT_MAX;
    for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
        float a0 = (hi - lo) / (nmax + 0.1f * k), a, b;
        if (a0 <= 0) continue;
        assign_affine(x, n, nmax, a0, lo, q);
        float err = solve_affine(x, q, n, &a, &b);
        if (err < best) best = err, *a_out = a, *b_out = b;
    }
    for (int r = 0; r < FIT_REFINE; r++) {
        float a, b;
        assign_affine(x, n, nmax, *a_out, *b_out, q);
        float err = solve_affine(x, q, n, &a, &b);
        if (!(err < best)) break;
        best = err, *a_out = a, *b_out = b;
    }
}

/* Fits x[0..n) ≈ a*q with q in -nneg..npos; a may be negative (the grid is asymmetric, so
 * the sign decides which end the largest value lands on). Returns a. */
static float fit_symmetric(const float *x, int n, int nneg, int npos) {
    float amax = 0, mx = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
    if (amax == 0) return 0;
    float best = -1, best_a = 0;
    for (int side = 0; side < 2; side++) {
        for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
            float lim = (side ? -(float)nneg : (float)npos) + 0.1f * k * (side ? -1 : 1);
            float is = lim / mx;
            double sqx = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                int q = quant_round_clamp(x[i] * is, -nneg, npos);
                sqx += (double)q * x[i], sqq += (double)q * q;
            }
            /* error = sum x^2 - sqx^2/sqq, so maximize sqx^2/sqq */
            double gain = sqq > 0 ? sqx * sqx / sqq : 0;
            if (gain > best) best = (float)gain, best_a = sqq > 0 ? (float)(sqx / sqq) : 0;
        }
    }
    return best_a;
}

/* Quantizes one super-block of an affine format into u: sub-block scales/mins on a
 * 0..smax grid under f16 d/dmin (returned as bits too), codes in 0..nmax. */
static void quantize_affine(const float *x, int nsub, int nmax, int smax, quant_kq_unpacked *u,
                            uint16_t *dbits, uint16_t *dminbits) {
    int len = QK_K / nsub;
    float a[16], m[16], amax = 0, mmax = 0;
    for (int s = 0; s < nsub; s++) {
        float b;
        fit_affine(x + s * len, len, nmax, &a[s], &b);
        m[s] = -b;
        amax = fmaxf(amax, a[s]), mmax = fmaxf(mmax, m[s]);
    }
    u->nsub = nsub;
    u->d = f16_round(amax / smax, dbits);
    u->dmin = f16_round(mmax / smax, dminbits);
    for (int s = 0; s < nsub; s++) {
        u->sc[s] = (int16_t)(u->d > 0 ? quant_round_clamp(a[s] / u->d, 0, smax) : 0);
        u->mn[s] = (int16_t)(u->dmin > 0 ? quant_round_clamp(m[s] / u->dmin, 0, smax) : 0);
        float sa = u->d * u->sc[s], sm = u->dmin * u->mn[s];
        for (int l = 0; l < len; l++) {
            float v = x[s * len + l];
            u->q[s * len + l] = (int8_t)(sa > 0 ? quant_round_clamp((v + sm) / sa, 0, nmax) : 0);
        }
    }
}

/* Quantizes one super-block of a symmetric format: signed sub-block scales on a
 * -sneg..spos grid under f16 d, codes in -nneg..npos. */
static void quantize_symmetric(const float *x, int nsub, int nneg, int npos, int sneg, int spos,
                               quant_kq_unpacked *u, uint16_t *dbits) {
    int len = QK_K / nsub;
    float a[16], amax = 0, ms = 0;
    for (int s = 0; s < nsub; s++) {
        a[s] = fit_symmetric(x + s * len, len, nneg, npos);
        if (fabsf(a[s]) > amax) amax = fabsf(a[s]), ms = a[s];
    }
    u->nsub = nsub;
    u->d = f16_round(ms / -(float)sneg, dbits); /* largest scale lands on -sneg */
    u->dmin = 0;
    for (int s = 0; s < nsub; s++) {
        u->sc[s] = (int16_t)(u->d != 0 ? quant_round_clamp(a[s] / u->d, -sneg, spos) : 0);
        u->mn[s] = 0;
        float sa = u->d * u->sc[s];
        for (int l = 0; l < len; l++)
            u->q[s * len + l] = (int8_t)(sa != 0 ? quant_round_clamp(x[s * len + l] / sa, -nneg, npos) : 0);
    }
}

/* ---- Q2_K ------------------------------------------------------------------------------ */

/* Position of element e in the 2-bit plane shared by Q2_K and Q3_K: byte qs[32h + l],
 * bit shift 2k, for e = 128h + 32k + l. */
static inline int plane2_byte(int e) { return 32 * (e / 128) + e % 32; }
static inline int plane2_shift(int e) { return 2 * ((e % 128) / 32); }

static void q2_K_unpack(const block_q2_K *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = hb_f16_to_f32(b->dmin), u->nsub = 16;
    for (int s = 0; s < 16; s++) u->sc[s] = b->scales[s] & 15, u->mn[s] = b->scales[s] >> 4;
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)((b->qs[plane2_byte(e)] >> plane2_shift(e)) & 3);
}

static void q2_K_pack(const quant_kq_unpacked *u, block_q2_K *b) {
    for (int s = 0; s < 16; s++) b->scales[s] = (uint8_t)(u->sc[s] | u->mn[s] << 4);
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < QK_K; e++) b->qs[plane2_byte(e)] |= (uint8_t)(u->q[e] << plane2_shift(e));
}

void quant_dequant_q2_K(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q2_K_unpack((const block_q2_K *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

void quant_quant_q2_K(const float *src, void *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q2_K *b = (block_q2_K *)dst + i;
        quantize_affine(src + i * QK_K, 16, 3, 15, &u, &b->d, &b->dmin);
        q2_K_pack(&u, b);
    }
}

float quant_dot_q2_K(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q2_K_unpack((const block_q2_K *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}

/* ---- Q3_K ------------------------------------------------------------------------------ */

/* The 16 6-bit scales (stored biased by 32) in 12 bytes: low nibbles in bytes 0..7 (s < 8
 * low nibble of byte s, s >= 8 high nibble of byte s-8), top two bits in bytes 8..11
 * (byte 8 + s%4, bit pair s/4). */
static int q3_K_scale(const uint8_t *sc, int s) {
    int lo = s < 8 ? (sc[s] & 15) : (sc[s - 8] >> 4);
    int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void q3_K_unpack(const block_q3_K *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = 0, u->nsub = 16;
    for (int s = 0; s < 16; s++) u->sc[s] = (int16_t)q3_K_scale(b->scales, s), u->mn[s] = 0;
    for (int e = 0; e < QK_K; e++) {
        int lo = (b->qs[plane2_byte(e)] >> plane2_shift(e)) & 3;
        int hbit = (b->hmask[e % 32] >> (e / 32)) & 1; /* bit 4h+k = e/32 */
        u->q[e] = (int8_t)(lo + 4 * hbit - 4);
    }
}

static void q3_K_pack(const quant_kq_unpacked *u, block_q3_K *b) {
    memset(b->scales, 0, sizeof b->scales);
    for (int s = 0; s < 16; s++) {
        int v = u->sc[s] + 32;
        if (s < 8) b->scales[s] |= (uint8_t)(v & 15);
        else b->scales[s - 8] |= (uint8_t)((v & 15) << 4);
        b->scales[8 + s % 4] |= (uint8_t)((v >> 4) << (2 * (s / 4)));
    }
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int e = 0; e < QK_K; e++) {
        int v = u->q[e] + 4;
        b->qs[plane2_byte(e)] |= (uint8_t)((v & 3) << plane2_shift(e));
        b->hmask[e % 32] |= (uint8_t)((v >> 2) << (e / 32));
    }
}

void quant_dequant_q3_K(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q3_K_unpack((const block_q3_K *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

void quant_quant_q3_K(const float *src, void *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q3_K *b = (block_q3_K *)dst + i;
        quantize_symmetric(src + i * QK_K, 16, 4, 3, 32, 31, &u, &b->d);
        q3_K_pack(&u, b);
    }
}

float quant_dot_q3_K(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q3_K_unpack((const block_q3_K *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}

/* ---- Q4_K / Q5_K ----------------------------------------------------------------------- */

/* Inverse of quant_kq_get_scale_min for all 8 sub-blocks (values 0..63). */
static void kq_pack_scale_min(const int16_t *sc, const int16_t *mn, uint8_t *q) {
    memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= (uint8_t)sc[j];
            q[j + 4] |= (uint8_t)mn[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static void kq_unpack_scale_min(const uint8_t *packed, quant_kq_unpacked *u) {
    u->nsub = 8;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        quant_kq_get_scale_min(packed, j, &sc, &mn);
        u->sc[j] = sc, u->mn[j] = mn;
    }
}

/* Nibble of element e in the 128-byte plane of Q4_K/Q5_K: byte 32*(e/64) + e%32, low
 * nibble for the first 32 of each 64, high nibble for the second. */
static inline int plane4_byte(int e) { return 32 * (e / 64) + e % 32; }
static inline int plane4_shift(int e) { return 4 * ((e % 64) / 32); }

static void q4_K_unpack(const block_q4_K *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = hb_f16_to_f32(b->dmin);
    kq_unpack_scale_min(b->scales, u);
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)((b->qs[plane4_byte(e)] >> plane4_shift(e)) & 15);
}

static void q4_K_pack(const quant_kq_unpacked *u, block_q4_K *b) {
    kq_pack_scale_min(u->sc, u->mn, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < QK_K; e++) b->qs[plane4_byte(e)] |= (uint8_t)(u->q[e] << plane4_shift(e));
}

static void q5_K_unpack(const block_q5_K *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = hb_f16_to_f32(b->dmin);
    kq_unpack_scale_min(b->scales, u);
    for (int e = 0; e < QK_K; e++) {
        int lo = (b->qs[plane4_byte(e)] >> plane4_shift(e)) & 15;
        int hi = (b->qh[e % 32] >> (e / 32)) & 1; /* bit 2c (+1 for the upper half) = e/32 */
        u->q[e] = (int8_t)(lo | hi << 4);
    }
}

static void q5_K_pack(const quant_kq_unpacked *u, block_q5_K *b) {
    kq_pack_scale_min(u->sc, u->mn, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < QK_K; e++) {
        b->qs[plane4_byte(e)] |= (uint8_t)((u->q[e] & 15) << plane4_shift(e));
        b->qh[e % 32] |= (uint8_t)((u->q[e] >> 4) << (e / 32));
    }
}

void quant_dequant_q4_K(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q4_K_unpack((const block_q4_K *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

void quant_quant_q4_K(const float *src, void *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q4_K *b = (block_q4_K *)dst + i;
        quantize_affine(src + i * QK_K, 8, 15, 63, &u, &b->d, &b->dmin);
        q4_K_pack(&u, b);
    }
}

float quant_dot_q4_K(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q4_K_unpack((const block_q4_K *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}

void quant_dequant_q5_K(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q5_K_unpack((const block_q5_K *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

void quant_quant_q5_K(const float *src, void *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q5_K *b = (block_q5_K *)dst + i;
        quantize_affine(src + i * QK_K, 8, 31, 63, &u, &b->d, &b->dmin);
        q5_K_pack(&u, b);
    }
}

float quant_dot_q5_K(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q5_K_unpack((const block_q5_K *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}

/* ---- Q6_K ------------------------------------------------------------------------------ */

/* Element e = 128h + 32k + l: low nibble plane ql[64h + 32(k&1) + l] (nibble k>>1), high
 * two bits qh[32h + l] bits 2k..2k+1. */
static inline int q6_ql_byte(int e) { return 64 * (e / 128) + 32 * ((e / 32) & 1) + e % 32; }
static inline int q6_ql_shift(int e) { return 4 * ((e / 64) & 1); }
static inline int q6_qh_byte(int e) { return 32 * (e / 128) + e % 32; }
static inline int q6_qh_shift(int e) { return 2 * ((e / 32) & 3); }

static void q6_K_unpack(const block_q6_K *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = 0, u->nsub = 16;
    for (int s = 0; s < 16; s++) u->sc[s] = b->scales[s], u->mn[s] = 0;
    for (int e = 0; e < QK_K; e++) {
        int lo = (b->ql[q6_ql_byte(e)] >> q6_ql_shift(e)) & 15;
        int hi = (b->qh[q6_qh_byte(e)] >> q6_qh_shift(e)) & 3;
        u->q[e] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void q6_K_pack(const quant_kq_unpacked *u, block_q6_K *b) {
    for (int s = 0; s < 16; s++) b->scales[s] = (int8_t)u->sc[s];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < QK_K; e++) {
        int v = u->q[e] + 32;
        b->ql[q6_ql_byte(e)] |= (uint8_t)((v & 15) << q6_ql_shift(e));
        b->qh[q6_qh_byte(e)] |= (uint8_t)((v >> 4) << q6_qh_shift(e));
    }
}

void quant_dequant_q6_K(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6_K_unpack((const block_q6_K *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

void quant_quant_q6_K(const float *src, void *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q6_K *b = (block_q6_K *)dst + i;
        quantize_symmetric(src + i * QK_K, 16, 32, 31, 128, 127, &u, &b->d);
        q6_K_pack(&u, b);
    }
}

float quant_dot_q6_K(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6_K_unpack((const block_q6_K *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}

/* ---- Q8_K ------------------------------------------------------------------------------ */

void quant_dequant_q8_K(const void *src, float *dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = b[i].d * (float)b[i].qs[j];
}

void quant_quant_q8_K(const float *src, void *dst, int64_t n) {
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float amax = 0;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        b[i].d = amax / 127.0f;
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < QK_K; j++) b[i].qs[j] = (int8_t)quant_round_clamp(x[j] * id, -127, 127);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += b[i].qs[16 * g + j];
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

float quant_dot_q8_K(const void *w, const void *x, int64_t n) {
    const block_q8_K *a = w, *b = x;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK_K; j++) s += a[i].qs[j] * b[i].qs[j];
        sum += (double)a[i].d * b[i].d * s;
    }
    return (float)sum;
}
