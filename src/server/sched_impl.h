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
    /* A decode failed in a way that may have left the context unusable (a GPU error is
     * sticky: every later step would fail too). The next sched_acquire takes the runner off
     * the list and loads the model afresh; the last user of the old one frees it. */
    atomic_bool broken;
    bool unlinked;                  /* on sched.retired instead of the list; freed by sched_release (under sched.mu) */
    bool forever;
    bool unload;                    /* sched_unload asked for it: the last user's keep_alive does not apply */
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

/* Loads the model at path into a new runner and starts its thread; *out is freed with
 * runner_free. HEARTH_E_NOMEM when it does not fit in memory. */
int runner_load(sched *s, const char *name, const char *path, runner **out, hb_err *err);
/* Stops the runner's thread (requests still queued or running finish "cancelled"), frees
 * everything it owns and r itself. Safe on NULL. The caller holds the only reference. */
void runner_free(runner *r);
/* Requests waiting in r's queue (those whose clients left are dropped first). */
int runner_queued(runner *r);

#endif
