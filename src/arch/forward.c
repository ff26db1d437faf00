/* forward.c — the decoder forward pass shared by every family, written as a sequence of
 * backend ops (src/backend/backend.h) so that it runs unchanged on any backend.
 *
 *   x = embed(tokens) [* embd_scale]
 *   per layer:  h = rmsnorm(x) ; q,k,v = proj(h) [+ bias] ; [q,k per-head rmsnorm] ; rope
 *               store k,v in the cache ; a = attention ; o = Wo a ; [post-norm] ; x += o
 *               h = rmsnorm(x) ; o = Wdown (act(Wgate h) * Wup h) ; [post-norm] ; x += o
 *   out rows:   rmsnorm(x) -> [hidden] -> logits = Wout . [softcap]
 */
#include <math.h>
#include <string.h>

#include "arch/arch.h"

/* Scratch layout (floats), all [n_tok][...] row-major. */
typedef struct fw_bufs {
    float *x, *h, *big, *q, *k, *v, *att, *o, *act;
} fw_bufs;

static int64_t big_width(const struct model_hparams *hp) {
    int64_t qkv = (int64_t)hp->n_head * hp->head_dim_k + (int64_t)hp->n_head_kv * (hp->head_dim_k + hp->head_dim_v);
    int64_t ff = 2 * (int64_t)hp->n_ff;
    return qkv > ff ? qkv : ff;
}

int64_t arch_scratch_floats(const struct model_hparams *hp, int64_t n) {
    int64_t per = 3 * (int64_t)hp->n_embd + big_width(hp) + (int64_t)hp->n_head * hp->head_dim_k +
                  (int64_t)hp->n_head_kv * (hp->head_dim_k + hp->head_dim_v) + (int64_t)hp->n_head * hp->head_dim_v +
                  hp->n_ff;
    return per * n;
}

static fw_bufs fw_layout(const struct model_hparams *hp, float *s, int64_t n) {
    fw_bufs b;
    b.x = s; s += n * hp->n_embd;
    b.h = s; s += n * hp->n_embd;
    b.o = s; s += n * hp->n_embd;
    b.big = s; s += n * big_width(hp);
    b.q = s; s += n * hp->n_head * hp->head_dim_k;
    b.k = s; s += n * hp->n_head_kv * hp->head_dim_k;
    b.v = s; s += n * hp->n_head_kv * hp->head_dim_v;
    b.att = s; s += n * hp->n_head * hp->head_dim_v;
    b.act = s;
    return b;
}

/* RoPE parameters of layer L: sliding layers may have their own base and scale; phi3 picks
 * short factors up to its original context and long factors beyond. */
static be_rope layer_rope(const struct hearth_model *m, const arch_layer *L, int32_t n_ctx) {
    const struct model_hparams *hp = m->hp;
    const arch_model *w = m->arch_data;
    be_rope r;
    r.style = hp->rope_style;
    r.n_rot = hp->n_rot;
    r.base = L->swa ? hp->rope_base_swa : hp->rope_base;
    r.freq_scale = L->swa ? hp->rope_scale_swa : hp->rope_scale;
    r.attn_factor = hp->rope_attn_factor;
    r.factors = w->rope_factors;
    if (w->rope_factors_long && hp->n_ctx_orig > 0 && n_ctx > hp->n_ctx_orig) r.factors = w->rope_factors_long;
    return r;
}

