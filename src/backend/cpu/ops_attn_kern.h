/* ops_attn_kern.h — blocked ("flash") attention and the per-token vector helpers, written
 * once over a few vector primitives and compiled twice: by ops_attn_avx512.c (VW = 16 float
 * lanes) and ops_attn_avx2.c (VW = 8). Not a normal header: each ISA file includes it once,
 * after defining
 *
 *   VF, VW                         a float vector and its lane count
 *   vf_zero vf_set1 vf_load vf_store vf_bcast(const float *)
 *   vf_add vf_sub vf_mul vf_div vf_max vf_min vf_fma(a, b, c) = a * b + c
 *   vf_round (to nearest even)     vf_pow2i(n): 2^n for integer-valued n in [-126, 127]
 *   vf_sel_lt(x, lim, a, b) / vf_sel_gt: lane-wise x < lim (x > lim) ? a : b
 *   vf_cells(s, lo, hi, c): lane-wise (lo[i] <= c <= hi[i]) ? s : -inf  (int32 lo/hi)
 *   vf_h(const uint8_t *): VW f16 -> f32      vf_i8(const int8_t *): VW int8 -> f32
 *   vh_store(uint16_t *, VF): VW f32 -> f16, round to nearest even
 *   AK_CB, AK_NVB: cells x row vectors of the score micro-tile; AK_NVD: value vectors of the
 *   output micro-tile (4 rows x AK_NVD vectors)
 *
 * Attention item (ops_vec.h: attn_work): the R = n * G query rows of a block of n tokens and
 * the G heads sharing KV head hk are transposed once into q^T [dk][rp] (rows padded to rp).
 * The item then walks the cached cells in tiles of ATTN_T cells aligned to multiples of
 * ATTN_T. Each tile's K and V rows are converted to f32 once (f16 / q8_0 / f32 cache) and
 * used by all R rows:
 *   scores  S^T[c][r] = k_c . q_r — vectors run over rows, so a broadcast k_c[d] times one
 *           q^T[d] vector gives VW scores with no horizontal sums (micro-tile AK_CB cells x
 *           AK_NVB row vectors kept in registers over d);
 *   softmax online, vertical over rows: scale, softcap, the per-row causal/window limits
 *           [lo_r, hi_r] as a lane mask (only on tiles that cut a row's range), running max
 *           m_r and sum l_r, rescale factor alpha_r = exp(m_old - m_new);
 *   output  o_r = alpha_r * o_r + sum_c p[c][r] * v_c (4 rows x AK_NVD value vectors in
 *           registers over the tile's cells).
 * A row vector whose rows see no cell of the tile skips the tile. Every row's result is a
 * fixed sequence of operations given its item, so it does not depend on which thread runs
 * the item.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/ops_vec.h"
#include "quant/blocks.h"

#define AK_FORCE static inline __attribute__((always_inline))
#define AK_UNROLL _Pragma("GCC unroll 16")
_Static_assert(AK_CB <= ATTN_TS - ATTN_T + 1 && ATTN_T % 4 == 0, "tile buffers hold ATTN_T rounded up to AK_CB");

/* ---- vector math -------------------------------------------------------------------------
 * exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 in [-0.35, 0.35] (ln 2 split in
 * two so n * ln2_hi is exact), e^r by its degree-7 Taylor polynomial (truncation < 6e-9
 * relative). Clamped so 2^n stays a normal float: x < -87.3365 gives 0, x > 88 gives +inf. */
AK_FORCE VF vf_exp(VF x) {
    const VF lo = vf_set1(-87.3365478515625f), hi = vf_set1(88.0f);
    VF xc = vf_min(vf_max(x, lo), hi);
    VF n = vf_round(vf_mul(xc, vf_set1(1.44269504088896341f)));
    VF r = vf_fma(n, vf_set1(-0.693359375f), xc);
    r = vf_fma(n, vf_set1(2.12194440054690583e-4f), r);
    VF p = vf_set1(1.0f / 5040.0f);
    p = vf_fma(p, r, vf_set1(1.0f / 720.0f));
    p = vf_fma(p, r, vf_set1(1.0f / 120.0f));
    p = vf_fma(p, r, vf_set1(1.0f / 24.0f));
    p = vf_fma(p, r, vf_set1(1.0f / 6.0f));
    p = vf_fma(p, r, vf_set1(0.5f));
    p = vf_fma(p, r, vf_set1(1.0f));
    p = vf_fma(p, r, vf_set1(1.0f));
    VF y = vf_mul(p, vf_pow2i(n));
    y = vf_sel_gt(x, hi, vf_set1(INFINITY), y);
    return vf_sel_lt(x, lo, vf_zero(), y);
}

