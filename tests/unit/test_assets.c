/* Unit tests for the embedded web page (src/server/assets.c + the table tools/embed.c
 * generates): every file in web/ is served byte-for-byte at "/<name>" with the right
 * content type and an ETag that is the FNV-1a hash of the bytes on disk; "/" is the page;
 * nothing else resolves. Expected values come from the files in web/, read here. */
#include <dirent.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"
#include "server/assets.h"

static const char *expected_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return NULL;
    if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    return NULL; /* not embedded by the Makefile */
}

static void test_every_web_file_is_embedded(void **state) {
    (void)state;
    DIR *d = opendir("web");
    assert_non_null(d); /* tests run from the project root (tests/run.sh) */
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d)) != NULL) {
        const char *type = expected_type(e->d_name);
        if (e->d_name[0] == '.' || !type) continue;
        char path[512], url[512];
        snprintf(path, sizeof path, "web/%s", e->d_name);
        snprintf(url, sizeof url, "/%s", e->d_name);
        char *disk = NULL;
        size_t disk_len = 0;
        hb_err err = { 0 };
        assert_int_equal(hb_read_file(path, 1u << 20, &disk, &disk_len, &err), 0);

        const unsigned char *data;
        size_t len;
        const char *ctype, *etag;
        assert_true(server_asset_find(url, &data, &len, &ctype, &etag));
        assert_int_equal(len, disk_len);
        assert_memory_equal(data, disk, len);
        assert_int_equal(data[len], 0);
        assert_string_equal(ctype, type);

        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64, computed here independently */
        for (size_t i = 0; i < disk_len; i++) h = (h ^ (unsigned char)disk[i]) * 0x100000001b3ull;
        char want[32];
        snprintf(want, sizeof want, "\"%016" PRIx64 "\"", h);
        assert_string_equal(etag, want);
        free(disk);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 3);
    assert_int_equal((size_t)seen, server_asset_count);
}

static void test_root_is_index(void **state) {
    (void)state;
    const unsigned char *a, *b;
    size_t la, lb;
    const char *ta, *ea, *eb;
    assert_true(server_asset_find("/", &a, &la, &ta, &ea));
    assert_true(server_asset_find("/index.html", &b, &lb, NULL, &eb));
    assert_ptr_equal(a, b);
    assert_int_equal(la, lb);
    assert_string_equal(ta, "text/html; charset=utf-8");
    assert_string_equal(ea, eb);
    assert_non_null(strstr((const char *)a, "<!doctype html>"));
    /* query strings and fragments do not change what is served */
    assert_true(server_asset_find("/?x=1", &b, NULL, NULL, NULL));
    assert_ptr_equal(a, b);
    assert_true(server_asset_find("/app.js?v=2#top", NULL, NULL, NULL, NULL));
}

static void test_unknown_paths(void **state) {
    (void)state;
    static const char *bad[] = { "", "index.html", "/../Makefile", "/web/app.js", "/app.js/",
                                 "/APP.JS", "//", "/app", "/.", "/%2e%2e/etc/passwd", "/app.js\x01" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const unsigned char *data = (const unsigned char *)"x";
        size_t len = 7;
        const char *ct = "x", *etag = "x";
        assert_false(server_asset_find(bad[i], &data, &len, &ct, &etag));
        assert_null(data);
        assert_int_equal(len, 0);
        assert_null(ct);
        assert_null(etag);
    }
    assert_false(server_asset_find(NULL, NULL, NULL, NULL, NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_web_file_is_embedded),
        cmocka_unit_test(test_root_is_index),
        cmocka_unit_test(test_unknown_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
