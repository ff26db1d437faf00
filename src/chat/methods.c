/* methods.c — Python methods reachable from templates (str, dict, list), `%` formatting,
 * str.format, and the global functions: range, namespace, dict, raise_exception,
 * strftime_now.
 *
 * As in Jinja2's ImmutableSandboxedEnvironment, methods that mutate a list or dict
 * (append, pop, update, ...) are unsafe: looking them up gives an undefined value whose use
 * fails with "access to attribute 'append' of 'list' object is unsafe.".
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/jinja.h"
#include "chat/strutil.h"

static jv arg(const jargs *a, size_t pos, const char *kw, jv def) {
    if (pos < a->n) return a->pos[pos];
    for (size_t i = 0; kw && i < a->nkw; i++)
        if (!strcmp(a->kwname[i], kw)) return a->kw[i];
    return def;
}

static int want_str(jctx *c, jv v, const char *what) {
    if (v.t == JT_STR) return 0;
    return jinja_fail(c, "%s must be str, not %s", what, jv_type_name(v));
}

static int64_t int_arg(jv v, int64_t def) { return v.t == JT_INT ? v.u.i : v.t == JT_BOOL ? v.u.b : def; }

int jinja_dict_items(jctx *c, const jdict *d, jv *out) {
    int rc = jv_list_new(c, d->n, out);
    for (size_t i = 0; i < d->n && !rc; i++) {
        jv t;
        if ((rc = jv_list_new(c, 2, &t))) return rc;
        t.tuple = 1;
        t.u.l->v[0] = d->e[i].k;
        t.u.l->v[1] = d->e[i].v;
        t.u.l->n = 2;
        out->u.l->v[out->u.l->n++] = t;
    }
    return rc ? rc : jinja_step(c, d->n);
}

/* ---- str methods ------------------------------------------------------------------------ */
static int m_strip_common(jctx *c, jv self, const jargs *a, int mode, jv *out) {
    jv chars = arg(a, 0, "chars", jv_none());
    if (chars.t != JT_NONE && want_str(c, chars, "strip arg")) return c->err->code;
    return jstr_strip(c, self, chars, mode, out);
}
static int m_strip(jctx *c, jv self, const jargs *a, jv *out) { return m_strip_common(c, self, a, 3, out); }
static int m_lstrip(jctx *c, jv self, const jargs *a, jv *out) { return m_strip_common(c, self, a, JSTRIP_LEFT, out); }
static int m_rstrip(jctx *c, jv self, const jargs *a, jv *out) { return m_strip_common(c, self, a, JSTRIP_RIGHT, out); }
static int m_upper(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return jstr_case(c, self, JCASE_UPPER, out); }
static int m_lower(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return jstr_case(c, self, JCASE_LOWER, out); }
static int m_title(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return jstr_case(c, self, JCASE_TITLE, out); }
static int m_capitalize(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return jstr_case(c, self, JCASE_CAPITALIZE, out); }

static int affix(jctx *c, jv self, const jargs *a, bool end, jv *out) {
    jv p = arg(a, 0, NULL, jv_undef(NULL));
    const jstr *s = self.u.s;
    jv *cands = &p;
    size_t n = 1;
    if (p.t == JT_LIST && p.tuple) { cands = p.u.l->v; n = p.u.l->n; }
    bool hit = false;
    for (size_t i = 0; i < n && !hit; i++) {
        if (want_str(c, cands[i], end ? "endswith arg" : "startswith arg")) return c->err->code;
        const jstr *f = cands[i].u.s;
        hit = f->len <= s->len && memcmp(end ? s->s + s->len - f->len : s->s, f->s, f->len) == 0;
    }
    *out = jv_bool(hit);
    return 0;
}
static int m_startswith(jctx *c, jv self, const jargs *a, jv *out) { return affix(c, self, a, false, out); }
static int m_endswith(jctx *c, jv self, const jargs *a, jv *out) { return affix(c, self, a, true, out); }

