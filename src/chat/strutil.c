/* strutil.c — Python str operations for the template interpreter (see strutil.h). */
#include <string.h>

#include <utf8proc.h>

#include "chat/strutil.h"

bool jcp_is_space(int32_t cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f)) return true;
    if (cp < 0x80) return false;
    if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
        return true;
    return false;
}

bool jcp_is_word(int32_t cp) {
    if (cp == '_') return true;
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    utf8proc_category_t k = utf8proc_category(cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static bool cp_in(const jstr *set, int32_t cp) {
    for (size_t i = 0; i < set->len;)
        if (jutf8_next(set->s, set->len, &i) == cp) return true;
    return false;
}

static int with_flag(jctx *c, jv src, const char *p, size_t n, jv *out) {
    int rc = jv_str(c, p, n, out);
    if (!rc) out->safe = src.safe;
    return rc;
}

int jstr_strip(jctx *c, jv s, jv chars, int mode, jv *out) {
    const char *p = s.u.s->s;
    size_t b = 0, e = s.u.s->len;
    bool ws = chars.t != JT_STR;
    if (mode & JSTRIP_LEFT) {
        while (b < e) {
            size_t i = b;
            int32_t cp = jutf8_next(p, e, &i);
            if (ws ? !jcp_is_space(cp) : !cp_in(chars.u.s, cp)) break;
            b = i;
        }
    }
    if (mode & JSTRIP_RIGHT) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
            size_t i = st;
            int32_t cp = jutf8_next(p, e, &i);
            if (ws ? !jcp_is_space(cp) : !cp_in(chars.u.s, cp)) break;
            e = st;
        }
    }
    if (b == 0 && e == s.u.s->len) { *out = s; return 0; }
    return with_flag(c, s, p + b, e - b, out);
}

static bool cp_cased(int32_t cp) {
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static bool jinja_word_sep(int32_t cp) { return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || jcp_is_space(cp); }

int jstr_case(jctx *c, jv s, int mode, jv *out) {
    const jstr *in = s.u.s;
    jbuf b = { 0 };
    int rc = 0;
    bool start = true, prev_cased = false;
    for (size_t i = 0; i < in->len && !rc;) {
        int32_t cp = jutf8_next(in->s, in->len, &i), r;
        switch (mode) {
        case JCASE_UPPER: r = utf8proc_toupper(cp); break;
        case JCASE_LOWER: r = utf8proc_tolower(cp); break;
        case JCASE_CAPITALIZE: r = start ? utf8proc_totitle(cp) : utf8proc_tolower(cp); break;
        case JCASE_TITLE: r = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp); break;
        default: /* Jinja title: first char after a separator run upper-cased */
            r = start ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
            start = jinja_word_sep(cp);
            break;
        }
        if (mode != JCASE_JINJA_TITLE) start = false;
        prev_cased = cp_cased(cp);
        char tmp[4];
        size_t k = jutf8_put(tmp, r);
        rc = jbuf_put(c, &b, tmp, k);
    }
    if (!rc) rc = jbuf_to_str(c, &b, out);
    if (!rc) out->safe = s.safe;
    return rc;
}

int jstr_replace(jctx *c, jv s, jv old, jv nw, int64_t count, jv *out) {
    const jstr *in = s.u.s, *o = old.u.s, *n = nw.u.s;
    jbuf b = { 0 };
    int rc = 0;
    int64_t done = 0;
    if (o->len == 0) { /* inserted before every character and at the end */
        for (size_t i = 0; i <= in->len && !rc;) {
            if (count < 0 || done < count) { rc = jbuf_put(c, &b, n->s, n->len); done++; }
            if (i == in->len) break;
            size_t st = i;
            jutf8_next(in->s, in->len, &i);
            if (!rc) rc = jbuf_put(c, &b, in->s + st, i - st);
        }
    } else {
        size_t i = 0;
        while (!rc && (count < 0 || done < count)) {
            const char *f = memmem(in->s + i, in->len - i, o->s, o->len);
            if (!f) break;
            size_t at = (size_t)(f - in->s);
            rc = jbuf_put(c, &b, in->s + i, at - i);
            if (!rc) rc = jbuf_put(c, &b, n->s, n->len);
            i = at + o->len;
            done++;
            if (!rc) rc = jinja_step(c, 1);
        }
        if (!rc) rc = jbuf_put(c, &b, in->s + i, in->len - i);
    }
    if (!rc) rc = jbuf_to_str(c, &b, out);
    if (!rc) out->safe = s.safe;
    return rc;
}

