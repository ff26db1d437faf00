/* pull.c — downloads a model from an Ollama-protocol registry (registry.ollama.ai, hf.co,
 * or any host given in the name, e.g. a stand-in on loopback with insecure=true).
 *
 *   GET <base>/v2/<ns>/<model>/manifests/<tag>    image manifest
 *   GET <base>/v2/<ns>/<model>/blobs/<digest>     each layer (redirects followed)
 *
 * A blob downloads into "<blob>-partial", resuming with a Range request when that file
 * exists, and is renamed into place only after its size and sha256 match the manifest; the
 * manifest is written last, so an interrupted pull never leaves a visible half model.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

typedef struct mem_buf {
    char *data;
    size_t len, cap, max;
} mem_buf;

static size_t mem_write(char *p, size_t sz, size_t n, void *ud) {
    mem_buf *b = ud;
    size_t add = sz * n;
    if (b->len + add > b->max) return 0; /* over the cap: abort the transfer */
    if (b->len + add + 1 > b->cap) {
        size_t nc = (b->len + add + 1) * 2;
        char *nd = realloc(b->data, nc);
        if (!nd) return 0;
        b->data = nd, b->cap = nc;
    }
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

typedef struct xfer {
    const hearth_pull_params *p;
    const char *digest;
    char status[96];
    uint64_t base, total;   /* bytes already on disk before this request; layer size */
    uint64_t last_report;
    bool cancelled;
} xfer;

static int xfer_info(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult, curl_off_t uln) {
    (void)dltotal, (void)ult, (void)uln;
    xfer *x = ud;
    if (x->p && x->p->cancel && x->p->cancel(x->p->ud)) {
        x->cancelled = true;
        return 1;
    }
    uint64_t done = x->base + (uint64_t)dlnow;
    if (x->p && x->p->progress && x->digest && done != x->last_report &&
        (done - x->last_report >= (1u << 20) || done == x->total)) {
        x->last_report = done;
        x->p->progress(x->p->ud, x->status, x->digest, done, x->total);
    }
    return 0;
}

static CURL *easy_new(const char *url, xfer *x) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(c, CURLOPT_USERAGENT, "hearth/" HEARTH_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (under 1 byte/s for 60 s) fails instead of hanging forever. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_info);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    return c;
}

static int fetch_manifest(const char *base, const store_name *n, const hearth_pull_params *p, mem_buf *b, hb_err *err) {
    int rc = HEARTH_OK;
    char url[1024];
    xfer x = { .p = p };
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: " STORE_MT_MANIFEST);
    snprintf(url, sizeof url, "%s/v2/%s/%s/manifests/%s", base, n->ns, n->model, n->tag);
    CURL *c = easy_new(url, &x);
    HB_CHECK(c && hdr, HEARTH_E_NOMEM, "out of memory");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    HB_CHECK(!x.cancelled, HEARTH_E_CANCELLED, "pull cancelled");
    HB_CHECK(cc == CURLE_OK, HEARTH_E_IO, "cannot fetch manifest %s: %s", url, curl_easy_strerror(cc));
    HB_CHECK(code != 404, HEARTH_E_NOT_FOUND, "model '%s/%s:%s' not found on %s", n->ns, n->model, n->tag, n->host);
    HB_CHECK(code == 200, HEARTH_E_IO, "registry answered HTTP %ld for %s", code, url);
out:
    curl_slist_free_all(hdr);
    if (c) curl_easy_cleanup(c);
    return rc;
}

