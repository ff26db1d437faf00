/* filters.c — Jinja2 built-in filters and tests used by chat templates, with Jinja2 3.1
 * semantics (e.g. `sort`/`unique` compare strings case-insensitively by default, `indent`
 * keeps Jinja's splitlines quirks). `tojson` is Hugging Face's override:
 * json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
 * `map` returns a list (Python returns a generator; a list renders where Python fails).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "chat/jinja.h"
#include "chat/strutil.h"

typedef int (*filter_fn)(jctx *c, jv v, const jargs *a, jv *out);

/* Argument `pos` (positional index) or keyword `kw`, else `def`. */
static jv arg(const jargs *a, size_t pos, const char *kw, jv def) {
    if (pos < a->n) return a->pos[pos];
    for (size_t i = 0; kw && i < a->nkw; i++)
        if (!strcmp(a->kwname[i], kw)) return a->kw[i];
    return def;
}

static int need_str(jctx *c, jv v, jv *out) {
    if (v.t == JT_STR) { *out = v; return 0; }
    return jv_to_str(c, v, out);
}

/* ---- string filters --------------------------------------------------------------------- */
static int f_trim(jctx *c, jv v, const jargs *a, jv *out) {
    jv s, chars = arg(a, 0, "chars", jv_none());
    int rc = need_str(c, v, &s);
    if (rc) return rc;
    return jstr_strip(c, s, chars, 3, out);
}

static int f_upper(jctx *c, jv v, const jargs *a, jv *out) { (void)a; jv s; int rc = need_str(c, v, &s); return rc ? rc : jstr_case(c, s, JCASE_UPPER, out); }
static int f_lower(jctx *c, jv v, const jargs *a, jv *out) { (void)a; jv s; int rc = need_str(c, v, &s); return rc ? rc : jstr_case(c, s, JCASE_LOWER, out); }
static int f_capitalize(jctx *c, jv v, const jargs *a, jv *out) { (void)a; jv s; int rc = need_str(c, v, &s); return rc ? rc : jstr_case(c, s, JCASE_CAPITALIZE, out); }
static int f_title(jctx *c, jv v, const jargs *a, jv *out) { (void)a; jv s; int rc = need_str(c, v, &s); return rc ? rc : jstr_case(c, s, JCASE_JINJA_TITLE, out); }

static int f_replace(jctx *c, jv v, const jargs *a, jv *out) {
    jv s, old = arg(a, 0, "old", jv_undef(NULL)), nw = arg(a, 1, "new", jv_undef(NULL));
    jv cnt = arg(a, 2, "count", jv_none());
    int rc = need_str(c, v, &s);
    if (rc) return rc;
    if ((rc = need_str(c, old, &old)) || (rc = need_str(c, nw, &nw))) return rc;
    return jstr_replace(c, s, old, nw, cnt.t == JT_INT ? cnt.u.i : -1, out);
}

static int f_string(jctx *c, jv v, const jargs *a, jv *out) { (void)a; return jv_to_str(c, v, out); }
static int f_safe(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    int rc = jv_to_str(c, v, out);
    if (!rc) out->safe = 1;
    return rc;
}
static int f_escape(jctx *c, jv v, const jargs *a, jv *out) { (void)a; return jv_escape(c, v, out); }

