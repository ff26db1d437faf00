/* cu_mmt.cu — 5..8 tokens (HEARTH_CUDA_MMT_MIN) of Q4_0 / Q8_0 / Q4_K / Q6_K rows of at most
 * 192 chunks of 32 values (every product of a TinyLlama-shape model) on the int8 tensor
 * cores, with each token's bits those of the single-token kernels.
 *
 * Why: a batch's products ran on dp4a chains (MVT_KERNEL, cu_matmul.cu), 8 dp4a per chunk,
 * row and token, and an 8-token step took ~2.5x a one-token step although it reads the same
 * weights. mma.m16n8k16 (s8 x s8 -> s32) gives 16 rows x 8 tokens x 16 values per
 * instruction, and its integer sums are exactly the dp4a sums of each half chunk. What is
 * left per (row, token, chunk) is the float expression the bits require (mq_chunk_ffin and
 * the accumulation, ~6 instructions), so the kernel is still issue- and latency-bound, not
 * bandwidth-bound (docs/performance.md, session 23).
 *
 * The bits. The single-token kernels give lane l the chunks l, l + 32, ... (its "class"),
 * add each chunk's float value into one partial in that order (acc += dx * mq_chunk_fin),
 * then sum the 32 partials with cu_warp_sum's xor butterfly: a fixed binary tree whose
 * leaves, left to right, are the classes in 5-bit bit-reversed order (0, 16, 8, 24, ...).
 * Here warp w of the block computes the partials of the leaves 4w .. 4w + 3 (the same
 * per-chunk expression, chunks in the same order) for its 16 rows x 8 tokens and their
 * level-2 node ((L0 + L1) + (L2 + L3)); the block then adds the eight nodes as the tree
 * does (((n0 + n1) + (n2 + n3)) + ((n4 + n5) + (n6 + n7))). Float addition is commutative,
 * so every sum has the operands and the order of the butterfly: the same bits.
 * test_cuda_kernels (test_matmul_batch_kernel) checks them against each token alone.
 *
 * Layout: a tile is 16 consecutive rows of one weight (a launch has up to three weights of
 * one row size; a weight's last tile may be partial: the missing rows are computed from
 * stale shared memory and never stored). Each block walks tiles blockIdx.x, + gridDim.x,
 * ... through a ring of `ns` tiles in shared memory filled by 16-byte cp.async (the first
 * ns queued before the PDL wait). Every tile of a block uses the same chunks per warp, so
 * the activations are loaded once per block: the B fragments into registers, the scales
 * and half sums (as floats) into shared memory.
 *
 * Q6_K (session 24) keeps its stored codes (0..63, the single-token kernels' up_q6_Ku
 * form) and starts each mma accumulator at 1.5 x 2^23 - 32 x the token's half sum, so the
 * sum comes out as the signed codes' integer with no per-byte subtraction; its two scales
 * per chunk go into mq_chunk_ffin as they do there. Its rows need not be 16-byte aligned
 * (mmt_rs, mmt_issue).
 *
 * mma fragment layout (PTX ISA, m16n8k16 .s8): lane = 4 g + q; A (16 x 16, row-major): a0 =
 * row g, values 4q .. 4q + 3; a1 = row g + 8. B (16 x 8, column-major): b0 = values 4q ..
 * 4q + 3 of token g. D: d0, d1 = row g, tokens 2q, 2q + 1; d2, d3 = row g + 8. */
#include <string.h>

#include "backend/cuda/cu_unpack.cuh"

#define MMT_W 8 /* warps per block: 8 x 4 leaves = the butterfly's 32 classes */

