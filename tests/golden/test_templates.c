/* Golden test: every case of every chat-template fixture in
 * $HEARTH_TEST_SHARED/fixtures/templates/ *.json (rendered by Python Jinja2 3.1.6 the way
 * Hugging Face configures it). `expected` must match byte for byte; cases with `error`
 * must fail, and raise_exception cases must fail with exactly that message. Each fixture
 * file is one cmocka test; a per-template table is printed. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "hearth.h"

#define MAX_FILES 256

static char g_dir[1024];

static void show_diff(const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "    first difference at byte %zu\n    want: %.80s\n    got:  %.80s\n", i,
            want + from, got + from);
}

static void run_file(void **state) {
    const char *name = *state;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    assert_non_null(root);
    const char *tmpl = json_string_value(json_object_get(root, "template"));
    const char *now = json_string_value(json_object_get(root, "strftime_now"));
    json_t *cases = json_object_get(root, "cases");
    assert_non_null(tmpl);
    assert_true(json_is_array(cases));
    size_t i, pass = 0, n = json_array_size(cases);
    json_t *cs;
    json_array_foreach(cases, i, cs) {
        const char *cname = json_string_value(json_object_get(cs, "name"));
        char *vars = json_dumps(json_object_get(cs, "vars"), JSON_COMPACT);
        const char *want = json_string_value(json_object_get(cs, "expected"));
        const char *want_err = json_string_value(json_object_get(cs, "error"));
        const char *etype = json_string_value(json_object_get(cs, "error_type"));
        char *out = NULL, err[512];
        hearth_status st = hearth_template_render(tmpl, vars, now, &out, err, sizeof err);
        bool ok;
        if (want) {
            ok = st == HEARTH_OK && strcmp(out, want) == 0;
            if (!ok && st) fprintf(stderr, "  %s/%s: error: %s\n", name, cname, err);
            else if (!ok) { fprintf(stderr, "  %s/%s: output differs\n", name, cname); show_diff(want, out); }
        } else {
            bool is_raise = etype && strcmp(etype, "raise_exception") == 0;
            ok = st == HEARTH_E_TEMPLATE && (!is_raise || strcmp(err, want_err) == 0);
            if (!ok) fprintf(stderr, "  %s/%s: want error '%s', got status %d '%s'\n", name, cname, want_err, st, st ? err : "");
        }
        pass += ok;
        hearth_free(out);
        free(vars);
    }
    printf("  %-52s %2zu/%2zu\n", name, pass, n);
    json_decref(root);
    assert_int_equal(pass, n);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    const char *shared = getenv("HEARTH_TEST_SHARED");
    snprintf(g_dir, sizeof g_dir, "%s/fixtures/templates", shared ? shared : "../shared");
    DIR *d = opendir(g_dir);
    if (!d) {
        fprintf(stderr, "test_templates: cannot open %s\n", g_dir);
        return 1;
    }
    static char *names[MAX_FILES];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < MAX_FILES) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    static struct CMUnitTest tests[MAX_FILES];
    for (size_t i = 0; i < n; i++) {
        tests[i] = (struct CMUnitTest){ .name = names[i], .test_func = run_file, .initial_state = names[i] };
    }
    int rc = _cmocka_run_group_tests("templates", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++) free(names[i]);
    return rc;
}
