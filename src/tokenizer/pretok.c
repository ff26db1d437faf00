/* pretok.c — BPE pre-tokenizers: split text into words with a per-model list of regexes.
 *
 * Each tokenizer.ggml.pre name maps to an ordered list of regexes (public facts from the
 * models' tokenizer.json files, in the forms llama.cpp uses). Splitting works like
 * llama.cpp's: the text starts as one fragment; each regex in turn cuts every current
 * fragment into its matches AND the unmatched stretches between them (both are kept), and
 * the next regex sees each fragment on its own (so `$` and lookaheads stop at fragment
 * ends).
 *
 * Matching uses PCRE2 with UTF + UCP (Unicode properties from PCRE2's tables). Two
 * adjustments make PCRE2 agree with llama.cpp's results exactly:
 *  - "\s" means the Unicode White_Space set. PCRE2's UCP \s lacks U+0085 (NEL), so every
 *    \s / \S below is written with WS = "\s\x{85}".
 *  - llama.cpp maps every non-ASCII White_Space character to U+000B before running
 *    regexes that name explicit non-ASCII ranges, so such a character never matches those
 *    ranges (U+3000 is inside deepseek's "　-。" and "ࠀ-一" ranges). Those ranges are
 *    therefore guarded with NOT_WS.
 * A repeat that ends its regex is written possessive ("++"): nothing follows it, so the
 * match is the same, and PCRE2 keeps no backtracking state for long runs.
 * The unmatched stretches make a trailing "|\s+" alternative redundant; the lists spell it
 * out where the original tokenizer has it.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define WS "\\s\\x{85}"
#define NOT_WS "(?![" WS "])"

/* GPT-2: contractions, letters, digits, other symbols, whitespace runs. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_WS_TAIL "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"
/* Llama 3 (also dbrx, smaug, chatglm4): case-insensitive contractions, digit groups of 3. */
#define RE_LLAMA3 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*" RE_WS_TAIL
/* Qwen2: like Llama 3 with single digits. */
#define RE_QWEN2 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*" RE_WS_TAIL
#define RE_PUNCT "[\\p{P}\\$\\+<=>\\^~\\|`]+"
#define RE_PUNCT_DEFAULT "[\\p{P}\\$\\+<=>\\^~\\|]+"  /* the default list has no backtick */
#define RE_CJK "(?:" NOT_WS "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])++"
/* Cased letters as deepseek-llm's tokenizer lists them. */
#define RE_DS_LETTERS                                                                              \
    "[" WS "]?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"        \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}"  \
    "\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"          \
    "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}"   \
    "\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}" \
    "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}" \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"  \
    "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}" \
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"          \
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}" \
    "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}"          \
    "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}" \
    "\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}" \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"                \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"         \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]++"
#define RE_DS_PUNCT \
    "[" WS "]?(?:" NOT_WS "[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}])++"
#define RE_BLOOM " ?[^(" WS "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"
/* Tekken / GPT-4o: upper-then-lower letter runs (as llama.cpp rewrites \p{Lu}... classes). */
#define RE_UPPER "((?=[\\p{L}])([^a-z]))"
#define RE_LOWER "((?=[\\p{L}])([^A-Z]))"
#define RE_TEKKEN "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" RE_LOWER "*|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*" RE_WS_TAIL
#define RE_GPT4O "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+" RE_CONTRACT "?|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" RE_LOWER "*" RE_CONTRACT "?|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*" RE_WS_TAIL
#define RE_DS3 "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*" RE_WS_TAIL

enum { PRE_CLEAN_OFF = 1, PRE_IGNORE_MERGES = 2, PRE_ADD_BOS = 4 };

typedef struct pre_def {
    const char *names;    /* accepted tokenizer.ggml.pre values, ',' separated */
    int flags;            /* PRE_* */
    const char *re[7];    /* NULL-terminated */
} pre_def;

