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

#define CUDA_TEST_SEED 0x9E3779B97F4A7C15ull
#include "cuda/cuda_test.h"

#include "backend/cuda/be_cuda.h"
#include "backend/cuda/cuda.h"
#include "quant/quant.h"

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
     * activations like the reference (on the tensor cores too) */
    double bound = tr->blck_size > 1 ? 2.0 * e_ref + 1e-5 : (n_tok >= 17 && type != QT_F32 ? 2e-3 : 1e-5);
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
        check_matmul(k_types[i], 21, 5632, 2);  /* ffn_down rows: partial last 32-chunk group */
        check_matmul(k_types[i], 9, 12288, 1);  /* rows longer than one staging pass */
    }
    /* rows of an odd number of 32-element blocks: only 2-byte aligned for Q4_0/IQ4_NL */
    const uint32_t small[] = { QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q8_0, QT_IQ4_NL };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) check_matmul(small[i], 13, 544, 3);
}

/* One token over more rows than the single-token kernel takes (an output matrix): the
 * streaming kernel (MVS_KERNEL) must agree with the reference like every kernel, and give
 * the same bits as the kernel that takes the first rows alone (the two share the per-row
 * arithmetic; decode of one sequence and of a batch rely on that). */
static void check_many_rows(uint32_t type, int64_t rows, int64_t cols) {
    const quant_traits *tr = quant_traits_of(type);
    size_t rb = quant_row_size(type, cols);
    const int64_t few = 300;
    float *wf = malloc(sizeof(float) * cols), *x = malloc(sizeof(float) * cols);
    float *y = malloc(sizeof(float) * rows), *y1 = malloc(sizeof(float) * few);
    uint8_t *wq = malloc(rb * rows), *xq = malloc(quant_row_size(tr->vec_dot_type, cols));
    assert_non_null(wf), assert_non_null(x), assert_non_null(y), assert_non_null(y1), assert_non_null(wq);
    assert_non_null(xq);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < cols; k++) wf[k] = frand() * (1.0f + (float)((r + k) % 5) * 0.25f);
        assert_true(quant_quantize_row(type, wf, wq + r * rb, cols));
    }
    for (int64_t k = 0; k < cols; k++) x[k] = frand();
    assert_true(quant_quantize_row(tr->vec_dot_type, x, xq, cols));
    void *dw = dev_from(wq, rb * rows), *dx = dev_from(x, sizeof(float) * cols);
    float *dy = dev_from(NULL, sizeof(float) * rows), *dy1 = dev_from(NULL, sizeof(float) * few);
    cuda_weight w = { type, rows, cols, rb, dw }, w1 = { type, few, cols, rb, dw };
    int rc = cuda_matmul(g_ctx, &w, dx, 1, dy, rows, &g_err);
    if (!rc) rc = cuda_matmul(g_ctx, &w1, dx, 1, dy1, few, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    to_host(y, dy, sizeof(float) * rows);
    to_host(y1, dy1, sizeof(float) * few);
    /* every row against the exact product, as close as the reference's own quantized-
     * activation dot product is (check_matmul's bound), and the first rows bit for bit
     * against the other kernel */
    double se = 0, sq = 0, sr = 0;
    int64_t nans = 0;
    for (int64_t r = 0; r < rows; r++) {
        assert_true(quant_dequantize_row(type, wq + r * rb, wf, cols));
        double exact = 0;
        for (int64_t k = 0; k < cols; k++) exact += (double)wf[k] * x[k];
        double refq = quant_vec_dot(type, wq + r * rb, xq, cols);
        nans += isnan(y[r]);
        se += (y[r] - exact) * (y[r] - exact), sq += (refq - exact) * (refq - exact), sr += exact * exact;
    }
    int64_t differ = 0;
    for (int64_t r = 0; r < few; r++) differ += memcmp(&y[r], &y1[r], sizeof(float)) != 0;
    double e_gpu = sqrt(se / sr), e_ref = sqrt(sq / sr);
    printf("  %-7s %6lld x %5lld  one token: nrmse %.2e (reference %.2e), %lld of the first %lld rows differ\n",
           tr->name, (long long)rows, (long long)cols, e_gpu, e_ref, (long long)differ, (long long)few);
    assert_int_equal(nans, 0);
    assert_true(e_gpu <= 2.0 * e_ref + 1e-5);
    assert_int_equal(differ, 0);
    cuda_free(g_ctx, dw), cuda_free(g_ctx, dx), cuda_free(g_ctx, dy), cuda_free(g_ctx, dy1);
    free(wf), free(x), free(y), free(y1), free(wq), free(xq);
}

