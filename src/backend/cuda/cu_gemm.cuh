/* cu_gemm.cuh — device helpers shared by the tensor-core matrix multiplies of the prefill
 * path (cu_gemm.cu: quantized weights; cu_gemm_f.cu: F16/BF16 weights; also the prefill
 * attention, cu_attn_pf.cu): asynchronous
 * copies, ldmatrix, the int8 and f16 mma.sync forms, and the fragment stores with the fused
 * residual add. Internal to src/backend/cuda. */
#ifndef HEARTH_CU_GEMM_CUH
#define HEARTH_CU_GEMM_CUH

#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_unpack.cuh"

/* ---- PTX helpers ------------------------------------------------------------------------ */

static __device__ __forceinline__ unsigned gm_smem(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void gm_cp16(void *s, const void *g) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(gm_smem(s)), "l"(g));
}

/* 16 bytes, or 16 zero bytes when !valid (nothing is read then). */
static __device__ __forceinline__ void gm_cp16z(void *s, const void *g, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(gm_smem(s)), "l"(g), "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void gm_cp8(void *s, const void *g) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(gm_smem(s)), "l"(g));
}

static __device__ __forceinline__ void gm_cp4(void *s, const void *g) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(gm_smem(s)), "l"(g));
}

static __device__ __forceinline__ void gm_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void gm_wait_1(void) {
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

static __device__ __forceinline__ void gm_wait_2(void) {
    asm volatile("cp.async.wait_group 2;\n" ::: "memory");
}

static __device__ __forceinline__ void gm_wait_all(void) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* Four 8x8 matrices of 16-bit elements (8 rows of 16 bytes each); lane l gives the row
 * address of matrix l / 8, row l % 8. */
static __device__ __forceinline__ void gm_ldsm4(unsigned r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gm_smem(p)));
}

/* The same, each matrix transposed on the way (row-major V tiles read as column-major). */
static __device__ __forceinline__ void gm_ldsm4t(unsigned r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gm_smem(p)));
}

/* d = a . b + c over 16x8x32 int8 (all four c the same value). */
static __device__ __forceinline__ void gm_mma_k32(int d[4], const unsigned a[4], unsigned b0, unsigned b1, int c) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c), "r"(c), "r"(c), "r"(c));
}

/* d = a . b + c over 16x8x16 int8. */
static __device__ __forceinline__ void gm_mma_k16(int d[4], unsigned a0, unsigned a1, unsigned b0, int c) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(c), "r"(c), "r"(c), "r"(c));
}

/* acc += a . b over 16x8x16 f16. */
static __device__ __forceinline__ void gm_mma_f16(float acc[4], const unsigned a[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Component j (a constant after unrolling) of v. */
static __device__ __forceinline__ float gm_f4(float4 v, int j) {
    return j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
}

/* The integer products start from this bias: 0x4B400000 + i read as a float is exactly
 * 12582912 + i for |i| < 2^22 (a chunk's dot is at most 32 * 127 * 127), so one float
 * subtraction converts the result. */
#define GM_BIAS 0x4B400000
#define GM_BIAS_F 12582912.0f

/* Stores a warp's 32 x 8NI accumulators (fragment layout of mma: rows g, g + 8, columns 2t,
 * 2t + 1 of each 16x8 piece) and adds them into add_to when given. */
#define GM_STORE_FN(NAME, NI)                                                                                 \
static __device__ __forceinline__ void NAME(const float acc[2][NI][4], int64_t r0, int64_t c0, int64_t m,     \
                                                int64_t n, float *y, int64_t ldy, float *add_to) {            \
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;                                                 \
_Pragma("unroll")                                                                                                \
    for (int mi = 0; mi < 2; mi++)                                                                            \
_Pragma("unroll")                                                                                                \
        for (int h = 0; h < 2; h++) {                                                                         \
            int64_t r = r0 + mi * 16 + g + 8 * h;                                                             \
            if (r >= m) continue;                                                                             \
_Pragma("unroll")                                                                                                \
            for (int ni = 0; ni < NI; ni++)                                                                   \
_Pragma("unroll")                                                                                                \
                for (int e = 0; e < 2; e++) {                                                                 \
                    int64_t col = c0 + ni * 8 + 2 * t + e;                                                    \
                    if (col >= n) continue;                                                                   \
                    float v = acc[mi][ni][2 * h + e];                                                         \
                    y[r * ldy + col] = v;                                                                     \
                    if (add_to) add_to[r * ldy + col] += v; /* fused residual add */                          \
                }                                                                                             \
        }                                                                                                     \
}
GM_STORE_FN(gm_store2, 2)
GM_STORE_FN(gm_store4, 4)

#endif
