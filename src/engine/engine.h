/* engine.h — the hearth_context handle: KV cache, scratch, outputs of the last decode.
 * Internal to src/engine; see docs/engine.md for the design.
 *
 * KV layout: for every layer, K and V each hold n_seq_max streams of n_ctx cells; position
 * p of sequence s lives at cell s * n_ctx + p. A sequence's positions are always 0..pos_max
 * with no holes, so "what is cached" is fully described by pos_max per sequence.
 */
#ifndef HEARTH_ENGINE_H
#define HEARTH_ENGINE_H

#include "arch/arch.h"
#include "backend/backend.h"

struct hearth_context {
    hearth_model *m;
    hearth_context_params p;     /* resolved: no zeros meaning "default" remain */
    hb_err err;                  /* message of the last failed call */

    /* placement (place.c): layers [0, n_acc) on be_acc, the rest on be_cpu */
    be_ctx *be_acc;              /* accelerator, or NULL when every layer runs on the CPU */
    be_ctx *be_cpu;              /* CPU backend, or NULL when every layer runs on be_acc */
    be_buf scratch_acc, scratch_cpu; /* arch_scratch_floats(hp, n_batch) on each */
    int32_t n_acc;
    arch_stage stage[2];
    int n_stage;
    be_ctx *be_out;              /* the last stage's backend: outputs are computed there */
    hearth_placement place;

    /* KV cache */
    be_kv_layer *kv;             /* [n_layer] */
    void *kv_mem;                /* owns every layer's K and V */
    int32_t *pos_max;            /* [n_seq_max], -1 = empty */

    /* outputs (on be_out) */
    be_buf out_dev;              /* [n_out][n_vocab] logits written by the backend */
    be_buf hid_dev;              /* [n_batch][n_embd] normed final states (embeddings) */
    float *logits;               /* host copy: [n_out][n_vocab] */
    bool logits_pinned;          /* logits came from be_out's host_alloc */
    int64_t logits_cap;          /* rows allocated in logits / out_dev */
    float *hidden;               /* host copy: [n_tok][n_embd] when embeddings */
    int32_t *out_row;            /* [n_batch] row in logits of batch token i, or -1 */
    int32_t *out_idx;            /* [n_batch] batch index of each output row */
    int32_t *logit_sel;          /* [n_batch] output row of each logits row */
    int32_t *last_seq;           /* [n_batch] seq ids of the last decode */
    int32_t last_n;              /* tokens in the last successful decode */
    int32_t *next_pos;           /* [n_seq_max] scratch for validation */

    bool (*abort_fn)(void *ud);
    void *abort_ud;

    /* Testing aid (HEARTH_TEST_FAIL_DECODE=N, read at creation): decode N and every one
     * after it fail with HEARTH_E_INTERNAL, as a context whose GPU failed does (the CUDA
     * backend's errors are sticky), so the server's recovery can be tested without a GPU. */
    int64_t fail_at, n_decoded;
};

/* Fills in defaults of `in` (NULL = defaults) and validates every field. (context.c) */
int engine_resolve_params(const hearth_model *m, const hearth_context_params *in, hearth_context_params *p,
                          hb_err *err);

/* ---- place.c ---- */
/* Bytes of one K (or V) row of the cache for kv_type. */
size_t engine_kv_row_bytes(const struct model_hparams *hp, hearth_kv_type kv_type);
/* Chooses and sets up the placement of c (params resolved, KV cache allocated): backends,
 * uploads of the accelerator's share, scratch, stages. A device that cannot hold its share
 * is released and the CPU takes everything (logged). */
int engine_place(hearth_context *c, hb_err *err);
/* Frees what engine_place made. */
void engine_unplace(hearth_context *c);
/* Frees host logits (decode.c): pinned ones through be_out, which must still exist. */
void engine_logits_free(hearth_context *c, float *p, bool pinned);
/* The backend that runs layer il. */
be_ctx *engine_layer_be(const hearth_context *c, int32_t il);

#endif