/* 2..8 tokens of quantized rows (the int8 tensor-core kernel, cu_mmt.cu, for Q4_0/Q8_0 rows
 * of <= 64 chunks; else the persistent batch kernel, MVT_KERNEL): bit for bit each token
 * alone (the single-token kernels), the generic batch kernel (HEARTH_CUDA_MVT=0) and
 * MVT_KERNEL with the tensor-core kernel off, for one weight and for three over the same
 * input (row counts that leave partial 16-row tiles); and the expected kernel ran. */
/* Whether cu_mmt.cu takes these nw weights (its conditions, restated): Q4_0/Q8_0/Q4_K rows
 * of 16-byte multiples, Q6_K rows of any size (its copies are 16-byte granules) when every
 * weight's base and end are 16-byte aligned; at most 192 chunks, a multiple of 8. */
static bool mma_takes(uint32_t type, const cuda_weight *w, int nw, int64_t cols) {
    bool ok = (type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q6_K) && cols <= 6144 &&
              (cols / 32) % 8 == 0 && (type == QT_Q6_K || w[0].row_bytes % 16 == 0);
    for (int i = 0; i < nw && ok; i++)
        ok = (uintptr_t)w[i].data % 16 == 0 && ((size_t)w[i].n_rows * w[i].row_bytes) % 16 == 0;
    return ok;
}

