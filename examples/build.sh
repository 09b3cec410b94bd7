#!/bin/sh
# examples/build.sh - compile the examples' programs against libparm.a (run
# `make` first): one program per controlled task (world, reviews, lists:
# examples/TASK/TASK.c with examples/task.c).
#
#   sh examples/build.sh [OUTDIR]
#
# OUTDIR defaults to examples/bin.  Run from the top of the checkout.
# Rebuilds only what is older than its sources or libparm.a.  $EXTRA_CFLAGS
# and $EXTRA_LDFLAGS are added (make check-asan adds the sanitizers
# libparm.a was built with).
set -eu
top=$(pwd)
[ -f "$top/libparm.a" ] && [ -f "$top/examples/task.c" ] || {
	echo "build.sh: run me from the top of the checkout after make" >&2
	exit 1
}
out=${1:-$top/examples/bin}
mkdir -p "$out"
pkgs="openblas msgpack libarchive libcurl jansson libcrypto"
cflags="-std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_DEFAULT_SOURCE -D_GNU_SOURCE -pthread"
ex=$top/examples
# build PROGRAM SOURCE...: relink PROGRAM when a source or libparm.a is newer
build() {
	prog=$1; shift
	stale=
	[ -x "$out/$prog" ] || stale=1
	for src in "$@" "$top/libparm.a" "$ex/task.h"; do
		[ "$src" -nt "$out/$prog" ] && stale=1
	done
	[ -n "$stale" ] || return 0
	# shellcheck disable=SC2046,SC2086
	${CC:-cc} $cflags ${EXTRA_CFLAGS:-} -I"$top/include" $(pkg-config --cflags $pkgs) -o "$out/$prog" \
		"$@" "$top/libparm.a" $(pkg-config --libs $pkgs) -lm -pthread ${EXTRA_LDFLAGS:-}
}
for task in world reviews lists; do
	build $task "$ex/$task/$task.c" "$ex/task.c"
done
