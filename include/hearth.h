/* hearth.h — the one public C API of hearth.
 *
 * Everything the CLI and the server do goes through this header; nothing outside src/
 * reaches into internals. Conventions:
 *  - Opaque handles (hearth_model, hearth_context, hearth_sampler, ...).
 *  - Functions return hearth_status; results come through out-params that are reset on
 *    entry. When a call on a handle fails, hearth_*_errmsg(handle) holds the message until
 *    the next call on that handle. Constructors (no handle yet) take an `err` buffer.
 *  - Ownership is stated per function: "borrowed" pointers stay owned by the library and
 *    are valid for the stated time; "caller frees with X" transfers ownership.
 *  - Thread-safety: a hearth_model is immutable after load and may be shared by any number
 *    of contexts and threads. A hearth_context, sampler or detok stream is used by one
 *    thread at a time (callers serialise).
 *  - Library code never prints to stdout or calls exit().
 */
#ifndef HEARTH_H
#define HEARTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEARTH_VERSION "0.1.0"

/* ---- status ---------------------------------------------------------------------------- */
typedef enum hearth_status {
    HEARTH_OK = 0,
    HEARTH_E_INVALID = 1,     /* bad argument, flag or request value */
    HEARTH_E_IO = 2,          /* file missing, unreadable, write failed */
    HEARTH_E_FORMAT = 3,      /* corrupt or hostile file / data */
    HEARTH_E_UNSUPPORTED = 4, /* valid but not supported (architecture, type, construct) */
    HEARTH_E_NOMEM = 5,       /* allocation failed or would exceed a cap */
    HEARTH_E_CONTEXT = 6,     /* context window full / position out of range */
    HEARTH_E_TEMPLATE = 7,    /* chat template failed to parse or render */
    HEARTH_E_CANCELLED = 8,   /* operation cancelled by the caller */
    HEARTH_E_INTERNAL = 9,    /* a bug: internal invariant broken */
    HEARTH_E_NOT_FOUND = 10   /* named model, blob or item does not exist */
} hearth_status;

/* Short constant name of a status ("ok", "invalid argument", ...). Borrowed, static. */
const char *hearth_status_str(hearth_status s);

/* ---- logging --------------------------------------------------------------------------- */
typedef enum hearth_log_level {
    HEARTH_LOG_ERROR = 0,
    HEARTH_LOG_WARN = 1,
    HEARTH_LOG_INFO = 2,
    HEARTH_LOG_DEBUG = 3
} hearth_log_level;

/* Log sink: `msg` is borrowed for the duration of the call, no trailing newline. */
typedef void (*hearth_log_fn)(void *user_data, hearth_log_level level, const char *msg);

/* Frees memory that the library handed to the caller (token arrays, strings). NULL is ok. */
void hearth_free(void *p);

typedef int32_t hearth_token;

/* ---- model ----------------------------------------------------------------------------- */
typedef struct hearth_model hearth_model;

typedef struct hearth_model_params {
    hearth_log_fn log;        /* NULL = silent */
    void *log_user_data;
    hearth_log_level log_level;
    const char *backend;      /* "cpu", "cuda" or NULL/"auto" (NULL: $HEARTH_BACKEND, else auto) */
    /* Decoder layers that run on the GPU (the rest run on the CPU; docs/engine.md,
     * "Placement"): -1 = $HEARTH_GPU_LAYERS if set, else as many as free GPU memory holds;
     * 0 = CPU only; N (>= the layer count: all). Ignored without a usable GPU. */
    int32_t n_gpu_layers;
    bool vocab_only;          /* load only metadata + tokenizer (no weights checked) */
} hearth_model_params;

hearth_model_params hearth_model_default_params(void);
/* True when `name` is a backend name hearth_model_params.backend accepts ("cpu", "cuda",
 * "auto", NULL or empty), whether or not this build or machine can run it — for checking
 * flags and settings at the door before any work. */
