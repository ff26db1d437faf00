/* be_cuda.c — the be_ops table (src/backend/backend.h) on an NVIDIA GPU, over the kernels
 * of cuda.h. The forward pass and the engine run unchanged: activation buffers are device
 * memory, and everything the interface hands over as host data is mirrored on the device:
 *  - weights (be_weight) and the model's small float arrays (norm weights, biases, RoPE
 *    factors) are uploaded once, on first use, and kept for the life of the backend;
 *  - positions and sequence ids are staged once per distinct array per decode;
 *  - the KV cache lives in device memory shadowing the engine's host cache by address; a
 *    layer's shadow grows to the highest (sequence, position) cell stored.
 * Ops that return void record the first failure; the next op that returns a status
 * reports it (the forward pass checks matmul/attention after every step).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/be_cuda.h"
#include "backend/cuda/cuda.h"

/* host address -> device copy */
typedef struct cb_map {
    const void *host;
    void *dev;
    size_t bytes;        /* device bytes */
    cuda_weight w;       /* weights only */
} cb_map;

typedef struct cb_stage {
    const int32_t *host; /* last array staged in this slot */
    int32_t *shadow;     /* its contents */
    int64_t n, cap;
    const int32_t *dev;
} cb_stage;

typedef struct cuda_be {
    cuda_ctx *cu;
    hb_err err;          /* first failure of a void op */
    cb_map *map;         /* weights, float arrays and KV shadows */
    size_t n_map, cap_map;
    cb_stage stage[CUDA_STAGE_SLOTS];
} cuda_be;

static cuda_be *cb(be_ctx *b) {
    return (cuda_be *)b->impl;
}

static int cb_status(cuda_be *c) {
    return c->err.code;
}

static cb_map *cb_find(cuda_be *c, const void *host) {
    for (size_t i = 0; i < c->n_map; i++)
        if (c->map[i].host == host) return &c->map[i];
    return NULL;
}

/* Registers dev (bytes, owned from now on) as the device copy of host. */
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
    if (!(e = cb_add(c, w->host.data, bytes, err))) return NULL;
    if (cuda_upload(c->cu, e->dev, w->host.data, bytes, err)) return NULL;
    e->w = (cuda_weight){ w->host.type, w->host.n_rows, w->host.n_cols, w->host.row_bytes, e->dev };
    return &e->w;
}

/* Device copy of a host int array for slot s; unchanged arrays are not sent again. */
static const int32_t *cb_ints(cuda_be *c, int s, const int32_t *host, int64_t n) {
    cb_stage *st = &c->stage[s];
    if (c->err.code) return NULL;
    if (st->dev && st->host == host && st->n == n && memcmp(st->shadow, host, (size_t)n * sizeof *host) == 0)
        return st->dev;
    if (n > st->cap) {
        int32_t *ns = realloc(st->shadow, (size_t)n * sizeof *ns);
        if (!ns) {
            hb_fail(&c->err, HEARTH_E_NOMEM, "out of memory");
            return NULL;
        }
        st->shadow = ns;
        st->cap = n;
    }
    memcpy(st->shadow, host, (size_t)n * sizeof *host);
    st->host = host;
    st->n = n;
    if (cuda_stage_i32(c->cu, s, host, n, &st->dev, &c->err)) st->dev = NULL;
    return st->dev;
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
    *out = (cuda_kv){ ek->dev, ev->dev, kv->type, kv->kv_dim, kv->row_bytes, kv->n_ctx };
    return c->err.code;
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
    cuda_free(cb(b)->cu, buf->p);
    buf->p = NULL;
    buf->n = 0;
}

static void cb_read(be_ctx *b, const be_buf *src, int64_t off, float *dst, int64_t n) {
    cuda_be *c = cb(b);
    if (cuda_download(c->cu, dst, src->p + off, (size_t)n * sizeof(float), &c->err)) memset(dst, 0, (size_t)n * 4);
}

static int cb_matmul(be_ctx *b, const be_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy) {
    cuda_be *c = cb(b);
    if (cb_status(c)) return cb_status(c);
    const cuda_weight *cw = cb_weight(c, w, &c->err);
    if (!cw) return c->err.code;
    return cuda_matmul(c->cu, cw, x, n_tok, y, ldy, &c->err);
}

static int cb_get_rows(be_ctx *b, const be_weight *w, const int32_t *ids, int64_t n, float *out) {
    cuda_be *c = cb(b);
    if (cb_status(c)) return cb_status(c);
    const cuda_weight *cw = cb_weight(c, w, &c->err);
    if (!cw) return c->err.code;
    return cuda_get_rows(c->cu, cw, ids, n, out, &c->err);
}

