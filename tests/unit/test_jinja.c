/* Unit tests of the chat-template interpreter (src/chat) through hearth_template_render.
 *
 * Expected strings were produced independently by Python Jinja2 3.1.6 configured as
 * Hugging Face does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
 * loopcontrols, tojson = json.dumps(ensure_ascii=False)), with the variables in k_vars.
 * Hostile templates must end quickly with HEARTH_E_TEMPLATE and a clear message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "hearth.h"

static const char k_vars[] =
    "{\"d\": {\"a\": 1, \"b\": [1, 2], \"c\": {\"x\": \"y\"}}, \"s\": \"Hello World\", \"n\": null,"
    " \"l\": [3, 1, 2], \"e\": [], \"f\": 2.5, \"i\": 7, \"t\": true,"
    " \"msgs\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}";

static char g_err[512];

/* Renders with k_vars; returns the output (caller frees) or NULL with g_err set. */
static char *render(const char *tmpl) {
    char *out = NULL;
    hearth_status st = hearth_template_render(tmpl, k_vars, "2025-01-15T12:00:00", &out, g_err, sizeof g_err);
    if (st != HEARTH_OK) {
        assert_null(out);
        return NULL;
    }
    return out;
}

#define EXPECT(tmpl, want)                                              \
    do {                                                                \
        char *o_ = render(tmpl);                                        \
        if (!o_) fail_msg("render failed: %s\n  template: %s", g_err, tmpl); \
        if (strcmp(o_, want) != 0)                                      \
            fail_msg("template: %s\n  want: [%s]\n  got:  [%s]", tmpl, want, o_); \
        hearth_free(o_);                                                \
    } while (0)

/* Must fail with HEARTH_E_TEMPLATE and a message containing `part`. */
static void expect_error(const char *tmpl, const char *part) {
    char *out = NULL;
    hearth_status st = hearth_template_render(tmpl, k_vars, NULL, &out, g_err, sizeof g_err);
    if (st != HEARTH_E_TEMPLATE) fail_msg("want a template error for: %.200s (status %d)", tmpl, st);
    assert_null(out);
    if (!strstr(g_err, part)) fail_msg("error '%s' lacks '%s'", g_err, part);
}

static void test_whitespace(void **state) {
    (void)state;
    EXPECT("  {% if true %}\n  yes\n  {% endif %}\n  end", "  yes\n  end");
    EXPECT("a\n{% if true %}\nb\n{% endif %}\nc\n", "a\nb\nc");
    EXPECT("a {#- c -#} b {# c2 #}\n  {# c3 #}\nz", "ab z");
    EXPECT("  {{- 'x' -}}  \n  {%- if 1 %} y {% endif -%}  \n w", "x y w");
    EXPECT("{%+ if true %}x{% endif %}\n  {%+ if true %}y{% endif +%}\nz", "x  y\nz");
    EXPECT("line1\r\nline2\r{{ 'x' }}\n\n", "line1\nline2\nx\n");
    EXPECT("{% raw %}{{ not rendered }}{% endraw %}", "{{ not rendered }}");
    EXPECT("{{ 'a' }}\n", "a");
    EXPECT("{{ 'a' }}\n{{ 'b' }}", "a\nb");
}

static void test_literals_and_printing(void **state) {
    (void)state;
    EXPECT("{{ [1, 2.5, \"a'b\", 'q\"', none, true, {\"k\": (1,)}, ()] }}",
           "[1, 2.5, \"a'b\", 'q\"', None, True, {'k': (1,)}, ()]");
    EXPECT("{{ 1e20 }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 1e16 }} {{ 123456789.123 }} {{ -0.0 }} {{ 3.0e-4 }}",
           "1e+20 1.0 0.30000000000000004 1e-05 1e+16 123456789.123 -0.0 0.0003");
    EXPECT("{{ \"a\" ~ 1 ~ none ~ true ~ [1,'x'] ~ {'k': 'v'} }}", "a1NoneTrue[1, 'x']{'k': 'v'}");
    EXPECT("{{ d.items() }}", "dict_items([('a', 1), ('b', [1, 2]), ('c', {'x': 'y'})])");
    EXPECT("{{ ['n\\n\\x01\\u2028\xc3\xa9'] }}", "['n\\n\\x01\\u2028\xc3\xa9']");
    EXPECT("{{ '\\x41\\u00e9\\U0001F600\\101' }}", "A\xc3\xa9\xf0\x9f\x98\x80" "A");
    EXPECT("{{ \"a\" \"b\" }}", "ab");
}

