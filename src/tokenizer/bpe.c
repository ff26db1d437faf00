/* bpe.c — byte-level BPE (`gpt2` vocabs).
 *
 * A text fragment is split into words by the vocab's pre-tokenizer (pretok.c). Each word's
 * bytes are rewritten in the GPT-2 byte alphabet (every byte becomes one printable
 * character), then merged: adjacent symbol pairs listed in tokenizer.ggml.merges go into
 * a min-heap keyed by merge rank (ties: leftmost first), and the best pair is merged until
 * none is left. Vocabs with ignore_merges (Llama 3) take a word that is already a whole
 * token as is. A final symbol that is not a token falls back to single-byte tokens where
 * they exist (llama.cpp's behaviour; for byte-level vocabs this drops the symbol).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"



/* Scratch space reused across the words of one fragment. */
typedef struct bpe_work {
    tok_sym *sym;
    size_t sym_cap;
    tok_pairq heap;
} bpe_work;

static int try_pair(const tok_vocab *v, const char *w, const tok_sym *sym, int32_t l, int32_t r, tok_pairq *h) {
    if (l < 0 || r < 0) return HEARTH_OK;
    int32_t rank = tok_map_get(&v->merges, w + sym[l].off, sym[l].n, w + sym[r].off, sym[r].n);
    if (rank < 0) return HEARTH_OK;
    /* lower rank merges first; ranks are < 2^24 (checked at load) so the float is exact */
    return tok_pairq_push(h, (tok_pair){ .left = l, .right = r, .prio = -(float)rank, .size = sym[l].n + sym[r].n });
}

static int emit(const tok_vocab *v, const char *s, size_t n, tok_ids *out) {
    int32_t id = tok_map_get(&v->text_to_id, s, n, NULL, 0);
    if (id >= 0) return tok_ids_push(out, id);
    for (size_t i = 0; i < n; i++) {
        int32_t b = tok_map_get(&v->text_to_id, s + i, 1, NULL, 0);
        if (b >= 0 && tok_ids_push(out, b)) return HEARTH_E_NOMEM;
    }
    return HEARTH_OK;
}

/* Merges one byte-alphabet word w[0..n) and appends its tokens. */
static int bpe_word(const tok_vocab *v, const char *w, size_t n, bpe_work *wk, tok_ids *out) {
    if (v->ignore_merges && tok_map_get(&v->text_to_id, w, n, NULL, 0) >= 0) return emit(v, w, n, out);
    if (n > wk->sym_cap) {
        tok_sym *s = realloc(wk->sym, n * sizeof *s);
        if (!s) return HEARTH_E_NOMEM;
        wk->sym = s;
        wk->sym_cap = n;
    }
    tok_sym *sym = wk->sym;
    int32_t ns = 0;
    for (size_t off = 0; off < n; ns++) {
        size_t cl = tok_utf8_len((uint8_t)w[off]);
        if (cl > n - off) cl = n - off;
        sym[ns] = (tok_sym){ .prev = ns - 1, .next = off + cl == n ? -1 : ns + 1, .off = (uint32_t)off, .n = (uint32_t)cl };
        off += cl;
    }
    wk->heap.n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (try_pair(v, w, sym, i - 1, i, &wk->heap)) return HEARTH_E_NOMEM;
    while (wk->heap.n) {
        tok_pair p = tok_pairq_pop(&wk->heap);
        tok_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue;  /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        if (try_pair(v, w, sym, l->prev, p.left, &wk->heap) || try_pair(v, w, sym, p.left, l->next, &wk->heap))
            return HEARTH_E_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = sym[i].next)
        if (emit(v, w + sym[i].off, sym[i].n, out)) return HEARTH_E_NOMEM;
    return HEARTH_OK;
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err) {
    int rc = HEARTH_OK;
    size_t *ends = NULL, n_words = 0, start = 0;
    char *w = NULL;
    bpe_work wk = { 0 };
    if (len == 0) return HEARTH_OK;
    if ((rc = tok_pretok_split(v->pretok, text, len, &ends, &n_words, err))) goto out;
    w = hb_malloc_n(len, 2);  /* each byte becomes a 1- or 2-byte character */
    HB_CHECK(w, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n_words; i++) {
        size_t wl = 0;
        for (size_t k = start; k < ends[i]; k++) wl += tok_utf8_encode(tok_byte_to_cp((uint8_t)text[k]), w + wl);
        start = ends[i];
        if (wl == 0) continue;
        HB_CHECK(bpe_word(v, w, wl, &wk, out) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    }
out:
    free(ends);
    free(w);
    free(wk.sym);
    free(wk.heap.v);
    return rc;
}
