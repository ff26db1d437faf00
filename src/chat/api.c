/* api.c — public entry point hearth_template_render: JSON variables in, prompt text out.
 *
 * One render = one arena (freed before returning) + the caps in jinja.h, so any template,
 * hostile or not, ends in bounded time and memory with either text or a clear error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "chat/jinja.h"
#include "chat/render.h"

#define VARS_MAX_BYTES (64u << 20)

/* Parses "YYYY-MM-DD[T ]HH:MM[:SS[.fff]]" (a trailing zone designator is ignored). */
static bool parse_now(const char *s, struct tm *tm) {
    int y, mo, d, h, mi, n = 0;
    double sec = 0;
    memset(tm, 0, sizeof *tm);
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3) return false;
    s += n;
    h = mi = 0;
    if (*s == 'T' || *s == ' ') {
        if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &n) != 2) return false;
        s += 1 + n;
        if (*s == ':') {
            if (sscanf(s + 1, "%lf%n", &sec, &n) != 1) return false;
            s += 1 + n;
        }
    }
    if (*s && *s != 'Z' && *s != '+' && *s != '-') return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec >= 61) return false;
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    tm->tm_hour = h;
    tm->tm_min = mi;
    tm->tm_sec = (int)sec;
    /* timegm normalises and fills tm_wday / tm_yday */
    time_t t = timegm(tm);
    if (t == (time_t)-1) return false;
    gmtime_r(&t, tm);
    return tm->tm_mday == d;
}

int chat_render(const char *src, size_t src_len, json_t *vars, const char *now, char **out, hb_err *err) {
    int rc = 0;
    jarena ar = { .cap = JINJA_MAX_ARENA };
    jctx c = { .ar = &ar, .err = err, .line = 1 };
    jtoks toks;
    jnodes body;
    jv v;
    jstr *res = NULL;
    *out = NULL;
    if (now) {
        HB_CHECK(parse_now(now, &c.now), HEARTH_E_INVALID, "bad time '%.40s' (expected YYYY-MM-DDTHH:MM:SS)", now);
    } else {
        time_t t = time(NULL);
        localtime_r(&t, &c.now);
    }
    if ((rc = jinja_lex(&ar, src, src_len, &toks, err))) goto out;
    if ((rc = jinja_parse(&ar, &toks, &body, err))) goto out;
    if ((rc = jv_from_json(&c, vars, &v, 0))) goto out;
    HB_CHECK(v.t == JT_DICT, HEARTH_E_INVALID, "template variables must be a JSON object");
    if ((rc = jinja_exec(&c, &body, v, &res))) goto out;
    /* callers get a C string: a NUL inside (a "\u0000" in the variables) would cut it short */
    HB_CHECK(!memchr(res->s, 0, res->len), HEARTH_E_INVALID,
             "the rendered text contains a NUL byte (a \\u0000 in the messages or variables?)");
    *out = hb_strndup(res->s, res->len);
    HB_CHECK(*out, HEARTH_E_NOMEM, "out of memory copying the rendered template");
out:
    jarena_free(&ar);
    return rc;
}

static int render_json(const char *template_src, const char *vars_json, const char *now,
                       char **out, hb_err *err) {
    int rc = 0;
    json_t *vars = NULL;
    json_error_t je;
    HB_CHECK(template_src && out, HEARTH_E_INVALID, "hearth_template_render: template and out are required");
    *out = NULL;
    HB_CHECK(!vars_json || strlen(vars_json) <= VARS_MAX_BYTES, HEARTH_E_INVALID,
             "template variables over %u MiB", VARS_MAX_BYTES >> 20);
    vars = vars_json ? json_loads(vars_json, JSON_ALLOW_NUL, &je) : json_object();
    HB_CHECK(vars, HEARTH_E_INVALID, "template variables: bad JSON at line %d: %s", je.line, je.text);
    HB_CHECK(json_is_object(vars), HEARTH_E_INVALID, "template variables must be a JSON object");
    rc = chat_render(template_src, strlen(template_src), vars, now, out, err);
out:
    json_decref(vars);
    return rc;
}

int chat_template_check(const char *src, size_t src_len, hb_err *err) {
    jarena ar = { .cap = JINJA_MAX_ARENA };
    jtoks toks;
    jnodes body;
    int rc = jinja_lex(&ar, src, src_len, &toks, err);
    if (!rc) rc = jinja_parse(&ar, &toks, &body, err);
    jarena_free(&ar);
    return rc;
}

bool hearth_template_is_go(const char *t) {
    /* the openings of Ollama's Go templates ({{ .Prompt }}, {{ if .System }}, {{ end }}) */
    static const char *marks[] = { "{{ .",       "{{- .",     "{{.",       "{{ if .",   "{{- if .",
                                   "{{ range .", "{{- range .", "{{ end }}", "{{- end }}" };
    for (size_t i = 0; t && i < sizeof marks / sizeof marks[0]; i++)
        if (strstr(t, marks[i])) return true;
    return false;
}

hearth_status hearth_template_render(const char *template_src, const char *vars_json,
                                     const char *now, char **out, char *err, size_t errlen) {
    hb_err e = { 0 };
    if (out) *out = NULL;
    int rc = render_json(template_src, vars_json, now, out, &e);
    if (err && errlen) snprintf(err, errlen, "%s", rc ? e.msg : "");
    return (hearth_status)rc;
}
