/* matmul_avx2.c — AVX2 + FMA + F16C matmul kernels (x86-64 machines without AVX-512, or
 * HEARTH_CPU_ISA=avx2). Compiled for AVX2 through a target pragma; run only after isa.c
 * confirmed CPU and OS support.
 *
 * The R16 layouts are the AVX-512 ones; a 16-row vector is a pair of 256-bit registers
 * (rows 0-7, rows 8-15). Without VNNI the u8 x s8 dot of 4 bytes is vpmaddubsw (pairs to
 * int16) + vpmaddwd with ones (to int32). The int16 step cannot saturate: codes are at most
 * 63 (Q6_K) against |x| <= 127, and Q8_0 uses |w| with the sign moved onto x (|w| <= 128).
 */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/matmul_impl.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#endif

typedef struct { __m256i a, b; } VB;
typedef struct { __m256i a, b, sa, sb; } VS;  /* |w| and w (for the sign) */
typedef struct { __m256i a, b; } VI;
typedef struct { __m256 a, b; } VF;

static inline VB vb_load(const void *p) {
    return (VB){ _mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)p + 1) };
}
static inline VB vb_set1(int v) { return (VB){ _mm256_set1_epi8((char)v), _mm256_set1_epi8((char)v) }; }
static inline VB vb_and(VB x, VB y) { return (VB){ _mm256_and_si256(x.a, y.a), _mm256_and_si256(x.b, y.b) }; }
static inline VB vb_lo(VB v) { return vb_and(v, vb_set1(15)); }
static inline VB vb_hi(VB v) {
    return vb_and((VB){ _mm256_srli_epi16(v.a, 4), _mm256_srli_epi16(v.b, 4) }, vb_set1(15));
}
/* vpmaddubsw could saturate with 16 x code, so the high nibbles are always shifted down */
#define MM_SPLIT_NIB 0
static inline VB vb_hin(VB v) { return vb_hi(v); }
/* Q6_K's fourth step: bits 0-1 from a >> 6, 2-3 from b >> 4, 4-5 from c >> 2 (16-bit
 * shifts, each masked to its own bit pair) */
static inline __m256i q6top(__m256i a, __m256i b, __m256i c) {
    __m256i r = _mm256_and_si256(_mm256_srli_epi16(a, 6), _mm256_set1_epi8(0x03));
    r = _mm256_or_si256(r, _mm256_and_si256(_mm256_srli_epi16(b, 4), _mm256_set1_epi8(0x0c)));
    return _mm256_or_si256(r, _mm256_and_si256(_mm256_srli_epi16(c, 2), _mm256_set1_epi8(0x30)));
}
static inline VB vb_q6top(VB a, VB b, VB c) { return (VB){ q6top(a.a, b.a, c.a), q6top(a.b, b.b, c.b) }; }
/* 32 mask bits -> 32 bytes of 0x10 where set: byte i takes mask byte i/8, tests bit i%8 */
static inline __m256i bits_to_16(uint32_t m) {
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)m), sel);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}
static inline VB vb_addbit4(VB v, const uint8_t *p) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
    return (VB){ _mm256_or_si256(v.a, bits_to_16(lo)), _mm256_or_si256(v.b, bits_to_16(hi)) };
}
static inline VI vi_zero(void) { return (VI){ _mm256_setzero_si256(), _mm256_setzero_si256() }; }
static inline VI vi_set1(int32_t v) { return (VI){ _mm256_set1_epi32(v), _mm256_set1_epi32(v) }; }
static inline VI vi_add(VI x, VI y) { return (VI){ _mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b) }; }
static inline VI vi_hifix(VI x) { return x; }
static inline VI vi_mullo(VI x, VI y) { return (VI){ _mm256_mullo_epi32(x.a, y.a), _mm256_mullo_epi32(x.b, y.b) }; }
static inline VI vi_u8(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return (VI){ _mm256_cvtepu8_epi32(v), _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)) };
}
static inline VI vi_s8(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return (VI){ _mm256_cvtepi8_epi32(v), _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)) };
}
static inline VI vi_w16(const uint8_t *p) {
    return (VI){ _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p + 1)) };
}
static inline VI vi_dpwd(VI acc, VI w, int32_t pair) {
    __m256i x = _mm256_set1_epi32(pair);
    return (VI){ _mm256_add_epi32(acc.a, _mm256_madd_epi16(w.a, x)), _mm256_add_epi32(acc.b, _mm256_madd_epi16(w.b, x)) };
}
static inline __m256i dp4(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}
static inline VI vi_dp(VI acc, VB w, const int8_t *x4) {
    int32_t v;
    memcpy(&v, x4, 4);
    __m256i x = _mm256_set1_epi32(v);
    return (VI){ dp4(acc.a, w.a, x), dp4(acc.b, w.b, x) };
}
#define MM_Q8_USE_CORR 0
static inline VS vs_prep(VB w) { return (VS){ _mm256_abs_epi8(w.a), _mm256_abs_epi8(w.b), w.a, w.b }; }
static inline VI vi_dps(VI acc, VS w, const int8_t *x4) {
    int32_t v;
    memcpy(&v, x4, 4);
    __m256i x = _mm256_set1_epi32(v);
    return (VI){ dp4(acc.a, w.a, _mm256_sign_epi8(x, w.sa)), dp4(acc.b, w.b, _mm256_sign_epi8(x, w.sb)) };
}
static inline VF vf_zero(void) { return (VF){ _mm256_setzero_ps(), _mm256_setzero_ps() }; }
static inline VF vf_set1(float v) { return (VF){ _mm256_set1_ps(v), _mm256_set1_ps(v) }; }
static inline VF vf_i(VI v) { return (VF){ _mm256_cvtepi32_ps(v.a), _mm256_cvtepi32_ps(v.b) }; }
static inline VF vf_h(const void *p) {
    return (VF){ _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p + 1)) };
}
static inline VF vf_mul(VF x, VF y) { return (VF){ _mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b) }; }
static inline VF vf_fma(VF x, VF y, VF z) { return (VF){ _mm256_fmadd_ps(x.a, y.a, z.a), _mm256_fmadd_ps(x.b, y.b, z.b) }; }
static inline VF vf_fnma(VF x, VF y, VF z) { return (VF){ _mm256_fnmadd_ps(x.a, y.a, z.a), _mm256_fnmadd_ps(x.b, y.b, z.b) }; }
static inline void vf_store(float *p, VF v) { _mm256_storeu_ps(p, v.a); _mm256_storeu_ps(p + 8, v.b); }

