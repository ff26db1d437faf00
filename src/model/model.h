/* model.h — the hearth_model handle: the mapped GGUF file, the vocab, hyper-parameters and
 * weight slots. Immutable after hearth_model_load returns; shared by contexts and threads.
 *
 * Ownership: the model owns gguf (and so the mapping every weight points into), vocab and
 * everything hanging off `arch_data`.
 */
#ifndef HEARTH_MODEL_H
#define HEARTH_MODEL_H

#include "backend/backend.h"
#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

struct hearth_model {
    char *path;             /* as given to load */
    char *name;             /* general.name or file stem */
    char *arch_name;        /* general.architecture ("" if absent) */
    gguf_file *gguf;
    tok_vocab *vocab;       /* NULL when the file has no tokenizer */
    hb_log log;
    hearth_model_params params;
    char *ftype_name;       /* dominant weight type, e.g. "Q4_K_M" */
    uint64_t n_params;      /* sum of tensor elements */
    uint64_t size_bytes;    /* sum of tensor bytes */
    /* Set by the architecture layer (src/arch) when weights are loaded (not vocab_only):
     * hyper-parameters and weight slots, opaque here. */
    struct model_hparams *hp;
    void *arch_data;
    void (*arch_free)(struct hearth_model *m);
    /* The accelerator's copies of the weights, shared by this model's contexts (internally
     * locked: the one part of a loaded model that changes, and only by adding copies). */
    be_share_slot share;
};

#endif