typedef struct mmt_args {
    const uint8_t *w0, *w1, *w2;
    int64_t r0, r1, r2;  /* rows of each weight */
    int64_t t0, t1;      /* tiles of weights 0 and 0 + 1 (prefix sums) */
    int64_t tiles;       /* all tiles */
    float *y0, *y1, *y2;
    int64_t l0, l1, l2;  /* output strides (per token) */
    float *a0, *a1, *a2; /* residual targets or NULL */
    size_t rb;           /* row bytes */
    const int8_t *xq;
    const float *xd;
    const int2 *xs;
    int nch, n_tok, ns;
} mmt_args;

/* A tile's weight (by selects: no run-time indexing of the parameter struct, which would
 * copy it to local memory) and first row within it. */
static __device__ __forceinline__ int mmt_seg(const mmt_args &A, int64_t tile, int64_t *row) {
    int s = tile >= A.t0 ? (tile >= A.t1 ? 2 : 1) : 0;
    *row = 16 * (tile - (s == 0 ? 0 : (s == 1 ? A.t0 : A.t1)));
    return s;
}

/* Shared-memory stride of a staged row: 16 bytes more than the row, so that the rows g and
 * g + 8 the lanes read start 4 banks apart (row sizes are multiples of 128 bytes for
 * 2048-value rows: unpadded, the 8 rows of a load would hit the same bank). */
#define MMT_RS(rb) ((rb) + 16)

/* Type index of the kernel templates: 0 Q4_0, 1 Q8_0, 2 Q4_K, 3 Q6_K. */
#define MMT_Q6 3

/* Bytes of 8 chunks (Q4_K: a 144-byte super-block; Q6_K: a 210-byte one). */
static __host__ __device__ constexpr int mmt_b8(int ty) {
    return ty == 1 ? 272 : (ty == MMT_Q6 ? 210 : 144);
}

/* Shared-memory stride of a staged row of type ty. Q6_K rows (210 bytes per 8 chunks) need
 * not start 16-byte aligned (a 5632-value row is 4620 bytes), so a segment is copied as the
 * 16-byte granules that cover it (up to 30 bytes more than its 1680) and read from the
 * row's offset within its first granule; 1808 bytes (452 words, 4 banks mod 32) keeps the
 * eight rows of an aligned load in different banks. */
static __host__ __device__ constexpr int mmt_rs(int ty) {
    return ty == MMT_Q6 ? 1808 : MMT_RS(8 * mmt_b8(ty));
}

/* Queues the block's copies of segment sg of row tile `tile` (chunks 64 sg .. 64 sg + 63 of
 * its 16 rows) into slot dst (rows at mmt_rs(TY) strides; rows past the weight's end are
 * not copied); one commit group per call, also when nothing is copied. Q6_K: each row's
 * copy starts at the 16-byte granule holding its first byte (the weight's base and end
 * are 16-byte aligned, cu_mmt_matvec), so every copy stays inside the weight. */
template <int TY>
static __device__ __forceinline__ void mmt_issue(const mmt_args &A, int64_t tile, int sg, uint8_t *dst) {
    if (tile < A.tiles) {
        int64_t row;
        int s = mmt_seg(A, tile, &row);
        int64_t nr = (s == 0 ? A.r0 : (s == 1 ? A.r1 : A.r2)) - row;
        int c0 = 64 * sg, nc = A.nch - c0 < 64 ? A.nch - c0 : 64, sb = nc / 8 * mmt_b8(TY);
        const uint8_t *src = (s == 0 ? A.w0 : (s == 1 ? A.w1 : A.w2)) + (size_t)row * A.rb + (size_t)(c0 / 8) * mmt_b8(TY);
        int nrow = (int)(nr < 16 ? nr : 16);
        if (TY == MMT_Q6) { /* per row: granules [floor16(start), ceil16(end)) */
            for (int i = threadIdx.x; i < nrow * 128; i += MMT_W * 32) { /* 128 granule slots a row (<= 108 used) */
                int r = i >> 7, o = i & 127;
                const uint8_t *rs = src + (size_t)r * A.rb;
                int m = (int)((uintptr_t)rs & 15), per = (m + sb + 15) >> 4;
                if (o < per)
                    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(cu_smem_addr(dst + r * mmt_rs(TY) + 16 * o)),
                                 "l"(rs - m + 16 * o)
                                 : "memory");
            }
        } else {
            int per = sb / 16, n = nrow * per;
            for (int i = threadIdx.x; i < n; i += MMT_W * 32) {
                int r = i / per, o = (i - r * per) * 16;
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(cu_smem_addr(dst + r * mmt_rs(TY) + o)),
                             "l"(src + (size_t)r * A.rb + o)
                             : "memory");
            }
        }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* The integer sums come out as floats: the accumulator starts at the bit pattern of 1.5 x
 * 2^23, so the sum i (|i| < 2^22: at most 16 x 127 x 127 here) lands in the mantissa and
 * the float is 12582912 + i exactly; subtracting 12582912 gives (float)i exactly: an add
 * per value instead of an int-to-float conversion, which runs at a quarter of the rate
 * (measured: no change in speed, the kernel is bound elsewhere; kept as the cheaper form). */
