/* test_cuda_mvf.c — the float-weight mat-vec (cu_mvf.cu, cuda_mvf.h) against a plain double
 * reference computed here: F32/F16/BF16 weights (rounded by the reference quantizer, the
 * reference multiplies the rounded values), odd row counts, rows that are not a multiple of
 * 8 columns (the plain kernel), 1..8 and 11 tokens, three weights in one launch with strided
 * outputs and residual adds, the folded RMSNorm and the GLU epilogue; and that a token's
 * result does not depend on the batch (bit-identical), that the folded norm equals the
 * standalone float norm (bit for bit for the prologue fold, within rounding for the four-row
 * kernel's epilogue fold) and the products over them agree, the same for the
 * GLU and early-residual epilogues of the one-token instance, and the standalone norm (also
 * in place).
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

#define CUDA_TEST_SEED 0x243F6A8885A308D3ull
#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_mvf.h"
#include "quant/quant.h"

/* A random weight of `type` on the device and its values as the reference sees them. */
typedef struct mat {
    cuda_weight w;
    float *vals; /* [rows][cols], the rounded weights */
} mat;

static void mat_make(mat *m, uint32_t type, int64_t rows, int64_t cols) {
    size_t rb = quant_row_size(type, cols);
    float *f = malloc(sizeof(float) * rows * cols);
    uint8_t *q = malloc(rb * rows + 1);
    m->vals = malloc(sizeof(float) * rows * cols);
    assert_non_null(f && q && m->vals);
    for (int64_t i = 0; i < rows * cols; i++) f[i] = frand() * (1.0f + (float)(i % 5) * 0.25f);
    for (int64_t r = 0; r < rows; r++) {
        assert_true(quant_quantize_row(type, f + r * cols, q + r * rb, cols));
        assert_true(quant_dequantize_row(type, q + r * rb, m->vals + r * cols, cols));
    }
    void *d = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &d, rb * rows + 1, &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, d, q, rb * rows, &g_err), 0);
    m->w = (cuda_weight){ type, rows, cols, rb, d };
    free(f);
    free(q);
}

static void mat_free(mat *m) {
    cuda_free(g_ctx, (void *)m->w.data);
    free(m->vals);
}

static float *dev_up(const float *h, int64_t n) {
    void *d = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &d, sizeof(float) * (size_t)(n > 0 ? n : 1), &g_err), 0);
    assert_int_equal(cuda_upload(g_ctx, d, h, sizeof(float) * (size_t)n, &g_err), 0);
    return d;
}

static void dev_down(float *h, const float *d, int64_t n) {
    assert_int_equal(cuda_download(g_ctx, h, d, sizeof(float) * (size_t)n, &g_err), 0);
}

static float *rand_floats(int64_t n, float scale) {
    float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}

static float *nan_floats(int64_t n) {
    float *v = malloc(sizeof(float) * (size_t)n);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = NAN;
    return v;
}

/* ref[t][r] = sum_c W[r][c] x[t][c] in double. */
static double *ref_mv(const mat *m, const double *x, int64_t n_tok) {
    int64_t R = m->w.n_rows, C = m->w.n_cols;
    double *y = malloc(sizeof(double) * (size_t)(n_tok * R));
    assert_non_null(y);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < R; r++) {
            double s = 0;
            for (int64_t c = 0; c < C; c++) s += (double)m->vals[r * C + c] * x[t * C + c];
            y[t * R + r] = s;
        }
    return y;
}

static double *to_double(const float *x, int64_t n) {
    double *d = malloc(sizeof(double) * (size_t)n);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* Normalized root-mean-square error of got (rows ld apart) against ref [n_tok][R]; fails on
 * a NaN (an output never written). */
static double nrmse(const float *got, int64_t ld, const double *ref, int64_t n_tok, int64_t R) {
    double se = 0, sr = 0;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < R; r++) {
            double g = got[t * ld + r], e = ref[t * R + r];
            assert_false(isnan(g));
            se += (g - e) * (g - e);
            sr += e * e;
        }
    return sr > 0 ? sqrt(se / sr) : sqrt(se);
}

static const uint32_t k_ftypes[] = { QT_F32, QT_F16, QT_BF16 };
#define BOUND 1e-5

