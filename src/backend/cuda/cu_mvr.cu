/* cu_mvr.cu — the q/k/v decode product with RoPE and the KV-cache store in its epilogue
 * (cuda_mvr.h): the decode step loses the separate RoPE(+KV store) kernel, whose launch and
 * L2 round trip sat on the critical path of every layer.
 *
 * The product is the matrix-vector product of cu_matmul.cu (one warp per weight row, MR_W
 * rows per block, the row staged in shared memory by asynchronous copies before the
 * programmatic-launch wait, int8 activations, dp4a per 32-value chunk with the cu_unpack.cuh
 * unpackers, per-lane chunk order, warp butterfly sum), so every output float is bitwise
 * the plain product's. What changes is which rows a block owns and what happens to the sums:
 *  - rows of q and k are rotated in pairs, so a block owns whole pairs: warps 2j and 2j+1
 *    hold the two rows of a pair — rows (2i, 2i+1) of a head for the normal style (the
 *    plain row order), rows (i, i + head_dim/2) for the neox style — and exchange their
 *    sums through shared memory; each warp then rotates the pair with rope_pair
 *    (cu_attn.cuh) and stores its own row, for token t in lane t;
 *  - k rows also go to the K cache cell (seq[t], pos[t]), v rows to the V cache cell, as the
 *    f16 or f32 values the KV store would write.
 * The angles are those of rope_kernel (cu_ops.cu): theta = pos * freq_scale * inv[i]
 * (/ factors[i]) in double, sincos in double, times attn_factor, rounded to float. A fifth
 * warp per block computes them while the four product warps multiply (they depend only on
 * positions, from the step arena uploaded before the step, and model data). Measured on an
 * H200 (trace build, TinyLlama Q4_0): with the sincos in the product warps before the PDL
 * wait, their blocks reached the wait ~1 us later than the plain product's; after the
 * wait, the kernel took 0.4 us more than the plain product; with the angle warp it takes
 * the plain product's time (2.3 us per layer, the rope kernel's 2.0 us gone).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attn.cuh"
#include "backend/cuda/cu_pq.cuh"
#include "backend/cuda/cuda_mvr.h"

#define MR_W 4        /* warps (rows) per block: two pairs */
#define MR_STAGE 6656 /* staged row bytes per warp and pass, as cu_matmul.cu */
#define MR_T CU_MV_T  /* most tokens */
#define MR_ONE_MAX_ROWS 16384

static __constant__ int8_t mr_iq4_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113 };

/* One weight of the launch; it owns `blocks` consecutive blocks of the grid. */
typedef struct mr_seg {
    const uint8_t *w;
    size_t row_bytes;
    int64_t n_rows;
    float *y;
    int64_t ldy;
    unsigned blocks;
    int role; /* CUDA_QKVR_* */
    int alt;  /* mixed-type kernels: this weight has the second type */
} mr_seg;

typedef struct mr_args {
    mr_seg s0, s1, s2;
    int n, nch, seg_bytes, vw, n_tok;
    const int8_t *xq;
    const float *xd;
    const int2 *xs;
    const int32_t *pos, *seq;
    int neox, hd, n_rot;
    float base, freq_scale, attn_factor;
    const float *factors;
    const double *inv;
    uint8_t *kc, *vc; /* NULL: no cache store */
    int kv_f16;
    int64_t n_ctx;
    size_t kv_row_bytes;
    int norm;         /* the activations come from in (RMSNorm + quantize in every block) */
    pq_in in;
} mr_args;

#define MR_NORM_SMEM (20 * 1024) /* most dynamic bytes of the folded norm's activations: with
                                  * the 26.6 KB stage under the 48 KB a launch gets by default */

#define MR_F(A, seg, f) ((seg) == 0 ? (A).s0.f : ((seg) == 1 ? (A).s1.f : (A).s2.f))

/* The warp's copies of nbytes from src to dst: asynchronous (vw 4/8/16, completed by
 * cp.async.wait_all) or plain 2-byte loads (rows of an odd number of 18-byte blocks). */
