/* cu_mvf.cu — float-weight (F32/F16/BF16) matrix x vector products at decode (interface:
 * cuda_mvf.h): up to three weights per launch, residual add and GLU epilogues, an optional
 * RMSNorm prologue, and the standalone float RMSNorm with the prologue's arithmetic.
 *
 * A decode product reads every weight byte once and does ~1 FMA per byte, so it is bound by
 * the bytes in flight and by the latency around the stream (launch ramp, activation round
 * trips, reduction). These kernels were built and measured (docs/performance.md):
 *  - mvp4_kernel* (default since session 7): one block per two row pairs, warps over the
 *    columns, the first two 8-column groups of each of the four rows loaded before
 *    cu_pdl_wait, activations read from L1/L2 next to their weights (one load for four
 *    rows); an instance with one token's accumulators for decode of one sequence. Its EN
 *    instances (mvp4n_*) take a folded RMSNorm without a prologue: the dot products run over
 *    x times the norm weights, the block sums x's squares from the same loads in its
 *    reduction, and the sums are scaled by the norm factor (cuda_mvf_enorm_ok; session 12,
 *    F16 tg128 +1.5-2% on an H200: the norm kernel it removes was mostly hidden already).
 *  - mvp4s_kernel (cu_mvf_ps.cu; default for one token of 16-bit weights since session
 *    14): the mvp4 arithmetic in a persistent grid whose blocks keep two row groups in
 *    flight in a shared-memory ring (F16 tg128 +5-9%).
 *  - mvp4t_kernel (cu_mvf_ps.cu; default for 2..8 tokens of 16-bit weights since session
 *    19, HEARTH_CUDA_MVF_PB): the same grid and ring with the tokens' activations held in
 *    registers, so a group's weights serve every token with no activation traffic (the
 *    mvp4 instances re-read all tokens' x per four rows); batch of 8 F16 +27% on an H100.
 *  - mvp_kernel* (HEARTH_CUDA_MVF_RP=1): the same with one row pair per block.
 *  - mvf_kernel (HEARTH_CUDA_MVF_MODE=64): one 8-warp block per SM streams a contiguous row
 *    range through a ring of 32 KB shared-memory tiles filled by bulk asynchronous copies
 *    (cp.async.bulk + mbarrier) queued before the PDL wait; activations staged in shared
 *    memory. It moved ~1.0–1.6 TB/s only (16 KB–64 KB per tile wait), and two such blocks
 *    cannot share an SM, so consecutive products do not overlap.
 *  - mvr_kernel* (MODE=16): a warp per row pair holding 8 steps of both rows in registers;
 *    the per-step activation loads form a latency chain (the finding of the earlier
 *    one-warp-per-row attempt), staging them in shared memory costs a block barrier.
 * Arithmetic per token never depends on the number of tokens of the launch, so 8 sequences
 * decoded together equal each decoded alone. Shapes with rows that are not a multiple of 8
 * columns run a plain warp-per-row-pair kernel with the same epilogue.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_mvf.cuh"


/* ---- shared pieces ---------------------------------------------------------------------- */

static __device__ __forceinline__ void mvf_put(const mvf_args *A, int64_t g, int t, float v) {
    int64_t loc;
    int s = mvf_map(A, g, &loc);
    int64_t o = (int64_t)t * A->ldy[s] + loc;
    A->y[s][o] = v;
    if (A->add[s]) A->add[s][o] += v; /* fused residual add */
}

/* Sums acc over the warp and stores rows g0, g0+1 (those below r_end) of every token, and
 * the GLU of the pair when the launch has one. */
static __device__ __forceinline__ void mvf_emit(const mvf_args *A, int64_t g0, int64_t r_end, float acc[2][MVF_T],
                                                int lane) {
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        if (t < A->n_tok) {
            float s0 = cu_warp_sum(acc[0][t]), s1 = cu_warp_sum(acc[1][t]);
            if (lane == 0) {
                if (g0 < r_end) mvf_put(A, g0, t, s0);
                if (g0 + 1 < r_end) {
                    mvf_put(A, g0 + 1, t, s1);
                    if (A->glu) A->gout[(int64_t)t * A->gos + (g0 >> 1)] = cu_glu_act(A->glu == 2, s0) * s1;
                }
            }
        }
    }
}

/* Sum of squares of each of n_tok rows (n floats, xs apart) with the arithmetic of a block of
 * MVF_THREADS (smaller blocks run it in passes of virtual threads): virtual thread v sums
 * its elements in order — with vec (x 16-byte aligned, xs and n multiples of 4) the float4s
 * v, v + MVF_THREADS, ..., else the floats v, v + MVF_THREADS, ... — then a butterfly warp
 * sum, then the virtual warps in order. Per row the same bits for any n_tok and block size
 * (the folded norm and cuda_mvf_rmsnorm share it). All loads of a thread are independent
 * (one L2 round trip). xsm (or NULL): the rows are also copied there, n floats apart.
 * red: [MVF_WARPS * MVF_T] shared; every thread gets ss. */
static __device__ __forceinline__ void mvf_sumsq(const float *x, int64_t xs, int64_t n, int n_tok, int vec, float *red,
                                                 float ss[MVF_T], float *xsm) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        if (t >= n_tok) break; /* no warp sums for absent tokens (the one-token norm paid 8) */
        for (int v0 = 0; v0 < MVF_THREADS; v0 += blockDim.x) {
            float s = 0.0f;
            {
                const float *xr = x + t * xs;
                if (vec) {
                    const float4 *x4 = (const float4 *)xr;
#pragma unroll 4
                    for (int64_t q = v0 + threadIdx.x; q < n / 4; q += MVF_THREADS) {
                        float4 a = x4[q];
                        s = fmaf(a.x, a.x, s);
                        s = fmaf(a.y, a.y, s);
                        s = fmaf(a.z, a.z, s);
                        s = fmaf(a.w, a.w, s);
                        if (xsm) *(float4 *)(xsm + t * n + 4 * q) = a;
                    }
                } else {
#pragma unroll 4
                    for (int64_t i = v0 + threadIdx.x; i < n; i += MVF_THREADS) {
                        float a = xr[i];
                        s = fmaf(a, a, s);
                        if (xsm) xsm[t * n + i] = a;
                    }
                }
            }
            s = cu_warp_sum(s);
            if (lane == 0) red[((v0 >> 5) + warp) * MVF_T + t] = s;
        }
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        float s = 0.0f;
        if (t < n_tok)
            for (int w = 0; w < MVF_WARPS; w++) s += red[w * MVF_T + t];
        ss[t] = s;
    }
    __syncthreads(); /* red may be reused; xsm is complete */
}

/* ---- the streaming kernel --------------------------------------------------------------- */