int jstr_reverse(jctx *c, jv s, jv *out) {
    const jstr *in = s.u.s;
    char *buf = jarena_alloc(c->ar, in->len + 1);
    if (!buf) return jinja_oom(c);
    size_t k = in->len;
    for (size_t i = 0; i < in->len;) {
        size_t st = i;
        jutf8_next(in->s, in->len, &i);
        k -= i - st;
        memcpy(buf + k, in->s + st, i - st);
    }
    return with_flag(c, s, buf, in->len, out);
}

static int push_piece(jctx *c, jv list, const char *p, size_t n) {
    jv v;
    int rc = jv_str(c, p, n, &v);
    return rc ? rc : jv_list_push(c, list.u.l, v);
}

/* Whitespace split from the left (Python str.split() without sep). */
static int split_ws(jctx *c, const jstr *in, int64_t maxsplit, jv out) {
    size_t i = 0, n = in->len;
    int64_t done = 0;
    int rc = 0;
    for (;;) {
        while (i < n) { size_t j = i; if (!jcp_is_space(jutf8_next(in->s, n, &j))) break; i = j; }
        if (i >= n) return 0;
        if (maxsplit >= 0 && done >= maxsplit) {
            size_t e = n;
            while (e > i) { size_t st = e - 1; while (st > i && ((unsigned char)in->s[st] & 0xc0) == 0x80) st--; size_t j = st; if (!jcp_is_space(jutf8_next(in->s, n, &j))) break; e = st; }
            return push_piece(c, out, in->s + i, e - i);
        }
        size_t st = i;
        while (i < n) { size_t j = i; if (jcp_is_space(jutf8_next(in->s, n, &j))) break; i = j; }
        if ((rc = push_piece(c, out, in->s + st, i - st))) return rc;
        done++;
    }
}

int jstr_split(jctx *c, jv s, jv sep, int64_t maxsplit, bool right, jv *out) {
    const jstr *in = s.u.s;
    int rc = jv_list_new(c, 0, out);
    if (rc) return rc;
    if (sep.t != JT_STR) {
        if (!right || maxsplit < 0) return split_ws(c, in, maxsplit, *out);
        /* rsplit with maxsplit: split the reversed string, then reverse pieces back */
        jv rs, parts;
        if ((rc = jstr_reverse(c, s, &rs)) || (rc = jv_list_new(c, 0, &parts)) || (rc = split_ws(c, rs.u.s, maxsplit, parts))) return rc;
        for (size_t k = parts.u.l->n; k-- > 0;) {
            jv piece;
            if ((rc = jstr_reverse(c, parts.u.l->v[k], &piece)) || (rc = jv_list_push(c, out->u.l, piece))) return rc;
        }
        return 0;
    }
    const jstr *sp = sep.u.s;
    if (sp->len == 0) return jinja_fail(c, "empty separator");
    if (!right || maxsplit < 0) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *f = (maxsplit < 0 || done < maxsplit) ? memmem(in->s + i, in->len - i, sp->s, sp->len) : NULL;
            if (!f) return push_piece(c, *out, in->s + i, in->len - i);
            if ((rc = push_piece(c, *out, in->s + i, (size_t)(f - in->s) - i))) return rc;
            i = (size_t)(f - in->s) + sp->len;
            done++;
        }
    }
    /* rsplit(sep, maxsplit): find separators from the right */
    size_t e = in->len;
    int64_t done = 0;
    size_t *cuts = jarena_alloc(c->ar, (size_t)(maxsplit + 1) * sizeof *cuts);
    if (!cuts) return jinja_oom(c);
    while (done < maxsplit && e >= sp->len) {
        size_t k = e - sp->len + 1;
        bool found = false;
        while (k-- > 0) {
            if (memcmp(in->s + k, sp->s, sp->len) == 0) { found = true; break; }
        }
        if (!found) break;
        cuts[done++] = k;
        e = k;
    }
    size_t start = 0;
    for (int64_t d = done; d-- > 0;) {
        if ((rc = push_piece(c, *out, in->s + start, cuts[d] - start))) return rc;
        start = cuts[d] + sp->len;
    }
    return push_piece(c, *out, in->s + start, in->len - start);
}

