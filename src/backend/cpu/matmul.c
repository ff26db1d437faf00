/* matmul.c — cpu_matmul entry point. This generic path follows the reference exactly:
 * quantize each activation row to the weight type's vec_dot_type once, then one
 * quant_vec_dot per (row, token), rows split across threads. Fast ISA kernels plug in
 * ahead of it (see docs/architecture.md). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

typedef struct mm_job {
    const cpu_weight *w;
    const uint8_t *xq;   /* [n_tok][xq_row] activations in vec_dot_type */
    size_t xq_row;
    int64_t n_tok;
    float *y;
    int64_t ldy;
} mm_job;

static void mm_task(void *ctx, int ith, int nth) {
    const mm_job *j = ctx;
    int64_t per = (j->w->n_rows + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = r0 + per < j->w->n_rows ? r0 + per : j->w->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)j->w->data + (size_t)r * j->w->row_bytes;
        for (int64_t t = 0; t < j->n_tok; t++)
            j->y[t * j->ldy + r] = quant_vec_dot(j->w->type, wr, j->xq + (size_t)t * j->xq_row, j->w->n_cols);
    }
}

int cpu_weight_prepare(cpu_weight *w, hb_err *err) {
    (void)err;
    w->packed = NULL;
    w->packed_kind = 0;
    return HEARTH_OK;
}

void cpu_weight_release(cpu_weight *w) {
    free(w->packed);
    w->packed = NULL;
    w->packed_kind = 0;
}

void cpu_scratch_free(cpu_scratch *s) {
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

static int scratch_reserve(cpu_scratch *s, size_t need) {
    if (s->cap >= need) return HEARTH_OK;
    void *nb = realloc(s->buf, need);
    if (!nb) return HEARTH_E_NOMEM;
    s->buf = nb;
    s->cap = need;
    return HEARTH_OK;
}

int cpu_matmul(cpu_pool *pool, const cpu_weight *w, const float *x, int64_t n_tok,
               float *y, int64_t ldy, cpu_scratch *scratch) {
    const quant_traits *tr = quant_traits_of(w->type);
    if (!tr || !tr->compute) return HEARTH_E_UNSUPPORTED;
    uint32_t vdt = tr->vec_dot_type;
    size_t xq_row = quant_row_size(vdt, w->n_cols);
    size_t need;
    if (!hb_mul_sz(xq_row, (size_t)n_tok, &need)) return HEARTH_E_NOMEM;
    if (scratch_reserve(scratch, need)) return HEARTH_E_NOMEM;
    for (int64_t t = 0; t < n_tok; t++)
        quant_quantize_row(vdt, x + t * w->n_cols, (uint8_t *)scratch->buf + (size_t)t * xq_row, w->n_cols);
    mm_job j = { w, scratch->buf, xq_row, n_tok, y, ldy };
    cpu_pool_run(pool, mm_task, &j);
    return HEARTH_OK;
}
