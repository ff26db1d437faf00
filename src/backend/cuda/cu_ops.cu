/* cu_ops.cu — the non-matmul ops of a decoder step on the GPU: RMSNorm, RoPE, KV-cache
 * stores (f32 / f16 / q8_0), attention over the cache split across thread blocks, and the
 * element-wise ops. Semantics follow the CPU backend (src/backend/cpu/ops*.c) exactly; the
 * arithmetic differs only in summation order (and RoPE angles are computed in double, as
 * there).
 */
#include <math.h>
#include <string.h>

#include "backend/cuda/cu_internal.cuh"

/* ---- staging of small host arrays --------------------------------------------------------- */

int cuda_stage_i32(cuda_ctx *c, int slot, const int32_t *src_host, int64_t n, const int32_t **out_dev, hb_err *err) {
    int rc;
    cudaError_t e;
    *out_dev = NULL;
    if (slot < 0 || slot >= CUDA_STAGE_SLOTS || n < 0) return hb_fail(err, HEARTH_E_INTERNAL, "bad staging slot");
    cu_stage *s = &c->stage[slot];
    size_t bytes = (size_t)(n ? n : 1) * sizeof(int32_t);
    if (s->ev) cudaEventSynchronize(s->ev); /* the pinned buffer may still be in flight */
    if (bytes > s->cap) {
        if (s->host) cudaFreeHost(s->host);
        s->host = NULL;
        s->cap = 0;
        if ((e = cudaMallocHost(&s->host, bytes * 2)) != cudaSuccess) return cu_fail(err, e, "allocating pinned memory");
        if ((rc = cu_scratch_reserve(&s->dev, bytes * 2, err))) return rc;
        s->cap = bytes * 2;
    }
    if (!s->ev && (e = cudaEventCreateWithFlags(&s->ev, cudaEventDisableTiming)) != cudaSuccess)
        return cu_fail(err, e, "creating an event");
    memcpy(s->host, src_host, (size_t)n * sizeof(int32_t));
    if ((e = cudaMemcpyAsync(s->dev.p, s->host, bytes, cudaMemcpyHostToDevice, c->stream)) != cudaSuccess)
        return cu_fail(err, e, "uploading positions");
    cudaEventRecord(s->ev, c->stream);
    *out_dev = (const int32_t *)s->dev.p;
    return HEARTH_OK;
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */

/* One block per row; sum of squares in f32 with a tree reduction. */
static __global__ void rmsnorm_kernel(const float *x, int64_t xs, float *y, int64_t ys, int64_t n, const float *w,
                                      float eps) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    __shared__ float part[32];
    const float *xr = x + blockIdx.x * xs;
    float *yr = y + blockIdx.x * ys;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = cu_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;
        v = cu_warp_sum(v);
        if (threadIdx.x == 0) part[0] = v;
    }
    __syncthreads();
    float k = rsqrtf(part[0] / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w ? xr[i] * k * w[i] : xr[i] * k;
}

int cuda_rmsnorm(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                 const float *w, float eps, hb_err *err) {
    if (n_rows <= 0) return HEARTH_OK;
    int thr = n >= 1024 ? 512 : (n >= 256 ? 256 : 64);
    CU_LAUNCH(err, "launching rmsnorm", rmsnorm_kernel, (unsigned)n_rows, thr, 0, c->stream, x, xs, y, ys, n, w, eps);
    return cu_check_launch(err, "rmsnorm");
}

/* ---- RoPE --------------------------------------------------------------------------------- */

/* One thread per (token, head, pair) of one or two tensors (q and k share positions);
 * angles in double like the CPU reference. */
static __global__ void rope_kernel(float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                                   int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, int neox,
                                   int32_t n_rot, float base, float freq_scale, float attn_factor,
                                   const float *factors) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int32_t half = n_rot / 2;
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, n1 = n_tok * n_head * half;
    if (k >= n1) { /* second tensor */
        k -= n1;
        if (k >= n_tok * n_head2 * half) return;
        x = x2, stride = stride2, n_head = n_head2;
    }
    int32_t i = (int32_t)(k % half);
    int64_t th = k / half, t = th / n_head, h = th % n_head;
    double inv = pow((double)base, -2.0 * i / (double)n_rot);
    double theta = (double)pos[t] * freq_scale * inv;
    if (factors) theta /= factors[i];
    double sd, cd;
    sincos(theta, &sd, &cd);
    float cs = (float)(cd * attn_factor), sn = (float)(sd * attn_factor);
    float *v = x + t * stride + h * head_dim;
    int32_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
}

