/* cli_serve.c — `hearth serve`: the HTTP server until SIGINT/SIGTERM, then a graceful
 * stop (in-flight streams end with a final message); a second signal during that stop ends
 * the process at once. Every flag has an environment variable (see docs/api.md). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_store.h"
#include "hearth.h"

static void log_line(void *ud, hearth_log_level lvl, const char *msg) {
    static const char *names[] = { "error", "warn", "info", "debug" };
    int max = *(int *)ud;
    if ((int)lvl > max) return;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "time=%s.%03ldZ level=%s %s\n", when, ts.tv_nsec / 1000000, names[lvl], msg);
}

static const char *signal_name(int sig) { return sig == SIGINT ? "SIGINT" : "SIGTERM"; }

/* Runs while the server drains (up to 10 s, longer while a model loads): a second stop
 * signal ends the process at once, with 128 + the signal's number. _exit, not exit: the
 * other threads are still running. The store stays consistent (its writes are temporary
 * files renamed into place; a pull resumes its partial file). */
static void *second_signal(void *arg) {
    const sigset_t *set = arg;
    int sig = 0;
    if (sigwait(set, &sig) == 0) {
        fprintf(stderr, "hearth: second %s received, exiting without waiting for requests in flight\n", signal_name(sig));
        _exit(128 + sig);
    }
    return NULL;
}

