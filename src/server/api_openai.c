/* api_openai.c — the OpenAI-compatible API: /v1/chat/completions, /v1/completions,
 * /v1/embeddings, /v1/models[/{id}]. Streaming is SSE ("data: {...}\n\n", then
 * "data: [DONE]"); errors have OpenAI's {"error": {message, type, param, code}} shape.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "server/api.h"
#include "store/store.h"

bool api_is_openai(const char *url) { return strncmp(url, "/v1/", 4) == 0; }

static const char *finish_reason(const gen_req *g, bool tool_calls) {
    if (tool_calls) return "tool_calls";
    return g->done_reason && strcmp(g->done_reason, "length") == 0 ? "length" : "stop";
}

/* A reply cut short (server shutdown, model unloaded, client gone) is not a finished one:
 * OpenAI's finish reasons have no "cancelled", so it is reported as an error (a streamed
 * error event, or an HTTP error) rather than as "stop", which clients take for a whole
 * answer. */
static bool cut_short(const gen_req *g) {
    return g->done_reason && (strcmp(g->done_reason, "error") == 0 || strcmp(g->done_reason, "cancelled") == 0);
}

static const char *cut_message(const gen_req *g) {
    return g->errmsg[0] ? g->errmsg : "generation was cancelled";
}

static json_t *usage_json(const gen_req *g) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", g->n_prompt, "completion_tokens", g->n_eval,
                     "total_tokens", g->n_prompt + g->n_eval, "prompt_tokens_details", "cached_tokens", g->n_cached);
}

/* OpenAI tool_calls from Ollama-shaped ones (arguments as a JSON string, with ids); the
 * first is call number `first` of the reply (its index). */
static json_t *openai_tool_calls(json_t *calls, int first) {
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *fn = json_object_get(json_array_get(calls, i), "function");
        char *args = json_dumps(json_object_get(fn, "arguments"), JSON_COMPACT | JSON_ENCODE_ANY);
        int index = first + (int)i;
        char id[40];
        snprintf(id, sizeof id, "call_%08x%04d", (unsigned)rand(), index);
        json_array_append_new(out, json_pack("{s:i, s:s, s:s, s:{s:O, s:s}}", "index", index, "id", id, "type", "function",
                                             "function", "name", json_object_get(fn, "name"), "arguments", args ? args : "{}"));
        free(args);
    }
    return out;
}

static json_t *chunk_base(ostream *os) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", os->id, "object",
                     os->openai_chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)os->created,
                     "model", os->model, "system_fingerprint", "hearth-" HEARTH_VERSION);
}

/* The logprobs of the tokens whose text this chunk completes (JSON null unless the request
 * asked); the final chunk takes the rest of the reply's. */
static json_t *chunk_logprobs(ostream *os, bool final) {
    return gen_take_logprobs(os->g, runner_model(os->rn), os->openai_chat, final ? SIZE_MAX : os->fmt_pos);
}

static void fmt_openai(ostream *os, const char *text, size_t n, bool final) {
    gen_req *g = os->g;
    if (!final) {
        json_t *c = chunk_base(os);
        json_t *choice;
        if (os->openai_chat) {
            json_t *delta = json_pack("{s:s, s:o}", "role", "assistant", "content", jstr(text, n));
            choice = json_pack("{s:i, s:o, s:o, s:n}", "index", 0, "delta", delta, "logprobs", chunk_logprobs(os, false), "finish_reason");
        } else {
            choice = json_pack("{s:i, s:o, s:o, s:n}", "index", 0, "text", jstr(text, n), "logprobs", chunk_logprobs(os, false), "finish_reason");
        }
        json_object_set_new(c, "choices", json_pack("[o]", choice));
        ostream_json_line(os, c, true);
        return;
    }
    if (cut_short(g)) {
        ostream_json_line(os, json_pack("{s:{s:s, s:s}}", "error", "message", cut_message(g), "type", "server_error"), true);
    } else {
        json_t *c = chunk_base(os);
        bool tc = os->n_calls > 0;
        json_t *choice = os->openai_chat
                             ? json_pack("{s:i, s:{}, s:o, s:s}", "index", 0, "delta", "logprobs", chunk_logprobs(os, true), "finish_reason", finish_reason(g, tc))
                             : json_pack("{s:i, s:s, s:o, s:s}", "index", 0, "text", "", "logprobs", chunk_logprobs(os, true), "finish_reason", finish_reason(g, tc));
        json_object_set_new(c, "choices", json_pack("[o]", choice));
        ostream_json_line(os, c, true);
        if (os->include_usage) {
            json_t *u = chunk_base(os);
            json_object_set_new(u, "choices", json_array());
            json_object_set_new(u, "usage", usage_json(g));
            ostream_json_line(os, u, true);
        }
    }
    ostream_append(os, "data: [DONE]\n\n", 14);
}

