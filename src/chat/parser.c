/* parser.c — tokens -> AST for the Jinja2 subset (recursive descent, Jinja2's precedence):
 *
 *   cond:   or ['if' or ['else' cond]]          compare: math1 (op math1)*  (chains = and)
 *   or/and/not                                   math1: concat (('+'|'-') concat)*
 *   concat: math2 ('~' math2)*                   math2: pow (('*'|'/'|'//'|'%') pow)*
 *   pow:    unary ('**' unary)*                  unary: ('-'|'+') unary | primary postfix filters
 *   postfix: '.' name | '[' subscript ']' | '(' args ')'   filters: '|' f(args) | 'is' [not] t
 *
 * Nesting depth is capped (JINJA_MAX_PARSE_DEPTH) so hostile templates cannot exhaust the
 * C stack.
 */
#include <stdio.h>
#include <string.h>

#include "chat/jinja.h"

typedef struct ps {
    jarena *ar;
    hb_err *err;
    const jtoks *t;
    size_t i;
    int depth;
    int loops;   /* enclosing for loops (break/continue are only valid inside one) */
} ps;

static int pfail(ps *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pfail(ps *p, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hb_fail(p->err, HEARTH_E_TEMPLATE, "template line %d: %s", p->t->v[p->i].line, msg);
}

static const jtok *cur(const ps *p) { return &p->t->v[p->i]; }
static void adv(ps *p) { if (p->t->v[p->i].type != TK_EOF) p->i++; }
static bool is_op(const ps *p, const char *op) { return cur(p)->type == TK_OP && strcmp(cur(p)->s, op) == 0; }
static bool is_name(const ps *p, const char *nm) { return cur(p)->type == TK_NAME && strcmp(cur(p)->s, nm) == 0; }

static const char *tok_desc(const jtok *t) {
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_END: return "'%}'";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_TEXT: return "text";
    case TK_STRING: return "string";
    default: return t->s;
    }
}

static int expect_op(ps *p, const char *op) {
    if (!is_op(p, op)) return pfail(p, "expected '%s', got '%s'", op, tok_desc(cur(p)));
    adv(p);
    return 0;
}

static int expect_type(ps *p, jtok_type ty, const char *what) {
    if (cur(p)->type != ty) return pfail(p, "expected %s, got '%s'", what, tok_desc(cur(p)));
    adv(p);
    return 0;
}

static jnode *mk(ps *p, jnode_kind k, int line) {
    jnode *n = jarena_alloc(p->ar, sizeof *n);
    if (!n) {
        hb_fail(p->err, HEARTH_E_TEMPLATE, "template line %d: template too large", line);
        return NULL;
    }
    n->kind = (uint8_t)k;
    n->line = line;
    return n;
}

static int push(ps *p, jnodes *l, jnode *n) {
    /* grow by doubling; the old array stays in the arena (bounded: at most 2x) */
    if ((l->n & (l->n - 1)) == 0) {
        size_t nc = l->n ? l->n * 2 : 1;
        jnode **nv = jarena_alloc(p->ar, nc * sizeof *nv);
        if (!nv) return pfail(p, "template too large");
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
    }
    l->v[l->n++] = n;
    return 0;
}

static int push_name(ps *p, const char ***names, size_t n, const char *nm) {
    if ((n & (n - 1)) == 0) {
        size_t nc = n ? n * 2 : 1;
        const char **nv = jarena_alloc(p->ar, nc * sizeof *nv);
        if (!nv) return pfail(p, "template too large");
        if (n) memcpy(nv, *names, n * sizeof *nv);
        *names = nv;
    }
    (*names)[n] = nm;
    return 0;
}

static int parse_expr(ps *p, jnode **out);
static int parse_tuple(ps *p, bool with_cond, bool explicit_parens, jnode **out);
static int parse_unary(ps *p, bool with_filter, jnode **out);

static int enter(ps *p) {
    if (++p->depth > JINJA_MAX_PARSE_DEPTH)
        return pfail(p, "template nested too deeply (more than %d levels)", JINJA_MAX_PARSE_DEPTH);
    return 0;
}

