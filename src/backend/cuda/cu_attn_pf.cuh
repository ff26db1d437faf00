/* cu_attn_pf.cuh — the prefill attention kernel (cu_attn_pf.cu) as seen by the dispatch in
 * cu_ops.cu: a predicate that says whether a cuda_attention call takes it, and the entry.
 * Semantics are exactly those of cuda_attention (cuda.h). */
#ifndef HEARTH_CU_ATTN_PF_CUH
#define HEARTH_CU_ATTN_PF_CUH

#include "backend/cuda/cu_internal.cuh"

/* Smallest batch that takes the tensor-core kernel (below it: the split kernel). Always
 * above AT_SMALL_BATCH (8), so decode steps never change path. Measured on an H200
 * (TinyLlama heads, f16 cache): prompts of 16 tokens ran 7.0 us here vs 5.4 us on the
 * split kernel, 24 tokens 5.6 vs 5.8, 32 tokens 5.5 vs 6.3, 64 tokens 6.2 vs 10.9; decode
 * steps of 32 sequences (one token each, ~1200 cells) 67 vs 70 us. */
#define PF_MIN_TOK 32
#if PF_MIN_TOK <= 8
#error "decode batches (up to AT_SMALL_BATCH = 8 tokens) must keep the split kernel"
#endif

/* True when attention a (with these q/out pointers and row strides, in floats) can run on
 * the prefill kernel: n_tok >= PF_MIN_TOK, head_dim_k == head_dim_v in {64, 128}, a
 * f16/f32/q8_0 cache laid out as n_head_kv heads per row with the alignment the staging
 * needs, even strides. HEARTH_CUDA_PFATTN=0 turns the kernel off (cuda_knobs),
 * HEARTH_CUDA_PFATTN_MIN=N (9..4096) moves the threshold. */
bool cu_attn_pf_use(const cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, const float *out, int64_t os);

/* Runs attention a on the prefill kernel (the caller checked cu_attn_pf_use and the head
 * split); quant: also leave the output quantized in the activation scratch, as
 * cuda_attention_q8 does. */
int cu_attn_pf(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
               hb_err *err);

#endif
