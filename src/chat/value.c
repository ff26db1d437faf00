/* value.c — the render arena and the Python-like value model of the template interpreter:
 * constructors, truthiness, equality and ordering, str()/repr() printing (Python rules:
 * None, True, 1.0, ['a'], {'k': 'v'}), markupsafe escaping and small UTF-8 helpers.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "chat/jinja.h"

/* ---- arena ------------------------------------------------------------------------------ */
typedef struct jchunk {
    struct jchunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} jchunk;

#define JCHUNK_SIZE (64u << 10)

void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (n > a->cap || a->used > a->cap - n) return NULL;
    jchunk *h = a->head;
    if (!h || h->size - h->used < n) {
        size_t sz = n > JCHUNK_SIZE / 4 ? n : JCHUNK_SIZE;
        jchunk *nc = malloc(sizeof *nc + sz);
        if (!nc) return NULL;
        nc->size = sz;
        nc->used = 0;
        if (h && sz == n) {
            /* a big block: put it behind the current chunk so the chunk stays in use */
            nc->next = h->next;
            h->next = nc;
        } else {
            nc->next = h;
            a->head = nc;
        }
        h = nc;
    }
    void *p = h->data + h->used;
    h->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena *a) {
    jchunk *h = a->head;
    while (h) {
        jchunk *n = h->next;
        free(h);
        h = n;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- errors ----------------------------------------------------------------------------- */
int jinja_fail(jctx *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hb_fail(c->err, HEARTH_E_TEMPLATE, "template line %d: %s", c->line, msg);
}

int jinja_oom(jctx *c) {
    return jinja_fail(c, "template needs too much memory (over %u MiB of values or a string "
                         "over %u MiB)", JINJA_MAX_ARENA >> 20, JINJA_MAX_OUTPUT >> 20);
}

int jinja_step(jctx *c, uint64_t n) {
    c->steps += n;
    if (c->steps > JINJA_MAX_STEPS)
        return jinja_fail(c, "template takes too long (over %u evaluation steps)", JINJA_MAX_STEPS);
    return 0;
}

/* ---- constructors ----------------------------------------------------------------------- */
jstr *jv_strbuf(jctx *c, const char *s, size_t n) {
    if (n > JINJA_MAX_OUTPUT) return NULL;
    jstr *r = jarena_alloc(c->ar, sizeof *r + n + 1);
    if (!r) return NULL;
    r->len = n;
    if (n) memcpy(r->s, s, n);
    r->s[n] = '\0';
    return r;
}

int jv_str(jctx *c, const char *s, size_t n, jv *out) {
    jstr *r = jv_strbuf(c, s, n);
    if (!r) return jinja_oom(c);
    *out = (jv){ .t = JT_STR };
    out->u.s = r;
    return 0;
}

int jv_cstr(jctx *c, const char *s, jv *out) { return jv_str(c, s, strlen(s), out); }

int jv_list_new(jctx *c, size_t cap, jv *out) {
    jlist *l = jarena_alloc(c->ar, sizeof *l);
    if (!l) return jinja_oom(c);
    if (cap) {
        if (cap > JINJA_MAX_ITEMS) return jinja_oom(c);
        l->v = jarena_alloc(c->ar, cap * sizeof *l->v);
        if (!l->v) return jinja_oom(c);
        l->cap = cap;
    }
    *out = (jv){ .t = JT_LIST };
    out->u.l = l;
    return 0;
}

int jv_list_push(jctx *c, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        if (nc > JINJA_MAX_ITEMS) return jinja_fail(c, "list longer than %u items", JINJA_MAX_ITEMS);
        jv *nv = jarena_alloc(c->ar, nc * sizeof *nv);
        if (!nv) return jinja_oom(c);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
    return 0;
}

int jv_dict_new(jctx *c, size_t cap, jv *out) {
    jdict *d = jarena_alloc(c->ar, sizeof *d);
    if (!d) return jinja_oom(c);
    if (cap) {
        if (cap > JINJA_MAX_ITEMS) return jinja_oom(c);
        d->e = jarena_alloc(c->ar, cap * sizeof *d->e);
        if (!d->e) return jinja_oom(c);
        d->cap = cap;
    }
    *out = (jv){ .t = JT_DICT };
    out->u.d = d;
    return 0;
}

jv *jv_dict_find(const jdict *d, jv k) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->e[i].k, k)) return &d->e[i].v;
    return NULL;
}

jv *jv_dict_find_str(const jdict *d, const char *k) {
    size_t kl = strlen(k);
    for (size_t i = 0; i < d->n; i++) {
        const jv *e = &d->e[i].k;
        if (e->t == JT_STR && e->u.s->len == kl && memcmp(e->u.s->s, k, kl) == 0) return &d->e[i].v;
    }
    return NULL;
}

