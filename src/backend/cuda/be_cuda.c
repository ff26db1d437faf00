/* be_cuda.c — the be_ops table (src/backend/backend.h) on an NVIDIA GPU, over the kernels
 * of cuda.h. The forward pass and the engine run unchanged: activation buffers are device
 * memory, and everything the interface hands over as host data is mirrored on the device:
 *  - weights (be_weight) and the model's small float arrays (norm weights, biases, RoPE
 *    factors) are uploaded once, on first use, and kept for the life of the backend;
 *  - the KV cache lives in device memory shadowing the engine's host cache by address; a
 *    layer's shadow grows to the highest (sequence, position) cell stored.
 * Ops are not run when called: they are recorded (cb_push; the op and state types are in
 * be_cuda_int.h) and run at the next read, after be_cuda_fuse.c has rewritten the step into
 * fewer fused ops; a step seen before is replayed as one CUDA graph (no launch gaps).
 * Failures found while recording are returned by the op (or, for void ops, by the next op
 * that returns a status); failures while running poison the read (NaN) and stick.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/be_cuda.h"
#include "backend/cuda/be_cuda_int.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_mvf.h"
#include "backend/cuda/cuda_mvr.h"

static cuda_be *cb(be_ctx *b) {
    return (cuda_be *)b->impl;
}

static int cb_status(cuda_be *c) {
    return c->err.code;
}

/* The entry of host, or NULL. A decode step looks up its weights, norms and KV in the same
 * order every time, so the search starts after the previous hit and almost always ends at
 * once (from the start, ~300 entries per layer's worth of lookups cost tens of us per step). */
static cb_map *cb_find(cuda_be *c, const void *host) {
    size_t n = c->n_map, h = c->map_hint < n ? c->map_hint : 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = h + j < n ? h + j : h + j - n;
        if (c->map[i].host == host) {
            c->map_hint = i + 1;
            return &c->map[i];
        }
    }
    return NULL;
}

/* Registers dev (bytes) as the device copy of host: owned from now on, unless the caller
 * marks the entry borrowed (the model's shared store owns it then). */
static cb_map *cb_register(cuda_be *c, const void *host, void *dev, size_t bytes, hb_err *err) {
    if (c->n_map == c->cap_map) {
        size_t cap = c->cap_map ? 2 * c->cap_map : 64;
        cb_map *nm = realloc(c->map, cap * sizeof *nm);
        if (!nm) {
            hb_fail(err, HEARTH_E_NOMEM, "out of memory");
            return NULL;
        }
        c->map = nm;
        c->cap_map = cap;
    }
    cb_map *e = &c->map[c->n_map++];
    memset(e, 0, sizeof *e);
    e->host = host;
    e->dev = dev;
    e->bytes = bytes;
    return e;
}

/* Allocates and registers a device copy of `bytes` for host (contents not set). */
static cb_map *cb_add(cuda_be *c, const void *host, size_t bytes, hb_err *err) {
    void *dev = NULL;
    if (cuda_alloc(c->cu, &dev, bytes, err)) return NULL;
    cb_map *e = cb_register(c, host, dev, bytes, err);
    if (!e) cuda_free(c->cu, dev);
    return e;
}

/* Device copy of an immutable host float array of n floats (NULL stays NULL). */
static const float *cb_floats(cuda_be *c, const float *host, int64_t n) {
    if (!host || c->err.code) return NULL;
    cb_map *e = cb_find(c, host);
    if (e) return e->dev;
    e = cb_add(c, host, (size_t)n * sizeof(float), &c->err);
    if (!e || cuda_upload(c->cu, e->dev, host, e->bytes, &c->err)) return NULL;
    return e->dev;
}

static const cuda_weight *cb_weight(cuda_be *c, const be_weight *w, hb_err *err) {
    cb_map *e = cb_find(c, w->host.data);
    if (e) return &e->w;
    size_t bytes = w->host.row_bytes * (size_t)w->host.n_rows;
    if (!cuda_type_supported(w->host.type)) {
        hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: weight type %s is not supported", quant_type_name(w->host.type));
        return NULL;
    }
    const uint8_t *h = w->host.data;
    if (c->store && h >= c->share_lo && h + bytes <= c->share_hi) { /* the model's mapping: shared */
        void *dev = cb_store_get(c, h, bytes, err);
        if (!dev) return NULL;
        if (!(e = cb_register(c, h, dev, bytes, err))) {
            cb_store_put(c, h, bytes);
            return NULL;
        }
        e->borrowed = true;
    } else {
        if (!(e = cb_add(c, w->host.data, bytes, err))) return NULL;
        if (cuda_upload(c->cu, e->dev, w->host.data, bytes, err)) return NULL;
    }
    memset(&e->w, 0, sizeof e->w);
    e->w.type = w->host.type, e->w.n_rows = w->host.n_rows, e->w.n_cols = w->host.n_cols;
    e->w.row_bytes = w->host.row_bytes, e->w.data = e->dev;
    return &e->w;
}

/* Device KV for a layer, grown to hold rows [0, rows); contents are kept across growth. */
static int cb_kv(cuda_be *c, const be_kv_layer *kv, int64_t rows, cuda_kv *out) {
    cb_map *ek = cb_find(c, kv->k), *ev = cb_find(c, kv->v);
    size_t need = (size_t)rows * kv->row_bytes;
    if (!ek || ek->bytes < need) {
        size_t bytes = need < ((size_t)kv->n_ctx * kv->row_bytes) ? (size_t)kv->n_ctx * kv->row_bytes : need;
        void *nk = NULL, *nv = NULL;
        if (cuda_alloc(c->cu, &nk, bytes, &c->err) || cuda_alloc(c->cu, &nv, bytes, &c->err)) {
            cuda_free(c->cu, nk);
            return c->err.code;
        }
        if (ek) {
            cuda_copy(c->cu, nk, ek->dev, ek->bytes, &c->err);
            cuda_copy(c->cu, nv, ev->dev, ev->bytes, &c->err);
            cuda_sync(c->cu, &c->err);
            cuda_free(c->cu, ek->dev);
            cuda_free(c->cu, ev->dev);
            ek->dev = nk, ek->bytes = bytes, ev->dev = nv, ev->bytes = bytes;
        } else {
            if (!cb_register(c, kv->k, nk, bytes, &c->err)) {
                cuda_free(c->cu, nk), cuda_free(c->cu, nv);
                return c->err.code;
            }
            if (!cb_register(c, kv->v, nv, bytes, &c->err)) {
                cuda_free(c->cu, nv);
                return c->err.code;
            }
            ek = cb_find(c, kv->k), ev = cb_find(c, kv->v);
        }
    }
    memset(out, 0, sizeof *out); /* padding too: recorded ops are compared bytewise */
    out->k = ek->dev, out->v = ev->dev, out->type = kv->type, out->kv_dim = kv->kv_dim;
    out->row_bytes = kv->row_bytes, out->n_ctx = kv->n_ctx;
    return c->err.code;
}

/* ---- recording -------------------------------------------------------------------------- */

