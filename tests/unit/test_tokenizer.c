/* Unit tests for src/tokenizer: UTF-8 validation, invalid input, streaming detokenization
 * (partial characters held back), vocab loading errors (unknown model / pre-tokenizer),
 * out-of-range ids, end-of-generation tokens. Uses small vocabs from ../shared and vocabs
 * written on the fly with the GGUF writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "hearth.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tok_internal.h"

static char g_shared[1024];

static hearth_model *load_vocab(const char *rel) {
    char path[1200], err[512] = "";
    hearth_model *m = NULL;
    hearth_model_params p = hearth_model_default_params();
    p.vocab_only = true;
    snprintf(path, sizeof path, "%s/%s", g_shared, rel);
    if (hearth_model_load(path, &p, &m, err, sizeof err) != HEARTH_OK) fail_msg("cannot load %s: %s", path, err);
    return m;
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */
static void test_utf8_valid(void **state) {
    (void)state;
    /* Well-formed sequences per RFC 3629 / Unicode Table 3-7. */
    const char *good[] = { "", "abc", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",
                           "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF", "h\xC3\xA9llo \xF0\x9F\x99\x82" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) assert_true(tok_utf8_valid(good[i], strlen(good[i]), NULL));
    assert_true(tok_utf8_valid("a\0b", 3, NULL));  /* NUL is a valid character */
    /* Ill-formed: overlongs, surrogates, above U+10FFFF, stray/truncated bytes. */
    struct { const char *s; size_t bad; } bad[] = {
        { "\xC0\x80", 0 }, { "\xC1\xBF", 0 }, { "\xE0\x9F\xBF", 0 }, { "\xED\xA0\x80", 0 }, { "\xF0\x8F\xBF\xBF", 0 },
        { "\xF4\x90\x80\x80", 0 }, { "\xF5\x80\x80\x80", 0 }, { "ab\x80", 2 }, { "ab\xC3", 2 }, { "x\xE2\x82", 1 },
        { "\xFF", 0 }, { "ok\xE2\x28\xA1", 2 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off = 99;
        assert_false(tok_utf8_valid(bad[i].s, strlen(bad[i].s), &off));
        assert_int_equal(off, bad[i].bad);
    }
}

static void test_tokenize_rejects_invalid_utf8(void **state) {
    (void)state;
    hearth_model *m = load_vocab("models/stories260K.gguf");
    hearth_token *ids = (hearth_token *)1;
    size_t n = 7;
    char err[256] = "";
    assert_int_equal(hearth_tokenize(m, "ab\xED\xA0\x80", 5, HEARTH_TOK_ADD_SPECIAL, &ids, &n, err, sizeof err), HEARTH_E_INVALID);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "UTF-8"));
    /* Valid input with NUL and U+FFFF is accepted (llama.cpp accepts it too). */
    assert_int_equal(hearth_tokenize(m, "a\0b\xEF\xBF\xBF", 6, 0, &ids, &n, err, sizeof err), HEARTH_OK);
    assert_true(n > 0);
    hearth_free(ids);
    hearth_model_free(m);
}

