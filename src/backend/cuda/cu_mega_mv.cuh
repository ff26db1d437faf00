/* cu_mega_mv.cuh — the persistent kernel's matrix x vector products and their weight stream
 * (device code, included by cu_mega.cu only).
 *
 * Why a stream: a decode step reads every weight byte once, and the products of a layer are
 * separated by grid barriers (each needs the whole output of the op before it). When a block
 * fetches a product's weights only after the barrier that opens the product, every product
 * pays a DRAM round trip plus its bytes at the rate of whatever is in flight, and the DRAM
 * idles while the grid synchronizes, normalizes or runs attention. But the weights depend on
 * nothing: so each block (one per SM) has a producer warp that walks the program's products
 * in order and copies the block's share of every product (a contiguous range of rows) into
 * a ring of MK_NS shared-memory slots with bulk copies, as fast as the consumers free slots,
 * across grid barriers. When a product's barrier opens, its first tiles are already on chip.
 *
 * Protocol (per block): slot s has a `full` mbarrier (the producer's arrive + the copy's
 * bytes) and an `empty` one (one arrival per consumer warp). Producer and consumers walk the
 * same tile sequence (mk_rows + mk_tile_at on the same op descriptors), so the k-th tile the
 * consumers take is the k-th one the producer issued: slot k % MK_NS, phase k / MK_NS.
 *
 * Arithmetic: a row is split into op->parts column ranges (1 when a slot holds 8 rows or
 * more, so that all 8 warps have work in small tiles); each range is summed by one warp in
 * lane order, the ranges are added in order. Both depend on the shapes only, never on the
 * batch or the timing, so 8 sequences decoded together equal each alone.
 * CUDA C: no classes, no templates.
 */
#ifndef HEARTH_CU_MEGA_MV_CUH
#define HEARTH_CU_MEGA_MV_CUH

#include "backend/cuda/cu_mega.cuh"
#include "backend/cuda/cu_unpack.cuh"

static __device__ __forceinline__ unsigned long long cu_globaltimer(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}

/* A tile: rows [r, r + n) of segment seg; the 16-byte aligned bytes [src, src + bytes) hold
 * them, and row j of the tile starts at slot + off + j * row_bytes. */
typedef struct mk_tile {
    const uint8_t *src;
    uint32_t bytes, off;
    int seg, n;
    int64_t r;
} mk_tile;

/* This block's rows [*r0, *r1) of the product's segments taken end to end. */
static __device__ __forceinline__ void mk_rows(const mk_op *op, int64_t *r0, int64_t *r1) {
    int64_t R = op->rows[0] + op->rows[1] + op->rows[2];
    *r0 = R * blockIdx.x / gridDim.x;
    *r1 = R * (blockIdx.x + 1) / gridDim.x;
}

/* The tile starting at row *row of the block's range (ending at r1): at most op->tile_rows
 * rows, never across a segment end. Advances *row; false when the range is done. */
static __device__ __forceinline__ bool mk_tile_at(const mk_op *op, int64_t *row, int64_t r1, mk_tile *t) {
    int64_t rr = *row;
    if (rr >= r1) return false;
    int64_t e0 = op->rows[0], e1 = e0 + op->rows[1];
    int seg = rr < e0 ? 0 : (rr < e1 ? 1 : 2);
    int64_t s_end = seg == 0 ? e0 : (seg == 1 ? e1 : e1 + op->rows[2]), s_begin = s_end - op->rows[seg];
    int64_t n = (r1 < s_end ? r1 : s_end) - rr;
    if (n > op->tile_rows) n = op->tile_rows;
    size_t rb = op->row_bytes[0];
    uintptr_t a = (uintptr_t)(op->w[seg] + (size_t)(rr - s_begin) * rb), e = a + (size_t)n * rb;
    uintptr_t a16 = a & ~(uintptr_t)15, e16 = (e + 15) & ~(uintptr_t)15; /* allocations: multiples of 256 */
    t->src = (const uint8_t *)a16, t->bytes = (uint32_t)(e16 - a16), t->off = (uint32_t)(a - a16);
    t->seg = seg, t->n = (int)n, t->r = rr - s_begin;
    *row = rr + n;
    return true;
}

/* The producer (one thread): every tile of every product of the program into the ring.
 * bars: MK_NS `full` then MK_NS `empty` mbarriers. The weights are read once per step:
 * evict-first in L2, so activations and the KV cache stay there. */
