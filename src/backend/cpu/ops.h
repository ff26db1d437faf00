/* ops.h — internals shared by the CPU implementation of the backend table (ops.c,
 * ops_attn.c). Not used outside src/backend/cpu. */
#ifndef HEARTH_CPU_OPS_H
#define HEARTH_CPU_OPS_H

#include "backend/backend.h"

typedef struct cpu_be {
    cpu_pool *pool;
    cpu_scratch mm_scratch;   /* quantized activations for cpu_matmul */
    float *attn_scratch;      /* [n_threads][attn_per_thread] scores + dequantized rows */
    size_t attn_cap;          /* floats allocated in attn_scratch */
    void *blocks;             /* [blocks_cap] attention query blocks (ops_attn.c) */
    size_t blocks_cap;
    void *work;               /* SIMD attention work items (ops_vec.h attn_work) */
    size_t work_cap;          /* bytes allocated in work */
    float *attn_part;         /* SIMD attention: per-chunk softmax states of split items */
    size_t part_cap;          /* floats allocated in attn_part */
} cpu_be;

void cpu_kv_store(be_ctx *b, const be_kv_layer *kv, const float *k, int64_t ks, const float *v,
                  int64_t vs, int64_t n_tok, const int32_t *pos, const int32_t *seq);
int cpu_kv_copy(be_ctx *b, const be_kv_layer *kv, int32_t src, int32_t dst, int64_t n);
int cpu_attention(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os);

#endif
