# cuda.mk — builds the CUDA backend into libhearth.a (included by the Makefile when CUDA=1).
#
# Kernels are src/backend/cuda/*.cu, compiled by nvcc for Hopper (sm_90 machine code) plus
# compute_90 PTX so that newer GPUs JIT-compile it. cudart is linked statically so that the
# hearth binary needs only the NVIDIA driver at run time. src/backend/select.c is built
# with HEARTH_CUDA=1 so that it offers the GPU.
NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
# Warnings are errors in CI (CI=1), as for the C code.
CUDA_WERROR := $(if $(CI),-Werror all-warnings,)
# Diagnostics: CUDA_TRACE=1 builds the decode-step tracer (cu_internal.cuh, docs/cuda.md).
CUDA_TRACE_FLAG := $(if $(CUDA_TRACE),-DHEARTH_CUDA_TRACE=1,)
NVCCFLAGS ?=
NVCCFLAGS += -std=c++17 -O3 $(CUDA_ARCH) -Iinclude -Isrc -Xcompiler -Wall,-Wextra,-fPIC \
             --expt-relaxed-constexpr $(CUDA_WERROR) $(CUDA_TRACE_FLAG)

CUDA_SRC := $(sort $(wildcard src/backend/cuda/*.cu))
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
# The be_ops adapter (C) needs the backend interface of the engine (src/backend/backend.h).
CUDA_CSRC := $(if $(wildcard src/backend/backend.h),$(sort $(wildcard src/backend/cuda/*.c)),)
CUDA_OBJ  += $(CUDA_CSRC:%.c=$(BUILD)/obj/%.o)
EXTRA_LIB_OBJ += $(CUDA_OBJ)
EXTRA_LDLIBS  += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -lstdc++
# The backend selector is compiled again with HEARTH_CUDA=1 under another object name and
# replaces the CPU-only one, so objects of the two kinds of build never mix.
LIB_OBJ := $(filter-out $(BUILD)/obj/src/backend/select.o,$(LIB_OBJ))
EXTRA_LIB_OBJ += $(BUILD)/obj/src/backend/cuda/select_cuda.o
$(BUILD)/obj/src/backend/cuda/select_cuda.o: src/backend/select.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DHEARTH_CUDA=1 -MMD -MP -c $< -o $@

# CUDA-only test programs (run on a GPU machine; they skip cleanly without one).
TEST_BIN += $(patsubst tests/%.c,$(BUILD)/tests/%,$(sort $(wildcard tests/cuda/test_*.c)))

$(BUILD)/obj/src/backend/cuda/%.o: src/backend/cuda/%.cu $(wildcard src/backend/cuda/*.h src/backend/cuda/*.cuh) src/quant/blocks.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# Kernel micro-benchmark (TinyLlama-1.1B matrix shapes).
$(BUILD)/cuda_bench_kernels: tests/cuda/bench_kernels.c $(BUILD)/libhearth.a
	$(CC) $(CFLAGS) $< $(BUILD)/libhearth.a $(LDLIBS) $(EXTRA_LDLIBS) -o $@
$(BUILD)/cuda_bench_model: tests/cuda/bench_model.c $(BUILD)/libhearth.a
	$(CC) $(CFLAGS) $< $(BUILD)/libhearth.a $(LDLIBS) $(EXTRA_LDLIBS) -o $@
tools: $(BUILD)/cuda_bench_kernels $(BUILD)/cuda_bench_model
