/* gguf_int.h — internals shared by the GGUF reader files (not for other modules).
 *
 * The reader parses through a `gguf_rd` cursor whose every read is checked against the
 * bytes left; strings and arrays are copied into a chunked arena owned by the gguf_file so
 * that a 150k-token vocab costs a handful of allocations, not 150k.
 */
#ifndef HEARTH_GGUF_INT_H
#define HEARTH_GGUF_INT_H

#include "gguf/gguf.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host (GGUF files are little-endian)"
#endif

typedef struct gguf_chunk {
    struct gguf_chunk *next;
    size_t used, cap;
    max_align_t mem[];
} gguf_chunk;

/* Open-addressing hash of names -> index + 1 (0 = empty slot). */
typedef struct gguf_hash {
    uint32_t *slots;
    uint64_t mask;   /* capacity - 1; capacity is a power of two >= 2 * entries */
} gguf_hash;

struct gguf_file {
    hb_map map;              /* set when opened from a path */
    const uint8_t *data;     /* whole file */
    size_t size;
    char *name;              /* path or caller-given name, for messages */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv, n_tensors;
    gguf_kv *kvs;            /* [n_kv], arena */
    gguf_tensor *tensors;    /* [n_tensors], arena */
    gguf_hash kv_hash, t_hash;
    gguf_chunk *arena;
};

/* Checked cursor over the file bytes. */
typedef struct gguf_rd {
    const uint8_t *p;
    size_t size, pos;
    gguf_file *f;
    hb_err *err;
    char field[200];         /* "key 3 'general.name'" — the field being read, for messages */
} gguf_rd;

/* Arena allocation (8-byte aligned, zeroed not guaranteed); NULL on failure. */
void *gguf_arena_alloc(gguf_file *f, size_t n);
void gguf_arena_free(gguf_file *f);

/* Hash helpers. gguf_hash_init sizes for n entries; gguf_hash_put returns false if the name
 * is already present (*dup = its index). */
int gguf_hash_init(gguf_hash *h, uint64_t n);
bool gguf_hash_put(gguf_hash *h, const gguf_str *names, size_t stride, uint32_t idx, uint32_t *dup);
/* Looks up (s, len) in h; names is the array of entries (stride bytes apart, gguf_str first). */
int64_t gguf_hash_get(const gguf_hash *h, const void *names, size_t stride, const char *s, uint64_t len);

/* Metadata parsing (src/gguf/read_kv.c). */
int gguf_rd_need(gguf_rd *r, uint64_t n, const char *what);
int gguf_rd_u32(gguf_rd *r, uint32_t *v, const char *what);
int gguf_rd_u64(gguf_rd *r, uint64_t *v, const char *what);
int gguf_rd_str(gguf_rd *r, gguf_str *out, const char *what);
int gguf_rd_value(gguf_rd *r, gguf_vtype type, gguf_value *out, int depth);
/* Bytes of one element of a fixed-size type; 0 for STRING/ARRAY/unknown. */
size_t gguf_vtype_size(gguf_vtype t);

#endif