static __device__ __noinline__ void mk_produce(const mk_op *prog, int n_ops, uint8_t *ring, uint64_t *bars,
                                               unsigned long long *prof) {
    uint64_t pol = cu_l2_policy(true);
    uint32_t k = 0;
    for (int i = 0; i < n_ops; i++) {
        const mk_op *op = prog + i;
        if (op->kind != MK_MATVEC) continue;
        int64_t row, r1;
        mk_rows(op, &row, &r1);
        mk_tile t;
        bool first = true;
        while (mk_tile_at(op, &row, r1, &t)) {
            int s = (int)(k % MK_NS);
            if (k >= MK_NS) cu_mbar_wait(&bars[MK_NS + s], (k / MK_NS - 1) & 1);
            if (k >= MK_IN_FLIGHT) { /* at most MK_IN_FLIGHT copies outstanding */
                uint32_t kl = k - MK_IN_FLIGHT;
                cu_mbar_wait(&bars[kl % MK_NS], (kl / MK_NS) & 1);
            }
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* the consumers' reads first */
            cu_mbar_expect(&bars[s], t.bytes);
            cu_bulk_g2s(ring + (size_t)s * MK_SLOT_STRIDE, t.src, t.bytes, &bars[s], pol);
            if (prof && first) prof[MK_PN * i + 5] = cu_globaltimer();
            first = false;
            k++;
        }
    }
}

/* Consumer side: waits until tile k is in its slot; returns the slot. */
static __device__ __forceinline__ const uint8_t *mk_take(uint8_t *ring, uint64_t *bars, uint32_t k,
                                                        unsigned long long *tw) {
    int s = (int)(k % MK_NS);
    unsigned long long t0 = tw ? cu_globaltimer() : 0;
    cu_mbar_wait(&bars[s], (k / MK_NS) & 1);
    if (tw) *tw += cu_globaltimer() - t0; /* tw: a local sum (see mk_matvec), no memory round trip */
    return ring + (size_t)s * MK_SLOT_STRIDE;
}

/* Lane 0 stores token t's value of row r of segment seg (and adds it into the residual). */
static __device__ __forceinline__ void mk_put(const mk_op *op, int seg, int64_t r, int t, float v) {
    int64_t o = t * op->ldy[seg] + r;
    op->y[seg][o] = v;
    if (op->add[seg]) op->add[seg][o] += v;
}

/* 1 / rms of a row of n values from every op thread's partial sum of squares s2: warp sums,
 * then the warps in order (red: MK_WARPS floats of shared memory); every op thread gets it. */
static __device__ __forceinline__ float mk_block_rms(float s2, int64_t n, float eps, float *red) {
    s2 = cu_warp_sum(s2);
    MK_SYNC(); /* red may still be read for the previous row */
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s2;
    MK_SYNC();
    float tot = 0.0f;
    for (int w = 0; w < MK_WARPS; w++) tot += red[w];
    return rsqrtf(tot / (float)n + eps);
}

/* 8 f16 weights (16 bytes, 16-byte aligned) as floats: fw_load8's F16 branch without the
 * per-element type test (the same conversions, so the same values). */
static __device__ __forceinline__ void mk_f16x8(const uint8_t *p, float *v) {
    uint4 u = *(const uint4 *)p;
    uint32_t wd[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = cu_f16((uint16_t)wd[k]);
        v[2 * k + 1] = cu_f16((uint16_t)(wd[k] >> 16));
    }
}

/* w . x of one 8-column group: the one expression every float path uses (same rounding). */
static __device__ __forceinline__ float mk_dot8f(const float *w, float4 xa, float4 xb) {
    return w[0] * xa.x + w[1] * xa.y + w[2] * xa.z + w[3] * xa.w + w[4] * xb.x + w[5] * xb.y + w[6] * xb.z + w[7] * xb.w;
}

/* The warp's sums of item (row j of the tile, part q): stored when the row has one part,
 * else kept in pb for mk_release. */
static __device__ __forceinline__ void mk_item_done(const mk_op *op, const mk_tile *t, int j, int q, const float *acc,
                                                    float *pb, int lane) {
#pragma unroll
    for (int tk = 0; tk < MK_T; tk++) {
        if (tk < op->n_tok) {
            float v = cu_warp_sum(acc[tk]);
            if (lane == 0) {
                if (op->parts == 1) mk_put(op, t->seg, t->r + j, tk, v);
                else pb[(j * op->parts + q) * MK_T + tk] = v;
            }
        }
    }
}

