/* test_cuda_qkvr.c — the q/k/v decode product with RoPE and the KV store in its epilogue
 * (cuda_matmul_qkvr, cu_mvr.cu) and the rewrite rule that uses it (cb_fuse_qkvr,
 * be_cuda_fuse.c):
 *  - on the GPU, against the kernels it replaces (cuda_matmul_multi then cuda_rope_kv, or
 *    cuda_rope_apply2 without a cache) on random data: Q4_0 / Q4_K / Q8_0 / Q6_K / Q5_K /
 *    IQ4_NL weights, normal and neox rotation, 1 and 8 tokens of several sequences at
 *    different positions, f16 and f32 caches, rope factors, attn_factor, the host's
 *    frequency table or the kernels' pow, q/k/v in one launch or q/k and v of another
 *    type in one launch (one token, cuda_qkvr_mixed_ok) or two, rows of 512 / 2048 / 4096
 *    values: q, k, v and the whole caches
 *    (untouched cells included) bitwise equal;
 *    and each token of a 3- or 8-token launch == that token alone, bitwise; with the RMSNorm
 *    before the product folded into its blocks (cuda_qkvr.norm_x) where it fits: the same
 *    bits as the separate RMSNorm kernel then the product, normalized rows included; mixed
 *    types the kernel cannot take are refused with an error;
 *  - without a GPU too: the rule on recorded decode steps (which ops go, the flags and
 *    roles it sets) and the steps it must leave alone, and the opt-in rule that runs the
 *    attention in the product's launch (cu_qkva.cu, whose kernel test_cuda_qkva.c checks); the folded norm's input checks
 *    (cuda_qkvr_norm_ok) on shapes, strides and alignments it must refuse.
 * Built only with `make CUDA=1`; the GPU part skips when no usable GPU is present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda/cuda_test.h"

#include "backend/cuda/be_cuda_int.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_mvr.h"
#include "quant/quant.h"

static int g_bad;

/* Bitwise comparison of two device byte arrays (counted in g_bad). */
static void same(const char *what, const void *a_dev, const void *b_dev, size_t bytes) {
    g_bad += dev_differ(what, a_dev, b_dev, bytes, 0);
}

enum { N_SEQ = 4, N_CTX = 40 };
#define NO_CACHE 0xffffffffu

typedef struct qcase {
    uint32_t tq, tv;  /* q/k type, v type (tv != tq: two launches) */
    int64_t E;        /* row length */
    int32_t hd, nh, nkv;
    int neox, factors, table, n_tok;
    uint32_t kv_type; /* QT_F16, QT_F32, or NO_CACHE (cuda_rope_apply2) */
} qcase;

/* n caches with the same random bytes. */
static void make_caches(const qcase *qc, int64_t kvd, cuda_kv *kv, int n) {
    size_t rb = (size_t)kvd * (qc->kv_type == QT_F16 ? 2 : 4), bytes = rb * N_SEQ * N_CTX;
    uint8_t *h = malloc(bytes);
    assert_non_null(h);
    if (qc->kv_type == QT_F16) /* finite halves: sign, exponent 0..14, mantissa */
        for (size_t i = 0; i < bytes; i += 2) {
            frand();
            *(uint16_t *)(h + i) = (uint16_t)((g_rng >> 33) & 0xbbff);
        }
    else
        for (size_t i = 0; i < bytes; i += 4) *(float *)(h + i) = frand() * 4.0f;
    for (int v = 0; v < n; v++) {
        memset(&kv[v], 0, sizeof kv[v]);
        kv[v].k = dev_from(h, bytes), kv[v].v = dev_from(h, bytes);
        kv[v].type = qc->kv_type, kv[v].kv_dim = kvd, kv[v].row_bytes = rb, kv[v].n_ctx = N_CTX;
    }
    free(h);
}

