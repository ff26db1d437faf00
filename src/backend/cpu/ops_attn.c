/* ops_attn.c — CPU attention straight from the KV cache, and the cache stores.
 *
 * Two implementations of cpu_attention:
 * - SIMD (AVX2 / AVX-512, ops_attn_kern.h via cpu_vec_get): blocked flash-style attention.
 *   Work items are (block of up to ~256/G consecutive tokens of one sequence, KV head);
 *   each walks the cache in tiles whose K/V rows are converted to f32 once for all the
 *   block's tokens and the G query heads of the KV head. When a call has few items (decode),
 *   each item's cells are also cut into fixed chunks of ATTN_CHUNK cells computed in
 *   parallel and merged here in cell order.
 * - scalar (HEARTH_CPU_ISA=scalar, the reference the SIMD path is tested against): scores
 *   directly against the cached rows, (block, head) items.
 * Both: the cache is never copied per token; items are claimed dynamically by the pool's
 * threads but each item is computed the same way whoever runs it, and the item split
 * depends only on the batch, so results do not depend on the thread count.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/ops_vec.h"

const cpu_vec *cpu_vec_get(void) {
#if defined(__x86_64__)
    int lv = cpu_isa_level();
    if (lv >= CPU_ISA_AVX512) return &cpu_vec_avx512;
    if (lv >= CPU_ISA_AVX2) return &cpu_vec_avx2;
#endif
    return NULL;
}

/* f16 -> f32 lookup table (immutable once built; 256 KiB). */
static float k_f16_tab[65536];
static pthread_once_t k_f16_once = PTHREAD_ONCE_INIT;

static void f16_tab_init(void) {
    for (uint32_t i = 0; i < 65536; i++) k_f16_tab[i] = hb_f16_to_f32((uint16_t)i);
}

