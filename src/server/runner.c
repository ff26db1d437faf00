/* runner.c — one loaded model's runner: its queue and the continuous-batching decode loop.
 *
 * One runner per loaded model owns a hearth_context with N sequences (slots). Its thread
 * loops: admit queued requests into free slots (reusing the longest cached prompt prefix of
 * any slot via hearth_kv_seq_cp / hearth_kv_seq_rm), build one batch holding the next token
 * of every generating slot plus prompt chunks of new ones, decode once, sample per slot.
 * A request joins at the next step and leaves as soon as it finishes or is cancelled, so
 * a client that disconnects frees its slot within one decode step.
 *
 * Locking: runner.mu guards the queue and flags; slots are touched only by the runner
 * thread (sched_impl.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/sched_impl.h"
#include "store/store.h"

#define ARM_LEAD_NS 60000ull /* helpers wake this long before a decode should end */

struct slot {
    int id;
    gen_req *req;                   /* NULL when free */
    hearth_token *hist;             /* [n_ctx] tokens whose K/V are in this sequence */
    int32_t n_hist;
    int32_t n_done;                 /* prompt tokens of req already in the cache */
    hearth_sampler *smp;
    hearth_detok_stream *ds;
    char *pend;                     /* generated text held back while it may start a stop */
    size_t pend_len, pend_cap;
    hearth_token last;              /* sampled, to be decoded next step */
    bool generating;
    int32_t n_gen;
    int32_t logit_idx;              /* batch index of this slot's logits, -1 none */
    uint64_t t_last;
    /* light JSON constraint (json_mode): the reply must open with '{' and ends when the
     * top-level value closes; brackets are tracked outside strings */
    bool js_started, js_in_str, js_esc;
    int32_t js_depth;
    gen_lp lp;                      /* the sampled token's log-probabilities (req->top_logprobs >= 0) */
};

hearth_model *runner_model(runner *r) { return r->model; }
uint32_t runner_n_ctx(runner *r) { return r->n_ctx; }
const char *runner_name(runner *r) { return r->name; }
const char *runner_path(runner *r) { return r->path; }

/* ---- slots ------------------------------------------------------------------------------ */

static void slot_emit_pending(slot *sl, size_t n) {
    if (!n) return;
    gen_req_emit(sl->req, sl->pend, n, -1);
    memmove(sl->pend, sl->pend + n, sl->pend_len - n);
    sl->pend_len -= n;
}

static void slot_finish(runner *r, slot *sl, const char *reason, int status, const char *msg) {
    gen_req *g = sl->req;
    if (!g) return;
    if (sl->ds) {
        const char *t;
        size_t n = 0;
        if (hearth_detok_stream_flush(sl->ds, &t, &n) == HEARTH_OK && n && strcmp(reason, "stop") != 0) gen_req_emit(g, t, n, -1);
    }
    if (sl->pend_len && strcmp(reason, "error") != 0) slot_emit_pending(sl, sl->pend_len);
    sl->pend_len = 0;
    g->n_eval = sl->n_gen;
    metrics_tokens(r->s->srv, g->n_prompt - g->n_cached, sl->n_gen);
    gen_req_finish(g, reason, status, msg);
    gen_req_unref(g);
    hearth_sampler_free(sl->smp);
    hearth_detok_stream_free(sl->ds);
    sl->smp = NULL, sl->ds = NULL, sl->req = NULL;
    sl->generating = false;
    atomic_fetch_sub(&r->busy, 1);
}

