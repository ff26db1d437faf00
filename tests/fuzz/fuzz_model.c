/* libFuzzer target for model loading and the forward pass (seeds: tests/fuzz/seeds/model,
 * tiny F32 models of each decoder layout made by tests/fuzz/gen_model_seeds.c). The input is written
 * to a temporary file (removed right after the load) and loaded with hearth_model_load; when it loads, a context is made
 * and a few tokens decoded, so any hyper-parameter or shape the loader lets through is
 * exercised by the arithmetic that trusts it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hearth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/hearth_fuzz_model_%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    hearth_model *m = NULL;
    char err[256];
    hearth_model_params mp = hearth_model_default_params();
    int lrc = hearth_model_load(path, &mp, &m, err, sizeof err);
    unlink(path); /* a loaded model keeps its mapping; runs must not leave files behind */
    if (lrc == HEARTH_OK) {
        hearth_context_params cp = hearth_context_default_params();
        cp.n_ctx = 16;
        cp.n_batch = 8;
        cp.n_threads = 1;
        cp.n_seq_max = 2;
        hearth_context *c = NULL;
        if (hearth_context_new(m, &cp, &c, err, sizeof err) == HEARTH_OK) {
            int32_t nv = hearth_model_n_vocab(m);
            hearth_batch b = hearth_batch_init(8);
            for (int i = 0; i < 6; i++) hearth_batch_add(&b, (i * 7) % (nv > 0 ? nv : 1), i / 2, i % 2, i >= 4);
            if (hearth_decode(c, &b) == HEARTH_OK) {
                volatile float s = hearth_get_logits(c, 5)[nv - 1];
                (void)s;
            }
            hearth_batch_free(&b);
            hearth_context_free(c);
        }
        hearth_model_free(m);
    }
    return 0;
}