static void check_batch_q(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok) {
    size_t rb = quant_row_size(type, cols);
    int64_t rr[3] = { rows, rows / 3 + 1, 7 }, all = rr[0] + rr[1] + rr[2];
    float *wf = malloc(sizeof(float) * cols), *x = malloc(sizeof(float) * n_tok * cols);
    float *yb = malloc(sizeof(float) * n_tok * all), *y1 = malloc(sizeof(float) * n_tok * all);
    float *yg = malloc(sizeof(float) * n_tok * all), *ym = malloc(sizeof(float) * n_tok * all);
    uint8_t *wq = malloc(rb * all);
    assert_true(wf && x && yb && y1 && yg && ym && wq);
    for (int64_t r = 0; r < all; r++) {
        for (int64_t k = 0; k < cols; k++) wf[k] = frand() * (1.0f + (float)((r + k) % 5) * 0.25f);
        assert_true(quant_quantize_row(type, wf, wq + r * rb, cols));
    }
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * 2.0f;
    uint8_t *dw = dev_from(wq, rb * all);
    float *dx = dev_from(x, sizeof(float) * n_tok * cols), *dy = dev_from(NULL, sizeof(float) * n_tok * all);
    cuda_weight w[3];
    for (int i = 0, r0 = 0; i < 3; r0 += (int)rr[i], i++) w[i] = (cuda_weight){ type, rr[i], cols, rb, dw + r0 * rb };
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    cuda_knobs *k = cuda_ctx_knobs_edit(g_ctx), keep = *k;
    for (int multi = 0; multi < 2; multi++) {
        int nw = multi ? 3 : 1;
        /* outputs of weight i at dy + i-th block of n_tok * rr rows, rows rr[i] apart */
        float *ys[3];
        int64_t ldys[3];
        float *adds[3] = { NULL, NULL, NULL };
        for (int i = 0, off = 0; i < 3; off += (int)(n_tok * rr[i]), i++) ys[i] = dy + off, ldys[i] = rr[i];
        bool mma = mma_takes(type, w, nw, cols);
        for (int pass = 0; pass < 4; pass++) { /* batch, generic kernel, alone, MVT without mma */
            k->mvt = pass != 1; /* 1: every type that has the kernel */
            k->mmt = pass != 3, k->mmt_min = 2; /* every batch size through it */
            uint64_t l0 = cuda_mvt_launches(g_ctx), m0 = cuda_mmt_launches(g_ctx);
            for (int64_t t = 0; t < n_tok; t += pass == 2 ? 1 : n_tok) {
                int64_t nt = pass == 2 ? 1 : n_tok;
                float *yt[3] = { ys[0] + t * ldys[0], ys[1] + t * ldys[1], ys[2] + t * ldys[2] };
                int rc = multi ? cuda_matmul_multi(g_ctx, nw, ws, yt, ldys, adds, dx + t * cols, nt, 0, &g_err)
                               : cuda_matmul(g_ctx, &w[0], dx + t * cols, nt, yt[0], ldys[0], &g_err);
                if (rc) fprintf(stderr, "%s\n", g_err.msg);
                assert_int_equal(rc, 0);
            }
            if (pass == 0) assert_true(mma ? cuda_mmt_launches(g_ctx) == m0 + 1 : cuda_mvt_launches(g_ctx) == l0 + 1);
            if (pass == 3) assert_true(cuda_mvt_launches(g_ctx) == l0 + 1);
            to_host(pass == 0 ? yb : pass == 1 ? yg : pass == 2 ? y1 : ym, dy, sizeof(float) * n_tok * all);
        }
        int64_t n = multi ? n_tok * all : n_tok * rows;
        assert_memory_equal(yb, y1, sizeof(float) * n);
        assert_memory_equal(yb, yg, sizeof(float) * n);
        assert_memory_equal(yb, ym, sizeof(float) * n);
        printf("  %-7s %5lld x %5lld  %lld tokens%s: %s == alone == generic == MVT\n", quant_type_name(type),
               (long long)rows, (long long)cols, (long long)n_tok, multi ? ", three weights" : "",
               mma ? "int8 mma" : "batch kernel");
    }
    *k = keep;
    cuda_free(g_ctx, dw), cuda_free(g_ctx, dx), cuda_free(g_ctx, dy);
    free(wf), free(x), free(yb), free(y1), free(yg), free(ym), free(wq);
}

static void test_matmul_batch_kernel(void **state) {
    (void)state;
    NEED_GPU();
    const uint32_t types[] = { QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K };
    const int64_t toks[] = { 8, 5, 2, 3 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) {
            check_batch_q(types[i], 700, 2048, toks[t]);
            check_batch_q(types[i], 259, 5632, toks[t]); /* two tokens a block, partial chunk groups */
            check_batch_q(types[i], 64, 1536, toks[t]);  /* 48 chunks: classes with one chunk */
            check_batch_q(types[i], 40, 4096, toks[t]);  /* two 64-chunk segments per row tile */
        }
    for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) /* Q6_K rows not 16-byte aligned (4620 bytes) */
        check_batch_q(QT_Q6_K, 256, 5632, toks[t]);
}

