/* Unit tests for tool calls in generated text (src/server/tools.c): every recognised format
 * through gen_parse_tool_calls, prose that must stay content, the streaming scanner's
 * held-back decisions (tool_scan_next), and that a reply streamed in pieces of any size
 * gives the same content and calls as the whole reply parsed at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/server.h"

/* ---- helpers -------------------------------------------------------------------------- */

static const char *call_name(json_t *calls, size_t i) {
    return json_string_value(json_object_get(json_object_get(json_array_get(calls, i), "function"), "name"));
}

static json_t *call_args(json_t *calls, size_t i) {
    return json_object_get(json_object_get(json_array_get(calls, i), "function"), "arguments");
}

/* Parses text at once; checks the number of calls and the content left. Returns the calls. */
static json_t *parse_expect(const char *text, size_t n_calls, const char *content) {
    char *rest = NULL;
    size_t rlen = 0;
    json_t *c = gen_parse_tool_calls(text, strlen(text), &rest, &rlen);
    assert_non_null(c);
    assert_non_null(rest);
    if (json_array_size(c) != n_calls || strcmp(rest, content) != 0)
        fail_msg("%s\n  -> %zu calls, content \"%s\" (want %zu, \"%s\")", text, json_array_size(c), rest, n_calls, content);
    free(rest);
    return c;
}

/* Parses text at once; checks the number of calls. Returns the calls. */
static json_t *parse_expect_calls(const char *text, size_t n_calls) {
    char *rest = NULL;
    size_t rlen = 0;
    json_t *c = gen_parse_tool_calls(text, strlen(text), &rest, &rlen);
    assert_non_null(c);
    if (json_array_size(c) != n_calls) fail_msg("%.200s\n  -> %zu calls (want %zu)", text, json_array_size(c), n_calls);
    free(rest);
    return c;
}

typedef struct streamed {
    char *content;            /* [len + 1]; streamed_free frees it */
    size_t len;
    json_t *calls;
    int text_segs_before_end; /* content segments decided before the final piece */
    size_t examined;          /* bytes the scanner read (tool_scan.examined) */
} streamed;

static void streamed_free(streamed *s) {
    free(s->content);
    json_decref(s->calls);
}

/* Feeds text to the scanner in pieces of `piece` bytes as the server's stream does (text
 * that is not decided stays held and is passed again, longer, with the next piece). */
static void stream_parse(const char *text, size_t piece, streamed *out) {
    tool_scan ts = { 0 };
    size_t len = strlen(text), fed = 0, pos = 0;
    memset(out, 0, sizeof *out);
    out->content = malloc(len + 1);
    out->calls = json_array();
    assert_non_null(out->content);
    while (fed < len || pos < len) {
        fed = fed + piece < len ? fed + piece : len;
        bool final = fed == len;
        for (;;) {
            size_t n = 0;
            json_t *c = NULL;
            tool_seg seg = tool_scan_next(&ts, text + pos, fed - pos, final, &n, &c);
            if (seg == TOOL_SEG_MORE) {
                assert_true(n == 0 && !c);
                assert_true(!final || pos == fed); /* the end decides everything */
                break;
            }
            assert_true(n > 0 && pos + n <= fed);
            if (seg == TOOL_SEG_TEXT) {
                assert_null(c);
                memcpy(out->content + out->len, text + pos, n);
                out->len += n;
                if (!final) out->text_segs_before_end++;
            } else if (c) {
                assert_true(json_array_size(c) > 0);
                json_array_extend(out->calls, c);
            }
            json_decref(c);
            pos += n;
        }
    }
    out->content[out->len] = '\0';
    out->examined = ts.examined;
}

