/* lexer.c — template source -> tokens, with Jinja2's whitespace rules applied here.
 *
 * Rules (Jinja2 3.1 lexer, trim_blocks + lstrip_blocks on):
 *  - newlines (\r\n, \r, \n) in the source are normalised to \n and one trailing newline
 *    is dropped (keep_trailing_newline=False);
 *  - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` strip all
 *    whitespace after it;
 *  - trim_blocks: one newline right after `%}` or `#}` is dropped (not after `+%}`, not
 *    after `}}`, and not after the tag that opens a raw block);
 *  - lstrip_blocks: spaces/tabs between the start of a line and `{%` / `{#` are dropped
 *    unless the tag is written `{%+` / `{#+`;
 *  - inside a tag, an end marker only counts when all brackets are closed, so
 *    `{{ {'a': {'b': 1}} }}` works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"

typedef struct lx {
    jarena *ar;
    hb_err *err;
    const char *s;
    size_t n, pos;
    int line;            /* line of s[pos] */
    size_t line_pos;     /* position `line` was counted up to */
    jtoks *out;
    size_t cap;
    bool line_starting;  /* the last token ended with a newline (lstrip at line start) */
} lx;

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static int line_at(lx *l, size_t pos) {
    for (; l->line_pos < pos && l->line_pos < l->n; l->line_pos++)
        if (l->s[l->line_pos] == '\n') l->line++;
    return l->line;
}

static int lx_fail(lx *l, size_t pos, const char *what) {
    return hb_fail(l->err, HEARTH_E_TEMPLATE, "template line %d: %s", line_at(l, pos), what);
}

static int emit(lx *l, jtok_type t, size_t at, const char *s, size_t len, jtok **tk) {
    if (l->out->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        jtok *nv = jarena_alloc(l->ar, nc * sizeof *nv);
        if (!nv) return lx_fail(l, at, "template too large");
        if (l->out->n) memcpy(nv, l->out->v, l->out->n * sizeof *nv);
        l->out->v = nv;
        l->cap = nc;
    }
    jtok *t0 = &l->out->v[l->out->n++];
    t0->type = (uint8_t)t;
    t0->line = line_at(l, at);
    char *cp = jarena_alloc(l->ar, len + 1);
    if (!cp) return lx_fail(l, at, "template too large");
    if (len) memcpy(cp, s, len);
    cp[len] = '\0';
    t0->s = cp;
    t0->len = len;
    if (tk) *tk = t0;
    return 0;
}

/* ---- strings ---------------------------------------------------------------------------- */
static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static size_t put_cp(char *o, int32_t cp) {
    if (cp >= 0xd800 && cp <= 0xdfff) { /* lone surrogate: keep its 3-byte form */
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    return jutf8_put(o, cp);
}

/* Decodes Python unicode-escape sequences of a string literal body (s[0..n)) into o, which
 * has room for n bytes (no escape expands). Returns the decoded length. */
static size_t unescape(const char *s, size_t n, char *o) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 >= n) { o[k++] = s[i++]; continue; }
        char e = s[i + 1];
        int32_t cp = -1;
        size_t used = 2;
        switch (e) {
        case '\n': i += 2; continue;
        case '\\': cp = '\\'; break;
        case '\'': cp = '\''; break;
        case '"': cp = '"'; break;
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'a': cp = 7; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'v': cp = 11; break;
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (i + 2 + (size_t)nd > n) break;
            int32_t v = 0;
            bool ok = true;
            for (int d = 0; d < nd; d++) {
                int h = hexval(s[i + 2 + d]);
                if (h < 0) { ok = false; break; }
                v = v * 16 + h;
            }
            if (ok && v <= 0x10ffff) { cp = v; used = 2 + (size_t)nd; }
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int32_t v = 0;
                size_t d = 1;
                for (; d <= 3 && i + d < n && s[i + d] >= '0' && s[i + d] <= '7'; d++) v = v * 8 + (s[i + d] - '0');
                cp = v;
                used = d;
            }
        }
        if (cp < 0) { o[k++] = s[i++]; continue; } /* unknown escape: kept as written */
        /* a surrogate pair written as two \u escapes becomes one code point */
        if (cp >= 0xd800 && cp <= 0xdbff && i + used + 6 <= n && s[i + used] == '\\' && s[i + used + 1] == 'u') {
            int32_t lo = 0;
            bool ok = true;
            for (int d = 0; d < 4; d++) {
                int h = hexval(s[i + used + 2 + d]);
                if (h < 0) { ok = false; break; }
                lo = lo * 16 + h;
            }
            if (ok && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                used += 6;
            }
        }
        k += put_cp(o + k, cp);
        i += used;
    }
    return k;
}

