/* model.c — hearth_model_load / free and the public facts about a model.
 *
 * Loading: map + validate the GGUF file, build the vocab, then (unless vocab_only) hand
 * over to the architecture layer (model_arch_load, src/arch) to read hyper-parameters and
 * bind weight slots to tensors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* Implemented by the architecture layer (src/arch/registry.c). Weak default: vocab only. */
int model_arch_load(struct hearth_model *m, hb_err *err) __attribute__((weak));
int model_arch_load(struct hearth_model *m, hb_err *err) {
    return hb_fail(err, HEARTH_E_UNSUPPORTED, "%s: no architecture support in this build", m->path);
}

hearth_model_params hearth_model_default_params(void) {
    hearth_model_params p;
    memset(&p, 0, sizeof p);
    p.log_level = HEARTH_LOG_INFO;
    p.n_gpu_layers = -1;
    return p;
}

static char *file_stem(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    return hb_strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

/* Counts parameters and bytes, and names the dominant weight type of 2-D tensors. */
static int model_summarise(struct hearth_model *m) {
    uint64_t by_type[QT_COUNT] = { 0 };
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        m->n_params += t->n_elements;
        m->size_bytes += t->size;
        if (t->n_dims >= 2 && t->type < QT_COUNT) by_type[t->type] += t->size;
    }
    uint32_t best = QT_F32;
    for (uint32_t t = 0; t < QT_COUNT; t++)
        if (by_type[t] > by_type[best]) best = t;
    m->ftype_name = hb_strndup(quant_type_name(best), strlen(quant_type_name(best)));
    return m->ftype_name ? HEARTH_OK : HEARTH_E_NOMEM;
}

/* The slot of device copies the model's contexts share, over the tensor data's extent in
 * the mapping (the only bytes a backend may share). */
static void model_share_init(hearth_model *m) {
    const uint8_t *lo = NULL, *hi = NULL;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        if (!t->data) continue;
        if (!lo || t->data < lo) lo = t->data;
        if (!hi || t->data + t->size > hi) hi = t->data + t->size;
    }
    be_share_slot_init(&m->share, lo, hi);
}

hearth_status hearth_model_load(const char *path, const hearth_model_params *params,
                                hearth_model **out, char *errbuf, size_t errlen) {
    int rc = HEARTH_OK;
    hb_err e, *err = &e;
    const gguf_str *s = NULL;
    struct hearth_model *m = NULL;
    hb_err_clear(&e);
    *out = NULL;
    HB_CHECK(path && *path, HEARTH_E_INVALID, "no model path given");
    m = calloc(1, sizeof *m);
    HB_CHECK(m, HEARTH_E_NOMEM, "out of memory");
    m->params = params ? *params : hearth_model_default_params();
    m->log.fn = m->params.log;
    m->log.ud = m->params.log_user_data;
    m->log.level = m->params.log_level;
    m->path = hb_strndup(path, strlen(path));
    HB_CHECK(m->path, HEARTH_E_NOMEM, "out of memory");
    if ((rc = gguf_open(path, &m->gguf, err))) goto out;
    model_share_init(m);
    if (gguf_get_str(m->gguf, "general.architecture", &s, err) == HEARTH_OK)
        m->arch_name = hb_strndup(s->data, s->len);
    else if (e.code) { rc = e.code; goto out; }
    else m->arch_name = hb_strndup("", 0);
    if (gguf_get_str(m->gguf, "general.name", &s, err) == HEARTH_OK)
        m->name = hb_strndup(s->data, s->len);
    else if (e.code) { rc = e.code; goto out; }
    else m->name = file_stem(path);
    HB_CHECK(m->arch_name && m->name, HEARTH_E_NOMEM, "out of memory");
    if ((rc = model_summarise(m))) goto out;
    if ((rc = tok_vocab_load(m->gguf, &m->vocab, err))) goto out;
    if (!m->params.vocab_only && (rc = model_arch_load(m, err))) goto out;
    *out = m;
    m = NULL;
out:
    if (rc && errbuf && errlen) snprintf(errbuf, errlen, "%s", e.msg);
    hearth_model_free(m);
    return (hearth_status)rc;
}

void hearth_model_free(hearth_model *m) {
    if (!m) return;
    if (m->gguf) be_share_slot_free(&m->share); /* initialized right after the file opened */
    if (m->arch_free) m->arch_free(m);
    tok_vocab_free(m->vocab);
    gguf_close(m->gguf);
    free(m->path);
    free(m->name);
    free(m->arch_name);
    free(m->ftype_name);
    free(m);
}

const char *hearth_model_arch(const hearth_model *m) { return m->arch_name; }
const char *hearth_model_name(const hearth_model *m) { return m->name; }
const char *hearth_model_path(const hearth_model *m) { return m->path; }
uint64_t hearth_model_n_params(const hearth_model *m) { return m->n_params; }
uint64_t hearth_model_size_bytes(const hearth_model *m) { return m->size_bytes; }
const char *hearth_model_ftype_name(const hearth_model *m) { return m->ftype_name; }

const char *hearth_model_chat_template(const hearth_model *m) {
    const gguf_kv *kv = gguf_find(m->gguf, "tokenizer.chat_template");
    return (kv && kv->val.type == GGUF_STRING) ? kv->val.v.str.data : NULL;
}

hearth_token hearth_token_bos(const hearth_model *m) { return m->vocab ? tok_bos(m->vocab) : -1; }
hearth_token hearth_token_eos(const hearth_model *m) { return m->vocab ? tok_eos(m->vocab) : -1; }
hearth_token hearth_token_eot(const hearth_model *m) { return m->vocab ? tok_eot(m->vocab) : -1; }
hearth_token hearth_token_fim(const hearth_model *m, int which) { return m && m->vocab ? tok_fim(m->vocab, which) : -1; }
bool hearth_token_is_eog(const hearth_model *m, hearth_token t) { return m->vocab && tok_is_eog(m->vocab, t); }
bool hearth_model_add_bos(const hearth_model *m) { return m->vocab && tok_add_bos(m->vocab); }

char *hearth_model_meta_text(const hearth_model *m, const char *key) {
    const gguf_kv *kv = (m && key) ? gguf_find(m->gguf, key) : NULL;
    /* arrays abbreviated to 16 elements; strings whole (chat templates are long on purpose) */
    return kv ? gguf_value_text(&kv->val, 16, 0, false) : NULL;
}
