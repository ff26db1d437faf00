/* place.c — where a context's work runs (docs/engine.md, "Placement"): the token embeddings
 * and layers [0, n) on an accelerator, layers [n, n_layer) on the CPU, the output where the
 * last layer is. n is what the caller asked (n_gpu_layers / HEARTH_GPU_LAYERS) or, by
 * default, as many layers as the device's free memory holds by an estimate of their bytes
 * (weights as stored + KV cache + scratch). The accelerator's share is uploaded here, at
 * context creation, so that a device too small shows at load: it is then released and the
 * CPU runs everything, with a logged note. Nothing here names a particular backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Device memory left unplanned: runtime, graphs, attention and quantization scratch. */
#define PLACE_RESERVE ((uint64_t)256 << 20)
/* Rows of logits the output buffer starts with (decode.c grows it on demand). */
#define PLACE_LOGIT_ROWS 8
#define LAYER_W 8

static uint64_t w_bytes(const be_weight *w) {
    return w->host.data ? (uint64_t)w->host.row_bytes * (uint64_t)w->host.n_rows : 0;
}

/* Bytes of an f16 copy of w: a device may dequantize a matrix into scratch for a prefill. */
static uint64_t w_f16(const be_weight *w) {
    return w->host.data ? (uint64_t)w->host.n_rows * (uint64_t)((w->host.n_cols + 31) / 32 * 32) * 2 : 0;
}

static void layer_ws(const arch_layer *L, const be_weight *ws[LAYER_W]) {
    ws[0] = &L->wq, ws[1] = &L->wk, ws[2] = &L->wv, ws[3] = &L->wqkv;
    ws[4] = &L->wo, ws[5] = &L->w_gate, ws[6] = &L->w_up, ws[7] = &L->w_down;
}

size_t engine_kv_row_bytes(const struct model_hparams *hp, hearth_kv_type t) {
    uint32_t type = t == HEARTH_KV_F32 ? QT_F32 : t == HEARTH_KV_Q8_0 ? QT_Q8_0 : QT_F16;
    return quant_row_size(type, (int64_t)hp->n_head_kv * hp->head_dim_k);
}

/* Layers [0, n) that fit in `limit` bytes of device memory, at most n_max, with their
 * estimated bytes in *need (0 when n == 0). limit UINT64_MAX: just the cost of n_max. */
static int32_t place_fit(const hearth_model *m, const hearth_context_params *p, uint64_t limit, int32_t n_max,
                         uint64_t *need) {
    const struct model_hparams *hp = m->hp;
    const arch_model *w = m->arch_data;
    bool prefill = p->n_batch >= 17;
    uint64_t kv = 2 * (uint64_t)engine_kv_row_bytes(hp, p->kv_type) * p->n_ctx * p->n_seq_max;
    uint64_t vec = (uint64_t)(8 * hp->n_embd + 2 * hp->n_head * hp->head_dim_k) * sizeof(float);
    uint64_t sum = PLACE_RESERVE + w_bytes(&w->tok_embd) +
                   (uint64_t)arch_scratch_floats(hp, p->n_batch) * sizeof(float);
    uint64_t f16 = 0;
    int32_t n = 0;
    *need = 0;
    for (int32_t il = 0; il < n_max; il++) {
        const be_weight *ws[LAYER_W];
        uint64_t lw = kv + vec, lf = f16;
        layer_ws(&w->layers[il], ws);
        for (int k = 0; k < LAYER_W; k++) {
            lw += w_bytes(ws[k]);
            if (w_f16(ws[k]) > lf) lf = w_f16(ws[k]);
        }
        uint64_t tot = sum + lw;
        if (il == hp->n_layer - 1) { /* the output comes along with the last layer */
            if (w->output.host.data != w->tok_embd.host.data) tot += w_bytes(&w->output);
            tot += (uint64_t)PLACE_LOGIT_ROWS * hp->n_vocab * sizeof(float);
            if (w_f16(&w->output) > lf) lf = w_f16(&w->output);
        }
        if (tot + (prefill ? lf : 0) > limit) break;
        sum += lw, f16 = lf, n = il + 1;
        *need = tot + (prefill ? lf : 0);
    }
    return n;
}

