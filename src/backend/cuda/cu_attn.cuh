/* cu_attn.cuh — attention over the device KV cache (flash-decoding), shared by the per-op
 * kernels (cu_ops.cu) and the persistent decode kernel (cu_mega.cu): the arguments, the
 * work of one split block and of one combine item, and the split plan. */
#ifndef HEARTH_CU_ATTN_CUH
#define HEARTH_CU_ATTN_CUH

#include "backend/cuda/cu_internal.cuh"

/* ---- attention ------------------------------------------------------------------------------
 * Flash-decoding: block (token, kv head, head group of up to AT_G query heads, split y)
 * scores the cells [y*span, (y+1)*span) of the visible range (span <= AT_SPLIT, see
 * at_span) for all heads of the group (each K row is read once for them), softmaxes locally and writes a partial result
 * (max, sum, unnormalized output); attn_combine merges the splits. */
/* Block barrier and thread count of the attention code: the kernels here use every thread
 * of their block; the persistent kernel (cu_mega.cuh) runs it on a subset of its threads. */
#ifndef AT_SYNC
#define AT_SYNC() __syncthreads()
#define AT_NT blockDim.x
#endif
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
    int32_t *cnt; /* per-op kernels only: non-NULL folds the combine into the split kernel */
    float *fout;  /* the output the folded combine writes */
    /* fused decode kernel only (dattn_kernel, cu_ops.cu): the output also quantized into the
     * activation scratch (codes, scales, half sums) for the o product; NULL otherwise */
    int8_t *xq;
    float *xd;
    int2 *xsum;
} at_args;

/* The cells of the current step that a split block of the fused decode kernel takes from
 * its own copy instead of the cache (the cache cell may not be written yet): map[cc] is
 * the copy's index for cell cs + cc, or -1; the copies hold one kv head's K / V slice in
 * the cache's format (kbytes / vbytes apart, 16-byte aligned). With sk / sv the block has
 * staged its other cells' slices in shared memory too (row cc at cc * kbytes / vbytes). */
typedef struct at_cur {
    const int8_t *map;
    const uint8_t *k, *v;
    int32_t kbytes, vbytes;
    const uint8_t *sk, *sv;
} at_cur;

/* Where split block cell cc's K (kv 0) or V (kv 1) slice is read: *row and the element
 * offset *e0 of the head in it (the cache row and hk * head size, or a slice in shared
 * memory and 0). */
static __device__ __forceinline__ const uint8_t *at_row(at_cur cur, int kv, const uint8_t *cache_row, int64_t cc,
                                                        int64_t head_e0, int64_t *e0) {
    int cj = cur.map ? cur.map[cc] : -1;
    *e0 = 0;
    if (cj >= 0) return kv ? cur.v + cj * cur.vbytes : cur.k + cj * cur.kbytes;
    if (cur.sk) return kv ? cur.sv + cc * cur.vbytes : cur.sk + cc * cur.kbytes;
    *e0 = head_e0;
    return cache_row;
}

/* RoPE of one pair, rounded like the CPU reference (no contraction into FMAs, so the
 * per-op and fused kernels agree bitwise). */
static __device__ __forceinline__ void rope_pair(float x0, float x1, float cs, float sn, float *y0, float *y1) {
    *y0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    *y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}

/* cos and sin of pair i's angle at position p, times attn_factor: rope_kernel's arithmetic
 * (the fused q/k/v products, cu_mvr.cu and cu_qkva.cu). */
static __device__ __forceinline__ float2 rope_angle(int32_t i, int32_t p, int32_t n_rot, float base, float freq_scale,
                                                  float attn_factor, const float *factors, const double *inv_tab) {
    double inv = inv_tab ? inv_tab[i] : pow((double)base, -2.0 * i / (double)n_rot);
    float fac = factors ? factors[i] : 1.0f;
    double theta = (double)p * freq_scale * inv;
    if (factors) theta /= fac;
    double sd, cd;
    sincos(theta, &sd, &cd);
    return make_float2((float)(cd * attn_factor), (float)(sd * attn_factor));
}

