/* tokenizer.h — vocabularies from GGUF and the SPM / BPE / WordPiece tokenizers.
 *
 * A tok_vocab is built once from a GGUF file's tokenizer.ggml.* keys and is immutable
 * afterwards (shareable across threads). It copies what it needs; the gguf_file may be
 * closed after tok_vocab_load returns.
 */
#ifndef HEARTH_TOKENIZER_H
#define HEARTH_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "gguf/gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum tok_kind { TOK_NONE = 0, TOK_SPM, TOK_BPE, TOK_WPM } tok_kind;

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum { TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
       TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6 };

/* Builds the vocab. A file without tokenizer.ggml.model gives *out = NULL and HEARTH_OK
 * (models may have no tokenizer); an unknown model or pre-tokenizer is HEARTH_E_UNSUPPORTED
 * with a message naming the value. Caller frees with tok_vocab_free. */
int tok_vocab_load(const gguf_file *f, tok_vocab **out, hb_err *err);
void tok_vocab_free(tok_vocab *v);

tok_kind tok_vocab_kind(const tok_vocab *v);
const char *tok_vocab_kind_name(const tok_vocab *v);   /* "llama", "gpt2", "bert" */
const char *tok_vocab_pre(const tok_vocab *v);         /* tokenizer.ggml.pre or "default" */
int32_t tok_n_vocab(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v);   /* -1 if none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
/* The fill-in-the-middle token `which` (0 prefix, 1 suffix, 2 middle), or -1. */
int32_t tok_fim(const tok_vocab *v, int which);
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
bool tok_is_eog(const tok_vocab *v, int32_t id);
bool tok_is_control(const tok_vocab *v, int32_t id);
/* The stored text of token id (borrowed, valid while v lives); NULL if out of range. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);

/* Tokenizes text (len bytes). flags: HEARTH_TOK_* from hearth.h. On success *out is a
 * malloc'd array of *n ids (caller frees). Invalid UTF-8 input is HEARTH_E_INVALID. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, int flags,
               int32_t **out, size_t *n, hb_err *err);
/* Detokenizes; flags: HEARTH_DETOK_*. *out malloc'd, NUL-terminated (caller frees). */
int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, int flags,
               char **out, size_t *len, hb_err *err);
/* Bytes of one token as it contributes to output text (byte tokens -> the byte, SPM
 * U+2581 -> space, BPE byte-level chars -> bytes). Writes at most cap bytes to buf and the
 * full length to *n. */
int tok_piece(const tok_vocab *v, int32_t id, int flags, char *buf, size_t cap, size_t *n, hb_err *err);

#endif
