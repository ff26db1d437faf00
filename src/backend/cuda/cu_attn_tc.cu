/* cu_attn_tc.cu — short-context decode attention on the tensor cores, one block per
 * (kv head, token): the query heads that share a kv head (up to 16) are the rows of one
 * 16 x 16 mma.sync tile, so the scores of all of them against 8 cells are one
 * m16n8k16 product and their weighted sums of V another.
 *
 * Opt-in (HEARTH_CUDA_ATTN_TC=1), it replaces attn_dec_kernel / attn_dec_rope_kernel
 * (cu_attn_dec.cu: one block per query head, scalar arithmetic) where it applies: head
 * size 64 or 128, at most 16 query heads per kv head, f16 cache, the stage in shared
 * memory. The same kernel serves one token and a batch (grid (n_head_kv x blocks per kv
 * head, n_tok)), and a token's arithmetic never depends on the others, so a sequence
 * decoded in a batch gives the bits it gives alone. It is not the default because it is not
 * faster at short contexts (session 38, docs/performance.md): a block that serves a whole
 * kv group does its group's q staging, merge and quantization in series where the scalar
 * kernel spreads them over a block per head. It is the attention core the plan in
 * docs/cuda.md ("Not done yet") builds on.
 *
 * Precision: K and V are f16 already (the cache's type). q is split into f16 high and low
 * parts after scaling each head's row by a power of two (its largest magnitude lands in
 * [2^14, 2^15), so neither part overflows and the scaling is exact), and so are the
 * softmax weights P (in [0, 1]); each product is two mma with fp32 accumulators. The
 * result is within ~1e-6 of fp32 arithmetic; the fixtures' bounds are the CPU's.
 *
 * Per block (NW warps):
 *  1. before the programmatic-launch wait: the K and V slices of the cells no kernel of the
 *     step writes are copied into shared memory (cp.async; rows padded by 16 bytes so the
 *     8 rows an ldmatrix reads fall on 32 different banks), the rows of the last 16-cell
 *     chunk past the cells are zeroed (a weight of 0 times stale bits could be NaN), and the
 *     RoPE angles of the sequence's tokens are computed (rope variant);
 *  2. after it: q of the group's heads (one warp per head row: rotate, scale, split), the
 *     cells the step adds (rotated and rounded as the KV store rounds them; the block
 *     stores its own token's cell: it is the only block of its kv head and token);
 *  3. the cells in chunks of 16, chunk c to warp c % NW: scores, an online softmax per
 *     warp (running max and sum per head row), P V into fp32 accumulators;
 *  4. the warps' partial results are merged in warp order through shared memory, divided
 *     by the sum, written, and quantized for the o product when asked. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attn_dec.cuh"

#define AT_NW 4              /* warps per block (the bits depend on it: chunk c goes to warp c % AT_NW) */
#define AT_ROWS 16           /* query heads per block at most (one m16 tile) */
#define AT_CH 32             /* cells per warp step */
#define AT_MAX_SMEM (227 * 1024) /* Hopper's largest opt-in block */

/* Bytes per q row in shared memory: padded by 16 so that rows r and r + 1 start 4 banks
 * apart. The K and V stages are not padded (the stage is most of the block's shared memory,
 * which must fit wherever attn_dec_kernel's does): the 16-byte piece p of cell c's row
 * sits at piece p ^ (c % 8) (at_piece), so the 8 rows an ldmatrix reads still fall on 32
 * different banks. */
template <int HD> struct at_lay {
    static constexpr int RS = HD * 2 + 16, RB = HD * 2;
};

/* Byte offset of 16-byte piece pc of cell cc's row in a stage. */
template <int HD>
static __device__ __forceinline__ size_t at_piece(int32_t cc, int32_t pc) {
    return (size_t)cc * at_lay<HD>::RB + (size_t)((pc ^ (cc & 7)) * 16);
}

/* The dynamic shared memory of a block: K and V stages [capc][RB], q high and low parts
 * [16][RS], the warps' partial outputs [NW][G][HD] floats, their row maxima and sums
 * [NW][16] each, the rows' score factors [16]; the rope variant's angles follow. */
typedef struct at_smem {
    uint8_t *sk, *sv, *qh, *ql;
    float *wo, *wm, *wl, *qf;
} at_smem;

