/* fuzz_tokenizer.c — libFuzzer target for the tokenizer.
 *
 * Loads two small vocabs once (stories260K's SentencePiece vocab and the GPT-2 byte-level
 * BPE vocab from ../shared, or HEARTH_TEST_SHARED). Input byte 0 picks the vocab and the
 * flags; the rest is the text. Checks: tokenize accepts exactly the valid UTF-8 inputs
 * (invalid ones fail cleanly with HEARTH_E_INVALID); ids are in range; detokenize and the
 * streaming detokenizer succeed on them and the stream's output is valid UTF-8; and the
 * raw bytes reinterpreted as token ids detokenize without error. With control byte 0xFF
 * the rest is parsed as a GGUF file and handed to tok_vocab_load (hostile vocab metadata
 * must fail cleanly; a vocab that loads must tokenize a fixed text). Inputs are capped so
 * each run stays fast.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hearth.h"
#include "gguf/gguf.h"
#include "tokenizer/tok_internal.h"

static hearth_model *g_models[2];

static hearth_model *load(const char *rel) {
    const char *env = getenv("HEARTH_TEST_SHARED");
    char path[1200], err[512] = "";
    hearth_model *m = NULL;
    hearth_model_params p = hearth_model_default_params();
    p.vocab_only = true;
    snprintf(path, sizeof path, "%s/%s", env && *env ? env : "../shared", rel);
    if (hearth_model_load(path, &p, &m, err, sizeof err) != HEARTH_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err);
        abort();
    }
    return m;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    g_models[0] = load("models/stories260K.gguf");
    g_models[1] = load("vocab/ggml-vocab-gpt-2.gguf");
    return 0;
}

static void check_stream(const hearth_model *m, int flags, const hearth_token *ids, size_t n) {
    hearth_detok_stream *s = hearth_detok_stream_new(m, flags);
    if (!s) abort();
    for (size_t i = 0; i <= n; i++) {
        const char *t;
        size_t l;
        hearth_status st = i < n ? hearth_detok_stream_push(s, ids[i], &t, &l) : hearth_detok_stream_flush(s, &t, &l);
        if (st != HEARTH_OK || !tok_utf8_valid(t, l, NULL)) abort();
    }
    hearth_detok_stream_free(s);
}

static void fuzz_vocab(const uint8_t *data, size_t size) {
    hb_err e;
    gguf_file *f = NULL;
    tok_vocab *v = NULL;
    hb_err_clear(&e);
    if (gguf_open_mem(data, size, "fuzz", &f, &e) != HEARTH_OK) return;
    hb_err_clear(&e);
    if (tok_vocab_load(f, &v, &e) == HEARTH_OK && v) {
        int32_t *ids = NULL;
        size_t n = 0;
        char *out = NULL;
        size_t olen = 0;
        const char *text = "Hello <s> w\xC3\xB6rld 123 \xF0\x9F\x99\x82!";
        if (tok_encode(v, text, strlen(text), HEARTH_TOK_ADD_SPECIAL | HEARTH_TOK_PARSE_SPECIAL, &ids, &n, &e) == HEARTH_OK) {
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= tok_n_vocab(v)) abort();
            hb_err_clear(&e);
            if (tok_decode(v, ids, n, HEARTH_DETOK_UNPARSE_SPECIAL, &out, &olen, &e) != HEARTH_OK) abort();
        }
        free(out);
        free(ids);
    }
    tok_vocab_free(v);
    gguf_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    uint8_t ctl = data[0];
    if (ctl == 0xFF) {
        fuzz_vocab(data + 1, size - 1);
        return 0;
    }
    const hearth_model *m = g_models[ctl & 1];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int flags = ((ctl >> 1) & 1 ? HEARTH_TOK_ADD_SPECIAL : 0) | ((ctl >> 2) & 1 ? HEARTH_TOK_PARSE_SPECIAL : 0);
    int dflags = (ctl >> 3) & 3;
    hearth_token *ids = NULL;
    size_t n = 0;
    char err[512];
    hearth_status st = hearth_tokenize(m, text, len, flags, &ids, &n, err, sizeof err);
    bool valid = tok_utf8_valid(text, len, NULL);
    if (valid != (st == HEARTH_OK)) abort();
    if (!valid && st != HEARTH_E_INVALID) abort();
    int32_t nv = hearth_model_n_vocab(m);
    if (st == HEARTH_OK) {
        char *out = NULL;
        size_t olen = 0;
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nv) abort();
        if (hearth_detokenize(m, ids, n, dflags, &out, &olen, err, sizeof err) != HEARTH_OK) abort();
        hearth_free(out);
        check_stream(m, dflags, ids, n);
    }
    hearth_free(ids);
    /* The same bytes as arbitrary token ids (two bytes each). */
    size_t ni = len / 2;
    hearth_token *raw = calloc(ni + 1, sizeof *raw);
    if (!raw) return 0;
    for (size_t i = 0; i < ni; i++) raw[i] = (hearth_token)(((uint8_t)text[2 * i] | ((uint8_t)text[2 * i + 1] << 8)) % nv);
    char *out = NULL;
    size_t olen = 0;
    if (hearth_detokenize(m, raw, ni, dflags, &out, &olen, err, sizeof err) != HEARTH_OK) abort();
    hearth_free(out);
    check_stream(m, dflags, raw, ni);
    free(raw);
    return 0;
}
