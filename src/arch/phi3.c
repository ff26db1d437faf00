/* phi3.c — the Phi-3 family: fused QKV projection (attn_qkv = [q | k | v] rows), fused
 * gate/up (ffn_up = [gate | up] rows, SwiGLU), NeoX RoPE with LongRoPE per-frequency
 * divisors: rope_factors_short up to rope.scaling.original_context_length, long beyond
 * (chosen by the context length), and cos/sin scaled by rope.scaling.attn_factor. */
#include "arch/arch.h"

int arch_phi3_load(arch_loader *l, hb_err *err) {
    int rc = HEARTH_OK;
    struct model_hparams *hp = l->hp;
    hp->rope_style = BE_ROPE_NEOX;
    hp->fused_qkv = true;
    hp->fused_up = true;
    if ((rc = arch_get_i32(l, "rope.scaling.original_context_length", false, 0, 0, 1 << 24, &hp->n_ctx_orig, err)))
        goto out;
    if ((rc = arch_get_f32(l, "rope.scaling.attn_factor", 1.0f, &hp->rope_attn_factor, err))) goto out;
    HB_CHECK(hp->rope_attn_factor > 0.0f, HEARTH_E_FORMAT, "%s: rope.scaling.attn_factor must be positive", l->m->path);
    if ((rc = arch_bind_io(l, err))) goto out;
    if ((rc = arch_bind_vec(l, "rope_factors_short.weight", hp->n_rot / 2, false, &l->w->rope_factors, err))) goto out;
    if ((rc = arch_bind_vec(l, "rope_factors_long.weight", hp->n_rot / 2, false, &l->w->rope_factors_long, err)))
        goto out;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((rc = arch_bind_layer(l, il, err))) goto out;
out:
    return rc;
}
