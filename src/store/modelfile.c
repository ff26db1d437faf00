/* modelfile.c — parser for Ollama's Modelfile format.
 *
 *   # comment
 *   FROM ./model.gguf | name[:tag]
 *   PARAMETER temperature 0.7
 *   TEMPLATE """{{ ... }}"""       (Jinja for hearth; multi-line with """)
 *   SYSTEM "You are ..."
 *   MESSAGE user Hello
 *   LICENSE """..."""
 *
 * Commands are case-insensitive; an argument is a """triple-quoted""" block (may span
 * lines), a "quoted string" (\" and \\ escapes) or the rest of the line, trimmed. Input is
 * untrusted: sizes and item counts are capped and every error names the line.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store.h"

typedef struct cursor {
    const char *p, *end;
    int line;
} cursor;

/* Every parameter a Modelfile or /api/create may store, its kind (i integer, f number, s
 * string, b boolean) and, for numbers, the range generation accepts (the server's
 * gen_opts_parse reads the same table through store_param_range, so a stored value can
 * never make every later request on the model fail). Parameters hearth reads but does not
 * use (num_keep, mirostat, ...) take any value of their type. */
#define ANY_INT -2147483648.0, 2147483647.0
#define ANY_NUM -1e300, 1e300
static const struct {
    const char *name;
    char kind;
    double lo, hi;
} k_params[] = {
    { "num_ctx", 'i', 0, 1 << 20 }, { "repeat_last_n", 'i', -1, 1e9 }, { "seed", 'i', -1e19, 1.8e19 },
    { "num_predict", 'i', -2, 1 << 24 }, { "top_k", 'i', -1, 1e9 }, { "num_thread", 'i', 0, 1024 },
    { "num_keep", 'i', ANY_INT }, { "num_batch", 'i', ANY_INT }, { "num_gpu", 'i', ANY_INT },
    { "mirostat", 'i', ANY_INT }, { "temperature", 'f', 0, 100 }, { "top_p", 'f', 0, 1 },
    { "min_p", 'f', 0, 1 }, { "typical_p", 'f', 0, 1 }, { "repeat_penalty", 'f', 0, 100 },
    { "presence_penalty", 'f', -100, 100 }, { "frequency_penalty", 'f', -100, 100 },
    { "tfs_z", 'f', ANY_NUM }, { "mirostat_eta", 'f', ANY_NUM }, { "mirostat_tau", 'f', ANY_NUM },
    { "stop", 's', 0, 0 }, { "penalize_newline", 'b', 0, 0 }, { "use_mmap", 'b', 0, 0 }, { "numa", 'b', 0, 0 },
};
#undef ANY_INT
#undef ANY_NUM

char store_param_kind(const char *name) {
    for (size_t i = 0; i < sizeof k_params / sizeof k_params[0]; i++)
        if (strcmp(name, k_params[i].name) == 0) return k_params[i].kind;
    return 0;
}

bool store_param_range(const char *name, double *lo, double *hi) {
    for (size_t i = 0; i < sizeof k_params / sizeof k_params[0]; i++)
        if (strcmp(name, k_params[i].name) == 0 && (k_params[i].kind == 'i' || k_params[i].kind == 'f')) {
            *lo = k_params[i].lo, *hi = k_params[i].hi;
            return true;
        }
    return false;
}

int store_param_check(const char *key, const char *val, hb_err *err) {
    int rc = HEARTH_OK;
    char kind = store_param_kind(key);
    char *end = NULL;
    double lo = 0, hi = 0;
    HB_CHECK(kind, HEARTH_E_INVALID, "unknown PARAMETER '%.64s'", key);
    errno = 0;
    if (kind == 'i' || kind == 'f') {
        double v = kind == 'i' ? (double)strtoll(val, &end, 10) : strtod(val, &end);
        HB_CHECK(*val && !*end && !errno && isfinite(v), HEARTH_E_INVALID, "PARAMETER %s expects %s, got '%.64s'", key,
                 kind == 'i' ? "an integer" : "a number", val);
        store_param_range(key, &lo, &hi);
        HB_CHECK(v >= lo && v <= hi, HEARTH_E_INVALID, "PARAMETER %s %.64s is out of range [%g, %g]", key, val, lo, hi);
    } else if (kind == 'b') {
        HB_CHECK(strcmp(val, "true") == 0 || strcmp(val, "false") == 0, HEARTH_E_INVALID, "PARAMETER %s expects true or false", key);
    } else {
        HB_CHECK(*val, HEARTH_E_INVALID, "PARAMETER %s needs a value", key);
        HB_CHECK(strlen(val) <= STORE_STOP_MAX_LEN, HEARTH_E_INVALID, "PARAMETER %s is longer than %d bytes", key,
                 STORE_STOP_MAX_LEN);
    }
out:
    return rc;
}

