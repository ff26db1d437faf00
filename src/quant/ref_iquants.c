/* ref_iquants.c — scalar reference for the non-linear 4-bit formats IQ4_NL (32-element
 * blocks, dot with Q8_0) and IQ4_XS (256-element super-blocks with 6-bit sub-block scales,
 * dot with Q8_K).
 *
 * Both index the same fixed 16-entry grid of int8 levels. The quantizer fits a scale per
 * block (IQ4_NL) or sub-block (IQ4_XS) by sweeping candidate scalings that put the
 * largest value at either end of the grid, assigning each value its nearest level, and
 * solving the least-squares scale for that assignment; the best is refined by repeated
 * assign/solve rounds.
 */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/ref.h"

#define FIT_STEPS 8
#define FIT_REFINE 3

const int8_t quant_kvalues_iq4nl[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113 };

/* Midpoints between neighbouring levels: the decision boundaries of nearest_level. */
static const float k_mid[15] = { -115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                 7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f };

/* Index of the grid level nearest to v (v in level units); a tie goes to the lower level.
 * Counting the boundaries below v is branch-free, which matters: the fit calls this ~34
 * times per weight. */
static int nearest_level(float v) {
    int idx = 0;
    for (int k = 0; k < 15; k++) idx += v > k_mid[k];
    return idx;
}

/* Assigns levels for scale a and returns the least-squares scale for that assignment;
 * *gain receives (sum t*x)^2 / sum t^2, the error reduction (maximize it). */
static float assign_solve(const float *x, int n, float a, uint8_t *idx, double *gain) {
    double stx = 0, stt = 0;
    float ia = a != 0 ? 1.0f / a : 0.0f;
    for (int i = 0; i < n; i++) {
        idx[i] = (uint8_t)(a != 0 ? nearest_level(x[i] * ia) : 8);
        double t = quant_kvalues_iq4nl[idx[i]];
        stx += t * x[i], stt += t * t;
    }
    *gain = stt > 0 ? stx * stx / stt : 0;
    return stt > 0 ? (float)(stx / stt) : 0;
}

/* Fits x[0..n) ≈ a * level[idx] and returns a (may be negative: the grid is asymmetric). */
static float fit_nl(const float *x, int n) {
    float amax = 0, mx = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
    if (amax == 0) return 0;
    uint8_t idx[32];
    double best = -1, g;
    float best_a = 0;
    const float ends[2] = { quant_kvalues_iq4nl[0], quant_kvalues_iq4nl[15] };
    for (int side = 0; side < 2; side++) {
        for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
            float a0 = mx / (ends[side] * (1.0f + 0.02f * k));
            float a = assign_solve(x, n, a0, idx, &g);
            if (g > best) best = g, best_a = a;
        }
    }
    for (int r = 0; r < FIT_REFINE; r++) {
        float a = assign_solve(x, n, best_a, idx, &g);
        if (!(g > best)) break;
        best = g, best_a = a;
    }
    return best_a;
}

static inline int nib(const uint8_t *qs, int j) {
    return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
}

/* Packs 32 level indices into 16 bytes, Q4_0 order (low nibbles first). */
static void pack_nibbles(const uint8_t *idx, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(idx[j] | idx[j + 16] << 4);
}

/* ---- IQ4_NL ---------------------------------------------------------------------------- */

void quant_dequant_iq4_nl(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        float d = hb_f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_NL; j++) dst[i * QK4_NL + j] = d * (float)quant_kvalues_iq4nl[nib(b[i].qs, j)];
    }
}

void quant_quant_iq4_nl(const float *src, void *dst, int64_t n) {
    block_iq4_nl *b = dst;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const float *x = src + i * QK4_NL;
        b[i].d = hb_f32_to_f16(fit_nl(x, QK4_NL));
        float d = hb_f16_to_f32(b[i].d);
        uint8_t idx[QK4_NL];
        for (int j = 0; j < QK4_NL; j++) idx[j] = (uint8_t)(d != 0 ? nearest_level(x[j] / d) : 8);
        pack_nibbles(idx, b[i].qs);
    }
}

float quant_dot_iq4_nl(const void *w, const void *x, int64_t n) {
    const block_iq4_nl *a = w;
    const block_q8_0 *b = x;
    double sum = 0;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int32_t s = 0;
        for (int j = 0; j < QK4_NL; j++) s += quant_kvalues_iq4nl[nib(a[i].qs, j)] * b[i].qs[j];
        sum += (double)hb_f16_to_f32(a[i].d) * hb_f16_to_f32(b[i].d) * s;
    }
    return (float)sum;
}

/* ---- IQ4_XS ---------------------------------------------------------------------------- */

/* Sub-block scale s (0..7), biased by 32: low 4 bits in nibble s&1 of scales_l[s/2], high
 * 2 bits at bits 2s..2s+1 of scales_h. */
static int iq4_xs_scale(const block_iq4_xs *b, int s) {
    int lo = (b->scales_l[s / 2] >> (4 * (s & 1))) & 15;
    int hi = (b->scales_h >> (2 * s)) & 3;
    return (lo | hi << 4) - 32;
}

static void iq4_xs_unpack(const block_iq4_xs *b, quant_kq_unpacked *u) {
    u->d = hb_f16_to_f32(b->d), u->dmin = 0, u->nsub = 8;
    for (int s = 0; s < 8; s++) {
        u->sc[s] = (int16_t)iq4_xs_scale(b, s), u->mn[s] = 0;
        for (int j = 0; j < 32; j++) u->q[32 * s + j] = quant_kvalues_iq4nl[nib(b->qs + 16 * s, j)];
    }
}

void quant_dequant_iq4_xs(const void *src, float *dst, int64_t n) {
    quant_kq_unpacked u;
    for (int64_t i = 0; i < n / QK_K; i++) {
        iq4_xs_unpack((const block_iq4_xs *)src + i, &u);
        quant_kq_dequant_unpacked(&u, dst + i * QK_K);
    }
}

static void iq4_xs_quant_block(const float *x, block_iq4_xs *b) {
    float a[8], amax = 0, ms = 0;
    for (int s = 0; s < 8; s++) {
        a[s] = fit_nl(x + 32 * s, 32);
        if (fabsf(a[s]) > amax) amax = fabsf(a[s]), ms = a[s];
    }
    b->d = hb_f32_to_f16(ms / -32.0f); /* the largest scale lands on -32 */
    float d = hb_f16_to_f32(b->d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int s = 0; s < 8; s++) {
        int ls = d != 0 ? quant_round_clamp(a[s] / d, -32, 31) : 0;
        int v = ls + 32;
        b->scales_l[s / 2] |= (uint8_t)((v & 15) << (4 * (s & 1)));
        b->scales_h |= (uint16_t)((v >> 4) << (2 * s));
        float sa = d * (float)ls;
        uint8_t idx[32];
        for (int j = 0; j < 32; j++) idx[j] = (uint8_t)(sa != 0 ? nearest_level(x[32 * s + j] / sa) : 8);
        pack_nibbles(idx, b->qs + 16 * s);
    }
}

void quant_quant_iq4_xs(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) iq4_xs_quant_block(src + i * QK_K, (block_iq4_xs *)dst + i);
}

float quant_dot_iq4_xs(const void *w, const void *x, int64_t n) {
    quant_kq_unpacked u;
    double sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        iq4_xs_unpack((const block_iq4_xs *)w + i, &u);
        sum += quant_kq_dot_unpacked(&u, (const block_q8_K *)x + i);
    }
    return (float)sum;
}