/* One weight through cuda_matmul (the mat-vec path) against the reference. */
static void check_single(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok) {
    mat m;
    mat_make(&m, type, rows, cols);
    float *x = rand_floats(n_tok * cols, 2.0f), *y = nan_floats(n_tok * rows);
    float *dx = dev_up(x, n_tok * cols), *dy = dev_up(y, n_tok * rows);
    int rc = cuda_matmul(g_ctx, &m.w, dx, n_tok, dy, rows, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    dev_down(y, dy, n_tok * rows);
    double *xd = to_double(x, n_tok * cols), *ref = ref_mv(&m, xd, n_tok);
    double e = nrmse(y, rows, ref, n_tok, rows);
    printf("  %-4s %4lld x %5lld  n_tok %2lld  nrmse %.2e\n", quant_type_name(type), (long long)rows, (long long)cols,
           (long long)n_tok, e);
    assert_true(e <= BOUND);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dy);
    free(x), free(y), free(xd), free(ref);
    mat_free(&m);
}

static void test_mvf_shapes(void **state) {
    (void)state;
    NEED_GPU();
    static const int64_t shapes[][2] = { { 67, 512 }, { 33, 2048 }, { 301, 5632 }, { 5, 1000 }, { 3, 1001 },
                                         { 1, 8 },    { 130, 2056 }, { 2, 4 } };
    static const int64_t toks[] = { 1, 2, 3, 8, 11 };
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                if (shapes[s][1] >= 5632 && toks[k] != 1 && toks[k] != 8) continue; /* keep the test short */
                check_single(k_ftypes[ti], shapes[s][0], shapes[s][1], toks[k]);
            }
}

/* Three weights in one launch: strided outputs (ld > rows) and residual adds on two. */
static void check_multi(uint32_t type, int64_t cols, int64_t n_tok) {
    const int64_t rows[3] = { 37, 5, 130 }, ld[3] = { 40, 5, 131 };
    mat m[3];
    float *dy[3], *dadd[3], *add0[3];
    cuda_mvf_call call;
    memset(&call, 0, sizeof call);
    float *x = rand_floats(n_tok * cols, 1.5f), *dx = dev_up(x, n_tok * cols);
    call.n = 3, call.x = dx, call.x_stride = cols, call.n_tok = n_tok;
    for (int i = 0; i < 3; i++) {
        mat_make(&m[i], type, rows[i], cols);
        float *yn = nan_floats(n_tok * ld[i]);
        dy[i] = dev_up(yn, n_tok * ld[i]);
        free(yn);
        add0[i] = rand_floats(n_tok * ld[i], 3.0f);
        dadd[i] = i == 1 ? NULL : dev_up(add0[i], n_tok * ld[i]);
        call.w[i] = &m[i].w, call.y[i] = dy[i], call.ldy[i] = ld[i], call.add_to[i] = dadd[i];
    }
    int rc = cuda_mvf(g_ctx, &call, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    double *xd = to_double(x, n_tok * cols);
    for (int i = 0; i < 3; i++) {
        float *y = malloc(sizeof(float) * n_tok * ld[i]), *a = malloc(sizeof(float) * n_tok * ld[i]);
        assert_non_null(y && a);
        dev_down(y, dy[i], n_tok * ld[i]);
        double *ref = ref_mv(&m[i], xd, n_tok);
        double e = nrmse(y, ld[i], ref, n_tok, rows[i]);
        assert_true(e <= BOUND);
        for (int64_t t = 0; t < n_tok; t++) /* padding between rows is left alone */
            for (int64_t r = rows[i]; r < ld[i]; r++) assert_true(isnan(y[t * ld[i] + r]));
        if (dadd[i]) { /* add_to += exactly the stored product */
            dev_down(a, dadd[i], n_tok * ld[i]);
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < rows[i]; r++)
                    assert_true(a[t * ld[i] + r] == add0[i][t * ld[i] + r] + y[t * ld[i] + r]);
            cuda_free(g_ctx, dadd[i]);
        }
        printf("  multi %-4s weight %d (%3lld x %4lld) n_tok %lld nrmse %.2e\n", quant_type_name(type), i,
               (long long)rows[i], (long long)cols, (long long)n_tok, e);
        free(y), free(a), free(ref), free(add0[i]);
        cuda_free(g_ctx, dy[i]);
        mat_free(&m[i]);
    }
    cuda_free(g_ctx, dx);
    free(x), free(xd);
}

