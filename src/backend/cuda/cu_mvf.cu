/* cu_mvf.cu — float-weight (F32/F16/BF16) matrix x vector products at decode, built to
 * stream the weights at the device's read bandwidth (interface: cuda_mvf.h).
 *
 * A decode product reads every weight byte once and does ~1 FMA per byte, so it is bound by
 * how many bytes are in flight (Little's law: ~4.4 TB/s x ~1.5 us ≈ 6 MB across the GPU)
 * and by the latency around the stream (launch ramp, activation round trips, reduction).
 * The kernel below therefore
 *  - runs one 8-warp block per SM (grid = SM count, > 114 KB of shared memory each, so two
 *    blocks never share an SM and the row split stays even), each block owning a
 *    contiguous range of rows of the concatenated weights;
 *  - streams those rows through a ring of MVF_NS tiles of 32 KB (16 rows x 1024 f16 or 512
 *    f32 columns) with bulk asynchronous copies (one thread issues one copy per row
 *    segment; an mbarrier per tile counts the bytes), so up to 128 KB per SM is in flight;
 *  - issues the first MVF_NS tiles BEFORE cu_pdl_wait: with programmatic dependent launch
 *    the weights of the next product are fetched while the previous kernels (norm,
 *    attention, ...) still run — a whole 8-16 MB projection fits in the rings of 132 SMs;
 *  - stages the activations (f32, all tokens) in shared memory once per block after the
 *    wait; the RMSNorm that feeds the product can be folded into that staging (every
 *    block computes the row's sum of squares itself), which removes the norm kernel;
 *  - gives each warp two rows of a tile (lanes over 8-column chunks, every lane the same
 *    columns of both rows and all tokens), so a GLU epilogue can pair gate row i and up
 *    row i, and reduces each row once after its last column tile.
 * Arithmetic per token: lane l accumulates its chunks l, l+32, ... in column order with an
 * fmaf chain, then a butterfly warp sum; nothing depends on the number of tokens or on the
 * tiling of the launch, so 8 sequences decoded together equal each decoded alone.
 * Shapes the fast kernel cannot take (rows not a multiple of 8 columns, unaligned data)
 * run a plain warp-per-row-pair kernel with the same epilogue.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_internal.cuh"
#include "backend/cuda/cuda_mvf.h"

#define MVF_WARPS 8
#define MVF_THREADS (MVF_WARPS * 32)
#define MVF_TR (2 * MVF_WARPS)    /* rows per tile: two per warp */
#define MVF_NS 4                  /* tiles in the ring */
#define MVF_TILE 32768            /* bytes per tile */
#define MVF_T 8                   /* tokens per launch */
#define MVF_XMAX (96 * 1024)      /* staged activations, bytes */
#define MVF_NORM_PART 512         /* columns written per block of the standalone norm */

typedef struct mvf_args {
    const uint8_t *w[3];
    float *y[3], *add[3];
    int64_t ldy[3], nr[3];
    int64_t rows;                 /* rows of all weights together */
    int64_t n;                    /* columns */
    size_t row_bytes;
    uint32_t type;
    int esz;                      /* bytes per weight */
    int ct;                       /* columns per tile (a multiple of 256) */
    int glu;                      /* 0, 1 SiLU, 2 GELU: rows interleaved gate 0, up 0, gate 1, ... */
    float *gout;
    int64_t gos;
    const float *x;
    int64_t xs;
    int n_tok;
    int x_smem;                   /* activations staged in shared memory (else read from global) */
    int norm;
    const float *nw;
    float eps;
    float *ny;
    int64_t nys;
} mvf_args;

/* ---- PTX helpers: mbarrier + bulk copy -------------------------------------------------- */
static __device__ __forceinline__ uint32_t mvf_sa(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void mvf_bar_init(uint64_t *b, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mvf_sa(b)), "r"(count) : "memory");
}

static __device__ __forceinline__ void mvf_bar_expect(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mvf_sa(b)), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void mvf_bar_wait(uint64_t *b, uint32_t parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(mvf_sa(b)), "r"(parity)
                     : "memory");
}

/* bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst;
 * completion counted on b. The weights are read once per step: evict-first in L2. */
static __device__ __forceinline__ void mvf_bulk(void *dst, const void *src, uint32_t bytes, uint64_t *b,
                                                uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1], %2, [%3], %4;\n" ::"r"(mvf_sa(dst)),
                 "l"(src), "r"(bytes), "r"(mvf_sa(b)), "l"(pol)
                 : "memory");
}

