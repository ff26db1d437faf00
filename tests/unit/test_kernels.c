/* Differential tests of cpu_matmul (src/backend/cpu) against the scalar reference in
 * src/quant: for every weight type with a fast kernel (and a fallback type), every ISA level
 * this machine allows (scalar, avx2, avx512, amx, capped with cpu_isa_force), 1 and 2
 * threads, awkward shapes (a single row, rows not a multiple of the 16-row group, one block
 * of columns, block counts above the AMX kernels' unpacking slabs) and n_tok 1, 2, 3,
 * 17, 33, 64 (the AMX kernels take whole 16-token tiles and leave the rest to AVX-512).
 *
 * Expected values are computed independently here: activations quantized with
 * quant_quantize_row to the type's vec_dot_type, then quant_vec_dot per (row, token), exactly
 * as the reference defines the product. Bound: |y - ref| <= 2e-5 * sum_i |w_i x_i| + 1e-30,
 * i.e. float summation error; one wrong element would be ~1/n_cols of that sum, orders of
 * magnitude over the bound. Weight codes are random bytes (every bit pattern, including
 * Q8_0's -128) with sane random scales, so the packers see the whole code range.
 * Results must also be bit-identical across thread counts and token-tile sizes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/matmul_impl.h"
#include "quant/blocks.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float frnd(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }
static uint16_t small_f16(void) { return hb_f32_to_f16(0.001f + 0.05f * ((float)(rnd() & 1023) / 1024.0f)); }

/* Random but well-formed weight rows of type t: random code bytes, sane scales. */
static void fill_weights(uint32_t t, uint8_t *data, int64_t rows, int64_t cols, size_t row_bytes) {
    for (size_t i = 0; i < (size_t)rows * row_bytes; i++) data[i] = (uint8_t)rnd();
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = data + (size_t)r * row_bytes;
        switch (t) {
        case QT_F16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)row)[i] = hb_f32_to_f16(frnd()); break;
        case QT_BF16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)row)[i] = hb_f32_to_bf16(frnd()); break;
        case QT_Q4_0: for (int64_t b = 0; b < cols / 32; b++) ((block_q4_0 *)row)[b].d = small_f16(); break;
        case QT_Q5_0: for (int64_t b = 0; b < cols / 32; b++) ((block_q5_0 *)row)[b].d = small_f16(); break;
        case QT_Q8_0: for (int64_t b = 0; b < cols / 32; b++) ((block_q8_0 *)row)[b].d = small_f16(); break;
        case QT_Q4_K:
            for (int64_t b = 0; b < cols / 256; b++) ((block_q4_K *)row)[b].d = small_f16(), ((block_q4_K *)row)[b].dmin = small_f16();
            break;
        case QT_Q5_K:
            for (int64_t b = 0; b < cols / 256; b++) ((block_q5_K *)row)[b].d = small_f16(), ((block_q5_K *)row)[b].dmin = small_f16();
            break;
        case QT_Q6_K: for (int64_t b = 0; b < cols / 256; b++) ((block_q6_K *)row)[b].d = small_f16(); break;
        default: break;
        }
    }
}

typedef struct mm_case {
    uint32_t type;
    int64_t rows, cols;
} mm_case;