/* The product under test for tokens [t0, t0 + nt): one or two launches. */
static void run_fused(const qcase *qc, cuda_weight w[3], float *dx, float *dy[3], const int32_t *pos,
                      const int32_t *seq, int64_t t0, int64_t nt, const cuda_rope *r, const cuda_kv *kv,
                      const float *nx, const float *nw) {
    int64_t ld[3] = { (int64_t)qc->nh * qc->hd, (int64_t)qc->nkv * qc->hd, (int64_t)qc->nkv * qc->hd };
    const int32_t *dp, *ds;
    ok(cuda_stage_i32(g_ctx, 0, pos + t0, nt, &dp, &g_err));
    ok(cuda_stage_i32(g_ctx, 1, seq + t0, nt, &ds, &g_err));
    int vrole = kv ? CUDA_QKVR_V : CUDA_QKVR_PLAIN; /* no cache: v is a plain product */
    cuda_qkvr q = { dp, ds, r, qc->hd, kv, { CUDA_QKVR_Q, CUDA_QKVR_K, vrole }, NULL, 0, NULL, 0.0f };
    if (nx) q.norm_x = nx + t0 * qc->E, q.norm_xs = qc->E, q.norm_w = nw, q.eps = 1e-5f;
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    float *ys[3] = { dy[0] + t0 * ld[0], dy[1] + t0 * ld[1], dy[2] + t0 * ld[2] };
    const float *x = dx + t0 * qc->E;
    if (qc->tv == qc->tq || (!nx && cuda_qkvr_mixed_ok(qc->tq, qc->tv, nt, qc->E))) {
        ok(cuda_matmul_qkvr(g_ctx, 3, ws, ys, ld, x, nt, 0, &q, &g_err)); /* one launch, maybe of two types */
    } else {
        ok(cuda_matmul_qkvr(g_ctx, 2, ws, ys, ld, x, nt, 0, &q, &g_err));
        cuda_qkvr qv = q;
        qv.role[0] = vrole;
        qv.norm_x = NULL; /* the first launch left the quantized rows in the scratch */
        ok(cuda_matmul_qkvr(g_ctx, 1, ws + 2, ys + 2, ld + 2, x, nt, 1, &qv, &g_err));
    }
}