/* Thread 0: queues tile i (row tile i / nct, column tile i % nct) of this block into ring
 * slot i % MVF_NS. */
static __device__ __forceinline__ void mvf_issue(const mvf_args *A, int64_t r_begin, int64_t r_end, int nct, int64_t i,
                                                 uint8_t *ring, uint64_t *full, uint64_t pol) {
    int s = (int)(i % A->ns), cti = (int)(i % nct);
    int64_t g0 = r_begin + (i / nct) * MVF_TR, c0 = (int64_t)cti * A->ct;
    int64_t c1 = c0 + A->ct < A->n ? c0 + A->ct : A->n;
    uint32_t bytes = (uint32_t)((c1 - c0) * A->esz);
    int nr = (int)(r_end - g0 < MVF_TR ? r_end - g0 : MVF_TR);
    cu_mbar_expect(&full[s], bytes * (uint32_t)nr);
    uint8_t *dst = ring + (size_t)s * MVF_TILE;
    for (int j = 0; j < nr; j++) {
        int64_t loc;
        int seg = mvf_map(A, g0 + j, &loc);
        cu_bulk_g2s(dst + (size_t)j * A->ct * A->esz, A->w[seg] + (size_t)loc * A->row_bytes + (size_t)c0 * A->esz, bytes,
                 &full[s], pol);
    }
}

/* Every thread: its 16-byte pieces of tile i by cp.async, then an arrive on the tile's
 * barrier when they have landed (the barrier then counts MVF_THREADS arrivals). */
static __device__ __forceinline__ void mvf_issue_all(const mvf_args *A, int64_t r_begin, int64_t r_end, int nct,
                                                     int64_t i, uint8_t *ring, uint64_t *full) {
    int s = (int)(i % A->ns), cti = (int)(i % nct);
    int64_t g0 = r_begin + (i / nct) * MVF_TR, c0 = (int64_t)cti * A->ct;
    int64_t c1 = c0 + A->ct < A->n ? c0 + A->ct : A->n;
    int per = (int)((c1 - c0) * A->esz / 16);
    int nr = (int)(r_end - g0 < MVF_TR ? r_end - g0 : MVF_TR);
    uint8_t *dst = ring + (size_t)s * MVF_TILE;
    for (int p = threadIdx.x; p < nr * per; p += MVF_THREADS) {
        int j = p / per, o = (p - j * per) * 16;
        int64_t loc;
        int seg = mvf_map(A, g0 + j, &loc);
        const uint8_t *src = A->w[seg] + (size_t)loc * A->row_bytes + (size_t)c0 * A->esz + o;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(cu_smem_addr(dst + (size_t)j * A->ct * A->esz + o)),
                     "l"(src)
                     : "memory");
    }
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(cu_smem_addr(&full[s])) : "memory");
}

/* Stages the activations of all tokens into xsm (one L2 round trip), normalized when the
 * launch folds the norm (block 0 then also writes them to ny). */
static __device__ __forceinline__ void mvf_stage_x(const mvf_args *A, float *xsm, float *red) {
    float k[MVF_T];
    mvf_sumsq(A->x, A->xs, A->n, A->n_tok, A->xv, red, k, xsm);
    if (!A->norm) return;
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        if (t >= A->n_tok) break;
        float kt = mvf_rms_scale(k[t], A->n, A->eps);
        for (int64_t i = threadIdx.x; i < A->n; i += blockDim.x) {
            float v = mvf_normed(xsm[t * A->n + i], kt, A->nw, i);
            xsm[t * A->n + i] = v;
            if (A->ny && blockIdx.x == 0) A->ny[t * A->nys + i] = v;
        }
    }
    __syncthreads();
}

static __global__ void __launch_bounds__(MVF_THREADS, 1) mvf_kernel(const __grid_constant__ mvf_args A) {
    extern __shared__ __align__(128) uint8_t mvf_sm[];
    __shared__ __align__(8) uint64_t full[MVF_NS];
    __shared__ float red[MVF_WARPS * MVF_T];
    uint8_t *ring = mvf_sm;
    float *xsm = (float *)(mvf_sm + (size_t)A.ns * MVF_TILE);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* this block's rows: a contiguous range, cut at even rows (GLU pairs) */
    int64_t npairs = (A.rows + 1) / 2;
    int64_t r_begin = 2 * (npairs * blockIdx.x / gridDim.x);
    int64_t r_end = 2 * (npairs * (blockIdx.x + 1) / gridDim.x);
    if (r_end > A.rows) r_end = A.rows;
    int nct = (int)((A.n + A.ct - 1) / A.ct);
    int64_t ntiles = (r_end - r_begin + MVF_TR - 1) / MVF_TR * nct;
    uint64_t pol = 0;
    int cpy = A.mode & 3;
    if (threadIdx.x == 0) {
        for (int s = 0; s < A.ns; s++) cu_mbar_init(&full[s], cpy == 2 ? MVF_THREADS : 1);
        cu_mbar_init_fence();
        pol = cu_l2_policy(cpy == 0);
        if (cpy != 2)
            for (int64_t i = 0; i < A.ns && i < ntiles; i++) mvf_issue(&A, r_begin, r_end, nct, i, ring, full, pol);
    }
    __syncthreads();
    if (cpy == 2)
        for (int64_t i = 0; i < A.ns && i < ntiles; i++) mvf_issue_all(&A, r_begin, r_end, nct, i, ring, full);
    cu_pdl_wait(); /* weights in flight; the activations are ready from here on */
    cu_pdl_trigger();
    const float *xb = A.x;
    int64_t xstr = A.xs;
    if (A.x_smem) {
        mvf_stage_x(&A, xsm, red);
        xb = xsm, xstr = A.n;
    }
    float acc[2][MVF_T];
#pragma unroll
    for (int t = 0; t < MVF_T; t++) acc[0][t] = acc[1][t] = 0.0f;
    const int rstride = A.ct * A.esz, cbytes = 8 * A.esz;
    for (int64_t i = 0; i < ntiles; i++) {
        int s = (int)(i % A.ns), cti = (int)(i % nct);
        int64_t g0 = r_begin + (i / nct) * MVF_TR + 2 * warp, c0 = (int64_t)cti * A.ct;
        int64_t c1 = c0 + A.ct < A.n ? c0 + A.ct : A.n;
        if (A.mode & 8) { /* one thread polls the barrier, the block waits at bar.sync */
            if (threadIdx.x == 0) cu_mbar_wait(&full[s], (uint32_t)((i / A.ns) & 1));
            __syncthreads();
        } else {
            cu_mbar_wait(&full[s], (uint32_t)((i / A.ns) & 1));
        }
        if (g0 < r_end && !(A.mode & 4)) {
            const uint8_t *p0 = ring + (size_t)s * MVF_TILE + (size_t)(2 * warp) * rstride;
            const uint8_t *p1 = p0 + rstride;
            bool has1 = g0 + 1 < r_end;
            int nch = (int)((c1 - c0) / 8);
            for (int k = lane; k < nch; k += 32) {
                float w0[8], w1[8];
                mvf_w8(A.type, p0 + (size_t)k * cbytes, w0);
                if (has1) mvf_w8(A.type, p1 + (size_t)k * cbytes, w1);
                else
#pragma unroll
                    for (int e = 0; e < 8; e++) w1[e] = 0.0f;
                const float *xp = xb + c0 + 8 * k;
#pragma unroll
                for (int t = 0; t < MVF_T; t++) {
                    if (t < A.n_tok) {
                        const float4 *x4 = (const float4 *)(xp + t * xstr);
                        float4 xa = x4[0], xc = x4[1];
                        acc[0][t] = mvf_dot8(w0, xa, xc, acc[0][t]);
                        acc[1][t] = mvf_dot8(w1, xa, xc, acc[1][t]);
                    }
                }
            }
        }
        if (cti == nct - 1) { /* the rows are complete */
            mvf_emit(&A, g0, r_end, acc, lane);
#pragma unroll
            for (int t = 0; t < MVF_T; t++) acc[0][t] = acc[1][t] = 0.0f;
        }
        __syncthreads(); /* every warp is done with slot s */
        if (cpy == 2 && i + A.ns < ntiles) {
            mvf_issue_all(&A, r_begin, r_end, nct, i + A.ns, ring, full);
        } else if (threadIdx.x == 0 && i + A.ns < ntiles) {
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            mvf_issue(&A, r_begin, r_end, nct, i + A.ns, ring, full, pol);
        }
    }
}