static void test_matmul_many_rows(void **state) {
    (void)state;
    NEED_GPU();
    const uint32_t types[] = { QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_Q5_0 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        check_many_rows(types[i], 16411, 2048); /* rows not a multiple of the grid's warps */
        check_many_rows(types[i], 16500, 3072); /* the four-chunk instance */
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

/* ---- the other ops, against plain C written here ------------------------------------------ */

static void test_rmsnorm_rope_glu(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 3, H = 4, D = 64, N = H * D };
    float x[T * N], w[N], y[T * N], want[T * N];
    for (int i = 0; i < T * N; i++) x[i] = frand() * 3.0f;
    for (int i = 0; i < N; i++) w[i] = 1.0f + frand() * 0.5f;
    float *dx = dev_from(x, sizeof x), *dw = dev_from(w, sizeof w), *dy = dev_from(NULL, sizeof y);
    assert_int_equal(cuda_rmsnorm(g_ctx, dx, N, dy, N, T, N, dw, 1e-5f, &g_err), 0);
    to_host(y, dy, sizeof y);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < N; i++) ss += (double)x[t * N + i] * x[t * N + i];
        double k = 1.0 / sqrt(ss / N + 1e-5);
        for (int i = 0; i < N; i++) assert_float_equal(y[t * N + i], x[t * N + i] * k * w[i], 1e-4);
    }
    /* RoPE, both styles, with factors and a partial rotation (n_rot < head_dim) */
    int32_t pos[T] = { 0, 7, 1234 };
    float factors[D / 4];
    for (int i = 0; i < D / 4; i++) factors[i] = 1.0f + 0.1f * i;
    const int32_t *dpos = NULL;
    assert_int_equal(cuda_stage_i32(g_ctx, 0, pos, T, &dpos, &g_err), 0);
    float *df = dev_from(factors, sizeof factors);
    for (int neox = 0; neox < 2; neox++) {
        cuda_rope r = { neox, D / 2, 10000.0f, 0.5f, 1.25f, neox ? df : NULL, NULL };
        assert_int_equal(cuda_upload(g_ctx, dy, x, sizeof x, &g_err), 0);
        assert_int_equal(cuda_rope_apply(g_ctx, dy, T, N, H, D, dpos, &r, &g_err), 0);
        to_host(y, dy, sizeof y);
        memcpy(want, x, sizeof x);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < D / 4; i++) {
                    double th = pos[t] * 0.5 * pow(10000.0, -2.0 * i / (D / 2)) / (neox ? factors[i] : 1.0);
                    int a = neox ? i : 2 * i, b = neox ? i + D / 4 : 2 * i + 1;
                    float *v = want + t * N + h * D;
                    float c = (float)(cos(th) * 1.25), s = (float)(sin(th) * 1.25), x0 = v[a], x1 = v[b];
                    v[a] = x0 * c - x1 * s;
                    v[b] = x0 * s + x1 * c;
                }
        for (int i = 0; i < T * N; i++) assert_float_equal(y[i], want[i], 1e-4);
    }
    /* GLU (SiLU and GELU) and the element-wise ops */
    for (int gelu = 0; gelu < 2; gelu++) {
        assert_int_equal(cuda_glu(g_ctx, gelu, dx, N, dx + N / 2, N, dy, N / 2, T, N / 2, &g_err), 0);
        to_host(y, dy, sizeof(float) * T * N / 2);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N / 2; i++) {
                float g = x[t * N + i], u = x[t * N + N / 2 + i];
                float a = gelu ? 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)))
                               : g / (1.0f + expf(-g));
                assert_float_equal(y[t * N / 2 + i], a * u, 1e-4);
            }
    }
    assert_int_equal(cuda_copy_rows(g_ctx, dx, N, dy, N, T, N, dw, &g_err), 0);
    assert_int_equal(cuda_add(g_ctx, dy, dx, T * N, &g_err), 0);
    assert_int_equal(cuda_scale(g_ctx, dy, T * N, 0.5f, &g_err), 0);
    assert_int_equal(cuda_softcap(g_ctx, dy, T * N, 3.0f, &g_err), 0);
    to_host(y, dy, sizeof y);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            float v = (x[t * N + i] + w[i] + x[t * N + i]) * 0.5f;
            assert_float_equal(y[t * N + i], 3.0f * tanhf(v / 3.0f), 1e-5);
        }
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dw), cuda_free(g_ctx, dy), cuda_free(g_ctx, df);
}

/* Attention over a cache filled by cuda_kv_store: 2 sequences, GQA, sliding window and
 * softcap, a context long enough to need several splits. */
