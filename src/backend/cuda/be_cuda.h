/* be_cuda.h — the CUDA implementation of the backend interface (src/backend/backend.h).
 * Linked only in `make CUDA=1` builds; src/backend/select.c hides the difference. */
#ifndef HEARTH_BE_CUDA_H
#define HEARTH_BE_CUDA_H

#include "backend/backend.h"

/* A backend on GPU `device` (-1: HEARTH_CUDA_DEVICE, default 0). HEARTH_E_UNSUPPORTED with a
 * clear message when no usable GPU is present (the caller falls back to the CPU).
 * Caller frees with be_cuda_free. */
int be_cuda_new(int device, be_ctx **out, hb_err *err);
void be_cuda_free(be_ctx *b);

#endif