static void check_case(const qcase *qc) {
    int64_t T = qc->n_tok, E = qc->E, dq = (int64_t)qc->nh * qc->hd, kvd = (int64_t)qc->nkv * qc->hd;
    int64_t ld[3] = { dq, kvd, kvd };
    cuda_weight w[3] = { cuda_test_weight(qc->tq, dq, E), cuda_test_weight(qc->tq, kvd, E), cuda_test_weight(qc->tv, kvd, E) };
    float *x = malloc(sizeof(float) * T * E), *nwh = malloc(sizeof(float) * E);
    for (int64_t i = 0; i < T * E; i++) x[i] = frand() * 2.0f;
    for (int64_t i = 0; i < E; i++) nwh[i] = 1.0f + 0.5f * frand();
    /* the product's input is an RMSNorm's output, made by the separate kernel */
    float *dxr = dev_from(x, sizeof(float) * T * E), *dnw = dev_from(nwh, sizeof(float) * E);
    float *dx = dev_from(NULL, sizeof(float) * T * E), *dxn = dev_from(NULL, sizeof(float) * T * E);
    ok(cuda_rmsnorm_q8(g_ctx, dxr, E, dx, T, E, dnw, 1e-5f, &g_err));
    bool fold = cuda_qkvr_norm_ok(T, E, dxr, E, dnw);
    int32_t pos[8], seq[8];
    for (int t = 0; t < T; t++) seq[t] = (t * 3 + 1) % N_SEQ, pos[t] = (int32_t)((t * 7 + 3 + qc->hd) % N_CTX);
    if (T > N_SEQ) seq[N_SEQ] = seq[0], pos[N_SEQ] = (pos[0] + 1) % N_CTX; /* two tokens of one sequence */
    double tab[64];
    float fac[64];
    cuda_rope_table(10000.0f, qc->hd, tab);
    for (int i = 0; i < qc->hd / 2; i++) fac[i] = 1.0f + 0.05f * (float)(i % 9);
    cuda_rope r = { qc->neox, qc->hd, 10000.0f, 0.75f, 1.125f, NULL, NULL };
    if (qc->factors) r.factors = dev_from(fac, sizeof(float) * (size_t)(qc->hd / 2));
    if (qc->table) r.inv = dev_from(tab, sizeof(double) * (size_t)(qc->hd / 2));
    cuda_kv kv[4]; /* separate kernels, fused, fused one token at a time, fused with the norm */
    if (qc->kv_type != NO_CACHE) make_caches(qc, kvd, kv, 4);
    float *dy[4][3]; /* [the same variants][q/k/v] */
    for (int v = 0; v < 4; v++)
        for (int i = 0; i < 3; i++) dy[v][i] = dev_from(NULL, sizeof(float) * T * ld[i]);
    /* the separate kernels */
    const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
    float *adds[3] = { NULL, NULL, NULL };
    const int32_t *dp, *ds;
    ok(cuda_stage_i32(g_ctx, 0, pos, T, &dp, &g_err));
    ok(cuda_stage_i32(g_ctx, 1, seq, T, &ds, &g_err));
    if (qc->tv == qc->tq) {
        ok(cuda_matmul_multi(g_ctx, 3, ws, dy[0], ld, adds, dx, T, 0, &g_err));
    } else {
        ok(cuda_matmul_multi(g_ctx, 2, ws, dy[0], ld, adds, dx, T, 0, &g_err));
        ok(cuda_matmul_multi(g_ctx, 1, ws + 2, dy[0] + 2, ld + 2, adds, dx, T, 1, &g_err));
    }
    if (qc->kv_type != NO_CACHE)
        ok(cuda_rope_kv(g_ctx, dy[0][0], dq, qc->nh, dy[0][1], kvd, qc->nkv, T, qc->hd, dp, &r, &kv[0], dy[0][2],
                        kvd, ds, &g_err));
    else
        ok(cuda_rope_apply2(g_ctx, dy[0][0], dq, qc->nh, dy[0][1], kvd, qc->nkv, T, qc->hd, dp, &r, &g_err));
    /* fused: all tokens in one launch, then each token alone */
    uint64_t l0 = cuda_qkvr_launches(g_ctx);
    bool has_kv = qc->kv_type != NO_CACHE;
    run_fused(qc, w, dx, dy[1], pos, seq, 0, T, &r, has_kv ? &kv[1] : NULL, NULL, NULL);
    for (int64_t t = 0; t < T && T > 1; t++)
        run_fused(qc, w, dx, dy[2], pos, seq, t, 1, &r, has_kv ? &kv[2] : NULL, NULL, NULL);
    if (fold) run_fused(qc, w, dxn, dy[3], pos, seq, 0, T, &r, has_kv ? &kv[3] : NULL, dxr, dnw);
    assert_true(cuda_qkvr_launches(g_ctx) > l0);
    int bad0 = g_bad;
    static const char *names[3] = { "q", "k", "v" };
    for (int v = 1; v < 4; v++) {
        if ((v == 2 && T == 1) || (v == 3 && !fold)) continue;
        int ref = v == 3 ? 0 : v - 1;
        for (int i = 0; i < 3; i++) same(names[i], dy[ref][i], dy[v][i], sizeof(float) * T * ld[i]);
        if (qc->kv_type != NO_CACHE) {
            size_t bytes = kv[0].row_bytes * N_SEQ * N_CTX;
            same("K cache", kv[ref].k, kv[v].k, bytes);
            same("V cache", kv[ref].v, kv[v].v, bytes);
        }
    }
    if (fold) same("normalized rows", dx, dxn, sizeof(float) * T * E);
    printf("  %-6s/%-6s E %4lld hd %3d %s%s%s n_tok %lld cache %-4s: %s\n", quant_type_name(qc->tq),
           quant_type_name(qc->tv), (long long)E, qc->hd, qc->neox ? "neox" : "norm", qc->factors ? " fac" : "",
           qc->table ? " tab" : " pow", (long long)T, qc->kv_type != NO_CACHE ? quant_type_name(qc->kv_type) : "none",
           g_bad == bad0 ? (fold ? "same bits (norm folded too)" : "same bits") : "DIFFERENT");
    for (int i = 0; i < 3; i++) cuda_free(g_ctx, (void *)w[i].data);
    for (int v = 0; v < 4; v++)
        for (int i = 0; i < 3; i++) cuda_free(g_ctx, dy[v][i]);
    if (qc->kv_type != NO_CACHE)
        for (int v = 0; v < 4; v++) cuda_free(g_ctx, kv[v].k), cuda_free(g_ctx, kv[v].v);
    cuda_free(g_ctx, dx), cuda_free(g_ctx, (void *)r.factors), cuda_free(g_ctx, (void *)r.inv);
    cuda_free(g_ctx, dxr), cuda_free(g_ctx, dxn), cuda_free(g_ctx, dnw);
    free(x), free(nwh);
}

