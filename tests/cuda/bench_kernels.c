/* bench_kernels.c — times the CUDA matrix-vector kernels on the matrices of a TinyLlama-1.1B
 * layer (and its output matrix) for the benchmark weight types, and prints the achieved
 * fraction of the measured read bandwidth. Built by `make CUDA=1` as build/cuda_bench_kernels.
 * Times include the activation quantization and launch gaps, as a decode step sees them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

typedef struct shape {
    const char *name;
    int64_t rows, cols;
} shape;

static const shape k_shapes[] = {
    { "attn_q/o 2048x2048", 2048, 2048 },
    { "ffn_gate/up 5632x2048", 5632, 2048 },
    { "ffn_down 2048x5632", 2048, 5632 },
    { "output 32000x2048", 32000, 2048 },
};

/* GPU time of one matmul: `reps` of them captured in one graph, replayed (best of 5),
 * so host launch costs are excluded but the gaps between kernels are included. */
static double time_graph(cuda_ctx *c, const cuda_weight *w, const float *x, int n, float *y, int64_t ldy, int reps) {
    hb_err err = { 0, "" };
    cuda_graph *g = NULL;
    cuda_matmul(c, w, x, n, y, ldy, &err); /* sizes the scratch outside the capture */
    if (cuda_sync(c, &err) || cuda_capture_begin(c, &err)) goto fail;
    for (int i = 0; i < reps; i++) cuda_matmul(c, w, x, n, y, ldy, &err);
    if (cuda_capture_end(c, &g, &err)) goto fail;
    double best = 1e30;
    for (int k = 0; k < 6; k++) {
        uint64_t t0 = hb_now_ns();
        if (cuda_graph_launch(c, g, &err) || cuda_sync(c, &err)) goto fail;
        double us = (double)(hb_now_ns() - t0) / 1e3 / reps;
        if (k > 0 && us < best) best = us;
    }
    cuda_graph_free(g);
    return best;
fail:
    fprintf(stderr, "bench: %s\n", err.msg);
    return -1;
}

/* Times `reps` copies of the statement captured in one graph (µs per copy, best of 5). */
#define TIME_CHAIN(label, stmt)                                                                     \
    do {                                                                                            \
        cuda_graph *g_ = NULL;                                                                      \
        stmt;                                                                                       \
        if (cuda_sync(c, &err) || cuda_capture_begin(c, &err)) break;                               \
        for (int r_ = 0; r_ < 32; r_++) stmt;                                                       \
        if (cuda_capture_end(c, &g_, &err)) break;                                                  \
        double best_ = 1e30;                                                                        \
        for (int k_ = 0; k_ < 6; k_++) {                                                            \
            uint64_t t0_ = hb_now_ns();                                                             \
            if (cuda_graph_launch(c, g_, &err) || cuda_sync(c, &err)) break;                        \
            double us_ = (double)(hb_now_ns() - t0_) / 1e3 / 32;                                    \
            if (k_ > 0 && us_ < best_) best_ = us_;                                                 \
        }                                                                                           \
        cuda_graph_free(g_);                                                                        \
        printf("step op %-40s %7.2f us\n", label, best_);                                          \
    } while (0)

