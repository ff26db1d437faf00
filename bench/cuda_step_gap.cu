/* cuda_step_gap.cu — microbenchmark (not part of hearth): what the host round trip between
 * two decode steps costs, by part. A "step" is an id-copy kernel (one block copying 64 ints
 * to device memory) and six 15 us spin kernels on 132 blocks, the last of which stores
 * 32000 floats of "logits"; the host loop is `hearth bench`'s: put the ids, run the step,
 * get the logits, wait, check them. Variants: ids copied in by the copy engine or read by
 * the first kernel from mapped host memory; logits copied out by the copy engine or stored
 * by the last kernel into mapped host memory; no graph (7 launches); the graph alone; and
 * the seven kernels with programmatic dependent launch as one graph or as three. Prints
 * the best of three runs of N steps (default 2000), in us per step and over the kernels.
 *   nvcc -O3 -arch=sm_90 -o /tmp/cuda_step_gap bench/cuda_step_gap.cu && /tmp/cuda_step_gap [N]
 * Session 29 on an H200 (docs/performance.md): 21-24 us over the kernels with both copies,
 * 15-16 with both mapped, 12 for the graph alone; one graph boundary ~1.5 us. In hearth the
 * mapped stores did not pay: a product that stores its logits over PCIe stalls on them. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <cuda_runtime.h>

#define CK(x)                                                                                \
    do {                                                                                     \
        cudaError_t e_ = (x);                                                                \
        if (e_ != cudaSuccess) {                                                             \
            printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));      \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define NV 32000  /* logits */
#define NID 64    /* ids */
#define NK 6      /* spin kernels per step */
#define SPIN_NS 15000ull

static __device__ uint64_t gtime(void) {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __global__ void ids_kernel(const int *src, int *dst, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

/* Waits for the kernel before (a no-op without PDL), spins, and stores the logits if asked. */
static __global__ void spin_kernel(const int *ids, float *out, int nv, uint64_t ns) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;");
    uint64_t t0 = gtime();
    int v = ids[0];
    while (gtime() - t0 < ns) {
    }
    if (out)
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nv; i += gridDim.x * blockDim.x) out[i] = (float)(v + i);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

typedef struct bufs {
    int *ids_h, *ids_d, *ids_m, *ids_dev; /* pinned, device, mapped (same address), the kernels' copy */
    float *lg_h, *lg_d, *lg_m;
} bufs;

/* Queues kernels [k0, k1) of a step (0: the id copy, 1..NK: the spin kernels). */
static void enqueue(cudaStream_t s, const bufs *B, bool mapped_in, bool mapped_out, bool pdl, int k0, int k1) {
    for (int k = k0; k < k1; k++) {
        cudaLaunchConfig_t cf = {};
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cf.gridDim = dim3(k == 0 ? 1 : 132), cf.blockDim = dim3(k == 0 ? 64 : 256), cf.stream = s;
        cf.attrs = at, cf.numAttrs = pdl ? 1 : 0;
        if (k == 0) {
            CK(cudaLaunchKernelEx(&cf, ids_kernel, (const int *)(mapped_in ? B->ids_m : B->ids_d), B->ids_dev, NID));
        } else {
            float *out = k == NK ? (mapped_out ? B->lg_m : B->lg_d) : (float *)NULL;
            CK(cudaLaunchKernelEx(&cf, spin_kernel, (const int *)B->ids_dev, out, NV, SPIN_NS));
        }
    }
}

static cudaGraphExec_t capture(cudaStream_t s, const bufs *B, bool min, bool mout, bool pdl, int k0, int k1) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    enqueue(s, B, min, mout, pdl, k0, k1);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    return ge;
}

/* One variant: n_graphs graphs (0: plain launches) cut at cut[], copies as asked. */
static void run(cudaStream_t s, const bufs *B, const char *name, bool min, bool mout, bool copies, bool pdl,
                int n_graphs, const int *cut, int iters) {
    cudaGraphExec_t ge[3] = { 0 };
    for (int g = 0; g < n_graphs; g++) ge[g] = capture(s, B, min, mout, pdl, cut[g], cut[g + 1]);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_us();
        for (int i = 0; i < iters; i++) {
            int *ih = min ? B->ids_m : B->ids_h;
            for (int j = 0; j < NID; j++) ih[j] = i + j;
            if (copies && !min) CK(cudaMemcpyAsync(B->ids_d, B->ids_h, NID * 4, cudaMemcpyHostToDevice, s));
            if (n_graphs)
                for (int g = 0; g < n_graphs; g++) CK(cudaGraphLaunch(ge[g], s));
            else
                enqueue(s, B, min, mout, pdl, 0, NK + 1);
            if (copies && !mout) CK(cudaMemcpyAsync(B->lg_h, B->lg_d, NV * 4, cudaMemcpyDeviceToHost, s));
            CK(cudaStreamSynchronize(s));
            const float *lh = mout ? B->lg_m : B->lg_h;
            if (copies && lh[5] != (float)(i + 5)) {
                printf("%s: wrong logits at step %d (%f)\n", name, i, lh[5]);
                exit(1);
            }
        }
        double per = (now_us() - t0) / iters;
        if (per < best) best = per;
    }
    for (int g = 0; g < n_graphs; g++) CK(cudaGraphExecDestroy(ge[g]));
    printf("%-52s %8.2f us per step, %6.2f over the %d us of kernels\n", name, best, best - NK * SPIN_NS / 1000.0,
           (int)(NK * SPIN_NS / 1000));
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    if (iters < 1) iters = 1;
    cudaStream_t s;
    bufs B;
    CK(cudaSetDeviceFlags(cudaDeviceMapHost));
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaHostAlloc((void **)&B.ids_h, NID * 4, 0));
    CK(cudaMalloc((void **)&B.ids_d, NID * 4));
    CK(cudaMalloc((void **)&B.ids_dev, NID * 4));
    CK(cudaHostAlloc((void **)&B.ids_m, NID * 4, cudaHostAllocMapped));
    CK(cudaHostAlloc((void **)&B.lg_h, NV * 4, 0));
    CK(cudaMalloc((void **)&B.lg_d, NV * 4));
    CK(cudaHostAlloc((void **)&B.lg_m, NV * 4, cudaHostAllocMapped));
    void *d1, *d2;
    CK(cudaHostGetDevicePointer(&d1, B.ids_m, 0));
    CK(cudaHostGetDevicePointer(&d2, B.lg_m, 0));
    if (d1 != (void *)B.ids_m || d2 != (void *)B.lg_m) {
        printf("mapped host memory has another device address here\n");
        return 1;
    }
    int one[2] = { 0, NK + 1 }, three[4] = { 0, 2, 4, NK + 1 };
    run(s, &B, "ids in, graph, logits out (copy engine)", false, false, true, false, 1, one, iters);
    run(s, &B, "ids read from mapped memory, logits out", true, false, true, false, 1, one, iters);
    run(s, &B, "ids in, graph storing logits into mapped memory", false, true, true, false, 1, one, iters);
    run(s, &B, "both mapped", true, true, true, false, 1, one, iters);
    run(s, &B, "no graph: ids in, 7 launches, logits out", false, false, true, false, 0, one, iters);
    run(s, &B, "graph only (no copies)", false, false, false, false, 1, one, iters);
    run(s, &B, "PDL, one graph, no copies", false, false, false, true, 1, one, iters);
    run(s, &B, "PDL, three graphs, no copies", false, false, false, true, 3, three, iters);
    return 0;
}