static void test_fused_vs_separate(void **state) {
    (void)state;
    NEED_GPU();
    g_bad = 0;
    static const uint32_t types[] = { QT_Q4_0, QT_Q4_K, QT_Q8_0, QT_Q6_K, QT_Q5_K, QT_IQ4_NL };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int neox = 0; neox < 2; neox++)
            for (int T = 1; T <= 8; T = T == 1 ? 3 : T + 5) { /* 1, 3 (the 4-value reduction), 8 */
                uint32_t kvt = T == 1 ? QT_F32 : (neox ? QT_F16 : NO_CACHE);
                qcase qc = { types[ti], types[ti], 512, 64, 4, 2, neox, neox, 1, T, kvt };
                check_case(&qc);
            }
    /* TinyLlama's attention shape, the Q4_K_M split (q/k Q4_K, v Q6_K), no table, no cache */
    qcase big[] = {
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 0, 0, 1, 1, QT_F16 },
        { QT_Q4_0, QT_Q4_0, 2048, 64, 32, 4, 1, 1, 1, 8, QT_F16 },
        { QT_Q8_0, QT_Q8_0, 2048, 64, 32, 4, 0, 0, 1, 8, QT_F32 },
        { QT_Q8_0, QT_Q8_0, 2048, 64, 32, 4, 0, 0, 1, 1, QT_F16 },
        { QT_Q4_K, QT_Q6_K, 2048, 64, 32, 4, 0, 0, 1, 1, QT_F16 },
        { QT_Q4_K, QT_Q6_K, 2048, 64, 32, 4, 1, 0, 1, 8, QT_F16 },
        { QT_Q4_0, QT_Q4_0, 512, 128, 4, 1, 1, 1, 0, 8, QT_F16 },
        { QT_Q4_0, QT_Q4_0, 512, 128, 4, 1, 0, 0, 0, 1, QT_F32 },
        { QT_Q4_K, QT_Q4_K, 512, 64, 4, 2, 1, 0, 1, 8, NO_CACHE },
        { QT_Q4_0, QT_Q4_0, 4096, 64, 8, 2, 1, 1, 1, 1, QT_F16 }, /* rows of 128 chunks: the wider */
        { QT_Q4_K, QT_Q6_K, 4096, 128, 4, 2, 0, 0, 1, 1, QT_F32 }, /* single-token kernels */
        { QT_Q8_0, QT_Q8_0, 4096, 64, 8, 2, 0, 1, 1, 4, QT_F16 },
        { QT_Q8_0, QT_Q8_0, 512, 64, 4, 2, 0, 1, 1, 1, NO_CACHE },
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_case(&big[i]);
    assert_int_equal(g_bad, 0);
}

/* Weights of two types in one launch that the mixed kernel cannot take (two tokens, the
 * pair in the other order, a pair without a kernel, rows too long) are refused with an
 * error, nothing launched. */
