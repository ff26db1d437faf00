/* logprobs.c — the OpenAI `logprobs` objects of generated tokens (gen_lp, recorded by the
 * runner): chat's {"content": [{token, logprob, bytes, top_logprobs}]} and the completions
 * API's {tokens, token_logprobs, top_logprobs, text_offset}. */
#include <stdio.h>
#include <string.h>

#include "server/server.h"

/* A token's text: its piece (special tokens as their text), as valid UTF-8 (a piece that
 * is part of a character reads as U+FFFD; `bytes` keeps the raw bytes). */
static int lp_piece(hearth_model *m, const gen_lp *e, hearth_token t, char *buf, size_t cap) {
    size_t n = 0;
    if (hearth_token_piece(m, t, HEARTH_DETOK_UNPARSE_SPECIAL, buf, cap, &n) != HEARTH_OK || n > cap) n = 0;
    if (e && e->lstrip && t == e->tok && n > 0 && buf[0] == ' ') memmove(buf, buf + 1, --n); /* as the reply has it */
    return (int)n;
}

static json_t *lp_bytes(const char *p, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* {token, logprob, bytes} of token t (the generated one of e, or an alternative) with
 * log-probability lp. */
static json_t *lp_entry(hearth_model *m, const gen_lp *e, hearth_token t, float lp) {
    char buf[256];
    int n = lp_piece(m, e, t, buf, sizeof buf);
    return json_pack("{s:o, s:f, s:o}", "token", jstr(buf, (size_t)n), "logprob", (double)lp, "bytes", lp_bytes(buf, n));
}

static json_t *chat_logprobs(hearth_model *m, const gen_lp *lps, int32_t n) {
    json_t *content = json_array();
    for (int32_t i = 0; i < n; i++) {
        json_t *e = lp_entry(m, &lps[i], lps[i].tok, lps[i].lp), *top = json_array();
        for (int32_t j = 0; j < lps[i].n_top; j++) json_array_append_new(top, lp_entry(m, NULL, lps[i].top[j], lps[i].top_lp[j]));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    return json_pack("{s:o, s:n}", "content", content, "refusal");
}

static json_t *completion_logprobs(hearth_model *m, const gen_lp *lps, int32_t n) {
    json_t *toks = json_array(), *lp = json_array(), *top = json_array(), *off = json_array();
    for (int32_t i = 0; i < n; i++) {
        char buf[256];
        int k = lp_piece(m, &lps[i], lps[i].tok, buf, sizeof buf);
        json_array_append_new(toks, jstr(buf, (size_t)k));
        json_array_append_new(lp, json_real(lps[i].lp));
        json_array_append_new(off, json_integer((json_int_t)lps[i].start));
        json_t *alt = json_object();
        for (int32_t j = 0; j < lps[i].n_top; j++) {
            char b2[256];
            int k2 = lp_piece(m, NULL, lps[i].top[j], b2, sizeof b2);
            json_t *key = jstr(b2, (size_t)k2);
            json_object_set_new(alt, json_string_value(key), json_real(lps[i].top_lp[j]));
            json_decref(key);
        }
        json_array_append_new(top, alt);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lp, "top_logprobs", top, "text_offset", off);
}

json_t *gen_logprobs_json(hearth_model *m, const gen_lp *lps, int32_t n, bool chat) {
    return chat ? chat_logprobs(m, lps, n) : completion_logprobs(m, lps, n);
}

json_t *gen_take_logprobs(gen_req *g, hearth_model *m, bool chat, size_t upto) {
    json_t *o = NULL;
    pthread_mutex_lock(&g->mu);
    if (g->top_logprobs >= 0) {
        int32_t from = g->read_lp, to = from;
        size_t end = g->done && g->text_len < upto ? g->text_len : upto;
        while (to < g->n_lp && g->lps[to].start < end) to++;
        o = gen_logprobs_json(m, g->lps + from, to - from, chat);
        g->read_lp = g->done && upto >= g->text_len ? g->n_lp : to; /* the rest lies past the reply */
    }
    pthread_mutex_unlock(&g->mu);
    return o ? o : json_null();
}
