/* cli_create.c — `hearth create NAME -f Modelfile`: builds a stored model. A local GGUF
 * named by FROM is copied into the store (a reflink where the file system can). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hearth.h"

static void progress(void *ud, const char *status, const char *digest, uint64_t done, uint64_t total) {
    (void)ud, (void)digest, (void)done, (void)total;
    fprintf(stderr, "%s\n", status);
}

int cli_create(int argc, char **argv) {
    const char *models = NULL, *file = "Modelfile";
    cli_opt opts[] = {
        { "file", 'f', CLI_STR, &file, 0, 0, NULL, "PATH", "the Modelfile" },
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
    };
    cli_spec spec = { "create", "NAME", "create a stored model from a Modelfile",
                      "Modelfile commands: FROM (a .gguf path, relative to the Modelfile, or a stored model), "
                      "PARAMETER, TEMPLATE (Jinja), SYSTEM, MESSAGE, LICENSE.",
                      opts, sizeof opts / sizeof opts[0], 1, 1 };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    int rc = 1;
    FILE *f = fopen(file, "rb");
    char *text = NULL;
    size_t len = 0;
    if (!f) {
        cli_error("cannot open Modelfile %s", file);
        goto out;
    }
    text = malloc((1u << 20) + 1);
    if (text) len = fread(text, 1, (1u << 20) + 1, f);
    fclose(f);
    if (!text || len > (1u << 20)) {
        cli_error("Modelfile %s is larger than 1 MiB", file);
        goto out;
    }
    char *fcopy = strdup(file);
    char err[512];
    hearth_status st = hearth_store_create(models, pos[0], text, len, fcopy ? dirname(fcopy) : ".", progress, NULL, err, sizeof err);
    free(fcopy);
    if (st != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    rc = 0;
out:
    free(text);
    free(pos);
    return rc;
}
