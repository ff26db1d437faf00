/* matmul_pack.c — repacks quantized weights into the 16-row interleaved "R16" layouts that
 * the SIMD kernels read (layouts documented in matmul_impl.h). Plain C, independent of the
 * ISA level, so a weight packed once serves the AVX2 and the AVX-512 kernels alike.
 *
 * Each function decodes the file's block (layout in quant/blocks.h) into small integer
 * codes and scatters them; rows past n_rows in the last group are zero (scale 0), so the
 * kernels never branch on a partial group.
 */
#include <string.h>

#include "backend/cpu/matmul_impl.h"
#include "quant/blocks.h"
#include "quant/ref.h"

size_t mm_pack_size(const cpu_weight *w, int *kind) {
    size_t blk, cols;
    switch (w->type) {
    case QT_Q4_0: *kind = MM_PACK_Q4_0; blk = MM_Q4_0_BLK; cols = 32; break;
    case QT_Q8_0: *kind = MM_PACK_Q8_0; blk = MM_Q8_0_BLK; cols = 32; break;
    case QT_Q4_K: *kind = MM_PACK_Q4_K; blk = MM_Q4_K_BLK; cols = 256; break;
    case QT_Q5_K: *kind = MM_PACK_Q5_K; blk = MM_Q5_K_BLK; cols = 256; break;
    case QT_Q6_K: *kind = MM_PACK_Q6_K; blk = MM_Q6_K_BLK; cols = 256; break;
    default: *kind = MM_PACK_NONE; return 0;
    }
    if (w->n_cols <= 0 || w->n_rows <= 0 || w->n_cols % (int64_t)cols) { *kind = MM_PACK_NONE; return 0; }
    size_t groups = (size_t)((w->n_rows + MM_GROUP - 1) / MM_GROUP), nb = (size_t)w->n_cols / cols, r;
    if (!hb_mul_sz(groups, nb, &r) || !hb_mul_sz(r, blk, &r)) { *kind = MM_PACK_NONE; return 0; }
    return r;
}

/* Position of element e (0..31) of row k in a block of 4-element steps: byte offset inside
 * the block's code area and whether it is the high nibble (4-bit formats). */
static inline size_t step_byte(int e, int k, int two_per_byte, int *hi) {
    int s = e / 4, i = e % 4;
    if (two_per_byte) {
        *hi = s & 1;
        return (size_t)(s / 2) * 64 + (size_t)k * 4 + (size_t)i;
    }
    *hi = 0;
    return (size_t)s * 64 + (size_t)k * 4 + (size_t)i;
}

static void put_nib(uint8_t *area, int e, int k, int q) {
    int hi;
    size_t off = step_byte(e, k, 1, &hi);
    area[off] |= (uint8_t)((q & 15) << (hi ? 4 : 0));
}

static void pack_q4_0(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + (size_t)b * MM_Q4_0_BLK;
        uint16_t *d = (uint16_t *)blk;
        for (int k = 0; k < MM_GROUP; k++) {
            int64_t r = g * MM_GROUP + k;
            if (r >= w->n_rows) break;
            const block_q4_0 *src = (const block_q4_0 *)((const uint8_t *)w->data + (size_t)r * w->row_bytes) + b;
            d[k] = src->d;
            for (int e = 0; e < 32; e++) {
                int q = e < 16 ? (src->qs[e] & 15) : (src->qs[e - 16] >> 4);
                put_nib(blk + 32, e, k, q);
            }
        }
    }
}

static void pack_q8_0(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + (size_t)b * MM_Q8_0_BLK;
        uint16_t *d = (uint16_t *)blk;
        for (int k = 0; k < MM_GROUP; k++) {
            int64_t r = g * MM_GROUP + k;
            if (r >= w->n_rows) break;
            const block_q8_0 *src = (const block_q8_0 *)((const uint8_t *)w->data + (size_t)r * w->row_bytes) + b;
            d[k] = src->d;
            for (int e = 0; e < 32; e++) {
                int hi;
                blk[32 + step_byte(e, k, 0, &hi)] = (uint8_t)src->qs[e];
            }
        }
    }
}