#define MMT_MAGIC 0x4B400000

/* The mma with the accumulators started at c0 (tokens 2q) and c1 (tokens 2q + 1): the bit
 * pattern of 1.5 x 2^23 (mmt_mma), or for Q6_K that of 1.5 x 2^23 - 32 x the token's half
 * sum, so the unsigned codes' sums come out as the signed codes' (mq_chunk_fin's has_min 2). */
static __device__ __forceinline__ void mmt_mma_c(uint32_t a0, uint32_t a1, uint32_t b, int c0, int c1, float f[4]) {
    int d[4];
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %8, %9, %10};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a0), "r"(a1), "r"(b), "r"(c0), "r"(c1), "r"(c0), "r"(c1));
#pragma unroll
    for (int k = 0; k < 4; k++) f[k] = __int_as_float(d[k]) - 12582912.0f;
}

static __device__ __forceinline__ void mmt_mma(uint32_t a0, uint32_t a1, uint32_t b, float f[4]) {
    mmt_mma_c(a0, a1, b, MMT_MAGIC, MMT_MAGIC, f);
}

/* 32 bits from a 2-byte aligned shared-memory address. */
static __device__ __forceinline__ uint32_t mmt_ld32(const uint8_t *p) {
    return (uint32_t)ld16(p) | (uint32_t)ld16(p + 2) << 16;
}

/* A lane's B fragments for one chunk (every tile of the block uses the same chunks, so
 * they are loaded once, into registers): token g's codes of the two halves. */
typedef struct mmt_xf {
    uint32_t b0, b1;
} mmt_xf;

static __device__ __forceinline__ void mmt_load_x(const mmt_args &A, int ch, int g, int q, mmt_xf *X) {
    X->b0 = X->b1 = 0;
    if (g < A.n_tok) {
        const int8_t *xp = A.xq + ((int64_t)g * A.nch + ch) * 32 + 4 * q;
        X->b0 = *(const uint32_t *)xp, X->b1 = *(const uint32_t *)(xp + 16);
    }
}

/* The scales (sd[ch * 4 + q]: tokens 2q, 2q + 1) and half sums as floats (sf[ch * 4 + q]:
 * token 2q's two, then 2q + 1's; exact conversions) of every chunk into shared memory, zero
 * for tokens past the batch: one vector load each per chunk and lane, in place of 48
 * registers per lane (which held the kernel to two blocks per SM). */
