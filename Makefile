# bex: one non-recursive Makefile. `make help` lists the targets.

SAN ?= 0
WERROR ?= 1
ifeq ($(SAN),1)
B := build/san
else
B := build
endif

CC ?= cc
PKGS := libsecp256k1 lmdb libuv libprotobuf-c libssl libcrypto jansson
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser

CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes \
          -Wno-missing-field-initializers -fno-strict-aliasing
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifeq ($(SAN),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DBEX_CHECKS
LDFLAGS += -fsanitize=address,undefined
endif
CPPFLAGS := -Icommon -Iconsensus -Icontracts -Inode -I$(B)/proto -MMD -MP

MAINS := node/bexd.c node/bexctl.c
BYZ_ONLY := node/node_byz.c
LIB_SRC := $(filter-out $(MAINS) $(BYZ_ONLY),$(wildcard common/*.c consensus/*.c contracts/*.c node/*.c))
LIB_OBJ := $(B)/proto/bex.pb-c.o $(LIB_SRC:%.c=$(B)/%.o)
LIB := $(B)/libbex.a

UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(UNIT_SRC:%.c=$(B)/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:%.c=$(B)/%)
SIM_SRC := $(wildcard tests/sim/*.c)
SIM_BIN := $(B)/tests/sim/sim
SEEDS ?= 200

.SECONDARY:
.PHONY: all test sim demo bench bench-scale soak fuzz lint clean deps help
all: deps $(B)/bexd $(B)/bexctl $(B)/bexd-byz

help:
	@echo "make            build build/bexd, build/bexctl, build/libbex.a"
	@echo "make test       unit, simulator and integration tests (SAN=1: sanitizers)"
	@echo "make sim SEEDS=N  the consensus simulator, N seeds per configuration"
	@echo "make demo       a 4-agency local network and the sharing scenarios"
	@echo "make lint       boundary checks for consensus/ and contracts/"
	@echo "make bench      throughput and latency of a 4-node network (bench-scale: 4, 7, 10)"
	@echo "make soak       crash soak: SIGKILL and restart nodes under load (SOAK_SECONDS)"
	@echo "make fuzz       libFuzzer on every target (FUZZ_SECONDS, FUZZ_TARGETS)"
	@echo "make clean      remove build/"

deps:
	@./scripts/deps.sh

$(B)/proto/bex.pb-c.c $(B)/proto/bex.pb-c.h: proto/bex.proto
	@mkdir -p $(B)/proto
	protoc-c --c_out=$(B)/proto -Iproto proto/bex.proto

$(B)/proto/bex.pb-c.o: $(B)/proto/bex.pb-c.c
	$(CC) $(filter-out -Werror -Wshadow,$(CFLAGS)) $(CPPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(B)/%.o: %.c | $(B)/proto/bex.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/bexd: $(B)/node/bexd.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

$(B)/bexctl: $(B)/node/bexctl.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

# bexd-byz: a deliberately faulty bexd for the byzantine tests (node/node_byz.h).
# The files with BEX_BYZANTINE hooks are compiled a second time with the
# define into $(B)/byz/ and linked ahead of libbex.a, so the linker takes
# them instead of the library's honest copies; node_byz.c is in no library.
# bexd and libbex.a therefore contain none of the faulty code. The hooks add
# no fields to shared structs, so both copies agree on every layout.
BYZ_SRC := node/node.c node/p2p.c $(BYZ_ONLY)
BYZ_OBJ := $(BYZ_SRC:%.c=$(B)/byz/%.o)

$(B)/byz/%.o: %.c | $(B)/proto/bex.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DBEX_BYZANTINE $(CPPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(B)/bexd-byz: $(B)/node/bexd.o $(BYZ_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

$(B)/tests/unit/%: $(B)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka -lm -lpthread

$(B)/tests/tools/%: $(B)/tests/tools/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

$(SIM_BIN): $(SIM_SRC:%.c=$(B)/%.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

test: all $(UNIT_BIN) $(TOOL_BIN) $(if $(SIM_SRC),$(SIM_BIN))
	@B=$(B) SEEDS=$(SEEDS) ./scripts/run-tests.sh

sim: deps $(SIM_BIN)
	$(SIM_BIN) --seeds $(SEEDS)

demo: all
	@B=$(B) ./testnet/demo-all.sh

# ---- soak (scripts/soak.sh): the crash soak, SOAK_SECONDS long (default 600)
SOAK_SECONDS ?= 600
soak: all $(B)/tests/tools/soakload
	@B=$(B) SOAK_SECONDS=$(SOAK_SECONDS) ./scripts/soak.sh
# ---- end soak

lint:
	@./scripts/lint.sh

# ---- bench (owner: scripts/bench.sh, docs/bench.md) ----
# make bench: a fresh 4-node testnet per run, loaded by bexbench; micro prints
# the bound of this machine. make bench-scale: the same for 4, 7 and 10 nodes.
# Knobs (environment): BENCH_SECONDS, BENCH_WARMUP, BENCH_RATE, BENCH_RUNS,
# BENCH_NODES, BENCH_OUT, BENCH_PERF; see scripts/bench.sh.
BENCH_BIN := $(B)/tests/bench/micro $(B)/tests/tools/bexbench

$(B)/tests/bench/micro: $(B)/tests/bench/micro.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

bench: all $(BENCH_BIN)
	@B=$(B) ./scripts/bench.sh

bench-scale: all $(BENCH_BIN)
	@B=$(B) ./scripts/bench.sh --scale
# ---- end bench ----

clean:
	rm -rf build


# ---------------------------------------------------------------- fuzzing
# Every tests/fuzz/<name>_fuzz.c is a libFuzzer target; its seed corpus is
# tests/fuzz/corpus/<name>/ (see tests/fuzz/README.md). `make test` links each
# target with the replay driver (normal compiler, SAN=1 honoured) and replays
# its corpus; `make fuzz` builds the targets and the library with clang into
# build/fuzz and runs each for FUZZ_SECONDS (FUZZ_TARGETS picks some,
# FUZZ_MERGE=1 merges new inputs into the seed corpora). `make fuzz-corpus`
# regenerates the seed files that tests/fuzz/gen_corpus.c writes.
FUZZ_NAMES := $(patsubst tests/fuzz/%_fuzz.c,%,$(wildcard tests/fuzz/*_fuzz.c))
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_SECONDS ?= 60
FUZZ_MERGE ?= 0
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(B)/tests/fuzz/%_replay)
FUZZ_GEN := $(B)/tests/fuzz/gen_corpus
FB := build/fuzz
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(filter-out -O2 -O1 -fsanitize=% -fno-sanitize-recover=% -DBEX_CHECKS,$(CFLAGS)) -O1 \
               -fno-omit-frame-pointer -DBEX_CHECKS $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_CPPFLAGS := -Icommon -Iconsensus -Icontracts -Inode -I$(FB)/proto -MMD -MP
FUZZ_LIB := $(FB)/libbex.a
FUZZ_BIN := $(FUZZ_NAMES:%=$(FB)/bin/%)

.PHONY: fuzz-corpus
test: $(FUZZ_REPLAY)

$(FUZZ_REPLAY): $(B)/tests/fuzz/%_replay: $(B)/tests/fuzz/%_fuzz.o $(B)/tests/fuzz/replay.o \
                $(B)/tests/fuzz/fuzz_util.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

$(FUZZ_GEN): $(B)/tests/fuzz/gen_corpus.o $(B)/tests/fuzz/fuzz_util.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

fuzz-corpus: $(FUZZ_GEN)
	$(FUZZ_GEN) tests/fuzz/corpus

$(FB)/proto/bex.pb-c.c $(FB)/proto/bex.pb-c.h: proto/bex.proto
	@mkdir -p $(FB)/proto
	protoc-c --c_out=$(FB)/proto -Iproto proto/bex.proto

$(FB)/proto/bex.pb-c.o: $(FB)/proto/bex.pb-c.c
	$(FUZZ_CC) $(filter-out -Werror -Wshadow,$(FUZZ_CFLAGS)) $(FUZZ_CPPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(FB)/%.o: %.c | $(FB)/proto/bex.pb-c.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FB)/proto/bex.pb-c.o $(LIB_SRC:%.c=$(FB)/%.o)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BIN): $(FB)/bin/%: $(FB)/tests/fuzz/%_fuzz.o $(FB)/tests/fuzz/fuzz_util.o $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm -lpthread

fuzz: $(FUZZ_TARGETS:%=$(FB)/bin/%)
	@FB=$(FB) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_MERGE=$(FUZZ_MERGE) ./scripts/fuzz.sh $(FUZZ_TARGETS)
# ---------------------------------------------------------------- end of fuzzing

-include $(shell find build -name '*.d' 2>/dev/null)
