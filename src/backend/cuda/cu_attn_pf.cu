/* cu_attn_pf.cu — attention for prefill-sized batches on the tensor cores (flash attention).
 *
 * A block of 4 warps takes 64 consecutive batch rows (tokens) of one query head; each warp
 * owns 16 of them. The block walks the cache cells in tiles of 64, staged in shared memory
 * (double-buffered: the next tile is copied while this one is used). f16 cache rows are
 * copied as they are (cp.async); f32 and q8_0 rows are converted to f16 while staged. Per
 * tile a warp computes S = Q K^T (mma.sync m16n8k16, f16 inputs, f32 accumulation; q is
 * multiplied by the scale before it is rounded to f16, so large scores do not overflow),
 * applies the softcap, its rows' masks and an online softmax in f32 (base-2 exponentials),
 * and accumulates O += P V with P rounded to f16.
 *
 * Masks are per row: row r (sequence seq[r], position pos[r]) sees cells [lo[r], pos[r]] of
 * its own sequence, as cuda_attention documents. Rows of several sequences in one block
 * are served by one pass over the cells per distinct sequence (rows of other sequences are
 * fully masked in that pass); positions need not be consecutive. Tiles start at multiples
 * of 64 cells, and a tile that a row cannot see leaves its sums exactly unchanged (its
 * softmax factor is exp2(0) = 1 and its weights are 0), so a row's result does not depend
 * on the other rows of its batch. Cells outside the pass's range are staged as zeros, and
 * with a sliding window over non-consecutive rows, V cells no row of the block sees are
 * too, so that never-written cache memory cannot turn 0 * V into NaN.
 *
 * head_dim 64 and 128 have a kernel each (the dimension is a compile-time constant in the
 * shared body, so the fragment arrays are sized by it).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cu_attn_pf.cuh"

#define PF_BQ 64  /* query rows per block */
#define PF_BK 64  /* cache cells per tile */
#define PF_WARPS 4
#define PF_THREADS (PF_WARPS * 32)
#define PF_LOG2E 1.4426950408889634f

typedef struct pf_args {
    const uint8_t *kc, *vc; /* cache base (device) */
    uint32_t type;          /* QT_F16, QT_F32 or QT_Q8_0 */
    size_t row_bytes;
    int64_t n_ctx;
    const int32_t *pos, *seq; /* [n_tok] */
    int32_t n_tok, n_head, n_head_kv, window, n_qt;
    float scale, softcap;
    const float *q; /* [n_tok][qs], head h at h * hd */
    int64_t qs;
    float *out; /* [n_tok][os] */
    int64_t os;
} pf_args;

/* The block's rows as the masks need them, and the state of the per-sequence passes. */
typedef struct pf_rows {
    int32_t pos[PF_BQ], lo[PF_BQ], seq[PF_BQ]; /* seq -1: no row (past n_tok or invalid) */
    int32_t next, lo_s, hi_s;                  /* pass: its sequence, its cell range */
} pf_rows;

/* ---- PTX helpers ----------------------------------------------------------------------- */

