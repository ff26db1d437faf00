/* opts.c — option-table parser and --help generator shared by every verb. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_log_stderr(void *ud, hearth_log_level lvl, const char *msg) {
    (void)ud;
    fprintf(stderr, "hearth: %s%s\n", lvl == HEARTH_LOG_ERROR ? "error: " : lvl == HEARTH_LOG_WARN ? "note: " : "", msg);
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hearth: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

char *cli_read_stream(FILE *f, const char *verb, const char *what, size_t max, size_t *len) {
    size_t cap = 0, n = 0;
    char *buf = NULL, *out = NULL;
    *len = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                cli_error("%s: %s is larger than %zu MiB", verb, what, max >> 20);
                goto out;
            }
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc + 1);
            if (!nb) {
                cli_error("%s: out of memory reading %s", verb, what);
                goto out;
            }
            buf = nb, cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (n > max) {
        cli_error("%s: %s is larger than %zu MiB", verb, what, max >> 20);
        goto out;
    }
    if (ferror(f)) {
        if (errno != EINTR) cli_error("%s: cannot read %s: %s", verb, what, strerror(errno));
        goto out;
    }
    buf[n] = '\0';
    *len = n;
    out = buf;
    buf = NULL;
out:
    free(buf);
    return out;
}

char *cli_read_path(const char *path, const char *verb, const char *what, size_t max, size_t *len) {
    char *out = NULL;
    *len = 0;
    if (strcmp(path, "-") == 0) return cli_read_stream(stdin, verb, what, max, len);
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open %s '%s': %s", verb, what, path, strerror(errno));
        return NULL;
    }
    out = cli_read_stream(f, verb, what, max, len);
    fclose(f);
    return out;
}

static int set_value(const cli_spec *spec, const cli_opt *o, const char *val, const char *src) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG: /* --flag, or --flag=VALUE with a boolean value */
        if (!val || !strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on")) {
            *(bool *)o->dest = true;
        } else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off")) {
            *(bool *)o->dest = false;
        } else {
            cli_error("%s: %s takes no value, or true/false; got '%s'", spec->verb, src, val);
            return -1;
        }
        return 0;
    case CLI_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < o->min || v > o->max) {
            cli_error("%s: %s expects an integer in [%.0f, %.0f], got '%s'", spec->verb, src, o->min, o->max, val);
            return -1;
        }
        *(long *)o->dest = v;
        return 0;
    }
    case CLI_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || isnan(v) || v < o->min || v > o->max) {
            cli_error("%s: %s expects a number in [%g, %g], got '%s'", spec->verb, src, o->min, o->max, val);
            return -1;
        }
        *(double *)o->dest = v;
        return 0;
    }
    case CLI_STR:
        *(const char **)o->dest = val;
        return 0;
    case CLI_STR_MULTI: {
        cli_strlist *l = o->dest;
        if (l->n >= (int)(sizeof l->items / sizeof l->items[0])) {
            cli_error("%s: too many %s values", spec->verb, src);
            return -1;
        }
        l->items[l->n++] = val;
        return 0;
    }
    }
    return -1;
}

static const cli_opt *find_long(const cli_spec *s, const char *name, size_t len) {
    for (size_t i = 0; i < s->n_opts; i++) {
        if (strlen(s->opts[i].name) == len && strncmp(s->opts[i].name, name, len) == 0) return &s->opts[i];
    }
    return NULL;
}

static const cli_opt *find_short(const cli_spec *s, char c) {
    for (size_t i = 0; i < s->n_opts; i++) {
        if (s->opts[i].short_name && s->opts[i].short_name == c) return &s->opts[i];
    }
    return NULL;
}

static int apply_env(const cli_spec *spec) {
    for (size_t i = 0; i < spec->n_opts; i++) {
        const cli_opt *o = &spec->opts[i];
        const char *v = o->env ? getenv(o->env) : NULL;
        if (!v || !*v) continue;
        if (o->kind == CLI_FLAG) {
            *(bool *)o->dest = strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
        } else if (set_value(spec, o, v, o->env) != 0) {
            return -1;
        }
    }
    return 0;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, char ***pos, int *n_pos) {
    int rc = CLI_PARSE_OK;
    char **p = calloc((size_t)(argc > 0 ? argc : 1), sizeof *p);
    int np = 0;
    bool only_pos = false;
    *pos = NULL;
    *n_pos = 0;
    if (!p) return CLI_PARSE_ERROR;
    if (apply_env(spec) != 0) { rc = CLI_PARSE_ERROR; goto out; }
    for (int i = 1; i < argc && rc == CLI_PARSE_OK; i++) {
        const char *a = argv[i];
        const cli_opt *o = NULL;
        const char *val = NULL;
        if (only_pos || a[0] != '-' || a[1] == '\0') { p[np++] = argv[i]; continue; }
        if (strcmp(a, "--") == 0) { only_pos = true; continue; }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { cli_print_help(spec); rc = CLI_PARSE_HELP; break; }
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            o = find_long(spec, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
            if (eq) val = eq + 1;
        } else if (a[2] == '\0') {
            o = find_short(spec, a[1]);
        }
        if (!o) {
            cli_error("%s: unknown option '%s' (see 'hearth %s --help')", spec->verb, a, spec->verb);
            rc = CLI_PARSE_ERROR;
            break;
        }
        if (o->kind != CLI_FLAG && !val) {
            if (i + 1 >= argc) {
                cli_error("%s: option '%s' needs a value", spec->verb, a);
                rc = CLI_PARSE_ERROR;
                break;
            }
            val = argv[++i];
        }
        if (set_value(spec, o, val, a) != 0) rc = CLI_PARSE_ERROR;
    }
    if (rc == CLI_PARSE_OK && (np < spec->min_pos || (spec->max_pos >= 0 && np > spec->max_pos))) {
        cli_error("%s: expected %s (see 'hearth %s --help')", spec->verb, spec->args && *spec->args ? spec->args : "no arguments",
                  spec->verb);
        rc = CLI_PARSE_ERROR;
    }
out:
    if (rc == CLI_PARSE_OK) {
        *pos = p;
        *n_pos = np;
    } else {
        free(p);
    }
    return rc;
}

void cli_print_help(const cli_spec *spec) {
    printf("Usage: hearth %s [options]%s%s\n\n%s\n", spec->verb, spec->args ? " " : "",
           spec->args ? spec->args : "", spec->summary);
    if (spec->n_opts) printf("\nOptions:\n");
    for (size_t i = 0; i < spec->n_opts; i++) {
        const cli_opt *o = &spec->opts[i];
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-28s %s", left, o->help);
        switch (o->kind) {
        case CLI_INT: /* a default below the bound is a sentinel ("auto"): the help says it */
            if (*(long *)o->dest >= o->min) printf(" (default %ld)", *(long *)o->dest);
            break;
        case CLI_FLOAT: printf(" (default %g)", *(double *)o->dest); break;
        case CLI_STR:
            if (*(const char **)o->dest) printf(" (default %s)", *(const char **)o->dest);
            break;
        default: break;
        }
        if (o->env) printf(" [env %s]", o->env);
        printf("\n");
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
    if (spec->details) printf("\n%s\n", spec->details);
}
