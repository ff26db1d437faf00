/* cu_mega.cu — the persistent decode kernel: a whole decode step (the recorded, fused op list
 * of be_cuda.c) run by ONE cooperative launch instead of ~250 kernels.
 *
 * Why: at decode a step reads ~0.6 GB of weights (Q4_0, TinyLlama-1.1B shape), ~140 us of
 * H200 bandwidth, but ~250 dependent kernels cost ~1.1 ms: each waits for the previous one,
 * ramps up, fetches its weights from DRAM, reduces and drains. Here every block of the grid
 * (all co-resident: 1-2 per SM) walks the same program of ops; each op's work (matrix rows,
 * norm rows, attention split blocks, elements) is spread over all blocks, and a grid barrier
 * (one global counter) separates an op from the next one that depends on it. Two latencies
 * go away besides the launches:
 *  - the weights of the next matrix product are prefetched into L2 (cp.async.bulk.prefetch,
 *    one instruction per block) while the current product and the ops between run, so a
 *    product reads from L2 instead of waiting on DRAM;
 *  - an RMSNorm (or an activation quantization) that feeds a product is recomputed by every
 *    block into its own shared memory (2048 floats per token: cheap from L2), so the norm
 *    costs no barrier of its own.
 * The program is built on the host by the cuda_mega_* recording calls (which mirror the
 * per-op entry points of cuda.h and refuse what the kernel cannot do, so that the caller
 * keeps the kernel-per-op path for that step), cached by the step's signature, and uploaded
 * once. Arithmetic per token does not depend on the batch size (so 8 sequences decoded
 * together equal each decoded alone) and follows the per-op kernels (int8 activations with
 * dp4a for quantized weights, the same attention code, cu_attn.cuh).
 *
 * CUDA C: no classes, no templates of our own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_mega.cuh"
#include "backend/cuda/cu_mega_mv.cuh"
#include "backend/cuda/cu_unpack.cuh"
#include "backend/cuda/cu_mega_attn.cuh"


static __constant__ int8_t mk_iq4_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113 };

/* ---- grid barrier ----------------------------------------------------------------------- */

/* Every block adds 1 to the counter and waits until it reaches target (the host passes a
 * base that grows by barriers x blocks per launch, so the counter is never reset). */
static __device__ __forceinline__ void mk_barrier(unsigned long long *ctr, unsigned long long target) {
    MK_SYNC();
    if (threadIdx.x == 0) { /* release: the block's writes (ordered by the barrier above) go first */
        asm volatile("red.release.gpu.global.add.u64 [%0], 1;\n" ::"l"(ctr) : "memory");
        unsigned long long v;
        do {
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];\n" : "=l"(v) : "l"(ctr) : "memory");
        } while (v < target);
    }
    MK_SYNC();
}

/* ---- activations ------------------------------------------------------------------------ */

/* Quantizes one 32-value chunk held one value per lane (as act_quant_kernel). */
static __device__ __forceinline__ void mk_q8(float v, int lane, int64_t ch, int64_t e, int8_t *xq, float *xd,
                                             int2 *xs) {
    float amax = cu_warp_max(fabsf(v));
    float id = amax > 0.0f ? 127.0f / amax : 0.0f, s = v * id;
    int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
    q = q > 127 ? 127 : (q < -127 ? -127 : q);
    xq[e] = (int8_t)q;
    int hs = q;
    for (int o = 8; o > 0; o >>= 1) hs += __shfl_xor_sync(0xffffffffu, hs, o);
    int other = __shfl_sync(0xffffffffu, hs, 16);
    if (lane == 0) {
        xd[ch] = amax / 127.0f;
        xs[ch] = make_int2(hs, other);
    }
}

/* 1 / rms of row xr (n floats) over the block; red: 32 floats of shared memory. */
static __device__ __forceinline__ float mk_rms(const float *xr, int64_t n, float eps, float *red) {
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += MK_THREADS) ss += xr[i] * xr[i];
    return mk_block_rms(ss, n, eps, red);
}

/* The product's activations in this block's shared memory: x (SRC_QUANT) or its RMSNorm
 * (SRC_NORM; block 0 also writes the normalized rows to op->out when set). Each thread owns
 * 8 consecutive values and 4 threads a 32-value chunk, so a row of 2048 takes one pass
 * whose loads are all in flight at once (a warp per chunk was a chain of L2 round trips). */
