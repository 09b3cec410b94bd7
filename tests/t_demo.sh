#!/bin/sh
# t_demo.sh - `make demo` in small: examples/demo.sh itself, with tiny sizes
# (a 64-wide, 2-layer base trained on 1000 documents, ~1100 pairs from 24
# seeds, 3 ARM epochs, the two ends of the preference grid, 40 prompts
# sampled 8 times at each), end to end: the table, the picture and the
# timings are written, and guidance moves the oracle rewards in the
# direction of alpha.
#
# The checks are statistical, with margins from the data's own standard
# errors: per prompt, the difference of the mean rewards at alpha = (1,0)
# and at (0,1) is one paired observation, and the 40 prompts give its mean
# and standard error.  At this size which objective moves, and how far,
# depends on the CPU's rounding: runs on other SIMD paths or OpenBLAS
# kernels differ as runs with other seeds do.  Over 11 runs with 12 pair
# seeds and 3 responses per prompt (seeds 1-9, the portable path, SkylakeX
# kernels) PARM's helpfulness moved by 0.0 to 1.3, and one seed's GenARM
# moved helpfulness against alpha (-4 standard errors) and harmlessness not
# at all; twice the pairs mended that seed.  So what is checked is what
# held on every run: each method moves at least one objective its way
# beyond 2.5 standard errors, and neither objective against alpha by 3.
. tests/lib.sh

D=$T/demo
export DEMO_DIR=$D DEMO_SEED=1 DEMO_DOCS=1000 DEMO_DIM=64 DEMO_LAYERS=2 \
	DEMO_HEADS=2 DEMO_CTX=128 DEMO_LM_EPOCHS=2 DEMO_LM_LR=1e-2 DEMO_LM_BATCH=8 \
	DEMO_PAIR_SEEDS=24 DEMO_PAIR_PROMPTS=120 DEMO_ARM_EPOCHS=3 DEMO_ARM_LR=1e-2 \
	DEMO_ARM_BATCH=8 DEMO_EVAL_PROMPTS=40 DEMO_EVAL_REPEAT=8 DEMO_TEMP=0.8 \
	DEMO_GRID=2 DEMO_TOKENS=32 DEMO_HELD_SEEDS=2

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

# ends METHOD: per prompt, each reward's mean at alpha (1,0) minus its mean
# at (0,1); over the prompts, "helpful MEAN SE" and "harmless MEAN SE" (the
# change in alpha's direction: for harmlessness, (0,1) minus (1,0)).
ends() {
	w=$PWD/examples/bin/world
	p=$(wc -l < "$D/gen/once.jsonl")
	n=$(wc -l < "$D/gen/$1-1,0.jsonl")
	for a in 1,0 0,1; do
		parm-eval score --records -j --scorer "helpful=$w score helpful" \
			--scorer "harmless=$w score harmless" "$D/gen/$1-$a.jsonl" || return 1
	done | awk -v p="$p" -v n="$n" '
		function score(name,   s) {
			match($0, "\"" name "\":[-+0-9.eE]+"); s = substr($0, RSTART, RLENGTH)
			sub(/.*:/, "", s); return s + 0 }
		{ match($0, /"id":[0-9]+/); k = substr($0, RSTART + 5, RLENGTH - 5) % p
		  e = NR <= n ? "hi" : "lo"; c[e, k]++
		  r["helpful", e, k] += score("helpful"); r["harmless", e, k] += score("harmless") }
		function gain(name, k) {
			return r[name, "hi", k] / c["hi", k] - r[name, "lo", k] / c["lo", k] }
		function stat(name,   k, d, sum, sq, m) {
			for (k = 0; k < p; k++) {
				d = name == "helpful" ? gain("helpful", k) : -gain("harmless", k)
				sum += d; sq += d * d }
			m = sum / p
			printf "%s %.4f %.4f\n", name, m, sqrt((sq - p * m * m) / (p - 1) / p) }
		END { stat("helpful"); stat("harmless") }'
}
for m in parm genarm; do
	ends $m > "$T/ends.$m" || : > "$T/ends.$m"
	awk -v m=$m '{ printf "# %s, (1,0) against (0,1): %s %+.3f, standard error %.3f (%.1f of them)\n",
		m, $1, $2, $3, ($3 > 0 ? $2 / $3 : 0) }' "$T/ends.$m"
done
# moves METHOD Z: one objective's mean change, at least, exceeds Z
# standard errors (the other may not move at this size)
moves() {
	awk -v z="$2" '$3 ~ /^[0-9.]+$/ && $2 > z * $3 { f = 1 } END { exit !f }' "$T/ends.$1"
}
ok "PARM: alpha (1,0) against (0,1) moves an objective its way (> 2.5 s.e.)" moves parm 2.5
ok "GenARM: alpha (1,0) against (0,1) moves an objective its way (> 2.5 s.e.)" moves genarm 2.5
# not_against METHOD: no objective's mean change is below -3 standard errors
# (and both were measured: a failed scorer leaves no standard error)
not_against() {
	awk '{ n++; if ($3 !~ /^[0-9.]+$/ || $2 < -3 * $3) bad = 1 } END { exit bad || n != 2 }' "$T/ends.$1"
}
ok "PARM: neither objective moves against alpha (by 3 s.e.)" not_against parm
ok "GenARM: neither objective moves against alpha (by 3 s.e.)" not_against genarm

ok "a second run reuses every step" sh -c "
	sh examples/demo.sh > '$T/log2' 2>&1 && ! grep -q '^\\\$ parm-train' '$T/log2' &&
	grep -q 'base.gguf is there' '$T/log2'"
done_testing
