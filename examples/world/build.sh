#!/bin/sh
# examples/world/build.sh - compile the world's programs against libparm.a
# (run `make` first).  Usage: sh examples/world/build.sh [OUTDIR]
# OUTDIR defaults to examples/world; the programs are `world` and
# `make-vocab`.  Run from the top of the checkout.  Rebuilds only what is
# older than its source or libparm.a.  $EXTRA_CFLAGS and $EXTRA_LDFLAGS
# are added (make check-asan adds the sanitizers libparm.a was built with).
set -eu
top=$(pwd)
[ -f "$top/libparm.a" ] && [ -f "$top/examples/world/world.c" ] || {
	echo "build.sh: run me from the top of the checkout after make" >&2
	exit 1
}
out=${1:-$top/examples/world}
mkdir -p "$out"
pkgs="openblas msgpack libarchive libcurl jansson libcrypto"
cflags="-std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_DEFAULT_SOURCE -D_GNU_SOURCE -pthread"
for prog in world make-vocab; do
	src=$top/examples/world/$prog.c
	if [ ! -x "$out/$prog" ] || [ "$src" -nt "$out/$prog" ] || [ "$top/libparm.a" -nt "$out/$prog" ]; then
		# shellcheck disable=SC2046,SC2086
		${CC:-cc} $cflags ${EXTRA_CFLAGS:-} -I"$top/lib" $(pkg-config --cflags $pkgs) -o "$out/$prog" "$src" \
			"$top/libparm.a" $(pkg-config --libs $pkgs) -lm -pthread ${EXTRA_LDFLAGS:-}
	fi
done
