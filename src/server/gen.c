/* gen.c — generation plumbing shared by the Ollama and OpenAI handlers: the gen_req
 * handoff between a connection thread and a runner, sampling options, prompt building with
 * the honest context check and keep_alive parsing (tool calls: tools.c).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

/* ---- gen_req ------------------------------------------------------------------------- */

gen_req *gen_req_new(void) {
    gen_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancel, false);
    r->num_predict = -1;
    r->top_logprobs = -1;
    r->t_submit = hb_now_ns();
    return r;
}

void gen_req_ref(gen_req *r) { atomic_fetch_add(&r->refs, 1); }

void gen_req_unref(gen_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->prompt);
    free(r->bias);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->text);
    free(r->ends);
    free(r->out_tokens);
    free(r->lps);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static bool grow(void **p, size_t need, size_t *cap, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return false;
    *p = np, *cap = nc;
    return true;
}

void gen_req_emit(gen_req *r, const char *text, size_t len, hearth_token t) {
    pthread_mutex_lock(&r->mu);
    if (len && grow((void **)&r->text, r->text_len + len + 1, &r->text_cap, 1)) {
        memcpy(r->text + r->text_len, text, len);
        r->text_len += len;
        r->text[r->text_len] = '\0';
        /* piece boundaries for streaming one chunk per token (without them a consumer takes
         * all new text at once, which stays correct) */
        if (grow((void **)&r->ends, r->n_ends + 1, &r->ends_cap, sizeof(size_t))) r->ends[r->n_ends++] = r->text_len;
    }
    if (t >= 0 && r->want_tokens) {
        size_t cap = (size_t)r->out_cap;
        if (grow((void **)&r->out_tokens, (size_t)r->n_out + 1, &cap, sizeof(hearth_token))) {
            r->out_cap = (int32_t)cap;
            r->out_tokens[r->n_out++] = t;
        }
    }
    /* a wake-up is a futex call and a thread switch per token and slot on the runner's path:
     * only for a consumer that streams the new text */
    if (len && !r->wait_done_only) pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void gen_req_add_lp(gen_req *r, const gen_lp *lp) {
    pthread_mutex_lock(&r->mu);
    size_t cap = (size_t)r->lp_cap;
    if (grow((void **)&r->lps, (size_t)r->n_lp + 1, &cap, sizeof *r->lps)) {
        r->lp_cap = (int32_t)cap;
        r->lps[r->n_lp++] = *lp;
    }
    pthread_mutex_unlock(&r->mu);
}

void gen_logprobs(const float *logits, int32_t n, hearth_token t, int k, gen_lp *out) {
    float mx = -INFINITY;
    k = k < 0 ? 0 : (k > GEN_MAX_TOP_LOGPROBS ? GEN_MAX_TOP_LOGPROBS : k);
    out->tok = t, out->n_top = 0;
    for (int32_t i = 0; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum); /* log-sum-exp */
    out->lp = logits[t] - lse;
    for (int32_t i = 0; i < n && k > 0; i++) { /* the k largest, kept sorted (insertion: k <= 20) */
        float v = logits[i];
        int32_t j = out->n_top;
        if (j == k && !(v > out->top_lp[k - 1])) continue;
        if (j == k) j--;
        while (j > 0 && v > out->top_lp[j - 1]) out->top[j] = out->top[j - 1], out->top_lp[j] = out->top_lp[j - 1], j--;
        out->top[j] = i, out->top_lp[j] = v;
        if (out->n_top < k) out->n_top++;
    }
    for (int32_t j = 0; j < out->n_top; j++) out->top_lp[j] -= lse;
}

void gen_req_finish(gen_req *r, const char *reason, int status, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->done = true;
        r->done_reason = reason;
        r->status = status;
        if (msg) snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
        r->t_end = hb_now_ns();
        if (!r->t_start) r->t_start = r->t_end;
        if (!r->t_prompt_done) r->t_prompt_done = r->t_end;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

bool gen_req_wait(gen_req *r, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)timeout_ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&r->mu);
    bool changed = r->done || r->read_pos < r->text_len;
    if (!changed) {
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        changed = r->done || r->read_pos < r->text_len;
    }
    pthread_mutex_unlock(&r->mu);
    return changed;
}

