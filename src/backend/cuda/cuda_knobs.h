/* cuda_knobs.h — the CUDA backend's tuning and experiment switches (HEARTH_CUDA_* and
 * HEARTH_GEMMF* environment variables), read once when a context is created
 * (cuda_ctx_new calls cuda_knobs_from_env) and held by that context: kernel launchers and
 * the step rewriter consult their context's copy (cuda_ctx_knobs), so no code keeps
 * process-wide state for them and a test can reason about one context at a time.
 *
 * Values are stored already checked: out-of-range or malformed settings fall back to the
 * default. A field documented "0: the kernel's default" keeps its default beside the kernel
 * it tunes (a macro of that .cu file), because that is where the measurement behind it is
 * written down. Every switch is described in docs/cuda.md ("Switches"); the defaults are
 * the measured-fastest settings, the others exist for before/after measurements.
 * Diagnostics of the trace build (HEARTH_CUDA_TRACE*, cu_device.cu) are not here: they only
 * exist with CUDA_TRACE=1.
 */
#ifndef HEARTH_CUDA_KNOBS_H
#define HEARTH_CUDA_KNOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuda_knobs {
    /* ---- the step recorder and its rewriting (be_cuda.c, be_cuda_fuse.c) ---- */
    bool graphs;          /* HEARTH_CUDA_GRAPHS=0: steps run eagerly, never as CUDA graphs */
    bool fuse;            /* HEARTH_CUDA_FUSE=0: no rewriting of recorded steps */
    bool mega;            /* HEARTH_CUDA_MEGA=1: the persistent decode kernel (experimental) */
    int seg_layers;       /* HEARTH_CUDA_SEG: segments grow to this many layers (default 24; 0: the whole step) */
    int seg_first;        /* HEARTH_CUDA_SEG_FIRST: layers of the first segment (default 1) */
    int seg_grow;         /* HEARTH_CUDA_SEG_GROW: growth factor, 2..64 (default 8) */
    bool stats;           /* HEARTH_CUDA_STATS=1: diagnostics, how steps ran (replayed, captured, eager), on stderr at teardown */
    bool profile;         /* HEARTH_CUDA_PROFILE=1: diagnostics, steps run op by op and each op timed (table on stderr at teardown) */
    int drop;             /* HEARTH_CUDA_DROP: diagnostics, a mask of op classes left out of every step (0) */
    int x_cols;           /* HEARTH_CUDA_X_COLS: diagnostics, per mille of each row the one-token persistent float
                           * product reads and multiplies (1000; fewer: wrong results, the step's time with fewer weight bytes) */
    int x_skip;           /* HEARTH_CUDA_X_SKIP: diagnostics, N >= 2: only every N-th block of the one-token persistent
                           * float product reads its activations (0; wrong results, the step's time with fewer x reads) */
    bool x_skip_pf;       /* HEARTH_CUDA_X_SKIP_PF=1: diagnostics, the blocks that skip x still fetch its lines (a prefetch
                           * per thread: no wait for it, more requests than the loads) */
    bool qkvr;            /* HEARTH_CUDA_QKVR=0: RoPE + KV store not folded into the q/k/v product */
    bool qkvr_norm;       /* HEARTH_CUDA_QKVR_NORM=1: the RMSNorm before q/k/v in the product's blocks */
    bool qkvr_mix;        /* HEARTH_CUDA_QKVR_MIX=0: products of two types never share a launch */
    bool qkva;            /* HEARTH_CUDA_QKVA=1: q/k/v + attention in one clustered launch */
    int dattn;            /* HEARTH_CUDA_DATTN: the fused decode attention (RoPE + store + attention): 1 always, 0 never, unset (2) after float q/k/v products */
    bool attn_q;          /* HEARTH_CUDA_ATTN_Q=0: the attention does not quantize its output */
    int mvf_fuse;         /* HEARTH_CUDA_MVF_FUSE: 0 no float-product folds, 1 GLU + norm in any form, 2 (default) GLU + epilogue norm */
    bool l2_stream;       /* HEARTH_CUDA_L2_STREAM=0: the decode products' weights get no L2 streaming window (cu_stream_window) */
    bool early_add;       /* HEARTH_CUDA_EARLY_ADD=0: no residual read before the PDL wait */
    /* ---- launches and memory (cu_device.cu, cu_internal.cuh) ---- */
    bool pdl;             /* HEARTH_CUDA_PDL=0: no programmatic dependent launch */
    size_t mem_limit;     /* HEARTH_CUDA_MEM_LIMIT: bytes beyond the runtime's own (0: the whole device) */
    /* ---- attention (cu_attn*.cu, cu_dattn.cu, cu_ops.cu, cu_qkva.cu) ---- */
    bool attn_dec;        /* HEARTH_CUDA_ATTN_DEC=0: the one-pass decode attention off */
    bool attn_dec_rope;   /* HEARTH_CUDA_ATTN_DEC_ROPE=0: the fused RoPE + KV store + attention op uses the split kernel */
    bool attn_tc;         /* HEARTH_CUDA_ATTN_TC=1: the short-context decode attention on the tensor cores (off by default) */
    int attn_tc_rpb;      /* HEARTH_CUDA_ATTN_TC_RPB: its query heads per block (1..16; 0: a kv head's group) */
    int attn_dec_max;     /* HEARTH_CUDA_ATTN_DEC_MAX: largest position bucket (power of two 128..8192; 0: the kernel's default) */
    bool attn_fold;       /* HEARTH_CUDA_ATTN_FOLD=1: the combine pass in the split kernel */
    int at_min_span;      /* HEARTH_CUDA_AT_MIN_SPAN: 16, 32 (default), 64 or 128 cells */
    int at_min_blocks;    /* HEARTH_CUDA_AT_MIN_BLOCKS: 1..4096 (0: the kernel's default) */
    int pfattn_min;       /* HEARTH_CUDA_PFATTN_MIN: 9..4096 (0: the kernel's default); INT32_MAX with HEARTH_CUDA_PFATTN=0 */
    int dattn_one;        /* HEARTH_CUDA_DATTN_ONE=128: one split up to 128 cells (else 0) */
    int dattn_min_blocks; /* HEARTH_CUDA_DATTN_MIN_BLOCKS: 1..4096 (0: the kernel's default) */
    long dattn_stage;     /* HEARTH_CUDA_DATTN_STAGE: staged cell bytes per block, 0..160 KiB (default 64 KiB) */
    int dattn_dang;       /* HEARTH_CUDA_DATTN_DANG: 0 (default) or 1 */
    int qkva_bh;          /* HEARTH_CUDA_QKVA_BH: 2 or 4 blocks per query head (0: the kernel's default) */
    /* ---- quantized products (cu_matmul.cu, cu_mvq.cu) ---- */
    bool mv1;             /* HEARTH_CUDA_MV1=0: no single-token product kernels */
    bool mv1s;            /* HEARTH_CUDA_MV1S=0: no two-chunk single-token instance */
    bool mv1_tma;         /* HEARTH_CUDA_MV1_TMA=0: no bulk-copy staging in them */
    bool mvt_t2;          /* HEARTH_CUDA_MVT_T2=0: two tokens take MVT_KERNEL's four-token instance */
    int mvt;              /* HEARTH_CUDA_MVT: persistent kernel for 2..8 quantized tokens (MVT_KERNEL): 0 never, 1 Q4_0/Q8_0/Q4_K/Q6_K, 2 (default) Q4_0/Q8_0 only (the two it measured faster for) */
    int mmt;              /* HEARTH_CUDA_MMT=0: no int8 tensor-core kernel for batches of Q4_0/Q8_0/Q4_K/Q6_K rows (cu_mmt.cu; tried inside mvt_try, so HEARTH_CUDA_MVT=0 turns it off too) */
    bool mmt_k4;          /* HEARTH_CUDA_MMT_K4=0: Q4_K rows do not take it */
    bool mmt_k6;          /* HEARTH_CUDA_MMT_K6=0: Q6_K rows do not take it */
    bool mmt_long;        /* HEARTH_CUDA_MMT_LONG=0: only rows of <= 64 chunks take it (not 65..192) */
    int mmt_min;          /* HEARTH_CUDA_MMT_MIN: fewest tokens it takes (default 5; below, MVT_KERNEL or, for Q4_K/Q6_K, the generic kernel measured faster in a whole step) */
    int mmt_ns;           /* HEARTH_CUDA_MMT_NS: its ring of 16-row tiles, 2..4 (default 2) */
    int mvs;              /* HEARTH_CUDA_MVS: 0 off, 1..8 blocks per SM of the streaming kernel (default 4) */
    bool norm_mb;         /* HEARTH_CUDA_NORM_MB=0: one block per row in the quantizing RMSNorm */
    bool pq;              /* HEARTH_CUDA_PQ=1: products quantize their own input */
    int64_t pq_max;       /* HEARTH_CUDA_PQ_MAX: most n_tok * n for that (default 8192; 0 off) */
    int pq_nw;            /* HEARTH_CUDA_PQ_NW: 4, 8 (default) or 16 warps per block */
    int pq_rpw;           /* HEARTH_CUDA_PQ_RPW: 1..64 rows per warp (0: chosen per call) */
    bool gu;              /* HEARTH_CUDA_GU=0: gate/up + GLU as separate kernels */
    bool gu1;             /* HEARTH_CUDA_GU1=0: no single-token gate/up kernel */
    bool gu3;             /* HEARTH_CUDA_GU3=0: no three-buffer single-token gate/up kernel */
    bool gu_tma;          /* HEARTH_CUDA_GU_TMA=0: no bulk-copy staging in the gate/up kernel */
    int gu_per;           /* HEARTH_CUDA_GU_PER: 1 or 2 outputs per pass (0: chosen per call) */
    int gu_t;             /* HEARTH_CUDA_GU_T: most tokens of the fused gate/up kernel, 1 (default)..4 */
    bool qkvr_kq;         /* HEARTH_CUDA_QKVR_KQ=1: Q4_K/Q6_K q/k/v products of 2+ tokens take the RoPE epilogue too */
    int fuse_t;           /* HEARTH_CUDA_FUSE_T: most tokens of a step that take the q/k/v + RoPE epilogue, the
                           * float products' GLU and norm folds and the fused decode attention, 1..8 (default 4) */
    /* ---- float products (cu_mvf.cu, cu_gemm_f.cu) ---- */
    int mvf_bps;          /* HEARTH_CUDA_MVF_BPS: 1 (default)..3 blocks per SM of the streaming kernel */
    int mvf_ipt;          /* HEARTH_CUDA_MVF_IPT: 1..8 column groups per thread of the row-pair kernel (default 3) */
    int mvf_rp;           /* HEARTH_CUDA_MVF_RP: row pairs per block, 1 or 2 (default) */
    bool mvf_enorm;       /* HEARTH_CUDA_MVF_ENORM=0: no norm in the four-row kernel's epilogue */
    bool mvf_j3;          /* HEARTH_CUDA_MVF_J3=0: no three-group one-token instance (long rows) */
    int mvf_ps;           /* HEARTH_CUDA_MVF_PS: 0 off, 2..3 stages of the persistent one-token row-group kernel (default 2) */
    bool mvf_ps_long;     /* HEARTH_CUDA_MVF_PS_LONG=0: not for rows of more than 2 * blockDim column groups */
    int mvf_ps_r2;        /* HEARTH_CUDA_MVF_PS_R2: 0..3, groups of 2 rows instead of 4 (bit 0: rows of <= 2 * blockDim column groups, bit 1: longer; default 2: the long rows in pairs, session 33) */
    bool mvf_pb;          /* HEARTH_CUDA_MVF_PB=0: no persistent float kernel for 2..8 tokens (mvp4t_kernel) */
    int mvf_pb_mode;      /* HEARTH_CUDA_MVF_PB_MODE: experiments, bit 0 no shared-memory carveout preference, bit 1 groups of 2 rows for three column groups, bit 3 those rows with the tokens split between block pairs, bit 4 no 4-token instance for 2..4 tokens, bit 5 no 2-token instance for 2 tokens (default 8) */
    bool mvf_ps_r8;       /* HEARTH_CUDA_MVF_PS_R8=1: groups of 8 rows for rows of at most two column groups per thread (2048 columns) */
    bool mvf_t256;        /* HEARTH_CUDA_MVF_T256=1: 256-thread four-row blocks for rows of >= 2048 columns (else 128 at 2048) */
    int mvf_ps_min;       /* HEARTH_CUDA_MVF_PS_MIN: only for products of at least this many row groups (default 0) */
    bool mvf_ps_even;     /* HEARTH_CUDA_MVF_PS_EVEN=0: as many blocks as fit, even if some get one group more */
    int mvf_ps_bps;       /* HEARTH_CUDA_MVF_PS_BPS: 1..16 blocks per SM of it (0: as many as fit) */
    int mvf_mode;         /* HEARTH_CUDA_MVF_MODE: experiment bits 0..63 (default 0) */
    int mvf_ns;           /* HEARTH_CUDA_MVF_NS: tiles in the ring, from 2 (0: the kernel's default) */
    int mvf_norm_part;    /* HEARTH_CUDA_MVF_NORM_PART: columns per norm block, a multiple of 32 (0: the kernel's default) */
    bool gemmf;           /* HEARTH_GEMMF=0: the older F16 prefill kernels */
    int gemmf_bn;         /* HEARTH_GEMMF_BN: 64 or 128 forces the tile width (else 0) */
    bool gemmf_wide;      /* HEARTH_GEMMF_WIDE=1: the wide 128-row tile */
    /* ---- the persistent kernel (cu_mega*.cu) ---- */
    int mega_adec;        /* HEARTH_CUDA_MEGA_ADEC: 0 off, 1 (default), 2 always the fallback (tests) */
    bool mega_prof;       /* HEARTH_CUDA_MEGA_PROF=N > 0: block 0 timestamps every op */
    bool mega_sync;       /* HEARTH_CUDA_MEGA_SYNC=0: no barrier between independent ops */
} cuda_knobs;

/* Fills *k from the environment (every field; defaults for what is unset or malformed). */
void cuda_knobs_from_env(cuda_knobs *k);

#ifdef __cplusplus
}
#endif

#endif
