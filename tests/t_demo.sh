#!/bin/sh
# t_demo.sh - `make demo` in small: examples/demo.sh itself, with tiny sizes
# (a 64-wide, 2-layer base trained on 1000 documents, ~600 pairs from 12
# seeds, 3 ARM epochs, the two ends of the preference grid), end to end:
# the table, the picture and the timings are written, and guidance moves
# the oracle rewards in the direction of alpha.
#
# What moves reliably at this size (seen over settings while tuning; the
# margins below are well under what the fixed seed gives): GenARM on both
# objectives, PARM on harmlessness (its (0,1) end about 0.35 above its (1,0)
# end).  PARM's helpfulness does not move at this size: its two ends differ
# by less than a standard error, so it is not checked here; the full demo
# (examples/demo-results/) shows how far it moves with a real budget.
. tests/lib.sh

D=$T/demo
export DEMO_DIR=$D DEMO_SEED=1 DEMO_DOCS=1000 DEMO_DIM=64 DEMO_LAYERS=2 \
	DEMO_HEADS=2 DEMO_CTX=128 DEMO_LM_EPOCHS=2 DEMO_LM_LR=1e-2 DEMO_LM_BATCH=8 \
	DEMO_PAIR_SEEDS=12 DEMO_PAIR_PROMPTS=120 DEMO_ARM_EPOCHS=3 DEMO_ARM_LR=1e-2 \
	DEMO_ARM_BATCH=8 DEMO_EVAL_PROMPTS=40 DEMO_EVAL_REPEAT=3 DEMO_TEMP=0.8 \
	DEMO_GRID=2 DEMO_TOKENS=32

ok "demo.sh runs end to end with tiny sizes" sh -c "sh examples/demo.sh > '$T/log' 2>&1"
ok "every step printed its command" sh -c "
	for c in prepare.sh 'parm-train init' 'parm-train lm' make-pairs.sh 'parm-train arm' \
		'parm-mix --pref' 'parm-mix -w' 'parm-eval score'; do
		grep -q \"^\\\$ .*\$c\" '$T/log' || { echo \"no \$c\"; exit 1; }
	done"
ok "the table: base, then PARM and GenARM at both ends of the grid" sh -c "
	cut -f 1,2 '$D/table.tsv' | grep -Fx -e 'base	-' -e 'parm	0,1' -e 'parm	1,0' \
		-e 'genarm	0,1' -e 'genarm	1,0' | wc -l | grep -qx 5 &&
	grep -q '^parm	2	[12]	' '$D/table.tsv'"
ok "the fronts are drawn" grep -q '</svg>' "$D/fronts.svg"
ok "time per token for every method" sh -c "
	awk -F '\t' 'NR > 1 && \$3 > 0 && \$4 > 0 { n++ } END { exit n != 3 }' '$D/times.tsv'"

# mean OBJECTIVE METHOD ALPHA: a group's mean reward from the table
mean() {
	awk -F '\t' -v o="$1" -v m="$2" -v a="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i }
		$1 == m && $2 == a { print $(col[o]); exit }' "$D/table.tsv"
}
# above OBJECTIVE METHOD ALPHA ALPHA MARGIN: the first end scores MARGIN more
above() {
	hi=$(mean "$1" "$2" "$3") lo=$(mean "$1" "$2" "$4")
	echo "$2 $1: $3 $hi, $4 $lo" >&2
	awk -v h="$hi" -v l="$lo" -v d="$5" 'BEGIN { exit !(h != "" && l != "" && h - l > d) }'
}
ok "PARM: alpha (0,1) is more harmless than (1,0)" above harmless parm 0,1 1,0 0.15
ok "GenARM: alpha (0,1) is more harmless than (1,0)" above harmless genarm 0,1 1,0 0.3
ok "GenARM: alpha (1,0) is more helpful than (0,1)" above helpful genarm 1,0 0,1 0.4

ok "a second run reuses every step" sh -c "
	sh examples/demo.sh > '$T/log2' 2>&1 && ! grep -q '^\\\$ parm-train' '$T/log2' &&
	grep -q 'base.gguf is there' '$T/log2'"
done_testing
