/* matmul_amx.c — AMX (Advanced Matrix Extensions) int8 tile kernels for prompt processing.
 *
 * Used at the `amx` ISA level for calls with n_tok >= 16 on Q8_0, Q4_0, Q4_K and Q6_K
 * weights; every other case (fewer tokens, the n_tok % 16 leftover tokens, other types)
 * goes to the AVX-512 kernels, which isa.c guarantees are available whenever AMX is.
 *
 * Mapping onto the tiles. One TDPBSSD computes C[m][n] += sum_k A[m][k] * B[k/4][4n + k%4]
 * (signed bytes, int32 sums). We take m = token (16 per tile), n = weight row (the 16 rows
 * of an R16 group), k = the 32 columns of one quant block:
 *  - A (16 rows x 32 bytes): the activation codes of one block for 16 tokens, copied per
 *    K-slab into a contiguous image (the prepared rows are far apart).
 *  - B (8 rows x 64 bytes): row s = "step" s of the R16 block, i.e. 4 consecutive codes of
 *    each of the 16 weight rows — the R16 layout is exactly AMX's B ("VNNI") layout, so a
 *    Q8_0 block is loaded straight from the packed weight; 4-bit and 6-bit codes are
 *    unpacked to bytes (minus Q4_0's 8 / Q6_K's 32) once per (row group, K-slab, chunk).
 *  - C (16 rows x 16 int32): the exact integer block dot for 16 tokens x 16 rows.
 * K-quants use one sub-block per TDPBSSD (Q6_K: 16 columns, A 16 bytes wide, B 4 rows).
 * The per-block scales (weight f16 per row, activation f32 per token) forbid summing
 * several blocks in the tile, so each block's C is stored and folded into 16 float
 * accumulators (one zmm per token) with AVX-512: acc = fma(float(C), dw * dx, acc). That is
 * the same integer and the same float operation sequence as the AVX-512 kernels
 * (matmul_kern.h), so the results are bit-identical to the avx512 level, hence independent
 * of the thread count and of which kernel handled a token.
 *
 * Tiles are configured once per call and thread (LDTILECFG) and released at the end
 * (TILERELEASE). The tile instructions are written as inline asm with memory clobbers
 * (the compiler's tile intrinsics do not declare the memory they read or write). Building
 * with -DHEARTH_AMX_EMULATE replaces them by a plain-C model of the same semantics, which
 * lets the kernel logic be tested on machines without AMX (the kernel is then slow).
 */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/matmul_impl.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8")
#endif

#define AMX_FORCE static inline __attribute__((always_inline))
#define AMX_UNROLL _Pragma("GCC unroll 16")

enum {
    AMX_TT = 16,    /* tokens per tile (A and C rows) */
    AMX_CHUNK = 64, /* tokens per chunk: 4 tiles share every B tile loaded */
};

