/* registry.c — the table of supported architecture families and model_arch_load, the hook
 * hearth_model_load calls to read hyper-parameters and bind weights (src/model/model.c).
 * Adding a family = one row here + one file with its loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"

static const arch_family k_families[] = {
    { "llama", ARCH_LLAMA, arch_llama_load },
    { "qwen2", ARCH_QWEN2, arch_qwen2_load },
    { "qwen3", ARCH_QWEN3, arch_qwen3_load },
    { "gemma", ARCH_GEMMA, arch_gemma_load },
    { "gemma2", ARCH_GEMMA2, arch_gemma2_load },
    { "gemma3", ARCH_GEMMA3, arch_gemma3_load },
    { "phi3", ARCH_PHI3, arch_phi3_load },
};
#define N_FAMILIES (sizeof k_families / sizeof k_families[0])

static void release_w(be_weight *w) { cpu_weight_release(&w->host); }

static void arch_model_free(struct hearth_model *m) {
    arch_model *w = m->arch_data;
    if (w) {
        if (w->layers && m->hp) {
            for (int32_t il = 0; il < m->hp->n_layer; il++) {
                arch_layer *L = &w->layers[il];
                be_weight *mats[] = { &L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
                float *vecs[] = { L->attn_norm, L->bq, L->bk, L->bv, L->q_norm, L->k_norm,
                                  L->post_attn_norm, L->ffn_norm, L->post_ffn_norm };
                for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) release_w(mats[i]);
                for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) free(vecs[i]);
            }
        }
        free(w->layers);
        release_w(&w->tok_embd);
        release_w(&w->output);
        free(w->out_norm);
        free(w->rope_factors);
        free(w->rope_factors_long);
        free(w);
    }
    free(m->hp);
    m->hp = NULL;
    m->arch_data = NULL;
    m->arch_free = NULL;
}

/* "llama, qwen2, ..." for the unsupported-architecture message. */
static void family_list(char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_FAMILIES && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", k_families[i].name);
}

int model_arch_load(struct hearth_model *m, hb_err *err) {
    int rc = HEARTH_OK;
    const arch_family *fam = NULL;
    char list[256];
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(m->arch_name, k_families[i].name) == 0) fam = &k_families[i];
    family_list(list, sizeof list);
    HB_CHECK(fam, HEARTH_E_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", m->path,
             m->arch_name, list);
    m->hp = calloc(1, sizeof *m->hp);
    m->arch_data = calloc(1, sizeof(arch_model));
    m->arch_free = arch_model_free;
    HB_CHECK(m->hp && m->arch_data, HEARTH_E_NOMEM, "out of memory");
    m->hp->arch = fam->id;
    arch_loader l = { m, m->hp, m->arch_data, m->arch_name };
    if ((rc = arch_load_common_hparams(&l, err))) goto out;
    l.w->layers = hb_calloc_n((size_t)m->hp->n_layer, sizeof(arch_layer));
    HB_CHECK(l.w->layers, HEARTH_E_NOMEM, "out of memory");
    if ((rc = fam->load(&l, err))) goto out;
out:
    if (rc && m->arch_free) m->arch_free(m);
    return rc;
}

/* ---- public facts that need the hyper-parameters ------------------------------------------ */

int32_t hearth_model_n_vocab(const hearth_model *m) {
    if (m->hp) return m->hp->n_vocab;
    return m->vocab ? tok_n_vocab(m->vocab) : 0;
}
int32_t hearth_model_n_ctx_train(const hearth_model *m) { return m->hp ? m->hp->n_ctx_train : 0; }
int32_t hearth_model_n_embd(const hearth_model *m) { return m->hp ? m->hp->n_embd : 0; }
int32_t hearth_model_n_layer(const hearth_model *m) { return m->hp ? m->hp->n_layer : 0; }
int32_t hearth_model_n_head(const hearth_model *m) { return m->hp ? m->hp->n_head : 0; }
int32_t hearth_model_n_head_kv(const hearth_model *m) { return m->hp ? m->hp->n_head_kv : 0; }
