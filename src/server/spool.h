/* spool.h — a small pool of sleeping helper threads for the scheduler: the sequences of one
 * decode step are sampled side by side (sched.c). The threads sleep on a condition variable
 * between jobs and never spin, so on a machine whose cores a CPU model needs they cost
 * nothing while the model decodes. Not the CPU backend's pool: that one belongs to a
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
/* Helper threads in p. */
int spool_helpers(const spool *p);

#endif
