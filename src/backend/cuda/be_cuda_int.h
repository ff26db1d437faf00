/* be_cuda_int.h — internal to the CUDA backend's recorder (be_cuda.c) and its step
 * rewriting passes (be_cuda_fuse.c): the recorded op, the backend state, and the one entry
 * point of the rewriting. Not for use outside src/backend/cuda. */
#ifndef HEARTH_BE_CUDA_INT_H
#define HEARTH_BE_CUDA_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"

/* host address -> device copy */
typedef struct cb_map {
    const void *host;
    void *dev;
    size_t bytes;        /* device bytes */
    cuda_weight w;       /* weights only */
    bool borrowed;       /* dev belongs to the model's shared store (cb_store), not to this context */
} cb_map;

/* One recorded op. Every field that decides what the GPU does is in here (zero-filled
 * first), so equal bytes mean an identical step; int arrays live in the step's arena and
 * are referenced by offset, so their values may change without changing the step. */
typedef enum cb_kind {
    CK_GET_ROWS, CK_MATMUL, CK_RMSNORM, CK_ROPE, CK_KV_STORE, CK_ATTN, CK_COPY_ROWS, CK_ADD, CK_SCALE,
    CK_SOFTCAP, CK_GLU, CK_KV_COPY, CK_NOP
} cb_kind;

typedef struct cb_cmd {
    int32_t kind, flag;
    int64_t off[2];      /* arena offsets (ints) of up to two int arrays, -1 = none */
    const void *p[5];    /* device pointers ([3]: fused residual target of a matmul) */
    int64_t n[8];        /* sizes and strides */
    float f[2];
    cuda_weight w;
    cuda_weight wx[2];   /* more weights over the same x, run in the same launch (cb_fuse) */
    const void *yx[2], *addx[2];
    int64_t ldyx[2];
    int64_t n_multi;     /* how many of wx are used */
    const void *px[2];   /* folded into a product (cb_fold): [0] the RMSNorm's input, [1] the GLU's output */
    cuda_rope rope;
    cuda_kv kv;
    cuda_attn at;        /* pos/seq/kv pointers filled at run time */
} cb_cmd;
/* CK_ATTN with flag 2 is the fused decode attention (cb_fuse_attn): rope, k p[2] (stride
 * n[2]), v p[4] (stride n[4]) besides the attention's own fields. */
/* CK_MATMUL with CB_MM_QKVR is a decode product that rotates q/k and stores the KV cell in
 * its epilogue (cb_fuse_qkvr, cu_mvr.cu): rope, off[0] positions, n[5] head size, n[7] the
 * role of output i in bits 2i..2i+1 (CUDA_QKVR_*); with CB_MM_QKVR_KV also kv and off[1]
 * sequences. */
#define CB_MM_QKVR (1 << 11)
#define CB_MM_QKVR_KV (1 << 12)
/* CK_MATMUL whose residual target p[3] the op before it does not write (cb_early_add): its
 * single-token kernel reads the residual before its PDL wait. */
#define CB_MM_EARLY_ADD (1 << 13)
/* CK_MATMUL with CB_MM_QKVR that also runs the attention after it (cb_qkva_rule,
 * cu_qkva.cu); that CK_ATTN carries CB_AT_BY_QKVA and does nothing itself. Its quantized
 * output lands in the second activation scratch: the product reading it has CB_MM_ACT2. */
#define CB_MM_QKVA (1 << 14)
#define CB_MM_ACT2 (1 << 15)
#define CB_AT_BY_QKVA 4
/* CK_ATTN fused by cb_fuse_attn by default (HEARTH_CUDA_DATTN unset): at run time the
 * one-block-per-head kernel when it takes the shape, else the separate RoPE + KV store and
 * attention (the fused split kernel is slower in whole models). */
#define CB_AT_DEC_ONLY 8
/* Op classes of the diagnostics switch HEARTH_CUDA_DROP (cb_drop, be_cuda_fuse.c). */
#define CB_DROP_ATTN 1
#define CB_DROP_QKV 2
#define CB_DROP_O 4
#define CB_DROP_GU 8
#define CB_DROP_DOWN 16
#define CB_DROP_OUT 32
#define CB_DROP_NORM 64
_Static_assert(sizeof(cb_cmd) % 8 == 0, "cb_cmd is hashed as 64-bit words");

/* A step seen before: after one eager run it is captured, then replayed. */
typedef struct cb_graph {
    uint64_t sig, gen, last_use;
    uint64_t raw;        /* signature of the commands as recorded, before the rewrite (0: none) */
    cuda_graph *g;       /* NULL until captured */
} cb_graph;

#define CB_GRAPHS 48
#define CB_DEDUP 8
#define CB_ROPE_TABLES 8
#define CB_PINS 4
#define CB_RD_PIN_MAX ((int64_t)1 << 20) /* most floats read through pinned memory (be_cuda.c) */

