/* cuda.h — the CUDA backend's C interface (internal): device discovery, device memory, and
 * the kernels of a decoder step (quantized matrix multiply, norms, RoPE, attention over a
 * device KV cache, element-wise ops).
 *
 * Everything here is callable from C; the implementation is CUDA C in the .cu files of src/backend/cuda
 * and is only linked when hearth is built with `make CUDA=1` (HEARTH_CUDA=1).
 *
 * Conventions:
 *  - Pointers named *_dev (and every float/byte pointer the kernels take) are device
 *    pointers; host arrays are named so. Kernels are queued on the context's stream and run
 *    asynchronously: results are visible to the host after cuda_download / cuda_sync.
 *  - Functions return a hearth_status and fill `err` when given; a CUDA failure becomes
 *    HEARTH_E_UNSUPPORTED (no usable device), HEARTH_E_NOMEM (device memory) or
 *    HEARTH_E_INTERNAL (a launch failed), with the CUDA error text in the message.
 *  - A cuda_ctx is used by one thread at a time.
 */
#ifndef HEARTH_CUDA_H
#define HEARTH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/cuda/cuda_knobs.h"
#include "base/base.h"
#include "quant/quant.h"

/* ---- devices ------------------------------------------------------------------------- */
typedef struct cuda_dev_info {
    int ordinal;
    char name[256];
    int cc_major, cc_minor;     /* compute capability */
    int sm_count;
    size_t mem_free, mem_total; /* bytes, at the time of the probe */
    size_t l2_bytes;
    size_t l2_window; /* largest L2 access-policy window (bytes; 0: the device has none) */
    int driver_version, runtime_version; /* e.g. 13000 */
} cuda_dev_info;

/* Ordinal chosen by HEARTH_CUDA_DEVICE (default 0); -1 with err set if the variable is not
 * a number. */
int cuda_device_from_env(hb_err *err);

/* Probes device `ordinal`: HEARTH_OK with *info filled, or HEARTH_E_UNSUPPORTED with a clear
 * message (no GPU, driver too old for this build, compute capability below 7.0, ...).
 * Never aborts. */
int cuda_probe(int ordinal, cuda_dev_info *info, hb_err *err);

/* ---- context: one device, one stream ------------------------------------------------- */
typedef struct cuda_ctx cuda_ctx;

/* Creates a context on device `ordinal` (probed first). Caller frees with cuda_ctx_free. */
int cuda_ctx_new(int ordinal, cuda_ctx **out, hb_err *err);
void cuda_ctx_free(cuda_ctx *c);
const cuda_dev_info *cuda_ctx_info(const cuda_ctx *c);
/* The switches c was created with (cuda_knobs.h); valid while c lives. */
const cuda_knobs *cuda_ctx_knobs(const cuda_ctx *c);
/* The same, writable: for tests and measurements that change a switch on a live context
 * (later calls see it; graphs captured before keep what they captured). */
cuda_knobs *cuda_ctx_knobs_edit(cuda_ctx *c);
/* Makes c's GPU current for the calling thread (contexts may move between threads). */
int cuda_ctx_enter(cuda_ctx *c, hb_err *err);

/* Device memory. cuda_alloc returns 256-byte aligned memory (caller frees with cuda_free);
 * HEARTH_E_NOMEM when the device is full. */
int cuda_alloc(cuda_ctx *c, void **out_dev, size_t bytes, hb_err *err);
void cuda_free(cuda_ctx *c, void *p_dev);
/* Frees device memory of GPU `ordinal` that outlived the context that allocated it (the
 * weights a model's contexts share, be_cuda_share.c); NULL is ignored. */
void cuda_dev_free(int ordinal, void *p_dev);
/* Free and total device memory now, in bytes (HEARTH_CUDA_MEM_LIMIT, a testing aid, caps
 * both: see cu_device.cu; cuda_alloc then fails beyond it). */
int cuda_mem_info(cuda_ctx *c, size_t *free_b, size_t *total_b, hb_err *err);
/* Host -> device copy; returns once the host buffer may be reused. */
int cuda_upload(cuda_ctx *c, void *dst_dev, const void *src_host, size_t bytes, hb_err *err);
/* Device -> host copy after all queued work; synchronous. */
int cuda_download(cuda_ctx *c, void *dst_host, const void *src_dev, size_t bytes, hb_err *err);
/* Device -> device copy, queued. */
int cuda_copy(cuda_ctx *c, void *dst_dev, const void *src_dev, size_t bytes, hb_err *err);
/* Waits for all queued work; reports the first asynchronous failure. */
int cuda_sync(cuda_ctx *c, hb_err *err);

