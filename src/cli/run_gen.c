/* run_gen.c — generation session behind `hearth run` (see run_gen.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "run_gen.h"

const gen_param gen_params[GP_COUNT] = {
    [GP_TEMPERATURE] = { "temperature", "temp", 0, 100 },
    [GP_TOP_K] = { "top_k", "top-k", 0, 1e9 },
    [GP_TOP_P] = { "top_p", "top-p", 0, 1 },
    [GP_MIN_P] = { "min_p", "min-p", 0, 1 },
    [GP_TYPICAL_P] = { "typical_p", "typical-p", 0, 1 },
    [GP_SEED] = { "seed", "seed", -1, 9.2e18 },
    [GP_REPEAT_PENALTY] = { "repeat_penalty", "repeat-penalty", 0.01, 100 },
    [GP_REPEAT_LAST_N] = { "repeat_last_n", "repeat-last-n", -1, 1 << 20 },
    [GP_PRESENCE_PENALTY] = { "presence_penalty", "presence-penalty", -100, 100 },
    [GP_FREQUENCY_PENALTY] = { "frequency_penalty", "frequency-penalty", -100, 100 },
    [GP_NUM_PREDICT] = { "num_predict", "num-predict", -1, 1e9 },
};

const gen_param *gen_param_find(const char *name) {
    const gen_param *p = NULL;
    for (int i = 0; i < GP_COUNT && !p; i++)
        if (strcmp(gen_params[i].name, name) == 0) p = &gen_params[i];
    return p;
}

uint64_t gen_seed(long long s) {
    return s >= 0 ? (uint64_t)s : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

struct gen_session {
    hearth_model *model;
    hearth_context *ctx;
    hearth_sampler *smp;
    hearth_batch batch;
    gen_opts o;
    hearth_token *hist;       /* tokens currently in the KV cache, in order */
    size_t n_hist, cap_hist;
    volatile sig_atomic_t *cancel;
    uint64_t load_ns;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool abort_cb(void *ud) {
    volatile sig_atomic_t *c = ud;
    return c && *c;
}

gen_session *gen_open(const char *model_path, const gen_opts *o, volatile sig_atomic_t *cancel) {
    char err[512] = "";
    gen_session *g = calloc(1, sizeof *g);
    uint64_t t0 = now_ns();
    if (!g) goto fail;
    g->o = *o;
    g->cancel = cancel;
    hearth_model_params mp = hearth_model_default_params();
    mp.backend = o->backend;
    mp.n_gpu_layers = (int32_t)o->n_gpu_layers;
    mp.log = cli_log_stderr;
    mp.log_level = o->verbose ? HEARTH_LOG_INFO : HEARTH_LOG_WARN;
    if (hearth_model_load(model_path, &mp, &g->model, err, sizeof err)) goto fail;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = (uint32_t)o->n_ctx;
    cp.n_threads = (int32_t)o->n_threads;
    cp.kv_type = o->kv_type;
    if (hearth_context_new(g->model, &cp, &g->ctx, err, sizeof err)) goto fail;
    hearth_context_set_abort(g->ctx, abort_cb, (void *)cancel);
    g->smp = hearth_sampler_new(g->model, &o->sp, err, sizeof err);
    if (!g->smp) goto fail;
    g->batch = hearth_batch_init(512);
    g->cap_hist = hearth_context_n_ctx(g->ctx);
    g->hist = calloc(g->cap_hist, sizeof *g->hist);
    if (!g->batch.capacity || !g->hist) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    g->load_ns = now_ns() - t0;
    return g;
fail:
    cli_error("%s", err[0] ? err : "out of memory");
    gen_close(g);
    return NULL;
}

void gen_close(gen_session *g) {
    if (!g) return;
    hearth_batch_free(&g->batch);
    hearth_sampler_free(g->smp);
    hearth_context_free(g->ctx);
    hearth_model_free(g->model);
    free(g->hist);
    free(g);
}

hearth_model *gen_model(gen_session *g) { return g->model; }
const gen_opts *gen_get_opts(const gen_session *g) { return &g->o; }
void gen_set_opts(gen_session *g, const gen_opts *o) { g->o = *o; }

int gen_set_sampler(gen_session *g, const hearth_sampler_params *sp) {
    char err[512] = "";
    hearth_sampler *s = hearth_sampler_new(g->model, sp, err, sizeof err);
    if (!s) {
        cli_error("%s", err);
        return 1;
    }
    hearth_sampler_free(g->smp);
    g->smp = s;
    g->o.sp = *sp;
    return 0;
}

