/* cu_mega_attn.cuh — MK_ATTN_DEC: a layer's short-context decode attention as ONE op of the
 * persistent decode kernel (device code, included by cu_mega.cu; the recording that builds
 * the op from MK_ROPE (+ MK_KV) + MK_ATTN (+ MK_COMBINE) is cuda_mega_attention in
 * cu_mega_rec.cu).
 *
 * Why: as separate ops the rotation, the split attention and the merge each cost a grid
 * barrier plus a chain of dependent L2 round trips (~14.5 us per layer measured on an H200);
 * here one work item per (query head, token) does everything between two barriers:
 *  1. the positions and sequences of the batch: read by the first MK_ATTN_DEC op of the
 *     launch into the block's static shared memory, which the later ones (same arrays,
 *     flag MA_HAVEPS) reuse, so for them the op starts without a round trip;
 *  2. which cells of the range [lo, pos] are this step's (a token of the batch of the same
 *     sequence at that position): those are used from the item's own copy (k rotated, both
 *     rounded to the cache type exactly as the store rounds them), never from the cache,
 *     since no order exists between blocks inside one op; ONE round trip of asynchronous
 *     copies fetches the item's UNROTATED q row, the k / v rows of its kv head for every
 *     token of the batch (product outputs) and the other cells of the range (the last
 *     ad_stage cells; earlier ones are read from the cache directly);
 *  3. the RoPE angles while those copies fly (theta in double from the host's
 *     base^(-2i/n_rot) table, reduced to [-pi, pi] in double, cos/sin by the hardware
 *     approximation: about 4e-7 absolute); then q and the new k are rotated, the copies of
 *     this step's cells go into their stage slots, and the first q head of each kv-head
 *     group stores its token's cell;
 *  4. scores (thread per cell), softmax, values (thread per dimension pair and cell class),
 *     the f32 output row for the o product (which quantizes it itself).
 * Measured (H200, TinyLlama shape, block 0 at position 60, with clock64 timestamps since
 * removed: a device printf goes to stdout): every copy has landed
 * by the time the last one is issued, so memory latency is not what the op waits for; its
 * ~12k SM cycles go to issuing (~3.9k), rotation (~2k) and the attention arithmetic with
 * its block barriers (~5.9k). Each op's code runs once per layer and is cold each time, so
 * the hot path (f16 cells in the stage) is kept small and inline and the rest out of line
 * (that cut the issue phase from ~6k cycles; the op's total barely moved).
 * q and k stay unrotated in their buffers: cu_mega_plan checks that no later op reads them
 * before they are overwritten, else it inserts the in-place RoPE after this op.
 * Every sum has a fixed order that depends on the cell index and the head shape only
 * (explicit FMAs, the same arithmetic for cells from a copy, the stage or the cache), never
 * on the batch size, the stage size or timing: 8 sequences together == each alone, bitwise.
 * CUDA C: no classes, no templates. */
#ifndef HEARTH_CU_MEGA_ATTN_CUH
#define HEARTH_CU_MEGA_ATTN_CUH

#include "backend/cuda/cu_mega.cuh"

#define MA_MAXC 512 /* most cells one token sees (its position bucket) */
#define MA_CP16 1   /* ad_flags: the q, k, v rows can be copied 16 bytes at a time */
#define MA_POISON 2 /* ad_flags: the program could not be completed (mk_adec_fix): NaN output */
#define MA_HAVEPS 4 /* ad_flags: an earlier MK_ATTN_DEC op of the launch read these pos / seq */

/* Byte offsets in the op's shared memory (after the K and V stages of `stage` cells), the
 * same on the host (which sizes the stage to fit MK_ATT_SMEM) and the device. */
typedef struct ma_layout {
    int32_t raw, q, ang, sc, acc, map, end;
} ma_layout;

static __host__ __device__ __forceinline__ ma_layout ma_layout_of(int32_t n_tok, int32_t hd, int32_t esz,
                                                                   int32_t cap, int32_t stage) {
    ma_layout L;
    L.raw = 2 * stage * hd * esz;        /* [n_tok][k hd | v hd] floats: the batch's k / v rows */
    L.q = L.raw + n_tok * 2 * hd * 4;    /* [hd] floats: q, rotated in place */
    L.ang = L.q + hd * 4;                /* [n_tok][hd / 2] float2: cos, sin */
    L.sc = L.ang + n_tok * hd * 4;       /* [cap] floats: scores, then weights */
    L.acc = L.sc + ((cap + 3) & ~3) * 4; /* [MK_THREADS * 2] floats: value partial sums */
    L.map = L.acc + MK_THREADS * 2 * 4;  /* [cap] int8: the batch token of a cell, or -1 */
    L.end = L.map + ((cap + 15) & ~15);
    return L;
}