static void test_operators(void **state) {
    (void)state;
    EXPECT("{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7 / 2 }} {{ 1.5 * 2 }}",
           "3 3 -4 -2 1024 0.5 3.5 3.0");
    EXPECT("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 1 == 1.0 }} {{ 'a' in ['a'] }} {{ 'x' not in d }} {{ 'a' in d }}",
           "True False True True True True True True");
    EXPECT("{{ 'yes' if t else 'no' }} {{ 'yes' if n else 'no' }} {{ 'x' if false }}|{{ t and 'a' or 'b' }} {{ n or 'dflt' }} {{ 0 and 1 }} {{ not n }}",
           "yes no |a dflt 0 True");
    EXPECT("{{ \"%s and %d\" % (\"a\", 3) }} {{ \"%05.2f\" % 3.14159 }} {{ \"{} {}\".format(1, 'b') }}", "a and 3 03.14 1 b");
    /* a padded field longer than any fixed buffer comes out whole */
    EXPECT("{{ ('%5s|' % ('ab' * 300)) | length }} {{ ('%-600s|' % 'x') | length }}", "601 601");
    /* negative hex/octal as Python writes them (sign, then magnitude), not two's complement */
    EXPECT("{{ '%x|%X|%o|%#x|%5x|%-5x|%05x|%#06x|%.3x' % (-1, -255, -8, -255, -1, -1, -1, -1, -5) }}",
           "-1|-FF|-10|-0xff|   -1|-1   |-0001|-0x001|-005");
    EXPECT("{{ '%x' % (-9223372036854775807 - 1) }}", "-8000000000000000");
    /* where Python's % and C's printf differ for integers */
    EXPECT("{{ '%05.3x|%#x|%#o|%+x|% x|%#08x|%-#8x|%+05x|%#.3o|%05.3d|%#X|%+d|%i' % (5, 0, 8, 5, 5, 255, 255, 5, 8, 5, 255, 3, -7) }}",
           "00005|0x0|0o10|+5| 5|0x0000ff|0xff    |+0005|0o010|00005|0XFF|+3|-7");
    EXPECT("{{ 2 * 'ab' }} {{ [0] * 3 }} {{ 10.5 // 2 }} {{ -10 % 3 }}", "abab [0, 0, 0] 5.0 2");
    /* Markup (|safe) + str escapes the str, as markupsafe does; ~ does not */
    EXPECT("{{ (\"<\" | safe) + \"<\" }} {{ \"<\" + (\"<\" | safe) }} {{ \"<\" ~ (\"<\" | safe) }}", "<&lt; &lt;< <<");
}

static void test_access_and_slicing(void **state) {
    (void)state;
    EXPECT("{{ s[0] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[::2] }} {{ s[-3:] }} {{ s[:-3] }} {{ l[::-1] }} {{ l[1:] }} {{ l[5:] }}",
           "H d el dlroW olleH HloWrd rld Hello Wo [2, 1, 3] [1, 2] []");
    EXPECT("{{ d.a }} {{ d['a'] }} {{ d.z }} {{ d.c.x }} {{ l.0 }}", "1 1  y 3");
    EXPECT("{{ msgs[0].role }} {{ msgs[-1]['content'] }} {{ msgs | length }}", "user yo 2");
    EXPECT("{{ '\xf0\x9f\x98\x80" "a'[1] }} {{ '\xc3\xa9' | length }}", "a 1");
}

static void test_undefined(void **state) {
    (void)state;
    EXPECT("{{ x }}|{{ x | default('dflt') }}|{{ n | default('dflt') }}|{{ n | default('dflt', true) }}|{{ '' | d('e', true) }}",
           "|dflt|None|dflt|e");
    EXPECT("{{ x is defined }} {{ x | length }} {{ x | list }} {{ x is iterable }} {{ none.x }}|", "False 0 [] True |");
    EXPECT("{% for a in x %}no{% else %}empty{% endfor %}", "empty");
    expect_error("{{ x.y }}", "'x' is undefined");
    expect_error("{{ x + 1 }}", "'x' is undefined");
    expect_error("{{ d.z.w }}", "'dict object' has no attribute 'z'");
    expect_error("{{ none.x.y }}", "'None' has no attribute 'x'");
    expect_error("{{ l.append(1) }}", "unsafe");
}

