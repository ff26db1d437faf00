/* be_cuda_fuse.c — rewriting a recorded step of the CUDA backend (be_cuda.c) before it runs,
 * so that a decode step needs fewer kernels. Every rule checks the exact data flow (same
 * pointers and shapes, no output overlapping an input that is still read) and leaves the
 * op list meaning the same thing; ops folded into others become CK_NOP. Order (cb_rewrite):
 * the pairwise fusions (cb_fuse), products merged into one launch (cb_merge), norms / GLUs
 * folded into quantized products (cb_fold), RoPE (+ KV store) into the q/k/v products
 * (cb_qkvr_rules) and norms / GLUs into float products (cb_mvf_rules).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/be_cuda_int.h"
#include "backend/cuda/cuda_mvf.h"
#include "backend/cuda/cuda_mvr.h"

/* ---- fusion: rewrites the recorded step before it runs ------------------------------------
 * Patterns of the forward pass that the kernels can do in fewer passes:
 *  - RMSNorm or GLU whose output feeds a matrix-vector product: it also quantizes it;
 *  - consecutive products over the same input (q/k/v, gate/up): quantized once;
 *  - a product followed by "residual += product": added in the product's epilogue;
 *  - RoPE of q then of k at the same positions: one launch;
 *  - (cb_merge) products sharing quantized activations: one launch.
 * Each rewrite checks the exact data flow (same pointers, shapes, no overlapping writes). */
static bool overlaps(const void *a, int64_t an, const void *b, int64_t bn) {
    const float *x = a, *y = b;
    return x < y + bn && y < x + an;
}

static bool cb_is_mv_q(const cb_cmd *k) {
    return k->kind == CK_MATMUL && k->w.type != QT_F32 && k->w.type != QT_F16 && k->w.type != QT_BF16 &&
           cuda_matmul_is_mv(&k->w, k->n[0]);
}

/* A product over int8 activations: quantized weights, decode (mat-vec) or prefill (the
 * int8 tensor-core GEMM, cu_gemm.cu); both read the same activation scratch. */
static bool cb_is_q(const cb_cmd *k) {
    return k->kind == CK_MATMUL && k->w.type != QT_F32 && k->w.type != QT_F16 && k->w.type != QT_BF16;
}

/* RoPE of q and k (k: rope p[2]) followed by the KV store of that k: the rotation stores
 * k and v too (whole heads rotated, float cache, v apart from q and k). */
static void cb_fuse_kv(cb_cmd *r, cb_cmd *kv) {
    int64_t n_tok = r->n[0];
    if (!kv || kv->kind != CK_KV_STORE || kv->p[0] != r->p[2] || kv->n[0] != r->n[4] || kv->n[2] != n_tok ||
        kv->off[0] != r->off[0] || (kv->kv.type != QT_F16 && kv->kv.type != QT_F32) || r->rope.n_rot != r->n[3] ||
        r->n[5] * r->n[3] != kv->kv.kv_dim)
        return;
    int64_t vn = (n_tok - 1) * kv->n[1] + kv->kv.kv_dim;
    if (overlaps(kv->p[2], vn, r->p[1], (n_tok - 1) * r->n[1] + r->n[2] * r->n[3]) ||
        overlaps(kv->p[2], vn, r->p[2], (n_tok - 1) * r->n[4] + r->n[5] * r->n[3]))
        return;
    r->flag |= 4, r->kv = kv->kv, r->off[1] = kv->off[1], r->p[0] = kv->p[2], r->n[6] = kv->n[1];
    kv->kind = CK_NOP;
}

/* ---- the fused decode attention (RoPE + KV store + attention + combine, one launch) ----
 * It reads q and k without rotating them in place, so the rewrite also checks that no
 * later op of the step reads them before something overwrites them whole (the forward
 * pass writes q and k afresh in every layer). */

/* Whether op k may read the floats [p, p + n) (conservative extents per kind). */
static bool cb_reads(const cb_cmd *k, const void *p, int64_t n) {
    const int64_t *m = k->n;
    switch (k->kind) {
    case CK_MATMUL:
        return overlaps(k->p[0], m[0] * k->w.n_cols, p, n) || (k->p[3] && overlaps(k->p[3], m[0] * m[1], p, n));
    case CK_RMSNORM:
        return overlaps(k->p[0], (m[2] - 1) * m[0] + m[3], p, n);
    case CK_ROPE:
        return overlaps(k->p[1], (m[0] - 1) * m[1] + m[2] * m[3], p, n) ||
               (k->p[2] && overlaps(k->p[2], (m[0] - 1) * m[4] + m[5] * m[3], p, n)) ||
               ((k->flag & 4) && overlaps(k->p[0], (m[0] - 1) * m[6] + k->kv.kv_dim, p, n));
    case CK_KV_STORE:
        return overlaps(k->p[0], (m[2] - 1) * m[0] + k->kv.kv_dim, p, n) ||
               overlaps(k->p[2], (m[2] - 1) * m[1] + k->kv.kv_dim, p, n);
    case CK_ATTN: {
        int64_t t = k->at.n_tok, hd = (int64_t)k->at.head_dim_k, kvd = k->kv.kv_dim;
        return overlaps(k->p[0], (t - 1) * m[0] + k->at.n_head * hd, p, n) ||
               ((k->flag & 2) && (overlaps(k->p[2], (t - 1) * m[2] + kvd, p, n) ||
                                  overlaps(k->p[4], (t - 1) * m[4] + kvd, p, n)));
    }
    case CK_COPY_ROWS:
        return overlaps(k->p[0], (m[2] - 1) * m[0] + m[3], p, n);
    case CK_ADD:
        return overlaps(k->p[0], m[0], p, n) || overlaps(k->p[1], m[0], p, n);
    case CK_SCALE:
    case CK_SOFTCAP:
        return overlaps(k->p[1], m[0], p, n);
    case CK_GLU:
        return overlaps(k->p[0], (m[3] - 1) * m[0] + m[4], p, n) || overlaps(k->p[2], (m[3] - 1) * m[1] + m[4], p, n);
    case CK_GET_ROWS:
    case CK_KV_COPY:
    case CK_NOP:
        return false;
    }
    return true;
}

