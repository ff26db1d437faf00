/* cu_mega_rec.cu — recording a decode step as a program of the persistent decode kernel
 * (cu_mega.cu): the cuda_mega_* recording calls turn the per-op arguments of cuda.h into
 * op descriptors, refuse what the kernel cannot run, fold a norm or an activation
 * quantization into the product that reads it, fuse RoPE with the KV store (and RoPE, KV
 * store and attention into MK_ATTN_DEC for short contexts), and cu_mega_plan places the
 * grid barriers. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_mega.cuh"
#define MA_LAYOUT_ONLY /* the op's shared-memory layout, not its device code */
#include "backend/cuda/cu_mega_attn.cuh"

/* Sentinel addresses standing for the mega-owned buffers in the read/write sets. */
static char mk_act_tag, mk_part_tag;

static void mk_rd(mk_meta *m, const void *p, size_t n) {
    if (p && n && m->n_rd < MK_RW) m->rd[m->n_rd++] = (mk_rng){ p, n };
    else if (p && n) m->n_rd = MK_RW + 1; /* too many: always synchronize */
}

static void mk_wr(mk_meta *m, const void *p, size_t n) {
    if (p && n && m->n_wr < MK_RW) m->wr[m->n_wr++] = (mk_rng){ p, n };
    else if (p && n) m->n_wr = MK_RW + 1;
}

static bool rng_hit(const mk_rng *a, int na, const mk_rng *b, int nb) {
    if (na > MK_RW || nb > MK_RW) return true;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            const char *x = (const char *)a[i].p, *y = (const char *)b[j].p;
            if (x < y + b[j].n && y < x + a[i].n) return true;
        }
    return false;
}

/* True when op b may run without a barrier after op a (no shared data, or both only read). */
static bool mk_independent(const mk_meta *a, const mk_meta *b) {
    return !rng_hit(a->wr, a->n_wr, b->rd, b->n_rd) && !rng_hit(a->wr, a->n_wr, b->wr, b->n_wr) &&
           !rng_hit(a->rd, a->n_rd, b->wr, b->n_wr);
}

static mk_op *mk_push(cuda_mega *m, int kind, mk_meta **meta) {
    if (m->bad) return NULL;
    if (m->n_ops == m->cap_ops) {
        int cap = m->cap_ops ? 2 * m->cap_ops : 512;
        mk_op *no = (mk_op *)realloc(m->ops, (size_t)cap * sizeof *no);
        if (no) m->ops = no;
        mk_meta *nm = no ? (mk_meta *)realloc(m->meta, (size_t)cap * sizeof *nm) : NULL;
        if (!no || !nm) {
            m->bad = 1;
            return NULL;
        }
        m->meta = nm;
        m->cap_ops = cap;
    }
    mk_op *op = &m->ops[m->n_ops];
    memset(op, 0, sizeof *op);
    memset(&m->meta[m->n_ops], 0, sizeof *m->meta);
    *meta = &m->meta[m->n_ops++];
    op->kind = kind;
    return op;
}

static int mk_refuse(cuda_mega *m) {
    m->bad = 1;
    return HEARTH_E_UNSUPPORTED;
}

static size_t al256(size_t x) {
    return (x + 255) & ~(size_t)255;
}

/* Bytes of the global activation buffer for n_tok rows of n values. */
static size_t mk_act_bytes(int64_t n_tok, int64_t n) {
    int64_t nch = n / 32;
    return al256((size_t)(n_tok * n)) + al256((size_t)(n_tok * nch) * 4) + al256((size_t)(n_tok * nch) * 8);
}

/* Marks op as writing (q8) or reading the global activations of n_tok x n. */
static void mk_use_act(cuda_mega *m, mk_op *op, mk_meta *mt, int64_t n_tok, int64_t n, int write) {
    size_t b = mk_act_bytes(n_tok, n);
    if (b > m->act_need) m->act_need = b;
    mt->uses_act = write ? 1 : 2;
    op->n_tok = (int32_t)n_tok;
    if (!op->n) op->n = n;
    if (write) mk_wr(mt, &mk_act_tag, 1);
    else mk_rd(mt, &mk_act_tag, 1);
}

extern "C" void cuda_mega_begin(cuda_mega *m) {
    m->n_ops = 0;
    m->bad = 0;
}

