/* create.c — builds a stored model from a Modelfile: imports (copies) the GGUF or
 * inherits a stored model's layers, writes template/system/params/messages/license layers
 * and the config blob, and finally the manifest (the one step that makes the model
 * visible, so an interrupted create leaves at most unreferenced blobs behind).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "chat/render.h"
#include "gguf/gguf.h"
#include "store/store.h"

static void progress(hearth_progress_fn fn, void *ud, const char *status) {
    if (fn) fn(ud, status, NULL, 0, 0);
}

/* Parses the whole GGUF structure (header, metadata, tensor table, every tensor inside the
 * file) so that a create from a random, truncated or corrupt file fails up front with the
 * reader's error instead of storing a model no command can load. */
static int check_gguf(const char *path, hb_err *err) {
    gguf_file *g = NULL;
    int rc = gguf_open(path, &g, err);
    gguf_close(g);
    return rc;
}

/* True when FROM names a file rather than a stored model. */
static bool from_is_path(const char *from, const char *full) {
    struct stat st;
    if (from[0] == '/' || from[0] == '.' || from[0] == '~') return true;
    size_t n = strlen(from);
    if (n > 5 && strcmp(from + n - 5, ".gguf") == 0) return true;
    return stat(full, &st) == 0 && S_ISREG(st.st_mode);
}

/* Sets or replaces the layer of a media type. */
static int set_layer(store_manifest *m, const store_layer *l, hb_err *err) {
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i].media_type, l->media_type) == 0) {
            m->layers[i] = *l;
            return HEARTH_OK;
        }
    if (m->n_layers >= STORE_MAX_LAYERS) return hb_fail(err, HEARTH_E_INVALID, "too many layers");
    m->layers[m->n_layers++] = *l;
    return HEARTH_OK;
}

static int put_text(const char *root, store_manifest *m, const char *mt, const char *text, hb_err *err) {
    store_layer l;
    int rc = store_blob_put(root, mt, text, strlen(text), &l, err);
    return rc ? rc : set_layer(m, &l, err);
}

static int put_json(const char *root, store_manifest *m, const char *mt, json_t *v, hb_err *err) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (!s) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    store_layer l;
    int rc = store_blob_put(root, mt, s, strlen(s), &l, err);
    free(s);
    return rc ? rc : set_layer(m, &l, err);
}

/* Merges PARAMETER lines over the inherited params object (typed; stop is a list). */
static json_t *merge_params(json_t *base, const store_modelfile *mf) {
    json_t *p = json_is_object(base) ? json_deep_copy(base) : json_object();
    bool stop_reset = false;
    for (int i = 0; p && i < mf->n_params; i++) {
        const char *k = mf->params[i].key, *v = mf->params[i].value;
        char kind = store_param_kind(k);
        if (kind == 's') {
            json_t *arr = json_object_get(p, k);
            if (!stop_reset || !json_is_array(arr)) {
                arr = json_array();
                json_object_set_new(p, k, arr);
                stop_reset = true;
            }
            json_array_append_new(arr, json_string(v));
        } else if (kind == 'i') {
            json_object_set_new(p, k, json_integer(strtoll(v, NULL, 10)));
        } else if (kind == 'f') {
            json_object_set_new(p, k, json_real(strtod(v, NULL)));
        } else {
            json_object_set_new(p, k, json_boolean(strcmp(v, "true") == 0));
        }
    }
    return p;
}

/* Reads architecture and weight type from the GGUF metadata (best effort: the config blob
 * only feeds `details`, which /api/show recomputes from the file when missing). */