/* ---- register streaming variant -------------------------------------------------------
 * One warp per row pair, MVR_WARPS pairs per block, many blocks per SM; a lane keeps MVR_U
 * steps (a step: 32 consecutive 8-column chunks of a row, one per lane) of both rows in
 * registers, the first MVR_U loaded before the PDL wait (a whole 2048-column f16 row pair),
 * the next ones as each is consumed. Lane l still sums chunks l, l+32, ... in order, so the
 * results are the bits of mvf_kernel. */
#define MVR_WARPS 4
#define MVR_U 8

static __device__ __forceinline__ void mvr_ld(const uint8_t *row, int64_t k, int nch, uint4 *q, int is32) {
    if (row && k < nch) {
        const uint4 *p = (const uint4 *)(row + k * (is32 ? 32 : 16));
        q[0] = __ldcs(p);
        if (is32) q[is32] = __ldcs(p + 1);
    } else {
        q[0] = make_uint4(0, 0, 0, 0);
        if (is32) q[is32] = make_uint4(0, 0, 0, 0);
    }
}

#define MVR_KERNEL(name, IS32)                                                                            \
    static __global__ void __launch_bounds__(MVR_WARPS * 32) name(const __grid_constant__ mvf_args A) {   \
        extern __shared__ __align__(16) uint8_t mvr_sm[];                                                 \
        __shared__ float red[MVF_WARPS * MVF_T];                                                          \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;                                             \
        int64_t g0 = 2 * ((int64_t)blockIdx.x * MVR_WARPS + warp), loc;                                   \
        const uint8_t *r0 = NULL, *r1 = NULL;                                                             \
        if (g0 < A.rows) r0 = A.w[mvf_map(&A, g0, &loc)] + (size_t)loc * A.row_bytes;                     \
        if (g0 + 1 < A.rows) r1 = A.w[mvf_map(&A, g0 + 1, &loc)] + (size_t)loc * A.row_bytes;             \
        int nch = (int)(A.n / 8), nst = (nch + 31) / 32;                                                  \
        uint4 b0[MVR_U][IS32 + 1], b1[MVR_U][IS32 + 1];                                                   \
        _Pragma("unroll") for (int u = 0; u < MVR_U; u++) {                                               \
            mvr_ld(r0, u * 32 + lane, nch, b0[u], IS32);                                                  \
            mvr_ld(r1, u * 32 + lane, nch, b1[u], IS32);                                                  \
        }                                                                                                 \
        cu_pdl_wait(); /* weights in flight; the activations are ready from here on */                   \
        cu_pdl_trigger();                                                                                 \
        const float *xb = A.x;                                                                            \
        int64_t xstr = A.xs;                                                                              \
        if (A.x_smem) {                                                                                   \
            mvf_stage_x(&A, (float *)mvr_sm, red);                                                        \
            xb = (const float *)mvr_sm, xstr = A.n;                                                       \
        }                                                                                                 \
        float acc[2][MVF_T];                                                                              \
        _Pragma("unroll") for (int t = 0; t < MVF_T; t++) acc[0][t] = acc[1][t] = 0.0f;                 \
        for (int s0 = 0; s0 < nst; s0 += MVR_U) {                                                         \
            _Pragma("unroll") for (int u = 0; u < MVR_U; u++) {                                           \
                int st = s0 + u, k = st * 32 + lane;                                                      \
                if (st >= nst) break;                                                                     \
                float w0[8], w1[8];                                                                       \
                mvf_w8(A.type, (const uint8_t *)b0[u], w0);                                               \
                mvf_w8(A.type, (const uint8_t *)b1[u], w1);                                               \
                if (st + MVR_U < nst) {                                                                   \
                    mvr_ld(r0, k + 32 * MVR_U, nch, b0[u], IS32);                                         \
                    mvr_ld(r1, k + 32 * MVR_U, nch, b1[u], IS32);                                         \
                }                                                                                         \
                if (k < nch) {                                                                            \
                    const float *xp = xb + 8 * (int64_t)k;                                                \
                    _Pragma("unroll") for (int t = 0; t < MVF_T; t++) {                                   \
                        if (t < A.n_tok) {                                                                \
                            const float4 *x4 = (const float4 *)(xp + t * xstr);                           \
                            float4 xa = x4[0], xc = x4[1];                                                \
                            acc[0][t] = mvf_dot8(w0, xa, xc, acc[0][t]);                                  \
                            acc[1][t] = mvf_dot8(w1, xa, xc, acc[1][t]);                                  \
                        }                                                                                 \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        mvf_emit(&A, g0, A.rows, acc, lane);                                                              \
    }

MVR_KERNEL(mvr_kernel16, 0)
MVR_KERNEL(mvr_kernel32, 1)

/* ---- row-pair kernel (the default) -----------------------------------------------------
 * One block per row pair (gate i / up i for the GLU), its warps spread over the columns:
 * thread i takes the 8-column groups i, i + blockDim, ... (the first two of both rows
 * loaded before the PDL wait), activations read straight from global memory (L1/L2), then
 * a block reduction in warp order. Many short blocks per SM keep the most loads in flight
 * and no block waits on staging; measured the fastest of the variants here (see
 * docs/performance.md). The bits differ from mvf_kernel's, but not with n_tok. */
static __device__ __forceinline__ void mvp_group(uint32_t type, const uint4 *qa, const uint4 *qb, const float *xp,
                                                 int64_t xstr, int n_tok, float acc[2][MVF_T]) {
    float w0[8], w1[8];
    mvf_w8(type, (const uint8_t *)qa, w0);
    mvf_w8(type, (const uint8_t *)qb, w1);
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        if (t < n_tok) {
            const float4 *x4 = (const float4 *)(xp + t * xstr);
            float4 xa = x4[0], xc = x4[1];
            acc[0][t] = mvf_dot8(w0, xa, xc, acc[0][t]);
            acc[1][t] = mvf_dot8(w1, xa, xc, acc[1][t]);
        }
    }
}

#define MVP_KERNEL(name, IS32)                                                                            \
    static __global__ void __launch_bounds__(MVF_THREADS) name(const __grid_constant__ mvf_args A) {      \
        __shared__ float red[2 * MVF_T * MVF_WARPS];                                                      \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;                       \
        int64_t g0 = 2 * (int64_t)blockIdx.x, loc;                                                        \
        const uint8_t *r0 = A.w[mvf_map(&A, g0, &loc)] + (size_t)loc * A.row_bytes, *r1 = NULL;           \
        if (g0 + 1 < A.rows) r1 = A.w[mvf_map(&A, g0 + 1, &loc)] + (size_t)loc * A.row_bytes;             \
        int ng = (int)(A.n / 8), bd = blockDim.x;                                                         \
        uint4 a0[IS32 + 1], b0[IS32 + 1], a1[IS32 + 1], b1[IS32 + 1];                                     \
        mvr_ld(r0, threadIdx.x, ng, a0, IS32);                                                            \
        mvr_ld(r1, threadIdx.x, ng, b0, IS32);                                                            \
        mvr_ld(r0, threadIdx.x + bd, ng, a1, IS32);                                                       \
        mvr_ld(r1, threadIdx.x + bd, ng, b1, IS32);                                                       \
        cu_pdl_wait(); /* weights in flight; the activations are ready from here on */                   \
        cu_pdl_trigger();                                                                                 \
        float acc[2][MVF_T];                                                                              \
        _Pragma("unroll") for (int t = 0; t < MVF_T; t++) acc[0][t] = acc[1][t] = 0.0f;                 \
        int g = threadIdx.x;                                                                              \
        if (g < ng) mvp_group(A.type, a0, b0, A.x + 8 * (int64_t)g, A.xs, A.n_tok, acc);                  \
        g += bd;                                                                                          \
        if (g < ng) mvp_group(A.type, a1, b1, A.x + 8 * (int64_t)g, A.xs, A.n_tok, acc);                  \
        for (g += bd; g < ng; g += bd) {                                                                  \
            mvr_ld(r0, g, ng, a0, IS32);                                                                  \
            mvr_ld(r1, g, ng, b0, IS32);                                                                  \
            mvp_group(A.type, a0, b0, A.x + 8 * (int64_t)g, A.xs, A.n_tok, acc);                          \
        }                                                                                                 \
        _Pragma("unroll") for (int t = 0; t < MVF_T; t++) {                                               \
            float s0 = cu_warp_sum(acc[0][t]), s1 = cu_warp_sum(acc[1][t]);                               \
            if (lane == 0) red[t * MVF_WARPS + warp] = s0, red[(MVF_T + t) * MVF_WARPS + warp] = s1;      \
        }                                                                                                 \
        __syncthreads();                                                                                  \
        int t = threadIdx.x;                                                                              \
        if (t < A.n_tok) {                                                                                \
            float s0 = 0.0f, s1 = 0.0f;                                                                   \
            for (int w = 0; w < nw; w++) s0 += red[t * MVF_WARPS + w], s1 += red[(MVF_T + t) * MVF_WARPS + w]; \
            mvf_put(&A, g0, t, s0);                                                                       \
            if (r1) {                                                                                     \
                mvf_put(&A, g0 + 1, t, s1);                                                               \
                if (A.glu) A.gout[(int64_t)t * A.gos + (g0 >> 1)] = cu_glu_act(A.glu == 2, s0) * s1;              \
            }                                                                                             \
        }                                                                                                 \
    }

MVP_KERNEL(mvp_kernel16, 0)
MVP_KERNEL(mvp_kernel32, 1)

/* ---- four-row kernel (the default for 1..8 tokens) -------------------------------------
 * The row-pair kernel's scheme with two row pairs per block (rows 4b..4b+3 of the row space,
 * so a GLU launch still pairs gate i with up i): the first two 8-column groups of all four
 * rows in flight before the PDL wait, each activation load serving four rows, and half as
 * many blocks to schedule and reduce. Measured in a TinyLlama-shaped F16 chain (q/k/v, o,
 * gate/up, down x 22 layers with PDL, H200): 25.3 us per layer against 28.9 for the
 * row-pair kernel (HEARTH_CUDA_MVF_RP=1 selects that one). Per row the arithmetic does not
 * depend on n_tok (thread i sums groups i, i + blockDim, ... then the warps in order). */
/* EN launches, after the block's reduction: the normalized rows into A->ny (x * k * w, the
 * standalone norm's arithmetic, with this kernel's sum of squares) for any later reader of
 * the norm's output, one column per thread of the first n / blockDim blocks (block 0 alone
 * writing all of them made every folded product ~5 us longer on an H200). red holds the
 * warps' sums of squares at [4 * MVF_T + t][warp]. */
static __device__ __forceinline__ void mvp4_norm_out(const mvf_args *A, const float *red, int nw) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= A->n) return;
    for (int t = 0; t < A->n_tok; t++) {
        float s = 0.0f;
        for (int w = 0; w < nw; w++) s += red[(4 * MVF_T + t) * MVF_WARPS + w];
        A->ny[t * A->nys + i] = mvf_normed(A->x[t * A->xs + i], mvf_rms_scale(s, A->n, A->eps), A->nw, i);
    }
}

/* q: [row * J + group][S] 16-byte pieces (S = 2 for f32 rows). */
template <int NT, int S, int EN, int J>
static __device__ __forceinline__ void mvp4_group(uint32_t type, const uint4 *q, int j, const float *xp,
                                                  int64_t xstr, int n_tok, float acc[4][NT], const float *gp,
                                                  float ss[NT]) {
    float w[4][8];
#pragma unroll
    for (int k = 0; k < 4; k++) mvf_w8(type, (const uint8_t *)(q + (k * J + j) * S), w[k]);
    float4 ga = make_float4(1.0f, 1.0f, 1.0f, 1.0f), gc = ga;
    if (EN && gp) ga = ((const float4 *)gp)[0], gc = ((const float4 *)gp)[1];
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (t < n_tok) {
            const float4 *x4 = (const float4 *)(xp + t * xstr);
            float4 xa = x4[0], xc = x4[1];
            if (EN) { /* the norm's sum of squares, then x times the norm weights */
                ss[t] = mvf_dot8_sq(xa, xc, ss[t]);
                xa.x *= ga.x, xa.y *= ga.y, xa.z *= ga.z, xa.w *= ga.w;
                xc.x *= gc.x, xc.y *= gc.y, xc.z *= gc.z, xc.w *= gc.w;
            }
#pragma unroll
            for (int k = 0; k < 4; k++) acc[k][t] = mvf_dot8(w[k], xa, xc, acc[k][t]);
        }
    }
}

