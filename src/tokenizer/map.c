/* map.c — open-addressing hash map from one or two byte strings to an int32 value.
 *
 * Used for token text -> id and for BPE merge (left, right) -> rank. Keys are copied into
 * one pool owned by the map; slots keep offsets, so a lookup is one hash plus a memcmp and
 * never allocates. The table stays at most half full (linear probing).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* FNV-1a over a, the length of a, then b: (a="ab",b="c") and (a="a",b="bc") differ. */
static uint64_t key_hash(const char *a, size_t alen, const char *b, size_t blen) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < alen; i++) h = (h ^ (uint8_t)a[i]) * 1099511628211ull;
    h = (h ^ (alen & 0xff)) * 1099511628211ull;
    h = (h ^ 0x5a) * 1099511628211ull;
    for (size_t i = 0; i < blen; i++) h = (h ^ (uint8_t)b[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h ? h : 1;
}

int tok_map_init(tok_map *m, size_t n) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < n * 2 + 2) {
        if (cap > (SIZE_MAX >> 2)) return HEARTH_E_NOMEM;
        cap <<= 1;
    }
    m->slots = hb_calloc_n(cap, sizeof *m->slots);
    if (!m->slots) return HEARTH_E_NOMEM;
    m->cap = cap;
    return HEARTH_OK;
}

void tok_map_free(tok_map *m) {
    if (!m) return;
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static bool slot_eq(const tok_map *m, const tok_map_slot *s, uint64_t h, const char *a, size_t alen,
                    const char *b, size_t blen) {
    if (s->hash != h || s->alen != alen || s->blen != blen) return false;
    if (alen + blen == 0) return true; /* empty keys own no pool bytes (pool may be NULL) */
    const char *k = m->pool + s->off;
    return (alen == 0 || memcmp(k, a, alen) == 0) && (blen == 0 || memcmp(k + alen, b, blen) == 0);
}

static int map_grow(tok_map *m) {
    size_t cap = m->cap * 2;
    tok_map_slot *ns = hb_calloc_n(cap, sizeof *ns);
    if (!ns) return HEARTH_E_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (ns[j].hash) j = (j + 1) & (cap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = cap;
    return HEARTH_OK;
}

static int pool_add(tok_map *m, const char *a, size_t alen, const char *b, size_t blen, uint32_t *off) {
    size_t need = alen + blen;
    if (m->pool_len + need > UINT32_MAX) return HEARTH_E_NOMEM;
    if (m->pool_len + need > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 4096;
        while (cap < m->pool_len + need) cap *= 2;
        char *p = realloc(m->pool, cap);
        if (!p) return HEARTH_E_NOMEM;
        m->pool = p;
        m->pool_cap = cap;
    }
    if (alen) memcpy(m->pool + m->pool_len, a, alen);
    if (blen) memcpy(m->pool + m->pool_len + alen, b, blen);
    *off = (uint32_t)m->pool_len;
    m->pool_len += need;
    return HEARTH_OK;
}

int tok_map_put(tok_map *m, const char *a, size_t alen, const char *b, size_t blen, int32_t value, bool replace) {
    if (alen > UINT32_MAX || blen > UINT32_MAX) return HEARTH_E_NOMEM;
    if ((m->n + 1) * 2 > m->cap && map_grow(m)) return HEARTH_E_NOMEM;
    uint64_t h = key_hash(a, alen, b, blen);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i].hash) {
        if (slot_eq(m, &m->slots[i], h, a, alen, b, blen)) {
            if (replace) m->slots[i].value = value;
            return HEARTH_OK;
        }
        i = (i + 1) & (m->cap - 1);
    }
    uint32_t off;
    if (pool_add(m, a, alen, b, blen, &off)) return HEARTH_E_NOMEM;
    m->slots[i] = (tok_map_slot){ .hash = h, .off = off, .alen = (uint32_t)alen, .blen = (uint32_t)blen, .value = value };
    m->n++;
    return HEARTH_OK;
}

int32_t tok_map_get(const tok_map *m, const char *a, size_t alen, const char *b, size_t blen) {
    if (!m->cap) return -1;
    uint64_t h = key_hash(a, alen, b, blen);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i].hash) {
        if (slot_eq(m, &m->slots[i], h, a, alen, b, blen)) return m->slots[i].value;
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}
