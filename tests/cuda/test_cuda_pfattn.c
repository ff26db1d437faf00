/* test_cuda_pfattn.c — the prefill attention kernel (cu_attn_pf.cu, taken by cuda_attention
 * for batches of 32 tokens and more; lowered to 16 here with HEARTH_CUDA_PFATTN_MIN) against
 * a plain double-precision reference computed here from the cache contents as the cache
 * stores them (dequantized).
 *
 * Cases: one sequence of 512 tokens from position 0; the same sequence as a chunk from
 * position 300 over cells already in the cache (also compared with the full batch: a row's
 * result must not depend on the rest of its batch); two sequences interleaved in one batch;
 * decode tokens of 24 sequences beside a prompt chunk; sliding windows (also over
 * non-consecutive positions); softcap; f16, q8_0 and f32 caches; head_dim 64 and 128; GQA
 * ratios 1, 2, 4 and 8; the quantized-output variant. Every cache cell
 * that no token may read holds NaN, so a read of one shows up in the result.
 * HEARTH_PFATTN_BENCH=1 prints kernel timings (TinyLlama shape) for a few batch sizes instead.
 * Built only with `make CUDA=1`; skips when no usable GPU is present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define CUDA_TEST_SEED 0x243F6A8885A308D3ull
#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

/* HEARTH_PFATTN_BENCH=1: timings only (the checks are skipped). */
static int bench_mode(void) {
    const char *b = getenv("HEARTH_PFATTN_BENCH");
    return b && *b == '1';
}

#undef NEED_GPU /* cuda_test.h's, plus: no checks in bench mode */
#define NEED_GPU()                          \
    do {                                    \
        if (!g_ctx || bench_mode()) skip(); \
    } while (0)

/* A cache of n_seq sequences x ctx cells and the queries of n_tok tokens. */
typedef struct fx {
    uint32_t type;
    int hd, hkv, g, n_seq, ctx, n_tok, window;
    int64_t kvd, qs;
    size_t rb;
    float *kst, *vst;  /* host: the cache as stored, dequantized [n_seq * ctx][kvd] */
    float *q;          /* host: [n_tok][qs] */
    cuda_kv kv;        /* device cache */
    float *dq, *dout;  /* device q and output ([n_tok][n_head * hd]) */
    int32_t *pos, *seq; /* host: the tokens */
} fx;

static int lo_of(int p, int window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* Stores a cache row, or NaN in every element of it (a cell no token may read). */
static void put_row(uint32_t type, const float *src, uint8_t *dst, int64_t n, int nan) {
    assert_true(quant_quantize_row(type, src, dst, n));
    if (!nan) return;
    if (type == QT_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = NAN;
    } else if (type == QT_F16) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = 0x7E00;
    } else { /* q8_0: a NaN scale per block */
        for (int64_t b = 0; b < n / 32; b++) dst[b * 34] = 0x00, dst[b * 34 + 1] = 0x7E;
    }
}

/* Builds the fixture for tokens (pos, seq) (copied): random cache and queries; the cells
 * that no token sees (window given) hold NaN. */