/* The warp sums of mvp4's four rows for each token (and with EN each token's sum of
 * squares) into red[(k * MVF_T + t) * MVF_WARPS + warp] (squares: k = 4). The 8-token
 * instances sum all 32 (row, token) values in one reduction (ps_tsum: cu_warp_sum's
 * pairings, so the same bits as the separate sums of the one-token instance; 31 shuffles
 * instead of 160, 9 for the squares instead of 40). */
template <int NT, int EN>
static __device__ __forceinline__ void mvp4_wsums(const float (*acc)[NT], const float *ss, int n_tok, int lane,
                                                  int warp, float *red) {
    if (NT == MVF_T) {
        float v[4 * NT], u[NT];
#pragma unroll
        for (int i = 0; i < 4 * NT; i++) v[i] = acc[i / NT][i % NT];
        float s = ps_tsum<4 * NT>(v, lane); /* lane l: row l / NT, token l % NT */
        if (lane % NT < n_tok) red[((lane / NT) * MVF_T + lane % NT) * MVF_WARPS + warp] = s;
        if (EN) {
#pragma unroll
            for (int t = 0; t < NT; t++) u[t] = ss[t];
            float q = ps_tsum<NT>(u, lane); /* lane l: token l / (32 / NT) */
            int t = lane / (32 / NT);
            if (lane % (32 / NT) == 0 && t < n_tok) red[(4 * MVF_T + t) * MVF_WARPS + warp] = q;
        }
    } else {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n_tok) {
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    float v = cu_warp_sum(acc[k][t]);
                    if (lane == 0) red[(k * MVF_T + t) * MVF_WARPS + warp] = v;
                }
                if (EN) {
                    float v = cu_warp_sum(ss[t]);
                    if (lane == 0) red[(4 * MVF_T + t) * MVF_WARPS + warp] = v;
                }
            }
        }
    }
}

