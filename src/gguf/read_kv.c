/* read_kv.c — the checked cursor, arena, name hash and metadata value parser of the GGUF
 * reader.
 *
 * Invariant: no count read from the file is used to allocate or index before it has been
 * checked against both its cap and the bytes left in the file (each element of an array
 * needs at least a known number of bytes, so `n` elements cannot fit in fewer).
 */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_int.h"

/* ---- arena --------------------------------------------------------------------------- */

#define GGUF_CHUNK_MIN (1u << 20)

void *gguf_arena_alloc(gguf_file *f, size_t n) {
    size_t need = (n + 7) & ~(size_t)7;
    if (need < n) return NULL;
    gguf_chunk *c = f->arena;
    if (!c || c->cap - c->used < need) {
        /* chunks scale with the file (small files stay cheap; big vocabs use few chunks) */
        size_t cap = f->size < 4096 ? 4096 : f->size > GGUF_CHUNK_MIN ? GGUF_CHUNK_MIN : f->size;
        if (cap < need) cap = need;
        if (cap > SIZE_MAX - sizeof *c) return NULL;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = f->arena;
        f->arena = c;
    }
    void *p = (char *)c->mem + c->used;
    c->used += need;
    return p;
}

void gguf_arena_free(gguf_file *f) {
    gguf_chunk *c = f->arena;
    while (c) {
        gguf_chunk *n = c->next;
        free(c);
        c = n;
    }
    f->arena = NULL;
}

/* ---- name hash ----------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, uint64_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int gguf_hash_init(gguf_hash *h, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    h->slots = calloc(cap, sizeof *h->slots);
    h->mask = cap - 1;
    return h->slots ? HEARTH_OK : HEARTH_E_NOMEM;
}

static const gguf_str *entry(const void *names, size_t stride, uint32_t i) {
    return (const gguf_str *)((const char *)names + (size_t)i * stride);
}

int64_t gguf_hash_get(const gguf_hash *h, const void *names, size_t stride, const char *s, uint64_t len) {
    if (!h->slots) return -1;
    for (uint64_t j = hash_bytes(s, len) & h->mask;; j = (j + 1) & h->mask) {
        uint32_t v = h->slots[j];
        if (!v) return -1;
        const gguf_str *e = entry(names, stride, v - 1);
        if (e->len == len && memcmp(e->data, s, len) == 0) return v - 1;
    }
}

bool gguf_hash_put(gguf_hash *h, const gguf_str *names, size_t stride, uint32_t idx, uint32_t *dup) {
    const gguf_str *k = entry(names, stride, idx);
    for (uint64_t j = hash_bytes(k->data, k->len) & h->mask;; j = (j + 1) & h->mask) {
        uint32_t v = h->slots[j];
        if (!v) {
            h->slots[j] = idx + 1;
            return true;
        }
        const gguf_str *e = entry(names, stride, v - 1);
        if (e->len == k->len && memcmp(e->data, k->data, k->len) == 0) {
            *dup = v - 1;
            return false;
        }
    }
}

/* ---- cursor -------------------------------------------------------------------------- */

int gguf_rd_need(gguf_rd *r, uint64_t n, const char *what) {
    if (n <= r->size - r->pos) return HEARTH_OK;
    return hb_fail(r->err, HEARTH_E_FORMAT,
                   "%s: %s: %s: truncated (needs %llu bytes at offset %zu, file size %zu)",
                   r->f->name, r->field, what, (unsigned long long)n, r->pos, r->size);
}

int gguf_rd_u32(gguf_rd *r, uint32_t *v, const char *what) {
    int rc = gguf_rd_need(r, 4, what);
    if (rc) return rc;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return HEARTH_OK;
}

int gguf_rd_u64(gguf_rd *r, uint64_t *v, const char *what) {
    int rc = gguf_rd_need(r, 8, what);
    if (rc) return rc;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return HEARTH_OK;
}