/* ---- weights ------------------------------------------------------------------------- */
/* A weight matrix [n_rows][n_cols] of quant type `type` in device memory, rows row_bytes
 * apart (the file's layout, unchanged). */
typedef struct cuda_weight {
    uint32_t type;
    int64_t n_rows, n_cols;
    size_t row_bytes;
    const void *data;   /* device */
} cuda_weight;

/* True when the matmul kernels support `type` (every compute type of quant.h). */
int cuda_type_supported(uint32_t type);

/* y[t][r] = sum_c W[r][c] * x[t][c], t < n_tok, r < n_rows. x: [n_tok][n_cols] f32
 * (contiguous), y: [n_tok][ldy] f32, both device. Quantized weights take int8 activations
 * (per 32 values, a float scale: the reference's arithmetic); float weights take f32.
 * Large batches use the tensor-core path. */
int cuda_matmul(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y,
                int64_t ldy, hb_err *err);

/* Options of cuda_matmul_ex, for fusing a step's ops:
 *  reuse_act: the activation scratch already holds x quantized (by cuda_rmsnorm_q8 or the
 *             previous matmul over the same x); only for matrix-vector products;
 *  add_to:    also add the result into add_to[t][r] (a residual add), ldy == n_rows. */
typedef struct cuda_mm_opt {
    int reuse_act;
    float *add_to;
    /* the caller checked that the op launched before this one does not write add_to and
     * that y does not overlap it (be_cuda_fuse.c cb_early_add): the single-token kernel
     * may then read add_to before its PDL wait */
    int add_early;
} cuda_mm_opt;
int cuda_matmul_ex(cuda_ctx *c, const cuda_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy,
                   const cuda_mm_opt *opt, hb_err *err);
/* n (2..3) quantized weights of one type and row length over the same x (n_tok <= 8) in
 * one launch: ys[i][t][r] = W_i x[t] (+ into adds[i] when non-NULL). */
int cuda_matmul_multi(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                      float *const *adds, const float *x, int64_t n_tok, int reuse_act, hb_err *err);
/* True when a matmul of n_tok rows runs as matrix-vector products (int8 activations for
 * quantized weights). */
int cuda_matmul_is_mv(const cuda_weight *w, int64_t n_tok);
/* RMSNorm (rows n floats, written contiguously to y) that also quantizes the result into
 * the activation scratch (n % 32 == 0), for a following matmul with reuse_act. */
int cuda_rmsnorm_q8(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t n_rows, int64_t n, const float *w,
                    float eps, hb_err *err);

/* GLU (as cuda_glu, output rows contiguous: os == n) that also quantizes its output into
 * the activation scratch (n % 32 == 0), for a following matmul with reuse_act. */
int cuda_glu_q8(cuda_ctx *c, int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                int64_t n_tok, int64_t n, hb_err *err);

/* Decode forms that fold the op before a product into it (cu_mvq.cu; n_tok <= 8 and
 * quantized weights take the fused kernels where the shapes allow, anything else runs the
 * separate kernels, with the same results bit for bit):
 * cuda_matmul_pro: cuda_matmul_multi over h, where h = RMSNorm(x) (x: n_tok rows xs apart,
 *   norm_w may be NULL) written to norm_y (rows of n_cols, contiguous) when norm_y is given,
 *   else h = x (then xs == n_cols); leaves h quantized in the activation scratch as
 *   cuda_rmsnorm_q8 does.
 * cuda_matmul_glu: the same over gate and up weights (same type and shape, n_rows % 32 == 0),
 *   then out[t][i] = act(yg[t][i]) * yu[t][i] (cuda_glu_q8: out rows of n_rows, contiguous,
 *   left quantized in the activation scratch for the next product). */
int cuda_matmul_pro(cuda_ctx *c, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                    float *const *adds, const float *x, int64_t xs, int64_t n_tok, const float *norm_w, float eps,
                    float *norm_y, hb_err *err);
int cuda_matmul_glu(cuda_ctx *c, const cuda_weight *wg, const cuda_weight *wu, float *yg, int64_t ldg, float *yu,
                    int64_t ldu, float *out, int gelu, const float *x, int64_t xs, int64_t n_tok,
                    const float *norm_w, float eps, float *norm_y, hb_err *err);
