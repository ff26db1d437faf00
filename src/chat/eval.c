/* eval.c — expression evaluation: names, literals, attribute/item access with Jinja2's
 * fallbacks, slicing, calls, filters, tests and the Python operators (+ - * / // % ** ~,
 * comparisons, in, and/or/not, conditional expressions).
 *
 * Undefined follows Jinja2's default Undefined: it prints as "", is false, iterates as
 * empty and has length 0, but using it further (attribute, item, call, arithmetic) is an
 * error whose message says what was undefined.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chat/jinja.h"

static int undef_fail(jctx *c, jv u) {
    return jinja_fail(c, "%s", u.u.undef_hint ? u.u.undef_hint : "value is undefined");
}

/* Hint strings live in the arena so an undefined value can carry them anywhere. */
static const char *hintf(jctx *c, const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
    char *h = jarena_alloc(c->ar, n);
    if (h) snprintf(h, n, fmt, a, b ? b : "");
    return h;
}

static const char *obj_desc(jv v) {
    switch (v.t) {
    case JT_NONE: return "'None'";
    case JT_DICT: return "'dict object'";
    case JT_LIST: return v.tuple ? "'tuple object'" : "'list object'";
    case JT_STR: return "'str object'";
    case JT_INT: return "'int object'";
    case JT_FLOAT: return "'float object'";
    case JT_BOOL: return "'bool object'";
    default: return "'object'";
    }
}

int jinja_getattr(jctx *c, jv obj, const char *name, jv *out) {
    switch (obj.t) {
    case JT_UNDEF: return undef_fail(c, obj);
    case JT_LOOP: return jinja_loop_attr(c, obj, name, out);
    case JT_NS: {
        jv *v = jv_dict_find_str(obj.u.d, name);
        *out = v ? *v : jv_undef(hintf(c, "'Namespace' has no attribute '%s'%s", name, NULL));
        return 0;
    }
    case JT_DICT: {
        if (jinja_method(c, obj, name, out)) return c->err->code;
        jv *v = jv_dict_find_str(obj.u.d, name);
        *out = v ? *v : jv_undef(hintf(c, "'dict object' has no attribute '%s'%s", name, NULL));
        return 0;
    }
    default:
        if (jinja_method(c, obj, name, out)) return c->err->code;
        *out = jv_undef(hintf(c, "%s has no attribute '%s'", obj_desc(obj), name));
        return 0;
    }
}

int jinja_getitem(jctx *c, jv obj, jv key, jv *out) {
    if (obj.t == JT_UNDEF) return undef_fail(c, obj);
    if (obj.t == JT_DICT || obj.t == JT_NS) {
        jv *v = jv_dict_find(obj.u.d, key);
        if (v) { *out = *v; return 0; }
    } else if ((obj.t == JT_LIST || obj.t == JT_STR) && (key.t == JT_INT || key.t == JT_BOOL)) {
        int64_t i = key.t == JT_BOOL ? key.u.b : key.u.i;
        if (obj.t == JT_LIST) {
            int64_t n = (int64_t)obj.u.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) { *out = obj.u.l->v[i]; return 0; }
        } else {
            const jstr *s = obj.u.s;
            int64_t n = (int64_t)jutf8_count(s->s, s->len);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t p = 0, st = 0;
                for (int64_t k = 0; k <= i; k++) { st = p; jutf8_next(s->s, s->len, &p); }
                return jv_str(c, s->s + st, p - st, out);
            }
        }
        *out = jv_undef(hintf(c, "%s has no element %s", obj_desc(obj), "(index out of range)"));
        return 0;
    }
    if (key.t == JT_STR && obj.t != JT_NS) return jinja_getattr(c, obj, key.u.s->s, out);
    *out = jv_undef(hintf(c, "%s has no element of that key%s", obj_desc(obj), NULL));
    return 0;
}

/* ---- slicing ---------------------------------------------------------------------------- */
static int slice_bound(jctx *c, jv v, bool *given, int64_t *out) {
    *given = false;
    if (v.t == JT_NONE || v.t == JT_UNDEF) return 0;
    if (v.t != JT_INT && v.t != JT_BOOL) return jinja_fail(c, "slice indices must be integers or None");
    *given = true;
    *out = v.t == JT_BOOL ? v.u.b : v.u.i;
    return 0;
}

/* Python slice semantics (negative indices, negative steps) over n elements; writes the
 * chosen indices through `emit`. */
