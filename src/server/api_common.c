/* api_common.c — the shared prologue of model-using handlers and request-field helpers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "store/store.h"

bool api_begin(http_req *hr, api_call *c, bool dflt_ka) {
    hb_err e = { 0 };
    (void)dflt_ka;
    memset(c, 0, sizeof *c);
    c->hr = hr;
    json_t *j = hr->json;
    if (!j) {
        c->ret = http_error(hr, 400, "missing request body");
        return false;
    }
    json_t *m = json_object_get(j, "model");
    if (!m) m = json_object_get(j, "name");
    if (!json_is_string(m) || json_string_length(m) == 0) {
        c->ret = http_error(hr, 400, "model is required (a string)");
        return false;
    }
    snprintf(c->model, sizeof c->model, "%s", json_string_value(m));
    if (gen_keep_alive(json_object_get(j, "keep_alive"), hr->srv->p.keep_alive_ms < 0 ? -1 : hr->srv->p.keep_alive_ms * 1000000LL,
                       &c->keep_alive, &e)) {
        c->ret = http_error(hr, 400, "%s", e.msg);
        return false;
    }
    int status = 200;
    if (sched_acquire(hr->srv->sched, c->model, c->keep_alive, &c->rn, &c->load_ns, &status, &e)) {
        if (status == 404) c->ret = http_error(hr, 404, "model '%s' not found, try pulling it first", c->model);
        else c->ret = http_error(hr, status, "%s", e.msg);
        return false;
    }
    if (store_info_json(hr->srv->models_dir, c->model, &c->info, &e)) {
        sched_release(hr->srv->sched, c->rn);
        c->rn = NULL;
        c->ret = http_error(hr, http_status_of(e.code), "%s", e.msg);
        return false;
    }
    c->params = json_object_get(c->info, "parameters");
    c->tmpl = json_string_value(json_object_get(c->info, "template"));
    c->system = json_string_value(json_object_get(c->info, "system"));
    if (c->tmpl && (!*c->tmpl || hearth_template_is_go(c->tmpl))) {
        /* Models pulled from an Ollama registry carry Go-template TEMPLATE layers; hearth
         * renders Jinja, so those fall back to the GGUF's own chat template. */
        if (*c->tmpl) SRV_LOG(hr->srv, HEARTH_LOG_DEBUG, "model=%s: stored template is Go syntax; using the GGUF template", c->model);
        c->tmpl = NULL;
    }
    return true;
}

void api_end(api_call *c, bool release) {
    if (release && c->rn) sched_release(c->hr->srv->sched, c->rn);
    c->rn = NULL;
    json_decref(c->info);
    c->info = NULL;
}

int api_check_types(json_t *obj, hb_err *err, ...) {
    va_list ap;
    int rc = HEARTH_OK;
    va_start(ap, err);
    const char *k;
    while (!rc && (k = va_arg(ap, const char *)) != NULL) {
        int t = va_arg(ap, int);
        json_t *v = json_object_get(obj, k);
        if (!v || json_is_null(v)) continue;
        bool ok = (t == 's' && json_is_string(v)) || (t == 'b' && json_is_boolean(v)) || (t == 'a' && json_is_array(v)) ||
                  (t == 'o' && json_is_object(v)) || (t == 'n' && json_is_number(v));
        const char *tn = t == 's' ? "a string" : t == 'b' ? "a boolean" : t == 'a' ? "an array" : t == 'o' ? "an object" : "a number";
        if (!ok) rc = hb_fail(err, HEARTH_E_INVALID, "field '%s' must be %s", k, tn);
    }
    va_end(ap);
    return rc;
}

int api_chat_messages(api_call *c, json_t *in, json_t **out, hb_err *err) {
    json_t *norm = NULL;
    int rc = gen_messages(in, &norm, err);
    if (rc) return rc;
    json_t *all = json_array();
    bool has_system = false;
    for (size_t i = 0; i < json_array_size(norm); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(norm, i), "role")), "system") == 0) has_system = true;
    if (c->system && *c->system && !has_system)
        json_array_append_new(all, json_pack("{s:s, s:s}", "role", "system", "content", c->system));
    json_t *stored = json_object_get(c->info, "messages");
    for (size_t i = 0; json_is_array(stored) && i < json_array_size(stored); i++) json_array_append(all, json_array_get(stored, i));
    json_array_extend(all, norm);
    json_decref(norm);
    *out = all;
    return HEARTH_OK;
}

