/* cu_mvf.cuh — internal to the float-weight products (cu_mvf.cu, cu_mvf_ps.cu): their launch
 * arguments, the arithmetic every float kernel shares (one definition, so that the kernels
 * give the same bits and a batch of 8 equals each token alone), and the persistent
 * one-token kernel's launcher. Not for use outside src/backend/cuda. */
#ifndef HEARTH_CU_MVF_CUH
#define HEARTH_CU_MVF_CUH

#include "backend/cuda/cu_internal.cuh"
#include "backend/cuda/cuda_mvf.h"

#define MVF_WARPS 8
#define MVF_THREADS (MVF_WARPS * 32)
#define MVF_TR (2 * MVF_WARPS)    /* rows per tile: two per warp */
#define MVF_NS 6                  /* most tiles in the ring (mvf_args.ns) */
#define MVF_TILE 32768            /* bytes per tile */
#define MVF_T 8                   /* tokens per launch */
#define MVF_XMAX (96 * 1024)      /* staged activations, bytes */
/* columns written per block of the standalone norm (HEARTH_CUDA_MVF_NORM_PART, a multiple
 * of 32): 128 measured on an H200 (F16 tg128, three interleaved rounds) 957-965 t/s against
 * 950-951 for 512, 902-915 for 32/64, 903-928 for 1024/2048; on another H200 966-967
 * against 960-961 for 512 */
#define MVF_NORM_PART 128
#define MVF_SMEM_MAX (224 * 1024) /* dynamic shared memory of the streaming kernel */

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
    int xv;                       /* x rows 16-byte aligned (float4 loads) */
    int norm;
    int mode;                     /* tuning: 0 bulk copies (L2 evict-first), 1 bulk copies, 2 16-byte cp.async; +4 no math; +8 one waiter */
    int ns;                       /* tiles in the ring */
    const float *nw;
    float eps;
    float *ny;
    int64_t nys;
    int early;                    /* one token: read the residual targets before the PDL wait */
    int enorm;                    /* mvp4 with EN: the RMSNorm of x applied in the epilogue (nw, eps, ny) */
    int tsplit;                   /* mvp4t_kernel: block pairs share row groups, tokens split between them */
    int ngl;                      /* persistent kernels: column groups read and multiplied (0: all; HEARTH_CUDA_X_COLS) */
    int xskip, xskip_pf;          /* one-token persistent kernel: only blocks b % xskip == 0 read x (0, 1: all), the others
                                   * prefetch it with xskip_pf (HEARTH_CUDA_X_SKIP, _PF: diagnostics) */
} mvf_args;

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

/* ss + the squares of the 8 values a, c (in order). */
static __device__ __forceinline__ float mvf_dot8_sq(float4 a, float4 c, float ss) {
    ss = fmaf(a.x, a.x, ss), ss = fmaf(a.y, a.y, ss), ss = fmaf(a.z, a.z, ss), ss = fmaf(a.w, a.w, ss);
    ss = fmaf(c.x, c.x, ss), ss = fmaf(c.y, c.y, ss), ss = fmaf(c.z, c.z, ss), ss = fmaf(c.w, c.w, ss);
    return ss;
}

/* Launches the persistent one-token kernel (cu_mvf_ps.cu) for A with thr threads per block
 * (the four-row kernels' choice; en: the norm in the epilogue) when the switches and the
 * shape allow it; *done = 1 when it did, else the caller runs the four-row kernel. */
int cu_mvp4s_launch(cuda_ctx *c, const mvf_args *A, int thr, bool en, int *done, hb_err *err);
/* The persistent kernel for 2..8 tokens (cu_mvf_ps.cu; HEARTH_CUDA_MVF_PB=0: off), the same
 * contract as cu_mvp4s_launch. */
int cu_mvp4t_launch(cuda_ctx *c, const mvf_args *A, int thr, bool en, int *done, hb_err *err);

#endif