void gen_reset(gen_session *g) {
    hearth_kv_clear(g->ctx);
    g->n_hist = 0;
    hearth_sampler_reset(g->smp);
}

/* Decodes toks (appending to the history); logits requested for the last one. */
static int eval_tokens(gen_session *g, const hearth_token *toks, size_t n) {
    for (size_t i = 0; i < n;) {
        hearth_batch_clear(&g->batch);
        for (; i < n && g->batch.n_tokens < g->batch.capacity; i++) {
            hearth_batch_add(&g->batch, toks[i], (int32_t)g->n_hist, 0, i == n - 1);
            g->hist[g->n_hist++] = toks[i];
        }
        hearth_status st = hearth_decode(g->ctx, &g->batch);
        if (st == HEARTH_E_CANCELLED) {
            /* Ctrl-C: only this batch's cells are in doubt (a decode writes no others), so
             * the conversation before it stays cached for the next turn */
            size_t keep = g->n_hist - (size_t)g->batch.n_tokens;
            hearth_kv_seq_rm(g->ctx, 0, (int32_t)keep, -1);
            g->n_hist = keep;
            return -1;
        }
        if (st) {
            cli_error("%s", hearth_context_errmsg(g->ctx));
            gen_reset(g); /* the cache state is unknown after a failed batch: start over next time */
            return 1;
        }
    }
    return 0;
}

/* ---- stop strings: emit only text that cannot be the start of a stop string ---------- */
typedef struct stop_buf {
    char *buf;
    size_t len, cap;
} stop_buf;

/* Length of the longest suffix of s[0..n) that is a proper prefix of some stop string. */
static size_t held_suffix(const char *s, size_t n, const char *const *stops, int n_stops) {
    size_t best = 0;
    for (int k = 0; k < n_stops; k++) {
        size_t sl = strlen(stops[k]);
        if (sl == 0) continue; /* an empty stop string never matches (stop_push skips it too) */
        for (size_t l = sl - 1 < n ? sl - 1 : n; l > best; l--) {
            if (memcmp(s + n - l, stops[k], l) == 0) {
                best = l;
                break;
            }
        }
    }
    return best;
}

/* Appends text; emits what is final. Returns true when a stop string was found. */
static bool stop_push(stop_buf *b, const char *t, size_t n, const gen_opts *o, gen_emit_fn emit, void *ud) {
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *nb = realloc(b->buf, nc);
        if (!nb) return true;
        b->buf = nb;
        b->cap = nc;
    }
    memcpy(b->buf + b->len, t, n);
    b->len += n;
    b->buf[b->len] = '\0';
    size_t cut = b->len;
    bool found = false;
    for (int k = 0; k < o->n_stops; k++) {
        const char *p = strstr(b->buf, o->stops[k]);
        if (p && o->stops[k][0] && (size_t)(p - b->buf) < cut) {
            cut = (size_t)(p - b->buf);
            found = true;
        }
    }
    size_t emit_n = found ? cut : b->len - held_suffix(b->buf, b->len, o->stops, o->n_stops);
    if (emit_n) emit(ud, b->buf, emit_n);
    memmove(b->buf, b->buf + emit_n, b->len - emit_n);
    b->len -= emit_n;
    if (found) b->len = 0;
    return found;
}

/* Reuses the common prefix of prompt tokens and the KV history; evaluates the rest. */
static int eval_prompt(gen_session *g, const hearth_token *toks, size_t n, gen_stats *st) {
    size_t common = 0;
    while (common < n && common < g->n_hist && toks[common] == g->hist[common]) common++;
    if (common == n && n > 0) common--; /* re-evaluate the last token to get its logits */
    if (common < g->n_hist) {
        hearth_kv_seq_rm(g->ctx, 0, (int32_t)common, -1);
        g->n_hist = common;
    }
    st->n_prompt = n;
    st->n_prompt_reused = common;
    return eval_tokens(g, toks + common, n - common);
}

static int tokenize_prompt(gen_session *g, const char *prompt, int flags, hearth_token **toks, size_t *n) {
    char err[512] = "";
    if (hearth_tokenize(g->model, prompt, strlen(prompt), flags, toks, n, err, sizeof err)) {
        cli_error("%s", err);
        return 1;
    }
    /* A template that writes the BOS text itself plus add_bos would give two BOS tokens. */
    hearth_token bos = hearth_token_bos(g->model);
    if (*n >= 2 && bos >= 0 && (*toks)[0] == bos && (*toks)[1] == bos) {
        memmove(*toks, *toks + 1, (*n - 1) * sizeof **toks);
        (*n)--;
    }
    if (*n == 0) {
        cli_error("the prompt is empty and the model adds no BOS token: nothing to generate from");
        return 1;
    }
    if (*n >= hearth_context_n_ctx(g->ctx)) {
        cli_error("the prompt has %zu tokens but the context holds %u; use --ctx to enlarge it",
                  *n, hearth_context_n_ctx(g->ctx));
        return 1;
    }
    return 0;
}

