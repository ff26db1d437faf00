/* Unit tests for src/gguf: writer -> reader round trips of every value type, nested arrays
 * and tensors of several types, alignment; then hostile files built byte by byte in memory
 * (truncations at every offset, bad magic/version, huge counts and lengths, depth bombs,
 * overflowing dims, unknown types, misaligned/out-of-file/overlapping tensors, duplicate
 * names, bad general.alignment): each must fail with HEARTH_E_FORMAT and a message naming
 * the field, and never read out of bounds (the buffers are exact-size heap copies, so ASan
 * sees any overrun).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gguf/gguf.h"
#include "hearth.h"
#include "quant/quant.h"

/* ---- byte builder for hand-made files -------------------------------------------------- */
typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_zero(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) bb_put(b, "", 1);
}
static void bb_pad(bb *b, size_t a) {
    while (b->n % a) bb_put(b, "", 1);
}
static void bb_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_UINT32);
    bb_u32(b, v);
}
static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}

/* Opens an exact-size heap copy of the first n bytes (so ASan catches any overrun). */
static int open_copy(const uint8_t *data, size_t n, gguf_file **f, hb_err *e, uint8_t **copy) {
    *copy = malloc(n ? n : 1);
    assert_non_null(*copy);
    if (n) memcpy(*copy, data, n);
    hb_err_clear(e);
    return gguf_open_mem(*copy, n, "hostile.gguf", f, e);
}

/* Asserts that b fails with FORMAT and that the message contains every given fragment. */
static void expect_fail(bb *b, const char *frag1, const char *frag2) {
    gguf_file *f = (gguf_file *)1;
    hb_err e;
    uint8_t *copy;
    int rc = open_copy(b->p, b->n, &f, &e, &copy);
    if (rc != HEARTH_E_FORMAT || !strstr(e.msg, "hostile.gguf") || (frag1 && !strstr(e.msg, frag1)) ||
        (frag2 && !strstr(e.msg, frag2)))
        print_error("rc=%d msg='%s' (wanted '%s' and '%s')\n", rc, e.msg, frag1 ? frag1 : "", frag2 ? frag2 : "");
    assert_int_equal(rc, HEARTH_E_FORMAT);
    assert_int_equal(e.code, HEARTH_E_FORMAT);
    assert_null(f);
    assert_non_null(strstr(e.msg, "hostile.gguf"));
    if (frag1) assert_non_null(strstr(e.msg, frag1));
    if (frag2) assert_non_null(strstr(e.msg, frag2));
    free(copy);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- round trip ------------------------------------------------------------------------ */

static char g_tmp[256];

static const char *tmp_path(const char *stem) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/hearth-test-gguf-%ld-%s.gguf", (long)getpid(), stem);
    return g_tmp;
}

/* Test tensors: data filled with a byte pattern so the reader's pointers can be checked. */
typedef struct ttensor {
    const char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint8_t *data;
    size_t size;
} ttensor;

static ttensor g_t[] = {
    { "tok_embd.weight", QT_F32, 2, { 3, 5, 1, 1 }, NULL, 0 },
    { "norm.weight", QT_F16, 1, { 7, 1, 1, 1 }, NULL, 0 },
    { "blk.0.attn_q.weight", QT_Q8_0, 2, { 64, 3, 1, 1 }, NULL, 0 },
    { "blk.0.ffn_up.weight", QT_Q4_K, 3, { 256, 2, 2, 1 }, NULL, 0 },
    { "blk.0.x", QT_BF16, 4, { 2, 3, 4, 5 }, NULL, 0 },
};
#define N_T (sizeof g_t / sizeof g_t[0])

static void fill_tensors(void) {
    for (size_t i = 0; i < N_T; i++) {
        int64_t rows = g_t[i].ne[1] * g_t[i].ne[2] * g_t[i].ne[3];
        g_t[i].size = quant_row_size(g_t[i].type, g_t[i].ne[0]) * (size_t)rows;
        free(g_t[i].data);
        g_t[i].data = malloc(g_t[i].size);
        for (size_t j = 0; j < g_t[i].size; j++) g_t[i].data[j] = (uint8_t)(j * 7 + i * 31);
    }
}

static const char *const k_strs[] = { "<unk>", "<s>", "", "h\xc3\xa9llo" };

