/* cli_stop.c — `hearth stop NAME`: asks the running server to unload a model
 * (a generate request with keep_alive 0, as Ollama does). */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "cli_store.h"

int cli_stop(int argc, char **argv) {
    cli_spec spec = { "stop", "NAME", "unload a model from the running server", NULL, NULL, 0, 1, 1 };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    json_t *body = json_pack("{s:s, s:i, s:b}", "model", pos[0], "keep_alive", 0, "stream", 0);
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *resp = NULL;
    long st = cli_server_call("POST", "/api/generate", b, &resp);
    free(b);
    int rc = 0;
    if (st == -2) {
        rc = 1;
    } else if (st < 0) {
        cli_error("no server is running (nothing to stop)");
        rc = 1;
    } else if (st != 200) {
        cli_server_error(pos[0], resp);
        rc = 1;
    }
    free(resp);
    free(pos);
    return rc;
}
