/* qwen.c — the Qwen families. qwen2: llama-like with biases on the q/k/v projections;
 * qwen3: no biases but a per-head RMSNorm on q and k before RoPE. Both rotate halves
 * (NeoX style). */
#include "arch/arch.h"

static int qwen_load(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->rope_style = BE_ROPE_NEOX;
    if ((rc = arch_bind_io(l, err))) goto out;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((rc = arch_bind_layer(l, il, err))) goto out;
out:
    return rc;
}

int arch_qwen2_load(arch_loader *l, hb_err *err) {
    l->hp->qkv_bias = true;
    return qwen_load(l, err);
}

int arch_qwen3_load(arch_loader *l, hb_err *err) {
    l->hp->qk_norm = true;
    return qwen_load(l, err);
}