static void test_loops(void **state) {
    (void)state;
    EXPECT("{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}"
           "{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a','b') }}|{% endfor %}",
           "1032TrueFalse31a|2121FalseFalse332b|3210FalseTrue31a|");
    EXPECT("{% for x in l if x > 1 %}{{ loop.index }}:{{ x }}:{{ loop.length }} {% endfor %}", "1:3:2 2:2:2 ");
    EXPECT("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=[1, 2];c={'x': 'y'};");
    EXPECT("{% for c in \"h\xc3\xa9\" %}[{{ c }}]{% endfor %}", "[h][\xc3\xa9]");
    EXPECT("{% for x in l %}{% if x == 1 %}{% break %}{% endif %}{{ x }}{% endfor %}|"
           "{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}", "3|32");
    EXPECT("{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }};{% endfor %}",
           "11221;13242;");
    expect_error("{% for x in n %}{% endfor %}", "'NoneType' object is not iterable");
}

static void test_scoping_and_namespace(void **state) {
    (void)state;
    EXPECT("{% set y = 1 %}{% for x in l %}{% set y = y + x %}{{ y }}{% endfor %}{{ y }}", "4231");
    EXPECT("{% for x in [1,2] %}{% if loop.first %}{% set z = 5 %}{% endif %}[{{ z }}]{% endfor %}[{{ z }}]", "[5][][]");
    EXPECT("{% if true %}{% set z = 5 %}{% endif %}{{ z }}", "5");
    EXPECT("{% set ns = namespace(a=1, b=[]) %}{% for x in l %}{% set ns.a = ns.a + x %}{% set ns.b = ns.b + [x] %}"
           "{% endfor %}{{ ns.a }} {{ ns.b }}", "7 [3, 1, 2]");
    EXPECT("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% with q = 5 %}{{ q }}{% endwith %}{{ q }}", "125");
    EXPECT("{% set blk %}a{{ 1 }}b{% endset %}[{{ blk }}]", "[a1b]");
    EXPECT("{% filter upper %}hello {{ s }}{% endfilter %}", "HELLO HELLO WORLD");
}

static void test_macros(void **state) {
    (void)state;
    EXPECT("{% macro m(a, b='B', c=none) %}[{{ a }}{{ b }}{{ c }}{{ varargs }}{{ kwargs }}]{% endmacro %}"
           "{{ m(1) }}{{ m(1, 2) }}{{ m(1, c=3) }}{{ m() }}",
           "[1BNone(){}][12None(){}][1B3(){}][BNone(){}]");
    EXPECT("{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}", "54321");
    EXPECT("{% macro w2(x) %}<{{ caller(x * 2) }}>{% endmacro %}{% call(v) w2(21) %}v={{ v }}{% endcall %}", "<v=42>");
    EXPECT("{% set x = 1 %}{% macro g() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ g() }}", "2");
}

static void test_filters(void **state) {
    (void)state;
    EXPECT("{{ l | sort }} {{ ['b','A','a','B'] | sort }} {{ ['b','A','a','B'] | sort(case_sensitive=true) }} {{ 'abc' | reverse }}",
           "[1, 2, 3] ['A', 'a', 'b', 'B'] ['A', 'B', 'a', 'b'] cba");
    EXPECT("{{ ['a','A','b'] | unique | list }} {{ l | first }} {{ l | last }} {{ s | length }}", "['a', 'b'] 3 2 11");
    EXPECT("{{ msgs | map(attribute='role') | list }} {{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join(', ') }}",
           "['user', 'assistant'] yo");
    EXPECT("{{ [1,2,3,4] | select('odd') | list }} {{ [0,1,'',none,'a'] | select | list }} {{ ['a','b'] | map('upper') | list }}",
           "[1, 3] [1, 'a'] ['A', 'B']");
    EXPECT("{{ \"hello-world (x)\" | title }} {{ \"hELLO\" | capitalize }} {{ \"  a  \" | trim }}|{{ \"xxaxx\" | trim('x') }}",
           "Hello-World (X) Hello a|a");
    EXPECT("{{ \"a\\nb\\n\" | indent }}|{{ \"a\\nb\\n\\nc\" | indent(2, true) }}|{{ \"a\\n\\nb\" | indent(2, blank=true) }}",
           "a\n    b\n|  a\n  b\n\n  c|a\n  \n  b");
    EXPECT("{{ 3.7 | int }} {{ \"4.5\" | int }} {{ \"x\" | int(7) }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ -3 | abs }}",
           "3 4 7 2.0 3.14 3");
    EXPECT("{{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ [1,2,3,4,5] | batch(2) | list }} {{ \"a<b>&'\\\"\" | e }}",
           "[('b', 1), ('a', 2)] [[1, 2], [3, 4], [5]] a&lt;b&gt;&amp;&#39;&#34;");
    EXPECT("{{ s.split('o', 1) }} {{ s.rsplit('o', 1) }} {{ \"a,b,,c\".split(',') }} {{ ' a b '.split() }}",
           "['Hell', ' World'] ['Hello W', 'rld'] ['a', 'b', '', 'c'] ['a', 'b']");
}

