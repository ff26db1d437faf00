/* cu_qkva.cu — one token's q/k/v product, RoPE, KV store AND decode attention in one
 * launch (cuda_matmul_qkva, cuda_mvr.h): the decode step loses the attention kernel's
 * launch, its programmatic-launch wait for the whole q/k/v grid and the L2 round trip that
 * fetched q and the new cell.
 *
 * Grid: two blocks per query head, in clusters of 2 * hc blocks that serve hc query heads
 * of one KV head (qa_geometry; hc <= 4 divides the group, so a cluster stays within the
 * portable 8 blocks). Every block
 *  - before the PDL wait: copies its weight rows into shared memory — half of its head's
 *    q rows (by rotation pair) and 1/(2 hc) of the KV head's k rows (whole pairs) and v
 *    rows — and computes the pair angles (they depend only on the step's positions,
 *    uploaded before the step); the first block of a head also stages the K/V cells of
 *    earlier steps (as cu_attn_dec.cu does);
 *  - after it: each warp multiplies its rows with the single-token mat-vec's arithmetic
 *    (MV1_DOT over registers of int8 activations, then the warp sum: bitwise the q/k/v
 *    product of cu_mvr.cu), rotates its q and k pairs (rope_pair, rope_angle's angles) and
 *    keeps them, and the rounded new-cell elements, in shared memory;
 *  - a cluster barrier; then the blocks write their q rows, the first cluster of a KV head
 *    its k/v rows and cache cell elements, and the first block of each head gathers the
 *    other half of q and the new cell from the cluster (distributed shared memory) and runs
 *    the decode attention (ad_core, cu_attn_dec.cuh: the same bits as attn_dec_kernel);
 *    the quantized output goes to the SECOND activation scratch (cu_act_buffers2): the
 *    first holds this launch's input, which other clusters may still be reading.
 * A second cluster barrier keeps each block's shared memory alive until the others have
 * read it. The result equals cuda_matmul_qkvr followed by the attention bit for bit, so a
 * sequence decoded alone (this kernel) gives what it gives in a batch (those kernels).
 * Measured (H200, trace build, TinyLlama Q4_0): one block per head (32 blocks of 80 rows)
 * took 3.4 us before its wait (loading 92 KB per SM) and 3.1 us for the product after it,
 * slower than the two kernels it replaced; hence two blocks per head and 16 warps.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attn_dec.cuh"
#include "backend/cuda/cu_unpack.cuh"
#include "backend/cuda/cuda_mvr.h"

#ifndef QA_W
#define QA_W 16            /* warps per block */
#endif
#define QA_T (QA_W * 32)   /* threads; the attention runs on the first AD_T */
#define QA_J 2             /* rows of up to 64 chunks (2048 values) */
#define QA_RB 4            /* rows a warp multiplies before their (interleaved) warp sums */
#define QA_MAX_CLUSTER 8   /* the portable cluster size */
#define QA_BH 2            /* blocks per query head (HEARTH_CUDA_QKVA_BH) */
#define QA_MAX_HD 256
#define QA_MAX_SMEM (224 * 1024) /* of the 227 KB a block may have */

typedef struct qa_args {
    const uint8_t *w[3]; /* q, k, v weights */
    size_t rb[3];        /* their row bytes (multiples of 16) */
    float *y[3];         /* q (rotated), k (rotated), v outputs of the token */
    int nch;
    const int8_t *xq;
    const float *xd;
    const int2 *xs;
    int neox, n_rot;
    float base, freq_scale, attn_factor;
    const float *factors;
    const double *inv;
    int hc, bh; /* query heads per cluster, blocks per head (qa_geometry) */
    ad_args at; /* the attention (q unused: the block has it) */
} qa_args;

