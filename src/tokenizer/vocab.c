/* vocab.c — builds a tok_vocab from a GGUF file's tokenizer.ggml.* keys.
 *
 * What is read, and the defaults applied when a key is absent, follow llama.cpp's loader so
 * that token ids match it exactly:
 *  - model "llama" (SentencePiece-style): bos 1, eos 2, unk 0; add_bos, add_space_prefix.
 *  - model "gpt2" (byte-level BPE): bos = eos = 11, no unk; merges required; the
 *    pre-tokenizer name picks split regexes and may imply add_bos / clean_spaces /
 *    ignore_merges (pretok.c).
 *  - model "bert" (WordPiece): cls/bos 101, unk 100, sep 102, pad 0, mask 103; add_bos.
 *  Explicit GGUF keys override these (ids out of range are ignored, as llama.cpp does).
 *  - End-of-generation and fill-in-the-middle tokens missing from the keys are found by
 *    their text (see k_eot_texts etc. below); such tokens and every end marker are forced
 *    to type control, which also changes how text containing them is split (llama.cpp
 *    does the same). Where several candidates exist we take the first in list order
 *    (llama.cpp's pick depends on hash-map order).
 *  - Phi-3 models (general.name containing "phi3"/"phi-3") strip whitespace to the right of
 *    special tokens, except <unk>, <s>, <|endoftext|>.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Caps on what a file may declare (far above any real tokenizer). */
#define TOK_MAX_TOKENS (16u << 20)
#define TOK_MAX_MERGES (16u << 20)

