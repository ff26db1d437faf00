/* backend.h — the small compute interface the architectures and the engine run on.
 *
 * The forward pass (src/arch) and the engine (src/engine) never touch numbers directly:
 * every step is one call through a be_ops table (matmul, norms, RoPE, attention over the KV
 * cache, element-wise ops). The CPU implements it in src/backend/cpu/ops*.c; an accelerator
 * backend provides another table and keeps activations in its own memory. Activation
 * buffers are therefore opaque `be_buf` handles allocated through the table; the engine
 * reads results back with `read`. Token ids and positions stay host arrays (a device
 * backend uploads them).
 *
 * Ownership: a be_ctx is owned by one hearth_context and used by one thread at a time.
 * Weights (be_weight) are owned by the model; their host data is borrowed from the mapping.
 */
#ifndef HEARTH_BACKEND_H
#define HEARTH_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/cpu.h"
#include "base/base.h"

/* A weight matrix [n_rows][n_cols] as the file stores it (host description in `host`,
 * usable by the CPU kernels), plus a slot for a device copy owned by another backend. */
typedef struct be_weight {
    cpu_weight host;
    void *dev;
} be_weight;

/* A float activation buffer (backend memory). On the CPU it is plain host memory. */
typedef struct be_buf {
    float *p;
    int64_t n;      /* floats */
} be_buf;

/* Largest rotated dimension a model may declare (checked at load). */
#define BE_MAX_ROT 1024

typedef enum be_rope_style {
    BE_ROPE_NORMAL = 0, /* rotate adjacent pairs (x[2i], x[2i+1]) — llama */
    BE_ROPE_NEOX = 1    /* rotate halves (x[i], x[i + n_rot/2]) — qwen, gemma, phi3 */
} be_rope_style;

/* RoPE parameters for one layer. theta_i = pos * freq_scale * base^(-2i/n_rot) / factor_i,
 * and cos/sin are multiplied by attn_factor (1 = plain rotation). */
typedef struct be_rope {
    be_rope_style style;
    int32_t n_rot;
    float base;
    float freq_scale;
    float attn_factor;
    const float *factors;   /* [n_rot/2] host, or NULL */
} be_rope;

typedef enum be_glu { BE_GLU_SILU = 0, BE_GLU_GELU_TANH = 1 } be_glu;

/* The KV cache of one layer for every sequence: K and V rows of kv_dim elements of `type`
 * (QT_F32, QT_F16 or QT_Q8_0), cell (seq s, position p) at row s * n_ctx + p. */
typedef struct be_kv_layer {
    void *k, *v;
    uint32_t type;
    int64_t kv_dim;
    size_t row_bytes;
    int64_t n_ctx;
} be_kv_layer;

/* Attention of one batch over the cache (K/V of the batch already stored). For token t of
 * sequence seq[t] at position pos[t], head h reads kv head h / (n_head / n_head_kv) over
 * cells [lo, pos[t]] where lo = 0, or pos[t] - window + 1 when window > 0 (sliding
 * window). score = scale * q.k, then softcap * tanh(score / softcap) when softcap > 0. */
typedef struct be_attn {
    const be_kv_layer *kv;
    const int32_t *pos, *seq;   /* [n_tok] host */
    int32_t n_tok, n_head, n_head_kv, head_dim_k, head_dim_v;
    float scale, softcap;
    int32_t window;
} be_attn;

typedef struct be_ctx be_ctx;

/* What an accelerator reports about itself (be_ops.dev_info). */
typedef struct be_dev_info {
    char name[128];             /* e.g. "NVIDIA H200" */
    size_t mem_free, mem_total; /* bytes this context may still allocate / in all */
} be_dev_info;

/* Device copies of one model's weights, shared by the accelerator contexts of that model so
 * that the weights are uploaded once per model, not once per context (the server's
 * embedding context beside its generation context, several contexts of one program). The
 * model owns the slot (hearth_model.share: be_share_slot_init at load, be_share_slot_free
 * when it goes, after its contexts); the first context whose backend takes part
 * (be_ops.share) puts its store in the slot, and the store frees the device memory when
 * the slot goes. Only weights whose host data lies in [lo, hi) are shared: the model's
 * read-only mapping, unchanged for the model's life; a weight a context builds itself
 * stays its own. slot.mu guards s; a store locks itself for its contents. */
typedef struct be_share {
    void (*destroy)(struct be_share *s); /* frees the store and its device memory */
} be_share;
typedef struct be_share_slot {
    pthread_mutex_t mu;
    be_share *s;          /* NULL until a context creates the store */
    const uint8_t *lo, *hi;
} be_share_slot;
void be_share_slot_init(be_share_slot *slot, const uint8_t *lo, const uint8_t *hi);
void be_share_slot_free(be_share_slot *slot);