/* A reply holding NUL bytes keeps all of its content (the parse takes a length). */
static void test_nul_in_content(void **state) {
    (void)state;
    const char text[] = "a\0b {\"x\": 1}\0c";
    char *rest = NULL;
    size_t rlen = 0;
    json_t *c = gen_parse_tool_calls(text, sizeof text - 1, &rest, &rlen);
    assert_int_equal(json_array_size(c), 0);
    assert_int_equal(rlen, sizeof text - 1);
    assert_memory_equal(rest, text, rlen);
    json_decref(c);
    free(rest);
}

/* Streaming text in pieces of `piece` bytes gives what the one-shot parse gives; returns
 * the bytes the scanner read. */
static size_t check_pieces(const char *text, size_t piece) {
    char *rest = NULL;
    size_t rlen = 0;
    json_t *want = gen_parse_tool_calls(text, strlen(text), &rest, &rlen);
    streamed s;
    stream_parse(text, piece, &s);
    if (strcmp(s.content, rest) != 0 || !json_equal(s.calls, want))
        fail_msg("%.200s in pieces of %zu: content \"%.200s\" (want \"%.200s\"), %zu calls (want %zu)", text, piece,
                 s.content, rest, json_array_size(s.calls), json_array_size(want));
    size_t examined = s.examined;
    streamed_free(&s);
    json_decref(want);
    free(rest);
    return examined;
}

/* Every piece size from 1 byte to the whole text gives what the one-shot parse gives. */
static void check_splits(const char *text) {
    for (size_t piece = 1; piece <= strlen(text) + 1; piece++) check_pieces(text, piece);
}

/* One decision on text (not final): the kind and bytes of the first segment. */
static void expect_first(const char *text, tool_seg kind, size_t n_want) {
    tool_scan ts = { 0 };
    size_t n = 9999;
    json_t *c = NULL;
    tool_seg seg = tool_scan_next(&ts, text, strlen(text), false, &n, &c);
    if (seg != kind || n != n_want) fail_msg("\"%s\": segment %d of %zu bytes (want %d of %zu)", text, seg, n, kind, n_want);
    assert_true((seg == TOOL_SEG_CALLS) == (c != NULL));
    json_decref(c);
}

/* One step on text[*pos..avail) (not final); advances *pos. (Offsets, not pointers into a
 * literal: GCC 12.2 at -O1 and above folds strlen(literal + n) using n's value after a call
 * that changed n through its address.) */
static tool_seg scan_step(tool_scan *ts, const char *text, size_t avail, size_t *pos, json_t **calls) {
    size_t n = 0;
    tool_seg seg = tool_scan_next(ts, text + *pos, avail - *pos, false, &n, calls);
    *pos += n;
    return seg;
}

/* ---- formats ---------------------------------------------------------------------------- */

static void test_hermes(void **state) {
    (void)state;
    json_t *c = parse_expect("Sure.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
                             "<tool_call>{\"name\":\"t2\",\"arguments\":\"{\\\"x\\\":1}\"}</tool_call>",
                             2, "Sure.");
    assert_string_equal(call_name(c, 0), "get_weather");
    assert_string_equal(json_string_value(json_object_get(call_args(c, 0), "city")), "Paris");
    assert_int_equal(json_integer_value(json_object_get(call_args(c, 1), "x")), 1); /* arguments as a JSON string */
    json_decref(c);
    /* blanks around calls belong to them; text after a call stays content */
    json_decref(parse_expect("Let me check.\n\n<tool_call>\n{\"name\":\"a\",\"arguments\":{}}\n</tool_call>\nDone.", 1, "Let me check.Done."));
}

static void test_hermes_unterminated(void **state) {
    (void)state;
    /* generation stopped at EOS right after the JSON, before </tool_call> */
    json_t *c = parse_expect("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n", 1, "");
    assert_string_equal(call_name(c, 0), "get_weather");
    json_decref(c);
    json_decref(parse_expect("<tool_call>{\"name\":\"a\",\"arguments\":{}}<tool_call>{\"name\":\"b\",\"arguments\":{}}", 2, ""));
    /* the JSON itself cut short is not a call */
    json_decref(parse_expect("<tool_call>{\"name\":\"x\"", 0, "<tool_call>{\"name\":\"x\""));
}

