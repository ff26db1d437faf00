/* cli_run.c — `hearth run MODEL [PROMPT]`: one-shot generation or an interactive chat.
 *
 * With PROMPT (or piped stdin) the prompt is rendered through the model's chat template as
 * a user turn (--raw: sent as-is, BOS per metadata) and the reply is streamed to stdout;
 * only generated text goes to stdout. Without PROMPT on a terminal: a multi-turn chat with
 * /bye, /clear, /set, /show and """ multi-line input; Ctrl-C stops the current reply.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "run_gen.h"

typedef struct run_args {
    long n_predict, n_ctx, n_threads, seed, top_k, repeat_last_n, gpu_layers;
    double temp, top_p, min_p, typical_p, repeat_penalty, presence_penalty, frequency_penalty;
    const char *system, *kv, *backend;
    cli_strlist stops;
    bool raw, verbose;
} run_args;

/* Set by SIGINT; the CLI process owns it (the library only sees it through the abort
 * callback handed to the context). */
static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupt = 1;
}

static int parse_kv(const char *s, hearth_kv_type *out) {
    if (strcmp(s, "f16") == 0) *out = HEARTH_KV_F16;
    else if (strcmp(s, "f32") == 0) *out = HEARTH_KV_F32;
    else if (strcmp(s, "q8_0") == 0) *out = HEARTH_KV_Q8_0;
    else {
        cli_error("run: --kv must be f16, f32 or q8_0, got '%s'", s);
        return 1;
    }
    return 0;
}

static void sampler_from_args(const run_args *a, hearth_sampler_params *sp) {
    *sp = hearth_sampler_default_params();
    sp->seed = gen_seed(a->seed);
    sp->temperature = (float)a->temp;
    sp->top_k = (int32_t)a->top_k;
    sp->top_p = (float)a->top_p;
    sp->min_p = (float)a->min_p;
    sp->typical_p = (float)a->typical_p;
    sp->repeat_penalty = (float)a->repeat_penalty;
    sp->repeat_last_n = (int32_t)a->repeat_last_n;
    sp->presence_penalty = (float)a->presence_penalty;
    sp->frequency_penalty = (float)a->frequency_penalty;
}


/* Exit code of a one-shot run that Ctrl-C cut short, as shells report a SIGINT death:
 * a script must not take the partial reply for a whole one. */
#define RUN_EXIT_INTERRUPTED 130

static int one_shot(gen_session *g, const run_args *a, const char *prompt) {
    gen_stats st = { 0 };
    int rc;
    if (a->raw) {
        rc = gen_reply(g, prompt, HEARTH_TOK_ADD_SPECIAL | HEARTH_TOK_PARSE_SPECIAL, run_emit_stdout, NULL, &st);
    } else {
        json_t *conv = run_new_conversation(a->system);
        json_array_append_new(conv, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
        char *p = run_render_chat(g, conv);
        json_decref(conv);
        if (!p) return 1;
        rc = gen_reply(g, p, HEARTH_TOK_ADD_SPECIAL | HEARTH_TOK_PARSE_SPECIAL, run_emit_stdout, NULL, &st);
        free(p);
    }
    if (rc) return rc;
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) { /* a full disk or closed pipe: the reply is not all there */
        cli_error("run: cannot write the reply to stdout (disk full or pipe closed?)");
        return 1;
    }
    if (st.hit_ctx_limit) fprintf(stderr, "hearth: stopped: the context of %u tokens is full (use --ctx)\n", st.n_ctx);
    if (a->verbose) gen_print_stats(&st);
    if (st.interrupted) {
        cli_error("run: interrupted; the reply is incomplete");
        return RUN_EXIT_INTERRUPTED;
    }
    return 0;
}

/* The bounds of generation parameter `id` for a flag table entry (shared with /set). */
#define GP_RANGE(id) gen_params[id].lo, gen_params[id].hi

