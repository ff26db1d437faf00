/* cu_matmul.cu — weight matrix x activations on the GPU, for every compute type.
 *
 * Small batches (decode: 1..MV_T tokens per pass) are matrix-vector products bound by
 * memory bandwidth: one warp per row (the row staged in shared memory with wide
 * asynchronous copies), and every weight byte is read once per pass. Quantized weights are multiplied
 * with int8 activations (one float scale per 32 values, quantized once per matmul by
 * act_quant_kernel) using 4-way byte dot products (dp4a), exactly the integer arithmetic of
 * the scalar reference; float weights (F32/F16/BF16) take f32 activations.
 *
 * Large batches (prefill) run tensor-core matrix multiplies (cu_gemm.cu): int8 products
 * of the same quantized activations for quantized weights (the weight blocks unpacked in
 * shared memory), f16 products for F16/BF16 weights; f32 accumulation.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_unpack.cuh"
#include "backend/cuda/cuda_mvf.h"

#define MV_T CU_MV_T /* tokens per pass */

/* Matrix-vector kernels are launched with programmatic dependent launch (CU_LAUNCH): they
 * start fetching their weights, which no kernel writes, before cu_pdl_wait, and read
 * activations or write anything only after it. */
/* ---- activation quantization ------------------------------------------------------------
 * x [n_tok][n] f32 -> codes xq [n_tok][n] int8, scales xd [n_tok][n/32], and the code sums
 * of each 16-value half xs [n_tok][n/32] (for formats with offsets). One warp per chunk. */
static __global__ void act_quant_kernel(const float *x, int64_t n, int64_t n_chunks_total, int8_t *xq, float *xd,
                                        int2 *xs) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger(); /* the product that reads xq may start fetching its weights */
    int64_t ch = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (ch >= n_chunks_total) return;
    int64_t nch = n / 32, t = ch / nch, c = ch % nch;
    float v = x[t * n + c * 32 + lane];
    float amax = cu_warp_max(fabsf(v));
    float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    float s = v * id;
    int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
    q = q > 127 ? 127 : (q < -127 ? -127 : q);
    xq[t * n + c * 32 + lane] = (int8_t)q;
    int hs = q;
    for (int o = 8; o > 0; o >>= 1) hs += __shfl_xor_sync(0xffffffffu, hs, o); /* within each half */
    int other = __shfl_sync(0xffffffffu, hs, 16);
    if (lane == 0) {
        xd[ch] = d;
        xs[ch] = make_int2(hs, other);
    }
}

/* ---- quantized matrix x vector ----------------------------------------------------------
 * One warp per weight row, MQ_W rows per block (enough blocks to fill every SM even for
 * 256-row matrices). The warp first copies its row (up to MQ_STAGE bytes per pass) into
 * shared memory with asynchronous copies as wide as the row's alignment allows (16 bytes
 * for most types and shapes), so the whole row is in flight at once and the odd block
 * sizes (18/34/210 bytes) cost no narrow global loads; the lanes then decode 32-element
 * chunks out of shared memory with the per-type unpackers. A pass starts at a multiple of
 * 32 chunks, which is always a block boundary, so chunk indices stay valid relative to
 * the staged window. */
#define MQ_W 4          /* warps (rows) per block */
#define MQ_STAGE 6656   /* staged row bytes per warp and pass (Q8_0: 6 x 32 chunks) */

/* Up to three weights over the same activations in one launch (q/k/v, gate/up): segment
 * i owns `blocks` consecutive blocks of the grid. */
typedef struct mv_seg {
    const uint8_t *w;
    size_t row_bytes;
    int64_t n_rows;
    float *y;
    int64_t ldy;
    float *add_to;
    unsigned blocks;
} mv_seg;

typedef struct mv_multi {
    mv_seg s0, s1, s2;
    int n;
    int early; /* MV1 kernels: read add_to before the PDL wait (cuda_mm_opt.add_early) */
} mv_multi;

/* Picks this block's segment with selects (no run-time indexing of the parameter). */
#define MV_SEG_FIELD(m, seg, f) ((seg) == 0 ? (m).s0.f : ((seg) == 1 ? (m).s1.f : (m).s2.f))
#define MV_SEGMENT(m)                                                                                     \
    unsigned blk = blockIdx.x;                                                                            \
    int seg = 0;                                                                                          \
    if ((m).n > 1 && blk >= (m).s0.blocks) {                                                              \
        blk -= (m).s0.blocks, seg = 1;                                                                    \
        if ((m).n > 2 && blk >= (m).s1.blocks) blk -= (m).s1.blocks, seg = 2;                             \
    }                                                                                                     \
    const uint8_t *w = MV_SEG_FIELD(m, seg, w);                                                           \
    size_t row_bytes = MV_SEG_FIELD(m, seg, row_bytes);                                                   \
    int64_t n_rows = MV_SEG_FIELD(m, seg, n_rows), ldy = MV_SEG_FIELD(m, seg, ldy);                       \
    float *y = MV_SEG_FIELD(m, seg, y), *add_to = MV_SEG_FIELD(m, seg, add_to)

/* The warp copies nbytes (a multiple of vw) from src to dst; vw: 16, 8, 4 (asynchronous)
 * or 2 (plain loads, for rows of an odd number of 18-byte blocks). Returns once every lane
 * can read all of dst. */
static __device__ __forceinline__ void mq_stage(uint8_t *dst, const uint8_t *src, int nbytes, int vw, int lane,
                                                int first) {
    if (vw >= 4) {
        for (int i = lane * vw; i < nbytes; i += 32 * vw) mq_cp(dst + i, src + i, vw);
        if (first) cu_pdl_wait(), cu_pdl_trigger(); /* weights in flight; activations now ready */
        asm volatile("cp.async.wait_all;\n" ::: "memory");
    } else {
        for (int i = lane * 2; i < nbytes; i += 64) *(uint16_t *)(dst + i) = *(const uint16_t *)(src + i);
        if (first) cu_pdl_wait(), cu_pdl_trigger();
    }
    __syncwarp();
}

/* Start of every quantized mat-vec kernel: per-warp staging buffer, the IQ4 level table
 * when the type needs it, this warp's row r of its segment (the kernel returns when there is
 * none), the row's bytes `row` and the warp's stage `sm`. */
#define MV_ROW_BEGIN(HAS_LUT)                                                                            \
    __shared__ __align__(16) uint8_t stage[MQ_W][MQ_STAGE];                                              \
    __shared__ int8_t lut[16];                                                                           \
    if (HAS_LUT) {                                                                                       \
        if (threadIdx.x < 16) lut[threadIdx.x] = c_iq4_levels[threadIdx.x];                              \
        __syncthreads();                                                                                 \
    }                                                                                                    \
    MV_SEGMENT(mm);                                                                                      \
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;                                                \
    int64_t r = (int64_t)blk * MQ_W + warp;                                                              \
    if (r >= n_rows) return; /* no block-wide barrier follows */                                         \
    const uint8_t *row = w + (size_t)r * row_bytes;                                                      \
    uint8_t *sm = stage[warp];

/* One kernel per type: UNPACK decodes a chunk (cu_unpack.cuh); HAS_MIN says whether the
 * type has per-half offsets (then the activation code sums are needed). seg_bytes: bytes
 * of 32 chunks; vw: copy width (see mq_stage). */