/* Q4_K / Q5_K share scales and nibble areas; Q5_K adds the fifth-bit masks. */
static void pack_q45_K(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb, bool five) {
    size_t bsz = five ? MM_Q5_K_BLK : MM_Q4_K_BLK, sub = five ? 320 : 256;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + (size_t)b * bsz;
        uint16_t *d = (uint16_t *)blk, *dmin = d + 16;
        uint8_t *sc = blk + 64, *mn = blk + 192, *codes = blk + 320;
        for (int k = 0; k < MM_GROUP; k++) {
            int64_t r = g * MM_GROUP + k;
            if (r >= w->n_rows) break;
            const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            const uint8_t *scales, *qs, *qh = NULL;
            if (five) {
                const block_q5_K *s = (const block_q5_K *)row + b;
                d[k] = s->d, dmin[k] = s->dmin, scales = s->scales, qs = s->qs, qh = s->qh;
            } else {
                const block_q4_K *s = (const block_q4_K *)row + b;
                d[k] = s->d, dmin[k] = s->dmin, scales = s->scales, qs = s->qs;
            }
            for (int j = 0; j < 8; j++) {
                quant_kq_get_scale_min(scales, j, &sc[j * 16 + k], &mn[j * 16 + k]);
                uint8_t *area = codes + (size_t)j * sub;
                for (int e = 0; e < 32; e++) {
                    int p = 32 * j + e, c = p / 64, l = p % 64;
                    int q = l < 32 ? (qs[32 * c + l] & 15) : (qs[32 * c + l - 32] >> 4);
                    put_nib(area, e, k, q);
                    if (five && ((qh[l % 32] >> (2 * c + (l >= 32))) & 1)) {
                        int bit = k * 4 + e % 4;
                        area[256 + (e / 4) * 8 + bit / 8] |= (uint8_t)(1u << (bit % 8));
                    }
                }
            }
        }
    }
}

static void pack_q6_K(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + (size_t)b * MM_Q6_K_BLK;
        uint16_t *d = (uint16_t *)blk;
        int8_t *sc = (int8_t *)blk + 32;
        uint8_t *codes = blk + 288;
        for (int k = 0; k < MM_GROUP; k++) {
            int64_t r = g * MM_GROUP + k;
            if (r >= w->n_rows) break;
            const block_q6_K *s = (const block_q6_K *)((const uint8_t *)w->data + (size_t)r * w->row_bytes) + b;
            d[k] = s->d;
            for (int j = 0; j < 16; j++) sc[j * 16 + k] = s->scales[j];
            for (int p = 0; p < 256; p++) {
                int h = p / 128, kk = (p % 128) / 32, l = p % 32;
                int lo = (s->ql[64 * h + 32 * (kk & 1) + l] >> (4 * (kk >> 1))) & 15;
                int hi2 = (s->qh[32 * h + l] >> (2 * kk)) & 3;
                int j = p / 16, e = p % 16;
                uint8_t *area = codes + (size_t)j * 192;
                put_nib(area, e, k, lo);
                area[128 + (size_t)k * 4 + (size_t)(e % 4)] |= (uint8_t)(hi2 << (2 * (e / 4)));
            }
        }
    }
}

void mm_pack_groups(const cpu_weight *w, int kind, uint8_t *dst, int64_t g0, int64_t g1) {
    int cols = (kind == MM_PACK_Q4_0 || kind == MM_PACK_Q8_0) ? 32 : 256;
    size_t blk = kind == MM_PACK_Q4_0 ? MM_Q4_0_BLK : kind == MM_PACK_Q8_0 ? MM_Q8_0_BLK
               : kind == MM_PACK_Q4_K ? MM_Q4_K_BLK : kind == MM_PACK_Q5_K ? MM_Q5_K_BLK : MM_Q6_K_BLK;
    int64_t nb = w->n_cols / cols;
    for (int64_t g = g0; g < g1; g++) {
        uint8_t *gd = dst + (size_t)g * (size_t)nb * blk;
        memset(gd, 0, (size_t)nb * blk);
        switch (kind) {
        case MM_PACK_Q4_0: pack_q4_0(w, gd, g, nb); break;
        case MM_PACK_Q8_0: pack_q8_0(w, gd, g, nb); break;
        case MM_PACK_Q4_K: pack_q45_K(w, gd, g, nb, false); break;
        case MM_PACK_Q5_K: pack_q45_K(w, gd, g, nb, true); break;
        case MM_PACK_Q6_K: pack_q6_K(w, gd, g, nb); break;
        default: break;
        }
    }
}
