/* Unit tests for the sampling chain (src/sample): each step against a direct computation,
 * determinism per seed, distribution of draws, penalties and bias, parameter validation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sample/sample.h"

static float *rand_logits(int n, unsigned seed) {
    float *l = malloc((size_t)n * sizeof *l);
    srand(seed);
    for (int i = 0; i < n; i++) l[i] = (float)(rand() % 2000) / 100.0f - 10.0f;
    return l;
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_top_k_matches_sort(void **state) {
    (void)state;
    int n = 5000;
    float *l = rand_logits(n, 7);
    sample_cand *c = malloc((size_t)n * sizeof *c);
    for (int k = 1; k <= 300; k += 37) {
        for (int i = 0; i < n; i++) c[i] = (sample_cand){ i, l[i], 0 };
        size_t m = sample_top_k(c, (size_t)n, k);
        assert_int_equal(m, (size_t)k);
        float *s = malloc((size_t)n * sizeof *s);
        memcpy(s, l, (size_t)n * sizeof *s);
        qsort(s, (size_t)n, sizeof *s, cmp_desc);
        for (int i = 0; i < k; i++) assert_true(c[i].logit == s[i]);
        for (int i = 1; i < k; i++) assert_true(c[i - 1].logit >= c[i].logit);
        free(s);
    }
    free(c);
    free(l);
}

static void test_greedy_and_ties(void **state) {
    (void)state;
    float l[6] = { 1, 5, 3, 5, -2, 0 };
    hearth_sampler_params p = hearth_sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 1.0f;
    hb_err e;
    hb_err_clear(&e);
    hearth_sampler *s = sample_new(6, &p, &e);
    assert_non_null(s);
    assert_int_equal(hearth_sampler_sample(s, l), 1); /* tie 1 vs 3 -> lower id */
    hearth_sampler_free(s);
}

static void test_seed_determinism(void **state) {
    (void)state;
    int n = 1000;
    float *l = rand_logits(n, 3);
    hearth_sampler_params p = hearth_sampler_default_params();
    p.seed = 1234;
    p.top_k = 0;
    p.top_p = 0.95f;
    p.min_p = 0.01f;
    p.temperature = 1.5f;
    hb_err e;
    hb_err_clear(&e);
    hearth_sampler *a = sample_new(n, &p, &e), *b = sample_new(n, &p, &e);
    int same_other = 0;
    p.seed = 99;
    hearth_sampler *c = sample_new(n, &p, &e);
    for (int i = 0; i < 200; i++) {
        hearth_token x = hearth_sampler_sample(a, l), y = hearth_sampler_sample(b, l);
        assert_int_equal(x, y);
        same_other += hearth_sampler_sample(c, l) == x;
    }
    assert_true(same_other < 200);
    hearth_sampler_reset(a);
    hearth_sampler_reset(b);
    assert_int_equal(hearth_sampler_sample(a, l), hearth_sampler_sample(b, l));
    hearth_sampler_free(a);
    hearth_sampler_free(b);
    hearth_sampler_free(c);
    free(l);
}

static void test_distribution(void **state) {
    (void)state;
    float l[3] = { logf(0.25f), logf(0.75f), -INFINITY };
    hearth_sampler_params p = hearth_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.repeat_penalty = 1.0f;
    hb_err e;
    hb_err_clear(&e);
    hearth_sampler *s = sample_new(3, &p, &e);
    int cnt[3] = { 0 };
    for (int i = 0; i < 20000; i++) cnt[hearth_sampler_sample(s, l)]++;
    assert_int_equal(cnt[2], 0);
    assert_true(fabs(cnt[1] / 20000.0 - 0.75) < 0.02);
    hearth_sampler_free(s);
}

static void test_filters(void **state) {
    (void)state;
    /* probabilities 0.5, 0.3, 0.15, 0.05 */
    float pr[4] = { 0.5f, 0.3f, 0.15f, 0.05f };
    sample_cand c[4];
    for (int i = 0; i < 4; i++) c[i] = (sample_cand){ i, logf(pr[i]), 0 };
    size_t n = sample_top_k(c, 4, 0);
    sample_softmax(c, n, 1.0f);
    assert_true(fabsf(c[1].p - 0.3f) < 1e-6f);
    assert_int_equal(sample_top_p(c, n, 0.79f), 2);     /* 0.5 + 0.3 reaches 0.79 */
    for (int i = 0; i < 4; i++) c[i] = (sample_cand){ i, logf(pr[i]), 0 };
    sample_softmax(c, 4, 1.0f);
    assert_int_equal(sample_top_p(c, 4, 0.81f), 3);
    for (int i = 0; i < 4; i++) c[i] = (sample_cand){ i, logf(pr[i]), 0 };
    sample_softmax(c, 4, 1.0f);
    assert_int_equal(sample_min_p(c, 4, 0.25f), 3);     /* cut 0.125: keeps 0.5, 0.3, 0.15 */
    for (int i = 0; i < 4; i++) c[i] = (sample_cand){ i, logf(pr[i]), 0 };
    sample_softmax(c, 4, 1.0f);
    size_t t = sample_typical(c, 4, 0.5f);
    assert_true(t >= 1 && t < 4);
    assert_int_equal(sample_draw(c, t, 0.0), c[0].id);
}

static void test_penalties_and_bias(void **state) {
    (void)state;
    float l[4] = { 2.0f, 1.9f, 0.0f, -1.0f };
    hearth_logit_bias ban = { 1, -INFINITY };
    hearth_sampler_params p = hearth_sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 1.5f; /* 2.0 -> 1.333 */
    p.repeat_last_n = 4;
    hb_err e;
    hb_err_clear(&e);
    hearth_sampler *s = sample_new(4, &p, &e);
    hearth_sampler_accept(s, 0);
    assert_int_equal(hearth_sampler_sample(s, l), 1);
    hearth_sampler_free(s);
    p.repeat_penalty = 1.0f;
    p.logit_bias = &ban;
    p.n_logit_bias = 1;
    p.frequency_penalty = 1.0f;
    s = sample_new(4, &p, &e);
    hearth_sampler_accept(s, 0);
    hearth_sampler_accept(s, 0);
    hearth_sampler_accept(s, 0); /* 2.0 - 3 = -1.0; token 1 banned -> token 2 wins */
    assert_int_equal(hearth_sampler_sample(s, l), 2);
    hearth_sampler_free(s);
}

static void test_invalid_params(void **state) {
    (void)state;
    hb_err e;
    hearth_sampler_params p = hearth_sampler_default_params();
    p.repeat_penalty = 0;
    hb_err_clear(&e);
    assert_null(sample_new(10, &p, &e));
    assert_int_equal(e.code, HEARTH_E_INVALID);
    p = hearth_sampler_default_params();
    p.temperature = NAN;
    hb_err_clear(&e);
    assert_null(sample_new(10, &p, &e));
    hearth_logit_bias b = { 10, 1.0f };
    p = hearth_sampler_default_params();
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    hb_err_clear(&e);
    assert_null(sample_new(10, &p, &e));
    assert_non_null(strstr(e.msg, "out of range"));
    hb_err_clear(&e);
    assert_null(sample_new(0, NULL, &e));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_k_matches_sort), cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_seed_determinism), cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_filters), cmocka_unit_test(test_penalties_and_bias),
        cmocka_unit_test(test_invalid_params),
    };
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
