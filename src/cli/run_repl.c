/* run_repl.c — the interactive chat of `hearth run` on a terminal: multi-turn history,
 * slash commands, """ multi-line input; Ctrl-C stops the reply, Ctrl-D or /bye exits.
 * Lines are read through libedit (BSD): arrow keys and the usual editing keys, Up/Down
 * through earlier messages (kept in ~/.hearth/history or $HEARTH_HISTORY, empty = none),
 * and lines of any length (a terminal in canonical mode may cut a line at 4095 bytes). */
#include <errno.h>
#include <jansson.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <editline/readline.h>

#include "cli.h"
#include "run_gen.h"

typedef struct line_buf {
    char *s;
    size_t len, cap;
} line_buf;

static int lb_append(line_buf *b, const char *t, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) return 1;
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->len, t, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* Reads one user message into out; returns 0 ok, 1 on EOF, 2 on interrupt (Ctrl-C at the
 * prompt). A message is one line, or the lines between """ and """ (text after the closing
 * """ on its line is ignored, as in Ollama; Ctrl-D inside the block ends it); it goes into
 * the editing history whole. */
static int read_message(line_buf *out, volatile sig_atomic_t *interrupt) {
    const char *prompt = ">>> ";
    bool multi = false;
    int rc = 0;
    out->len = 0;
    if (out->s) out->s[0] = '\0';
    for (;;) {
        errno = 0;
        char *line = readline(prompt);
        if (!line) {
            rc = 1;
            if (*interrupt || errno == EINTR) *interrupt = 0, rc = 2;
            else if (multi && out->len) rc = 0, putchar('\n'); /* Ctrl-D ends a """ block: what was typed is sent, not lost */
            break;
        }
        char *p = line;
        if (!multi && strncmp(p, "\"\"\"", 3) == 0) multi = true, p += 3;
        char *end = multi ? strstr(p, "\"\"\"") : NULL;
        bool bad = lb_append(out, p, end ? (size_t)(end - p) : strlen(p)) || (multi && !end && lb_append(out, "\n", 1));
        free(line);
        if (bad) {
            rc = 1;
            break;
        }
        if (!multi || end) break;
        prompt = "... ";
    }
    while (out->len && (out->s[out->len - 1] == '\n' || out->s[out->len - 1] == '\r')) out->s[--out->len] = '\0';
    if (rc == 0 && out->len) { /* not twice in a row: Up then Enter repeats a message */
        HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
        if (!last || !last->line || strcmp(last->line, out->s) != 0) add_history(out->s);
    }
    return rc;
}

/* The history file: $HEARTH_HISTORY (empty: none), else ~/.hearth/history. Caller frees. */
static char *history_path(void) {
    const char *env = getenv("HEARTH_HISTORY"), *home = getenv("HOME");
    char *p = NULL;
    if (env) return *env ? strdup(env) : NULL;
    if (!home || !*home || asprintf(&p, "%s/.hearth", home) < 0) return NULL;
    mkdir(p, 0700); /* fails harmlessly when it exists */
    free(p);
    return asprintf(&p, "%s/.hearth/history", home) < 0 ? NULL : p;
}

static void repl_help(void) {
    puts("Commands:\n"
         "  /set parameter NAME VALUE   temperature, top_k, top_p, min_p, typical_p, seed,\n"
         "                              repeat_penalty, repeat_last_n, presence_penalty,\n"
         "                              frequency_penalty, num_predict (the bounds of\n"
         "                              hearth run's flags; seed -1 = a random seed)\n"
         "  /set system TEXT            set the system prompt (clears the conversation)\n"
         "  /show                       show the model and the current parameters\n"
         "  /clear                      forget the conversation\n"
         "  /bye                        exit\n"
         "Use \"\"\" to begin and end a multi-line message; Ctrl-C stops a reply.");
}

static int set_param(gen_session *g, gen_opts *o, const char *name, const char *val) {
    hearth_sampler_params sp = o->sp;
    char *end = NULL;
    const gen_param *p = gen_param_find(name); /* the bounds of `hearth run`'s flag of the same meaning */
    if (!p) { cli_error("unknown parameter '%s' (see /?)", name); return 1; }
    bool integer = strcmp(name, "top_k") == 0 || strcmp(name, "seed") == 0 || strcmp(name, "repeat_last_n") == 0 ||
                   strcmp(name, "num_predict") == 0;
    double v = strtod(val, &end);
    /* decimal only (strtod also reads hex such as 0x10), and whole numbers where the flag is an integer */
    if (end == val || *end || !isfinite(v) || strpbrk(val, "xX")) { cli_error("'%s' is not a number", val); return 1; }
    if (integer && v != floor(v)) { cli_error("%s must be a whole number, not %s", name, val); return 1; }
    if (p && (v < p->lo || v > p->hi)) {
        cli_error("%s must be in [%g, %g]", name, p->lo, p->hi);
        return 1;
    }
    if (strcmp(name, "temperature") == 0) sp.temperature = (float)v;
    else if (strcmp(name, "top_k") == 0) sp.top_k = (int32_t)v;
    else if (strcmp(name, "top_p") == 0) sp.top_p = (float)v;
    else if (strcmp(name, "min_p") == 0) sp.min_p = (float)v;
    else if (strcmp(name, "typical_p") == 0) sp.typical_p = (float)v;
    else if (strcmp(name, "seed") == 0) sp.seed = gen_seed((long long)v);
    else if (strcmp(name, "repeat_penalty") == 0) sp.repeat_penalty = (float)v;
    else if (strcmp(name, "repeat_last_n") == 0) sp.repeat_last_n = (int32_t)v;
    else if (strcmp(name, "presence_penalty") == 0) sp.presence_penalty = (float)v;
    else if (strcmp(name, "frequency_penalty") == 0) sp.frequency_penalty = (float)v;
    else if (strcmp(name, "num_predict") == 0) {
        o->n_predict = (long)v;
        gen_set_opts(g, o);
        return 0;
    } else { cli_error("unknown parameter '%s' (see /?)", name); return 1; }
    if (gen_set_sampler(g, &sp)) return 1;
    o->sp = sp;
    return 0;
}

