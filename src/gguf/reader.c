/* reader.c — opens a GGUF (v2/v3) file: header, metadata, tensor directory, validation.
 *
 * Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key,
 * u32 type, value), n_tensors x (string name, u32 n_dims, n_dims x i64 ne, u32 type,
 * u64 offset), padding to `general.alignment` (default 32), then the data section; each
 * tensor's offset is relative to the data section start and aligned.
 *
 * Everything from the file is validated here, once, so that the rest of hearth can use a
 * gguf_file without re-checking: every tensor lies inside the file, every string is
 * NUL-terminated, names are unique.
 */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_int.h"
#include "quant/quant.h"

/* Smallest encodings, used to reject counts that cannot fit before allocating for them. */
#define KV_MIN_BYTES 13      /* key length 8 + type 4 + smallest value 1 */
#define TENSOR_MIN_BYTES 32  /* name length 8 + n_dims 4 + one dim 8 + type 4 + offset 8 */

/* Copies at most 120 bytes of a name from the file, control bytes replaced by '?', so an
 * error message stays one printable line whatever the file holds. */
static const char *safe_name(char *dst, size_t cap, const gguf_str *s) {
    size_t n = s->len < cap - 1 ? (size_t)s->len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->data[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[n] = '\0';
    return dst;
}

static void set_field(gguf_rd *r, const char *what, uint64_t i, const gguf_str *name) {
    char nm[121];
    if (name)
        snprintf(r->field, sizeof r->field, "%s %llu '%s'", what, (unsigned long long)i, safe_name(nm, sizeof nm, name));
    else
        snprintf(r->field, sizeof r->field, "%s %llu", what, (unsigned long long)i);
}

static int read_header(gguf_rd *r) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    snprintf(r->field, sizeof r->field, "header");
    HB_CHECK(r->size >= 4 && memcmp(r->p, "GGUF", 4) == 0, HEARTH_E_FORMAT,
             "%s: magic: not a GGUF file (the first 4 bytes are not \"GGUF\")", f->name);
    r->pos = 4;
    if ((rc = gguf_rd_u32(r, &f->version, "version"))) goto out;
    HB_CHECK(f->version != 1, HEARTH_E_FORMAT,
             "%s: version: GGUF version 1 is not supported (it predates 64-bit counts; re-convert the file)", f->name);
    HB_CHECK(f->version != 0x02000000u && f->version != 0x03000000u, HEARTH_E_FORMAT,
             "%s: version: this looks like a big-endian GGUF file, which is not supported", f->name);
    HB_CHECK(f->version == 2 || f->version == 3, HEARTH_E_FORMAT,
             "%s: version: unsupported GGUF version %u (supported: 2, 3)", f->name, f->version);
    if ((rc = gguf_rd_u64(r, &f->n_tensors, "tensor count"))) goto out;
    if ((rc = gguf_rd_u64(r, &f->n_kv, "metadata count"))) goto out;
    HB_CHECK(f->n_tensors <= GGUF_MAX_TENSORS, HEARTH_E_FORMAT,
             "%s: n_tensors: %llu exceeds the cap of %u", f->name, (unsigned long long)f->n_tensors, GGUF_MAX_TENSORS);
    HB_CHECK(f->n_kv <= GGUF_MAX_KV, HEARTH_E_FORMAT, "%s: n_kv: %llu exceeds the cap of %u", f->name,
             (unsigned long long)f->n_kv, GGUF_MAX_KV);
    /* both caps are small, so the products below cannot overflow */
    HB_CHECK(f->n_kv * KV_MIN_BYTES + f->n_tensors * TENSOR_MIN_BYTES <= r->size - r->pos, HEARTH_E_FORMAT,
             "%s: n_kv/n_tensors: %llu metadata entries and %llu tensors cannot fit in a file of %zu bytes",
             f->name, (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors, r->size);
out:
    return rc;
}

static int read_kvs(gguf_rd *r) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    f->kvs = gguf_arena_alloc(f, (size_t)(f->n_kv ? f->n_kv : 1) * sizeof *f->kvs);
    HB_CHECK(f->kvs, HEARTH_E_NOMEM, "%s: out of memory", f->name);
    if ((rc = gguf_hash_init(&f->kv_hash, f->n_kv))) {
        rc = hb_fail(err, rc, "%s: out of memory", f->name);
        goto out;
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        uint32_t type, dup;
        set_field(r, "key", i, NULL);
        if ((rc = gguf_rd_str(r, &kv->key, "name"))) goto out;
        set_field(r, "key", i, &kv->key);
        /* keys are looked up as C strings: an embedded NUL would make one unreachable */
        HB_CHECK(!memchr(kv->key.data, 0, (size_t)kv->key.len), HEARTH_E_FORMAT,
                 "%s: %s: name contains a NUL byte", f->name, r->field);
        HB_CHECK(gguf_hash_put(&f->kv_hash, &f->kvs[0].key, sizeof *kv, (uint32_t)i, &dup), HEARTH_E_FORMAT,
                 "%s: %s: duplicate key (also key %u)", f->name, r->field, dup);
        if ((rc = gguf_rd_u32(r, &type, "value type"))) goto out;
        HB_CHECK(type < GGUF_VTYPE_COUNT, HEARTH_E_FORMAT, "%s: %s: unknown value type %u", f->name,
                 r->field, type);
        if ((rc = gguf_rd_value(r, (gguf_vtype)type, &kv->val, 0))) goto out;
    }
out:
    return rc;
}

