/* cu_dattn.cu — the decode attention of a layer as one kernel (cuda_rope_kv_attention):
 * RoPE of q and k, the KV-cache store of k and v, flash-decoding attention over the cache
 * and the merge of the splits, instead of three graph nodes (rope+store, split, combine)
 * for a few KB of data. The backend uses it with HEARTH_CUDA_DATTN=1 (be_cuda.c; off by
 * default: see docs/performance.md for why).
 *
 * Grid: (token, kv head, head group) x split, AT_THREADS threads, the split plan of
 * cuda_attention (cu_attn.cuh, position bucket and head layout only). Each block
 *  1. before the programmatic-launch wait: reads the positions, finds which cells of its
 *     range belong to the current step (tokens of its sequence in the batch), computes
 *     their angles and q's (theta in double from the host's base^(-2i/n_rot) table), and
 *     stages its older cells' K / V slices in shared memory (cp.async; L2 prefetch when
 *     they do not fit);
 *  2. fetches q and the current cells' k / v rows (one round trip), rotates q, and builds
 *     its own copy of every current cell of its range (k rotated, v, both rounded to the
 *     cache's format exactly as the store rounds them), so it never reads a cache cell
 *     that this launch writes;
 *  3. the block that owns a token's cell (group 0, the split holding pos[t]) stores that
 *     copy into the cache;
 *  4. scores / softmax / values (at_split_block_cur); with one split it writes the output,
 *     else the last block of the (token, kv head, group) column to finish (atomic counter
 *     in c->attn_cnt, kept at 0 between launches) merges the splits in fixed order,
 *     writes the output and, for the o product, its int8 quantization.
 * Tuning switches (read per launch or once): HEARTH_CUDA_DATTN_MIN_BLOCKS,
 * HEARTH_CUDA_DATTN_ONE, HEARTH_CUDA_DATTN_STAGE, HEARTH_CUDA_DATTN_DANG.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attn.cuh"

#define DATTN_MAX_HALF 128 /* head_dim <= 256 */

typedef struct dattn_args {
    const float *k, *v;          /* the new k (unrotated) and v rows of the batch */
    int64_t ks, vs;
    uint8_t *kc, *vc;            /* the cache, writable */
    int32_t n_tok, neox, half;
    float base, freq_scale, attn_factor;
    const float *factors;        /* [half] or NULL */
    const double *inv;           /* [half] or NULL */
    int32_t kbytes, vbytes;      /* one head's K / V slice in the cache format */
    int32_t kstride, vstride;    /* the same rounded up to 16 bytes (the block's copies) */
    int32_t fetch16;             /* q, k, v rows are 16-byte aligned (dattn_fetch) */
    int32_t dang;                /* angles' cos/sin in double (HEARTH_CUDA_DATTN_DANG=1) */
    int32_t stage_w;             /* bytes per asynchronous copy when the block stages its
                                  * cells' slices in shared memory (4/8/16), 0: no staging */
} dattn_args;

void cuda_rope_table(float base, int32_t n_rot, double *inv_host) {
    for (int32_t i = 0; i < n_rot / 2; i++) inv_host[i] = pow((double)base, -2.0 * i / (double)n_rot);
}

/* cos/sin of frequency j at position p: theta in double as rope_kernel (cu_ops.cu) has it;
 * with D.dang also its cos/sin in double (bitwise the per-op kernel's), else theta reduced
 * to [-pi, pi] in double and cos/sin in float (a long double-precision chain less, about
 * 1e-7 from the double result, which the CPU reference and the fixtures' bounds absorb). */
static __device__ __forceinline__ float2 dattn_angle(const dattn_args &D, int32_t p, int32_t j) {
    double inv = D.inv ? D.inv[j] : pow((double)D.base, -2.0 * j / (double)(2 * D.half));
    double theta = (double)p * D.freq_scale * inv;
    if (D.factors) theta /= D.factors[j];
    if (D.dang) {
        double sd, cd;
        sincos(theta, &sd, &cd);
        return make_float2((float)(cd * D.attn_factor), (float)(sd * D.attn_factor));
    }
    double k = rint(theta * 0.15915494309189535); /* 1 / (2 pi) */
    float r = (float)fma(-k, 6.283185307179586, theta), sf, cf;
    sincosf(r, &sf, &cf);
    return make_float2(cf * D.attn_factor, sf * D.attn_factor);
}