static int split_common(jctx *c, jv self, const jargs *a, bool right, jv *out) {
    jv sep = arg(a, 0, "sep", jv_none());
    if (sep.t != JT_NONE && want_str(c, sep, "separator")) return c->err->code;
    return jstr_split(c, self, sep, int_arg(arg(a, 1, "maxsplit", jv_int(-1)), -1), right, out);
}
static int m_split(jctx *c, jv self, const jargs *a, jv *out) { return split_common(c, self, a, false, out); }
static int m_rsplit(jctx *c, jv self, const jargs *a, jv *out) { return split_common(c, self, a, true, out); }
static int m_splitlines(jctx *c, jv self, const jargs *a, jv *out) {
    return jstr_splitlines(c, self, jv_truthy(arg(a, 0, "keepends", jv_bool(false))), out);
}

static int m_replace(jctx *c, jv self, const jargs *a, jv *out) {
    jv o = arg(a, 0, NULL, jv_undef(NULL)), n = arg(a, 1, NULL, jv_undef(NULL));
    if (want_str(c, o, "replace arg 1") || want_str(c, n, "replace arg 2")) return c->err->code;
    return jstr_replace(c, self, o, n, int_arg(arg(a, 2, "count", jv_int(-1)), -1), out);
}

static int find_common(jctx *c, jv self, const jargs *a, bool right, bool raise, jv *out) {
    jv sub = arg(a, 0, NULL, jv_undef(NULL));
    if (want_str(c, sub, "substring")) return c->err->code;
    int64_t r = jstr_find(self, sub, right);
    if (r < 0 && raise) return jinja_fail(c, "substring not found");
    *out = jv_int(r);
    return 0;
}
static int m_find(jctx *c, jv self, const jargs *a, jv *out) { return find_common(c, self, a, false, false, out); }
static int m_rfind(jctx *c, jv self, const jargs *a, jv *out) { return find_common(c, self, a, true, false, out); }
static int m_index_str(jctx *c, jv self, const jargs *a, jv *out) { return find_common(c, self, a, false, true, out); }

static int m_count_str(jctx *c, jv self, const jargs *a, jv *out) {
    jv sub = arg(a, 0, NULL, jv_undef(NULL));
    if (want_str(c, sub, "substring")) return c->err->code;
    *out = jv_int(jstr_count(self, sub));
    return 0;
}

static int m_join(jctx *c, jv self, const jargs *a, jv *out) {
    jv *items;
    size_t n;
    int rc = jinja_iter_items(c, arg(a, 0, NULL, jv_undef(NULL)), &items, &n);
    jbuf b = { 0 };
    for (size_t i = 0; i < n && !rc; i++) {
        if (items[i].t != JT_STR) return jinja_fail(c, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items[i]));
        if (i) rc = jbuf_put(c, &b, self.u.s->s, self.u.s->len);
        if (!rc) rc = jbuf_put(c, &b, items[i].u.s->s, items[i].u.s->len);
    }
    return rc ? rc : jbuf_to_str(c, &b, out);
}

static int str_pred(jctx *c, jv self, int kind, jv *out) {
    (void)c;
    const jstr *s = self.u.s;
    bool ok = s->len > 0, any_cased = false;
    for (size_t i = 0; i < s->len && ok;) {
        int32_t cp = jutf8_next(s->s, s->len, &i);
        switch (kind) {
        case 0: ok = cp >= '0' && cp <= '9'; break;
        case 1: ok = jcp_is_word(cp) && cp != '_' && !(cp >= '0' && cp <= '9'); break;
        case 2: ok = jcp_is_word(cp) && cp != '_'; break;
        case 3: ok = jcp_is_space(cp); break;
        case 4: if (cp >= 'A' && cp <= 'Z') ok = false; else if (cp >= 'a' && cp <= 'z') any_cased = true; break;
        default: if (cp >= 'a' && cp <= 'z') ok = false; else if (cp >= 'A' && cp <= 'Z') any_cased = true; break;
        }
    }
    *out = jv_bool(ok && (kind < 4 || any_cased));
    return 0;
}
static int m_isdigit(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 0, out); }
static int m_isalpha(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 1, out); }
static int m_isalnum(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 2, out); }
static int m_isspace(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 3, out); }
static int m_islower(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 4, out); }
static int m_isupper(jctx *c, jv self, const jargs *a, jv *out) { (void)a; return str_pred(c, self, 5, out); }

