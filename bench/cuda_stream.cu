/* cuda_stream.cu — microbenchmark (not part of hearth): can a one-token F16 mat-vec that
 * keeps few blocks per SM and a deep ring of bulk copies (TMA) let the NEXT product's
 * blocks become resident early and queue their weights before their PDL wait, so that a
 * chain of dependent products runs near the weight stream?
 *
 * The chain is one TinyLlama-1.1B decode step without the small ops: per layer q/k/v (2560
 * x 2048), a stub "attention" kernel (32 blocks, reads q, writes 2048 values), o (2048 x
 * 2048, residual add), gate/up (11264 x 2048) and down (2048 x 5632 over the first half of
 * gate/up's output, residual add); 22 layers, then the output product (32000 x 2048). All
 * launches carry the PDL attribute and are captured in one graph.
 *
 * Kernel: NW consumer warps + one producer warp per block. The producer's lane 0 streams
 * the block's groups of R rows (even share of the groups) into a ring of shared-memory
 * stages with cp.async.bulk, from before the PDL wait (weights never depend on the previous
 * kernel). Consumers wait, load their activations into registers (thread t: 8-column groups
 * t, t + 256, ...), then per stage: R dot products per thread, a warp reduction, a named
 * barrier, warp 0 sums the warps in order.
 *
 * Variants: the block kernel above (sv_kernel); warp-per-row (sw_kernel: each warp its own
 * rows and its own full/empty barriers, no block barrier); groups handed out by an atomic
 * counter instead of even shares (dyn).
 *   nvcc -O3 -arch=sm_90 -o /tmp/cuda_stream bench/cuda_stream.cu && /tmp/cuda_stream
 * Prints microseconds per step and per layer for ring sizes and blocks per SM, and the
 * stream rate of one product class repeated.
 * Session 23 on an H100 (hearth's real F16 step in the same call: 933 us, 1071 t/s): the
 * best chain of products alone took 864 us (block kernel, 2 blocks per SM, 96 KB rings;
 * or 4 blocks x 24 KB with dyn), gate/up at 3.0 TB/s when repeated, down at 2.3-2.5 TB/s;
 * one block per SM (room for the next kernel's block to queue its ring before its PDL
 * wait) was slower at every ring size (gate/up 2.4-2.8 TB/s), warp-per-row likewise
 * (957-1002 us), PDL off barely changed warp-per-row, dyn within noise. So the next
 * kernel's early copies do not buy what the F16 step's boundaries cost; not pursued. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); exit(1); } } while (0)

#define NW 8
#define NT (NW * 32 + 32)
#define MAXNS 16

struct sv_args {
    const __half *w;
    const float *x;
    float *y;
    int rows, n, ns, add, pol;
    int *ctr; /* non-NULL: groups handed out by atomicAdd on *ctr (zeroed before the step) */
};

__device__ __forceinline__ uint32_t sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_init(uint64_t *b, uint32_t c) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sa(b)), "r"(c) : "memory"); }
__device__ __forceinline__ void mb_expect(uint64_t *b, uint32_t n) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(b)), "r"(n) : "memory"); }
__device__ __forceinline__ void mb_arrive(uint64_t *b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sa(b)) : "memory"); }
__device__ __forceinline__ void mb_wait(uint64_t *b, uint32_t par) {
    uint32_t d = 0;
    while (!d)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(d) : "r"(sa(b)), "r"(par) : "memory");
}
__device__ __forceinline__ void bulk(void *dst, const void *src, uint32_t n, uint64_t *b, uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;"
                 ::"r"(sa(dst)), "l"(src), "r"(n), "r"(sa(b)), "l"(pol) : "memory");
}

/* The 8 halves of q times x[0..8): even products into t0, odd ones into t1 (t0 and t1 may
 * be the same variable). */
__device__ __forceinline__ void dot8(uint4 q, const float *x, float &t0, float &t1) {
    const __half2 *h = (const __half2 *)&q;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 f = __half22float2(h[k]);
        t0 = fmaf(f.x, x[2 * k], t0);
        t1 = fmaf(f.y, x[2 * k + 1], t1);
    }
}

