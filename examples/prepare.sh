#!/bin/sh
# examples/prepare.sh - everything the demo needs from a controlled task
# that needs no model, into DIR:
#
#   corpus.jsonl        DOCS prompt + response documents (base pretraining)
#   vocab.gguf          a byte-level BPE vocabulary learnt on the corpus
#   prompts.jsonl       every prompt of the task once (to sample pairs from)
#   eval-prompts.jsonl  40 prompts drawn with another seed (to evaluate)
#   pairs-task.jsonl    pairs made by the generator itself, labelled by the
#                       oracles (for tests, or before a base is trained)
#
#   sh examples/prepare.sh [-s SEED] [-n DOCS] [-v VOCAB] TASK DIR
#
# TASK is world, reviews or lists.  Run from the top of the checkout after
# make.  Deterministic given SEED.
set -eu
seed=1 docs=3000 vocab=1024
usage() { echo "usage: prepare.sh [-s SEED] [-n DOCS] [-v VOCAB] TASK DIR" >&2; exit 2; }
while getopts s:n:v: opt; do
	case $opt in
	s) seed=$OPTARG ;;
	n) docs=$OPTARG ;;
	v) vocab=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
task=$1 dir=$2
[ -f "examples/$task/$task.c" ] || { echo "prepare.sh: no task '$task' (world, reviews, lists)" >&2; exit 2; }
mkdir -p "$dir"
sh examples/build.sh
w=examples/bin/$task
$w corpus -s "$seed" -n "$docs" > "$dir/corpus.jsonl"
tools/parm-train vocab --size "$vocab" -o "$dir/vocab.gguf" "$dir/corpus.jsonl"
$w prompts --all > "$dir/prompts.jsonl"
$w prompts -s $((seed + 1000)) -n 40 > "$dir/eval-prompts.jsonl"
$w pairs -s $((seed + 1)) -n 2000 | $w label -s "$seed" > "$dir/pairs-task.jsonl"
echo "prepare.sh: $dir: $task, $docs documents, vocabulary, prompts, $(wc -l < "$dir/pairs-task.jsonl") pairs from the generator"
