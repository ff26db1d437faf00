/* cli_bench.c — `hearth bench`: prompt-processing and generation speed, measured the way
 * llama-bench measures them so the numbers compare directly:
 *   ppP   one decode of P prompt tokens (in n_batch chunks) from an empty cache, t/s = P / time
 *   tgN   N single-token decodes from an empty cache, t/s = N / time
 *   ppP+tgN  both in one timed run, t/s = (P + N) / time
 *   tgN xS   (--parallel S) S sequences from an empty cache, N decode steps of one token of
 *            each in one batch (as a server decodes its parallel requests), t/s = S * N / time:
 *            the figure llama-batched-bench calls S_TG (-npp 1 -ntg N -npl S)
 * Each test runs once as warm-up, then -r times; tokens are pseudo-random ids (fixed seed).
 * Generation tests also report the weight bandwidth they achieved (weight bytes read per
 * token x t/s) and its fraction of the read bandwidth of the memory the weights sit in —
 * the GPU's (measured once on the device) when every layer ran there, the machine's
 * (measured once, same thread count) when the CPU ran them; a split has no single roofline.
 * --backend / --gpu-layers (-ngl) choose the placement as for `hearth run`.
 * Output: a markdown table (default) or `-o json`, an array of objects with llama-bench's
 * field names plus hearth's roofline fields.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "hearth.h"

#define BENCH_MAX_REPS 1000

/* The last library message printed (bench_log). */
typedef struct bench_note {
    char text[512];
} bench_note;

#define BENCH_MAX_PAR 8      /* --parallel values */
#define BENCH_MAX_SEQ 256    /* sequences in one parallel test */

typedef struct bench_opts {
    cli_strlist models;
    long n_prompt, n_gen, threads, reps, bw_mib, gpu_layers;
    const char *pg, *out, *backend, *parallel;
    bench_note *note; /* not owned: the caller's, for the whole run */
} bench_opts;

typedef struct bench_test {
    int n_prompt, n_gen, n_seq; /* n_seq > 1: a parallel test (n_gen steps of n_seq tokens) */
    char name[48];
} bench_test;

typedef struct bench_result {
    double samples_ns[BENCH_MAX_REPS];
    int n;
    double avg_ns, sd_ns, avg_ts, sd_ts;
} bench_result;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t g_seed = 1;
static hearth_token rand_token(int32_t n_vocab) {
    g_seed = g_seed * 1103515245u + 12345u;
    return (hearth_token)((g_seed >> 8) % (uint32_t)n_vocab);
}

/* Decodes n prompt tokens starting at position *pos, in chunks of the batch capacity. */
static int run_prompt(hearth_context *c, hearth_batch *b, int n, int32_t *pos, int32_t n_vocab) {
    for (int done = 0; done < n;) {
        int k = n - done < b->capacity ? n - done : b->capacity;
        hearth_batch_clear(b);
        for (int i = 0; i < k; i++) hearth_batch_add(b, rand_token(n_vocab), (*pos)++, 0, done + i == n - 1);
        if (hearth_decode(c, b) != HEARTH_OK) return -1;
        done += k;
    }
    return 0;
}

static int run_gen(hearth_context *c, hearth_batch *b, int n, int32_t *pos, int32_t n_vocab) {
    for (int i = 0; i < n; i++) {
        hearth_batch_clear(b);
        hearth_batch_add(b, rand_token(n_vocab), (*pos)++, 0, true);
        if (hearth_decode(c, b) != HEARTH_OK) return -1;
    }
    return 0;
}

/* Tokens a test's timed run processes. */
static double test_tokens(const bench_test *t) {
    return t->n_seq > 1 ? (double)t->n_seq * t->n_gen : (double)t->n_prompt + t->n_gen;
}

/* n steps, each one token of every sequence 0..n_seq-1 in one batch (positions from *pos). */
static int run_par(hearth_context *c, hearth_batch *b, int n, int n_seq, int32_t *pos, int32_t n_vocab) {
    for (int i = 0; i < n; i++, (*pos)++) {
        hearth_batch_clear(b);
        for (int s = 0; s < n_seq; s++) hearth_batch_add(b, rand_token(n_vocab), *pos, s, true);
        if (hearth_decode(c, b) != HEARTH_OK) return -1;
    }
    return 0;
}

