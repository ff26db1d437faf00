/* mkmodel.c — writes random-weight GGUF models of real shapes for benchmarking (a tool,
 * not a test). Uses hearth's own GGUF writer and reference quantizers.
 *
 *   build/mkmodel --shape tinyllama --type q4_k_m -o /tmp/tl-q4km.gguf [--vocab FILE] [-t N]
 *
 * Shapes: tinyllama (llama, n_embd 2048, 22 layers, 32 heads, 4 KV heads, ffn 5632,
 * vocab 32000, context 2048), tiny (a 4-layer 256-wide llama for quick checks).
 * Types: f16, q8_0, q4_0, q4_k_m. Like common quantization tools, output.weight is Q6_K
 * for q4_0 and q4_k_m; q4_k_m uses Q4_K everywhere else except Q6_K for attn_v and
 * ffn_down on the "more bits" layers (first and last eighth, and every third in between).
 * Weights are normal(0, 0.02) from a fixed seed per tensor (same file every run); norm
 * weights are 1. The tokenizer (all tokenizer.* keys) is copied from --vocab, default
 * ../shared/vocab/ggml-vocab-llama-spm.gguf.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct shape {
    const char *name;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
} shape;

static const shape k_shapes[] = {
    { "tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048 },
    { "tiny", 256, 4, 8, 4, 768, 32000, 512 },
};

enum { FT_F16, FT_Q8_0, FT_Q4_0, FT_Q4_K_M };

typedef struct gen_job {
    uint32_t type;
    int64_t cols, rows, r0, r1;
    uint64_t seed;
    uint8_t *out;
    size_t row_bytes;
    bool ok;
} gen_job;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* normal(0, 0.02) by Box-Muller, one row at a time from a per-row seed */
static void *gen_rows(void *arg) {
    gen_job *j = arg;
    float *buf = malloc(sizeof(float) * (size_t)j->cols);
    j->ok = buf != NULL;
    for (int64_t r = j->r0; r < j->r1 && j->ok; r++) {
        uint64_t s = j->seed * 1000003u + (uint64_t)r;
        for (int64_t c = 0; c < j->cols; c += 2) {
            double u1 = ((double)(splitmix(&s) >> 11) + 1.0) / 9007199254740993.0;
            double u2 = (double)(splitmix(&s) >> 11) / 9007199254740992.0;
            double rad = sqrt(-2.0 * log(u1)) * 0.02;
            buf[c] = (float)(rad * cos(6.283185307179586 * u2));
            if (c + 1 < j->cols) buf[c + 1] = (float)(rad * sin(6.283185307179586 * u2));
        }
        j->ok = quant_quantize_row(j->type, buf, j->out + (size_t)r * j->row_bytes, j->cols);
    }
    free(buf);
    return NULL;
}

/* Random 2-D weight [rows][cols] of `type`, quantized on n_threads threads. Caller frees. */
static uint8_t *gen_weight(uint32_t type, int64_t cols, int64_t rows, uint64_t seed, int n_threads) {
    size_t rb = quant_row_size(type, cols);
    uint8_t *out = malloc(rb * (size_t)rows);
    if (!out) return NULL;
    gen_job jobs[64];
    pthread_t th[64];
    bool ok = true;
    for (int i = 0; i < n_threads; i++) {
        jobs[i] = (gen_job){ type, cols, rows, rows * i / n_threads, rows * (i + 1) / n_threads, seed, out, rb, false };
        if (i > 0 && pthread_create(&th[i], NULL, gen_rows, &jobs[i]) != 0) { jobs[i].ok = false; th[i] = 0; }
    }
    gen_rows(&jobs[0]);
    for (int i = 1; i < n_threads; i++) if (th[i]) pthread_join(th[i], NULL);
    for (int i = 0; i < n_threads; i++) ok = ok && jobs[i].ok;
    if (!ok) { free(out); return NULL; }
    return out;
}

static bool more_bits(uint32_t il, uint32_t n) { return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2; }

typedef struct model_out {
    gguf_writer *w;
    uint8_t **bufs;
    size_t n_bufs, cap;
    int n_threads;
    uint64_t seed;
} model_out;

static int add_tensor(model_out *mo, const char *name, uint32_t type, int64_t cols, int64_t rows, bool ones, hb_err *err) {
    int rc = HEARTH_OK;
    uint8_t *data = NULL;
    if (ones) {
        data = malloc(sizeof(float) * (size_t)cols);
        HB_CHECK(data, HEARTH_E_NOMEM, "out of memory");
        for (int64_t i = 0; i < cols; i++) ((float *)data)[i] = 1.0f;
    } else {
        data = gen_weight(type, cols, rows, ++mo->seed, mo->n_threads);
        HB_CHECK(data, HEARTH_E_NOMEM, "cannot generate %s", name);
    }
    if (mo->n_bufs == mo->cap) {
        size_t nc = mo->cap ? mo->cap * 2 : 64;
        uint8_t **nb = realloc(mo->bufs, nc * sizeof *nb);
        HB_CHECK(nb, HEARTH_E_NOMEM, "out of memory");
        mo->bufs = nb, mo->cap = nc;
    }
    mo->bufs[mo->n_bufs++] = data;
    int64_t ne[2] = { cols, rows };
    rc = gguf_writer_add_tensor(mo->w, name, type, rows > 1 ? 2 : 1, ne, data, err);
    data = NULL;
out:
    if (rc && data) free(data);
    return rc;
}