static __device__ __forceinline__ void mr_copy(uint8_t *dst, const uint8_t *src, int nbytes, int vw, int lane) {
    if (vw >= 4)
        for (int i = lane * vw; i < nbytes; i += 32 * vw) mq_cp(dst + i, src + i, vw);
    else
        for (int i = lane * 2; i < nbytes; i += 64) *(uint16_t *)(dst + i) = *(const uint16_t *)(src + i);
}

/* The row of warp `warp` in block blk of a segment, and its pair index within the head
 * (rotated segments). A rotated segment's pair slot s holds rows a (even warp) and b (odd). */
static __device__ __forceinline__ bool mr_row(bool rot, int neox, int hd, int64_t n_rows, unsigned blk, int warp,
                                              int64_t *r, int32_t *pi) {
    if (rot && neox) {
        int32_t half = hd / 2;
        int64_t s = (int64_t)blk * (MR_W / 2) + (warp >> 1);
        *pi = (int32_t)(s % half);
        *r = s / half * hd + *pi + (warp & 1) * half;
        return s < n_rows / 2;
    }
    *r = (int64_t)blk * MR_W + warp;
    *pi = (int32_t)(*r % hd / 2);
    return *r < n_rows;
}

/* J > 0: the single-token form for rows of up to 32 * J chunks (the row staged in one pass,
 * the lane's activations loaded into registers right after the wait, under the copies:
 * cu_matmul.cu's MV1 kernels; a small J keeps the registers, and so the blocks beside the
 * next kernel's, few); J == 0: any 1..MR_T tokens in passes of MR_STAGE bytes (its MV
 * kernels). Same arithmetic. Warp MR_W computes the angles of the block's pairs (lane
 * 8 * slot + token) into shared memory while the others multiply: it reads only model data
 * and the step's positions (never written by a kernel), so it needs no wait and takes the
 * double sincos off the product's path. */
#define MR_KERNEL(name, UNPACK, HAS_MIN, HAS_LUT, J) MR_KERNEL_X(name, UNPACK, HAS_MIN, HAS_LUT, J, UNPACK, HAS_MIN, 0)
/* MIXED: the single-token form (J > 0) over weights of two types, the segments with `alt`
 * decoded by UNPACK_B (a Q4_K_M layer's Q6_K v rows beside its Q4_K q and k rows: one launch
 * instead of two). The activations are the same; each row's arithmetic is its type's. */
