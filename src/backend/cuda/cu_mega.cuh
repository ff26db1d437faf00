/* cu_mega.cuh — the persistent decode kernel's program format and host state, shared by
 * its device code and launching (cu_mega.cu) and its recording and planning
 * (cu_mega_rec.cu). See cu_mega.cu for the design. CUDA C: no classes, no templates. */
#ifndef HEARTH_CU_MEGA_CUH
#define HEARTH_CU_MEGA_CUH

#define MK_THREADS 256            /* threads that run the ops (= AT_THREADS: attention blocks run unchanged) */
#define MK_WARPS (MK_THREADS / 32)
#define MK_BLOCK (MK_THREADS + 32) /* + the producer warp of the weight stream (cu_mega_mv.cuh) */
#define MK_T 8                    /* most tokens per step */
#define MK_NS 5                   /* slots of the weight ring */
#define MK_SLOT 32768             /* weight bytes per slot (whole rows; a product's rows must fit) */
#define MK_SLOT_STRIDE (MK_SLOT + 128) /* + room for the 16-byte alignment of a tile's copy */
#define MK_IN_FLIGHT 2            /* most weight copies a block has outstanding (1-5 measured alike) */
#define MK_ATT_SMEM 49152         /* shared memory an attention op may use (bytes) */
#define MK_ACT MK_ATT_SMEM        /* per-block activations (codes + scales + sums, or f32) */
#define MK_CACHE 16               /* cached programs */
#define MK_PN 8                   /* profiling words per op (HEARTH_CUDA_MEGA_PROF) */
/* Block barrier of the threads that run the ops: device code of the ops uses MK_SYNC(), never
 * __syncthreads(), because the producer warp does not take part in them. */
#define MK_SYNC() asm volatile("bar.sync 1, %0;\n" ::"n"(MK_THREADS) : "memory")
#define AT_SYNC() MK_SYNC() /* the split attention code runs inside the kernel too */
#define AT_NT MK_THREADS

#include "backend/cuda/cu_attn.cuh"

enum { MK_MATVEC, MK_NORM, MK_QUANT, MK_ROPE, MK_KV, MK_ATTN, MK_COMBINE, MK_COPY, MK_ELT, MK_GLU, MK_ATTN_DEC };
enum { SRC_GLOBAL, SRC_NORM, SRC_QUANT }; /* where a quantized product takes its activations */

/* One op of the program (device memory). Fields not used by a kind are zero. */
typedef struct __align__(16) mk_op {
    int32_t kind, sync;          /* sync: grid barrier after this op */
    int32_t n_tok, flag;         /* flag: matvec source; norm/glu: also quantize; elt: op */
    /* products */
    uint32_t wtype;
    int32_t nw, nch;
    int32_t tile_rows, parts;    /* rows per ring slot; warps per row (a power of two, tile_rows * parts <= 8 when > 1) */
    int64_t cols;
    const uint8_t *w[3];
    size_t row_bytes[3];
    int64_t rows[3];
    float *y[3], *add[3];
    int64_t ldy[3];
    /* generic operands */
    const float *x, *aux, *nw_w; /* input; second input (up, bias); norm weights */
    float *out;
    int64_t xs, as, os, n, n_rows;
    float f0, eps;
    int8_t *xq;                  /* the global activation buffer (SRC_GLOBAL, q8 outputs) */
    float *xd;
    int2 *xsum;
    /* rope / kv / attention */
    const int32_t *pos, *seq;
    cuda_rope rope;
    float *x2;
    int64_t stride2;
    int32_t n_head, n_head2, head_dim, at_split;
    uint8_t *kc, *vc;
    uint32_t kv_type;
    int64_t kv_dim, n_ctx;
    size_t kv_row_bytes;
    at_args at;
    unsigned at_gx, at_gy;
    /* MK_ATTN_DEC (cu_mega_attn.cuh) also uses x/xs (q rows), x2/stride2 (k), aux/as (v),
     * out/os, n_tok, n_head/n_head2 (query / kv heads), head_dim, pos, seq, rope and the
     * cache fields above; ad_cap: most cells a token sees, ad_stage: cells staged in shared
     * memory, ad_flags: MA_* */
    float ad_scale, ad_softcap;
    int32_t ad_window, ad_cap, ad_stage, ad_flags;
} mk_op;

/* Memory an op reads and writes (host only), for deciding where barriers are needed. */
typedef struct mk_rng {
    const void *p;
    size_t n;
} mk_rng;
#define MK_RW 8

typedef struct mk_meta {
    mk_rng rd[MK_RW], wr[MK_RW];
    int n_rd, n_wr;
    int uses_act;        /* global activation buffer: 1 write, 2 read */
    int uses_part;       /* attention partials: 1 write, 2 read */
} mk_meta;

typedef struct mk_prog {
    uint64_t sig, last_use;
    mk_op *dev;
    int n_ops, n_sync;
} mk_prog;

struct cuda_mega {
    cuda_ctx *c;
    int nb;                      /* blocks in the grid */
    int adec_mode;               /* HEARTH_CUDA_MEGA_ADEC: 0 no MK_ATTN_DEC, 1 on, 2 on + RoPE of q/k kept (test aid) */
    size_t smem;                 /* dynamic shared memory per block */
    unsigned long long *bar, base;
    void *act, *part;            /* global activation buffer, attention partials */
    size_t act_cap, part_cap, act_need, part_need;
    mk_op *ops;
    mk_meta *meta;
    int n_ops, cap_ops, bad;
    mk_prog cache[MK_CACHE];
    uint64_t clock;
    /* HEARTH_CUDA_MEGA_PROF=1: per-op-kind time of every step, summed (tuning aid; the
     * totals go to stderr when the backend is freed) */
    unsigned long long *prof_dev, *prof_host;
    int prof_cap;
    double prof_ns[16], prof_part[16][6], prof_sync_ns, prof_rt;
    long prof_rt_n;
    long prof_n[16], prof_steps, prof_syncs;
};


/* Sets the barriers, prefetches and buffer pointers of the recorded program (m->ops);
 * returns how many grid barriers one run executes. */
int cu_mega_plan(cuda_mega *m);

#endif
