/* ops_attn.c — CPU attention straight from the KV cache, and the cache stores.
 *
 * Scores are computed directly against the cached K rows (f32, f16 or q8_0) — the cache is
 * never copied per token — and V rows are accumulated in place. Work items are (token,
 * head) pairs split into contiguous ranges per thread; each item is computed by one thread
 * in a fixed order, so results do not depend on the thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"

/* f16 -> f32 lookup table (immutable once built; 256 KiB). */
static float k_f16_tab[65536];
static pthread_once_t k_f16_once = PTHREAD_ONCE_INIT;

static void f16_tab_init(void) {
    for (uint32_t i = 0; i < 65536; i++) k_f16_tab[i] = hb_f16_to_f32((uint16_t)i);
}

void cpu_kv_store(be_ctx *b, const be_kv_layer *kv, const float *k, int64_t ks, const float *v,
                  int64_t vs, int64_t n_tok, const int32_t *pos, const int32_t *seq) {
    (void)b;
    for (int64_t t = 0; t < n_tok; t++) {
        size_t cell = (size_t)seq[t] * (size_t)kv->n_ctx + (size_t)pos[t];
        uint8_t *kd = (uint8_t *)kv->k + cell * kv->row_bytes;
        uint8_t *vd = (uint8_t *)kv->v + cell * kv->row_bytes;
        const float *kr = k + t * ks, *vr = v + t * vs;
        switch (kv->type) {
        case QT_F32:
            memcpy(kd, kr, (size_t)kv->kv_dim * sizeof(float));
            memcpy(vd, vr, (size_t)kv->kv_dim * sizeof(float));
            break;
        case QT_F16:
            for (int64_t i = 0; i < kv->kv_dim; i++) {
                uint16_t hk = hb_f32_to_f16(kr[i]), hv = hb_f32_to_f16(vr[i]);
                memcpy(kd + 2 * i, &hk, 2);
                memcpy(vd + 2 * i, &hv, 2);
            }
            break;
        default:
            quant_quantize_row(kv->type, kr, kd, kv->kv_dim);
            quant_quantize_row(kv->type, vr, vd, kv->kv_dim);
            break;
        }
    }
}

int cpu_kv_copy(be_ctx *b, const be_kv_layer *kv, int32_t src, int32_t dst, int64_t n) {
    (void)b;
    size_t stream = (size_t)kv->n_ctx * kv->row_bytes, bytes = (size_t)n * kv->row_bytes;
    if (src == dst || n <= 0) return HEARTH_OK;
    memcpy((uint8_t *)kv->k + (size_t)dst * stream, (uint8_t *)kv->k + (size_t)src * stream, bytes);
    memcpy((uint8_t *)kv->v + (size_t)dst * stream, (uint8_t *)kv->v + (size_t)src * stream, bytes);
    return HEARTH_OK;
}

/* Elements [off, off+n) of a cached row as f32: a pointer into the row (f32) or into tmp. */
static const float *kv_slice(const be_kv_layer *kv, const uint8_t *row, int64_t off, int64_t n, float *tmp) {
    switch (kv->type) {
    case QT_F32:
        return (const float *)(const void *)row + off;
    case QT_F16: {
        const uint8_t *h = row + 2 * off;
        for (int64_t i = 0; i < n; i++) {
            uint16_t u;
            memcpy(&u, h + 2 * i, 2);
            tmp[i] = k_f16_tab[u];
        }
        return tmp;
    }
    default: /* q8_0: head slices start on a block boundary (head_dim % 32 == 0, checked) */
        quant_dequantize_row(kv->type, row + quant_row_size(kv->type, off), tmp, n);
        return tmp;
    }
}

/* Query tokens are processed in blocks: up to ATTN_BQ consecutive batch tokens of the same
 * sequence share each K/V row load (one f16/q8_0 conversion serves the whole block), which
 * is what makes prompt processing cheap; a decode step is a block of one. */
#define ATTN_BQ 32
/* Below this many multiply-adds an attention call runs on the calling thread. */
#define ATTN_INLINE_WORK 32768

typedef struct attn_block {
    int32_t t0, n;            /* batch tokens t0 .. t0+n-1, one sequence, positions ascending */
} attn_block;

typedef struct attn_job {
    const be_attn *a;
    const float *q;
    int64_t qs;
    float *out;
    int64_t os;
    const attn_block *blocks;
    int64_t n_blocks;
    float *scratch;
    size_t per_thread;
} attn_job;

static int64_t first_visible(const be_attn *a, int64_t p) {
    return (a->window > 0 && p - a->window + 1 > 0) ? p - a->window + 1 : 0;
}

/* One (block, head) item: softmax(scale * q K^T) V for every token of the block. Scores
 * live in sc[i][c - c0] for block token i; sums run in cell order, so the result of a token
 * does not depend on the block it was placed in. */
