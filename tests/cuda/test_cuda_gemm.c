/* test_cuda_gemm.c — the tensor-core matrix multiply of the prefill path (cuda_matmul with
 * 17+ tokens, cu_gemm.cu) against a plain reference computed here, for every weight type
 * the GPU supports: shapes whose token count is not a multiple of the 64-token tile, odd
 * weight row counts, row lengths that are a multiple of 32 but not of the 128-value stage
 * (and only 2-byte aligned rows), a padded output row stride, and the fused residual add.
 *
 * Reference: y = x . W^T in double precision from the reference dequantization of W. The
 * quantized types multiply int8 activations (one scale per 32 values) like the scalar
 * reference's own dot product, so they must be as close to the exact result as
 * quant_vec_dot is, within a factor of 2; F16/BF16 weights take f16 activations (2e-3).
 *
 * HEARTH_GEMM_BENCH=1 also times TinyLlama-shape products (a device measurement, printed).
 * Built only with `make CUDA=1`; skips when no usable GPU is present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

/* A weight W [rows][cols] of `type` (quantized by the reference) on the device, with its
 * reference dequantization in wd (host). */
typedef struct test_w {
    cuda_weight w;
    void *dev; /* w.data, owned */
    float *wd;
    uint8_t *wq;
} test_w;

static void make_weight(test_w *t, uint32_t type, int64_t rows, int64_t cols) {
    size_t rb = quant_row_size(type, cols);
    float *wf = malloc(sizeof(float) * rows * cols);
    t->wd = malloc(sizeof(float) * rows * cols);
    t->wq = malloc(rb * rows);
    assert_non_null(wf && t->wd && t->wq);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 5) * 0.4f);
    for (int64_t r = 0; r < rows; r++) {
        assert_true(quant_quantize_row(type, wf + r * cols, t->wq + r * rb, cols));
        assert_true(quant_dequantize_row(type, t->wq + r * rb, t->wd + r * cols, cols));
    }
    void *dw = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &dw, rb * rows, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dw, t->wq, rb * rows, &g_err), 0);
    t->w = (cuda_weight){ type, rows, cols, rb, dw };
    t->dev = dw;
    free(wf);
}

static void free_weight(test_w *t) {
    cuda_free(g_ctx, t->dev);
    free(t->wd), free(t->wq);
}

/* One case: n_tok x cols activations times the weight; output rows ldy >= rows apart; with
 * add, a residual buffer that must come back as residual + y. */