template <int G, int R>
__global__ void __launch_bounds__(NT, 1) sv_kernel(sv_args a) {
    extern __shared__ __align__(128) uint8_t ring[];
    __shared__ __align__(8) uint64_t full[MAXNS], empty[MAXNS];
    __shared__ float red[2][NW][R];
    __shared__ int gidx[MAXNS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t rb = (size_t)a.n * 2, sb = rb * R;
    const int ngr = a.rows / R, g0 = (int)((long)ngr * blockIdx.x / gridDim.x), g1 = (int)((long)ngr * (blockIdx.x + 1) / gridDim.x);
    const int ng = g1 - g0;
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.ns; s++) mb_init(&full[s], 1), mb_init(&empty[s], NW);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (warp == NW) { /* producer */
        if (lane == 0) {
            uint64_t pol;
            if (a.pol) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
            else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(pol));
            if (a.ctr) {
                int next = atomicAdd(a.ctr, 1);
                for (int i = 0;; i++) {
                    int s = i % a.ns, g = next;
                    if (g < ngr) next = atomicAdd(a.ctr, 1);
                    if (i >= a.ns) mb_wait(&empty[s], (uint32_t)((i / a.ns - 1) & 1));
                    gidx[s] = g < ngr ? g : -1;
                    if (g >= ngr) {
                        mb_arrive(&full[s]);
                        break;
                    }
                    mb_expect(&full[s], (uint32_t)sb);
                    bulk(ring + s * sb, (const uint8_t *)a.w + (size_t)g * sb, (uint32_t)sb, &full[s], pol);
                }
            } else
                for (int i = 0; i < ng; i++) {
                    int s = i % a.ns;
                    if (i >= a.ns) mb_wait(&empty[s], (uint32_t)((i / a.ns - 1) & 1));
                    mb_expect(&full[s], (uint32_t)sb);
                    bulk(ring + s * sb, (const uint8_t *)a.w + (size_t)(g0 + i) * sb, (uint32_t)sb, &full[s], pol);
                }
        }
        return;
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    const int ngc = a.n / 8;
    float xr[G][8];
#pragma unroll
    for (int j = 0; j < G; j++) {
        int c = threadIdx.x + j * NW * 32;
        if (c < ngc) {
            float4 u = *(const float4 *)(a.x + c * 8), v = *(const float4 *)(a.x + c * 8 + 4);
            xr[j][0] = u.x, xr[j][1] = u.y, xr[j][2] = u.z, xr[j][3] = u.w, xr[j][4] = v.x, xr[j][5] = v.y, xr[j][6] = v.z, xr[j][7] = v.w;
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) xr[j][k] = 0.0f;
        }
    }
    for (int i = 0; a.ctr || i < ng; i++) {
        int s = i % a.ns;
        mb_wait(&full[s], (uint32_t)((i / a.ns) & 1));
        int grp = a.ctr ? gidx[s] : g0 + i;
        if (grp < 0) break;
        const uint8_t *st = ring + s * sb;
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            float t = 0.0f;
#pragma unroll
            for (int j = 0; j < G; j++) {
                int c = threadIdx.x + j * NW * 32;
                if (c < ngc) dot8(*(const uint4 *)(st + r * rb + (size_t)c * 16), xr[j], t, t);
            }
            acc[r] = t;
        }
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int o = 16; o; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
        __syncwarp();
        if (lane == 0) {
            mb_arrive(&empty[s]);
#pragma unroll
            for (int r = 0; r < R; r++) red[i & 1][warp][r] = acc[r];
        }
        asm volatile("bar.sync 1, %0;" ::"r"(NW * 32) : "memory");
        if (warp == 0 && lane < R) {
            float t = 0.0f;
#pragma unroll
            for (int w = 0; w < NW; w++) t += red[i & 1][w][lane];
            size_t row = (size_t)grp * R + lane;
            a.y[row] = a.add ? a.y[row] + t : t;
        }
    }
}


/* Warp-per-row variant: warp w takes the block's rows w, w + NW, ...; each (warp, slot) has
 * its own full/empty barrier pair, so no block barrier in the loop. XR > 0: the lane's x
 * (8-column groups lane + 32 j, j < XR) in registers; XR == 0: x staged in shared memory. */