/* LDTILECFG's 64-byte operand (palette 1). */
typedef struct amx_cfg {
    uint8_t palette, start_row, rsv[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

#ifdef HEARTH_AMX_EMULATE
/* Plain-C model of the few tile instructions used (test builds only). */
static _Thread_local struct {
    uint8_t t[8][16][64];
    uint8_t rows[8];
    uint16_t colsb[8];
} emu;

static void emu_cfg(const amx_cfg *c) {
    memset(&emu, 0, sizeof emu);
    for (int i = 0; i < 8; i++) emu.rows[i] = c->rows[i], emu.colsb[i] = c->colsb[i];
}
static void emu_load(int t, const void *p, int64_t stride) {
    memset(emu.t[t], 0, sizeof emu.t[t]);
    for (int r = 0; r < emu.rows[t]; r++) memcpy(emu.t[t][r], (const uint8_t *)p + r * stride, emu.colsb[t]);
}
static void emu_store(int t, void *p, int64_t stride) {
    for (int r = 0; r < emu.rows[t]; r++) memcpy((uint8_t *)p + r * stride, emu.t[t][r], emu.colsb[t]);
}
static void emu_zero(int t) { memset(emu.t[t], 0, sizeof emu.t[t]); }
static void emu_dpbssd(int c, int a, int b) {
    for (int m = 0; m < emu.rows[a]; m++)
        for (int n = 0; n < emu.colsb[c] / 4; n++) {
            int32_t s;
            memcpy(&s, &emu.t[c][m][4 * n], 4);
            for (int k = 0; k < emu.colsb[a]; k++)
                s += (int8_t)emu.t[a][m][k] * (int8_t)emu.t[b][k / 4][4 * n + k % 4];
            memcpy(&emu.t[c][m][4 * n], &s, 4);
        }
}
#define T_CFG(p) emu_cfg(p)
#define T_RELEASE() ((void)0)
#define T_LOAD(t, p, s) emu_load(t, p, (int64_t)(s))
#define T_STORE(t, p, s) emu_store(t, p, (int64_t)(s))
#define T_ZERO(t) emu_zero(t)
#define T_DPBSSD(c, a, b) emu_dpbssd(c, a, b)
#else
#define T_CFG(p) __asm__ volatile("ldtilecfg %0" ::"m"(*(const amx_cfg *)(p)) : "memory")
#define T_RELEASE() __asm__ volatile("tilerelease" ::: "memory")
#define T_LOAD(t, p, s) __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(p), "r"((int64_t)(s)) : "memory")
#define T_STORE(t, p, s) __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(p), "r"((int64_t)(s)) : "memory")
#define T_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define T_DPBSSD(c, a, b) __asm__ volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#endif

/* Tiles: 0, 1 = A (16 tokens x a_colsb bytes); 2, 3 = B (b_rows x 64); 4, 5 = C (16 x 16
 * int32). Q8_0/Q4_0/Q4_K: a_colsb 32, b_rows 8; Q6_K: 16 and 4. */
static void amx_config(int a_colsb, int b_rows) {
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 2; i++) cfg.rows[i] = AMX_TT, cfg.colsb[i] = (uint16_t)a_colsb;
    for (int i = 2; i < 4; i++) cfg.rows[i] = (uint8_t)b_rows, cfg.colsb[i] = 64;
    for (int i = 4; i < 6; i++) cfg.rows[i] = AMX_TT, cfg.colsb[i] = 64;
    T_CFG(&cfg);
}

/* ---- shared pieces --------------------------------------------------------------------------
 * Loop order (both families): token chunks of 64 (4 tiles) -> K-slabs -> the thread's row
 * groups -> tiles. A slab's activations are first copied into contiguous tile images
 * (A tiles with a 32- or 16-byte stride, scales next to them), so that the A side of every
 * TDPBSSD comes from L1 for all the thread's row groups, and a row group's B tiles are
 * loaded (or unpacked) once per slab and reused by the 4 tiles. Between slabs the running
 * float sums live in y itself (masked to the group's real rows; same bits as registers). */

/* 16 tokens x 16 rows of y at yt (row stride ldy), lanes outside mask untouched. */
AMX_FORCE void acc_load(__m512 acc[AMX_TT], const float *yt, int64_t ldy, __mmask16 mask, bool fresh) {
    AMX_UNROLL for (int m = 0; m < AMX_TT; m++)
        acc[m] = fresh ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, yt + m * ldy);
}
AMX_FORCE void acc_store(float *yt, int64_t ldy, __mmask16 mask, const __m512 acc[AMX_TT]) {
    AMX_UNROLL for (int m = 0; m < AMX_TT; m++) _mm512_mask_storeu_ps(yt + m * ldy, mask, acc[m]);
}

