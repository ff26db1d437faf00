/* sched.c — the loaded models: finding or loading the runner for a request (pinning it),
 * releasing it (it then stays for the keep_alive of the latest request that pinned it),
 * unloading on request, evicting idle models LRU when HEARTH_MAX_LOADED_MODELS are loaded,
 * and a manager thread that unloads expired ones.
 * The runners themselves (queue, decode loop) are in runner.c.
 *
 * Locking: sched.mu guards the runner list and pins (sched_impl.h). Nothing slow happens
 * under it: a model loads without it (a runner marked `loading` stands on the list for it,
 * and other requests for that model wait for it on sched.cv), and runners that were taken
 * off the list are stopped and freed after it is released.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/sched_impl.h"
#include "store/store.h"

/* ---- the list (everything here under sched.mu unless it says otherwise) ------------------ */

static void unlink_runner(sched *s, runner *r) {
    for (runner **p = &s->list; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            s->n_loaded--;
            return;
        }
}

static runner *find_runner(sched *s, const char *path) {
    runner *r = s->list;
    while (r && strcmp(r->path, path) != 0) r = r->next;
    return r;
}

/* Frees a chain of runners linked by `next` that nobody can reach any more; called without
 * sched.mu, since stopping a runner's thread and freeing its model take a while. */
static void free_chain(runner *r) {
    while (r) {
        runner *next = r->next;
        runner_free(r);
        r = next;
    }
}

/* Drops one pin. Returns r when that was the last pin of a runner off the list (the caller
 * frees it after unlocking), else NULL. */
