/* Differential tests of the CPU attention (src/backend/cpu/ops_attn*.c) and the SIMD
 * per-token helpers (ops_vec.h) on every ISA level this machine allows (scalar reference,
 * avx2, avx512, capped with cpu_isa_force), 1 and 2 threads.
 *
 * Attention: random q and K/V cache contents (f32, f16 and q8_0 caches), awkward shapes:
 * head_dim 64, 80, 96/64 (k and v differ), 128, 256; GQA ratios 1, 4, 8; n_tok 1, 3, 17, 70;
 * several sequences per batch (consecutive and interleaved tokens); positions after an
 * already cached prefix; decode batches long enough to be cut into chunks; sliding window;
 * softcap. Expected values come from an independent double-precision softmax over the
 * dequantized cache (quant_dequantize_row), written here from the be_attn definition.
 * Bound: |y - ref| <= 2e-5 * max|v| per element (float rounding of scores and sums: the
 * output is a convex combination of V rows, so one wrong weight or row is far above it).
 * Results must be bit-identical for 1 and 2 threads on every level, and between the AVX2 and
 * AVX-512 builds (same operation order per row; only the lane count differs).
 *
 * Helpers: the vector exp against libm's double exp (relative error bound 5e-7 = ~4 ulp on
 * [-87.3, 88], 0 below, +inf above), GLU against the double formulas, f32 -> f16 stores
 * bit-exact against hb_f32_to_f16 (every NaN stays a NaN), sum of squares against a double
 * loop, RMSNorm scaling and add bit-exact against the scalar loops.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "backend/cpu/ops_vec.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float frnd(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }

/* Levels to test: scalar and every SIMD level up to what the machine allows. */
static int n_levels(void) {
    int lv = cpu_features_get()->level;
    return (lv > CPU_ISA_AVX512 ? CPU_ISA_AVX512 : lv) + 1;
}

/* ---- attention ---------------------------------------------------------------------------- */

typedef struct run {     /* tokens of one sequence, positions start .. start+n-1 */
    int32_t seq, start, n;
} run;

typedef struct acase {
    const char *name;
    int32_t dk, dv, n_head_kv, G;
    uint32_t type;
    int32_t window;
    float softcap, qamp;   /* q amplitude: scores up to ~qamp * sqrt(dk) * scale */
    int64_t n_ctx;
    bool interleave;       /* tokens of the runs alternate in the batch */
    int n_runs;
    run runs[4];
} acase;

/* Reference: double softmax over the dequantized cache, straight from be_attn's definition. */
static void attn_ref(const be_attn *a, const float *q, int64_t qs, double *out, int64_t os) {
    const be_kv_layer *kv = a->kv;
    int32_t G = a->n_head / a->n_head_kv;
    float *kr = malloc((size_t)kv->kv_dim * sizeof(float)), *vr = malloc((size_t)kv->kv_dim * sizeof(float));
    int64_t maxc = 0;
    for (int32_t t = 0; t < a->n_tok; t++) maxc = a->pos[t] + 1 > maxc ? a->pos[t] + 1 : maxc;
    double *w = malloc((size_t)maxc * sizeof(double));
    for (int32_t t = 0; t < a->n_tok; t++) {
        int64_t p = a->pos[t], lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
        const uint8_t *kb = (const uint8_t *)kv->k + (size_t)a->seq[t] * kv->n_ctx * kv->row_bytes;
        const uint8_t *vb = (const uint8_t *)kv->v + (size_t)a->seq[t] * kv->n_ctx * kv->row_bytes;
        for (int32_t h = 0; h < a->n_head; h++) {
            int32_t hk = h / G;
            const float *qh = q + t * qs + (int64_t)h * a->head_dim_k;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t c = lo; c <= p; c++) {
                quant_dequantize_row(kv->type, kb + c * kv->row_bytes, kr, kv->kv_dim);
                double s = 0.0;
                for (int32_t d = 0; d < a->head_dim_k; d++) s += (double)qh[d] * kr[(int64_t)hk * a->head_dim_k + d];
                s *= a->scale;
                if (a->softcap > 0.0f) s = a->softcap * tanh(s / a->softcap);
                w[c] = s;
                mx = s > mx ? s : mx;
            }
            double *o = out + t * os + (int64_t)h * a->head_dim_v;
            for (int32_t d = 0; d < a->head_dim_v; d++) o[d] = 0.0;
            for (int64_t c = lo; c <= p; c++) {
                double e = exp(w[c] - mx);
                sum += e;
                quant_dequantize_row(kv->type, vb + c * kv->row_bytes, vr, kv->kv_dim);
                for (int32_t d = 0; d < a->head_dim_v; d++) o[d] += e * vr[(int64_t)hk * a->head_dim_v + d];
            }
            for (int32_t d = 0; d < a->head_dim_v; d++) o[d] /= sum;
        }
    }
    free(kr);
    free(vr);
    free(w);
}

