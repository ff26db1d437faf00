/* cu_mvf_ps.cu — the persistent one-token float product (HEARTH_CUDA_MVF_PS; shared pieces
 * in cu_mvf.cuh, the other float kernels and the dispatch in cu_mvf.cu). */
#include "backend/cuda/cu_mvf.cuh"

/* ---- persistent one-token row-group kernel (HEARTH_CUDA_MVF_PS) ------------------------
 * The one-token mvp4 instances above load a block's rows before the PDL wait and then hold
 * no weight bytes in flight while they reduce, store and exit, and a new block starts its
 * loads from nothing: in a 46 MB gate/up product that churn kept an F16 step near 2.8 TB/s
 * of a 4.4 TB/s card. Here a grid of at most what fits on the GPU walks groups of R rows
 * (block b: groups b, b + grid, ...) and keeps NS groups of its rows in flight at all times
 * in a shared-memory ring filled by 16-byte cp.async copies (each thread copies, and later
 * reads, exactly the pieces it multiplies, so no barrier guards the ring; the first NS
 * groups are queued before the PDL wait). x (times the norm weights, EN) and its sum of
 * squares are loaded once per block. Thread i sums column groups i, i + blockDim, ... of
 * each row and warp 0 sums the warps in order, as the mvp4 instances do (a row's sum does
 * not depend on which rows share its block), so the bits are theirs and a sequence decoded
 * in a batch of 8 still equals itself alone. R is 2, 4 or 8 (a GLU's gate and up rows stay
 * pairs). Shapes: one token, 16-bit weights, rows of at most J * blockDim 8-column groups. */
/* What a thread needs to queue its copies of a group, computed once per thread (the copy
 * path runs R * J times per group: 64-bit row arithmetic and the row-to-weight map per row
 * had made it as long as the dot products, by the machine code of scripts/sass.sh). */
typedef struct ps_cp {
    uint32_t dst;  /* shared address of this thread's first piece in slot 0 */
    uint32_t bd16; /* blockDim.x * 16: bytes between a thread's pieces, in a row and in a slot */
    uint32_t toff; /* threadIdx.x * 16: this thread's first byte in a row */
    uint32_t rows; /* rows of the launch (< 2^31, cu_mvp4s_launch) */
    uint32_t rb;   /* bytes per row */
    int jn;        /* pieces per row this thread copies: column groups tid + j * blockDim < ng */
} ps_cp;

/* Row R * grp + k of a launch that is not a GLU pair (mvf_map's mapping in 32-bit
 * arithmetic). A GLU launch's rows alternate gate, up (R is even and groups start at even
 * rows), so mvp4s_issue_k picks its weight from k at compile time. */
template <int R>
static __device__ __forceinline__ const uint8_t *mvp4s_row(const mvf_args *A, uint32_t grp, int k, uint32_t rb) {
    uint32_t row = R * grp + (uint32_t)k, n0 = (uint32_t)A->nr[0], n01 = n0 + (uint32_t)A->nr[1];
    if (row < n0) return A->w[0] + (size_t)row * rb;
    if (row < n01) return A->w[1] + (size_t)(row - n0) * rb;
    return A->w[2] + (size_t)(row - n01) * rb;
}

/* Queues group grp's pieces of this thread into the slot at shared offset `slot` (bytes
 * from P->dst) and commits them as one cp.async group; groups at or past ngr queue nothing
 * (no iteration reads them), rows past the end of the last group read as zeros. Only the
 * R row addresses depend on whether the launch is a GLU pair; the copies after them are
 * one body: this code runs three times per kernel (the first group, the second after the
 * x loads, the refill), and a copy of the R x J copies per case had made the one-token
 * kernel's path after its wait ~23 KB of machine code, more than an SM's instruction cache
 * keeps across the five kernels of a layer (bench/cuda_icache.cu: 32 KB stays, 48 KB does
 * not), so every kernel started by fetching its code cold. */
template <int R, int J>
static __device__ __forceinline__ void mvp4s_issue(const mvf_args *A, const ps_cp *P, uint32_t grp, uint32_t ngr,
                                                   uint32_t slot) {
    if (grp < ngr) {
        const uint8_t *src[R];
        if (A->glu) {
#pragma unroll
            for (int k = 0; k < R; k++) src[k] = A->w[k & 1] + (size_t)((R / 2) * grp + (uint32_t)(k >> 1)) * P->rb;
        } else {
#pragma unroll
            for (int k = 0; k < R; k++) src[k] = mvp4s_row<R>(A, grp, k, P->rb);
        }
#pragma unroll
        for (int k = 0; k < R; k++) {
            bool ok = R * grp + (uint32_t)k < P->rows;
            const uint8_t *sp = ok ? src[k] + P->toff : A->w[0];
            uint32_t step = ok ? P->bd16 : 0u, n = ok ? 16u : 0u;
#pragma unroll
            for (int j = 0; j < J; j++)
                if (j < P->jn) {
                    uint32_t dst = P->dst + slot + (uint32_t)(k * J + j) * P->bd16;
                    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(sp + (size_t)j * step),
                                 "r"(n)
                                 : "memory");
                }
        }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* acc[0..R) each summed over the warp with cu_warp_sum's pairings (xor 16, 8, 4, 2, 1, own
 * value first; a + b == b + a, so every lane of cu_warp_sum holds these bits), in fewer
 * shuffles: the first levels split the rows between the lanes (R = 4: 2 + 1 + 3 shuffles
 * instead of 20). Row k's sum is left in lanes k * 32 / R ..., returned by those lanes. */
