/* strutil.h — Python str operations on template strings (UTF-8, code point based):
 * strip, case mapping, replace, split, splitlines, find, indent. Results keep the Markup
 * (`safe`) flag of their input, as markupsafe's str subclass does.
 */
#ifndef HEARTH_CHAT_STRUTIL_H
#define HEARTH_CHAT_STRUTIL_H

#include "chat/jinja.h"

enum { JCASE_UPPER, JCASE_LOWER, JCASE_CAPITALIZE, JCASE_TITLE, JCASE_JINJA_TITLE };
enum { JSTRIP_LEFT = 1, JSTRIP_RIGHT = 2 };

bool jcp_is_space(int32_t cp);   /* Python str.isspace() for one code point */
bool jcp_is_word(int32_t cp);    /* regex \w: alphanumeric or '_' */

/* strip/lstrip/rstrip: chars is none (whitespace) or a string of characters. */
int jstr_strip(jctx *c, jv s, jv chars, int mode, jv *out);
int jstr_case(jctx *c, jv s, int mode, jv *out);
/* str.replace(old, new[, count]); count < 0 = all. */
int jstr_replace(jctx *c, jv s, jv old, jv nw, int64_t count, jv *out);
int jstr_reverse(jctx *c, jv s, jv *out);
/* str.split(sep, maxsplit) / rsplit; sep none = runs of whitespace. */
int jstr_split(jctx *c, jv s, jv sep, int64_t maxsplit, bool right, jv *out);
int jstr_splitlines(jctx *c, jv s, bool keepends, jv *out);
/* str.find / rfind / count: code point index or -1 / number of occurrences. */
int64_t jstr_find(jv s, jv sub, bool right);
int64_t jstr_count(jv s, jv sub);
/* Jinja2's indent filter. */
int jstr_indent(jctx *c, jv s, jv ind, bool first, bool blank, jv *out);

#endif