/* The timed work of one repetition (rep < 0: the warm-up, shortened). */
static int run_once(hearth_context *c, hearth_batch *b, const bench_test *t, int rep, int32_t n_vocab) {
    int32_t pos = 0;
    if (t->n_seq > 1) return run_par(c, b, rep < 0 ? 1 : t->n_gen, t->n_seq, &pos, n_vocab);
    if (t->n_prompt && run_prompt(c, b, rep < 0 && t->n_prompt > 512 ? 512 : t->n_prompt, &pos, n_vocab)) return -1;
    return t->n_gen ? run_gen(c, b, rep < 0 ? 1 : t->n_gen, &pos, n_vocab) : 0;
}

static int run_test(hearth_model *m, const bench_test *t, const bench_opts *o, bench_result *r, hearth_placement *pl) {
    int rc = 1;
    char err[512] = "";
    hearth_context *c = NULL;
    hearth_context_params cp = hearth_context_default_params();
    int32_t n_vocab = hearth_model_n_vocab(m);
    cp.n_ctx = (uint32_t)(t->n_prompt + t->n_gen + 1);
    cp.n_batch = (uint32_t)(t->n_prompt > 512 ? t->n_prompt : 512);
    cp.n_seq_max = (uint32_t)(t->n_seq > 1 ? t->n_seq : 1);
    cp.n_threads = (int32_t)o->threads;
    hearth_batch b = hearth_batch_init((int32_t)cp.n_batch);
    if (b.capacity == 0) { cli_error("bench: out of memory"); goto out; }
    if (hearth_context_new(m, &cp, &c, err, sizeof err) != HEARTH_OK) { cli_error("bench: %s", err); goto out; }
    hearth_context_placement(c, pl);
    for (int rep = -1; rep < (int)o->reps; rep++) { /* rep -1: warm-up */
        hearth_kv_clear(c);
        uint64_t t0 = now_ns();
        if (run_once(c, &b, t, rep, n_vocab)) {
            cli_error("bench: decode failed: %s", hearth_context_errmsg(c));
            goto out;
        }
        if (rep >= 0) r->samples_ns[r->n++] = (double)(now_ns() - t0);
    }
    double toks = test_tokens(t), s_ns = 0, s_ts = 0;
    for (int i = 0; i < r->n; i++) s_ns += r->samples_ns[i], s_ts += toks * 1e9 / r->samples_ns[i];
    r->avg_ns = s_ns / r->n, r->avg_ts = s_ts / r->n;
    double v_ns = 0, v_ts = 0;
    for (int i = 0; i < r->n; i++) {
        double ts = toks * 1e9 / r->samples_ns[i];
        v_ns += (r->samples_ns[i] - r->avg_ns) * (r->samples_ns[i] - r->avg_ns);
        v_ts += (ts - r->avg_ts) * (ts - r->avg_ts);
    }
    r->sd_ns = r->n > 1 ? sqrt(v_ns / (r->n - 1)) : 0;
    r->sd_ts = r->n > 1 ? sqrt(v_ts / (r->n - 1)) : 0;
    rc = 0;
out:
    hearth_context_free(c);
    hearth_batch_free(&b);
    return rc;
}

static void fmt_size(char *buf, size_t cap, uint64_t bytes) {
    double g = (double)bytes / (1024.0 * 1024.0 * 1024.0);
    if (g >= 1) snprintf(buf, cap, "%.2f GiB", g);
    else snprintf(buf, cap, "%.2f MiB", (double)bytes / (1024.0 * 1024.0));
}

static void fmt_params(char *buf, size_t cap, uint64_t n) {
    if (n >= 1000000000ull) snprintf(buf, cap, "%.2f B", (double)n / 1e9);
    else snprintf(buf, cap, "%.2f M", (double)n / 1e6);
}

typedef struct bench_row {
    const char *path;
    char type[96];
    uint64_t size, params, bytes_tok;
    const bench_test *t;
    bench_result r;
    hearth_placement pl;
} bench_row;

/* The two read bandwidths a row may be measured against (0 = not measured). */
typedef struct bench_bw {
    double cpu, gpu;
    char gpu_name[128];
} bench_bw;

