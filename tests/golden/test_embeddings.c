/* Golden test: mean-pooled, normalised sentence embeddings of stories260K against the
 * reference in fixtures/embeddings (cosine similarity >= 0.9999), through the public API
 * exactly as the server's /api/embed uses it. The fixture's token ids are checked too. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hearth.h"

static const char *shared_dir(void) {
    const char *s = getenv("HEARTH_TEST_SHARED");
    return s ? s : "../shared";
}

static void test_embeddings_match_reference(void **state) {
    (void)state;
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/fixtures/embeddings/stories260K.jsonl", shared_dir());
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s: the shared fixtures are required", path);
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared_dir());
    hearth_model *m = NULL;
    hearth_model_params mp = hearth_model_default_params();
    assert_int_equal(hearth_model_load(path, &mp, &m, err, sizeof err), HEARTH_OK);
    hearth_context_params cp = hearth_context_default_params();
    cp.embeddings = true;
    cp.n_ctx = 512;
    cp.n_threads = 1;
    cp.kv_type = HEARTH_KV_F32;
    hearth_context *c = NULL;
    assert_int_equal(hearth_context_new(m, &cp, &c, err, sizeof err), HEARTH_OK);
    int32_t ne = hearth_model_n_embd(m);
    float *emb = calloc((size_t)ne, sizeof *emb);
    hearth_batch b = hearth_batch_init(512);
    char line[1 << 16];
    int n_cases = 0;
    double worst = 1.0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        const char *text = json_string_value(json_object_get(o, "text"));
        json_t *ids = json_object_get(o, "ids"), *ref = json_object_get(o, "embedding");
        hearth_token *toks = NULL;
        size_t n = 0;
        assert_int_equal(hearth_tokenize(m, text, strlen(text), HEARTH_TOK_ADD_SPECIAL, &toks, &n, err, sizeof err), HEARTH_OK);
        assert_int_equal(n, json_array_size(ids));
        for (size_t i = 0; i < n; i++) assert_int_equal(toks[i], json_integer_value(json_array_get(ids, i)));
        hearth_kv_clear(c);
        hearth_batch_clear(&b);
        for (size_t i = 0; i < n; i++) hearth_batch_add(&b, toks[i], (int32_t)i, 0, true);
        assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
        assert_int_equal(hearth_get_embeddings_seq(c, 0, emb, (size_t)ne), HEARTH_OK);
        assert_int_equal(json_array_size(ref), (size_t)ne);
        double dot = 0, na = 0, nb = 0;
        for (int32_t j = 0; j < ne; j++) {
            double r = json_real_value(json_array_get(ref, (size_t)j));
            dot += r * emb[j];
            na += r * r;
            nb += (double)emb[j] * emb[j];
        }
        double cosv = dot / (sqrt(na) * sqrt(nb));
        if (cosv < worst) worst = cosv;
        if (cosv < 0.9999) fail_msg("'%s': cosine %.6f < 0.9999", text, cosv);
        n_cases++;
        hearth_free(toks);
        json_decref(o);
    }
    printf("embeddings: %d cases, worst cosine %.7f\n", n_cases, worst);
    assert_true(n_cases > 0);
    /* embeddings requested from a context without them is an error, not garbage */
    cp.embeddings = false;
    hearth_context *c2 = NULL;
    assert_int_equal(hearth_context_new(m, &cp, &c2, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_get_embeddings_seq(c2, 0, emb, (size_t)ne), HEARTH_E_INVALID);
    hearth_context_free(c2);
    hearth_batch_free(&b);
    free(emb);
    hearth_context_free(c);
    hearth_model_free(m);
    fclose(f);
}

int main(void) {
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_embeddings_match_reference) };
    return cmocka_run_group_tests_name("embeddings", tests, NULL, NULL);
}
