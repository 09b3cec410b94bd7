# parm - multi-objective test-time alignment with PARM, as Unix tools
.POSIX:
include config.mk

DEBS = build-essential libopenblas-dev libmsgpack-dev libarchive-dev libcurl4-openssl-dev \
       libjansson-dev libssl-dev pkg-config
PKG_CFLAGS = `pkg-config --cflags $(PKGS) 2>/dev/null`
PKG_LIBS = `pkg-config --libs $(PKGS) 2>/dev/null`

LIBSRC = $(wildcard lib/*.c)
LIBOBJ = $(LIBSRC:.c=.o)
# the public headers, installed as <parm/NAME.h> (and <parm.h>, all of
# them); lib/*.h are the library's private ones, never installed
PUBHDR = $(wildcard include/parm/*.h)
LIBHDR = include/parm.h $(PUBHDR) $(wildcard lib/*.h)
TOOLS = $(patsubst %.c,%,$(wildcard tools/parm-*.c))
TESTS = $(patsubst %.c,%,$(wildcard tests/test_*.c))
BENCH = $(patsubst %.c,%,$(wildcard tests/bench_*.c))
MAN1 = $(wildcard man/*.1)
MAN5 = $(wildcard man/*.5)
MAN3 = $(wildcard man/*.3)
MAN7 = $(wildcard man/*.7)

ALL_CFLAGS = $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -Iinclude -Ilib

all: deps $(TOOLS)

# Install the Debian packages we build against, only when one is missing.
deps:
	@sh contrib/ensure-debs.sh $(DEBS)

# The tests also build llama.cpp as a reference (cmake, g++, git) from an
# npm package, and make compressed datasets with the usual compressors;
# install those tools only where the command is missing.  Debian's numpy
# runs gguf-py's dequantisers, the independent check of ours; PyTorch the
# official PBLoRA forward that imported checkpoints are held to (test_peft).
test-deps: deps
	@sh contrib/ensure-debs.sh --cmd cmake:cmake g++:g++ git:git npm:npm \
		gzip:gzip xz:xz-utils zstd:zstd bzip2:bzip2 zip:zip tar:tar openssl:openssl
	@sh contrib/ensure-debs.sh python3-numpy python3-torch

lib/%.o: lib/%.c $(LIBHDR)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

libparm.a: $(LIBOBJ)
	rm -f $@
	ar rcs $@ $(LIBOBJ)

tools/parm-%: tools/parm-%.c libparm.a $(LIBHDR)
	$(CC) $(ALL_CFLAGS) -o $@ $< libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

tests/test_%: tests/test_%.c tests/tap.h tests/rand_blocks.h libparm.a $(LIBHDR)
	$(CC) $(ALL_CFLAGS) -o $@ $< libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

tests/bench_%: tests/bench_%.c libparm.a $(LIBHDR)
	$(CC) $(ALL_CFLAGS) -o $@ $< libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

check: all test-deps $(TESTS) test-fixtures llamacpp
	@sh tests/run.sh

# The whole suite under ASan + UBSan, built and run in a copy of the tree
# (build/asan) so sanitized objects never mix with the normal build.
check-asan: test-deps
	@CC='$(CC)' CFLAGS='$(CFLAGS)' LDFLAGS='$(LDFLAGS)' \
		sh tests/check-asan.sh build/asan "$(CACHE)"
.PHONY: check-asan

# Tests read llama.cpp's vocab fixtures from $$PARM_FIXTURES or
# ../shared/fixtures/vocab; a checkout with neither fetches them once.
test-fixtures:
	@[ -n "$$PARM_FIXTURES" ] || [ -f ../shared/fixtures/vocab/README.md ] || \
		sh tests/fetch-fixtures.sh "$(CACHE)/fixtures"

# The independent reference: llama.cpp built from source once, cached.
llamacpp:
	@sh tests/llamacpp.sh "$(CACHE)"

bench: all $(BENCH)
	@sh tests/bench.sh

demo: all
	@sh examples/demo.sh

fixtures:
	@sh tests/fetch-fixtures.sh "$(CACHE)/fixtures"

# pkg-config's file, written at install for that PREFIX.  libparm is a
# static library: Libs names what it needs beyond the packages in Requires.
PC = prefix=$(PREFIX)\nlibdir=$(LIBDIR)\nincludedir=$(INCDIR)\n\nName: libparm\nDescription: PARM multi-objective test-time alignment\nVersion: $(VERSION)\nRequires: $(PKGS)\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lparm -lm -pthread\n

install: all libparm.a
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/parm \
		$(DESTDIR)$(MANPREFIX)/man1 $(DESTDIR)$(MANPREFIX)/man3 \
		$(DESTDIR)$(MANPREFIX)/man5 $(DESTDIR)$(MANPREFIX)/man7
	cp -f $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	cp -f libparm.a $(DESTDIR)$(LIBDIR)/
	printf '$(PC)' > $(DESTDIR)$(LIBDIR)/pkgconfig/libparm.pc
	cp -f include/parm.h $(DESTDIR)$(INCDIR)/
	cp -f $(PUBHDR) $(DESTDIR)$(INCDIR)/parm/
	cp -f $(MAN1) $(DESTDIR)$(MANPREFIX)/man1/
	cp -f $(MAN3) $(DESTDIR)$(MANPREFIX)/man3/
	cp -f $(MAN5) $(DESTDIR)$(MANPREFIX)/man5/
	cp -f $(MAN7) $(DESTDIR)$(MANPREFIX)/man7/

uninstall:
	for t in $(TOOLS); do rm -f $(DESTDIR)$(PREFIX)/bin/`basename $$t`; done
	rm -f $(DESTDIR)$(LIBDIR)/libparm.a $(DESTDIR)$(LIBDIR)/pkgconfig/libparm.pc
	rm -f $(DESTDIR)$(INCDIR)/parm.h
	rm -rf $(DESTDIR)$(INCDIR)/parm
	for m in $(MAN3); do rm -f $(DESTDIR)$(MANPREFIX)/man3/`basename $$m`; done
	for m in $(MAN1); do rm -f $(DESTDIR)$(MANPREFIX)/man1/`basename $$m`; done
	for m in $(MAN5); do rm -f $(DESTDIR)$(MANPREFIX)/man5/`basename $$m`; done
	for m in $(MAN7); do rm -f $(DESTDIR)$(MANPREFIX)/man7/`basename $$m`; done

clean:
	rm -f lib/*.o libparm.a $(TOOLS) $(TESTS) $(BENCH)
	rm -rf tests/tmp


.PHONY: all deps test-deps check test-fixtures llamacpp bench demo fixtures install uninstall clean

# Fuzzing: libFuzzer harnesses tests/fuzz/TARGET.c, built with Debian's
# clang-14 under ASan + UBSan into build/fuzz/ (never lib/*.o), seeded from
# test-made files, each run FUZZ_SECONDS; see tests/fuzz/README.md.
# fuzz-replay builds the same harnesses with $(CC) and tests/fuzz/replay.c
# for make check (tests/t_fuzz_replay.sh replays the corpora through them).
FUZZ_SECONDS = 60
FUZZ_CC = clang-14
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = $(CPPFLAGS) -std=c11 -O1 -g -march=native -pthread $(PKG_CFLAGS) -Iinclude -Ilib -Itests/fuzz
FUZZ_SRC = $(filter-out tests/fuzz/fuzz.c tests/fuzz/replay.c tests/fuzz/mkseeds.c,$(wildcard tests/fuzz/*.c))
FUZZ_NAMES = $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_HDR = $(wildcard tests/fuzz/*.h) $(LIBHDR)

build/fuzz/lib/%.o: lib/%.c $(LIBHDR)
	@mkdir -p build/fuzz/lib
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c -o $@ $<

# clang-14 does not know __builtin_cpu_supports("f16c"): CPU detection is
# built by $(CC), uninstrumented (it reads no input).
build/fuzz/lib/simd.o: lib/simd.c $(LIBHDR)
	@mkdir -p build/fuzz/lib
	$(CC) $(ALL_CFLAGS) -c -o $@ lib/simd.c

build/fuzz/libparm.a: $(LIBSRC:lib/%.c=build/fuzz/lib/%.o)
	rm -f $@
	ar rcs $@ $(LIBSRC:lib/%.c=build/fuzz/lib/%.o)

build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.c $(FUZZ_HDR) build/fuzz/libparm.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< tests/fuzz/fuzz.c \
		build/fuzz/libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

build/fuzz-replay/lib/%.o: lib/%.c $(LIBHDR)
	@mkdir -p build/fuzz-replay/lib
	$(CC) $(FUZZ_CFLAGS) $(FUZZ_REPLAY_SAN) -c -o $@ $<

build/fuzz-replay/libparm.a: $(LIBSRC:lib/%.c=build/fuzz-replay/lib/%.o)
	rm -f $@
	ar rcs $@ $(LIBSRC:lib/%.c=build/fuzz-replay/lib/%.o)

build/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/fuzz.c tests/fuzz/replay.c $(FUZZ_HDR) build/fuzz-replay/libparm.a
	$(CC) $(FUZZ_CFLAGS) $(FUZZ_REPLAY_SAN) -o $@ $< tests/fuzz/fuzz.c tests/fuzz/replay.c \
		build/fuzz-replay/libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

build/fuzz/mkseeds: tests/fuzz/mkseeds.c tests/fuzz/fuzz.c $(FUZZ_HDR) libparm.a
	@mkdir -p build/fuzz
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ $< tests/fuzz/fuzz.c libparm.a $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

# The replay build sanitizes too (gcc's ASan + UBSan) where it can link.
FUZZ_REPLAY_SAN = `printf 'int main(void){return 0;}' | $(CC) -x c -fsanitize=address,undefined -o /dev/null - 2>/dev/null && echo -fsanitize=address,undefined -fno-sanitize-recover=undefined`

fuzz-replay: deps $(FUZZ_NAMES:%=build/fuzz-replay/%)

fuzz: deps
	@sh contrib/ensure-debs.sh clang-14 libclang-rt-14-dev
	@$(MAKE) -s libparm.a build/fuzz/mkseeds $(FUZZ_NAMES:%=build/fuzz/%)
	@sh tests/fuzz/run.sh "$(FUZZ_SECONDS)" $(FUZZ_NAMES)

.PHONY: fuzz fuzz-replay
