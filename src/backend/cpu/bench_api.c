/* bench_api.c — the public benchmarking helpers of include/hearth.h: the machine's read
 * bandwidth (the roofline a generation step is measured against), the weight bytes a token
 * reads, and the kernel level in use.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "model/model.h"

typedef struct bw_job {
    const uint8_t *buf;
    size_t bytes;
    bool touch;           /* first pass: write the pages (first touch on the reading thread) */
    bool wide;            /* AVX-512 loads allowed */
    uint64_t sink[64];    /* per-thread results, so the reads cannot be optimized away */
} bw_job;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
        a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
        a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
        a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}
#endif

static uint64_t read_plain(const uint8_t *p, size_t n) {
    uint64_t a[8] = { 0 };
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int k = 0; k < 8; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * k, 8);
            a[k] ^= v;
        }
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static void bw_task(void *ctx, int ith, int nth) {
    bw_job *j = ctx;
    size_t per = (j->bytes / (size_t)nth) & ~(size_t)255;
    const uint8_t *p = j->buf + per * (size_t)ith;
    if (j->touch) {
        memset((void *)p, ith + 1, per);
        return;
    }
#if defined(__x86_64__)
    if (j->wide) {
        j->sink[ith % 64] = read_avx512(p, per);
        return;
    }
#endif
    j->sink[ith % 64] = read_plain(p, per);
}

hearth_status hearth_bench_read_bandwidth(int32_t n_threads, size_t bytes, int32_t reps, double *gbps) {
    hb_err err = { 0 };
    cpu_pool *pool = NULL;
    void *buf = NULL;
    int rc = HEARTH_OK;
    *gbps = 0;
    if (n_threads < 1 || n_threads > 1024 || bytes < ((size_t)64 << 20) || reps < 1) return HEARTH_E_INVALID;
    if ((rc = cpu_pool_new(n_threads, &pool, &err))) return rc;
    if (posix_memalign(&buf, 64, bytes)) {
        cpu_pool_free(pool);
        return HEARTH_E_NOMEM;
    }
    bw_job j = { buf, bytes, true, cpu_isa_level() >= CPU_ISA_AVX512, { 0 } };
    cpu_pool_run(pool, bw_task, &j);
    j.touch = false;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = hb_now_ns();
        cpu_pool_run(pool, bw_task, &j);
        double s = (double)(hb_now_ns() - t0) / 1e9;
        if (s < best) best = s;
    }
    size_t read = ((bytes / (size_t)n_threads) & ~(size_t)255) * (size_t)n_threads;
    *gbps = (double)read / best / 1e9;
    free(buf);
    cpu_pool_free(pool);
    return HEARTH_OK;
}

uint64_t hearth_model_bytes_per_token(const hearth_model *m) {
    if (!m || !m->gguf) return 0;
    bool has_output = gguf_find_tensor(m->gguf, "output.weight") != NULL;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        bool embd = t->name.len == 17 && memcmp(t->name.data, "token_embd.weight", 17) == 0;
        if (!embd || !has_output) sum += t->size;
    }
    return sum;
}

const char *hearth_cpu_isa(void) { return cpu_isa_name(cpu_isa_level()); }
