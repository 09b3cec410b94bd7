#!/bin/sh
# examples/demo.sh - what `make demo` runs: PARM steering a frozen model
# along a preference vector, measured against GenARM and the unguided base,
# on a controlled task (known rewards, nothing fetched): $TASK, one of
# examples/world (the default), examples/reviews or examples/lists.
#
#  1. trains a small base on the task's corpus (parm-train lm);
#  2. samples preference pairs from it, labelled by the oracles
#     (examples/make-pairs.sh over several seeds);
#  3. trains on the same backbone, data and budget one PARM for the k
#     objectives and k GenARM ARMs (one objective each);
#  4. generates for a grid of preference vectors (k = 2: the 11 vectors
#     (0,1) ... (1,0); k = 3: the 15 with coordinates in steps of 1/4)
#     through the pipe: parm-logits | [parm-mix] | parm-sample, timing each
#     method;
#  5. scores every response with the oracles (parm-eval score), prints the
#     table (mean rewards with standard errors, HV, MIP, time per token)
#     and draws the fronts (fronts.svg).
#
# Run from the top of the checkout after `make`.  Everything goes into
# $DEMO_DIR (default demo-out/, for tasks other than the world demo-out/TASK):
# a step whose output is there is not run
# again, so an interrupted demo continues where it stopped.  The seeds are
# fixed: the same settings give the same base, and ARMs that differ only in
# rounding.  The DEMO_* variables below change the sizes; tests/t_demo.sh
# runs this script with tiny ones.
set -eu

top=$(pwd)
[ -x "$top/tools/parm-logits" ] && [ -f "$top/examples/prepare.sh" ] || {
	echo "demo: run me from the top of the checkout after make" >&2
	exit 1
}
: "${TASK:=world}"
[ -f "$top/examples/$TASK/$TASK.c" ] || {
	echo "demo: no task '$TASK' (world, reviews, lists)" >&2
	exit 2
}
sh examples/build.sh
task=$top/examples/bin/$TASK
eval "$("$task" info)"
k=$(echo $TASK_OBJECTIVES | wc -w)
PATH="$top/tools:$PATH"
export PATH

# The sizes and hyper-parameters, each overridable from the environment.
: "${DEMO_DIR:=$top/demo-out$([ "$TASK" = world ] || echo "/$TASK")}"
: "${DEMO_SEED:=1}"             # every seed below is derived from it
: "${DEMO_DOCS:=$TASK_DOCS}"     # corpus documents for the base (world 3000)
: "${DEMO_DIM:=128}" "${DEMO_LAYERS:=4}" "${DEMO_HEADS:=4}" "${DEMO_CTX:=256}"
: "${DEMO_LM_EPOCHS:=4}" "${DEMO_LM_LR:=2e-3}" "${DEMO_LM_BATCH:=16}"
: "${DEMO_PAIR_SEEDS:=20}"      # make-pairs.sh runs (~40 pairs each)
: "${DEMO_PAIR_PROMPTS:=$TASK_PROMPTS}"  # prompts each run samples from (all)
: "${DEMO_ARM_EPOCHS:=2}" "${DEMO_ARM_LR:=5e-3}" "${DEMO_ARM_BATCH:=16}"
: "${DEMO_BETA:=0.1}" "${DEMO_R1:=4}" "${DEMO_R2:=4}" "${DEMO_TARGETS:=q,k,v}"
# PARM's options beyond those all ARMs share: by default the compute of the
# k GenARM ARMs (k times the epochs), alpha a vertex half the time, and the
# ranks moved to the preference-aware part (r1 1, r2 8, the scale kept at
# 2); examples/README.md, "PARM against GenARM", says why.  DEMO_PARM_ARGS=
# is the official recipe at one ARM's budget.
: "${DEMO_PARM_ARGS=--epochs $((k * DEMO_ARM_EPOCHS)) --vertex 0.5 --r1 1 --r2 8 --lora-alpha 16}"
: "${DEMO_HELD_SEEDS:=10}"      # make-pairs.sh runs for the held-out pairs
: "${DEMO_WEIGHT:=1}"           # guidance weight w
: "${DEMO_TOKENS:=48}"          # tokens per response
: "${DEMO_TEMP:=0.8}"           # sampling temperature (0: greedy, as PARM's code)
: "${DEMO_EVAL_PROMPTS:=40}"    # evaluation prompts (at most 40)
: "${DEMO_EVAL_REPEAT:=3}"      # responses sampled per prompt and vector
: "${DEMO_GRID:=$([ "$k" -eq 2 ] && echo 11 || echo 5)}"  # grid points per simplex edge