/* After the tile's items: rows split in parts are summed (parts in order) and stored, then
 * every warp frees the slot. pb alternates between two buffers by tile parity, so a warp
 * that runs ahead into the next tile never overwrites sums still being read (and a product
 * with parts ends with a barrier, so the next product starts clean). */
static __device__ __forceinline__ uint32_t mk_release(const mk_op *op, const mk_tile *t, const float *pb,
                                                      uint64_t *bars, uint32_t k) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, P = op->parts;
    if (P > 1) {
        MK_SYNC();
        for (int j = warp; j < t->n; j += MK_WARPS)
            if (lane < op->n_tok) {
                float v = 0.0f;
                for (int q = 0; q < P; q++) v += pb[(j * P + q) * MK_T + lane];
                mk_put(op, t->seg, t->r + j, lane, v);
            }
    }
    __syncwarp();
    if (lane == 0) cu_mbar_arrive(&bars[MK_NS + (int)(k % MK_NS)]);
    return k + 1;
}

/* The tile loop every product shares: for each of the block's tiles, `base` (the tile's
 * first row in its slot) and `pb` (the parts buffer of the tile's parity); MK_TILES_END
 * frees the slot, and ends a product with parts with a barrier (see mk_release). Uses op,
 * ring, bars, pbuf, k and tw of the enclosing function. */
#define MK_TILES_BEGIN                                                                                    \
    int64_t row, r1;                                                                                      \
    mk_rows(op, &row, &r1);                                                                               \
    mk_tile t;                                                                                            \
    while (mk_tile_at(op, &row, r1, &t)) {                                                                \
        const uint8_t *base = mk_take(ring, bars, k, tw) + t.off;                                         \
        float *pb = pbuf + (k & 1) * (8 * MK_T);

#define MK_TILES_END                                                                                      \
        k = mk_release(op, &t, pb, bars, k);                                                              \
    }                                                                                                     \
    if (op->parts > 1) MK_SYNC(); /* every combine done before the next product writes sums */

/* Adds chunk c of the row at smrow times every token's int8 activations into acc. */
#define MK_CHUNK(UNPACK, HAS_MIN, smrow, c)                                                               \
    do {                                                                                                  \
        int q_[8];                                                                                        \
        float a_[2], m_[2];                                                                               \
        UNPACK(smrow, c, lut, q_, a_, m_);                                                                \
        _Pragma("unroll") for (int tk = 0; tk < MK_T; tk++) {                                             \
            if (tk < n_tok) {                                                                             \
                const int4 *xp = (const int4 *)(xq + ((int64_t)tk * nch + (c)) * 32);                     \
                int4 x0 = xp[0], x1 = xp[1];                                                              \
                float dx = xd[(int64_t)tk * nch + (c)];                                                   \
                int2 sx = HAS_MIN ? xs[(int64_t)tk * nch + (c)] : make_int2(0, 0);                        \
                acc[tk] += dx * mq_chunk_dot(q_, x0, x1, a_, m_, sx, HAS_MIN);                             \
            }                                                                                             \
        }                                                                                                 \
    } while (0)

/* A quantized product over the stream (the int8/dp4a arithmetic of cu_matmul.cu's decode
 * kernels): part q of a row is chunks [q*nch/P, (q+1)*nch/P), lane l takes every 32nd.
 * Returns the stream position after the product's tiles. */
#define MK_MV(name, UNPACK, HAS_MIN)                                                                      \
    static __device__ __noinline__ uint32_t name(const mk_op *op, const int8_t *xq, const float *xd,      \
                                                 const int2 *xs, uint8_t *ring, uint64_t *bars, float *pbuf, \
                                                 uint32_t k, const int8_t *lut, unsigned long long *tw) {                         \
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nch = op->nch, n_tok = op->n_tok, P = op->parts; \
        size_t rb = op->row_bytes[0];                                                                     \
        MK_TILES_BEGIN                                                                                          \
            for (int it = warp; it < t.n * P; it += MK_WARPS) {                                           \
                int j = it / P, q = it - j * P, c1 = (q + 1) * nch / P;                                   \
                float acc[MK_T];                                                                          \
                _Pragma("unroll") for (int tk = 0; tk < MK_T; tk++) acc[tk] = 0.0f;                       \
                for (int c = q * nch / P + lane; c < c1; c += 32) MK_CHUNK(UNPACK, HAS_MIN, base + j * rb, c); \
                mk_item_done(op, &t, j, q, acc, pb, lane);                                                \
            }                                                                                             \
        MK_TILES_END                                                                                            \
        return k;                                                                                         \
    }

