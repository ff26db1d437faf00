/* cu_mega_attn.cuh — MK_ATTN_DEC: a layer's short-context decode attention as ONE op of the
 * persistent decode kernel (device code, included by cu_mega.cu; the recording that builds
 * the op from MK_ROPE (+ MK_KV) + MK_ATTN (+ MK_COMBINE) is cuda_mega_attention in
 * cu_mega_rec.cu).
 *
 * Why: as separate ops the rotation, the split attention and the merge each cost a grid
 * barrier plus a chain of dependent L2 round trips (~15 us per layer measured on an H200);
 * here one work item per (query head, token) does everything between two barriers:
 *  1. the positions and sequences of the batch: read by the first MK_ATTN_DEC op of the
 *     launch into the block's static shared memory, which the later ones (same arrays,
 *     flag MA_HAVEPS) reuse, so for them the op starts without a round trip;
 *  2. which cells of the range [lo, pos] are this step's (a token of the batch of the same
 *     sequence at that position): those are used from the item's own copy (k rotated, both
 *     rounded to the cache type exactly as the store rounds them), never from the cache,
 *     since no order exists between blocks inside one op; ONE round trip of asynchronous
 *     copies fetches the item's UNROTATED q row, the k / v rows of its kv head for every
 *     token of the batch (product outputs) and the other cells of the range (as many as fit
 *     in MK_ATT_SMEM; the earliest beyond that are read from the cache directly);
 *  3. while those copies fly: the RoPE angles (theta in double from the host's
 *     base^(-2i/n_rot) table, reduced to [-pi, pi] in double, cos/sin in float) and an L2
 *     prefetch of the same cells of the next layer's cache (flag MA_NEXTPF: the weights
 *     streamed in between would otherwise have evicted them); then q and the new k are
 *     rotated and the first q head of each kv-head group stores its token's cell;
 *  4. scores (thread per cell), softmax, values (thread per dimension pair and cell class),
 *     the f32 output row for the o product (which quantizes it itself).
 * q and k stay unrotated in their buffers: cu_mega_plan checks that no later op reads them
 * before they are overwritten, else it inserts the in-place RoPE after this op.
 * Every sum has a fixed order that depends on the cell index and the head shape only
 * (explicit FMAs, the same code for cells from the copy, the stage or the cache), never on
 * the batch size, the stage size or timing: 8 sequences together == each alone, bitwise.
 * CUDA C: no classes, no templates. */
#ifndef HEARTH_CU_MEGA_ATTN_CUH
#define HEARTH_CU_MEGA_ATTN_CUH

#include "backend/cuda/cu_mega.cuh"

#define MA_MAXC 512 /* most cells one token sees (its position bucket) */
#define MA_CP16 1   /* ad_flags: the q, k, v rows can be copied 16 bytes at a time */
#define MA_POISON 2 /* ad_flags: the program could not be completed (mk_adec_fix): NaN output */
#define MA_HAVEPS 4 /* ad_flags: an earlier MK_ATTN_DEC op of the launch read these pos / seq */
#define MA_NEXTPF 8 /* ad_flags: prefetch the cells of the next layer's cache (ad_nk, ad_nv) */
#define MA_TIME 16  /* ad_flags (tuning, HEARTH_CUDA_MEGA_ADEC_TIME=1): block 0 prints its phases
                     * (SM clock cycles) at position 60 */

/* Byte offsets in the op's shared memory (after the K and V stages of `stage` cells), the
 * same on the host (which sizes the stage to fit MK_ATT_SMEM) and the device. */
typedef struct ma_layout {
    int32_t raw, q, sc, acc, map, end;
} ma_layout;

static __host__ __device__ __forceinline__ ma_layout ma_layout_of(int32_t n_tok, int32_t hd, int32_t esz,
                                                                   int32_t cap, int32_t stage) {
    ma_layout L;
    L.raw = 2 * stage * hd * esz;        /* [n_tok][k hd | v hd] floats: the batch's k / v rows */
    L.q = L.raw + n_tok * 2 * hd * 4;    /* [hd] floats: q, rotated in place */
    L.sc = L.q + hd * 4;                 /* [cap] floats: scores, then weights */
    L.acc = L.sc + ((cap + 3) & ~3) * 4; /* [MK_THREADS * 2] floats: value partial sums */
    L.map = L.acc + MK_THREADS * 2 * 4;  /* [cap] int8: the batch token of a cell, or -1 */
    L.end = L.map + ((cap + 15) & ~15);
    return L;
}