/* The small ops of a TinyLlama decode step, each timed in a graph chain. */
static void step_ops(cuda_ctx *c) {
    hb_err err = { 0, "" };
    void *buf = NULL, *kk = NULL, *vv = NULL;
    const int64_t E = 2048, CTX = 2048;
    if (cuda_alloc(c, &buf, 1 << 24, &err) || cuda_alloc(c, &kk, CTX * 256 * 2, &err) ||
        cuda_alloc(c, &vv, CTX * 256 * 2, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return;
    }
    float *x = buf, *y = x + 4 * E, *w = y + 4 * E, *q = w + 4 * E, *o = q + 4 * E;
    float *host = calloc((size_t)(20 * E), sizeof(float));
    for (int64_t i = 0; i < 20 * E; i++) host[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    cuda_upload(c, x, host, sizeof(float) * 20 * E, &err);
    TIME_CHAIN("scale 1 float (the per-node floor)", cuda_scale(c, x, 1, 1.0f, &err));
    TIME_CHAIN("rmsnorm 2048", cuda_rmsnorm(c, x, E, y, E, 1, E, w, 1e-5f, &err));
    TIME_CHAIN("rmsnorm+quantize 2048", cuda_rmsnorm_q8(c, x, E, y, 1, E, w, 1e-5f, &err));
    TIME_CHAIN("add 2048", cuda_add(c, y, x, E, &err));
    TIME_CHAIN("glu 5632", cuda_glu(c, 0, x, E, y, E, o, E, 1, E, &err));
    int32_t pos_h[2] = { 100, 0 };
    const int32_t *pos = NULL, *seq = NULL;
    cuda_stage_i32(c, 0, pos_h, 1, &pos, &err);
    cuda_stage_i32(c, 1, pos_h + 1, 1, &seq, &err);
    cuda_rope rp = { 0, 64, 10000.0f, 1.0f, 1.0f, NULL, NULL };
    TIME_CHAIN("rope 32 heads x 64", cuda_rope_apply(c, q, 1, E, 32, 64, pos, &rp, &err));
    cuda_kv kv = { kk, vv, QT_F16, 256, 512, CTX };
    TIME_CHAIN("kv store 256", cuda_kv_store(c, &kv, x, 256, y, 256, 1, pos, seq, &err));
    for (int p = 100; p < CTX; p *= 3) {
        int32_t ph = p;
        cuda_stage_i32(c, 2, &ph, 1, &pos, &err);
        cuda_attn at = { &kv, pos, seq, 1, 32, 4, 64, 64, 0.125f, 0.0f, 0, p };
        char label[64];
        snprintf(label, sizeof label, "attention 32/4 heads x 64, pos %d", p);
        TIME_CHAIN(label, cuda_attention(c, &at, q, E, o, E, &err));
    }
    if (err.code) fprintf(stderr, "bench: %s\n", err.msg);
    free(host);
    cuda_free(c, buf), cuda_free(c, kk), cuda_free(c, vv);
}

int main(int argc, char **argv) {
    hb_err err = { 0, "" };
    cuda_ctx *c = NULL;
    (void)argv;
    (void)argc;
    if (cuda_ctx_new(0, &c, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    double bw = 0;
    if (cuda_measure_bandwidth(c, &bw, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    printf("%s: measured read bandwidth %.2f TB/s\n", cuda_ctx_info(c)->name, bw / 1e12);
    step_ops(c);
    const uint32_t types[] = { QT_F16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K, QT_Q5_K, QT_IQ4_XS };
    const int toks[] = { 1, 2, 4, 8, 512 };
    const char *only = getenv("BENCH_TYPES"); /* e.g. "Q4_0,F16" */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        if (only && !strstr(only, quant_type_name(types[ti]))) continue;
        for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
            const shape *s = &k_shapes[si];
            size_t rb = quant_row_size(types[ti], s->cols), bytes = rb * (size_t)s->rows;
            uint8_t *host = malloc(bytes);
            for (size_t i = 0; i < bytes; i++) host[i] = (uint8_t)(i * 2654435761u >> 13);
            /* keep f16/bf16 scales finite: rewrite every 2-byte word that would be Inf/NaN */
            for (size_t i = 0; i + 1 < bytes; i += 2)
                if ((host[i + 1] & 0x7c) == 0x7c) host[i + 1] &= 0x3f;
            void *dw = NULL, *dx = NULL, *dy = NULL;
            float *x = malloc(sizeof(float) * 512 * (size_t)s->cols);
            for (int64_t i = 0; i < 512 * s->cols; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
            if (cuda_alloc(c, &dw, bytes, &err) || cuda_alloc(c, &dx, sizeof(float) * 512 * s->cols, &err) ||
                cuda_alloc(c, &dy, sizeof(float) * 512 * s->rows, &err) || cuda_upload(c, dw, host, bytes, &err) ||
                cuda_upload(c, dx, x, sizeof(float) * 512 * s->cols, &err)) {
                fprintf(stderr, "bench: %s\n", err.msg);
                return 1;
            }
            cuda_weight w = { types[ti], s->rows, s->cols, rb, dw };
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                int n = toks[k];
                double us = time_graph(c, &w, dx, n, dy, s->rows, n >= 512 ? 4 : 32);
                if (us < 0) return 1;
                double gbs = (double)bytes / (us * 1e-6);
                double tflops = 2.0 * (double)s->rows * (double)s->cols * n / (us * 1e-6) / 1e12;
                printf("%-7s %-24s n_tok %3d  %8.1f us  %7.1f GB/s (%3.0f%% of read bw)  %6.1f TFLOP/s\n",
                       quant_type_name(types[ti]), s->name, n, us, gbs / 1e9, 100.0 * gbs / bw, tflops);
            }
            cuda_free(c, dw), cuda_free(c, dx), cuda_free(c, dy);
            free(host), free(x);
        }
    }
    cuda_ctx_free(c);
    return 0;
}