/* Layers asked for: n_gpu_layers, or HEARTH_GPU_LAYERS when that is -1; -1 = automatic. */
static int place_requested(const hearth_model *m, int32_t *want, hb_err *err) {
    int rc = HEARTH_OK;
    int32_t v = m->params.n_gpu_layers;
    const char *s = getenv("HEARTH_GPU_LAYERS");
    HB_CHECK(v >= -1, HEARTH_E_INVALID, "n_gpu_layers %d is invalid (-1 = automatic, 0 = CPU only, N = layers)", (int)v);
    if (v == -1 && s && *s && strcmp(s, "auto") != 0) {
        char *end = NULL;
        long l = strtol(s, &end, 10);
        if (strcmp(s, "all") == 0) l = INT32_MAX, end = (char *)s + 3;
        HB_CHECK(*end == 0 && l >= 0, HEARTH_E_INVALID,
                 "HEARTH_GPU_LAYERS=%s is not a layer count (a number, all or auto)", s);
        v = l > m->hp->n_layer ? m->hp->n_layer : (int32_t)l;
    }
    *want = v > m->hp->n_layer ? m->hp->n_layer : v;
out:
    return rc;
}

/* Joins the model's store of device weights (be_ops.share): pl->gpu_shared gets the bytes
 * already there. A failure only costs the sharing (logged). */
static void place_share(hearth_model *m, be_ctx *b, hearth_placement *pl) {
    hb_err e;
    hb_err_clear(&e);
    if (b->ops->share && b->ops->share(b, &m->share, &pl->gpu_shared, &e) != HEARTH_OK)
        hb_logf(&m->log, HEARTH_LOG_WARN, "weights not shared with other contexts: %s", e.msg);
}

/* Decides how many layers go on acc (0..n_layer) and fills pl's device facts. */
static int32_t place_choose(const hearth_model *m, const hearth_context_params *p, be_ctx *acc, int32_t want,
                            hearth_placement *pl) {
    be_dev_info di;
    hb_err e;
    memset(&di, 0, sizeof di);
    hb_err_clear(&e);
    snprintf(pl->backend, sizeof pl->backend, "%s", acc->ops->name);
    bool known = acc->ops->dev_info && acc->ops->dev_info(acc, &di, &e) == HEARTH_OK;
    if (known) {
        snprintf(pl->device, sizeof pl->device, "%s", di.name);
        pl->gpu_free = di.mem_free;
    }
    int32_t n = want;
    if (want < 0) { /* automatic: what fits (everything when the memory is not known) */
        uint64_t need = 0;
        /* weights another context already uploaded cost nothing again */
        n = place_fit(m, p, known ? di.mem_free + pl->gpu_shared : UINT64_MAX, m->hp->n_layer, &need);
        if (n < m->hp->n_layer)
            snprintf(pl->note, sizeof pl->note, "%d of %d layers fit in the %llu MiB free on %s", (int)n,
                     (int)m->hp->n_layer, (unsigned long long)(di.mem_free >> 20), pl->device);
    }
    place_fit(m, p, UINT64_MAX, n, &pl->gpu_bytes);
    return n;
}

/* Uploads the share of layers [0, n) (embeddings, weights, KV cache, scratch; the output
 * when n is every layer) so that a device too small fails here rather than mid-decode. */
static int place_load_acc(hearth_context *c, int32_t n, hb_err *err) {
    int rc;
    be_ctx *b = c->be_acc;
    const be_ops *op = b->ops;
    const arch_model *w = c->m->arch_data;
    if ((rc = op->buf_alloc(b, &c->scratch_acc, arch_scratch_floats(c->m->hp, c->p.n_batch), err))) return rc;
    if (op->preload && (rc = op->preload(b, &w->tok_embd, false, err))) return rc;
    for (int32_t il = 0; il < n; il++) {
        const be_weight *ws[LAYER_W];
        layer_ws(&w->layers[il], ws);
        for (int k = 0; k < LAYER_W && op->preload; k++)
            if (ws[k]->host.data && (rc = op->preload(b, ws[k], true, err))) return rc;
        int64_t cells = (int64_t)c->p.n_seq_max * c->p.n_ctx;
        if (op->kv_reserve && (rc = op->kv_reserve(b, &c->kv[il], cells, err))) return rc;
    }
    if (n == c->m->hp->n_layer && op->preload && (rc = op->preload(b, &w->output, true, err))) return rc;
    return HEARTH_OK;
}

