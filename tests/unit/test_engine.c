/* Unit tests for the engine (src/engine) and the architecture loader (src/arch):
 * multi-sequence batches equal single sequences, KV sequence copy/remove equal recompute,
 * context overflow and bad ids are rejected without side effects, thread count does not
 * change results, a model's contexts share the device copies of its weights, abort works, embeddings match the fixture, q8_0 KV stays close to f32,
 * and broken model files (built with the GGUF writer) give clear errors, not crashes. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gguf/gguf.h"
#include "hearth.h"
#include "quant/quant.h"

static char g_path[1024];
static const char *shared_dir(void) {
    const char *s = getenv("HEARTH_TEST_SHARED");
    return s && *s && strlen(s) < 512 ? s : "../shared";
}
static const char *stories(void) {
    snprintf(g_path, sizeof g_path, "%.512s/models/stories260K.gguf", shared_dir());
    return g_path;
}
static const char *random_model(const char *name) {
    snprintf(g_path, sizeof g_path, "%.512s/models/random/%.64s.gguf", shared_dir(), name);
    return g_path;
}

static hearth_model *load(const char *path) {
    char err[512];
    hearth_model *m = NULL;
    hearth_status st = hearth_model_load(path, NULL, &m, err, sizeof err);
    if (st) print_error("load %s: %s\n", path, err);
    assert_int_equal(st, HEARTH_OK);
    return m;
}

static hearth_context *ctx_new(hearth_model *m, uint32_t n_ctx, uint32_t n_seq, int threads, hearth_kv_type kv) {
    hearth_context_params p = hearth_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.n_threads = threads;
    p.kv_type = kv;
    p.n_batch = 512;
    hearth_context *c = NULL;
    char err[512];
    hearth_status st = hearth_context_new(m, &p, &c, err, sizeof err);
    if (st) print_error("context: %s\n", err);
    assert_int_equal(st, HEARTH_OK);
    return c;
}

/* Deterministic test tokens in [1, nv). */
static int32_t tok(int seq, int i, int nv) { return 1 + (int32_t)((seq * 131u + (unsigned)i * 17u + 7u) % (unsigned)(nv - 1)); }

/* Decodes n tokens of seq starting at pos0; copies the last logits to out. */
static hearth_status run_seq(hearth_context *c, int seq, int pos0, const int32_t *ids, int n, float *out, int nv) {
    hearth_batch b = hearth_batch_init(n);
    for (int i = 0; i < n; i++) hearth_batch_add(&b, ids[i], pos0 + i, seq, i == n - 1);
    hearth_status st = hearth_decode(c, &b);
    if (st == HEARTH_OK && out) memcpy(out, hearth_get_logits(c, n - 1), (size_t)nv * sizeof(float));
    hearth_batch_free(&b);
    return st;
}

static double max_rel(const float *a, const float *b, int n) {
    double amax = 0, d = 0;
    for (int i = 0; i < n; i++) {
        amax = fmax(amax, fabs(b[i]));
        d = fmax(d, fabs((double)a[i] - b[i]));
    }
    return d / (amax > 0 ? amax : 1);
}

/* Three sequences of different lengths interleaved in one batch == each alone. */
static void test_multi_seq_batch(void **state) {
    (void)state;
    hearth_model *m = load(stories());
    int nv = hearth_model_n_vocab(m);
    const int len[3] = { 5, 11, 8 };
    int32_t ids[3][16];
    float *alone = malloc(3 * (size_t)nv * sizeof(float));
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < len[s]; i++) ids[s][i] = tok(s, i, nv);
    for (int s = 0; s < 3; s++) {
        hearth_context *c = ctx_new(m, 64, 1, 2, HEARTH_KV_F32);
        assert_int_equal(run_seq(c, 0, 0, ids[s], len[s], alone + (size_t)s * nv, nv), HEARTH_OK);
        hearth_context_free(c);
    }
    hearth_context *c = ctx_new(m, 64, 3, 2, HEARTH_KV_F32);
    hearth_batch b = hearth_batch_init(32);
    int last[3] = { -1, -1, -1 };
    for (int i = 0; i < 11; i++)
        for (int s = 0; s < 3; s++)
            if (i < len[s]) {
                last[s] = b.n_tokens;
                hearth_batch_add(&b, ids[s][i], i, s, i == len[s] - 1);
            }
    assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
    for (int s = 0; s < 3; s++) {
        assert_true(max_rel(hearth_get_logits(c, last[s]), alone + (size_t)s * nv, nv) < 1e-4);
        assert_int_equal(hearth_kv_seq_pos_max(c, s), len[s] - 1);
    }
    assert_null(hearth_get_logits(c, 0)); /* not requested */
    hearth_batch_free(&b);
    hearth_context_free(c);
    free(alone);
    hearth_model_free(m);
}

