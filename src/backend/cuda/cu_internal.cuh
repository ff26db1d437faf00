/* cu_internal.cuh — shared by the CUDA backend's .cu files: the context struct, error
 * plumbing, scratch growth and small device helpers (f16/bf16 loads, warp reductions).
 * CUDA C only: no classes, no templates of our own. */
#ifndef HEARTH_CU_INTERNAL_CUH
#define HEARTH_CU_INTERNAL_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"

#define CU_FATTR_MAX 256 /* kernels whose attributes a context records (cuda_ctx.fattr) */

/* What a context set on one kernel: dynamic shared bytes allowed (0: the default 48 KB),
 * the carveout preference. */
typedef struct cu_fattr_rec {
    const void *fn;
    int smem;
    bool carved;
    int occ_thr, occ_smem, occ; /* cu_occupancy's last answer and its question */
} cu_fattr_rec;

/* A growable device scratch area. */
typedef struct cu_scratch {
    void *p;
    size_t cap;
} cu_scratch;

/* A pinned host buffer and its device twin for small per-call arrays (positions, ids). */
typedef struct cu_stage {
    void *host;
    cu_scratch dev;
    size_t cap;
    cudaEvent_t ev;      /* recorded after the last copy out of `host` */
} cu_stage;

struct cuda_ctx {
    cuda_dev_info info;
    cudaStream_t stream;
    cu_scratch act;      /* quantized activations (int8 codes + scales + sums) */
    cu_scratch act2;     /* a second one: written by a kernel while others still read act (cu_qkva.cu) */
    cu_scratch f16a;     /* f16 activations for the tensor-core path */
    cu_scratch f16w;     /* f16 dequantized weight for the tensor-core path */
    cu_scratch ids;      /* row ids uploaded for a call */
    cu_scratch attn;     /* attention partial results */
    cu_scratch attn_cnt; /* attention: finished splits per (token, kv head, group), kept at 0 between steps */
    cu_stage stage[CUDA_STAGE_SLOTS];
    uint64_t gen;        /* bumped when any scratch moves (graphs then go stale) */
    cuda_knobs knobs;    /* switches, read from the environment at creation */
    size_t mem_base;     /* device memory the runtime held when c was created (knobs.mem_limit counts beyond it) */
    cu_fattr_rec fattr[CU_FATTR_MAX]; /* kernel attributes set (cu_smem_allow, cu_carve) and occupancy (cu_occupancy) */
    int n_fattr;
    uint64_t n_mvq_fused, n_qkvr; /* fused prologue/gate-up and q/k/v + RoPE launches (testing aids) */
    uint64_t n_mvf_ps;            /* persistent one-token float product launches (testing aid) */
    uint64_t n_mvf_pb;            /* persistent batch float product launches (testing aid) */
    uint64_t n_mvt;               /* persistent batch quantized product launches (testing aid) */
    uint64_t n_mmt;               /* int8 tensor-core batch product launches (cu_mmt.cu; testing aid) */
    cudaEvent_t prof_ev[CUDA_PROF_EVENTS]; /* cuda_prof_mark's events (NULL until used) */
};

/* Turns a CUDA error into a hearth status with a message naming `what`. */
int cu_fail(hb_err *err, cudaError_t e, const char *what);
/* Makes c's device current for the calling thread. */
int cu_enter(cuda_ctx *c, hb_err *err);
/* Grows s to at least `bytes` (contents are not kept); bumps c->gen when it moves. */
#define cu_scratch_reserve(s, bytes, err) cu_scratch_grow(c, (s), (bytes), (err))
int cu_scratch_grow(cuda_ctx *c, cu_scratch *s, size_t bytes, hb_err *err);
void cu_scratch_release(cu_scratch *s);
/* Prefers the largest shared-memory carveout for kernel fn (cu_matmul.cu; decode products).
 * A function attribute is process-wide; c records which kernels it has set (c->fattr) so
 * that each is set once per context. */
void cu_carve(cuda_ctx *c, const void *fn);
/* Allows kernel fn `bytes` of dynamic shared memory (static + dynamic shared memory must
 * stay within 48 KB without the attribute): checked once per kernel and size (recorded in
 * c->fattr); the attribute is only ever raised. */
