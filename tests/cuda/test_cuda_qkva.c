/* test_cuda_qkva.c — the one-token q/k/v product + RoPE + KV store + decode attention in one
 * launch (cuda_matmul_qkva, cu_qkva.cu) against the kernels it replaces
 * (cuda_matmul_qkvr, then cuda_attention_q8 / cuda_attention), on random weights, caches
 * and activations: Q4_0 / Q8_0 / Q4_K / Q6_K weights and Q4_K q/k with Q6_K v, normal and
 * neox rotation, 1..8 query heads per KV head, head sizes 64 and 128, positions from 0 to
 * the end of the cache, a sliding window and a soft cap. Bitwise equal: q, k, v, both whole
 * caches, the attention output, and the o product that reads the quantized output
 * (cuda_matmul_ex with reuse 1 after the separate kernels, reuse 2 — the second scratch —
 * after the fused one). Also: the shapes cuda_qkva_ok must refuse. Skips without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CUDA_TEST_SEED 0x9E3779B97F4A7C15ull
#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_mvr.h"
#include "quant/quant.h"

enum { N_SEQ = 3, N_CTX = 300 };

typedef struct acase {
    uint32_t tq, tv;
    int64_t E;
    int32_t hd, nh, nkv;
    int neox, quant;
    int32_t pos, window;
    float softcap;
} acase;

static int g_bad;

static void same(const char *what, const void *a, const void *b, size_t bytes) {
    g_bad += dev_differ(what, a, b, bytes, 0);
}

/* Two caches with the same random finite halves. */
static void make_caches(int64_t kvd, cuda_kv kv[2]) {
    size_t rb = (size_t)kvd * 2, bytes = rb * N_SEQ * N_CTX;
    uint16_t *h = malloc(bytes);
    assert_non_null(h);
    for (size_t i = 0; i < bytes / 2; i++) {
        frand();
        h[i] = (uint16_t)((g_rng >> 33) & 0xb7ff); /* exponent <= 13: no overflow in the dots */
    }
    for (int v = 0; v < 2; v++) {
        memset(&kv[v], 0, sizeof kv[v]);
        kv[v].k = dev_from(h, bytes), kv[v].v = dev_from(h, bytes);
        kv[v].type = QT_F16, kv[v].kv_dim = kvd, kv[v].row_bytes = rb, kv[v].n_ctx = N_CTX;
    }
    free(h);
}