/* tanh(y) = 1 - 2 / (exp(2y) + 1): saturates cleanly at +-1; absolute error ~1e-7. */
AK_FORCE VF vf_tanh(VF y) {
    VF e = vf_exp(vf_add(y, y));
    return vf_sub(vf_set1(1.0f), vf_div(vf_set1(2.0f), vf_add(e, vf_set1(1.0f))));
}

/* ---- K/V tiles ---------------------------------------------------------------------------- */

/* dst[i][0..dim) = elements [off, off + dim) of cached row c0 + i as f32, i < nc. */
AK_FORCE void ak_load_rows(const be_kv_layer *kv, const uint8_t *base, int64_t c0, int32_t nc,
                           int64_t off, int64_t dim, float *dst, int64_t ld) {
    for (int32_t i = 0; i < nc; i++) {
        const uint8_t *row = base + (size_t)(c0 + i) * kv->row_bytes;
        float *d = dst + (int64_t)i * ld;
        switch (kv->type) {
        case QT_F32:
            memcpy(d, row + 4 * off, (size_t)dim * sizeof(float));
            break;
        case QT_F16: {
            const uint8_t *h = row + 2 * off;
            int64_t e = 0;
            for (; e + VW <= dim; e += VW) vf_store(d + e, vf_h(h + 2 * e));
            for (; e < dim; e++) {
                uint16_t u;
                memcpy(&u, h + 2 * e, 2);
                d[e] = hb_f16_to_f32(u);
            }
            break;
        }
        case QT_Q8_0: { /* head slices start on a block boundary (head_dim % 32 == 0, checked) */
            const uint8_t *blk = row + (size_t)(off / 32) * sizeof(block_q8_0);
            for (int64_t b = 0; b < dim / 32; b++, blk += sizeof(block_q8_0)) {
                uint16_t u;
                memcpy(&u, blk, 2);
                VF s = vf_set1(hb_f16_to_f32(u));
                AK_UNROLL for (int k = 0; k < 32; k += VW)
                    vf_store(d + 32 * b + k, vf_mul(vf_i8((const int8_t *)blk + 2 + k), s));
            }
            break;
        }
        default:
            quant_dequantize_row(kv->type, row + quant_row_size(kv->type, off), d, dim);
            break;
        }
    }
}

/* ---- micro-kernels ------------------------------------------------------------------------ */

/* st[c][0 .. NVB*VW) = k_c . q^T[.][0 .. NVB*VW) for c < ncp (a multiple of AK_CB); qt and st
 * point at the first row vector of the group, rows rp floats apart. */
AK_FORCE void ak_scores(const float *qt, int64_t rp, const float *kt, int64_t dk, float *st, int32_t ncp,
                        const int NVB) {
    for (int32_t c = 0; c < ncp; c += AK_CB) {
        VF acc[AK_CB][AK_NVB];
        AK_UNROLL for (int i = 0; i < AK_CB; i++) AK_UNROLL for (int j = 0; j < NVB; j++) acc[i][j] = vf_zero();
        const float *k0 = kt + (int64_t)c * dk;
        for (int64_t d = 0; d < dk; d++) {
            VF qv[AK_NVB];
            AK_UNROLL for (int j = 0; j < NVB; j++) qv[j] = vf_load(qt + d * rp + j * VW);
            AK_UNROLL for (int i = 0; i < AK_CB; i++) {
                VF kb = vf_bcast(k0 + i * dk + d);
                AK_UNROLL for (int j = 0; j < NVB; j++) acc[i][j] = vf_fma(kb, qv[j], acc[i][j]);
            }
        }
        AK_UNROLL for (int i = 0; i < AK_CB; i++)
            AK_UNROLL for (int j = 0; j < NVB; j++) vf_store(st + (int64_t)(c + i) * rp + j * VW, acc[i][j]);
    }
}

/* For 4 rows: o[i][j0 ..] = alpha[i] * o[i][j0 ..] + sum_c p[c][i] * v[c][j0 ..], NVD vectors
 * starting at value vector j0; p points at the group's first row (cells rp apart). */
