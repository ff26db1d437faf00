/* tests.c — Jinja2 built-in tests (`x is defined`, `x is string`, `x is equalto y`, ...).
 * As in Jinja2, undefined counts as iterable (it iterates as empty) and booleans count as
 * numbers.
 */
#include <string.h>

#include "chat/jinja.h"

typedef int (*test_fn)(jctx *c, jv v, jv arg, bool *out);

static int t_defined(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t != JT_UNDEF; return 0; }
static int t_undefined(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_UNDEF; return 0; }
static int t_none(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_NONE; return 0; }
static int t_boolean(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_BOOL; return 0; }
static int t_true(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_BOOL && v.u.b; return 0; }
static int t_false(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_BOOL && !v.u.b; return 0; }
static int t_integer(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_INT; return 0; }
static int t_float(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_FLOAT; return 0; }
static int t_number(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = jv_is_number(v); return 0; }
static int t_string(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_STR; return 0; }
static int t_mapping(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_DICT; return 0; }
static int t_iterable(jctx *c, jv v, jv a, bool *o) {
    (void)c; (void)a;
    *o = v.t == JT_UNDEF || v.t == JT_STR || v.t == JT_LIST || v.t == JT_DICT;
    return 0;
}
static int t_sequence(jctx *c, jv v, jv a, bool *o) {
    (void)c; (void)a;
    *o = v.t == JT_UNDEF || v.t == JT_STR || v.t == JT_LIST || v.t == JT_DICT;
    return 0;
}
static int t_callable(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_FUNC || v.t == JT_MACRO; return 0; }
static int t_escaped(jctx *c, jv v, jv a, bool *o) { (void)c; (void)a; *o = v.t == JT_STR && v.safe; return 0; }

/* `is sameas`: Python identity. Scalars compare by value and type (None/True/False and
 * small ints are singletons); containers by reference. */
static int t_sameas(jctx *c, jv v, jv a, bool *o) {
    (void)c;
    if (v.t != a.t) { *o = false; return 0; }
    switch (v.t) {
    case JT_LIST: *o = v.u.l == a.u.l; break;
    case JT_DICT: case JT_NS: *o = v.u.d == a.u.d; break;
    case JT_STR: *o = v.u.s == a.u.s; break;
    default: *o = jv_equal(v, a);
    }
    return 0;
}

static int cmp(jctx *c, int op, jv v, jv a, bool *o) {
    jv r;
    int rc = jinja_binop(c, op, v, a, &r);
    *o = !rc && r.u.b;
    return rc;
}
static int t_eq(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_EQ, v, a, o); }
static int t_ne(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_NE, v, a, o); }
static int t_lt(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_LT, v, a, o); }
static int t_le(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_LE, v, a, o); }
static int t_gt(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_GT, v, a, o); }
static int t_ge(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_GE, v, a, o); }
static int t_in(jctx *c, jv v, jv a, bool *o) { return cmp(c, JOP_IN, v, a, o); }

static int int_of(jctx *c, jv v, int64_t *out) {
    if (v.t == JT_INT || v.t == JT_BOOL) { *out = v.t == JT_BOOL ? v.u.b : v.u.i; return 0; }
    if (v.t == JT_FLOAT) { *out = (int64_t)v.u.f; return 0; }
    if (v.t == JT_UNDEF) return jinja_fail(c, "%s", v.u.undef_hint ? v.u.undef_hint : "value is undefined");
    return jinja_fail(c, "expected a number, got %s", jv_type_name(v));
}
static int t_divisibleby(jctx *c, jv v, jv a, bool *o) {
    int64_t x = 0, y = 1;
    int rc;
    if ((rc = int_of(c, v, &x)) || (rc = int_of(c, a, &y))) return rc;
    if (y == 0) return jinja_fail(c, "integer division or modulo by zero");
    *o = y == -1 || x % y == 0;
    return 0;
}
static int t_even(jctx *c, jv v, jv a, bool *o) { int64_t x = 0; (void)a; int rc = int_of(c, v, &x); *o = x % 2 == 0; return rc; }
static int t_odd(jctx *c, jv v, jv a, bool *o) { int64_t x = 0; (void)a; int rc = int_of(c, v, &x); *o = x % 2 != 0; return rc; }

static int t_case(jctx *c, jv v, bool lower, bool *o) {
    if (v.t != JT_STR) return jinja_fail(c, "'%s' object has no attribute '%s'", jv_type_name(v), lower ? "islower" : "isupper");
    bool cased = false, ok = true;
    for (size_t i = 0; i < v.u.s->len; i++) {
        char ch = v.u.s->s[i];
        if (ch >= 'a' && ch <= 'z') { cased = true; ok = ok && lower; }
        if (ch >= 'A' && ch <= 'Z') { cased = true; ok = ok && !lower; }
    }
    *o = ok && cased;
    return 0;
}
static int t_lower(jctx *c, jv v, jv a, bool *o) { (void)a; return t_case(c, v, true, o); }
static int t_upper(jctx *c, jv v, jv a, bool *o) { (void)a; return t_case(c, v, false, o); }

typedef struct test_def { const char *name; test_fn fn; bool needs_arg; } test_def;
static const test_def k_tests[] = {
    { "defined", t_defined, false }, { "undefined", t_undefined, false }, { "none", t_none, false },
    { "boolean", t_boolean, false }, { "true", t_true, false }, { "false", t_false, false },
    { "integer", t_integer, false }, { "float", t_float, false }, { "number", t_number, false },
    { "string", t_string, false }, { "mapping", t_mapping, false }, { "iterable", t_iterable, false },
    { "sequence", t_sequence, false }, { "callable", t_callable, false }, { "escaped", t_escaped, false },
    { "sameas", t_sameas, true }, { "eq", t_eq, true }, { "equalto", t_eq, true }, { "==", t_eq, true },
    { "ne", t_ne, true }, { "!=", t_ne, true }, { "lt", t_lt, true }, { "lessthan", t_lt, true },
    { "<", t_lt, true }, { "le", t_le, true }, { "<=", t_le, true }, { "gt", t_gt, true },
    { "greaterthan", t_gt, true }, { ">", t_gt, true }, { "ge", t_ge, true }, { ">=", t_ge, true },
    { "in", t_in, true }, { "divisibleby", t_divisibleby, true }, { "even", t_even, false },
    { "odd", t_odd, false }, { "lower", t_lower, false }, { "upper", t_upper, false },
};

static const test_def *find_test(const char *name) {
    for (size_t i = 0; i < sizeof k_tests / sizeof k_tests[0]; i++)
        if (!strcmp(k_tests[i].name, name)) return &k_tests[i];
    return NULL;
}

bool jinja_has_test(const char *name) { return find_test(name) != NULL; }

int jinja_test(jctx *c, const char *name, jv v, const jargs *a, bool *out) {
    const test_def *t = find_test(name);
    if (!t) return jinja_fail(c, "unknown test '%s'", name);
    jv arg = a->n ? a->pos[0] : a->nkw ? a->kw[0] : jv_undef(NULL);
    if (t->needs_arg && !a->n && !a->nkw) return jinja_fail(c, "test '%s' needs an argument", name);
    int rc = jinja_step(c, 1);
    return rc ? rc : t->fn(c, v, arg, out);
}