/* Element i of a cache row, rounded as the KV store rounds it. */
static __device__ __forceinline__ void kv_put(uint8_t *row, int is_f16, int64_t i, float v) {
    if (is_f16) ((__half *)row)[i] = __float2half_rn(v);
    else ((float *)row)[i] = v;
}

/* Writes the final output of heads h0..h0+nh-1 of token t, held in shared memory ov
 * [nh][hdv], to A.fout or A.out, and quantizes it into the activation scratch (one warp per
 * 32-value chunk, the arithmetic of act_quant_kernel; needs hdv % 32 == 0 and contiguous
 * output rows). Called by all threads of the block after a barrier. */
static __device__ __forceinline__ void at_emit(const at_args &A, int64_t t, int32_t h0, int32_t nh, const float *ov) {
    float *out = A.out ? A.out : A.fout;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t base = t * A.os + (int64_t)h0 * A.hdv; /* multiple of 32 */
    for (int ch = warp; ch < nh * A.hdv / 32; ch += AT_THREADS / 32) {
        float v = ov[ch * 32 + lane];
        out[base + ch * 32 + lane] = v;
        rq_chunk(v, lane, (base >> 5) + ch, A.xq, A.xd, A.xsum);
    }
}

/* The work of split block (bx, y): AT_THREADS threads, shared memory sm of at_smem bytes.
 * Used by attn_split_kernel and by the persistent decode kernel (cu_mega.cu) with cur.map
 * == NULL, and by the fused decode kernel (dattn_kernel), which has put the rotated q into
 * sm already and passes the current step's cells in cur. */