#define MV_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT)                                                        \
    static __global__ void __launch_bounds__(MQ_W * 32)                                                  \
        name(mv_multi mm, int nch, int seg_bytes, int vw, const int8_t *xq, const float *xd, const int2 *xs, \
             int n_tok) {                                                                                \
        MV_ROW_BEGIN(HAS_LUT);                                                                           \
        int per_pass = MQ_STAGE / seg_bytes, nseg = (nch + 31) / 32;                                      \
        float acc[MV_T];                                                                                  \
        _Pragma("unroll") for (int t = 0; t < MV_T; t++) acc[t] = 0.0f;                                  \
        for (int s0 = 0; s0 < nseg; s0 += per_pass) {                                                     \
            size_t b0 = (size_t)s0 * seg_bytes, b1 = b0 + (size_t)per_pass * seg_bytes;                   \
            if (b1 > row_bytes) b1 = row_bytes;                                                           \
            if (s0) __syncwarp(); /* every lane is done with the previous pass */                         \
            mq_stage(sm, row + b0, (int)(b1 - b0), vw, lane, s0 == 0);                                             \
            int c_end = (s0 + per_pass) * 32 < nch ? (s0 + per_pass) * 32 : nch;                          \
            for (int c = s0 * 32 + lane; c < c_end; c += 32) {                                            \
                int q[8];                                                                                 \
                float a[2], m[2];                                                                         \
                UNPACK(sm, c - s0 * 32, lut, q, a, m);                                                    \
                _Pragma("unroll") for (int t = 0; t < MV_T; t++) {                                        \
                    if (t < n_tok) {                                                                      \
                        const int4 *xp = (const int4 *)(xq + ((int64_t)t * nch + c) * 32);                \
                        int4 x0 = xp[0], x1 = xp[1];                                                      \
                        float dx = xd[(int64_t)t * nch + c];                                              \
                        int2 sx = HAS_MIN ? xs[(int64_t)t * nch + c] : make_int2(0, 0);                   \
                        float v = mq_chunk_dot(q, x0, x1, a, m, sx, HAS_MIN);                            \
                        acc[t] += dx * v;                                                                 \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        cu_mv_store(acc, lane, r, n_tok, y, ldy, add_to);                                                    \
    }

/* Copy width MQ_BULK (the single-token kernels below, 16-byte aligned rows): lane 0 stages
 * the warp's row with one bulk copy (cp.async.bulk, completion counted on the warp's
 * mbarrier) instead of every lane issuing 16-byte cp.async pieces; as the gate/up kernel's
 * staging (cu_mvq.cu, gu_stage_tma). Which types take it: mv_launch_vw. */
#define MQ_BULK 32
static __device__ __forceinline__ void mq_stage_bulk(uint8_t *dst, const uint8_t *src, uint32_t bytes, uint64_t *bar) {
    cu_mbar_init(bar, 1);
    cu_mbar_init_fence();
    cu_mbar_expect(bar, bytes);
    cu_bulk_g2s(dst, src, bytes, bar, cu_l2_policy(true));
}

/* Single-token variant (decode, n_tok == 1) for rows that fit one staging pass and have at
 * most MV1_J chunks per lane: the lane loads the activations of all its chunks into
 * registers right after the PDL wait, while the row's asynchronous copies are still in
 * flight, so the activations cost one L2 round trip under the weights' instead of one
 * after them per chunk (the generic loop's loads wait for the unpack of the chunk). */
#define MV1_J 6
/* BULK: the instance can stage by bulk copy (vw == MQ_BULK); without it the copy code is
 * compiled out (it costs 3-8 registers, measured slower where unused). */
#define MV1_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT, BULK) MV1_KERNEL_J(name, UNPACK, HAS_MIN, HAS_LUT, MV1_J, BULK)
#define MV1_KERNEL_J(name, UNPACK, HAS_MIN, HAS_LUT, MJ, BULK)                                           \
    static __global__ void __launch_bounds__(MQ_W * 32)                                                  \
        name(mv_multi mm, int nch, int seg_bytes, int vw, const int8_t *xq, const float *xd, const int2 *xs, \
             int n_tok) {                                                                                \
        (void)seg_bytes, (void)n_tok;                                                                    \
        CU_TR_ENTRY();                                                                                   \
        MV_ROW_BEGIN(HAS_LUT);                                                                           \
        __shared__ __align__(8) uint64_t mbar_[MQ_W];                                                    \
        const bool bulk_ = (BULK) && vw == MQ_BULK;                                                      \
        if (!bulk_)                                                                                      \
            for (int i = lane * vw; i < (int)row_bytes; i += 32 * vw) mq_cp(sm + i, row + i, vw);        \
        else if (lane == 0)                                                                              \
            mq_stage_bulk(sm, row, (uint32_t)row_bytes, &mbar_[warp]);                                   \
        __syncwarp(); /* the barrier is initialized for every lane */                                    \
        float res_ = 0.0f; /* the residual, read early when the host allows it */                        \
        if (mm.early && lane == 0 && add_to) res_ = __ldcg(add_to + r);                                   \
        cu_pdl_wait_e(); /* weights in flight; activations now ready */                                     \
        cu_pdl_trigger();                                                                                 \
        int4 xa[MJ], xb[MJ];                                                                              \
        float dx[MJ];                                                                                     \
        int2 sx[MJ];                                                                                      \
        MV1_LOAD_ACT(MJ, HAS_MIN, xq, xd, xs, nch, lane, xa, xb, dx, sx);                                 \
        if (bulk_) cu_mbar_wait(&mbar_[warp], 0);                                                         \
        else asm volatile("cp.async.wait_all;\n" ::: "memory");                                           \
        __syncwarp();                                                                                     \
        CU_TR_MARK(1);                                                                                    \
        float acc[MV_T];                                                                                  \
        _Pragma("unroll") for (int t = 0; t < MV_T; t++) acc[t] = 0.0f;                                  \
        MV1_DOT(MJ, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, acc[0]);                          \
        if (mm.early) { /* the same sum: add_to[r] + v with the value read before the wait */              \
            float v_ = cu_warp_sum(acc[0]);                                                               \
            if (lane == 0) {                                                                              \
                y[r] = v_;                                                                                \
                if (add_to) add_to[r] = res_ + v_;                                                        \
            }                                                                                             \
        } else                                                                                            \
            cu_mv_store(acc, lane, r, 1, y, ldy, add_to);                                                 \
        CU_TR_MARK(2);                                                                                    \
        CU_TR_FLUSH();                                                                                    \
    }

/* Streaming single-token variant for matrices with many rows (the output product: 32000+
 * rows of 1-2 KB). The generic kernel's warp stages one row, waits for it, computes and
 * exits, so each row pays a DRAM round trip, the activation loads and the warp reduction in
 * series, and a new block's start; measured ~2.2 TB/s on the 53.8 MB Q6_K output matrix.
 * Here a grid of a few blocks per SM stays resident: each warp walks rows r, r + W, r + 2W,
 * ... (W = warps in the grid) through a ring of MVS_S row buffers in shared memory, with the
 * copies of the next MVS_S - 1 rows in flight while it computes one, and the lane's
 * activations are loaded into registers once. Per row the arithmetic is MV1_DOT plus
 * cu_mv_store: the generic kernel's (same chunks per lane in the same order, same warp
 * sum), so the logits are the same bits. */
#define MVS_W 8 /* warps per block */
#define MVS_S 3 /* row buffers per warp */
#define MVS_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT, J)                                                    \
    static __global__ void __launch_bounds__(MVS_W * 32)                                                 \
        name(const uint8_t *w, size_t row_bytes, size_t st, int64_t n_rows, float *y, int nch, int vw,   \
             const int8_t *xq, const float *xd, const int2 *xs) {                                        \
        extern __shared__ __align__(16) uint8_t mvs_dyn[];                                               \
        __shared__ int8_t lut[16];                                                                       \
        if (HAS_LUT) {                                                                                   \
            if (threadIdx.x < 16) lut[threadIdx.x] = c_iq4_levels[threadIdx.x];                          \
            __syncthreads();                                                                             \
        }                                                                                                \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;                                            \
        int64_t step = (int64_t)gridDim.x * MVS_W, r = (int64_t)blockIdx.x * MVS_W + warp;              \
        uint8_t *sm = mvs_dyn + (size_t)warp * MVS_S * st;                                               \
        _Pragma("unroll") for (int k = 0; k < MVS_S; k++) { /* weights: before the PDL wait */           \
            int64_t rk = r + k * step;                                                                   \
            if (rk < n_rows)                                                                             \
                for (int i = lane * vw; i < (int)row_bytes; i += 32 * vw)                                \
                    mq_cp(sm + k * st + i, w + (size_t)rk * row_bytes + i, vw);                          \
            asm volatile("cp.async.commit_group;\n" ::: "memory");                                       \
        }                                                                                                \
        cu_pdl_wait();                                                                                   \
        cu_pdl_trigger();                                                                                \
        int4 xa[J], xb[J];                                                                               \
        float dx[J];                                                                                     \
        int2 sx[J];                                                                                      \
        MV1_LOAD_ACT(J, HAS_MIN, xq, xd, xs, nch, lane, xa, xb, dx, sx);                                 \
        int k = 0;                                                                                       \
        for (; r < n_rows; r += step) {                                                                  \
            asm volatile("cp.async.wait_group %0;\n" ::"n"(MVS_S - 1) : "memory"); /* row r is in */     \
            __syncwarp();                                                                                \
            float acc[MV_T];                                                                             \
            acc[0] = 0.0f;                                                                               \
            MV1_DOT(J, UNPACK, HAS_MIN, sm + k * st, lut, nch, lane, xa, xb, dx, sx, acc[0]);             \
            cu_mv_store(acc, lane, r, 1, y, 0, NULL);                                                    \
            __syncwarp(); /* every lane is done with buffer k: refill it */                              \
            int64_t rn = r + MVS_S * step;                                                               \
            if (rn < n_rows)                                                                             \
                for (int i = lane * vw; i < (int)row_bytes; i += 32 * vw)                                \
                    mq_cp(sm + k * st + i, w + (size_t)rn * row_bytes + i, vw);                          \
            asm volatile("cp.async.commit_group;\n" ::: "memory");                                       \
            k = k + 1 == MVS_S ? 0 : k + 1;                                                              \
        }                                                                                                \
        asm volatile("cp.async.wait_all;\n" ::: "memory");                                               \
    }

/* Persistent batch variant (2..8 tokens, HEARTH_CUDA_MVT): the streaming kernel's ring of
 * row buffers per warp with T tokens' activations held in registers, so a row's bytes serve
 * every token of the block with no activation traffic per row (the generic kernel reloads
 * 44 bytes of activations per chunk and token for 18-34 bytes of weights). kg = blocks per
 * row set: block b takes tokens T * (b % kg) .. and walks the rows with the other blocks of
 * its token group (b / kg), so the kg blocks of a row set read its weights once from DRAM and
 * kg - 1 times from L2. Rows of up to three weights (mv_multi, same row size) in one launch.
 * Per (token, row) the arithmetic of MV1_DOT and cu_mv_store (each lane's chunks in order,
 * the same warp sum): a sequence keeps its bits alone and in a batch.
 * Measured on an H200 (cuda_bench_model batch8, TinyLlama shapes, two rounds, the generic
 * kernel -> this one): Q4_0 2978-3008 -> 3024-3073 t/s, Q8_0 2949-2977 -> 3145-3168, but
 * Q4_K_M 2819-2829 -> 2755-2760 with it for Q4_K and Q6_K and 2709-2721 for Q6_K alone; so
 * by default (HEARTH_CUDA_MVT=2) only Q4_0 and Q8_0 rows take it. The folded norm, GLU and
 * activation-quantizing kernels around a batch's products stay separate kernels (the
 * one-token path fuses them), which is where most of a batch step's time above the weight
 * stream still goes. */
#define MVT_W 8 /* warps per block */
static __device__ __forceinline__ const uint8_t *mvt_row(const mv_multi *m, int64_t g, size_t rb) {
    if (g < m->s0.n_rows) return m->s0.w + (size_t)g * rb;
    g -= m->s0.n_rows;
    if (g < m->s1.n_rows) return m->s1.w + (size_t)g * rb;
    return m->s2.w + (size_t)(g - m->s1.n_rows) * rb;
}
#define MVT_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT, J, T)                                                 \
    static __global__ void __launch_bounds__(MVT_W * 32)                                                 \
        name(mv_multi mm, size_t st, int nch, int vw, const int8_t *xq, const float *xd, const int2 *xs, \
             int n_tok, int kg) {                                                                        \
        extern __shared__ __align__(16) uint8_t mvt_dyn[];                                               \
        __shared__ int8_t lut[16];                                                                       \
        if (HAS_LUT) {                                                                                   \
            if (threadIdx.x < 16) lut[threadIdx.x] = c_iq4_levels[threadIdx.x];                          \
            __syncthreads();                                                                             \
        }                                                                                                \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tg = (int)(blockIdx.x % (unsigned)kg);     \
        int64_t step = (int64_t)(gridDim.x / (unsigned)kg) * MVT_W;                                      \
        int64_t g = (int64_t)(blockIdx.x / (unsigned)kg) * MVT_W + warp;                                 \
        int64_t total = mm.s0.n_rows + (mm.n > 1 ? mm.s1.n_rows : 0) + (mm.n > 2 ? mm.s2.n_rows : 0);   \
        size_t rb = mm.s0.row_bytes;                                                                     \
        int t0 = tg * (T), ntl = n_tok - t0 < (T) ? n_tok - t0 : (T);                                    \
        uint8_t *sm = mvt_dyn + (size_t)warp * MVS_S * st;                                               \
        _Pragma("unroll") for (int k = 0; k < MVS_S; k++) { /* weights: before the PDL wait */           \
            int64_t gk = g + k * step;                                                                   \
            if (gk < total) {                                                                            \
                const uint8_t *src = mvt_row(&mm, gk, rb);                                               \
                for (int i = lane * vw; i < (int)rb; i += 32 * vw) mq_cp(sm + k * st + i, src + i, vw);  \
            }                                                                                            \
            asm volatile("cp.async.commit_group;\n" ::: "memory");                                       \
        }                                                                                                \
        cu_pdl_wait();                                                                                   \
        cu_pdl_trigger();                                                                                \
        int4 xa[T][J], xb[T][J];                                                                         \
        float dx[T][J];                                                                                  \
        int2 sx[T][J];                                                                                   \
        _Pragma("unroll") for (int tt = 0; tt < (T); tt++) {                                             \
            int t_ = t0 + tt < n_tok ? t0 + tt : t0; /* past the tokens: a copy, never used */           \
            MV1_LOAD_ACT(J, HAS_MIN, xq + (int64_t)t_ * nch * 32, xd + (int64_t)t_ * nch, xs + (int64_t)t_ * nch, \
                         nch, lane, xa[tt], xb[tt], dx[tt], sx[tt]);                                     \
        }                                                                                                \
        int k = 0;                                                                                       \
        for (; g < total; g += step) {                                                                   \
            asm volatile("cp.async.wait_group %0;\n" ::"n"(MVS_S - 1) : "memory"); /* row g is in */     \
            __syncwarp();                                                                                \
            float acc[MV_T];                                                                             \
            _Pragma("unroll") for (int t = 0; t < MV_T; t++) acc[t] = 0.0f;                              \
            _Pragma("unroll") for (int j_ = 0; j_ < (J); j_++) {                                         \
                int c_ = lane + 32 * j_;                                                                 \
                if (c_ < nch) {                                                                          \
                    int q_[8];                                                                           \
                    float a_[2], m_[2];                                                                  \
                    UNPACK(sm + k * st, c_, lut, q_, a_, m_);                                            \
                    _Pragma("unroll") for (int tt = 0; tt < (T); tt++)                                   \
                        if (tt < ntl) acc[tt] += dx[tt][j_] * mq_chunk_dot(q_, xa[tt][j_], xb[tt][j_], a_, m_, sx[tt][j_], HAS_MIN); \
                }                                                                                        \
            }                                                                                            \
            int64_t r = g;                                                                               \
            int seg = 0;                                                                                 \
            if (r >= mm.s0.n_rows) {                                                                     \
                r -= mm.s0.n_rows, seg = 1;                                                              \
                if (r >= mm.s1.n_rows) r -= mm.s1.n_rows, seg = 2;                                       \
            }                                                                                            \
            int64_t ldy = MV_SEG_FIELD(mm, seg, ldy);                                                    \
            float *y = MV_SEG_FIELD(mm, seg, y) + (int64_t)t0 * ldy, *add = MV_SEG_FIELD(mm, seg, add_to); \
            cu_mv_store_v<(T)>(acc, lane, r, ntl, y, ldy, add ? add + (int64_t)t0 * ldy : NULL);             \
            __syncwarp(); /* every lane is done with buffer k: refill it */                              \
            int64_t gn = g + MVS_S * step;                                                               \
            if (gn < total) {                                                                            \
                const uint8_t *src = mvt_row(&mm, gn, rb);                                               \
                for (int i = lane * vw; i < (int)rb; i += 32 * vw) mq_cp(sm + k * st + i, src + i, vw);  \
            }                                                                                            \
            asm volatile("cp.async.commit_group;\n" ::: "memory");                                       \
            k = k + 1 == MVS_S ? 0 : k + 1;                                                              \
        }                                                                                                \
        asm volatile("cp.async.wait_all;\n" ::: "memory");                                               \
    }

__constant__ int8_t c_iq4_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

MV_KERNEL(mv_q4_0, up_q4_0, 1, 0)
MV_KERNEL(mv_q4_1, up_q4_1, 1, 0)
MV_KERNEL(mv_q5_0, up_q5_0, 1, 0)
MV_KERNEL(mv_q5_1, up_q5_1, 1, 0)
MV_KERNEL(mv_q8_0, up_q8_0, 0, 0)
MV_KERNEL(mv_iq4_nl, up_iq4_nl, 0, 1)
MV_KERNEL(mv_q2_K, up_q2_K, 1, 0)
MV_KERNEL(mv_q3_K, up_q3_K, 0, 0)
MV_KERNEL(mv_q4_K, up_q4_K, 1, 0)
MV_KERNEL(mv_q5_K, up_q5_K, 1, 0)
MV_KERNEL(mv_q6_K, up_q6_Ku, 2, 0)
MV_KERNEL(mv_iq4_xs, up_iq4_xs, 0, 1)
MV1_KERNEL(mv1_q4_0, up_q4_0, 1, 0, 0)
MV1_KERNEL(mv1_q8_0, up_q8_0, 0, 0, 1)
MV1_KERNEL(mv1_q4_K, up_q4_K, 1, 0, 0)
MV1_KERNEL(mv1_q6_K, up_q6_Ku, 2, 0, 0)
MV1_KERNEL_J(mv1s_q4_0, up_q4_0, 1, 0, 2, 0)
MV1_KERNEL_J(mv1s_q8_0, up_q8_0, 0, 0, 2, 1)
MV1_KERNEL_J(mv1s_q4_K, up_q4_K, 1, 0, 2, 0)
MV1_KERNEL_J(mv1s_q6_K, up_q6_Ku, 2, 0, 2, 0)
MVS_KERNEL(mvs_q4_0, up_q4_0, 1, 0, 2)
MVS_KERNEL(mvs_q8_0, up_q8_0, 0, 0, 2)
MVS_KERNEL(mvs_q4_K, up_q4_K, 1, 0, 2)
MVS_KERNEL(mvs_q6_K, up_q6_Ku, 2, 0, 2)
MVS_KERNEL(mvs4_q4_0, up_q4_0, 1, 0, 4)
MVS_KERNEL(mvs4_q8_0, up_q8_0, 0, 0, 4)
MVS_KERNEL(mvs4_q4_K, up_q4_K, 1, 0, 4)
MVS_KERNEL(mvs4_q6_K, up_q6_Ku, 2, 0, 4)
MVT_KERNEL(mvt_q4_0, up_q4_0, 1, 0, 2, 4)
MVT_KERNEL(mvt_q8_0, up_q8_0, 0, 0, 2, 4)
MVT_KERNEL(mvt_q4_K, up_q4_K, 1, 0, 2, 4)
MVT_KERNEL(mvt_q6_K, up_q6_Ku, 2, 0, 2, 4)
MVT_KERNEL(mvt6_q4_0, up_q4_0, 1, 0, 6, 2)
MVT_KERNEL(mvt6_q8_0, up_q8_0, 0, 0, 6, 2)
MVT_KERNEL(mvt6_q4_K, up_q4_K, 1, 0, 6, 2)
MVT_KERNEL(mvt6_q6_K, up_q6_Ku, 2, 0, 6, 2)
MVT_KERNEL(mvt2s_q4_0, up_q4_0, 1, 0, 2, 2)
MVT_KERNEL(mvt2s_q8_0, up_q8_0, 0, 0, 2, 2)
MVT_KERNEL(mvt2s_q4_K, up_q4_K, 1, 0, 2, 2)
MVT_KERNEL(mvt2s_q6_K, up_q6_Ku, 2, 0, 2, 2)

typedef void (*mv_fn)(mv_multi, int, int, int, const int8_t *, const float *, const int2 *, int);
typedef void (*up_fn)(const uint8_t *, int, const int8_t *, int *, float *, float *);

/* Float weights (F32/F16/BF16) take f32 activations: cu_mvf.cu (cuda_mvf.h). */

/* ---- dequantization (embedding rows, f16 weights for the tensor-core path) --------------- */

/* Stores 32 values with 16-byte stores (rows are 32-element aligned in both layouts). */
static __device__ __forceinline__ void dq_store32(const float *v, void *dst, int half) {
    if (half) {
        uint4 *d = (uint4 *)dst;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            __half2 h0 = __floats2half2_rn(v[8 * k], v[8 * k + 1]), h1 = __floats2half2_rn(v[8 * k + 2], v[8 * k + 3]);
            __half2 h2 = __floats2half2_rn(v[8 * k + 4], v[8 * k + 5]), h3 = __floats2half2_rn(v[8 * k + 6], v[8 * k + 7]);
            uint4 u;
            u.x = *(uint32_t *)&h0, u.y = *(uint32_t *)&h1, u.z = *(uint32_t *)&h2, u.w = *(uint32_t *)&h3;
            d[k] = u;
        }
    } else {
        float4 *d = (float4 *)dst;
#pragma unroll
        for (int k = 0; k < 8; k++) d[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
    }
}

/* Dequantizes chunk (row ids[i] or i, chunk c) into out (f32) or out16 (f16, row length ld). */
#define DQ_KERNEL(name, UNPACK)                                                                           \
    static __global__ void name(const uint8_t *w, size_t row_bytes, int nch, const int32_t *ids,          \
                                int64_t n, float *out, __half *out16, int64_t ld) {                       \
        __shared__ int8_t lut[16];                                                                        \
        if (threadIdx.x < 16) lut[threadIdx.x] = c_iq4_levels[threadIdx.x];                               \
        __syncthreads();                                                                                  \
        int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;                                       \
        if (k >= n * nch) return;                                                                         \
        int64_t i = k / nch;                                                                              \
        int c = (int)(k % nch);                                                                           \
        int64_t src = ids ? ids[i] : i;                                                                   \
        int q[8];                                                                                         \
        float a[2], m[2];                                                                                 \
        UNPACK(w + (size_t)src * row_bytes, c, lut, q, a, m);                                             \
        float v[32];                                                                                      \
        _Pragma("unroll") for (int e = 0; e < 32; e++) {                                                  \
            int code = (int)(int8_t)((uint32_t)q[e >> 2] >> (8 * (e & 3)));                               \
            v[e] = a[e >> 4] * (float)code + m[e >> 4];                                                   \
        }                                                                                                 \
        dq_store32(v, out ? (void *)(out + i * ld + c * 32) : (void *)(out16 + i * ld + c * 32), !out);   \
    }


DQ_KERNEL(dq_q4_0, up_q4_0)
DQ_KERNEL(dq_q4_1, up_q4_1)
DQ_KERNEL(dq_q5_0, up_q5_0)
DQ_KERNEL(dq_q5_1, up_q5_1)
DQ_KERNEL(dq_q8_0, up_q8_0)
DQ_KERNEL(dq_iq4_nl, up_iq4_nl)
DQ_KERNEL(dq_q2_K, up_q2_K)
DQ_KERNEL(dq_q3_K, up_q3_K)
DQ_KERNEL(dq_q4_K, up_q4_K)
DQ_KERNEL(dq_q5_K, up_q5_K)
DQ_KERNEL(dq_q6_K, up_q6_K)
DQ_KERNEL(dq_iq4_xs, up_iq4_xs)

typedef void (*dq_fn)(const uint8_t *, size_t, int, const int32_t *, int64_t, float *, __half *, int64_t);

/* Float weights: element k of the output; columns n..ld-1 (padding) become 0. */
static __global__ void dq_float(uint32_t type, const uint8_t *w, size_t row_bytes, int64_t n, const int32_t *ids,
                                int64_t n_out, float *out, __half *out16, int64_t ld) {
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= n_out * ld) return;
    int64_t i = k / ld, e = k % ld;
    int64_t src = ids ? ids[i] : i;
    float v = e < n ? fw_load1(type, w + (size_t)src * row_bytes, e) : 0.0f;
    if (out) out[k] = v;
    else out16[k] = __float2half(v);
}

/* ---- dispatch --------------------------------------------------------------------------- */

typedef void (*mvt_fn)(mv_multi, size_t, int, int, const int8_t *, const float *, const int2 *, int, int);
typedef void (*mvs_fn)(const uint8_t *, size_t, size_t, int64_t, float *, int, int, const int8_t *, const float *,
                       const int2 *);

typedef struct mm_entry {
    uint32_t type;
    mv_fn mv;
    dq_fn dq;
    int has_min;
    mv_fn mv1;             /* single-token variant, or NULL */
    mv_fn mv1s;            /* the same for rows of <= 64 chunks (fewer registers), or NULL */
    mvs_fn mvs2, mvs4;     /* streaming single-token variants (rows of <= 2048 / 4096 values), or NULL */
    int bulk1;             /* mv1 / mv1s were built with BULK: they take vw == MQ_BULK */
    mvt_fn mvt2, mvt6;     /* persistent 2..8-token variants (rows of <= 2048 / 6144 values), or NULL */
    mvt_fn mvt2s;          /* the rows of <= 2048 values for 2 tokens (half the activation registers), or NULL */
} mm_entry;

static const mm_entry k_mm[] = {
    { QT_Q4_0, mv_q4_0, dq_q4_0, 1, mv1_q4_0, mv1s_q4_0, mvs_q4_0, mvs4_q4_0, 0, mvt_q4_0, mvt6_q4_0, mvt2s_q4_0 },
    { QT_Q4_1, mv_q4_1, dq_q4_1, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q5_0, mv_q5_0, dq_q5_0, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q5_1, mv_q5_1, dq_q5_1, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q8_0, mv_q8_0, dq_q8_0, 0, mv1_q8_0, mv1s_q8_0, mvs_q8_0, mvs4_q8_0, 1, mvt_q8_0, mvt6_q8_0, mvt2s_q8_0 },
    { QT_IQ4_NL, mv_iq4_nl, dq_iq4_nl, 0, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q2_K, mv_q2_K, dq_q2_K, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q3_K, mv_q3_K, dq_q3_K, 0, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q4_K, mv_q4_K, dq_q4_K, 1, mv1_q4_K, mv1s_q4_K, mvs_q4_K, mvs4_q4_K, 0, mvt_q4_K, mvt6_q4_K, mvt2s_q4_K },
    { QT_Q5_K, mv_q5_K, dq_q5_K, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
    { QT_Q6_K, mv_q6_K, dq_q6_K, 0, mv1_q6_K, mv1s_q6_K, mvs_q6_K, mvs4_q6_K, 0, mvt_q6_K, mvt6_q6_K, mvt2s_q6_K },
    { QT_IQ4_XS, mv_iq4_xs, dq_iq4_xs, 0, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL },
};

/* The kernel for a product of n_tok tokens over n_rows rows in all: the single-token variant
 * where it applies (one staging pass per row, at most MV1_J chunks per lane, copies of 4+
 * bytes, and not the large output matrix: 32000x2048 Q4_0 measured 21.4 us against 18.4 for
 * the generic kernel, whose lower register use keeps more warps per SM for a product that
 * is bandwidth-bound; HEARTH_CUDA_MV1=0 turns it off), else the generic one. */
#define MV1_MAX_ROWS 16384
/* The copy width a picked kernel is launched with: MQ_BULK for the single-token kernels
 * built with bulk staging (e->bulk1: Q8_0 only) on 16-byte aligned rows, else vw
 * (HEARTH_CUDA_MV1_TMA=0: never). Measured on an H200 (tg128, three interleaved rounds,
 * bulk for every type against none): Q8_0 1691-1697 against 1651-1656, Q4_0 1899-1904
 * against 1895-1901 (noise), Q4_K_M 1767-1768 against 1784-1788 (slower); on an H100,
 * Q8_0 only: 1474-1494 against 1428-1452. */
static int mv_launch_vw(const cuda_ctx *c, const mm_entry *e, mv_fn fn, int vw) {
    return c->knobs.mv1_tma && e->bulk1 && vw == 16 && fn && (fn == e->mv1 || fn == e->mv1s) ? MQ_BULK : vw;
}

/* The product kernel for these rows (HEARTH_CUDA_MV1=0: never the single-token ones;
 * HEARTH_CUDA_MV1S=0: not the two-chunk single-token instance, rows of <= 64 chunks then
 * take the six-chunk one with the same arithmetic). */
static mv_fn mv_pick(const cuda_ctx *c, const mm_entry *e, int64_t n_tok, int64_t n_rows, int nch, int segb, int vw,
                     size_t row_bytes) {
    if (c->knobs.mv1 && e->mv1 && n_tok == 1 && n_rows <= MV1_MAX_ROWS && vw >= 4 && nch <= 32 * MV1_J && segb > 0 &&
        (size_t)(MQ_STAGE / segb) * (size_t)segb >= row_bytes)
        return nch <= 64 && e->mv1s && c->knobs.mv1s ? e->mv1s : e->mv1;
    return e->mv;
}

/* The streaming single-token kernel (MVS_KERNEL) for a product of one token over more rows
 * than MV1_MAX_ROWS (the output matrix), or NULL. HEARTH_CUDA_MVS: 0 turns it off, 1-8
 * sets the blocks per SM (default 4: 32 warps, 96 rows in flight per SM). Measured alone on
 * an H200 (32000 x 2048, one token, with its activation quantization; generic -> 2 / 4 / 6
 * blocks per SM): Q6_K 28.7 -> 25.1 / 24.0 / 23.5 us, Q4_0 19.4 -> 13.2 / 12.3 / 13.7,
 * Q8_0 23.2 -> 20.1 / 20.0 / 20.3; Q6_K 21.4 with the funnel-shift decode (~2.5 TB/s: its
 * decode, not memory, bounds it). Inside a TinyLlama decode step it measured within noise
 * of the generic kernel, whose first rows are fetched before its PDL wait; it is kept for
 * larger output matrices, where the product's own time dominates. */
#define MVS_SMEM_MAX (112 * 1024)
static mvs_fn mvs_pick(const cuda_ctx *c, const mm_entry *e, int64_t n_tok, int64_t n_rows, int nch, int vw,
                       size_t row_bytes, const float *add_to, int *bps) {
    int per_sm = c->knobs.mvs;
    *bps = per_sm;
    if (!per_sm || n_tok != 1 || n_rows <= MV1_MAX_ROWS || add_to || vw < 4 || nch > 128 ||
        (size_t)MVS_W * MVS_S * ((row_bytes + 15) & ~(size_t)15) > MVS_SMEM_MAX)
        return NULL;
    return nch <= 64 ? e->mvs2 : e->mvs4;
}

/* c's record of the attributes it set on kernel fn (added when new; NULL when the table is
 * full: the attribute is then set again on every call, which is correct, only slower). */
static cu_fattr_rec *cu_fattr(cuda_ctx *c, const void *fn) {
    for (int i = 0; i < c->n_fattr; i++)
        if (c->fattr[i].fn == fn) return &c->fattr[i];
    if (c->n_fattr == CU_FATTR_MAX) return NULL;
    c->fattr[c->n_fattr].fn = fn;
    return &c->fattr[c->n_fattr++];
}

/* (gate/up of 4 tokens at 2048 columns asks for 48128 dynamic bytes, which failed to
 * launch before the attribute was raised; test_cuda_gu) */
int cu_smem_allow(cuda_ctx *c, const void *fn, size_t bytes, hb_err *err) {
    cu_fattr_rec *r = cu_fattr(c, fn);
    if (r && (size_t)r->smem >= bytes) return HEARTH_OK;
    /* the attribute is process-wide: never lower what another context allowed */
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, fn);
    if (e == cudaSuccess && (size_t)fa.maxDynamicSharedSizeBytes < bytes)
        e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) return cu_fail(err, e, "allowing shared memory");
    if (r) r->smem = (int)bytes;
    return HEARTH_OK;
}

int cu_occupancy(cuda_ctx *c, const void *fn, int thr, size_t smem) {
    cu_fattr_rec *r = cu_fattr(c, fn);
    if (r && r->occ_thr == thr && r->occ_smem == (int)smem) return r->occ;
    int nb = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, thr, smem) != cudaSuccess) {
        (void)cudaGetLastError();
        nb = 0;
    }
    if (r) r->occ_thr = thr, r->occ_smem = (int)smem, r->occ = nb;
    return nb;
}

