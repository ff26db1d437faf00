/* cli_rm.c — `hearth rm NAME...`: through the running server when there is one (so it
 * unloads the model first), else directly on the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "cli_store.h"
#include "hearth.h"

int cli_rm(int argc, char **argv) {
    const char *models = NULL;
    cli_opt opts[] = {
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
    };
    cli_spec spec = { "rm", "NAME...", "remove stored models", NULL, opts, sizeof opts / sizeof opts[0], 1, -1 };
    char **pos = NULL;
    int n_pos = 0, rc = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    for (int i = 0; i < n_pos; i++) {
        char *resp = NULL;
        json_t *body = json_pack("{s:s}", "model", pos[i]);
        char *b = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        long st = models ? -1 : cli_server_call("DELETE", "/api/delete", b, &resp);
        free(b);
        if (st == 200) {
            printf("deleted '%s'\n", pos[i]);
        } else if (st > 0) {
            cli_server_error(pos[i], resp);
            rc = 1;
        } else if (st == -2) {
            rc = 1;
            break;
        } else {
            char err[512];
            if (hearth_store_remove(models, pos[i], err, sizeof err)) {
                cli_error("%s", err);
                rc = 1;
            } else {
                printf("deleted '%s'\n", pos[i]);
            }
        }
        free(resp);
    }
    free(pos);
    return rc;
}