static cb_cmd *cb_push(cuda_be *c, int kind) {
    if (c->err.code) return NULL;
    if (c->n_cmd == c->cap_cmd) {
        size_t cap = c->cap_cmd ? 2 * c->cap_cmd : 1024;
        cb_cmd *nc = realloc(c->cmd, cap * sizeof *nc);
        if (!nc) {
            hb_fail(&c->err, HEARTH_E_NOMEM, "out of memory recording GPU work");
            return NULL;
        }
        c->cmd = nc;
        c->cap_cmd = cap;
    }
    cb_cmd *k = &c->cmd[c->n_cmd++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->off[0] = k->off[1] = -1;
    return k;
}

/* Copies n host ints into the step's arena and returns their offset (an identical array
 * already there is reused). The arena grows by reallocation, which retires every graph. */
static int64_t cb_arena(cuda_be *c, const int32_t *host, int64_t n) {
    if (c->arena_used == 0 && c->arena_pending) { /* last step's upload may not have run yet */
        cuda_sync(c->cu, &c->err);
        c->arena_pending = false;
    }
    for (int i = 0; i < c->n_dedup; i++)
        if (c->dedup[i].host == host && c->dedup[i].n == n &&
            memcmp(c->arena_host + c->dedup[i].off, host, (size_t)n * sizeof *host) == 0)
            return c->dedup[i].off;
    if (c->arena_used + n > c->arena_cap) {
        int64_t cap = c->arena_cap ? 2 * c->arena_cap : 65536;
        while (cap < c->arena_used + n) cap *= 2;
        void *nh = NULL, *nd = NULL;
        if (cuda_host_alloc((size_t)cap * 4, &nh, &c->err) || cuda_alloc(c->cu, &nd, (size_t)cap * 4, &c->err)) {
            cuda_host_free(nh);
            return -1;
        }
        if (c->arena_used) memcpy(nh, c->arena_host, (size_t)c->arena_used * 4);
        cuda_sync(c->cu, &c->err); /* graphs may still read the old arena */
        cuda_host_free(c->arena_host);
        cuda_free(c->cu, c->arena_dev);
        c->arena_host = nh, c->arena_dev = nd, c->arena_cap = cap;
        c->arena_sent = 0; /* the new device arena holds nothing yet */
    }
    int64_t off = c->arena_used;
    memcpy(c->arena_host + off, host, (size_t)n * sizeof *host);
    c->arena_used += n;
    if (c->n_dedup < CB_DEDUP) c->dedup[c->n_dedup].host = host, c->dedup[c->n_dedup].n = n, c->dedup[c->n_dedup++].off = off;
    return off;
}

/* ---- running ----------------------------------------------------------------------------- */

/* A product with an RMSNorm (flag 2) and/or a GLU (flag 4; 8: GELU, 16: the gate is the
 * second weight) folded in by cb_fold. */
static int cb_exec_folded(cuda_ctx *cu, const cb_cmd *k, hb_err *err) {
    bool nrm = (k->flag & 2) != 0;
    const float *x = nrm ? k->px[0] : k->p[0];
    int64_t xs = nrm ? k->n[2] : k->w.n_cols;
    float *ny = nrm ? (float *)k->p[0] : NULL;
    const float *nw = nrm ? k->p[2] : NULL;
    float *y = (float *)k->p[1];
    if (k->flag & 4) {
        bool sw = (k->flag & 16) != 0;
        const cuda_weight *wg = sw ? &k->wx[0] : &k->w, *wu = sw ? &k->w : &k->wx[0];
        float *yg = sw ? (float *)k->yx[0] : y, *yu = sw ? y : (float *)k->yx[0];
        int64_t lg = sw ? k->ldyx[0] : k->n[1], lu = sw ? k->n[1] : k->ldyx[0];
        return cuda_matmul_glu(cu, wg, wu, yg, lg, yu, lu, (float *)k->px[1], (k->flag & 8) != 0, x, xs, k->n[0], nw,
                               k->f[0], ny, err);
    }
    const cuda_weight *ws[3] = { &k->w, &k->wx[0], &k->wx[1] };
    float *ys[3] = { y, (float *)k->yx[0], (float *)k->yx[1] };
    float *adds[3] = { (float *)k->p[3], (float *)k->addx[0], (float *)k->addx[1] };
    int64_t ldys[3] = { k->n[1], k->ldyx[0], k->ldyx[1] };
    return cuda_matmul_pro(cu, 1 + (int)k->n_multi, ws, ys, ldys, adds, x, xs, k->n[0], nw, k->f[0], ny, err);
}

/* A float product with a folded norm (flag 32) or GLU (flag 64): see cb_mvf_rules. */
static int cb_exec_mvf(cuda_be *c, const cb_cmd *k, hb_err *err) {
    cuda_mvf_call m;
    memset(&m, 0, sizeof m);
    m.n = 1 + (int)k->n_multi;
    m.w[0] = &k->w, m.y[0] = (float *)k->p[1], m.ldy[0] = k->n[1], m.add_to[0] = (float *)k->p[3];
    for (int i = 1; i < m.n; i++)
        m.w[i] = &k->wx[i - 1], m.y[i] = (float *)k->yx[i - 1], m.ldy[i] = k->ldyx[i - 1],
        m.add_to[i] = (float *)k->addx[i - 1];
    m.x = k->p[0], m.x_stride = (k->flag & 32) ? k->n[2] : k->w.n_cols, m.n_tok = k->n[0];
    if (k->flag & 32) m.norm = 1, m.norm_w = k->p[2], m.eps = k->f[0], m.norm_y = (float *)k->p[4], m.norm_ys = k->n[3];
    if (k->flag & 64) m.glu = (k->flag & 128) ? 2 : 1, m.glu_out = (float *)k->yx[1], m.glu_os = k->ldyx[1];
    return cuda_mvf(c->cu, &m, err);
}

/* The attention op that a CB_MM_QKVA product runs (the next op that is not a NOP), with
 * the run-time pointers filled in. */
static const cb_cmd *cb_qkva_attn(const cuda_be *c, const cb_cmd *k, cuda_attn *at) {
    size_t j = (size_t)(k - c->cmd) + 1;
    while (j < c->n_cmd && c->cmd[j].kind == CK_NOP) j++;
    if (j >= c->n_cmd || c->cmd[j].kind != CK_ATTN || !(c->cmd[j].flag & CB_AT_BY_QKVA)) return NULL;
    const cb_cmd *a = &c->cmd[j];
    *at = a->at;
    at->kv = &a->kv, at->pos = c->arena_dev + a->off[0], at->seq = c->arena_dev + a->off[1];
    return a;
}

/* A q/k/v product that rotates q/k and stores the KV cell itself (CB_MM_QKVR, cb_fuse_qkvr);
 * a norm folded in by cb_fold (flag 2) runs first as its own kernel, or with
 * HEARTH_CUDA_QKVR_NORM=1 in the product's blocks (cuda_qkvr.norm_x) where it fits: the
 * same bits either way, but 640 blocks re-reading the same 8 KB row measured slower than
 * the 16-block norm kernel (Q4_0 tg128 1617 -> 1558 on an H200). */
static int cb_exec_qkvr(cuda_be *c, const cb_cmd *k, hb_err *err) {
    int rc, reuse = k->flag & 1;
    cuda_qkvr q;
    memset(&q, 0, sizeof q);
    bool qa = (k->flag & CB_MM_QKVA) != 0;
    if ((k->flag & 2) && c->qkvr_norm && !qa &&
        cuda_qkvr_norm_ok(k->n[0], k->w.n_cols, k->px[0], k->n[2], k->p[2])) {
        q.norm_x = k->px[0], q.norm_xs = k->n[2], q.norm_w = k->p[2], q.eps = k->f[0];
    } else if (k->flag & 2) {
        if ((rc = cuda_rmsnorm_q8(c->cu, k->px[0], k->n[2], (float *)k->p[0], k->n[0], k->w.n_cols, k->p[2], k->f[0],
                                  err)))
            return rc;
        reuse = 1;
    }
    q.pos = c->arena_dev + k->off[0];
    q.seq = (k->flag & CB_MM_QKVR_KV) ? c->arena_dev + k->off[1] : NULL;
    q.rope = &k->rope, q.head_dim = (int32_t)k->n[5], q.kv = (k->flag & CB_MM_QKVR_KV) ? &k->kv : NULL;
    for (int i = 0; i < 3; i++) q.role[i] = (int)((k->n[7] >> (2 * i)) & 3);
    const cuda_weight *ws[3] = { &k->w, &k->wx[0], &k->wx[1] };
    float *ys[3] = { (float *)k->p[1], (float *)k->yx[0], (float *)k->yx[1] };
    int64_t ldys[3] = { k->n[1], k->ldyx[0], k->ldyx[1] };
    if (qa) { /* with the attention after it (cb_qkva_rule) */
        cuda_attn at;
        const cb_cmd *a = cb_qkva_attn(c, k, &at);
        if (!a) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: fused q/k/v product without its attention");
        return cuda_matmul_qkva(c->cu, ws, ys, k->p[0], reuse, &q, &at, (float *)a->p[1], a->n[1], a->flag & 1, err);
    }
    return cuda_matmul_qkvr(c->cu, 1 + (int)k->n_multi, ws, ys, ldys, k->p[0], k->n[0], reuse, &q, err);
}

/* A fused RoPE + KV store + attention op of the default rule (CB_AT_DEC_ONLY): the
 * one-block-per-head kernel when the shape and position bucket suit it, else the three
 * separate steps (q and k are rotated in place: cb_fuse_attn made sure nothing reads them
 * later). pos/seq: the step's position and sequence arrays. */
static int cb_attn_dec_or_split(cuda_ctx *cu, const cb_cmd *k, const cuda_attn *at, float *y, const int32_t *pos,
                                const int32_t *seq, hb_err *err) {
    int done = 0, quant = k->flag & 1, rc;
    float *q = (float *)k->p[0], *kk = (float *)k->p[2];
    int64_t qs = k->n[0], ks = k->n[2], os = k->n[1];
    int32_t hd = at->head_dim_k;
    rc = cuda_rope_kv_attention_dec(cu, at, &k->rope, q, qs, kk, ks, k->p[4], k->n[4], y, os, quant, &done, err);
    if (rc || done) return rc;
    if ((rc = cuda_rope_apply2(cu, q, qs, at->n_head, kk, ks, at->n_head_kv, at->n_tok, hd, pos, &k->rope, err)) ||
        (rc = cuda_kv_store(cu, at->kv, kk, ks, k->p[4], k->n[4], at->n_tok, pos, seq, err)))
        return rc;
    return quant ? cuda_attention_q8(cu, at, q, qs, y, os, err) : cuda_attention(cu, at, q, qs, y, os, err);
}

static int cb_exec(cuda_be *c, const cb_cmd *k, hb_err *err) {
    cuda_ctx *cu = c->cu;
    const int32_t *a0 = k->off[0] >= 0 ? c->arena_dev + k->off[0] : NULL;
    const int32_t *a1 = k->off[1] >= 0 ? c->arena_dev + k->off[1] : NULL;
    float *y = (float *)k->p[1];
    switch (k->kind) {
    case CK_GET_ROWS:
        return cuda_get_rows_dev(cu, &k->w, a0, k->n[0], y, err);
    case CK_MATMUL: {
        if (k->flag & CB_MM_QKVR) return cb_exec_qkvr(c, k, err);
        if (k->flag & 6) return cb_exec_folded(cu, k, err);
        if (k->flag & (32 | 64)) return cb_exec_mvf(c, k, err);
        if (k->n_multi) {
            const cuda_weight *ws[3] = { &k->w, &k->wx[0], &k->wx[1] };
            float *ys[3] = { y, (float *)k->yx[0], (float *)k->yx[1] };
            float *adds[3] = { (float *)k->p[3], (float *)k->addx[0], (float *)k->addx[1] };
            int64_t ldys[3] = { k->n[1], k->ldyx[0], k->ldyx[1] };
            return cuda_matmul_multi(cu, 1 + (int)k->n_multi, ws, ys, ldys, adds, k->p[0], k->n[0], k->flag & 1, err);
        }
        cuda_mm_opt opt = { (k->flag & CB_MM_ACT2) ? 2 : k->flag & 1, (float *)k->p[3],
                            (k->flag & CB_MM_EARLY_ADD) != 0 };
        return cuda_matmul_ex(cu, &k->w, k->p[0], k->n[0], y, k->n[1], &opt, err);
    }
    case CK_RMSNORM:
        if (k->flag == 2) return cuda_mvf_rmsnorm(cu, k->p[0], k->n[0], y, k->n[1], k->n[2], k->n[3], k->p[2], k->f[0], err);
        if (k->flag) return cuda_rmsnorm_q8(cu, k->p[0], k->n[0], y, k->n[2], k->n[3], k->p[2], k->f[0], err);
        return cuda_rmsnorm(cu, k->p[0], k->n[0], y, k->n[1], k->n[2], k->n[3], k->p[2], k->f[0], err);
    case CK_NOP:
        return HEARTH_OK;
    case CK_ROPE: /* p[2]/n[4]/n[5]: a second tensor fused in by cb_fuse; flag 4: and the KV store */
        if (k->flag & 4)
            return cuda_rope_kv(cu, y, k->n[1], (int32_t)k->n[2], (float *)k->p[2], k->n[4], (int32_t)k->n[5], k->n[0],
                                (int32_t)k->n[3], a0, &k->rope, &k->kv, k->p[0], k->n[6], a1, err);
        return cuda_rope_apply2(cu, y, k->n[1], (int32_t)k->n[2], (float *)k->p[2], k->n[4], (int32_t)k->n[5], k->n[0],
                                (int32_t)k->n[3], a0, &k->rope, err);
    case CK_KV_STORE:
        return cuda_kv_store(cu, &k->kv, k->p[0], k->n[0], k->p[2], k->n[1], k->n[2], a0, a1, err);
    case CK_ATTN: {
        cuda_attn at = k->at;
        at.kv = &k->kv, at.pos = a0, at.seq = a1;
        if (k->flag & CB_AT_BY_QKVA) return HEARTH_OK; /* the q/k/v product before it ran it */
        if (k->flag & CB_AT_DEC_ONLY) return cb_attn_dec_or_split(cu, k, &at, y, a0, a1, err);
        if (k->flag & 2)
            return cuda_rope_kv_attention(cu, &at, &k->rope, k->p[0], k->n[0], k->p[2], k->n[2], k->p[4], k->n[4], y,
                                          k->n[1], k->flag & 1, err);
        if (k->flag & 1) return cuda_attention_q8(cu, &at, k->p[0], k->n[0], y, k->n[1], err);
        return cuda_attention(cu, &at, k->p[0], k->n[0], y, k->n[1], err);
    }
    case CK_COPY_ROWS:
        return cuda_copy_rows(cu, k->p[0], k->n[0], y, k->n[1], k->n[2], k->n[3], k->p[2], err);
    case CK_ADD:
        return cuda_add(cu, y, k->p[0], k->n[0], err);
    case CK_SCALE:
        return cuda_scale(cu, y, k->n[0], k->f[0], err);
    case CK_SOFTCAP:
        return cuda_softcap(cu, y, k->n[0], k->f[0], err);
    case CK_GLU:
        if (k->flag & 2)
            return cuda_glu_q8(cu, k->flag & 1, k->p[0], k->n[0], k->p[2], k->n[1], y, k->n[3], k->n[4], err);
        return cuda_glu(cu, k->flag, k->p[0], k->n[0], k->p[2], k->n[1], y, k->n[2], k->n[3], k->n[4], err);
    case CK_KV_COPY: {
        size_t bytes = (size_t)k->n[2] * k->kv.row_bytes, d = (size_t)k->n[0] * k->kv.row_bytes;
        size_t s = (size_t)k->n[1] * k->kv.row_bytes;
        int rc = cuda_copy(cu, (uint8_t *)k->kv.k + d, (const uint8_t *)k->kv.k + s, bytes, err);
        return rc ? rc : cuda_copy(cu, (uint8_t *)k->kv.v + d, (const uint8_t *)k->kv.v + s, bytes, err);
    }
    }
    return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unknown recorded op %d", k->kind);
}

/* HEARTH_CUDA_PROFILE: the table row of command k ("matmul gu f16 x8": kind, the product's
 * HEARTH_CUDA_DROP class, weight type, tokens), added when new; NULL when out of memory. */
static struct cb_prof *cb_prof_row(cuda_be *c, const cb_cmd *k) {
    static const char *const kinds[] = { "get_rows", "matmul", "rmsnorm", "rope", "kv_store", "attention",
                                         "copy_rows", "add", "scale", "softcap", "glu", "kv_copy", "nop" };
    static const char *const cls[] = { "attn", "qkv", "o", "gu", "down", "out", "norm" };
    char label[40];
    int cl = cb_drop_class(k), ci = 0;
    while (cl > 1 && ci < 6) cl >>= 1, ci++;
    const char *kn = k->kind >= 0 && k->kind <= CK_NOP ? kinds[k->kind] : "?";
    if (k->kind == CK_MATMUL)
        snprintf(label, sizeof label, "%s %s %s x%lld", kn, cls[ci], quant_type_name(k->w.type), (long long)k->n[0]);
    else if (k->kind == CK_ATTN)
        snprintf(label, sizeof label, "%s%s x%d", kn, k->flag & 2 ? "+rope+store" : "", k->at.n_tok);
    else
        snprintf(label, sizeof label, "%s", kn);
    for (int i = 0; i < c->n_prof; i++)
        if (!strcmp(c->prof[i].label, label)) return &c->prof[i];
    if (c->n_prof == c->cap_prof) {
        int cap = c->cap_prof ? 2 * c->cap_prof : 32;
        struct cb_prof *np = realloc(c->prof, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        c->prof = np, c->cap_prof = cap;
    }
    struct cb_prof *r = &c->prof[c->n_prof++];
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    return r;
}

/* Runs the commands op by op with a timing event between each two, and adds each op's
 * time to its row (the stream is filled faster than the GPU drains it for all but the
 * shortest ops, so an op's time is mostly its own; launch gaps count to the op after). */
static int cb_exec_prof(cuda_be *c, hb_err *err) {
    int rc = cuda_prof_mark(c->cu, 0, err);
    size_t n = c->n_cmd < CUDA_PROF_EVENTS - 1 ? c->n_cmd : CUDA_PROF_EVENTS - 1;
    for (size_t i = 0; i < c->n_cmd && !rc; i++) {
        rc = cb_exec(c, &c->cmd[i], err);
        if (!rc && i < n) rc = cuda_prof_mark(c->cu, (int)i + 1, err);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        float ms = 0.0f;
        struct cb_prof *r = c->cmd[i].kind == CK_NOP ? NULL : cb_prof_row(c, &c->cmd[i]);
        if (r && !(rc = cuda_prof_ms(c->cu, (int)i, (int)i + 1, &ms, err))) r->ms += ms, r->n++;
    }
    return rc;
}

static int cb_exec_all(cuda_be *c, hb_err *err) {
    if (c->kn.profile) return cb_exec_prof(c, err);
    for (size_t i = 0; i < c->n_cmd; i++) {
        int rc = cb_exec(c, &c->cmd[i], err);
        if (rc) return rc;
    }
    return HEARTH_OK;
}

static uint64_t cb_signature(const cuda_be *c) {
    /* FNV-1a over 64-bit words in four interleaved lanes (one chain of dependent
     * multiplies over a step's ~150 KB of commands is slow), folded at the end. */
    const uint64_t prime = 1099511628211ull;
    uint64_t h[4] = { 1469598103934665603ull, 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull };
    const uint64_t *p = (const uint64_t *)(const void *)c->cmd;
    size_t n = c->n_cmd * (sizeof *c->cmd / 8), i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) h[l] = (h[l] ^ p[i + l]) * prime;
    for (; i < n; i++) h[0] = (h[0] ^ p[i]) * prime;
    uint64_t r = h[0];
    for (int l = 1; l < 4; l++) r = ((r << 29 | r >> 35) ^ h[l]) * prime;
    return r ^ ((uint64_t)(uintptr_t)c->arena_dev * 31 + (uint64_t)c->arena_used);
}

/* ---- the persistent decode kernel --------------------------------------------------------
 * A decode step (the fused op list, every op with at most 8 tokens) may run as one launch of
 * the persistent kernel (cu_mega.cu) instead of a graph of ~250 kernels. Leading embedding
 * lookups run as kernels first; any op the kernel refuses sends the whole step to the
 * graph path (and its signature is remembered so the refusal is not retried). */
static int cb_mega_rec(cuda_be *c, const cb_cmd *k) {
    cuda_mega *m = c->mega;
    const int32_t *a0 = k->off[0] >= 0 ? c->arena_dev + k->off[0] : NULL;
    const int32_t *a1 = k->off[1] >= 0 ? c->arena_dev + k->off[1] : NULL;
    float *y = (float *)k->p[1];
    switch (k->kind) {
    case CK_NOP:
        return HEARTH_OK;
    case CK_MATMUL: {
        if (k->flag & ~1) return HEARTH_E_UNSUPPORTED; /* folded forms (cb_fold) */
        const cuda_weight *ws[3] = { &k->w, &k->wx[0], &k->wx[1] };
        float *ys[3] = { y, (float *)k->yx[0], (float *)k->yx[1] };
        float *adds[3] = { (float *)k->p[3], (float *)k->addx[0], (float *)k->addx[1] };
        int64_t ldys[3] = { k->n[1], k->ldyx[0], k->ldyx[1] };
        return cuda_mega_matmul(m, 1 + (int)k->n_multi, ws, ys, ldys, adds, k->p[0], k->n[0], k->flag & 1);
    }
    case CK_RMSNORM:
        return cuda_mega_rmsnorm(m, k->p[0], k->n[0], y, k->flag ? k->n[3] : k->n[1], k->n[2], k->n[3], k->p[2], k->f[0],
                                 k->flag);
    case CK_ROPE: {
        int rc = cuda_mega_rope(m, y, k->n[1], (int32_t)k->n[2], (float *)k->p[2], k->n[4], (int32_t)k->n[5], k->n[0],
                                (int32_t)k->n[3], a0, &k->rope);
        if (rc || !(k->flag & 4)) return rc;
        return cuda_mega_kv_store(m, &k->kv, k->p[2], k->n[4], k->p[0], k->n[6], k->n[0], a0, a1);
    }
    case CK_KV_STORE:
        return cuda_mega_kv_store(m, &k->kv, k->p[0], k->n[0], k->p[2], k->n[1], k->n[2], a0, a1);
    case CK_ATTN: {
        cuda_attn at = k->at;
        at.kv = &k->kv, at.pos = a0, at.seq = a1;
        if (k->flag & 2) return HEARTH_E_UNSUPPORTED; /* fused decode attention: not in the program */
        return cuda_mega_attention(m, &at, k->p[0], k->n[0], y, k->n[1]);
    }
    case CK_COPY_ROWS:
        return cuda_mega_copy_rows(m, k->p[0], k->n[0], y, k->n[1], k->n[2], k->n[3], k->p[2]);
    case CK_ADD:
        return cuda_mega_eltwise(m, 0, y, k->p[0], k->n[0], 0.0f);
    case CK_SCALE:
        return cuda_mega_eltwise(m, 1, y, NULL, k->n[0], k->f[0]);
    case CK_SOFTCAP:
        return cuda_mega_eltwise(m, 2, y, NULL, k->n[0], k->f[0]);
    case CK_GLU:
        return cuda_mega_glu(m, k->flag & 1, k->p[0], k->n[0], k->p[2], k->n[1], y, (k->flag & 2) ? k->n[4] : k->n[2],
                             k->n[3], k->n[4], (k->flag & 2) != 0);
    }
    return HEARTH_E_UNSUPPORTED; /* embedding lookups after the start, KV copies */
}

/* Runs the step with the persistent kernel: 1 when it ran (rc in *rc), 0 when the step is
 * not for it (nothing was run). */
static int cb_mega_try(cuda_be *c, uint64_t sig, int *rc) {
    size_t first = 0;
    *rc = HEARTH_OK;
    for (int i = 0; i < (c->n_mega_no < CB_GRAPHS ? c->n_mega_no : CB_GRAPHS); i++)
        if (c->mega_no[i] == sig) return 0;
    while (first < c->n_cmd && (c->cmd[first].kind == CK_GET_ROWS || c->cmd[first].kind == CK_NOP)) first++;
    int launched = 0;
    hb_err *err = &c->err;
    for (size_t i = 0; i < first && !*rc; i++) *rc = cb_exec(c, &c->cmd[i], err);
    if (!*rc) *rc = cuda_mega_run_cached(c->mega, sig, &launched, err);
    if (*rc || launched) return 1;
    cuda_mega_begin(c->mega);
    int r = first < c->n_cmd ? HEARTH_OK : HEARTH_E_UNSUPPORTED;
    for (size_t i = first; i < c->n_cmd && !r; i++) r = cb_mega_rec(c, &c->cmd[i]);
    if (!r) {
        *rc = cuda_mega_end(c->mega, sig, err);
        return 1;
    }
    c->mega_no[c->n_mega_no++ % CB_GRAPHS] = sig;
    if (c->n_mega_no == 2 * CB_GRAPHS) c->n_mega_no = CB_GRAPHS; /* same slots, no overflow */
    if (first) { /* the embedding lookups already ran: run the rest op by op */
        for (size_t i = first; i < c->n_cmd && !*rc; i++) *rc = cb_exec(c, &c->cmd[i], err);
        return 1;
    }
    return 0;
}

/* The rewrite is a function of the recorded commands and of whether they are a segment
 * (cb_dead_after), nothing else, so a graph captured from the same recorded commands (raw:
 * their signature, with c->partial) can be launched without rewriting and signing them
 * again: that host work (~3 us for a step's first segment on the H200 machine) sits between
 * one step's logits and the next step's first kernel. Returns the launch's status, or -1
 * when no captured graph matches. */
static int cb_replay_raw(cuda_be *c, uint64_t raw, uint64_t gen) {
    for (int i = 0; i < CB_GRAPHS; i++) {
        cb_graph *e = &c->graphs[i];
        if (e->raw == raw && e->g && e->gen == gen && e->last_use) {
            e->last_use = ++c->clock;
            return cuda_graph_launch(c->cu, e->g, &c->err);
        }
    }
    return -1;
}

/* HEARTH_CUDA_STATS: where an eager segment first differs from the last one of as many
 * commands (what keeps a step from being replayed), and a copy of it for the next. */
static void cb_stat_eager(cuda_be *c) {
    int slot = -1;
    c->st_eager++;
    for (int i = 0; i < 4; i++)
        if (c->st_prev[i] && c->st_nprev[i] == c->n_cmd) slot = i;
    if (slot >= 0 && c->st_ndiff < 8) {
        for (size_t i = 0; i < c->n_cmd; i++) {
            const uint8_t *a = (const uint8_t *)&c->st_prev[slot][i], *b = (const uint8_t *)&c->cmd[i];
            size_t j = 0;
            while (j < sizeof(cb_cmd) && a[j] == b[j]) j++;
            if (j < sizeof(cb_cmd)) {
                c->st_diff[c->st_ndiff].cmd = (int32_t)i, c->st_diff[c->st_ndiff].kind = c->cmd[i].kind;
                c->st_diff[c->st_ndiff++].byte = (int32_t)j;
                break;
            }
        }
    }
    if (slot < 0) {
        slot = c->st_next, c->st_next = (c->st_next + 1) % 4;
        free(c->st_prev[slot]);
        c->st_prev[slot] = malloc(c->n_cmd * sizeof(cb_cmd));
        c->st_nprev[slot] = c->st_prev[slot] ? c->n_cmd : 0;
    }
    if (c->st_prev[slot]) memcpy(c->st_prev[slot], c->cmd, c->n_cmd * sizeof(cb_cmd));
}

/* HEARTH_CUDA_STATS: a step's first work is about to be enqueued (begin) or its last was
 * (!begin). At an end, the span of the step before and the gap from its end to this step's
 * start are read (the events they need have been reached, so this waits for nothing but
 * this step's first event). Errors only skip the measurement. */
static void cb_stat_step(cuda_be *c, bool begin) {
    hb_err e;
    float ms;
    int k = (int)(c->st_steps & 1), prev = 1 - k;
    hb_err_clear(&e);
    if (begin) {
        c->st_in_step = !cuda_prof_mark(c->cu, 2 * k, &e);
    } else if (c->st_in_step && !cuda_prof_mark(c->cu, 2 * k + 1, &e)) {
        c->st_in_step = false;
        if (c->st_steps > 0 && !cuda_prof_ms(c->cu, 2 * prev, 2 * prev + 1, &ms, &e)) c->st_busy_ms += ms;
        if (c->st_steps > 0 && !cuda_prof_ms(c->cu, 2 * prev + 1, 2 * k, &ms, &e)) c->st_idle_ms += ms, c->st_gaps++;
        c->st_steps++;
    }
}

static void cb_stat_print(const cuda_be *c) {
    fprintf(stderr, "cuda stats: segments replayed %llu (+%llu without a rewrite), captured %llu, eager %llu; "
            "%llu commands\n", (unsigned long long)c->st_replay, (unsigned long long)c->st_raw,
            (unsigned long long)c->st_capture, (unsigned long long)c->st_eager, (unsigned long long)c->st_cmds);
    if (c->st_gaps)
        fprintf(stderr, "cuda stats: %llu steps; GPU from a step's first work to its end %.1f us on average, idle "
                "from a step's end to the next one's first work %.1f us on average\n",
                (unsigned long long)c->st_steps, 1000 * c->st_busy_ms / (double)c->st_gaps,
                1000 * c->st_idle_ms / (double)c->st_gaps);
    for (int i = 0; i < c->st_ndiff; i++)
        fprintf(stderr, "cuda stats: an eager segment differs from the last of its length at command %d (kind %d), "
                "byte %d of %zu\n", c->st_diff[i].cmd, c->st_diff[i].kind, c->st_diff[i].byte, sizeof(cb_cmd));
}

static int cb_prof_cmp(const void *a, const void *b) {
    double x = ((const struct cb_prof *)a)->ms, y = ((const struct cb_prof *)b)->ms;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* HEARTH_CUDA_PROFILE's table, costliest first (sorts c->prof). */
static void cb_prof_print(cuda_be *c) {
    double all = 0.0;
    qsort(c->prof, (size_t)c->n_prof, sizeof *c->prof, cb_prof_cmp);
    for (int i = 0; i < c->n_prof; i++) all += c->prof[i].ms;
    fprintf(stderr, "cuda profile: %-40s %10s %5s %9s %8s\n", "op", "ms", "%", "count", "us each");
    for (int i = 0; i < c->n_prof; i++) {
        const struct cb_prof *r = &c->prof[i];
        fprintf(stderr, "cuda profile: %-40s %10.2f %5.1f %9llu %8.2f\n", r->label, r->ms, all > 0 ? 100 * r->ms / all : 0,
                (unsigned long long)r->n, r->n ? 1000 * r->ms / (double)r->n : 0);
    }
}

/* Runs the recorded step: replays its graph when the same step ran before under the same
 * scratch memory, captures it on its second appearance, runs it op by op otherwise. */
static int cb_run_step(cuda_be *c) {
    int rc;
    hb_err *err = &c->err;
    if ((rc = cuda_ctx_enter(c->cu, err))) return rc;
    if (c->kn.stats && !c->kn.profile && !c->st_in_step) cb_stat_step(c, true);
    if (c->arena_used > c->arena_sent) { /* what earlier segments of the step did not send */
        if ((rc = cuda_upload_async(c->cu, c->arena_dev + c->arena_sent, c->arena_host + c->arena_sent,
                                    (size_t)(c->arena_used - c->arena_sent) * 4, err)))
            return rc;
        c->arena_sent = c->arena_used;
        c->arena_pending = true;
    }
    uint64_t gen = cuda_ctx_generation(c->cu), raw = 0;
    if (!c->fuse_off && !c->mega && !c->graphs_off) { /* a replay of commands recorded before */
        raw = cb_signature(c) ^ (c->partial ? 0x9e3779b97f4a7c15ull : 0);
        if ((rc = cb_replay_raw(c, raw, gen)) >= 0) {
            c->st_raw++;
            return rc;
        }
    }
    if (!c->fuse_off) {
        cb_rewrite(c);
    }
    uint64_t sig = cb_signature(c);
    if (c->mega && cb_mega_try(c, sig, &rc)) return rc;
    c->st_cmds += c->n_cmd;
    if (c->graphs_off) {
        if (c->kn.stats) cb_stat_eager(c);
        return cb_exec_all(c, err);
    }
    cb_graph *e = NULL, *victim = &c->graphs[0];
    for (int i = 0; i < CB_GRAPHS; i++) {
        if (c->graphs[i].sig == sig && c->graphs[i].last_use) e = &c->graphs[i];
        if (c->graphs[i].last_use < victim->last_use) victim = &c->graphs[i];
    }
    c->clock++;
    if (e && e->gen == gen && e->g) {
        e->last_use = c->clock;
        c->st_replay++;
        return cuda_graph_launch(c->cu, e->g, err);
    }
    if (e && e->gen == gen) { /* second sighting: capture */
        hb_err cerr;
        hb_err_clear(&cerr);
        cuda_graph *g = NULL;
        if (cuda_capture_begin(c->cu, &cerr) == HEARTH_OK) {
            int xrc = cb_exec_all(c, &cerr);
            int erc = cuda_capture_end(c->cu, &g, &cerr);
            if (!xrc && !erc && cuda_ctx_generation(c->cu) == gen) {
                e->g = g, e->raw = raw;
                e->last_use = c->clock;
                c->st_capture++;
                return cuda_graph_launch(c->cu, g, err);
            }
            cuda_graph_free(g);
        }
        c->graphs_off = true; /* capture is not possible here: run op by op from now on */
        if (c->kn.stats) cb_stat_eager(c);
        return cb_exec_all(c, err);
    }
    if (!e) {
        e = victim;
        cuda_graph_free(e->g);
        memset(e, 0, sizeof *e);
        e->sig = sig;
    } else {
        cuda_graph_free(e->g); /* stale: scratch moved */
        e->g = NULL;
    }
    if (c->kn.stats) cb_stat_eager(c);
    rc = cb_exec_all(c, err);
    e->gen = cuda_ctx_generation(c->cu); /* after any scratch growth of this run */
    e->last_use = c->clock;
    return rc;
}

/* Runs whatever was recorded; the arena is free for the next step afterwards. */
static int cb_flush(cuda_be *c) {
    int rc = c->err.code;
    if (!rc && c->n_cmd) rc = cb_run_step(c);
    if (!rc && c->kn.stats && !c->kn.profile) cb_stat_step(c, false);
    c->n_cmd = 0;
    c->arena_used = c->arena_sent = 0;
    c->n_dedup = 0;
    c->seg_count = c->seg_next = 0;
    return rc;
}

/* be_ops.submit, after each layer: the commands recorded so far run as a segment of the
 * step (replayed as its own graph like a whole step), so that the host records the rest
 * while the GPU works. Segments are seg_first layers, then seg_grow times more each time, up
 * to seg_layers (1, 8, 24 by default): a short first one starts the GPU early, longer ones
 * keep the graph boundaries few (each costs more than a PDL edge between kernels). The
 * step's arena stays: later segments may reuse its arrays, and the host never rewrites a
 * part an upload may still read. Without this
 * the GPU idled for the whole recording of each decode step (~70-120 us on the H200 host,
 * against ~590 us of GPU work for a Q4_0 TinyLlama step). */
static void cb_submit(be_ctx *b) {
    cuda_be *c = cb(b);
    if (c->seg_layers <= 0 || c->mega || c->err.code || !c->n_cmd) return;
    if (!c->seg_next) c->seg_next = c->seg_first;
    if (++c->seg_count < c->seg_next) return;
    c->seg_count = 0;
    c->seg_next = c->seg_grow * c->seg_next < c->seg_layers ? c->seg_grow * c->seg_next : c->seg_layers;
    c->partial = true;
    cb_run_step(c); /* a failure sticks in c->err and poisons the read */
    c->partial = false;
    c->n_cmd = 0;
}

/* be_ops.host_alloc: page-locked memory (the engine's logits rows) that cb_read fills with
 * one DMA; declined (NULL) over CB_RD_PIN_MAX floats — pinned memory is scarce and slow to
 * allocate — or when the CB_PINS slots are taken. Measured on an H200 host: the staging
 * copy of a step's 128 KB of logits took ~6 us of the ~13 us between one step's end and
 * the next step's first launch, while the GPU idled. */
static void *cb_host_alloc(be_ctx *b, size_t bytes) {
    cuda_be *c = cb(b);
    void *p = NULL;
    hb_err err;
    hb_err_clear(&err);
    for (int i = 0; i < CB_PINS; i++) {
        if (c->pin[i].p) continue;
        if (bytes == 0 || bytes > (size_t)CB_RD_PIN_MAX * sizeof(float) || cuda_host_alloc(bytes, &p, &err)) return NULL;
        c->pin[i].p = p, c->pin[i].bytes = bytes;
        return p;
    }
    return NULL;
}

static void cb_host_free(be_ctx *b, void *p) {
    cuda_be *c = cb(b);
    if (!p) return;
    cb_flush(c); /* a queued read may still write it */
    cuda_sync(c->cu, &c->err);
    for (int i = 0; i < CB_PINS; i++)
        if (c->pin[i].p == p) c->pin[i].p = NULL, c->pin[i].bytes = 0;
    cuda_host_free(p);
}

/* ---- the table ------------------------------------------------------------------------- */

static int cb_buf_alloc(be_ctx *b, be_buf *out, int64_t n, hb_err *err) {
    out->p = NULL;
    out->n = 0;
    void *p = NULL;
    int rc = cuda_alloc(cb(b)->cu, &p, (size_t)(n > 0 ? n : 1) * sizeof(float), err);
    if (rc) return rc;
    out->p = p;
    out->n = n;
    return HEARTH_OK;
}

static void cb_buf_free(be_ctx *b, be_buf *buf) {
    cuda_be *c = cb(b);
    if (buf->p) {
        cb_flush(c); /* recorded work may still use the buffer */
        cuda_sync(c->cu, &c->err);
    }
    cuda_free(c->cu, buf->p);
    buf->p = NULL;
    buf->n = 0;
}

/* Whether [p, p + bytes) lies in a block of cb_host_alloc (page-locked). */
static bool cb_pinned(const cuda_be *c, const void *p, size_t bytes) {
    const uint8_t *a = p;
    for (int i = 0; i < CB_PINS; i++) {
        const uint8_t *b = c->pin[i].p;
        if (b && a >= b && bytes <= c->pin[i].bytes && (size_t)(a - b) <= c->pin[i].bytes - bytes) return true;
    }
    return false;
}

/* Copies n floats to dst: straight into dst when it is a block of cb_host_alloc (the
 * engine's logits), else through a pinned staging buffer (kept and grown): a copy into
 * pageable memory is staged by the driver and measured ~2% slower per decode step (the
 * logits, 128 KB for a 32000-token vocabulary). Reads over CB_RD_PIN_MAX floats (prompt
 * logits of long batches, perplexity) and hosts without pinned memory to spare take the
 * direct copy: pinned memory is scarce and slow to allocate. */
static int cb_download(cuda_be *c, float *dst, const float *src, int64_t n) {
    if (n > 0 && cb_pinned(c, dst, (size_t)n * sizeof(float))) /* one DMA, no staging copy */
        return cuda_download(c->cu, dst, src, (size_t)n * sizeof(float), &c->err);
    if (n > 0 && n <= CB_RD_PIN_MAX && (size_t)n > c->rd_cap) {
        hb_err perr;
        float *h = NULL;
        hb_err_clear(&perr);
        if (!cuda_host_alloc((size_t)n * sizeof(float), (void **)&h, &perr)) {
            cuda_host_free(c->rd_host);
            c->rd_host = h, c->rd_cap = (size_t)n;
        }
    }
    if (n <= 0 || (size_t)n > c->rd_cap) return cuda_download(c->cu, dst, src, (size_t)n * sizeof(float), &c->err);
    int rc = cuda_download(c->cu, c->rd_host, src, (size_t)n * sizeof(float), &c->err);
    if (!rc) memcpy(dst, c->rd_host, (size_t)n * sizeof(float));
    return rc;
}

static void cb_read(be_ctx *b, const be_buf *src, int64_t off, float *dst, int64_t n) {
    cuda_be *c = cb(b);
    if (cb_flush(c) || cb_download(c, dst, src->p + off, n))
        for (int64_t i = 0; i < n; i++) dst[i] = NAN; /* never hand out stale numbers */
    else
        c->arena_pending = false; /* the download waited for everything queued */
}

static int cb_matmul(be_ctx *b, const be_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy) {
    cuda_be *c = cb(b);
    if (cb_status(c)) return cb_status(c);
    const cuda_weight *cw = cb_weight(c, w, &c->err);
    if (!cw) return c->err.code;
    if (cw->type != QT_F32 && cw->type != QT_F16 && cw->type != QT_BF16 && cw->n_cols % 32)
        return hb_fail(&c->err, HEARTH_E_UNSUPPORTED, "CUDA: row length %lld is not a multiple of 32",
                       (long long)cw->n_cols);
    cb_cmd *k = cb_push(c, CK_MATMUL);
    if (!k) return c->err.code;
    k->w = *cw, k->p[0] = x, k->p[1] = y, k->n[0] = n_tok, k->n[1] = ldy;
    return HEARTH_OK;
}

static int cb_get_rows(be_ctx *b, const be_weight *w, const int32_t *ids, int64_t n, float *out) {
    cuda_be *c = cb(b);
    if (cb_status(c)) return cb_status(c);
    const cuda_weight *cw = cb_weight(c, w, &c->err);
    if (!cw) return c->err.code;
    int64_t off = cb_arena(c, ids, n);
    cb_cmd *k = off >= 0 ? cb_push(c, CK_GET_ROWS) : NULL;
    if (!k) return c->err.code;
    k->w = *cw, k->off[0] = off, k->p[1] = out, k->n[0] = n;
    return HEARTH_OK;
}

static void cb_rmsnorm(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                       const float *w, float eps) {
    cuda_be *c = cb(b);
    const float *dw = cb_floats(c, w, n);
    cb_cmd *k = cb_push(c, CK_RMSNORM);
    if (!k) return;
    k->p[0] = x, k->p[1] = y, k->p[2] = dw, k->n[0] = xs, k->n[1] = ys, k->n[2] = n_rows, k->n[3] = n, k->f[0] = eps;
}

/* The device table base^(-2i/n_rot) for (base, n_rot), made on first use (NULL when the
 * table cache is full or the upload failed: the kernels then compute it themselves). */
static const double *cb_rope_inv(cuda_be *c, float base, int32_t n_rot) {
    for (int i = 0; i < c->n_rope_inv; i++)
        if (c->rope_inv[i].base == base && c->rope_inv[i].n_rot == n_rot) return c->rope_inv[i].dev;
    if (c->err.code || c->n_rope_inv == CB_ROPE_TABLES || n_rot < 2 || n_rot > 4096) return NULL;
    double tab[2048];
    void *dev = NULL;
    hb_err e;
    hb_err_clear(&e);
    cuda_rope_table(base, n_rot, tab);
    if (cuda_alloc(c->cu, &dev, sizeof(double) * (size_t)(n_rot / 2), &e)) return NULL;
    if (cuda_upload(c->cu, dev, tab, sizeof(double) * (size_t)(n_rot / 2), &e)) {
        cuda_free(c->cu, dev);
        return NULL;
    }
    c->rope_inv[c->n_rope_inv].base = base, c->rope_inv[c->n_rope_inv].n_rot = n_rot;
    c->rope_inv[c->n_rope_inv++].dev = dev;
    return dev;
}

static void cb_rope(be_ctx *b, float *x, int64_t n_tok, int64_t stride, int32_t n_head, int32_t head_dim,
                    const int32_t *pos, const be_rope *r) {
    cuda_be *c = cb(b);
    const float *df = cb_floats(c, r->factors, r->n_rot / 2);
    int64_t off = c->err.code ? -1 : cb_arena(c, pos, n_tok);
    cb_cmd *k = off >= 0 ? cb_push(c, CK_ROPE) : NULL;
    if (!k) return;
    k->rope.neox = r->style == BE_ROPE_NEOX, k->rope.n_rot = r->n_rot, k->rope.base = r->base;
    k->rope.freq_scale = r->freq_scale, k->rope.attn_factor = r->attn_factor, k->rope.factors = df;
    k->rope.inv = cb_rope_inv(c, r->base, r->n_rot);
    k->off[0] = off, k->p[1] = x, k->n[0] = n_tok, k->n[1] = stride, k->n[2] = n_head, k->n[3] = head_dim;
}

static int64_t max_cell(const int32_t *pos, const int32_t *seq, int64_t n, int64_t n_ctx, int32_t *max_pos) {
    int64_t m = 0;
    *max_pos = 0;
    for (int64_t t = 0; t < n; t++) {
        int64_t cell = (int64_t)seq[t] * n_ctx + pos[t] + 1;
        if (cell > m) m = cell;
        if (pos[t] > *max_pos) *max_pos = pos[t];
    }
    return m;
}

static void cb_kv_store(be_ctx *b, const be_kv_layer *kv, const float *k, int64_t ks, const float *v, int64_t vs,
                        int64_t n_tok, const int32_t *pos, const int32_t *seq) {
    cuda_be *c = cb(b);
    cuda_kv dkv;
    int32_t mp;
    if (cb_status(c) || cb_kv(c, kv, max_cell(pos, seq, n_tok, kv->n_ctx, &mp), &dkv)) return;
    int64_t o0 = cb_arena(c, pos, n_tok), o1 = o0 >= 0 ? cb_arena(c, seq, n_tok) : -1;
    cb_cmd *cmd = o1 >= 0 ? cb_push(c, CK_KV_STORE) : NULL;
    if (!cmd) return;
    cmd->kv = dkv, cmd->off[0] = o0, cmd->off[1] = o1;
    cmd->p[0] = k, cmd->p[2] = v, cmd->n[0] = ks, cmd->n[1] = vs, cmd->n[2] = n_tok;
}

static int cb_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    cuda_be *c = cb(b);
    cuda_kv dkv;
    int32_t mp;
    if (cb_status(c) || cb_kv(c, a->kv, max_cell(a->pos, a->seq, a->n_tok, a->kv->n_ctx, &mp), &dkv))
        return cb_status(c);
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return hb_fail(&c->err, HEARTH_E_INVALID, "CUDA: %d heads do not split into %d KV heads", a->n_head,
                       a->n_head_kv);
    int64_t o0 = cb_arena(c, a->pos, a->n_tok), o1 = o0 >= 0 ? cb_arena(c, a->seq, a->n_tok) : -1;
    cb_cmd *k = o1 >= 0 ? cb_push(c, CK_ATTN) : NULL;
    if (!k) return c->err.code;
    /* the split count only depends on a power-of-two bucket of the position (cu_ops.cu) */
    int32_t bucket = 128;
    while (bucket <= mp) bucket *= 2;
    k->kv = dkv, k->off[0] = o0, k->off[1] = o1;
    k->at.n_tok = a->n_tok, k->at.n_head = a->n_head, k->at.n_head_kv = a->n_head_kv;
    k->at.head_dim_k = a->head_dim_k, k->at.head_dim_v = a->head_dim_v, k->at.scale = a->scale;
    k->at.softcap = a->softcap, k->at.window = a->window, k->at.max_pos_host = bucket - 1;
    k->p[0] = q, k->p[1] = out, k->n[0] = qs, k->n[1] = os;
    return HEARTH_OK;
}

static void cb_copy_rows(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                         const float *bias) {
    cuda_be *c = cb(b);
    const float *db = cb_floats(c, bias, n);
    cb_cmd *k = cb_push(c, CK_COPY_ROWS);
    if (!k) return;
    k->p[0] = x, k->p[1] = y, k->p[2] = db, k->n[0] = xs, k->n[1] = ys, k->n[2] = n_tok, k->n[3] = n;
}

static void cb_add_op(be_ctx *b, float *y, const float *x, int64_t n) {
    cb_cmd *k = cb_push(cb(b), CK_ADD);
    if (k) k->p[0] = x, k->p[1] = y, k->n[0] = n;
}

static void cb_scale_op(be_ctx *b, float *x, int64_t n, float s) {
    cb_cmd *k = cb_push(cb(b), CK_SCALE);
    if (k) k->p[1] = x, k->n[0] = n, k->f[0] = s;
}

static void cb_softcap_op(be_ctx *b, float *x, int64_t n, float cap) {
    cb_cmd *k = cb_push(cb(b), CK_SOFTCAP);
    if (k) k->p[1] = x, k->n[0] = n, k->f[0] = cap;
}

static void cb_glu(be_ctx *b, be_glu kind, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                   int64_t os, int64_t n_tok, int64_t n) {
    cb_cmd *k = cb_push(cb(b), CK_GLU);
    if (!k) return;
    k->flag = kind == BE_GLU_GELU_TANH;
    k->p[0] = gate, k->p[2] = up, k->p[1] = out, k->n[0] = gs, k->n[1] = us, k->n[2] = os, k->n[3] = n_tok, k->n[4] = n;
}

static int cb_kv_copy(be_ctx *b, const be_kv_layer *kv, int32_t src, int32_t dst, int64_t n_rows) {
    cuda_be *c = cb(b);
    int64_t dst_row = (int64_t)dst * kv->n_ctx, src_row = (int64_t)src * kv->n_ctx;
    if (src == dst) return cb_status(c);
    cuda_kv dkv;
    if (n_rows <= 0) return cb_status(c);
    int64_t rows = (dst_row > src_row ? dst_row : src_row) + n_rows;
    if (cb_status(c) || cb_kv(c, kv, rows, &dkv)) return cb_status(c);
    cb_cmd *k = cb_push(c, CK_KV_COPY);
    if (!k) return c->err.code;
    k->kv = dkv, k->n[0] = dst_row, k->n[1] = src_row, k->n[2] = n_rows;
    return cb_flush(c);
}

/* ---- placement support (src/engine/place.c) ---------------------------------------------- */

static int cb_dev_info(be_ctx *b, be_dev_info *out, hb_err *err) {
    cuda_be *c = cb(b);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%.127s", cuda_ctx_info(c->cu)->name);
    return cuda_mem_info(c->cu, &out->mem_free, &out->mem_total, err);
}

/* Joins the model's store of weights (be_ops.share): a second context of the model reuses
 * the first one's device copies. Called at placement, before any weight is uploaded. */
static int cb_share(be_ctx *b, be_share_slot *slot, uint64_t *shared, hb_err *err) {
    return cb_store_join(cb(b), slot, shared, err);
}

/* Uploads w now, with the checks cb_matmul makes, so that what cannot run here shows at load. */
static int cb_preload(be_ctx *b, const be_weight *w, bool matmul, hb_err *err) {
    cuda_be *c = cb(b);
    if (cb_status(c)) return hb_fail(err, cb_status(c), "%s", c->err.msg);
    uint32_t t = w->host.type;
    if (matmul && t != QT_F32 && t != QT_F16 && t != QT_BF16 && w->host.n_cols % 32)
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: row length %lld is not a multiple of 32",
                       (long long)w->host.n_cols);
    return cb_weight(c, w, err) ? HEARTH_OK : err->code;
}