static __device__ __forceinline__ void at_split_block_cur(at_args A, int64_t bx, int32_t y, float *sm,
                                                          at_cur cur) {
    int32_t b32 = (int32_t)bx; /* grids are far below 2^31 blocks: 32-bit divisions */
    int32_t gi = b32 % A.n_groups, hk = b32 / A.n_groups % A.n_head_kv;
    int64_t t = b32 / A.n_groups / A.n_head_kv;
    int32_t G = A.n_head / A.n_head_kv;
    int32_t h0 = hk * G + gi * AT_G, nh = min(AT_G, G - gi * AT_G);
    int64_t p = A.pos[t], lo = A.window > 0 && p - A.window + 1 > 0 ? p - A.window + 1 : 0;
    int64_t cs = max(lo, (int64_t)y * A.span), ce = min(p + 1, (int64_t)(y + 1) * A.span);
    int64_t ncell = ce - cs;
    float *qs = sm;                  /* [AT_G][hdk] */
    float *sc = sm + AT_G * A.hdk;   /* [AT_G][AT_SPLIT] */
    __shared__ float hm[AT_G], hl[AT_G];
    if (!cur.map)
        for (int i = threadIdx.x; i < nh * A.hdk; i += AT_NT)
            qs[i] = A.q[t * A.qs + (int64_t)(h0 + i / A.hdk) * A.hdk + i % A.hdk];
    AT_SYNC();
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
                int64_t e0;
                const uint8_t *kr = at_row(cur, 0, kb + (size_t)(cs + cc) * A.row_bytes, cc, (int64_t)hk * A.hdk, &e0);
                const uint4 *k8 = (const uint4 *)(kr + e0 * 2);
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
        for (int64_t cc = threadIdx.x; cc < ncell; cc += AT_NT) {
            int64_t k0;
            const uint8_t *kr = at_row(cur, 0, kb + (size_t)(cs + cc) * A.row_bytes, cc, (int64_t)hk * A.hdk, &k0);
            float acc[AT_G];
#pragma unroll
            for (int i = 0; i < AT_G; i++) acc[i] = 0.0f;
            for (int d = 0; d < A.hdk; d++) {
                float kv = kv_elem(kr, A.type, k0 + d);
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
    AT_SYNC();
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
    AT_SYNC();
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
            int64_t e;
            const uint8_t *vr = at_row(cur, 1, vb + (size_t)(cs + cc) * A.row_bytes, cc, (int64_t)hk * A.hdv, &e);
            e += d;
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
        AT_SYNC();
        for (int o = threadIdx.x; o < nh * 64; o += AT_NT) {
            int i = o / 64, dd = o % 64;
            if (d0 + dd >= A.hdv) continue;
            float v = 0.0f;
            for (int w = 0; w < nwarp; w++) v += red[(w * AT_G + i) * 64 + dd];
            if (A.out && A.xq) { /* a single split, quantized output: through sm (q is done) */
                qs[i * A.hdv + d0 + dd] = v / hl[i];
                continue;
            }
            if (A.out) { /* a single split: no combine pass */
                A.out[t * A.os + (int64_t)(h0 + i) * A.hdv + d0 + dd] = v / hl[i];
                continue;
            }
            float *pp = A.part + ((t * A.n_head + h0 + i) * A.n_split + y) * (A.hdv + 2);
            pp[2 + d0 + dd] = v;
            if (d0 + dd == 0) pp[0] = ncell > 0 ? hm[i] : -INFINITY, pp[1] = ncell > 0 ? hl[i] : 0.0f;
        }
        AT_SYNC();
    }
    if (A.out && A.xq) at_emit(A, t, h0, nh, qs);
}

static __device__ __forceinline__ void at_split_block(at_args A, int64_t bx, int32_t y, float *sm) {
    at_cur none = { NULL, NULL, NULL, 0, 0, NULL, NULL };
    at_split_block_cur(A, bx, y, sm, none);
}

/* Merges the splits' partial softmax results of (token, head) th; threads i of n share the
 * dimensions. */
static __device__ __forceinline__ void at_combine(const float *part, int32_t n_head, int32_t n_split, int32_t hdv,
                                                  float *out, int64_t os, int64_t th, int i, int n) {
    int64_t t = th / n_head, h = th % n_head;
    const float *pp = part + th * n_split * (hdv + 2);
    float mx = -INFINITY, l = 0.0f;
    /* __ldcg: the partial results were written by other blocks of the same grid when the
     * combine is folded into the split kernel (attn_split_kernel), so bypass L1 */
    for (int s = 0; s < n_split; s++) mx = fmaxf(mx, __ldcg(pp + s * (hdv + 2)));
    for (int s = 0; s < n_split; s++) {
        float m = __ldcg(pp + s * (hdv + 2));
        if (m > -INFINITY) l += __expf(m - mx) * __ldcg(pp + s * (hdv + 2) + 1);
    }
    for (int d = i; d < hdv; d += n) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float m = __ldcg(pp + s * (hdv + 2));
            if (m > -INFINITY) acc += __expf(m - mx) * __ldcg(pp + s * (hdv + 2) + 2 + d);
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
/* The span rule: halve from AT_SPLIT down to min_span while fewer than min_blocks blocks
 * of base_blocks columns would cover max_pos. */
static int32_t at_span_for(int64_t base_blocks, int32_t max_pos, int32_t min_span, int32_t min_blocks) {
    int32_t span = AT_SPLIT;
    while (span > min_span && base_blocks * (max_pos / span + 1) < min_blocks) span /= 2;
    return span;
}

static int32_t at_span(const cuda_ctx *c, int64_t base_blocks, int32_t max_pos) {
    /* tuning: HEARTH_CUDA_AT_MIN_SPAN (16..128, default 32) and HEARTH_CUDA_AT_MIN_BLOCKS
     * (default AT_MIN_BLOCKS) */
    int32_t min_blocks = c->knobs.at_min_blocks ? c->knobs.at_min_blocks : AT_MIN_BLOCKS;
    return at_span_for(base_blocks, max_pos, c->knobs.at_min_span, min_blocks);
}

/* Fills A and the launch shape for attention a with `span` cells per split block (0: the
 * plan of cuda_attention, at_span): grid gx x gy split blocks, part_bytes of partial
 * results (written to `part`), smem bytes of shared memory per block. */
static inline void at_plan_span(const cuda_ctx *c, const cuda_attn *a, int32_t span, const float *q, int64_t qs, float *out, int64_t os,
                                float *part, at_args *A, unsigned *gx, unsigned *gy, size_t *part_bytes,
                                size_t *smem) {
    int32_t G = a->n_head / a->n_head_kv, n_groups = (G + AT_G - 1) / AT_G;
    /* splits: a power of two covering max_pos (so a replayed step graph stays valid for
     * many positions), never more than the cache holds */
    if (span <= 0)
        span = a->n_tok <= AT_SMALL_BATCH ? at_span(c, (int64_t)a->n_head_kv * n_groups, a->max_pos_host) : AT_SPLIT;
    int32_t need = a->max_pos_host / span + 1, n_split = 1;
    int32_t cap = (int32_t)((a->kv->n_ctx + span - 1) / span);
    while (n_split < need) n_split *= 2;
    if (n_split > cap) n_split = cap > need ? cap : need;
    *part_bytes = (size_t)a->n_tok * a->n_head * n_split * (a->head_dim_v + 2) * sizeof(float);
    *smem = ((size_t)AT_G * (a->head_dim_k + AT_SPLIT) + (size_t)(AT_THREADS / 32) * AT_G * 64) * sizeof(float);
    at_args B = { (const uint8_t *)a->kv->k, (const uint8_t *)a->kv->v, a->kv->type, a->kv->row_bytes, a->kv->n_ctx,
                  a->pos, a->seq, a->n_head, a->n_head_kv, a->head_dim_k, a->head_dim_v, n_groups, n_split, a->window,
                  span, a->scale, a->softcap, q, qs, part, n_split == 1 ? out : NULL, os, NULL, out, NULL, NULL,
                  NULL };
    *A = B;
    *gx = (unsigned)((int64_t)a->n_tok * a->n_head_kv * n_groups);
    *gy = (unsigned)n_split;
}

static inline void at_plan(const cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                           float *part, at_args *A, unsigned *gx, unsigned *gy, size_t *part_bytes, size_t *smem) {
    at_plan_span(c, a, 0, q, qs, out, os, part, A, gx, gy, part_bytes, smem);
}

/* Decode attention for short contexts over an f16 cache (cu_attn_dec.cu): the arguments of
 * cuda_attention(_q8). *done = 1 when it ran, 0 when the shape, cache type or position
 * bucket is not for it (nothing queued). */
int cu_attn_dec(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
                int *done, hb_err *err);
/* The same with the RoPE of q and k and the KV store of k and v in the kernel (the
 * arguments of cuda_rope_kv_attention; whole-head rotation): the bits of the separate RoPE +
 * KV store and cu_attn_dec. q and k are only read. *done as cu_attn_dec's
 * (HEARTH_CUDA_ATTN_DEC_ROPE=0: never). */
int cu_attn_dec_rope(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs, const float *k,
                     int64_t ks, const float *v, int64_t vs, float *out, int64_t os, bool quant, int *done,
                     hb_err *err);
/* The same two on the tensor cores (cu_attn_tc.cu): one block per (kv head, token), head
 * size 64 or 128, up to 16 query heads per kv head; *done = 0 when they do not apply
 * (opt-in, HEARTH_CUDA_ATTN_TC=1), and the callers above then run their own kernels. */
int cu_attn_tc(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
               int *done, hb_err *err);
int cu_attn_tc_rope(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs, const float *k,
                    int64_t ks, const float *v, int64_t vs, float *out, int64_t os, bool quant, int *done,
                    hb_err *err);

#endif
