/* Layer placement over two backends (src/engine/place.c) without a GPU: the backend
 * "cpu-split" puts layers [0, N) on a second CPU backend standing in for an accelerator, so
 * every split point runs the real hand-over of the hidden state. For fixture models of
 * each decoder layout the logits of a prompt batch, of single-token steps after it, of a
 * second sequence made by hearth_kv_seq_cp, and the embeddings must be bit-identical to the
 * CPU alone for every N (0, 1, a middle split, all). Also: the placement the context
 * reports, n_gpu_layers / HEARTH_GPU_LAYERS validation, and the plan API. */
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

#define N_PROMPT 24
#define N_STEPS 3

static const char *shared_dir(void) {
    const char *s = getenv("HEARTH_TEST_SHARED");
    return s && *s && strlen(s) < 512 ? s : "../shared";
}

static hearth_model *load(const char *name, const char *backend, int32_t ngl) {
    char path[1024], err[512];
    hearth_model_params mp = hearth_model_default_params();
    mp.backend = backend;
    mp.n_gpu_layers = ngl;
    hearth_model *m = NULL;
    if (strchr(name, '.')) snprintf(path, sizeof path, "%.512s/models/random/%.64s.gguf", shared_dir(), name);
    else snprintf(path, sizeof path, "%.512s/models/%.64s.gguf", shared_dir(), name);
    hearth_status st = hearth_model_load(path, &mp, &m, err, sizeof err);
    if (st) print_error("load %s: %s\n", path, err);
    assert_int_equal(st, HEARTH_OK);
    return m;
}

static hearth_context *ctx_new(hearth_model *m, bool embeddings) {
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = 64;
    p.n_seq_max = 2;
    p.n_threads = 2;
    p.n_batch = 64;
    p.kv_type = HEARTH_KV_F16;
    p.embeddings = embeddings;
    hearth_context *c = NULL;
    char err[512];
    hearth_status st = hearth_context_new(m, &p, &c, err, sizeof err);
    if (st) print_error("context: %s\n", err);
    assert_int_equal(st, HEARTH_OK);
    return c;
}

/* The prompt: fixture sequence a, cut to N_PROMPT tokens and folded into the vocabulary. */
static int prompt(int32_t nv, int32_t *ids) {
    char path[1024];
    snprintf(path, sizeof path, "%.512s/fixtures/logits/seqs/a.txt", shared_dir());
    FILE *f = fopen(path, "r");
    int n = 0;
    long v;
    assert_non_null(f);
    while (n < N_PROMPT && fscanf(f, "%ld", &v) == 1) ids[n++] = (int32_t)(v % nv);
    fclose(f);
    assert_true(n >= 8);
    return n;
}

/* Every output of a fixed workload, appended to out (floats): prompt logits (all rows), then
 * per step the last logits of sequence 0 and of its copy, sequence 1, then embeddings. */
static size_t workload(hearth_model *m, float *out) {
    int32_t nv = hearth_model_n_vocab(m), ids[N_PROMPT];
    int n = prompt(nv, ids);
    size_t k = 0;
    hearth_context *c = ctx_new(m, false);
    hearth_batch b = hearth_batch_init(N_PROMPT);
    for (int i = 0; i < n; i++) hearth_batch_add(&b, ids[i], i, 0, true);
    assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
    for (int i = 0; i < n; i++, k += (size_t)nv) memcpy(out + k, hearth_get_logits(c, i), (size_t)nv * sizeof(float));
    assert_int_equal(hearth_kv_seq_cp(c, 0, 1, -1), HEARTH_OK);
    for (int s = 0; s < N_STEPS; s++) {
        hearth_batch_clear(&b);
        hearth_batch_add(&b, ids[s], n + s, 0, true);
        hearth_batch_add(&b, ids[s + 1], n + s, 1, true);
        assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
        for (int i = 0; i < 2; i++, k += (size_t)nv) memcpy(out + k, hearth_get_logits(c, i), (size_t)nv * sizeof(float));
    }
    hearth_context_free(c);
    c = ctx_new(m, true);
    hearth_batch_clear(&b);
    for (int i = 0; i < n; i++) hearth_batch_add(&b, ids[i], i, 0, false);
    assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
    int32_t ne = hearth_model_n_embd(m);
    assert_int_equal(hearth_get_embeddings_seq(c, 0, out + k, (size_t)ne), HEARTH_OK);
    k += (size_t)ne;
    hearth_context_free(c);
    hearth_batch_free(&b);
    return k;
}