static int cb_kv_reserve(be_ctx *b, const be_kv_layer *kv, int64_t n_cells, hb_err *err) {
    cuda_be *c = cb(b);
    cuda_kv dkv;
    if (cb_status(c) || cb_kv(c, kv, n_cells, &dkv)) return hb_fail(err, cb_status(c), "%s", c->err.msg);
    return HEARTH_OK;
}

static int cb_measure_bw(be_ctx *b, double *bytes_per_s, hb_err *err) {
    cuda_be *c = cb(b);
    int rc = cb_flush(c);
    if (!rc) rc = cuda_sync(c->cu, &c->err);
    if (rc) return hb_fail(err, rc, "%s", c->err.msg);
    return cuda_measure_bandwidth(c->cu, bytes_per_s, err);
}

static const be_ops k_cuda_ops = {
    .name = "cuda",
    .buf_alloc = cb_buf_alloc,
    .buf_free = cb_buf_free,
    .read = cb_read,
    .matmul = cb_matmul,
    .get_rows = cb_get_rows,
    .rmsnorm = cb_rmsnorm,
    .rope = cb_rope,
    .kv_store = cb_kv_store,
    .attention = cb_attention,
    .copy_rows = cb_copy_rows,
    .add = cb_add_op,
    .scale = cb_scale_op,
    .softcap = cb_softcap_op,
    .glu = cb_glu,
    .kv_copy = cb_kv_copy,
    .dev_info = cb_dev_info,
    .share = cb_share,
    .preload = cb_preload,
    .kv_reserve = cb_kv_reserve,
    .measure_bw = cb_measure_bw,
    .submit = cb_submit,
    .host_alloc = cb_host_alloc,
    .host_free = cb_host_free,
};