static int lex_string(lx *l) {
    size_t st = l->pos;
    char q = l->s[st];
    size_t i = st + 1;
    while (i < l->n && l->s[i] != q) i += (l->s[i] == '\\' && i + 1 < l->n) ? 2 : 1;
    if (i >= l->n) return lx_fail(l, st, "unterminated string literal");
    char *buf = jarena_alloc(l->ar, i - st);
    if (!buf) return lx_fail(l, st, "template too large");
    size_t k = unescape(l->s + st + 1, i - st - 1, buf);
    jtok *t;
    int rc = emit(l, TK_STRING, st, buf, k, &t);
    l->pos = i + 1;
    return rc;
}

/* ---- numbers ---------------------------------------------------------------------------- */
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Digits with optional single '_' separators; returns end position. */
static size_t scan_digits(const char *s, size_t n, size_t i) {
    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1]) && i > 0 && is_digit(s[i - 1])))) i++;
    return i;
}

static int lex_number(lx *l, bool after_dot) {
    size_t st = l->pos, i = scan_digits(l->s, l->n, st);
    bool is_float = false;
    if (!after_dot) {
        if (i + 1 < l->n && l->s[i] == '.' && is_digit(l->s[i + 1])) {
            i = scan_digits(l->s, l->n, i + 1);
            is_float = true;
        }
        if (i < l->n && (l->s[i] == 'e' || l->s[i] == 'E')) {
            size_t j = i + 1;
            if (j < l->n && (l->s[j] == '+' || l->s[j] == '-')) j++;
            if (j < l->n && is_digit(l->s[j])) {
                i = scan_digits(l->s, l->n, j);
                is_float = true;
            }
        }
    }
    char tmp[128];
    size_t k = 0;
    for (size_t j = st; j < i && k + 1 < sizeof tmp; j++)
        if (l->s[j] != '_') tmp[k++] = l->s[j];
    tmp[k] = '\0';
    if (i - st >= sizeof tmp - 1) return lx_fail(l, st, "number literal too long");
    jtok *t;
    int rc = emit(l, is_float ? TK_FLOAT : TK_INT, st, l->s + st, i - st, &t);
    if (rc) return rc;
    if (is_float) {
        t->f = strtod(tmp, NULL);
    } else {
        char *end;
        unsigned long long v = strtoull(tmp, &end, 10);
        if (v > INT64_MAX) return lx_fail(l, st, "integer literal too large");
        t->i = (int64_t)v;
    }
    l->pos = i;
    return 0;
}

/* ---- tags ------------------------------------------------------------------------------- */
static const char *const k_ops[] = { "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*",
                                     "%", "~", "[", "]", "(", ")", "{", "}", ",", ".", ":",
                                     "|", "=", "<", ">", ";" };

