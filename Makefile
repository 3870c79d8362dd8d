# moonwire: `make run` and `make test` set up a fresh Debian 12 machine themselves (as root they
# apt-get what is missing), build, and run the chat example / the whole test suite.

CC      ?= cc
BUILD   := build
VERSION := 0.1.0

# Debian packages, by purpose. `make deps-run` / `make deps-test` install what is missing.
PKGS_BUILD := gcc make libc6-dev libev-dev liblua5.4-dev libssl-dev lua-cjson-dev libc-ares-dev \
              zlib1g-dev libhiredis-dev
# prometheus brings promtool (which checks /metrics); chromium drives the dashboard spec; nginx
# is a real server for the outbound HTTP spec; node runs moonwire.js's tests (Debian's nodejs
# unless the machine has a node already).
PKGS_TEST  := $(PKGS_BUILD) lua5.4 lua-busted lua-socket lua-cjson libcriterion-dev python3 \
              python3-websockets python3-jwt python3-cryptography openssl prometheus chromium \
              nginx redis-server redis-tools \
              $(shell command -v node >/dev/null 2>&1 || echo nodejs)
# Only `make fuzz` needs these: `make test` replays the fuzz corpora with gcc.
PKGS_FUZZ  := clang libfuzzer-14-dev

WARN    := -Wall -Wextra -Wshadow -Wconversion
CFLAGS  ?= -O2 -g
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -DMOONWIRE_VERSION='"$(VERSION)"' -I/usr/include/lua5.4 \
              $(WARN) $(CFLAGS)
LDLIBS  := -llua5.4 -llua5.4-cjson -lev -lssl -lcrypto -lcares -lhiredis -lm -lz
# The test build: warnings are errors, and the sanitizers watch every byte.
SAN     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined

# Worker threads (issue 13) run under ThreadSanitizer too: build/moonwire-tsan and
# build/unit-tests-tsan (TSan and ASan do not mix in one binary).
TSAN    := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
LDLIBS  += -lpthread

