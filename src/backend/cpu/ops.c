/* ops.c — the CPU implementation of the be_ops table (src/backend/backend.h): buffers,
 * matmul (via cpu_matmul), embedding rows, RMSNorm, RoPE and the element-wise ops.
 * Attention and the KV cache stores live in ops_attn.c.
 *
 * Determinism: every output element is computed by exactly one thread in a fixed order,
 * so results never depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"

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

static int cpu_op_matmul(be_ctx *b, const be_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy) {
    cpu_be *c = b->impl;
    return cpu_matmul(c->pool, &w->host, x, n_tok, y, ldy, &c->mm_scratch);
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

static void cpu_rmsnorm(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                        int64_t n, const float *w, float eps) {
    (void)b;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * xs;
        float *yr = y + r * ys;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float k = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        if (w)
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * k * w[i];
        else
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * k;
    }
}

/* cos/sin for one position, pair index i < n_rot/2. */
static void rope_cs(const be_rope *r, int32_t pos, int32_t i, float *c, float *s) {
    double inv = pow((double)r->base, -2.0 * i / (double)r->n_rot);
    double theta = (double)pos * r->freq_scale * inv;
    if (r->factors) theta /= r->factors[i];
    *c = (float)(cos(theta) * r->attn_factor);
    *s = (float)(sin(theta) * r->attn_factor);
}

static void cpu_rope(be_ctx *b, float *x, int64_t n_tok, int64_t stride, int32_t n_head,
                     int32_t head_dim, const int32_t *pos, const be_rope *r) {
    (void)b;
    int32_t half = r->n_rot / 2;
    float cs[2 * (BE_MAX_ROT / 2)]; /* [half][cos, sin]; n_rot <= BE_MAX_ROT checked at load */
    for (int64_t t = 0; t < n_tok; t++) {
        for (int32_t i = 0; i < half; i++) rope_cs(r, pos[t], i, &cs[2 * i], &cs[2 * i + 1]);
        for (int32_t h = 0; h < n_head; h++) {
            float *v = x + t * stride + (int64_t)h * head_dim;
            for (int32_t i = 0; i < half; i++) {
                int32_t a = r->style == BE_ROPE_NEOX ? i : 2 * i;
                int32_t bb = r->style == BE_ROPE_NEOX ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[bb];
                v[a] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
                v[bb] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
            }
            /* dims beyond n_rot pass through unchanged; attn_factor applies only to the
             * rotated part, as in the reference implementations */
        }
    }
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

static void cpu_glu(be_ctx *b, be_glu kind, const float *gate, int64_t gs, const float *up, int64_t us,
                    float *out, int64_t os, int64_t n_tok, int64_t n) {
    (void)b;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *g = gate + t * gs, *u = up + t * us;
        float *o = out + t * os;
        if (kind == BE_GLU_SILU)
            for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        else
            for (int64_t i = 0; i < n; i++) o[i] = gelu_tanh(g[i]) * u[i];
    }
}

/* ---- the table ------------------------------------------------------------------------- */

static const be_ops k_cpu_ops = {
    .name = "cpu",
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .read = cpu_read,
    .matmul = cpu_op_matmul,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
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
        free(c);
    }
    free(b);
}
