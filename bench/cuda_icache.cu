/* cuda_icache.cu — microbenchmark (not part of hearth): what running code an SM has not
 * cached costs while the memory system is busy with a weight stream. A probe kernel (one
 * warp) runs a straight line of 1024 FMAs (4 independent chains; 16 KB of machine code) twice, the
 * second time from the instruction cache, and reports both times in cycles. It runs alone
 * and beside a kernel that keeps every SM streaming a large buffer (the decode step's
 * situation: each layer's kernels start while ~25 MB of weight copies are queued). Each
 * measurement uses its own copy of the code (a template instance), so the first pass is
 * cold. Prints cycles: cold, warm, and the stream's bandwidth; then the second pass for
 * 16-128 KB of code, which says how much code the SM keeps.
 *   nvcc -O3 -arch=sm_90 -o /tmp/cuda_icache bench/cuda_icache.cu && /tmp/cuda_icache
 * Session 36 on an H200 (docs/performance.md): 16 KB cold 2287-2765 cycles, cached 1060-1186,
 * the same beside a 4.6 TB/s stream; 32 KB cached 2341, 48 KB 6822 (= cold): ~32 KB kept. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

#define F1(c) asm volatile("fma.rn.f32 %0, %0, %4, " #c ".0;\n\tfma.rn.f32 %1, %1, %4, " #c ".0;\n\tfma.rn.f32 %2, %2, %4, " #c ".0;\n\tfma.rn.f32 %3, %3, %4, " #c ".0;" : "+f"(a), "+f"(b), "+f"(d), "+f"(e) : "f"(m));
#define F4(c) F1(c) F1(c##1) F1(c##2) F1(c##3)
#define F16(c) F4(c) F4(c##4) F4(c##5) F4(c##6)
#define F64(c) F16(c) F16(c##7) F16(c##8) F16(c##9)
#define F256(c) F64(c##1) F64(c##2) F64(c##3) F64(c##4)

/* 16 KB of code per F256; KB: 16, 32, 48, 64 or 128 */
template <int V, int KB>
static __device__ __forceinline__ float body(float a, float m) {
    float b = a + 1.0f, d = a + 2.0f, e = a + 3.0f;
    F256(1)
    if (KB >= 32) { F256(2) }
    if (KB >= 48) { F256(3) }
    if (KB >= 64) { F256(4) }
    if (KB >= 128) { F256(5) F256(6) F256(7) F256(8) }
    return a + b + d + e + (float)V;
}

/* One warp: two passes over body<V>, cycles of each into out[0..1]. */
template <int V, int KB = 16>
static __global__ void probe(float *sink, long long *out, float m) {
    float a = (float)threadIdx.x;
    long long t[3];
#pragma unroll 1
    for (int p = 0; p < 2; p++) { /* one copy of the code: the second pass finds it cached */
        t[p] = clock64();
        a = body<V, KB>(a, m);
    }
    t[2] = clock64();
    if (a == 12345.0f) sink[threadIdx.x] = a;
    if (threadIdx.x == 0) out[0] = t[1] - t[0], out[1] = t[2] - t[1];
}

/* Every thread streams its share of buf, `reps` times (loads in flight: 4 x 16 B). */
static __global__ void stream(const uint4 *buf, size_t n, int reps, unsigned *sink) {
    unsigned acc = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (int r = 0; r < reps; r++)
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i + 3 * stride < n; i += 4 * stride) {
            uint4 x0 = __ldcs(buf + i), x1 = __ldcs(buf + i + stride), x2 = __ldcs(buf + i + 2 * stride),
                  x3 = __ldcs(buf + i + 3 * stride);
            acc ^= x0.x ^ x1.y ^ x2.z ^ x3.w;
        }
    if (acc == 0x12345678u) sink[0] = acc;
}

typedef void (*probe_fn)(float *, long long *, float);

int main(void) {
    probe_fn fns[8] = { probe<0>, probe<1>, probe<2>, probe<3>, probe<4>, probe<5>, probe<6>, probe<7> };
    size_t bytes = (size_t)2 << 30, n = bytes / 16;
    uint4 *buf;
    float *sink;
    long long *out, h[2];
    unsigned *usink;
    int sms;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaMalloc(&buf, bytes));
    CK(cudaMemset(buf, 1, bytes));
    CK(cudaMalloc(&sink, 4096));
    CK(cudaMalloc(&usink, 64));
    CK(cudaMalloc(&out, 16 * sizeof(long long)));
    cudaStream_t s1, s2;
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int it = 0; it < 16; it++) { /* round 2 (it >= 8): the code is in L2 or the SM's caches */
        int v = it & 7;
        bool busy = v & 1;
        if (busy) { /* 3 blocks of 512 threads per SM leave room for the probe's warp */
            CK(cudaEventRecord(e0, s1));
            stream<<<3 * sms, 512, 0, s1>>>(buf, n, 4, usink);
            CK(cudaEventRecord(e1, s1));
            CK(cudaStreamSynchronize(s2));
            /* let the stream fill the queues: spin on the host ~200 us */
            cudaEvent_t q;
            CK(cudaEventCreate(&q));
            for (volatile int k = 0; k < 200000; k++) {}
            CK(cudaEventDestroy(q));
        }
        fns[v]<<<1, 32, 0, s2>>>(sink, out, 1.0001f);
        CK(cudaMemcpyAsync(h, out, sizeof h, cudaMemcpyDeviceToHost, s2));
        CK(cudaStreamSynchronize(s2));
        CK(cudaDeviceSynchronize());
        float ms = 0.0f;
        if (busy) CK(cudaEventElapsedTime(&ms, e0, e1));
        printf("round %d, %s: first pass %lld cycles, second %lld cycles%s", it / 8 + 1, busy ? "beside the stream" : "alone            ", h[0], h[1],
               busy ? "" : "\n");
        if (busy) printf(", stream %.0f GB/s\n", 4.0 * bytes / (ms * 1e6));
    }
    /* capacity: the second pass stays near 1186 cycles per 16 KB while the code fits */
    probe_fn cap[5] = { probe<10, 16>, probe<11, 32>, probe<14, 48>, probe<12, 64>, probe<13, 128> };
    int kbs[5] = { 16, 32, 48, 64, 128 };
    for (int i = 0; i < 5; i++) {
        cap[i]<<<1, 32, 0, s2>>>(sink, out, 1.0001f);
        CK(cudaMemcpyAsync(h, out, sizeof h, cudaMemcpyDeviceToHost, s2));
        CK(cudaStreamSynchronize(s2));
        printf("%3d KB of code: first pass %lld cycles, second %lld (%.0f per 16 KB)\n", kbs[i], h[0], h[1],
               (double)h[1] * 16 / kbs[i]);
    }
    return 0;
}