template <int HD, int NW>
static __host__ __device__ __forceinline__ size_t at_layout(int32_t capc, int32_t G, uint8_t *base, at_smem *S) {
    size_t rs = (size_t)at_lay<HD>::RS, o = 0;
    if (S) S->sk = base;
    o += (size_t)capc * at_lay<HD>::RB;
    if (S) S->sv = base + o;
    o += (size_t)capc * at_lay<HD>::RB;
    if (S) S->qh = base + o;
    o += AT_ROWS * rs;
    if (S) S->ql = base + o;
    o += AT_ROWS * rs;
    if (S) S->wo = (float *)(base + o);
    o += (size_t)NW * G * HD * sizeof(float);
    if (S) S->wm = (float *)(base + o);
    o += NW * AT_ROWS * sizeof(float);
    if (S) S->wl = (float *)(base + o);
    o += NW * AT_ROWS * sizeof(float);
    if (S) S->qf = (float *)(base + o);
    o += AT_ROWS * sizeof(float);
    return (o + 15) / 16 * 16;
}

/* Copies cells [c0, c1) (positions lo + cc) of the kv head's K and V slices into the
 * padded stages. */
template <int HD, int NW>
static __device__ __forceinline__ void at_stage(const ad_args &A, const at_smem &S, const uint8_t *kb,
                                                const uint8_t *vb, int64_t lo, int32_t c0, int32_t c1) {
    constexpr int NP = HD / 8;
    for (int32_t i = c0 * NP + threadIdx.x; i < c1 * NP; i += (NW * 32)) {
        int32_t cc = i / NP, pc = i % NP;
        size_t src = (size_t)(lo + cc) * A.row_bytes + (size_t)pc * 16;
        gm_cp16(S.sk + at_piece<HD>(cc, pc), kb + src);
        gm_cp16(S.sv + at_piece<HD>(cc, pc), vb + src);
    }
}

/* Before the wait: zeros the stage rows from ncell to the end of its 16-cell chunk and
 * the q rows past the group (G..15, and their score factors). */
template <int HD, int NW>
static __device__ __forceinline__ void at_zero(const at_smem &S, int32_t ncell, int32_t G) {
    constexpr int NP = HD / 8, RS = at_lay<HD>::RS;
    int32_t end = (ncell + AT_CH - 1) / AT_CH * AT_CH;
    for (int32_t i = ncell * NP + threadIdx.x; i < end * NP; i += (NW * 32)) {
        int32_t cc = i / NP, pc = i % NP;
        *(uint4 *)(S.sk + at_piece<HD>(cc, pc)) = make_uint4(0, 0, 0, 0);
        *(uint4 *)(S.sv + at_piece<HD>(cc, pc)) = make_uint4(0, 0, 0, 0);
    }
    for (int32_t i = G * NP + threadIdx.x; i < AT_ROWS * NP; i += (NW * 32)) {
        int32_t r = i / NP, pc = i % NP;
        *(uint4 *)(S.qh + (size_t)r * RS + pc * 16) = make_uint4(0, 0, 0, 0);
        *(uint4 *)(S.ql + (size_t)r * RS + pc * 16) = make_uint4(0, 0, 0, 0);
    }
    for (int32_t r = G + threadIdx.x; r < AT_ROWS; r += (NW * 32)) S.qf[r] = 0.0f;
}

/* The q values a lane holds: rows warp, warp + NW, ... of the group, pairs
 * lane, lane + 32, ... of each (pair j: elements j and j + HD/2 with neox rotation, else
 * 2j and 2j + 1). Loaded in one go before the new cells are built, used after. */
template <int HD, int NW> struct at_q {
    static constexpr int NR = AT_ROWS / NW, NJ = HD / 64;
    float x[NR][NJ][2];
};

static __device__ __forceinline__ void at_pair(int32_t j, int32_t half, int neox, int32_t *a, int32_t *b) {
    *a = neox ? j : 2 * j, *b = neox ? j + half : 2 * j + 1;
}

template <int HD, int NW>
static __device__ __forceinline__ void at_q_load(const ad_args &A, int32_t hf, int32_t gb, int32_t t, int neox,
                                                 at_q<HD, NW> *Q) {
    int32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int k = 0; k < at_q<HD, NW>::NR; k++) {
        int32_t r = warp + k * NW;
        if (r >= gb) break;
        const float *row = A.q + (int64_t)t * A.qs + (int64_t)(hf + r) * HD;
#pragma unroll
        for (int i = 0; i < at_q<HD, NW>::NJ; i++) {
            int32_t a, b;
            at_pair(lane + 32 * i, HD / 2, neox, &a, &b);
            Q->x[k][i][0] = row[a], Q->x[k][i][1] = row[b];
        }
    }
}

