/* api_ollama.c — the Ollama API: generate, chat, embed(dings), tags, show, copy, delete,
 * create, blobs, pull, ps, version. Field names, defaults (stream true), NDJSON streaming,
 * nanosecond durations and {"error": "..."} bodies follow Ollama's documented API.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/api.h"
#include "store/store.h"

bool api_is_ollama(const char *url) { return strncmp(url, "/api/", 5) == 0; }

/* ---- generate / chat -------------------------------------------------------------------- */

static void add_stats(json_t *o, gen_req *g, uint64_t load_ns) {
    json_object_set_new(o, "total_duration", json_integer((json_int_t)(g->t_end - g->t_submit + load_ns)));
    json_object_set_new(o, "load_duration", json_integer((json_int_t)load_ns));
    json_object_set_new(o, "prompt_eval_count", json_integer(g->n_prompt - g->n_cached));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)(g->t_prompt_done - g->t_start)));
    json_object_set_new(o, "eval_count", json_integer(g->n_eval));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)(g->t_end - g->t_prompt_done)));
    json_object_set_new(o, "prompt_cached_tokens", json_integer(g->n_cached));
    if (g->n_truncated) json_object_set_new(o, "truncated_tokens", json_integer(g->n_truncated));
}

static json_t *base_obj(const char *model) {
    char ts[40];
    rfc3339_now(ts);
    return json_pack("{s:s, s:s}", "model", model, "created_at", ts);
}

/* Final object for generate (chat=false) or chat; NULL text fields filled by caller. */
static json_t *final_obj(const char *model, gen_req *g, uint64_t load_ns, bool chat, bool with_context) {
    json_t *o = base_obj(model);
    if (chat) json_object_set_new(o, "message", json_pack("{s:s, s:s}", "role", "assistant", "content", ""));
    else json_object_set_new(o, "response", json_string(""));
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string(g->done_reason ? g->done_reason : "stop"));
    if (with_context) {
        json_t *ctx = json_array();
        for (int32_t i = 0; i < g->n_prompt; i++) json_array_append_new(ctx, json_integer(g->prompt[i]));
        for (int32_t i = 0; i < g->n_out; i++) json_array_append_new(ctx, json_integer(g->out_tokens[i]));
        json_object_set_new(o, "context", ctx);
    }
    add_stats(o, g, load_ns);
    return o;
}

/* Sets message.content / tool_calls from the full reply text. */
static void chat_message(json_t *msg, const char *text, size_t n, bool tools) {
    if (tools) {
        char *content = NULL;
        size_t clen = 0;
        json_t *calls = gen_parse_tool_calls(text ? text : "", text ? n : 0, &content, &clen);
        json_object_set_new(msg, "content", content ? jstr(content, clen) : json_string(""));
        if (json_array_size(calls)) json_object_set_new(msg, "tool_calls", calls);
        else json_decref(calls);
        free(content);
    } else {
        json_object_set_new(msg, "content", jstr(text, n));
    }
}

static void fmt_ollama(ostream *os, const char *text, size_t n, bool final) {
    gen_req *g = os->g;
    bool chat = os->openai_chat; /* reused flag: chat vs generate */
    if (!final) {
        json_t *o = base_obj(os->model);
        if (chat) {
            json_object_set_new(o, "message", json_pack("{s:s, s:o}", "role", "assistant", "content", jstr(text, n)));
        } else {
            json_object_set_new(o, "response", jstr(text, n));
        }
        json_object_set_new(o, "done", json_false());
        ostream_json_line(os, o, false);
        return;
    }
    if (g->done_reason && strcmp(g->done_reason, "error") == 0) {
        ostream_json_line(os, json_pack("{s:s}", "error", g->errmsg), false);
        return;
    }
    ostream_json_line(os, final_obj(os->model, g, os->load_ns, chat, !chat && g->want_tokens), false);
}

/* Tool calls found in a streamed chat reply: a chunk whose message carries them (as Ollama
 * streams them), with empty content. */
static void fmt_ollama_calls(ostream *os, json_t *calls) {
    json_t *o = base_obj(os->model);
    json_object_set_new(o, "message", json_pack("{s:s, s:s, s:O}", "role", "assistant", "content", "", "tool_calls", calls));
    json_object_set_new(o, "done", json_false());
    ostream_json_line(os, o, false);
}

