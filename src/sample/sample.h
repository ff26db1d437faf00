/* sample.h — internal pieces of the sampling chain (src/sample). Each step works on an
 * array of candidates and returns how many remain; steps after top-k keep candidates
 * sorted by logit, descending, ties by lower id. */
#ifndef HEARTH_SAMPLE_H
#define HEARTH_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct sample_cand {
    int32_t id;
    float logit;
    float p;      /* probability after the last sample_softmax */
} sample_cand;

/* The chain's order: < 0 when x ranks first (the larger logit, ties to the lower id). */
static inline int sample_order(const sample_cand *x, const sample_cand *y) {
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}
/* sample_order for qsort. */
int sample_cand_cmp(const void *a, const void *b);

/* Creates a sampler for a vocabulary of n_vocab (the public constructor wraps this). */
hearth_sampler *sample_new(int32_t n_vocab, const hearth_sampler_params *p, hb_err *err);

/* Selections straight over n >= 1 logits (select.c; NaN counts as -inf), without building
 * candidates: the id of the best (ties to the lower id), and the k best (k >= 1; more than n:
 * n) written sorted to out[0..k), returning their count; out is the caller's scratch of n
 * candidates (the selection collects its shortlist there). */
int32_t sample_argmax_f(const float *l, size_t n);
size_t sample_top_k_f(const float *l, size_t n, size_t k, sample_cand *out);
/* Keeps the k best (k <= 0 or k >= n: all), sorted descending. */
size_t sample_top_k(sample_cand *c, size_t n, int32_t k);
/* Sets p = softmax(logit / temp) over the first n candidates. */
void sample_softmax(sample_cand *c, size_t n, float temp);
size_t sample_typical(sample_cand *c, size_t n, float typical_p);
size_t sample_top_p(sample_cand *c, size_t n, float top_p);
size_t sample_min_p(sample_cand *c, size_t n, float min_p);
/* Picks by probability with u uniform in [0, 1). */
int32_t sample_draw(const sample_cand *c, size_t n, double u);

#endif
