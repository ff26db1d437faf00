/* run_gen.h — a generation session for the CLI (`hearth run`): one model, one context,
 * one sequence, with prompt-prefix reuse across turns, streaming output through a
 * callback, stop strings that never leak, and timing for --verbose. Built only on
 * include/hearth.h. */
#ifndef HEARTH_RUN_GEN_H
#define HEARTH_RUN_GEN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hearth.h"

typedef struct gen_opts {
    long n_predict;          /* -1 = until end of generation or context full */
    long n_ctx, n_threads;   /* 0 = auto */
    hearth_kv_type kv_type;
    hearth_sampler_params sp;
    const char *const *stops; /* borrowed stop strings */
    const char *template_src; /* chat template overriding the model's (borrowed), or NULL */
    const char *backend;      /* "cpu", "cuda", "auto" or NULL (= $HEARTH_BACKEND, else auto) */
    long n_gpu_layers;        /* hearth_model_params.n_gpu_layers: -1 = automatic */
    bool verbose;             /* library INFO messages to stderr too */
    int n_stops;
} gen_opts;

typedef struct gen_stats {
    uint64_t load_ns, prompt_ns, gen_ns, ttft_ns;
    size_t n_prompt, n_prompt_reused, n_gen;
    bool hit_ctx_limit;      /* generation stopped because the context was full */
    uint32_t n_ctx;          /* the context's size in tokens */
    bool stopped;            /* stopped by a stop string, EOG or interrupt */
    bool interrupted;        /* stopped by the cancel flag (Ctrl-C) */
} gen_stats;

/* The generation parameters that both `hearth run`'s flags and the chat's `/set parameter`
 * take, with one set of bounds (a value outside would not fit the integer it is cast to,
 * or would mean nothing to the sampler): the /set name (Ollama's parameter name), the
 * flag name and the range. seed -1 means a random seed (gen_seed). */
typedef enum gen_param_id {
    GP_TEMPERATURE, GP_TOP_K, GP_TOP_P, GP_MIN_P, GP_TYPICAL_P, GP_SEED, GP_REPEAT_PENALTY, GP_REPEAT_LAST_N,
    GP_PRESENCE_PENALTY, GP_FREQUENCY_PENALTY, GP_NUM_PREDICT, GP_COUNT
} gen_param_id;
typedef struct gen_param {
    const char *name, *flag;
    double lo, hi;
} gen_param;
extern const gen_param gen_params[GP_COUNT]; /* immutable, indexed by gen_param_id */
/* The parameter /set calls `name`, or NULL. */
const gen_param *gen_param_find(const char *name);
/* seed for the sampler: s itself, or a random one when s is -1. */
uint64_t gen_seed(long long s);

typedef struct gen_session gen_session;

/* Output sink: text bytes of the reply as they become final. */
typedef void (*gen_emit_fn)(void *ud, const char *text, size_t len);

/* Resolves MODEL (a .gguf path or a stored model name) to a file path; the stored model's
 * TEMPLATE and SYSTEM (if any) are returned too. Caller frees all three with free(). Prints
 * one message and returns 1 on failure. */
int run_resolve_model(const char *arg, char **path, char **template_src, char **system);

/* Loads the model and creates the context. On failure prints one message and returns
 * NULL. `cancel` (borrowed) is polled during decoding; non-zero stops the current reply. */
gen_session *gen_open(const char *model_path, const gen_opts *o, volatile sig_atomic_t *cancel);
void gen_close(gen_session *g);
hearth_model *gen_model(gen_session *g);
/* Replaces the sampler parameters (e.g. after /set parameter). Returns 0 or 1 (message printed). */
int gen_set_sampler(gen_session *g, const hearth_sampler_params *sp);
void gen_set_opts(gen_session *g, const gen_opts *o);
/* Forgets the conversation state (KV cache and token history). */
void gen_reset(gen_session *g);

/* Tokenizes `prompt` (flags HEARTH_TOK_*), reuses the longest prefix already in the KV
 * cache, evaluates the rest and generates the reply into emit. Fills *st. Returns 0 on
 * success (including a reply cut by the context limit, reported in st), 1 on error
 * (message printed). */
int gen_reply(gen_session *g, const char *prompt, int tok_flags, gen_emit_fn emit, void *ud, gen_stats *st);

void gen_print_stats(const gen_stats *st);
const gen_opts *gen_get_opts(const gen_session *g);

/* ---- conversation helpers (run_chat.c) and the interactive loop (run_repl.c) ---------- */
typedef struct json_t json_t;
void run_emit_stdout(void *ud, const char *text, size_t len);
/* Renders messages through the model's template; caller frees. NULL on error (printed). */
char *run_render_chat(gen_session *g, json_t *messages);
json_t *run_new_conversation(const char *system);
/* Appends the user turn, generates and appends the reply; 0 ok, 1 error (printed; conv is
 * then as it was). *interrupted (may be NULL) says whether Ctrl-C cut the reply. */
int run_chat_turn(gen_session *g, json_t *conv, const char *user, bool verbose, bool *interrupted);
/* 0 when len bytes of s are text a chat message can hold (valid UTF-8, no NUL byte), else
 * 1 with a message naming `what` ("the prompt", "the system prompt") printed. */
int run_text_check(const char *what, const char *s, size_t len);
int run_repl(gen_session *g, gen_opts *o, const char *system, bool verbose, volatile sig_atomic_t *interrupt);

#endif