int jv_dict_set(jctx *c, jdict *d, jv k, jv v) {
    jv *slot = jv_dict_find(d, k);
    if (slot) {
        *slot = v;
        return 0;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        if (nc > JINJA_MAX_ITEMS) return jinja_fail(c, "dict larger than %u items", JINJA_MAX_ITEMS);
        jdict_ent *ne = jarena_alloc(c->ar, nc * sizeof *ne);
        if (!ne) return jinja_oom(c);
        if (d->n) memcpy(ne, d->e, d->n * sizeof *ne);
        d->e = ne;
        d->cap = nc;
    }
    d->e[d->n].k = k;
    d->e[d->n].v = v;
    d->n++;
    return jinja_step(c, d->n / 16 + 1);
}

int jv_func(jctx *c, const char *name, jfunc_fn fn, jv self, jv *out) {
    jfunc *f = jarena_alloc(c->ar, sizeof *f);
    if (!f) return jinja_oom(c);
    f->name = name;
    f->fn = fn;
    f->self = self;
    *out = (jv){ .t = JT_FUNC };
    out->u.fn = f;
    return 0;
}

/* ---- predicates ------------------------------------------------------------------------- */
bool jv_truthy(jv v) {
    switch (v.t) {
    case JT_UNDEF: case JT_NONE: return false;
    case JT_BOOL: return v.u.b;
    case JT_INT: return v.u.i != 0;
    case JT_FLOAT: return v.u.f != 0.0;
    case JT_STR: return v.u.s->len != 0;
    case JT_LIST: return v.u.l->n != 0;
    case JT_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

bool jv_is_number(jv v) { return v.t == JT_INT || v.t == JT_FLOAT || v.t == JT_BOOL; }

double jv_as_double(jv v) {
    if (v.t == JT_FLOAT) return v.u.f;
    if (v.t == JT_BOOL) return v.u.b ? 1.0 : 0.0;
    return (double)v.u.i;
}

static int64_t as_i64(jv v) { return v.t == JT_BOOL ? (int64_t)v.u.b : v.u.i; }

static bool equal_depth(jv a, jv b, int depth);

/* Values nested deeper than JINJA_MAX_VALUE_DEPTH compare unequal (no recursion limit hit). */
bool jv_equal(jv a, jv b) { return equal_depth(a, b, 0); }

static bool equal_depth(jv a, jv b, int depth) {
    if (depth > JINJA_MAX_VALUE_DEPTH) return false;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t == JT_FLOAT || b.t == JT_FLOAT) return jv_as_double(a) == jv_as_double(b);
        return as_i64(a) == as_i64(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JT_UNDEF: case JT_NONE: return true;
    case JT_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
    case JT_LIST:
        if (a.tuple != b.tuple || a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_depth(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case JT_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jv_dict_find(b.u.d, a.u.d->e[i].k);
            if (!o || !equal_depth(a.u.d->e[i].v, *o, depth + 1)) return false;
        }
        return true;
    case JT_NS: return a.u.d == b.u.d;
    case JT_FUNC: return a.u.fn == b.u.fn;
    case JT_MACRO: return a.u.m == b.u.m;
    case JT_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

const char *jv_type_name(jv v) {
    switch (v.t) {
    case JT_UNDEF: return "Undefined";
    case JT_NONE: return "NoneType";
    case JT_BOOL: return "bool";
    case JT_INT: return "int";
    case JT_FLOAT: return "float";
    case JT_STR: return "str";
    case JT_LIST: return v.tuple ? "tuple" : "list";
    case JT_DICT: return "dict";
    case JT_NS: return "Namespace";
    case JT_FUNC: return "builtin_function_or_method";
    case JT_MACRO: return "Macro";
    case JT_LOOP: return "LoopContext";
    default: return "object";
    }
}

static int less_depth(jctx *c, jv a, jv b, bool *lt, int depth);
int jv_less(jctx *c, jv a, jv b, bool *lt) { return less_depth(c, a, b, lt, 0); }

static int less_depth(jctx *c, jv a, jv b, bool *lt, int depth) {
    if (depth > JINJA_MAX_VALUE_DEPTH) return jinja_fail(c, "values nested too deeply to compare");
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t == JT_FLOAT || b.t == JT_FLOAT) *lt = jv_as_double(a) < jv_as_double(b);
        else *lt = as_i64(a) < as_i64(b);
        return 0;
    }
    if (a.t == JT_STR && b.t == JT_STR) {
        /* UTF-8 byte order equals code point order */
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int r = memcmp(a.u.s->s, b.u.s->s, n);
        *lt = r < 0 || (r == 0 && a.u.s->len < b.u.s->len);
        return 0;
    }
    if (a.t == JT_LIST && b.t == JT_LIST && a.tuple == b.tuple) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i])) continue;
            return less_depth(c, a.u.l->v[i], b.u.l->v[i], lt, depth + 1);
        }
        *lt = a.u.l->n < b.u.l->n;
        return 0;
    }
    return jinja_fail(c, "'<' not supported between instances of '%s' and '%s'",
                      jv_type_name(a), jv_type_name(b));
}

