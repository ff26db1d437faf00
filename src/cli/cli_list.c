/* cli_list.c — `hearth list`: stored models (NAME, ID, SIZE, MODIFIED), plus the helpers
 * the other store/server verbs share (cli_store.h). Reads the store directly: the server
 * uses the same directory, so the answer is the same with or without it running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_store.h"
#include "hearth.h"

bool cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port) {
    *port = 11434;
    if (!s || !*s) s = "127.0.0.1";
    if (strncmp(s, "http://", 7) == 0) s += 7;
    const char *colon;
    size_t hl;
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e) return false;
        hl = (size_t)(e - s - 1);
        if (hl >= cap) return false;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        colon = e[1] == ':' ? e + 1 : NULL;
        if (e[1] && !colon) return false;
    } else {
        colon = strrchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= cap) return false;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (!hl) snprintf(host, cap, "127.0.0.1");
    }
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 0 || p > 65535 || end == colon + 1) return false;
        *port = (uint16_t)p;
    }
    return true;
}

long cli_server_call(const char *method, const char *path, const char *body, char **resp) {
    char host[256], err[512];
    uint16_t port;
    long status = 0;
    *resp = NULL;
    if (!cli_parse_hostport(getenv("HEARTH_HOST"), host, sizeof host, &port)) {
        cli_error("bad HEARTH_HOST '%s' (expected HOST[:PORT])", getenv("HEARTH_HOST"));
        return -2;
    }
    if (strcmp(host, "0.0.0.0") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (hearth_client_request(host, port, method, path, body, &status, resp, err, sizeof err) != HEARTH_OK) return -1;
    return status;
}

void cli_server_error(const char *what, const char *resp) {
    const char *e = resp ? strstr(resp, "\"error\":\"") : NULL;
    if (e) {
        e += 9;
        const char *end = strchr(e, '"');
        cli_error("%s: %.*s", what, end ? (int)(end - e) : (int)strlen(e), e);
    } else {
        cli_error("%s: %s", what, resp && *resp ? resp : "server error");
    }
}

void cli_human_size(uint64_t n, char *buf, size_t cap) {
    const char *u[] = { "B", "KB", "MB", "GB", "TB" };
    double v = (double)n;
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, i++;
    snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", v, u[i]);
}

int cli_list(int argc, char **argv) {
    const char *models = NULL;
    cli_opt opts[] = {
        { "models", 0, CLI_STR, &models, 0, 0, "HEARTH_MODELS", "DIR", "model store directory (default ~/.hearth/models)" },
    };
    cli_spec spec = { "list", "", "list stored models", NULL, opts, sizeof opts / sizeof opts[0], 0, 0 };
    char **pos = NULL;
    int n_pos = 0;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    free(pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    hearth_store_entry *v = NULL;
    size_t n = 0;
    char err[512];
    if (hearth_store_list(models, &v, &n, err, sizeof err)) {
        cli_error("%s", err);
        return 1;
    }
    printf("%-40s %-14s %-10s %s\n", "NAME", "ID", "SIZE", "MODIFIED");
    for (size_t i = 0; i < n; i++) {
        char size[32], when[32];
        cli_human_size(v[i].size, size, sizeof size);
        time_t t = (time_t)v[i].modified;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        printf("%-40s %-14.12s %-10s %s\n", v[i].name, v[i].digest + 7, size, when);
    }
    hearth_free(v);
    return 0;
}