/* str.format with {} / {0} / {name} fields (format specs other than empty are refused). */
static int m_format(jctx *c, jv self, const jargs *a, jv *out) {
    const jstr *s = self.u.s;
    jbuf b = { 0 };
    size_t auto_idx = 0;
    int rc = 0;
    for (size_t i = 0; i < s->len && !rc; i++) {
        char ch = s->s[i];
        if ((ch == '{' || ch == '}') && i + 1 < s->len && s->s[i + 1] == ch) { rc = jbuf_put(c, &b, &ch, 1); i++; continue; }
        if (ch == '}') return jinja_fail(c, "Single '}' encountered in format string");
        if (ch != '{') { rc = jbuf_put(c, &b, &ch, 1); continue; }
        const char *end = memchr(s->s + i, '}', s->len - i);
        if (!end) return jinja_fail(c, "Single '{' encountered in format string");
        size_t fl = (size_t)(end - (s->s + i + 1));
        char field[64];
        if (fl >= sizeof field || memchr(s->s + i + 1, ':', fl) || memchr(s->s + i + 1, '!', fl))
            return jinja_fail(c, "str.format: only plain {} / {N} / {name} fields are supported");
        memcpy(field, s->s + i + 1, fl);
        field[fl] = '\0';
        jv v = jv_undef(NULL);
        if (fl == 0) v = auto_idx < a->n ? a->pos[auto_idx++] : v;
        else if (field[0] >= '0' && field[0] <= '9') { size_t k = (size_t)strtoul(field, NULL, 10); if (k < a->n) v = a->pos[k]; }
        else v = arg(a, (size_t)-1, field, v);
        if (v.t == JT_UNDEF) return jinja_fail(c, "str.format: no value for field '{%s}'", field);
        rc = jv_write_str(c, &b, v);
        i += fl + 1;
    }
    return rc ? rc : jbuf_to_str(c, &b, out);
}

/* ---- dict / list methods ---------------------------------------------------------------- */
static int m_items(jctx *c, jv self, const jargs *a, jv *out) {
    (void)a;
    int rc = jinja_dict_items(c, self.u.d, out);
    out->view = JVIEW_ITEMS;
    return rc;
}
static int m_keys(jctx *c, jv self, const jargs *a, jv *out) {
    (void)a;
    int rc = jv_list_new(c, self.u.d->n, out);
    for (size_t i = 0; i < self.u.d->n && !rc; i++) out->u.l->v[out->u.l->n++] = self.u.d->e[i].k;
    out->view = JVIEW_KEYS;
    return rc;
}
static int m_values(jctx *c, jv self, const jargs *a, jv *out) {
    (void)a;
    int rc = jv_list_new(c, self.u.d->n, out);
    for (size_t i = 0; i < self.u.d->n && !rc; i++) out->u.l->v[out->u.l->n++] = self.u.d->e[i].v;
    out->view = JVIEW_VALUES;
    return rc;
}
static int m_get(jctx *c, jv self, const jargs *a, jv *out) {
    (void)c;
    jv *v = jv_dict_find(self.u.d, arg(a, 0, NULL, jv_undef(NULL)));
    *out = v ? *v : arg(a, 1, "default", jv_none());
    return 0;
}
static int m_copy(jctx *c, jv self, const jargs *a, jv *out) {
    (void)a;
    int rc;
    if (self.t == JT_LIST) {
        if ((rc = jv_list_new(c, self.u.l->n, out))) return rc;
        for (size_t i = 0; i < self.u.l->n; i++) out->u.l->v[i] = self.u.l->v[i];
        out->u.l->n = self.u.l->n;
        return 0;
    }
    if ((rc = jv_dict_new(c, self.u.d->n, out))) return rc;
    for (size_t i = 0; i < self.u.d->n && !rc; i++) rc = jv_dict_set(c, out->u.d, self.u.d->e[i].k, self.u.d->e[i].v);
    return rc;
}
static int m_list_index(jctx *c, jv self, const jargs *a, jv *out) {
    jv x = arg(a, 0, NULL, jv_undef(NULL));
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jv_equal(self.u.l->v[i], x)) { *out = jv_int((int64_t)i); return 0; }
    return jinja_fail(c, "value is not in list");
}
static int m_list_count(jctx *c, jv self, const jargs *a, jv *out) {
    (void)c;
    jv x = arg(a, 0, NULL, jv_undef(NULL));
    int64_t n = 0;
    for (size_t i = 0; i < self.u.l->n; i++) n += jv_equal(self.u.l->v[i], x);
    *out = jv_int(n);
    return 0;
}