static int write_meta(gguf_writer *w, const shape *s, int ft, const char *vocab, hb_err *err) {
    static const uint32_t file_type[] = { 1, 7, 2, 15 };
    int rc = HEARTH_OK;
    gguf_file *v = NULL;
    char name[64];
    snprintf(name, sizeof name, "%s-random", s->name);
    if ((rc = gguf_writer_add_str(w, "general.architecture", "llama", 5, err))) goto out;
    if ((rc = gguf_writer_add_str(w, "general.name", name, strlen(name), err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "general.file_type", file_type[ft], err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.context_length", s->n_ctx, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.embedding_length", s->n_embd, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.block_count", s->n_layer, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.feed_forward_length", s->n_ff, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.attention.head_count", s->n_head, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.attention.head_count_kv", s->n_head_kv, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.rope.dimension_count", s->n_embd / s->n_head, err))) goto out;
    if ((rc = gguf_writer_add_u32(w, "llama.vocab_size", s->n_vocab, err))) goto out;
    if ((rc = gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err))) goto out;
    if ((rc = gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f, err))) goto out;
    if ((rc = gguf_open(vocab, &v, err))) goto out;
    for (uint64_t i = 0; i < gguf_n_kv(v); i++) {
        const gguf_kv *kv = gguf_kv_at(v, i);
        if (kv->key.len > 10 && memcmp(kv->key.data, "tokenizer.", 10) == 0 && (rc = gguf_writer_copy_kv(w, kv, err))) goto out;
    }
    const gguf_array *toks = NULL;
    HB_CHECK(gguf_get_arr(v, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err) == HEARTH_OK && toks->n == s->n_vocab,
             HEARTH_E_FORMAT, "%s: tokenizer.ggml.tokens must have %u entries", vocab, s->n_vocab);
out:
    gguf_close(v);
    return rc;
}

static int build_model(const shape *s, int ft, const char *vocab, const char *path, int n_threads, hb_err *err) {
    int rc = HEARTH_OK;
    model_out mo = { gguf_writer_new(), NULL, 0, 0, n_threads, 42 };
    HB_CHECK(mo.w, HEARTH_E_NOMEM, "out of memory");
    if ((rc = write_meta(mo.w, s, ft, vocab, err))) goto out;
    uint32_t base = ft == FT_F16 ? QT_F16 : ft == FT_Q8_0 ? QT_Q8_0 : ft == FT_Q4_0 ? QT_Q4_0 : QT_Q4_K;
    uint32_t out_t = (ft == FT_Q4_0 || ft == FT_Q4_K_M) ? QT_Q6_K : base;
    int64_t e = s->n_embd, kv = (int64_t)s->n_embd / s->n_head * s->n_head_kv, ff = s->n_ff;
    if ((rc = add_tensor(&mo, "token_embd.weight", base, e, s->n_vocab, false, err))) goto out;
    for (uint32_t il = 0; il < s->n_layer; il++) {
        uint32_t vt = (ft == FT_Q4_K_M && more_bits(il, s->n_layer)) ? QT_Q6_K : base;
        char nm[96];
#define T(suffix, type, c, r, ones) \
        snprintf(nm, sizeof nm, "blk.%u." suffix, il); \
        if ((rc = add_tensor(&mo, nm, type, c, r, ones, err))) goto out;
        T("attn_norm.weight", QT_F32, e, 1, true)
        T("attn_q.weight", base, e, e, false)
        T("attn_k.weight", base, e, kv, false)
        T("attn_v.weight", vt, e, kv, false)
        T("attn_output.weight", base, e, e, false)
        T("ffn_norm.weight", QT_F32, e, 1, true)
        T("ffn_gate.weight", base, e, ff, false)
        T("ffn_up.weight", base, e, ff, false)
        T("ffn_down.weight", vt, ff, e, false)
#undef T
        fprintf(stderr, "\rmkmodel: layer %u/%u", il + 1, s->n_layer);
    }
    fprintf(stderr, "\n");
    if ((rc = add_tensor(&mo, "output_norm.weight", QT_F32, e, 1, true, err))) goto out;
    if ((rc = add_tensor(&mo, "output.weight", out_t, e, s->n_vocab, false, err))) goto out;
    rc = gguf_writer_write(mo.w, path, err);
out:
    gguf_writer_free(mo.w);
    for (size_t i = 0; i < mo.n_bufs; i++) free(mo.bufs[i]);
    free(mo.bufs);
    return rc;
}

int main(int argc, char **argv) {
    const char *shape_name = "tinyllama", *type = NULL, *out = NULL;
    const char *vocab = "../shared/vocab/ggml-vocab-llama-spm.gguf";
    int n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape_name = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mkmodel --shape tinyllama|tiny --type f16|q8_0|q4_0|q4_k_m -o FILE [--vocab FILE] [-t N]\n");
            return 1;
        }
    }
    static const char *types[] = { "f16", "q8_0", "q4_0", "q4_k_m" };
    int ft = -1;
    for (int i = 0; type && i < 4; i++) if (!strcmp(type, types[i])) ft = i;
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++) if (!strcmp(shape_name, k_shapes[i].name)) s = &k_shapes[i];
    if (ft < 0 || !s || !out || n_threads < 1 || n_threads > 64) {
        fprintf(stderr, "mkmodel: need --shape (tinyllama|tiny), --type (f16|q8_0|q4_0|q4_k_m), -o FILE, -t 1..64\n");
        return 1;
    }
    hb_err err = { 0 };
    if (build_model(s, ft, vocab, out, n_threads, &err)) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "mkmodel: wrote %s\n", out);
    return 0;
}