/* Whether op k overwrites all of [p, p + n) (contiguous outputs only). */
static bool cb_covers(const cb_cmd *k, const void *p, int64_t n) {
    const float *y = k->p[1], *a = p;
    int64_t len = -1;
    if (k->kind == CK_MATMUL && k->n[1] == k->w.n_rows) len = k->n[0] * k->w.n_rows;
    else if (k->kind == CK_COPY_ROWS && k->n[1] == k->n[3]) len = k->n[2] * k->n[3];
    else if (k->kind == CK_GET_ROWS) len = k->n[0] * k->w.n_cols;
    return len > 0 && y <= a && a + n <= y + len;
}

/* Whether [p, p + n) is not read by the ops after index i before it is overwritten whole
 * (unknown, so false, when the commands are a segment and later ones are not recorded yet). */
static bool cb_dead_after(const cuda_be *c, size_t i, const void *p, int64_t n) {
    for (size_t j = i + 1; j < c->n_cmd; j++) {
        if (cb_reads(&c->cmd[j], p, n)) return false;
        if (cb_covers(&c->cmd[j], p, n)) return true;
    }
    return !c->partial;
}

/* Whether the q that RoPE command i rotates is written by a float-weight (F32/F16/BF16)
 * product: the last product before i whose output (its own or one of a multi-product's) is
 * that q. */
static bool cb_q_from_float(const cuda_be *c, size_t i) {
    const void *q = c->cmd[i].p[1];
    for (size_t j = i; j-- > 0;) {
        const cb_cmd *m = &c->cmd[j];
        if (m->kind != CK_MATMUL) continue;
        const cuda_weight *w = m->p[1] == q ? &m->w : NULL;
        for (int64_t x = 0; x < m->n_multi && !w; x++)
            if (m->yx[x] == q) w = &m->wx[x];
        if (w) return w->type == QT_F32 || w->type == QT_F16 || w->type == QT_BF16;
    }
    return false;
}

/* The fused decode attention: HEARTH_CUDA_DATTN=1 always, =0 never; by default after float
 * q/k/v products, where at short contexts it runs cu_attn_dec_rope (one kernel fewer per
 * layer, F16 tg128 +1.1% on an H200, session 17). After quantized products it would take the RoPE
 * from the q/k/v + RoPE product (cu_mvr.cu) and measured 3-6% slower (docs/performance.md). */
static bool cb_dattn_on(const cuda_be *c, size_t i) {
    return c->kn.dattn == 1 || (c->kn.dattn == 2 && cb_q_from_float(c, i));
}

/* Whether a step of n_tok tokens takes the fusions that pay for one token but not for
 * larger batches (HEARTH_CUDA_FUSE_T, default 4): the q/k/v + RoPE epilogue, the float
 * products' GLU and norm folds and the fused decode attention. Each has the separate
 * kernels' arithmetic, so a sequence keeps its bits alone and in a batch either way.
 * Measured on an H200 (hearth bench -npl 8, session 20), each turned off for the whole
 * step: Q4_0 x8 +2-3% without the RoPE epilogue, Q4_K_M +1.4%; F16 x8 +3% without the
 * GLU/norm folds, +2-3% without the fused attention; all of them slower for one token,
 * and for 4 about equal or slower (F16 folds -7%). */
static bool cb_fuse_tokens_ok(const cuda_be *c, int64_t n_tok) {
    return n_tok <= (c->kn.fuse_t > 0 ? c->kn.fuse_t : 4);
}

/* The first op at or after j that is not a NOP (n_cmd when none). */
static size_t cb_next_op(const cuda_be *c, size_t j) {
    while (j < c->n_cmd && c->cmd[j].kind == CK_NOP) j++;
    return j;
}

/* RoPE of q and k (r = cmd[i], q+k merged; with the KV store folded in (flag 4) or followed
 * by the KV store of that k) followed by the attention over the same q, positions,
 * sequences and cache: one fused op in the attention's place (so the o product's rule
 * still sees the attention just before it). Not with the persistent kernel. */