AK_FORCE void ak_accum(const float *p, int64_t rp, const float *vt, int64_t dvp, float *o, const float *alpha,
                       int32_t nc, int64_t j0, const int NVD) {
    VF acc[4][AK_NVD];
    AK_UNROLL for (int i = 0; i < 4; i++) {
        VF al = vf_set1(alpha[i]);
        AK_UNROLL for (int j = 0; j < NVD; j++) acc[i][j] = vf_mul(vf_load(o + i * dvp + (j0 + j) * VW), al);
    }
    for (int32_t c = 0; c < nc; c++) {
        VF vv[AK_NVD];
        AK_UNROLL for (int j = 0; j < NVD; j++) vv[j] = vf_load(vt + (int64_t)c * dvp + (j0 + j) * VW);
        AK_UNROLL for (int i = 0; i < 4; i++) {
            VF pb = vf_bcast(p + (int64_t)c * rp + i);
            AK_UNROLL for (int j = 0; j < NVD; j++) acc[i][j] = vf_fma(pb, vv[j], acc[i][j]);
        }
    }
    AK_UNROLL for (int i = 0; i < 4; i++)
        AK_UNROLL for (int j = 0; j < NVD; j++) vf_store(o + i * dvp + (j0 + j) * VW, acc[i][j]);
}

/* ---- one item ----------------------------------------------------------------------------- */

typedef struct ak_item {
    const attn_geom *g;
    const attn_work *w;
    int64_t R, rp, dk, dv;
    float *qt, *st, *kt, *vt, *o, *m, *l, *al;
    int32_t *lo, *hi, *live;
} ak_item;

static int64_t ak_first_visible(const be_attn *a, int64_t p) {
    return (a->window > 0 && p - a->window + 1 > 0) ? p - a->window + 1 : 0;
}

/* q^T, the per-row cell limits (clipped to the item's chunk) and the zeroed state. Padded
 * rows repeat the last real row's limits with q = 0; their results are dropped. */
static void ak_setup(ak_item *it) {
    const attn_geom *g = it->g;
    const attn_work *w = it->w;
    const be_attn *a = g->a;
    for (int64_t r = 0; r < it->rp; r++) {
        int64_t rr = r < it->R ? r : it->R - 1, t = w->t0 + rr / g->G, p = a->pos[t];
        int64_t lo = ak_first_visible(a, p), hi = p;
        it->lo[r] = (int32_t)(lo > w->ca ? lo : w->ca);
        it->hi[r] = (int32_t)(hi < w->cb - 1 ? hi : w->cb - 1);
        if (r >= it->R) {
            for (int64_t d = 0; d < it->dk; d++) it->qt[d * it->rp + r] = 0.0f;
            continue;
        }
        const float *q = g->q + t * g->qs + ((int64_t)w->hk * g->G + rr % g->G) * it->dk;
        for (int64_t d = 0; d < it->dk; d++) it->qt[d * it->rp + r] = q[d];
    }
    /* value padding columns are never written by tile loads: zero them once */
    if (g->dvp > it->dv) memset(it->vt, 0, (size_t)(ATTN_T * g->dvp) * sizeof(float));
    memset(it->o, 0, (size_t)(it->rp * g->dvp) * sizeof(float));
    for (int64_t r = 0; r < it->rp; r++) {
        it->m[r] = -INFINITY;
        it->l[r] = 0.0f;
    }
}

/* Scores of one tile (cells [c0, c0 + nc)) for every row vector. */
static void ak_tile_scores(const ak_item *it, int32_t nc) {
    int32_t ncp = (nc + AK_CB - 1) / AK_CB * AK_CB;
    int64_t nv = it->rp / VW, v = 0;
    for (; v + AK_NVB <= nv; v += AK_NVB) ak_scores(it->qt + v * VW, it->rp, it->kt, it->dk, it->st + v * VW, ncp, AK_NVB);
    switch (nv - v) {
    case 0: break;
    case 1: ak_scores(it->qt + v * VW, it->rp, it->kt, it->dk, it->st + v * VW, ncp, 1); break;
    case 2: ak_scores(it->qt + v * VW, it->rp, it->kt, it->dk, it->st + v * VW, ncp, 2); break;
#if AK_NVB > 3
    case 3: ak_scores(it->qt + v * VW, it->rp, it->kt, it->dk, it->st + v * VW, ncp, 3); break;
#endif
    default: break;
    }
}

/* Online softmax over one tile for row vector v; returns false when no row of it sees a
 * cell of the tile (then the state is unchanged and the tile is skipped). */