static int f_indent(jctx *c, jv v, const jargs *a, jv *out) {
    jv s, w = arg(a, 0, "width", jv_int(4));
    bool first = jv_truthy(arg(a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(arg(a, 2, "blank", jv_bool(false)));
    int rc = need_str(c, v, &s);
    if (rc) return rc;
    jv ind;
    if (w.t == JT_STR) ind = w;
    else if (w.t == JT_INT && w.u.i >= 0 && w.u.i <= 1000) {
        char sp[1001];
        memset(sp, ' ', (size_t)w.u.i);
        if ((rc = jv_str(c, sp, (size_t)w.u.i, &ind))) return rc;
    } else return jinja_fail(c, "indent: width must be a string or an integer 0..1000");
    return jstr_indent(c, s, ind, first, blank, out);
}

static int f_wordcount(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    jv s;
    int rc = need_str(c, v, &s);
    if (rc) return rc;
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s.u.s->len;) {
        int32_t cp = jutf8_next(s.u.s->s, s.u.s->len, &i);
        bool w = jcp_is_word(cp);
        if (w && !in) n++;
        in = w;
    }
    *out = jv_int(n);
    return 0;
}

static int f_center(jctx *c, jv v, const jargs *a, jv *out) {
    jv s, w = arg(a, 0, "width", jv_int(80));
    int rc = need_str(c, v, &s);
    if (rc) return rc;
    if (w.t != JT_INT || w.u.i > 100000) return jinja_fail(c, "center: bad width");
    int64_t len = (int64_t)jutf8_count(s.u.s->s, s.u.s->len);
    if (w.u.i <= len) { *out = s; return 0; }
    /* Python str.center puts the extra space on the right unless the width is odd-split */
    int64_t pad = w.u.i - len, left = pad / 2 + (pad & w.u.i & 1);
    jbuf b = { 0 };
    for (int64_t i = 0; i < left && !rc; i++) rc = jbuf_put(c, &b, " ", 1);
    if (!rc) rc = jbuf_put(c, &b, s.u.s->s, s.u.s->len);
    for (int64_t i = 0; i < pad - left && !rc; i++) rc = jbuf_put(c, &b, " ", 1);
    return rc ? rc : jbuf_to_str(c, &b, out);
}

static int f_format(jctx *c, jv v, const jargs *a, jv *out) {
    int rc;
    jv s, t;
    if ((rc = need_str(c, v, &s)) || (rc = jv_list_new(c, a->n, &t))) return rc;
    t.tuple = 1;
    for (size_t i = 0; i < a->n; i++) t.u.l->v[i] = a->pos[i];
    t.u.l->n = a->n;
    return jinja_str_format(c, s, t, out);
}

/* ---- JSON ------------------------------------------------------------------------------- */
static int f_tojson(jctx *c, jv v, const jargs *a, jv *out) {
    jjson_opts o = { .indent = -1 };
    jv asc = arg(a, 0, "ensure_ascii", jv_bool(false)), ind = arg(a, 1, "indent", jv_none());
    jv sep = arg(a, 2, "separators", jv_none()), sk = arg(a, 3, "sort_keys", jv_bool(false));
    int rc;
    o.ensure_ascii = jv_truthy(asc);
    o.sort_keys = jv_truthy(sk);
    if (ind.t == JT_INT) o.indent = ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : (int)ind.u.i;
    else if (ind.t != JT_NONE) return jinja_fail(c, "tojson: indent must be an integer");
    if (sep.t == JT_LIST && sep.u.l->n == 2 && sep.u.l->v[0].t == JT_STR && sep.u.l->v[1].t == JT_STR) {
        o.item_sep = sep.u.l->v[0].u.s->s;
        o.key_sep = sep.u.l->v[1].u.s->s;
    } else if (sep.t != JT_NONE) {
        return jinja_fail(c, "tojson: separators must be a pair of strings");
    }
    jbuf b = { 0 };
    if ((rc = jv_to_json(c, &b, v, &o, 0))) return rc;
    return jbuf_to_str(c, &b, out);
}

/* ---- sequences -------------------------------------------------------------------------- */
static int f_length(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    switch (v.t) {
    case JT_UNDEF: *out = jv_int(0); return 0;
    case JT_STR: *out = jv_int((int64_t)jutf8_count(v.u.s->s, v.u.s->len)); return 0;
    case JT_LIST: *out = jv_int((int64_t)v.u.l->n); return 0;
    case JT_DICT: case JT_NS: *out = jv_int((int64_t)v.u.d->n); return 0;
    default: return jinja_fail(c, "object of type '%s' has no len()", jv_type_name(v));
    }
}

static int to_list(jctx *c, jv v, jv *out) {
    jv *items;
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc || (rc = jv_list_new(c, n, out))) return rc;
    if (n) memcpy(out->u.l->v, items, n * sizeof *items);
    out->u.l->n = n;
    return jinja_step(c, n);
}