static void cb_fuse_attn(cuda_be *c, size_t i) {
    cb_cmd *r = &c->cmd[i], *kv = NULL;
    if (c->mega || !r->p[2] || !cb_dattn_on(c, i) || !cb_fuse_tokens_ok(c, r->n[0])) return;
    int64_t n_tok = r->n[0], hd = r->n[3];
    size_t j = cb_next_op(c, i + 1);
    if (!(r->flag & 4)) {
        if (j >= c->n_cmd || c->cmd[j].kind != CK_KV_STORE) return;
        kv = &c->cmd[j];
        if (kv->p[0] != r->p[2] || kv->n[0] != r->n[4] || kv->n[2] != n_tok || kv->off[0] != r->off[0]) return;
        j = cb_next_op(c, j + 1);
    }
    if (j >= c->n_cmd || c->cmd[j].kind != CK_ATTN) return;
    cb_cmd *a = &c->cmd[j];
    const cuda_kv *kvs = kv ? &kv->kv : &r->kv;
    const void *v = kv ? kv->p[2] : r->p[0];
    int64_t vs = kv ? kv->n[1] : r->n[6], seq_off = kv ? kv->off[1] : r->off[1];
    cuda_attn at = a->at;
    at.kv = kvs;
    if (a->flag || a->p[0] != r->p[1] || a->n[0] != r->n[1] || a->off[0] != r->off[0] || a->off[1] != seq_off ||
        memcmp(&a->kv, kvs, sizeof *kvs) != 0 || at.n_tok != n_tok || at.n_head != r->n[2] ||
        at.n_head_kv != r->n[5] || at.head_dim_k != hd || !cuda_dattn_supported(&at, &r->rope, 0))
        return;
    int64_t qn = (n_tok - 1) * r->n[1] + r->n[2] * hd, kn = (n_tok - 1) * r->n[4] + r->n[5] * hd;
    int64_t vn = (n_tok - 1) * vs + kvs->kv_dim, on = (n_tok - 1) * a->n[1] + (int64_t)at.n_head * at.head_dim_v;
    if (overlaps(v, vn, r->p[1], qn) || overlaps(v, vn, r->p[2], kn) || overlaps(a->p[1], on, r->p[1], qn) ||
        overlaps(a->p[1], on, r->p[2], kn) || overlaps(a->p[1], on, v, vn) || !cb_dead_after(c, j, r->p[1], qn) ||
        !cb_dead_after(c, j, r->p[2], kn))
        return;
    a->flag |= 2 | (c->kn.dattn == 2 ? CB_AT_DEC_ONLY : 0), a->rope = r->rope;
    a->p[2] = r->p[2], a->n[2] = r->n[4], a->p[4] = v, a->n[4] = vs;
    r->kind = CK_NOP;
    if (kv) kv->kind = CK_NOP;
}

/* Whether the attention output is quantized by the attention's combine pass for the product
 * that reads it (HEARTH_CUDA_ATTN_Q=0: by the product's own quantization kernel). */
static bool cb_attn_q(const cuda_be *c) {
    return c->kn.attn_q;
}

static void cb_fuse(cuda_be *c) {
    for (size_t i = 0; i < c->n_cmd; i++) {
        cb_cmd *k = &c->cmd[i], *nx = i + 1 < c->n_cmd ? &c->cmd[i + 1] : NULL;
        if (k->kind == CK_ROPE && nx && nx->kind == CK_ROPE && !k->p[2] && nx->off[0] == k->off[0] &&
            nx->n[0] == k->n[0] && nx->n[3] == k->n[3] && memcmp(&nx->rope, &k->rope, sizeof k->rope) == 0 &&
            !overlaps(k->p[1], k->n[0] * k->n[1], nx->p[1], nx->n[0] * nx->n[1])) {
            k->p[2] = nx->p[1], k->n[4] = nx->n[1], k->n[5] = nx->n[2]; /* q and k in one pass */
            nx->kind = CK_NOP;
            cb_fuse_kv(k, i + 2 < c->n_cmd ? &c->cmd[i + 2] : NULL);
            cb_fuse_attn(c, i);
            continue;
        }
        if (k->kind != CK_MATMUL) continue;
        int64_t n_tok = k->n[0], ldy = k->n[1], rows = k->w.n_rows, cols = k->w.n_cols;
        if (nx && nx->kind == CK_ADD && nx->p[0] == k->p[1] && ldy == rows && nx->n[0] == n_tok * rows &&
            !overlaps(nx->p[1], nx->n[0], k->p[0], n_tok * cols)) {
            k->p[3] = nx->p[1];
            nx->kind = CK_NOP;
        }
        if (!cb_is_q(k) || i == 0) continue; /* decode products and prefill (tensor-core) ones */
        cb_cmd *pv = &c->cmd[i - 1];
        if (pv->kind == CK_RMSNORM && pv->p[1] == k->p[0] && pv->n[2] == n_tok && pv->n[3] == cols &&
            pv->n[1] == cols && cols % 32 == 0) {
            pv->flag = 1;
            k->flag = 1;
        } else if (pv->kind == CK_GLU && pv->p[1] == k->p[0] && pv->n[3] == n_tok && pv->n[4] == cols &&
                   pv->n[2] == cols && cols % 32 == 0) {
            pv->flag |= 2; /* the GLU quantizes its output for this product */
            k->flag = 1;
        } else if (pv->kind == CK_ATTN && cb_is_mv_q(k) && !c->mega && cb_attn_q(c) && pv->p[1] == k->p[0] &&
                   pv->at.n_tok == n_tok &&
                   pv->n[1] == cols && (int64_t)pv->at.n_head * pv->at.head_dim_v == cols &&
                   pv->at.head_dim_v % 32 == 0 && pv->at.head_dim_v <= 1024) {
            pv->flag |= 1; /* the attention quantizes its output for this product */
            k->flag = 1;
        } else if (cb_is_q(pv) && cb_is_mv_q(pv) == cb_is_mv_q(k) && pv->p[0] == k->p[0] && pv->n[0] == n_tok &&
                   pv->w.n_cols == cols &&
                   !overlaps(pv->p[1], n_tok * pv->n[1], k->p[0], n_tok * cols) &&
                   (!pv->p[3] || !overlaps(pv->p[3], n_tok * pv->n[1], k->p[0], n_tok * cols))) {
            k->flag = 1;
        }
    }
}

/* Products that reuse the previous one's activations (same x, type and row length) join
 * it in one launch, up to three (q/k/v, gate/up): decode mat-vecs and, at prefill, the int8
 * tensor-core products (cu_gemm_quant_multi; the 256-row k/v products alone fill only part
 * of the GPU) and the F16 ones (cu_gemm_float_multi, one f16 conversion of x). */