template <int TY>
static __device__ __forceinline__ void mmt_stage_scales(const mmt_args &A, float2 *sd, float4 *sf) {
    for (int i = threadIdx.x; i < A.nch * 4; i += MMT_W * 32) {
        int ch = i >> 2, t = 2 * (i & 3);
        bool v0 = t < A.n_tok, v1 = t + 1 < A.n_tok;
        sd[i] = make_float2(v0 ? A.xd[(int64_t)t * A.nch + ch] : 0.0f, v1 ? A.xd[(int64_t)(t + 1) * A.nch + ch] : 0.0f);
        if (TY != 1) { /* formats with offsets */
            int2 s0 = v0 ? A.xs[(int64_t)t * A.nch + ch] : make_int2(0, 0);
            int2 s1 = v1 ? A.xs[(int64_t)(t + 1) * A.nch + ch] : make_int2(0, 0);
            if (TY == MMT_Q6) /* the accumulators' start (mmt_mma_c) */
                sf[i] = make_float4(__int_as_float(MMT_MAGIC - 32 * s0.x), __int_as_float(MMT_MAGIC - 32 * s0.y),
                                    __int_as_float(MMT_MAGIC - 32 * s1.x), __int_as_float(MMT_MAGIC - 32 * s1.y));
            else
                sf[i] = make_float4((float)s0.x, (float)s0.y, (float)s1.x, (float)s1.y);
        }
    }
}

/* A row's A fragments of chunk lc (local to the staged segment at rp) for lane quad q,
 * and the chunk's half scales a[2] and offset m, exactly as the single-token unpackers give
 * them (up_q4_0, up_q8_0, up_q4_K, up_q6_Ku). */
template <int TY>
static __device__ __forceinline__ void mmt_rowfrag(const uint8_t *rp, int lc, int q, uint32_t *lo, uint32_t *hi,
                                                   float a[2], float *m) {
    if (TY == MMT_Q6) { /* 210-byte super-blocks of 8 chunks: low nibbles in ql, high 2 bits in
                         * qh, codes stored + 32 (kept unsigned: the accumulator start takes
                         * the 32 off), a scale per 16 values */
        const uint8_t *b = rp + (lc >> 3) * 210;
        int j = lc & 7, h = j >> 2, k = j & 3, shl = 4 * (k >> 1), shh = 2 * k;
        const uint8_t *ql = b + 64 * h + 32 * (k & 1) + 4 * q, *qh = b + 128 + 32 * h + 4 * q;
        uint32_t l0 = mmt_ld32(ql), l1 = mmt_ld32(ql + 16), h0 = mmt_ld32(qh), h1 = mmt_ld32(qh + 16);
        *lo = ((l0 >> shl) & 0x0f0f0f0fu) | (((h0 >> shh) & 0x03030303u) << 4);
        *hi = ((l1 >> shl) & 0x0f0f0f0fu) | (((h1 >> shh) & 0x03030303u) << 4);
        uint32_t sc = ld16(b + 192 + 2 * j);
        float d = cu_f16(ld16(b + 208));
        a[0] = d * (float)(int8_t)(sc & 0xff);
        a[1] = d * (float)(int8_t)(sc >> 8);
        *m = 0.0f;
    } else
    if (TY == 2) { /* Q4_K: 144-byte super-blocks of 8 chunks; codes of chunk j in the low
                    * (j even) or high nibbles of its pair's 32 bytes */
        const uint8_t *b = rp + (lc >> 3) * 144;
        int j = lc & 7, sc, mn, sh = 4 * (j & 1);
        uint4 hd = *(const uint4 *)b; /* d, dmin, scales[12] */
        kq_scale_min(hd.y, hd.z, hd.w, j, &sc, &mn);
        const uint8_t *qp = b + 16 + 32 * (j >> 1) + 4 * q;
        *lo = (*(const uint32_t *)qp >> sh) & 0x0f0f0f0fu;
        *hi = (*(const uint32_t *)(qp + 16) >> sh) & 0x0f0f0f0fu;
        float d = cu_f16((uint16_t)hd.x), dmin = cu_f16((uint16_t)(hd.x >> 16));
        a[0] = a[1] = d * (float)sc;
        *m = -dmin * (float)mn;
    } else if (TY == 1) { /* Q8_0 */
        const uint8_t *b = rp + lc * 34;
        *lo = mmt_ld32(b + 2 + 4 * q), *hi = mmt_ld32(b + 18 + 4 * q);
        a[0] = a[1] = cu_f16(ld16(b));
        *m = 0.0f;
    } else { /* Q4_0: byte j holds value j in the low nibble, value j + 16 in the high one */
        const uint8_t *b = rp + lc * 18;
        uint32_t w = mmt_ld32(b + 2 + 4 * q);
        *lo = w & 0x0f0f0f0fu, *hi = (w >> 4) & 0x0f0f0f0fu;
        float d = cu_f16(ld16(b));
        a[0] = a[1] = d;
        *m = -8.0f * d;
    }
}