/* How many fused kernels of the two above c has launched (a testing aid). */
uint64_t cuda_mvq_fused_launches(const cuda_ctx *c);
/* How many quantized products of 2..8 tokens ran in the persistent batch kernel (a testing aid). */
uint64_t cuda_mvt_launches(const cuda_ctx *c);
/* How many of them ran on the int8 tensor cores (cu_mmt.cu; a testing aid). */
uint64_t cuda_mmt_launches(const cuda_ctx *c);

/* out[i][0..n_cols) = dequantized row ids_host[i] of w (ids validated by the caller). */
int cuda_get_rows(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_host, int64_t n, float *out,
                  hb_err *err);

/* ---- the other ops of a decoder step ---------------------------------------------------
 * Shapes and strides are in floats; every array is device memory unless named *_host.
 * Integer arrays (pos, seq) are device copies made with cuda_stage_i32. */

/* Copies n host ints into staging slot `slot` (0..CUDA_STAGE_SLOTS-1) and returns the
 * device copy (valid until the slot is staged again). The copy is queued in order with the
 * kernels, so a slot may be restaged for the next call at once. */
#define CUDA_STAGE_SLOTS 4
int cuda_stage_i32(cuda_ctx *c, int slot, const int32_t *src_host, int64_t n, const int32_t **out_dev,
                   hb_err *err);

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (w: n floats or NULL), n_rows rows. */
int cuda_rmsnorm(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                 const float *w, float eps, hb_err *err);

typedef struct cuda_rope {
    int neox;            /* 0: rotate pairs (2i, 2i+1); 1: halves (i, i + n_rot/2) */
    int32_t n_rot;
    float base, freq_scale, attn_factor;
    const float *factors; /* [n_rot/2] device, or NULL */
    const double *inv;    /* [n_rot/2] device: base^(-2i/n_rot) computed once on the host
                           * (cuda_rope_table), or NULL: the kernels compute it (double pow) */
} cuda_rope;
/* Fills inv_host[i] = base^(-2i/n_rot), i < n_rot/2, in double as the CPU reference does;
 * upload it and set cuda_rope.inv to spare the kernels the pow. */
void cuda_rope_table(float base, int32_t n_rot, double *inv_host);
/* Rotates n_head heads of head_dim floats in each of n_tok rows (row stride `stride`) by
 * position pos[t]: theta_i = pos * freq_scale * base^(-2i/n_rot) / factors[i]. */
int cuda_rope_apply(cuda_ctx *c, float *x, int64_t n_tok, int64_t stride, int32_t n_head, int32_t head_dim,
                    const int32_t *pos, const cuda_rope *r, hb_err *err);

/* The same rotation applied to two tensors of the same tokens (q and k) in one pass. */
int cuda_rope_apply2(cuda_ctx *c, float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                     int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r,
                     hb_err *err);

/* One layer's KV cache in device memory: rows of kv_dim elements of type (QT_F32, QT_F16 or
 * QT_Q8_0), cell (seq s, position p) at row s * n_ctx + p. */
typedef struct cuda_kv {
    void *k, *v;
    uint32_t type;
    int64_t kv_dim;
    size_t row_bytes;
    int64_t n_ctx;
} cuda_kv;

int cuda_kv_store(cuda_ctx *c, const cuda_kv *kv, const float *k, int64_t ks, const float *v, int64_t vs,
                  int64_t n_tok, const int32_t *pos, const int32_t *seq, hb_err *err);

/* RoPE of q and k (as cuda_rope_apply2) that also stores the rotated k and v into the
 * cache cells (seq[t], pos[t]) (as cuda_kv_store): whole heads rotated (n_rot == head_dim),
 * n_head_kv * head_dim == kv_dim, f16 or f32 cache. */
int cuda_rope_kv(cuda_ctx *c, float *q, int64_t qs, int32_t n_head, float *k, int64_t ks, int32_t n_head_kv,
                 int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r, const cuda_kv *kv,
                 const float *v, int64_t vs, const int32_t *seq, hb_err *err);