static int32_t lcp(const hearth_token *a, int32_t na, const hearth_token *b, int32_t nb) {
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Starts g in a free slot, reusing the longest prompt prefix cached in any slot. */
static void slot_start(runner *r, gen_req *g) {
    slot *best = NULL;
    int32_t best_own = -1;
    for (int i = 0; i < r->n_slots; i++) {
        slot *s = &r->slots[i];
        if (s->req) continue;
        int32_t k = lcp(s->hist, s->n_hist, g->prompt, g->n_prompt);
        if (k > best_own) best_own = k, best = s;
    }
    slot *sl = best;
    int32_t keep = best_own;
    for (int i = 0; i < r->n_slots; i++) {
        slot *o = &r->slots[i];
        if (o == sl) continue;
        int32_t k = lcp(o->hist, o->n_hist, g->prompt, g->n_prompt);
        if (k > keep + 16 && hearth_kv_seq_cp(r->ctx, o->id, sl->id, k) == HEARTH_OK) {
            memcpy(sl->hist, o->hist, (size_t)k * sizeof(hearth_token));
            sl->n_hist = k;
            keep = k;
        }
    }
    if (keep >= g->n_prompt) keep = g->n_prompt - 1; /* the last prompt token yields the logits */
    if (keep < 0) keep = 0;
    if (hearth_kv_seq_rm(r->ctx, sl->id, keep, -1) != HEARTH_OK) {
        hearth_kv_seq_rm(r->ctx, sl->id, 0, -1);
        keep = 0;
    }
    sl->n_hist = keep;
    sl->n_done = keep;
    sl->req = g;
    sl->n_gen = 0;
    sl->generating = false;
    sl->pend_len = 0;
    sl->js_started = sl->js_in_str = sl->js_esc = false;
    sl->js_depth = 0;
    atomic_fetch_add(&r->busy, 1);
    char msg[256] = "";
    sl->smp = hearth_sampler_new(r->model, &g->sp, msg, sizeof msg);
    sl->ds = hearth_detok_stream_new(r->model, hearth_detok_flags_after(r->model, g->prompt, (size_t)g->n_prompt));
    pthread_mutex_lock(&g->mu);
    g->n_cached = keep;
    g->t_start = hb_now_ns();
    pthread_mutex_unlock(&g->mu);
    if (!sl->smp || !sl->ds) {
        slot_finish(r, sl, "error", 400, sl->smp ? "out of memory" : msg);
        return;
    }
    for (int32_t i = 0; i < g->n_prompt; i++) hearth_sampler_accept(sl->smp, g->prompt[i]);
}

/* Longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_holdback(const slot *sl) {
    size_t hold = 0;
    const gen_req *g = sl->req;
    for (int i = 0; i < g->n_stops; i++) {
        size_t sn = strlen(g->stops[i]);
        for (size_t k = sn - 1; k > hold; k--)
            if (k <= sl->pend_len && memcmp(sl->pend + sl->pend_len - k, g->stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Builds the per-token "opens a JSON object" table on first JSON use (runner thread). */
static bool json_tables(runner *r) {
    if (r->opens_json) return true;
    int32_t n = hearth_model_n_vocab(r->model);
    bool *open = calloc((size_t)(n > 0 ? n : 1), sizeof *open);
    float *ml = hb_malloc_n((size_t)(n > 0 ? n : 1), sizeof *ml);
    if (!open || !ml) {
        free(open), free(ml);
        return false;
    }
    char buf[256];
    for (int32_t t = 0; t < n; t++) {
        size_t len = 0;
        if (hearth_token_piece(r->model, t, 0, buf, sizeof buf - 1, &len) != HEARTH_OK || len >= sizeof buf) continue;
        buf[len] = '\0';
        const char *p = buf;
        /* blanks, including SentencePiece's U+2581 word marker */
        for (;;) {
            if (*p == ' ' || *p == '\n' || *p == '\t') p++;
            else if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x96 && (unsigned char)p[2] == 0x81) p += 3;
            else break;
        }
        open[t] = *p == '{';
    }
    r->opens_json = open, r->mlogits = ml, r->n_vocab = n;
    return true;
}

/* Samples for a JSON-mode slot: before the object opens only tokens starting with '{'
 * are allowed (when the vocab has none, sampling is left unconstrained). */
static hearth_token json_sample(runner *r, slot *sl, const float *logits) {
    if (sl->js_started || !json_tables(r)) return hearth_sampler_sample(sl->smp, logits);
    bool any = false;
    for (int32_t t = 0; t < r->n_vocab; t++) {
        r->mlogits[t] = r->opens_json[t] ? logits[t] : -INFINITY;
        any |= r->opens_json[t];
    }
    return hearth_sampler_sample(sl->smp, any ? r->mlogits : logits);
}

/* Tracks brackets over new reply text; returns how many bytes of text belong to the
 * reply when the top-level value closed in it, or -1 while it is still open. */
static ssize_t json_track(slot *sl, const char *text, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!sl->js_started) {
            if (c == '{') sl->js_started = true, sl->js_depth = 1;
            continue;
        }
        if (sl->js_in_str) {
            if (sl->js_esc) sl->js_esc = false;
            else if (c == '\\') sl->js_esc = true;
            else if (c == '"') sl->js_in_str = false;
        } else if (c == '"') {
            sl->js_in_str = true;
        } else if (c == '{' || c == '[') {
            sl->js_depth++;
        } else if ((c == '}' || c == ']') && --sl->js_depth == 0) {
            return (ssize_t)(i + 1);
        }
    }
    return -1;
}

