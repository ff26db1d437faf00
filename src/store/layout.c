/* layout.c — paths, atomic writes, content-addressed blobs and manifests of the store.
 *
 * Every write goes to "<final>.tmp-<pid>-<counter>" in the destination directory, is
 * fsync'd and renamed over the final name: readers see the old file or the new one, never a
 * partial one. Blob digests are computed from the bytes that actually land in the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "store/store.h"

static atomic_uint g_tmp_counter;

int store_root(const char *root, char *buf, size_t cap, hb_err *err) {
    int rc = HEARTH_OK;
    const char *env = getenv("HEARTH_MODELS");
    int n;
    if (root && *root) n = snprintf(buf, cap, "%s", root);
    else if (env && *env) n = snprintf(buf, cap, "%s", env);
    else {
        const char *home = getenv("HOME");
        HB_CHECK(home && *home, HEARTH_E_INVALID, "cannot find the model store: HOME and HEARTH_MODELS are unset");
        n = snprintf(buf, cap, "%s/.hearth/models", home);
    }
    HB_CHECK(n > 0 && (size_t)n < cap, HEARTH_E_INVALID, "model store path is too long");
out:
    return rc;
}

int store_manifest_path(const char *root, const store_name *n, char *buf, size_t cap, hb_err *err) {
    int rc = HEARTH_OK;
    char r[4096];
    if ((rc = store_root(root, r, sizeof r, err))) goto out;
    int k = snprintf(buf, cap, "%s/manifests/%s/%s/%s/%s", r, n->host, n->ns, n->model, n->tag);
    HB_CHECK(k > 0 && (size_t)k < cap, HEARTH_E_INVALID, "manifest path is too long");
out:
    return rc;
}

int store_blob_path(const char *root, const char *digest, char *buf, size_t cap, hb_err *err) {
    int rc = HEARTH_OK;
    char r[4096];
    HB_CHECK(store_digest_valid(digest, true), HEARTH_E_INVALID, "invalid digest '%.80s' (expected sha256:<64 hex>)", digest ? digest : "");
    if ((rc = store_root(root, r, sizeof r, err))) goto out;
    int k = snprintf(buf, cap, "%s/blobs/sha256-%s", r, digest + 7);
    HB_CHECK(k > 0 && (size_t)k < cap, HEARTH_E_INVALID, "blob path is too long");
out:
    return rc;
}

int store_mkdirs(const char *dir, hb_err *err) {
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) return hb_fail(err, HEARTH_E_INVALID, "directory path is too long");
    memcpy(tmp, dir, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return hb_fail(err, HEARTH_E_IO, "cannot create directory %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return hb_fail(err, HEARTH_E_IO, "cannot create directory %s: %s", tmp, strerror(errno));
    return HEARTH_OK;
}

static int mkdirs_parent(const char *path, hb_err *err) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return HEARTH_OK;
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir) return hb_fail(err, HEARTH_E_INVALID, "path is too long");
    memcpy(dir, path, n);
    dir[n] = '\0';
    return store_mkdirs(dir, err);
}

static void tmp_name(const char *path, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&g_tmp_counter, 1));
}

static void hex_digest(const unsigned char md[32], char out[72]) {
    static const char hx[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hx[md[i] >> 4];
        out[8 + 2 * i] = hx[md[i] & 15];
    }
    out[71] = '\0';
}

void store_sha256_buf(const void *data, size_t len, char out[72]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    hex_digest(md, out);
}

int store_sha256_file(const char *path, char out[72], uint64_t *size, hb_err *err) {
    int rc = HEARTH_OK;
    unsigned char md[32];
    unsigned int mdlen = 0;
    uint64_t total = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    FILE *f = fopen(path, "rb");
    HB_CHECK(ctx && buf, HEARTH_E_NOMEM, "out of memory hashing %s", path);
    HB_CHECK(f, HEARTH_E_IO, "cannot open %s: %s", path, strerror(errno));
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    size_t got;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0) {
        EVP_DigestUpdate(ctx, buf, got);
        total += got;
    }
    HB_CHECK(!ferror(f), HEARTH_E_IO, "cannot read %s: %s", path, strerror(errno));
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    hex_digest(md, out);
    if (size) *size = total;
out:
    if (f) fclose(f);
    free(buf);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Writes all of buf to fd, retrying short writes. */
static bool write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

