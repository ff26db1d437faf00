/* cli_cp.c — `hearth cp SOURCE DESTINATION`: server when running, else the store. */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "cli_store.h"
#include "hearth.h"

int cli_cp(int argc, char **argv) {
    const char *models = NULL;
    cli_opt opts[] = {
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
    };
    cli_spec spec = { "cp", "SOURCE DESTINATION", "copy a stored model", NULL, opts, sizeof opts / sizeof opts[0], 2, 2 };
    char **pos = NULL;
    int n_pos = 0, rc = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    char *resp = NULL;
    json_t *body = json_pack("{s:s, s:s}", "source", pos[0], "destination", pos[1]);
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    long st = models ? -1 : cli_server_call("POST", "/api/copy", b, &resp);
    free(b);
    if (st == 200) {
        printf("copied '%s' to '%s'\n", pos[0], pos[1]);
    } else if (st > 0) {
        cli_server_error("cp", resp);
        rc = 1;
    } else if (st == -2) {
        rc = 1;
    } else {
        char err[512];
        if (hearth_store_copy(models, pos[0], pos[1], err, sizeof err)) {
            cli_error("%s", err);
            rc = 1;
        } else {
            printf("copied '%s' to '%s'\n", pos[0], pos[1]);
        }
    }
    free(resp);
    free(pos);
    return rc;
}