/* ---- shared pieces ---------------------------------------------------------------------- */

/* Row g of the launch's row space -> weight index, row *loc of that weight. */
static __device__ __forceinline__ int mvf_map(const mvf_args *A, int64_t g, int64_t *loc) {
    if (A->glu) {
        *loc = g >> 1;
        return (int)(g & 1);
    }
    if (g < A->nr[0]) {
        *loc = g;
        return 0;
    }
    if (g < A->nr[0] + A->nr[1]) {
        *loc = g - A->nr[0];
        return 1;
    }
    *loc = g - A->nr[0] - A->nr[1];
    return 2;
}

static __device__ __forceinline__ void mvf_put(const mvf_args *A, int64_t g, int t, float v) {
    int64_t loc;
    int s = mvf_map(A, g, &loc);
    int64_t o = (int64_t)t * A->ldy[s] + loc;
    A->y[s][o] = v;
    if (A->add[s]) A->add[s][o] += v; /* fused residual add */
}

static __device__ __forceinline__ float mvf_act(int glu, float g) {
    if (glu == 2) return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    return g / (1.0f + expf(-g));
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
                    if (A->glu) A->gout[(int64_t)t * A->gos + (g0 >> 1)] = mvf_act(A->glu, s0) * s1;
                }
            }
        }
    }
}

/* Sum of squares of each of n_tok rows (n floats, xs apart) over a block of MVF_THREADS:
 * thread i sums elements i, i + MVF_THREADS, ... in order, then a butterfly warp sum, then
 * the warps in order — per row the same arithmetic for any n_tok (the folded norm and
 * cuda_mvf_rmsnorm share it). red: [MVF_WARPS * MVF_T] shared; every thread gets ss. */
static __device__ __forceinline__ void mvf_sumsq(const float *x, int64_t xs, int64_t n, int n_tok, float *red,
                                                 float ss[MVF_T]) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        float s = 0.0f;
        if (t < n_tok) {
            const float *xr = x + t * xs;
#pragma unroll 4
            for (int64_t i = threadIdx.x; i < n; i += MVF_THREADS) s = fmaf(xr[i], xr[i], s);
        }
        s = cu_warp_sum(s);
        if (lane == 0) red[warp * MVF_T + t] = s;
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        float s = 0.0f;
        for (int w = 0; w < MVF_WARPS; w++) s += red[w * MVF_T + t];
        ss[t] = s;
    }
    __syncthreads(); /* red may be reused */
}

static __device__ __forceinline__ float mvf_rms_scale(float ss, int64_t n, float eps) {
    return rsqrtf(ss / (float)n + eps);
}

static __device__ __forceinline__ float mvf_normed(float x, float k, const float *w, int64_t i) {
    return w ? x * k * w[i] : x * k;
}

/* 8 weights of one chunk (16 bytes of F16/BF16, 32 of F32) as floats. */
static __device__ __forceinline__ void mvf_w8(uint32_t type, const uint8_t *p, float *v) {
    if (type == QT_F32) {
        float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        return;
    }
    uint4 u = *(const uint4 *)p;
    uint32_t wd[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (type == QT_F16) {
            __half2 h = *(const __half2 *)&wd[k];
            float2 f = __half22float2(h);
            v[2 * k] = f.x, v[2 * k + 1] = f.y;
        } else {
            v[2 * k] = __uint_as_float(wd[k] << 16);
            v[2 * k + 1] = __uint_as_float(wd[k] & 0xffff0000u);
        }
    }
}

static __device__ __forceinline__ float mvf_dot8(const float *w, float4 a, float4 b, float acc) {
    acc = fmaf(w[0], a.x, acc);
    acc = fmaf(w[1], a.y, acc);
    acc = fmaf(w[2], a.z, acc);
    acc = fmaf(w[3], a.w, acc);
    acc = fmaf(w[4], b.x, acc);
    acc = fmaf(w[5], b.y, acc);
    acc = fmaf(w[6], b.z, acc);
    return fmaf(w[7], b.w, acc);
}

/* ---- the streaming kernel --------------------------------------------------------------- */

/* Thread 0: queues tile i (row tile i / nct, column tile i % nct) of this block into ring
 * slot i % MVF_NS. */
