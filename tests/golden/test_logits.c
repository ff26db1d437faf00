/* Golden logits: every model in ../shared/fixtures/logits is evaluated on every fixture
 * sequence as one batch and compared with the reference per the fixtures README:
 * nrmse_i = rms(ours_i - ref_i) / std(ref_i), max over positions under the weight type's
 * bound, and for F32/F16 models the 32-token greedy continuation must match exactly.
 *
 * Runs: f32 KV cache (the reference's) with the README bounds; the default f16 KV cache
 * with looser bounds (1.5x the README bound: the README measures f16-vs-f32 KV at ~1e-3
 * for float types and 2-3e-2 for quantized ones, so 1.5x leaves the same margin); phi3 at
 * context 4096 (short LongRoPE factors must still apply) and at 8192 (long factors must
 * change the logits). Prints a table of max nrmse per model and sequence.
 */
#include <dirent.h>
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

#define MAX_MODELS 64
#define N_GREEDY 32

/* Threads per context: HEARTH_TEST_THREADS or 2 (results are thread-count independent). */
static int g_threads = 2;

static const char *shared_dir(void) {
    const char *s = getenv("HEARTH_TEST_SHARED");
    return s && *s && strlen(s) < 512 ? s : "../shared";
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

/* Reads space-separated ids from a text file. */
static int read_ids(const char *path, int32_t *ids, int cap) {
    char *s = read_all(path, NULL);
    int n = 0;
    if (!s) return -1;
    for (char *p = s, *end; n < cap; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
    }
    free(s);
    return n;
}

/* Model names: every "<model>.a.f32" in the fixtures directory, sorted. */
static int list_models(char names[][64]) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures/logits", shared_dir());
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) && n < MAX_MODELS;) {
        size_t l = strlen(e->d_name);
        if (l > 6 && l < 64 && strcmp(e->d_name + l - 6, ".a.f32") == 0) {
            memcpy(names[n], e->d_name, l - 6);
            names[n][l - 6] = 0;
            n++;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

static void model_path(const char *name, char *buf, size_t cap) {
    if (strchr(name, '.')) snprintf(buf, cap, "%.512s/models/random/%.63s.gguf", shared_dir(), name);
    else snprintf(buf, cap, "%.512s/models/%.63s.gguf", shared_dir(), name);
}

/* Weight type of a fixture model: the part after the arch ("llama.Q4_K_M"), or F32 for the
 * real stories260K (an F32 file). */
static const char *model_type(const char *name) {
    const char *dot = strchr(name, '.');
    return dot ? dot + 1 : "F32";
}

static double type_bound(const char *t) {
    if (!strcmp(t, "F32") || !strcmp(t, "F16")) return 5e-3;
    if (!strcmp(t, "BF16")) return 2e-2;
    if (!strcmp(t, "Q8_0")) return 5e-2;
    if (!strcmp(t, "Q2_K") || !strcmp(t, "Q3_K_M")) return 1e-1;
    return 8e-2;
}

static bool needs_greedy(const char *t) { return !strcmp(t, "F32") || !strcmp(t, "F16"); }

/* Evaluates ids as one sequence (one batch), then greedy-continues n_greedy tokens.
 * logits: [n][n_vocab] out. Returns 0 on success. */
static int eval_seq(hearth_model *m, hearth_kv_type kv, uint32_t n_ctx, const int32_t *ids, int n,
                    float *logits, int32_t *greedy, int n_greedy) {
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = g_threads;
    cp.kv_type = kv;
    cp.n_batch = 256;
    hearth_context *c = NULL;
    char err[512];
    int rc = -1;
    int32_t nv = hearth_model_n_vocab(m);
    if (hearth_context_new(m, &cp, &c, err, sizeof err)) { print_error("context: %s\n", err); return -1; }
    hearth_batch b = hearth_batch_init(n);
    for (int i = 0; i < n; i++) hearth_batch_add(&b, ids[i], i, 0, true);
    if (hearth_decode(c, &b)) { print_error("decode: %s\n", hearth_context_errmsg(c)); goto out; }
    for (int i = 0; i < n; i++) memcpy(logits + (size_t)i * nv, hearth_get_logits(c, i), (size_t)nv * sizeof(float));
    const float *l = hearth_get_logits(c, n - 1);
    for (int g = 0; g < n_greedy; g++) {
        int best = 0;
        for (int v = 1; v < nv; v++) if (l[v] > l[best]) best = v;
        greedy[g] = best;
        hearth_batch_clear(&b);
        hearth_batch_add(&b, best, n + g, 0, true);
        if (g + 1 < n_greedy && hearth_decode(c, &b)) { print_error("decode: %s\n", hearth_context_errmsg(c)); goto out; }
        l = hearth_get_logits(c, 0);
    }
    rc = 0;
out:
    hearth_batch_free(&b);
    hearth_context_free(c);
    return rc;
}

static double max_nrmse(const float *ours, const float *ref, int n, int nv) {
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const float *o = ours + (size_t)i * nv, *r = ref + (size_t)i * nv;
        double mean = 0.0, var = 0.0, se = 0.0;
        for (int v = 0; v < nv; v++) mean += r[v];
        mean /= nv;
        for (int v = 0; v < nv; v++) {
            var += (r[v] - mean) * (r[v] - mean);
            se += ((double)o[v] - r[v]) * ((double)o[v] - r[v]);
        }
        double e = sqrt(se / nv) / sqrt(var / nv);
        if (!(e <= worst)) worst = e; /* NaN propagates as a failure */
    }
    return worst;
}

typedef struct run_cfg {
    hearth_kv_type kv;
    uint32_t n_ctx;
    double bound_mul;
    bool check_greedy;
    const char *only_arch;   /* NULL = every model */
    const char *seqs;        /* "abc" */
} run_cfg;

/* Runs every (model, sequence) of cfg; prints the table; returns the number of failures. */
static int run_all(const run_cfg *cfg) {
    char names[MAX_MODELS][64];
    int nm = list_models(names), fails = 0;
    if (nm <= 0) { print_error("no logit fixtures under %s/fixtures/logits (is ../shared missing?)\n", shared_dir()); return 1; }
    printf("%-16s %-8s", "model", "bound");
    for (const char *s = cfg->seqs; *s; s++) printf("   seq %c  ", *s);
    printf(" greedy\n");
    for (int i = 0; i < nm; i++) {
        if (cfg->only_arch && strncmp(names[i], cfg->only_arch, strlen(cfg->only_arch)) != 0) continue;
        char path[2048], err[512];
        hearth_model *m = NULL;
        model_path(names[i], path, sizeof path);
        if (hearth_model_load(path, NULL, &m, err, sizeof err)) { print_error("%s\n", err); fails++; continue; }
        const char *type = model_type(names[i]);
        double bound = type_bound(type) * cfg->bound_mul;
        int nv = hearth_model_n_vocab(m);
        printf("%-16s %-8.1e", names[i], bound);
        const char *gstat = "-";
        for (const char *s = cfg->seqs; *s; s++) {
            char f[2048];
            int32_t ids[1024], greedy[N_GREEDY], want[N_GREEDY];
            snprintf(f, sizeof f, "%s/fixtures/logits/seqs/%c.txt", shared_dir(), *s);
            int n = read_ids(f, ids, 1024);
            snprintf(f, sizeof f, "%.512s/fixtures/logits/%.63s.%c.f32", shared_dir(), names[i], *s);
            size_t len = 0;
            float *ref = (float *)(void *)read_all(f, &len);
            float *ours = malloc((size_t)n * nv * sizeof(float) + 1);
            bool ok = n > 0 && ref && len == (size_t)n * nv * sizeof(float) && ours &&
                      eval_seq(m, cfg->kv, cfg->n_ctx, ids, n, ours, greedy,
                               cfg->check_greedy && needs_greedy(type) ? N_GREEDY : 0) == 0;
            double e = ok ? max_nrmse(ours, ref, n, nv) : INFINITY;
            bool pass = ok && e < bound;
            printf(" %9.2e%s", e, pass ? " " : "!");
            if (!pass) fails++;
            if (ok && cfg->check_greedy && needs_greedy(type)) {
                snprintf(f, sizeof f, "%.512s/fixtures/logits/%.63s.%c.greedy.txt", shared_dir(), names[i], *s);
                bool gok = read_ids(f, want, N_GREEDY) == N_GREEDY && memcmp(want, greedy, sizeof want) == 0;
                if (!gok) { fails++; gstat = "MISMATCH"; }
                else if (strcmp(gstat, "MISMATCH")) gstat = "same";
            }
            free(ref);
            free(ours);
        }
        printf(" %s\n", gstat);
        hearth_model_free(m);
    }
    fflush(stdout);
    return fails;
}

/* Under sanitizers (3x slower) the 64-token sequence b is skipped: a and c cover the same
 * code paths (c is longer than the sliding windows). */
#if defined(__SANITIZE_ADDRESS__)
#define F32_SEQS "ac"
#else
#define F32_SEQS "abc"
#endif

static void test_logits_f32_kv(void **state) {
    (void)state;
    run_cfg cfg = { HEARTH_KV_F32, 2048, 1.0, true, NULL, F32_SEQS };
    assert_int_equal(run_all(&cfg), 0);
}

static void test_logits_f16_kv(void **state) {
    (void)state;
    run_cfg cfg = { HEARTH_KV_F16, 2048, 1.5, false, NULL, "a" };
    assert_int_equal(run_all(&cfg), 0);
}

/* phi3 at context 4096 (= its original context): the short factors still apply. */
static void test_phi3_ctx4096(void **state) {
    (void)state;
    run_cfg cfg = { HEARTH_KV_F32, 4096, 1.0, true, "phi3", "ab" };
    assert_int_equal(run_all(&cfg), 0);
}

/* Beyond the original context the long factors take over: the logits must move. */
static void test_phi3_long_factors_used(void **state) {
    (void)state;
    char path[2048], err[512];
    int32_t ids[64], g[1];
    hearth_model *m = NULL;
    snprintf(path, sizeof path, "%s/models/random/phi3.F16.gguf", shared_dir());
    assert_int_equal(hearth_model_load(path, NULL, &m, err, sizeof err), HEARTH_OK);
    char f[2048];
    snprintf(f, sizeof f, "%s/fixtures/logits/seqs/b.txt", shared_dir());
    int n = read_ids(f, ids, 64);
    assert_true(n > 1);
    int nv = hearth_model_n_vocab(m);
    float *a = malloc((size_t)n * nv * sizeof(float)), *b = malloc((size_t)n * nv * sizeof(float));
    assert_int_equal(eval_seq(m, HEARTH_KV_F32, 4096, ids, n, a, g, 1), 0);
    assert_int_equal(eval_seq(m, HEARTH_KV_F32, 8192, ids, n, b, g, 1), 0);
    assert_true(max_nrmse(b, a, n, nv) > 1e-3);
    free(a);
    free(b);
    hearth_model_free(m);
}

/* 200 greedy tokens from BOS with stories260K, detokenized, reproduce the generation fixture
 * byte for byte (the fixture's text is the generated tokens only, BOS excluded). */
static void test_generation_stories260k(void **state) {
    (void)state;
    char path[2048], err[512];
    hearth_model *m = NULL;
    snprintf(path, sizeof path, "%.512s/models/stories260K.gguf", shared_dir());
    assert_int_equal(hearth_model_load(path, NULL, &m, err, sizeof err), HEARTH_OK);
    snprintf(path, sizeof path, "%.512s/fixtures/generation/stories260K.greedy.txt", shared_dir());
    size_t want_len = 0;
    char *want = read_all(path, &want_len);
    assert_non_null(want);
    int nv = hearth_model_n_vocab(m);
    int32_t bos = hearth_token_bos(m), gen[200];
    float *logits = malloc((size_t)nv * sizeof(float));
    assert_true(bos >= 0);
    assert_int_equal(eval_seq(m, HEARTH_KV_F32, 2048, &bos, 1, logits, gen, 200), 0);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(hearth_detokenize(m, gen, 200, 0, &text, &len, err, sizeof err), HEARTH_OK);
    if (len != want_len || memcmp(text, want, len) != 0) print_error("generated:\n%s\n", text);
    assert_int_equal(len, want_len);
    assert_memory_equal(text, want, len);
    hearth_free(text);
    free(want);
    free(logits);
    hearth_model_free(m);
}

int main(void) {
    const char *th = getenv("HEARTH_TEST_THREADS");
    if (th && atoi(th) >= 1 && atoi(th) <= 64) g_threads = atoi(th);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_f32_kv),
        cmocka_unit_test(test_logits_f16_kv),
        cmocka_unit_test(test_phi3_ctx4096),
        cmocka_unit_test(test_phi3_long_factors_used),
        cmocka_unit_test(test_generation_stories260k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
