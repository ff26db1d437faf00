/* The AMX kernels (src/backend/cpu/matmul_amx.c) on machines without AMX: this program
 * compiles that file itself with HEARTH_AMX_EMULATE, which replaces the six tile
 * instructions by a plain-C model of their documented semantics (TDPBSSD: C[m][n] +=
 * sum_k A[m][k] * B[k/4][4n + k%4], signed bytes), and runs everything else of the kernels
 * (tile shapes, A images, B unpacking, K-slabs, the store ring, the AVX-512 folding, the
 * hand-off of leftover tokens) for real. Its definition of mm_kernel_amx replaces the
 * library's, so the linker never pulls the real AMX object into this program.
 *
 * Checks, for Q8_0, Q4_0, Q4_K and Q6_K on awkward shapes (1/17/40 rows, block counts that
 * are odd and cross the slabs) and n_tok 16, 33, 70: (1) each output within float
 * summation error of the scalar reference (quantize x to the vec_dot_type, quant_vec_dot),
 * bound 2e-5 * sum |w_i x_i| as in test_kernels.c; (2) bit-identical to cpu_matmul at the
 * avx512 level (the kernels promise the same integers and float steps); (3) bit-identical
 * whether the row groups are done in one call or split over three (threads). Needs
 * AVX-512 (the folding is AVX-512 code); skipped without it.
 */
#define HEARTH_AMX_EMULATE 1
#include "backend/cpu/matmul_amx.c"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "quant/blocks.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float frnd(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }
static uint16_t small_f16(void) { return hb_f32_to_f16(0.001f + 0.05f * ((float)(rnd() & 1023) / 1024.0f)); }

/* Random code bytes (every bit pattern) with sane scales. */
static void fill(uint32_t t, uint8_t *data, int64_t rows, int64_t cols, size_t rb) {
    for (size_t i = 0; i < (size_t)rows * rb; i++) data[i] = (uint8_t)rnd();
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = data + (size_t)r * rb;
        for (int64_t b = 0; b < cols / 32; b++) {
            if (t == QT_Q4_0) ((block_q4_0 *)row)[b].d = small_f16();
            if (t == QT_Q8_0) ((block_q8_0 *)row)[b].d = small_f16();
        }
        for (int64_t b = 0; b < cols / 256; b++) {
            if (t == QT_Q4_K) ((block_q4_K *)row)[b].d = small_f16(), ((block_q4_K *)row)[b].dmin = small_f16();
            if (t == QT_Q6_K) ((block_q6_K *)row)[b].d = small_f16();
        }
    }
}