/* kv_seq_cp of a prefix then continuing equals decoding everything in the target seq. */
static void test_seq_cp_and_rm(void **state) {
    (void)state;
    hearth_model *m = load(stories());
    int nv = hearth_model_n_vocab(m);
    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = tok(4, i, nv);
    float *ref = malloc((size_t)nv * sizeof(float)), *got = malloc((size_t)nv * sizeof(float));
    hearth_context *c = ctx_new(m, 64, 2, 1, HEARTH_KV_F32);
    assert_int_equal(run_seq(c, 1, 0, ids, 20, ref, nv), HEARTH_OK);
    /* prefix of 12 into seq 0, then continue seq 0 with the remaining 8 */
    assert_int_equal(run_seq(c, 0, 0, ids, 3, NULL, nv), HEARTH_OK); /* old contents get replaced */
    assert_int_equal(hearth_kv_seq_cp(c, 1, 0, 12), HEARTH_OK);
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), 11);
    assert_int_equal(run_seq(c, 0, 12, ids + 12, 8, got, nv), HEARTH_OK);
    assert_true(max_rel(got, ref, nv) < 1e-5);
    /* remove the suffix from 15 on and re-decode it */
    assert_int_equal(hearth_kv_seq_rm(c, 0, 15, -1), HEARTH_OK);
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), 14);
    assert_int_equal(run_seq(c, 0, 15, ids + 15, 5, got, nv), HEARTH_OK);
    assert_true(max_rel(got, ref, nv) < 1e-5);
    /* a different suffix, then back: still equal to fresh */
    int32_t other[3] = { 5, 6, 7 };
    assert_int_equal(hearth_kv_seq_rm(c, 0, 18, 100), HEARTH_OK);
    assert_int_equal(run_seq(c, 0, 18, other, 3, NULL, nv), HEARTH_OK);
    assert_int_equal(hearth_kv_seq_rm(c, 0, 18, -1), HEARTH_OK);
    assert_int_equal(run_seq(c, 0, 18, ids + 18, 2, got, nv), HEARTH_OK);
    assert_true(max_rel(got, ref, nv) < 1e-5);
    /* removing the middle is not supported */
    assert_int_equal(hearth_kv_seq_rm(c, 0, 2, 5), HEARTH_E_UNSUPPORTED);
    assert_int_equal(hearth_kv_seq_rm(c, 7, 0, -1), HEARTH_E_INVALID);
    assert_int_equal(hearth_kv_seq_cp(c, 0, 9, -1), HEARTH_E_INVALID);
    hearth_kv_clear(c);
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), -1);
    assert_int_equal(hearth_kv_seq_pos_max(c, 1), -1);
    hearth_context_free(c);
    free(ref);
    free(got);
    hearth_model_free(m);
}