static json_t *make_config(const char *gguf_path, const store_manifest *m) {
    hearth_model_params mp = hearth_model_default_params();
    mp.vocab_only = true;
    hearth_model *model = NULL;
    const char *arch = "", *ftype = "";
    char ps[32] = "";
    if (hearth_model_load(gguf_path, &mp, &model, NULL, 0) == HEARTH_OK && model) {
        arch = hearth_model_arch(model);
        ftype = hearth_model_ftype_name(model);
        hb_human_count(hearth_model_n_params(model), ps, sizeof ps);
    }
    json_t *diff = json_array();
    for (int i = 0; i < m->n_layers; i++) json_array_append_new(diff, json_string(m->layers[i].digest));
    json_t *c = json_pack("{s:s, s:s, s:[s], s:s, s:s, s:s, s:s, s:{s:s, s:o}}", "model_format", "gguf",
                          "model_family", arch ? arch : "", "model_families", arch ? arch : "",
                          "file_type", ftype ? ftype : "", "parameter_size", ps, "architecture", "amd64", "os", "linux",
                          "rootfs", "type", "layers", "diff_ids", diff);
    hearth_model_free(model);
    return c;
}

/* Fills m with the base layers: an imported GGUF, an existing blob, or a stored model. */
static int load_base(const char *root, const store_modelfile *mf, const char *base_dir, bool paths, store_manifest *m,
                     json_t **base_params, char *gguf_path, size_t cap, hearth_progress_fn fn, void *ud, hb_err *err) {
    int rc = HEARTH_OK;
    char full[4200];
    const char *from = mf->from;
    memset(m, 0, sizeof *m);
    if (store_digest_valid(from, false)) {
        store_layer l = { .size = 0 };
        struct stat st;
        snprintf(l.media_type, sizeof l.media_type, "%s", STORE_MT_MODEL);
        snprintf(l.digest, sizeof l.digest, "%s", from);
        if ((rc = store_blob_path(root, from, gguf_path, cap, err))) goto out;
        HB_CHECK(stat(gguf_path, &st) == 0, HEARTH_E_NOT_FOUND, "blob %s is not in the store (upload it first)", from);
        if ((rc = check_gguf(gguf_path, err))) goto out;
        l.size = (uint64_t)st.st_size;
        rc = set_layer(m, &l, err);
        goto out;
    }
    if (from[0] == '~' && from[1] == '/' && getenv("HOME")) snprintf(full, sizeof full, "%s%s", getenv("HOME"), from + 1);
    else if (from[0] != '/' && base_dir && *base_dir) snprintf(full, sizeof full, "%s/%s", base_dir, from);
    else snprintf(full, sizeof full, "%s", from);
    if (paths && from_is_path(from, full)) {
        store_layer l;
        if ((rc = check_gguf(full, err))) goto out;
        progress(fn, ud, "importing model file");
        if ((rc = store_blob_import(root, full, STORE_MT_MODEL, &l, err))) goto out;
        if ((rc = set_layer(m, &l, err))) goto out;
        rc = store_blob_path(root, l.digest, gguf_path, cap, err);
        goto out;
    }
    store_name nm;
    if ((rc = store_name_parse(from, &nm, err))) goto out;
    if ((rc = store_manifest_load(root, &nm, m, err))) goto out;
    if ((rc = store_model_path(root, from, false, gguf_path, cap, err))) goto out;
    const store_layer *pl = store_manifest_find(m, STORE_MT_PARAMS);
    if (pl) {
        char *text = NULL;
        size_t len = 0;
        if (!store_blob_read(root, pl->digest, &text, &len, err)) *base_params = json_loadb(text, len, 0, NULL);
        free(text);
    }
out:
    return rc;
}

