/* cli_store.h — helpers shared by the store and server verbs (list, rm, cp, ps, stop,
 * create, pull, serve): where the server listens and how to call it.
 */
#ifndef HEARTH_CLI_STORE_H
#define HEARTH_CLI_STORE_H

#include <stdbool.h>
#include <stdint.h>

/* Parses HEARTH_HOST-style "host[:port]" ("http://" prefix and "[v6]" allowed) into
 * host (cap bytes) and port (default 11434). Returns false on a malformed value. */
bool cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);
/* Calls the running server (HEARTH_HOST or 127.0.0.1:11434). Returns -1 when no server
 * answers, -2 (after printing why) when HEARTH_HOST is malformed, else the HTTP status;
 * *resp (free()) holds the body. */
long cli_server_call(const char *method, const char *path, const char *body, char **resp);
/* Prints the "error" field of a JSON error body (or the body) via cli_error. */
void cli_server_error(const char *what, const char *resp);
/* "1.2 GB" style sizes. */
void cli_human_size(uint64_t n, char *buf, size_t cap);

#endif