/* ---- expressions ------------------------------------------------------------------------ */
/* Call arguments after '(' up to and including ')': positional into kids, keyword into
 * kwnames/kids2. */
static int parse_args(ps *p, jnode *n) {
    int rc;
    while (!is_op(p, ")")) {
        if (n->kids.n + n->kids2.n && (rc = expect_op(p, ","))) return rc;
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**")) return pfail(p, "*args / **kwargs in calls are not supported");
        jnode *e;
        if (cur(p)->type == TK_NAME && p->t->v[p->i + 1].type == TK_OP && strcmp(p->t->v[p->i + 1].s, "=") == 0) {
            const char *nm = cur(p)->s;
            adv(p);
            adv(p);
            if ((rc = parse_expr(p, &e))) return rc;
            if ((rc = push_name(p, &n->kwnames, n->kids2.n, nm))) return rc;
            if ((rc = push(p, &n->kids2, e))) return rc;
        } else {
            if (n->kids2.n) return pfail(p, "positional argument after keyword argument");
            if ((rc = parse_expr(p, &e))) return rc;
            if ((rc = push(p, &n->kids, e))) return rc;
        }
    }
    adv(p);
    return 0;
}

static int parse_list_like(ps *p, jnode *n, const char *close, bool dict) {
    int rc;
    while (!is_op(p, close)) {
        if (n->kids.n && (rc = expect_op(p, ","))) return rc;
        if (is_op(p, close)) break;
        jnode *e;
        if ((rc = parse_expr(p, &e))) return rc;
        if ((rc = push(p, &n->kids, e))) return rc;
        if (dict) {
            if ((rc = expect_op(p, ":"))) return rc;
            if ((rc = parse_expr(p, &e))) return rc;
            if ((rc = push(p, &n->kids2, e))) return rc;
        }
    }
    adv(p);
    return 0;
}

static int parse_primary(ps *p, jnode **out) {
    const jtok *t = cur(p);
    int rc, line = t->line;
    jnode *n = NULL;
    if (t->type == TK_NAME) {
        const char *s = t->s;
        n = mk(p, JN_CONST, line);
        if (!n) return HEARTH_E_TEMPLATE;
        if (!strcmp(s, "true") || !strcmp(s, "True")) n->val = jv_bool(true);
        else if (!strcmp(s, "false") || !strcmp(s, "False")) n->val = jv_bool(false);
        else if (!strcmp(s, "none") || !strcmp(s, "None")) n->val = jv_none();
        else { n->kind = JN_NAME; n->name = s; }
        adv(p);
    } else if (t->type == TK_STRING) {
        /* adjacent string literals concatenate */
        size_t total = 0, j = p->i;
        for (; p->t->v[j].type == TK_STRING; j++) total += p->t->v[j].len;
        jstr *s = jarena_alloc(p->ar, sizeof *s + total + 1);
        if (!(n = mk(p, JN_CONST, line)) || !s) return pfail(p, "template too large");
        for (; cur(p)->type == TK_STRING; adv(p)) {
            memcpy(s->s + s->len, cur(p)->s, cur(p)->len);
            s->len += cur(p)->len;
        }
        n->val = (jv){ .t = JT_STR };
        n->val.u.s = s;
    } else if (t->type == TK_INT || t->type == TK_FLOAT) {
        if (!(n = mk(p, JN_CONST, line))) return HEARTH_E_TEMPLATE;
        n->val = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        adv(p);
    } else if (is_op(p, "(")) {
        adv(p);
        if ((rc = parse_tuple(p, true, true, &n))) return rc;
        if ((rc = expect_op(p, ")"))) return rc;
    } else if (is_op(p, "[") || is_op(p, "{")) {
        bool dict = is_op(p, "{");
        adv(p);
        if (!(n = mk(p, dict ? JN_DICT : JN_LIST, line))) return HEARTH_E_TEMPLATE;
        if ((rc = parse_list_like(p, n, dict ? "}" : "]", dict))) return rc;
    } else {
        return pfail(p, "unexpected '%s'", tok_desc(t));
    }
    *out = n;
    return 0;
}

