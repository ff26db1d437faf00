/* sampler.c — the sampling chain: logit bias, repetition penalties, then greedy or
 * top-k -> typical-p -> top-p -> min-p -> temperature -> weighted draw.
 *
 * Determinism: the draw uses a private xoshiro256** generator seeded from params.seed, and
 * every step is a pure function of the logits and the history, so the same seed and logits
 * give the same tokens on any thread count. Ties are broken by lower token id.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sample/sample.h"

struct hearth_sampler {
    hearth_sampler_params p;
    hearth_logit_bias *bias;  /* owned copy of p.logit_bias */
    int32_t n_vocab;
    uint64_t rng[4];
    /* penalty history: ring of the last `hist_cap` accepted tokens */
    hearth_token *hist;
    size_t hist_cap, hist_len, hist_head;
    uint32_t *counts;         /* [n_vocab] occurrences in the window (scratch) */
    sample_cand *cand;        /* [n_vocab] candidate scratch */
    float *lg;                /* [n_vocab] logits after bias and penalties (scratch) */
};

/* Top-k up to this k runs the heap scan of select.c; a larger k the full quickselect. */
#define SAMPLE_HEAP_K 4096

/* ---- random numbers ---------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static void rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

/* ---- params ----------------------------------------------------------------------------- */
hearth_sampler_params hearth_sampler_default_params(void) {
    hearth_sampler_params p;
    memset(&p, 0, sizeof p);
    p.seed = 0;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    p.repeat_penalty = 1.0f; /* off by default: greedy must be plain argmax */
    p.repeat_last_n = 64;
    return p;
}

static int sampler_check(const hearth_sampler_params *p, int32_t n_vocab, hb_err *err) {
    int rc = HEARTH_OK;
    HB_CHECK(n_vocab > 0, HEARTH_E_INVALID, "sampler: the model has no vocabulary");
    HB_CHECK(isfinite(p->temperature) && p->temperature <= 100.0f, HEARTH_E_INVALID,
             "sampler: temperature %g out of range (<= 100)", p->temperature);
    HB_CHECK(!isnan(p->top_p) && !isnan(p->min_p) && !isnan(p->typical_p), HEARTH_E_INVALID,
             "sampler: top_p/min_p/typical_p must be numbers");
    HB_CHECK(p->top_p >= 0.0f && p->min_p <= 1.0f && p->typical_p >= 0.0f, HEARTH_E_INVALID,
             "sampler: top_p, typical_p must be >= 0 and min_p <= 1");
    HB_CHECK(isfinite(p->repeat_penalty) && p->repeat_penalty > 0.0f, HEARTH_E_INVALID,
             "sampler: repeat_penalty %g must be > 0", p->repeat_penalty);
    HB_CHECK(isfinite(p->presence_penalty) && isfinite(p->frequency_penalty), HEARTH_E_INVALID,
             "sampler: presence/frequency penalties must be finite");
    HB_CHECK(p->repeat_last_n >= -1, HEARTH_E_INVALID, "sampler: repeat_last_n %d must be >= -1", p->repeat_last_n);
    HB_CHECK(p->n_logit_bias <= (size_t)n_vocab * 4, HEARTH_E_INVALID, "sampler: too many logit biases");
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        HB_CHECK(p->logit_bias[i].token >= 0 && p->logit_bias[i].token < n_vocab, HEARTH_E_INVALID,
                 "sampler: logit bias token %d out of range [0, %d)", p->logit_bias[i].token, n_vocab);
        HB_CHECK(!isnan(p->logit_bias[i].bias), HEARTH_E_INVALID, "sampler: logit bias is NaN");
    }
out:
    return rc;
}