/* Asks for the largest shared-memory carveout for a decode product kernel (once per kernel
 * and context). Measured on an H200 (tg128, three runs): +0.4-1.3% Q4_0, +2% Q4_K_M,
 * +0.5-1% Q8_0; the same preference on the gate/up and attention kernels measured nothing
 * more. */
void cu_carve(cuda_ctx *c, const void *fn) {
    cu_fattr_rec *r = cu_fattr(c, fn);
    if (r && r->carved) return;
    cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (r) r->carved = true;
}

static const mm_entry *mm_find(uint32_t type) {
    for (size_t i = 0; i < sizeof k_mm / sizeof k_mm[0]; i++)
        if (k_mm[i].type == type) return &k_mm[i];
    return NULL;
}

static int is_float_type(uint32_t t) {
    return t == QT_F32 || t == QT_F16 || t == QT_BF16;
}

extern "C" int cuda_type_supported(uint32_t type) {
    return is_float_type(type) || mm_find(type) != NULL;
}

static size_t align256(size_t x) {
    return (x + 255) & ~(size_t)255;
}

/* The activation scratch for n_tok rows of n values: codes, scales, half sums. */
static int act_buffers_in(cuda_ctx *c, cu_scratch *s, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs,
                          hb_err *err) {
    int rc;
    int64_t nch = n / 32;
    size_t b_q = align256((size_t)(n_tok * n)), b_d = align256((size_t)(n_tok * nch) * 4);
    size_t b_s = align256((size_t)(n_tok * nch) * 8);
    if ((rc = cu_scratch_reserve(s, b_q + b_d + b_s, err))) return rc;
    *xq = (int8_t *)s->p;
    *xd = (float *)((uint8_t *)s->p + b_q);
    *xs = (int2 *)((uint8_t *)s->p + b_q + b_d);
    return HEARTH_OK;
}