int gguf_rd_str(gguf_rd *r, gguf_str *out, const char *what) {
    uint64_t len;
    int rc = gguf_rd_u64(r, &len, what);
    if (rc) return rc;
    if (len > GGUF_MAX_STR)
        return hb_fail(r->err, HEARTH_E_FORMAT, "%s: %s: %s: length %llu exceeds the cap of %u bytes",
                       r->f->name, r->field, what, (unsigned long long)len, GGUF_MAX_STR);
    if (len > r->size - r->pos)
        return hb_fail(r->err, HEARTH_E_FORMAT,
                       "%s: %s: %s: length %llu is past the end of the file (%zu bytes left at offset %zu)",
                       r->f->name, r->field, what, (unsigned long long)len, r->size - r->pos, r->pos);
    char *s = gguf_arena_alloc(r->f, (size_t)len + 1);
    if (!s) return hb_fail(r->err, HEARTH_E_NOMEM, "%s: out of memory", r->f->name);
    memcpy(s, r->p + r->pos, (size_t)len);
    s[len] = '\0';
    r->pos += (size_t)len;
    out->data = s;
    out->len = len;
    return HEARTH_OK;
}

/* ---- values -------------------------------------------------------------------------- */

size_t gguf_vtype_size(gguf_vtype t) {
    static const uint8_t sz[GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    return (unsigned)t < GGUF_VTYPE_COUNT ? sz[t] : 0;
}

/* Decodes one fixed-size scalar at p into the value union. */
static void decode_scalar(gguf_vtype t, const uint8_t *p, gguf_value *out) {
    out->type = t;
    switch (t) {
    case GGUF_UINT8: out->v.u64 = p[0]; break;
    case GGUF_BOOL: out->v.u64 = p[0] != 0; break;
    case GGUF_INT8: out->v.i64 = (int8_t)p[0]; break;
    case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); out->v.u64 = x; break; }
    case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); out->v.i64 = x; break; }
    case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); out->v.u64 = x; break; }
    case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); out->v.i64 = x; break; }
    case GGUF_UINT64: memcpy(&out->v.u64, p, 8); break;
    case GGUF_INT64: memcpy(&out->v.i64, p, 8); break;
    case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); out->v.f64 = x; break; }
    case GGUF_FLOAT64: memcpy(&out->v.f64, p, 8); break;
    default: break;
    }
}

static int rd_array(gguf_rd *r, gguf_array *a, int depth);

static int rd_string_elems(gguf_rd *r, gguf_array *a) {
    /* each element needs at least its 8-byte length */
    if (a->n > (r->size - r->pos) / 8)
        return hb_fail(r->err, HEARTH_E_FORMAT,
                       "%s: %s: array of %llu strings cannot fit in the %zu bytes left at offset %zu",
                       r->f->name, r->field, (unsigned long long)a->n, r->size - r->pos, r->pos);
    a->strs = gguf_arena_alloc(r->f, (size_t)a->n * sizeof *a->strs);
    if (!a->strs) return hb_fail(r->err, HEARTH_E_NOMEM, "%s: out of memory", r->f->name);
    for (uint64_t i = 0; i < a->n; i++) {
        int rc = gguf_rd_str(r, &a->strs[i], "string element");
        if (rc) return rc;
    }
    return HEARTH_OK;
}

static int rd_nested_elems(gguf_rd *r, gguf_array *a, int depth) {
    if (depth + 1 > GGUF_MAX_ARRAY_DEPTH)
        return hb_fail(r->err, HEARTH_E_FORMAT, "%s: %s: arrays nested deeper than %d levels",
                       r->f->name, r->field, GGUF_MAX_ARRAY_DEPTH);
    /* each nested array needs at least its element type (4) and count (8) */
    if (a->n > (r->size - r->pos) / 12)
        return hb_fail(r->err, HEARTH_E_FORMAT,
                       "%s: %s: array of %llu arrays cannot fit in the %zu bytes left at offset %zu",
                       r->f->name, r->field, (unsigned long long)a->n, r->size - r->pos, r->pos);
    a->arrs = gguf_arena_alloc(r->f, (size_t)a->n * sizeof *a->arrs);
    if (!a->arrs) return hb_fail(r->err, HEARTH_E_NOMEM, "%s: out of memory", r->f->name);
    for (uint64_t i = 0; i < a->n; i++) {
        memset(&a->arrs[i], 0, sizeof a->arrs[i]);
        a->arrs[i].type = GGUF_ARRAY;
        int rc = rd_array(r, &a->arrs[i].v.arr, depth + 1);
        if (rc) return rc;
    }
    return HEARTH_OK;
}