#define MVP4_KERNEL(name, IS32, NT, EN) MVP4_KERNEL_B(name, IS32, NT, EN, 1, 2)
/* J: 8-column groups of each row per thread loaded before the PDL wait (2 or 3) */
#define MVP4_KERNEL_B(name, IS32, NT, EN, MINB, J)                                                             \
    static __global__ void __launch_bounds__(MVF_THREADS, MINB) name(const __grid_constant__ mvf_args A) { \
        __shared__ float red[(4 + (EN)) * MVF_T * MVF_WARPS];                                             \
        CU_TR_ENTRY();                                                                                    \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;                       \
        int64_t g0 = 4 * (int64_t)blockIdx.x, loc;                                                        \
        const uint8_t *r[4];                                                                              \
        _Pragma("unroll") for (int k = 0; k < 4; k++)                                                     \
            r[k] = g0 + k < A.rows ? A.w[mvf_map(&A, g0 + k, &loc)] + (size_t)loc * A.row_bytes : NULL;   \
        int ng = (int)(A.n / 8), bd = blockDim.x;                                                         \
        uint4 q[4 * (J)][IS32 + 1]; /* [row * J + group] */                                               \
        _Pragma("unroll") for (int j = 0; j < (J); j++)                                                   \
            _Pragma("unroll") for (int k = 0; k < 4; k++) mvr_ld(r[k], threadIdx.x + j * bd, ng, q[k * (J) + j], IS32); \
        /* residuals read early (one token, A.early): thread k < 4 reads row k's, the row it          \
         * finishes below */                                                                          \
        float res = 0.0f;                                                                             \
        int k3_ = threadIdx.x & 3; /* the row this thread finishes (k below), r kept in registers */  \
        const uint8_t *rk = k3_ == 0 ? r[0] : (k3_ == 1 ? r[1] : (k3_ == 2 ? r[2] : r[3]));           \
        if (NT == 1 && A.early && threadIdx.x < 4 && rk) {                                            \
            int s_ = mvf_map(&A, g0 + threadIdx.x, &loc);                                             \
            if (A.add[s_]) res = __ldcg(A.add[s_] + loc);                                             \
        }                                                                                             \
        cu_pdl_wait_e(); /* weights in flight; the activations are ready from here on */                 \
        cu_pdl_trigger();                                                                                 \
        float acc[4][NT]; /* NT: most tokens of the instance (1: decode of one sequence) */             \
        float ss[NT];     /* EN: this thread's part of each token's sum of squares */                   \
        _Pragma("unroll") for (int t = 0; t < NT; t++) {                                                  \
            ss[t] = 0.0f;                                                                                 \
            _Pragma("unroll") for (int k = 0; k < 4; k++) acc[k][t] = 0.0f;                               \
        }                                                                                                 \
        _Pragma("unroll") for (int j = 0; j < (J); j++) {                                                 \
            int g = threadIdx.x + j * bd;                                                                 \
            if (g < ng)                                                                                   \
                mvp4_group<NT, IS32 + 1, EN, J>(A.type, &q[0][0], j, A.x + 8 * (int64_t)g, A.xs, A.n_tok, acc, \
                                             (EN) && A.nw ? A.nw + 8 * (int64_t)g : NULL, ss);               \
        }                                                                                                 \
        CU_TR_MARK(1);                                                                                    \
        for (int g = threadIdx.x + (J) * bd; g < ng; g += bd) {                                           \
            _Pragma("unroll") for (int k = 0; k < 4; k++) mvr_ld(r[k], g, ng, q[k * (J)], IS32);          \
            mvp4_group<NT, IS32 + 1, EN, J>(A.type, &q[0][0], 0, A.x + 8 * (int64_t)g, A.xs, A.n_tok, acc,     \
                                         (EN) && A.nw ? A.nw + 8 * (int64_t)g : NULL, ss);                   \
        }                                                                                                 \
        mvp4_wsums<NT, EN>(acc, ss, A.n_tok, lane, warp, red);                                            \
        CU_TR_MARK(2);                                                                                    \
        __syncthreads();                                                                                  \
        CU_TR_MARK(3);                                                                                    \
        if ((EN) && A.ny) mvp4_norm_out(&A, red, nw);                                                     \
        /* each (token, row) by its own thread of warp 0 (4 * NT <= 32): thread 4t + k finishes       \
         * row k of token t, summing the warps in order; a GLU launch's up row (k odd) takes          \
         * its gate row's sum from the thread before it */                                            \
        if (threadIdx.x < 32) {                                                                       \
            int t = threadIdx.x >> 2, k = threadIdx.x & 3;                                            \
            bool on = t < A.n_tok;                                                                    \
            float sum = 0.0f, kt = 1.0f;                                                              \
            if (on) {                                                                                 \
                if (EN) {                                                                             \
                    float s_ = 0.0f;                                                                  \
                    for (int w = 0; w < nw; w++) s_ += red[(4 * MVF_T + t) * MVF_WARPS + w];          \
                    kt = mvf_rms_scale(s_, A.n, A.eps);                                               \
                }                                                                                     \
                for (int w = 0; w < nw; w++) sum += red[(k * MVF_T + t) * MVF_WARPS + w];             \
                if (EN) sum *= kt;                                                                    \
                if (rk && NT == 1 && A.early) { /* the same sum with the residual read early */       \
                    int s_ = mvf_map(&A, g0 + k, &loc);                                               \
                    A.y[s_][loc] = sum;                                                               \
                    if (A.add[s_]) A.add[s_][loc] = res + sum;                                        \
                } else if (rk)                                                                        \
                    mvf_put(&A, g0 + k, t, sum);                                                      \
            }                                                                                         \
            float gate = __shfl_xor_sync(0xffffffffu, sum, 1);                                        \
            if (on && A.glu && (k & 1) && rk)                                                         \
                A.gout[(int64_t)t * A.gos + (g0 >> 1) + (k >> 1)] = cu_glu_act(A.glu == 2, gate) * sum;\
        }                                                                                             \
        CU_TR_MARK(4);                                                                                    \
        CU_TR_FLUSH();                                                                                    \
    }

