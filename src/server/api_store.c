/* api_store.c — Ollama endpoints over the model store: tags, show, copy, delete, create,
 * blobs, pull, ps, version. Long operations (pull, create) stream progress as NDJSON from
 * a worker thread; a client that goes away cancels a pull (the partial download is kept,
 * so the next pull resumes).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/api.h"
#include "store/store.h"

static json_t *time_json(int64_t t) {
    char buf[40];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static const char *body_name(http_req *hr, const char *k1, const char *k2) {
    const char *s = json_string_value(json_object_get(hr->json, k1));
    if (!s && k2) s = json_string_value(json_object_get(hr->json, k2));
    return s;
}

/* details object from the stored config (and the model when loaded). */
static json_t *details_json(json_t *config, hearth_model *m) {
    const char *fam = json_string_value(json_object_get(config, "model_family"));
    const char *ft = json_string_value(json_object_get(config, "file_type"));
    char ps[32] = "";
    if (m) {
        fam = hearth_model_arch(m);
        ft = hearth_model_ftype_name(m);
        hb_human_count(hearth_model_n_params(m), ps, sizeof ps);
    } else { /* the store's config (hearth create writes it; Ollama's registry calls it model_type) */
        const char *c = json_string_value(json_object_get(config, "parameter_size"));
        if (!c) c = json_string_value(json_object_get(config, "model_type"));
        snprintf(ps, sizeof ps, "%s", c ? c : "");
    }
    return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format", "gguf", "family", fam ? fam : "",
                     "families", fam ? fam : "", "parameter_size", ps, "quantization_level", ft ? ft : "");
}

static enum MHD_Result tags(http_req *hr) {
    hearth_store_entry *v = NULL;
    size_t n = 0;
    char err[512];
    if (hearth_store_list(hr->srv->models_dir, &v, &n, err, sizeof err)) return http_error(hr, 500, "%s", err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *info = NULL;
        hb_err e = { 0 };
        store_info_json(hr->srv->models_dir, v[i].name, &info, &e);
        json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:s, s:o}", "name", v[i].name, "model", v[i].name, "modified_at",
                              time_json(v[i].modified), "size", (json_int_t)v[i].size, "digest", v[i].digest + 7, "details",
                              details_json(json_object_get(info, "config"), NULL));
        json_decref(info);
        json_array_append_new(arr, o);
    }
    hearth_free(v);
    return http_json(hr, 200, json_pack("{s:o}", "models", arr));
}

/* model_info: every GGUF metadata key with its JSON value; arrays (vocabularies, merges)
 * are null unless verbose, as Ollama does. */
static void model_info(json_t *mi, const char *path, hearth_model *m, bool verbose) {
    hearth_gguf *g = NULL;
    if (hearth_gguf_open(path, &g, NULL, 0) == HEARTH_OK) {
        for (uint64_t i = 0; i < hearth_gguf_n_kv(g); i++) {
            const char *key = hearth_gguf_key(g, i);
            const char *elem = NULL;
            uint64_t n = 0;
            bool arr = hearth_gguf_array_info(g, i, &elem, &n);
            if (!key || strncmp(key, "GGUF.", 5) == 0) continue;
            if (arr && !verbose) {
                json_object_set_new(mi, key, json_null());
                continue;
            }
            char *text = hearth_gguf_value_json(g, i, arr ? (size_t)n : 0);
            json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
            json_object_set_new(mi, key, v ? v : json_null());
            hearth_free(text);
        }
        hearth_gguf_close(g);
    }
    json_object_set_new(mi, "general.parameter_count", json_integer((json_int_t)hearth_model_n_params(m)));
}

