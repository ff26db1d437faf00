/* tools.c — tool calls in generated text, for chat requests that carry `tools`.
 *
 * Formats recognised (what Ollama's parser and the common chat templates produce):
 *   <tool_call>{"name": ..., "arguments": {...}}</tool_call>     Hermes, Qwen (closing tag
 *                                                               optional at the end)
 *   [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]       Mistral (array or objects)
 *   [TOOL_CALLS]get_weather[ARGS]{...}                          Mistral (v11 templates)
 *   <|python_tag|>{"name": ..., "parameters": {...}}            Llama 3.x
 *   {"name": ...}  {...}; {...}  [{...}, {...}]                 a reply that starts with calls
 * A call is an object whose keys are among name, arguments, parameters, type ("function"),
 * id and function (OpenAI's {"type", "function": {"name", "arguments"}}), with a non-empty
 * string name and arguments that are an object or a JSON string holding one. A bare value
 * ({ or [ without a marker) counts only at the start of the reply or right after another
 * call, so prose that merely contains braces stays content; an array counts only when
 * every element is a call.
 *
 * One scanner decides both the streamed and the whole-reply case: tool_scan_next looks at
 * the undecided rest of the reply and says what its first bytes are (content, calls) or
 * that it must see more. It decides only what later text cannot change, so a reply
 * streamed in any pieces yields the same content and calls as gen_parse_tool_calls on the
 * whole text (tests/unit/test_server_tools.c checks every split; the request fuzzer too).
 * Blanks around a call belong to the call; a call's closing tag and a ';' or ',' between
 * two calls too.
 *
 * Held text is read once: the caller passes the undecided text again with more appended
 * after each TOOL_SEG_MORE, and the scanner keeps in tool_scan how far it read the runs of
 * blanks and the JSON value that text is waiting on (the lead, gap and value fields), so it
 * goes on from there. A decision moves the start of the undecided text, so it forgets them.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* The markers that open calls anywhere in a reply. */
static const char *const MARKERS[] = { "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>" };
enum { MARK_TOOL_CALL, MARK_MISTRAL, MARK_PYTHON, N_MARKERS };
#define CLOSE_TAG "</tool_call>"
#define MISTRAL_ARGS "[ARGS]"
#define MAX_NAME 256 /* a Mistral v11 call's name, before [ARGS] */

/* Keys a call object may have (anything else: not a call). */
static const char *const CALL_KEYS[] = { "name", "arguments", "parameters", "type", "id", "function" };

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* How many blanks s[0..len) starts with; s is at offset `at` of the undecided text. *run
 * is the run of blanks read last: when it is this one (the same text, come back longer),
 * reading goes on from where it stopped. */
static size_t blanks(tool_scan *ts, tool_scan_run *run, const char *s, size_t len, size_t at) {
    size_t i = run->at == at && run->n <= len ? run->n : 0, from = i;
    while (i < len && is_blank(s[i])) i++;
    ts->examined += i - from + (i < len);
    run->at = at;
    run->n = i;
    return i;
}

/* How many blanks s[0..len) ends with. */
static size_t trail_blanks(tool_scan *ts, const char *s, size_t len) {
    size_t i = 0;
    while (i < len && is_blank(s[len - 1 - i])) i++;
    ts->examined += i + (i < len);
    return i;
}

/* True when s[0..len) is a proper prefix of lit (more text could complete it). */
static bool is_partial(const char *s, size_t len, const char *lit) {
    size_t n = strlen(lit);
    return len < n && memcmp(s, lit, len) == 0;
}

static bool starts_with(const char *s, size_t len, const char *lit) {
    size_t n = strlen(lit);
    return len >= n && memcmp(s, lit, n) == 0;
}

/* The marker that begins at s, or -1. */
static int marker_at(const char *s, size_t len) {
    for (int m = 0; m < N_MARKERS; m++)
        if (starts_with(s, len, MARKERS[m])) return m;
    return -1;
}

static bool partial_marker_at(const char *s, size_t len) {
    for (int m = 0; m < N_MARKERS; m++)
        if (is_partial(s, len, MARKERS[m])) return true;
    return false;
}

/* The first position at or after `from` where a marker begins, or (unless final) where the
 * tail could still become one; len when there is none. */
static size_t next_marker(tool_scan *ts, const char *s, size_t len, size_t from, bool final) {
    size_t i = from;
    for (; i < len; i++) {
        if (s[i] != '<' && s[i] != '[') continue;
        if (marker_at(s + i, len - i) >= 0 || (!final && partial_marker_at(s + i, len - i))) break;
    }
    ts->examined += i - from + (i < len);
    return i;
}