SERVER_SRCS := $(wildcard core/*.c)
# Files built into the binary (core/admin/dashboard.html) become C arrays in build/gen.
# So is the moonwire.js client (core/client/), served at /_moonwire/ (core/builtin_files.c).
GEN_SRCS    := $(BUILD)/gen/dashboard_html.c $(BUILD)/gen/client_js.c
SERVER_OBJS := $(SERVER_SRCS:core/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/dashboard_html.o \
               $(BUILD)/obj/client_js.o
ASAN_OBJS   := $(SERVER_SRCS:core/%.c=$(BUILD)/asan/%.o) $(BUILD)/asan/dashboard_html.o \
               $(BUILD)/asan/client_js.o
TSAN_OBJS   := $(SERVER_SRCS:core/%.c=$(BUILD)/tsan/%.o) $(BUILD)/tsan/dashboard_html.o \
               $(BUILD)/tsan/client_js.o
# The C unit tests link every module but main.c: the pure ones are tested alone, the
# connection layer over socketpairs with stub callbacks, loop contexts side by side.
UNIT_CORE_SRCS := $(filter-out core/main.c,$(SERVER_SRCS)) $(GEN_SRCS)
UNIT_SRCS   := $(wildcard spec/unit/test_*.c)
# The units of what worker threads share, also run under ThreadSanitizer.
TSAN_UNIT_SRCS := spec/unit/test_bus.c spec/unit/test_limits.c spec/unit/test_sstore.c
TSAN_UNIT_CORE := core/bus.c core/outq.c core/conn_limits.c core/ip_table.c core/ratelimit.c \
                  core/sstore.c

# The specs the ThreadSanitizer build runs (spec/run-tests, make tsan).
TSAN_SPECS := spec/workers_spec.lua spec/workers_apps_spec.lua spec/deflate_workers_spec.lua \
              spec/history_spec.lua spec/redis_spec.lua spec/channels_workers_spec.lua \
              spec/channels_redis_spec.lua \
              spec/presence_spec.lua

.PHONY: tsan print-tsan-specs all run cluster test check-deps deps-build deps-run deps-test unit clean \
        fuzz fuzz-replay deps-fuzz install uninstall

all: $(BUILD)/moonwire

$(BUILD)/moonwire: $(SERVER_OBJS)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/moonwire-asan: $(ASAN_OBJS)
	$(CC) $(CFLAGS_ALL) $(SAN) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/asan
	$(CC) $(CFLAGS_ALL) $(SAN) -Werror -c -o $@ $<

$(BUILD)/moonwire-tsan: $(TSAN_OBJS)
	$(CC) $(CFLAGS_ALL) $(TSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/tsan/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/tsan
	$(CC) $(CFLAGS_ALL) $(TSAN) -Werror -c -o $@ $<

$(BUILD)/tsan/%.o: $(BUILD)/gen/%.c | $(BUILD)/tsan
	$(CC) $(CFLAGS_ALL) $(TSAN) -Werror -c -o $@ $<

# Criterion cannot run under TSan (Snaipe/Criterion#274): the threaded tests build against the
# small stand-in in spec/unit/tsan/, which runs the same sources and prints TAP.
$(BUILD)/unit-tests-tsan: $(TSAN_UNIT_SRCS) $(TSAN_UNIT_CORE) spec/unit/tsan/runner.c \
        spec/unit/tsan/criterion/criterion.h $(wildcard core/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) $(TSAN) -Werror -Ispec/unit/tsan -Icore -o $@ spec/unit/tsan/runner.c \
	    $(TSAN_UNIT_SRCS) $(TSAN_UNIT_CORE) -lpthread

$(BUILD)/unit-tests: $(UNIT_SRCS) $(UNIT_CORE_SRCS) $(wildcard core/*.h spec/unit/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) -Werror -Icore -o $@ $(UNIT_SRCS) $(UNIT_CORE_SRCS) -lcriterion $(LDLIBS)

$(BUILD)/unit-tests-asan: $(UNIT_SRCS) $(UNIT_CORE_SRCS) $(wildcard core/*.h spec/unit/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) $(SAN) -Werror -Icore -o $@ $(UNIT_SRCS) $(UNIT_CORE_SRCS) -lcriterion \
	    $(LDLIBS)

$(BUILD)/obj/%.o: $(BUILD)/gen/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/asan/%.o: $(BUILD)/gen/%.c | $(BUILD)/asan
	$(CC) $(CFLAGS_ALL) $(SAN) -Werror -c -o $@ $<

# The dashboard page as bytes (od is in coreutils: nothing to install).
$(BUILD)/gen/dashboard_html.c: core/admin/dashboard.html | $(BUILD)/gen
	{ echo '/* Generated by the Makefile from core/admin/dashboard.html: do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char admin_dashboard_html[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t admin_dashboard_html_len = sizeof admin_dashboard_html;'; } > $@

# moonwire.js as a plain script: the module without its export keywords, in a function that
# sets globalThis.Moonwire.
$(BUILD)/gen/moonwire.global.js: core/client/moonwire.js | $(BUILD)/gen
	{ echo '/* moonwire.js as a plain script: sets globalThis.Moonwire (generated). */'; \
	  echo '(function () {'; sed -e '/^export default /d' -e 's/^export //' $<; \
	  echo 'Moonwire.Subscription = Subscription;'; \
	  echo 'Moonwire.backoffDelay = backoffDelay;'; \
	  echo 'globalThis.Moonwire = Moonwire;'; echo '})();'; } > $@

# Each client file as bytes: client_<name with dots as underscores>[] and its _len.
$(BUILD)/gen/client_js.c: core/client/moonwire.js $(BUILD)/gen/moonwire.global.js core/client/moonwire.d.ts \
        | $(BUILD)/gen
	{ echo '/* Generated by the Makefile from core/client/: do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  for f in core/client/moonwire.js $(BUILD)/gen/moonwire.global.js core/client/moonwire.d.ts; do \
	    n=client_$$(basename $$f | tr '.' '_'); \
	    echo "const unsigned char $$n[] = {"; \
	    od -An -v -tx1 $$f | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	    echo '};'; \
	    echo "const size_t $${n}_len = sizeof $$n;"; \
	  done; } > $@

$(BUILD) $(BUILD)/obj $(BUILD)/asan $(BUILD)/tsan $(BUILD)/gen:
	mkdir -p $@

# ---- fuzz targets (spec/fuzz/) ------------------------------------------------------------
# Each target is spec/fuzz/fuzz_<t>.c plus the pure modules it drives. `make test` links it with
# spec/fuzz/replay.c under gcc and the test sanitizers (build/fuzz/replay-<t>) to replay its
# corpus; `make fuzz` links it with libFuzzer under clang (build/fuzz/fuzz-<t>).
FUZZ_TARGETS     := http frames utf8 origin response pmd channels
FUZZ_SRCS_http   := core/http.c core/handshake.c
FUZZ_SRCS_frames := core/ws_reader.c core/ws_frame.c core/ws_close.c core/utf8.c
FUZZ_SRCS_utf8   := core/utf8.c core/ws_close.c
FUZZ_SRCS_origin := core/origin.c
FUZZ_SRCS_response := core/http_response.c
FUZZ_SRCS_pmd    := core/pmd.c core/http.c
FUZZ_SRCS_channels := core/channels.c core/outq.c core/ws_frame.c
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

# `make run PORT=9000 APP=examples/game` serves another app or port.
PORT ?= 8080
APP  ?= examples/chat
run: deps-run
	$(MAKE) all
	$(BUILD)/moonwire --port $(PORT) $(APP)

# Two nodes serving the chat example through one redis-server (docs/scaling.md).
PKGS_CLUSTER := redis-server
cluster: deps-run
	$(call install_missing,$(PKGS_CLUSTER))
	$(MAKE) all
	BIN=$(BUILD)/moonwire examples/cluster/run.sh

test: deps-test
	$(MAKE) all $(BUILD)/moonwire-asan $(BUILD)/moonwire-tsan $(BUILD)/unit-tests \
	    $(BUILD)/unit-tests-asan $(BUILD)/unit-tests-tsan \
	    $(FUZZ_REPLAYS)
	spec/run-tests

unit: $(BUILD)/unit-tests $(BUILD)/unit-tests-asan $(BUILD)/unit-tests-tsan
	$(BUILD)/unit-tests && $(BUILD)/unit-tests-asan && $(BUILD)/unit-tests-tsan

print-tsan-specs:
	@echo $(TSAN_SPECS)

# The server under ThreadSanitizer, and the specs that run several workers against it.
tsan: $(BUILD)/moonwire-tsan $(BUILD)/unit-tests-tsan
	$(BUILD)/unit-tests-tsan
	MOONWIRE_BIN=$(BUILD)/moonwire-tsan busted -o TAP \
	    --lpath='./spec/support/?.lua;./scripts/?.lua' $(TSAN_SPECS)

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

# ---- make install ------------------------------------------------------------------------
# PREFIX/bin/moonwire, and the scripts it ships in PREFIX/share/moonwire/scripts, where the
# binary looks for them beside its own folder (moonwire test and new need them too); the
# libraries' own specs (scripts/spec) stay behind.
PREFIX  ?= /usr/local
SHARE   := $(DESTDIR)$(PREFIX)/share/moonwire

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)
	install -m 755 $(BUILD)/moonwire $(DESTDIR)$(PREFIX)/bin/moonwire
	rm -rf $(SHARE)/scripts
	cp -R scripts $(SHARE)/scripts
	rm -rf $(SHARE)/scripts/spec

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/moonwire
	rm -rf $(SHARE)

# ---- Debian packages ----------------------------------------------------------------------

# Installs the packages in $(1) that are missing: as root with apt-get, otherwise it names them.
# Services a package brings (nginx) are not started: a policy-rc.d that says no is in place
# while apt-get runs, as Debian's images do; the tests start their own on loopback ports.
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
	    policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
	        printf '#!/bin/sh\nexit 101\n' >$$policy && chmod +x $$policy; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing </dev/null; rc=$$?; \
	    [ -z "$$policy" ] || rm -f $$policy; [ $$rc = 0 ] || exit $$rc; \
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
# nginx, libnginx-mod-http-lua, lua-nginx-websocket and wrk: bench/outbound.sh's backend and
# its OpenResty-style anchor (nginx + Lua module, over HTTP and over WebSocket).
PKGS_BENCH := $(PKGS_BUILD) lua5.4 gnuplot-nox nginx libnginx-mod-http-lua wrk \
              lua-nginx-websocket
# node and npm: whatever the machine has, otherwise Debian's nodejs and npm packages.
BENCH_NODE := $(shell command -v node >/dev/null 2>&1 || echo nodejs) \
              $(shell command -v npm >/dev/null 2>&1 || echo npm)
ANCHORS := bench/anchors
BUN     := $(ANCHORS)/node_modules/.bin/bun

.PHONY: bench deps-bench bench-anchors bench-against bench-outbound bench-cluster

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
	bench/outbound.sh

# Handlers making one outbound HTTP request per message against OpenResty (issue 12; loopback,
# about 3 minutes with the default 5 rounds x 5 s x 6 runs).
bench-outbound: deps-bench
	$(MAKE) all $(BUILD)/wsload
	bench/outbound.sh

# Two nodes through Redis against one node (issue 14; loopback, about 20 seconds).
bench-cluster: deps-bench
	$(call install_missing,$(PKGS_CLUSTER))
	$(MAKE) all $(BUILD)/wsload
	bench/cluster.sh

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