int cuda_rope_apply2(cuda_ctx *c, float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                     int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r,
                     hb_err *err) {
    int64_t n = n_tok * (n_head + (x2 ? n_head2 : 0)) * (r->n_rot / 2);
    if (n <= 0) return HEARTH_OK;
    CU_LAUNCH(err, "launching rope", rope_kernel, cu_blocks(n, 128), 128, 0, c->stream, x, stride, n_head, x2, stride2,
              x2 ? n_head2 : 0, n_tok, head_dim, pos, r->neox, r->n_rot, r->base, r->freq_scale, r->attn_factor,
              r->factors);
    return cu_check_launch(err, "rope");
}

int cuda_rope_apply(cuda_ctx *c, float *x, int64_t n_tok, int64_t stride, int32_t n_head, int32_t head_dim,
                    const int32_t *pos, const cuda_rope *r, hb_err *err) {
    return cuda_rope_apply2(c, x, stride, n_head, NULL, 0, 0, n_tok, head_dim, pos, r, err);
}

/* ---- KV cache ------------------------------------------------------------------------------ */

/* f32 / f16 rows: one thread per element of K and of V. */
static __global__ void kv_store_plain(uint8_t *kc, uint8_t *vc, int is_f16, int64_t kv_dim, size_t row_bytes,
                                      int64_t n_ctx, const float *k, int64_t ks, const float *v, int64_t vs,
                                      int64_t n_tok, const int32_t *pos, const int32_t *seq) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= n_tok * kv_dim) return;
    int64_t t = idx / kv_dim, i = idx % kv_dim;
    size_t cell = (size_t)seq[t] * (size_t)n_ctx + (size_t)pos[t];
    float kv_k = k[t * ks + i], kv_v = v[t * vs + i];
    if (is_f16) {
        ((__half *)(kc + cell * row_bytes))[i] = __float2half_rn(kv_k);
        ((__half *)(vc + cell * row_bytes))[i] = __float2half_rn(kv_v);
    } else {
        ((float *)(kc + cell * row_bytes))[i] = kv_k;
        ((float *)(vc + cell * row_bytes))[i] = kv_v;
    }
}

/* q8_0 rows: one warp per 32-element block; the scale is rounded to f16 before the codes
 * are chosen, as in the reference quantizer. */
static __device__ __forceinline__ void q8_block_store(uint8_t *dst, float x, int lane) {
    float amax = cu_warp_max(fabsf(x));
    __half dh = __float2half_rn(amax / 127.0f);
    float d = __half2float(dh), id = d != 0.0f ? 1.0f / d : 0.0f;
    float s = x * id;
    int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
    q = q > 127 ? 127 : (q < -127 ? -127 : q);
    dst[2 + lane] = (uint8_t)(int8_t)q;
    if (lane == 0) *(__half *)dst = dh;
}

static __global__ void kv_store_q8(uint8_t *kc, uint8_t *vc, int64_t kv_dim, size_t row_bytes, int64_t n_ctx,
                                   const float *k, int64_t ks, const float *v, int64_t vs, int64_t n_tok,
                                   const int32_t *pos, const int32_t *seq) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    int64_t nb = kv_dim / 32;
    if (w >= n_tok * nb) return;
    int64_t t = w / nb, b = w % nb;
    size_t cell = (size_t)seq[t] * (size_t)n_ctx + (size_t)pos[t];
    q8_block_store(kc + cell * row_bytes + b * 34, k[t * ks + b * 32 + lane], lane);
    q8_block_store(vc + cell * row_bytes + b * 34, v[t * vs + b * 32 + lane], lane);
}

int cuda_kv_store(cuda_ctx *c, const cuda_kv *kv, const float *k, int64_t ks, const float *v, int64_t vs,
                  int64_t n_tok, const int32_t *pos, const int32_t *seq, hb_err *err) {
    if (n_tok <= 0) return HEARTH_OK;
    if (kv->type == QT_Q8_0) {
        if (kv->kv_dim % 32) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: q8_0 KV rows need a multiple of 32");
        CU_LAUNCH(err, "launching the KV store", kv_store_q8, cu_blocks(n_tok * (kv->kv_dim / 32) * 32, 128), 128, 0,
                  c->stream, (uint8_t *)kv->k, (uint8_t *)kv->v, kv->kv_dim, kv->row_bytes, kv->n_ctx, k, ks, v, vs,
                  n_tok, pos, seq);
    } else {
        CU_LAUNCH(err, "launching the KV store", kv_store_plain, cu_blocks(n_tok * kv->kv_dim, 256), 256, 0, c->stream,
                  (uint8_t *)kv->k, (uint8_t *)kv->v, (int)(kv->type == QT_F16), kv->kv_dim, kv->row_bytes, kv->n_ctx,
                  k, ks, v, vs, n_tok, pos, seq);
    }
    return cu_check_launch(err, "KV cache store");
}

