/* cu_mvq.cu — decode products (1..8 tokens, quantized weights) that prepare their own
 * activations, so that a decode step needs fewer kernels (each kernel boundary costs a
 * launch-to-launch latency and an extra round trip through L2):
 *
 *  - cuda_matmul_pro: every block reads the f32 input rows (8 KB per 2048-float row, from
 *    L2), optionally RMSNorms them, and quantizes them into shared memory itself (codes,
 *    scales and half sums, exactly what the activation scratch would hold), then runs the
 *    dot products of its rows out of shared memory. The RMSNorm node before the q/k/v
 *    products disappears; products without a quantizing producer lose their act_quant
 *    kernel. Block 0 also writes the normalized rows and the activation scratch, so the op
 *    semantics stay those of the separate kernels (a later product may reuse the scratch).
 *  - cuda_matmul_glu: gate and up (optionally after the RMSNorm, same prologue) in one
 *    kernel whose block owns 32 consecutive outputs: each warp computes gate row i and up
 *    row i together, writes gate, up and act(gate) * up, and the block quantizes the 32
 *    GLU outputs of each token into the activation scratch for the down product — the
 *    RMSNorm and GLU nodes disappear.
 *
 * Measured on an H200 (TinyLlama shapes, graph replay with programmatic dependent launch,
 * tg128): the gate/up + GLU kernel gains ~3% (Q4_0) / ~1% (Q4_K_M) and is on by default
 * for rows up to 1280 bytes (HEARTH_CUDA_GU=0 turns it off); the prologue products lose
 * 2-7% against the separate RMSNorm / act_quant kernels, which overlap their neighbours
 * well, so they are opt-in (HEARTH_CUDA_PQ=1).
 * Session 4 tried other shapes of the gate/up kernel (still one 32-output GLU chunk per
 * block): 4 or 8 warps per block with 4-8 outputs per warp (a cp.async ring of 1-8
 * outputs in flight), two outputs computed at once, all 64 rows of a block staged before
 * the PDL wait, an L2 bulk prefetch of the rows past the ring, a shared-memory carveout
 * preference. None beat this kernel (Q4_0 tg128 1026-1194 against 1205-1216; fewer warps
 * per output serialize the dot products and lose most), and Q8_0 rows fused measured
 * 875-1010 against 1055-1070 with the separate kernels, so rows over 1280 bytes stay
 * there. (Sessions 4-6 read the tracer as "this kernel's blocks start only when the o
 * product has finished"; that was the tracer's own atomics after the wait. Session 7's
 * start-time marks show the blocks resident ~1.5 us after o's wait and the time going to
 * the prologue and the dot products: docs/cuda.md "Tracing a decode step".)
 * One token (decode): gu1_* (GU_KERNEL with J = GU1_J) loads each lane's activation chunks
 * (codes, scale, half sums) from shared memory into registers once and reuses them for
 * both outputs' gate and up rows (MV1_DOT, the single-token mat-vec's loop), instead of
 * re-reading them per chunk and row with 64-bit indexing for up to GU_T tokens; same
 * arithmetic in the same order, so bit-identical. Measured on an H200 (tg128, two
 * interleaved rounds, -r 3): Q4_0 1592-1622 -> 1739-1745, Q4_K_M 1495-1502 -> 1575-1580
 * (HEARTH_CUDA_GU1=0 turns it off). Its rows are staged by bulk copies when they are
 * 16-byte aligned (gu_stage_tma; the kernel's `vw` argument is then GU_BULK).
 *
 * Arithmetic: the same as the separate kernels, bit for bit (sum of squares in the order
 * of the multi-block RMSNorm, cu_ss_part; quantization per 32 values with amax / 127,
 * rounding half away from zero, clamp to +-127, half sums; per lane chunk order and warp
 * sums of the matrix-vector kernels), so results do not depend on which path ran or on
 * the number of tokens. Weights are fetched before cu_pdl_wait (programmatic dependent
 * launch), activations after it.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_pq.cuh"

#define PQ_MAXW 16     /* most warps per block of cuda_matmul_pro */
#define PQ_WSTAGE 12288 /* most staged weight bytes per warp of cuda_matmul_pro */
#define GU_W 16        /* warps per block of cuda_matmul_glu (2 outputs each: 32 per block) */
#define GU_T 4         /* most tokens of cuda_matmul_glu (its accumulators stay in registers) */
#define GU1_J 2        /* chunks per lane of the single-token gate/up kernel (rows of <= 64 chunks) */

static __constant__ int8_t pq_iq4_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113 };

/* Up to three weights (same type and row length) over the same input; segment i owns
 * `blocks` consecutive blocks of the grid. */
typedef struct pq_seg {
    const uint8_t *w;
    int64_t n_rows;
    float *y;
    int64_t ldy;
    float *add_to;
    unsigned blocks;
} pq_seg;

typedef struct pq_multi {
    pq_seg s0, s1, s2;
    int n;
} pq_multi;

#define PQ_FIELD(m, seg, f) ((seg) == 0 ? (m).s0.f : ((seg) == 1 ? (m).s1.f : (m).s2.f))


/* Dot of the chunk c of a staged row with every token's activations, accumulated into
 * acc[t] (the arithmetic of the matrix-vector kernels). */
