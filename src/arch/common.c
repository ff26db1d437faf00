/* common.c — what every architecture family shares at load time: reading hyper-parameters
 * from "<arch>.*" keys with bounds, binding weight slots to tensors by GGUF name with full
 * shape/type validation, and freeing it all.
 *
 * Every number from the file is checked here, before the forward pass ever indexes with
 * it: a corrupt model gives HEARTH_E_FORMAT naming the key or tensor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"

static void key_name(const arch_loader *l, const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", l->prefix, key);
}

int arch_get_i32(arch_loader *l, const char *key, bool required, int32_t def, int32_t lo, int32_t hi,
                 int32_t *out, hb_err *err) {
    int rc = HEARTH_OK;
    char k[256];
    key_name(l, key, k, sizeof k);
    *out = def;
    int r = gguf_get_i32(l->m->gguf, k, out, err);
    if (r == HEARTH_E_INVALID) {
        *out = def;
        HB_CHECK(!required, HEARTH_E_FORMAT, "%s: required key %s is missing", l->m->path, k);
        /* the default comes from other keys (head size = embedding / heads): name it as such */
        HB_CHECK(*out >= lo && *out <= hi, HEARTH_E_FORMAT,
                 "%s: key %s is missing and the value derived from the other keys (%d) is out of range %d..%d",
                 l->m->path, k, (int)*out, (int)lo, (int)hi);
    } else if (r) {
        return r;
    }
    HB_CHECK(*out >= lo && *out <= hi, HEARTH_E_FORMAT, "%s: %s = %d is out of range %d..%d", l->m->path, k,
             (int)*out, (int)lo, (int)hi);
out:
    return rc;
}

int arch_get_f32(arch_loader *l, const char *key, float def, float *out, hb_err *err) {
    int rc = HEARTH_OK;
    char k[256];
    key_name(l, key, k, sizeof k);
    *out = def;
    int r = gguf_get_f32(l->m->gguf, k, out, err);
    if (r == HEARTH_E_INVALID) *out = def;
    else if (r) return r;
    HB_CHECK(isfinite(*out), HEARTH_E_FORMAT, "%s: %s is not a finite number", l->m->path, k);
out:
    return rc;
}

/* RoPE scaling keys: "linear" divides positions by the factor; none/absent is plain. */
static int load_rope_scaling(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    char k[256];
    const gguf_str *s = NULL;
    struct model_hparams *hp = l->hp;
    float factor = 0.0f;
    hp->rope_scale = 1.0f;
    key_name(l, "rope.scaling.type", k, sizeof k);
    int r = gguf_get_str(l->m->gguf, k, &s, err);
    if (r && r != HEARTH_E_INVALID) return r;
    if ((rc = arch_get_f32(l, "rope.scaling.factor", 0.0f, &factor, err))) goto out;
    if (r == HEARTH_OK && strcmp(s->data, "none") != 0) {
        HB_CHECK(strcmp(s->data, "linear") == 0, HEARTH_E_UNSUPPORTED,
                 "%s: RoPE scaling type '%s' is not supported (supported: none, linear)", l->m->path, s->data);
        HB_CHECK(factor > 0.0f, HEARTH_E_FORMAT, "%s: %s is linear but rope.scaling.factor is not positive",
                 l->m->path, k);
        hp->rope_scale = 1.0f / factor;
    }
out:
    return rc;
}

