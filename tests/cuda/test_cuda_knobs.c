/* test_cuda_knobs.c — the CUDA backend's switches (cuda_knobs_from_env, cuda_knobs.c):
 * defaults with nothing set; valid values taken; malformed and out-of-range values fall
 * back to the default; and a context holds the values of its creation (a later change of
 * the environment does not reach it). The parsing needs no GPU; the context check skips
 * without one. Built only with `make CUDA=1`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"

static const char *k_vars[] = { "HEARTH_CUDA_GRAPHS", "HEARTH_CUDA_SEG", "HEARTH_CUDA_SEG_GROW", "HEARTH_CUDA_MEGA",
                                "HEARTH_CUDA_MVS", "HEARTH_CUDA_PQ_MAX", "HEARTH_CUDA_PQ_NW", "HEARTH_CUDA_MEM_LIMIT",
                                "HEARTH_CUDA_ATTN_DEC_MAX", "HEARTH_CUDA_PFATTN", "HEARTH_CUDA_PFATTN_MIN",
                                "HEARTH_CUDA_MVF_NORM_PART", "HEARTH_CUDA_AT_MIN_SPAN", "HEARTH_CUDA_MVF_FUSE",
                                "HEARTH_CUDA_GU3", "HEARTH_CUDA_DATTN_STAGE", "HEARTH_CUDA_MVF_PS",
                                "HEARTH_CUDA_MVF_PS_BPS", "HEARTH_CUDA_DROP", "HEARTH_CUDA_X_COLS", "HEARTH_CUDA_X_SKIP",
                                "HEARTH_CUDA_X_SKIP_PF", "HEARTH_CUDA_ATTN_TC", "HEARTH_CUDA_ATTN_TC_RPB" };

static void clear_vars(void) {
    for (size_t i = 0; i < sizeof k_vars / sizeof k_vars[0]; i++) unsetenv(k_vars[i]);
}

static void test_defaults(void **state) {
    (void)state;
    clear_vars();
    cuda_knobs k;
    cuda_knobs_from_env(&k);
    assert_true(k.graphs && k.fuse && !k.mega && k.pdl && k.gu3 && k.early_add);
    assert_int_equal(k.seg_layers, 24);
    assert_int_equal(k.seg_first, 1);
    assert_int_equal(k.seg_grow, 8);
    assert_int_equal(k.mvs, 4);
    assert_int_equal(k.pq_max, 8192);
    assert_int_equal(k.pq_nw, 8);
    assert_int_equal(k.mem_limit, 0);
    assert_int_equal(k.attn_dec_max, 0); /* the kernel's own default */
    assert_true(k.attn_dec_rope);
    assert_false(k.attn_tc); /* opt-in */
    assert_int_equal(k.attn_tc_rpb, 0); /* a kv head's whole group per block */
    assert_int_equal(k.pfattn_min, 0);
    assert_int_equal(k.at_min_span, 32);
    assert_int_equal(k.mvf_fuse, 2);
    assert_int_equal(k.mvf_rp, 2);
    assert_int_equal(k.dattn_stage, 65536);
    assert_int_equal(k.dattn, 2); /* unset: after float q/k/v products only */
    assert_int_equal(k.drop, 0);
    assert_int_equal(k.x_cols, 1000); /* every column */
    assert_int_equal(k.x_skip, 0); /* every block reads x */
    assert_false(k.x_skip_pf);
    assert_int_equal(k.mega_adec, 1);
    assert_true(k.mega_sync && !k.mega_prof && k.mvf_j3);
    assert_int_equal(k.mvf_ps, 2);
    assert_int_equal(k.mvf_ps_bps, 0);
    assert_int_equal(k.mvf_ps_r2, 2); /* the long rows in pairs */
    assert_int_equal(k.mvf_ps_min, 0);
    assert_true(k.mvf_ps_even && k.mvf_ps_long && !k.mvf_t256);
    assert_true(k.l2_stream); /* the decode products' weights stream through L2 */
}

