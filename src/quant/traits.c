/* traits.c — the table of GGUF tensor types: block sizes and byte sizes for every id a
 * file may carry, whether hearth computes with it, and its activation format. */
#include <strings.h>
#include <string.h>

#include "quant.h"

#define T(id, nm, bs, ts, comp, vdt) [id] = { nm, bs, ts, comp, vdt }

static const quant_traits k_traits[QT_COUNT] = {
    T(QT_F32, "F32", 1, 4, true, QT_F32),
    T(QT_F16, "F16", 1, 2, true, QT_F16),
    T(QT_BF16, "BF16", 1, 2, true, QT_BF16),
    T(QT_Q4_0, "Q4_0", 32, 18, true, QT_Q8_0),
    T(QT_Q4_1, "Q4_1", 32, 20, true, QT_Q8_1),
    T(QT_Q5_0, "Q5_0", 32, 22, true, QT_Q8_0),
    T(QT_Q5_1, "Q5_1", 32, 24, true, QT_Q8_1),
    T(QT_Q8_0, "Q8_0", 32, 34, true, QT_Q8_0),
    T(QT_Q8_1, "Q8_1", 32, 36, false, QT_Q8_1),
    T(QT_Q2_K, "Q2_K", 256, 84, true, QT_Q8_K),
    T(QT_Q3_K, "Q3_K", 256, 110, true, QT_Q8_K),
    T(QT_Q4_K, "Q4_K", 256, 144, true, QT_Q8_K),
    T(QT_Q5_K, "Q5_K", 256, 176, true, QT_Q8_K),
    T(QT_Q6_K, "Q6_K", 256, 210, true, QT_Q8_K),
    T(QT_Q8_K, "Q8_K", 256, 292, false, QT_Q8_K),
    T(QT_IQ2_XXS, "IQ2_XXS", 256, 66, false, QT_Q8_K),
    T(QT_IQ2_XS, "IQ2_XS", 256, 74, false, QT_Q8_K),
    T(QT_IQ3_XXS, "IQ3_XXS", 256, 98, false, QT_Q8_K),
    T(QT_IQ1_S, "IQ1_S", 256, 50, false, QT_Q8_K),
    T(QT_IQ4_NL, "IQ4_NL", 32, 18, true, QT_Q8_0),
    T(QT_IQ3_S, "IQ3_S", 256, 110, false, QT_Q8_K),
    T(QT_IQ2_S, "IQ2_S", 256, 82, false, QT_Q8_K),
    T(QT_IQ4_XS, "IQ4_XS", 256, 136, true, QT_Q8_K),
    T(QT_I8, "I8", 1, 1, false, QT_I8),
    T(QT_I16, "I16", 1, 2, false, QT_I16),
    T(QT_I32, "I32", 1, 4, false, QT_I32),
    T(QT_I64, "I64", 1, 8, false, QT_I64),
    T(QT_F64, "F64", 1, 8, false, QT_F64),
    T(QT_IQ1_M, "IQ1_M", 256, 56, false, QT_Q8_K),
    T(QT_TQ1_0, "TQ1_0", 256, 54, false, QT_Q8_K),
    T(QT_TQ2_0, "TQ2_0", 256, 66, false, QT_Q8_K),
    T(QT_MXFP4, "MXFP4", 32, 17, false, QT_Q8_0),
};

const quant_traits *quant_traits_of(uint32_t t) {
    return (t < QT_COUNT && k_traits[t].name) ? &k_traits[t] : NULL;
}

const char *quant_type_name(uint32_t t) {
    const quant_traits *tr = quant_traits_of(t);
    return tr ? tr->name : "?";
}

int quant_type_from_name(const char *name) {
    for (int t = 0; t < QT_COUNT; t++) {
        if (k_traits[t].name && strcasecmp(k_traits[t].name, name) == 0) return t;
    }
    return -1;
}

bool quant_row_ok(uint32_t t, int64_t n) {
    const quant_traits *tr = quant_traits_of(t);
    return tr && n >= 0 && n % tr->blck_size == 0;
}

size_t quant_row_size(uint32_t t, int64_t n) {
    const quant_traits *tr = quant_traits_of(t);
    if (!tr || n < 0 || n % tr->blck_size) return 0;
    return (size_t)(n / tr->blck_size) * tr->type_size;
}