static void write_full(const char *path, uint32_t alignment, bool with_tensors) {
    hb_err e;
    hb_err_clear(&e);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    if (alignment) assert_int_equal(gguf_writer_set_alignment(w, alignment, &e), 0);
    assert_int_equal(gguf_writer_add_str(w, "general.architecture", "llama", 5, &e), 0);
    assert_int_equal(gguf_writer_add_u32(w, "k.u32", 4000000000u, &e), 0);
    assert_int_equal(gguf_writer_add_i32(w, "k.i32", -7, &e), 0);
    assert_int_equal(gguf_writer_add_u64(w, "k.u64", 1ull << 40, &e), 0);
    assert_int_equal(gguf_writer_add_f32(w, "k.f32", 0.25f, &e), 0);
    assert_int_equal(gguf_writer_add_bool(w, "k.bool", true, &e), 0);
    assert_int_equal(gguf_writer_add_str(w, "k.nul", "a\0b", 3, &e), 0);
    /* the remaining scalar types go through copy_kv */
    gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.key.data = "k.u8"; kv.key.len = 4; kv.val.type = GGUF_UINT8; kv.val.v.u64 = 200;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    kv.key.data = "k.i8"; kv.val.type = GGUF_INT8; kv.val.v.i64 = -100;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    kv.key.data = "k.u16"; kv.key.len = 5; kv.val.type = GGUF_UINT16; kv.val.v.u64 = 65000;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    kv.key.data = "k.i16"; kv.val.type = GGUF_INT16; kv.val.v.i64 = -30000;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    kv.key.data = "k.i64"; kv.val.type = GGUF_INT64; kv.val.v.i64 = INT64_MIN;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    kv.key.data = "k.f64"; kv.val.type = GGUF_FLOAT64; kv.val.v.f64 = 1e300;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    /* numeric arrays */
    int32_t ai[5] = { 1, -2, 3, -4, 5 };
    float af[3] = { 0.5f, -1.5f, 3.0f };
    uint8_t ab[2] = { 1, 0 };
    assert_int_equal(gguf_writer_add_arr(w, "a.i32", GGUF_INT32, ai, 5, &e), 0);
    assert_int_equal(gguf_writer_add_arr(w, "a.f32", GGUF_FLOAT32, af, 3, &e), 0);
    assert_int_equal(gguf_writer_add_arr(w, "a.bool", GGUF_BOOL, ab, 2, &e), 0);
    assert_int_equal(gguf_writer_add_arr(w, "a.empty", GGUF_UINT64, NULL, 0, &e), 0);
    assert_int_equal(gguf_writer_add_arr_str(w, "a.str", k_strs, NULL, 4, &e), 0);
    /* nested: [[1,2],[3],["x","y"]] built as values and copied */
    uint16_t n1[2] = { 1, 2 }, n2[1] = { 3 };
    gguf_str xs[2] = { { "x", 1 }, { "y", 1 } };
    gguf_value inner[3];
    memset(inner, 0, sizeof inner);
    inner[0].type = GGUF_ARRAY; inner[0].v.arr.elem = GGUF_UINT16; inner[0].v.arr.n = 2; inner[0].v.arr.raw = (const uint8_t *)n1;
    inner[1].type = GGUF_ARRAY; inner[1].v.arr.elem = GGUF_UINT16; inner[1].v.arr.n = 1; inner[1].v.arr.raw = (const uint8_t *)n2;
    inner[2].type = GGUF_ARRAY; inner[2].v.arr.elem = GGUF_STRING; inner[2].v.arr.n = 2; inner[2].v.arr.strs = xs;
    kv.key.data = "a.nested"; kv.key.len = 8; kv.val.type = GGUF_ARRAY;
    kv.val.v.arr.elem = GGUF_ARRAY; kv.val.v.arr.n = 3; kv.val.v.arr.arrs = inner;
    assert_int_equal(gguf_writer_copy_kv(w, &kv, &e), 0);
    /* writer refuses duplicates and bad tensors without recording them */
    assert_int_equal(gguf_writer_add_u32(w, "k.u32", 1, &e), HEARTH_E_INVALID);
    assert_non_null(strstr(e.msg, "k.u32"));
    if (with_tensors) {
        for (size_t i = 0; i < N_T; i++)
            assert_int_equal(gguf_writer_add_tensor(w, g_t[i].name, g_t[i].type, g_t[i].n_dims, g_t[i].ne, g_t[i].data, &e), 0);
        int64_t bad[1] = { 33 };
        hb_err_clear(&e);
        assert_int_equal(gguf_writer_add_tensor(w, "bad", QT_Q8_0, 1, bad, g_t[0].data, &e), HEARTH_E_INVALID);
        hb_err_clear(&e);
        assert_int_equal(gguf_writer_add_tensor(w, g_t[0].name, QT_F32, 1, bad, g_t[0].data, &e), HEARTH_E_INVALID);
    }
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
}