bool hearth_backend_name_ok(const char *name);

/* Loads a GGUF model (weights are used from an mmap of the file, not copied).
 * On success *out is a new model the caller frees with hearth_model_free. On failure *out
 * is NULL and `err` (if non-NULL, errlen bytes) holds a message naming the file and the
 * problem. Thread-safe. */
hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, char *err, size_t errlen);
void hearth_model_free(hearth_model *m);

/* Facts about a loaded model. Strings are borrowed, valid while the model lives. */
const char *hearth_model_arch(const hearth_model *m);      /* general.architecture */
const char *hearth_model_name(const hearth_model *m);      /* general.name or file stem */
const char *hearth_model_path(const hearth_model *m);
int32_t hearth_model_n_vocab(const hearth_model *m);
int32_t hearth_model_n_ctx_train(const hearth_model *m);
int32_t hearth_model_n_embd(const hearth_model *m);
int32_t hearth_model_n_layer(const hearth_model *m);
int32_t hearth_model_n_head(const hearth_model *m);
int32_t hearth_model_n_head_kv(const hearth_model *m);
uint64_t hearth_model_n_params(const hearth_model *m);
uint64_t hearth_model_size_bytes(const hearth_model *m);   /* bytes of tensor data */
/* Human name of the dominant weight type ("Q4_K_M", "F16", ...). Borrowed. */
const char *hearth_model_ftype_name(const hearth_model *m);
/* tokenizer.chat_template, or NULL when the file has none. Borrowed. */
const char *hearth_model_chat_template(const hearth_model *m);
/* Metadata value rendered as text (strings as-is, numbers in decimal, arrays abbreviated).
 * Returns NULL if the key is absent. Caller frees with hearth_free. */
char *hearth_model_meta_text(const hearth_model *m, const char *key);

/* Special tokens; -1 when the vocab has none. */
hearth_token hearth_token_bos(const hearth_model *m);
hearth_token hearth_token_eos(const hearth_model *m);
hearth_token hearth_token_eot(const hearth_model *m);
/* Fill-in-the-middle tokens (code models: prefix, suffix, middle), -1 when the vocab has
 * none: a prompt <pre> PREFIX <suf> SUFFIX <mid> asks for the text between the two. */
enum { HEARTH_FIM_PRE = 0, HEARTH_FIM_SUF = 1, HEARTH_FIM_MID = 2 };
hearth_token hearth_token_fim(const hearth_model *m, int which);
/* True for tokens that end generation (eos, eot, and other end-of-generation ids). */
bool hearth_token_is_eog(const hearth_model *m, hearth_token t);
bool hearth_model_add_bos(const hearth_model *m);

/* ---- tokenizer ------------------------------------------------------------------------- */
enum {
    HEARTH_TOK_ADD_SPECIAL = 1,   /* add BOS/EOS (CLS/SEP) as the vocab is configured to */
    HEARTH_TOK_PARSE_SPECIAL = 2  /* control-token text in the input becomes that token */
};

/* Tokenizes `len` bytes of `text` (need not be NUL-terminated; invalid UTF-8 is an error
 * HEARTH_E_INVALID). On success *out is an array of *n_out ids the caller frees with
 * hearth_free. Thread-safe (the model is read-only). */
hearth_status hearth_tokenize(const hearth_model *m, const char *text, size_t len, int flags,
                              hearth_token **out, size_t *n_out, char *err, size_t errlen);

enum {
    HEARTH_DETOK_REMOVE_SPECIAL = 1, /* drop BOS/EOS-like tokens at the ends */
    HEARTH_DETOK_UNPARSE_SPECIAL = 2, /* render control tokens as their text */
    /* streams only: the tokens continue earlier text (a prompt), so the first one keeps
     * its leading space where a SentencePiece vocabulary would drop it at a text's start
     * ("Once upon a" + " time", not "time") */
    HEARTH_DETOK_CONTINUE = 4
};
/* Detokenizes ids into *out (NUL-terminated, *len bytes; caller frees with hearth_free).
 * Applies the family's leading-space and clean-up rules. An id out of range is
 * HEARTH_E_INVALID. */