/* 2^e as a float (e in [-126, 127]). */
static __device__ __forceinline__ float at_pow2(int e) {
    return __int_as_float((127 + e) << 23);
}

/* Rotates the loaded q rows (ang: the token's angles, NULL: no rotation), scales each row
 * by the power of two that brings its largest magnitude into [2^14, 2^15) and writes its
 * f16 high and low parts and its score factor (A.scale over that power). A warp's rows
 * are independent chains, interleaved. */
template <int HD, int NW>
static __device__ __forceinline__ void at_q_put(const ad_args &A, const at_smem &S, int32_t gb, int neox,
                                                const float2 *ang, at_q<HD, NW> *Q) {
    constexpr int RS = at_lay<HD>::RS, NR = at_q<HD, NW>::NR, NJ = at_q<HD, NW>::NJ;
    int32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float m[NR];
#pragma unroll
    for (int k = 0; k < NR; k++) {
        m[k] = 0.0f;
#pragma unroll
        for (int i = 0; i < NJ; i++) {
            if (ang) {
                float2 cs = ang[lane + 32 * i];
                rope_pair(Q->x[k][i][0], Q->x[k][i][1], cs.x, cs.y, &Q->x[k][i][0], &Q->x[k][i][1]);
            }
            m[k] = fmaxf(m[k], fmaxf(fabsf(Q->x[k][i][0]), fabsf(Q->x[k][i][1])));
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int k = 0; k < NR; k++) m[k] = fmaxf(m[k], __shfl_xor_sync(0xffffffffu, m[k], o));
#pragma unroll
    for (int k = 0; k < NR; k++) {
        int32_t r = warp + k * NW;
        if (r >= gb) break;
        /* m = 2^(x - 127) * 1.f (normal) -> e = 14 - (x - 127): m * 2^e in [2^14, 2^15);
         * zero, subnormal, huge or non-finite rows are left unscaled */
        int x = (__float_as_int(m[k]) >> 23) & 0xff, e = x > 0 && x < 255 ? 14 - (x - 127) : 0;
        e = e > 126 ? 126 : (e < -126 ? -126 : e);
        float up = at_pow2(e);
        __half *qh = (__half *)(S.qh + (size_t)r * RS), *ql = (__half *)(S.ql + (size_t)r * RS);
#pragma unroll
        for (int i = 0; i < NJ; i++) {
            int32_t a, b;
            at_pair(lane + 32 * i, HD / 2, neox, &a, &b);
#pragma unroll
            for (int u = 0; u < 2; u++) {
                float v = Q->x[k][i][u] * up;
                __half h = __float2half_rn(v);
                qh[u ? b : a] = h, ql[u ? b : a] = __float2half_rn(v - __half2float(h));
            }
        }
        if (lane == 0) S.qf[r] = A.scale * at_pow2(-e);
    }
}

/* The soft cap of a score, cap * tanh(v / cap), with tanh(x) = 1 - 2 / (e^2x + 1) from the
 * fast exponential: a few instructions where tanhf is ~100, inlined at each of a chunk's 16
 * scores (the kernel's code must stay within the SM's instruction cache, docs/cuda.md
 * "Instruction cache"); within ~1e-7 of tanh in absolute terms, so the scores within
 * ~cap * 1e-7. */
static __device__ __forceinline__ float at_softcap(float v, float cap, float twice_inv) {
    return cap * (1.0f - __fdividef(2.0f, __expf(v * twice_inv) + 1.0f));
}

/* Two f32 values as an f16x2 register (x in the low half: the lower column). */
static __device__ __forceinline__ unsigned at_h2(float x, float y) {
    __half2 h = __floats2half2_rn(x, y);
    return *(unsigned *)&h;
}

/* The products of a high and a low A fragment with two B fragments (b[0..1], b[2..3]: two
 * n8 tiles): h0 += hi b01, h1 += hi b23, l0 += lo b01, l1 += lo b23, in that order (l0 and
 * l1 may be h0 and h1). */
static __device__ __forceinline__ void at_mma4(float *h0, float *h1, float *l0, float *l1, const unsigned *hi,
                                               const unsigned *lo, const unsigned b[4]) {
    gm_mma_f16(h0, hi, b[0], b[1]);
    gm_mma_f16(h1, hi, b[2], b[3]);
    gm_mma_f16(l0, lo, b[0], b[1]);
    gm_mma_f16(l1, lo, b[2], b[3]);
}

/* Quantizes a 32-value chunk held by 8 lanes (sub = lane % 8 holds values 4 sub .. 4 sub +
 * 3 in v; row < 0: none) into the activation scratch with rq_chunk's arithmetic (the bits
 * of act_quant_kernel: the maximum and the integer half sums do not depend on the order). */
static __device__ __forceinline__ void at_quant8(const float v[4], int32_t row, int sub, int8_t *xq, float *xd,
                                                 int2 *xsum) {
    float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 4));
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int q[4], hs = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float sc = v[j] * id;
        int qq = (int)(sc >= 0.0f ? sc + 0.5f : sc - 0.5f);
        q[j] = qq > 127 ? 127 : (qq < -127 ? -127 : qq);
        hs += q[j];
    }
    hs += __shfl_xor_sync(0xffffffffu, hs, 1); /* lanes 0-3 of the 8: values 0-15, lanes 4-7: 16-31 */
    hs += __shfl_xor_sync(0xffffffffu, hs, 2);
    int other = __shfl_xor_sync(0xffffffffu, hs, 4);
    if (row < 0) return;
    *(char4 *)(xq + (int64_t)row * 32 + sub * 4) = make_char4((signed char)q[0], (signed char)q[1], (signed char)q[2],
                                                              (signed char)q[3]);
    if (sub == 0) xd[row] = amax / 127.0f, xsum[row] = make_int2(hs, other);
}

