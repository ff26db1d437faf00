/* cu_attn_pf.cu — attention for prefill-sized batches on the tensor cores (flash attention).
 *
 * The batch is cut into slices of 64 consecutive rows (tokens). The rows of one slice that
 * belong to one sequence form a "pass"; a block of 4 warps runs passes of one slice for one
 * query head (warp w owns rows 16w..16w+15 of the slice), walking the pass's cache cells in
 * tiles of 64 staged in shared memory (PF_STAGES deep: the next tiles are copied while this
 * one is used). f16 cache rows are copied as they are (cp.async); f32 and q8_0 rows are
 * converted to f16 while staged. Per tile a warp computes S = Q K^T (mma.sync m16n8k16, f16
 * inputs, f32 accumulation; q is multiplied by the scale, and by log2(e) when there is no
 * softcap, before it is rounded to f16), applies the softcap, its rows' masks and an online
 * softmax in f32 (base-2 exponentials), and accumulates O += P V with P rounded to f16.
 *
 * Masks are per row: row r (sequence seq[r], position pos[r]) sees cells [lo[r], pos[r]] of
 * its own sequence, exactly as cuda_attention documents; positions need not be consecutive.
 * A slice of one sequence (prefill) is one pass. A slice holding several sequences (decode
 * tokens of other sequences beside a prompt chunk) has one pass per sequence; the grid has
 * `ny` blocks per (slice, head), block y taking passes y, y + ny, ..., so those passes run
 * side by side (blocks without a pass leave at once). A pass whose rows all fall in one
 * warp's 16 (a decode token) is "narrow": the four warps split each tile's cells instead
 * of idling, and their partial results are merged at the end.
 *
 * Tiles start at multiples of 64 cells, and a tile that a row cannot see leaves its sums
 * exactly unchanged (softmax factor exp2(0) = 1, weights 0), so a row's result does not
 * depend on the other rows of its batch as long as its pass stays wide (or narrow): a
 * prompt chunk gives the same bits alone or in a longer batch. Cells outside the pass's
 * range are staged as zeros, and with a sliding window over non-consecutive rows, V cells
 * that no row of the pass sees are too, so that never-written cache memory cannot turn
 * 0 * V into NaN.
 *
 * head_dim 64 and 128 have a kernel each (the dimension is a compile-time constant in the
 * shared body, so the fragment arrays are sized by it).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cu_attn_pf.cuh"
#include "backend/cuda/cu_gemm.cuh" /* cp.async, ldmatrix, mma.sync helpers */

#define PF_BQ 64  /* query rows per block */
#define PF_BK 64  /* cache cells per tile */
#define PF_WARPS 4
#define PF_STAGES 3 /* tiles in flight */
#define PF_Y_BLOCKS 768 /* blocks in all for small batches (see cu_attn_pf) */
#define PF_THREADS (PF_WARPS * 32)
#define PF_LOG2E 1.4426950408889634f

typedef struct pf_args {
    const uint8_t *kc, *vc; /* cache base (device) */
    uint32_t type;          /* QT_F16, QT_F32 or QT_Q8_0 */
    size_t row_bytes;
    int32_t n_ctx;
    const int32_t *pos, *seq; /* [n_tok] */
    int32_t n_tok, n_head, n_head_kv, window, n_qt, ny;
    float qscale;           /* applied to q: scale (times log2(e) without softcap) */
    float cap_in, cap_out;  /* softcap: s -> cap_out * tanh(s * cap_in); cap_in 0: none */
    const float *q;         /* [n_tok][qs], head h at h * hd */
    int64_t qs;
    float *out;             /* [n_tok][os] */
    int64_t os;
} pf_args;

