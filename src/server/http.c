/* http.c — the HTTP layer of `hearth serve` on libmicrohttpd: daemon lifecycle, request
 * bodies under a size cap, JSON nesting and header-count limits, API keys (constant-time
 * compare), CORS, routing to the API modules, streaming responses and one structured log
 * line per request.
 *
 * libmicrohttpd runs one thread per connection, so handlers may block (waiting for a
 * generation); streaming bodies are produced by a content-reader callback that blocks
 * briefly and polls the client's socket, which is how a disconnect cancels a request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "server/assets.h"
#include "server/server.h"
#include "store/store.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_JSON_DEPTH 64
#define HTTP_READ_DEADLINE_NS (60ull * 1000000000ull) /* whole request body */

typedef struct conn_ctx {
    http_req req;
    int upload_fd;                  /* blob upload spool, -1 when none */
    size_t cap;
    bool too_big;
    bool responded;                 /* a response was queued early (413, 401, ...) */
    char origin[256];
} conn_ctx;

/* ---- responses ---------------------------------------------------------------------- */

static void add_common_headers(http_req *r, struct MHD_Response *resp) {
    conn_ctx *cc = (conn_ctx *)r;
    if (cc->origin[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", cc->origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    /* Tells clients that honour it (undici, browsers) to drop an idle connection before the
     * server does, so that they do not send a request on a connection as it closes. */
    char ka[32];
    snprintf(ka, sizeof ka, "timeout=%u", (unsigned)r->srv->p.idle_timeout_s);
    MHD_add_response_header(resp, "Keep-Alive", ka);
}

static enum MHD_Result queue(http_req *r, int status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    add_common_headers(r, resp);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_text(http_req *r, int status, const char *ctype, const char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    r->bytes_out += len;
    return queue(r, status, resp);
}

enum MHD_Result http_asset(http_req *r, const unsigned char *data, size_t len, const char *ctype, const char *etag) {
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    bool fresh = etag && inm && strstr(inm, etag) != NULL;
    bool head = strcmp(r->method, "HEAD") == 0; /* MHD sends the headers only */
    struct MHD_Response *resp = fresh ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
                                      : MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (etag) MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (!fresh && !head) r->bytes_out += len;
    return queue(r, fresh ? 304 : 200, resp);
}

enum MHD_Result http_json(http_req *r, int status, json_t *json) {
    char *s = json ? json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(json);
    if (!s) return http_text(r, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
    enum MHD_Result ret = http_text(r, status, "application/json; charset=utf-8", s, strlen(s));
    free(s);
    return ret;
}

static const char *openai_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "invalid_request_error"; /* OpenAI's type for a missing model */
    case 429: case 503: return "server_busy";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result http_error(http_req *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j;
    if (r->openai) /* a missing model has OpenAI's code; nothing else carries one */
        j = json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", msg, "type", openai_type(status), "param", "code",
                      status == 404 && strstr(msg, "model") ? json_string("model_not_found") : json_null());
    else
        j = json_pack("{s:s}", "error", msg);
    if (!j) j = json_pack("{s:s}", "error", "invalid message encoding");
    return http_json(r, status, j);
}

int http_status_of(int rc) {
    switch (rc) {
    case HEARTH_OK: return 200;
    case HEARTH_E_INVALID: case HEARTH_E_CONTEXT: case HEARTH_E_TEMPLATE: return 400;
    case HEARTH_E_NOT_FOUND: return 404;
    case HEARTH_E_UNSUPPORTED: return 501;
    case HEARTH_E_NOMEM: return 507;
    case HEARTH_E_CANCELLED: return 499;
    default: return 500;
    }
}

bool http_client_alive(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    int fd = ci->connect_fd;
    struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP };
    if (poll(&pfd, 1, 0) <= 0) return true;
    if (pfd.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

typedef struct stream_ctx {
    http_stream st;
    http_req *req;                  /* valid only while the reader runs (the request may
                                     * complete before the response is destroyed) */
    hearth_server *srv;
    bool ended;
} stream_ctx;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    /* Bounded: each next() waits at most ~100 ms; a dead client or shutdown ends it. */
    for (;;) {
        ssize_t n = sc->st.next(sc->st.ud, buf, max);
        if (n > 0) {
            sc->req->bytes_out += (size_t)n;
            return n;
        }
        if (n == -1) return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    hearth_server *srv = sc->srv;
    if (sc->st.done_cb) sc->st.done_cb(sc->st.ud);
    free(sc);
    atomic_fetch_sub(&srv->active_conns, 1);
}

enum MHD_Result http_stream_start(http_req *r, const char *ctype, http_stream st) {
    stream_ctx *sc = calloc(1, sizeof *sc);
    if (!sc) {
        if (st.done_cb) st.done_cb(st.ud);
        return http_error(r, 500, "out of memory");
    }
    sc->st = st;
    sc->req = r;
    sc->srv = r->srv;
    atomic_fetch_add(&r->srv->active_conns, 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, sc, stream_free);
    if (!resp) {
        stream_free(sc);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return queue(r, 200, resp);
}

/* ---- access control ------------------------------------------------------------------------- */

static bool key_matches(const char *keys, const char *given) {
    bool ok = false;
    size_t glen = strlen(given);
    const char *p = keys;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t klen = e ? (size_t)(e - p) : strlen(p);
        /* Constant time over the key's bytes; length mismatch still compares. */
        if (klen > 0) {
            bool same_len = klen == glen;
            int diff = CRYPTO_memcmp(p, same_len ? given : p, klen);
            if (same_len && diff == 0) ok = true;
        }
        p = e ? e + 1 : NULL;
    }
    return ok;
}

static bool auth_ok(http_req *r) {
    const char *keys = r->srv->api_keys;
    if (!keys || !*keys) return true;
    if (strcmp(r->url, "/") == 0 || strcmp(r->url, "/health") == 0) return true;
    /* The web page's own static files are public (the page asks for the key itself and
     * sends it with API calls); they hold no data. */
    bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    if (get && server_asset_find(r->url, NULL, NULL, NULL, NULL)) return true;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    return key_matches(keys, h + 7);
}

/* The origins allowed by default, as Ollama's: pages served from this machine, and local
 * app shells (Electron/Tauri apps, VS Code webviews, files) whatever their host part. */
static bool is_local_origin(const char *o) {
    const char *hosts[] = { "http://localhost", "http://127.0.0.1", "http://[::1]", "http://0.0.0.0",
                            "https://localhost", "https://127.0.0.1", "https://[::1]", "https://0.0.0.0" };
    const char *apps[] = { "app://", "file://", "tauri://", "vscode-webview://" };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        size_t n = strlen(hosts[i]);
        if (strncmp(o, hosts[i], n) == 0 && (o[n] == '\0' || o[n] == ':')) return true;
    }
    for (size_t i = 0; i < sizeof apps / sizeof apps[0]; i++)
        if (strncmp(o, apps[i], strlen(apps[i])) == 0) return true;
    return false;
}

/* Decides whether a cross-origin request is allowed; same-origin is always allowed. */
/* Whether s matches the glob pattern p[0..n) (`*` matches any run of characters, as in
 * Ollama's OLLAMA_ORIGINS, e.g. "chrome-extension:" followed by "//" and "*"). */
static bool glob_match(const char *p, size_t n, const char *s) {
    if (n == 0) return *s == '\0';
    if (*p == '*') {
        for (const char *t = s;; t++) {
            if (glob_match(p + 1, n - 1, t)) return true;
            if (!*t) return false;
        }
    }
    return *s == *p && glob_match(p + 1, n - 1, s + 1);
}

/* Calls fn on each entry of the comma-separated list (blanks around entries trimmed) until it
 * returns true; returns whether one did. */
static bool list_any(const char *list, bool (*fn)(const char *e, size_t n, const void *arg), const void *arg) {
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ','), *end = e ? e : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *q = end;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t')) q--;
        if (q > p && fn(p, (size_t)(q - p), arg)) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static bool entry_matches(const char *e, size_t n, const void *origin) {
    return glob_match(e, n, (const char *)origin);
}

static bool entry_is_star(const char *e, size_t n, const void *arg) {
    (void)arg;
    return n == 1 && *e == '*';
}

/* Whether the origins list allows every origin (an entry that is exactly "*"). */
static bool origins_any(const char *list) {
    return list_any(list, entry_is_star, NULL);
}

/* Decides whether a cross-origin request is allowed; same-origin is always allowed. The
 * extra origins (--origins) are glob patterns. Patterns are bounded by the header and list
 * sizes; a `*` backtracks, but a 256-byte origin against a short list stays cheap. */
static bool origin_allowed(http_req *r, const char *origin) {
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    const char *allow = r->srv->origins;
    if (host) {
        const char *o = strstr(origin, "://");
        if (o && strcmp(o + 3, host) == 0) return true;
    }
    return (allow && list_any(allow, entry_matches, origin)) || is_local_origin(origin);
}

/* Whether s is empty or ":PORT" (1-5 digits): what may follow the name in a Host header. */
static bool port_suffix_ok(const char *s) {
    if (*s == '\0') return true;
    if (*s++ != ':') return false;
    size_t n = strspn(s, "0123456789");
    return n >= 1 && n <= 5 && s[n] == '\0';
}

/* Whether the Host header value h names a loopback address (a numeric 127.x.y.z, [::1] or
 * localhost) or the bind address, with at most a port after it. The name is parsed as an
 * address, not compared by prefix: "127.evil.example" is a domain an attacker controls. */
static bool host_is_local(const char *h, const char *bind) {
    char name[256];
    const char *rest;
    bool v6 = h[0] == '[';
    if (v6) {
        const char *e = strchr(h, ']');
        if (!e || (size_t)(e - h - 1) >= sizeof name) return false;
        memcpy(name, h + 1, (size_t)(e - h - 1));
        name[e - h - 1] = '\0';
        rest = e + 1;
    } else {
        size_t n = strcspn(h, ":");
        if (n >= sizeof name) return false;
        memcpy(name, h, n);
        name[n] = '\0';
        rest = h + n;
    }
    if (!port_suffix_ok(rest)) return false;
    struct in_addr a4;
    struct in6_addr a6;
    if (v6 && inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_V4MAPPED(&a6)) { /* ::ffff:a.b.c.d is a.b.c.d */
        memcpy(&a4.s_addr, a6.s6_addr + 12, 4);
        inet_ntop(AF_INET, &a4, name, sizeof name);
        v6 = false;
    }
    if (v6)
        return (inet_pton(AF_INET6, name, &a6) == 1 && (IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_UNSPECIFIED(&a6) ||
                                                         IN6_IS_ADDR_LINKLOCAL(&a6) || (a6.s6_addr[0] & 0xfe) == 0xfc)) ||
               strcmp(name, bind) == 0;
    size_t nl = strlen(name);
    if (nl > 1 && name[nl - 1] == '.') name[--nl] = '\0'; /* "localhost." is the same name, fully qualified */
    if (inet_pton(AF_INET, name, &a4) == 1) {
        /* a literal address in Host is what the browser was pointed at, not a rebound
         * name: loopback, unspecified, private and link-local ones are this machine's side */
        uint32_t a = ntohl(a4.s_addr);
        return (a >> 24) == 127 || a == 0 || (a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 ||
               (a >> 16) == 0xa9fe || strcmp(name, bind) == 0;
    }
    /* names: localhost, the reserved local suffixes (no public domain ends so, RFC 6761 /
     * 6762 / ICANN's .internal) and this machine's own name */
    size_t n = strlen(name);
    const char *tlds[] = { ".localhost", ".local", ".internal" };
    for (size_t i = 0; i < sizeof tlds / sizeof tlds[0]; i++) {
        size_t k = strlen(tlds[i]);
        if (n > k && strcasecmp(name + n - k, tlds[i]) == 0) return true;
    }
    char me[256];
    if (gethostname(me, sizeof me) == 0 && (me[sizeof me - 1] = '\0', strcasecmp(name, me) == 0)) return true;
    return strcasecmp(name, "localhost") == 0;
}

/* DNS-rebinding defence: a server bound to loopback answers only requests whose Host names
 * a loopback address (or the bind address), so a web page whose domain was re-pointed at
 * 127.0.0.1 cannot talk to it even from "its own" origin. */
static bool host_allowed(http_req *r) {
    const char *bind = r->srv->host;
    bool loopback = strcmp(bind, "127.0.0.1") == 0 || strcmp(bind, "::1") == 0 || strncmp(bind, "127.", 4) == 0;
    /* only an origins list that allows everything (an entry "*") turns the check off: a
     * pattern with a star in it names pages (extensions, apps), not hosts */
    if (!loopback || origins_any(r->srv->origins)) return true;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    if (!h) return true; /* HTTP/1.0 clients */
    return host_is_local(h, bind);
}

/* ---- body and JSON --------------------------------------------------------------------------- */

/* Depth of {}/[] nesting outside strings; jansson's own limit is far above what an API
 * request needs, and deep nesting costs stack in every consumer. */
static int json_depth(const char *s, size_t n) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
        } else if (c == '}' || c == ']') depth--;
    }
    return max;
}

/* Blob uploads can be model-sized: they go to a temporary file in the blobs directory
 * (same file system, so adopting the blob is a rename) instead of memory. */
static int spool_open(conn_ctx *cc) {
    hearth_server *srv = cc->req.srv;
    char root[4096], path[4400];
    hb_err e = { 0 };
    static atomic_uint counter;
    if (store_root(srv->models_dir, root, sizeof root, &e)) return -1;
    snprintf(path, sizeof path, "%s/blobs", root);
    if (store_mkdirs(path, &e)) return -1;
    snprintf(path, sizeof path, "%s/blobs/upload.tmp-%ld-%u", root, (long)getpid(), atomic_fetch_add(&counter, 1));
    cc->upload_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (cc->upload_fd < 0) return -1;
    cc->req.upload_path = strdup(path);
    return cc->req.upload_path ? 0 : -1;
}

static enum MHD_Result spool(conn_ctx *cc, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = write(cc->upload_fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            cc->responded = true;
            return http_error(&cc->req, 507, "cannot store the upload: %s", strerror(errno));
        }
        data += w, n -= (size_t)w;
    }
    return MHD_YES;
}

