/* assets.c — URL path -> embedded web asset (see assets.h). The table itself is generated
 * at build time by tools/embed.c; lookup is an exact match, so no request path can ever
 * reach anything outside the embedded set (no traversal, no file system access). */
#include "server/assets.h"

#include <string.h>

/* Length of the path part of a request target: stops at '?' or '#'. */
static size_t path_len(const char *path) {
    size_t n = 0;
    while (path[n] && path[n] != '?' && path[n] != '#') n++;
    return n;
}

bool server_asset_find(const char *path, const unsigned char **data, size_t *len,
                       const char **content_type, const char **etag) {
    const server_asset *hit = NULL;
    if (data) *data = NULL;
    if (len) *len = 0;
    if (content_type) *content_type = NULL;
    if (etag) *etag = NULL;
    if (!path) return false;
    size_t n = path_len(path);
    if (n == 1 && path[0] == '/') {
        path = "/index.html";
        n = strlen(path);
    }
    for (size_t i = 0; i < server_asset_count; i++) {
        const server_asset *a = &server_asset_table[i];
        if (strlen(a->path) == n && memcmp(a->path, path, n) == 0) {
            hit = a;
            break;
        }
    }
    if (!hit) return false;
    if (data) *data = hit->data;
    if (len) *len = hit->len;
    if (content_type) *content_type = hit->content_type;
    if (etag) *etag = hit->etag;
    return true;
}