template <int R>
static __device__ __forceinline__ float mvp4s_wsum(const float *acc, int lane) {
    float v;
    if (R == 8) { /* rows split by lane bits 16, 8, 4 (row bits 2, 1, 0): 4 + 2 + 1 + 2 shuffles */
        bool hi = lane & 16, b8 = lane & 8, b4 = lane & 4;
        float s[4], t[2];
#pragma unroll
        for (int k = 0; k < 4; k++)
            s[k] = (hi ? acc[4 + k] : acc[k]) + __shfl_xor_sync(0xffffffffu, hi ? acc[k] : acc[4 + k], 16);
#pragma unroll
        for (int k = 0; k < 2; k++)
            t[k] = (b8 ? s[2 + k] : s[k]) + __shfl_xor_sync(0xffffffffu, b8 ? s[k] : s[2 + k], 8);
        v = (b4 ? t[1] : t[0]) + __shfl_xor_sync(0xffffffffu, b4 ? t[0] : t[1], 4);
    } else if (R == 4) {
        bool hi = lane & 16, b8 = lane & 8;
        float s0 = (hi ? acc[2] : acc[0]) + __shfl_xor_sync(0xffffffffu, hi ? acc[0] : acc[2], 16);
        float s1 = (hi ? acc[3] : acc[1]) + __shfl_xor_sync(0xffffffffu, hi ? acc[1] : acc[3], 16);
        v = (b8 ? s1 : s0) + __shfl_xor_sync(0xffffffffu, b8 ? s0 : s1, 8);
    } else {
        bool hi = lane & 16;
        v = (hi ? acc[1] : acc[0]) + __shfl_xor_sync(0xffffffffu, hi ? acc[0] : acc[1], 16);
        v += __shfl_xor_sync(0xffffffffu, v, 8);
    }
    if (R != 8) v += __shfl_xor_sync(0xffffffffu, v, 4);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v;
}

/* The start both persistent float kernels share: this thread's copy plan P over the ring
 * at `ring` and, with EN, the norm weights of its column groups (ga, gc: ones otherwise). The
 * norm weights (constants) are read before the weight groups are queued: read after them,
 * this load (an L2 miss) waited behind the block's own megabytes of copies, ~2-3 us of a
 * decode-step trace before the first group could start. */
template <int EN, int J>
static __device__ __forceinline__ void ps_begin(const mvf_args *A, const uint4 *ring, int ng, ps_cp *P, float4 *ga,
                                                float4 *gc) {
    int bd = blockDim.x, tid = threadIdx.x;
    P->bd16 = 16u * (uint32_t)bd, P->toff = 16u * (uint32_t)tid, P->rows = (uint32_t)A->rows;
    P->rb = (uint32_t)A->row_bytes;
    P->dst = cu_smem_addr(ring) + P->toff;
    P->jn = 0;
    int ngc = A->ngl > 0 && A->ngl < ng ? A->ngl : ng; /* HEARTH_CUDA_X_COLS (diagnostics) */
#pragma unroll
    for (int j = 0; j < J; j++) P->jn += tid + j * bd < ngc;
#pragma unroll
    for (int j = 0; j < J; j++) {
        int g = tid + j * bd;
        ga[j] = gc[j] = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
        if (EN && A->nw && g < ng)
            ga[j] = ((const float4 *)(A->nw + 8 * (int64_t)g))[0], gc[j] = ((const float4 *)(A->nw + 8 * (int64_t)g))[1];
    }
}

/* The normalized rows for any later reader (mvp4_norm_out's arithmetic), block b's share:
 * out of line, since few launches ask for them and inline this code lay on the kernel's
 * path to its first group. */
static __device__ __noinline__ void ps_norm_out(const mvf_args *A, float kt) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < A->n; i += (int64_t)gridDim.x * blockDim.x)
        A->ny[i] = mvf_normed(A->x[i], kt, A->nw, i);
}

/* BF: the weights are BF16 (else F16), a compile-time choice so that the inner loop does
 * not branch on the type. */
