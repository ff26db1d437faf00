/* matmul_kern.h — the R16 quantized kernels, written once over a small set of vector
 * primitives and compiled twice: by matmul_avx512.c (one 512-bit register = 16 rows) and
 * by matmul_avx2.c (a pair of 256-bit registers). Not a normal header: included once by
 * each ISA file after it defines the primitives and MM_NT (max tokens per tile):
 *
 *   VB  64 bytes (4 codes x 16 rows)      VI  16 x int32 (one per row)    VF  16 x float
 *   VS  a VB of signed codes, ready for vi_dps
 *   vb_load vb_lo vb_hi vb_and vb_set1 vb_addbit4
 *   vb_q6top(a, b, c): ((a >> 6) & 3) | ((b >> 6) & 3) << 2 | ((c >> 6) & 3) << 4 per byte
 *   vi_zero vi_set1 vi_add vi_mullo vi_u8 vi_s8 vi_dp(acc, u8 codes, &x[4]) vs_prep vi_dps
 *   vi_w16(32 u8 -> 16 lanes of two zero-extended int16) vi_dpwd(acc, pairs, int16 pair)
 *   vf_zero vf_set1 vf_i vf_h vf_mul vf_fma vf_fnma vf_store
 *   vb_hin vi_hifix MM_SPLIT_NIB: high nibbles in place (x16) and the fix-up (see nib32_dot)
 *   MM_Q8_USE_CORR: whether the Q8_0 kernel adds the prepared corr (vs_prep's offset)
 *
 * Layouts: see matmul_impl.h. Tiles are NT tokens of one 16-row group; the weight bytes of a
 * block are unpacked once and used for all NT tokens. Each (row, token) result is a fixed
 * sequence of operations over the blocks, whatever the tile size or thread split.
 */
#define MM_FORCE static inline __attribute__((always_inline))
#define MM_UNROLL _Pragma("GCC unroll 8")

/* Writes the 16 row results of group g for token t (the last group may be partial). */
MM_FORCE void mm_store(const mm_ctx *c, int64_t g, int64_t t, VF v) {
    float *dst = c->y + t * c->ldy + g * MM_GROUP;
    int64_t n = c->w->n_rows - g * MM_GROUP;
    if (n >= MM_GROUP) {
        vf_store(dst, v);
    } else {
        float tmp[MM_GROUP];
        vf_store(tmp, v);
        for (int64_t i = 0; i < n; i++) dst[i] = tmp[i];
    }
}

#define XROW(c, t, T) ((const T *)((const uint8_t *)(c)->xp + (size_t)(t) * (c)->xp_row))

/* Adds the 8 products of one 32-element slice of a 4-bit block (4 vectors, steps 2m = low
 * nibbles, 2m+1 = high) for NT tokens. With MM_SPLIT_NIB and few tokens, the high nibbles are
 * used in place (16 x code: one AND instead of shift + AND) in a second accumulator that is
 * scaled back by >> 4 at the end — exact, and two independent 4-deep vpdpbusd chains instead
 * of one 8-deep chain; for big tiles the tokens already give enough independent chains. */
MM_FORCE void nib32_dot(VI *ai, const uint8_t *area, const int8_t *const *q, const int NT) {
    const int split = MM_SPLIT_NIB && NT <= 2;
    VI ah[MM_NT];
    if (split) MM_UNROLL for (int t = 0; t < NT; t++) ah[t] = vi_zero();
    MM_UNROLL for (int m = 0; m < 4; m++) {
        VB v = vb_load(area + 64 * m), lo = vb_lo(v), hi = split ? vb_hin(v) : vb_hi(v);
        MM_UNROLL for (int t = 0; t < NT; t++) {
            ai[t] = vi_dp(ai[t], lo, q[t] + 8 * m);
            if (split) ah[t] = vi_dp(ah[t], hi, q[t] + 8 * m + 4);
            else ai[t] = vi_dp(ai[t], hi, q[t] + 8 * m + 4);
        }
    }
    if (split) MM_UNROLL for (int t = 0; t < NT; t++) ai[t] = vi_add(ai[t], vi_hifix(ah[t]));
}

MM_FORCE void q4_0_tile(const mm_ctx *c, int64_t g, int64_t t0, const int NT) {
    int64_t nb = c->w->n_cols / 32;
    const uint8_t *gw = (const uint8_t *)c->w->packed + (size_t)g * (size_t)nb * MM_Q4_0_BLK;
    const mm_xb32 *xb[MM_NT];
    VF acc[MM_NT];
    MM_UNROLL for (int t = 0; t < NT; t++) { xb[t] = XROW(c, t0 + t, mm_xb32); acc[t] = vf_zero(); }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gw + (size_t)b * MM_Q4_0_BLK;
        VI ai[MM_NT];
        const int8_t *q[MM_NT];
        MM_UNROLL for (int t = 0; t < NT; t++) { ai[t] = vi_set1(xb[t][b].corr); q[t] = xb[t][b].qs; }
        nib32_dot(ai, blk + 32, q, NT);
        VF dw = vf_h(blk);
        MM_UNROLL for (int t = 0; t < NT; t++) acc[t] = vf_fma(vf_i(ai[t]), vf_mul(dw, vf_set1(xb[t][b].d)), acc[t]);
    }
    MM_UNROLL for (int t = 0; t < NT; t++) mm_store(c, g, t0 + t, acc[t]);
}

