/* gguf.h — bounds-checked GGUF (v2, v3) reader and a writer.
 *
 * The reader maps the file, validates everything before use (magic, version, counts and
 * lengths against the file size and caps, types, dims without overflow, tensor offsets and
 * sizes inside the data section, alignment, duplicate keys/names) and builds an index of
 * metadata and tensors. Nothing read from the file is trusted before it is checked.
 *
 * Ownership: a gguf_file owns its mapping and all strings it returns; every pointer it
 * hands out is borrowed and valid until gguf_close. A gguf_file is immutable after open
 * and may be read from several threads.
 */
#ifndef HEARTH_GGUF_H
#define HEARTH_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/base.h"

typedef enum gguf_vtype {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
    GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12,
    GGUF_VTYPE_COUNT = 13
} gguf_vtype;

/* Caps applied while reading (a file beyond them is rejected as hostile). */
#define GGUF_MAX_KV 65536u
#define GGUF_MAX_TENSORS 1000000u
#define GGUF_MAX_STR (64u << 20)        /* one string */
#define GGUF_MAX_ARRAY (1u << 28)       /* elements in one array */
#define GGUF_MAX_ARRAY_DEPTH 8
#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string: NUL-terminated copy (data[len] == 0) — but it may contain embedded NULs, so
 * use len. */
typedef struct gguf_str {
    const char *data;
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;

/* An array value: `n` elements of `elem` type. Numeric elements are stored packed,
 * little-endian, unaligned at `raw` (read with memcpy or the gguf_arr_* getters); string
 * elements are in `strs`; nested arrays in `arrs`. */
typedef struct gguf_array {
    gguf_vtype elem;
    uint64_t n;
    const uint8_t *raw;   /* numeric/bool elements (points into the mapping) */
    gguf_str *strs;       /* [n] when elem == GGUF_STRING */
    gguf_value *arrs;     /* [n] when elem == GGUF_ARRAY (each has type GGUF_ARRAY) */
} gguf_array;

struct gguf_value {
    gguf_vtype type;
    union {
        uint64_t u64;     /* UINT8/16/32/64 and BOOL (0/1) */
        int64_t i64;      /* INT8/16/32/64 */
        double f64;       /* FLOAT32/64 */
        gguf_str str;
        gguf_array arr;
    } v;
};

typedef struct gguf_kv {
    gguf_str key;
    gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t type;                  /* quant_type id (known, checked) */
    uint32_t n_dims;                /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];      /* elements per dim, ne[0] fastest; unused dims = 1 */
    uint64_t n_elements;
    uint64_t offset;                /* relative to the data section (as in the file) */
    uint64_t size;                  /* bytes */
    const uint8_t *data;            /* into the mapping; NULL when opened header-only */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates `path`. On failure *out is NULL and err names the file, the field
 * and the problem (code HEARTH_E_IO or HEARTH_E_FORMAT). Caller frees with gguf_close. */
int gguf_open(const char *path, gguf_file **out, hb_err *err);
/* Same over a caller-owned memory buffer (used by the fuzzer and tests); `name` is used in
 * messages. The buffer must outlive the gguf_file. */
int gguf_open_mem(const uint8_t *data, size_t size, const char *name, gguf_file **out, hb_err *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f);  /* start of the tensor data section */
const char *gguf_path(const gguf_file *f);

/* ---- metadata -------------------------------------------------------------------------- */
uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);   /* i < n_kv */
const gguf_kv *gguf_find(const gguf_file *f, const char *key); /* NULL if absent */
const char *gguf_vtype_name(gguf_vtype t);

/* Typed getters. Return HEARTH_OK, or HEARTH_E_FORMAT (with message naming the key) if the
 * key is present with an incompatible type or out-of-range value, or HEARTH_E_INVALID if it
 * is absent (err untouched then, so callers can treat "absent" as "use default"). Integer
 * getters accept any integer type whose value fits; the float getter accepts F32/F64. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, hb_err *err);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, hb_err *err);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, hb_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, hb_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, hb_err *err);
int gguf_get_str(const gguf_file *f, const char *key, const gguf_str **out, hb_err *err);
/* Array getter: checks the element type (GGUF_VTYPE_COUNT = any). */
int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype elem, const gguf_array **out, hb_err *err);

/* Renders a value as text: integers in decimal, floats in the shortest form that reads back
 * exactly, bools as true/false; strings quoted with JSON-style escapes when `quote` (else
 * raw bytes, top level only); arrays as `[512 x string] ["<unk>", "<s>", ...]` showing at
 * most max_elems elements (nested arrays as `[..]`). Strings longer than max_str bytes
 * (0 = no limit) are cut and marked `... (N bytes)`. Caller frees with free(); NULL on
 * allocation failure. */
char *gguf_value_text(const gguf_value *v, size_t max_elems, size_t max_str, bool quote);

/* Element i of a numeric array converted (caller guarantees i < n and a numeric type). */
int64_t gguf_arr_i64(const gguf_array *a, uint64_t i);
double gguf_arr_f64(const gguf_array *a, uint64_t i);

/* ---- tensors --------------------------------------------------------------------------- */
uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */

/* ---- writer ----------------------------------------------------------------------------
 * Builds a GGUF v3 file in memory-light fashion: metadata and tensor infos are collected,
 * then gguf_writer_write streams header + aligned tensor data to the path (via a temp file
 * renamed into place, so no half-written file is ever visible). Tensor data pointers are
 * borrowed until the write finishes. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);  /* NULL on allocation failure */
void gguf_writer_free(gguf_writer *w);
int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, hb_err *err);
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v, hb_err *err);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v, hb_err *err);
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v, hb_err *err);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v, hb_err *err);
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v, hb_err *err);
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s, size_t len, hb_err *err);
/* Numeric array of n elements of `elem` packed little-endian at data (copied). */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n, hb_err *err);
/* String array (copied). lens may be NULL for NUL-terminated strings. */
int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n, hb_err *err);
/* Copies a metadata value from an open file (used by convert/quantize to carry keys over). */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, hb_err *err);
/* Adds a tensor: `data` (borrowed until write) holds quant_row_size(type, ne[0]) * rows
 * bytes. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne, const void *data, hb_err *err);
int gguf_writer_write(gguf_writer *w, const char *path, hb_err *err);

#endif
