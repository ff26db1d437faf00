/* ref_legacy.c — scalar reference for the 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0 and the activation format Q8_1.
 *
 * Quantizers are the simple round-to-nearest schemes these formats were designed for:
 * symmetric formats map the value of largest magnitude onto the most negative code (so the
 * asymmetric code range -8..7 / -16..15 is fully used), offset formats span [min, max].
 * They quantize with the scale as it will be stored (after rounding to f16) so that the
 * stored scale and the codes agree. Dot products accumulate integer products per block and
 * scale once per block, which is the math every fast kernel reproduces.
 */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/ref.h"

/* Rounds to f16 and back: the scale exactly as a reader of the block will see it. */
static float f16_round(float x, uint16_t *bits) {
    *bits = hb_f32_to_f16(x);
    return hb_f16_to_f32(*bits);
}

static uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t qh[4], uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

/* The signed value of largest magnitude in x[0..n). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, m = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            m = x[i];
        }
    }
    return m;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = x[0];
    *mx = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < *mn) *mn = x[i];
        if (x[i] > *mx) *mx = x[i];
    }
}

/* Code of element j (0..31) in a nibble-packed 16-byte array: low nibbles first. */
static inline int nib(const uint8_t *qs, int j) {
    return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
}

static inline void set_nib(uint8_t *qs, int j, int q) {
    if (j < 16) qs[j] = (uint8_t)((qs[j] & 0xf0) | q);
    else qs[j - 16] = (uint8_t)((qs[j - 16] & 0x0f) | (q << 4));
}

/* ---- Q4_0 ------------------------------------------------------------------------------ */

void quant_dequant_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = hb_f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0; j++) dst[i * QK4_0 + j] = d * (float)(nib(b[i].qs, j) - 8);
    }
}

void quant_quant_q4_0(const float *src, void *dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float d = f16_round(signed_absmax(x, QK4_0) / -8.0f, &b[i].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK4_0; j++) set_nib(b[i].qs, j, quant_round_clamp(x[j] * id, -8, 7) + 8);
    }
}

float quant_dot_q4_0(const void *w, const void *x, int64_t n) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK4_0; j++) s += (nib(a[i].qs, j) - 8) * b[i].qs[j];
        sum += (double)hb_f16_to_f32(a[i].d) * hb_f16_to_f32(b[i].d) * s;
    }
    return (float)sum;
}

/* ---- Q4_1 ------------------------------------------------------------------------------ */

void quant_dequant_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        float d = hb_f16_to_f32(b[i].d), m = hb_f16_to_f32(b[i].m);
        for (int j = 0; j < QK4_1; j++) dst[i * QK4_1 + j] = d * (float)nib(b[i].qs, j) + m;
    }
}

void quant_quant_q4_1(const float *src, void *dst, int64_t n) {
    block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const float *x = src + i * QK4_1;
        float mn, mx;
        min_max(x, QK4_1, &mn, &mx);
        float d = f16_round((mx - mn) / 15.0f, &b[i].d);
        float m = f16_round(mn, &b[i].m);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK4_1; j++) set_nib(b[i].qs, j, quant_round_clamp((x[j] - m) * id, 0, 15));
    }
}

/* Sum over a block of (d*q + m) * (dx*qx) = d*dx*sum(q*qx) + m*dx*sum(qx). The reference
 * computes sum(qx) from the codes; kernels may use the block's cached s = f16(dx*sum(qx)),
 * which differs by f16 rounding only. */
float quant_dot_q4_1(const void *w, const void *x, int64_t n) {
    const block_q4_1 *a = w;
    const block_q8_1 *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int32_t s = 0, sx = 0;
        for (int j = 0; j < QK4_1; j++) {
            s += nib(a[i].qs, j) * b[i].qs[j];
            sx += b[i].qs[j];
        }
        double dx = hb_f16_to_f32(b[i].d);
        sum += (double)hb_f16_to_f32(a[i].d) * dx * s + (double)hb_f16_to_f32(a[i].m) * dx * sx;
    }
    return (float)sum;
}

/* ---- Q5_0 ------------------------------------------------------------------------------ */

static inline int q5_code(const uint8_t *qs, uint32_t qh, int j) {
    return nib(qs, j) | (int)((qh >> j) & 1) << 4;
}

void quant_dequant_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        float d = hb_f16_to_f32(b[i].d);
        uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < QK5_0; j++) dst[i * QK5_0 + j] = d * (float)(q5_code(b[i].qs, qh, j) - 16);
    }
}