static int read_alignment(gguf_rd *r) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv) goto out;
    HB_CHECK(kv->val.type == GGUF_UINT32, HEARTH_E_FORMAT,
             "%s: general.alignment: must be uint32, found %s", f->name, gguf_vtype_name(kv->val.type));
    uint64_t a = kv->val.v.u64;
    HB_CHECK(a != 0 && (a & (a - 1)) == 0, HEARTH_E_FORMAT,
             "%s: general.alignment: %llu is not a nonzero power of two", f->name, (unsigned long long)a);
    /* The format requires a multiple of 8; the kernels read 4- and 8-byte values straight
     * from the mapped tensors, which a smaller alignment would leave misaligned. */
    HB_CHECK(a >= 8, HEARTH_E_FORMAT, "%s: general.alignment: %llu is not a multiple of 8", f->name, (unsigned long long)a);
    f->alignment = a;
out:
    return rc;
}

/* Reads the dims, checks each and the element count for overflow. */
static int read_dims(gguf_rd *r, gguf_tensor *t) {
    int rc = HEARTH_OK;
    hb_err *err = r->err;
    const char *fn = r->f->name;
    if ((rc = gguf_rd_u32(r, &t->n_dims, "n_dims"))) goto out;
    HB_CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, HEARTH_E_FORMAT,
             "%s: %s: n_dims %u is not in 1..%d", fn, r->field, t->n_dims, GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims && (rc = gguf_rd_u64(r, &v, "dimension"))) goto out;
        HB_CHECK(v <= (uint64_t)INT64_MAX, HEARTH_E_FORMAT, "%s: %s: ne[%u] is negative (%lld)", fn,
                 r->field, d, (long long)(int64_t)v);
        t->ne[d] = (int64_t)v;
        HB_CHECK(hb_mul_u64(n, v, &n) && n <= (uint64_t)INT64_MAX, HEARTH_E_FORMAT,
                 "%s: %s: element count overflows (ne = %lld x %lld x %lld x %lld)", fn, r->field,
                 (long long)t->ne[0], (long long)(d >= 1 ? t->ne[1] : 1),
                 (long long)(d >= 2 ? t->ne[2] : 1), (long long)(d >= 3 ? t->ne[3] : 1));
    }
    t->n_elements = n;
out:
    return rc;
}

