/* cpu.h — CPU backend primitives: a persistent thread pool and the weight matrix multiply
 * that dominates inference time.
 *
 * Contract for the fast kernels (src/backend/cpu/): cpu_matmul must give the same result as
 * the scalar reference (src/quant: quantize activations to the type's vec_dot_type, then
 * quant_vec_dot per row) up to float summation order. Kernels are chosen at run time from
 * what the CPU and OS allow; the reference path always remains.
 */
#ifndef HEARTH_CPU_H
#define HEARTH_CPU_H

#include <stdint.h>

#include "base/base.h"
#include "quant/quant.h"

/* ---- thread pool -----------------------------------------------------------------------
 * Threads are created once; cpu_pool_run wakes them, runs fn(ctx, ith, nth) on every
 * thread (the calling thread is ith 0) and returns when all have finished. Not re-entrant:
 * one cpu_pool_run at a time per pool. */
typedef struct cpu_pool cpu_pool;
typedef void (*cpu_task_fn)(void *ctx, int ith, int nth);

int cpu_pool_new(int n_threads, cpu_pool **out, hb_err *err); /* caller frees with cpu_pool_free */
void cpu_pool_free(cpu_pool *p);
int cpu_pool_n_threads(const cpu_pool *p);
void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *ctx);

/* ---- instruction-set level (isa.c) -------------------------------------------------------
 * Levels are ordered: each includes the ones below it. AMX is detected (cpuid + XCR0 +
 * Linux arch_prctl permission); it adds int8 tile kernels for prompt processing
 * (matmul_amx.c) and uses the AVX-512 kernels otherwise. */
enum { CPU_ISA_SCALAR = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2, CPU_ISA_AMX = 3 };

typedef struct cpu_features {
    bool avx2;        /* AVX2 + FMA + F16C + BMI2, YMM state enabled by the OS */
    bool avx512;      /* F/BW/VL/DQ + VNNI, ZMM + opmask state enabled by the OS */
    bool avx512_bf16; /* AVX512_BF16 (vdpbf16ps) */
    bool amx;         /* AMX-TILE/INT8/BF16, tile state enabled and permission granted */
    int level;        /* highest CPU_ISA_* the machine allows */
} cpu_features;

/* What the machine allows (detected once; static, never freed). */
const cpu_features *cpu_features_get(void);
/* Level the kernels use now: the detected level capped by HEARTH_CPU_ISA
 * (scalar|avx2|avx512|amx, read once) and by cpu_isa_force. */
int cpu_isa_level(void);
/* Caps the level for the whole process (tests); -1 removes the cap. Weights prepared under
 * one level stay valid under any other (the packed layout does not depend on the level). */
void cpu_isa_force(int level);
const char *cpu_isa_name(int level);

/* ---- weights -----------------------------------------------------------------------------
 * A 2-D weight [n_rows][n_cols] of `type`, rows row_bytes apart, data borrowed from the
 * model mapping. cpu_weight_prepare may build a repacked copy the kernels prefer (owned by
 * the weight, freed by cpu_weight_release): 16 rows interleaved so one 512-bit integer
 * dot-product instruction serves 16 rows, for Q4_0, Q8_0, Q4_K, Q5_K, Q6_K. When
 * `packed` is non-NULL after prepare, the SIMD kernels never read `data`, so the caller may
 * release those pages (hb_map_release); only the scalar level (HEARTH_CPU_ISA=scalar) reads
 * `data` again (the kernel re-faults the pages from the file). */
typedef struct cpu_weight {
    uint32_t type;
    int64_t n_rows, n_cols;
    size_t row_bytes;
    const void *data;        /* borrowed: [n_rows][row_bytes] */
    void *packed;            /* owned, kernel-specific layout, or NULL */
    int packed_kind;         /* kernel-specific tag, 0 = none */
    bool data_mapped;        /* set by the caller: `data` lies in a read-only file mapping,
                              * so after packing its whole pages are dropped (MADV_DONTNEED;
                              * a later read re-faults them from the file) and resident
                              * memory stays ~ file size instead of file + packed copy */
} cpu_weight;

/* Fills w->packed when the CPU has a SIMD level and the type has a packed kernel.
 * HEARTH_E_NOMEM if the copy cannot be allocated (w is then left unpacked and usable). */
int cpu_weight_prepare(cpu_weight *w, hb_err *err);
void cpu_weight_release(cpu_weight *w);

/* Scratch memory for quantized activations; grown on demand, owned by the caller's
 * context (one per context, not shared between threads running different matmuls). */
typedef struct cpu_scratch {
    void *buf;
    size_t cap;
} cpu_scratch;
void cpu_scratch_free(cpu_scratch *s);

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok, r < n_rows.
 * x: [n_tok][n_cols] f32 (contiguous), y: [n_tok][ldy] f32 with ldy >= n_rows.
 * Returns HEARTH_E_NOMEM if scratch cannot grow, HEARTH_E_UNSUPPORTED for a non-compute type. */
int cpu_matmul(cpu_pool *pool, const cpu_weight *w, const float *x, int64_t n_tok,
               float *y, int64_t ldy, cpu_scratch *scratch);

#endif