static int parse_subscript(ps *p, jnode *obj, jnode **out) {
    int rc, line = cur(p)->line;
    jnode *n;
    if (is_op(p, ".")) {
        adv(p);
        if (cur(p)->type == TK_NAME) {
            if (!(n = mk(p, JN_ATTR, line))) return HEARTH_E_TEMPLATE;
            n->a = obj;
            n->name = cur(p)->s;
        } else if (cur(p)->type == TK_INT) {
            if (!(n = mk(p, JN_ITEM, line)) || !(n->b = mk(p, JN_CONST, line))) return HEARTH_E_TEMPLATE;
            n->a = obj;
            n->b->val = jv_int(cur(p)->i);
        } else {
            return pfail(p, "expected a name after '.', got '%s'", tok_desc(cur(p)));
        }
        adv(p);
        *out = n;
        return 0;
    }
    adv(p); /* '[' */
    jnode *parts[3] = { NULL, NULL, NULL };
    int np = 0;
    bool slice = false;
    for (;;) {
        if (is_op(p, ":")) {
            slice = true;
            if (++np > 2) return pfail(p, "too many ':' in subscript");
            adv(p);
            continue;
        }
        if (is_op(p, "]")) break;
        if (parts[np]) return pfail(p, "expected ']' or ':', got '%s'", tok_desc(cur(p)));
        if ((rc = slice ? parse_expr(p, &parts[np]) : parse_tuple(p, true, false, &parts[np]))) return rc;
    }
    adv(p);
    if (!slice && !parts[0]) return pfail(p, "empty subscript");
    if (!(n = mk(p, slice ? JN_SLICE : JN_ITEM, line))) return HEARTH_E_TEMPLATE;
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    *out = n;
    return 0;
}

static int parse_postfix(ps *p, jnode **node) {
    int rc;
    for (;;) {
        if (is_op(p, ".") || is_op(p, "[")) {
            if ((rc = parse_subscript(p, *node, node))) return rc;
        } else if (is_op(p, "(")) {
            jnode *n = mk(p, JN_CALL, cur(p)->line);
            if (!n) return HEARTH_E_TEMPLATE;
            adv(p);
            n->a = *node;
            if ((rc = parse_args(p, n))) return rc;
            *node = n;
        } else {
            return 0;
        }
    }
}

static int parse_dotted_name(ps *p, const char **out) {
    if (cur(p)->type != TK_NAME) return pfail(p, "expected a name, got '%s'", tok_desc(cur(p)));
    *out = cur(p)->s;
    adv(p);
    if (is_op(p, ".")) return pfail(p, "dotted filter/test names are not supported");
    return 0;
}

static int parse_filter(ps *p, jnode **node) {
    int rc, line = cur(p)->line;
    jnode *n = mk(p, JN_FILTER, line);
    if (!n) return HEARTH_E_TEMPLATE;
    if ((rc = parse_dotted_name(p, &n->name))) return rc;
    if (!jinja_has_filter(n->name)) return pfail(p, "unknown filter '%s'", n->name);
    if (is_op(p, "(")) {
        adv(p);
        if ((rc = parse_args(p, n))) return rc;
    }
    n->a = *node;
    *node = n;
    return 0;
}

static int parse_test(ps *p, jnode **node) {
    int rc, line = cur(p)->line;
    jnode *n = mk(p, JN_TEST, line);
    if (!n) return HEARTH_E_TEMPLATE;
    if (is_name(p, "not")) { n->flag = 1; adv(p); }
    if ((rc = parse_dotted_name(p, &n->name))) return rc;
    if (!jinja_has_test(n->name)) return pfail(p, "unknown test '%s'", n->name);
    const jtok *t = cur(p);
    if (is_op(p, "(")) {
        adv(p);
        if ((rc = parse_args(p, n))) return rc;
    } else if ((t->type == TK_NAME || t->type == TK_STRING || t->type == TK_INT || t->type == TK_FLOAT ||
                is_op(p, "[") || is_op(p, "{")) &&
               !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
        if (is_name(p, "is")) return pfail(p, "tests cannot be chained with 'is'");
        jnode *arg;
        if ((rc = parse_primary(p, &arg)) || (rc = parse_postfix(p, &arg))) return rc;
        if ((rc = push(p, &n->kids, arg))) return rc;
    }
    n->a = *node;
    *node = n;
    return 0;
}

