# moonwire: `make run` and `make test` set up a fresh Debian 12 machine themselves (as root they
# apt-get what is missing), build, and run the chat example / the whole test suite.

CC      ?= cc
BUILD   := build
VERSION := 0.1.0

# Debian packages, by purpose. `make deps-run` / `make deps-test` install what is missing.
PKGS_BUILD := gcc make libc6-dev libev-dev liblua5.4-dev libssl-dev lua-cjson-dev
PKGS_TEST  := $(PKGS_BUILD) lua5.4 lua-busted lua-socket libcriterion-dev python3 \
              python3-websockets
# Only `make fuzz` needs these: `make test` replays the fuzz corpora with gcc.
PKGS_FUZZ  := clang libfuzzer-14-dev

WARN    := -Wall -Wextra -Wshadow -Wconversion
CFLAGS  ?= -O2 -g
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -DMOONWIRE_VERSION='"$(VERSION)"' -I/usr/include/lua5.4 \
              $(WARN) $(CFLAGS)
LDLIBS  := -llua5.4 -llua5.4-cjson -lev -lssl -lcrypto -lm
# The test build: warnings are errors, and the sanitizers watch every byte.
SAN     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined

SERVER_SRCS := $(wildcard core/*.c)
SERVER_OBJS := $(SERVER_SRCS:core/%.c=$(BUILD)/obj/%.o)
ASAN_OBJS   := $(SERVER_SRCS:core/%.c=$(BUILD)/asan/%.o)
# The C unit tests link every module but main.c: the pure ones are tested alone, the
# connection layer over socketpairs with stub callbacks, loop contexts side by side.
UNIT_CORE_SRCS := $(filter-out core/main.c,$(SERVER_SRCS))
UNIT_SRCS   := $(wildcard spec/unit/test_*.c)

.PHONY: all run test check-deps deps-build deps-run deps-test unit clean fuzz fuzz-replay \
        deps-fuzz

all: $(BUILD)/moonwire

$(BUILD)/moonwire: $(SERVER_OBJS)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/moonwire-asan: $(ASAN_OBJS)
	$(CC) $(CFLAGS_ALL) $(SAN) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/asan
	$(CC) $(CFLAGS_ALL) $(SAN) -Werror -c -o $@ $<

$(BUILD)/unit-tests: $(UNIT_SRCS) $(UNIT_CORE_SRCS) $(wildcard core/*.h spec/unit/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) -Werror -Icore -o $@ $(UNIT_SRCS) $(UNIT_CORE_SRCS) -lcriterion $(LDLIBS)

$(BUILD)/unit-tests-asan: $(UNIT_SRCS) $(UNIT_CORE_SRCS) $(wildcard core/*.h spec/unit/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) $(SAN) -Werror -Icore -o $@ $(UNIT_SRCS) $(UNIT_CORE_SRCS) -lcriterion \
	    $(LDLIBS)

$(BUILD) $(BUILD)/obj $(BUILD)/asan:
	mkdir -p $@

# ---- fuzz targets (spec/fuzz/) ------------------------------------------------------------
# Each target is spec/fuzz/fuzz_<t>.c plus the pure modules it drives. `make test` links it with
# spec/fuzz/replay.c under gcc and the test sanitizers (build/fuzz/replay-<t>) to replay its
# corpus; `make fuzz` links it with libFuzzer under clang (build/fuzz/fuzz-<t>).
FUZZ_TARGETS     := http frames utf8 origin
FUZZ_SRCS_http   := core/http.c core/handshake.c
FUZZ_SRCS_frames := core/ws_reader.c core/ws_frame.c core/ws_close.c core/utf8.c
FUZZ_SRCS_utf8   := core/utf8.c core/ws_close.c
FUZZ_SRCS_origin := core/origin.c
FUZZ_LIBS_http   := -lcrypto
FUZZ_REPLAYS     := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/replay-%)
FUZZ_BINS        := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz-%)
FUZZ_CC      ?= clang
FUZZ_SAN     := -O1 -g -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096

define fuzz_rules
$(BUILD)/fuzz/replay-$(1): spec/fuzz/fuzz_$(1).c spec/fuzz/replay.c spec/fuzz/fuzz.h \
        $(FUZZ_SRCS_$(1)) $(wildcard core/*.h) | $(BUILD)/fuzz
	$$(CC) $$(CFLAGS_ALL) $$(SAN) -Werror -Icore -o $$@ spec/fuzz/fuzz_$(1).c spec/fuzz/replay.c \
	    $(FUZZ_SRCS_$(1)) $(FUZZ_LIBS_$(1))

$(BUILD)/fuzz/fuzz-$(1): spec/fuzz/fuzz_$(1).c spec/fuzz/fuzz.h $(FUZZ_SRCS_$(1)) \
        $(wildcard core/*.h) | $(BUILD)/fuzz
	$$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $$(WARN) $$(FUZZ_SAN) -Icore -o $$@ spec/fuzz/fuzz_$(1).c \
	    $(FUZZ_SRCS_$(1)) $(FUZZ_LIBS_$(1))
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rules,$(t))))

$(BUILD)/fuzz:
	mkdir -p $@

# ---- the two commands ---------------------------------------------------------------------

run: deps-run
	$(MAKE) all
	$(BUILD)/moonwire examples/chat

test: deps-test
	$(MAKE) all $(BUILD)/moonwire-asan $(BUILD)/unit-tests $(BUILD)/unit-tests-asan \
	    $(FUZZ_REPLAYS)
	spec/run-tests

unit: $(BUILD)/unit-tests $(BUILD)/unit-tests-asan
	$(BUILD)/unit-tests && $(BUILD)/unit-tests-asan

# Replays the fuzz corpora (also part of `make test`), printing TAP.
fuzz-replay: $(FUZZ_REPLAYS)
	spec/fuzz/run-replay

# Fuzzes each target for FUZZ_SECONDS, one after the other in one process (one core), starting
# from its corpus. New inputs collect in build/fuzz/new-<t>; those that reach new code are then
# merged into spec/fuzz/corpus/<t> (commit them). A crash or failed check stops the run with the
# input saved as build/fuzz/crash-<t>-<sha1>: fix the bug, then copy the input into the corpus.
# Logs: build/fuzz/<t>.log.
fuzz: deps-fuzz
	$(MAKE) $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/new-$$t; \
	    dict=; if [ -f spec/fuzz/$$t.dict ]; then dict=-dict=spec/fuzz/$$t.dict; fi; \
	    echo "== fuzz $$t: $(FUZZ_SECONDS) s"; \
	    $(BUILD)/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
	        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $$dict \
	        -artifact_prefix=$(BUILD)/fuzz/crash-$$t- $(BUILD)/fuzz/new-$$t spec/fuzz/corpus/$$t \
	        >$(BUILD)/fuzz/$$t.log 2>&1 || { tail -n 60 $(BUILD)/fuzz/$$t.log; exit 1; }; \
	    grep -E '^stat::number_of_executed_units|^Done' $(BUILD)/fuzz/$$t.log || true; \
	    $(BUILD)/fuzz/fuzz-$$t -merge=1 -max_len=$(FUZZ_MAX_LEN) spec/fuzz/corpus/$$t \
	        $(BUILD)/fuzz/new-$$t >>$(BUILD)/fuzz/$$t.log 2>&1; \
	    grep -E 'MERGE-OUTER: [0-9]+ new files' $(BUILD)/fuzz/$$t.log | tail -n 1; \
	done

# ---- Debian packages ----------------------------------------------------------------------

# Installs the packages in $(1) that are missing: as root with apt-get, otherwise it names them.
define install_missing
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || echo $$p; done | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "moonwire needs these Debian packages: $$missing"; \
	        echo "install them as root (apt-get install $$missing), or run make as root"; \
	        exit 1; \
	    fi; \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing </dev/null; \
	fi
endef

deps-build:
	$(call install_missing,$(PKGS_BUILD))
deps-run: deps-build
deps-test:
	$(call install_missing,$(PKGS_TEST))
deps-fuzz:
	$(call install_missing,$(PKGS_FUZZ))

# ---- the benchmark: moonwire against Bun and Node ws (bench/) -------------------------------
PKGS_BENCH := $(PKGS_BUILD) lua5.4 gnuplot-nox
# node and npm: whatever the machine has, otherwise Debian's nodejs and npm packages.
BENCH_NODE := $(shell command -v node >/dev/null 2>&1 || echo nodejs) \
              $(shell command -v npm >/dev/null 2>&1 || echo npm)
ANCHORS := bench/anchors
BUN     := $(ANCHORS)/node_modules/.bin/bun

.PHONY: bench deps-bench bench-anchors bench-against

deps-bench:
	$(call install_missing,$(PKGS_BENCH) $(BENCH_NODE))

$(BUILD)/wsload: $(wildcard bench/*.c bench/*.h) bench/Makefile | $(BUILD)
	$(MAKE) -C bench BUILD=$(CURDIR)/$(BUILD)

# npm ci never rewrites the lockfile. Bun's binary comes from its postinstall script; when npm
# did not run it (--ignore-scripts, or a future npm that holds scripts back), run it by hand.
$(ANCHORS)/node_modules/.installed: $(ANCHORS)/package.json $(ANCHORS)/package-lock.json
	cd $(ANCHORS) && npm ci --no-audit --no-fund
	@$(BUN) --version >/dev/null 2>&1 || { echo "bench: running Bun's postinstall by hand"; \
	    cd $(ANCHORS)/node_modules/bun && node install.js; }
	@$(BUN) --version >/dev/null 2>&1 || { echo "bench: $(BUN) does not run (see \
	    $(ANCHORS)/node_modules/bun/bin/README.txt)"; exit 1; }
	touch $@

bench-anchors: $(ANCHORS)/node_modules/.installed

bench: deps-bench
	$(MAKE) all $(BUILD)/wsload bench-anchors
	lua5.4 bench/run.lua

# This build against an older one, side by side in one run (servers alternate): REV is any git
# revision (default HEAD, the last commit: what the working tree changes). Only the two
# moonwire builds run, unless BENCH_SERVERS says otherwise; BENCH_SCENARIOS picks scenarios.
REV ?= HEAD
bench-against: deps-bench
	$(MAKE) all $(BUILD)/wsload
	rm -rf $(BUILD)/baseline && mkdir -p $(BUILD)/baseline
	git archive --format=tar $(REV) | tar -x -C $(BUILD)/baseline
	$(MAKE) -C $(BUILD)/baseline all
	BENCH_BASELINE=$(CURDIR)/$(BUILD)/baseline/build/moonwire \
	    BENCH_SERVERS=$${BENCH_SERVERS:-moonwire,baseline} lua5.4 bench/run.lua

clean:
	rm -rf $(BUILD)
