/* quant.h — tensor element types, their GGUF block layouts, and the scalar reference
 * implementations (dequantize, quantize, dot product) that every fast kernel must match.
 *
 * Type ids are the GGUF/ggml `ggml_type` numbers as stored in files. Every type a file may
 * name has traits (so the GGUF reader can size any tensor); `compute` marks the types
 * hearth can actually use as weights.
 *
 * Block layouts are in quant/blocks.h, the per-type reference functions in quant/ref.h
 * (both internal; the CPU kernels include them). Reference quantizers round to nearest,
 * ties away from zero (quant_round_clamp), and quantize against scales as stored (f16).
 */
#ifndef HEARTH_QUANT_H
#define HEARTH_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum quant_type {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3, QT_Q5_0 = 6, QT_Q5_1 = 7,
    QT_Q8_0 = 8, QT_Q8_1 = 9, QT_Q2_K = 10, QT_Q3_K = 11, QT_Q4_K = 12, QT_Q5_K = 13,
    QT_Q6_K = 14, QT_Q8_K = 15, QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18,
    QT_IQ1_S = 19, QT_IQ4_NL = 20, QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23,
    QT_I8 = 24, QT_I16 = 25, QT_I32 = 26, QT_I64 = 27, QT_F64 = 28, QT_IQ1_M = 29,
    QT_BF16 = 30, QT_TQ1_0 = 34, QT_TQ2_0 = 35, QT_MXFP4 = 39,
    QT_COUNT = 40 /* one past the largest id */
} quant_type;

typedef struct quant_traits {
    const char *name;     /* "Q4_K", as GGUF tools print it; NULL for unused ids */
    uint32_t blck_size;   /* elements per block */
    uint32_t type_size;   /* bytes per block */
    bool compute;         /* usable as model weights (dequantize + dot implemented) */
    quant_type vec_dot_type; /* activation format the reference dot product takes */
} quant_traits;

/* Traits of type id t, or NULL if t is not a known GGUF type. Static, never freed. */
const quant_traits *quant_traits_of(uint32_t t);
/* Name of a type ("?" for unknown ids). */
const char *quant_type_name(uint32_t t);
/* Type id for a name ("q4_k" or "Q4_K"), -1 if none. */
int quant_type_from_name(const char *name);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or t unknown
 * (callers validate with quant_row_ok first). */
size_t quant_row_size(uint32_t t, int64_t n);
bool quant_row_ok(uint32_t t, int64_t n);

/* ---- scalar reference (src/quant/ref_*.c) ----------------------------------------
 * All take n = number of elements, a multiple of the block size (caller checks). */

/* src (n elements of type t) -> dst f32. Returns false if t is not a compute type. */
bool quant_dequantize_row(uint32_t t, const void *src, float *dst, int64_t n);
/* src f32 -> dst of type t (quant_row_size(t,n) bytes). Returns false if t has no
 * reference quantizer (implemented: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
 * Q2_K..Q6_K, Q8_K, IQ4_NL, IQ4_XS at least). */
bool quant_quantize_row(uint32_t t, const float *src, void *dst, int64_t n);
/* Reference dot product of a weight row w (type t) with an activation row x already
 * quantized to traits(t)->vec_dot_type. */
float quant_vec_dot(uint32_t t, const void *w, const void *x, int64_t n);

#endif
