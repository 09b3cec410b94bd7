#!/bin/sh
# examples/make-pairs.sh - preference pairs from a trained base, as the
# paper's data were made: two sampled responses per prompt, labelled for
# each objective by a controlled task's oracles with Bradley-Terry noise.
#
#   sh examples/make-pairs.sh [-s SEED] [-n TOKENS] [-t TAU] [-k] \
#           TASK BASE.gguf PROMPTS.jsonl > PAIRS.jsonl
#
# TASK is a task's name (world, reviews, lists: its program built by
# examples/build.sh into examples/bin) or the path of a task program.  -s
# seeds the two samplers (SEED and SEED+1) and the labels; -n caps each
# response (default 48 tokens); -t is the Bradley-Terry temperature; -k
# labels every objective the task has (world: humour too).  The prompts are
# wrapped in the task's template.  Pairs tied on an objective are dropped.
# Needs parm-logits and parm-sample on PATH (this checkout's are used when
# they are not installed).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/../tools/parm-logits" ] && PATH="$here/../tools:$PATH"
seed=1 tokens=48 tau=0.5 all=
usage() {
	echo "usage: make-pairs.sh [-s SEED] [-n TOKENS] [-t TAU] [-k] TASK BASE.gguf PROMPTS.jsonl" >&2
	exit 2
}
while getopts s:n:t:k opt; do
	case $opt in
	s) seed=$OPTARG ;;
	n) tokens=$OPTARG ;;
	t) tau=$OPTARG ;;
	k) all=-k ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 3 ] || usage
case $1 in */*) task=$1 ;; *) task=$here/bin/$1 ;; esac
base=$2 prompts=$3
[ -x "$task" ] || { echo "make-pairs.sh: no $task (run sh examples/build.sh)" >&2; exit 1; }
eval "$("$task" info)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parm-pairs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
for j in 0 1; do
	parm-logits -n "$tokens" -T "$TASK_TEMPLATE" "$base" < "$prompts" |
		parm-sample --json --seed $((seed + j)) > "$tmp/sample$j.jsonl"
done
"$task" label -s "$seed" -t "$tau" $all "$tmp/sample0.jsonl" "$tmp/sample1.jsonl"