int cu_smem_allow(cuda_ctx *c, const void *fn, size_t bytes, hb_err *err);
/* Blocks of kernel fn (thr threads, smem dynamic bytes) that fit on one SM, remembered per
 * context and kernel (the query costs microseconds and eager steps launch per product);
 * 0 when the runtime cannot say. */
int cu_occupancy(cuda_ctx *c, const void *fn, int thr, size_t smem);
/* Checks the last launch. */
int cu_check_launch(hb_err *err, const char *what);
/* cu_mmt.cu: y_i[t][r] (+= into add_to[i] when given) for 2..8 tokens of up to three Q4_0,
 * Q8_0 or Q4_K weights w[0..nw) of one row size (row_bytes, a multiple of 16; nch <= 192 chunks, a
 * multiple of 8)
 * over quantized activations xq/xd/xs (cu_act_quantize), on the int8 tensor cores with the
 * single-token kernels' bits. *done = 1 when it was queued, 0 when the switch
 * (HEARTH_CUDA_MMT), the type or the shape does not allow it (nothing queued). Borrows
 * every pointer. */
int cu_mmt_matvec(cuda_ctx *c, uint32_t type, int nw, const uint8_t *const *w, const int64_t *n_rows,
                  size_t row_bytes, float *const *y, const int64_t *ldy, float *const *add_to, int nch,
                  const int8_t *xq, const float *xd, const int2 *xs, int64_t n_tok, int *done, hb_err *err);