/* Records the log-probabilities of token t (sampled with them), whose n bytes of text just
 * went to the end of sl->pend: where that text lies in the reply, and whether the reply
 * dropped the piece's leading space (SentencePiece, at a text's start). The runner is the
 * only writer of the reply's text, so it reads text_len without the lock. */
static void slot_add_lp(runner *r, slot *sl, hearth_token t, size_t n) {
    gen_req *g = sl->req;
    char raw[8];
    size_t plen = 0;
    sl->lp.start = g->text_len + sl->pend_len - n, sl->lp.len = n;
    sl->lp.lstrip = n > 0 && sl->pend[sl->pend_len - n] != ' ' &&
                    hearth_token_piece(r->model, t, HEARTH_DETOK_UNPARSE_SPECIAL, raw, sizeof raw, &plen) != HEARTH_E_INVALID &&
                    plen > 0 && raw[0] == ' ';
    gen_req_add_lp(g, &sl->lp);
}

/* Handles one sampled token; returns false when the slot finished. */
static bool slot_token(runner *r, slot *sl, hearth_token t) {
    gen_req *g = sl->req;
    uint64_t now = hb_now_ns();
    if (sl->n_gen == 0) {
        pthread_mutex_lock(&g->mu);
        g->t_first_token = g->t_prompt_done = now;
        pthread_mutex_unlock(&g->mu);
        metrics_ttft(r->s->srv, (double)(now - g->t_submit) / 1e9);
    } else {
        metrics_token_time(r->s->srv, (double)(now - sl->t_last) / 1e9);
    }
    sl->t_last = now;
    if (hearth_token_is_eog(r->model, t)) {
        slot_finish(r, sl, "stop", 0, NULL);
        return false;
    }
    sl->n_gen++;
    const char *piece = NULL;
    size_t n = 0;
    if (hearth_detok_stream_push(sl->ds, t, &piece, &n) != HEARTH_OK) n = 0;
    if (n) {
        if (sl->pend_len + n + 1 > sl->pend_cap) {
            size_t nc = (sl->pend_len + n + 1) * 2;
            char *np = realloc(sl->pend, nc);
            if (!np) {
                slot_finish(r, sl, "error", 500, "out of memory");
                return false;
            }
            sl->pend = np, sl->pend_cap = nc;
        }
        memcpy(sl->pend + sl->pend_len, piece, n);
        sl->pend_len += n;
    }
    if (g->top_logprobs >= 0) slot_add_lp(r, sl, t, n);
    gen_req_emit(g, NULL, 0, t); /* records the id for `context` */
    if (g->json_mode && n) {
        ssize_t close = json_track(sl, sl->pend + sl->pend_len - n, n);
        if (close >= 0) {
            slot_emit_pending(sl, sl->pend_len - n + (size_t)close);
            sl->pend_len = 0;
            hearth_detok_stream_free(sl->ds);
            sl->ds = NULL;
            slot_finish(r, sl, "stop", 0, NULL);
            return false;
        }
    }
    for (int i = 0; i < g->n_stops; i++) {
        char *hit = memmem(sl->pend, sl->pend_len, g->stops[i], strlen(g->stops[i]));
        if (hit) {
            slot_emit_pending(sl, (size_t)(hit - sl->pend));
            sl->pend_len = 0;
            hearth_detok_stream_free(sl->ds);
            sl->ds = NULL;
            slot_finish(r, sl, "stop", 0, NULL);
            return false;
        }
    }
    slot_emit_pending(sl, sl->pend_len - stop_holdback(sl));
    if ((g->num_predict >= 0 && sl->n_gen >= g->num_predict) || sl->n_hist >= g->ctx_limit) {
        slot_finish(r, sl, "length", 0, NULL);
        return false;
    }
    sl->last = t;
    sl->generating = true;
    return true;
}

/* ---- the decode loop ----------------------------------------------------------------------- */