/* The slice's rows as the masks need them, and its passes. */
typedef struct pf_rows {
    int32_t pos[PF_BQ], lo[PF_BQ], seq[PF_BQ]; /* seq -1: no row (past n_tok or invalid) */
    int32_t pass[PF_BQ];                       /* the row's pass, -1 none */
    int32_t plo[PF_BQ], phi[PF_BQ], pseq[PF_BQ]; /* per pass: the cells its rows see, at most;
                                                  its sequence */
    int32_t pw[PF_BQ];                         /* per pass: the warp holding all its rows, or -1 */
    uint32_t first[2];                         /* rows that open a pass (first of their sequence) */
    int32_t n_pass;
} pf_rows;

/* ---- PTX helpers ----------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t pf_pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* ---- the slice's rows and passes ------------------------------------------------------- */

/* Fills R for the slice of rows [t0, t0 + PF_BQ) (threads < PF_BQ, one row each). Rows past
 * n_tok, with a negative sequence or a position outside the cache get seq -1 and no pass.
 * Passes are numbered in the order of their sequence's first row. Returns whether the
 * slice's rows (those below n_tok) are one sequence at consecutive positions. */
static __device__ bool pf_rows_load(const pf_args *A, pf_rows *R, int32_t t0) {
    int r = threadIdx.x;
    int32_t p = -1, s = -1, lo = 0;
    if (r < PF_BQ) {
        if (t0 + r < A->n_tok) {
            p = A->pos[t0 + r], s = A->seq[t0 + r];
            if (s < 0 || p < 0 || p >= A->n_ctx) s = -1, p = -1;
            else lo = A->window > 0 && p - A->window + 1 > 0 ? p - A->window + 1 : 0;
        }
        R->pos[r] = p, R->seq[r] = s, R->lo[r] = lo;
        R->plo[r] = INT_MAX, R->phi[r] = -1, R->pw[r] = INT_MAX;
    }
    __syncthreads();
    int32_t fr = -1; /* the first row of this row's sequence */
    if (r < PF_BQ && s >= 0)
        for (int k = 0; fr < 0; k++)
            if (R->seq[k] == s) fr = k;
    if (r < PF_BQ) { /* warps 0 and 1: the 64 rows */
        unsigned b = __ballot_sync(0xffffffffu, fr == r);
        if ((r & 31) == 0) R->first[r >> 5] = b;
    }
    __syncthreads();
    if (r < PF_BQ) {
        int32_t pid = -1;
        if (fr >= 0) {
            uint32_t f0 = R->first[0], f1 = R->first[1];
            pid = fr < 32 ? __popc(f0 & ((1u << fr) - 1)) : __popc(f0) + __popc(f1 & ((1u << (fr - 32)) - 1));
            atomicMin(&R->plo[pid], lo);
            atomicMax(&R->phi[pid], p);
            if (fr == r) R->pseq[pid] = s;
        }
        R->pass[r] = pid;
        if (r == 0) R->n_pass = __popc(R->first[0]) + __popc(R->first[1]);
        /* pw: the warp of the pass's rows when they all share one (else -1) */
        if (pid >= 0) {
            int32_t was = atomicCAS(&R->pw[pid], INT_MAX, r >> 4);
            if (was != INT_MAX && was != (r >> 4)) R->pw[pid] = -1;
        }
    }
    bool simple = r >= PF_BQ || t0 + r >= A->n_tok || (s >= 0 && s == R->seq[0] && p == R->pos[0] + r);
    return __syncthreads_and(simple);
}

/* ---- staging --------------------------------------------------------------------------- */

/* f16 cache without holes: thread i copies the 16-byte piece i % CPR of cells
 * c0 + i / CPR + k * RPS; kp / vp point at that piece of cell 0 of the sequence. */