int cu_act_buffers(cuda_ctx *c, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs, hb_err *err) {
    return act_buffers_in(c, &c->act, n_tok, n, xq, xd, xs, err);
}

int cu_act_buffers2(cuda_ctx *c, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs, hb_err *err) {
    return act_buffers_in(c, &c->act2, n_tok, n, xq, xd, xs, err);
}

/* Quantizes x [n_tok][n] into the context's activation scratch; returns the three arrays.
 * reuse: 1 = the scratch already holds exactly this x (quantized by the previous op), 2 = the
 * second scratch (cu_act_buffers2) does. */
int cu_act_quantize(cuda_ctx *c, const float *x, int64_t n_tok, int64_t n, int reuse, int8_t **xq, float **xd,
                        int2 **xs, hb_err *err) {
    int rc;
    if (reuse == 2) return cu_act_buffers2(c, n_tok, n, xq, xd, xs, err);
    if ((rc = cu_act_buffers(c, n_tok, n, xq, xd, xs, err))) return rc;
    if (reuse) return HEARTH_OK;
    int64_t total = n_tok * (n / 32);
    CU_LAUNCH(err, "launching activation quantization", act_quant_kernel, cu_blocks(total * 32, 256), 256, 0,
              c, x, n, total, *xq, *xd, *xs);
    return cu_check_launch(err, "quantizing activations");
}

