/* assets.h — the web chat page (every file in web/), embedded in the binary at build time.
 *
 * tools/embed.c turns every file in web/ into a byte array in the generated
 * build/gen/assets.c (compiled into libhearth.a); this header is the only way to reach them.
 * The data is immutable and lives for the whole process, so every pointer handed out here
 * is borrowed and never freed. See docs/web.md for the HTTP headers to send with it. */
#ifndef HEARTH_SERVER_ASSETS_H
#define HEARTH_SERVER_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

/* One embedded file, as generated. */
typedef struct server_asset {
    const char *path;          /* URL path, "/app.js" */
    const unsigned char *data; /* the bytes; data[len] == 0 so text can be used as a C string */
    size_t len;                /* bytes, excluding that trailing NUL */
    const char *content_type;  /* e.g. "text/javascript; charset=utf-8" */
    const char *etag;          /* strong ETag with its quotes: "\"0123456789abcdef\"" */
} server_asset;

/* Generated table (build/gen/assets.c); use server_asset_find rather than reading it. */
extern const server_asset server_asset_table[];
extern const size_t server_asset_count;

/* Looks up the asset served at URL path `path` ("/" and "/index.html" give the page; a
 * "?query" or "#fragment" suffix is ignored). On success returns true and sets every
 * out-param to borrowed, static data; returns false (out-params set to NULL/0) for
 * unknown paths or NULL. Any out-param may be NULL when not wanted. Thread-safe. */
bool server_asset_find(const char *path, const unsigned char **data, size_t *len,
                       const char **content_type, const char **etag);

#endif
