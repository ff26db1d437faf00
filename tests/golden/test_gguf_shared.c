/* Golden tests for the GGUF reader over every real file in ../shared: models/, models/random/
 * and vocab/. Expected facts come from outside the reader:
 *  - vocab files: fixtures/tokenizer/vocabs.json (token count as loaded by llama.cpp,
 *    architecture, tokenizer model/pre, bos/eos ids);
 *  - models/random/<arch>.<TYPE>.gguf: the file name (architecture, llama.cpp file type
 *    number of TYPE from llama.h's llama_ftype enum), fixtures/logits/README.md (512-token
 *    vocab for every model);
 *  - stories260K: shared/README.md (llama, F32, 512-token vocab);
 *  - the file size from stat(2), so every tensor is checked to lie inside the file.
 * If ../shared is missing the tests fail with a clear message.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <jansson.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

static const char *shared_dir(void) {
    const char *s = getenv("HEARTH_TEST_SHARED");
    return s && *s ? s : "../shared";
}

static void require_shared(void) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/models", shared_dir());
    if (stat(p, &st) != 0) fail_msg("shared data not found at %s (set HEARTH_TEST_SHARED or provide ../shared)", p);
}

/* Opens path and checks the invariants every file must satisfy. Returns the open file. */
static gguf_file *open_checked(const char *path) {
    hb_err e;
    gguf_file *f = NULL;
    struct stat st;
    hb_err_clear(&e);
    if (gguf_open(path, &f, &e)) fail_msg("%s: %s", path, e.msg);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(gguf_file_size(f), (uint64_t)st.st_size);
    assert_true(gguf_version(f) == 2 || gguf_version(f) == 3);
    uint64_t a = gguf_alignment(f);
    assert_true(a && !(a & (a - 1)));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        assert_ptr_equal(gguf_find(f, kv->key.data), kv);
        assert_int_equal(kv->key.data[kv->key.len], 0);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_ptr_equal(gguf_find_tensor(f, t->name.data), t);
        const quant_traits *tr = quant_traits_of(t->type);
        assert_non_null(tr);
        uint64_t rows = (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        assert_int_equal(t->size, (uint64_t)t->ne[0] / tr->blck_size * tr->type_size * rows);
        assert_int_equal(t->offset % a, 0);
        if (gguf_data_offset(f) + t->offset + t->size > (uint64_t)st.st_size)
            fail_msg("%s: tensor %s lies outside the file", path, t->name.data);
    }
    return f;
}

static uint64_t n_tokens(const gguf_file *f) {
    hb_err e;
    const gguf_array *a = NULL;
    hb_err_clear(&e);
    if (gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &a, &e)) return 0;
    return a->n;
}

static const char *str_of(const gguf_file *f, const char *key) {
    hb_err e;
    const gguf_str *s;
    hb_err_clear(&e);
    return gguf_get_str(f, key, &s, &e) == HEARTH_OK ? s->data : NULL;
}

static void test_stories260k(void **state) {
    (void)state;
    require_shared();
    char p[1024];
    snprintf(p, sizeof p, "%s/models/stories260K.gguf", shared_dir());
    gguf_file *f = open_checked(p);
    assert_string_equal(str_of(f, "general.architecture"), "llama");
    assert_int_equal(n_tokens(f), 512);
    assert_true(gguf_n_tensors(f) > 0);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) assert_int_equal(gguf_tensor_at(f, i)->type, QT_F32);
    gguf_close(f);
}

/* llama.h's llama_ftype numbers for the TYPE part of the random model names. */
static const struct { const char *name; uint32_t ftype; int main_type; } k_ftypes[] = {
    { "F32", 0, QT_F32 }, { "F16", 1, QT_F16 }, { "Q4_0", 2, QT_Q4_0 }, { "Q4_1", 3, QT_Q4_1 },
    { "Q8_0", 7, QT_Q8_0 }, { "Q5_0", 8, QT_Q5_0 }, { "Q5_1", 9, QT_Q5_1 }, { "Q2_K", 10, QT_Q2_K },
    { "Q3_K_M", 12, -1 }, { "Q4_K_M", 15, -1 }, { "Q5_K_M", 17, -1 }, { "Q6_K", 18, QT_Q6_K },
    { "IQ4_NL", 25, QT_IQ4_NL }, { "IQ4_XS", 30, QT_IQ4_XS }, { "BF16", 32, QT_BF16 },
};