static int fw_attention(const struct hearth_model *m, be_ctx *be, const arch_layer *L, const be_kv_layer *kv,
                        const fw_bufs *f, const arch_batch *b) {
    const struct model_hparams *hp = m->hp;
    const be_ops *op = be->ops;
    int64_t n = b->n_tok, E = hp->n_embd;
    int64_t dq = (int64_t)hp->n_head * hp->head_dim_k, dk = (int64_t)hp->n_head_kv * hp->head_dim_k;
    int64_t dv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int rc;
    op->rmsnorm(be, f->x, E, f->h, E, n, E, L->attn_norm, hp->eps);
    if (L->wqkv.host.data) {
        int64_t w3 = dq + dk + dv;
        if ((rc = op->matmul(be, &L->wqkv, f->h, n, f->big, w3))) return rc;
        op->copy_rows(be, f->big, w3, f->q, dq, n, dq, NULL);
        op->copy_rows(be, f->big + dq, w3, f->k, dk, n, dk, NULL);
        op->copy_rows(be, f->big + dq + dk, w3, f->v, dv, n, dv, NULL);
    } else {
        if ((rc = op->matmul(be, &L->wq, f->h, n, f->q, dq))) return rc;
        if ((rc = op->matmul(be, &L->wk, f->h, n, f->k, dk))) return rc;
        if ((rc = op->matmul(be, &L->wv, f->h, n, f->v, dv))) return rc;
    }
    if (L->bq) op->copy_rows(be, f->q, dq, f->q, dq, n, dq, L->bq);
    if (L->bk) op->copy_rows(be, f->k, dk, f->k, dk, n, dk, L->bk);
    if (L->bv) op->copy_rows(be, f->v, dv, f->v, dv, n, dv, L->bv);
    if (L->q_norm) op->rmsnorm(be, f->q, hp->head_dim_k, f->q, hp->head_dim_k, n * hp->n_head, hp->head_dim_k, L->q_norm, hp->eps);
    if (L->k_norm) op->rmsnorm(be, f->k, hp->head_dim_k, f->k, hp->head_dim_k, n * hp->n_head_kv, hp->head_dim_k, L->k_norm, hp->eps);
    be_rope r = layer_rope(m, L, b->n_ctx);
    if (r.n_rot > 0) {
        op->rope(be, f->q, n, dq, hp->n_head, hp->head_dim_k, b->pos, &r);
        op->rope(be, f->k, n, dk, hp->n_head_kv, hp->head_dim_k, b->pos, &r);
    }
    op->kv_store(be, kv, f->k, dk, f->v, dv, n, b->pos, b->seq);
    be_attn a = { kv, b->pos, b->seq, (int32_t)n, hp->n_head, hp->n_head_kv, hp->head_dim_k, hp->head_dim_v,
                  hp->attn_scale, hp->attn_softcap, L->swa ? hp->n_swa : 0 };
    int64_t da = (int64_t)hp->n_head * hp->head_dim_v;
    if ((rc = op->attention(be, &a, f->q, dq, f->att, da))) return rc;
    if ((rc = op->matmul(be, &L->wo, f->att, n, f->o, E))) return rc;
    if (L->post_attn_norm) op->rmsnorm(be, f->o, E, f->o, E, n, E, L->post_attn_norm, hp->eps);
    op->add(be, f->x, f->o, n * E);
    return HEARTH_OK;
}

static int fw_ffn(const struct hearth_model *m, be_ctx *be, const arch_layer *L, const fw_bufs *f, int64_t n) {
    const struct model_hparams *hp = m->hp;
    const be_ops *op = be->ops;
    int64_t E = hp->n_embd, F = hp->n_ff;
    int rc;
    op->rmsnorm(be, f->x, E, f->h, E, n, E, L->ffn_norm, hp->eps);
    if (!L->w_gate.host.data) { /* fused [gate | up] rows (phi3) */
        if ((rc = op->matmul(be, &L->w_up, f->h, n, f->big, 2 * F))) return rc;
        op->glu(be, hp->act, f->big, 2 * F, f->big + F, 2 * F, f->act, F, n, F);
    } else {
        if ((rc = op->matmul(be, &L->w_gate, f->h, n, f->big, F))) return rc;
        if ((rc = op->matmul(be, &L->w_up, f->h, n, f->big + n * F, F))) return rc;
        op->glu(be, hp->act, f->big, F, f->big + n * F, F, f->act, F, n, F);
    }
    if ((rc = op->matmul(be, &L->w_down, f->act, n, f->o, E))) return rc;
    if (L->post_ffn_norm) op->rmsnorm(be, f->o, E, f->o, E, n, E, L->post_ffn_norm, hp->eps);
    op->add(be, f->x, f->o, n * E);
    return HEARTH_OK;
}