/* Attention of n_tok query rows over the cache (their own K/V already stored): token t
 * (sequence seq[t], position pos[t]) head h reads kv head h / (n_head / n_head_kv) over
 * cells [lo, pos[t]], lo = max(0, pos[t] - window + 1) when window > 0, else 0; scores are
 * scale * q.k, then softcap * tanh(score / softcap) when softcap > 0. max_pos_host is the
 * largest pos[t] (sizes the split of the cache across thread blocks). */
typedef struct cuda_attn {
    const cuda_kv *kv;
    const int32_t *pos, *seq;
    int32_t n_tok, n_head, n_head_kv, head_dim_k, head_dim_v;
    float scale, softcap;
    int32_t window;
    int32_t max_pos_host;
} cuda_attn;
int cuda_attention(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                   hb_err *err);
/* The same, also leaving the output quantized in the activation scratch for the quantized
 * product that reads it next (its reuse_act, see cuda_matmul); needs head_dim_v % 32 == 0 and
 * contiguous output rows (os == n_head * head_dim_v). */
int cuda_attention_q8(cuda_ctx *c, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os,
                      hb_err *err);

/* The decode attention of a layer in ONE launch (n_tok <= 8): RoPE of q and k (as
 * cuda_rope_apply2 with r, whole heads: r->n_rot == head_dim_k), the rotated k and v stored
 * into the cache cells (seq[t], pos[t]) (as cuda_kv_store), attention over [lo, pos[t]] (as
 * cuda_attention; the current step's cells are taken from each block's own copy, so no
 * block reads a cell before it is written) and the merge of the splits (the last block of
 * each group, through c's attention counters); quant: as cuda_attention_q8. q and k are
 * read only: they are NOT rotated in place (the caller must not read them afterwards).
 * The angles: theta in double as cuda_rope_apply2, its cos/sin in float after reducing it
 * to [-pi, pi] in double (HEARTH_CUDA_DATTN_DANG=1: in double, bitwise the per-op kernels).
 * Needs cuda_dattn_supported; pos and seq must not be written by the kernel just before
 * (they are read before its programmatic-launch wait; the backend's step arena is
 * uploaded before the step's first kernel). The split plan depends on the position bucket
 * (a->max_pos_host) and head layout only, never on n_tok. */
int cuda_dattn_supported(const cuda_attn *a, const cuda_rope *r, int quant);
int cuda_rope_kv_attention(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs,
                           const float *k, int64_t ks, const float *v, int64_t vs, float *out, int64_t os, int quant,
                           hb_err *err);
/* cuda_rope_kv_attention when the short-context one-block-per-head kernel takes the shape
 * (f16 cache, position bucket <= HEARTH_CUDA_ATTN_DEC_MAX; *done = 1), else nothing is
 * queued and *done = 0. */
int cuda_rope_kv_attention_dec(cuda_ctx *c, const cuda_attn *a, const cuda_rope *r, const float *q, int64_t qs,
                               const float *k, int64_t ks, const float *v, int64_t vs, float *out, int64_t os, int quant,
                               int *done, hb_err *err);

/* y[t][i] = x[t][i] (+ bias[i]) for n_tok rows of n floats (x == y allowed). */
int cuda_copy_rows(cuda_ctx *c, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                   const float *bias, hb_err *err);
int cuda_add(cuda_ctx *c, float *y, const float *x, int64_t n, hb_err *err);      /* y += x */
int cuda_scale(cuda_ctx *c, float *x, int64_t n, float s, hb_err *err);           /* x *= s */
int cuda_softcap(cuda_ctx *c, float *x, int64_t n, float cap, hb_err *err);       /* cap*tanh(x/cap) */
/* out[t][i] = act(gate[t][i]) * up[t][i]; gelu: 0 = SiLU, 1 = GELU (tanh form). */
int cuda_glu(cuda_ctx *c, int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
             int64_t os, int64_t n_tok, int64_t n, hb_err *err);

/* ---- whole-step replay (CUDA graphs) --------------------------------------------------
 * Work queued between cuda_capture_begin and cuda_capture_end is recorded, not run; the
 * graph replays it with the same arguments. Scratch memory that a graph uses must not move:
 * cuda_ctx_generation changes whenever the context reallocates scratch, and graphs made
 * under an older generation must not be launched. */