static int do_slice(jctx *c, jv obj, jv vs, jv ve, jv vst, jv *out) {
    int rc;
    bool gs, ge, gst;
    int64_t s = 0, e = 0, st = 1;
    if ((rc = slice_bound(c, vs, &gs, &s)) || (rc = slice_bound(c, ve, &ge, &e)) || (rc = slice_bound(c, vst, &gst, &st))) return rc;
    if (st == 0) return jinja_fail(c, "slice step cannot be zero");
    size_t cnt;
    jv *items = NULL;
    const jstr *str = NULL;
    size_t *offs = NULL;
    if (obj.t == JT_LIST) {
        cnt = obj.u.l->n;
        items = obj.u.l->v;
    } else if (obj.t == JT_STR) {
        str = obj.u.s;
        cnt = jutf8_count(str->s, str->len);
        offs = jarena_alloc(c->ar, (cnt + 1) * sizeof *offs);
        if (!offs) return jinja_oom(c);
        size_t p = 0;
        for (size_t k = 0; k < cnt; k++) { offs[k] = p; jutf8_next(str->s, str->len, &p); }
        offs[cnt] = str->len;
    } else if (obj.t == JT_UNDEF) {
        return undef_fail(c, obj);
    } else {
        return jinja_fail(c, "'%s' object is not subscriptable", jv_type_name(obj));
    }
    int64_t n = (int64_t)cnt;
    if (st > 0) {
        s = !gs ? 0 : s < 0 ? (s + n < 0 ? 0 : s + n) : (s > n ? n : s);
        e = !ge ? n : e < 0 ? (e + n < 0 ? 0 : e + n) : (e > n ? n : e);
    } else {
        s = !gs ? n - 1 : s < 0 ? (s + n < 0 ? -1 : s + n) : (s >= n ? n - 1 : s);
        e = !ge ? -1 : e < 0 ? (e + n < 0 ? -1 : e + n) : (e >= n ? n - 1 : e);
    }
    jbuf b = { 0 };
    if (items && (rc = jv_list_new(c, 0, out))) return rc;
    if (items) out->tuple = obj.tuple;
    for (int64_t i = s; st > 0 ? i < e : i > e; i += st) {
        if ((rc = jinja_step(c, 1))) return rc;
        if (items) rc = jv_list_push(c, out->u.l, items[i]);
        else rc = jbuf_put(c, &b, str->s + offs[i], offs[i + 1] - offs[i]);
        if (rc) return rc;
    }
    return items ? 0 : jbuf_to_str(c, &b, out);
}

/* ---- operators -------------------------------------------------------------------------- */
static int type_error(jctx *c, const char *op, jv a, jv b) {
    if (a.t == JT_UNDEF) return undef_fail(c, a);
    if (b.t == JT_UNDEF) return undef_fail(c, b);
    if (!strcmp(op, "+") && a.t == JT_STR)
        return jinja_fail(c, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    if (!strcmp(op, "+") && a.t == JT_LIST && !a.tuple)
        return jinja_fail(c, "can only concatenate list (not \"%s\") to list", jv_type_name(b));
    return jinja_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
}

static int64_t ival(jv v) { return v.t == JT_BOOL ? v.u.b : v.u.i; }

static int concat_str(jctx *c, jv a, jv b, jv *out) {
    /* Markup + str escapes the str (markupsafe); plain + plain stays plain */
    int rc;
    bool safe = a.safe || b.safe;
    if (safe && (rc = jv_escape(c, a, &a))) return rc;
    if (safe && (rc = jv_escape(c, b, &b))) return rc;
    jbuf buf = { 0 };
    if ((rc = jbuf_put(c, &buf, a.u.s->s, a.u.s->len)) || (rc = jbuf_put(c, &buf, b.u.s->s, b.u.s->len)) ||
        (rc = jbuf_to_str(c, &buf, out)))
        return rc;
    out->safe = safe;
    return 0;
}

static int repeat(jctx *c, jv seq, jv times, jv *out) {
    int64_t k = ival(times);
    int rc;
    if (k < 0) k = 0;
    if (seq.t == JT_STR) {
        if (seq.u.s->len && (uint64_t)k > JINJA_MAX_OUTPUT / seq.u.s->len) return jinja_oom(c);
        jbuf b = { 0 };
        for (int64_t i = 0; i < k; i++)
            if ((rc = jbuf_put(c, &b, seq.u.s->s, seq.u.s->len))) return rc;
        return jbuf_to_str(c, &b, out);
    }
    if (seq.u.l->n && (uint64_t)k > JINJA_MAX_ITEMS / seq.u.l->n) return jinja_oom(c);
    if ((rc = jv_list_new(c, seq.u.l->n * (size_t)k, out))) return rc;
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < seq.u.l->n; j++)
            if ((rc = jv_list_push(c, out->u.l, seq.u.l->v[j]))) return rc;
    out->tuple = seq.tuple;
    return jinja_step(c, out->u.l->n);
}