static __device__ void mk_prologue(const mk_op *op, int8_t *sq, float *sd, int2 *ss, float *red) {
    int64_t n = op->cols;
    bool norm = op->flag == SRC_NORM;
    const float *nw = op->nw_w;
    int g = threadIdx.x & 3;
    for (int t = 0; t < op->n_tok; t++) {
        const float *xr = op->x + t * op->xs;
        float k = 1.0f, xv[8], wv[8];
        bool one = n <= MK_THREADS * 8; /* one pass: x and the norm weights loaded together, once */
        if (one) {
            int64_t e0 = threadIdx.x * 8;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                xv[j] = e0 < n ? xr[e0 + j] : 0.0f;
                wv[j] = e0 < n && norm && nw ? nw[e0 + j] : 1.0f;
            }
        }
        if (norm) {
            float s2 = 0.0f;
            if (one) {
#pragma unroll
                for (int j = 0; j < 8; j++) s2 += xv[j] * xv[j];
            } else {
#pragma unroll 2
                for (int64_t e0 = threadIdx.x * 8; e0 < n; e0 += MK_THREADS * 8)
#pragma unroll
                    for (int j = 0; j < 8; j++) s2 += xr[e0 + j] * xr[e0 + j];
            }
            k = mk_block_rms(s2, n, op->eps, red);
        }
        for (int64_t b0 = 0; b0 < n; b0 += MK_THREADS * 8) { /* uniform: every lane shuffles */
            int64_t e0 = b0 + threadIdx.x * 8;
            bool in = e0 < n;
            float o[8], am = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float v = one ? xv[j] : (in ? xr[e0 + j] : 0.0f);
                if (norm) v = v * k * (one ? wv[j] : (nw && in ? nw[e0 + j] : 1.0f));
                o[j] = v;
                am = fmaxf(am, fabsf(v));
            }
            if (in && norm && op->out && blockIdx.x == 0)
#pragma unroll
                for (int j = 0; j < 8; j++) op->out[t * n + e0 + j] = o[j];
            am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, 1));
            am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, 2));
            float id = am > 0.0f ? 127.0f / am : 0.0f;
            int sum = 0;
            uint32_t w0 = 0, w1 = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float s = o[j] * id;
                int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
                q = q > 127 ? 127 : (q < -127 ? -127 : q);
                sum += q;
                if (j < 4) w0 |= (uint32_t)(uint8_t)(int8_t)q << (8 * j);
                else w1 |= (uint32_t)(uint8_t)(int8_t)q << (8 * (j - 4));
            }
            int half = sum + __shfl_xor_sync(0xffffffffu, sum, 1); /* values 0..15 or 16..31 */
            int other = __shfl_xor_sync(0xffffffffu, half, 2);
            if (in) {
                *(int2 *)(sq + t * n + e0) = make_int2((int)w0, (int)w1);
                if (g == 0) {
                    int64_t ch = (t * n + e0) / 32;
                    sd[ch] = am / 127.0f;
                    ss[ch] = make_int2(half, other);
                }
            }
        }
    }
    MK_SYNC();
}

/* ---- matrix x vector --------------------------------------------------------------------- */


/* One product: the activations (quantized or f32 into this block's act region, unless they
 * come from the global buffer / global memory), then the block's tiles of the weight stream.
 * Returns the stream position after the product. */
static __device__ uint32_t mk_matvec_run(const mk_op *op, uint8_t *ring, uint64_t *bars, float *pbuf, uint32_t k,
                                         uint8_t *act, const int8_t *lut, float *red, unsigned long long *pt,
                                         unsigned long long *tw) {
    if (op->wtype == QT_F32 || op->wtype == QT_F16 || op->wtype == QT_BF16) {
        const float *x = op->x;
        int64_t xstr = op->xs;
        if (op->flag != SRC_GLOBAL) {
            mk_prologue_f(op, (float *)act, red);
            x = (const float *)act, xstr = op->cols;
        }
        if (pt && threadIdx.x == 0) *pt = cu_globaltimer();
        if (op->n_tok == 1) return mk_mv1_float(op, x, ring, bars, pbuf, k, tw);
        return mk_mv_float(op, x, xstr, ring, bars, pbuf, k, tw);
    }
    const int8_t *xq = op->xq;
    const float *xd = op->xd;
    const int2 *xs = op->xsum;
    if (op->flag != SRC_GLOBAL) {
        int64_t nq = (int64_t)op->n_tok * op->cols, nc = nq / 32;
        int8_t *sq = (int8_t *)act;
        float *sd = (float *)(sq + ((nq + 15) & ~(int64_t)15));
        int2 *ss = (int2 *)(sd + ((nc + 1) & ~(int64_t)1));
        mk_prologue(op, sq, sd, ss, red);
        xq = sq, xd = sd, xs = ss;
    }
    if (pt && threadIdx.x == 0) *pt = cu_globaltimer();
    if (op->n_tok == 1 && mk_regs(op)) {
        switch (op->wtype) {
        MK_RTYPES(MK_CASE_MV1R)
        default: break;
        }
    }
    if (op->n_tok == 1) {
        switch (op->wtype) {
        MK_QTYPES(MK_CASE_MV1)
        default: break;
        }
    }
    switch (op->wtype) {
    MK_QTYPES(MK_CASE_MV)
    default: return k; /* refused when recorded */
    }
}

