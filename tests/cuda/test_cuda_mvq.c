/* test_cuda_mvq.c — the fused decode products of cu_mvq.cu against the separate kernels
 * they replace, bit for bit, on random data, for 1..8 tokens and several weight types:
 *  - cuda_matmul_pro with an RMSNorm == cuda_rmsnorm_q8 then cuda_matmul_multi (outputs,
 *    residual adds, the normalized rows, and the activation scratch a later product reuses);
 *  - cuda_matmul_pro / cuda_matmul without a norm == the same tokens inside a 12-token
 *    product (which quantizes with the separate kernel);
 *  - cuda_matmul_glu (with and without the norm, SiLU and GELU) == norm, gate/up, glu_q8,
 *    and the down product that reuses the quantized GLU output.
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

#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

static int g_bad;

/* Bitwise comparison of n floats of two device arrays (counted in g_bad). */
static void same(const char *what, const void *a_dev, const void *b_dev, int64_t n) {
    g_bad += dev_differ(what, a_dev, b_dev, sizeof(float) * (size_t)n, 1);
}

static const uint32_t k_types[] = { QT_Q4_0, QT_Q4_K, QT_Q6_K, QT_Q8_0, QT_Q5_K, QT_IQ4_NL, QT_Q2_K, QT_IQ4_XS };
#define NTYPES (sizeof k_types / sizeof k_types[0])

/* Norm + three products (the last with a residual add), then a fourth product that reuses
 * the activation scratch: fused == separate. */
static void check_pro_norm(uint32_t type, int64_t K, int64_t T) {
    const int64_t rows[3] = { 100, 36, 44 }, xs = K + 64;
    cuda_weight w[4];
    for (int i = 0; i < 3; i++) w[i] = cuda_test_weight(type, rows[i], K);
    w[3] = cuda_test_weight(type, 20, K);
    float *x = malloc(sizeof(float) * T * xs), *nw = malloc(sizeof(float) * K), *res = malloc(sizeof(float) * T * 44);
    for (int64_t i = 0; i < T * xs; i++) x[i] = frand() * 3.0f;
    for (int64_t i = 0; i < K; i++) nw[i] = 1.0f + frand() * 0.3f;
    for (int64_t i = 0; i < T * 44; i++) res[i] = frand();
    float *dx = dev_from(x, sizeof(float) * T * xs), *dw = dev_from(nw, sizeof(float) * K);
    float *dn[2], *dy[2][4], *dres[2];
    for (int v = 0; v < 2; v++) {
        dn[v] = dev_from(NULL, sizeof(float) * T * K);
        dres[v] = dev_from(res, sizeof(float) * T * 44);
        for (int i = 0; i < 4; i++) dy[v][i] = dev_from(NULL, sizeof(float) * T * (i < 3 ? rows[i] : 20));
    }
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    int64_t ldys[3] = { rows[0], rows[1], rows[2] };
    uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
    for (int v = 0; v < 2; v++) {
        float *ys[3] = { dy[v][0], dy[v][1], dy[v][2] }, *adds[3] = { NULL, NULL, dres[v] };
        if (v == 0) { /* separate kernels */
            ok(cuda_rmsnorm_q8(g_ctx, dx, xs, dn[v], T, K, dw, 1e-5f, &g_err));
            ok(cuda_matmul_multi(g_ctx, 3, ws, ys, ldys, adds, dn[v], T, 1, &g_err));
        } else {
            ok(cuda_matmul_pro(g_ctx, 3, ws, ys, ldys, adds, dx, xs, T, dw, 1e-5f, dn[v], &g_err));
        }
        cuda_mm_opt opt = { 1, NULL, 0 };
        ok(cuda_matmul_ex(g_ctx, &w[3], dn[v], T, dy[v][3], 20, &opt, &g_err));
    }
    int fused = cuda_mvq_fused_launches(g_ctx) > f0;
    int bad0 = g_bad;
    same("norm", dn[0], dn[1], T * K);
    for (int i = 0; i < 4; i++) same("product", dy[0][i], dy[1][i], T * (i < 3 ? rows[i] : 20));
    same("residual", dres[0], dres[1], T * 44);
    printf("  norm+products %-7s K %5lld n_tok %lld: %s%s\n", quant_type_name(type), (long long)K, (long long)T,
           g_bad == bad0 ? "same bits" : "DIFFERENT", fused ? " (fused)" : " (separate kernels)");
    for (int i = 0; i < 4; i++) cuda_free(g_ctx, (void *)w[i].data);
    for (int v = 0; v < 2; v++) {
        cuda_free(g_ctx, dn[v]), cuda_free(g_ctx, dres[v]);
        for (int i = 0; i < 4; i++) cuda_free(g_ctx, dy[v][i]);
    }
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dw);
    free(x), free(nw), free(res);
}