#define MR_KERNEL_X(name, UNPACK, HAS_MIN, HAS_LUT, J, UNPACK_B, HAS_MIN_B, MIXED)                      \
    static __global__ void __launch_bounds__((MR_W + 1) * 32) name(mr_args A) {                          \
        __shared__ __align__(16) uint8_t stage[MR_W][MR_STAGE];                                          \
        extern __shared__ __align__(16) uint8_t mr_dyn[];                                                \
        __shared__ float red[4 * PQ_T];                                                                  \
        __shared__ int8_t lut[16];                                                                       \
        __shared__ float xch[MR_W][MR_T];                                                                \
        __shared__ float2 ang[MR_W / 2][MR_T];                                                           \
        if (HAS_LUT) {                                                                                   \
            if (threadIdx.x < 16) lut[threadIdx.x] = mr_iq4_levels[threadIdx.x];                         \
            __syncthreads();                                                                             \
        }                                                                                                \
        unsigned blk = blockIdx.x;                                                                       \
        int seg = 0;                                                                                     \
        if (A.n > 1 && blk >= A.s0.blocks) {                                                             \
            blk -= A.s0.blocks, seg = 1;                                                                 \
            if (A.n > 2 && blk >= A.s1.blocks) blk -= A.s1.blocks, seg = 2;                              \
        }                                                                                                \
        const uint8_t *w = MR_F(A, seg, w);                                                              \
        size_t row_bytes = MR_F(A, seg, row_bytes);                                                      \
        int64_t n_rows = MR_F(A, seg, n_rows), ldy = MR_F(A, seg, ldy);                                  \
        float *y = MR_F(A, seg, y);                                                                      \
        int role = MR_F(A, seg, role);                                                                   \
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_tok = (J) ? 1 : A.n_tok, nch = A.nch;    \
        bool rot = role == CUDA_QKVR_Q || role == CUDA_QKVR_K;                                           \
        int64_t r;                                                                                       \
        int32_t pi;                                                                                      \
        const int8_t *xq = A.xq;                                                                         \
        const float *xd = A.xd;                                                                          \
        const int2 *xs = A.xs;                                                                           \
        bool valid = false;                                                                              \
        const uint8_t *row = NULL;                                                                       \
        uint8_t *sm = stage[warp < MR_W ? warp : 0];                                                     \
        int per_pass = MR_STAGE / A.seg_bytes, nseg = (nch + 31) / 32;                                   \
        if (warp == MR_W) { /* the angle warp */                                                         \
            int ps = lane / MR_T, t = lane % MR_T;                                                       \
            if (rot && ps < MR_W / 2 && t < n_tok && mr_row(rot, A.neox, A.hd, n_rows, blk, 2 * ps, &r, &pi)) \
                ang[ps][t] = rope_angle(pi, A.pos[t], A.n_rot, A.base, A.freq_scale, A.attn_factor, A.factors, \
                                      A.inv);                                                            \
        } else {                                                                                         \
            valid = mr_row(rot, A.neox, A.hd, n_rows, blk, warp, &r, &pi);                               \
            row = w + (size_t)r * row_bytes;                                                             \
            if (valid) {                                                                                 \
                size_t b1 = (J) ? row_bytes : (size_t)per_pass * A.seg_bytes;                            \
                mr_copy(sm, row, (int)(b1 < row_bytes ? b1 : row_bytes), A.vw, lane);                    \
            }                                                                                            \
        }                                                                                                \
        if (A.norm) { /* every thread: the block normalizes and quantizes its input itself */           \
            float4 wpre[4];                                                                              \
            pq_prefetch_w(A.in, 32 * nch, n_tok, wpre);                                                  \
            cu_pdl_wait();                                                                               \
            cu_pdl_trigger();                                                                            \
            int8_t *sq = (int8_t *)mr_dyn;                                                               \
            int2 *ssum = (int2 *)(sq + (size_t)n_tok * 32 * nch);                                        \
            float *sd = (float *)(ssum + n_tok * nch);                                                   \
            pq_prologue(A.in, 32 * nch, n_tok, wpre, sq, ssum, sd, red);                                 \
            xq = sq, xd = sd, xs = ssum;                                                                 \
        }                                                                                                \
        if (warp == MR_W) {                                                                              \
            if (!rot) return;                                                                            \
            __syncthreads(); /* the one in mr_finish */                                                  \
            return;                                                                                      \
        }                                                                                                \
        if (!valid && !rot) return; /* no block barrier follows for unrotated rows */                   \
        if (!A.norm) {                                                                                   \
            cu_pdl_wait(); /* weights in flight; activations now ready */                                \
            cu_pdl_trigger();                                                                            \
        }                                                                                                \
        float acc[MR_T];                                                                                 \
        _Pragma("unroll") for (int t = 0; t < MR_T; t++) acc[t] = 0.0f;                                  \
        if (valid && (J)) {                                                                              \
            int4 xa[(J) + 1], xb[(J) + 1];                                                               \
            float dx[(J) + 1];                                                                           \
            int2 sx[(J) + 1];                                                                            \
            MV1_LOAD_ACT(J, (HAS_MIN) || (MIXED && (HAS_MIN_B)), xq, xd, xs, nch, lane, xa, xb, dx, sx);  \
            asm volatile("cp.async.wait_all;\n" ::: "memory");                                           \
            __syncwarp();                                                                                \
            if (MIXED && MR_F(A, seg, alt)) {                                                            \
                MV1_DOT(J, UNPACK_B, HAS_MIN_B, sm, lut, nch, lane, xa, xb, dx, sx, acc[0]);             \
            } else {                                                                                     \
                MV1_DOT(J, UNPACK, HAS_MIN, sm, lut, nch, lane, xa, xb, dx, sx, acc[0]);                 \
            }                                                                                            \
        } else if (valid) {                                                                              \
            for (int s0 = 0; s0 < nseg; s0 += per_pass) {                                                \
                size_t b0 = (size_t)s0 * A.seg_bytes, b1 = b0 + (size_t)per_pass * A.seg_bytes;          \
                if (b1 > row_bytes) b1 = row_bytes;                                                      \
                if (s0) { /* every lane is done with the previous pass */                                \
                    __syncwarp();                                                                        \
                    mr_copy(sm, row + b0, (int)(b1 - b0), A.vw, lane);                                   \
                }                                                                                        \
                if (A.vw >= 4) asm volatile("cp.async.wait_all;\n" ::: "memory");                       \
                __syncwarp();                                                                            \
                int c_end = (s0 + per_pass) * 32 < nch ? (s0 + per_pass) * 32 : nch;                     \
                for (int c = s0 * 32 + lane; c < c_end; c += 32) {                                       \
                    int q[8];                                                                            \
                    float a[2], m[2];                                                                    \
                    UNPACK(sm, c - s0 * 32, lut, q, a, m);                                               \
                    _Pragma("unroll") for (int t = 0; t < MR_T; t++) {                                   \
                        if (t < n_tok) {                                                                 \
                            const int4 *xp = (const int4 *)(xq + ((int64_t)t * nch + c) * 32);           \
                            int4 x0 = xp[0], x1 = xp[1];                                                 \
                            float dx = xd[(int64_t)t * nch + c];                                         \
                            int2 sx = HAS_MIN ? xs[(int64_t)t * nch + c] : make_int2(0, 0);              \
                            float v = mq_chunk_dot(q, x0, x1, a, m, sx, HAS_MIN);                        \
                            acc[t] += dx * v;                                                            \
                        }                                                                                \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        mr_finish(A, acc, valid, rot, role, r, warp, lane, n_tok, y, ldy, xch, ang);                     \
    }

/* Token (lane % V)'s warp sum of acc[0..V) in every lane: one reduction for all V values
 * (ps_tsum, cu_mv_store's: the same bits as cu_warp_sum per token), then a shuffle. */
template <int V>
static __device__ __forceinline__ float mr_tsum(const float *acc, int lane) {
    float v[V];
#pragma unroll
    for (int t = 0; t < V; t++) v[t] = acc[t];
    return __shfl_sync(0xffffffffu, ps_tsum<V>(v, lane), (lane % V) * (32 / V));
}

/* The epilogue: warp sums (one reduction for 3-8 tokens: 6 shuffles for 3-4, 9 for 5-8),
 * then the pair rotation (rotated segments; every thread of the block, the angle warp too,
 * reaches its barrier), the output row and the cache cells, token t by lane t. */
static __device__ __forceinline__ void mr_finish(const mr_args &A, const float *acc, bool valid, bool rot, int role,
                                                 int64_t r, int warp, int lane, int n_tok, float *y, int64_t ldy,
                                                 float (*xch)[MR_T], const float2 (*ang)[MR_T]) {
    float o = 0.0f;
    if (n_tok > 4 && valid) {
        o = mr_tsum<MR_T>(acc, lane);
    } else if (n_tok > 2 && valid) {
        o = mr_tsum<4>(acc, lane);
    } else {
        float v[MR_T];
#pragma unroll
        for (int t = 0; t < MR_T; t++) v[t] = valid && t < n_tok ? cu_warp_sum(acc[t]) : 0.0f;
        o = v[0];
#pragma unroll
        for (int t = 1; t < MR_T; t++)
            if (t == lane) o = v[t];
    }
    if (rot) {
        if (valid && lane < n_tok) xch[warp][lane] = o;
        __syncthreads();
        if (!valid || lane >= n_tok) return;
        float y0, y1;
        float2 g = ang[warp >> 1][lane];
        rope_pair(xch[warp & ~1][lane], xch[warp | 1][lane], g.x, g.y, &y0, &y1);
        o = (warp & 1) ? y1 : y0;
    } else if (lane >= n_tok) {
        return;
    }
    y[(int64_t)lane * ldy + r] = o;
    uint8_t *cache = role == CUDA_QKVR_K ? A.kc : (role == CUDA_QKVR_V ? A.vc : NULL);
    if (cache) {
        size_t cell = (size_t)A.seq[lane] * (size_t)A.n_ctx + (size_t)A.pos[lane];
        kv_put(cache + cell * A.kv_row_bytes, A.kv_f16, r, o);
    }
}

MR_KERNEL(mr_q4_0, up_q4_0, 1, 0, 0)
MR_KERNEL(mr_q4_1, up_q4_1, 1, 0, 0)
MR_KERNEL(mr_q5_0, up_q5_0, 1, 0, 0)
MR_KERNEL(mr_q5_1, up_q5_1, 1, 0, 0)
MR_KERNEL(mr_q8_0, up_q8_0, 0, 0, 0)
MR_KERNEL(mr_iq4_nl, up_iq4_nl, 0, 1, 0)
MR_KERNEL(mr_q2_K, up_q2_K, 1, 0, 0)
MR_KERNEL(mr_q3_K, up_q3_K, 0, 0, 0)
MR_KERNEL(mr_q4_K, up_q4_K, 1, 0, 0)
MR_KERNEL(mr_q5_K, up_q5_K, 1, 0, 0)
MR_KERNEL(mr_q6_K, up_q6_Ku, 2, 0, 0)
MR_KERNEL(mr_iq4_xs, up_iq4_xs, 0, 1, 0)
MR_KERNEL(mr2_q4_0, up_q4_0, 1, 0, 2)
MR_KERNEL(mr2_q8_0, up_q8_0, 0, 0, 2)
MR_KERNEL(mr2_q4_K, up_q4_K, 1, 0, 2)
MR_KERNEL(mr2_q6_K, up_q6_Ku, 2, 0, 2)
MR_KERNEL(mr6_q4_0, up_q4_0, 1, 0, 6)
MR_KERNEL(mr6_q8_0, up_q8_0, 0, 0, 6)
MR_KERNEL(mr6_q4_K, up_q4_K, 1, 0, 6)
MR_KERNEL(mr6_q6_K, up_q6_Ku, 2, 0, 6)
MR_KERNEL_X(mrx2_q4_K_q6_K, up_q4_K, 1, 0, 2, up_q6_Ku, 2, 1)

typedef void (*mr_fn)(mr_args);

typedef struct mr_entry {
    uint32_t type;
    mr_fn any, one2, one6; /* single-token kernels for rows of up to 64 / 192 chunks, or NULL */
} mr_entry;

static const mr_entry k_mr[] = {
    { QT_Q4_0, mr_q4_0, mr2_q4_0, mr6_q4_0 }, { QT_Q4_1, mr_q4_1, NULL, NULL },
    { QT_Q5_0, mr_q5_0, NULL, NULL },         { QT_Q5_1, mr_q5_1, NULL, NULL },
    { QT_Q8_0, mr_q8_0, mr2_q8_0, mr6_q8_0 }, { QT_IQ4_NL, mr_iq4_nl, NULL, NULL },
    { QT_Q2_K, mr_q2_K, NULL, NULL },         { QT_Q3_K, mr_q3_K, NULL, NULL },
    { QT_Q4_K, mr_q4_K, mr2_q4_K, mr6_q4_K }, { QT_Q5_K, mr_q5_K, NULL, NULL },
    { QT_Q6_K, mr_q6_K, mr2_q6_K, mr6_q6_K }, { QT_IQ4_XS, mr_iq4_xs, NULL, NULL },
};

static const mr_entry *mr_find(uint32_t type) {
    for (size_t i = 0; i < sizeof k_mr / sizeof k_mr[0]; i++)
        if (k_mr[i].type == type) return &k_mr[i];
    return NULL;
}

extern "C" uint64_t cuda_qkvr_launches(const cuda_ctx *c) {
    return c->n_qkvr;
}

extern "C" int cuda_qkvr_ok(uint32_t type, int64_t n_tok, const cuda_rope *r, int32_t head_dim, const cuda_kv *kv) {
    return mr_find(type) && n_tok >= 1 && n_tok <= MR_T && r && head_dim >= 2 && head_dim % 2 == 0 &&
           r->n_rot == head_dim && (!kv || kv->type == QT_F16 || kv->type == QT_F32);
}

/* Copy width for rows of w (cu_matmul.cu's rule): the widest of 16/8/4/2 bytes dividing the
 * data address, the row size and the size of 32 chunks. */
static int mr_width(const cuda_weight *w, int seg_bytes) {
    uintptr_t a = (uintptr_t)w->data | (uintptr_t)w->row_bytes | (uintptr_t)seg_bytes;
    return a % 16 == 0 ? 16 : (a % 8 == 0 ? 8 : (a % 4 == 0 ? 4 : 2));
}

extern "C" int cuda_qkvr_norm_ok(int64_t n_tok, int64_t n, const float *x, int64_t xs, const float *w) {
    return n_tok >= 1 && n_tok <= MR_T && n % 32 == 0 && (size_t)n_tok * (size_t)(n / 32) * 44 <= MR_NORM_SMEM &&
           (uintptr_t)x % 16 == 0 && xs % 4 == 0 && xs >= n && (!w || (uintptr_t)w % 16 == 0);
}

/* Mixed-type launches (MR_KERNEL_X): the base type of the first weight, the other one's. */
typedef struct mrx_entry {
    uint32_t type, alt;
    mr_fn one2;
} mrx_entry;

static const mrx_entry k_mrx[] = { { QT_Q4_K, QT_Q6_K, mrx2_q4_K_q6_K } };

static const mrx_entry *mrx_find(uint32_t type, uint32_t alt) {
    for (size_t i = 0; i < sizeof k_mrx / sizeof k_mrx[0]; i++)
        if (k_mrx[i].type == type && k_mrx[i].alt == alt) return &k_mrx[i];
    return NULL;
}

/* The mixed kernel is the single-token one for rows of up to 64 chunks (2048 values:
 * at most 8 super-blocks of 144 or 210 bytes, staged whole). */
extern "C" int cuda_qkvr_mixed_ok(uint32_t type, uint32_t alt, int64_t n_tok, int64_t n_cols) {
    return mrx_find(type, alt) && n_tok == 1 && n_cols > 0 && n_cols % 256 == 0 && n_cols <= 2048;
}

/* Whether weight i's shape suits its role (its type: w0's, or `alt` for a mixed launch). */
static bool mr_shape_ok(const cuda_weight *w, const cuda_weight *w0, uint32_t alt, int role, int32_t hd,
                        const cuda_kv *kv) {
    if ((w->type != w0->type && w->type != alt) || w->n_cols != w0->n_cols || w->n_rows <= 0 ||
        role < CUDA_QKVR_PLAIN || role > CUDA_QKVR_V)
        return false;
    if ((role == CUDA_QKVR_Q || role == CUDA_QKVR_K) && w->n_rows % hd) return false;
    if (role == CUDA_QKVR_K && kv && w->n_rows != kv->kv_dim) return false;
    return role != CUDA_QKVR_V || (kv && w->n_rows == kv->kv_dim);
}

extern "C" int cuda_matmul_qkvr(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys,
                                const int64_t *ldys, const float *x, int64_t n_tok, int reuse_act, const cuda_qkvr *q,
                                hb_err *err) {
    int rc;
    if (n_tok <= 0) return HEARTH_OK;
    const cuda_weight *w = ws[0];
    if (n < 1 || n > 3 || !q || !cuda_qkvr_ok(w->type, n_tok, q->rope, q->head_dim, q->kv) || w->n_cols <= 0 ||
        w->n_cols % 32 || !q->pos || (q->kv && !q->seq))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unsupported q/k/v product with RoPE");
    const mr_entry *e = mr_find(w->type);
    int nch = (int)(w->n_cols / 32), segb = (int)(w->row_bytes * 32 / (size_t)nch), vw = 16;
    if (segb <= 0 || segb > MR_STAGE) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unexpected row layout");
    uint32_t alt = w->type; /* a second type among the weights: the mixed kernel */
    for (int i = 1; i < n; i++)
        if (ws[i]->type != w->type) alt = ws[i]->type;
    const mrx_entry *mx = alt != w->type ? mrx_find(w->type, alt) : NULL;
    if (alt != w->type && (!mx || !cuda_qkvr_mixed_ok(w->type, alt, n_tok, w->n_cols) || q->norm_x))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: q/k/v product with RoPE over weights of different types");
    mr_args A;
    memset(&A, 0, sizeof A);
    mr_seg *seg[3] = { &A.s0, &A.s1, &A.s2 };
    unsigned grid = 0;
    for (int i = 0; i < n; i++) {
        if (!mr_shape_ok(ws[i], w, alt, q->role[i], q->head_dim, q->kv))
            return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: q/k/v product with RoPE over unsuitable weights");
        int v = mr_width(ws[i], (int)(ws[i]->row_bytes * 32 / (size_t)nch));
        vw = v < vw ? v : vw;
        unsigned b = cu_blocks(ws[i]->n_rows, MR_W);
        *seg[i] = (mr_seg){ (const uint8_t *)ws[i]->data, ws[i]->row_bytes, ws[i]->n_rows, ys[i], ldys[i], b,
                            q->role[i], mx && ws[i]->type == alt };
        grid += b;
    }
    int8_t *xq;
    float *xd;
    int2 *xs;
    size_t smem = 0;
    if (q->norm_x) { /* the blocks normalize and quantize; block 0 leaves the norm's outputs */
        if (!cuda_qkvr_norm_ok(n_tok, w->n_cols, q->norm_x, q->norm_xs, q->norm_w))
            return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: q/k/v product cannot fold this norm");
        if ((rc = cu_act_buffers(c, n_tok, w->n_cols, &xq, &xd, &xs, err))) return rc;
        A.norm = 1;
        A.in.x = q->norm_x, A.in.xs = q->norm_xs, A.in.nw = q->norm_w, A.in.eps = q->eps, A.in.norm = 1;
        A.in.ny = (float *)x, A.in.gq = xq, A.in.gd = xd, A.in.gs = xs;
        smem = (size_t)n_tok * (size_t)nch * 44;
    } else if ((rc = cu_act_quantize(c, x, n_tok, w->n_cols, reuse_act, &xq, &xd, &xs, err)))
        return rc;
    A.xq = xq, A.xd = xd, A.xs = xs;
    A.n = n, A.nch = nch, A.seg_bytes = segb, A.vw = vw, A.n_tok = (int)n_tok;
    A.pos = q->pos, A.seq = q->seq;
    const cuda_rope *r = q->rope;
    A.neox = r->neox, A.hd = q->head_dim, A.n_rot = r->n_rot, A.base = r->base, A.freq_scale = r->freq_scale;
    A.attn_factor = r->attn_factor, A.factors = r->factors, A.inv = r->inv;
    if (q->kv) {
        A.kc = (uint8_t *)q->kv->k, A.vc = (uint8_t *)q->kv->v, A.kv_f16 = q->kv->type == QT_F16;
        A.n_ctx = q->kv->n_ctx, A.kv_row_bytes = q->kv->row_bytes;
    }
    /* the single-token kernel where cu_matmul.cu would take its MV1 kernel */
    bool one = e->one2 && n_tok == 1 && (int64_t)grid * MR_W <= MR_ONE_MAX_ROWS && vw >= 4 && nch <= 32 * 6 &&
               (size_t)(MR_STAGE / segb) * (size_t)segb >= w->row_bytes;
    mr_fn fn = !one ? e->any : (nch <= 32 * 2 ? e->one2 : e->one6);
    if (mx && !(vw >= 4 && (int64_t)grid * MR_W <= MR_ONE_MAX_ROWS))
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: q/k/v product with RoPE: unsuitable mixed-type rows");
    if (mx) fn = mx->one2;
    cu_carve(c, (const void *)fn);
    CU_LAUNCH_W(err, "launching the q/k/v product with RoPE", fn, grid, (MR_W + 1) * 32, smem, c, n, ws, A);
    c->n_qkvr++;
    return cu_check_launch(err, "q/k/v product with RoPE");
}
