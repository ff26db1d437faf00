/* run_chat.c — conversation helpers for `hearth run`: render messages through the model's
 * chat template, run one user turn, read piped stdin. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run_gen.h"

void run_emit_stdout(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

/* Renders messages (a JSON array, borrowed) through the model's template. */
char *run_render_chat(gen_session *g, json_t *messages) {
    char err[512] = "", *out = NULL;
    char *js = json_dumps(messages, JSON_COMPACT);
    if (!js) return NULL;
    if (hearth_chat_apply(gen_model(g), gen_get_opts(g)->template_src, js, NULL, true, &out, err, sizeof err)) {
        cli_error("chat template: %s", err);
        out = NULL;
    }
    free(js);
    return out;
}

int run_text_check(const char *what, const char *s, size_t len) {
    json_t *v = memchr(s, 0, len) ? NULL : json_stringn(s, len); /* jansson checks the UTF-8 */
    int rc = 0;
    if (memchr(s, 0, len)) {
        cli_error("run: %s contains a NUL byte", what);
        rc = 1;
    } else if (!v) {
        cli_error("run: %s is not valid UTF-8", what);
        rc = 1;
    }
    json_decref(v);
    return rc;
}

json_t *run_new_conversation(const char *system) {
    json_t *m = json_array();
    if (m && system && *system) json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", system));
    return m;
}

/* Runs one user turn: appends it, renders, generates, appends the reply. */
typedef struct reply_acc {
    char *buf;
    size_t len, cap;
} reply_acc;

static void emit_acc(void *ud, const char *text, size_t len) {
    reply_acc *a = ud;
    run_emit_stdout(NULL, text, len);
    if (a->len + len + 1 > a->cap) {
        size_t nc = (a->len + len + 1) * 2;
        char *nb = realloc(a->buf, nc);
        if (!nb) return;
        a->buf = nb;
        a->cap = nc;
    }
    memcpy(a->buf + a->len, text, len);
    a->len += len;
    a->buf[a->len] = '\0';
}

int run_chat_turn(gen_session *g, json_t *conv, const char *user, bool verbose, bool *interrupted) {
    gen_stats st = { 0 };
    reply_acc acc = { 0 };
    int rc = 1;
    char *prompt = NULL;
    if (run_text_check("the message", user, strlen(user))) goto out;
    json_array_append_new(conv, json_pack("{s:s,s:s}", "role", "user", "content", user));
    prompt = run_render_chat(g, conv);
    if (prompt) rc = gen_reply(g, prompt, HEARTH_TOK_ADD_SPECIAL | HEARTH_TOK_PARSE_SPECIAL, emit_acc, &acc, &st);
    json_t *reply = rc ? NULL : json_pack("{s:s,s:s}", "role", "assistant", "content", acc.buf ? acc.buf : "");
    if (reply) {
        json_array_append_new(conv, reply);
        if (st.hit_ctx_limit)
            fprintf(stderr, "\nhearth: the context is full; the reply was cut (/clear starts over; a larger --ctx needs a restart)\n");
        if (verbose) gen_print_stats(&st);
    } else {
        json_array_remove(conv, json_array_size(conv) - 1); /* the user turn just added */
        if (!rc) cli_error("run: the reply is not valid UTF-8; it was left out of the conversation");
        rc = 1;
    }
out:
    if (interrupted) *interrupted = st.interrupted;
    free(prompt);
    free(acc.buf);
    return rc;
}

int run_resolve_model(const char *arg, char **path, char **template_src, char **system) {
    char err[512] = "", *info = NULL;
    *path = *template_src = *system = NULL;
    if (hearth_store_resolve(NULL, arg, path, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        return 1;
    }
    /* a stored model may carry its own TEMPLATE and SYSTEM (Modelfile) */
    if (strcmp(*path, arg) != 0 && hearth_store_info(NULL, arg, &info, err, sizeof err) == HEARTH_OK) {
        json_t *j = json_loads(info, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "template"));
        const char *sy = json_string_value(json_object_get(j, "system"));
        /* a Go template (pulled from an Ollama registry) falls back to the GGUF's, as in the server */
        if (t && *t && !hearth_template_is_go(t)) *template_src = strdup(t);
        if (sy && *sy) *system = strdup(sy);
        json_decref(j);
        hearth_free(info);
    }
    return 0;
}