void gen_wait_done(http_req *hr, gen_req *g) {
    pthread_mutex_lock(&g->mu);
    g->wait_done_only = true; /* polled every 100 ms for a disconnect, woken by the finish */
    pthread_mutex_unlock(&g->mu);
    for (;;) {
        gen_req_wait(g, 100);
        pthread_mutex_lock(&g->mu);
        bool done = g->done;
        g->read_pos = g->text_len;
        pthread_mutex_unlock(&g->mu);
        if (done) break;
        if (!http_client_alive(hr->conn)) atomic_store(&g->cancel, true);
    }
}

/* ---- options --------------------------------------------------------------------------- */

void gen_opts_init(gen_opts *o, bool openai) {
    memset(o, 0, sizeof *o);
    o->sp = hearth_sampler_default_params();
    o->sp.logit_bias = NULL, o->sp.n_logit_bias = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o->sp.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)o;
    if (openai) {
        o->sp.temperature = 1.0f, o->sp.top_k = 0, o->sp.top_p = 1.0f, o->sp.min_p = 0.0f;
        o->sp.typical_p = 1.0f, o->sp.repeat_penalty = 1.0f, o->sp.repeat_last_n = 64;
        o->sp.presence_penalty = 0, o->sp.frequency_penalty = 0;
    } else {
        o->sp.temperature = 0.8f, o->sp.top_k = 40, o->sp.top_p = 0.9f, o->sp.min_p = 0.0f;
        o->sp.typical_p = 1.0f, o->sp.repeat_penalty = 1.1f, o->sp.repeat_last_n = 64;
        o->sp.presence_penalty = 0, o->sp.frequency_penalty = 0;
    }
    o->num_predict = -1;
    o->top_logprobs = -1;
}

void gen_opts_free(gen_opts *o) {
    for (int i = 0; i < o->n_stops; i++) free(o->stops[i]);
    o->n_stops = 0;
    free(o->bias);
    o->bias = NULL, o->sp.logit_bias = NULL, o->sp.n_logit_bias = 0;
}

/* OpenAI logit_bias: {"token id": bias in [-100, 100]}; -100 bans the token (its logit
 * becomes -inf), as OpenAI documents. Ids are checked against the vocab when the sampler
 * is made. Replaces any earlier bias in o. */
static int parse_bias(json_t *v, gen_opts *o, hb_err *err) {
    int rc = HEARTH_OK;
    const char *k;
    json_t *b;
    size_t i = 0;
    if (!v || json_is_null(v)) return HEARTH_OK;
    HB_CHECK(json_is_object(v), HEARTH_E_INVALID, "logit_bias must be an object of token ids to numbers");
    HB_CHECK(json_object_size(v) <= 1024, HEARTH_E_INVALID, "logit_bias has more than 1024 entries");
    free(o->bias);
    o->bias = calloc(json_object_size(v) ? json_object_size(v) : 1, sizeof *o->bias);
    o->sp.logit_bias = o->bias, o->sp.n_logit_bias = 0;
    HB_CHECK(o->bias, HEARTH_E_NOMEM, "out of memory");
    json_object_foreach(v, k, b) {
        char *end = NULL;
        errno = 0;
        long id = strtol(k, &end, 10);
        HB_CHECK(*k && !*end && !errno && id >= 0 && id <= INT32_MAX, HEARTH_E_INVALID,
                 "logit_bias: '%.32s' is not a token id", k);
        HB_CHECK(json_is_number(b) && json_number_value(b) >= -100 && json_number_value(b) <= 100, HEARTH_E_INVALID,
                 "logit_bias[%.32s] must be a number from -100 to 100", k);
        double d = json_number_value(b);
        o->bias[i].token = (hearth_token)id;
        o->bias[i++].bias = d <= -100 ? -INFINITY : (float)d;
    }
    o->sp.n_logit_bias = i;
out:
    return rc;
}

