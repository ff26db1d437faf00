/* decode.c — hearth_decode (validate the batch, run the forward pass, keep the outputs),
 * logits / embeddings access and the KV cache sequence operations.
 *
 * A decode either succeeds fully or changes nothing visible: positions are validated
 * before anything is written, and pos_max only advances after the forward pass succeeds
 * (cells written by a cancelled or failed pass lie beyond pos_max and are overwritten).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Checks ids, sequence ids and position continuity. Fills out_idx (tokens whose final
 * state is computed: all with embeddings on, else those asking for logits), logit_sel
 * (which of those get logits) and out_row (batch token -> logits row, or -1). */
static int decode_validate(hearth_context *c, const hearth_batch *b, int32_t *n_out, int32_t *n_logits,
                           hb_err *err) {
    int rc = HEARTH_OK;
    const int32_t n_vocab = c->m->hp->n_vocab;
    HB_CHECK(b && b->n_tokens >= 1, HEARTH_E_INVALID, "empty batch");
    HB_CHECK(b->token && b->pos && b->seq_id && b->logits && b->n_tokens <= b->capacity, HEARTH_E_INVALID,
             "malformed batch (%d tokens, capacity %d)", b->n_tokens, b->capacity);
    HB_CHECK((uint32_t)b->n_tokens <= c->p.n_batch, HEARTH_E_INVALID, "batch of %d tokens exceeds n_batch %u",
             b->n_tokens, c->p.n_batch);
    for (uint32_t s = 0; s < c->p.n_seq_max; s++) c->next_pos[s] = c->pos_max[s] + 1;
    *n_out = 0;
    *n_logits = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t t = b->token[i], s = b->seq_id[i], p = b->pos[i];
        HB_CHECK(t >= 0 && t < n_vocab, HEARTH_E_INVALID, "token %d: id %d is out of range 0..%d", i, t, n_vocab - 1);
        HB_CHECK(s >= 0 && (uint32_t)s < c->p.n_seq_max, HEARTH_E_INVALID,
                 "token %d: sequence id %d is out of range 0..%u", i, s, c->p.n_seq_max - 1);
        HB_CHECK(p == c->next_pos[s], HEARTH_E_INVALID,
                 "token %d: position %d of sequence %d does not continue its cache (expected %d)", i, p, s,
                 c->next_pos[s]);
        HB_CHECK((uint32_t)p < c->p.n_ctx, HEARTH_E_CONTEXT,
                 "token %d: position %d of sequence %d is beyond the context window of %u tokens", i, p, s, c->p.n_ctx);
        c->next_pos[s]++;
        c->out_row[i] = -1;
        if (b->logits[i]) {
            c->out_row[i] = *n_logits;
            c->logit_sel[(*n_logits)++] = *n_out;
        }
        if (b->logits[i] || c->p.embeddings) c->out_idx[(*n_out)++] = i;
    }
out:
    return rc;
}

/* Frees host logits rows from logits_alloc (pinned: by the output backend). */
void engine_logits_free(hearth_context *c, float *p, bool pinned) {
    if (pinned) c->be_out->ops->host_free(c->be_out, p);
    else free(p);
}

/* n floats of host logits: from the output backend where it offers memory it reads into
 * faster (a GPU's page-locked memory: the logits copy of every decode step is then one
 * DMA, no staging copy), else plain memory. */
static float *logits_alloc(hearth_context *c, size_t n, bool *pinned) {
    const be_ops *o = c->be_out->ops;
    float *p = o->host_alloc && n <= SIZE_MAX / sizeof(float) ? o->host_alloc(c->be_out, n * sizeof(float)) : NULL;
    *pinned = p != NULL;
    return p ? p : hb_malloc_n(n, sizeof(float));
}

/* Makes room for n_out rows of logits (host and backend). */
static int reserve_logits(hearth_context *c, int32_t n_out, hb_err *err) {
    int rc = HEARTH_OK;
    int64_t nv = c->m->hp->n_vocab;
    if (n_out <= c->logits_cap) return HEARTH_OK;
    int64_t cap = n_out < 8 ? 8 : n_out;
    bool pinned = false;
    float *nl = logits_alloc(c, (size_t)cap * (size_t)nv, &pinned);
    HB_CHECK(nl, HEARTH_E_NOMEM, "out of memory for %lld rows of logits", (long long)cap);
    c->be_out->ops->buf_free(c->be_out, &c->out_dev);
    if ((rc = c->be_out->ops->buf_alloc(c->be_out, &c->out_dev, cap * nv, err))) {
        engine_logits_free(c, nl, pinned);
        goto out;
    }
    engine_logits_free(c, c->logits, c->logits_pinned);
    c->logits = nl;
    c->logits_pinned = pinned;
    c->logits_cap = cap;
out:
    if (rc) c->logits_cap = 0;
    return rc;
}