#define PQ_CHUNK(UNPACK, HAS_MIN, NT, rowp, c, acc)                                                       \
    do {                                                                                                  \
        int q_[8];                                                                                        \
        float a_[2], m_[2];                                                                               \
        UNPACK((rowp), (c), lut, q_, a_, m_);                                                             \
        _Pragma("unroll") for (int t = 0; t < (NT); t++) {                                                \
            if (t < n_tok) {                                                                              \
                const int4 *xp_ = (const int4 *)(sq + ((int64_t)t * nch + (c)) * 32);                     \
                int2 sx_ = HAS_MIN ? ssum[(int64_t)t * nch + (c)] : make_int2(0, 0);                      \
                float v_ = mq_chunk_dot(q_, xp_[0], xp_[1], a_, m_, sx_, HAS_MIN);                        \
                (acc)[t] += sd[(int64_t)t * nch + (c)] * v_;                                              \
            }                                                                                             \
        }                                                                                                 \
    } while (0)

/* Products with the prologue: NW = blockDim.x / 32 warps per block; warp w of block b owns
 * rows (b * NW + w) * rpw + k, k < rpw, of its segment, all staged at once before the PDL
 * wait (dynamic shared memory: the stage [NW][wst], then the activations). Few blocks
 * (about one per SM): every block reads the whole input, and the same few kilobytes read
 * by hundreds of blocks at the same moment queue at the L2 slices that hold them. */
#define PQ_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT)                                                        \
    static __global__ void __launch_bounds__(PQ_MAXW * 32, 1)                                            \
        name(pq_multi mm, size_t row_bytes, int n, int rpw, size_t wst, int vw, pq_in in, int n_tok) {   \
        extern __shared__ __align__(16) uint8_t pq_dyn[];                                                \
        __shared__ int8_t lut[16];                                                                       \
        __shared__ float red[4 * PQ_T];                                                                  \
        if (HAS_LUT && threadIdx.x < 16) lut[threadIdx.x] = pq_iq4_levels[threadIdx.x];                  \
        unsigned blk = blockIdx.x;                                                                       \
        int seg = 0;                                                                                     \
        if (mm.n > 1 && blk >= mm.s0.blocks) {                                                           \
            blk -= mm.s0.blocks, seg = 1;                                                                \
            if (mm.n > 2 && blk >= mm.s1.blocks) blk -= mm.s1.blocks, seg = 2;                           \
        }                                                                                                \
        const uint8_t *w = PQ_FIELD(mm, seg, w);                                                         \
        int64_t n_rows = PQ_FIELD(mm, seg, n_rows), ldy = PQ_FIELD(mm, seg, ldy);                        \
        float *y = PQ_FIELD(mm, seg, y), *add_to = PQ_FIELD(mm, seg, add_to);                            \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nch = n / 32, nw = blockDim.x >> 5;        \
        int64_t r0 = ((int64_t)blk * nw + warp) * rpw;                                                   \
        int nr = r0 < n_rows ? (int)(n_rows - r0 < rpw ? n_rows - r0 : rpw) : 0;                         \
        uint8_t *sm = pq_dyn + warp * wst;                                                               \
        const uint8_t *src = w + (size_t)r0 * row_bytes;                                                 \
        for (int i = lane * vw; i < nr * (int)row_bytes; i += 32 * vw) mq_cp(sm + i, src + i, vw);      \
        float4 wpre[4];                                                                                  \
        pq_prefetch_w(in, n, n_tok, wpre);                                                               \
        cu_pdl_wait(); /* weights in flight; activations now ready */                                    \
        cu_pdl_trigger();                                                                                \
        int8_t *sq = (int8_t *)(pq_dyn + nw * wst);                                                      \
        int2 *ssum = (int2 *)(sq + (size_t)n_tok * n);                                                   \
        float *sd = (float *)(ssum + n_tok * nch);                                                       \
        pq_prologue(in, n, n_tok, wpre, sq, ssum, sd, red);                                              \
        asm volatile("cp.async.wait_all;\n" ::: "memory");                                              \
        __syncwarp();                                                                                    \
        for (int k = 0; k < nr; k++) {                                                                   \
            float acc[PQ_T];                                                                             \
            _Pragma("unroll") for (int t = 0; t < PQ_T; t++) acc[t] = 0.0f;                              \
            for (int c = lane; c < nch; c += 32) PQ_CHUNK(UNPACK, HAS_MIN, PQ_T, sm + (size_t)k * row_bytes, c, acc); \
            cu_mv_store(acc, lane, r0 + k, n_tok, y, ldy, add_to);                                          \
        }                                                                                                \
    }

/* gate/up + GLU: block b owns outputs 32b..32b+31, warp w outputs i0 = 32b + 2w and i0 + 1
 * (gate rows and up rows of both, staged `per` outputs at a time: per = 2, one pass, or 1,
 * two passes, for rows too long for 4 per warp). Dynamic shared memory: the stage
 * [GU_W][2 * per * row_bytes], rounded to 16, then the activations. The GLU outputs of
 * every token are quantized into the scratch (oq, od, os: [n_tok][n_ff / 32] chunks). */
/* The warp's copies of gate row `row` and up row `row` (pb bytes each from the row start:
 * one or two outputs' rows) into its stage sm and sm + pb. */
