/* store.c — the public model-store API (hearth_store_*): list, resolve, info, copy, remove,
 * create. Pull lives in pull.c. All functions are stateless over the directory, so the
 * server and CLI can use them from any thread; concurrent writers are safe because every
 * write is a rename of a complete file.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "store/store.h"

static hearth_status finish(int rc, const hb_err *e, char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "%s", rc ? e->msg : "");
    return (hearth_status)rc;
}

/* ---- listing ------------------------------------------------------------------------- */

typedef struct list_ctx {
    hearth_store_entry *v;
    size_t n, cap;
} list_ctx;

static int list_add(list_ctx *l, const char *path, const store_name *nm, hb_err *err) {
    int rc = HEARTH_OK;
    char *text = NULL;
    size_t len = 0;
    store_manifest m;
    struct stat st;
    hb_err e2 = { 0 };
    /* A broken manifest is skipped, not fatal: one bad file must not hide the others. */
    if (hb_read_file(path, STORE_MANIFEST_MAX, &text, &len, &e2) || store_manifest_parse(text, len, &m, &e2)) goto out;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        hearth_store_entry *nv = realloc(l->v, nc * sizeof *nv);
        HB_CHECK(nv, HEARTH_E_NOMEM, "out of memory listing models");
        l->v = nv, l->cap = nc;
    }
    hearth_store_entry *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    store_name_display(nm, e->name, sizeof e->name);
    store_sha256_buf(text, len, e->digest);
    e->size = m.config.size;
    for (int i = 0; i < m.n_layers; i++) e->size += m.layers[i].size;
    if (stat(path, &st) == 0) e->modified = (int64_t)st.st_mtime;
out:
    free(text);
    return rc;
}

/* Visits <root>/manifests/<host>/<ns>/<model>/<tag>; depth counts the parts so far. */
static int list_walk(const char *dir, store_name *nm, int depth, list_ctx *l, hb_err *err) {
    int rc = HEARTH_OK;
    DIR *d = opendir(dir);
    if (!d) return HEARTH_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp-") || strlen(de->d_name) >= 128) continue;
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) continue;
        char *part = depth == 0 ? nm->host : depth == 1 ? nm->ns : depth == 2 ? nm->model : nm->tag;
        size_t n = strlen(de->d_name); /* < 128, checked above */
        memcpy(part, de->d_name, n + 1);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (depth < 3 && S_ISDIR(st.st_mode)) rc = list_walk(path, nm, depth + 1, l, err);
        else if (depth == 3 && S_ISREG(st.st_mode)) rc = list_add(l, path, nm, err);
        if (rc) break;
    }
    closedir(d);
    return rc;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const hearth_store_entry *)a)->name, ((const hearth_store_entry *)b)->name);
}

hearth_status hearth_store_list(const char *root, hearth_store_entry **out, size_t *n, char *err, size_t errlen) {
    hb_err e = { 0 };
    int rc;
    char r[4096], dir[4200];
    list_ctx l = { 0 };
    store_name nm;
    *out = NULL, *n = 0;
    if ((rc = store_root(root, r, sizeof r, &e))) goto out;
    snprintf(dir, sizeof dir, "%s/manifests", r);
    memset(&nm, 0, sizeof nm);
    if ((rc = list_walk(dir, &nm, 0, &l, &e))) goto out;
    if (l.n) qsort(l.v, l.n, sizeof *l.v, entry_cmp);
    *out = l.v, *n = l.n;
    l.v = NULL;
out:
    free(l.v);
    return finish(rc, &e, err, errlen);
}

/* ---- resolve / info -------------------------------------------------------------------- */

/* Whether a model argument can only mean a file: an absolute or ./ ../ path, or a .gguf
 * name (store names start with a letter or digit and have no such suffix). */
static bool looks_like_path(const char *name) {
    size_t n = strlen(name);
    return name[0] == '/' || name[0] == '.' || (n > 5 && strcasecmp(name + n - 5, ".gguf") == 0);
}