int store_write_atomic(const char *path, const void *data, size_t len, hb_err *err) {
    int rc = HEARTH_OK, fd = -1;
    char tmp[4200];
    if ((rc = mkdirs_parent(path, err))) return rc;
    tmp_name(path, tmp, sizeof tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    HB_CHECK(fd >= 0, HEARTH_E_IO, "cannot create %s: %s", tmp, strerror(errno));
    HB_CHECK(write_all(fd, data, len) && fsync(fd) == 0, HEARTH_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    HB_CHECK(close(fd) == 0, HEARTH_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    fd = -1;
    HB_CHECK(rename(tmp, path) == 0, HEARTH_E_IO, "cannot rename %s into place: %s", path, strerror(errno));
out:
    if (fd >= 0) close(fd);
    if (rc) unlink(tmp);
    return rc;
}

int store_lock(const char *root, bool exclusive) {
    char r[4096], path[4200];
    hb_err e = { 0 };
    if (store_root(root, r, sizeof r, &e) || store_mkdirs(r, &e)) return -1;
    snprintf(path, sizeof path, "%s/.lock", r);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    int got;
    while ((got = flock(fd, exclusive ? LOCK_EX : LOCK_SH)) != 0 && errno == EINTR) {}
    if (got != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

void store_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing the last descriptor releases the flock */
}

int store_manifest_publish(const char *root, const char *mpath, const store_manifest *m, const void *text,
                           size_t len, hb_err *err) {
    int rc = HEARTH_OK;
    int lk = store_lock(root, false);
    for (int i = -1; i < m->n_layers && !rc; i++) {
        const char *dg = i < 0 ? m->config.digest : m->layers[i].digest;
        char bp[4200];
        if (i < 0 && !*dg) continue; /* a manifest without a config blob */
        if ((rc = store_blob_path(root, dg, bp, sizeof bp, err))) break;
        if (access(bp, F_OK) != 0)
            rc = hb_fail(err, HEARTH_E_NOT_FOUND, "blob %s was removed while this model was being written (a model "
                         "was deleted at the same time); try again", dg);
    }
    if (!rc) rc = store_write_atomic(mpath, text, len, err);
    store_unlock(lk);
    return rc;
}

int store_blob_put(const char *root, const char *media_type, const void *data, size_t len,
                   store_layer *layer, hb_err *err) {
    int rc = HEARTH_OK;
    char path[4200];
    memset(layer, 0, sizeof *layer);
    snprintf(layer->media_type, sizeof layer->media_type, "%s", media_type);
    store_sha256_buf(data, len, layer->digest);
    layer->size = len;
    if ((rc = store_blob_path(root, layer->digest, path, sizeof path, err))) return rc;
    if (access(path, F_OK) == 0) return HEARTH_OK; /* content-addressed: already there */
    return store_write_atomic(path, data, len, err);
}

/* Copies src to the open fd dst: a reflink (FICLONE: shared copy-on-write extents, instant
 * on btrfs and XFS) where the file system can, else the bytes. Either way the store's blob
 * is its own file: a later write to src cannot change it. */
static int copy_fd(const char *src, int dst, hb_err *err) {
    int rc = HEARTH_OK;
    char *buf = NULL;
    int sfd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    HB_CHECK(sfd >= 0, HEARTH_E_IO, "cannot open %s: %s", src, strerror(errno));
    if (ioctl(dst, FICLONE, sfd) == 0) goto synced;
    buf = malloc(1 << 20);
    HB_CHECK(buf, HEARTH_E_NOMEM, "out of memory copying %s", src);
    for (;;) {
        ssize_t got = read(sfd, buf, 1 << 20);
        if (got < 0 && errno == EINTR) continue;
        HB_CHECK(got >= 0, HEARTH_E_IO, "cannot read %s: %s", src, strerror(errno));
        if (got == 0) break;
        HB_CHECK(write_all(dst, buf, (size_t)got), HEARTH_E_IO, "cannot write into the store: %s", strerror(errno));
    }
synced:
    HB_CHECK(fsync(dst) == 0, HEARTH_E_IO, "cannot write into the store: %s", strerror(errno));
out:
    if (sfd >= 0) close(sfd);
    free(buf);
    return rc;
}

int store_blob_import(const char *root, const char *src, const char *media_type,
                      store_layer *layer, hb_err *err) {
    int rc = HEARTH_OK, fd = -1;
    char r[4096], tmp[4300], path[4200];
    bool have_tmp = false;
    memset(layer, 0, sizeof *layer);
    snprintf(layer->media_type, sizeof layer->media_type, "%s", media_type);
    if ((rc = store_root(root, r, sizeof r, err))) goto out;
    snprintf(path, sizeof path, "%s/blobs", r);
    if ((rc = store_mkdirs(path, err))) goto out;
    snprintf(tmp, sizeof tmp, "%s/blobs/import.tmp-%ld-%u", r, (long)getpid(), atomic_fetch_add(&g_tmp_counter, 1));
    /* Not a hard link: the user's file and the blob would be one inode, and editing or
     * overwriting the file in place (cp, an editor) would change a blob whose name is its
     * sha256. The digest is taken from the copy, so what the manifest names is what the
     * store holds. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    HB_CHECK(fd >= 0, HEARTH_E_IO, "cannot create %s: %s", tmp, strerror(errno));
    have_tmp = true;
    if ((rc = copy_fd(src, fd, err))) goto out;
    close(fd);
    fd = -1;
    if ((rc = store_sha256_file(tmp, layer->digest, &layer->size, err))) goto out;
    if ((rc = store_blob_path(root, layer->digest, path, sizeof path, err))) goto out;
    HB_CHECK(rename(tmp, path) == 0, HEARTH_E_IO, "cannot move %s into place: %s", path, strerror(errno));
    have_tmp = false;
out:
    if (fd >= 0) close(fd);
    if (have_tmp) unlink(tmp);
    return rc;
}

int store_blob_read(const char *root, const char *digest, char **out, size_t *len, hb_err *err) {
    char path[4200];
    int rc = store_blob_path(root, digest, path, sizeof path, err);
    if (rc) return rc;
    return hb_read_file(path, STORE_SMALL_BLOB_MAX, out, len, err);
}

/* ---- manifests ---------------------------------------------------------------------- */

static int layer_parse(json_t *o, store_layer *l, const char *what, hb_err *err) {
    int rc = HEARTH_OK;
    json_t *mt = json_object_get(o, "mediaType"), *dg = json_object_get(o, "digest"),
           *sz = json_object_get(o, "size");
    HB_CHECK(json_is_object(o), HEARTH_E_FORMAT, "manifest: %s is not an object", what);
    HB_CHECK(json_is_string(dg) && store_digest_valid(json_string_value(dg), false), HEARTH_E_FORMAT,
             "manifest: %s has no valid sha256 digest", what);
    HB_CHECK(json_is_integer(sz) && json_integer_value(sz) >= 0, HEARTH_E_FORMAT, "manifest: %s has no valid size", what);
    HB_CHECK(!mt || (json_is_string(mt) && json_string_length(mt) < sizeof l->media_type), HEARTH_E_FORMAT,
             "manifest: %s has a bad mediaType", what);
    snprintf(l->media_type, sizeof l->media_type, "%s", mt ? json_string_value(mt) : "");
    snprintf(l->digest, sizeof l->digest, "%s", json_string_value(dg));
    l->size = (uint64_t)json_integer_value(sz);
out:
    return rc;
}

int store_manifest_parse(const char *text, size_t len, store_manifest *m, hb_err *err) {
    int rc = HEARTH_OK;
    json_error_t je;
    memset(m, 0, sizeof *m);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    HB_CHECK(json_is_object(root), HEARTH_E_FORMAT, "manifest is not a JSON object (%s)", root ? "wrong type" : je.text);
    json_t *sv = json_object_get(root, "schemaVersion");
    HB_CHECK(!sv || (json_is_integer(sv) && json_integer_value(sv) == 2), HEARTH_E_UNSUPPORTED, "manifest schemaVersion is not 2");
    if ((rc = layer_parse(json_object_get(root, "config"), &m->config, "config", err))) goto out;
    json_t *layers = json_object_get(root, "layers");
    HB_CHECK(json_is_array(layers), HEARTH_E_FORMAT, "manifest has no layers array");
    HB_CHECK(json_array_size(layers) <= STORE_MAX_LAYERS, HEARTH_E_FORMAT, "manifest has more than %d layers", STORE_MAX_LAYERS);
    for (size_t i = 0; i < json_array_size(layers); i++) {
        if ((rc = layer_parse(json_array_get(layers, i), &m->layers[i], "a layer", err))) goto out;
        m->n_layers++;
    }
out:
    json_decref(root);
    return rc;
}

static json_t *layer_json(const store_layer *l) {
    return json_pack("{s:s, s:s, s:I}", "mediaType", l->media_type, "digest", l->digest, "size", (json_int_t)l->size);
}

char *store_manifest_dump(const store_manifest *m) {
    json_t *layers = json_array();
    for (int i = 0; i < m->n_layers; i++) json_array_append_new(layers, layer_json(&m->layers[i]));
    json_t *root = json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType", STORE_MT_MANIFEST,
                             "config", layer_json(&m->config), "layers", layers);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

const store_layer *store_manifest_find(const store_manifest *m, const char *media_type) {
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i].media_type, media_type) == 0) return &m->layers[i];
    return NULL;
}

int store_manifest_load(const char *root, const store_name *n, store_manifest *m, hb_err *err) {
    int rc = HEARTH_OK;
    char path[4200], disp[600];
    char *text = NULL;
    size_t len = 0;
    if ((rc = store_manifest_path(root, n, path, sizeof path, err))) goto out;
    store_name_display(n, disp, sizeof disp);
    HB_CHECK(access(path, F_OK) == 0, HEARTH_E_NOT_FOUND, "model '%s' not found", disp);
    if ((rc = hb_read_file(path, STORE_MANIFEST_MAX, &text, &len, err))) {
        /* removed between the check and the read (a delete racing this request): the model
         * is gone, which is a 404, and the message does not name the server's files */
        if (access(path, F_OK) != 0) {
            hb_err_clear(err);
            rc = hb_fail(err, HEARTH_E_NOT_FOUND, "model '%s' not found", disp);
        }
        goto out;
    }
    if ((rc = store_manifest_parse(text, len, m, err))) goto out;
out:
    free(text);
    return rc;
}