static int f_list(jctx *c, jv v, const jargs *a, jv *out) { (void)a; return to_list(c, v, out); }

static int f_items(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    if (v.t == JT_UNDEF) return jv_list_new(c, 0, out);
    if (v.t != JT_DICT) return jinja_fail(c, "items: can only get item pairs from a mapping, not %s", jv_type_name(v));
    return jinja_dict_items(c, v.u.d, out);
}

static int f_first_last(jctx *c, jv v, bool last, jv *out) {
    jv *items;
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc) return rc;
    if (n == 0) { *out = jv_undef(last ? "No last item, sequence was empty." : "No first item, sequence was empty."); return 0; }
    *out = items[last ? n - 1 : 0];
    return 0;
}
static int f_first(jctx *c, jv v, const jargs *a, jv *out) { (void)a; return f_first_last(c, v, false, out); }
static int f_last(jctx *c, jv v, const jargs *a, jv *out) { (void)a; return f_first_last(c, v, true, out); }

static int f_default(jctx *c, jv v, const jargs *a, jv *out) {
    jv def = arg(a, 0, "default_value", jv_undef(NULL));
    bool boolean = jv_truthy(arg(a, 1, "boolean", jv_bool(false)));
    if (def.t == JT_UNDEF) {
        int rc = jv_cstr(c, "", &def);
        if (rc) return rc;
    }
    *out = (v.t == JT_UNDEF || (boolean && !jv_truthy(v))) ? def : v;
    return 0;
}

/* Attribute getter used by map/selectattr/sort/...: "a.b.0" walks items (item first). */
static int get_path(jctx *c, jv v, jv attr, jv *out) {
    int rc;
    if (attr.t == JT_INT) return jinja_getitem(c, v, attr, out);
    if (attr.t != JT_STR) return jinja_fail(c, "attribute must be a string");
    const char *p = attr.u.s->s;
    *out = v;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        jv key;
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits = digits && p[i] >= '0' && p[i] <= '9';
        if (digits) key = jv_int(strtoll(p, NULL, 10));
        else if ((rc = jv_str(c, p, n, &key))) return rc;
        if (out->t == JT_UNDEF) return jinja_fail(c, "%s", out->u.undef_hint ? out->u.undef_hint : "value is undefined");
        if ((rc = jinja_getitem(c, *out, key, out))) return rc;
        p += n + (dot ? 1 : 0);
    }
    return 0;
}

static int f_join(jctx *c, jv v, const jargs *a, jv *out) {
    jv sep = arg(a, 0, "d", jv_undef(NULL)), attr = arg(a, 1, "attribute", jv_none());
    jv *items;
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc) return rc;
    if (sep.t != JT_UNDEF && (rc = need_str(c, sep, &sep))) return rc;
    jbuf b = { 0 };
    for (size_t i = 0; i < n; i++) {
        jv it = items[i];
        if (attr.t != JT_NONE && (rc = get_path(c, it, attr, &it))) return rc;
        if (i && sep.t == JT_STR && (rc = jbuf_put(c, &b, sep.u.s->s, sep.u.s->len))) return rc;
        if ((rc = jv_write_str(c, &b, it))) return rc;
    }
    return jbuf_to_str(c, &b, out);
}

static int f_reverse(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    int rc;
    if (v.t == JT_STR) return jstr_reverse(c, v, out);
    jv l;
    if ((rc = to_list(c, v, &l))) return rc;
    for (size_t i = 0, j = l.u.l->n; i + 1 < j; i++, j--) {
        jv t = l.u.l->v[i];
        l.u.l->v[i] = l.u.l->v[j - 1];
        l.u.l->v[j - 1] = t;
    }
    *out = l;
    return 0;
}