static void skip_blank(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
}

/* Reads a word (up to whitespace) into a new string. */
static char *read_word(cursor *c) {
    const char *s = c->p;
    while (c->p < c->end && !isspace((unsigned char)*c->p)) c->p++;
    return hb_strndup(s, (size_t)(c->p - s));
}

/* Reads an argument: """block""", "quoted" or the rest of the line. */
static int read_arg(cursor *c, char **out, hb_err *err) {
    int rc = HEARTH_OK;
    int start_line = c->line;
    *out = NULL;
    if (c->end - c->p >= 3 && memcmp(c->p, "\"\"\"", 3) == 0) {
        const char *s = c->p + 3, *q = s;
        while (q + 3 <= c->end && memcmp(q, "\"\"\"", 3) != 0) {
            if (*q == '\n') c->line++;
            q++;
        }
        HB_CHECK(q + 3 <= c->end, HEARTH_E_INVALID, "Modelfile line %d: unterminated \"\"\" block", start_line);
        *out = hb_strndup(s, (size_t)(q - s));
        c->p = q + 3;
    } else if (c->p < c->end && *c->p == '"') {
        char *buf = malloc((size_t)(c->end - c->p) + 1);
        size_t n = 0;
        HB_CHECK(buf, HEARTH_E_NOMEM, "out of memory");
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\n') c->line++;
            if (*c->p == '\\' && c->p + 1 < c->end && (c->p[1] == '"' || c->p[1] == '\\')) c->p++;
            buf[n++] = *c->p++;
        }
        if (c->p >= c->end) {
            free(buf);
            HB_CHECK(false, HEARTH_E_INVALID, "Modelfile line %d: unterminated quoted string", start_line);
        }
        c->p++;
        buf[n] = '\0';
        *out = buf;
    } else {
        const char *s = c->p;
        while (c->p < c->end && *c->p != '\n') c->p++;
        const char *e = c->p;
        while (e > s && isspace((unsigned char)e[-1])) e--;
        *out = hb_strndup(s, (size_t)(e - s));
    }
    HB_CHECK(*out, HEARTH_E_NOMEM, "out of memory");
    /* Nothing but blanks may follow a quoted argument on its line. */
    skip_blank(c);
    HB_CHECK(c->p >= c->end || *c->p == '\n' || *c->p == '#', HEARTH_E_INVALID,
             "Modelfile line %d: unexpected text after the argument", c->line);
out:
    return rc;
}

/* store_param_check with the Modelfile's line number in front of its message. */
static int check_param(const char *key, const char *val, int line, hb_err *err) {
    int rc = store_param_check(key, val, err);
    if (rc) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        hb_err_clear(err); /* hb_fail keeps a first error */
        rc = hb_fail(err, rc, "Modelfile line %d: %s", line, msg);
    }
    return rc;
}

static int push_kv(store_kv **arr, int *n, char *k, char *v, hb_err *err) {
    if (*n >= STORE_MODELFILE_MAX_ITEMS) {
        free(k), free(v);
        return hb_fail(err, HEARTH_E_INVALID, "Modelfile has more than %d PARAMETER/MESSAGE lines", STORE_MODELFILE_MAX_ITEMS);
    }
    store_kv *na = realloc(*arr, sizeof **arr * (size_t)(*n + 1));
    if (!na) {
        free(k), free(v);
        return hb_fail(err, HEARTH_E_NOMEM, "out of memory");
    }
    *arr = na;
    na[*n].key = k;
    na[*n].value = v;
    (*n)++;
    return HEARTH_OK;
}

/* Sets a single-valued field; a repeated command replaces the earlier value. */
static void set_once(char **field, char *v) {
    free(*field);
    *field = v;
}