static int parse_unary(ps *p, bool with_filter, jnode **out) {
    int rc, line = cur(p)->line;
    jnode *n;
    if ((rc = enter(p))) return rc;
    if (is_op(p, "-") || is_op(p, "+")) {
        bool neg = is_op(p, "-");
        adv(p);
        if (!(n = mk(p, neg ? JN_NEG : JN_POS, line))) return HEARTH_E_TEMPLATE;
        if ((rc = parse_unary(p, false, &n->a))) return rc;
    } else if ((rc = parse_primary(p, &n))) {
        return rc;
    }
    if ((rc = parse_postfix(p, &n))) return rc;
    while (with_filter) {
        if (is_op(p, "|")) { adv(p); rc = parse_filter(p, &n); }
        else if (is_name(p, "is")) { adv(p); rc = parse_test(p, &n); }
        else if (is_op(p, "(")) rc = parse_postfix(p, &n);
        else break;
        if (rc) return rc;
    }
    p->depth--;
    *out = n;
    return 0;
}

static int binop(ps *p, jnode_kind k, int op, jnode *a, jnode *b, int line, jnode **out) {
    jnode *n = mk(p, k, line);
    if (!n) return HEARTH_E_TEMPLATE;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    *out = n;
    return 0;
}

typedef struct opdef { const char *s; int op; } opdef;

/* One left-associative level of binary operators over `sub`. */
static int parse_level(ps *p, const opdef *ops, int (*sub)(ps *, jnode **), jnode **out) {
    int rc;
    jnode *l;
    if ((rc = sub(p, &l))) return rc;
    for (;;) {
        const opdef *o = ops;
        for (; o->s; o++) if (is_op(p, o->s)) break;
        if (!o->s) break;
        int line = cur(p)->line;
        jnode *r;
        adv(p);
        if ((rc = sub(p, &r)) || (rc = binop(p, JN_BINOP, o->op, l, r, line, &l))) return rc;
    }
    *out = l;
    return 0;
}

static int parse_pow_operand(ps *p, jnode **out) { return parse_unary(p, true, out); }
static int parse_pow(ps *p, jnode **out) {
    static const opdef ops[] = { { "**", JOP_POW }, { NULL, 0 } };
    return parse_level(p, ops, parse_pow_operand, out);
}
static int parse_math2(ps *p, jnode **out) {
    static const opdef ops[] = { { "*", JOP_MUL }, { "//", JOP_FLOORDIV }, { "/", JOP_DIV }, { "%", JOP_MOD }, { NULL, 0 } };
    return parse_level(p, ops, parse_pow, out);
}
static int parse_concat(ps *p, jnode **out) {
    static const opdef ops[] = { { "~", JOP_CONCAT }, { NULL, 0 } };
    return parse_level(p, ops, parse_math2, out);
}
static int parse_math1(ps *p, jnode **out) {
    static const opdef ops[] = { { "+", JOP_ADD }, { "-", JOP_SUB }, { NULL, 0 } };
    return parse_level(p, ops, parse_concat, out);
}

static int parse_compare(ps *p, jnode **out) {
    static const opdef ops[] = { { "==", JOP_EQ }, { "!=", JOP_NE }, { "<=", JOP_LE }, { ">=", JOP_GE },
                                 { "<", JOP_LT }, { ">", JOP_GT }, { NULL, 0 } };
    int rc;
    jnode *l, *result = NULL;
    if ((rc = parse_math1(p, &l))) return rc;
    for (;;) {
        int op = -1, line = cur(p)->line;
        for (const opdef *o = ops; o->s; o++) if (is_op(p, o->s)) { op = o->op; adv(p); break; }
        if (op < 0 && is_name(p, "in")) { op = JOP_IN; adv(p); }
        else if (op < 0 && is_name(p, "not") && p->t->v[p->i + 1].type == TK_NAME && !strcmp(p->t->v[p->i + 1].s, "in")) {
            op = JOP_NOTIN;
            adv(p);
            adv(p);
        }
        if (op < 0) break;
        jnode *r, *cmp;
        if ((rc = parse_math1(p, &r)) || (rc = binop(p, JN_BINOP, op, l, r, line, &cmp))) return rc;
        /* a < b < c is (a < b) and (b < c) */
        if (!result) result = cmp;
        else if ((rc = binop(p, JN_AND, 0, result, cmp, line, &result))) return rc;
        l = r;
    }
    *out = result ? result : l;
    return 0;
}