static void test_pro_norm(void **state) {
    (void)state;
    NEED_GPU();
    g_bad = 0;
    uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
    for (size_t i = 0; i < NTYPES; i++)
        for (int64_t t = 1; t <= 8; t++) check_pro_norm(k_types[i], 1024, t);
    assert_true(cuda_mvq_fused_launches(g_ctx) > f0); /* the fused kernels did run */
    check_pro_norm(QT_Q4_0, 2048, 2);
    check_pro_norm(QT_Q4_0, 2048, 7); /* over the default input limit: separate kernels */
    check_pro_norm(QT_Q8_0, 5632, 1);
    assert_int_equal(g_bad, 0);
}

/* Products without a norm: tokens of a small batch (quantized by the products' blocks)
 * == the same tokens inside a 12-token batch (separate quantization kernel). */
static void check_pro_plain(uint32_t type, int64_t K, int64_t T) {
    enum { BIG = 12 };
    const int64_t rows[2] = { 72, 30 };
    cuda_weight w[2] = { cuda_test_weight(type, rows[0], K), cuda_test_weight(type, rows[1], K) };
    float *x = malloc(sizeof(float) * BIG * K);
    for (int64_t i = 0; i < BIG * K; i++) x[i] = frand() * 2.0f;
    float *dx = dev_from(x, sizeof(float) * BIG * K), *big[2], *small[2], *single = dev_from(NULL, sizeof(float) * T * 72);
    for (int i = 0; i < 2; i++) {
        big[i] = dev_from(NULL, sizeof(float) * BIG * rows[i]);
        small[i] = dev_from(NULL, sizeof(float) * T * rows[i]);
        ok(cuda_matmul(g_ctx, &w[i], dx, BIG, big[i], rows[i], &g_err));
    }
    const cuda_weight *ws[2] = { &w[0], &w[1] };
    float *adds[2] = { NULL, NULL };
    int64_t ldys[2] = { rows[0], rows[1] };
    uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
    ok(cuda_matmul_pro(g_ctx, 2, ws, small, ldys, adds, dx, K, T, NULL, 0.0f, NULL, &g_err));
    ok(cuda_matmul(g_ctx, &w[0], dx, T, single, rows[0], &g_err));
    int fused = cuda_mvq_fused_launches(g_ctx) > f0, bad0 = g_bad;
    for (int i = 0; i < 2; i++) same("product", big[i], small[i], T * rows[i]);
    same("single product", big[0], single, T * rows[0]);
    printf("  products %-7s K %5lld n_tok %lld: %s%s\n", quant_type_name(type), (long long)K, (long long)T,
           g_bad == bad0 ? "same bits" : "DIFFERENT", fused ? " (fused)" : " (separate kernels)");
    for (int i = 0; i < 2; i++) cuda_free(g_ctx, (void *)w[i].data), cuda_free(g_ctx, big[i]), cuda_free(g_ctx, small[i]);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, single);
    free(x);
}

static void test_pro_plain(void **state) {
    (void)state;
    NEED_GPU();
    g_bad = 0;
    for (size_t i = 0; i < NTYPES; i++)
        for (int64_t t = 1; t <= 8; t += 3) check_pro_plain(k_types[i], 1024, t);
    check_pro_plain(QT_Q4_0, 5632, 1);
    check_pro_plain(QT_Q6_K, 2048, 3);
    assert_int_equal(g_bad, 0);
}

/* gate/up + GLU (+ the norm before), then the down product reusing the quantized GLU
 * output: fused == separate. */