/* PARAMETER lines as Ollama prints them. */
static char *params_text(json_t *params) {
    size_t cap = 1024, len = 0;
    char *s = calloc(1, cap);
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
        json_t *items = json_is_array(v) ? json_incref(v) : json_pack("[O]", v);
        for (size_t i = 0; s && i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            char *val = json_is_string(it) ? NULL : json_dumps(it, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
            const char *vs = val ? val : json_string_value(it);
            size_t need = len + strlen(k) + strlen(vs ? vs : "") + 8;
            if (need > cap) {
                cap = need * 2;
                char *ns = realloc(s, cap);
                if (!ns) free(s);
                s = ns;
            }
            if (s) len += (size_t)sprintf(s + len, json_is_string(it) ? "%-30s \"%s\"\n" : "%-30s %s\n", k, vs ? vs : "");
            free(val);
        }
        json_decref(items);
    }
    if (s && len) s[len - 1] = '\0';
    return s;
}

/* One Modelfile argument: a """ block, or a quoted string with \\ and \" escapes where the
 * text would end the block early (store/modelfile.c reads both). */
static void mf_arg(FILE *f, const char *v) {
    size_t n = strlen(v);
    if (!strstr(v, "\"\"\"") && (n == 0 || v[n - 1] != '"')) {
        fprintf(f, "\"\"\"%s\"\"\"", v);
        return;
    }
    fputc('"', f);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* The Modelfile that recreates a stored model (what `ollama show --modelfile` prints): FROM
 * the weights file, its TEMPLATE, SYSTEM, PARAMETER, LICENSE and MESSAGE lines. Caller
 * frees; NULL when out of memory. */
static char *modelfile_text(const char *name, const char *path, const char *tmpl, json_t *info) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fprintf(f, "# Modelfile generated by hearth\n# To build a new Modelfile based on this one, replace FROM with:\n# FROM %s\n\nFROM %s\n",
            name, path);
    fputs("TEMPLATE ", f);
    mf_arg(f, tmpl ? tmpl : "");
    fputc('\n', f);
    const char *sys = json_string_value(json_object_get(info, "system")), *k;
    if (sys) {
        fputs("SYSTEM ", f);
        mf_arg(f, sys);
        fputc('\n', f);
    }
    json_t *v, *lic = json_object_get(info, "license");
    json_object_foreach(json_object_get(info, "parameters"), k, v) {
        for (size_t i = 0; i < (json_is_array(v) ? json_array_size(v) : 1); i++) {
            json_t *it = json_is_array(v) ? json_array_get(v, i) : v;
            char *val = json_is_string(it) ? NULL : json_dumps(it, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
            fprintf(f, "PARAMETER %s ", k);
            if (val) fputs(val, f);
            else mf_arg(f, json_string_value(it));
            fputc('\n', f);
            free(val);
        }
    }
    for (size_t i = 0; i < (json_is_array(lic) ? json_array_size(lic) : 1); i++) {
        const char *l = json_string_value(json_is_array(lic) ? json_array_get(lic, i) : lic);
        if (!l) continue;
        fputs("LICENSE ", f);
        mf_arg(f, l);
        fputc('\n', f);
    }
    size_t i;
    json_array_foreach(json_object_get(info, "messages"), i, v) {
        const char *role = json_string_value(json_object_get(v, "role")), *c = json_string_value(json_object_get(v, "content"));
        if (!role || !c) continue;
        fprintf(f, "MESSAGE %s ", role);
        mf_arg(f, c);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? buf : (free(buf), NULL);
}

static enum MHD_Result show(http_req *hr) {
    hb_err e = { 0 };
    json_t *info = NULL;
    hearth_model *m = NULL;
    char msg[512] = "";
    const char *name = body_name(hr, "model", "name");
    if (!hr->json) return http_error(hr, 400, "missing request body");
    if (!name) return http_error(hr, 400, "model is required (a string)");
    if (store_info_json(hr->srv->models_dir, name, &info, &e)) {
        if (e.code == HEARTH_E_NOT_FOUND) return http_error(hr, 404, "model '%s' not found", name);
        return http_error(hr, http_status_of(e.code), "%s", e.msg);
    }
    hearth_model_params mp = hearth_model_default_params();
    mp.vocab_only = true;
    const char *path = json_string_value(json_object_get(info, "model_path"));
    if (hearth_model_load(path, &mp, &m, msg, sizeof msg)) {
        json_decref(info);
        return http_error(hr, 500, "cannot read model '%s': %s", name, msg);
    }
    json_t *o = json_object();
    const char *tmpl = json_string_value(json_object_get(info, "template"));
    if (!tmpl) tmpl = hearth_model_chat_template(m);
    json_object_set_new(o, "template", json_string(tmpl ? tmpl : ""));
    json_t *sys = json_object_get(info, "system"), *lic = json_object_get(info, "license");
    if (sys) json_object_set(o, "system", sys);
    if (lic) json_object_set(o, "license", lic);
    char *pt = params_text(json_object_get(info, "parameters"));
    json_object_set_new(o, "parameters", json_string(pt ? pt : ""));
    char *mf = modelfile_text(name, path, tmpl, info);
    json_object_set_new(o, "modelfile", jstr(mf ? mf : "", mf ? strlen(mf) : 0));
    free(mf);
    free(pt);
    json_object_set_new(o, "details", details_json(json_object_get(info, "config"), m));
    json_t *mi = json_object();
    model_info(mi, path, m, json_is_true(json_object_get(hr->json, "verbose")));
    json_object_set_new(o, "model_info", mi);
    json_t *caps = json_array();
    json_array_append_new(caps, json_string("completion"));
    if (tmpl && strstr(tmpl, "tools")) json_array_append_new(caps, json_string("tools"));
    json_object_set_new(o, "capabilities", caps);
    json_object_set_new(o, "modified_at", time_json(json_integer_value(json_object_get(info, "modified"))));
    json_object_set(o, "messages", json_object_get(info, "messages"));
    hearth_model_free(m);
    json_decref(info);
    return http_json(hr, 200, o);
}

static enum MHD_Result copy(http_req *hr) {
    hb_err e = { 0 };
    const char *src = body_name(hr, "source", NULL), *dst = body_name(hr, "destination", NULL);
    if (!src || !dst) return http_error(hr, 400, "source and destination are required (strings)");
    if (store_copy(hr->srv->models_dir, src, dst, &e)) return http_error(hr, http_status_of(e.code), "%s", e.msg);
    return http_text(hr, 200, "application/json", "{}", 2);
}

static enum MHD_Result delete_model(http_req *hr) {
    hb_err e = { 0 };
    const char *name = body_name(hr, "model", "name");
    if (!name) return http_error(hr, 400, "model is required (a string)");
    sched_unload(hr->srv->sched, name);
    if (store_remove(hr->srv->models_dir, name, &e)) {
        if (e.code == HEARTH_E_NOT_FOUND) return http_error(hr, 404, "model '%s' not found", name);
        return http_error(hr, http_status_of(e.code), "%s", e.msg);
    }
    return http_text(hr, 200, "application/json", "{}", 2);
}

static enum MHD_Result ps(http_req *hr) {
    runner_info *v = NULL;
    size_t n = 0;
    sched_list(hr->srv->sched, &v, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *info = NULL;
        hb_err e = { 0 };
        store_info_json(hr->srv->models_dir, v[i].name, &info, &e);
        const char *dg = json_string_value(json_object_get(info, "digest"));
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:I, s:I}", "name", v[i].name, "model", v[i].name, "size",
                              (json_int_t)v[i].size, "digest", dg ? dg + 7 : "", "details",
                              details_json(json_object_get(info, "config"), NULL), "expires_at",
                              v[i].expires_at ? time_json(v[i].expires_at) : json_string("2318-01-01T00:00:00Z"),
                              "size_vram", (json_int_t)v[i].size_vram, "context_length", (json_int_t)v[i].n_ctx);
        json_decref(info);
        json_array_append_new(arr, o);
    }
    free(v);
    return http_json(hr, 200, json_pack("{s:o}", "models", arr));
}