static int parse_not(ps *p, jnode **out) {
    int rc;
    if (is_name(p, "not")) {
        jnode *n = mk(p, JN_NOT, cur(p)->line);
        if (!n) return HEARTH_E_TEMPLATE;
        adv(p);
        if ((rc = enter(p)) || (rc = parse_not(p, &n->a))) return rc;
        p->depth--;
        *out = n;
        return 0;
    }
    return parse_compare(p, out);
}

static int parse_andor(ps *p, bool is_or, jnode **out) {
    int rc;
    jnode *l;
    if ((rc = is_or ? parse_andor(p, false, &l) : parse_not(p, &l))) return rc;
    while (is_name(p, is_or ? "or" : "and")) {
        int line = cur(p)->line;
        jnode *r;
        adv(p);
        if ((rc = is_or ? parse_andor(p, false, &r) : parse_not(p, &r))) return rc;
        if ((rc = binop(p, is_or ? JN_OR : JN_AND, 0, l, r, line, &l))) return rc;
    }
    *out = l;
    return 0;
}

static int parse_cond(ps *p, bool with_cond, jnode **out) {
    int rc;
    jnode *e;
    if ((rc = enter(p))) return rc;
    if ((rc = parse_andor(p, true, &e))) return rc;
    while (with_cond && is_name(p, "if")) {
        jnode *n = mk(p, JN_COND, cur(p)->line);
        if (!n) return HEARTH_E_TEMPLATE;
        adv(p);
        n->b = e;
        if ((rc = parse_andor(p, true, &n->a))) return rc;
        if (is_name(p, "else")) {
            adv(p);
            if ((rc = parse_cond(p, true, &n->c))) return rc;
        }
        e = n;
    }
    p->depth--;
    *out = e;
    return 0;
}

static int parse_expr(ps *p, jnode **out) { return parse_cond(p, true, out); }

static bool tuple_end(const ps *p) {
    const jtok *t = cur(p);
    return t->type == TK_VAR_END || t->type == TK_BLOCK_END || t->type == TK_EOF || is_op(p, ")") ||
           is_op(p, "]") || is_name(p, "in") || is_name(p, "recursive");
}

static int parse_tuple(ps *p, bool with_cond, bool explicit_parens, jnode **out) {
    int rc, line = cur(p)->line;
    jnode *t = mk(p, JN_TUPLE, line);
    bool is_tuple = false;
    if (!t) return HEARTH_E_TEMPLATE;
    for (;;) {
        if (t->kids.n && (rc = expect_op(p, ","))) return rc;
        if (tuple_end(p)) break;
        jnode *e;
        if ((rc = parse_cond(p, with_cond, &e)) || (rc = push(p, &t->kids, e))) return rc;
        if (is_op(p, ",")) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (t->kids.n) { *out = t->kids.v[0]; return 0; }
        if (!explicit_parens) return pfail(p, "expected an expression, got '%s'", tok_desc(cur(p)));
    }
    *out = t;
    return 0;
}

/* ---- statements ------------------------------------------------------------------------- */
static int parse_body(ps *p, const char *const *ends, jnodes *out, const char **end_found);

static int expect_block_end(ps *p) { return expect_type(p, TK_BLOCK_END, "'%}'"); }