static bool cb_is_mv(const cb_cmd *k) {
    return k->kind == CK_MATMUL && cuda_matmul_is_mv(&k->w, k->n[0]);
}

/* True when matmul p's outputs leave x (n_tok x cols floats) untouched. */
static bool cb_keeps_x(const cb_cmd *p, const void *x, int64_t n_tok, int64_t cols) {
    return !overlaps(p->p[1], n_tok * p->n[1], x, n_tok * cols) &&
           (!p->p[3] || !overlaps(p->p[3], n_tok * p->n[1], x, n_tok * cols));
}

static void cb_merge(cuda_be *c) {
    for (size_t i = 0; i < c->n_cmd; i++) {
        cb_cmd *k = &c->cmd[i];
        bool mv = cb_is_mv(k), q = cb_is_q(k), f16 = k->kind == CK_MATMUL && k->w.type == QT_F16;
        /* decode products, or quantized / F16 prefill ones (cu_gemm_float_multi) */
        if (mv ? k->n[0] > 8 : !(q || f16)) continue;
        for (size_t j = i + 1; j < c->n_cmd && k->n_multi < 2; j++) {
            cb_cmd *o = &c->cmd[j], *prev = &c->cmd[j - 1];
            /* quantized: o reuses the activations (so x is unchanged); float: check it */
            bool x_ok = q ? (o->flag & 1) : cb_keeps_x(prev, k->p[0], k->n[0], k->w.n_cols);
            if (o->kind != CK_MATMUL || cb_is_mv(o) != mv || !x_ok || o->p[0] != k->p[0] || o->n[0] != k->n[0] ||
                o->w.type != k->w.type || o->w.n_cols != k->w.n_cols)
                break;
            k->wx[k->n_multi] = o->w, k->yx[k->n_multi] = o->p[1], k->addx[k->n_multi] = o->p[3];
            k->ldyx[k->n_multi++] = o->n[1];
            o->kind = CK_NOP;
        }
    }
}

/* ---- folding the op before a product into it (after cb_merge; not for the persistent
 * kernel, which has no such forms):
 *  - an RMSNorm that quantizes for the (merged) product right after it: the product's
 *    blocks normalize and quantize its input themselves (flag 2; the norm's output is
 *    still written, so nothing needs to know whether it is read later);
 *  - gate and up merged into one product, then the GLU that quantizes for the next
 *    product: one kernel writes gate, up and the GLU output (flag 4).
 * Both need the product's outputs apart from the input its blocks read. */
/* True when no output of product k overlaps x (n floats). */
static bool cb_outs_apart(const cb_cmd *k, const void *x, int64_t n) {
    int64_t t = k->n[0];
    const void *ys[3] = { k->p[1], k->yx[0], k->yx[1] }, *as[3] = { k->p[3], k->addx[0], k->addx[1] };
    int64_t ld[3] = { k->n[1], k->ldyx[0], k->ldyx[1] };
    for (int i = 0; i <= k->n_multi && i < 3; i++)
        if (overlaps(ys[i], t * ld[i], x, n) || (as[i] && overlaps(as[i], t * ld[i], x, n))) return false;
    return true;
}

static void cb_fold_glu(cb_cmd *k, cb_cmd *g) {
    int64_t t = k->n[0], rows = k->w.n_rows;
    if (k->n_multi != 1 || k->p[3] || k->addx[0] || k->wx[0].n_rows != rows || g->kind != CK_GLU || !(g->flag & 2) ||
        g->n[3] != t || g->n[4] != rows || g->n[2] != rows)
        return;
    bool fw = g->p[0] == k->p[1] && g->n[0] == k->n[1] && g->p[2] == k->yx[0] && g->n[1] == k->ldyx[0];
    bool sw = g->p[0] == k->yx[0] && g->n[0] == k->ldyx[0] && g->p[2] == k->p[1] && g->n[1] == k->n[1];
    const void *x = (k->flag & 2) ? k->px[0] : k->p[0];
    int64_t xn = (k->flag & 2) ? (t - 1) * k->n[2] + k->w.n_cols : t * k->w.n_cols;
    if ((!fw && !sw) || overlaps(g->p[1], t * rows, x, xn) || overlaps(g->p[1], t * rows, k->p[1], t * k->n[1]) ||
        overlaps(g->p[1], t * rows, k->yx[0], t * k->ldyx[0]) || !cb_outs_apart(k, x, xn) ||
        ((k->flag & 2) && overlaps(g->p[1], t * rows, k->p[0], t * k->w.n_cols)))
        return;
    k->flag |= 4 | ((g->flag & 1) ? 8 : 0) | (sw ? 16 : 0);
    k->px[1] = g->p[1];
    g->kind = CK_NOP;
}

static void cb_fold(cuda_be *c) {
    if (c->mega) return;
    for (size_t i = 0; i < c->n_cmd; i++) {
        cb_cmd *r = &c->cmd[i];
        size_t j = cb_next_op(c, i + 1);
        if (j >= c->n_cmd) break;
        cb_cmd *k = &c->cmd[j];
        if (r->kind == CK_RMSNORM && r->flag == 1 && k->kind == CK_MATMUL && (k->flag & 1) && cb_is_mv_q(k) &&
            k->p[0] == r->p[1] && k->n[0] == r->n[2] && k->n[0] <= 8 && k->w.n_cols == r->n[3] && r->n[1] == r->n[3]) {
            int64_t t = k->n[0], xn = (t - 1) * r->n[0] + r->n[3];
            if (!overlaps(r->p[0], xn, r->p[1], t * r->n[3]) && cb_outs_apart(k, r->p[0], xn) &&
                cb_outs_apart(k, r->p[1], t * r->n[3])) {
                k->flag |= 2;
                k->px[0] = r->p[0], k->p[2] = r->p[2], k->f[0] = r->f[0], k->n[2] = r->n[0];
                r->kind = CK_NOP;
            }
        }
        if (r->kind == CK_MATMUL && cb_is_mv_q(r) && r->n[0] <= 8) cb_fold_glu(r, k);
    }
}