static void run_case(const acase *cs) {
    int32_t n_head = cs->n_head_kv * cs->G, n_tok = 0, n_seq = 0;
    for (int i = 0; i < cs->n_runs; i++) {
        n_tok += cs->runs[i].n;
        n_seq = cs->runs[i].seq + 1 > n_seq ? cs->runs[i].seq + 1 : n_seq;
    }
    /* one cache for K and V dims: kv_dim = n_head_kv * max(dk, dv) (rows hold both) */
    int64_t kd = (int64_t)cs->n_head_kv * (cs->dk > cs->dv ? cs->dk : cs->dv);
    be_kv_layer kv = { NULL, NULL, cs->type, kd, quant_row_size(cs->type, kd), cs->n_ctx };
    size_t bytes = (size_t)n_seq * (size_t)cs->n_ctx * kv.row_bytes;
    kv.k = malloc(bytes);
    kv.v = malloc(bytes);
    /* cache: every cell of every sequence gets random rows (prefix cells and the batch's) */
    float *row = malloc((size_t)kd * sizeof(float)), *vrow = malloc((size_t)kd * sizeof(float));
    for (int64_t c = 0; c < (int64_t)n_seq * cs->n_ctx; c++) {
        for (int64_t i = 0; i < kd; i++) row[i] = frnd(), vrow[i] = frnd();
        quant_quantize_row(cs->type, row, (uint8_t *)kv.k + c * kv.row_bytes, kd);
        quant_quantize_row(cs->type, vrow, (uint8_t *)kv.v + c * kv.row_bytes, kd);
    }
    int32_t *pos = malloc((size_t)n_tok * sizeof(int32_t)), *seq = malloc((size_t)n_tok * sizeof(int32_t));
    int32_t t = 0, done[4] = { 0 };
    while (t < n_tok) /* runs one after another, or round-robin when interleaved */
        for (int i = 0; i < cs->n_runs && t < n_tok; i++) {
            for (; done[i] < cs->runs[i].n; ) {
                pos[t] = cs->runs[i].start + done[i]++;
                seq[t++] = cs->runs[i].seq;
                if (cs->interleave) break;
            }
        }
    int64_t qs = (int64_t)n_head * cs->dk + 3, os = (int64_t)n_head * cs->dv + 5; /* odd strides */
    float *q = malloc((size_t)(n_tok * qs) * sizeof(float));
    for (int64_t i = 0; i < n_tok * qs; i++) q[i] = cs->qamp * frnd();
    be_attn a = { &kv, pos, seq, n_tok, n_head, cs->n_head_kv, cs->dk, cs->dv,
                  1.0f / sqrtf((float)cs->dk), cs->softcap, cs->window };
    double *ref = malloc((size_t)(n_tok * os) * sizeof(double));
    attn_ref(&a, q, qs, ref, os);
    float *out[2] = { malloc((size_t)(n_tok * os) * sizeof(float)), malloc((size_t)(n_tok * os) * sizeof(float)) };
    float *out_avx2 = malloc((size_t)(n_tok * os) * sizeof(float));
    for (int lv = 0; lv < n_levels(); lv++) {
        cpu_isa_force(lv);
        double worst = 0.0;
        for (int th = 0; th < 2; th++) {
            be_ctx *b = NULL;
            hb_err err = { 0 };
            assert_int_equal(be_cpu_new(th + 1, &b, &err), HEARTH_OK);
            memset(out[th], 0, (size_t)(n_tok * os) * sizeof(float));
            assert_int_equal(b->ops->attention(b, &a, q, qs, out[th], os), HEARTH_OK);
            for (int32_t tk = 0; tk < n_tok; tk++)
                for (int64_t i = 0; i < (int64_t)n_head * cs->dv; i++) {
                    double e = fabs(out[th][tk * os + i] - ref[tk * os + i]);
                    if (!(e <= 2e-5)) /* max|v| = 1 (frnd; q8_0 / f16 keep it <= 1) */
                        fail_msg("%s level %s threads %d: token %d elem %lld got %.8g want %.8g", cs->name,
                                 cpu_isa_name(lv), th + 1, tk, (long long)i, out[th][tk * os + i], ref[tk * os + i]);
                    worst = e > worst ? e : worst;
                }
            be_cpu_free(b);
        }
        for (int32_t tk = 0; tk < n_tok; tk++)
            assert_memory_equal(out[0] + tk * os, out[1] + tk * os, (size_t)n_head * cs->dv * sizeof(float));
        /* the lane width never changes the order of a row's operations */
        if (lv == CPU_ISA_AVX2) memcpy(out_avx2, out[0], (size_t)(n_tok * os) * sizeof(float));
        if (lv == CPU_ISA_AVX512)
            for (int32_t tk = 0; tk < n_tok; tk++)
                assert_memory_equal(out[0] + tk * os, out_avx2 + tk * os, (size_t)n_head * cs->dv * sizeof(float));
        printf("  %-28s %-6s max |err| %.2e\n", cs->name, cpu_isa_name(lv), worst);
    }
    cpu_isa_force(-1);
    free(out[0]);
    free(out[1]);
    free(out_avx2);
    free(ref);
    free(q);
    free(pos);
    free(seq);
    free(row);
    free(vrow);
    free(kv.k);
    free(kv.v);
}