int arch_load_common_hparams(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    const int32_t big = 1 << 20;
    if ((rc = arch_get_i32(l, "context_length", false, 2048, 1, 1 << 24, &hp->n_ctx_train, err))) goto out;
    if ((rc = arch_get_i32(l, "embedding_length", true, 0, 1, big, &hp->n_embd, err))) goto out;
    if ((rc = arch_get_i32(l, "block_count", true, 0, 1, 4096, &hp->n_layer, err))) goto out;
    if ((rc = arch_get_i32(l, "feed_forward_length", true, 0, 1, big, &hp->n_ff, err))) goto out;
    if ((rc = arch_get_i32(l, "attention.head_count", true, 0, 1, 4096, &hp->n_head, err))) goto out;
    if ((rc = arch_get_i32(l, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head, &hp->n_head_kv, err)))
        goto out;
    HB_CHECK(hp->n_head % hp->n_head_kv == 0, HEARTH_E_FORMAT,
             "%s: head_count %d is not a multiple of head_count_kv %d", l->m->path, hp->n_head, hp->n_head_kv);
    if ((rc = arch_get_i32(l, "attention.key_length", false, hp->n_embd / hp->n_head, 1, BE_MAX_ROT,
                           &hp->head_dim_k, err))) goto out;
    if ((rc = arch_get_i32(l, "attention.value_length", false, hp->head_dim_k, 1, BE_MAX_ROT,
                           &hp->head_dim_v, err))) goto out;
    HB_CHECK(hp->head_dim_k >= 1, HEARTH_E_FORMAT, "%s: head dimension is zero", l->m->path);
    if ((rc = arch_get_i32(l, "rope.dimension_count", false, hp->head_dim_k, 0, hp->head_dim_k, &hp->n_rot, err)))
        goto out;
    HB_CHECK(hp->n_rot % 2 == 0, HEARTH_E_FORMAT, "%s: rope.dimension_count %d is odd", l->m->path, hp->n_rot);
    if ((rc = arch_get_f32(l, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->eps, err))) goto out;
    HB_CHECK(hp->eps >= 0.0f, HEARTH_E_FORMAT, "%s: negative RMS norm epsilon", l->m->path);
    if ((rc = arch_get_f32(l, "rope.freq_base", 10000.0f, &hp->rope_base, err))) goto out;
    HB_CHECK(hp->rope_base > 0.0f, HEARTH_E_FORMAT, "%s: rope.freq_base must be positive", l->m->path);
    if ((rc = load_rope_scaling(l, err))) goto out;
    hp->rope_base_swa = hp->rope_base;
    hp->rope_scale_swa = hp->rope_scale;
    hp->rope_attn_factor = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
    hp->embd_scale = 1.0f;
    hp->act = BE_GLU_SILU;
out:
    return rc;
}

/* ---- weights ----------------------------------------------------------------------------- */

static const gguf_tensor *find_tensor(arch_loader *l, const char *name) {
    return gguf_find_tensor(l->m->gguf, name);
}