static __device__ __forceinline__ void pf_stage_f16(__half *ks, __half *vs, const uint8_t *kp, const uint8_t *vp,
                                                    size_t rb, int32_t c0, int32_t lo_s, int32_t hi_s, const int HD) {
    const int CPR = HD / 8, RPS = PF_THREADS / CPR, LD = HD + 8;
    int r0 = threadIdx.x / CPR, part = threadIdx.x % CPR;
    bool inside = c0 >= lo_s && c0 + PF_BK - 1 <= hi_s;
#pragma unroll
    for (int k = 0; k < PF_BK / RPS; k++) {
        int32_t cell = c0 + r0 + k * RPS;
        bool ok = inside || (cell >= lo_s && cell <= hi_s);
        size_t off = (size_t)(ok ? cell : lo_s) * rb; /* a valid address either way */
        int d = (r0 + k * RPS) * LD + part * 8;
        gm_cp16z(ks + d, kp + off, ok);
        gm_cp16z(vs + d, vp + off, ok);
    }
}

/* Elements e..e+7 of a f16, f32 or q8_0 cache row as 8 halves. */
static __device__ __forceinline__ uint4 pf_load8(const uint8_t *row, uint32_t type, int32_t e) {
    if (type == QT_F16) return *(const uint4 *)(row + (size_t)e * 2);
    float f[8];
    if (type == QT_F32) {
        float4 a = *(const float4 *)(row + (size_t)e * 4), b = *(const float4 *)(row + (size_t)e * 4 + 16);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else { /* q8_0: blocks of 34 bytes (f16 scale, 32 codes), 2-byte aligned */
        const uint8_t *b = row + (size_t)(e >> 5) * 34;
        float d = __half2float(*(const __half *)b);
        const uint16_t *c = (const uint16_t *)(b + 2 + (e & 31));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint16_t w = c[i];
            f[2 * i] = d * (float)(int8_t)(w & 0xff);
            f[2 * i + 1] = d * (float)(int8_t)(w >> 8);
        }
    }
    return make_uint4(pf_pack(f[0], f[1]), pf_pack(f[2], f[3]), pf_pack(f[4], f[5]), pf_pack(f[6], f[7]));
}

/* Any cache type, holes allowed (V cells no row of pass k sees become zeros): plain loads,
 * converted to f16. Off the common path, so kept out of line. */
static __device__ __noinline__ void pf_stage_any(__half *ks, __half *vs, const uint8_t *kb, const uint8_t *vb,
                                                 size_t rb, uint32_t type, int32_t hk, int32_t c0, int32_t lo_s,
                                                 int32_t hi_s, const pf_rows *R, int32_t k, bool holes, int HD) {
    int CPR = HD / 8, LD = HD + 8;
    for (int i = threadIdx.x; i < PF_BK * CPR; i += PF_THREADS) {
        int cr = i / CPR, part = i % CPR;
        int32_t cell = c0 + cr;
        bool ok = cell >= lo_s && cell <= hi_s, vok = ok;
        if (ok && holes) {
            vok = false;
            for (int r = 0; r < PF_BQ && !vok; r++) vok = R->pass[r] == k && cell >= R->lo[r] && cell <= R->pos[r];
        }
        size_t off = (size_t)cell * rb;
        int32_t e = hk * HD + part * 8;
        uint4 z = make_uint4(0, 0, 0, 0);
        *(uint4 *)(ks + cr * LD + part * 8) = ok ? pf_load8(kb + off, type, e) : z;
        *(uint4 *)(vs + cr * LD + part * 8) = vok ? pf_load8(vb + off, type, e) : z;
    }
}

/* ---- one tile of one warp -------------------------------------------------------------- */

/* A warp's view of the 16 rows it computes (per lane g and g + 8) in the current pass: rows
 * of other passes get the empty range [0, -1]. */
typedef struct pf_wrows {
    int32_t pos[2], lo[2];
    bool in[2];
    float m[2], l[2]; /* running max (log2 units) and this lane's part of the sum */
} pf_wrows;

/* Scores of the NJ n-tiles (8 cells each) from n-tile j0 of the tile at c0 for the warp's
 * 16 rows (qa: their q fragments), masked, folded into the online softmax (m, l, o
 * rescaled); leaves P packed as f16 A fragments in pa. */