/* The attention of query heads hf..hf+gb-1 (one kv head) for token t over the ncell staged
 * cells (rows up to the next multiple of AT_CH zeroed), q parts and factors staged; every
 * thread of the block calls it after a barrier. The cells go in chunks of AT_CH = 32, chunk
 * c to warp c % NW; each warp keeps an online softmax (running max and sum per head row)
 * and P V in fp32 fragments; the warps' parts are merged in warp order. Writes the output
 * rows (and their quantization). The bits depend on NW, not on gb or the batch. */
template <int HD, int NW>
static __device__ __forceinline__ void at_core(const ad_args &A, const at_smem &S, int32_t hf, int32_t gb,
                                               int32_t t, int32_t ncell) {
    constexpr int RS = at_lay<HD>::RS, RB = at_lay<HD>::RB, NK = HD / 16, NO = HD / 8, NT = AT_CH / 8;
    int32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0 = lane >> 2, cq = 2 * (lane & 3), G = gb;
    unsigned ah[NK][4], al[NK][4]; /* q's A fragments, high and low parts */
    {
        size_t off = (size_t)((lane & 7) + ((lane >> 3) & 1) * 8) * RS + (lane >> 4) * 16;
#pragma unroll
        for (int kk = 0; kk < NK; kk++) {
            gm_ldsm4(ah[kk], S.qh + off + kk * 32);
            gm_ldsm4(al[kk], S.ql + off + kk * 32);
        }
    }
    float f0 = S.qf[r0], f1 = S.qf[r0 + 8], ti = A.softcap > 0.0f ? 2.0f / A.softcap : 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f, o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    int32_t nch = (ncell + AT_CH - 1) / AT_CH;
    /* the ldmatrix rows of a lane: K (cells x dims, not transposed): cell (lane & 7) +
     * (lane >> 4) * 8 of 16, piece 2 kk + ((lane >> 3) & 1); V (transposed): cell (lane & 7) +
     * ((lane >> 3) & 1) * 8, piece 2 d + (lane >> 4); the cells' rows start at multiples of
     * 8, so a piece's swizzle is ^ (lane & 7) */
    size_t krow = (size_t)((lane & 7) + (lane >> 4) * 8) * RB, vrow = (size_t)((lane & 7) + ((lane >> 3) & 1) * 8) * RB;
    int32_t kx = ((lane >> 3) & 1) ^ (lane & 7), vx = (lane >> 4) ^ (lane & 7);
#pragma unroll 1
    for (int32_t c = warp; c < nch; c += NW) {
        const uint8_t *kc = S.sk + (size_t)c * AT_CH * RB, *vc = S.sv + (size_t)c * AT_CH * RB;
        float s[NT][4], sl[NT][4]; /* the high and low parts' products: chains half as long */
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) s[n][i] = sl[n][i] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < NK; kk++)
#pragma unroll
            for (int n2 = 0; n2 < NT / 2; n2++) {
                unsigned b[4];
                gm_ldsm4(b, kc + (size_t)n2 * 16 * RB + krow + ((2 * kk) ^ kx) * 16);
                at_mma4(s[2 * n2], s[2 * n2 + 1], sl[2 * n2], sl[2 * n2 + 1], ah[kk], al[kk], b);
            }
        float cm0 = -INFINITY, cm1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float v = (s[n][i] + sl[n][i]) * (i < 2 ? f0 : f1);
                if (A.softcap > 0.0f) v = at_softcap(v, A.softcap, ti);
                if (c * AT_CH + n * 8 + cq + (i & 1) >= ncell) v = -INFINITY;
                s[n][i] = v;
                if (i < 2) cm0 = fmaxf(cm0, v);
                else cm1 = fmaxf(cm1, v);
            }
        cm0 = fmaxf(cm0, __shfl_xor_sync(0xffffffffu, cm0, 1));
        cm1 = fmaxf(cm1, __shfl_xor_sync(0xffffffffu, cm1, 1));
        cm0 = fmaxf(cm0, __shfl_xor_sync(0xffffffffu, cm0, 2));
        cm1 = fmaxf(cm1, __shfl_xor_sync(0xffffffffu, cm1, 2));
        float mn0 = fmaxf(m0, cm0), mn1 = fmaxf(m1, cm1); /* finite: the chunk's first cell is < ncell */
        float a0 = __expf(m0 - mn0), a1 = __expf(m1 - mn1);
        m0 = mn0, m1 = mn1;
        unsigned ph[NT / 2][4], pl[NT / 2][4]; /* P's A fragments per 16 cells, high and low parts */
        float p0 = 0.0f, p1 = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            float p[4];