hearth_status hearth_detokenize(const hearth_model *m, const hearth_token *ids, size_t n,
                                int flags, char **out, size_t *len, char *err, size_t errlen);

/* The raw text piece of one token (no clean-up rules). Borrowed text written to buf. */
hearth_status hearth_token_piece(const hearth_model *m, hearth_token t, int flags,
                                 char *buf, size_t cap, size_t *n_out);

/* Streaming detokenizer: feeds tokens one at a time and yields only complete UTF-8
 * characters; bytes of a partial character are held until it completes. */
typedef struct hearth_detok_stream hearth_detok_stream;
/* Caller frees with hearth_detok_stream_free. `flags` as for hearth_detokenize. */
hearth_detok_stream *hearth_detok_stream_new(const hearth_model *m, int flags);
/* Appends the text made complete by token t to the stream's buffer; *text (borrowed, valid
 * until the next call) and *len describe the new bytes (possibly 0). */
hearth_status hearth_detok_stream_push(hearth_detok_stream *s, hearth_token t,
                                       const char **text, size_t *len);
/* Returns any held bytes at the end (invalid partial characters become U+FFFD). */
hearth_status hearth_detok_stream_flush(hearth_detok_stream *s, const char **text, size_t *len);
void hearth_detok_stream_free(hearth_detok_stream *s);
/* The stream flag for text generated after the n prompt tokens: HEARTH_DETOK_CONTINUE
 * unless the prompt is empty or only the BOS token (the generated text starts the text). */
int hearth_detok_flags_after(const hearth_model *m, const hearth_token *prompt, size_t n);

/* ---- chat templates -------------------------------------------------------------------- */
/* Renders a Jinja chat template (the subset real models use) with the variables in
 * `vars_json` (a JSON object: messages, add_generation_prompt, bos_token, eos_token, tools,
 * ...). `now` (may be NULL = current time) is the ISO-8601 instant strftime_now() sees.
 * On success *out is the NUL-terminated prompt (caller frees with hearth_free). On failure,
 * `err` names the construct and template line; raise_exception() messages come through
 * verbatim. */
hearth_status hearth_template_render(const char *template_src, const char *vars_json,
                                     const char *now, char **out, char *err, size_t errlen);

/* True when a template is Ollama Go-template syntax ({{ .Prompt }}, {{ if .System }},
 * {{ end }}) rather than Jinja: the TEMPLATE layers of models from an Ollama registry.
 * hearth renders Jinja only; callers fall back to the GGUF's own template for these. */
bool hearth_template_is_go(const char *src);

/* Renders a conversation with the model's own template (or the documented default, ChatML,
 * when the model has none). `messages_json` is a JSON array of {role, content, ...};
 * `tools_json` a JSON array or NULL. bos/eos tokens come from the vocab. Caller frees *out
 * with hearth_free. */
hearth_status hearth_chat_apply(const hearth_model *m, const char *template_override,
                                const char *messages_json, const char *tools_json,
                                bool add_generation_prompt, char **out, char *err,
                                size_t errlen);

/* ---- context (KV cache + scratch for decoding) ----------------------------------------- */
typedef struct hearth_context hearth_context;

typedef enum hearth_kv_type {
    HEARTH_KV_F16 = 0,
    HEARTH_KV_F32 = 1,
    HEARTH_KV_Q8_0 = 2
} hearth_kv_type;

typedef struct hearth_context_params {
    uint32_t n_ctx;       /* tokens per sequence; 0 = model's training context (capped 4096) */
    uint32_t n_seq_max;   /* parallel sequences (ids 0..n_seq_max-1); default 1 */
    uint32_t n_batch;     /* max tokens per hearth_decode call; default 512 */
    int32_t n_threads;    /* CPU threads; 0 = number of cores (max 64) */
    hearth_kv_type kv_type;
    bool embeddings;      /* also keep final hidden states for hearth_get_embeddings_seq */
} hearth_context_params;

