/* cli_logits.c — `hearth logits MODEL --tokens "1 2 3"`: evaluates the ids as one sequence
 * (or the ids of --tokens-file FILE, '-' = stdin; in n_batch chunks) and writes the logits of every position as little-endian float32,
 * row-major [n_tokens][n_vocab], to --out or stdout. --greedy N then continues greedily
 * for N tokens and prints their ids (stdout with --out, else stderr). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "hearth.h"

/* Whether c separates two ids (spaces, commas, tabs, line ends: CRLF files too). */
static int id_sep(char c) {
    return c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses space/comma separated ids into a malloc'd array. Returns -1 on a bad entry. */
static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    while (*s) {
        while (id_sep(*s)) s++;
        if (!*s) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && !id_sep(*end))) {
            free(ids);
            return -1;
        }
        if (k == cap) {
            int32_t *nb = realloc(ids, 2 * cap * sizeof *ids);
            if (!nb) { free(ids); return -1; }
            ids = nb;
            cap *= 2;
        }
        ids[k++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    *n = k;
    return 0;
}

static int write_floats(FILE *f, const float *v, size_t n) {
    /* the format is little-endian; every platform hearth targets is little-endian */
    return fwrite(v, sizeof(float), n, f) == n ? 0 : -1;
}

static int argmax(const float *v, int32_t n) {
    int best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

typedef struct lg_opts {
    const char *tokens, *tokens_file, *out, *kv;
    long ctx, threads, batch, greedy;
} lg_opts;

/* Runs the sequence and the optional greedy continuation. Returns the exit code. */
static int run_logits(hearth_context *c, const lg_opts *o, const int32_t *ids, size_t n, FILE *f, int32_t n_vocab) {
    hearth_batch b = hearth_batch_init((int32_t)o->batch);
    int code = 1;
    if (b.capacity == 0) { cli_error("logits: out of memory"); return 1; }
    for (size_t i0 = 0; i0 < n; i0 += (size_t)o->batch) {
        size_t i1 = i0 + (size_t)o->batch < n ? i0 + (size_t)o->batch : n;
        hearth_batch_clear(&b);
        for (size_t i = i0; i < i1; i++) hearth_batch_add(&b, ids[i], (int32_t)i, 0, true);
        if (hearth_decode(c, &b)) { cli_error("logits: %s", hearth_context_errmsg(c)); goto out; }
        for (int32_t i = 0; i < b.n_tokens; i++)
            if (write_floats(f, hearth_get_logits(c, i), (size_t)n_vocab)) { cli_error("logits: write failed"); goto out; }
    }
    if (o->greedy > 0) {
        FILE *ido = o->out ? stdout : stderr;
        int32_t next = argmax(hearth_get_logits(c, b.n_tokens - 1), n_vocab);
        for (long g = 0; g < o->greedy; g++) {
            fprintf(ido, "%s%d", g ? " " : "", next);
            if (g + 1 == o->greedy) break;
            hearth_batch_clear(&b);
            hearth_batch_add(&b, next, (int32_t)(n + (size_t)g), 0, true);
            if (hearth_decode(c, &b)) { fputc('\n', ido); cli_error("logits: %s", hearth_context_errmsg(c)); goto out; }
            next = argmax(hearth_get_logits(c, 0), n_vocab);
        }
        fputc('\n', ido);
    }
    code = 0;
out:
    hearth_batch_free(&b);
    return code;
}

/* Opens a temporary file next to `path` (mode 0666 less the umask, as fopen would give),
 * so the file at path changes only when all of it is written (finish_out). *tmp
 * (malloc'd) names it. NULL with errno set on failure. */
static FILE *open_out(const char *path, char **tmp) {
    FILE *f = NULL;
    int fd = -1;
    if (asprintf(tmp, "%s.tmp-XXXXXX", path) < 0) return *tmp = NULL, NULL;
    if ((fd = mkstemp(*tmp)) >= 0) {
        mode_t um = umask(0);
        umask(um);
        if (fchmod(fd, 0666 & ~um) == 0) f = fdopen(fd, "wb");
        if (!f) {
            int e = errno;
            close(fd), unlink(*tmp);
            errno = e;
        }
    }
    if (!f) free(*tmp), *tmp = NULL;
    return f;
}

/* Closes the temporary file and, when ok, renames it over path; otherwise removes it
 * (a failed run leaves an existing file as it was). Returns the exit code. */
static int finish_out(FILE *f, char *tmp, const char *path, int code) {
    if (fclose(f) != 0 && code == 0) {
        cli_error("logits: writing %s failed: %s", path, strerror(errno));
        code = 1;
    }
    if (code == 0 && rename(tmp, path) != 0) {
        cli_error("logits: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        code = 1;
    }
    if (code != 0) unlink(tmp);
    free(tmp);
    return code;
}

int cli_logits(int argc, char **argv) {
    lg_opts o = { NULL, NULL, NULL, "f32", 0, 0, 512, 0 };
    const cli_opt opts[] = {
        { "tokens", 0, CLI_STR, &o.tokens, 0, 0, NULL, "IDS", "token ids, space separated" },
        { "tokens-file", 0, CLI_STR, &o.tokens_file, 0, 0, NULL, "FILE", "read the ids from FILE instead ('-' = stdin)" },
        { "out", 'o', CLI_STR, &o.out, 0, 0, NULL, "FILE", "write logits here instead of stdout" },
        { "kv", 0, CLI_STR, &o.kv, 0, 0, NULL, "TYPE", "KV cache type: f32, f16 or q8_0" },
        { "ctx", 'c', CLI_INT, &o.ctx, 0, 1 << 20, NULL, "N", "context length (0 = model's, capped 4096)" },
        { "threads", 't', CLI_INT, &o.threads, 0, 1024, "HEARTH_THREADS", "N", "CPU threads (0 = all cores)" },
        { "batch", 'b', CLI_INT, &o.batch, 1, 65536, NULL, "N", "tokens per decode call" },
        { "greedy", 0, CLI_INT, &o.greedy, 0, 1 << 20, NULL, "N", "then continue greedily N tokens and print the ids" },
    };
    const cli_spec spec = { "logits", "MODEL", "write the logits of a token sequence (float32)",
                            "Logits of every position are written as little-endian float32, [n_tokens][n_vocab].",
                            opts, sizeof opts / sizeof opts[0], 1, 1 };
    char **pos = NULL, err[512];
    int n_pos = 0, code = 1;
    int32_t *ids = NULL;
    size_t n = 0;
    hearth_model *m = NULL;
    hearth_context *c = NULL;
    FILE *f = NULL;
    char *tmp = NULL, *idtext = NULL;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) { free(pos); return pr == CLI_PARSE_HELP ? 0 : 1; }
    hearth_context_params cp = hearth_context_default_params();
    if (!o.tokens == !o.tokens_file) { cli_error("logits: give the ids with either --tokens or --tokens-file"); goto out; }
    if (o.tokens_file) {
        size_t len = 0;
        if (!(idtext = cli_read_path(o.tokens_file, "logits", "the ids file", (size_t)64 << 20, &len))) goto out;
        if (memchr(idtext, '\0', len)) { cli_error("logits: the ids file '%s' contains a NUL byte", o.tokens_file); goto out; }
    }
    if (parse_ids(o.tokens ? o.tokens : idtext, &ids, &n) || n == 0) {
        cli_error("logits: %s must be a list of non-negative integers", o.tokens ? "--tokens" : "the ids file");
        goto out;
    }
    if (strcmp(o.kv, "f32") == 0) cp.kv_type = HEARTH_KV_F32;
    else if (strcmp(o.kv, "f16") == 0) cp.kv_type = HEARTH_KV_F16;
    else if (strcmp(o.kv, "q8_0") == 0) cp.kv_type = HEARTH_KV_Q8_0;
    else { cli_error("logits: --kv must be f32, f16 or q8_0, got '%s'", o.kv); goto out; }
    hearth_model_params mp = hearth_model_default_params();
    if (hearth_model_load(pos[0], &mp, &m, err, sizeof err)) { cli_error("%s", err); goto out; }
    cp.n_ctx = (uint32_t)o.ctx;
    cp.n_threads = (int32_t)o.threads;
    cp.n_batch = (uint32_t)o.batch;
    if (hearth_context_new(m, &cp, &c, err, sizeof err)) { cli_error("%s", err); goto out; }
    int32_t nv = hearth_model_n_vocab(m);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= nv) { cli_error("logits: token id %d is out of range 0..%d", ids[i], nv - 1); goto out; }
    if (n + (size_t)(o.greedy > 0 ? o.greedy - 1 : 0) > hearth_context_n_ctx(c)) {
        /* the last greedy token is printed, never evaluated: it needs no cell */
        cli_error("logits: %zu tokens do not fit the context of %u", n + (size_t)(o.greedy > 0 ? o.greedy - 1 : 0),
                  hearth_context_n_ctx(c));
        goto out;
    }
    f = o.out ? open_out(o.out, &tmp) : stdout;
    if (!f) { cli_error("logits: cannot write %s: %s", o.out, strerror(errno)); goto out; }
    code = run_logits(c, &o, ids, n, f, nv);
    if (o.out) code = finish_out(f, tmp, o.out, code);
    f = NULL;
    if (code == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        cli_error("logits: cannot write to stdout: %s", strerror(errno));
        code = 1;
    }
out:
    hearth_context_free(c);
    hearth_model_free(m);
    free(ids);
    free(idtext);
    free(pos);
    return code;
}