typedef struct method_def { uint8_t type; const char *name; jfunc_fn fn; } method_def;
static const method_def k_methods[] = {
    { JT_STR, "strip", m_strip }, { JT_STR, "lstrip", m_lstrip }, { JT_STR, "rstrip", m_rstrip },
    { JT_STR, "upper", m_upper }, { JT_STR, "lower", m_lower }, { JT_STR, "title", m_title },
    { JT_STR, "capitalize", m_capitalize }, { JT_STR, "startswith", m_startswith },
    { JT_STR, "endswith", m_endswith }, { JT_STR, "split", m_split }, { JT_STR, "rsplit", m_rsplit },
    { JT_STR, "splitlines", m_splitlines }, { JT_STR, "replace", m_replace }, { JT_STR, "find", m_find },
    { JT_STR, "rfind", m_rfind }, { JT_STR, "index", m_index_str }, { JT_STR, "count", m_count_str },
    { JT_STR, "join", m_join }, { JT_STR, "format", m_format }, { JT_STR, "isdigit", m_isdigit },
    { JT_STR, "isalpha", m_isalpha }, { JT_STR, "isalnum", m_isalnum }, { JT_STR, "isspace", m_isspace },
    { JT_STR, "islower", m_islower }, { JT_STR, "isupper", m_isupper },
    { JT_DICT, "items", m_items }, { JT_DICT, "keys", m_keys }, { JT_DICT, "values", m_values },
    { JT_DICT, "get", m_get }, { JT_DICT, "copy", m_copy },
    { JT_LIST, "index", m_list_index }, { JT_LIST, "count", m_list_count }, { JT_LIST, "copy", m_copy },
};

/* Mutating methods the immutable sandbox refuses. */
static const char *const k_unsafe_list[] = { "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", NULL };
static const char *const k_unsafe_dict[] = { "update", "pop", "popitem", "setdefault", "clear", NULL };

bool jinja_method(jctx *c, jv obj, const char *name, jv *out) {
    if (obj.t == JT_LIST && obj.tuple && (!strcmp(name, "copy"))) return false;
    for (size_t i = 0; i < sizeof k_methods / sizeof k_methods[0]; i++) {
        if (k_methods[i].type == obj.t && !strcmp(k_methods[i].name, name)) {
            jv_func(c, name, k_methods[i].fn, obj, out);
            return true;
        }
    }
    const char *const *unsafe = obj.t == JT_LIST && !obj.tuple ? k_unsafe_list : obj.t == JT_DICT ? k_unsafe_dict : NULL;
    for (; unsafe && *unsafe; unsafe++) {
        if (strcmp(*unsafe, name) != 0) continue;
        size_t n = strlen(name) + 64;
        char *h = jarena_alloc(c->ar, n);
        if (h) snprintf(h, n, "access to attribute '%s' of '%s' object is unsafe.", name, jv_type_name(obj));
        *out = jv_undef(h);
        return true;
    }
    return false;
}

/* ---- % formatting ----------------------------------------------------------------------- */
/* Appends printf(spec, ...) to b whatever its length (a %s of a long string, a wide field). */
static int fmt_put(jctx *c, jbuf *b, const char *spec, ...) __attribute__((format(printf, 3, 4)));
static int fmt_put(jctx *c, jbuf *b, const char *spec, ...) {
    va_list ap, aq;
    va_start(ap, spec);
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, spec, ap);
    int rc = n < 0 ? jinja_fail(c, "format failed") : 0;
    char *t = rc ? NULL : malloc((size_t)n + 1);
    if (!rc && !t) rc = jinja_fail(c, "out of memory");
    if (!rc) {
        vsnprintf(t, (size_t)n + 1, spec, aq);
        rc = jbuf_put(c, b, t, (size_t)n);
    }
    free(t);
    va_end(aq);
    va_end(ap);
    return rc;
}

