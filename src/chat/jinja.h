/* jinja.h — internal interface of the chat-template interpreter (a Jinja2 subset).
 *
 * Pipeline: jinja_lex (source -> tokens, applying trim_blocks / lstrip_blocks and the
 * `-`/`+` whitespace controls) -> jinja_parse (tokens -> AST) -> jinja_exec (AST + vars ->
 * text). Semantics follow Python Jinja2 3.1 as Hugging Face configures it for chat
 * templates: ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols),
 * no autoescape, default Undefined, keep_trailing_newline=False.
 *
 * Memory: everything of one render (tokens, AST, values, strings) lives in one jarena that
 * is freed in one go, so error paths need no cleanup and nothing can leak. The arena has a
 * byte cap; every other resource (steps, loop iterations, nesting depth, output size) has
 * its own cap in jlimits, so hostile templates end with a clear error.
 */
#ifndef HEARTH_CHAT_JINJA_H
#define HEARTH_CHAT_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/base.h"

/* ---- caps ------------------------------------------------------------------------------- */
#define JINJA_MAX_ARENA (256u << 20)       /* bytes of all values/AST of one render */
#define JINJA_MAX_OUTPUT (16u << 20)       /* bytes of rendered text (and any one string) */
#define JINJA_MAX_PARSE_DEPTH 200          /* nesting of expressions + statements */
#define JINJA_MAX_CALL_DEPTH 100           /* nested macro calls */
#define JINJA_MAX_EVAL_DEPTH 1000          /* nested evaluation (long filter/operator chains) */
#define JINJA_MAX_VALUE_DEPTH 200          /* nesting of values printed / compared */
#define JINJA_MAX_LOOP_ITERS 1000000u      /* loop iterations of one render */
#define JINJA_MAX_STEPS 50000000u          /* evaluation steps (expression nodes + elements) */
#define JINJA_MAX_RANGE 1000000            /* elements of one range() */
#define JINJA_MAX_FMT_WIDTH 4096           /* width or precision in a % format ("%10.3f") */
#define JINJA_MAX_ITEMS 4000000u           /* elements of one list / dict */

/* ---- arena ------------------------------------------------------------------------------ */
typedef struct jarena {
    struct jchunk *head;
    size_t used;  /* bytes handed out so far (the cap applies to this) */
    size_t cap;
} jarena;

/* Zeroed memory from the arena, or NULL when the cap is reached or malloc fails. */
void *jarena_alloc(jarena *a, size_t n);
void jarena_free(jarena *a);

/* ---- values ----------------------------------------------------------------------------- */
typedef enum jtype {
    JT_UNDEF = 0, JT_NONE, JT_BOOL, JT_INT, JT_FLOAT, JT_STR, JT_LIST, JT_DICT,
    JT_NS,     /* namespace(): a mutable dict reached by attribute */
    JT_FUNC,   /* builtin global or bound method */
    JT_MACRO,  /* {% macro %} (or the caller of a {% call %} block) */
    JT_LOOP    /* the `loop` variable of a for loop */
} jtype;

enum { JVIEW_NONE = 0, JVIEW_ITEMS, JVIEW_KEYS, JVIEW_VALUES };

typedef struct jstr { size_t len; char s[]; } jstr;       /* NUL-terminated, immutable */
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jmacro jmacro;
typedef struct jloop jloop;

typedef struct jv {
    uint8_t t;      /* jtype */
    uint8_t safe;   /* JT_STR: Markup (|safe, |escape); `+` with a plain str escapes it */
    uint8_t tuple;  /* JT_LIST: a Python tuple (repr uses parentheses) */
    uint8_t view;   /* JT_LIST made by dict.items()/keys()/values(): JVIEW_* (repr only) */
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;       /* JT_DICT and JT_NS */
        jfunc *fn;
        jmacro *m;
        jloop *loop;
        const char *undef_hint; /* JT_UNDEF: message used when it is misused (may be NULL) */
    } u;
} jv;

struct jlist { size_t n, cap; jv *v; };
typedef struct jdict_ent { jv k, v; } jdict_ent;
struct jdict { size_t n, cap; jdict_ent *e; };

typedef struct jctx jctx;
typedef struct jargs {
    size_t n;            /* positional */
    jv *pos;
    size_t nkw;
    const char **kwname;
    jv *kw;
} jargs;
typedef int (*jfunc_fn)(jctx *c, jv self, const jargs *a, jv *out);
struct jfunc { const char *name; jfunc_fn fn; jv self; };

static inline jv jv_undef(const char *hint) { jv v = { .t = JT_UNDEF }; v.u.undef_hint = hint; return v; }
static inline jv jv_none(void) { jv v = { .t = JT_NONE }; return v; }
static inline jv jv_bool(bool b) { jv v = { .t = JT_BOOL }; v.u.b = b; return v; }
static inline jv jv_int(int64_t i) { jv v = { .t = JT_INT }; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = { .t = JT_FLOAT }; v.u.f = f; return v; }

