/* cu_device.cu — device discovery and the context (device, stream, scratch), memory
 * transfers, and the bandwidth measurement used by `hearth bench`.
 *
 * Every CUDA call is checked: no GPU, a driver older than the runtime this was built with,
 * or a full device come back as clear messages, so the caller can fall back to the CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_internal.cuh"

int cu_fail(hb_err *err, cudaError_t e, const char *what) {
    int code = HEARTH_E_INTERNAL;
    if (e == cudaErrorMemoryAllocation) code = HEARTH_E_NOMEM;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice ||
        e == cudaErrorNoKernelImageForDevice || e == cudaErrorUnsupportedPtxVersion ||
        e == cudaErrorSystemDriverMismatch || e == cudaErrorCompatNotSupportedOnDevice ||
        e == cudaErrorInitializationError)
        code = HEARTH_E_UNSUPPORTED;
    cudaGetLastError(); /* clear a sticky-free error so later calls start clean */
    return hb_fail(err, code, "CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int cu_check_launch(hb_err *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, what);
}

int cuda_device_from_env(hb_err *err) {
    const char *s = getenv("HEARTH_CUDA_DEVICE");
    if (!s || !*s) return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 1024) {
        hb_fail(err, HEARTH_E_INVALID, "HEARTH_CUDA_DEVICE=%s is not a device number", s);
        return -1;
    }
    return (int)v;
}

int cuda_probe(int ordinal, cuda_dev_info *info, hb_err *err) {
    cudaError_t e;
    int n = 0, drv = 0, rt = 0;
    memset(info, 0, sizeof *info);
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv == 0)
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no NVIDIA driver found (libcuda is not loadable)");
    if (drv < rt)
        return hb_fail(err, HEARTH_E_UNSUPPORTED,
                       "CUDA: the NVIDIA driver supports CUDA %d.%d but this build needs %d.%d; update the driver",
                       drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    if ((e = cudaGetDeviceCount(&n)) != cudaSuccess) return cu_fail(err, e, "listing GPUs");
    if (n <= 0) return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: no GPU found");
    if (ordinal < 0 || ordinal >= n)
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: device %d does not exist (%d GPU%s found)", ordinal, n,
                       n == 1 ? "" : "s");
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, ordinal)) != cudaSuccess) return cu_fail(err, e, "reading device properties");
    if (p.major < 7)
        return hb_fail(err, HEARTH_E_UNSUPPORTED, "CUDA: %s has compute capability %d.%d; hearth needs 7.0 or newer",
                       p.name, p.major, p.minor);
    if ((e = cudaSetDevice(ordinal)) != cudaSuccess) return cu_fail(err, e, "selecting the GPU");
    if ((e = cudaMemGetInfo(&info->mem_free, &info->mem_total)) != cudaSuccess)
        return cu_fail(err, e, "reading free GPU memory");
    info->ordinal = ordinal;
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->l2_bytes = (size_t)p.l2CacheSize;
    info->l2_window = p.accessPolicyMaxWindowSize > 0 ? (size_t)p.accessPolicyMaxWindowSize : 0;
    info->driver_version = drv;
    info->runtime_version = rt;
    return HEARTH_OK;
}

int cu_enter(cuda_ctx *c, hb_err *err) {
    cudaError_t e = cudaSetDevice(c->info.ordinal);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "selecting the GPU");
}

int cuda_ctx_new(int ordinal, cuda_ctx **out, hb_err *err) {
    int rc;
    cudaError_t e;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    *out = NULL;
    if (!c) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    if ((rc = cuda_probe(ordinal, &c->info, err))) goto out;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        rc = cu_fail(err, e, "creating a stream");
        goto out;
    }
    cuda_knobs_from_env(&c->knobs);
    { /* what is in use before c allocates anything: HEARTH_CUDA_MEM_LIMIT counts beyond it */
        size_t f = 0, t = 0;
        if (cudaMemGetInfo(&f, &t) == cudaSuccess) c->mem_base = t - f;
    }
    *out = c;
    c = NULL;
out:
    cuda_ctx_free(c);
    return rc;
}

void cu_scratch_release(cu_scratch *s) {
    if (s->p) cudaFree(s->p);
    s->p = NULL;
    s->cap = 0;
}

