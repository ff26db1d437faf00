/* pairq.c — the merge queue of the SPM and BPE tokenizers (see tok_internal.h). */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

static bool pair_before(const tok_pair *a, const tok_pair *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

int tok_pairq_push(tok_pairq *h, tok_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_pair *v = realloc(h->v, cap * sizeof *v);
        if (!v) return HEARTH_E_NOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = p;
    return HEARTH_OK;
}

tok_pair tok_pairq_pop(tok_pairq *h) {
    tok_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}