/* "CPU", "CUDA" (every layer on the GPU) or "CUDA+CPU" (split). */
static void backend_label(const hearth_placement *pl, char *buf, size_t cap) {
    char up[16];
    size_t i = 0;
    for (; pl->backend[i] && i + 1 < sizeof up; i++) up[i] = (char)(pl->backend[i] >= 'a' && pl->backend[i] <= 'z' ? pl->backend[i] - 32 : pl->backend[i]);
    up[i] = 0;
    if (pl->n_gpu_layers == 0) snprintf(buf, cap, "CPU");
    else if (pl->n_gpu_layers == pl->n_layer) snprintf(buf, cap, "%s", up);
    else snprintf(buf, cap, "%s+CPU", up);
}

/* The roofline of a row: the bandwidth of where its weights are, 0 for a split. */
static double row_bw(const bench_row *w, const bench_bw *bw) {
    if (w->pl.n_gpu_layers == 0) return bw->cpu;
    return w->pl.n_gpu_layers == w->pl.n_layer ? bw->gpu : 0;
}

/* Weight bytes read per second in a generation row (0 for prompt rows): a step reads the
 * weights once whatever the number of sequences it decodes. */
static double row_weight_gbps(const bench_row *w) {
    if (w->t->n_prompt != 0 || !w->bytes_tok) return 0;
    return (double)w->bytes_tok * w->r.avg_ts / (w->t->n_seq > 1 ? w->t->n_seq : 1) / 1e9;
}

static void print_md_header(void) {
    printf("| %-28s | %10s | %10s | %-10s | %7s | %13s | %20s | %11s | %8s |\n", "model", "size", "params", "backend",
           "threads", "test", "t/s", "weight GB/s", "roofline");
    printf("| %.28s | %.10s | %.10s | %.10s | %.7s | %.13s | %.20s | %.11s | %.8s |\n",
           "-----------------------------", "---------:", "---------:", "----------", "------:", "------------:",
           "-------------------:", "----------:", "-------:");
}

static void print_md_row(const bench_row *w, long threads, const bench_bw *bws) {
    char sz[32], pr[32], ts[48], gb[24] = "", rf[24] = "", be[24];
    double bw = row_bw(w, bws);
    backend_label(&w->pl, be, sizeof be);
    fmt_size(sz, sizeof sz, w->size);
    fmt_params(pr, sizeof pr, w->params);
    snprintf(ts, sizeof ts, "%.2f ± %.2f", w->r.avg_ts, w->r.sd_ts);
    double g = row_weight_gbps(w);
    if (g > 0) {
        snprintf(gb, sizeof gb, "%.1f", g);
        if (bw > 0) snprintf(rf, sizeof rf, "%.0f%%", 100.0 * g / bw);
    }
    printf("| %-28.28s | %10s | %10s | %-10s | %7ld | %13s | %20s | %11s | %8s |\n", w->type, sz, pr, be, threads,
           w->t->name, ts, gb, rf);
    fflush(stdout);
}