static __mmask16 group_mask(const mm_ctx *c, int64_t g) {
    int64_t n = c->w->n_rows - g * MM_GROUP;
    return n >= MM_GROUP ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* The tokens [t_from, n_tok) on the AVX-512 kernel (bit-identical results). */
static void rest_avx512(const mm_ctx *c, int64_t g0, int64_t g1, int64_t t_from) {
    if (t_from >= c->n_tok) return;
    mm_kern_fn f = mm_kernel_avx512(c->w, false);
    if (!f) return;
    mm_ctx c2 = *c;
    c2.xp = (const uint8_t *)c->xp + (size_t)t_from * c->xp_row;
    c2.n_tok = c->n_tok - t_from;
    c2.y = c->y + t_from * c->ldy;
    f(&c2, g0, g1);
}

/* ---- Q8_0 and Q4_0 ---------------------------------------------------------------------------- */
enum { AMX_KB = 8 }; /* blocks per K-slab: 4 tiles x 8 x 576 B of A images = 18 KiB */

/* A tile image of one block for 16 tokens, and their activation scales. */
typedef struct amx_xt {
    int8_t qs[AMX_TT][32];
    float d[AMX_TT];
} amx_xt;

/* One tile's work over a slab. */
typedef struct amx_src {
    const uint8_t *scales; /* packed block of the slab's first block: 16 f16 weight scales */
    size_t scale_step;     /* bytes between blocks' scales */
    const int8_t *bw;      /* B tile of the first block: 8 x 64 signed codes, stride 64 */
    size_t bw_step;        /* bytes between blocks' B tiles */
    const amx_xt *xt;      /* A images of the slab's blocks */
    int64_t nblk;
} amx_src;

/* acc[m] += float(C[m]) * (dw * dx[m]) for the 16 tokens of a tile, as matmul_kern.h. */
AMX_FORCE void fold(__m512 acc[AMX_TT], const int32_t cb[AMX_TT][16], const uint8_t *scales, const float *dx) {
    __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales));
    AMX_UNROLL for (int m = 0; m < AMX_TT; m++) {
        __m512 ci = _mm512_cvtepi32_ps(_mm512_load_si512(cb[m]));
        acc[m] = _mm512_fmadd_ps(ci, _mm512_mul_ps(dw, _mm512_set1_ps(dx[m])), acc[m]);
    }
}

/* Tile work for blocks b, b + 1 (two) or b alone, C stored to cb[0] (and cb[1]). */
AMX_FORCE void tile_pair(const amx_src *s, int64_t b, int32_t cb[2][AMX_TT][16], bool two) {
    T_LOAD(0, s->xt[b].qs, 32);
    T_LOAD(2, s->bw + (size_t)b * s->bw_step, 64);
    T_ZERO(4);
    if (two) {
        T_LOAD(1, s->xt[b + 1].qs, 32);
        T_LOAD(3, s->bw + (size_t)(b + 1) * s->bw_step, 64);
        T_ZERO(5);
    }
    T_DPBSSD(4, 0, 2);
    if (two) T_DPBSSD(5, 1, 3);
    T_STORE(4, cb[0], 64);
    if (two) T_STORE(5, cb[1], 64);
}

/* Runs the slab's blocks for one tile (16 tokens x 16 rows of y at yt).
 * Tile stores do not forward to vector loads: a load of freshly stored C waits until the
 * store retires, which would serialize every block. So C goes through a ring of buffers
 * and block pair j is folded while pair j + AMX_LAG is already being computed. */
#ifndef AMX_LAG
#define AMX_LAG 2
#endif
static void tile_blocks(const amx_src *s, float *yt, int64_t ldy, __mmask16 mask, bool fresh) {
    int32_t cb[AMX_LAG + 1][2][AMX_TT][16] __attribute__((aligned(64)));
    __m512 acc[AMX_TT];
    acc_load(acc, yt, ldy, mask, fresh);
    const int64_t np = s->nblk / 2, nj = np + (s->nblk & 1);
    for (int64_t j = 0; j < nj + AMX_LAG; j++) {
        if (j < nj) tile_pair(s, 2 * j, cb[j % (AMX_LAG + 1)], j < np);
        int64_t f = j - AMX_LAG;
        if (f < 0) continue;
        int32_t(*cf)[AMX_TT][16] = cb[f % (AMX_LAG + 1)];
        const uint8_t *sc = s->scales + (size_t)(2 * f) * s->scale_step;
        fold(acc, cf[0], sc, s->xt[2 * f].d);
        if (f < np) fold(acc, cf[1], sc + s->scale_step, s->xt[2 * f + 1].d);
    }
    acc_store(yt, ldy, mask, acc);
}

