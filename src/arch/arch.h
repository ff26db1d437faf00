/* arch.h — model architectures: hyper-parameters, weight slots and the forward pass.
 *
 * model_arch_load (registry.c) reads `general.architecture`, finds the family in the
 * registry table and lets the family's loader read its hyper-parameters and bind weight
 * slots to tensors by GGUF name, validating every shape. The forward pass (forward.c) is
 * one decoder written once from shared building blocks; the family only sets the switches
 * (biases, q/k norms, post-norms, GeGLU, fused projections, soft-capping, sliding windows).
 *
 * Ownership: the hparams and arch_model hang off the hearth_model (m->hp, m->arch_data) and
 * are freed by m->arch_free. Weight data is borrowed from the model's GGUF mapping; norm
 * vectors and RoPE factors are owned f32 copies.
 */
#ifndef HEARTH_ARCH_H
#define HEARTH_ARCH_H

#include "backend/backend.h"
#include "model/model.h"

typedef enum arch_id {
    ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_GEMMA, ARCH_GEMMA2, ARCH_GEMMA3, ARCH_PHI3
} arch_id;

struct model_hparams {
    arch_id arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_ff;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim_k, head_dim_v;   /* attention.key_length / value_length */
    int32_t n_rot;                    /* rope.dimension_count */
    float eps;                        /* attention.layer_norm_rms_epsilon */
    float rope_base;                  /* rope.freq_base (global layers) */
    float rope_base_swa;              /* RoPE base of sliding-window layers */
    float rope_scale;                 /* position multiplier of global layers (1/factor) */
    float rope_scale_swa;             /* position multiplier of sliding layers */
    float rope_attn_factor;           /* cos/sin multiplier (phi3 long-RoPE), 1 = none */
    int32_t n_ctx_orig;               /* rope.scaling.original_context_length, 0 = none */
    be_rope_style rope_style;
    int32_t n_swa;                    /* sliding window (tokens incl. the current), 0 = none */
    int32_t swa_pattern;              /* 0: all layers slide; P: il slides iff il % P < P - 1 */
    float attn_softcap, final_softcap;/* 0 = off */
    float attn_scale;                 /* multiplier of q.k */
    float embd_scale;                 /* multiplier of the token embeddings (1 = none) */
    /* switches of the shared decoder */
    bool qkv_bias, qk_norm, post_norms, fused_qkv, fused_up;
    be_glu act;
};

/* Weights of one decoder layer. Matrices are [n_out][n_in]; vectors are owned f32. */
typedef struct arch_layer {
    float *attn_norm;            /* [n_embd] */
    be_weight wq, wk, wv;        /* [n_head*hd_k][n_embd], [n_head_kv*hd_k][..], [n_head_kv*hd_v][..] */
    be_weight wqkv;              /* fused [n_head*hd_k + 2*n_head_kv*hd][n_embd] (phi3) */
    float *bq, *bk, *bv;         /* biases (qwen2) or NULL */
    float *q_norm, *k_norm;      /* [hd_k] per-head norms (qwen3, gemma3) or NULL */
    be_weight wo;                /* [n_embd][n_head*hd_v] */
    float *post_attn_norm;       /* [n_embd] (gemma2/3) or NULL */
    float *ffn_norm;             /* [n_embd] */
    be_weight w_gate, w_up;      /* [n_ff][n_embd]; w_up is [2*n_ff][..] when fused */
    be_weight w_down;            /* [n_embd][n_ff] */
    float *post_ffn_norm;        /* [n_embd] or NULL */
    bool swa;                    /* sliding-window layer */
} arch_layer;

typedef struct arch_model {
    be_weight tok_embd;          /* [n_vocab][n_embd] */
    float *out_norm;             /* [n_embd] */
    be_weight output;            /* [n_vocab][n_embd]; a copy of tok_embd's view when tied */
    float *rope_factors;         /* [n_rot/2] llama3 rope_freqs or phi3 short factors, or NULL */
    float *rope_factors_long;    /* [n_rot/2] phi3 long factors, or NULL */
    arch_layer *layers;          /* [n_layer] */
} arch_model;