/* Runs g to the end and answers (stream or one object). Consumes g and the pin on rn. */
static enum MHD_Result run_gen(http_req *hr, runner *rn, gen_req *g, const char *model, bool stream, bool chat,
                               json_t *tools, uint64_t load_ns) {
    hb_err e = { 0 };
    enum MHD_Result ret;
    g->want_tokens = !chat;
    if (!runner_submit(rn, g, &e)) {
        gen_req_unref(g);
        sched_release(hr->srv->sched, rn);
        return http_error(hr, 503, "%s", e.msg);
    }
    if (stream) {
        ostream *os = ostream_new(hr, g, rn, load_ns, fmt_ollama);
        if (!os) {
            atomic_store(&g->cancel, true);
            gen_req_unref(g);
            sched_release(hr->srv->sched, rn);
            return http_error(hr, 500, "out of memory");
        }
        snprintf(os->model, sizeof os->model, "%s", model);
        os->openai_chat = chat;
        if (chat && json_array_size(tools)) os->fmt_calls = fmt_ollama_calls;
        return ostream_start(hr, os, "application/x-ndjson");
    }
    gen_wait_done(hr, g);
    if (strcmp(g->done_reason, "error") == 0) {
        ret = http_error(hr, g->status ? g->status : 500, "%s", g->errmsg);
    } else {
        json_t *o = final_obj(model, g, load_ns, chat, !chat);
        if (chat) chat_message(json_object_get(o, "message"), g->text ? g->text : "", g->text_len, tools && json_array_size(tools));
        else json_object_set_new(o, "response", jstr(g->text ? g->text : "", g->text_len));
        ret = http_json(hr, 200, o);
    }
    gen_req_unref(g);
    sched_release(hr->srv->sched, rn);
    return ret;
}

/* Answers an empty generate/chat: load (or unload with keep_alive 0) the model. */
/* The final object of a request without a prompt: empty text, done, `reason`. */
static json_t *load_obj(const char *model, bool chat, const char *reason) {
    json_t *obj = base_obj(model);
    if (chat) json_object_set_new(obj, "message", json_pack("{s:s, s:s}", "role", "assistant", "content", ""));
    else json_object_set_new(obj, "response", json_string(""));
    json_object_set_new(obj, "done", json_true());
    json_object_set_new(obj, "done_reason", json_string(reason));
    return obj;
}

static enum MHD_Result load_only(http_req *hr, api_call *c, bool chat, gen_opts *o) {
    json_t *obj = load_obj(c->model, chat, c->keep_alive == 0 ? "unload" : "load");
    gen_opts_free(o);
    api_end(c, true);
    return http_json(hr, 200, obj);
}

/* An unload request (no prompt or messages, keep_alive 0; `hearth stop`): the model is
 * marked to unload, now if idle or when its last request ends, without loading it first
 * (which could evict another model) and without waiting for a free runner (no 503).
 * Returns false when the request is not one; *ret is then untouched. */
static bool unload_only(http_req *hr, bool chat, enum MHD_Result *ret) {
    json_t *j = hr->json, *m = json_object_get(j, "model");
    int64_t ka = 1;
    hb_err e = { 0 };
    const char *p = json_string_value(json_object_get(j, "prompt"));
    bool empty = chat ? json_array_size(json_object_get(j, "messages")) == 0 : !p || !*p;
    if (!empty || !json_is_string(m) || gen_keep_alive(json_object_get(j, "keep_alive"), 1, &ka, &e) || ka != 0) return false;
    char path[4200];
    const char *name = json_string_value(m);
    if (store_model_path(hr->srv->models_dir, name, false, path, sizeof path, &e)) {
        *ret = http_error(hr, e.code == HEARTH_E_NOT_FOUND ? 404 : http_status_of(e.code), "%s", e.msg);
        return true;
    }
    sched_unload(hr->srv->sched, name);
    *ret = http_json(hr, 200, load_obj(name, chat, "unload"));
    return true;
}

static int check_format(json_t *f, hb_err *err) {
    if (!f || json_is_null(f) || json_is_object(f)) return HEARTH_OK;
    if (json_is_string(f) && (strcmp(json_string_value(f), "json") == 0 || json_string_length(f) == 0)) return HEARTH_OK;
    return hb_fail(err, HEARTH_E_INVALID, "format must be \"json\" or a JSON schema object");
}

