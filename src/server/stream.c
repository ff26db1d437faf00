/* stream.c — streaming response bodies (Ollama NDJSON, OpenAI SSE) fed by a gen_req.
 *
 * The connection thread pulls: next() waits up to 100 ms for new text, hands the next
 * emitted piece (one token's text) to the API's formatter and returns the bytes; it polls
 * the client's socket between waits, so a disconnect sets the request's cancel flag and the
 * runner frees the slot at its next step. A chat reply with tools goes through the
 * tool-call scanner first (tools.c): only text that may still be a call is held back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

json_t *jstr(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    /* Replace each invalid byte with U+FFFD (3 bytes) so the reply stays valid JSON. */
    char *buf = malloc(n * 3 + 1);
    size_t k = 0;
    if (!buf) return json_string("");
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t t = 1; ok && t < len; t++) ok = ((unsigned char)s[i + t] >> 6) == 2;
        if (ok) { /* let jansson judge overlongs and surrogates */
            json_t *probe = json_stringn(s + i, len);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok) {
            memcpy(buf + k, s + i, len);
            k += len, i += len;
        } else {
            memcpy(buf + k, "\xEF\xBF\xBD", 3);
            k += 3, i++;
        }
    }
    j = json_stringn(buf, k);
    free(buf);
    return j ? j : json_string("");
}

void rfc3339_now(char buf[40]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%09ldZ", ts.tv_nsec);
}

void ostream_append(ostream *os, const char *s, size_t n) {
    if (os->out_len + n + 1 > os->out_cap) {
        size_t nc = (os->out_len + n + 1) * 2;
        char *no = realloc(os->out, nc);
        if (!no) return;
        os->out = no, os->out_cap = nc;
    }
    memcpy(os->out + os->out_len, s, n);
    os->out_len += n;
}

void ostream_json_line(ostream *os, json_t *j, bool sse) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    if (!s) return;
    if (sse) ostream_append(os, "data: ", 6);
    ostream_append(os, s, strlen(s));
    ostream_append(os, sse ? "\n\n" : "\n", sse ? 2 : 1);
    free(s);
}

ostream *ostream_new(http_req *hr, gen_req *g, runner *rn, uint64_t load_ns, ostream_fmt fmt) {
    ostream *os = calloc(1, sizeof *os);
    if (!os) return NULL;
    os->conn = hr->conn;
    os->srv = hr->srv;
    os->g = g;
    os->rn = rn;
    os->load_ns = load_ns;
    os->fmt = fmt;
    os->created = (int64_t)time(NULL);
    return os;
}

/* Takes the next emitted piece of the reply (one token's text): a copy in *piece (caller
 * frees; NULL when there is no new text), its length in *n. *done: the reply is complete
 * after it. */
static void os_take_piece(gen_req *g, char **piece, size_t *n, bool *done) {
    pthread_mutex_lock(&g->mu);
    size_t from = g->read_pos, to = g->text_len;
    while (g->read_end < g->n_ends && g->ends[g->read_end] <= from) g->read_end++;
    if (g->read_end < g->n_ends && g->ends[g->read_end] < to) to = g->ends[g->read_end];
    *done = g->done && to == g->text_len; /* the final object after the last piece */
    *piece = NULL;
    *n = 0;
    if (to > from) {
        *piece = hb_strndup(g->text + from, to - from);
        *n = *piece ? to - from : 0;
        g->read_pos = to;
    }
    pthread_mutex_unlock(&g->mu);
}

/* Runs the tool-call scanner over the held text plus the new piece: decided content goes
 * out as text, decided calls as calls; what may still become a call stays held (until
 * `final`, when everything is decided). The held text only grows between the scanner's
 * MORE answers, which lets it go on reading where it stopped (tool_scan_next). */
static void os_scan(ostream *os, const char *piece, size_t n, bool final) {
    size_t need = os->held_len + n + 1, pos = 0;
    if (need > os->held_cap) {
        char *nh = realloc(os->held, need * 2);
        if (!nh) { /* out of memory: what is held goes out as content, and scanning stops */
            os->fmt_pos += os->held_len + n;
            if (os->held_len) os->fmt(os, os->held, os->held_len, false);
            if (n) os->fmt(os, piece, n, false);
            os->held_len = 0;
            os->fmt_calls = NULL;
            return;
        }
        os->held = nh, os->held_cap = need * 2;
    }
    if (n) memcpy(os->held + os->held_len, piece, n);
    os->held_len += n;
    for (;;) {
        size_t k = 0;
        json_t *calls = NULL;
        tool_seg seg = tool_scan_next(&os->ts, os->held + pos, os->held_len - pos, final, &k, &calls);
        if (seg == TOOL_SEG_MORE || k == 0) break;
        os->fmt_pos += k;
        if (seg == TOOL_SEG_TEXT) {
            os->fmt(os, os->held + pos, k, false);
        } else if (json_array_size(calls)) {
            os->fmt_calls(os, calls);
            os->n_calls += (int)json_array_size(calls);
        }
        json_decref(calls);
        pos += k;
    }
    memmove(os->held, os->held + pos, os->held_len - pos);
    os->held_len -= pos;
}

static ssize_t os_next(void *ud, char *buf, size_t max) {
    ostream *os = ud;
    if (os->out_pos < os->out_len) {
        size_t n = os->out_len - os->out_pos;
        if (n > max) n = max;
        memcpy(buf, os->out + os->out_pos, n);
        os->out_pos += n;
        if (os->out_pos == os->out_len) os->out_pos = os->out_len = 0;
        return (ssize_t)n;
    }
    if (os->final_sent) return -1;
    gen_req *g = os->g;
    char *piece = NULL;
    size_t n = 0;
    bool done = false;
    gen_req_wait(g, 100);
    os_take_piece(g, &piece, &n, &done);
    if (os->fmt_calls && (n || done)) os_scan(os, piece, n, done);
    else if (n) os->fmt_pos += n, os->fmt(os, piece, n, false);
    free(piece);
    if (done) {
        os->fmt(os, NULL, 0, true);
        os->final_sent = true;
    } else if (!http_client_alive(os->conn)) {
        atomic_store(&g->cancel, true);
        return -2;
    }
    return 0;
}

static void os_done(void *ud) {
    ostream *os = ud;
    if (os->g) {
        atomic_store(&os->g->cancel, true);
        gen_req_unref(os->g);
    }
    if (os->rn) sched_release(os->srv->sched, os->rn);
    free(os->held);
    free(os->out);
    free(os);
}

enum MHD_Result ostream_start(http_req *hr, ostream *os, const char *ctype) {
    http_stream st = { .next = os_next, .done_cb = os_done, .ud = os };
    return http_stream_start(hr, ctype, st);
}