hearth_context_params hearth_context_default_params(void);

/* Creates a context over a model (the model must outlive it). Caller frees with
 * hearth_context_free. Validates every param (n_ctx 1..2^20, n_threads 1..1024, ...). */
hearth_status hearth_context_new(hearth_model *m, const hearth_context_params *p,
                                 hearth_context **out, char *err, size_t errlen);
void hearth_context_free(hearth_context *c);
/* Message of the last failed call on c. Borrowed, valid until the next call on c. */
const char *hearth_context_errmsg(const hearth_context *c);
uint32_t hearth_context_n_ctx(const hearth_context *c);
uint32_t hearth_context_n_seq_max(const hearth_context *c);
const hearth_model *hearth_context_model(const hearth_context *c);

/* Where a context's work runs. Layers [0, n_gpu_layers) and the token embeddings run on the
 * accelerator, the remaining layers on the CPU; the output (final norm + output matrix)
 * runs where the last layer runs. */
typedef struct hearth_placement {
    char backend[16];         /* the accelerator's backend ("cuda"), or "cpu" when none */
    char device[128];         /* its device name ("NVIDIA H200"); "" for the CPU */
    int32_t n_layer;
    int32_t n_gpu_layers;     /* 0 when everything runs on the CPU */
    bool output_on_gpu;
    uint64_t gpu_bytes;       /* estimated accelerator memory of that placement */
    uint64_t gpu_free;        /* accelerator memory free before loading (0 = unknown) */
    uint64_t gpu_shared;      /* bytes of the model's weights another context had already put
                               * on the device: reused, not uploaded again (weights go to a
                               * device once per model) */
    char summary[320];        /* e.g. "22/22 layers on cuda (NVIDIA H200), output on cuda" */
    char note[512];           /* why fewer layers than asked, or the CPU; "" if nothing to say */
} hearth_placement;

/* The placement of a context (as loaded, after any fallback). */
hearth_status hearth_context_placement(const hearth_context *c, hearth_placement *out);
/* The placement a context with params p (NULL = defaults) would get now, without loading
 * anything onto the device (it is probed for its free memory). */
hearth_status hearth_model_plan_placement(hearth_model *m, const hearth_context_params *p,
                                          hearth_placement *out, char *err, size_t errlen);

/* ---- batched decode ---------------------------------------------------------------------
 * A batch holds tokens of one or more sequences. Each token carries its sequence id and
 * position; positions of a sequence must continue that sequence's KV cache contiguously
 * (pos == hearth_kv_seq_pos_max(seq) + 1 for the first token of the seq in the batch).
 * `logits[i]` non-zero requests the logits after token i. */
typedef struct hearth_batch {
    int32_t n_tokens;
    int32_t capacity;
    hearth_token *token; /* [capacity] */
    int32_t *pos;        /* [capacity] */
    int32_t *seq_id;     /* [capacity] */
    int8_t *logits;      /* [capacity] */
} hearth_batch;

/* Allocates a batch for `capacity` tokens. Free with hearth_batch_free. Returns a batch
 * with capacity 0 on allocation failure. */
hearth_batch hearth_batch_init(int32_t capacity);
void hearth_batch_free(hearth_batch *b);
/* Appends a token; returns false when full. */
bool hearth_batch_add(hearth_batch *b, hearth_token t, int32_t pos, int32_t seq_id, bool logits);
static inline void hearth_batch_clear(hearth_batch *b) { b->n_tokens = 0; }

/* Runs the model over the batch, appending K/V for every token to its sequence's cache.
 * Errors: HEARTH_E_CONTEXT when a position would exceed n_ctx (nothing is written),
 * HEARTH_E_INVALID for bad ids/positions, HEARTH_E_CANCELLED if the abort callback fired. */