static __device__ __forceinline__ void gu_stage(uint8_t *sm, const uint8_t *wg, const uint8_t *wu, int64_t row,
                                                size_t row_bytes, int pb, int vw, int lane) {
    for (int i = lane * vw; i < pb; i += 32 * vw) {
        mq_cp(sm + i, wg + (size_t)row * row_bytes + i, vw);
        mq_cp(sm + pb + i, wu + (size_t)row * row_bytes + i, vw);
    }
}

/* Staging width GU_BULK (the single-token kernel, 16-byte aligned rows): lane 0 stages the
 * gate and up rows of output `row` with one bulk copy each (cp.async.bulk), completion
 * counted on the warp's mbarrier, instead of every lane issuing 16-byte cp.async pieces.
 * Measured (tg128, three interleaved rounds, bulk against per-lane): H200 Q4_0 1878-1894
 * against 1851-1866, Q4_K_M 1768-1785 against 1753-1769, Q8_0 1651-1657 against 1639-1646;
 * H100 Q4_0 1783-1794 against 1771-1790, Q4_K_M 1710-1711 against 1669-1701, Q8_0
 * 1438-1465 against 1430-1451. The trace shows the second output's rows arriving sooner
 * (H100, Q8_0: 2.5 us after their staging starts instead of 3.2). HEARTH_CUDA_GU_TMA=0
 * turns it off. */
#define GU_BULK 32
#define GU_LATE 33 /* the three-buffer instances, second output's gate row staged late (GU3_DOTS) */

static __device__ __forceinline__ void gu_stage_tma(uint8_t *sm, const uint8_t *wg, const uint8_t *wu, int64_t row,
                                                    size_t row_bytes, int pb, uint64_t *bar, uint64_t pol) {
    cu_mbar_expect(bar, 2u * (uint32_t)pb);
    cu_bulk_g2s(sm, wg + (size_t)row * row_bytes, (uint32_t)pb, bar, pol);
    cu_bulk_g2s(sm + pb, wu + (size_t)row * row_bytes, (uint32_t)pb, bar, pol);
}

/* The warp sums of the gate and up rows j = 0, 1 of one token (g0, g1, u0, u1) in one
 * reduction, the values split between the lanes (ps_tsum: cu_warp_sum's pairings, so the
 * bits of four separate sums; 7 shuffles instead of 20): lanes 16 + 8j hold up row j, and
 * the gate's sum comes from lane 8j. Returns j for lanes 16 and 24 (*gv, *uv: row j's
 * sums), -1 for the others. */
static __device__ __forceinline__ int gu_sums(float g0, float g1, float u0, float u1, int lane, float *gv, float *uv) {
    float v[4] = { g0, g1, u0, u1 };
    float s = ps_tsum<4>(v, lane);
    *gv = __shfl_xor_sync(0xffffffffu, s, 16), *uv = s;
    return lane == 16 ? 0 : (lane == 24 ? 1 : -1);
}

/* Three one-row buffers per warp (the G3 single-token instances, bulk copies only): output
 * i0's gate and up rows and output i0 + 1's gate row are staged, and i0 + 1's up row as soon
 * as i0's gate row has been used. With two buffers, output i0 + 1's rows were only requested
 * after both of i0's dot products, and on an H100 the whole GPU's burst of them (12 MB for
 * Q8_0) then arrived 2.5-3.4 us later while the DRAM had idled. Where output i0 + 1's gate
 * row is staged depends on the type (pq_entry.gu3_late): with output i0's rows before the
 * PDL wait (Q8_0), or only once they have landed (vw == GU_LATE: Q4_0, Q4_K, whose first
 * rows then arrive sooner; their dot products are short and the prologue is not what they
 * wait for). 104 KB per block for Q8_0 still fits two blocks per SM; registers, not shared
 * memory, limit how many become resident beside the o product before it (64 x 512 each).
 * Measured on an H100 (tg128 -r 3, three interleaved rounds each; gu1 is the two-buffer
 * kernel): Q8_0 early 1513-1545 against gu1 1471-1483, late 1500-1525 against early
 * 1537-1558; Q4_0 late 1772-1816 against gu1 1773-1789 (early: 1709-1756 against 1742-1749);
 * Q4_K_M late 1714-1722 against gu1 1662-1693 (early: 1601-1670 against 1654-1679).
 * HEARTH_CUDA_GU3=0 turns the instances off. */
static __device__ __forceinline__ void gu_stage_row(uint8_t *sm, const uint8_t *w, int64_t row, size_t row_bytes,
                                                    int pb, uint64_t *bar, uint64_t pol) {
    cu_mbar_expect(bar, (uint32_t)pb);
    cu_bulk_g2s(sm, w + (size_t)row * row_bytes, (uint32_t)pb, bar, pol);
}

