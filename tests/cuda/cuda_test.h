/* cuda_test.h — the common part of the CUDA test programs (tests/cuda/test_cuda_*.c): one
 * device context for the whole program (NULL when no usable GPU: every test then skips, as
 * CI has no GPU), a fixed-seed random generator, and device copy helpers that fail the test
 * on error. Include after <cmocka.h>. */
#ifndef HEARTH_TESTS_CUDA_TEST_H
#define HEARTH_TESTS_CUDA_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

static cuda_ctx *g_ctx;
static hb_err g_err;

/* A program may pick its own seed: #define CUDA_TEST_SEED before the include. */
#ifndef CUDA_TEST_SEED
#define CUDA_TEST_SEED 0x2545F4914F6CDD1Dull
#endif
static uint64_t g_rng = CUDA_TEST_SEED;
static inline float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static inline int setup(void **state) {
    (void)state;
    if (cuda_ctx_new(0, &g_ctx, &g_err)) {
        fprintf(stderr, "no usable GPU: %s\n", g_err.msg);
        g_ctx = NULL;
    }
    return 0;
}

static inline int teardown(void **state) {
    (void)state;
    cuda_ctx_free(g_ctx);
    return 0;
}

#define NEED_GPU()          \
    do {                    \
        if (!g_ctx) skip(); \
    } while (0)

/* A device copy of `bytes` of host (or uninitialized when host is NULL); caller frees with
 * cuda_free(g_ctx, ...). */
static inline void *dev_from(const void *host, size_t bytes) {
    void *d = NULL;
    assert_int_equal(cuda_alloc(g_ctx, &d, bytes, &g_err), 0);
    if (host) assert_int_equal(cuda_upload(g_ctx, d, host, bytes, &g_err), 0);
    return d;
}

static inline void to_host(void *dst, const void *d, size_t bytes) {
    assert_int_equal(cuda_download(g_ctx, dst, d, bytes, &g_err), 0);
}

/* Fails the test on a nonzero status, printing the context's error first. */
static inline void ok(int rc) {
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
}

/* A random weight [rows][cols] of `type` in device memory, rows scaled a little
 * differently so that scales vary (caller frees w.data with cuda_free). */
static inline cuda_weight cuda_test_weight(uint32_t type, int64_t rows, int64_t cols) {
    size_t rb = quant_row_size(type, cols);
    float *f = malloc(sizeof(float) * cols);
    uint8_t *q = malloc(rb * rows);
    assert_non_null(f);
    assert_non_null(q);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) f[i] = frand() * (1.0f + (float)((r + i) % 5) * 0.25f);
        assert_true(quant_quantize_row(type, f, q + r * rb, cols));
    }
    cuda_weight w = { type, rows, cols, rb, dev_from(q, rb * rows) };
    free(f), free(q);
    return w;
}

/* 1 when `bytes` of two device arrays differ (as floats when as_f32: a NaN counts as a
 * difference), after printing the first difference; else 0. */
static inline int dev_differ(const char *what, const void *a_dev, const void *b_dev, size_t bytes, int as_f32) {
    uint8_t *a = malloc(bytes), *b = malloc(bytes);
    int bad = 0;
    assert_non_null(a);
    assert_non_null(b);
    to_host(a, a_dev, bytes);
    to_host(b, b_dev, bytes);
    if (as_f32) {
        for (size_t i = 0; i + 4 <= bytes && !bad; i += 4) {
            float x, y;
            memcpy(&x, a + i, 4), memcpy(&y, b + i, 4);
            if (memcmp(&x, &y, 4) || isnan(x))
                fprintf(stderr, "  MISMATCH %s [%zu]: %.9g vs %.9g\n", what, i / 4, x, y), bad = 1;
        }
    } else {
        for (size_t i = 0; i < bytes && !bad; i++)
            if (a[i] != b[i]) fprintf(stderr, "  MISMATCH %s at byte %zu\n", what, i), bad = 1;
    }
    free(a), free(b);
    return bad;
}

/* The attention shape of a reference check: n_tok query rows of n_head heads (head size d,
 * scale 1/sqrt(d)), n_head_kv cache heads, a cache of n_ctx cells per sequence. */
typedef struct attn_shape {
    int n_tok, n_head, n_head_kv, d, n_ctx;
    int32_t window;
    float softcap;
} attn_shape;

/* Normalized RMS error of out [n_tok][n_head][d] against attention in double over the
 * values the cache holds, kc / vc [seq][n_ctx][n_head_kv * d], for tokens at qpos / qseq. */
static inline double attn_ref_nrmse(const attn_shape *a, const float *q, const float *out, const float *kc,
                                    const float *vc, const int32_t *qpos, const int32_t *qseq) {
    double se = 0, sr = 0, scale = 1.0 / sqrt((double)a->d);
    int64_t kvd = (int64_t)a->n_head_kv * a->d;
    double *sc = malloc(sizeof(double) * a->n_ctx);
    assert_non_null(sc);
    for (int t = 0; t < a->n_tok; t++)
        for (int h = 0; h < a->n_head; h++) {
            int hk = h / (a->n_head / a->n_head_kv), p = qpos[t];
            int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            const float *qr = q + ((int64_t)t * a->n_head + h) * a->d;
            const float *kb = kc + (int64_t)qseq[t] * a->n_ctx * kvd + hk * a->d;
            const float *vb = vc + (int64_t)qseq[t] * a->n_ctx * kvd + hk * a->d;
            double mx = -1e300, sum = 0;
            for (int c = lo; c <= p; c++) {
                double x = 0;
                for (int i = 0; i < a->d; i++) x += (double)qr[i] * kb[c * kvd + i];
                x *= scale;
                if (a->softcap > 0) x = a->softcap * tanh(x / a->softcap);
                sc[c] = x;
                if (x > mx) mx = x;
            }
            for (int c = lo; c <= p; c++) sum += sc[c] = exp(sc[c] - mx);
            for (int i = 0; i < a->d; i++) {
                double o = 0;
                for (int c = lo; c <= p; c++) o += sc[c] * vb[c * kvd + i];
                o /= sum;
                double g = out[((int64_t)t * a->n_head + h) * a->d + i];
                se += (g - o) * (g - o), sr += o * o;
            }
        }
    free(sc);
    return sqrt(se / sr);
}

#endif
