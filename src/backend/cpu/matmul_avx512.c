/* matmul_avx512.c — AVX-512 (F/BW/VL/DQ + VNNI, optionally BF16) matmul kernels.
 *
 * Everything in this file is compiled for AVX-512 through a target pragma (never a global
 * -march), and runs only after isa.c confirmed the CPU and the OS support it; the BF16
 * kernel additionally only after the AVX512_BF16 cpuid bit. One 512-bit register holds one
 * int32/float lane per row of a 16-row group; vpdpbusd with an embedded 4-byte broadcast of
 * the activations does 64 multiply-adds per instruction.
 */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/matmul_impl.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c,bmi,bmi2")
#endif

typedef __m512i VB;
typedef __m512i VS;
typedef __m512i VI;
typedef __m512 VF;

static inline VB vb_load(const void *p) { return _mm512_loadu_si512(p); }
static inline VB vb_set1(int v) { return _mm512_set1_epi8((char)v); }
static inline VB vb_and(VB a, VB b) { return _mm512_and_si512(a, b); }
static inline VB vb_lo(VB v) { return _mm512_and_si512(v, _mm512_set1_epi8(15)); }
static inline VB vb_hi(VB v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)); }
/* high nibbles in place (16 x code, at most 240: fine for vpdpbusd's u8 operand) */
#define MM_SPLIT_NIB 1
static inline VB vb_hin(VB v) { return _mm512_and_si512(v, _mm512_set1_epi8((char)0xf0)); }
/* Q6_K's fourth step from the top bit pairs (bytes within 16-bit lanes: the shifts pull
 * in the neighbour byte's bits, which the selects drop; c is masked before its shift):
 * bits 0-1 from a >> 6, 2-3 from b >> 4, 4-5 from (c & 0xc0) >> 2, 6-7 zero. 0xca = A ? B : C */
static inline VB vb_q6top(VB a, VB b, VB c) {
    __m512i t = _mm512_ternarylogic_epi32(_mm512_set1_epi8(0x03), _mm512_srli_epi16(a, 6), _mm512_srli_epi16(b, 4), 0xca);
    __m512i u = _mm512_srli_epi16(_mm512_and_si512(c, _mm512_set1_epi8((char)0xc0)), 2);
    return _mm512_ternarylogic_epi32(_mm512_set1_epi8(0x0f), t, u, 0xca);
}
/* adds 16 to the bytes whose bit is set in the 64-bit little-endian mask at p */
static inline VB vb_addbit4(VB v, const uint8_t *p) {
    uint64_t m;
    memcpy(&m, p, 8);
    return _mm512_mask_add_epi8(v, (__mmask64)m, v, _mm512_set1_epi8(16));
}
static inline VI vi_zero(void) { return _mm512_setzero_si512(); }
static inline VI vi_set1(int32_t v) { return _mm512_set1_epi32(v); }
static inline VI vi_add(VI a, VI b) { return _mm512_add_epi32(a, b); }
static inline VI vi_mullo(VI a, VI b) { return _mm512_mullo_epi32(a, b); }
static inline VI vi_hifix(VI a) { return _mm512_srai_epi32(a, 4); } /* exact: a = 16 x dot */
static inline VI vi_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
static inline VI vi_s8(const uint8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)); }
static inline VI vi_w16(const uint8_t *p) { return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p)); }
static inline VI vi_dpwd(VI acc, VI w, int32_t pair) { return _mm512_dpwssd_epi32(acc, w, _mm512_set1_epi32(pair)); }
/* The 4 activation bytes as an embedded {1to16} broadcast memory operand: GCC emits a
 * separate vpbroadcastd for _mm512_set1_epi32 here, and on Zen 4 the fused form runs ~20%
 * more vpdpbusd per second (in-process microbenchmark, 8 independent chains). */
static inline VI vi_dp(VI acc, VB w, const int8_t *x4) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)(const void *)x4));
    return acc;
