/* server.h — internals of `hearth serve`: the HTTP layer, the per-model scheduler with
 * continuous batching, generation requests and metrics.
 *
 * Threads: libmicrohttpd runs one thread per connection (handlers may block); a model loads
 * on the connection thread of the first request for it, without the scheduler's lock (the
 * others for it wait); each loaded model has one runner thread that owns its
 * hearth_context and decodes every active sequence together; a manager thread unloads
 * models whose keep_alive expired.
 *
 * Ownership: a gen_req is shared by the connection thread and the runner and freed when
 * the last of them drops it (gen_req_unref). A runner is pinned by `users` while a request
 * uses (or waits for) it and freed only when unpinned: by the manager when it expires, by
 * an eviction, or by the last user of one taken off the list (replaced after a failed
 * decode, or its load failed).
 */
#ifndef HEARTH_SERVER_H
#define HEARTH_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "base/base.h"
#include "hearth.h"
#include "store/store.h"

struct hearth_server;
typedef struct runner runner;

/* ---- generation requests ------------------------------------------------------------ */
#define GEN_MAX_STOPS STORE_MAX_STOPS

/* Log-probabilities of one generated token under the model's distribution (log-softmax of
 * the raw logits: no temperature, penalties or truncation), with the most likely
 * alternatives (OpenAI `logprobs` / `top_logprobs`). */
#define GEN_MAX_TOP_LOGPROBS 20
typedef struct gen_lp {
    hearth_token tok;
    float lp;
    size_t start, len;              /* its text in the reply as generated: text[start, start + len) */
    bool lstrip;                    /* the reply's text dropped the piece's leading space (a text's start) */
    int32_t n_top;
    hearth_token top[GEN_MAX_TOP_LOGPROBS]; /* most likely first */
    float top_lp[GEN_MAX_TOP_LOGPROBS];
} gen_lp;

/* Fills *out for token t of the n logits, with the k (<= GEN_MAX_TOP_LOGPROBS) most likely
 * tokens (ties: lower id first). */
void gen_logprobs(const float *logits, int32_t n, hearth_token t, int k, gen_lp *out);

typedef struct gen_req {
    /* input (set before submission, read-only afterwards) */
    hearth_token *prompt;           /* [n_prompt], owned */
    int32_t n_prompt;
    int32_t n_truncated;            /* tokens dropped from the front to fit (truncate) */
    hearth_sampler_params sp;       /* sp.logit_bias points into bias */
    hearth_logit_bias *bias;        /* [sp.n_logit_bias], owned */
    int32_t num_predict;            /* < 0 = until the context is full */
    int32_t ctx_limit;              /* tokens this request may occupy (prompt + output) */
    char *stops[GEN_MAX_STOPS];     /* owned */
    int n_stops;
    bool want_tokens;               /* keep generated ids (Ollama `context`) */
    bool json_mode;                 /* format "json" / json_object: light JSON constraint */
    int32_t top_logprobs;           /* -1: no log-probabilities; else keep them with this many alternatives */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* output, guarded by mu */
    char *text;                     /* all text produced so far, NUL-terminated */
    size_t text_len, text_cap;
    size_t read_pos;                /* consumer's position in text */
    size_t *ends;                   /* text_len after each emitted piece (one per token), owned */
    size_t n_ends, ends_cap, read_end; /* read_end: the first of ends not yet consumed */
    hearth_token *out_tokens;
    int32_t n_out, out_cap;
    gen_lp *lps;                    /* [n_lp]: one per generated token (not the end token) with top_logprobs >= 0 */
    int32_t n_lp, lp_cap, read_lp;  /* read_lp: the first not yet streamed */
    int32_t n_eval;                 /* generated tokens */
    int32_t n_cached;               /* prompt tokens reused from the KV cache */
    bool done;
    bool wait_done_only;            /* the consumer reads the text only when done (a reply that is
                                     * not streamed): new text does not wake it, the finish does */
    const char *done_reason;        /* "stop", "length", "cancelled", "error" (static) */
    int status;                     /* HTTP status when done_reason is "error" */
    char errmsg[512];
    uint64_t t_submit, t_start, t_first_token, t_prompt_done, t_end; /* hb_now_ns */
    atomic_bool cancel;             /* set by the consumer (disconnect) or shutdown */
    atomic_int refs;
} gen_req;