/* The frequency of element d of a head. */
static __device__ __forceinline__ int32_t dattn_freq(int32_t d, int32_t half, int32_t neox) {
    return neox ? (d < half ? d : d - half) : d >> 1;
}

/* Element d of the rotated head x (the pair arithmetic of rope_kernel); an: the angle of
 * d's frequency. */
static __device__ __forceinline__ float dattn_rot(const float *x, int32_t d, int32_t half, int32_t neox, float2 an) {
    int32_t j, a, b;
    bool first;
    if (neox) first = d < half, j = first ? d : d - half, a = j, b = j + half;
    else first = (d & 1) == 0, j = d >> 1, a = 2 * j, b = 2 * j + 1;
    float y0, y1;
    rope_pair(x[a], x[b], an.x, an.y, &y0, &y1);
    return first ? y0 : y1;
}

static __device__ __forceinline__ void dattn_put(uint8_t *row, uint32_t type, int32_t d, float v) {
    if (type == QT_F16) ((__half *)row)[d] = __float2half_rn(v);
    else ((float *)row)[d] = v;
}

/* Builds the block's copies of its current cells (token s_ent[e] for copy e) from their raw
 * rows raw[e] = [k | v] of kv head hk (dattn_fetch): k rotated, both in the cache's format. */
static __device__ __forceinline__ void dattn_copies(const at_args &A, const dattn_args &D, int nent,
                                                    const int32_t *ent, float2 (*ang)[DATTN_MAX_HALF],
                                                    const float *raw, uint8_t *ck, uint8_t *cv) {
    const int rl = A.hdk + A.hdv;
    if (A.type == QT_Q8_0) { /* one warp per 32-value block (hdk % 32 == 0) */
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nbk = A.hdk / 32, nbv = A.hdv / 32;
        for (int w = warp; w < nent * (nbk + nbv); w += AT_THREADS / 32) {
            int e = w / (nbk + nbv), b = w % (nbk + nbv), u = ent[e];
            const float *x = raw + e * rl;
            if (b < nbk) {
                int32_t d = b * 32 + lane;
                float2 an = ang[u][dattn_freq(d, D.half, D.neox)];
                q8_block_store(ck + e * D.kstride + b * 34, dattn_rot(x, d, D.half, D.neox, an), lane);
            } else {
                b -= nbk;
                q8_block_store(cv + e * D.vstride + b * 34, x[A.hdk + b * 32 + lane], lane);
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < nent * rl; i += AT_THREADS) {
        int e = i / rl, d = i % rl, u = ent[e];
        const float *x = raw + e * rl;
        if (d < A.hdk) {
            float2 an = ang[u][dattn_freq(d, D.half, D.neox)];
            dattn_put(ck + e * D.kstride, A.type, d, dattn_rot(x, d, D.half, D.neox, an));
        } else {
            dattn_put(cv + e * D.vstride, A.type, d - A.hdk, x[d]);
        }
    }
}

/* Fetches q of heads h0..h0+nh-1 of token t into qs and the k / v rows of kv head hk of the
 * current cells' tokens into raw ([e][hdk + hdv]) with asynchronous copies (16 bytes when
 * every row is aligned for it, else 4), committed as one group. */
static __device__ __forceinline__ void dattn_fetch(const at_args &A, const dattn_args &D, int64_t t, int32_t h0,
                                                   int32_t nh, int32_t hk, int nent, const int32_t *ent, float *qs,
                                                   float *raw) {
    const int f = D.fetch16 ? 4 : 1, rk = A.hdk / f, rv = A.hdv / f;
    const float *qsrc = A.q + t * A.qs + (int64_t)h0 * A.hdk;
    for (int i = threadIdx.x; i < nh * A.hdk / f + nent * (rk + rv); i += AT_THREADS) {
        const float *g;
        float *d;
        int j = i - nh * A.hdk / f;
        if (j < 0) {
            g = qsrc + i * f, d = qs + i * f;
        } else {
            int e = j / (rk + rv), l = j % (rk + rv), u = ent[e];
            g = l < rk ? D.k + u * D.ks + (int64_t)hk * A.hdk + l * f : D.v + u * D.vs + (int64_t)hk * A.hdv + (l - rk) * f;
            d = raw + e * (A.hdk + A.hdv) + l * f;
        }
        unsigned sa = (unsigned)__cvta_generic_to_shared(d);
        if (f == 4) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(g));
        else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(sa), "l"(g));
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Byte offset of kv head hk's slice in a cache row (q8_0: hdk % 32 == 0). */
static __device__ __forceinline__ size_t dattn_head_off(uint32_t type, int32_t hk, int32_t hd) {
    if (type == QT_Q8_0) return (size_t)hk * (hd / 32) * 34;
    return (size_t)hk * hd * (type == QT_F16 ? 2 : 4);
}

/* The last block of a column merges the splits (fixed order: the result does not depend on
 * which block is last) into ov [nh][hdv] and emits the output. One warp per head; up to 8
 * splits (head size <= 128) in one round trip to L2 (every load issued at once), up to 32
 * in two (lane s reads split s's max and sum, then the values), more in three. */
static __device__ __forceinline__ void dattn_merge(const at_args &A, int64_t t, int32_t h0, int32_t nh, float *ov) {
    __shared__ float s_w[AT_G][32];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ns = A.n_split, st = A.hdv + 2;
    for (int i = warp; i < nh; i += AT_THREADS / 32) {
        /* __ldcg: written by other blocks of this grid, so bypass L1 */
        const float *pp = A.part + (t * A.n_head + h0 + i) * ns * st;
        if (ns <= 8 && A.hdv <= 128) { /* every load at once: one round trip */
            float m[8], l[8], v[8][4], mx = -INFINITY, sum = 0.0f;
#pragma unroll
            for (int s = 0; s < 8; s++) {
                if (s >= ns) continue;
                m[s] = __ldcg(pp + s * st), l[s] = __ldcg(pp + s * st + 1);
#pragma unroll
                for (int q = 0; q < 4; q++) v[s][q] = lane + 32 * q < A.hdv ? __ldcg(pp + s * st + 2 + lane + 32 * q) : 0.0f;
            }
#pragma unroll
            for (int s = 0; s < 8; s++)
                if (s < ns) mx = fmaxf(mx, m[s]);
            float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll
            for (int s = 0; s < 8; s++) {
                if (s >= ns || !(m[s] > -INFINITY)) continue;
                float w = __expf(m[s] - mx);
                sum += w * l[s];
#pragma unroll
                for (int q = 0; q < 4; q++) acc[q] += w * v[s][q];
            }
#pragma unroll
            for (int q = 0; q < 4; q++)
                if (lane + 32 * q < A.hdv) ov[i * A.hdv + lane + 32 * q] = acc[q] / sum;
            continue;
        }
        if (ns <= 32) {
            float m = lane < ns ? __ldcg(pp + lane * st) : -INFINITY;
            float l = lane < ns ? __ldcg(pp + lane * st + 1) : 0.0f;
            float mx = cu_warp_max(m), w = m > -INFINITY ? __expf(m - mx) : 0.0f;
            float sum = cu_warp_sum(w * l);
            s_w[i % AT_G][lane] = w;
            __syncwarp();
            for (int d = lane; d < A.hdv; d += 32) {
                float acc = 0.0f;
#pragma unroll 4
                for (int s = 0; s < ns; s++) acc += s_w[i % AT_G][s] * __ldcg(pp + s * st + 2 + d);
                ov[i * A.hdv + d] = acc / sum;
            }
            __syncwarp();
            continue;
        }
        float mx = -INFINITY, l = 0.0f;
        for (int s = 0; s < ns; s++) mx = fmaxf(mx, __ldcg(pp + s * st));
        for (int s = 0; s < ns; s++) {
            float m = __ldcg(pp + s * st);
            if (m > -INFINITY) l += __expf(m - mx) * __ldcg(pp + s * st + 1);
        }
        for (int d = lane; d < A.hdv; d += 32) {
            float acc = 0.0f;
            for (int s = 0; s < ns; s++) {
                float m = __ldcg(pp + s * st);
                if (m > -INFINITY) acc += __expf(m - mx) * __ldcg(pp + s * st + 2 + d);
            }
            ov[i * A.hdv + d] = acc / l;
        }
    }
    __syncthreads();
    if (A.xq) {
        at_emit(A, t, h0, nh, ov);
        return;
    }
    for (int o = threadIdx.x; o < nh * A.hdv; o += AT_THREADS) A.fout[t * A.os + (int64_t)h0 * A.hdv + o] = ov[o];
}

/* Stages the K / V slices (at kh / vh: the cache rows of cell 0 of this block's sequence,
 * head offset added) of cells [cs, cs + ncell) into shared memory sk / sv (rows kstride /
 * vstride apart) with asynchronous copies, issued BEFORE the programmatic-launch wait:
 * cells of earlier steps were written at least two kernels back (every kernel of a step
 * waits for the one before it before it lets the next one start, and a step's arena upload
 * separates the steps), and the current step's cells are read from the block's own copies,
 * never from here. */
static __device__ __forceinline__ void dattn_stage(const at_args &A, const dattn_args &D, const uint8_t *kh,
                                                   const uint8_t *vh, int64_t cs, int64_t ncell, uint8_t *sk,
                                                   uint8_t *sv) {
    /* a warp per cell, a lane per piece (no divisions in the loop) */
    int w = D.stage_w, pk = D.kbytes / w, pv = D.vbytes / w, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int cc = warp; cc < (int)ncell; cc += AT_THREADS / 32) {
        const uint8_t *gk = kh + (size_t)(cs + cc) * A.row_bytes, *gv = vh + (size_t)(cs + cc) * A.row_bytes;
        for (int l = lane; l < pk + pv; l += 32) {
            const uint8_t *g = l < pk ? gk + l * w : gv + (l - pk) * w;
            uint8_t *d = l < pk ? sk + cc * D.kstride + l * w : sv + cc * D.vstride + (l - pk) * w;
            unsigned sa = (unsigned)__cvta_generic_to_shared(d);
            if (w == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(g));
            else if (w == 8) asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(sa), "l"(g));
            else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(sa), "l"(g));
        }
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Without staging: the same cells into L2 (a hint, always safe). */
static __device__ __forceinline__ void dattn_prefetch(const at_args &A, const dattn_args &D, const uint8_t *kh,
                                                      const uint8_t *vh, int64_t cs, int64_t ncell) {
    int nlk = (D.kbytes + 127) / 128, nlv = (D.vbytes + 127) / 128, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int cc = warp; cc < (int)ncell; cc += AT_THREADS / 32)
        for (int l = lane; l < nlk + nlv; l += 32) {
            const uint8_t *a = l < nlk ? kh + (size_t)(cs + cc) * A.row_bytes + l * 128
                                       : vh + (size_t)(cs + cc) * A.row_bytes + (l - nlk) * 128;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
        }
}