static void check_scalars(const gguf_file *f) {
    hb_err e;
    hb_err_clear(&e);
    uint32_t u32; int32_t i32; uint64_t u64; float f32; bool b; const gguf_str *s;
    assert_int_equal(gguf_get_u32(f, "k.u32", &u32, &e), 0); assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_i32(f, "k.i32", &i32, &e), 0); assert_int_equal(i32, -7);
    assert_int_equal(gguf_get_u64(f, "k.u64", &u64, &e), 0); assert_true(u64 == 1ull << 40);
    assert_int_equal(gguf_get_f32(f, "k.f32", &f32, &e), 0); assert_true(f32 == 0.25f);
    assert_int_equal(gguf_get_bool(f, "k.bool", &b, &e), 0); assert_true(b);
    assert_int_equal(gguf_get_str(f, "k.nul", &s, &e), 0);
    assert_int_equal(s->len, 3); assert_memory_equal(s->data, "a\0b", 4);
    assert_int_equal(gguf_get_u32(f, "k.u8", &u32, &e), 0); assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_i32(f, "k.i8", &i32, &e), 0); assert_int_equal(i32, -100);
    assert_int_equal(gguf_get_u32(f, "k.u16", &u32, &e), 0); assert_int_equal(u32, 65000);
    assert_int_equal(gguf_get_i32(f, "k.i16", &i32, &e), 0); assert_int_equal(i32, -30000);
    assert_true(gguf_find(f, "k.i64")->val.v.i64 == INT64_MIN);
    assert_int_equal(gguf_find(f, "k.i64")->val.type, GGUF_INT64);
    assert_true(gguf_find(f, "k.f64")->val.v.f64 == 1e300);
    assert_int_equal(e.code, 0);
    /* getter semantics: absent -> INVALID and err untouched; wrong type/range -> FORMAT */
    assert_int_equal(gguf_get_u32(f, "nope", &u32, &e), HEARTH_E_INVALID);
    assert_int_equal(e.code, 0);
    assert_int_equal(gguf_get_u32(f, "k.i32", &u32, &e), HEARTH_E_FORMAT);
    assert_non_null(strstr(e.msg, "k.i32"));
    hb_err_clear(&e);
    assert_int_equal(gguf_get_i32(f, "k.u32", &i32, &e), HEARTH_E_FORMAT);
    hb_err_clear(&e);
    assert_int_equal(gguf_get_str(f, "k.u32", &s, &e), HEARTH_E_FORMAT);
    assert_non_null(strstr(e.msg, "string"));
    hb_err_clear(&e);
    assert_int_equal(gguf_get_f32(f, "k.f64", &f32, &e), HEARTH_E_FORMAT);
    hb_err_clear(&e);
    assert_int_equal(gguf_get_bool(f, "k.u8", &b, &e), HEARTH_E_FORMAT);
}

