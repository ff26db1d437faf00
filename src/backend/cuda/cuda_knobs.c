/* cuda_knobs.c — reads the CUDA backend's switches from the environment (cuda_knobs.h). */
#include "backend/cuda/cuda_knobs.h"

#include <stdlib.h>
#include <string.h>

/* The variable's text, or NULL when unset or empty. */
static const char *knob_str(const char *name) {
    const char *s = getenv(name);
    return s && *s ? s : NULL;
}

/* A switch: on by default, off when it starts with '0' (def true); or off by default, on
 * when it starts with '1' (def false). */
static bool knob_flag(const char *name, bool def) {
    const char *s = knob_str(name);
    bool v = def;
    if (s) v = def ? s[0] != '0' : s[0] == '1';
    return v;
}

/* An integer in lo..hi, else def (unset, malformed or out of range). */
static long knob_int(const char *name, long lo, long hi, long def) {
    const char *s = knob_str(name);
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : def;
    if (s && (*end || v < lo || v > hi)) v = def;
    return v;
}

/* An integer from a set of allowed values (n of them), else def. */
static long knob_one_of(const char *name, const long *vals, int n, long def) {
    long v = knob_int(name, vals[0], vals[n - 1], def);
    bool ok = false;
    for (int i = 0; i < n; i++) ok |= v == vals[i];
    return ok ? v : def;
}

/* Bytes with an optional K, M or G suffix (binary units), up to 1 TiB; 0 when unset or
 * malformed (no limit). */
static size_t knob_bytes(const char *name) {
    const char *s = knob_str(name);
    size_t v = 0;
    if (s) {
        char *end = NULL;
        unsigned long long n = strtoull(s, &end, 10);
        int sh = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
        if (sh) end++;
        if (!*end && s[0] != '-' && n <= (1ull << 40)) v = (size_t)(n << sh);
    }
    return v;
}

static void knobs_step(cuda_knobs *k) {
    k->graphs = knob_flag("HEARTH_CUDA_GRAPHS", true);
    k->fuse = knob_flag("HEARTH_CUDA_FUSE", true);
    k->mega = knob_flag("HEARTH_CUDA_MEGA", false);
    k->seg_layers = (int)knob_int("HEARTH_CUDA_SEG", 0, 4096, 24);
    k->seg_first = (int)knob_int("HEARTH_CUDA_SEG_FIRST", 1, 4096, 1);
    k->seg_grow = (int)knob_int("HEARTH_CUDA_SEG_GROW", 2, 64, 8);
    k->drop = (int)knob_int("HEARTH_CUDA_DROP", 0, 127, 0);
    k->x_cols = (int)knob_int("HEARTH_CUDA_X_COLS", 1, 1000, 1000);
    k->x_skip = (int)knob_int("HEARTH_CUDA_X_SKIP", 0, 4096, 0);
    k->x_skip_pf = knob_flag("HEARTH_CUDA_X_SKIP_PF", false);
    k->stats = knob_flag("HEARTH_CUDA_STATS", false);
    k->profile = knob_flag("HEARTH_CUDA_PROFILE", false);
    k->qkvr = knob_flag("HEARTH_CUDA_QKVR", true);
    k->qkvr_norm = knob_flag("HEARTH_CUDA_QKVR_NORM", false);
    k->qkvr_mix = knob_flag("HEARTH_CUDA_QKVR_MIX", true);
    k->qkva = knob_flag("HEARTH_CUDA_QKVA", false);
    k->dattn = (int)knob_int("HEARTH_CUDA_DATTN", 0, 1, 2);
    k->attn_q = knob_flag("HEARTH_CUDA_ATTN_Q", true);
    const char *mf = knob_str("HEARTH_CUDA_MVF_FUSE");
    k->mvf_fuse = mf && mf[0] == '0' ? 0 : (mf && mf[0] == '1' ? 1 : 2);
    k->early_add = knob_flag("HEARTH_CUDA_EARLY_ADD", true);
    k->l2_stream = knob_flag("HEARTH_CUDA_L2_STREAM", true);
    k->pdl = knob_flag("HEARTH_CUDA_PDL", true);
    k->mem_limit = knob_bytes("HEARTH_CUDA_MEM_LIMIT");
}