static __global__ void __launch_bounds__(AT_THREADS) dattn_kernel(at_args A, dattn_args D) {
    extern __shared__ float sm[];
    __shared__ int32_t s_pos[AT_SMALL_BATCH], s_seq[AT_SMALL_BATCH], s_ent[AT_SMALL_BATCH];
    __shared__ int s_nent, s_own, s_last;
    __shared__ int8_t s_map[AT_SPLIT];
    __shared__ float2 s_ang[AT_SMALL_BATCH][DATTN_MAX_HALF];
    int32_t bx = (int32_t)blockIdx.x, y = (int32_t)blockIdx.y, gi = bx % A.n_groups, hk = bx / A.n_groups % A.n_head_kv;
    int32_t t = bx / A.n_groups / A.n_head_kv;
    int32_t G = A.n_head / A.n_head_kv, h0 = hk * G + gi * AT_G, nh = min(AT_G, G - gi * AT_G);
    /* 1. before the wait: positions (the step arena, uploaded before the step's first
     * kernel), the current cells of this block's range, angles, L2 prefetch */
    if (threadIdx.x < D.n_tok) s_pos[threadIdx.x] = A.pos[threadIdx.x], s_seq[threadIdx.x] = A.seq[threadIdx.x];
    __syncthreads();
    int64_t p = s_pos[t], lo = A.window > 0 && p - A.window + 1 > 0 ? p - A.window + 1 : 0;
    int64_t cs = max(lo, (int64_t)y * A.span), ce = min(p + 1, (int64_t)(y + 1) * A.span), ncell = ce - cs;
    if (threadIdx.x == 0) {
        int n = 0, own = -1;
        for (int u = 0; u < D.n_tok; u++)
            if (s_seq[u] == s_seq[t] && s_pos[u] >= cs && s_pos[u] < ce) {
                if (u == t) own = n;
                s_ent[n++] = u;
            }
        s_nent = n, s_own = own;
    }
    __syncthreads();
    int nent = s_nent;
    for (int i = threadIdx.x; i < (1 + nent) * D.half; i += AT_THREADS) {
        int w = i / D.half, j = i % D.half, u = w == 0 ? (int)t : s_ent[w - 1];
        s_ang[u][j] = dattn_angle(D, s_pos[u], j); /* t may come twice: the same value */
    }
    size_t koff = dattn_head_off(A.type, hk, A.hdk), voff = dattn_head_off(A.type, hk, A.hdv);
    const uint8_t *kb = A.kc + (size_t)s_seq[t] * A.n_ctx * A.row_bytes;
    const uint8_t *vb = A.vc + (size_t)s_seq[t] * A.n_ctx * A.row_bytes;
    uint8_t *ck = (uint8_t *)(sm + AT_G * (A.hdk + AT_SPLIT) + (AT_THREADS / 32) * AT_G * 64);
    uint8_t *cv = ck + AT_SMALL_BATCH * D.kstride;
    uint8_t *sk = cv + AT_SMALL_BATCH * D.vstride, *sv = sk + A.span * D.kstride;
    if (D.stage_w) dattn_stage(A, D, kb + koff, vb + voff, cs, ncell, sk, sv);
    else dattn_prefetch(A, D, kb + koff, vb + voff, cs, ncell);
    cu_pdl_wait(); /* launched early (CU_LAUNCH): q, k, v come from the product before */
    cu_pdl_trigger();
    /* 2. q of the group and the current cells' k / v rows in one round trip (raw k / v in
     * the value pass's reduction area, free until then), then q rotated in place and the
     * block's copies of its current cells built */
    float *qs = sm, *raw = sm + AT_G * (A.hdk + AT_SPLIT);
    dattn_fetch(A, D, t, h0, nh, hk, nent, s_ent, qs, raw);
    for (int64_t cc = threadIdx.x; cc < ncell; cc += AT_THREADS) s_map[cc] = -1;
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads(); /* fetched rows, staged cells, angles, map */
    for (int i = threadIdx.x; i < nh * D.half; i += AT_THREADS) {
        int hi = i / D.half, j = i % D.half;
        int32_t a = D.neox ? j : 2 * j, b = D.neox ? j + D.half : 2 * j + 1;
        float y0, y1;
        rope_pair(qs[hi * A.hdk + a], qs[hi * A.hdk + b], s_ang[t][j].x, s_ang[t][j].y, &y0, &y1);
        qs[hi * A.hdk + a] = y0, qs[hi * A.hdk + b] = y1;
    }
    dattn_copies(A, D, nent, s_ent, s_ang, raw, ck, cv);
    if ((int)threadIdx.x < nent) s_map[s_pos[s_ent[threadIdx.x]] - cs] = (int8_t)threadIdx.x;
    __syncthreads();
    /* 3. the owner of token t's cell stores it (nobody in this launch reads it back) */
    if (gi == 0 && s_own >= 0) {
        size_t cell = (size_t)s_seq[t] * A.n_ctx + (size_t)p;
        const uint16_t *ok = (const uint16_t *)(ck + s_own * D.kstride), *ov = (const uint16_t *)(cv + s_own * D.vstride);
        uint16_t *dk = (uint16_t *)(D.kc + cell * A.row_bytes + koff), *dv = (uint16_t *)(D.vc + cell * A.row_bytes + voff);
        for (int i = threadIdx.x; i < D.kbytes / 2; i += AT_THREADS) dk[i] = ok[i];
        for (int i = threadIdx.x; i < D.vbytes / 2; i += AT_THREADS) dv[i] = ov[i];
    }
    /* 4. attention over the range (at_split_block_cur starts with a barrier) */
    at_cur cur = { s_map, ck, cv, D.kstride, D.vstride, D.stage_w ? sk : NULL, D.stage_w ? sv : NULL };
    at_split_block_cur(A, bx, y, sm, cur);
    if (!A.cnt) return; /* one split: the output is written */
    /* count this block: the barrier orders the block's partial results before thread 0's
     * release-acquire add at GPU scope (cumulative), which in the last block also orders
     * the merge's reads after every other block's results; one round trip */
    __syncthreads();
    if (threadIdx.x == 0) {
        int old;
        asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(A.cnt + bx) : "memory");
        s_last = old == (int)gridDim.y - 1;
        if (s_last) A.cnt[bx] = 0; /* ready for the next launch (ordered by the kernel's end) */
    }
    __syncthreads();
    if (!s_last) return;
    dattn_merge(A, t, h0, nh, sm);
}