#else
    int32_t v;
    memcpy(&v, x4, 4);
    return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(v));
#endif
}
/* Q8_0 codes are signed: flip them to u8 (q + 128) and let the kernel subtract
 * 128 * sum(x) per block (the prepared corr), which keeps one vpdpbusd per step. */
#define MM_Q8_USE_CORR 1
static inline VS vs_prep(VB w) { return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)); }
static inline VI vi_dps(VI acc, VS w, const int8_t *x4) { return vi_dp(acc, w, x4); }
static inline VF vf_zero(void) { return _mm512_setzero_ps(); }
static inline VF vf_set1(float v) { return _mm512_set1_ps(v); }
static inline VF vf_i(VI v) { return _mm512_cvtepi32_ps(v); }
static inline VF vf_h(const void *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline VF vf_mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
static inline VF vf_fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
static inline VF vf_fnma(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }
static inline void vf_store(float *p, VF v) { _mm512_storeu_ps(p, v); }

#define MM_NT 8
#define MM_HAVE_Q5_K 1
#define MM_CASES_4PLUS(tc) \
    case 4: tc(4); break;  \
    case 5: tc(5); break;  \
    case 6: tc(6); break;  \
    case 7: tc(7); break;  \
    case 8: tc(8); break;

#include "backend/cpu/matmul_kern.h"

/* ---- F16 / BF16 (unpacked rows) ------------------------------------------------------------
 * 4 rows x up to 4 tokens per tile; every row is reduced the same way (16 lanes, columns
 * in order, masked tail, fixed horizontal sum), so results do not depend on the tiling. */
#define FR 4
#define FT 4

static inline const uint8_t *frow(const mm_ctx *c, int64_t r) {
    if (r >= c->w->n_rows) r = c->w->n_rows - 1; /* padding rows recompute the last one */
    return (const uint8_t *)c->w->data + (size_t)r * c->w->row_bytes;
}

MM_FORCE void f16_tile(const mm_ctx *c, int64_t r0, int64_t t0, const int NT) {
    const int64_t n = c->w->n_cols;
    const uint16_t *w[FR];
    const float *x[FT];
    VF acc[FR][FT];
    MM_UNROLL for (int i = 0; i < FR; i++) {
        w[i] = (const uint16_t *)frow(c, r0 + i);
        MM_UNROLL for (int t = 0; t < NT; t++) acc[i][t] = vf_zero();
    }
    MM_UNROLL for (int t = 0; t < NT; t++) x[t] = XROW(c, t0 + t, float);
    /* The FR rows of a tile are adjacent in memory but read as FR short parallel streams,
     * which the hardware prefetcher keeps having to re-learn (a new set every FR rows). With
     * few tokens (memory-bound) the tile prefetches the next tile's rows, 128 bytes per
     * 16 columns = exactly FR rows' worth over the tile. */
    const uint8_t *pf = NT <= 2 ? frow(c, r0 + FR) : NULL;
    const uint8_t *pf_end = (const uint8_t *)c->w->data + (size_t)c->w->n_rows * c->w->row_bytes;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        if (pf && pf + 128 <= pf_end) {
            _mm_prefetch((const char *)pf, _MM_HINT_T1);
            _mm_prefetch((const char *)pf + 64, _MM_HINT_T1);
            pf += 128;
        }
        VF wv[FR];
        MM_UNROLL for (int i = 0; i < FR; i++) wv[i] = vf_h(w[i] + k);
        MM_UNROLL for (int t = 0; t < NT; t++) {
            VF xv = _mm512_loadu_ps(x[t] + k);
            MM_UNROLL for (int i = 0; i < FR; i++) acc[i][t] = vf_fma(wv[i], xv, acc[i][t]);
        }
    }
    if (k < n) {
        __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        VF wv[FR];
        MM_UNROLL for (int i = 0; i < FR; i++) wv[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w[i] + k));
        MM_UNROLL for (int t = 0; t < NT; t++) {
            VF xv = _mm512_maskz_loadu_ps(m, x[t] + k);
            MM_UNROLL for (int i = 0; i < FR; i++) acc[i][t] = vf_fma(wv[i], xv, acc[i][t]);
        }
    }
    MM_UNROLL for (int i = 0; i < FR; i++) {
        if (r0 + i >= c->w->n_rows) break;
        MM_UNROLL for (int t = 0; t < NT; t++) c->y[(t0 + t) * c->ldy + r0 + i] = _mm512_reduce_add_ps(acc[i][t]);
    }
}

