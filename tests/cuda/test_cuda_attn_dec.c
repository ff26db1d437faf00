/* test_cuda_attn_dec.c — decode attention over an f16 cache at short contexts: the
 * tensor-core kernel (cu_attn_tc.cu: one block per kv head and token, head sizes 64 and
 * 128, up to 16 query heads per kv head) and the scalar one it falls back to
 * (cu_attn_dec.cu: one block per head and token; HEARTH_CUDA_ATTN_TC=0 or other shapes):
 * 8 tokens of two sequences (two of them in one sequence, as in a multi-token step) match a
 * double-precision reference, with and without a sliding window and softcap; decoded
 * together they give bitwise the rows each gives alone; the quantizing form
 * (cuda_attention_q8) writes the same float output. Head sizes 64 and 128 (the kernel's
 * instances compiled for them) and 32 (its generic instance), 1, 8 and 16 query heads per
 * kv head, each with both kernels. Skips without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CUDA_TEST_SEED 0x9E3779B97F4A7C15ull
#include "cuda_test.h"
#include "quant/quant.h"

enum { CTX = 300, S = 2, T = 8, MAXPOS = 255 };

/* The checks for head size D (a multiple of 32, at most 256), HKV kv heads of G query
 * heads each, with the tensor-core kernel on or off (tc). */
