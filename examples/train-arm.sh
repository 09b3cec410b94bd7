#!/bin/sh
# examples/train-arm.sh - scripting training runs with parm-train.
#
# Makes a tiny base model, a synthetic preference set with two conflicting
# objectives ("good" pleases objective A, "bad" pleases objective B), then
# trains one PARM for both and one GenARM per objective, and prints how each
# ranks held-out pairs across the preference grid.  Runs in a few tens of
# seconds on a laptop; every run is resumable: kill it, run it again.
#
# usage: examples/train-arm.sh VOCAB.gguf [WORKDIR]   (from the top, after make)
set -eu

vocab=${1:?usage: examples/train-arm.sh VOCAB.gguf [WORKDIR]}
case $vocab in /*) ;; *) vocab=$(pwd)/$vocab ;; esac
PATH="$(pwd)/tools:$PATH"
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/train-arm.XXXXXX")}
mkdir -p "$work" && cd "$work"
echo "working in $work" >&2

[ -e base.gguf ] || parm-train init --vocab "$vocab" --dim 32 --layers 1 --heads 2 \
	--ctx 64 -o base.gguf

# PKU-SafeRLHF layout, with our own label fields a and b.
pairs() {  # pairs SEED COUNT
	awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed)
	split("the a my your one some big small red blue", w, " ")
	for (i = 0; i < n; i++) {
		p = w[int(rand() * 10) + 1] " " w[int(rand() * 10) + 1]
		f = w[int(rand() * 10) + 1]; x = rand() < 0.5
		printf "{\"prompt\":\"%s\",\"response_0\":\"%s %s\",\"response_1\":\"%s %s\",\"a\":%d,\"b\":%d}\n",
			p, x ? "good" : "bad", f, x ? "bad" : "good", f, x ? 0 : 1, x ? 1 : 0
	} }'
}
pairs 1 400 > train.jsonl
pairs 2 100 > held.jsonl

# Options every run shares: small batches, a learning rate for tiny models.
common="--template {prompt}: --batch 8 --lr 1e-2 --warmup 5 --beta 1 --steps 50"
resume() { [ -e "$1.ckpt" ] && echo --resume || true; }   # continue a killed run

parm-train arm $common --objective A=a --objective B=b $(resume parm.gguf) \
	-o parm.gguf base.gguf train.jsonl
for obj in a b; do
	O=$(echo $obj | tr ab AB)
	parm-train arm $common --objective $O=$obj $(resume genarm-$obj.gguf) \
		-o genarm-$obj.gguf base.gguf train.jsonl
done

echo "PARM: accuracy of A and B on held-out pairs along the preference grid"
parm-eval accuracy --template '{prompt}:' --objective A=a --objective B=b --grid 5 --details \
	parm.gguf held.jsonl |
	awk 'NR > 1 { printf "alpha %-10s  A %.2f (margin %+.3f)  B %.2f (margin %+.3f)\n", $1, $2, $6, $3, $7 }'
echo "GenARM: each ARM on its own objective"
parm-eval accuracy --template '{prompt}:' --objective A=a genarm-a.gguf held.jsonl
parm-eval accuracy --template '{prompt}:' --objective B=b genarm-b.gguf held.jsonl