typedef struct cuda_be {
    cuda_ctx *cu;
    cuda_knobs kn;       /* the context's switches, copied at creation: the step rewriter reads
                          * only these, so its tests need no GPU */
    hb_err err;          /* first failure (sticky) */
    cb_map *map;         /* weights, float arrays and KV shadows */
    size_t n_map, cap_map;
    size_t map_hint;     /* where cb_find starts: a step looks its entries up in the same order each time */
    cb_cmd *cmd;         /* the step being recorded */
    size_t n_cmd, cap_cmd;
    int32_t *arena_host; /* pinned: int arrays of the step */
    int32_t *arena_dev;
    int64_t arena_used, arena_cap;
    int64_t arena_sent;  /* ints of this step already queued for upload (a segment ran) */
    bool arena_pending;  /* an upload may still read arena_host: sync before reusing it */
    bool partial;        /* the commands being rewritten/run are a segment, more of the step follows */
    int seg_layers;      /* segments grow to this many layers (be_ops.submit); 0 = the whole step at the read */
    int seg_first;       /* layers of a step's first segment; each next one grows, up to seg_layers */
    int seg_grow;        /* by this factor (HEARTH_CUDA_SEG_GROW, default 8) */
    int seg_count;       /* layers recorded since the last segment ran */
    float *rd_host;      /* pinned staging of cb_read, rd_cap floats */
    size_t rd_cap;
    struct { void *p; size_t bytes; } pin[CB_PINS]; /* be_ops.host_alloc's blocks: read straight into */
    int seg_next;        /* layers of the segment being recorded (0: the step's first) */
    struct { const int32_t *host; int64_t n, off; } dedup[CB_DEDUP];
    int n_dedup;
    cb_graph graphs[CB_GRAPHS];
    uint64_t clock;
    /* how segments ran (HEARTH_CUDA_STATS=1 prints them at teardown): replayed without a
     * rewrite, replayed, captured, eager (first sighting, stale or graphs off); commands.
     * st_prev: the last segments' rewritten commands, to report where an eager segment
     * first differs from the one before it of the same length (st_diff: command, byte) */
    uint64_t st_raw, st_replay, st_capture, st_eager, st_cmds;
    cb_cmd *st_prev[4];
    size_t st_nprev[4];
    int st_next;
    struct { int32_t cmd, kind, byte; } st_diff[8];
    int st_ndiff;
    /* the GPU's timeline per step (graphs on): timing events at a step's first enqueued work
     * and after its last (events 2k, 2k+1 of step parity k); st_busy_ms sums the spans from
     * a step's first work to its end, st_idle_ms the gaps from a step's end to the next
     * one's first work (the host's turn: reading logits, recording, uploading) */
    bool st_in_step;
    uint64_t st_steps, st_gaps;
    double st_busy_ms, st_idle_ms;
    /* HEARTH_CUDA_PROFILE: GPU time per kind of op (label), over the context's life */
    struct cb_prof { char label[40]; double ms; uint64_t n; } *prof;
    int n_prof, cap_prof;
    bool graphs_off;     /* HEARTH_CUDA_GRAPHS=0, or a capture failed */
    bool fuse_off;       /* HEARTH_CUDA_FUSE=0 */
    bool qkvr_norm;      /* the RMSNorm before q/k/v runs in the product's blocks (opt-in, HEARTH_CUDA_QKVR_NORM=1) */
    cuda_mega *mega;     /* persistent decode kernel; NULL when off (HEARTH_CUDA_MEGA=0) or unusable */
    uint64_t mega_no[CB_GRAPHS]; /* signatures of steps it refused (they run as graphs) */
    int n_mega_no;
    struct { float base; int32_t n_rot; double *dev; } rope_inv[CB_ROPE_TABLES]; /* cb_rope_inv */
    int n_rope_inv;
    struct cb_store *store; /* the model's shared weights (cb_store_join), or NULL */
    const uint8_t *share_lo, *share_hi; /* host range whose weights go to the store */
} cuda_be;

/* ---- be_cuda_share.c: the model's weights shared by its contexts (be_share) ---- */
/* Joins (or creates) the store in slot when it is for c's GPU; *shared: its bytes now. */
int cb_store_join(cuda_be *c, be_share_slot *slot, uint64_t *shared, hb_err *err);
/* The shared device copy of host's `bytes` (uploaded now, under the store's lock, and
 * complete before it is returned, when no context made it yet); NULL on failure. */
void *cb_store_get(cuda_be *c, const void *host, size_t bytes, hb_err *err);
/* Gives back c's hold on that copy (context teardown); the last holder frees it. */
void cb_store_put(cuda_be *c, const void *host, size_t bytes);

/* The HEARTH_CUDA_DROP class (CB_DROP_*) of a rewritten command, 0 for none (be_cuda_fuse.c). */
int cb_drop_class(const cb_cmd *k);

/* Rewrites the recorded step c->cmd[0..n_cmd) into fewer, fused ops (be_cuda_fuse.c): ops
 * that disappear become CK_NOP; the result runs exactly what the ops described. */
void cb_rewrite(cuda_be *c);

#endif