static int get_num(json_t *obj, const char *k, double lo, double hi, double *out, bool *present, hb_err *err) {
    json_t *v = json_object_get(obj, k);
    *present = false;
    if (!v || json_is_null(v)) return HEARTH_OK;
    if (!json_is_number(v)) return hb_fail(err, HEARTH_E_INVALID, "option %s must be a number", k);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) return hb_fail(err, HEARTH_E_INVALID, "option %s = %g is out of range [%g, %g]", k, d, lo, hi);
    *out = d;
    *present = true;
    return HEARTH_OK;
}

static int parse_stops(json_t *v, gen_opts *o, hb_err *err) {
    if (!v || json_is_null(v)) return HEARTH_OK;
    gen_opts_free(o);
    if (json_is_string(v)) {
        if (json_string_length(v)) o->stops[o->n_stops++] = strdup(json_string_value(v));
        return HEARTH_OK;
    }
    if (!json_is_array(v)) return hb_fail(err, HEARTH_E_INVALID, "stop must be a string or an array of strings");
    if (json_array_size(v) > GEN_MAX_STOPS) return hb_fail(err, HEARTH_E_INVALID, "at most %d stop sequences", GEN_MAX_STOPS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) return hb_fail(err, HEARTH_E_INVALID, "stop must be a string or an array of strings");
        if (json_string_length(s) > STORE_STOP_MAX_LEN)
            return hb_fail(err, HEARTH_E_INVALID, "a stop sequence is longer than %d bytes", STORE_STOP_MAX_LEN);
        if (json_string_length(s)) o->stops[o->n_stops++] = strdup(json_string_value(s));
    }
    return HEARTH_OK;
}

/* OpenAI logprobs: chat's `logprobs: true` with `top_logprobs` 0..20 (which needs it), or
 * the completions API's `logprobs: N` (N alternatives). */
static int parse_logprobs(json_t *obj, gen_opts *o, hb_err *err) {
    int rc = HEARTH_OK;
    json_t *lp = json_object_get(obj, "logprobs"), *top = json_object_get(obj, "top_logprobs");
    HB_CHECK(!lp || json_is_null(lp) || json_is_boolean(lp) ||
                 (json_is_integer(lp) && json_integer_value(lp) >= 0 && json_integer_value(lp) <= GEN_MAX_TOP_LOGPROBS),
             HEARTH_E_INVALID, "logprobs must be true/false (chat) or a whole number from 0 to %d (completions)",
             GEN_MAX_TOP_LOGPROBS);
    HB_CHECK(!top || json_is_null(top) ||
                 (json_is_integer(top) && json_integer_value(top) >= 0 && json_integer_value(top) <= GEN_MAX_TOP_LOGPROBS),
             HEARTH_E_INVALID, "top_logprobs must be a whole number from 0 to %d", GEN_MAX_TOP_LOGPROBS);
    bool on = json_is_true(lp) || json_is_integer(lp);
    HB_CHECK(on || !top || json_is_null(top), HEARTH_E_INVALID, "top_logprobs needs logprobs: true");
    if (on) o->top_logprobs = json_is_integer(lp) ? (int32_t)json_integer_value(lp)
                                                  : (json_is_integer(top) ? (int32_t)json_integer_value(top) : 0);
    if (json_is_false(lp)) o->top_logprobs = -1;
out:
    return rc;
}