static void check_attention(uint32_t kv_type, int32_t window, float softcap) {
    enum { HKV = 2, G = 4, HQ = HKV * G, D = 64, CTX = 700, S = 2 };
    const int64_t kvd = HKV * D;
    size_t rb = quant_row_size(kv_type, kvd);
    float *kall = malloc(sizeof(float) * S * CTX * kvd), *vall = malloc(sizeof(float) * S * CTX * kvd);
    float *kst = malloc(sizeof(float) * S * CTX * kvd), *vst = malloc(sizeof(float) * S * CTX * kvd);
    uint8_t *tmp = malloc(rb);
    for (int64_t i = 0; i < S * CTX * kvd; i++) kall[i] = frand(), vall[i] = frand();
    /* the values as the cache stores them */
    for (int64_t r = 0; r < S * CTX; r++) {
        quant_quantize_row(kv_type, kall + r * kvd, tmp, kvd);
        quant_dequantize_row(kv_type, tmp, kst + r * kvd, kvd);
        quant_quantize_row(kv_type, vall + r * kvd, tmp, kvd);
        quant_dequantize_row(kv_type, tmp, vst + r * kvd, kvd);
    }
    cuda_kv kv = { dev_from(NULL, rb * S * CTX), dev_from(NULL, rb * S * CTX), kv_type, kvd, rb, CTX };
    /* store every cell: tokens (seq s, pos p) in batches of up to 512 */
    int32_t *pos = malloc(sizeof(int32_t) * S * CTX), *seq = malloc(sizeof(int32_t) * S * CTX);
    for (int s = 0; s < S; s++)
        for (int p = 0; p < CTX; p++) pos[s * CTX + p] = p, seq[s * CTX + p] = s;
    float *dk = dev_from(kall, sizeof(float) * S * CTX * kvd), *dv = dev_from(vall, sizeof(float) * S * CTX * kvd);
    for (int64_t t0 = 0; t0 < S * CTX; t0 += 512) {
        int64_t n = S * CTX - t0 < 512 ? S * CTX - t0 : 512;
        const int32_t *dp, *ds;
        assert_int_equal(cuda_stage_i32(g_ctx, 0, pos + t0, n, &dp, &g_err), 0);
        assert_int_equal(cuda_stage_i32(g_ctx, 1, seq + t0, n, &ds, &g_err), 0);
        assert_int_equal(cuda_kv_store(g_ctx, &kv, dk + t0 * kvd, kvd, dv + t0 * kvd, kvd, n, dp, ds, &g_err), 0);
    }
    /* queries: 3 tokens of different sequences and positions */
    enum { T = 3 };
    int32_t qpos[T] = { 699, 5, 300 }, qseq[T] = { 0, 1, 1 };
    float q[T * HQ * D], out[T * HQ * D];
    for (int i = 0; i < T * HQ * D; i++) q[i] = frand();
    float *dq = dev_from(q, sizeof q), *dout = dev_from(NULL, sizeof out);
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 2, qpos, T, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 3, qseq, T, &ds, &g_err), 0);
    cuda_attn a = { &kv, dp, ds, T, HQ, HKV, D, D, 0.125f, softcap, window, 699 };
    assert_int_equal(cuda_attention(g_ctx, &a, dq, HQ * D, dout, HQ * D, &g_err), 0);
    to_host(out, dout, sizeof out);
    attn_shape sh = { T, HQ, HKV, D, CTX, window, softcap };
    double e = attn_ref_nrmse(&sh, q, out, kst, vst, qpos, qseq);
    printf("  attention kv %s window %d softcap %.0f: nrmse %.2e\n", quant_type_name(kv_type), window, softcap, e);
    assert_true(e < 1e-4);
    cuda_free(g_ctx, kv.k), cuda_free(g_ctx, kv.v), cuda_free(g_ctx, dk), cuda_free(g_ctx, dv);
    cuda_free(g_ctx, dq), cuda_free(g_ctx, dout);
    free(kall), free(vall), free(kst), free(vst), free(tmp), free(pos), free(seq);
}

static void test_attention(void **state) {
    (void)state;
    NEED_GPU();
    check_attention(QT_F16, 0, 0.0f);
    check_attention(QT_F32, 0, 0.0f);
    check_attention(QT_Q8_0, 0, 0.0f);
    check_attention(QT_F16, 8, 0.0f);
    check_attention(QT_F16, 300, 30.0f);
}

