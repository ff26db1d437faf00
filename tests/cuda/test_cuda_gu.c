/* test_cuda_gu.c — the decode gate/up + GLU kernel (cuda_matmul_glu, cu_mvq.cu) at the
 * row sizes of real models (2048 columns: Q4_0/Q4_K 1152-byte rows, Q5_K 1408, Q6_K 1680,
 * Q8_0 2176), bit for bit:
 *  - against the separate kernels it replaces (RMSNorm, gate/up products, glu_q8) and the
 *    down product that reuses the quantized GLU output, for 1..4 and 8 tokens;
 *  - batch invariance: token t of an 8-token (and a 3-token) call == that token alone;
 *  - coverage: every one of these row sizes takes the fused kernel for one token (the
 *    single-token gu1_* kernel, which also takes rows over 1280 bytes; the generic one
 *    takes those only with HEARTH_CUDA_GU_PER set, which main does, for 2..4 tokens).
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

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

enum { K = 2048, XS = K + 32, E2 = 40, TMAX = 8 };

static int g_bad;

/* Bitwise comparison of n floats of two device arrays (counted in g_bad). */
static void same(const char *what, const float *a_dev, const float *b_dev, int64_t n) {
    g_bad += dev_differ(what, a_dev, b_dev, sizeof(float) * (size_t)n, 1);
}

/* One model layer's FFN inputs: gate, up (F x K) and down (E2 x F) weights, TMAX input
 * rows (XS apart) and the norm weight. */
typedef struct ffn {
    cuda_weight wg, wu, wd;
    float *x, *nw;
    int64_t F;
} ffn;

/* The outputs of one call: normalized rows, gate, up, GLU, down (token rows). */
typedef struct outs {
    float *n, *g, *u, *o, *d;
} outs;

static ffn ffn_new(uint32_t type, int64_t F) {
    ffn f = { cuda_test_weight(type, F, K), cuda_test_weight(type, F, K), cuda_test_weight(QT_Q8_0, E2, F), NULL, NULL, F };
    float *x = malloc(sizeof(float) * TMAX * XS), *nw = malloc(sizeof(float) * K);
    assert_non_null(x);
    assert_non_null(nw);
    for (int64_t i = 0; i < TMAX * XS; i++) x[i] = frand() * 2.5f * (1.0f + (float)(i / XS) * 0.5f);
    for (int64_t i = 0; i < K; i++) nw[i] = 1.0f + frand() * 0.3f;
    f.x = dev_from(x, sizeof(float) * TMAX * XS), f.nw = dev_from(nw, sizeof(float) * K);
    free(x), free(nw);
    return f;
}

static void ffn_free(ffn *f) {
    cuda_free(g_ctx, (void *)f->wg.data), cuda_free(g_ctx, (void *)f->wu.data), cuda_free(g_ctx, (void *)f->wd.data);
    cuda_free(g_ctx, f->x), cuda_free(g_ctx, f->nw);
}

static outs outs_new(int64_t F) {
    outs o = { dev_from(NULL, sizeof(float) * TMAX * K), dev_from(NULL, sizeof(float) * TMAX * F),
               dev_from(NULL, sizeof(float) * TMAX * F), dev_from(NULL, sizeof(float) * TMAX * F),
               dev_from(NULL, sizeof(float) * TMAX * E2) };
    return o;
}

static void outs_free(outs *o) {
    cuda_free(g_ctx, o->n), cuda_free(g_ctx, o->g), cuda_free(g_ctx, o->u), cuda_free(g_ctx, o->o),
        cuda_free(g_ctx, o->d);
}

/* Tokens t0..t0+T-1 through the fused call (fused != 0) or the separate kernels; the
 * results land at token row t0 of o. Then the down product reusing the GLU activations. */