/* Chunk lc of the staged segment (global chunk ch; rows g and g + 8 start at rg0, rg1) for tokens 2q,
 * 2q + 1: adds each of the lane's four (row, token) values into P (P[0] = (g, 2q), P[1] =
 * (g, 2q + 1), P[2] = (g + 8, 2q), P[3] = (g + 8, 2q + 1)) with the single-token kernels'
 * expression. */
template <int TY>
static __device__ __forceinline__ void mmt_chunk(const mmt_xf &X, const float2 *sd, const float4 *sf, const uint8_t *rg0,
                                                 const uint8_t *rg1, int lc, int ch, int q, float P[4]) {
    uint32_t lo0, lo1, hi0, hi1;
    float a0[2], m0, a1[2], m1;
    mmt_rowfrag<TY>(rg0, lc, q, &lo0, &hi0, a0, &m0);
    mmt_rowfrag<TY>(rg1, lc, q, &lo1, &hi1, a1, &m1);
    float2 dd = sd[ch * 4 + q];
    float4 ff = TY == 1 ? make_float4(0.0f, 0.0f, 0.0f, 0.0f) : sf[ch * 4 + q];
    float i0[4], i1[4];
    if (TY == MMT_Q6) {
        mmt_mma_c(lo0, lo1, X.b0, __float_as_int(ff.x), __float_as_int(ff.z), i0);
        mmt_mma_c(hi0, hi1, X.b1, __float_as_int(ff.y), __float_as_int(ff.w), i1);
    } else {
        mmt_mma(lo0, lo1, X.b0, i0);
        mmt_mma(hi0, hi1, X.b1, i1);
    }
    float dxs[2] = { dd.x, dd.y }, s0[2] = { ff.x, ff.z }, s1[2] = { ff.y, ff.w };
    const int hm = TY == 1 ? 0 : (TY == MMT_Q6 ? 2 : 1); /* 2: no offset term (mq_chunk_ffin) */
#pragma unroll
    for (int k = 0; k < 2; k++) { /* tokens past the batch: dx 0, never stored (no branch, so
                                   * the compiler can interleave a warp's chunks) */
        float dx = dxs[k];
        float m_[2] = { m0, m0 };
        P[k] += dx * mq_chunk_ffin(i0[k], i1[k], a0, m_, s0[k], s1[k], hm);
        float n_[2] = { m1, m1 };
        P[2 + k] += dx * mq_chunk_ffin(i0[2 + k], i1[2 + k], a1, n_, s0[k], s1[k], hm);
    }
}

/* 5-bit bit reversal: the class of the butterfly's leaf i. */
static __device__ __forceinline__ int mmt_leaf_class(int i) {
    return (__brev((unsigned)i) >> 27) & 31;
}

/* Waits until the block's copies of the current tile have landed: all but the newest
 * ns - 1 commit groups (the tiles queued after it). */
static __device__ __forceinline__ void mmt_wait(int ns) {
    if (ns <= 2) asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    else if (ns == 3) asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    else asm volatile("cp.async.wait_group 3;\n" ::: "memory");
}

/* The lane's four leaves over segment sg of the staged row tile st (GUARD: some chunks of
 * the segment are past the row's end). */