int be_cuda_new(int device, be_ctx **out, hb_err *err) {
    int rc = HEARTH_OK;
    be_ctx *b = calloc(1, sizeof *b);
    cuda_be *c = calloc(1, sizeof *c);
    *out = NULL;
    HB_CHECK(b && c, HEARTH_E_NOMEM, "out of memory");
    if (device < 0 && (device = cuda_device_from_env(err)) < 0) {
        rc = err ? err->code : HEARTH_E_INVALID;
        goto out;
    }
    if ((rc = cuda_ctx_new(device, &c->cu, err))) goto out;
    c->kn = *cuda_ctx_knobs(c->cu);
    const cuda_knobs *kn = &c->kn;
    c->graphs_off = !kn->graphs || kn->profile; /* a profile times each op: no graphs */
    /* segments of 1, 8, 24, 24, ... layers (TinyLlama: 1, 8, 13): the host records a layer
     * several times faster than the GPU runs it, so after a one-layer start the segments
     * can grow fast, and every graph boundary saved is ~1.3 us of idle GPU. Measured on an
     * H200 (session 10, two interleaved rounds): against 1, 2, 4, 8, 7 (the session-9
     * default) +0.7-1.9% Q4_0, +0.5-0.8% Q4_K_M; growth 3 or 4 in between */
    c->seg_layers = kn->seg_layers;
    c->seg_first = kn->seg_first;
    c->seg_grow = kn->seg_grow;
    c->qkvr_norm = kn->qkvr_norm; /* opt-in: measured 3.5-5% slower (docs/performance.md) */
    c->fuse_off = !kn->fuse;
    if (!c->fuse_off && kn->mega) { /* opt-in: slower than the graphs so far */
        hb_err merr;
        hb_err_clear(&merr);
        if (cuda_mega_new(c->cu, &c->mega, &merr)) c->mega = NULL; /* kernel-per-op path only */
    }
    b->ops = &k_cuda_ops;
    b->impl = c;
    *out = b;
    b = NULL;
    c = NULL;
out:
    if (c) cuda_ctx_free(c->cu);
    free(c);
    free(b);
    return rc;
}

void be_cuda_free(be_ctx *b) {
    if (!b) return;
    cuda_be *c = cb(b);
    cuda_sync(c->cu, &c->err);
    if (c->kn.stats) cb_stat_print(c);
    if (c->kn.profile) cb_prof_print(c);
    free(c->prof);
    for (int i = 0; i < 4; i++) free(c->st_prev[i]);
    for (int i = 0; i < CB_GRAPHS; i++) cuda_graph_free(c->graphs[i].g);
    cuda_mega_free(c->mega);
    for (int i = 0; i < c->n_rope_inv; i++) cuda_free(c->cu, c->rope_inv[i].dev);
    for (size_t i = 0; i < c->n_map; i++)
        if (c->map[i].borrowed) cb_store_put(c, c->map[i].host, c->map[i].bytes);
        else cuda_free(c->cu, c->map[i].dev);
    cuda_host_free(c->arena_host);
    cuda_host_free(c->rd_host);
    cuda_free(c->cu, c->arena_dev);
    free(c->cmd);
    free(c->map);
    cuda_ctx_free(c->cu);
    free(c);
    free(b);
}
