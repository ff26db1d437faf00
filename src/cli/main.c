/* main.c — `hearth` entry point: dispatches to one verb per file (cli_<verb>.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "hearth.h"

typedef struct verb {
    const char *name;
    cli_verb_fn fn;
    const char *summary;
} verb;

/* Verbs not built yet fall back to this weak stub, so each verb's file can land alone. */
#define STUB(fn)                                                             \
    __attribute__((weak)) int fn(int argc, char **argv) {                    \
        (void)argc;                                                          \
        cli_error("'%s' is not available in this build yet", argv[0]);       \
        return 1;                                                            \
    }
STUB(cli_show) STUB(cli_tokenize) STUB(cli_detokenize) STUB(cli_template) STUB(cli_run)
STUB(cli_logits) STUB(cli_bench) STUB(cli_serve) STUB(cli_list) STUB(cli_ps) STUB(cli_rm)
STUB(cli_cp) STUB(cli_stop) STUB(cli_create) STUB(cli_pull)

static const verb k_verbs[] = {
    { "run", cli_run, "chat with a model or generate text from a prompt" },
    { "serve", cli_serve, "start the HTTP server (Ollama + OpenAI APIs, web chat)" },
    { "show", cli_show, "show facts about a model file or stored model" },
    { "list", cli_list, "list stored models" },
    { "ps", cli_ps, "list models loaded by the server" },
    { "pull", cli_pull, "download a model into the store" },
    { "create", cli_create, "create a stored model from a Modelfile" },
    { "cp", cli_cp, "copy a stored model" },
    { "rm", cli_rm, "remove stored models" },
    { "stop", cli_stop, "unload a model from the server" },
    { "tokenize", cli_tokenize, "print the token ids of a text" },
    { "detokenize", cli_detokenize, "print the text of token ids" },
    { "template", cli_template, "render a chat template" },
    { "logits", cli_logits, "write the logits of a token sequence (float32)" },
    { "bench", cli_bench, "measure prompt and generation speed" },
};

static void usage(FILE *f) {
    fprintf(f, "hearth %s — run open-weight models locally\n\nUsage: hearth COMMAND [options]\n\nCommands:\n", HEARTH_VERSION);
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        fprintf(f, "  %-12s %s\n", k_verbs[i].name, k_verbs[i].summary);
    fprintf(f, "\nRun 'hearth COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("hearth %s\n", HEARTH_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++) {
        if (strcmp(argv[1], k_verbs[i].name) == 0) return k_verbs[i].fn(argc - 1, argv + 1);
    }
    cli_error("unknown command '%s' (see 'hearth --help')", argv[1]);
    return 1;
}
