/* Golden tokenizer tests against ../shared/fixtures/tokenizer (ids and detokenized text
 * produced by llama.cpp; see shared/fixtures/README.md).
 *
 * For every vocab in vocabs.json (loaded once, vocab-only) and every line of its fixture
 * files (the corpus file and llama.cpp's own vectors): tokenize with the line's flags and
 * compare ids exactly; detokenize the expected ids (unparse_special) and compare with
 * `detok`. Prints a per-vocab pass table. One cmocka test per vocab.
 *
 * Round trip: detokenize(tokenize(text)) == text is checked where the family guarantees
 * it — SentencePiece vocabs (byte fallback makes every character representable; the
 * detokenizer removes the added leading space) and byte-level BPE vocabs without
 * clean_spaces, in the (false, false) mode, for texts whose ids hold no control/
 * user-defined token (those re-add SentencePiece's leading space or strip whitespace).
 * WordPiece (lower-cases, drops accents) and BPE with clean_spaces (" ." -> ".") are lossy.
 *
 * HEARTH_TOK_VERBOSE=1 prints every mismatch.
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hearth.h"
#include "model/model.h"
#include "tokenizer/tok_internal.h"

#define MAX_VOCABS 32

typedef struct vocab_case {
    char name[64];
    char gguf[1600];
    char files[4][1600];
    int n_files;
    int total, ids_ok, detok_ok, rt_checked, rt_ok;
    double ms;
} vocab_case;

static char g_shared[1024];
static vocab_case g_cases[MAX_VOCABS];
static int g_n_cases;
static bool g_verbose;

static bool find_shared(void) {
    const char *env = getenv("HEARTH_TEST_SHARED");
    snprintf(g_shared, sizeof g_shared, "%s", env && *env ? env : "../shared");
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/fixtures/tokenizer/vocabs.json", g_shared);
    FILE *f = fopen(probe, "rb");
    if (!f) return false;
    fclose(f);
    return true;
}

static int load_manifest(void) {
    char path[1100];
    json_error_t je;
    snprintf(path, sizeof path, "%s/fixtures/tokenizer/vocabs.json", g_shared);
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "cannot parse %s: %s\n", path, je.text);
        return -1;
    }
    json_t *vocabs = json_object_get(root, "vocabs"), *v;
    size_t i;
    json_array_foreach(vocabs, i, v) {
        if (g_n_cases == MAX_VOCABS) break;
        vocab_case *c = &g_cases[g_n_cases++];
        json_t *fx = json_object_get(v, "fixtures"), *f;
        size_t k;
        snprintf(c->name, sizeof c->name, "%s", json_string_value(json_object_get(v, "name")));
        snprintf(c->gguf, sizeof c->gguf, "%s/%s", g_shared, json_string_value(json_object_get(v, "gguf")));
        snprintf(c->files[c->n_files++], sizeof c->files[0], "%s/%s", g_shared, json_string_value(json_object_get(fx, "dev")));
        json_array_foreach(json_object_get(fx, "llamacpp"), k, f) {
            if (c->n_files < 4) snprintf(c->files[c->n_files++], sizeof c->files[0], "%s/%s", g_shared, json_string_value(f));
        }
    }
    json_decref(root);
    return g_n_cases > 0 ? 0 : -1;
}

static bool only_plain_tokens(const hearth_model *m, const hearth_token *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t a = m->vocab->tok[ids[i]].attr;
        if (!(a & (TOK_ATTR_NORMAL | TOK_ATTR_BYTE))) return false;
    }
    return true;
}

static bool roundtrip_guaranteed(const hearth_model *m) {
    const tok_vocab *v = m->vocab;
    return v->kind == TOK_SPM || (v->kind == TOK_BPE && !v->clean_spaces);
}

static bool stream_matches(const hearth_model *m, const hearth_token *ids, size_t n, const char *want, size_t wlen) {
    hearth_detok_stream *s = hearth_detok_stream_new(m, HEARTH_DETOK_UNPARSE_SPECIAL);
    size_t got = 0;
    bool ok = s != NULL;
    for (size_t i = 0; ok && i <= n; i++) {
        const char *t;
        size_t l;
        hearth_status st = i < n ? hearth_detok_stream_push(s, ids[i], &t, &l) : hearth_detok_stream_flush(s, &t, &l);
        ok = st == HEARTH_OK && got + l <= wlen && memcmp(want + got, t, l) == 0;
        got += l;
    }
    hearth_detok_stream_free(s);
    if (!ok && g_verbose) fprintf(stderr, "stream output differs from detok \"%s\"\n", want);
    return ok && got == wlen;
}

/* Checks one fixture line; updates counters. */
static void check_line(vocab_case *c, const hearth_model *m, json_t *rec) {
    const char *text = json_string_value(json_object_get(rec, "text"));
    size_t tlen = json_string_length(json_object_get(rec, "text"));
    bool add = json_is_true(json_object_get(rec, "add_special"));
    bool parse = json_is_true(json_object_get(rec, "parse_special"));
    json_t *want = json_object_get(rec, "ids");
    json_t *detok = json_object_get(rec, "detok");
    int flags = (add ? HEARTH_TOK_ADD_SPECIAL : 0) | (parse ? HEARTH_TOK_PARSE_SPECIAL : 0);
    hearth_token *ids = NULL, *exp = NULL;
    size_t n = 0, ne = json_array_size(want);
    char err[512] = "";
    c->total++;
    hearth_status st = hearth_tokenize(m, text, tlen, flags, &ids, &n, err, sizeof err);
    bool ok = st == HEARTH_OK && n == ne;
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] == (hearth_token)json_integer_value(json_array_get(want, i));
    if (ok) c->ids_ok++;
    else if (g_verbose) {
        char *js = json_dumps(want, JSON_COMPACT);
        fprintf(stderr, "[%s] %s add=%d parse=%d ids mismatch (%s)\n  want %s\n  got  [", c->name,
                json_string_value(json_object_get(rec, "id")), add, parse, err, js);
        for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? ", " : "", ids[i]);
        fprintf(stderr, "]\n");
        free(js);
    }
    exp = calloc(ne + 1, sizeof *exp);
    for (size_t i = 0; i < ne; i++) exp[i] = (hearth_token)json_integer_value(json_array_get(want, i));
    if (json_is_string(detok)) {
        char *out = NULL;
        size_t olen = 0;
        st = hearth_detokenize(m, exp, ne, HEARTH_DETOK_UNPARSE_SPECIAL, &out, &olen, err, sizeof err);
        bool good = st == HEARTH_OK && olen == json_string_length(detok) && memcmp(out, json_string_value(detok), olen) == 0;
        /* The streaming form must give the same bytes (no clean_spaces to look ahead for). */
        if (good && !m->vocab->clean_spaces) good = stream_matches(m, exp, ne, json_string_value(detok), olen);
        if (good) c->detok_ok++;
        else if (g_verbose)
            fprintf(stderr, "[%s] %s detok mismatch\n  want \"%s\"\n  got  \"%s\"\n", c->name,
                    json_string_value(json_object_get(rec, "id")), json_string_value(detok), out ? out : err);
        hearth_free(out);
    } else c->detok_ok++;  /* no detok recorded for this line */
    if (!add && !parse && roundtrip_guaranteed(m) && ok && only_plain_tokens(m, exp, ne)) {
        char *out = NULL;
        size_t olen = 0;
        c->rt_checked++;
        if (hearth_detokenize(m, exp, ne, 0, &out, &olen, err, sizeof err) == HEARTH_OK && olen == tlen &&
            memcmp(out, text, tlen) == 0)
            c->rt_ok++;
        else if (g_verbose)
            fprintf(stderr, "[%s] %s round trip differs: \"%s\"\n", c->name, json_string_value(json_object_get(rec, "id")), out ? out : err);
        hearth_free(out);
    }
    free(exp);
    hearth_free(ids);
}