static void fx_init(fx *f, uint32_t type, int hd, int hkv, int g, int n_seq, int ctx, int n_tok, const int32_t *pos,
                    const int32_t *seq, int window) {
    memset(f, 0, sizeof *f);
    f->type = type, f->hd = hd, f->hkv = hkv, f->g = g, f->n_seq = n_seq, f->ctx = ctx, f->n_tok = n_tok;
    f->window = window;
    f->kvd = (int64_t)hkv * hd;
    f->qs = (int64_t)hkv * g * hd + 8; /* a row stride wider than the heads */
    f->rb = quant_row_size(type, f->kvd);
    int64_t cells = (int64_t)n_seq * ctx;
    char *seen = calloc((size_t)cells, 1);
    f->pos = malloc(sizeof(int32_t) * n_tok), f->seq = malloc(sizeof(int32_t) * n_tok);
    memcpy(f->pos, pos, sizeof(int32_t) * n_tok), memcpy(f->seq, seq, sizeof(int32_t) * n_tok);
    for (int t = 0; t < n_tok; t++)
        for (int c = lo_of(pos[t], window); c <= pos[t]; c++) seen[(int64_t)seq[t] * ctx + c] = 1;
    f->kst = malloc(sizeof(float) * cells * f->kvd), f->vst = malloc(sizeof(float) * cells * f->kvd);
    uint8_t *kq = malloc(f->rb * cells), *vq = malloc(f->rb * cells);
    float *row = malloc(sizeof(float) * f->kvd);
    assert_non_null(seen && f->kst && f->vst && kq && vq && row);
    for (int64_t r = 0; r < cells; r++) {
        for (int64_t i = 0; i < f->kvd; i++) row[i] = frand();
        put_row(type, row, kq + r * f->rb, f->kvd, !seen[r]);
        assert_true(quant_dequantize_row(type, kq + r * f->rb, f->kst + r * f->kvd, f->kvd));
        for (int64_t i = 0; i < f->kvd; i++) row[i] = frand();
        put_row(type, row, vq + r * f->rb, f->kvd, !seen[r]);
        assert_true(quant_dequantize_row(type, vq + r * f->rb, f->vst + r * f->kvd, f->kvd));
    }
    f->kv = (cuda_kv){ dev_from(kq, f->rb * cells), dev_from(vq, f->rb * cells), type, f->kvd, f->rb, ctx };
    f->q = malloc(sizeof(float) * n_tok * f->qs);
    for (int64_t i = 0; i < n_tok * f->qs; i++) f->q[i] = frand() * 2.0f; /* scores up to a few units */
    f->dq = dev_from(f->q, sizeof(float) * n_tok * f->qs);
    f->dout = dev_from(NULL, sizeof(float) * n_tok * hkv * g * hd);
    free(seen), free(kq), free(vq), free(row);
}

static void fx_free(fx *f) {
    cuda_free(g_ctx, f->kv.k), cuda_free(g_ctx, f->kv.v), cuda_free(g_ctx, f->dq), cuda_free(g_ctx, f->dout);
    free(f->kst), free(f->vst), free(f->q), free(f->pos), free(f->seq);
}

/* Runs attention for tokens [t0, t0 + n) of the fixture; out: host [n][n_head * hd]. */
static void fx_run(fx *f, int t0, int n, float softcap, int quant, float *out) {
    int hq = f->hkv * f->g;
    int32_t mx = 0;
    for (int t = t0; t < t0 + n; t++) mx = f->pos[t] > mx ? f->pos[t] : mx;
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 0, f->pos + t0, n, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 1, f->seq + t0, n, &ds, &g_err), 0);
    cuda_attn a = { &f->kv, dp, ds, n, hq, f->hkv, f->hd, f->hd, 1.0f / sqrtf((float)f->hd), softcap, f->window, mx };
    int64_t os = (int64_t)hq * f->hd;
    int rc = quant ? cuda_attention_q8(g_ctx, &a, f->dq + t0 * f->qs, f->qs, f->dout, os, &g_err)
                   : cuda_attention(g_ctx, &a, f->dq + t0 * f->qs, f->qs, f->dout, os, &g_err);
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    to_host(out, f->dout, sizeof(float) * n * os);
}

/* Normalized RMS error of out (tokens [t0, t0 + n)) against the double reference; also
 * asserts every output is finite. */
static double fx_check(const fx *f, int t0, int n, float softcap, const float *out) {
    int hq = f->hkv * f->g, hd = f->hd;
    double se = 0, sr = 0, scale = 1.0 / sqrt((double)hd);
    double *sc = malloc(sizeof(double) * f->ctx);
    assert_non_null(sc);
    for (int t = t0; t < t0 + n; t++)
        for (int h = 0; h < hq; h++) {
            int hk = h / f->g, p = f->pos[t], lo = lo_of(p, f->window);
            const float *qr = f->q + (int64_t)t * f->qs + (int64_t)h * hd;
            const float *kb = f->kst + (int64_t)f->seq[t] * f->ctx * f->kvd + hk * hd;
            const float *vb = f->vst + (int64_t)f->seq[t] * f->ctx * f->kvd + hk * hd;
            double mx = -1e300, sum = 0;
            for (int c = lo; c <= p; c++) {
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)qr[d] * kb[(int64_t)c * f->kvd + d];
                s *= scale;
                if (softcap > 0) s = softcap * tanh(s / softcap);
                sc[c] = s;
                if (s > mx) mx = s;
            }
            for (int c = lo; c <= p; c++) sum += sc[c] = exp(sc[c] - mx);
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int c = lo; c <= p; c++) o += sc[c] * vb[(int64_t)c * f->kvd + d];
                o /= sum;
                double gv = out[((int64_t)(t - t0) * hq + h) * hd + d];
                assert_true(isfinite(gv));
                se += (gv - o) * (gv - o), sr += o * o;
            }
        }
    free(sc);
    return sqrt(se / sr);
}

