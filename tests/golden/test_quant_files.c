/* Golden test: the reference dequantizers decode real GGUF files bit-exactly.
 *
 * ../shared/models/random/llama.<TYPE>.gguf were all quantized (by an independent tool)
 * from the weights stored in llama.F32.gguf. For every tensor of every file we check that
 * the F32 file has the same tensor (name, shape), dequantize both, and bound the relative
 * RMS difference by the tensor's type. Only a correct bit layout lands within the bound; a
 * wrong one (swapped nibbles, misplaced scale bits) gives errors near 100%. Mixed files
 * (Q3_K_M etc.) hold several types; each tensor is judged by its own type.
 *
 * On the same real blocks the dot product must agree with the dequantized values.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

/* Bound on relative RMS error per tensor type. Measured worst values on these files are
 * in the comments (they match what each type's bits per weight allow, see test_quant.c);
 * the bounds leave ~20% headroom. F32 tensors must be identical. */
static double type_bound(uint32_t t) {
    switch (t) {
    case QT_F32: return 0.0;
    case QT_F16: return 4.0e-4;    /* 0.00021 */
    case QT_BF16: return 3.0e-3;   /* 0.00168 */
    case QT_Q8_0: return 7.0e-3;   /* 0.00538 */
    case QT_Q4_0: return 0.105;    /* 0.0864 */
    case QT_Q4_1: return 0.095;    /* 0.0786 */
    case QT_Q5_0: return 0.055;    /* 0.0431 */
    case QT_Q5_1: return 0.048;    /* 0.0380 */
    case QT_Q2_K: return 0.36;     /* 0.2987 */
    case QT_Q3_K: return 0.19;     /* 0.1525 */
    case QT_Q4_K: return 0.088;    /* 0.0717 */
    case QT_Q5_K: return 0.045;    /* 0.0363 */
    case QT_Q6_K: return 0.022;    /* 0.0179 */
    case QT_IQ4_NL: return 0.093;  /* 0.0765 */
    case QT_IQ4_XS: return 0.093;  /* 0.0771 */
    default: return -1.0;          /* not expected in these files */
    }
}

static const char *k_files[] = { "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                                 "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS" };

#define QUANT_CMP_MAX 300000ull /* weights per type in test_quantizer_vs_files */

static char g_dir[1024];
static gguf_file *g_f32;

static int setup(void **state) {
    (void)state;
    const char *shared = getenv("HEARTH_TEST_SHARED");
    snprintf(g_dir, sizeof g_dir, "%s/models/random", shared ? shared : "../shared");
    char path[1200];
    snprintf(path, sizeof path, "%s/llama.F32.gguf", g_dir);
    hb_err err = { 0 };
    if (gguf_open(path, &g_f32, &err)) {
        fprintf(stderr, "test_quant_files: cannot open the reference model (%s); the shared data "
                        "directory (HEARTH_TEST_SHARED or ../shared) is required\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    gguf_close(g_f32);
    return 0;
}

static double rel_rms(const float *a, const float *ref, uint64_t n) {
    double e = 0, r = 0;
    for (uint64_t i = 0; i < n; i++) {
        e += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

/* Dequantizes a whole tensor (rows of ne[0]) into a new buffer; NULL on failure. */
static float *dequant_tensor(const gguf_tensor *t) {
    int64_t row = t->ne[0];
    size_t rs = quant_row_size(t->type, row);
    if (!rs || rs * (t->n_elements / (uint64_t)row) != t->size) return NULL;
    float *y = malloc(t->n_elements * sizeof *y);
    if (!y) return NULL;
    if (!quant_dequantize_row(t->type, t->data, y, (int64_t)t->n_elements)) {
        free(y);
        return NULL;
    }
    return y;
}

/* Dot of the tensor's first row with a synthetic activation, against the dequantized row. */
static void check_row_dot(const gguf_tensor *t, const float *wd) {
    const quant_traits *tr = quant_traits_of(t->type);
    int64_t n = t->ne[0];
    float *x = malloc((size_t)n * sizeof *x), *xd = malloc((size_t)n * sizeof *xd);
    uint8_t *xq = malloc(quant_row_size(tr->vec_dot_type, n));
    assert_true(x && xd && xq);
    for (int64_t i = 0; i < n; i++) x[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    assert_true(quant_quantize_row(tr->vec_dot_type, x, xq, n));
    assert_true(quant_dequantize_row(tr->vec_dot_type, xq, xd, n));
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
    float got = quant_vec_dot(t->type, t->data, xq, n);
    if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30))
        fail_msg("%s (%s): row dot %.9g vs dequantized %.9g", t->name.data, tr->name, got, ref);
    free(x), free(xd), free(xq);
}

static void check_file(const char *type_name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/llama.%s.gguf", g_dir, type_name);
    gguf_file *f = NULL;
    hb_err err = { 0 };
    if (gguf_open(path, &f, &err)) fail_msg("%s", err.msg);
    assert_int_equal(gguf_n_tensors(f), gguf_n_tensors(g_f32));
    double worst[QT_COUNT] = { 0 };
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const gguf_tensor *r = gguf_find_tensor(g_f32, t->name.data);
        if (!r) fail_msg("%s: tensor %s is not in llama.F32.gguf", type_name, t->name.data);
        assert_int_equal(r->type, QT_F32);
        assert_int_equal(t->n_dims, r->n_dims);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) assert_int_equal(t->ne[d], r->ne[d]);
        double bound = type_bound(t->type);
        if (bound < 0) fail_msg("%s: tensor %s has unexpected type %s", type_name, t->name.data, quant_type_name(t->type));
        float *y = dequant_tensor(t), *x = dequant_tensor(r);
        if (!y || !x) fail_msg("%s: cannot dequantize %s", type_name, t->name.data);
        double e = rel_rms(y, x, t->n_elements);
        if (e > worst[t->type]) worst[t->type] = e;
        if (e > bound)
            fail_msg("%s: tensor %s (%s) relative RMS error %.5f > bound %.5f", type_name, t->name.data,
                     quant_type_name(t->type), e, bound);
        check_row_dot(t, y);
        free(y), free(x);
    }
    for (int t = 0; t < QT_COUNT; t++)
        if (worst[t] > 0) print_message("llama.%-7s %-7s worst rel RMS %.5f\n", type_name, quant_type_name((uint32_t)t), worst[t]);
    gguf_close(f);
}

static void test_all_files(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_files / sizeof k_files[0]; i++) check_file(k_files[i]);
}

/* The F32 file against itself through the same path: zero error (sanity of the harness). */
static void test_f32_identity(void **state) {
    (void)state;
    for (uint64_t i = 0; i < gguf_n_tensors(g_f32); i++) {
        const gguf_tensor *t = gguf_tensor_at(g_f32, i);
        float *y = dequant_tensor(t);
        assert_non_null(y);
        assert_memory_equal(y, t->data, t->size);
        free(y);
    }
}

/* The bounds discriminate: the same Q4_0 bytes read with another 18-byte layout (IQ4_NL,
 * which only differs in how a nibble maps to a value) are far outside Q4_0's bound. */
static void test_wrong_layout_detected(void **state) {
    (void)state;
    char path[1200];
    snprintf(path, sizeof path, "%s/llama.Q4_0.gguf", g_dir);
    gguf_file *f = NULL;
    hb_err err = { 0 };
    if (gguf_open(path, &f, &err)) fail_msg("%s", err.msg);
    int checked = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f) && !checked; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type != QT_Q4_0) continue;
        const gguf_tensor *r = gguf_find_tensor(g_f32, t->name.data);
        assert_non_null(r);
        float *y = malloc(t->n_elements * sizeof *y), *x = dequant_tensor(r);
        assert_true(y && x);
        assert_true(quant_dequantize_row(QT_IQ4_NL, t->data, y, (int64_t)t->n_elements));
        double e = rel_rms(y, x, t->n_elements);
        print_message("Q4_0 bytes read as IQ4_NL: relative RMS error %.3f\n", e);
        assert_true(e > 0.5);
        free(y), free(x);
        checked = 1;
    }
    assert_true(checked);
    gguf_close(f);
}