static void test_valid(void **state) {
    (void)state;
    clear_vars();
    setenv("HEARTH_CUDA_GRAPHS", "0", 1);
    setenv("HEARTH_CUDA_SEG", "0", 1); /* 0: the whole step */
    setenv("HEARTH_CUDA_SEG_GROW", "3", 1);
    setenv("HEARTH_CUDA_DROP", "9", 1); /* attention + gate/up */
    setenv("HEARTH_CUDA_X_COLS", "885", 1);
    setenv("HEARTH_CUDA_X_SKIP", "4", 1);
    setenv("HEARTH_CUDA_X_SKIP_PF", "1", 1);
    setenv("HEARTH_CUDA_MEGA", "1", 1);
    setenv("HEARTH_CUDA_MVS", "0", 1);
    setenv("HEARTH_CUDA_PQ_NW", "16", 1);
    setenv("HEARTH_CUDA_MEM_LIMIT", "3G", 1);
    setenv("HEARTH_CUDA_ATTN_DEC_MAX", "1024", 1);
    setenv("HEARTH_CUDA_PFATTN_MIN", "16", 1);
    setenv("HEARTH_CUDA_MVF_NORM_PART", "64", 1);
    setenv("HEARTH_CUDA_AT_MIN_SPAN", "128", 1);
    setenv("HEARTH_CUDA_MVF_FUSE", "1", 1);
    setenv("HEARTH_CUDA_GU3", "0", 1);
    setenv("HEARTH_CUDA_DATTN_STAGE", "0", 1); /* 0: no staging (a real value, not "default") */
    setenv("HEARTH_CUDA_MVF_PS", "0", 1);      /* 0: off, below the stage range */
    setenv("HEARTH_CUDA_MVF_PS_BPS", "2", 1);
    setenv("HEARTH_CUDA_ATTN_TC", "1", 1);
    setenv("HEARTH_CUDA_ATTN_TC_RPB", "2", 1);
    cuda_knobs k;
    cuda_knobs_from_env(&k);
    assert_true(!k.graphs && k.mega && !k.gu3);
    assert_int_equal(k.seg_layers, 0);
    assert_int_equal(k.seg_grow, 3);
    assert_int_equal(k.drop, 9);
    assert_int_equal(k.x_cols, 885);
    assert_int_equal(k.x_skip, 4);
    assert_true(k.x_skip_pf);
    assert_int_equal(k.mvs, 0);
    assert_int_equal(k.pq_nw, 16);
    assert_int_equal(k.mem_limit, (size_t)3 << 30);
    assert_int_equal(k.attn_dec_max, 1024);
    assert_int_equal(k.pfattn_min, 16);
    assert_int_equal(k.mvf_norm_part, 64);
    assert_int_equal(k.at_min_span, 128);
    assert_int_equal(k.mvf_fuse, 1);
    assert_int_equal(k.dattn_stage, 0);
    assert_int_equal(k.mvf_ps, 0);
    assert_int_equal(k.mvf_ps_bps, 2);
    assert_true(k.attn_tc);
    assert_int_equal(k.attn_tc_rpb, 2);
    setenv("HEARTH_CUDA_PFATTN", "0", 1); /* off wins over a minimum */
    cuda_knobs_from_env(&k);
    assert_int_equal(k.pfattn_min, INT32_MAX);
    clear_vars();
}

static void test_malformed(void **state) {
    (void)state;
    clear_vars();
    setenv("HEARTH_CUDA_SEG", "-3", 1);
    setenv("HEARTH_CUDA_SEG_GROW", "65", 1);
    setenv("HEARTH_CUDA_DROP", "128", 1);
    setenv("HEARTH_CUDA_X_COLS", "0", 1); /* below 1 per mille */
    setenv("HEARTH_CUDA_X_SKIP", "-1", 1);
    setenv("HEARTH_CUDA_MVS", "12", 1);
    setenv("HEARTH_CUDA_PQ_NW", "6", 1);
    setenv("HEARTH_CUDA_ATTN_TC_RPB", "17", 1); /* more than one m16 tile */
    setenv("HEARTH_CUDA_MEM_LIMIT", "3X", 1);
    setenv("HEARTH_CUDA_ATTN_DEC_MAX", "1000", 1); /* not a power of two */
    setenv("HEARTH_CUDA_PFATTN_MIN", "4", 1);
    setenv("HEARTH_CUDA_MVF_NORM_PART", "48", 1); /* not a multiple of 32 */
    setenv("HEARTH_CUDA_AT_MIN_SPAN", "48", 1);
    setenv("HEARTH_CUDA_DATTN_STAGE", "99999999", 1);
    setenv("HEARTH_CUDA_MVF_PS", "4", 1);
    setenv("HEARTH_CUDA_MVF_PS_BPS", "17", 1);
    setenv("HEARTH_CUDA_GRAPHS", "", 1); /* empty: unset */
    cuda_knobs k;
    cuda_knobs_from_env(&k);
    assert_true(k.graphs);
    assert_int_equal(k.seg_layers, 24);
    assert_int_equal(k.seg_grow, 8);
    assert_int_equal(k.drop, 0);
    assert_int_equal(k.x_cols, 1000);
    assert_int_equal(k.x_skip, 0);
    assert_int_equal(k.mvs, 4);
    assert_int_equal(k.pq_nw, 8);
    assert_int_equal(k.mem_limit, 0);
    assert_int_equal(k.attn_dec_max, 0);
    assert_int_equal(k.pfattn_min, 0);
    assert_int_equal(k.mvf_norm_part, 0);
    assert_int_equal(k.at_min_span, 32);
    assert_int_equal(k.dattn_stage, 65536);
    assert_int_equal(k.mvf_ps, 2);
    assert_int_equal(k.mvf_ps_bps, 0);
    assert_int_equal(k.attn_tc_rpb, 0);
    setenv("HEARTH_CUDA_MEM_LIMIT", "-5", 1);
    cuda_knobs_from_env(&k);
    assert_int_equal(k.mem_limit, 0);
    clear_vars();
}

/* The context keeps what it was created with; the writable view is what tests change. */
static void test_context(void **state) {
    (void)state;
    NEED_GPU();
    assert_int_equal(cuda_ctx_knobs(g_ctx)->seg_grow, 8); /* created with nothing set */
    setenv("HEARTH_CUDA_SEG_GROW", "3", 1);
    assert_int_equal(cuda_ctx_knobs(g_ctx)->seg_grow, 8);
    cuda_ctx_knobs_edit(g_ctx)->seg_grow = 4;
    assert_int_equal(cuda_ctx_knobs(g_ctx)->seg_grow, 4);
    clear_vars();
}

int main(void) {
    clear_vars();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_context),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