static int read_tensor_info(gguf_rd *r, uint64_t i) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    gguf_tensor *t = &f->tensors[i];
    uint32_t dup;
    memset(t, 0, sizeof *t);
    set_field(r, "tensor", i, NULL);
    if ((rc = gguf_rd_str(r, &t->name, "name"))) goto out;
    set_field(r, "tensor", i, &t->name);
    HB_CHECK(!memchr(t->name.data, 0, (size_t)t->name.len), HEARTH_E_FORMAT,
             "%s: %s: name contains a NUL byte", f->name, r->field);
    HB_CHECK(gguf_hash_put(&f->t_hash, &f->tensors[0].name, sizeof *t, (uint32_t)i, &dup), HEARTH_E_FORMAT,
             "%s: %s: duplicate tensor name (also tensor %u)", f->name, r->field, dup);
    if ((rc = read_dims(r, t))) goto out;
    if ((rc = gguf_rd_u32(r, &t->type, "type"))) goto out;
    const quant_traits *tr = quant_traits_of(t->type);
    HB_CHECK(tr, HEARTH_E_FORMAT, "%s: %s: unknown tensor type %u", f->name, r->field, t->type);
    HB_CHECK(t->ne[0] % tr->blck_size == 0, HEARTH_E_FORMAT,
             "%s: %s: ne[0] = %lld is not a multiple of the %s block size %u", f->name, r->field,
             (long long)t->ne[0], tr->name, tr->blck_size);
    uint64_t rows = t->ne[0] ? t->n_elements / (uint64_t)t->ne[0] : 0;
    uint64_t row_bytes = 0;
    HB_CHECK(hb_mul_u64((uint64_t)t->ne[0] / tr->blck_size, tr->type_size, &row_bytes) &&
                 hb_mul_u64(row_bytes, rows, &t->size),
             HEARTH_E_FORMAT, "%s: %s: byte size overflows", f->name, r->field);
    if ((rc = gguf_rd_u64(r, &t->offset, "offset"))) goto out;
    HB_CHECK(t->offset % f->alignment == 0, HEARTH_E_FORMAT,
             "%s: %s: offset %llu is not a multiple of the alignment %llu", f->name, r->field,
             (unsigned long long)t->offset, (unsigned long long)f->alignment);
out:
    return rc;
}

/* Orders tensor indices by offset for the overlap check (ctx = the tensor array). */
static int cmp_offset(const void *a, const void *b, void *ctx) {
    const gguf_tensor *t = ctx;
    uint64_t x = t[*(const uint32_t *)a].offset, y = t[*(const uint32_t *)b].offset;
    return x < y ? -1 : x > y;
}

/* Every tensor must lie in the data section and no two may share bytes. */
static int check_tensor_data(gguf_rd *r) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    uint32_t *order = NULL;
    if (!f->n_tensors) goto out;
    HB_CHECK(f->data_offset <= f->size, HEARTH_E_FORMAT,
             "%s: data section: starts at %llu, past the end of the file (size %zu)", f->name,
             (unsigned long long)f->data_offset, f->size);
    uint64_t room = f->size - f->data_offset;
    char n1[121], n2[121];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        HB_CHECK(t->offset <= room && t->size <= room - t->offset, HEARTH_E_FORMAT,
                 "%s: tensor %llu '%s': offset %llu + size %llu is past the end of the file (size %zu, data section at %llu)",
                 f->name, (unsigned long long)i, safe_name(n1, sizeof n1, &t->name), (unsigned long long)t->offset,
                 (unsigned long long)t->size, f->size, (unsigned long long)f->data_offset);
        t->data = f->data + f->data_offset + t->offset;
    }
    order = malloc(f->n_tensors * sizeof *order);
    HB_CHECK(order, HEARTH_E_NOMEM, "%s: out of memory", f->name);
    for (uint32_t i = 0; i < f->n_tensors; i++) order[i] = i;
    qsort_r(order, f->n_tensors, sizeof *order, cmp_offset, f->tensors);
    uint64_t end = 0;
    int64_t prev = -1;
    for (uint64_t k = 0; k < f->n_tensors; k++) {
        const gguf_tensor *t = &f->tensors[order[k]];
        if (!t->size) continue;
        HB_CHECK(prev < 0 || t->offset >= end, HEARTH_E_FORMAT,
                 "%s: tensor %u '%s': data at offset %llu overlaps tensor %lld '%s' (which ends at %llu)",
                 f->name, order[k], safe_name(n1, sizeof n1, &t->name), (unsigned long long)t->offset, (long long)prev,
                 prev >= 0 ? safe_name(n2, sizeof n2, &f->tensors[prev].name) : "", (unsigned long long)end);
        end = t->offset + t->size;
        prev = order[k];
    }