static void test_context_overflow_and_invalid(void **state) {
    (void)state;
    hearth_model *m = load(stories());
    int nv = hearth_model_n_vocab(m);
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = tok(1, i, nv);
    hearth_context *c = ctx_new(m, 10, 2, 1, HEARTH_KV_F16);
    assert_int_equal(run_seq(c, 0, 0, ids, 12, NULL, nv), HEARTH_E_CONTEXT);
    assert_non_null(strstr(hearth_context_errmsg(c), "context"));
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), -1); /* nothing written */
    assert_int_equal(run_seq(c, 0, 0, ids, 10, NULL, nv), HEARTH_OK);
    assert_int_equal(run_seq(c, 0, 10, ids, 1, NULL, nv), HEARTH_E_CONTEXT);
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), 9);
    /* bad sequence ids, positions and token ids */
    assert_int_equal(run_seq(c, 2, 0, ids, 1, NULL, nv), HEARTH_E_INVALID);
    assert_int_equal(run_seq(c, -1, 0, ids, 1, NULL, nv), HEARTH_E_INVALID);
    assert_int_equal(run_seq(c, 1, 3, ids, 1, NULL, nv), HEARTH_E_INVALID);   /* gap */
    assert_int_equal(run_seq(c, 1, -1, ids, 1, NULL, nv), HEARTH_E_INVALID);
    int32_t bad = nv;
    assert_int_equal(run_seq(c, 1, 0, &bad, 1, NULL, nv), HEARTH_E_INVALID);
    bad = -5;
    assert_int_equal(run_seq(c, 1, 0, &bad, 1, NULL, nv), HEARTH_E_INVALID);
    assert_int_equal(hearth_kv_seq_pos_max(c, 1), -1);
    hearth_batch empty = hearth_batch_init(4);
    assert_int_equal(hearth_decode(c, &empty), HEARTH_E_INVALID);
    hearth_batch_free(&empty);
    assert_null(hearth_get_logits(c, 0));
    hearth_context_free(c);
    /* bad params */
    hearth_context_params p = hearth_context_default_params();
    char err[512];
    hearth_context *c2 = NULL;
    p.n_ctx = (1u << 20) + 1;
    assert_int_equal(hearth_context_new(m, &p, &c2, err, sizeof err), HEARTH_E_INVALID);
    assert_null(c2);
    p = hearth_context_default_params();
    p.n_threads = -3;
    assert_int_equal(hearth_context_new(m, &p, &c2, err, sizeof err), HEARTH_E_INVALID);
    p = hearth_context_default_params();
    p.kv_type = HEARTH_KV_Q8_0; /* head size 8 cannot hold q8_0 blocks */
    assert_int_equal(hearth_context_new(m, &p, &c2, err, sizeof err), HEARTH_E_UNSUPPORTED);
    hearth_model_free(m);
}

/* Logits are bitwise identical on 1 and 2 threads, for every KV type. The 296-token prompt
 * is large enough that the row-parallel ops (norms, RoPE, GLU) and attention use the pool. */