static bool fits_smem(int64_t n_tok, int64_t cols) {
    int64_t nq = n_tok * cols, nc = nq / 32;
    return ((nq + 15) & ~(int64_t)15) + ((nc + 1) & ~(int64_t)1) * 4 + nc * 8 <= MK_ACT;
}

/* Rows per ring slot and warps per row of a product with rows of rb bytes (0: refused). */
static void mk_tiling(mk_op *op, size_t rb) {
    int T = rb <= MK_SLOT ? (int)(MK_SLOT / rb) : 0, P = 1;
    while (T > 0 && T * P * 2 <= MK_WARPS) P *= 2;
    op->tile_rows = T, op->parts = P;
}

extern "C" int cuda_mega_matmul(cuda_mega *m, int n, const cuda_weight *const *ws, float *const *ys,
                                const int64_t *ldys, float *const *adds, const float *x, int64_t n_tok, int reuse_act) {
    const cuda_weight *w = ws[0];
    uint32_t t = w->type;
    int fl = t == QT_F32 || t == QT_F16 || t == QT_BF16;
    if (m->bad || n < 1 || n > 3 || n_tok < 1 || n_tok > MK_T || !cuda_type_supported(t)) return mk_refuse(m);
    if (w->n_cols % (fl ? 8 : 32) || w->row_bytes > MK_SLOT) return mk_refuse(m);
    mk_op pv;
    mk_meta pm;
    memset(&pv, 0, sizeof pv);
    memset(&pm, 0, sizeof pm);
    if (m->n_ops) pv = m->ops[m->n_ops - 1], pm = m->meta[m->n_ops - 1];
    int pv_fl = pv.kind == MK_MATVEC && (pv.wtype == QT_F32 || pv.wtype == QT_F16 || pv.wtype == QT_BF16);
    int src = SRC_GLOBAL, popped = 0, copied = 0;
    bool fits = fl ? n_tok * w->n_cols * 4 <= MK_ACT : fits_smem(n_tok, w->n_cols);
    /* a norm right before the product (its output is x, not in place): recomputed per block */
    bool norm_before = pv.kind == MK_NORM && pv.flag == (fl ? 0 : 1) && pv.out == x && pv.n_rows == n_tok &&
                       pv.os == w->n_cols && pv.n == w->n_cols && fits && !rng_hit(&pm.wr[0], 1, &pm.rd[0], 1);
    if (fl) {
        if (norm_before) {
            m->n_ops--;
            src = SRC_NORM, popped = 1;
        } else if (fits) {
            src = SRC_QUANT; /* x staged in shared memory as it is */
        } else if ((uintptr_t)x % 16) {
            return mk_refuse(m);
        }
    } else if (reuse_act) {
        if (norm_before) {
            m->n_ops--;
            src = SRC_NORM, popped = 1;
        } else if ((pv.kind == MK_NORM || pv.kind == MK_GLU || pv.kind == MK_QUANT) && pm.uses_act == 1 &&
                   pv.n == w->n_cols && pv.n_tok == n_tok) {
            src = SRC_GLOBAL;
        } else if (pv.kind == MK_MATVEC && pv.cols == w->n_cols && pv.n_tok == n_tok && !pv_fl) {
            src = pv.flag, copied = 1; /* the same activations as the product before */
        } else {
            return mk_refuse(m);
        }
    } else {
        if (fits) {
            src = SRC_QUANT;
        } else { /* too big for shared memory: a quantization pass into the global buffer */
            mk_meta *qm;
            mk_op *q = mk_push(m, MK_QUANT, &qm);
            if (!q) return mk_refuse(m);
            q->x = x, q->xs = w->n_cols;
            mk_rd(qm, x, (size_t)(n_tok * w->n_cols) * 4);
            mk_use_act(m, q, qm, n_tok, w->n_cols, 1);
        }
    }
    mk_meta *mt;
    mk_op *op = mk_push(m, MK_MATVEC, &mt);
    if (!op) return mk_refuse(m);
    op->wtype = t, op->nw = n, op->n_tok = (int32_t)n_tok, op->cols = w->n_cols, op->flag = src, op->x = x;
    op->xs = w->n_cols, op->nch = (int32_t)(w->n_cols / 32);
    mk_tiling(op, w->row_bytes);
    if (src != SRC_GLOBAL && (popped || copied)) { /* recompute the source per block */
        op->x = pv.x, op->xs = pv.xs, op->nw_w = pv.nw_w, op->eps = pv.eps;
        op->out = popped ? pv.out : NULL; /* the norm's output is written once */
        mk_rd(mt, pv.x, (size_t)((n_tok - 1) * pv.xs + w->n_cols) * 4);
        if (popped) mk_wr(mt, pv.out, (size_t)(n_tok * w->n_cols) * 4);
    } else if (src == SRC_GLOBAL && !fl) {
        mk_use_act(m, op, mt, n_tok, w->n_cols, 0);
    } else {
        mk_rd(mt, x, (size_t)(n_tok * w->n_cols) * 4);
    }
    for (int i = 0; i < n; i++) {
        if (ws[i]->type != t || ws[i]->n_cols != w->n_cols || ws[i]->row_bytes != w->row_bytes) return mk_refuse(m);
        op->w[i] = (const uint8_t *)ws[i]->data, op->row_bytes[i] = ws[i]->row_bytes, op->rows[i] = ws[i]->n_rows;
        op->y[i] = ys[i], op->ldy[i] = ldys[i], op->add[i] = adds[i];
        size_t yb = (size_t)((n_tok - 1) * ldys[i] + ws[i]->n_rows) * 4;
        mk_wr(mt, ys[i], yb);
        if (adds[i]) mk_wr(mt, adds[i], yb), mk_rd(mt, adds[i], yb);
    }
    return HEARTH_OK;
}