/* The fused paths the backend uses for a decode step give the unfused results: one launch
 * for three weights == three launches (bitwise), norm/GLU + quantize then reuse == the
 * separate ops (up to the rounding of the norm's sum). */
/* One token of w (64 rows) over dx with the residual add into a copy of res: the residual
 * read before the PDL wait (cuda_mm_opt.add_early) gives the same bits as the add at the
 * end, in the product and in the residual. dy: two device buffers of 64+ floats. */
static void check_early_add(const cuda_weight *w, const float *dx, int reuse, const float *res, float *const *dy) {
    float *dr[2], y[2][64], r[2][64];
    for (int e = 0; e < 2; e++) {
        dr[e] = dev_from(res, sizeof(float) * 64);
        cuda_mm_opt o = { reuse, dr[e], e };
        assert_int_equal(cuda_matmul_ex(g_ctx, w, dx, 1, dy[e], 64, &o, &g_err), 0);
        to_host(y[e], dy[e], sizeof y[e]), to_host(r[e], dr[e], sizeof r[e]);
        cuda_free(g_ctx, dr[e]);
    }
    assert_memory_equal(y[0], y[1], sizeof y[0]);
    assert_memory_equal(r[0], r[1], sizeof r[0]);
}

static void test_fused_paths(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 3, K = 512 };
    const int64_t rows[3] = { 64, 16, 40 };
    uint32_t type = QT_Q4_K;
    size_t rb = quant_row_size(type, K);
    cuda_weight w[3];
    float *wf = malloc(sizeof(float) * 64 * K), x[T * K], y1[3][T * 64], y2[3][T * 64], nw[K];
    uint8_t *wq = malloc(rb * 64);
    for (int i = 0; i < 3; i++) {
        for (int64_t j = 0; j < rows[i] * K; j++) wf[j] = frand();
        for (int64_t r = 0; r < rows[i]; r++) quant_quantize_row(type, wf + r * K, wq + r * rb, K);
        w[i] = (cuda_weight){ type, rows[i], K, rb, dev_from(wq, rb * rows[i]) };
    }
    for (int i = 0; i < T * K; i++) x[i] = frand() * 3.0f;
    for (int i = 0; i < K; i++) nw[i] = 1.0f + frand() * 0.2f;
    float *dx = dev_from(x, sizeof x), *dn = dev_from(NULL, sizeof x), *dw = dev_from(nw, sizeof nw);
    float *dy[3];
    for (int i = 0; i < 3; i++) dy[i] = dev_from(NULL, sizeof y1[0]);
    /* reference: plain norm, then three separate products */
    assert_int_equal(cuda_rmsnorm(g_ctx, dx, K, dn, K, T, K, dw, 1e-5f, &g_err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cuda_matmul(g_ctx, &w[i], dn, T, dy[i], rows[i], &g_err), 0);
        to_host(y1[i], dy[i], sizeof(float) * T * rows[i]);
    }
    /* fused: norm+quantize, then one launch for all three */
    assert_int_equal(cuda_rmsnorm_q8(g_ctx, dx, K, dn, T, K, dw, 1e-5f, &g_err), 0);
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    float *ys[3] = { dy[0], dy[1], dy[2] }, *adds[3] = { NULL, NULL, NULL };
    int64_t ldys[3] = { rows[0], rows[1], rows[2] };
    assert_int_equal(cuda_matmul_multi(g_ctx, 3, ws, ys, ldys, adds, dn, T, 1, &g_err), 0);
    double se = 0, sr = 0;
    for (int i = 0; i < 3; i++) {
        to_host(y2[i], dy[i], sizeof(float) * T * rows[i]);
        for (int64_t j = 0; j < T * rows[i]; j++) se += (y2[i][j] - y1[i][j]) * (y2[i][j] - y1[i][j]), sr += y1[i][j] * y1[i][j];
    }
    printf("  fused norm+quantize+3 products: nrmse %.2e\n", sqrt(se / sr));
    assert_true(sqrt(se / sr) < 1e-3);
    /* the multi launch alone is exact: same activations, same per-row arithmetic */
    assert_int_equal(cuda_matmul_multi(g_ctx, 2, ws + 1, ys + 1, ldys + 1, adds, dn, T, 0, &g_err), 0);
    for (int i = 1; i < 3; i++) {
        float sep[T * 64];
        to_host(y2[i], dy[i], sizeof(float) * T * rows[i]);
        assert_int_equal(cuda_matmul(g_ctx, &w[i], dn, T, dy[i], rows[i], &g_err), 0);
        to_host(sep, dy[i], sizeof(float) * T * rows[i]);
        assert_memory_equal(sep, y2[i], sizeof(float) * T * rows[i]);
    }
    /* float weights: one launch == separate launches, bitwise */
    {
        size_t fb = quant_row_size(QT_F16, K);
        uint8_t *fh = malloc(fb * 64);
        for (int64_t r = 0; r < 64; r++) quant_quantize_row(QT_F16, wf + r * K, fh + r * fb, K);
        cuda_weight f1 = { QT_F16, 64, K, fb, dev_from(fh, fb * 64) }, f2 = { QT_F16, 40, K, fb, f1.data };
        const cuda_weight *fw[2] = { &f1, &f2 };
        float *fy[2] = { dy[0], dy[1] };
        int64_t fl[2] = { 64, 40 };
        float a1[T * 64], a2[T * 64];
        assert_int_equal(cuda_matmul_multi(g_ctx, 2, fw, fy, fl, adds, dx, T, 0, &g_err), 0);
        for (int i = 0; i < 2; i++) {
            to_host(a1, fy[i], sizeof(float) * T * fl[i]);
            assert_int_equal(cuda_matmul(g_ctx, fw[i], dx, T, fy[i], fl[i], &g_err), 0);
            to_host(a2, fy[i], sizeof(float) * T * fl[i]);
            assert_memory_equal(a1, a2, sizeof(float) * T * fl[i]);
        }
        check_early_add(&f1, dx, 0, x, fy);
        cuda_free(g_ctx, (void *)f1.data);
        free(fh);
    }
    /* GLU + quantize, reused by the next product, with the residual add fused */
    float *dg = dev_from(NULL, sizeof(float) * T * K), *dr = dev_from(x, sizeof x), r1[T * 64], r2[T * 64];
    cuda_weight wsq = { type, 64, K, rb, w[0].data };
    assert_int_equal(cuda_glu(g_ctx, 0, dx, K, dn, K, dg, K, T, K, &g_err), 0);
    assert_int_equal(cuda_matmul(g_ctx, &wsq, dg, T, dy[0], 64, &g_err), 0);
    to_host(r1, dy[0], sizeof r1);
    assert_int_equal(cuda_glu_q8(g_ctx, 0, dx, K, dn, K, dg, T, K, &g_err), 0);
    cuda_mm_opt opt = { 1, dr, 0 };
    assert_int_equal(cuda_matmul_ex(g_ctx, &wsq, dg, T, dy[0], 64, &opt, &g_err), 0);
    to_host(r2, dy[0], sizeof r2);
    assert_memory_equal(r1, r2, sizeof r1);
    float res[T * 64];
    to_host(res, dr, sizeof res);
    for (int i = 0; i < T * 64; i++) assert_float_equal(res[i], x[i] + r1[i], 1e-5 * (1 + fabsf(x[i])));
    check_early_add(&wsq, dg, 1, x, dy);
    for (int i = 0; i < 3; i++) cuda_free(g_ctx, (void *)w[i].data), cuda_free(g_ctx, dy[i]);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dn), cuda_free(g_ctx, dw), cuda_free(g_ctx, dg), cuda_free(g_ctx, dr);
    free(wf), free(wq);
}