/* Bit-identical outputs for every split point of one model. */
static void check_model(const char *name) {
    hearth_model *m = load(name, "cpu", -1);
    int32_t nl = hearth_model_n_layer(m), nv = hearth_model_n_vocab(m);
    size_t cap = (size_t)(N_PROMPT + 2 * N_STEPS) * (size_t)nv + (size_t)hearth_model_n_embd(m);
    float *ref = malloc(cap * sizeof(float)), *got = malloc(cap * sizeof(float));
    assert_non_null(ref);
    assert_non_null(got);
    size_t n = workload(m, ref);
    for (size_t i = 0; i < n; i++) assert_true(isfinite(ref[i]));
    hearth_model_free(m);
    int32_t splits[] = { 0, 1, nl / 2, nl - 1, nl, nl + 5 };
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
        m = load(name, "cpu-split", splits[s]);
        hearth_context *c = ctx_new(m, false);
        hearth_placement pl;
        assert_int_equal(hearth_context_placement(c, &pl), HEARTH_OK);
        int32_t want = splits[s] > nl ? nl : splits[s];
        assert_int_equal(pl.n_gpu_layers, want);
        assert_int_equal(pl.n_layer, nl);
        assert_int_equal(pl.output_on_gpu, want == nl);
        hearth_context_free(c);
        memset(got, 0, cap * sizeof(float));
        assert_int_equal(workload(m, got), n);
        if (memcmp(ref, got, n * sizeof(float)) != 0) {
            size_t i = 0;
            while (ref[i] == got[i]) i++;
            print_error("%s, %d of %d layers split off: output %zu differs (%.9g vs %.9g)\n", name, (int)splits[s],
                        (int)nl, i, (double)got[i], (double)ref[i]);
            fail();
        }
        hearth_model_free(m);
    }
    free(ref);
    free(got);
}

static void test_split_llama(void **state) {
    (void)state;
    check_model("llama.Q4_K_M");
    check_model("stories260K");
}

static void test_split_qwen_gemma_phi(void **state) {
    (void)state;
    check_model("qwen2.Q8_0");   /* q/k/v biases */
    check_model("gemma2.F16");   /* post-norms, soft-caps, sliding window */
    check_model("phi3.Q4_K_M");  /* fused qkv and gate/up */
}

static void test_placement_reported(void **state) {
    (void)state;
    hearth_model *m = load("stories260K", "cpu", -1);
    hearth_context *c = ctx_new(m, false);
    hearth_placement pl;
    assert_int_equal(hearth_context_placement(c, &pl), HEARTH_OK);
    assert_int_equal(pl.n_gpu_layers, 0);
    assert_string_equal(pl.backend, "cpu");
    assert_false(pl.output_on_gpu);
    assert_non_null(strstr(pl.summary, "layers on cpu"));
    double bw = 1;
    assert_int_equal(hearth_bench_device_bandwidth("cpu", &bw, NULL, 0), HEARTH_E_UNSUPPORTED);
    assert_true(bw == 0);
    assert_int_equal(hearth_bench_device_bandwidth("cpu-split", &bw, NULL, 0), HEARTH_E_UNSUPPORTED);
    hearth_context_free(c);
    hearth_model_free(m);

    m = load("stories260K", "cpu-split", 2);
    hearth_context_params p = hearth_context_default_params();
    char err[256];
    assert_int_equal(hearth_model_plan_placement(m, &p, &pl, err, sizeof err), HEARTH_OK);
    assert_int_equal(pl.n_gpu_layers, 2);
    assert_true(pl.gpu_bytes > 0);
    c = ctx_new(m, false);
    hearth_placement pc;
    assert_int_equal(hearth_context_placement(c, &pc), HEARTH_OK);
    assert_string_equal(pc.summary, pl.summary);
    char want[128];
    snprintf(want, sizeof want, "2/%d layers on cpu, %d on cpu, output on cpu", (int)pl.n_layer, (int)pl.n_layer - 2);
    assert_string_equal(pc.summary, want);
    hearth_context_free(c);
    hearth_model_free(m);
}

static void test_bad_layer_counts(void **state) {
    (void)state;
    hearth_model *m = load("stories260K", "cpu-split", -2);
    hearth_context_params p = hearth_context_default_params();
    hearth_context *c = NULL;
    char err[512] = "";
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_E_INVALID);
    assert_null(c);
    assert_non_null(strstr(err, "n_gpu_layers"));
    hearth_model_free(m);

    m = load("stories260K", "cpu-split", -1);
    setenv("HEARTH_GPU_LAYERS", "three", 1);
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_E_INVALID);
    assert_non_null(strstr(err, "HEARTH_GPU_LAYERS"));
    setenv("HEARTH_GPU_LAYERS", "1", 1);
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_OK);
    hearth_placement pl;
    assert_int_equal(hearth_context_placement(c, &pl), HEARTH_OK);
    assert_int_equal(pl.n_gpu_layers, 1);
    hearth_context_free(c);
    setenv("HEARTH_GPU_LAYERS", "all", 1);
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_context_placement(c, &pl), HEARTH_OK);
    assert_int_equal(pl.n_gpu_layers, pl.n_layer);
    assert_true(pl.output_on_gpu);
    hearth_context_free(c);
    unsetenv("HEARTH_GPU_LAYERS");
    hearth_model_free(m);
}

int main(void) {
    unsetenv("HEARTH_GPU_LAYERS");
    unsetenv("HEARTH_BACKEND");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_llama),
        cmocka_unit_test(test_split_qwen_gemma_phi),
        cmocka_unit_test(test_placement_reported),
        cmocka_unit_test(test_bad_layer_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