#pragma unroll
            for (int i = 0; i < 4; i++) p[i] = __expf(s[n][i] - (i < 2 ? mn0 : mn1));
            p0 += p[0] + p[1], p1 += p[2] + p[3];
            __half2 h01 = __floats2half2_rn(p[0], p[1]), h23 = __floats2half2_rn(p[2], p[3]);
            float2 g01 = __half22float2(h01), g23 = __half22float2(h23);
            ph[n / 2][2 * (n & 1)] = *(unsigned *)&h01, ph[n / 2][2 * (n & 1) + 1] = *(unsigned *)&h23;
            pl[n / 2][2 * (n & 1)] = at_h2(p[0] - g01.x, p[1] - g01.y);
            pl[n / 2][2 * (n & 1) + 1] = at_h2(p[2] - g23.x, p[3] - g23.y);
        }
        l0 = l0 * a0 + p0, l1 = l1 * a1 + p1;
#pragma unroll
        for (int n = 0; n < NO; n++) o[n][0] *= a0, o[n][1] *= a0, o[n][2] *= a1, o[n][3] *= a1;
#pragma unroll
        for (int k2 = 0; k2 < NT / 2; k2++)
#pragma unroll
            for (int d = 0; d < NK; d++) {
                unsigned b[4];
                gm_ldsm4t(b, vc + (size_t)k2 * 16 * RB + vrow + ((2 * d) ^ vx) * 16);
                at_mma4(o[2 * d], o[2 * d + 1], o[2 * d], o[2 * d + 1], ph[k2], pl[k2], b);
            }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    if ((lane & 3) == 0) {
        S.wm[warp * AT_ROWS + r0] = m0, S.wm[warp * AT_ROWS + r0 + 8] = m1;
        S.wl[warp * AT_ROWS + r0] = l0, S.wl[warp * AT_ROWS + r0 + 8] = l1;
    }
    float *wo = S.wo + (size_t)warp * G * HD;