static __device__ __forceinline__ void qa_cluster_sync(void) {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

/* Shared-memory layout of a block (dynamic), in bytes from its start. kr: k (and v) rows
 * of a block. */
typedef struct qa_layout {
    size_t sk, sv, qv, sc, acc, rowv, ang, qh, kval, newk, total;
} qa_layout;

static __host__ __device__ __forceinline__ qa_layout qa_plan(int hd, int qr, int kr, int cap, size_t rba,
                                                             size_t rbv) {
    qa_layout L;
    int ng = AD_T / (hd / 2), rows = qr + 2 * kr;
    L.sk = (size_t)(qr + kr) * rba + (size_t)kr * rbv; /* the weight rows come first */
    L.sv = L.sk + (size_t)cap * hd * 2;
    L.qv = L.sv + (size_t)cap * hd * 2;
    L.sc = L.qv + (size_t)hd * 4;
    L.acc = L.sc + (((size_t)cap * 4 + 15) & ~(size_t)15);
    L.rowv = L.acc + (size_t)ng * hd * 4;
    L.ang = L.rowv + (((size_t)rows * 4 + 15) & ~(size_t)15);
    L.qh = L.ang + (size_t)(hd / 2) * 8;
    L.kval = L.qh + (size_t)(hd / 2) * 4;
    L.newk = L.kval + (((size_t)kr * 4 + 15) & ~(size_t)15);
    L.total = L.newk + (size_t)kr * 2 * 2;
    return L;
}

/* The 32-bit word / the half at shared address p of block `rank` of the cluster. */
static __device__ __forceinline__ uint32_t qa_remote_addr(const void *p, unsigned rank) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p), r;
    asm("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(rank));
    return r;
}
static __device__ __forceinline__ float qa_remote_f32(const float *p, unsigned rank) {
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(qa_remote_addr(p, rank)));
    return v;
}
static __device__ __forceinline__ __half qa_remote_half(const __half *p, unsigned rank) {
    unsigned short v;
    asm volatile("ld.shared::cluster.u16 %0, [%1];\n" : "=h"(v) : "r"(qa_remote_addr(p, rank)));
    return __ushort_as_half(v);
}

/* Row (within its head) of member m of rotation pair pi: (2pi, 2pi+1) or (pi, pi + hd/2). */
static __device__ __forceinline__ int qa_pair_row(int pi, int m, int hd, int neox) {
    return neox ? pi + m * (hd / 2) : 2 * pi + m;
}

/* The pair and member of row d of a head (qa_pair_row's inverse). */
static __device__ __forceinline__ int2 qa_row_pair(int d, int hd, int neox) {
    return neox ? make_int2(d % (hd / 2), d / (hd / 2)) : make_int2(d >> 1, d & 1);
}

/* Geometry: a cluster of B = 2 * hc blocks serves hc query heads of one KV head (C =
 * group / hc clusters per KV head); blocks 2j and 2j+1 hold the two halves (by rotation
 * pair) of head j's q rows, and every block 1/B of the KV head's k rows (whole pairs) and v
 * rows (each cluster of a KV head computes them; the first one stores them). Block s = 0
 * of a head runs its attention. Local rows: hd/2 q rows (pair s * hd/4 + j/2, member j&1),
 * then kr k rows (pair rank * kr/2 + j/2), then kr v rows (rank * kr + j). */
typedef struct qa_geo {
    int hd, qp, qr, kr, rows, rank, s, hk, part, h;
} qa_geo;

static __device__ __forceinline__ qa_geo qa_geometry(const qa_args &A) {
    qa_geo q;
    int G = A.at.group, B = A.bh * A.hc, C = G / A.hc, cid = blockIdx.x / B;
    q.hd = A.at.hd, q.qp = q.hd / (2 * A.bh), q.qr = 2 * q.qp, q.kr = q.hd / B, q.rows = q.qr + 2 * q.kr;
    q.rank = blockIdx.x - cid * B, q.s = q.rank % A.bh, q.hk = cid / C, q.part = cid - q.hk * C;
    q.h = q.hk * G + q.part * A.hc + q.rank / A.bh;
    return q;
}

/* Weight (0 q, 1 k, 2 v), row in it, and staged offset of local row i. */
static __device__ __forceinline__ int qa_row(const qa_args &A, const qa_geo &g, int i, int64_t *r, size_t *off) {
    int hd = g.hd, kr = g.kr, neox = A.neox;
    if (i < g.qr) {
        *r = (int64_t)g.h * hd + qa_pair_row(g.s * g.qp + (i >> 1), i & 1, hd, neox);
        *off = (size_t)i * A.rb[0];
        return 0;
    }
    if (i < g.qr + kr) {
        int j = i - g.qr;
        *r = (int64_t)g.hk * hd + qa_pair_row(g.rank * (kr / 2) + (j >> 1), j & 1, hd, neox);
        *off = (size_t)i * A.rb[0];
        return 1;
    }
    int j = i - g.qr - kr;
    *r = (int64_t)g.hk * hd + (int64_t)g.rank * kr + j;
    *off = (size_t)(g.qr + kr) * A.rb[0] + (size_t)j * A.rb[2];
    return 2;
}