MM_FORCE void bf16_tile(const mm_ctx *c, int64_t r0, int64_t t0, const int NT) {
    const int64_t n = c->w->n_cols;
    const uint16_t *w[FR];
    const uint16_t *x[FT];
    VF acc[FR][FT];
    MM_UNROLL for (int i = 0; i < FR; i++) {
        w[i] = (const uint16_t *)frow(c, r0 + i);
        MM_UNROLL for (int t = 0; t < NT; t++) acc[i][t] = vf_zero();
    }
    MM_UNROLL for (int t = 0; t < NT; t++) x[t] = XROW(c, t0 + t, uint16_t);
    const uint8_t *pf = NT <= 2 ? frow(c, r0 + FR) : NULL; /* as f16_tile: 256 B per 32 columns */
    const uint8_t *pf_end = (const uint8_t *)c->w->data + (size_t)c->w->n_rows * c->w->row_bytes;
    for (int64_t k = 0; k < n; k += 32) {
        if (pf && pf + 256 <= pf_end) {
            MM_UNROLL for (int l = 0; l < 256; l += 64) _mm_prefetch((const char *)pf + l, _MM_HINT_T1);
            pf += 256;
        }
        __mmask32 m = n - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (n - k)) - 1);
        __m512i wv[FR];
        MM_UNROLL for (int i = 0; i < FR; i++) wv[i] = _mm512_maskz_loadu_epi16(m, w[i] + k);
        MM_UNROLL for (int t = 0; t < NT; t++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, x[t] + k);
            MM_UNROLL for (int i = 0; i < FR; i++) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], (__m512bh)wv[i], (__m512bh)xv);
        }
    }
    MM_UNROLL for (int i = 0; i < FR; i++) {
        if (r0 + i >= c->w->n_rows) break;
        MM_UNROLL for (int t = 0; t < NT; t++) c->y[(t0 + t) * c->ldy + r0 + i] = _mm512_reduce_add_ps(acc[i][t]);
    }
}

#define MM_DEF_FRUN(name, tile)                                                                 \
    static void name(const mm_ctx *c, int64_t g0, int64_t g1) {                                 \
        int64_t r1 = g1 * MM_GROUP < c->w->n_rows ? g1 * MM_GROUP : c->w->n_rows;               \
        for (int64_t tc = 0; tc < c->n_tok; tc += 64) {                                         \
            int64_t te = tc + 64 < c->n_tok ? tc + 64 : c->n_tok;                               \
            for (int64_t r = g0 * MM_GROUP; r < r1; r += FR) {                                  \
                for (int64_t t0 = tc; t0 < te; t0 += FT) {                                      \
                    switch (te - t0 < FT ? te - t0 : FT) {                                      \
                    case 1: tile(c, r, t0, 1); break;                                           \
                    case 2: tile(c, r, t0, 2); break;                                           \
                    case 3: tile(c, r, t0, 3); break;                                           \
                    default: tile(c, r, t0, 4); break;                                          \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

MM_DEF_FRUN(run_f16, f16_tile)
MM_DEF_FRUN(run_bf16, bf16_tile)


/* ---- activation preparation -----------------------------------------------------------------
 * Bit-exact vector versions of the reference quantizers (quant_quant_q8_0 / q8_K): the same
 * IEEE operations in the same order per element (|x| max, scale, x * id, then quant.h's
 * rounding rule: truncate(v +- 0.5) clamped, NaN to the low end), so the codes are identical
 * and only the kernels' summation order differs from the reference. */
static inline __m512i round_clamp127(__m512 v) {
    __m512 half = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(0.5f));
    __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(v, half)); /* NaN/overflow: INT_MIN */
    return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
}

static inline __m512 absmax_acc(__m512 acc, const float *x) {
    return _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), acc); /* NaN lanes keep acc */
}

static void prep_q8_0(const float *x, int64_t n, int32_t corr_k, mm_xb32 *out) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = _mm512_reduce_max_ps(absmax_acc(absmax_acc(_mm512_setzero_ps(), x), x + 16));
        float d = hb_f16_to_f32(hb_f32_to_f16(amax / 127.0f));
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512i q0 = round_clamp127(_mm512_mul_ps(_mm512_loadu_ps(x), _mm512_set1_ps(id)));
        __m512i q1 = round_clamp127(_mm512_mul_ps(_mm512_loadu_ps(x + 16), _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)out[b].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[b].qs + 16), _mm512_cvtepi32_epi8(q1));
        out[b].d = d;
        out[b].corr = corr_k * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