/* Tool calls found in a streamed chat reply: one chunk whose delta carries them whole
 * (index, id, type, function name and arguments), with null content. */
static void fmt_openai_calls(ostream *os, json_t *calls) {
    json_t *c = chunk_base(os);
    json_t *delta = json_pack("{s:s, s:n, s:o}", "role", "assistant", "content", "tool_calls", openai_tool_calls(calls, os->n_calls));
    json_object_set_new(c, "choices", json_pack("[{s:i, s:o, s:o, s:n}]", "index", 0, "delta", delta, "logprobs", chunk_logprobs(os, false), "finish_reason"));
    ostream_json_line(os, c, true);
}

/* The non-streamed answer of a finished request. */
static enum MHD_Result complete_reply(http_req *hr, api_call *c, gen_req *g, bool chat, json_t *tools, const char *id) {
    enum MHD_Result ret;
    if (cut_short(g)) {
        ret = http_error(hr, g->status ? g->status : 500, "%s", cut_message(g));
    } else {
        json_t *choice;
        const char *text = g->text ? g->text : "";
        if (chat) {
            char *content = NULL;
            size_t clen = 0;
            json_t *calls = json_array_size(tools) ? gen_parse_tool_calls(text, g->text_len, &content, &clen) : NULL;
            bool tc = json_array_size(calls) > 0;
            json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content",
                                    tc && (!content || !clen) ? json_null() : jstr(content ? content : text, content ? clen : g->text_len));
            if (tc) json_object_set_new(msg, "tool_calls", openai_tool_calls(calls, 0));
            choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "message", msg, "logprobs", gen_take_logprobs(g, runner_model(c->rn), true, SIZE_MAX),
                               "finish_reason", finish_reason(g, tc));
            json_decref(calls);
            free(content);
        } else {
            choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "text", jstr(text, g->text_len), "logprobs",
                               gen_take_logprobs(g, runner_model(c->rn), false, SIZE_MAX), "finish_reason", finish_reason(g, false));
        }
        json_t *o2 = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o], s:o}", "id", id, "object", chat ? "chat.completion" : "text_completion",
                               "created", (json_int_t)time(NULL), "model", c->model, "system_fingerprint", "hearth-" HEARTH_VERSION,
                               "choices", choice, "usage", usage_json(g));
        if (g->n_truncated) json_object_set_new(o2, "truncated_tokens", json_integer(g->n_truncated));
        ret = http_json(hr, 200, o2);
    }
    return ret;
}