/* Sort key: the attribute (if any), lower-cased for strings unless case_sensitive. */
static int sort_key(jctx *c, jv v, jv attr, bool cs, jv *out) {
    int rc = 0;
    *out = v;
    if (attr.t != JT_NONE && (rc = get_path(c, v, attr, out))) return rc;
    if (!cs && out->t == JT_STR) rc = jstr_case(c, *out, JCASE_LOWER, out);
    return rc;
}

/* Stable merge sort of items[] by keys[] (Python's sort is stable). */
static int msort(jctx *c, jv *items, jv *keys, jv *ti, jv *tk, size_t n, bool rev) {
    if (n < 2) return 0;
    size_t h = n / 2;
    int rc;
    if ((rc = msort(c, items, keys, ti, tk, h, rev)) || (rc = msort(c, items + h, keys + h, ti, tk, n - h, rev))) return rc;
    if ((rc = jinja_step(c, n))) return rc;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool lt;
        /* reverse=True keeps equal items in original order, as Python does */
        if ((rc = rev ? jv_less(c, keys[i], keys[j], &lt) : jv_less(c, keys[j], keys[i], &lt))) return rc;
        if (lt) { ti[k] = items[j]; tk[k++] = keys[j++]; }
        else { ti[k] = items[i]; tk[k++] = keys[i++]; }
    }
    while (i < h) { ti[k] = items[i]; tk[k++] = keys[i++]; }
    while (j < n) { ti[k] = items[j]; tk[k++] = keys[j++]; }
    memcpy(items, ti, n * sizeof *ti);
    memcpy(keys, tk, n * sizeof *tk);
    return 0;
}

static int sort_list(jctx *c, jv l, jv attr, bool cs, bool rev) {
    size_t n = l.u.l->n;
    jv *keys = jarena_alloc(c->ar, (n ? n : 1) * 3 * sizeof *keys);
    int rc;
    if (!keys) return jinja_oom(c);
    for (size_t i = 0; i < n; i++)
        if ((rc = sort_key(c, l.u.l->v[i], attr, cs, &keys[i]))) return rc;
    return msort(c, l.u.l->v, keys, keys + n, keys + 2 * n, n, rev);
}

static int f_sort(jctx *c, jv v, const jargs *a, jv *out) {
    bool rev = jv_truthy(arg(a, 0, "reverse", jv_bool(false)));
    bool cs = jv_truthy(arg(a, 1, "case_sensitive", jv_bool(false)));
    jv attr = arg(a, 2, "attribute", jv_none());
    int rc = to_list(c, v, out);
    return rc ? rc : sort_list(c, *out, attr, cs, rev);
}

static int f_dictsort(jctx *c, jv v, const jargs *a, jv *out) {
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv by = arg(a, 1, "by", jv_undef(NULL));
    bool rev = jv_truthy(arg(a, 2, "reverse", jv_bool(false)));
    int rc;
    if (v.t != JT_DICT) return jinja_fail(c, "dictsort: expected a dict, got %s", jv_type_name(v));
    if ((rc = jinja_dict_items(c, v.u.d, out))) return rc;
    bool by_value = by.t == JT_STR && !strcmp(by.u.s->s, "value");
    return sort_list(c, *out, jv_int(by_value ? 1 : 0), cs, rev);
}

static int f_unique(jctx *c, jv v, const jargs *a, jv *out) {
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv attr = arg(a, 1, "attribute", jv_none());
    jv *items, seen;
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc || (rc = jv_list_new(c, 0, out)) || (rc = jv_list_new(c, 0, &seen))) return rc;
    for (size_t i = 0; i < n; i++) {
        jv k;
        bool dup = false;
        if ((rc = sort_key(c, items[i], attr, cs, &k)) || (rc = jinja_step(c, seen.u.l->n))) return rc;
        for (size_t j = 0; j < seen.u.l->n && !dup; j++) dup = jv_equal(seen.u.l->v[j], k);
        if (dup) continue;
        if ((rc = jv_list_push(c, seen.u.l, k)) || (rc = jv_list_push(c, out->u.l, items[i]))) return rc;
    }
    return 0;
}