static void test_mvf_multi_add(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t ti = 0; ti < 3; ti++)
        for (int64_t nt = 1; nt <= 8; nt++) check_multi(k_ftypes[ti], nt % 2 ? 1024 : 1000, nt);
}

/* Norm prologue + GLU epilogue: gate/up over RMSNorm(x), x rows xs apart. */
static void check_norm_glu(uint32_t type, int64_t F, int64_t E, int64_t n_tok, int glu, int with_w) {
    int64_t xs = E + 16;
    mat g, u;
    mat_make(&g, type, F, E);
    mat_make(&u, type, F, E);
    float *x = rand_floats(n_tok * xs, 3.0f), *nw = rand_floats(E, 1.0f);
    float *dx = dev_up(x, n_tok * xs), *dnw = with_w ? dev_up(nw, E) : NULL;
    float *yn = nan_floats(n_tok * F * 2);
    float *dg = dev_up(yn, n_tok * F), *du = dev_up(yn, n_tok * F), *dout = dev_up(yn, n_tok * F);
    float *dny = dev_up(yn, n_tok * E);
    const float eps = 1e-5f;
    cuda_mvf_call call;
    memset(&call, 0, sizeof call);
    call.n = 2, call.w[0] = &g.w, call.w[1] = &u.w, call.y[0] = dg, call.y[1] = du, call.ldy[0] = F, call.ldy[1] = F;
    call.x = dx, call.x_stride = xs, call.n_tok = n_tok;
    call.norm = 1, call.norm_w = dnw, call.eps = eps, call.norm_y = dny, call.norm_ys = E;
    call.glu = glu, call.glu_out = dout, call.glu_os = F;
    assert_true(cuda_mvf_norm_ok(&g.w, n_tok));
    int rc = cuda_mvf(g_ctx, &call, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    /* reference: the normalized rows in double */
    double *h = malloc(sizeof(double) * n_tok * E);
    assert_non_null(h);
    for (int64_t t = 0; t < n_tok; t++) {
        double ss = 0;
        for (int64_t i = 0; i < E; i++) ss += (double)x[t * xs + i] * x[t * xs + i];
        double k = 1.0 / sqrt(ss / (double)E + eps);
        for (int64_t i = 0; i < E; i++) h[t * E + i] = x[t * xs + i] * k * (with_w ? nw[i] : 1.0);
    }
    double *rg = ref_mv(&g, h, n_tok), *ru = ref_mv(&u, h, n_tok), *ro = malloc(sizeof(double) * n_tok * F);
    assert_non_null(ro);
    for (int64_t i = 0; i < n_tok * F; i++) {
        double a = rg[i];
        a = glu == 2 ? 0.5 * a * (1.0 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a))) : a / (1.0 + exp(-a));
        ro[i] = a * ru[i];
    }
    float *got = malloc(sizeof(float) * n_tok * (F > E ? F : E));
    assert_non_null(got);
    dev_down(got, dg, n_tok * F);
    double eg = nrmse(got, F, rg, n_tok, F);
    dev_down(got, du, n_tok * F);
    double eu = nrmse(got, F, ru, n_tok, F);
    dev_down(got, dout, n_tok * F);
    double eo = nrmse(got, F, ro, n_tok, F);
    dev_down(got, dny, n_tok * E);
    double en = nrmse(got, E, h, n_tok, E);
    printf("  norm+%s %-4s %lld x %lld n_tok %lld: gate %.2e up %.2e glu %.2e norm %.2e\n", glu == 2 ? "gelu" : "silu",
           quant_type_name(type), (long long)F, (long long)E, (long long)n_tok, eg, eu, eo, en);
    assert_true(eg <= BOUND && eu <= BOUND && eo <= BOUND && en <= BOUND);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dnw), cuda_free(g_ctx, dg), cuda_free(g_ctx, du);
    cuda_free(g_ctx, dout), cuda_free(g_ctx, dny);
    free(x), free(nw), free(yn), free(h), free(rg), free(ru), free(ro), free(got);
    mat_free(&g), mat_free(&u);
}

