/* cli_template.c — `hearth template`: render a chat template and print the prompt exactly.
 *
 *   hearth template --file T.jinja --vars VARS.json [--now 2025-01-15T12:00:00]
 *   hearth template MODEL.gguf --vars VARS.json
 *
 * VARS.json is a JSON object with every template variable (messages,
 * add_generation_prompt, bos_token, eos_token, tools, ...). The MODEL form uses the
 * model's tokenizer.chat_template (vocab only is loaded). No newline is added to the
 * output, so it can be compared byte for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hearth.h"

#define TEMPLATE_FILE_MAX (16u << 20)

/* The file at path ("-": stdin), NUL-terminated (caller frees); NULL with a message when it
 * cannot be read, is too large or holds a NUL byte (which would cut the C string short). */
static char *slurp(const char *path, const char *what) {
    size_t n = 0;
    char *buf = cli_read_path(path, "template", what, TEMPLATE_FILE_MAX, &n);
    if (buf && memchr(buf, '\0', n)) {
        cli_error("template: %s '%s' contains a NUL byte", what, path);
        free(buf);
        buf = NULL;
    }
    return buf;
}

int cli_template(int argc, char **argv) {
    const char *file = NULL, *vars_path = NULL, *now = NULL;
    const cli_opt opts[] = {
        { "file", 'f', CLI_STR, &file, 0, 0, NULL, "T.jinja", "template source file (instead of MODEL; '-' = stdin)" },
        { "vars", 0, CLI_STR, &vars_path, 0, 0, NULL, "VARS.json",
          "JSON object of template variables (messages, add_generation_prompt, bos_token, ...)" },
        { "now", 0, CLI_STR, &now, 0, 0, NULL, "TIME",
          "instant strftime_now() formats, e.g. 2025-01-15T12:00:00 (default: current time)" },
    };
    const cli_spec spec = {
        .verb = "template", .args = "[MODEL]",
        .summary = "render a chat template with variables from a JSON file and print the prompt",
        .details = "Give either --file T.jinja or a MODEL (its tokenizer.chat_template is used).\n"
                   "The output is printed exactly, without an added newline.",
        .opts = opts, .n_opts = sizeof opts / sizeof opts[0], .min_pos = 0, .max_pos = 1,
    };
    char **pos = NULL, *tmpl = NULL, *vars = NULL, *out = NULL, err[512];
    int n_pos = 0, rc = 1;
    hearth_model *model = NULL;
    int pr = cli_parse(&spec, argc, argv, &pos, &n_pos);
    if (pr != CLI_PARSE_OK) {
        free(pos);
        return pr == CLI_PARSE_HELP ? 0 : 1;
    }
    if ((file != NULL) == (n_pos == 1)) {
        cli_error("template: give either --file T.jinja or a MODEL (see 'hearth template --help')");
        goto out;
    }
    if (!vars_path) {
        cli_error("template: --vars VARS.json is required");
        goto out;
    }
    if (file && strcmp(file, "-") == 0 && strcmp(vars_path, "-") == 0) {
        cli_error("template: --file and --vars cannot both read stdin ('-')");
        goto out;
    }
    if (!(vars = slurp(vars_path, "variables file"))) goto out;
    const char *src;
    if (file) {
        if (!(tmpl = slurp(file, "template file"))) goto out;
        src = tmpl;
    } else {
        hearth_model_params mp = hearth_model_default_params();
        mp.vocab_only = true;
        if (hearth_model_load(pos[0], &mp, &model, err, sizeof err) != HEARTH_OK) {
            cli_error("%s", err);
            goto out;
        }
        src = hearth_model_chat_template(model);
        if (!src) {
            cli_error("template: model '%s' has no tokenizer.chat_template", pos[0]);
            goto out;
        }
    }
    if (hearth_template_render(src, vars, now, &out, err, sizeof err) != HEARTH_OK) {
        cli_error("%s", err);
        goto out;
    }
    size_t len = strlen(out);
    if (fwrite(out, 1, len, stdout) != len || fflush(stdout) != 0) {
        cli_error("template: error writing the output");
        goto out;
    }
    rc = 0;
out:
    hearth_free(out);
    hearth_model_free(model);
    free(vars);
    free(tmpl);
    free(pos);
    return rc;
}