static void check_case(const mm_case *mc, cpu_pool **pools) {
    const quant_traits *tr = quant_traits_of(mc->type);
    uint32_t vdt = tr->vec_dot_type;
    size_t row_bytes = quant_row_size(mc->type, mc->cols), xq_row = quant_row_size(vdt, mc->cols);
    const int64_t max_tok = 64;
    uint8_t *wdata = malloc((size_t)mc->rows * row_bytes);
    float *x = malloc(sizeof(float) * (size_t)(max_tok * mc->cols));
    uint8_t *xq = malloc(xq_row * (size_t)max_tok);
    float *ref = malloc(sizeof(float) * (size_t)(max_tok * mc->rows));
    float *bound = malloc(sizeof(float) * (size_t)(max_tok * mc->rows));
    float *y = malloc(sizeof(float) * (size_t)(max_tok * (mc->rows + 3)));
    float *y1 = malloc(sizeof(float) * (size_t)(max_tok * (mc->rows + 3)));
    float *wf = malloc(sizeof(float) * (size_t)mc->cols), *xf = malloc(sizeof(float) * (size_t)mc->cols);
    assert_non_null(wdata), assert_non_null(x), assert_non_null(xq), assert_non_null(ref);
    assert_non_null(bound), assert_non_null(y), assert_non_null(y1), assert_non_null(wf), assert_non_null(xf);
    fill_weights(mc->type, wdata, mc->rows, mc->cols, row_bytes);
    for (int64_t i = 0; i < max_tok * mc->cols; i++) x[i] = frnd() * (1.0f + (float)(i % 7));
    for (int64_t t = 0; t < max_tok; t++) {
        assert_true(quant_quantize_row(vdt, x + t * mc->cols, xq + (size_t)t * xq_row, mc->cols));
        assert_true(quant_dequantize_row(vdt, xq + (size_t)t * xq_row, xf, mc->cols));
        for (int64_t r = 0; r < mc->rows; r++) {
            const uint8_t *wr = wdata + (size_t)r * row_bytes;
            ref[t * mc->rows + r] = quant_vec_dot(mc->type, wr, xq + (size_t)t * xq_row, mc->cols);
            assert_true(quant_dequantize_row(mc->type, wr, wf, mc->cols));
            double s = 0;
            for (int64_t i = 0; i < mc->cols; i++) s += fabs((double)wf[i] * xf[i]);
            bound[t * mc->rows + r] = (float)(2e-5 * s + 1e-30);
        }
    }
    static const int64_t toks[] = { 1, 2, 3, 17, 33, 64 };
    const int ldy = (int)mc->rows + 3; /* ldy > n_rows: padding must stay untouched */
    int top = cpu_features_get()->level;
    float *y_avx2 = malloc(sizeof(float) * (size_t)(max_tok * ldy));
    assert_non_null(y_avx2);
    bool quantized = mc->type != QT_F16 && mc->type != QT_BF16;
    for (int lv = 0; lv <= top; lv++) {
        cpu_isa_force(lv);
        cpu_weight w = { mc->type, mc->rows, mc->cols, row_bytes, wdata, NULL, 0, false };
        hb_err err = { 0 };
        assert_int_equal(cpu_weight_prepare(&w, &err), HEARTH_OK);
        for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
            int64_t nt = toks[ti];
            for (int p = 0; p < 2; p++) {
                cpu_scratch sc = { 0 };
                float *out = p ? y : y1;
                for (int64_t i = 0; i < nt * ldy; i++) out[i] = -777.0f;
                assert_int_equal(cpu_matmul(pools[p], &w, x, nt, out, ldy, &sc), HEARTH_OK);
                cpu_scratch_free(&sc);
                for (int64_t t = 0; t < nt; t++) {
                    for (int64_t r = 0; r < mc->rows; r++) {
                        float got = out[t * ldy + r], want = ref[t * mc->rows + r];
                        if (!(fabsf(got - want) <= bound[t * mc->rows + r]))
                            fail_msg("%s %lldx%lld isa=%s threads=%d n_tok=%lld t=%lld r=%lld: got %.9g want %.9g (bound %.3g)",
                                     tr->name, (long long)mc->rows, (long long)mc->cols, cpu_isa_name(lv), p + 1,
                                     (long long)nt, (long long)t, (long long)r, got, want, bound[t * mc->rows + r]);
                    }
                    for (int64_t r = mc->rows; r < ldy; r++) assert_true(out[t * ldy + r] == -777.0f);
                }
            }
            /* same bits with 1 and 2 threads */
            assert_memory_equal(y, y1, sizeof(float) * (size_t)(nt * ldy));
            /* quantized kernels: integer dots are exact and the float steps are the same per
             * lane on AVX2 and AVX-512, so any difference would come from the vectorized
             * activation quantizer deviating from the reference codes */
            if (quantized && lv == CPU_ISA_AVX2 && nt == 64) memcpy(y_avx2, y, sizeof(float) * (size_t)(nt * ldy));
            if (quantized && lv >= CPU_ISA_AVX512 && nt == 64) assert_memory_equal(y, y_avx2, sizeof(float) * (size_t)(nt * ldy));
        }
        /* tile independence: every token of a 17-token call (tiles of 8/4 tokens and a tail;
         * on amx: tokens 0-15 in one 16-token tile, token 16 left over) equals the same token
         * alone (the n_tok = 1 path) */
        {
            cpu_scratch sc = { 0 };
            assert_int_equal(cpu_matmul(pools[1], &w, x, 17, y, ldy, &sc), HEARTH_OK);
            for (int64_t t = 0; t < 17; t++) {
                assert_int_equal(cpu_matmul(pools[t & 1], &w, x + t * mc->cols, 1, y1, ldy, &sc), HEARTH_OK);
                assert_memory_equal(y + t * ldy, y1, sizeof(float) * (size_t)mc->rows);
            }
            cpu_scratch_free(&sc);
        }
        cpu_weight_release(&w);
    }
    cpu_isa_force(-1);
    free(y_avx2);
    free(wdata), free(x), free(xq), free(ref), free(bound), free(y), free(y1), free(wf), free(xf);
}