static bool ak_tile_softmax(const ak_item *it, int64_t v, int64_t c0, int32_t nc) {
    const be_attn *a = it->g->a;
    int64_t r0 = v * VW, c1 = c0 + nc;
    /* limits are non-decreasing over rows: the vector's extremes are its first/last lanes */
    if (c1 - 1 < it->lo[r0] || c0 > it->hi[r0 + VW - 1]) return false;
    bool full = c0 >= it->lo[r0 + VW - 1] && c1 - 1 <= it->hi[r0];
    VF scale = vf_set1(a->scale), cap = vf_set1(a->softcap), mt = vf_set1(-INFINITY);
    for (int32_t i = 0; i < nc; i++) {
        float *sp = it->st + (int64_t)i * it->rp + r0;
        VF s = vf_mul(vf_load(sp), scale);
        if (a->softcap > 0.0f) s = vf_mul(cap, vf_tanh(vf_div(s, cap)));
        if (!full) s = vf_cells(s, it->lo + r0, it->hi + r0, (int32_t)(c0 + i));
        vf_store(sp, s);
        mt = vf_max(mt, s);
    }
    VF mo = vf_load(it->m + r0), mn = vf_max(mo, mt);
    VF ms = vf_sel_lt(mn, vf_set1(-FLT_MAX), vf_zero(), mn); /* rows with nothing yet: 0 */
    VF sum = vf_zero();
    for (int32_t i = 0; i < nc; i++) {
        float *sp = it->st + (int64_t)i * it->rp + r0;
        VF p = vf_exp(vf_sub(vf_load(sp), ms));
        vf_store(sp, p);
        sum = vf_add(sum, p);
    }
    VF al = vf_exp(vf_sub(mo, ms));
    vf_store(it->l + r0, vf_fma(vf_load(it->l + r0), al, sum));
    vf_store(it->m + r0, mn);
    vf_store(it->al + r0, al);
    return true;
}

static void ak_tile_accum(const ak_item *it, int64_t v, int32_t nc) {
    int64_t dvp = it->g->dvp, nvd = dvp / VW;
    for (int64_t r = v * VW; r < (v + 1) * VW; r += 4) {
        const float *p = it->st + r;
        float *o = it->o + r * dvp;
        int64_t j = 0;
        for (; j + AK_NVD <= nvd; j += AK_NVD) ak_accum(p, it->rp, it->vt, dvp, o, it->al + r, nc, j, AK_NVD);
        switch (nvd - j) {
        case 0: break;
        case 1: ak_accum(p, it->rp, it->vt, dvp, o, it->al + r, nc, j, 1); break;
#if AK_NVD > 2
        case 2: ak_accum(p, it->rp, it->vt, dvp, o, it->al + r, nc, j, 2); break;
        case 3: ak_accum(p, it->rp, it->vt, dvp, o, it->al + r, nc, j, 3); break;
#endif
        default: break;
        }
    }
}

static void ak_finish(const ak_item *it) {
    const attn_geom *g = it->g;
    const attn_work *w = it->w;
    int64_t dvp = g->dvp;
    if (w->part) {
        memcpy(w->part, it->m, (size_t)it->rp * sizeof(float));
        memcpy(w->part + it->rp, it->l, (size_t)it->rp * sizeof(float));
        memcpy(w->part + 2 * it->rp, it->o, (size_t)(it->rp * dvp) * sizeof(float));
        return;
    }
    for (int64_t r = 0; r < it->R; r++) {
        int64_t t = w->t0 + r / g->G, h = (int64_t)w->hk * g->G + r % g->G;
        float inv = 1.0f / it->l[r], *out = g->out + t * g->os + h * it->dv;
        const float *o = it->o + r * dvp;
        for (int64_t d = 0; d < it->dv; d++) out[d] = o[d] * inv;
    }
}