static void check_case(const acase *ac) {
    int64_t E = ac->E, dq = (int64_t)ac->nh * ac->hd, kvd = (int64_t)ac->nkv * ac->hd, ld[3] = { dq, kvd, kvd };
    cuda_weight w[3] = { cuda_test_weight(ac->tq, dq, E), cuda_test_weight(ac->tq, kvd, E),
                         cuda_test_weight(ac->tv, kvd, E) };
    cuda_weight wo = cuda_test_weight(QT_Q4_0, 96, dq); /* the o product after the attention */
    float *x = malloc(sizeof(float) * E), *nw = malloc(sizeof(float) * E);
    assert_non_null(x);
    assert_non_null(nw);
    for (int64_t i = 0; i < E; i++) x[i] = frand() * 2.0f, nw[i] = 1.0f + 0.5f * frand();
    float *dxr = dev_from(x, sizeof(float) * E), *dnw = dev_from(nw, sizeof(float) * E);
    float *dx = dev_from(NULL, sizeof(float) * E);
    cuda_kv kv[2];
    make_caches(kvd, kv);
    float *dy[2][3], *dout[2], *dop[2];
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 3; i++) dy[v][i] = dev_from(NULL, sizeof(float) * ld[i]);
        dout[v] = dev_from(NULL, sizeof(float) * dq), dop[v] = dev_from(NULL, sizeof(float) * 96);
    }
    int32_t pos = ac->pos, seq = 1, bucket = 128;
    while (bucket <= pos) bucket *= 2;
    const int32_t *dp, *ds;
    ok(cuda_stage_i32(g_ctx, 0, &pos, 1, &dp, &g_err));
    ok(cuda_stage_i32(g_ctx, 1, &seq, 1, &ds, &g_err));
    cuda_rope r = { ac->neox, ac->hd, 10000.0f, 0.75f, 1.125f, NULL, NULL };
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    float scale = 1.0f / sqrtf((float)ac->hd);
    for (int v = 0; v < 2; v++) {
        cuda_qkvr q = { dp, ds, &r, ac->hd, &kv[v], { CUDA_QKVR_Q, CUDA_QKVR_K, CUDA_QKVR_V }, NULL, 0, NULL, 0.0f };
        cuda_attn a = { &kv[v], dp, ds, 1, ac->nh, ac->nkv, ac->hd, ac->hd, scale, ac->softcap, ac->window,
                        bucket - 1 };
        /* the input quantized by the norm's kernel, as in a decode step */
        ok(cuda_rmsnorm_q8(g_ctx, dxr, E, dx, 1, E, dnw, 1e-5f, &g_err));
        if (v == 0) {
            ok(cuda_matmul_qkvr(g_ctx, 3, ws, dy[0], ld, dx, 1, 1, &q, &g_err));
            if (ac->quant) ok(cuda_attention_q8(g_ctx, &a, dy[0][0], dq, dout[0], dq, &g_err));
            else ok(cuda_attention(g_ctx, &a, dy[0][0], dq, dout[0], dq, &g_err));
        } else {
            assert_true(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a));
            ok(cuda_matmul_qkva(g_ctx, ws, dy[1], dx, 1, &q, &a, dout[1], dq, ac->quant, &g_err));
        }
        if (ac->quant) {
            cuda_mm_opt o = { v == 0 ? 1 : 2, NULL, 0 };
            ok(cuda_matmul_ex(g_ctx, &wo, dout[v], 1, dop[v], 96, &o, &g_err));
        }
    }
    int bad0 = g_bad;
    static const char *names[3] = { "q", "k", "v" };
    for (int i = 0; i < 3; i++) same(names[i], dy[0][i], dy[1][i], sizeof(float) * ld[i]);
    same("K cache", kv[0].k, kv[1].k, kv[0].row_bytes * N_SEQ * N_CTX);
    same("V cache", kv[0].v, kv[1].v, kv[0].row_bytes * N_SEQ * N_CTX);
    same("attention", dout[0], dout[1], sizeof(float) * dq);
    if (ac->quant) same("o product", dop[0], dop[1], sizeof(float) * 96);
    printf("  %-6s/%-6s E %4lld hd %3d heads %2d/%d %s pos %3d window %d softcap %g%s: %s\n", quant_type_name(ac->tq),
           quant_type_name(ac->tv), (long long)E, ac->hd, ac->nh, ac->nkv, ac->neox ? "neox" : "norm", ac->pos,
           ac->window, ac->softcap, ac->quant ? " quant" : "", g_bad == bad0 ? "same bits" : "DIFFERENT");
    for (int i = 0; i < 3; i++) cuda_free(g_ctx, (void *)w[i].data);
    cuda_free(g_ctx, (void *)wo.data);
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 3; i++) cuda_free(g_ctx, dy[v][i]);
        cuda_free(g_ctx, dout[v]), cuda_free(g_ctx, dop[v]), cuda_free(g_ctx, kv[v].k), cuda_free(g_ctx, kv[v].v);
    }
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dxr), cuda_free(g_ctx, dnw);
    free(x), free(nw);
}

