/* text.c — renders metadata values as human text for `hearth show` and meta_text:
 * numbers in decimal (floats in the shortest form that reads back exactly), bools as
 * true/false, strings quoted with JSON-style escapes (or raw), arrays as
 * `[512 x string] ["<unk>", "<s>", ...]` with at most max_elems elements shown.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_int.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Shortest %g form that converts back to the same value at the given precision. */
static void sb_float(sbuf *b, double d, bool f32) {
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        double back = strtod(tmp, NULL);
        if (f32 ? (float)back == (float)d : back == d) break;
    }
    sb_put(b, tmp, strlen(tmp));
}

/* Quoted, escaped string; cut after max_str bytes (0 = all) at a character boundary. */
static void sb_quoted(sbuf *b, const gguf_str *s, size_t max_str) {
    uint64_t n = s->len;
    bool cut = max_str && n > max_str;
    if (cut) {
        n = max_str;
        while (n > 0 && ((uint8_t)s->data[n] & 0xC0) == 0x80) n--; /* not mid-character */
    }
    sb_put(b, "\"", 1);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->data[i];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) sb_printf(b, "\\u%04x", c);
            else sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
    if (cut) sb_printf(b, "... (%llu bytes)", (unsigned long long)s->len);
}

static void sb_array(sbuf *b, const gguf_array *a, size_t max_elems, size_t max_str);

static void sb_scalar(sbuf *b, const gguf_value *v, size_t max_str, bool quote) {
    switch (v->type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
        sb_printf(b, "%llu", (unsigned long long)v->v.u64);
        break;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
        sb_printf(b, "%lld", (long long)v->v.i64);
        break;
    case GGUF_FLOAT32: sb_float(b, v->v.f64, true); break;
    case GGUF_FLOAT64: sb_float(b, v->v.f64, false); break;
    case GGUF_BOOL: sb_printf(b, "%s", v->v.u64 ? "true" : "false"); break;
    case GGUF_STRING:
        if (quote) sb_quoted(b, &v->v.str, max_str);
        else sb_put(b, v->v.str.data, (size_t)v->v.str.len);
        break;
    default: break;
    }
}

/* Elements of a (possibly nested) array: `[e0, e1, ...]`. */
static void sb_array(sbuf *b, const gguf_array *a, size_t max_elems, size_t max_str) {
    sb_put(b, "[", 1);
    for (uint64_t i = 0; i < a->n; i++) {
        if (i) sb_put(b, ", ", 2);
        if (i >= max_elems) {
            sb_put(b, "...", 3);
            break;
        }
        if (a->elem == GGUF_STRING) {
            sb_quoted(b, &a->strs[i], max_str);
        } else if (a->elem == GGUF_ARRAY) {
            sb_array(b, &a->arrs[i].v.arr, max_elems, max_str);
        } else {
            gguf_value e;
            memset(&e, 0, sizeof e);
            e.type = a->elem;
            size_t sz = gguf_vtype_size(a->elem);
            const uint8_t *p = a->raw + i * sz;
            if (a->elem == GGUF_FLOAT32) { float x; memcpy(&x, p, 4); e.v.f64 = x; }
            else if (a->elem == GGUF_FLOAT64) memcpy(&e.v.f64, p, 8);
            else if (a->elem == GGUF_INT8 || a->elem == GGUF_INT16 || a->elem == GGUF_INT32 || a->elem == GGUF_INT64)
                e.v.i64 = gguf_arr_i64(a, i);
            else e.v.u64 = (uint64_t)gguf_arr_i64(a, i);
            sb_scalar(b, &e, max_str, true);
        }
    }
    sb_put(b, "]", 1);
}

char *gguf_value_text(const gguf_value *v, size_t max_elems, size_t max_str, bool quote) {
    sbuf b = { 0 };
    sb_put(&b, "", 0);
    if (v->type == GGUF_ARRAY) {
        sb_printf(&b, "[%llu x %s] ", (unsigned long long)v->v.arr.n, gguf_vtype_name(v->v.arr.elem));
        sb_array(&b, &v->v.arr, max_elems, max_str);
    } else {
        sb_scalar(&b, v, max_str, quote);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
