/* context.c — hearth_context lifetime (params, KV cache allocation, backend), accessors,
 * the abort callback and the hearth_batch helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"

hearth_context_params hearth_context_default_params(void) {
    hearth_context_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_seq_max = 1;
    p.n_batch = 512;
    p.n_threads = 0;
    p.kv_type = HEARTH_KV_F16;
    p.embeddings = false;
    return p;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    return (int)n;
}

/* Fills in defaults and validates every field. */
int engine_resolve_params(const hearth_model *m, const hearth_context_params *in, hearth_context_params *p,
                          hb_err *err) {
    int rc = HEARTH_OK;
    *p = in ? *in : hearth_context_default_params();
    if (p->n_ctx == 0) {
        int32_t t = m->hp->n_ctx_train;
        p->n_ctx = (uint32_t)(t > 4096 ? 4096 : t);
    }
    if (p->n_seq_max == 0) p->n_seq_max = 1;
    if (p->n_batch == 0) p->n_batch = 512;
    if (p->n_threads == 0) p->n_threads = default_threads();
    HB_CHECK(p->n_ctx >= 1 && p->n_ctx <= (1u << 20), HEARTH_E_INVALID, "n_ctx %u is out of range 1..1048576", p->n_ctx);
    HB_CHECK(p->n_seq_max <= 1024, HEARTH_E_INVALID, "n_seq_max %u is out of range 1..1024", p->n_seq_max);
    HB_CHECK(p->n_batch <= 65536, HEARTH_E_INVALID, "n_batch %u is out of range 1..65536", p->n_batch);
    HB_CHECK(p->n_threads >= 1 && p->n_threads <= 1024, HEARTH_E_INVALID, "n_threads %d is out of range 1..1024",
             (int)p->n_threads);
    HB_CHECK(p->kv_type == HEARTH_KV_F16 || p->kv_type == HEARTH_KV_F32 || p->kv_type == HEARTH_KV_Q8_0,
             HEARTH_E_INVALID, "unknown KV cache type %d", (int)p->kv_type);
out:
    return rc;
}

static uint32_t kv_quant_type(hearth_kv_type t) {
    return t == HEARTH_KV_F32 ? QT_F32 : t == HEARTH_KV_Q8_0 ? QT_Q8_0 : QT_F16;
}

/* Every layer has a host cache; an accelerator keeps its layers' cells in its own memory
 * (shadowing these addresses), so the host pages of those layers are never touched. */
/* Allocates K and V for every layer (zeroed lazily by the OS via calloc). */
static int kv_alloc(hearth_context *c, hb_err *err) {
    int rc = HEARTH_OK;
    const struct model_hparams *hp = c->m->hp;
    uint32_t type = kv_quant_type(c->p.kv_type);
    int64_t dim = (int64_t)hp->n_head_kv * hp->head_dim_k;
    size_t row, cells, per, total;
    HB_CHECK(hp->head_dim_k == hp->head_dim_v, HEARTH_E_UNSUPPORTED,
             "different key and value head sizes (%d, %d) are not supported", hp->head_dim_k, hp->head_dim_v);
    HB_CHECK(type != QT_Q8_0 || hp->head_dim_k % 32 == 0, HEARTH_E_UNSUPPORTED,
             "a q8_0 KV cache needs a head size that is a multiple of 32 (this model has %d); use f16",
             hp->head_dim_k);
    row = engine_kv_row_bytes(hp, c->p.kv_type);
    HB_CHECK(row > 0 && hb_mul_sz((size_t)c->p.n_seq_max, (size_t)c->p.n_ctx, &cells) &&
                 hb_mul_sz(cells, row, &per) && hb_mul_sz(per, 2 * (size_t)hp->n_layer, &total),
             HEARTH_E_NOMEM, "KV cache size overflows");
    c->kv = hb_calloc_n((size_t)hp->n_layer, sizeof *c->kv);
    c->kv_mem = calloc(1, total);
    HB_CHECK(c->kv && c->kv_mem, HEARTH_E_NOMEM, "out of memory allocating a %zu MiB KV cache", total >> 20);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        be_kv_layer *L = &c->kv[il];
        L->k = (uint8_t *)c->kv_mem + (size_t)(2 * il) * per;
        L->v = (uint8_t *)c->kv_mem + (size_t)(2 * il + 1) * per;
        L->type = type;
        L->kv_dim = dim;
        L->row_bytes = row;
        L->n_ctx = c->p.n_ctx;
    }
out:
    return rc;
}

