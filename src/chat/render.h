/* render.h — the chat module's internal render entry, shared by the public wrappers
 * (hearth_template_render in api.c, hearth_chat_apply in chat.c). */
#ifndef HEARTH_CHAT_RENDER_H
#define HEARTH_CHAT_RENDER_H

#include <stddef.h>

#include "base/base.h"

struct json_t;

/* Renders src_len bytes of template source with `vars` (a JSON object; borrowed) at the
 * instant `now` ("YYYY-MM-DDTHH:MM:SS", NULL = current local time). On success *out is a
 * NUL-terminated malloc'd string the caller frees; on failure *out is NULL and err says
 * why (HEARTH_E_TEMPLATE for template errors, raise_exception messages verbatim). */
int chat_render(const char *src, size_t src_len, struct json_t *vars, const char *now, char **out, hb_err *err);

/* Lexes and parses src_len bytes of template source without rendering them: HEARTH_OK, or
 * HEARTH_E_TEMPLATE with the construct and line in err. For checking a stored TEMPLATE
 * when it is created rather than at its first use. */
int chat_template_check(const char *src, size_t src_len, hb_err *err);

/* The template used for models without tokenizer.chat_template (ChatML; see chat.c). */
const char *chat_default_template(void);

#endif