/* ---- streaming detokenizer ------------------------------------------------------------- */
static void test_stream_holds_partial_chars(void **state) {
    (void)state;
    hearth_model *m = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    const char *text = "Hi \xF0\x9F\x99\x82 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!";  /* emoji become byte tokens */
    hearth_token *ids = NULL;
    size_t n = 0, full_len = 0, got = 0;
    char err[256], *full = NULL, out[256];
    assert_int_equal(hearth_tokenize(m, text, strlen(text), 0, &ids, &n, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_detokenize(m, ids, n, 0, &full, &full_len, err, sizeof err), HEARTH_OK);
    assert_string_equal(full, text);
    hearth_detok_stream *s = hearth_detok_stream_new(m, 0);
    assert_non_null(s);
    int held = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t l;
        char piece[16];
        size_t pl = 0;
        assert_int_equal(hearth_detok_stream_push(s, ids[i], &t, &l), HEARTH_OK);
        assert_true(tok_utf8_valid(t, l, NULL));  /* never half a character */
        assert_int_equal(hearth_token_piece(m, ids[i], 0, piece, sizeof piece, &pl), HEARTH_OK);
        if (pl == 1 && ((unsigned char)piece[0] & 0x80) && l == 0) held++;
        memcpy(out + got, t, l);
        got += l;
    }
    const char *t;
    size_t l;
    assert_int_equal(hearth_detok_stream_flush(s, &t, &l), HEARTH_OK);
    assert_int_equal(l, 0);
    assert_true(held >= 3);  /* the first bytes of each emoji were held back */
    assert_int_equal(got, full_len);
    assert_memory_equal(out, full, got);
    hearth_detok_stream_free(s);

    /* An incomplete character at the end becomes U+FFFD on flush. */
    s = hearth_detok_stream_new(m, 0);
    int32_t b0 = m->vocab->byte_tok[0xF0], b1 = m->vocab->byte_tok[0x9F];
    assert_true(b0 >= 0 && b1 >= 0);
    assert_int_equal(hearth_detok_stream_push(s, b0, &t, &l), HEARTH_OK);
    assert_int_equal(l, 0);
    assert_int_equal(hearth_detok_stream_push(s, b1, &t, &l), HEARTH_OK);
    assert_int_equal(l, 0);
    assert_int_equal(hearth_detok_stream_flush(s, &t, &l), HEARTH_OK);
    assert_int_equal(l, 3);
    assert_memory_equal(t, "\xEF\xBF\xBD", 3);
    /* Out-of-range ids are rejected. */
    assert_int_equal(hearth_detok_stream_push(s, -1, &t, &l), HEARTH_E_INVALID);
    assert_int_equal(hearth_detok_stream_push(s, hearth_model_n_vocab(m), &t, &l), HEARTH_E_INVALID);
    hearth_detok_stream_free(s);
    hearth_free(full);
    hearth_free(ids);
    hearth_model_free(m);
}

/* A stream after a prompt keeps its first token's leading space; at a text's start
 * (nothing or only BOS before it) the SentencePiece rule drops it. */
static void test_stream_continuation(void **state) {
    (void)state;
    hearth_model *m = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    hearth_token *ids = NULL;
    size_t n = 0, l = 0;
    const char *t;
    char err[256];
    assert_int_equal(hearth_tokenize(m, "Once upon", 9, HEARTH_TOK_ADD_SPECIAL, &ids, &n, err, sizeof err), HEARTH_OK);
    assert_int_equal(n, 3); /* BOS, "▁Once", "▁upon" */
    assert_int_equal(ids[0], hearth_token_bos(m));
    assert_int_equal(hearth_detok_flags_after(m, ids, 1), 0);
    assert_int_equal(hearth_detok_flags_after(m, ids, 0), 0);
    assert_int_equal(hearth_detok_flags_after(m, ids, 2), HEARTH_DETOK_CONTINUE);
    assert_int_equal(hearth_detok_flags_after(m, ids + 1, 1), HEARTH_DETOK_CONTINUE);
    for (int cont = 0; cont < 2; cont++) {
        hearth_detok_stream *s = hearth_detok_stream_new(m, cont ? HEARTH_DETOK_CONTINUE : 0);
        assert_non_null(s);
        assert_int_equal(hearth_detok_stream_push(s, ids[2], &t, &l), HEARTH_OK);
        assert_int_equal(l, cont ? 5 : 4);
        assert_memory_equal(t, cont ? " upon" : "upon", l);
        assert_int_equal(hearth_detok_stream_push(s, ids[1], &t, &l), HEARTH_OK); /* later tokens keep theirs */
        assert_int_equal(l, 5);
        assert_memory_equal(t, " Once", 5);
        hearth_detok_stream_free(s);
    }
    hearth_free(ids);
    hearth_model_free(m);
}

/* The fill-in-the-middle tokens of a vocabulary that has them (qwen3), and -1 without. */
static void test_fim_tokens(void **state) {
    (void)state;
    hearth_model *q = load_vocab("vocab/ggml-vocab-qwen3.gguf"), *l = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    const char *want[3] = { "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>" };
    for (int i = 0; i < 3; i++) {
        char buf[64];
        size_t n = 0;
        hearth_token t = hearth_token_fim(q, HEARTH_FIM_PRE + i);
        assert_true(t >= 0);
        assert_int_equal(hearth_token_piece(q, t, HEARTH_DETOK_UNPARSE_SPECIAL, buf, sizeof buf, &n), HEARTH_OK);
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(buf, want[i], n);
        assert_int_equal(hearth_token_fim(l, HEARTH_FIM_PRE + i), -1);
    }
    assert_int_equal(hearth_token_fim(q, 7), -1);
    hearth_model_free(q);
    hearth_model_free(l);
}