int gen_opts_parse(json_t *obj, bool openai, gen_opts *o, hb_err *err) {
    int rc = HEARTH_OK;
    double d;
    bool has;
    if (!obj || json_is_null(obj)) return HEARTH_OK;
    HB_CHECK(json_is_object(obj), HEARTH_E_INVALID, "options must be an object");
#define NUM(key, lo, hi, stmt)                                                  \
    do {                                                                        \
        if ((rc = get_num(obj, key, lo, hi, &d, &has, err))) goto out;          \
        if (has) { stmt; }                                                      \
    } while (0)
    /* The ranges of Modelfile parameters are the store's (store_param_range), so a model
     * can never store a value that every request would then be refused for. */
#define NUMS(key, stmt)                                                         \
    do {                                                                        \
        double lo_ = 0, hi_ = 0;                                                \
        store_param_range(key, &lo_, &hi_);                                     \
        NUM(key, lo_, hi_, stmt);                                               \
    } while (0)
    NUMS("temperature", o->sp.temperature = (float)d);
    NUMS("top_k", o->sp.top_k = (int32_t)d);
    NUMS("top_p", o->sp.top_p = (float)d);
    NUMS("min_p", o->sp.min_p = (float)d);
    NUMS("typical_p", o->sp.typical_p = (float)d);
    NUMS("repeat_penalty", o->sp.repeat_penalty = (float)d);
    NUMS("repeat_last_n", o->sp.repeat_last_n = (int32_t)d);
    NUMS("presence_penalty", o->sp.presence_penalty = (float)d);
    NUMS("frequency_penalty", o->sp.frequency_penalty = (float)d);
    /* seeds below 2^64: a larger double does not fit the uint64_t cast */
    NUMS("seed", (o->sp.seed = d < 0 ? o->sp.seed : (uint64_t)d, o->seed_set = d >= 0));
    NUMS("num_ctx", o->num_ctx = (int32_t)d);
    NUMS("num_thread", (void)d);
    if (openai) {
        NUM("max_tokens", 0, 1 << 24, o->num_predict = (int32_t)d);
        NUM("max_completion_tokens", 0, 1 << 24, o->num_predict = (int32_t)d);
        NUM("n", 1, 1, (void)d);
        if ((rc = parse_logprobs(obj, o, err)) || (rc = parse_bias(json_object_get(obj, "logit_bias"), o, err))) goto out;
    } else {
        NUMS("num_predict", o->num_predict = (int32_t)d);
    }
#undef NUMS
#undef NUM
    rc = parse_stops(json_object_get(obj, "stop"), o, err);
out:
    return rc;
}

int gen_keep_alive(json_t *v, int64_t dflt, int64_t *out, hb_err *err) {
    int rc = HEARTH_OK;
    *out = dflt;
    if (!v || json_is_null(v)) return HEARTH_OK;
    if (json_is_number(v)) {
        double d = json_number_value(v);
        HB_CHECK(isfinite(d), HEARTH_E_INVALID, "keep_alive must be a finite number");
        /* seconds; the same ceiling as a duration string (a larger double does not fit the
         * int64 nanoseconds: found by tests/fuzz/fuzz_request.c) */
        HB_CHECK(d < 9e9, HEARTH_E_INVALID, "keep_alive is too long");
        *out = d < 0 ? -1 : (int64_t)(d * 1e9);
        return HEARTH_OK;
    }
    HB_CHECK(json_is_string(v), HEARTH_E_INVALID, "keep_alive must be a duration (\"5m\") or a number of seconds");
    hb_err e = { 0 };
    if (hb_parse_duration(json_string_value(v), out, &e)) {
        *out = dflt;
        rc = hb_fail(err, e.code, "keep_alive: %s", e.msg);
    }
out:
    return rc;
}

/* ---- prompts ----------------------------------------------------------------------------- */

