/* writer.c — writes GGUF v3 files.
 *
 * Metadata is serialised into one growable buffer as it is added (so a key's encoding is
 * fixed at add time and the caller's data need not outlive the call); tensors are kept as
 * borrowed pointers until gguf_writer_write streams header, padding and data to
 * `<path>.tmp.<pid>`, fsyncs and renames it into place — readers never see a partial file.
 *
 * `general.alignment` is owned by the writer: setting it through add_u32/copy_kv is the
 * same as gguf_writer_set_alignment, and the key is emitted once at write time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf_int.h"
#include "quant/quant.h"

typedef struct wtensor {
    char *name;
    size_t name_len;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t size;
    const void *data;
} wtensor;

struct gguf_writer {
    uint8_t *kv;             /* serialised metadata entries */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;             /* [n_keys] copies, for the duplicate check */
    size_t n_keys, keys_cap;
    wtensor *t;
    size_t n_t, t_cap;
    uint32_t alignment;
    bool alignment_set;
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->kv);
    for (size_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

/* ---- serialisation helpers ------------------------------------------------------------ */

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem) return false;
        ncap *= 2;
    }
    void *np = realloc(*p, ncap * elem);
    if (!np) return false;
    *p = np;
    *cap = ncap;
    return true;
}

static bool put(gguf_writer *w, const void *src, size_t n) {
    size_t need;
    if (!hb_add_sz(w->kv_len, n, &need) || !grow((void **)&w->kv, &w->kv_cap, need, 1)) return false;
    if (n) memcpy(w->kv + w->kv_len, src, n);
    w->kv_len += n;
    return true;
}
static bool put_u32(gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static bool put_u64(gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static bool put_str(gguf_writer *w, const char *s, uint64_t len) { return put_u64(w, len) && put(w, s, (size_t)len); }

/* Starts a metadata entry: checks the key and writes it with its type. On failure nothing
 * is recorded. Returns the buffer length before the entry so callers can roll back. */
static int begin_kv(gguf_writer *w, const char *key, gguf_vtype type, size_t *mark, hb_err *err) {
    if (!key || !*key) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: empty key");
    size_t klen = strlen(key);
    if (strcmp(key, "general.alignment") == 0)
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: general.alignment must be a uint32 (it is set by gguf_writer_set_alignment)");
    if (klen > GGUF_MAX_STR) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key too long");
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0)
            return hb_fail(err, HEARTH_E_INVALID, "gguf writer: duplicate key '%s'", key);
    if (w->n_kv >= GGUF_MAX_KV) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: more than %u keys", GGUF_MAX_KV);
    *mark = w->kv_len;
    if (!put_str(w, key, klen) || !put_u32(w, (uint32_t)type))
        return hb_fail(err, HEARTH_E_NOMEM, "gguf writer: out of memory");
    return HEARTH_OK;
}

static int end_kv(gguf_writer *w, const char *key, bool ok, size_t mark, hb_err *err) {
    char *k = NULL;
    if (ok && grow((void **)&w->keys, &w->keys_cap, w->n_keys + 1, sizeof *w->keys))
        k = hb_strndup(key, strlen(key));
    if (!k) {
        w->kv_len = mark;
        return hb_fail(err, HEARTH_E_NOMEM, "gguf writer: out of memory");
    }
    w->keys[w->n_keys++] = k;
    w->n_kv++;
    return HEARTH_OK;
}

static int add_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *v, hb_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, type, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, put(w, v, gguf_vtype_size(type)), mark, err);
}

int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, hb_err *err) {
    if (alignment < 8 || (alignment & (alignment - 1)))
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: alignment %u is not a power of two of at least 8", alignment);
    w->alignment = alignment;
    w->alignment_set = true;
    return HEARTH_OK;
}

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v, hb_err *err) {
    if (key && strcmp(key, "general.alignment") == 0) return gguf_writer_set_alignment(w, v, err);
    return add_scalar(w, key, GGUF_UINT32, &v, err);
}
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v, hb_err *err) {
    return add_scalar(w, key, GGUF_INT32, &v, err);
}
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v, hb_err *err) {
    return add_scalar(w, key, GGUF_UINT64, &v, err);
}
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v, hb_err *err) {
    return add_scalar(w, key, GGUF_FLOAT32, &v, err);
}
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v, hb_err *err) {
    uint8_t b = v ? 1 : 0;
    return add_scalar(w, key, GGUF_BOOL, &b, err);
}

