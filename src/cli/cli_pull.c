/* cli_pull.c — `hearth pull NAME`: downloads into the store with a progress bar; an
 * interrupted pull resumes where it stopped. NAME is a registry name (llama3.2:1b),
 * hf.co/USER/REPO[:QUANT], or HOST[:PORT]/NS/MODEL[:TAG] (--insecure for plain http). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hearth.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static bool cancelled(void *ud) {
    (void)ud;
    return g_stop != 0;
}

static void progress(void *ud, const char *status, const char *digest, uint64_t done, uint64_t total) {
    bool tty = *(bool *)ud;
    if (digest && total) {
        int pct = (int)(done * 100 / total);
        char bar[41];
        int filled = pct * 40 / 100;
        for (int i = 0; i < 40; i++) bar[i] = i < filled ? '#' : '.';
        bar[40] = '\0';
        fprintf(stderr, "%s%s [%s] %3d%% %.1f/%.1f MB%s", tty ? "\r" : "", status, bar, pct, (double)done / 1e6,
                (double)total / 1e6, tty ? "" : "\n");
        if (tty && done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s\n", status);
    }
}

int cli_pull(int argc, char **argv) {
    const char *models = NULL;
    bool insecure = false;
    cli_opt opts[] = {
        { "insecure", 0, CLI_FLAG, &insecure, 0, 0, NULL, NULL, "use plain http (e.g. a local registry)" },
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
    };
    cli_spec spec = { "pull", "NAME", "download a model into the store", NULL, opts, sizeof opts / sizeof opts[0], 1, 1 };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bool tty = isatty(2);
    hearth_pull_params p = { .insecure = insecure, .progress = progress, .ud = &tty, .cancel = cancelled };
    char err[512];
    hearth_status st = hearth_store_pull(models, pos[0], &p, err, sizeof err);
    free(pos);
    if (st != HEARTH_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}
