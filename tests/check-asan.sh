#!/bin/sh
# tests/check-asan.sh DIR CACHE [TARGET...] - make check (or the TARGETs)
# under ASan + UBSan: make check-asan.  It builds in DIR, a copy of the
# working tree's files, so that sanitized objects never mix with the normal
# build (make decides by dates, not flags) and a build running in the tree
# is left alone; the copy keeps the files' dates, so a second run rebuilds
# only what changed.  Fixtures and the llama.cpp reference in CACHE are
# shared with the tree.  Every report fails: the tool exits non-zero, its
# stderr holds the report, and tests/san-report.c also logs it, so a report
# no test looked at still fails the run at the end.
# $CC, $CFLAGS and $LDFLAGS: the normal ones; the sanitizers are added.
set -eu
usage="usage: sh tests/check-asan.sh DIR CACHE [TARGET...]"
DIR=${1:?$usage}
CACHE=${2:?$usage}
shift 2
[ $# -gt 0 ] || set -- check
TOP=$(cd "$(dirname "$0")/.." && pwd)
# float-cast-overflow: not in gcc's "undefined", and a NaN or huge float
# cast to an index is a bug worth the check
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all"
CC=${CC:-cc}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
cd "$TOP"
# what the normal build sees: tracked files and new ones not ignored; tar
# keeps dates, --ignore-failed-read skips a tracked file deleted in the tree
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xpf - -C "$DIR"

# the copy is not next to ../shared: tell the tests where the fixtures are
if [ -z "${PARM_FIXTURES:-}" ] && [ -f ../shared/fixtures/vocab/README.md ]; then
	PARM_FIXTURES=$(cd ../shared/fixtures/vocab && pwd)
	export PARM_FIXTURES
fi

# make rebuilds by dates, not flags: other flags, build everything again
flags="$CC ${CFLAGS:-} ${LDFLAGS:-} $SAN"
if [ "$(cat "$DIR/.flags" 2>/dev/null)" != "$flags" ]; then
	make -s -C "$DIR" clean
	rm -f "$DIR/tests/san-report.o"
	echo "$flags" > "$DIR/.flags"
fi

# every program links the hooks: when they change, relink them all
hook=$DIR/tests/san-report.o
if [ ! -f "$hook" ] || [ "$DIR/tests/san-report.c" -nt "$hook" ]; then
	$CC $SAN -O1 -g -c -o "$hook" "$DIR/tests/san-report.c"
	for src in "$DIR"/tools/parm-*.c "$DIR"/tests/test_*.c "$DIR"/tests/bench_*.c \
		   "$DIR"/examples/*/*.c; do
		rm -f "${src%.c}"
	done
	rm -rf "$DIR"/examples/bin
fi

# halt at the first error; exit 23, an error status of no tool, so a test
# that checks the status fails; LSan on at exit; what we keep on purpose
# and do not own is in tests/lsan.supp; UBSan's summary line is off unless
# asked for, and san-report.c logs reports by it
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:exitcode=23:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1:report_error_type=1:exitcode=23"
export LSAN_OPTIONS="suppressions=$DIR/tests/lsan.supp:print_suppressions=0"
export PARM_SAN_LOG="$DIR/sanitizer-reports.log"
rm -f "$PARM_SAN_LOG"

# for the tests and examples that link libparm.a themselves
export EXTRA_CFLAGS="$SAN" EXTRA_LDFLAGS="$SAN $hook"
# a test that cannot run sanitized skips when this is set: under ulimit -v,
# say, ASan cannot even start (its shadow memory reserves terabytes)
export PARM_SANITIZED=1

start=$(date +%s)
rc=0
make -C "$DIR" "$@" CACHE="$CACHE" \
	CFLAGS="${CFLAGS:-} $SAN" LDFLAGS="${LDFLAGS:-} $SAN $hook" || rc=$?
echo "check-asan: $(( $(date +%s) - start )) s"
if [ -s "$PARM_SAN_LOG" ]; then
	echo "check-asan: sanitizer reports (full reports on each tool's stderr):"
	sed 's/^/    /' "$PARM_SAN_LOG"
	rc=1
fi
exit $rc