extern "C" int cuda_mega_rmsnorm(cuda_mega *m, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                                 int64_t n, const float *w, float eps, int q8) {
    mk_meta *mt;
    if (q8 && (n % 32 || ys != n)) return mk_refuse(m);
    mk_op *op = mk_push(m, MK_NORM, &mt);
    if (!op) return mk_refuse(m);
    op->x = x, op->xs = xs, op->out = y, op->os = ys, op->n_rows = n_rows, op->n = n, op->nw_w = w, op->eps = eps;
    op->flag = q8;
    mk_wr(mt, y, (size_t)((n_rows - 1) * ys + n) * 4);
    mk_rd(mt, x, (size_t)((n_rows - 1) * xs + n) * 4);
    if (q8) mk_use_act(m, op, mt, n_rows, n, 1);
    return HEARTH_OK;
}

extern "C" int cuda_mega_rope(cuda_mega *m, float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                              int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos,
                              const cuda_rope *r) {
    mk_meta *mt;
    mk_op *op = mk_push(m, MK_ROPE, &mt);
    if (!op) return mk_refuse(m);
    op->out = x, op->xs = stride, op->n_head = n_head, op->x2 = x2, op->stride2 = stride2;
    op->n_head2 = x2 ? n_head2 : 0, op->n_tok = (int32_t)n_tok, op->head_dim = head_dim, op->pos = pos, op->rope = *r;
    size_t b1 = (size_t)((n_tok - 1) * stride + (int64_t)n_head * head_dim) * 4;
    mk_wr(mt, x, b1), mk_rd(mt, x, b1);
    if (x2) {
        size_t b2 = (size_t)((n_tok - 1) * stride2 + (int64_t)n_head2 * head_dim) * 4;
        mk_wr(mt, x2, b2), mk_rd(mt, x2, b2);
    }
    return HEARTH_OK;
}