static void place_drop_acc(hearth_context *c) {
    if (!c->be_acc) return;
    c->be_acc->ops->buf_free(c->be_acc, &c->scratch_acc);
    be_free(c->be_acc);
    c->be_acc = NULL;
}

static void place_summary(hearth_placement *pl) {
    int32_t n = pl->n_gpu_layers, nl = pl->n_layer;
    char dev[160] = "";
    if (pl->device[0]) snprintf(dev, sizeof dev, " (%s)", pl->device);
    if (n == 0) snprintf(pl->summary, sizeof pl->summary, "%d/%d layers on cpu, output on cpu", (int)nl, (int)nl);
    else if (n == nl)
        snprintf(pl->summary, sizeof pl->summary, "%d/%d layers on %s%s, output on %s", (int)n, (int)nl, pl->backend,
                 dev, pl->backend);
    else
        snprintf(pl->summary, sizeof pl->summary, "%d/%d layers on %s%s, %d on cpu, output on cpu", (int)n, (int)nl,
                 pl->backend, dev, (int)(nl - n));
    size_t len = strlen(pl->summary);
    if (n > 0 && pl->gpu_shared > 0 && len < sizeof pl->summary)
        snprintf(pl->summary + len, sizeof pl->summary - len, "; %llu MiB of weights shared with another context",
                 (unsigned long long)((pl->gpu_shared + (1 << 20) - 1) >> 20));
}

/* The accelerator's share: chosen, then loaded; on failure the device is released. */
static void place_accel(hearth_context *c, int32_t want) {
    hearth_placement *pl = &c->place;
    place_share(c->m, c->be_acc, pl);
    int32_t n = place_choose(c->m, &c->p, c->be_acc, want, pl);
    hb_err e;
    hb_err_clear(&e);
    if (n > 0 && place_load_acc(c, n, &e) != HEARTH_OK) {
        if (e.code == HEARTH_E_NOMEM)
            snprintf(pl->note, sizeof pl->note, "%d layers (~%llu MiB) do not fit on %s (%.280s); running on the CPU",
                     (int)n, (unsigned long long)(pl->gpu_bytes >> 20), pl->device[0] ? pl->device : pl->backend,
                     e.msg);
        else
            snprintf(pl->note, sizeof pl->note, "%.480s; running on the CPU", e.msg);
        hb_logf(&c->m->log, HEARTH_LOG_WARN, "%s", pl->note);
        n = 0;
    } else if (pl->note[0]) {
        hb_logf(&c->m->log, HEARTH_LOG_INFO, "%s", pl->note);
    }
    if (n == 0) {
        place_drop_acc(c);
        pl->gpu_bytes = pl->gpu_shared = 0;
    }
    c->n_acc = n;
}

int engine_place(hearth_context *c, hb_err *err) {
    int rc;
    const struct model_hparams *hp = c->m->hp;
    hearth_placement *pl = &c->place;
    int32_t want;
    memset(pl, 0, sizeof *pl);
    pl->n_layer = hp->n_layer;
    snprintf(pl->backend, sizeof pl->backend, "cpu");
    if ((rc = place_requested(c->m, &want, err))) return rc;
    if (want != 0) {
        if ((rc = be_accel_new(c->m->params.backend, c->p.n_threads, &c->be_acc, pl->note, sizeof pl->note, err)))
            return rc;
        if (pl->note[0]) hb_logf(&c->m->log, HEARTH_LOG_WARN, "%s", pl->note);
    }
    if (c->be_acc) place_accel(c, want);
    if (!c->be_acc) snprintf(pl->backend, sizeof pl->backend, "cpu"), pl->device[0] = 0;
    c->n_stage = 0;
    if (c->n_acc > 0) c->stage[c->n_stage++] = (arch_stage){ c->be_acc, &c->scratch_acc, 0, c->n_acc };
    if (c->n_acc < hp->n_layer) {
        if ((rc = be_cpu_new(c->p.n_threads, &c->be_cpu, err))) return rc;
        if ((rc = c->be_cpu->ops->buf_alloc(c->be_cpu, &c->scratch_cpu, arch_scratch_floats(hp, c->p.n_batch), err)))
            return rc;
        c->stage[c->n_stage++] = (arch_stage){ c->be_cpu, &c->scratch_cpu, c->n_acc, hp->n_layer };
    }
    c->be_out = c->stage[c->n_stage - 1].be;
    pl->n_gpu_layers = c->n_acc;
    pl->output_on_gpu = c->n_acc > 0 && c->n_acc == hp->n_layer;
    place_summary(pl);
    hb_logf(&c->m->log, HEARTH_LOG_INFO, "placement: %s", pl->summary);
    return HEARTH_OK;
}

