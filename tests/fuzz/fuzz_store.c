/* fuzz_store.c — libFuzzer target for the model store's parsers of untrusted text: the
 * Modelfile parser, manifest JSON and model names (the first byte picks the parser). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    hb_err e = { 0 };
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        store_modelfile mf;
        if (store_modelfile_parse(text, n, &mf, &e) == HEARTH_OK) store_modelfile_free(&mf);
        break;
    }
    case 1: {
        store_manifest m;
        if (store_manifest_parse(text, n, &m, &e) == HEARTH_OK) {
            char *s = store_manifest_dump(&m);
            free(s);
        }
        break;
    }
    default: {
        char *s = malloc(n + 1);
        if (!s) return 0;
        memcpy(s, text, n);
        s[n] = '\0';
        store_name nm;
        char disp[700];
        if (store_name_parse(s, &nm, &e) == HEARTH_OK) store_name_display(&nm, disp, sizeof disp);
        free(s);
        break;
    }
    }
    return 0;
}