/* ---- growable byte buffer (arena-backed, capped at JINJA_MAX_OUTPUT) -------------------- */
typedef struct jbuf { char *p; size_t n, cap; } jbuf;

/* ---- AST -------------------------------------------------------------------------------- */
typedef enum jnode_kind {
    /* expressions */
    JN_CONST, JN_NAME, JN_LIST, JN_TUPLE, JN_DICT, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL,
    JN_FILTER, JN_TEST, JN_NEG, JN_POS, JN_NOT, JN_BINOP, JN_AND, JN_OR, JN_COND,
    JN_CAPTURED, /* the text captured by {% filter %} / {% set x | f %} */
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_CALLBLOCK,
    JN_FILTERBLOCK, JN_WITH, JN_BREAK, JN_CONTINUE
} jnode_kind;

typedef enum jbinop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN
} jbinop;

typedef struct jnode jnode;
typedef struct jnodes { size_t n; jnode **v; } jnodes;

/* One AST node; the meaning of the generic slots depends on `kind`:
 *  CONST val | NAME name | LIST/TUPLE kids | DICT kids (keys) kids2 (values)
 *  ATTR a.name | ITEM a[b] | SLICE a[b:c:d] | CALL a(kids, kwnames=kids2)
 *  FILTER a|name(kids, kw) | TEST a is [not: flag] name(kids, kw) | NEG/POS/NOT a
 *  BINOP a op b | AND/OR a b | COND b if a else c
 *  TEXT val | OUTPUT a | IF a then kids else kids2 | FOR a(target) in b if c: kids else kids2
 *  SET a = b | SETBLOCK a = kids (c = filter chain over CAPTURED or NULL)
 *  MACRO name(kwnames = kids2 defaults) kids | CALLBLOCK a(call) b(macro caller)
 *  FILTERBLOCK c(filter chain over CAPTURED) kids | WITH kwnames = kids2; kids */
struct jnode {
    uint8_t kind, op, flag;
    int line;
    const char *name;
    jv val;
    jnode *a, *b, *c, *d;
    jnodes kids, kids2;
    const char **kwnames;
};

struct jmacro {
    const jnode *def;       /* JN_MACRO */
    struct jscope *closure; /* scope the macro was defined in */
    jv caller;              /* for a call block's caller: undefined otherwise */
};

/* ---- lexer ------------------------------------------------------------------------------ */
typedef enum jtok_type {
    TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END,
    TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF
} jtok_type;

typedef struct jtok {
    uint8_t type;
    int line;
    const char *s;  /* TEXT / NAME / STRING (decoded) / OP spelling; NUL-terminated */
    size_t len;
    int64_t i;
    double f;
} jtok;

typedef struct jtoks { size_t n; jtok *v; } jtoks;

/* Tokenizes the whole template. Errors are HEARTH_E_TEMPLATE naming the line. */
int jinja_lex(jarena *ar, const char *src, size_t len, jtoks *out, hb_err *err);
/* Parses tokens into a statement list (the template body). */
int jinja_parse(jarena *ar, const jtoks *toks, jnodes *out, hb_err *err);

/* ---- evaluation ------------------------------------------------------------------------- */
typedef struct jscope jscope;

struct jctx {
    jarena *ar;
    hb_err *err;
    jscope *scope;
    jscope *globals;
    jbuf *out;
    struct tm now;           /* instant strftime_now() formats */
    uint64_t steps, iters;
    int depth;               /* macro call depth */
    int edepth;              /* evaluation recursion depth */
    int loopctl;             /* 1 = break, 2 = continue pending */
    int line;                /* line of the node being evaluated (for errors) */
    jv captured;             /* value of JN_CAPTURED */
    jv caller;               /* `caller` inside a macro invoked by a call block */
};

