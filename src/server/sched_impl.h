/* sched_impl.h — what the scheduler (sched.c: the list of loaded models, pins, keep_alive,
 * eviction) and the runners (runner.c: one loaded model's queue and decode loop) share.
 * Private to those two files.
 *
 * Locking: sched.mu guards the runner list and each runner's pins and expiry (the fields
 * marked "under sched.mu"); runner.mu guards the runner's queue and flags; slots are
 * touched only by the runner thread.
 */
#ifndef HEARTH_SERVER_SCHED_IMPL_H
#define HEARTH_SERVER_SCHED_IMPL_H

#include "server/server.h"
#include "server/spool.h"

typedef struct slot slot;

struct runner {
    sched *s;
    char name[320], path[4200], digest[72];
    uint64_t size;
    hearth_model *model;
    hearth_context *ctx;
    uint32_t n_ctx, n_batch;
    int n_slots;
    slot *slots;
    hearth_batch batch;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_req **queue;                /* ring of waiting requests */
    int q_head, q_len, q_cap;
    bool quit;
    atomic_bool cancel_all;         /* set under mu by sched_shutdown, polled by the decode loop without it */
    atomic_bool abort_decode;
    atomic_long kv_used;
    atomic_int busy;
    int users;                      /* pins, under sched.mu */
    /* Under sched.mu. While `loading`, the request that made the runner loads its model
     * without sched.mu (runner_init): the runner is on the list, counted as loaded, so
     * other requests for the model pin it and wait on sched.cv instead of loading it
     * again; nothing but these fields and the names may be read meanwhile. A failed load
     * takes it off the list (`unlinked`) and leaves the error for the waiters; the last
     * one to unpin it frees it. */
    bool loading, load_failed;
    hb_err load_err;
    int load_status;                /* HTTP status for load_err */
    /* A decode failed in a way that may have left the context unusable (a GPU error is
     * sticky: every later step would fail too). The next sched_acquire takes the runner off
     * the list and loads the model afresh; the last user of the old one frees it. */
    atomic_bool broken;
    bool unlinked;                  /* off the list (on sched.retired after a failed decode, or its load failed):
                                     * freed by whoever drops the last pin (under sched.mu) */
    bool forever;
    int64_t keep_alive_ns;          /* of the latest request that pinned it: how long it stays once idle (< 0 forever) */
    bool unload;                    /* sched_unload asked for it: its keep_alive does not apply */
    uint64_t expires_ns;            /* monotonic; valid when users == 0 && !forever */
    uint64_t last_used;
    bool *opens_json;               /* [n_vocab] piece starts (after blanks) with '{' */
    float *mlogits;                 /* [n_vocab] masked copy of logits */
    spool *pool;                    /* helpers that sample a step's slots side by side; NULL: the runner alone */
    slot **s_slot;                  /* [n_slots] one step's slots to sample on the pool ... */
    const float **s_logits;         /* ... their logits ... */
    hearth_token *s_tok;            /* ... and the tokens drawn */
    /* where the steps since the runner last went idle spent their time (ns; debug log):
     * building the batch, decoding, reading logits (and JSON-mode sampling), sampling,
     * handing the tokens to their requests */
    uint64_t prof[5];
    long prof_steps;
    uint64_t dec_ns;                /* running estimate of one decode (ns), for spool_arm */
    int32_t n_vocab;
    pthread_mutex_t emu;            /* embeddings context */
    hearth_context *ectx;
    runner *next;
};

struct sched {
    hearth_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    runner *list;
    runner *retired;                /* taken off the list after a failed decode, still in use (runner.unlinked) */
    int n_loaded;
    bool shutting, quit;
    pthread_t mgr;
    bool mgr_started;
    long test_load_delay_ms;        /* HEARTH_TEST_LOAD_DELAY_MS (a testing aid): added to every model load */
};

/* A runner for the model at path (name: as the request named it), not loaded yet: cheap,
 * and its mutexes are ready, so sched_shutdown may flag it meanwhile. Freed with
 * runner_free. */
int runner_new(sched *s, const char *name, const char *path, runner **out, hb_err *err);
/* Loads r's model, makes its context and starts its thread: the slow part (seconds for a
 * large model), run without sched.mu by the one thread that made r. On failure r is as
 * runner_new left it. HEARTH_E_NOMEM when the model does not fit in memory. */
int runner_init(runner *r, hb_err *err);
/* Stops the runner's thread (requests still queued or running finish "cancelled"), frees
 * everything it owns and r itself. Safe on NULL. The caller holds the only reference. */
void runner_free(runner *r);
/* Requests waiting in r's queue (those whose clients left are dropped first). */
int runner_queued(runner *r);

#endif