MVP4_KERNEL(mvp4_kernel16, 0, MVF_T, 0)
MVP4_KERNEL(mvp4_kernel32, 1, MVF_T, 0)
MVP4_KERNEL(mvp4_kernel16_1, 0, 1, 0)
MVP4_KERNEL(mvp4_kernel32_1, 1, 1, 0)
MVP4_KERNEL(mvp4n_kernel16, 0, MVF_T, 1)
MVP4_KERNEL(mvp4n_kernel32, 1, MVF_T, 1)
/* The one-token norm instances are held to 85 registers (three 256-thread blocks per SM;
 * they spill ~50 bytes): unbounded they took 102 and F16 tg128 fell from 962 to 787-796 on
 * an H200, bounded it gains (911-917 against 894-904 on another H200; 64 registers: 662-666,
 * and the norm-less instance at 64 also lost: 838-841). */
MVP4_KERNEL_B(mvp4n_kernel16_1, 0, 1, 1, 3, 2)
MVP4_KERNEL_B(mvp4n_kernel32_1, 1, 1, 1, 3, 2)
/* Rows of 2 * 256 < n / 8 <= 3 * 256 column groups (a 5632-column down product): every group
 * loaded before the wait, in the order the J = 2 instances sum them (same bits) */
MVP4_KERNEL_B(mvp4_kernel16_1j3, 0, 1, 0, 1, 3)

/* ---- the plain kernel (any shape and alignment) ----------------------------------------- */

/* One warp per row pair of the row space (the pairing of mvf_kernel), lanes over columns. */
static __global__ void __launch_bounds__(MVF_THREADS) mvf_plain_kernel(const __grid_constant__ mvf_args A) {
    cu_pdl_wait();
    cu_pdl_trigger();
    int lane = threadIdx.x & 31;
    int64_t g0 = 2 * ((int64_t)blockIdx.x * MVF_WARPS + (threadIdx.x >> 5));
    if (g0 >= A.rows) return;
    const uint8_t *r0, *r1 = NULL;
    int64_t loc;
    int seg = mvf_map(&A, g0, &loc);
    r0 = A.w[seg] + (size_t)loc * A.row_bytes;
    if (g0 + 1 < A.rows) {
        seg = mvf_map(&A, g0 + 1, &loc);
        r1 = A.w[seg] + (size_t)loc * A.row_bytes;
    }
    float acc[2][MVF_T];
#pragma unroll
    for (int t = 0; t < MVF_T; t++) acc[0][t] = acc[1][t] = 0.0f;
    for (int64_t i = lane; i < A.n; i += 32) {
        float w0, w1 = 0.0f;
        if (A.type == QT_F32) {
            w0 = ((const float *)r0)[i];
            if (r1) w1 = ((const float *)r1)[i];
        } else {
            uint16_t h0 = ((const uint16_t *)r0)[i], h1 = r1 ? ((const uint16_t *)r1)[i] : 0;
            w0 = A.type == QT_F16 ? cu_f16(h0) : cu_bf16(h0);
            w1 = A.type == QT_F16 ? cu_f16(h1) : cu_bf16(h1);
        }
#pragma unroll
        for (int t = 0; t < MVF_T; t++) {
            if (t < A.n_tok) {
                float xv = A.x[t * A.xs + i];
                acc[0][t] = fmaf(w0, xv, acc[0][t]);
                acc[1][t] = fmaf(w1, xv, acc[1][t]);
            }
        }
    }
    mvf_emit(&A, g0, A.rows, acc, lane);
}

/* ---- standalone RMSNorm with the prologue's arithmetic ---------------------------------- */

/* blockIdx.y = row; block x writes columns [x * part, (x + 1) * part) (part = n when the
 * output overlaps the input, so that no block writes what another still reads). */
static __global__ void __launch_bounds__(MVF_THREADS) mvf_norm_kernel(const float *x, int64_t xs, float *y,
                                                                      int64_t ys, int64_t n, const float *w, float eps,
                                                                      int64_t part, int vec) {
    __shared__ float red[MVF_WARPS * MVF_T];
    int64_t b0 = (int64_t)blockIdx.x * part, e = b0 + part < n ? b0 + part : n;
    float wv[4]; /* the first norm weights of this thread: model data, fetched before the wait */
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t i = b0 + threadIdx.x + (int64_t)j * MVF_THREADS;
        wv[j] = w && i < e ? w[i] : 1.0f;
    }
    cu_pdl_wait();
    cu_pdl_trigger();
    const float *xr = x + (int64_t)blockIdx.y * xs;
    float ss[MVF_T];
    mvf_sumsq(xr, 0, n, 1, vec, red, ss, NULL);
    float k = mvf_rms_scale(ss[0], n, eps);
    int j = 0;
    for (int64_t i = b0 + threadIdx.x; i < e; i += MVF_THREADS, j++) /* mvf_normed's arithmetic */
        y[(int64_t)blockIdx.y * ys + i] = j < 4 ? (w ? xr[i] * k * wv[j] : xr[i] * k) : mvf_normed(xr[i], k, w, i);
}

