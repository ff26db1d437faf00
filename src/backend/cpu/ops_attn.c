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

typedef struct attn_job {
    const be_attn *a;
    const float *q;
    int64_t qs;
    float *out;
    int64_t os;
    float *scratch;
    size_t per_thread;
} attn_job;

/* One (token, head) item: softmax(scale * q K^T) V over the visible cells. */
static void attn_item(const attn_job *j, int64_t t, int32_t h, float *sc) {
    const be_attn *a = j->a;
    const be_kv_layer *kv = a->kv;
    int32_t group = a->n_head / a->n_head_kv, hk = h / group;
    int64_t p = a->pos[t], lo = 0;
    if (a->window > 0 && p - a->window + 1 > 0) lo = p - a->window + 1;
    const float *q = j->q + t * j->qs + (int64_t)h * a->head_dim_k;
    float *tmp = sc + kv->n_ctx;                 /* [max head dim] */
    float *acc = tmp + (a->head_dim_k > a->head_dim_v ? a->head_dim_k : a->head_dim_v);
    const uint8_t *kb = (const uint8_t *)kv->k + (size_t)a->seq[t] * kv->n_ctx * kv->row_bytes;
    const uint8_t *vb = (const uint8_t *)kv->v + (size_t)a->seq[t] * kv->n_ctx * kv->row_bytes;
    float mx = -INFINITY;
    for (int64_t c = lo; c <= p; c++) {
        const float *kr = kv_slice(kv, kb + c * kv->row_bytes, (int64_t)hk * a->head_dim_k, a->head_dim_k, tmp);
        float s = 0.0f;
        for (int32_t i = 0; i < a->head_dim_k; i++) s += q[i] * kr[i];
        s *= a->scale;
        if (a->softcap > 0.0f) s = a->softcap * tanhf(s / a->softcap);
        sc[c - lo] = s;
        if (s > mx) mx = s;
    }
    float sum = 0.0f;
    for (int64_t c = lo; c <= p; c++) {
        float e = expf(sc[c - lo] - mx);
        sc[c - lo] = e;
        sum += e;
    }
    memset(acc, 0, (size_t)a->head_dim_v * sizeof(float));
    for (int64_t c = lo; c <= p; c++) {
        const float *vr = kv_slice(kv, vb + c * kv->row_bytes, (int64_t)hk * a->head_dim_v, a->head_dim_v, tmp);
        float w = sc[c - lo];
        for (int32_t i = 0; i < a->head_dim_v; i++) acc[i] += w * vr[i];
    }
    float inv = 1.0f / sum;
    float *o = j->out + t * j->os + (int64_t)h * a->head_dim_v;
    for (int32_t i = 0; i < a->head_dim_v; i++) o[i] = acc[i] * inv;
}

static void attn_task(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    int64_t n_items = (int64_t)j->a->n_tok * j->a->n_head;
    int64_t per = (n_items + nth - 1) / nth;
    int64_t i0 = per * ith, i1 = i0 + per < n_items ? i0 + per : n_items;
    float *sc = j->scratch + (size_t)ith * j->per_thread;
    for (int64_t i = i0; i < i1; i++) attn_item(j, i / j->a->n_head, (int32_t)(i % j->a->n_head), sc);
}

int cpu_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    cpu_be *c = b->impl;
    pthread_once(&k_f16_once, f16_tab_init);
    int nth = cpu_pool_n_threads(c->pool);
    int64_t hd = a->head_dim_k > a->head_dim_v ? a->head_dim_k : a->head_dim_v;
    size_t per = (size_t)(a->kv->n_ctx + 2 * hd);
    size_t need = per * (size_t)nth;
    if (need > c->attn_cap) {
        float *nb = hb_malloc_n(need, sizeof(float));
        if (!nb) return HEARTH_E_NOMEM;
        free(c->attn_scratch);
        c->attn_scratch = nb;
        c->attn_cap = need;
    }
    attn_job j = { a, q, qs, out, os, c->attn_scratch, per };
    cpu_pool_run(c->pool, attn_task, &j);
    return HEARTH_OK;
}