static void test_mistral(void **state) {
    (void)state;
    json_t *c = parse_expect("[TOOL_CALLS] [{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}},"
                             "{\"name\":\"get_time\",\"arguments\":{\"tz\":\"CET\"},\"id\":\"a1b2c3d4e\"}]",
                             2, "");
    assert_string_equal(call_name(c, 0), "get_weather");
    assert_string_equal(call_name(c, 1), "get_time");
    assert_string_equal(json_string_value(json_object_get(call_args(c, 1), "tz")), "CET");
    json_decref(c);
    /* v11 templates: name[ARGS]{...}, one marker per call */
    c = parse_expect("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\", \"days\": [1, 2]}[TOOL_CALLS]noop[ARGS]{}", 2, "");
    assert_string_equal(call_name(c, 0), "get_weather");
    assert_int_equal(json_array_size(json_object_get(call_args(c, 0), "days")), 2);
    assert_string_equal(call_name(c, 1), "noop");
    json_decref(c);
    /* a marker followed by something else stays as it was */
    json_decref(parse_expect("[TOOL_CALLS] I cannot call tools.", 0, "[TOOL_CALLS] I cannot call tools."));
    json_decref(parse_expect("[TOOL_CALLS]f[ARGS]{\"a\":", 0, "[TOOL_CALLS]f[ARGS]{\"a\":"));
}

static void test_bare(void **state) {
    (void)state;
    json_t *c = parse_expect("[{\"name\":\"a\",\"arguments\":{\"k\":1}}, {\"name\":\"b\",\"parameters\":{}}]", 2, "");
    assert_string_equal(call_name(c, 1), "b");
    json_decref(c);
    /* Llama 3: one object per call, separated by a newline or a semicolon */
    c = parse_expect("{\"name\": \"a\", \"parameters\": {\"x\": 1}}\n{\"name\": \"b\", \"parameters\": {\"y\": 2}}", 2, "");
    assert_int_equal(json_integer_value(json_object_get(call_args(c, 1), "y")), 2);
    json_decref(c);
    json_decref(parse_expect("{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}", 2, ""));
    json_decref(parse_expect("  <|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": [1, 2]}}", 1, ""));
    /* Llama 3.2's "type" key and OpenAI's nested shape */
    c = parse_expect("{\"type\": \"function\", \"name\": \"f\", \"parameters\": {}}", 1, "");
    json_decref(c);
    c = parse_expect("{\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"q\\\":\\\"x\\\"}\"}}", 1, "");
    assert_string_equal(call_name(c, 0), "g");
    assert_string_equal(json_string_value(json_object_get(call_args(c, 0), "q")), "x");
    json_decref(c);
    /* text after the calls stays content; a value that is not a call ends the calls */
    json_decref(parse_expect("{\"name\":\"a\",\"arguments\":{}}\nI called a.", 1, "I called a."));
    json_decref(parse_expect("{\"name\":\"a\",\"arguments\":{}} {\"x\": 1}", 1, "{\"x\": 1}"));
}