/* Fills the batch: one token per generating slot first (latency), then prompt chunks. */
static void build_batch(runner *r) {
    hearth_batch *b = &r->batch;
    hearth_batch_clear(b);
    for (int i = 0; i < r->n_slots; i++) {
        slot *sl = &r->slots[i];
        sl->logit_idx = -1;
        if (!sl->req) continue;
        if (r->cancel_all) { /* the server is stopping: not the client's doing */
            slot_finish(r, sl, "cancelled", 503, "server is shutting down");
            continue;
        }
        if (atomic_load(&sl->req->cancel)) {
            slot_finish(r, sl, "cancelled", 499, "request cancelled");
            continue;
        }
        if (sl->generating && hearth_batch_add(b, sl->last, sl->n_hist, sl->id, true)) sl->logit_idx = b->n_tokens - 1;
    }
    for (int i = 0; i < r->n_slots; i++) {
        slot *sl = &r->slots[i];
        if (!sl->req || sl->generating) continue;
        gen_req *g = sl->req;
        while (sl->n_done < g->n_prompt && b->n_tokens < (int32_t)r->n_batch) {
            bool last = sl->n_done == g->n_prompt - 1;
            hearth_batch_add(b, g->prompt[sl->n_done], sl->n_done, sl->id, last);
            if (last) sl->logit_idx = b->n_tokens - 1;
            sl->n_done++;
        }
    }
}

/* Whether a failed decode may have left its context unusable (a GPU error is sticky), as
 * opposed to failing for the request's own reasons: a cancel, a full context, bad tokens. */
static bool decode_broke(hearth_status rc) {
    return rc != HEARTH_OK && rc != HEARTH_E_CANCELLED && rc != HEARTH_E_CONTEXT && rc != HEARTH_E_INVALID;
}

/* Draws the token of item i of the step's sampling list (a spool job: each item touches
 * only its own slot's sampler and its own logits row). */
static void sample_item(void *arg, int i) {
    runner *r = arg;
    slot *sl = r->s_slot[i];
    r->s_tok[i] = hearth_sampler_sample(sl->smp, r->s_logits[i]);
    if (sl->req->top_logprobs >= 0)
        gen_logprobs(r->s_logits[i], hearth_model_n_vocab(r->model), r->s_tok[i], sl->req->top_logprobs, &sl->lp);
}

/* Samples the n slots of r->s_slot, on the pool when r has one. Each slot's sampler keeps its
 * own random state, so the tokens do not depend on which thread draws them or in what
 * order: a seeded request gets the same text alone, in a batch, with or without helpers. */
static void sample_slots(runner *r, int n) {
    if (r->pool)
        spool_run(r->pool, sample_item, r, n);
    else
        for (int i = 0; i < n; i++) sample_item(r, i);
}

/* Tells the sampling helpers when this step's decode should end, a little early for their
 * wake-up, when at least two of its tokens will be sampled (spool.h: they then poll for
 * the job instead of being woken for it). */
static void arm_pool(runner *r, const hearth_batch *b, uint64_t now) {
    int want = 0;
    for (int32_t k = 0; k < b->n_tokens; k++) want += b->logits[k] != 0;
    if (r->pool && want >= 2 && r->dec_ns > ARM_LEAD_NS) spool_arm(r->pool, now + r->dec_ns - ARM_LEAD_NS);
}