static __device__ __forceinline__ void pf_scores(const uint32_t qa[8][4], const __half *ks, int32_t c0, int j0,
                                                 bool full, float cap_in, float cap_out, pf_wrows *W, float o[16][4],
                                                 uint32_t pa[4][4], const int HD, const int NJ) {
    const int LD = HD + 8;
    int lane = threadIdx.x & 31, tq = lane & 3, mi = lane >> 3;
    float s[8][4];
#pragma unroll
    for (int j = 0; j < NJ; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
        for (int jp = 0; jp < NJ / 2; jp++) {
            uint32_t b[4];
            gm_ldsm4(b, ks + (8 * j0 + 16 * jp + (mi >> 1) * 8 + (lane & 7)) * LD + 16 * kk + (mi & 1) * 8);
            gm_mma_f16(s[2 * jp], qa[kk], b[0], b[1]);
            gm_mma_f16(s[2 * jp + 1], qa[kk], b[2], b[3]);
        }
    if (cap_in > 0.0f) {
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) s[j][i] = cap_out * tanhf(s[j][i] * cap_in);
    }
    if (!full) {
        int32_t cb = c0 + 8 * j0 + 2 * tq;
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int32_t cell = cb + 8 * j + (i & 1);
                if (cell < W->lo[i >> 1] || cell > W->pos[i >> 1]) s[j][i] = -INFINITY;
            }
    }
    float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) mx[i >> 1] = fmaxf(mx[i >> 1], s[j][i]);
    float al[2], base[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
        mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
        float mn = fmaxf(W->m[rr], mx[rr]);
        base[rr] = mn == -INFINITY ? 0.0f : mn; /* nothing seen yet: weights 0, no NaN */
        al[rr] = exp2f(W->m[rr] - base[rr]);
        W->m[rr] = mn;
    }
    float ls[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float p = exp2f(s[j][i] - base[i >> 1]);
            s[j][i] = p;
            ls[i >> 1] += p;
        }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) W->l[rr] = W->l[rr] * al[rr] + ls[rr];
#pragma unroll
    for (int jd = 0; jd < HD / 8; jd++) {
        o[jd][0] *= al[0], o[jd][1] *= al[0];
        o[jd][2] *= al[1], o[jd][3] *= al[1];
    }
#pragma unroll
    for (int kc = 0; kc < NJ / 2; kc++) {
        pa[kc][0] = pf_pack(s[2 * kc][0], s[2 * kc][1]);
        pa[kc][1] = pf_pack(s[2 * kc][2], s[2 * kc][3]);
        pa[kc][2] = pf_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        pa[kc][3] = pf_pack(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
}

/* o += P V over the NJ n-tiles of cells from n-tile j0 of the tile in vs. */
static __device__ __forceinline__ void pf_pv(const uint32_t pa[4][4], const __half *vs, int j0, float o[16][4],
                                             const int HD, const int NJ) {
    const int LD = HD + 8;
    int lane = threadIdx.x & 31, mi = lane >> 3;
#pragma unroll
    for (int kc = 0; kc < NJ / 2; kc++)
#pragma unroll
        for (int jp = 0; jp < HD / 16; jp++) {
            uint32_t b[4];
            gm_ldsm4t(b, vs + (8 * j0 + 16 * kc + (mi & 1) * 8 + (lane & 7)) * LD + 16 * jp + (mi >> 1) * 8);
            gm_mma_f16(o[2 * jp], pa[kc], b[0], b[1]);
            gm_mma_f16(o[2 * jp + 1], pa[kc], b[2], b[3]);
        }
}

/* ---- the block ------------------------------------------------------------------------- */

/* q fragments of rows t0 + 16 * rw + {g, g + 8} (row group rw), scaled, as f16. */
static __device__ __forceinline__ void pf_load_q(const pf_args *A, int32_t t0, int32_t h, int32_t rw,
                                                 uint32_t qa[8][4], const int HD) {
    int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int32_t t = t0 + 16 * rw + g + 8 * rr;
        const float *qr = A->q + (int64_t)(t < A->n_tok ? t : 0) * A->qs + (int64_t)h * HD;
        float k = t < A->n_tok ? A->qscale : 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            float2 a = *(const float2 *)(qr + 16 * kk + 2 * tq), b = *(const float2 *)(qr + 16 * kk + 2 * tq + 8);
            qa[kk][rr] = pf_pack(a.x * k, a.y * k);
            qa[kk][2 + rr] = pf_pack(b.x * k, b.y * k);
        }
    }
}