/* Q4_0 group blocks [b0, b0 + n) -> n B tiles of (code - 8) bytes, 512 bytes each. */
static void unpack_q4_0(const uint8_t *gw, int64_t b0, int64_t n, int8_t *dst) {
    const __m512i m15 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *blk = gw + (size_t)(b0 + b) * MM_Q4_0_BLK + 32;
        int8_t *o = dst + (size_t)b * 512;
        for (int m = 0; m < 4; m++) {
            __m512i v = _mm512_loadu_si512(blk + 64 * m);
            __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, m15), eight);
            __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m15), eight);
            _mm512_store_si512(o + 128 * m, lo);
            _mm512_store_si512(o + 128 * m + 64, hi);
        }
    }
}

/* A images of blocks [kb, kb + n) for the ntile tiles starting at token t0. */
static void image_q32(const mm_ctx *c, int64_t t0, int64_t ntile, int64_t kb, int64_t n, amx_xt xt[][AMX_KB]) {
    for (int64_t tt = 0; tt < ntile; tt++)
        for (int m = 0; m < AMX_TT; m++) {
            const mm_xb32 *xr = (const mm_xb32 *)((const uint8_t *)c->xp + (size_t)(t0 + AMX_TT * tt + m) * c->xp_row) + kb;
            for (int64_t i = 0; i < n; i++) {
                memcpy(xt[tt][i].qs[m], xr[i].qs, 32);
                xt[tt][i].d[m] = xr[i].d;
            }
        }
}

/* Q8_0 and Q4_0: full 16-token tiles on AMX, leftovers on AVX-512. */
static void run_q32(const mm_ctx *c, int64_t g0, int64_t g1, bool q4) {
    const int64_t nb = c->w->n_cols / 32, nfull = c->n_tok / AMX_TT * AMX_TT;
    const size_t bsz = q4 ? MM_Q4_0_BLK : MM_Q8_0_BLK;
    amx_xt xt[AMX_CHUNK / AMX_TT][AMX_KB] __attribute__((aligned(64)));
    int8_t wbuf[AMX_KB * 512] __attribute__((aligned(64)));
    if (nfull > 0) amx_config(32, 8);
    for (int64_t tc = 0; tc < nfull; tc += AMX_CHUNK) {
        const int64_t ntile = (tc + AMX_CHUNK < nfull ? AMX_CHUNK : nfull - tc) / AMX_TT;
        for (int64_t kb = 0; kb < nb; kb += AMX_KB) {
            const int64_t n = nb - kb < AMX_KB ? nb - kb : AMX_KB;
            image_q32(c, tc, ntile, kb, n, xt);
            for (int64_t g = g0; g < g1; g++) {
                const uint8_t *gw = (const uint8_t *)c->w->packed + (size_t)g * (size_t)nb * bsz;
                amx_src s = { gw + (size_t)kb * bsz, bsz, wbuf, 512, NULL, n };
                if (q4) unpack_q4_0(gw, kb, n, wbuf);
                else s.bw = (const int8_t *)(gw + (size_t)kb * bsz + 32), s.bw_step = bsz;
                __mmask16 mask = group_mask(c, g);
                for (int64_t tt = 0; tt < ntile; tt++) {
                    s.xt = xt[tt];
                    tile_blocks(&s, c->y + (tc + AMX_TT * tt) * c->ldy + g * MM_GROUP, c->ldy, mask, kb == 0);
                }
            }
        }
    }
    if (nfull > 0) T_RELEASE();
    rest_avx512(c, g0, g1, nfull);
}