/* Reports a template error "template line N: <msg>" (HEARTH_E_TEMPLATE). */
int jinja_fail(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Out of arena memory (or a size cap). */
int jinja_oom(jctx *c);
/* Counts evaluation work; fails when the step budget is spent. */
int jinja_step(jctx *c, uint64_t n);

/* Renders the template body with the variables (a JT_DICT) into *out (arena string). */
int jinja_exec(jctx *c, const jnodes *body, jv vars, jstr **out);
int jinja_eval(jctx *c, const jnode *n, jv *out);
int jinja_exec_body(jctx *c, const jnodes *body);
/* Calls a macro / function / bound method with arguments. */
int jinja_call(jctx *c, jv fn, const jargs *a, jv *out);
jscope *jinja_scope_push(jctx *c, jscope *parent);
int jinja_scope_set(jctx *c, jscope *s, const char *name, jv v);
bool jinja_scope_get(const jscope *s, const char *name, jv *out);

/* The items a for loop or filter iterates over: list items, dict keys, string characters;
 * undefined iterates as empty; anything else is an error. *items may alias a list. */
int jinja_iter_items(jctx *c, jv v, jv **items, size_t *n);
/* Evaluates the arguments of a CALL/FILTER/TEST node. */
int jinja_eval_args(jctx *c, const jnode *n, jargs *a);
/* Attributes of the `loop` variable (index, first, last, previtem, cycle, ...). */
int jinja_loop_attr(jctx *c, jv lv, const char *name, jv *out);
/* A binary operator (JOP_*) with Python semantics. */
int jinja_binop(jctx *c, int op, jv a, jv b, jv *out);
/* Python `fmt % args` (args a tuple or a single value). */
int jinja_str_format(jctx *c, jv fmt, jv args, jv *out);
/* dict.items() as a list of (key, value) tuples. */
int jinja_dict_items(jctx *c, const jdict *d, jv *out);

/* Attribute access x.name (Python attribute first: methods; then item) and item access
 * x[key] (item first, then attribute). Missing gives undefined; misuse of undefined fails. */
int jinja_getattr(jctx *c, jv obj, const char *name, jv *out);
int jinja_getitem(jctx *c, jv obj, jv key, jv *out);
/* Bound method `name` of obj (str/dict/list methods), if any. */
bool jinja_method(jctx *c, jv obj, const char *name, jv *out);
/* Global functions (range, namespace, dict, raise_exception, strftime_now, ...). */
int jinja_globals_install(jctx *c, jscope *g);

int jinja_filter(jctx *c, const char *name, jv v, const jargs *a, jv *out);
int jinja_test(jctx *c, const char *name, jv v, const jargs *a, bool *out);
bool jinja_has_filter(const char *name);
bool jinja_has_test(const char *name);

/* ---- value helpers (value.c) ------------------------------------------------------------ */
jstr *jv_strbuf(jctx *c, const char *s, size_t n);   /* NULL on cap */
int jv_str(jctx *c, const char *s, size_t n, jv *out);
int jv_cstr(jctx *c, const char *s, jv *out);
int jv_list_new(jctx *c, size_t cap, jv *out);
int jv_list_push(jctx *c, jlist *l, jv v);
int jv_dict_new(jctx *c, size_t cap, jv *out);
/* Inserts or replaces key (Python dict semantics: insertion order kept on replace). */
int jv_dict_set(jctx *c, jdict *d, jv k, jv v);
jv *jv_dict_find(const jdict *d, jv k);
jv *jv_dict_find_str(const jdict *d, const char *k);
int jv_func(jctx *c, const char *name, jfunc_fn fn, jv self, jv *out);

bool jv_truthy(jv v);
/* Python ==. */
bool jv_equal(jv a, jv b);
/* Python <: *lt set; fails (TypeError) for unorderable types. */
int jv_less(jctx *c, jv a, jv b, bool *lt);
const char *jv_type_name(jv v);   /* Python type name: 'str', 'int', 'NoneType', ... */
bool jv_is_number(jv v);
double jv_as_double(jv v);

/* str(v) and repr(v) appended to a buffer. */
int jbuf_put(jctx *c, jbuf *b, const char *s, size_t n);
int jbuf_puts(jctx *c, jbuf *b, const char *s);
int jv_write_str(jctx *c, jbuf *b, jv v);
int jv_write_repr(jctx *c, jbuf *b, jv v);
/* str(v) as a string value (strings returned as-is). */
int jv_to_str(jctx *c, jv v, jv *out);
int jbuf_to_str(jctx *c, jbuf *b, jv *out);
void jfmt_double(double d, char *buf, size_t cap);   /* Python repr(float) */

/* HTML escape as markupsafe does (& < > " '). */
int jv_escape(jctx *c, jv v, jv *out);

/* ---- JSON (json.c) ---------------------------------------------------------------------- */
struct json_t;
int jv_from_json(jctx *c, struct json_t *j, jv *out, int depth);
/* Python json.dumps(v, ensure_ascii, indent (<0 none), separators, sort_keys). */
typedef struct jjson_opts {
    int indent;            /* < 0: single line */
    const char *item_sep;  /* NULL: default for the indent mode */
    const char *key_sep;
    bool sort_keys;
    bool ensure_ascii;
} jjson_opts;
int jv_to_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int level);

/* ---- UTF-8 helpers (value.c) ------------------------------------------------------------ */
/* Decodes one code point at s[*i] (invalid bytes decode as themselves, 1 byte). */
int32_t jutf8_next(const char *s, size_t n, size_t *i);
size_t jutf8_put(char *dst, int32_t cp);
size_t jutf8_count(const char *s, size_t n);

#endif
