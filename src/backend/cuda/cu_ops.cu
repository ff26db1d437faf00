/* cu_ops.cu — the non-matmul ops of a decoder step on the GPU: RMSNorm, RoPE, KV-cache
 * stores (f32 / f16 / q8_0), attention over the cache split across thread blocks, and the
 * element-wise ops. Semantics follow the CPU backend (src/backend/cpu/ops*.c) exactly; the
 * arithmetic differs only in summation order (and RoPE angles are computed in double, as
 * there).
 */
#include <math.h>
#include <string.h>

#include "backend/cuda/cu_attn.cuh"
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
    CU_LAUNCH(err, "launching rmsnorm", rmsnorm_kernel, (unsigned)n_rows, thr, 0, c, x, xs, y, ys, n, w, eps);
    return cu_check_launch(err, "rmsnorm");
}

/* ---- RoPE --------------------------------------------------------------------------------- */

/* The KV store fused into RoPE (cuda_rope_kv): kc == NULL when there is none. */
typedef struct rope_kv_args {
    uint8_t *kc, *vc;
    int is_f16;
    int64_t kv_dim, n_ctx;
    size_t row_bytes;
    const float *v;
    int64_t vs;
    const int32_t *seq;
} rope_kv_args;

/* One thread per (token, head, pair) of one or two tensors (q and k share positions);
 * angles in double like the CPU reference (base^(-2i/n_rot) from the host's table when
 * given). With kv.kc the rotated second tensor (k) is
 * also stored into the cache and the threads past the rotations store v. */
static __global__ void rope_kernel(float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                                   int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, int neox,
                                   int32_t n_rot, float base, float freq_scale, float attn_factor,
                                   const float *factors, const double *inv_tab, rope_kv_args kv) {
    int32_t half = n_rot / 2;
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, n1 = n_tok * n_head * half;
    int64_t n12 = n1 + n_tok * n_head2 * half;
    bool second = k >= n1, is_v = kv.kc && k >= n12;
    /* the frequency (and the model's factor) depend on no earlier kernel: computed before
     * the wait for the one that writes x (PDL), the double pow is a long chain */
    int64_t kr = second ? k - n1 : k;
    int32_t i = is_v || half <= 0 ? 0 : (int32_t)(kr % half);
    double inv = is_v ? 0.0 : (inv_tab ? inv_tab[i] : pow((double)base, -2.0 * i / (double)n_rot));
    float fac = factors && !is_v ? factors[i] : 1.0f;
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    if (is_v) { /* v into the cache */
        int64_t idx = k - n12, t = idx / kv.kv_dim, vi = idx % kv.kv_dim;
        if (t >= n_tok) return;
        size_t cell = (size_t)kv.seq[t] * (size_t)kv.n_ctx + (size_t)pos[t];
        kv_put(kv.vc + cell * kv.row_bytes, kv.is_f16, vi, kv.v[t * kv.vs + vi]);
        return;
    }
    if (second) { /* second tensor */
        if (kr >= n_tok * n_head2 * half) return;
        x = x2, stride = stride2, n_head = n_head2;
    }
    int64_t th = kr / half, t = th / n_head, h = th % n_head;
    double theta = (double)pos[t] * freq_scale * inv;
    if (factors) theta /= fac;
    double sd, cd;
    sincos(theta, &sd, &cd);
    float cs = (float)(cd * attn_factor), sn = (float)(sd * attn_factor);
    float *v = x + t * stride + h * head_dim;
    int32_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float y0, y1;
    rope_pair(v[a], v[b], cs, sn, &y0, &y1);
    v[a] = y0;
    v[b] = y1;
    if (kv.kc && second) {
        uint8_t *row = kv.kc + ((size_t)kv.seq[t] * (size_t)kv.n_ctx + (size_t)pos[t]) * kv.row_bytes;
        kv_put(row, kv.is_f16, h * head_dim + a, y0);
        kv_put(row, kv.is_f16, h * head_dim + b, y1);
    }
}

int cuda_rope_apply2(cuda_ctx *c, float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                     int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r,
                     hb_err *err) {
    int64_t n = n_tok * (n_head + (x2 ? n_head2 : 0)) * (r->n_rot / 2);
    if (n <= 0) return HEARTH_OK;
    rope_kv_args none;
    memset(&none, 0, sizeof none);
    CU_LAUNCH(err, "launching rope", rope_kernel, cu_blocks(n, 128), 128, 0, c, x, stride, n_head, x2, stride2,
              x2 ? n_head2 : 0, n_tok, head_dim, pos, r->neox, r->n_rot, r->base, r->freq_scale, r->attn_factor,
              r->factors, r->inv, none);
    return cu_check_launch(err, "rope");
}