out=$DEMO_DIR
template=$TASK_TEMPLATE
objectives=$TASK_OBJECTIVES
mkdir -p "$out" "$out/gen"
case $out in /*) ;; *) out=$(cd "$out" && pwd) ;; esac

say() { printf '\n== %s\n' "$*"; }

# Show a command, then run it in the output directory.
run() {
	printf '$ %s\n' "$*"
	(cd "$out" && eval "$*")
}

# Show a command, then run it from the top of the checkout.
run_top() {
	printf '$ %s\n' "$*"
	eval "$*"
}

# Every step records the settings it depends on (those of the steps before
# it too) in FILE.stamp before it starts: a finished output with the same
# stamp is kept, a killed training run with the same stamp resumes, and
# anything made with other settings is made again.
stamp=
depends() { for v; do stamp="$stamp $v=$(eval echo "\$$v")"; done; }
have() {  # have FILE: FILE is there, or its step must run (it is stamped)
	if [ "$(cat "$out/$1.stamp" 2>/dev/null)" = "$stamp" ]; then
		[ -s "$out/$1" ] && { echo "   ($1 is there from an earlier run)"; return 0; }
	else
		rm -f "$out/$1" "$out/$1.ckpt"
		echo "$stamp" > "$out/$1.stamp"
	fi
	return 1
}
resume() { [ -e "$out/$1.ckpt" ] && echo --resume || true; }  # a killed run continues

start=$(date +%s)
echo "parm demo, task $TASK, in $out"

say "0. The task: corpus, BPE vocabulary and prompts (examples/$TASK)"
depends TASK DEMO_SEED DEMO_DOCS
have eval-prompts.jsonl ||
	run_top sh examples/prepare.sh -s "$DEMO_SEED" -n "$DEMO_DOCS" "$TASK" "'$out'"

say "1. The base: a llama of dim $DEMO_DIM, $DEMO_LAYERS layers, trained on the corpus"
depends DEMO_DIM DEMO_LAYERS DEMO_HEADS DEMO_CTX
have init.gguf ||
	run parm-train init --vocab vocab.gguf --dim "$DEMO_DIM" --layers "$DEMO_LAYERS" \
		--heads "$DEMO_HEADS" --ctx "$DEMO_CTX" --seed "$DEMO_SEED" -o init.gguf
depends DEMO_LM_EPOCHS DEMO_LM_LR DEMO_LM_BATCH
have base.gguf ||
	run parm-train lm --epochs "$DEMO_LM_EPOCHS" --batch "$DEMO_LM_BATCH" \
		--lr "$DEMO_LM_LR" --max-length "$DEMO_CTX" --seed "$DEMO_SEED" \
		$(resume base.gguf) -o base.gguf init.gguf corpus.jsonl

say "2. Preference pairs: two responses per prompt sampled from the base,"
echo "   labelled by the oracles with Bradley-Terry noise, $DEMO_PAIR_SEEDS seeds"
depends DEMO_PAIR_SEEDS DEMO_PAIR_PROMPTS DEMO_TOKENS
if ! have pairs.jsonl; then
	head -n "$DEMO_PAIR_PROMPTS" "$out/prompts.jsonl" > "$out/pair-prompts.jsonl"
	i=0
	: > "$out/pairs.part"
	while [ $i -lt "$DEMO_PAIR_SEEDS" ]; do
		# make-pairs.sh samples with seeds S and S+1: odd S never share one
		s=$((DEMO_SEED * 1000 + 2 * i + 1))
		run sh "'$top/examples/make-pairs.sh'" -s $s -n "$DEMO_TOKENS" \
			"$TASK" base.gguf pair-prompts.jsonl ">>" pairs.part
		i=$((i + 1))
	done
	mv "$out/pairs.part" "$out/pairs.jsonl"
fi
echo "   $(wc -l < "$out/pairs.jsonl") pairs; one:"
head -n 1 "$out/pairs.jsonl" | cut -c 1-300

say "3. The reward models, same backbone, data and budget: PARM (k = $k) and"
echo "   GenARM (one ARM per objective); accuracy on held-out pairs as they train"
arm() {  # arm OUT EXTRA OBJECTIVE...
	o=$1 extra=$2; shift 2
	obj=
	for x in "$@"; do obj="$obj --objective $x"; done
	have "$o" ||
		run parm-train arm --epochs "$DEMO_ARM_EPOCHS" --batch "$DEMO_ARM_BATCH" \
			--lr "$DEMO_ARM_LR" --beta "$DEMO_BETA" --r1 "$DEMO_R1" --r2 "$DEMO_R2" \
			--targets "$DEMO_TARGETS" --max-length "$DEMO_CTX" --overlong truncate \
			--template "'$template'" --seed "$DEMO_SEED" $obj $extra $(resume "$o") \
			-o "$o" base.gguf pairs.jsonl
}
depends DEMO_ARM_EPOCHS DEMO_ARM_LR DEMO_ARM_BATCH DEMO_BETA DEMO_R1 DEMO_R2 DEMO_TARGETS
for x in $objectives; do
	arm "genarm-${x%%=*}.gguf" "" "$x"
done
genarm_stamp=$stamp
depends DEMO_PARM_ARGS
arm parm.gguf "$DEMO_PARM_ARGS" $objectives

say "3b. Accuracy on $DEMO_HELD_SEEDS more seeds' pairs, labelled by the oracles without noise:"
echo "   PARM at alpha = e_i against GenARM's ARM for objective i"
stamp=$genarm_stamp
depends DEMO_HELD_SEEDS
if ! have held-pairs.jsonl; then
	i=0
	: > "$out/held.part"
	while [ $i -lt "$DEMO_HELD_SEEDS" ]; do
		s=$((DEMO_SEED * 1000 + 501 + 2 * i))
		run sh "'$top/examples/make-pairs.sh'" -t 0 -s $s -n "$DEMO_TOKENS" \
			"$TASK" base.gguf pair-prompts.jsonl ">>" held.part
		i=$((i + 1))
	done
	mv "$out/held.part" "$out/held-pairs.jsonl"
fi
depends DEMO_PARM_ARGS
if ! have accuracy.tsv; then
	run parm-eval accuracy --details --max-length "$DEMO_CTX" --overlong truncate parm.gguf \
		held-pairs.jsonl "> held-parm.tsv"
	: > "$out/held-genarm.tsv"
	for x in $objectives; do
		run parm-eval accuracy --details --max-length "$DEMO_CTX" --overlong truncate \
			"genarm-${x%%=*}.gguf" held-pairs.jsonl ">> held-genarm.tsv"
	done
	# objective, PARM's share at e_i, GenARM's, the difference and its
	# standard error (the two shares' errors combined), the pairs counted.
	# parm-eval --details: a header naming the objectives, then a row per
	# alpha (e_i first): alpha, k shares, k pair counts, k margins.
	awk 'BEGIN { print "objective\tparm\tgenarm\tdifference\tse\tpairs" }
	     NR == FNR && FNR == 1 { k = (NF - 1) / 3; for (i = 1; i <= k; i++) name[i] = $(i + 1); next }
	     NR == FNR { i = FNR - 1; if (i <= k) { p[name[i]] = $(i + 1); n[name[i]] = $(k + i + 1) }; next }
	     $1 == "alpha" { o = $2; next }
	     $1 == "1" { g = $2; d = p[o] - g; m = n[o]
	       se = sqrt(p[o] * (1 - p[o]) / m + g * (1 - g) / m)
	       printf "%s\t%.4f\t%.4f\t%+.4f\t%.4f\t%d\n", o, p[o], g, d, se, m }' \
		"$out/held-parm.tsv" "$out/held-genarm.tsv" > "$out/accuracy.part"
	mv "$out/accuracy.part" "$out/accuracy.tsv"
fi
cat "$out/accuracy.tsv"

say "4. Generation for $DEMO_GRID preference vectors, $DEMO_EVAL_PROMPTS prompts $DEMO_EVAL_REPEAT times each,"
echo "   temperature $DEMO_TEMP, $DEMO_TOKENS tokens at most, guidance weight $DEMO_WEIGHT"
head -n "$DEMO_EVAL_PROMPTS" "$out/eval-prompts.jsonl" > "$out/gen/once.jsonl"
for i in $(seq "$DEMO_EVAL_REPEAT"); do cat "$out/gen/once.jsonl"; done > "$out/gen/prompts.jsonl"
logits="parm-logits -n $DEMO_TOKENS -T '$template' base.gguf < gen/prompts.jsonl"
sample="parm-sample --temp $DEMO_TEMP --seed $DEMO_SEED --json"
now_ms() { date +%s%3N; }
# PARM's generations depend on DEMO_PARM_ARGS, the others not
stamp=$genarm_stamp
depends DEMO_WEIGHT DEMO_TEMP DEMO_EVAL_PROMPTS DEMO_EVAL_REPEAT DEMO_GRID
gen_stamp=$stamp
depends DEMO_PARM_ARGS
made_base= made_parm= made_genarm=
# gen METHOD NAME MIX: one generation, timed, listed among METHOD's
gen() {
	f=gen/$2.jsonl
	eval "made_$1=\"\$made_$1 $f\""
	all_stamp=$stamp
	[ "$1" = parm ] || stamp=$gen_stamp
	have $f && { stamp=$all_stamp; return 0; }
	stamp=$all_stamp
	t0=$(now_ms)
	run "$logits |${3:+ $3 |} $sample > $f.part"
	echo "$(($(now_ms) - t0))" > "$out/$f.ms"
	mv "$out/$f.part" "$out/$f"
}
gen base base ""
# The grid: every alpha whose k coordinates are multiples of 1/(n - 1),
# the first coordinate rising (k = 2: (0,1), (0.1,0.9) ... (1,0)).
grid() {
	awk -v k="$k" -v n="$DEMO_GRID" '
	function walk(i, left, pre,   c) {
		if (i == k) { print substr(pre "," left / (n - 1), 2); return }
		for (c = 0; c <= left; c++)
			walk(i + 1, left - c, pre "," c / (n - 1))
	}
	BEGIN { walk(1, n - 1, "") }'
}
for a in $(grid); do
	gen parm "parm-$a" "parm-mix --pref $a -w $DEMO_WEIGHT parm.gguf"
	# GenARM: log pi_base + w sum_i a_i log pi_i, one stage per objective
	chain= i=0
	for x in $objectives; do
		i=$((i + 1))
		wi=$(echo "$a" | awk -F, -v i=$i -v w="$DEMO_WEIGHT" '{ print $i * w }')
		chain="$chain${chain:+ | }parm-mix -w $wi genarm-${x%%=*}.gguf"
	done
	gen genarm "genarm-$a" "$chain"
done

# Time per token: each method's wall time over the tokens it generated.
for m in base parm genarm; do
	files=$(eval echo "\$made_$m")
	(cd "$out" && for f in $files; do cat $f.ms; done) |
		awk -v m=$m '{ ms += $1 } END { printf "%s\t%.3f\t", m, ms / 1000 }'
	(cd "$out" && cat $files) | grep -o '"tokens":\[[^]]*\]' |
		awk -F, '{ n += ($0 ~ /\[\]/) ? 0 : NF } END { print n }'
done | awk 'BEGIN { print "method\tseconds\ttokens\tms_per_token" }
	{ printf "%s\t%s\t%d\t%.3f\n", $1, $2, $3, 1000 * $2 / $3 }' > "$out/times.tsv"

say "5. Scores: the oracles read every response ($TASK score), parm-eval groups"
echo "   them by method and preference vector and compares the fronts"
if ! have table.tsv || [ ! -s "$out/fronts.svg" ]; then
	scorers=
	for x in $objectives; do
		scorers="$scorers --scorer '${x%%=*}=$task score ${x%%=*}'"
	done
	run parm-eval score $scorers -P fronts.svg \
		$made_base $made_parm $made_genarm "> table.part"
	mv "$out/table.part" "$out/table.tsv"
fi
echo
cat "$out/table.tsv"

# Does each method's front follow alpha?  Every grid step that moves
# weight d from objective j to objective i should not lower objective i's
# mean reward: count the steps that do, by more than one standard error
# (the two means' errors combined).
awk -v k="$k" -v step="$(awk -v n="$DEMO_GRID" 'BEGIN { print 1 / (n - 1) }')" '
BEGIN { FS = "\t" }
NR == 1 { for (i = 4; i <= NF; i += 2) name[(i - 2) / 2] = $i; next }
$0 == "" { done = 1 }
done || $2 == "-" || $1 == "method" { next }
{ m = $1; a = $2; key[m, a] = 1; methods[m] = 1
  for (i = 1; i <= k; i++) { mean[m, a, i] = $(2 + 2 * i); se[m, a, i] = $(3 + 2 * i) } }
function moved(p, i, j,   c, v, q) {  # p with weight step moved from j to i
	for (c = 1; c <= k; c++) {
		v = sprintf("%.6g", p[c] + (c == i ? step : c == j ? -step : 0))
		q = q (c > 1 ? "," : "") (v == "-0" ? "0" : v)
	}
	return q
}
END {
	for (m in methods) for (i = 1; i <= k; i++) {
		steps = bad = 0
		for (kk in key) {
			split(kk, pk, SUBSEP)
			if (pk[1] != m)
				continue
			split(pk[2], p, ",")
			for (j = 1; j <= k; j++) {
				if (j == i || p[j] <= 0 || !((m, q = moved(p, i, j)) in key))
					continue
				steps++
				bad += mean[m, q, i] < mean[m, pk[2], i] - sqrt(se[m, q, i]^2 + se[m, pk[2], i]^2)
			}
		}
		printf "%s\t%s\t%d\t%d\n", m, name[i], steps, bad
	}
}' "$out/table.tsv" | sort > "$out/monotone.part"
{ printf 'method\tobjective\tsteps\tagainst\n'; cat "$out/monotone.part"; } > "$out/monotone.tsv"
rm -f "$out/monotone.part"
echo
echo "steps of alpha towards an objective that lower its mean by more than one s.e.:"
cat "$out/monotone.tsv"
echo
echo "time per token (wall time of each method's generation, all prompts and alphas):"
cat "$out/times.tsv"
echo
echo "the fronts: $out/fronts.svg; the responses: $out/gen/"
echo "demo: done in $(($(date +%s) - start)) s"