/* Assignment target: name, ns.attr (when allowed) or a tuple of names. */
static int parse_target(ps *p, bool allow_attr, jnode **out) {
    int rc, line = cur(p)->line;
    jnode *t = mk(p, JN_TUPLE, line);
    if (!t) return HEARTH_E_TEMPLATE;
    for (;;) {
        if (cur(p)->type != TK_NAME) return pfail(p, "expected a variable name, got '%s'", tok_desc(cur(p)));
        jnode *n = mk(p, JN_NAME, cur(p)->line);
        if (!n) return HEARTH_E_TEMPLATE;
        n->name = cur(p)->s;
        adv(p);
        if (allow_attr && is_op(p, ".")) {
            adv(p);
            if (cur(p)->type != TK_NAME) return pfail(p, "expected an attribute name after '.'");
            jnode *a = mk(p, JN_ATTR, n->line);
            if (!a) return HEARTH_E_TEMPLATE;
            a->a = n;
            a->name = cur(p)->s;
            adv(p);
            n = a;
        }
        if ((rc = push(p, &t->kids, n))) return rc;
        if (!is_op(p, ",")) break;
        adv(p);
        if (is_op(p, "(")) return pfail(p, "nested tuple targets are not supported");
    }
    *out = t->kids.n == 1 ? t->kids.v[0] : t;
    return 0;
}

static int parse_if(ps *p, jnode *n) {
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    int rc;
    const char *end;
    if ((rc = parse_tuple(p, false, false, &n->a)) || (rc = expect_block_end(p))) return rc;
    if ((rc = parse_body(p, ends, &n->kids, &end))) return rc;
    if (!strcmp(end, "elif")) {
        jnode *e = mk(p, JN_IF, cur(p)->line);
        if (!e) return HEARTH_E_TEMPLATE;
        adv(p);
        if ((rc = push(p, &n->kids2, e))) return rc;
        return parse_if(p, e);
    }
    adv(p);
    if ((rc = expect_block_end(p))) return rc;
    if (!strcmp(end, "else")) {
        static const char *const ends2[] = { "endif", NULL };
        if ((rc = parse_body(p, ends2, &n->kids2, &end))) return rc;
        adv(p);
        return expect_block_end(p);
    }
    return 0;
}

static int parse_for(ps *p, jnode *n) {
    static const char *const ends[] = { "else", "endfor", NULL };
    static const char *const ends2[] = { "endfor", NULL };
    int rc;
    const char *end;
    if ((rc = parse_target(p, false, &n->a))) return rc;
    if (!is_name(p, "in")) return pfail(p, "expected 'in' in for loop, got '%s'", tok_desc(cur(p)));
    adv(p);
    if ((rc = parse_tuple(p, false, false, &n->b))) return rc;
    if (is_name(p, "if")) {
        adv(p);
        if ((rc = parse_expr(p, &n->c))) return rc;
    }
    if (is_name(p, "recursive")) return pfail(p, "recursive for loops are not supported");
    if ((rc = expect_block_end(p))) return rc;
    p->loops++;
    rc = parse_body(p, ends, &n->kids, &end);
    p->loops--;
    if (rc) return rc;
    adv(p);
    if ((rc = expect_block_end(p))) return rc;
    if (!strcmp(end, "else")) {
        if ((rc = parse_body(p, ends2, &n->kids2, &end))) return rc;
        adv(p);
        return expect_block_end(p);
    }
    return 0;
}

/* Filters of `{% filter f | g %}` / `{% set x | f %}` applied over a JN_CAPTURED node. */
static int parse_filter_chain(ps *p, jnode **out) {
    int rc;
    jnode *n = mk(p, JN_CAPTURED, cur(p)->line);
    if (!n) return HEARTH_E_TEMPLATE;
    do {
        if ((rc = parse_filter(p, &n))) return rc;
    } while (is_op(p, "|") && (adv(p), true));
    *out = n;
    return 0;
}

static int parse_set(ps *p, jnode *n) {
    static const char *const ends[] = { "endset", NULL };
    int rc;
    const char *end;
    if ((rc = parse_target(p, true, &n->a))) return rc;
    if (is_op(p, "=")) {
        adv(p);
        if ((rc = parse_tuple(p, true, false, &n->b))) return rc;
        return expect_block_end(p);
    }
    n->kind = JN_SETBLOCK;
    if (n->a->kind != JN_NAME && n->a->kind != JN_ATTR) return pfail(p, "block set needs a single target");
    if (is_op(p, "|")) {
        adv(p);
        if ((rc = parse_filter_chain(p, &n->c))) return rc;
    }
    if ((rc = expect_block_end(p)) || (rc = parse_body(p, ends, &n->kids, &end))) return rc;
    adv(p);
    return expect_block_end(p);
}

