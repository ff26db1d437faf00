/* cuda_test.h — the common part of the CUDA test programs (tests/cuda/test_cuda_*.c): one
 * device context for the whole program (NULL when no usable GPU: every test then skips, as
 * CI has no GPU), a fixed-seed random generator, and device copy helpers that fail the test
 * on error. Include after <cmocka.h>. */
#ifndef HEARTH_TESTS_CUDA_TEST_H
#define HEARTH_TESTS_CUDA_TEST_H

#include <stdint.h>
#include <stdio.h>

#include "backend/cuda/cuda.h"

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

#endif
