/* Unit tests for the server's sampling helpers (src/server/spool.c): every item of a job
 * runs exactly once, with that job's argument, over thousands of back-to-back jobs (the
 * case where a helper wakes after its job is over), announced or not; items really run on
 * more than one thread; an announced job that never comes; bad sizes are refused. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "server/spool.h"

enum { MAX_ITEMS = 64 };

typedef struct job {
    atomic_int calls[MAX_ITEMS];
    atomic_int wrong; /* calls that saw another job's argument */
} job;


static void count_item(void *arg, int i) {
    job *j = arg;
    if (i < 0 || i >= MAX_ITEMS) {
        atomic_fetch_add(&j->wrong, 1);
        return;
    }
    atomic_fetch_add(&j->calls[i], 1);
}

static void test_each_item_once(void **state) {
    (void)state;
    static const int helpers[] = { 1, 3 };
    static const int sizes[] = { 0, 1, 2, 3, 7, 8, 64 };
    for (size_t h = 0; h < sizeof helpers / sizeof helpers[0]; h++) {
        spool *p = NULL;
        hb_err err = { 0 };
        assert_int_equal(spool_new(helpers[h], &p, &err), HEARTH_OK);
        assert_int_equal(spool_helpers(p), helpers[h]);
        /* thousands of short jobs, each with its own argument, back to back: a helper that
         * wakes late for job k must not run items of job k + 1 with job k's argument */
        for (int rep = 0; rep < 3000; rep++) {
            int n = sizes[rep % (int)(sizeof sizes / sizeof sizes[0])];
            job *j = calloc(1, sizeof *j);
            assert_non_null(j);
            /* every other job is announced (spool_arm): now, a little ahead, or in the past */
            if (rep % 2) spool_arm(p, rep % 3 == 0 ? hb_now_ns() : rep % 3 == 1 ? hb_now_ns() + 20000 : 1);
            spool_run(p, count_item, j, n);
            for (int i = 0; i < MAX_ITEMS; i++) assert_int_equal(atomic_load(&j->calls[i]), i < n ? 1 : 0);
            assert_int_equal(atomic_load(&j->wrong), 0);
            memset(j, 0xA5, sizeof *j); /* what a stale helper would see, were it still running */
            free(j);
        }
        spool_free(p);
    }
}

/* Items that each wait (up to 10 s) until two different threads have entered: the job can
 * finish only if the items really run side by side. */
typedef struct meet {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t who[MAX_ITEMS];
    int n_who;
} meet;

static void meet_item(void *arg, int i) {
    meet *m = arg;
    (void)i;
    pthread_mutex_lock(&m->mu);
    bool seen = false;
    for (int k = 0; k < m->n_who; k++) seen |= pthread_equal(m->who[k], pthread_self()) != 0;
    if (!seen) m->who[m->n_who++] = pthread_self();
    pthread_cond_broadcast(&m->cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (m->n_who < 2)
        if (pthread_cond_timedwait(&m->cv, &m->mu, &until) != 0) break;
    pthread_mutex_unlock(&m->mu);
}

static void test_items_run_side_by_side(void **state) {
    (void)state;
    spool *p = NULL;
    hb_err err = { 0 };
    assert_int_equal(spool_new(2, &p, &err), HEARTH_OK);
    meet m = { .n_who = 0 };
    pthread_mutex_init(&m.mu, NULL);
    pthread_cond_init(&m.cv, NULL);
    spool_run(p, meet_item, &m, 8);
    assert_true(m.n_who >= 2);
    pthread_cond_destroy(&m.cv);
    pthread_mutex_destroy(&m.mu);
    spool_free(p);
}

/* An announced job that does not come: the helpers poll for their 0.3 ms, go back to
 * sleep, and a later job (and spool_free) still find them. */
static void test_arm_without_job(void **state) {
    (void)state;
    spool *p = NULL;
    hb_err err = { 0 };
    assert_int_equal(spool_new(3, &p, &err), HEARTH_OK);
    for (int rep = 0; rep < 3; rep++) {
        spool_arm(p, hb_now_ns() + 100000);
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        job *j = calloc(1, sizeof *j);
        assert_non_null(j);
        spool_run(p, count_item, j, 16);
        for (int i = 0; i < MAX_ITEMS; i++) assert_int_equal(atomic_load(&j->calls[i]), i < 16 ? 1 : 0);
        free(j);
    }
    spool_arm(p, hb_now_ns() + 50000); /* freed while armed */
    spool_free(p);
    spool_arm(NULL, 1); /* a no-op */
}

static void test_bad_sizes(void **state) {
    (void)state;
    spool *p = (spool *)&p;
    hb_err err = { 0 };
    assert_int_equal(spool_new(0, &p, &err), HEARTH_E_INVALID);
    assert_null(p);
    assert_non_null(strstr(err.msg, "helpers"));
    p = (spool *)&p;
    assert_int_equal(spool_new(65, &p, &err), HEARTH_E_INVALID);
    assert_null(p);
    spool_free(NULL); /* a no-op */
    assert_int_equal(spool_helpers(NULL), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_item_once),
        cmocka_unit_test(test_items_run_side_by_side),
        cmocka_unit_test(test_arm_without_job),
        cmocka_unit_test(test_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