static void run_file(vocab_case *c, const hearth_model *m, const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *rec = json_loadb(line, (size_t)got, 0, &je);
        if (!rec) continue;
        check_line(c, m, rec);
        json_decref(rec);
    }
    free(line);
    fclose(f);
}

static void test_vocab(void **state) {
    vocab_case *c = *state;
    hearth_model_params p = hearth_model_default_params();
    hearth_model *m = NULL;
    char err[512] = "";
    p.vocab_only = true;
    uint64_t t0 = hb_now_ns();
    hearth_status st = hearth_model_load(c->gguf, &p, &m, err, sizeof err);
    if (st != HEARTH_OK) fail_msg("%s: load failed: %s", c->name, err);
    for (int i = 0; i < c->n_files; i++) run_file(c, m, c->files[i]);
    c->ms = (double)(hb_now_ns() - t0) / 1e6;
    hearth_model_free(m);
    printf("%-16s %5d/%-5d ids  %5d/%-5d detok  %4d/%-4d round-trip  %7.1f ms\n", c->name, c->ids_ok, c->total,
           c->detok_ok, c->total, c->rt_ok, c->rt_checked, c->ms);
    assert_int_equal(c->ids_ok, c->total);
    assert_int_equal(c->detok_ok, c->total);
    assert_int_equal(c->rt_ok, c->rt_checked);
}

static void test_shared_present(void **state) {
    (void)state;
    if (!g_n_cases) fail_msg("../shared/fixtures/tokenizer is missing or unreadable (set HEARTH_TEST_SHARED); it is required");
}

int main(void) {
    struct CMUnitTest tests[MAX_VOCABS + 1];
    size_t n = 0;
    g_verbose = getenv("HEARTH_TOK_VERBOSE") != NULL;
    if (!find_shared() || load_manifest() != 0) {
        fprintf(stderr, "test_tokenizer_fixtures: shared fixtures not found at '%s' (set HEARTH_TEST_SHARED)\n", g_shared);
        g_n_cases = 0;
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_shared_present);
        return _cmocka_run_group_tests("tokenizer_fixtures", tests, n, NULL, NULL);
    }
    const char *only = getenv("HEARTH_TOK_ONLY");
    for (int i = 0; i < g_n_cases; i++) {
        if (only && strcmp(only, g_cases[i].name) != 0) continue;
        tests[n++] = (struct CMUnitTest){ g_cases[i].name, test_vocab, NULL, NULL, &g_cases[i] };
    }
    return _cmocka_run_group_tests("tokenizer_fixtures", tests, n, NULL, NULL);
}