static void show(gen_session *g, const gen_opts *o, const char *system) {
    hearth_model *m = gen_model(g);
    printf("  model        %s (%s, %s)\n", hearth_model_name(m), hearth_model_arch(m), hearth_model_ftype_name(m));
    printf("  system       %s\n", system ? system : "(none)");
    printf("  temperature  %g\n  top_k        %d\n  top_p        %g\n  min_p        %g\n", o->sp.temperature,
           o->sp.top_k, o->sp.top_p, o->sp.min_p);
    printf("  typical_p    %g\n  repeat_penalty %g (last %d)\n  seed         %llu\n  num_predict  %ld\n",
           o->sp.typical_p, o->sp.repeat_penalty, o->sp.repeat_last_n, (unsigned long long)o->sp.seed, o->n_predict);
}

/* Handles a slash command; returns 1 to exit the loop. */
static int command(gen_session *g, gen_opts *o, char **system, json_t **conv, char *line) {
    char *save = NULL, *cmd = strtok_r(line, " \t", &save);
    if (strcmp(cmd, "/bye") == 0 || strcmp(cmd, "/exit") == 0) return 1;
    if (strcmp(cmd, "/clear") == 0) {
        json_decref(*conv);
        *conv = run_new_conversation(*system);
        gen_reset(g);
        puts("Cleared the conversation.");
    } else if (strcmp(cmd, "/show") == 0) {
        show(g, o, *system);
    } else if (strcmp(cmd, "/set") == 0) {
        char *what = strtok_r(NULL, " \t", &save);
        if (what && strcmp(what, "parameter") == 0) {
            char *name = strtok_r(NULL, " \t", &save), *val = strtok_r(NULL, " \t", &save);
            if (!name || !val) cli_error("usage: /set parameter NAME VALUE");
            else if (!set_param(g, o, name, val)) printf("Set parameter '%s' to '%s'\n", name, val);
        } else if (what && strcmp(what, "system") == 0) {
            if (run_text_check("the system prompt", save ? save : "", save ? strlen(save) : 0)) return 0;
            free(*system);
            *system = strdup(save ? save : "");
            json_decref(*conv);
            *conv = run_new_conversation(*system);
            gen_reset(g);
            puts("Set the system prompt.");
        } else {
            cli_error("usage: /set parameter NAME VALUE | /set system TEXT");
        }
    } else if (strcmp(cmd, "/?") == 0 || strcmp(cmd, "/help") == 0) {
        repl_help();
    } else {
        cli_error("unknown command '%s' (type /? for help)", cmd);
    }
    return 0;
}

int run_repl(gen_session *g, gen_opts *o, const char *system_in, bool verbose, volatile sig_atomic_t *interrupt) {
    line_buf line = { 0 };
    char *system = system_in ? strdup(system_in) : NULL;
    json_t *conv = run_new_conversation(system);
    int rc = 0;
    char *hist = history_path();
    /* libedit reads characters in the locale's encoding: in the default "C" locale it drops
     * every byte past ASCII, so é or 日本 never reached the model. The chat is UTF-8 text
     * whatever the environment says (an unset LANG is common in containers). */
    const char *loc = setlocale(LC_CTYPE, "");
    if (!loc || !strstr(nl_langinfo(CODESET), "UTF-8")) setlocale(LC_CTYPE, "C.UTF-8");
    using_history();
    stifle_history(1000);
    if (hist) read_history(hist); /* a missing file is a first run */
    puts("Chatting with the model. Type /? for help, /bye to exit.");
    for (;;) {
        int r = read_message(&line, interrupt);
        if (r == 1) { putchar('\n'); break; }
        if (r == 2) { puts("\nUse Ctrl-D or /bye to exit."); continue; }
        if (line.len == 0) continue;
        if (line.s[0] == '/') {
            if (command(g, o, &system, &conv, line.s)) break;
            continue;
        }
        *interrupt = 0;
        bool cut = false;
        run_chat_turn(g, conv, line.s, verbose, &cut);
        if (cut) puts("\n(stopped)");
        *interrupt = 0;
        puts("\n");
    }
    if (hist && write_history(hist) != 0) cli_error("note: cannot save the chat history to %s", hist);
    free(hist);
    json_decref(conv);
    free(system);
    free(line.s);
    return rc;
}
