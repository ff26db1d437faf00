/* matmul.c — cpu_matmul: picks a kernel for the weight and the current ISA level, prepares
 * the activations once per call, and splits the output rows over the pool.
 *
 * Generic path (scalar level, or a type without a SIMD kernel): exactly the reference —
 * quantize each activation row to the type's vec_dot_type, one quant_vec_dot per
 * (row, token). SIMD path: the same reference quantization, rearranged into the prepared
 * layout of matmul_impl.h, then the ISA kernel over 16-row groups.
 *
 * Determinism: every output element is computed by exactly one thread, in an order that
 * depends only on the (row group, token), never on the thread count or split.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/matmul_impl.h"
#include "quant/blocks.h"

/* ---- generic reference path -------------------------------------------------------------- */

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
    int64_t r0 = j->w->n_rows * ith / nth, r1 = j->w->n_rows * (ith + 1) / nth;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)j->w->data + (size_t)r * j->w->row_bytes;
        for (int64_t t = 0; t < j->n_tok; t++)
            j->y[t * j->ldy + r] = quant_vec_dot(j->w->type, wr, j->xq + (size_t)t * j->xq_row, j->w->n_cols);
    }
}

/* ---- weights and scratch ------------------------------------------------------------------ */

typedef struct pack_job {
    const cpu_weight *w;
    int kind;
    uint8_t *dst;
    int64_t n_groups;
} pack_job;

static void pack_task(void *ctx, int ith, int nth) {
    const pack_job *j = ctx;
    mm_pack_groups(j->w, j->kind, j->dst, j->n_groups * ith / nth, j->n_groups * (ith + 1) / nth);
}

/* Drops the whole pages inside [p, p + n) of a read-only file mapping; the partial pages at
 * the ends may hold neighbouring tensors still in use, so they stay. */