/* The rows of group rw in pass k as a warp computes them, and the bounds over them that
 * decide, per tile, whether the warp works at all (wlo, wpos) and whether it needs masks
 * (wall, wlo_max, wpos_min). */
typedef struct pf_wview {
    int32_t wlo, wpos, wlo_max, wpos_min;
    bool wall;
} pf_wview;

static __device__ __forceinline__ pf_wview pf_warp_rows(const pf_rows *R, int32_t k, int32_t rw, pf_wrows *W) {
    int lane = threadIdx.x & 31, g = lane >> 2;
    pf_wview v = { INT_MAX, -1, -1, INT_MAX, true };
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int r = 16 * rw + g + 8 * rr;
        W->in[rr] = R->pass[r] == k;
        W->lo[rr] = W->in[rr] ? R->lo[r] : 0;
        W->pos[rr] = W->in[rr] ? R->pos[r] : -1;
        W->m[rr] = -INFINITY, W->l[rr] = 0.0f;
        if (W->in[rr]) {
            v.wlo = min(v.wlo, W->lo[rr]), v.wpos = max(v.wpos, W->pos[rr]);
            v.wlo_max = max(v.wlo_max, W->lo[rr]), v.wpos_min = min(v.wpos_min, W->pos[rr]);
        } else {
            v.wall = false;
        }
    }
    for (int o2 = 4; o2 < 32; o2 <<= 1) {
        v.wlo = min(v.wlo, __shfl_xor_sync(0xffffffffu, v.wlo, o2));
        v.wpos = max(v.wpos, __shfl_xor_sync(0xffffffffu, v.wpos, o2));
        v.wlo_max = max(v.wlo_max, __shfl_xor_sync(0xffffffffu, v.wlo_max, o2));
        v.wpos_min = min(v.wpos_min, __shfl_xor_sync(0xffffffffu, v.wpos_min, o2));
    }
    v.wall = __all_sync(0xffffffffu, v.wall);
    return v;
}

/* The output rows of a wide pass: each warp writes its own rows of the pass. */
static __device__ __forceinline__ void pf_write_rows(const pf_args *A, const pf_wrows *W, float o[16][4], int32_t t0,
                                                     int32_t h, const int HD) {
    int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3, w = threadIdx.x >> 5;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float l = W->l[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if (!W->in[rr]) continue;
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float *orow = A->out + (int64_t)(t0 + 16 * w + g + 8 * rr) * A->os + (int64_t)h * HD + 2 * tq;
#pragma unroll
        for (int jd = 0; jd < HD / 8; jd++)
            *(float2 *)(orow + 8 * jd) = make_float2(o[jd][2 * rr] * inv, o[jd][2 * rr + 1] * inv);
    }
}

/* The output rows of a narrow pass (all rows in group rw, each warp took a quarter of
 * every tile): the four partial softmax results, put in shared memory (free after the
 * walk), merged. */