static const char *const k_eot_texts[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                           "<|endoftext|>", "<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", NULL };
static const char *const k_eom_texts[] = { "<|eom_id|>", NULL };
static const char *const k_fim_pre_texts[] = { "<|fim_prefix|>", "<fim-prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>", NULL };
static const char *const k_fim_suf_texts[] = { "<|fim_suffix|>", "<fim-suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>", NULL };
static const char *const k_fim_mid_texts[] = { "<|fim_middle|>", "<fim-middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>", NULL };
static const char *const k_fim_pad_texts[] = { "<|fim_pad|>", "<fim-pad>", "<PAD>", NULL };
static const char *const k_fim_rep_texts[] = { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", NULL };
static const char *const k_fim_sep_texts[] = { "<|file_sep|>", NULL };
/* Tokens whose text marks the end of a turn or document: all end generation. */
static const char *const k_eog_texts[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                           "<|endoftext|>", "<|eom_id|>", "<EOT>", NULL };

static int32_t lookup(const tok_vocab *v, const char *s) {
    return tok_map_get(&v->text_to_id, s, strlen(s), NULL, 0);
}

/* ---- tokens, scores, types ------------------------------------------------------------- */
static uint16_t attr_of_type(int64_t t) {
    switch (t) {
    case TOK_TYPE_NORMAL: return TOK_ATTR_NORMAL;
    case TOK_TYPE_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case TOK_TYPE_CONTROL: return TOK_ATTR_CONTROL;
    case TOK_TYPE_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case TOK_TYPE_UNUSED: return TOK_ATTR_UNUSED;
    case TOK_TYPE_BYTE: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_UNDEFINED;
    }
}

static int load_tokens(tok_vocab *v, const gguf_file *f, hb_err *err) {
    int rc = HEARTH_OK;
    hb_err scratch;
    const gguf_array *toks = NULL, *scores = NULL, *types = NULL;
    size_t pool_len = 0;
    char name[32];
    if ((rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err))) {
        if (rc == HEARTH_E_INVALID) rc = hb_fail(err, HEARTH_E_FORMAT, "%s: tokenizer.ggml.tokens is missing", gguf_path(f));
        goto out;
    }
    HB_CHECK(toks->n >= 1 && toks->n <= TOK_MAX_TOKENS, HEARTH_E_FORMAT,
             "%s: tokenizer.ggml.tokens has %llu entries (expected 1..%u)", gguf_path(f), (unsigned long long)toks->n, TOK_MAX_TOKENS);
    v->n = (int32_t)toks->n;
    hb_err_clear(&scratch);
    if (gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VTYPE_COUNT, &scores, &scratch) == HEARTH_OK) {
        HB_CHECK(scores->n == toks->n && (scores->elem == GGUF_FLOAT32 || scores->elem == GGUF_FLOAT64), HEARTH_E_FORMAT,
                 "%s: tokenizer.ggml.scores must be %d floats", gguf_path(f), v->n);
    } else scores = NULL;
    if (gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VTYPE_COUNT, &types, &scratch) == HEARTH_OK) {
        HB_CHECK(types->n == toks->n && types->elem <= GGUF_INT32 && types->elem != GGUF_FLOAT32, HEARTH_E_FORMAT,
                 "%s: tokenizer.ggml.token_type must be %d integers", gguf_path(f), v->n);
    } else types = NULL;
    for (uint64_t i = 0; i < toks->n; i++) {
        uint64_t l = toks->strs[i].len ? toks->strs[i].len : (uint64_t)snprintf(name, sizeof name, "[EMPTY_%llu]", (unsigned long long)i);
        HB_CHECK(l < (1u << 20), HEARTH_E_FORMAT, "%s: token %llu is %llu bytes long", gguf_path(f), (unsigned long long)i, (unsigned long long)l);
        pool_len += l + 1;
    }
    HB_CHECK(pool_len < UINT32_MAX, HEARTH_E_FORMAT, "%s: token texts too large", gguf_path(f));
    v->tok = hb_calloc_n((size_t)v->n, sizeof *v->tok);
    v->pool = malloc(pool_len);
    HB_CHECK(v->tok && v->pool, HEARTH_E_NOMEM, "out of memory loading %d tokens", v->n);
    HB_CHECK(tok_map_init(&v->text_to_id, (size_t)v->n) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    size_t off = 0;
    for (int32_t i = 0; i < v->n; i++) {
        const gguf_str *s = &toks->strs[i];
        size_t l = (size_t)s->len;
        if (l) memcpy(v->pool + off, s->data, l);
        else l = (size_t)snprintf(v->pool + off, 32, "[EMPTY_%d]", i);  /* as llama.cpp names it */
        v->pool[off + l] = '\0';
        v->tok[i].off = (uint32_t)off;
        v->tok[i].len = (uint32_t)l;
        v->tok[i].score = scores ? (float)gguf_arr_f64(scores, (uint64_t)i) : 0.0f;
        v->tok[i].attr = types ? attr_of_type(gguf_arr_i64(types, (uint64_t)i)) : TOK_ATTR_NORMAL;
        if (l > v->max_token_len) v->max_token_len = l;
        HB_CHECK(tok_map_put(&v->text_to_id, v->pool + off, l, NULL, 0, i, true) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
        off += l + 1;
    }
out:
    return rc;
}

/* Merges are "left right" strings; the split is the first space after the first byte. */
static int load_merges(tok_vocab *v, const gguf_file *f, hb_err *err) {
    int rc = HEARTH_OK;
    const gguf_array *m = NULL;
    if ((rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_STRING, &m, err))) {
        if (rc == HEARTH_E_INVALID) rc = hb_fail(err, HEARTH_E_FORMAT, "%s: BPE vocab without tokenizer.ggml.merges", gguf_path(f));
        goto out;
    }
    HB_CHECK(m->n <= TOK_MAX_MERGES, HEARTH_E_FORMAT, "%s: %llu merges is too many", gguf_path(f), (unsigned long long)m->n);
    HB_CHECK(tok_map_init(&v->merges, (size_t)m->n) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < m->n; i++) {
        const char *s = m->strs[i].data;
        size_t len = (size_t)m->strs[i].len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        size_t al = sp ? (size_t)(sp - s) : 0;
        const char *b = sp ? sp + 1 : s;
        size_t bl = sp ? len - al - 1 : 0;
        HB_CHECK(tok_map_put(&v->merges, s, al, b, bl, (int32_t)i, false) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    }
out:
    return rc;
}

/* ---- kind, flags and special ids ------------------------------------------------------- */
static void get_id(const tok_vocab *v, const gguf_file *f, const char *key, int32_t *id) {
    hb_err scratch;
    uint32_t x;
    hb_err_clear(&scratch);
    if (gguf_get_u32(f, key, &x, &scratch) == HEARTH_OK && x < (uint32_t)v->n) *id = (int32_t)x;
}

static void get_flag(const gguf_file *f, const char *key, bool *b) {
    hb_err scratch;
    bool x;
    hb_err_clear(&scratch);
    if (gguf_get_bool(f, key, &x, &scratch) == HEARTH_OK) *b = x;
}

static void set_defaults(tok_vocab *v) {
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = v->cls = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    if (v->kind == TOK_SPM) {
        v->bos = 1; v->eos = 2; v->unk = 0;
        v->add_space_prefix = true; v->add_bos = true;
    } else if (v->kind == TOK_BPE) {
        v->bos = 11; v->eos = 11;
        v->clean_spaces = true;
    } else if (v->kind == TOK_WPM) {
        v->bos = 101; v->unk = 100; v->sep = 102; v->pad = 0; v->mask = 103;
        v->clean_spaces = true; v->add_bos = true;
    }
    /* A default may not exist in a small vocab: then there is no such token. */
    int32_t *ids[] = { &v->bos, &v->eos, &v->unk, &v->sep, &v->pad, &v->mask };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= v->n) *ids[i] = -1;
}

