/* err.c — error records, status names and small allocation helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

int hb_fail(hb_err *err, int code, const char *fmt, ...) {
    if (err && err->code == HEARTH_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void hb_err_clear(hb_err *err) {
    if (err) {
        err->code = HEARTH_OK;
        err->msg[0] = '\0';
    }
}

const char *hearth_status_str(hearth_status s) {
    static const char *const names[] = {
        "ok", "invalid argument", "I/O error", "bad format", "unsupported",
        "out of memory", "context full", "template error", "cancelled", "internal error",
        "not found",
    };
    return ((unsigned)s < sizeof names / sizeof names[0]) ? names[s] : "unknown status";
}

void hearth_free(void *p) { free(p); }

void *hb_calloc_n(size_t n, size_t size) {
    size_t total;
    if (!hb_mul_sz(n, size, &total)) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *hb_malloc_n(size_t n, size_t size) {
    size_t total;
    if (!hb_mul_sz(n, size, &total)) return NULL;
    return malloc(total ? total : 1);
}

char *hb_strndup(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (r) {
        if (n) memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}