int cuda_dattn_supported(const cuda_attn *a, const cuda_rope *r, int quant) {
    if (!a || !r || !a->kv || a->n_tok < 1 || a->n_tok > AT_SMALL_BATCH || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv || a->window < 0)
        return 0;
    int32_t hd = a->head_dim_k;
    uint32_t ty = a->kv->type;
    if (a->head_dim_v != hd || r->n_rot != hd || hd <= 0 || hd % 2 || hd / 2 > DATTN_MAX_HALF ||
        (int64_t)a->n_head_kv * hd != a->kv->kv_dim)
        return 0;
    if (ty != QT_F16 && ty != QT_F32 && !(ty == QT_Q8_0 && hd % 32 == 0)) return 0;
    if (quant && hd % 32) return 0;
    return 1;
}

/* Span rule of the fused kernel: with HEARTH_CUDA_DATTN_ONE=128 one split up to the bucket
 * of 128 cells (no merge; measured slower: one block then walks up to 128 cells), else
 * spans of 32..128 cells giving at least HEARTH_CUDA_DATTN_MIN_BLOCKS blocks per token
 * (default 64; the rule of cuda_attention). */
static int32_t dattn_span(const cuda_ctx *c, int64_t base_blocks, int32_t max_pos) {
    int32_t min_blocks = c->knobs.dattn_min_blocks ? c->knobs.dattn_min_blocks : AT_MIN_BLOCKS;
    if (max_pos < c->knobs.dattn_one) return AT_SPLIT;
    return at_span_for(base_blocks, max_pos, 32, min_blocks);
}