static void test_threads_bitwise(void **state) {
    (void)state;
    hearth_model *m = load(random_model("llama.Q4_0"));
    int nv = hearth_model_n_vocab(m);
    enum { N = 300, P = 296 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = tok(2, i, nv);
    for (int kv = 0; kv < 3; kv++) {
        float *a = malloc((size_t)nv * sizeof(float)), *b = malloc((size_t)nv * sizeof(float));
        float *pa = malloc((size_t)nv * sizeof(float)), *pb = malloc((size_t)nv * sizeof(float));
        hearth_context *c1 = ctx_new(m, 512, 1, 1, (hearth_kv_type)kv);
        hearth_context *c2 = ctx_new(m, 512, 1, 2, (hearth_kv_type)kv);
        assert_int_equal(run_seq(c1, 0, 0, ids, P, pa, nv), HEARTH_OK);
        assert_int_equal(run_seq(c2, 0, 0, ids, P, pb, nv), HEARTH_OK);
        assert_memory_equal(pa, pb, (size_t)nv * sizeof(float));
        assert_int_equal(run_seq(c1, 0, P, ids + P, N - P, a, nv), HEARTH_OK);
        assert_int_equal(run_seq(c2, 0, P, ids + P, N - P, b, nv), HEARTH_OK);
        assert_memory_equal(a, b, (size_t)nv * sizeof(float));
        hearth_context_free(c1);
        hearth_context_free(c2);
        free(a);
        free(b);
        free(pa);
        free(pb);
    }
    hearth_model_free(m);
}

/* Two contexts of one model: the second reuses the first one's device copies of the
 * weights (placement gpu_shared: weights go to a device once per model) and gives the same
 * logits bit for bit; once both are gone so are the copies (a third context finds none).
 * On the CPU nothing is shared and gpu_shared stays 0. */
static void test_weights_shared(void **state) {
    (void)state;
    hearth_model *m = load(random_model("llama.F16"));
    int nv = hearth_model_n_vocab(m);
    enum { N = 40 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = tok(5, i, nv);
    float *a = malloc((size_t)nv * sizeof(float)), *b = malloc((size_t)nv * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    hearth_placement p1, p2, p3;
    hearth_context *c1 = ctx_new(m, 256, 1, 1, HEARTH_KV_F16);
    hearth_context *c2 = ctx_new(m, 256, 2, 1, HEARTH_KV_F16);
    assert_int_equal(hearth_context_placement(c1, &p1), HEARTH_OK);
    assert_int_equal(hearth_context_placement(c2, &p2), HEARTH_OK);
    assert_int_equal(p1.gpu_shared, 0);
    bool gpu = strcmp(p2.backend, "cuda") == 0; /* the stand-in accelerator of cpu-split shares nothing */
    if (gpu && p2.n_gpu_layers == p2.n_layer && p1.n_gpu_layers == p1.n_layer) /* all the weights */
        assert_true(p2.gpu_shared >= hearth_model_size_bytes(m) * 8 / 10);
    else if (!gpu)
        assert_int_equal(p2.gpu_shared, 0);
    printf("  placement: %s; shared %llu of %llu bytes\n", p2.summary, (unsigned long long)p2.gpu_shared,
           (unsigned long long)hearth_model_size_bytes(m));
    assert_int_equal(run_seq(c1, 0, 0, ids, N, a, nv), HEARTH_OK);
    assert_int_equal(run_seq(c2, 1, 0, ids, N, b, nv), HEARTH_OK);
    assert_memory_equal(a, b, (size_t)nv * sizeof(float));
    hearth_context_free(c1);
    assert_int_equal(run_seq(c2, 1, N, ids, 1, b, nv), HEARTH_OK); /* the copies outlive the first context */
    hearth_context_free(c2);
    hearth_context *c3 = ctx_new(m, 256, 1, 1, HEARTH_KV_F16);
    assert_int_equal(hearth_context_placement(c3, &p3), HEARTH_OK);
    assert_int_equal(p3.gpu_shared, 0);
    assert_int_equal(run_seq(c3, 0, 0, ids, N, b, nv), HEARTH_OK);
    assert_memory_equal(a, b, (size_t)nv * sizeof(float));
    hearth_context_free(c3);
    hearth_model_free(m);
    free(a);
    free(b);
}

/* q8_0 and f16 KV caches stay close to f32 (same bound family as the golden f16 check). */
static void test_kv_types_close(void **state) {
    (void)state;
    hearth_model *m = load(random_model("llama.F32"));
    int nv = hearth_model_n_vocab(m);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = tok(3, i, nv);
    float *ref = malloc((size_t)nv * sizeof(float)), *got = malloc((size_t)nv * sizeof(float));
    hearth_context *c = ctx_new(m, 64, 1, 2, HEARTH_KV_F32);
    assert_int_equal(run_seq(c, 0, 0, ids, 40, ref, nv), HEARTH_OK);
    hearth_context_free(c);
    for (int kv = 0; kv < 3; kv += 2) {
        c = ctx_new(m, 64, 1, 2, kv == 0 ? HEARTH_KV_F16 : HEARTH_KV_Q8_0);
        assert_int_equal(run_seq(c, 0, 0, ids, 40, got, nv), HEARTH_OK);
        double mean = 0, var = 0, se = 0;
        for (int i = 0; i < nv; i++) mean += ref[i];
        mean /= nv;
        for (int i = 0; i < nv; i++) {
            var += (ref[i] - mean) * (ref[i] - mean);
            se += (got[i] - ref[i]) * (got[i] - ref[i]);
        }
        double e = sqrt(se / var);
        printf("kv %s: nrmse vs f32 %.2e\n", kv == 0 ? "f16" : "q8_0", e);
        assert_true(e < (kv == 0 ? 5e-3 : 5e-2));
        hearth_context_free(c);
    }
    free(ref);
    free(got);
    hearth_model_free(m);
}

static bool abort_after(void *ud) { return --*(int *)ud < 0; }

static void test_abort(void **state) {
    (void)state;
    hearth_model *m = load(stories());
    int nv = hearth_model_n_vocab(m);
    int32_t ids[4] = { 1, 2, 3, 4 };
    hearth_context *c = ctx_new(m, 16, 1, 1, HEARTH_KV_F16);
    int budget = 2;
    hearth_context_set_abort(c, abort_after, &budget);
    assert_int_equal(run_seq(c, 0, 0, ids, 4, NULL, nv), HEARTH_E_CANCELLED);
    assert_int_equal(hearth_kv_seq_pos_max(c, 0), -1);
    hearth_context_set_abort(c, NULL, NULL);
    assert_int_equal(run_seq(c, 0, 0, ids, 4, NULL, nv), HEARTH_OK);
    hearth_context_free(c);
    hearth_model_free(m);
}

/* Mean-pooled normalised embeddings match the fixture (cosine >= 0.9999). */
static void test_embeddings_fixture(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%.512s/fixtures/embeddings/stories260K.jsonl", shared_dir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    hearth_model *m = load(stories());
    int ne = hearth_model_n_embd(m);
    hearth_context_params p = hearth_context_default_params();
    p.embeddings = true;
    p.n_threads = 2;
    p.n_ctx = 512;
    hearth_context *c = NULL;
    char err[512], line[65536];
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_OK);
    float *emb = malloc((size_t)ne * sizeof(float));
    int n_lines = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) continue;
        json_t *ids = json_object_get(o, "ids"), *want = json_object_get(o, "embedding");
        assert_true(json_is_array(ids) && json_is_array(want) && (int)json_array_size(want) == ne);
        int n = (int)json_array_size(ids);
        hearth_batch b = hearth_batch_init(n);
        for (int i = 0; i < n; i++) hearth_batch_add(&b, (int32_t)json_integer_value(json_array_get(ids, (size_t)i)), i, 0, false);
        hearth_kv_clear(c);
        assert_int_equal(hearth_decode(c, &b), HEARTH_OK);
        assert_int_equal(hearth_get_embeddings_seq(c, 0, emb, (size_t)ne), HEARTH_OK);
        double dot = 0, nw = 0;
        for (int i = 0; i < ne; i++) {
            double w = json_number_value(json_array_get(want, (size_t)i));
            dot += w * emb[i];
            nw += w * w;
        }
        assert_true(dot / sqrt(nw) >= 0.9999);
        assert_int_equal(hearth_get_embeddings_seq(c, 1, emb, (size_t)ne), HEARTH_E_INVALID);
        hearth_batch_free(&b);
        json_decref(o);
        n_lines++;
    }
    assert_true(n_lines > 0);
    fclose(f);
    free(emb);
    hearth_context_free(c);
    hearth_model_free(m);
}