#ifndef MA_LAYOUT_ONLY

static __device__ __forceinline__ void ma_cp(void *dst, const void *src, int w) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    if (w == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src));
}

/* The batch token that adds cell c of sequence sq this step (the last one when several
 * claim it), or -1. */
static __device__ __forceinline__ int ma_new(const int32_t *sp, const int32_t *ss, int n_tok, int32_t sq, int64_t c) {
    int m = -1;
    for (int u = 0; u < n_tok; u++)
        if (ss[u] == sq && (int64_t)sp[u] == c) m = u;
    return m;
}

/* cos / sin (times attn_factor) of frequency j at position p; inv = base^(-2j/n_rot), fac
 * its factor. theta in double as the other RoPE kernels; reduced to [-pi, pi] in double
 * and its cos/sin in float (about 1e-7 from the double result). */
static __device__ __forceinline__ float2 ma_angle(const cuda_rope *r, double inv, float fac, int64_t p) {
    double theta = (double)p * r->freq_scale * inv;
    if (r->factors) theta /= fac;
    double k = rint(theta * 0.15915494309189535); /* 1 / (2 pi) */
    float x = (float)fma(-k, 6.283185307179586, theta), sf, cf;
    sincosf(x, &sf, &cf);
    return make_float2(cf * r->attn_factor, sf * r->attn_factor);
}

/* A value as the cache stores it (f16: rounded; f32: as is). */
static __device__ __forceinline__ float ma_round(uint32_t type, float v) {
    return type == QT_F16 ? __half2float(__float2half_rn(v)) : v;
}

/* acc[j] += q[j] * k[j], j < 8: explicit FMAs, so that the sum is rounded the same
 * whichever source the k values came from. q: 16-byte aligned shared memory. */
static __device__ __forceinline__ void ma_fma8(float *acc, const float *q, const float *k) {
    float4 a = ((const float4 *)q)[0], b = ((const float4 *)q)[1];
    acc[0] = __fmaf_rn(a.x, k[0], acc[0]), acc[1] = __fmaf_rn(a.y, k[1], acc[1]);
    acc[2] = __fmaf_rn(a.z, k[2], acc[2]), acc[3] = __fmaf_rn(a.w, k[3], acc[3]);
    acc[4] = __fmaf_rn(b.x, k[4], acc[4]), acc[5] = __fmaf_rn(b.y, k[5], acc[5]);
    acc[6] = __fmaf_rn(b.z, k[6], acc[6]), acc[7] = __fmaf_rn(b.w, k[7], acc[7]);
}