MM_FORCE void q8_0_tile(const mm_ctx *c, int64_t g, int64_t t0, const int NT) {
    int64_t nb = c->w->n_cols / 32;
    const uint8_t *gw = (const uint8_t *)c->w->packed + (size_t)g * (size_t)nb * MM_Q8_0_BLK;
    const mm_xb32 *xb[MM_NT];
    VF acc[MM_NT];
    MM_UNROLL for (int t = 0; t < NT; t++) { xb[t] = XROW(c, t0 + t, mm_xb32); acc[t] = vf_zero(); }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gw + (size_t)b * MM_Q8_0_BLK;
        VI ai[MM_NT];
        /* few tokens: even and odd steps in two accumulators (two 4-deep chains) */
        const int split = NT <= 2;
        VI a2[MM_NT];
        MM_UNROLL for (int t = 0; t < NT; t++) {
            ai[t] = MM_Q8_USE_CORR ? vi_set1(xb[t][b].corr) : vi_zero();
            if (split) a2[t] = vi_zero();
        }
        MM_UNROLL for (int s = 0; s < 8; s++) {
            VS ws = vs_prep(vb_load(blk + 32 + 64 * s));
            MM_UNROLL for (int t = 0; t < NT; t++) {
                if (split && (s & 1)) a2[t] = vi_dps(a2[t], ws, xb[t][b].qs + 4 * s);
                else ai[t] = vi_dps(ai[t], ws, xb[t][b].qs + 4 * s);
            }
        }
        if (split) MM_UNROLL for (int t = 0; t < NT; t++) ai[t] = vi_add(ai[t], a2[t]);
        VF dw = vf_h(blk);
        MM_UNROLL for (int t = 0; t < NT; t++) acc[t] = vf_fma(vf_i(ai[t]), vf_mul(dw, vf_set1(xb[t][b].d)), acc[t]);
    }
    MM_UNROLL for (int t = 0; t < NT; t++) mm_store(c, g, t0 + t, acc[t]);
}

/* Q4_K and Q5_K (five != 0: fifth bits from the per-step masks). */
MM_FORCE void q45_K_tile(const mm_ctx *c, int64_t g, int64_t t0, const int NT, const int five) {
    const size_t bsz = five ? MM_Q5_K_BLK : MM_Q4_K_BLK, sub = five ? 320 : 256;
    int64_t nsb = c->w->n_cols / 256;
    const uint8_t *gw = (const uint8_t *)c->w->packed + (size_t)g * (size_t)nsb * bsz;
    const mm_xbk *xk[MM_NT];
    VF acc[MM_NT];
    MM_UNROLL for (int t = 0; t < NT; t++) { xk[t] = XROW(c, t0 + t, mm_xbk); acc[t] = vf_zero(); }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *blk = gw + (size_t)sb * bsz;
        VI tot[MM_NT];
        MM_UNROLL for (int t = 0; t < NT; t++) tot[t] = vi_zero();
        for (int j = 0; j < 8; j++) {
            const uint8_t *area = blk + 320 + (size_t)j * sub;
            VI ai[MM_NT];
            MM_UNROLL for (int t = 0; t < NT; t++) ai[t] = vi_zero();
            if (!five) {
                const int8_t *q[MM_NT];
                MM_UNROLL for (int t = 0; t < NT; t++) q[t] = xk[t][sb].qs + 32 * j;
                nib32_dot(ai, area, q, NT);
            } else {
                MM_UNROLL for (int m = 0; m < 4; m++) {
                    VB v = vb_load(area + 64 * m);
                    VB lo = vb_addbit4(vb_lo(v), area + 256 + 16 * m), hi = vb_addbit4(vb_hi(v), area + 256 + 16 * m + 8);
                    MM_UNROLL for (int t = 0; t < NT; t++) {
                        const int8_t *q = xk[t][sb].qs + 32 * j + 8 * m;
                        ai[t] = vi_dp(vi_dp(ai[t], lo, q), hi, q + 4);
                    }
                }
            }
            VI scj = vi_u8(blk + 64 + 16 * j);
            MM_UNROLL for (int t = 0; t < NT; t++) tot[t] = vi_add(tot[t], vi_mullo(ai[t], scj));
        }
        VF dw = vf_h(blk), dm = vf_h(blk + 32);
        MM_UNROLL for (int t = 0; t < NT; t++) {
            VI mi = vi_zero();
            /* mins: 16-bit pairs (two sub-blocks) per multiply-add */
            MM_UNROLL for (int p = 0; p < 4; p++) mi = vi_dpwd(mi, vi_w16(blk + 192 + 32 * p), xk[t][sb].s32p[p]);
            VF xd = vf_set1(xk[t][sb].d);
            acc[t] = vf_fma(vf_i(tot[t]), vf_mul(dw, xd), acc[t]);
            acc[t] = vf_fnma(vf_i(mi), vf_mul(dm, xd), acc[t]);
        }
    }
    MM_UNROLL for (int t = 0; t < NT; t++) mm_store(c, g, t0 + t, acc[t]);
}