static void step(runner *r) {
    uint64_t t[6];
    t[0] = hb_now_ns();
    build_batch(r);
    hearth_batch *b = &r->batch;
    if (b->n_tokens == 0) return;
    t[1] = hb_now_ns();
    arm_pool(r, b, t[1]);
    hearth_status rc = hearth_decode(r->ctx, b);
    t[2] = hb_now_ns();
    /* the estimate follows the steps of one token per sequence; a prompt chunk's step is
     * longer and would only make the next arming late */
    if (b->n_tokens <= r->n_slots) r->dec_ns = r->dec_ns ? (3 * r->dec_ns + (t[2] - t[1])) / 4 : t[2] - t[1];
    if (rc != HEARTH_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "decode failed: %s", hearth_context_errmsg(r->ctx));
        if (decode_broke(rc) && !atomic_exchange(&r->broken, true))
            SRV_LOG(r->s->srv, HEARTH_LOG_WARN, "model=%s: %s; it is loaded again for the next request", r->name, msg);
        for (int i = 0; i < r->n_slots; i++) {
            slot *sl = &r->slots[i];
            if (!sl->req) continue;
            bool in_batch = false;
            for (int32_t k = 0; k < b->n_tokens && !in_batch; k++) in_batch = b->seq_id[k] == sl->id;
            if (!in_batch) continue;
            hearth_kv_seq_rm(r->ctx, sl->id, 0, -1);
            sl->n_hist = 0;
            /* a decode is aborted only when the server stops or the model goes away */
            slot_finish(r, sl, rc == HEARTH_E_CANCELLED ? "cancelled" : "error",
                        rc == HEARTH_E_CANCELLED ? 503 : rc == HEARTH_E_CONTEXT ? 400 : 500,
                        rc == HEARTH_E_CANCELLED && r->cancel_all ? "server is shutting down" : msg);
        }
        return;
    }
    for (int32_t k = 0; k < b->n_tokens; k++) {
        slot *sl = &r->slots[b->seq_id[k]];
        if (sl->n_hist < (int32_t)r->n_ctx) sl->hist[sl->n_hist++] = b->token[k];
    }
    long used = 0;
    int n_s = 0;
    for (int i = 0; i < r->n_slots; i++) {
        slot *sl = &r->slots[i];
        used += sl->n_hist;
        if (!sl->req || sl->logit_idx < 0) continue;
        if (sl->req->num_predict == 0) {
            slot_finish(r, sl, "length", 0, NULL);
            continue;
        }
        const float *logits = hearth_get_logits(r->ctx, sl->logit_idx);
        if (!logits) {
            slot_finish(r, sl, "error", 500, "no logits after decode");
            continue;
        }
        if (sl->req->json_mode) { /* json_sample masks into the runner's one buffer: here, alone */
            hearth_token t = json_sample(r, sl, logits);
            if (sl->req->top_logprobs >= 0)
                gen_logprobs(logits, hearth_model_n_vocab(r->model), t, sl->req->top_logprobs, &sl->lp);
            slot_token(r, sl, t);
        } else
            r->s_slot[n_s] = sl, r->s_logits[n_s] = logits, n_s++;
    }
    t[3] = hb_now_ns();
    sample_slots(r, n_s);
    t[4] = hb_now_ns();
    for (int k = 0; k < n_s; k++) slot_token(r, r->s_slot[k], r->s_tok[k]);
    atomic_store(&r->kv_used, used);
    t[5] = hb_now_ns();
    for (int k = 0; k < 5; k++) r->prof[k] += t[k + 1] - t[k];
    r->prof_steps++;
}

/* Logs (debug) where the steps since the last report spent their time, and starts over. */
static void prof_report(runner *r) {
    double n = (double)r->prof_steps;
    if (r->prof_steps > 0)
        SRV_LOG(r->s->srv, HEARTH_LOG_DEBUG,
                "model=%s: %ld steps, per step (us): batch %.1f, decode %.1f, logits %.1f, sampling %.1f%s, output %.1f",
                r->name, r->prof_steps, r->prof[0] / n / 1e3, r->prof[1] / n / 1e3, r->prof[2] / n / 1e3,
                r->prof[3] / n / 1e3, r->pool ? " (helpers)" : "", r->prof[4] / n / 1e3);
    memset(r->prof, 0, sizeof r->prof);
    r->prof_steps = 0;
}

static bool any_active(runner *r) {
    for (int i = 0; i < r->n_slots; i++)
        if (r->slots[i].req) return true;
    return false;
}

static gen_req *queue_pop(runner *r) {
    if (!r->q_len) return NULL;
    gen_req *g = r->queue[r->q_head];
    r->q_head = (r->q_head + 1) % r->q_cap;
    r->q_len--;
    return g;
}

static void *runner_main(void *arg) {
    runner *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->quit && !r->cancel_all && r->q_len == 0 && !any_active(r)) pthread_cond_wait(&r->cv, &r->mu);
        bool quit = r->quit;
        gen_req *admit[256];
        int n_admit = 0;
        if (r->cancel_all || quit) {
            gen_req *g;
            while ((g = queue_pop(r))) {
                gen_req_finish(g, "cancelled", 503, "server is shutting down");
                gen_req_unref(g);
            }
        }
        /* Reserve slots here, start them outside the lock. */
        int free_n = 0;
        for (int i = 0; i < r->n_slots; i++) free_n += r->slots[i].req == NULL;
        while (n_admit < free_n && n_admit < 256 && r->q_len) admit[n_admit++] = queue_pop(r);
        pthread_mutex_unlock(&r->mu);
        for (int i = 0; i < n_admit; i++) slot_start(r, admit[i]);
        if (quit) break;
        step(r);
        if (!any_active(r)) prof_report(r);
        if (r->cancel_all && !any_active(r)) {
            pthread_mutex_lock(&r->mu);
            while (!r->quit && r->q_len == 0) pthread_cond_wait(&r->cv, &r->mu);
            pthread_mutex_unlock(&r->mu);
        }
    }
    for (int i = 0; i < r->n_slots; i++) slot_finish(r, &r->slots[i], "cancelled", 503, "model unloaded");
    return NULL;
}