static __device__ __forceinline__ void mvf_issue(const mvf_args *A, int64_t r_begin, int64_t r_end, int nct, int64_t i,
                                                 uint8_t *ring, uint64_t *full, uint64_t pol) {
    int s = (int)(i % MVF_NS), cti = (int)(i % nct);
    int64_t g0 = r_begin + (i / nct) * MVF_TR, c0 = (int64_t)cti * A->ct;
    int64_t c1 = c0 + A->ct < A->n ? c0 + A->ct : A->n;
    uint32_t bytes = (uint32_t)((c1 - c0) * A->esz);
    int nr = (int)(r_end - g0 < MVF_TR ? r_end - g0 : MVF_TR);
    mvf_bar_expect(&full[s], bytes * (uint32_t)nr);
    uint8_t *dst = ring + (size_t)s * MVF_TILE;
    for (int j = 0; j < nr; j++) {
        int64_t loc;
        int seg = mvf_map(A, g0 + j, &loc);
        mvf_bulk(dst + (size_t)j * A->ct * A->esz, A->w[seg] + (size_t)loc * A->row_bytes + (size_t)c0 * A->esz, bytes,
                 &full[s], pol);
    }
}

/* Stages the activations of all tokens into xsm (normalized when the launch folds the norm;
 * block 0 then also writes them to ny). */
static __device__ __forceinline__ void mvf_stage_x(const mvf_args *A, float *xsm, float *red) {
    float k[MVF_T];
    if (A->norm) {
        mvf_sumsq(A->x, A->xs, A->n, A->n_tok, red, k);
#pragma unroll
        for (int t = 0; t < MVF_T; t++) k[t] = mvf_rms_scale(k[t], A->n, A->eps);
    }
#pragma unroll
    for (int t = 0; t < MVF_T; t++) {
        if (t >= A->n_tok) break;
        const float *xr = A->x + t * A->xs;
#pragma unroll 4
        for (int64_t i = threadIdx.x; i < A->n; i += MVF_THREADS) {
            float v = xr[i];
            if (A->norm) {
                v = mvf_normed(v, k[t], A->nw, i);
                if (A->ny && blockIdx.x == 0) A->ny[t * A->nys + i] = v;
            }
            xsm[t * A->n + i] = v;
        }
    }
    __syncthreads();
}