static int alloc_buffers(hearth_context *c, hb_err *err) {
    int rc = HEARTH_OK;
    const struct model_hparams *hp = c->m->hp;
    size_t nb = c->p.n_batch, ns = c->p.n_seq_max;
    if (c->p.embeddings) {
        if ((rc = c->be_out->ops->buf_alloc(c->be_out, &c->hid_dev, (int64_t)nb * hp->n_embd, err))) goto out;
        c->hidden = hb_malloc_n(nb * (size_t)hp->n_embd, sizeof(float));
        HB_CHECK(c->hidden, HEARTH_E_NOMEM, "out of memory");
    }
    c->out_row = hb_malloc_n(nb, sizeof(int32_t));
    c->out_idx = hb_malloc_n(nb, sizeof(int32_t));
    c->logit_sel = hb_malloc_n(nb, sizeof(int32_t));
    c->last_seq = hb_malloc_n(nb, sizeof(int32_t));
    c->pos_max = hb_malloc_n(ns, sizeof(int32_t));
    c->next_pos = hb_malloc_n(ns, sizeof(int32_t));
    HB_CHECK(c->out_row && c->out_idx && c->logit_sel && c->last_seq && c->pos_max && c->next_pos, HEARTH_E_NOMEM, "out of memory");
    for (size_t s = 0; s < ns; s++) c->pos_max[s] = -1;
out:
    return rc;
}

hearth_status hearth_context_new(hearth_model *m, const hearth_context_params *p, hearth_context **out,
                                 char *errbuf, size_t errlen) {
    int rc = HEARTH_OK;
    hb_err e, *err = &e;
    hearth_context *c = NULL;
    hb_err_clear(&e);
    if (out) *out = NULL;
    HB_CHECK(m && out, HEARTH_E_INVALID, "no model or output pointer given");
    HB_CHECK(m->hp && m->arch_data, HEARTH_E_INVALID, "%s was loaded without weights (vocab only)", m->path);
    c = calloc(1, sizeof *c);
    HB_CHECK(c, HEARTH_E_NOMEM, "out of memory");
    c->m = m;
    const char *tf = getenv("HEARTH_TEST_FAIL_DECODE");
    c->fail_at = tf ? strtoll(tf, NULL, 10) : 0;
    if ((rc = engine_resolve_params(m, p, &c->p, err))) goto out;
    if ((rc = kv_alloc(c, err))) goto out;
    if ((rc = engine_place(c, err))) goto out;
    if ((rc = alloc_buffers(c, err))) goto out;
    *out = c;
    c = NULL;
out:
    if (rc && errbuf && errlen) snprintf(errbuf, errlen, "%s", e.msg);
    hearth_context_free(c);
    return (hearth_status)rc;
}

void hearth_context_free(hearth_context *c) {
    if (!c) return;
    if (c->be_out) {
        c->be_out->ops->buf_free(c->be_out, &c->out_dev);
        c->be_out->ops->buf_free(c->be_out, &c->hid_dev);
        engine_logits_free(c, c->logits, c->logits_pinned);
    } else {
        free(c->logits);
    }
    c->logits = NULL;
    engine_unplace(c);
    free(c->kv);
    free(c->kv_mem);
    free(c->pos_max);
    free(c->next_pos);
    free(c->hidden);
    free(c->out_row);
    free(c->out_idx);
    free(c->logit_sel);
    free(c->last_seq);
    free(c);
}

const char *hearth_context_errmsg(const hearth_context *c) { return c ? c->err.msg : "no context"; }
uint32_t hearth_context_n_ctx(const hearth_context *c) { return c->p.n_ctx; }
uint32_t hearth_context_n_seq_max(const hearth_context *c) { return c->p.n_seq_max; }
const hearth_model *hearth_context_model(const hearth_context *c) { return c->m; }

void hearth_context_set_abort(hearth_context *c, bool (*fn)(void *ud), void *ud) {
    c->abort_fn = fn;
    c->abort_ud = ud;
}

/* ---- batches ------------------------------------------------------------------------------ */

hearth_batch hearth_batch_init(int32_t capacity) {
    hearth_batch b;
    memset(&b, 0, sizeof b);
    if (capacity <= 0) return b;
    b.token = hb_malloc_n((size_t)capacity, sizeof *b.token);
    b.pos = hb_malloc_n((size_t)capacity, sizeof *b.pos);
    b.seq_id = hb_malloc_n((size_t)capacity, sizeof *b.seq_id);
    b.logits = hb_malloc_n((size_t)capacity, sizeof *b.logits);
    if (!b.token || !b.pos || !b.seq_id || !b.logits) {
        hearth_batch_free(&b);
        return b;
    }
    b.capacity = capacity;
    return b;
}

void hearth_batch_free(hearth_batch *b) {
    if (!b) return;
    free(b->token);
    free(b->pos);
    free(b->seq_id);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

bool hearth_batch_add(hearth_batch *b, hearth_token t, int32_t pos, int32_t seq_id, bool logits) {
    if (!b || b->n_tokens < 0 || b->n_tokens >= b->capacity) return false;
    b->token[b->n_tokens] = t;
    b->pos[b->n_tokens] = pos;
    b->seq_id[b->n_tokens] = seq_id;
    b->logits[b->n_tokens] = logits ? 1 : 0;
    b->n_tokens++;
    return true;
}