static void check_gemm(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok, int64_t ldy, int add) {
    const quant_traits *tr = quant_traits_of(type);
    test_w t;
    make_weight(&t, type, rows, cols);
    size_t ny = (size_t)(n_tok * ldy);
    float *x = malloc(sizeof(float) * n_tok * cols), *y = malloc(sizeof(float) * ny);
    float *res = malloc(sizeof(float) * ny), *res2 = malloc(sizeof(float) * ny);
    uint8_t *xq = malloc(quant_row_size(tr->vec_dot_type, cols) + 64);
    assert_non_null(x && y && res && res2 && xq);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * 2.0f * (i % 11 == 0 ? 4.0f : 1.0f);
    for (size_t i = 0; i < ny; i++) y[i] = NAN, res[i] = frand();
    void *dx = NULL, *dy = NULL, *dr = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &dx, sizeof(float) * n_tok * cols, &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dy, sizeof(float) * ny, &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dr, sizeof(float) * ny, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dx, x, sizeof(float) * n_tok * cols, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dy, y, sizeof(float) * ny, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dr, res, sizeof(float) * ny, &g_err), 0);
    cuda_mm_opt opt = { 0, add ? (float *)dr : NULL, 0 };
    int rc = cuda_matmul_ex(g_ctx, &t.w, dx, n_tok, dy, ldy, &opt, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cuda_download(g_ctx, y, dy, sizeof(float) * ny, &g_err), 0);
    assert_int_equal(cuda_download(g_ctx, res2, dr, sizeof(float) * ny, &g_err), 0);
    double se = 0, sr = 0, sq = 0;
    size_t rb = t.w.row_bytes;
    for (int64_t i = 0; i < n_tok; i++) {
        if (tr->blck_size > 1) assert_true(quant_quantize_row(tr->vec_dot_type, x + i * cols, xq, cols));
        for (int64_t j = 0; j < ldy; j++) {
            size_t o = (size_t)(i * ldy + j);
            if (j >= rows) { /* padding of the output rows: untouched */
                assert_true(isnan(y[o]));
                assert_true(res2[o] == res[o]);
                continue;
            }
            double exact = 0;
            for (int64_t k = 0; k < cols; k++) exact += (double)t.wd[j * cols + k] * x[i * cols + k];
            double refq = tr->blck_size > 1 ? quant_vec_dot(type, t.wq + j * rb, xq, cols) : exact;
            double got = y[o];
            assert_false(isnan(got));
            /* the residual gets exactly the value written to y */
            if (add) assert_true(fabs((double)res2[o] - ((double)res[o] + got)) <= 1e-5 * (1.0 + fabs(got)));
            else assert_true(res2[o] == res[o]);
            se += (got - exact) * (got - exact);
            sq += (refq - exact) * (refq - exact);
            sr += exact * exact;
        }
    }
    double e_gpu = sqrt(se / sr), e_ref = sqrt(sq / sr);
    double bound = tr->blck_size == 1 ? 2e-3 : 2.0 * e_ref + 1e-5;
    printf("  %-7s %4lld x %5lld  n_tok %3lld  ldy %4lld%s  nrmse %.2e (reference %.2e)\n", tr->name, (long long)rows,
           (long long)cols, (long long)n_tok, (long long)ldy, add ? " +add" : "     ", e_gpu, e_ref);
    assert_true(e_gpu <= bound);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dy), cuda_free(g_ctx, dr);
    free(x), free(y), free(res), free(res2), free(xq);
    free_weight(&t);
}

static const uint32_t k_types[] = { QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,   QT_Q5_1,  QT_Q8_0, QT_Q2_K,
                                    QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS };

static void test_gemm_all_types(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        uint32_t type = k_types[i];
        assert_true(cuda_type_supported(type));
        assert_false(cuda_matmul_is_mv(&(cuda_weight){ type, 8, 256, 0, NULL }, 17));
        int64_t bs = quant_traits_of(type)->blck_size;
        /* 256-value super-blocks: row lengths are multiples of 256 (two 128-value stages) */
        int64_t odd_k = bs == 256 ? 768 : 544; /* 544 = 17 chunks: a stage with one chunk */
        check_gemm(type, 67, odd_k, 83, 67, 1); /* odd rows, partial token tile, residual add */
        check_gemm(type, 130, 256, 17, 133, 0); /* the smallest tensor-core batch, padded ldy */
        check_gemm(type, 200, 1024, 130, 200, 1);
    }
}

static void test_gemm_float_odd_rows(void **state) {
    (void)state;
    NEED_GPU();
    /* row lengths that are not multiples of 8 / 32: scalar loads and zero padding */
    check_gemm(QT_F16, 17, 52, 20, 17, 1);
    check_gemm(QT_BF16, 33, 100, 40, 35, 0);
    check_gemm(QT_F16, 9, 36, 65, 9, 0);
    /* enough 128-row tiles (33 x 8 = 264: two per SM of a 132-SM GPU) for the wide F16 tile,
     * with a partial last tile and a partial k stage (k = 288 = 4.5 x 64) */
    check_gemm(QT_F16, 4100, 288, 512, 4100, 1);
}

/* Three products over the same activations in one launch (cuda_matmul_multi at prefill, as
 * the recorder merges q/k/v): every output, and the residual add of the second, bit for bit
 * what the products give one at a time. */