/* ---- attention ------------------------------------------------------------------------------
 * Flash-decoding: block (token, kv head, head group of up to AT_G query heads, split y)
 * scores the cells [y*span, (y+1)*span) of the visible range (span <= AT_SPLIT, see
 * at_span) for all heads of the group (each K row is read once for them), softmaxes locally and writes a partial result
 * (max, sum, unnormalized output); attn_combine merges the splits. */
#define AT_SPLIT 128
#define AT_G 8
#define AT_THREADS 256

static __device__ __forceinline__ float kv_elem(const uint8_t *row, uint32_t type, int64_t i) {
    if (type == QT_F16) return __half2float(((const __half *)row)[i]);
    if (type == QT_F32) return ((const float *)row)[i];
    const uint8_t *b = row + (i >> 5) * 34; /* q8_0 */
    return __half2float(*(const __half *)b) * (float)(int8_t)b[2 + (i & 31)];
}

typedef struct at_args {
    const uint8_t *kc, *vc;
    uint32_t type;
    size_t row_bytes;
    int64_t n_ctx;
    const int32_t *pos, *seq;
    int32_t n_head, n_head_kv, hdk, hdv, n_groups, n_split, window;
    int32_t span; /* cells per split, at most AT_SPLIT */
    float scale, softcap;
    const float *q;
    int64_t qs;
    float *part; /* [n_tok][n_head][n_split][hdv + 2] */
    float *out;  /* n_split == 1: the final output, written directly */
    int64_t os;
} at_args;

