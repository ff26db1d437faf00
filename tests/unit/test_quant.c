/* Unit tests for src/quant: reference quantize/dequantize/dot of every compute type.
 *
 * 1. Round trip: quantize -> dequantize of pseudo-random Gaussian data; the RMS error
 *    relative to the data's RMS must stay under a per-type bound (table below).
 * 2. Dot agreement: quant_vec_dot(w, quantize(x)) equals the double-precision dot of the
 *    dequantized rows, i.e. dot product and dequantization describe the same numbers.
 * 3. Known values: blocks assembled byte by byte from the format description, dequantized
 *    values derived by hand from that description.
 * Bit-exactness against real GGUF files lives in tests/golden/test_quant_files.c.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* ---- deterministic Gaussian data -------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double rnd_unit(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static void fill_gauss(float *x, int64_t n, float sigma) {
    for (int64_t i = 0; i < n; i++) {
        double u = rnd_unit(), v = rnd_unit();
        x[i] = (float)(sigma * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
}

static double rel_rms(const float *a, const float *ref, int64_t n) {
    double e = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return r > 0.0 ? sqrt(e / r) : sqrt(e);
}

/* ---- per-type expectations ----------------------------------------------------------------
 * Bound on RMS(dequant(quant(x)) - x) / RMS(x) for Gaussian x. For a uniform quantizer with
 * step d the error RMS is d/sqrt(12); with b bits spanning a block's range (about +-2.1 sigma
 * for 32 Gaussians, +-2.7 sigma for 256) that gives roughly 4.2/(2^b - 1)/3.46 sigma: ~0.5%
 * at 8 bits, ~4% at 5, ~8% at 4, ~18% at 3, ~40% at 2 — K-quants do better than the formula
 * because their per-16/32 sub-block scales are fitted by least squares. The bounds are the
 * measured values (printed by this test) with ~20% headroom; a layout or sign bug lands far
 * outside them (~100%). F16/BF16 are bounded by half an ulp: 2^-11 and 2^-8 relative. */
typedef struct type_case {
    uint32_t type;
    double max_rel_rms;
} type_case;

static const type_case k_cases[] = {
    { QT_F32, 0.0 },      { QT_F16, 4.0e-4 },   { QT_BF16, 3.0e-3 },
    { QT_Q8_0, 7.0e-3 },  { QT_Q8_1, 7.0e-3 },
    { QT_Q4_0, 0.11 },    { QT_Q4_1, 0.11 },    { QT_Q5_0, 0.075 },   { QT_Q5_1, 0.075 },
    { QT_Q8_K, 9.0e-3 },  { QT_Q2_K, 0.33 },    { QT_Q3_K, 0.18 },    { QT_Q4_K, 0.085 },
    { QT_Q5_K, 0.045 },   { QT_Q6_K, 0.022 },
    { QT_IQ4_NL, 0.09 },  { QT_IQ4_XS, 0.09 },
};
#define N_CASES (sizeof k_cases / sizeof k_cases[0])

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void test_round_trip(void **state) {
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        uint32_t t = k_cases[c].type;
        const quant_traits *tr = quant_traits_of(t);
        assert_non_null(tr);
        int64_t sizes[] = { tr->blck_size, (int64_t)tr->blck_size * 3, 4096 };
        double worst = 0.0;
        for (size_t s = 0; s < 3; s++) {
            int64_t n = sizes[s];
            float *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
            uint8_t *q = xmalloc(quant_row_size(t, n));
            fill_gauss(x, n, s == 1 ? 0.02f : 1.0f); /* small weights must work too */
            assert_true(quant_quantize_row(t, x, q, n));
            assert_true(quant_dequantize_row(t, q, y, n));
            double e = rel_rms(y, x, n);
            if (e > worst) worst = e;
            if (e > k_cases[c].max_rel_rms)
                fail_msg("%s n=%lld: relative RMS error %.5f > bound %.5f", tr->name, (long long)n, e,
                         k_cases[c].max_rel_rms);
            free(x), free(y), free(q);
        }
        print_message("round trip %-7s worst rel RMS %.5f (bound %.5f)\n", tr->name, worst, k_cases[c].max_rel_rms);
    }
}