/* ---- loading helpers (common.c), used by the family files ------------------------------ */
typedef struct arch_loader {
    struct hearth_model *m;
    struct model_hparams *hp;
    arch_model *w;
    const char *prefix;          /* general.architecture, for "<arch>.<key>" */
} arch_loader;

/* Reads "<arch>.<key>". Absent: *out = def and OK if !required, else HEARTH_E_FORMAT. */
int arch_get_i32(arch_loader *l, const char *key, bool required, int32_t def, int32_t lo, int32_t hi,
                 int32_t *out, hb_err *err);
int arch_get_f32(arch_loader *l, const char *key, float def, float *out, hb_err *err);
/* Reads the hyper-parameters every family shares and checks them for consistency. */
int arch_load_common_hparams(arch_loader *l, hb_err *err);
/* Binds a 2-D matrix [n_out][n_in] (GGUF ne = {n_in, n_out}). Absent and !required: left
 * zeroed (data NULL), OK. */
int arch_bind_mat(arch_loader *l, const char *name, int64_t n_in, int64_t n_out, bool required,
                  be_weight *out, hb_err *err);
/* Binds a 1-D vector of n elements, copied to an owned f32 array (*out NULL if absent and
 * not required). */
int arch_bind_vec(arch_loader *l, const char *name, int64_t n, bool required, float **out, hb_err *err);
/* Binds the tensors every family shares: embeddings, output norm, output (tied when absent). */
int arch_bind_io(arch_loader *l, hb_err *err);
/* Binds the standard per-layer tensors (norms, q/k/v/o or qkv, ffn) following hp switches. */
int arch_bind_layer(arch_loader *l, int il, hb_err *err);

/* ---- families ---------------------------------------------------------------------------- */
typedef struct arch_family {
    const char *name;            /* general.architecture value */
    arch_id id;
    int (*load)(arch_loader *l, hb_err *err);
} arch_family;

int arch_llama_load(arch_loader *l, hb_err *err);
int arch_qwen2_load(arch_loader *l, hb_err *err);
int arch_qwen3_load(arch_loader *l, hb_err *err);
int arch_gemma_load(arch_loader *l, hb_err *err);
int arch_gemma2_load(arch_loader *l, hb_err *err);
int arch_gemma3_load(arch_loader *l, hb_err *err);
int arch_phi3_load(arch_loader *l, hb_err *err);

/* ---- forward ----------------------------------------------------------------------------- */

/* Per-decode inputs and scratch the engine hands to the forward pass. All buffers are
 * backend memory sized for n_tok <= n_batch (see arch_scratch_floats). */
typedef struct arch_batch {
    int32_t n_tok;
    const int32_t *token, *pos, *seq;    /* [n_tok] host, validated by the engine */
    const int32_t *out_idx;              /* [n_out] batch rows whose final state is wanted */
    int32_t n_out;
    const int32_t *logit_sel;            /* [n_logits] out rows that need logits; NULL = all */
    int32_t n_logits;
    float *logits;                       /* [n_logits][n_vocab] backend memory, or NULL */
    float *hidden;                       /* [n_out][n_embd] normed final states, or NULL */
    int32_t n_ctx;                       /* context length (selects phi3 short/long factors) */
    bool (*abort_fn)(void *ud);
    void *abort_ud;
} arch_batch;

/* Floats of scratch the forward pass needs for n_tok tokens. */
int64_t arch_scratch_floats(const struct model_hparams *hp, int64_t n_tok);

/* A run of consecutive layers [l0, l1) on one backend, with that backend's scratch
 * (arch_scratch_floats(hp, n_batch) floats at offset 0). */
typedef struct arch_stage {
    be_ctx *be;
    const be_buf *scratch;
    int32_t l0, l1;
} arch_stage;

/* Runs the model over the batch on n_st stages covering layers 0..n_layer-1 in order: the
 * first stage also embeds the tokens, the last computes the outputs (b->logits and
 * b->hidden are its backend's memory). Between stages the hidden state moves once; every
 * stage after the first must keep its buffers in host memory (be_ops.host_mem). Stores K/V
 * of every token into kv[il] and writes the requested logits / hidden states. */
int arch_forward(const struct hearth_model *m, const arch_stage *st, int n_st, const be_kv_layer *kv,
                 const arch_batch *b, hb_err *err);

#endif