template <int XR>
__global__ void __launch_bounds__(NT, 1) sw_kernel(sv_args a) {
    extern __shared__ __align__(128) uint8_t ring[];
    __shared__ __align__(8) uint64_t full[NW * 4], empty[NW * 4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t rb = (size_t)a.n * 2;
    const int K = a.ns; /* slots per warp */
    const int r0 = (int)((long)a.rows * blockIdx.x / gridDim.x), r1 = (int)((long)a.rows * (blockIdx.x + 1) / gridDim.x);
    const int nr = r1 - r0;
    float *xs = (float *)(ring + (size_t)NW * K * rb);
    if (threadIdx.x == 0) {
        for (int s = 0; s < NW * K; s++) mb_init(&full[s], 1), mb_init(&empty[s], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (warp == NW) {
        if (lane == 0) {
            uint64_t pol;
            if (a.pol) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
            else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(pol));
            for (int i = 0; i < nr; i++) {
                int w = i % NW, u = i / NW, s = w * K + u % K;
                if (u >= K) mb_wait(&empty[s], (uint32_t)((u / K - 1) & 1));
                mb_expect(&full[s], (uint32_t)rb);
                bulk(ring + (size_t)s * rb, (const uint8_t *)a.w + (size_t)(r0 + i) * rb, (uint32_t)rb, &full[s], pol);
            }
        }
        return;
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    const int ngc = a.n / 8;
    float xr[XR > 0 ? XR : 1][8];
    if (XR > 0) {
#pragma unroll
        for (int j = 0; j < (XR > 0 ? XR : 1); j++) {
            int c = lane + j * 32;
            float4 u = *(const float4 *)(a.x + c * 8), v = *(const float4 *)(a.x + c * 8 + 4);
            xr[j][0] = u.x, xr[j][1] = u.y, xr[j][2] = u.z, xr[j][3] = u.w, xr[j][4] = v.x, xr[j][5] = v.y, xr[j][6] = v.z, xr[j][7] = v.w;
        }
    } else {
        for (int i = threadIdx.x; i < a.n / 4; i += NW * 32) ((float4 *)xs)[i] = ((const float4 *)a.x)[i];
        asm volatile("bar.sync 1, %0;" ::"r"(NW * 32) : "memory");
    }
    for (int u = 0; warp + u * NW < nr; u++) {
        int s = warp * K + u % K, row = r0 + warp + u * NW;
        mb_wait(&full[s], (uint32_t)((u / K) & 1));
        const uint8_t *st = ring + (size_t)s * rb;
        float t0 = 0.0f, t1 = 0.0f;
        if (XR > 0) {
#pragma unroll
            for (int j = 0; j < (XR > 0 ? XR : 1); j++) dot8(*(const uint4 *)(st + (size_t)(lane + j * 32) * 16), xr[j], t0, t1);
        } else {
#pragma unroll 4
            for (int c = lane; c < ngc; c += 32) {
                uint4 q = *(const uint4 *)(st + (size_t)c * 16);
                float4 xa = ((const float4 *)xs)[2 * c], xb = ((const float4 *)xs)[2 * c + 1];
                const __half2 *h = (const __half2 *)&q;
                float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]), f3 = __half22float2(h[3]);
                t0 = fmaf(f0.x, xa.x, t0), t1 = fmaf(f0.y, xa.y, t1), t0 = fmaf(f1.x, xa.z, t0), t1 = fmaf(f1.y, xa.w, t1);
                t0 = fmaf(f2.x, xb.x, t0), t1 = fmaf(f2.y, xb.y, t1), t0 = fmaf(f3.x, xb.z, t0), t1 = fmaf(f3.y, xb.w, t1);
            }
        }
        float t = t0 + t1;
        __syncwarp();
        if (lane == 0) mb_arrive(&empty[s]);
#pragma unroll
        for (int o = 16; o; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        if (lane == 0) a.y[row] = a.add ? a.y[row] + t : t;
    }
}

__global__ void attn_stub(const float *q, float *o) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    int i = blockIdx.x * 64 + (threadIdx.x & 63);
    __shared__ float s[128];
    s[threadIdx.x] = q[i] * 0.01f;
    __syncthreads();
    if (threadIdx.x < 64) o[i] = s[threadIdx.x] + s[threadIdx.x + 64];
}

__global__ void fill(__half *w, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        w[i] = __float2half(((float)(h & 0xffff) / 65536.0f - 0.5f) * 0.02f);
    }
}

