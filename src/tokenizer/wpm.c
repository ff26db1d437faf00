/* wpm.c — WordPiece (`bert` vocabs), as llama.cpp applies it to BERT-style GGUF vocabs.
 *
 * Pre-tokenization (BERT's "basic tokenizer"):
 *  - each code point is replaced by the first code point of its canonical decomposition
 *    (NFD), which drops accents ("é" -> "e", Hangul syllables -> leading jamo), then
 *    lower-cased (simple Unicode mapping);
 *  - White_Space separates words; NUL, U+FFFD and control/format/private-use characters
 *    (general category C*, except unassigned) are dropped;
 *  - punctuation (P*), ASCII symbols and CJK ideographs become one-character words.
 * Each word gets the U+2581 word-start marker (the GGUF converter writes word-initial
 * pieces with it and "##" continuations without), then is cut greedily into the longest
 * vocab pieces from the left; a word with any uncovered part becomes the unknown token.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

static uint32_t nfd_first(uint32_t cp) {
    utf8proc_int32_t buf[8];
    int bc = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, 8, UTF8PROC_DECOMPOSE, &bc);
    return n >= 1 ? (uint32_t)buf[0] : cp;
}

/* CJK Unified Ideographs blocks as BERT's tokenizer lists them (including its 0x2B920
 * start for the Extension E/F range). */
static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

typedef enum { CH_DROP, CH_SPACE, CH_ALONE, CH_WORD } ch_class;

static ch_class classify(uint32_t cp) {
    if (tok_cp_is_space(cp)) return CH_SPACE;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    bool control = cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                   cat == UTF8PROC_CATEGORY_CO;
    if (cp == 0 || cp == 0xFFFD || control) return CH_DROP;
    bool punct = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
    bool symbol = cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
    if (punct || (cp < 0x7F && symbol) || is_cjk(cp)) return CH_ALONE;
    return CH_WORD;
}

/* Greedy longest-match of one word (already prefixed with U+2581). */
static int wpm_word(const tok_vocab *v, const char *w, size_t n, tok_ids *out) {
    size_t mark = out->n;
    for (size_t i = 0; i < n;) {
        size_t hi = i + v->max_token_len + 1 < n ? i + v->max_token_len + 1 : n;
        int32_t id = -1;
        size_t j = hi;
        for (; j > i; j--)
            if ((id = tok_map_get(&v->text_to_id, w + i, j - i, NULL, 0)) >= 0) break;
        if (id < 0) {
            out->n = mark;  /* discard the partial word */
            break;
        }
        if (tok_ids_push(out, id)) return HEARTH_E_NOMEM;
        i = j;
    }
    if (out->n == mark && v->unk >= 0 && tok_ids_push(out, v->unk)) return HEARTH_E_NOMEM;
    return HEARTH_OK;
}

int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err) {
    int rc = HEARTH_OK;
    /* Worst case per input byte: 4 output bytes (lower-casing can grow a character). */
    char *w = hb_malloc_n(len + 1, 4);
    size_t wl = 3;
    HB_CHECK(w, HEARTH_E_NOMEM, "out of memory");
    memcpy(w, "\xE2\x96\x81", 3);
    for (size_t off = 0; off <= len;) {
        uint32_t cp = 0;
        ch_class cl = CH_SPACE;  /* the end of text finishes the last word */
        if (off < len) {
            off += tok_utf8_decode(text + off, len - off, &cp);
            cp = nfd_first(cp);
            cl = classify(cp);
        } else off++;
        if (cl == CH_DROP) continue;
        if (cl == CH_WORD) {
            wl += tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), w + wl);
            continue;
        }
        if (wl > 3) HB_CHECK(wpm_word(v, w, wl, out) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        wl = 3;
        if (cl == CH_ALONE) {
            wl += tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), w + wl);
            HB_CHECK(wpm_word(v, w, wl, out) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
            wl = 3;
        }
    }
out:
    free(w);
    return rc;
}
