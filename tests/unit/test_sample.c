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

/* Logits that stress the order: few distinct values (many ties), +-inf and NaN; pattern 0
 * random, 1 all equal, 2 all -inf but a few, 3 ascending, 4 descending. */
static void odd_logits(float *l, int n, unsigned seed, int pattern) {
    srand(seed);
    for (int i = 0; i < n; i++) {
        int r = rand() % 64;
        float v = (float)(rand() % 7) - 3.0f;
        if (pattern == 1) v = 1.0f;
        if (pattern == 2) v = r < 2 ? v : -INFINITY;
        if (pattern == 3) v = (float)(i / 3);
        if (pattern == 4) v = (float)(-i / 5);
        if (pattern == 0 && r == 0) v = -INFINITY;
        if (pattern == 0 && r == 1) v = NAN;
        if (pattern == 0 && r == 2 && seed % 3 == 0) v = INFINITY;
        if (pattern == 0 && r == 3) v = -0.0f;
        l[i] = v;
    }
}

/* The candidate-array path (every logit a candidate, NaN as -inf, quickselect + sort):
 * the reference the scans of select.c must equal. */
static size_t ref_top_k(const float *l, int n, int k, sample_cand *c) {
    for (int i = 0; i < n; i++) c[i] = (sample_cand){ i, isnan(l[i]) ? -INFINITY : l[i], 0 };
    return sample_top_k(c, (size_t)n, k);
}

static void test_scans_match_candidates(void **state) {
    (void)state;
    static const int ns[] = { 1, 2, 15, 16, 17, 100, 1000, 5000, 32000 };
    static const int ks[] = { 1, 2, 3, 16, 40, 100, 255, 256, 257, 1000, 5000 };
    sample_cand *a = malloc(32000 * sizeof *a), *b = malloc(32000 * sizeof *b);
    float *l = malloc(32000 * sizeof *l);
    int checked = 0;
    for (unsigned seed = 1; seed <= 6; seed++)
        for (int pat = 0; pat < 5; pat++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                int n = ns[ni];
                odd_logits(l, n, seed * 31 + (unsigned)ni, pat);
                sample_cand *c = b;
                ref_top_k(l, n, 0, c);
                assert_int_equal(sample_argmax_f(l, (size_t)n), c[0].id);
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                    int k = ks[ki];
                    if (k > n) continue;
                    size_t m = ref_top_k(l, n, k, b);
                    assert_int_equal(sample_top_k_f(l, (size_t)n, (size_t)k, a), m);
                    for (size_t i = 0; i < m; i++) {
                        assert_int_equal(a[i].id, b[i].id);
                        assert_memory_equal(&a[i].logit, &b[i].logit, sizeof(float));
                    }
                    checked++;
                }
            }
    assert_true(checked > 1000);
    free(a);
    free(b);
    free(l);
}

/* The whole chain against the same steps run over a candidate array, for bias, penalties
 * and top-k settings on both sides of the scan's limits: greedy gives the reference's
 * token, sampling one of the reference's survivors (top-k 1: its only one). */
