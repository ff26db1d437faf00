/* blocks.h — the on-disk block layouts of the GGUF quantized tensor types (internal).
 *
 * Each struct is byte-for-byte the layout stored in GGUF files (little-endian, no padding;
 * every size is pinned with a static_assert). Half-precision fields are raw IEEE binary16
 * bit patterns (convert with hb_f16_to_f32). Element order inside a block is documented
 * beside each struct, because it is not always the obvious one: this header plus the
 * reference code in ref_*.c is the specification that the fast kernels are tested against.
 *
 * Naming is stable (block_q4_0, block_q8_K, ...): backend kernels include this header.
 */
#ifndef HEARTH_QUANT_BLOCKS_H
#define HEARTH_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256        /* super-block size of the K-quants and IQ4_XS */
#define QK4_NL 32
#define K_SCALE_SIZE 12 /* bytes of packed 6-bit scales/mins in Q4_K/Q5_K (and Q3_K) */

/* ---- legacy (32-element blocks) ------------------------------------------------------- */

/* Q4_0: x = d * (q - 8), q in 0..15. Element j (0..15) is the low nibble of qs[j],
 * element j+16 its high nibble. */
typedef struct block_q4_0 {
    uint16_t d;          /* f16 scale */
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");

/* Q4_1: x = d * q + m, q in 0..15, nibble order as Q4_0. */
typedef struct block_q4_1 {
    uint16_t d;          /* f16 scale */
    uint16_t m;          /* f16 offset (the block minimum) */
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");

/* Q5_0: x = d * (q - 16), q in 0..31. The low 4 bits as Q4_0; bit 4 of element j is bit j
 * of the little-endian 32-bit word qh. */
typedef struct block_q5_0 {
    uint16_t d;          /* f16 scale */
    uint8_t qh[4];       /* fifth bits, element j at bit j (LE u32) */
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");

/* Q5_1: x = d * q + m, q in 0..31, bits as Q5_0. */
typedef struct block_q5_1 {
    uint16_t d;          /* f16 scale */
    uint16_t m;          /* f16 offset */
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 layout");

/* Q8_0: x = d * q, q in -127..127 (int8). */
typedef struct block_q8_0 {
    uint16_t d;          /* f16 scale */
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");

/* Q8_1 (activation format for Q4_1/Q5_1): as Q8_0 plus s = d * sum(qs), which lets the dot
 * product with an offset format apply the offset once per block. */
typedef struct block_q8_1 {
    uint16_t d;          /* f16 scale */
    uint16_t s;          /* f16: d * sum(qs) */
    int8_t qs[QK8_1];
} block_q8_1;
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 layout");

/* ---- K-quants (256-element super-blocks) ---------------------------------------------- */

/* Q2_K: 16 sub-blocks of 16. x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4),
 * q in 0..3. Element e = 128*h + 32*k + l (h 0..1, k 0..3, l 0..31) is bits 2k..2k+1 of
 * qs[32*h + l]; its sub-block is s = e / 16. */
typedef struct block_q2_K {
    uint8_t scales[QK_K / 16]; /* low nibble: scale, high nibble: min */
    uint8_t qs[QK_K / 4];
    uint16_t d;                /* f16 super-scale of the scales */
    uint16_t dmin;             /* f16 super-scale of the mins */
} block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");

/* Q3_K: 16 sub-blocks of 16. x = d * (sc[s] - 32) * (q - 4 * !hbit), low 2 bits of q as in
 * Q2_K, hbit of element e = 128*h + 32*k + l is bit (4*h + k) of hmask[l]. The 16 6-bit
 * scales sc[s] are packed in 12 bytes: low 4 bits from scales[s] (s < 8) or the high
 * nibble of scales[s - 8] (s >= 8); high 2 bits are bits 2*(s/4).. of scales[8 + s%4]. */
typedef struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;                /* f16 */
} block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");

/* Q4_K: 8 sub-blocks of 32. x = d * sc[s] * q - dmin * mn[s], q in 0..15. 6-bit sc/mn are
 * packed in scales[12] (see quant_kq_get_scale_min). Element e = 64*c + l (l < 32) is the
 * low nibble of qs[32*c + l] (sub-block 2c); e = 64*c + 32 + l the high nibble (2c+1). */
typedef struct block_q4_K {
    uint16_t d;                /* f16 super-scale of the scales */
    uint16_t dmin;             /* f16 super-scale of the mins */
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");

/* Q5_K: as Q4_K with q in 0..31; bit 4 of element 64*c + l is bit 2c of qh[l], of element
 * 64*c + 32 + l bit 2c+1 of qh[l]. */
typedef struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");

/* Q6_K: 16 sub-blocks of 16. x = d * scales[e/16] * (q - 32), q in 0..63. For element
 * e = 128*h + 32*k + l (h 0..1, k 0..3, l 0..31) the low 4 bits are nibble (k >> 1) — 0 is
 * the low nibble — of ql[64*h + 32*(k & 1) + l], and the high 2 bits are bits 2k..2k+1 of
 * qh[32*h + l]. */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;                /* f16 */
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");

/* Q8_K (activation format for K-quants and IQ4_XS, never stored in files in practice):
 * x = d * q with a float d; bsums[i] = sum of qs[16*i .. 16*i+15], used to apply the
 * K-quants' mins without touching every element. */
typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "block_q8_K layout");

/* ---- non-linear 4-bit ------------------------------------------------------------------ */

/* IQ4_NL: x = d * kvalues_iq4nl[q], nibble order as Q4_0. */
typedef struct block_iq4_nl {
    uint16_t d;                /* f16 */
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl layout");

/* IQ4_XS: 8 sub-blocks of 32, x = d * (ls[s] - 32) * kvalues_iq4nl[q]. The 6-bit ls[s] has
 * its low 4 bits in nibble (s & 1) of scales_l[s/2] and its high 2 bits at bits 2s..2s+1
 * of scales_h. Sub-block s uses qs[16*s .. 16*s+15], nibble order as Q4_0. */
typedef struct block_iq4_xs {
    uint16_t d;                /* f16 */
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs layout");

/* The 16 IQ4_NL/IQ4_XS code values (a fixed non-uniform grid, denser near zero). */
extern const int8_t quant_kvalues_iq4nl[16];

#endif