template <int TY, bool GUARD>
static __device__ __forceinline__ void mmt_segment(const mmt_args &A, const mmt_xf (&X)[4][2], const float2 *sd,
                                                   const float4 *sf, const uint8_t *st, int sg, int warp, int g, int q,
                                                   int2 mo, float (&L)[4][4]) {
    const uint8_t *rg0 = st + g * mmt_rs(TY) + mo.x, *rg1 = st + (g + 8) * mmt_rs(TY) + mo.y;
#pragma unroll
    for (int li = 0; li < 4; li++) {
        int cls = mmt_leaf_class(4 * warp + li);
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int lc = cls + 32 * j;
            if (!GUARD || 64 * sg + lc < A.nch) mmt_chunk<TY>(X[li][j], sd, sf, rg0, rg1, lc, 64 * sg + lc, q, L[li]);
        }
    }
}

/* NSEG: segments of 64 chunks per row (1: rows of <= 64 chunks; 3: <= 192, e.g. 5632
 * values). FULL: every segment has all 64 chunks (no branches in the loop, so the chunks'
 * loads, mma and float work interleave); else the last one is guarded. A block walks its
 * row tiles blockIdx.x, + gridDim.x, ..., each a segment at a time through the ring; a
 * lane's leaf partials persist over the segments of a tile (chunks class + 32 j in order of
 * j, as the single-token kernels take them). */
