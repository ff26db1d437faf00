/* test_cuda_dattn.c — the fused decode attention (cuda_rope_kv_attention: RoPE + KV store +
 * attention + combine in one launch) against the separate kernels it replaces
 * (cuda_rope_apply2 + cuda_kv_store + cuda_attention[_q8]) on random data: batches of 1..8
 * tokens of several sequences at different positions (also several tokens of one sequence,
 * whose cells the launch itself writes), f16 / f32 / q8_0 caches, GQA 1/4/8/16, head
 * sizes 64/128, sliding window, softcap, neox and normal rotation, rope factors, the host's
 * frequency table or none, and the int8 output for the o product. Also: 8 sequences
 * decoded together give bitwise the outputs of each decoded alone.
 * With DATTN_BENCH=1 it times the fused kernel against the separate ones instead (graph
 * chains, TinyLlama-1.1B attention shape) at several positions; DATTN_BENCH=2 runs each
 * of those ops once (for ncu).
 * Built only with `make CUDA=1`; skips when no usable GPU is present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda/cuda_test.h"

#include "backend/cuda/cuda.h"
#include "quant/quant.h"

/* The position bucket the backend passes as max_pos_host (be_cuda.c). */
static int32_t bucket_of(const int32_t *pos, int n) {
    int32_t mp = 0, b = 128;
    for (int i = 0; i < n; i++) mp = pos[i] > mp ? pos[i] : mp;
    while (b <= mp) b *= 2;
    return b - 1;
}

typedef struct dcase {
    uint32_t type;
    int32_t hd, n_head_kv, G, window, neox, factors, table, quant;
    float softcap;
    int dang; /* angles' cos/sin in double: then the caches must match the per-op kernels bitwise */
    int n_tok;
    int32_t pos[8], seq[8];
} dcase;

enum { N_SEQ = 8 };

/* Element i of a cache row as a float. */
static float cache_elem(const uint8_t *row, uint32_t type, int64_t i) {
    float out[32];
    if (type == QT_F32) return ((const float *)row)[i];
    if (type == QT_F16) {
        quant_dequantize_row(QT_F16, row + i * 2, out, 1);
        return out[0];
    }
    quant_dequantize_row(QT_Q8_0, row + (i / 32) * 34, out, 32);
    return out[i % 32];
}