static void prep_q8_K(const float *x, int64_t n, mm_xbk *out) {
    for (int64_t b = 0; b < n / 256; b++, x += 256) {
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 256; i += 16) m = absmax_acc(m, x + i);
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        out[b].d = amax / 127.0f;
        int32_t s16[16];
        for (int j = 0; j < 16; j++) {
            __m512i q = round_clamp127(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), _mm512_set1_ps(id)));
            _mm_storeu_si128((__m128i *)(out[b].qs + 16 * j), _mm512_cvtepi32_epi8(q));
            s16[j] = _mm512_reduce_add_epi32(q);
            out[b].c16[j] = -32 * s16[j];
        }
        for (int p = 0; p < 4; p++) out[b].s32p[p] = mm_pair16(s16[4 * p] + s16[4 * p + 1], s16[4 * p + 2] + s16[4 * p + 3]);
    }
}

static void prep_f16(const float *x, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) out[i] = hb_f16_to_f32(hb_f32_to_f16(x[i]));
}

/* round-to-nearest-even bf16 in integer arithmetic, NaN quieted (as hb_f32_to_bf16) */
static void prep_bf16(const float *x, int64_t n, uint16_t *out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512(x + i);
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                         _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
        r = _mm512_srli_epi32(r, 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) out[i] = hb_f32_to_bf16(x[i]);
}

void mm_prep_avx512(uint32_t type, const float *x, int64_t n, void *out) {
    switch (type) {
    case QT_Q4_0: case QT_Q8_0: prep_q8_0(x, n, mm_corr_factor(type), out); break;
    case QT_F16: prep_f16(x, n, out); break;
    case QT_BF16: prep_bf16(x, n, out); break;
    default: prep_q8_K(x, n, out); break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

mm_kern_fn mm_kernel_avx512(const cpu_weight *w, bool bf16_ok) {
    switch (w->packed ? w->packed_kind : MM_PACK_NONE) {
    case MM_PACK_Q4_0: return run_q4_0;
    case MM_PACK_Q8_0: return run_q8_0;
    case MM_PACK_Q4_K: return run_q4_K;
    case MM_PACK_Q5_K: return run_q5_K;
    case MM_PACK_Q6_K: return run_q6_K;
    default: break;
    }
    if (w->type == QT_F16) return run_f16;
    if (w->type == QT_BF16 && bf16_ok) return run_bf16;
    return NULL;
}

#else /* not x86-64: no AVX-512 kernels */
void mm_prep_avx512(uint32_t type, const float *x, int64_t n, void *out) {
    (void)type, (void)x, (void)n, (void)out;
}
mm_kern_fn mm_kernel_avx512(const cpu_weight *w, bool bf16_ok) {
    (void)w, (void)bf16_ok;
    return NULL;
}
#endif
