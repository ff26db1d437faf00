/* test_cuda_kernels.c — the CUDA matmul and dequantization kernels against the scalar
 * reference (src/quant), for every compute type, batch sizes on both the matrix-vector and
 * the tensor-core path, and row lengths that exercise tails and padding.
 *
 * Reference numbers are computed here, independently, in double precision from the
 * reference dequantization; the kernels must be as close to them as the reference's own
 * quantized-activation dot product (quant_vec_dot) is, within a small factor.
 * Built only with `make CUDA=1`; skips when no usable GPU is present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

static cuda_ctx *g_ctx;
static hb_err g_err;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static int setup(void **state) {
    (void)state;
    if (cuda_ctx_new(0, &g_ctx, &g_err)) {
        fprintf(stderr, "no usable GPU: %s\n", g_err.msg);
        g_ctx = NULL;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cuda_ctx_free(g_ctx);
    return 0;
}

#define NEED_GPU()          \
    do {                    \
        if (!g_ctx) skip(); \
    } while (0)

/* One type/shape case: W [rows][cols] random, quantized by the reference; x [n_tok][cols]. */
static void check_matmul(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok) {
    const quant_traits *tr = quant_traits_of(type);
    size_t rb = quant_row_size(type, cols), xrb = quant_row_size(tr->vec_dot_type, cols);
    float *wf = malloc(sizeof(float) * rows * cols), *wd = malloc(sizeof(float) * rows * cols);
    float *x = malloc(sizeof(float) * n_tok * cols), *y = malloc(sizeof(float) * n_tok * rows);
    uint8_t *wq = malloc(rb * rows), *xq = malloc(xrb);
    assert_non_null(wf && wd && x && y && wq && xq);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 7) * 0.3f);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * 2.0f;
    for (int64_t r = 0; r < rows; r++) {
        assert_true(quant_quantize_row(type, wf + r * cols, wq + r * rb, cols));
        assert_true(quant_dequantize_row(type, wq + r * rb, wd + r * cols, cols));
    }
    void *dw = NULL, *dx = NULL, *dy = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &dw, rb * rows, &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dx, sizeof(float) * n_tok * cols, &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dy, sizeof(float) * n_tok * rows, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dw, wq, rb * rows, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dx, x, sizeof(float) * n_tok * cols, &g_err), 0);
    cuda_weight w = { type, rows, cols, rb, dw };
    for (int64_t i = 0; i < n_tok * rows; i++) y[i] = NAN; /* every output must be written */
    assert_int_equal(cuda_upload(g_ctx, dy, y, sizeof(float) * n_tok * rows, &g_err), 0);
    int rc = cuda_matmul(g_ctx, &w, dx, n_tok, dy, rows, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cuda_download(g_ctx, y, dy, sizeof(float) * n_tok * rows, &g_err), 0);
    double se = 0, sr = 0, sq = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        assert_true(quant_quantize_row(tr->vec_dot_type, x + t * cols, xq, cols));
        for (int64_t r = 0; r < rows; r++) {
            double exact = 0;
            for (int64_t k = 0; k < cols; k++) exact += (double)wd[r * cols + k] * x[t * cols + k];
            double refq = quant_vec_dot(type, wq + r * rb, xq, cols);
            double got = y[t * rows + r];
            assert_false(isnan(got));
            se += (got - exact) * (got - exact);
            sq += (refq - exact) * (refq - exact);
            sr += exact * exact;
        }
    }
    double e_gpu = sqrt(se / sr), e_ref = sqrt(sq / sr);
    /* float weights: f32 activations (or f16 on the tensor cores); quantized weights: int8
     * activations like the reference (f16 on the tensor cores) */
    double bound = n_tok >= 17 ? 2e-3 : (tr->blck_size == 1 ? 1e-5 : 2.0 * e_ref + 1e-5);
    printf("  %-7s %4lld x %5lld  n_tok %3lld  nrmse %.2e (reference with quantized activations %.2e)\n",
           tr->name, (long long)rows, (long long)cols, (long long)n_tok, e_gpu, e_ref);
    assert_true(e_gpu <= bound);
    cuda_free(g_ctx, dw);
    cuda_free(g_ctx, dx);
    cuda_free(g_ctx, dy);
    free(wf), free(wd), free(x), free(y), free(wq), free(xq);
}