/* Tokens of one {{ }} or {% %} tag, up to and including its end marker. */
static int lex_tag(lx *l, bool block) {
    char stack[JINJA_MAX_PARSE_DEPTH];
    int depth = 0, rc;
    for (;;) {
        while (l->pos < l->n && is_ws(l->s[l->pos])) l->pos++;
        if (l->pos >= l->n) return lx_fail(l, l->pos, block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'");
        const char *p = l->s + l->pos;
        size_t left = l->n - l->pos;
        char c2 = block ? '%' : '}';
        if (depth == 0) {
            size_t m = 0;
            bool strip = false, trim = false;
            if (left >= 3 && p[0] == '-' && p[1] == c2 && p[2] == '}') { m = 3; strip = true; }
            else if (block && left >= 3 && p[0] == '+' && p[1] == '%' && p[2] == '}') m = 3;
            else if (left >= 2 && p[0] == c2 && p[1] == '}') { m = 2; trim = block; }
            if (m) {
                if ((rc = emit(l, block ? TK_BLOCK_END : TK_VAR_END, l->pos, "", 0, NULL))) return rc;
                l->pos += m;
                if (strip) while (l->pos < l->n && is_ws(l->s[l->pos])) l->pos++;
                if (trim && l->pos < l->n && l->s[l->pos] == '\n') l->pos++;
                l->line_starting = l->pos > 0 && l->s[l->pos - 1] == '\n';
                return 0;
            }
        }
        char ch = p[0];
        bool after_dot = l->out->n && l->out->v[l->out->n - 1].type == TK_OP && l->out->v[l->out->n - 1].s[0] == '.';
        if (ch == '\'' || ch == '"') { if ((rc = lex_string(l))) return rc; continue; }
        if (is_digit(ch)) { if ((rc = lex_number(l, after_dot))) return rc; continue; }
        if (ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            size_t i = l->pos;
            while (i < l->n && (l->s[i] == '_' || is_digit(l->s[i]) || (l->s[i] >= 'a' && l->s[i] <= 'z') || (l->s[i] >= 'A' && l->s[i] <= 'Z'))) i++;
            if ((rc = emit(l, TK_NAME, l->pos, p, i - l->pos, NULL))) return rc;
            l->pos = i;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
            size_t ol = strlen(k_ops[k]);
            if (left >= ol && memcmp(p, k_ops[k], ol) == 0) break;
        }
        if (k == sizeof k_ops / sizeof k_ops[0]) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected character '%c' in tag", ch);
            return lx_fail(l, l->pos, msg);
        }
        if (ch == '(' || ch == '[' || ch == '{') {
            if (depth >= JINJA_MAX_PARSE_DEPTH) return lx_fail(l, l->pos, "brackets nested too deeply");
            stack[depth++] = ch == '(' ? ')' : ch == '[' ? ']' : '}';
        } else if (ch == ')' || ch == ']' || ch == '}') {
            if (depth == 0 || stack[depth - 1] != ch) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected '%c'", ch);
                return lx_fail(l, l->pos, msg);
            }
            depth--;
        }
        size_t ol = strlen(k_ops[k]);
        if ((rc = emit(l, TK_OP, l->pos, p, ol, NULL))) return rc;
        l->pos += ol;
    }
}

/* Matches `{%[-+]? raw [-+]?%}` (or endraw) at pos; returns its length or 0. */
static size_t match_raw(const lx *l, size_t pos, const char *word, bool *strip_after, char *sign) {
    const char *s = l->s;
    size_t i = pos + 2, wl = strlen(word);
    *sign = 0;
    if (i < l->n && (s[i] == '-' || s[i] == '+')) *sign = s[i++];
    while (i < l->n && is_ws(s[i])) i++;
    if (i + wl > l->n || memcmp(s + i, word, wl) != 0) return 0;
    i += wl;
    while (i < l->n && is_ws(s[i])) i++;
    *strip_after = false;
    if (i < l->n && (s[i] == '-' || s[i] == '+')) *strip_after = s[i++] == '-';
    if (i + 2 > l->n || s[i] != '%' || s[i + 1] != '}') return 0;
    return i + 2 - pos;
}

/* Applies `{%-` / lstrip_blocks to the text before a tag; returns the kept length. */
static size_t strip_text(const lx *l, const char *t, size_t n, char sign, bool is_var) {
    if (sign == '-') {
        while (n > 0 && is_ws(t[n - 1])) n--;
        return n;
    }
    if (sign == '+' || is_var) return n;
    size_t lp = n;
    while (lp > 0 && t[lp - 1] != '\n') lp--;
    if (lp == 0 && !l->line_starting) return n;
    if (lp == n) return n;
    for (size_t i = lp; i < n; i++)
        if (!is_ws(t[i])) return n;
    return lp;
}