/* Reads an array body (element type, count, elements); depth counts enclosing arrays. */
static int rd_array(gguf_rd *r, gguf_array *a, int depth) {
    uint32_t elem;
    int rc;
    memset(a, 0, sizeof *a);
    if ((rc = gguf_rd_u32(r, &elem, "array element type"))) return rc;
    if (elem >= GGUF_VTYPE_COUNT)
        return hb_fail(r->err, HEARTH_E_FORMAT, "%s: %s: unknown array element type %u",
                       r->f->name, r->field, elem);
    a->elem = (gguf_vtype)elem;
    if ((rc = gguf_rd_u64(r, &a->n, "array length"))) return rc;
    if (a->n > GGUF_MAX_ARRAY)
        return hb_fail(r->err, HEARTH_E_FORMAT, "%s: %s: array length %llu exceeds the cap of %u",
                       r->f->name, r->field, (unsigned long long)a->n, GGUF_MAX_ARRAY);
    if (a->elem == GGUF_STRING) return rd_string_elems(r, a);
    if (a->elem == GGUF_ARRAY) return rd_nested_elems(r, a, depth);
    uint64_t bytes = a->n * gguf_vtype_size(a->elem); /* n <= 2^28, size <= 8: no overflow */
    if (bytes > r->size - r->pos)
        return hb_fail(r->err, HEARTH_E_FORMAT,
                       "%s: %s: array of %llu %s (%llu bytes) is past the end of the file (%zu bytes left at offset %zu)",
                       r->f->name, r->field, (unsigned long long)a->n, gguf_vtype_name(a->elem),
                       (unsigned long long)bytes, r->size - r->pos, r->pos);
    a->raw = r->p + r->pos;
    r->pos += (size_t)bytes;
    return HEARTH_OK;
}

int gguf_rd_value(gguf_rd *r, gguf_vtype type, gguf_value *out, int depth) {
    memset(out, 0, sizeof *out);
    out->type = type;
    if (type == GGUF_STRING) return gguf_rd_str(r, &out->v.str, "string value");
    if (type == GGUF_ARRAY) return rd_array(r, &out->v.arr, depth);
    size_t sz = gguf_vtype_size(type);
    if (!sz)
        return hb_fail(r->err, HEARTH_E_FORMAT, "%s: %s: unknown value type %u", r->f->name,
                       r->field, (unsigned)type);
    int rc = gguf_rd_need(r, sz, "value");
    if (rc) return rc;
    decode_scalar(type, r->p + r->pos, out);
    r->pos += sz;
    return HEARTH_OK;
}

/* ---- array element access ------------------------------------------------------------ */

int64_t gguf_arr_i64(const gguf_array *a, uint64_t i) {
    gguf_value v = { 0 };
    size_t sz = gguf_vtype_size(a->elem);
    if (!sz || !a->raw || i >= a->n) return 0;
    decode_scalar(a->elem, a->raw + i * sz, &v);
    switch (a->elem) {
    case GGUF_FLOAT32: case GGUF_FLOAT64:
        /* clamp: converting an out-of-range double is undefined behaviour */
        if (!(v.v.f64 > -9.2e18)) return v.v.f64 != v.v.f64 ? 0 : INT64_MIN;
        if (!(v.v.f64 < 9.2e18)) return INT64_MAX;
        return (int64_t)v.v.f64;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64: return v.v.i64;
    default: return (int64_t)v.v.u64;
    }
}

double gguf_arr_f64(const gguf_array *a, uint64_t i) {
    gguf_value v = { 0 };
    size_t sz = gguf_vtype_size(a->elem);
    if (!sz || !a->raw || i >= a->n) return 0;
    decode_scalar(a->elem, a->raw + i * sz, &v);
    switch (a->elem) {
    case GGUF_FLOAT32: case GGUF_FLOAT64: return v.v.f64;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64: return (double)v.v.i64;
    default: return (double)v.v.u64;
    }
}

const char *gguf_vtype_name(gguf_vtype t) {
    static const char *const names[GGUF_VTYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}