static void test_not_calls(void **state) {
    (void)state;
    const char *plain[] = {
        "no tools here",
        "Use {name} and {arguments} in the template.",
        "{Hello} world",
        "{\"name\": \"Bob\", \"age\": 42}",                               /* a key no call has */
        "{\"name\": 5, \"arguments\": {}}",                               /* name not a string */
        "{\"name\": \"\", \"arguments\": {}}",
        "{\"name\": \"f\"}",                                              /* no arguments */
        "{\"name\": \"f\", \"arguments\": \"not json\"}",
        "{\"name\": \"f\", \"arguments\": [1]}",
        "{\"name\": \"f\", \"arguments\": {}, \"parameters\": {}}",
        "{\"type\": \"tool\", \"name\": \"f\", \"arguments\": {}}",
        "{\"arguments\": {}}",
        "[1, 2, 3]",
        "[]",
        "[{\"name\":\"a\",\"arguments\":{}}, 5]",                         /* every element must be a call */
        "[{\"name\":\"a\",\"arguments\":{}}, {\"name\":\"b\"}]",
        "The call would be {\"name\": \"a\", \"arguments\": {}} here.",   /* bare JSON mid-reply */
        "<tool_call>{not json}</tool_call>",
        "<tool_call></tool_call>",
        "<|python_tag|>brave_search.call(query=\"x\")",
        "{\"name\": \"a\", \"arguments\": {}",                            /* cut short */
        "",
        "   \n",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) json_decref(parse_expect(plain[i], 0, plain[i]));
}

/* ---- streaming ------------------------------------------------------------------------------ */

static void test_scan_decisions(void **state) {
    (void)state;
    expect_first("Hello", TOOL_SEG_TEXT, 5);
    expect_first("Hello \n", TOOL_SEG_TEXT, 5);                 /* trailing blanks wait */
    expect_first("  \n", TOOL_SEG_MORE, 0);
    expect_first("{", TOOL_SEG_MORE, 0);                        /* may be a call */
    expect_first(" [", TOOL_SEG_MORE, 0);
    expect_first("{\"name\": \"get_weather\", \"argu", TOOL_SEG_MORE, 0);
    expect_first("{Hello", TOOL_SEG_TEXT, 1);                   /* cannot be JSON: flushed */
    expect_first("{\"answer\": \"it is", TOOL_SEG_TEXT, 1);    /* a key no call has */
    expect_first("[1, 2", TOOL_SEG_TEXT, 1);
    expect_first("{\"name\": 5} and", TOOL_SEG_TEXT, 11);       /* a whole value that is not a call */
    expect_first("<tool", TOOL_SEG_MORE, 0);                    /* a marker forming */
    expect_first("Hi <tool_c", TOOL_SEG_TEXT, 2);
    expect_first("Hi <b>", TOOL_SEG_TEXT, 6);
    expect_first("a < b", TOOL_SEG_TEXT, 5);
    expect_first("<tool_call>\n{\"name\":\"f\",", TOOL_SEG_MORE, 0);
    expect_first("<tool_call>{\"name\":\"f\",\"arguments\":{}}", TOOL_SEG_CALLS, 38);
    expect_first("\n{\"name\":\"f\",\"arguments\":{}}\n", TOOL_SEG_CALLS, 28);
    expect_first("[TOOL_CALLS]", TOOL_SEG_MORE, 0);
    expect_first("[TOOL_CALLS]get_weath", TOOL_SEG_MORE, 0);
    expect_first("[TOOL_CALLS]get_weather[AR", TOOL_SEG_MORE, 0);
    expect_first("[TOOL_CALLS]f[ARGS]{\"a\":1}", TOOL_SEG_CALLS, 26);
    expect_first("[TOOL_CALLS] sorry", TOOL_SEG_TEXT, 12);
    expect_first("Sure. [TOOL_CALLS][{", TOOL_SEG_TEXT, 5);

    /* after a call: its closing tag and blanks wait, then are absorbed; then content */
    tool_scan ts = { 0 };
    json_t *c = NULL;
    const char *t = "<tool_call>{\"name\":\"f\",\"arguments\":{}}\n</tool_call> Hi {\"name\"";
    size_t at[] = { 38, 39, 45, 51, 52, 55, 62 }; /* how much of t has arrived at each step */
    size_t pos = 0;
    assert_int_equal(scan_step(&ts, t, at[0], &pos, &c), TOOL_SEG_CALLS);
    assert_int_equal(json_array_size(c), 1);
    json_decref(c);
    assert_int_equal(scan_step(&ts, t, at[1], &pos, &c), TOOL_SEG_CALLS); /* the blank */
    assert_null(c);
    assert_int_equal(scan_step(&ts, t, at[2], &pos, &c), TOOL_SEG_MORE); /* "</tool" */
    assert_int_equal(scan_step(&ts, t, at[3], &pos, &c), TOOL_SEG_CALLS); /* "</tool_call>" */
    assert_true(pos == 51 && !c);
    assert_int_equal(scan_step(&ts, t, at[4], &pos, &c), TOOL_SEG_CALLS); /* the blank */
    assert_int_equal(scan_step(&ts, t, at[5], &pos, &c), TOOL_SEG_TEXT);  /* "Hi" */
    assert_int_equal(pos, 54);
    /* after content, a bare value is content at once */
    assert_int_equal(scan_step(&ts, t, at[6], &pos, &c), TOOL_SEG_TEXT);
    assert_int_equal(pos, 62);
}