int cu_scratch_grow(cuda_ctx *c, cu_scratch *s, size_t bytes, hb_err *err) {
    if (s->cap >= bytes) return HEARTH_OK;
    c->gen++;
    cu_scratch_release(s);
    size_t cap = bytes + bytes / 4 + 4096;
    cudaError_t e = cudaMalloc(&s->p, cap);
    if (e != cudaSuccess) {
        s->p = NULL;
        return cu_fail(err, e, "allocating GPU scratch memory");
    }
    s->cap = cap;
    return HEARTH_OK;
}

extern "C" int cuda_prof_mark(cuda_ctx *c, int i, hb_err *err) {
    cudaError_t e = cudaSuccess;
    if (i < 0 || i >= CUDA_PROF_EVENTS) return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: timing event %d out of range", i);
    if (!c->prof_ev[i]) e = cudaEventCreate(&c->prof_ev[i]);
    if (e == cudaSuccess) e = cudaEventRecord(c->prof_ev[i], c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "recording a timing event");
}

extern "C" int cuda_prof_ms(cuda_ctx *c, int i, int j, float *ms, hb_err *err) {
    *ms = 0.0f;
    if (i < 0 || j < 0 || i >= CUDA_PROF_EVENTS || j >= CUDA_PROF_EVENTS || !c->prof_ev[i] || !c->prof_ev[j])
        return hb_fail(err, HEARTH_E_INTERNAL, "CUDA: no timing events %d, %d", i, j);
    cudaError_t e = cudaEventSynchronize(c->prof_ev[j]);
    if (e == cudaSuccess) e = cudaEventElapsedTime(ms, c->prof_ev[i], c->prof_ev[j]);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "reading timing events");
}

void cuda_ctx_free(cuda_ctx *c) {
    if (!c) return;
    cudaSetDevice(c->info.ordinal);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < CUDA_PROF_EVENTS; i++)
        if (c->prof_ev[i]) cudaEventDestroy(c->prof_ev[i]);
    cu_scratch_release(&c->act);
    cu_scratch_release(&c->act2);
    cu_scratch_release(&c->f16a);
    cu_scratch_release(&c->f16w);
    cu_scratch_release(&c->ids);
    cu_scratch_release(&c->attn);
    cu_scratch_release(&c->attn_cnt);
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++) {
        if (c->stage[i].host) cudaFreeHost(c->stage[i].host);
        if (c->stage[i].ev) cudaEventDestroy(c->stage[i].ev);
        cu_scratch_release(&c->stage[i].dev);
    }
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

int cuda_ctx_enter(cuda_ctx *c, hb_err *err) {
    return cu_enter(c, err);
}

const cuda_dev_info *cuda_ctx_info(const cuda_ctx *c) {
    return &c->info;
}

const cuda_knobs *cuda_ctx_knobs(const cuda_ctx *c) {
    return &c->knobs;
}

cuda_knobs *cuda_ctx_knobs_edit(cuda_ctx *c) {
    return &c->knobs;
}

/* HEARTH_CUDA_MEM_LIMIT (c->knobs.mem_limit, for testing the fallbacks): device memory c may
 * take beyond what was in use when it was created. 0: the whole device. */
int cuda_mem_info(cuda_ctx *c, size_t *free_b, size_t *total_b, hb_err *err) {
    int rc;
    size_t f = 0, t = 0, lim = c->knobs.mem_limit;
    if ((rc = cu_enter(c, err))) return rc;
    cudaError_t e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) return cu_fail(err, e, "reading free GPU memory");
    if (lim) {
        size_t used = t - f > c->mem_base ? t - f - c->mem_base : 0;
        f = used >= lim ? 0 : (lim - used < f ? lim - used : f);
        t = lim < t ? lim : t;
    }
    *free_b = f;
    *total_b = t;
    return HEARTH_OK;
}

int cuda_alloc(cuda_ctx *c, void **out_dev, size_t bytes, hb_err *err) {
    int rc;
    *out_dev = NULL;
    if ((rc = cu_enter(c, err))) return rc;
    if (c->knobs.mem_limit) {
        size_t f = 0, t = 0;
        if ((rc = cuda_mem_info(c, &f, &t, err))) return rc;
        if (bytes > f)
            return hb_fail(err, HEARTH_E_NOMEM, "CUDA: allocating %zu MiB of GPU memory failed: over HEARTH_CUDA_MEM_LIMIT",
                           bytes >> 20);
    }
    if (bytes > SIZE_MAX - 255) return hb_fail(err, HEARTH_E_NOMEM, "CUDA: allocation of %zu bytes is too large", bytes);
    /* sizes rounded up to 256 bytes: a kernel may read a whole aligned 16-byte piece that
     * covers the end of a buffer (the persistent kernel's weight stream does) */
    cudaError_t e = cudaMalloc(out_dev, bytes ? (bytes + 255) & ~(size_t)255 : 256);
    if (e != cudaSuccess) {
        *out_dev = NULL;
        char what[96];
        snprintf(what, sizeof what, "allocating %zu MiB of GPU memory", bytes >> 20);
        return cu_fail(err, e, what);
    }
    return HEARTH_OK;
}