static void test_chain_matches_candidates(void **state) {
    (void)state;
    int n = 3000;
    float *l = malloc((size_t)n * sizeof *l);
    sample_cand *c = malloc((size_t)n * sizeof *c);
    hearth_logit_bias bias[2] = { { 5, 4.0f }, { 9, -INFINITY } };
    static const int ks[] = { 0, 1, 40, 300, 2999, 5000 };
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (int variant = 0; variant < 3; variant++) {
            hearth_sampler_params p = hearth_sampler_default_params();
            p.seed = 77;
            p.top_k = ks[ki];
            p.temperature = variant == 2 ? 0.0f : 0.9f;
            if (variant >= 1) p.logit_bias = bias, p.n_logit_bias = 2, p.repeat_penalty = 1.3f;
            hb_err e;
            hb_err_clear(&e);
            hearth_sampler *s = sample_new(n, &p, &e);
            assert_non_null(s);
            hearth_token hist[8];
            int nh = 0;
            for (int step = 0; step < 8; step++) {
                odd_logits(l, n, 100u + (unsigned)step, step % 2 ? 0 : 3);
                /* the reference: candidates, bias, penalties (distinct tokens), steps */
                for (int i = 0; i < n; i++) c[i] = (sample_cand){ i, isnan(l[i]) ? -INFINITY : l[i], 0 };
                if (p.n_logit_bias)
                    for (int i = 0; i < 2; i++) c[bias[i].token].logit += bias[i].bias;
                for (int i = 0; i < nh && p.repeat_penalty != 1.0f; i++) {
                    bool seen = false;
                    for (int j = 0; j < i; j++) seen |= hist[j] == hist[i];
                    float *v = &c[hist[i]].logit;
                    if (!seen) *v = *v > 0 ? *v / p.repeat_penalty : *v * p.repeat_penalty;
                }
                for (int i = 0; i < n; i++)
                    if (isnan(c[i].logit)) c[i].logit = -INFINITY;
                if (p.temperature > 0.0f) { /* the draw must land among the reference's survivors */
                    size_t m = sample_top_k(c, (size_t)n, p.top_k);
                    sample_softmax(c, m, 1.0f);
                    m = sample_top_p(c, m, p.top_p);
                    sample_softmax(c, m, p.temperature);
                    hearth_token got = hearth_sampler_sample(s, l);
                    bool among = false;
                    for (size_t i = 0; i < m; i++) among |= c[i].id == got;
                    assert_true(among);
                    hist[nh++] = got;
                    continue;
                }
                hearth_token got = hearth_sampler_sample(s, l);
                sample_top_k(c, (size_t)n, 0); /* the full sort: c[0] is the reference's best */
                assert_int_equal(got, c[0].id);
                hist[nh++] = got;
            }
            hearth_sampler_free(s);
        }
    free(c);
    free(l);
}

/* Penalties that only lower logits skip the penalized copy of the vocabulary and select
 * k + P candidates straight from the logits (sampler.c, penalized_top_k). A zero bias on
 * token 0 forces the copy, so two samplers with one seed, one with it and one without, must
 * draw the same tokens step by step: greedy and sampled, ties, NaN, infinities, windows
 * with repeats and with more distinct tokens than the fast path takes. */
static void test_penalty_fast_path_equals_copy(void **state) {
    (void)state;
    static const int ns[] = { 60, 3000 }, ks[] = { 1, 5, 40, 200, 250 }, lastn[] = { 8, 64, -1 };
    static const float rps[] = { 1.0f, 1.1f, 1.5f };
    hearth_logit_bias zero = { 0, 0.0f };
    float *l = malloc(3000 * sizeof *l);
    assert_non_null(l);
    long compared = 0;
    for (size_t ni = 0; ni < 2; ni++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (int v = 0; v < 12; v++) {
                int n = ns[ni];
                hearth_sampler_params p = hearth_sampler_default_params();
                p.seed = 1000u + (unsigned)(ki * 12 + (size_t)v);
                p.top_k = ks[ki];
                p.temperature = v % 2 ? 0.0f : 0.9f;
                p.top_p = v % 4 == 2 ? 0.8f : 1.0f;
                p.repeat_penalty = rps[(v / 2) % 3];
                p.presence_penalty = v >= 6 ? 0.5f : 0.0f;
                p.frequency_penalty = v % 3 == 0 ? 0.25f : 0.0f;
                p.repeat_last_n = lastn[(size_t)v % 3];
                hb_err e;
                hb_err_clear(&e);
                hearth_sampler *a = sample_new(n, &p, &e);
                hearth_sampler_params pb = p;
                pb.logit_bias = &zero, pb.n_logit_bias = 1;
                hearth_sampler *b = sample_new(n, &pb, &e);
                assert_non_null(a);
                assert_non_null(b);
                for (int i = 0; i < 90; i++) { /* a history that repeats the best tokens of pattern 3 */
                    hearth_token t = i % 3 == 0 ? n - 1 - (i % 20) : (hearth_token)((i * 7919) % n);
                    hearth_sampler_accept(a, t), hearth_sampler_accept(b, t);
                }
                for (int step = 0; step < 24; step++) {
                    odd_logits(l, n, 500u + (unsigned)step * 13u + (unsigned)v, step % 5);
                    hearth_token ta = hearth_sampler_sample(a, l), tb = hearth_sampler_sample(b, l);
                    assert_int_equal(ta, tb);
                    compared++;
                }
                hearth_sampler_free(a);
                hearth_sampler_free(b);
            }
    assert_int_equal(compared, 2 * 5 * 12 * 24);
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
        cmocka_unit_test(test_invalid_params), cmocka_unit_test(test_scans_match_candidates),
        cmocka_unit_test(test_chain_matches_candidates), cmocka_unit_test(test_penalty_fast_path_equals_copy),
    };
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
