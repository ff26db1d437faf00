/* ops_attn_avx512.c — AVX-512 build of the vector attention and per-token helpers
 * (ops_attn_kern.h): one 512-bit register holds 16 query rows (scores, softmax) or 16 value
 * dims (output). Compiled for AVX-512 through a target pragma (never a global -march) and
 * used only after isa.c confirmed CPU and OS support (cpu_vec_get).
 */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/ops_vec.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

typedef __m512 VF;
#define VW 16
#define AK_CB 4
#define AK_NVB 4
#define AK_NVD 4

static inline VF vf_zero(void) { return _mm512_setzero_ps(); }
static inline VF vf_set1(float x) { return _mm512_set1_ps(x); }
static inline VF vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, VF v) { _mm512_storeu_ps(p, v); }
static inline VF vf_bcast(const float *p) { return _mm512_set1_ps(*p); }
static inline VF vf_add(VF a, VF b) { return _mm512_add_ps(a, b); }
static inline VF vf_sub(VF a, VF b) { return _mm512_sub_ps(a, b); }
static inline VF vf_mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
static inline VF vf_div(VF a, VF b) { return _mm512_div_ps(a, b); }
static inline VF vf_max(VF a, VF b) { return _mm512_max_ps(a, b); }
static inline VF vf_min(VF a, VF b) { return _mm512_min_ps(a, b); }
static inline VF vf_fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
static inline VF vf_round(VF x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VF vf_pow2i(VF n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
static inline VF vf_sel_lt(VF x, VF lim, VF a, VF b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lim, _CMP_LT_OQ), b, a); }
static inline VF vf_sel_gt(VF x, VF lim, VF a, VF b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lim, _CMP_GT_OQ), b, a); }
static inline VF vf_cells(VF s, const int32_t *lo, const int32_t *hi, int32_t c) {
    __m512i cv = _mm512_set1_epi32(c);
    __mmask16 ok = _mm512_cmple_epi32_mask(_mm512_loadu_si512(lo), cv) & _mm512_cmpge_epi32_mask(_mm512_loadu_si512(hi), cv);
    return _mm512_mask_blend_ps(ok, _mm512_set1_ps(-INFINITY), s);
}
static inline VF vf_h(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p)); }
static inline VF vf_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
static inline void vh_store(uint16_t *y, VF v) {
    _mm256_storeu_si256((__m256i *)(void *)y, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

#include "backend/cpu/ops_attn_kern.h"

/* sum x^2 in double: each float widened to double (products are then exact). */
static double sumsq_avx512(const float *x, int64_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const cpu_vec cpu_vec_avx512 = {
    .name = "avx512",
    .attn = ak_attn,
    .f32_to_f16 = ak_f32_to_f16,
    .glu = ak_glu,
    .sumsq = sumsq_avx512,
    .exp = ak_exp,
    .scale_rows = ak_scale_rows,
    .add = ak_add,
};

#endif