template <int EN, int J, int NS, int R, int BF>
static __global__ void __launch_bounds__(MVF_THREADS) mvp4s_kernel(const __grid_constant__ mvf_args A) {
    extern __shared__ __align__(16) uint4 ps_ring[]; /* [NS][R][J][blockDim] */
    __shared__ float red[2][R * MVF_WARPS];         /* by group parity: one barrier per group */
    __shared__ float rss[MVF_WARPS];
    CU_TR_ENTRY();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5, bd = blockDim.x, tid = threadIdx.x;
    int ng = (int)(A.n / 8);
    uint32_t ngr = (uint32_t)((A.rows + R - 1) / R), step = gridDim.x;
    size_t slot_n = (size_t)R * J * bd;
    ps_cp P;
    float4 ga[J], gc[J];
    uint32_t slot_b = (uint32_t)slot_n * 16u;
    const bool ENR = A.enorm; /* EN instances also run products without a norm (cu_mvp4s_launch) */
    ps_begin<EN, J>(&A, ps_ring, ng, &P, ga, gc);
    /* Only the first group is queued before the wait; the others follow the loads of x. An
     * SM serves its requests roughly in the order they were made, so x (an L2 hit, on every
     * block's path from the wait to its first multiply) queued behind all NS groups of the
     * SM's ~6 blocks arrived only when they had landed, and the block then restarted its
     * stream from an empty ring. Session 33, H200: tg128 1300-1312 -> 1377 t/s; nothing
     * queued before the wait: 1135-1160; half of the first group: slower (H100). */
    float res0 = 0.0f; /* the first group's residual (A.early: no kernel just before writes it), ahead of the copies */
    if (tid < R && A.early && (int64_t)(R * blockIdx.x + (uint32_t)tid) < A.rows) {
        int64_t loc0 = 0;
        int s0 = mvf_map(&A, (int64_t)(R * blockIdx.x + (uint32_t)tid), &loc0);
        if (A.add[s0]) res0 = __ldcg(A.add[s0] + loc0);
    }
    mvp4s_issue<R, J>(&A, &P, blockIdx.x, ngr, 0);
    cu_pdl_wait_e(); /* weights in flight; the activations are ready from here on */
    cu_pdl_trigger();
    float4 xa[J], xc[J];
    float ss = 0.0f;
    bool xrd = A.xskip < 2 || blockIdx.x % (unsigned)A.xskip == 0; /* HEARTH_CUDA_X_SKIP (diagnostics) */
#pragma unroll
    for (int j = 0; j < J; j++) {
        int g = tid + j * bd;
        xa[j] = xc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (!xrd) {
            xa[j] = xc[j] = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            if (A.xskip_pf && g < ng) asm volatile("prefetch.global.L1 [%0];\n" ::"l"(A.x + 8 * (int64_t)g) : "memory");
        }
        if (g < ng && xrd) {
            const float4 *x4 = (const float4 *)(A.x + 8 * (int64_t)g);
            xa[j] = x4[0], xc[j] = x4[1];
        }
    }
#pragma unroll
    for (int s = 1; s < NS; s++) mvp4s_issue<R, J>(&A, &P, blockIdx.x + s * step, ngr, s * slot_b);
#pragma unroll
    for (int j = 0; j < J; j++) {
        int g = tid + j * bd;
        if (g < ng && xrd) {
            if (EN && ENR) { /* mvp4_group's arithmetic: the squares in order, then x times the norm weights */
                ss = mvf_dot8_sq(xa[j], xc[j], ss);
                if (A.nw) {
                    xa[j].x *= ga[j].x, xa[j].y *= ga[j].y, xa[j].z *= ga[j].z, xa[j].w *= ga[j].w;
                    xc[j].x *= gc[j].x, xc[j].y *= gc[j].y, xc[j].z *= gc[j].z, xc[j].w *= gc[j].w;
                }
            }
        }
    }
    float kt = 1.0f;
    if (EN && ENR) {
        float v = cu_warp_sum(ss);
        if (lane == 0) rss[warp] = v;
        __syncthreads();
        float s_ = 0.0f;
#pragma unroll
        for (int w = 0; w < MVF_WARPS; w++) /* unrolled: a runtime loop was ~80 instructions */
            if (w < nw) s_ += rss[w];
        kt = mvf_rms_scale(s_, A.n, A.eps);
        if (A.ny) ps_norm_out(&A, kt);
    }
    CU_TR_MARK(1);
    int it = 0;
    for (uint32_t grp = blockIdx.x; grp < ngr; grp += step, it++) {
        int s = it % NS, kr = tid % R;
        int64_t row = (int64_t)(R * grp + (uint32_t)kr), loc = 0;
        float res = res0; /* the residual of the row this thread finishes, read while the weights land */
        if (it > 0 && tid < R && A.early && row < A.rows) {
            int s_ = mvf_map(&A, row, &loc);
            if (A.add[s_]) res = __ldcg(A.add[s_] + loc);
        }
        asm volatile("cp.async.wait_group %0;\n" ::"n"(NS - 1) : "memory"); /* this group's pieces landed */
        if (it == 0) CU_TR_MARK(3);
        uint4 *slot = ps_ring + s * slot_n;
        float acc[R];
#pragma unroll
        for (int k = 0; k < R; k++) acc[k] = 0.0f;
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (j < P.jn) {
#pragma unroll
                for (int k = 0; k < R; k++) {
                    float w[8];
                    mvf_w8(BF ? QT_BF16 : QT_F16, (const uint8_t *)(slot + (size_t)(k * J + j) * bd + tid), w);
                    acc[k] = mvf_dot8(w, xa[j], xc[j], acc[k]);
                }
            }
        }
        mvp4s_issue<R, J>(&A, &P, grp + NS * step, ngr, (uint32_t)s * slot_b); /* refill the slot just read */
        float v = mvp4s_wsum<R>(acc, lane);
        if ((lane & (32 / R - 1)) == 0) red[it & 1][(lane / (32 / R)) * MVF_WARPS + warp] = v;
        __syncthreads();
        if (tid < 32) { /* thread k < R finishes row k (mvp4's epilogue for one token) */
            bool on = tid < R && row < A.rows;
            float sum = 0.0f;
            if (on) {
#pragma unroll
                for (int w = 0; w < MVF_WARPS; w++) /* unrolled: no loop control for a runtime nw */
                    if (w < nw) sum += red[it & 1][kr * MVF_WARPS + w];
                if (EN && ENR) sum *= kt;
                int s_ = mvf_map(&A, row, &loc);
                A.y[s_][loc] = sum;
                if (A.add[s_]) A.add[s_][loc] = A.early ? res + sum : A.add[s_][loc] + sum;
            }
            float gate = __shfl_xor_sync(0xffffffffu, sum, 1);
            if (on && A.glu && (kr & 1)) A.gout[row >> 1] = cu_glu_act(A.glu == 2, gate) * sum;
        }
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    CU_TR_MARK(2);
    CU_TR_FLUSH();
}