static void check(uint32_t t, int64_t rows, int64_t cols, cpu_pool *pool) {
    const quant_traits *tr = quant_traits_of(t);
    const int64_t max_tok = 70, ldy = rows + 2;
    size_t rb = quant_row_size(t, cols), xq_row = quant_row_size(tr->vec_dot_type, cols), xp_row = mm_prep_row_size(t, cols);
    uint8_t *w8 = malloc((size_t)rows * rb), *xq = malloc(xq_row), *xp = malloc(xp_row * (size_t)max_tok);
    float *x = malloc(sizeof(float) * (size_t)(max_tok * cols)), *wf = malloc(sizeof(float) * (size_t)cols);
    float *xf = malloc(sizeof(float) * (size_t)cols);
    float *ya = malloc(sizeof(float) * (size_t)(max_tok * ldy)), *yb = malloc(sizeof(float) * (size_t)(max_tok * ldy));
    float *yc = malloc(sizeof(float) * (size_t)(max_tok * ldy));
    assert_true(w8 && xq && xp && x && wf && xf && ya && yb && yc);
    fill(t, w8, rows, cols, rb);
    for (int64_t i = 0; i < max_tok * cols; i++) x[i] = frnd() * (1.0f + (float)(i % 5));
    cpu_weight w = { t, rows, cols, rb, w8, NULL, 0, false };
    hb_err err = { 0 };
    assert_int_equal(cpu_weight_prepare(&w, &err), HEARTH_OK);
    assert_non_null(w.packed);
    mm_kern_fn fn = mm_kernel_amx(&w);
    assert_non_null(fn);
    for (int64_t t0 = 0; t0 < max_tok; t0++) mm_prep_avx512(t, x + t0 * cols, cols, xp + (size_t)t0 * xp_row);
    static const int64_t toks[] = { 16, 33, 70 };
    const int64_t ng = (rows + MM_GROUP - 1) / MM_GROUP;
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
        int64_t nt = toks[k];
        for (int64_t i = 0; i < nt * ldy; i++) ya[i] = yb[i] = yc[i] = -777.0f;
        mm_ctx c = { &w, xp, xp_row, nt, ya, ldy };
        fn(&c, 0, ng); /* one thread */
        c.y = yb;
        for (int p = 0; p < 3; p++) /* three threads' ranges */
            if (ng * (p + 1) / 3 > ng * p / 3) fn(&c, ng * p / 3, ng * (p + 1) / 3);
        assert_memory_equal(ya, yb, sizeof(float) * (size_t)(nt * ldy));
        cpu_scratch sc = { 0 };
        cpu_isa_force(CPU_ISA_AVX512);
        assert_int_equal(cpu_matmul(pool, &w, x, nt, yc, ldy, &sc), HEARTH_OK);
        cpu_isa_force(-1);
        cpu_scratch_free(&sc);
        assert_memory_equal(ya, yc, sizeof(float) * (size_t)(nt * ldy));
        for (int64_t tk = 0; tk < nt; tk += 7) { /* against the reference, a sample of tokens */
            assert_true(quant_quantize_row(tr->vec_dot_type, x + tk * cols, xq, cols));
            assert_true(quant_dequantize_row(tr->vec_dot_type, xq, xf, cols));
            for (int64_t r = 0; r < rows; r++) {
                const uint8_t *wr = w8 + (size_t)r * rb;
                float want = quant_vec_dot(t, wr, xq, cols), got = ya[tk * ldy + r];
                assert_true(quant_dequantize_row(t, wr, wf, cols));
                double s = 0;
                for (int64_t i = 0; i < cols; i++) s += fabs((double)wf[i] * xf[i]);
                if (!(fabs((double)got - want) <= 2e-5 * s + 1e-30))
                    fail_msg("%s %lldx%lld n_tok=%lld t=%lld r=%lld: got %.9g want %.9g", tr->name, (long long)rows,
                             (long long)cols, (long long)nt, (long long)tk, (long long)r, got, want);
            }
            for (int64_t r = rows; r < ldy; r++) assert_true(ya[tk * ldy + r] == -777.0f);
        }
    }
    cpu_weight_release(&w);
    free(w8), free(xq), free(xp), free(x), free(wf), free(xf), free(ya), free(yb), free(yc);
}

static cpu_pool *g_pool;

static int setup(void **state) {
    (void)state;
    hb_err err = { 0 };
    return cpu_pool_new(2, &g_pool, &err) ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    cpu_pool_free(g_pool);
    return 0;
}

static void run(uint32_t t, const int64_t *cols, int nc) {
    if (!cpu_features_get()->avx512) skip();
    static const int64_t rows[] = { 1, 17, 40 };
    for (int c = 0; c < nc; c++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) check(t, rows[r], cols[c], g_pool);
}

static void test_q8_0(void **s) { (void)s; run(QT_Q8_0, (int64_t[]){ 32, 416 }, 2); }
static void test_q4_0(void **s) { (void)s; run(QT_Q4_0, (int64_t[]){ 96, 544 }, 2); }
static void test_q4_K(void **s) { (void)s; run(QT_Q4_K, (int64_t[]){ 256, 768 }, 2); }
static void test_q6_K(void **s) { (void)s; run(QT_Q6_K, (int64_t[]){ 256, 512 }, 2); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0), cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_q4_K), cmocka_unit_test(test_q6_K),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