gen_req *gen_req_new(void);
void gen_req_ref(gen_req *r);
void gen_req_unref(gen_req *r);
/* Runner side: appends text (wakes a consumer that reads as it goes; a token id alone wakes
 * no one) / finishes (wakes the consumer). */
void gen_req_emit(gen_req *r, const char *text, size_t len, hearth_token t);
/* Records the log-probabilities of the token just generated (runner thread). */
void gen_req_add_lp(gen_req *r, const gen_lp *lp);
/* The OpenAI logprobs object of n recorded tokens (logprobs.c; chat: {content, refusal},
 * completions: {tokens, token_logprobs, top_logprobs, text_offset}). New reference. */
json_t *gen_logprobs_json(hearth_model *m, const gen_lp *lps, int32_t n, bool chat);
/* The logprobs object of g's tokens not taken yet whose text starts before byte `upto` of
 * the reply (a stream chunk: the text sent so far; SIZE_MAX: all of the reply); tokens past
 * the finished reply's text (a stop string cut them) never appear. JSON null when g keeps
 * none. New reference. */
json_t *gen_take_logprobs(gen_req *g, hearth_model *m, bool chat, size_t upto);
void gen_req_finish(gen_req *r, const char *reason, int status, const char *msg);
/* Consumer side: waits up to timeout_ms for new text or completion. Returns true when
 * something changed. */
bool gen_req_wait(gen_req *r, int timeout_ms);

/* ---- scheduler -------------------------------------------------------------------------- */
typedef struct sched sched;

typedef struct runner_info {
    char name[320];
    char path[4200];
    char digest[72];
    uint64_t size;
    uint64_t size_vram;             /* the weights' bytes on the GPU: the GPU layers' share of size */
    int64_t expires_at;             /* unix seconds; 0 = never. A model in use: when it will expire
                                     * if its requests end now */
    uint32_t n_ctx;
} runner_info;

int sched_new(struct hearth_server *srv, sched **out, hb_err *err);
/* Refuses new work and cancels every queued or running request (they finish with
 * done_reason "cancelled"); connection threads then drain. */
void sched_shutdown(sched *s);
/* Joins the threads and unloads all models (after every request released its runner). */
void sched_free(sched *s);
/* Loads (or finds) the model for `name`, pinning it. keep_alive_ns is how long the model
 * stays loaded once idle (0 = unload at once, < 0 = forever): the latest request to pin a
 * model sets it, as in Ollama. Errors: HEARTH_E_NOT_FOUND (404), HEARTH_E_NOMEM (too big:
 * 507/400), busy (503). */
int sched_acquire(sched *s, const char *name, int64_t keep_alive_ns, runner **out, uint64_t *load_ns,
                  int *http_status, hb_err *err);
/* Totals over loaded models for /metrics. */
void sched_stats(sched *s, int64_t *kv_used, int64_t *kv_total, int *loaded, int *busy, int *queued);
/* Unpins; when that was the last pin the model is kept for the keep_alive of the latest
 * sched_acquire (unless sched_unload asked for it). NULL is fine. */
void sched_release(sched *s, runner *r);
/* Unloads a model now if idle (hearth stop / keep_alive 0 with no request). */
bool sched_unload(sched *s, const char *name);
/* Snapshot of loaded models (caller frees *out with free()). */
int sched_list(sched *s, runner_info **out, size_t *n);

/* Queues a generation request on a runner (takes a reference). HEARTH_E_NOMEM-like busy
 * errors come back as false with the message in err (503). */