static void release_pages(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

int cpu_weight_prepare(cpu_weight *w, hb_err *err) {
    int rc = HEARTH_OK, kind;
    w->packed = NULL;
    w->packed_kind = 0;
    if (cpu_isa_level() < CPU_ISA_AVX2) return HEARTH_OK;
    size_t sz = mm_pack_size(w, &kind);
    if (!sz) return HEARTH_OK;
    void *p = NULL;
    HB_CHECK(posix_memalign(&p, 64, sz) == 0, HEARTH_E_NOMEM, "out of memory repacking a %lldx%lld %s weight (%zu bytes)",
             (long long)w->n_rows, (long long)w->n_cols, quant_type_name(w->type), sz);
    pack_job j = { w, kind, p, (w->n_rows + MM_GROUP - 1) / MM_GROUP };
    pack_task(&j, 0, 1);
    w->packed = p;
    w->packed_kind = kind;
    if (w->data_mapped) release_pages(w->data, w->row_bytes * (size_t)w->n_rows);
out:
    return rc;
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
    void *nb = NULL;
    if (posix_memalign(&nb, 64, need)) return HEARTH_E_NOMEM;
    free(s->buf);
    s->buf = nb;
    s->cap = need;
    return HEARTH_OK;
}

/* ---- activation preparation --------------------------------------------------------------- */

typedef struct prep_job {
    const cpu_weight *w;
    const float *x;
    int64_t n_tok;
    uint8_t *xp;        /* [n_tok][xp_row] */
    size_t xp_row;
    uint8_t *tmp;       /* [nth][tmp_row] reference-quantized rows */
    size_t tmp_row;
} prep_job;

static void prep_q8_0(const float *x, int64_t n, int32_t corr_k, uint8_t *tmp, mm_xb32 *out) {
    quant_quantize_row(QT_Q8_0, x, tmp, n);
    const block_q8_0 *q = (const block_q8_0 *)tmp;
    for (int64_t b = 0; b < n / 32; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += q[b].qs[i];
        out[b].d = hb_f16_to_f32(q[b].d);
        out[b].corr = corr_k * s;
        memcpy(out[b].qs, q[b].qs, 32);
    }
}

static void prep_q8_K(const float *x, int64_t n, uint8_t *tmp, mm_xbk *out) {
    quant_quantize_row(QT_Q8_K, x, tmp, n);
    const block_q8_K *q = (const block_q8_K *)tmp;
    for (int64_t b = 0; b < n / 256; b++) {
        out[b].d = q[b].d;
        for (int j = 0; j < 16; j++) out[b].c16[j] = -32 * q[b].bsums[j];
        for (int p = 0; p < 4; p++)
            out[b].s32p[p] = mm_pair16(q[b].bsums[4 * p] + q[b].bsums[4 * p + 1], q[b].bsums[4 * p + 2] + q[b].bsums[4 * p + 3]);
        memcpy(out[b].qs, q[b].qs, 256);
    }
}

void mm_prep_ref(uint32_t type, const float *x, int64_t n, void *out, void *tmp) {
    switch (type) {
    case QT_Q4_0: case QT_Q8_0: prep_q8_0(x, n, mm_corr_factor(type), tmp, out); break;
    case QT_F16: {
        float *f = out; /* f16-rounded, as the reference's F16 activations */
        for (int64_t i = 0; i < n; i++) f[i] = hb_f16_to_f32(hb_f32_to_f16(x[i]));
        break;
    }
    case QT_BF16: {
        uint16_t *h = out;
        for (int64_t i = 0; i < n; i++) h[i] = hb_f32_to_bf16(x[i]);
        break;
    }
    default: prep_q8_K(x, n, tmp, out); break;
    }
}

static void prep_task(void *ctx, int ith, int nth) {
    const prep_job *j = ctx;
    int lv = cpu_isa_level();
    for (int64_t t = ith; t < j->n_tok; t += nth) {
        const float *x = j->x + t * j->w->n_cols;
        uint8_t *o = j->xp + (size_t)t * j->xp_row;
        if (lv >= CPU_ISA_AVX512) mm_prep_avx512(j->w->type, x, j->w->n_cols, o);
        else if (lv >= CPU_ISA_AVX2) mm_prep_avx2(j->w->type, x, j->w->n_cols, o);
        else mm_prep_ref(j->w->type, x, j->w->n_cols, o, j->tmp + (size_t)ith * j->tmp_row);
    }
}

size_t mm_prep_row_size(uint32_t type, int64_t n) {
    switch (type) {
    case QT_Q4_0: case QT_Q8_0: return (size_t)(n / 32) * sizeof(mm_xb32);
    case QT_Q4_K: case QT_Q5_K: case QT_Q6_K: return (size_t)(n / 256) * sizeof(mm_xbk);
    case QT_F16: return ((size_t)n * 4 + 63) & ~(size_t)63;
    case QT_BF16: return ((size_t)n * 2 + 63) & ~(size_t)63;
    default: return 0;
    }
}

/* ---- dispatch ------------------------------------------------------------------------------- */

/* Row groups are handed out in chunks from a shared counter rather than as one fixed range
 * per thread: on a shared machine a thread that starts late or is descheduled no longer
 * makes the others wait at the end, they take its chunks. Which thread computes a group
 * does not change its result (every group is one kernel call over all tokens). */
typedef struct kern_job {
    mm_ctx c;
    mm_kern_fn fn;
    int64_t n_groups;
    int64_t chunk;              /* groups per claim */
    atomic_llong next;          /* first unclaimed group */
} kern_job;

static void kern_task(void *ctx, int ith, int nth) {
    kern_job *j = ctx;
    (void)ith, (void)nth;
    for (;;) {
        int64_t g0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (g0 >= j->n_groups) break;
        int64_t g1 = g0 + j->chunk < j->n_groups ? g0 + j->chunk : j->n_groups;
        j->fn(&j->c, g0, g1);
    }
}

/* ~8 claims per thread: small enough to even out a late thread, large enough (tens of KB of
 * weights at n_tok = 1) that the counter and restarting the hardware prefetcher cost little */
static int64_t kern_chunk(int64_t n_groups, int nth) {
    int64_t c = n_groups / ((int64_t)nth * 8);
    return nth <= 1 ? n_groups : c < 1 ? 1 : c;
}

static mm_kern_fn pick_kernel(const cpu_weight *w) {
    int lv = cpu_isa_level();
    mm_kern_fn fn = NULL;
    bool packed_ok = w->packed != NULL;
    bool needs_pack = w->type == QT_Q4_0 || w->type == QT_Q8_0 || w->type == QT_Q4_K ||
                      w->type == QT_Q5_K || w->type == QT_Q6_K;
    if (needs_pack && !packed_ok) return NULL;
    if (lv >= CPU_ISA_AMX) fn = mm_kernel_amx(w);
    if (!fn && lv >= CPU_ISA_AVX512) fn = mm_kernel_avx512(w, cpu_features_get()->avx512_bf16);
    if (!fn && lv >= CPU_ISA_AVX2) fn = mm_kernel_avx2(w);
    return fn;
}

static int matmul_generic(cpu_pool *pool, const cpu_weight *w, const float *x, int64_t n_tok,
                          float *y, int64_t ldy, cpu_scratch *scratch) {
    uint32_t vdt = quant_traits_of(w->type)->vec_dot_type;
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

int cpu_matmul(cpu_pool *pool, const cpu_weight *w, const float *x, int64_t n_tok,
               float *y, int64_t ldy, cpu_scratch *scratch) {
    const quant_traits *tr = quant_traits_of(w->type);
    if (!tr || !tr->compute) return HEARTH_E_UNSUPPORTED;
    if (n_tok <= 0 || w->n_rows <= 0) return HEARTH_OK;
    mm_kern_fn fn = pick_kernel(w);
    size_t xp_row = fn ? mm_prep_row_size(w->type, w->n_cols) : 0;
    if (!fn || !xp_row) return matmul_generic(pool, w, x, n_tok, y, ldy, scratch);

    int nth = cpu_pool_n_threads(pool);
    size_t tmp_row = quant_row_size(tr->vec_dot_type, w->n_cols) + 64, a, b, need;
    if (!hb_mul_sz(xp_row, (size_t)n_tok, &a) || !hb_mul_sz(tmp_row, (size_t)nth, &b) || !hb_add_sz(a, b, &need))
        return HEARTH_E_NOMEM;
    if (scratch_reserve(scratch, need)) return HEARTH_E_NOMEM;
    prep_job pj = { w, x, n_tok, scratch->buf, xp_row, (uint8_t *)scratch->buf + a, tmp_row };
    if (n_tok == 1) prep_task(&pj, 0, 1);
    else cpu_pool_run(pool, prep_task, &pj);

    kern_job kj = { { w, scratch->buf, xp_row, n_tok, y, ldy }, fn, (w->n_rows + MM_GROUP - 1) / MM_GROUP, 0, 0 };
    kj.chunk = kern_chunk(kj.n_groups, nth);
    atomic_init(&kj.next, 0);
    cpu_pool_run(pool, kern_task, &kj);
    return HEARTH_OK;
}
