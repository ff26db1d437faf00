/* json.c — JSON in (jansson -> template values, key order kept) and out (the `tojson`
 * filter with Python json.dumps formatting: ", " / ": " separators, or "," + newline +
 * indent when indent is given; ensure_ascii off by default; NaN/Infinity as Python).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "chat/jinja.h"

#define JSON_MAX_DEPTH 128

int jv_from_json(jctx *c, json_t *j, jv *out, int depth) {
    int rc = 0;
    if (depth > JSON_MAX_DEPTH) return jinja_fail(c, "variables nested deeper than %d", JSON_MAX_DEPTH);
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return 0;
    case JSON_TRUE: *out = jv_bool(true); return 0;
    case JSON_FALSE: *out = jv_bool(false); return 0;
    case JSON_INTEGER: *out = jv_int((int64_t)json_integer_value(j)); return 0;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return 0;
    case JSON_STRING: return jv_str(c, json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if ((rc = jv_list_new(c, n, out))) return rc;
        for (size_t i = 0; i < n && !rc; i++) {
            jv e;
            rc = jv_from_json(c, json_array_get(j, i), &e, depth + 1);
            if (!rc) rc = jv_list_push(c, out->u.l, e);
        }
        return rc;
    }
    case JSON_OBJECT: {
        if ((rc = jv_dict_new(c, json_object_size(j), out))) return rc;
        const char *k;
        json_t *v;
        /* jansson iterates objects in insertion order, which is the order templates see */
        json_object_foreach(j, k, v) {
            jv kv, vv;
            if ((rc = jv_cstr(c, k, &kv))) return rc;
            if ((rc = jv_from_json(c, v, &vv, depth + 1))) return rc;
            if ((rc = jv_dict_set(c, out->u.d, kv, vv))) return rc;
        }
        return 0;
    }
    default: return jinja_fail(c, "unsupported JSON value");
    }
}

static int put_json_string(jctx *c, jbuf *b, const jstr *s, bool ascii) {
    int rc = jbuf_put(c, b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < s->len && !rc;) {
        unsigned char ch = (unsigned char)s->s[i];
        char tmp[16];
        const char *rep = NULL;
        size_t st = i;
        if (ch >= 0x80 && ascii) {
            int32_t cp = jutf8_next(s->s, s->len, &i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            }
            rc = jbuf_put(c, b, s->s + run, st - run);
            if (!rc) rc = jbuf_puts(c, b, tmp);
            run = i;
            continue;
        }
        i++;
        switch (ch) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        default:
            if (ch < 0x20 || (ascii && ch == 0x7f)) {
                snprintf(tmp, sizeof tmp, "\\u%04x", ch);
                rep = tmp;
            }
        }
        if (!rep) continue;
        rc = jbuf_put(c, b, s->s + run, st - run);
        if (!rc) rc = jbuf_puts(c, b, rep);
        run = i;
    }
    if (!rc) rc = jbuf_put(c, b, s->s + run, s->len - run);
    return rc ? rc : jbuf_put(c, b, "\"", 1);
}

static int newline_indent(jctx *c, jbuf *b, const jjson_opts *o, int level) {
    int rc = jbuf_put(c, b, "\n", 1);
    for (int i = 0; i < o->indent * level && !rc; i++) rc = jbuf_put(c, b, " ", 1);
    return rc;
}

/* Index order of a dict's entries: insertion order, or sorted by key for sort_keys. */
static int key_order(jctx *c, const jdict *d, bool sort, size_t **idx) {
    *idx = jarena_alloc(c->ar, (d->n ? d->n : 1) * sizeof **idx);
    if (!*idx) return jinja_oom(c);
    for (size_t i = 0; i < d->n; i++) (*idx)[i] = i;
    if (!sort) return 0;
    /* insertion sort: stable and fine for template-sized dicts (steps are counted) */
    for (size_t i = 1; i < d->n; i++) {
        size_t k = (*idx)[i], j = i;
        int rc = jinja_step(c, i);
        if (rc) return rc;
        while (j > 0) {
            bool lt;
            if ((rc = jv_less(c, d->e[k].k, d->e[(*idx)[j - 1]].k, &lt))) return rc;
            if (!lt) break;
            (*idx)[j] = (*idx)[j - 1];
            j--;
        }
        (*idx)[j] = k;
    }
    return 0;
}

