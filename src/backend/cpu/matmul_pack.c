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

/* Scatters the 4-bit codes q[0..31] of one row (k) of one 32-column block into the step
 * layout: vector m (64 bytes) holds steps 2m (low nibbles) and 2m+1 (high nibbles), row k
 * at bytes 4k..4k+3. */
static inline void put_nibs32(uint8_t *area, int k, const uint8_t *q) {
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < 4; i++)
            area[64 * m + 4 * k + i] = (uint8_t)(q[8 * m + i] | (q[8 * m + 4 + i] << 4));
}

static void pack_q4_0(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int k = 0; k < MM_GROUP; k++) {
        int64_t r = g * MM_GROUP + k;
        if (r >= w->n_rows) break;
        const block_q4_0 *src = (const block_q4_0 *)((const uint8_t *)w->data + (size_t)r * w->row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = dst + (size_t)b * MM_Q4_0_BLK, q[32];
            memcpy(blk + 2 * k, &src[b].d, 2);
            for (int e = 0; e < 16; e++) q[e] = src[b].qs[e] & 15, q[e + 16] = src[b].qs[e] >> 4;
            put_nibs32(blk + 32, k, q);
        }
    }
}

static void pack_q8_0(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int k = 0; k < MM_GROUP; k++) {
        int64_t r = g * MM_GROUP + k;
        if (r >= w->n_rows) break;
        const block_q8_0 *src = (const block_q8_0 *)((const uint8_t *)w->data + (size_t)r * w->row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = dst + (size_t)b * MM_Q8_0_BLK;
            memcpy(blk + 2 * k, &src[b].d, 2);
            for (int s = 0; s < 8; s++) memcpy(blk + 32 + 64 * s + 4 * k, src[b].qs + 4 * s, 4);
        }
    }
}

/* Q4_K / Q5_K share scales and nibble areas; Q5_K adds the fifth-bit masks (mask s of a
 * sub-block: bit 4*row + i = fifth bit of element 4s + i). */
static void pack_q45_K(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb, bool five) {
    size_t bsz = five ? MM_Q5_K_BLK : MM_Q4_K_BLK, sub = five ? 320 : 256;
    for (int k = 0; k < MM_GROUP; k++) {
        int64_t r = g * MM_GROUP + k;
        if (r >= w->n_rows) break;
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = dst + (size_t)b * bsz, *sc = blk + 64, *mn = blk + 192, *codes = blk + 320;
            const uint8_t *scales, *qs, *qh = NULL;
            if (five) {
                const block_q5_K *s = (const block_q5_K *)row + b;
                memcpy(blk + 2 * k, &s->d, 2), memcpy(blk + 32 + 2 * k, &s->dmin, 2);
                scales = s->scales, qs = s->qs, qh = s->qh;
            } else {
                const block_q4_K *s = (const block_q4_K *)row + b;
                memcpy(blk + 2 * k, &s->d, 2), memcpy(blk + 32 + 2 * k, &s->dmin, 2);
                scales = s->scales, qs = s->qs;
            }
            for (int j = 0; j < 8; j++) {
                uint8_t q[32], *area = codes + (size_t)j * sub;
                int c = j / 2, shift = 4 * (j % 2);
                quant_kq_get_scale_min(scales, j, &sc[j * 16 + k], &mn[((j / 2) * 16 + k) * 2 + j % 2]);
                for (int e = 0; e < 32; e++) q[e] = (qs[32 * c + e] >> shift) & 15;
                put_nibs32(area, k, q);
                if (!five) continue;
                for (int e = 0; e < 32; e++)
                    if ((qh[e] >> (2 * c + j % 2)) & 1) {
                        int bit = 4 * k + e % 4;
                        area[256 + (e / 4) * 8 + bit / 8] |= (uint8_t)(1u << (bit % 8));
                    }
            }
        }
    }
}

static void pack_q6_K(const cpu_weight *w, uint8_t *dst, int64_t g, int64_t nb) {
    for (int k = 0; k < MM_GROUP; k++) {
        int64_t r = g * MM_GROUP + k;
        if (r >= w->n_rows) break;
        const block_q6_K *src = (const block_q6_K *)((const uint8_t *)w->data + (size_t)r * w->row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            const block_q6_K *s = &src[b];
            uint8_t *blk = dst + (size_t)b * MM_Q6_K_BLK, *codes = blk + 288, lo[256], hi[256];
            memcpy(blk + 2 * k, &s->d, 2);
            for (int j = 0; j < 16; j++) blk[32 + j * 16 + k] = (uint8_t)s->scales[j];
            /* element p = 128h + 32kk + l: low 4 bits from ql, high 2 bits from qh */
            for (int h = 0; h < 2; h++)
                for (int kk = 0; kk < 4; kk++)
                    for (int l = 0; l < 32; l++) {
                        int p = 128 * h + 32 * kk + l;
                        lo[p] = (s->ql[64 * h + 32 * (kk & 1) + l] >> (4 * (kk >> 1))) & 15;
                        hi[p] = (s->qh[32 * h + l] >> (2 * kk)) & 3;
                    }
            /* steps 0-2 as whole 6-bit codes; step 3's code split into 2-bit pieces in their
             * top bits (bits 0-1 with step 0, 2-3 with step 1, 4-5 with step 2) */
            for (int j = 0; j < 16; j++) {
                uint8_t *area = codes + (size_t)j * 192;
                const uint8_t *L = lo + 16 * j, *H = hi + 16 * j;
                for (int i = 0; i < 4; i++) {
                    int c3 = L[12 + i] | (H[12 + i] << 4);
                    for (int s = 0; s < 3; s++)
                        area[64 * s + 4 * k + i] = (uint8_t)(L[4 * s + i] | (H[4 * s + i] << 4) | (((c3 >> (2 * s)) & 3) << 6));
                }
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
