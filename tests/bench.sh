#!/bin/sh
# tests/bench.sh - decode speed against the memory-bandwidth bound (make bench).
# The random models are made once and kept in ~/.cache/parm/bench.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
trap - EXIT
rm -rf "$T"
fx=$(fixtures_dir)
if [ -z "$fx" ] || [ ! -f "$fx/ggml-vocab-llama-spm.gguf" ]; then
	echo "bench: no llama.cpp vocab fixtures (make fixtures)" >&2
	exit 1
fi
tests/bench_train "$fx/ggml-vocab-llama-spm.gguf" "$@" || exit 1
tests/bench_mix "$fx/ggml-vocab-llama-spm.gguf" "$@" || exit 1
exec tests/bench_decode "$fx/ggml-vocab-llama-spm.gguf" "$@"