/* MIXED: the v rows have the second type, decoded by UNPACK_B. */
#define QA_KERNEL(name, UNPACK, HAS_MIN, UNPACK_B, HAS_MIN_B, MIXED)                                        \
    static __global__ void __launch_bounds__(QA_T) name(const __grid_constant__ qa_args A) {                \
        CU_TR_ENTRY();                                                                                       \
        extern __shared__ __align__(16) uint8_t qa_sm[];                                                     \
        __shared__ float red[2][AD_T / 32];                                                                  \
        const ad_args &T = A.at;                                                                             \
        const qa_geo g = qa_geometry(A);                                                                     \
        int hd = g.hd, kr = g.kr, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rb2 = hd * 2, np = hd >> 3; \
        qa_layout L = qa_plan(hd, g.qr, kr, T.cap, A.rb[0], A.rb[2]);                                        \
        uint8_t *sk = qa_sm + L.sk, *sv = qa_sm + L.sv;                                                      \
        float *qv = (float *)(qa_sm + L.qv), *sc = (float *)(qa_sm + L.sc), *acc = (float *)(qa_sm + L.acc); \
        float *rowv = (float *)(qa_sm + L.rowv), *qh = (float *)(qa_sm + L.qh), *kval = (float *)(qa_sm + L.kval); \
        float2 *ang = (float2 *)(qa_sm + L.ang);                                                             \
        __half *newk = (__half *)(qa_sm + L.newk), *newv = newk + kr;                                        \
        for (int i = warp; i < g.rows; i += QA_W) { /* the block's weight rows */                           \
            int64_t r;                                                                                       \
            size_t off;                                                                                      \
            int wi = qa_row(A, g, i, &r, &off);                                                              \
            const uint8_t *src = A.w[wi] + (size_t)r * A.rb[wi];                                             \
            for (size_t b = (size_t)lane * 16; b < A.rb[wi]; b += 32 * 16) mq_cp(qa_sm + off + b, src + b, 16); \
        }                                                                                                    \
        int64_t p = T.pos[0], lo = T.window > 0 && p - T.window + 1 > 0 ? p - T.window + 1 : 0;             \
        int32_t ncell = (int32_t)min(p + 1 - lo, (int64_t)T.cap), sq = T.seq[0];                             \
        int32_t nold = p > lo ? (int32_t)min(p - lo, (int64_t)ncell) : 0;                                    \
        const uint8_t *kb = T.kc + (size_t)sq * T.n_ctx * T.row_bytes + (size_t)g.hk * rb2;                 \
        const uint8_t *vb = T.vc + (size_t)sq * T.n_ctx * T.row_bytes + (size_t)g.hk * rb2;                 \
        if (g.s == 0) ad_stage(T, sk, sv, kb, vb, lo, 0, nold, QA_T); /* the attention's block */           \
        for (int i = (int)threadIdx.x - (QA_T - 32); i >= 0 && i < hd / 2; i += 32) /* the last warp */     \
            ang[i] = rope_angle(i, (int32_t)p, A.n_rot, A.base, A.freq_scale, A.attn_factor, A.factors, A.inv); \
        CU_TR_MARK(0);                                                                                       \
        cu_pdl_wait_e();                                                                                     \
        cu_pdl_trigger();                                                                                    \
        int nch = A.nch;                                                                                     \
        int4 xa[QA_J + 1], xb[QA_J + 1];                                                                     \
        float dx[QA_J + 1];                                                                                  \
        int2 sx[QA_J + 1];                                                                                   \
        MV1_LOAD_ACT(QA_J, (HAS_MIN) || (MIXED && (HAS_MIN_B)), A.xq, A.xd, A.xs, nch, lane, xa, xb, dx, sx); \
        asm volatile("cp.async.wait_all;\n" ::: "memory");                                                  \
        __syncwarp();                                                                                        \
        CU_TR_MARK(1);                                                                                       \
        for (int i0 = warp; i0 < g.rows; i0 += QA_W * QA_RB) { /* QA_RB rows, their warp sums interleaved */ \
            float a[QA_RB];                                                                                  \
            _Pragma("unroll") for (int u = 0; u < QA_RB; u++) {                                              \
                int i = i0 + u * QA_W;                                                                       \
                int64_t r;                                                                                   \
                size_t off;                                                                                  \
                a[u] = 0.0f;                                                                                 \
                int wi = i < g.rows ? qa_row(A, g, i, &r, &off) : -1;                                        \
                const uint8_t *sm = qa_sm + off;                                                             \
                if (wi < 0) {                                                                                \
                } else if (MIXED && wi == 2) {                                                               \
                    MV1_DOT(QA_J, UNPACK_B, HAS_MIN_B, sm, (const int8_t *)0, nch, lane, xa, xb, dx, sx, a[u]); \
                } else {                                                                                     \
                    MV1_DOT(QA_J, UNPACK, HAS_MIN, sm, (const int8_t *)0, nch, lane, xa, xb, dx, sx, a[u]);  \
                }                                                                                            \
            }                                                                                                \
            _Pragma("unroll") for (int u = 0; u < QA_RB; u++) a[u] = cu_warp_sum(a[u]);                      \
            _Pragma("unroll") for (int u = 0; u < QA_RB; u++)                                                \
                if (lane == 0 && i0 + u * QA_W < g.rows) rowv[i0 + u * QA_W] = a[u];                         \
        }                                                                                                    \
        __syncthreads();                                                                                     \
        CU_TR_MARK(2);                                                                                       \
        for (int j = threadIdx.x; j < g.qp; j += QA_T) { /* q pairs: the part this block holds */           \
            float2 an = ang[g.s * g.qp + j];                                                                 \
            rope_pair(rowv[2 * j], rowv[2 * j + 1], an.x, an.y, &qh[2 * j], &qh[2 * j + 1]);                 \
        }                                                                                                    \
        for (int j = threadIdx.x; j < kr / 2; j += QA_T) { /* k pairs */                                    \
            float2 an = ang[g.rank * (kr / 2) + j];                                                          \
            rope_pair(rowv[g.qr + 2 * j], rowv[g.qr + 2 * j + 1], an.x, an.y, &kval[2 * j], &kval[2 * j + 1]); \
            newk[2 * j] = __float2half_rn(kval[2 * j]), newk[2 * j + 1] = __float2half_rn(kval[2 * j + 1]);  \
        }                                                                                                    \
        for (int j = threadIdx.x; j < kr; j += QA_T) newv[j] = __float2half_rn(rowv[g.qr + kr + j]);        \
        qa_cluster_sync(); /* the halves of q and the parts of the new cell are in shared memory */         \
        CU_TR_MARK(3);                                                                                       \
        size_t cell = (size_t)sq * (size_t)T.n_ctx + (size_t)p;                                              \
        for (int j = threadIdx.x; j < g.qr; j += QA_T) /* this block's q rows */                            \
            A.y[0][(int64_t)g.h * hd + qa_pair_row(g.s * g.qp + (j >> 1), j & 1, hd, A.neox)] = qh[j];       \
        for (int j = threadIdx.x; j < kr && g.part == 0; j += QA_T) { /* k, v rows and cell: once */        \
            int64_t rk = (int64_t)g.hk * hd + qa_pair_row(g.rank * (kr / 2) + (j >> 1), j & 1, hd, A.neox);  \
            int64_t rv = (int64_t)g.hk * hd + (int64_t)g.rank * kr + j;                                      \
            float v = rowv[g.qr + kr + j];                                                                   \
            A.y[1][rk] = kval[j], A.y[2][rv] = v;                                                            \
            kv_put((uint8_t *)T.kc + cell * T.row_bytes, 1, rk, kval[j]);                                    \
            kv_put((uint8_t *)T.vc + cell * T.row_bytes, 1, rv, v);                                          \
        }                                                                                                    \
        int32_t cc = (int32_t)(p - lo); /* the new cell's place in the stage (n_tok 1: the last) */        \
        for (int d = threadIdx.x; d < hd && g.s == 0; d += QA_T) {                                           \
            int2 pm = qa_row_pair(d, hd, A.neox);                                                            \
            int sq_ = pm.x / g.qp, gk = pm.x / (kr / 2), gv = d / kr;                                        \
            float qd = sq_ == 0 ? qh[2 * pm.x + pm.y]                                                        \
                                : qa_remote_f32(qh + 2 * (pm.x - sq_ * g.qp) + pm.y, (unsigned)(g.rank + sq_)); \
            __half kh = qa_remote_half(newk + 2 * (pm.x - gk * (kr / 2)) + pm.y, (unsigned)gk);              \
            __half vh = qa_remote_half(newv + (d - gv * kr), (unsigned)gv);                                  \
            qv[d] = qd;                                                                                      \
            *(__half *)(sk + (size_t)cc * rb2 + (size_t)(((d >> 3) + cc) % np) * 16 + (d & 7) * 2) = kh;      \
            *(__half *)(sv + (size_t)cc * rb2 + (size_t)d * 2) = vh;                                         \
        }                                                                                                    \
        asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory"); /* done reading the others */ \
        __syncthreads();                                                                                     \
        CU_TR_MARK(4);                                                                                       \
        if (g.s == 0) ad_core(T, g.h, 0, ncell, sk, sv, qv, sc, acc, red);                                   \
        CU_TR_MARK(5);                                                                                       \
        asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"); /* keep ours until read */    \
        CU_TR_FLUSH();                                                                                       \
    }

