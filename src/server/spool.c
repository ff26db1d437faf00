/* spool.c — see spool.h. A job is (fn, arg, n) plus a shared index: everyone who joins takes
 * the next index until none is left. The caller takes items too, so a job never waits for
 * a helper to wake up before it starts, and a helper that wakes after the last item was
 * taken just goes back to sleep. `busy` counts the helpers inside a job; the caller
 * returns only when it is 0, so no helper still runs an item of a finished job when the
 * caller reuses what arg points at, and a new job starts only when it is 0 again.
 *
 * Waking a sleeping thread takes tens of microseconds (the futex, the scheduler, an idle
 * core's way out of its sleep state), as long as a whole job of 8 samples. So a caller that
 * knows when its next job will come (the runner: when the GPU step should end) arms the
 * pool: the helpers sleep until that time, then poll for the job for at most SPOOL_SPIN_NS
 * and sleep again if it has not come. Unarmed, they only sleep. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "server/spool.h"

#define SPOOL_SPIN_NS 300000ull /* longest poll after the armed time */

struct spool {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job, a new arming, or quit (CLOCK_MONOTONIC timed waits) */
    pthread_cond_t idle; /* busy dropped to 0 */
    pthread_t *th;
    int n_th;            /* threads started */
    atomic_uint_fast64_t gen; /* job number: written under mu, polled without it */
    uint64_t armed_at;   /* hb_now_ns when the next job is expected (0: not armed), under mu */
    atomic_bool quit;    /* written under mu */
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

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* With mu held: waits until the job number moves past `seen` or quit. Armed, it sleeps
 * until the armed time, then polls (mu released) until the job comes or the poll's time is
 * up; `polled` remembers the arming it polled for, so one arming costs one poll. */
static void wait_job(spool *p, uint64_t seen, uint64_t *polled) {
    while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) {
        uint64_t at = p->armed_at, now = hb_now_ns();
        if (at && at != *polled && now < at) {
            struct timespec ts = { (time_t)(at / 1000000000ull), (long)(at % 1000000000ull) };
            pthread_cond_timedwait(&p->wake, &p->mu, &ts);
        } else if (at && at != *polled) {
            *polled = at;
            pthread_mutex_unlock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit) && hb_now_ns() < at + SPOOL_SPIN_NS)
                cpu_relax();
            pthread_mutex_lock(&p->mu);
        } else {
            pthread_cond_wait(&p->wake, &p->mu);
        }
    }
}

static void *helper_main(void *v) {
    spool *p = v;
    uint64_t seen = 0, polled = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        wait_job(p, seen, &polled);
        if (atomic_load(&p->quit)) break;
        seen = atomic_load(&p->gen);
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
    pthread_condattr_t ca;
    bool ca_ok = false;
    *out = NULL;
    HB_CHECK(n_helpers >= 1 && n_helpers <= 64, HEARTH_E_INVALID, "sampling threads: %d helpers (expected 1..64)", n_helpers);
    ca_ok = pthread_condattr_init(&ca) == 0;
    HB_CHECK(ca_ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0, HEARTH_E_INTERNAL,
             "sampling threads: no monotonic condition variables");
    p = calloc(1, sizeof *p);
    HB_CHECK(p, HEARTH_E_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, &ca);
    pthread_cond_init(&p->idle, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->quit, false);
    atomic_init(&p->next, 0);
    p->th = calloc((size_t)n_helpers, sizeof *p->th);
    HB_CHECK(p->th, HEARTH_E_NOMEM, "out of memory");
    for (; p->n_th < n_helpers; p->n_th++)
        HB_CHECK(pthread_create(&p->th[p->n_th], NULL, helper_main, p) == 0, HEARTH_E_NOMEM,
                 "cannot start a sampling thread");
    *out = p;
    p = NULL;
out:
    if (ca_ok) pthread_condattr_destroy(&ca);
    spool_free(p); /* joins the threads it started, if any */
    return rc;
}

void spool_free(spool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p);
}

void spool_arm(spool *p, uint64_t at_ns) {
    if (p) {
        pthread_mutex_lock(&p->mu);
        p->armed_at = at_ns;
        pthread_cond_broadcast(&p->wake); /* sleepers re-time their wait */
        pthread_mutex_unlock(&p->mu);
    }
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
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        take_items(p, fn, arg, n);
        pthread_mutex_lock(&p->mu);
        while (p->busy > 0) pthread_cond_wait(&p->idle, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int spool_helpers(const spool *p) { return p ? p->n_th : 0; }
