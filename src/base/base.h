/* base.h — status codes, error records, checked arithmetic, logging and file mapping.
 *
 * The lowest layer of hearth: no model knowledge. Every internal module reports failure
 * through an `hb_err` record (code + human message) that the caller owns, and returns the
 * same code, so `if ((rc = f(..., err))) goto out;` is the one idiom for error paths.
 */
#ifndef HEARTH_BASE_H
#define HEARTH_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

/* An error record. `code` mirrors the returned hearth_status; `msg` is a full sentence
 * naming the file/field/problem, suitable to print as-is after "hearth: ". */
typedef struct hb_err {
    int code;
    char msg[512];
} hb_err;

/* Sets err (if non-NULL) and returns code, so callers can write `return hb_fail(err, ...)`.
 * A second failure never overwrites the first message (the root cause is kept). */
int hb_fail(hb_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Clears an error record to HEARTH_OK / "". */
void hb_err_clear(hb_err *err);
/* Parses a duration as Ollama writes it: number+unit parts ("5m", "1h30m", "250ms"; units
 * ns, us, ms, s, m, h; no unit = seconds) into *ns, or any negative value into -1
 * (forever). HEARTH_E_INVALID for anything else, signs inside, or ~285 years and more. */
int hb_parse_duration(const char *s, int64_t *ns, hb_err *err);
/* n as Ollama writes a parameter count: "293K", "1.1B", "7.2B", "124M" (into buf). */
void hb_human_count(uint64_t n, char *buf, size_t cap);

/* CHECK for untrusted input: on failure set err and jump to `out` with rc set. */
#define HB_CHECK(cond, code, ...)                       \
    do {                                                \
        if (!(cond)) {                                  \
            rc = hb_fail(err, (code), __VA_ARGS__);     \
            goto out;                                   \
        }                                               \
    } while (0)

/* Checked arithmetic: return false on overflow (result then unspecified). */
static inline bool hb_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool hb_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool hb_mul_sz(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool hb_add_sz(size_t a, size_t b, size_t *r) { return !__builtin_add_overflow(a, b, r); }

/* Allocation helpers that never return NULL silently: they return NULL only when the size
 * overflows or the allocator fails; callers must check. hb_calloc_n checks n*size. */
void *hb_calloc_n(size_t n, size_t size);
void *hb_malloc_n(size_t n, size_t size);
/* strdup of a length-delimited string; result NUL-terminated; caller frees. */
char *hb_strndup(const char *s, size_t n);

/* ---- logging -------------------------------------------------------------------------
 * A logger is a callback + user data held by a handle (model, context, server). A NULL
 * callback means silent. Library code never prints to stdout. */
typedef struct hb_log {
    hearth_log_fn fn;
    void *ud;
    hearth_log_level level; /* messages above this level are dropped */
} hb_log;

void hb_logf(const hb_log *log, hearth_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- read-only file mapping ---------------------------------------------------------- */
typedef struct hb_map {
    const uint8_t *data; /* mapped bytes; NULL for an empty file */
    size_t size;         /* file size in bytes */
} hb_map;

/* Maps `path` read-only. On failure sets err (HEARTH_E_IO, naming the path and errno). */
int hb_map_file(const char *path, hb_map *out, hb_err *err);
/* Unmaps; safe on a zeroed map. */
void hb_unmap(hb_map *m);
/* Tells the kernel the range will not be needed soon (used after repacking weights). */
void hb_map_release(hb_map *m, size_t off, size_t len);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees). Refuses files over
 * max_bytes with HEARTH_E_INVALID. */
int hb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, hb_err *err);

/* Monotonic time in nanoseconds. */
uint64_t hb_now_ns(void);

/* ---- fp16 / bf16 conversions (exact, IEEE round-to-nearest-even) ---------------------- */
float hb_f16_to_f32(uint16_t h);
uint16_t hb_f32_to_f16(float f);
static inline float hb_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
uint16_t hb_f32_to_bf16(float f);

#endif