/* RMSNorm of n_rows rows (one block each) that also leaves the normalized rows quantized in
 * the activation scratch, for the matrix-vector products that read them next. */
#define RQ_J 8 /* chunks per warp held in registers */

/* RMSNorm of one row per block that also leaves the normalized row quantized in the
 * activation scratch. Warp w owns chunks w, w + nwarp, ...; rows of up to RQ_J chunks per
 * warp stay in registers (one read of x), longer rows are read twice. */
static __global__ void rmsnorm_q8_kernel(const float *x, int64_t xs, float *y, int64_t n, const float *w, float eps,
                                         int8_t *xq, float *xd, int2 *xsum) {
    __shared__ float part[32];
    const float *xr = x + blockIdx.x * xs;
    float *yr = y + blockIdx.x * n;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, nch = (int)(n / 32);
    bool in_regs = nch <= RQ_J * nw;
    float v[RQ_J], wv[RQ_J];
    float ss = 0.0f;
    if (in_regs) {
        /* the norm weights are model data no earlier kernel writes: fetched before the wait
         * for the kernel that writes x (PDL) */
#pragma unroll
        for (int j = 0; j < RQ_J; j++) {
            int ch = warp + j * nw;
            wv[j] = ch < nch && w ? w[ch * 32 + lane] : 1.0f;
        }
    }
    cu_pdl_wait();
    cu_pdl_trigger();
    if (in_regs) {
#pragma unroll
        for (int j = 0; j < RQ_J; j++) { /* all loads of x in flight at once */
            int ch = warp + j * nw;
            v[j] = ch < nch ? xr[ch * 32 + lane] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < RQ_J; j++) ss += v[j] * v[j];
    } else {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    }
    ss = cu_warp_sum(ss);
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float t = threadIdx.x < nw ? part[threadIdx.x] : 0.0f;
        t = cu_warp_sum(t);
        if (threadIdx.x == 0) part[0] = t;
    }
    __syncthreads();
    float k = rsqrtf(part[0] / (float)n + eps);
    if (in_regs) {
#pragma unroll
        for (int j = 0; j < RQ_J; j++) {
            int ch = warp + j * nw;
            if (ch >= nch) break;
            int64_t i = (int64_t)ch * 32 + lane;
            float o = v[j] * k * wv[j];
            yr[i] = o;
            rq_chunk(o, lane, (int64_t)blockIdx.x * nch + ch, xq, xd, xsum);
        }
    } else {
        for (int ch = warp; ch < nch; ch += nw) {
            int64_t i = (int64_t)ch * 32 + lane;
            float o = w ? xr[i] * k * w[i] : xr[i] * k;
            yr[i] = o;
            rq_chunk(o, lane, (int64_t)blockIdx.x * nch + ch, xq, xd, xsum);
        }
    }
}