/* ---- device helpers -------------------------------------------------------------------- */
static __device__ __forceinline__ float cu_f16(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

static __device__ __forceinline__ float cu_bf16(uint16_t h) {
    return __uint_as_float((uint32_t)h << 16);
}

static __device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* One level of ps_tsum: lanes with bit M keep the upper N / 2 values and send the lower,
 * the others the opposite, then the next level on the N / 2 sums (compile-time N and M, so
 * v stays in registers). */
template <int N, int M>
struct ps_tlevel {
    static __device__ __forceinline__ void run(float *v, int lane) {
        bool hi = lane & M;
#pragma unroll
        for (int i = 0; i < N / 2; i++) {
            float keep = hi ? v[N / 2 + i] : v[i], send = hi ? v[i] : v[N / 2 + i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, M);
        }
        ps_tlevel<N / 2, M / 2>::run(v, lane);
    }
};
template <int M>
struct ps_tlevel<1, M> { /* one value left: the plain butterfly for the remaining masks */
    static __device__ __forceinline__ void run(float *v, int) {
#pragma unroll
        for (int m = M; m >= 1; m >>= 1) v[0] += __shfl_xor_sync(0xffffffffu, v[0], m);
    }
};
template <>
struct ps_tlevel<1, 0> {
    static __device__ __forceinline__ void run(float *, int) {}
};

/* The sums over the warp of v[0..V) (V a power of two, <= 32; v is overwritten), the values
 * split between the lanes level by level (masks 16, 8, 4, 2, 1): lane l returns value
 * l >> (5 - log2 V). */
template <int V>
static __device__ __forceinline__ float ps_tsum(float *v, int lane) {
    ps_tlevel<V, 16>::run(v, lane);
    return v[0];
}

static __device__ __forceinline__ int cu_warp_isum(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- programmatic dependent launch (sm_90) ----------------------------------------------
 * The decode-step kernels are launched with the programmatic-stream-serialization
 * attribute (CU_LAUNCH): a kernel may then be scheduled while the one before it still runs.
 * Each such kernel calls cu_pdl_wait() before it touches memory that earlier work writes
 * or reads (it returns once the previous grid has finished and its writes are visible),
 * then cu_pdl_trigger() to let the next kernel be scheduled early in turn. Both are no-ops
 * for kernels launched without the attribute. HEARTH_CUDA_PDL=0 turns the attribute off. */
#ifndef HEARTH_CUDA_TRACE
static __device__ __forceinline__ void cu_pdl_wait(void) {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
}
#define CU_TR_ENTRY() (void)0
#define CU_TR_MARK(k) (void)0
#define CU_TR_FLUSH() (void)0
#define CU_TR_ARG
#define cu_pdl_wait_e() cu_pdl_wait()
#else
/* Diagnostics build (make CUDA=1 CUDA_TRACE=1, docs/cuda.md "Tracing a decode step"): every
 * cu_pdl_wait records, per launched grid, the first/last time a block reached it and the
 * first/last time the wait returned (%globaltimer, ns), keyed by %gridid in a table per .cu
 * file; cu_device.cu dumps the tables of one graph replay. Not for production builds. */
#define CU_TR_SLOTS 1024
typedef struct cu_tr_rec {
    unsigned long long gid, ne_min, e_max, nw_min, w_max, line_dim; /* ne/nw: bit-inverted minima */
    unsigned long long mk[8];                                       /* block 0's CU_TR_MARK times */
    unsigned long long end_max; /* latest CU_TR_FLUSH of any block of the grid whose home slot this is */
} cu_tr_rec;
static __device__ cu_tr_rec cu_tr_tab[CU_TR_SLOTS];
static __device__ __forceinline__ unsigned long long cu_gtime(void) {
    unsigned long long t; /* "memory": the marks stay between the loads and stores around them */
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");
    return t;
}
/* The home slot of grid id gid's record (the dump in cu_device.cu finds end_max there). */
static __host__ __device__ inline unsigned cu_tr_slot(unsigned long long gid) {
    return (unsigned)((gid * 0x9E3779B97F4A7C15ull) >> 40) % CU_TR_SLOTS;
}
/* This grid's id (+1, so that 0 marks a free slot) in *gidp, and its home slot. */
static __device__ __forceinline__ unsigned cu_tr_home(unsigned long long *gidp) {
    unsigned long long gid;
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(gid));
    gid += 1;
    *gidp = gid;
    return cu_tr_slot(gid);
}
static __device__ __forceinline__ cu_tr_rec *cu_tr_put(unsigned long long t0, unsigned long long t1, int line) {
    unsigned long long gid;
    unsigned h = cu_tr_home(&gid);
    for (int i = 0; i < CU_TR_SLOTS; i++) {
        cu_tr_rec *r = &cu_tr_tab[(h + i) % CU_TR_SLOTS];
        unsigned long long k = atomicCAS(&r->gid, 0ull, gid);
        if (k != 0ull && k != gid) continue;
        atomicMax(&r->ne_min, ~t0), atomicMax(&r->e_max, t0);
        atomicMax(&r->nw_min, ~t1), atomicMax(&r->w_max, t1);
        if (k == 0ull)
            r->line_dim = (unsigned long long)line | ((unsigned long long)(gridDim.x * gridDim.y) << 16) |
                          ((unsigned long long)(blockDim.x * blockDim.y) << 48);
        return r;
    }
    return NULL;
}
static __device__ __forceinline__ void cu_pdl_wait_tr(int line) {
    unsigned long long t0 = cu_gtime();
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    unsigned long long t1 = cu_gtime();
    unsigned b = blockIdx.x + gridDim.x * blockIdx.y, nb = gridDim.x * gridDim.y;
    if (threadIdx.x == 0 && threadIdx.y == 0 && (b == 0 || b == nb - 1)) cu_tr_put(t0, t1, line); /* first, last */
}
#define cu_pdl_wait() cu_pdl_wait_tr(__LINE__)
/* Kernels that call CU_TR_ENTRY() at their start record that time as "arrival" instead, and
 * may mark phases of block 0 (CU_TR_MARK(k), k < 8), stored at the end by CU_TR_FLUSH(). */
static __device__ __forceinline__ unsigned long long cu_pdl_wait_tre(void) {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    return cu_gtime();
}
#define CU_TR_ENTRY()                                                                                     \
    unsigned long long cu_tr_te_ = cu_gtime(), cu_tr_tw_ = 0, cu_tr_mk_[8];                               \
    int cu_tr_line_ = 0;                                                                                  \
    _Pragma("unroll") for (int i_ = 0; i_ < 8; i_++) cu_tr_mk_[i_] = 0
#define CU_TR_MARK(k) (cu_tr_mk_[(k)] = cu_gtime())
#define CU_TR_ARG , cu_tr_mk_
/* At the kernel's end: the records of block 0 and of the last block, written only now so
 * that the atomics do not delay what the marks measure. */
#define CU_TR_FLUSH()                                                                                     \
    do {                                                                                                  \
        unsigned b_ = blockIdx.x + gridDim.x * blockIdx.y, nb_ = gridDim.x * gridDim.y;                    \
        (void)cu_tr_mk_;                                                                                  \
        if (threadIdx.x == 0 && threadIdx.y == 0 && cu_tr_tw_) { /* every block: the grid's last end */  \
            unsigned long long g_;                                                                        \
            unsigned long long t_ = cu_gtime();                                                           \
            asm volatile("red.global.max.u64 [%0], %1;" ::"l"(&cu_tr_tab[cu_tr_home(&g_)].end_max), "l"(t_) \
                         : "memory");                                                                     \
        }                                                                                                 \
        if (threadIdx.x == 0 && threadIdx.y == 0 && cu_tr_tw_ && (b_ == 0 || b_ == nb_ - 1)) {           \
            cu_tr_rec *r_ = cu_tr_put(cu_tr_te_, cu_tr_tw_, cu_tr_line_);                                 \
            if (r_ && b_ == 0) _Pragma("unroll") for (int i_ = 0; i_ < 8; i_++) r_->mk[i_] = cu_tr_mk_[i_]; \
        }                                                                                                 \
    } while (0)
#define cu_pdl_wait_e() (cu_tr_tw_ = cu_pdl_wait_tre(), cu_tr_line_ = __LINE__)
void cu_trace_register(const char *file, void *(*addr)(void));
static void *cu_tr_addr(void) {
    void *p = NULL;
    return cudaGetSymbolAddress(&p, cu_tr_tab) == cudaSuccess ? p : NULL;
}
static void __attribute__((constructor)) cu_tr_reg(void) {
    cu_trace_register(__BASE_FILE__, cu_tr_addr);
}
#endif

static __device__ __forceinline__ void cu_pdl_trigger(void) {
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

/* Launch configuration on c's stream with the attribute unless c's knobs turn it off
 * (HEARTH_CUDA_PDL=0); at: storage for it. */
static inline cudaLaunchConfig_t cu_launch_config(dim3 grid, dim3 block, size_t smem, const cuda_ctx *c,
                                                  cudaLaunchAttribute *at) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    at->id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at->val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = c->knobs.pdl ? 1 : 0;
    return cfg;
}

/* Launches kernel(args...) with cu_launch_config; returns from the calling function with an
 * error naming `what` when the launch is refused. */
#define CU_LAUNCH(err, what, kernel, grid, block, smem, ctx, ...)                                         \
    do {                                                                                                  \
        cudaLaunchAttribute at_;                                                                          \
        cudaLaunchConfig_t cfg_ = cu_launch_config((grid), (block), (smem), (ctx), &at_);                 \
        cudaError_t e_ = cudaLaunchKernelEx(&cfg_, kernel, __VA_ARGS__);                                  \
        if (e_ != cudaSuccess) return cu_fail((err), e_, (what));                                         \
    } while (0)

/* Appends to cfg (whose attribute array `at` has a free slot at cfg->numAttrs) an L2
 * access-policy window that marks the n weights p[i] (bytes[i] each) streaming, i.e.
 * evicted first, unless HEARTH_CUDA_L2_STREAM=0 or the device has no windows. A decode
 * step reads each weight once, 2 GB for an F16 TinyLlama through a 50 MB L2: at normal
 * priority those lines push out what the step keeps using (activations, KV cells, norm
 * weights, the kernels' code), and the latency-bound parts of the step pay for it
 * (session 34, H200, F16: tg128 1422-1431 -> 1455-1457 t/s). The window covers all the
 * weights when they lie together (within 1.25x their bytes: q/k/v, gate/up), else the
 * first one, clamped to the device's largest window. A hint: results do not change. */
static inline void cu_stream_window(cudaLaunchConfig_t *cfg, cudaLaunchAttribute *at, const cuda_ctx *c, int n,
                                    const void *const *p, const size_t *bytes) {
    size_t maxw = c->info.l2_window, total = 0;
    uintptr_t lo = n > 0 ? (uintptr_t)p[0] : 0, hi = lo;
    for (int i = 0; i < n; i++)
        if (p[i] && bytes[i] > 0) {
            uintptr_t a = (uintptr_t)p[i], b = a + bytes[i];
            lo = a < lo ? a : lo, hi = b > hi ? b : hi, total += bytes[i];
        }
    size_t span = hi - lo;
    if (span > total + total / 4) /* apart: other data lies between them, take the first one */
        lo = (uintptr_t)p[0], span = bytes[0];
    if (!c->knobs.l2_stream || maxw == 0 || span == 0 || !p[0]) return;
    cudaLaunchAttribute *w = &at[cfg->numAttrs];
    w->id = cudaLaunchAttributeAccessPolicyWindow;
    w->val.accessPolicyWindow.base_ptr = (void *)lo;
    w->val.accessPolicyWindow.num_bytes = span < maxw ? span : maxw;
    w->val.accessPolicyWindow.hitRatio = 1.0f;
    w->val.accessPolicyWindow.hitProp = cudaAccessPropertyStreaming;
    w->val.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
    cfg->numAttrs++;
}

/* cu_stream_window over n <= 3 weights ws[i] (all their rows). */
static inline void cu_stream_weights(cudaLaunchConfig_t *cfg, cudaLaunchAttribute *at, const cuda_ctx *c, int n,
                                     const cuda_weight *const *ws) {
    const void *p[3] = { NULL, NULL, NULL };
    size_t b[3] = { 0, 0, 0 };
    n = n < 3 ? n : 3;
    for (int i = 0; i < n; i++) p[i] = ws[i]->data, b[i] = (size_t)ws[i]->n_rows * ws[i]->row_bytes;
    cu_stream_window(cfg, at, c, n, p, b);
}

/* CU_LAUNCH for a decode product over the n weights ws (cu_stream_weights). */
#define CU_LAUNCH_W(err, what, kernel, grid, block, smem, ctx, n, ws, ...)                                \
    do {                                                                                                  \
        cudaLaunchAttribute at_[2];                                                                       \
        cudaLaunchConfig_t cfg_ = cu_launch_config((grid), (block), (smem), (ctx), at_);                  \
        cu_stream_weights(&cfg_, at_, (ctx), (n), (ws));                                                  \
        cudaError_t e_ = cudaLaunchKernelEx(&cfg_, kernel, __VA_ARGS__);                                  \
        if (e_ != cudaSuccess) return cu_fail((err), e_, (what));                                         \
    } while (0)

/* q8_0 cache rows (KV store of the graph kernels and of the persistent kernel): one warp
 * per 32-element block; the scale is rounded to f16 before the codes
 * are chosen, as in the reference quantizer. */
static __device__ __forceinline__ void q8_block_store(uint8_t *dst, float x, int lane) {
    float amax = cu_warp_max(fabsf(x));
    __half dh = __float2half_rn(amax / 127.0f);
    float d = __half2float(dh), id = d != 0.0f ? 1.0f / d : 0.0f;
    float s = x * id;
    int q = (int)(s >= 0.0f ? s + 0.5f : s - 0.5f);
    q = q > 127 ? 127 : (q < -127 ? -127 : q);
    dst[2 + lane] = (uint8_t)(int8_t)q;
    if (lane == 0) *(__half *)dst = dh;
}

/* Quantizes one 32-value chunk held one value per lane into the activation scratch (the
 * arithmetic of act_quant_kernel, cu_matmul.cu): codes, scale and half sums of chunk `row`. */
static __device__ __forceinline__ void rq_chunk(float v, int lane, int64_t row, int8_t *xq, float *xd, int2 *xsum) {
    float amax = cu_warp_max(fabsf(v));
    float id = amax > 0.0f ? 127.0f / amax : 0.0f, sc = v * id;
    int q = (int)(sc >= 0.0f ? sc + 0.5f : sc - 0.5f);
    q = q > 127 ? 127 : (q < -127 ? -127 : q);
    xq[row * 32 + lane] = (int8_t)q;
    int hs = q;
    for (int o = 8; o > 0; o >>= 1) hs += __shfl_xor_sync(0xffffffffu, hs, o);
    int other = __shfl_sync(0xffffffffu, hs, 16);
    if (lane == 0) {
        xd[row] = amax / 127.0f;
        xsum[row] = make_int2(hs, other);
    }
}

/* A thread's share of the sum of squares of a row of n4 float4s: elements i = tid,
 * tid + 128, ... (the order of the multi-block RMSNorm, which the products that normalize
 * their own input (cu_mvq.cu) repeat so that both give the same bits). */
static __device__ __forceinline__ float cu_ss_part(const float4 *x4, int64_t n4, int tid) {
    float ss = 0.0f;
    for (int64_t i = tid; i < n4; i += 128) {
        float4 a = x4[i];
        ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
    return ss;
}

/* The GLU activation (gelu: tanh form, else SiLU), shared by every kernel that applies it. */
static __device__ __forceinline__ float cu_glu_act(int gelu, float g) {
    if (gelu) return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    return g / (1.0f + expf(-g));
}

/* The activation scratch for n_tok rows of n values (codes, scales, half sums), and x
 * quantized into it (reuse 1: it already holds x; 2: the second scratch, cu_act_buffers2,
 * already holds x). cu_matmul.cu. */
int cu_act_buffers(cuda_ctx *c, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs, hb_err *err);
int cu_act_buffers2(cuda_ctx *c, int64_t n_tok, int64_t n, int8_t **xq, float **xd, int2 **xs, hb_err *err);
int cu_act_quantize(cuda_ctx *c, const float *x, int64_t n_tok, int64_t n, int reuse, int8_t **xq, float **xd,
                    int2 **xs, hb_err *err);

/* Decode products whose blocks quantize (and RMSNorm) their f32 input themselves
 * (cu_mvq.cu), for cuda_matmul_ex / cuda_matmul_multi without reuse: *done = 1 when it
 * ran, 0 when the shape is not for it (nothing queued). */
int cu_pq_matmul(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                 float *const *adds, const float *x, int64_t xs, int64_t n_tok, const float *norm_w, float eps,
                 float *norm_y, int *done, hb_err *err);

/* ---- mbarriers and bulk copies (cu_mvf.cu streaming kernel, the persistent kernel) ------- */
static __device__ __forceinline__ uint32_t cu_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void cu_mbar_init(uint64_t *b, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(cu_smem_addr(b)), "r"(count) : "memory");
}

/* Makes the mbarrier initializations before it visible to the async proxy (the bulk copies
 * that complete on them); once, after the last cu_mbar_init of the thread. */
static __device__ __forceinline__ void cu_mbar_init_fence(void) {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/* An L2 cache policy for cu_bulk_g2s: weights streamed once per step are evicted first, so
 * that activations and the KV cache stay in L2 (evict_first false: the normal policy). */
static __device__ __forceinline__ uint64_t cu_l2_policy(bool evict_first) {
    uint64_t pol;
    if (evict_first) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
    else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;\n" : "=l"(pol));
    return pol;
}

static __device__ __forceinline__ void cu_mbar_expect(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(cu_smem_addr(b)), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void cu_mbar_wait(uint64_t *b, uint32_t parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(cu_smem_addr(b)), "r"(parity)
                     : "memory");
}

/* One arrival on b (its pending transaction count unchanged). */
static __device__ __forceinline__ void cu_mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(cu_smem_addr(b)) : "memory");
}

/* bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst;
 * completion counted on b; pol: an L2 cache policy (createpolicy). */
static __device__ __forceinline__ void cu_bulk_g2s(void *dst, const void *src, uint32_t bytes, uint64_t *b,
                                                uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1], %2, [%3], %4;\n" ::"r"(cu_smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(cu_smem_addr(b)), "l"(pol)
                 : "memory");
}

static inline unsigned cu_blocks(int64_t n, int per) {
    return (unsigned)((n + per - 1) / per);
}

#endif