static void check_glu(uint32_t type, int64_t K, int64_t F, int64_t T, int gelu, int norm, int swap) {
    const int64_t xs = norm ? K + 32 : K, E2 = 24;
    cuda_weight wg = cuda_test_weight(type, F, K), wu = cuda_test_weight(type, F, K), wd = cuda_test_weight(QT_Q8_0, E2, F);
    float *x = malloc(sizeof(float) * T * xs), *nw = malloc(sizeof(float) * K);
    for (int64_t i = 0; i < T * xs; i++) x[i] = frand() * 2.5f;
    for (int64_t i = 0; i < K; i++) nw[i] = 1.0f + frand() * 0.3f;
    float *dx = dev_from(x, sizeof(float) * T * xs), *dw = dev_from(nw, sizeof(float) * K);
    float *dn[2], *dg[2], *du[2], *dout[2], *dd[2];
    uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
    for (int v = 0; v < 2; v++) {
        dn[v] = dev_from(NULL, sizeof(float) * T * K);
        dg[v] = dev_from(NULL, sizeof(float) * T * F);
        du[v] = dev_from(NULL, sizeof(float) * T * F);
        dout[v] = dev_from(NULL, sizeof(float) * T * F);
        dd[v] = dev_from(NULL, sizeof(float) * T * E2);
        const cuda_weight *pg = swap ? &wu : &wg, *pu = swap ? &wg : &wu; /* swap: other weight order */
        float *in = norm ? dn[v] : dx;
        if (v == 0) {
            const cuda_weight *ws[2] = { pg, pu };
            float *ys[2] = { dg[v], du[v] }, *adds[2] = { NULL, NULL };
            int64_t ldys[2] = { F, F };
            if (norm) ok(cuda_rmsnorm_q8(g_ctx, dx, xs, dn[v], T, K, dw, 1e-5f, &g_err));
            ok(cuda_matmul_multi(g_ctx, 2, ws, ys, ldys, adds, in, T, norm, &g_err));
            ok(cuda_glu_q8(g_ctx, gelu, dg[v], F, du[v], F, dout[v], T, F, &g_err));
        } else {
            ok(cuda_matmul_glu(g_ctx, pg, pu, dg[v], F, du[v], F, dout[v], gelu, dx, xs, T, norm ? dw : NULL, 1e-5f,
                               norm ? dn[v] : NULL, &g_err));
        }
        cuda_mm_opt opt = { 1, NULL, 0 };
        ok(cuda_matmul_ex(g_ctx, &wd, dout[v], T, dd[v], E2, &opt, &g_err));
    }
    int fused = cuda_mvq_fused_launches(g_ctx) > f0, bad0 = g_bad;
    if (norm) same("norm", dn[0], dn[1], T * K);
    same("gate", dg[0], dg[1], T * F);
    same("up", du[0], du[1], T * F);
    same("glu", dout[0], dout[1], T * F);
    same("down", dd[0], dd[1], T * E2);
    printf("  gate/up+glu %-7s K %5lld F %4lld n_tok %lld %s%s: %s%s\n", quant_type_name(type), (long long)K,
           (long long)F, (long long)T, gelu ? "gelu" : "silu", norm ? " +norm" : "",
           g_bad == bad0 ? "same bits" : "DIFFERENT", fused ? " (fused)" : " (separate kernels)");
    for (int v = 0; v < 2; v++)
        cuda_free(g_ctx, dn[v]), cuda_free(g_ctx, dg[v]), cuda_free(g_ctx, du[v]), cuda_free(g_ctx, dout[v]),
            cuda_free(g_ctx, dd[v]);
    cuda_free(g_ctx, (void *)wg.data), cuda_free(g_ctx, (void *)wu.data), cuda_free(g_ctx, (void *)wd.data);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dw);
    free(x), free(nw);
}

static void test_glu(void **state) {
    (void)state;
    NEED_GPU();
    g_bad = 0;
    uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
    for (size_t i = 0; i < NTYPES; i++)
        for (int64_t t = 1; t <= 8; t++) check_glu(k_types[i], 1024, 96, t, (int)(t % 2), t != 3, 0);
    assert_true(cuda_mvq_fused_launches(g_ctx) > f0);
    check_glu(QT_Q8_0, 2048, 64, 1, 0, 1, 0); /* long rows: two staging passes */
    check_glu(QT_Q6_K, 2048, 64, 8, 1, 1, 1);
    check_glu(QT_Q4_0, 2048, 128, 5, 0, 1, 1);
    assert_int_equal(g_bad, 0);
}

int main(void) {
    setenv("HEARTH_CUDA_PQ", "1", 1); /* the prologue products are opt-in */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pro_norm),
        cmocka_unit_test(test_pro_plain),
        cmocka_unit_test(test_glu),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