/* The same result with several blocks per row (blockIdx.y = row, blockIdx.x = a group of
 * RM_W chunks, one warp each): every block sums the squares of the whole row itself (8 KB
 * for 2048 floats, from L2, all loads in flight), so no block waits for another and a row
 * costs one block reduction instead of a 512-thread block's two-level one.
 * Needs n % 4 == 0 and 16-byte aligned rows (checked by the caller); used at decode (up to
 * 8 rows: at prefill the repeated row reads would cost more than they save). */
#define RM_W 4
static __global__ void __launch_bounds__(RM_W * 32)
    rmsnorm_q8_mb_kernel(const float *x, int64_t xs, float *y, int64_t n, const float *w, float eps, int8_t *xq,
                         float *xd, int2 *xsum) {
    __shared__ float part[RM_W];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nch = (int)(n / 32);
    int ch = blockIdx.x * RM_W + warp;
    int64_t row = blockIdx.y;
    float wv = ch < nch && w ? w[ch * 32 + lane] : 1.0f; /* model data: before the PDL wait */
    cu_pdl_wait();
    cu_pdl_trigger();
    float ss = cu_warp_sum(cu_ss_part((const float4 *)(x + row * xs), n / 4, threadIdx.x)); /* RM_W * 32 == 128 */
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    float tot = 0.0f;
#pragma unroll
    for (int i = 0; i < RM_W; i++) tot += part[i];
    if (ch >= nch) return; /* after the barrier: every thread reached it */
    float k = rsqrtf(tot / (float)n + eps);
    int64_t i = (int64_t)ch * 32 + lane;
    float o = x[row * xs + i] * k * wv;
    y[row * n + i] = o;
    rq_chunk(o, lane, row * nch + ch, xq, xd, xsum);
}

/* GLU whose output (rows of n, contiguous) is also quantized for the next product: one
 * warp per 32-value chunk. */
static __global__ void glu_q8_kernel(int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                                     int64_t n_tok, int64_t n, int8_t *xq, float *xd, int2 *xsum) {
    cu_pdl_wait();
    cu_pdl_trigger();
    int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; /* chunk index over all tokens */
    int lane = threadIdx.x & 31;
    int64_t nch = n / 32;
    if (row >= n_tok * nch) return;
    int64_t t = row / nch, i = (row % nch) * 32 + lane;
    float g = gate[t * gs + i], u = up[t * us + i];
    float o = cu_glu_act(gelu, g) * u;
    out[t * n + i] = o;
    rq_chunk(o, lane, row, xq, xd, xsum);
}

extern "C" int cuda_glu_q8(cuda_ctx *c, int gelu, const float *gate, int64_t gs, const float *up, int64_t us,
                           float *out, int64_t n_tok, int64_t n, hb_err *err) {
    int rc;
    int8_t *xq;
    float *xd;
    int2 *xsum;
    if (n_tok * n <= 0) return HEARTH_OK;
    if (n % 32) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: fused glu needs rows of a multiple of 32");
    if ((rc = cu_act_buffers(c, n_tok, n, &xq, &xd, &xsum, err))) return rc;
    CU_LAUNCH(err, "launching glu", glu_q8_kernel, cu_blocks(n_tok * n, 256), 256, 0, c, gelu, gate, gs, up,
              us, out, n_tok, n, xq, xd, xsum);
    return cu_check_launch(err, "glu");
}

extern "C" int cuda_rmsnorm_q8(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t n_rows, int64_t n,
                               const float *w, float eps, hb_err *err) {
    int rc;
    int8_t *xq;
    float *xd;
    int2 *xsum;
    if (n_rows <= 0) return HEARTH_OK;
    if (n % 32) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: fused norm needs rows of a multiple of 32");
    if ((rc = cu_act_buffers(c, n_rows, n, &xq, &xd, &xsum, err))) return rc;
    /* several blocks per row: each re-reads the whole row for its sum of squares, so not in
     * place (another block may already have written its normalized chunk) */
    const float *y_end = y + n_rows * n, *x_end = x + (n_rows - 1) * xs + n;
    bool apart = y_end <= x || x_end <= y;
    /* the multi-block kernel (HEARTH_CUDA_NORM_MB=0: one block per row) */
    if (c->knobs.norm_mb && apart && n % 4 == 0 && xs % 4 == 0 && (uintptr_t)x % 16 == 0 && n_rows <= 8) {
        dim3 grid((unsigned)((n / 32 + RM_W - 1) / RM_W), (unsigned)n_rows);
        CU_LAUNCH(err, "launching rmsnorm", rmsnorm_q8_mb_kernel, grid, RM_W * 32, 0, c, x, xs, y, n, w, eps,
                  xq, xd, xsum);
        return cu_check_launch(err, "rmsnorm");
    }
    int thr = n >= 4096 ? 1024 : (n >= 2048 ? 512 : 128);
    CU_LAUNCH(err, "launching rmsnorm", rmsnorm_q8_kernel, (unsigned)n_rows, thr, 0, c, x, xs, y, n, w, eps,
              xq, xd, xsum);
    return cu_check_launch(err, "rmsnorm");
}

/* Copy width for staging rows of w (see mq_stage): the widest of 16/8/4/2 bytes that
 * divides the data address, the row size and the size of 32 chunks. */
static int mq_width(const cuda_weight *w, int seg_bytes) {
    uintptr_t a = (uintptr_t)w->data | (uintptr_t)w->row_bytes | (uintptr_t)seg_bytes;
    return a % 16 == 0 ? 16 : (a % 8 == 0 ? 8 : (a % 4 == 0 ? 4 : 2));
}