void engine_unplace(hearth_context *c) {
    if (c->be_cpu) c->be_cpu->ops->buf_free(c->be_cpu, &c->scratch_cpu);
    be_free(c->be_cpu);
    c->be_cpu = NULL;
    place_drop_acc(c);
    c->n_stage = 0;
}

be_ctx *engine_layer_be(const hearth_context *c, int32_t il) {
    return il < c->n_acc ? c->be_acc : c->be_cpu;
}

/* ---- public ---------------------------------------------------------------------------- */

hearth_status hearth_context_placement(const hearth_context *c, hearth_placement *out) {
    if (!c || !out) return HEARTH_E_INVALID;
    *out = c->place;
    return HEARTH_OK;
}

hearth_status hearth_model_plan_placement(hearth_model *m, const hearth_context_params *p, hearth_placement *out,
                                          char *errbuf, size_t errlen) {
    int rc = HEARTH_OK;
    hb_err e, *err = &e;
    be_ctx *acc = NULL;
    hearth_context_params rp;
    int32_t want = 0;
    hb_err_clear(&e);
    HB_CHECK(m && out, HEARTH_E_INVALID, "no model or output pointer given");
    HB_CHECK(m->hp && m->arch_data, HEARTH_E_INVALID, "%s was loaded without weights (vocab only)", m->path);
    memset(out, 0, sizeof *out);
    out->n_layer = m->hp->n_layer;
    snprintf(out->backend, sizeof out->backend, "cpu");
    if ((rc = engine_resolve_params(m, p, &rp, err)) || (rc = place_requested(m, &want, err))) goto out;
    if (want != 0 &&
        (rc = be_accel_new(m->params.backend, rp.n_threads, &acc, out->note, sizeof out->note, err)))
        goto out;
    if (acc) {
        place_share(m, acc, out);
        out->n_gpu_layers = place_choose(m, &rp, acc, want, out);
    }
    if (out->n_gpu_layers == 0) snprintf(out->backend, sizeof out->backend, "cpu"), out->device[0] = 0, out->gpu_shared = 0;
    out->output_on_gpu = out->n_gpu_layers > 0 && out->n_gpu_layers == out->n_layer;
    place_summary(out);
out:
    be_free(acc);
    if (rc && errbuf && errlen) snprintf(errbuf, errlen, "%s", e.msg);
    return (hearth_status)rc;
}

hearth_status hearth_bench_device_bandwidth(const char *backend, double *gbps, char *device, size_t cap) {
    be_ctx *acc = NULL;
    be_dev_info di;
    hb_err e;
    double bps = 0;
    int rc;
    hb_err_clear(&e);
    if (!gbps) return HEARTH_E_INVALID;
    *gbps = 0;
    if (device && cap) device[0] = 0;
    if ((rc = be_accel_new(backend, 1, &acc, NULL, 0, &e))) return (hearth_status)rc;
    if (!acc || !acc->ops->measure_bw) rc = HEARTH_E_UNSUPPORTED;
    else rc = acc->ops->measure_bw(acc, &bps, &e);
    if (!rc && device && cap && acc->ops->dev_info && acc->ops->dev_info(acc, &di, &e) == HEARTH_OK)
        snprintf(device, cap, "%s", di.name);
    be_free(acc);
    if (!rc) *gbps = bps / 1e9;
    return (hearth_status)rc;
}