/* f16 rounding of the scaled queries and of the softmax weights (2^-11 relative each) gives
 * errors of a few 1e-4; 2e-3 leaves room without hiding a wrong cell or weight (one missing
 * cell out of hundreds already moves the result by more). */
#define PF_TOL 2e-3

/* One case: tokens given, whole batch, compared with the reference. */
static void check_case(const char *name, uint32_t type, int hd, int hkv, int g, int n_seq, int ctx, int n_tok,
                       const int32_t *pos, const int32_t *seq, int window, float softcap) {
    fx f;
    fx_init(&f, type, hd, hkv, g, n_seq, ctx, n_tok, pos, seq, window);
    float *out = malloc(sizeof(float) * n_tok * hkv * g * hd);
    fx_run(&f, 0, n_tok, softcap, 0, out);
    double e = fx_check(&f, 0, n_tok, softcap, out);
    printf("  %-34s %-4s hd %3d gqa %d window %3d softcap %2.0f: nrmse %.2e\n", name, quant_type_name(type), hd, g,
           window, softcap, e);
    assert_true(e < PF_TOL);
    free(out);
    fx_free(&f);
}

/* Tokens 0..n-1 of one sequence at positions p0.. */
static void seq_tokens(int32_t *pos, int32_t *seq, int n, int p0, int s) {
    for (int t = 0; t < n; t++) pos[t] = p0 + t, seq[t] = s;
}

/* 512 tokens from position 0, then the same rows as a chunk from position 300 (cells before
 * it already in the cache): both against the reference, and the chunk equal to the full
 * batch's rows. */
static void test_one_sequence_and_chunk(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 512, C0 = 300 };
    static int32_t pos[T], seq[T];
    seq_tokens(pos, seq, T, 0, 0);
    uint32_t types[3] = { QT_F16, QT_Q8_0, QT_F32 };
    for (int k = 0; k < 3; k++) {
        fx f;
        fx_init(&f, types[k], 64, 4, 8, 1, T, T, pos, seq, 0);
        float *full = malloc(sizeof(float) * T * 32 * 64), *part = malloc(sizeof(float) * T * 32 * 64);
        fx_run(&f, 0, T, 0.0f, 0, full);
        double e1 = fx_check(&f, 0, T, 0.0f, full);
        fx_run(&f, C0, T - C0, 0.0f, 0, part);
        double e2 = fx_check(&f, C0, T - C0, 0.0f, part);
        size_t row = (size_t)32 * 64, same = 0, n = (size_t)(T - C0) * row;
        double md = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)part[i] - full[(size_t)C0 * row + i]);
            same += d == 0, md = d > md ? d : md;
        }
        printf("  one sequence 512 from 0 %-4s: nrmse %.2e; chunk from %d: nrmse %.2e, vs full batch max diff "
               "%.1e (%zu/%zu equal)\n",
               quant_type_name(types[k]), e1, C0, e2, md, same, n);
        assert_true(e1 < PF_TOL && e2 < PF_TOL);
        assert_true(md <= 1e-6); /* the same tiles and sums: bitwise in practice */
        free(full), free(part);
        fx_free(&f);
    }
}

/* Head dims, GQA ratios, cache types. */
static void test_shapes(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 200 };
    static int32_t pos[T], seq[T];
    seq_tokens(pos, seq, T, 37, 0); /* a chunk from position 37: cells before it are cached */
    check_case("chunk from 37", QT_F16, 128, 4, 8, 1, 300, T, pos, seq, 0, 0.0f);
    check_case("chunk from 37", QT_F16, 128, 8, 1, 1, 300, T, pos, seq, 0, 0.0f);
    check_case("chunk from 37", QT_F16, 64, 8, 1, 1, 300, T, pos, seq, 0, 0.0f);
    check_case("chunk from 37", QT_Q8_0, 128, 2, 8, 1, 300, T, pos, seq, 0, 0.0f);
    check_case("chunk from 37", QT_F32, 128, 2, 1, 1, 300, T, pos, seq, 0, 0.0f);
    check_case("16 tokens", QT_F16, 64, 4, 8, 1, 300, 16, pos, seq, 0, 0.0f);
}

/* Two sequences interleaved token by token (one from 0, one a chunk from 50), and a batch
 * of runs of several sequences that straddle blocks. */
