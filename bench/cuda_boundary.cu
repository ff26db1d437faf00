/* cuda_boundary.cu — microbenchmark (not part of hearth): the cost of one dependent kernel
 * boundary in a CUDA graph. 200 trivial kernels in a chain, each reading the previous one's
 * output, launched three ways: plain graph nodes; with programmatic dependent launch (each
 * kernel triggers its dependents at once and waits with griddepcontrol.wait, as hearth's
 * decode kernels do); and with PDL but a counter in global memory instead of the wait (each
 * block adds 1 after its stores and a fence, thread 0 of each block of the next kernel spins
 * with acquire loads until all have). Prints microseconds per kernel.
 *   nvcc -O3 -arch=sm_90 -o /tmp/cuda_boundary bench/cuda_boundary.cu && /tmp/cuda_boundary [blocks]
 * Session 16 on an H200 (docs/performance.md): 0.75-0.95 us per boundary with PDL, 1.0-1.2
 * without, 2.0-4.3 with counters. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

__global__ void k_pdl(float *buf, int k, int n) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) buf[(k + 1) % 2 * n + i] = buf[k % 2 * n + i] * 1.0001f + 1.0f;
}

__global__ void k_flag(float *buf, unsigned *cnt, int k, int n, unsigned nb) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    if (k > 0) {
        if (threadIdx.x == 0) {
            unsigned v;
            do { asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt + k - 1) : "memory"); } while (v < nb);
        }
        __syncthreads();
    }
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) buf[(k + 1) % 2 * n + i] = buf[k % 2 * n + i] * 1.0001f + 1.0f;
    __syncthreads();
    if (threadIdx.x == 0) { __threadfence(); atomicAdd(cnt + k, 1u); }
}

int main(int argc, char **argv) {
    int K = 200, nb = argc > 1 ? atoi(argv[1]) : 528, thr = 128, n = nb * thr;
    float *buf; unsigned *cnt;
    CK(cudaMalloc(&buf, 2 * n * sizeof(float)));
    CK(cudaMalloc(&cnt, K * sizeof(unsigned)));
    CK(cudaMemset(buf, 0, 2 * n * sizeof(float)));
    cudaStream_t s; CK(cudaStreamCreate(&s));
    for (int mode = 0; mode < 3; mode++) {
        cudaGraph_t g; cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        if (mode == 2) CK(cudaMemsetAsync(cnt, 0, K * sizeof(unsigned), s));
        for (int k = 0; k < K; k++) {
            cudaLaunchConfig_t c = {}; cudaLaunchAttribute at[1];
            c.gridDim = nb, c.blockDim = thr, c.stream = s;
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization, at[0].val.programmaticStreamSerializationAllowed = mode > 0;
            c.attrs = at, c.numAttrs = 1;
            if (mode < 2) CK(cudaLaunchKernelEx(&c, k_pdl, buf, k, n));
            else CK(cudaLaunchKernelEx(&c, k_flag, buf, cnt, k, n, (unsigned)nb));
        }
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        for (int w = 0; w < 5; w++) CK(cudaGraphLaunch(ge, s));
        CK(cudaStreamSynchronize(s));
        cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
        cudaEventRecord(a, s);
        int R = 50;
        for (int r = 0; r < R; r++) CK(cudaGraphLaunch(ge, s));
        cudaEventRecord(b, s);
        CK(cudaStreamSynchronize(s));
        float ms; cudaEventElapsedTime(&ms, a, b);
        printf("blocks %4d  %-22s %.3f us per kernel\n", nb, mode == 0 ? "graph, no PDL" : mode == 1 ? "graph + PDL wait" : "graph + PDL + flags", ms * 1000 / R / K);
    }
    return 0;
}
