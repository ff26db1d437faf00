/* ops_attn_avx2.c — AVX2 + FMA + F16C build of the vector attention and per-token helpers
 * (ops_attn_kern.h): one 256-bit register holds 8 query rows or 8 value dims. Compiled for
 * AVX2 through a target pragma and used only after isa.c confirmed CPU and OS support.
 */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/ops_vec.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

typedef __m256 VF;
#define VW 8
#define AK_CB 3
#define AK_NVB 3
#define AK_NVD 2

static inline VF vf_zero(void) { return _mm256_setzero_ps(); }
static inline VF vf_set1(float x) { return _mm256_set1_ps(x); }
static inline VF vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, VF v) { _mm256_storeu_ps(p, v); }
static inline VF vf_bcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline VF vf_add(VF a, VF b) { return _mm256_add_ps(a, b); }
static inline VF vf_sub(VF a, VF b) { return _mm256_sub_ps(a, b); }
static inline VF vf_mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
static inline VF vf_div(VF a, VF b) { return _mm256_div_ps(a, b); }
static inline VF vf_max(VF a, VF b) { return _mm256_max_ps(a, b); }
static inline VF vf_min(VF a, VF b) { return _mm256_min_ps(a, b); }
static inline VF vf_fma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
static inline VF vf_round(VF x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VF vf_pow2i(VF n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline VF vf_sel_lt(VF x, VF lim, VF a, VF b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, lim, _CMP_LT_OQ)); }
static inline VF vf_sel_gt(VF x, VF lim, VF a, VF b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, lim, _CMP_GT_OQ)); }
static inline VF vf_cells(VF s, const int32_t *lo, const int32_t *hi, int32_t c) {
    __m256i cv = _mm256_set1_epi32(c);
    __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)(const void *)lo), cv),
                                  _mm256_cmpgt_epi32(cv, _mm256_loadu_si256((const __m256i *)(const void *)hi)));
    return _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(bad));
}
static inline VF vf_h(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)); }
static inline VF vf_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
static inline void vh_store(uint16_t *y, VF v) {
    _mm_storeu_si128((__m128i *)(void *)y, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

#include "backend/cpu/ops_attn_kern.h"

/* sum x^2 in double: each float widened to double (products are then exact). */
static double sumsq_avx2(const float *x, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const cpu_vec cpu_vec_avx2 = {
    .name = "avx2",
    .attn = ak_attn,
    .f32_to_f16 = ak_f32_to_f16,
    .glu = ak_glu,
    .sumsq = sumsq_avx2,
    .exp = ak_exp,
    .scale_rows = ak_scale_rows,
    .add = ak_add,
};

#endif
