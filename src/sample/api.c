/* api.c — public constructor of the sampler (needs the model only for n_vocab). */
#include <stdio.h>

#include "model/model.h"
#include "sample/sample.h"

hearth_sampler *hearth_sampler_new(const hearth_model *m, const hearth_sampler_params *p,
                                   char *errbuf, size_t errlen) {
    hb_err e;
    hb_err_clear(&e);
    hearth_sampler *s = sample_new(m ? hearth_model_n_vocab(m) : 0, p, &e);
    if (!s && errbuf && errlen) snprintf(errbuf, errlen, "%s", e.msg);
    return s;
}