#pragma unroll
    for (int n = 0; n < NO; n++) {
        if (r0 < G) *(float2 *)(wo + (size_t)r0 * HD + n * 8 + cq) = make_float2(o[n][0], o[n][1]);
        if (r0 + 8 < G) *(float2 *)(wo + (size_t)(r0 + 8) * HD + n * 8 + cq) = make_float2(o[n][2], o[n][3]);
    }
    __syncthreads();
    /* merge: items of 32 outputs (head row, 32 dims), 8 lanes each with 4 outputs (a warp
     * takes 4 items at a time); the warps' parts are added in warp order */
    int32_t sub = lane & 7, ni = G * (HD / 32);
#pragma unroll 1
    for (int32_t it = warp * 4 + (lane >> 3); it - (lane >> 3) < ni; it += NW * 4) {
        int32_t r = it / (HD / 32), d = (it % (HD / 32)) * 32 + sub * 4, row = -1;
        float v[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
        if (it < ni) {
            float M = S.wm[r];
#pragma unroll
            for (int w = 1; w < NW; w++) M = fmaxf(M, S.wm[w * AT_ROWS + r]);
            float L = 0.0f;
#pragma unroll
            for (int w = 0; w < NW; w++) {
                float f = __expf(S.wm[w * AT_ROWS + r] - M); /* 0 for a warp without cells */
                float4 o4 = *(const float4 *)(S.wo + ((size_t)w * G + r) * HD + d);
                v[0] += o4.x * f, v[1] += o4.y * f, v[2] += o4.z * f, v[3] += o4.w * f;
                L += S.wl[w * AT_ROWS + r] * f;
            }
#pragma unroll
            for (int j = 0; j < 4; j++) v[j] = __fdividef(v[j], L); /* L >= 1: the largest weight is e^0 */
            int64_t e = (int64_t)t * A.os + (int64_t)(hf + r) * HD + d;
            *(float4 *)(A.out + e) = make_float4(v[0], v[1], v[2], v[3]);
            row = (int32_t)(e >> 5);
        }
        if (A.xq) at_quant8(v, row, sub, A.xq, A.xd, A.xsum);
    }
}

/* What a block of either kernel knows before the programmatic-launch wait: its shared
 * memory, its kv head hk, its query heads hf..hf+gb-1 (h0: the first within the group),
 * its token t, the token's cells (ad_cells) and the kv head's K/V slices in the cache. */
typedef struct at_blk {
    at_smem S;
    int32_t hk, h0, gb, hf, t, ncell, nold, sq;
    int64_t lo;
    const uint8_t *kb, *vb;
} at_blk;

/* Fills B for this block and stages the cells no kernel of the step writes (and zeroes the
 * chunk's tail and the unused q rows): the kernels' work before the wait. */
template <int HD, int NW>
static __device__ __forceinline__ void at_begin(const ad_args &A, int32_t rpb, uint8_t *sm, at_blk *B) {
    int32_t nsp = (A.group + rpb - 1) / rpb, capc = (A.cap + AT_CH - 1) / AT_CH * AT_CH;
    B->hk = blockIdx.x / nsp, B->h0 = (int32_t)(blockIdx.x % nsp) * rpb, B->t = blockIdx.y;
    B->gb = min(rpb, A.group - B->h0), B->hf = B->hk * A.group + B->h0;
    at_layout<HD, NW>(capc, min(rpb, A.group), sm, &B->S);
    B->sq = ad_cells(A.pos, A.seq, A.n_tok, A.window, A.cap, B->t, &B->lo, &B->ncell, &B->nold);
    size_t off = (size_t)B->sq * A.n_ctx * A.row_bytes + (size_t)B->hk * HD * 2;
    B->kb = A.kc + off, B->vb = A.vc + off;
    at_stage<HD, NW>(A, B->S, B->kb, B->vb, B->lo, 0, B->nold);
    at_zero<HD, NW>(B->S, B->ncell, B->gb);
}

/* Grid (n_head_kv, n_tok), (NW * 32) threads: cuda_attention(_q8) at short contexts. */
template <int HD, int NW>
static __global__ void __launch_bounds__(NW * 32) at_kernel(const __grid_constant__ ad_args A, int32_t rpb) {
    extern __shared__ __align__(16) uint8_t at_sm[];
    at_blk B;
    at_begin<HD, NW>(A, rpb, at_sm, &B);
    const at_smem &S = B.S;
    int32_t gb = B.gb, hf = B.hf, t = B.t, ncell = B.ncell, nold = B.nold;
    int64_t lo = B.lo;
    const uint8_t *kb = B.kb, *vb = B.vb;
    cu_pdl_wait_e(); /* q and the new cells come from earlier work */
    cu_pdl_trigger();
    at_q<HD, NW> Q;
    at_q_load<HD, NW>(A, hf, gb, t, 0, &Q);
    at_stage<HD, NW>(A, S, kb, vb, lo, nold, ncell);
    at_q_put<HD, NW>(A, S, gb, 0, nullptr, &Q);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    at_core<HD, NW>(A, S, hf, gb, t, ncell);
}