/* mk_matvec_run, and for profiling (pt: block 0, thread 0) the time it waited for tiles. */
static __device__ uint32_t mk_matvec(const mk_op *op, uint8_t *ring, uint64_t *bars, float *pbuf, uint32_t k,
                                     uint8_t *act, const int8_t *lut, float *red, unsigned long long *pt) {
    unsigned long long wsum = 0;
    k = mk_matvec_run(op, ring, bars, pbuf, k, act, lut, red, pt, pt ? &wsum : NULL);
    if (pt) pt[3] = wsum;
    return k;
}

/* ---- the other ops --------------------------------------------------------------------- */

/* RMSNorm of n_rows rows (one block per row); flag: also quantize into the global buffer. */
static __device__ void mk_norm(const mk_op *op, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t n = op->n, nch = n / 32;
    for (int64_t row = blockIdx.x; row < op->n_rows; row += gridDim.x) {
        const float *xr = op->x + row * op->xs;
        float *yr = op->out + row * op->os;
        float k = mk_rms(xr, n, op->eps, red);
        MK_SYNC(); /* every thread has read x before y (possibly x itself) is written */
        if (op->flag) {
            for (int64_t ch = warp; ch < nch; ch += MK_WARPS) {
                int64_t i = ch * 32 + lane;
                float v = xr[i] * k * (op->nw_w ? op->nw_w[i] : 1.0f);
                yr[i] = v;
                mk_q8(v, lane, row * nch + ch, row * n + i, op->xq, op->xd, op->xsum);
            }
        } else {
            for (int64_t i = threadIdx.x; i < n; i += MK_THREADS) yr[i] = xr[i] * k * (op->nw_w ? op->nw_w[i] : 1.0f);
        }
    }
}

/* x [n_tok][n] -> the global activation buffer, one warp per chunk. */
static __device__ void mk_quant(const mk_op *op) {
    int lane = threadIdx.x & 31;
    int64_t gw = (int64_t)blockIdx.x * MK_WARPS + (threadIdx.x >> 5), W = (int64_t)gridDim.x * MK_WARPS;
    int64_t nch = op->n / 32, total = op->n_tok * nch;
    for (int64_t ch = gw; ch < total; ch += W) {
        int64_t t = ch / nch, e = t * op->n + (ch % nch) * 32 + lane;
        mk_q8(op->x[t * op->xs + (ch % nch) * 32 + lane], lane, ch, e, op->xq, op->xd, op->xsum);
    }
}

/* out = act(gate) * up; flag & 2: also quantized (one warp per chunk). */
static __device__ void mk_glu(const mk_op *op) {
    int gelu = op->flag & 1, lane = threadIdx.x & 31;
    int64_t n = op->n;
    if (op->flag & 2) {
        int64_t gw = (int64_t)blockIdx.x * MK_WARPS + (threadIdx.x >> 5), W = (int64_t)gridDim.x * MK_WARPS;
        int64_t nch = n / 32;
        for (int64_t ch = gw; ch < op->n_tok * nch; ch += W) {
            int64_t t = ch / nch, i = (ch % nch) * 32 + lane;
            float o = cu_glu_act(gelu, op->x[t * op->xs + i]) * op->aux[t * op->as + i];
            op->out[t * n + i] = o;
            mk_q8(o, lane, ch, t * n + i, op->xq, op->xd, op->xsum);
        }
        return;
    }
    int64_t g = (int64_t)blockIdx.x * MK_THREADS + threadIdx.x, G = (int64_t)gridDim.x * MK_THREADS;
    for (int64_t k = g; k < op->n_tok * n; k += G) {
        int64_t t = k / n, i = k % n;
        op->out[t * op->os + i] = cu_glu_act(gelu, op->x[t * op->xs + i]) * op->aux[t * op->as + i];
    }
}