int store_create(const char *root, const char *name, const store_modelfile *mf, const char *base_dir, bool paths,
                 hearth_progress_fn fn, void *ud, hb_err *err) {
    int rc = HEARTH_OK;
    store_name nm;
    store_manifest m;
    json_t *base_params = NULL, *params = NULL, *msgs = NULL, *config = NULL;
    char gguf_path[4200], mpath[4200];
    char *mtext = NULL;
    if ((rc = store_name_parse(name, &nm, err))) goto out;
    /* Checked before anything is imported. A Modelfile's stop lines replace the base
     * model's (merge_params), so its own count is the stored one. */
    int n_stop = 0;
    for (int i = 0; i < mf->n_params; i++) n_stop += store_param_kind(mf->params[i].key) == 's';
    HB_CHECK(n_stop <= STORE_MAX_STOPS, HEARTH_E_INVALID, "at most %d stop sequences (PARAMETER stop)", STORE_MAX_STOPS);
    /* A TEMPLATE that is not valid Jinja would fail at every later request: refuse it now.
     * Go templates (Modelfiles written for Ollama) are stored as they are; at run time they
     * fall back to the GGUF's own template (hearth_template_is_go). */
    if (mf->tmpl && *mf->tmpl && !hearth_template_is_go(mf->tmpl) &&
        (rc = chat_template_check(mf->tmpl, strlen(mf->tmpl), err))) {
        hb_err inner = *err;
        hb_err_clear(err);
        rc = hb_fail(err, HEARTH_E_INVALID, "Modelfile TEMPLATE is not a valid Jinja template: %s", inner.msg);
        goto out;
    }
    if ((rc = load_base(root, mf, base_dir, paths, &m, &base_params, gguf_path, sizeof gguf_path, fn, ud, err))) goto out;
    progress(fn, ud, "writing layers");
    if (mf->tmpl && (rc = put_text(root, &m, STORE_MT_TEMPLATE, mf->tmpl, err))) goto out;
    if (mf->system && (rc = put_text(root, &m, STORE_MT_SYSTEM, mf->system, err))) goto out;
    if (mf->license && (rc = put_text(root, &m, STORE_MT_LICENSE, mf->license, err))) goto out;
    if (mf->n_params) {
        params = merge_params(base_params, mf);
        HB_CHECK(params, HEARTH_E_NOMEM, "out of memory");
        if ((rc = put_json(root, &m, STORE_MT_PARAMS, params, err))) goto out;
    }
    if (mf->n_messages) {
        msgs = json_array();
        for (int i = 0; i < mf->n_messages; i++)
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", mf->messages[i].key, "content", mf->messages[i].value));
        if ((rc = put_json(root, &m, STORE_MT_MESSAGES, msgs, err))) goto out;
    }
    config = make_config(gguf_path, &m);
    HB_CHECK(config, HEARTH_E_NOMEM, "out of memory");
    char *ctext = json_dumps(config, JSON_COMPACT);
    HB_CHECK(ctext, HEARTH_E_NOMEM, "out of memory");
    rc = store_blob_put(root, STORE_MT_CONFIG, ctext, strlen(ctext), &m.config, err);
    free(ctext);
    if (rc) goto out;
    progress(fn, ud, "writing manifest");
    mtext = store_manifest_dump(&m);
    HB_CHECK(mtext, HEARTH_E_NOMEM, "out of memory");
    if ((rc = store_manifest_path(root, &nm, mpath, sizeof mpath, err))) goto out;
    if ((rc = store_manifest_publish(root, mpath, &m, mtext, strlen(mtext), err))) goto out;
    progress(fn, ud, "success");
out:
    free(mtext);
    json_decref(base_params), json_decref(params), json_decref(msgs), json_decref(config);
    return rc;
}

hearth_status hearth_store_create(const char *root, const char *name, const char *modelfile, size_t len,
                                  const char *base_dir, hearth_progress_fn fn, void *ud, char *err, size_t errlen) {
    hb_err e = { 0 };
    store_modelfile mf;
    int rc = store_modelfile_parse(modelfile, len, &mf, &e);
    if (!rc) {
        rc = store_create(root, name, &mf, base_dir, true, fn, ud, &e);
        store_modelfile_free(&mf);
    }
    if (err && errlen) snprintf(err, errlen, "%s", rc ? e.msg : "");
    return (hearth_status)rc;
}

int store_blob_adopt(const char *root, const char *tmp_path, const char *digest, hb_err *err) {
    int rc = HEARTH_OK;
    char got[72], path[4200];
    uint64_t size = 0;
    if ((rc = store_blob_path(root, digest, path, sizeof path, err))) goto out;
    if ((rc = store_sha256_file(tmp_path, got, &size, err))) goto out;
    HB_CHECK(strcmp(got, digest) == 0, HEARTH_E_FORMAT, "digest mismatch: the data hashes to %s, not %s", got, digest);
    HB_CHECK(rename(tmp_path, path) == 0, HEARTH_E_IO, "cannot move blob into place: %s", strerror(errno));
out:
    if (rc) unlink(tmp_path);
    return rc;
}
