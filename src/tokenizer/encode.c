/* encode.c — tok_encode: special-token partitioning, then the family tokenizer per text
 * fragment, plus BOS/EOS (CLS/SEP).
 *
 * Partitioning follows llama.cpp exactly, because its quirks show in the ids:
 *  - candidate tokens are the control, user-defined and unknown-type tokens, longest text
 *    first; without PARSE_SPECIAL only the user-defined ones (they are always split out);
 *  - for each candidate in that order, every still-unsplit text fragment is searched left
 *    to right and cut around each occurrence;
 *  - a token with RSTRIP (LSTRIP) swallows ASCII whitespace after (before) it.
 * SentencePiece vocabs with add_space_prefix put a space before the first text fragment
 * and before every text fragment that follows a special token.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct frag {
    int32_t id;        /* >= 0: a special token; -1: text[off, off+len) */
    size_t off, len;
} frag;

typedef struct frag_list {
    frag *v;
    size_t n, cap;
} frag_list;

static int frag_push(frag_list *l, frag f) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        frag *p = realloc(l->v, cap * sizeof *p);
        if (!p) return HEARTH_E_NOMEM;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = f;
    return HEARTH_OK;
}

static bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Cuts one text fragment around every occurrence of special token id, into out. */
static int cut_fragment(const tok_vocab *v, const char *text, frag f, int32_t id, frag_list *out) {
    const char *tt = tok_str(v, id);
    size_t tl = v->tok[id].len;
    uint16_t attr = v->tok[id].attr;
    size_t off = f.off, len = f.len;
    for (;;) {
        const char *m = len >= tl ? memmem(text + off, len, tt, tl) : NULL;
        if (!m) break;
        size_t mo = (size_t)(m - text);
        size_t left = mo - off;
        if (attr & TOK_ATTR_LSTRIP)
            while (left > 0 && is_ascii_space(text[off + left - 1])) left--;
        if (left > 0 && frag_push(out, (frag){ -1, off, left })) return HEARTH_E_NOMEM;
        if (frag_push(out, (frag){ id, 0, 0 })) return HEARTH_E_NOMEM;
        size_t roff = mo + tl, rlen = off + len - roff;
        if (attr & TOK_ATTR_RSTRIP)
            while (rlen > 0 && is_ascii_space(text[roff])) { roff++; rlen--; }
        off = roff;
        len = rlen;
        if (len == 0) return HEARTH_OK;
    }
    return len ? frag_push(out, (frag){ -1, off, len }) : HEARTH_OK;
}

/* Quick rejection: a token can only occur if every adjacent byte pair of its text occurs
 * in the input (pairs: a 64K-bit set built in one pass). Saves thousands of full-text
 * searches for vocabs with many special tokens (Gemma: ~6400). */
static bool may_occur(const uint64_t *pairs, const char *t, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned p = ((unsigned)(uint8_t)t[i] << 8) | (uint8_t)t[i + 1];
        if (!(pairs[p >> 6] & (1ull << (p & 63)))) return false;
    }
    return true;
}

static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special, frag_list *out) {
    frag_list a = { 0 }, b = { 0 };
    int rc = HEARTH_OK;
    uint64_t *pairs = NULL;
    if (len == 0) return HEARTH_OK;
    if ((rc = frag_push(&a, (frag){ -1, 0, len }))) goto out;
    pairs = calloc(65536 / 64, sizeof *pairs);
    if (!pairs) { rc = HEARTH_E_NOMEM; goto out; }
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned p = ((unsigned)(uint8_t)text[i] << 8) | (uint8_t)text[i + 1];
        pairs[p >> 6] |= 1ull << (p & 63);
    }
    for (size_t s = 0; s < v->n_special; s++) {
        int32_t id = v->special[s];
        if (!parse_special && (v->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        if (v->tok[id].len > len || !may_occur(pairs, tok_str(v, id), v->tok[id].len)) continue;
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (a.v[i].id >= 0) rc = frag_push(&b, a.v[i]);
            else rc = cut_fragment(v, text, a.v[i], id, &b);
            if (rc) goto out;
        }
        frag_list t = a;
        a = b;
        b = t;
    }
    *out = a;
    a.v = NULL;
out:
    free(pairs);
    free(a.v);
    free(b.v);
    return rc;
}

/* SentencePiece text prep: optional leading space, every ' ' -> U+2581. */
static int spm_fragment(const tok_vocab *v, const char *s, size_t n, bool prefix, tok_ids *out, hb_err *err) {
    int rc = HEARTH_OK;
    size_t spaces = prefix ? 1 : 0, k = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    char *buf = malloc(n + spaces * 2 + 1);
    HB_CHECK(buf, HEARTH_E_NOMEM, "out of memory");
    if (prefix) { memcpy(buf, "\xE2\x96\x81", 3); k = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(buf + k, "\xE2\x96\x81", 3); k += 3; }
        else buf[k++] = s[i];
    }
    rc = tok_spm_encode(v, buf, k, out, err);
out:
    free(buf);
    return rc;
}

static int push_special(tok_ids *out, int32_t id, hb_err *err) {
    if (id < 0) return HEARTH_OK;  /* the vocab has no such token */
    return tok_ids_push(out, id) ? hb_fail(err, HEARTH_E_NOMEM, "out of memory") : HEARTH_OK;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, int flags, int32_t **out, size_t *n, hb_err *err) {
    int rc = HEARTH_OK;
    frag_list fr = { 0 };
    tok_ids ids = { 0 };
    size_t bad = 0;
    bool add = (flags & HEARTH_TOK_ADD_SPECIAL) != 0;
    *out = NULL;
    *n = 0;
    HB_CHECK(text || len == 0, HEARTH_E_INVALID, "no text given");
    HB_CHECK(tok_utf8_valid(text, len, &bad), HEARTH_E_INVALID, "text is not valid UTF-8 (bad byte 0x%02X at offset %zu)",
             (uint8_t)text[bad], bad);
    if ((rc = partition(v, text, len, (flags & HEARTH_TOK_PARSE_SPECIAL) != 0, &fr))) {
        rc = hb_fail(err, rc, "out of memory");
        goto out;
    }
    if (add && v->add_bos && (rc = push_special(&ids, v->kind == TOK_WPM ? v->cls : v->bos, err))) goto out;
    bool prev_special = true;
    for (size_t i = 0; i < fr.n; i++) {
        const frag *f = &fr.v[i];
        if (f->id >= 0) {
            if ((rc = push_special(&ids, f->id, err))) goto out;
            prev_special = true;
            continue;
        }
        if (v->kind == TOK_SPM) rc = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &ids, err);
        else if (v->kind == TOK_BPE) rc = tok_bpe_encode(v, text + f->off, f->len, &ids, err);
        else rc = tok_wpm_encode(v, text + f->off, f->len, &ids, err);
        if (rc) goto out;
        prev_special = false;
    }
    if (add && v->kind == TOK_WPM && (rc = push_special(&ids, v->sep, err))) goto out;
    if (add && v->add_eos && (rc = push_special(&ids, v->eos, err))) goto out;
    if (!ids.v) {  /* never hand back NULL on success, even for zero ids */
        HB_CHECK(tok_ids_push(&ids, 0) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        ids.n = 0;
    }
    *out = ids.v;
    *n = ids.n;
    ids.v = NULL;
out:
    free(fr.v);
    free(ids.v);
    return rc;
}