static void test_fused_vs_separate(void **state) {
    (void)state;
    NEED_GPU();
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = false; /* the fused kernel has the scalar attention's bits */
    g_bad = 0;
    static const acase cases[] = {
        /* TinyLlama's shape: 32 heads over 4 KV heads of 64 */
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 0, 1, 0, 0, 0.0f },
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 0, 1, 37, 0, 0.0f },
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 0, 1, 127, 0, 0.0f },
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 0, 0, 128, 0, 0.0f },
        { QT_Q8_0, QT_Q8_0, 2048, 64, 32, 4, 0, 1, 99, 0, 0.0f },
        { QT_Q4_K, QT_Q4_K, 2048, 64, 32, 4, 1, 1, 5, 0, 0.0f },
        { QT_Q4_K, QT_Q6_K, 2048, 64, 32, 4, 0, 1, 64, 0, 0.0f },
        { QT_Q6_K, QT_Q6_K, 2048, 64, 32, 4, 1, 1, 100, 0, 0.0f },
        /* other head layouts, a window, a soft cap, the end of the cache */
        { QT_Q4_0, QT_Q4_0, 512, 128, 8, 4, 1, 1, 100, 0, 0.0f },
        { QT_Q4_0, QT_Q4_0, 512, 64, 4, 4, 0, 1, 17, 0, 0.0f },
        { QT_Q8_0, QT_Q8_0, 512, 64, 8, 1, 0, 1, 41, 16, 0.0f },
        { QT_Q4_K, QT_Q4_K, 1024, 64, 8, 2, 1, 0, 299, 0, 30.0f },
        { QT_Q4_0, QT_Q4_0, 256, 32, 4, 2, 0, 1, 3, 0, 0.0f },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    assert_int_equal(g_bad, 0);
}

/* Shapes and calls the fused kernel must not take: two tokens, more than 8 query heads per
 * KV head, a head size that is not a multiple of 32, a type without a kernel, rows over 2048
 * values, an f32 cache, positions past the largest bucket; and the call refuses them too. */
static void test_refused(void **state) {
    (void)state;
    NEED_GPU();
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = false;
    cuda_weight w[3] = { cuda_test_weight(QT_Q4_0, 256, 512), cuda_test_weight(QT_Q4_0, 128, 512),
                         cuda_test_weight(QT_Q4_0, 128, 512) };
    cuda_weight w5 = cuda_test_weight(QT_Q5_0, 128, 512);
    cuda_kv kv = { NULL, NULL, QT_F16, 128, 256, N_CTX };
    kv.k = dev_from(NULL, 256 * N_CTX), kv.v = dev_from(NULL, 256 * N_CTX);
    int32_t zero = 0;
    const int32_t *dp, *ds;
    ok(cuda_stage_i32(g_ctx, 0, &zero, 1, &dp, &g_err));
    ok(cuda_stage_i32(g_ctx, 1, &zero, 1, &ds, &g_err));
    cuda_rope r = { 0, 64, 10000.0f, 1.0f, 1.0f, NULL, NULL };
    cuda_qkvr q = { dp, ds, &r, 64, &kv, { CUDA_QKVR_Q, CUDA_QKVR_K, CUDA_QKVR_V }, NULL, 0, NULL, 0.0f };
    cuda_attn a = { &kv, dp, ds, 1, 4, 2, 64, 64, 0.125f, 0.0f, 0, 127 };
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    assert_true(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a)); /* the base case is taken */
    cuda_attn a2 = a;
    a2.n_tok = 2;
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a2));
    a2 = a, a2.max_pos_host = 1023;
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a2));
    a2 = a, a2.head_dim_v = 32;
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a2));
    cuda_qkvr q2 = q;
    q2.role[2] = CUDA_QKVR_K;
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q2, &a));
    const cuda_weight *ws5[3] = { &w[0], &w[1], &w5 };
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws5, &q, &a));
    cuda_kv kv32 = kv;
    kv32.type = QT_F32;
    cuda_attn a32 = a;
    a32.kv = &kv32;
    assert_false(cuda_qkva_ok(cuda_ctx_knobs(g_ctx), ws, &q, &a32));
    float *dy[3], *dx = dev_from(NULL, sizeof(float) * 512), *dout = dev_from(NULL, sizeof(float) * 256);
    for (int i = 0; i < 3; i++) dy[i] = dev_from(NULL, sizeof(float) * 256);
    hb_err err;
    hb_err_clear(&err);
    assert_int_equal(cuda_matmul_qkva(g_ctx, ws, dy, dx, 0, &q, &a2, dout, 256, 1, &err), HEARTH_E_INTERNAL);
    assert_true(strlen(err.msg) > 0);
    for (int i = 0; i < 3; i++) cuda_free(g_ctx, (void *)w[i].data), cuda_free(g_ctx, dy[i]);
    cuda_free(g_ctx, (void *)w5.data), cuda_free(g_ctx, kv.k), cuda_free(g_ctx, kv.v);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dout);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_vs_separate),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
