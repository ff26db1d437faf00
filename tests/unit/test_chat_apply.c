/* Unit tests of hearth_chat_apply over real vocab files from the shared dir:
 *  - a model with tokenizer.chat_template renders exactly what hearth_template_render gives
 *    for that template with bos_token/eos_token taken from the vocab (read back through the
 *    public token API), messages, tools and add_generation_prompt;
 *  - a model without a template gets the documented ChatML default;
 *  - template_override wins; bad messages are HEARTH_E_INVALID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hearth.h"

static char g_path[1024];

static hearth_model *load(const char *rel) {
    const char *shared = getenv("HEARTH_TEST_SHARED");
    snprintf(g_path, sizeof g_path, "%s/%s", shared ? shared : "../shared", rel);
    hearth_model_params p = hearth_model_default_params();
    p.vocab_only = true;
    hearth_model *m = NULL;
    char err[512];
    if (hearth_model_load(g_path, &p, &m, err, sizeof err) != HEARTH_OK) fail_msg("load %s: %s", g_path, err);
    return m;
}

/* Text of a special token through the public API ("" when the vocab has none). */
static void token_text(const hearth_model *m, hearth_token t, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    if (t < 0) return;
    assert_int_equal(hearth_token_piece(m, t, HEARTH_DETOK_UNPARSE_SPECIAL, buf, cap - 1, &n), HEARTH_OK);
    assert_true(n < cap);
    buf[n] = '\0';
}

static const char k_msgs[] =
    "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"2+2?\"}]";

static void test_model_template(void **state) {
    (void)state;
    hearth_model *m = load("vocab/ggml-vocab-llama-bpe.gguf");
    const char *tmpl = hearth_model_chat_template(m);
    assert_non_null(tmpl);
    char bos[256], eos[256], vars[2048], err[512];
    token_text(m, hearth_token_bos(m), bos, sizeof bos);
    token_text(m, hearth_token_eos(m), eos, sizeof eos);
    assert_true(bos[0] && eos[0]);
    for (int gen = 0; gen < 2; gen++) {
        snprintf(vars, sizeof vars,
                 "{\"messages\": %s, \"tools\": null, \"add_generation_prompt\": %s, \"bos_token\": \"%s\", \"eos_token\": \"%s\"}",
                 k_msgs, gen ? "true" : "false", bos, eos);
        char *want = NULL, *got = NULL;
        /* the Llama 3 template calls strftime_now only when date_string is undefined; both
         * renders happen within the same day in practice, compare on the same basis */
        assert_int_equal(hearth_template_render(tmpl, vars, NULL, &want, err, sizeof err), HEARTH_OK);
        assert_int_equal(hearth_chat_apply(m, NULL, k_msgs, NULL, gen, &got, err, sizeof err), HEARTH_OK);
        assert_string_equal(got, want);
        assert_non_null(strstr(got, "Be brief."));
        hearth_free(want);
        hearth_free(got);
    }
    hearth_model_free(m);
}

static void test_default_chatml(void **state) {
    (void)state;
    hearth_model *m = load("models/stories260K.gguf");
    char *out = NULL, err[512];
    if (hearth_model_chat_template(m)) skip();
    assert_int_equal(hearth_chat_apply(m, NULL, "[{\"role\": \"user\", \"content\": \"Hi\"},"
                                                " {\"role\": \"assistant\", \"content\": null}]",
                                       NULL, true, &out, err, sizeof err), HEARTH_OK);
    /* ChatML as documented in chat.c: null content renders as empty text */
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n");
    hearth_free(out);
    assert_int_equal(hearth_chat_apply(m, NULL, "[{\"role\": \"user\", \"content\": \"Hi\"}]", "[]", false, &out, err, sizeof err), HEARTH_OK);
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n");
    hearth_free(out);
    hearth_model_free(m);
}

static void test_override_and_errors(void **state) {
    (void)state;
    hearth_model *m = load("vocab/ggml-vocab-llama-bpe.gguf");
    char *out = NULL, err[512];
    assert_int_equal(hearth_chat_apply(m, "{{ messages | length }}|{{ tools | tojson }}|{{ add_generation_prompt }}",
                                       k_msgs, "[{\"type\": \"function\"}]", true, &out, err, sizeof err), HEARTH_OK);
    assert_string_equal(out, "4|[{\"type\": \"function\"}]|True");
    hearth_free(out);
    out = (char *)1;
    assert_int_equal(hearth_chat_apply(m, NULL, "{\"role\": \"user\"}", NULL, true, &out, err, sizeof err), HEARTH_E_INVALID);
    assert_null(out);
    assert_int_equal(hearth_chat_apply(m, NULL, "[oops", NULL, true, &out, err, sizeof err), HEARTH_E_INVALID);
    assert_int_equal(hearth_chat_apply(m, NULL, k_msgs, "{}", true, &out, err, sizeof err), HEARTH_E_INVALID);
    assert_int_equal(hearth_chat_apply(m, "{{ raise_exception('no ' ~ messages[0].role) }}", k_msgs, NULL, true, &out, err, sizeof err),
                     HEARTH_E_TEMPLATE);
    assert_string_equal(err, "no system");
    assert_int_equal(hearth_chat_apply(NULL, NULL, k_msgs, NULL, true, &out, err, sizeof err), HEARTH_E_INVALID);
    hearth_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_template),
        cmocka_unit_test(test_default_chatml),
        cmocka_unit_test(test_override_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