/* ---- float-weight decode products (cu_mvf.cu) ---------------------------------------------
 * After cb_merge, for products of F32/F16/BF16 weights:
 *  - a merged gate/up product followed by the GLU of its two outputs computes the GLU in its
 *    epilogue (flag 64, 128 = GELU; the GLU output in yx[1]/ldyx[1]); the GLU op goes;
 *  - the RMSNorm right before the product is folded into it (flag 32: p[0] = the norm's
 *    input, n[2] its row stride, p[2] the norm weights, f[0] eps, p[4]/n[3] the norm's
 *    output, which the kernel still writes for any later reader); the norm op goes. By
 *    default only where the four-row kernel applies the norm in its epilogue
 *    (cuda_mvf_enorm_ok, every weight of the launch); HEARTH_CUDA_MVF_FUSE=1 also folds it
 *    into the other kernels' prologue;
 *  - a norm that cannot be folded (in place, or too wide for the kernel's shared memory)
 *    runs the float multi-block norm (norm flag 2), whose arithmetic equals the fold's.
 * Every rewrite checks that no output of the fused kernel overlaps what it reads or what the
 * norm writes. Off with the persistent kernel and with HEARTH_CUDA_MVF_FUSE=0. */
static bool cb_is_mv_f(const cb_cmd *k) {
    return k->kind == CK_MATMUL && (k->w.type == QT_F32 || k->w.type == QT_F16 || k->w.type == QT_BF16) &&
           cuda_matmul_is_mv(&k->w, k->n[0]);
}

/* True when an output of matmul k (products, residual adds, GLU output) overlaps [p, p + n). */
static bool cb_mv_writes(const cb_cmd *k, const void *p, int64_t n) {
    int64_t t = k->n[0];
    if (overlaps(k->p[1], t * k->n[1], p, n) || (k->p[3] && overlaps(k->p[3], t * k->n[1], p, n))) return true;
    for (int64_t i = 0; i < k->n_multi; i++)
        if (overlaps(k->yx[i], t * k->ldyx[i], p, n) || (k->addx[i] && overlaps(k->addx[i], t * k->ldyx[i], p, n)))
            return true;
    return (k->flag & 64) && overlaps(k->yx[1], t * k->ldyx[1], p, n);
}

/* HEARTH_CUDA_MVF_FUSE: 0 off, 1 the GLU and the norm in any kernel, else (default) the
 * GLU, and the norm only in the four-row kernel's epilogue form: the prologue fold (every
 * block normalizing the activations before its product) measured slower than the
 * multi-block norm kernel (docs/performance.md). */
static int cb_mvf_fuse(const cuda_be *c) {
    return c->kn.mvf_fuse;
}

static void cb_mvf_glu(cuda_be *c, size_t i) {
    cb_cmd *k = &c->cmd[i];
    size_t j = i + 1;
    while (j < c->n_cmd && c->cmd[j].kind == CK_NOP) j++;
    cb_cmd *g = j < c->n_cmd ? &c->cmd[j] : NULL;
    int64_t n_tok = k->n[0];
    if (!g || g->kind != CK_GLU || (g->flag & ~1) || k->n_multi != 1 || k->p[3] || k->addx[0] || g->p[0] != k->p[1] ||
        g->n[0] != k->n[1] || g->p[2] != k->yx[0] || g->n[1] != k->ldyx[0] || g->n[3] != n_tok ||
        g->n[4] != k->w.n_rows || k->wx[0].n_rows != k->w.n_rows || g->n[4] > k->n[1] || g->n[4] > k->ldyx[0])
        return;
    int64_t on = (n_tok - 1) * g->n[2] + g->n[4];
    if (cb_mv_writes(k, g->p[1], on) || overlaps(g->p[1], on, k->p[0], n_tok * k->w.n_cols)) return;
    k->flag |= 64 | ((g->flag & 1) ? 128 : 0);
    k->yx[1] = g->p[1], k->ldyx[1] = g->n[2];
    g->kind = CK_NOP;
}

static void cb_mvf_norm(cuda_be *c, size_t i) {
    cb_cmd *k = &c->cmd[i];
    size_t h = i;
    while (h > 0 && c->cmd[h - 1].kind == CK_NOP) h--;
    cb_cmd *p = h > 0 ? &c->cmd[h - 1] : NULL;
    int64_t n_tok = k->n[0], cols = k->w.n_cols;
    if (!p || p->kind != CK_RMSNORM || p->flag || p->p[1] != k->p[0] || p->n[2] != n_tok || p->n[3] != cols ||
        p->n[1] != cols)
        return;
    int64_t xn = (n_tok - 1) * p->n[0] + cols, yn = n_tok * cols;
    bool en = cuda_mvf_enorm_ok(&c->kn, &k->w, p->p[0], p->n[0]); /* the epilogue form: every weight of the launch */
    for (int64_t j = 0; j < k->n_multi && en; j++) en = cuda_mvf_enorm_ok(&c->kn, &k->wx[j], p->p[0], p->n[0]);
    if (((cb_mvf_fuse(c) == 1 && cuda_mvf_norm_ok(&k->w, n_tok)) || en) && !overlaps(p->p[0], xn, p->p[1], yn) &&
        !cb_mv_writes(k, p->p[0], xn) && !cb_mv_writes(k, p->p[1], yn)) {
        k->flag |= 32;
        k->p[0] = p->p[0], k->n[2] = p->n[0], k->p[2] = p->p[2], k->p[4] = p->p[1], k->n[3] = cols, k->f[0] = p->f[0];
        p->kind = CK_NOP;
    } else {
        p->flag = 2;
    }
}