/* One case: returns the largest output difference (and asserts the rest). */
static void run_case(const dcase *dc) {
    const int32_t hd = dc->hd, hkv = dc->n_head_kv, nh = hkv * dc->G, T = dc->n_tok;
    int32_t ctx = 0;
    for (int t = 0; t < T; t++) ctx = dc->pos[t] + 1 > ctx ? dc->pos[t] + 1 : ctx;
    ctx = ctx < 256 ? 256 : ctx + 37;
    const int64_t kvd = (int64_t)hkv * hd, qs = (int64_t)nh * hd, os = qs;
    size_t rb = quant_row_size(dc->type, kvd), cbytes = rb * N_SEQ * (size_t)ctx;
    /* an old cache with random contents everywhere, also in the cells the step writes */
    float *kin = malloc(sizeof(float) * 512 * kvd), *vin = malloc(sizeof(float) * 512 * kvd);
    int32_t *fp = malloc(sizeof(int32_t) * 512), *fs = malloc(sizeof(int32_t) * 512);
    assert_non_null(kin && vin && fp && fs);
    cuda_kv kva = { dev_from(NULL, cbytes), dev_from(NULL, cbytes), dc->type, kvd, rb, ctx };
    float *dki = dev_from(NULL, sizeof(float) * 512 * kvd), *dvi = dev_from(NULL, sizeof(float) * 512 * kvd);
    for (int64_t c0 = 0; c0 < (int64_t)N_SEQ * ctx; c0 += 512) {
        int64_t n = (int64_t)N_SEQ * ctx - c0 < 512 ? (int64_t)N_SEQ * ctx - c0 : 512;
        for (int64_t i = 0; i < n * kvd; i++) kin[i] = frand(), vin[i] = frand();
        for (int64_t i = 0; i < n; i++) fs[i] = (int32_t)((c0 + i) / ctx), fp[i] = (int32_t)((c0 + i) % ctx);
        cuda_upload(g_ctx, dki, kin, sizeof(float) * n * kvd, &g_err);
        cuda_upload(g_ctx, dvi, vin, sizeof(float) * n * kvd, &g_err);
        const int32_t *dp, *ds;
        assert_int_equal(cuda_stage_i32(g_ctx, 0, fp, n, &dp, &g_err), 0);
        assert_int_equal(cuda_stage_i32(g_ctx, 1, fs, n, &ds, &g_err), 0);
        assert_int_equal(cuda_kv_store(g_ctx, &kva, dki, kvd, dvi, kvd, n, dp, ds, &g_err), 0);
    }
    cuda_kv kvb = kva;
    kvb.k = dev_from(NULL, cbytes), kvb.v = dev_from(NULL, cbytes);
    assert_int_equal(cuda_copy(g_ctx, kvb.k, kva.k, cbytes, &g_err), 0);
    assert_int_equal(cuda_copy(g_ctx, kvb.v, kva.v, cbytes, &g_err), 0);
    /* the step's q, k, v (k and v rows padded: strides wider than the rows) */
    const int64_t ks = kvd + (dc->window ? 3 : 8), vs = kvd + 16; /* odd: the 4-byte fetch path */
    float *q = malloc(sizeof(float) * T * qs), *k = malloc(sizeof(float) * T * ks), *v = malloc(sizeof(float) * T * vs);
    for (int64_t i = 0; i < T * qs; i++) q[i] = frand();
    for (int64_t i = 0; i < T * ks; i++) k[i] = frand();
    for (int64_t i = 0; i < T * vs; i++) v[i] = frand();
    float *dqa = dev_from(q, sizeof(float) * T * qs), *dqb = dev_from(q, sizeof(float) * T * qs);
    float *dka = dev_from(k, sizeof(float) * T * ks), *dkb = dev_from(k, sizeof(float) * T * ks);
    float *dv = dev_from(v, sizeof(float) * T * vs);
    float *oa = dev_from(NULL, sizeof(float) * T * os), *ob = dev_from(NULL, sizeof(float) * T * os);
    float fac[128];
    for (int i = 0; i < hd / 2; i++) fac[i] = 1.0f + 0.05f * (float)(i % 9);
    double tab[128];
    cuda_rope_table(10000.0f, hd, tab);
    float *dfac = dc->factors ? dev_from(fac, sizeof(float) * (size_t)(hd / 2)) : NULL;
    double *dtab = dc->table ? dev_from(tab, sizeof(double) * (size_t)(hd / 2)) : NULL;
    cuda_rope r = { dc->neox, hd, 10000.0f, 0.75f, 1.1f, dfac, dtab };
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 2, dc->pos, T, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 3, dc->seq, T, &ds, &g_err), 0);
    float scale = 1.0f / sqrtf((float)hd);
    cuda_attn aa = { &kva, dp, ds, T, nh, hkv, hd, hd, scale, dc->softcap, dc->window, bucket_of(dc->pos, T) };
    cuda_attn ab = aa;
    ab.kv = &kvb;
    assert_true(cuda_dattn_supported(&ab, &r, dc->quant));
    /* a q8_0 product over the attention output (the o projection) */
    const int64_t wr = 64;
    size_t wrb = quant_row_size(QT_Q8_0, qs);
    float *wf = malloc(sizeof(float) * wr * qs);
    uint8_t *wq = malloc(wrb * wr);
    for (int64_t i = 0; i < wr * qs; i++) wf[i] = frand();
    for (int64_t rr = 0; rr < wr; rr++) assert_true(quant_quantize_row(QT_Q8_0, wf + rr * qs, wq + rr * wrb, qs));
    cuda_weight w = { QT_Q8_0, wr, qs, wrb, dev_from(wq, wrb * wr) };
    float *ya = dev_from(NULL, sizeof(float) * T * wr), *yb = dev_from(NULL, sizeof(float) * T * wr);
    /* separate kernels */
    assert_int_equal(cuda_rope_apply2(g_ctx, dqa, qs, nh, dka, ks, hkv, T, hd, dp, &r, &g_err), 0);
    assert_int_equal(cuda_kv_store(g_ctx, &kva, dka, ks, dv, vs, T, dp, ds, &g_err), 0);
    assert_int_equal(cuda_attention(g_ctx, &aa, dqa, qs, oa, os, &g_err), 0);
    /* fused */
    cuda_ctx_knobs_edit(g_ctx)->dattn_dang = dc->dang;
    int rc = cuda_rope_kv_attention(g_ctx, &ab, &r, dqb, qs, dkb, ks, dv, vs, ob, os, dc->quant, &g_err);
    cuda_ctx_knobs_edit(g_ctx)->dattn_dang = 0;
    if (rc) fprintf(stderr, "%s\n", g_err.msg);
    assert_int_equal(rc, 0);
    cuda_mm_opt reuse = { 1, NULL, 0 }, fresh = { 0, NULL, 0 };
    if (dc->quant) { /* the int8 output it left == the output quantized by the product */
        assert_int_equal(cuda_matmul_ex(g_ctx, &w, ob, T, yb, wr, &reuse, &g_err), 0);
        assert_int_equal(cuda_matmul_ex(g_ctx, &w, ob, T, ya, wr, &fresh, &g_err), 0);
    }
    float *ha = malloc(sizeof(float) * T * os), *hb = malloc(sizeof(float) * T * os);
    to_host(ha, oa, sizeof(float) * T * os);
    to_host(hb, ob, sizeof(float) * T * os);
    double md = 0;
    for (int64_t i = 0; i < T * os; i++) {
        double d = fabs((double)ha[i] - hb[i]);
        if (!(d <= md)) md = d; /* NaN sticks */
    }
    if (dc->quant) {
        float *ga = malloc(sizeof(float) * T * wr), *gb = malloc(sizeof(float) * T * wr);
        to_host(ga, ya, sizeof(float) * T * wr);
        to_host(gb, yb, sizeof(float) * T * wr);
        for (int64_t i = 0; i < T * wr; i++) assert_float_equal(ga[i], gb[i], 1e-5 * (1.0 + fabs(ga[i])));
        free(ga), free(gb);
    }
    /* q and k are read only */
    float *chk = malloc(sizeof(float) * T * (qs > ks ? qs : ks));
    to_host(chk, dqb, sizeof(float) * T * qs);
    assert_memory_equal(chk, q, sizeof(float) * T * qs);
    to_host(chk, dkb, sizeof(float) * T * ks);
    assert_memory_equal(chk, k, sizeof(float) * T * ks);
    /* caches: untouched cells bitwise equal, the step's cells equal as stored values */
    uint8_t *ca = malloc(cbytes), *cb = malloc(cbytes);
    int bitwise = 1;
    for (int kvi = 0; kvi < 2; kvi++) {
        to_host(ca, kvi ? kva.v : kva.k, cbytes);
        to_host(cb, kvi ? kvb.v : kvb.k, cbytes);
        for (int64_t cell = 0; cell < (int64_t)N_SEQ * ctx; cell++) {
            const uint8_t *ra = ca + cell * rb, *rbw = cb + cell * rb;
            if (memcmp(ra, rbw, rb) == 0) continue;
            bitwise = 0;
            int stepcell = 0;
            for (int t = 0; t < T; t++) stepcell |= (int64_t)dc->seq[t] * ctx + dc->pos[t] == cell;
            assert_true(stepcell);
            for (int64_t i = 0; i < kvd; i++) {
                float x = cache_elem(ra, dc->type, i), y = cache_elem(rbw, dc->type, i);
                assert_float_equal(x, y, dc->type == QT_F32 ? 1e-6 : 2e-2);
            }
        }
    }
    printf("  %s hd %d heads %d/%d win %d cap %.0f %s%s%s%s%s T %d: max |diff| %.2e, caches %s\n",
           quant_type_name(dc->type), hd, nh, hkv, dc->window, dc->softcap, dc->neox ? "neox" : "norm",
           dc->factors ? " fac" : "", dc->table ? " tab" : "", dc->quant ? " q8out" : "", dc->dang ? " dang" : "", T, md,
           bitwise ? "bitwise" : "close");
    assert_true(md < 2e-5);
    if (dc->dang) assert_true(bitwise);
    cuda_free(g_ctx, kva.k), cuda_free(g_ctx, kva.v), cuda_free(g_ctx, kvb.k), cuda_free(g_ctx, kvb.v);
    cuda_free(g_ctx, dki), cuda_free(g_ctx, dvi), cuda_free(g_ctx, dqa), cuda_free(g_ctx, dqb);
    cuda_free(g_ctx, dka), cuda_free(g_ctx, dkb), cuda_free(g_ctx, dv), cuda_free(g_ctx, oa), cuda_free(g_ctx, ob);
    cuda_free(g_ctx, dfac), cuda_free(g_ctx, dtab), cuda_free(g_ctx, (void *)w.data), cuda_free(g_ctx, ya);
    cuda_free(g_ctx, yb);
    free(kin), free(vin), free(fp), free(fs), free(q), free(k), free(v), free(ha), free(hb), free(chk), free(ca);
    free(cb), free(wf), free(wq);
}

