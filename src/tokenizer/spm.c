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



static int try_pair(const tok_vocab *v, const char *text, const tok_sym *sym, int32_t l, int32_t r, tok_pairq *h) {
    if (l < 0 || r < 0) return HEARTH_OK;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = tok_map_get(&v->text_to_id, text + sym[l].off, size, NULL, 0);
    if (id < 0) return HEARTH_OK;
    return tok_pairq_push(h, (tok_pair){ .left = l, .right = r, .prio = v->tok[id].score, .size = size });
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
    tok_pairq h = { 0 };
    tok_sym *sym = NULL;
    int32_t n = 0;
    if (len == 0) return HEARTH_OK;
    HB_CHECK(len < INT32_MAX, HEARTH_E_INVALID, "text too long to tokenize (%zu bytes)", len);
    sym = hb_malloc_n(len, sizeof *sym);
    HB_CHECK(sym, HEARTH_E_NOMEM, "out of memory");
    for (size_t off = 0; off < len; n++) {
        size_t cl = tok_utf8_len((uint8_t)text[off]);
        if (cl > len - off) cl = len - off;
        sym[n] = (tok_sym){ .prev = n - 1, .next = off + cl == len ? -1 : n + 1, .off = (uint32_t)off, .n = (uint32_t)cl };
        off += cl;
    }
    for (int32_t i = 1; i < n; i++)
        HB_CHECK(try_pair(v, text, sym, i - 1, i, &h) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    while (h.n) {
        tok_pair p = tok_pairq_pop(&h);
        tok_sym *l = &sym[p.left], *r = &sym[p.right];
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