static int arith_int(jctx *c, int op, int64_t x, int64_t y, jv *out) {
    int64_t r;
    bool ovf = false;
    switch (op) {
    case JOP_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
    case JOP_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
    case JOP_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
    case JOP_FLOORDIV: case JOP_MOD:
        if (y == 0) return jinja_fail(c, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) { ovf = true; break; }
        r = op == JOP_FLOORDIV ? x / y : x % y;
        if (op == JOP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) r--;
        if (op == JOP_MOD && r != 0 && ((r < 0) != (y < 0))) r += y;
        break;
    default: /* POW with y >= 0 */
        r = 1;
        for (int64_t i = 0; i < y && !ovf; i++) {
            ovf = __builtin_mul_overflow(r, x, &r);
            if (r == 0 || r == 1) break;
            if (r == -1) { r = (y % 2) ? -1 : 1; break; }
        }
    }
    if (ovf) return jinja_fail(c, "integer result too large");
    *out = jv_int(r);
    return 0;
}

static int arith_float(jctx *c, int op, double x, double y, jv *out) {
    double r;
    switch (op) {
    case JOP_ADD: r = x + y; break;
    case JOP_SUB: r = x - y; break;
    case JOP_MUL: r = x * y; break;
    case JOP_DIV:
        if (y == 0) return jinja_fail(c, "division by zero");
        r = x / y;
        break;
    case JOP_FLOORDIV:
        if (y == 0) return jinja_fail(c, "float floor division by zero");
        r = floor(x / y);
        break;
    case JOP_MOD:
        if (y == 0) return jinja_fail(c, "float modulo");
        r = fmod(x, y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        break;
    default: r = pow(x, y);
    }
    *out = jv_float(r);
    return 0;
}

static const char *op_str(int op) {
    static const char *const s[] = { "+", "-", "*", "/", "//", "%", "**" };
    return op <= JOP_POW ? s[op] : "?";
}

static int contains(jctx *c, jv hay, jv needle, bool *r) {
    int rc;
    *r = false;
    switch (hay.t) {
    case JT_STR:
        if (needle.t != JT_STR) return jinja_fail(c, "'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        *r = needle.u.s->len == 0 || memmem(hay.u.s->s, hay.u.s->len, needle.u.s->s, needle.u.s->len) != NULL;
        return 0;
    case JT_LIST:
        if ((rc = jinja_step(c, hay.u.l->n))) return rc;
        for (size_t i = 0; i < hay.u.l->n && !*r; i++) *r = jv_equal(hay.u.l->v[i], needle);
        return 0;
    case JT_DICT: case JT_NS:
        if ((rc = jinja_step(c, hay.u.d->n))) return rc;
        *r = jv_dict_find(hay.u.d, needle) != NULL;
        return 0;
    case JT_UNDEF: return 0;
    default: return jinja_fail(c, "argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

int jinja_binop(jctx *c, int op, jv a, jv b, jv *out) {
    int rc;
    bool r = false;
    switch (op) {
    case JOP_EQ: *out = jv_bool(jv_equal(a, b)); return 0;
    case JOP_NE: *out = jv_bool(!jv_equal(a, b)); return 0;
    case JOP_LT: rc = jv_less(c, a, b, &r); *out = jv_bool(r); return rc;
    case JOP_GT: rc = jv_less(c, b, a, &r); *out = jv_bool(r); return rc;
    case JOP_LE: rc = jv_less(c, b, a, &r); *out = jv_bool(!r); return rc;
    case JOP_GE: rc = jv_less(c, a, b, &r); *out = jv_bool(!r); return rc;
    case JOP_IN: rc = contains(c, b, a, &r); *out = jv_bool(r); return rc;
    case JOP_NOTIN: rc = contains(c, b, a, &r); *out = jv_bool(!r); return rc;
    case JOP_CONCAT: {
        jv sa, sb;
        if ((rc = jv_to_str(c, a, &sa)) || (rc = jv_to_str(c, b, &sb))) return rc;
        sa.safe = sb.safe = 0;
        return concat_str(c, sa, sb, out);
    }
    default: break;
    }
    if (jv_is_number(a) && jv_is_number(b)) {
        bool fl = a.t == JT_FLOAT || b.t == JT_FLOAT || op == JOP_DIV || (op == JOP_POW && ival(b) < 0);
        if (fl) return arith_float(c, op, jv_as_double(a), jv_as_double(b), out);
        return arith_int(c, op, ival(a), ival(b), out);
    }
    if (op == JOP_ADD && a.t == JT_STR && b.t == JT_STR) return concat_str(c, a, b, out);
    if (op == JOP_ADD && a.t == JT_LIST && b.t == JT_LIST && a.tuple == b.tuple) {
        if ((rc = jv_list_new(c, a.u.l->n + b.u.l->n, out))) return rc;
        for (size_t i = 0; i < a.u.l->n; i++) out->u.l->v[i] = a.u.l->v[i];
        for (size_t i = 0; i < b.u.l->n; i++) out->u.l->v[a.u.l->n + i] = b.u.l->v[i];
        out->u.l->n = a.u.l->n + b.u.l->n;
        out->tuple = a.tuple;
        return jinja_step(c, out->u.l->n);
    }
    if (op == JOP_MUL && (a.t == JT_STR || a.t == JT_LIST) && (b.t == JT_INT || b.t == JT_BOOL)) return repeat(c, a, b, out);
    if (op == JOP_MUL && (b.t == JT_STR || b.t == JT_LIST) && (a.t == JT_INT || a.t == JT_BOOL)) return repeat(c, b, a, out);
    if (op == JOP_MOD && a.t == JT_STR) return jinja_str_format(c, a, b, out);
    return type_error(c, op_str(op), a, b);
}

/* ---- evaluation ------------------------------------------------------------------------- */
int jinja_eval_args(jctx *c, const jnode *n, jargs *a) {
    int rc;
    memset(a, 0, sizeof *a);
    a->n = n->kids.n;
    a->nkw = n->kids2.n;
    if (a->n && !(a->pos = jarena_alloc(c->ar, a->n * sizeof *a->pos))) return jinja_oom(c);
    if (a->nkw && !(a->kw = jarena_alloc(c->ar, a->nkw * sizeof *a->kw))) return jinja_oom(c);
    a->kwname = n->kwnames;
    for (size_t i = 0; i < a->n; i++)
        if ((rc = jinja_eval(c, n->kids.v[i], &a->pos[i]))) return rc;
    for (size_t i = 0; i < a->nkw; i++)
        if ((rc = jinja_eval(c, n->kids2.v[i], &a->kw[i]))) return rc;
    return 0;
}

static int eval_seq(jctx *c, const jnode *n, jv *out) {
    int rc;
    if ((rc = jv_list_new(c, n->kids.n, out))) return rc;
    out->tuple = n->kind == JN_TUPLE;
    for (size_t i = 0; i < n->kids.n; i++) {
        jv v;
        if ((rc = jinja_eval(c, n->kids.v[i], &v)) || (rc = jv_list_push(c, out->u.l, v))) return rc;
    }
    return 0;
}

static int eval_dict(jctx *c, const jnode *n, jv *out) {
    int rc;
    if ((rc = jv_dict_new(c, n->kids.n, out))) return rc;
    for (size_t i = 0; i < n->kids.n; i++) {
        jv k, v;
        if ((rc = jinja_eval(c, n->kids.v[i], &k)) || (rc = jinja_eval(c, n->kids2.v[i], &v))) return rc;
        if (k.t == JT_LIST && !k.tuple) return jinja_fail(c, "unhashable type: 'list'");
        if (k.t == JT_DICT) return jinja_fail(c, "unhashable type: 'dict'");
        if ((rc = jv_dict_set(c, out->u.d, k, v))) return rc;
    }
    return 0;
}

static int eval_name(jctx *c, const jnode *n, jv *out) {
    if (jinja_scope_get(c->scope, n->name, out)) return 0;
    *out = jv_undef(hintf(c, "'%s' is undefined%s", n->name, NULL));
    return 0;
}

static int eval_unary(jctx *c, const jnode *n, jv *out) {
    jv v;
    int rc = jinja_eval(c, n->a, &v);
    if (rc) return rc;
    if (n->kind == JN_NOT) { *out = jv_bool(!jv_truthy(v)); return 0; }
    if (v.t == JT_UNDEF) return undef_fail(c, v);
    if (!jv_is_number(v)) return jinja_fail(c, "bad operand type for unary %s: '%s'", n->kind == JN_NEG ? "-" : "+", jv_type_name(v));
    if (n->kind == JN_POS) *out = v.t == JT_BOOL ? jv_int(v.u.b) : v;
    else if (v.t == JT_FLOAT) *out = jv_float(-v.u.f);
    else if (ival(v) == INT64_MIN) return jinja_fail(c, "integer result too large");
    else *out = jv_int(-ival(v));
    return 0;
}

static int eval_node(jctx *c, const jnode *n, jv *out);

int jinja_eval(jctx *c, const jnode *n, jv *out) {
    if (c->edepth >= JINJA_MAX_EVAL_DEPTH)
        return jinja_fail(c, "expression nested too deeply (more than %d levels)", JINJA_MAX_EVAL_DEPTH);
    c->edepth++;
    int rc = eval_node(c, n, out);
    c->edepth--;
    return rc;
}

static int eval_node(jctx *c, const jnode *n, jv *out) {
    int rc;
    jv a, b, d, e;
    jargs args;
    c->line = n->line;
    if ((rc = jinja_step(c, 1))) return rc;
    switch (n->kind) {
    case JN_CONST: *out = n->val; return 0;
    case JN_NAME: return eval_name(c, n, out);
    case JN_LIST: case JN_TUPLE: return eval_seq(c, n, out);
    case JN_DICT: return eval_dict(c, n, out);
    case JN_CAPTURED: *out = c->captured; return 0;
    case JN_ATTR:
        if ((rc = jinja_eval(c, n->a, &a))) return rc;
        c->line = n->line;
        return jinja_getattr(c, a, n->name, out);
    case JN_ITEM:
        if ((rc = jinja_eval(c, n->a, &a)) || (rc = jinja_eval(c, n->b, &b))) return rc;
        c->line = n->line;
        return jinja_getitem(c, a, b, out);
    case JN_SLICE:
        b = d = e = jv_none();
        if ((rc = jinja_eval(c, n->a, &a))) return rc;
        if (n->b && (rc = jinja_eval(c, n->b, &b))) return rc;
        if (n->c && (rc = jinja_eval(c, n->c, &d))) return rc;
        if (n->d && (rc = jinja_eval(c, n->d, &e))) return rc;
        c->line = n->line;
        return do_slice(c, a, b, d, e, out);
    case JN_CALL:
        if ((rc = jinja_eval(c, n->a, &a)) || (rc = jinja_eval_args(c, n, &args))) return rc;
        c->line = n->line;
        return jinja_call(c, a, &args, out);
    case JN_FILTER:
        if ((rc = jinja_eval(c, n->a, &a)) || (rc = jinja_eval_args(c, n, &args))) return rc;
        c->line = n->line;
        return jinja_filter(c, n->name, a, &args, out);
    case JN_TEST: {
        bool r;
        if ((rc = jinja_eval(c, n->a, &a)) || (rc = jinja_eval_args(c, n, &args))) return rc;
        c->line = n->line;
        if ((rc = jinja_test(c, n->name, a, &args, &r))) return rc;
        *out = jv_bool(n->flag ? !r : r);
        return 0;
    }
    case JN_NEG: case JN_POS: case JN_NOT: return eval_unary(c, n, out);
    case JN_AND: case JN_OR:
        if ((rc = jinja_eval(c, n->a, &a))) return rc;
        if (jv_truthy(a) == (n->kind == JN_OR)) { *out = a; return 0; }
        return jinja_eval(c, n->b, out);
    case JN_COND:
        if ((rc = jinja_eval(c, n->a, &a))) return rc;
        if (jv_truthy(a)) return jinja_eval(c, n->b, out);
        if (n->c) return jinja_eval(c, n->c, out);
        *out = jv_undef("the conditional expression had no else branch");
        return 0;
    case JN_BINOP:
        if ((rc = jinja_eval(c, n->a, &a)) || (rc = jinja_eval(c, n->b, &b))) return rc;
        c->line = n->line;
        return jinja_binop(c, n->op, a, b, out);
    default:
        return jinja_fail(c, "internal error: unexpected expression node");
    }
}