/* ---- persistent batch kernel: 2..8 tokens (HEARTH_CUDA_MVF_PB) ---------------------------
 * mvp4s_kernel's grid, ring, row groups and thread -> column-group map, with T tokens' x
 * (times the norm weights with EN) held in registers for the whole kernel, so a group's
 * weights are read from the ring once and used for every token without any activation
 * traffic per group (the generic mvp4 instances re-read all tokens' x from L1/L2 for every
 * four rows: 4 bytes of x per byte of weights). More tokens than T (5..8 tokens with long
 * rows, T = 4) are split between two blocks that walk the same row groups (the second
 * block's weight reads mostly hit L2; HEARTH_CUDA_MVF_PB_MODE bit 3, default: the down
 * product 25.6 -> 22.6 us on an H100 against passes over the same slot that reload x from
 * L2, which stay as bit 3 off). Measured and kept off (mode bit 1): groups of 2 rows; measured
 * and removed (session 19): x staged in shared memory for those rows (41 us: one block per
 * SM and bank-conflicted reads). The warp sums of the R x T
 * values use cu_warp_sum's pairings (xor 16, 8, 4, 2, 1) with the values split between the
 * lanes (ps_tsum: 31 shuffles for 32 values instead of 160), and warp 0 sums the warps in
 * order: every (token, row) is summed in the mvp4 order, so a sequence keeps its bits alone
 * and in a batch. */

/* Tokens t0 .. t0 + T of this thread's column groups (zeros past n_tok or the row), times
 * the norm weights with EN (mvp4_group's arithmetic). */
template <int EN, int J, int T>
static __device__ __forceinline__ void mvp4t_load_x(const mvf_args *A, int t0, int ng, const float4 *ga,
                                                    const float4 *gc, float4 (*xa)[J], float4 (*xc)[J]) {
#pragma unroll
    for (int tt = 0; tt < T; tt++)
#pragma unroll
        for (int j = 0; j < J; j++) {
            int g = (int)threadIdx.x + j * (int)blockDim.x, t = t0 + tt;
            float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), c = a;
            if (t < A->n_tok && g < ng) {
                const float4 *x4 = (const float4 *)(A->x + (int64_t)t * A->xs + 8 * (int64_t)g);
                a = x4[0], c = x4[1];
                if (EN && A->nw) {
                    a.x *= ga[j].x, a.y *= ga[j].y, a.z *= ga[j].z, a.w *= ga[j].w;
                    c.x *= gc[j].x, c.y *= gc[j].y, c.z *= gc[j].z, c.w *= gc[j].w;
                }
            }
            xa[tt][j] = a, xc[tt][j] = c;
        }
}

