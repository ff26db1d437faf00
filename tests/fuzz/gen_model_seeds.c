/* gen_model_seeds.c — writes the seed models of fuzz_model (not built by make; regenerate with
 *   cc -std=c17 -D_GNU_SOURCE -Iinclude -Isrc tests/fuzz/gen_model_seeds.c \
 *      build/libhearth.a $(pkg-config --libs ...) -lm -pthread -o /tmp/gen && /tmp/gen tests/fuzz/seeds/model
 * Tiny F32 models (n_embd 16, 2 heads of 8, vocab 8) of each decoder layout: llama (separate
 * q/k/v, rope_freqs), qwen2 (biases), qwen3 (q/k norms), gemma2 (post norms, softcaps, sliding
 * window) and phi3 (fused qkv and gate/up, LongRoPE factors). */
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

static float g_data[4096];

static void add(gguf_writer *w, const char *name, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = { ne0, ne1 };
    hb_err e;
    gguf_writer_add_tensor(w, name, QT_F32, ne1 == 1 ? 1 : 2, ne, g_data, &e);
}

static void write_model(const char *dir, const char *arch) {
    hb_err e;
    char k[128], path[512];
    gguf_writer *w = gguf_writer_new();
    bool phi3 = !strcmp(arch, "phi3"), qwen2 = !strcmp(arch, "qwen2"), qwen3 = !strcmp(arch, "qwen3");
    bool gemma2 = !strcmp(arch, "gemma2"), llama = !strcmp(arch, "llama");
    gguf_writer_add_str(w, "general.architecture", arch, strlen(arch), &e);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    gguf_writer_add_u32(w, KEY("embedding_length"), 16, &e);
    gguf_writer_add_u32(w, KEY("block_count"), 2, &e);
    gguf_writer_add_u32(w, KEY("feed_forward_length"), 16, &e);
    gguf_writer_add_u32(w, KEY("attention.head_count"), 2, &e);
    gguf_writer_add_u32(w, KEY("attention.head_count_kv"), phi3 ? 2 : 1, &e);
    gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f, &e);
    gguf_writer_add_u32(w, KEY("context_length"), 64, &e);
    if (gemma2) {
        gguf_writer_add_f32(w, KEY("attn_logit_softcapping"), 50.0f, &e);
        gguf_writer_add_f32(w, KEY("final_logit_softcapping"), 30.0f, &e);
        gguf_writer_add_u32(w, KEY("attention.sliding_window"), 4, &e);
    }
    if (phi3) {
        gguf_writer_add_u32(w, KEY("rope.scaling.original_context_length"), 32, &e);
        gguf_writer_add_f32(w, KEY("rope.scaling.attn_factor"), 1.1f, &e);
    }
#undef KEY
    int kvd = phi3 ? 16 : 8;
    add(w, "token_embd.weight", 16, 8);
    add(w, "output_norm.weight", 16, 1);
    if (llama) add(w, "rope_freqs.weight", 4, 1);
    if (phi3) {
        add(w, "rope_factors_short.weight", 4, 1);
        add(w, "rope_factors_long.weight", 4, 1);
        add(w, "output.weight", 16, 8);
    }
    for (int il = 0; il < 2; il++) {
        char n[64];
#define T(s, a, b) (snprintf(n, sizeof n, "blk.%d." s, il), add(w, n, a, b))
        T("attn_norm.weight", 16, 1);
        if (phi3) T("attn_qkv.weight", 16, 16 + 2 * kvd);
        else { T("attn_q.weight", 16, 16); T("attn_k.weight", 16, kvd); T("attn_v.weight", 16, kvd); }
        if (qwen2) { T("attn_q.bias", 16, 1); T("attn_k.bias", kvd, 1); T("attn_v.bias", kvd, 1); }
        if (qwen3) { T("attn_q_norm.weight", 8, 1); T("attn_k_norm.weight", 8, 1); }
        T("attn_output.weight", 16, 16);
        if (gemma2) { T("post_attention_norm.weight", 16, 1); T("post_ffw_norm.weight", 16, 1); }
        T("ffn_norm.weight", 16, 1);
        if (phi3) T("ffn_up.weight", 16, 32);
        else { T("ffn_gate.weight", 16, 16); T("ffn_up.weight", 16, 16); }
        T("ffn_down.weight", 16, 16);
#undef T
    }
    snprintf(path, sizeof path, "%s/%s.gguf", dir, arch);
    if (gguf_writer_write(w, path, &e)) fprintf(stderr, "%s\n", e.msg);
    gguf_writer_free(w);
}

int main(int argc, char **argv) {
    for (int i = 0; i < 4096; i++) g_data[i] = 0.5f + (float)((i * 2654435761u) % 1000) / 2000.0f;
    const char *archs[] = { "llama", "qwen2", "qwen3", "gemma2", "phi3" };
    for (int i = 0; i < 5; i++) write_model(argc > 1 ? argv[1] : ".", archs[i]);
    return 0;
}