void cpu_kv_store(be_ctx *b, const be_kv_layer *kv, const float *k, int64_t ks, const float *v,
                  int64_t vs, int64_t n_tok, const int32_t *pos, const int32_t *seq) {
    (void)b;
    const cpu_vec *vx = kv->type == QT_F16 ? cpu_vec_get() : NULL;
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
            if (vx) { /* rows are 2-byte aligned: row_bytes = 2 * kv_dim, malloc'd base */
                vx->f32_to_f16(kr, (uint16_t *)(void *)kd, kv->kv_dim);
                vx->f32_to_f16(vr, (uint16_t *)(void *)vd, kv->kv_dim);
                break;
            }
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

/* Splits the batch into runs of consecutive tokens of one sequence, at most bq long. */
static int64_t make_blocks(const be_attn *a, attn_block *blocks, int32_t bq, int64_t *max_span) {
    int64_t nb = 0;
    *max_span = 1;
    for (int32_t t = 0; t < a->n_tok; t++) {
        attn_block *b = nb ? &blocks[nb - 1] : NULL;
        if (b && b->n < bq && a->seq[t] == a->seq[b->t0] && a->pos[t] == a->pos[t - 1] + 1) {
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

static int grow_blocks(cpu_be *c, int64_t n) {
    if ((size_t)n <= c->blocks_cap) return HEARTH_OK;
    attn_block *nb = hb_malloc_n((size_t)n, sizeof *nb);
    if (!nb) return HEARTH_E_NOMEM;
    free(c->blocks);
    c->blocks = nb;
    c->blocks_cap = (size_t)n;
    return HEARTH_OK;
}

static int grow_floats(float **buf, size_t *cap, size_t need) {
    if (need <= *cap) return HEARTH_OK;
    float *nb = hb_malloc_n(need, sizeof(float));
    if (!nb) return HEARTH_E_NOMEM;
    free(*buf);
    *buf = nb;
    *cap = need;
    return HEARTH_OK;
}

static int attn_scalar(cpu_be *c, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    pthread_once(&k_f16_once, f16_tab_init);
    int nth = cpu_pool_n_threads(c->pool);
    if (grow_blocks(c, a->n_tok)) return HEARTH_E_NOMEM;
    attn_block *blocks = c->blocks;
    int64_t max_span;
    int64_t n_blocks = make_blocks(a, blocks, ATTN_BQ, &max_span);
    int64_t hd = a->head_dim_k > a->head_dim_v ? a->head_dim_k : a->head_dim_v;
    size_t per = (size_t)ATTN_BQ * (size_t)max_span + (size_t)hd + (size_t)ATTN_BQ * (size_t)a->head_dim_v;
    size_t need = per * (size_t)nth;
    if (grow_floats(&c->attn_scratch, &c->attn_cap, need)) return HEARTH_E_NOMEM;
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

/* ---- SIMD path ------------------------------------------------------------------------- */

/* Query rows an item aims for (block tokens x G heads): enough to reuse each converted K/V
 * tile many times, few enough that the item's buffers stay in L2 (~250 KB at head_dim 64). */
#define ATTN_ROWS 256
#define ATTN_BQ_MAX 64
/* A call with fewer (block, KV head) items than this (decode: one token per sequence) cuts
 * each item's cells into chunks of ATTN_CHUNK so both threads get work. The rule depends
 * only on the batch, never on the thread count. */
#define ATTN_SPLIT_ITEMS 8
#define ATTN_CHUNK 512
/* Below this many multiply-adds a SIMD attention call runs on the calling thread. */
#define ATTN_VEC_INLINE_WORK (1 << 18)

typedef struct vec_job {
    const cpu_vec *vx;
    const attn_geom *g;
    const attn_work *items;
    int64_t n_items;
    float *scratch;
    size_t per_thread;
    atomic_llong next;
} vec_job;

static void vec_task(void *ctx, int ith, int nth) {
    (void)nth;
    vec_job *j = ctx;
    float *sc = j->scratch + (size_t)ith * j->per_thread;
    for (;;) {
        long long i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_items) break;
        j->vx->attn(j->g, &j->items[i], sc);
    }
}

/* Chunked items of one (block, KV head) -> out: per row, the chunks' (m, l, o) combined in
 * cell order. */
static void vec_merge(const attn_geom *g, const attn_work *w, int64_t n_chunks) {
    int64_t R = (int64_t)w->n * g->G, rp = attn_rpad(R), dv = g->a->head_dim_v;
    for (int64_t r = 0; r < R; r++) {
        int64_t t = w->t0 + r / g->G, h = (int64_t)w->hk * g->G + r % g->G;
        float *out = g->out + t * g->os + h * dv, mx = -INFINITY, l = 0.0f;
        for (int64_t k = 0; k < n_chunks; k++) mx = fmaxf(mx, w[k].part[r]);
        memset(out, 0, (size_t)dv * sizeof(float));
        for (int64_t k = 0; k < n_chunks; k++) {
            const float *pm = w[k].part, *po = pm + 2 * rp + r * g->dvp;
            if (pm[r] == -INFINITY) continue; /* no visible cell in this chunk */
            float f = expf(pm[r] - mx);
            l += pm[rp + r] * f;
            for (int64_t d = 0; d < dv; d++) out[d] += f * po[d];
        }
        float inv = 1.0f / l;
        for (int64_t d = 0; d < dv; d++) out[d] *= inv;
    }
}

static int attn_vec(cpu_be *c, const cpu_vec *vx, const be_attn *a, const float *q, int64_t qs, float *out,
                    int64_t os) {
    int32_t G = a->n_head / a->n_head_kv, bq = ATTN_ROWS / G;
    bq = bq < 1 ? 1 : bq > ATTN_BQ_MAX ? ATTN_BQ_MAX : bq;
    if (grow_blocks(c, a->n_tok)) return HEARTH_E_NOMEM;
    attn_block *blocks = c->blocks;
    int64_t max_span, n_blocks = make_blocks(a, blocks, bq, &max_span), n_items = 0;
    bool split = n_blocks * a->n_head_kv < ATTN_SPLIT_ITEMS;
    for (int64_t i = 0; i < n_blocks; i++) {
        int64_t lo = first_visible(a, a->pos[blocks[i].t0]), hi = a->pos[blocks[i].t0 + blocks[i].n - 1];
        n_items += (split ? hi / ATTN_CHUNK - lo / ATTN_CHUNK + 1 : 1) * a->n_head_kv;
    }
    int64_t dvp = (a->head_dim_v + ATTN_DALIGN - 1) / ATTN_DALIGN * ATTN_DALIGN;
    int64_t rp_max = attn_rpad((int64_t)bq * G), part_floats = rp_max * (2 + dvp);
    if ((size_t)n_items * sizeof(attn_work) > c->work_cap) {
        void *nw = hb_malloc_n((size_t)n_items, sizeof(attn_work));
        if (!nw) return HEARTH_E_NOMEM;
        free(c->work);
        c->work = nw;
        c->work_cap = (size_t)n_items * sizeof(attn_work);
    }
    if (split && grow_floats(&c->attn_part, &c->part_cap, (size_t)(n_items * part_floats))) return HEARTH_E_NOMEM;
    int nth = cpu_pool_n_threads(c->pool);
    size_t per = attn_scratch_floats(rp_max, a->head_dim_k, dvp);
    if (grow_floats(&c->attn_scratch, &c->attn_cap, per * (size_t)nth)) return HEARTH_E_NOMEM;
    /* items: later blocks (more cells) first so the dynamic claim balances causal work */
    attn_work *items = c->work;
    int64_t k = 0, work = 0;
    for (int64_t i = n_blocks - 1; i >= 0; i--) {
        const attn_block *bl = &blocks[i];
        int64_t lo = first_visible(a, a->pos[bl->t0]), hi = a->pos[bl->t0 + bl->n - 1];
        work += attn_rpad((int64_t)bl->n * G) * (hi - lo + 1) * (a->head_dim_k + a->head_dim_v) * a->n_head_kv;
        for (int32_t hk = 0; hk < a->n_head_kv; hk++) {
            if (!split) {
                items[k++] = (attn_work){ bl->t0, bl->n, hk, lo, hi + 1, NULL };
                continue;
            }
            for (int64_t ch = lo / ATTN_CHUNK; ch <= hi / ATTN_CHUNK; ch++, k++) {
                int64_t ca = ch * ATTN_CHUNK > lo ? ch * ATTN_CHUNK : lo, cb = (ch + 1) * ATTN_CHUNK;
                items[k] = (attn_work){ bl->t0, bl->n, hk, ca, cb < hi + 1 ? cb : hi + 1, c->attn_part + k * part_floats };
            }
        }
    }
    attn_geom g = { a, q, qs, out, os, G, (int32_t)dvp };
    vec_job j = { .vx = vx, .g = &g, .items = items, .n_items = n_items, .scratch = c->attn_scratch, .per_thread = per };
    atomic_init(&j.next, 0);
    if (work < ATTN_VEC_INLINE_WORK || nth == 1) vec_task(&j, 0, 1);
    else cpu_pool_run(c->pool, vec_task, &j);
    for (int64_t i = 0; split && i < n_items;) { /* chunks of one (block, head) are adjacent */
        int64_t e = i + 1;
        while (e < n_items && items[e].t0 == items[i].t0 && items[e].hk == items[i].hk) e++;
        vec_merge(&g, &items[i], e - i);
        i = e;
    }
    return HEARTH_OK;
}

int cpu_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    cpu_be *c = b->impl;
    const cpu_vec *vx = cpu_vec_get();
    if (vx) return attn_vec(c, vx, a, q, qs, out, os);
    return attn_scalar(c, a, q, qs, out, os);
}