/* 16-byte global -> shared copy; zero-fills when !valid (the source is then not read). */
static __device__ __forceinline__ void pf_cp16(void *smem, const void *gmem, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void pf_ldm4(uint32_t r[4], const __half *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void pf_ldm4t(uint32_t r[4], const __half *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* d += a (16x16, row-major) * b (16x8, column-major), f16 in, f32 accumulate. */
static __device__ __forceinline__ void pf_mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pf_pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* ---- staging --------------------------------------------------------------------------- */

/* Elements e..e+7 of a f32 or q8_0 cache row as 8 halves. */
static __device__ __forceinline__ uint4 pf_load8(const uint8_t *row, uint32_t type, int64_t e) {
    float f[8];
    if (type == QT_F32) {
        float4 a = *(const float4 *)(row + e * 4), b = *(const float4 *)(row + e * 4 + 16);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else { /* q8_0: blocks of 34 bytes (f16 scale, 32 codes), 2-byte aligned */
        const uint8_t *b = row + (e >> 5) * 34;
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

/* Whether some row of the block in sequence s sees cell c (sliding window over
 * non-consecutive rows only). */
static __device__ bool pf_seen(const pf_rows *R, int32_t s, int64_t c) {
    for (int r = 0; r < PF_BQ; r++)
        if (R->seq[r] == s && c >= R->lo[r] && c <= R->pos[r]) return true;
    return false;
}

/* Stages cells [c0, c0 + PF_BK) of kv head hk into ks / vs ([PF_BK][HD + 8] halves each):
 * cells outside [lo_s, hi_s] (and, with holes, V cells no row sees) become zeros. */
static __device__ __forceinline__ void pf_stage(const pf_args *A, __half *ks, __half *vs, const uint8_t *kb,
                                                const uint8_t *vb, int32_t hk, int64_t c0, int32_t lo_s,
                                                int32_t hi_s, const pf_rows *R, int32_t s, bool holes,
                                                const int HD) {
    const int CPR = HD / 8, LD = HD + 8;
#pragma unroll 4
    for (int i = threadIdx.x; i < PF_BK * CPR; i += PF_THREADS) {
        int cr = i / CPR, part = i % CPR;
        int64_t cell = c0 + cr;
        bool ok = cell >= lo_s && cell <= hi_s;
        bool vok = ok && (!holes || pf_seen(R, s, cell));
        size_t roff = (size_t)(ok ? cell : lo_s) * A->row_bytes; /* a valid address either way */
        int64_t e = (int64_t)hk * HD + part * 8;
        __half *kd = ks + cr * LD + part * 8, *vd = vs + cr * LD + part * 8;
        if (A->type == QT_F16) {
            pf_cp16(kd, kb + roff + e * 2, ok);
            pf_cp16(vd, vb + roff + e * 2, vok);
        } else {
            uint4 z = make_uint4(0, 0, 0, 0);
            *(uint4 *)kd = ok ? pf_load8(kb + roff, A->type, e) : z;
            *(uint4 *)vd = vok ? pf_load8(vb + roff, A->type, e) : z;
        }
    }
}

/* ---- one tile of one warp -------------------------------------------------------------- */

/* A warp's view of its two rows per lane (g and g + 8 of its 16) in the current pass. */
typedef struct pf_wrows {
    int32_t pos[2], lo[2];
    bool in[2];
    float m[2], l[2]; /* running max (log2 units) and this lane's part of the sum */
} pf_wrows;

/* Scores of tile c0 for the warp's 16 rows (qa: the warp's q fragments), masked, folded
 * into the online softmax (m, l, o rescaled); leaves P packed as f16 A fragments in pa. */
static __device__ __forceinline__ void pf_scores(const uint32_t qa[8][4], const __half *ks, int64_t c0, bool full,
                                                 float softcap, pf_wrows *W, float o[16][4], uint32_t pa[4][4],
                                                 const int HD) {
    const int LD = HD + 8;
    int lane = threadIdx.x & 31, tq = lane & 3, mi = lane >> 3;
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            uint32_t b[4];
            pf_ldm4(b, ks + (16 * jp + (mi >> 1) * 8 + (lane & 7)) * LD + 16 * kk + (mi & 1) * 8);
            pf_mma(s[2 * jp], qa[kk], b[0], b[1]);
            pf_mma(s[2 * jp + 1], qa[kk], b[2], b[3]);
        }
    float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float v = s[j][i];
            if (softcap > 0.0f) v = softcap * tanhf(v / softcap);
            v *= PF_LOG2E;
            int rr = i >> 1;
            if (!full) {
                int64_t cell = c0 + 8 * j + 2 * tq + (i & 1);
                if (!(W->in[rr] && cell >= W->lo[rr] && cell <= W->pos[rr])) v = -INFINITY;
            }
            s[j][i] = v;
            mx[rr] = fmaxf(mx[rr], v);
        }
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
    for (int j = 0; j < 8; j++)
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
    for (int kc = 0; kc < 4; kc++) {
        pa[kc][0] = pf_pack(s[2 * kc][0], s[2 * kc][1]);
        pa[kc][1] = pf_pack(s[2 * kc][2], s[2 * kc][3]);
        pa[kc][2] = pf_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        pa[kc][3] = pf_pack(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
}

/* o += P V for the tile in vs. */
static __device__ __forceinline__ void pf_pv(const uint32_t pa[4][4], const __half *vs, float o[16][4],
                                             const int HD) {
    const int LD = HD + 8;
    int lane = threadIdx.x & 31, mi = lane >> 3;
#pragma unroll
    for (int kc = 0; kc < 4; kc++)
#pragma unroll
        for (int jp = 0; jp < HD / 16; jp++) {
            uint32_t b[4];
            pf_ldm4t(b, vs + (16 * kc + (mi & 1) * 8 + (lane & 7)) * LD + 16 * jp + (mi >> 1) * 8);
            pf_mma(o[2 * jp], pa[kc], b[0], b[1]);
            pf_mma(o[2 * jp + 1], pa[kc], b[2], b[3]);
        }
}

/* ---- the block ------------------------------------------------------------------------- */

/* Fills R with the block's rows (threads < PF_BQ, one row each). Rows past n_tok, with a
 * negative sequence or a position outside the cache get seq -1 (they see nothing and
 * their output is 0). Returns whether the rows are one sequence at consecutive positions. */
static __device__ bool pf_rows_load(const pf_args *A, pf_rows *R, int64_t t0) {
    int r = threadIdx.x;
    bool simple = true;
    if (r < PF_BQ) {
        int64_t t = t0 + r;
        int32_t p = -1, s = -1, lo = 0;
        if (t < A->n_tok) {
            p = A->pos[t], s = A->seq[t];
            if (s < 0 || p < 0 || p >= A->n_ctx) s = -1, p = -1;
            lo = A->window > 0 && p - A->window + 1 > 0 ? p - A->window + 1 : 0;
        }
        R->pos[r] = p, R->seq[r] = s, R->lo[r] = lo;
        int32_t p0 = t0 < A->n_tok ? A->pos[t0] : -1, s0 = t0 < A->n_tok ? A->seq[t0] : -1;
        simple = s >= 0 && s == s0 && p == p0 + r;
    }
    return __syncthreads_and(simple);
}

/* The warp's q fragments (rows t0 + 16 * warp + {g, g + 8}), scaled, as f16. */
static __device__ __forceinline__ void pf_load_q(const pf_args *A, int64_t t0, int32_t h, uint32_t qa[8][4],
                                                 const int HD) {
    int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3, w = threadIdx.x >> 5;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int64_t t = t0 + 16 * w + g + 8 * rr;
        const float *qr = A->q + (t < A->n_tok ? t : 0) * A->qs + (int64_t)h * HD;
        float k = t < A->n_tok ? A->scale : 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            float2 a = *(const float2 *)(qr + 16 * kk + 2 * tq), b = *(const float2 *)(qr + 16 * kk + 2 * tq + 8);
            qa[kk][rr] = pf_pack(a.x * k, a.y * k);
            qa[kk][2 + rr] = pf_pack(b.x * k, b.y * k);
        }
    }
}

/* One pass over the cells [lo_s, hi_s] of sequence s for the rows of the block in s. */
static __device__ __forceinline__ void pf_pass(const pf_args *A, pf_rows *R, __half *sm, int32_t s, int32_t lo_s,
                                               int32_t hi_s, bool holes, int32_t hk, const uint32_t qa[8][4],
                                               pf_wrows *W, float o[16][4], const int HD) {
    const int TILE = PF_BK * (HD + 8); /* halves per staged K (or V) tile */
    int lane = threadIdx.x & 31, g = lane >> 2, w = threadIdx.x >> 5;
    int32_t wlo = INT_MAX, wpos = -1, wlo_max = -1, wpos_min = INT_MAX;
    bool wall = true;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int r = 16 * w + g + 8 * rr;
        W->pos[rr] = R->pos[r], W->lo[rr] = R->lo[r], W->in[rr] = R->seq[r] == s;
        if (W->in[rr]) {
            wlo = min(wlo, W->lo[rr]), wpos = max(wpos, W->pos[rr]);
            wlo_max = max(wlo_max, W->lo[rr]), wpos_min = min(wpos_min, W->pos[rr]);
        } else {
            wall = false;
        }
    }
    for (int o2 = 4; o2 < 32; o2 <<= 1) {
        wlo = min(wlo, __shfl_xor_sync(0xffffffffu, wlo, o2));
        wpos = max(wpos, __shfl_xor_sync(0xffffffffu, wpos, o2));
        wlo_max = max(wlo_max, __shfl_xor_sync(0xffffffffu, wlo_max, o2));
        wpos_min = min(wpos_min, __shfl_xor_sync(0xffffffffu, wpos_min, o2));
    }
    wall = __all_sync(0xffffffffu, wall);
    const uint8_t *kb = A->kc + (size_t)s * A->n_ctx * A->row_bytes;
    const uint8_t *vb = A->vc + (size_t)s * A->n_ctx * A->row_bytes;
    int64_t cb = (int64_t)(lo_s / PF_BK) * PF_BK;
    int32_t n_tiles = (int32_t)((hi_s - cb) / PF_BK + 1);
    pf_stage(A, sm, sm + TILE, kb, vb, hk, cb, lo_s, hi_s, R, s, holes, HD);
    asm volatile("cp.async.commit_group;\n" ::);
    for (int32_t it = 0; it < n_tiles; it++) {
        int64_t c0 = cb + (int64_t)it * PF_BK;
        __half *ks = sm + (it & 1) * 2 * TILE, *vs = ks + TILE;
        if (it + 1 < n_tiles) {
            __half *kn = sm + ((it + 1) & 1) * 2 * TILE;
            pf_stage(A, kn, kn + TILE, kb, vb, hk, c0 + PF_BK, lo_s, hi_s, R, s, holes, HD);
        }
        asm volatile("cp.async.commit_group;\n" ::);
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        __syncthreads();
        if (wpos >= c0 && wlo <= c0 + PF_BK - 1) { /* the warp sees something here */
            bool full = wall && c0 >= wlo_max && c0 + PF_BK - 1 <= wpos_min;
            uint32_t pa[4][4];
            pf_scores(qa, ks, c0, full, A->softcap, W, o, pa, HD);
            pf_pv(pa, vs, o, HD);
        }
        __syncthreads();
    }
}

/* Finds the next sequence (the smallest above prev) among the block's rows and its cell
 * range; false when none is left. */
static __device__ bool pf_next_seq(pf_rows *R, int32_t prev, int32_t *s, int32_t *lo_s, int32_t *hi_s) {
    int r = threadIdx.x;
    if (r == 0) R->next = INT_MAX, R->lo_s = INT_MAX, R->hi_s = -1;
    __syncthreads();
    if (r < PF_BQ && R->seq[r] > prev) atomicMin(&R->next, R->seq[r]);
    __syncthreads();
    *s = R->next;
    if (*s == INT_MAX) return false;
    if (r < PF_BQ && R->seq[r] == *s) atomicMin(&R->lo_s, R->lo[r]), atomicMax(&R->hi_s, R->pos[r]);
    __syncthreads();
    *lo_s = R->lo_s, *hi_s = R->hi_s;
    __syncthreads(); /* everyone has read the pass's values before they are reset */
    return true;
}

static __device__ __forceinline__ void pf_block(pf_args A, const int HD) {
    extern __shared__ __align__(16) __half pf_sm[];
    __shared__ pf_rows R;
    cu_pdl_wait(); /* launched early (CU_LAUNCH): q, pos and seq come from earlier work */
    cu_pdl_trigger();
    int32_t h = (int32_t)(blockIdx.x % A.n_head);
    int64_t t0 = (int64_t)(A.n_qt - 1 - (int32_t)(blockIdx.x / A.n_head)) * PF_BQ; /* long rows first */
    int32_t hk = h / (A.n_head / A.n_head_kv);
    bool simple = pf_rows_load(&A, &R, t0);
    uint32_t qa[8][4];
    pf_load_q(&A, t0, h, qa, HD);
    float o[16][4];
#pragma unroll
    for (int jd = 0; jd < HD / 8; jd++) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
    pf_wrows W;
    W.m[0] = W.m[1] = -INFINITY, W.l[0] = W.l[1] = 0.0f;
    int32_t s, lo_s, hi_s;
    for (int32_t prev = -1; pf_next_seq(&R, prev, &s, &lo_s, &hi_s); prev = s)
        pf_pass(&A, &R, pf_sm, s, lo_s, hi_s, A.window > 0 && !simple, hk, qa, &W, o, HD);
    int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3, w = threadIdx.x >> 5;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float l = W.l[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        int64_t t = t0 + 16 * w + g + 8 * rr;
        if (t >= A.n_tok) continue;
        float *orow = A.out + t * A.os + (int64_t)h * HD + 2 * tq;
#pragma unroll
        for (int jd = 0; jd < HD / 8; jd++)
            *(float2 *)(orow + 8 * jd) = make_float2(o[jd][2 * rr] * inv, o[jd][2 * rr + 1] * inv);
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
 * measuring the crossover), or INT_MAX with HEARTH_CUDA_PFATTN=0 (read once). */
static int32_t pf_min_tok(void) {
    static int32_t n = 0;
    if (!n) {
        const char *s = getenv("HEARTH_CUDA_PFATTN"), *m = getenv("HEARTH_CUDA_PFATTN_MIN");
        int v = m ? atoi(m) : 0;
        n = s && *s == '0' ? INT_MAX : (v > 8 && v <= 4096 ? v : PF_MIN_TOK);
    }
    return n;
}

bool cu_attn_pf_use(const cuda_attn *a, const float *q, int64_t qs, const float *out, int64_t os) {
    const cuda_kv *kv = a->kv;
    int32_t hd = a->head_dim_k;
    if (a->n_tok < pf_min_tok()) return false;
    if (hd != a->head_dim_v || (hd != 64 && hd != 128) || a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return false;
    if ((int64_t)a->n_head_kv * hd > kv->kv_dim || kv->n_ctx <= 0 || kv->n_ctx > INT_MAX) return false;
    if ((qs | os) & 1 || ((uintptr_t)q | (uintptr_t)out) & 7) return false;
    uintptr_t ptrs = (uintptr_t)kv->k | (uintptr_t)kv->v;
    if (kv->type == QT_F16 || kv->type == QT_F32) return kv->row_bytes % 16 == 0 && ptrs % 16 == 0;
    if (kv->type == QT_Q8_0) return kv->row_bytes % 2 == 0 && ptrs % 2 == 0;
    return false;
}

int cu_attn_pf(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os, bool quant,
               hb_err *err) {
    int32_t hd = a->head_dim_k, n_qt = (a->n_tok + PF_BQ - 1) / PF_BQ;
    pf_args A = { (const uint8_t *)a->kv->k, (const uint8_t *)a->kv->v, a->kv->type, a->kv->row_bytes,
                  a->kv->n_ctx, a->pos, a->seq, a->n_tok, a->n_head, a->n_head_kv, a->window, n_qt, a->scale,
                  a->softcap, q, qs, out, os };
    size_t smem = (size_t)2 * 2 * PF_BK * (hd + 8) * sizeof(__half); /* K and V, double-buffered */
    void (*kern)(pf_args) = hd == 64 ? pf_attn_64 : pf_attn_128;
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return cu_fail(err, e, "raising the prefill attention kernel's shared memory");
    }
    CU_LAUNCH(err, "launching prefill attention", kern, (unsigned)((int64_t)n_qt * a->n_head), PF_THREADS, smem,
              c->stream, A);
    int rc = cu_check_launch(err, "prefill attention");
    if (rc || !quant) return rc;
    int8_t *xq = NULL;
    float *xd = NULL;
    int2 *xsum = NULL;
    return cu_act_quantize(c, out, a->n_tok, os, 0, &xq, &xd, &xsum, err);
}