static void test_zero_block(void **state) {
    (void)state;
    /* all-zero input must give finite zeros (no 0/0 scales) */
    for (size_t c = 0; c < N_CASES; c++) {
        uint32_t t = k_cases[c].type;
        int64_t n = quant_traits_of(t)->blck_size * 2;
        float *x = calloc((size_t)n, sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
        uint8_t *q = xmalloc(quant_row_size(t, n));
        assert_true(quant_quantize_row(t, x, q, n));
        assert_true(quant_dequantize_row(t, q, y, n));
        for (int64_t i = 0; i < n; i++) assert_true(y[i] == 0.0f);
        free(x), free(y), free(q);
    }
}

static void test_dot_matches_dequant(void **state) {
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        uint32_t t = k_cases[c].type;
        const quant_traits *tr = quant_traits_of(t);
        if (!tr->compute) continue;
        uint32_t vt = tr->vec_dot_type;
        int64_t n = 1024;
        float *w = xmalloc(n * sizeof *w), *x = xmalloc(n * sizeof *x);
        float *wd = xmalloc(n * sizeof *wd), *xd = xmalloc(n * sizeof *xd);
        uint8_t *wq = xmalloc(quant_row_size(t, n)), *xq = xmalloc(quant_row_size(vt, n));
        fill_gauss(w, n, 0.05f);
        fill_gauss(x, n, 3.0f);
        assert_true(quant_quantize_row(t, w, wq, n));
        assert_true(quant_quantize_row(vt, x, xq, n));
        assert_true(quant_dequantize_row(t, wq, wd, n));
        assert_true(quant_dequantize_row(vt, xq, xd, n));
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            ref += (double)wd[i] * xd[i];
            mag += fabs((double)wd[i] * xd[i]);
        }
        float got = quant_vec_dot(t, wq, xq, n);
        if (fabs(got - ref) > 1e-5 * mag + 1e-30)
            fail_msg("%s: vec_dot %.9g vs dequantized dot %.9g (sum|wx| %.3g)", tr->name, got, ref, mag);
        free(w), free(x), free(wd), free(xd), free(wq), free(xq);
    }
}

static void test_bad_args(void **state) {
    (void)state;
    float x[32] = { 0 }, y[32];
    uint8_t q[64];
    assert_false(quant_quantize_row(QT_Q8_0, x, q, 31));   /* not a block multiple */
    assert_false(quant_dequantize_row(QT_Q8_0, q, y, 33));
    assert_false(quant_dequantize_row(QT_IQ2_XXS, q, y, 256)); /* no reference */
    assert_false(quant_dequantize_row(999, q, y, 32));
    assert_true(quant_vec_dot(999, q, q, 32) == 0.0f);
}

/* ---- known values ------------------------------------------------------------------------- */

static void put_f16(uint8_t *p, float v) {
    uint16_t h = hb_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void test_known_q4_0(void **state) {
    (void)state;
    /* bytes: d = 0.5 (f16 0x3800, LE), then qs[j] = j | (15-j) << 4, so elements 0..15 have
     * codes 0..15 and elements 16..31 codes 15..0; x = 0.5 * (code - 8). */
    uint8_t blk[18];
    put_f16(blk, 0.5f);
    assert_int_equal(blk[0], 0x00);
    assert_int_equal(blk[1], 0x38);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    assert_true(quant_dequantize_row(QT_Q4_0, blk, y, 32));
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)(j - 8));
        assert_true(y[16 + j] == 0.5f * (float)(7 - j));
    }
}

static void test_known_q8_0(void **state) {
    (void)state;
    uint8_t blk[34];
    put_f16(blk, 0.25f);
    for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(int8_t)(j * 8 - 128); /* -128..120 */
    float y[32];
    assert_true(quant_dequantize_row(QT_Q8_0, blk, y, 32));
    for (int j = 0; j < 32; j++) assert_true(y[j] == 0.25f * (float)(j * 8 - 128));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_zero_block),
        cmocka_unit_test(test_dot_matches_dequant),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_known_q4_0),
        cmocka_unit_test(test_known_q8_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
