/* client.c — the small HTTP client the CLI verbs use to talk to a running server. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

typedef struct resp_buf {
    char *data;
    size_t len;
} resp_buf;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    resp_buf *b = ud;
    size_t add = sz * n;
    if (b->len + add > (64u << 20)) return 0;
    char *nd = realloc(b->data, b->len + add + 1);
    if (!nd) return 0;
    memcpy(nd + b->len, p, add);
    b->data = nd;
    b->len += add;
    nd[b->len] = '\0';
    return add;
}

hearth_status hearth_client_request(const char *host, uint16_t port, const char *method, const char *path,
                                    const char *body, long *status, char **resp, char *err, size_t errlen) {
    char url[512];
    resp_buf b = { 0 };
    hearth_status rc = HEARTH_OK;
    *status = 0;
    if (resp) *resp = NULL;
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%u%s", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    const char *key = getenv("HEARTH_API_KEY");
    char auth[600];
    if (key && *key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdr = curl_slist_append(hdr, auth);
    }
    if (!c) {
        snprintf(err, errlen, "out of memory");
        curl_slist_free_all(hdr);
        return HEARTH_E_NOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (err && errlen) snprintf(err, errlen, "no server at %s:%u (%s)", host, (unsigned)port, curl_easy_strerror(cc));
        rc = HEARTH_E_IO;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        if (resp) {
            *resp = b.data ? b.data : strdup("");
            b.data = NULL;
        }
    }
    free(b.data);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return rc;
}
