/* Unit tests for the server's request helpers: keep_alive durations, sampling options
 * (types and ranges), message normalisation, and the JSON string sanitiser. (Tool calls in
 * generated text: test_server_tools.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/api.h"

static void test_keep_alive(void **state) {
    (void)state;
    int64_t ns;
    hb_err e = { 0 };
    struct { const char *json; int64_t want; } ok[] = {
        { "\"5m\"", 300000000000LL }, { "\"1h30m\"", 5400000000000LL }, { "\"250ms\"", 250000000LL },
        { "\"-1\"", -1 }, { "\"-5m\"", -1 }, { "0", 0 }, { "30", 30000000000LL }, { "-1", -1 }, { "\"0\"", 0 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *v = json_loads(ok[i].json, JSON_DECODE_ANY, NULL);
        assert_int_equal(gen_keep_alive(v, 7, &ns, &e), HEARTH_OK);
        assert_true(ns == ok[i].want);
        json_decref(v);
    }
    assert_int_equal(gen_keep_alive(NULL, 7, &ns, &e), HEARTH_OK);
    assert_true(ns == 7);
    const char *bad[] = { "\"soon\"", "\"5x\"", "\"\"", "true", "[1]", "\"1e30h\"", "6.6e23", "1e10", "\"2m-3000000000000000000000m\"", "\"1h+5m\"", "\" 5m\"" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_int_equal(gen_keep_alive(v, 7, &ns, &e2), HEARTH_E_INVALID);
        json_decref(v);
    }
}

static void test_options(void **state) {
    (void)state;
    gen_opts o;
    hb_err e = { 0 };
    gen_opts_init(&o, false);
    assert_true(o.sp.temperature == 0.8f && o.sp.top_k == 40 && o.num_predict == -1);
    json_t *j = json_loads("{\"temperature\":0,\"top_k\":5,\"seed\":42,\"stop\":[\"a\",\"bc\"],\"num_predict\":9,\"num_ctx\":128}", 0, NULL);
    assert_int_equal(gen_opts_parse(j, false, &o, &e), HEARTH_OK);
    assert_true(o.sp.temperature == 0.0f && o.sp.top_k == 5 && o.sp.seed == 42 && o.seed_set);
    assert_int_equal(o.n_stops, 2);
    assert_string_equal(o.stops[1], "bc");
    assert_int_equal(o.num_predict, 9);
    assert_int_equal(o.num_ctx, 128);
    json_decref(j);
    gen_opts_free(&o);
    gen_opts_init(&o, true);
    assert_true(o.sp.temperature == 1.0f && o.sp.repeat_penalty == 1.0f);
    j = json_loads("{\"max_tokens\":3,\"stop\":\"x\"}", 0, NULL);
    assert_int_equal(gen_opts_parse(j, true, &o, &e), HEARTH_OK);
    assert_int_equal(o.num_predict, 3);
    assert_int_equal(o.n_stops, 1);
    json_decref(j);
    gen_opts_free(&o);
    const char *bad[] = { "{\"temperature\":\"hot\"}", "{\"top_p\":2}", "{\"stop\":[1]}", "{\"stop\":{}}",
                          "{\"num_ctx\":-1}", "{\"top_k\":1e12}", "[]", "{\"seed\":1.85e19}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        gen_opts_init(&o, false);
        j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_int_equal(gen_opts_parse(j, false, &o, &e2), HEARTH_E_INVALID);
        assert_true(strlen(e2.msg) > 0);
        json_decref(j);
        gen_opts_free(&o);
    }
    /* too many stop strings */
    json_t *many = json_object(), *arr = json_array();
    for (int i = 0; i < GEN_MAX_STOPS + 1; i++) json_array_append_new(arr, json_string("s"));
    json_object_set_new(many, "stop", arr);
    gen_opts_init(&o, false);
    assert_int_equal(gen_opts_parse(many, false, &o, &e), HEARTH_E_INVALID);
    gen_opts_free(&o);
    json_decref(many);
}

static void test_messages(void **state) {
    (void)state;
    hb_err e = { 0 };
    json_t *out = NULL;
    json_t *in = json_loads("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                            "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\":2}\"}}]}]", 0, NULL);
    assert_int_equal(gen_messages(in, &out, &e), HEARTH_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "content")), "ab");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "content")), "");
    json_t *args = json_object_get(json_object_get(json_array_get(json_object_get(json_array_get(out, 1), "tool_calls"), 0), "function"), "arguments");
    assert_int_equal(json_integer_value(json_object_get(args, "k")), 2);
    json_decref(in);
    json_decref(out);
    const char *bad[] = { "{}", "[1]", "[{\"content\":\"x\"}]", "[{\"role\":\"user\",\"content\":5}]",
                          "[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"aGk=\"]}]",
                          "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        in = json_loads(bad[i], 0, NULL);
        assert_int_not_equal(gen_messages(in, &out, &e2), HEARTH_OK);
        json_decref(in);
    }
}

static void test_jstr(void **state) {
    (void)state;
    json_t *j = jstr("ok\xff\xfe" "x\xe2\x82", 7);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), "ok\xEF\xBF\xBD\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBD");
    json_decref(j);
    j = jstr("h\xc3\xa9", 3);
    assert_string_equal(json_string_value(j), "h\xc3\xa9");
    json_decref(j);
}

static void test_go_template(void **state) {
    (void)state;
    assert_true(hearth_template_is_go("{{ if .System }}<|system|>{{ .System }}{{ end }}{{ .Prompt }}"));
    assert_true(hearth_template_is_go("{{- range .Messages }}{{ .Content }}{{- end }}"));
    assert_false(hearth_template_is_go("{% for m in messages %}{{ m.content }}{% endfor %}"));
    assert_false(hearth_template_is_go("{{ bos_token }}{{ messages[0]['content'] }}"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive), cmocka_unit_test(test_options),
        cmocka_unit_test(test_messages), cmocka_unit_test(test_jstr), cmocka_unit_test(test_go_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
