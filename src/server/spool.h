/* spool.h — a small pool of sleeping helper threads for the scheduler: the sequences of one
 * decode step are sampled side by side (runner.c). The threads sleep on a condition variable
 * between jobs; they poll only for a short while around a time the caller names
 * (spool_arm), so on a machine whose cores a CPU model needs they cost nothing while the
 * model decodes. Not the CPU backend's pool: that one belongs to a
 * context, spins for work and sits below the public API (docs/architecture.md). */
#ifndef HEARTH_SERVER_SPOOL_H
#define HEARTH_SERVER_SPOOL_H

#include "base/base.h"

typedef struct spool spool;
typedef void (*spool_fn)(void *arg, int i);

/* Starts n_helpers threads (1..64). Returns HEARTH_OK and *out (the caller owns it; free
 * with spool_free), or an error in err and *out = NULL. */
int spool_new(int n_helpers, spool **out, hb_err *err);
/* Stops and joins the threads; NULL is fine. No spool_run may be running. */
void spool_free(spool *p);
/* Calls fn(arg, i) once for every i in [0, n), on the helpers and on the calling thread,
 * and returns when every call has returned. The calls may run in any order and at once, so
 * fn must only touch what item i owns. One caller at a time. */
void spool_run(spool *p, spool_fn fn, void *arg, int n);
/* A hint that the next spool_run will probably come at about at_ns (hb_now_ns's clock; 0:
 * no hint): the helpers sleep until then and then poll for it, for at most 0.3 ms, so the
 * job does not wait for threads to wake up. Costs that much of a core per helper per hint;
 * a wrong hint costs only that. */
void spool_arm(spool *p, uint64_t at_ns);
/* Helper threads in p. */
int spool_helpers(const spool *p);

#endif
