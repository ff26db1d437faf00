/* fuzz_request.c — libFuzzer target for the server's parsers of client and model text
 * (no socket, no model): generation options (Ollama `options` and OpenAI top-level fields),
 * chat messages, keep_alive values and the tool-call parser that reads generated text.
 * The first byte picks the parser; the rest is the JSON body (or the generated text). */
#include <jansson.h>
#include <stdint.h>
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
        json_t *calls = gen_parse_tool_calls(s, &content);
        json_decref(calls);
        free(content);
        free(s);
    }
    return 0;
}