bool runner_submit(runner *r, gen_req *g, hb_err *err);
hearth_model *runner_model(runner *r);
uint32_t runner_n_ctx(runner *r);
const char *runner_name(runner *r);
const char *runner_path(runner *r);
/* Embeds one text (mean-pooled, normalised) into out[n_embd]; serialised per model. */
int runner_embed(runner *r, const hearth_token *toks, int32_t n, float *out, size_t n_out, hb_err *err);

/* ---- metrics ------------------------------------------------------------------------------ */
void metrics_request(struct hearth_server *s, int status);
void metrics_tokens(struct hearth_server *s, int64_t prompt, int64_t generated);
void metrics_ttft(struct hearth_server *s, double seconds);
void metrics_token_time(struct hearth_server *s, double seconds);
/* Prometheus text exposition (caller frees). */
char *metrics_render(struct hearth_server *s);

/* ---- HTTP layer ----------------------------------------------------------------------------- */
typedef struct http_req {
    struct hearth_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    char *body;                     /* NUL-terminated request body */
    size_t body_len;
    json_t *json;                   /* parsed body for POST with JSON (or NULL) */
    bool openai;                    /* errors in OpenAI shape */
    int status;                     /* for the log line */
    char *upload_path;              /* POST /api/blobs: the body spooled to this file */
    uint64_t t0;
    size_t bytes_out;
} http_req;

/* A streaming body: `next` fills buf (called on the connection thread, may block briefly);
 * returns bytes written, 0 to poll again, -1 at the end, -2 on error. `done_cb` runs when
 * the response is destroyed (client gone or finished). */
typedef struct http_stream {
    ssize_t (*next)(void *ud, char *buf, size_t max);
    void (*done_cb)(void *ud);
    void *ud;
} http_stream;