hearth_status hearth_decode(hearth_context *c, const hearth_batch *b);

/* Logits (n_vocab floats) after batch token i of the last decode, which must have asked
 * for them; NULL otherwise. Borrowed, valid until the next decode on c. */
const float *hearth_get_logits(hearth_context *c, int32_t i);

/* Mean-pooled, L2-normalised final hidden state over the tokens of `seq_id` in the last
 * decode (requires params.embeddings). Writes n_embd floats to out. */
hearth_status hearth_get_embeddings_seq(hearth_context *c, int32_t seq_id, float *out, size_t n);

/* Abort callback polled between layers; returning true cancels the decode. */
void hearth_context_set_abort(hearth_context *c, bool (*fn)(void *ud), void *ud);

/* ---- KV cache management --------------------------------------------------------------- */
/* Removes positions [p0, p1) of seq (p1 < 0: to the end). Only a suffix may be removed
 * (p1 < 0 or p1 > last pos); otherwise HEARTH_E_UNSUPPORTED. */
hearth_status hearth_kv_seq_rm(hearth_context *c, int32_t seq, int32_t p0, int32_t p1);
/* Copies positions [0, p1) of src into dst (replacing dst's contents); p1 < 0 = all. */
hearth_status hearth_kv_seq_cp(hearth_context *c, int32_t src, int32_t dst, int32_t p1);
/* Last position stored for seq, -1 when empty. */
int32_t hearth_kv_seq_pos_max(const hearth_context *c, int32_t seq);
void hearth_kv_clear(hearth_context *c);

/* ---- sampling -------------------------------------------------------------------------- */
typedef struct hearth_logit_bias {
    hearth_token token;
    float bias;             /* added to the logit; -INFINITY bans the token */
} hearth_logit_bias;

typedef struct hearth_sampler_params {
    uint64_t seed;          /* same seed + same logits = same tokens, on any thread count */
    float temperature;      /* <= 0: greedy */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float typical_p;        /* >= 1: off */
    float repeat_penalty;   /* 1: off */
    int32_t repeat_last_n;  /* window for the penalties; 0 off, -1 = whole history */
    float presence_penalty;
    float frequency_penalty;
    const hearth_logit_bias *logit_bias; /* copied at creation */
    size_t n_logit_bias;
} hearth_sampler_params;

hearth_sampler_params hearth_sampler_default_params(void);

typedef struct hearth_sampler hearth_sampler;
/* Caller frees with hearth_sampler_free. NULL on invalid params or allocation failure
 * (message in err). */
hearth_sampler *hearth_sampler_new(const hearth_model *m, const hearth_sampler_params *p,
                                   char *err, size_t errlen);
void hearth_sampler_free(hearth_sampler *s);
/* Picks a token from n_vocab logits (not modified) and records it in the history. */
hearth_token hearth_sampler_sample(hearth_sampler *s, const float *logits);
/* Records a token in the penalty history without sampling (e.g. prompt tokens). */
void hearth_sampler_accept(hearth_sampler *s, hearth_token t);
/* Forgets the penalty history and re-seeds the random stream from the params' seed. */
void hearth_sampler_reset(hearth_sampler *s);
/* Forgets the penalty history only (the random stream goes on): for a caller that feeds
 * the whole conversation again each turn. */
void hearth_sampler_clear_history(hearth_sampler *s);

/* ---- model file inspection (GGUF) ----------------------------------------------------
 * Reads a GGUF file's header — metadata and tensor directory — without loading weights
 * (for `hearth show` and tools). The file is validated exactly as for hearth_model_load
 * (every tensor is checked to lie inside the file). A hearth_gguf is immutable and may be
 * read from several threads. Indices are 0..n-1; an index out of range yields NULL/false/
 * HEARTH_E_INVALID. */
typedef struct hearth_gguf hearth_gguf;