static void read_special_ids(tok_vocab *v, const gguf_file *f) {
    get_id(v, f, "tokenizer.ggml.bos_token_id", &v->bos);
    get_id(v, f, "tokenizer.ggml.eos_token_id", &v->eos);
    get_id(v, f, "tokenizer.ggml.eot_token_id", &v->eot);
    get_id(v, f, "tokenizer.ggml.eom_token_id", &v->eom);
    get_id(v, f, "tokenizer.ggml.unknown_token_id", &v->unk);
    get_id(v, f, "tokenizer.ggml.seperator_token_id", &v->sep);  /* sic: the GGUF key name */
    get_id(v, f, "tokenizer.ggml.padding_token_id", &v->pad);
    get_id(v, f, "tokenizer.ggml.mask_token_id", &v->mask);
    get_id(v, f, "tokenizer.ggml.cls_token_id", &v->cls);
    get_id(v, f, "tokenizer.ggml.fim_pre_token_id", &v->fim_pre);
    get_id(v, f, "tokenizer.ggml.fim_suf_token_id", &v->fim_suf);
    get_id(v, f, "tokenizer.ggml.fim_mid_token_id", &v->fim_mid);
    get_id(v, f, "tokenizer.ggml.fim_pad_token_id", &v->fim_pad);
    get_id(v, f, "tokenizer.ggml.fim_rep_token_id", &v->fim_rep);
    get_id(v, f, "tokenizer.ggml.fim_sep_token_id", &v->fim_sep);
    get_id(v, f, "tokenizer.ggml.prefix_token_id", &v->fim_pre);  /* older names */
    get_id(v, f, "tokenizer.ggml.suffix_token_id", &v->fim_suf);
    get_id(v, f, "tokenizer.ggml.middle_token_id", &v->fim_mid);
    if (v->cls < 0) v->cls = v->bos;
    get_flag(f, "tokenizer.ggml.add_bos_token", &v->add_bos);
    get_flag(f, "tokenizer.ggml.add_eos_token", &v->add_eos);
}

/* Finds a special token by its text when the file did not name it; forces it to control. */
static void detect_by_text(tok_vocab *v, int32_t *id, const char *const *texts) {
    if (*id >= 0) return;
    for (size_t i = 0; texts[i]; i++) {
        int32_t t = lookup(v, texts[i]);
        if (t < 0) continue;
        *id = t;
        if (!(v->tok[t].attr & TOK_ATTR_CONTROL)) v->tok[t].attr = TOK_ATTR_CONTROL;
        return;
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int build_eog(tok_vocab *v) {
    int32_t cand[64];
    size_t n = 0;
    const int32_t fixed[] = { v->fim_pad, v->fim_rep, v->fim_sep, v->eos, v->eot, v->eom };
    for (size_t i = 0; k_eog_texts[i]; i++) {
        int32_t t = lookup(v, k_eog_texts[i]);
        if (t < 0) continue;
        if (!(v->tok[t].attr & TOK_ATTR_CONTROL)) v->tok[t].attr = TOK_ATTR_CONTROL;
        cand[n++] = t;
    }
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i] >= 0) cand[n++] = fixed[i];
    qsort(cand, n, sizeof cand[0], cmp_i32);
    v->eog = hb_malloc_n(n ? n : 1, sizeof *v->eog);
    if (!v->eog) return HEARTH_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (v->n_eog == 0 || v->eog[v->n_eog - 1] != cand[i]) v->eog[v->n_eog++] = cand[i];
    return HEARTH_OK;
}