/* Width and precision of a conversion spec ("%-10.3"), each at most JINJA_MAX_FMT_WIDTH:
 * a template must not make the C library pad a field to gigabytes. */
static int fmt_check(jctx *c, const char *spec) {
    for (const char *p = spec; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        long n = 0;
        while (isdigit((unsigned char)*p) && n <= JINJA_MAX_FMT_WIDTH) n = n * 10 + (*p++ - '0');
        if (n > JINJA_MAX_FMT_WIDTH)
            return jinja_fail(c, "format width or precision is too large (the limit is %d)", JINJA_MAX_FMT_WIDTH);
    }
    return 0;
}

/* A conversion spec's parts: flags, then width, then '.' and precision ("%-#8.3"). */
typedef struct fmt_spec { bool left, zero, alt, plus, space; long width, prec; } fmt_spec;

static int fmt_parse(jctx *c, const char *spec, fmt_spec *f) {
    const char *p = spec + 1;
    memset(f, 0, sizeof *f);
    f->prec = -1;
    for (; *p && strchr("-+ #0", *p); p++)
        f->left |= *p == '-', f->zero |= *p == '0', f->alt |= *p == '#', f->plus |= *p == '+', f->space |= *p == ' ';
    while (isdigit((unsigned char)*p)) f->width = f->width * 10 + (*p++ - '0'); /* <= 4096: fmt_check */
    if (*p == '.') {
        f->prec = 0;
        for (p++; isdigit((unsigned char)*p);) f->prec = f->prec * 10 + (*p++ - '0');
    }
    return *p ? jinja_fail(c, "bad format specification '%s'", spec) : 0;
}

/* An integer conversion (d, i, x, X, o) as Python's % writes it, which C's printf does not:
 * a negative hex/octal value is its sign and magnitude ("%x" % -1 == "-1", not ffff...),
 * '#' gives 0x/0X/0o even for zero, '+' and ' ' apply to hex and octal too, and '0' pads
 * with zeros even with a precision ("%05.3d" % 5 == "00005"). */
static int fmt_int(jctx *c, jbuf *b, const fmt_spec *f, char conv, long long v) {
    unsigned long long mag = v < 0 ? (unsigned long long)(-(v + 1)) + 1u : (unsigned long long)v; /* LLONG_MIN too */
    char digits[32];
    snprintf(digits, sizeof digits, conv == 'x' ? "%llx" : conv == 'X' ? "%llX" : conv == 'o' ? "%llo" : "%llu", mag);
    long nd = (long)strlen(digits), zeros = f->prec > nd ? f->prec - nd : 0;
    const char *sign = v < 0 ? "-" : f->plus ? "+" : f->space ? " " : "";
    const char *prefix = !f->alt ? "" : conv == 'x' ? "0x" : conv == 'X' ? "0X" : conv == 'o' ? "0o" : "";
    long len = (long)(strlen(sign) + strlen(prefix)) + zeros + nd, pad = f->width > len ? f->width - len : 0;
    int rc = 0;
    if (f->zero && !f->left) zeros += pad, pad = 0;
    for (long i = 0; !rc && !f->left && i < pad; i++) rc = jbuf_put(c, b, " ", 1);
    if (!rc) rc = jbuf_puts(c, b, sign);
    if (!rc) rc = jbuf_puts(c, b, prefix);
    for (long i = 0; !rc && i < zeros; i++) rc = jbuf_put(c, b, "0", 1);
    if (!rc) rc = jbuf_put(c, b, digits, (size_t)nd);
    for (long i = 0; !rc && f->left && i < pad; i++) rc = jbuf_put(c, b, " ", 1);
    return rc;
}