static void test_stream_splits(void **state) {
    (void)state;
    const char *texts[] = {
        "Sure.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par\\u00eds \\\"}\"}}\n</tool_call>\n"
        "<tool_call>{\"name\":\"t2\",\"arguments\":\"{\\\"x\\\":1}\"}</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n",
        "[TOOL_CALLS] [{\"name\":\"a\",\"arguments\":{\"s\":\"]}\"}},{\"name\":\"b\",\"arguments\":{}}]",
        "[TOOL_CALLS]a[ARGS]{\"x\":[1,{\"y\":2}]}[TOOL_CALLS]b[ARGS]{}",
        "{\"name\": \"a\", \"parameters\": {}}\n{\"name\": \"b\", \"parameters\": {}}",
        "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}} ; then text",
        "[{\"name\":\"a\",\"arguments\":{}}] and some text < with [brackets] {and braces}",
        "Plain prose with {braces}, [brackets], a < b and <b>tags</b>.\n\nTwo paragraphs.  ",
        "{\"name\": \"Bob\", \"age\": 42}",
        "Thinking... <tool_call>{broken}</tool_call> <tool_call>{\"name\":\"ok\",\"arguments\":{}}</tool_call>",
        "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}",
        "[TOOL_CALLS",
        "text then <tool_ca",
        "",
        /* pieces that end inside blanks, keys, strings and escapes: the scanner goes on there */
        "  <tool_call>  \n {\"name\" : \"f\" , \"arguments\" : { \"a\" : [ 1 , { \"b\" : \"}\\\\\" } ] } }  </tool_call>  ",
        "{\"name\":\"a\",\"arguments\":{}} ,  [{\"name\":\"b\",\"arguments\":{}}]",
        "[TOOL_CALLS]  [ {\"name\":\"a\",\"arguments\":{}} , {\"id\":\"x\",\"type\":\"function\",\"function\":"
        "{\"name\":\"b\",\"arguments\":\"{\\\"k\\\":[]}\"}} ]",
        "{\"na\\u006de\":\"f\",\"arguments\":{}}",                       /* a key spelled with an escape */
        "{\"name\":\"f\",\"arguments\":{}, \"argumentsX\":{}} tail",
        "[TOOL_CALLS]f[ARGS]{\"a\":\"[ARGS]\\\"}\"}  [TOOL_CALLS]g[ARGS] {}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) check_splits(texts[i]);
}

/* Ordinary text is not held: with one-byte pieces only the blanks at the end of each piece
 * wait, so content is decided long before the end. */
static void test_stream_incremental(void **state) {
    (void)state;
    streamed s;
    stream_parse("Once upon a time there was a dragon.", 1, &s);
    assert_string_equal(s.content, "Once upon a time there was a dragon.");
    assert_true(s.text_segs_before_end >= 20);
    assert_int_equal(json_array_size(s.calls), 0);
    streamed_free(&s);
    /* text before a call streams too; the call is not content */
    stream_parse("Let me look. <tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>", 4, &s);
    assert_string_equal(s.content, "Let me look.");
    assert_true(s.text_segs_before_end >= 3);
    assert_int_equal(json_array_size(s.calls), 1);
    streamed_free(&s);
}

/* A text made of parts, each `count` copies of `s`; a NULL s ends the list. */
typedef struct part {
    const char *s;
    size_t count;
} part;

/* The text of parts[] (caller frees). */
static char *build_text(const part *parts) {
    size_t len = 0;
    for (const part *p = parts; p->s; p++) len += strlen(p->s) * p->count;
    char *t = malloc(len + 1), *w = t;
    assert_non_null(t);
    for (const part *p = parts; p->s; p++)
        for (size_t k = 0; k < p->count; k++) w = stpcpy(w, p->s);
    *w = '\0';
    return t;
}

/* Long held text (a call's long argument, long runs of blanks, deep nesting) streamed in
 * small pieces: the scanner reads each byte a few times at most — it goes on where it
 * stopped instead of reading the held text again for every piece, which would read about
 * len^2 / (2 * piece) bytes — and still gives what the one-shot parse gives. */
static void test_stream_long_held(void **state) {
    (void)state;
    enum { N = 20000 };
    const part texts[][7] = {
        { { "{\"name\":\"x\",\"arguments\":{\"a\":\"", 1 }, { "a", N }, { "\"}}", 1 } },
        { { "<tool_call>", 1 }, { "\n", N }, { "{\"name\":\"f\",\"arguments\":{}}</tool_call>", 1 } },
        { { "Hi.", 1 }, { " ", N }, { "there", 1 } },
        { { "[TOOL_CALLS]f[ARGS]{\"a\":\"", 1 }, { "z", N }, { "\"}", 1 } },
        { { "{\"name\":\"a\",\"arguments\":{}};", 1 }, { " ", N }, { "{\"name\":\"b\",\"arguments\":{}}", 1 } },
        /* blanks before a marker, blanks after it and a long value: three places to go on from */
        { { " ", N }, { "<tool_call>", 1 }, { "\t", N }, { "{\"name\":\"f\",\"arguments\":{\"s\":\"", 1 }, { "x", N },
          { "\"}}", 1 } },
        { { "[{\"name\":\"x\",\"arguments\":{\"a\":", 1 }, { "[", 1000 }, { "]", 1000 }, { "}}]", 1 } }, /* depth (jansson takes 2048) */
        { { "{\"name\":\"x\",\"arguments\":{\"a\":\"", 1 }, { "\\\\\\\"", N }, { "\"}}", 1 } },    /* escapes */
        { { "{\"name\":\"x\",\"arguments\":{\"a\":\"", 1 }, { "a", N }, { "\"},\"zz\":1} after", 1 } }, /* no call */
        { { "<tool_call>{\"name\":\"x\",\"arguments\":{\"a\":\"", 1 }, { "a", N } },                        /* cut short */
    };
    const size_t want_calls[] = { 1, 1, 0, 1, 2, 1, 1, 1, 0, 0 };
    const size_t pieces[] = { 1, 3, 64 };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char *t = build_text(texts[i]);
        size_t len = strlen(t);
        json_decref(parse_expect_calls(t, want_calls[i]));
        for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
            size_t examined = check_pieces(t, pieces[p]);
            if (examined < len / 2 || examined > 8 * len)
                fail_msg("text %zu (%zu bytes) in pieces of %zu: the scanner read %zu bytes", i, len, pieces[p], examined);
        }
        free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_in_content),
        cmocka_unit_test(test_hermes),         cmocka_unit_test(test_hermes_unterminated), cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_bare),           cmocka_unit_test(test_not_calls),           cmocka_unit_test(test_scan_decisions),
        cmocka_unit_test(test_stream_splits),  cmocka_unit_test(test_stream_incremental),  cmocka_unit_test(test_stream_long_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
