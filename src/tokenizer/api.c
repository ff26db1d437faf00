/* api.c — the public tokenizer API of include/hearth.h over a model's tok_vocab:
 * hearth_tokenize, hearth_detokenize, hearth_token_piece and the streaming detokenizer
 * (hearth_model_n_vocab lives in src/arch/registry.c).
 *
 * Streaming detokenizer: each pushed token's piece is appended to a pending byte buffer;
 * only complete, valid UTF-8 characters leave it (bytes that can never form a valid
 * character are replaced by U+FFFD at once, a valid but incomplete tail is held). Like
 * hearth_detokenize it drops one leading space of the first piece for vocabs with
 * add_space_prefix (SentencePiece), and with HEARTH_DETOK_REMOVE_SPECIAL it drops a first
 * BOS (then keeping the space) and every EOS when the vocab adds them. It does not apply
 * the clean_spaces rules (they need to see the following text), so the concatenated
 * stream equals hearth_detokenize's output exactly for vocabs without clean_spaces
 * (SentencePiece; BPE vocabs whose pre-tokenizer turns it off, e.g. qwen2, deepseek) and
 * differs only around " ." / " '" style sequences otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tok_internal.h"

static hearth_status no_vocab(const hearth_model *m, char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "%s: the model has no tokenizer", m ? m->path : "(null model)");
    return HEARTH_E_UNSUPPORTED;
}

static hearth_status finish(int rc, const hb_err *e, char *err, size_t errlen) {
    if (rc && err && errlen) snprintf(err, errlen, "%s", e->msg);
    return (hearth_status)rc;
}

hearth_status hearth_tokenize(const hearth_model *m, const char *text, size_t len, int flags, hearth_token **out,
                              size_t *n_out, char *err, size_t errlen) {
    hb_err e;
    hb_err_clear(&e);
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (!out || !n_out) {
        hb_fail(&e, HEARTH_E_INVALID, "hearth_tokenize: output pointers must not be NULL");
        return finish(e.code, &e, err, errlen);
    }
    if (!m || !m->vocab) return no_vocab(m, err, errlen);
    return finish(tok_encode(m->vocab, text, len, flags, out, n_out, &e), &e, err, errlen);
}

hearth_status hearth_detokenize(const hearth_model *m, const hearth_token *ids, size_t n, int flags, char **out,
                                size_t *len, char *err, size_t errlen) {
    hb_err e;
    size_t dummy;
    hb_err_clear(&e);
    if (!len) len = &dummy;
    if (out) *out = NULL;
    *len = 0;
    if (!out) {
        hb_fail(&e, HEARTH_E_INVALID, "hearth_detokenize: output pointer must not be NULL");
        return finish(e.code, &e, err, errlen);
    }
    if (!m || !m->vocab) return no_vocab(m, err, errlen);
    return finish(tok_decode(m->vocab, ids, n, flags, out, len, &e), &e, err, errlen);
}

hearth_status hearth_token_piece(const hearth_model *m, hearth_token t, int flags, char *buf, size_t cap, size_t *n_out) {
    hb_err e;
    size_t dummy;
    hb_err_clear(&e);
    if (!n_out) n_out = &dummy;
    *n_out = 0;
    if (!m || !m->vocab) return HEARTH_E_UNSUPPORTED;
    return (hearth_status)tok_piece(m->vocab, t, flags, buf, cap, n_out, &e);
}

/* ---- streaming ------------------------------------------------------------------------- */
struct hearth_detok_stream {
    const tok_vocab *v;
    int flags;
    bool started;        /* a token has been pushed (leading-space rule done) */
    char *pend;          /* bytes not yet emitted */
    size_t n_pend, cap_pend;
    char *out;           /* bytes returned by the last call (borrowed by the caller) */
    size_t cap_out;
};

hearth_detok_stream *hearth_detok_stream_new(const hearth_model *m, int flags) {
    if (!m || !m->vocab) return NULL;
    hearth_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->v = m->vocab;
    s->flags = flags;
    return s;
}

