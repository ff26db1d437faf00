/* gemma.c — the Gemma families (text part).
 *
 * All: embeddings scaled by sqrt(n_embd), GELU(tanh) gated FFN, NeoX RoPE, tied output.
 * The GGUF converter already stores RMSNorm weights as (1 + w), so they are used as
 * stored. gemma2 adds post-attention / post-FFN norms, attention-logit and final-logit
 * soft-capping and sliding-window attention on every other layer (even layers slide).
 * gemma3 drops the soft-caps, adds per-head q/k norms, slides 5 of every 6 layers, and
 * gives sliding layers their own RoPE base (rope.freq_base_swa, default 10000) without
 * the linear RoPE scaling that global layers may carry.
 */
#include <math.h>

#include "arch/arch.h"

/* Gemma 2/3 27B scale queries by 1/sqrt(n_embd / n_head) (their query_pre_attn_scalar)
 * instead of 1/sqrt(head_dim); the files carry no key for it, so the model is recognised
 * by its depth (46 layers for Gemma 2 27B, 62 for Gemma 3 27B), as the reference does. */
static void gemma_27b_scale(struct model_hparams *hp, int32_t layers_27b) {
    if (hp->n_layer == layers_27b) hp->attn_scale = 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head);
}

static int gemma_common(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->rope_style = BE_ROPE_NEOX;
    hp->act = BE_GLU_GELU_TANH;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    if ((rc = arch_get_f32(l, "attn_logit_softcapping", 0.0f, &hp->attn_softcap, err))) goto out;
    if ((rc = arch_get_f32(l, "final_logit_softcapping", 0.0f, &hp->final_softcap, err))) goto out;
    HB_CHECK(hp->attn_softcap >= 0.0f && hp->final_softcap >= 0.0f, HEARTH_E_FORMAT,
             "%s: negative soft-capping value", l->m->path);
    if ((rc = arch_bind_io(l, err))) goto out;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((rc = arch_bind_layer(l, il, err))) goto out;
out:
    return rc;
}

int arch_gemma_load(arch_loader *l, hb_err *err) { return gemma_common(l, err); }

int arch_gemma2_load(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->post_norms = true;
    hp->swa_pattern = 2;
    gemma_27b_scale(hp, 46);
    if ((rc = arch_get_i32(l, "attention.sliding_window", false, 4096, 0, 1 << 24, &hp->n_swa, err))) goto out;
    rc = gemma_common(l, err);
out:
    return rc;
}

int arch_gemma3_load(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->post_norms = true;
    hp->qk_norm = true;
    hp->swa_pattern = 6;
    gemma_27b_scale(hp, 62);
    if ((rc = arch_get_i32(l, "attention.sliding_window", false, 512, 0, 1 << 24, &hp->n_swa, err))) goto out;
    if ((rc = arch_get_f32(l, "rope.freq_base_swa", 10000.0f, &hp->rope_base_swa, err))) goto out;
    HB_CHECK(hp->rope_base_swa > 0.0f, HEARTH_E_FORMAT, "%s: rope.freq_base_swa must be positive", l->m->path);
    hp->rope_scale_swa = 1.0f;
    rc = gemma_common(l, err);
out:
    return rc;
}
