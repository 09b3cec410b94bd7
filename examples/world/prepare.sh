#!/bin/sh
# examples/world/prepare.sh - everything the demo needs from the world
# that needs no model, into DIR:
#
#   corpus.jsonl        3000 prompt + response documents (base pretraining)
#   vocab.gguf          a byte-level BPE vocabulary learnt on the corpus
#   prompts.jsonl       all 120 prompts (to sample preference pairs from)
#   eval-prompts.jsonl  40 prompts drawn with another seed (to evaluate)
#   pairs-world.jsonl   pairs made by the generator itself, labelled by the
#                       oracles (for tests, or before a base is trained)
#
#   sh examples/world/prepare.sh [-s SEED] [-n DOCS] [-v VOCAB] DIR
#
# Run from the top of the checkout after make.  Deterministic given SEED.
set -eu
seed=1 docs=3000 vocab=1024
while getopts s:n:v: opt; do
	case $opt in
	s) seed=$OPTARG ;;
	n) docs=$OPTARG ;;
	v) vocab=$OPTARG ;;
	*) echo "usage: prepare.sh [-s SEED] [-n DOCS] [-v VOCAB] DIR" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: prepare.sh [-s SEED] [-n DOCS] [-v VOCAB] DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
sh examples/world/build.sh
w=examples/world/world
$w corpus -s "$seed" -n "$docs" > "$dir/corpus.jsonl"
examples/world/make-vocab -n "$vocab" -o "$dir/vocab.gguf" "$dir/corpus.jsonl"
$w prompts --all > "$dir/prompts.jsonl"
$w prompts -s $((seed + 1000)) -n 40 > "$dir/eval-prompts.jsonl"
$w pairs -s $((seed + 1)) -n 2000 | $w label -s "$seed" > "$dir/pairs-world.jsonl"
echo "prepare.sh: $dir: $docs documents, vocabulary, prompts, $(wc -l < "$dir/pairs-world.jsonl") world pairs"