static void test_mvf_norm_glu(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t ti = 0; ti < 3; ti++) {
        check_norm_glu(k_ftypes[ti], 45, 512, 1, 1, 1);
        check_norm_glu(k_ftypes[ti], 173, 2048, 8, 2, 1);
        check_norm_glu(k_ftypes[ti], 64, 1032, 3, 1, 0);
    }
}

/* Tokens of the "batch" side of check_batch and check_batch_epi (8 unless a test sets it). */
static int64_t g_bt = 8;

/* The same call for 8 tokens at once and for each token alone gives identical bits; the
 * folded norm equals cuda_mvf_rmsnorm followed by the plain product, bit for bit. */
static void check_batch(uint32_t type, int64_t R, int64_t C, int norm) {
    const int64_t T = g_bt;
    mat m;
    mat_make(&m, type, R, C);
    float *x = rand_floats(T * C, 2.0f), *nw = rand_floats(C, 1.0f);
    float *dx = dev_up(x, T * C), *dnw = dev_up(nw, C), *dy = dev_up(x, T * R), *dh = dev_up(x, T * C);
    float *all = malloc(sizeof(float) * T * R), *one = malloc(sizeof(float) * T * R);
    float *h8 = malloc(sizeof(float) * T * C), *h1 = malloc(sizeof(float) * T * C);
    assert_non_null(all && one && h8 && h1);
    cuda_mvf_call call;
    memset(&call, 0, sizeof call);
    call.n = 1, call.w[0] = &m.w, call.ldy[0] = R, call.x_stride = C;
    call.norm = norm, call.norm_w = dnw, call.eps = 1e-6f, call.norm_ys = C;
    call.y[0] = dy, call.x = dx, call.n_tok = T, call.norm_y = norm ? dh : NULL;
    assert_int_equal(cuda_mvf(g_ctx, &call, &g_err), 0);
    dev_down(all, dy, T * R);
    if (norm) dev_down(h8, dh, T * C);
    for (int64_t t = 0; t < T; t++) {
        call.y[0] = dy + t * R, call.x = dx + t * C, call.n_tok = 1, call.norm_y = norm ? dh + t * C : NULL;
        assert_int_equal(cuda_mvf(g_ctx, &call, &g_err), 0);
    }
    dev_down(one, dy, T * R);
    assert_memory_equal(all, one, sizeof(float) * T * R);
    /* The prologue fold gives the standalone norm's bits; the epilogue fold (the four-row
     * kernel's, cuda_mvf_enorm_ok) sums the squares in its own order, so its normalized rows
     * agree within rounding. Either way the product over the standalone norm agrees. */
    int en = norm && cuda_mvf_enorm_ok(cuda_ctx_knobs(g_ctx), &m.w, dx, C);
    if (norm) {
        dev_down(h1, dh, T * C);
        assert_memory_equal(h8, h1, sizeof(float) * T * C);
        assert_int_equal(cuda_mvf_rmsnorm(g_ctx, dx, C, dh, C, T, C, dnw, 1e-6f, &g_err), 0);
        dev_down(h1, dh, T * C);
        if (!en) assert_memory_equal(h8, h1, sizeof(float) * T * C);
        double *nref = to_double(h1, T * C);
        assert_true(nrmse(h8, C, nref, T, C) <= 1e-6);
        free(nref);
        call.norm = 0, call.norm_y = NULL, call.x = dh, call.y[0] = dy, call.n_tok = T;
        assert_int_equal(cuda_mvf(g_ctx, &call, &g_err), 0);
        dev_down(one, dy, T * R);
        double *ref = to_double(all, T * R);
        assert_true(nrmse(one, R, ref, T, R) <= 1e-6); /* another kernel may sum in another order */
        free(ref);
    }
    printf("  batch of 8 == alone: %-4s %lld x %lld%s\n", quant_type_name(type), (long long)R, (long long)C,
           en ? " (norm in the epilogue ~ standalone)" : (norm ? " (norm folded == standalone)" : ""));
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dnw), cuda_free(g_ctx, dy), cuda_free(g_ctx, dh);
    free(x), free(nw), free(all), free(one), free(h8), free(h1);
    mat_free(&m);
}