extern "C" int cuda_mega_kv_store(cuda_mega *m, const cuda_kv *kv, const float *k, int64_t ks, const float *v,
                                  int64_t vs, int64_t n_tok, const int32_t *pos, const int32_t *seq) {
    mk_meta *mt;
    if (kv->type == QT_Q8_0 && kv->kv_dim % 32) return mk_refuse(m);
    mk_op *r = m->n_ops ? &m->ops[m->n_ops - 1] : NULL;
    if (r && r->kind == MK_ROPE && !r->kc && r->x2 == k && r->stride2 == ks && r->n_tok == n_tok && r->pos == pos &&
        r->rope.n_rot == r->head_dim && (int64_t)r->n_head2 * r->head_dim == kv->kv_dim && kv->type != QT_Q8_0) {
        /* the rotation of k stores it too (and v): one pass, no barrier between */
        mt = &m->meta[m->n_ops - 1];
        r->kc = (uint8_t *)kv->k, r->vc = (uint8_t *)kv->v, r->kv_type = kv->type, r->kv_dim = kv->kv_dim;
        r->kv_row_bytes = kv->row_bytes, r->n_ctx = kv->n_ctx, r->aux = v, r->as = vs, r->seq = seq;
        mk_wr(mt, kv->k, 1), mk_wr(mt, kv->v, 1), mk_rd(mt, v, (size_t)((n_tok - 1) * vs + kv->kv_dim) * 4);
        return HEARTH_OK;
    }
    mk_op *op = mk_push(m, MK_KV, &mt);
    if (!op) return mk_refuse(m);
    op->kc = (uint8_t *)kv->k, op->vc = (uint8_t *)kv->v, op->kv_type = kv->type, op->kv_dim = kv->kv_dim;
    op->kv_row_bytes = kv->row_bytes, op->n_ctx = kv->n_ctx, op->x = k, op->xs = ks, op->aux = v, op->as = vs;
    op->n_tok = (int32_t)n_tok, op->pos = pos, op->seq = seq;
    mk_wr(mt, kv->k, 1), mk_wr(mt, kv->v, 1);
    mk_rd(mt, k, (size_t)((n_tok - 1) * ks + kv->kv_dim) * 4), mk_rd(mt, v, (size_t)((n_tok - 1) * vs + kv->kv_dim) * 4);
    return HEARTH_OK;
}

/* ---- MK_ATTN_DEC: RoPE + KV store + attention + merge as one op (cu_mega_attn.cuh) ---- */

static bool mk_overlap(const void *a, size_t na, const void *b, size_t nb) {
    const char *x = (const char *)a, *y = (const char *)b;
    return x < y + nb && y < x + na;
}

/* The RoPE of q / k (and the KV store) recorded just before attention a, when they can
 * become one MK_ATTN_DEC op: *r the rope op, *n_pop the ops to drop, the v rows (*v, *vs)
 * and the sequences (*seq). */
static bool mk_adec_source(cuda_mega *m, const cuda_attn *a, const float *q, int64_t qs, mk_op **r, int *n_pop,
                           const float **v, int64_t *vs, const int32_t **seq) {
    const cuda_kv *kv = a->kv;
    if (m->n_ops < 1) return false;
    mk_op *st = &m->ops[m->n_ops - 1], *ro = st;
    *n_pop = 1;
    if (st->kind == MK_KV && m->n_ops >= 2) ro = &m->ops[m->n_ops - 2], *n_pop = 2;
    else st = NULL;
    if (ro->kind != MK_ROPE || !ro->x2 || ro->out != q || ro->xs != qs || ro->n_tok != a->n_tok ||
        ro->n_head != a->n_head || ro->n_head2 != a->n_head_kv || ro->pos != a->pos)
        return false;
    if (st) { /* a separate KV store of the rotated k */
        if (ro->kc || st->x != ro->x2 || st->xs != ro->stride2 || st->n_tok != a->n_tok || st->pos != a->pos)
            return false;
        ro = st; /* the cache fields, v and seq below */
    } else if (!ro->kc) {
        return false; /* the store is not recorded yet */
    }
    if (ro->kc != (uint8_t *)kv->k || ro->vc != (uint8_t *)kv->v || ro->kv_type != kv->type ||
        ro->kv_row_bytes != kv->row_bytes || ro->n_ctx != kv->n_ctx || ro->kv_dim != kv->kv_dim || ro->seq != a->seq)
        return false;
    *v = ro->aux, *vs = ro->as, *seq = ro->seq;
    *r = st ? &m->ops[m->n_ops - 2] : ro;
    return true;
}

/* Tries to record RoPE + KV store + attention a as one MK_ATTN_DEC op (conditions in
 * docs/cuda.md); true when it did. Otherwise nothing changed. */