QA_KERNEL(qa_q4_0, up_q4_0, 1, up_q4_0, 1, 0)
QA_KERNEL(qa_q8_0, up_q8_0, 0, up_q8_0, 0, 0)
QA_KERNEL(qa_q4_K, up_q4_K, 1, up_q4_K, 1, 0)
QA_KERNEL(qa_q6_K, up_q6_Ku, 2, up_q6_Ku, 2, 0)
QA_KERNEL(qa_q4_K_q6_K, up_q4_K, 1, up_q6_Ku, 2, 1)

typedef void (*qa_fn)(qa_args);

typedef struct qa_entry {
    uint32_t type, vtype; /* q/k type, v type */
    qa_fn fn;
} qa_entry;

static const qa_entry k_qa[] = {
    { QT_Q4_0, QT_Q4_0, qa_q4_0 }, { QT_Q8_0, QT_Q8_0, qa_q8_0 },      { QT_Q4_K, QT_Q4_K, qa_q4_K },
    { QT_Q6_K, QT_Q6_K, qa_q6_K }, { QT_Q4_K, QT_Q6_K, qa_q4_K_q6_K },
};

static const qa_entry *qa_find(uint32_t type, uint32_t vtype) {
    for (size_t i = 0; i < sizeof k_qa / sizeof k_qa[0]; i++)
        if (k_qa[i].type == type && k_qa[i].vtype == vtype) return &k_qa[i];
    return NULL;
}

