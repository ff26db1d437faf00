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

/* Cached sums of the activation formats: Q8_1's s = d * sum(qs) (f16), Q8_K's bsums. */
static void test_activation_sums(void **state) {
    (void)state;
    enum { N = 1024 };
    float x[N];
    fill_gauss(x, N, 2.0f);
    block_q8_1 b1[N / 32];
    block_q8_K bk[N / 256];
    assert_true(quant_quantize_row(QT_Q8_1, x, b1, N));
    assert_true(quant_quantize_row(QT_Q8_K, x, bk, N));
    for (int i = 0; i < N / 32; i++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += b1[i].qs[j];
        assert_int_equal(b1[i].s, hb_f32_to_f16(hb_f16_to_f32(b1[i].d) * (float)sum));
    }
    for (int i = 0; i < N / 256; i++) {
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += bk[i].qs[16 * g + j];
            assert_int_equal(bk[i].bsums[g], sum);
        }
    }
}

static void test_known_q4_K(void **state) {
    (void)state;
    /* Scales and mins chosen to exercise the split 6-bit packing (sub-blocks 4..7 keep
     * their top two bits in bytes 0..7). Bytes packed by hand from the layout:
     *   byte j   (j<4) = sc[j] | (sc[j+4] >> 4) << 6
     *   byte j+4 (j<4) = mn[j] | (mn[j+4] >> 4) << 6
     *   byte j+8 (j<4) = (sc[j+4] & 15) | (mn[j+4] & 15) << 4 */
    static const int sc[8] = { 1, 2, 3, 63, 33, 17, 48, 5 };
    static const int mn[8] = { 0, 1, 62, 7, 40, 3, 16, 63 };
    static const uint8_t packed[12] = { 0x81, 0x42, 0xC3, 0x3F, 0x80, 0x01, 0x7E, 0xC7,
                                        0x81, 0x31, 0x00, 0xF5 };
    block_q4_K b;
    b.d = hb_f32_to_f16(1.0f);
    b.dmin = hb_f32_to_f16(0.5f);
    memcpy(b.scales, packed, 12);
    for (int i = 0; i < 128; i++) b.qs[i] = (uint8_t)(i * 7 + 3);
    float y[256];
    assert_true(quant_dequantize_row(QT_Q4_K, &b, y, 256));
    /* chunk c of 64: low nibbles of qs[32c..32c+31] are sub-block 2c, high nibbles 2c+1 */
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            uint8_t q = (uint8_t)((32 * c + l) * 7 + 3);
            assert_true(y[64 * c + l] == 1.0f * sc[2 * c] * (q & 15) - 0.5f * mn[2 * c]);
            assert_true(y[64 * c + 32 + l] == 1.0f * sc[2 * c + 1] * (q >> 4) - 0.5f * mn[2 * c + 1]);
        }
    }
}

static void test_known_q6_K(void **state) {
    (void)state;
    block_q6_K b;
    for (int i = 0; i < 128; i++) b.ql[i] = (uint8_t)(i * 11 + 5);
    for (int i = 0; i < 64; i++) b.qh[i] = (uint8_t)(i * 37 + 1);
    for (int s = 0; s < 16; s++) b.scales[s] = (int8_t)(s * 17 - 128); /* -128..127 */
    b.d = hb_f32_to_f16(0.25f);
    float y[256];
    assert_true(quant_dequantize_row(QT_Q6_K, &b, y, 256));
    /* half h, quarter k: 4 low bits = nibble k/2 of ql[64h + 32(k%2) + l], 2 high bits =
     * bits 2k of qh[32h + l]; value = d * scales[e/16] * (q - 32) */
    for (int h = 0; h < 2; h++) {
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * k + l;
                uint8_t lo = b.ql[64 * h + 32 * (k % 2) + l];
                int q = (k < 2 ? lo & 15 : lo >> 4) | ((b.qh[32 * h + l] >> (2 * k)) & 3) << 4;
                assert_true(y[e] == 0.25f * (float)b.scales[e / 16] * (float)(q - 32));
            }
        }
    }
    /* a literal spot check: element 0 uses ql[0]=5 (low nibble 5), qh[0]=1 (bits 0-1 = 1),
     * q = 5 + 16 = 21, scale -128: 0.25 * -128 * (21 - 32) = 352 */
    assert_true(y[0] == 352.0f);
}

static void test_known_q3_K(void **state) {
    (void)state;
    block_q3_K b;
    memset(&b, 0, sizeof b);
    b.d = hb_f32_to_f16(2.0f);
    /* scale of sub-block 9 = 5: biased 37 = 0b100101 -> low 4 bits 5 go to the high nibble
     * of byte 1 (9 - 8), top bits 2 to bit pair 9/4 = 2 of byte 8 + 9%4 = 9. All other
     * scales stay at biased 0, i.e. -32. */
    b.scales[1] = 0x50;
    b.scales[9] = 2 << 4;
    /* element e = 144 (h=1, k=0, l=16, sub-block 9): low bits in qs[32 + 16] bits 0-1,
     * high bit in hmask[16] bit 4. Codes 3 with hbit set -> q = 3; elsewhere q = 0 - 4. */
    b.qs[48] = 3;
    b.hmask[16] = 1 << 4;
    float y[256];
    assert_true(quant_dequantize_row(QT_Q3_K, &b, y, 256));
    for (int e = 0; e < 256; e++) {
        float want = e == 144 ? 2.0f * 5 * 3 : e / 16 == 9 ? 2.0f * 5 * -4 : 2.0f * -32 * -4;
        if (y[e] != want) fail_msg("Q3_K element %d: %g, want %g", e, y[e], want);
    }
}

