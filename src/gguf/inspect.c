/* inspect.c — the public model-file inspection API (hearth_gguf_*, include/hearth.h): a
 * thin, read-only view of a validated gguf_file for the CLI, which may not see src/.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

struct hearth_gguf {
    gguf_file *f;
};

hearth_status hearth_gguf_open(const char *path, hearth_gguf **out, char *errbuf, size_t errlen) {
    hb_err e;
    int rc;
    hb_err_clear(&e);
    *out = NULL;
    if (!path || !*path) {
        rc = hb_fail(&e, HEARTH_E_INVALID, "no model file given");
        goto out;
    }
    hearth_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        rc = hb_fail(&e, HEARTH_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if ((rc = gguf_open(path, &g->f, &e))) {
        free(g);
        goto out;
    }
    *out = g;
out:
    if (rc && errbuf && errlen) snprintf(errbuf, errlen, "%s", e.msg);
    return (hearth_status)rc;
}

void hearth_gguf_close(hearth_gguf *g) {
    if (!g) return;
    gguf_close(g->f);
    free(g);
}

uint32_t hearth_gguf_version(const hearth_gguf *g) { return gguf_version(g->f); }
uint64_t hearth_gguf_alignment(const hearth_gguf *g) { return gguf_alignment(g->f); }
uint64_t hearth_gguf_file_size(const hearth_gguf *g) { return gguf_file_size(g->f); }
uint64_t hearth_gguf_data_offset(const hearth_gguf *g) { return gguf_data_offset(g->f); }
uint64_t hearth_gguf_n_kv(const hearth_gguf *g) { return gguf_n_kv(g->f); }
uint64_t hearth_gguf_n_tensors(const hearth_gguf *g) { return gguf_n_tensors(g->f); }

int64_t hearth_gguf_find_key(const hearth_gguf *g, const char *key) {
    const gguf_kv *kv = key ? gguf_find(g->f, key) : NULL;
    return kv ? (int64_t)(kv - gguf_kv_at(g->f, 0)) : -1;
}

const char *hearth_gguf_key(const hearth_gguf *g, uint64_t i) {
    const gguf_kv *kv = gguf_kv_at(g->f, i);
    return kv ? kv->key.data : NULL;
}

const char *hearth_gguf_type_name(const hearth_gguf *g, uint64_t i) {
    const gguf_kv *kv = gguf_kv_at(g->f, i);
    return kv ? gguf_vtype_name(kv->val.type) : NULL;
}

bool hearth_gguf_array_info(const hearth_gguf *g, uint64_t i, const char **elem_type, uint64_t *n) {
    const gguf_kv *kv = gguf_kv_at(g->f, i);
    if (!kv || kv->val.type != GGUF_ARRAY) return false;
    if (elem_type) *elem_type = gguf_vtype_name(kv->val.v.arr.elem);
    if (n) *n = kv->val.v.arr.n;
    return true;
}

char *hearth_gguf_value_text(const hearth_gguf *g, uint64_t i, size_t max_elems, size_t max_str) {
    const gguf_kv *kv = gguf_kv_at(g->f, i);
    return kv ? gguf_value_text(&kv->val, max_elems, max_str, true) : NULL;
}

const char *hearth_gguf_get_str(const hearth_gguf *g, const char *key) {
    const gguf_kv *kv = key ? gguf_find(g->f, key) : NULL;
    return kv && kv->val.type == GGUF_STRING ? kv->val.v.str.data : NULL;
}

bool hearth_gguf_get_int(const hearth_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = key ? gguf_find(g->f, key) : NULL;
    if (!kv) return false;
    switch (kv->val.type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
        if (kv->val.v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->val.v.u64;
        return true;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
        *out = kv->val.v.i64;
        return true;
    default:
        return false;
    }
}

int64_t hearth_gguf_array_len(const hearth_gguf *g, const char *key) {
    const gguf_kv *kv = key ? gguf_find(g->f, key) : NULL;
    return kv && kv->val.type == GGUF_ARRAY ? (int64_t)kv->val.v.arr.n : -1;
}

hearth_status hearth_gguf_tensor(const hearth_gguf *g, uint64_t i, hearth_gguf_tensor_info *out) {
    const gguf_tensor *t = gguf_tensor_at(g->f, i);
    memset(out, 0, sizeof *out);
    if (!t) return HEARTH_E_INVALID;
    out->name = t->name.data;
    out->type = t->type;
    out->type_name = quant_type_name(t->type);
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->n_elements = t->n_elements;
    out->offset = gguf_data_offset(g->f) + t->offset;
    out->size = t->size;
    return HEARTH_OK;
}

/* ---- JSON rendering -------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), 0 if invalid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* A JSON string of s with invalid UTF-8 bytes replaced by U+FFFD. */
static json_t *json_str_lossy(const gguf_str *s) {
    const unsigned char *p = (const unsigned char *)s->data;
    size_t n = (size_t)s->len, i = 0, bad = 0;
    while (i < n) {
        size_t l = utf8_valid_len(p + i, n - i);
        if (!l) { bad++; l = 1; }
        i += l;
    }
    if (!bad) return json_stringn(s->data, n);
    char *buf = malloc(n + bad * 2 + 1), *o = buf;
    if (!buf) return NULL;
    for (i = 0; i < n;) {
        size_t l = utf8_valid_len(p + i, n - i);
        if (l) { memcpy(o, p + i, l); o += l; i += l; }
        else { memcpy(o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    json_t *j = json_stringn(buf, (size_t)(o - buf));
    free(buf);
    return j;
}

static json_t *json_of_value(const gguf_value *v, size_t max_elems);

/* JSON has no NaN/Infinity: those become null. */
static json_t *jreal(double d) { return isfinite(d) ? json_real(d) : json_null(); }

static json_t *json_of_array(const gguf_array *a, size_t max_elems) {
    json_t *arr = json_array();
    for (uint64_t i = 0; arr && i < a->n && i < max_elems; i++) {
        json_t *e;
        if (a->elem == GGUF_STRING) e = json_str_lossy(&a->strs[i]);
        else if (a->elem == GGUF_ARRAY) e = json_of_array(&a->arrs[i].v.arr, max_elems);
        else if (a->elem == GGUF_FLOAT32 || a->elem == GGUF_FLOAT64) e = jreal(gguf_arr_f64(a, i));
        else if (a->elem == GGUF_BOOL) e = json_boolean(gguf_arr_i64(a, i));
        else if (a->elem == GGUF_UINT64 && gguf_arr_f64(a, i) > 9.2e18) e = json_real(gguf_arr_f64(a, i));
        else e = json_integer(gguf_arr_i64(a, i));
        if (!e || json_array_append_new(arr, e)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *json_of_value(const gguf_value *v, size_t max_elems) {
    switch (v->type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
        /* JSON integers here are int64: larger values become reals rather than wrap */
        return v->v.u64 > (uint64_t)INT64_MAX ? json_real((double)v->v.u64) : json_integer((json_int_t)v->v.u64);
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64: return json_integer(v->v.i64);
    case GGUF_FLOAT32: case GGUF_FLOAT64: return jreal(v->v.f64);
    case GGUF_BOOL: return json_boolean(v->v.u64);
    case GGUF_STRING: return json_str_lossy(&v->v.str);
    case GGUF_ARRAY: return json_of_array(&v->v.arr, max_elems);
    default: return NULL;
    }
}

char *hearth_gguf_value_json(const hearth_gguf *g, uint64_t i, size_t max_elems) {
    const gguf_kv *kv = gguf_kv_at(g->f, i);
    if (!kv) return NULL;
    json_t *j = json_of_value(&kv->val, max_elems);
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    return s;
}