/* Stores value v at element i of a cache row (f16 or f32). */
static __device__ __forceinline__ void mk_kv_put(uint8_t *row, uint32_t type, int64_t i, float v) {
    if (type == QT_F16) ((__half *)row)[i] = __float2half_rn(v);
    else ((float *)row)[i] = v;
}

/* RoPE of one or two tensors (as rope_kernel, cu_ops.cu). With op->kc set (the KV store
 * that followed, fused in by cuda_mega_kv_store) the rotated k values (second tensor) also
 * go into the cache, and items past the rotations copy v there. */
static __device__ void mk_rope(const mk_op *op) {
    int32_t half = op->rope.n_rot / 2;
    int64_t n1 = op->n_tok * op->n_head * half, n12 = n1 + op->n_tok * op->n_head2 * half;
    int64_t total = n12 + (op->kc ? op->n_tok * op->kv_dim : 0);
    int64_t g = (int64_t)blockIdx.x * MK_THREADS + threadIdx.x, G = (int64_t)gridDim.x * MK_THREADS;
    for (int64_t k0 = g; k0 < total; k0 += G) {
        if (k0 >= n12) { /* v into the cache */
            int64_t idx = k0 - n12, t = idx / op->kv_dim, i = idx % op->kv_dim;
            size_t cell = (size_t)op->seq[t] * (size_t)op->n_ctx + (size_t)op->pos[t];
            mk_kv_put(op->vc + cell * op->kv_row_bytes, op->kv_type, i, op->aux[t * op->as + i]);
            continue;
        }
        int64_t k = k0, stride = op->xs;
        float *x = op->out;
        int32_t nh = op->n_head;
        if (k >= n1) k -= n1, x = op->x2, stride = op->stride2, nh = op->n_head2;
        int32_t i = (int32_t)(k % half);
        int64_t th = k / half, t = th / nh, h = th % nh;
        double inv = pow((double)op->rope.base, -2.0 * i / (double)op->rope.n_rot);
        double theta = (double)op->pos[t] * op->rope.freq_scale * inv;
        if (op->rope.factors) theta /= op->rope.factors[i];
        double sd, cd;
        sincos(theta, &sd, &cd);
        float cs = (float)(cd * op->rope.attn_factor), sn = (float)(sd * op->rope.attn_factor);
        float *v = x + t * stride + h * op->head_dim;
        int32_t a = op->rope.neox ? i : 2 * i, b = op->rope.neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b], y0 = x0 * cs - x1 * sn, y1 = x0 * sn + x1 * cs;
        v[a] = y0;
        v[b] = y1;
        if (op->kc && k0 >= n1) {
            size_t cell = (size_t)op->seq[t] * (size_t)op->n_ctx + (size_t)op->pos[t];
            uint8_t *row = op->kc + cell * op->kv_row_bytes;
            mk_kv_put(row, op->kv_type, h * op->head_dim + a, y0);
            mk_kv_put(row, op->kv_type, h * op->head_dim + b, y1);
        }
    }
}

/* KV store: k rows (x, xs) and v rows (aux, as) into the cache cells (seq, pos). */
static __device__ void mk_kv(const mk_op *op) {
    int64_t dim = op->kv_dim;
    if (op->kv_type == QT_Q8_0) {
        int lane = threadIdx.x & 31;
        int64_t gw = (int64_t)blockIdx.x * MK_WARPS + (threadIdx.x >> 5), W = (int64_t)gridDim.x * MK_WARPS;
        int64_t nb = dim / 32;
        for (int64_t w = gw; w < op->n_tok * nb; w += W) {
            int64_t t = w / nb, b = w % nb;
            size_t cell = (size_t)op->seq[t] * (size_t)op->n_ctx + (size_t)op->pos[t];
            q8_block_store(op->kc + cell * op->kv_row_bytes + b * 34, op->x[t * op->xs + b * 32 + lane], lane);
            q8_block_store(op->vc + cell * op->kv_row_bytes + b * 34, op->aux[t * op->as + b * 32 + lane], lane);
        }
        return;
    }
    int64_t g = (int64_t)blockIdx.x * MK_THREADS + threadIdx.x, G = (int64_t)gridDim.x * MK_THREADS;
    for (int64_t idx = g; idx < op->n_tok * dim; idx += G) {
        int64_t t = idx / dim, i = idx % dim;
        size_t cell = (size_t)op->seq[t] * (size_t)op->n_ctx + (size_t)op->pos[t];
        float k = op->x[t * op->xs + i], v = op->aux[t * op->as + i];
        if (op->kv_type == QT_F16) {
            ((__half *)(op->kc + cell * op->kv_row_bytes))[i] = __float2half_rn(k);
            ((__half *)(op->vc + cell * op->kv_row_bytes))[i] = __float2half_rn(v);
        } else {
            ((float *)(op->kc + cell * op->kv_row_bytes))[i] = k;
            ((float *)(op->vc + cell * op->kv_row_bytes))[i] = v;
        }
    }
}

