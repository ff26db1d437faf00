/* tok_internal.h — the tok_vocab layout and the helpers shared by the tokenizer files
 * (vocab.c, map.c, utf8.c, pretok.c, spm.c, bpe.c, wpm.c, encode.c, decode.c).
 *
 * Not part of the module contract (tokenizer.h); nothing outside src/tokenizer includes it.
 * A tok_vocab is immutable once tok_vocab_load returns, so every function here that takes
 * a const tok_vocab * is safe to call from several threads at once.
 */
#ifndef HEARTH_TOK_INTERNAL_H
#define HEARTH_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* Token attributes (a bit set, as llama.cpp keeps them: the GGUF token type becomes one
 * of the type bits; LSTRIP/RSTRIP are added by per-model rules). */
enum {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
};

/* ---- string -> value hash map (open addressing) ---------------------------------------
 * Keys are one or two byte strings (a token text, or the two sides of a BPE merge) kept
 * in the map's own pool, so lookups never allocate. Inserting an existing key either
 * keeps the first value or replaces it (see tok_map_put). */
typedef struct tok_map_slot {
    uint64_t hash;     /* 0 = empty */
    uint32_t off;      /* key bytes in pool: a then b */
    uint32_t alen, blen;
    int32_t value;
} tok_map_slot;

typedef struct tok_map {
    tok_map_slot *slots;  /* [cap], cap a power of two */
    size_t cap, n;
    char *pool;           /* key bytes */
    size_t pool_len, pool_cap;
} tok_map;

/* Prepares a map for about n keys. */
int tok_map_init(tok_map *m, size_t n);
void tok_map_free(tok_map *m);
/* Adds key (a, b) -> value. If the key exists: replace=true overwrites, false keeps the
 * old value. Returns HEARTH_OK or HEARTH_E_NOMEM. */
int tok_map_put(tok_map *m, const char *a, size_t alen, const char *b, size_t blen, int32_t value, bool replace);
/* Value of key (a, b), or -1. */
int32_t tok_map_get(const tok_map *m, const char *a, size_t alen, const char *b, size_t blen);

/* ---- pre-tokenizer (pretok.c) ---------------------------------------------------------- */
typedef struct tok_pretok tok_pretok;

/* Compiles the split regexes for BPE pre-tokenizer `pre` ("default" for an absent key).
 * Unknown names are HEARTH_E_UNSUPPORTED. *clean_spaces, *ignore_merges and *add_bos
 * receive the pre-tokenizer's defaults (add_bos only written when the type implies it). */
int tok_pretok_new(const char *pre, tok_pretok **out, bool *clean_spaces, bool *ignore_merges,
                   bool *add_bos, hb_err *err);
void tok_pretok_free(tok_pretok *p);
/* Splits text[0..len) (valid UTF-8) into words; *ends receives the end byte offset of each
 * word (malloc'd, caller frees), *n their count. */
int tok_pretok_split(const tok_pretok *p, const char *text, size_t len, size_t **ends, size_t *n, hb_err *err);

/* ---- the vocabulary -------------------------------------------------------------------- */
typedef struct tok_entry {
    uint32_t off, len;  /* text in vocab pool (NUL-terminated there) */
    float score;
    uint16_t attr;      /* TOK_ATTR_* */
} tok_entry;

struct tok_vocab {
    tok_kind kind;
    char *model;            /* tokenizer.ggml.model */
    char *pre;              /* tokenizer.ggml.pre, "default" if absent */
    int32_t n;              /* tokens */
    tok_entry *tok;         /* [n] */
    char *pool;             /* token texts, each NUL-terminated */
    size_t max_token_len;   /* longest token text in bytes */
    tok_map text_to_id;     /* text -> id (the last id wins for duplicate texts) */
    tok_map merges;         /* (left, right) -> rank (BPE; the first rank wins) */
    tok_pretok *pretok;     /* BPE only */
    int32_t bos, eos, eot, eom, unk, sep, pad, mask, cls;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_space_prefix, clean_spaces, ignore_merges;
    int32_t *eog;           /* end-of-generation ids, sorted */
    size_t n_eog;
    int32_t *special;       /* control/user-defined/unknown ids, longest text first */
    size_t n_special;
    int32_t byte_tok[256];  /* token of each raw byte (SPM <0xNN>, BPE byte char); -1 none */
};

static inline const char *tok_str(const tok_vocab *v, int32_t id) { return v->pool + v->tok[id].off; }

/* ---- UTF-8 and Unicode helpers (utf8.c) ------------------------------------------------ */
/* Length of the UTF-8 sequence starting with lead byte c, by its high bits (1..4), as
 * llama.cpp counts it (continuation bytes count 1). */
size_t tok_utf8_len(uint8_t c);
/* Checks that s[0..len) is well-formed UTF-8 (no overlongs, surrogates or values above
 * U+10FFFF). On failure *bad_off is the offset of the first bad byte. */
bool tok_utf8_valid(const char *s, size_t len, size_t *bad_off);
/* Decodes one code point of valid UTF-8 at s (n bytes available); returns its length. */
size_t tok_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns the length. */
size_t tok_utf8_encode(uint32_t cp, char *out);
/* White_Space property (the set llama.cpp's is_whitespace uses). */
bool tok_cp_is_space(uint32_t cp);

/* ---- tokenizers (append ids to a growing array) ---------------------------------------- */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

int tok_ids_push(tok_ids *a, int32_t id);

/* SentencePiece-style: text already has spaces escaped to U+2581. */
int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err);
/* Byte-level BPE over one raw text fragment (pre-tokenized inside). */
int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err);
/* WordPiece over one raw text fragment. */
int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out, hb_err *err);

/* Byte-level BPE alphabet: the code point standing for byte b, and back (-1 if cp is not
 * in the alphabet). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);


/* ---- merge queue shared by the SPM and BPE tokenizers (pairq.c) -------------------------
 * Symbols form a doubly linked chain over the text; candidate merges of adjacent symbols
 * wait in a binary heap ordered by priority (higher first), ties by the leftmost pair, which
 * is the order both SentencePiece scores and BPE merge ranks (prio = -rank) need. */
typedef struct tok_sym {
    int32_t prev, next;   /* neighbours in the live chain, -1 at the ends */
    uint32_t off, n;      /* bytes of text; n == 0 once merged into its left neighbour */
} tok_sym;

typedef struct tok_pair {
    int32_t left, right;
    float prio;           /* SPM: token score; BPE: -merge rank */
    uint32_t size;        /* bytes of the merged text when queued (detects stale pairs) */
} tok_pair;

typedef struct tok_pairq {
    tok_pair *v;
    size_t n, cap;
} tok_pairq;

/* Adds a pair; HEARTH_E_NOMEM if the heap cannot grow. */
int tok_pairq_push(tok_pairq *q, tok_pair p);
/* Removes and returns the best pair; q->n must be > 0. */
tok_pair tok_pairq_pop(tok_pairq *q);

#endif