int hearth_detok_flags_after(const hearth_model *m, const hearth_token *prompt, size_t n) {
    hearth_token bos = m && m->vocab ? m->vocab->bos : -1;
    return n > 1 || (n == 1 && (prompt[0] != bos || bos < 0)) ? HEARTH_DETOK_CONTINUE : 0;
}

void hearth_detok_stream_free(hearth_detok_stream *s) {
    if (!s) return;
    free(s->pend);
    free(s->out);
    free(s);
}

static int grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return HEARTH_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return HEARTH_E_NOMEM;
    *p = q;
    *cap = c;
    return HEARTH_OK;
}

/* Classifies the bytes at s[0..n): >0 = length of a complete valid character; 0 = a valid
 * but incomplete prefix; -1 = not valid UTF-8 at s[0]. */
static int utf8_prefix(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return -1;
    for (size_t k = 1; k < need; k++) {
        if (k >= n) return 0;
        uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) return -1;
    }
    return (int)need;
}

/* Moves every complete character (and U+FFFD for invalid bytes) from pend to out; with
 * final, an incomplete tail also becomes U+FFFD. */
static int drain(hearth_detok_stream *s, bool final, size_t *n_out) {
    size_t i = 0, o = 0;
    if (grow(&s->out, &s->cap_out, s->n_pend * 3 + 4)) return HEARTH_E_NOMEM;
    while (i < s->n_pend) {
        int k = utf8_prefix((const uint8_t *)s->pend + i, s->n_pend - i);
        if (k == 0 && !final) break;
        if (k <= 0) {
            memcpy(s->out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
            if (k == 0) {  /* skip the rest of the incomplete sequence too */
                while (i < s->n_pend && ((uint8_t)s->pend[i] & 0xC0) == 0x80) i++;
            }
            continue;
        }
        memcpy(s->out + o, s->pend + i, (size_t)k);
        o += (size_t)k;
        i += (size_t)k;
    }
    if (i < s->n_pend) memmove(s->pend, s->pend + i, s->n_pend - i);
    s->n_pend -= i;
    s->out[o] = '\0';
    *n_out = o;
    return HEARTH_OK;
}

hearth_status hearth_detok_stream_push(hearth_detok_stream *s, hearth_token t, const char **text, size_t *len) {
    hb_err e;
    size_t n = 0;
    bool strip = false;
    hb_err_clear(&e);
    *text = "";
    *len = 0;
    if (!s) return HEARTH_E_INVALID;
    const tok_vocab *v = s->v;
    if (t < 0 || t >= v->n) return HEARTH_E_INVALID;
    bool remove_special = (s->flags & HEARTH_DETOK_REMOVE_SPECIAL) != 0;
    if (!s->started) {
        s->started = true;
        if (remove_special && v->add_bos && t == v->bos) return HEARTH_OK;
        strip = v->add_space_prefix && !(s->flags & HEARTH_DETOK_CONTINUE);
    }
    if (remove_special && v->add_eos && t == v->eos) return HEARTH_OK;
    int pf = s->flags & ~HEARTH_DETOK_CONTINUE, rc = tok_piece(v, t, pf, NULL, 0, &n, &e);
    if (rc) return (hearth_status)rc;
    if (grow(&s->pend, &s->cap_pend, s->n_pend + n + 1)) return HEARTH_E_NOMEM;
    if (tok_piece(v, t, pf, s->pend + s->n_pend, n, &n, &e)) return HEARTH_E_INTERNAL;
    if (strip && n > 0 && s->pend[s->n_pend] == ' ') {
        memmove(s->pend + s->n_pend, s->pend + s->n_pend + 1, n - 1);
        n--;
    }
    s->n_pend += n;
    if (drain(s, false, len)) return HEARTH_E_NOMEM;
    *text = s->out;
    return HEARTH_OK;
}

hearth_status hearth_detok_stream_flush(hearth_detok_stream *s, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (!s) return HEARTH_E_INVALID;
    if (drain(s, true, len)) return HEARTH_E_NOMEM;
    *text = s->out;
    return HEARTH_OK;
}