int cuda_rope_kv(cuda_ctx *c, float *q, int64_t qs, int32_t n_head, float *k, int64_t ks, int32_t n_head_kv,
                 int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r, const cuda_kv *kv,
                 const float *v, int64_t vs, const int32_t *seq, hb_err *err) {
    if (n_tok <= 0) return HEARTH_OK;
    if ((kv->type != QT_F16 && kv->type != QT_F32) || r->n_rot != head_dim ||
        (int64_t)n_head_kv * head_dim != kv->kv_dim)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: RoPE with KV store needs whole-head rotation and a float cache");
    rope_kv_args a = { (uint8_t *)kv->k, (uint8_t *)kv->v, kv->type == QT_F16, kv->kv_dim, kv->n_ctx, kv->row_bytes,
                       v, vs, seq };
    int64_t n = n_tok * (n_head + n_head_kv) * (r->n_rot / 2) + n_tok * kv->kv_dim;
    CU_LAUNCH(err, "launching rope", rope_kernel, cu_blocks(n, 128), 128, 0, c, q, qs, n_head, k, ks, n_head_kv,
              n_tok, head_dim, pos, r->neox, r->n_rot, r->base, r->freq_scale, r->attn_factor, r->factors, r->inv, a);
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
                  c, (uint8_t *)kv->k, (uint8_t *)kv->v, kv->kv_dim, kv->row_bytes, kv->n_ctx, k, ks, v, vs,
                  n_tok, pos, seq);
    } else {
        CU_LAUNCH(err, "launching the KV store", kv_store_plain, cu_blocks(n_tok * kv->kv_dim, 256), 256, 0, c,
                  (uint8_t *)kv->k, (uint8_t *)kv->v, (int)(kv->type == QT_F16), kv->kv_dim, kv->row_bytes, kv->n_ctx,
                  k, ks, v, vs, n_tok, pos, seq);
    }
    return cu_check_launch(err, "KV cache store");
}

#include "backend/cuda/cu_attn_pf.cuh"

/* ---- attention (cu_attn.cuh) ---- */
static __global__ void __launch_bounds__(AT_THREADS) attn_split_kernel(at_args A) {
    extern __shared__ float sm[];
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    at_split_block(A, blockIdx.x, blockIdx.y, sm);
    if (!A.cnt) return;
    /* Folded combine: the last split block of (token, kv head, group) to finish merges the
     * group's splits (fixed order, so the result does not depend on which block is last)
     * and puts the counter back to 0 for the next step. */
    __shared__ int last;
    __threadfence(); /* this block's partial results are visible before it counts itself */
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&A.cnt[blockIdx.x], 1) == (int)gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x == 0) A.cnt[blockIdx.x] = 0;
    int64_t bx = blockIdx.x;
    int32_t gi = (int32_t)(bx % A.n_groups), hk = (int32_t)(bx / A.n_groups % A.n_head_kv);
    int64_t t = bx / A.n_groups / A.n_head_kv;
    int32_t G = A.n_head / A.n_head_kv;
    int32_t h0 = hk * G + gi * AT_G, nh = min(AT_G, G - gi * AT_G);
    for (int i = threadIdx.x >> 5; i < nh; i += AT_THREADS / 32)
        at_combine(A.part, A.n_head, A.n_split, A.hdv, A.fout, A.os, t * A.n_head + h0 + i, threadIdx.x & 31, 32);
}

/* One block per (token, head). With xq (then blockDim.x == hdv, a multiple of 32, and the
 * output rows contiguous: os == n_head * hdv) the output is also quantized into the
 * activation scratch for the product that reads it next, one warp per 32-value chunk. */
static __global__ void attn_combine_kernel(const float *part, int32_t n_head, int32_t n_split, int32_t hdv,
                                           float *out, int64_t os, int8_t *xq, float *xd, int2 *xsum) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    at_combine(part, n_head, n_split, hdv, out, os, blockIdx.x, threadIdx.x, blockDim.x);
    if (!xq) return;
    int64_t th = blockIdx.x, t = th / n_head, h = th % n_head;
    int64_t e = h * hdv + threadIdx.x; /* this thread's element of its token's row */
    __syncwarp();
    rq_chunk(out[t * os + e], threadIdx.x & 31, (t * os + e) >> 5, xq, xd, xsum);
}

/* cuda_attention; quant: also leave the output quantized in the activation scratch (see
 * cuda_attention_q8). */