int gen_build(runner *rn, const char *prompt, const hearth_token *prefix, size_t n_prefix, const gen_opts *o,
              bool truncate, gen_req **out, hb_err *err) {
    int rc = HEARTH_OK;
    hearth_model *m = runner_model(rn);
    hearth_token *toks = NULL;
    size_t n = 0;
    char msg[256] = "";
    gen_req *g = NULL;
    *out = NULL;
    rc = hearth_tokenize(m, prompt, strlen(prompt), HEARTH_TOK_PARSE_SPECIAL, &toks, &n, msg, sizeof msg);
    HB_CHECK(rc == HEARTH_OK, rc == HEARTH_E_INVALID ? HEARTH_E_INVALID : rc, "cannot tokenize the prompt: %s", msg);
    g = gen_req_new();
    HB_CHECK(g, HEARTH_E_NOMEM, "out of memory");
    hearth_token bos = hearth_token_bos(m);
    bool add_bos = n_prefix == 0 && hearth_model_add_bos(m) && bos >= 0 && !(n > 0 && toks[0] == bos);
    size_t total = n_prefix + n + (add_bos ? 1 : 0);
    g->prompt = hb_malloc_n(total ? total : 1, sizeof(hearth_token));
    HB_CHECK(g->prompt, HEARTH_E_NOMEM, "out of memory");
    size_t k = 0;
    if (add_bos) g->prompt[k++] = bos;
    for (size_t i = 0; i < n_prefix; i++) g->prompt[k++] = prefix[i];
    for (size_t i = 0; i < n; i++) g->prompt[k++] = toks[i];
    int32_t limit = (int32_t)runner_n_ctx(rn);
    if (o->num_ctx > 0 && o->num_ctx < limit) limit = o->num_ctx;
    g->ctx_limit = limit;
    HB_CHECK(limit >= 2, HEARTH_E_INVALID, "num_ctx must be at least 2 (prompt and one generated token)");
    HB_CHECK(total > 0, HEARTH_E_INVALID, "the prompt is empty after tokenization");
    if ((int64_t)total >= limit) {
        HB_CHECK(truncate, HEARTH_E_CONTEXT,
                 "the prompt is %zu tokens but the context is %d tokens; shorten it, raise num_ctx, or set \"truncate\": true",
                 total, limit);
        /* Keep room for one generated token; keep a leading BOS. */
        size_t keep = (size_t)limit - 1, skip = (add_bos || (total && g->prompt[0] == bos)) ? 1 : 0;
        size_t drop = total - keep;
        memmove(g->prompt + skip, g->prompt + skip + drop, (total - skip - drop) * sizeof(hearth_token));
        total = keep;
        g->n_truncated = (int32_t)drop;
    }
    g->n_prompt = (int32_t)total;
    g->sp = o->sp;
    g->sp.logit_bias = NULL, g->sp.n_logit_bias = 0;
    if (o->sp.n_logit_bias) {
        g->bias = hb_malloc_n(o->sp.n_logit_bias, sizeof *g->bias);
        HB_CHECK(g->bias, HEARTH_E_NOMEM, "out of memory");
        memcpy(g->bias, o->sp.logit_bias, o->sp.n_logit_bias * sizeof *g->bias);
        g->sp.logit_bias = g->bias, g->sp.n_logit_bias = o->sp.n_logit_bias;
    }
    g->num_predict = o->num_predict;
    g->top_logprobs = o->top_logprobs;
    for (int i = 0; i < o->n_stops; i++) g->stops[g->n_stops++] = strdup(o->stops[i]);
    *out = g;
    g = NULL;
out:
    hearth_free(toks);
    gen_req_unref(g);
    return rc;
}

/* Flattens OpenAI content parts ([{type:text,text}]) into one string. */
static int flatten_content(json_t *msg, hb_err *err) {
    json_t *c = json_object_get(msg, "content");
    if (!c || json_is_null(c)) {
        json_object_set_new(msg, "content", json_string(""));
        return HEARTH_OK;
    }
    if (json_is_string(c)) return HEARTH_OK;
    if (!json_is_array(c)) return hb_fail(err, HEARTH_E_INVALID, "message content must be a string or an array of parts");
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *t = json_object_get(json_array_get(c, i), "text");
        if (json_is_string(t)) cap += json_string_length(t);
    }
    char *buf = malloc(cap);
    if (!buf) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *part = json_array_get(c, i);
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *t = json_object_get(part, "text");
        if (!type || strcmp(type, "text") != 0 || !json_is_string(t)) {
            /* a 4xx, not 501: clients retry 5xx answers (the OpenAI client twice) */
            free(buf);
            return hb_fail(err, HEARTH_E_INVALID, "only text content parts are supported (%s: hearth has no vision support yet)",
                           type ? type : "a part without a type");
        }
        memcpy(buf + len, json_string_value(t), json_string_length(t));
        len += json_string_length(t);
    }
    buf[len] = '\0';
    json_object_set_new(msg, "content", json_stringn(buf, len));
    free(buf);
    return HEARTH_OK;
}