int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s, size_t len, hb_err *err) {
    size_t mark;
    if (len > GGUF_MAX_STR) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': string too long", key);
    int rc = begin_kv(w, key, GGUF_STRING, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, put_str(w, s, len), mark, err);
}

int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n, hb_err *err) {
    size_t mark, sz = gguf_vtype_size(elem);
    if (!sz) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': %s is not a numeric element type", key, gguf_vtype_name(elem));
    if (n > GGUF_MAX_ARRAY) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': array too long", key);
    int rc = begin_kv(w, key, GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    bool ok = put_u32(w, (uint32_t)elem) && put_u64(w, n) && put(w, data, (size_t)(n * sz));
    return end_kv(w, key, ok, mark, err);
}

int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n, hb_err *err) {
    size_t mark;
    if (n > GGUF_MAX_ARRAY) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': array too long", key);
    int rc = begin_kv(w, key, GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    bool ok = put_u32(w, GGUF_STRING) && put_u64(w, n);
    for (uint64_t i = 0; ok && i < n; i++) ok = put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
    return end_kv(w, key, ok, mark, err);
}

/* Serialises an array body recursively (depth-capped like the reader). */
static bool put_array(gguf_writer *w, const gguf_array *a, int depth) {
    if (depth > GGUF_MAX_ARRAY_DEPTH || (unsigned)a->elem >= GGUF_VTYPE_COUNT || a->n > GGUF_MAX_ARRAY) return false;
    if (!put_u32(w, (uint32_t)a->elem) || !put_u64(w, a->n)) return false;
    if (a->elem == GGUF_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_str(w, a->strs[i].data, a->strs[i].len)) return false;
        return true;
    }
    if (a->elem == GGUF_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_array(w, &a->arrs[i].v.arr, depth + 1)) return false;
        return true;
    }
    return put(w, a->raw, (size_t)(a->n * gguf_vtype_size(a->elem)));
}