static void test_mvf_batch_independent(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t ti = 0; ti < 3; ti++) {
        check_batch(k_ftypes[ti], 259, 2048, 0);
        check_batch(k_ftypes[ti], 259, 2048, 1);
        check_batch(k_ftypes[ti], 41, 5632, 0); /* activations read from global memory at 8 tokens */
        check_batch(k_ftypes[ti], 17, 999, 0);  /* plain kernel */
    }
}

/* The epilogues for 8 tokens at once and for each token alone, bit for bit: gate/up with
 * the GLU (glu = 1), or one weight with a residual add read before the wait (glu = 0,
 * add_early). One token runs the four-row kernel's one-token instance (its own epilogue
 * code), 8 tokens the general one. Also checks the single-token outputs against the double
 * reference and the residual as old + sum. */
static void check_batch_epi(uint32_t type, int64_t R, int64_t C, int glu) {
    const int64_t T = g_bt;
    mat g, u;
    mat_make(&g, type, R, C);
    if (glu) mat_make(&u, type, R, C);
    float *x = rand_floats(T * C, 1.0f), *a0 = rand_floats(T * R, 2.0f), *yn = nan_floats(T * R);
    float *dx = dev_up(x, T * C), *dy0 = dev_up(yn, T * R), *dy1 = dev_up(yn, T * R), *dgo = dev_up(yn, T * R);
    float *dadd = dev_up(a0, T * R);
    float *all[3], *one[3];
    for (int i = 0; i < 3; i++) {
        all[i] = malloc(sizeof(float) * T * R), one[i] = malloc(sizeof(float) * T * R);
        assert_non_null(all[i] && one[i]);
    }
    float *outs[3] = { dy0, glu ? dy1 : dadd, dgo };
    int nout = glu ? 3 : 2;
    cuda_mvf_call call;
    memset(&call, 0, sizeof call);
    call.n = glu ? 2 : 1, call.w[0] = &g.w, call.w[1] = glu ? &u.w : NULL, call.ldy[0] = R, call.ldy[1] = R;
    call.x_stride = C, call.glu = glu, call.glu_os = R, call.add_early = !glu;
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(cuda_upload(g_ctx, dadd, a0, sizeof(float) * T * R, &g_err), 0);
        for (int64_t t = 0; t < T; t += pass ? 1 : T) {
            call.n_tok = pass ? 1 : T, call.x = dx + t * C, call.y[0] = dy0 + t * R, call.y[1] = dy1 + t * R;
            call.add_to[0] = glu ? NULL : dadd + t * R, call.glu_out = glu ? dgo + t * R : NULL;
            assert_int_equal(cuda_mvf(g_ctx, &call, &g_err), 0);
        }
        for (int i = 0; i < nout; i++) dev_down(pass ? one[i] : all[i], outs[i], T * R);
    }
    for (int i = 0; i < nout; i++) assert_memory_equal(all[i], one[i], sizeof(float) * T * R);
    double *xd = to_double(x, T * C), *ref = ref_mv(&g, xd, T);
    double e = nrmse(one[0], R, ref, T, R);
    for (int64_t i = 0; i < T * R && !glu; i++) assert_true(one[1][i] == a0[i] + one[0][i]); /* old + sum */
    printf("  batch of 8 == alone: %-4s %lld x %lld %s, nrmse %.2e\n", quant_type_name(type), (long long)R,
           (long long)C, glu ? "gate/up + GLU" : "residual read early", e);
    assert_true(e <= BOUND);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dy0), cuda_free(g_ctx, dy1), cuda_free(g_ctx, dgo), cuda_free(g_ctx, dadd);
    for (int i = 0; i < 3; i++) free(all[i]), free(one[i]);
    free(x), free(a0), free(yn), free(xd), free(ref);
    mat_free(&g);
    if (glu) mat_free(&u);
}

static void test_mvf_batch_epilogues(void **state) {
    (void)state;
    NEED_GPU();
    for (size_t ti = 1; ti < 3; ti++) { /* F16, BF16 */
        check_batch_epi(k_ftypes[ti], 2816, 2048, 1);  /* 1408 four-row blocks of gate/up pairs */
        check_batch_epi(k_ftypes[ti], 1030, 5632, 0);  /* down-like, a partial four-row block */
        check_batch_epi(k_ftypes[ti], 70, 14336, 0);   /* seven groups per thread */
        check_batch_epi(k_ftypes[ti], 6, 2048, 1);     /* fewer blocks than SMs */
    }
}

