/* kbench.c — micro-benchmark of cpu_matmul on TinyLlama-sized weights (a tool, not a test).
 *
 *   build/kbench [-t threads] [-n n_tok] [-r rows] [-c cols] [-i iters] [-R rounds] [type ...]
 *
 * Prints, per type, the best time per call over `rounds` rounds of `iters` calls and the
 * achieved weight bandwidth (file bytes of the weight / time) for the chosen ISA level
 * (HEARTH_CPU_ISA caps it). On a shared machine use many short rounds (-R 50 -i 10): the
 * minimum is the kernel's own speed, the rest is other people's load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

static uint64_t g_rng = 88172645463325252ull;
static float frnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static int bench_type(cpu_pool *pool, uint32_t type, int64_t rows, int64_t cols, int64_t n_tok, int iters, int rounds) {
    size_t rb = quant_row_size(type, cols);
    uint8_t *data = malloc(rb * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols), *x = malloc(sizeof(float) * (size_t)(cols * n_tok));
    float *y = malloc(sizeof(float) * (size_t)(rows * n_tok));
    if (!data || !row || !x || !y) return 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = 0.02f * frnd();
        if (!quant_quantize_row(type, row, data + (size_t)r * rb, cols)) return 1;
    }
    for (int64_t i = 0; i < cols * n_tok; i++) x[i] = frnd();
    cpu_weight w = { type, rows, cols, rb, data, NULL, 0, false };
    hb_err err = { 0 };
    if (cpu_weight_prepare(&w, &err)) return 1;
    cpu_scratch sc = { 0 };
    cpu_matmul(pool, &w, x, n_tok, y, rows, &sc);
    /* best round: the machine may be shared, the minimum is the kernel's own speed */
    double s = 1e30;
    for (int round = 0; round < rounds; round++) {
        uint64_t t0 = hb_now_ns();
        for (int i = 0; i < iters; i++) cpu_matmul(pool, &w, x, n_tok, y, rows, &sc);
        double si = (double)(hb_now_ns() - t0) / 1e9 / iters;
        if (si < s) s = si;
    }
    double bytes = (double)rb * (double)rows;
    printf("%-5s %6lldx%-6lld n_tok=%-4lld isa=%-6s %9.3f ms  %7.2f GB/s  %8.1f GMAC/s\n", quant_type_name(type),
           (long long)rows, (long long)cols, (long long)n_tok, cpu_isa_name(cpu_isa_level()), s * 1e3, bytes / s / 1e9,
           (double)rows * (double)cols * (double)n_tok / s / 1e9);
    cpu_scratch_free(&sc);
    cpu_weight_release(&w);
    free(data), free(row), free(x), free(y);
    return 0;
}

int main(int argc, char **argv) {
    int threads = 2, iters = 20, rounds = 5;
    int64_t n_tok = 1, rows = 5632, cols = 2048;
    int first_type = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_tok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-R") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) cols = atoll(argv[++i]);
        else { first_type = i; break; }
    }
    cpu_pool *pool = NULL;
    hb_err err = { 0 };
    if (cpu_pool_new(threads, &pool, &err)) return 1;
    static const char *defaults[] = { "q4_0", "q8_0", "q4_k", "q5_k", "q6_k", "f16", "bf16" };
    int nt = first_type < argc ? argc - first_type : 7;
    for (int i = 0; i < nt; i++) {
        const char *name = first_type < argc ? argv[first_type + i] : defaults[i];
        int t = quant_type_from_name(name);
        if (t < 0) { fprintf(stderr, "kbench: unknown type %s\n", name); return 1; }
        if (bench_type(pool, (uint32_t)t, rows, cols, n_tok, iters > 0 ? iters : 1, rounds > 0 ? rounds : 1)) return 1;
    }
    cpu_pool_free(pool);
    return 0;
}