static const pre_def k_pre[] = {
    { "default", 0, { RE_PUNCT_DEFAULT, RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" } },
    { "llama3,llama-v3,llama-bpe,falcon3,falcon-h1,pixtral,midm-2.0,lfm2", PRE_IGNORE_MERGES | PRE_ADD_BOS, { RE_LLAMA3 } },
    { "dbrx,smaug-bpe", 0, { RE_LLAMA3 } },
    { "chatglm-bpe,glm4", 0, { RE_LLAMA3 } },
    { "deepseek-llm", PRE_CLEAN_OFF, { "[\\r\\n]", RE_DS_LETTERS, RE_DS_PUNCT, "[" WS "]+$", RE_CJK, "\\p{N}+" } },
    { "deepseek-coder", PRE_CLEAN_OFF, { "[\\r\\n]", "[" WS "]?\\p{L}+", "[" WS "]?\\p{P}+", RE_CJK, "\\p{N}" } },
    { "deepseek-v3,hunyuan-dense", PRE_CLEAN_OFF,
      { "\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+", RE_DS3 } },
    { "falcon", 0, { RE_PUNCT, RE_GPT2, "[0-9][0-9][0-9]" } },
    { "starcoder,refact,codeshell,exaone,minerva-7b", 0, { "\\p{N}", RE_GPT2 } },
    { "command-r,smollm", PRE_CLEAN_OFF, { "\\p{N}", RE_GPT2 } },
    { "gpt-2,phi-2,jina-es,jina-de,gigachat,jina-v1-en,jina-v2-es,jina-v2-de,jina-v2-code,roberta-bpe,"
      "mpt,olmo,jais,exaone4,a.x-4.0,mellum", 0, { RE_GPT2 } },
    { "trillion,granite-docling", PRE_CLEAN_OFF, { RE_GPT2 } },
    { "qwen2,deepseek-r1-qwen,kormo,hunyuan,grok-2", PRE_CLEAN_OFF, { RE_QWEN2 } },
    { "stablelm2,megrez", 0, { RE_QWEN2 } },
    { "poro-chat", PRE_CLEAN_OFF, { RE_BLOOM } },
    { "bloom,gpt3-finnish", 0, { RE_BLOOM } },
    { "viking", PRE_CLEAN_OFF, { RE_BLOOM, "\\p{N}" } },
    { "tekken", PRE_CLEAN_OFF | PRE_IGNORE_MERGES | PRE_ADD_BOS, { RE_TEKKEN } },
    { "gpt-4o,llama4,minimax-m2", PRE_CLEAN_OFF, { RE_GPT4O } },
    { "chameleon", PRE_CLEAN_OFF | PRE_ADD_BOS,
      { "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
        "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2 } },
};

struct tok_pretok {
    pcre2_code *re[7];
    size_t n_re;
};

static bool name_in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

int tok_pretok_new(const char *pre, tok_pretok **out, bool *clean_spaces, bool *ignore_merges, bool *add_bos,
                   hb_err *err) {
    int rc = HEARTH_OK;
    const pre_def *d = NULL;
    tok_pretok *p = NULL;
    *out = NULL;
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0] && !d; i++)
        if (name_in_list(k_pre[i].names, pre)) d = &k_pre[i];
    HB_CHECK(d, HEARTH_E_UNSUPPORTED, "BPE pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported", pre);
    p = calloc(1, sizeof *p);
    HB_CHECK(p, HEARTH_E_NOMEM, "out of memory");
    for (size_t i = 0; i < 7 && d->re[i]; i++) {
        int ec = 0;
        PCRE2_SIZE eo = 0;
        p->re[i] = pcre2_compile((PCRE2_SPTR)d->re[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            HB_CHECK(0, HEARTH_E_INTERNAL, "pre-tokenizer '%s': regex %zu does not compile at %zu: %s", pre, i, (size_t)eo, (char *)msg);
        }
        pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);  /* optional speed-up; falls back to the interpreter */
        p->n_re++;
    }
    *clean_spaces = !(d->flags & PRE_CLEAN_OFF);
    *ignore_merges = (d->flags & PRE_IGNORE_MERGES) != 0;
    if (d->flags & PRE_ADD_BOS) *add_bos = true;
    *out = p;
    p = NULL;
out:
    tok_pretok_free(p);
    return rc;
}

void tok_pretok_free(tok_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    free(p);
}

typedef struct size_vec {
    size_t *v;
    size_t n, cap;
} size_vec;

static int sv_push(size_vec *a, size_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        size_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return HEARTH_E_NOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return HEARTH_OK;
}

/* Matching resources for one split call. JIT needs more than its default 32 KiB stack for
 * very long runs (a 200k-letter word); beyond the JIT stack we retry in the interpreter,
 * whose memory is bounded by the heap limit. */
typedef struct match_env {
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
} match_env;

static int match_once(const pcre2_code *re, pcre2_match_data *md, match_env *env, const char *s, size_t n, size_t start) {
    int m = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, env->mctx);
    if (m == PCRE2_ERROR_JIT_STACKLIMIT)
        m = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, env->mctx);
    return m;
}