int api_generate_prompt(api_call *c, const char *prompt, char **out, hb_err *err) {
    json_t *j = c->hr->json;
    const char *sys = json_string_value(json_object_get(j, "system"));
    const char *tmpl = json_string_value(json_object_get(j, "template"));
    if (!sys) sys = c->system;
    if (json_is_true(json_object_get(j, "raw"))) {
        *out = strdup(prompt);
        return *out ? HEARTH_OK : hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    }
    if (!tmpl || !*tmpl) tmpl = c->tmpl;
    if (!tmpl && !hearth_model_chat_template(runner_model(c->rn))) {
        /* No template anywhere: a base model completes the text itself. */
        size_t n = (sys && *sys ? strlen(sys) + 1 : 0) + strlen(prompt) + 1;
        char *s = malloc(n);
        if (!s) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
        snprintf(s, n, "%s%s%s", sys && *sys ? sys : "", sys && *sys ? "\n" : "", prompt);
        *out = s;
        return HEARTH_OK;
    }
    json_t *msgs = json_array();
    if (sys && *sys) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", sys));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
    int rc = gen_chat_prompt(c->rn, tmpl, msgs, NULL, out, err);
    json_decref(msgs);
    return rc;
}

int api_infill_prompt(api_call *c, const char *prefix, const char *suffix, char **out, hb_err *err) {
    hearth_model *m = runner_model(c->rn);
    char t[3][64];
    *out = NULL;
    for (int i = 0; i < 3; i++) {
        size_t n = 0;
        hearth_token id = hearth_token_fim(m, HEARTH_FIM_PRE + i);
        if (id < 0 || hearth_token_piece(m, id, HEARTH_DETOK_UNPARSE_SPECIAL, t[i], sizeof t[i] - 1, &n) != HEARTH_OK)
            return hb_fail(err, HEARTH_E_INVALID, "model '%s' does not support insert (suffix): its vocabulary has no fill-in-the-middle tokens",
                           c->model);
        t[i][n] = '\0';
    }
    size_t len = strlen(t[0]) + strlen(prefix) + strlen(t[1]) + strlen(suffix) + strlen(t[2]) + 1;
    char *s = malloc(len);
    if (!s) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    snprintf(s, len, "%s%s%s%s%s", t[0], prefix, t[1], suffix, t[2]);
    *out = s;
    return HEARTH_OK;
}

int api_token_array(runner *rn, json_t *arr, const char *field, hearth_token **out, size_t *n, hb_err *err) {
    int rc = HEARTH_OK;
    size_t cnt = json_array_size(arr);
    int32_t nv = hearth_model_n_vocab(runner_model(rn));
    hearth_token *t = hb_malloc_n(cnt ? cnt : 1, sizeof *t);
    *out = NULL, *n = 0;
    HB_CHECK(t, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        json_t *v = json_array_get(arr, i);
        HB_CHECK(json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < nv, HEARTH_E_INVALID,
                 "%s[%zu] is not a token id in [0, %d)", field, i, nv);
        t[i] = (hearth_token)json_integer_value(v);
    }
    *out = t, *n = cnt;
    t = NULL;
out:
    free(t);
    return rc;
}

int api_embed_dims(api_call *c, json_t *j, int64_t *dims, hb_err *err) {
    json_t *d = json_object_get(j, "dimensions");
    int32_t ne = hearth_model_n_embd(runner_model(c->rn));
    *dims = 0;
    if (!d || json_is_null(d)) return HEARTH_OK;
    if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > ne)
        return hb_fail(err, HEARTH_E_INVALID, "dimensions must be a whole number from 1 to %d (this model's embedding size)", ne);
    *dims = json_integer_value(d);
    return HEARTH_OK;
}

