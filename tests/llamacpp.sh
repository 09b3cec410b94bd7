#!/bin/sh
# tests/llamacpp.sh CACHE - build the independent llama.cpp reference once:
# CACHE/llama.cpp/bin/{llama-server,llama-quantize,llama-ref}.  The source is
# the git bundle inside the npm package node-llama-cpp (a pinned llama.cpp
# release).  Idempotent: exits at once when everything is built.
set -eu

PKG=node-llama-cpp@3.21.1
RECIPE="$PKG no-amx"	# change when the build options change: forces a rebuild
JOBS=${JOBS:-2}
CACHE=${1:?usage: sh tests/llamacpp.sh CACHE}
TOP=$(cd "$(dirname "$0")/.." && pwd)
DIR=$CACHE/llama.cpp
SRC=$DIR/src
BUILD=$DIR/build
BIN=$DIR/bin
STAMP=$DIR/stamp
REF_C=$TOP/tests/llama-ref.c
NO_AMX=
case $(uname -m) in x86_64|amd64) NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;; esac

say() { echo "llamacpp: $*"; }
die() { echo "llamacpp: error: $*" >&2; exit 1; }

up_to_date() {
	for b in llama-server llama-quantize llama-ref; do
		[ -x "$BIN/$b" ] || return 1
	done
	[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] || return 1
	# llama-ref is ours: rebuild it when its source changed
	[ -z "$(find "$REF_C" -newer "$BIN/llama-ref")" ]
}

fetch_source() {
	[ -f "$SRC/CMakeLists.txt" ] && [ -f "$STAMP.src" ] &&
		[ "$(cat "$STAMP.src")" = "$PKG" ] && return 0
	for t in npm git tar; do
		command -v $t >/dev/null || die "$t not found"
	done
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamacpp.XXXXXX")
	say "fetching $PKG from the npm registry"
	(cd "$tmp" && npm pack --silent "$PKG" >/dev/null) ||
		die "npm pack $PKG failed (is the npm registry reachable?)"
	tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle ||
		die "no llama/gitRelease.bundle in $PKG"
	say "cloning llama.cpp from the git bundle"
	rm -rf "$SRC"
	git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC" ||
		die "git clone of the bundle failed"
	if [ ! -f "$SRC/CMakeLists.txt" ]; then	# bundle without HEAD
		ref=$(git -C "$SRC" for-each-ref --format='%(refname)' | head -1)
		git -C "$SRC" checkout -q "$ref" || die "cannot check out $ref"
	fi
	rm -rf "$tmp"
	echo "$PKG" > "$STAMP.src"
	say "llama.cpp $(git -C "$SRC" describe --tags --always 2>/dev/null || echo '?')"
}

build_llama() {
	command -v cmake >/dev/null || die "cmake not found"
	command -v g++ >/dev/null || die "g++ not found"
	: >"$DIR/build.log"
	say "configuring (cmake, Release, static)"
	# ggml's AMX kernels (enabled by -march=native on Sapphire Rapids)
	# die with SIGILL on q8_0/q4_0 matmuls in some VMs; the reference
	# needs to be right, not fast, so they are left out.
	cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
		-DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
		-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >"$DIR/cmake.log" 2>&1 ||
		die "cmake configure failed, see $DIR/cmake.log"
	say "building llama, llama-quantize, llama-server with -j$JOBS (takes a while; log: $DIR/build.log)"
	for target in llama llama-quantize llama-server; do
		say "  target $target"
		cmake --build "$BUILD" -j "$JOBS" --target "$target" >>"$DIR/build.log" 2>&1 ||
			die "building $target failed, see $DIR/build.log"
	done
	mkdir -p "$BIN"
	cp -f "$BUILD/bin/llama-quantize" "$BUILD/bin/llama-server" "$BIN/"
}

# Static archives in link order: llama before ggml before its backends/base.
link_libs() {
	for l in libllama.a libggml.a libggml-cpu.a libggml-base.a; do
		f=$(find "$BUILD" -name "$l" | head -1)
		[ -n "$f" ] || die "$l not found under $BUILD"
		printf '%s ' "$f"
	done
}

build_ref() {
	say "compiling llama-ref"
	libs=$(link_libs)
	# shellcheck disable=SC2086
	g++ -O2 $NO_AMX -x c "$REF_C" -x none -I"$SRC/include" -I"$SRC/ggml/include" \
		-o "$BIN/llama-ref.tmp" $libs -fopenmp -lpthread -lm ||
		die "compiling $REF_C failed"
	mv -f "$BIN/llama-ref.tmp" "$BIN/llama-ref"
}

up_to_date && exit 0
mkdir -p "$DIR"
rm -f "$STAMP"
fetch_source
build_llama		# incremental: quick when only llama-ref changed
build_ref
echo "$RECIPE" > "$STAMP"
say "done: $BIN"
