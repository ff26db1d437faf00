/* ops.c — the CPU implementation of the be_ops table (src/backend/backend.h): buffers,
 * matmul (via cpu_matmul), embedding rows, RMSNorm, RoPE and the element-wise ops.
 * Attention and the KV cache stores live in ops_attn.c. GLU, RMSNorm and add use the SIMD
 * helpers of ops_vec.h (cpu_vec_get) when the ISA level allows, else the scalar loops here.
 *
 * Determinism: every output element is computed by exactly one thread in a fixed order,
 * so results never depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/ops_vec.h"

/* ---- row-parallel helper ---------------------------------------------------------------
 * Row-wise ops split their rows into contiguous ranges per thread when the job is big
 * enough to pay for waking the pool (large prompt batches); small ones run inline. */
#define PAR_MIN_ELEMS (1 << 16)

typedef void (*rows_fn)(const void *args, int64_t r0, int64_t r1);
typedef struct rows_job {
    rows_fn fn;
    const void *args;
    int64_t n_rows;
} rows_job;

static void rows_task(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    int64_t per = (j->n_rows + nth - 1) / nth, r0 = per * ith, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    if (r0 < r1) j->fn(j->args, r0, r1);
}

static void run_rows(be_ctx *b, int64_t n_rows, int64_t row_elems, rows_fn fn, const void *args) {
    cpu_be *c = b->impl;
    if (n_rows < 2 || n_rows * row_elems < PAR_MIN_ELEMS || cpu_pool_n_threads(c->pool) == 1) {
        fn(args, 0, n_rows);
        return;
    }
    rows_job j = { fn, args, n_rows };
    cpu_pool_run(c->pool, rows_task, &j);
}

/* ---- buffers --------------------------------------------------------------------------- */

static int cpu_buf_alloc(be_ctx *b, be_buf *out, int64_t n, hb_err *err) {
    (void)b;
    out->p = NULL;
    out->n = 0;
    if (n <= 0) n = 1;
    out->p = hb_calloc_n((size_t)n, sizeof(float));
    if (!out->p) return hb_fail(err, HEARTH_E_NOMEM, "out of memory allocating %lld floats", (long long)n);
    out->n = n;
    return HEARTH_OK;
}

static void cpu_buf_free(be_ctx *b, be_buf *buf) {
    (void)b;
    free(buf->p);
    buf->p = NULL;
    buf->n = 0;
}

static void cpu_read(be_ctx *b, const be_buf *src, int64_t off, float *dst, int64_t n) {
    (void)b;
    memcpy(dst, src->p + off, (size_t)n * sizeof(float));
}

/* ---- matmul and embeddings ------------------------------------------------------------- */

/* Below this many multiply-adds a matmul runs on the calling thread: waking the pool costs
 * more than the work (tiny models, decode of small layers), and far more on a loaded
 * machine where a sleeping worker waits for a time slice. Every output row is computed the
 * same way either way, so results do not change. */
#define MM_INLINE_MACS (1 << 19)

static int cpu_op_matmul(be_ctx *b, const be_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy) {
    cpu_be *c = b->impl;
    bool small = w->host.n_rows * w->host.n_cols * n_tok < MM_INLINE_MACS;
    return cpu_matmul(small ? NULL : c->pool, &w->host, x, n_tok, y, ldy, &c->mm_scratch);
}

static int cpu_get_rows(be_ctx *b, const be_weight *w, const int32_t *ids, int64_t n, float *out) {
    (void)b;
    const cpu_weight *h = &w->host;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)h->data + (size_t)ids[i] * h->row_bytes;
        if (!quant_dequantize_row(h->type, row, out + i * h->n_cols, h->n_cols)) return HEARTH_E_UNSUPPORTED;
    }
    return HEARTH_OK;
}

/* ---- norms and RoPE -------------------------------------------------------------------- */

typedef struct norm_args {
    const cpu_vec *vx;        /* SIMD helpers or NULL (scalar reference) */
    const float *x, *w;
    float *y;
    int64_t xs, ys, n;
    float eps;
} norm_args;

static void norm_rows(const void *args, int64_t r0, int64_t r1) {
    const norm_args *a = args;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = a->x + r * a->xs;
        float *yr = a->y + r * a->ys;
        double ss = 0.0;
        if (a->vx) ss = a->vx->sumsq(xr, a->n);
        else
            for (int64_t i = 0; i < a->n; i++) ss += (double)xr[i] * xr[i];
        float k = (float)(1.0 / sqrt(ss / (double)a->n + (double)a->eps));
        if (a->vx)
            a->vx->scale_rows(xr, k, a->w, yr, a->n);
        else if (a->w)
            for (int64_t i = 0; i < a->n; i++) yr[i] = xr[i] * k * a->w[i];
        else
            for (int64_t i = 0; i < a->n; i++) yr[i] = xr[i] * k;
    }
}

static void cpu_rmsnorm(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                        int64_t n, const float *w, float eps) {
    norm_args a = { cpu_vec_get(), x, w, y, xs, ys, n, eps };
    run_rows(b, n_rows, n, norm_rows, &a);
}

/* base^(-2i/n_rot) for one pair index: depends only on i, so computed once per call. */
static double rope_inv(const be_rope *r, int32_t i) { return pow((double)r->base, -2.0 * i / (double)r->n_rot); }

/* cos/sin for one position, pair index i < n_rot/2 (inv = rope_inv(r, i)). */
static void rope_cs(const be_rope *r, int32_t pos, int32_t i, double inv, float *c, float *s) {
    double theta = (double)pos * r->freq_scale * inv;
    if (r->factors) theta /= r->factors[i];
    *c = (float)(cos(theta) * r->attn_factor);
    *s = (float)(sin(theta) * r->attn_factor);
}