out:
    free(order);
    return rc;
}

static int read_tensors(gguf_rd *r) {
    int rc = HEARTH_OK;
    gguf_file *f = r->f;
    hb_err *err = r->err;
    f->tensors = gguf_arena_alloc(f, (size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->tensors);
    HB_CHECK(f->tensors, HEARTH_E_NOMEM, "%s: out of memory", f->name);
    if ((rc = gguf_hash_init(&f->t_hash, f->n_tensors))) {
        rc = hb_fail(err, rc, "%s: out of memory", f->name);
        goto out;
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((rc = read_tensor_info(r, i))) goto out;
    /* the data section starts at the aligned end of the header */
    uint64_t a = f->alignment;
    HB_CHECK(hb_add_u64(r->pos, a - 1, &f->data_offset), HEARTH_E_FORMAT, "%s: data offset overflows", f->name);
    f->data_offset &= ~(a - 1);
    rc = check_tensor_data(r);
out:
    return rc;
}

static int parse(gguf_file *f, hb_err *err) {
    int rc;
    gguf_rd r = { .p = f->data, .size = f->size, .pos = 0, .f = f, .err = err };
    if ((rc = read_header(&r))) return rc;
    if ((rc = read_kvs(&r))) return rc;
    if ((rc = read_alignment(&r))) return rc;
    return read_tensors(&r);
}

static int open_common(gguf_file *f, const char *name, gguf_file **out, hb_err *err) {
    int rc = HEARTH_OK;
    f->name = hb_strndup(name, strlen(name));
    HB_CHECK(f->name, HEARTH_E_NOMEM, "%s: out of memory", name);
    if ((rc = parse(f, err))) goto out;
    *out = f;
    f = NULL;
out:
    gguf_close(f);
    return rc;
}

int gguf_open_mem(const uint8_t *data, size_t size, const char *name, gguf_file **out, hb_err *err) {
    *out = NULL;
    if (!name) name = "<memory>";
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return hb_fail(err, HEARTH_E_NOMEM, "%s: out of memory", name);
    f->data = data;
    f->size = data ? size : 0;
    return open_common(f, name, out, err);
}

int gguf_open(const char *path, gguf_file **out, hb_err *err) {
    int rc;
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return hb_fail(err, HEARTH_E_NOMEM, "%s: out of memory", path);
    if ((rc = hb_map_file(path, &f->map, err))) {
        free(f);
        return rc;
    }
    f->data = f->map.data;
    f->size = f->map.size;
    return open_common(f, path, out, err);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    hb_unmap(&f->map);
    gguf_arena_free(f);
    free(f->kv_hash.slots);
    free(f->t_hash.slots);
    free(f->name);
    free(f);
}

/* ---- accessors ----------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint64_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
const char *gguf_path(const gguf_file *f) { return f->name; }
uint64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
uint64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) { return i < f->n_kv ? &f->kvs[i] : NULL; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    int64_t i = gguf_hash_get(&f->kv_hash, f->kvs, sizeof *f->kvs, key, strlen(key));
    return i < 0 ? NULL : &f->kvs[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = gguf_hash_get(&f->t_hash, f->tensors, sizeof *f->tensors, name, strlen(name));
    return i < 0 ? NULL : &f->tensors[i];
}