static void run_q8_0(const mm_ctx *c, int64_t g0, int64_t g1) { run_q32(c, g0, g1, false); }
static void run_q4_0(const mm_ctx *c, int64_t g0, int64_t g1) { run_q32(c, g0, g1, true); }

/* ---- Q4_K and Q6_K ---------------------------------------------------------------------------
 * One TDPBSSD per sub-block ("unit"; Q4_K: 32 columns, codes 0..15; Q6_K: 16 columns,
 * codes - 32), one super-block per K-slab. The integer sum_j sc_j * dot_j of a super-block
 * is built with vpmulld in registers (tot), then the same float steps as matmul_kern.h.
 * Q4_K's mins term sum_j mn_j * s32_j is formed with float FMAs: every partial sum is an
 * integer below 2^21, so it is exact and equals the AVX-512 kernel's integer. C goes through
 * a ring of buffers and unit u is folded while unit u + 2 * AMX_LAG is being computed. */

typedef struct amx_ksrc {
    const uint8_t *blk; /* packed super-block of the group */
    const int8_t *bw;   /* unpacked B tiles, one per unit, 512 (Q4_K) or 256 (Q6_K) bytes */
    const int8_t *xa;   /* A images, one per unit: 16 tokens x 32 (16) bytes */
    const uint8_t *x;   /* prepared row of the tile's first token, at the super-block */
    size_t xs;
} amx_ksrc;

#define KX(s, m) ((const mm_xbk *)((s)->x + (size_t)(m) * (s)->xs))
#define KNU(q6) ((q6) ? 16 : 8)   /* units per super-block */
#define KUB(q6) ((q6) ? 256 : 512) /* bytes of one unit's A image and of its B tile */

/* Tile work of unit u; even and odd units use disjoint tiles so that consecutive units do
 * not wait on each other. */
AMX_FORCE void kunit(const amx_ksrc *s, int u, int32_t cb[AMX_TT][16], const int q6) {
    const int8_t *a = s->xa + (size_t)u * KUB(q6), *b = s->bw + (size_t)u * KUB(q6);
    if (u & 1) {
        T_LOAD(1, a, q6 ? 16 : 32);
        T_LOAD(3, b, 64);
        T_ZERO(5);
        T_DPBSSD(5, 1, 3);
        T_STORE(5, cb, 64);
    } else {
        T_LOAD(0, a, q6 ? 16 : 32);
        T_LOAD(2, b, 64);
        T_ZERO(4);
        T_DPBSSD(4, 0, 2);
        T_STORE(4, cb, 64);
    }
}

/* y (16 tokens x 16 rows at yt) += the super-block's contribution. */
AMX_FORCE void kfinish(const amx_ksrc *s, const __m512i tot[AMX_TT], float *yt, int64_t ldy, __mmask16 mask,
                       bool fresh, const int q6) {
    const uint8_t *blk = s->blk;
    __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk)), dm = dw;
    __m512i mn[4];
    if (!q6) {
        dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)));
        for (int p = 0; p < 4; p++) mn[p] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(blk + 192 + 32 * p)));
    }
    AMX_UNROLL for (int m = 0; m < AMX_TT; m++) {
        const mm_xbk *xk = KX(s, m);
        __m512 xd = _mm512_set1_ps(xk->d);
        __m512 a = fresh ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, yt + m * ldy);
        a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot[m]), _mm512_mul_ps(dw, xd), a);
        if (!q6) {
            /* the AVX-512 kernel's integer mins term: (min 2p, min 2p+1) x (sum 2p, sum 2p+1) */
            __m512i mi = _mm512_setzero_si512();
            for (int p = 0; p < 4; p++) mi = _mm512_dpwssd_epi32(mi, mn[p], _mm512_set1_epi32(xk->s32p[p]));
            a = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mi), _mm512_mul_ps(dm, xd), a);
        }
        _mm512_mask_storeu_ps(yt + m * ldy, mask, a);
    }
}