/* Sort key for the special-token list: longer text first, then lower id (llama.cpp only
 * orders by length; ties between different texts of one length cannot both match at one
 * position, so the tie order only matters for duplicate texts). */
static int cmp_special(const void *a, const void *b, void *ctx) {
    const tok_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->tok[x].len != v->tok[y].len) return v->tok[x].len > v->tok[y].len ? -1 : 1;
    return (x > y) - (x < y);
}

static int build_special_list(tok_vocab *v) {
    const uint16_t want = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
    size_t n = 0;
    for (int32_t i = 0; i < v->n; i++)
        if (v->tok[i].attr & want) n++;
    v->special = hb_malloc_n(n ? n : 1, sizeof *v->special);
    if (!v->special) return HEARTH_E_NOMEM;
    for (int32_t i = 0; i < v->n; i++)
        if (v->tok[i].attr & want) v->special[v->n_special++] = i;
    qsort_r(v->special, v->n_special, sizeof *v->special, cmp_special, v);
    return HEARTH_OK;
}

static void set_attr_by_text(tok_vocab *v, const char *text, uint16_t bit, bool on) {
    int32_t t = lookup(v, text);
    if (t < 0) return;
    if (on) v->tok[t].attr |= bit;
    else v->tok[t].attr &= (uint16_t)~bit;
}

/* Model-specific attribute rules keyed on general.name / the pre-tokenizer name. */
static void apply_name_rules(tok_vocab *v, const gguf_file *f) {
    hb_err scratch;
    const gguf_str *s = NULL;
    char name[256] = "";
    hb_err_clear(&scratch);
    if (gguf_get_str(f, "general.name", &s, &scratch) == HEARTH_OK) {
        size_t l = s->len < sizeof name - 1 ? (size_t)s->len : sizeof name - 1;
        for (size_t i = 0; i < l; i++) name[i] = (char)tolower((unsigned char)s->data[i]);
        name[l] = '\0';
    }
    if (strstr(v->pre, "jina-v2-de") || strstr(v->pre, "jina-v2-es") || strstr(v->pre, "jina-v2-code")) {
        set_attr_by_text(v, "<mask>", TOK_ATTR_LSTRIP, true);
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (size_t i = 0; i < v->n_special; i++) v->tok[v->special[i]].attr |= TOK_ATTR_RSTRIP;
        set_attr_by_text(v, "</s>", TOK_ATTR_RSTRIP, true);
        set_attr_by_text(v, "<unk>", TOK_ATTR_RSTRIP, false);
        set_attr_by_text(v, "<s>", TOK_ATTR_RSTRIP, false);
        set_attr_by_text(v, "<|endoftext|>", TOK_ATTR_RSTRIP, false);
    }
}

static void build_byte_table(tok_vocab *v) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id = -1;
        if (v->kind == TOK_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = lookup(v, buf);
            if (id < 0) id = tok_map_get(&v->text_to_id, (const char[1]){ (char)b }, 1, NULL, 0);
        } else {
            size_t l = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), buf);
            id = tok_map_get(&v->text_to_id, buf, l, NULL, 0);
        }
        v->byte_tok[b] = id;
    }
}