static bool mk_adec(cuda_mega *m, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os) {
    const cuda_kv *kv = a->kv;
    int32_t hd = a->head_dim_k, bucket = a->max_pos_host + 1;
    int64_t n_tok = a->n_tok;
    if (m->adec_mode == 0 || m->bad || n_tok < 1 || n_tok > MK_T || a->n_head_kv <= 0 || a->n_head % a->n_head_kv ||
        a->head_dim_v != hd || hd % 32 || hd <= 0 || hd > 256 || a->window < 0 || bucket < 1 || bucket > MA_MAXC ||
        (kv->type != QT_F16 && kv->type != QT_F32) || kv->kv_dim != (int64_t)a->n_head_kv * hd ||
        ((uintptr_t)kv->k | (uintptr_t)kv->v | kv->row_bytes) % 16)
        return false;
    mk_op *r;
    int n_pop;
    const float *v;
    int64_t vs;
    const int32_t *seq;
    if (!mk_adec_source(m, a, q, qs, &r, &n_pop, &v, &vs, &seq) || r->rope.n_rot != hd || r->head_dim != hd) return false;
    const float *k = r->x2;
    int64_t ks = r->stride2;
    size_t qb = (size_t)((n_tok - 1) * qs + (int64_t)a->n_head * hd) * 4;
    size_t kb = (size_t)((n_tok - 1) * ks + kv->kv_dim) * 4, vb = (size_t)((n_tok - 1) * vs + kv->kv_dim) * 4;
    size_t ob = (size_t)((n_tok - 1) * os + (int64_t)a->n_head * hd) * 4;
    if (mk_overlap(out, ob, q, qb) || mk_overlap(out, ob, k, kb) || mk_overlap(out, ob, v, vb)) return false;
    int32_t esz = kv->type == QT_F16 ? 2 : 4, cap = (int64_t)bucket < kv->n_ctx ? bucket : (int32_t)kv->n_ctx;
    int32_t fixed = ma_layout_of((int32_t)n_tok, hd, esz, cap, 0).end;
    if (cap < 1 || fixed > MK_ATT_SMEM) return false;
    int32_t stage = (MK_ATT_SMEM - fixed) / (2 * hd * esz);
    mk_op ro = *r; /* popped below */
    m->n_ops -= n_pop;
    mk_meta *mt;
    mk_op *op = mk_push(m, MK_ATTN_DEC, &mt);
    if (!op) return false; /* m->bad: the caller refuses */
    op->x = q, op->xs = qs, op->x2 = (float *)k, op->stride2 = ks, op->aux = v, op->as = vs, op->out = out, op->os = os;
    op->n_tok = (int32_t)n_tok, op->n_head = a->n_head, op->n_head2 = a->n_head_kv, op->head_dim = hd;
    op->pos = a->pos, op->seq = seq, op->rope = ro.rope;
    op->kc = (uint8_t *)kv->k, op->vc = (uint8_t *)kv->v, op->kv_type = kv->type, op->kv_dim = kv->kv_dim;
    op->kv_row_bytes = kv->row_bytes, op->n_ctx = kv->n_ctx;
    op->ad_scale = a->scale, op->ad_softcap = a->softcap, op->ad_window = a->window, op->ad_cap = cap;
    op->ad_stage = stage < cap ? stage : cap;
    op->ad_flags = ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 == 0 && qs % 4 == 0 && ks % 4 == 0 && vs % 4 == 0
                       ? MA_CP16
                       : 0;
    mk_rd(mt, q, qb), mk_rd(mt, k, kb), mk_rd(mt, v, vb);
    mk_rd(mt, kv->k, 1), mk_rd(mt, kv->v, 1), mk_wr(mt, kv->k, 1), mk_wr(mt, kv->v, 1);
    mk_wr(mt, out, ob);
    return true;
}

/* Links the MK_ATTN_DEC ops of the program: MA_HAVEPS where an earlier one read the same
 * positions and sequences (every block runs every op in order). (An L2 prefetch of the next
 * layer's cells by each op was measured slower: 8.46 vs 8.25 us per op.) */
static void mk_adec_link(cuda_mega *m) {
    const mk_op *prev = NULL;
    for (int i = 0; i < m->n_ops; i++) {
        mk_op *op = &m->ops[i];
        if (op->kind != MK_ATTN_DEC) continue;
        op->ad_flags &= ~MA_HAVEPS;
        if (prev && prev->pos == op->pos && prev->seq == op->seq && prev->n_tok == op->n_tok)
            op->ad_flags |= MA_HAVEPS;
        prev = op;
    }
}

/* True when the ops after op i read [p, p + n) before one of them writes a range holding
 * all of it (unknown read sets count as reads). */
