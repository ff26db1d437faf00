/* exec.c — statement execution: scopes, output, if/for/set/macro/call/filter/with blocks,
 * loop controls and macro invocation.
 *
 * Scoping follows Jinja2: `for` bodies, macros and `with` get a fresh scope per run (per
 * iteration for loops) whose parent is the enclosing scope; `if` does not create a scope,
 * so `set` inside an `if` assigns in the enclosing scope, while `set` inside a loop body is
 * local to that iteration. Macros resolve free names through the scope they were defined
 * in. Namespaces (namespace()) are the one way to carry state out of a loop.
 */
#include <string.h>

#include "chat/jinja.h"

struct jscope {
    jscope *parent;
    size_t n, cap;
    const char **names;
    jv *vals;
};

struct jloop {
    size_t i, n;
    jv *items;
};

jscope *jinja_scope_push(jctx *c, jscope *parent) {
    jscope *s = jarena_alloc(c->ar, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

int jinja_scope_set(jctx *c, jscope *s, const char *name, jv v) {
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = v;
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        const char **nn = jarena_alloc(c->ar, nc * sizeof *nn);
        jv *nv = jarena_alloc(c->ar, nc * sizeof *nv);
        if (!nn || !nv) return jinja_oom(c);
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = nc;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
    return 0;
}

bool jinja_scope_get(const jscope *s, const char *name, jv *out) {
    for (; s; s = s->parent) {
        for (size_t i = s->n; i-- > 0;) {
            if (strcmp(s->names[i], name) == 0) {
                *out = s->vals[i];
                return true;
            }
        }
    }
    return false;
}

/* ---- loop variable ---------------------------------------------------------------------- */
static int loop_cycle(jctx *c, jv self, const jargs *a, jv *out) {
    if (a->n == 0) return jinja_fail(c, "loop.cycle() needs at least one argument");
    *out = a->pos[self.u.loop->i % a->n];
    return 0;
}

int jinja_loop_attr(jctx *c, jv lv, const char *name, jv *out) {
    const jloop *l = lv.u.loop;
    int64_t i = (int64_t)l->i, n = (int64_t)l->n;
    if (!strcmp(name, "index")) *out = jv_int(i + 1);
    else if (!strcmp(name, "index0")) *out = jv_int(i);
    else if (!strcmp(name, "revindex")) *out = jv_int(n - i);
    else if (!strcmp(name, "revindex0")) *out = jv_int(n - i - 1);
    else if (!strcmp(name, "first")) *out = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *out = jv_bool(i == n - 1);
    else if (!strcmp(name, "length")) *out = jv_int(n);
    else if (!strcmp(name, "depth")) *out = jv_int(1);
    else if (!strcmp(name, "depth0")) *out = jv_int(0);
    else if (!strcmp(name, "previtem")) *out = i > 0 ? l->items[i - 1] : jv_undef("there is no previous item");
    else if (!strcmp(name, "nextitem")) *out = i + 1 < n ? l->items[i + 1] : jv_undef("there is no next item");
    else if (!strcmp(name, "cycle")) return jv_func(c, "cycle", loop_cycle, lv, out);
    else *out = jv_undef("'LoopContext' has no such attribute");
    return 0;
}

/* ---- iteration -------------------------------------------------------------------------- */
int jinja_iter_items(jctx *c, jv v, jv **items, size_t *n) {
    *items = NULL;
    *n = 0;
    switch (v.t) {
    case JT_UNDEF: return 0;
    case JT_LIST: *items = v.u.l->v; *n = v.u.l->n; return 0;
    case JT_DICT: {
        jv *k = jarena_alloc(c->ar, (v.u.d->n ? v.u.d->n : 1) * sizeof *k);
        if (!k) return jinja_oom(c);
        for (size_t i = 0; i < v.u.d->n; i++) k[i] = v.u.d->e[i].k;
        *items = k;
        *n = v.u.d->n;
        return 0;
    }
    case JT_STR: {
        const jstr *s = v.u.s;
        size_t cnt = jutf8_count(s->s, s->len), k = 0;
        jv *it = jarena_alloc(c->ar, (cnt ? cnt : 1) * sizeof *it);
        if (!it) return jinja_oom(c);
        for (size_t i = 0; i < s->len;) {
            size_t st = i;
            jutf8_next(s->s, s->len, &i);
            int rc = jv_str(c, s->s + st, i - st, &it[k++]);
            if (rc) return rc;
        }
        *items = it;
        *n = k;
        return jinja_step(c, k);
    }
    default:
        return jinja_fail(c, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- assignment ------------------------------------------------------------------------- */
static int assign(jctx *c, jscope *s, const jnode *target, jv v) {
    int rc;
    if (target->kind == JN_NAME) return jinja_scope_set(c, s, target->name, v);
    if (target->kind == JN_ATTR) {
        jv ns;
        if (!jinja_scope_get(s, target->a->name, &ns)) return jinja_fail(c, "'%s' is undefined", target->a->name);
        if (ns.t != JT_NS) return jinja_fail(c, "cannot assign attribute on non-namespace object");
        jv key;
        if ((rc = jv_cstr(c, target->name, &key))) return rc;
        return jv_dict_set(c, ns.u.d, key, v);
    }
    /* tuple unpacking */
    jv *items;
    size_t n;
    if (v.t != JT_LIST && v.t != JT_STR && v.t != JT_DICT) return jinja_fail(c, "cannot unpack non-iterable %s object", jv_type_name(v));
    if ((rc = jinja_iter_items(c, v, &items, &n))) return rc;
    if (n != target->kids.n)
        return jinja_fail(c, n > target->kids.n ? "too many values to unpack (expected %zu)" : "not enough values to unpack (expected %zu)", target->kids.n);
    for (size_t i = 0; i < n; i++)
        if ((rc = assign(c, s, target->kids.v[i], items[i]))) return rc;
    return 0;
}

/* Runs a body with output redirected into a fresh buffer; *out is the captured string. */
static int capture(jctx *c, const jnodes *body, jv *out) {
    jbuf b = { 0 }, *saved = c->out;
    c->out = &b;
    int rc = jinja_exec_body(c, body);
    c->out = saved;
    return rc ? rc : jbuf_to_str(c, &b, out);
}

/* ---- macros ----------------------------------------------------------------------------- */
static int call_macro(jctx *c, const jmacro *m, const jargs *a, jv *out) {
    const jnode *d = m->def;
    size_t np = d->kids2.n;
    int rc, saved_line = c->line, saved_ctl = c->loopctl;
    if (c->depth >= JINJA_MAX_CALL_DEPTH)
        return jinja_fail(c, "macro calls nested too deeply (more than %d)", JINJA_MAX_CALL_DEPTH);
    jscope *s = jinja_scope_push(c, m->closure), *saved_scope = c->scope;
    jv varargs, kwargs;
    if (!s || (rc = jv_list_new(c, 0, &varargs)) || (rc = jv_dict_new(c, 0, &kwargs))) return s ? rc : jinja_oom(c);
    varargs.tuple = 1;
    for (size_t i = 0; i < a->n; i++) {
        if (i < np) rc = jinja_scope_set(c, s, d->kwnames[i], a->pos[i]);
        else rc = jv_list_push(c, varargs.u.l, a->pos[i]);
        if (rc) return rc;
    }
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < np && strcmp(d->kwnames[i], a->kwname[k]) != 0) i++;
        if (i < np && i < a->n)
            return jinja_fail(c, "macro '%s' got multiple values for argument '%s'", d->name, a->kwname[k]);
        if (i < np) rc = jinja_scope_set(c, s, d->kwnames[i], a->kw[k]);
        else {
            jv key;
            rc = jv_cstr(c, a->kwname[k], &key);
            if (!rc) rc = jv_dict_set(c, kwargs.u.d, key, a->kw[k]);
        }
        if (rc) return rc;
    }
    c->scope = s;
    c->depth++;
    for (size_t i = a->n; i < np && !rc; i++) {
        jv cur;
        bool given = false;
        for (size_t j = 0; j < s->n; j++) given = given || strcmp(s->names[j], d->kwnames[i]) == 0;
        if (given) continue;
        if (d->kids2.v[i]) {
            if (!(rc = jinja_eval(c, d->kids2.v[i], &cur))) rc = jinja_scope_set(c, s, d->kwnames[i], cur);
        } else {
            rc = jinja_scope_set(c, s, d->kwnames[i], jv_undef("a macro parameter was not provided"));
        }
    }
    if (!rc) rc = jinja_scope_set(c, s, "varargs", varargs);
    if (!rc) rc = jinja_scope_set(c, s, "kwargs", kwargs);
    if (!rc && m->caller.t == JT_MACRO) rc = jinja_scope_set(c, s, "caller", m->caller);
    c->loopctl = 0;
    if (!rc) rc = capture(c, &d->kids, out);
    c->loopctl = saved_ctl;
    c->depth--;
    c->scope = saved_scope;
    c->line = saved_line;
    return rc;
}

int jinja_call(jctx *c, jv fn, const jargs *a, jv *out) {
    int rc;
    if ((rc = jinja_step(c, 1))) return rc;
    switch (fn.t) {
    case JT_FUNC: return fn.u.fn->fn(c, fn.u.fn->self, a, out);
    case JT_MACRO: return call_macro(c, fn.u.m, a, out);
    case JT_UNDEF: return jinja_fail(c, "%s", fn.u.undef_hint ? fn.u.undef_hint : "undefined value is not callable");
    default: return jinja_fail(c, "'%s' object is not callable", jv_type_name(fn));
    }
}


static int make_macro(jctx *c, const jnode *def, jv caller, jv *out) {
    jmacro *m = jarena_alloc(c->ar, sizeof *m);
    if (!m) return jinja_oom(c);
    m->def = def;
    m->closure = c->scope;
    m->caller = caller;
    *out = (jv){ .t = JT_MACRO };
    out->u.m = m;
    return 0;
}

/* {% call(args) macro(...) %}body{% endcall %}: the body becomes `caller`. */
static int exec_callblock(jctx *c, const jnode *n) {
    jv fn, callerv, res;
    jargs a;
    int rc;
    if ((rc = jinja_eval(c, n->a->a, &fn)) || (rc = jinja_eval_args(c, n->a, &a))) return rc;
    if (fn.t != JT_MACRO) return jinja_fail(c, "'call' block needs a macro");
    if ((rc = make_macro(c, n->b, jv_undef(NULL), &callerv))) return rc;
    jmacro with = *fn.u.m;
    with.caller = callerv;
    if ((rc = call_macro(c, &with, &a, &res))) return rc;
    return jv_write_str(c, c->out, res);
}

/* ---- for -------------------------------------------------------------------------------- */
static int exec_for(jctx *c, const jnode *n) {
    jv seq;
    jv *items;
    size_t cnt;
    int rc;
    jscope *outer = c->scope;
    if ((rc = jinja_eval(c, n->b, &seq))) return rc;
    if ((rc = jinja_iter_items(c, seq, &items, &cnt))) return rc;
    if (n->c && cnt) { /* loop filter: `for x in xs if cond` (loop.* count kept items) */
        jv *kept = jarena_alloc(c->ar, cnt * sizeof *kept);
        size_t k = 0;
        if (!kept) return jinja_oom(c);
        for (size_t i = 0; i < cnt; i++) {
            jv ok;
            if (!(c->scope = jinja_scope_push(c, outer))) return jinja_oom(c);
            rc = assign(c, c->scope, n->a, items[i]);
            if (!rc) rc = jinja_eval(c, n->c, &ok);
            c->scope = outer;
            if (rc) return rc;
            if (jv_truthy(ok)) kept[k++] = items[i];
        }
        items = kept;
        cnt = k;
    }
    if (cnt == 0) {
        if (!(c->scope = jinja_scope_push(c, outer))) return jinja_oom(c);
        rc = jinja_exec_body(c, &n->kids2);
        c->scope = outer;
        return rc;
    }
    jloop *lp = jarena_alloc(c->ar, sizeof *lp);
    if (!lp) return jinja_oom(c);
    lp->n = cnt;
    lp->items = items;
    jv lv = { .t = JT_LOOP };
    lv.u.loop = lp;
    for (size_t i = 0; i < cnt; i++) {
        if (++c->iters > JINJA_MAX_LOOP_ITERS)
            return jinja_fail(c, "too many loop iterations (over %u)", JINJA_MAX_LOOP_ITERS);
        lp->i = i;
        if (!(c->scope = jinja_scope_push(c, outer))) return jinja_oom(c);
        rc = jinja_scope_set(c, c->scope, "loop", lv);
        if (!rc) rc = assign(c, c->scope, n->a, items[i]);
        if (!rc) rc = jinja_exec_body(c, &n->kids);
        c->scope = outer;
        if (rc) return rc;
        int ctl = c->loopctl;
        c->loopctl = 0;
        if (ctl == 1) break;
    }
    return 0;
}

/* ---- statements ------------------------------------------------------------------------- */
static int exec_setblock(jctx *c, const jnode *n) {
    jv v;
    int rc = capture(c, &n->kids, &v);
    if (!rc && n->c) {
        jv saved = c->captured;
        c->captured = v;
        rc = jinja_eval(c, n->c, &v);
        c->captured = saved;
    }
    return rc ? rc : assign(c, c->scope, n->a, v);
}

static int exec_stmt(jctx *c, const jnode *n) {
    jv v;
    int rc;
    c->line = n->line;
    if ((rc = jinja_step(c, 1))) return rc;
    switch (n->kind) {
    case JN_TEXT: return jbuf_put(c, c->out, n->val.u.s->s, n->val.u.s->len);
    case JN_OUTPUT:
        if ((rc = jinja_eval(c, n->a, &v))) return rc;
        return jv_write_str(c, c->out, v);
    case JN_IF:
        if ((rc = jinja_eval(c, n->a, &v))) return rc;
        return jinja_exec_body(c, jv_truthy(v) ? &n->kids : &n->kids2);
    case JN_FOR: return exec_for(c, n);
    case JN_SET:
        if ((rc = jinja_eval(c, n->b, &v))) return rc;
        c->line = n->line;
        return assign(c, c->scope, n->a, v);
    case JN_SETBLOCK: return exec_setblock(c, n);
    case JN_MACRO:
        if ((rc = make_macro(c, n, jv_undef(NULL), &v))) return rc;
        return jinja_scope_set(c, c->scope, n->name, v);
    case JN_CALLBLOCK: return exec_callblock(c, n);
    case JN_FILTERBLOCK: {
        jv saved = c->captured;
        if ((rc = capture(c, &n->kids, &v))) return rc;
        c->captured = v;
        rc = jinja_eval(c, n->c, &v);
        c->captured = saved;
        return rc ? rc : jv_write_str(c, c->out, v);
    }
    case JN_WITH: {
        jscope *outer = c->scope;
        if (!(c->scope = jinja_scope_push(c, outer))) return jinja_oom(c);
        for (size_t i = 0; i < n->kids2.n && !rc; i++) {
            if (!(rc = jinja_eval(c, n->kids2.v[i], &v))) rc = jinja_scope_set(c, c->scope, n->kwnames[i], v);
        }
        if (!rc) rc = jinja_exec_body(c, &n->kids);
        c->scope = outer;
        return rc;
    }
    case JN_BREAK: c->loopctl = 1; return 0;
    case JN_CONTINUE: c->loopctl = 2; return 0;
    default: return jinja_fail(c, "internal error: unexpected statement");
    }
}

int jinja_exec_body(jctx *c, const jnodes *body) {
    if (c->edepth >= JINJA_MAX_EVAL_DEPTH)
        return jinja_fail(c, "template nested too deeply (more than %d levels)", JINJA_MAX_EVAL_DEPTH);
    c->edepth++;
    int rc = 0;
    for (size_t i = 0; i < body->n && !rc; i++) {
        rc = exec_stmt(c, body->v[i]);
        if (c->loopctl) break;
    }
    c->edepth--;
    return rc;
}

int jinja_exec(jctx *c, const jnodes *body, jv vars, jstr **out) {
    int rc;
    /* the output buffer lives in the arena so c->out never points at a dead stack slot */
    jbuf *b = jarena_alloc(c->ar, sizeof *b);
    if (!b) return jinja_oom(c);
    c->globals = jinja_scope_push(c, NULL);
    if (!c->globals) return jinja_oom(c);
    if ((rc = jinja_globals_install(c, c->globals))) return rc;
    c->scope = jinja_scope_push(c, c->globals);
    if (!c->scope) return jinja_oom(c);
    for (size_t i = 0; i < vars.u.d->n; i++) {
        const jdict_ent *e = &vars.u.d->e[i];
        if (e->k.t != JT_STR) continue;
        if ((rc = jinja_scope_set(c, c->scope, e->k.u.s->s, e->v))) return rc;
    }
    c->out = b;
    rc = jinja_exec_body(c, body);
    c->out = NULL;
    if (rc) return rc;
    jv s;
    if ((rc = jbuf_to_str(c, b, &s))) return rc;
    *out = s.u.s;
    return 0;
}
