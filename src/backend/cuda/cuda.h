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

/* Device memory. cuda_alloc returns 256-byte aligned memory (caller frees with cuda_free);
 * HEARTH_E_NOMEM when the device is full. */
int cuda_alloc(cuda_ctx *c, void **out_dev, size_t bytes, hb_err *err);
void cuda_free(cuda_ctx *c, void *p_dev);
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

/* out[i][0..n_cols) = dequantized row ids_host[i] of w (ids validated by the caller). */
int cuda_get_rows(cuda_ctx *c, const cuda_weight *w, const int32_t *ids_host, int64_t n, float *out,
                  hb_err *err);

/* ---- measurement --------------------------------------------------------------------- */
/* Measures the device's read bandwidth (a streaming read of a buffer several times the L2,
 * best of a few runs) in bytes per second. */
int cuda_measure_bandwidth(cuda_ctx *c, double *bytes_per_s, hb_err *err);

#ifdef __cplusplus
}
#endif
#endif