static bool call_key(const char *k, size_t n) {
    for (size_t i = 0; i < sizeof CALL_KEYS / sizeof CALL_KEYS[0]; i++)
        if (strlen(CALL_KEYS[i]) == n && memcmp(CALL_KEYS[i], k, n) == 0) return true;
    return false;
}

/* ---- one JSON value ------------------------------------------------------------------- */

enum { JV_MORE, JV_END, JV_NOT };

/* One byte of the value v is reading, s[v->i] (s: the value): JV_MORE to go on, JV_END
 * when it closes the value, JV_NOT when the value cannot be a call (see json_extent). */
static int json_step(tool_scan_json *v, const char *s) {
    size_t i = v->i;
    char c = s[i];
    if (v->in_str) {
        if (v->esc) v->esc = false;
        else if (c == '\\') v->esc = true;
        else if (c == '"') {
            v->in_str = false;
            if (v->key && !call_key(s + v->key, i - v->key)) return JV_NOT;
            v->key = 0;
        }
        return JV_MORE;
    }
    if (is_blank(c)) return JV_MORE;
    if (v->want_key && c != '"' && c != '}') return JV_NOT;
    if (v->want_obj && c != '{' && c != ']') return JV_NOT;
    if (v->want_key && c == '"') v->key = i + 1;
    v->want_key = v->want_obj = false;
    if (c == '"') v->in_str = true;
    else if (c == '{' || c == '[') {
        v->depth++;
        v->want_key = c == '{' && v->depth == v->call_depth;
        v->want_obj = c == '[' && v->depth == 1 && v->call_depth == 2;
    } else if (c == '}' || c == ']') {
        if (--v->depth == 0) return JV_END;
    } else if (c == ',') {
        v->want_key = v->depth == v->call_depth;
        v->want_obj = v->depth == 1 && v->call_depth == 2;
    }
    return JV_MORE;
}

/* Where the JSON value at s[0] ('{' or '[') ends, judged by its brackets and strings (the
 * value itself is parsed once it is whole): JV_END with *end one past its closing bracket,
 * JV_MORE while it is still open. With `calls` also JV_NOT as soon as it cannot be a call
 * or an array of calls (a key outside CALL_KEYS or not a string, an array element that is
 * not an object). s is at offset `at` of the undecided text: when ts->value is this value,
 * still open (the same text, come back longer), reading goes on from where it stopped. */
static int json_extent(tool_scan *ts, const char *s, size_t len, size_t at, bool calls, size_t *end) {
    tool_scan_json v = ts->value; /* a local copy: the byte loop keeps it in registers */
    int r = JV_MORE;
    if (!v.open || v.at != at || v.calls != calls || v.i > len) /* not the value read last */
        v = (tool_scan_json){ .at = at, .calls = calls, .call_depth = !calls ? -1 : s[0] == '[' ? 2 : 1 };
    size_t from = v.i;
    for (; r == JV_MORE && v.i < len; v.i++) r = json_step(&v, s);
    ts->examined += v.i - from;
    if (r == JV_END) *end = v.i;
    v.open = r == JV_MORE;
    ts->value = v;
    return r;
}

/* Arguments as an object: an object, or a string holding one. New reference or NULL. */
static json_t *args_of(json_t *a) {
    if (json_is_object(a)) return json_incref(a);
    if (!json_is_string(a)) return NULL;
    json_t *p = json_loads(json_string_value(a), 0, NULL);
    if (json_is_object(p)) return p;
    json_decref(p);
    return NULL;
}

static bool keys_allowed(json_t *o) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        (void)v;
        if (!call_key(k, strlen(k))) return false;
    }
    return true;
}

/* Ollama's tool_call shape {"function": {"name", "arguments"}} from a call object, or NULL
 * when o is not one. New reference. */
static json_t *tool_call_of(json_t *o) {
    if (!json_is_object(o) || !keys_allowed(o)) return NULL;
    json_t *type = json_object_get(o, "type");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0)) return NULL;
    json_t *fn = json_object_get(o, "function");
    if (fn) {
        if (!json_is_object(fn) || json_object_get(o, "name") || !keys_allowed(fn)) return NULL;
        o = fn;
    }
    json_t *name = json_object_get(o, "name");
    json_t *a = json_object_get(o, "arguments");
    if (a && json_object_get(o, "parameters")) return NULL;
    json_t *args = args_of(a ? a : json_object_get(o, "parameters"));
    if (!json_is_string(name) || json_string_length(name) == 0 || !args) {
        json_decref(args);
        return NULL;
    }
    return json_pack("{s:{s:O, s:o}}", "function", "name", name, "arguments", args);
}