static __device__ __forceinline__ void pf_merge_rows(const pf_args *A, const pf_rows *R, int32_t k, int32_t rw,
                                                     const pf_wrows *W, float o[16][4], float *sm, int32_t t0,
                                                     int32_t h, const int HD) {
    int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3, w = threadIdx.x >> 5;
    float *mo = sm, *ml = sm + PF_WARPS * 16 * HD; /* [warp][row][HD], [warp][row][m, l] */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float l = W->l[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        int row = w * 16 + g + 8 * rr;
        if (tq == 0) ml[2 * row] = W->m[rr], ml[2 * row + 1] = l;
#pragma unroll
        for (int jd = 0; jd < HD / 8; jd++)
            *(float2 *)(mo + row * HD + 8 * jd + 2 * tq) = make_float2(o[jd][2 * rr], o[jd][2 * rr + 1]);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 16 * HD; i += PF_THREADS) {
        int row = i / HD, d = i % HD, r = 16 * rw + row;
        if (R->pass[r] != k) continue;
        float mx = -INFINITY, l = 0.0f, acc = 0.0f;
#pragma unroll
        for (int ww = 0; ww < PF_WARPS; ww++) mx = fmaxf(mx, ml[2 * (ww * 16 + row)]);
#pragma unroll
        for (int ww = 0; ww < PF_WARPS; ww++) {
            float m = ml[2 * (ww * 16 + row)], f = m == -INFINITY ? 0.0f : exp2f(m - mx);
            l += f * ml[2 * (ww * 16 + row) + 1];
            acc += f * mo[(ww * 16 + row) * HD + d];
        }
        A->out[(int64_t)(t0 + r) * A->os + (int64_t)h * HD + d] = l > 0.0f ? acc / l : 0.0f;
    }
    __syncthreads(); /* the next pass stages into this memory */
}

/* The walk of one pass over its tiles (see pf_pass), with PF_STAGES tiles in flight;
 * NARROW: the warps split each tile's cells over the rows of group rw. */
static __device__ __forceinline__ void pf_walk(const pf_args *A, const pf_rows *R, __half *sm, int32_t k, bool holes,
                                               int32_t h, int32_t t0, int32_t rw, uint32_t qa[8][4], int32_t *q_of,
                                               pf_wrows *W, float o[16][4], const int HD, const bool NARROW) {
    const int TILE = PF_BK * (HD + 8), CPR = HD / 8; /* halves per staged K (or V) tile */
    int w = threadIdx.x >> 5;
    int32_t hk = h / (A->n_head / A->n_head_kv), lo_s = R->plo[k], hi_s = R->phi[k];
    pf_wview v = pf_warp_rows(R, k, rw, W);
    const uint8_t *kb = A->kc + (size_t)R->pseq[k] * A->n_ctx * A->row_bytes;
    const uint8_t *vb = A->vc + (size_t)R->pseq[k] * A->n_ctx * A->row_bytes;
    bool fast = A->type == QT_F16 && !holes;
    size_t piece = ((size_t)hk * HD + (threadIdx.x % CPR) * 8) * 2; /* this thread's piece (fast path) */
    int32_t cb = lo_s / PF_BK * PF_BK, n_tiles = (hi_s - cb) / PF_BK + 1;
#pragma unroll
    for (int jd = 0; jd < HD / 8; jd++) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
    for (int32_t it = 1 - PF_STAGES; it < n_tiles; it++) {
        int32_t nx = it + PF_STAGES - 1; /* staged now, used PF_STAGES - 1 steps later */
        if (nx < n_tiles) {
            __half *kn = sm + (nx % PF_STAGES) * 2 * TILE;
            int32_t cn = cb + nx * PF_BK;
            if (fast) pf_stage_f16(kn, kn + TILE, kb + piece, vb + piece, A->row_bytes, cn, lo_s, hi_s, HD);
            else pf_stage_any(kn, kn + TILE, kb, vb, A->row_bytes, A->type, hk, cn, lo_s, hi_s, R, k, holes, HD);
        }
        asm volatile("cp.async.commit_group;\n" ::);
        if (it < 0) {
            if (it == 1 - PF_STAGES && *q_of != rw) pf_load_q(A, t0, h, rw, qa, HD); /* while tiles fly */
            *q_of = rw;
            continue;
        }
        asm volatile("cp.async.wait_group %0;\n" ::"n"(PF_STAGES - 1) : "memory");
        __syncthreads();
        const __half *ks = sm + (it % PF_STAGES) * 2 * TILE, *vs = ks + TILE;
        uint32_t pa[4][4];
        if (NARROW) {
            int32_t c0 = cb + it * PF_BK + 16 * w; /* this warp's quarter */
            if (v.wpos >= c0 && v.wlo <= c0 + 15) {
                bool full = v.wall && c0 >= v.wlo_max && c0 + 15 <= v.wpos_min;
                pf_scores(qa, ks, c0 - 16 * w, 2 * w, full, A->cap_in, A->cap_out, W, o, pa, HD, 2);
                pf_pv(pa, vs, 2 * w, o, HD, 2);
            }
        } else {
            int32_t c0 = cb + it * PF_BK;
            if (v.wpos >= c0 && v.wlo <= c0 + PF_BK - 1) { /* the warp sees something here */
                bool full = v.wall && c0 >= v.wlo_max && c0 + PF_BK - 1 <= v.wpos_min;
                pf_scores(qa, ks, c0, 0, full, A->cap_in, A->cap_out, W, o, pa, HD, 8);
                pf_pv(pa, vs, 0, o, HD, 8);
            }
        }
        __syncthreads();
    }
}

