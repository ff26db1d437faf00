/* f16stat.c — how compressible a model's F16 weights are without loss (a tool, not a test).
 *
 *   build/f16stat FILE.gguf [FILE.gguf ...]
 *
 * For every F16 tensor of each file together, prints the Shannon entropy (bits per weight)
 * of the whole 16-bit value, of its 5-bit exponent field and of its low byte, and the size
 * two simple fixed-length codes would reach: one exponent width per group of 32 weights
 * (the group's base exponent and width in one header byte; sign and mantissa kept raw),
 * and a 3-bit exponent code over the 7 most frequent consecutive exponents with an escape
 * (code 7; each escaped exponent 5 bits in a list, 6 bits of escape count per group), and
 * the saving of each against 16 bits. The entropy is the bound of any lossless code
 * of the values one at a time; docs/performance.md "Session 27" compares it with what the
 * F16 decode step would gain from reading fewer bytes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

enum { GROUP = 32 };

typedef struct f16_counts {
    double value[65536]; /* occurrences of each 16-bit pattern */
    double width_bits;   /* exponent-code bits of the per-group-width code, headers included */
    uint64_t n;          /* weights counted */
} f16_counts;

/* Entropy in bits of a histogram of `bins` counts summing to n. */
static double entropy(const double *h, size_t bins, double n) {
    double e = 0;
    for (size_t i = 0; i < bins; i++)
        if (h[i] > 0) e -= h[i] / n * log2(h[i] / n);
    return e;
}

/* Adds one tensor's weights (raw little-endian F16) to the counts. */
static void count_tensor(f16_counts *c, const uint8_t *data, uint64_t n) {
    for (uint64_t g = 0; g < n; g += GROUP) {
        int lo = 31, hi = 0;
        uint64_t end = g + GROUP < n ? g + GROUP : n;
        for (uint64_t i = g; i < end; i++) {
            uint16_t v = (uint16_t)(data[2 * i] | data[2 * i + 1] << 8);
            int e = (v >> 10) & 31;
            c->value[v] += 1;
            lo = e < lo ? e : lo, hi = e > hi ? e : hi;
        }
        int w = 0;
        while ((1 << w) <= hi - lo) w++;
        c->width_bits += (double)w * (double)(end - g) + 8; /* 5-bit base + 3-bit width */
    }
    c->n += n;
}

/* Counts every F16 tensor of one file; 0, or 1 after printing why not. */
static int count_file(f16_counts *c, const char *path) {
    gguf_file *f = NULL;
    hb_err err;
    hb_err_clear(&err);
    if (gguf_open(path, &f, &err)) {
        fprintf(stderr, "f16stat: %s\n", err.msg);
        return 1;
    }
    uint64_t tensors = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type != QT_F16 || !t->data || t->size < 2 * t->n_elements) continue;
        count_tensor(c, t->data, t->n_elements);
        tensors++;
    }
    fprintf(stderr, "f16stat: %s: %" PRIu64 " F16 tensors\n", path, tensors);
    gguf_close(f);
    return 0;
}

static void report(const f16_counts *c) {
    static double expo[32], low[256];
    memset(expo, 0, sizeof expo);
    memset(low, 0, sizeof low);
    for (int v = 0; v < 65536; v++) expo[(v >> 10) & 31] += c->value[v], low[v & 255] += c->value[v];
    double n = (double)c->n, h16 = entropy(c->value, 65536, n), he = entropy(expo, 32, n);
    double wid = 11.0 + c->width_bits / n, best = 0;
    for (int b = 0; b + 7 <= 32; b++) { /* the window of 7 exponents that covers the most weights */
        double in = 0;
        for (int e = b; e < b + 7; e++) in += expo[e];
        best = in > best ? in : best;
    }
    double esc = 11.0 + 3.0 + 5.0 * (n - best) / n + 6.0 / GROUP;
    printf("F16 weights            %" PRIu64 "\n", c->n);
    printf("entropy, 16-bit value  %6.3f bits  (a lossless code saves at most %4.1f%%)\n", h16, 100 * (1 - h16 / 16));
    printf("entropy, exponent      %6.3f bits of 5\n", he);
    printf("entropy, low byte      %6.3f bits of 8\n", entropy(low, 256, n));
    printf("per-group width (%d)   %6.3f bits  (saves %4.1f%%)\n", GROUP, wid, 100 * (1 - wid / 16));
    printf("3-bit code + escapes   %6.3f bits  (saves %4.1f%%; %.2f%% of the weights escaped)\n", esc,
           100 * (1 - esc / 16), 100 * (n - best) / n);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: f16stat FILE.gguf [FILE.gguf ...]\n");
        return argc < 2 ? 2 : 0;
    }
    f16_counts *c = calloc(1, sizeof *c);
    int rc = c ? 0 : 1;
    for (int i = 1; i < argc && !rc; i++) rc = count_file(c, argv[i]);
    if (!rc && c->n == 0) {
        fprintf(stderr, "f16stat: no F16 tensors\n");
        rc = 1;
    }
    if (!rc) report(c);
    free(c);
    return rc;
}
