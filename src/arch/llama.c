/* llama.c — the llama family (Llama 2/3/3.1/3.2, Mistral, TinyLlama): RMSNorm, SwiGLU,
 * GQA, RoPE on adjacent pairs ("normal" style). Llama 3.1+ files carry per-frequency
 * divisors in rope_freqs.weight (the llama3 scaling, precomputed by the converter). */
#include "arch/arch.h"

int arch_llama_load(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->rope_style = BE_ROPE_NORMAL;
    if ((rc = arch_bind_io(l, err))) goto out;
    if ((rc = arch_bind_vec(l, "rope_freqs.weight", hp->n_rot / 2, false, &l->w->rope_factors, err))) goto out;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((rc = arch_bind_layer(l, il, err))) goto out;
out:
    return rc;
}