static __device__ __noinline__ void mk_attn(const mk_op *op, float *sm) {
    unsigned n = op->at_gx * op->at_gy;
    for (unsigned b = blockIdx.x; b < n; b += gridDim.x) {
        at_split_block(op->at, b % op->at_gx, (int32_t)(b / op->at_gx), sm);
        MK_SYNC();
    }
}

static __device__ void mk_combine(const mk_op *op) {
    int64_t gw = (int64_t)blockIdx.x * MK_WARPS + (threadIdx.x >> 5), W = (int64_t)gridDim.x * MK_WARPS;
    for (int64_t th = gw; th < (int64_t)op->n_tok * op->n_head; th += W)
        at_combine(op->at.part, op->n_head, op->at_split, op->head_dim, op->out, op->os, th, threadIdx.x & 31, 32);
}

/* copy rows (+ bias) and the element-wise ops (flag: 0 add, 1 scale, 2 softcap). */
static __device__ void mk_elt(const mk_op *op) {
    int64_t g = (int64_t)blockIdx.x * MK_THREADS + threadIdx.x, G = (int64_t)gridDim.x * MK_THREADS;
    if (op->kind == MK_COPY) {
        for (int64_t k = g; k < op->n_tok * op->n; k += G) {
            int64_t t = k / op->n, i = k % op->n;
            op->out[t * op->os + i] = op->x[t * op->xs + i] + (op->aux ? op->aux[i] : 0.0f);
        }
        return;
    }
    for (int64_t i = g; i < op->n; i += G) {
        if (op->flag == 0) op->out[i] += op->x[i];
        else if (op->flag == 1) op->out[i] *= op->f0;
        else op->out[i] = op->f0 * tanhf(op->out[i] / op->f0);
    }
}

/* Copies op (8-byte words) into shared memory; the caller synchronizes the block. */
/* Starts an asynchronous copy of op into shared memory (complete after cp.async.wait_all
 * and a block barrier), so its latency hides behind the current op's work. */
static __device__ __forceinline__ void mk_load_op(mk_op *dst, const mk_op *src) {
    for (int i = threadIdx.x; i < (int)(sizeof(mk_op) / 16); i += MK_THREADS)
        mq_cp((uint8_t *)dst + 16 * i, (const uint8_t *)src + 16 * i, 16);
}