static enum MHD_Result complete(http_req *hr, bool chat) {
    hb_err e = { 0 };
    hb_err *err = &e;
    api_call c;
    gen_opts o;
    char *prompt = NULL;
    json_t *msgs = NULL;
    gen_req *g = NULL;
    json_t *j = hr->json;
    int rc = HEARTH_OK;
    gen_opts_init(&o, true);
    if (!chat) o.num_predict = 16; /* OpenAI's default max_tokens for completions */
    gen_opts o_req;
    gen_opts_init(&o_req, true);
    if (j && ((rc = api_check_types(j, &e, "stream", 'b', "messages", 'a', "tools", 'a', "stream_options", 'o',
                                    "response_format", 'o', "truncate", 'b', "suffix", 's', NULL)) ||
              (rc = gen_opts_parse(j, true, &o_req, &e)))) {
        gen_opts_free(&o_req);
        gen_opts_free(&o);
        return http_error(hr, http_status_of(rc), "%s", e.msg);
    }
    gen_opts_free(&o_req);
    if (chat && json_is_array(json_object_get(j, "messages"))) { /* a bad message never loads a model */
        json_t *norm = NULL;
        if ((rc = gen_messages(json_object_get(j, "messages"), &norm, &e))) {
            gen_opts_free(&o);
            return http_error(hr, http_status_of(rc), "%s", e.msg);
        }
        json_decref(norm);
    }
    if (!api_begin(hr, &c, true)) return c.ret;
    json_t *tools = chat ? json_object_get(j, "tools") : NULL, *tc = json_object_get(j, "tool_choice");
    if (json_is_string(tc) && strcmp(json_string_value(tc), "none") == 0) tools = NULL; /* the model must answer in text */
    if ((rc = gen_opts_parse(c.params, false, &o, &e)) || (rc = gen_opts_parse(j, true, &o, &e))) goto bad;
    for (size_t i = 0; i < o.sp.n_logit_bias; i++) /* a 400 before a stream starts, not an error event in it */
        HB_CHECK(o.sp.logit_bias[i].token < hearth_model_n_vocab(runner_model(c.rn)), HEARTH_E_INVALID,
                 "logit_bias: %d is not a token id of this model (its vocabulary has %d)", (int)o.sp.logit_bias[i].token,
                 (int)hearth_model_n_vocab(runner_model(c.rn)));
    json_t *rf = json_object_get(j, "response_format");
    const char *rft = json_string_value(json_object_get(rf, "type"));
    HB_CHECK(!rf || json_is_null(rf) || (rft && (strcmp(rft, "text") == 0 || strcmp(rft, "json_object") == 0 || strcmp(rft, "json_schema") == 0)),
             HEARTH_E_INVALID, "response_format.type must be text, json_object or json_schema");
    if (chat) {
        json_t *m = json_object_get(j, "messages");
        HB_CHECK(json_array_size(m) > 0, HEARTH_E_INVALID, "messages must be a non-empty array");
        if ((rc = api_chat_messages(&c, m, &msgs, &e))) goto bad;
        if ((rc = gen_chat_prompt(c.rn, c.tmpl, msgs, tools, &prompt, &e))) goto bad;
    } else {
        json_t *p = json_object_get(j, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
        HB_CHECK(json_is_string(p), HEARTH_E_INVALID, "prompt must be a string (or an array with one string)");
        const char *sfx = json_string_value(json_object_get(j, "suffix"));
        if (sfx && *sfx) {
            if ((rc = api_infill_prompt(&c, json_string_value(p), sfx, &prompt, &e))) goto bad;
        } else {
            prompt = strdup(json_string_value(p));
            HB_CHECK(prompt, HEARTH_E_NOMEM, "out of memory");
        }
    }
    if ((rc = gen_build(c.rn, prompt, NULL, 0, &o, json_is_true(json_object_get(j, "truncate")), &g, &e))) goto bad;
    g->json_mode = rft && (strcmp(rft, "json_object") == 0 || strcmp(rft, "json_schema") == 0);
    free(prompt), prompt = NULL;
    json_decref(msgs), msgs = NULL;
    gen_opts_free(&o);
    if (!runner_submit(c.rn, g, &e)) {
        gen_req_unref(g);
        api_end(&c, true);
        return http_error(hr, 503, "%s", e.msg);
    }
    char id[64];
    snprintf(id, sizeof id, "%s-%08x%08x", chat ? "chatcmpl" : "cmpl", (unsigned)rand(), (unsigned)time(NULL));
    if (json_is_true(json_object_get(j, "stream"))) {
        ostream *os = ostream_new(hr, g, c.rn, c.load_ns, fmt_openai);
        if (!os) {
            atomic_store(&g->cancel, true);
            gen_req_unref(g);
            api_end(&c, true);
            return http_error(hr, 500, "out of memory");
        }
        snprintf(os->model, sizeof os->model, "%s", c.model);
        snprintf(os->id, sizeof os->id, "%s", id);
        os->openai_chat = chat;
        os->include_usage = json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage"));
        if (chat && json_array_size(tools)) os->fmt_calls = fmt_openai_calls;
        api_end(&c, false);
        return ostream_start(hr, os, "text/event-stream");
    }
    gen_wait_done(hr, g);
    enum MHD_Result ret = complete_reply(hr, &c, g, chat, tools, id);
    gen_req_unref(g);
    api_end(&c, true);
    return ret;
out:
bad:
    free(prompt);
    json_decref(msgs);
    gen_opts_free(&o);
    api_end(&c, true);
    return http_error(hr, http_status_of(rc), "%s", e.msg);
}

/* base64 of the little-endian float32 bytes (what the openai clients ask for by default;
 * OpenSSL's encoder, padded). New reference; "" when out of memory. */
static json_t *b64_floats(json_t *vec) {
    size_t n = json_array_size(vec), nb = n * 4;
    unsigned char *raw = malloc(nb ? nb : 1), *out = malloc((nb + 2) / 3 * 4 + 1);
    json_t *res = NULL;
    if (raw && out && nb <= INT_MAX) {
        for (size_t i = 0; i < n; i++) {
            float f = (float)json_number_value(json_array_get(vec, i));
            uint32_t u;
            memcpy(&u, &f, 4);
            for (int b = 0; b < 4; b++) raw[4 * i + (size_t)b] = (unsigned char)(u >> (8 * b));
        }
        EVP_EncodeBlock(out, raw, (int)nb); /* NUL-terminated */
        res = json_string((const char *)out);
    }
    free(raw);
    free(out);
    return res ? res : json_string("");
}

static enum MHD_Result embeddings(http_req *hr) {
    hb_err e = { 0 };
    api_call c;
    json_t *jf = json_object_get(hr->json, "encoding_format");
    const char *fmt = json_string_value(jf);
    if (jf && !json_is_null(jf) && !fmt) return http_error(hr, 400, "encoding_format must be a string (float or base64)");
    if (fmt && strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0)
        return http_error(hr, 400, "encoding_format must be float or base64, not '%.64s'", fmt);
    bool b64 = fmt && strcmp(fmt, "base64") == 0;
    if (!api_begin(hr, &c, true)) return c.ret;
    json_t *vecs = NULL;
    int64_t n_tok = 0;
    api_embed_opts eo = { json_is_true(json_object_get(hr->json, "truncate")), false, 0 };
    int rc = api_embed_dims(&c, hr->json, &eo.dims, &e);
    if (!rc) rc = api_embed_inputs(&c, json_object_get(hr->json, "input"), &eo, &vecs, &n_tok, &e);
    if (rc) {
        api_end(&c, true);
        return http_error(hr, http_status_of(rc), "%s", e.msg);
    }
    json_t *data = json_array();
    for (size_t i = 0; i < json_array_size(vecs); i++)
        json_array_append_new(data, json_pack("{s:s, s:o, s:i}", "object", "embedding", "embedding",
                                              b64 ? b64_floats(json_array_get(vecs, i)) : json_incref(json_array_get(vecs, i)), "index", (int)i));
    json_decref(vecs);
    json_t *o = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", c.model, "usage",
                          "prompt_tokens", (json_int_t)n_tok, "total_tokens", (json_int_t)n_tok);
    api_end(&c, true);
    return http_json(hr, 200, o);
}