static int parse_command(cursor *c, const char *cmd, store_modelfile *mf, hb_err *err) {
    int rc = HEARTH_OK, line = c->line;
    char *key = NULL, *val = NULL;
    bool two = strcasecmp(cmd, "PARAMETER") == 0 || strcasecmp(cmd, "MESSAGE") == 0;
    if (two) {
        key = read_word(c);
        HB_CHECK(key && *key, HEARTH_E_INVALID, "Modelfile line %d: %s needs a name and a value", line, cmd);
        for (char *k = key; *k; k++) *k = (char)tolower((unsigned char)*k);
        skip_blank(c);
    }
    if ((rc = read_arg(c, &val, err))) goto out;
    if (strcasecmp(cmd, "FROM") == 0) {
        HB_CHECK(*val, HEARTH_E_INVALID, "Modelfile line %d: FROM needs a model name or file", line);
        set_once(&mf->from, val), val = NULL;
    } else if (strcasecmp(cmd, "TEMPLATE") == 0) {
        set_once(&mf->tmpl, val), val = NULL;
    } else if (strcasecmp(cmd, "SYSTEM") == 0) {
        set_once(&mf->system, val), val = NULL;
    } else if (strcasecmp(cmd, "LICENSE") == 0) {
        set_once(&mf->license, val), val = NULL;
    } else if (strcasecmp(cmd, "PARAMETER") == 0) {
        if ((rc = check_param(key, val, line, err))) goto out;
        rc = push_kv(&mf->params, &mf->n_params, key, val, err);
        key = val = NULL;
    } else if (strcasecmp(cmd, "MESSAGE") == 0) {
        HB_CHECK(strcmp(key, "system") == 0 || strcmp(key, "user") == 0 || strcmp(key, "assistant") == 0,
                 HEARTH_E_INVALID, "Modelfile line %d: MESSAGE role must be system, user or assistant", line);
        HB_CHECK(*val, HEARTH_E_INVALID, "Modelfile line %d: MESSAGE %s needs a text", line, key);
        rc = push_kv(&mf->messages, &mf->n_messages, key, val, err);
        key = val = NULL;
    } else if (strcasecmp(cmd, "ADAPTER") == 0) {
        HB_CHECK(false, HEARTH_E_UNSUPPORTED, "Modelfile line %d: ADAPTER is not supported yet", line);
    } else {
        HB_CHECK(false, HEARTH_E_INVALID, "Modelfile line %d: unknown command '%.32s'", line, cmd);
    }
out:
    free(key);
    free(val);
    return rc;
}

int store_modelfile_parse(const char *text, size_t len, store_modelfile *mf, hb_err *err) {
    int rc = HEARTH_OK;
    char *cmd = NULL;
    memset(mf, 0, sizeof *mf);
    HB_CHECK(len <= STORE_MODELFILE_MAX, HEARTH_E_INVALID, "Modelfile is larger than %u bytes", STORE_MODELFILE_MAX);
    HB_CHECK(memchr(text, '\0', len) == NULL, HEARTH_E_INVALID, "Modelfile contains a NUL byte");
    cursor c = { text, text + len, 1 };
    while (c.p < c.end) {
        skip_blank(&c);
        if (c.p >= c.end) break;
        if (*c.p == '\n') {
            c.p++, c.line++;
            continue;
        }
        if (*c.p == '#') {
            while (c.p < c.end && *c.p != '\n') c.p++;
            continue;
        }
        cmd = read_word(&c);
        HB_CHECK(cmd, HEARTH_E_NOMEM, "out of memory");
        skip_blank(&c);
        if ((rc = parse_command(&c, cmd, mf, err))) goto out;
        free(cmd), cmd = NULL;
    }
    HB_CHECK(mf->from, HEARTH_E_INVALID, "Modelfile has no FROM line");
out:
    free(cmd);
    if (rc) store_modelfile_free(mf);
    return rc;
}

void store_modelfile_free(store_modelfile *mf) {
    if (!mf) return;
    free(mf->from), free(mf->tmpl), free(mf->system), free(mf->license);
    for (int i = 0; i < mf->n_params; i++) free(mf->params[i].key), free(mf->params[i].value);
    for (int i = 0; i < mf->n_messages; i++) free(mf->messages[i].key), free(mf->messages[i].value);
    free(mf->params), free(mf->messages);
    memset(mf, 0, sizeof *mf);
}