static __device__ __forceinline__ void mk_load_wait(void) {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

/* Every block (one per SM) runs every op of the program with its MK_THREADS op threads, while
 * its producer warp streams the weights of all the program's products into the ring
 * (cu_mega_mv.cuh). An op's descriptor is read from shared memory (the next one is loaded
 * while the block waits at the barrier), so the op's code does not wait on chains of global
 * loads of its own arguments. prof (block 0, optional): the global timer at the start and
 * after each op. Dynamic shared memory: the ring (MK_NS slots), then the act region. */
static __global__ void __launch_bounds__(MK_BLOCK, 1)
    mk_kernel(const mk_op *prog, int n_ops, unsigned long long *bar, unsigned long long base,
              unsigned long long *prof) {
    extern __shared__ __align__(128) uint8_t mk_smem[];
    __shared__ __align__(16) mk_op sop[2];
    __shared__ __align__(8) uint64_t bars[2 * MK_NS]; /* full[MK_NS], empty[MK_NS] */
    __shared__ float pbuf[2 * 8 * MK_T];
    __shared__ int8_t lut[16];
    __shared__ float red[32];
    uint8_t *ring = mk_smem, *act = mk_smem + (size_t)MK_NS * MK_SLOT_STRIDE;
    if (threadIdx.x < 16) lut[threadIdx.x] = mk_iq4_levels[threadIdx.x];
    if (threadIdx.x == 0) {
        for (int s = 0; s < MK_NS; s++) cu_mbar_init(&bars[s], 1), cu_mbar_init(&bars[MK_NS + s], MK_WARPS);
        cu_mbar_init_fence();
        /* the whole program into L2, a slice per block */
        size_t bytes = (size_t)n_ops * sizeof(mk_op), chunk = ((bytes + gridDim.x - 1) / gridDim.x + 255) & ~(size_t)255;
        size_t s0 = chunk * blockIdx.x, len = s0 < bytes ? (bytes - s0 < chunk ? bytes - s0 : chunk) : 0;
        if (len)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"((const uint8_t *)prog + s0),
                         "r"((unsigned)len)
                         : "memory");
    }
    __syncthreads(); /* the only barrier of all MK_BLOCK threads */
    if (threadIdx.x >= MK_THREADS) {
        if (threadIdx.x == MK_THREADS) mk_produce(prog, n_ops, ring, bars, blockIdx.x == 0 ? prof : NULL);
        return;
    }
    if (n_ops > 0) mk_load_op(&sop[0], prog);
    mk_load_wait();
    MK_SYNC();
    unsigned long long nb = 0;
    uint32_t k = 0; /* tiles of the weight stream consumed */
    bool tm = prof && blockIdx.x == 0 && threadIdx.x == 0;
    for (int i = 0; i < n_ops; i++) {
        const mk_op *op = &sop[i & 1];
        if (tm) {
            prof[MK_PN * i] = prof[MK_PN * i + 1] = cu_globaltimer(), prof[MK_PN * i + 4] = 0;
            /* one dependent global round trip, timed (a word the previous op may have written) */
            const float *probe = op->x ? op->x : (const float *)bar;
            unsigned long long c0 = clock64();
            float v = *(volatile const float *)probe;
            *(volatile float *)&red[31] = v; /* in-order issue: the clock is read after v arrived */
            unsigned long long c1 = clock64();
            prof[MK_PN * i + 7] = c1 - c0;
        }
        if (i + 1 < n_ops) mk_load_op(&sop[(i + 1) & 1], prog + i + 1); /* buffer of op i-1: done */
        switch (op->kind) {
        case MK_MATVEC: k = mk_matvec(op, ring, bars, pbuf, k, act, lut, red, tm ? prof + MK_PN * i + 1 : NULL); break;
        case MK_NORM: mk_norm(op, red); break;
        case MK_QUANT: mk_quant(op); break;
        case MK_ROPE: mk_rope(op); break;
        case MK_KV: mk_kv(op); break;
        case MK_ATTN: mk_attn(op, (float *)act); break;
        case MK_COMBINE: mk_combine(op); break;
        case MK_ATTN_DEC: mk_attn_dec(op, act); break;
        case MK_GLU: mk_glu(op); break;
        default: mk_elt(op); break;
        }
        if (tm) prof[MK_PN * i + 5 + (op->kind == MK_MATVEC)] = cu_globaltimer(); /* the op's own work done */
        mk_load_wait();
        MK_SYNC();
        if (tm) prof[MK_PN * i + 2] = cu_globaltimer();
        if (op->sync) mk_barrier(bar, base + (++nb) * gridDim.x);
        if (tm) prof[MK_PN * i + 3] = cu_globaltimer();
    }
}

/* ---- host: caching and launching (recording and planning: cu_mega_rec.cu) ---------- */

/* Grows a mega-owned buffer; returns 1 when it moved (cached programs are then stale). */
static int mk_grow(cuda_mega *m, void **p, size_t *cap, size_t need, hb_err *err, int *rc) {
    if (need <= *cap) return 0;
    if ((*rc = cuda_sync(m->c, err))) return 0;
    cuda_free(m->c, *p);
    *p = NULL;
    *cap = 0;
    if ((*rc = cuda_alloc(m->c, p, need * 2, err))) return 0;
    *cap = need * 2;
    return 1;
}

static void mk_drop_cache(cuda_mega *m) {
    for (int i = 0; i < MK_CACHE; i++) {
        cuda_free(m->c, m->cache[i].dev);
        memset(&m->cache[i], 0, sizeof m->cache[i]);
    }
}