static bool mk_read_later(const cuda_mega *m, int i, const void *p, size_t n) {
    mk_rng r = { p, n };
    for (int j = i + 1; j < m->n_ops; j++) {
        const mk_meta *mt = &m->meta[j];
        if (rng_hit(mt->rd, mt->n_rd, &r, 1)) return true;
        for (int w = 0; w < mt->n_wr && mt->n_wr <= MK_RW; w++) {
            const char *a = (const char *)mt->wr[w].p, *b = (const char *)p;
            if (a <= b && b + n <= a + mt->wr[w].n) return false;
        }
    }
    return false;
}

/* MK_ATTN_DEC leaves q and k unrotated in their buffers. Where a later op reads them (no
 * forward pass of hearth does: every layer writes them afresh), the in-place RoPE of both
 * is inserted after the op. Returns false when that needs memory it cannot get. */
static bool mk_adec_fix(cuda_mega *m) {
    for (int i = 0; i < m->n_ops; i++) {
        mk_op *op = &m->ops[i];
        if (op->kind != MK_ATTN_DEC) continue;
        size_t qb = (size_t)((op->n_tok - 1) * op->xs + (int64_t)op->n_head * op->head_dim) * 4;
        size_t kb = (size_t)((op->n_tok - 1) * op->stride2 + (int64_t)op->n_head2 * op->head_dim) * 4;
        if (m->adec_mode != 2 && !mk_read_later(m, i, op->x, qb) && !mk_read_later(m, i, op->x2, kb)) continue;
        mk_meta *mt;
        if (!mk_push(m, MK_ROPE, &mt)) return false; /* room at the end, then moved to i + 1 */
        memmove(&m->ops[i + 2], &m->ops[i + 1], (size_t)(m->n_ops - i - 2) * sizeof *m->ops);
        memmove(&m->meta[i + 2], &m->meta[i + 1], (size_t)(m->n_ops - i - 2) * sizeof *m->meta);
        op = &m->ops[i];
        mk_op *r = &m->ops[i + 1];
        mt = &m->meta[i + 1];
        memset(r, 0, sizeof *r);
        memset(mt, 0, sizeof *mt);
        r->kind = MK_ROPE, r->out = (float *)op->x, r->xs = op->xs, r->n_head = op->n_head, r->x2 = op->x2;
        r->stride2 = op->stride2, r->n_head2 = op->n_head2, r->n_tok = op->n_tok, r->head_dim = op->head_dim;
        r->pos = op->pos, r->rope = op->rope;
        mk_wr(mt, op->x, qb), mk_rd(mt, op->x, qb), mk_wr(mt, op->x2, kb), mk_rd(mt, op->x2, kb);
        i++;
    }
    return true;
}