static __global__ void __launch_bounds__(AT_THREADS) attn_split_kernel(at_args A) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    extern __shared__ float sm[];
    int64_t bx = blockIdx.x;
    int32_t gi = (int32_t)(bx % A.n_groups), hk = (int32_t)(bx / A.n_groups % A.n_head_kv);
    int64_t t = bx / A.n_groups / A.n_head_kv;
    int32_t y = blockIdx.y, G = A.n_head / A.n_head_kv;
    int32_t h0 = hk * G + gi * AT_G, nh = min(AT_G, G - gi * AT_G);
    int64_t p = A.pos[t], lo = A.window > 0 && p - A.window + 1 > 0 ? p - A.window + 1 : 0;
    int64_t cs = max(lo, (int64_t)y * A.span), ce = min(p + 1, (int64_t)(y + 1) * A.span);
    int64_t ncell = ce - cs;
    float *qs = sm;                  /* [AT_G][hdk] */
    float *sc = sm + AT_G * A.hdk;   /* [AT_G][AT_SPLIT] */
    __shared__ float hm[AT_G], hl[AT_G];
    for (int i = threadIdx.x; i < nh * A.hdk; i += blockDim.x)
        qs[i] = A.q[t * A.qs + (int64_t)(h0 + i / A.hdk) * A.hdk + i % A.hdk];
    __syncthreads();
    const uint8_t *kb = A.kc + (size_t)A.seq[t] * A.n_ctx * A.row_bytes;
    const uint8_t *vb = A.vc + (size_t)A.seq[t] * A.n_ctx * A.row_bytes;
    if (A.type == QT_F16 && (A.hdk & 7) == 0) {
        /* f16 K: 8 lanes per cell, lane `sub` takes the 16-byte pieces sub, sub+8, ... of the
         * row and the partial dots are summed over the 8 lanes by shuffles: a short chain
         * per thread (a whole row per thread was ~700 dependent instructions, and with only
         * a few blocks per step nothing hides that latency). The loop bound is uniform
         * across the block, so every lane reaches the shuffles. */
        int sub = threadIdx.x & 7, np = A.hdk >> 3;
        for (int64_t b0 = 0; b0 < ncell; b0 += AT_THREADS / 8) {
            int64_t cc = b0 + (threadIdx.x >> 3);
            bool ok = cc < ncell;
            float acc[AT_G];
#pragma unroll
            for (int i = 0; i < AT_G; i++) acc[i] = 0.0f;
            if (ok) {
                const uint4 *k8 = (const uint4 *)(kb + (size_t)(cs + cc) * A.row_bytes + (size_t)hk * A.hdk * 2);
                for (int pi = sub; pi < np; pi += 8) {
                    uint4 u = k8[pi];
                    uint32_t wd[4] = { u.x, u.y, u.z, u.w };
                    float kv[8];
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        kv[2 * e] = cu_f16((uint16_t)wd[e]);
                        kv[2 * e + 1] = cu_f16((uint16_t)(wd[e] >> 16));
                    }
#pragma unroll
                    for (int i = 0; i < AT_G; i++) {
                        if (i < nh) {
                            const float4 *qv = (const float4 *)(qs + i * A.hdk + pi * 8);
                            float4 a = qv[0], b = qv[1];
                            acc[i] += a.x * kv[0] + a.y * kv[1] + a.z * kv[2] + a.w * kv[3] + b.x * kv[4] +
                                      b.y * kv[5] + b.z * kv[6] + b.w * kv[7];
                        }
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < AT_G; i++)
#pragma unroll
                for (int o = 4; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
            if (ok && sub == 0) {
#pragma unroll
                for (int i = 0; i < AT_G; i++) {
                    if (i < nh) {
                        float s = acc[i] * A.scale;
                        if (A.softcap > 0.0f) s = A.softcap * tanhf(s / A.softcap);
                        sc[i * AT_SPLIT + cc] = s;
                    }
                }
            }
        }
    } else {
        for (int64_t cc = threadIdx.x; cc < ncell; cc += blockDim.x) {
            const uint8_t *kr = kb + (size_t)(cs + cc) * A.row_bytes;
            float acc[AT_G];
#pragma unroll
            for (int i = 0; i < AT_G; i++) acc[i] = 0.0f;
            for (int d = 0; d < A.hdk; d++) {
                float kv = kv_elem(kr, A.type, (int64_t)hk * A.hdk + d);
#pragma unroll
                for (int i = 0; i < AT_G; i++)
                    if (i < nh) acc[i] += qs[i * A.hdk + d] * kv;
            }
#pragma unroll
            for (int i = 0; i < AT_G; i++) {
                if (i < nh) {
                    float s = acc[i] * A.scale;
                    if (A.softcap > 0.0f) s = A.softcap * tanhf(s / A.softcap);
                    sc[i * AT_SPLIT + cc] = s;
                }
            }
        }
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = warp; i < nh; i += AT_THREADS / 32) { /* softmax pieces per head, one warp each */
        float mx = -INFINITY;
        for (int64_t cc = lane; cc < ncell; cc += 32) mx = fmaxf(mx, sc[i * AT_SPLIT + cc]);
        mx = cu_warp_max(mx);
        float sum = 0.0f;
        for (int64_t cc = lane; cc < ncell; cc += 32) {
            float e = ncell > 0 ? __expf(sc[i * AT_SPLIT + cc] - mx) : 0.0f;
            sc[i * AT_SPLIT + cc] = e;
            sum += e;
        }
        sum = cu_warp_sum(sum);
        if (lane == 0) hm[i] = mx, hl[i] = sum;
    }
    __syncthreads();
    /* Values: lanes own pairs of dimensions (coalesced V loads), warps take every 4th cell,
     * each thread keeps all AT_G heads' sums for its 2 dimensions; warps then add up their
     * sums through shared memory (reusing the K/score area: scores are read-only now, so
     * the reduction buffer lives after them). */
    float *red = sc + AT_G * AT_SPLIT; /* [AT_THREADS/32][AT_G][64] */
    const int nwarp = AT_THREADS / 32;
    for (int d0 = 0; d0 < A.hdv; d0 += 64) {
        float acc[AT_G][2];
#pragma unroll
        for (int i = 0; i < AT_G; i++) acc[i][0] = acc[i][1] = 0.0f;
        int d = d0 + 2 * lane;
        bool has0 = d < A.hdv, has1 = d + 1 < A.hdv;
        bool pair16 = A.type == QT_F16 && has1 && ((A.hdv & 1) == 0);
#pragma unroll 8
        for (int64_t cc = warp; cc < ncell; cc += nwarp) {
            const uint8_t *vr = vb + (size_t)(cs + cc) * A.row_bytes;
            int64_t e = (int64_t)hk * A.hdv + d;
            float v0 = 0.0f, v1 = 0.0f;
            if (pair16) {
                float2 f = __half22float2(*(const __half2 *)(vr + e * 2));
                v0 = f.x, v1 = f.y;
            } else {
                if (has0) v0 = kv_elem(vr, A.type, e);
                if (has1) v1 = kv_elem(vr, A.type, e + 1);
            }
#pragma unroll
            for (int i = 0; i < AT_G; i++) {
                float pw = i < nh ? sc[i * AT_SPLIT + cc] : 0.0f;
                acc[i][0] += pw * v0;
                acc[i][1] += pw * v1;
            }
        }
#pragma unroll
        for (int i = 0; i < AT_G; i++) {
            red[(warp * AT_G + i) * 64 + 2 * lane] = acc[i][0];
            red[(warp * AT_G + i) * 64 + 2 * lane + 1] = acc[i][1];
        }
        __syncthreads();
        for (int o = threadIdx.x; o < nh * 64; o += blockDim.x) {
            int i = o / 64, dd = o % 64;
            if (d0 + dd >= A.hdv) continue;
            float v = 0.0f;
            for (int w = 0; w < nwarp; w++) v += red[(w * AT_G + i) * 64 + dd];
            if (A.out) { /* a single split: no combine pass */
                A.out[t * A.os + (int64_t)(h0 + i) * A.hdv + d0 + dd] = v / hl[i];
                continue;
            }
            float *pp = A.part + ((t * A.n_head + h0 + i) * A.n_split + y) * (A.hdv + 2);
            pp[2 + d0 + dd] = v;
            if (d0 + dd == 0) pp[0] = ncell > 0 ? hm[i] : -INFINITY, pp[1] = ncell > 0 ? hl[i] : 0.0f;
        }
        __syncthreads();
    }
}

/* One block per (token, head): merges the splits' partial softmax results. */
static __global__ void attn_combine_kernel(const float *part, int32_t n_head, int32_t n_split, int32_t hdv,
                                           float *out, int64_t os) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t th = blockIdx.x, t = th / n_head, h = th % n_head;
    const float *pp = part + th * n_split * (hdv + 2);
    float mx = -INFINITY, l = 0.0f;
    for (int s = 0; s < n_split; s++) mx = fmaxf(mx, pp[s * (hdv + 2)]);
    for (int s = 0; s < n_split; s++) {
        float m = pp[s * (hdv + 2)];
        if (m > -INFINITY) l += __expf(m - mx) * pp[s * (hdv + 2) + 1];
    }
    for (int d = threadIdx.x; d < hdv; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float m = pp[s * (hdv + 2)];
            if (m > -INFINITY) acc += __expf(m - mx) * pp[s * (hdv + 2) + 2 + d];
        }
        out[t * os + h * hdv + d] = acc / l;
    }
}