static runner *unpin(sched *s, runner *r) {
    r->users--;
    if (r->users > 0 || !r->unlinked) return NULL;
    for (runner **p = &s->retired; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    r->next = NULL;
    return r;
}

/* Takes a runner whose decode failed off the list, so that the next request loads the
 * model afresh. Returns it when nobody uses it (the caller frees it after unlocking); else
 * it waits on sched.retired for its last user. */
static runner *retire(sched *s, runner *r, const char *name) {
    SRV_LOG(s->srv, HEARTH_LOG_INFO, "reloading model=%s after a failed decode", name);
    unlink_runner(s, r);
    r->unlinked = true;
    r->next = NULL;
    if (r->users == 0) return r;
    r->next = s->retired;
    s->retired = r;
    return NULL;
}

/* Makes room for one more model: idle runners, least recently used first, go off the list
 * onto *evicted (the caller frees them after unlocking). HEARTH_E_NOMEM when every loaded
 * (or loading) model is in use. */
static int make_room(sched *s, runner **evicted, hb_err *err) {
    while (s->n_loaded >= s->srv->p.max_loaded) {
        runner *victim = NULL;
        for (runner *q = s->list; q; q = q->next)
            if (q->users == 0 && (!victim || q->last_used < victim->last_used)) victim = q;
        if (!victim)
            return hb_fail(err, HEARTH_E_NOMEM, "server busy: %d models loaded and all in use (HEARTH_MAX_LOADED_MODELS)",
                           s->n_loaded);
        unlink_runner(s, victim);
        victim->next = *evicted;
        *evicted = victim;
    }
    return HEARTH_OK;
}

/* Waits, pinning r, until the load of r that another request started has ended. When it
 * failed, or the server is stopping first, the pin is dropped and *dead gets r if that was
 * the last one (the caller frees it after unlocking). */
static int wait_loaded(sched *s, runner *r, runner **dead, int *http_status, hb_err *err) {
    int rc = HEARTH_OK;
    while (r->loading && !s->shutting) pthread_cond_wait(&s->cv, &s->mu);
    if (r->load_failed) {
        rc = hb_fail(err, r->load_err.code, "%s", r->load_err.msg);
        *http_status = r->load_status;
    } else if (r->loading) {
        rc = hb_fail(err, HEARTH_E_CANCELLED, "server is shutting down");
        *http_status = 503;
    }
    if (rc) *dead = unpin(s, r);
    return rc;
}

/* Loads r, which this request made, pinned and put on the list as loading: runs without
 * sched.mu, then tells the requests waiting for r how it went. A failed load takes r off
 * the list and drops this request's pin. */
static int load(sched *s, runner *r, const char *name, int *http_status, hb_err *err) {
    hb_err e = { 0 };
    runner *dead = NULL;
    int rc = runner_init(r, &e);
    pthread_mutex_lock(&s->mu);
    r->loading = false;
    r->last_used = hb_now_ns();
    if (rc) {
        SRV_LOG(s->srv, HEARTH_LOG_WARN, "model=%s: %s", name, e.msg);
        unlink_runner(s, r);
        r->unlinked = r->load_failed = true;
        r->load_err = e;
        r->load_status = rc == HEARTH_E_NOMEM ? 507 : http_status_of(rc);
        *http_status = r->load_status;
        dead = unpin(s, r);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    runner_free(dead);
    if (rc) hb_fail(err, rc, "%s", e.msg);
    return rc;
}

/* ---- the scheduler's calls ------------------------------------------------------------------ */

int sched_acquire(sched *s, const char *name, int64_t keep_alive_ns, runner **out, uint64_t *load_ns, int *http_status,
                  hb_err *err) {
    int rc = HEARTH_OK;
    char path[4200];
    uint64_t t0 = hb_now_ns();
    runner *r = NULL, *dead = NULL, *evicted = NULL;
    bool loader = false, waited = false;
    *out = NULL;
    *load_ns = 0;
    *http_status = 200;
    if ((rc = store_model_path(s->srv->models_dir, name, false, path, sizeof path, err))) {
        *http_status = http_status_of(rc);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    if (s->shutting) {
        rc = hb_fail(err, HEARTH_E_CANCELLED, "server is shutting down");
        *http_status = 503;
        goto unlock;
    }
    r = find_runner(s, path);
    if (r && atomic_load(&r->broken)) { /* load it again; the old one goes with its last user */
        dead = retire(s, r, name);
        r = NULL;
    }
    if (!r) {
        if ((rc = make_room(s, &evicted, err))) {
            *http_status = 503;
            goto unlock;
        }
        if ((rc = runner_new(s, name, path, &r, err))) {
            *http_status = 500;
            goto unlock;
        }
        r->loading = loader = true;
        r->next = s->list;
        s->list = r;
        s->n_loaded++;
    }
    r->users++;
    r->unload = false; /* wanted again (e.g. by another name of the same file) */
    r->keep_alive_ns = keep_alive_ns;
    if (r->loading && !loader) {
        waited = true;
        if ((rc = wait_loaded(s, r, &dead, http_status, err))) r = NULL;
    }
    if (r && !loader) r->last_used = hb_now_ns();
unlock:
    pthread_mutex_unlock(&s->mu);
    runner_free(dead);
    free_chain(evicted); /* before the load: their memory is what makes room */
    if (loader && (rc = load(s, r, name, http_status, err)) == HEARTH_OK)
        SRV_LOG(s->srv, HEARTH_LOG_INFO, "loaded model=%s path=%s n_ctx=%u slots=%d load_ms=%.1f", name, path, r->n_ctx,
                r->n_slots, (double)(hb_now_ns() - t0) / 1e6);
    if (rc == HEARTH_OK) {
        *out = r;
        if (loader || waited) *load_ns = hb_now_ns() - t0;
    }
    return rc;
}

/* Whether r goes as soon as it is idle, whatever its keep_alive (under sched.mu). */
static bool unload_when_idle(runner *r) { return atomic_load(&r->broken) || r->unload; }

void sched_release(sched *s, runner *r) {
    if (!r) return;
    pthread_mutex_lock(&s->mu);
    r->last_used = hb_now_ns();
    bool now = unload_when_idle(r);
    r->forever = r->keep_alive_ns < 0 && !now;
    r->expires_ns = now ? 0 : r->last_used + (uint64_t)(r->keep_alive_ns > 0 ? r->keep_alive_ns : 0);
    runner *dead = unpin(s, r); /* replaced after a failed decode (sched_acquire) */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    runner_free(dead);
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

/* Takes the runners whose keep_alive expired off the list; returns them as a chain for
 * free_chain. */
static runner *take_expired(sched *s, uint64_t now) {
    runner *dead = NULL;
    for (runner *r = s->list, *next; r; r = next) {
        next = r->next;
        if (r->users == 0 && !r->forever && now >= r->expires_ns) {
            SRV_LOG(s->srv, HEARTH_LOG_INFO, "unloaded model=%s", r->name);
            unlink_runner(s, r);
            r->next = dead;
            dead = r;
        }
    }
    return dead;
}

/* Unloads models whose keep_alive expired (freeing them without sched.mu); runs until
 * sched_free. */
static void *manager_main(void *arg) {
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->quit) {
        runner *dead = take_expired(s, hb_now_ns());
        if (dead) {
            pthread_mutex_unlock(&s->mu);
            free_chain(dead);
            pthread_mutex_lock(&s->mu);
            continue;
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
    pthread_cond_broadcast(&s->cv); /* requests waiting for a load give up (wait_loaded) */
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
    /* Connections have drained (their threads joined): nobody uses or loads a runner now. */
    while (s->list || s->retired) {
        runner **head = s->list ? &s->list : &s->retired, *r = *head;
        *head = r->next;
        runner_free(r);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* Fills *v from r (a loaded runner, under sched.mu) for /api/ps. A model in use shows the
 * expiry it will have if its requests end now (as Ollama's does), not "now". */
static void runner_info_fill(runner *r, runner_info *v) {
    snprintf(v->name, sizeof v->name, "%s", r->name);
    snprintf(v->path, sizeof v->path, "%s", r->path);
    v->size = hearth_model_size_bytes(r->model);
    hearth_placement pl;
    if (r->ctx && hearth_context_placement(r->ctx, &pl) == HEARTH_OK && pl.n_layer > 0)
        v->size_vram = pl.n_gpu_layers >= pl.n_layer ? v->size : v->size / (uint64_t)pl.n_layer * (uint64_t)pl.n_gpu_layers;
    v->n_ctx = r->n_ctx;
    uint64_t now = hb_now_ns();
    int64_t left; /* ns; < 0 forever */
    if (r->users) left = unload_when_idle(r) ? 0 : r->keep_alive_ns;
    else left = r->forever ? -1 : (int64_t)(r->expires_ns > now ? r->expires_ns - now : 0);
    v->expires_at = left < 0 ? 0 : (int64_t)time(NULL) + left / 1000000000LL;
}

int sched_list(sched *s, runner_info **out, size_t *n) {
    pthread_mutex_lock(&s->mu);
    size_t cnt = (size_t)s->n_loaded, i = 0;
    runner_info *v = calloc(cnt ? cnt : 1, sizeof *v);
    for (runner *r = s->list; v && r && i < cnt; r = r->next)
        if (!r->loading) runner_info_fill(r, &v[i++]); /* not listed until it has loaded */
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
        if (r->loading) continue;
        *kv_used += atomic_load(&r->kv_used);
        *kv_total += (int64_t)r->n_ctx * r->n_slots;
        *busy += atomic_load(&r->busy);
        *queued += runner_queued(r);
        (*loaded)++;
    }
    pthread_mutex_unlock(&s->mu);
}
