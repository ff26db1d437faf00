/* decode.c — token pieces and detokenization with llama.cpp's post-processing.
 *
 * A token's piece:
 *  - control / unknown tokens: their text with UNPARSE_SPECIAL, else nothing;
 *  - user-defined tokens: their text, always;
 *  - normal tokens: SentencePiece/WordPiece text with U+2581 -> ' '; byte-level BPE text
 *    mapped back through the byte alphabet (a character outside it is rendered as
 *    "[UNK_BYTE_0x<hex><token text>]", as llama.cpp does);
 *  - byte tokens <0xNN>: that byte.
 * Detokenizing concatenates pieces, dropping one leading space of the first piece when the
 * vocab adds a space prefix (SentencePiece), and then applies the "clean_spaces" rules of
 * vocabs that enable them (" ." -> ".", " ' " -> "'", " 's" -> "'s", ...).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct dbuf {
    char *p;
    size_t n, cap;
} dbuf;

static int dbuf_add(dbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return HEARTH_E_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return HEARTH_OK;
}

static int normal_spm(const char *t, size_t n, dbuf *b) {
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
            if (dbuf_add(b, " ", 1)) return HEARTH_E_NOMEM;
            i += 3;
        } else {
            size_t j = i + 1;
            while (j < n && !(n - j >= 3 && memcmp(t + j, "\xE2\x96\x81", 3) == 0)) j++;
            if (dbuf_add(b, t + i, j - i)) return HEARTH_E_NOMEM;
            i = j;
        }
    }
    return HEARTH_OK;
}

static int normal_bpe(const char *t, size_t n, dbuf *b) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t cl = tok_utf8_decode(t + i, n - i, &cp);
        int byte = tok_cp_to_byte(cp);
        if (byte >= 0) {
            char c = (char)byte;
            if (dbuf_add(b, &c, 1)) return HEARTH_E_NOMEM;
        } else {
            char hex[16];
            if (dbuf_add(b, "[UNK_BYTE_0x", 12)) return HEARTH_E_NOMEM;
            for (size_t k = 0; k < cl; k++) {
                snprintf(hex, sizeof hex, "%02x", (uint8_t)t[i + k]);
                if (dbuf_add(b, hex, 2)) return HEARTH_E_NOMEM;
            }
            if (dbuf_add(b, t, n) || dbuf_add(b, "]", 1)) return HEARTH_E_NOMEM;
        }
        i += cl;
    }
    return HEARTH_OK;
}

/* "<0xNN>" -> NN (lenient hex parse after the "<0x", as llama.cpp's strtol). */
static char byte_of(const char *t, size_t n) {
    unsigned v = 0;
    for (size_t i = 3; i < n; i++) {
        char c = t[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (unsigned)d;
    }
    return (char)v;
}

/* Appends the piece of id (checked by the caller) to b; strips one leading space if lstrip. */
static int piece_append(const tok_vocab *v, int32_t id, bool unparse, bool lstrip, dbuf *b) {
    uint16_t a = v->tok[id].attr;
    const char *t = tok_str(v, id);
    size_t n = v->tok[id].len, start = b->n;
    int rc = HEARTH_OK;
    if (!unparse && (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return HEARTH_OK;
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) rc = dbuf_add(b, t, n);
    else if (a & TOK_ATTR_NORMAL) rc = v->kind == TOK_BPE ? normal_bpe(t, n, b) : normal_spm(t, n, b);
    else if ((a & TOK_ATTR_BYTE) && v->kind != TOK_BPE) {
        char c = byte_of(t, n);
        rc = dbuf_add(b, &c, 1);
    }
    if (!rc && lstrip && b->n > start && b->p[start] == ' ') {
        memmove(b->p + start, b->p + start + 1, b->n - start - 1);
        b->n--;
        b->p[b->n] = '\0';
    }
    return rc;
}

int tok_piece(const tok_vocab *v, int32_t id, int flags, char *buf, size_t cap, size_t *n, hb_err *err) {
    int rc = HEARTH_OK;
    dbuf b = { 0 };
    *n = 0;
    HB_CHECK(id >= 0 && id < v->n, HEARTH_E_INVALID, "token id %d is out of range (vocab has %d tokens)", id, v->n);
    HB_CHECK(piece_append(v, id, (flags & HEARTH_DETOK_UNPARSE_SPECIAL) != 0, false, &b) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    *n = b.n;
    if (buf && cap) memcpy(buf, b.p ? b.p : "", b.n < cap ? b.n : cap);
out:
    free(b.p);
    return rc;
}

/* llama.cpp's three in-place clean-up passes, kept byte-for-byte in their original form
 * (including how pass 2 blanks the space it skips) so results match exactly. */
static size_t clean_spaces(char *t, size_t total) {
    size_t n1 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n1; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        t[total++] = x;
    }
    size_t n2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n2; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < n2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
            total--;
            t[++i] = '\0';
        }
        t[total++] = x;
    }
    size_t n3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n3; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') total--;
            else if (i + 2 < n3) {
                char x2 = t[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        t[total++] = x;
    }
    return total;
}

int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, int flags, char **out, size_t *len, hb_err *err) {
    int rc = HEARTH_OK;
    dbuf b = { 0 };
    bool remove_space = v->add_space_prefix;
    bool unparse = (flags & HEARTH_DETOK_UNPARSE_SPECIAL) != 0;
    *out = NULL;
    *len = 0;
    HB_CHECK(ids || n == 0, HEARTH_E_INVALID, "no token ids given");
    for (size_t i = 0; i < n; i++)
        HB_CHECK(ids[i] >= 0 && ids[i] < v->n, HEARTH_E_INVALID, "token id %d (position %zu) is out of range (vocab has %d tokens)",
                 ids[i], i, v->n);
    if ((flags & HEARTH_DETOK_REMOVE_SPECIAL) && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if ((flags & HEARTH_DETOK_REMOVE_SPECIAL) && v->add_eos && n > 0 && ids[n - 1] == v->eos) n--;
    HB_CHECK(dbuf_add(&b, "", 0) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        HB_CHECK(piece_append(v, ids[i], unparse, remove_space, &b) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        remove_space = false;
    }
    if (v->clean_spaces) {
        b.n = clean_spaces(b.p, b.n);
        b.p[b.n] = '\0';
    }
    *out = b.p;
    *len = b.n;
    b.p = NULL;
out:
    free(b.p);
    return rc;
}