/* Profiling: adds the step's per-op times (read back at once) to the totals. */
static void mk_prof_step(cuda_mega *m, const mk_prog *p) {
    hb_err err;
    if (cuda_download(m->c, m->prof_host, m->prof_dev, (size_t)p->n_ops * MK_PN * 8, &err)) return;
    mk_op *ops = (mk_op *)malloc((size_t)p->n_ops * sizeof *ops);
    if (!ops || cuda_download(m->c, ops, p->dev, (size_t)p->n_ops * sizeof *ops, &err)) {
        free(ops);
        return;
    }
    for (int i = 0; i < p->n_ops; i++) {
        const unsigned long long *t = m->prof_host + MK_PN * i;
        int kk = ops[i].kind == MK_MATVEC ? 10 + (ops[i].flag & 3) : (ops[i].kind == MK_ATTN_DEC ? 13 : ops[i].kind & 15);
        m->prof_ns[kk] += (double)(t[3] - t[0]), m->prof_n[kk]++;
        m->prof_part[kk][0] += (double)(t[1] - t[0]), m->prof_part[kk][1] += (double)(t[2] - t[1]);
        m->prof_part[kk][2] += (double)(t[3] - t[2]);
        if (ops[i].kind == MK_MATVEC) /* waiting for tiles; the producer's first copy against the op's start */
            m->prof_part[kk][3] += (double)t[4], m->prof_part[kk][4] += (double)(long long)(t[5] - t[0]);
        /* the op's own work against its whole work phase (the rest: the block's slowest warp and
         * the next op's descriptor) */
        m->prof_part[kk][5] += (double)(long long)(t[ops[i].kind == MK_MATVEC ? 6 : 5] - t[1]);
        m->prof_rt += (double)t[7], m->prof_rt_n++;
        if (ops[i].sync) m->prof_syncs++;
    }
    m->prof_steps++;
    free(ops);
}

static int mk_launch(cuda_mega *m, const mk_prog *p, hb_err *err) {
    int n_ops = p->n_ops;
    const mk_op *prog = p->dev;
    unsigned long long *bar = m->bar, base = m->base, *prof = NULL;
    if (m->prof_cap && m->prof_cap > MK_PN * n_ops) prof = m->prof_dev;
    void *args[] = { (void *)&prog, (void *)&n_ops, (void *)&bar, (void *)&base, (void *)&prof };
    cudaError_t e = cudaLaunchCooperativeKernel((const void *)mk_kernel, dim3((unsigned)m->nb), dim3(MK_BLOCK), args,
                                                m->smem, m->c->stream);
    if (e != cudaSuccess) return cu_fail(err, e, "launching the persistent decode kernel");
    m->base += (unsigned long long)p->n_sync * (unsigned long long)m->nb;
    if (prof) mk_prof_step(m, p);
    return HEARTH_OK;
}

extern "C" int cuda_mega_run_cached(cuda_mega *m, uint64_t sig, int *launched, hb_err *err) {
    *launched = 0;
    for (int i = 0; i < MK_CACHE; i++) {
        mk_prog *p = &m->cache[i];
        if (p->dev && p->sig == sig) {
            p->last_use = ++m->clock;
            *launched = 1;
            return mk_launch(m, p, err);
        }
    }
    return HEARTH_OK;
}

extern "C" int cuda_mega_end(cuda_mega *m, uint64_t sig, hb_err *err) {
    int rc = HEARTH_OK;
    if (m->bad) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: step not runnable as one kernel");
    if (!m->n_ops) return HEARTH_OK; /* nothing left to run */
    int moved = mk_grow(m, &m->act, &m->act_cap, m->act_need, err, &rc);
    if (!rc) moved |= mk_grow(m, &m->part, &m->part_cap, m->part_need, err, &rc);
    if (rc) return rc;
    if (moved) mk_drop_cache(m);
    int n_sync = cu_mega_plan(m);
    mk_prog *p = &m->cache[0];
    for (int i = 1; i < MK_CACHE; i++)
        if (m->cache[i].last_use < p->last_use) p = &m->cache[i];
    if (p->dev) {
        if ((rc = cuda_sync(m->c, err))) return rc; /* a launch may still read it */
        cuda_free(m->c, p->dev);
    }
    memset(p, 0, sizeof *p);
    void *dev = NULL;
    if ((rc = cuda_alloc(m->c, &dev, (size_t)m->n_ops * sizeof(mk_op), err))) return rc;
    if ((rc = cuda_upload(m->c, dev, m->ops, (size_t)m->n_ops * sizeof(mk_op), err))) {
        cuda_free(m->c, dev);
        return rc;
    }
    p->dev = (mk_op *)dev, p->sig = sig, p->n_ops = m->n_ops, p->n_sync = n_sync, p->last_use = ++m->clock;
    return mk_launch(m, p, err);
}