/* Macro parameter list "(a, b=1)" into n->kwnames / n->kids2 (NULL default = required). */
static int parse_params(ps *p, jnode *n) {
    int rc;
    if ((rc = expect_op(p, "("))) return rc;
    size_t k = 0;
    while (!is_op(p, ")")) {
        if (k && (rc = expect_op(p, ","))) return rc;
        if (is_op(p, ")")) break;
        if (cur(p)->type != TK_NAME) return pfail(p, "expected a parameter name, got '%s'", tok_desc(cur(p)));
        if ((rc = push_name(p, &n->kwnames, k, cur(p)->s))) return rc;
        adv(p);
        jnode *def = NULL;
        if (is_op(p, "=")) {
            adv(p);
            if ((rc = parse_expr(p, &def))) return rc;
        }
        if ((rc = push(p, &n->kids2, def))) return rc;
        k++;
    }
    adv(p);
    return 0;
}

static int parse_macro(ps *p, jnode *n) {
    static const char *const ends[] = { "endmacro", NULL };
    int rc, saved = p->loops;
    const char *end;
    if (cur(p)->type != TK_NAME) return pfail(p, "expected a macro name");
    n->name = cur(p)->s;
    adv(p);
    if ((rc = parse_params(p, n)) || (rc = expect_block_end(p))) return rc;
    p->loops = 0;
    rc = parse_body(p, ends, &n->kids, &end);
    p->loops = saved;
    if (rc) return rc;
    adv(p);
    return expect_block_end(p);
}

static int parse_callblock(ps *p, jnode *n) {
    static const char *const ends[] = { "endcall", NULL };
    int rc, saved = p->loops;
    const char *end;
    jnode *m = mk(p, JN_MACRO, n->line);
    if (!m) return HEARTH_E_TEMPLATE;
    m->name = "caller";
    if (is_op(p, "(") && (rc = parse_params(p, m))) return rc;
    if ((rc = parse_expr(p, &n->a))) return rc;
    if (n->a->kind != JN_CALL) return pfail(p, "expected a call after 'call'");
    if ((rc = expect_block_end(p))) return rc;
    p->loops = 0;
    rc = parse_body(p, ends, &m->kids, &end);
    p->loops = saved;
    if (rc) return rc;
    n->b = m;
    adv(p);
    return expect_block_end(p);
}

static int parse_with(ps *p, jnode *n) {
    static const char *const ends[] = { "endwith", NULL };
    int rc;
    const char *end;
    size_t k = 0;
    while (cur(p)->type != TK_BLOCK_END) {
        if (k && (rc = expect_op(p, ","))) return rc;
        if (cur(p)->type != TK_NAME) return pfail(p, "expected a variable name in 'with'");
        if ((rc = push_name(p, &n->kwnames, k, cur(p)->s))) return rc;
        adv(p);
        jnode *e;
        if ((rc = expect_op(p, "=")) || (rc = parse_expr(p, &e)) || (rc = push(p, &n->kids2, e))) return rc;
        k++;
    }
    if ((rc = expect_block_end(p)) || (rc = parse_body(p, ends, &n->kids, &end))) return rc;
    adv(p);
    return expect_block_end(p);
}