static int minmax(jctx *c, jv v, const jargs *a, bool want_max, jv *out) {
    bool cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(false)));
    jv attr = arg(a, 1, "attribute", jv_none());
    jv *items, best = jv_undef("No aggregated item, sequence was empty."), bk = jv_none();
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        jv k;
        bool lt;
        if ((rc = sort_key(c, items[i], attr, cs, &k))) return rc;
        if (i && (rc = want_max ? jv_less(c, bk, k, &lt) : jv_less(c, k, bk, &lt))) return rc;
        if (i == 0 || lt) { best = items[i]; bk = k; }
    }
    *out = best;
    return 0;
}
static int f_min(jctx *c, jv v, const jargs *a, jv *out) { return minmax(c, v, a, false, out); }
static int f_max(jctx *c, jv v, const jargs *a, jv *out) { return minmax(c, v, a, true, out); }

static int f_sum(jctx *c, jv v, const jargs *a, jv *out) {
    jv attr = arg(a, 0, "attribute", jv_none()), acc = arg(a, 1, "start", jv_int(0));
    jv *items;
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        jv it = items[i];
        if (attr.t != JT_NONE && (rc = get_path(c, it, attr, &it))) return rc;
        rc = jinja_binop(c, JOP_ADD, acc, it, &acc);
    }
    *out = acc;
    return rc;
}

static int f_batch(jctx *c, jv v, const jargs *a, jv *out) {
    jv cnt = arg(a, 0, "linecount", jv_int(1)), fill = arg(a, 1, "fill_with", jv_none());
    bool has_fill = a->n > 1 || a->nkw > 0;
    jv *items, row = { 0 };
    size_t n;
    int rc = jinja_iter_items(c, v, &items, &n);
    if (rc || (rc = jv_list_new(c, 0, out))) return rc;
    if (cnt.t != JT_INT || cnt.u.i < 1) return jinja_fail(c, "batch: linecount must be a positive integer");
    for (size_t i = 0; i < n; i++) {
        if (i % (uint64_t)cnt.u.i == 0 && ((rc = jv_list_new(c, 0, &row)) || (rc = jv_list_push(c, out->u.l, row)))) return rc;
        if ((rc = jv_list_push(c, row.u.l, items[i]))) return rc;
    }
    while (has_fill && n && row.u.l->n < (uint64_t)cnt.u.i)
        if ((rc = jv_list_push(c, row.u.l, fill))) return rc;
    return 0;
}

/* select / reject / selectattr / rejectattr */
static int select_common(jctx *c, jv v, const jargs *a, bool attr_mode, bool keep_if, jv *out) {
    jv *items = NULL;
    size_t n = 0, skip = attr_mode ? 1 : 0;
    /* Jinja2 iterates only `if value:`, so None selects nothing */
    int rc = jv_truthy(v) ? jinja_iter_items(c, v, &items, &n) : 0;
    if (rc || (rc = jv_list_new(c, 0, out))) return rc;
    if (attr_mode && a->n < 1) return jinja_fail(c, "selectattr/rejectattr need an attribute name");
    jv test = a->n > skip ? a->pos[skip] : jv_none();
    if (test.t != JT_NONE && test.t != JT_STR) return jinja_fail(c, "select: test name must be a string");
    if (test.t == JT_STR && !jinja_has_test(test.u.s->s)) return jinja_fail(c, "unknown test '%s'", test.u.s->s);
    jargs ta = { .n = a->n > skip + 1 ? a->n - skip - 1 : 0, .pos = a->n > skip + 1 ? a->pos + skip + 1 : NULL, .nkw = a->nkw, .kwname = a->kwname, .kw = a->kw };
    for (size_t i = 0; i < n; i++) {
        jv x = items[i];
        bool r;
        if (attr_mode && (rc = get_path(c, x, a->pos[0], &x))) return rc;
        if (test.t == JT_STR) { if ((rc = jinja_test(c, test.u.s->s, x, &ta, &r))) return rc; }
        else r = jv_truthy(x);
        if (r == keep_if && (rc = jv_list_push(c, out->u.l, items[i]))) return rc;
    }
    return 0;
}
static int f_select(jctx *c, jv v, const jargs *a, jv *out) { return select_common(c, v, a, false, true, out); }
static int f_reject(jctx *c, jv v, const jargs *a, jv *out) { return select_common(c, v, a, false, false, out); }
static int f_selectattr(jctx *c, jv v, const jargs *a, jv *out) { return select_common(c, v, a, true, true, out); }
static int f_rejectattr(jctx *c, jv v, const jargs *a, jv *out) { return select_common(c, v, a, true, false, out); }