static void attn_item(const attn_job *j, const attn_block *blk, int32_t h, float *sc) {
    const be_attn *a = j->a;
    const be_kv_layer *kv = a->kv;
    int32_t hk = h / (a->n_head / a->n_head_kv), dk = a->head_dim_k, dv = a->head_dim_v;
    int64_t c0 = first_visible(a, a->pos[blk->t0]), c1 = a->pos[blk->t0 + blk->n - 1];
    int64_t span = c1 - c0 + 1;
    float *tmp = sc + (size_t)ATTN_BQ * (size_t)span;          /* [max(dk, dv)] */
    float *acc = tmp + (dk > dv ? dk : dv);                   /* [ATTN_BQ][dv] */
    float mx[ATTN_BQ], sum[ATTN_BQ];
    size_t stream = (size_t)a->seq[blk->t0] * (size_t)kv->n_ctx * kv->row_bytes;
    const uint8_t *kb = (const uint8_t *)kv->k + stream, *vb = (const uint8_t *)kv->v + stream;
    for (int32_t i = 0; i < blk->n; i++) mx[i] = -INFINITY;
    for (int64_t c = c0; c <= c1; c++) {
        const float *kr = kv_slice(kv, kb + c * kv->row_bytes, (int64_t)hk * dk, dk, tmp);
        for (int32_t i = 0; i < blk->n; i++) {
            int64_t t = blk->t0 + i, p = a->pos[t];
            if (c > p || c < first_visible(a, p)) continue;
            const float *q = j->q + t * j->qs + (int64_t)h * dk;
            float s = 0.0f;
            for (int32_t d = 0; d < dk; d++) s += q[d] * kr[d];
            s *= a->scale;
            if (a->softcap > 0.0f) s = a->softcap * tanhf(s / a->softcap);
            sc[(size_t)i * span + (c - c0)] = s;
            if (s > mx[i]) mx[i] = s;
        }
    }
    for (int32_t i = 0; i < blk->n; i++) {
        int64_t p = a->pos[blk->t0 + i], lo = first_visible(a, p);
        float *r = sc + (size_t)i * span;
        sum[i] = 0.0f;
        for (int64_t c = lo; c <= p; c++) {
            float e = expf(r[c - c0] - mx[i]);
            r[c - c0] = e;
            sum[i] += e;
        }
    }
    memset(acc, 0, (size_t)blk->n * (size_t)dv * sizeof(float));
    for (int64_t c = c0; c <= c1; c++) {
        const float *vr = kv_slice(kv, vb + c * kv->row_bytes, (int64_t)hk * dv, dv, tmp);
        for (int32_t i = 0; i < blk->n; i++) {
            int64_t p = a->pos[blk->t0 + i];
            if (c > p || c < first_visible(a, p)) continue;
            float w = sc[(size_t)i * span + (c - c0)], *ac = acc + (size_t)i * dv;
            for (int32_t d = 0; d < dv; d++) ac[d] += w * vr[d];
        }
    }
    for (int32_t i = 0; i < blk->n; i++) {
        float inv = 1.0f / sum[i], *o = j->out + (blk->t0 + i) * j->os + (int64_t)h * dv;
        for (int32_t d = 0; d < dv; d++) o[d] = acc[(size_t)i * dv + d] * inv;
    }
}

static void attn_task(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    int64_t n_items = j->n_blocks * j->a->n_head;
    int64_t per = (n_items + nth - 1) / nth;
    int64_t i0 = per * ith, i1 = i0 + per < n_items ? i0 + per : n_items;
    float *sc = j->scratch + (size_t)ith * j->per_thread;
    for (int64_t i = i0; i < i1; i++) attn_item(j, &j->blocks[i / j->a->n_head], (int32_t)(i % j->a->n_head), sc);
}

/* Splits the batch into runs of consecutive tokens of one sequence, at most ATTN_BQ long. */
static int64_t make_blocks(const be_attn *a, attn_block *blocks, int64_t *max_span) {
    int64_t nb = 0;
    *max_span = 1;
    for (int32_t t = 0; t < a->n_tok; t++) {
        attn_block *b = nb ? &blocks[nb - 1] : NULL;
        if (b && b->n < ATTN_BQ && a->seq[t] == a->seq[b->t0] && a->pos[t] == a->pos[t - 1] + 1) {
            b->n++;
        } else {
            blocks[nb].t0 = t;
            blocks[nb].n = 1;
            b = &blocks[nb++];
        }
        int64_t span = a->pos[b->t0 + b->n - 1] - first_visible(a, a->pos[b->t0]) + 1;
        if (span > *max_span) *max_span = span;
    }
    return nb;
}

int cpu_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    cpu_be *c = b->impl;
    pthread_once(&k_f16_once, f16_tab_init);
    int nth = cpu_pool_n_threads(c->pool);
    if ((size_t)a->n_tok > c->blocks_cap) {
        attn_block *nb = hb_malloc_n((size_t)a->n_tok, sizeof *nb);
        if (!nb) return HEARTH_E_NOMEM;
        free(c->blocks);
        c->blocks = nb;
        c->blocks_cap = (size_t)a->n_tok;
    }
    attn_block *blocks = c->blocks;
    int64_t max_span;
    int64_t n_blocks = make_blocks(a, blocks, &max_span);
    int64_t hd = a->head_dim_k > a->head_dim_v ? a->head_dim_k : a->head_dim_v;
    size_t per = (size_t)ATTN_BQ * (size_t)max_span + (size_t)hd + (size_t)ATTN_BQ * (size_t)a->head_dim_v;
    size_t need = per * (size_t)nth;
    if (need > c->attn_cap) {
        float *nb = hb_malloc_n(need, sizeof(float));
        if (!nb) return HEARTH_E_NOMEM;
        free(c->attn_scratch);
        c->attn_scratch = nb;
        c->attn_cap = need;
    }
    attn_job j = { a, q, qs, out, os, blocks, n_blocks, c->attn_scratch, per };
    /* Small jobs (a few thousand multiply-adds, typical of short contexts on tiny models)
     * cost less than waking the pool: run them on the calling thread. Each item is
     * computed the same way either way, so results do not change. */
    int64_t work = 0;
    for (int64_t i = 0; i < n_blocks && work < ATTN_INLINE_WORK; i++)
        work += (int64_t)blocks[i].n * max_span * (a->head_dim_k + a->head_dim_v) * a->n_head;
    if (work < ATTN_INLINE_WORK) attn_task(&j, 0, 1);
    else cpu_pool_run(c->pool, attn_task, &j);
    return HEARTH_OK;
}