static cpu_pool *g_pools[2];

static int setup(void **state) {
    (void)state;
    hb_err err = { 0 };
    if (cpu_pool_new(1, &g_pools[0], &err) || cpu_pool_new(2, &g_pools[1], &err)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cpu_pool_free(g_pools[0]);
    cpu_pool_free(g_pools[1]);
    return 0;
}

static void run_cases(uint32_t type, const int64_t *cols, int ncols) {
    static const int64_t rows[] = { 1, 15, 17, 40 };
    for (int c = 0; c < ncols; c++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            mm_case mc = { type, rows[r], cols[c] };
            check_case(&mc, g_pools);
        }
}

static void test_q4_0(void **s) { (void)s; run_cases(QT_Q4_0, (int64_t[]){ 32, 416, 1312 }, 3); }
static void test_q8_0(void **s) { (void)s; run_cases(QT_Q8_0, (int64_t[]){ 32, 416, 1312 }, 3); }
static void test_q4_K(void **s) { (void)s; run_cases(QT_Q4_K, (int64_t[]){ 256, 768, 1280 }, 3); }
static void test_q5_K(void **s) { (void)s; run_cases(QT_Q5_K, (int64_t[]){ 256, 768 }, 2); }
static void test_q6_K(void **s) { (void)s; run_cases(QT_Q6_K, (int64_t[]){ 256, 768, 1280 }, 3); }
static void test_f16(void **s) { (void)s; run_cases(QT_F16, (int64_t[]){ 1, 15, 16, 100 }, 4); }
static void test_bf16(void **s) { (void)s; run_cases(QT_BF16, (int64_t[]){ 1, 31, 32, 100 }, 4); }
static void test_fallback_q5_0(void **s) { (void)s; run_cases(QT_Q5_0, (int64_t[]){ 64 }, 1); }

/* The vector activation quantizers must give byte-identical codes to the reference path
 * (quant_quantize_row + rearrangement), including rounding ties, zeros, a zero block,
 * huge and tiny values, and NaN (Q8 types only: NaN payloads differ for f16). */
static void test_prep_exact(void **s) {
    (void)s;
    static const uint32_t types[] = { QT_Q8_0, QT_Q4_K, QT_F16, QT_BF16 };
    const int64_t n = 1024;
    float *x = malloc(sizeof(float) * n);
    uint8_t *ref = malloc(mm_prep_row_size(QT_F16, n)), *got = malloc(mm_prep_row_size(QT_F16, n));
    uint8_t *tmp = malloc(quant_row_size(QT_F32, n));
    assert_non_null(x), assert_non_null(ref), assert_non_null(got), assert_non_null(tmp);
    const cpu_features *f = cpu_features_get();
    for (int trial = 0; trial < 40; trial++) {
        for (int64_t i = 0; i < n; i++) {
            float v = frnd() * (trial % 2 ? 1e-3f : 3.0f);
            switch (rnd() % 16) {
            case 0: v = 0.0f; break;
            case 1: v = (float)((int)(rnd() % 255) - 127) * 0.5f; break; /* ties after scaling */
            case 2: v = ldexpf(frnd(), -30); break;
            case 3: v = ldexpf(frnd(), 20); break;
            default: break;
            }
            x[i] = v;
        }
        for (int64_t i = 32; i < 64; i++) x[i] = 0.0f; /* an all-zero block */
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            uint32_t t = types[k];
            if (t == QT_Q8_0 || t == QT_Q4_K) x[100] = trial % 3 ? x[100] : NAN;
            else if (isnan(x[100])) x[100] = 1.0f;
            size_t cmp = t == QT_F16 ? (size_t)n * 4 : t == QT_BF16 ? (size_t)n * 2 : mm_prep_row_size(t, n);
            mm_prep_ref(t, x, n, ref, tmp);
            if (f->avx2) {
                memset(got, 0x5a, cmp);
                mm_prep_avx2(t, x, n, got);
                assert_memory_equal(ref, got, cmp);
            }
            if (f->avx512) {
                memset(got, 0x5a, cmp);
                mm_prep_avx512(t, x, n, got);
                assert_memory_equal(ref, got, cmp);
            }
        }
    }
    free(x), free(ref), free(got), free(tmp);
}