static void test_tojson(void **state) {
    (void)state;
    EXPECT("{{ d | tojson }}", "{\"a\": 1, \"b\": [1, 2], \"c\": {\"x\": \"y\"}}");
    EXPECT("{{ d | tojson(indent=2) }}",
           "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {\n    \"x\": \"y\"\n  }\n}");
    EXPECT("{{ [1, [2, {}], []] | tojson(indent=1) }}", "[\n 1,\n [\n  2,\n  {}\n ],\n []\n]");
    EXPECT("{{ \"\xc3\xa9\\n\\\"\\\\\\t\\u0001\" | tojson }}", "\"\xc3\xa9\\n\\\"\\\\\\t\\u0001\"");
    EXPECT("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ l | tojson(separators=(',', ':')) }}",
           "{\"a\": 2, \"b\": 1} [3,1,2]");
    EXPECT("{{ {'a': none, 'b': true, 'c': 1.5, 'd': '\xc3\xa9\xf0\x9f\x98\x80'} | tojson(ensure_ascii=true) }}",
           "{\"a\": null, \"b\": true, \"c\": 1.5, \"d\": \"\\u00e9\\ud83d\\ude00\"}");
    EXPECT("{{ {'a': 1} | tojson(indent=0) }}", "{\n\"a\": 1\n}");
    expect_error("{{ x | tojson }}", "not JSON serializable");
}

static void test_globals(void **state) {
    (void)state;
    EXPECT("{{ strftime_now('%Y-%m-%d %H:%M:%S %a %A %b %B %d %j %p %I %y') }}",
           "2025-01-15 12:00:00 Wed Wednesday Jan January 15 015 PM 12 25");
    EXPECT("{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }}", "[0, 1, 2] [1, 4, 7] [5, 3, 1]");
    /* items near the int64 ends, where i * step alone would overflow */
    EXPECT("{{ range(-9223372036854775807, 9223372036854775807, 4611686018427387904) | list }}",
           "[-9223372036854775807, -4611686018427387903, 1, 4611686018427387905]");
    EXPECT("{{ range(9223372036854775807, -9223372036854775807, -9223372036854775807) | list }}",
           "[9223372036854775807, 0]");
    EXPECT("{{ dict(a=1, b=2) }} {{ namespace(a=1).a }}", "{'a': 1, 'b': 2} 1");
    char *out = NULL;
    assert_int_equal(hearth_template_render("{{ raise_exception('boom ' ~ 1) }}", "{}", NULL, &out, g_err, sizeof g_err),
                     HEARTH_E_TEMPLATE);
    assert_string_equal(g_err, "boom 1"); /* verbatim, no prefix */
    assert_int_equal(hearth_template_render("{{ 1 }}", "[1]", NULL, &out, g_err, sizeof g_err), HEARTH_E_INVALID);
    assert_int_equal(hearth_template_render("{{ 1 }}", "{bad", NULL, &out, g_err, sizeof g_err), HEARTH_E_INVALID);
    assert_int_equal(hearth_template_render("{{ 1 }}", "{}", "not-a-time", &out, g_err, sizeof g_err), HEARTH_E_INVALID);
    assert_null(out);
    /* NULL vars = no variables; NULL now = current time */
    assert_int_equal(hearth_template_render("{{ x is defined }}{{ strftime_now('%Y') | length }}", NULL, NULL, &out, g_err, sizeof g_err), HEARTH_OK);
    assert_string_equal(out, "False4");
    hearth_free(out);
}