/* The persistent batch kernel (HEARTH_CUDA_MVF_PB) for 8, 5, 3 and 2 tokens (all tokens in
 * registers; for rows of three column groups per thread the tokens split between block
 * pairs, or passes of 4 tokens, or groups of 2 rows: HEARTH_CUDA_MVF_PB_MODE): the bits
 * of each token alone, for gate/up + GLU, residual adds, the norm in the epilogue and the
 * plain product; and it did run. */
static void test_mvf_batch_kernel(void **state) {
    (void)state;
    NEED_GPU();
    cuda_knobs *k = cuda_ctx_knobs_edit(g_ctx), keep = *k;
    static const int64_t toks[] = { 8, 5, 3, 2 };
    /* HEARTH_CUDA_MVF_PB_MODE: default (tokens split), passes, rows of 2, split without the
     * carveout preference */
    /* 56: the 8-token instance for 2..4 tokens too; 40: the 4-token one for 2 */
    static const int modes[] = { 8, 0, 3, 9, 56, 40 };
    for (int v = 0; v < 7; v++) {
        int pb = v > 0;
        k->mvf_pb = pb, k->mvf_pb_mode = pb ? modes[v - 1] : 0;
        for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
            uint64_t l0 = cuda_mvf_pb_launches(g_ctx);
            g_bt = toks[i];
            check_batch_epi(QT_F16, 2816, 2048, 1);  /* gate/up + GLU, two column groups per thread */
            check_batch_epi(QT_BF16, 1030, 5632, 0); /* three groups per thread, residual */
            check_batch(QT_F16, 259, 2048, 1);       /* norm in the epilogue */
            check_batch(QT_BF16, 41, 5632, 0);
            check_batch(QT_F16, 37, 256, 0);         /* one column group per thread */
            printf("  batch kernel %s (mode %d), %lld tokens: == alone\n", pb ? "on" : "off", k->mvf_pb_mode,
                   (long long)toks[i]);
            /* 6 products: check_batch with the norm runs a second batch over the normalized rows */
            assert_true(cuda_mvf_pb_launches(g_ctx) == l0 + (pb ? 6 : 0));
        }
    }
    g_bt = 8;
    *k = keep;
}

/* The persistent one-token kernel (HEARTH_CUDA_MVF_PS) at both ring depths, with groups of
 * 4 and of 2 rows, with as many blocks as fit and with one block per SM (many groups per
 * block), with 128- and 256-thread blocks at 2048 columns (one or two column groups per
 * thread): the bits of the 8-token kernel (check_batch*), three weights whose row counts
 * are not multiples of the group (check_multi), and it did run. */
static void test_mvf_persistent(void **state) {
    (void)state;
    NEED_GPU();
    cuda_knobs *k = cuda_ctx_knobs_edit(g_ctx), keep = *k;
    for (int ns = 2; ns <= 3; ns++) {
        for (int v = 0; v < 10; v++) { /* 8, 9: groups of 8 rows for the 2048-column rows */
            k->mvf_ps = ns, k->mvf_ps_bps = v & 1, k->mvf_ps_r2 = v & 2 ? 3 : 0, k->mvf_t256 = (v & 4) != 0;
            k->mvf_ps_r8 = v >= 8;
            k->mvf_pb = v & 1; /* the batch kernel with the one-token kernel's variants */
            uint64_t l0 = cuda_mvf_ps_launches(g_ctx);
            check_batch_epi(QT_F16, 2816, 2048, 1); /* gate/up + GLU */
            check_batch_epi(QT_BF16, 1030, 5632, 0); /* three groups per thread, residual read early */
            check_batch(QT_F16, 259, 2048, 1);       /* norm in the epilogue */
            check_multi(QT_F16, 1024, 1);            /* three weights, groups across their ends */
            assert_true(cuda_mvf_ps_launches(g_ctx) >= l0 + 3 * 8 + 1);
            printf("  persistent kernel, %d stages, groups of %d rows, %s%s: == 8-token kernel\n", ns,
                   v >= 8 && ns == 2 ? 8 : v & 2 ? 2 : 4,
                   v & 1 ? "1 block per SM" : "full", v & 4 ? ", 256 threads" : "");
        }
    }
    *k = keep;
}