hearth_status hearth_decode(hearth_context *c, const hearth_batch *b) {
    int rc = HEARTH_OK;
    hb_err *err = &c->err;
    int32_t n_out = 0, n_logits = 0;
    hb_err_clear(err);
    c->last_n = 0;
    if ((rc = decode_validate(c, b, &n_out, &n_logits, err))) goto out;
    if (c->fail_at > 0 && ++c->n_decoded >= c->fail_at) { /* testing aid: engine.h */
        rc = hb_fail(err, HEARTH_E_INTERNAL, "injected decode failure (HEARTH_TEST_FAIL_DECODE=%lld)",
                     (long long)c->fail_at);
        goto out;
    }
    if ((rc = reserve_logits(c, n_logits, err))) goto out;
    arch_batch ab = { b->n_tokens, b->token, b->pos, b->seq_id, c->out_idx, n_out,
                      c->p.embeddings ? c->logit_sel : NULL, n_logits, c->out_dev.p,
                      c->p.embeddings ? c->hid_dev.p : NULL, (int32_t)c->p.n_ctx, c->abort_fn, c->abort_ud };
    if ((rc = arch_forward(c->m, c->stage, c->n_stage, c->kv, &ab, err))) goto out;
    int64_t nv = c->m->hp->n_vocab, ne = c->m->hp->n_embd;
    be_ctx *bo = c->be_out;
    if (n_logits > 0) bo->ops->read(bo, &c->out_dev, 0, c->logits, (int64_t)n_logits * nv);
    if (c->p.embeddings && n_out > 0) bo->ops->read(bo, &c->hid_dev, 0, c->hidden, (int64_t)n_out * ne);
    for (int32_t i = 0; i < b->n_tokens; i++) {
        c->pos_max[b->seq_id[i]] = b->pos[i];
        c->last_seq[i] = b->seq_id[i];
    }
    c->last_n = b->n_tokens;
out:
    return (hearth_status)rc;
}

const float *hearth_get_logits(hearth_context *c, int32_t i) {
    if (!c || i < 0 || i >= c->last_n || c->out_row[i] < 0) return NULL;
    return c->logits + (size_t)c->out_row[i] * (size_t)c->m->hp->n_vocab;
}

hearth_status hearth_get_embeddings_seq(hearth_context *c, int32_t seq_id, float *out, size_t n) {
    int rc = HEARTH_OK;
    hb_err *err = &c->err;
    int32_t ne = c->m->hp->n_embd, cnt = 0;
    double *acc = NULL;
    hb_err_clear(err);
    HB_CHECK(c->p.embeddings, HEARTH_E_INVALID, "the context was created without embeddings enabled");
    HB_CHECK(out && n >= (size_t)ne, HEARTH_E_INVALID, "output buffer holds %zu floats, need %d", n, ne);
    acc = calloc((size_t)ne, sizeof *acc);
    HB_CHECK(acc, HEARTH_E_NOMEM, "out of memory");
    /* with embeddings on, every token of the last decode has a hidden row, in batch order */
    for (int32_t i = 0; i < c->last_n; i++) {
        if (c->last_seq[i] != seq_id) continue;
        const float *h = c->hidden + (size_t)i * (size_t)ne;
        for (int32_t j = 0; j < ne; j++) acc[j] += h[j];
        cnt++;
    }
    HB_CHECK(cnt > 0, HEARTH_E_INVALID, "sequence %d has no tokens in the last decode", seq_id);
    double norm = 0.0;
    for (int32_t j = 0; j < ne; j++) {
        acc[j] /= cnt;
        norm += acc[j] * acc[j];
    }
    norm = sqrt(norm);
    for (int32_t j = 0; j < ne; j++) out[j] = (float)(norm > 0.0 ? acc[j] / norm : 0.0);
out:
    free(acc);
    return (hearth_status)rc;
}

/* ---- KV cache sequence operations --------------------------------------------------------- */

static bool seq_ok(hearth_context *c, int32_t seq) {
    if (seq >= 0 && (uint32_t)seq < c->p.n_seq_max) return true;
    hb_fail(&c->err, HEARTH_E_INVALID, "sequence id %d is out of range 0..%u", seq, c->p.n_seq_max - 1);
    return false;
}

hearth_status hearth_kv_seq_rm(hearth_context *c, int32_t seq, int32_t p0, int32_t p1) {
    hb_err_clear(&c->err);
    if (!seq_ok(c, seq)) return HEARTH_E_INVALID;
    if (p0 < 0) p0 = 0;
    int32_t last = c->pos_max[seq];
    if (p1 >= 0 && p1 <= last)
        return (hearth_status)hb_fail(&c->err, HEARTH_E_UNSUPPORTED,
                                      "only a suffix of a sequence can be removed (asked [%d, %d), last position %d)",
                                      p0, p1, last);
    if (p0 <= last) c->pos_max[seq] = p0 - 1;
    return HEARTH_OK;
}

hearth_status hearth_kv_seq_cp(hearth_context *c, int32_t src, int32_t dst, int32_t p1) {
    hb_err_clear(&c->err);
    if (!seq_ok(c, src) || !seq_ok(c, dst)) return HEARTH_E_INVALID;
    int32_t n = c->pos_max[src] + 1;
    if (p1 >= 0 && p1 < n) n = p1;
    for (int32_t il = 0; il < c->m->hp->n_layer; il++) {
        be_ctx *be = engine_layer_be(c, il);
        int rc = be->ops->kv_copy(be, &c->kv[il], src, dst, n);
        if (rc) return (hearth_status)hb_fail(&c->err, rc, "copying the KV cache on the %s backend failed", be->ops->name);
    }
    c->pos_max[dst] = n - 1;
    return HEARTH_OK;
}

int32_t hearth_kv_seq_pos_max(const hearth_context *c, int32_t seq) {
    if (!c || seq < 0 || (uint32_t)seq >= c->p.n_seq_max) return -1;
    return c->pos_max[seq];
}

void hearth_kv_clear(hearth_context *c) {
    for (uint32_t s = 0; s < c->p.n_seq_max; s++) c->pos_max[s] = -1;
    c->last_n = 0;
}
