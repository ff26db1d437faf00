/* spm.c — SentencePiece-style (BPE over scores) tokenizer for `llama` vocabs.
 *
 * The text (spaces already escaped to U+2581 by the caller) starts as one symbol per UTF-8
 * character. Every adjacent pair whose concatenation is a token goes into a max-heap keyed
 * by that token's score (ties: leftmost pair first). Popping the best pair merges it if
 * both sides are still as they were when it was queued; the new neighbours are queued.
 * Each final symbol is a token, or (a character the vocab lacks) its bytes as <0xNN>
 * byte tokens, or the unknown token when the vocab has no byte tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct spm_sym {
    int32_t prev, next;   /* neighbours in the live chain, -1 at the ends */
    uint32_t off, n;      /* bytes of text; n == 0 once merged into its left neighbour */
} spm_sym;

typedef struct spm_pair {
    int32_t left, right;
    float score;
    uint32_t size;        /* bytes of the merged text when queued */
} spm_pair;

typedef struct spm_heap {
    spm_pair *v;
    size_t n, cap;
} spm_heap;

/* a goes before b: higher score, then smaller left index. */
static bool pair_before(const spm_pair *a, const spm_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(spm_heap *h, spm_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        spm_pair *v = realloc(h->v, cap * sizeof *v);
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

static spm_pair heap_pop(spm_heap *h) {
    spm_pair top = h->v[0], last = h->v[--h->n];
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

static int try_pair(const tok_vocab *v, const char *text, const spm_sym *sym, int32_t l, int32_t r, spm_heap *h) {
    if (l < 0 || r < 0) return HEARTH_OK;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = tok_map_get(&v->text_to_id, text + sym[l].off, size, NULL, 0);
    if (id < 0) return HEARTH_OK;
    return heap_push(h, (spm_pair){ .left = l, .right = r, .score = v->tok[id].score, .size = size });
}

/* Emits the tokens for one final symbol. */
static int emit_symbol(const tok_vocab *v, const char *s, size_t n, tok_ids *out, hb_err *err) {
    int rc = HEARTH_OK;
    int32_t id = tok_map_get(&v->text_to_id, s, n, NULL, 0);
    if (id >= 0) return tok_ids_push(out, id) ? hb_fail(err, HEARTH_E_NOMEM, "out of memory") : HEARTH_OK;
    for (size_t i = 0; i < n; i++) {
        int32_t b = v->byte_tok[(uint8_t)s[i]];
        if (b < 0) b = v->unk;
        HB_CHECK(b >= 0, HEARTH_E_UNSUPPORTED, "vocab has no token for byte 0x%02X and no unknown token", (uint8_t)s[i]);
        HB_CHECK(tok_ids_push(out, b) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    }
out:
    return rc;
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err) {
    int rc = HEARTH_OK;
    spm_heap h = { 0 };
    spm_sym *sym = NULL;
    int32_t n = 0;
    if (len == 0) return HEARTH_OK;
    HB_CHECK(len < INT32_MAX, HEARTH_E_INVALID, "text too long to tokenize (%zu bytes)", len);
    sym = hb_malloc_n(len, sizeof *sym);
    HB_CHECK(sym, HEARTH_E_NOMEM, "out of memory");
    for (size_t off = 0; off < len; n++) {
        size_t cl = tok_utf8_len((uint8_t)text[off]);
        if (cl > len - off) cl = len - off;
        sym[n] = (spm_sym){ .prev = n - 1, .next = off + cl == len ? -1 : n + 1, .off = (uint32_t)off, .n = (uint32_t)cl };
        off += cl;
    }
    for (int32_t i = 1; i < n; i++)
        HB_CHECK(try_pair(v, text, sym, i - 1, i, &h) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    while (h.n) {
        spm_pair p = heap_pop(&h);
        spm_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue;  /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        HB_CHECK(try_pair(v, text, sym, l->prev, p.left, &h) == HEARTH_OK &&
                 try_pair(v, text, sym, p.left, l->next, &h) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i != -1; i = sym[i].next)
        if ((rc = emit_symbol(v, text + sym[i].off, sym[i].n, out, err))) goto out;
out:
    free(h.v);
    free(sym);
    return rc;
}