/* Every quantized type the products take: X(type, suffix, unpacker, has offsets), in one
 * place for the function definitions here and the dispatch in cu_mega.cu. */
#define MK_QTYPES(X)                                                                                      \
    X(QT_Q4_0, q4_0, up_q4_0, 1)                                                                          \
    X(QT_Q4_1, q4_1, up_q4_1, 1)                                                                          \
    X(QT_Q5_0, q5_0, up_q5_0, 1)                                                                          \
    X(QT_Q5_1, q5_1, up_q5_1, 1)                                                                          \
    X(QT_Q8_0, q8_0, up_q8_0, 0)                                                                          \
    X(QT_IQ4_NL, iq4_nl, up_iq4_nl, 0)                                                                    \
    X(QT_Q2_K, q2_K, up_q2_K, 1)                                                                          \
    X(QT_Q3_K, q3_K, up_q3_K, 0)                                                                          \
    X(QT_Q4_K, q4_K, up_q4_K, 1)                                                                          \
    X(QT_Q5_K, q5_K, up_q5_K, 1)                                                                          \
    X(QT_Q6_K, q6_K, up_q6_K, 0)                                                                          \
    X(QT_IQ4_XS, iq4_xs, up_iq4_xs, 0)

/* The types with a register form (MK_MV1 REG 1): the common ones, to keep the code small. */
#define MK_RTYPES(X)                                                                                      \
    X(QT_Q4_0, q4_0, up_q4_0, 1)                                                                          \
    X(QT_Q8_0, q8_0, up_q8_0, 0)                                                                          \
    X(QT_Q4_K, q4_K, up_q4_K, 1)                                                                          \
    X(QT_Q5_K, q5_K, up_q5_K, 1)                                                                          \
    X(QT_Q6_K, q6_K, up_q6_K, 0)

#define MK_DEF_MV(T, S, UP, HM) MK_MV(mk_mv_##S, UP, HM)
MK_QTYPES(MK_DEF_MV)

/* ---- single token --------------------------------------------------------------------
 * With one token the token loops of the kernels above disappear and a warp works on two
 * rows at once (two independent chains; part q of a row is fixed per warp: item warp + 8u
 * has part warp % P). Same chunk order and expressions as the kernels above, so a token
 * decoded alone gives the bits it gets in a batch. The loops are NOT unrolled: this code runs
 * once per product per layer between every other op's code, and measured faster compact
 * (instruction fetch) than with the activations held in unrolled registers (Q4_0 tg128 764
 * -> 853 t/s when the unrolled form was cut from 8 slices to 2). */

/* The warp's sum for row j (part q) of a one-token product (see mk_item_done). */
static __device__ __forceinline__ void mk_item_done1(const mk_op *op, const mk_tile *t, int j, int q, float a,
                                                     float *pb, int lane) {
    float v = cu_warp_sum(a);
    if (lane == 0) {
        if (op->parts == 1) mk_put(op, t->seg, t->r + j, 0, v);
        else pb[(j * op->parts + q) * MK_T] = v;
    }
}

#define MK_NCL 2 /* most activation slices per lane held in registers (REG forms) */

/* One chunk c of rows ra (into a0) and, when the warp has a second row, rbp (into a1). */
#define MK_DOT2(UNPACK, HAS_MIN, c, x0, x1, dx, sx)                                                        \
    do {                                                                                                  \
        int q_[8];                                                                                        \
        float a_[2], m_[2];                                                                               \
        UNPACK(ra, c, lut, q_, a_, m_);                                                                   \
        a0 += (dx) * mq_chunk_dot(q_, x0, x1, a_, m_, sx, HAS_MIN);                                       \
        if (j2 != j) {                                                                                    \
            UNPACK(rbp, c, lut, q_, a_, m_);                                                              \
            a1 += (dx) * mq_chunk_dot(q_, x0, x1, a_, m_, sx, HAS_MIN);                                   \
        }                                                                                                 \
    } while (0)

/* REG 0: a compact chunk loop reading the activations per chunk (every type). REG 1: the
 * lane's activation slices (at most MK_NCL) in registers for the whole product, the loop
 * unrolled — Q4_0 tg128 853 t/s against 746 for the compact loop alone, and 764 with 8
 * unrolled slices (code size, see docs/cuda.md). */