static void cb_mvf_rules(cuda_be *c) {
    if (c->mega || !cb_mvf_fuse(c)) return;
    for (size_t i = 0; i < c->n_cmd; i++) {
        if (!cb_is_mv_f(&c->cmd[i]) || !cb_fuse_tokens_ok(c, c->cmd[i].n[0])) continue;
        cb_mvf_glu(c, i);
        cb_mvf_norm(c, i);
    }
}


/* ---- RoPE (+ KV store) in the epilogue of the q/k/v products (cu_mvr.cu) -----------------
 * A RoPE of q and k (cb_fuse merged them; flag 4: it also stores k and v into the cache)
 * whose q, k (and v) are written by the decode products right before it (only NOPs
 * between: after cb_merge/cb_fold one launch for q/k/v, or q/k then v of another type) is
 * done by those products as they store their rows; the RoPE op goes. Each product gets
 * CB_MM_QKVR (+ CB_MM_QKVR_KV), the rope's parameters, positions and sequences, the head
 * size and its outputs' roles (be_cuda_int.h). Needs whole-head rotation, quantized
 * weights, <= 8 tokens and an f16/f32 cache (a q8_0 cache has no KV store in the rope: the
 * products then only rotate, the KV store op stays). The products' inputs must not overlap
 * q or k (they are rotated earlier than before). Not with the persistent kernel;
 * HEARTH_CUDA_QKVR=0 turns it off. */
static bool cb_qkvr_on(const cuda_be *c) {
    return c->kn.qkvr;
}

/* The role of a product output (y, ldy, rows) for rope r: CUDA_QKVR_Q/K/V, or -1. */
static int cb_qkvr_role(const cb_cmd *r, const void *y, int64_t ldy, int64_t rows) {
    int64_t hd = r->n[3];
    if (y == r->p[1] && ldy == r->n[1] && rows == r->n[2] * hd) return CUDA_QKVR_Q;
    if (y == r->p[2] && ldy == r->n[4] && rows == r->n[5] * hd) return CUDA_QKVR_K;
    if ((r->flag & 4) && y == r->p[0] && ldy == r->n[6] && rows == r->kv.kv_dim) return CUDA_QKVR_V;
    return -1;
}

/* The roles of product m's outputs for rope r packed 2 bits each; outputs that are none of
 * q/k/v stay plain (v when the rope stores no KV cell). -1: an output has a residual add,
 * repeats a role in *found, or no output is q, k or v. */
static int64_t cb_qkvr_roles(const cb_cmd *r, const cb_cmd *m, int *found) {
    const void *ys[3] = { m->p[1], m->yx[0], m->yx[1] }, *as[3] = { m->p[3], m->addx[0], m->addx[1] };
    const int64_t ld[3] = { m->n[1], m->ldyx[0], m->ldyx[1] };
    const int64_t rows[3] = { m->w.n_rows, m->wx[0].n_rows, m->wx[1].n_rows };
    int64_t roles = 0;
    int mine = 0;
    for (int s = 0; s <= m->n_multi && s < 3; s++) {
        int role = cb_qkvr_role(r, ys[s], ld[s], rows[s]);
        if (as[s] || (role >= 0 && ((*found | mine) & (1 << role)))) return -1;
        if (role >= 0) mine |= 1 << role, roles |= (int64_t)role << (2 * s);
    }
    *found |= mine;
    return mine ? roles : -1;
}

/* HEARTH_CUDA_QKVR_MIX=0 keeps products of different types in separate launches. */
static bool cb_qkvr_mix_on(const cuda_be *c) {
    return c->kn.qkvr_mix;
}

/* The two rotating products of one RoPE (cb_fuse_qkvr tagged them) with weights of two
 * types — a Q4_K_M layer's Q4_K q/k and Q6_K v — over the same activations: one launch
 * (cuda_qkvr_mixed_ok); b joins a, its roles after a's. A norm folded into a (flag 2) still
 * runs as its own kernel first (cb_exec_qkvr), except with HEARTH_CUDA_QKVR_NORM=1, whose
 * in-block norm the mixed kernel does not have. */
static void cb_qkvr_mix(cuda_be *c, size_t ia, size_t ib) {
    cb_cmd *a = &c->cmd[ia], *b = &c->cmd[ib];
    int64_t na = a->n_multi + 1;
    if (!cb_qkvr_mix_on(c) || b->n_multi || na + 1 > 3 || ((a->flag & 2) && c->qkvr_norm) || (b->flag & 2) ||
        !(b->flag & 1) ||
        b->p[0] != a->p[0] || b->n[0] != a->n[0] || b->w.n_cols != a->w.n_cols || b->w.type == a->w.type ||
        !cuda_qkvr_mixed_ok(a->w.type, b->w.type, a->n[0], a->w.n_cols) || cb_next_op(c, ia + 1) != ib)
        return;
    a->wx[a->n_multi] = b->w, a->yx[a->n_multi] = b->p[1], a->addx[a->n_multi] = NULL;
    a->ldyx[a->n_multi++] = b->n[1];
    a->n[7] |= b->n[7] << (2 * na);
    b->kind = CK_NOP;
}

