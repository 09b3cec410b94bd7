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
# llama.cpp's own llama-bench and llama-batched-bench, in the reference build make check keeps
# (built here once: make check does not need it)
ref=$HOME/.cache/parm/llama.cpp
for tool in llama-bench llama-batched-bench; do
	if [ -d "$ref/build" ] && [ ! -x "$ref/build/bin/$tool" ]; then
		echo "bench: building $tool in $ref/build (once; log: $ref/bench-build.log)" >&2
		cmake --build "$ref/build" -j "$(nproc)" --target $tool >"$ref/bench-build.log" 2>&1 ||
			echo "bench: building $tool failed: its columns are 0" >&2
	fi
done
out=$(mktemp) || exit 1
tests/bench_train "$fx/ggml-vocab-llama-spm.gguf" "$@" > "$out"
status=$?
cat "$out"
[ $status -eq 0 ] || { rm -f "$out"; exit 1; }
# The official code's step in PyTorch on the same shapes (Debian's
# python3-torch, for /usr/bin/python3), and parm's speed over it.
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	/usr/bin/python3 tests/bench_torch.py --threads "$(nproc)" | tee -a "$out"
	awk '$1 == "arm" || $1 == "lm" { parm[$1] = $10 }
	     $1 == "torch" { torch[$2] = $(NF - 1) }
	     END { for (m in torch) if (parm[m] && torch[m])
		printf "%s: parm %.0f tok/s, PyTorch %.0f: %.2fx\n", m, parm[m], torch[m], parm[m] / torch[m] }' "$out"
else
	echo "bench: no PyTorch row (python3-torch is not installed: apt-get install python3-torch)"
fi
rm -f "$out"
tests/bench_mix "$fx/ggml-vocab-llama-spm.gguf" "$@" || exit 1
exec tests/bench_decode "$fx/ggml-vocab-llama-spm.gguf" "$@"