static int f_map(jctx *c, jv v, const jargs *a, jv *out) {
    jv *items = NULL;
    size_t n = 0;
    int rc = jv_truthy(v) ? jinja_iter_items(c, v, &items, &n) : 0;
    if (rc || (rc = jv_list_new(c, n, out))) return rc;
    jv attr = arg(a, (size_t)-1, "attribute", jv_none()), def = arg(a, (size_t)-1, "default", jv_undef(NULL));
    if (attr.t == JT_NONE && (a->n < 1 || a->pos[0].t != JT_STR)) return jinja_fail(c, "map: needs a filter name or attribute=");
    if (attr.t == JT_NONE && !jinja_has_filter(a->pos[0].u.s->s)) return jinja_fail(c, "unknown filter '%s'", a->pos[0].u.s->s);
    jargs fa = { .n = a->n ? a->n - 1 : 0, .pos = a->n ? a->pos + 1 : NULL, .nkw = a->nkw, .kwname = a->kwname, .kw = a->kw };
    for (size_t i = 0; i < n; i++) {
        jv x;
        if (attr.t != JT_NONE) {
            if ((rc = get_path(c, items[i], attr, &x))) return rc;
            if (x.t == JT_UNDEF && def.t != JT_UNDEF) x = def;
        } else if ((rc = jinja_filter(c, a->pos[0].u.s->s, items[i], &fa, &x))) {
            return rc;
        }
        out->u.l->v[out->u.l->n++] = x;
    }
    return 0;
}