void cuda_free(cuda_ctx *c, void *p_dev) {
    if (!p_dev) return;
    cudaSetDevice(c->info.ordinal);
    cudaFree(p_dev);
}

void cuda_dev_free(int ordinal, void *p_dev) {
    if (!p_dev) return;
    cudaSetDevice(ordinal);
    cudaFree(p_dev);
}

int cuda_upload(cuda_ctx *c, void *dst_dev, const void *src_host, size_t bytes, hb_err *err) {
    int rc;
    if ((rc = cu_enter(c, err))) return rc;
    /* Pageable host memory: the copy is staged by the driver and done when this returns,
     * ordered after the work already on the stream. */
    cudaError_t e = cudaMemcpyAsync(dst_dev, src_host, bytes, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "copying to the GPU");
}

int cuda_download(cuda_ctx *c, void *dst_host, const void *src_dev, size_t bytes, hb_err *err) {
    int rc;
    if ((rc = cu_enter(c, err))) return rc;
    cudaError_t e = cudaMemcpyAsync(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "copying from the GPU");
}

int cuda_copy(cuda_ctx *c, void *dst_dev, const void *src_dev, size_t bytes, hb_err *err) {
    cudaError_t e = cudaMemcpyAsync(dst_dev, src_dev, bytes, cudaMemcpyDeviceToDevice, c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "copying on the GPU");
}

int cuda_sync(cuda_ctx *c, hb_err *err) {
    cudaError_t e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "running GPU work");
}

/* ---- bandwidth ------------------------------------------------------------------------- */

/* Each thread reads 16-byte vectors, grid-strided; the xor result is stored only if it hits
 * an impossible value so the compiler cannot drop the loads. */
static __global__ void bw_read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    uint32_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldcs(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

static __global__ void bw_fill_kernel(uint4 *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = make_uint4((unsigned)i * 2654435761u, (unsigned)i, ~(unsigned)i, (unsigned)(i >> 7));
}

int cuda_measure_bandwidth(cuda_ctx *c, double *bytes_per_s, hb_err *err) {
    int rc = HEARTH_OK;
    void *buf = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    *bytes_per_s = 0;
    /* 32x the L2 (at least 1 GiB), capped by free memory */
    size_t bytes = c->info.l2_bytes * 32;
    if (bytes < ((size_t)1 << 30)) bytes = (size_t)1 << 30;
    if (bytes > c->info.mem_free / 4) bytes = c->info.mem_free / 4;
    bytes &= ~(size_t)4095;
    size_t n = bytes / 16;
    if ((rc = cuda_alloc(c, &buf, bytes + 256, err))) goto out;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    {
        unsigned grid = (unsigned)c->info.sm_count * 8;
        unsigned *sink = (unsigned *)((uint8_t *)buf + bytes);
        bw_fill_kernel<<<grid, 256, 0, c->stream>>>((uint4 *)buf, n);
        float best = 1e30f;
        for (int it = 0; it < 6; it++) {
            cudaEventRecord(e0, c->stream);
            bw_read_kernel<<<grid, 512, 0, c->stream>>>((const uint4 *)buf, n, sink);
            cudaEventRecord(e1, c->stream);
            cudaError_t e = cudaEventSynchronize(e1);
            if (e != cudaSuccess) {
                rc = cu_fail(err, e, "measuring bandwidth");
                goto out;
            }
            float ms = 0;
            cudaEventElapsedTime(&ms, e0, e1);
            if (it > 0 && ms < best) best = ms; /* the first run is a warm-up */
        }
        *bytes_per_s = (double)bytes / (best * 1e-3);
    }
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cuda_free(c, buf);
    return rc;
}

/* ---- graphs ------------------------------------------------------------------------------ */

struct cuda_graph {
    cudaGraph_t g;
    cudaGraphExec_t exec;
};

uint64_t cuda_ctx_generation(const cuda_ctx *c) {
    return c->gen;
}

int cuda_capture_begin(cuda_ctx *c, hb_err *err) {
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "starting a graph capture");
}

