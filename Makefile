# hearth — build, test and demo.
#   make            build build/hearth and build/libhearth.a
#   make demo       install missing Debian packages, build, run the bundled model
#   make test       install missing Debian packages, build, run every test (plain, ASan+UBSan, fuzz)
#   make CUDA=1     also build the CUDA backend (needs nvcc)
.DEFAULT_GOAL := all
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
PKGS    := jansson libpcre2-8 libutf8proc libmicrohttpd libcurl libcrypto zlib libedit
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?=
CFLAGS  += -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -I$(BUILD)/gen -Wall -Wextra $(OPT) -g -pthread $(SAN) $(PKG_CFLAGS)
WERROR  ?= $(if $(CI),-Werror,)
CFLAGS  += $(WERROR)
LDLIBS  += $(PKG_LIBS) -lm -pthread $(SAN)

LIB_SRC := $(sort $(shell find src -name '*.c' -not -path 'src/cli/*' -not -path 'src/backend/cuda/*'))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c tests/golden/test_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TOOL_SRC := $(sort $(wildcard bench/*.c))
TOOL_BIN := $(patsubst bench/%.c,$(BUILD)/%,$(TOOL_SRC))
# The web chat page (web/*) is embedded into libhearth.a through a generated C file
# (a distinct object name: ar archives members by base name, src/server/assets.o exists).
WEB_SRC := $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg))
HOSTCC  ?= $(CC)
EXTRA_LIB_OBJ += $(BUILD)/obj/gen/assets_data.o

ifeq ($(CUDA),1)
include src/backend/cuda/cuda.mk
endif

.PHONY: all deps deps-test demo test test-plain test-asan fuzz test-cuda-build clean tools \
        test-builds test-build-plain test-build-asan fuzz-build
all: $(BUILD)/hearth $(BUILD)/libhearth.a tools

tools: $(TOOL_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Built without $(SAN)/CFLAGS: a host tool that only runs during the build.
$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -std=c17 -O2 -Wall -Wextra $(WERROR) $< -o $@

$(BUILD)/gen/assets.c: $(BUILD)/tools/embed $(WEB_SRC)
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ $(WEB_SRC)

$(BUILD)/obj/gen/assets_data.o: $(BUILD)/gen/assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@


# The archive remembers whether it was built with CUDA: switching CUDA=1 on or off in the
# same build directory rebuilds it (and relinks everything) instead of reusing the other one.
FLAVOUR := $(if $(filter 1,$(CUDA)),cuda,cpu)
$(shell mkdir -p $(BUILD) && [ "$$(cat $(BUILD)/.flavour 2>/dev/null)" = "$(FLAVOUR)" ] || echo $(FLAVOUR) > $(BUILD)/.flavour)

$(BUILD)/libhearth.a: $(LIB_OBJ) $(EXTRA_LIB_OBJ) $(BUILD)/.flavour
	@rm -f $@
	ar rcs $@ $(filter %.o,$^)

$(BUILD)/hearth: $(CLI_OBJ) $(BUILD)/libhearth.a
	$(CC) $(CFLAGS) $(CLI_OBJ) $(BUILD)/libhearth.a $(LDLIBS) $(EXTRA_LDLIBS) -o $@

$(BUILD)/%: bench/%.c $(BUILD)/libhearth.a
	$(CC) $(CFLAGS) $< $(BUILD)/libhearth.a $(LDLIBS) $(EXTRA_LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(BUILD)/libhearth.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(BUILD)/libhearth.a -lcmocka $(LDLIBS) $(EXTRA_LDLIBS) -o $@

deps:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/hearth run models/stories260K.gguf --raw "Once upon a time" -n 120 --temp 0.8 --seed 42 --verbose

# Everything: plain build + tests, the same under ASan+UBSan, short fuzz runs and the CUDA
# compile check. First the four builds (separate build directories) share one jobserver of
# JOBS slots (default: the number of cores), so the slow fuzz library compiles while the
# others build; then the three test phases run one after the other (each runs two programs
# at a time, see tests/run.sh), so tests never compete with compilers for the cores. Every
# phase runs even when an earlier one failed; the summary adds them up and any failure
# makes the exit status non-zero.
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_VARS = BUILD=build-asan OPT=-O1 SAN="$(ASAN_SAN)"
RESULTS  := build/test-results.txt build-asan/test-results.txt build-fuzz/test-results.txt build-cuda/test-results.txt
test: deps-test
	@rm -f $(RESULTS)
	@start=$$(date +%s); phase() { echo "== $$1: $$(($$(date +%s) - start)) s"; }; rc=0; \
	if ! $(MAKE) --no-print-directory -j$(JOBS) -Otarget test-builds; then \
	  echo "test: a build failed (see above; the fuzz and CUDA builds log to build-fuzz/ and build-cuda/)"; \
	  exit 1; fi; \
	phase builds; tests/run.sh build || rc=1; \
	phase "plain tests"; tests/run.sh build-asan || rc=1; \
	phase "asan tests"; tests/fuzz/run.sh build-fuzz run || rc=1; \
	phase fuzz; tests/summary.sh $(RESULTS) || rc=1; exit $$rc

# The builds of `make test` (cuda last: it is the only one that may be skipped).
test-builds: fuzz-build test-build-plain test-build-asan test-cuda-build
test-build-plain: all $(TEST_BIN)
test-build-asan:
	@$(MAKE) --no-print-directory $(ASAN_VARS) test-build-plain

test-plain: all $(TEST_BIN)
	@tests/run.sh $(BUILD)

test-asan:
	@$(MAKE) --no-print-directory $(ASAN_VARS) test-plain

fuzz: fuzz-build
	@tests/fuzz/run.sh build-fuzz run
fuzz-build:
	+@tests/fuzz/run.sh build-fuzz build

# CI has nvcc but no GPU: the CUDA backend must compile (warnings are errors under CI=1);
# it runs only on a GPU machine (scripts/cuda_check.sh).
# The CUDA build (CI has nvcc, no GPU) and its test programs: on a machine without a GPU
# their GPU cases skip and the host-side ones run (switch parsing, the step rewriter's rules).
CUDA_TESTS := $(patsubst tests/%.c,build-cuda/tests/%,$(sort $(wildcard tests/cuda/test_*.c)))
test-cuda-build:
	@mkdir -p build-cuda; if [ -x "$$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" ]; then \
	  if $(MAKE) --no-print-directory CUDA=1 BUILD=build-cuda all $(CUDA_TESTS) >build-cuda/build.log 2>&1; then \
	    echo "cuda build: ok"; p=1; f=0; \
	    for t in $(CUDA_TESTS); do \
	      if $$t >$$t.log 2>&1; then p=$$((p + 1)); else f=$$((f + 1)); echo "$$t: FAILED"; tail -20 $$t.log; fi; \
	    done; \
	    echo "cuda test programs without a GPU: $$((p - 1)) passed, $$f failed"; \
	    echo "$$p passed, $$f failed" >build-cuda/test-results.txt; [ $$f = 0 ]; \
	  else tail -30 build-cuda/build.log; echo "1 passed, 1 failed" | sed 's/1 passed/0 passed/' >build-cuda/test-results.txt; exit 1; fi; \
	else echo "cuda build: nvcc not found, skipped"; echo "0 passed, 0 failed" >build-cuda/test-results.txt; fi

clean:
	rm -rf build build-asan build-fuzz build-cuda

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