MM_FORCE void q6_K_tile(const mm_ctx *c, int64_t g, int64_t t0, const int NT) {
    int64_t nsb = c->w->n_cols / 256;
    const uint8_t *gw = (const uint8_t *)c->w->packed + (size_t)g * (size_t)nsb * MM_Q6_K_BLK;
    const mm_xbk *xk[MM_NT];
    VF acc[MM_NT];
    MM_UNROLL for (int t = 0; t < NT; t++) { xk[t] = XROW(c, t0 + t, mm_xbk); acc[t] = vf_zero(); }
    const VB m3f = vb_set1(0x3f);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *blk = gw + (size_t)sb * MM_Q6_K_BLK;
        VI tot[MM_NT];
        MM_UNROLL for (int t = 0; t < NT; t++) tot[t] = vi_zero();
        for (int j = 0; j < 16; j++) {
            const uint8_t *area = blk + 288 + (size_t)j * 192;
            VB v0 = vb_load(area), v1 = vb_load(area + 64), v2 = vb_load(area + 128);
            VB w0 = vb_and(v0, m3f), w1 = vb_and(v1, m3f), w2 = vb_and(v2, m3f), w3 = vb_q6top(v0, v1, v2);
            VI scj = vi_s8(blk + 32 + 16 * j);
            MM_UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *q = xk[t][sb].qs + 16 * j;
                VI a = vi_set1(xk[t][sb].c16[j]);
                a = vi_dp(vi_dp(vi_dp(vi_dp(a, w0, q), w1, q + 4), w2, q + 8), w3, q + 12);
                tot[t] = vi_add(tot[t], vi_mullo(a, scj));
            }
        }
        VF dw = vf_h(blk);
        MM_UNROLL for (int t = 0; t < NT; t++) acc[t] = vf_fma(vf_i(tot[t]), vf_mul(dw, vf_set1(xk[t][sb].d)), acc[t]);
    }
    MM_UNROLL for (int t = 0; t < NT; t++) mm_store(c, g, t0 + t, acc[t]);
}

/* Group loop: tiles of up to MM_NT tokens, each with a constant token count so the tile
 * body is fully unrolled. Token chunks of 64 keep a chunk's activations cache-resident
 * while the thread's row groups stream past them. */
#define MM_DEF_RUN(name, tile_call)                                                       \
    static void name(const mm_ctx *c, int64_t g0, int64_t g1) {                           \
        for (int64_t tc = 0; tc < c->n_tok; tc += 64) {                                   \
            int64_t te = tc + 64 < c->n_tok ? tc + 64 : c->n_tok;                         \
            for (int64_t g = g0; g < g1; g++) {                                           \
                for (int64_t t0 = tc; t0 < te; t0 += MM_NT) {                             \
                    int64_t nt = te - t0 < MM_NT ? te - t0 : MM_NT;                       \
                    switch (nt) {                                                         \
                    case 1: tile_call(1); break;                                          \
                    case 2: tile_call(2); break;                                          \
                    case 3: tile_call(3); break;                                          \
                    MM_CASES_4PLUS(tile_call)                                             \
                    default: break;                                                       \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

#define Q4_0_CALL(n) q4_0_tile(c, g, t0, n)
#define Q8_0_CALL(n) q8_0_tile(c, g, t0, n)
#define Q4_K_CALL(n) q45_K_tile(c, g, t0, n, 0)
#define Q5_K_CALL(n) q45_K_tile(c, g, t0, n, 1)
#define Q6_K_CALL(n) q6_K_tile(c, g, t0, n)

MM_DEF_RUN(run_q4_0, Q4_0_CALL)
MM_DEF_RUN(run_q8_0, Q8_0_CALL)
MM_DEF_RUN(run_q4_K, Q4_K_CALL)
#ifdef MM_HAVE_Q5_K
MM_DEF_RUN(run_q5_K, Q5_K_CALL)
#endif
MM_DEF_RUN(run_q6_K, Q6_K_CALL)