/* Batches: 8 sequences far apart (several splits), one sequence's consecutive tokens
 * inside one split and across a split border plus others, single tokens. */
static const int32_t k_pos8[8] = { 0, 5, 127, 128, 300, 1000, 77, 2000 }, k_seq8[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
static const int32_t k_posm[7] = { 10, 11, 12, 400, 0, 31, 32 }, k_seqm[7] = { 0, 0, 0, 1, 2, 3, 3 };

static void set_batch(dcase *dc, const int32_t *pos, const int32_t *seq, int n) {
    dc->n_tok = n;
    memcpy(dc->pos, pos, sizeof(int32_t) * (size_t)n);
    memcpy(dc->seq, seq, sizeof(int32_t) * (size_t)n);
}

static void test_types_and_batches(void **state) {
    (void)state;
    NEED_GPU();
    const uint32_t types[3] = { QT_F16, QT_F32, QT_Q8_0 };
    for (int ti = 0; ti < 4; ti++) { /* 3: F16 again without the one-block-per-head kernel */
        dcase dc = { types[ti % 3], 64, 4, 8, 0, 0, 0, 1, 1, 0.0f, ti == 2, 0, { 0 }, { 0 } };
        cuda_ctx_knobs_edit(g_ctx)->attn_dec_rope = ti < 3;
        set_batch(&dc, k_pos8, k_seq8, 8);
        run_case(&dc);
        set_batch(&dc, k_posm, k_seqm, 7); /* positions < 512 with an f16 cache: cu_attn_dec_rope */
        run_case(&dc);
        int32_t p1 = 100, s1 = 3;
        set_batch(&dc, &p1, &s1, 1);
        run_case(&dc);
    }
    cuda_ctx_knobs_edit(g_ctx)->attn_dec_rope = 1;
    for (int n = 2; n <= 6; n++) { /* batch sizes 2..6, mixed layouts */
        dcase dc = { QT_F16, 64, 4, 8, 0, n & 1, 0, 1, n % 3 == 0, 0.0f, n == 4, 0, { 0 }, { 0 } };
        set_batch(&dc, n & 1 ? k_posm : k_pos8 + 2, n & 1 ? k_seqm : k_seq8 + 2, n);
        run_case(&dc);
    }
}

static void test_shapes_and_options(void **state) {
    (void)state;
    NEED_GPU();
    /* GQA 1/4/8/16 (16: two head groups per kv head), head sizes 64/128 */
    const int32_t gs[4] = { 1, 4, 8, 16 };
    for (int gi = 0; gi < 4; gi++)
        for (int hi = 0; hi < 2; hi++) {
            dcase dc = { gi & 1 ? QT_Q8_0 : QT_F16, hi ? 128 : 64, 2, gs[gi], 0, hi, gi & 1, gi != 2, 1, 0.0f, hi, 0,
                         { 0 }, { 0 } };
            set_batch(&dc, gi & 1 ? k_posm : k_pos8, gi & 1 ? k_seqm : k_seq8, gi & 1 ? 7 : 8);
            run_case(&dc);
        }
    /* window, softcap, rope factors, neox / normal, with and without the table */
    for (int o = 0; o < 4; o++) {
        dcase dc = { o & 1 ? QT_F32 : QT_F16, 64, 4, 4, o & 2 ? 20 : 300, o & 1, 1, o >> 1, o != 3, 30.0f, o == 1, 0,
                     { 0 }, { 0 } };
        set_batch(&dc, o & 1 ? k_posm : k_pos8, o & 1 ? k_seqm : k_seq8, o & 1 ? 7 : 8);
        run_case(&dc);
    }
}

/* 8 sequences decoded together give bitwise the outputs (and cells) of each alone. */
static void test_batch_equals_alone(void **state) {
    (void)state;
    NEED_GPU();
    enum { HKV = 4, G = 8, D = 64, CTX = 2100 };
    const int64_t kvd = HKV * D, qs = (int64_t)HKV * G * D;
    size_t rb = quant_row_size(QT_F16, kvd), cbytes = rb * N_SEQ * CTX;
    uint8_t *init = malloc(cbytes);
    for (size_t i = 0; i < cbytes; i += 2) init[i] = (uint8_t)(i * 2654435761u >> 13), init[i + 1] = (uint8_t)(i % 7 + 0x30);
    cuda_kv kv8 = { dev_from(init, cbytes), dev_from(init, cbytes), QT_F16, kvd, rb, CTX };
    cuda_kv kv1 = { dev_from(init, cbytes), dev_from(init, cbytes), QT_F16, kvd, rb, CTX };
    float *q = malloc(sizeof(float) * 8 * qs), *k = malloc(sizeof(float) * 8 * kvd), *v = malloc(sizeof(float) * 8 * kvd);
    for (int64_t i = 0; i < 8 * qs; i++) q[i] = frand();
    for (int64_t i = 0; i < 8 * kvd; i++) k[i] = frand(), v[i] = frand();
    float *dq = dev_from(q, sizeof(float) * 8 * qs), *dk = dev_from(k, sizeof(float) * 8 * kvd);
    float *dv = dev_from(v, sizeof(float) * 8 * kvd), *o8 = dev_from(NULL, sizeof(float) * 8 * qs);
    float *o1 = dev_from(NULL, sizeof(float) * 8 * qs);
    double tab[32];
    cuda_rope_table(10000.0f, D, tab);
    double *dtab = dev_from(tab, sizeof tab);
    cuda_rope r = { 0, D, 10000.0f, 1.0f, 1.0f, NULL, dtab };
    int32_t bucket = bucket_of(k_pos8, 8);
    const int32_t *dp, *ds;
    assert_int_equal(cuda_stage_i32(g_ctx, 0, k_pos8, 8, &dp, &g_err), 0);
    assert_int_equal(cuda_stage_i32(g_ctx, 1, k_seq8, 8, &ds, &g_err), 0);
    cuda_attn a = { &kv8, dp, ds, 8, HKV * G, HKV, D, D, 0.125f, 0.0f, 0, bucket };
    assert_int_equal(cuda_rope_kv_attention(g_ctx, &a, &r, dq, qs, dk, kvd, dv, kvd, o8, qs, 1, &g_err), 0);
    for (int t = 0; t < 8; t++) { /* the same positions, the same bucket, one at a time */
        assert_int_equal(cuda_stage_i32(g_ctx, 0, k_pos8 + t, 1, &dp, &g_err), 0);
        assert_int_equal(cuda_stage_i32(g_ctx, 1, k_seq8 + t, 1, &ds, &g_err), 0);
        cuda_attn a1 = { &kv1, dp, ds, 1, HKV * G, HKV, D, D, 0.125f, 0.0f, 0, bucket };
        assert_int_equal(cuda_rope_kv_attention(g_ctx, &a1, &r, dq + t * qs, qs, dk + t * kvd, kvd, dv + t * kvd, kvd,
                                                o1 + t * qs, qs, 1, &g_err),
                         0);
    }
    float *h8 = malloc(sizeof(float) * 8 * qs), *h1 = malloc(sizeof(float) * 8 * qs);
    to_host(h8, o8, sizeof(float) * 8 * qs);
    to_host(h1, o1, sizeof(float) * 8 * qs);
    assert_memory_equal(h8, h1, sizeof(float) * 8 * qs);
    uint8_t *c8 = malloc(cbytes), *c1 = malloc(cbytes);
    to_host(c8, kv8.k, cbytes), to_host(c1, kv1.k, cbytes);
    assert_memory_equal(c8, c1, cbytes);
    to_host(c8, kv8.v, cbytes), to_host(c1, kv1.v, cbytes);
    assert_memory_equal(c8, c1, cbytes);
    printf("  batch of 8 == each alone (outputs and cells bitwise)\n");
    cuda_free(g_ctx, kv8.k), cuda_free(g_ctx, kv8.v), cuda_free(g_ctx, kv1.k), cuda_free(g_ctx, kv1.v);
    cuda_free(g_ctx, dq), cuda_free(g_ctx, dk), cuda_free(g_ctx, dv), cuda_free(g_ctx, o8), cuda_free(g_ctx, o1);
    cuda_free(g_ctx, dtab);
    free(init), free(q), free(k), free(v), free(h8), free(h1), free(c8), free(c1);
}

/* Shapes the fused kernel refuses (the backend keeps the separate kernels for them). */
static void test_unsupported(void **state) {
    (void)state;
    cuda_kv kv = { NULL, NULL, QT_F16, 256, 512, 1024 };
    cuda_rope r = { 0, 64, 10000.0f, 1.0f, 1.0f, NULL, NULL };
    cuda_attn a = { &kv, NULL, NULL, 1, 32, 4, 64, 64, 0.125f, 0.0f, 0, 127 };
    assert_true(cuda_dattn_supported(&a, &r, 1));
    a.n_tok = 9; /* prefill sizes */
    assert_false(cuda_dattn_supported(&a, &r, 0));
    a.n_tok = 8;
    r.n_rot = 32; /* partial rotation */
    assert_false(cuda_dattn_supported(&a, &r, 0));
    r.n_rot = 64;
    a.n_head = 30; /* heads that do not split into kv heads */
    assert_false(cuda_dattn_supported(&a, &r, 0));
    a.n_head = 32;
    kv.type = QT_Q8_0, kv.kv_dim = 4 * 48, a.head_dim_k = a.head_dim_v = 48, r.n_rot = 48; /* q8_0 heads of 48 */
    assert_false(cuda_dattn_supported(&a, &r, 0));
    kv.type = QT_F16;
    assert_true(cuda_dattn_supported(&a, &r, 0));
    assert_false(cuda_dattn_supported(&a, &r, 1)); /* int8 output needs 32-value chunks */
}

/* ---- DATTN_BENCH=1: timings ---- */
static int g_once; /* DATTN_BENCH=2: run each op once (for a profiler), no timing */
#define TIME_CHAIN(label, stmt)                                                                     \
    do {                                                                                            \
        cuda_graph *g_ = NULL;                                                                      \
        if (g_once) {                                                                               \
            { stmt; }                                                                               \
            cuda_sync(c, &err);                                                                     \
            break;                                                                                  \
        }                                                                                           \
        { stmt; }                                                                                   \
        if (cuda_sync(c, &err) || cuda_capture_begin(c, &err)) break;                               \
        for (int r_ = 0; r_ < 32; r_++) { stmt; }                                                   \
        if (cuda_capture_end(c, &g_, &err)) break;                                                  \
        double best_ = 1e30;                                                                        \
        for (int k_ = 0; k_ < 6; k_++) {                                                            \
            uint64_t t0_ = hb_now_ns();                                                             \
            if (cuda_graph_launch(c, g_, &err) || cuda_sync(c, &err)) break;                        \
            double us_ = (double)(hb_now_ns() - t0_) / 1e3 / 32;                                    \
            if (k_ > 0 && us_ < best_) best_ = us_;                                                 \
        }                                                                                           \
        cuda_graph_free(g_);                                                                        \
        printf("%-58s %7.2f us\n", label, best_);                                                  \
    } while (0)

static int bench(void) {
    hb_err err = { 0, "" };
    cuda_ctx *c = NULL;
    if (cuda_ctx_new(0, &c, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    enum { HKV = 4, NH = 32, D = 64, CTX = 4224 };
    const int64_t kvd = HKV * D, qs = NH * D;
    size_t cb = (size_t)CTX * 8 * kvd * 2;
    void *kk = NULL, *vv = NULL, *buf = NULL, *tb = NULL;
    if (cuda_alloc(c, &kk, cb, &err) || cuda_alloc(c, &vv, cb, &err) || cuda_alloc(c, &buf, 1 << 22, &err) ||
        cuda_alloc(c, &tb, 64 * sizeof(double), &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    float *q = buf, *k = q + 8 * qs, *v = k + 8 * kvd, *o = v + 8 * kvd;
    float *host = malloc(sizeof(float) * 8 * (qs + 2 * kvd));
    for (int64_t i = 0; i < 8 * (qs + 2 * kvd); i++) host[i] = frand();
    cuda_upload(c, q, host, sizeof(float) * 8 * (qs + 2 * kvd), &err);
    free(host);
    double tab[32];
    cuda_rope_table(10000.0f, D, tab);
    cuda_upload(c, tb, tab, sizeof tab, &err);
    cuda_kv kv = { kk, vv, QT_F16, kvd, (size_t)kvd * 2, CTX };
    const int ps[4] = { 100, 300, 1000, 4000 };
    for (int pi = 0; pi < 4; pi++)
        for (int nt = 1; nt <= 8; nt += 7) {
            int32_t ph[8], sh[8];
            for (int t = 0; t < nt; t++) ph[t] = ps[pi] - t, sh[t] = t;
            const int32_t *pos, *seq;
            cuda_stage_i32(c, 0, ph, nt, &pos, &err);
            cuda_stage_i32(c, 1, sh, nt, &seq, &err);
            cuda_attn at = { &kv, pos, seq, nt, NH, HKV, D, D, 0.125f, 0.0f, 0, bucket_of(ph, nt) };
            cuda_rope rp = { 0, D, 10000.0f, 1.0f, 1.0f, NULL, NULL }, rt = rp;
            rt.inv = tb;
            char l[96];
            snprintf(l, sizeof l, "pos %4d x%d rope+kv (pow)", ps[pi], nt);
            TIME_CHAIN(l, cuda_rope_kv(c, q, qs, NH, k, kvd, HKV, nt, D, pos, &rp, &kv, v, kvd, seq, &err));
            snprintf(l, sizeof l, "pos %4d x%d rope+kv (table)", ps[pi], nt);
            TIME_CHAIN(l, cuda_rope_kv(c, q, qs, NH, k, kvd, HKV, nt, D, pos, &rt, &kv, v, kvd, seq, &err));
            snprintf(l, sizeof l, "pos %4d x%d attention_q8 (split+combine)", ps[pi], nt);
            TIME_CHAIN(l, cuda_attention_q8(c, &at, q, qs, o, qs, &err));
            snprintf(l, sizeof l, "pos %4d x%d separate: rope+kv, attention_q8", ps[pi], nt);
            TIME_CHAIN(l, cuda_rope_kv(c, q, qs, NH, k, kvd, HKV, nt, D, pos, &rp, &kv, v, kvd, seq, &err);
                       cuda_attention_q8(c, &at, q, qs, o, qs, &err));
            snprintf(l, sizeof l, "pos %4d x%d FUSED rope+kv+attention+combine+q8", ps[pi], nt);
            TIME_CHAIN(l, cuda_rope_kv_attention(c, &at, &rt, q, qs, k, kvd, v, kvd, o, qs, 1, &err));
        }
    if (err.code) fprintf(stderr, "bench: %s\n", err.msg);
    cuda_free(c, kk), cuda_free(c, vv), cuda_free(c, buf), cuda_free(c, tb);
    cuda_ctx_free(c);
    return err.code ? 1 : 0;
}

/* The same checks with the tensor-core short-context kernel (cu_attn_tc.cu, opt-in with
 * HEARTH_CUDA_ATTN_TC=1): fused against separate, batch against alone. */
static void test_tc(void **state) {
    NEED_GPU();
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = true;
    test_types_and_batches(state);
    test_shapes_and_options(state);
    test_batch_equals_alone(state);
    cuda_ctx_knobs_edit(g_ctx)->attn_tc = false;
}

int main(void) {
    const char *b = getenv("DATTN_BENCH");
    if (b && (*b == '1' || *b == '2')) {
        g_once = *b == '2';
        return bench();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_types_and_batches),
        cmocka_unit_test(test_shapes_and_options),
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_tc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