/* be_ops.host_alloc (the engine's logits rows): page-locked blocks up to 1M floats, four at
 * a time, declined (NULL, the engine then uses malloc) beyond; a read lands in them. */
static void test_host_alloc(void **state) {
    (void)state;
    NEED_GPU();
    be_ctx *b = NULL;
    hb_err err;
    hb_err_clear(&err);
    assert_int_equal(be_cuda_new(-1, &b, &err), 0);
    assert_null(b->ops->host_alloc(b, ((size_t)1 << 20) * sizeof(float) + 4)); /* too large */
    assert_null(b->ops->host_alloc(b, 0));
    float *p[5];
    for (int i = 0; i < 4; i++) assert_non_null(p[i] = b->ops->host_alloc(b, 4096 * sizeof(float)));
    assert_null(b->ops->host_alloc(b, 64)); /* the slots are taken */
    b->ops->host_free(b, p[1]);
    assert_non_null(p[4] = b->ops->host_alloc(b, 64 * sizeof(float)));
    be_buf buf;
    assert_int_equal(b->ops->buf_alloc(b, &buf, 64, &err), 0);
    float ones[64], got[64];
    for (int i = 0; i < 64; i++) ones[i] = 1.0f + (float)i;
    assert_int_equal(cuda_upload(g_ctx, buf.p, ones, sizeof ones, &g_err), 0); /* same device */
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    b->ops->read(b, &buf, 8, p[4], 56); /* straight into the pinned block */
    memcpy(got, p[4], sizeof(float) * 56);
    assert_memory_equal(got, ones + 8, sizeof(float) * 56);
    b->ops->host_free(b, NULL);
    b->ops->buf_free(b, &buf);
    for (int i = 0; i < 5; i++)
        if (i != 1) b->ops->host_free(b, p[i]);
    be_cuda_free(b);
}