typedef struct rope_args {
    float *x;
    int64_t stride;
    int32_t n_head, head_dim;
    const int32_t *pos;
    const be_rope *r;
} rope_args;

static void rope_rows(const void *args, int64_t t0, int64_t t1) {
    const rope_args *a = args;
    const be_rope *r = a->r;
    int32_t half = r->n_rot / 2;
    float cs[2 * (BE_MAX_ROT / 2)]; /* [half][cos, sin]; n_rot <= BE_MAX_ROT checked at load */
    double inv[BE_MAX_ROT / 2];
    for (int32_t i = 0; i < half; i++) inv[i] = rope_inv(r, i);
    for (int64_t t = t0; t < t1; t++) {
        for (int32_t i = 0; i < half; i++) rope_cs(r, a->pos[t], i, inv[i], &cs[2 * i], &cs[2 * i + 1]);
        for (int32_t h = 0; h < a->n_head; h++) {
            float *v = a->x + t * a->stride + (int64_t)h * a->head_dim;
            for (int32_t i = 0; i < half; i++) {
                int32_t i0 = r->style == BE_ROPE_NEOX ? i : 2 * i;
                int32_t i1 = r->style == BE_ROPE_NEOX ? i + half : 2 * i + 1;
                float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
                v[i1] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
            }
            /* dims beyond n_rot pass through unchanged; attn_factor applies only to the
             * rotated part, as in the reference implementations */
        }
    }
}

static void cpu_rope(be_ctx *b, float *x, int64_t n_tok, int64_t stride, int32_t n_head,
                     int32_t head_dim, const int32_t *pos, const be_rope *r) {
    rope_args a = { x, stride, n_head, head_dim, pos, r };
    /* each row also pays n_rot/2 cos/sin evaluations: count them as work */
    run_rows(b, n_tok, (int64_t)n_head * r->n_rot + 16 * r->n_rot, rope_rows, &a);
}

/* ---- element-wise ---------------------------------------------------------------------- */

static void cpu_copy_rows(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok,
                          int64_t n, const float *bias) {
    (void)b;
    for (int64_t t = 0; t < n_tok; t++) {
        if (bias)
            for (int64_t i = 0; i < n; i++) y[t * ys + i] = x[t * xs + i] + bias[i];
        else
            memmove(y + t * ys, x + t * xs, (size_t)n * sizeof(float));
    }
}

static void cpu_add(be_ctx *b, float *y, const float *x, int64_t n) {
    (void)b;
    const cpu_vec *vx = cpu_vec_get();
    if (vx) {
        vx->add(y, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_scale(be_ctx *b, float *x, int64_t n, float s) {
    (void)b;
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

static void cpu_softcap(be_ctx *b, float *x, int64_t n, float cap) {
    (void)b;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

static float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

typedef struct glu_args {
    const cpu_vec *vx;        /* SIMD helpers or NULL (scalar reference) */
    be_glu kind;
    const float *gate, *up;
    float *out;
    int64_t gs, us, os, n;
} glu_args;

static void glu_rows(const void *args, int64_t t0, int64_t t1) {
    const glu_args *a = args;
    for (int64_t t = t0; t < t1; t++) {
        const float *g = a->gate + t * a->gs, *u = a->up + t * a->us;
        float *o = a->out + t * a->os;
        if (a->vx)
            a->vx->glu(a->kind, g, u, o, a->n);
        else if (a->kind == BE_GLU_SILU)
            for (int64_t i = 0; i < a->n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        else
            for (int64_t i = 0; i < a->n; i++) o[i] = gelu_tanh(g[i]) * u[i];
    }
}

static void cpu_glu(be_ctx *b, be_glu kind, const float *gate, int64_t gs, const float *up, int64_t us,
                    float *out, int64_t os, int64_t n_tok, int64_t n) {
    glu_args a = { cpu_vec_get(), kind, gate, up, out, gs, us, os, n };
    run_rows(b, n_tok, 8 * n, glu_rows, &a);
}

/* ---- the table ------------------------------------------------------------------------- */

static const be_ops k_cpu_ops = {
    .name = "cpu",
    .host_mem = true,
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .read = cpu_read,
    .matmul = cpu_op_matmul,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .kv_copy = cpu_kv_copy,
    .attention = cpu_attention,
    .copy_rows = cpu_copy_rows,
    .add = cpu_add,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .glu = cpu_glu,
};

int be_cpu_new(int n_threads, be_ctx **out, hb_err *err) {
    int rc = HEARTH_OK;
    be_ctx *b = NULL;
    cpu_be *c = NULL;
    *out = NULL;
    b = calloc(1, sizeof *b);
    c = calloc(1, sizeof *c);
    HB_CHECK(b && c, HEARTH_E_NOMEM, "out of memory");
    b->ops = &k_cpu_ops;
    b->impl = c;
    c = NULL;
    if ((rc = cpu_pool_new(n_threads, &((cpu_be *)b->impl)->pool, err))) goto out;
    *out = b;
    b = NULL;
out:
    free(c);
    be_cpu_free(b);
    return rc;
}

void be_cpu_free(be_ctx *b) {
    if (!b) return;
    cpu_be *c = b->impl;
    if (c) {
        cpu_pool_free(c->pool);
        cpu_scratch_free(&c->mm_scratch);
        free(c->attn_scratch);
        free(c->blocks);
        free(c->work);
        free(c->attn_part);
        free(c);
    }
    free(b);
}