template <int EN, int J, int R, int T, int BF>
static __global__ void __launch_bounds__(MVF_THREADS) mvp4t_kernel(const __grid_constant__ mvf_args A) {
    constexpr int NS = 2, V = R * T, SH = V == 32 ? 0 : (V == 16 ? 1 : (V == 8 ? 2 : 3));
    static_assert(V == 32 || V == 16 || V == 8 || V == 4, "R x T values per warp sum");
    extern __shared__ __align__(16) uint4 ps_ring[]; /* [NS][R][J][blockDim] */
    __shared__ float red[2][R * MVF_T][MVF_WARPS];   /* by group parity: one barrier per group */
    __shared__ float rss[MVF_T][MVF_WARPS], kts[MVF_T];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5, bd = blockDim.x, tid = threadIdx.x;
    int ng = (int)(A.n / 8), nt = A.n_tok;
    /* A.tsplit: blocks 2b and 2b + 1 walk the same row groups (the second one's weights come
     * from L2), the first for tokens 0..T-1, the second for T..2T-1: each holds its tokens'
     * x in registers instead of reloading it per group */
    uint32_t half = A.tsplit ? blockIdx.x & 1u : 0u, gb = A.tsplit ? blockIdx.x >> 1 : blockIdx.x;
    int tlo = (int)half * T, thi = A.tsplit ? min(nt, tlo + T) : nt;
    uint32_t ngr = (uint32_t)((A.rows + R - 1) / R), step = A.tsplit ? gridDim.x >> 1 : gridDim.x;
    size_t slot_n = (size_t)R * J * bd;
    ps_cp P;
    float4 ga[J], gc[J];
    ps_begin<EN, J>(&A, ps_ring, ng, &P, ga, gc);
    uint32_t slot_b = (uint32_t)slot_n * 16u;
    /* Without the norm, as mvp4s_kernel: the first group before the wait, the other after the
     * loads of x (session 33, H200: x2 +3.8%, x8 +1.4%). With it, x is read token by token
     * between warp sums, and queuing the second group inside that loop measured x4 -5-9%
     * on an H100, so those products keep both groups before the wait. */
#pragma unroll
    for (int s = 0; s < (EN ? NS : 1); s++) mvp4s_issue<R, J>(&A, &P, gb + s * step, ngr, s * slot_b);
    cu_pdl_wait(); /* weights in flight; the activations are ready from here on */
    cu_pdl_trigger();
    if (EN) { /* each token's norm factor: mvp4s_kernel's arithmetic per token */
        for (int t = 0; t < nt; t++) {
            float ss = 0.0f;
#pragma unroll
            for (int j = 0; j < J; j++) {
                int g = tid + j * bd;
                if (g < ng) {
                    const float4 *x4 = (const float4 *)(A.x + (int64_t)t * A.xs + 8 * (int64_t)g);
                    ss = mvf_dot8_sq(x4[0], x4[1], ss);
                }
            }
            float v = cu_warp_sum(ss);
            if (lane == 0) rss[t][warp] = v;
        }
        __syncthreads();
        if (tid < nt) {
            float s_ = 0.0f;
            for (int w = 0; w < nw; w++) s_ += rss[tid][w];
            kts[tid] = mvf_rms_scale(s_, A.n, A.eps);
        }
        __syncthreads();
        if (A.ny && !half) /* the normalized rows for any later reader */
            for (int t = 0; t < nt; t++)
                for (int64_t i = (int64_t)gb * bd + tid; i < A.n; i += (int64_t)step * bd)
                    A.ny[(int64_t)t * A.nys + i] = mvf_normed(A.x[(int64_t)t * A.xs + i], kts[t], A.nw, i);
    }
    float4 xa[T][J], xc[T][J];
    bool passes = thi - tlo > T; /* x is reloaded for every pass of every group */
    if (!passes) mvp4t_load_x<EN, J, T>(&A, tlo, ng, ga, gc, xa, xc);
    if (!EN)
#pragma unroll
        for (int s = 1; s < NS; s++) mvp4s_issue<R, J>(&A, &P, gb + s * step, ngr, s * slot_b);
    int it = 0;
    for (uint32_t grp = gb; grp < ngr; grp += step, it++) {
        int s = it % NS;
        asm volatile("cp.async.wait_group %0;\n" ::"n"(NS - 1) : "memory"); /* this group's pieces landed */
        const uint4 *slot = ps_ring + s * slot_n;
        for (int t0 = tlo; t0 < thi; t0 += T) {
            if (passes) mvp4t_load_x<EN, J, T>(&A, t0, ng, ga, gc, xa, xc);
            float acc[V]; /* [token][row] */
#pragma unroll
            for (int i = 0; i < V; i++) acc[i] = 0.0f;
#pragma unroll
            for (int j = 0; j < J; j++) {
                if (j < P.jn) {
#pragma unroll
                    for (int k = 0; k < R; k++) {
                        float w[8];
                        mvf_w8(BF ? QT_BF16 : QT_F16, (const uint8_t *)(slot + (size_t)(k * J + j) * bd + tid), w);
#pragma unroll
                        for (int tt = 0; tt < T; tt++) acc[tt * R + k] = mvf_dot8(w, xa[tt][j], xc[tt][j], acc[tt * R + k]);
                    }
                }
            }
            if (t0 + T >= thi) /* the slot's last reader: refill it */
                mvp4s_issue<R, J>(&A, &P, grp + NS * step, ngr, (uint32_t)s * slot_b);
            float v = ps_tsum<V>(acc, lane);
            if ((lane & ((1 << SH) - 1)) == 0) red[it & 1][t0 * R + (lane >> SH)][warp] = v;
        }
        __syncthreads();
        if (tid < 32) { /* thread tid finishes row tid % R of token tid / R (this block's tokens) */
            int kr = tid % R, t = tid / R;
            int64_t row = (int64_t)(R * grp + (uint32_t)kr), loc = 0;
            bool on = t >= tlo && t < thi && row < A.rows;
            float sum = 0.0f;
            if (on) {
#pragma unroll
                for (int w_ = 0; w_ < MVF_WARPS; w_++)
                    if (w_ < nw) sum += red[it & 1][tid][w_];
                if (EN) sum *= kts[t];
                int s_ = mvf_map(&A, row, &loc);
                A.y[s_][(int64_t)t * A.ldy[s_] + loc] = sum;
                if (A.add[s_]) A.add[s_][(int64_t)t * A.ldy[s_] + loc] += sum;
            }
            float gate = __shfl_xor_sync(0xffffffffu, sum, 1);
            if (on && A.glu && (kr & 1)) A.gout[(int64_t)t * A.gos + (row >> 1)] = cu_glu_act(A.glu == 2, gate) * sum;
        }
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

typedef void (*mvp4s_fn)(mvf_args);

/* The instances of one (norm in the epilogue, groups per thread): [stages - 2][4 rows per
 * group][BF16]. */
#define MVP4S_SET(EN, J)                                                                                  \
    {                                                                                                     \
        { { mvp4s_kernel<EN, J, 2, 2, 0>, mvp4s_kernel<EN, J, 2, 2, 1> },                               \
          { mvp4s_kernel<EN, J, 2, 4, 0>, mvp4s_kernel<EN, J, 2, 4, 1> } },                             \
        { { mvp4s_kernel<EN, J, 3, 2, 0>, mvp4s_kernel<EN, J, 3, 2, 1> },                               \
          { mvp4s_kernel<EN, J, 3, 4, 0>, mvp4s_kernel<EN, J, 3, 4, 1> } }                              \
    }

/* Launches a persistent float product (fn(B) on c's stream, PDL as CU_LAUNCH) with an L2
 * streaming window over its weights (cu_stream_window). */
static cudaError_t ps_launch(cuda_ctx *c, mvp4s_fn fn, unsigned grid, unsigned thr, size_t smem, const mvf_args *B) {
    cudaLaunchAttribute at[2];
    cudaLaunchConfig_t cfg = cu_launch_config(dim3(grid), dim3(thr), smem, c, at);
    const void *p[3];
    size_t bytes[3];
    for (int i = 0; i < 3; i++) p[i] = B->w[i], bytes[i] = B->nr[i] > 0 ? (size_t)B->nr[i] * B->row_bytes : 0;
    cu_stream_window(&cfg, at, c, 3, p, bytes);
    return cudaLaunchKernelEx(&cfg, fn, *B);
}

/* The instance for (norm in the epilogue, groups per thread, stages, rows per group, BF16
 * weights), or NULL. Groups of 8 rows (HEARTH_CUDA_MVF_PS_R8) exist for one or two column
 * groups per thread and two stages only. */
static mvp4s_fn mvp4s_pick(bool en, int j, int ns, int r, bool bf) {
    static const mvp4s_fn tab[5][2][2][2] = { MVP4S_SET(0, 1), MVP4S_SET(1, 1), MVP4S_SET(0, 2), MVP4S_SET(1, 2),
                                              MVP4S_SET(0, 3) };
    static const mvp4s_fn tab8[2][2][2] = {
        { { mvp4s_kernel<0, 1, 2, 8, 0>, mvp4s_kernel<0, 1, 2, 8, 1> },
          { mvp4s_kernel<1, 1, 2, 8, 0>, mvp4s_kernel<1, 1, 2, 8, 1> } },
        { { mvp4s_kernel<0, 2, 2, 8, 0>, mvp4s_kernel<0, 2, 2, 8, 1> },
          { mvp4s_kernel<1, 2, 2, 8, 0>, mvp4s_kernel<1, 2, 2, 8, 1> } } };
    if (r == 8) return j <= 2 && ns == 2 ? tab8[j - 1][en][bf] : NULL;
    if (ns < 2 || ns > 3 || j < 1 || j > 3 || (j == 3 && en) || (r != 2 && r != 4)) return NULL;
    return tab[j == 3 ? 4 : 2 * (j - 1) + en][ns - 2][r == 4][bf];
}

int cu_mvp4s_launch(cuda_ctx *c, const mvf_args *A, int thr, bool en, int *done, hb_err *err) {
    int rc, ns = c->knobs.mvf_ps;
    int64_t ng = A->n / 8;
    int j = ng <= thr ? 1 : (ng <= 2 * (int64_t)thr ? 2 : (ng <= 3 * (int64_t)thr && c->knobs.mvf_ps_long ? 3 : 0));
    int r = (c->knobs.mvf_ps_r2 >> (j > 1 ? j - 2 : 0)) & 1 ? 2 : 4; /* HEARTH_CUDA_MVF_PS_R2: bit 0 short rows, bit 1 long */
    if (j <= 2 && c->knobs.mvf_ps_r8 && ns == 2) r = 8;                 /* HEARTH_CUDA_MVF_PS_R8 */
    int64_t ngr = (A->rows + r - 1) / r;
    /* Products without a norm run the norm's instance too, with A->enorm off (a runtime
     * test, same bits): the q/k/v, o and gate/up products of a layer then share one body
     * of machine code, which the SMs that ran the previous product still hold in their
     * ~32 KB instruction cache (bench/cuda_icache.cu). Session 36, H200, with mvp4s_issue's
     * copies written once: F16 tg128 +1.5% (1475-1478 against 1453-1458 t/s). */
    bool en_i = en || j <= 2;
    mvp4s_fn fn = (A->type == QT_F16 || A->type == QT_BF16) && A->n_tok == 1 ? mvp4s_pick(en_i, j, ns, r, A->type == QT_BF16) : NULL;
    *done = 0;
    if (!fn || ngr < c->knobs.mvf_ps_min) return HEARTH_OK; /* HEARTH_CUDA_MVF_PS_MIN */
    if (A->rows > ((int64_t)1 << 30) || A->row_bytes > 0xffffffffu) return HEARTH_OK; /* the kernel's 32-bit rows */
    size_t smem = (size_t)ns * r * j * thr * 16;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    cu_carve(c, (const void *)fn);
    int nb = cu_occupancy(c, (const void *)fn, thr, smem);
    if (nb < 1) return HEARTH_OK; /* the mvp4 instances take it */
    if (c->knobs.mvf_ps_bps && c->knobs.mvf_ps_bps < nb) nb = c->knobs.mvf_ps_bps; /* HEARTH_CUDA_MVF_PS_BPS */
    int64_t sms = cuda_ctx_info(c)->sm_count > 0 ? cuda_ctx_info(c)->sm_count : 1, grid = (int64_t)nb * sms;
    grid = grid < ngr ? grid : ngr;
    if (c->knobs.mvf_ps_even) { /* as few blocks as give every block the same number of groups */
        int64_t per = (ngr + grid - 1) / grid;
        grid = (ngr + per - 1) / per;
    }
    mvf_args B = *A;
    B.xskip = c->knobs.x_skip, B.xskip_pf = c->knobs.x_skip_pf; /* HEARTH_CUDA_X_SKIP */
    B.ngl = c->knobs.x_cols < 1000 ? (int)(ng * c->knobs.x_cols / 1000 > 0 ? ng * c->knobs.x_cols / 1000 : 1) : 0; /* HEARTH_CUDA_X_COLS */
    cudaError_t e = ps_launch(c, fn, (unsigned)grid, (unsigned)thr, smem, &B);
    if (e != cudaSuccess) return cu_fail(err, e, "launching a float matrix-vector product");
    c->n_mvf_ps++;
    *done = 1;
    return HEARTH_OK;
}

/* cu_mvp4s_launch for 2..8 tokens (HEARTH_CUDA_MVF_PB): the same thread count and
 * column groups per thread as the one-token kernel (so the same sums), groups of 4 rows, two
 * stages; all 8 tokens in registers for rows of up to two groups per thread, passes of 4
 * for three. *done = 0 when it does not take the call. */
int cu_mvp4t_launch(cuda_ctx *c, const mvf_args *A, int thr, bool en, int *done, hb_err *err) {
    typedef void (*fn_t)(mvf_args);
    static const fn_t tab[2][2][2] = { { { mvp4t_kernel<0, 1, 4, 8, 0>, mvp4t_kernel<0, 1, 4, 8, 1> },
                                         { mvp4t_kernel<1, 1, 4, 8, 0>, mvp4t_kernel<1, 1, 4, 8, 1> } },
                                       { { mvp4t_kernel<0, 2, 4, 8, 0>, mvp4t_kernel<0, 2, 4, 8, 1> },
                                         { mvp4t_kernel<1, 2, 4, 8, 0>, mvp4t_kernel<1, 2, 4, 8, 1> } } };
    /* 2..4 tokens (the server's default of 4 sequences): half the registers of x */
    static const fn_t tab4[2][2][2] = { { { mvp4t_kernel<0, 1, 4, 4, 0>, mvp4t_kernel<0, 1, 4, 4, 1> },
                                          { mvp4t_kernel<1, 1, 4, 4, 0>, mvp4t_kernel<1, 1, 4, 4, 1> } },
                                        { { mvp4t_kernel<0, 2, 4, 4, 0>, mvp4t_kernel<0, 2, 4, 4, 1> },
                                          { mvp4t_kernel<1, 2, 4, 4, 0>, mvp4t_kernel<1, 2, 4, 4, 1> } } };
    static const fn_t tab3[2][2] = { { mvp4t_kernel<0, 3, 4, 4, 0>, mvp4t_kernel<0, 3, 4, 4, 1> },
                                     { mvp4t_kernel<0, 3, 2, 4, 0>, mvp4t_kernel<0, 3, 2, 4, 1> } };
    /* 2 tokens (two sequences in the server): a quarter of the registers of x */
    static const fn_t tab2[3][2][2] = { { { mvp4t_kernel<0, 1, 4, 2, 0>, mvp4t_kernel<0, 1, 4, 2, 1> },
                                          { mvp4t_kernel<1, 1, 4, 2, 0>, mvp4t_kernel<1, 1, 4, 2, 1> } },
                                        { { mvp4t_kernel<0, 2, 4, 2, 0>, mvp4t_kernel<0, 2, 4, 2, 1> },
                                          { mvp4t_kernel<1, 2, 4, 2, 0>, mvp4t_kernel<1, 2, 4, 2, 1> } },
                                        { { mvp4t_kernel<0, 3, 4, 2, 0>, mvp4t_kernel<0, 3, 4, 2, 1> },
                                          { NULL, NULL } } };
    int rc;
    int64_t ng = A->n / 8;
    int j = ng <= thr ? 1 : (ng <= 2 * (int64_t)thr ? 2 : (ng <= 3 * (int64_t)thr && !en ? 3 : 0));
    *done = 0;
    if (!c->knobs.mvf_pb || j == 0 || A->n_tok < 2 || A->n_tok > MVF_T || (A->type != QT_F16 && A->type != QT_BF16) ||
        A->rows > ((int64_t)1 << 30) || A->row_bytes > 0xffffffffu)
        return HEARTH_OK;
    bool bf = A->type == QT_BF16;
    int r = j == 3 && (c->knobs.mvf_pb_mode & 2) ? 2 : 4; /* HEARTH_CUDA_MVF_PB_MODE */
    bool t4 = j <= 2 && A->n_tok <= 4 && !(c->knobs.mvf_pb_mode & 16); /* HEARTH_CUDA_MVF_PB_MODE bit 4: never */
    bool t2 = A->n_tok <= 2 && r == 4 && !(j == 3 && en) && !(c->knobs.mvf_pb_mode & 32); /* bit 5: never */
    fn_t fn = t2 ? tab2[j - 1][en][bf] : (j == 3 ? tab3[r == 2][bf] : (t4 ? tab4 : tab)[j - 1][en][bf]);
    size_t smem = (size_t)2 * r * j * thr * 16;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    if (!(c->knobs.mvf_pb_mode & 1)) cu_carve(c, (const void *)fn);
    int nb = cu_occupancy(c, (const void *)fn, thr, smem);
    if (nb < 1) return HEARTH_OK;
    int64_t ngr = (A->rows + r - 1) / r, sms = cuda_ctx_info(c)->sm_count > 0 ? cuda_ctx_info(c)->sm_count : 1;
    /* HEARTH_CUDA_MVF_PB_MODE bit 3: rows of three column groups, 5..8 tokens: block pairs */
    bool ts = j == 3 && r == 4 && A->n_tok > 4 && (c->knobs.mvf_pb_mode & 8);
    int64_t grid = (int64_t)nb * sms / (ts ? 2 : 1);
    grid = grid < 1 ? 1 : (grid < ngr ? grid : ngr);
    int64_t per = (ngr + grid - 1) / grid;
    grid = (ngr + per - 1) / per;
    mvf_args B = *A;
    B.tsplit = ts;
    if (ts) grid *= 2;
    cudaError_t e = ps_launch(c, fn, (unsigned)grid, (unsigned)thr, smem, &B);
    if (e != cudaSuccess) return cu_fail(err, e, "launching a batched float matrix-vector product");
    c->n_mvf_pb++;
    *done = 1;
    return HEARTH_OK;
}
