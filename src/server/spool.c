/* spool.c — see spool.h. A job is (fn, arg, n) plus a shared index: everyone who joins takes
 * the next index until none is left. The caller takes items too, so a job never waits for
 * a helper to wake up before it starts, and a helper that wakes after the last item was
 * taken just goes back to sleep. `busy` counts the helpers inside a job; the caller
 * returns only when it is 0, so no helper still runs an item of a finished job when the
 * caller reuses what arg points at, and a new job starts only when it is 0 again. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "server/spool.h"

struct spool {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job, or quit */
    pthread_cond_t idle; /* busy dropped to 0 */
    pthread_t *th;
    int n_th;            /* threads started */
    uint64_t gen;        /* job number, under mu */
    bool quit;           /* under mu */
    spool_fn fn;         /* the current job, under mu */
    void *arg;
    int n;
    atomic_int next;     /* next item of the current job */
    int busy;            /* helpers inside the current job, under mu */
};

/* Runs items of the job (fn, arg, n) until none is left. */
static void take_items(spool *p, spool_fn fn, void *arg, int n) {
    for (int i; (i = atomic_fetch_add(&p->next, 1)) < n;) fn(arg, i);
}

static void *helper_main(void *v) {
    spool *p = v;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        spool_fn fn = p->fn;
        void *arg = p->arg;
        int n = p->n;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        take_items(p, fn, arg, n);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int spool_new(int n_helpers, spool **out, hb_err *err) {
    int rc = HEARTH_OK;
    spool *p = NULL;
    *out = NULL;
    HB_CHECK(n_helpers >= 1 && n_helpers <= 64, HEARTH_E_INVALID, "sampling threads: %d helpers (expected 1..64)", n_helpers);
    p = calloc(1, sizeof *p);
    HB_CHECK(p, HEARTH_E_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    atomic_init(&p->next, 0);
    p->th = calloc((size_t)n_helpers, sizeof *p->th);
    HB_CHECK(p->th, HEARTH_E_NOMEM, "out of memory");
    for (; p->n_th < n_helpers; p->n_th++)
        HB_CHECK(pthread_create(&p->th[p->n_th], NULL, helper_main, p) == 0, HEARTH_E_NOMEM,
                 "cannot start a sampling thread");
    *out = p;
    p = NULL;
out:
    spool_free(p);
    return rc;
}

void spool_free(spool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p);
}

void spool_run(spool *p, spool_fn fn, void *arg, int n) {
    if (n == 1) { /* nothing to share */
        fn(arg, 0);
    } else if (n > 1) {
        pthread_mutex_lock(&p->mu);
        /* A helper that woke late for the last job may still be joining it (it found
         * nothing left to take, but holds that job's fn and arg): the index may not
         * restart under it. */
        while (p->busy > 0) pthread_cond_wait(&p->idle, &p->mu);
        p->fn = fn, p->arg = arg, p->n = n;
        atomic_store(&p->next, 0);
        p->gen++;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        take_items(p, fn, arg, n);
        pthread_mutex_lock(&p->mu);
        while (p->busy > 0) pthread_cond_wait(&p->idle, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int spool_helpers(const spool *p) { return p ? p->n_th : 0; }