static void test_known_iq4(void **state) {
    (void)state;
    /* IQ4_NL: d = 0.5, code j in element j and 15-j in element j+16; the grid values
     * (-127 ... 113) are the published IQ4_NL levels. */
    static const int levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
    uint8_t blk[18];
    put_f16(blk, 0.5f);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[256];
    assert_true(quant_dequantize_row(QT_IQ4_NL, blk, y, 32));
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * levels[j]);
        assert_true(y[16 + j] == 0.5f * levels[15 - j]);
    }
    /* IQ4_XS: sub-block s scale biased 32 + s - 4 (6 bits: low 4 in nibble s&1 of
     * scales_l[s/2], top 2 at bits 2s of scales_h); every code = 15 (level 113). */
    block_iq4_xs x;
    x.d = hb_f32_to_f16(0.125f);
    x.scales_h = 0;
    memset(x.scales_l, 0, 4);
    for (int s = 0; s < 8; s++) {
        int v = 32 + s - 4;
        x.scales_l[s / 2] |= (uint8_t)((v & 15) << (4 * (s & 1)));
        x.scales_h |= (uint16_t)((v >> 4) << (2 * s));
    }
    memset(x.qs, 0xff, sizeof x.qs);
    assert_true(quant_dequantize_row(QT_IQ4_XS, &x, y, 256));
    for (int e = 0; e < 256; e++) assert_true(y[e] == 0.125f * (float)(e / 32 - 4) * 113.0f);
}

/* Blocks of random bytes (with sane f16 scale fields) reach code and scale values no
 * quantizer of ours produces — negative super-scales, extreme 6-bit codes — and the dot
 * product must still agree with dequantization on them. */
static void test_dot_random_bytes(void **state) {
    (void)state;
    /* type, offsets of its f16 scale fields (-1: none) */
    static const struct { uint32_t t; int f0, f1; } types[] = {
        { QT_Q4_0, offsetof(block_q4_0, d), -1 },
        { QT_Q4_1, offsetof(block_q4_1, d), offsetof(block_q4_1, m) },
        { QT_Q5_0, offsetof(block_q5_0, d), -1 },
        { QT_Q5_1, offsetof(block_q5_1, d), offsetof(block_q5_1, m) },
        { QT_Q8_0, offsetof(block_q8_0, d), -1 },
        { QT_Q2_K, offsetof(block_q2_K, d), offsetof(block_q2_K, dmin) },
        { QT_Q3_K, offsetof(block_q3_K, d), -1 },
        { QT_Q4_K, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin) },
        { QT_Q5_K, offsetof(block_q5_K, d), offsetof(block_q5_K, dmin) },
        { QT_Q6_K, offsetof(block_q6_K, d), -1 },
        { QT_IQ4_NL, offsetof(block_iq4_nl, d), -1 },
        { QT_IQ4_XS, offsetof(block_iq4_xs, d), -1 },
    };
    enum { N = 512 };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint32_t t = types[k].t, vt = quant_traits_of(t)->vec_dot_type;
        const quant_traits *tr = quant_traits_of(t);
        size_t rs = quant_row_size(t, N);
        uint8_t *w = xmalloc(rs), *xq = xmalloc(quant_row_size(vt, N));
        for (size_t i = 0; i < rs; i++) w[i] = (uint8_t)(rnd_unit() * 256);
        /* overwrite the f16 scale fields with finite values in [-0.01, 0.01] */
        for (size_t b = 0; b < rs / tr->type_size; b++) {
            int offs[2] = { types[k].f0, types[k].f1 };
            for (int f = 0; f < 2; f++) {
                if (offs[f] < 0) continue;
                uint16_t h = hb_f32_to_f16((float)(rnd_unit() * 0.02 - 0.01));
                memcpy(w + b * tr->type_size + offs[f], &h, 2);
            }
        }
        float *x = xmalloc(N * sizeof *x), *wd = xmalloc(N * sizeof *wd), *xd = xmalloc(N * sizeof *xd);
        fill_gauss(x, N, 1.0f);
        assert_true(quant_quantize_row(vt, x, xq, N));
        assert_true(quant_dequantize_row(t, w, wd, N));
        assert_true(quant_dequantize_row(vt, xq, xd, N));
        double ref = 0, mag = 0;
        for (int i = 0; i < N; i++) ref += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
        float got = quant_vec_dot(t, w, xq, N);
        if (!(fabs(got - ref) <= 1e-5 * mag))
            fail_msg("%s: vec_dot %.9g vs dequantized dot %.9g", tr->name, got, ref);
        free(w), free(xq), free(x), free(wd), free(xd);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_zero_block),
        cmocka_unit_test(test_dot_matches_dequant),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_known_q4_0),
        cmocka_unit_test(test_known_q8_0),
        cmocka_unit_test(test_activation_sums),
        cmocka_unit_test(test_known_q4_K),
        cmocka_unit_test(test_known_q6_K),
        cmocka_unit_test(test_known_q3_K),
        cmocka_unit_test(test_known_iq4),
        cmocka_unit_test(test_dot_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