hearth_sampler *sample_new(int32_t n_vocab, const hearth_sampler_params *params, hb_err *err) {
    int rc = HEARTH_OK;
    hearth_sampler *s = NULL;
    hearth_sampler_params p = params ? *params : hearth_sampler_default_params();
    if ((rc = sampler_check(&p, n_vocab, err))) goto out;
    s = calloc(1, sizeof *s);
    HB_CHECK(s, HEARTH_E_NOMEM, "sampler: out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->hist_cap = p.repeat_last_n < 0 ? 65536 : (size_t)(p.repeat_last_n > 0 ? p.repeat_last_n : 1);
    s->hist = hb_calloc_n(s->hist_cap, sizeof *s->hist);
    s->counts = hb_calloc_n((size_t)n_vocab, sizeof *s->counts);
    s->cand = hb_calloc_n((size_t)n_vocab, sizeof *s->cand);
    s->lg = hb_calloc_n((size_t)n_vocab, sizeof *s->lg);
    HB_CHECK(s->hist && s->counts && s->cand && s->lg, HEARTH_E_NOMEM, "sampler: out of memory");
    if (p.n_logit_bias) {
        s->bias = hb_calloc_n(p.n_logit_bias, sizeof *s->bias);
        HB_CHECK(s->bias, HEARTH_E_NOMEM, "sampler: out of memory");
        memcpy(s->bias, p.logit_bias, p.n_logit_bias * sizeof *s->bias);
    }
    s->p.logit_bias = s->bias;
    rng_seed(s->rng, p.seed);
out:
    if (rc) {
        hearth_sampler_free(s);
        s = NULL;
    }
    return s;
}

void hearth_sampler_free(hearth_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->hist);
    free(s->counts);
    free(s->cand);
    free(s->lg);
    free(s);
}

void hearth_sampler_clear_history(hearth_sampler *s) {
    s->hist_len = 0;
    s->hist_head = 0;
}

void hearth_sampler_reset(hearth_sampler *s) {
    hearth_sampler_clear_history(s);
    rng_seed(s->rng, s->p.seed);
}

void hearth_sampler_accept(hearth_sampler *s, hearth_token t) {
    if (t < 0 || t >= s->n_vocab) return;
    s->hist[s->hist_head] = t;
    s->hist_head = (s->hist_head + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap) s->hist_len++;
}

/* ---- the chain ---------------------------------------------------------------------------- */
static bool penalties_on(const hearth_sampler *s) {
    const hearth_sampler_params *p = &s->p;
    bool any = p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    return any && p->repeat_last_n != 0 && s->hist_len > 0;
}

/* Penalizes the logits l (indexed by token) of the tokens in the history window, once per
 * distinct token. */
static void apply_penalties(hearth_sampler *s, float *l) {
    const hearth_sampler_params *p = &s->p;
    size_t n = s->hist_len;
    for (size_t i = 0; i < n; i++) s->counts[s->hist[i]]++;
    for (size_t i = 0; i < n; i++) {
        hearth_token t = s->hist[i];
        uint32_t cnt = s->counts[t];
        if (cnt == 0) continue; /* already applied for this token */
        float v = l[t];
        if (p->repeat_penalty != 1.0f) v = v > 0 ? v / p->repeat_penalty : v * p->repeat_penalty;
        v -= (float)cnt * p->frequency_penalty + p->presence_penalty;
        l[t] = v;
        s->counts[t] = 0;
    }
}

/* The logits the chain ranks: the caller's array itself when no bias or penalty applies
 * (the scans read NaN as -inf), else s->lg with NaN as -inf, the biases and the penalties
 * applied (a bias of +inf on a logit of -inf gives NaN, read as -inf again). */