/* Opens and validates `path`. On success *out is a handle the caller frees with
 * hearth_gguf_close; on failure *out is NULL and err holds one line naming the file, the
 * field and the problem (HEARTH_E_IO / HEARTH_E_FORMAT). */
hearth_status hearth_gguf_open(const char *path, hearth_gguf **out, char *err, size_t errlen);
void hearth_gguf_close(hearth_gguf *g);

uint32_t hearth_gguf_version(const hearth_gguf *g);
uint64_t hearth_gguf_alignment(const hearth_gguf *g);
uint64_t hearth_gguf_file_size(const hearth_gguf *g);
uint64_t hearth_gguf_data_offset(const hearth_gguf *g);   /* start of the tensor data */

uint64_t hearth_gguf_n_kv(const hearth_gguf *g);
/* Index of `key`, -1 when absent. */
int64_t hearth_gguf_find_key(const hearth_gguf *g, const char *key);
/* Key name of entry i (borrowed, valid until close). */
const char *hearth_gguf_key(const hearth_gguf *g, uint64_t i);
/* Value type name of entry i: "uint8" ... "float64", "bool", "string", "array". Static. */
const char *hearth_gguf_type_name(const hearth_gguf *g, uint64_t i);
/* For an array entry: its element type name (static) and length; false otherwise. */
bool hearth_gguf_array_info(const hearth_gguf *g, uint64_t i, const char **elem_type, uint64_t *n);
/* Value of entry i as text: numbers in decimal, strings quoted with JSON escapes and cut
 * after max_str bytes (0 = whole), arrays as `[512 x string] ["<unk>", "<s>", ...]` with at
 * most max_elems elements. Caller frees with hearth_free; NULL on error. */
char *hearth_gguf_value_text(const hearth_gguf *g, uint64_t i, size_t max_elems, size_t max_str);
/* Value of entry i as JSON text (numbers, true/false, strings — invalid UTF-8 replaced by
 * U+FFFD — and arrays of at most max_elems elements). Caller frees with hearth_free. */
char *hearth_gguf_value_json(const hearth_gguf *g, uint64_t i, size_t max_elems);
/* Convenience by key. get_str: the string (borrowed, NUL-terminated) or NULL when absent or
 * not a string. get_int: any integer type whose value fits int64; false otherwise.
 * array_len: length of an array value, -1 when absent or not an array. */
const char *hearth_gguf_get_str(const hearth_gguf *g, const char *key);
bool hearth_gguf_get_int(const hearth_gguf *g, const char *key, int64_t *out);
int64_t hearth_gguf_array_len(const hearth_gguf *g, const char *key);

typedef struct hearth_gguf_tensor_info {
    const char *name;        /* borrowed, valid until close */
    const char *type_name;   /* "Q4_K", "F16", ... (static) */
    uint32_t type;           /* GGUF tensor type id */
    uint32_t n_dims;         /* 1..4 */
    int64_t ne[4];           /* elements per dim, ne[0] fastest; unused dims are 1 */
    uint64_t n_elements;
    uint64_t offset;         /* bytes from the start of the file */
    uint64_t size;           /* bytes */
} hearth_gguf_tensor_info;

uint64_t hearth_gguf_n_tensors(const hearth_gguf *g);
hearth_status hearth_gguf_tensor(const hearth_gguf *g, uint64_t i, hearth_gguf_tensor_info *out);
/* ---- server and model store ---------------------------------------------------------
 * The model store keeps models in Ollama's layout (<root>/manifests/<host>/<ns>/<model>/<tag>
 * + <root>/blobs/sha256-<hex>). Every function takes `root`: NULL means $HEARTH_MODELS or
 * ~/.hearth/models. Names are [host/][namespace/]model[:tag] ("stories", "hf.co/u/r:Q4_K_M").
 * All store functions are thread-safe (each write is a temp file renamed into place). */