static void check_arrays(const gguf_file *f) {
    hb_err e;
    hb_err_clear(&e);
    const gguf_array *a;
    assert_int_equal(gguf_get_arr(f, "a.i32", GGUF_INT32, &a, &e), 0);
    assert_int_equal(a->n, 5);
    assert_int_equal(gguf_arr_i64(a, 3), -4);
    assert_true(gguf_arr_f64(a, 4) == 5.0);
    assert_int_equal(gguf_get_arr(f, "a.f32", GGUF_VTYPE_COUNT, &a, &e), 0);
    assert_true(gguf_arr_f64(a, 1) == -1.5);
    assert_int_equal(gguf_get_arr(f, "a.bool", GGUF_BOOL, &a, &e), 0);
    assert_int_equal(gguf_arr_i64(a, 0), 1);
    assert_int_equal(gguf_arr_i64(a, 1), 0);
    assert_int_equal(gguf_get_arr(f, "a.empty", GGUF_UINT64, &a, &e), 0);
    assert_int_equal(a->n, 0);
    assert_int_equal(gguf_get_arr(f, "a.str", GGUF_STRING, &a, &e), 0);
    assert_int_equal(a->n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a->strs[i].len, strlen(k_strs[i]));
        assert_string_equal(a->strs[i].data, k_strs[i]);
    }
    assert_int_equal(gguf_get_arr(f, "a.str", GGUF_INT32, &a, &e), HEARTH_E_FORMAT);
    hb_err_clear(&e);
    assert_int_equal(gguf_get_arr(f, "a.nested", GGUF_ARRAY, &a, &e), 0);
    assert_int_equal(a->n, 3);
    assert_int_equal(a->arrs[0].v.arr.elem, GGUF_UINT16);
    assert_int_equal(a->arrs[0].v.arr.n, 2);
    assert_int_equal(gguf_arr_i64(&a->arrs[0].v.arr, 1), 2);
    assert_int_equal(gguf_arr_i64(&a->arrs[1].v.arr, 0), 3);
    assert_int_equal(a->arrs[2].v.arr.elem, GGUF_STRING);
    assert_string_equal(a->arrs[2].v.arr.strs[1].data, "y");
}

static void check_tensors(const gguf_file *f, uint64_t align) {
    assert_int_equal(gguf_n_tensors(f), N_T);
    assert_int_equal(gguf_alignment(f), align);
    assert_int_equal(gguf_data_offset(f) % align, 0);
    for (size_t i = 0; i < N_T; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_ptr_equal(gguf_find_tensor(f, g_t[i].name), t);
        assert_string_equal(t->name.data, g_t[i].name);
        assert_int_equal(t->type, g_t[i].type);
        assert_int_equal(t->n_dims, g_t[i].n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], g_t[i].ne[d]);
        assert_int_equal(t->n_elements, g_t[i].ne[0] * g_t[i].ne[1] * g_t[i].ne[2] * g_t[i].ne[3]);
        assert_int_equal(t->size, g_t[i].size);
        assert_int_equal(t->offset % align, 0);
        assert_memory_equal(t->data, g_t[i].data, g_t[i].size);
    }
    assert_null(gguf_find_tensor(f, "missing"));
}

static void roundtrip(uint32_t alignment) {
    const char *path = tmp_path("rt");
    hb_err e;
    gguf_file *f;
    fill_tensors();
    write_full(path, alignment, true);
    hb_err_clear(&e);
    assert_int_equal(gguf_open(path, &f, &e), 0);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_n_kv(f), 19 + (alignment ? 1 : 0));
    assert_string_equal(gguf_path(f), path);
    check_scalars(f);
    check_arrays(f);
    check_tensors(f, alignment ? alignment : GGUF_DEFAULT_ALIGNMENT);
    /* copy every kv into a new writer: the copy must read back identically */
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) assert_int_equal(gguf_writer_copy_kv(w, gguf_kv_at(f, i), &e), 0);
    const char *p2 = "/tmp/hearth-test-gguf-copy.gguf";
    char p2buf[256];
    snprintf(p2buf, sizeof p2buf, "%s.%ld", p2, (long)getpid());
    assert_int_equal(gguf_writer_write(w, p2buf, &e), 0);
    gguf_writer_free(w);
    gguf_file *g;
    assert_int_equal(gguf_open(p2buf, &g, &e), 0);
    check_scalars(g);
    check_arrays(g);
    assert_int_equal(gguf_alignment(g), gguf_alignment(f));
    gguf_close(g);
    gguf_close(f);
    unlink(p2buf);
    unlink(path);
}

static void test_roundtrip_default_alignment(void **state) { (void)state; roundtrip(0); }
static void test_roundtrip_alignment_64(void **state) { (void)state; roundtrip(64); }
static void test_roundtrip_alignment_8(void **state) { (void)state; roundtrip(8); }