/* Downloads one blob into place (resuming a partial file); no-op when already present. */
static int fetch_blob(const char *root, const char *base, const store_name *n, const store_layer *l,
                      const hearth_pull_params *p, hb_err *err) {
    int rc = HEARTH_OK;
    char path[4200], part[4300], url[1024];
    struct stat st;
    FILE *f = NULL;
    CURL *c = NULL;
    xfer x = { .p = p, .digest = l->digest, .total = l->size };
    snprintf(x.status, sizeof x.status, "pulling %.12s", l->digest + 7);
    if ((rc = store_blob_path(root, l->digest, path, sizeof path, err))) goto out;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == l->size) {
        if (p && p->progress) p->progress(p->ud, x.status, l->digest, l->size, l->size);
        goto out;
    }
    snprintf(part, sizeof part, "%s-partial", path);
    if (stat(part, &st) == 0 && (uint64_t)st.st_size <= l->size) x.base = (uint64_t)st.st_size;
    else unlink(part);
    if (x.base < l->size || l->size == 0) {
        f = fopen(part, x.base ? "ab" : "wb");
        HB_CHECK(f, HEARTH_E_IO, "cannot write %s: %s", part, strerror(errno));
        snprintf(url, sizeof url, "%s/v2/%s/%s/blobs/%s", base, n->ns, n->model, l->digest);
        c = easy_new(url, &x);
        HB_CHECK(c, HEARTH_E_NOMEM, "out of memory");
        curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
        if (x.base) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x.base);
        CURLcode cc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        HB_CHECK(fflush(f) == 0 && fsync(fileno(f)) == 0, HEARTH_E_IO, "cannot write %s: %s", part, strerror(errno));
        fclose(f), f = NULL;
        HB_CHECK(!x.cancelled, HEARTH_E_CANCELLED, "pull cancelled (partial download kept for resume)");
        HB_CHECK(cc == CURLE_OK, HEARTH_E_IO, "download of %s failed: %s (run pull again to resume)", l->digest, curl_easy_strerror(cc));
        HB_CHECK(code == 200 || code == 206, HEARTH_E_IO, "registry answered HTTP %ld for %s", code, url);
    }
    if (p && p->progress) p->progress(p->ud, "verifying sha256 digest", l->digest, l->size, l->size);
    HB_CHECK(stat(part, &st) == 0 && (uint64_t)st.st_size == l->size, HEARTH_E_FORMAT,
             "blob %s: got %lld bytes, manifest says %llu (partial file kept; pull again)", l->digest,
             (long long)st.st_size, (unsigned long long)l->size);
    rc = store_blob_adopt(root, part, l->digest, err); /* removes the file on mismatch */
out:
    if (f) fclose(f);
    if (c) curl_easy_cleanup(c);
    return rc;
}

static int pull(const char *root, const char *name, const hearth_pull_params *p, hb_err *err) {
    int rc = HEARTH_OK;
    store_name n;
    store_manifest m;
    mem_buf b = { .max = STORE_MANIFEST_MAX };
    char base[300], mpath[4200];
    if ((rc = store_name_parse(name, &n, err))) goto out;
    snprintf(base, sizeof base, "%s://%s", p && p->insecure ? "http" : "https", n.host);
    if (p && p->progress) p->progress(p->ud, "pulling manifest", NULL, 0, 0);
    if ((rc = fetch_manifest(base, &n, p, &b, err))) goto out;
    if ((rc = store_manifest_parse(b.data ? b.data : "", b.len, &m, err))) goto out;
    HB_CHECK(store_manifest_find(&m, STORE_MT_MODEL), HEARTH_E_FORMAT, "manifest of '%s' has no model layer", name);
    char r[4096], blobs[4200];
    if ((rc = store_root(root, r, sizeof r, err))) goto out;
    snprintf(blobs, sizeof blobs, "%s/blobs", r);
    if ((rc = store_mkdirs(blobs, err))) goto out;
    for (int i = -1; i < m.n_layers; i++)
        if ((rc = fetch_blob(root, base, &n, i < 0 ? &m.config : &m.layers[i], p, err))) goto out;
    if (p && p->progress) p->progress(p->ud, "writing manifest", NULL, 0, 0);
    if ((rc = store_manifest_path(root, &n, mpath, sizeof mpath, err))) goto out;
    if ((rc = store_manifest_publish(root, mpath, &m, b.data, b.len, err))) goto out;
    if (p && p->progress) p->progress(p->ud, "success", NULL, 0, 0);
out:
    free(b.data);
    return rc;
}

hearth_status hearth_store_pull(const char *root, const char *name, const hearth_pull_params *p, char *err, size_t errlen) {
    hb_err e = { 0 };
    int rc = pull(root, name, p, &e);
    if (err && errlen) snprintf(err, errlen, "%s", rc ? e.msg : "");
    return (hearth_status)rc;
}