int jinja_str_format(jctx *c, jv fmt, jv args, jv *out) {
    const jstr *s = fmt.u.s;
    jbuf b = { 0 };
    size_t ai = 0, nargs = (args.t == JT_LIST && args.tuple) ? args.u.l->n : 1;
    const jv *av = (args.t == JT_LIST && args.tuple) ? args.u.l->v : &args;
    int rc = 0;
    for (size_t i = 0; i < s->len && !rc; i++) {
        if (s->s[i] != '%') { rc = jbuf_put(c, &b, s->s + i, 1); continue; }
        if (++i >= s->len) return jinja_fail(c, "incomplete format");
        jv v;
        if (s->s[i] == '(') { /* %(name)s with a dict argument */
            const char *e = memchr(s->s + i, ')', s->len - i);
            if (!e || args.t != JT_DICT) return jinja_fail(c, "format requires a mapping");
            jv key;
            if ((rc = jv_str(c, s->s + i + 1, (size_t)(e - s->s) - i - 1, &key))) return rc;
            jv *f = jv_dict_find(args.u.d, key);
            if (!f) return jinja_fail(c, "format: key '%s' not found", key.u.s->s);
            v = *f;
            i = (size_t)(e - s->s) + 1;
        } else if (s->s[i] != '%') {
            if (ai >= nargs) return jinja_fail(c, "not enough arguments for format string");
            v = av[ai++];
        }
        char spec[32] = "%";
        size_t k = 1;
        while (i < s->len && strchr("-+ #0123456789.", s->s[i]) && k < sizeof spec - 4) spec[k++] = s->s[i++];
        if (i >= s->len) return jinja_fail(c, "incomplete format");
        char conv = s->s[i];
        if (conv == '%') { rc = jbuf_put(c, &b, "%", 1); continue; }
        spec[k] = '\0';
        fmt_spec fs;
        if ((rc = fmt_check(c, spec)) || (rc = fmt_parse(c, spec, &fs))) return rc; /* "%5-3d", "%1.2.3f": refused */
        switch (conv) {
        case 's': case 'r': {
            jbuf t = { 0 };
            if ((rc = conv == 's' ? jv_write_str(c, &t, v) : jv_write_repr(c, &t, v))) return rc;
            spec[k++] = 's';
            spec[k] = '\0';
            if (k == 2) rc = jbuf_put(c, &b, t.p ? t.p : "", t.n);
            else rc = fmt_put(c, &b, spec, t.p ? t.p : "");
            break;
        }
        case 'd': case 'i': case 'x': case 'X': case 'o':
        {
            if (!jv_is_number(v)) return jinja_fail(c, "%%%c format: a number is required, not %s", conv, jv_type_name(v));
            /* 2^63 as a double: casting anything at or past it (or NaN) is undefined */
            if (v.t == JT_FLOAT && !(v.u.f > -9223372036854775808.0 && v.u.f < 9223372036854775808.0))
                return jinja_fail(c, "%%%c format: %g is out of the integer range", conv, v.u.f);
            rc = fmt_int(c, &b, &fs, conv, v.t == JT_FLOAT ? (long long)v.u.f : v.t == JT_BOOL ? v.u.b : v.u.i);
            break;
        }
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
            if (!jv_is_number(v)) return jinja_fail(c, "%%%c format: a real number is required, not %s", conv, jv_type_name(v));
            spec[k++] = conv; spec[k] = '\0';
            rc = fmt_put(c, &b, spec, jv_as_double(v));
            break;
        default: return jinja_fail(c, "unsupported format character '%c'", conv);
        }
    }
    if (!rc && ai < nargs && args.t != JT_DICT) return jinja_fail(c, "not all arguments converted during string formatting");
    return rc ? rc : jbuf_to_str(c, &b, out);
}

/* ---- globals ---------------------------------------------------------------------------- */
static int g_range(jctx *c, jv self, const jargs *a, jv *out) {
    (void)self;
    int64_t st = 0, en, step = 1;
    for (size_t i = 0; i < a->n; i++)
        if (a->pos[i].t != JT_INT && a->pos[i].t != JT_BOOL) return jinja_fail(c, "range() arguments must be integers");
    if (a->n == 1) en = int_arg(a->pos[0], 0);
    else if (a->n == 2 || a->n == 3) { st = int_arg(a->pos[0], 0); en = int_arg(a->pos[1], 0); if (a->n == 3) step = int_arg(a->pos[2], 1); }
    else return jinja_fail(c, "range expected 1 to 3 arguments, got %zu", a->n);
    if (step == 0) return jinja_fail(c, "range() arg 3 must not be zero");
    __int128 cnt = step > 0 ? ((__int128)en - st + step - 1) / step : ((__int128)st - en - step - 1) / -step;
    if (cnt < 0) cnt = 0;
    if (cnt > JINJA_MAX_RANGE) return jinja_fail(c, "range() too large (%lld items; the limit is %d)", (long long)(cnt > INT64_MAX ? INT64_MAX : cnt), JINJA_MAX_RANGE);
    int rc = jv_list_new(c, (size_t)cnt, out);
    /* Every item lies between st and en, but i * step alone can overflow (step 2^62). */
    for (int64_t i = 0; i < (int64_t)cnt && !rc; i++) out->u.l->v[out->u.l->n++] = jv_int((int64_t)(st + (__int128)i * step));
    return rc ? rc : jinja_step(c, (uint64_t)cnt);
}