static int g_sms, g_bps, g_ring_kb, g_pdl = 1, g_pol = 1, g_warp = 0, g_dyn = 0, g_launch;
static int *g_ctr;

static void launch_sv(cudaStream_t s, const __half *w, const float *x, float *y, int rows, int n, int add) {
    sv_args a = {w, x, y, rows, n, 0, add, g_pol, g_dyn ? g_ctr + g_launch++ : NULL};
    int R = n > 4096 ? 2 : 4;
    size_t sb = (size_t)n * 2 * R;
    a.ns = (int)(g_ring_kb * 1024 / sb);
    if (a.ns > MAXNS) a.ns = MAXNS;
    if (a.ns < 2) a.ns = 2;
    cudaLaunchConfig_t c = {};
    cudaLaunchAttribute at[1];
    int grid = g_sms * g_bps;
    if (grid > rows / R) grid = rows / R;
    c.gridDim = grid, c.blockDim = NT, c.stream = s, c.dynamicSmemBytes = a.ns * sb;
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization, at[0].val.programmaticStreamSerializationAllowed = g_pdl;
    c.attrs = at, c.numAttrs = 1;
    if (g_warp) {
        size_t rb = (size_t)n * 2, xb = n == 2048 ? 0 : (size_t)n * 4;
        a.ns = (int)((g_ring_kb * 1024 - xb) / (rb * NW));
        if (a.ns > 4) a.ns = 4;
        if (a.ns < 1) a.ns = 1;
        c.gridDim = g_sms * g_bps, c.dynamicSmemBytes = a.ns * rb * NW + xb;
        if (n == 2048) CK(cudaLaunchKernelEx(&c, sw_kernel<8>, a));
        else CK(cudaLaunchKernelEx(&c, sw_kernel<0>, a));
    } else if (n == 2048) CK(cudaLaunchKernelEx(&c, sv_kernel<1, 4>, a));
    else CK(cudaLaunchKernelEx(&c, sv_kernel<3, 2>, a));
}

static void launch_attn(cudaStream_t s, const float *q, float *o) {
    cudaLaunchConfig_t c = {};
    cudaLaunchAttribute at[1];
    c.gridDim = 32, c.blockDim = 128, c.stream = s;
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization, at[0].val.programmaticStreamSerializationAllowed = g_pdl;
    c.attrs = at, c.numAttrs = 1;
    CK(cudaLaunchKernelEx(&c, attn_stub, q, o));
}

#define NL 22
static __half *W[NL][4], *WOUT;
static float *h, *q, *att, *gu, *logits;

/* what: 0 the step, 1 gate/up only x22, 2 down only x22, 3 qkv+attn+o only, 4 output only x5 */
static double time_graph(cudaStream_t s, int what) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    g_launch = 0;
    CK(cudaMemsetAsync(g_ctr, 0, 4096 * sizeof(int), s));
    for (int l = 0; l < NL; l++) {
        if (what == 0 || what == 3) {
            launch_sv(s, W[l][0], h, q, 2560, 2048, 0);
            launch_attn(s, q, att);
            launch_sv(s, W[l][1], att, h, 2048, 2048, 1);
        }
        if (what == 0 || what == 1) launch_sv(s, W[l][2], h, gu, 11264, 2048, 0);
        if (what == 0 || what == 2) launch_sv(s, W[l][3], gu, h, 2048, 5632, 1);
    }
    if (what == 0) launch_sv(s, WOUT, h, logits, 32000, 2048, 0);
    if (what == 4)
        for (int k = 0; k < 5; k++) launch_sv(s, WOUT, h, logits, 32000, 2048, 0);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    for (int i = 0; i < 5; i++) CK(cudaGraphLaunch(ge, s));
    CK(cudaStreamSynchronize(s));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    int reps = 40;
    cudaEventRecord(e0, s);
    for (int i = 0; i < reps; i++) CK(cudaGraphLaunch(ge, s));
    cudaEventRecord(e1, s);
    CK(cudaStreamSynchronize(s));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    return ms * 1000.0 / reps;
}