/* With embeddings on, requested logits are still the same as without. */
static void test_embeddings_with_logits(void **state) {
    (void)state;
    hearth_model *m = load(stories());
    int nv = hearth_model_n_vocab(m), ne = hearth_model_n_embd(m);
    int32_t ids[9];
    for (int i = 0; i < 9; i++) ids[i] = tok(5, i, nv);
    float *ref = malloc((size_t)nv * sizeof(float)), *got = malloc((size_t)nv * sizeof(float));
    float *emb = malloc((size_t)ne * sizeof(float));
    hearth_context *c = ctx_new(m, 32, 1, 2, HEARTH_KV_F32);
    assert_int_equal(run_seq(c, 0, 0, ids, 9, ref, nv), HEARTH_OK);
    assert_int_equal(hearth_get_embeddings_seq(c, 0, emb, (size_t)ne), HEARTH_E_INVALID); /* not enabled */
    hearth_context_free(c);
    hearth_context_params p = hearth_context_default_params();
    p.embeddings = true;
    p.n_ctx = 32;
    p.kv_type = HEARTH_KV_F32;
    char err[512];
    assert_int_equal(hearth_context_new(m, &p, &c, err, sizeof err), HEARTH_OK);
    assert_int_equal(run_seq(c, 0, 0, ids, 9, got, nv), HEARTH_OK);
    assert_true(max_rel(got, ref, nv) < 1e-5);
    assert_null(hearth_get_logits(c, 0));
    assert_int_equal(hearth_get_embeddings_seq(c, 0, emb, (size_t)ne), HEARTH_OK);
    double n2 = 0;
    for (int i = 0; i < ne; i++) n2 += (double)emb[i] * emb[i];
    assert_true(fabs(n2 - 1.0) < 1e-4);
    assert_int_equal(hearth_get_embeddings_seq(c, 0, emb, (size_t)ne - 1), HEARTH_E_INVALID);
    hearth_context_free(c);
    free(ref);
    free(got);
    free(emb);
    hearth_model_free(m);
}

/* ---- broken models ------------------------------------------------------------------------ */

enum { TM_OK, TM_BAD_SHAPE, TM_MISSING, TM_BAD_ARCH, TM_BAD_HEADS, TM_BAD_TYPE, TM_MANY_HEADS };