/* ---- host side -------------------------------------------------------------------------- */

static int mvf_is_float(uint32_t t) {
    return t == QT_F32 || t == QT_F16 || t == QT_BF16;
}

/* Whether w's rows suit the streaming kernel (16-byte chunks of 8 columns). */
static int mvf_fast_ok(const cuda_weight *w) {
    return w->n_cols % 8 == 0 && (uintptr_t)w->data % 16 == 0 && w->row_bytes % 16 == 0 &&
           w->row_bytes == (size_t)w->n_cols * (w->type == QT_F32 ? 4 : 2);
}

extern "C" int cuda_mvf_norm_ok(const cuda_weight *w, int64_t n_tok) {
    int64_t nt = n_tok < MVF_T ? n_tok : MVF_T;
    return mvf_is_float(w->type) && mvf_fast_ok(w) && nt >= 1 && nt * w->n_cols * 4 <= MVF_XMAX;
}

static int mvf_smem_setup(cuda_ctx *c, hb_err *err) {
    int rc = cu_smem_allow(c, (const void *)mvf_kernel, MVF_SMEM_MAX, err);
    if (!rc) rc = cu_smem_allow(c, (const void *)mvr_kernel16, MVF_XMAX, err);
    if (!rc) rc = cu_smem_allow(c, (const void *)mvr_kernel32, MVF_XMAX, err);
    return rc;
}

/* Switches of this file (cuda_knobs.h): HEARTH_CUDA_MVF_BPS, blocks per SM of the streaming
 * kernel (1..3); HEARTH_CUDA_MVF_IPT, 8-column groups per thread of the row-pair kernel
 * (1..8), which sets its warps per block, n / 8 / (32 * ipt), 1..8 (3 measured best; 2: -3%,
 * 8: -5%); HEARTH_CUDA_MVF_RP, row pairs per block of the default product kernel: 2 (the
 * four-row mvp4_kernel*) or 1 (the row-pair mvp_kernel*); HEARTH_CUDA_MVF_ENORM=0: a norm
 * folded into a product never runs in the four-row kernel's epilogue (EN: the product is
 * computed with x times the norm weights, each block also sums x's squares from the same
 * loads, and the dot products are scaled by the norm factor at the end, so no block waits
 * for a norm before its products); HEARTH_CUDA_MVF_PS, HEARTH_CUDA_MVF_PS_* and
 * HEARTH_CUDA_MVF_T256: the persistent one-token kernel's (cu_mvf_ps.cu, cuda_knobs.h). */

extern "C" int cuda_mvf_enorm_ok(const cuda_knobs *k, const cuda_weight *w, const float *x, int64_t xs) {
    return k->mvf_enorm && k->mvf_rp == 2 && mvf_is_float(w->type) && mvf_fast_ok(w) && (uintptr_t)x % 16 == 0 &&
           xs % 4 == 0;
}

/* Checks m and fills the launch-independent part of A. */
static int mvf_prepare(const cuda_ctx *c, const cuda_mvf_call *m, mvf_args *A, int *fast, hb_err *err) {
    memset(A, 0, sizeof *A);
    const cuda_weight *w = m->n >= 1 && m->n <= 3 ? m->w[0] : NULL;
    if (!w || !mvf_is_float(w->type) || w->n_cols <= 0)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: bad float mat-vec call");
    *fast = 1;
    for (int i = 0; i < m->n; i++) {
        const cuda_weight *wi = m->w[i];
        if (wi->type != w->type || wi->n_cols != w->n_cols || wi->n_rows < 0 || wi->row_bytes != w->row_bytes)
            return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec over different weights");
        *fast &= mvf_fast_ok(wi);
        A->w[i] = (const uint8_t *)wi->data, A->nr[i] = wi->n_rows, A->ldy[i] = m->ldy[i];
        A->rows += wi->n_rows;
    }
    if (m->glu && (m->n != 2 || m->w[0]->n_rows != m->w[1]->n_rows || !m->glu_out))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec GLU needs gate and up of equal size");
    if (m->norm && !cuda_mvf_norm_ok(w, m->n_tok) && !cuda_mvf_enorm_ok(&c->knobs, w, m->x, m->x_stride))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec cannot fold this norm");
    A->n = w->n_cols, A->row_bytes = w->row_bytes, A->type = w->type;
    A->esz = w->type == QT_F32 ? 4 : 2;
    A->ct = MVF_TILE / (MVF_TR * A->esz);
    A->glu = m->glu, A->gos = m->glu_os, A->xs = m->x_stride;
    int ns = c->knobs.mvf_ns; /* HEARTH_CUDA_MVF_NS, HEARTH_CUDA_MVF_MODE: experiments */
    A->mode = c->knobs.mvf_mode, A->ns = ns >= 2 && ns <= MVF_NS ? ns : 4;
    A->norm = m->norm, A->nw = m->norm_w, A->eps = m->eps, A->nys = m->norm_ys;
    A->early = m->add_early && m->n_tok == 1;
    return HEARTH_OK;
}

