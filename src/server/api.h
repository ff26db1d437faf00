/* api.h — helpers shared by the API handlers: the common "resolve model, pin runner, read
 * stored template/system/params" prologue, type checks on request fields, prompts and
 * embeddings.
 */
#ifndef HEARTH_SERVER_API_H
#define HEARTH_SERVER_API_H

#include "server/server.h"

typedef struct api_call {
    http_req *hr;
    runner *rn;                     /* pinned */
    char model[320];                /* as the client named it */
    uint64_t load_ns;
    int64_t keep_alive;             /* ns; < 0 forever */
    json_t *info;                   /* store info (owned) */
    json_t *params;                 /* stored PARAMETERs (borrowed from info) */
    const char *tmpl, *system;      /* stored TEMPLATE / SYSTEM or NULL (borrowed) */
    enum MHD_Result ret;            /* the error response when api_begin fails */
} api_call;

/* Validates the body's "model" (or "name"), parses keep_alive, pins the runner (loading
 * the model) and reads the stored layers. On failure queues the error response into
 * c->ret and returns false. */
bool api_begin(http_req *hr, api_call *c, bool openai_keep_alive_default);
/* Frees c's data; release=true also unpins the runner (else the caller handed the pin on). */
void api_end(api_call *c, bool release);
/* Checks optional fields: pairs of (name, type) ending with NULL; type 's' string,
 * 'b' bool, 'a' array, 'o' object, 'n' number. null counts as absent. */
int api_check_types(json_t *obj, hb_err *err, ...);
/* Normalised messages with stored MESSAGEs and SYSTEM prepended. */
int api_chat_messages(api_call *c, json_t *in, json_t **out, hb_err *err);
/* Prompt for /api/generate (raw, request template, stored/model template, or plain). */
int api_generate_prompt(api_call *c, const char *prompt, char **out, hb_err *err);
/* The fill-in-the-middle prompt for `suffix` (Ollama /api/generate, OpenAI /v1/completions):
 * the model's prefix token, prefix, suffix token, suffix, middle token. A model without
 * those tokens cannot insert: HEARTH_E_INVALID saying so. Caller frees *out. */
int api_infill_prompt(api_call *c, const char *prefix, const char *suffix, char **out, hb_err *err);
/* Token ids from a JSON array, each checked against the vocab. Caller frees *out. */
int api_token_array(runner *rn, json_t *arr, const char *field, hearth_token **out, size_t *n, hb_err *err);
/* How api_embed_inputs treats a request. */
typedef struct api_embed_opts {
    bool truncate;   /* cut inputs longer than the context (else an error) */
    bool empty_ok;   /* Ollama: an empty string input gives no vector; OpenAI: it is an error */
    int64_t dims;    /* `dimensions`: keep the first dims values, L2-normalised again (0: all) */
} api_embed_opts;
/* The `dimensions` field of the request j (absent or null: 0), checked: a whole number
 * from 1 to the model's embedding size; else an error naming the field. */
int api_embed_dims(api_call *c, json_t *j, int64_t *dims, hb_err *err);
/* Embeds a string, array of strings, array of ids or array of id arrays into *vecs (a new
 * array the caller owns); *n_tok: the tokens embedded. */
int api_embed_inputs(api_call *c, json_t *input, const api_embed_opts *o, json_t **vecs, int64_t *n_tok, hb_err *err);

/* Store endpoints (api_store.c). */
enum MHD_Result api_store_route(http_req *hr);

#endif