/* Bytes of 32 chunks of a row of w (a whole number of blocks for every type). */
static int mq_seg_bytes(const cuda_weight *w) {
    return (int)(w->row_bytes * 32 / (size_t)(w->n_cols / 32));
}

/* The persistent batch kernel (MVT_KERNEL) for 2..8 tokens over the rows of mm (all of one
 * row size), when the switch, the type and the shape allow it: rows of at most 64 chunks
 * (4 tokens a block) or 192 (2 tokens a block), copies of 4+ bytes, MVS_S rows a warp in
 * shared memory. *done = 1 when it ran. HEARTH_CUDA_MVT=0: never. */
static int mvt_try(cuda_ctx *c, const mm_entry *e, const mv_multi *mm, int64_t total, int nch, int vw,
                   const int8_t *xq, const float *xd, const int2 *xs, int64_t n_tok, int *done, hb_err *err) {
    int rc;
    size_t rb = mm->s0.row_bytes, st = (rb + 15) & ~(size_t)15, smem = (size_t)MVT_W * MVS_S * st;
    /* two tokens over rows of <= 64 chunks: the instance holding two tokens' activations
     * (HEARTH_CUDA_MVT_T2=0: the four-token one, half its registers idle) */
    bool t2 = nch <= 64 && n_tok <= 2 && e->mvt2s && c->knobs.mvt_t2;
    mvt_fn fn = t2 ? e->mvt2s : (nch <= 64 ? e->mvt2 : (nch <= 192 ? e->mvt6 : NULL));
    int T = nch <= 64 && !t2 ? 4 : 2;
    *done = 0;
    if (c->knobs.mvt) { /* the int8 tensor-core kernel first, where it applies (same bits) */
        const uint8_t *ws[3] = { mm->s0.w, mm->s1.w, mm->s2.w };
        int64_t nr[3] = { mm->s0.n_rows, mm->s1.n_rows, mm->s2.n_rows }, ld[3] = { mm->s0.ldy, mm->s1.ldy, mm->s2.ldy };
        float *ys[3] = { mm->s0.y, mm->s1.y, mm->s2.y }, *ads[3] = { mm->s0.add_to, mm->s1.add_to, mm->s2.add_to };
        if ((rc = cu_mmt_matvec(c, e->type, mm->n, ws, nr, rb, ys, ld, ads, nch, xq, xd, xs, n_tok, done, err)) || *done)
            return rc;
    }
    if (!c->knobs.mvt || (c->knobs.mvt == 2 && e->type != QT_Q4_0 && e->type != QT_Q8_0) || !fn || n_tok < 2 || n_tok > MV_T || vw < 4 || smem > 200 * 1024 || total <= 0) return HEARTH_OK;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    int nb = cu_occupancy(c, (const void *)fn, MVT_W * 32, smem);
    if (nb < 1) return HEARTH_OK;
    int kg = (int)((n_tok + T - 1) / T);
    int64_t sms = c->info.sm_count > 0 ? c->info.sm_count : 1, need = (total + MVT_W - 1) / MVT_W;
    int64_t sets = (int64_t)nb * sms / kg; /* row sets: kg blocks each */
    sets = sets < 1 ? 1 : (sets < need ? sets : need);
    CU_LAUNCH(err, "launching a batched matrix-vector product", fn, (unsigned)(sets * kg), MVT_W * 32, smem, c, *mm,
              st, nch, vw, xq, xd, xs, (int)n_tok, kg);
    c->n_mvt++;
    *done = 1;
    return cu_check_launch(err, "batched matrix-vector product");
}

static int matvec(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy,
                  const cuda_mm_opt *opt, hb_err *err) {
    int rc;
    unsigned grid = cu_blocks(w->n_rows, MQ_W);
    float *add_to = opt ? opt->add_to : NULL;
    if (is_float_type(w->type)) {
        cuda_mvf_call m;
        memset(&m, 0, sizeof m);
        m.n = 1, m.w[0] = w, m.y[0] = y, m.ldy[0] = ldy, m.add_to[0] = add_to;
        m.x = x, m.x_stride = w->n_cols, m.n_tok = n_tok, m.add_early = opt && opt->add_early;
        return cuda_mvf(c, &m, err);
    }
    const mm_entry *e = mm_find(w->type);
    if (!e) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no kernel for weight type %s", quant_type_name(w->type));
    int8_t *xq;
    float *xd;
    int2 *xs;
    if (!(opt && opt->reuse_act)) { /* small batch: the product's blocks quantize x themselves */
        int done = 0;
        float *ys1[1] = { y }, *adds1[1] = { add_to };
        int64_t ldys1[1] = { ldy };
        if ((rc = cu_pq_matmul(c, 1, &w, ys1, ldys1, adds1, x, w->n_cols, n_tok, NULL, 0.0f, NULL, &done, err)) || done)
            return rc;
    }
    if ((rc = cu_act_quantize(c, x, n_tok, w->n_cols, opt ? opt->reuse_act : 0, &xq, &xd, &xs, err))) return rc;
    int nch = (int)(w->n_cols / 32), segb = mq_seg_bytes(w), vw = mq_width(w, segb);
    if (segb <= 0 || segb > MQ_STAGE || w->row_bytes % (size_t)vw)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unexpected row layout for %s", quant_type_name(w->type));
    {
        mv_multi m1;
        int done = 0;
        memset(&m1, 0, sizeof m1);
        m1.n = 1;
        m1.s0 = (mv_seg){ (const uint8_t *)w->data, w->row_bytes, w->n_rows, y, ldy, add_to, 0 };
        if ((rc = mvt_try(c, e, &m1, w->n_rows, nch, vw, xq, xd, xs, n_tok, &done, err)) || done) return rc;
    }
    int bps;
    mvs_fn sfn = mvs_pick(c, e, n_tok, w->n_rows, nch, vw, w->row_bytes, add_to, &bps);
    if (sfn) {
        size_t st = (w->row_bytes + 15) & ~(size_t)15, smem = (size_t)MVS_W * MVS_S * st;
        int64_t need = (w->n_rows + MVS_W - 1) / MVS_W, want = (int64_t)bps * (c->info.sm_count > 0 ? c->info.sm_count : 1);
        unsigned sg = (unsigned)(need < want ? need : want);
        if ((rc = cu_smem_allow(c, (const void *)sfn, smem, err))) return rc;
        CU_LAUNCH_W(err, "launching a matrix-vector product", sfn, sg, MVS_W * 32, smem, c, 1, &w,
                  (const uint8_t *)w->data, w->row_bytes, st, w->n_rows, y, nch, vw, xq, xd, xs);
        return cu_check_launch(err, "matrix-vector product");
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += MV_T) {
        int nt = (int)(n_tok - t0 < MV_T ? n_tok - t0 : MV_T);
        mv_multi mm;
        memset(&mm, 0, sizeof mm);
        mm.n = 1;
        mm.s0 = (mv_seg){ (const uint8_t *)w->data, w->row_bytes, w->n_rows, y + t0 * ldy, ldy,
                          add_to ? add_to + t0 * ldy : NULL, grid };
        mm.early = opt && opt->add_early && n_tok == 1;
        mv_fn fn = mv_pick(c, e, nt, w->n_rows, nch, segb, vw, w->row_bytes);
        cu_carve(c, (const void *)fn);
        CU_LAUNCH_W(err, "launching a matrix-vector product", fn, grid, MQ_W * 32, 0, c, 1, &w, mm, nch, segb,
                    mv_launch_vw(c, e, fn, vw), xq + t0 * w->n_cols, xd + t0 * nch, xs + t0 * nch, nt);
    }
    return cu_check_launch(err, "matrix-vector product");
}

static int matmul_tc_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                           float *const *adds, const float *x, int64_t n_tok, int reuse_act, hb_err *err);

/* n (2..3) weights of the same type and row length over the same x: one launch per token
 * group (float weights: cu_mvf.cu; prefill batches: matmul_tc_multi). */