/* ---- buffers ---------------------------------------------------------------------------- */
int jbuf_put(jctx *c, jbuf *b, const char *s, size_t n) {
    if (n == 0) return 0;
    if (n > JINJA_MAX_OUTPUT || b->n > JINJA_MAX_OUTPUT - n)
        return jinja_fail(c, "output longer than %u MiB", JINJA_MAX_OUTPUT >> 20);
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = jarena_alloc(c->ar, nc);
        if (!np) return jinja_oom(c);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int jbuf_puts(jctx *c, jbuf *b, const char *s) { return jbuf_put(c, b, s, strlen(s)); }

int jbuf_to_str(jctx *c, jbuf *b, jv *out) { return jv_str(c, b->p ? b->p : "", b->n, out); }

/* ---- UTF-8 ------------------------------------------------------------------------------ */
int32_t jutf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = n - *i;
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(p, (utf8proc_ssize_t)(left > 4 ? 4 : left), &cp);
    if (k <= 0) {
        (*i)++;
        return p[0];
    }
    *i += (size_t)k;
    return cp;
}

size_t jutf8_put(char *dst, int32_t cp) {
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)dst);
}

size_t jutf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        jutf8_next(s, n, &i);
        k++;
    }
    return k;
}

/* ---- printing --------------------------------------------------------------------------- */
void jfmt_double(double d, char *buf, size_t cap) {
    if (isnan(d)) { snprintf(buf, cap, "nan"); return; }
    if (isinf(d)) { snprintf(buf, cap, d < 0 ? "-inf" : "inf"); return; }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e = [-]D[.DDD]e[+-]XX: collect digits and exponent, then lay out as Python's repr */
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    char dig[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') dig[nd++] = *p;
    int ex = atoi(p + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = '\0';
    char *o = buf;
    size_t left = cap;
#define PUT(...) do { int w_ = snprintf(o, left, __VA_ARGS__); if (w_ < 0 || (size_t)w_ >= left) return; o += w_; left -= (size_t)w_; } while (0)
    if (neg) PUT("-");
    if (ex < -4 || ex >= 16) {
        PUT("%c", dig[0]);
        if (nd > 1) PUT(".%s", dig + 1);
        PUT("e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    } else if (ex < 0) {
        PUT("0.");
        for (int i = 0; i < -ex - 1; i++) PUT("0");
        PUT("%s", dig);
    } else if (ex + 1 >= nd) {
        PUT("%s", dig);
        for (int i = 0; i < ex + 1 - nd; i++) PUT("0");
        PUT(".0");
    } else {
        PUT("%.*s.%s", ex + 1, dig, dig + ex + 1);
    }
#undef PUT
}

/* Python str.isprintable() for one code point. */
static bool cp_printable(int32_t cp) {
    if (cp == ' ') return true;
    if (cp < 0x20 || cp == 0x7f) return false;
    if (cp < 0x7f) return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static int write_str_repr(jctx *c, jbuf *b, const jstr *s) {
    bool has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    int rc = jbuf_put(c, b, &q, 1);
    for (size_t i = 0; i < s->len && !rc;) {
        size_t st = i;
        int32_t cp = jutf8_next(s->s, s->len, &i);
        char tmp[16];
        if (cp == q || cp == '\\') { tmp[0] = '\\'; tmp[1] = (char)cp; rc = jbuf_put(c, b, tmp, 2); }
        else if (cp == '\n') rc = jbuf_puts(c, b, "\\n");
        else if (cp == '\r') rc = jbuf_puts(c, b, "\\r");
        else if (cp == '\t') rc = jbuf_puts(c, b, "\\t");
        else if (cp_printable(cp)) rc = jbuf_put(c, b, s->s + st, i - st);
        else {
            if (cp < 0x100) snprintf(tmp, sizeof tmp, "\\x%02x", (unsigned)cp);
            else if (cp < 0x10000) snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            else snprintf(tmp, sizeof tmp, "\\U%08x", (unsigned)cp);
            rc = jbuf_puts(c, b, tmp);
        }
    }
    return rc ? rc : jbuf_put(c, b, &q, 1);
}

static int write_any(jctx *c, jbuf *b, jv v, bool repr, int depth);

static int write_seq(jctx *c, jbuf *b, jv v, int depth) {
    static const char *const views[] = { "", "dict_items(", "dict_keys(", "dict_values(" };
    int rc = v.view ? jbuf_puts(c, b, views[v.view & 3]) : 0;
    if (!rc) rc = jbuf_puts(c, b, v.tuple ? "(" : "[");
    for (size_t i = 0; i < v.u.l->n && !rc; i++) {
        if (i) rc = jbuf_puts(c, b, ", ");
        if (!rc) rc = write_any(c, b, v.u.l->v[i], true, depth + 1);
    }
    if (!rc && v.tuple && v.u.l->n == 1) rc = jbuf_puts(c, b, ",");
    if (!rc) rc = jbuf_puts(c, b, v.tuple ? ")" : "]");
    return rc || !v.view ? rc : jbuf_puts(c, b, ")");
}

static int write_map(jctx *c, jbuf *b, const jdict *d, int depth) {
    int rc = jbuf_puts(c, b, "{");
    for (size_t i = 0; i < d->n && !rc; i++) {
        if (i) rc = jbuf_puts(c, b, ", ");
        if (!rc) rc = write_any(c, b, d->e[i].k, true, depth + 1);
        if (!rc) rc = jbuf_puts(c, b, ": ");
        if (!rc) rc = write_any(c, b, d->e[i].v, true, depth + 1);
    }
    return rc ? rc : jbuf_puts(c, b, "}");
}

static int write_any(jctx *c, jbuf *b, jv v, bool repr, int depth) {
    char tmp[64];
    int rc;
    if ((rc = jinja_step(c, 1))) return rc;
    if (depth > JINJA_MAX_VALUE_DEPTH) return jinja_fail(c, "value nested too deeply to print");
    switch (v.t) {
    case JT_UNDEF: return repr ? jbuf_puts(c, b, "Undefined") : 0;
    case JT_NONE: return jbuf_puts(c, b, "None");
    case JT_BOOL: return jbuf_puts(c, b, v.u.b ? "True" : "False");
    case JT_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return jbuf_puts(c, b, tmp);
    case JT_FLOAT: jfmt_double(v.u.f, tmp, sizeof tmp); return jbuf_puts(c, b, tmp);
    case JT_STR: return repr ? write_str_repr(c, b, v.u.s) : jbuf_put(c, b, v.u.s->s, v.u.s->len);
    case JT_LIST: return write_seq(c, b, v, depth);
    case JT_DICT: return write_map(c, b, v.u.d, depth);
    case JT_NS:
        if ((rc = jbuf_puts(c, b, "<Namespace "))) return rc;
        if ((rc = write_map(c, b, v.u.d, depth))) return rc;
        return jbuf_puts(c, b, ">");
    case JT_FUNC:
        snprintf(tmp, sizeof tmp, "<built-in function %s>", v.u.fn->name);
        return jbuf_puts(c, b, tmp);
    case JT_MACRO:
        snprintf(tmp, sizeof tmp, "<Macro '%.40s'>", v.u.m->def->name ? v.u.m->def->name : "caller");
        return jbuf_puts(c, b, tmp);
    default: return jbuf_puts(c, b, "<LoopContext>");
    }
}

int jv_write_str(jctx *c, jbuf *b, jv v) { return write_any(c, b, v, false, 0); }
int jv_write_repr(jctx *c, jbuf *b, jv v) { return write_any(c, b, v, true, 0); }

int jv_to_str(jctx *c, jv v, jv *out) {
    if (v.t == JT_STR) {
        *out = v;
        return 0;
    }
    jbuf b = { 0 };
    int rc = jv_write_str(c, &b, v);
    return rc ? rc : jbuf_to_str(c, &b, out);
}

int jv_escape(jctx *c, jv v, jv *out) {
    if (v.t == JT_STR && v.safe) {
        *out = v;
        return 0;
    }
    jv s;
    int rc = jv_to_str(c, v, &s);
    if (rc) return rc;
    jbuf b = { 0 };
    const char *p = s.u.s->s;
    size_t n = s.u.s->len, run = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *rep = NULL;
        switch (p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&#34;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (!rep) continue;
        rc = jbuf_put(c, &b, p + run, i - run);
        if (!rc) rc = jbuf_puts(c, &b, rep);
        run = i + 1;
    }
    if (!rc) rc = jbuf_put(c, &b, p + run, n - run);
    if (!rc) rc = jbuf_to_str(c, &b, out);
    if (!rc) out->safe = 1;
    return rc;
}
