/* fuzz_request.c — libFuzzer target for the server's parsers of client and model text
 * (no socket, no model): generation options (Ollama `options` and OpenAI top-level fields),
 * chat messages, keep_alive values and the tool-call parser that reads generated text.
 * The first byte picks the parser; the rest is the JSON body (or the generated text). The
 * tool-call text is also streamed through the scanner in pieces (their size from the
 * first byte) and must give what the whole-text parse gives. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void fuzz_json(int which, const char *text, size_t n) {
    hb_err e = { 0 };
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j) return;
    if (which == 0 || which == 1) {
        gen_opts o;
        gen_opts_init(&o, which == 1);
        (void)gen_opts_parse(j, which == 1, &o, &e);
        gen_opts_free(&o);
    } else if (which == 2) {
        json_t *out = NULL;
        if (gen_messages(j, &out, &e) == HEARTH_OK) json_decref(out);
    } else {
        int64_t ns = 0;
        (void)gen_keep_alive(j, 300, &ns, &e);
    }
    json_decref(j);
}

/* Streams s[0..n) through tool_scan_next in pieces of `piece` bytes, as the server does,
 * and aborts unless the content and calls equal the whole-text parse. */
static void fuzz_tool_stream(const char *s, size_t n, size_t piece, json_t *want_calls, const char *want_content) {
    tool_scan ts = { 0 };
    json_t *calls = json_array();
    char *content = malloc(n + 1);
    size_t fed = 0, pos = 0, clen = 0;
    if (!calls || !content) goto out;
    do {
        fed = fed + piece < n ? fed + piece : n;
        for (;;) {
            size_t k = 0;
            json_t *c = NULL;
            tool_seg seg = tool_scan_next(&ts, s + pos, fed - pos, fed == n, &k, &c);
            if (seg == TOOL_SEG_MORE) break;
            if (k == 0) abort(); /* a decision always takes bytes */
            if (seg == TOOL_SEG_TEXT) memcpy(content + clen, s + pos, k), clen += k;
            else if (c) json_array_extend(calls, c);
            json_decref(c);
            pos += k;
        }
    } while (fed < n);
    content[clen] = '\0';
    if (pos != n || strcmp(content, want_content) != 0 || !json_equal(calls, want_calls)) {
        fprintf(stderr, "streamed in pieces of %zu: \"%s\" != \"%s\"\n", piece, content, want_content);
        abort();
    }
out:
    json_decref(calls);
    free(content);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int which = data[0] % 5;
    if (which < 4) {
        fuzz_json(which, text, n);
    } else {
        char *s = malloc(n + 1), *content = NULL;
        if (!s) return 0;
        memcpy(s, text, n);
        s[n] = '\0';
        size_t clen = 0;
        json_t *calls = gen_parse_tool_calls(s, strlen(s), &content, &clen);
        if (content) fuzz_tool_stream(s, strlen(s), 1 + data[0] / 5 % 8, calls, content);
        json_decref(calls);
        free(content);
        free(s);
    }
    return 0;
}
