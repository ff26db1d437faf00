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

int main(int argc, char **argv) {
    hb_err err = { 0, "" };
    cuda_ctx *c = NULL;
    int iters = argc > 1 ? atoi(argv[1]) : 200;
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
    const uint32_t types[] = { QT_F16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K, QT_Q5_K, QT_IQ4_XS };
    const int toks[] = { 1, 8, 512 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
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
                int n = toks[k], it = n >= 512 ? iters / 10 + 1 : iters;
                cuda_matmul(c, &w, dx, n, dy, s->rows, &err);
                cuda_sync(c, &err);
                uint64_t t0 = hb_now_ns();
                for (int i = 0; i < it; i++) cuda_matmul(c, &w, dx, n, dy, s->rows, &err);
                if (cuda_sync(c, &err)) {
                    fprintf(stderr, "bench: %s\n", err.msg);
                    return 1;
                }
                double us = (double)(hb_now_ns() - t0) / 1e3 / it;
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