#define MK_MV1(name, UNPACK, HAS_MIN, REG)                                                                \
    static __device__ __noinline__ uint32_t name(const mk_op *op, const int8_t *xq, const float *xd,      \
                                                 const int2 *xs, uint8_t *ring, uint64_t *bars, float *pbuf, \
                                                 uint32_t k, const int8_t *lut, unsigned long long *tw) { \
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nch = op->nch, P = op->parts, q = warp % P; \
        int c0 = q * nch / P + lane, c1 = (q + 1) * nch / P, step = MK_WARPS / P;                         \
        size_t rb = op->row_bytes[0];                                                                     \
        int4 xa[MK_NCL], xb[MK_NCL];                                                                      \
        float xdv[MK_NCL];                                                                                \
        int2 xsv[MK_NCL];                                                                                 \
        _Pragma("unroll") for (int i = 0; i < MK_NCL && REG; i++) {                                       \
            int c = c0 + 32 * i;                                                                          \
            bool in = c < c1;                                                                             \
            xa[i] = in ? ((const int4 *)(xq + (int64_t)c * 32))[0] : make_int4(0, 0, 0, 0);              \
            xb[i] = in ? ((const int4 *)(xq + (int64_t)c * 32))[1] : make_int4(0, 0, 0, 0);              \
            xdv[i] = in ? xd[c] : 0.0f;                                                                   \
            xsv[i] = in && HAS_MIN ? xs[c] : make_int2(0, 0);                                             \
        }                                                                                                 \
        MK_TILES_BEGIN                                                                                          \
            for (int j = warp / P; j < t.n; j += 2 * step) {                                              \
                int j2 = j + step < t.n ? j + step : j;                                                   \
                const uint8_t *ra = base + j * rb, *rbp = base + j2 * rb;                                 \
                float a0 = 0.0f, a1 = 0.0f;                                                               \
                if (REG) {                                                                                \
                    _Pragma("unroll") for (int i = 0; i < MK_NCL; i++) {                                  \
                        int c = c0 + 32 * i;                                                              \
                        if (c < c1) MK_DOT2(UNPACK, HAS_MIN, c, xa[i], xb[i], xdv[i], xsv[i]);              \
                    }                                                                                     \
                } else {                                                                                  \
                    _Pragma("unroll 1") for (int c = c0; c < c1; c += 32) {                               \
                        const int4 *xp = (const int4 *)(xq + (int64_t)c * 32);                            \
                        int2 sx = HAS_MIN ? xs[c] : make_int2(0, 0);                                      \
                        MK_DOT2(UNPACK, HAS_MIN, c, xp[0], xp[1], xd[c], sx);                              \
                    }                                                                                     \
                }                                                                                         \
                mk_item_done1(op, &t, j, q, a0, pb, lane);                                                \
                if (j2 != j) mk_item_done1(op, &t, j2, q, a1, pb, lane);                                  \
            }                                                                                             \
        MK_TILES_END                                                                                            \
        return k;                                                                                         \
    }

#define MK_DEF_MV1(T, S, UP, HM) MK_MV1(mk_mv1_##S, UP, HM, 0)
#define MK_DEF_MV1R(T, S, UP, HM) MK_MV1(mk_mv1r_##S, UP, HM, 1)
MK_QTYPES(MK_DEF_MV1)
MK_RTYPES(MK_DEF_MV1R)

/* Dispatch cases for cu_mega.cu (the arguments of the MK_MV / MK_MV1 functions). */
#define MK_CASE_MV(T, S, UP, HM) case T: return mk_mv_##S(op, xq, xd, xs, ring, bars, pbuf, k, lut, tw);
#define MK_CASE_MV1(T, S, UP, HM) case T: return mk_mv1_##S(op, xq, xd, xs, ring, bars, pbuf, k, lut, tw);
#define MK_CASE_MV1R(T, S, UP, HM) case T: return mk_mv1r_##S(op, xq, xd, xs, ring, bars, pbuf, k, lut, tw);

/* A one-token product whose lane slices fit MK_NCL registers (the longest part). */
static __device__ __forceinline__ bool mk_regs(const mk_op *op) {
    int64_t per = (op->nch + op->parts - 1) / op->parts;
    return (per + 31) / 32 <= MK_NCL;
}