/* The value of the 4 hex digits at s, or -1. */
static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Rewrites, in place, every \u escape of a UTF-16 surrogate that is not half of a pair into
 * \uFFFD (same length). jansson refuses such strings, but JavaScript produces them (text
 * cut inside an emoji) and Go's decoder, which Ollama uses, reads them as U+FFFD. */
static void json_fix_surrogates(char *s, size_t n) {
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = s[i] == '"';
            continue;
        }
        if (s[i] == '"') {
            in_str = false;
        } else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] != 'u' || i + 6 > n) {
                i++;
                continue;
            }
            int u = hex4(s + i + 2), lo = i + 12 <= n && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s + i + 8) : -1;
            if (u >= 0xD800 && u <= 0xDBFF && lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 11; /* a pair: both escapes stay */
            } else {
                if (u >= 0xD800 && u <= 0xDFFF) memcpy(s + i + 2, "FFFD", 4);
                i += 5;
            }
        }
    }
}

static enum MHD_Result dispatch(conn_ctx *cc) {
    http_req *r = &cc->req;
    r->openai = api_is_openai(r->url);
    if (cc->too_big) return http_error(r, 413, "request body is larger than %zu bytes", r->srv->p.max_body);
    if (r->body_len > 0 && strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0 &&
        strncmp(r->url, "/api/blobs/", 11) != 0) {
        if (json_depth(r->body, r->body_len) > HTTP_MAX_JSON_DEPTH)
            return http_error(r, 400, "JSON nesting is deeper than %d levels", HTTP_MAX_JSON_DEPTH);
        json_error_t je;
        json_fix_surrogates(r->body, r->body_len);
        r->json = json_loadb(r->body, r->body_len, 0, &je);
        if (!r->json) return http_error(r, 400, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        if (!json_is_object(r->json)) return http_error(r, 400, "request body must be a JSON object");
    }
    if (api_is_openai(r->url)) return api_openai(r);
    if (api_is_ollama(r->url)) return api_ollama(r);
    if (api_is_misc(r->url)) return api_misc(r);
    return http_error(r, 404, "no such endpoint: %s %s", r->method, r->url);
}

static enum MHD_Result preflight(conn_ctx *cc) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    if (cc->origin[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, HEAD, OPTIONS");
        /* the origin is allowed, so grant the headers it asks for (client libraries add
         * their own, e.g. openai-node's X-Stainless-Helper-Method); a fixed list otherwise */
        const char *want = MHD_lookup_connection_value(cc->req.conn, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                want && *want && strlen(want) < 2048 && !strpbrk(want, "\r\n")
                                    ? want
                                    : "Authorization, Content-Type, X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Retry-Count, X-Stainless-Timeout, OpenAI-Organization, OpenAI-Project, User-Agent, Accept");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    if (!cc->origin[0]) { /* no Origin, or one not allowed: nothing to grant */
        MHD_destroy_response(resp);
        return http_error(&cc->req, 403, "preflight refused: the origin is missing or not allowed (set HEARTH_ORIGINS)");
    }
    return queue(&cc->req, 204, resp);
}

/* First call for a request: limits, CORS and auth before any body is read. */
static enum MHD_Result first_call(conn_ctx *cc) {
    http_req *r = &cc->req;
    int nh = MHD_get_connection_values(r->conn, MHD_HEADER_KIND, NULL, NULL);
    if (nh > HTTP_MAX_HEADERS) {
        cc->responded = true;
        return http_error(r, 431, "too many request headers (%d, limit %d)", nh, HTTP_MAX_HEADERS);
    }
    if (!host_allowed(r)) {
        cc->responded = true;
        return http_error(r, 403, "Host header is not a local address (the server is bound to %s)", r->srv->host);
    }
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (origin && strlen(origin) < sizeof cc->origin && origin_allowed(r, origin)) strcpy(cc->origin, origin);
    if (strcmp(r->method, "OPTIONS") == 0) {
        cc->responded = true;
        return preflight(cc);
    }
    if (origin && !cc->origin[0]) {
        cc->responded = true;
        return http_error(r, 403, "origin %.200s is not allowed (set HEARTH_ORIGINS)", origin);
    }
    if (!auth_ok(r)) {
        cc->responded = true;
        r->openai = api_is_openai(r->url);
        return http_error(r, 401, "missing or invalid API key (send Authorization: Bearer <key>)");
    }
    /* Both framings at once is how requests are smuggled past a proxy that reads the other
     * one (RFC 9112 6.3 lets a server refuse it; libmicrohttpd would take the chunked one). */
    if (MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding") &&
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length")) {
        cc->responded = true;
        return http_error(r, 400, "a request may not carry both Transfer-Encoding and Content-Length");
    }
    if (strcmp(r->method, "POST") == 0 && strncmp(r->url, "/api/blobs/", 11) == 0 &&
        store_digest_valid(r->url + 11, true)) {
        if (spool_open(cc) != 0) {
            cc->responded = true;
            return http_error(r, 500, "cannot create a temporary file in the model store");
        }
        return MHD_YES;
    }
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > r->srv->p.max_body) {
        /* A client that waits for "100 Continue" has sent no body yet: answer it now, and
         * libmicrohttpd then never invites the upload. Otherwise answer 413 only after the
         * body has been read and dropped (bounded by the read deadline): replying at once
         * and closing with unread data makes the kernel send a reset that can destroy the
         * reply before the client reads it. */
        const char *ex = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Expect");
        if (ex && strcasecmp(ex, "100-continue") == 0) {
            cc->responded = true;
            return http_error(r, 413, "request body is larger than %zu bytes", r->srv->p.max_body);
        }
        cc->too_big = true;
    }
    return MHD_YES;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    hearth_server *srv = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        *con_cls = cc;
        cc->req.srv = srv;
        cc->req.conn = conn;
        cc->req.url = url;
        cc->req.method = method;
        cc->req.t0 = hb_now_ns();
        cc->upload_fd = -1;
        atomic_fetch_add(&srv->active_reqs, 1); /* until completed(): shutdown waits for it */
        /* A request has begun: from now on its client may pause for up to --timeout, not
         * the idle timeout (completed() switches back). */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)srv->p.timeout_s);
        if (atomic_load(&srv->stopping)) {
            cc->responded = true;
            return http_error(&cc->req, 503, "server is shutting down");
        }
        return first_call(cc);
    }
    if (cc->responded) {
        *upload_size = 0; /* discard the rest of the body */
        return MHD_YES;
    }
    if (*upload_size && cc->upload_fd >= 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        return spool(cc, upload_data, n);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (hb_now_ns() - cc->req.t0 > HTTP_READ_DEADLINE_NS) {
            cc->responded = true;
            return http_error(&cc->req, 408, "request body took too long to arrive");
        }
        if (cc->too_big || cc->req.body_len + n > srv->p.max_body) {
            cc->too_big = true;
            return MHD_YES;
        }
        if (cc->req.body_len + n + 1 > cc->cap) {
            size_t nc = (cc->req.body_len + n + 1) * 2;
            if (nc > srv->p.max_body + 1) nc = srv->p.max_body + 1;
            char *nb = realloc(cc->req.body, nc);
            if (!nb) return MHD_NO;
            cc->req.body = nb, cc->cap = nc;
        }
        memcpy(cc->req.body + cc->req.body_len, upload_data, n);
        cc->req.body_len += n;
        cc->req.body[cc->req.body_len] = '\0';
        return MHD_YES;
    }
    cc->responded = true;
    if (cc->upload_fd >= 0) {
        if (fsync(cc->upload_fd) != 0 || close(cc->upload_fd) != 0) {
            cc->upload_fd = -1;
            return http_error(&cc->req, 507, "cannot store the upload: %s", strerror(errno));
        }
        cc->upload_fd = -1;
    }
    return dispatch(cc);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    hearth_server *srv = cls;
    /* kept alive and waiting for the next request: the idle timeout applies (an idle
     * connection holds a thread and a place under --max-connections) */
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)srv->p.idle_timeout_s);
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    http_req *r = &cc->req;
    double ms = (double)(hb_now_ns() - r->t0) / 1e6;
    /* No response queued: the request failed inside the server (500), unless the client
     * went away first (499, nginx's "client closed request"; not a server error). */
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    int status = r->status ? r->status : ok ? 500 : 499;
    if (!ok && status == 200) status = 499; /* a reply (a stream) the client did not stay for */
    SRV_LOG(srv, HEARTH_LOG_INFO, "method=%s path=\"%s\" status=%d duration_ms=%.1f bytes_out=%zu bytes_in=%zu%s",
            r->method, r->url, status, ms, r->bytes_out, r->body_len,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    metrics_request(srv, status);
    json_decref(r->json);
    free(r->body);
    if (cc->upload_fd >= 0) close(cc->upload_fd);
    if (r->upload_path) {
        unlink(r->upload_path); /* an upload that was not adopted (aborted, bad digest) */
        free(r->upload_path);
    }
    free(cc);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->active_reqs, 1);
}