static void test_writer_rejects(void **state) {
    (void)state;
    hb_err e;
    hb_err_clear(&e);
    gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_alignment(w, 3, &e), HEARTH_E_INVALID);
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_set_alignment(w, 0, &e), HEARTH_E_INVALID);
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_add_str(w, "general.alignment", "x", 1, &e), HEARTH_E_INVALID);
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_add_tensor(w, "t", 999, 1, (int64_t[]){ 1 }, "", &e), HEARTH_E_INVALID);
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_add_tensor(w, "t", QT_F32, 5, (int64_t[]){ 1, 1, 1, 1, 1 }, "", &e), HEARTH_E_INVALID);
    hb_err_clear(&e);
    assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &e), HEARTH_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x.gguf"));
    gguf_writer_free(w);
}

/* Every prefix of a valid file must be rejected cleanly. */
static void test_truncation_every_offset(void **state) {
    (void)state;
    const char *path = tmp_path("trunc");
    char *buf = NULL;
    size_t len = 0;
    hb_err e;
    hb_err_clear(&e);
    fill_tensors();
    write_full(path, 0, true);
    assert_int_equal(hb_read_file(path, 1 << 20, &buf, &len, &e), 0);
    unlink(path);
    assert_true(len > 500);
    gguf_file *f;
    uint8_t *copy;
    assert_int_equal(open_copy((uint8_t *)buf, len, &f, &e, &copy), 0);
    gguf_close(f);
    free(copy);
    for (size_t n = 0; n < len; n++) {
        int rc = open_copy((uint8_t *)buf, n, &f, &e, &copy);
        if (rc != HEARTH_E_FORMAT) print_error("prefix of %zu bytes: rc %d\n", n, rc);
        assert_int_equal(rc, HEARTH_E_FORMAT);
        assert_null(f);
        assert_non_null(strstr(e.msg, "hostile.gguf: "));
        free(copy);
    }
    free(buf);
}

/* ---- hostile headers and metadata ------------------------------------------------------- */

static void test_bad_magic_and_version(void **state) {
    (void)state;
    bb b = { 0 };
    bb_put(&b, "GGUX", 4); bb_u32(&b, 3); bb_u64(&b, 0); bb_u64(&b, 0);
    expect_fail(&b, "magic", NULL);
    bb_header(&b, 1, 0, 0);
    expect_fail(&b, "version", "version 1");
    bb_header(&b, 99, 0, 0);
    expect_fail(&b, "version", "99");
    bb_header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, "version", "big-endian");
    bb_put(&b, "GG", 2);
    expect_fail(&b, "magic", NULL);
}

static void test_huge_counts(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 3, 0, 1ull << 40);
    expect_fail(&b, "n_kv", "exceeds");
    bb_header(&b, 3, 1ull << 60, 0);
    expect_fail(&b, "n_tensors", "exceeds");
    /* under the caps but more than the file can hold */
    bb_header(&b, 2, 0, 60000);
    bb_zero(&b, 1000);
    expect_fail(&b, "n_kv", "cannot fit");
    bb_header(&b, 3, 900000, 0);
    bb_zero(&b, 1000);
    expect_fail(&b, "n_tensors", "cannot fit");
}

static void test_huge_string(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1ull << 62);
    bb_zero(&b, 100);
    expect_fail(&b, "key 0", "exceeds the cap");
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1000);
    bb_zero(&b, 100);
    expect_fail(&b, "key 0", "past the end");
    /* a string value */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.name");
    bb_u32(&b, GGUF_STRING);
    bb_u64(&b, 1ull << 40);
    bb_zero(&b, 16);
    expect_fail(&b, "key 0 'general.name'", "length");
}

static void test_huge_arrays(void **state) {
    (void)state;
    bb b = { 0 };
    /* 2^60 u8 in a small file: must fail before any allocation */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_UINT8); bb_u64(&b, 1ull << 60);
    bb_zero(&b, 1000);
    expect_fail(&b, "key 0 'a'", "array length");
    /* under the cap but past the end */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_UINT64); bb_u64(&b, 1u << 27);
    bb_zero(&b, 1000);
    expect_fail(&b, "key 0 'a'", "past the end");
    /* string array whose count cannot fit */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "tokenizer.ggml.tokens");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_STRING); bb_u64(&b, 1u << 27);
    bb_zero(&b, 1000);
    expect_fail(&b, "key 0 'tokenizer.ggml.tokens'", "cannot fit");
    /* array of arrays whose count cannot fit */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "n");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_ARRAY); bb_u64(&b, 1u << 20);
    bb_zero(&b, 1000);
    expect_fail(&b, "key 0 'n'", "cannot fit");
    /* unknown array element type */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, 77); bb_u64(&b, 1);
    bb_zero(&b, 100);
    expect_fail(&b, "key 0 'a'", "unknown array element type 77");
}