/* The calls in the JSON text s[0..n): one call object, or a non-empty array of them.
 * New reference, or NULL when it is not that. */
static json_t *calls_of(const char *s, size_t n) {
    json_t *v = json_loadb(s, n, 0, NULL), *out = json_array(), *tc = NULL;
    bool ok = v && out && (json_is_object(v) || json_array_size(v) > 0);
    if (json_is_object(v)) {
        ok = ok && (tc = tool_call_of(v)) && json_array_append_new(out, tc) == 0;
    } else {
        for (size_t i = 0; ok && i < json_array_size(v); i++)
            ok = (tc = tool_call_of(json_array_get(v, i))) && json_array_append_new(out, tc) == 0;
    }
    json_decref(v);
    if (!ok) {
        json_decref(out);
        out = NULL;
    }
    return out;
}

/* ---- decisions ------------------------------------------------------------------------------ */

/* A JSON value at s[0]: TOOL_SEG_CALLS with *end after it; TOOL_SEG_TEXT with *end the
 * bytes that are content for sure (the whole value when complete, else its first byte);
 * TOOL_SEG_MORE while open (never when final). */
static tool_seg decide_json(tool_scan *ts, const char *s, size_t len, size_t at, bool final, size_t *end, json_t **calls) {
    size_t e = 0;
    int r = json_extent(ts, s, len, at, true, &e);
    *end = 1;
    if (r == JV_MORE && !final) return TOOL_SEG_MORE;
    if (r != JV_END) return TOOL_SEG_TEXT;
    *end = e;
    *calls = calls_of(s, e);
    return *calls ? TOOL_SEG_CALLS : TOOL_SEG_TEXT;
}

/* Mistral v11: name[ARGS]{...} at s (after [TOOL_CALLS]). As decide_json. */
static tool_seg decide_named(tool_scan *ts, const char *s, size_t len, size_t at, bool final, size_t *end, json_t **calls) {
    size_t k = 0;
    *end = 1;
    while (k < len && k <= MAX_NAME && (isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '-' || s[k] == '.')) k++;
    if (k == 0 || k > MAX_NAME) return TOOL_SEG_TEXT;
    if (k == len || is_partial(s + k, len - k, MISTRAL_ARGS)) return final ? TOOL_SEG_TEXT : TOOL_SEG_MORE;
    if (!starts_with(s + k, len - k, MISTRAL_ARGS)) return TOOL_SEG_TEXT;
    size_t a = k + strlen(MISTRAL_ARGS), e = 0;
    if (a == len) return final ? TOOL_SEG_TEXT : TOOL_SEG_MORE;
    if (s[a] != '{') return TOOL_SEG_TEXT;
    int r = json_extent(ts, s + a, len - a, at + a, false, &e); /* any keys: these are the arguments */
    if (r == JV_MORE) return final ? TOOL_SEG_TEXT : TOOL_SEG_MORE;
    json_t *args = json_loadb(s + a, e, 0, NULL);
    if (json_is_object(args)) *calls = json_pack("[{s:{s:s%, s:O}}]", "function", "name", s, k, "arguments", args);
    json_decref(args);
    if (!*calls) return TOOL_SEG_TEXT;
    *end = a + e;
    return TOOL_SEG_CALLS;
}

/* The marker m at s (offset `at` of the undecided text): its body decides. *end as
 * decide_json (TEXT: the marker itself). */
static tool_seg decide_marker(tool_scan *ts, int m, const char *s, size_t len, size_t at, bool final, size_t *end,
                              json_t **calls) {
    size_t ml = strlen(MARKERS[m]), b = ml + blanks(ts, &ts->gap, s + ml, len - ml, at + ml), e = 0;
    tool_seg r = TOOL_SEG_TEXT;
    if (b == len) r = final ? TOOL_SEG_TEXT : TOOL_SEG_MORE;
    else if (s[b] == '{' || s[b] == '[') r = decide_json(ts, s + b, len - b, at + b, final, &e, calls);
    else if (m == MARK_MISTRAL && b == ml) r = decide_named(ts, s + b, len - b, at + b, final, &e, calls); /* name right after */
    *end = r == TOOL_SEG_CALLS ? b + e : ml;
    return r;
}

static tool_seg seg_text(tool_scan *ts, size_t n, size_t *out) {
    ts->content_seen = true;
    ts->after_call = false;
    ts->close = NULL;
    *out = n;
    return TOOL_SEG_TEXT;
}

