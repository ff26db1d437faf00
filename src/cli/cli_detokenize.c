/* cli_detokenize.c — `hearth detokenize MODEL ID...`: print the text of token ids.
 *
 * Special tokens are rendered as their text (like the tokenizer fixtures' `detok`), with
 * the vocab's leading-space and clean-up rules; --skip-special drops control tokens
 * instead. The text is written exactly, with no newline added.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "hearth.h"

static bool parse_id(const char *s, hearth_token *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > INT32_MAX) return false;
    *out = (hearth_token)v;
    return true;
}

int cli_detokenize(int argc, char **argv) {
    bool skip_special = false;
    const cli_opt opts[] = {
        { "skip-special", 0, CLI_FLAG, &skip_special, 0, 0, NULL, NULL, "leave out control tokens such as <s> or <|im_end|>" },
    };
    const cli_spec spec = { "detokenize", "MODEL ID...", "Print the text of token ids (no newline is added).", NULL,
                            opts, sizeof opts / sizeof opts[0], 2, -1 };
    char **pos = NULL, *text = NULL, err[512] = "";
    int n_pos = 0, rc = 1;
    size_t len = 0;
    hearth_model *m = NULL;
    hearth_token *ids = NULL;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) return pr == CLI_PARSE_HELP ? 0 : 1;
    ids = calloc((size_t)n_pos, sizeof *ids);
    if (!ids) {
        cli_error("detokenize: out of memory");
        goto out;
    }
    for (int i = 1; i < n_pos; i++) {
        if (!parse_id(pos[i], &ids[i - 1])) {
            cli_error("detokenize: '%s' is not a token id (a non-negative integer)", pos[i]);
            goto out;
        }
    }
    hearth_model_params mp = hearth_model_default_params();
    mp.vocab_only = true;
    mp.log_level = HEARTH_LOG_ERROR;
    if (hearth_model_load(pos[0], &mp, &m, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    int flags = skip_special ? 0 : HEARTH_DETOK_UNPARSE_SPECIAL;
    if (hearth_detokenize(m, ids, (size_t)(n_pos - 1), flags, &text, &len, err, sizeof err) != HEARTH_OK) {
        cli_error("detokenize: %s", err);
        goto out;
    }
    rc = (fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0) ? 0 : 1;
out:
    hearth_free(text);
    hearth_model_free(m);
    free(ids);
    free(pos);
    return rc;
}