/* Concatenates the stream output for ids. */
static size_t stream_all(const hearth_model *m, int flags, const hearth_token *ids, size_t n, char *out) {
    size_t got = 0;
    const char *t;
    size_t l;
    hearth_detok_stream *s = hearth_detok_stream_new(m, flags);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hearth_detok_stream_push(s, ids[i], &t, &l), HEARTH_OK);
        memcpy(out + got, t, l);
        got += l;
    }
    assert_int_equal(hearth_detok_stream_flush(s, &t, &l), HEARTH_OK);
    memcpy(out + got, t, l);
    got += l;
    out[got] = '\0';
    hearth_detok_stream_free(s);
    return got;
}

/* The stream applies SentencePiece's leading-space rule like detokenize: the space the
 * tokenizer added is dropped from the first piece; with REMOVE_SPECIAL a leading BOS is
 * dropped and (as llama.cpp does) the space after it is kept. */
static void test_stream_leading_space(void **state) {
    (void)state;
    hearth_model *m = load_vocab("vocab/ggml-vocab-mistral-spm.gguf");
    const char *text = "Hello world, again";
    const int modes[][2] = { { 0, 0 }, { HEARTH_TOK_ADD_SPECIAL, HEARTH_DETOK_REMOVE_SPECIAL },
                             { HEARTH_TOK_ADD_SPECIAL, HEARTH_DETOK_UNPARSE_SPECIAL } };
    for (size_t k = 0; k < 3; k++) {
        hearth_token *ids = NULL;
        size_t n = 0, len = 0;
        char err[256], *full = NULL, out[128];
        assert_int_equal(hearth_tokenize(m, text, strlen(text), modes[k][0], &ids, &n, err, sizeof err), HEARTH_OK);
        assert_int_equal(hearth_detokenize(m, ids, n, modes[k][1], &full, &len, err, sizeof err), HEARTH_OK);
        if (k == 0) assert_string_equal(full, text);
        assert_int_equal(stream_all(m, modes[k][1], ids, n, out), len);
        assert_string_equal(out, full);
        hearth_free(full);
        hearth_free(ids);
    }
    hearth_model_free(m);
}

/* ---- ids out of range ------------------------------------------------------------------ */
static void test_out_of_range_ids(void **state) {
    (void)state;
    hearth_model *m = load_vocab("vocab/ggml-vocab-gpt-2.gguf");
    int32_t nv = hearth_model_n_vocab(m);
    assert_int_equal(nv, 50257);
    hearth_token bad[] = { 15496, nv };
    char *out = (char *)1, err[256] = "", buf[8];
    size_t len = 5, pn = 9;
    assert_int_equal(hearth_detokenize(m, bad, 2, 0, &out, &len, err, sizeof err), HEARTH_E_INVALID);
    assert_null(out);
    assert_non_null(strstr(err, "out of range"));
    bad[1] = -3;
    assert_int_equal(hearth_detokenize(m, bad, 2, 0, &out, &len, err, sizeof err), HEARTH_E_INVALID);
    assert_int_equal(hearth_token_piece(m, nv, 0, buf, sizeof buf, &pn), HEARTH_E_INVALID);
    assert_int_equal(hearth_token_piece(m, -1, 0, buf, sizeof buf, &pn), HEARTH_E_INVALID);
    hearth_model_free(m);
}

/* ---- end-of-generation ----------------------------------------------------------------- */
static hearth_token id_of(const hearth_model *m, const char *text) {
    return tok_map_get(&m->vocab->text_to_id, text, strlen(text), NULL, 0);
}