int store_model_path(const char *root, const char *name, bool allow_path, char *buf, size_t cap, hb_err *err) {
    int rc = HEARTH_OK;
    store_name nm;
    store_manifest m;
    struct stat st;
    if (allow_path && stat(name, &st) == 0 && S_ISREG(st.st_mode)) {
        HB_CHECK(strlen(name) < cap, HEARTH_E_INVALID, "path is too long");
        strcpy(buf, name);
        goto out;
    }
    if (allow_path && looks_like_path(name)) { /* not a store name: say what is wrong with the file */
        bool there = stat(name, &st) == 0;
        HB_CHECK(!there, HEARTH_E_INVALID, "%s is not a regular file", name);
        HB_CHECK(there, HEARTH_E_NOT_FOUND, "cannot open %s: %s", name, strerror(errno));
    }
    rc = store_name_parse(name, &nm, err);
    if (!rc) rc = store_manifest_load(root, &nm, &m, err);
    /* no stored model by that name, but something that is not a file exists there (a
     * directory): say that rather than "invalid name" or "not found" */
    if (rc && rc != HEARTH_E_NOMEM && allow_path && stat(name, &st) == 0) {
        hb_err_clear(err);
        rc = hb_fail(err, HEARTH_E_INVALID, "%s is not a regular file (nor the name of a stored model)", name);
    }
    if (rc) goto out;
    const store_layer *ml = store_manifest_find(&m, STORE_MT_MODEL);
    HB_CHECK(ml, HEARTH_E_FORMAT, "model '%s' has no model layer", name);
    if ((rc = store_blob_path(root, ml->digest, buf, cap, err))) goto out;
    HB_CHECK(stat(buf, &st) == 0, HEARTH_E_NOT_FOUND, "model '%s': blob %s is missing from the store", name, ml->digest);
out:
    return rc;
}

hearth_status hearth_store_resolve(const char *root, const char *name, char **path, char *err, size_t errlen) {
    hb_err e = { 0 };
    char buf[4200];
    *path = NULL;
    int rc = store_model_path(root, name, true, buf, sizeof buf, &e);
    if (!rc && !(*path = strdup(buf))) rc = hb_fail(&e, HEARTH_E_NOMEM, "out of memory");
    return finish(rc, &e, err, errlen);
}

/* Adds the text of a small layer to obj under key (absent layer: nothing). */
static int info_text(const char *root, const store_manifest *m, const char *mt, json_t *obj, const char *key, hb_err *err) {
    const store_layer *l = store_manifest_find(m, mt);
    char *text = NULL;
    size_t len = 0;
    if (!l) return HEARTH_OK;
    int rc = store_blob_read(root, l->digest, &text, &len, err);
    if (rc) return rc;
    json_t *v = json_stringn(text, len);
    free(text);
    if (!v) return hb_fail(err, HEARTH_E_FORMAT, "layer %s of %s is not valid UTF-8", l->digest, key);
    json_object_set_new(obj, key, v);
    return HEARTH_OK;
}

/* Adds a JSON layer (params, messages, config) to obj under key. */
static int info_json(const char *root, const char *digest, json_t *obj, const char *key, hb_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = store_blob_read(root, digest, &text, &len, err);
    if (rc) return rc;
    json_t *v = json_loadb(text, len, 0, NULL);
    free(text);
    if (!v) return hb_fail(err, HEARTH_E_FORMAT, "layer %s (%s) is not valid JSON", digest, key);
    json_object_set_new(obj, key, v);
    return HEARTH_OK;
}

static int info_locked(const char *root, const char *name, json_t **out, hb_err *err) {
    int rc = HEARTH_OK;
    store_name nm;
    store_manifest m;
    char disp[600], path[4200], mpath[4200];
    struct stat st;
    json_t *o = json_object();
    *out = NULL;
    HB_CHECK(o, HEARTH_E_NOMEM, "out of memory");
    if ((rc = store_name_parse(name, &nm, err))) goto out;
    if ((rc = store_manifest_load(root, &nm, &m, err))) goto out;
    if ((rc = store_model_path(root, name, false, path, sizeof path, err))) goto out;
    store_name_display(&nm, disp, sizeof disp);
    json_object_set_new(o, "name", json_string(disp));
    json_object_set_new(o, "model_path", json_string(path));
    if ((rc = store_manifest_path(root, &nm, mpath, sizeof mpath, err))) goto out;
    char *mtext = NULL;
    size_t mlen = 0;
    if ((rc = hb_read_file(mpath, STORE_MANIFEST_MAX, &mtext, &mlen, err))) goto out;
    char dg[72];
    store_sha256_buf(mtext, mlen, dg);
    free(mtext);
    json_object_set_new(o, "digest", json_string(dg));
    uint64_t size = m.config.size;
    for (int i = 0; i < m.n_layers; i++) size += m.layers[i].size;
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    json_object_set_new(o, "modified", json_integer(stat(mpath, &st) == 0 ? (json_int_t)st.st_mtime : 0));
    if ((rc = info_text(root, &m, STORE_MT_TEMPLATE, o, "template", err))) goto out;
    if ((rc = info_text(root, &m, STORE_MT_SYSTEM, o, "system", err))) goto out;
    if ((rc = info_text(root, &m, STORE_MT_LICENSE, o, "license", err))) goto out;
    const store_layer *pl = store_manifest_find(&m, STORE_MT_PARAMS);
    if (pl && (rc = info_json(root, pl->digest, o, "parameters", err))) goto out;
    const store_layer *ml = store_manifest_find(&m, STORE_MT_MESSAGES);
    if (ml && (rc = info_json(root, ml->digest, o, "messages", err))) goto out;
    if (!json_is_object(json_object_get(o, "parameters"))) json_object_set_new(o, "parameters", json_object());
    if (!json_is_array(json_object_get(o, "messages"))) json_object_set_new(o, "messages", json_array());
    /* A missing config blob is tolerated (details are then computed from the GGUF). */
    hb_err e2 = { 0 };
    if (info_json(root, m.config.digest, o, "config", &e2)) json_object_set_new(o, "config", json_object());
    *out = o;
    o = NULL;
out:
    json_decref(o);
    return rc;
}

