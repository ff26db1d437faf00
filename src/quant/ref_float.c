/* ref_float.c — scalar reference for the unquantized types F32, F16 and BF16.
 *
 * "Quantizing" to F16/BF16 is IEEE round-to-nearest-even conversion; the dot products take
 * an activation row of the same type (traits vec_dot_type) and accumulate in double so the
 * reference is at least as accurate as any kernel tested against it.
 */
#include <string.h>

#include "base/base.h"
#include "quant/ref.h"

void quant_dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void quant_quant_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

float quant_dot_f32(const void *w, const void *x, int64_t n) {
    const float *a = w, *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)a[i] * (double)b[i];
    return (float)sum;
}

void quant_dequant_f16(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = hb_f16_to_f32(s[i]);
}

void quant_quant_f16(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = hb_f32_to_f16(src[i]);
}

float quant_dot_f16(const void *w, const void *x, int64_t n) {
    const uint16_t *a = w, *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)hb_f16_to_f32(a[i]) * (double)hb_f16_to_f32(b[i]);
    return (float)sum;
}

void quant_dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = hb_bf16_to_f32(s[i]);
}

void quant_quant_bf16(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = hb_f32_to_bf16(src[i]);
}

float quant_dot_bf16(const void *w, const void *x, int64_t n) {
    const uint16_t *a = w, *b = x;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)hb_bf16_to_f32(a[i]) * (double)hb_bf16_to_f32(b[i]);
    return (float)sum;
}