static void run_shape(int32_t D, int32_t HKV, int32_t G, bool tc) {
    const int32_t HQ = HKV * G;
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = tc;
    printf("  %s kernel, head size %d, %d x %d heads\n", tc ? "tensor-core" : "scalar", D, HKV, G);
    const int64_t kvd = HKV * D;
    const float scale = (float)(1.0 / sqrt((double)D));
    size_t rb = quant_row_size(QT_F16, kvd);
    float *kv_host = malloc(sizeof(float) * S * CTX * kvd * 2);
    for (int64_t i = 0; i < S * CTX * kvd * 2; i++) kv_host[i] = frand();
    float *dk = dev_from(kv_host, sizeof(float) * S * CTX * kvd);
    float *dv = dev_from(kv_host + S * CTX * kvd, sizeof(float) * S * CTX * kvd);
    cuda_kv kv = { dev_from(NULL, rb * S * CTX), dev_from(NULL, rb * S * CTX), QT_F16, kvd, rb, CTX };
    int32_t *pos = malloc(sizeof(int32_t) * S * CTX), *seq = malloc(sizeof(int32_t) * S * CTX);
    for (int s = 0; s < S; s++)
        for (int p = 0; p < CTX; p++) pos[s * CTX + p] = p, seq[s * CTX + p] = s;
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 0, pos, S * CTX, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 1, seq, S * CTX, &ds, &g_err), 0);
    assert_int_equal(cuda_kv_store(g_ctx, &kv, dk, kvd, dv, kvd, S * CTX, dp, ds, &g_err), 0);
    /* two tokens of one sequence in the batch (positions 100 and 101) as in a multi-token step */
    int32_t qpos[T] = { 0, 31, 32, 127, 128, 255, 100, 101 }, qseq[T] = { 0, 1, 0, 1, 0, 1, 0, 0 };
    const size_t nq = (size_t)T * HQ * D, nbytes = nq * sizeof(float), abytes = (size_t)HQ * D * sizeof(float);
    float *q = malloc(nbytes), *ob = malloc(nbytes), *o8 = malloc(nbytes), *oa = malloc(abytes);
    for (size_t i = 0; i < nq; i++) q[i] = frand();
    float *dq = dev_from(q, nbytes), *dout = dev_from(NULL, nbytes);
    assert_int_equal(cuda_stage_i32(g_ctx, 2, qpos, T, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 3, qseq, T, &ds, &g_err), 0);
    cuda_attn a = { &kv, dp, ds, T, HQ, HKV, D, D, scale, 0.0f, 0, MAXPOS };
    assert_int_equal(cuda_attention(g_ctx, &a, dq, HQ * D, dout, HQ * D, &g_err), 0);
    to_host(ob, dout, nbytes);
    assert_int_equal(cuda_attention_q8(g_ctx, &a, dq, HQ * D, dout, HQ * D, &g_err), 0);
    to_host(o8, dout, nbytes);
    assert_memory_equal(ob, o8, nbytes);
    /* a bucket larger than the cache (512 > CTX cells): the stage holds CTX cells, same bits */
    cuda_attn a512 = a;
    a512.max_pos_host = 511;
    assert_int_equal(cuda_attention(g_ctx, &a512, dq, HQ * D, dout, HQ * D, &g_err), 0);
    to_host(o8, dout, nbytes);
    assert_memory_equal(ob, o8, nbytes);
    /* the reference over the values as the f16 cache holds them */
    float *kc = malloc(sizeof(float) * S * CTX * kvd * 2), *vc = kc + S * CTX * kvd;
    uint8_t *tmp = malloc(rb);
    for (int64_t r = 0; r < 2 * S * CTX; r++) {
        quant_quantize_row(QT_F16, kv_host + r * kvd, tmp, kvd);
        quant_dequantize_row(QT_F16, tmp, kc + r * kvd, kvd);
    }
    attn_shape sh = { T, HQ, HKV, D, CTX, 0, 0.0f };
    double e = attn_ref_nrmse(&sh, q, ob, kc, vc, qpos, qseq);
    printf("  head size %d, 8 tokens, f16 cache: nrmse %.2e\n", D, e);
    assert_true(e < 1e-4);
    cuda_attn aw = a;
    aw.window = 40, aw.softcap = 30.0f;
    assert_int_equal(cuda_attention(g_ctx, &aw, dq, HQ * D, dout, HQ * D, &g_err), 0);
    to_host(o8, dout, nbytes);
    sh.window = 40, sh.softcap = 30.0f;
    e = attn_ref_nrmse(&sh, q, o8, kc, vc, qpos, qseq);
    printf("  window 40, softcap 30: nrmse %.2e\n", e);
    assert_true(e < 1e-4);
    free(kc), free(tmp);
    int mism = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(cuda_stage_i32(g_ctx, 2, qpos + t, 1, &dp, &g_err), 0);
        assert_int_equal(cuda_stage_i32(g_ctx, 3, qseq + t, 1, &ds, &g_err), 0);
        cuda_attn a1 = { &kv, dp, ds, 1, HQ, HKV, D, D, scale, 0.0f, 0, MAXPOS };
        assert_int_equal(cuda_attention(g_ctx, &a1, dq + t * HQ * D, HQ * D, dout, HQ * D, &g_err), 0);
        to_host(oa, dout, abytes);
        if (memcmp(oa, ob + t * HQ * D, abytes)) mism++, printf("  token %d (pos %d) differs alone\n", t, qpos[t]);
    }
    assert_int_equal(mism, 0);
    cuda_free(g_ctx, kv.k), cuda_free(g_ctx, kv.v), cuda_free(g_ctx, dk), cuda_free(g_ctx, dv);
    cuda_free(g_ctx, dq), cuda_free(g_ctx, dout);
    free(kv_host), free(pos), free(seq), free(q), free(ob), free(o8), free(oa);
}

static void test_batch_equals_alone(void **state) {
    (void)state;
    NEED_GPU();
    for (int tc = 1; tc >= 0; tc--) run_shape(64, 4, 8, tc);
}

static void test_head_sizes(void **state) {
    (void)state;
    NEED_GPU();
    for (int tc = 1; tc >= 0; tc--) {
        run_shape(128, 4, 8, tc);
        run_shape(32, 4, 8, tc); /* the scalar kernel's generic instance either way */
        run_shape(64, 2, 16, tc);
        run_shape(64, 4, 1, tc);
        run_shape(128, 3, 5, tc);
    }
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = true;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_head_sizes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
