/* engine_pending.c — TEMPORARY weak placeholders for engine functions that have not landed
 * on main yet (context, decode, sampler, tokenizer), so the server links and its
 * model-independent parts (store, HTTP, routing, errors) can be built and tested.
 * Each returns HEARTH_E_UNSUPPORTED. Delete this file once the engine is merged: a weak
 * definition in an archive member can hide a real one that is not otherwise pulled in.
 */
#include <string.h>

#include "hearth.h"
#include "tokenizer/tokenizer.h"

#define W __attribute__((weak))

W hearth_batch hearth_batch_init(int32_t capacity) { (void)capacity; hearth_batch b; memset(&b, 0, sizeof b); return b; }
W void hearth_batch_free(hearth_batch *b) { (void)b; }
W bool hearth_batch_add(hearth_batch *b, hearth_token t, int32_t pos, int32_t seq_id, bool logits) { (void)b, (void)t, (void)pos, (void)seq_id, (void)logits; return false; }
W hearth_status hearth_chat_apply(const hearth_model *m, const char *t, const char *mj, const char *tj, bool g, char **out, char *err, size_t n) { (void)m, (void)t, (void)mj, (void)tj, (void)g, (void)err, (void)n; *out = NULL; return HEARTH_E_UNSUPPORTED; }
W hearth_context_params hearth_context_default_params(void) { hearth_context_params p; memset(&p, 0, sizeof p); p.n_seq_max = 1; p.n_batch = 512; return p; }
W const char *hearth_context_errmsg(const hearth_context *c) { (void)c; return "engine not available in this build"; }
W void hearth_context_free(hearth_context *c) { (void)c; }
W uint32_t hearth_context_n_ctx(const hearth_context *c) { (void)c; return 0; }
W uint32_t hearth_context_n_seq_max(const hearth_context *c) { (void)c; return 0; }
W hearth_status hearth_context_new(hearth_model *m, const hearth_context_params *p, hearth_context **out, char *err, size_t n) { (void)m, (void)p; *out = NULL; if (err && n) strncpy(err, "engine not available in this build", n - 1); return HEARTH_E_UNSUPPORTED; }
W void hearth_context_set_abort(hearth_context *c, bool (*fn)(void *), void *ud) { (void)c, (void)fn, (void)ud; }
W hearth_status hearth_decode(hearth_context *c, const hearth_batch *b) { (void)c, (void)b; return HEARTH_E_UNSUPPORTED; }
W hearth_detok_stream *hearth_detok_stream_new(const hearth_model *m, int flags) { (void)m, (void)flags; return NULL; }
W hearth_status hearth_detok_stream_push(hearth_detok_stream *s, hearth_token t, const char **text, size_t *len) { (void)s, (void)t; *text = ""; *len = 0; return HEARTH_E_UNSUPPORTED; }
W hearth_status hearth_detok_stream_flush(hearth_detok_stream *s, const char **text, size_t *len) { (void)s; *text = ""; *len = 0; return HEARTH_E_UNSUPPORTED; }
W void hearth_detok_stream_free(hearth_detok_stream *s) { (void)s; }
W hearth_status hearth_detokenize(const hearth_model *m, const hearth_token *ids, size_t n, int flags, char **out, size_t *len, char *err, size_t el) { (void)m, (void)ids, (void)n, (void)flags, (void)err, (void)el; *out = NULL; *len = 0; return HEARTH_E_UNSUPPORTED; }
W hearth_status hearth_tokenize(const hearth_model *m, const char *text, size_t len, int flags, hearth_token **out, size_t *n, char *err, size_t el) { (void)m, (void)text, (void)len, (void)flags, (void)err, (void)el; *out = NULL; *n = 0; return HEARTH_E_UNSUPPORTED; }
W hearth_status hearth_get_embeddings_seq(hearth_context *c, int32_t s, float *out, size_t n) { (void)c, (void)s, (void)out, (void)n; return HEARTH_E_UNSUPPORTED; }
W const float *hearth_get_logits(hearth_context *c, int32_t i) { (void)c, (void)i; return NULL; }
W void hearth_kv_clear(hearth_context *c) { (void)c; }
W hearth_status hearth_kv_seq_cp(hearth_context *c, int32_t a, int32_t b, int32_t p) { (void)c, (void)a, (void)b, (void)p; return HEARTH_E_UNSUPPORTED; }
W hearth_status hearth_kv_seq_rm(hearth_context *c, int32_t s, int32_t a, int32_t b) { (void)c, (void)s, (void)a, (void)b; return HEARTH_E_UNSUPPORTED; }
W int32_t hearth_model_n_ctx_train(const hearth_model *m) { (void)m; return 0; }
W int32_t hearth_model_n_embd(const hearth_model *m) { (void)m; return 0; }
W int32_t hearth_model_n_head(const hearth_model *m) { (void)m; return 0; }
W int32_t hearth_model_n_head_kv(const hearth_model *m) { (void)m; return 0; }
W int32_t hearth_model_n_layer(const hearth_model *m) { (void)m; return 0; }
W int32_t hearth_model_n_vocab(const hearth_model *m) { (void)m; return 0; }
W int tok_vocab_load(const gguf_file *f, tok_vocab **out, hb_err *err) { (void)f, (void)err; *out = NULL; return HEARTH_OK; }
W void tok_vocab_free(tok_vocab *v) { (void)v; }
W int32_t tok_bos(const tok_vocab *v) { (void)v; return -1; }
W int32_t tok_eos(const tok_vocab *v) { (void)v; return -1; }
W int32_t tok_eot(const tok_vocab *v) { (void)v; return -1; }
W bool tok_add_bos(const tok_vocab *v) { (void)v; return false; }
W bool tok_is_eog(const tok_vocab *v, int32_t id) { (void)v, (void)id; return false; }