AMX_FORCE void tile_kq(const amx_ksrc *s, float *yt, int64_t ldy, __mmask16 mask, bool fresh, const int q6) {
    enum { D = 2 * AMX_LAG, R = 2 * AMX_LAG + 1 };
    int32_t cb[R][AMX_TT][16] __attribute__((aligned(64)));
    __m512i tot[AMX_TT];
    AMX_UNROLL for (int m = 0; m < AMX_TT; m++) tot[m] = _mm512_setzero_si512();
    for (int u = 0; u < KNU(q6) + D; u++) {
        if (u < KNU(q6)) kunit(s, u, cb[u % R], q6);
        int f = u - D;
        if (f < 0) continue;
        const uint8_t *scp = s->blk + (q6 ? 32 : 64) + 16 * f;
        __m128i sc8 = _mm_loadu_si128((const __m128i *)scp);
        __m512i scj = q6 ? _mm512_cvtepi8_epi32(sc8) : _mm512_cvtepu8_epi32(sc8);
        AMX_UNROLL for (int m = 0; m < AMX_TT; m++)
            tot[m] = _mm512_add_epi32(tot[m], _mm512_mullo_epi32(_mm512_load_si512(cb[f % R][m]), scj));
    }
    kfinish(s, tot, yt, ldy, mask, fresh, q6);
}

static void tile_q4_K(const amx_ksrc *s, float *yt, int64_t ldy, __mmask16 mask, bool fresh) { tile_kq(s, yt, ldy, mask, fresh, 0); }
static void tile_q6_K(const amx_ksrc *s, float *yt, int64_t ldy, __mmask16 mask, bool fresh) { tile_kq(s, yt, ldy, mask, fresh, 1); }

/* One Q4_K super-block of a group -> 8 B tiles of 8 x 64 codes. */
static void unpack_q4_K(const uint8_t *blk, int8_t *dst) {
    const __m512i m15 = _mm512_set1_epi8(15);
    for (int j = 0; j < 8; j++) {
        const uint8_t *area = blk + 320 + 256 * j;
        int8_t *o = dst + (size_t)j * 512;
        for (int m = 0; m < 4; m++) {
            __m512i v = _mm512_loadu_si512(area + 64 * m);
            _mm512_store_si512(o + 128 * m, _mm512_and_si512(v, m15));
            _mm512_store_si512(o + 128 * m + 64, _mm512_and_si512(_mm512_srli_epi16(v, 4), m15));
        }
    }
}

/* One Q6_K super-block -> 16 B tiles of 4 x 64 (code - 32) bytes. Packed vector s (0-2) of
 * a sub-block holds step s's codes in bits 0-5 and two bits of step 3's code in bits 6-7
 * (matmul_impl.h). */
static void unpack_q6_K(const uint8_t *blk, int8_t *dst) {
    const __m512i m3f = _mm512_set1_epi8(0x3f), m03 = _mm512_set1_epi8(3), m0c = _mm512_set1_epi8(0x0c),
                  m30 = _mm512_set1_epi8(0x30), off = _mm512_set1_epi8(32);
    for (int j = 0; j < 16; j++) {
        const uint8_t *area = blk + 288 + 192 * j;
        __m512i v0 = _mm512_loadu_si512(area), v1 = _mm512_loadu_si512(area + 64), v2 = _mm512_loadu_si512(area + 128);
        __m512i top = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v0, 6), m03),
                                      _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v1, 4), m0c),
                                                      _mm512_and_si512(_mm512_srli_epi16(v2, 2), m30)));
        __m512i w[4] = { _mm512_and_si512(v0, m3f), _mm512_and_si512(v1, m3f), _mm512_and_si512(v2, m3f), top };
        int8_t *o = dst + (size_t)j * 256;
        for (int r = 0; r < 4; r++) _mm512_store_si512(o + 64 * r, _mm512_sub_epi8(w[r], off));
    }
}