/* Cells per split block at decode (n_tok <= AT_SMALL_BATCH): AT_SPLIT, or fewer when the
 * (kv head, group) blocks over the range up to max_pos would number under AT_MIN_BLOCKS
 * (short contexts: a few long serial blocks otherwise). It depends on the position bucket
 * and the head layout only, not on the batch size, so a sequence decoded in a batch gets
 * the same splits (and the same rounding) as decoded alone, and a replayed step graph
 * stays valid within its bucket. */
#define AT_SMALL_BATCH 8
#define AT_MIN_BLOCKS 64
static int32_t at_span(int64_t base_blocks, int32_t max_pos) {
    int32_t span = AT_SPLIT;
    while (span > 32 && base_blocks * (max_pos / span + 1) < AT_MIN_BLOCKS) span /= 2;
    return span;
}

int cuda_attention(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, hb_err *err) {
    int rc;
    if (a->n_tok <= 0) return HEARTH_OK;
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return hb_fail(err, HEARTH_E_INVALID, "CUDA: %d heads do not split into %d KV heads", a->n_head, a->n_head_kv);
    int32_t G = a->n_head / a->n_head_kv, n_groups = (G + AT_G - 1) / AT_G;
    /* splits: a power of two covering max_pos (so a replayed step graph stays valid for
     * many positions), never more than the cache holds */
    int32_t span = a->n_tok <= AT_SMALL_BATCH ? at_span((int64_t)a->n_head_kv * n_groups, a->max_pos_host) : AT_SPLIT;
    int32_t need = a->max_pos_host / span + 1, n_split = 1;
    int32_t cap = (int32_t)((a->kv->n_ctx + span - 1) / span);
    while (n_split < need) n_split *= 2;
    if (n_split > cap) n_split = cap > need ? cap : need;
    size_t part = (size_t)a->n_tok * a->n_head * n_split * (a->head_dim_v + 2) * sizeof(float);
    if ((rc = cu_scratch_reserve(&c->attn, part, err))) return rc;
    size_t smem = ((size_t)AT_G * (a->head_dim_k + AT_SPLIT) + (size_t)(AT_THREADS / 32) * AT_G * 64) * sizeof(float);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return cu_fail(err, e, "raising the attention kernel's shared memory");
    }
    at_args A = { (const uint8_t *)a->kv->k, (const uint8_t *)a->kv->v, a->kv->type, a->kv->row_bytes, a->kv->n_ctx,
                  a->pos, a->seq, a->n_head, a->n_head_kv, a->head_dim_k, a->head_dim_v, n_groups, n_split, a->window,
                  span, a->scale, a->softcap, q, qs, (float *)c->attn.p, n_split == 1 ? out : NULL, os };
    dim3 grid((unsigned)((int64_t)a->n_tok * a->n_head_kv * n_groups), (unsigned)n_split);
    CU_LAUNCH(err, "launching attention", attn_split_kernel, grid, AT_THREADS, smem, c->stream, A);
    if ((rc = cu_check_launch(err, "attention"))) return rc;
    if (n_split == 1) return HEARTH_OK;
    CU_LAUNCH(err, "launching attention (combine)", attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head), 64,
              0, c->stream, (const float *)c->attn.p, a->n_head, n_split, a->head_dim_v, out, os);
    return cu_check_launch(err, "attention (combine)");
}