extern "C" int cuda_mega_attention(cuda_mega *m, const cuda_attn *a, const float *q, int64_t qs, float *out,
                                   int64_t os) {
    mk_meta *mt;
    if (mk_adec(m, a, q, qs, out, os)) return HEARTH_OK;
    if (m->bad) return mk_refuse(m);
    if (a->n_tok < 1 || a->n_tok > AT_SMALL_BATCH || a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return mk_refuse(m);
    at_args A;
    unsigned gx, gy;
    size_t part, smem;
    at_plan(m->c, a, q, qs, out, os, NULL, &A, &gx, &gy, &part, &smem);
    if (smem > MK_ATT_SMEM) return mk_refuse(m); /* the act region */
    mk_op *op = mk_push(m, MK_ATTN, &mt);
    if (!op) return mk_refuse(m);
    op->at = A, op->at_gx = gx, op->at_gy = gy, op->n_tok = a->n_tok;
    mk_rd(mt, a->kv->k, 1), mk_rd(mt, a->kv->v, 1);
    mk_rd(mt, q, (size_t)((a->n_tok - 1) * qs + (int64_t)a->n_head * a->head_dim_k) * 4);
    size_t ob = (size_t)((a->n_tok - 1) * os + (int64_t)a->n_head * a->head_dim_v) * 4;
    if (gy == 1) {
        mk_wr(mt, out, ob);
        return HEARTH_OK;
    }
    mk_wr(mt, &mk_part_tag, 1);
    mt->uses_part = 1;
    if (part > m->part_need) m->part_need = part;
    mk_meta *cm;
    mk_op *c = mk_push(m, MK_COMBINE, &cm);
    if (!c) return mk_refuse(m);
    c->at = A, c->n_tok = a->n_tok, c->n_head = a->n_head, c->at_split = (int32_t)gy, c->head_dim = a->head_dim_v;
    c->out = out, c->os = os;
    mk_rd(cm, &mk_part_tag, 1);
    cm->uses_part = 2;
    mk_wr(cm, out, ob);
    return HEARTH_OK;
}

extern "C" int cuda_mega_copy_rows(cuda_mega *m, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok,
                                   int64_t n, const float *bias) {
    mk_meta *mt;
    mk_op *op = mk_push(m, MK_COPY, &mt);
    if (!op) return mk_refuse(m);
    op->x = x, op->xs = xs, op->out = y, op->os = ys, op->n_tok = (int32_t)n_tok, op->n = n, op->aux = bias;
    mk_rd(mt, x, (size_t)((n_tok - 1) * xs + n) * 4);
    mk_wr(mt, y, (size_t)((n_tok - 1) * ys + n) * 4);
    return HEARTH_OK;
}

extern "C" int cuda_mega_eltwise(cuda_mega *m, int kind, float *y, const float *x, int64_t n, float s) {
    mk_meta *mt;
    mk_op *op = mk_push(m, MK_ELT, &mt);
    if (!op) return mk_refuse(m);
    op->flag = kind, op->out = y, op->x = x, op->n = n, op->f0 = s;
    mk_rd(mt, y, (size_t)n * 4), mk_wr(mt, y, (size_t)n * 4), mk_rd(mt, x, (size_t)n * 4);
    return HEARTH_OK;
}

extern "C" int cuda_mega_glu(cuda_mega *m, int gelu, const float *gate, int64_t gs, const float *up, int64_t us,
                             float *out, int64_t os, int64_t n_tok, int64_t n, int q8) {
    mk_meta *mt;
    if (q8 && (n % 32 || os != n)) return mk_refuse(m);
    mk_op *op = mk_push(m, MK_GLU, &mt);
    if (!op) return mk_refuse(m);
    op->flag = (gelu ? 1 : 0) | (q8 ? 2 : 0), op->x = gate, op->xs = gs, op->aux = up, op->as = us, op->out = out;
    op->os = os, op->n_tok = (int32_t)n_tok, op->n = n;
    mk_rd(mt, gate, (size_t)((n_tok - 1) * gs + n) * 4), mk_rd(mt, up, (size_t)((n_tok - 1) * us + n) * 4);
    mk_wr(mt, out, (size_t)((n_tok - 1) * os + n) * 4);
    if (q8) mk_use_act(m, op, mt, n_tok, n, 1);
    return HEARTH_OK;
}

/* Barriers of the recorded program; pointers to the mega-owned buffers.
 * Returns the number of grid barriers a run executes. */
int cu_mega_plan(cuda_mega *m) {
    int n_sync = 0, group = 0;
    if (!mk_adec_fix(m)) /* out of host memory (a few hundred bytes): NaN, never wrong numbers */
        for (int i = 0; i < m->n_ops; i++)
            if (m->ops[i].kind == MK_ATTN_DEC) m->ops[i].ad_flags |= MA_POISON;
    mk_adec_link(m);
    /* A barrier after every op unless HEARTH_CUDA_MEGA_SYNC=0: leaving out the barriers
     * between ops that share no memory (below) made Q4_K_M steps fail or differ (a race not
     * found yet: open), and saved little. */
    bool sync_all = m->c->knobs.mega_sync;
    for (int i = 0; i < m->n_ops; i++) {
        mk_op *op = &m->ops[i];
        mk_meta *mt = &m->meta[i];
        if (mt->uses_act) {
            int64_t nch = op->n / 32;
            op->xq = (int8_t *)m->act;
            op->xd = (float *)((uint8_t *)m->act + al256((size_t)(op->n_tok * op->n)));
            op->xsum = (int2 *)((uint8_t *)m->act + al256((size_t)(op->n_tok * op->n)) + al256((size_t)(op->n_tok * nch) * 4));
        }
        if (mt->uses_part) op->at.part = (float *)m->part;
        /* a barrier before op i+1 unless it shares nothing with the ops since the last one */
        if (i + 1 < m->n_ops) {
            bool indep = true;
            for (int j = group; j <= i && indep; j++) indep = mk_independent(&m->meta[j], &m->meta[i + 1]);
            op->sync = sync_all || !indep;
            if (op->sync) n_sync++, group = i + 1;
        }
    }
    return n_sync;
}