#define MM_NT 4
#define MM_HAVE_Q5_K 1
#define MM_CASES_4PLUS(tc) case 4: tc(4); break;

#include "backend/cpu/matmul_kern.h"

/* ---- F16 / BF16 (unpacked rows): 4 rows x up to 2 tokens, 8 lanes, scalar tail ---------- */
#define FR 4
#define FT 2

static inline const uint8_t *frow(const mm_ctx *c, int64_t r) {
    if (r >= c->w->n_rows) r = c->w->n_rows - 1;
    return (const uint8_t *)c->w->data + (size_t)r * c->w->row_bytes;
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* bf != 0: weights and activations are bf16 bits; else f16 weights and f32 activations */
MM_FORCE void fx_tile(const mm_ctx *c, int64_t r0, int64_t t0, const int NT, const int bf) {
    const int64_t n = c->w->n_cols;
    const uint16_t *w[FR];
    const void *x[FT];
    __m256 acc[FR][FT];
    float tail[FR][FT];
    MM_UNROLL for (int i = 0; i < FR; i++) {
        w[i] = (const uint16_t *)frow(c, r0 + i);
        MM_UNROLL for (int t = 0; t < NT; t++) { acc[i][t] = _mm256_setzero_ps(); tail[i][t] = 0.0f; }
    }
    MM_UNROLL for (int t = 0; t < NT; t++) x[t] = (const uint8_t *)c->xp + (size_t)(t0 + t) * c->xp_row;
    /* one token (memory-bound): prefetch the next tile's rows into L2, 64 bytes per 8
     * columns = FR rows' worth over the tile (see the AVX-512 f16_tile) */
    const uint8_t *pf = NT == 1 ? frow(c, r0 + FR) : NULL;
    const uint8_t *pf_end = (const uint8_t *)c->w->data + (size_t)c->w->n_rows * c->w->row_bytes;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        if (pf && pf + 64 <= pf_end) {
            _mm_prefetch((const char *)pf, _MM_HINT_T1);
            pf += 64;
        }
        __m256 wv[FR];
        MM_UNROLL for (int i = 0; i < FR; i++) wv[i] = bf ? bf16x8(w[i] + k) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w[i] + k)));
        MM_UNROLL for (int t = 0; t < NT; t++) {
            __m256 xv = bf ? bf16x8((const uint16_t *)x[t] + k) : _mm256_loadu_ps((const float *)x[t] + k);
            MM_UNROLL for (int i = 0; i < FR; i++) acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
        }
    }
    for (; k < n; k++) {
        MM_UNROLL for (int t = 0; t < NT; t++) {
            float xv = bf ? hb_bf16_to_f32(((const uint16_t *)x[t])[k]) : ((const float *)x[t])[k];
            MM_UNROLL for (int i = 0; i < FR; i++) tail[i][t] += (bf ? hb_bf16_to_f32(w[i][k]) : hb_f16_to_f32(w[i][k])) * xv;
        }
    }
    MM_UNROLL for (int i = 0; i < FR; i++) {
        if (r0 + i >= c->w->n_rows) break;
        MM_UNROLL for (int t = 0; t < NT; t++) c->y[(t0 + t) * c->ldy + r0 + i] = hsum8(acc[i][t]) + tail[i][t];
    }
}