typedef struct hearth_store_entry {
    char name[320];     /* display name, e.g. "stories:latest" */
    char digest[72];    /* sha256 of the manifest bytes, "sha256:<hex>" */
    uint64_t size;      /* bytes of all layers */
    int64_t modified;   /* manifest modification time, unix seconds */
} hearth_store_entry;

/* Lists stored models sorted by name. *out (caller frees with hearth_free) has *n entries. */
hearth_status hearth_store_list(const char *root, hearth_store_entry **out, size_t *n,
                                char *err, size_t errlen);
/* Path of the GGUF file behind `name`: an existing file path is returned as-is, otherwise
 * the model blob of the stored model. Caller frees *path with hearth_free.
 * HEARTH_E_NOT_FOUND when no such model. */
hearth_status hearth_store_resolve(const char *root, const char *name, char **path,
                                   char *err, size_t errlen);
/* Everything the store knows about `name` as a JSON object: name, model_path, digest, size,
 * modified, template, system, license (strings or absent), parameters (object), messages
 * (array), config (object). Caller frees *json with hearth_free. */
hearth_status hearth_store_info(const char *root, const char *name, char **json, char *err,
                                size_t errlen);
hearth_status hearth_store_copy(const char *root, const char *src, const char *dst, char *err,
                                size_t errlen);
/* Removes the manifest, then every blob no other manifest references. */
hearth_status hearth_store_remove(const char *root, const char *name, char *err, size_t errlen);

/* Progress callback: status text ("pulling <digest>", "writing manifest", ...), the blob's
 * digest (or NULL) and bytes done / total (0 when unknown). Strings are borrowed. */
typedef void (*hearth_progress_fn)(void *ud, const char *status, const char *digest,
                                   uint64_t completed, uint64_t total);
/* Creates `name` from Modelfile text (FROM a .gguf path, relative to base_dir or the working
 * directory, or a stored model; PARAMETER, TEMPLATE, SYSTEM, MESSAGE, LICENSE). A local GGUF
 * is hard-linked into the store when on the same file system, copied otherwise. */
hearth_status hearth_store_create(const char *root, const char *name, const char *modelfile,
                                  size_t len, const char *base_dir, hearth_progress_fn progress,
                                  void *ud, char *err, size_t errlen);

typedef struct hearth_pull_params {
    bool insecure;                 /* plain http (e.g. a registry on loopback) */
    hearth_progress_fn progress;   /* may be NULL */
    void *ud;
    bool (*cancel)(void *ud);      /* polled during transfers; true aborts (may be NULL) */
} hearth_pull_params;
/* Downloads `name` from its registry (Ollama protocol; hf.co/USER/REPO[:QUANT] from the
 * Hugging Face Hub). Blobs download to "<blob>-partial" and resume from there; each is
 * sha256-verified before it is renamed into place; the manifest is written last. */
hearth_status hearth_store_pull(const char *root, const char *name, const hearth_pull_params *p,
                                char *err, size_t errlen);

/* The HTTP server (Ollama + OpenAI APIs). */
typedef struct hearth_server hearth_server;
typedef struct hearth_server_params {
    const char *host;          /* bind address; default "127.0.0.1" */
    uint16_t port;             /* default 11434; 0 = any free port */
    const char *models_dir;    /* store root (NULL = default) */
    int32_t num_parallel;      /* sequences decoded together per model; default 4 */
    int32_t max_queue;         /* waiting requests per model before 503; default 64 */
    int32_t max_loaded;        /* models loaded at once; default 2 */
    int64_t keep_alive_ms;     /* default 5 minutes; <0 forever */
    uint32_t n_ctx;            /* context per sequence; 0 = model default (capped 4096) */
    int32_t n_threads;         /* 0 = all cores */
    int32_t sample_threads;    /* helper threads that sample one step's sequences beside the
                                * model's runner: -1 (default) = automatic (some when the model
                                * runs wholly on a GPU, none on the CPU), 0 = none, at most
                                * 64; a value outside -1..64 is taken as -1 */
    const char *backend;       /* as hearth_model_params.backend */
    int32_t n_gpu_layers;      /* as hearth_model_params.n_gpu_layers; default -1 (automatic) */
    size_t max_body;           /* request body cap in bytes; default 16 MiB */
    uint32_t timeout_s;        /* a request whose client sends or reads nothing for this long is
                                * dropped; default 300 */
    uint32_t idle_timeout_s;   /* a connection with no request in progress (new, or kept alive
                                * between requests) closes after this long; default 30, at most
                                * timeout_s */
    uint32_t max_connections;  /* connections open at once, default 512; beyond them new ones
                                * are closed at once. Bound to a non-loopback address, one
                                * client address may hold at most half of them */
    const char *api_keys;      /* comma-separated; NULL/"" = no auth */
    const char *origins;       /* CORS allow-list, comma-separated; NULL = localhost only */
    hearth_log_fn log;         /* request and event log; NULL = silent */
    void *log_user_data;
} hearth_server_params;