static void knobs_attn(cuda_knobs *k) {
    static const long spans[] = { 16, 32, 64, 128 }, bh[] = { 2, 4 };
    k->attn_dec = knob_flag("HEARTH_CUDA_ATTN_DEC", true);
    k->attn_dec_rope = knob_flag("HEARTH_CUDA_ATTN_DEC_ROPE", true);
    k->attn_tc = knob_flag("HEARTH_CUDA_ATTN_TC", false);
    k->attn_tc_rpb = (int)knob_int("HEARTH_CUDA_ATTN_TC_RPB", 1, 16, 0);
    long b = knob_int("HEARTH_CUDA_ATTN_DEC_MAX", 128, 8192, 0);
    k->attn_dec_max = (int)(b & (b - 1) ? 0 : b); /* a power of two */
    k->attn_fold = knob_flag("HEARTH_CUDA_ATTN_FOLD", false);
    k->at_min_span = (int)knob_one_of("HEARTH_CUDA_AT_MIN_SPAN", spans, 4, 32);
    k->at_min_blocks = (int)knob_int("HEARTH_CUDA_AT_MIN_BLOCKS", 1, 4096, 0);
    k->pfattn_min = knob_flag("HEARTH_CUDA_PFATTN", true) ? (int)knob_int("HEARTH_CUDA_PFATTN_MIN", 9, 4096, 0)
                                                          : INT32_MAX;
    k->dattn_one = knob_int("HEARTH_CUDA_DATTN_ONE", 128, 128, 0) ? 128 : 0;
    k->dattn_min_blocks = (int)knob_int("HEARTH_CUDA_DATTN_MIN_BLOCKS", 1, 4096, 0);
    k->dattn_stage = knob_int("HEARTH_CUDA_DATTN_STAGE", 0, 160 * 1024, 65536);
    k->dattn_dang = (int)knob_int("HEARTH_CUDA_DATTN_DANG", 0, 1, 0);
    k->qkva_bh = (int)knob_one_of("HEARTH_CUDA_QKVA_BH", bh, 2, 0);
}

static void knobs_quant(cuda_knobs *k) {
    static const long nw[] = { 4, 8, 16 };
    k->mv1 = knob_flag("HEARTH_CUDA_MV1", true);
    k->mv1s = knob_flag("HEARTH_CUDA_MV1S", true);
    k->mv1_tma = knob_flag("HEARTH_CUDA_MV1_TMA", true);
    k->mvs = (int)knob_int("HEARTH_CUDA_MVS", 0, 8, 4);
    k->mvt = (int)knob_int("HEARTH_CUDA_MVT", 0, 2, 2);
    k->mvt_t2 = knob_flag("HEARTH_CUDA_MVT_T2", true);
    k->mmt = (int)knob_int("HEARTH_CUDA_MMT", 0, 1, 1);
    k->mmt_ns = (int)knob_int("HEARTH_CUDA_MMT_NS", 2, 4, 2);
    k->mmt_min = (int)knob_int("HEARTH_CUDA_MMT_MIN", 2, 9, 5);
    k->mmt_long = knob_flag("HEARTH_CUDA_MMT_LONG", true);
    k->mmt_k4 = knob_flag("HEARTH_CUDA_MMT_K4", true);
    k->mmt_k6 = knob_flag("HEARTH_CUDA_MMT_K6", true);
    k->norm_mb = knob_flag("HEARTH_CUDA_NORM_MB", true);
    k->pq = knob_flag("HEARTH_CUDA_PQ", false);
    const char *pm = knob_str("HEARTH_CUDA_PQ_MAX");
    k->pq_max = pm ? atoll(pm) : 8192;
    if (k->pq_max < 0) k->pq_max = 0;
    k->pq_nw = (int)knob_one_of("HEARTH_CUDA_PQ_NW", nw, 3, 8);
    k->pq_rpw = (int)knob_int("HEARTH_CUDA_PQ_RPW", 1, 64, 0);
    k->gu = knob_flag("HEARTH_CUDA_GU", true);
    k->gu1 = knob_flag("HEARTH_CUDA_GU1", true);
    k->gu3 = knob_flag("HEARTH_CUDA_GU3", true);
    k->gu_tma = knob_flag("HEARTH_CUDA_GU_TMA", true);
    k->gu_per = (int)knob_int("HEARTH_CUDA_GU_PER", 1, 2, 0);
    k->gu_t = (int)knob_int("HEARTH_CUDA_GU_T", 1, 4, 1);
    k->fuse_t = (int)knob_int("HEARTH_CUDA_FUSE_T", 1, 8, 4);
    k->qkvr_kq = knob_flag("HEARTH_CUDA_QKVR_KQ", false);
}