static __global__ void __launch_bounds__(MVF_THREADS, 1) mvf_kernel(const __grid_constant__ mvf_args A) {
    extern __shared__ __align__(128) uint8_t mvf_sm[];
    __shared__ __align__(8) uint64_t full[MVF_NS];
    __shared__ float red[MVF_WARPS * MVF_T];
    uint8_t *ring = mvf_sm;
    float *xsm = (float *)(mvf_sm + (size_t)MVF_NS * MVF_TILE);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* this block's rows: a contiguous range, cut at even rows (GLU pairs) */
    int64_t npairs = (A.rows + 1) / 2;
    int64_t r_begin = 2 * (npairs * blockIdx.x / gridDim.x);
    int64_t r_end = 2 * (npairs * (blockIdx.x + 1) / gridDim.x);
    if (r_end > A.rows) r_end = A.rows;
    int nct = (int)((A.n + A.ct - 1) / A.ct);
    int64_t ntiles = (r_end - r_begin + MVF_TR - 1) / MVF_TR * nct;
    uint64_t pol = 0;
    if (threadIdx.x == 0) {
        for (int s = 0; s < MVF_NS; s++) mvf_bar_init(&full[s], 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
        for (int64_t i = 0; i < MVF_NS && i < ntiles; i++) mvf_issue(&A, r_begin, r_end, nct, i, ring, full, pol);
    }
    __syncthreads();
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
        int s = (int)(i % MVF_NS), cti = (int)(i % nct);
        int64_t g0 = r_begin + (i / nct) * MVF_TR + 2 * warp, c0 = (int64_t)cti * A.ct;
        int64_t c1 = c0 + A.ct < A.n ? c0 + A.ct : A.n;
        mvf_bar_wait(&full[s], (uint32_t)((i / MVF_NS) & 1));
        if (g0 < r_end) {
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
        if (threadIdx.x == 0 && i + MVF_NS < ntiles) {
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            mvf_issue(&A, r_begin, r_end, nct, i + MVF_NS, ring, full, pol);
        }
    }
}

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
                                                                      int64_t part) {
    __shared__ float red[MVF_WARPS * MVF_T];
    cu_pdl_wait();
    cu_pdl_trigger();
    const float *xr = x + (int64_t)blockIdx.y * xs;
    float ss[MVF_T];
    mvf_sumsq(xr, 0, n, 1, red, ss);
    float k = mvf_rms_scale(ss[0], n, eps);
    int64_t e = (int64_t)(blockIdx.x + 1) * part < n ? (int64_t)(blockIdx.x + 1) * part : n;
    for (int64_t i = (int64_t)blockIdx.x * part + threadIdx.x; i < e; i += MVF_THREADS)
        y[(int64_t)blockIdx.y * ys + i] = mvf_normed(xr[i], k, w, i);
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

static int mvf_smem_setup(hb_err *err) {
    static int done;
    if (done) return HEARTH_OK;
    cudaError_t e = cudaFuncSetAttribute(mvf_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         MVF_NS * MVF_TILE + MVF_XMAX);
    if (e != cudaSuccess) return cu_fail(err, e, "raising the float mat-vec's shared memory");
    done = 1;
    return HEARTH_OK;
}

/* Checks m and fills the launch-independent part of A. */
static int mvf_prepare(const cuda_mvf_call *m, mvf_args *A, int *fast, hb_err *err) {
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
    if (m->norm && !cuda_mvf_norm_ok(w, m->n_tok))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec cannot fold this norm");
    A->n = w->n_cols, A->row_bytes = w->row_bytes, A->type = w->type;
    A->esz = w->type == QT_F32 ? 4 : 2;
    A->ct = MVF_TILE / (MVF_TR * A->esz);
    A->glu = m->glu, A->gos = m->glu_os, A->xs = m->x_stride;
    A->norm = m->norm, A->nw = m->norm_w, A->eps = m->eps, A->nys = m->norm_ys;
    return HEARTH_OK;
}

extern "C" int cuda_mvf(cuda_ctx *c, const cuda_mvf_call *m, hb_err *err) {
    int rc, fast = 0;
    mvf_args A;
    if ((rc = mvf_prepare(m, &A, &fast, err))) return rc;
    if (m->n_tok <= 0 || A.rows <= 0) return HEARTH_OK;
    if (fast && (rc = mvf_smem_setup(err))) return rc;
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
        A.x_smem = m->norm || (int64_t)nt * A.n * 4 <= MVF_XMAX;
        if (fast && (A.x_smem || x_vec)) {
            unsigned grid = (unsigned)(npairs < sms ? npairs : sms);
            size_t smem = (size_t)MVF_NS * MVF_TILE + (A.x_smem ? (size_t)nt * A.n * 4 : 0);
            CU_LAUNCH(err, "launching a float matrix-vector product", mvf_kernel, grid, MVF_THREADS, smem, c->stream, A);
        } else {
            if (m->norm) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: float mat-vec cannot fold this norm");
            A.x_smem = 0;
            CU_LAUNCH(err, "launching a float matrix-vector product", mvf_plain_kernel, cu_blocks(npairs, MVF_WARPS),
                      MVF_THREADS, 0, c->stream, A);
        }
    }
    return cu_check_launch(err, "float matrix-vector product");
}

static bool mvf_overlap(const float *a, int64_t an, const float *b, int64_t bn) {
    return a < b + bn && b < a + an;
}

extern "C" int cuda_mvf_rmsnorm(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                                int64_t n, const float *w, float eps, hb_err *err) {
    if (n_rows <= 0 || n <= 0) return HEARTH_OK;
    int64_t ext_x = (n_rows - 1) * xs + n, ext_y = (n_rows - 1) * ys + n;
    int64_t part = mvf_overlap(x, ext_x, y, ext_y) ? n : MVF_NORM_PART;
    for (int64_t r0 = 0; r0 < n_rows; r0 += 65535) { /* grid.y limit */
        int64_t nr = n_rows - r0 < 65535 ? n_rows - r0 : 65535;
        dim3 grid((unsigned)((n + part - 1) / part), (unsigned)nr);
        CU_LAUNCH(err, "launching rmsnorm", mvf_norm_kernel, grid, MVF_THREADS, 0, c->stream, x + r0 * xs, xs,
                  y + r0 * ys, ys, n, w, eps, part);
    }
    return cu_check_launch(err, "rmsnorm");
}