hearth_server_params hearth_server_default_params(void);
/* Parses a keep-alive duration as the API's keep_alive field does ("5m", "1h30m", "30s",
 * "250ms", a plain number of seconds; negative = forever, *ns = -1). On error returns
 * HEARTH_E_INVALID with a message in err (errlen bytes, may be NULL/0). */
hearth_status hearth_parse_duration(const char *s, int64_t *ns, char *err, size_t errlen);
/* Binds and starts serving in background threads. *out is freed with hearth_server_free.
 * A taken port fails with HEARTH_E_IO and a message naming host and port. */
hearth_status hearth_server_start(const hearth_server_params *p, hearth_server **out,
                                  char *err, size_t errlen);
/* Port actually bound (useful with port 0). */
uint16_t hearth_server_port(const hearth_server *s);
/* Graceful stop: refuses new requests, cancels in-flight generations (streams end with a
 * final message), joins all threads and unloads models. Safe to call once; then free. */
void hearth_server_stop(hearth_server *s);
void hearth_server_free(hearth_server *s);

/* Minimal HTTP client for the CLI verbs that talk to a running server. Sends `body` (may be
 * NULL) to http://host:port/path; *status gets the HTTP status, *resp the body (caller frees
 * with hearth_free). HEARTH_E_IO when nothing listens. */
hearth_status hearth_client_request(const char *host, uint16_t port, const char *method,
                                    const char *path, const char *body, long *status,
                                    char **resp, char *err, size_t errlen);

/* ---- benchmarking helpers ---- */
/* Measures the machine's memory read bandwidth the way a generation step reads weights:
 * n_threads threads (1..1024) each stream through their share of a fresh `bytes`-long
 * buffer (at least 64 MiB; 1 GiB recommended) with the widest loads the CPU allows; the
 * best of `reps` passes is returned in *gbps (1e9 bytes per second). HEARTH_E_NOMEM if the
 * buffer cannot be allocated. */
hearth_status hearth_bench_read_bandwidth(int32_t n_threads, size_t bytes, int32_t reps, double *gbps);
/* Bytes of weight data one generated token reads: every tensor except the token embedding
 * table (only one row of it is read), which counts fully when it doubles as the output
 * matrix. */
uint64_t hearth_model_bytes_per_token(const hearth_model *m);
/* Measures the memory read bandwidth of the accelerator `backend` ("cuda", NULL/"auto" as in
 * hearth_model_params) would give a context, in GB/s (1e9 bytes per second), and names the
 * device in `device` (cap bytes, may be NULL). HEARTH_E_UNSUPPORTED when there is none. */
hearth_status hearth_bench_device_bandwidth(const char *backend, double *gbps, char *device, size_t cap);
/* The CPU kernel level in use ("scalar", "avx2", "avx512", "amx"). Borrowed, static. */
const char *hearth_cpu_isa(void);

#ifdef __cplusplus
}
#endif
#endif
