/* be_cuda_share.c — the CUDA store of a model's weights, shared by the model's contexts
 * (be_share, backend.h): device copies keyed by the weight's host address, made once under
 * the store's lock by whichever context needs one first, and complete (cuda_upload waits
 * for the copy) before any context sees them, so a context on another stream or thread
 * never reads a half-written weight. Each copy counts the contexts holding it and goes when
 * the last one is freed (a context that fell back to the CPU after a partial upload leaves
 * nothing behind); the store itself lives in the model's slot until the model goes. The
 * contexts' own maps mark these entries borrowed (cb_map.borrowed).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/be_cuda_int.h"

typedef struct cb_store_ent {
    const void *host;
    size_t bytes;
    void *dev;
    int64_t refs;        /* contexts holding the copy (cb_store_get without cb_store_put) */
} cb_store_ent;

struct cb_store {
    be_share base;       /* first member: the slot holds &base */
    pthread_mutex_t mu;  /* guards everything below */
    int device;          /* ordinal of the GPU the copies are on */
    cb_store_ent *e;
    size_t n, cap;
    uint64_t bytes;      /* sum of the copies' sizes */
};

static void cb_store_destroy(be_share *s) {
    struct cb_store *st = (struct cb_store *)s;
    for (size_t i = 0; i < st->n; i++) cuda_dev_free(st->device, st->e[i].dev);
    pthread_mutex_destroy(&st->mu);
    free(st->e);
    free(st);
}

int cb_store_join(cuda_be *c, be_share_slot *slot, uint64_t *shared, hb_err *err) {
    int rc = HEARTH_OK, dev = cuda_ctx_info(c->cu)->ordinal;
    *shared = 0;
    pthread_mutex_lock(&slot->mu);
    if (!slot->s) {
        struct cb_store *st = calloc(1, sizeof *st);
        if (!st) {
            rc = hb_fail(err, HEARTH_E_NOMEM, "out of memory");
        } else {
            st->base.destroy = cb_store_destroy;
            pthread_mutex_init(&st->mu, NULL);
            st->device = dev;
            slot->s = &st->base;
        }
    }
    /* a slot only ever holds a CUDA store: the CUDA backend is the one that fills it */
    struct cb_store *st = rc ? NULL : (struct cb_store *)slot->s;
    if (st && st->device == dev) {
        c->store = st, c->share_lo = slot->lo, c->share_hi = slot->hi;
        pthread_mutex_lock(&st->mu);
        *shared = st->bytes;
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_unlock(&slot->mu);
    return rc;
}

/* The entry of host (the caller holds the lock), or NULL. */
static cb_store_ent *cb_store_find(struct cb_store *st, const void *host, size_t bytes) {
    for (size_t i = 0; i < st->n; i++)
        if (st->e[i].host == host && st->e[i].bytes == bytes) return &st->e[i];
    return NULL;
}

/* A new copy of host in the store (the caller holds the lock); NULL on failure. */
static void *cb_store_add(cuda_be *c, struct cb_store *st, const void *host, size_t bytes, hb_err *err) {
    void *dev = NULL;
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        cb_store_ent *ne = realloc(st->e, cap * sizeof *ne);
        if (!ne) {
            hb_fail(err, HEARTH_E_NOMEM, "out of memory");
            return NULL;
        }
        st->e = ne, st->cap = cap;
    }
    if (cuda_alloc(c->cu, &dev, bytes, err)) return NULL;
    if (cuda_upload(c->cu, dev, host, bytes, err)) { /* returns once the copy is on the device */
        cuda_free(c->cu, dev);
        return NULL;
    }
    st->e[st->n++] = (cb_store_ent){ host, bytes, dev, 0 };
    st->bytes += bytes;
    return dev;
}

void *cb_store_get(cuda_be *c, const void *host, size_t bytes, hb_err *err) {
    struct cb_store *st = c->store;
    pthread_mutex_lock(&st->mu);
    cb_store_ent *e = cb_store_find(st, host, bytes);
    void *dev = e ? e->dev : cb_store_add(c, st, host, bytes, err);
    if (dev) (e ? e : &st->e[st->n - 1])->refs++;
    pthread_mutex_unlock(&st->mu);
    return dev;
}

void cb_store_put(cuda_be *c, const void *host, size_t bytes) {
    struct cb_store *st = c->store;
    pthread_mutex_lock(&st->mu);
    cb_store_ent *e = cb_store_find(st, host, bytes);
    if (e && --e->refs <= 0) {
        cuda_free(c->cu, e->dev);
        st->bytes -= e->bytes;
        *e = st->e[--st->n]; /* order does not matter */
    }
    pthread_mutex_unlock(&st->mu);
}