/* Checks one models/random file against the facts its name encodes. */
static void check_random(const char *dir, const char *fname) {
    char p[2304], arch[64], type[64];
    snprintf(p, sizeof p, "%s/%s", dir, fname);
    gguf_file *f = open_checked(p);
    const char *dot = strchr(fname, '.');
    assert_non_null(dot);
    snprintf(arch, sizeof arch, "%.*s", (int)(dot - fname), fname);
    snprintf(type, sizeof type, "%.*s", (int)(strlen(dot + 1) - 5), dot + 1);
    assert_string_equal(str_of(f, "general.architecture"), arch);
    if (strncmp(type, "lora", 4) == 0) {
        assert_string_equal(str_of(f, "adapter.type"), "lora");
        gguf_close(f);
        return;
    }
    assert_int_equal(n_tokens(f), 512);
    hb_err e;
    hb_err_clear(&e);
    uint32_t ft = 0;
    assert_int_equal(gguf_get_u32(f, "general.file_type", &ft, &e), 0);
    bool known = false;
    for (size_t i = 0; i < sizeof k_ftypes / sizeof k_ftypes[0]; i++) {
        if (strcmp(k_ftypes[i].name, type) != 0) continue;
        known = true;
        assert_int_equal(ft, k_ftypes[i].ftype);
        if (k_ftypes[i].main_type < 0) break;
        /* the named type is the most common among the 2-D weights */
        uint64_t cnt[QT_COUNT] = { 0 };
        for (uint64_t t = 0; t < gguf_n_tensors(f); t++)
            if (gguf_tensor_at(f, t)->n_dims >= 2) cnt[gguf_tensor_at(f, t)->type]++;
        for (int q = 0; q < QT_COUNT; q++) assert_true(cnt[q] <= cnt[k_ftypes[i].main_type]);
    }
    if (!known) fail_msg("%s: unexpected type name '%s' in the file name", p, type);
    gguf_close(f);
}

static void test_random_models(void **state) {
    (void)state;
    require_shared();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/random", shared_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".gguf") != 0) continue;
        check_random(dir, de->d_name);
        n++;
    }
    closedir(d);
    assert_true(n >= 30);
}

static void check_json_str(const gguf_file *f, json_t *v, const char *key, const char *path) {
    json_t *j = json_object_get(v, key);
    const char *got = str_of(f, key);
    if (json_is_null(j) || !j) {
        if (got) fail_msg("%s: %s should be absent, found '%s'", path, key, got);
        return;
    }
    if (!got || strcmp(got, json_string_value(j)) != 0)
        fail_msg("%s: %s = '%s', expected '%s'", path, key, got ? got : "(absent)", json_string_value(j));
}

static void check_json_id(const gguf_file *f, json_t *v, const char *jkey, const char *key) {
    json_t *j = json_object_get(v, jkey);
    hb_err e;
    hb_err_clear(&e);
    uint32_t id;
    int rc = gguf_get_u32(f, key, &id, &e);
    if (!j || json_is_null(j)) {
        assert_int_equal(rc, HEARTH_E_INVALID);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(id, json_integer_value(j));
}

static void test_vocab_files(void **state) {
    (void)state;
    require_shared();
    char p[1024];
    json_error_t je;
    snprintf(p, sizeof p, "%s/fixtures/tokenizer/vocabs.json", shared_dir());
    json_t *root = json_load_file(p, 0, &je);
    if (!root) fail_msg("%s: %s", p, je.text);
    json_t *vocabs = json_object_get(root, "vocabs");
    assert_true(json_array_size(vocabs) >= 16);
    size_t i;
    json_t *v;
    json_array_foreach(vocabs, i, v) {
        snprintf(p, sizeof p, "%s/%s", shared_dir(), json_string_value(json_object_get(v, "gguf")));
        gguf_file *f = open_checked(p);
        if (n_tokens(f) != (uint64_t)json_integer_value(json_object_get(v, "n_tokens")))
            fail_msg("%s: %llu tokens, expected %lld", p, (unsigned long long)n_tokens(f),
                     (long long)json_integer_value(json_object_get(v, "n_tokens")));
        check_json_str(f, v, "general.architecture", p);
        check_json_str(f, v, "tokenizer.ggml.model", p);
        check_json_str(f, v, "tokenizer.ggml.pre", p);
        check_json_id(f, v, "bos_token_id", "tokenizer.ggml.bos_token_id");
        check_json_id(f, v, "eos_token_id", "tokenizer.ggml.eos_token_id");
        gguf_close(f);
    }
    json_decref(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_random_models),
        cmocka_unit_test(test_vocab_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