typedef struct be_ops {
    const char *name;
    /* Buffers are plain host memory (the CPU): another backend may `read` straight into
     * them. A context puts such a backend after an accelerator (docs/engine.md). */
    bool host_mem;
    int (*buf_alloc)(be_ctx *b, be_buf *out, int64_t n, hb_err *err);
    void (*buf_free)(be_ctx *b, be_buf *buf);
    /* Copies n floats from buffer offset `off` to host memory. */
    void (*read)(be_ctx *b, const be_buf *src, int64_t off, float *dst, int64_t n);
    /* y[t][0..rows) = W x[t] for t < n_tok; x rows are w->n_cols floats apart, y rows ldy. */
    int (*matmul)(be_ctx *b, const be_weight *w, const float *x, int64_t n_tok, float *y, int64_t ldy);
    /* out[i] = dequantized row ids[i] of w (ids already validated). */
    int (*get_rows)(be_ctx *b, const be_weight *w, const int32_t *ids, int64_t n, float *out);
    /* y[r] = x[r] / rms(x[r]) * w for n_rows rows of n floats, rows xs / ys floats apart;
     * w (n floats, host) may be NULL. x == y allowed. */
    void (*rmsnorm)(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                    int64_t n, const float *w, float eps);
    /* Rotates n_head heads of head_dim floats in each of n_tok rows (row stride `stride`). */
    void (*rope)(be_ctx *b, float *x, int64_t n_tok, int64_t stride, int32_t n_head,
                 int32_t head_dim, const int32_t *pos, const be_rope *r);
    /* Stores K and V rows (kv_dim floats, strides ks / vs) of n_tok tokens into the cache. */
    void (*kv_store)(be_ctx *b, const be_kv_layer *kv, const float *k, int64_t ks, const float *v,
                     int64_t vs, int64_t n_tok, const int32_t *pos, const int32_t *seq);
    /* Copies cells [0, n) of sequence src's stream to sequence dst's (prefix reuse), in
     * whatever memory the backend keeps the cache. Returns a hearth_status. */
    int (*kv_copy)(be_ctx *b, const be_kv_layer *kv, int32_t src, int32_t dst, int64_t n);
    /* out[t] (n_head*head_dim_v floats, stride os) from q[t] (stride qs). HEARTH_E_NOMEM if
     * scratch cannot grow. */
    int (*attention)(be_ctx *b, const be_attn *a, const float *q, int64_t qs, float *out, int64_t os);
    /* y[t][i] = x[t][i] (+ bias[i] if bias) for n_tok rows of n floats; strides ys, xs. */
    void (*copy_rows)(be_ctx *b, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_tok,
                      int64_t n, const float *bias);
    /* y[i] += x[i], n floats. */
    void (*add)(be_ctx *b, float *y, const float *x, int64_t n);
    /* x[i] *= s. */
    void (*scale)(be_ctx *b, float *x, int64_t n, float s);
    /* x[i] = cap * tanh(x[i] / cap). */
    void (*softcap)(be_ctx *b, float *x, int64_t n, float cap);
    /* out[t][i] = act(gate[t][i]) * up[t][i], i < n; strides gs, us, os. */
    void (*glu)(be_ctx *b, be_glu kind, const float *gate, int64_t gs, const float *up, int64_t us,
                float *out, int64_t os, int64_t n_tok, int64_t n);

    /* ---- optional (NULL where they mean nothing, e.g. on the CPU) ---- */
    /* Device name and memory. */
    int (*dev_info)(be_ctx *b, be_dev_info *out, hb_err *err);
    /* Uploads w now rather than on first use (for a matmul when `matmul`, else row lookups
     * only), so that a full device shows at load: HEARTH_E_NOMEM, or HEARTH_E_UNSUPPORTED
     * when the backend cannot run w. */
    int (*preload)(be_ctx *b, const be_weight *w, bool matmul, hb_err *err);
    /* Allocates the backend's copy of a layer's KV cache for cells [0, n_cells) now. */
    int (*kv_reserve)(be_ctx *b, const be_kv_layer *kv, int64_t n_cells, hb_err *err);
    /* Measures the device's memory read bandwidth, bytes per second. */
    int (*measure_bw)(be_ctx *b, double *bytes_per_s, hb_err *err);
    /* A hint that the ops recorded so far end a unit of the forward pass (a layer): a
     * backend that records ops and runs them at the next read may start running them now,
     * so that recording the rest overlaps the device's work. Results are unchanged. */
    void (*submit)(be_ctx *b);
    /* Host memory that `read` fills fastest (page-locked for a GPU: one DMA, no staging
     * copy), for the buffer read every step (the logits); NULL when the backend declines
     * (e.g. too large). Release with host_free, before the backend goes. */
    void *(*host_alloc)(be_ctx *b, size_t bytes);
    void (*host_free)(be_ctx *b, void *p);
    /* Joins the model's store of device weights in slot (creating it when the slot is
     * empty; a store of another device is left alone), before any weight is uploaded;
     * *shared: the bytes of weights already there, which this context will not upload
     * again. HEARTH_E_NOMEM when the store cannot be made (the context then works alone). */
    int (*share)(be_ctx *b, be_share_slot *slot, uint64_t *shared, hb_err *err);
} be_ops;

struct be_ctx {
    const be_ops *ops;
    void *impl;
};

/* The backend for a context: `want` is "cpu", "cuda" or NULL/"auto" (NULL also reads the
 * HEARTH_BACKEND environment variable). "auto" takes the GPU when this build has CUDA and a
 * usable GPU is present; when the GPU cannot be used (none, old driver, no memory) the CPU
 * is used and *note (if non-NULL) receives the reason. Caller frees with be_free.
 * (src/backend/select.c) */
int be_new(const char *want, int n_threads, be_ctx **out, char *note, size_t note_len, hb_err *err);
/* The accelerator a context may place layers on: as be_new, but *out is NULL (and the
 * status OK) when the layers run on the CPU alone. The value "cpu-split" (for tests) gives a
 * second CPU backend standing in for an accelerator, so that a split runs without a GPU. */
int be_accel_new(const char *want, int n_threads, be_ctx **out, char *note, size_t note_len, hb_err *err);
void be_free(be_ctx *b);
/* True when this build includes the CUDA backend. */
bool be_cuda_built(void);

/* CPU backend: a context over a pool of n_threads threads. Caller frees with be_cpu_free. */
int be_cpu_new(int n_threads, be_ctx **out, hb_err *err);
void be_cpu_free(be_ctx *b);

#endif