static int lex_raw(lx *l, size_t start, size_t mlen, bool strip_after) {
    l->pos = start + mlen;
    if (strip_after) while (l->pos < l->n && is_ws(l->s[l->pos])) l->pos++;
    for (size_t k = l->pos; k + 1 < l->n; k++) {
        if (l->s[k] != '{' || l->s[k + 1] != '%') continue;
        bool sa;
        char sign;
        size_t m = match_raw(l, k, "endraw", &sa, &sign);
        if (!m) continue;
        l->line_starting = false;
        size_t keep = strip_text(l, l->s + l->pos, k - l->pos, sign, false);
        int rc = keep ? emit(l, TK_TEXT, l->pos, l->s + l->pos, keep, NULL) : 0;
        if (rc) return rc;
        l->pos = k + m;
        if (sa) while (l->pos < l->n && is_ws(l->s[l->pos])) l->pos++;
        else if (sign != '+' && l->pos < l->n && l->s[l->pos] == '\n') l->pos++;
        l->line_starting = l->s[l->pos - 1] == '\n';
        return 0;
    }
    return lx_fail(l, start, "missing '{% endraw %}'");
}

static int lex_comment(lx *l, size_t start) {
    for (size_t k = l->pos; k + 1 < l->n; k++) {
        if (l->s[k] != '#' || l->s[k + 1] != '}') continue;
        char sign = k > l->pos ? l->s[k - 1] : 0;
        l->pos = k + 2;
        if (sign == '-') while (l->pos < l->n && is_ws(l->s[l->pos])) l->pos++;
        else if (sign != '+' && l->pos < l->n && l->s[l->pos] == '\n') l->pos++;
        l->line_starting = l->s[l->pos - 1] == '\n';
        return 0;
    }
    return lx_fail(l, start, "missing end of comment '#}'");
}

/* Source with newlines normalised and one trailing newline removed. */
static char *normalise(jarena *ar, const char *src, size_t len, size_t *out_len) {
    char *o = jarena_alloc(ar, len + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            o[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            o[k++] = src[i];
        }
    }
    if (k && o[k - 1] == '\n') k--;
    o[k] = '\0';
    *out_len = k;
    return o;
}

int jinja_lex(jarena *ar, const char *src, size_t len, jtoks *out, hb_err *err) {
    lx l = { .ar = ar, .err = err, .line = 1, .out = out, .line_starting = true };
    int rc = 0;
    out->n = 0;
    out->v = NULL;
    l.s = normalise(ar, src, len, &l.n);
    if (!l.s) return hb_fail(err, HEARTH_E_TEMPLATE, "template too large");
    while (l.pos < l.n && !rc) {
        size_t k = l.pos;
        while (k + 1 < l.n && !(l.s[k] == '{' && (l.s[k + 1] == '{' || l.s[k + 1] == '%' || l.s[k + 1] == '#'))) k++;
        if (k + 1 >= l.n) {
            rc = emit(&l, TK_TEXT, l.pos, l.s + l.pos, l.n - l.pos, NULL);
            l.pos = l.n;
            break;
        }
        char kind = l.s[k + 1], sign = 0;
        bool raw_strip = false;
        size_t raw_len = kind == '%' ? match_raw(&l, k, "raw", &raw_strip, &sign) : 0;
        if (!raw_len) sign = (k + 2 < l.n && (l.s[k + 2] == '-' || l.s[k + 2] == '+')) ? l.s[k + 2] : 0;
        size_t keep = strip_text(&l, l.s + l.pos, k - l.pos, sign, kind == '{');
        if (keep && (rc = emit(&l, TK_TEXT, l.pos, l.s + l.pos, keep, NULL))) break;
        l.line_starting = false;
        if (raw_len) { rc = lex_raw(&l, k, raw_len, raw_strip); continue; }
        l.pos = k + 2 + (sign ? 1 : 0);
        if (kind == '#') { rc = lex_comment(&l, k); continue; }
        if ((rc = emit(&l, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, k, "", 0, NULL))) break;
        rc = lex_tag(&l, kind == '%');
    }
    if (!rc) rc = emit(&l, TK_EOF, l.n, "", 0, NULL);
    return rc;
}
