/* cu_gemm.cu — f16 tensor-core matrix multiply for batches (prefill):
 *     y[i][j] = sum_k A[i][k] * B[j][k]     A: [m][k] activations, B: [n][k] weight rows
 * with f32 accumulation. k is a multiple of 32 (callers zero-pad).
 *
 * Blocks of 4 warps own a 64x64 tile of y; each warp a 32x32 quarter (2x2 fragments of
 * 16x16x16 MMA). K advances 32 at a time through shared memory, double-buffered with
 * asynchronous copies so the next slice loads while the tensor cores work on this one.
 * Rows are padded by 16 bytes in shared memory to spread them over the banks.
 */
#include <mma.h>

#include "backend/cuda/cu_internal.cuh"

#define GM 64
#define GN 64
#define GK 32
#define GLD (GK + 8) /* halves per shared row */

/* 16-byte global -> shared copy that bypasses registers (zero-fills when !valid). */
static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

static __device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::);
}

static __device__ __forceinline__ void cp_async_wait_1(void) {
    asm volatile("cp.async.wait_group 1;\n" ::);
}

static __device__ __forceinline__ void cp_async_wait_0(void) {
    asm volatile("cp.async.wait_group 0;\n" ::);
}

/* Loads the k-slice [k0, k0+GK) of the A and B tiles into stage buffers. 128 threads, each
 * moves 2 vectors of A and 2 of B (64 rows x 4 vectors of 8 halves). */
static __device__ __forceinline__ void gemm_load(__half *as, __half *bs, const __half *a, const __half *b, int64_t m,
                                                 int64_t n, int64_t k, int64_t i0, int64_t j0, int64_t k0) {
#pragma unroll
    for (int v = 0; v < 2; v++) {
        int idx = threadIdx.x + v * 128, r = idx >> 2, q = idx & 3;
        int64_t gi = i0 + r, gj = j0 + r;
        const __half *pa = a + (gi < m ? gi : 0) * k + k0 + q * 8;
        const __half *pb = b + (gj < n ? gj : 0) * k + k0 + q * 8;
        cp_async16(as + r * GLD + q * 8, pa, gi < m);
        cp_async16(bs + r * GLD + q * 8, pb, gj < n);
    }
}

static __global__ void __launch_bounds__(128) gemm_f16_kernel(const __half *a, const __half *b, int64_t m, int64_t n,
                                                              int64_t k, float *y, int64_t ldy) {
    __shared__ __align__(128) __half sa[2][GM * GLD];
    __shared__ __align__(128) __half sb[2][GN * GLD];
    __shared__ __align__(128) float stage[4][16 * 16];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int wm = warp >> 1, wn = warp & 1;
    int64_t i0 = (int64_t)blockIdx.y * GM, j0 = (int64_t)blockIdx.x * GN;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int x = 0; x < 2; x++)
#pragma unroll
        for (int z = 0; z < 2; z++) nvcuda::wmma::fill_fragment(acc[x][z], 0.0f);
    int64_t nk = k / GK;
    gemm_load(sa[0], sb[0], a, b, m, n, k, i0, j0, 0);
    cp_async_commit();
    for (int64_t s = 0; s < nk; s++) {
        int cur = (int)(s & 1);
        if (s + 1 < nk) gemm_load(sa[cur ^ 1], sb[cur ^ 1], a, b, m, n, k, i0, j0, (s + 1) * GK);
        cp_async_commit();
        cp_async_wait_1();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GK; kk += 16) {
            nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> fa[2];
            nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::col_major> fb[2];
#pragma unroll
            for (int x = 0; x < 2; x++)
                nvcuda::wmma::load_matrix_sync(fa[x], sa[cur] + (wm * 32 + x * 16) * GLD + kk, GLD);
#pragma unroll
            for (int z = 0; z < 2; z++)
                nvcuda::wmma::load_matrix_sync(fb[z], sb[cur] + (wn * 32 + z * 16) * GLD + kk, GLD);
#pragma unroll
            for (int x = 0; x < 2; x++)
#pragma unroll
                for (int z = 0; z < 2; z++) nvcuda::wmma::mma_sync(acc[x][z], fa[x], fb[z], acc[x][z]);
        }
        __syncthreads();
    }
    cp_async_wait_0();
    /* each warp writes its four 16x16 fragments through a private staging tile */
#pragma unroll
    for (int x = 0; x < 2; x++)
#pragma unroll
        for (int z = 0; z < 2; z++) {
            nvcuda::wmma::store_matrix_sync(stage[warp], acc[x][z], 16, nvcuda::wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int64_t gi = i0 + wm * 32 + x * 16 + (e >> 4), gj = j0 + wn * 32 + z * 16 + (e & 15);
                if (gi < m && gj < n) y[gi * ldy + gj] = stage[warp][e];
            }
            __syncwarp();
        }
}

int cu_gemm_f16(cuda_ctx *c, const __half *a, const __half *b, int64_t m, int64_t n, int64_t k, float *y,
                int64_t ldy, hb_err *err) {
    dim3 grid((unsigned)((n + GN - 1) / GN), (unsigned)((m + GM - 1) / GM));
    gemm_f16_kernel<<<grid, 128, 0, c->stream>>>(a, b, m, n, k, y, ldy);
    return cu_check_launch(err, "tensor-core matrix multiply");
}
