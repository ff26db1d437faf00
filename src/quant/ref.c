/* ref.c — dispatch of quant.h's row-level reference entry points to the per-type scalar
 * functions in ref_*.c. A type absent from this table has no reference implementation and
 * the entry points report false / 0. */
#include "quant/quant.h"
#include "quant/ref.h"

typedef struct ref_entry {
    quant_dequant_fn dequant;
    quant_quant_fn quant;
    quant_dot_fn dot;
} ref_entry;

#define R(id, t) [id] = { quant_dequant_##t, quant_quant_##t, quant_dot_##t }

static const ref_entry k_ref[QT_COUNT] = {
    R(QT_F32, f32),   R(QT_F16, f16),   R(QT_BF16, bf16),
    R(QT_Q4_0, q4_0), R(QT_Q4_1, q4_1), R(QT_Q5_0, q5_0), R(QT_Q5_1, q5_1),
    R(QT_Q8_0, q8_0), R(QT_Q8_1, q8_1),
    R(QT_Q2_K, q2_K), R(QT_Q3_K, q3_K), R(QT_Q4_K, q4_K), R(QT_Q5_K, q5_K), R(QT_Q6_K, q6_K),
    R(QT_Q8_K, q8_K), R(QT_IQ4_NL, iq4_nl), R(QT_IQ4_XS, iq4_xs),
};

static const ref_entry *ref_of(uint32_t t) {
    return t < QT_COUNT ? &k_ref[t] : NULL;
}

bool quant_dequantize_row(uint32_t t, const void *src, float *dst, int64_t n) {
    const ref_entry *e = ref_of(t);
    if (!e || !e->dequant || !quant_row_ok(t, n)) return false;
    if (n > 0) e->dequant(src, dst, n);
    return true;
}

bool quant_quantize_row(uint32_t t, const float *src, void *dst, int64_t n) {
    const ref_entry *e = ref_of(t);
    if (!e || !e->quant || !quant_row_ok(t, n)) return false;
    if (n > 0) e->quant(src, dst, n);
    return true;
}

float quant_vec_dot(uint32_t t, const void *w, const void *x, int64_t n) {
    const ref_entry *e = ref_of(t);
    if (!e || !e->dot || !quant_row_ok(t, n) || n == 0) return 0.0f;
    return e->dot(w, x, n);
}