/* cuda_mvf_rmsnorm against the double reference, separate output and in place. */
static void test_mvf_rmsnorm(void **state) {
    (void)state;
    NEED_GPU();
    const int64_t rows = 3, n = 2048, xs = 2100;
    float *x = rand_floats(rows * xs, 4.0f), *w = rand_floats(n, 1.0f), *got = malloc(sizeof(float) * rows * xs);
    assert_non_null(got);
    double *ref = malloc(sizeof(double) * rows * n);
    assert_non_null(ref);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)x[r * xs + i] * x[r * xs + i];
        double k = 1.0 / sqrt(ss / (double)n + 1e-5);
        for (int64_t i = 0; i < n; i++) ref[r * n + i] = x[r * xs + i] * k * w[i];
    }
    float *dx = dev_up(x, rows * xs), *dw = dev_up(w, n), *dy = dev_up(x, rows * n);
    assert_int_equal(cuda_mvf_rmsnorm(g_ctx, dx, xs, dy, n, rows, n, dw, 1e-5f, &g_err), 0);
    dev_down(got, dy, rows * n);
    double e1 = nrmse(got, n, ref, rows, n);
    assert_int_equal(cuda_mvf_rmsnorm(g_ctx, dx, xs, dx, xs, rows, n, dw, 1e-5f, &g_err), 0); /* in place */
    dev_down(got, dx, rows * xs);
    double e2 = nrmse(got, xs, ref, rows, n);
    for (int64_t r = 0; r < rows; r++) /* the gap between rows is untouched */
        for (int64_t i = n; i < xs && r + 1 < rows; i++) assert_true(got[r * xs + i] == x[r * xs + i]);
    printf("  float rmsnorm: nrmse %.2e, in place %.2e\n", e1, e2);
    assert_true(e1 <= BOUND && e2 <= BOUND);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dw), cuda_free(g_ctx, dy);
    free(x), free(w), free(got), free(ref);
}

/* Calls the kernel must refuse with an error, never run. */
static void test_mvf_bad_calls(void **state) {
    (void)state;
    NEED_GPU();
    mat a, b;
    mat_make(&a, QT_F16, 8, 64);
    mat_make(&b, QT_F16, 9, 64);
    float *x = rand_floats(64, 1.0f), *dx = dev_up(x, 64), *dy = dev_up(x, 64);
    cuda_mvf_call call;
    memset(&call, 0, sizeof call);
    call.n = 2, call.w[0] = &a.w, call.w[1] = &b.w, call.y[0] = dy, call.y[1] = dy, call.ldy[0] = 8, call.ldy[1] = 9;
    call.x = dx, call.x_stride = 64, call.n_tok = 1, call.glu = 1, call.glu_out = dy, call.glu_os = 8;
    assert_int_not_equal(cuda_mvf(g_ctx, &call, &g_err), 0); /* GLU over unequal gate/up */
    call.glu = 0, call.n = 4;
    assert_int_not_equal(cuda_mvf(g_ctx, &call, &g_err), 0); /* too many weights */
    call.n = 1, call.norm = 1, call.x_stride = 64;
    cuda_weight odd = a.w;
    odd.n_cols = 63, odd.row_bytes = 126;
    call.w[0] = &odd;
    assert_false(cuda_mvf_norm_ok(&odd, 1));
    assert_int_not_equal(cuda_mvf(g_ctx, &call, &g_err), 0); /* norm fold on the plain kernel */
    cuda_free(g_ctx, dx), cuda_free(g_ctx, dy);
    free(x);
    mat_free(&a), mat_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mvf_shapes),
        cmocka_unit_test(test_mvf_multi_add),
        cmocka_unit_test(test_mvf_norm_glu),
        cmocka_unit_test(test_mvf_batch_independent),
        cmocka_unit_test(test_mvf_batch_epilogues),
        cmocka_unit_test(test_mvf_persistent),
        cmocka_unit_test(test_mvf_batch_kernel),
        cmocka_unit_test(test_mvf_rmsnorm),
        cmocka_unit_test(test_mvf_bad_calls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