/* ---- create ------------------------------------------------------------------------------- */

/* Builds a Modelfile struct from the JSON create request (new or legacy shape). */
static int create_mf(http_req *hr, store_modelfile *mf, hb_err *err) {
    json_t *j = hr->json;
    int rc = HEARTH_OK;
    const char *legacy = json_string_value(json_object_get(j, "modelfile"));
    memset(mf, 0, sizeof *mf);
    if (legacy) return store_modelfile_parse(legacy, strlen(legacy), mf, err);
    if ((rc = api_check_types(j, err, "from", 's', "files", 'o', "template", 's', "system", 's', "license", 's',
                              "parameters", 'o', "messages", 'a', "quantize", 's', NULL))) return rc;
    HB_CHECK(!json_object_get(j, "quantize") || json_is_null(json_object_get(j, "quantize")), HEARTH_E_UNSUPPORTED,
             "quantize is not supported");
    const char *from = json_string_value(json_object_get(j, "from"));
    json_t *files = json_object_get(j, "files");
    if (json_object_size(files)) {
        const char *k;
        json_t *v;
        json_object_foreach(files, k, v) {
            HB_CHECK(json_is_string(v) && store_digest_valid(json_string_value(v), false), HEARTH_E_INVALID,
                     "files.%s must be a sha256 digest", k);
            size_t kl = strlen(k);
            if (kl > 5 && strcmp(k + kl - 5, ".gguf") == 0) from = json_string_value(v);
        }
    }
    HB_CHECK(from && *from, HEARTH_E_INVALID, "create needs \"from\" (a model name) or \"files\" with a .gguf blob");
    mf->from = strdup(from);
    const char *t = json_string_value(json_object_get(j, "template"));
    const char *s = json_string_value(json_object_get(j, "system"));
    const char *l = json_string_value(json_object_get(j, "license"));
    if (t) mf->tmpl = strdup(t);
    if (s) mf->system = strdup(s);
    if (l) mf->license = strdup(l);
    json_t *params = json_object_get(j, "parameters");
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
        HB_CHECK(store_param_kind(k), HEARTH_E_INVALID, "unknown parameter '%.64s'", k);
        json_t *items = json_is_array(v) ? json_incref(v) : json_pack("[O]", v);
        for (size_t i = 0; i < json_array_size(items) && mf->n_params < STORE_MODELFILE_MAX_ITEMS; i++) {
            json_t *it = json_array_get(items, i);
            char *val = json_is_string(it) ? strdup(json_string_value(it)) : json_dumps(it, JSON_ENCODE_ANY);
            if (val && (rc = store_param_check(k, val, err))) { /* what generation will accept (a type or range) */
                free(val);
                json_decref(items);
                goto out;
            }
            store_kv *np = realloc(mf->params, sizeof *np * (size_t)(mf->n_params + 1));
            if (!np || !val) {
                free(val);
                json_decref(items);
                HB_CHECK(false, HEARTH_E_NOMEM, "out of memory");
            }
            mf->params = np;
            np[mf->n_params].key = strdup(k);
            np[mf->n_params++].value = val;
        }
        json_decref(items);
    }
    json_t *msgs = json_object_get(j, "messages");
    for (size_t i = 0; i < json_array_size(msgs) && mf->n_messages < STORE_MODELFILE_MAX_ITEMS; i++) {
        const char *role = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
        const char *content = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
        HB_CHECK(role && content, HEARTH_E_INVALID, "messages[%zu] needs role and content strings", i);
        store_kv *np = realloc(mf->messages, sizeof *np * (size_t)(mf->n_messages + 1));
        HB_CHECK(np, HEARTH_E_NOMEM, "out of memory");
        mf->messages = np;
        np[mf->n_messages].key = strdup(role);
        np[mf->n_messages++].value = strdup(content);
    }