static void knobs_float(cuda_knobs *k) {
    static const long bn[] = { 64, 128 };
    k->mvf_bps = (int)knob_int("HEARTH_CUDA_MVF_BPS", 1, 3, 1);
    k->mvf_ipt = (int)knob_int("HEARTH_CUDA_MVF_IPT", 1, 8, 3);
    k->mvf_rp = knob_flag("HEARTH_CUDA_MVF_RP", false) ? 1 : 2;
    k->mvf_enorm = knob_flag("HEARTH_CUDA_MVF_ENORM", true);
    k->mvf_j3 = knob_flag("HEARTH_CUDA_MVF_J3", true);
    const char *ps = knob_str("HEARTH_CUDA_MVF_PS");
    k->mvf_ps = ps && ps[0] == '0' && !ps[1] ? 0 : (int)knob_int("HEARTH_CUDA_MVF_PS", 2, 3, 2);
    k->mvf_ps_r2 = (int)knob_int("HEARTH_CUDA_MVF_PS_R2", 0, 3, 2);
    k->mvf_ps_long = knob_flag("HEARTH_CUDA_MVF_PS_LONG", true);
    k->mvf_ps_r8 = knob_flag("HEARTH_CUDA_MVF_PS_R8", false);
    k->mvf_pb = knob_flag("HEARTH_CUDA_MVF_PB", true);
    k->mvf_pb_mode = (int)knob_int("HEARTH_CUDA_MVF_PB_MODE", 0, 63, 8);
    k->mvf_ps_min = (int)knob_int("HEARTH_CUDA_MVF_PS_MIN", 0, 1 << 30, 0);
    k->mvf_ps_even = knob_flag("HEARTH_CUDA_MVF_PS_EVEN", true);
    k->mvf_t256 = knob_flag("HEARTH_CUDA_MVF_T256", false);
    k->mvf_ps_bps = (int)knob_int("HEARTH_CUDA_MVF_PS_BPS", 1, 16, 0);
    const char *md = knob_str("HEARTH_CUDA_MVF_MODE");
    k->mvf_mode = md ? atoi(md) & 63 : 0;
    k->mvf_ns = (int)knob_int("HEARTH_CUDA_MVF_NS", 2, 64, 0);
    long part = knob_int("HEARTH_CUDA_MVF_NORM_PART", 32, 1 << 20, 0);
    k->mvf_norm_part = (int)(part % 32 ? 0 : part);
    k->gemmf = knob_flag("HEARTH_GEMMF", true);
    k->gemmf_bn = (int)knob_one_of("HEARTH_GEMMF_BN", bn, 2, 0);
    k->gemmf_wide = knob_flag("HEARTH_GEMMF_WIDE", false);
}

static void knobs_mega(cuda_knobs *k) {
    const char *ad = knob_str("HEARTH_CUDA_MEGA_ADEC");
    k->mega_adec = ad && (ad[0] == '0' || ad[0] == '2') ? ad[0] - '0' : 1;
    k->mega_prof = knob_int("HEARTH_CUDA_MEGA_PROF", 1, 1 << 30, 0) > 0;
    k->mega_sync = knob_flag("HEARTH_CUDA_MEGA_SYNC", true);
}

void cuda_knobs_from_env(cuda_knobs *k) {
    memset(k, 0, sizeof *k);
    knobs_step(k);
    knobs_attn(k);
    knobs_quant(k);
    knobs_float(k);
    knobs_mega(k);
}