/* Drops queued requests whose clients have gone (under r->mu): they would otherwise hold
 * their places until admitted, and a live client would be refused as "busy" meanwhile. */
static void queue_purge(runner *r) {
    int kept = 0;
    for (int i = 0; i < r->q_len; i++) {
        gen_req *g = r->queue[(r->q_head + i) % r->q_cap];
        if (atomic_load(&g->cancel)) {
            gen_req_finish(g, "cancelled", 499, "request cancelled");
            gen_req_unref(g);
        } else {
            r->queue[(r->q_head + kept++) % r->q_cap] = g;
        }
    }
    r->q_len = kept;
}

bool runner_submit(runner *r, gen_req *g, hb_err *err) {
    bool ok = false;
    pthread_mutex_lock(&r->mu);
    queue_purge(r);
    int max_q = r->s->srv->p.max_queue + r->n_slots; /* waiting beyond the free slots */
    if (r->quit || r->cancel_all) {
        hb_fail(err, HEARTH_E_CANCELLED, "server is shutting down");
    } else if (r->q_len >= max_q || r->q_len >= r->q_cap) {
        hb_fail(err, HEARTH_E_NOMEM, "server busy: %d requests already queued for %s (HEARTH_MAX_QUEUE)", r->q_len, r->name);
    } else {
        gen_req_ref(g);
        r->queue[(r->q_head + r->q_len) % r->q_cap] = g;
        r->q_len++;
        ok = true;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

int runner_embed(runner *r, const hearth_token *toks, int32_t n, float *out, size_t n_out, hb_err *err) {
    int rc = HEARTH_OK;
    char msg[512] = "";
    hearth_batch b = { 0 };
    pthread_mutex_lock(&r->emu);
    if (!r->ectx) {
        hearth_context_params cp = hearth_context_default_params();
        cp.n_ctx = r->n_ctx, cp.n_seq_max = 1, cp.n_batch = r->n_ctx, cp.embeddings = true;
        cp.n_threads = r->s->srv->p.n_threads;
        rc = hearth_context_new(r->model, &cp, &r->ectx, msg, sizeof msg);
        HB_CHECK(rc == HEARTH_OK, rc, "cannot create an embedding context: %s", msg);
        hearth_placement pl;
        if (hearth_context_placement(r->ectx, &pl) == HEARTH_OK)
            SRV_LOG(r->s->srv, HEARTH_LOG_INFO, "%s (embeddings): %s", r->name, pl.summary);
    }
    HB_CHECK(n > 0, HEARTH_E_INVALID, "input is empty after tokenization");
    HB_CHECK((uint32_t)n <= r->n_ctx, HEARTH_E_CONTEXT, "input is %d tokens but the context is %u tokens; set \"truncate\": true to cut it", n, r->n_ctx);
    b = hearth_batch_init(n);
    HB_CHECK(b.capacity >= n, HEARTH_E_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) hearth_batch_add(&b, toks[i], i, 0, i == n - 1);
    hearth_kv_clear(r->ectx);
    rc = hearth_decode(r->ectx, &b);
    if (decode_broke(rc)) {
        hb_fail(err, rc, "embedding decode failed: %s", hearth_context_errmsg(r->ectx));
        hearth_context_free(r->ectx); /* it may be unusable now (a GPU error is sticky): the next call makes another */
        r->ectx = NULL;
        goto out;
    }
    HB_CHECK(rc == HEARTH_OK, rc, "embedding decode failed: %s", hearth_context_errmsg(r->ectx));
    rc = hearth_get_embeddings_seq(r->ectx, 0, out, n_out);
    HB_CHECK(rc == HEARTH_OK, rc, "embedding failed: %s", hearth_context_errmsg(r->ectx));
out:
    hearth_batch_free(&b);
    pthread_mutex_unlock(&r->emu);
    return rc;
}

/* ---- loading and unloading ------------------------------------------------------------------ */

static bool abort_cb(void *ud) { return atomic_load(&((runner *)ud)->abort_decode); }

/* Stops r's thread and frees what runner_init made, leaving r as runner_new made it. */
static void runner_teardown(runner *r) {
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->quit = true;
        atomic_store(&r->abort_decode, true);
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
        r->started = false;
    }
    spool_free(r->pool);
    free(r->s_slot);
    free(r->s_logits);
    free(r->s_tok);
    gen_req *g;
    while ((g = queue_pop(r))) {
        gen_req_finish(g, "cancelled", 503, "model unloaded");
        gen_req_unref(g);
    }
    for (int i = 0; r->slots && i < r->n_slots; i++) {
        free(r->slots[i].hist);
        free(r->slots[i].pend);
    }
    free(r->slots);
    free(r->queue);
    free(r->opens_json);
    free(r->mlogits);
    hearth_batch_free(&r->batch);
    hearth_context_free(r->ectx);
    hearth_context_free(r->ctx);
    hearth_model_free(r->model);
    r->pool = NULL, r->s_slot = NULL, r->s_logits = NULL, r->s_tok = NULL, r->slots = NULL, r->queue = NULL;
    r->opens_json = NULL, r->mlogits = NULL, r->ectx = NULL, r->ctx = NULL, r->model = NULL;
    r->n_slots = 0;
}

void runner_free(runner *r) {
    if (!r) return;
    runner_teardown(r);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->emu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* How many helper threads sample a step's slots beside the runner (params'
 * sample_threads; -1: automatic). Automatic gives helpers only to a model that runs wholly
 * on an accelerator: there the host's sampling is a visible share of a step (~50 us per
 * sequence of a 32k vocabulary with Ollama's defaults, its logits fresh from the device:
 * docs/performance.md "Server"), and the CPU's cores are otherwise idle. A CPU
 * model's step is milliseconds long and its cores are the model's. At most one helper per
 * slot beyond the first, one core left free, and 7 in all. */
