/* bench_model.c — whole-model speed on the backend the library picks (HEARTH_BACKEND):
 * prompt processing of 512 tokens (pp512, one batch) and generation of 128 tokens one at a
 * time (tg128), plus the achieved fraction of the GPU's measured read bandwidth during
 * generation (weight bytes x tokens/s over the bandwidth), and a check that decoding 8
 * sequences in one batch gives the same greedy tokens as decoding each alone, and how fast
 * 8 sequences decode together (batch8: steps of one token of each, tokens of all of them
 * per second; a step that cost what a one-token step does would give 8 x tg128), and 4
 * (batch4: the server's default number of parallel sequences).
 * Built by `make CUDA=1` as build/cuda_bench_model:  cuda_bench_model MODEL.gguf...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "hearth.h"

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static double now_s(void) {
    return (double)hb_now_ns() / 1e9;
}

/* Greedy continuation of n steps for sequences [0, n_seq) after a 16-token prompt each.
 * Each prompt is evaluated on its own (as a server admits requests); then every step
 * decodes one token of every sequence in one batch. Tokens: out[s][i]. */
static int greedy(hearth_context *c, int n_seq, int n, int nv, int *out, double *t_steps) {
    hearth_batch b = hearth_batch_init(512);
    int rc = 0;
    hearth_kv_clear(c);
    for (int s = 0; s < n_seq && !rc; s++) {
        hearth_batch_clear(&b);
        for (int i = 0; i < 16; i++) hearth_batch_add(&b, 1 + (s * 131 + i * 17) % (nv - 1), i, s, i == 15);
        if (!(rc = hearth_decode(c, &b))) out[s * n] = argmax(hearth_get_logits(c, 15), nv);
    }
    double t0 = now_s();
    for (int step = 1; step < n && !rc; step++) {
        hearth_batch_clear(&b);
        for (int s = 0; s < n_seq; s++) hearth_batch_add(&b, out[s * n + step - 1], 15 + step, s, true);
        if ((rc = hearth_decode(c, &b))) break;
        for (int s = 0; s < n_seq; s++) out[s * n + step] = argmax(hearth_get_logits(c, s), nv);
    }
    if (t_steps) *t_steps = now_s() - t0;
    hearth_batch_free(&b);
    return rc;
}

static int bench(const char *path, double bw) {
    char err[512];
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    if (hearth_model_load(path, NULL, &m, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 512;
    cp.n_seq_max = 8;
    if (hearth_context_new(m, &cp, &c, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    int nv = hearth_model_n_vocab(m);
    hearth_batch b = hearth_batch_init(512);
    double pp = 0, tg = 0;
    for (int rep = 0; rep < 3; rep++) { /* pp512: best of 3 (the first also warms up) */
        hearth_kv_clear(c);
        hearth_batch_clear(&b);
        for (int i = 0; i < 512; i++) hearth_batch_add(&b, 1 + (i * 7919) % (nv - 1), i, 0, i == 511);
        double t0 = now_s();
        if (hearth_decode(c, &b)) goto fail;
        hearth_get_logits(c, 511);
        double r = 512 / (now_s() - t0);
        if (r > pp) pp = r;
    }
    for (int rep = 0; rep < 2; rep++) { /* tg128 after a 1-token prompt: best of 2 */
        hearth_kv_clear(c);
        int t = 1;
        double t0 = 0;
        for (int i = 0; i <= 128; i++) {
            if (i == 1) t0 = now_s(); /* the first token warms up */
            hearth_batch_clear(&b);
            hearth_batch_add(&b, t, i, 0, true);
            if (hearth_decode(c, &b)) goto fail;
            t = argmax(hearth_get_logits(c, 0), nv);
        }
        double r = 128 / (now_s() - t0);
        if (r > tg) tg = r;
    }
    /* 8 sequences together == each alone (greedy tokens) */
    enum { NS = 8, NSTEP = 24 };
    int together[NS * NSTEP], alone[NSTEP];
    int same = 1;
    if (greedy(c, NS, NSTEP, nv, together, NULL)) goto fail;
    for (int s = 0; s < NS; s++) { /* sequence s alone, same prompt */
        hearth_kv_clear(c);
        hearth_batch_clear(&b);
        for (int i = 0; i < 16; i++) hearth_batch_add(&b, 1 + (s * 131 + i * 17) % (nv - 1), i, 0, i == 15);
        for (int step = 0; step < NSTEP; step++) {
            if (hearth_decode(c, &b)) goto fail;
            alone[step] = argmax(hearth_get_logits(c, b.n_tokens - 1), nv);
            hearth_batch_clear(&b);
            hearth_batch_add(&b, alone[step], 16 + step, 0, true);
        }
        if (memcmp(alone, together + s * NSTEP, sizeof alone)) same = 0;
    }
    /* batched decode speed: 8 sequences, 16-token prompts (not timed) then 63 steps of one
     * token each: tokens of all sequences per second, best of 2 */
    enum { NB = 64 };
    static int bout[NS * NB];
    double b8 = 0, b4 = 0;
    for (int rep = 0; rep < 2; rep++) {
        double ts = 0;
        if (greedy(c, NS, NB, nv, bout, &ts)) goto fail;
        double r = ts > 0 ? NS * (NB - 1) / ts : 0;
        if (r > b8) b8 = r;
        if (greedy(c, 4, NB, nv, bout, &ts)) goto fail; /* the server's default of 4 sequences */
        r = ts > 0 ? 4 * (NB - 1) / ts : 0;
        if (r > b4) b4 = r;
    }
    double gbs = (double)hearth_model_size_bytes(m) * tg;
    printf("%-40s %-7s pp512 %8.1f t/s  tg128 %7.1f t/s  %5.0f GB/s (%3.0f%% of %.2f TB/s)  batch4 %7.1f t/s  "
           "batch8 %7.1f t/s  batch8==alone: %s\n",
           hearth_model_name(m), hearth_model_ftype_name(m), pp, tg, gbs / 1e9, bw > 0 ? 100 * gbs / bw : 0,
           bw / 1e12, b4, b8, same ? "yes" : "NO");
    hearth_batch_free(&b);
    hearth_context_free(c);
    hearth_model_free(m);
    return same ? 0 : 1;
fail:
    fprintf(stderr, "bench: %s\n", hearth_context_errmsg(c));
    return 1;
}

int main(int argc, char **argv) {
    hb_err e = { 0, "" };
    cuda_ctx *cu = NULL;
    double bw = 0;
    if (cuda_ctx_new(0, &cu, &e) == 0) {
        cuda_measure_bandwidth(cu, &bw, &e);
        cuda_ctx_free(cu);
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= bench(argv[i], bw);
    return rc;
}