/* A weight in a read-only file mapping with data_mapped: after packing its pages are
 * dropped, and both the packed kernels and the scalar path (which re-faults the pages from
 * the file) still give the reference result. */
static void test_mapped_release(void **s) {
    (void)s;
    const int64_t rows = 64, cols = 4096;
    size_t rb = quant_row_size(QT_Q4_0, cols), size = rb * (size_t)rows;
    uint8_t *buf = malloc(size), *xq = malloc(quant_row_size(QT_Q8_0, cols));
    float *x = malloc(sizeof(float) * cols), y[64], want[64];
    assert_non_null(buf), assert_non_null(xq), assert_non_null(x);
    fill_weights(QT_Q4_0, buf, rows, cols, rb);
    for (int64_t i = 0; i < cols; i++) x[i] = frnd();
    quant_quantize_row(QT_Q8_0, x, xq, cols);
    for (int64_t r = 0; r < rows; r++) want[r] = quant_vec_dot(QT_Q4_0, buf + (size_t)r * rb, xq, cols);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fflush(f);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    assert_true(map != MAP_FAILED);
    cpu_weight w = { QT_Q4_0, rows, cols, rb, map, NULL, 0, true };
    hb_err err = { 0 };
    assert_int_equal(cpu_weight_prepare(&w, &err), HEARTH_OK);
    for (int lv = cpu_features_get()->level; lv >= 0; lv--) {
        cpu_scratch sc = { 0 };
        cpu_isa_force(lv);
        assert_int_equal(cpu_matmul(g_pools[1], &w, x, 1, y, rows, &sc), HEARTH_OK);
        for (int64_t r = 0; r < rows; r++) assert_true(fabsf(y[r] - want[r]) <= 1e-4f * (1.0f + fabsf(want[r])));
        cpu_scratch_free(&sc);
    }
    cpu_isa_force(-1);
    cpu_weight_release(&w);
    munmap(map, size);
    fclose(f);
    free(buf), free(xq), free(x);
}

static void test_isa_detection(void **s) {
    (void)s;
    const cpu_features *f = cpu_features_get();
    print_message("detected ISA level: %s (kernel tests ran every level up to it)\n", cpu_isa_name(f->level));
    /* levels are nested: a level implies every lower one */
    if (f->amx) assert_true(f->avx512);
    if (f->avx512) assert_true(f->avx2);
    assert_true(f->level >= CPU_ISA_SCALAR && f->level <= CPU_ISA_AMX);
    cpu_isa_force(CPU_ISA_SCALAR);
    assert_int_equal(cpu_isa_level(), CPU_ISA_SCALAR);
    cpu_isa_force(-1);
    assert_true(cpu_isa_level() <= f->level);
    assert_string_equal(cpu_isa_name(CPU_ISA_AVX2), "avx2");
}

static void test_unsupported_type(void **s) {
    (void)s;
    cpu_weight w = { QT_Q8_K, 1, 256, 292, NULL, NULL, 0, false };
    cpu_scratch sc = { 0 };
    float x[256] = { 0 }, y[1];
    assert_int_equal(cpu_matmul(g_pools[0], &w, x, 1, y, 1, &sc), HEARTH_E_UNSUPPORTED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_detection), cmocka_unit_test(test_unsupported_type),
        cmocka_unit_test(test_prep_exact),    cmocka_unit_test(test_mapped_release),
        cmocka_unit_test(test_q4_0),          cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_K),          cmocka_unit_test(test_q5_K),
        cmocka_unit_test(test_q6_K),          cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),          cmocka_unit_test(test_fallback_q5_0),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