static enum MHD_Result on_connect(void *cls, const struct sockaddr *addr, socklen_t len) {
    (void)addr, (void)len;
    hearth_server *srv = cls;
    return atomic_load(&srv->stopping) ? MHD_NO : MHD_YES;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

hearth_server_params hearth_server_default_params(void) {
    hearth_server_params p = { 0 };
    p.host = "127.0.0.1";
    p.port = 11434;
    p.num_parallel = 4;
    p.max_queue = 64;
    p.max_loaded = 2;
    p.keep_alive_ms = 5 * 60 * 1000;
    p.max_body = 16u << 20;
    p.timeout_s = 300;
    p.idle_timeout_s = 30;
    p.max_connections = 512;
    p.n_gpu_layers = -1;
    p.sample_threads = -1;
    return p;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Connections one client address may hold: no limit when bound to a loopback address, where
 * every client is 127.0.0.1 or ::1 and a per-address limit would be the total limit by
 * another name (libmicrohttpd resets connections refused by it); else half of all, so one
 * host cannot take them all. */
static unsigned per_ip_limit(const hearth_server *s, const struct sockaddr_storage *ss) {
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
    bool loopback = ss->ss_family == AF_INET ? (ntohl(a4->sin_addr.s_addr) >> 24) == 127 : IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    unsigned half = s->p.max_connections / 2;
    return loopback ? 0 : half > 0 ? half : 1;
}

static int start_daemon(hearth_server *s, hb_err *err) {
    int rc = HEARTH_OK;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    if (inet_pton(AF_INET, s->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(s->p.port);
    } else if (inet_pton(AF_INET6, s->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(s->p.port);
        flags |= MHD_USE_IPv6;
    } else {
        HB_CHECK(false, HEARTH_E_INVALID, "host '%s' is not a numeric IPv4 or IPv6 address", s->host);
    }
    s->daemon = MHD_start_daemon(flags, s->p.port, on_connect, s, access_handler, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                                 /* a connection waits for its first request as for any later one
                                  * (access_handler and completed switch between the two) */
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->p.idle_timeout_s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_connections,
                                 MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip_limit(s, &ss),
                                 MHD_OPTION_END);
    HB_CHECK(s->daemon, HEARTH_E_IO, "cannot listen on %s:%u (is the port already in use? set HEARTH_HOST or --host)",
             s->host, (unsigned)s->p.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->p.port;
out:
    return rc;
}

hearth_status hearth_server_start(const hearth_server_params *p, hearth_server **out, char *err, size_t errlen) {
    hb_err e = { 0 };
    int rc = HEARTH_OK;
    hb_err *errp = &e;
    *out = NULL;
    hearth_server *s = calloc(1, sizeof *s);
    if (!s) {
        rc = hb_fail(&e, HEARTH_E_NOMEM, "out of memory");
        goto out;
    }
    s->p = *p;
    s->host = strdup(p->host && *p->host ? p->host : "127.0.0.1");
    s->models_dir = dup_or_null(p->models_dir);
    s->api_keys = dup_or_null(p->api_keys);
    s->origins = dup_or_null(p->origins);
    s->p.host = s->host, s->p.models_dir = s->models_dir;
    s->log = (hb_log){ p->log, p->log_user_data, HEARTH_LOG_DEBUG };
    if (s->p.num_parallel < 1 || s->p.num_parallel > 256) s->p.num_parallel = 4;
    if (s->p.sample_threads < -1 || s->p.sample_threads > 64) s->p.sample_threads = -1;
    if (s->p.max_queue < 0) s->p.max_queue = 0;
    if (s->p.max_loaded < 1) s->p.max_loaded = 1;
    if (!s->p.max_body) s->p.max_body = 16u << 20;
    if (!s->p.timeout_s) s->p.timeout_s = 300;
    if (!s->p.idle_timeout_s) s->p.idle_timeout_s = 30;
    if (s->p.idle_timeout_s > s->p.timeout_s) s->p.idle_timeout_s = s->p.timeout_s;
    if (!s->p.max_connections) s->p.max_connections = 512;
    pthread_mutex_init(&s->mmu, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if ((rc = sched_new(s, &s->sched, errp))) goto out;
    if ((rc = start_daemon(s, errp))) goto out;
    *out = s;
    s = NULL;
out:
    if (s) hearth_server_free(s);
    if (err && errlen) snprintf(err, errlen, "%s", rc ? e.msg : "");
    return (hearth_status)rc;
}

uint16_t hearth_server_port(const hearth_server *s) { return s ? s->port : 0; }

void hearth_server_stop(hearth_server *s) {
    if (!s || atomic_exchange(&s->stopping, true)) return;
    if (s->daemon) SRV_LOG(s, HEARTH_LOG_INFO, "shutting down: cancelling in-flight requests");
    if (s->daemon) MHD_quiesce_daemon(s->daemon);
    /* Cancel generations first so streams write their final message and end, then stop
     * the daemon (which joins the connection threads). */
    if (s->sched) sched_shutdown(s->sched);
    /* Let streams deliver their final message and the handlers that were waiting for a
     * whole reply send it (bounded: 10 s); stopping the daemon closes their sockets. */
    for (int i = 0; i < 1000 && (atomic_load(&s->active_conns) > 0 || atomic_load(&s->active_reqs) > 0); i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (s->sched) sched_free(s->sched);
    s->sched = NULL;
}

void hearth_server_free(hearth_server *s) {
    if (!s) return;
    hearth_server_stop(s);
    pthread_mutex_destroy(&s->mmu);
    free(s->host), free(s->models_dir), free(s->api_keys), free(s->origins);
    free(s);
}