static void check_multi(uint32_t type, int64_t cols, int64_t n_tok) {
    const int64_t rows[3] = { 67, 256, 130 };
    test_w t[3];
    void *dx = NULL, *dy[3] = { 0 }, *dz[3] = { 0 }, *dr = NULL, *dr2 = NULL;
    float *x = malloc(sizeof(float) * n_tok * cols), *res = malloc(sizeof(float) * n_tok * rows[1]);
    assert_non_null(x && res);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * 3.0f;
    for (int64_t i = 0; i < n_tok * rows[1]; i++) res[i] = frand();
    assert_int_equal(cuda_alloc(g_ctx, &dx, sizeof(float) * n_tok * cols, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dx, x, sizeof(float) * n_tok * cols, &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dr, sizeof(float) * n_tok * rows[1], &g_err), 0);
    assert_int_equal(cuda_alloc(g_ctx, &dr2, sizeof(float) * n_tok * rows[1], &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dr, res, sizeof(float) * n_tok * rows[1], &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dr2, res, sizeof(float) * n_tok * rows[1], &g_err), 0);
    const cuda_weight *ws[3];
    float *ys[3], *adds[3] = { NULL, dr, NULL };
    int64_t ldys[3];
    for (int i = 0; i < 3; i++) {
        make_weight(&t[i], type, rows[i], cols);
        assert_int_equal(cuda_alloc(g_ctx, &dy[i], sizeof(float) * n_tok * rows[i], &g_err), 0);
        assert_int_equal(cuda_alloc(g_ctx, &dz[i], sizeof(float) * n_tok * rows[i], &g_err), 0);
        ws[i] = &t[i].w, ys[i] = dy[i], ldys[i] = rows[i];
    }
    assert_int_equal(cuda_matmul_multi(g_ctx, 3, ws, ys, ldys, adds, dx, n_tok, 0, &g_err), 0);
    for (int i = 0; i < 3; i++) {
        cuda_mm_opt opt = { 0, i == 1 ? (float *)dr2 : NULL, 0 };
        assert_int_equal(cuda_matmul_ex(g_ctx, ws[i], dx, n_tok, dz[i], rows[i], &opt, &g_err), 0);
    }
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)(n_tok * rows[i]);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        assert_non_null(a && b);
        assert_int_equal(cuda_download(g_ctx, a, dy[i], sizeof(float) * n, &g_err), 0);
        assert_int_equal(cuda_download(g_ctx, b, dz[i], sizeof(float) * n, &g_err), 0);
        assert_memory_equal(a, b, sizeof(float) * n);
        if (i == 1) {
            assert_int_equal(cuda_download(g_ctx, a, dr, sizeof(float) * n, &g_err), 0);
            assert_int_equal(cuda_download(g_ctx, b, dr2, sizeof(float) * n, &g_err), 0);
            assert_memory_equal(a, b, sizeof(float) * n);
            assert_true(a[0] != res[0] || a[1] != res[1]); /* the add happened */
        }
        free(a), free(b);
        cuda_free(g_ctx, dy[i]), cuda_free(g_ctx, dz[i]);
        free_weight(&t[i]);
    }
    printf("  %-7s multi (67 + 256 + 130 rows) x %lld, n_tok %lld: equal to separate products\n",
           quant_traits_of(type)->name, (long long)cols, (long long)n_tok);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dr), cuda_free(g_ctx, dr2);
    free(x), free(res);
}

/* A merged launch over weights of different types or row lengths is refused with an error
 * (the recorder never builds one; a caller bug must not run garbage), and the context keeps
 * working. */