static const uint32_t k_types[] = { QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0,
                                    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS };

static void test_matmul_all_types(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        assert_true(cuda_type_supported(k_types[i]));
        check_matmul(k_types[i], 67, 512, 1);   /* decode */
        check_matmul(k_types[i], 33, 1024, 5);  /* small batch */
        check_matmul(k_types[i], 130, 768, 11); /* two passes of the batch loop */
        check_matmul(k_types[i], 70, 512, 40);  /* tensor cores, edge tiles */
    }
}

static void test_matmul_float_odd_rows(void **state) {
    (void)state;
    NEED_GPU();
    /* row lengths that are not multiples of 8 / 32: scalar path and zero padding */
    check_matmul(QT_F32, 9, 100, 1);
    check_matmul(QT_F16, 9, 100, 3);
    check_matmul(QT_BF16, 17, 52, 20);
    check_matmul(QT_F16, 17, 52, 20);
}

static void test_get_rows(void **state) {
    (void)state;
    NEED_GPU();
    const int64_t rows = 40, cols = 512;
    const int32_t ids[5] = { 3, 0, 39, 3, 17 };
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        uint32_t type = k_types[ti];
        size_t rb = quant_row_size(type, cols);
        float *wf = malloc(sizeof(float) * rows * cols), *want = malloc(sizeof(float) * cols);
        float *got = malloc(sizeof(float) * 5 * cols);
        uint8_t *wq = malloc(rb * rows);
        for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
        for (int64_t r = 0; r < rows; r++) quant_quantize_row(type, wf + r * cols, wq + r * rb, cols);
        void *dw = NULL, *dout = NULL;
        assert_int_equal(cuda_alloc(g_ctx, &dw, rb * rows, &g_err), 0);
        assert_int_equal(cuda_alloc(g_ctx, &dout, sizeof(float) * 5 * cols, &g_err), 0);
        assert_int_equal(cuda_upload(g_ctx, dw, wq, rb * rows, &g_err), 0);
        cuda_weight w = { type, rows, cols, rb, dw };
        assert_int_equal(cuda_get_rows(g_ctx, &w, ids, 5, dout, &g_err), 0);
        assert_int_equal(cuda_download(g_ctx, got, dout, sizeof(float) * 5 * cols, &g_err), 0);
        for (int i = 0; i < 5; i++) {
            quant_dequantize_row(type, wq + ids[i] * rb, want, cols);
            for (int64_t k = 0; k < cols; k++)
                assert_float_equal(got[i * cols + k], want[k], 1e-5f * (1.0f + fabsf(want[k])));
        }
        cuda_free(g_ctx, dw);
        cuda_free(g_ctx, dout);
        free(wf), free(want), free(got), free(wq);
    }
}

static void test_bad_device_is_an_error(void **state) {
    (void)state;
    cuda_dev_info info;
    hb_err err = { 0, "" };
    /* no machine has 1000 GPUs: a clear error, never a crash */
    assert_int_equal(cuda_probe(1000, &info, &err), HEARTH_E_UNSUPPORTED);
    assert_true(strlen(err.msg) > 0);
}

static void test_bandwidth(void **state) {
    (void)state;
    NEED_GPU();
    double bw = 0;
    assert_int_equal(cuda_measure_bandwidth(g_ctx, &bw, &g_err), 0);
    printf("  %s: read bandwidth %.2f TB/s\n", cuda_ctx_info(g_ctx)->name, bw / 1e12);
    assert_true(bw > 1e10); /* any real GPU reads faster than 10 GB/s */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_device_is_an_error),
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_matmul_float_odd_rows),
        cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_bandwidth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