static void test_attn_prompt(void **state) {
    (void)state;
    static const acase cases[] = {
        { "tinyllama f16 70 tok", 64, 64, 4, 8, QT_F16, 0, 0.0f, 1.0f, 128, false, 1, { { 0, 0, 70 } } },
        { "hd80 f32 2 seqs prefix", 80, 80, 2, 1, QT_F32, 0, 0.0f, 4.0f, 64, false, 2, { { 0, 5, 17 }, { 1, 0, 3 } } },
        { "hd256 q8_0 window softcap", 256, 256, 2, 4, QT_Q8_0, 20, 30.0f, 8.0f, 160, false, 1, { { 0, 100, 17 } } },
        { "dk96 dv64 f32 window 33", 96, 64, 1, 8, QT_F32, 33, 0.0f, 2.0f, 128, false, 1, { { 0, 60, 3 } } },
        { "hd128 f16 interleaved", 128, 128, 1, 4, QT_F16, 0, 0.0f, 3.0f, 96, true, 3,
          { { 0, 10, 17 }, { 1, 0, 3 }, { 2, 40, 1 } } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* Decode-shaped batches (one token per sequence): few items, long spans -> chunked. */
static void test_attn_decode(void **state) {
    (void)state;
    static const acase cases[] = {
        { "decode hd64 G8 q8_0 softcap", 64, 64, 4, 8, QT_Q8_0, 0, 20.0f, 6.0f, 1200, false, 1, { { 0, 1100, 1 } } },
        { "decode hd128 G4 3 seqs f16", 128, 128, 1, 4, QT_F16, 0, 0.0f, 3.0f, 1100, false, 3,
          { { 0, 30, 1 }, { 1, 1050, 1 }, { 2, 0, 1 } } },
        { "decode hd80 G1 window f32", 80, 80, 1, 1, QT_F32, 600, 0.0f, 2.0f, 1400, false, 2, { { 0, 1300, 1 }, { 1, 511, 1 } } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static void test_vec_exp(void **state) {
    (void)state;
    enum { N = 200003 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -87.3f + (88.0f + 87.3f) * (float)i / (N - 1);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-30f, x[3] = -1e-8f;
    for (int lv = CPU_ISA_AVX2; lv < n_levels(); lv++) {
        cpu_isa_force(lv);
        const cpu_vec *vx = cpu_vec_get();
        assert_non_null(vx);
        vx->exp(x, y, N);
        double worst = 0.0;
        for (int i = 0; i < N; i++) {
            double want = exp((double)x[i]), rel = fabs(y[i] - want) / want;
            if (!(rel < 5e-7)) fail_msg("exp(%.9g) = %.9g, want %.9g", x[i], y[i], want);
            worst = rel > worst ? rel : worst;
        }
        assert_true(y[0] == 1.0f && y[1] == 1.0f);
        float sp[5] = { -INFINITY, -100.0f, -87.34f, 89.0f, INFINITY }, so[5];
        vx->exp(sp, so, 5); /* 5: also the padded tail */
        assert_true(so[0] == 0.0f && so[1] == 0.0f && so[2] == 0.0f);
        assert_true(isinf(so[3]) && so[3] > 0 && isinf(so[4]) && so[4] > 0);
        printf("  exp %-6s max rel err %.2e\n", vx->name, worst);
    }
    cpu_isa_force(-1);
    free(x);
    free(y);
}

static void test_vec_glu_sumsq(void **state) {
    (void)state;
    enum { N = 1000 + 7 };
    float g[N], u[N], o[N];
    for (int i = 0; i < N; i++) g[i] = 12.0f * frnd(), u[i] = frnd();
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;
    for (int lv = CPU_ISA_AVX2; lv < n_levels(); lv++) {
        cpu_isa_force(lv);
        const cpu_vec *vx = cpu_vec_get();
        for (int kind = 0; kind < 2; kind++) {
            vx->glu((be_glu)kind, g, u, o, N);
            for (int i = 0; i < N; i++) {
                double x = g[i], act = kind == BE_GLU_SILU ? x / (1.0 + exp(-x))
                                                           : 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
                double want = act * u[i];
                if (!(fabs(o[i] - want) <= 1e-6 * fabs(want) + 1e-30 + 4e-7 * fabs(x * u[i])))
                    fail_msg("%s glu %d: g=%.9g got %.9g want %.9g", vx->name, kind, g[i], o[i], want);
            }
        }
        double ss = 0.0;
        for (int i = 0; i < N; i++) ss += (double)g[i] * g[i];
        for (int n = 0; n < 40; n++) { /* every tail length */
            double s2 = 0.0;
            for (int i = 0; i < n; i++) s2 += (double)g[i] * g[i];
            assert_true(fabs(vx->sumsq(g, n) - s2) <= 1e-12 * s2);
        }
        assert_true(fabs(vx->sumsq(g, N) - ss) <= 1e-12 * ss);
        /* RMSNorm scaling and add: the scalar loops' exact bits, every tail length */
        for (int n = N - 20; n <= N; n++) {
            float y1[N], y2[N], k = 0.37f;
            vx->scale_rows(g, k, u, y1, n);
            for (int i = 0; i < n; i++) y2[i] = g[i] * k * u[i];
            assert_memory_equal(y1, y2, (size_t)n * sizeof(float));
            vx->scale_rows(g, k, NULL, y1, n);
            for (int i = 0; i < n; i++) y2[i] = g[i] * k;
            assert_memory_equal(y1, y2, (size_t)n * sizeof(float));
            memcpy(y1, u, sizeof y1);
            memcpy(y2, u, sizeof y2);
            vx->add(y1, g, n);
            for (int i = 0; i < n; i++) y2[i] += g[i];
            assert_memory_equal(y1, y2, sizeof y1);
        }
    }
    cpu_isa_force(-1);
}

static void test_vec_f16_store(void **state) {
    (void)state;
    enum { N = 70001 };
    float *x = malloc(N * sizeof(float));
    uint16_t *y = malloc(N * sizeof(uint16_t));
    for (int i = 0; i < N; i++) {
        uint32_t b = rnd() << 16 ^ rnd();
        if (i % 3 == 0) b = (b & 0x807fffffu) | ((uint32_t)(100 + rnd() % 56) << 23); /* f16 range and ties */
        if (i % 7 == 0) b &= 0xffffe000u | (rnd() & 1 ? 0x1000u : 0); /* exact ties at 2^-11 ulp */
        memcpy(&x[i], &b, 4);
    }
    float sp[] = { 0.0f, -0.0f, 65504.0f, 65519.0f, 65520.0f, -65520.0f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.99e-8f,
                   1e-10f, INFINITY, -INFINITY, NAN };
    memcpy(x, sp, sizeof sp);
    for (int lv = CPU_ISA_AVX2; lv < n_levels(); lv++) {
        cpu_isa_force(lv);
        cpu_vec_get()->f32_to_f16(x, y, N);
        for (int i = 0; i < N; i++) {
            uint16_t want = hb_f32_to_f16(x[i]);
            if (isnan(x[i])) assert_true((y[i] & 0x7c00) == 0x7c00 && (y[i] & 0x3ff) != 0);
            else if (y[i] != want) fail_msg("f16(%a) = %04x, want %04x", (double)x[i], y[i], want);
        }
    }
    cpu_isa_force(-1);
    free(x);
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vec_exp),
        cmocka_unit_test(test_vec_glu_sumsq),
        cmocka_unit_test(test_vec_f16_store),
        cmocka_unit_test(test_attn_prompt),
        cmocka_unit_test(test_attn_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
