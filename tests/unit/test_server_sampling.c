/* Unit tests for the server's OpenAI sampling extras: logit_bias and logprobs options
 * (types, ranges, what they turn on) and the log-probability computation (log-softmax of
 * the raw logits, the k most likely alternatives in order, ties by lower id). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/api.h"

/* Parses text as OpenAI top-level fields into a fresh o; returns the status. */
static int parse(const char *text, gen_opts *o) {
    hb_err e = { 0 };
    gen_opts_init(o, true);
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    int rc = gen_opts_parse(j, true, o, &e);
    if (rc) assert_true(strlen(e.msg) > 0);
    json_decref(j);
    return rc;
}

static void test_logit_bias_option(void **state) {
    (void)state;
    gen_opts o;
    assert_int_equal(parse("{\"logit_bias\":{\"5\":-100,\"7\":2.5}}", &o), HEARTH_OK);
    assert_int_equal(o.sp.n_logit_bias, 2);
    for (size_t i = 0; i < 2; i++) {
        const hearth_logit_bias *b = &o.sp.logit_bias[i];
        if (b->token == 5) assert_true(isinf(b->bias) && b->bias < 0); /* -100 bans */
        else assert_true(b->token == 7 && b->bias == 2.5f);
    }
    gen_opts_free(&o);
    assert_null(o.sp.logit_bias);
    const char *bad[] = { "{\"logit_bias\":[1]}", "{\"logit_bias\":{\"x\":1}}", "{\"logit_bias\":{\"-1\":1}}",
                          "{\"logit_bias\":{\"3\":101}}", "{\"logit_bias\":{\"3\":\"a\"}}", "{\"logit_bias\":{\"\":1}}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &o), HEARTH_E_INVALID);
        gen_opts_free(&o);
    }
}

static void test_logprobs_option(void **state) {
    (void)state;
    gen_opts o;
    struct { const char *text; int rc, top; } cases[] = {
        { "{}", HEARTH_OK, -1 },
        { "{\"logprobs\":false}", HEARTH_OK, -1 },
        { "{\"logprobs\":true}", HEARTH_OK, 0 },
        { "{\"logprobs\":true,\"top_logprobs\":5}", HEARTH_OK, 5 },
        { "{\"logprobs\":3}", HEARTH_OK, 3 }, /* the completions API: a count */
        { "{\"top_logprobs\":2}", HEARTH_E_INVALID, -1 },
        { "{\"logprobs\":true,\"top_logprobs\":21}", HEARTH_E_INVALID, -1 },
        { "{\"logprobs\":-1}", HEARTH_E_INVALID, -1 },
        { "{\"logprobs\":\"yes\"}", HEARTH_E_INVALID, -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(parse(cases[i].text, &o), cases[i].rc);
        if (cases[i].rc == HEARTH_OK) assert_int_equal(o.top_logprobs, cases[i].top);
        gen_opts_free(&o);
    }
}

static void test_logprobs_values(void **state) {
    (void)state;
    float logits[6] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 2.0f };
    double sum = 0;
    for (int i = 0; i < 6; i++) sum += exp(logits[i]);
    gen_lp lp;
    gen_logprobs(logits, 6, 4, 3, &lp);
    assert_int_equal(lp.tok, 4);
    assert_true(fabs(lp.lp - (0.5 - log(sum))) < 1e-5);
    assert_int_equal(lp.n_top, 3);
    hearth_token want[3] = { 1, 3, 5 }; /* 3.0 (id 1 before id 3), 3.0, 2.0 */
    for (int j = 0; j < 3; j++) {
        assert_int_equal(lp.top[j], want[j]);
        assert_true(fabs(lp.top_lp[j] - (logits[want[j]] - log(sum))) < 1e-5);
    }
    gen_logprobs(logits, 6, 2, 0, &lp);
    assert_int_equal(lp.n_top, 0);
    gen_logprobs(logits, 6, 0, 50, &lp); /* more than the vocabulary: all of it, capped at the maximum */
    assert_int_equal(lp.n_top, 6);
    assert_int_equal(lp.top[5], 2);
    double total = 0;
    for (int j = 0; j < 6; j++) total += exp(lp.top_lp[j]);
    assert_true(fabs(total - 1.0) < 1e-5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logit_bias_option),
        cmocka_unit_test(test_logprobs_option),
        cmocka_unit_test(test_logprobs_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