static void test_eog(void **state) {
    (void)state;
    hearth_model *m = load_vocab("vocab/ggml-vocab-qwen3.gguf");
    hearth_token im_end = id_of(m, "<|im_end|>"), eot = id_of(m, "<|endoftext|>"), hello = id_of(m, "hello");
    assert_true(im_end >= 0 && eot >= 0 && hello >= 0);
    assert_true(hearth_token_is_eog(m, im_end));
    assert_true(hearth_token_is_eog(m, eot));
    assert_true(hearth_token_is_eog(m, hearth_token_eos(m)));
    assert_false(hearth_token_is_eog(m, hello));
    assert_false(hearth_token_is_eog(m, -1));
    assert_false(hearth_model_add_bos(m));
    hearth_model_free(m);
    m = load_vocab("vocab/ggml-vocab-llama-bpe.gguf");
    assert_true(hearth_model_add_bos(m));  /* implied by the llama-bpe pre-tokenizer */
    assert_true(hearth_token_is_eog(m, id_of(m, "<|eot_id|>")));
    assert_true(hearth_token_is_eog(m, hearth_token_eos(m)));
    assert_int_equal(hearth_token_eot(m), id_of(m, "<|eot_id|>"));
    hearth_model_free(m);
}

/* ---- vocab loading errors -------------------------------------------------------------- */
/* Writes a tiny vocab GGUF; model/pre may be NULL to leave the key out. */
static void write_vocab(const char *path, const char *model, const char *pre) {
    hb_err e;
    hb_err_clear(&e);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    const char *toks[] = { "a", "b", "ab", "\xC4\xA0" };
    const char *merges[] = { "a b" };
    int32_t types[] = { 1, 1, 1, 1 };
    assert_int_equal(gguf_writer_add_str(w, "general.architecture", "llama", 5, &e), HEARTH_OK);
    if (model) assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.model", model, strlen(model), &e), HEARTH_OK);
    if (pre) assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre), &e), HEARTH_OK);
    assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4, &e), HEARTH_OK);
    assert_int_equal(gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_INT32, types, 4, &e), HEARTH_OK);
    assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1, &e), HEARTH_OK);
    assert_int_equal(gguf_writer_write(w, path, &e), HEARTH_OK);
    gguf_writer_free(w);
}

static int load_tmp(const char *model, const char *pre, tok_vocab **v, hb_err *e) {
    char path[] = "/tmp/hearth-tok-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_vocab(path, model, pre);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f, e), HEARTH_OK);
    int rc = tok_vocab_load(f, v, e);
    gguf_close(f);
    unlink(path);
    return rc;
}

static void test_vocab_load_errors(void **state) {
    (void)state;
    tok_vocab *v = NULL;
    hb_err e;
    hb_err_clear(&e);
    assert_int_equal(load_tmp("gpt2", "no-such-pre", &v, &e), HEARTH_E_UNSUPPORTED);
    assert_null(v);
    assert_non_null(strstr(e.msg, "no-such-pre"));
    hb_err_clear(&e);
    assert_int_equal(load_tmp("t5", NULL, &v, &e), HEARTH_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "t5"));
    hb_err_clear(&e);
    assert_int_equal(load_tmp(NULL, NULL, &v, &e), HEARTH_OK);  /* no tokenizer at all */
    assert_null(v);
    /* A tiny BPE vocab works end to end: "ab" merges, " " is the byte char U+0120. */
    hb_err_clear(&e);
    assert_int_equal(load_tmp("gpt2", "gpt-2", &v, &e), HEARTH_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(v, "ab a", 4, 0, &ids, &n, &e), HEARTH_OK);
    assert_int_equal(n, 3);  /* "ab", " " (U+0120), "a": " a" has no merge */
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 0);
    free(ids);
    tok_vocab_free(v);
}

int main(void) {
    const char *env = getenv("HEARTH_TEST_SHARED");
    snprintf(g_shared, sizeof g_shared, "%s", env && *env ? env : "../shared");
    if (access(g_shared, R_OK) != 0) {
        fprintf(stderr, "test_tokenizer: shared data not found at '%s' (set HEARTH_TEST_SHARED); it is required\n", g_shared);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_tokenize_rejects_invalid_utf8),
        cmocka_unit_test(test_stream_holds_partial_chars),
        cmocka_unit_test(test_stream_continuation),
        cmocka_unit_test(test_fim_tokens),
        cmocka_unit_test(test_stream_leading_space),
        cmocka_unit_test(test_out_of_range_ids),
        cmocka_unit_test(test_eog),
        cmocka_unit_test(test_vocab_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
