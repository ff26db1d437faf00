/* matmul_impl.h — internal layouts shared by the matmul dispatcher (matmul.c), the weight
 * packer (matmul_pack.c) and the per-ISA kernels (matmul_avx2.c, matmul_avx512.c).
 *
 * Packed weights ("R16"): rows are taken 16 at a time (a row group, the last one padded with
 * zero rows). A group is stored as a sequence of blocks along the columns; inside a block the
 * 16 rows are interleaved 4 bytes at a time, so a 64-byte vector holds 4 consecutive
 * elements of each of the 16 rows and one u8 x s8 dot-product instruction (vpdpbusd, or
 * vpmaddubsw + vpmaddwd on AVX2) with the 4 matching activation bytes broadcast adds them
 * into 16 per-row int32 lanes. A "step" is one such 4-element slice. 4-bit codes keep two
 * steps per 64-byte vector (low nibbles = even step, high nibbles = odd step).
 *
 * Per group and block (all scales raw f16 bits, 16 of each = one per row):
 *  Q4_0 (32 cols):  d[16] | 4 x 64 B nibbles (steps 0..7)                     = 288 B
 *  Q8_0 (32 cols):  d[16] | 8 x 64 B signed codes (steps 0..7)                 = 544 B
 *  Q4_K (256 cols): d[16] dmin[16] | sc[8][16] (u8, unpacked 6-bit) |
 *                   mn[4][16][2] (u8: sub-blocks 2p and 2p+1 of each row side by side) |
 *                   8 sub-blocks x 4 x 64 B nibbles                            = 2368 B
 *  Q5_K (256 cols): as Q4_K, each sub-block followed by 8 x 8 B bit masks of the fifth
 *                   bit (mask s, bit 4*row + i = element 4s+i of that row)     = 2880 B
 *  Q6_K (256 cols): d[16] | sc[16][16] (s8) | 16 sub-blocks of 16 cols x 3 x 64 B:
 *                   vector s (0-2) holds step s's 6-bit codes in bits 0-5 and bits 2s, 2s+1
 *                   of step 3's code in bits 6-7 (3 ANDs + ~6 ops unpack 4 steps) = 3360 B
 * Q4_0 and Q6_K keep exactly the file's size; Q4_K/Q5_K grow by 2-3% (unpacked scales).
 *
 * Prepared activations (scratch, per token): the reference quantization (Q8_0 or Q8_K,
 * identical codes) rearranged with the per-block sums the kernels need, so offsets (Q4_0's
 * -8, Q6_K's -32) and K-quant mins cost one broadcast add per block instead of per element.
 */
#ifndef HEARTH_CPU_MATMUL_IMPL_H
#define HEARTH_CPU_MATMUL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"

enum {
    MM_PACK_NONE = 0,
    MM_PACK_Q4_0 = 1,
    MM_PACK_Q8_0 = 2,
    MM_PACK_Q4_K = 3,
    MM_PACK_Q5_K = 4,
    MM_PACK_Q6_K = 5,
};

#define MM_GROUP 16

/* Bytes per (group, block) of a packed kind, and columns per block. */
#define MM_Q4_0_BLK 288
#define MM_Q8_0_BLK 544
#define MM_Q4_K_BLK 2368
#define MM_Q5_K_BLK 2880
#define MM_Q6_K_BLK 3360

/* Activation block for the 32-column formats: codes, scale, and a per-block integer that
 * the kernel adds to every row's raw dot: mm_corr_factor(type) * sum(qs), i.e. Q4_0's -8
 * offset, and for Q8_0 -128 (the AVX-512 kernel flips the signed weights to unsigned; the
 * AVX2 kernel keeps them signed and ignores corr). Pre-scaled here so that the kernels start
 * each block's accumulator with one broadcast load. */
typedef struct mm_xb32 {
    float d;
    int32_t corr;
    int8_t qs[32];
} mm_xb32;

static inline int32_t mm_pair16(int32_t lo, int32_t hi) {
    return (int32_t)((uint32_t)(uint16_t)(int16_t)lo | ((uint32_t)(uint16_t)(int16_t)hi << 16));
}

static inline int32_t mm_corr_factor(uint32_t type) { return type == QT_Q4_0 ? -8 : -128; }

/* Activation super-block for the K-quants: s32p[p] = the sums of the 32 codes of sub-blocks
 * 2p (low half) and 2p+1 (high half) as two int16 (|sum| <= 32 * 127), the word pairs that
 * one vpdpwssd / vpmaddwd multiplies with the mins of those two sub-blocks;
 * c16[j] = -32 * sum of the 16 codes of sub-block j (Q6_K's offset). */
typedef struct mm_xbk {
    float d;
    int32_t s32p[4];
    int32_t c16[16];
    int8_t qs[256];
} mm_xbk;

/* One matmul as the kernels see it. Units of work are row groups [g0, g1). */
typedef struct mm_ctx {
    const cpu_weight *w;
    const void *xp;        /* prepared activations: [n_tok][xp_row] bytes */
    size_t xp_row;
    int64_t n_tok;
    float *y;
    int64_t ldy;
} mm_ctx;

typedef void (*mm_kern_fn)(const mm_ctx *c, int64_t g0, int64_t g1);

/* Per-ISA kernel tables: returns NULL when the ISA file has no kernel for the weight
 * (packed kind for packed weights, else the raw type). */
mm_kern_fn mm_kernel_avx512(const cpu_weight *w, bool bf16_ok);
mm_kern_fn mm_kernel_avx2(const cpu_weight *w);
/* AMX (matmul_amx.c): a kernel that takes 16-token tiles itself and hands calls with fewer
 * tokens, and the leftover tokens, to the AVX-512 kernel. */
mm_kern_fn mm_kernel_amx(const cpu_weight *w);

/* Activation preparation: x (n floats) -> one prepared row for a weight of `type`
 * (mm_prep_row_size bytes; 0 = no prepared form). mm_prep_ref is the definition: the
 * reference quantizer (quant_quantize_row into tmp, quant_row_size(vec_dot_type, n) bytes)
 * rearranged; the vector versions must produce the same bytes. */
size_t mm_prep_row_size(uint32_t type, int64_t n);
void mm_prep_ref(uint32_t type, const float *x, int64_t n, void *out, void *tmp);
void mm_prep_avx512(uint32_t type, const float *x, int64_t n, void *out);
void mm_prep_avx2(uint32_t type, const float *x, int64_t n, void *out);

/* Packing (matmul_pack.c): bytes of the packed copy for w, 0 if w's type is not packed. */
size_t mm_pack_size(const cpu_weight *w, int *kind);
/* Fills dst (mm_pack_size bytes) for rows of groups [g0, g1). */
void mm_pack_groups(const cpu_weight *w, int kind, uint8_t *dst, int64_t g0, int64_t g1);

#endif