static void cb_rmsnorm(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                       const float *w, float eps) {
    cuda_be *c = cb(b);
    const float *dw = cb_floats(c, w, n);
    if (!cb_status(c)) cuda_rmsnorm(c->cu, x, xs, y, ys, n_rows, n, dw, eps, &c->err);
}

static void cb_rope(be_ctx *b, float *x, int64_t n_tok, int64_t stride, int32_t n_head, int32_t head_dim,
                    const int32_t *pos, const be_rope *r) {
    cuda_be *c = cb(b);
    const int32_t *dpos = cb_ints(c, 0, pos, n_tok);
    cuda_rope cr = { r->style == BE_ROPE_NEOX, r->n_rot, r->base, r->freq_scale, r->attn_factor,
                     cb_floats(c, r->factors, r->n_rot / 2) };
    if (!cb_status(c)) cuda_rope_apply(c->cu, x, n_tok, stride, n_head, head_dim, dpos, &cr, &c->err);
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
    const int32_t *dpos = cb_ints(c, 0, pos, n_tok), *dseq = cb_ints(c, 1, seq, n_tok);
    if (cb_status(c) || cb_kv(c, kv, max_cell(pos, seq, n_tok, kv->n_ctx, &mp), &dkv)) return;
    cuda_kv_store(c->cu, &dkv, k, ks, v, vs, n_tok, dpos, dseq, &c->err);
}

static int cb_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    cuda_be *c = cb(b);
    cuda_kv dkv;
    int32_t mp;
    const int32_t *dpos = cb_ints(c, 0, a->pos, a->n_tok), *dseq = cb_ints(c, 1, a->seq, a->n_tok);
    if (cb_status(c) || cb_kv(c, a->kv, max_cell(a->pos, a->seq, a->n_tok, a->kv->n_ctx, &mp), &dkv))
        return cb_status(c);
    cuda_attn ca = { &dkv, dpos, dseq, a->n_tok, a->n_head, a->n_head_kv, a->head_dim_k, a->head_dim_v,
                     a->scale, a->softcap, a->window, mp };
    return cuda_attention(c->cu, &ca, q, qs, out, os, &c->err);
}

static void cb_copy_rows(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                         const float *bias) {
    cuda_be *c = cb(b);
    const float *db = cb_floats(c, bias, n);
    if (!cb_status(c)) cuda_copy_rows(c->cu, x, xs, y, ys, n_tok, n, db, &c->err);
}

static void cb_add_op(be_ctx *b, float *y, const float *x, int64_t n) {
    cuda_be *c = cb(b);
    if (!cb_status(c)) cuda_add(c->cu, y, x, n, &c->err);
}

static void cb_scale_op(be_ctx *b, float *x, int64_t n, float s) {
    cuda_be *c = cb(b);
    if (!cb_status(c)) cuda_scale(c->cu, x, n, s, &c->err);
}

static void cb_softcap_op(be_ctx *b, float *x, int64_t n, float cap) {
    cuda_be *c = cb(b);
    if (!cb_status(c)) cuda_softcap(c->cu, x, n, cap, &c->err);
}

static void cb_glu(be_ctx *b, be_glu kind, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                   int64_t os, int64_t n_tok, int64_t n) {
    cuda_be *c = cb(b);
    if (!cb_status(c)) cuda_glu(c->cu, kind == BE_GLU_GELU_TANH, gate, gs, up, us, out, os, n_tok, n, &c->err);
}

static int cb_kv_copy(be_ctx *b, const be_kv_layer *kv, int64_t dst_row, int64_t src_row, int64_t n_rows) {
    cuda_be *c = cb(b);
    cuda_kv dkv;
    if (n_rows <= 0) return cb_status(c);
    int64_t rows = (dst_row > src_row ? dst_row : src_row) + n_rows;
    if (cb_status(c) || cb_kv(c, kv, rows, &dkv)) return cb_status(c);
    size_t off_d = (size_t)dst_row * kv->row_bytes, off_s = (size_t)src_row * kv->row_bytes;
    size_t bytes = (size_t)n_rows * kv->row_bytes;
    cuda_copy(c->cu, (uint8_t *)dkv.k + off_d, (const uint8_t *)dkv.k + off_s, bytes, &c->err);
    cuda_copy(c->cu, (uint8_t *)dkv.v + off_d, (const uint8_t *)dkv.v + off_s, bytes, &c->err);
    return cb_status(c);
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
    for (size_t i = 0; i < c->n_map; i++) cuda_free(c->cu, c->map[i].dev);
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++) free(c->stage[i].shadow);
    free(c->map);
    cuda_ctx_free(c->cu);
    free(c);
    free(b);
}