int gen_messages(json_t *in, json_t **out, hb_err *err) {
    int rc = HEARTH_OK;
    json_t *arr = NULL;
    *out = NULL;
    HB_CHECK(json_is_array(in), HEARTH_E_INVALID, "messages must be an array");
    arr = json_deep_copy(in);
    HB_CHECK(arr, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *m = json_array_get(arr, i);
        HB_CHECK(json_is_object(m), HEARTH_E_INVALID, "messages[%zu] must be an object", i);
        HB_CHECK(json_is_string(json_object_get(m, "role")), HEARTH_E_INVALID, "messages[%zu].role must be a string", i);
        json_t *imgs = json_object_get(m, "images");
        HB_CHECK(!imgs || json_is_null(imgs) || (json_is_array(imgs) && json_array_size(imgs) == 0), HEARTH_E_INVALID,
                 "this model does not support images (hearth has no vision support yet)");
        if ((rc = flatten_content(m, err))) goto out;
        json_t *calls = json_object_get(m, "tool_calls");
        for (size_t j = 0; json_is_array(calls) && j < json_array_size(calls); j++) {
            json_t *fn = json_object_get(json_array_get(calls, j), "function");
            json_t *args = json_object_get(fn, "arguments");
            if (json_is_string(args)) {
                json_t *parsed = json_loads(json_string_value(args), 0, NULL);
                if (parsed) json_object_set_new(fn, "arguments", parsed);
            }
        }
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return rc;
}

int gen_chat_prompt(runner *rn, const char *stored_tmpl, json_t *messages, json_t *tools, char **out, hb_err *err) {
    int rc = HEARTH_OK;
    hearth_model *m = runner_model(rn);
    char msg[512] = "";
    char *mj = NULL, *tj = NULL;
    *out = NULL;
    if (!stored_tmpl && !hearth_model_chat_template(m)) {
        /* A base model without a chat template: the conversation as plain text. */
        size_t cap = 1;
        for (size_t i = 0; i < json_array_size(messages); i++)
            cap += json_string_length(json_object_get(json_array_get(messages, i), "content")) + 1;
        char *buf = malloc(cap);
        HB_CHECK(buf, HEARTH_E_NOMEM, "out of memory");
        size_t len = 0;
        for (size_t i = 0; i < json_array_size(messages); i++) {
            json_t *c = json_object_get(json_array_get(messages, i), "content");
            size_t n = json_string_length(c);
            if (!n) continue;
            if (len) buf[len++] = '\n';
            memcpy(buf + len, json_string_value(c), n);
            len += n;
        }
        buf[len] = '\0';
        *out = buf;
        goto out;
    }
    mj = json_dumps(messages, JSON_COMPACT);
    tj = tools && json_array_size(tools) ? json_dumps(tools, JSON_COMPACT) : NULL;
    HB_CHECK(mj, HEARTH_E_NOMEM, "out of memory");
    rc = hearth_chat_apply(m, stored_tmpl, mj, tj, true, out, msg, sizeof msg);
    HB_CHECK(rc == HEARTH_OK, rc == HEARTH_E_TEMPLATE || rc == HEARTH_E_INVALID ? rc : HEARTH_E_TEMPLATE,
             "chat template failed: %s", msg);
out:
    free(mj);
    free(tj);
    return rc;
}