#ifndef MA_LAYOUT_ONLY

/* The item's view of the op: shared-memory areas and its cell range. */
typedef struct ma_item {
    uint8_t *sk, *sv;      /* stages: cell base + slot at slot * rb (K pieces rotated by slot) */
    float *raw, *qv, *sc, *acc;
    float2 *ang;
    int8_t *map;
    const uint8_t *kb, *vb; /* the cache rows of cell lo (sequence sq), kv head hk's slice */
    int64_t lo, p;
    int32_t t, h, hk, sq, ncell, base, rb, np;
} ma_item;

static __device__ __forceinline__ void ma_cp(void *dst, const void *src, int w) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    if (w == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src));
}

/* The batch token that adds cell c of sequence sq this step (the last one when several
 * claim it), or -1. */
static __device__ __forceinline__ int ma_new(const int32_t *sp, const int32_t *ss, int n_tok, int32_t sq, int64_t c) {
    int m = -1;
#pragma unroll 1
    for (int u = 0; u < n_tok; u++)
        if (ss[u] == sq && (int64_t)sp[u] == c) m = u;
    return m;
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

static __device__ __forceinline__ float ma_sum8(const float *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* 8 f16 values of a 16-byte piece. */
static __device__ __forceinline__ void ma_h8(uint4 u, float *k) {
    float2 f0 = __half22float2(*(const __half2 *)&u.x), f1 = __half22float2(*(const __half2 *)&u.y);
    float2 f2 = __half22float2(*(const __half2 *)&u.z), f3 = __half22float2(*(const __half2 *)&u.w);
    k[0] = f0.x, k[1] = f0.y, k[2] = f1.x, k[3] = f1.y, k[4] = f2.x, k[5] = f2.y, k[6] = f3.x, k[7] = f3.y;
}

/* The hot path: q . k of an f16 cell in the stage (slot's pieces rotated by slot % np). */
static __device__ __forceinline__ float ma_dot_stage16(const ma_item *I, const float *q, int32_t slot) {
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f }, k[8];
    const uint8_t *row = I->sk + slot * I->rb;
    int32_t np = I->np, pi = slot % np;
#pragma unroll 1
    for (int32_t g = 0; g < np; g++) {
        ma_h8(*(const uint4 *)(row + pi * 16), k);
        ma_fma8(acc, q + 8 * g, k);
        pi = pi + 1 == np ? 0 : pi + 1;
    }
    return ma_sum8(acc);
}

/* Every other cell (out of line: f32 stage, cells before the stage from the cache or from
 * a float copy): the same FMAs in the same order as the hot path. */
static __device__ __noinline__ float ma_dot_cold(const ma_item *I, const float *q, int32_t hd, uint32_t type,
                                                 size_t row_bytes, int32_t cc) {
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f }, k[8];
    int m = I->map[cc];
    bool staged = cc >= I->base;
    int32_t slot = cc - I->base, np = I->np, r0 = staged ? slot % np : 0;
    const uint8_t *row = staged ? I->sk + slot * I->rb : I->kb + (size_t)cc * row_bytes;
#pragma unroll 1
    for (int32_t g = 0; g < hd / 8; g++) {
        if (!staged && m >= 0) {
            const float *kf = I->raw + m * 2 * hd + 8 * g;
#pragma unroll
            for (int j = 0; j < 8; j++) k[j] = kf[j];
        } else if (type == QT_F16) {
            ma_h8(*(const uint4 *)(row + ((g + r0) % np) * 16), k);
        } else {
            float4 x = *(const float4 *)(row + ((2 * g + r0) % np) * 16);
            float4 y = *(const float4 *)(row + ((2 * g + 1 + r0) % np) * 16);
            k[0] = x.x, k[1] = x.y, k[2] = x.z, k[3] = x.w, k[4] = y.x, k[5] = y.y, k[6] = y.z, k[7] = y.w;
        }
        ma_fma8(acc, q + 8 * g, k);
    }
    return ma_sum8(acc);
}