static void run(const ffn *f, outs *o, int64_t t0, int64_t T, int gelu, int fused) {
    int64_t F = f->F;
    const float *x = f->x + t0 * XS;
    float *n = o->n + t0 * K, *g = o->g + t0 * F, *u = o->u + t0 * F, *out = o->o + t0 * F;
    if (fused) {
        ok(cuda_matmul_glu(g_ctx, &f->wg, &f->wu, g, F, u, F, out, gelu, x, XS, T, f->nw, 1e-5f, n, &g_err));
    } else {
        const cuda_weight *ws[2] = { &f->wg, &f->wu };
        float *ys[2] = { g, u }, *adds[2] = { NULL, NULL };
        int64_t ldys[2] = { F, F };
        ok(cuda_rmsnorm_q8(g_ctx, x, XS, n, T, K, f->nw, 1e-5f, &g_err));
        ok(cuda_matmul_multi(g_ctx, 2, ws, ys, ldys, adds, n, T, 1, &g_err));
        ok(cuda_glu_q8(g_ctx, gelu, g, F, u, F, out, T, F, &g_err));
    }
    cuda_mm_opt opt = { 1, NULL, 0 };
    ok(cuda_matmul_ex(g_ctx, &f->wd, out, T, o->d + t0 * E2, E2, &opt, &g_err));
}

static void compare(const char *what, const outs *a, const outs *b, int64_t F, int64_t T) {
    char s[96];
    const char *names[5] = { "norm", "gate", "up", "glu", "down" };
    const float *pa[5] = { a->n, a->g, a->u, a->o, a->d }, *pb[5] = { b->n, b->g, b->u, b->o, b->d };
    int64_t len[5] = { K, F, F, F, E2 };
    for (int i = 0; i < 5; i++) {
        snprintf(s, sizeof s, "%s %s", what, names[i]);
        same(s, pa[i], pb[i], T * len[i]);
    }
}

/* Fused == separate for n_tok 1..4 and 8, and the 8- and 3-token calls == each token
 * alone. Returns whether the one-token call took the fused kernel. */
static int check_type(uint32_t type, int64_t F) {
    ffn f = ffn_new(type, F);
    outs sep = outs_new(F), fus = outs_new(F), alone = outs_new(F);
    int bad0 = g_bad, fused1 = 0;
    static const int64_t ts[] = { 1, 2, 3, 4, 8 };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        int64_t T = ts[i];
        uint64_t f0 = cuda_mvq_fused_launches(g_ctx);
        run(&f, &sep, 0, T, (int)(T % 2 == 0), 0);
        run(&f, &fus, 0, T, (int)(T % 2 == 0), 1);
        if (T == 1) fused1 = cuda_mvq_fused_launches(g_ctx) > f0;
        char what[32];
        snprintf(what, sizeof what, "n_tok %lld", (long long)T);
        compare(what, &sep, &fus, F, T);
    }
    for (int64_t t = 0; t < TMAX; t++) run(&f, &alone, t, 1, 0, 1); /* each token alone */
    run(&f, &fus, 0, TMAX, 0, 1);
    compare("8 tokens vs alone", &fus, &alone, F, TMAX);
    run(&f, &fus, 0, 3, 0, 1);
    compare("3 tokens vs alone", &fus, &alone, F, 3);
    printf("  gate/up+glu %-5s K %d F %5lld: %s, one token %s\n", quant_type_name(type), K, (long long)F,
           g_bad == bad0 ? "same bits" : "DIFFERENT", fused1 ? "fused" : "separate kernels");
    outs_free(&sep), outs_free(&fus), outs_free(&alone);
    ffn_free(&f);
    return fused1;
}

static void test_gu_types(void **state) {
    (void)state;
    NEED_GPU();
    g_bad = 0;
    /* the TinyLlama FFN width for the two most common types, a smaller one for the rest */
    assert_true(check_type(QT_Q4_0, 5632));
    assert_true(check_type(QT_Q8_0, 5632));
    assert_true(check_type(QT_Q4_K, 1024));
    assert_true(check_type(QT_Q6_K, 1024));
    assert_true(check_type(QT_Q5_K, 768));
    assert_int_equal(g_bad, 0);
}

int main(void) {
    setenv("HEARTH_CUDA_GU_PER", "1", 0); /* rows over 1280 bytes take the fused kernel too (off by default) */
    setenv("HEARTH_CUDA_GU_T", "4", 0);   /* and 2..4 tokens (by default only one token does) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gu_types),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