/* q . k for one cell whose k is a float copy kf. */
static __device__ __forceinline__ float ma_dot_f(const float *q, int32_t hd, const float *kf) {
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    for (int32_t g = 0; g < hd / 8; g++) ma_fma8(acc, q + 8 * g, kf + 8 * g);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* q . k for one cell whose k is a head slice in the cache format at row (the shared stage
 * or the cache) made of np 16-byte pieces, piece i stored at (i + r0) % np (r0 < np). The
 * same FMAs in the same order as ma_dot_f. */
static __device__ __forceinline__ float ma_dot_c(const float *q, int32_t hd, uint32_t type, const uint8_t *row,
                                                 int32_t r0, int32_t np) {
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f }, k[8];
    for (int32_t g = 0; g < hd / 8; g++) {
        if (type == QT_F16) {
            int32_t pi = g + r0;
            pi -= pi >= np ? np : 0;
            uint4 u = *(const uint4 *)(row + pi * 16);
            float2 f0 = __half22float2(*(const __half2 *)&u.x), f1 = __half22float2(*(const __half2 *)&u.y);
            float2 f2 = __half22float2(*(const __half2 *)&u.z), f3 = __half22float2(*(const __half2 *)&u.w);
            k[0] = f0.x, k[1] = f0.y, k[2] = f1.x, k[3] = f1.y, k[4] = f2.x, k[5] = f2.y, k[6] = f3.x, k[7] = f3.y;
        } else {
            int32_t p0 = 2 * g + r0, p1;
            p0 -= p0 >= np ? np : 0;
            p1 = p0 + 1 == np ? 0 : p0 + 1;
            float4 x = *(const float4 *)(row + p0 * 16), y = *(const float4 *)(row + p1 * 16);
            k[0] = x.x, k[1] = x.y, k[2] = x.z, k[3] = x.w, k[4] = y.x, k[5] = y.y, k[6] = y.z, k[7] = y.w;
        }
        ma_fma8(acc, q + 8 * g, k);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Block-wide max (is_max) or sum of v over MK_THREADS threads in a fixed order; red: this
 * reduction's own MK_WARPS floats (the caller's barriers keep it free). */
static __device__ __forceinline__ float ma_reduce(float v, bool is_max, float *red) {
    v = is_max ? cu_warp_max(v) : cu_warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    MK_SYNC();
    float r = red[0];
    for (int w = 1; w < MK_WARPS; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

/* Step 2a: asynchronous copies of q row (t, h) into qv and of the k and v rows of kv head
 * hk of every batch token into raw (not waited for). */
static __device__ __forceinline__ void ma_fetch(const mk_op *op, int t, int h, int hk, float *qv, float *raw) {
    int tid = threadIdx.x, n_tok = op->n_tok, hd = op->head_dim;
    int w = (op->ad_flags & MA_CP16) ? 16 : 4, per = hd * 4 / w, total = (1 + 2 * n_tok) * per;
    for (int i = tid; i < total; i += MK_THREADS) {
        int r = i / per, pc = i - r * per;
        const float *src;
        float *dst;
        if (r == 0) {
            src = op->x + (int64_t)t * op->xs + (int64_t)h * hd, dst = qv;
        } else {
            int u = (r - 1) >> 1;
            src = (r - 1) & 1 ? op->aux + (int64_t)u * op->as : op->x2 + (int64_t)u * op->stride2;
            src += (int64_t)hk * hd, dst = raw + u * 2 * hd + ((r - 1) & 1) * hd;
        }
        ma_cp((uint8_t *)dst + pc * w, (const uint8_t *)src + pc * w, w);
    }
}

/* Step 2b: the map of this step's cells and the copies of the cells [base, base + nst) that
 * are not (K pieces rotated by slot, V plain) into the stages (not waited for). */
static __device__ __forceinline__ void ma_stage(const mk_op *op, const int32_t *sp, const int32_t *ss, int32_t sq,
                                                int64_t lo, int ncell, int base, int nst, int hk, int8_t *map,
                                                uint8_t *sk, uint8_t *sv) {
    int tid = threadIdx.x, n_tok = op->n_tok, rb = op->head_dim * (op->kv_type == QT_F16 ? 2 : 4), np = rb / 16;
    for (int cc = tid; cc < ncell; cc += MK_THREADS) map[cc] = (int8_t)ma_new(sp, ss, n_tok, sq, lo + cc);
    const uint8_t *kb = op->kc + ((size_t)sq * (size_t)op->n_ctx + (size_t)lo) * op->kv_row_bytes + (size_t)hk * rb;
    const uint8_t *vb = op->vc + ((size_t)sq * (size_t)op->n_ctx + (size_t)lo) * op->kv_row_bytes + (size_t)hk * rb;
    for (int i = tid; i < nst * np; i += MK_THREADS) {
        int slot = i / np, pc = i - slot * np, cc = base + slot;
        if (ma_new(sp, ss, n_tok, sq, lo + cc) >= 0) continue; /* written by this launch: the copy */
        size_t off = (size_t)cc * op->kv_row_bytes + (size_t)pc * 16;
        ma_cp(sk + slot * rb + ((pc + slot) % np) * 16, kb + off, 16);
        ma_cp(sv + slot * rb + pc * 16, vb + off, 16);
    }
}

/* Whether the copy of batch token u's k / v is used by the item of token t (its cell is in
 * the range) or stored by it (u == t). */
#define MA_USE(u) ((u) == t || (ss[u] == sq && sp[u] >= lo && sp[u] < lo + ncell))

/* Step 3a (while the copies fly): the angles of the tokens whose copies are used, for
 * thread (u0 + k * per, j): frequency j = tid % half, per = MK_THREADS / half tokens at
 * once (at most 4 rounds: half >= 16, n_tok <= 8). inv / fac: frequency j's table entry
 * and factor. */
static __device__ __forceinline__ void ma_angles(const mk_op *op, const int32_t *sp, const int32_t *ss, int t,
                                                 int32_t sq, int64_t lo, int ncell, double inv, float fac,
                                                 float2 *an) {
    int tid = threadIdx.x, half = op->head_dim / 2, per = MK_THREADS / half;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int u = tid / half + k * per;
        an[k] = make_float2(0.0f, 0.0f);
        if (tid < per * half && u < op->n_tok && MA_USE(u)) an[k] = ma_angle(&op->rope, inv, fac, sp[u]);
    }
}

/* Step 3b (after the wait): RoPE of q (token t) and of the k rows of the tokens whose
 * copies are used, k and v of those rounded to the cache type, in place; the same thread
 * mapping as ma_angles. */
static __device__ __forceinline__ void ma_rotate(const mk_op *op, const int32_t *sp, const int32_t *ss, int t,
                                                 int32_t sq, int64_t lo, int ncell, const float2 *an, float *qv,
                                                 float *raw) {
    int tid = threadIdx.x, n_tok = op->n_tok, hd = op->head_dim, half = hd / 2, per = MK_THREADS / half;
    uint32_t ty = op->kv_type;
    int j = tid % half, a = op->rope.neox ? j : 2 * j, b = op->rope.neox ? j + half : 2 * j + 1;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int u = tid / half + k * per;
        if (tid >= per * half || u >= n_tok || !MA_USE(u)) continue;
        float *kr = raw + u * 2 * hd, y0, y1;
        rope_pair(kr[a], kr[b], an[k].x, an[k].y, &y0, &y1);
        kr[a] = ma_round(ty, y0), kr[b] = ma_round(ty, y1);
        if (u == t) {
            rope_pair(qv[a], qv[b], an[k].x, an[k].y, &y0, &y1);
            qv[a] = y0, qv[b] = y1;
        }
    }
    if (ty == QT_F16)
        for (int i = tid; i < n_tok * hd; i += MK_THREADS) {
            int u = i / hd, d = i - u * hd;
            if (MA_USE(u)) raw[u * 2 * hd + hd + d] = ma_round(ty, raw[u * 2 * hd + hd + d]);
        }
}

/* Step 3c: L2 prefetch of the item's cells [lo, lo + ncell) of kv head hk in the next
 * layer's cache (the same row layout), by the first q head of each group. */
static __device__ __forceinline__ void ma_next_pf(const mk_op *op, int32_t sq, int64_t lo, int ncell, int hk) {
    int rb = op->head_dim * (op->kv_type == QT_F16 ? 2 : 4), nl = (rb + 127) / 128;
    size_t base = ((size_t)sq * (size_t)op->n_ctx + (size_t)lo) * op->kv_row_bytes + (size_t)hk * rb;
    for (int i = threadIdx.x; i < ncell * nl * 2; i += MK_THREADS) {
        int cc = i / (2 * nl), l = i - cc * 2 * nl;
        const uint8_t *a = (l < nl ? op->ad_nk : op->ad_nv) + base + (size_t)cc * op->kv_row_bytes + (l % nl) * 128;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
    }
}

/* Stores the item's token t's cell (kv head hk): its rotated, rounded k and v. */
static __device__ __forceinline__ void ma_store(const mk_op *op, int t, int hk, int32_t sq, int64_t p,
                                                const float *raw) {
    int hd = op->head_dim;
    if (p < 0 || p >= op->n_ctx) return; /* never for positions the host checked */
    size_t esz = op->kv_type == QT_F16 ? 2 : 4;
    size_t off = ((size_t)sq * (size_t)op->n_ctx + (size_t)p) * op->kv_row_bytes + (size_t)hk * hd * esz;
    const float *kr = raw + t * 2 * hd;
    for (int d = threadIdx.x; d < hd; d += MK_THREADS) {
        if (op->kv_type == QT_F16) {
            ((__half *)(op->kc + off))[d] = __float2half_rn(kr[d]);
            ((__half *)(op->vc + off))[d] = __float2half_rn(kr[hd + d]);
        } else {
            ((float *)(op->kc + off))[d] = kr[d];
            ((float *)(op->vc + off))[d] = kr[hd + d];
        }
    }
}

/* Step 4 (after the copies landed): scores, softmax and values of the item's cells; writes
 * the output row of head h, token t. */
static __device__ __forceinline__ void ma_attend(const mk_op *op, int t, int h, int hk, int32_t sq, int64_t lo,
                                                 int ncell, int base, const uint8_t *sk, const uint8_t *sv,
                                                 const float *qv, const float *raw, float *sc, float *acc,
                                                 const int8_t *map, float (*red)[MK_WARPS]) {
    int tid = threadIdx.x, hd = op->head_dim;
    uint32_t ty = op->kv_type;
    int32_t esz = ty == QT_F16 ? 2 : 4, rb = hd * esz, np = rb / 16;
    const uint8_t *kb = op->kc + ((size_t)sq * (size_t)op->n_ctx + (size_t)lo) * op->kv_row_bytes + (size_t)hk * rb;
    const uint8_t *vb = op->vc + ((size_t)sq * (size_t)op->n_ctx + (size_t)lo) * op->kv_row_bytes + (size_t)hk * rb;
    float mx = -INFINITY;
    for (int cc = tid; cc < ncell; cc += MK_THREADS) { /* one thread per cell */
        int m = map[cc];
        float s;
        if (m >= 0) s = ma_dot_f(qv, hd, raw + m * 2 * hd);
        else if (cc >= base) s = ma_dot_c(qv, hd, ty, sk + (cc - base) * rb, (cc - base) % np, np);
        else s = ma_dot_c(qv, hd, ty, kb + (size_t)cc * op->kv_row_bytes, 0, np);
        s *= op->ad_scale;
        if (op->ad_softcap > 0.0f) s = op->ad_softcap * tanhf(s / op->ad_softcap);
        sc[cc] = s;
        mx = fmaxf(mx, s);
    }
    mx = ma_reduce(mx, true, red[0]);
    float sum = 0.0f;
    for (int cc = tid; cc < ncell; cc += MK_THREADS) {
        float e = __expf(sc[cc] - mx);
        sc[cc] = e;
        sum += e;
    }
    sum = ma_reduce(sum, false, red[1]); /* its barrier also publishes the weights */
    /* values: thread (pair pr, class g) sums cells g, g + ng, ... for dimensions 2pr, 2pr+1 */
    int pairs = hd / 2, ng = MK_THREADS / pairs, pr = tid % pairs, g = tid / pairs;
    if (g < ng) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int cc = g; cc < ncell; cc += ng) {
            int m = map[cc];
            float v0, v1, w = sc[cc];
            if (m >= 0) {
                v0 = raw[m * 2 * hd + hd + 2 * pr], v1 = raw[m * 2 * hd + hd + 2 * pr + 1];
            } else {
                const uint8_t *vr = cc >= base ? sv + (cc - base) * rb : vb + (size_t)cc * op->kv_row_bytes;
                if (ty == QT_F16) {
                    float2 f = __half22float2(*(const __half2 *)(vr + pr * 4));
                    v0 = f.x, v1 = f.y;
                } else {
                    float2 f = *(const float2 *)(vr + pr * 8);
                    v0 = f.x, v1 = f.y;
                }
            }
            a0 = __fmaf_rn(w, v0, a0), a1 = __fmaf_rn(w, v1, a1);
        }
        acc[g * hd + 2 * pr] = a0, acc[g * hd + 2 * pr + 1] = a1;
    }
    MK_SYNC();
    float *orow = op->out + (int64_t)t * op->os + (int64_t)h * hd;
    for (int d = tid; d < hd; d += MK_THREADS) {
        float o = 0.0f;
        for (int k = 0; k < ng; k++) o += acc[k * hd + d];
        orow[d] = o / sum;
    }
}