int cli_run(int argc, char **argv) {
    run_args a = { .gpu_layers = -1, .n_predict = -1, .n_ctx = 0, .n_threads = 0, .seed = -1, .top_k = 40,
                   .repeat_last_n = 64, .temp = 0.8, .top_p = 0.9, .min_p = 0.0, .typical_p = 1.0,
                   .repeat_penalty = 1.0, .kv = "f16" };
    const cli_opt opts[] = {
        { "num-predict", 'n', CLI_INT, &a.n_predict, GP_RANGE(GP_NUM_PREDICT), NULL, "N", "tokens to generate, -1 = until the model stops" },
        { "ctx", 'c', CLI_INT, &a.n_ctx, 1, 1 << 20, "HEARTH_CTX", "N", "context length in tokens (default: the model's, at most 4096)" },
        { "threads", 't', CLI_INT, &a.n_threads, 1, 512, "HEARTH_THREADS", "N", "CPU threads (default: all cores)" },
        { "seed", 's', CLI_INT, &a.seed, GP_RANGE(GP_SEED), NULL, "N", "random seed, -1 = random" },
        { "temp", 0, CLI_FLOAT, &a.temp, GP_RANGE(GP_TEMPERATURE), NULL, "T", "temperature, 0 = greedy" },
        { "top-k", 0, CLI_INT, &a.top_k, GP_RANGE(GP_TOP_K), NULL, "K", "keep the K most likely tokens, 0 = off" },
        { "top-p", 0, CLI_FLOAT, &a.top_p, GP_RANGE(GP_TOP_P), NULL, "P", "nucleus sampling threshold, 1 = off" },
        { "min-p", 0, CLI_FLOAT, &a.min_p, GP_RANGE(GP_MIN_P), NULL, "P", "drop tokens below P x the top probability" },
        { "typical-p", 0, CLI_FLOAT, &a.typical_p, GP_RANGE(GP_TYPICAL_P), NULL, "P", "locally typical sampling, 1 = off" },
        { "repeat-penalty", 0, CLI_FLOAT, &a.repeat_penalty, GP_RANGE(GP_REPEAT_PENALTY), NULL, "X", "penalise repeated tokens, 1 = off" },
        { "repeat-last-n", 0, CLI_INT, &a.repeat_last_n, GP_RANGE(GP_REPEAT_LAST_N), NULL, "N", "tokens the penalties look back, -1 = all" },
        { "presence-penalty", 0, CLI_FLOAT, &a.presence_penalty, GP_RANGE(GP_PRESENCE_PENALTY), NULL, "X", "subtract X from tokens already present" },
        { "frequency-penalty", 0, CLI_FLOAT, &a.frequency_penalty, GP_RANGE(GP_FREQUENCY_PENALTY), NULL, "X", "subtract X per occurrence" },
        { "system", 0, CLI_STR, &a.system, 0, 0, NULL, "TEXT", "system prompt" },
        { "stop", 0, CLI_STR_MULTI, &a.stops, 0, 0, NULL, "TEXT", "stop at TEXT (repeatable; never printed)" },
        { "kv", 0, CLI_STR, &a.kv, 0, 0, NULL, "TYPE", "KV cache type: f16, f32 or q8_0" },
        { "backend", 0, CLI_STR, &a.backend, 0, 0, "HEARTH_BACKEND", "NAME", "cpu, cuda or auto (GPU when usable, else CPU)" },
        { "gpu-layers", 0, CLI_INT, &a.gpu_layers, -1, 1e6, NULL, "N", "layers on the GPU (-ngl too): -1 = as many as fit (or $HEARTH_GPU_LAYERS), 0 = none" },
        { "raw", 0, CLI_FLAG, &a.raw, 0, 0, NULL, NULL, "send PROMPT as-is (no chat template; BOS per model)" },
        { "verbose", 'v', CLI_FLAG, &a.verbose, 0, 0, NULL, NULL, "print load time, token counts and speeds to stderr" },
    };
    const cli_spec spec = { "run", "MODEL [PROMPT]", "Generate a reply to PROMPT, or chat interactively when PROMPT is absent.",
                            "MODEL is a .gguf file or a stored model name (see hearth list). Without PROMPT, text piped on stdin is the prompt;\n"
                            "on a terminal an interactive chat starts (/? lists its commands).",
                            opts, sizeof opts / sizeof opts[0], 1, 2 };
    char **pos = NULL;
    for (int i = 1; i < argc; i++) /* llama.cpp's spelling */
        if (strcmp(argv[i], "-ngl") == 0) argv[i] = (char *)"--gpu-layers";
    int n_pos = 0, rc = cli_parse(&spec, argc, argv, &pos, &n_pos);
    gen_session *g = NULL;
    char *piped = NULL, *path = NULL, *tmpl = NULL, *sys_stored = NULL;
    if (rc != CLI_PARSE_OK) return rc == CLI_PARSE_HELP ? 0 : 1;
    gen_opts o = { .n_predict = a.n_predict, .n_ctx = a.n_ctx, .n_threads = a.n_threads,
                   .stops = a.stops.items, .n_stops = a.stops.n, .backend = a.backend,
                   .n_gpu_layers = a.gpu_layers, .verbose = a.verbose };
    rc = 1;
    if (parse_kv(a.kv, &o.kv_type)) goto out;
    sampler_from_args(&a, &o.sp);
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    if (run_resolve_model(pos[0], &path, &tmpl, &sys_stored)) goto out;
    o.template_src = tmpl;
    if (!a.system) a.system = sys_stored;
    g = gen_open(path, &o, &g_interrupt);
    if (!g) goto out;
    if (a.verbose) fprintf(stderr, "seed: %llu\n", (unsigned long long)o.sp.seed);
    if (a.system && run_text_check("the system prompt", a.system, strlen(a.system))) goto out;
    if (n_pos == 2) {
        if (!run_text_check("the prompt", pos[1], strlen(pos[1]))) rc = one_shot(g, &a, pos[1]);
    } else if (!isatty(STDIN_FILENO)) {
        size_t len = 0;
        piped = cli_read_stream(stdin, "run", "the prompt on stdin", (size_t)64 << 20, &len);
        if (!piped && g_interrupt) rc = RUN_EXIT_INTERRUPTED;
        else if (piped && !run_text_check("the prompt on stdin", piped, len)) rc = one_shot(g, &a, piped);
    } else {
        rc = run_repl(g, &o, a.system, a.verbose, &g_interrupt);
    }
out:
    gen_close(g);
    free(piped);
    free(path);
    free(tmpl);
    free(sys_stored);
    free(pos);
    return rc;
}
