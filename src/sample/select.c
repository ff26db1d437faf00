/* select.c — the sampler's scans over a whole vocabulary of logits (see sample.h).
 *
 * Why this file exists: the chain used to copy every logit into a candidate array and run a
 * quickselect over it each token. At a 32000-token vocabulary that cost ~160 us for greedy
 * and ~310 us for top-k 40 on this project's x86 machine, and ~1.35 ms at 152k tokens: as
 * long as a whole GPU decode step of a 1B model. Here both scans read the logits once, in
 * blocks of 16 that are skipped when no value beats the current threshold (a compare and OR
 * reduction the compiler turns into vector code), and touch only the few values that do.
 *
 * The order is the chain's: a larger logit first, ties to the lower id; NaN counts as -inf.
 * The results equal the first candidates of sample_top_k over the same values. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "sample/sample.h"

#define SEL_BLOCK 16
#define SEL_PRE_K 256  /* top-k up to this k first finds a floor for the values (sel_floor) */
#define SEL_PRE_SPAN 32 /* ... when the 4k spans it takes maxima of are this long or longer */

static inline float sel_num(float v) { return isnan(v) ? -INFINITY : v; }

/* The three block primitives, with SSE2 (every x86-64) or plain C. GCC 12 at -O2/-O3 leaves
 * the plain loops scalar (an argmax of 152k logits: 27-32 us against 6-9 with these). */
#if defined(__SSE2__)
/* Whether any of l[0..SEL_BLOCK) is > t (ge: >= t); NaN compares false. */
static inline bool sel_any(const float *l, float t, bool ge) {
    __m128 tv = _mm_set1_ps(t), a = _mm_loadu_ps(l), b = _mm_loadu_ps(l + 4), c = _mm_loadu_ps(l + 8),
           d = _mm_loadu_ps(l + 12);
    __m128 r = ge ? _mm_or_ps(_mm_or_ps(_mm_cmpge_ps(a, tv), _mm_cmpge_ps(b, tv)),
                              _mm_or_ps(_mm_cmpge_ps(c, tv), _mm_cmpge_ps(d, tv)))
                  : _mm_or_ps(_mm_or_ps(_mm_cmpgt_ps(a, tv), _mm_cmpgt_ps(b, tv)),
                              _mm_or_ps(_mm_cmpgt_ps(c, tv), _mm_cmpgt_ps(d, tv)));
    return _mm_movemask_ps(r) != 0;
}