/* The op: work items (query head, token) spread over the grid; sm: the op's MK_ATT_SMEM
 * bytes of shared memory (16-byte aligned). */
static __device__ __noinline__ void mk_attn_dec(const mk_op *op, uint8_t *sm_g) {
    extern __shared__ __align__(16) uint8_t ma_dyn[];
    /* the positions and sequences of the batch: kept for the later ops of the launch */
    __shared__ int32_t s_pos[MK_T], s_seq[MK_T];
    __shared__ float s_red[2][MK_WARPS];
    int tid = threadIdx.x, n_tok = op->n_tok, nh = op->n_head, hd = op->head_dim, half = hd / 2;
    int group = nh / op->n_head2, esz = op->kv_type == QT_F16 ? 2 : 4, cap = op->ad_cap, S = op->ad_stage;
    ma_layout L = ma_layout_of(n_tok, hd, esz, cap, S);
    /* the same bytes, known to be shared memory (LDS, not generic loads) */
    uint8_t *sm = ma_dyn + ((unsigned)__cvta_generic_to_shared(sm_g) - (unsigned)__cvta_generic_to_shared(ma_dyn));
    uint8_t *sk = sm, *sv = sm + S * hd * esz;
    float *raw = (float *)(sm + L.raw), *qv = (float *)(sm + L.q), *sc = (float *)(sm + L.sc);
    float *acc = (float *)(sm + L.acc);
    int8_t *map = (int8_t *)(sm + L.map);
    /* this thread's RoPE frequency (ma_angles): its table entry and factor, fetched once */
    int jf = tid % half;
    double inv = op->rope.inv ? op->rope.inv[jf] : pow((double)op->rope.base, -2.0 * jf / (double)op->rope.n_rot);
    float fac = op->rope.factors ? op->rope.factors[jf] : 1.0f;
    long long c0 = clock64(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    if (!(op->ad_flags & MA_HAVEPS)) { /* every block, items or not: later ops reuse them */
        if (tid < n_tok) s_pos[tid] = op->pos[tid], s_seq[tid] = op->seq[tid];
        MK_SYNC();
    }
    for (int b = blockIdx.x; b < n_tok * nh; b += gridDim.x) {
        int t = b / nh, h = b - t * nh, hk = h / group;
        if (op->ad_flags & MA_POISON) {
            for (int d = tid; d < hd; d += MK_THREADS) op->out[(int64_t)t * op->os + (int64_t)h * hd + d] = NAN;
            continue;
        }
        int64_t p = s_pos[t], lo = op->ad_window > 0 && p - op->ad_window + 1 > 0 ? p - op->ad_window + 1 : 0;
        int32_t sq = s_seq[t];
        int ncell = (int)max((int64_t)0, min(p + 1 - lo, (int64_t)cap)), nst = min(ncell, S), base = ncell - nst;
        ma_fetch(op, t, h, hk, qv, raw);
        ma_stage(op, s_pos, s_seq, sq, lo, ncell, base, nst, hk, map, sk, sv);
        float2 an[4];
        ma_angles(op, s_pos, s_seq, t, sq, lo, ncell, inv, fac, an);
        if ((op->ad_flags & MA_NEXTPF) && h % group == 0) ma_next_pf(op, sq, lo, ncell, hk);
        c1 = clock64();
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        MK_SYNC();
        c2 = clock64();
        ma_rotate(op, s_pos, s_seq, t, sq, lo, ncell, an, qv, raw);
        MK_SYNC();
        c3 = clock64();
        if (h % group == 0) ma_store(op, t, hk, sq, p, raw);
        ma_attend(op, t, h, hk, sq, lo, ncell, base, sk, sv, qv, raw, sc, acc, map, s_red);
        c4 = clock64();
        MK_SYNC(); /* shared memory is free for the next item */
        c5 = clock64();
        if ((op->ad_flags & MA_TIME) && blockIdx.x == 0 && tid == 0 && p == 60)
            printf("adec n_tok %d ncell %d staged %d flags %d: issued %lld waited %lld rotated %lld attended %lld end "
                   "%lld cycles\n",
                   n_tok, ncell, nst, op->ad_flags, c1 - c0, c2 - c0, c3 - c0, c4 - c0, c5 - c0);
    }
}

#endif /* MA_LAYOUT_ONLY */
#endif