static int put_key(jctx *c, jbuf *b, jv k, const jjson_opts *o) {
    char tmp[64];
    switch (k.t) {
    case JT_STR: return put_json_string(c, b, k.u.s, o->ensure_ascii);
    case JT_INT: snprintf(tmp, sizeof tmp, "\"%lld\"", (long long)k.u.i); return jbuf_puts(c, b, tmp);
    case JT_BOOL: return jbuf_puts(c, b, k.u.b ? "\"true\"" : "\"false\"");
    case JT_NONE: return jbuf_puts(c, b, "\"null\"");
    case JT_FLOAT: {
        char f[40];
        jfmt_double(k.u.f, f, sizeof f);
        snprintf(tmp, sizeof tmp, "\"%s\"", f);
        return jbuf_puts(c, b, tmp);
    }
    default:
        return jinja_fail(c, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

int jv_to_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int level) {
    char tmp[64];
    int rc;
    const char *isep = o->item_sep ? o->item_sep : (o->indent >= 0 ? "," : ", ");
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    if (level > JSON_MAX_DEPTH) return jinja_fail(c, "tojson: value nested too deeply");
    if ((rc = jinja_step(c, 1))) return rc;
    switch (v.t) {
    case JT_NONE: return jbuf_puts(c, b, "null");
    case JT_BOOL: return jbuf_puts(c, b, v.u.b ? "true" : "false");
    case JT_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return jbuf_puts(c, b, tmp);
    case JT_FLOAT:
        if (isnan(v.u.f)) return jbuf_puts(c, b, "NaN");
        if (isinf(v.u.f)) return jbuf_puts(c, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        jfmt_double(v.u.f, tmp, sizeof tmp);
        return jbuf_puts(c, b, tmp);
    case JT_STR: return put_json_string(c, b, v.u.s, o->ensure_ascii);
    case JT_LIST: {
        const jlist *l = v.u.l;
        if (l->n == 0) return jbuf_puts(c, b, "[]");
        if ((rc = jbuf_puts(c, b, "["))) return rc;
        for (size_t i = 0; i < l->n; i++) {
            if (i && (rc = jbuf_puts(c, b, isep))) return rc;
            if (o->indent >= 0 && (rc = newline_indent(c, b, o, level + 1))) return rc;
            if ((rc = jv_to_json(c, b, l->v[i], o, level + 1))) return rc;
        }
        if (o->indent >= 0 && (rc = newline_indent(c, b, o, level))) return rc;
        return jbuf_puts(c, b, "]");
    }
    case JT_DICT: {
        const jdict *d = v.u.d;
        size_t *idx;
        if (d->n == 0) return jbuf_puts(c, b, "{}");
        if ((rc = key_order(c, d, o->sort_keys, &idx))) return rc;
        if ((rc = jbuf_puts(c, b, "{"))) return rc;
        for (size_t i = 0; i < d->n; i++) {
            const jdict_ent *e = &d->e[idx[i]];
            if (i && (rc = jbuf_puts(c, b, isep))) return rc;
            if (o->indent >= 0 && (rc = newline_indent(c, b, o, level + 1))) return rc;
            if ((rc = put_key(c, b, e->k, o))) return rc;
            if ((rc = jbuf_puts(c, b, ksep))) return rc;
            if ((rc = jv_to_json(c, b, e->v, o, level + 1))) return rc;
        }
        if (o->indent >= 0 && (rc = newline_indent(c, b, o, level))) return rc;
        return jbuf_puts(c, b, "}");
    }
    default:
        return jinja_fail(c, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}
