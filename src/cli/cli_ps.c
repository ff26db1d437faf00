/* cli_ps.c — `hearth ps`: models the running server has loaded (needs a server), with where
 * their weights run (the server's size_vram: the GPU layers' share of the weights). */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "cli_store.h"

/* Where a model's weights are, from size and size_vram: "100% GPU", "100% CPU" or the split
 * as "25%/75% CPU/GPU". */
static void ps_processor(uint64_t size, uint64_t vram, char *out, size_t len) {
    int gpu = size ? (int)((vram >= size ? size : vram) * 100 / size) : 0;
    if (gpu >= 100) snprintf(out, len, "100%% GPU");
    else if (gpu <= 0 && vram == 0) snprintf(out, len, "100%% CPU");
    else snprintf(out, len, "%d%%/%d%% CPU/GPU", 100 - gpu, gpu);
}

int cli_ps(int argc, char **argv) {
    cli_spec spec = { "ps", "", "list models loaded by the server (HEARTH_HOST)", NULL, NULL, 0, 0, 0 };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    free(pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    char *resp = NULL;
    long st = cli_server_call("GET", "/api/ps", NULL, &resp);
    if (st == -2) return 1;
    if (st < 0) {
        cli_error("no server is running (start one with 'hearth serve' or set HEARTH_HOST)");
        return 1;
    }
    if (st != 200) {
        cli_server_error("ps", resp);
        free(resp);
        return 1;
    }
    json_t *j = json_loads(resp, 0, NULL);
    free(resp);
    json_t *arr = json_object_get(j, "models");
    printf("%-40s %-10s %-16s %-8s %s\n", "NAME", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *m = json_array_get(arr, i);
        char size[32], proc[64];
        uint64_t sz = (uint64_t)json_integer_value(json_object_get(m, "size"));
        cli_human_size(sz, size, sizeof size);
        ps_processor(sz, (uint64_t)json_integer_value(json_object_get(m, "size_vram")), proc, sizeof proc);
        const char *until = json_string_value(json_object_get(m, "expires_at"));
        printf("%-40s %-10s %-16s %-8lld %s\n", json_string_value(json_object_get(m, "name")), size, proc,
               (long long)json_integer_value(json_object_get(m, "context_length")), until && until[0] == '2' && until[1] == '3' ? "forever" : until ? until : "");
    }
    json_decref(j);
    return 0;
}