/* ---- entry points ---------------------------------------------------------------------- */
static int read_kind(tok_vocab *v, const gguf_file *f, bool *none, hb_err *err) {
    int rc = HEARTH_OK;
    hb_err scratch;
    const gguf_str *model = NULL, *pre = NULL;
    *none = false;
    if ((rc = gguf_get_str(f, "tokenizer.ggml.model", &model, err))) {
        if (rc == HEARTH_E_INVALID) { *none = true; rc = HEARTH_OK; }
        goto out;
    }
    v->model = hb_strndup(model->data, (size_t)model->len);
    hb_err_clear(&scratch);
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, &scratch) == HEARTH_OK && pre->len)
        v->pre = hb_strndup(pre->data, (size_t)pre->len);
    else
        v->pre = hb_strndup("default", 7);
    HB_CHECK(v->model && v->pre, HEARTH_E_NOMEM, "out of memory");
    if (strcmp(v->model, "no_vocab") == 0 || strcmp(v->model, "none") == 0) { *none = true; goto out; }
    if (strcmp(v->model, "llama") == 0) v->kind = TOK_SPM;
    else if (strcmp(v->model, "gpt2") == 0) v->kind = TOK_BPE;
    else if (strcmp(v->model, "bert") == 0) v->kind = TOK_WPM;
    HB_CHECK(v->kind != TOK_NONE, HEARTH_E_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (supported: llama, gpt2, bert)",
             gguf_path(f), v->model);
out:
    return rc;
}

int tok_vocab_load(const gguf_file *f, tok_vocab **out, hb_err *err) {
    int rc = HEARTH_OK;
    bool none = false;
    tok_vocab *v = calloc(1, sizeof *v);
    *out = NULL;
    HB_CHECK(v, HEARTH_E_NOMEM, "out of memory");
    if ((rc = read_kind(v, f, &none, err)) || none) goto out;
    if ((rc = load_tokens(v, f, err))) goto out;
    set_defaults(v);
    if (v->kind == TOK_BPE) {
        if ((rc = load_merges(v, f, err))) goto out;
        if ((rc = tok_pretok_new(v->pre, &v->pretok, &v->clean_spaces, &v->ignore_merges, &v->add_bos, err))) goto out;
    }
    get_flag(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    read_special_ids(v, f);
    detect_by_text(v, &v->eot, k_eot_texts);
    detect_by_text(v, &v->eom, k_eom_texts);
    detect_by_text(v, &v->fim_pre, k_fim_pre_texts);
    detect_by_text(v, &v->fim_suf, k_fim_suf_texts);
    detect_by_text(v, &v->fim_mid, k_fim_mid_texts);
    detect_by_text(v, &v->fim_pad, k_fim_pad_texts);
    detect_by_text(v, &v->fim_rep, k_fim_rep_texts);
    detect_by_text(v, &v->fim_sep, k_fim_sep_texts);
    HB_CHECK(build_eog(v) == HEARTH_OK && build_special_list(v) == HEARTH_OK, HEARTH_E_NOMEM, "out of memory");
    apply_name_rules(v, f);
    build_byte_table(v);
    *out = v;
    v = NULL;
out:
    tok_vocab_free(v);
    return rc;
}

void tok_vocab_free(tok_vocab *v) {
    if (!v) return;
    free(v->model);
    free(v->pre);
    free(v->tok);
    free(v->pool);
    tok_map_free(&v->text_to_id);
    tok_map_free(&v->merges);
    tok_pretok_free(v->pretok);
    free(v->eog);
    free(v->special);
    free(v);
}

/* ---- accessors ------------------------------------------------------------------------- */
tok_kind tok_vocab_kind(const tok_vocab *v) { return v->kind; }
const char *tok_vocab_kind_name(const tok_vocab *v) { return v->model; }
const char *tok_vocab_pre(const tok_vocab *v) { return v->pre; }
int32_t tok_n_vocab(const tok_vocab *v) { return v->n; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_fim(const tok_vocab *v, int which) {
    return which == 0 ? v->fim_pre : which == 1 ? v->fim_suf : which == 2 ? v->fim_mid : -1;
}
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    return id >= 0 && bsearch(&id, v->eog, v->n_eog, sizeof *v->eog, cmp_i32) != NULL;
}

bool tok_is_control(const tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n && (v->tok[id].attr & TOK_ATTR_CONTROL);
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    if (len) *len = v->tok[id].len;
    return tok_str(v, id);
}
