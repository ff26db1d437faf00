/* pool.c — persistent worker threads. A generation counter under a mutex wakes workers.
 *
 * Waiting (workers for the next job, the caller for the workers) spins for up to
 * POOL_SPIN_NS of wall time before sleeping on a condition variable. The budget is in time,
 * not iterations (PAUSE costs anywhere from ~10 to ~150 cycles depending on the CPU), and
 * long enough to cover the single-threaded gaps between the ~200 parallel ops of one decode
 * step: a worker that falls asleep must be woken and rescheduled, which on a busy machine
 * can cost a whole scheduler time slice per op and made generation several times slower. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

struct cpu_pool {
    int n;                      /* total threads including the caller */
    pthread_t *threads;         /* [n-1] */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    atomic_uint gen;            /* bumped per job */
    atomic_int pending;         /* workers still running the current job */
    cpu_task_fn fn;
    void *ctx;
    bool stop;
};

#define POOL_SPIN_NS 2000000ull /* 2 ms */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Called every 128 polls while spinning: true when the time budget is spent. Past the
 * first POOL_YIELD_NS the spinner also yields, so that on a core shared with other
 * runnable threads (the machine is busy, or more threads than cores) the thread it waits
 * for gets the core instead of a spinning neighbour; on an idle core sched_yield returns
 * at once. */
#define POOL_YIELD_NS 20000ull /* 20 us */
static bool spin_tick(uint64_t *t0) {
    uint64_t now = hb_now_ns();
    if (!*t0) *t0 = now;
    uint64_t dt = now - *t0;
    if (dt > POOL_SPIN_NS) return true;
    if (dt > POOL_YIELD_NS) sched_yield();
    return false;
}

/* Spins until *v != seen (returns true) or the time budget is spent (false). */
static bool spin_while_eq(atomic_uint *v, unsigned seen) {
    uint64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != seen) return true;
        if ((i & 127) == 0 && spin_tick(&t0)) return false;
        cpu_relax();
    }
}

/* Spins until *v <= 0 (returns true) or the time budget is spent (false). */
static bool spin_while_pos(atomic_int *v) {
    uint64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) <= 0) return true;
        if ((i & 127) == 0 && spin_tick(&t0)) return false;
        cpu_relax();
    }
}

typedef struct worker_arg {
    cpu_pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    cpu_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        spin_while_eq(&p->gen, seen);
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !p->stop) pthread_cond_wait(&p->cv_work, &p->mu);
        bool stop = p->stop;
        seen = atomic_load(&p->gen);
        cpu_task_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        fn(ctx, wa.ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int cpu_pool_new(int n_threads, cpu_pool **out, hb_err *err) {
    int rc = HEARTH_OK;
    cpu_pool *p = NULL;
    *out = NULL;
    HB_CHECK(n_threads >= 1 && n_threads <= 1024, HEARTH_E_INVALID, "thread count %d out of range 1..1024", n_threads);
    p = calloc(1, sizeof *p);
    HB_CHECK(p, HEARTH_E_NOMEM, "out of memory");
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    HB_CHECK(p->threads, HEARTH_E_NOMEM, "out of memory");
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        HB_CHECK(wa, HEARTH_E_NOMEM, "out of memory");
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            HB_CHECK(0, HEARTH_E_NOMEM, "cannot create thread %d", i);
        }
        p->n = i + 1;
    }
    *out = p;
    p = NULL;
out:
    cpu_pool_free(p);
    return rc;
}

void cpu_pool_free(cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int cpu_pool_n_threads(const cpu_pool *p) { return p ? p->n : 1; }

void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    spin_while_pos(&p->pending);
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
