/* api_misc.c — GET / (the web page, or a placeholder until web/ lands), /health,
 * /metrics, POST /tokenize and /detokenize.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

#if defined(__has_include)
#if __has_include("server/assets.h")
#include "server/assets.h"
#define HAVE_ASSETS 1
#endif
#endif

bool api_is_misc(const char *url) {
    return strcmp(url, "/") == 0 || strcmp(url, "/health") == 0 || strcmp(url, "/metrics") == 0 ||
           strcmp(url, "/tokenize") == 0 || strcmp(url, "/detokenize") == 0 || strncmp(url, "/static/", 8) == 0 ||
           strchr(url + 1, '/') == NULL;
}

static const char k_placeholder[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>hearth</title></head>"
    "<body><h1>hearth is running</h1><p>Ollama API under <code>/api/</code>, OpenAI API under "
    "<code>/v1/</code>. See docs/api.md.</p></body></html>\n";

static enum MHD_Result page(http_req *hr) {
#ifdef HAVE_ASSETS
    const unsigned char *data = NULL;
    size_t len = 0;
    const char *ctype = NULL, *etag = NULL;
    if (server_asset_find(hr->url, &data, &len, &ctype, &etag)) return http_asset(hr, data, len, ctype, etag);
#endif
    if (strcmp(hr->url, "/") != 0) return http_error(hr, 404, "no such page: %s", hr->url);
    return http_text(hr, 200, "text/html; charset=utf-8", k_placeholder, sizeof k_placeholder - 1);
}

static enum MHD_Result tokenize(http_req *hr) {
    hb_err e = { 0 };
    api_call c;
    if (!api_begin(hr, &c, true)) return c.ret;
    json_t *j = hr->json;
    json_t *t = json_object_get(j, "content");
    if (!t) t = json_object_get(j, "prompt");
    if (!t) t = json_object_get(j, "text");
    if (!json_is_string(t)) {
        api_end(&c, true);
        return http_error(hr, 400, "content must be a string");
    }
    int flags = HEARTH_TOK_PARSE_SPECIAL | (json_is_true(json_object_get(j, "add_special")) ? HEARTH_TOK_ADD_SPECIAL : 0);
    hearth_token *toks = NULL;
    size_t n = 0;
    char msg[256];
    hearth_status rc = hearth_tokenize(runner_model(c.rn), json_string_value(t), json_string_length(t), flags, &toks, &n, msg, sizeof msg);
    api_end(&c, true);
    (void)e;
    if (rc) return http_error(hr, http_status_of(rc), "cannot tokenize: %s", msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(toks[i]));
    hearth_free(toks);
    return http_json(hr, 200, json_pack("{s:o}", "tokens", arr));
}

static enum MHD_Result detokenize(http_req *hr) {
    hb_err e = { 0 };
    api_call c;
    if (!api_begin(hr, &c, true)) return c.ret;
    hearth_token *t = NULL;
    size_t n = 0;
    json_t *arr = json_object_get(hr->json, "tokens");
    if (!json_is_array(arr) || api_token_array(c.rn, arr, "tokens", &t, &n, &e)) {
        api_end(&c, true);
        return http_error(hr, 400, "%s", e.msg[0] ? e.msg : "tokens must be an array of token ids");
    }
    char *text = NULL;
    size_t len = 0;
    char msg[256];
    hearth_status rc = hearth_detokenize(runner_model(c.rn), t, n, 0, &text, &len, msg, sizeof msg);
    free(t);
    api_end(&c, true);
    if (rc) return http_error(hr, http_status_of(rc), "cannot detokenize: %s", msg);
    json_t *o = json_pack("{s:o}", "content", jstr(text, len));
    hearth_free(text);
    return http_json(hr, 200, o);
}

enum MHD_Result api_misc(http_req *hr) {
    const char *u = hr->url;
    bool get = strcmp(hr->method, "GET") == 0 || strcmp(hr->method, "HEAD") == 0;
    bool post = strcmp(hr->method, "POST") == 0;
    if (get && strcmp(u, "/health") == 0) return http_json(hr, 200, json_pack("{s:s}", "status", "ok"));
    if (get && strcmp(u, "/metrics") == 0) {
        char *m = metrics_render(hr->srv);
        if (!m) return http_error(hr, 500, "out of memory");
        enum MHD_Result r = http_text(hr, 200, "text/plain; version=0.0.4", m, strlen(m));
        free(m);
        return r;
    }
    if (post && strcmp(u, "/tokenize") == 0) return tokenize(hr);
    if (post && strcmp(u, "/detokenize") == 0) return detokenize(hr);
    if (get) return page(hr);
    return http_error(hr, 404, "no such endpoint: %s %s", hr->method, u);
}