static void ak_attn(const attn_geom *g, const attn_work *w, float *scratch) {
    const be_attn *a = g->a;
    const be_kv_layer *kv = a->kv;
    ak_item it = { .g = g, .w = w, .R = (int64_t)w->n * g->G, .dk = a->head_dim_k, .dv = a->head_dim_v };
    it.rp = attn_rpad(it.R);
    it.qt = scratch;
    it.st = it.qt + it.dk * it.rp;
    it.kt = it.st + ATTN_TS * it.rp;
    it.vt = it.kt + ATTN_TS * it.dk;
    it.o = it.vt + ATTN_T * g->dvp;
    it.m = it.o + it.rp * g->dvp;
    it.l = it.m + it.rp;
    it.al = it.l + it.rp;
    it.lo = (int32_t *)(void *)(it.al + it.rp);
    it.hi = it.lo + it.rp;
    it.live = it.hi + it.rp;
    ak_setup(&it);
    size_t stream = (size_t)a->seq[w->t0] * (size_t)kv->n_ctx * kv->row_bytes;
    const uint8_t *kb = (const uint8_t *)kv->k + stream, *vb = (const uint8_t *)kv->v + stream;
    int64_t first = it.lo[0], last = it.hi[it.rp - 1];
    int64_t nv = it.rp / VW;
    for (int64_t ts = first / ATTN_T * ATTN_T; ts <= last; ts += ATTN_T) {
        int64_t c0 = ts > first ? ts : first, c1 = ts + ATTN_T < last + 1 ? ts + ATTN_T : last + 1;
        if (c0 >= c1) continue;
        int32_t nc = (int32_t)(c1 - c0);
        ak_load_rows(kv, kb, c0, nc, (int64_t)w->hk * it.dk, it.dk, it.kt, it.dk);
        /* the score micro-tile rounds cells up to AK_CB: keep those K rows finite */
        int32_t ncp = (nc + AK_CB - 1) / AK_CB * AK_CB;
        memset(it.kt + (int64_t)nc * it.dk, 0, (size_t)((ncp - nc) * it.dk) * sizeof(float));
        ak_tile_scores(&it, nc);
        bool any = false;
        for (int64_t v = 0; v < nv; v++) any |= it.live[v] = ak_tile_softmax(&it, v, c0, nc);
        if (!any) continue;
        ak_load_rows(kv, vb, c0, nc, (int64_t)w->hk * it.dv, it.dv, it.vt, g->dvp);
        for (int64_t v = 0; v < nv; v++)
            if (it.live[v]) ak_tile_accum(&it, v, nc);
    }
    ak_finish(&it);
}

/* ---- per-token helpers -------------------------------------------------------------------- */

static void ak_f32_to_f16(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vh_store(y + i, vf_load(x + i));
    for (; i < n; i++) y[i] = hb_f32_to_f16(x[i]);
}

/* act(g) * u for one vector: SiLU g / (1 + e^-g); tanh-GELU 0.5 g (1 + tanh(z)) written as
 * g / (1 + e^-2z), z = sqrt(2/pi) (g + 0.044715 g^3) (the same function, no cancellation). */
AK_FORCE VF ak_glu1(be_glu kind, VF g, VF u) {
    VF z = vf_sub(vf_zero(), g);
    if (kind != BE_GLU_SILU) {
        VF g3 = vf_mul(vf_mul(g, g), g);
        z = vf_mul(vf_set1(-2.0f * 0.7978845608028654f), vf_fma(vf_set1(0.044715f), g3, g));
    }
    return vf_mul(vf_div(g, vf_add(vf_set1(1.0f), vf_exp(z))), u);
}

static void ak_glu(be_glu kind, const float *g, const float *u, float *o, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vf_store(o + i, ak_glu1(kind, vf_load(g + i), vf_load(u + i)));
    if (i < n) { /* tail through a padded vector, so every element gets the same formula */
        float tg[VW] = { 0 }, tu[VW] = { 0 }, to[VW];
        memcpy(tg, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(tu, u + i, (size_t)(n - i) * sizeof(float));
        vf_store(to, ak_glu1(kind, vf_load(tg), vf_load(tu)));
        memcpy(o + i, to, (size_t)(n - i) * sizeof(float));
    }
}

static void ak_exp(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vf_store(y + i, vf_exp(vf_load(x + i)));
    if (i < n) {
        float t[VW] = { 0 };
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        vf_store(t, vf_exp(vf_load(t)));
        memcpy(y + i, t, (size_t)(n - i) * sizeof(float));
    }
}

/* y[i] = x[i] * k * w[i] (w may be NULL: y[i] = x[i] * k); same operation order as the
 * scalar RMSNorm, so the same bits. x == y allowed. */
static void ak_scale_rows(const float *x, float k, const float *w, float *y, int64_t n) {
    VF kv = vf_set1(k);
    int64_t i = 0;
    if (w)
        for (; i + VW <= n; i += VW) vf_store(y + i, vf_mul(vf_mul(vf_load(x + i), kv), vf_load(w + i)));
    else
        for (; i + VW <= n; i += VW) vf_store(y + i, vf_mul(vf_load(x + i), kv));
    for (; i < n; i++) y[i] = w ? x[i] * k * w[i] : x[i] * k;
}

/* y[i] += x[i] (bit-identical to the scalar loop). */
static void ak_add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vf_store(y + i, vf_add(vf_load(y + i), vf_load(x + i)));
    for (; i < n; i++) y[i] += x[i];
}