static int pool_helpers(const hearth_server *srv, const runner *r) {
    int n = srv->p.sample_threads;
    if (n < 0) {
        hearth_placement pl;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        bool gpu = hearth_context_placement(r->ctx, &pl) == HEARTH_OK && pl.n_layer > 0 &&
                   pl.n_gpu_layers == pl.n_layer && pl.output_on_gpu;
        n = gpu ? (int)(cpus > 8 ? 7 : cpus - 1) : 0;
    }
    return n < r->n_slots - 1 ? n : r->n_slots - 1;
}

/* Starts r's sampling helpers when it should have some. Without them the runner samples
 * alone, as it would anyway, so a failure here is only logged. */
static void start_pool(hearth_server *srv, runner *r, const char *name) {
    int n = pool_helpers(srv, r);
    hb_err e = { 0 };
    if (n < 1) return;
    if (spool_new(n, &r->pool, &e) != HEARTH_OK)
        SRV_LOG(srv, HEARTH_LOG_WARN, "model=%s: %s; the runner samples alone", name, e.msg);
    else
        SRV_LOG(srv, HEARTH_LOG_INFO, "model=%s: %d sampling helper thread%s", name, n, n == 1 ? "" : "s");
}

static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    uint64_t kb = 0;
    if (!f) return UINT64_MAX;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1) break;
    fclose(f);
    return kb ? kb * 1024 : UINT64_MAX;
}

/* Refuses a model whose weights plus KV cache would not fit in available memory. Called
 * after the (memory-mapped, so still cheap) model load and before the KV cache exists. */
static int check_memory(hearth_server *srv, hearth_model *m, uint32_t *n_ctx_out, hb_err *err) {
    int rc = HEARTH_OK;
    uint32_t n_ctx = srv->p.n_ctx;
    if (!n_ctx) {
        int32_t t = hearth_model_n_ctx_train(m);
        n_ctx = t > 0 && t < 4096 ? (uint32_t)t : 4096;
    }
    *n_ctx_out = n_ctx;
    uint64_t head_dim = hearth_model_n_head(m) > 0 ? (uint64_t)hearth_model_n_embd(m) / (uint64_t)hearth_model_n_head(m) : 0;
    uint64_t kv = 2ull * (uint64_t)hearth_model_n_layer(m) * n_ctx * (uint64_t)srv->p.num_parallel *
                  (uint64_t)hearth_model_n_head_kv(m) * head_dim * 2ull;
    uint64_t need = hearth_model_size_bytes(m) + kv + (64ull << 20);
    uint64_t avail = mem_available();
    HB_CHECK(need <= avail, HEARTH_E_NOMEM,
             "model needs about %llu MiB (weights %llu MiB + KV cache %llu MiB for %d x %u tokens) but only %llu MiB are available",
             (unsigned long long)(need >> 20), (unsigned long long)(hearth_model_size_bytes(m) >> 20),
             (unsigned long long)(kv >> 20), srv->p.num_parallel, n_ctx, (unsigned long long)(avail >> 20));
out:
    return rc;
}