static json_t *model_obj(const hearth_store_entry *e) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", e->name, "object", "model", "created", (json_int_t)e->modified, "owned_by", "library");
}

static enum MHD_Result models(http_req *hr, const char *id) {
    hearth_store_entry *v = NULL;
    size_t n = 0;
    char err[512];
    if (hearth_store_list(hr->srv->models_dir, &v, &n, err, sizeof err)) return http_error(hr, 500, "%s", err);
    json_t *out = NULL;
    if (id) {
        store_name want, have;
        hb_err e = { 0 };
        if (store_name_parse(id, &want, &e) == HEARTH_OK)
            for (size_t i = 0; i < n && !out; i++)
                if (store_name_parse(v[i].name, &have, &e) == HEARTH_OK && memcmp(&want, &have, sizeof want) == 0) out = model_obj(&v[i]);
        hearth_free(v);
        if (!out) return http_error(hr, 404, "model '%s' not found", id);
        return http_json(hr, 200, out);
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, model_obj(&v[i]));
    hearth_free(v);
    return http_json(hr, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

enum MHD_Result api_openai(http_req *hr) {
    const char *u = hr->url;
    bool post = strcmp(hr->method, "POST") == 0, get = strcmp(hr->method, "GET") == 0;
    if (post && strcmp(u, "/v1/chat/completions") == 0) return complete(hr, true);
    if (post && strcmp(u, "/v1/completions") == 0) return complete(hr, false);
    if (post && strcmp(u, "/v1/embeddings") == 0) return embeddings(hr);
    if (get && strcmp(u, "/v1/models") == 0) return models(hr, NULL);
    if (get && strncmp(u, "/v1/models/", 11) == 0 && u[11]) return models(hr, u + 11);
    return http_error(hr, 404, "no such endpoint: %s %s", hr->method, u);
}