static int at_run(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
                  hb_err *err) {
    int rc;
    if (a->n_tok <= 0) return HEARTH_OK;
    if (quant && (a->head_dim_v % 32 || a->head_dim_v > 1024 || os != (int64_t)a->n_head * a->head_dim_v))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: quantized attention output needs contiguous rows of 32-value chunks");
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return hb_fail(err, HEARTH_E_INVALID, "CUDA: %d heads do not split into %d KV heads", a->n_head, a->n_head_kv);
    if (cu_attn_pf_use(c, a, q, qs, out, os)) /* prefill batches: tensor-core kernel (cu_attn_pf.cu) */
        return cu_attn_pf(c, a, q, qs, out, os, quant, err);
    int done = 0; /* decode batches at short contexts: one block per head (cu_attn_dec.cu) */
    if ((rc = cu_attn_dec(c, a, q, qs, out, os, quant, &done, err)) || done) return rc;
    at_args A;
    unsigned gx, gy;
    size_t part, smem;
    at_plan(c, a, q, qs, out, os, NULL, &A, &gx, &gy, &part, &smem);
    if ((rc = cu_scratch_reserve(&c->attn, part, err))) return rc;
    A.part = (float *)c->attn.p;
    if ((rc = cu_smem_allow(c, (const void *)attn_split_kernel, smem, err))) return rc;
    dim3 grid(gx, gy);
    int32_t n_split = (int32_t)gy;
    /* the combine pass folded into the split kernel at decode: off by default
     * (HEARTH_CUDA_ATTN_FOLD=1 turns it on) — measured tg128 within noise of the separate
     * combine kernel, pp512 ~2% slower, and it cannot quantize the output for the o product */
    bool fold = n_split > 1 && !quant && a->n_tok <= AT_SMALL_BATCH && c->knobs.attn_fold;
    if (fold) {
        void *before = c->attn_cnt.p;
        if ((rc = cu_scratch_reserve(&c->attn_cnt, (size_t)gx * sizeof(int32_t), err))) return rc;
        if (c->attn_cnt.p != before) { /* new memory: zero it once, the kernel keeps it at 0 */
            cudaError_t e = cudaMemsetAsync(c->attn_cnt.p, 0, c->attn_cnt.cap, c->stream);
            if (e != cudaSuccess) return cu_fail(err, e, "clearing the attention counters");
        }
        A.cnt = (int32_t *)c->attn_cnt.p;
    }
    CU_LAUNCH(err, "launching attention", attn_split_kernel, grid, AT_THREADS, smem, c, A);
    if ((rc = cu_check_launch(err, "attention"))) return rc;
    if (fold) return HEARTH_OK;
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xsum = NULL;
    if (n_split == 1) { /* no combine pass: quantize the output on its own */
        if (quant) return cu_act_quantize(c, out, a->n_tok, os, 0, &xq, &xd, &xsum, err);
        return HEARTH_OK;
    }
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &xq, &xd, &xsum, err))) return rc;
    CU_LAUNCH(err, "launching attention (combine)", attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head),
              quant ? a->head_dim_v : 64, 0, c, (const float *)c->attn.p, a->n_head, n_split, a->head_dim_v, out,
              os, xq, xd, xsum);
    return cu_check_launch(err, "attention (combine)");
}

int cuda_attention(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, hb_err *err) {
    return at_run(c, a, q, qs, out, os, false, err);
}

int cuda_attention_q8(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                      hb_err *err) {
    return at_run(c, a, q, qs, out, os, true, err);
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
    CU_LAUNCH(err, "launching a row copy", copy_rows_kernel, cu_blocks(n_tok * n, 256), 256, 0, c, x, xs, y,
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
    CU_LAUNCH(err, "launching an element-wise op", eltwise_kernel, cu_blocks(n, 256), 256, 0, c, op, y, x, n,
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

/* One thread per 4 values of a row (blockIdx.y = token): 16-byte loads and stores, no 64-bit
 * division (a prefill GLU over 512 x 5632 values is bandwidth-bound). vec4: n, gs, us, os
 * are multiples of 4 and the arrays 16-byte aligned; otherwise one value per thread. */
static __global__ void glu_kernel(int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                                  int64_t os, int64_t n, int vec4) {
    cu_pdl_wait(); /* launched early (CU_LAUNCH) */
    cu_pdl_trigger();
    int64_t t = blockIdx.y, i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * (vec4 ? 4 : 1);
    if (i >= n) return;
    const float *g = gate + t * gs + i, *u = up + t * us + i;
    float *o = out + t * os + i;
    if (vec4) {
        float4 a = *(const float4 *)g, b = *(const float4 *)u;
        *(float4 *)o = make_float4(cu_glu_act(gelu, a.x) * b.x, cu_glu_act(gelu, a.y) * b.y, cu_glu_act(gelu, a.z) * b.z,
                                   cu_glu_act(gelu, a.w) * b.w);
    } else {
        *o = cu_glu_act(gelu, *g) * *u;
    }
}

int cuda_glu(cuda_ctx *c, int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out, int64_t os,
             int64_t n_tok, int64_t n, hb_err *err) {
    if (n_tok * n <= 0) return HEARTH_OK;
    if (n_tok > 65535) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: glu over more than 65535 rows");
    int vec4 = (n | gs | us | os) % 4 == 0 && ((uintptr_t)gate | (uintptr_t)up | (uintptr_t)out) % 16 == 0;
    dim3 grid(cu_blocks(vec4 ? n / 4 : n, 256), (unsigned)n_tok);
    CU_LAUNCH(err, "launching glu", glu_kernel, grid, 256, 0, c, gelu, gate, gs, up, us, out, os, n, vec4);
    return cu_check_launch(err, "glu");
}