static void test_error_lines(void **state) {
    (void)state;
    expect_error("a\nb\n{{ x | nosuch }}", "template line 3: unknown filter 'nosuch'");
    expect_error("{% if true %}\n{% frobnicate %}\n{% endif %}", "template line 2: unknown tag 'frobnicate'");
    expect_error("{% for x in l %}\n\nabc", "missing '{% endfor %}'");
    expect_error("\n{% include 'x' %}", "template line 2: the 'include' tag is not supported");
    expect_error("{{ 'abc' }\n", "unexpected '}'");
    expect_error("{{ 'abc }}", "unterminated string");
    expect_error("{% break %}", "outside of a for loop");
    expect_error("line1\n\n\n{{ 'a' + 1 }}", "template line 4: can only concatenate str (not \"int\") to str");
    expect_error("{{ x is nosuchtest }}", "unknown test 'nosuchtest'");
    expect_error("{# never closed", "missing end of comment");
}

static double seconds_since(struct timespec t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Builds `prefix` + `unit` * n + `suffix`. */
static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix) {
    size_t ul = strlen(unit), pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + ul * n + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < n; i++) memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + ul * n, suffix, sl + 1);
    return s;
}

static void hostile(const char *tmpl, const char *part) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_error(tmpl, part);
    double dt = seconds_since(t0);
    if (dt > 10.0) fail_msg("hostile template took %.1f s: %.80s", dt, tmpl);
}

/* A NUL in the variables would cut the C string a render returns: refused instead. */
static void test_nul_output(void **state) {
    (void)state;
    char *out = NULL;
    hearth_status st = hearth_template_render("{{ x }}|", "{\"x\":\"c\\u0000d\"}", NULL, &out, g_err, sizeof g_err);
    assert_int_not_equal(st, HEARTH_OK);
    assert_null(out);
    assert_non_null(strstr(g_err, "NUL byte"));
}

static void test_hostile(void **state) {
    (void)state;
    char *deep = repeat("{{ ", "(", 100000, "1 }}");
    hostile(deep, "nested too deeply");
    free(deep);
    deep = repeat("{{ ", "[", 5000, "");
    hostile(deep, "nested too deeply");
    free(deep);
    deep = repeat("", "{% if true %}", 5000, "");
    hostile(deep, "nested too deeply");
    free(deep);
    deep = repeat("{{ ", "not ", 5000, "1 }}");
    hostile(deep, "nested too deeply");
    free(deep);
    deep = repeat("{{ x", "|trim", 100000, " }}");
    hostile(deep, ""); /* long but flat: must simply succeed or fail cleanly */
    free(deep);
    hostile("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}",
            "too many loop iterations");
    hostile("{{ range(100000000) | length }}", "range() too large");
    hostile("{{ '%.2147483647f' % 1.0 }}", "format width or precision is too large");
    hostile("{{ '%d' % 1e300 }}", "out of the integer range");
    hostile("{{ '%5-3d' % 1 }}", "bad format specification");
    hostile("{{ '%1.2.3f' % 1.0 }}", "bad format specification");
    hostile("{{ '%2147483648d' | format(1) }}", "format width or precision is too large");
    hostile("{{ '%99999s' % 'a' }}", "format width or precision is too large");
    hostile("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "macro calls nested too deeply");
    hostile("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "MiB");
    hostile("{{ 'x' * 100000000 }}", "MiB");
    hostile("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "output longer than");
    hostile("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "");
    hostile("{% for i in range(10000) %}{{ range(100000) | sort | length }}{% endfor %}", "");
}

static void test_render_api_args(void **state) {
    (void)state;
    char *out = (char *)1;
    assert_int_equal(hearth_template_render(NULL, "{}", NULL, &out, g_err, sizeof g_err), HEARTH_E_INVALID);
    assert_null(out);
    assert_int_equal(hearth_template_render("{{ 1 }}", "{}", NULL, NULL, NULL, 0), HEARTH_E_INVALID);
    assert_int_equal(hearth_template_render("{{ 1 ", "{}", NULL, &out, NULL, 0), HEARTH_E_TEMPLATE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_literals_and_printing),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_access_and_slicing),
        cmocka_unit_test(test_undefined),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_scoping_and_namespace),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_globals),
        cmocka_unit_test(test_error_lines),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_nul_output),
        cmocka_unit_test(test_render_api_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