int cuda_capture_end(cuda_ctx *c, cuda_graph **out, hb_err *err) {
    cudaGraph_t g = NULL;
    *out = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e != cudaSuccess) return cu_fail(err, e, "ending a graph capture");
    cuda_graph *cg = (cuda_graph *)calloc(1, sizeof *cg);
    if (!cg) {
        cudaGraphDestroy(g);
        return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    }
    cg->g = g;
    if ((e = cudaGraphInstantiate(&cg->exec, g, 0)) != cudaSuccess) {
        cudaGraphDestroy(g);
        free(cg);
        return cu_fail(err, e, "instantiating a graph");
    }
    *out = cg;
    return HEARTH_OK;
}

#ifndef HEARTH_CUDA_TRACE
int cuda_graph_launch(cuda_ctx *c, cuda_graph *g, hb_err *err) {
    cudaError_t e = cudaGraphLaunch(g->exec, c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "launching a graph");
}
#else
/* Diagnostics build only (see cu_internal.cuh): the tables of every .cu file, and the dump
 * of replay number HEARTH_CUDA_TRACE_AT (default 40) to the file HEARTH_CUDA_TRACE. */
static struct {
    const char *file;
    void *(*addr)(void);
} cu_tr_files[32];
static int cu_tr_n, cu_tr_replays;

void cu_trace_register(const char *file, void *(*addr)(void)) {
    if (cu_tr_n < 32) cu_tr_files[cu_tr_n].file = file, cu_tr_files[cu_tr_n++].addr = addr;
}

int cuda_graph_launch(cuda_ctx *c, cuda_graph *g, hb_err *err) {
    const char *path = getenv("HEARTH_CUDA_TRACE"), *at = getenv("HEARTH_CUDA_TRACE_AT");
    int dump = path && ++cu_tr_replays == (at ? atoi(at) : 40);
    size_t bytes = sizeof(cu_tr_rec) * CU_TR_SLOTS;
    if (dump) {
        cudaStreamSynchronize(c->stream);
        for (int i = 0; i < cu_tr_n; i++)
            if (cu_tr_files[i].addr()) cudaMemset(cu_tr_files[i].addr(), 0, bytes);
        cudaDeviceSynchronize();
    }
    cudaError_t e = cudaGraphLaunch(g->exec, c->stream);
    if (dump && e == cudaSuccess) {
        cudaStreamSynchronize(c->stream);
        FILE *f = fopen(path, "a");
        cu_tr_rec *h = (cu_tr_rec *)malloc(bytes);
        for (int i = 0; f && h && i < cu_tr_n; i++) {
            void *d = cu_tr_files[i].addr();
            if (!d || cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) continue;
            for (int k = 0; k < CU_TR_SLOTS; k++)
                if (h[k].gid)
                    fprintf(f, "%s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
                            cu_tr_files[i].file, h[k].line_dim & 0xffff, (h[k].line_dim >> 16) & 0xffffffffull,
                            h[k].line_dim >> 48, ~h[k].ne_min, h[k].e_max, ~h[k].nw_min, h[k].w_max, h[k].mk[0],
                            h[k].mk[1], h[k].mk[2], h[k].mk[3], h[k].mk[4], h[k].mk[5], h[k].mk[6], h[k].mk[7],
                            h[cu_tr_slot(h[k].gid)].end_max);
        }
        if (f) fprintf(f, "END\n"), fclose(f);
        free(h);
    }
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "launching a graph");
}
#endif

void cuda_graph_free(cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->g);
    free(g);
}

int cuda_host_alloc(size_t bytes, void **out, hb_err *err) {
    *out = NULL;
    cudaError_t e = cudaMallocHost(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *out = NULL;
        return cu_fail(err, e, "allocating pinned host memory");
    }
    return HEARTH_OK;
}

void cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

int cuda_upload_async(cuda_ctx *c, void *dst_dev, const void *src_pinned, size_t bytes, hb_err *err) {
    cudaError_t e = cudaMemcpyAsync(dst_dev, src_pinned, bytes, cudaMemcpyHostToDevice, c->stream);
    return e == cudaSuccess ? HEARTH_OK : cu_fail(err, e, "uploading step inputs");
}