static void test_depth_bomb(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "bomb");
    bb_u32(&b, GGUF_ARRAY);
    for (int i = 0; i < 10000; i++) {
        bb_u32(&b, GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    expect_fail(&b, "key 0 'bomb'", "nested deeper");
    /* exactly the allowed depth passes */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "ok");
    bb_u32(&b, GGUF_ARRAY);
    for (int i = 0; i < GGUF_MAX_ARRAY_DEPTH - 1; i++) {
        bb_u32(&b, GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_UINT8);
    bb_u64(&b, 0);
    gguf_file *f;
    hb_err e;
    uint8_t *copy;
    assert_int_equal(open_copy(b.p, b.n, &f, &e, &copy), 0);
    gguf_close(f);
    free(copy);
    free(b.p);
}

static void test_unknown_value_type_and_dup_key(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "x.y");
    bb_u32(&b, 13);
    bb_u32(&b, 0);
    expect_fail(&b, "key 0 'x.y'", "unknown value type 13");
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_put(&b, "a\0b", 3);
    bb_u32(&b, GGUF_UINT8);
    bb_put(&b, "", 1);
    bb_zero(&b, 8);
    expect_fail(&b, "key 0 'a?b'", "NUL");
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "dup", 1);
    bb_kv_u32(&b, "dup", 2);
    expect_fail(&b, "key 1 'dup'", "duplicate key");
}

static void test_bad_alignment(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, "general.alignment", "power of two");
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 3);
    expect_fail(&b, "general.alignment", "power of two");
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 4); /* the format wants a multiple of 8 */
    expect_fail(&b, "general.alignment", "multiple of 8");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_UINT64);
    bb_u64(&b, 32);
    expect_fail(&b, "general.alignment", "uint32");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_STRING);
    bb_str(&b, "32");
    expect_fail(&b, "general.alignment", "uint32");
}

/* ---- hostile tensor directories --------------------------------------------------------- */

/* A file with one tensor described by (n_dims, ne, type, off) and `data` bytes of data. */
static void one_tensor(bb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off, size_t data) {
    bb_header(b, 3, 1, 0);
    bb_tensor(b, "blk.0.attn_q.weight", n_dims, ne, type, off);
    bb_pad(b, 32);
    bb_zero(b, data);
}

static void test_bad_dims(void **state) {
    (void)state;
    bb b = { 0 };
    uint64_t big[4] = { 1ull << 40, 1ull << 40, 1ull << 40, 1ull << 40 };
    one_tensor(&b, 4, big, QT_F32, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "overflows");
    uint64_t neg[2] = { 4, (uint64_t)-3 };
    one_tensor(&b, 2, neg, QT_F32, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "negative");
    uint64_t ok[4] = { 4, 1, 1, 1 };
    one_tensor(&b, 0, ok, QT_F32, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "n_dims 0");
    one_tensor(&b, 5, (uint64_t[]){ 1, 1, 1, 1, 1 }, QT_F32, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "n_dims 5");
    /* bytes overflow although the element count does not */
    uint64_t wide[2] = { 1ull << 31, 1ull << 31 };
    one_tensor(&b, 2, wide, QT_F64, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "size overflows");
    /* one row's bytes alone overflow (and would wrap to a tiny size) */
    uint64_t row[1] = { (1ull << 62) + 1 };
    one_tensor(&b, 1, row, QT_F32, 0, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "size overflows");
}

static void test_bad_tensor_type(void **state) {
    (void)state;
    bb b = { 0 };
    uint64_t ne[1] = { 32 };
    one_tensor(&b, 1, ne, 99, 0, 128);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "unknown tensor type 99");
    one_tensor(&b, 1, ne, 4, 0, 128); /* id 4 (old Q4_2) is unused */
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "unknown tensor type 4");
    uint64_t ne33[1] = { 33 };
    one_tensor(&b, 1, ne33, QT_Q8_0, 0, 128);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "block size 32");
}