/* Pass k of the slice at t0 for head h: walks the cells [plo, phi] of the pass's sequence
 * and writes the output rows of the pass. A wide pass (rows in several row groups): warp w
 * computes the rows of group w over whole tiles. A narrow pass (all rows in one group rw,
 * e.g. one decode token): every warp computes those rows over its quarter of each tile,
 * and the quarters are merged at the end. qa holds the q of row group *q_of (reloaded
 * when another group is needed). */
static __device__ __forceinline__ void pf_pass(const pf_args *A, const pf_rows *R, __half *sm, int32_t k,
                                               bool holes, int32_t h, int32_t t0, uint32_t qa[8][4], int32_t *q_of,
                                               const int HD) {
    pf_wrows W;
    float o[16][4];
    int32_t rw = R->pw[k];
    if (rw >= 0) {
        pf_walk(A, R, sm, k, holes, h, t0, rw, qa, q_of, &W, o, HD, true);
        pf_merge_rows(A, R, k, rw, &W, o, (float *)sm, t0, h, HD);
    } else {
        pf_walk(A, R, sm, k, holes, h, t0, (int32_t)(threadIdx.x >> 5), qa, q_of, &W, o, HD, false);
        pf_write_rows(A, &W, o, t0, h, HD);
    }
}

/* Block (y, slice, head): passes y, y + ny, ... of the slice; block y == 0 also zeroes the
 * output of rows that belong to no pass (invalid sequence or position). Slices of later
 * rows (the longest under a causal mask) come first. */
static __device__ __forceinline__ void pf_block(pf_args A, const int HD) {
    extern __shared__ __align__(16) __half pf_sm[];
    __shared__ pf_rows R;
    cu_pdl_wait(); /* launched early (CU_LAUNCH): q, pos, seq and the cache come from earlier work */
    cu_pdl_trigger();
    int32_t nb = A.n_qt * A.n_head, y = (int32_t)blockIdx.x / nb, b = (int32_t)blockIdx.x % nb;
    int32_t h = b % A.n_head, t0 = (A.n_qt - 1 - b / A.n_head) * PF_BQ;
    bool simple = pf_rows_load(&A, &R, t0);
    uint32_t qa[8][4];
    int32_t q_of = -1; /* the row group qa holds */
    for (int32_t k = y; k < R.n_pass; k += A.ny)
        pf_pass(&A, &R, pf_sm, k, A.window > 0 && !simple, h, t0, qa, &q_of, HD);
    if (y != 0) return;
    for (int i = threadIdx.x; i < PF_BQ * HD; i += PF_THREADS) {
        int r = i / HD;
        if (R.seq[r] < 0 && t0 + r < A.n_tok) A.out[(int64_t)(t0 + r) * A.os + (int64_t)h * HD + i % HD] = 0.0f;
    }
}