static int32_t dattn_bytes(uint32_t type, int32_t hd) {
    return type == QT_Q8_0 ? hd / 32 * 34 : hd * (type == QT_F16 ? 2 : 4);
}

/* Reserves the merge counters (zeroed once when new; the kernel keeps them at 0). */
static int dattn_counters(cuda_ctx *c, unsigned gx, int32_t **cnt, hb_err *err) {
    int rc;
    void *before = c->attn_cnt.p;
    if ((rc = cu_scratch_reserve(&c->attn_cnt, (size_t)gx * sizeof(int32_t), err))) return rc;
    if (c->attn_cnt.p != before) {
        cudaError_t e = cudaMemsetAsync(c->attn_cnt.p, 0, c->attn_cnt.cap, c->stream);
        if (e != cudaSuccess) return cu_fail(err, e, "clearing the attention counters");
    }
    *cnt = (int32_t *)c->attn_cnt.p;
    return HEARTH_OK;
}

int cuda_rope_kv_attention_dec(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs,
                               const float *k, int64_t ks, const float *v, int64_t vs, float *out, int64_t os, int quant,
                               int *done, hb_err *err) {
    *done = 0;
    if (a->n_tok <= 0 || !cuda_dattn_supported(a, r, quant) || (quant && os != (int64_t)a->n_head * a->head_dim_v))
        return HEARTH_OK;
    return cu_attn_dec_rope(c, a, r, q, qs, k, ks, v, vs, out, os, quant, done, err);
}