/* Response helpers: return MHD_YES/NO. `json` is stolen (decref'd). */
enum MHD_Result http_json(http_req *r, int status, json_t *json);
enum MHD_Result http_text(http_req *r, int status, const char *ctype, const char *body, size_t len);
enum MHD_Result http_error(http_req *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
enum MHD_Result http_stream_start(http_req *r, const char *ctype, http_stream st);
/* A static web asset (data borrowed for the process lifetime) with ETag / no-cache / CSP
 * headers; 304 when If-None-Match holds the ETag. */
enum MHD_Result http_asset(http_req *r, const unsigned char *data, size_t len, const char *ctype, const char *etag);
/* HTTP status for a hearth status. */
int http_status_of(int rc);
/* True while the client's socket is still open (checked without blocking). */
bool http_client_alive(struct MHD_Connection *c);

/* ---- API handlers (api_ollama.c, api_openai.c, api_misc.c) -------------------------------- */
enum MHD_Result api_ollama(http_req *r);
enum MHD_Result api_openai(http_req *r);
enum MHD_Result api_misc(http_req *r);
bool api_is_ollama(const char *url);
bool api_is_openai(const char *url);
bool api_is_misc(const char *url);

/* Shared generation plumbing (gen.c). */
typedef struct gen_opts {
    hearth_sampler_params sp;       /* sp.logit_bias points into bias */
    hearth_logit_bias *bias;        /* OpenAI logit_bias, owned (gen_opts_free) */
    int32_t top_logprobs;           /* OpenAI logprobs: -1 none, else alternatives per token (0..20) */
    int32_t num_predict;
    int32_t num_ctx;                /* 0 = runner's */
    char *stops[GEN_MAX_STOPS];
    int n_stops;
    bool seed_set;
} gen_opts;

/* API defaults (Ollama: temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1, ...;
 * OpenAI: temperature 1, no top_k, no penalties) and a random seed. */
void gen_opts_init(gen_opts *o, bool openai);
/* Overwrites o with the fields present in obj: an Ollama `options` object or stored
 * PARAMETERs (openai false), or OpenAI top-level fields (openai true). Wrong types and
 * out-of-range values are HEARTH_E_INVALID naming the field. */
int gen_opts_parse(json_t *obj, bool openai, gen_opts *o, hb_err *err);
void gen_opts_free(gen_opts *o);
/* Normalises chat messages: content parts flattened to text, OpenAI tool-call arguments
 * (JSON strings) turned into objects. Images are HEARTH_E_UNSUPPORTED. New reference. */
int gen_messages(json_t *in, json_t **out, hb_err *err);
/* Tokenizes the prompt (parses special tokens; adds BOS once when the model wants it),
 * checks it against the context (400 with counts) or truncates, builds the request. */
int gen_build(runner *rn, const char *prompt, const hearth_token *prefix, size_t n_prefix,
              const gen_opts *o, bool truncate, gen_req **out, hb_err *err);
/* Parses keep_alive (duration string "5m", seconds number, -1, 0) into ns; default when
 * absent. */
int gen_keep_alive(json_t *v, int64_t dflt, int64_t *out, hb_err *err);
/* Waits for a non-streaming request to finish, cancelling it if the client goes away. */
void gen_wait_done(http_req *r, gen_req *g);
/* Renders a chat prompt: messages (array), tools (array or NULL), with the stored
 * template (may be NULL) or the model's own. Models without any template and a single
 * user message get the plain text. Caller frees *out. */
int gen_chat_prompt(runner *rn, const char *stored_tmpl, json_t *messages, json_t *tools,
                    char **out, hb_err *err);

/* ---- tool calls in generated text (tools.c) -------------------------------------------- */
/* Parses the tool calls out of a whole reply (the formats are listed in tools.c: Hermes/Qwen
 * <tool_call>, Mistral [TOOL_CALLS], Llama <|python_tag|> and bare JSON objects or arrays
 * at the start). Returns a new array of Ollama-shaped calls {"function": {"name",
 * "arguments"}} (possibly empty) and sets *content_out to the text outside the calls
 * (caller frees; *content_len bytes, NUL-terminated). The text is len bytes and may hold
 * NUL bytes (a model can generate them). */
json_t *gen_parse_tool_calls(const char *text, size_t len, char **content_out, size_t *content_len);

/* What tool_scan_next decided about the first bytes of the text it was given. */
typedef enum tool_seg {
    TOOL_SEG_MORE,                  /* nothing can be decided before more text arrives (or none is left) */
    TOOL_SEG_TEXT,                  /* the first *n bytes are content */
    TOOL_SEG_CALLS,                 /* the first *n bytes are calls: *calls (an array; NULL for the blanks,
                                     * closing tag or separator around a call) */
} tool_seg;

/* A run of blanks the scanner has read in the undecided text: text[at..at + n) are blanks (tools.c). */
typedef struct tool_scan_run {
    size_t at, n;
} tool_scan_run;

/* How far the scanner has read an open JSON value (a held call) in the undecided text, so
 * that it reads only the new bytes when more text comes (tools.c: json_extent). */
typedef struct tool_scan_json {
    bool open;                      /* set: the fields below describe text[at..at + i) */
    bool calls;                     /* the value must be a call or an array of calls */
    size_t at;                      /* where the value ('{' or '[') starts in the undecided text */
    size_t i;                       /* bytes of the value read */
    size_t key;                     /* where the call key being read starts, from at; 0 when none */
    int depth, call_depth;          /* bracket depth; the call objects' depth (-1: none checked) */
    bool in_str, esc, want_key, want_obj;
} tool_scan_json;

/* The scanner's memory of the part of a reply already decided, and of how far it has read
 * the undecided rest; zero it for a new reply. */
typedef struct tool_scan {
    bool content_seen;              /* content was passed: a bare JSON value is no longer a call */
    bool after_call;                /* the last thing decided was a call: another may follow bare */
    const char *close;              /* the closing tag still expected after a call, or NULL (static) */
    /* Where the reading of the undecided text stopped (forgotten at each decision): the
     * blanks it starts with, the blanks after a marker or a ';' / ',' between calls, and a
     * JSON value. */
    tool_scan_run lead, gap;
    tool_scan_json value;
    size_t examined;                /* bytes read by the scanner's loops so far (for tests; only grows) */
} tool_scan;

/* Decides the start of text[0..len), the undecided rest of a reply (final: no more text will
 * come; then it never answers TOOL_SEG_MORE while len > 0). *n: bytes decided (0 with MORE);
 * *calls: new reference with TOOL_SEG_CALLS (caller decrefs), else NULL. Text that may still
 * become a call is held back: a marker or a prefix of one at the end, a { or [ where a bare
 * call may start, blanks at the end. Call it again on text + *n until it answers MORE; after
 * MORE, pass the same text again with more appended: the scanner resumes reading where it
 * stopped (ts remembers how far it read), so held text costs O(1) per new byte. */
tool_seg tool_scan_next(tool_scan *ts, const char *text, size_t len, bool final, size_t *n, json_t **calls);

/* ---- output streams (stream.c): NDJSON / SSE bodies fed by a gen_req -------------------- */
typedef struct ostream ostream;
/* Appends the wire form of new text (final: the closing message(s)) to os. */
typedef void (*ostream_fmt)(ostream *os, const char *text, size_t n, bool final);
/* Appends the wire form of tool calls (an array of Ollama-shaped calls, borrowed; the first
 * is call number os->n_calls) to os. */
typedef void (*ostream_calls_fmt)(ostream *os, json_t *calls);
struct ostream {
    struct MHD_Connection *conn;
    struct hearth_server *srv;
    gen_req *g;                     /* reference owned */
    runner *rn;                     /* pinned; released when the stream ends */
    uint64_t load_ns;
    ostream_fmt fmt;
    ostream_calls_fmt fmt_calls;    /* set: the reply is scanned for tool calls (chat with tools) */
    tool_scan ts;                   /* the scanner's state */
    char *held;                     /* [held_len] text the scanner has not decided yet, owned */
    size_t held_len, held_cap;
    int n_calls;                    /* tool calls sent so far */
    char *out;
    size_t out_len, out_cap, out_pos;
    bool final_sent;
    size_t fmt_pos;                 /* bytes of the reply's text handed to the formatter so far (calls included) */
    /* formatter data */
    char model[320];
    char id[64];
    int64_t created;
    bool include_usage, openai_chat;
};

/* Creates a stream over g (takes over the caller's reference to g and the pin on rn). */
ostream *ostream_new(http_req *hr, gen_req *g, runner *rn, uint64_t load_ns, ostream_fmt fmt);
void ostream_append(ostream *os, const char *s, size_t n);
/* Appends compact JSON + "\n" (NDJSON) or "data: JSON\n\n" (SSE); steals j. */
void ostream_json_line(ostream *os, json_t *j, bool sse);
enum MHD_Result ostream_start(http_req *hr, ostream *os, const char *ctype);
/* JSON string from bytes, replacing invalid UTF-8 with U+FFFD. New reference. */
json_t *jstr(const char *s, size_t n);
/* "2024-01-02T03:04:05.123456789Z" for now. */
void rfc3339_now(char buf[40]);

/* ---- the server handle ----------------------------------------------------------------------- */
struct hearth_server {
    hearth_server_params p;
    char *host, *models_dir, *api_keys, *origins; /* owned copies of params strings */
    struct MHD_Daemon *daemon;
    uint16_t port;
    sched *sched;
    atomic_bool stopping;
    atomic_int active_conns;
    atomic_int active_reqs;   /* requests between their first call and completed() */
    hb_log log;
    /* metrics */
    pthread_mutex_t mmu;
    uint64_t req_by_class[6];       /* 1xx..5xx, index status/100 */
    int64_t prompt_tokens, gen_tokens;
    uint64_t ttft_buckets[12], tok_buckets[12];
    double ttft_sum, tok_sum;
    uint64_t ttft_count, tok_count;
    int64_t queue_len, busy_slots, kv_used, kv_total;
};

/* Logs one line through the server's log callback. */
#define SRV_LOG(s, lvl, ...) hb_logf(&(s)->log, (lvl), __VA_ARGS__)

#endif