/* The weights by role (q, k, v), or false when the roles are not exactly one of each. */
static bool qa_roles(const cuda_weight *const *ws, const cuda_qkvr *q, const cuda_weight *out[3], int idx[3]) {
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        int r = q->role[i];
        if (r < CUDA_QKVR_Q || r > CUDA_QKVR_V || (seen & (1 << r))) return false;
        seen |= 1 << r;
        out[r - 1] = ws[i], idx[r - 1] = i;
    }
    return true;
}

/* Blocks per query head (HEARTH_CUDA_QKVA_BH: 2 or 4). */
static int qa_bh(const cuda_knobs *k) {
    return k->qkva_bh ? k->qkva_bh : QA_BH;
}

/* Query heads per cluster for `group` query heads per KV head: the largest divisor of the
 * group with qa_bh(k) blocks each within QA_MAX_CLUSTER blocks. */
static int qa_hc(const cuda_knobs *k, int group) {
    int hc = QA_MAX_CLUSTER / qa_bh(k);
    hc = group < hc ? group : hc;
    while (hc > 1 && group % hc) hc--;
    return hc;
}

/* The stage's cells (the attention kernel's cap) of a. */
static int32_t qa_cap(const cuda_attn *a) {
    int32_t bucket = a->max_pos_host + 1;
    return (int64_t)bucket < a->kv->n_ctx ? bucket : (int32_t)a->kv->n_ctx;
}