int cuda_rope_kv_attention(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs,
                           const float *k, int64_t ks, const float *v, int64_t vs, float *out, int64_t os, int quant,
                           hb_err *err) {
    int rc;
    if (a->n_tok <= 0) return HEARTH_OK;
    if (!cuda_dattn_supported(a, r, quant) || (quant && os != (int64_t)a->n_head * a->head_dim_v))
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: this attention shape has no fused decode kernel");
    int done = 0; /* short contexts, f16 cache: one block per head (cu_attn_dec.cu) */
    if ((rc = cu_attn_dec_rope(c, a, r, q, qs, k, ks, v, vs, out, os, quant, &done, err)) || done) return rc;
    int32_t n_groups = (a->n_head / a->n_head_kv + AT_G - 1) / AT_G;
    int32_t span = dattn_span(c, (int64_t)a->n_head_kv * n_groups, a->max_pos_host);
    at_args A;
    unsigned gx, gy;
    size_t part, smem;
    at_plan_span(c, a, span, q, qs, out, os, NULL, &A, &gx, &gy, &part, &smem);
    dattn_args D;
    memset(&D, 0, sizeof D);
    D.k = k, D.v = v, D.ks = ks, D.vs = vs, D.kc = (uint8_t *)a->kv->k, D.vc = (uint8_t *)a->kv->v;
    D.n_tok = a->n_tok, D.neox = r->neox, D.half = r->n_rot / 2;
    D.base = r->base, D.freq_scale = r->freq_scale, D.attn_factor = r->attn_factor;
    D.factors = r->factors, D.inv = r->inv;
    D.fetch16 = ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 == 0 && qs % 4 == 0 && ks % 4 == 0 && vs % 4 == 0 &&
                a->head_dim_k % 4 == 0;
    D.kbytes = dattn_bytes(a->kv->type, a->head_dim_k), D.vbytes = dattn_bytes(a->kv->type, a->head_dim_v);
    D.kstride = (D.kbytes + 15) & ~15, D.vstride = (D.vbytes + 15) & ~15;
    smem += (size_t)AT_SMALL_BATCH * (D.kstride + D.vstride);
    size_t stage = (size_t)A.span * (D.kstride + D.vstride);
    /* most shared memory a block spends on staged cells (HEARTH_CUDA_DATTN_STAGE bytes,
     * default 64 KiB; 0: no staging, L2 prefetch only) */
    if (stage <= (size_t)c->knobs.dattn_stage) {
        for (int w = 16; w >= 4 && !D.stage_w; w /= 2)
            if (a->kv->row_bytes % w == 0 && D.kbytes % w == 0 && D.vbytes % w == 0) D.stage_w = w;
        if (D.stage_w) smem += stage;
    }
    if (gy > 1) {
        if ((rc = cu_scratch_reserve(&c->attn, part, err))) return rc;
        A.part = (float *)c->attn.p;
        if ((rc = dattn_counters(c, gx, &A.cnt, err))) return rc;
    }
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    /* the default limit (48 KiB) counts the kernel's static shared memory too */
    if ((rc = cu_smem_allow(c, (const void *)dattn_kernel, smem, err))) return rc;
    D.dang = c->knobs.dattn_dang; /* HEARTH_CUDA_DATTN_DANG */
    CU_LAUNCH(err, "launching fused attention", dattn_kernel, dim3(gx, gy), AT_THREADS, smem, c, A, D);
    return cu_check_launch(err, "fused attention");
}