/* Q4_K and Q6_K products of 2+ tokens keep the RoPE and KV store as their own kernels
 * unless HEARTH_CUDA_QKVR_KQ=1: a Q4_K_M step measured 1.5-3% faster that way at 2, 3 and
 * 4 tokens on an H200 (session 20), while Q4_0 and Q8_0 steps measured 1.5-2% faster with
 * the epilogue; other types keep it (not measured). */
static bool cb_qkvr_type_ok(const cuda_be *c, const cb_cmd *m) {
    return m->n[0] == 1 || c->kn.qkvr_kq || (m->w.type != QT_Q4_K && m->w.type != QT_Q6_K);
}

static void cb_fuse_qkvr(cuda_be *c, size_t i) {
    cb_cmd *r = &c->cmd[i];
    int64_t n_tok = r->n[0], hd = r->n[3];
    bool kv = (r->flag & 4) != 0;
    if (!r->p[2] || r->rope.n_rot != hd || hd > 4096 || hd != (int32_t)hd || !cb_fuse_tokens_ok(c, n_tok)) return;
    int need = (1 << CUDA_QKVR_Q) | (1 << CUDA_QKVR_K) | (kv ? 1 << CUDA_QKVR_V : 0), found = 0, np = 0;
    size_t prod[3];
    int64_t roles[3];
    for (size_t j = i; found != need && np < 3;) {
        while (j > 0 && c->cmd[j - 1].kind == CK_NOP) j--;
        if (j == 0) return;
        cb_cmd *m = &c->cmd[--j];
        if (m->kind != CK_MATMUL || !cb_is_mv_q(m) || (m->flag & ~3) || m->n[0] != n_tok || !cb_qkvr_type_ok(c, m) ||
            !cuda_qkvr_ok(m->w.type, n_tok, &r->rope, (int32_t)hd, kv ? &r->kv : NULL) ||
            (roles[np] = cb_qkvr_roles(r, m, &found)) < 0)
            return;
        prod[np++] = j;
    }
    if (found != need) return;
    int64_t qn = (n_tok - 1) * r->n[1] + r->n[2] * hd, kn = (n_tok - 1) * r->n[4] + r->n[5] * hd;
    for (int p = 0; p < np; p++) { /* what the products read (x; with a folded norm, its input too) */
        const cb_cmd *m = &c->cmd[prod[p]];
        int64_t xn = n_tok * m->w.n_cols, nn = (n_tok - 1) * m->n[2] + m->w.n_cols;
        if (overlaps(m->p[0], xn, r->p[1], qn) || overlaps(m->p[0], xn, r->p[2], kn) ||
            ((m->flag & 2) && (overlaps(m->px[0], nn, r->p[1], qn) || overlaps(m->px[0], nn, r->p[2], kn))))
            return;
    }
    for (int p = 0; p < np; p++) {
        cb_cmd *m = &c->cmd[prod[p]];
        m->flag |= CB_MM_QKVR | (kv ? CB_MM_QKVR_KV : 0);
        m->rope = r->rope, m->off[0] = r->off[0], m->n[5] = hd, m->n[7] = roles[p];
        if (kv) m->kv = r->kv, m->off[1] = r->off[1];
    }
    if (np == 2) cb_qkvr_mix(c, prod[1], prod[0]);
    r->kind = CK_NOP;
}

/* ---- the attention in the q/k/v product's launch (CB_MM_QKVA, cu_qkva.cu) --------------
 * Opt-in (HEARTH_CUDA_QKVA=1): measured 6-10% slower than the two kernels on an H200
 * (docs/performance.md, session 10). A one-token q/k/v product with RoPE and the KV store
 * (one weight per role) whose next op is the attention over its q, positions, sequences
 * and cache runs that attention in its own launch when cuda_qkva_ok takes the shapes
 * (decided per step: the position bucket is one of them). When the attention quantizes its
 * output for the product after it (flag 1), that product must be the next op and a plain
 * single-token one: it reads the second activation scratch (CB_MM_ACT2). */
static bool cb_qkva_on(const cuda_be *c) {
    return c->kn.qkva;
}

static void cb_qkva_rule(cuda_be *c, size_t i) {
    cb_cmd *m = &c->cmd[i], *o = NULL;
    if (!cb_qkva_on(c) || (m->flag & (CB_MM_QKVR | CB_MM_QKVR_KV)) != (CB_MM_QKVR | CB_MM_QKVR_KV) || m->n[0] != 1 || m->n_multi != 2)
        return;
    size_t j = cb_next_op(c, i + 1);
    if (j >= c->n_cmd || c->cmd[j].kind != CK_ATTN) return;
    cb_cmd *a = &c->cmd[j];
    const void *ys[3] = { m->p[1], m->yx[0], m->yx[1] }, *yq = NULL;
    for (int r = 0; r < 3; r++)
        if (((m->n[7] >> (2 * r)) & 3) == CUDA_QKVR_Q) yq = ys[r];
    if (!yq || (a->flag & ~1) || a->p[0] != yq || a->at.n_tok != 1 || a->off[0] != m->off[0] ||
        a->off[1] != m->off[1] || memcmp(&a->kv, &m->kv, sizeof a->kv) != 0)
        return;
    if (a->flag & 1) {
        size_t l = cb_next_op(c, j + 1);
        if (l >= c->n_cmd) return;
        o = &c->cmd[l];
        if (o->kind != CK_MATMUL || o->p[0] != a->p[1] || !(o->flag & 1) || o->n_multi || o->n[0] != 1 ||
            (o->flag & (2 | 4 | 32 | 64 | CB_MM_QKVR)) || !cb_is_mv_q(o))
            return;
    }
    cuda_qkvr q;
    memset(&q, 0, sizeof q);
    q.rope = &m->rope, q.head_dim = (int32_t)m->n[5], q.kv = &m->kv;
    for (int r = 0; r < 3; r++) q.role[r] = (int)((m->n[7] >> (2 * r)) & 3);
    cuda_attn at = a->at;
    at.kv = &a->kv;
    const cuda_weight *ws[3] = { &m->w, &m->wx[0], &m->wx[1] };
    if (!cuda_qkva_ok(&c->kn, ws, &q, &at)) return;
    m->flag |= CB_MM_QKVA;
    a->flag |= CB_AT_BY_QKVA;
    if (o) o->flag |= CB_MM_ACT2;
}

