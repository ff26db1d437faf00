/* sched.c — the loaded models: finding or loading the runner for a request (pinning it),
 * releasing it with its keep_alive, unloading on request, evicting idle models LRU when
 * HEARTH_MAX_LOADED_MODELS are loaded, and a manager thread that unloads expired ones.
 * The runners themselves (queue, decode loop) are in runner.c.
 *
 * Locking: sched.mu guards the runner list and pins (sched_impl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/sched_impl.h"
#include "store/store.h"

static void unlink_runner(sched *s, runner *r) {
    for (runner **p = &s->list; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            s->n_loaded--;
            return;
        }
}

int sched_acquire(sched *s, const char *name, runner **out, uint64_t *load_ns, int *http_status, hb_err *err) {
    int rc = HEARTH_OK;
    char path[4200];
    uint64_t t0 = hb_now_ns();
    *out = NULL;
    *load_ns = 0;
    *http_status = 200;
    if ((rc = store_model_path(s->srv->models_dir, name, false, path, sizeof path, err))) {
        *http_status = http_status_of(rc);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    runner *r = NULL;
    if (s->shutting) {
        rc = hb_fail(err, HEARTH_E_CANCELLED, "server is shutting down");
        *http_status = 503;
        goto out;
    }
    for (r = s->list; r; r = r->next)
        if (strcmp(r->path, path) == 0) break;
    if (r && atomic_load(&r->broken)) { /* load it again; the old one goes with its last user */
        SRV_LOG(s->srv, HEARTH_LOG_INFO, "reloading model=%s after a failed decode", name);
        unlink_runner(s, r);
        if (r->users == 0) {
            runner_free(r);
        } else {
            r->unlinked = true;
            r->next = s->retired;
            s->retired = r;
        }
        r = NULL;
    }
    if (!r) {
        while (s->n_loaded >= s->srv->p.max_loaded) {
            runner *victim = NULL;
            for (runner *q = s->list; q; q = q->next)
                if (q->users == 0 && (!victim || q->last_used < victim->last_used)) victim = q;
            if (!victim) {
                rc = hb_fail(err, HEARTH_E_NOMEM, "server busy: %d models loaded and all in use (HEARTH_MAX_LOADED_MODELS)", s->n_loaded);
                *http_status = 503;
                goto out;
            }
            unlink_runner(s, victim);
            runner_free(victim);
        }
        if ((rc = runner_load(s, name, path, &r, err))) {
            *http_status = rc == HEARTH_E_NOMEM ? 507 : http_status_of(rc);
            goto out;
        }
        r->next = s->list;
        s->list = r;
        s->n_loaded++;
        *load_ns = hb_now_ns() - t0;
        SRV_LOG(s->srv, HEARTH_LOG_INFO, "loaded model=%s path=%s n_ctx=%u slots=%d load_ms=%.1f", name, path, r->n_ctx,
                r->n_slots, (double)*load_ns / 1e6);
    }
    r->users++;
    r->unload = false; /* wanted again (e.g. by another name of the same file) */
    r->last_used = hb_now_ns();
    *out = r;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sched_release(sched *s, runner *r, int64_t keep_alive_ns) {
    if (!r) return;
    pthread_mutex_lock(&s->mu);
    r->users--;
    r->last_used = hb_now_ns();
    bool now = atomic_load(&r->broken) || r->unload;
    r->forever = keep_alive_ns < 0 && !now;
    r->expires_ns = now ? 0 : r->last_used + (uint64_t)(keep_alive_ns > 0 ? keep_alive_ns : 0);
    if (r->unlinked && r->users == 0) { /* replaced after a failed decode (sched_acquire) */
        for (runner **p = &s->retired; *p; p = &(*p)->next)
            if (*p == r) {
                *p = r->next;
                break;
            }
        runner_free(r);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool sched_unload(sched *s, const char *name) {
    char path[4200];
    hb_err e = { 0 };
    bool found = false;
    if (store_model_path(s->srv->models_dir, name, false, path, sizeof path, &e)) return false;
    pthread_mutex_lock(&s->mu);
    for (runner *r = s->list; r; r = r->next)
        if (strcmp(r->path, path) == 0) {
            /* Busy models unload when their last request ends, whatever keep_alive that
             * request asked for (sched_release; a later sched_acquire takes it back). */
            r->forever = false;
            r->expires_ns = 0;
            r->unload = true;
            found = true;
        }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* Unloads models whose keep_alive expired; runs until sched_free. */
static void *manager_main(void *arg) {
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->quit) {
        uint64_t now = hb_now_ns();
        for (runner *r = s->list, *next; r; r = next) {
            next = r->next;
            if (r->users == 0 && !r->forever && now >= r->expires_ns) {
                SRV_LOG(s->srv, HEARTH_LOG_INFO, "unloaded model=%s", r->name);
                unlink_runner(s, r);
                runner_free(r);
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sched_new(hearth_server *srv, sched **out, hb_err *err) {
    sched *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    s->srv = srv;
    const char *delay = getenv("HEARTH_TEST_LOAD_DELAY_MS");
    s->test_load_delay_ms = delay ? strtol(delay, NULL, 10) : 0;
    if (s->test_load_delay_ms < 0 || s->test_load_delay_ms > 600000) s->test_load_delay_ms = 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->mgr, NULL, manager_main, s) != 0) {
        free(s);
        return hb_fail(err, HEARTH_E_NOMEM, "cannot start the scheduler thread");
    }
    s->mgr_started = true;
    *out = s;
    return HEARTH_OK;
}

void sched_shutdown(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->shutting = true;
    for (int l = 0; l < 2; l++)
        for (runner *r = l ? s->retired : s->list; r; r = r->next) {
            pthread_mutex_lock(&r->mu);
            r->cancel_all = true;
            atomic_store(&r->abort_decode, true);
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
        }
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s) {
    if (!s) return;
    sched_shutdown(s);
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->mgr_started) pthread_join(s->mgr, NULL);
    while (s->list || s->retired) { /* connections have drained: nobody uses a runner now */
        runner **head = s->list ? &s->list : &s->retired, *r = *head;
        *head = r->next;
        runner_free(r);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int sched_list(sched *s, runner_info **out, size_t *n) {
    pthread_mutex_lock(&s->mu);
    size_t cnt = (size_t)s->n_loaded, i = 0;
    runner_info *v = calloc(cnt ? cnt : 1, sizeof *v);
    for (runner *r = s->list; v && r && i < cnt; r = r->next, i++) {
        snprintf(v[i].name, sizeof v[i].name, "%s", r->name);
        snprintf(v[i].path, sizeof v[i].path, "%s", r->path);
        v[i].size = hearth_model_size_bytes(r->model);
        hearth_placement pl;
        if (r->ctx && hearth_context_placement(r->ctx, &pl) == HEARTH_OK && pl.n_layer > 0)
            v[i].size_vram = pl.n_gpu_layers >= pl.n_layer ? v[i].size
                                                            : v[i].size / (uint64_t)pl.n_layer * (uint64_t)pl.n_gpu_layers;
        v[i].n_ctx = r->n_ctx;
        if (r->forever) v[i].expires_at = 0;
        else {
            uint64_t now = hb_now_ns();
            int64_t left = r->users ? 0 : (int64_t)(r->expires_ns > now ? r->expires_ns - now : 0);
            v[i].expires_at = (int64_t)time(NULL) + left / 1000000000LL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    *out = v;
    *n = v ? i : 0;
    return v ? HEARTH_OK : HEARTH_E_NOMEM;
}

void sched_stats(sched *s, int64_t *kv_used, int64_t *kv_total, int *loaded, int *busy, int *queued) {
    *kv_used = *kv_total = 0;
    *loaded = *busy = *queued = 0;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    for (runner *r = s->list; r; r = r->next) {
        *kv_used += atomic_load(&r->kv_used);
        *kv_total += (int64_t)r->n_ctx * r->n_slots;
        *busy += atomic_load(&r->busy);
        *queued += runner_queued(r);
        (*loaded)++;
    }
    pthread_mutex_unlock(&s->mu);
}