int main(int argc, char **argv) {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    g_sms = p.multiProcessorCount;
    size_t rows[4] = {2560, 2048, 11264, 2048}, cols[4] = {2048, 2048, 2048, 5632};
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < 4; k++) {
            CK(cudaMalloc(&W[l][k], rows[k] * cols[k] * 2));
            fill<<<1024, 256>>>(W[l][k], rows[k] * cols[k], (uint32_t)(l * 4 + k));
        }
    CK(cudaMalloc(&WOUT, (size_t)32000 * 2048 * 2));
    fill<<<1024, 256>>>(WOUT, (size_t)32000 * 2048, 999u);
    CK(cudaMalloc(&h, 8192 * 4));
    CK(cudaMalloc(&q, 8192 * 4));
    CK(cudaMalloc(&att, 8192 * 4));
    CK(cudaMalloc(&gu, 11264 * 4));
    CK(cudaMalloc(&logits, 32000 * 4));
    CK(cudaMalloc(&g_ctr, 4096 * sizeof(int)));
    CK(cudaMemset(h, 0, 8192 * 4));
    CK(cudaMemset(gu, 0, 11264 * 4));
    CK(cudaDeviceSynchronize());
    CK(cudaFuncSetAttribute(sv_kernel<1, 4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    CK(cudaFuncSetAttribute(sv_kernel<3, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    CK(cudaFuncSetAttribute(sw_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    CK(cudaFuncSetAttribute(sw_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    double layer_mb = (2560.0 * 2048 + 2048.0 * 2048 + 11264.0 * 2048 + 2048.0 * 5632) * 2 / 1e6;
    double step_mb = layer_mb * NL + 32000.0 * 2048 * 2 / 1e6;
    printf("%s, %d SMs; step %.0f MB of weights (%.1f MB per layer)\n", p.name, g_sms, step_mb, layer_mb);
    /* blocks per SM, ring KB, PDL, warp-per-row */
    /* blocks per SM, ring KB, PDL, warp-per-row, dynamic groups */
    int cfg[][5] = {{2, 96, 1, 0, 0}, {2, 96, 1, 0, 1}, {1, 96, 1, 0, 1}, {1, 160, 1, 0, 1}, {1, 64, 1, 0, 1}, {2, 64, 1, 0, 1}, {3, 64, 1, 0, 1}, {4, 24, 1, 0, 0}, {4, 24, 1, 0, 1}, {2, 96, 0, 0, 1}};
    int ncfg = sizeof cfg / sizeof cfg[0];
    if (argc > 1) g_pol = atoi(argv[1]);
    for (int k = 0; k < ncfg; k++) {
        g_bps = cfg[k][0], g_ring_kb = cfg[k][1], g_pdl = cfg[k][2], g_warp = cfg[k][3], g_dyn = cfg[k][4];
        double st = time_graph(s, 0), gu_t = time_graph(s, 1), dn = time_graph(s, 2), at = time_graph(s, 3), ou = time_graph(s, 4);
        printf("%s%s bps %d ring %3d KB pdl %d: step %7.1f us (%5.1f us/layer, %4.0f GB/s, %5.0f t/s)  gate/up %5.2f us (%4.0f GB/s)  down %5.2f (%4.0f GB/s)  qkv+attn+o %5.2f  output %5.2f (%4.0f GB/s)\n",
               g_warp ? "warp " : "block", g_dyn ? " dyn" : "    ", g_bps, g_ring_kb, g_pdl, st, st / NL, step_mb * 1e-3 / (st * 1e-6), 1e6 / st, gu_t / NL,
               11264.0 * 2048 * 2 / (gu_t / NL * 1e3), dn / NL, 2048.0 * 5632 * 2 / (dn / NL * 1e3), at / NL, ou / 5,
               32000.0 * 2048 * 2 / (ou / 5 * 1e3));
    }
    return 0;
}
