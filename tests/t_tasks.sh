#!/bin/sh
# t_tasks.sh - the two controlled tasks beside the world (examples/reviews,
# examples/lists): deterministic generators, oracles that order
# hand-written responses as their definitions say and read any text, labels
# that are the oracles' verdicts without noise, `TASK info` as the scripts
# read it, and demo.sh end to end on each with tiny sizes (that it runs and
# writes every table row and the diagnostics; how well PARM and GenARM do
# at a useful size is what examples/README.md shows).
. tests/lib.sh

B=$T/bin
ok "the examples' programs build" sh examples/build.sh "$B"

for t in reviews lists; do
	W=$B/$t
	"$W" corpus -s 5 -n 200 > "$T/$t.c1"
	"$W" corpus -s 5 -n 200 > "$T/$t.c2"
	"$W" corpus -s 6 -n 200 > "$T/$t.c3"
	ok "$t corpus: the same seed gives the same documents" cmp "$T/$t.c1" "$T/$t.c2"
	ok "$t corpus: another seed gives others" sh -c "! cmp -s '$T/$t.c1' '$T/$t.c3'"
	ok "$t info: sh assignments of the template, objectives and prompts" sh -c "
		eval \"\$('$W' info)\" && [ \"\$TASK_NAME\" = $t ] && [ -n \"\$TASK_OBJECTIVES\" ] &&
		p=\$(printf '%s' \"\$TASK_TEMPLATE\" | sed 's/{prompt}.*//') &&
		[ \$(grep -cF \"\\\"prompt\\\":\\\"\$p\" '$T/$t.c1') -eq 200 ] &&
		[ \$('$W' prompts --all | sort -u | wc -l) -eq \"\$TASK_PROMPTS\" ]"
	ok "$t corpus: responses start with a space and vary in length" sh -c "
		[ \$(grep -c '\"response\":\" [A-Za-z]' '$T/$t.c1') -eq 200 ] &&
		[ \$(sed 's/.*\"response\"://' '$T/$t.c1' | awk '{ print NF }' | sort -un | wc -l) -ge 8 ]"
	"$W" pairs -s 2 -n 400 > "$T/$t.pairs"
	"$W" label -t 0 < "$T/$t.pairs" > "$T/$t.l0"
	eval "$("$W" info)"
	for x in $TASK_OBJECTIVES; do
		o=${x%%=*} f=${x#*=}
		ok "$t label -t 0: $f is where $o is higher" sh -c "
			[ \$(wc -l < '$T/$t.l0') -gt 100 ] &&
			'$W' score -f response_0 $o < '$T/$t.l0' > '$T/r0' &&
			'$W' score -f response_1 $o < '$T/$t.l0' > '$T/r1' &&
			sed 's/.*\"$f\":\([01]\).*/\1/' '$T/$t.l0' | paste '$T/r0' '$T/r1' - |
			awk '(\$1 > \$2) != (\$3 == 0) { bad++ } END { exit bad > 0 }'"
	done
done

# score TASK OBJECTIVE PROMPT RESPONSE: the oracle's number
score() {
	printf '{"prompt": "%s", "response": "%s"}\n' "$3" "$4" | "$B/$1" score "$2"
}
is() {  # is DESCRIPTION EXPECTED TASK OBJECTIVE PROMPT RESPONSE
	d=$1 e=$2; shift 2
	got=$(score "$@")
	ok "$d ($got)" test "$got" = "$e"
}
P='What do you think of the phone?'
is "reviews positive: a positive adjective" 1 reviews positive "$P" ' The phone is great.'
is "reviews positive: 'not' turns it" -1 reviews positive "$P" ' The phone is not great.'
is "reviews positive: a word counts once" 1 reviews positive "$P" ' It is great. It was great, great!'
is "reviews positive: praise and fault" 0 reviews positive "$P" ' It is lovely, but the price is substandard.'
is "reviews positive: 'nothing' is not 'not'" 1 reviews positive "$P" ' Nothing great.'
is "reviews formal: formal words" 2 reviews formal "$P" ' Overall, the phone is excellent.'
is "reviews formal: casual words" -3 reviews formal "$P" ' Dude, it is totally awesome!'
is "reviews formal: plain words" 0 reviews formal "$P" ' The phone is very good.'
is "reviews formal: a phrase" 1 reviews formal "$P" ' In summary, it is okay.'
is "reviews: garbled text scores" 1 reviews positive "$P" ' teh phone iz grate, great!!'
Q='Name some fruits.'
is "lists complete: items of the kind" 3 lists complete "$Q" ' Apple, pear and plum.'
is "lists complete: another kind's item costs" 1 lists complete "$Q" ' Apple, pear and tiger.'
is "lists complete: a repeat earns nothing" 1 lists complete "$Q" ' Apple and apple.'
is "lists brief: words count" -1 lists brief "$Q" ' Sure: apple and pear.'
is "lists sorted: in order" 2 lists sorted "$Q" ' Apple, pear and plum.'
is "lists sorted: out of order" -2 lists sorted "$Q" ' Plum, pear and apple.'
is "lists sorted: one item" 0 lists sorted "$Q" ' Apple. I hope that helps.'
is "lists complete: no kind asked, every item costs" -1 lists complete 'Hello' ' Apple.'
printf '%s\n' '{}' '{"prompt": 1, "response": null}' '{"response": "\u0000 ha"}' > "$T/junk"
ok "every oracle gives odd records a number" sh -c "
	for o in positive formal; do [ \$('$B/reviews' score \$o < '$T/junk' | grep -cE '^-?[0-9.]+$') -eq 3 ] || exit 1; done
	for o in complete brief sorted; do [ \$('$B/lists' score \$o < '$T/junk' | grep -cE '^-?[0-9.]+$') -eq 3 ] || exit 1; done"
fails "an unknown objective is refused" "lists: score: no objective 'helpful'" "$B/lists" score helpful
fails "demo.sh: an unknown task is refused" "no task 'nope'" env TASK=nope sh examples/demo.sh

# ---- demo.sh end to end, tiny ----

tiny() {  # tiny TASK: demo.sh with tiny sizes into $T/demo-TASK
	env TASK="$1" DEMO_DIR="$T/demo-$1" DEMO_DOCS=300 DEMO_DIM=32 DEMO_LAYERS=1 \
		DEMO_HEADS=2 DEMO_CTX=96 DEMO_LM_EPOCHS=1 DEMO_LM_LR=1e-2 DEMO_LM_BATCH=8 \
		DEMO_PAIR_SEEDS=2 DEMO_PAIR_PROMPTS=20 DEMO_ARM_EPOCHS=1 DEMO_ARM_BATCH=8 \
		DEMO_EVAL_PROMPTS=6 DEMO_EVAL_REPEAT=1 DEMO_GRID=2 DEMO_TOKENS=24 DEMO_HELD_SEEDS=1 \
		sh examples/demo.sh > "$T/demo-$1.log" 2>&1
}
ok "demo.sh TASK=reviews runs end to end" tiny reviews
ok "reviews: base, PARM and GenARM at both ends of the grid in the table" sh -c "
	cut -f 1,2 '$T/demo-reviews/table.tsv' | grep -Fx -e 'base	-' -e 'parm	0,1' -e 'parm	1,0' \
		-e 'genarm	0,1' -e 'genarm	1,0' | wc -l | grep -qx 5 &&
	head -1 '$T/demo-reviews/table.tsv' | grep -q '	positive	positive_se	formal	formal_se	'"
ok "demo.sh TASK=lists runs end to end (k = 3)" tiny lists
ok "lists: the vertices of the simplex, three GenARM stages" sh -c "
	for a in 0,0,1 0,1,0 1,0,0; do
		grep -q \"^parm	\$a	\" '$T/demo-lists/table.tsv' &&
		grep -q \"^genarm	\$a	\" '$T/demo-lists/table.tsv' || exit 1
	done &&
	grep -q 'parm-mix -w [0-9.]* genarm-complete.gguf | parm-mix -w [0-9.]* genarm-brief.gguf | parm-mix -w [0-9.]* genarm-sorted.gguf' '$T/demo-lists.log'"
ok "lists: PARM's held-out accuracy is a 3 x 3 matrix in the log" \
	grep -q 'complete@complete .* sorted@sorted' "$T/demo-lists.log"
ok "lists: accuracy.tsv compares PARM at e_i with each GenARM ARM" sh -c "
	cut -f 1 '$T/demo-lists/accuracy.tsv' | tr '\n' ' ' | grep -qx 'objective complete brief sorted ' &&
	awk -F '\t' 'NR > 1 && (\$2 < 0 || \$2 > 1 || \$3 < 0 || \$3 > 1 || \$6 < 1) { exit 1 }' '$T/demo-lists/accuracy.tsv'"
export DEMO_PARM_ARGS='--vertex 0.25'
tiny lists; rc=$?
unset DEMO_PARM_ARGS
ok "DEMO_PARM_ARGS retrain PARM alone, GenARM's ARMs and generations kept" sh -c "
	[ $rc -eq 0 ] && grep -a -q 'vertex 0.25' '$T/demo-lists/parm.gguf' &&
	grep -q '^\$ parm-train arm .* --vertex 0.25 .*-o parm.gguf' '$T/demo-lists.log' &&
	[ \$(grep -c '^\$ parm-train arm' '$T/demo-lists.log') -eq 1 ] &&
	grep -q 'genarm-sorted.gguf is there' '$T/demo-lists.log' &&
	grep -q 'gen/genarm-1,0,0.jsonl is there' '$T/demo-lists.log' &&
	! grep -q 'gen/parm-1,0,0.jsonl is there' '$T/demo-lists.log'"
done_testing