static void test_bad_device_is_an_error(void **state) {
    (void)state;
    cuda_dev_info info;
    hb_err err = { 0, "" };
    /* no machine has 1000 GPUs: a clear error, never a crash */
    assert_int_equal(cuda_probe(1000, &info, &err), HEARTH_E_UNSUPPORTED);
    assert_true(strlen(err.msg) > 0);
}

/* The op-timing events (HEARTH_CUDA_PROFILE): indices out of range and events never
 * recorded are errors with a message; recorded ones give a time >= 0. */
static void test_prof_events(void **state) {
    (void)state;
    NEED_GPU();
    float ms = -1.0f;
    assert_int_equal(cuda_prof_mark(g_ctx, -1, &g_err), HEARTH_E_INTERNAL);
    assert_int_equal(cuda_prof_mark(g_ctx, CUDA_PROF_EVENTS, &g_err), HEARTH_E_INTERNAL);
    assert_true(strlen(g_err.msg) > 0);
    assert_int_equal(cuda_prof_ms(g_ctx, CUDA_PROF_EVENTS - 2, CUDA_PROF_EVENTS - 1, &ms, &g_err), HEARTH_E_INTERNAL);
    assert_true(ms == 0.0f);
    assert_int_equal(cuda_prof_ms(g_ctx, 0, CUDA_PROF_EVENTS, &ms, &g_err), HEARTH_E_INTERNAL);
    assert_int_equal(cuda_prof_mark(g_ctx, 0, &g_err), 0);
    assert_int_equal(cuda_prof_mark(g_ctx, 1, &g_err), 0);
    assert_int_equal(cuda_prof_ms(g_ctx, 0, 1, &ms, &g_err), 0);
    assert_true(ms >= 0.0f);
    hb_err_clear(&g_err);
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
        cmocka_unit_test(test_matmul_many_rows),
        cmocka_unit_test(test_matmul_batch_kernel),
        cmocka_unit_test(test_prof_events),
        cmocka_unit_test(test_matmul_float_odd_rows),
        cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_rmsnorm_rope_glu),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_fused_paths),
        cmocka_unit_test(test_host_alloc),
        cmocka_unit_test(test_bandwidth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
