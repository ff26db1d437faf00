/* cli.h — the `hearth` command: verb table and the option-table parser every verb uses.
 *
 * One table per verb drives its flags, environment variables, bounds and --help text, so
 * documentation and behaviour cannot drift apart. The CLI is a client of include/hearth.h
 * only (plus this header).
 */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <stdio.h>

#include "hearth.h"

typedef enum cli_opt_kind {
    CLI_FLAG,      /* bool*, set true when present */
    CLI_INT,       /* long*, bounded by [min, max] */
    CLI_FLOAT,     /* double*, bounded by [min, max] */
    CLI_STR,       /* const char** (borrowed from argv/env) */
    CLI_STR_MULTI  /* cli_strlist*: repeatable */
} cli_opt_kind;

typedef struct cli_strlist {
    const char *items[64];
    int n;
} cli_strlist;

typedef struct cli_opt {
    const char *name;     /* long name without dashes: "threads" -> --threads */
    char short_name;      /* 't' -> -t, or 0 */
    cli_opt_kind kind;
    void *dest;
    double min, max;      /* bounds for CLI_INT / CLI_FLOAT */
    const char *env;      /* environment variable read before argv, or NULL */
    const char *metavar;  /* shown in help: --threads N */
    const char *help;
} cli_opt;

typedef struct cli_spec {
    const char *verb;     /* "run" */
    const char *args;     /* positional synopsis: "MODEL [PROMPT]" */
    const char *summary;  /* one line */
    const char *details;  /* optional paragraph after the options, or NULL */
    const cli_opt *opts;
    size_t n_opts;
    int min_pos, max_pos; /* positional argument count bounds (max -1 = unbounded) */
} cli_spec;

enum { CLI_PARSE_OK = 0, CLI_PARSE_ERROR = 1, CLI_PARSE_HELP = 2 };

/* Parses argv[1..argc) (argv[0] is the verb). Destinations keep their pre-set values as
 * defaults (shown by --help). Positional arguments are returned in pos (borrowed pointers
 * into argv; array caller frees with free()). On error prints one message to stderr. */
int cli_parse(const cli_spec *spec, int argc, char **argv, char ***pos, int *n_pos);
void cli_print_help(const cli_spec *spec);

/* Prints "hearth: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads all of f into a NUL-terminated buffer (caller frees; *len: the bytes read, which
 * may include NULs). At most max bytes: larger input, a read error or no memory print one
 * message, "<verb>: <what> is larger than N MiB" and the like, and return NULL; a read cut
 * by a signal (EINTR) returns NULL without a message, for the caller's interrupt handling. */
char *cli_read_stream(FILE *f, const char *verb, const char *what, size_t max, size_t *len);
/* cli_read_stream of the file at path ("-": stdin); one that cannot be opened is named:
 * "<verb>: cannot open <what> '<path>': <reason>". */
char *cli_read_path(const char *path, const char *verb, const char *what, size_t max, size_t *len);
/* A model's log callback (hearth_model_params.log): library messages go to stderr as
 * "hearth: note: ..." for warnings (e.g. "no usable GPU ...; running on the CPU") and
 * "hearth: error: ..." for errors; ud is unused. */
void cli_log_stderr(void *ud, hearth_log_level lvl, const char *msg);

/* Verb entry points: argc/argv start at the verb; return the process exit code. */
typedef int (*cli_verb_fn)(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_detokenize(int argc, char **argv);
int cli_template(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_logits(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_list(int argc, char **argv);
int cli_ps(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_cp(int argc, char **argv);
int cli_stop(int argc, char **argv);
int cli_create(int argc, char **argv);
int cli_pull(int argc, char **argv);

#endif