static __global__ void __launch_bounds__(PF_THREADS) pf_attn_64(pf_args A) {
    pf_block(A, 64);
}

static __global__ void __launch_bounds__(PF_THREADS) pf_attn_128(pf_args A) {
    pf_block(A, 128);
}

/* ---- host side ------------------------------------------------------------------------- */

/* Smallest batch for the kernel: PF_MIN_TOK, HEARTH_CUDA_PFATTN_MIN (9..4096, for
 * measuring the crossover), or INT32_MAX with HEARTH_CUDA_PFATTN=0. */
static int32_t pf_min_tok(const cuda_ctx *c) {
    return c->knobs.pfattn_min ? c->knobs.pfattn_min : PF_MIN_TOK;
}

bool cu_attn_pf_use(const cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, const float *out, int64_t os) {
    const cuda_kv *kv = a->kv;
    int32_t hd = a->head_dim_k;
    if (a->n_tok < pf_min_tok(c)) return false;
    if (hd != a->head_dim_v || (hd != 64 && hd != 128) || a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return false;
    if ((int64_t)a->n_head_kv * hd > kv->kv_dim || kv->n_ctx <= 0 || kv->n_ctx > INT_MAX / 2) return false;
    if ((qs | os) & 1 || ((uintptr_t)q | (uintptr_t)out) & 7) return false;
    uintptr_t ptrs = (uintptr_t)kv->k | (uintptr_t)kv->v;
    if (kv->type == QT_F16 || kv->type == QT_F32) return kv->row_bytes % 16 == 0 && ptrs % 16 == 0;
    if (kv->type == QT_Q8_0) return kv->row_bytes % 2 == 0 && ptrs % 2 == 0;
    return false;
}

int cu_attn_pf(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
               hb_err *err) {
    int32_t hd = a->head_dim_k, n_qt = (a->n_tok + PF_BQ - 1) / PF_BQ;
    /* blocks per (slice, head) for slices of several sequences (a small batch may be decode
     * tokens of many sequences, one pass each): up to ~PF_Y_BLOCKS blocks in all. Measured
     * (H200, 32 sequences x 1 token at ~1200 cells): 67 us with 768, 89 us with 256; the
     * blocks without a pass cost ~1 us at 16-32 tokens. Large batches: one. */
    int64_t base = (int64_t)n_qt * a->n_head, ny = base >= 128 ? 1 : PF_Y_BLOCKS / base;
    if (ny > PF_BQ) ny = PF_BQ;
    bool cap = a->softcap > 0.0f;
    pf_args A = { (const uint8_t *)a->kv->k, (const uint8_t *)a->kv->v, a->kv->type, a->kv->row_bytes,
                  (int32_t)a->kv->n_ctx, a->pos, a->seq, a->n_tok, a->n_head, a->n_head_kv, a->window, n_qt,
                  (int32_t)ny, cap ? a->scale : a->scale * PF_LOG2E, cap ? 1.0f / a->softcap : 0.0f,
                  cap ? a->softcap * PF_LOG2E : 0.0f, q, qs, out, os };
    size_t smem = (size_t)PF_STAGES * 2 * PF_BK * (hd + 8) * sizeof(__half); /* K and V per stage */
    void (*kern)(pf_args) = hd == 64 ? pf_attn_64 : pf_attn_128;
    int rc = cu_smem_allow(c, (const void *)kern, smem, err);
    if (rc) return rc;
    CU_LAUNCH(err, "launching prefill attention", kern, (unsigned)(base * ny), PF_THREADS, smem, c, A);
    rc = cu_check_launch(err, "prefill attention");
    if (rc || !quant) return rc;
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xsum = NULL;
    return cu_act_quantize(c, out, a->n_tok, os, 0, &xq, &xd, &xsum, err);
}