static bool put_value(gguf_writer *w, const gguf_value *v) {
    uint8_t b[8];
    switch (v->type) {
    case GGUF_UINT8: case GGUF_BOOL: b[0] = (uint8_t)v->v.u64; return put(w, b, 1);
    case GGUF_INT8: b[0] = (uint8_t)(int8_t)v->v.i64; return put(w, b, 1);
    case GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; return put(w, &x, 2); }
    case GGUF_INT16: { int16_t x = (int16_t)v->v.i64; return put(w, &x, 2); }
    case GGUF_UINT32: return put_u32(w, (uint32_t)v->v.u64);
    case GGUF_INT32: { int32_t x = (int32_t)v->v.i64; return put(w, &x, 4); }
    case GGUF_UINT64: return put_u64(w, v->v.u64);
    case GGUF_INT64: return put(w, &v->v.i64, 8);
    case GGUF_FLOAT32: { float x = (float)v->v.f64; return put(w, &x, 4); }
    case GGUF_FLOAT64: return put(w, &v->v.f64, 8);
    case GGUF_STRING: return put_str(w, v->v.str.data, v->v.str.len);
    case GGUF_ARRAY: return put_array(w, &v->v.arr, 1);
    default: return false;
    }
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, hb_err *err) {
    size_t mark;
    if ((unsigned)kv->val.type >= GGUF_VTYPE_COUNT)
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': unknown value type", kv->key.data);
    if (strcmp(kv->key.data, "general.alignment") == 0) {
        if (kv->val.type != GGUF_UINT32 || kv->val.v.u64 > UINT32_MAX)
            return hb_fail(err, HEARTH_E_INVALID, "gguf writer: general.alignment must be uint32");
        return gguf_writer_set_alignment(w, (uint32_t)kv->val.v.u64, err);
    }
    int rc = begin_kv(w, kv->key.data, kv->val.type, &mark, err);
    if (rc) return rc;
    if (!put_value(w, &kv->val)) {
        w->kv_len = mark;
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: key '%s': value cannot be written (bad type, nesting or out of memory)",
                       kv->key.data);
    }
    return end_kv(w, kv->key.data, true, mark, err);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                           const void *data, hb_err *err) {
    const quant_traits *tr = quant_traits_of(type);
    wtensor t = { .type = type, .n_dims = n_dims, .data = data };
    if (!name || !*name) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor with an empty name");
    if (!tr) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': n_dims %u is not in 1..4", name, n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0 || !hb_mul_u64(n, (uint64_t)t.ne[d], &n) || n > (uint64_t)INT64_MAX)
            return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': bad shape", name);
    }
    if (t.ne[0] % tr->blck_size)
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': ne[0] %lld is not a multiple of %u",
                       name, (long long)t.ne[0], tr->blck_size);
    uint64_t rows = t.ne[0] ? n / (uint64_t)t.ne[0] : 0;
    if (!hb_mul_u64((uint64_t)t.ne[0] / tr->blck_size * tr->type_size, rows, &t.size))
        return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': size overflows", name);
    if (t.size && !data) return hb_fail(err, HEARTH_E_INVALID, "gguf writer: tensor '%s': no data", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return hb_fail(err, HEARTH_E_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    t.name_len = strlen(name);
    t.name = hb_strndup(name, t.name_len);
    if (!t.name || !grow((void **)&w->t, &w->t_cap, w->n_t + 1, sizeof *w->t)) {
        free(t.name);
        return hb_fail(err, HEARTH_E_NOMEM, "gguf writer: out of memory");
    }
    w->t[w->n_t++] = t;
    return HEARTH_OK;
}

/* ---- output --------------------------------------------------------------------------- */

static bool wr(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n; }

static bool pad_to(FILE *fp, uint64_t *pos, uint64_t align) {
    static const uint8_t zeros[256];
    uint64_t target = (*pos + align - 1) / align * align;
    while (*pos < target) {
        size_t n = target - *pos > sizeof zeros ? sizeof zeros : (size_t)(target - *pos);
        if (!wr(fp, zeros, n)) return false;
        *pos += n;
    }
    return true;
}

static bool write_all(gguf_writer *w, FILE *fp) {
    bool emit_align = w->alignment_set || w->alignment != GGUF_DEFAULT_ALIGNMENT;
    uint32_t version = 3;
    uint64_t n_t = w->n_t, n_kv = w->n_kv + (emit_align ? 1 : 0), pos = 0, off = 0;
    bool ok = wr(fp, "GGUF", 4) && wr(fp, &version, 4) && wr(fp, &n_t, 8) && wr(fp, &n_kv, 8) &&
              wr(fp, w->kv, w->kv_len);
    pos = 24 + w->kv_len;
    if (ok && emit_align) {
        static const char k[] = "general.alignment";
        uint64_t klen = sizeof k - 1;
        uint32_t type = GGUF_UINT32;
        ok = wr(fp, &klen, 8) && wr(fp, k, klen) && wr(fp, &type, 4) && wr(fp, &w->alignment, 4);
        pos += 8 + klen + 8;
    }
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nl = t->name_len;
        ok = wr(fp, &nl, 8) && wr(fp, t->name, t->name_len) && wr(fp, &t->n_dims, 4) &&
             wr(fp, t->ne, 8 * (size_t)t->n_dims) && wr(fp, &t->type, 4) && wr(fp, &off, 8);
        pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += (t->size + w->alignment - 1) / w->alignment * w->alignment;
    }
    if (ok && w->n_t) ok = pad_to(fp, &pos, w->alignment);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        ok = wr(fp, w->t[i].data, (size_t)w->t[i].size);
        pos += w->t[i].size;
        if (ok && i + 1 < w->n_t) ok = pad_to(fp, &pos, w->alignment);
    }
    return ok;
}

int gguf_writer_write(gguf_writer *w, const char *path, hb_err *err) {
    int rc = HEARTH_OK;
    FILE *fp = NULL;
    char *tmp = NULL;
    size_t tlen = strlen(path) + 32;
    tmp = malloc(tlen);
    HB_CHECK(tmp, HEARTH_E_NOMEM, "%s: out of memory", path);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fp = fopen(tmp, "wb");
    HB_CHECK(fp, HEARTH_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    HB_CHECK(write_all(w, fp) && fflush(fp) == 0, HEARTH_E_IO, "%s: write failed: %s", tmp, strerror(errno));
    HB_CHECK(fsync(fileno(fp)) == 0, HEARTH_E_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    int cr = fclose(fp);
    fp = NULL;
    HB_CHECK(cr == 0, HEARTH_E_IO, "%s: close failed: %s", tmp, strerror(errno));
    HB_CHECK(rename(tmp, path) == 0, HEARTH_E_IO, "%s: cannot rename into place: %s", path, strerror(errno));
out:
    if (fp) fclose(fp);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    return rc;
}
