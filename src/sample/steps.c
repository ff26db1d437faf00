/* steps.c — the individual sampling steps (see sample.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sample/sample.h"

int sample_cand_cmp(const void *a, const void *b) { return sample_order(a, b); }

static inline int better(const sample_cand *x, const sample_cand *y) { return sample_order(x, y) < 0; }

static void swap_c(sample_cand *a, sample_cand *b) {
    sample_cand t = *a;
    *a = *b;
    *b = t;
}

/* Partial selection: moves the k best to the front (unsorted) in expected O(n). */
static void select_k(sample_cand *c, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    uint64_t seed = 0x2545f4914f6cdd1dull; /* fixed pivots keep the result deterministic */
    while (lo < hi) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t pi = lo + (size_t)((seed >> 33) % (hi - lo + 1));
        swap_c(&c[pi], &c[hi]);
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (better(&c[i], &c[hi])) swap_c(&c[i], &c[store++]);
        swap_c(&c[store], &c[hi]);
        if (store == k - 1 || store == k) return;
        if (store < k) lo = store + 1;
        else hi = store - 1;
    }
}

size_t sample_top_k(sample_cand *c, size_t n, int32_t k) {
    if (n == 0) return 0;
    if (k > 0 && (size_t)k < n) {
        select_k(c, n, (size_t)k);
        n = (size_t)k;
    }
    qsort(c, n, sizeof *c, sample_cand_cmp);
    return n;
}

void sample_softmax(sample_cand *c, size_t n, float temp) {
    if (n == 0) return;
    float mx = c[0].logit;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = isinf(c[i].logit) && c[i].logit < 0 ? 0.0 : exp((double)(c[i].logit - mx) / temp);
        c[i].p = (float)e;
        sum += e;
    }
    for (size_t i = 0; i < n; i++) c[i].p = sum > 0 ? (float)(c[i].p / sum) : (i == 0 ? 1.0f : 0.0f);
}

typedef struct typ_item {
    sample_cand c;
    double score;
} typ_item;

static int typ_cmp(const void *a, const void *b) {
    const typ_item *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return sample_order(&x->c, &y->c);
}

size_t sample_typical(sample_cand *c, size_t n, float typical_p) {
    if (typical_p >= 1.0f || n <= 1) return n;
    typ_item *t = malloc(n * sizeof *t);
    if (!t) return n; /* degrade to no filtering rather than fail mid-generation */
    double ent = 0.0;
    for (size_t i = 0; i < n; i++)
        if (c[i].p > 0) ent -= c[i].p * log(c[i].p);
    for (size_t i = 0; i < n; i++) {
        t[i].c = c[i];
        t[i].score = c[i].p > 0 ? fabs(-log(c[i].p) - ent) : INFINITY;
    }
    qsort(t, n, sizeof *t, typ_cmp);
    double cum = 0.0;
    size_t keep = 0;
    while (keep < n) {
        cum += t[keep].c.p;
        keep++;
        if (cum >= typical_p) break;
    }
    for (size_t i = 0; i < keep; i++) c[i] = t[i].c;
    free(t);
    qsort(c, keep, sizeof *c, sample_cand_cmp);
    sample_softmax(c, keep, 1.0f);
    return keep;
}

size_t sample_top_p(sample_cand *c, size_t n, float top_p) {
    if (top_p >= 1.0f || n <= 1) return n;
    double cum = 0.0;
    size_t keep = 0;
    while (keep < n) {
        cum += c[keep].p;
        keep++;
        if (cum >= top_p) break;
    }
    sample_softmax(c, keep, 1.0f);
    return keep;
}

size_t sample_min_p(sample_cand *c, size_t n, float min_p) {
    if (min_p <= 0.0f || n <= 1) return n;
    float pmax = c[0].p, cut = pmax * min_p;
    size_t keep = 1;
    while (keep < n && c[keep].p >= cut) keep++;
    sample_softmax(c, keep, 1.0f);
    return keep;
}

int32_t sample_draw(const sample_cand *c, size_t n, double u) {
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    /* rounding left u >= the total: take the last candidate with nonzero probability */
    for (size_t i = n; i-- > 0;)
        if (c[i].p > 0) return c[i].id;
    return c[0].id;
}