#define GU3_DOTS(J, UNPACK, HAS_MIN)                                                                     \
    do {                                                                                                 \
        cu_mbar_wait(&gbar[warp], 0);                                                                    \
        if (vw == GU_LATE && lane == 0) /* staged only now: see gu_stage_row */                          \
            gu_stage_row(sm + 2 * pb, wg, i0 + 1, row_bytes, pb, &gbar[GU_W + warp], pol);               \
        __syncwarp();                                                                                    \
        CU_TR_MARK(3);                                                                                   \
        MV1_DOT(J, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, g[0][0]);                        \
        __syncwarp(); /* every lane is done with buffer 0: i0 + 1's up row goes there */                 \
        if (lane == 0) {                                                                                 \
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");                               \
            gu_stage_row(sm, wu, i0 + 1, row_bytes, pb, &gbar[2 * GU_W + warp], pol);                    \
        }                                                                                                \
        MV1_DOT(J, UNPACK, HAS_MIN, sm + pb, lut, nch, lane, xa, xb, dx, sx, u[0][0]);                   \
        cu_mbar_wait(&gbar[GU_W + warp], 0);                                                             \
        __syncwarp();                                                                                    \
        CU_TR_MARK(4);                                                                                   \
        MV1_DOT(J, UNPACK, HAS_MIN, sm + 2 * pb, lut, nch, lane, xa, xb, dx, sx, g[1][0]);               \
        cu_mbar_wait(&gbar[2 * GU_W + warp], 0);                                                         \
        __syncwarp();                                                                                    \
        MV1_DOT(J, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, u[1][0]);                        \
    } while (0)

#define GU_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT, J, G3)                                                        \
    static __global__ void __launch_bounds__(GU_W * 32, 2)                                               \
        name(const uint8_t *wg, const uint8_t *wu, size_t row_bytes, int n, int n_ff, int per, int vw,   \
             float *yg, int64_t ldg, float *yu, int64_t ldu, float *out, int gelu, int8_t *oq, float *od, \
             int2 *os, pq_in in, int n_tok_) {                                                           \
        CU_TR_ENTRY();                                                                                   \
        int n_tok = (J) ? 1 : n_tok_; /* J > 0: the single-token kernel (the caller checks) */ \
        extern __shared__ __align__(16) uint8_t pq_dyn[];                                                \
        __shared__ int8_t lut[16];                                                                       \
        __shared__ float red[4 * PQ_T];                                                                  \
        __shared__ float ob[PQ_T * 32];                                                                  \
        if (HAS_LUT && threadIdx.x < 16) lut[threadIdx.x] = pq_iq4_levels[threadIdx.x];                  \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nch = n / 32;                              \
        size_t wst = (G3 ? 3 : 2 * (size_t)per) * row_bytes; /* G3: three one-row buffers */             \
        uint8_t *sm = pq_dyn + warp * wst;                                                               \
        int64_t i0 = (int64_t)blockIdx.x * 32 + 2 * warp;                                                \
        int pb = per * (int)row_bytes;                                                                   \
        __shared__ __align__(8) uint64_t gbar[GU_W * ((G3) ? 3 : 1)];                                   \
        const bool tma = (G3) || ((J) && vw == GU_BULK);                                                 \
        uint64_t pol = 0;                                                                                \
        if (!tma) gu_stage(sm, wg, wu, i0, row_bytes, pb, vw, lane);                                     \
        else if (lane == 0) {                                                                            \
            cu_mbar_init(&gbar[warp], 1);                                                                \
            if (G3) cu_mbar_init(&gbar[GU_W + warp], 1), cu_mbar_init(&gbar[2 * GU_W + warp], 1);        \
            cu_mbar_init_fence();                                                                        \
            pol = cu_l2_policy(true);                                                                    \
            gu_stage_tma(sm, wg, wu, i0, row_bytes, pb, &gbar[warp], pol);                               \
            if (G3 && vw == GU_BULK) gu_stage_row(sm + 2 * pb, wg, i0 + 1, row_bytes, pb, &gbar[GU_W + warp], pol); \
        }                                                                                                \
        __syncwarp();                                                                                    \
        float4 wpre[4];                                                                                  \
        pq_prefetch_w(in, n, n_tok, wpre);                                                               \
        cu_pdl_wait_e();                                                                                 \
        cu_pdl_trigger();                                                                                \
        int8_t *sq = (int8_t *)(pq_dyn + ((GU_W * wst + 15) & ~(size_t)15));                             \
        int2 *ssum = (int2 *)(sq + (size_t)n_tok * n);                                                   \
        float *sd = (float *)(ssum + n_tok * nch);                                                       \
        pq_prologue(in, n, n_tok, wpre, sq, ssum, sd, red CU_TR_ARG);                                    \
        CU_TR_MARK(1);                                                                                   \
        float g[2][GU_T], u[2][GU_T];                                                                    \
        _Pragma("unroll") for (int j = 0; j < 2; j++)                                                    \
            _Pragma("unroll") for (int t = 0; t < GU_T; t++) g[j][t] = u[j][t] = 0.0f;                   \
        int4 xa[(J) + 1], xb[(J) + 1]; /* J > 0: one token, per == 1: this lane's activation chunks */ \
        float dx[(J) + 1];                                                                               \
        int2 sx[(J) + 1];                                                                                \
        if (J) {                                                                                         \
            MV1_LOAD_ACT(J, HAS_MIN, sq, sd, ssum, nch, lane, xa, xb, dx, sx);                           \
        }                                                                                                \
        if (G3) GU3_DOTS(J, UNPACK, HAS_MIN);                                                            \
        else _Pragma("unroll") for (int p = 0; p < 2; p += (J) ? 1 : per) {                              \
            if (p) { /* second pass (per == 1): output i0 + 1 */                                         \
                CU_TR_MARK(2);                                                                           \
                __syncwarp();                                                                            \
                if (!tma) gu_stage(sm, wg, wu, i0 + 1, row_bytes, pb, vw, lane);                         \
                else if (lane == 0) gu_stage_tma(sm, wg, wu, i0 + 1, row_bytes, pb, &gbar[warp], pol);   \
            }                                                                                            \
            if (tma) cu_mbar_wait(&gbar[warp], (uint32_t)p);                                             \
            else asm volatile("cp.async.wait_all;\n" ::: "memory");                                      \
            __syncwarp();                                                                                \
            CU_TR_MARK(3 + p);                                                                           \
            if (J) {                                                                                     \
                const uint8_t *smu = sm + pb;                                                            \
                MV1_DOT(J, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, g[p][0]);                \
                MV1_DOT(J, UNPACK, HAS_MIN, smu, lut, nch, lane, xa, xb, dx, sx, u[p][0]);               \
            } else                                                                                       \
            for (int c = lane; c < nch; c += 32) {                                                       \
                _Pragma("unroll") for (int j = 0; j < 2; j++) {                                          \
                    if (per == 2 || j == p) {                                                            \
                        int sj = per == 2 ? j : 0;                                                       \
                        PQ_CHUNK(UNPACK, HAS_MIN, GU_T, sm + (size_t)sj * row_bytes, c, g[j]);                 \
                        PQ_CHUNK(UNPACK, HAS_MIN, GU_T, sm + (size_t)(per + sj) * row_bytes, c, u[j]);         \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        _Pragma("unroll") for (int t = 0; t < GU_T; t++) {                                               \
            if (t < n_tok) { /* gu_sums: the four sums of one reduction, the same bits */                \
                float gv, uv;                                                                            \
                int j = gu_sums(g[0][t], g[1][t], u[0][t], u[1][t], lane, &gv, &uv);                     \
                if (j >= 0) {                                                                            \
                    float o = cu_glu_act(gelu, gv) * uv;                                                 \
                    yg[(int64_t)t * ldg + i0 + j] = gv;                                                  \
                    yu[(int64_t)t * ldu + i0 + j] = uv;                                                  \
                    out[(int64_t)t * n_ff + i0 + j] = o;                                                 \
                    ob[t * 32 + 2 * warp + j] = o;                                                       \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        CU_TR_MARK(5);                                                                                   \
        __syncthreads();                                                                                 \
        if (warp < n_tok)                                                                                \
            rq_chunk(ob[warp * 32 + lane], lane, (int64_t)warp * (n_ff / 32) + blockIdx.x, oq, od, os);  \
        CU_TR_MARK(6);                                                                                   \
        CU_TR_FLUSH();                                                                                   \
    }

PQ_KERNEL(pq_q4_0, up_q4_0, 1, 0)
PQ_KERNEL(pq_q4_1, up_q4_1, 1, 0)
PQ_KERNEL(pq_q5_0, up_q5_0, 1, 0)
PQ_KERNEL(pq_q5_1, up_q5_1, 1, 0)
PQ_KERNEL(pq_q8_0, up_q8_0, 0, 0)
PQ_KERNEL(pq_iq4_nl, up_iq4_nl, 0, 1)
PQ_KERNEL(pq_q2_K, up_q2_K, 1, 0)
PQ_KERNEL(pq_q3_K, up_q3_K, 0, 0)
PQ_KERNEL(pq_q4_K, up_q4_K, 1, 0)
PQ_KERNEL(pq_q5_K, up_q5_K, 1, 0)
PQ_KERNEL(pq_q6_K, up_q6_K, 0, 0)
PQ_KERNEL(pq_iq4_xs, up_iq4_xs, 0, 1)
GU_KERNEL(gu_q4_0, up_q4_0, 1, 0, 0, 0)
GU_KERNEL(gu1_q4_0, up_q4_0, 1, 0, GU1_J, 0)
GU_KERNEL(gu3_q4_0, up_q4_0, 1, 0, GU1_J, 1)
GU_KERNEL(gu_q4_1, up_q4_1, 1, 0, 0, 0)
GU_KERNEL(gu1_q4_1, up_q4_1, 1, 0, GU1_J, 0)
GU_KERNEL(gu_q5_0, up_q5_0, 1, 0, 0, 0)
GU_KERNEL(gu1_q5_0, up_q5_0, 1, 0, GU1_J, 0)
GU_KERNEL(gu_q5_1, up_q5_1, 1, 0, 0, 0)
GU_KERNEL(gu1_q5_1, up_q5_1, 1, 0, GU1_J, 0)
GU_KERNEL(gu_q8_0, up_q8_0, 0, 0, 0, 0)
GU_KERNEL(gu1_q8_0, up_q8_0, 0, 0, GU1_J, 0)
GU_KERNEL(gu3_q8_0, up_q8_0, 0, 0, GU1_J, 1)
GU_KERNEL(gu_iq4_nl, up_iq4_nl, 0, 1, 0, 0)
GU_KERNEL(gu1_iq4_nl, up_iq4_nl, 0, 1, GU1_J, 0)
GU_KERNEL(gu_q2_K, up_q2_K, 1, 0, 0, 0)
GU_KERNEL(gu1_q2_K, up_q2_K, 1, 0, GU1_J, 0)
GU_KERNEL(gu_q3_K, up_q3_K, 0, 0, 0, 0)
GU_KERNEL(gu1_q3_K, up_q3_K, 0, 0, GU1_J, 0)
GU_KERNEL(gu_q4_K, up_q4_K, 1, 0, 0, 0)
GU_KERNEL(gu1_q4_K, up_q4_K, 1, 0, GU1_J, 0)
GU_KERNEL(gu3_q4_K, up_q4_K, 1, 0, GU1_J, 1)
GU_KERNEL(gu_q5_K, up_q5_K, 1, 0, 0, 0)
GU_KERNEL(gu1_q5_K, up_q5_K, 1, 0, GU1_J, 0)
GU_KERNEL(gu_q6_K, up_q6_Ku, 2, 0, 0, 0)
GU_KERNEL(gu1_q6_K, up_q6_Ku, 2, 0, GU1_J, 0)
GU_KERNEL(gu_iq4_xs, up_iq4_xs, 0, 1, 0, 0)
GU_KERNEL(gu1_iq4_xs, up_iq4_xs, 0, 1, GU1_J, 0)

typedef void (*pq_fn)(pq_multi, size_t, int, int, size_t, int, pq_in, int);
typedef void (*gu_fn)(const uint8_t *, const uint8_t *, size_t, int, int, int, int, float *, int64_t, float *,
                      int64_t, float *, int, int8_t *, float *, int2 *, pq_in, int);

/* Per type: the kernels. */
typedef struct pq_entry {
    uint32_t type;
    pq_fn pq;
    gu_fn gu, gu1; /* gu1: the single-token kernel (GU1_J chunks per lane at most) */
    gu_fn gu3;     /* gu1 with three row buffers per warp (GU3_DOTS), or NULL */
    int gu3_late;  /* gu3 stages output 2's gate row after output 1's rows land (GU_LATE) */
} pq_entry;

static const pq_entry k_pq[] = {
    { QT_Q4_0, pq_q4_0, gu_q4_0, gu1_q4_0, gu3_q4_0, 1 },     { QT_Q4_1, pq_q4_1, gu_q4_1, gu1_q4_1, NULL, 0 },
    { QT_Q5_0, pq_q5_0, gu_q5_0, gu1_q5_0, NULL, 0 },         { QT_Q5_1, pq_q5_1, gu_q5_1, gu1_q5_1, NULL, 0 },
    { QT_Q8_0, pq_q8_0, gu_q8_0, gu1_q8_0, gu3_q8_0, 0 },     { QT_IQ4_NL, pq_iq4_nl, gu_iq4_nl, gu1_iq4_nl, NULL, 0 },
    { QT_Q2_K, pq_q2_K, gu_q2_K, gu1_q2_K, NULL, 0 },         { QT_Q3_K, pq_q3_K, gu_q3_K, gu1_q3_K, NULL, 0 },
    { QT_Q4_K, pq_q4_K, gu_q4_K, gu1_q4_K, gu3_q4_K, 1 },     { QT_Q5_K, pq_q5_K, gu_q5_K, gu1_q5_K, NULL, 0 },
    { QT_Q6_K, pq_q6_K, gu_q6_K, gu1_q6_K, NULL, 0 },     { QT_IQ4_XS, pq_iq4_xs, gu_iq4_xs, gu1_iq4_xs, NULL, 0 },
};
#define PQ_NTYPES (sizeof k_pq / sizeof k_pq[0])

static int pq_find(uint32_t type) {
    for (size_t i = 0; i < PQ_NTYPES; i++)
        if (k_pq[i].type == type) return (int)i;
    return -1;
}

/* Rows per warp (HEARTH_CUDA_PQ_RPW forces it): the fewest that need no more blocks than
 * the device has SMs. */
static int pq_rpw(const cuda_ctx *c, int n, const cuda_weight *const *ws, int nw) {
    if (c->knobs.pq_rpw) return c->knobs.pq_rpw;
    for (int r = 1; r < 64; r++) {
        int64_t b = 0;
        for (int i = 0; i < n; i++) b += cu_blocks(ws[i]->n_rows, nw * r);
        if (b <= c->info.sm_count) return r;
    }
    return 64;
}

#define GU3_SMEM_MAX (110 * 1024) /* most shared bytes of a three-buffer gate/up block */

/* Copy width: the widest of 16/8/4 that divides the data address and the row size. */
static int pq_width(const cuda_weight *w) {
    uintptr_t a = (uintptr_t)w->data | (uintptr_t)w->row_bytes;
    return a % 16 == 0 ? 16 : (a % 8 == 0 ? 8 : (a % 4 == 0 ? 4 : 0));
}

/* Whether x (n_tok rows of n, xs apart) and the norm weight suit the prologue: at most
 * HEARTH_CUDA_PQ_MAX input floats (every block reads the whole input, so large batches are
 * left to the separate quantization kernel; 0 turns the fused forms off). */
static bool pq_input_ok(const cuda_ctx *c, const float *x, int64_t xs, int64_t n_tok, int64_t n, const float *nw) {
    return n_tok >= 1 && n_tok <= PQ_T && n % 32 == 0 && n_tok * n <= c->knobs.pq_max && (uintptr_t)x % 16 == 0 &&
           xs % 4 == 0 && xs >= n && (uintptr_t)nw % 16 == 0;
}

int cu_pq_matmul(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                 float *const *adds, const float *x, int64_t xs, int64_t n_tok, const float *norm_w, float eps,
                 float *norm_y, int *done, hb_err *err) {
    int rc;
    const cuda_weight *w = ws[0];
    int ti = pq_find(w->type), vw = pq_width(w);
    *done = 0;
    /* HEARTH_CUDA_PQ=1 only. Off by default: measured on an H200 (TinyLlama shapes, graph
     * replay with programmatic dependent launch) the separate RMSNorm / act_quant kernels
     * overlap the products so well that folding them in lost 2-7% of tg128 (every block
     * repeats the input's reads and the products' compute runs with fewer warps). */
    if (!c->knobs.pq || n < 1 || n > 3 || ti < 0 || vw == 0 || !pq_input_ok(c, x, xs, n_tok, w->n_cols, norm_w))
        return HEARTH_OK;
    for (int i = 0; i < n; i++) {
        if (ws[i]->type != w->type || ws[i]->n_cols != w->n_cols || ws[i]->row_bytes != w->row_bytes) return HEARTH_OK;
        int v = pq_width(ws[i]);
        if (v < vw) vw = v;
    }
    int nw = c->knobs.pq_nw, rpw = pq_rpw(c, n, ws, nw); /* HEARTH_CUDA_PQ_NW: 4, 8 or 16 warps */
    size_t wst = ((size_t)rpw * w->row_bytes + 15) & ~(size_t)15;
    size_t smem = nw * wst + (size_t)(n_tok * (w->n_cols / 32) * 44);
    if (vw == 0 || wst > PQ_WSTAGE || smem > 200 * 1024) return HEARTH_OK;
    pq_multi mm;
    pq_seg *seg[3] = { &mm.s0, &mm.s1, &mm.s2 };
    memset(&mm, 0, sizeof mm);
    mm.n = n;
    unsigned grid = 0;
    for (int i = 0; i < n; i++) {
        unsigned b = cu_blocks(ws[i]->n_rows, nw * rpw);
        *seg[i] = (pq_seg){ (const uint8_t *)ws[i]->data, ws[i]->n_rows, ys[i], ldys[i], adds[i], b };
        grid += b;
    }
    pq_in in;
    memset(&in, 0, sizeof in);
    in.x = x, in.xs = xs, in.nw = norm_w, in.eps = eps, in.norm = norm_y != NULL, in.ny = norm_y;
    if ((rc = cu_act_buffers(c, n_tok, w->n_cols, &in.gq, &in.gd, &in.gs, err))) return rc;
    if ((rc = cu_smem_allow(c, (const void *)k_pq[ti].pq, smem, err))) return rc;
    CU_LAUNCH_W(err, "launching a matrix-vector product", k_pq[ti].pq, grid, nw * 32, smem, c, n, ws, mm,
              w->row_bytes, (int)w->n_cols, rpw, wst, vw, in, (int)n_tok);
    *done = 1;
    c->n_mvq_fused++;
    return cu_check_launch(err, "matrix-vector product");
}

extern "C" int cuda_matmul_pro(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys,
                               const int64_t *ldys, float *const *adds, const float *x, int64_t xs, int64_t n_tok,
                               const float *norm_w, float eps, float *norm_y, hb_err *err) {
    int rc, done = 0;
    if (n_tok <= 0) return HEARTH_OK;
    if ((rc = cu_pq_matmul(c, n, ws, ys, ldys, adds, x, xs, n_tok, norm_w, eps, norm_y, &done, err)) || done)
        return rc;
    /* the separate kernels */
    if (norm_y) {
        if ((rc = cuda_rmsnorm_q8(c, x, xs, norm_y, n_tok, ws[0]->n_cols, norm_w, eps, err))) return rc;
        return cuda_matmul_multi(c, n, ws, ys, ldys, adds, norm_y, n_tok, 1, err);
    }
    return cuda_matmul_multi(c, n, ws, ys, ldys, adds, x, n_tok, 0, err);
}

/* The separate kernels of cuda_matmul_glu. */
static int gu_unfused(cuda_ctx *c, const cuda_weight *wg, const cuda_weight *wu, float *yg, int64_t ldg, float *yu,
                      int64_t ldu, float *out, int gelu, const float *x, int64_t xs, int64_t n_tok,
                      const float *norm_w, float eps, float *norm_y, hb_err *err) {
    int rc;
    const cuda_weight *ws[2] = { wg, wu };
    float *ys[2] = { yg, yu }, *adds[2] = { NULL, NULL };
    int64_t ldys[2] = { ldg, ldu };
    if ((rc = cuda_matmul_pro(c, 2, ws, ys, ldys, adds, x, xs, n_tok, norm_w, eps, norm_y, err))) return rc;
    return cuda_glu_q8(c, gelu, yg, ldg, yu, ldu, out, n_tok, wg->n_rows, err);
}

extern "C" int cuda_matmul_glu(cuda_ctx *c, const cuda_weight *wg, const cuda_weight *wu, float *yg, int64_t ldg,
                               float *yu, int64_t ldu, float *out, int gelu, const float *x, int64_t xs,
                               int64_t n_tok, const float *norm_w, float eps, float *norm_y, hb_err *err) {
    int rc;
    int64_t n = wg->n_cols, n_ff = wg->n_rows;
    if (n_tok <= 0 || n_ff <= 0) return HEARTH_OK;
    int ti = pq_find(wg->type), vw = pq_width(wg), vu = pq_width(wu);
    vw = vu < vw ? vu : vw;
    if (wu->type != wg->type || wu->n_cols != n || wu->n_rows != n_ff || wu->row_bytes != wg->row_bytes)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: gate and up weights differ");
    if (n_ff % 32) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: fused glu needs rows of a multiple of 32");
    /* one block per 32 outputs reads the whole input: allowed twice the input of the
     * other fused products (it saves two kernels) */
    int64_t pq_max = c->knobs.pq_max;
    /* HEARTH_CUDA_GU=0: the products, then glu_q8. 2..4 tokens take them too unless
     * HEARTH_CUDA_GU_T allows more tokens here: the batched products (MVT_KERNEL, the
     * generic kernel) and the separate GLU measured faster for a batch of 4 (H200, `hearth
     * bench -npl 4`: Q4_0 3472 -> 3870 t/s, Q4_K_M 3201 -> 3509); same bits either way */
    int gu_t = c->knobs.gu_t > 0 && c->knobs.gu_t < GU_T ? c->knobs.gu_t : GU_T;
    int ok = c->knobs.gu && ti >= 0 && vw > 0 && n_tok <= gu_t && n % 32 == 0 && n_tok * n <= 2 * pq_max && pq_max > 0 &&
             (uintptr_t)x % 16 == 0 && xs % 4 == 0 && xs >= n && (uintptr_t)norm_w % 16 == 0;
    int per_env = c->knobs.gu_per; /* HEARTH_CUDA_GU_PER */
    /* one output per pass: measured faster than both at once (the smaller block becomes
     * resident beside the previous kernel sooner and prefetches its weights); rows longer
     * than 1280 bytes (Q8_0, Q6_K, Q5_K at 2048 columns) stay on the separate kernels,
     * measured faster there */
    int per = per_env ? per_env : 1;
    /* one token: the kernel that keeps each lane's activation chunks in registers (same
     * arithmetic, in the same order; HEARTH_CUDA_GU1=0 turns it off); it also takes the
     * longer rows (Q8_0 at 2048 columns: +2-4% tg128 against the separate kernels, H200) */
    bool one = c->knobs.gu1 && n_tok == 1 && per == 1 && n / 32 <= 32 * GU1_J;
    if (!per_env && !one && (size_t)GU_W * 2 * wg->row_bytes > 40 * 1024) ok = 0;
    size_t stage = ((size_t)GU_W * 2 * per * wg->row_bytes + 15) & ~(size_t)15;
    size_t smem = stage + (size_t)(n_tok * (n / 32) * 44);
    if (!ok || smem > 200 * 1024)
        return gu_unfused(c, wg, wu, yg, ldg, yu, ldu, out, gelu, x, xs, n_tok, norm_w, eps, norm_y, err);
    gu_fn fn = one ? k_pq[ti].gu1 : k_pq[ti].gu;
    /* the kernel's staging width; one token: rows staged by bulk copies (gu_stage_tma) unless
     * HEARTH_CUDA_GU_TMA=0 */
    int vk = one && c->knobs.gu_tma && vw == 16 ? GU_BULK : vw;
    size_t smem3 = (((size_t)GU_W * 3 * wg->row_bytes + 15) & ~(size_t)15) + (size_t)(n / 32) * 44;
    /* three row buffers per warp where the type has such an instance and they fit
     * (HEARTH_CUDA_GU3=0: never); GU3_SMEM_MAX keeps two blocks per SM (228 KB of shared
     * memory each on Hopper) */
    if (vk == GU_BULK && k_pq[ti].gu3 && c->knobs.gu3 && smem3 <= GU3_SMEM_MAX)
        fn = k_pq[ti].gu3, smem = smem3, vk = k_pq[ti].gu3_late ? GU_LATE : GU_BULK;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    pq_in in;
    memset(&in, 0, sizeof in);
    in.x = x, in.xs = xs, in.nw = norm_w, in.eps = eps, in.norm = norm_y != NULL, in.ny = norm_y;
    int8_t *oq;
    float *od;
    int2 *os;
    if ((rc = cu_act_buffers(c, n_tok, n_ff, &oq, &od, &os, err))) return rc;
    const cuda_weight *gw[2] = { wg, wu };
    CU_LAUNCH_W(err, "launching gate/up", fn, (unsigned)(n_ff / 32), GU_W * 32, smem, c, 2, gw,
              (const uint8_t *)wg->data, (const uint8_t *)wu->data, wg->row_bytes, (int)n, (int)n_ff, per, vk, yg,
              ldg, yu, ldu, out, gelu, oq, od, os, in, (int)n_tok);
    c->n_mvq_fused++;
    return cu_check_launch(err, "gate/up");
}

extern "C" uint64_t cuda_mvq_fused_launches(const cuda_ctx *c) {
    return c->n_mvq_fused;
}
