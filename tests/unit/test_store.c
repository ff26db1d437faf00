/* Unit tests for src/store: name parsing, digests, manifests, the Modelfile parser (incl.
 * hostile input) and store operations in a temporary directory with the shared
 * stories260K.gguf (create with its import by copy, list, resolve, info, copy, remove). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "store/store.h"

static void test_names(void **state) {
    (void)state;
    store_name n;
    hb_err e = { 0 };
    char d[600];
    assert_int_equal(store_name_parse("stories", &n, &e), HEARTH_OK);
    assert_string_equal(n.host, "registry.ollama.ai");
    assert_string_equal(n.ns, "library");
    assert_string_equal(n.model, "stories");
    assert_string_equal(n.tag, "latest");
    store_name_display(&n, d, sizeof d);
    assert_string_equal(d, "stories:latest");
    assert_int_equal(store_name_parse("me/tiny:q8", &n, &e), HEARTH_OK);
    assert_string_equal(n.ns, "me");
    assert_string_equal(n.tag, "q8");
    store_name_display(&n, d, sizeof d);
    assert_string_equal(d, "me/tiny:q8");
    assert_int_equal(store_name_parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", &n, &e), HEARTH_OK);
    assert_string_equal(n.host, "hf.co");
    assert_string_equal(n.ns, "bartowski");
    assert_string_equal(n.model, "Llama-3.2-1B-Instruct-GGUF");
    assert_string_equal(n.tag, "Q4_K_M");
    assert_int_equal(store_name_parse("HuggingFace.co/u/r", &n, &e), HEARTH_OK);
    assert_string_equal(n.host, "hf.co");
    assert_string_equal(n.tag, "latest");
    assert_int_equal(store_name_parse("127.0.0.1:5000/library/m:v1", &n, &e), HEARTH_OK);
    assert_string_equal(n.host, "127.0.0.1:5000");
    assert_string_equal(n.tag, "v1");
    const char *bad[] = { "", "../etc", "a/../b", "a/b/c/d", "m:", "m:..", "-x", ".hidden", "a b", "m:t/x",
                          "/abs", "a//b", "m:t:u", "x\n", "ns/..", "solo.tmp-x", "m:v.tmp-1", "a.tmp-/m" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        assert_int_equal(store_name_parse(bad[i], &n, &e2), HEARTH_E_INVALID);
        assert_true(strlen(e2.msg) > 0);
    }
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(store_name_parse(longname, &n, &e), HEARTH_E_INVALID);
}

static void test_digests(void **state) {
    (void)state;
    char d[72];
    /* FIPS 180-2 test vector for "abc". */
    store_sha256_buf("abc", 3, d);
    assert_string_equal(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(store_digest_valid(d, false));
    assert_false(store_digest_valid("sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false));
    assert_true(store_digest_valid("sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", true));
    assert_false(store_digest_valid("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false));
    assert_false(store_digest_valid("sha256:ba78", false));
    assert_false(store_digest_valid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", false));
    assert_false(store_digest_valid("md5:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false));
    assert_false(store_digest_valid("sha256:../../../../etc/passwd", false));
    assert_false(store_digest_valid(NULL, false));
}

#define DG "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void test_manifest(void **state) {
    (void)state;
    store_manifest m;
    hb_err e = { 0 };
    const char *good = "{\"schemaVersion\":2,\"mediaType\":\"x\",\"config\":{\"mediaType\":\"c\",\"digest\":\"" DG "\",\"size\":3},"
                       "\"layers\":[{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"" DG "\",\"size\":1234567890123}]}";
    assert_int_equal(store_manifest_parse(good, strlen(good), &m, &e), HEARTH_OK);
    assert_int_equal(m.n_layers, 1);
    assert_true(m.layers[0].size == 1234567890123ull);
    assert_non_null(store_manifest_find(&m, STORE_MT_MODEL));
    assert_null(store_manifest_find(&m, STORE_MT_TEMPLATE));
    char *dump = store_manifest_dump(&m);
    store_manifest m2;
    assert_int_equal(store_manifest_parse(dump, strlen(dump), &m2, &e), HEARTH_OK);
    assert_memory_equal(&m.layers[0], &m2.layers[0], sizeof m.layers[0]);
    assert_memory_equal(&m.config, &m2.config, sizeof m.config);
    free(dump);
    const char *bad[] = {
        "", "[]", "{", "{\"schemaVersion\":3,\"config\":{},\"layers\":[]}",
        "{\"config\":{\"digest\":\"sha256:zz\",\"size\":1},\"layers\":[]}",
        "{\"config\":{\"digest\":\"" DG "\",\"size\":-1},\"layers\":[]}",
        "{\"config\":{\"digest\":\"" DG "\",\"size\":1}}",
        "{\"config\":{\"digest\":\"" DG "\",\"size\":1},\"layers\":[{\"digest\":\"" DG "\",\"size\":\"1\"}]}",
        "{\"config\":{\"digest\":\"" DG "\",\"size\":1},\"layers\":[7]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        assert_int_not_equal(store_manifest_parse(bad[i], strlen(bad[i]), &m, &e2), HEARTH_OK);
    }
    /* more layers than the cap */
    size_t cap = 100000, len = 0;
    char *big = malloc(cap);
    len += (size_t)snprintf(big, cap, "{\"config\":{\"digest\":\"" DG "\",\"size\":1},\"layers\":[");
    for (int i = 0; i < STORE_MAX_LAYERS + 1; i++)
        len += (size_t)snprintf(big + len, cap - len, "%s{\"digest\":\"" DG "\",\"size\":1}", i ? "," : "");
    len += (size_t)snprintf(big + len, cap - len, "]}");
    assert_int_equal(store_manifest_parse(big, len, &m, &e), HEARTH_E_FORMAT);
    free(big);
}

static void test_modelfile(void **state) {
    (void)state;
    store_modelfile mf;
    hb_err e = { 0 };
    const char *text = "# a comment\n"
                       "from ./model.gguf\n"
                       "PARAMETER temperature 0.7\n"
                       "PARAMETER stop \"<|im_end|>\"\n"
                       "PARAMETER stop \"say \\\"hi\\\"\"\n"
                       "PARAMETER num_ctx 4096\n"
                       "TEMPLATE \"\"\"{% for m in messages %}\n{{ m.content }}\n{% endfor %}\"\"\"\n"
                       "SYSTEM You are terse.   \n"
                       "MESSAGE user Hello there\n"
                       "MESSAGE assistant \"\"\"Hi!\nHow can I help?\"\"\"\n"
                       "LICENSE \"\"\"MIT\"\"\"\n";
    assert_int_equal(store_modelfile_parse(text, strlen(text), &mf, &e), HEARTH_OK);
    assert_string_equal(mf.from, "./model.gguf");
    assert_int_equal(mf.n_params, 4);
    assert_string_equal(mf.params[0].key, "temperature");
    assert_string_equal(mf.params[0].value, "0.7");
    assert_string_equal(mf.params[1].value, "<|im_end|>");
    assert_string_equal(mf.params[2].value, "say \"hi\"");
    assert_string_equal(mf.tmpl, "{% for m in messages %}\n{{ m.content }}\n{% endfor %}");
    assert_string_equal(mf.system, "You are terse.");
    assert_int_equal(mf.n_messages, 2);
    assert_string_equal(mf.messages[0].key, "user");
    assert_string_equal(mf.messages[0].value, "Hello there");
    assert_string_equal(mf.messages[1].value, "Hi!\nHow can I help?");
    assert_string_equal(mf.license, "MIT");
    store_modelfile_free(&mf);

    const char *bad[] = {
        "PARAMETER temperature 1\n",                 /* no FROM */
        "FROM x\nBOGUS y\n",                          /* unknown command */
        "FROM x\nTEMPLATE \"\"\"never closed\n",      /* unterminated block */
        "FROM x\nSYSTEM \"open\n",                    /* unterminated quote */
        "FROM x\nPARAMETER nonsense 1\n",             /* unknown parameter */
        "FROM x\nPARAMETER num_ctx lots\n",           /* not an integer */
        "FROM x\nPARAMETER temperature nan\n",        /* not finite */
        "FROM x\nPARAMETER top_k\n",                  /* missing value */
        "FROM x\nPARAMETER num_ctx -5\n",             /* out of the range generation accepts */
        "FROM x\nPARAMETER top_k 9999999999999\n",
        "FROM x\nPARAMETER temperature 101\n",
        "FROM x\nPARAMETER top_p 1.5\n",
        "FROM x\nMESSAGE robot hi\n",                 /* bad role */
        "FROM x\nMESSAGE user\n",                     /* no text */
        "FROM x\nMESSAGE assistant \"\"\n",
        "FROM x\nSYSTEM \"a\" trailing\n",            /* junk after quote */
        "FROM\n",                                     /* empty FROM */
        "FROM x\nADAPTER ./lora.gguf\n",              /* unsupported */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e2 = { 0 };
        assert_int_not_equal(store_modelfile_parse(bad[i], strlen(bad[i]), &mf, &e2), HEARTH_OK);
        assert_non_null(strstr(e2.msg, "Modelfile"));
    }
    /* embedded NUL */
    assert_int_equal(store_modelfile_parse("FROM x\0y", 8, &mf, &e), HEARTH_E_INVALID);
    /* too many items */
    size_t cap = 20 * (STORE_MODELFILE_MAX_ITEMS + 10), len = 0;
    char *many = malloc(cap);
    len += (size_t)snprintf(many, cap, "FROM x\n");
    for (int i = 0; i < STORE_MODELFILE_MAX_ITEMS + 1; i++) len += (size_t)snprintf(many + len, cap - len, "PARAMETER top_k 1\n");
    hb_err e3 = { 0 };
    assert_int_equal(store_modelfile_parse(many, len, &mf, &e3), HEARTH_E_INVALID);
    free(many);
    /* garbage bytes never crash */
    unsigned seed = 12345;
    char junk[512];
    for (int it = 0; it < 2000; it++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof junk);
        static const char alphabet[] = "FROM \"\"\"PARAMETER stop\n#x\\ ";
        for (size_t i = 0; i < n; i++) junk[i] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
        hb_err e4 = { 0 };
        if (store_modelfile_parse(junk, n, &mf, &e4) == HEARTH_OK) store_modelfile_free(&mf);
    }
}

/* ---- store operations on a temporary directory ---- */

static char g_root[256];

static const char *shared_model(void) {
    static char path[1024];
    const char *s = getenv("HEARTH_TEST_SHARED");
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", s ? s : "../shared");
    return path;
}

static bool same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = false;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && (!needle || strstr(de->d_name, needle))) n++;
    if (d) closedir(d);
    return n;
}

static void test_store_ops(void **state) {
    (void)state;
    char err[512], mf[2048], blobs[300];
    snprintf(g_root, sizeof g_root, "/tmp/hearth-test-store-XXXXXX");
    assert_non_null(mkdtemp(g_root));
    snprintf(blobs, sizeof blobs, "%s/blobs", g_root);
    assert_true(access(shared_model(), R_OK) == 0);
    snprintf(mf, sizeof mf, "FROM %s\nPARAMETER temperature 0.25\nPARAMETER stop \"END\"\nSYSTEM be brief\n", shared_model());
    assert_int_equal(hearth_store_create(g_root, "tiny", mf, strlen(mf), NULL, NULL, NULL, err, sizeof err), HEARTH_OK);
    /* resolve gives a blob with the source's bytes */
    char *path = NULL;
    assert_int_equal(hearth_store_resolve(g_root, "tiny:latest", &path, err, sizeof err), HEARTH_OK);
    assert_true(same_bytes(path, shared_model()));
    char dg[72];
    uint64_t size = 0;
    hb_err e = { 0 };
    assert_int_equal(store_sha256_file(path, dg, &size, &e), HEARTH_OK);
    assert_non_null(strstr(path, dg + 7));
    hearth_free(path);
    /* info */
    char *info = NULL;
    assert_int_equal(hearth_store_info(g_root, "tiny", &info, err, sizeof err), HEARTH_OK);
    json_t *j = json_loads(info, 0, NULL);
    hearth_free(info);
    assert_string_equal(json_string_value(json_object_get(j, "system")), "be brief");
    assert_true(json_real_value(json_object_get(json_object_get(j, "parameters"), "temperature")) == 0.25);
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(j, "parameters"), "stop"), 0)), "END");
    json_decref(j);
    /* derived model: FROM a stored name, overriding SYSTEM, inheriting params */
    const char *mf2 = "FROM tiny\nSYSTEM be verbose\n";
    assert_int_equal(hearth_store_create(g_root, "me/tiny2:v1", mf2, strlen(mf2), NULL, NULL, NULL, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_store_info(g_root, "me/tiny2:v1", &info, err, sizeof err), HEARTH_OK);
    j = json_loads(info, 0, NULL);
    hearth_free(info);
    assert_string_equal(json_string_value(json_object_get(j, "system")), "be verbose");
    assert_true(json_real_value(json_object_get(json_object_get(j, "parameters"), "temperature")) == 0.25);
    json_decref(j);
    /* list, copy */
    assert_int_equal(hearth_store_copy(g_root, "tiny", "tiny-copy:x", err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_store_copy(g_root, "missing", "y", err, sizeof err), HEARTH_E_NOT_FOUND);
    hearth_store_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(hearth_store_list(g_root, &v, &n, err, sizeof err), HEARTH_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].name, "me/tiny2:v1");
    assert_string_equal(v[1].name, "tiny-copy:x");
    assert_string_equal(v[2].name, "tiny:latest");
    assert_string_equal(v[1].digest, v[2].digest); /* same manifest bytes */
    hearth_free(v);
    /* remove keeps shared blobs until the last reference goes */
    int nblobs = count_files(blobs, NULL);
    assert_int_equal(hearth_store_remove(g_root, "tiny", err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_store_remove(g_root, "tiny", err, sizeof err), HEARTH_E_NOT_FOUND);
    assert_int_equal(count_files(blobs, NULL), nblobs);
    /* a copy whose blobs went away meanwhile (what a removal racing it would leave) is
     * refused and writes no manifest: store_manifest_publish checks under the lock */
    assert_int_equal(hearth_store_resolve(g_root, "tiny-copy:x", &path, err, sizeof err), HEARTH_OK);
    char moved[4300];
    snprintf(moved, sizeof moved, "%s.away", path);
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(hearth_store_copy(g_root, "tiny-copy:x", "orphan", err, sizeof err), HEARTH_E_NOT_FOUND);
    assert_non_null(strstr(err, "was removed"));
    assert_int_equal(hearth_store_resolve(g_root, "orphan", &info, err, sizeof err), HEARTH_E_NOT_FOUND);
    assert_int_equal(rename(moved, path), 0);
    hearth_free(path);
    /* the lock: shared twice at once, exclusive only alone (flock, per descriptor) */
    int l1 = store_lock(g_root, false), l2 = store_lock(g_root, false);
    assert_true(l1 >= 0 && l2 >= 0);
    store_unlock(l1), store_unlock(l2);
    assert_true((l1 = store_lock(g_root, true)) >= 0);
    store_unlock(l1);
    assert_int_equal(hearth_store_remove(g_root, "tiny-copy:x", err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_store_remove(g_root, "me/tiny2:v1", err, sizeof err), HEARTH_OK);
    assert_int_equal(count_files(blobs, NULL), 0);
    /* more stop sequences than a request may give (the check is on the merged set) */
    char many[8192];
    snprintf(many, sizeof many, "FROM %s\n", shared_model());
    for (int i = 0; i < STORE_MAX_STOPS + 1; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "PARAMETER stop s%d\n", i);
    assert_int_equal(hearth_store_create(g_root, "many", many, strlen(many), NULL, NULL, NULL, err, sizeof err), HEARTH_E_INVALID);
    assert_non_null(strstr(err, "stop sequences"));
    char longstop[STORE_STOP_MAX_LEN + 64] = "FROM x.gguf\nPARAMETER stop ";
    memset(longstop + strlen(longstop), 'a', STORE_STOP_MAX_LEN + 1);
    longstop[sizeof longstop - 2] = '\n', longstop[sizeof longstop - 1] = '\0';
    assert_int_equal(hearth_store_create(g_root, "long", longstop, strlen(longstop), NULL, NULL, NULL, err, sizeof err), HEARTH_E_INVALID);
    /* a TEMPLATE that does not parse is refused at create; a Go template is kept as it is */
    snprintf(many, sizeof many, "FROM %s\nTEMPLATE \"{%% for m in messages %%}{{ m.content }}\"\n", shared_model());
    assert_int_equal(hearth_store_create(g_root, "badtmpl", many, strlen(many), NULL, NULL, NULL, err, sizeof err), HEARTH_E_INVALID);
    assert_non_null(strstr(err, "TEMPLATE is not a valid Jinja template"));
    assert_int_equal(hearth_store_resolve(g_root, "badtmpl", &path, err, sizeof err), HEARTH_E_NOT_FOUND);
    snprintf(many, sizeof many, "FROM %s\nTEMPLATE \"{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}\"\n", shared_model());
    assert_int_equal(hearth_store_create(g_root, "gotmpl", many, strlen(many), NULL, NULL, NULL, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_store_remove(g_root, "gotmpl", err, sizeof err), HEARTH_OK);
    /* errors: not a GGUF, missing file, bad name */
    char notgguf[400];
    snprintf(notgguf, sizeof notgguf, "%s/x.gguf", g_root);
    FILE *f = fopen(notgguf, "w");
    fputs("not a model", f);
    fclose(f);
    snprintf(mf, sizeof mf, "FROM %s\n", notgguf);
    assert_int_equal(hearth_store_create(g_root, "bad", mf, strlen(mf), NULL, NULL, NULL, err, sizeof err), HEARTH_E_FORMAT);
    assert_non_null(strstr(err, "not a GGUF"));
    /* a truncated model is refused too (the whole structure is parsed, not just the magic) */
    char *whole = NULL;
    size_t wlen = 0;
    assert_int_equal(hb_read_file(shared_model(), 1u << 30, &whole, &wlen, &e), HEARTH_OK);
    f = fopen(notgguf, "wb");
    fwrite(whole, 1, wlen < 5000 ? wlen / 2 : 5000, f);
    fclose(f);
    free(whole);
    assert_int_equal(hearth_store_create(g_root, "bad", mf, strlen(mf), NULL, NULL, NULL, err, sizeof err), HEARTH_E_FORMAT);
    assert_int_equal(hearth_store_resolve(g_root, "bad", &path, err, sizeof err), HEARTH_E_NOT_FOUND);
    assert_int_equal(hearth_store_create(g_root, "bad", "FROM ./nope.gguf\n", 17, g_root, NULL, NULL, err, sizeof err), HEARTH_E_IO);
    assert_int_equal(hearth_store_create(g_root, "../bad", mf, strlen(mf), NULL, NULL, NULL, err, sizeof err), HEARTH_E_INVALID);
    assert_int_equal(count_files(blobs, "tmp"), 0);
    /* adopt: a blob whose bytes do not match its digest is refused and removed */
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s/blobs/upload.tmp-test", g_root);
    f = fopen(tmp, "w");
    fputs("abd", f);
    fclose(f);
    assert_int_equal(store_blob_adopt(g_root, tmp, DG, &e), HEARTH_E_FORMAT);
    assert_true(access(tmp, F_OK) != 0);
    f = fopen(tmp, "w");
    fputs("abc", f);
    fclose(f);
    hb_err e2 = { 0 };
    assert_int_equal(store_blob_adopt(g_root, tmp, DG, &e2), HEARTH_OK);
    assert_int_equal(count_files(blobs, "sha256-ba7816bf"), 1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_digests),
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_modelfile),
        cmocka_unit_test(test_store_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