static bool is_linebreak(int32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d || cp == 0x1e ||
           cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

int jstr_splitlines(jctx *c, jv s, bool keepends, jv *out) {
    const jstr *in = s.u.s;
    int rc = jv_list_new(c, 0, out);
    size_t st = 0, i = 0;
    while (!rc && i < in->len) {
        size_t at = i;
        int32_t cp = jutf8_next(in->s, in->len, &i);
        if (!is_linebreak(cp)) continue;
        if (cp == '\r' && i < in->len && in->s[i] == '\n') i++;
        jv v;
        rc = with_flag(c, s, in->s + st, (keepends ? i : at) - st, &v);
        if (!rc) rc = jv_list_push(c, out->u.l, v);
        st = i;
    }
    if (!rc && st < in->len) {
        jv v;
        rc = with_flag(c, s, in->s + st, in->len - st, &v);
        if (!rc) rc = jv_list_push(c, out->u.l, v);
    }
    return rc;
}

int64_t jstr_find(jv s, jv sub, bool right) {
    const jstr *in = s.u.s, *f = sub.u.s;
    if (f->len > in->len) return -1;
    const char *hit = NULL;
    if (!right) hit = memmem(in->s, in->len, f->s, f->len);
    else
        for (size_t k = in->len - f->len + 1; k-- > 0 && !hit;)
            if (memcmp(in->s + k, f->s, f->len) == 0) hit = in->s + k;
    return hit ? (int64_t)jutf8_count(in->s, (size_t)(hit - in->s)) : -1;
}

int64_t jstr_count(jv s, jv sub) {
    const jstr *in = s.u.s, *f = sub.u.s;
    if (f->len == 0) return (int64_t)jutf8_count(in->s, in->len) + 1;
    int64_t n = 0;
    for (size_t i = 0;;) {
        const char *hit = memmem(in->s + i, in->len - i, f->s, f->len);
        if (!hit) return n;
        n++;
        i = (size_t)(hit - in->s) + f->len;
    }
}

int jstr_indent(jctx *c, jv s, jv ind, bool first, bool blank, jv *out) {
    jbuf b = { 0 }, tmp = { 0 };
    jv withnl, lines;
    int rc;
    /* Jinja appends "\n" before splitlines, so a trailing newline survives as one line */
    if ((rc = jbuf_put(c, &tmp, s.u.s->s, s.u.s->len)) || (rc = jbuf_put(c, &tmp, "\n", 1)) ||
        (rc = jbuf_to_str(c, &tmp, &withnl)) || (rc = jstr_splitlines(c, withnl, false, &lines)))
        return rc;
    const jstr *is = ind.u.s;
    if (first) rc = jbuf_put(c, &b, is->s, is->len);
    for (size_t i = 0; i < lines.u.l->n && !rc; i++) {
        const jstr *ln = lines.u.l->v[i].u.s;
        if (i) {
            rc = jbuf_put(c, &b, "\n", 1);
            if (!rc && (blank || ln->len)) rc = jbuf_put(c, &b, is->s, is->len);
        }
        if (!rc) rc = jbuf_put(c, &b, ln->s, ln->len);
    }
    if (!rc) rc = jbuf_to_str(c, &b, out);
    if (!rc) out->safe = s.safe;
    return rc;
}
