/* pool.c — persistent worker threads. A generation counter under a mutex wakes workers;
 * each job spins briefly before sleeping so back-to-back matmuls within one token do not
 * pay a futex round trip. */
#include <pthread.h>
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
        /* spin a little, then sleep on the condition variable */
        for (int i = 0; i < 20000 && atomic_load_explicit(&p->gen, memory_order_acquire) == seen; i++)
            __builtin_ia32_pause();
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
    for (int i = 0; i < 20000 && atomic_load(&p->pending) > 0; i++) __builtin_ia32_pause();
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