/* Cuts fragment text[s..e) by regex re into matches and the gaps between them. */
static int split_fragment(const pcre2_code *re, pcre2_match_data *md, match_env *env, const char *text, size_t s,
                          size_t e, size_vec *outv, hb_err *err) {
    int rc = HEARTH_OK;
    size_t pos = s, last = s;
    while (pos < e) {
        int m = match_once(re, md, env, text + s, e - s, pos - s);
        if (m == PCRE2_ERROR_NOMATCH) break;
        HB_CHECK(m >= 0, HEARTH_E_INTERNAL, "pre-tokenizer regex failed (PCRE2 error %d)", m);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = s + ov[0], me = s + ov[1];
        if (me == ms) {  /* an empty match cuts nothing: step over one character */
            pos = ms + tok_utf8_len((uint8_t)text[ms]);
            continue;
        }
        if (ms > last) HB_CHECK(sv_push(outv, ms) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        HB_CHECK(sv_push(outv, me) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        last = pos = me;
    }
    if (last < e) HB_CHECK(sv_push(outv, e) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
out:
    return rc;
}

int tok_pretok_split(const tok_pretok *p, const char *text, size_t len, size_t **ends, size_t *n, hb_err *err) {
    int rc = HEARTH_OK;
    size_vec cur = { 0 }, next = { 0 };
    pcre2_match_data *md = NULL;
    match_env env = { 0 };
    *ends = NULL;
    *n = 0;
    if (len == 0) goto out;
    HB_CHECK(sv_push(&cur, len) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    env.mctx = pcre2_match_context_create(NULL);
    HB_CHECK(env.mctx, HEARTH_E_NOMEM, "out of memory");
    pcre2_set_heap_limit(env.mctx, 1u << 20);  /* KiB: the interpreter may use up to 1 GiB */
    if (len > 4096) {  /* long texts: a JIT stack that grows to 8 MiB (the default is 32 KiB) */
        env.jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (env.jstack) pcre2_jit_stack_assign(env.mctx, NULL, env.jstack);
    }
    for (size_t r = 0; r < p->n_re; r++) {
        md = pcre2_match_data_create_from_pattern(p->re[r], NULL);
        HB_CHECK(md, HEARTH_E_NOMEM, "out of memory");
        next.n = 0;
        size_t start = 0;
        for (size_t i = 0; i < cur.n; i++) {
            if ((rc = split_fragment(p->re[r], md, &env, text, start, cur.v[i], &next, err))) goto out;
            start = cur.v[i];
        }
        pcre2_match_data_free(md);
        md = NULL;
        size_vec t = cur;
        cur = next;
        next = t;
    }
    *ends = cur.v;
    *n = cur.n;
    cur.v = NULL;
out:
    pcre2_match_data_free(md);
    pcre2_jit_stack_free(env.jstack);
    pcre2_match_context_free(env.mctx);
    free(cur.v);
    free(next.v);
    return rc;
}