/* Final norm of the requested rows, hidden states and logits. */
static int fw_output(const struct hearth_model *m, be_ctx *be, const fw_bufs *f, const arch_batch *b) {
    const struct model_hparams *hp = m->hp;
    const arch_model *w = m->arch_data;
    const be_ops *op = be->ops;
    int64_t E = hp->n_embd;
    int rc;
    if (b->n_out <= 0) return HEARTH_OK;
    /* x's output rows normalized straight into h, one call per run of consecutive rows (at
     * decode: all of them). Not in place: the GPU backend then spreads a row over several
     * blocks, and no copy kernel runs before it (H200, Q4_0 decode step: copy 2.2 us +
     * in-place single-block norm 5.7 us before). */
    for (int32_t i = 0; i < b->n_out;) {
        int32_t j = i + 1;
        while (j < b->n_out && b->out_idx[j] == b->out_idx[i] + (j - i)) j++;
        op->rmsnorm(be, f->x + (int64_t)b->out_idx[i] * E, E, f->h + (int64_t)i * E, E, j - i, E, w->out_norm, hp->eps);
        i = j;
    }
    if (b->hidden) op->copy_rows(be, f->h, E, b->hidden, E, b->n_out, E, NULL);
    if (!b->logits || b->n_logits <= 0) return HEARTH_OK;
    const float *src = f->h;
    if (b->logit_sel) { /* gather the rows that need logits (embeddings mode keeps them all) */
        for (int32_t j = 0; j < b->n_logits; j++) op->copy_rows(be, f->h + (int64_t)b->logit_sel[j] * E, E, f->o + j * E, E, 1, E, NULL);
        src = f->o;
    }
    if ((rc = op->matmul(be, &w->output, src, b->n_logits, b->logits, hp->n_vocab))) return rc;
    if (hp->final_softcap > 0.0f) op->softcap(be, b->logits, (int64_t)b->n_logits * hp->n_vocab, hp->final_softcap);
    return HEARTH_OK;
}

static int fw_status(int rc, const struct hearth_model *m, hb_err *err) {
    if (rc == HEARTH_E_NOMEM) return hb_fail(err, rc, "out of memory during the forward pass");
    return hb_fail(err, rc, "%s: forward pass failed (%s)", m->path, hearth_status_str((hearth_status)rc));
}

/* Moves the hidden state x of n rows from one stage to the next (the only traffic between
 * backends in a step). */
static int fw_handoff(const struct hearth_model *m, const arch_stage *from, const arch_stage *to, int64_t n,
                      hb_err *err) {
    if (!to->be->ops->host_mem)
        return hb_fail(err, HEARTH_E_INTERNAL, "layers on the %s backend cannot follow layers on %s",
                       to->be->ops->name, from->be->ops->name);
    from->be->ops->read(from->be, from->scratch, 0, to->scratch->p, n * m->hp->n_embd);
    return HEARTH_OK;
}

int arch_forward(const struct hearth_model *m, const arch_stage *st, int n_st, const be_kv_layer *kv,
                 const arch_batch *b, hb_err *err) {
    const struct model_hparams *hp = m->hp;
    const arch_model *w = m->arch_data;
    int64_t n = b->n_tok;
    int rc;
    bool cover = n_st >= 1 && st[0].l0 == 0 && st[n_st - 1].l1 == hp->n_layer;
    for (int s = 1; cover && s < n_st; s++) cover = st[s].l0 == st[s - 1].l1;
    if (!cover) return hb_fail(err, HEARTH_E_INTERNAL, "stages do not cover the %d layers in order", hp->n_layer);
    be_ctx *be = st[0].be;
    fw_bufs f = fw_layout(hp, st[0].scratch->p, n);
    if ((rc = be->ops->get_rows(be, &w->tok_embd, b->token, n, f.x))) return fw_status(rc, m, err);
    if (hp->embd_scale != 1.0f) be->ops->scale(be, f.x, n * hp->n_embd, hp->embd_scale);
    for (int s = 0; s < n_st; s++) {
        if (s > 0) {
            if ((rc = fw_handoff(m, &st[s - 1], &st[s], n, err))) return rc;
            be = st[s].be;
            f = fw_layout(hp, st[s].scratch->p, n);
        }
        for (int32_t il = st[s].l0; il < st[s].l1; il++) {
            if (b->abort_fn && b->abort_fn(b->abort_ud)) return hb_fail(err, HEARTH_E_CANCELLED, "decode cancelled");
            const arch_layer *L = &w->layers[il];
            if ((rc = fw_attention(m, be, L, &kv[il], &f, b))) return fw_status(rc, m, err);
            if ((rc = fw_ffn(m, be, L, &f, n))) return fw_status(rc, m, err);
            if (be->ops->submit) be->ops->submit(be);
        }
    }
    if ((rc = fw_output(m, be, &f, b))) return fw_status(rc, m, err);
    return HEARTH_OK;
}
