/* get.c — typed metadata getters over an open gguf_file.
 *
 * Absent keys return HEARTH_E_INVALID without touching err so callers can fall back to a
 * default; a present key of the wrong type or out of range is a format error naming it.
 */
#include <math.h>
#include <string.h>

#include "gguf/gguf_int.h"

static bool is_signed(gguf_vtype t) {
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}
static bool is_unsigned(gguf_vtype t) {
    return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64;
}

/* Reads any integer value as a signed/unsigned pair: *neg is set for negative values. */
static int get_int(const gguf_file *f, const char *key, bool *neg, uint64_t *mag, const gguf_kv **kvp,
                   hb_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    *kvp = kv;
    if (!kv) return HEARTH_E_INVALID;
    if (is_unsigned(kv->val.type)) {
        *neg = false;
        *mag = kv->val.v.u64;
    } else if (is_signed(kv->val.type)) {
        int64_t v = kv->val.v.i64;
        *neg = v < 0;
        *mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    } else {
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected an integer, found %s", f->name, key,
                       gguf_vtype_name(kv->val.type));
    }
    return HEARTH_OK;
}

static int range_fail(const gguf_file *f, const char *key, bool neg, uint64_t mag, const char *range, hb_err *err) {
    return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': value %s%llu is out of range %s", f->name, key,
                   neg ? "-" : "", (unsigned long long)mag, range);
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, hb_err *err) {
    bool neg = false;
    uint64_t mag = 0;
    const gguf_kv *kv;
    int rc = get_int(f, key, &neg, &mag, &kv, err);
    if (rc) return rc;
    if (neg || mag > UINT32_MAX) return range_fail(f, key, neg, mag, "[0, 4294967295]", err);
    *out = (uint32_t)mag;
    return HEARTH_OK;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, hb_err *err) {
    bool neg = false;
    uint64_t mag = 0;
    const gguf_kv *kv;
    int rc = get_int(f, key, &neg, &mag, &kv, err);
    if (rc) return rc;
    if ((!neg && mag > INT32_MAX) || (neg && mag > (uint64_t)INT32_MAX + 1))
        return range_fail(f, key, neg, mag, "[-2147483648, 2147483647]", err);
    *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return HEARTH_OK;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, hb_err *err) {
    bool neg = false;
    uint64_t mag = 0;
    const gguf_kv *kv;
    int rc = get_int(f, key, &neg, &mag, &kv, err);
    if (rc) return rc;
    if (neg) return range_fail(f, key, neg, mag, "[0, 2^64)", err);
    *out = mag;
    return HEARTH_OK;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, hb_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_E_INVALID;
    if (kv->val.type != GGUF_FLOAT32 && kv->val.type != GGUF_FLOAT64)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected a float, found %s", f->name, key,
                       gguf_vtype_name(kv->val.type));
    double d = kv->val.v.f64;
    if (isfinite(d) && fabs(d) > 3.4028234663852886e38)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': value %g does not fit a float32", f->name, key, d);
    *out = (float)d;
    return HEARTH_OK;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, hb_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_E_INVALID;
    if (kv->val.type != GGUF_BOOL)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected a bool, found %s", f->name, key,
                       gguf_vtype_name(kv->val.type));
    *out = kv->val.v.u64 != 0;
    return HEARTH_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, const gguf_str **out, hb_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_E_INVALID;
    if (kv->val.type != GGUF_STRING)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected a string, found %s", f->name, key,
                       gguf_vtype_name(kv->val.type));
    *out = &kv->val.v.str;
    return HEARTH_OK;
}

int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype elem, const gguf_array **out, hb_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return HEARTH_E_INVALID;
    if (kv->val.type != GGUF_ARRAY)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected an array, found %s", f->name, key,
                       gguf_vtype_name(kv->val.type));
    if (elem != GGUF_VTYPE_COUNT && kv->val.v.arr.elem != elem)
        return hb_fail(err, HEARTH_E_FORMAT, "%s: key '%s': expected an array of %s, found an array of %s",
                       f->name, key, gguf_vtype_name(elem), gguf_vtype_name(kv->val.v.arr.elem));
    *out = &kv->val.v.arr;
    return HEARTH_OK;
}
