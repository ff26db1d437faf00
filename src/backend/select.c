/* select.c — picks the backend of a context (CPU or CUDA) and frees it, so the engine never
 * names a particular backend.
 *
 * Compiled twice: as src/backend/select.o into every build (CPU only), and with
 * HEARTH_CUDA=1 into CUDA builds in place of that object (src/backend/cuda/cuda.mk), so a
 * stale object can never mix the two.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#if HEARTH_CUDA
#include "backend/cuda/be_cuda.h"
#endif

bool be_cuda_built(void) {
#if HEARTH_CUDA
    return true;
#else
    return false;
#endif
}

static void note_set(char *note, size_t len, const char *msg) {
    if (note && len) snprintf(note, len, "%s", msg);
}

bool hearth_backend_name_ok(const char *name) {
    static const char *const known[] = { "cpu", "cuda", "auto", "cpu-split" /* testing */ };
    if (!name || !*name) return true;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i]) == 0) return true;
    return false;
}

int be_accel_new(const char *want, int n_threads, be_ctx **out, char *note, size_t note_len, hb_err *err) {
    const char *w = want && *want ? want : getenv("HEARTH_BACKEND");
    if (!w || !*w) w = "auto";
    *out = NULL;
    note_set(note, note_len, "");
    if (strcmp(w, "cpu") == 0) return HEARTH_OK;
    if (strcmp(w, "cpu-split") == 0) return be_cpu_new(n_threads, out, err); /* testing */
    if (!hearth_backend_name_ok(w))
        return hb_fail(err, HEARTH_E_INVALID, "unknown backend '%s' (expected cpu, cuda or auto)", w);
#if HEARTH_CUDA
    hb_err e;
    hb_err_clear(&e);
    if (be_cuda_new(-1, out, &e) == HEARTH_OK) return HEARTH_OK;
    if (e.code == HEARTH_E_INVALID) return hb_fail(err, e.code, "%s", e.msg); /* bad HEARTH_CUDA_DEVICE */
    /* "auto" on a machine without a GPU is the ordinary case: say nothing then */
    if (strcmp(w, "cuda") == 0 || e.code != HEARTH_E_UNSUPPORTED) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s; running on the CPU", e.msg);
        note_set(note, note_len, msg);
    }
#else
    (void)n_threads;
    if (strcmp(w, "cuda") == 0)
        note_set(note, note_len, "this hearth was built without CUDA (make CUDA=1); running on the CPU");
#endif
    return HEARTH_OK;
}

int be_new(const char *want, int n_threads, be_ctx **out, char *note, size_t note_len, hb_err *err) {
    int rc = be_accel_new(want, n_threads, out, note, note_len, err);
    if (rc || *out) return rc;
    return be_cpu_new(n_threads, out, err);
}

void be_free(be_ctx *b) {
    if (!b) return;
#if HEARTH_CUDA
    if (strcmp(b->ops->name, "cuda") == 0) {
        be_cuda_free(b);
        return;
    }
#endif
    be_cpu_free(b);
}

void be_share_slot_init(be_share_slot *slot, const uint8_t *lo, const uint8_t *hi) {
    pthread_mutex_init(&slot->mu, NULL);
    slot->s = NULL;
    slot->lo = lo, slot->hi = hi;
}

void be_share_slot_free(be_share_slot *slot) {
    if (slot->s) slot->s->destroy(slot->s);
    slot->s = NULL;
    pthread_mutex_destroy(&slot->mu);
}