/* One-token float product (x: the token's activations, staged or global). */
static __device__ __noinline__ uint32_t mk_mv1_float(const mk_op *op, const float *x, uint8_t *ring, uint64_t *bars,
                                                     float *pbuf, uint32_t k, unsigned long long *tw) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, P = op->parts, q = warp % P, ng = (int)(op->cols / 8);
    int g0 = q * ng / P + lane, g1 = (q + 1) * ng / P, step = MK_WARPS / P;
    size_t rb = op->row_bytes[0];
    bool f16 = op->wtype == QT_F16;
    MK_TILES_BEGIN
        for (int j = warp / P; j < t.n; j += 2 * step) {
            int j2 = j + step < t.n ? j + step : j;
            bool two = j2 != j; /* warp-uniform */
            const uint8_t *ra = base + j * rb, *rbp = base + j2 * rb;
            float a0 = 0.0f, a1 = 0.0f;
#pragma unroll 2
            for (int g = g0; g < g1; g += 32) {
                const float4 *xp = (const float4 *)(x + (int64_t)g * 8);
                float4 xa = xp[0], xb = xp[1];
                float wa[8], wb[8];
                if (f16) {
                    mk_f16x8(ra + (int64_t)g * 16, wa);
                    if (two) mk_f16x8(rbp + (int64_t)g * 16, wb);
                } else {
                    fw_load8(op->wtype, ra, (int64_t)g * 8, wa);
                    if (two) fw_load8(op->wtype, rbp, (int64_t)g * 8, wb);
                }
                a0 += mk_dot8f(wa, xa, xb);
                if (two) a1 += mk_dot8f(wb, xa, xb);
            }
            mk_item_done1(op, &t, j, q, a0, pb, lane);
            if (two) mk_item_done1(op, &t, j2, q, a1, pb, lane);
        }
    MK_TILES_END
    return k;
}

/* A float-weight product over the stream (F32/F16/BF16, columns a multiple of 8): part q
 * of a row is the 8-column groups [q*ng/P, (q+1)*ng/P), lane l takes every 32nd; x: the
 * activations (n_tok rows, xstr apart: the block's staged copy or global memory). */
static __device__ __noinline__ uint32_t mk_mv_float(const mk_op *op, const float *x, int64_t xstr, uint8_t *ring,
                                                    uint64_t *bars, float *pbuf, uint32_t k, unsigned long long *tw) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_tok = op->n_tok, P = op->parts;
    int ng = (int)(op->cols / 8);
    size_t rb = op->row_bytes[0];
    MK_TILES_BEGIN
        for (int it = warp; it < t.n * P; it += MK_WARPS) {
            int j = it / P, q = it - j * P, g1 = (q + 1) * ng / P;
            float acc[MK_T];
#pragma unroll
            for (int tk = 0; tk < MK_T; tk++) acc[tk] = 0.0f;
            for (int g = q * ng / P + lane; g < g1; g += 32) {
                float wv[8];
                fw_load8(op->wtype, base + j * rb, (int64_t)g * 8, wv);
#pragma unroll
                for (int tk = 0; tk < MK_T; tk++) {
                    if (tk < n_tok) {
                        const float4 *xp = (const float4 *)(x + tk * xstr + (int64_t)g * 8);
                        float4 xa = xp[0], xb = xp[1];
                        acc[tk] += mk_dot8f(wv, xa, xb);
                    }
                }
            }
            mk_item_done(op, &t, j, q, acc, pb, lane);
        }
    MK_TILES_END
    return k;
}

/* The float product's activations in shared memory (f32, n_tok rows of cols): x as it is
 * (SRC_QUANT) or its RMSNorm (SRC_NORM; block 0 also writes the normalized rows to op->out
 * when set). Thread i owns 8 consecutive values per pass. red: MK_WARPS floats. */
static __device__ void mk_prologue_f(const mk_op *op, float *sx, float *red) {
    int64_t n = op->cols;
    bool norm = op->flag == SRC_NORM;
    for (int t = 0; t < op->n_tok; t++) {
        const float *xr = op->x + t * op->xs;
        float k = 1.0f;
        if (norm) {
            float s2 = 0.0f;
            for (int64_t e0 = threadIdx.x * 8; e0 < n; e0 += MK_THREADS * 8)
#pragma unroll
                for (int j = 0; j < 8; j++) s2 += xr[e0 + j] * xr[e0 + j];
            k = mk_block_rms(s2, n, op->eps, red);
        }
        for (int64_t e0 = threadIdx.x * 8; e0 < n; e0 += MK_THREADS * 8)
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float v = xr[e0 + j];
                if (norm) v = v * k * (op->nw_w ? op->nw_w[e0 + j] : 1.0f);
                sx[t * n + e0 + j] = v;
                if (norm && op->out && blockIdx.x == 0) op->out[t * n + e0 + j] = v;
            }
    }
    MK_SYNC();
}

#endif