extern "C" int cuda_mega_new(cuda_ctx *c, cuda_mega **out, hb_err *err) {
    int rc, per_sm = 0, coop = 0;
    *out = NULL;
    cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, c->info.ordinal);
    if (!coop) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no cooperative launch on this device");
    size_t smem = (size_t)MK_NS * MK_SLOT_STRIDE + MK_ACT;
    cudaError_t e = cudaFuncSetAttribute(mk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mk_kernel, MK_BLOCK, smem);
    if (e != cudaSuccess) return cu_fail(err, e, "sizing the persistent decode kernel");
    if (per_sm < 1) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: the persistent decode kernel does not fit an SM");
    cuda_mega *m = (cuda_mega *)calloc(1, sizeof *m);
    if (!m) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    m->c = c, m->smem = smem, m->nb = c->info.sm_count; /* one block per SM: its shared memory is the ring */
    m->adec_mode = c->knobs.mega_adec; /* HEARTH_CUDA_MEGA_ADEC; 2: the fallback of mk_adec_fix, always (tests) */
    if ((rc = cuda_alloc(c, (void **)&m->bar, sizeof *m->bar, err))) {
        cuda_mega_free(m);
        return rc;
    }
    if ((e = cudaMemsetAsync(m->bar, 0, sizeof *m->bar, c->stream)) != cudaSuccess) {
        cuda_mega_free(m);
        return cu_fail(err, e, "clearing the barrier");
    }
    if (c->knobs.mega_prof) {
        m->prof_cap = 32768;
        if (cuda_alloc(c, (void **)&m->prof_dev, (size_t)m->prof_cap * 8, err) ||
            cuda_host_alloc((size_t)m->prof_cap * 8, (void **)&m->prof_host, err))
            m->prof_cap = 0;
    }
    *out = m;
    return HEARTH_OK;
}

extern "C" void cuda_mega_free(cuda_mega *m) {
    if (!m) return;
    hb_err err;
    cuda_sync(m->c, &err);
    mk_drop_cache(m);
    cuda_free(m->c, m->act);
    cuda_free(m->c, m->part);
    cuda_free(m->c, m->bar);
    if (m->prof_steps) {
        static const char *names[] = { "matvec", "norm",   "quant",  "rope",   "kv",     "attn",   "combine",
                                       "copy",   "elt",    "glu",    "mv-glob", "mv-norm", "mv-quant", "attn-dec" };
        fprintf(stderr, "mega: %ld steps, %.1f barriers/step, %d blocks, one global load at an op's start: %.0f cycles\n",
                m->prof_steps, (double)m->prof_syncs / m->prof_steps, m->nb, m->prof_rt / (m->prof_rt_n ? m->prof_rt_n : 1));
        for (int k = 0; k < 14; k++)
            if (m->prof_n[k])
                fprintf(stderr, "mega: %-8s %6.1f us/step  %5.1f per step  %6.2f us each (prologue %.2f, work %.2f [thread 0: %.2f], barrier %.2f; tile waits %.2f, first copy at %+.2f)\n",
                        names[k], m->prof_ns[k] / 1e3 / m->prof_steps, (double)m->prof_n[k] / m->prof_steps,
                        m->prof_ns[k] / 1e3 / m->prof_n[k], m->prof_part[k][0] / 1e3 / m->prof_n[k],
                        m->prof_part[k][1] / 1e3 / m->prof_n[k], m->prof_part[k][5] / 1e3 / m->prof_n[k],
                        m->prof_part[k][2] / 1e3 / m->prof_n[k],
                        m->prof_part[k][3] / 1e3 / m->prof_n[k], m->prof_part[k][4] / 1e3 / m->prof_n[k]);
    }
    cuda_free(m->c, m->prof_dev);
    cuda_host_free(m->prof_host);
    free(m->ops);
    free(m->meta);
    free(m);
}