static tool_seg seg_calls(tool_scan *ts, size_t n, const char *close, size_t *out) {
    ts->after_call = true;
    if (close) ts->close = close;
    *out = n;
    return TOOL_SEG_CALLS;
}

/* A candidate at s[p] (after the blanks s[0..p)): a marker, or a bare value where one may
 * be a call. Returns TOOL_SEG_MORE / CALLS / TEXT, or -1 when s[p] starts none. */
static int decide_candidate(tool_scan *ts, const char *s, size_t len, size_t p, bool final, size_t *n, json_t **calls) {
    size_t e = 0;
    int m = marker_at(s + p, len - p);
    if (m >= 0) {
        tool_seg r = decide_marker(ts, m, s + p, len - p, p, final, &e, calls);
        if (r == TOOL_SEG_MORE) return r;
        if (r == TOOL_SEG_CALLS) return seg_calls(ts, p + e, m == MARK_TOOL_CALL ? CLOSE_TAG : NULL, n);
        return seg_text(ts, p + e, n);
    }
    if (!final && partial_marker_at(s + p, len - p)) return TOOL_SEG_MORE;
    if (ts->content_seen && !ts->after_call) return -1;
    size_t q = p;
    if (ts->after_call && (s[q] == ';' || s[q] == ',')) {
        q += 1 + blanks(ts, &ts->gap, s + q + 1, len - q - 1, q + 1);
        if (q == len) return final ? -1 : TOOL_SEG_MORE;
    }
    if (s[q] != '{' && s[q] != '[') return -1;
    tool_seg r = decide_json(ts, s + q, len - q, q, final, &e, calls);
    if (r == TOOL_SEG_CALLS) return seg_calls(ts, q + e, NULL, n);
    if (r == TOOL_SEG_TEXT) return seg_text(ts, q + e, n);
    return r;
}

/* tool_scan_next without forgetting how far the text was read. */
static tool_seg scan_next(tool_scan *ts, const char *s, size_t len, bool final, size_t *n, json_t **calls) {
    size_t b = blanks(ts, &ts->lead, s, len, 0);
    *n = 0;
    *calls = NULL;
    if (len == 0) return TOOL_SEG_MORE;
    if (ts->after_call && b > 0) return seg_calls(ts, b, NULL, n); /* blanks after a call belong to it */
    if (b == len) return final ? seg_text(ts, len, n) : TOOL_SEG_MORE; /* blanks before a call would too */
    if (ts->after_call && ts->close) { /* the closing tag of the last call */
        if (starts_with(s, len, ts->close)) {
            size_t cl = strlen(ts->close);
            ts->close = NULL;
            return seg_calls(ts, cl, NULL, n);
        }
        if (!final && is_partial(s, len, ts->close)) return TOOL_SEG_MORE;
    }
    int r = decide_candidate(ts, s, len, b, final, n, calls);
    if (r >= 0) return (tool_seg)r;
    /* Content up to the next marker (or one that may be forming), without the blanks
     * before it; trailing blanks wait for what follows them unless this is the end. */
    size_t c = next_marker(ts, s, len, b + 1, final);
    size_t t = c - trail_blanks(ts, s, c);
    if (c == len && final) t = len;
    return seg_text(ts, t, n);
}

tool_seg tool_scan_next(tool_scan *ts, const char *s, size_t len, bool final, size_t *n, json_t **calls) {
    tool_seg r = scan_next(ts, s, len, final, n, calls);
    if (*n > 0) { /* the undecided text starts elsewhere now: what was read of it is moot */
        ts->lead = ts->gap = (tool_scan_run){ 0 };
        ts->value = (tool_scan_json){ 0 };
    }
    return r;
}

json_t *gen_parse_tool_calls(const char *text, size_t len, char **content_out, size_t *content_len) {
    tool_scan ts = { 0 };
    size_t pos = 0, clen = 0;
    json_t *calls = json_array();
    char *content = malloc(len + 1);
    *content_out = NULL;
    *content_len = 0;
    if (!calls || !content) {
        free(content);
        if ((*content_out = hb_strndup(text, len))) *content_len = len;
        return calls;
    }
    while (pos < len) {
        size_t n = 0;
        json_t *c = NULL;
        tool_seg seg = tool_scan_next(&ts, text + pos, len - pos, true, &n, &c);
        if (seg == TOOL_SEG_TEXT) memcpy(content + clen, text + pos, n), clen += n;
        else if (c) json_array_extend(calls, c);
        json_decref(c);
        if (n == 0) break; /* cannot happen when final; keeps a bug from looping */
        pos += n;
    }
    content[clen] = '\0';
    *content_out = content;
    *content_len = clen;
    return calls;
}
