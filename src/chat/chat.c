/* chat.c — hearth_chat_apply: a conversation (JSON messages) -> the model's prompt text.
 *
 * Variables given to the template, as Hugging Face's apply_chat_template passes them:
 * messages, tools (null when none), add_generation_prompt, and bos_token / eos_token as the
 * text of the vocab's BOS/EOS tokens (left undefined when the vocab has none).
 *
 * A model without tokenizer.chat_template gets the default below, ChatML:
 *   <|im_start|>{role}\n{content}<|im_end|>\n   for every message, then
 *   <|im_start|>assistant\n                    when add_generation_prompt is true.
 * (Non-string content, e.g. null on a tool-call message, renders as empty text.)
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "chat/render.h"
#include "model/model.h"

static const char k_default_template[] =
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' ~ "
    "(message['content'] if message['content'] is string else '') ~ '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

const char *chat_default_template(void) { return k_default_template; }

/* Sets vars[key] to the text of token id (skipped when the vocab has no such token). */
static int set_token_text(json_t *vars, const tok_vocab *v, int32_t id, const char *key, hb_err *err) {
    size_t len = 0;
    const char *t = (v && id >= 0) ? tok_text(v, id, &len) : NULL;
    if (!t) return 0;
    if (json_object_set_new(vars, key, json_stringn(t, len)) != 0)
        return hb_fail(err, HEARTH_E_NOMEM, "out of memory building template variables");
    return 0;
}

static int build_vars(const hearth_model *m, const char *messages_json, const char *tools_json,
                      bool add_gen, json_t **out, hb_err *err) {
    int rc = 0;
    json_error_t je;
    json_t *vars = json_object(), *msgs = NULL, *tools = NULL;
    HB_CHECK(vars, HEARTH_E_NOMEM, "out of memory building template variables");
    HB_CHECK(messages_json, HEARTH_E_INVALID, "chat: messages are required");
    msgs = json_loads(messages_json, JSON_ALLOW_NUL, &je);
    HB_CHECK(msgs, HEARTH_E_INVALID, "chat: messages: bad JSON at line %d: %s", je.line, je.text);
    HB_CHECK(json_is_array(msgs), HEARTH_E_INVALID, "chat: messages must be a JSON array");
    if (tools_json) {
        tools = json_loads(tools_json, JSON_ALLOW_NUL, &je);
        HB_CHECK(tools, HEARTH_E_INVALID, "chat: tools: bad JSON at line %d: %s", je.line, je.text);
        HB_CHECK(json_is_array(tools) || json_is_null(tools), HEARTH_E_INVALID, "chat: tools must be a JSON array");
    } else {
        tools = json_null();
    }
    HB_CHECK(json_object_set_new(vars, "messages", msgs) == 0, HEARTH_E_NOMEM, "out of memory");
    msgs = NULL;
    HB_CHECK(json_object_set_new(vars, "tools", tools) == 0, HEARTH_E_NOMEM, "out of memory");
    tools = NULL;
    HB_CHECK(json_object_set_new(vars, "add_generation_prompt", json_boolean(add_gen)) == 0, HEARTH_E_NOMEM, "out of memory");
    if (m->vocab) {
        if ((rc = set_token_text(vars, m->vocab, tok_bos(m->vocab), "bos_token", err))) goto out;
        if ((rc = set_token_text(vars, m->vocab, tok_eos(m->vocab), "eos_token", err))) goto out;
    }
    *out = vars;
    vars = NULL;
out:
    json_decref(msgs);
    json_decref(tools);
    json_decref(vars);
    return rc;
}

hearth_status hearth_chat_apply(const hearth_model *m, const char *template_override,
                                const char *messages_json, const char *tools_json,
                                bool add_generation_prompt, char **out, char *err,
                                size_t errlen) {
    hb_err e = { 0 };
    json_t *vars = NULL;
    int rc;
    if (out) *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!m || !out) {
        rc = hb_fail(&e, HEARTH_E_INVALID, "hearth_chat_apply: model and out are required");
    } else {
        const char *tmpl = template_override ? template_override : hearth_model_chat_template(m);
        if (!tmpl) tmpl = k_default_template;
        rc = build_vars(m, messages_json, tools_json, add_generation_prompt, &vars, &e);
        /* a model's own template renders at the current time (strftime_now) */
        if (!rc) rc = chat_render(tmpl, strlen(tmpl), vars, NULL, out, &e);
    }
    json_decref(vars);
    if (rc && err && errlen) snprintf(err, errlen, "%s", e.msg);
    return (hearth_status)rc;
}