static int kw_dict(jctx *c, const jargs *a, jv *out) {
    int rc = jv_dict_new(c, a->nkw, out);
    for (size_t i = 0; i < a->n && !rc; i++) {
        if (a->pos[i].t != JT_DICT) return jinja_fail(c, "expected a mapping as positional argument");
        for (size_t k = 0; k < a->pos[i].u.d->n && !rc; k++)
            rc = jv_dict_set(c, out->u.d, a->pos[i].u.d->e[k].k, a->pos[i].u.d->e[k].v);
    }
    for (size_t i = 0; i < a->nkw && !rc; i++) {
        jv k;
        if (!(rc = jv_cstr(c, a->kwname[i], &k))) rc = jv_dict_set(c, out->u.d, k, a->kw[i]);
    }
    return rc;
}

static int g_dict(jctx *c, jv self, const jargs *a, jv *out) { (void)self; return kw_dict(c, a, out); }
static int g_namespace(jctx *c, jv self, const jargs *a, jv *out) {
    (void)self;
    int rc = kw_dict(c, a, out);
    if (!rc) out->t = JT_NS;
    return rc;
}

static int g_raise(jctx *c, jv self, const jargs *a, jv *out) {
    (void)self;
    (void)out;
    jv m = jv_undef(NULL);
    int rc = jv_to_str(c, arg(a, 0, NULL, m), &m);
    if (rc) return rc;
    /* the template's own message, verbatim: callers show it to users as the reason */
    return hb_fail(c->err, HEARTH_E_TEMPLATE, "%s", m.u.s->s);
}

static int g_strftime_now(jctx *c, jv self, const jargs *a, jv *out) {
    (void)self;
    jv f = arg(a, 0, NULL, jv_undef(NULL));
    if (want_str(c, f, "strftime format")) return c->err->code;
    jbuf b = { 0 };
    int rc = 0;
    const char *p = f.u.s->s;
    /* one directive at a time through libc (Python does the same), except the ones Python
     * handles itself for a naive datetime: %f (microseconds), %z and %Z (empty) */
    for (size_t i = 0; i < f.u.s->len && !rc; i++) {
        if (p[i] != '%' || i + 1 >= f.u.s->len) { rc = jbuf_put(c, &b, p + i, 1); continue; }
        char d = p[++i], tmp[128], spec[4] = { '%', d, 0, 0 };
        if (d == 'f') rc = jbuf_puts(c, &b, "000000");
        else if (d == 'z' || d == 'Z') continue;
        else if (d == '-' && i + 1 < f.u.s->len) { spec[2] = p[++i]; size_t n = strftime(tmp, sizeof tmp, spec, &c->now); rc = jbuf_put(c, &b, tmp, n); }
        else { size_t n = strftime(tmp, sizeof tmp, spec, &c->now); rc = jbuf_put(c, &b, tmp, n); }
    }
    return rc ? rc : jbuf_to_str(c, &b, out);
}

int jinja_globals_install(jctx *c, jscope *g) {
    static const struct { const char *name; jfunc_fn fn; } k_globals[] = {
        { "range", g_range }, { "dict", g_dict }, { "namespace", g_namespace },
        { "raise_exception", g_raise }, { "strftime_now", g_strftime_now },
    };
    for (size_t i = 0; i < sizeof k_globals / sizeof k_globals[0]; i++) {
        jv f;
        int rc = jv_func(c, k_globals[i].name, k_globals[i].fn, jv_none(), &f);
        if (!rc) rc = jinja_scope_set(c, g, k_globals[i].name, f);
        if (rc) return rc;
    }
    return 0;
}