int cli_serve(int argc, char **argv) {
    const char *host = NULL, *models = NULL, *keep = "5m", *keys = NULL, *origins = NULL;
    const char *backend = NULL;
    long parallel = 4, max_queue = 64, max_loaded = 2, ctx = 0, threads = 0, timeout = 300, max_body_mb = 16;
    long gpu_layers = -1, sample_threads = -1, idle_timeout = 30, max_conns = 512;
    bool verbose = false, quiet = false;
    cli_opt opts[] = {
        { "host", 0, CLI_STR, &host, 0, 0, "HEARTH_HOST", "HOST[:PORT]", "listen address (default 127.0.0.1:11434; port 0 = any)" },
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
        { "parallel", 'p', CLI_INT, &parallel, 1, 256, "HEARTH_NUM_PARALLEL", "N", "sequences decoded together per model" },
        { "max-queue", 0, CLI_INT, &max_queue, 0, 100000, "HEARTH_MAX_QUEUE", "N", "waiting requests per model before 503" },
        { "max-loaded", 0, CLI_INT, &max_loaded, 1, 64, "HEARTH_MAX_LOADED_MODELS", "N", "models loaded at once" },
        { "keep-alive", 0, CLI_STR, &keep, 0, 0, "HEARTH_KEEP_ALIVE", "DURATION", "how long an idle model stays loaded (-1 = forever)" },
        { "ctx-size", 'c', CLI_INT, &ctx, 0, 1 << 20, "HEARTH_CONTEXT_LENGTH", "N", "context per sequence (0 = model's, capped 4096)" },
        { "threads", 't', CLI_INT, &threads, 0, 1024, "HEARTH_NUM_THREADS", "N", "CPU threads (0 = all cores)" },
        { "sample-threads", 0, CLI_INT, &sample_threads, -1, 64, "HEARTH_SAMPLE_THREADS", "N",
          "helper threads that sample a step's sequences (-1 = some when the model runs wholly on a GPU, 0 = none)" },
        { "backend", 0, CLI_STR, &backend, 0, 0, "HEARTH_BACKEND", "NAME", "cpu, cuda or auto (GPU when usable, else CPU)" },
        { "gpu-layers", 0, CLI_INT, &gpu_layers, -1, 1e6, NULL, "N", "layers on the GPU (-ngl too): -1 = as many as fit (or $HEARTH_GPU_LAYERS), 0 = none" },
        { "timeout", 0, CLI_INT, &timeout, 1, 86400, "HEARTH_TIMEOUT", "SECONDS", "drop a request whose client sends or reads nothing for this long" },
        { "idle-timeout", 0, CLI_INT, &idle_timeout, 1, 86400, "HEARTH_IDLE_TIMEOUT", "SECONDS",
          "close a connection with no request in progress (new or kept alive) after this long (at most --timeout)" },
        { "max-connections", 0, CLI_INT, &max_conns, 1, 65536, "HEARTH_MAX_CONNECTIONS", "N",
          "connections open at once (each has a thread; more may need a higher ulimit -n)" },
        { "max-body", 0, CLI_INT, &max_body_mb, 1, 4096, "HEARTH_MAX_BODY_MB", "MB", "largest request body (blob uploads excepted)" },
        { "api-key", 0, CLI_STR, &keys, 0, 0, "HEARTH_API_KEYS", "KEYS", "require Authorization: Bearer KEY (comma-separated list)" },
        { "origins", 0, CLI_STR, &origins, 0, 0, "HEARTH_ORIGINS", "LIST", "extra CORS origins (comma-separated, * = any)" },
        { "verbose", 'v', CLI_FLAG, &verbose, 0, 0, NULL, NULL, "debug logging" },
        { "quiet", 'q', CLI_FLAG, &quiet, 0, 0, NULL, NULL, "log errors only" },
    };
    cli_spec spec = { "serve", "", "start the HTTP server (Ollama + OpenAI APIs, web chat)", NULL, opts,
                      sizeof opts / sizeof opts[0], 0, 0 };
    char **pos = NULL;
    int n_pos = 0;
    for (int i = 1; i < argc; i++) /* llama.cpp's spelling */
        if (strcmp(argv[i], "-ngl") == 0) argv[i] = (char *)"--gpu-layers";
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    free(pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    hearth_server_params p = hearth_server_default_params();
    char h[256];
    uint16_t port;
    if (!cli_parse_hostport(host, h, sizeof h, &port)) {
        cli_error("serve: bad --host/HEARTH_HOST '%s' (expected HOST[:PORT])", host);
        return 1;
    }
    int64_t keep_ns;
    char kerr[600];
    if (hearth_parse_duration(keep, &keep_ns, kerr, sizeof kerr) != HEARTH_OK) {
        cli_error("serve: bad --keep-alive: %s (e.g. 5m, 1h30m, 30s, -1)", kerr);
        return 1;
    }
    p.keep_alive_ms = keep_ns < 0 ? -1 : keep_ns / 1000000;
    if (!hearth_backend_name_ok(backend)) {
        cli_error("serve: unknown backend '%s' (expected cpu, cuda or auto)", backend);
        return 1;
    }
    int level = quiet ? 0 : verbose ? 3 : 2;
    p.host = h, p.port = port, p.models_dir = models;
    p.num_parallel = (int32_t)parallel, p.max_queue = (int32_t)max_queue, p.max_loaded = (int32_t)max_loaded;
    p.n_ctx = (uint32_t)ctx, p.n_threads = (int32_t)threads, p.timeout_s = (uint32_t)timeout;
    p.backend = backend, p.n_gpu_layers = (int32_t)gpu_layers, p.sample_threads = (int32_t)sample_threads;
    p.max_body = (size_t)max_body_mb << 20;
    p.idle_timeout_s = (uint32_t)idle_timeout, p.max_connections = (uint32_t)max_conns;
    p.api_keys = keys, p.origins = origins;
    p.log = log_line, p.log_user_data = &level;
    /* Block the stop signals in every thread; this one waits for them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    hearth_server *srv = NULL;
    char err[512];
    if (hearth_server_start(&p, &srv, err, sizeof err) != HEARTH_OK) {
        cli_error("serve: %s", err);
        return 1;
    }
    fprintf(stderr, "hearth %s listening on http://%s%s%s:%u\n", HEARTH_VERSION, strchr(h, ':') ? "[" : "", h,
            strchr(h, ':') ? "]" : "", (unsigned)hearth_server_port(srv));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "hearth: %s received, shutting down (again to stop at once)\n", signal_name(sig));
    pthread_t watcher;
    bool watching = pthread_create(&watcher, NULL, second_signal, &set) == 0;
    hearth_server_stop(srv);
    hearth_server_free(srv);
    if (watching) { /* sigwait is a cancellation point */
        pthread_cancel(watcher);
        pthread_join(watcher, NULL);
    }
    return 0;
}