typedef struct cuda_graph cuda_graph;
int cuda_capture_begin(cuda_ctx *c, hb_err *err);
int cuda_capture_end(cuda_ctx *c, cuda_graph **out, hb_err *err);   /* caller frees with cuda_graph_free */
int cuda_graph_launch(cuda_ctx *c, cuda_graph *g, hb_err *err);
void cuda_graph_free(cuda_graph *g);
uint64_t cuda_ctx_generation(const cuda_ctx *c);
/* Pinned host memory (fast, asynchronous uploads). Caller frees with cuda_host_free. */
int cuda_host_alloc(size_t bytes, void **out, hb_err *err);
void cuda_host_free(void *p);
/* Queues a copy from pinned host memory; the source must stay unchanged until the stream
 * has run it (cuda_sync). */
int cuda_upload_async(cuda_ctx *c, void *dst_dev, const void *src_pinned, size_t bytes, hb_err *err);
/* As cuda_get_rows with the ids already in device memory. */
int cuda_get_rows_dev(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_dev, int64_t n, float *out,
                      hb_err *err);

/* ---- the persistent decode kernel (cu_mega.cu) -----------------------------------------
 * A decode step (every op with at most 8 tokens) run as one cooperative launch. The caller
 * records the step with the cuda_mega_* calls below, which take the arguments of the
 * matching per-op entry points above (matmul_multi, rmsnorm[_q8], rope_apply2, kv_store,
 * attention, copy_rows, add/scale/softcap (kind 0/1/2), glu[_q8]) and return
 * HEARTH_E_UNSUPPORTED for anything the kernel cannot run (the step must then run op by
 * op); cuda_mega_end builds the program, caches it under `sig` and launches it;
 * cuda_mega_run_cached launches a cached program (*launched = 1) or does nothing. Device
 * pointers given while recording must stay valid while the program is cached (the caller
 * changes `sig` when they change). */
typedef struct cuda_mega cuda_mega;
int cuda_mega_new(cuda_ctx *c, cuda_mega **out, hb_err *err);    /* caller frees with cuda_mega_free */
void cuda_mega_free(cuda_mega *m);
void cuda_mega_begin(cuda_mega *m);
int cuda_mega_matmul(cuda_mega *m, int n, const cuda_weight *const *ws, float *const *ys, const int64_t *ldys,
                     float *const *adds, const float *x, int64_t n_tok, int reuse_act);
int cuda_mega_rmsnorm(cuda_mega *m, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows, int64_t n,
                      const float *w, float eps, int q8);
int cuda_mega_rope(cuda_mega *m, float *x, int64_t stride, int32_t n_head, float *x2, int64_t stride2,
                   int32_t n_head2, int64_t n_tok, int32_t head_dim, const int32_t *pos, const cuda_rope *r);
int cuda_mega_kv_store(cuda_mega *m, const cuda_kv *kv, const float *k, int64_t ks, const float *v, int64_t vs,
                       int64_t n_tok, const int32_t *pos, const int32_t *seq);
int cuda_mega_attention(cuda_mega *m, const cuda_attn *a, const float *q, int64_t qs, float *out, int64_t os);
int cuda_mega_copy_rows(cuda_mega *m, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok, int64_t n,
                        const float *bias);
int cuda_mega_eltwise(cuda_mega *m, int kind, float *y, const float *x, int64_t n, float s);
int cuda_mega_glu(cuda_mega *m, int gelu, const float *gate, int64_t gs, const float *up, int64_t us, float *out,
                  int64_t os, int64_t n_tok, int64_t n, int q8);
int cuda_mega_end(cuda_mega *m, uint64_t sig, hb_err *err);
int cuda_mega_run_cached(cuda_mega *m, uint64_t sig, int *launched, hb_err *err);

/* ---- measurement --------------------------------------------------------------------- */
/* Measures the device's read bandwidth (a streaming read of a buffer several times the L2,
 * best of a few runs) in bytes per second. */
int cuda_measure_bandwidth(cuda_ctx *c, double *bytes_per_s, hb_err *err);
/* Op timing (HEARTH_CUDA_PROFILE=1, a diagnostics aid): records timing event i
 * (0..CUDA_PROF_EVENTS-1, created on first use, owned by c) on c's stream; cuda_prof_ms
 * waits for event j and gives the milliseconds between events i and j. */
#define CUDA_PROF_EVENTS 2048
int cuda_prof_mark(cuda_ctx *c, int i, hb_err *err);
int cuda_prof_ms(cuda_ctx *c, int i, int j, float *ms, hb_err *err);

#ifdef __cplusplus
}
#endif
#endif