static void test_bad_offsets(void **state) {
    (void)state;
    bb b = { 0 };
    uint64_t ne[1] = { 8 };
    one_tensor(&b, 1, ne, QT_F32, 4, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "offset 4 is not a multiple of the alignment 32");
    one_tensor(&b, 1, ne, QT_F32, 64, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "past the end of the file");
    one_tensor(&b, 1, ne, QT_F32, 1ull << 63, 64);
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "past the end of the file");
    one_tensor(&b, 1, ne, QT_F32, 0, 31); /* data section 1 byte short */
    expect_fail(&b, "tensor 0 'blk.0.attn_q.weight'", "past the end of the file");
    /* header ends, but the padded data section start is past the end */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, (uint64_t[]){ 0 }, QT_F32, 0);
    expect_fail(&b, "data section", "past the end");
    /* a valid one for contrast: exact fit */
    one_tensor(&b, 1, ne, QT_F32, 0, 32);
    gguf_file *f;
    hb_err e;
    uint8_t *copy;
    assert_int_equal(open_copy(b.p, b.n, &f, &e, &copy), 0);
    assert_int_equal(gguf_tensor_at(f, 0)->size, 32);
    gguf_close(f);
    free(copy);
    free(b.p);
}

static void test_overlap_and_duplicate_names(void **state) {
    (void)state;
    bb b = { 0 };
    uint64_t ne[1] = { 16 };
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne, QT_F32, 0);
    bb_tensor(&b, "b", 1, ne, QT_F32, 32);
    bb_pad(&b, 32);
    bb_zero(&b, 128);
    expect_fail(&b, "overlaps", "'a'");
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, ne, QT_F32, 0);
    bb_tensor(&b, "a", 1, ne, QT_F32, 64);
    bb_pad(&b, 32);
    bb_zero(&b, 128);
    expect_fail(&b, "tensor 1 'a'", "duplicate tensor name");
    bb_header(&b, 3, 1, 0);
    bb_u64(&b, 2);
    bb_put(&b, "t\0", 2);
    bb_u32(&b, 1); bb_u64(&b, 16); bb_u32(&b, QT_F32); bb_u64(&b, 0);
    bb_pad(&b, 32);
    bb_zero(&b, 64);
    expect_fail(&b, "tensor 0 't?'", "NUL");
}

/* ---- v2, text rendering and the public inspection API ------------------------------------ */

static void test_v2_and_text(void **state) {
    (void)state;
    bb b = { 0 };
    bb_header(&b, 2, 0, 4);
    bb_str(&b, "s");
    bb_u32(&b, GGUF_STRING);
    bb_str(&b, "q\"\\\n\x01\xc3\xa9");
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_STRING); bb_u64(&b, 3);
    bb_str(&b, "<unk>"); bb_str(&b, "<s>"); bb_str(&b, "\xff");
    bb_str(&b, "f");
    bb_u32(&b, GGUF_FLOAT32);
    float x = 0.1f;
    bb_put(&b, &x, 4);
    bb_str(&b, "n");
    bb_u32(&b, GGUF_ARRAY); bb_u32(&b, GGUF_ARRAY); bb_u64(&b, 2);
    bb_u32(&b, GGUF_INT8); bb_u64(&b, 2); bb_put(&b, "\xff\x02", 2);
    bb_u32(&b, GGUF_BOOL); bb_u64(&b, 1); bb_put(&b, "\x01", 1);
    gguf_file *f;
    hb_err e;
    uint8_t *copy;
    assert_int_equal(open_copy(b.p, b.n, &f, &e, &copy), 0);
    assert_int_equal(gguf_version(f), 2);
    char *t = gguf_value_text(&gguf_find(f, "s")->val, 8, 0, true);
    assert_string_equal(t, "\"q\\\"\\\\\\n\\u0001\xc3\xa9\"");
    free(t);
    t = gguf_value_text(&gguf_find(f, "s")->val, 8, 6, true); /* 6 would split the 2-byte char */
    assert_string_equal(t, "\"q\\\"\\\\\\n\\u0001\"... (7 bytes)");
    free(t);
    t = gguf_value_text(&gguf_find(f, "arr")->val, 2, 0, true);
    assert_string_equal(t, "[3 x string] [\"<unk>\", \"<s>\", ...]");
    free(t);
    t = gguf_value_text(&gguf_find(f, "f")->val, 8, 0, true);
    assert_string_equal(t, "0.1");
    free(t);
    t = gguf_value_text(&gguf_find(f, "n")->val, 8, 0, true);
    assert_string_equal(t, "[2 x array] [[-1, 2], [true]]");
    free(t);
    gguf_close(f);
    free(copy);
    /* through the public API: invalid UTF-8 becomes U+FFFD in JSON */
    const char *path = tmp_path("v2");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b.p, 1, b.n, fp), b.n);
    fclose(fp);
    hearth_gguf *g;
    char err[256];
    assert_int_equal(hearth_gguf_open(path, &g, err, sizeof err), HEARTH_OK);
    char *j = hearth_gguf_value_json(g, (uint64_t)hearth_gguf_find_key(g, "arr"), 10);
    assert_string_equal(j, "[\"<unk>\",\"<s>\",\"\xef\xbf\xbd\"]");
    hearth_free(j);
    j = hearth_gguf_value_json(g, (uint64_t)hearth_gguf_find_key(g, "n"), 10);
    assert_string_equal(j, "[[-1,2],[true]]");
    hearth_free(j);
    hearth_gguf_close(g);
    unlink(path);
    free(b.p);
}

