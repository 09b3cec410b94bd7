#!/bin/sh
# examples/world/make-pairs.sh - preference pairs from a trained base, as
# the paper's data were made: two sampled responses per prompt, labelled for
# each objective by the world's oracles with Bradley-Terry noise.
#
#   sh examples/world/make-pairs.sh [-s SEED] [-n TOKENS] [-t TAU] [-k] \
#           BASE.gguf PROMPTS.jsonl > PAIRS.jsonl
#
# -s seeds the two samplers (SEED and SEED+1) and the labels; -n caps each
# response (default 48 tokens); -t is the Bradley-Terry temperature; -k
# adds the humour objective.  Pairs tied on an objective are dropped.
# Needs parm-logits and parm-sample on PATH and the world program beside
# this script (sh examples/world/build.sh) or in $WORLD.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
world=${WORLD:-$here/world}
# the tools of this checkout, when they are not installed
[ -x "$here/../../tools/parm-logits" ] && PATH="$here/../../tools:$PATH"
seed=1 tokens=48 tau=0.5 humour=
template='BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:'
while getopts s:n:t:k opt; do
	case $opt in
	s) seed=$OPTARG ;;
	n) tokens=$OPTARG ;;
	t) tau=$OPTARG ;;
	k) humour=-k ;;
	*) echo "usage: make-pairs.sh [-s SEED] [-n TOKENS] [-t TAU] [-k] BASE.gguf PROMPTS.jsonl" >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "make-pairs.sh: give BASE.gguf and PROMPTS.jsonl" >&2; exit 2; }
base=$1 prompts=$2
[ -x "$world" ] || { echo "make-pairs.sh: no $world (run sh examples/world/build.sh)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parm-pairs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
for j in 0 1; do
	parm-logits -n "$tokens" -T "$template" "$base" < "$prompts" |
		parm-sample --jsonl --seed $((seed + j)) > "$tmp/sample$j.jsonl"
done
"$world" label -s "$seed" -t "$tau" $humour "$tmp/sample0.jsonl" "$tmp/sample1.jsonl"