int store_info_json(const char *root, const char *name, json_t **out, hb_err *err) {
    /* Under the shared store lock: the manifest and its layers are read in several steps,
     * and a removal (exclusive) between them would turn "not found" into an I/O error. */
    int lk = store_lock(root, false);
    int rc = info_locked(root, name, out, err);
    store_unlock(lk);
    return rc;
}

hearth_status hearth_store_info(const char *root, const char *name, char **json, char *err, size_t errlen) {
    hb_err e = { 0 };
    json_t *o = NULL;
    *json = NULL;
    int rc = store_info_json(root, name, &o, &e);
    if (!rc && !(*json = json_dumps(o, JSON_COMPACT))) rc = hb_fail(&e, HEARTH_E_NOMEM, "out of memory");
    json_decref(o);
    return finish(rc, &e, err, errlen);
}

/* ---- copy / remove ----------------------------------------------------------------------- */

int store_copy(const char *root, const char *src, const char *dst, hb_err *err) {
    int rc = HEARTH_OK;
    store_name a, b;
    char pa[4200], pb[4200];
    char *text = NULL;
    size_t len = 0;
    store_manifest m;
    if ((rc = store_name_parse(src, &a, err)) || (rc = store_name_parse(dst, &b, err))) goto out;
    if ((rc = store_manifest_load(root, &a, &m, err))) goto out;
    if ((rc = store_manifest_path(root, &a, pa, sizeof pa, err)) || (rc = store_manifest_path(root, &b, pb, sizeof pb, err))) goto out;
    if ((rc = hb_read_file(pa, STORE_MANIFEST_MAX, &text, &len, err))) goto out;
    rc = store_manifest_publish(root, pb, &m, text, len, err);
out:
    free(text);
    return rc;
}

hearth_status hearth_store_copy(const char *root, const char *src, const char *dst, char *err, size_t errlen) {
    hb_err e = { 0 };
    return finish(store_copy(root, src, dst, &e), &e, err, errlen);
}

/* True when any manifest in the store references digest. */
static bool blob_in_use(const char *root, const char *digest) {
    hearth_store_entry *v = NULL;
    size_t n = 0;
    bool used = true; /* on any doubt keep the blob */
    if (hearth_store_list(root, &v, &n, NULL, 0)) return true;
    used = false;
    for (size_t i = 0; i < n && !used; i++) {
        store_name nm;
        store_manifest m;
        hb_err e = { 0 };
        if (store_name_parse(v[i].name, &nm, &e) || store_manifest_load(root, &nm, &m, &e)) {
            used = true;
            break;
        }
        if (strcmp(m.config.digest, digest) == 0) used = true;
        for (int j = 0; j < m.n_layers; j++)
            if (strcmp(m.layers[j].digest, digest) == 0) used = true;
    }
    free(v);
    return used;
}

int store_remove(const char *root, const char *name, hb_err *err) {
    int rc = HEARTH_OK;
    store_name nm;
    store_manifest m;
    char path[4200];
    int lk = -1;
    if ((rc = store_name_parse(name, &nm, err))) goto out;
    lk = store_lock(root, true); /* no manifest is published while the blobs are collected */
    if ((rc = store_manifest_load(root, &nm, &m, err))) goto out;
    if ((rc = store_manifest_path(root, &nm, path, sizeof path, err))) goto out;
    HB_CHECK(unlink(path) == 0, HEARTH_E_IO, "cannot remove %s: %s", path, strerror(errno));
    /* Drop now-empty parent directories (model, namespace, host); rmdir fails harmlessly on
     * non-empty ones. */
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(path, '/');
        if (!slash) break;
        *slash = '\0';
        if (rmdir(path) != 0) break;
    }
    for (int i = -1; i < m.n_layers; i++) {
        const char *dg = i < 0 ? m.config.digest : m.layers[i].digest;
        if (blob_in_use(root, dg)) continue;
        char bp[4200];
        if (!store_blob_path(root, dg, bp, sizeof bp, NULL)) unlink(bp);
    }
out:
    store_unlock(lk);
    return rc;
}

hearth_status hearth_store_remove(const char *root, const char *name, char *err, size_t errlen) {
    hb_err e = { 0 };
    return finish(store_remove(root, name, &e), &e, err, errlen);
}