static void test_gemm_multi_refuses_mixed(void **state) {
    (void)state;
    NEED_GPU();
    test_w a, b, d;
    make_weight(&a, QT_Q4_0, 64, 256);
    make_weight(&b, QT_Q8_0, 64, 256);
    make_weight(&d, QT_Q4_0, 64, 512);
    int64_t n_tok = 40;
    float *x = malloc(sizeof(float) * n_tok * 512);
    assert_non_null(x);
    for (int64_t i = 0; i < n_tok * 512; i++) x[i] = frand();
    void *dx = dev_from(x, sizeof(float) * n_tok * 512), *dy0 = dev_from(NULL, sizeof(float) * n_tok * 64);
    void *dy1 = dev_from(NULL, sizeof(float) * n_tok * 64);
    float *ys[2] = { dy0, dy1 }, *adds[2] = { NULL, NULL };
    int64_t ldys[2] = { 64, 64 };
    const cuda_weight *mixed_type[2] = { &a.w, &b.w }, *mixed_cols[2] = { &a.w, &d.w };
    hb_err e;
    hb_err_clear(&e);
    assert_int_not_equal(cuda_matmul_multi(g_ctx, 2, mixed_type, ys, ldys, adds, dx, n_tok, 0, &e), 0);
    hb_err_clear(&e);
    assert_int_not_equal(cuda_matmul_multi(g_ctx, 2, mixed_cols, ys, ldys, adds, dx, n_tok, 0, &e), 0);
    assert_int_equal(cuda_matmul(g_ctx, &a.w, dx, n_tok, dy0, 64, &g_err), 0);
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dy0), cuda_free(g_ctx, dy1);
    free(x);
    free_weight(&a), free_weight(&b), free_weight(&d);
}