static void test_interleaved(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 300 };
    static int32_t pos[T], seq[T];
    for (int t = 0; t < T; t++) seq[t] = t & 1, pos[t] = (t & 1) ? 50 + t / 2 : t / 2;
    check_case("two sequences interleaved", QT_F16, 64, 4, 8, 2, 400, T, pos, seq, 0, 0.0f);
    check_case("two sequences interleaved", QT_Q8_0, 128, 8, 1, 2, 400, T, pos, seq, 0, 0.0f);
    check_case("two sequences interleaved, window", QT_F16, 64, 4, 8, 2, 400, T, pos, seq, 7, 0.0f);
    for (int t = 0; t < T; t++) seq[t] = (t / 40) % 3, pos[t] = 10 * ((t / 40) % 3) + t; /* runs of 40 */
    check_case("runs of 3 sequences", QT_F16, 64, 2, 4, 3, 400, T, pos, seq, 0, 0.0f);
    /* a server step: one token of each of 24 generating sequences, then a prompt chunk */
    for (int t = 0; t < 24; t++) seq[t] = t + 1, pos[t] = 37 * t + 5;
    for (int t = 24; t < 88; t++) seq[t] = 0, pos[t] = t - 24;
    check_case("24 decode tokens + 64 prompt tokens", QT_F16, 64, 4, 8, 25, 900, 88, pos, seq, 0, 0.0f);
    check_case("24 decode tokens + 64 prompt tokens", QT_Q8_0, 128, 2, 4, 25, 900, 88, pos, seq, 300, 10.0f);
}

/* Sliding windows (shorter and longer than a tile), over consecutive and over spread-out
 * positions (cells between them no token sees: NaN in the cache), and softcap. */
static void test_window_softcap(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 512 };
    static int32_t pos[T], seq[T];
    seq_tokens(pos, seq, T, 0, 0);
    check_case("window 100", QT_F16, 64, 4, 8, 1, T, T, pos, seq, 100, 0.0f);
    check_case("window 5", QT_Q8_0, 128, 4, 8, 1, T, T, pos, seq, 5, 0.0f);
    check_case("softcap 30", QT_F16, 128, 4, 8, 1, T, T, pos, seq, 0, 30.0f);
    check_case("window 64, softcap 5", QT_F32, 64, 4, 1, 1, T, T, pos, seq, 64, 5.0f);
    for (int t = 0; t < 100; t++) pos[t] = 3 * t + (t % 4 == 3 ? 1 : 0); /* gaps, one reordered pair */
    int32_t tmp = pos[10];
    pos[10] = pos[11], pos[11] = tmp;
    check_case("spread-out positions, window 2", QT_F16, 64, 4, 8, 1, 400, 100, pos, seq, 2, 0.0f);
    check_case("spread-out positions", QT_F16, 128, 4, 2, 1, 400, 100, pos, seq, 0, 20.0f);
}

/* The quantized-output variant at 16 tokens (the o product still runs as
 * matrix-vector products and reuses the quantized output): same output, and the product
 * over it equals the product that quantizes the output itself. */
static void test_quantized_output(void **state) {
    (void)state;
    NEED_GPU();
    enum { T = 16, HD = 64, HQ = 8, R = 64 };
    int32_t pos[T], seq[T];
    seq_tokens(pos, seq, T, 100, 0);
    fx f;
    fx_init(&f, QT_F16, HD, 2, 4, 1, 200, T, pos, seq, 0);
    static float o1[T * HQ * HD], o2[T * HQ * HD], y1[T * R], y2[T * R];
    size_t rb = quant_row_size(QT_Q8_0, HQ * HD);
    uint8_t *wq = malloc(rb * R);
    float *wf = malloc(sizeof(float) * HQ * HD);
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < HQ * HD; i++) wf[i] = frand();
        assert_true(quant_quantize_row(QT_Q8_0, wf, wq + r * rb, HQ * HD));
    }
    cuda_weight w = { QT_Q8_0, R, HQ * HD, rb, dev_from(wq, rb * R) };
    assert_true(cuda_matmul_is_mv(&w, T));
    float *dy = dev_from(NULL, sizeof y1);
    fx_run(&f, 0, T, 0.0f, 0, o1);
    assert_int_equal(cuda_matmul(g_ctx, &w, f.dout, T, dy, R, &g_err), 0);
    to_host(y1, dy, sizeof y1);
    fx_run(&f, 0, T, 0.0f, 1, o2);
    cuda_mm_opt opt = { 1, NULL, 0 };
    assert_int_equal(cuda_matmul_ex(g_ctx, &w, f.dout, T, dy, R, &opt, &g_err), 0);
    to_host(y2, dy, sizeof y2);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(y1, y2, sizeof y1);
    double e = fx_check(&f, 0, T, 0.0f, o2);
    printf("  quantized output, 16 tokens: nrmse %.2e, product over it identical\n", e);
    assert_true(e < PF_TOL);
    cuda_free(g_ctx, (void *)w.data), cuda_free(g_ctx, dy);
    free(wq), free(wf);
    fx_free(&f);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Time per cuda_attention call over tokens [t0, t0 + n) of f (TinyLlama heads). */