/* Dimensions 2pr, 2pr+1 of V of a cell that is not an f16 cell of the stage. */
static __device__ __noinline__ float2 ma_v_cold(const ma_item *I, int32_t hd, uint32_t type, size_t row_bytes,
                                                int32_t cc, int32_t pr) {
    int m = I->map[cc];
    if (cc < I->base && m >= 0) {
        const float *vf = I->raw + m * 2 * hd + hd + 2 * pr;
        return make_float2(vf[0], vf[1]);
    }
    const uint8_t *vr = cc >= I->base ? I->sv + (cc - I->base) * I->rb : I->vb + (size_t)cc * row_bytes;
    if (type == QT_F16) return __half22float2(*(const __half2 *)(vr + pr * 4));
    return *(const float2 *)(vr + pr * 8);
}

/* Block-wide max (is_max) or sum of v over MK_THREADS threads in a fixed order; red: this
 * reduction's own MK_WARPS floats (the caller's barriers keep it free). */
static __device__ __forceinline__ float ma_reduce(float v, bool is_max, float *red) {
    v = is_max ? cu_warp_max(v) : cu_warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    MK_SYNC();
    float r = red[0];
#pragma unroll 1
    for (int w = 1; w < MK_WARPS; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

/* Whether the copy of batch token u's k / v is used by the item (its cell is in the range)
 * or stored by it (u == t). */
#define MA_USE(I, sp, ss, u) \
    ((u) == (I)->t || ((ss)[u] == (I)->sq && (sp)[u] >= (I)->lo && (sp)[u] < (I)->lo + (I)->ncell))

/* Steps 2 and 3a: the map, the asynchronous copies (q row, the batch's k / v rows of kv
 * head hk, the staged cells that are not this step's) and, while they fly, the angles of
 * the tokens whose copies are used (thread (u, j): frequency j = tid % half; inv / fac:
 * its table entry and factor). Not waited for. */
static __device__ __noinline__ void ma_issue(const mk_op *op, const ma_item *I, const int32_t *sp,
                                             const int32_t *ss, double inv, float fac) {
    int tid = threadIdx.x, n_tok = op->n_tok, hd = op->head_dim, half = hd / 2;
#pragma unroll 1
    for (int cc = tid; cc < I->ncell; cc += MK_THREADS) I->map[cc] = (int8_t)ma_new(sp, ss, n_tok, I->sq, I->lo + cc);
    int w = (op->ad_flags & MA_CP16) ? 16 : 4, per = hd * 4 / w, total = (1 + 2 * n_tok) * per;
#pragma unroll 1
    for (int i = tid; i < total; i += MK_THREADS) {
        int r = i / per, pc = i - r * per, u = (r - 1) >> 1;
        const float *src = r == 0 ? op->x + (int64_t)I->t * op->xs + (int64_t)I->h * hd
                                  : ((r - 1) & 1 ? op->aux + (int64_t)u * op->as : op->x2 + (int64_t)u * op->stride2) +
                                        (int64_t)I->hk * hd;
        float *dst = r == 0 ? I->qv : I->raw + u * 2 * hd + ((r - 1) & 1) * hd;
        ma_cp((uint8_t *)dst + pc * w, (const uint8_t *)src + pc * w, w);
    }
    int nst = I->ncell - I->base, np = I->np;
#pragma unroll 1
    for (int i = tid; i < nst * np; i += MK_THREADS) {
        int slot = i / np, pc = i - slot * np, cc = I->base + slot, rot = pc + slot % np;
        if (ma_new(sp, ss, n_tok, I->sq, I->lo + cc) >= 0) continue; /* this step's: the copy */
        size_t off = (size_t)cc * op->kv_row_bytes + (size_t)pc * 16;
        ma_cp(I->sk + slot * I->rb + (rot >= np ? rot - np : rot) * 16, I->kb + off, 16);
        ma_cp(I->sv + slot * I->rb + pc * 16, I->vb + off, 16);
    }
    int pt = MK_THREADS / half; /* tokens at once */
    if (tid < pt * half) {
        int j = tid % half;
#pragma unroll 1
        for (int u = tid / half; u < n_tok; u += pt) {
            if (!MA_USE(I, sp, ss, u)) continue;
            double theta = (double)sp[u] * op->rope.freq_scale * inv;
            if (op->rope.factors) theta /= fac;
            double kr = rint(theta * 0.15915494309189535); /* 1 / (2 pi) */
            float x = (float)fma(-kr, 6.283185307179586, theta), sf, cf;
            __sincosf(x, &sf, &cf);
            I->ang[u * half + j] = make_float2(cf * op->rope.attn_factor, sf * op->rope.attn_factor);
        }
    }
}

/* Step 3b (after the wait): RoPE of q and of the k rows whose copies are used, k and v of
 * those rounded to the cache type in place, and this step's cells inside the stage range
 * written into their slots (cache format, K pieces rotated by slot). */
static __device__ __noinline__ void ma_rotate(const mk_op *op, const ma_item *I, const int32_t *sp,
                                              const int32_t *ss) {
    int tid = threadIdx.x, n_tok = op->n_tok, hd = op->head_dim, half = hd / 2;
    uint32_t ty = op->kv_type;
    int esz = ty == QT_F16 ? 2 : 4, epp = 16 / esz; /* elements per 16-byte piece */
#pragma unroll 1
    for (int i = tid; i < n_tok * half; i += MK_THREADS) { /* k (and q) pairs: thread (u, j) */
        int u = i / half, j = i - u * half;
        if (!MA_USE(I, sp, ss, u)) continue;
        int a = op->rope.neox ? j : 2 * j, b = op->rope.neox ? j + half : 2 * j + 1;
        float *kr = I->raw + u * 2 * hd, y0, y1;
        float2 an = I->ang[u * half + j];
        rope_pair(kr[a], kr[b], an.x, an.y, &y0, &y1);
        kr[a] = y0 = ma_round(ty, y0), kr[b] = y1 = ma_round(ty, y1);
        if (u == I->t) {
            float q0, q1;
            rope_pair(I->qv[a], I->qv[b], an.x, an.y, &q0, &q1);
            I->qv[a] = q0, I->qv[b] = q1;
        }
        int64_t cc = sp[u] - I->lo;
        if (cc >= I->base && cc < I->ncell) { /* this step's cell in the stage range */
            int32_t slot = (int32_t)cc - I->base, r0 = slot % I->np;
            uint8_t *row = I->sk + slot * I->rb;
            int pa = a / epp + r0, pb = b / epp + r0;
            uint8_t *ka = row + (pa >= I->np ? pa - I->np : pa) * 16 + (a % epp) * esz;
            uint8_t *kb = row + (pb >= I->np ? pb - I->np : pb) * 16 + (b % epp) * esz;
            if (ty == QT_F16) *(__half *)ka = __float2half_rn(y0), *(__half *)kb = __float2half_rn(y1);
            else *(float *)ka = y0, *(float *)kb = y1;
        }
    }
#pragma unroll 1
    for (int i = tid; i < n_tok * hd; i += MK_THREADS) { /* v elements: thread (u, e) */
        int u = i / hd, e = i - u * hd;
        if (!MA_USE(I, sp, ss, u)) continue;
        float *vr = I->raw + u * 2 * hd + hd, v = ma_round(ty, vr[e]);
        vr[e] = v;
        int64_t cc = sp[u] - I->lo;
        if (cc >= I->base && cc < I->ncell) {
            uint8_t *vs = I->sv + ((int32_t)cc - I->base) * I->rb + e * esz;
            if (ty == QT_F16) *(__half *)vs = __float2half_rn(v);
            else *(float *)vs = v;
        }
    }
}

/* Stores the item's token t's cell (kv head hk): its rotated, rounded k and v. */
static __device__ __forceinline__ void ma_store(const mk_op *op, const ma_item *I) {
    int hd = op->head_dim;
    if (I->p < 0 || I->p >= op->n_ctx) return; /* never for positions the host checked */
    size_t off = ((size_t)I->sq * (size_t)op->n_ctx + (size_t)I->p) * op->kv_row_bytes + (size_t)I->hk * I->rb;
    const float *kr = I->raw + I->t * 2 * hd;
#pragma unroll 1
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
static __device__ __noinline__ void ma_attend(const mk_op *op, const ma_item *I, float (*red)[MK_WARPS]) {
    int tid = threadIdx.x, hd = op->head_dim, ncell = I->ncell, base = I->base;
    uint32_t ty = op->kv_type;
    bool f16 = ty == QT_F16;
    float mx = -INFINITY;
#pragma unroll 1
    for (int cc = tid; cc < ncell; cc += MK_THREADS) { /* one thread per cell */
        float s = f16 && cc >= base ? ma_dot_stage16(I, I->qv, cc - base)
                                    : ma_dot_cold(I, I->qv, hd, ty, op->kv_row_bytes, cc);
        s *= op->ad_scale;
        if (op->ad_softcap > 0.0f) s = op->ad_softcap * tanhf(s / op->ad_softcap);
        I->sc[cc] = s;
        mx = fmaxf(mx, s);
    }
    mx = ma_reduce(mx, true, red[0]);
    float sum = 0.0f;
#pragma unroll 1
    for (int cc = tid; cc < ncell; cc += MK_THREADS) {
        float e = __expf(I->sc[cc] - mx);
        I->sc[cc] = e;
        sum += e;
    }
    sum = ma_reduce(sum, false, red[1]); /* its barrier also publishes the weights */
    /* values: thread (pair pr, class g) sums cells g, g + ng, ... for dimensions 2pr, 2pr+1 */
    int pairs = hd / 2, ng = MK_THREADS / pairs, pr = tid % pairs, g = tid / pairs;
    if (g < ng) {
        float a0 = 0.0f, a1 = 0.0f;
#pragma unroll 1
        for (int cc = g; cc < ncell; cc += ng) {
            float2 v = f16 && cc >= base ? __half22float2(*(const __half2 *)(I->sv + (cc - base) * I->rb + pr * 4))
                                         : ma_v_cold(I, hd, ty, op->kv_row_bytes, cc, pr);
            float w = I->sc[cc];
            a0 = __fmaf_rn(w, v.x, a0), a1 = __fmaf_rn(w, v.y, a1);
        }
        I->acc[g * hd + 2 * pr] = a0, I->acc[g * hd + 2 * pr + 1] = a1;
    }
    MK_SYNC();
    float *orow = op->out + (int64_t)I->t * op->os + (int64_t)I->h * hd;
#pragma unroll 1
    for (int d = tid; d < hd; d += MK_THREADS) {
        float o = 0.0f;
#pragma unroll 1
        for (int k = 0; k < ng; k++) o += I->acc[k * hd + d];
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
    ma_item I;
    I.sk = sm, I.sv = sm + S * hd * esz, I.raw = (float *)(sm + L.raw), I.qv = (float *)(sm + L.q);
    I.ang = (float2 *)(sm + L.ang), I.sc = (float *)(sm + L.sc), I.acc = (float *)(sm + L.acc);
    I.map = (int8_t *)(sm + L.map), I.rb = hd * esz, I.np = I.rb / 16;
    /* this thread's RoPE frequency (ma_issue): its table entry and factor, fetched once */
    int jf = tid % half;
    double inv = op->rope.inv ? op->rope.inv[jf] : pow((double)op->rope.base, -2.0 * jf / (double)op->rope.n_rot);
    float fac = op->rope.factors ? op->rope.factors[jf] : 1.0f;
    if (!(op->ad_flags & MA_HAVEPS)) { /* every block, items or not: later ops reuse them */
        if (tid < n_tok) s_pos[tid] = op->pos[tid], s_seq[tid] = op->seq[tid];
        MK_SYNC();
    }
#pragma unroll 1
    for (int b = blockIdx.x; b < n_tok * nh; b += gridDim.x) {
        I.t = b / nh, I.h = b - I.t * nh, I.hk = I.h / group;
        if (op->ad_flags & MA_POISON) {
            for (int d = tid; d < hd; d += MK_THREADS) op->out[(int64_t)I.t * op->os + (int64_t)I.h * hd + d] = NAN;
            continue;
        }
        I.p = s_pos[I.t], I.sq = s_seq[I.t];
        I.lo = op->ad_window > 0 && I.p - op->ad_window + 1 > 0 ? I.p - op->ad_window + 1 : 0;
        I.ncell = (int)max((int64_t)0, min(I.p + 1 - I.lo, (int64_t)cap)), I.base = I.ncell - min(I.ncell, S);
        size_t row0 = ((size_t)I.sq * (size_t)op->n_ctx + (size_t)I.lo) * op->kv_row_bytes + (size_t)I.hk * I.rb;
        I.kb = op->kc + row0, I.vb = op->vc + row0;
        ma_issue(op, &I, s_pos, s_seq, inv, fac);
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        MK_SYNC();
        ma_rotate(op, &I, s_pos, s_seq);
        MK_SYNC();
        if (I.h % group == 0) ma_store(op, &I);
        ma_attend(op, &I, s_red);
        MK_SYNC(); /* shared memory is free for the next item */
    }
}

#endif /* MA_LAYOUT_ONLY */
#endif