out:
    return rc;
}

static enum MHD_Result create(http_req *hr) {
    hb_err e = { 0 };
    store_modelfile mf;
    if (!hr->json) return http_error(hr, 400, "missing request body");
    const char *name = body_name(hr, "model", "name");
    if (!name) return http_error(hr, 400, "model is required (a string)");
    if (create_mf(hr, &mf, &e)) {
        store_modelfile_free(&mf);
        return http_error(hr, http_status_of(e.code), "%s", e.msg);
    }
    /* FROM names a stored model or an uploaded blob, never a file of the server's: a client
     * must not make the server read (or block on) its files. */
    int rc = store_create(hr->srv->models_dir, name, &mf, NULL, false, NULL, NULL, &e);
    store_modelfile_free(&mf);
    if (rc) return http_error(hr, http_status_of(rc), "%s", e.msg);
    bool stream = !json_is_false(json_object_get(hr->json, "stream"));
    if (stream) {
        const char *lines = "{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n";
        return http_text(hr, 200, "application/x-ndjson", lines, strlen(lines));
    }
    return http_text(hr, 200, "application/json", "{\"status\":\"success\"}", 20);
}

/* ---- blobs --------------------------------------------------------------------------------- */

static enum MHD_Result blobs(http_req *hr) {
    hb_err e = { 0 };
    const char *digest = hr->url + strlen("/api/blobs/");
    char path[4200];
    if (!store_digest_valid(digest, true)) return http_error(hr, 400, "invalid digest (expected sha256:<64 hex>)");
    char d[72];
    snprintf(d, sizeof d, "sha256:%s", digest + 7);
    if (strcmp(hr->method, "HEAD") == 0 || strcmp(hr->method, "GET") == 0) {
        if (store_blob_path(hr->srv->models_dir, d, path, sizeof path, &e)) return http_error(hr, 500, "%s", e.msg);
        if (access(path, F_OK) != 0) return http_error(hr, 404, "blob %s not found", d); /* no body on HEAD (libmicrohttpd) */
        return http_text(hr, 200, "application/json", "", 0);
    }
    if (strcmp(hr->method, "POST") != 0) return http_error(hr, 405, "method not allowed");
    if (!hr->upload_path) return http_error(hr, 400, "empty upload");
    int rc = store_blob_adopt(hr->srv->models_dir, hr->upload_path, d, &e);
    free(hr->upload_path);
    hr->upload_path = NULL;
    if (rc) return http_error(hr, rc == HEARTH_E_FORMAT ? 400 : 500, "%s", e.msg);
    return http_text(hr, 201, "application/json", "", 0);
}