static void test_mixed_refused(void **state) {
    (void)state;
    NEED_GPU();
    const struct { uint32_t tq, tv; int64_t E, n_tok; } bad[] = {
        { QT_Q4_K, QT_Q6_K, 2048, 2 }, { QT_Q6_K, QT_Q4_K, 2048, 1 },
        { QT_Q4_0, QT_Q6_K, 2048, 1 }, { QT_Q4_K, QT_Q6_K, 4096, 1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t E = bad[i].E, T = bad[i].n_tok, dq = 4 * 64, kvd = 2 * 64, ld[3] = { dq, kvd, kvd };
        cuda_weight w[3] = { cuda_test_weight(bad[i].tq, dq, E), cuda_test_weight(bad[i].tq, kvd, E),
                             cuda_test_weight(bad[i].tv, kvd, E) };
        float *dx = dev_from(NULL, sizeof(float) * T * E), *dy[3];
        for (int k = 0; k < 3; k++) dy[k] = dev_from(NULL, sizeof(float) * T * ld[k]);
        int32_t pos[2] = { 3, 4 }, seq[2] = { 0, 0 };
        const int32_t *dp, *ds;
        ok(cuda_stage_i32(g_ctx, 0, pos, T, &dp, &g_err));
        ok(cuda_stage_i32(g_ctx, 1, seq, T, &ds, &g_err));
        cuda_rope r = { 0, 64, 10000.0f, 1.0f, 1.0f, NULL, NULL };
        cuda_qkvr q = { dp, ds, &r, 64, NULL, { CUDA_QKVR_Q, CUDA_QKVR_K, CUDA_QKVR_PLAIN }, NULL, 0, NULL, 0.0f };
        const cuda_weight *ws[3] = { &w[0], &w[1], &w[2] };
        hb_err err;
        hb_err_clear(&err);
        assert_int_equal(cuda_matmul_qkvr(g_ctx, 3, ws, dy, ld, dx, T, 0, &q, &err), HEARTH_E_INTERNAL);
        assert_true(strlen(err.msg) > 0);
        for (int k = 0; k < 3; k++) cuda_free(g_ctx, (void *)w[k].data), cuda_free(g_ctx, dy[k]);
        cuda_free(g_ctx, dx);
    }
}

/* ---- the rewrite rule (no GPU needed) ------------------------------------------------------ */

enum { RE = 256, RH = 4, RKV = 2, RHD = 64, RSLOT = 8 * 512 };
static float g_mem[16 * RSLOT] __attribute__((aligned(16))); /* fake device buffers: the rules compare addresses */
#define BUF(i) (g_mem + (i) * RSLOT)

typedef struct rstep {
    uint32_t tq, tv, kv_type;
    int n_tok, n_rot, bias;
} rstep;

static cb_cmd *push(cuda_be *c, int kind) {
    cb_cmd *k = &c->cmd[c->n_cmd++];
    memset(k, 0, sizeof *k);
    k->kind = kind, k->off[0] = k->off[1] = -1;
    return k;
}

static void push_mm(cuda_be *c, uint32_t type, int64_t rows, const float *x, float *y, int64_t T) {
    cb_cmd *k = push(c, CK_MATMUL);
    k->w.type = type, k->w.n_rows = rows, k->w.n_cols = RE, k->w.row_bytes = quant_row_size(type, RE);
    k->w.data = g_mem;
    k->p[0] = x, k->p[1] = y, k->n[0] = T, k->n[1] = rows;
}

/* The attention block of one recorded decode layer: norm, q/k/v, [bias], RoPE q, RoPE k, KV
 * store, attention, o product. */
static void record(cuda_be *c, const rstep *s) {
    int64_t T = s->n_tok, dq = RH * RHD, dk = RKV * RHD;
    c->n_cmd = 0;
    cb_cmd *k = push(c, CK_RMSNORM);
    k->p[0] = BUF(0), k->p[1] = BUF(1), k->p[2] = BUF(15), k->n[0] = RE, k->n[1] = RE, k->n[2] = T, k->n[3] = RE;
    k->f[0] = 1e-5f;
    push_mm(c, s->tq, dq, BUF(1), BUF(2), T);
    push_mm(c, s->tq, dk, BUF(1), BUF(3), T);
    push_mm(c, s->tv, dk, BUF(1), BUF(4), T);
    if (s->bias) {
        k = push(c, CK_COPY_ROWS);
        k->p[0] = BUF(2), k->p[1] = BUF(2), k->p[2] = BUF(14), k->n[0] = dq, k->n[1] = dq, k->n[2] = T, k->n[3] = dq;
    }
    cuda_rope rope = { 1, s->n_rot, 10000.0f, 1.0f, 1.0f, NULL, (const double *)BUF(13) };
    for (int i = 0; i < 2; i++) {
        k = push(c, CK_ROPE);
        k->rope = rope, k->off[0] = 0, k->p[1] = i ? BUF(3) : BUF(2), k->n[0] = T, k->n[1] = i ? dk : dq;
        k->n[2] = i ? RKV : RH, k->n[3] = RHD;
    }
    cuda_kv kv = { BUF(10), BUF(11), s->kv_type, dk, (size_t)dk * 2, 64 };
    if (s->kv_type == QT_Q8_0) kv.row_bytes = (size_t)dk / 32 * 34;
    k = push(c, CK_KV_STORE);
    k->kv = kv, k->off[0] = 0, k->off[1] = 8, k->p[0] = BUF(3), k->p[2] = BUF(4), k->n[0] = dk, k->n[1] = dk;
    k->n[2] = T;
    k = push(c, CK_ATTN);
    k->kv = kv, k->off[0] = 0, k->off[1] = 8, k->p[0] = BUF(2), k->p[1] = BUF(5), k->n[0] = dq, k->n[1] = dq;
    k->at.n_tok = (int32_t)T, k->at.n_head = RH, k->at.n_head_kv = RKV, k->at.head_dim_k = RHD;
    k->at.head_dim_v = RHD, k->at.scale = 0.125f, k->at.max_pos_host = 127;
    push_mm(c, s->tq, RE, BUF(5), BUF(6), T);
}

static int count(const cuda_be *c, int kind) {
    int n = 0;
    for (size_t i = 0; i < c->n_cmd; i++) n += c->cmd[i].kind == kind;
    return n;
}

/* The products carrying the fused epilogue, and their roles. */
static int fused_products(const cuda_be *c, int64_t *roles, int *kv) {
    int n = 0;
    for (size_t i = 0; i < c->n_cmd; i++)
        if (c->cmd[i].kind == CK_MATMUL && (c->cmd[i].flag & CB_MM_QKVR)) {
            roles[n++] = c->cmd[i].n[7];
            *kv = (c->cmd[i].flag & CB_MM_QKVR_KV) != 0;
            assert_int_equal(c->cmd[i].n[5], RHD);
            assert_int_equal(c->cmd[i].off[0], 0);
            assert_int_equal(c->cmd[i].off[1], *kv ? 8 : -1);
        }
    return n;
}

/* A backend with only a command list (the rewrite rules need nothing else). */
static void fake_be(cuda_be *c, cb_cmd *cmds, size_t cap) {
    memset(c, 0, sizeof *c);
    c->cmd = cmds, c->cap_cmd = cap;
    cuda_knobs_from_env(&c->kn); /* the rewriter's switches, without a context */
}

static void test_rule(void **state) {
    (void)state;
    cb_cmd cmds[32];
    cuda_be c;
    fake_be(&c, cmds, 32);
    int64_t roles[4];
    int kv = 0;
    const int64_t qkv = CUDA_QKVR_Q | CUDA_QKVR_K << 2 | CUDA_QKVR_V << 4;
    /* Q4_0 q/k/v, f16 cache, 1 and 8 tokens (HEARTH_CUDA_FUSE_T=8: by default only steps of
     * up to 4 tokens take the rule, checked below): one product rotates and stores, the RoPE
     * and the KV store are gone */
    c.kn.fuse_t = 8;
    for (int T = 1; T <= 8; T += 7) {
        rstep s = { QT_Q4_0, QT_Q4_0, QT_F16, T, RHD, 0 };
        record(&c, &s);
        cb_rewrite(&c);
        assert_int_equal(count(&c, CK_ROPE), 0);
        assert_int_equal(count(&c, CK_KV_STORE), 0);
        assert_int_equal(fused_products(&c, roles, &kv), 1);
        assert_int_equal(roles[0], qkv);
        assert_true(kv);
    }
    /* Q4_K q/k and Q6_K v: one launch of two types for one token, two launches for more
     * (with HEARTH_CUDA_QKVR_KQ=1; by default 2+ tokens of these types keep the RoPE, below) */
    c.kn.qkvr_kq = true;
    for (int T = 1; T <= 8; T += 7) {
        rstep s2 = { QT_Q4_K, QT_Q6_K, QT_F32, T, RHD, 0 };
        record(&c, &s2);
        cb_rewrite(&c);
        assert_int_equal(count(&c, CK_ROPE), 0);
        if (T == 1) {
            assert_int_equal(fused_products(&c, roles, &kv), 1);
            assert_int_equal(roles[0], qkv);
            continue;
        }
        assert_int_equal(fused_products(&c, roles, &kv), 2);
        assert_int_equal(roles[0], CUDA_QKVR_Q | CUDA_QKVR_K << 2);
        assert_int_equal(roles[1], CUDA_QKVR_V);
    }
    c.kn.qkvr_kq = false;
    for (int T = 1; T <= 2; T++) {
        rstep s6 = { QT_Q4_K, QT_Q6_K, QT_F32, T, RHD, 0 };
        record(&c, &s6);
        cb_rewrite(&c);
        assert_int_equal(count(&c, CK_ROPE), T == 1 ? 0 : 1);
        assert_int_equal(fused_products(&c, roles, &kv), T == 1 ? 1 : 0);
    }
    /* the default token limit (4): a step of 4 takes the rule, one of 5 or 8 keeps the RoPE
     * and the KV store */
    c.kn.fuse_t = 0;
    for (int T = 4; T <= 8; T += (T == 4 ? 1 : 3)) {
        rstep s5 = { QT_Q4_0, QT_Q4_0, QT_F16, T, RHD, 0 };
        record(&c, &s5);
        cb_rewrite(&c);
        assert_int_equal(count(&c, CK_ROPE), T <= 4 ? 0 : 1);
        assert_int_equal(fused_products(&c, roles, &kv), T <= 4 ? 1 : 0);
    }
    assert_false(cuda_qkvr_mixed_ok(QT_Q6_K, QT_Q4_K, 1, 2048)); /* the pair has an order */
    assert_false(cuda_qkvr_mixed_ok(QT_Q4_K, QT_Q6_K, 1, 4096)); /* rows too long to stage whole */
    assert_false(cuda_qkvr_mixed_ok(QT_Q4_K, QT_Q6_K, 2, 2048));
    /* q8_0 cache: the products rotate q and k, the KV store stays (v plain) */
    rstep s3 = { QT_Q8_0, QT_Q8_0, QT_Q8_0, 1, RHD, 0 };
    record(&c, &s3);
    cb_rewrite(&c);
    assert_int_equal(count(&c, CK_ROPE), 0);
    assert_int_equal(count(&c, CK_KV_STORE), 1);
    assert_int_equal(fused_products(&c, roles, &kv), 1);
    assert_int_equal(roles[0], CUDA_QKVR_Q | CUDA_QKVR_K << 2);
    assert_false(kv);
    /* left alone: partial rotation, a bias between the products and the RoPE, float
     * weights, a prefill-sized batch */
    const rstep keep[] = {
        { QT_Q4_0, QT_Q4_0, QT_F16, 1, RHD / 2, 0 },
        { QT_Q4_0, QT_Q4_0, QT_F16, 1, RHD, 1 },
        { QT_F16, QT_F16, QT_F16, 1, RHD, 0 },
        { QT_Q4_0, QT_Q4_0, QT_F16, 12, RHD, 0 },
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        record(&c, &keep[i]);
        cb_rewrite(&c);
        /* after float products the RoPE goes into the attention instead (cb_fuse_attn:
         * HEARTH_CUDA_DATTN unset), never into the products */
        bool flt = keep[i].tq == QT_F16;
        assert_int_equal(count(&c, CK_ROPE), flt ? 0 : 1);
        for (size_t j = 0; j < c.n_cmd; j++)
            if (c.cmd[j].kind == CK_ATTN) assert_int_equal(c.cmd[j].flag & 2, flt ? 2 : 0);
        assert_int_equal(fused_products(&c, roles, &kv), 0);
    }
    /* HEARTH_CUDA_DROP (diagnostics): the q/k/v product and the attention go, o stays */
    rstep s4 = { QT_Q4_0, QT_Q4_0, QT_F16, 1, RHD, 0 };
    c.kn.drop = CB_DROP_QKV | CB_DROP_ATTN;
    record(&c, &s4);
    cb_rewrite(&c);
    assert_int_equal(count(&c, CK_ATTN), 0);
    assert_int_equal(count(&c, CK_MATMUL), 1);
    c.kn.drop = CB_DROP_O;
    record(&c, &s4);
    cb_rewrite(&c);
    assert_int_equal(count(&c, CK_ATTN), 1);
    assert_int_equal(fused_products(&c, roles, &kv), 1);
    assert_int_equal(count(&c, CK_MATMUL), 1);
    c.kn.drop = 0;
}

/* The flags of the q/k/v + attention launch (cb_qkva_rule, on in this program: main sets
 * HEARTH_CUDA_QKVA=1), or -1 when the op kinds are not where they should be. */
static int qkva_flags(const cuda_be *c) {
    int f = 0, seen = 0;
    for (size_t i = 0; i < c->n_cmd; i++) {
        const cb_cmd *k = &c->cmd[i];
        if (k->kind == CK_MATMUL && (k->flag & CB_MM_QKVR)) f |= (k->flag & CB_MM_QKVA) ? 1 : 0, seen |= 1;
        if (k->kind == CK_ATTN) f |= (k->flag & CB_AT_BY_QKVA) ? 2 : 0, seen |= 2;
        if (k->kind == CK_MATMUL && k->p[0] == BUF(5)) f |= (k->flag & CB_MM_ACT2) ? 4 : 0, seen |= 4;
    }
    return seen == 7 ? f : -1;
}

/* The attention in the q/k/v product's launch: one token with an f16 cache (Q4_0, Q8_0)
 * gets all three flags (the product, the attention it runs, the o product reading the
 * second scratch); 8 tokens, a q8_0 cache (the product stores no cell), Q6_K v rows of 210
 * bytes (not 16-byte copies), a position bucket over 512 and partial rotation get none. */
static void test_qkva_rule(void **state) {
    (void)state;
    cb_cmd cmds[32];
    cuda_be c;
    fake_be(&c, cmds, 32);
    c.kn.fuse_t = 8; /* 8 tokens below: refused by this rule's own limit, not the q/k/v + RoPE rule's */
    const rstep on[] = { { QT_Q4_0, QT_Q4_0, QT_F16, 1, RHD, 0 }, { QT_Q8_0, QT_Q8_0, QT_F16, 1, RHD, 0 } };
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        record(&c, &on[i]);
        cb_rewrite(&c);
        assert_int_equal(qkva_flags(&c), 7);
    }
    const rstep off[] = { { QT_Q4_0, QT_Q4_0, QT_F16, 8, RHD, 0 }, { QT_Q4_0, QT_Q4_0, QT_Q8_0, 1, RHD, 0 },
                          { QT_Q4_K, QT_Q6_K, QT_F16, 1, RHD, 0 } };
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        record(&c, &off[i]);
        cb_rewrite(&c);
        assert_int_equal(qkva_flags(&c) & ~4, 0);
    }
    record(&c, &on[0]);
    for (size_t i = 0; i < c.n_cmd; i++)
        if (c.cmd[i].kind == CK_ATTN) c.cmd[i].at.max_pos_host = 1023;
    cb_rewrite(&c);
    assert_int_equal(qkva_flags(&c), 0);
    rstep part = { QT_Q4_0, QT_Q4_0, QT_F16, 1, RHD / 2, 0 };
    record(&c, &part);
    cb_rewrite(&c);
    assert_int_equal(count(&c, CK_ROPE), 1); /* no q/k/v product with RoPE, so nothing to join */
}