void quant_quant_q5_0(const float *src, void *dst, int64_t n) {
    block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const float *x = src + i * QK5_0;
        float d = f16_round(signed_absmax(x, QK5_0) / -16.0f, &b[i].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK5_0; j++) {
            int q = quant_round_clamp(x[j] * id, -16, 15) + 16;
            set_nib(b[i].qs, j, q & 15);
            qh |= (uint32_t)(q >> 4) << j;
        }
        store_qh(b[i].qh, qh);
    }
}

float quant_dot_q5_0(const void *w, const void *x, int64_t n) {
    const block_q5_0 *a = w;
    const block_q8_0 *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        uint32_t qh = load_qh(a[i].qh);
        int32_t s = 0;
        for (int j = 0; j < QK5_0; j++) s += (q5_code(a[i].qs, qh, j) - 16) * b[i].qs[j];
        sum += (double)hb_f16_to_f32(a[i].d) * hb_f16_to_f32(b[i].d) * s;
    }
    return (float)sum;
}

/* ---- Q5_1 ------------------------------------------------------------------------------ */

void quant_dequant_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        float d = hb_f16_to_f32(b[i].d), m = hb_f16_to_f32(b[i].m);
        uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < QK5_1; j++) dst[i * QK5_1 + j] = d * (float)q5_code(b[i].qs, qh, j) + m;
    }
}

void quant_quant_q5_1(const float *src, void *dst, int64_t n) {
    block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const float *x = src + i * QK5_1;
        float mn, mx;
        min_max(x, QK5_1, &mn, &mx);
        float d = f16_round((mx - mn) / 31.0f, &b[i].d);
        float m = f16_round(mn, &b[i].m);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK5_1; j++) {
            int q = quant_round_clamp((x[j] - m) * id, 0, 31);
            set_nib(b[i].qs, j, q & 15);
            qh |= (uint32_t)(q >> 4) << j;
        }
        store_qh(b[i].qh, qh);
    }
}

float quant_dot_q5_1(const void *w, const void *x, int64_t n) {
    const block_q5_1 *a = w;
    const block_q8_1 *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        uint32_t qh = load_qh(a[i].qh);
        int32_t s = 0, sx = 0;
        for (int j = 0; j < QK5_1; j++) {
            s += q5_code(a[i].qs, qh, j) * b[i].qs[j];
            sx += b[i].qs[j];
        }
        double dx = hb_f16_to_f32(b[i].d);
        sum += (double)hb_f16_to_f32(a[i].d) * dx * s + (double)hb_f16_to_f32(a[i].m) * dx * sx;
    }
    return (float)sum;
}

/* ---- Q8_0 / Q8_1 ------------------------------------------------------------------------ */

/* Symmetric 8-bit codes for one block of 32; returns the stored (f16-rounded) scale. */
static float quant_block_8bit(const float *x, int8_t *qs, uint16_t *dbits) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = f16_round(amax / 127.0f, dbits);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) qs[j] = (int8_t)quant_round_clamp(x[j] * id, -127, 127);
    return d;
}

void quant_dequant_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = hb_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

void quant_quant_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) quant_block_8bit(src + i * QK8_0, b[i].qs, &b[i].d);
}

float quant_dot_q8_0(const void *w, const void *x, int64_t n) {
    const block_q8_0 *a = w, *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK8_0; j++) s += a[i].qs[j] * b[i].qs[j];
        sum += (double)hb_f16_to_f32(a[i].d) * hb_f16_to_f32(b[i].d) * s;
    }
    return (float)sum;
}

void quant_dequant_q8_1(const void *src, float *dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d = hb_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[i * QK8_1 + j] = d * (float)b[i].qs[j];
    }
}

void quant_quant_q8_1(const float *src, void *dst, int64_t n) {
    block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d = quant_block_8bit(src + i * QK8_1, b[i].qs, &b[i].d);
        int32_t sx = 0;
        for (int j = 0; j < QK8_1; j++) sx += b[i].qs[j];
        b[i].s = hb_f32_to_f16(d * (float)sx);
    }
}

float quant_dot_q8_1(const void *w, const void *x, int64_t n) {
    const block_q8_1 *a = w, *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK8_1; j++) s += a[i].qs[j] * b[i].qs[j];
        sum += (double)hb_f16_to_f32(a[i].d) * hb_f16_to_f32(b[i].d) * s;
    }
    return (float)sum;
}