extern "C" int cuda_matmul_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys,
                                 const int64_t *ldys, float *const *adds, const float *x, int64_t n_tok, int reuse_act,
                                 hb_err *err) {
    int rc;
    const cuda_weight *w = ws[0];
    const mm_entry *e = mm_find(w->type);
    if (n >= 1 && n <= 3 && !cuda_matmul_is_mv(w, n_tok)) /* prefill: one tensor-core launch */
        return matmul_tc_multi(c, n, ws, ys, ldys, adds, x, n_tok, reuse_act, err);
    if (n < 1 || n > 3 || n_tok > MV_T) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: bad multi-matmul");
    if (is_float_type(w->type)) {
        cuda_mvf_call m;
        memset(&m, 0, sizeof m);
        m.n = n, m.x = x, m.x_stride = w->n_cols, m.n_tok = n_tok;
        for (int i = 0; i < n; i++) m.w[i] = ws[i], m.y[i] = ys[i], m.ldy[i] = ldys[i], m.add_to[i] = adds[i];
        return cuda_mvf(c, &m, err);
    }
    if (!e) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: bad multi-matmul");
    if (n == 1) { /* one weight (e.g. the output product after a separate norm): the single
                   * product's kernels, which add the one-token ones (mv1s, the streaming
                   * mvs for long outputs) with the same bits */
        cuda_mm_opt o = { reuse_act, adds[0], 0 };
        return matvec(c, w, x, n_tok, ys[0], ldys[0], &o, err);
    }
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xs = NULL;
    if (!reuse_act) { /* the product's blocks quantize x themselves */
        int done = 0;
        if ((rc = cu_pq_matmul(c, n, ws, ys, ldys, adds, x, w->n_cols, n_tok, NULL, 0.0f, NULL, &done, err)) || done)
            return rc;
    }
    if ((rc = cu_act_quantize(c, x, n_tok, w->n_cols, reuse_act, &xq, &xd, &xs, err))) return rc;
    int nch = (int)(w->n_cols / 32), segb = mq_seg_bytes(w), vw = 16;
    if (segb <= 0 || segb > MQ_STAGE) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unexpected row layout");
    mv_multi mm;
    mv_seg *seg[3] = { &mm.s0, &mm.s1, &mm.s2 };
    memset(&mm, 0, sizeof mm);
    mm.n = n;
    unsigned grid = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i]->type != w->type || ws[i]->n_cols != w->n_cols)
            return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: multi-matmul over different weights");
        unsigned b = cu_blocks(ws[i]->n_rows, MQ_W);
        int v = mq_width(ws[i], segb);
        vw = v < vw ? v : vw;
        *seg[i] = (mv_seg){ (const uint8_t *)ws[i]->data, ws[i]->row_bytes, ws[i]->n_rows, ys[i], ldys[i], adds[i], b };
        grid += b;
    }
    int64_t total = mm.s0.n_rows + mm.s1.n_rows + mm.s2.n_rows;
    int done = 0;
    if ((rc = mvt_try(c, e, &mm, total, nch, vw, xq, xd, xs, n_tok, &done, err)) || done) return rc;
    mv_fn fn = mv_pick(c, e, n_tok, (int64_t)grid * MQ_W, nch, segb, vw, w->row_bytes);
    cu_carve(c, (const void *)fn);
    CU_LAUNCH_W(err, "launching a matrix-vector product", fn, grid, MQ_W * 32, 0, c, n, ws, mm, nch, segb,
                mv_launch_vw(c, e, fn, vw), xq, xd, xs, (int)n_tok);
    return cu_check_launch(err, "matrix-vector product");
}

/* Dequantizes rows of w (ids_dev, or all rows when NULL) to f32 (out) or f16 (out16), rows
 * ld elements apart. */
static int dequant(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_dev, int64_t n, float *out, __half *out16,
                   int64_t ld, hb_err *err) {
    if (is_float_type(w->type)) {
        dq_float<<<cu_blocks(n * ld, 256), 256, 0, c->stream>>>(w->type, (const uint8_t *)w->data, w->row_bytes,
                                                                w->n_cols, ids_dev, n, out, out16, ld);
        return cu_check_launch(err, "dequantizing weights");
    }
    const mm_entry *e = mm_find(w->type);
    if (!e) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no kernel for weight type %s", quant_type_name(w->type));
    int nch = (int)(w->n_cols / 32);
    e->dq<<<cu_blocks(n * nch, 128), 128, 0, c->stream>>>((const uint8_t *)w->data, w->row_bytes, nch, ids_dev, n,
                                                          out, out16, ld);
    return cu_check_launch(err, "dequantizing weights");
}

extern "C" int cuda_get_rows(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_host, int64_t n, float *out,
                             hb_err *err) {
    int rc;
    if (n <= 0) return HEARTH_OK;
    if ((rc = cu_scratch_reserve(&c->ids, (size_t)n * sizeof(int32_t), err))) return rc;
    cudaError_t e = cudaMemcpyAsync(c->ids.p, ids_host, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess) return cu_fail(err, e, "uploading row ids");
    /* the ids come from pageable memory: the copy is complete when the call returns */
    return dequant(c, w, (const int32_t *)c->ids.p, n, out, NULL, w->n_cols, err);
}

extern "C" int cuda_get_rows_dev(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_dev, int64_t n, float *out,
                                 hb_err *err) {
    if (n <= 0) return HEARTH_OK;
    return dequant(c, w, ids_dev, n, out, NULL, w->n_cols, err);
}

/* Tensor-core path (cu_gemm.cu), 17+ tokens: quantized weights multiply the int8
 * activations of cu_act_quantize, F16/BF16 weights the f32 activations converted to f16 as
 * they are loaded; add_to is added in the epilogue. */
int cu_gemm_quant(cuda_ctx *c, const cuda_weight *w, const int8_t *xq, const float *xd, const int2 *xs, int64_t m,
                  float *y, int64_t ldy, float *add_to, hb_err *err);
int cu_gemm_quant_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                        float *const *adds, const int8_t *xq, const float *xd, const int2 *xs, int64_t m, hb_err *err);
int cu_gemm_float(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t m, float *y, int64_t ldy,
                  float *add_to, hb_err *err);
int cu_gemm_float_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                        float *const *adds, const float *x, int64_t m, hb_err *err);
/* cu_act_quantize's result (same arithmetic and layout) by a faster kernel for large batches. */
int cu_gemm_act_quantize(cuda_ctx *c, const float *x, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs,
                         hb_err *err);

static int matmul_tc(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy,
                     const cuda_mm_opt *opt, hb_err *err) {
    int rc;
    float *add_to = opt ? opt->add_to : NULL;
    if (is_float_type(w->type)) return cu_gemm_float(c, w, x, n_tok, y, ldy, add_to, err);
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xs = NULL;
    if (opt && opt->reuse_act) rc = cu_act_quantize(c, x, n_tok, w->n_cols, opt->reuse_act, &xq, &xd, &xs, err);
    else rc = cu_gemm_act_quantize(c, x, n_tok, w->n_cols, &xq, &xd, &xs, err);
    if (rc) return rc;
    return cu_gemm_quant(c, w, xq, xd, xs, n_tok, y, ldy, add_to, err);
}

/* n products over the same x at prefill (q/k/v, gate/up, merged by the recorder): quantized
 * weights quantize x once and run as one launch (the small k/v products alone fill a
 * fraction of the GPU); F16 weights convert x to f16 once and run as one launch too. */
static int matmul_tc_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                           float *const *adds, const float *x, int64_t n_tok, int reuse_act, hb_err *err) {
    int rc = HEARTH_OK;
    const cuda_weight *w = ws[0];
    if (is_float_type(w->type)) return cu_gemm_float_multi(c, n, ws, ys, ldys, adds, x, n_tok, err);
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xs = NULL;
    if (reuse_act) rc = cu_act_quantize(c, x, n_tok, w->n_cols, reuse_act, &xq, &xd, &xs, err);
    else rc = cu_gemm_act_quantize(c, x, n_tok, w->n_cols, &xq, &xd, &xs, err);
    if (rc) return rc;
    return cu_gemm_quant_multi(c, n, ws, ys, ldys, adds, xq, xd, xs, n_tok, err);
}

#define TC_MIN_TOKENS 17

/* Whether cuda_matmul takes the matrix-vector path (and so reads quantized activations). */
extern "C" int cuda_matmul_is_mv(const cuda_weight *w, int64_t n_tok) {
    return n_tok < TC_MIN_TOKENS || w->type == QT_F32;
}

extern "C" int cuda_matmul_ex(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy,
                              const cuda_mm_opt *opt, hb_err *err) {
    if (n_tok <= 0 || w->n_rows <= 0) return HEARTH_OK;
    if (!is_float_type(w->type) && w->n_cols % 32)
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: row length %lld is not a multiple of 32", (long long)w->n_cols);
    /* F32 weights stay on the f32 path: the tensor cores would round them to f16 */
    if (cuda_matmul_is_mv(w, n_tok)) return matvec(c, w, x, n_tok, y, ldy, opt, err);
    return matmul_tc(c, w, x, n_tok, y, ldy, opt, err);
}

extern "C" int cuda_matmul(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy,
                           hb_err *err) {
    return cuda_matmul_ex(c, w, x, n_tok, y, ldy, NULL, err);
}

extern "C" uint64_t cuda_mvt_launches(const cuda_ctx *c) {
    return c->n_mvt;
}

extern "C" uint64_t cuda_mmt_launches(const cuda_ctx *c) {
    return c->n_mmt;
}