static void bench_one(const char *what, fx *f, int t0, int n) {
    int32_t mx = 0;
    for (int t = t0; t < t0 + n; t++) mx = f->pos[t] > mx ? f->pos[t] : mx;
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 0, f->pos + t0, n, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 1, f->seq + t0, n, &ds, &g_err), 0);
    cuda_attn a = { &f->kv, dp, ds, n, 32, 4, 64, 64, 0.125f, 0.0f, 0, mx };
    for (int it = 0; it < 3; it++)
        assert_int_equal(cuda_attention(g_ctx, &a, f->dq + t0 * f->qs, f->qs, f->dout, 32 * 64, &g_err), 0);
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    double t = now_us();
    for (int it = 0; it < 50; it++)
        assert_int_equal(cuda_attention(g_ctx, &a, f->dq + t0 * f->qs, f->qs, f->dout, 32 * 64, &g_err), 0);
    assert_int_equal(cuda_sync(g_ctx, &g_err), 0);
    printf("  bench: %-28s %4d tokens: %8.2f us per call\n", what, n, (now_us() - t) / 50);
}

/* HEARTH_PFATTN_BENCH=1: time per call (TinyLlama: 32 heads, 4 KV heads, head_dim 64, f16
 * cache) for prompt batches from position 0, a 512-token chunk deep in the context, decode
 * steps of many sequences and a server step (decode tokens + a prompt chunk). Prints only;
 * run with HEARTH_CUDA_PFATTN=0 / HEARTH_CUDA_PFATTN_MIN=9 to compare the paths. */
static void test_bench(void **state) {
    (void)state;
    if (!g_ctx || !bench_mode()) skip();
    enum { CTX = 2048, NS = 65 };
    static int32_t pos[CTX + NS], seq[CTX + NS];
    seq_tokens(pos, seq, CTX, 0, 0);
    for (int i = 0; i < NS - 1; i++) pos[CTX + i] = 1000 + 7 * i, seq[CTX + i] = 1 + i; /* decode tokens */
    pos[CTX + NS - 1] = 0, seq[CTX + NS - 1] = 0;
    fx f;
    fx_init(&f, QT_F16, 64, 4, 8, NS, CTX, CTX + NS - 1, pos, seq, 0);
    int ns[8] = { 9, 12, 16, 24, 32, 64, 128, 512 };
    for (int k = 0; k < 8; k++) bench_one("prompt from 0", &f, 0, ns[k]);
    bench_one("prompt chunk from 1536", &f, CTX - 512, 512);
    bench_one("prompt chunk from 1500", &f, 1500, 32);
    bench_one("prompt chunk from 1500", &f, 1500, 128);
    bench_one("prompt chunk from 256", &f, 256, 32);
    int nd[3] = { 16, 32, 64 };
    for (int k = 0; k < 3; k++) bench_one("decode, 1 token/seq, ~1200", &f, CTX, nd[k]);
    fx_free(&f);
    /* a server step: 8 decode tokens (positions ~1000), then 504 prompt tokens from 0 */
    static int32_t p2[512], s2[512];
    for (int t = 0; t < 8; t++) p2[t] = 1000 + 13 * t, s2[t] = 1 + t;
    for (int t = 8; t < 512; t++) p2[t] = t - 8, s2[t] = 0;
    fx_init(&f, QT_F16, 64, 4, 8, 9, 1200, 512, p2, s2, 0);
    bench_one("8 decode + 504 prompt", &f, 0, 512);
    fx_free(&f);
}

int main(void) {
    /* the kernel from 16 tokens (default 32), so that the 16-token cases below, where the
     * o product still reuses the quantized output, run on it too */
    setenv("HEARTH_CUDA_PFATTN_MIN", "16", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_sequence_and_chunk),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_window_softcap),
        cmocka_unit_test(test_quantized_output),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