/* The largest of l[a..b) (NaN skipped; -inf when there is none). */
static float sel_max(const float *l, size_t a, size_t b) {
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    size_t i = a;
    for (; i + SEL_BLOCK <= b; i += SEL_BLOCK) { /* max_ps(x, m) = x > m ? x : m */
        m0 = _mm_max_ps(_mm_loadu_ps(l + i), m0);
        m1 = _mm_max_ps(_mm_loadu_ps(l + i + 4), m1);
        m2 = _mm_max_ps(_mm_loadu_ps(l + i + 8), m2);
        m3 = _mm_max_ps(_mm_loadu_ps(l + i + 12), m3);
    }
    float v[4], m = -INFINITY;
    _mm_storeu_ps(v, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    for (int j = 0; j < 4; j++) m = v[j] > m ? v[j] : m;
    for (; i < b; i++) m = l[i] > m ? l[i] : m;
    return m;
}
#else
static inline bool sel_any(const float *l, float t, bool ge) {
    int any = 0;
    for (int j = 0; j < SEL_BLOCK; j++) any |= ge ? l[j] >= t : l[j] > t;
    return any != 0;
}

static float sel_max(const float *l, size_t a, size_t b) {
    float m = -INFINITY;
    for (size_t i = a; i < b; i++) m = l[i] > m ? l[i] : m;
    return m;
}
#endif

int32_t sample_argmax_f(const float *l, size_t n) {
    size_t best = 0, i = 1;
    float bv = sel_num(l[0]);
    /* a value equal to bv never replaces it: the lower id stays */
    for (; i + SEL_BLOCK <= n; i += SEL_BLOCK) {
        if (!sel_any(l + i, bv, false)) continue;
        for (size_t j = i; j < i + SEL_BLOCK; j++)
            if (l[j] > bv) bv = l[j], best = j;
    }
    for (; i < n; i++)
        if (l[i] > bv) bv = l[i], best = i;
    return (int32_t)best;
}

/* a ranks after b in the chain's order (no NaN reaches the heap) */
static inline bool sel_worse(const sample_cand *a, const sample_cand *b) { return sample_order(a, b) > 0; }

/* Restores the heap (root = the candidate that ranks last) below position i. */
static void sel_down(sample_cand *h, size_t k, size_t i) {
    for (;;) {
        size_t w = i, a = 2 * i + 1, b = a + 1;
        if (a < k && sel_worse(&h[a], &h[w])) w = a;
        if (b < k && sel_worse(&h[b], &h[w])) w = b;
        if (w == i) return;
        sample_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Offers l[i] to the heap: it enters when it beats the root. Ids arrive in increasing
 * order, so a value equal to the root's has the higher id and ranks after it: a strict
 * compare is exact. */
static inline void sel_offer(sample_cand *h, size_t k, const float *l, size_t i, float *t) {
    if (l[i] > *t) {
        h[0] = (sample_cand){ (int32_t)i, l[i], 0.0f };
        sel_down(h, k, 0);
        *t = h[0].logit;
    }
}

/* Leaves the k best of l[0..n) (1 <= k <= n) in the heap out[0..k), root = the k-th. */
static void sel_heap(const float *l, size_t n, size_t k, sample_cand *out) {
    for (size_t i = 0; i < k; i++) out[i] = (sample_cand){ (int32_t)i, sel_num(l[i]), 0.0f };
    for (size_t i = k / 2; i-- > 0;) sel_down(out, k, i);
    float t = out[0].logit;
    size_t i = k;
    for (; i + SEL_BLOCK <= n; i += SEL_BLOCK) {
        if (!sel_any(l + i, t, false)) continue;
        for (size_t j = i; j < i + SEL_BLOCK; j++) sel_offer(out, k, l, j, &t);
    }
    for (; i < n; i++) sel_offer(out, k, l, i, &t);
}

/* A value that at least k of l[0..n) reach: the k-th largest of the maxima of 4k equal
 * spans (each of those k spans holds a value >= it). -inf when none is known (NaN is
 * skipped by the compares). k <= SEL_PRE_K, n >= 4k. */
static float sel_floor(const float *l, size_t n, size_t k, sample_cand *tmp) {
    float mx[4 * SEL_PRE_K];
    size_t ns = 4 * k;
    for (size_t s = 0; s < ns; s++) {
        size_t a = n * s / ns, b = n * (s + 1) / ns;
        float m = sel_max(l, a, b);
        mx[s] = m;
    }
    sel_heap(mx, ns, k, tmp);
    return tmp[0].logit;
}

size_t sample_top_k_f(const float *l, size_t n, size_t k, sample_cand *out) {
    if (n == 0 || k == 0) return 0;
    if (k > n) k = n;
    float t = k <= SEL_PRE_K && n >= SEL_PRE_SPAN * 4 * k ? sel_floor(l, n, k, out) : -INFINITY;
    if (t > -INFINITY) {
        /* every value >= t, in id order (at least k of them; the k best are among them),
         * then the heap over those alone */
        size_t m = 0, i = 0;
        for (; i + SEL_BLOCK <= n; i += SEL_BLOCK) {
            if (!sel_any(l + i, t, true)) continue;
            for (size_t j = i; j < i + SEL_BLOCK; j++)
                if (l[j] >= t) out[m++] = (sample_cand){ (int32_t)j, l[j], 0.0f };
        }
        for (; i < n; i++)
            if (l[i] >= t) out[m++] = (sample_cand){ (int32_t)i, l[i], 0.0f };
        for (size_t j = k / 2; j-- > 0;) sel_down(out, k, j);
        for (size_t j = k; j < m; j++)
            if (sel_worse(&out[0], &out[j])) { /* ids increase: only a larger value beats the root */
                out[0] = out[j];
                sel_down(out, k, 0);
            }
    } else {
        sel_heap(l, n, k, out);
    }
    qsort(out, k, sizeof *out, sample_cand_cmp);
    return k;
}