static const float *chain_logits(hearth_sampler *s, const float *logits) {
    if (s->p.n_logit_bias == 0 && !penalties_on(s)) return logits;
    float *l = s->lg;
    size_t n = (size_t)s->n_vocab;
    for (size_t i = 0; i < n; i++) l[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    for (size_t i = 0; i < s->p.n_logit_bias; i++) l[s->bias[i].token] += s->bias[i].bias;
    if (penalties_on(s)) apply_penalties(s, l);
    return l;
}

/* The chain can skip the penalized copy of the logits (chain_logits) when it keeps only the
 * best k of them, no bias applies and every penalty can only lower a logit (repeat_penalty
 * >= 1, presence and frequency penalties >= 0: v / r for v > 0, v * r for v <= 0 and the
 * subtraction never raise v). Then the k best penalized logits are among the k + P best raw
 * ones, P the distinct tokens of the window: a token with k + P others ranked above it keeps
 * at least k of them above it, because only P logits move and they only move down. So the
 * chain selects k + P straight from the caller's logits, penalizes those it must, re-sorts
 * them and keeps k: the same candidates, values and order as selecting from the copy, for
 * ~a quarter of the time (no pass that writes the whole vocabulary). */
#define SAMPLE_FAST_PEN_K 256 /* k + P up to this: select.c's floor-first scan */

static bool penalties_lower_only(const hearth_sampler *s) {
    const hearth_sampler_params *p = &s->p;
    return s->p.n_logit_bias == 0 && p->repeat_penalty >= 1.0f && p->presence_penalty >= 0.0f &&
           p->frequency_penalty >= 0.0f;
}

/* The window's counts into s->counts; returns how many distinct tokens it holds. */
static size_t window_counts(hearth_sampler *s) {
    size_t distinct = 0;
    for (size_t i = 0; i < s->hist_len; i++) distinct += s->counts[s->hist[i]]++ == 0;
    return distinct;
}

/* The k best penalized logits, sorted, into s->cand without a copy of the vocabulary (the
 * argument above), or 0 when this way does not apply (k + P too large): then nothing is
 * left in s->counts. */
static size_t penalized_top_k(hearth_sampler *s, const float *logits, size_t k) {
    const hearth_sampler_params *p = &s->p;
    size_t n = (size_t)s->n_vocab, distinct = window_counts(s), m = 0;
    if (k + distinct <= SAMPLE_FAST_PEN_K && k + distinct < n) {
        sample_cand *c = s->cand;
        m = sample_top_k_f(logits, n, k + distinct, c);
        for (size_t i = 0; i < m; i++) {
            float v = isnan(c[i].logit) ? -INFINITY : c[i].logit;
            uint32_t cnt = s->counts[c[i].id];
            if (cnt) { /* apply_penalties' arithmetic */
                if (p->repeat_penalty != 1.0f) v = v > 0 ? v / p->repeat_penalty : v * p->repeat_penalty;
                v -= (float)cnt * p->frequency_penalty + p->presence_penalty;
            }
            c[i].logit = v;
        }
        qsort(c, m, sizeof *c, sample_cand_cmp);
        m = m < k ? m : k;
    }
    for (size_t i = 0; i < s->hist_len; i++) s->counts[s->hist[i]] = 0;
    return m;
}

/* The k best candidates (all of them, sorted, when top-k is off) into s->cand. */
static size_t chain_top_k(hearth_sampler *s, const float *l) {
    size_t n = (size_t)s->n_vocab;
    int32_t k = s->p.top_k;
    if (k > 0 && (size_t)k < n && k <= SAMPLE_HEAP_K) return sample_top_k_f(l, n, (size_t)k, s->cand);
    sample_cand *c = s->cand;
    for (size_t i = 0; i < n; i++) c[i] = (sample_cand){ (int32_t)i, isnan(l[i]) ? -INFINITY : l[i], 0.0f };
    return sample_top_k(c, n, k);
}

hearth_token hearth_sampler_sample(hearth_sampler *s, const float *logits) {
    /* penalties only lowering logits, and a chain that keeps the best k of them: no copy */
    bool greedy = s->p.temperature <= 0.0f;
    size_t k = greedy ? 1 : (s->p.top_k > 0 ? (size_t)s->p.top_k : 0), n = 0;
    if (k && k < (size_t)s->n_vocab && penalties_on(s) && penalties_lower_only(s)) n = penalized_top_k(s, logits, k);
    const float *l = n ? logits : chain_logits(s, logits);
    hearth_token out;
    if (greedy) {
        out = n ? s->cand[0].id : sample_argmax_f(l, (size_t)s->n_vocab);
    } else {
        sample_cand *c = s->cand;
        if (!n) n = chain_top_k(s, l);
        sample_softmax(c, n, 1.0f);
        n = sample_typical(c, n, s->p.typical_p);
        n = sample_top_p(c, n, s->p.top_p);
        n = sample_min_p(c, n, s->p.min_p);
        sample_softmax(c, n, s->p.temperature);
        out = sample_draw(c, n, rng_uniform(s->rng));
    }
    hearth_sampler_accept(s, out);
    return out;
}