static int gen_loop(gen_session *g, gen_emit_fn emit, void *ud, gen_stats *st, uint64_t t_start) {
    int rc = 0;
    stop_buf sb = { 0 };
    hearth_detok_stream *ds = hearth_detok_stream_new(g->model, hearth_detok_flags_after(g->model, g->hist, g->n_hist));
    const char *text;
    size_t len;
    bool found = false; /* a stop string ended the reply: the held text is dropped */
    if (!ds) return 1;
    for (long i = 0; g->o.n_predict < 0 || i < g->o.n_predict; i++) {
        if (*g->cancel) { st->stopped = st->interrupted = true; break; }
        const float *logits = hearth_get_logits(g->ctx, g->batch.n_tokens - 1);
        hearth_token t = hearth_sampler_sample(g->smp, logits);
        if (i == 0) st->ttft_ns = now_ns() - t_start;
        if (hearth_token_is_eog(g->model, t)) { st->stopped = true; break; }
        st->n_gen++;
        if (hearth_detok_stream_push(ds, t, &text, &len) == HEARTH_OK && len &&
            stop_push(&sb, text, len, &g->o, emit, ud)) { st->stopped = found = true; break; }
        if (g->n_hist + 1 >= hearth_context_n_ctx(g->ctx)) {
            st->hit_ctx_limit = true, st->n_ctx = hearth_context_n_ctx(g->ctx);
            break;
        }
        if ((rc = eval_tokens(g, &t, 1))) {
            if (rc < 0) { st->stopped = st->interrupted = true; rc = 0; }
            break;
        }
    }
    /* Whatever ended the reply (EOG, the token limit, Ctrl-C), text held back as a possible
     * stop string that never completed is part of it, as are bytes of an unfinished UTF-8
     * character (the flush turns them into U+FFFD). */
    if (!found && hearth_detok_stream_flush(ds, &text, &len) == HEARTH_OK && len)
        found = stop_push(&sb, text, len, &g->o, emit, ud);
    if (sb.len && !found) emit(ud, sb.buf, sb.len);
    free(sb.buf);
    hearth_detok_stream_free(ds);
    return rc;
}

int gen_reply(gen_session *g, const char *prompt, int tok_flags, gen_emit_fn emit, void *ud, gen_stats *st) {
    hearth_token *toks = NULL;
    size_t n = 0;
    int rc;
    memset(st, 0, sizeof *st);
    st->load_ns = g->load_ns;
    if ((rc = tokenize_prompt(g, prompt, tok_flags, &toks, &n))) goto out;
    /* the prompt holds the whole conversation again: its tokens replace the penalty
     * history (accepted on top of the last turn's, earlier turns would count twice) */
    hearth_sampler_clear_history(g->smp);
    for (size_t i = 0; i < n; i++) hearth_sampler_accept(g->smp, toks[i]);
    uint64_t t0 = now_ns();
    rc = eval_prompt(g, toks, n, st);
    st->prompt_ns = now_ns() - t0;
    if (rc < 0) { rc = 0; st->stopped = st->interrupted = true; goto out; }
    if (rc) goto out;
    uint64_t t1 = now_ns();
    rc = gen_loop(g, emit, ud, st, t0);
    st->gen_ns = now_ns() - t1;
out:
    hearth_free(toks);
    return rc;
}

void gen_print_stats(const gen_stats *st) {
    size_t n_eval = st->n_prompt - st->n_prompt_reused;
    double ps = st->prompt_ns / 1e9, gs = st->gen_ns / 1e9;
    fprintf(stderr, "\nload time:        %8.2f ms\n", st->load_ns / 1e6);
    fprintf(stderr, "prompt:           %8zu tokens (%zu reused from cache) in %.2f ms, %.2f tokens/s\n",
            st->n_prompt, st->n_prompt_reused, ps * 1e3, ps > 0 ? n_eval / ps : 0.0);
    fprintf(stderr, "time to first token: %5.2f ms\n", st->ttft_ns / 1e6);
    fprintf(stderr, "generation:       %8zu tokens in %.2f ms, %.2f tokens/s\n", st->n_gen, gs * 1e3,
            gs > 0 ? st->n_gen / gs : 0.0);
}