/* Writes a tiny llama model (E=32, 2 heads of 16, 1 kv head, ff 48, 1 layer, vocab 40). */
static void write_tiny(const char *path, int variant) {
    hb_err e;
    hb_err_clear(&e);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    const char *arch = variant == TM_BAD_ARCH ? "mamba9" : "llama";
    assert_int_equal(gguf_writer_add_str(w, "general.architecture", arch, strlen(arch), &e), 0);
    char k[64];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    gguf_writer_add_u32(w, KEY("embedding_length"), 32, &e);
    gguf_writer_add_u32(w, KEY("block_count"), 1, &e);
    gguf_writer_add_u32(w, KEY("feed_forward_length"), 48, &e);
    gguf_writer_add_u32(w, KEY("attention.head_count"), variant == TM_MANY_HEADS ? 64 : 2, &e); /* 64: head size 0 */
    gguf_writer_add_u32(w, KEY("attention.head_count_kv"), variant == TM_BAD_HEADS ? 3 : 1, &e);
    gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f, &e);
#undef KEY
    static float data[40 * 48 * 2];
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    struct { const char *name; int64_t ne0, ne1; } t[] = {
        { "token_embd.weight", 32, 40 }, { "output_norm.weight", 32, 1 }, { "blk.0.attn_norm.weight", 32, 1 },
        { "blk.0.attn_q.weight", 32, 32 }, { "blk.0.attn_k.weight", 32, 16 }, { "blk.0.attn_v.weight", 32, 16 },
        { "blk.0.attn_output.weight", 32, 32 }, { "blk.0.ffn_norm.weight", 32, 1 },
        { "blk.0.ffn_gate.weight", 32, 48 }, { "blk.0.ffn_up.weight", 32, 48 }, { "blk.0.ffn_down.weight", 48, 32 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t ne[2] = { t[i].ne0, t[i].ne1 };
        if (variant == TM_MISSING && strcmp(t[i].name, "blk.0.ffn_up.weight") == 0) continue;
        if (variant == TM_BAD_SHAPE && strcmp(t[i].name, "blk.0.attn_k.weight") == 0) ne[1] = 8;
        uint32_t type = QT_F32;
        if (variant == TM_BAD_TYPE && strcmp(t[i].name, "blk.0.attn_q.weight") == 0) type = QT_I32;
        assert_int_equal(gguf_writer_add_tensor(w, t[i].name, type, ne[1] == 1 ? 1 : 2, ne, data, &e), 0);
    }
    if (gguf_writer_write(w, path, &e)) print_error("write: %s\n", e.msg);
    assert_int_equal(e.code, 0);
    gguf_writer_free(w);
}

static void expect_load_error(int variant, hearth_status want, const char *needle) {
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "/tmp/hearth_test_engine_%d_%d.gguf", (int)getpid(), variant);
    write_tiny(path, variant);
    hearth_model *m = NULL;
    hearth_status st = hearth_model_load(path, NULL, &m, err, sizeof err);
    unlink(path);
    if (st != want || (needle && !strstr(err, needle))) print_error("variant %d: status %d, message '%s'\n", variant, st, err);
    assert_int_equal(st, want);
    if (needle) assert_non_null(strstr(err, needle));
    if (st == HEARTH_OK) {
        /* the valid tiny model actually runs */
        hearth_context *c = ctx_new(m, 8, 1, 1, HEARTH_KV_F16);
        int32_t ids[3] = { 1, 2, 39 };
        assert_int_equal(run_seq(c, 0, 0, ids, 3, NULL, 40), HEARTH_OK);
        hearth_context_free(c);
    }
    hearth_model_free(m);
}

static void test_broken_models(void **state) {
    (void)state;
    expect_load_error(TM_OK, HEARTH_OK, NULL);
    expect_load_error(TM_BAD_SHAPE, HEARTH_E_FORMAT, "blk.0.attn_k.weight");
    expect_load_error(TM_MISSING, HEARTH_E_FORMAT, "blk.0.ffn_up.weight");
    expect_load_error(TM_BAD_ARCH, HEARTH_E_UNSUPPORTED, "llama, qwen2");
    expect_load_error(TM_BAD_HEADS, HEARTH_E_FORMAT, "head_count");
    expect_load_error(TM_BAD_TYPE, HEARTH_E_UNSUPPORTED, "blk.0.attn_q.weight");
    /* no key_length and embedding / heads == 0: the message says the key is missing */
    expect_load_error(TM_MANY_HEADS, HEARTH_E_FORMAT, "key llama.attention.key_length is missing and the value derived");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_seq_batch),
        cmocka_unit_test(test_seq_cp_and_rm),
        cmocka_unit_test(test_context_overflow_and_invalid),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_weights_shared),
        cmocka_unit_test(test_kv_types_close),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_embeddings_fixture),
        cmocka_unit_test(test_embeddings_with_logits),
        cmocka_unit_test(test_broken_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