/* The RoPE of q and k, the KV store and the attention (cuda_rope_kv_attention at short
 * contexts, whole-head rotation): at_kernel's steps with the cells this step adds built by
 * the block from k and v (rotated by rope_pair and rounded to f16 as the KV store rounds
 * them) instead of read back from the cache, which other blocks of the launch are writing.
 * Same bits as rope_kernel + KV store + at_kernel. Angles [n_tok][HD / 2] at R.ang_off. */
template <int HD, int NW>
static __global__ void __launch_bounds__(NW * 32) at_rope_kernel(const __grid_constant__ ad_args A,
                                                                 const __grid_constant__ adr_args R, int32_t rpb) {
    constexpr int half = HD / 2;
    extern __shared__ __align__(16) uint8_t at_sm[];
    at_blk B;
    at_begin<HD, NW>(A, rpb, at_sm, &B);
    const at_smem &S = B.S;
    int32_t hk = B.hk, h0 = B.h0, gb = B.gb, hf = B.hf, t = B.t, ncell = B.ncell, nold = B.nold, sq = B.sq;
    int64_t lo = B.lo;
    const uint8_t *kb = B.kb, *vb = B.vb;
    float2 *ang = (float2 *)(at_sm + R.ang_off);
    for (int32_t i = threadIdx.x; i < A.n_tok * half; i += (NW * 32)) { /* positions are known before the step */
        int32_t u = i / half;
        if (A.seq[u] == sq)
            ang[i] = rope_angle(i - u * half, A.pos[u], HD, R.base, R.freq_scale, R.attn_factor, R.factors, R.inv);
    }
    __syncthreads();
    cu_pdl_wait_e(); /* q, k, v come from the q/k/v product */
    cu_pdl_trigger();
    at_q<HD, NW> Q;
    at_q_load<HD, NW>(A, hf, gb, t, R.neox, &Q); /* issued first: one L2 round trip with the cells' loads */
    for (int32_t i = nold * (HD / 8) + threadIdx.x; i < ncell * (HD / 8); i += (NW * 32)) { /* later cells no token writes */
        int32_t cc = i / (HD / 8), pc = i % (HD / 8);
        if (adr_owner(A, sq, lo + cc) >= 0) continue;
        size_t src = (size_t)(lo + cc) * A.row_bytes + (size_t)pc * 16;
        gm_cp16(S.sk + at_piece<HD>(cc, pc), kb + src);
        gm_cp16(S.sv + at_piece<HD>(cc, pc), vb + src);
    }
    for (int32_t j = threadIdx.x; j < A.n_tok * HD; j += (NW * 32)) { /* the cells this step adds */
        int32_t u = j / HD, d = j % HD;
        int64_t cc = A.pos[u] - lo;
        bool mine = u == t && h0 == 0; /* the kv head's first block stores its token's cell */
        if (A.seq[u] != sq || ((cc < nold || cc >= ncell) && !mine)) continue;
        const float *krow = R.k + (int64_t)u * R.ks + (int64_t)hk * HD;
        float kval = adr_rot(krow, d, HD, R.neox, ang + (size_t)u * half);
        float vval = R.v[(int64_t)u * R.vs + (int64_t)hk * HD + d];
        if (cc >= nold && cc < ncell) {
            size_t at = at_piece<HD>((int32_t)cc, d >> 3) + (d & 7) * 2;
            *(__half *)(S.sk + at) = __float2half_rn(kval);
            *(__half *)(S.sv + at) = __float2half_rn(vval);
        }
        if (mine) {
            size_t cell = (size_t)sq * (size_t)A.n_ctx + (size_t)A.pos[u];
            kv_put((uint8_t *)A.kc + cell * A.row_bytes, 1, (int64_t)hk * HD + d, kval);
            kv_put((uint8_t *)A.vc + cell * A.row_bytes, 1, (int64_t)hk * HD + d, vval);
        }
    }
    at_q_put<HD, NW>(A, S, gb, R.neox, ang + (size_t)t * half, &Q);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    at_core<HD, NW>(A, S, hf, gb, t, ncell);
}