/* A images of super-block sb for the ntile tiles starting at token t0: per tile 4 KiB,
 * unit j of token m at j * KUB + m * (unit width). */
static void image_kq(const mm_ctx *c, int64_t t0, int64_t ntile, int64_t sb, int8_t *xa, bool q6) {
    const int w = q6 ? 16 : 32;
    for (int64_t tt = 0; tt < ntile; tt++)
        for (int m = 0; m < AMX_TT; m++) {
            const mm_xbk *xk = (const mm_xbk *)((const uint8_t *)c->xp + (size_t)(t0 + AMX_TT * tt + m) * c->xp_row) + sb;
            for (int j = 0; j < 256 / w; j++) memcpy(xa + (size_t)tt * 4096 + (size_t)j * AMX_TT * w + (size_t)m * w, xk->qs + j * w, (size_t)w);
        }
}

static void run_kq(const mm_ctx *c, int64_t g0, int64_t g1, bool q6) {
    const size_t bsz = q6 ? MM_Q6_K_BLK : MM_Q4_K_BLK;
    const int64_t nsb = c->w->n_cols / 256, nfull = c->n_tok / AMX_TT * AMX_TT;
    int8_t xa[AMX_CHUNK / AMX_TT][4096] __attribute__((aligned(64)));
    int8_t wbuf[4096] __attribute__((aligned(64)));
    if (nfull > 0) amx_config(q6 ? 16 : 32, q6 ? 4 : 8);
    for (int64_t tc = 0; tc < nfull; tc += AMX_CHUNK) {
        const int64_t ntile = (tc + AMX_CHUNK < nfull ? AMX_CHUNK : nfull - tc) / AMX_TT;
        for (int64_t sb = 0; sb < nsb; sb++) {
            image_kq(c, tc, ntile, sb, xa[0], q6);
            for (int64_t g = g0; g < g1; g++) {
                const uint8_t *blk = (const uint8_t *)c->w->packed + ((size_t)g * (size_t)nsb + (size_t)sb) * bsz;
                if (q6) unpack_q6_K(blk, wbuf);
                else unpack_q4_K(blk, wbuf);
                __mmask16 mask = group_mask(c, g);
                for (int64_t tt = 0; tt < ntile; tt++) {
                    int64_t t0 = tc + AMX_TT * tt;
                    amx_ksrc s = { blk, wbuf, xa[tt], (const uint8_t *)c->xp + (size_t)t0 * c->xp_row + (size_t)sb * sizeof(mm_xbk), c->xp_row };
                    float *yt = c->y + t0 * c->ldy + g * MM_GROUP;
                    if (q6) tile_q6_K(&s, yt, c->ldy, mask, sb == 0);
                    else tile_q4_K(&s, yt, c->ldy, mask, sb == 0);
                }
            }
        }
    }
    if (nfull > 0) T_RELEASE();
    rest_avx512(c, g0, g1, nfull);
}

static void run_q4_K(const mm_ctx *c, int64_t g0, int64_t g1) { run_kq(c, g0, g1, false); }
static void run_q6_K(const mm_ctx *c, int64_t g0, int64_t g1) { run_kq(c, g0, g1, true); }

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

mm_kern_fn mm_kernel_amx(const cpu_weight *w) {
    switch (w->packed ? w->packed_kind : MM_PACK_NONE) {
    case MM_PACK_Q4_0: return run_q4_0;
    case MM_PACK_Q8_0: return run_q8_0;
    case MM_PACK_Q4_K: return run_q4_K;
    case MM_PACK_Q6_K: return run_q6_K;
    default: return NULL;
    }
}

#else /* not x86-64: no AMX */
mm_kern_fn mm_kernel_amx(const cpu_weight *w) {
    (void)w;
    return NULL;
}
#endif