/* The folded norm's checks (host only, no GPU): what the kernel cannot take is refused. */
static void test_norm_ok(void **state) {
    (void)state;
    static float buf[8 * 2048 + 8] __attribute__((aligned(16)));
    const float *x = buf, *w = buf + 4;
    assert_true(cuda_qkvr_norm_ok(1, 2048, x, 2048, w));
    assert_true(cuda_qkvr_norm_ok(1, 2048, x, 2048, NULL));      /* no weight: plain RMS */
    assert_true(cuda_qkvr_norm_ok(7, 2048, x, 2048, w));         /* 7 x 64 chunks x 44 B fit */
    assert_false(cuda_qkvr_norm_ok(8, 2048, x, 2048, w));        /* 22.5 KB: over the budget */
    assert_false(cuda_qkvr_norm_ok(0, 2048, x, 2048, w));        /* no tokens */
    assert_false(cuda_qkvr_norm_ok(9, 512, x, 512, w));          /* more than 8 tokens */
    assert_false(cuda_qkvr_norm_ok(1, 2040, x, 2040, w));        /* not whole 32-value chunks */
    assert_false(cuda_qkvr_norm_ok(1, 2048, x + 1, 2048, w));    /* x not 16-byte aligned */
    assert_false(cuda_qkvr_norm_ok(1, 2048, x, 2046, w));        /* rows overlap (xs < n) */
    assert_false(cuda_qkvr_norm_ok(2, 2048, x, 2050, w));        /* row stride not 4-float */
    assert_false(cuda_qkvr_norm_ok(1, 2048, x, 2048, w + 1));    /* weight not 16-byte aligned */
}

int main(void) {
    setenv("HEARTH_CUDA_QKVA", "1", 1); /* the opt-in rule of test_qkva_rule (read at context creation) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_qkva_rule),
        cmocka_unit_test(test_norm_ok),
        cmocka_unit_test(test_fused_vs_separate),
        cmocka_unit_test(test_mixed_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
