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
 * in a batch of 8 still equals itself alone. R is 2 or 4 (a GLU's gate and up rows stay
 * pairs). Shapes: one token, 16-bit weights, rows of at most J * blockDim 8-column groups. */
template <int R>
static __device__ __forceinline__ void mvp4s_issue(const mvf_args *A, int64_t grp, int64_t ngr, uint4 *slot, int ng,
                                                   int J) {
    int bd = blockDim.x, tid = threadIdx.x;
#pragma unroll
    for (int k = 0; k < R; k++) {
        int64_t row = R * grp + k, loc = 0;
        const uint8_t *r = NULL;
        if (grp < ngr && row < A->rows) r = A->w[mvf_map(A, row, &loc)] + (size_t)loc * A->row_bytes;
        for (int j = 0; j < J; j++) {
            int g = tid + j * bd;
            if (g >= ng) break;
            uint32_t dst = cu_smem_addr(slot + (size_t)(k * J + j) * bd + tid);
            const void *src = r ? (const void *)(r + (size_t)g * 16) : (const void *)A->w[0];
            int n = r ? 16 : 0; /* rows past the end read as zeros */
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
        }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int EN, int J, int NS, int R>
static __global__ void __launch_bounds__(MVF_THREADS) mvp4s_kernel(const __grid_constant__ mvf_args A) {
    extern __shared__ __align__(16) uint4 ps_ring[]; /* [NS][R][J][blockDim] */
    __shared__ float red[2][R * MVF_WARPS];         /* by group parity: one barrier per group */
    __shared__ float rss[MVF_WARPS];
    CU_TR_ENTRY();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5, bd = blockDim.x, tid = threadIdx.x;
    int ng = (int)(A.n / 8);
    int64_t ngr = (A.rows + R - 1) / R, step = gridDim.x;
    size_t slot_n = (size_t)R * J * bd;
#pragma unroll
    for (int s = 0; s < NS; s++) mvp4s_issue<R>(&A, blockIdx.x + s * step, ngr, ps_ring + s * slot_n, ng, J);
    cu_pdl_wait_e(); /* weights in flight; the activations are ready from here on */
    cu_pdl_trigger();
    float4 xa[J], xc[J];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < J; j++) {
        int g = tid + j * bd;
        xa[j] = xc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (g < ng) {
            const float4 *x4 = (const float4 *)(A.x + 8 * (int64_t)g);
            xa[j] = x4[0], xc[j] = x4[1];
            if (EN) { /* mvp4_group's arithmetic: the squares in order, then x times the norm weights */
                ss = mvf_dot8_sq(xa[j], xc[j], ss);
                if (A.nw) {
                    float4 ga = ((const float4 *)(A.nw + 8 * (int64_t)g))[0], gc = ((const float4 *)(A.nw + 8 * (int64_t)g))[1];
                    xa[j].x *= ga.x, xa[j].y *= ga.y, xa[j].z *= ga.z, xa[j].w *= ga.w;
                    xc[j].x *= gc.x, xc[j].y *= gc.y, xc[j].z *= gc.z, xc[j].w *= gc.w;
                }
            }
        }
    }
    float kt = 1.0f;
    if (EN) {
        float v = cu_warp_sum(ss);
        if (lane == 0) rss[warp] = v;
        __syncthreads();
        float s_ = 0.0f;
        for (int w = 0; w < nw; w++) s_ += rss[w];
        kt = mvf_rms_scale(s_, A.n, A.eps);
        if (A.ny) /* the normalized rows for any later reader (mvp4_norm_out's arithmetic) */
            for (int64_t i = (int64_t)blockIdx.x * bd + tid; i < A.n; i += step * bd)
                A.ny[i] = mvf_normed(A.x[i], kt, A.nw, i);
    }
    CU_TR_MARK(1);
    int it = 0;
    for (int64_t grp = blockIdx.x; grp < ngr; grp += step, it++) {
        int s = it % NS, kr = tid % R;
        int64_t row = R * grp + kr, loc = 0;
        float res = 0.0f; /* the residual of the row this thread finishes, read while the weights land */
        if (A.early && tid < R && row < A.rows) {
            int s_ = mvf_map(&A, row, &loc);
            if (A.add[s_]) res = __ldcg(A.add[s_] + loc);
        }
        asm volatile("cp.async.wait_group %0;\n" ::"n"(NS - 1) : "memory"); /* this group's pieces landed */
        uint4 *slot = ps_ring + s * slot_n;
        float acc[R];
#pragma unroll
        for (int k = 0; k < R; k++) acc[k] = 0.0f;
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (tid + j * bd < ng) {
#pragma unroll
                for (int k = 0; k < R; k++) {
                    float w[8];
                    mvf_w8(A.type, (const uint8_t *)(slot + (size_t)(k * J + j) * bd + tid), w);
                    acc[k] = mvf_dot8(w, xa[j], xc[j], acc[k]);
                }
            }
        }
        mvp4s_issue<R>(&A, grp + NS * step, ngr, slot, ng, J); /* refill the slot just read */
#pragma unroll
        for (int k = 0; k < R; k++) {
            float v = cu_warp_sum(acc[k]);
            if (lane == 0) red[it & 1][k * MVF_WARPS + warp] = v;
        }
        __syncthreads();
        if (tid < 32) { /* thread k < R finishes row k (mvp4's epilogue for one token) */
            bool on = tid < R && row < A.rows;
            float sum = 0.0f;
            if (on) {
                for (int w = 0; w < nw; w++) sum += red[it & 1][kr * MVF_WARPS + w];
                if (EN) sum *= kt;
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

typedef void (*mvp4s_fn)(mvf_args);

/* The instance for (norm in the epilogue, groups per thread, stages, rows per group), or
 * NULL. */
static mvp4s_fn mvp4s_pick(bool en, int j, int ns, int r) {
    static const mvp4s_fn tab1[2][2][2] = {
        { { mvp4s_kernel<0, 1, 2, 2>, mvp4s_kernel<0, 1, 2, 4> }, { mvp4s_kernel<0, 1, 3, 2>, mvp4s_kernel<0, 1, 3, 4> } },
        { { mvp4s_kernel<1, 1, 2, 2>, mvp4s_kernel<1, 1, 2, 4> }, { mvp4s_kernel<1, 1, 3, 2>, mvp4s_kernel<1, 1, 3, 4> } },
    };
    if (j == 1 && ns >= 2 && ns <= 3 && (r == 2 || r == 4)) return tab1[en][ns - 2][r == 4];
    static const mvp4s_fn tab[3][2][2] = {
        { { mvp4s_kernel<0, 2, 2, 2>, mvp4s_kernel<0, 2, 2, 4> }, { mvp4s_kernel<0, 2, 3, 2>, mvp4s_kernel<0, 2, 3, 4> } },
        { { mvp4s_kernel<1, 2, 2, 2>, mvp4s_kernel<1, 2, 2, 4> }, { mvp4s_kernel<1, 2, 3, 2>, mvp4s_kernel<1, 2, 3, 4> } },
        { { mvp4s_kernel<0, 3, 2, 2>, mvp4s_kernel<0, 3, 2, 4> }, { mvp4s_kernel<0, 3, 3, 2>, mvp4s_kernel<0, 3, 3, 4> } },
    };
    if (ns < 2 || ns > 3 || (j == 3 && en) || j < 2 || j > 3 || (r != 2 && r != 4)) return NULL;
    return tab[j == 3 ? 2 : (en ? 1 : 0)][ns - 2][r == 4];
}

int cu_mvp4s_launch(cuda_ctx *c, const mvf_args *A, int thr, bool en, int *done, hb_err *err) {
    int rc, ns = c->knobs.mvf_ps, nb = 0;
    int64_t ng = A->n / 8;
    int j = ng <= thr ? 1 : (ng <= 2 * (int64_t)thr ? 2 : (ng <= 3 * (int64_t)thr && c->knobs.mvf_ps_long ? 3 : 0));
    int r = (c->knobs.mvf_ps_r2 >> (j > 1 ? j - 2 : 0)) & 1 ? 2 : 4; /* HEARTH_CUDA_MVF_PS_R2: bit 0 short rows, bit 1 long */
    int64_t ngr = (A->rows + r - 1) / r;
    mvp4s_fn fn = A->type != QT_F32 && A->n_tok == 1 ? mvp4s_pick(en, j, ns, r) : NULL;
    *done = 0;
    if (!fn || ngr < c->knobs.mvf_ps_min) return HEARTH_OK; /* HEARTH_CUDA_MVF_PS_MIN */
    size_t smem = (size_t)ns * r * j * thr * 16;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    cu_carve(c, (const void *)fn);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, thr, smem) != cudaSuccess || nb < 1) {
        (void)cudaGetLastError();
        return HEARTH_OK; /* the mvp4 instances take it */
    }
    if (c->knobs.mvf_ps_bps && c->knobs.mvf_ps_bps < nb) nb = c->knobs.mvf_ps_bps; /* HEARTH_CUDA_MVF_PS_BPS */
    int64_t sms = cuda_ctx_info(c)->sm_count > 0 ? cuda_ctx_info(c)->sm_count : 1, grid = (int64_t)nb * sms;
    grid = grid < ngr ? grid : ngr;
    if (c->knobs.mvf_ps_even) { /* as few blocks as give every block the same number of groups */
        int64_t per = (ngr + grid - 1) / grid;
        grid = (ngr + per - 1) / per;
    }
    CU_LAUNCH(err, "launching a float matrix-vector product", fn, (unsigned)grid, (unsigned)thr, smem, c, *A);
    c->n_mvf_ps++;
    *done = 1;
    return HEARTH_OK;
}