static json_t *row_json(const bench_row *w, long threads, const bench_bw *bws) {
    json_t *o = json_object(), *sns = json_array(), *sts = json_array();
    double bw = row_bw(w, bws);
    char be[24];
    backend_label(&w->pl, be, sizeof be);
    double toks = test_tokens(w->t), g = row_weight_gbps(w);
    for (int i = 0; i < w->r.n; i++) {
        json_array_append_new(sns, json_integer((json_int_t)w->r.samples_ns[i]));
        json_array_append_new(sts, json_real(toks * 1e9 / w->r.samples_ns[i]));
    }
    json_object_set_new(o, "model_filename", json_string(w->path));
    json_object_set_new(o, "model_type", json_string(w->type));
    json_object_set_new(o, "model_size", json_integer((json_int_t)w->size));
    json_object_set_new(o, "model_n_params", json_integer((json_int_t)w->params));
    json_object_set_new(o, "backends", json_string(be));
    json_object_set_new(o, "n_gpu_layers", json_integer(w->pl.n_gpu_layers));
    if (w->pl.device[0]) json_object_set_new(o, "gpu_info", json_string(w->pl.device));
    json_object_set_new(o, "cpu_isa", json_string(hearth_cpu_isa()));
    json_object_set_new(o, "n_threads", json_integer(threads));
    json_object_set_new(o, "type_k", json_string("f16"));
    json_object_set_new(o, "type_v", json_string("f16"));
    json_object_set_new(o, "n_prompt", json_integer(w->t->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(w->t->n_gen));
    json_object_set_new(o, "n_parallel", json_integer(w->t->n_seq > 1 ? w->t->n_seq : 1));
    json_object_set_new(o, "avg_ns", json_integer((json_int_t)w->r.avg_ns));
    json_object_set_new(o, "stddev_ns", json_integer((json_int_t)w->r.sd_ns));
    json_object_set_new(o, "avg_ts", json_real(w->r.avg_ts));
    json_object_set_new(o, "stddev_ts", json_real(w->r.sd_ts));
    json_object_set_new(o, "samples_ns", sns);
    json_object_set_new(o, "samples_ts", sts);
    if (g > 0) {
        json_object_set_new(o, "weight_bytes_per_token", json_integer((json_int_t)w->bytes_tok));
        json_object_set_new(o, "weight_gbps", json_real(g));
        if (bw > 0) {
            json_object_set_new(o, "read_bw_gbps", json_real(bw));
            json_object_set_new(o, "read_bw_of", json_string(w->pl.n_gpu_layers ? "gpu" : "cpu"));
            json_object_set_new(o, "roofline_frac", json_real(g / bw));
        }
    }
    return o;
}

/* --parallel S[,S...]: one tgN xS test per count (2..BENCH_MAX_SEQ, at most BENCH_MAX_PAR). */
static int add_parallel(const bench_opts *o, bench_test *tests, int *n) {
    const char *p = o->parallel;
    int k = 0, bad = o->n_gen <= 0; /* 1: no generation steps, 2: a malformed list */
    while (!bad && (k == 0 || *p)) { /* at least one count; a comma must be followed by one */
        char *end;
        long v = strtol(p, &end, 10);
        bad = end == p || v < 2 || v > BENCH_MAX_SEQ || (*end && (*end != ',' || !end[1])) || ++k > BENCH_MAX_PAR
                  ? 2 : 0;
        if (!bad) {
            tests[*n] = (bench_test){ 0, (int)o->n_gen, (int)v, "" };
            snprintf(tests[*n].name, sizeof tests[*n].name, "tg%ld x%ld", o->n_gen, v);
            (*n)++;
            p = *end ? end + 1 : end;
        }
    }
    if (bad == 1) cli_error("bench: --parallel needs generation steps (-n N > 0)");
    else if (bad) cli_error("bench: --parallel wants up to %d comma-separated counts 2..%d, got '%s'", BENCH_MAX_PAR,
                            BENCH_MAX_SEQ, o->parallel);
    return bad ? -1 : 0;
}

static int make_tests(const bench_opts *o, bench_test *tests, int *n) {
    *n = 0;
    if (o->n_prompt > 0) {
        tests[*n] = (bench_test){ (int)o->n_prompt, 0, 1, "" };
        snprintf(tests[*n].name, sizeof tests[*n].name, "pp%ld", o->n_prompt);
        (*n)++;
    }
    if (o->n_gen > 0) {
        tests[*n] = (bench_test){ 0, (int)o->n_gen, 1, "" };
        snprintf(tests[*n].name, sizeof tests[*n].name, "tg%ld", o->n_gen);
        (*n)++;
    }
    if (o->pg) {
        long p, g;
        char tail;
        if (sscanf(o->pg, "%ld,%ld%c", &p, &g, &tail) != 2 || p < 0 || g < 0 || p > 65536 || g > 65536 || p + g == 0) {
            cli_error("bench: --pg wants P,N (two counts 0..65536, not both 0), got '%s'", o->pg);
            return -1;
        }
        tests[*n] = (bench_test){ (int)p, (int)g, 1, "" };
        snprintf(tests[*n].name, sizeof tests[*n].name, "pp%ld+tg%ld", p, g);
        (*n)++;
    }
    if (o->parallel && add_parallel(o, tests, n)) return -1;
    if (*n == 0) {
        cli_error("bench: nothing to measure (-p 0 -n 0 and no --pg)");
        return -1;
    }
    return 0;
}

/* "llama Q4_K_M": architecture and the file's declared quantization mix (general.file_type,
 * llama.cpp's numbering), falling back to the dominant tensor type. */
static void model_type(hearth_model *m, char *buf, size_t cap) {
    static const struct { int id; const char *name; } k[] = {
        { 0, "F32" }, { 1, "F16" }, { 2, "Q4_0" }, { 3, "Q4_1" }, { 7, "Q8_0" }, { 8, "Q5_0" }, { 9, "Q5_1" },
        { 10, "Q2_K" }, { 12, "Q3_K_M" }, { 14, "Q4_K_S" }, { 15, "Q4_K_M" }, { 16, "Q5_K_S" }, { 17, "Q5_K_M" },
        { 18, "Q6_K" }, { 30, "IQ4_XS" }, { 32, "BF16" },
    };
    const char *name = hearth_model_ftype_name(m);
    char *ft = hearth_model_meta_text(m, "general.file_type");
    if (ft) {
        int id = atoi(ft);
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
            if (k[i].id == id) name = k[i].name;
    }
    snprintf(buf, cap, "%s %s", hearth_model_arch(m), name);
    hearth_free(ft);
}

/* cli_log_stderr without repeats: every test makes a context, and each would say again
 * that the GPU asked for is not usable. ud: the bench's last message (bench_note). */
static void bench_log(void *ud, hearth_log_level lvl, const char *msg) {
    bench_note *last = ud;
    if (strncmp(last->text, msg, sizeof last->text - 1) == 0) return;
    snprintf(last->text, sizeof last->text, "%s", msg);
    cli_log_stderr(NULL, lvl, msg);
}

static int bench_model(const char *path, const bench_test *tests, int n_tests, const bench_opts *o,
                       const bench_bw *bw, json_t *arr) {
    char err[512] = "";
    hearth_model *m = NULL;
    hearth_model_params mp = hearth_model_default_params();
    mp.backend = o->backend;
    mp.n_gpu_layers = (int32_t)o->gpu_layers;
    mp.log = bench_log; /* a note when the backend asked for is not usable */
    mp.log_user_data = o->note;
    mp.log_level = HEARTH_LOG_WARN;
    if (hearth_model_load(path, &mp, &m, err, sizeof err) != HEARTH_OK) {
        cli_error("bench: %s", err);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n_tests && !rc; i++) {
        bench_row w = { .path = path, .size = hearth_model_size_bytes(m), .params = hearth_model_n_params(m),
                        .bytes_tok = hearth_model_bytes_per_token(m), .t = &tests[i] };
        model_type(m, w.type, sizeof w.type);
        if ((rc = run_test(m, &tests[i], o, &w.r, &w.pl))) break;
        if (arr) json_array_append_new(arr, row_json(&w, o->threads, bw));
        else print_md_row(&w, o->threads, bw);
    }
    hearth_model_free(m);
    return rc;
}

int cli_bench(int argc, char **argv) {
    bench_note note = { "" };
    bench_opts o = { .n_prompt = 512, .n_gen = 128, .threads = 2, .reps = 5, .bw_mib = 1024, .out = "md",
                     .gpu_layers = -1, .note = &note };
    const cli_opt opts[] = {
        { "model", 'm', CLI_STR_MULTI, &o.models, 0, 0, NULL, "MODEL", "GGUF model file (repeatable)" },
        { "n-prompt", 'p', CLI_INT, &o.n_prompt, 0, 65536, NULL, "N", "prompt tokens for the ppN test (0 = skip)" },
        { "n-gen", 'n', CLI_INT, &o.n_gen, 0, 65536, NULL, "N", "generated tokens for the tgN test (0 = skip)" },
        { "threads", 't', CLI_INT, &o.threads, 1, 1024, "HEARTH_THREADS", "N", "CPU threads" },
        { "repetitions", 'r', CLI_INT, &o.reps, 1, BENCH_MAX_REPS, NULL, "N", "timed runs per test (after one warm-up)" },
        { "pg", 0, CLI_STR, &o.pg, 0, 0, NULL, "P,N", "also a combined test: P prompt then N generated tokens (-pg too)" },
        { "parallel", 0, CLI_STR, &o.parallel, 0, 0, NULL, "S[,S...]",
          "also tgN xS: S sequences decoded together, N steps of one token each (-npl too)" },
        { "output", 'o', CLI_STR, &o.out, 0, 0, NULL, "FMT", "md (table) or json" },
        { "backend", 0, CLI_STR, &o.backend, 0, 0, "HEARTH_BACKEND", "NAME", "cpu, cuda or auto (GPU when usable, else CPU)" },
        { "gpu-layers", 0, CLI_INT, &o.gpu_layers, -1, 1e6, NULL, "N", "layers on the GPU (-ngl too): -1 = as many as fit (or $HEARTH_GPU_LAYERS), 0 = none" },
        { "bw-mib", 0, CLI_INT, &o.bw_mib, 0, 65536, NULL, "N", "buffer for the read-bandwidth measurement, MiB (0 = skip, else >= 64)" },
    };
    const cli_spec spec = { "bench", NULL, "measure prompt processing and generation speed (llama-bench compatible)",
                            "Generation rows also show the weight bandwidth achieved and its share of the machine's "
                            "read bandwidth (measured once with the same thread count). A tgN xS row counts the "
                            "tokens of all S sequences; its weight bandwidth counts one read of the weights per step.",
                            opts, sizeof opts / sizeof opts[0], 0, 0 };
    /* llama-bench spells the combined test -pg: accept that spelling too */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-pg") == 0) argv[i] = (char *)"--pg";
        else if (strcmp(argv[i], "-ngl") == 0) argv[i] = (char *)"--gpu-layers";
        else if (strcmp(argv[i], "-npl") == 0) argv[i] = (char *)"--parallel";
    char **pos = NULL;
    int n_pos = 0, pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    free(pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    bool json = strcmp(o.out, "json") == 0;
    if (!json && strcmp(o.out, "md") != 0) {
        cli_error("bench: -o wants md or json, got '%s'", o.out);
        return 1;
    }
    if (!hearth_backend_name_ok(o.backend)) {
        cli_error("bench: unknown backend '%s' (expected cpu, cuda or auto)", o.backend);
        return 1;
    }
    if (o.models.n == 0) {
        cli_error("bench: give at least one model with -m MODEL");
        return 1;
    }
    bench_test tests[3 + BENCH_MAX_PAR];
    int n_tests;
    if (make_tests(&o, tests, &n_tests)) return 1;
    bench_bw bw = { 0, 0, "" };
    if (o.bw_mib > 0 && o.bw_mib < 64) {
        cli_error("bench: --bw-mib must be 0 or at least 64");
        return 1;
    }
    /* the GPU's bandwidth when layers may go there; the machine's when the CPU runs them */
    bool gpu = o.gpu_layers != 0 && o.n_gen > 0 && o.bw_mib > 0 &&
               hearth_bench_device_bandwidth(o.backend, &bw.gpu, bw.gpu_name, sizeof bw.gpu_name) == HEARTH_OK;
    if (o.n_gen > 0 && o.bw_mib > 0 && (!gpu || o.gpu_layers == 0) &&
        hearth_bench_read_bandwidth((int32_t)o.threads, (size_t)o.bw_mib << 20, 3, &bw.cpu) != HEARTH_OK) bw.cpu = 0;
    json_t *arr = json ? json_array() : NULL;
    if (!json) {
        if (bw.gpu > 0) printf("GPU read bandwidth (%s): %.1f GB/s\n", bw.gpu_name, bw.gpu);
        if (bw.cpu > 0) printf("read bandwidth (%ld threads, %ld MiB): %.1f GB/s; kernels: %s\n", o.threads, o.bw_mib, bw.cpu, hearth_cpu_isa());
        if (bw.gpu > 0 || bw.cpu > 0) putchar('\n');
        print_md_header();
    }
    int rc = 0;
    for (int i = 0; i < o.models.n && !rc; i++) rc = bench_model(o.models.items[i], tests, n_tests, &o, &bw, arr);
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (s) printf("%s\n", s);
        free(s);
        json_decref(arr);
    }
    return rc;
}