/* ---- element-wise -------------------------------------------------------------------------- */

static __global__ void copy_rows_kernel(const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                                        const float *bias) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= n_tok * n) return;
    int64_t t = k / n, i = k % n;
    y[t * ys + i] = x[t * xs + i] + (bias ? bias[i] : 0.0f);
}

int cuda_copy_rows(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                   const float *bias, hb_err *err) {
    if (n_tok * n <= 0) return HEARTH_OK;
    /* overlapping rows (x != y, ys > xs) would race; the forward pass only copies in place
     * or between disjoint buffers */
    CU_LAUNCH(err, "launching a row copy", copy_rows_kernel, cu_blocks(n_tok * n, 256), 256, 0, c->stream, x, xs, y,
              ys, n_tok, n, bias);
    return cu_check_launch(err, "copy rows");
}

/* op: 0 add (y += x), 1 scale (y *= s), 2 softcap */
static __global__ void eltwise_kernel(int op, float *y, const float *x, int64_t n, float s) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (op == 0) y[i] += x[i];
    else if (op == 1) y[i] *= s;
    else y[i] = s * tanhf(y[i] / s);
}

static int eltwise(cuda_ctx *c, int op, float *y, const float *x, int64_t n, float s, hb_err *err) {
    if (n <= 0) return HEARTH_OK;
    CU_LAUNCH(err, "launching an element-wise op", eltwise_kernel, cu_blocks(n, 256), 256, 0, c->stream, op, y, x, n,
              s);
    return cu_check_launch(err, "element-wise op");
}

int cuda_add(cuda_ctx *c, float *y, const float *x, int64_t n, hb_err *err) {
    return eltwise(c, 0, y, x, n, 0.0f, err);
}

int cuda_scale(cuda_ctx *c, float *x, int64_t n, float s, hb_err *err) {
    return eltwise(c, 1, x, NULL, n, s, err);
}

int cuda_softcap(cuda_ctx *c, float *x, int64_t n, float cap, hb_err *err) {
    return eltwise(c, 2, x, NULL, n, cap, err);
}

static __global__ void glu_kernel(int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                                  int64_t os, int64_t n_tok, int64_t n) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= n_tok * n) return;
    int64_t t = k / n, i = k % n;
    float g = gate[t * gs + i], u = up[t * us + i], a;
    if (gelu) a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    else a = g / (1.0f + expf(-g));
    out[t * os + i] = a * u;
}

int cuda_glu(cuda_ctx *c, int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out, int64_t os,
             int64_t n_tok, int64_t n, hb_err *err) {
    if (n_tok * n <= 0) return HEARTH_OK;
    CU_LAUNCH(err, "launching glu", glu_kernel, cu_blocks(n_tok * n, 256), 256, 0, c->stream, gelu, gate, gs, up, us,
              out, os, n_tok, n);
    return cu_check_launch(err, "glu");
}