extern "C" int cuda_qkva_ok(const cuda_knobs *k, const cuda_weight *const *ws, const cuda_qkvr *q, const cuda_attn *a) {
    const cuda_weight *w[3];
    int idx[3];
    if (!ws || !q || !a || !q->kv || !a->kv || !qa_roles(ws, q, w, idx)) return 0;
    const cuda_kv *kv = a->kv;
    int32_t hd = q->head_dim, nh = a->n_head, nkv = a->n_head_kv;
    if (a->n_tok != 1 || nkv <= 0 || nh % nkv || hd != a->head_dim_k || hd != a->head_dim_v ||
        hd % 32 || hd > QA_MAX_HD || hd % (2 * qa_bh(k) * qa_hc(k, nh / nkv)) || kv->type != QT_F16 ||
        q->kv->type != QT_F16 ||
        q->kv->k != kv->k || q->kv->v != kv->v || kv->kv_dim != (int64_t)nkv * hd ||
        ((uintptr_t)kv->k | (uintptr_t)kv->v | kv->row_bytes) % 16 || !q->rope || q->rope->n_rot != hd)
        return 0;
    if (k->attn_tc && (hd == 64 || hd == 128) && nh / nkv <= 16) return 0; /* the single and batched attention then run cu_attn_tc.cu, whose bits this kernel does not give */
    if (!qa_find(w[0]->type, w[2]->type) || w[1]->type != w[0]->type || w[0]->n_rows != (int64_t)nh * hd ||
        w[1]->n_rows != kv->kv_dim || w[2]->n_rows != kv->kv_dim)
        return 0;
    for (int i = 0; i < 3; i++)
        if (w[i]->n_cols != w[0]->n_cols || w[i]->n_cols % 32 || w[i]->n_cols > 32 * 32 * QA_J ||
            ((uintptr_t)w[i]->data | w[i]->row_bytes) % 16)
            return 0;
    if ((w[0]->type == QT_Q4_K || w[0]->type == QT_Q6_K || w[2]->type == QT_Q6_K) && w[0]->n_cols % 256) return 0;
    int32_t cap = qa_cap(a), bh = qa_bh(k), kr = hd / (bh * qa_hc(k, nh / nkv));
    qa_layout L = qa_plan(hd, hd / bh, kr, cap, w[0]->row_bytes, w[2]->row_bytes);
    return cap >= 1 && a->max_pos_host + 1 <= 512 && L.total <= QA_MAX_SMEM;
}

extern "C" int cuda_matmul_qkva(cuda_ctx *c, const cuda_weight *const *ws, float *const *ys, const float *x,
                                int reuse_act, const cuda_qkvr *q, const cuda_attn *a, float *out, int64_t os,
                                int quant, hb_err *err) {
    int rc;
    const cuda_weight *w[3];
    int idx[3];
    if (!cuda_qkva_ok(&c->knobs, ws, q, a) || !qa_roles(ws, q, w, idx) || !q->pos || !q->seq)
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: unsupported fused q/k/v product and attention");
    int32_t hd = q->head_dim, G = a->n_head / a->n_head_kv, cap = qa_cap(a);
    int32_t hc = qa_hc(&c->knobs, G), bh = qa_bh(&c->knobs);
    int32_t kr = hd / (bh * hc);
    qa_args A;
    memset(&A, 0, sizeof A);
    for (int i = 0; i < 3; i++) A.w[i] = (const uint8_t *)w[i]->data, A.rb[i] = w[i]->row_bytes, A.y[i] = ys[idx[i]];
    A.nch = (int)(w[0]->n_cols / 32), A.hc = hc, A.bh = bh;
    int8_t *xq;
    float *xd;
    int2 *xs;
    if ((rc = cu_act_quantize(c, x, 1, w[0]->n_cols, reuse_act, &xq, &xd, &xs, err))) return rc;
    A.xq = xq, A.xd = xd, A.xs = xs;
    const cuda_rope *r = q->rope;
    A.neox = r->neox, A.n_rot = r->n_rot, A.base = r->base, A.freq_scale = r->freq_scale;
    A.attn_factor = r->attn_factor, A.factors = r->factors, A.inv = r->inv;
    const cuda_kv *kv = a->kv;
    A.at = (ad_args){ (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->row_bytes, kv->n_ctx, q->pos, q->seq,
                      NULL, 0, out, os, NULL, NULL, NULL, 1, a->n_head, G, hd, a->window, cap, a->scale, a->softcap };
    if (quant && (rc = cu_act_buffers2(c, 1, os, &A.at.xq, &A.at.xd, &A.at.xsum, err))) return rc;
    const qa_entry *e = qa_find(w[0]->type, w[2]->type);
    qa_layout L = qa_plan(hd, hd / bh, kr, cap, A.rb[0], A.rb[2]);
    if ((rc = cu_smem_allow(c, (const void *)e->fn, L.total, err))) return rc;
    cudaLaunchAttribute at[2];
    cudaLaunchConfig_t cfg = cu_launch_config(dim3((unsigned)(bh * a->n_head)), dim3(QA_T), L.total, c, &at[0]);
    at[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    at[cfg.numAttrs].val.clusterDim.x = (unsigned)(bh * hc), at[cfg.numAttrs].val.clusterDim.y = 1;
    at[cfg.numAttrs].val.clusterDim.z = 1;
    cfg.attrs = at, cfg.numAttrs++;
    cudaError_t ce = cudaLaunchKernelEx(&cfg, e->fn, A);
    if (ce != cudaSuccess) return cu_fail(err, ce, "launching the fused q/k/v product and attention");
    return cu_check_launch(err, "fused q/k/v product and attention");
}
