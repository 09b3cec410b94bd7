#!/bin/sh
# tests/t_owndata.sh - training on your own data at small scale, end to end
# (issue 14): the recipe of parm-train(1), run word for word as the page
# gives it, on a task of its own (tests/owndata.awk): a vocabulary, a base,
# a PARM, its accuracy, guided generation, scores and fronts.  The checks
# are the figures the page quotes, with room for another machine's rounding
# (which moves the ARM as another seed would: a few pairs of accuracy).
. tests/lib.sh
top=$PWD
task=$top/tests/owndata.awk
cd "$T" || exit 1

awk -v mode=corpus -v seed=1 -v n=3000 -f "$task" > corpus.jsonl
awk -v mode=pairs -v seed=2 -v n=1600 -f "$task" > pairs.jsonl
awk -v mode=pairs -v seed=3 -v n=200 -f "$task" > held.jsonl
awk -v mode=prompts -v seed=4 -v n=240 -f "$task" > prompts.txt
for o in helpful harmless; do
	printf '#!/bin/sh\nexec awk -v mode=score -v objective=%s -f "%s"\n' $o "$task" > rate-$o
	chmod +x rate-$o
done
man_commands "$top/man/parm-train.1" ".Ss Training on your own data at small scale" > recipe.cmds
{ echo 'set -e'; tr '\001' '\n' < recipe.cmds; } > recipe.sh

ok "parm-train(1)'s own-data recipe runs as the page gives it" sh -c '
	[ $(wc -l < recipe.cmds) -ge 8 ] && grep -q "^parm-train arm" recipe.cmds &&
	sh recipe.sh > recipe.out 2> recipe.err || { tail -5 recipe.err >&2; exit 1; }'
ok "vocab: the corpus's own vocabulary, a few hundred tokens" sh -c '
	n=$(sed -n "s/^parm-train: vocab: 3000 documents, \([0-9]*\) tokens.*/\1/p" recipe.err) &&
	echo "$n tokens" >&2 && [ "$n" -gt 256 ] && [ "$n" -lt 512 ]'

# well_formed FILE N: FILE holds N responses, 9 in 10 at least in the
# task's form " the THING is W, W, W and W."
well_formed() {
	n=$(wc -l < "$1")
	w=$(grep -c '"response":" the [a-z]* is [a-z]*, [a-z]*, [a-z]* and [a-z]*\."' "$1")
	echo "$1: $w of $n well-formed" >&2
	[ "$n" -eq "$2" ] && [ $((10 * w)) -ge $((9 * n)) ]
}
ok "lm: the base writes the task's sentences" well_formed base.jsonl 240
ok "guided, the text stays in the task's form" well_formed parm.jsonl 480

# The row of ALPHA in parm-eval accuracy --details's table (alpha, the two
# shares, pairs, margins) and in parm-eval score's summary (method, alpha,
# n, then mean and standard error per score).
accuracy_row() { awk -v a="$1" '$1 == a && NF == 7' recipe.out; }
score_row() { awk -v m="$1" -v a="$2" '$1 == m && $2 == a && NF == 8' recipe.out; }

vertices_rank_their_objective() {
	h=$(accuracy_row 1,0) s=$(accuracy_row 0,1)
	echo "accuracy at e_helpful: $h; at e_harmless: $s" >&2
	echo "$h $s" | awk '{ exit !(NF == 14 && $2 >= 0.65 && $2 > $9 && $10 >= 0.65 && $10 > $3) }'
}
ok "PARM: at each vertex its objective is ranked best, at 0.65 or more (held-out pairs)" \
	vertices_rank_their_objective

guidance_moves_each_score() {
	b=$(score_row base -) h=$(score_row parm 1,0) s=$(score_row parm 0,1)
	printf 'base: %s\nparm 1,0: %s\nparm 0,1: %s\n' "$b" "$h" "$s" >&2
	echo "$b $h $s" | awk '{ exit !(NF == 24 && $12 > $20 && $12 > $4 && $22 > $14 && $22 > $6) }'
}
ok "guided at e_helpful the text is more helpful, at e_harmless more harmless" \
	guidance_moves_each_score
ok "parm-eval score: PARM's two vectors make a front of 2, drawn" sh -c "
	awk '\$1 == \"parm\" && NF == 5 && \$2 == 2 && \$3 == 2 { f = 1 } END { exit !f }' recipe.out &&
	grep -q '<svg' front.svg"
done_testing