template <int TY, int NSEG, bool FULL>
static __global__ void __launch_bounds__(MMT_W * 32, NSEG == 1 ? (TY == 1 ? 2 : 3) : (NSEG == 2 ? 2 : 1)) mmt_kernel(const __grid_constant__ mmt_args A) {
    extern __shared__ __align__(16) uint8_t mmt_sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const size_t tb = 16 * mmt_rs(TY);
    /* rows g and g + 8 within their first staged granule (Q6_K; tiles start at multiples of
     * 16 rows and segments at multiples of 1680 bytes from a 16-byte aligned base) */
    const int2 mo = TY == MMT_Q6 ? make_int2((int)((g * A.rb) & 15), (int)(((g + 8) * A.rb) & 15)) : make_int2(0, 0);
    float4 *red = (float4 *)(mmt_sm + (size_t)A.ns * tb); /* [2][MMT_W][32]: each lane's node */
    float4 *sf = red + 2 * MMT_W * 32;                    /* [64 NSEG][4] (mmt_stage_scales) */
    float2 *sd = (float2 *)(sf + 64 * NSEG * 4);           /* [64 NSEG][4] */
    const int ns = A.ns;
    /* step k of the block: row tile blockIdx.x + (k / NSEG) gridDim.x, segment k % NSEG */
    for (int k = 0; k < ns; k++)
        mmt_issue<TY>(A, blockIdx.x + (int64_t)(k / NSEG) * gridDim.x, k % NSEG, mmt_sm + (size_t)k * tb);
    cu_pdl_wait();
    cu_pdl_trigger();
    mmt_xf X[NSEG][4][2]; /* the B fragments of the warp's chunks: segment, leaf, j */
#pragma unroll
    for (int sg = 0; sg < NSEG; sg++)
#pragma unroll
        for (int li = 0; li < 4; li++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                int ch = 64 * sg + mmt_leaf_class(4 * warp + li) + 32 * j;
                if (FULL || ch < A.nch) mmt_load_x(A, ch, g, q, &X[sg][li][j]);
            }
    mmt_stage_scales<TY>(A, sd, sf); /* read after the loop's first barrier */
    int slot = 0;
    float L[4][4];
    for (int64_t k = 0, tile = blockIdx.x; tile < A.tiles; k++) {
        const int sg = (int)(k % NSEG);
        const uint8_t *st = mmt_sm + (size_t)slot * tb;
        mmt_wait(ns);
        __syncthreads(); /* every thread's copies of the segment are visible */
        if (sg == 0) {
#pragma unroll
            for (int li = 0; li < 4; li++)
#pragma unroll
                for (int p = 0; p < 4; p++) L[li][p] = 0.0f;
        }
#pragma unroll
        for (int s2 = 0; s2 < NSEG; s2++) /* compile-time segment index for X */
            if (s2 == sg) {
                if (FULL || s2 < NSEG - 1) mmt_segment<TY, false>(A, X[s2], sd, sf, st, s2, warp, g, q, mo, L);
                else mmt_segment<TY, true>(A, X[s2], sd, sf, st, s2, warp, g, q, mo, L);
            }
        const bool last = sg == NSEG - 1;
        float4 *rb = red + (size_t)((k / NSEG) & 1) * MMT_W * 32;
        if (last) { /* the butterfly's level-2 node over this warp's four leaves */
            float4 node;
            node.x = (L[0][0] + L[1][0]) + (L[2][0] + L[3][0]);
            node.y = (L[0][1] + L[1][1]) + (L[2][1] + L[3][1]);
            node.z = (L[0][2] + L[1][2]) + (L[2][2] + L[3][2]);
            node.w = (L[0][3] + L[1][3]) + (L[2][3] + L[3][3]);
            rb[warp * 32 + lane] = node;
        }
        __syncthreads(); /* every warp is done with the slot (and has its node in red) */
        int64_t kn = k + ns; /* the step that takes this slot next */
        mmt_issue<TY>(A, blockIdx.x + (kn / NSEG) * gridDim.x, (int)(kn % NSEG), mmt_sm + (size_t)slot * tb);
        slot = slot + 1 == ns ? 0 : slot + 1;
        if (last && threadIdx.x < 128) { /* one (row, token) output each: the levels above the nodes */
            int rr = threadIdx.x & 15, t = threadIdx.x >> 4;
            int src = (rr & 7) * 4 + (t >> 1), p = (rr >= 8 ? 2 : 0) + (t & 1);
            const float *rd = (const float *)rb;
            float n[MMT_W];
#pragma unroll
            for (int w = 0; w < MMT_W; w++) n[w] = rd[(w * 32 + src) * 4 + p];
            float s = ((n[0] + n[1]) + (n[2] + n[3])) + ((n[4] + n[5]) + (n[6] + n[7]));
            int64_t row;
            int sgw = mmt_seg(A, tile, &row);
            row += rr;
            int64_t nr = sgw == 0 ? A.r0 : (sgw == 1 ? A.r1 : A.r2);
            if (t < A.n_tok && row < nr) {
                int64_t ld = sgw == 0 ? A.l0 : (sgw == 1 ? A.l1 : A.l2);
                float *y = sgw == 0 ? A.y0 : (sgw == 1 ? A.y1 : A.y2), *ad = sgw == 0 ? A.a0 : (sgw == 1 ? A.a1 : A.a2);
                y[t * ld + row] = s;
                if (ad) ad[t * ld + row] += s; /* fused residual add */
            }
        }
        if (last) tile += gridDim.x;
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

/* ---- host side --------------------------------------------------------------------------- */

int cu_mmt_matvec(cuda_ctx *c, uint32_t type, int nw, const uint8_t *const *w, const int64_t *n_rows,
                  size_t row_bytes, float *const *y, const int64_t *ldy, float *const *add_to, int nch,
                  const int8_t *xq, const float *xd, const int2 *xs, int64_t n_tok, int *done, hb_err *err) {
    int rc;
    *done = 0;
    bool q8 = type == QT_Q8_0, k4 = type == QT_Q4_K, k6 = type == QT_Q6_K;
    if (!c->knobs.mmt || (type != QT_Q4_0 && !q8 && !(k4 && c->knobs.mmt_k4) && !(k6 && c->knobs.mmt_k6)) || nw < 1 ||
        nw > 3 || n_tok < c->knobs.mmt_min || n_tok > 8 || nch < 1 || nch > (c->knobs.mmt_long ? 192 : 64) || nch % 8 ||
        (!k6 && row_bytes % 16))
        return HEARTH_OK; /* nch % 8: every segment's bytes a multiple of 16 (cp.async; Q6_K:
                           * whole super-blocks, copied as the granules that cover them) */
    mmt_args A;
    memset(&A, 0, sizeof A);
    const uint8_t *ws[3] = { NULL, NULL, NULL };
    int64_t rs[3] = { 0, 0, 0 }, ls[3] = { 0, 0, 0 }, tiles[3] = { 0, 0, 0 };
    float *ys[3] = { NULL, NULL, NULL }, *as[3] = { NULL, NULL, NULL };
    for (int i = 0; i < nw; i++) {
        if ((uintptr_t)w[i] % 16 || n_rows[i] < 1 || (size_t)n_rows[i] * row_bytes % 16)
            return HEARTH_OK; /* Q6_K's granule copies stay inside [base, end) */
        ws[i] = w[i], rs[i] = n_rows[i], ls[i] = ldy[i], ys[i] = y[i], as[i] = add_to ? add_to[i] : NULL;
        tiles[i] = (n_rows[i] + 15) / 16;
    }
    A.w0 = ws[0], A.w1 = ws[1], A.w2 = ws[2];
    A.r0 = rs[0], A.r1 = rs[1], A.r2 = rs[2];
    A.t0 = tiles[0], A.t1 = tiles[0] + tiles[1], A.tiles = tiles[0] + tiles[1] + tiles[2];
    A.y0 = ys[0], A.y1 = ys[1], A.y2 = ys[2];
    A.l0 = ls[0], A.l1 = ls[1], A.l2 = ls[2];
    A.a0 = as[0], A.a1 = as[1], A.a2 = as[2];
    A.rb = row_bytes, A.xq = xq, A.xd = xd, A.xs = xs, A.nch = nch, A.n_tok = (int)n_tok;
    A.ns = c->knobs.mmt_ns;
    int nseg = (nch + 63) / 64; /* segments of 64 chunks per row (the kernel's NSEG) */
    bool full = nch == 64 * nseg;
    int ty = q8 ? 1 : (k4 ? 2 : (k6 ? MMT_Q6 : 0));
    size_t tb = 16 * (size_t)mmt_rs(ty);
    size_t smem = (size_t)A.ns * tb + 2 * MMT_W * 32 * sizeof(float4) + (size_t)64 * nseg * 4 * (sizeof(float4) + sizeof(float2));
    void (*kern)(const mmt_args);
#define MMT_PICK(TY)                                                                                     \
    kern = nseg == 1 ? (full ? mmt_kernel<TY, 1, true> : mmt_kernel<TY, 1, false>)                       \
                     : (nseg == 2 ? (full ? mmt_kernel<TY, 2, true> : mmt_kernel<TY, 2, false>)          \
                                  : (full ? mmt_kernel<TY, 3, true> : mmt_kernel<TY, 3, false>))
    if (q8) MMT_PICK(1);
    else if (k4) MMT_PICK(2);
    else if (k6) MMT_PICK(MMT_Q6);
    else MMT_PICK(0);
#undef MMT_PICK
    if (smem > 200 * 1024) return HEARTH_OK;
    if ((rc = cu_smem_allow(c, (const void *)kern, smem, err))) return rc;
    int nb = cu_occupancy(c, (const void *)kern, MMT_W * 32, smem);
    if (nb < 1) return HEARTH_OK;
    int64_t grid = (int64_t)nb * (c->info.sm_count > 0 ? c->info.sm_count : 1);
    if (grid > A.tiles) grid = A.tiles;
    CU_LAUNCH(err, "launching a batched int8 product", kern, (unsigned)grid, MMT_W * 32, smem, c, A);
    c->n_mmt++;
    *done = 1;
    return cu_check_launch(err, "batched int8 product");
}
