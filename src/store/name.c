/* name.c — model names ([host/][namespace/]model[:tag]) and digest syntax.
 *
 * Names become path components under <root>/manifests, so every part is checked against a
 * conservative character set before use: no '/', no "..", no leading '.' or '-'.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "store/store.h"

/* A part may hold letters, digits, '_', '-', '.'; `extra` adds one more allowed char.
 * ".tmp-" is reserved: the store writes every file as "<final>.tmp-<pid>-<n>" first, and
 * its listings skip such entries, so a model named like one would be invisible to the
 * blob-use check and lose its blobs when another model is removed (layout.c, store.c). */
static bool part_ok(const char *s, size_t n, char extra) {
    if (n == 0 || n >= 128) return false;
    if (s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i + 5 <= n; i++)
        if (memcmp(s + i, ".tmp-", 5) == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.' || (extra && c == extra))) return false;
        if (c == '.' && i + 1 < n && s[i + 1] == '.') return false;
    }
    return true;
}

static void copy_part(char *dst, const char *s, size_t n) {
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int store_name_parse(const char *s, store_name *n, hb_err *err) {
    int rc = HEARTH_OK;
    memset(n, 0, sizeof *n);
    HB_CHECK(s && *s, HEARTH_E_INVALID, "model name is empty");
    size_t len = strlen(s);
    HB_CHECK(len <= STORE_NAME_MAX, HEARTH_E_INVALID, "model name is longer than %d bytes", STORE_NAME_MAX);
    /* The tag follows the last ':' after the last '/' (a host may carry ":port"). */
    const char *slash = strrchr(s, '/');
    const char *colon = strrchr(slash ? slash : s, ':');
    size_t path_len = colon ? (size_t)(colon - s) : len;
    const char *tag = colon ? colon + 1 : STORE_DEFAULT_TAG;
    HB_CHECK(part_ok(tag, strlen(tag), 0), HEARTH_E_INVALID, "invalid tag in model name '%s'", s);
    copy_part(n->tag, tag, strlen(tag));
    /* Split the path into at most three '/'-separated parts. */
    const char *parts[3];
    size_t lens[3];
    int np = 0;
    const char *p = s, *end = s + path_len;
    while (p <= end) {
        const char *q = memchr(p, '/', (size_t)(end - p));
        if (!q) q = end;
        HB_CHECK(np < 3, HEARTH_E_INVALID, "model name '%s' has too many '/' parts", s);
        parts[np] = p;
        lens[np] = (size_t)(q - p);
        np++;
        p = q + 1;
    }
    const char *host = STORE_DEFAULT_HOST, *ns = STORE_DEFAULT_NS;
    size_t host_len = strlen(host), ns_len = strlen(ns);
    if (np == 3) {
        host = parts[0], host_len = lens[0];
        ns = parts[1], ns_len = lens[1];
    } else if (np == 2) {
        ns = parts[0], ns_len = lens[0];
    }
    const char *model = parts[np - 1];
    size_t model_len = lens[np - 1];
    HB_CHECK(part_ok(host, host_len, ':'), HEARTH_E_INVALID, "invalid host in model name '%s'", s);
    HB_CHECK(part_ok(ns, ns_len, 0), HEARTH_E_INVALID, "invalid namespace in model name '%s'", s);
    HB_CHECK(part_ok(model, model_len, 0), HEARTH_E_INVALID, "invalid model name '%s' (letters, digits, '_', '-', '.' only)", s);
    copy_part(n->host, host, host_len);
    copy_part(n->ns, ns, ns_len);
    copy_part(n->model, model, model_len);
    /* Hosts are case-insensitive; huggingface.co is the same hub as hf.co. */
    for (char *c = n->host; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (strcmp(n->host, "huggingface.co") == 0) strcpy(n->host, "hf.co");
out:
    return rc;
}

void store_name_display(const store_name *n, char *buf, size_t cap) {
    if (strcmp(n->host, STORE_DEFAULT_HOST) == 0 && strcmp(n->ns, STORE_DEFAULT_NS) == 0)
        snprintf(buf, cap, "%s:%s", n->model, n->tag);
    else if (strcmp(n->host, STORE_DEFAULT_HOST) == 0)
        snprintf(buf, cap, "%s/%s:%s", n->ns, n->model, n->tag);
    else
        snprintf(buf, cap, "%s/%s/%s:%s", n->host, n->ns, n->model, n->tag);
}

bool store_digest_valid(const char *d, bool dash_ok) {
    if (!d) return false;
    if (strncmp(d, "sha256:", 7) != 0 && !(dash_ok && strncmp(d, "sha256-", 7) == 0)) return false;
    const char *h = d + 7;
    for (int i = 0; i < 64; i++) {
        char c = h[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return h[64] == '\0';
}