/* prepare: let the kernels build their packed copy (not for tables only read by rows). */
static int bind_mat(arch_loader *l, const char *name, int64_t n_in, int64_t n_out, bool required, bool prepare,
                    be_weight *out, hb_err *err) {
    int rc = HEARTH_OK;
    const char *path = l->m->path;
    const gguf_tensor *t = find_tensor(l, name);
    const quant_traits *tr;
    memset(out, 0, sizeof *out);
    if (!t) {
        HB_CHECK(!required, HEARTH_E_FORMAT, "%s: tensor '%s' is missing", path, name);
        goto out;
    }
    HB_CHECK(t->n_dims <= 2 && t->ne[0] == n_in && t->ne[1] == n_out, HEARTH_E_FORMAT,
             "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", path, name,
             (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
             (long long)n_in, (long long)n_out);
    tr = quant_traits_of(t->type);
    HB_CHECK(tr && tr->compute, HEARTH_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which hearth cannot compute with",
             path, name, quant_type_name(t->type));
    HB_CHECK(quant_row_ok(t->type, n_in), HEARTH_E_FORMAT, "%s: tensor '%s': row of %lld is not a whole number of %s blocks",
             path, name, (long long)n_in, tr->name);
    HB_CHECK(t->data && quant_row_size(t->type, n_in) * (uint64_t)n_out <= t->size, HEARTH_E_FORMAT,
             "%s: tensor '%s' has no (or too little) data", path, name);
    out->host.type = t->type;
    out->host.n_rows = n_out;
    out->host.n_cols = n_in;
    out->host.row_bytes = quant_row_size(t->type, n_in);
    out->host.data = t->data;
    /* weights point into the model's read-only file mapping: once packed, their pages can
     * be dropped (the kernel re-reads them from the file if anything touches them again) */
    out->host.data_mapped = true;
    if (prepare && (rc = cpu_weight_prepare(&out->host, err))) goto out;
out:
    return rc;
}

int arch_bind_mat(arch_loader *l, const char *name, int64_t n_in, int64_t n_out, bool required,
                  be_weight *out, hb_err *err) {
    return bind_mat(l, name, n_in, n_out, required, true, out, err);
}

int arch_bind_vec(arch_loader *l, const char *name, int64_t n, bool required, float **out, hb_err *err) {
    int rc = HEARTH_OK;
    const char *path = l->m->path;
    const gguf_tensor *t = find_tensor(l, name);
    float *v = NULL;
    *out = NULL;
    if (!t) {
        HB_CHECK(!required, HEARTH_E_FORMAT, "%s: tensor '%s' is missing", path, name);
        goto out;
    }
    HB_CHECK(t->n_dims == 1 && t->ne[0] == n, HEARTH_E_FORMAT,
             "%s: tensor '%s' has %u dims and %lld elements, expected a vector of %lld", path, name,
             (unsigned)t->n_dims, (long long)t->n_elements, (long long)n);
    HB_CHECK(quant_row_ok(t->type, n) && t->data && quant_row_size(t->type, n) <= t->size, HEARTH_E_FORMAT,
             "%s: tensor '%s' has an unusable type %s or no data", path, name, quant_type_name(t->type));
    v = hb_malloc_n((size_t)n, sizeof *v);
    HB_CHECK(v, HEARTH_E_NOMEM, "out of memory");
    HB_CHECK(quant_dequantize_row(t->type, t->data, v, n), HEARTH_E_UNSUPPORTED,
             "%s: tensor '%s' has type %s, which hearth cannot compute with", path, name, quant_type_name(t->type));
    for (int64_t i = 0; i < n; i++)
        HB_CHECK(isfinite(v[i]), HEARTH_E_FORMAT, "%s: tensor '%s' holds a non-finite value", path, name);
    if (strncmp(name, "rope_", 5) == 0) /* RoPE factors divide frequencies */
        for (int64_t i = 0; i < n; i++)
            HB_CHECK(v[i] > 0.0f, HEARTH_E_FORMAT, "%s: tensor '%s' holds a non-positive RoPE factor", path, name);
    *out = v;
    v = NULL;
out:
    free(v);
    return rc;
}

int arch_bind_io(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    const struct model_hparams *hp = l->hp;
    const gguf_tensor *t = find_tensor(l, "token_embd.weight");
    HB_CHECK(t, HEARTH_E_FORMAT, "%s: tensor 'token_embd.weight' is missing", l->m->path);
    HB_CHECK(t->ne[1] >= 1 && t->ne[1] <= (1 << 24), HEARTH_E_FORMAT,
             "%s: tensor 'token_embd.weight' has an implausible vocabulary size %lld", l->m->path, (long long)t->ne[1]);
    l->hp->n_vocab = (int32_t)t->ne[1];
    if (l->m->vocab) {
        int32_t nv = tok_n_vocab(l->m->vocab);
        HB_CHECK(nv <= hp->n_vocab, HEARTH_E_FORMAT,
                 "%s: the tokenizer has %d tokens but token_embd.weight only %d rows", l->m->path, nv, hp->n_vocab);
    }
    /* the embedding table is only read row by row (get_rows): no packed copy */
    if ((rc = bind_mat(l, "token_embd.weight", hp->n_embd, hp->n_vocab, true, false, &l->w->tok_embd, err))) goto out;
    if ((rc = arch_bind_vec(l, "output_norm.weight", hp->n_embd, true, &l->w->out_norm, err))) goto out;
    if ((rc = arch_bind_mat(l, "output.weight", hp->n_embd, hp->n_vocab, false, &l->w->output, err))) goto out;
    if (!l->w->output.host.data) /* tied embeddings: the output projection reuses token_embd */
        rc = arch_bind_mat(l, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &l->w->output, err);
out:
    return rc;
}

int arch_bind_layer(arch_loader *l, int il, hb_err *err) {
    int rc = HEARTH_OK;
    const struct model_hparams *hp = l->hp;
    arch_layer *L = &l->w->layers[il];
    int64_t E = hp->n_embd, dq = (int64_t)hp->n_head * hp->head_dim_k;
    int64_t dk = (int64_t)hp->n_head_kv * hp->head_dim_k, dv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t F = hp->n_ff;
    char n[128];
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
    if ((rc = arch_bind_vec(l, NM("attn_norm.weight"), E, true, &L->attn_norm, err))) goto out;
    if (hp->fused_qkv) {
        if ((rc = arch_bind_mat(l, NM("attn_qkv.weight"), E, dq + dk + dv, true, &L->wqkv, err))) goto out;
    } else {
        if ((rc = arch_bind_mat(l, NM("attn_q.weight"), E, dq, true, &L->wq, err))) goto out;
        if ((rc = arch_bind_mat(l, NM("attn_k.weight"), E, dk, true, &L->wk, err))) goto out;
        if ((rc = arch_bind_mat(l, NM("attn_v.weight"), E, dv, true, &L->wv, err))) goto out;
    }
    if (hp->qkv_bias) {
        if ((rc = arch_bind_vec(l, NM("attn_q.bias"), dq, true, &L->bq, err))) goto out;
        if ((rc = arch_bind_vec(l, NM("attn_k.bias"), dk, true, &L->bk, err))) goto out;
        if ((rc = arch_bind_vec(l, NM("attn_v.bias"), dv, true, &L->bv, err))) goto out;
    }
    if (hp->qk_norm) {
        if ((rc = arch_bind_vec(l, NM("attn_q_norm.weight"), hp->head_dim_k, true, &L->q_norm, err))) goto out;
        if ((rc = arch_bind_vec(l, NM("attn_k_norm.weight"), hp->head_dim_k, true, &L->k_norm, err))) goto out;
    }
    if ((rc = arch_bind_mat(l, NM("attn_output.weight"), (int64_t)hp->n_head * hp->head_dim_v, E, true, &L->wo, err)))
        goto out;
    if (hp->post_norms) {
        if ((rc = arch_bind_vec(l, NM("post_attention_norm.weight"), E, true, &L->post_attn_norm, err))) goto out;
        if ((rc = arch_bind_vec(l, NM("post_ffw_norm.weight"), E, true, &L->post_ffn_norm, err))) goto out;
    }
    if ((rc = arch_bind_vec(l, NM("ffn_norm.weight"), E, true, &L->ffn_norm, err))) goto out;
    if (hp->fused_up) {
        if ((rc = arch_bind_mat(l, NM("ffn_up.weight"), E, 2 * F, true, &L->w_up, err))) goto out;
    } else {
        if ((rc = arch_bind_mat(l, NM("ffn_gate.weight"), E, F, true, &L->w_gate, err))) goto out;
        if ((rc = arch_bind_mat(l, NM("ffn_up.weight"), E, F, true, &L->w_up, err))) goto out;
    }
    if ((rc = arch_bind_mat(l, NM("ffn_down.weight"), F, E, true, &L->w_down, err))) goto out;
    /* pattern 0: every layer slides; pattern P: all but every P-th layer slide */
    L->swa = hp->n_swa > 0 && (hp->swa_pattern == 0 || (il % hp->swa_pattern) < hp->swa_pattern - 1);
#undef NM
out:
    return rc;
}