/* The launch shape: query heads per block (rpb, HEARTH_CUDA_ATTN_TC_RPB; the bits do not
 * depend on it, only the number of blocks does) and blocks per kv head. */
typedef struct at_shape {
    int rpb, nsp;
} at_shape;

static at_shape at_shape_of(const cuda_ctx *c, const cuda_attn *a) {
    int G = a->n_head / a->n_head_kv, rpb = c->knobs.attn_tc_rpb;
    if (rpb < 1 || rpb > G) rpb = G;
    at_shape sh = { rpb, (G + rpb - 1) / rpb };
    return sh;
}

/* Whether the tensor-core kernels take attention a: the short-context kernel's conditions
 * (ad_plan, which fills *A) and head size 64 or 128, at most AT_ROWS query heads per kv
 * head, the stage within AT_MAX_SMEM with `extra` bytes more; fills *smem. */
static bool at_plan(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                    size_t extra, ad_args *A, at_shape *sh, size_t *smem) {
    size_t ad_smem;
    int32_t hd = a->head_dim_k;
    if (!c->knobs.attn_tc /* opt-in: HEARTH_CUDA_ATTN_TC=1 */ || (hd != 64 && hd != 128) || a->n_head_kv < 1 ||
        a->n_head % a->n_head_kv || a->n_head / a->n_head_kv > AT_ROWS ||
        !ad_plan(c, a, q, qs, out, os, 0, A, &ad_smem))
        return false;
    int32_t capc = (A->cap + AT_CH - 1) / AT_CH * AT_CH;
    *sh = at_shape_of(c, a);
    *smem = (hd == 64 ? at_layout<64, AT_NW>(capc, sh->rpb, nullptr, nullptr)
                      : at_layout<128, AT_NW>(capc, sh->rpb, nullptr, nullptr)) + extra;
    return *smem <= AT_MAX_SMEM;
}

int cu_attn_tc(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
               int *done, hb_err *err) {
    int rc;
    ad_args A;
    size_t smem;
    *done = 0;
    at_shape sh;
    if (!at_plan(c, a, q, qs, out, os, 0, &A, &sh, &smem)) return HEARTH_OK;
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    void (*fn)(ad_args, int32_t) = A.hd == 64 ? at_kernel<64, AT_NW> : at_kernel<128, AT_NW>;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    CU_LAUNCH(err, "launching decode attention", fn, dim3((unsigned)(a->n_head_kv * sh.nsp), (unsigned)a->n_tok),
              AT_NW * 32, smem, c, A, (int32_t)sh.rpb);
    if ((rc = cu_check_launch(err, "decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}

int cu_attn_tc_rope(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs, const float *k,
                    int64_t ks, const float *v, int64_t vs, float *out, int64_t os, bool quant, int *done,
                    hb_err *err) {
    int rc;
    ad_args A;
    size_t smem, angb = (size_t)a->n_tok * (size_t)(a->head_dim_k / 2) * sizeof(float2);
    *done = 0;
    at_shape sh;
    if (r->n_rot != a->head_dim_k || !at_plan(c, a, q, qs, out, os, angb, &A, &sh, &smem)) return HEARTH_OK;
    adr_args R = { k, v, ks, vs, r->neox, r->base, r->freq_scale, r->attn_factor, r->factors, r->inv, smem - angb };
    if (quant && (rc = cu_act_buffers(c, a->n_tok, os, &A.xq, &A.xd, &A.xsum, err))) return rc;
    void (*fn)(ad_args, adr_args, int32_t) = A.hd == 64 ? at_rope_kernel<64, AT_NW> : at_rope_kernel<128, AT_NW>;
    if ((rc = cu_smem_allow(c, (const void *)fn, smem, err))) return rc;
    CU_LAUNCH(err, "launching fused decode attention", fn, dim3((unsigned)(a->n_head_kv * sh.nsp), (unsigned)a->n_tok),
              AT_NW * 32, smem, c, A, R, (int32_t)sh.rpb);
    if ((rc = cu_check_launch(err, "fused decode attention"))) return rc;
    *done = 1;
    return HEARTH_OK;
}
