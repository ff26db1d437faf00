/* Unit tests for src/base: fp16/bf16 conversions, checked arithmetic, errors, file maps. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"

static void test_f16_roundtrip_all(void **state) {
    (void)state;
    /* every finite f16 converts to f32 and back exactly */
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        float f = hb_f16_to_f32((uint16_t)h);
        assert_int_equal(hb_f32_to_f16(f), h);
    }
}

static void test_f16_known_values(void **state) {
    (void)state;
    assert_true(hb_f16_to_f32(0x3c00) == 1.0f);
    assert_true(hb_f16_to_f32(0xc000) == -2.0f);
    assert_true(hb_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_int_equal(hb_f32_to_f16(65520.0f), 0x7c00);      /* overflow to inf */
    assert_int_equal(hb_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie to even */
    assert_int_equal(hb_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even: 0 */
    assert_true(isnan(hb_f16_to_f32(hb_f32_to_f16(NAN))));
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(hb_f32_to_bf16(1.0f), 0x3f80);
    assert_true(hb_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: round to even (1.0) */
    assert_int_equal(hb_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
}

static void test_checked_math(void **state) {
    (void)state;
    uint64_t r;
    assert_true(hb_mul_u64(1ull << 31, 1ull << 32, &r));
    assert_false(hb_mul_u64(1ull << 32, 1ull << 32, &r));
    assert_false(hb_add_u64(UINT64_MAX, 1, &r));
    assert_null(hb_malloc_n(SIZE_MAX / 2, 4));
}

static void test_err_keeps_first(void **state) {
    (void)state;
    hb_err e;
    hb_err_clear(&e);
    assert_int_equal(hb_fail(&e, HEARTH_E_FORMAT, "first %d", 1), HEARTH_E_FORMAT);
    hb_fail(&e, HEARTH_E_IO, "second");
    assert_string_equal(e.msg, "first 1");
    assert_int_equal(e.code, HEARTH_E_FORMAT);
    assert_string_equal(hearth_status_str(HEARTH_E_CONTEXT), "context full");
}

static void test_map_missing(void **state) {
    (void)state;
    hb_err e;
    hb_map m;
    hb_err_clear(&e);
    assert_int_equal(hb_map_file("/nonexistent/x.gguf", &m, &e), HEARTH_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
    hb_err_clear(&e);
    assert_int_equal(hb_map_file("/", &m, &e), HEARTH_E_IO);
}

/* Durations as Ollama writes them (the server's keep_alive, serve --keep-alive). */
static void test_duration(void **state) {
    (void)state;
    struct { const char *s; int64_t ns; } ok[] = {
        { "5m", 300000000000LL }, { "1h30m", 5400000000000LL }, { "250ms", 250000000LL }, { "30", 30000000000LL },
        { "1.5s", 1500000000LL }, { "2us", 2000 }, { "7ns", 7 }, { "0", 0 }, { "-1", -1 }, { "-5m", -1 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        hb_err e = { 0 };
        int64_t ns = 42;
        assert_int_equal(hb_parse_duration(ok[i].s, &ns, &e), HEARTH_OK);
        assert_true(ns == ok[i].ns);
    }
    const char *bad[] = { "", "soon", "5x", "1h-5m", "1h+5m", " 5m", "nan", "inf", "1e300h", "3000000h" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_err e = { 0 };
        int64_t ns = 42;
        assert_int_equal(hb_parse_duration(bad[i], &ns, &e), HEARTH_E_INVALID);
        assert_true(strlen(e.msg) > 0);
    }
    char msg[64];
    int64_t ns = 0;
    assert_int_equal(hearth_parse_duration("2h", &ns, msg, sizeof msg), HEARTH_OK);
    assert_true(ns == 7200000000000LL);
    assert_int_equal(hearth_parse_duration("2 h", &ns, msg, sizeof msg), HEARTH_E_INVALID);
    assert_non_null(strstr(msg, "2 h"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_roundtrip_all), cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_bf16), cmocka_unit_test(test_checked_math),
        cmocka_unit_test(test_err_keeps_first), cmocka_unit_test(test_map_missing),
        cmocka_unit_test(test_duration),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