int runner_new(sched *s, const char *name, const char *path, runner **out, hb_err *err) {
    runner *r = calloc(1, sizeof *r);
    *out = NULL;
    if (!r) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->emu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->s = s;
    store_name nm; /* the canonical spelling ("stories:latest"), as /api/tags lists it */
    hb_err ne = { 0 };
    if (store_name_parse(name, &nm, &ne) == HEARTH_OK) store_name_display(&nm, r->name, sizeof r->name);
    else snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->path, sizeof r->path, "%s", path);
    *out = r;
    return HEARTH_OK;
}

int runner_init(runner *r, hb_err *err) {
    int rc = HEARTH_OK;
    char msg[512] = "";
    hearth_server *srv = r->s->srv;
    uint32_t n_ctx = 0;
    hearth_model_params mp = hearth_model_default_params();
    mp.backend = srv->p.backend;
    mp.n_gpu_layers = srv->p.n_gpu_layers;
    mp.log = srv->p.log, mp.log_user_data = srv->p.log_user_data, mp.log_level = HEARTH_LOG_WARN;
    if (r->s->test_load_delay_ms > 0) { /* a testing aid: a slow load without a large model */
        struct timespec ts = { r->s->test_load_delay_ms / 1000, r->s->test_load_delay_ms % 1000 * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    rc = hearth_model_load(r->path, &mp, &r->model, msg, sizeof msg);
    HB_CHECK(rc == HEARTH_OK, rc, "cannot load model: %s", msg);
    if ((rc = check_memory(srv, r->model, &n_ctx, err))) goto out;
    hearth_context_params cp = hearth_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq_max = (uint32_t)srv->p.num_parallel;
    cp.n_batch = 512;
    cp.n_threads = srv->p.n_threads;
    rc = hearth_context_new(r->model, &cp, &r->ctx, msg, sizeof msg);
    HB_CHECK(rc == HEARTH_OK, rc, "cannot create a context: %s", msg);
    hearth_placement pl;
    if (hearth_context_placement(r->ctx, &pl) == HEARTH_OK) SRV_LOG(srv, HEARTH_LOG_INFO, "%s: %s", r->name, pl.summary);
    hearth_context_set_abort(r->ctx, abort_cb, r);
    r->n_ctx = hearth_context_n_ctx(r->ctx);
    r->n_batch = cp.n_batch;
    r->n_slots = (int)hearth_context_n_seq_max(r->ctx);
    r->slots = calloc((size_t)r->n_slots, sizeof *r->slots);
    r->q_cap = srv->p.max_queue + r->n_slots + 1;
    r->queue = calloc((size_t)r->q_cap, sizeof *r->queue);
    r->batch = hearth_batch_init((int32_t)r->n_batch + r->n_slots);
    HB_CHECK(r->slots && r->queue && r->batch.capacity > 0, HEARTH_E_NOMEM, "out of memory");
    for (int i = 0; i < r->n_slots; i++) {
        r->slots[i].id = i;
        r->slots[i].hist = hb_calloc_n(r->n_ctx, sizeof(hearth_token));
        HB_CHECK(r->slots[i].hist, HEARTH_E_NOMEM, "out of memory");
    }
    r->s_slot = hb_calloc_n((size_t)r->n_slots, sizeof *r->s_slot);
    r->s_logits = hb_calloc_n((size_t)r->n_slots, sizeof *r->s_logits);
    r->s_tok = hb_calloc_n((size_t)r->n_slots, sizeof *r->s_tok);
    HB_CHECK(r->s_slot && r->s_logits && r->s_tok, HEARTH_E_NOMEM, "out of memory");
    start_pool(srv, r, r->name);
    HB_CHECK(pthread_create(&r->thread, NULL, runner_main, r) == 0, HEARTH_E_NOMEM, "cannot start a runner thread");
    r->started = true;
out:
    if (rc) runner_teardown(r);
    return rc;
}

int runner_queued(runner *r) {
    pthread_mutex_lock(&r->mu);
    queue_purge(r);
    int n = r->q_len;
    pthread_mutex_unlock(&r->mu);
    return n;
}