static void cb_qkvr_rules(cuda_be *c) {
    if (c->mega || !cb_qkvr_on(c)) return;
    for (size_t i = 0; i < c->n_cmd; i++)
        if (c->cmd[i].kind == CK_ROPE) cb_fuse_qkvr(c, i);
    for (size_t i = 0; i < c->n_cmd; i++)
        if (c->cmd[i].kind == CK_MATMUL) cb_qkva_rule(c, i);
}

/* ---- the residual read before the PDL wait (CB_MM_EARLY_ADD) ----------------------------
 * A decode kernel's blocks start only once the kernel before it has passed its own PDL wait
 * (every kernel of the step waits before it triggers), so all work launched before that
 * kernel is finished and visible by then. A single-token product may therefore read its
 * residual target before its own wait when the op just before it does not write that
 * target, and the product's output does not overlap it (the sum is then the same bits:
 * old + v). Only ops whose outputs are known here are trusted — products (not the q/k/v
 * kernel that stores the KV cell; a folded float norm's output rows count as an output)
 * and the attention; after
 * anything else, or as the first op of a step, the flag stays off. Extra launches inside an
 * op (activation quantization) only move the previous op further back. Off with the
 * persistent kernel and with HEARTH_CUDA_EARLY_ADD=0. */
static bool cb_early_on(const cuda_be *c) {
    return c->kn.early_add;
}

/* Whether op k may write the floats [p, p + n) (false only where its outputs are known). */
static bool cb_may_write(const cb_cmd *k, const void *p, int64_t n) {
    int64_t t = k->n[0];
    switch (k->kind) {
    case CK_MATMUL: /* a folded float norm also writes the norm's output rows (p[4], n[3]) */
        if ((k->flag & CB_MM_QKVR) || ((k->flag & 32) && overlaps(k->p[4], t * k->n[3], p, n))) return true;
        return cb_mv_writes(k, p, n) || ((k->flag & 2) && overlaps(k->p[0], t * k->w.n_cols, p, n)) ||
               ((k->flag & 4) && overlaps(k->px[1], t * k->w.n_rows, p, n));
    case CK_ATTN: {
        int64_t at = k->at.n_tok, w = (int64_t)k->at.n_head * k->at.head_dim_v;
        return at < 1 || overlaps(k->p[1], (at - 1) * k->n[1] + w, p, n);
    }
    default:
        return true;
    }
}

static void cb_early_add(cuda_be *c) {
    if (c->mega || !cb_early_on(c)) return;
    size_t prev = c->n_cmd;
    for (size_t i = 0; i < c->n_cmd; i++) {
        cb_cmd *k = &c->cmd[i];
        if (k->kind == CK_NOP) continue;
        int64_t rows = k->w.n_rows;
        if (k->kind == CK_MATMUL && prev < c->n_cmd && k->p[3] && k->n[0] == 1 && !k->n_multi &&
            !(k->flag & (2 | 4 | 32 | 64 | CB_MM_QKVR)) && !overlaps(k->p[1], rows, k->p[3], rows) &&
            !cb_may_write(&c->cmd[prev], k->p[3], rows))
            k->flag |= CB_MM_EARLY_ADD;
        prev = i;
    }
}

/* The HEARTH_CUDA_DROP class of a rewritten command (0: never dropped). Products by
 * shape: several weights over one x or RoPE in the epilogue = q/k/v, a GLU folded in =
 * gate/up, rows >= 8 x columns = output, more columns than rows = down, else o. */
int cb_drop_class(const cb_cmd *k) {
    int cls = 0;
    if (k->kind == CK_ATTN) cls = CB_DROP_ATTN;
    else if (k->kind == CK_RMSNORM) cls = CB_DROP_NORM;
    else if (k->kind == CK_MATMUL) {
        int64_t r = k->w.n_rows, n = k->w.n_cols;
        cls = (k->flag & (4 | 64)) ? CB_DROP_GU
              : (k->n_multi || (k->flag & CB_MM_QKVR)) ? CB_DROP_QKV
              : r >= 8 * n ? CB_DROP_OUT
              : n > r ? CB_DROP_DOWN
                      : CB_DROP_O;
    }
    return cls;
}

/* Diagnostics only (HEARTH_CUDA_DROP, a mask of CB_DROP_*): the chosen ops become NOPs, so
 * a timing without them gives their marginal cost in the real step (tokens and logits are
 * then meaningless). Runs last, on the rewritten step. */
static void cb_drop(cuda_be *c) {
    for (size_t i = 0; i < c->n_cmd && c->kn.drop; i++)
        if (cb_drop_class(&c->cmd[i]) & c->kn.drop) c->cmd[i].kind = CK_NOP;
}

void cb_rewrite(cuda_be *c) {
    cb_fuse(c);
    cb_merge(c);
    cb_fold(c);
    cb_qkvr_rules(c);
    cb_mvf_rules(c);
    cb_early_add(c);
    cb_drop(c);
}