/* Our reference quantizers against the independent tool that produced the files: on the
 * same real weights, each type's error must be close to (or below) the file's. Limited to
 * the first tensors of each type to keep the test fast. */
static void test_quantizer_vs_files(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof k_files / sizeof k_files[0]; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/llama.%s.gguf", g_dir, k_files[k]);
        gguf_file *f = NULL;
        hb_err err = { 0 };
        if (gguf_open(path, &f, &err)) fail_msg("%s", err.msg);
        double e_file = 0, e_ours = 0;
        uint64_t done = 0;
        char tname[16];
        snprintf(tname, sizeof tname, "%s", k_files[k]);
        size_t len = strlen(tname);
        if (len > 2 && strcmp(tname + len - 2, "_M") == 0) tname[len - 2] = 0; /* Q4_K_M: Q4_K */
        int main_type = quant_type_from_name(tname);
        assert_true(main_type >= 0);
        for (uint64_t i = 0; i < gguf_n_tensors(f) && done < QUANT_CMP_MAX; i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            if (t->type != (uint32_t)main_type) continue;
            const gguf_tensor *r = gguf_find_tensor(g_f32, t->name.data);
            float *y = dequant_tensor(t), *x = dequant_tensor(r), *z = malloc(t->n_elements * sizeof *z);
            uint8_t *q = malloc(t->size);
            assert_true(y && x && z && q);
            assert_true(quant_quantize_row(t->type, x, q, (int64_t)t->n_elements));
            assert_true(quant_dequantize_row(t->type, q, z, (int64_t)t->n_elements));
            e_file += pow(rel_rms(y, x, t->n_elements), 2) * t->n_elements;
            e_ours += pow(rel_rms(z, x, t->n_elements), 2) * t->n_elements;
            done += t->n_elements;
            free(y), free(x), free(z), free(q);
        }
        assert_true(done > 0);
        e_file = sqrt(e_file / done), e_ours = sqrt(e_ours / done);
        print_message("%-7s file %.5f ours %.5f (ratio %.3f, %llu weights)\n", tname, e_file, e_ours,
                      e_ours / e_file, (unsigned long long)done);
        if (e_ours > 1.05 * e_file)
            fail_msg("%s: our quantizer's error %.5f exceeds the file's %.5f by more than 5%%", tname, e_ours, e_file);
        gguf_close(f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_identity),
        cmocka_unit_test(test_all_files),
        cmocka_unit_test(test_wrong_layout_detected),
        cmocka_unit_test(test_quantizer_vs_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