static void test_gemm_multi(void **state) {
    (void)state;
    NEED_GPU();
    const uint32_t types[] = { QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_Q5_1, QT_IQ4_NL };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        check_multi(types[i], quant_traits_of(types[i])->blck_size == 256 ? 768 : 544, 83);
    check_multi(QT_Q4_0, 2048, 512);
    check_multi(QT_F16, 544, 83); /* one f16 conversion of x, one launch */
    check_multi(QT_F16, 2048, 512);
    check_multi(QT_BF16, 544, 40); /* one product after another */
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Times n_prod F16 products of rows[i] x k over the same m activations as one
 * cuda_matmul_multi (q/k/v, gate/up as the recorder merges them), random weights. */
static void bench_f16_multi(int64_t m, int64_t k, int n_prod, const int64_t *rows) {
    void *dw[3] = { 0 }, *dy[3] = { 0 }, *dx = NULL;
    cuda_weight w[3];
    const cuda_weight *ws[3];
    float *ys[3], *adds[3] = { NULL, NULL, NULL };
    int64_t ldys[3], tot = 0;
    size_t rb = quant_row_size(QT_F16, k);
    for (int i = 0; i < n_prod; i++) {
        uint16_t *wr = malloc(rb * rows[i]);
        assert_non_null(wr);
        for (int64_t j = 0; j < rows[i] * k; j++) wr[j] = (uint16_t)(0x3000 + ((j * 2654435761u) >> 20) % 0x0c00);
        assert_int_equal(cuda_alloc(g_ctx, &dw[i], rb * rows[i], &g_err), 0);
        assert_int_equal(cuda_upload(g_ctx, dw[i], wr, rb * rows[i], &g_err), 0);
        assert_int_equal(cuda_alloc(g_ctx, &dy[i], sizeof(float) * m * rows[i], &g_err), 0);
        w[i] = (cuda_weight){ QT_F16, rows[i], k, rb, dw[i] };
        ws[i] = &w[i], ys[i] = dy[i], ldys[i] = rows[i], tot += rows[i];
        free(wr);
    }
    float *x = malloc(sizeof(float) * m * k);
    assert_non_null(x);
    for (int64_t j = 0; j < m * k; j++) x[j] = frand();
    assert_int_equal(cuda_alloc(g_ctx, &dx, sizeof(float) * m * k, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, dx, x, sizeof(float) * m * k, &g_err), 0);
    for (int r = 0; r < 3; r++) assert_int_equal(cuda_matmul_multi(g_ctx, n_prod, ws, ys, ldys, adds, dx, m, 0, &g_err), 0);
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    const int iters = 30;
    double t0 = now_s();
    for (int r = 0; r < iters; r++)
        assert_int_equal(cuda_matmul_multi(g_ctx, n_prod, ws, ys, ldys, adds, dx, m, 0, &g_err), 0);
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    double us = (now_s() - t0) / iters * 1e6;
    printf("  bench F16 multi x%d m %lld n %5lld k %5lld: %8.1f us  %6.1f TFLOPS\n", n_prod, (long long)m,
           (long long)tot, (long long)k, us, 2.0 * m * tot * k / us * 1e-6);
    for (int i = 0; i < n_prod; i++) cuda_free(g_ctx, dw[i]), cuda_free(g_ctx, dy[i]);
    cuda_free(g_ctx, dx), free(x);
}

/* Device timing of TinyLlama-shape products (only with HEARTH_GEMM_BENCH=1, or =f for the
 * F16 ones alone): the time per cuda_matmul (activation quantization, or the f16
 * conversion, included). */
static void test_gemm_bench(void **state) {
    (void)state;
    NEED_GPU();
    const char *e = getenv("HEARTH_GEMM_BENCH");
    if (!e || (*e != '1' && *e != 'f')) skip();
    const uint32_t types[] = { QT_Q4_0, QT_Q4_K, QT_Q6_K, QT_Q8_0, QT_F16 };
    const int64_t shapes[][3] = { { 512, 2048, 2048 }, { 512, 11264, 2048 }, { 512, 5632, 2048 },
                                  { 512, 2048, 5632 }, { 512, 256, 2048 } };
    const int64_t qkv[3] = { 2048, 256, 256 }, gu[2] = { 5632, 5632 };
    bench_f16_multi(512, 2048, 3, qkv);
    bench_f16_multi(512, 2048, 2, gu);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (*e == 'f' && types[i] != QT_F16) continue;
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            /* timing only: random bytes stand in for the quantized weight */
            size_t rb = quant_row_size(types[i], k);
            uint8_t *wr = malloc(rb * n);
            assert_non_null(wr);
            for (size_t j = 0; j < rb * n; j++) wr[j] = (uint8_t)((j * 2654435761u) >> 13) & 0x3b;
            void *dw = NULL;
            assert_int_equal(cuda_alloc(g_ctx, &dw, rb * n, &g_err), 0);
            assert_int_equal(cuda_upload(g_ctx, dw, wr, rb * n, &g_err), 0);
            cuda_weight w = { types[i], n, k, rb, dw };
            void *dx = NULL, *dy = NULL;
            float *x = malloc(sizeof(float) * m * k);
            assert_non_null(x);
            for (int64_t j = 0; j < m * k; j++) x[j] = frand();
            assert_int_equal(cuda_alloc(g_ctx, &dx, sizeof(float) * m * k, &g_err), 0);
            assert_int_equal(cuda_alloc(g_ctx, &dy, sizeof(float) * m * n, &g_err), 0);
            assert_int_equal(cuda_upload(g_ctx, dx, x, sizeof(float) * m * k, &g_err), 0);
            for (int r = 0; r < 3; r++) assert_int_equal(cuda_matmul(g_ctx, &w, dx, m, dy, n, &g_err), 0);
            assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
            const int iters = 30;
            double t0 = now_s();
            for (int r = 0; r < iters; r++) assert_int_equal(cuda_matmul(g_ctx, &w, dx, m, dy, n, &g_err), 0);
            assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
            double us = (now_s() - t0) / iters * 1e6;
            printf("  bench %-5s m %lld n %5lld k %5lld: %8.1f us  %6.1f TFLOPS\n", quant_traits_of(types[i])->name,
                   (long long)m, (long long)n, (long long)k, us, 2.0 * m * n * k / us * 1e-6);
            cuda_free(g_ctx, dx), cuda_free(g_ctx, dy), cuda_free(g_ctx, dw), free(x), free(wr);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_all_types),
        cmocka_unit_test(test_gemm_float_odd_rows),
        cmocka_unit_test(test_gemm_multi),
        cmocka_unit_test(test_gemm_multi_refuses_mixed),
        cmocka_unit_test(test_gemm_bench),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