/* ---- numbers ---------------------------------------------------------------------------- */
static int f_int(jctx *c, jv v, const jargs *a, jv *out) {
    (void)c;
    jv def = arg(a, 0, "default", jv_int(0));
    switch (v.t) {
    case JT_INT: *out = v; return 0;
    case JT_BOOL: *out = jv_int(v.u.b); return 0;
    case JT_FLOAT:
        if (!isfinite(v.u.f) || fabs(v.u.f) >= 9.2e18) { *out = def; return 0; }
        *out = jv_int((int64_t)v.u.f);
        return 0;
    case JT_STR: {
        char *end;
        errno = 0;
        long long r = strtoll(v.u.s->s, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (errno == 0 && end != v.u.s->s && *end == '\0') { *out = jv_int(r); return 0; }
        double d = strtod(v.u.s->s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (end != v.u.s->s && *end == '\0' && isfinite(d) && fabs(d) < 9.2e18) { *out = jv_int((int64_t)d); return 0; }
        *out = def;
        return 0;
    }
    default: *out = def; return 0;
    }
}

static int f_float(jctx *c, jv v, const jargs *a, jv *out) {
    (void)c;
    jv def = arg(a, 0, "default", jv_float(0.0));
    if (jv_is_number(v)) { *out = jv_float(jv_as_double(v)); return 0; }
    if (v.t == JT_STR) {
        char *end;
        double d = strtod(v.u.s->s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (end != v.u.s->s && *end == '\0') { *out = jv_float(d); return 0; }
    }
    *out = def;
    return 0;
}

static int f_abs(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    if (v.t == JT_FLOAT) { *out = jv_float(fabs(v.u.f)); return 0; }
    if (v.t == JT_INT || v.t == JT_BOOL) {
        int64_t i = v.t == JT_BOOL ? v.u.b : v.u.i;
        if (i == INT64_MIN) return jinja_fail(c, "integer result too large");
        *out = jv_int(i < 0 ? -i : i);
        return 0;
    }
    return jinja_fail(c, "bad operand type for abs(): '%s'", jv_type_name(v));
}

static int f_round(jctx *c, jv v, const jargs *a, jv *out) {
    jv pv = arg(a, 0, "precision", jv_int(0)), mv = arg(a, 1, "method", jv_undef(NULL));
    if (!jv_is_number(v)) return jinja_fail(c, "round: expected a number, got %s", jv_type_name(v));
    if (pv.t != JT_INT || pv.u.i < -300 || pv.u.i > 300) return jinja_fail(c, "round: bad precision");
    double x = jv_as_double(v), m = pow(10.0, (double)pv.u.i), r;
    const char *method = mv.t == JT_STR ? mv.u.s->s : "common";
    if (!strcmp(method, "common")) {
        if (v.t != JT_FLOAT && pv.u.i >= 0) { *out = v.t == JT_BOOL ? jv_int(v.u.b) : v; return 0; }
        r = nearbyint(x * m) / m; /* Python round(): half to even */
    } else if (!strcmp(method, "ceil")) r = ceil(x * m) / m;
    else if (!strcmp(method, "floor")) r = floor(x * m) / m;
    else return jinja_fail(c, "method must be 'common', 'ceil' or 'floor'");
    *out = jv_float(r);
    return 0;
}

static int f_attr(jctx *c, jv v, const jargs *a, jv *out) {
    jv name = arg(a, 0, "name", jv_none());
    if (name.t != JT_STR) return jinja_fail(c, "attr: name must be a string");
    return jinja_getattr(c, v, name.u.s->s, out);
}

static int f_pprint(jctx *c, jv v, const jargs *a, jv *out) {
    (void)a;
    jbuf b = { 0 };
    int rc = jv_write_repr(c, &b, v);
    return rc ? rc : jbuf_to_str(c, &b, out);
}

typedef struct filter_def { const char *name; filter_fn fn; } filter_def;
static const filter_def k_filters[] = {
    { "abs", f_abs }, { "attr", f_attr }, { "batch", f_batch }, { "capitalize", f_capitalize },
    { "center", f_center }, { "count", f_length }, { "d", f_default }, { "default", f_default },
    { "dictsort", f_dictsort }, { "e", f_escape }, { "escape", f_escape }, { "first", f_first },
    { "float", f_float }, { "format", f_format }, { "indent", f_indent }, { "int", f_int },
    { "items", f_items }, { "join", f_join }, { "last", f_last }, { "length", f_length },
    { "list", f_list }, { "lower", f_lower }, { "map", f_map }, { "max", f_max }, { "min", f_min },
    { "pprint", f_pprint }, { "reject", f_reject }, { "rejectattr", f_rejectattr },
    { "replace", f_replace }, { "reverse", f_reverse }, { "round", f_round }, { "safe", f_safe },
    { "select", f_select }, { "selectattr", f_selectattr }, { "sort", f_sort }, { "string", f_string },
    { "sum", f_sum }, { "title", f_title }, { "tojson", f_tojson }, { "trim", f_trim },
    { "unique", f_unique }, { "upper", f_upper }, { "wordcount", f_wordcount },
};

static filter_fn find_filter(const char *name) {
    for (size_t i = 0; i < sizeof k_filters / sizeof k_filters[0]; i++)
        if (!strcmp(k_filters[i].name, name)) return k_filters[i].fn;
    return NULL;
}

bool jinja_has_filter(const char *name) { return find_filter(name) != NULL; }

int jinja_filter(jctx *c, const char *name, jv v, const jargs *a, jv *out) {
    filter_fn fn = find_filter(name);
    int rc;
    if (!fn) return jinja_fail(c, "unknown filter '%s'", name);
    if ((rc = jinja_step(c, 1))) return rc;
    /* filters other than default/d see a misused undefined as the error Jinja2 raises */
    return fn(c, v, a, out);
}