static enum MHD_Result generate(http_req *hr, bool chat) {
    hb_err e = { 0 };
    api_call c;
    gen_opts o;
    char *prompt = NULL;
    json_t *msgs = NULL;
    gen_req *g = NULL;
    json_t *j = hr->json;
    gen_opts o_req;
    int rc = HEARTH_OK;
    gen_opts_init(&o, false);
    gen_opts_init(&o_req, false);
    /* Validate the request before touching the model (a bad request never loads one). */
    if (j && ((rc = check_format(json_object_get(j, "format"), &e)) ||
              (rc = api_check_types(j, &e, "prompt", 's', "suffix", 's', "system", 's', "template", 's', "raw", 'b', "stream", 'b',
                                    "messages", 'a', "tools", 'a', "context", 'a', "truncate", 'b', "images", 'a',
                                    "options", 'o', NULL)) ||
              (rc = gen_opts_parse(json_object_get(j, "options"), false, &o_req, &e)))) {
        gen_opts_free(&o_req);
        return http_error(hr, http_status_of(rc), "%s", e.msg);
    }
    gen_opts_free(&o_req);
    if (chat && json_array_size(json_object_get(j, "messages"))) {
        json_t *norm = NULL;
        if ((rc = gen_messages(json_object_get(j, "messages"), &norm, &e))) return http_error(hr, http_status_of(rc), "%s", e.msg);
        json_decref(norm);
    }
    json_t *imgs = json_object_get(j, "images");
    if (json_array_size(imgs)) return http_error(hr, 400, "this model does not support images (hearth has no vision support yet)");
    enum MHD_Result uret;
    if (unload_only(hr, chat, &uret)) return uret;
    if (!api_begin(hr, &c, true)) return c.ret;
    json_t *stream_v = json_object_get(j, "stream");
    bool stream = !json_is_false(stream_v);
    json_t *tools = json_object_get(j, "tools");
    json_t *ctxv = json_object_get(j, "context");
    if ((rc = gen_opts_parse(c.params, false, &o, &e)) || (rc = gen_opts_parse(json_object_get(j, "options"), false, &o, &e))) goto bad;
    if (chat) {
        json_t *m = json_object_get(j, "messages");
        if (!m || json_array_size(m) == 0) return load_only(hr, &c, true, &o);
        if ((rc = api_chat_messages(&c, m, &msgs, &e))) goto bad;
        if ((rc = gen_chat_prompt(c.rn, c.tmpl, msgs, tools, &prompt, &e))) goto bad;
    } else {
        const char *p = json_string_value(json_object_get(j, "prompt"));
        const char *sfx = json_string_value(json_object_get(j, "suffix"));
        if ((!p || !*p) && (!sfx || !*sfx)) return load_only(hr, &c, false, &o);
        if (sfx && *sfx) rc = api_infill_prompt(&c, p ? p : "", sfx, &prompt, &e);
        else rc = api_generate_prompt(&c, p, &prompt, &e);
        if (rc) goto bad;
    }
    hearth_token *prefix = NULL;
    size_t n_prefix = 0;
    if (!chat && json_array_size(ctxv)) {
        if ((rc = api_token_array(c.rn, ctxv, "context", &prefix, &n_prefix, &e))) goto bad;
    }
    rc = gen_build(c.rn, prompt, prefix, n_prefix, &o, json_is_true(json_object_get(j, "truncate")), &g, &e);
    free(prefix);
    if (rc) goto bad;
    json_t *fmt = json_object_get(j, "format");
    g->json_mode = json_is_object(fmt) || (json_is_string(fmt) && strcmp(json_string_value(fmt), "json") == 0);
    free(prompt);
    json_decref(msgs);
    gen_opts_free(&o);
    runner *rn = c.rn; /* the pin passes to run_gen */
    api_end(&c, false);
    return run_gen(hr, rn, g, c.model, stream, chat, tools, c.load_ns);
bad:
    free(prompt);
    json_decref(msgs);
    gen_opts_free(&o);
    api_end(&c, true);
    return http_error(hr, http_status_of(rc), "%s", e.msg);
}

/* ---- embeddings ------------------------------------------------------------------------------ */

static enum MHD_Result embed(http_req *hr, bool legacy) {
    hb_err e = { 0 };
    api_call c;
    json_t *j = hr->json;
    int rc = HEARTH_OK;
    if (!api_begin(hr, &c, true)) return c.ret;
    json_t *input = json_object_get(j, legacy ? "prompt" : "input");
    api_embed_opts eo = { legacy ? false : !json_is_false(json_object_get(j, "truncate")), true, 0 };
    json_t *vecs = NULL;
    int64_t n_tok = 0;
    uint64_t t0 = hb_now_ns();
    if ((rc = api_embed_dims(&c, j, &eo.dims, &e)) || (rc = api_embed_inputs(&c, input, &eo, &vecs, &n_tok, &e))) {
        api_end(&c, true);
        return http_error(hr, http_status_of(rc), "%s", e.msg);
    }
    json_t *o;
    if (legacy) {
        o = json_pack("{s:o}", "embedding", json_array_size(vecs) ? json_incref(json_array_get(vecs, 0)) : json_array());
        json_decref(vecs);
    } else {
        o = json_pack("{s:s, s:o, s:I, s:I, s:I}", "model", c.model, "embeddings", vecs, "total_duration",
                      (json_int_t)(hb_now_ns() - t0 + c.load_ns), "load_duration", (json_int_t)c.load_ns,
                      "prompt_eval_count", (json_int_t)n_tok);
    }
    api_end(&c, true);
    return http_json(hr, 200, o);
}



enum MHD_Result api_ollama(http_req *hr) {
    const char *u = hr->url;
    bool post = strcmp(hr->method, "POST") == 0;
    if (post && strcmp(u, "/api/generate") == 0) return generate(hr, false);
    if (post && strcmp(u, "/api/chat") == 0) return generate(hr, true);
    if (post && strcmp(u, "/api/embed") == 0) return embed(hr, false);
    if (post && strcmp(u, "/api/embeddings") == 0) return embed(hr, true);
    return api_store_route(hr);
}