static int parse_statement(ps *p, jnode **out) {
    const jtok *t = cur(p);
    int rc, line = t->line;
    const char *kw = t->s;
    static const char *const kinds[] = { "if", "for", "set", "macro", "call", "filter", "with", "break", "continue" };
    static const jnode_kind kk[] = { JN_IF, JN_FOR, JN_SET, JN_MACRO, JN_CALLBLOCK, JN_FILTERBLOCK, JN_WITH, JN_BREAK, JN_CONTINUE };
    size_t k = 0;
    if (t->type != TK_NAME) return pfail(p, "expected a tag name, got '%s'", tok_desc(t));
    for (; k < sizeof kinds / sizeof kinds[0]; k++) if (!strcmp(kw, kinds[k])) break;
    if (k == sizeof kinds / sizeof kinds[0]) {
        static const char *const unsup[] = { "include", "import", "from", "extends", "block", "do", "autoescape", "trans" };
        for (size_t u = 0; u < sizeof unsup / sizeof unsup[0]; u++)
            if (!strcmp(kw, unsup[u])) return pfail(p, "the '%s' tag is not supported", kw);
        return pfail(p, "unknown tag '%s'", kw);
    }
    jnode *n = mk(p, kk[k], line);
    if (!n) return HEARTH_E_TEMPLATE;
    adv(p);
    if ((rc = enter(p))) return rc;
    switch (kk[k]) {
    case JN_IF: rc = parse_if(p, n); break;
    case JN_FOR: rc = parse_for(p, n); break;
    case JN_SET: rc = parse_set(p, n); break;
    case JN_MACRO: rc = parse_macro(p, n); break;
    case JN_CALLBLOCK: rc = parse_callblock(p, n); break;
    case JN_WITH: rc = parse_with(p, n); break;
    case JN_FILTERBLOCK: {
        static const char *const ends[] = { "endfilter", NULL };
        const char *end;
        if ((rc = parse_filter_chain(p, &n->c)) || (rc = expect_block_end(p)) ||
            (rc = parse_body(p, ends, &n->kids, &end)))
            break;
        adv(p);
        rc = expect_block_end(p);
        break;
    }
    default: /* break / continue */
        if (p->loops == 0) return pfail(p, "'%s' outside of a for loop", kw);
        rc = expect_block_end(p);
    }
    p->depth--;
    *out = n;
    return rc;
}

/* Statements up to `{% <one of ends> ...`; leaves the cursor on that end name. With no ends
 * (top level) it runs to the end of the template. */
static int parse_body(ps *p, const char *const *ends, jnodes *out, const char **end_found) {
    int rc;
    for (;;) {
        const jtok *t = cur(p);
        jnode *n = NULL;
        if (t->type == TK_EOF) {
            if (ends) {
                const char *const *e = ends;
                while (e[1]) e++; /* the closing tag is listed last */
                return pfail(p, "unexpected end of template: missing '{%% %s %%}'", *e);
            }
            return 0;
        }
        if (t->type == TK_TEXT) {
            jstr *s = jarena_alloc(p->ar, sizeof *s + t->len + 1);
            if (!s || !(n = mk(p, JN_TEXT, t->line))) return pfail(p, "template too large");
            memcpy(s->s, t->s, t->len);
            s->len = t->len;
            n->val = (jv){ .t = JT_STR };
            n->val.u.s = s;
            adv(p);
        } else if (t->type == TK_VAR_BEGIN) {
            if (!(n = mk(p, JN_OUTPUT, t->line))) return HEARTH_E_TEMPLATE;
            adv(p);
            if ((rc = parse_tuple(p, true, false, &n->a)) || (rc = expect_type(p, TK_VAR_END, "'}}'"))) return rc;
        } else if (t->type == TK_BLOCK_BEGIN) {
            adv(p);
            if (ends && cur(p)->type == TK_NAME) {
                for (const char *const *e = ends; *e; e++) {
                    if (!strcmp(cur(p)->s, *e)) {
                        *end_found = *e;
                        return 0;
                    }
                }
            }
            if ((rc = parse_statement(p, &n))) return rc;
        } else {
            return pfail(p, "unexpected '%s'", tok_desc(t));
        }
        if ((rc = push(p, out, n))) return rc;
    }
}

int jinja_parse(jarena *ar, const jtoks *toks, jnodes *out, hb_err *err) {
    ps p = { .ar = ar, .err = err, .t = toks };
    out->n = 0;
    out->v = NULL;
    int rc = parse_body(&p, NULL, out, NULL);
    if (!rc && cur(&p)->type != TK_EOF) rc = pfail(&p, "unexpected '%s'", tok_desc(cur(&p)));
    return rc;
}