static void test_public_inspect(void **state) {
    (void)state;
    const char *path = tmp_path("inspect");
    char err[256];
    hearth_gguf *g;
    fill_tensors();
    write_full(path, 64, true);
    assert_int_equal(hearth_gguf_open(path, &g, err, sizeof err), HEARTH_OK);
    assert_int_equal(hearth_gguf_version(g), 3);
    assert_int_equal(hearth_gguf_alignment(g), 64);
    assert_string_equal(hearth_gguf_get_str(g, "general.architecture"), "llama");
    int64_t v;
    assert_true(hearth_gguf_get_int(g, "k.i32", &v));
    assert_int_equal(v, -7);
    assert_false(hearth_gguf_get_int(g, "k.f32", &v));
    assert_int_equal(hearth_gguf_array_len(g, "a.str"), 4);
    assert_int_equal(hearth_gguf_array_len(g, "k.u32"), -1);
    int64_t i = hearth_gguf_find_key(g, "a.str");
    assert_true(i >= 0);
    assert_string_equal(hearth_gguf_key(g, (uint64_t)i), "a.str");
    assert_string_equal(hearth_gguf_type_name(g, (uint64_t)i), "array");
    const char *elem;
    uint64_t n;
    assert_true(hearth_gguf_array_info(g, (uint64_t)i, &elem, &n));
    assert_string_equal(elem, "string");
    assert_int_equal(n, 4);
    char *j = hearth_gguf_value_json(g, (uint64_t)i, 2);
    assert_string_equal(j, "[\"<unk>\",\"<s>\"]");
    hearth_free(j);
    j = hearth_gguf_value_json(g, (uint64_t)hearth_gguf_find_key(g, "k.nul"), 2);
    assert_string_equal(j, "\"a\\u0000b\"");
    hearth_free(j);
    assert_int_equal(hearth_gguf_n_tensors(g), N_T);
    hearth_gguf_tensor_info ti;
    assert_int_equal(hearth_gguf_tensor(g, 2, &ti), HEARTH_OK);
    assert_string_equal(ti.name, g_t[2].name);
    assert_string_equal(ti.type_name, "Q8_0");
    assert_int_equal(ti.offset % 64, 0);
    assert_int_equal(hearth_gguf_tensor(g, N_T, &ti), HEARTH_E_INVALID);
    assert_int_equal(hearth_gguf_find_key(g, "nope"), -1);
    hearth_gguf_close(g);
    unlink(path);
    assert_int_equal(hearth_gguf_open(path, &g, err, sizeof err), HEARTH_E_IO);
    assert_null(g);
    assert_non_null(strstr(err, path));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_default_alignment),
        cmocka_unit_test(test_roundtrip_alignment_64),
        cmocka_unit_test(test_roundtrip_alignment_8),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_truncation_every_offset),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_huge_string),
        cmocka_unit_test(test_huge_arrays),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_unknown_value_type_and_dup_key),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_bad_tensor_type),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_overlap_and_duplicate_names),
        cmocka_unit_test(test_v2_and_text),
        cmocka_unit_test(test_public_inspect),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (size_t i = 0; i < N_T; i++) free(g_t[i].data);
    return rc;
}