#define MM_DEF_FRUN(name, bf)                                                                   \
    static void name(const mm_ctx *c, int64_t g0, int64_t g1) {                                 \
        int64_t r1 = g1 * MM_GROUP < c->w->n_rows ? g1 * MM_GROUP : c->w->n_rows;               \
        for (int64_t tc = 0; tc < c->n_tok; tc += 64) {                                         \
            int64_t te = tc + 64 < c->n_tok ? tc + 64 : c->n_tok;                               \
            for (int64_t r = g0 * MM_GROUP; r < r1; r += FR)                                    \
                for (int64_t t0 = tc; t0 < te; t0 += FT) {                                      \
                    if (te - t0 >= 2) fx_tile(c, r, t0, 2, bf);                                 \
                    else fx_tile(c, r, t0, 1, bf);                                              \
                }                                                                               \
        }                                                                                       \
    }

MM_DEF_FRUN(run_f16, 0)
MM_DEF_FRUN(run_bf16, 1)


/* ---- activation preparation: the AVX-512 file's bit-exact quantizers, 8 lanes wide ---------- */
static inline __m256i round_clamp127(__m256 v) {
    __m256 half = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(0.5f));
    __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(v, half)); /* NaN/overflow: INT_MIN */
    return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
}

static inline __m256 absmax_acc(__m256 acc, const float *x) {
    __m256 a = _mm256_and_ps(_mm256_loadu_ps(x), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
    return _mm256_max_ps(a, acc); /* NaN lanes keep acc */
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 16 codes (two vectors of 8 int32 in -127..127) -> 16 bytes, element order kept */
static inline void store16(int8_t *dst, __m256i a, __m256i b) {
    __m256i w = _mm256_packs_epi32(a, b);                 /* a0-3 b0-3 | a4-7 b4-7 */
    w = _mm256_permute4x64_epi64(w, 0xd8);                /* a0-3 a4-7 | b0-3 b4-7 */
    __m128i p = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storeu_si128((__m128i *)dst, p);
}

static void prep_q8_0(const float *x, int64_t n, int32_t corr_k, mm_xb32 *out) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 32; i += 8) m = absmax_acc(m, x + i);
        float amax = hmax8(m);
        float d = hb_f16_to_f32(hb_f32_to_f16(amax / 127.0f));
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i q[4], s = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            q[i] = round_clamp127(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), _mm256_set1_ps(id)));
            s = _mm256_add_epi32(s, q[i]);
        }
        store16(out[b].qs, q[0], q[1]);
        store16(out[b].qs + 16, q[2], q[3]);
        out[b].d = d;
        out[b].corr = corr_k * hsum8i(s);
    }
}

static void prep_q8_K(const float *x, int64_t n, mm_xbk *out) {
    for (int64_t b = 0; b < n / 256; b++, x += 256) {
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 256; i += 8) m = absmax_acc(m, x + i);
        float amax = hmax8(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        out[b].d = amax / 127.0f;
        int32_t s16[16];
        for (int j = 0; j < 16; j++) {
            __m256i q0 = round_clamp127(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * j), _mm256_set1_ps(id)));
            __m256i q1 = round_clamp127(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * j + 8), _mm256_set1_ps(id)));
            store16(out[b].qs + 16 * j, q0, q1);
            s16[j] = hsum8i(_mm256_add_epi32(q0, q1));
            out[b].c16[j] = -32 * s16[j];
        }
        for (int p = 0; p < 4; p++) out[b].s32p[p] = mm_pair16(s16[4 * p] + s16[4 * p + 1], s16[4 * p + 2] + s16[4 * p + 3]);
    }
}

static void prep_f16(const float *x, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) out[i] = hb_f16_to_f32(hb_f32_to_f16(x[i]));
}

void mm_prep_avx2(uint32_t type, const float *x, int64_t n, void *out) {
    switch (type) {
    case QT_Q4_0: case QT_Q8_0: prep_q8_0(x, n, mm_corr_factor(type), out); break;
    case QT_F16: prep_f16(x, n, out); break;
    case QT_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = hb_f32_to_bf16(x[i]); break;
    default: prep_q8_K(x, n, out); break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

mm_kern_fn mm_kernel_avx2(const cpu_weight *w) {
    switch (w->packed ? w->packed_kind : MM_PACK_NONE) {
    case MM_PACK_Q4_0: return run_q4_0;
    case MM_PACK_Q8_0: return run_q8_0;
    case MM_PACK_Q4_K: return run_q4_K;
    case MM_PACK_Q5_K: return run_q5_K;
    case MM_PACK_Q6_K: return run_q6_K;
    default: break;
    }
    if (w->type == QT_F16) return run_f16;
    if (w->type == QT_BF16) return run_bf16;
    return NULL;
}

#else
void mm_prep_avx2(uint32_t type, const float *x, int64_t n, void *out) {
    (void)type, (void)x, (void)n, (void)out;
}
mm_kern_fn mm_kernel_avx2(const cpu_weight *w) {
    (void)w;
    return NULL;
}
#endif