/* Keeps the first dims of the ne values of v, scaled to unit length again (the full vector
 * is unit length: docs/api.md). */
static int32_t embed_cut(float *v, int32_t ne, int64_t dims) {
    if (dims <= 0 || dims >= ne) return ne;
    double ss = 0.0;
    for (int64_t i = 0; i < dims; i++) ss += (double)v[i] * v[i];
    float k = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int64_t i = 0; i < dims; i++) v[i] *= k;
    return (int32_t)dims;
}

/* Embeds one token list into a JSON array of floats. */
static int embed_one(api_call *c, hearth_token *t, size_t n, const api_embed_opts *o, json_t *vecs, hb_err *err) {
    hearth_model *m = runner_model(c->rn);
    int32_t ne = hearth_model_n_embd(m);
    if (o->truncate && n > runner_n_ctx(c->rn)) n = runner_n_ctx(c->rn);
    float *v = hb_malloc_n((size_t)(ne > 0 ? ne : 1), sizeof(float));
    if (!v) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    int rc = runner_embed(c->rn, t, (int32_t)n, v, (size_t)ne, err);
    if (!rc) {
        json_t *a = json_array();
        int32_t keep = embed_cut(v, ne, o->dims);
        for (int32_t i = 0; i < keep; i++) json_array_append_new(a, json_real(v[i]));
        json_array_append_new(vecs, a);
    }
    free(v);
    return rc;
}

int api_embed_inputs(api_call *c, json_t *input, const api_embed_opts *o, json_t **vecs, int64_t *n_tok, hb_err *err) {
    int rc = HEARTH_OK;
    json_t *list = NULL;
    *vecs = json_array();
    *n_tok = 0;
    HB_CHECK(input && !json_is_null(input), HEARTH_E_INVALID, "input is required");
    if (json_is_string(input) && json_string_length(input) == 0 && o->empty_ok) goto out; /* Ollama: no vector */
    HB_CHECK(o->empty_ok || !json_is_array(input) || json_array_size(input) > 0, HEARTH_E_INVALID, "input must not be empty");
    if (json_is_string(input) || (json_is_array(input) && json_array_size(input) && json_is_integer(json_array_get(input, 0))))
        list = json_pack("[O]", input);
    else {
        HB_CHECK(json_is_array(input), HEARTH_E_INVALID, "input must be a string or an array of strings");
        list = json_incref(input);
    }
    HB_CHECK(json_array_size(list) <= 2048, HEARTH_E_INVALID, "at most 2048 inputs per request");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *it = json_array_get(list, i);
        hearth_token *t = NULL;
        size_t n = 0;
        char msg[256] = "";
        if (json_is_string(it)) {
            HB_CHECK(o->empty_ok || json_string_length(it) > 0, HEARTH_E_INVALID,
                     list == input ? "input[%zu] must not be an empty string" : "input must not be an empty string", i);
            rc = hearth_tokenize(runner_model(c->rn), json_string_value(it), json_string_length(it), HEARTH_TOK_ADD_SPECIAL, &t, &n, msg, sizeof msg);
            HB_CHECK(rc == HEARTH_OK, rc, "cannot tokenize input %zu: %s", i, msg);
        } else {
            HB_CHECK(json_is_array(it), HEARTH_E_INVALID, "input[%zu] must be a string or an array of token ids", i);
            char field[40] = "input"; /* a nested list names its element: input[2][5] */
            if (list == input) snprintf(field, sizeof field, "input[%zu]", i);
            if ((rc = api_token_array(c->rn, it, field, &t, &n, err))) goto out;
        }
        *n_tok += (int64_t)(o->truncate && n > runner_n_ctx(c->rn) ? runner_n_ctx(c->rn) : n);
        rc = embed_one(c, t, n, o, *vecs, err);
        hearth_free(t);
        if (rc) goto out;
    }
out:
    json_decref(list);
    if (rc) {
        json_decref(*vecs);
        *vecs = NULL;
    }
    return rc;
}
