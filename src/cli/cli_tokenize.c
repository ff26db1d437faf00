/* cli_tokenize.c — `hearth tokenize MODEL [TEXT]`: print the token ids of a text.
 *
 * TEXT comes from the argument or, when absent, from stdin byte for byte (nothing is
 * stripped, so a trailing newline is tokenized). Default mode: BOS/EOS added as the vocab
 * is configured to, special-token text treated as plain text (--parse-special turns on
 * recognition, --no-special turns off BOS/EOS). The model is loaded vocab-only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hearth.h"

#define MAX_STDIN (256u << 20)

/* Writes s[0..n) with C-style escapes for quotes, backslashes and non-printable bytes
 * (UTF-8 sequences are printed as they are). */
static void put_escaped(FILE *f, const char *s, size_t n, bool json) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (json ? '"' : '\'')) fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7F) fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
        else if (c >= 0x80) {
            /* Pass whole UTF-8 characters; a piece holding part of one (byte tokens) shows
             * the stray bytes as \xNN (JSON: U+FFFD, JSON text must be valid UTF-8). */
            size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            bool ok = k > 1 && i + k <= n;
            for (size_t j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
            if (ok) {
                fwrite(s + i, 1, k, f);
                i += k - 1;
            } else if (json) fputs("\\ufffd", f);
            else fprintf(f, "\\x%02x", c);
        } else fputc(c, f);
    }
}

static void print_piece(const hearth_model *m, hearth_token t, bool json) {
    char small[256];
    size_t n = 0;
    if (hearth_token_piece(m, t, HEARTH_DETOK_UNPARSE_SPECIAL, small, sizeof small, &n) != HEARTH_OK) n = 0;
    if (n <= sizeof small) {
        put_escaped(stdout, small, n, json);
        return;
    }
    char *big = malloc(n);
    size_t n2 = 0;
    if (big && hearth_token_piece(m, t, HEARTH_DETOK_UNPARSE_SPECIAL, big, n, &n2) == HEARTH_OK) put_escaped(stdout, big, n2, json);
    free(big);
}

static void print_tokens(const hearth_model *m, const hearth_token *ids, size_t n, bool pieces, bool json) {
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (json) {
            if (i) fputs(", ", stdout);
            if (pieces) {
                printf("{\"id\": %d, \"piece\": \"", ids[i]);
                print_piece(m, ids[i], true);
                fputs("\"}", stdout);
            } else printf("%d", ids[i]);
        } else if (pieces) {
            printf("%6d '", ids[i]);
            print_piece(m, ids[i], false);
            fputs("'\n", stdout);
        } else printf("%s%d", i ? " " : "", ids[i]);
    }
    if (json) putchar(']');
    if (json || !pieces) putchar('\n');
}

int cli_tokenize(int argc, char **argv) {
    bool pieces = false, no_special = false, parse_special = false, json = false;
    const cli_opt opts[] = {
        { "pieces", 'p', CLI_FLAG, &pieces, 0, 0, NULL, NULL, "show each token's id and text piece" },
        { "no-special", 0, CLI_FLAG, &no_special, 0, 0, NULL, NULL, "do not add BOS/EOS (CLS/SEP)" },
        { "parse-special", 0, CLI_FLAG, &parse_special, 0, 0, NULL, NULL,
          "recognise special-token text (e.g. <|im_start|>) as single tokens" },
        { "json", 0, CLI_FLAG, &json, 0, 0, NULL, NULL, "print a JSON array" },
    };
    const cli_spec spec = { "tokenize", "MODEL [TEXT]", "Print the token ids of TEXT (read from stdin when absent).",
                            "TEXT from stdin is used byte for byte (a trailing newline is part of it). Invalid UTF-8 is an error.",
                            opts, sizeof opts / sizeof opts[0], 1, 2 };
    char **pos = NULL;
    int n_pos = 0, rc = 1;
    char *input = NULL, err[512] = "";
    size_t len = 0, n = 0;
    hearth_model *m = NULL;
    hearth_token *ids = NULL;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    if (n_pos == 2) {
        len = strlen(pos[1]);
    } else if (!(input = cli_read_stream(stdin, "tokenize", "the text on stdin", MAX_STDIN, &len))) goto out;
    hearth_model_params mp = hearth_model_default_params();
    mp.vocab_only = true;
    mp.log_level = HEARTH_LOG_ERROR;
    if (hearth_model_load(pos[0], &mp, &m, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    int flags = (no_special ? 0 : HEARTH_TOK_ADD_SPECIAL) | (parse_special ? HEARTH_TOK_PARSE_SPECIAL : 0);
    if (hearth_tokenize(m, input ? input : pos[1], len, flags, &ids, &n, err, sizeof err) != HEARTH_OK) {
        cli_error("tokenize: %s", err);
        goto out;
    }
    print_tokens(m, ids, n, pieces, json);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    hearth_free(ids);
    hearth_model_free(m);
    free(input);
    free(pos);
    return rc;
}
