/* ref.h — per-type scalar reference functions (internal to src/quant and the CPU backend).
 *
 * quant.h's quant_dequantize_row / quant_quantize_row / quant_vec_dot dispatch to these
 * through a table in ref.c. Fast kernels may call them directly as a fallback or in tests.
 * Every function takes n = element count, a positive multiple of the type's block size
 * (the caller checks; these do not). Pointers are borrowed for the call only.
 */
#ifndef HEARTH_QUANT_REF_H
#define HEARTH_QUANT_REF_H

#include <stdint.h>

#include "quant/blocks.h"

typedef void (*quant_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*quant_quant_fn)(const float *src, void *dst, int64_t n);
typedef float (*quant_dot_fn)(const void *w, const void *x, int64_t n);

#define QUANT_REF_DECL(t)                                          \
    void quant_dequant_##t(const void *src, float *dst, int64_t n); \
    void quant_quant_##t(const float *src, void *dst, int64_t n);   \
    float quant_dot_##t(const void *w, const void *x, int64_t n)

/* ref_float.c */
QUANT_REF_DECL(f32);
QUANT_REF_DECL(f16);
QUANT_REF_DECL(bf16);
/* ref_legacy.c (Q8_0 and Q8_1 dots are activation x activation) */
QUANT_REF_DECL(q4_0);
QUANT_REF_DECL(q4_1);
QUANT_REF_DECL(q5_0);
QUANT_REF_DECL(q5_1);
QUANT_REF_DECL(q8_0);
QUANT_REF_DECL(q8_1);
/* ref_kquants.c */
QUANT_REF_DECL(q2_K);
QUANT_REF_DECL(q3_K);
QUANT_REF_DECL(q4_K);
QUANT_REF_DECL(q5_K);
QUANT_REF_DECL(q6_K);
QUANT_REF_DECL(q8_K);
/* ref_iquants.c */
QUANT_REF_DECL(iq4_nl);
QUANT_REF_DECL(iq4_xs);

/* The one rounding rule of every reference quantizer: nearest integer to v, ties away from
 * zero, clamped to [lo, hi]; NaN gives lo. (Clamping before converting keeps the float to
 * int conversion defined for any input.) */
static inline int quant_round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)(v >= 0 ? v + 0.5f : v - 0.5f);
}

/* Unpacks the 6-bit scale and min of sub-block j (0..7) from the 12-byte packing shared by
 * Q4_K and Q5_K: for j < 4 they are the low 6 bits of bytes j and j+4; for j >= 4 the low
 * 4 bits come from byte j+4 (scale: low nibble, min: high nibble) and the top 2 bits from
 * the top bits of bytes j-4 (scale) and j (min). */
static inline void quant_kq_get_scale_min(const uint8_t *q, int j, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ---- K-quant super-blocks in unpacked form (ref_kquants.c) ----------------------------
 * Every 256-element format with sub-block scales (Q2_K..Q6_K, IQ4_XS) decodes to the same
 * shape: element e of sub-block s = e / (QK_K / nsub) has the value
 *     d * sc[s] * q[e] - dmin * mn[s]
 * with small integers q, sc, mn (mn = 0 and dmin = 0 for the symmetric formats). The
 * reference dequantizes and dots this form, so each format only has to say how its bytes
 * map to it (unpack) and back (pack). */
typedef struct quant_kq_unpacked {
    float d, dmin;      /* f16 super-scales widened to f32 */
    int nsub;           /* sub-blocks per super-block: 8 (of 32) or 16 (of 16) */
    int8_t q[QK_K];     /* element codes, offsets already removed (e.g. Q6_K: -32..31) */
    int16_t sc[16];     /* sub-block scales (signed for Q3_K, Q6_K, IQ4_XS) */
    int16_t mn[16];     /* sub-block mins (Q2_K, Q4_K, Q5_K), else 0 */
} quant_kq_unpacked;

/* f32 values of one unpacked super-block into dst[QK_K]. */
void quant_kq_dequant_unpacked(const quant_kq_unpacked *u, float *dst);
/* Dot of one unpacked super-block with one Q8_K block: integer sums per sub-block, scaled
 * once per sub-block (the arithmetic fast kernels reproduce). */
double quant_kq_dot_unpacked(const quant_kq_unpacked *u, const block_q8_K *x);

#endif