extern "C" int cuda_mvf(cuda_ctx *c, const cuda_mvf_call *m, hb_err *err) {
    int rc, fast = 0;
    mvf_args A;
    if ((rc = mvf_prepare(c, m, &A, &fast, err))) return rc;
    if (m->n_tok <= 0 || A.rows <= 0) return HEARTH_OK;
    if (fast && (rc = mvf_smem_setup(c, err))) return rc;
    int sms = cuda_ctx_info(c)->sm_count > 0 ? cuda_ctx_info(c)->sm_count : 1;
    int64_t npairs = (A.rows + 1) / 2;
    int x_vec = (uintptr_t)m->x % 16 == 0 && m->x_stride % 4 == 0; /* float4 loads of x from global */
    for (int64_t t0 = 0; t0 < m->n_tok; t0 += MVF_T) {
        int nt = (int)(m->n_tok - t0 < MVF_T ? m->n_tok - t0 : MVF_T);
        A.n_tok = nt;
        A.x = m->x + t0 * m->x_stride;
        for (int i = 0; i < m->n; i++) {
            A.y[i] = m->y[i] + t0 * m->ldy[i];
            A.add[i] = m->add_to[i] ? m->add_to[i] + t0 * m->ldy[i] : NULL;
        }
        A.gout = m->glu ? m->glu_out + t0 * m->glu_os : NULL;
        A.ny = m->norm && m->norm_y ? m->norm_y + t0 * m->norm_ys : NULL;
        A.xv = x_vec && A.n % 4 == 0;
        A.x_smem = m->norm || ((int64_t)nt * A.n * 4 <= MVF_XMAX && !((A.mode & 32) && x_vec));
        bool en = m->norm && fast && cuda_mvf_enorm_ok(&c->knobs, m->w[0], m->x, m->x_stride) && !(A.mode & (16 | 64));
        A.enorm = en;
        if (fast && x_vec && (!m->norm || en) && !(A.mode & (16 | 64)) && c->knobs.mvf_rp == 2) {
            /* 8-column groups per thread: two (the ones loaded before the wait), 32..256 threads */
            int64_t ng = A.n / 8, thr = (ng + 2 * 32 - 1) / (2 * 32) * 32;
            thr = thr < 32 ? 32 : (thr > MVF_THREADS ? MVF_THREADS : thr);
            if (c->knobs.mvf_t256 && ng >= MVF_THREADS) thr = MVF_THREADS; /* HEARTH_CUDA_MVF_T256=1 */
            A.x_smem = 0;
            unsigned grid = (unsigned)((A.rows + 3) / 4);
            bool one = nt == 1; /* the instance with one token's accumulators (fewer registers) */
            int done = 0;
            if (one && (rc = cu_mvp4s_launch(c, &A, (int)thr, en, &done, err))) return rc;
            if (!one && (rc = cu_mvp4t_launch(c, &A, (int)thr, en, &done, err))) return rc; /* HEARTH_CUDA_MVF_PB */
            if (done)
                ;
            else if (A.type == QT_F32)
                CU_LAUNCH(err, "launching a float matrix-vector product",
                          en ? (one ? mvp4n_kernel32_1 : mvp4n_kernel32) : (one ? mvp4_kernel32_1 : mvp4_kernel32), grid,
                          (unsigned)thr, 0, c, A);
            else if (one && !en && ng > 2 * thr && ng <= 3 * thr && c->knobs.mvf_j3) /* HEARTH_CUDA_MVF_J3=0: never */
                CU_LAUNCH(err, "launching a float matrix-vector product", mvp4_kernel16_1j3, grid, (unsigned)thr, 0, c, A);
            else
                CU_LAUNCH(err, "launching a float matrix-vector product",
                          en ? (one ? mvp4n_kernel16_1 : mvp4n_kernel16) : (one ? mvp4_kernel16_1 : mvp4_kernel16), grid,
                          (unsigned)thr, 0, c, A);
        } else if (fast && x_vec && !m->norm && !(A.mode & (16 | 64))) {
            int w = (int)(A.n / 8 / (32 * c->knobs.mvf_ipt));
            w = w < 1 ? 1 : (w > MVF_WARPS ? MVF_WARPS : w);
            A.x_smem = 0;
            if (A.type == QT_F32)
                CU_LAUNCH(err, "launching a float matrix-vector product", mvp_kernel32, (unsigned)npairs,
                          (unsigned)(32 * w), 0, c, A);
            else
                CU_LAUNCH(err, "launching a float matrix-vector product", mvp_kernel16, (unsigned)npairs,
                          (unsigned)(32 * w), 0, c, A);
        } else if (fast && (A.x_smem || x_vec) && !(A.mode & 64)) {
            size_t xb = A.x_smem ? (size_t)nt * A.n * 4 : 0;
            if (A.type == QT_F32)
                CU_LAUNCH(err, "launching a float matrix-vector product", mvr_kernel32, cu_blocks(npairs, MVR_WARPS),
                          MVR_WARPS * 32, xb, c, A);
            else
                CU_LAUNCH(err, "launching a float matrix-vector product", mvr_kernel16, cu_blocks(npairs, MVR_WARPS),
                          MVR_WARPS * 32, xb, c, A);
        } else if (fast && (A.x_smem || x_vec)) {
            size_t xb = A.x_smem ? (size_t)nt * A.n * 4 : 0;
            int ns = A.ns;
            while ((size_t)ns * MVF_TILE + xb > MVF_SMEM_MAX) ns--;
            A.ns = ns;
            int64_t nb = (int64_t)sms * c->knobs.mvf_bps;
            unsigned grid = (unsigned)(npairs < nb ? npairs : nb);
            size_t smem = (size_t)ns * MVF_TILE + xb;
            CU_LAUNCH(err, "launching a float matrix-vector product", mvf_kernel, grid, MVF_THREADS, smem, c, A);
        } else {
            if (m->norm) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec cannot fold this norm");
            A.x_smem = 0;
            CU_LAUNCH(err, "launching a float matrix-vector product", mvf_plain_kernel, cu_blocks(npairs, MVF_WARPS),
                      MVF_THREADS, 0, c, A);
        }
    }
    return cu_check_launch(err, "float matrix-vector product");
}

extern "C" uint64_t cuda_mvf_ps_launches(const cuda_ctx *c) {
    return c->n_mvf_ps;
}

extern "C" uint64_t cuda_mvf_pb_launches(const cuda_ctx *c) {
    return c->n_mvf_pb;
}

static bool mvf_overlap(const float *a, int64_t an, const float *b, int64_t bn) {
    return a < b + bn && b < a + an;
}

extern "C" int cuda_mvf_rmsnorm(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                                int64_t n, const float *w, float eps, hb_err *err) {
    if (n_rows <= 0 || n <= 0) return HEARTH_OK;
    int64_t ext_x = (n_rows - 1) * xs + n, ext_y = (n_rows - 1) * ys + n;
    int64_t np = c->knobs.mvf_norm_part ? c->knobs.mvf_norm_part : MVF_NORM_PART; /* HEARTH_CUDA_MVF_NORM_PART */
    int64_t part = mvf_overlap(x, ext_x, y, ext_y) ? n : np;
    int vec = (uintptr_t)x % 16 == 0 && xs % 4 == 0 && n % 4 == 0; /* as cuda_mvf decides for its x */
    for (int64_t r0 = 0; r0 < n_rows; r0 += 65535) { /* grid.y limit */
        int64_t nr = n_rows - r0 < 65535 ? n_rows - r0 : 65535;
        dim3 grid((unsigned)((n + part - 1) / part), (unsigned)nr);
        CU_LAUNCH(err, "launching rmsnorm", mvf_norm_kernel, grid, MVF_THREADS, 0, c, x + r0 * xs, xs,
                  y + r0 * ys, ys, n, w, eps, part, vec);
    }
    return cu_check_launch(err, "rmsnorm");
}