/* ---- pull ---------------------------------------------------------------------------------- */

typedef struct pull_job {
    hearth_server *srv;
    struct MHD_Connection *conn;
    char name[320];
    bool insecure;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;                      /* NDJSON lines not yet sent */
    size_t len, cap;
    bool done;
    atomic_bool cancel;
} pull_job;

static void job_line(pull_job *j, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    size_t n = strlen(s);
    pthread_mutex_lock(&j->mu);
    if (j->len + n + 2 > j->cap) {
        size_t nc = (j->len + n + 2) * 2;
        char *nb = realloc(j->buf, nc);
        if (nb) j->buf = nb, j->cap = nc;
    }
    if (j->len + n + 2 <= j->cap) {
        memcpy(j->buf + j->len, s, n);
        j->len += n;
        j->buf[j->len++] = '\n';
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    free(s);
}

static void pull_progress(void *ud, const char *status, const char *digest, uint64_t done, uint64_t total) {
    pull_job *j = ud;
    if (digest) job_line(j, json_pack("{s:s, s:s, s:I, s:I}", "status", status, "digest", digest, "total", (json_int_t)total, "completed", (json_int_t)done));
    else job_line(j, json_pack("{s:s}", "status", status));
}

static bool pull_cancel(void *ud) {
    pull_job *j = ud;
    return atomic_load(&j->cancel) || atomic_load(&j->srv->stopping);
}

static void *pull_main(void *arg) {
    pull_job *j = arg;
    char err[512] = "";
    hearth_pull_params p = { .insecure = j->insecure, .progress = pull_progress, .ud = j, .cancel = pull_cancel };
    hearth_status rc = hearth_store_pull(j->srv->models_dir, j->name, &p, err, sizeof err);
    if (rc) job_line(j, json_pack("{s:s}", "error", err));
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static ssize_t pull_next(void *ud, char *out, size_t max) {
    pull_job *j = ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&j->mu);
    if (!j->len && !j->done) pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    ssize_t ret = 0;
    if (j->len) {
        size_t n = j->len < max ? j->len : max;
        memcpy(out, j->buf, n);
        memmove(j->buf, j->buf + n, j->len - n);
        j->len -= n;
        ret = (ssize_t)n;
    } else if (j->done) {
        ret = -1;
    }
    pthread_mutex_unlock(&j->mu);
    if (ret == 0 && !http_client_alive(j->conn)) {
        atomic_store(&j->cancel, true);
        ret = -2;
    }
    return ret;
}

static void pull_free(void *ud) {
    pull_job *j = ud;
    atomic_store(&j->cancel, true);
    pthread_join(j->thread, NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->buf);
    free(j);
}

/* The non-streamed pull's cancel test: the server stopping, or the client gone (this
 * handler blocks the connection's thread, so nothing else would notice either, and a
 * stalled registry would hold shutdown until the download ended). */
static bool pull_plain_cancel(void *ud) {
    http_req *hr = ud;
    return atomic_load(&hr->srv->stopping) || !http_client_alive(hr->conn);
}

static enum MHD_Result pull(http_req *hr) {
    const char *name = body_name(hr, "model", "name");
    if (!name) return http_error(hr, 400, "model is required (a string)");
    hb_err e = { 0 };
    store_name nm;
    if (store_name_parse(name, &nm, &e)) return http_error(hr, 400, "%s", e.msg);
    bool insecure = json_is_true(json_object_get(hr->json, "insecure"));
    bool stream = !json_is_false(json_object_get(hr->json, "stream"));
    if (!stream) {
        char err[512];
        hearth_pull_params p = { .insecure = insecure, .ud = hr, .cancel = pull_plain_cancel };
        hearth_status rc = hearth_store_pull(hr->srv->models_dir, name, &p, err, sizeof err);
        if (rc) return http_error(hr, rc == HEARTH_E_NOT_FOUND ? 404 : rc == HEARTH_E_IO ? 502 : rc == HEARTH_E_FORMAT ? 400 : http_status_of(rc), "%s", err);
        return http_text(hr, 200, "application/json", "{\"status\":\"success\"}", 20);
    }
    pull_job *j = calloc(1, sizeof *j);
    if (!j) return http_error(hr, 500, "out of memory");
    j->srv = hr->srv;
    j->conn = hr->conn;
    j->insecure = insecure;
    snprintf(j->name, sizeof j->name, "%s", name);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&j->thread, NULL, pull_main, j) != 0) {
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        free(j);
        return http_error(hr, 500, "cannot start the download");
    }
    http_stream st = { .next = pull_next, .done_cb = pull_free, .ud = j };
    return http_stream_start(hr, "application/x-ndjson", st);
}

enum MHD_Result api_store_route(http_req *hr) {
    const char *u = hr->url, *m = hr->method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    if (strcmp(u, "/api/version") == 0 && get)
        return http_json(hr, 200, json_pack("{s:s}", "version", HEARTH_VERSION));
    if (strcmp(u, "/api/tags") == 0 && get) return tags(hr);
    if (strcmp(u, "/api/ps") == 0 && get) return ps(hr);
    if (strcmp(u, "/api/show") == 0 && post) return show(hr);
    if (strcmp(u, "/api/copy") == 0 && post) return copy(hr);
    if (strcmp(u, "/api/delete") == 0 && strcmp(m, "DELETE") == 0) return delete_model(hr);
    if (strcmp(u, "/api/create") == 0 && post) return create(hr);
    if (strcmp(u, "/api/pull") == 0 && post) return pull(hr);
    if (strncmp(u, "/api/blobs/", 11) == 0) return blobs(hr);
    return http_error(hr, 404, "no such endpoint: %s %s", m, u);
}
