#!/bin/sh
# t_eval - parm-eval score on a hand-made results file with known means:
# the TSV and JSON summaries, --records, the plot, and every way a scorer
# can fail (each named with the record it failed on); parm-eval accuracy
# on pairs when parm-train can make an ARM.
. tests/lib.sh
top=$PWD
fx=$(fixtures_dir)
cd "$T" || exit 1

# Eight records: base twice, PARM and GenARM at (0,1), (0.5,0.5), (1,0);
# the scorers read h and s back from the records.
mk() {  # mk ID H S CHAIN-TAIL
	printf '{"id": %s, "prompt": "p", "response": "r", "h": %s, "s": %s, "chain": [{"stage": "parm-logits"}%s]}\n' "$@"
}
{
	mk 0 1 3 ''
	mk 1 3 1 ''
	mk 2 0 6 ', {"stage": "parm-mix", "objectives": ["h", "s"], "pref": [0, 1]}'
	mk 3 4 4 ', {"stage": "parm-mix", "objectives": ["h", "s"], "pref": [0.5, 0.5]}'
	mk 4 6 0 ', {"stage": "parm-mix", "objectives": ["h", "s"], "pref": [1, 0]}'
	mk 5 5 0 ', {"stage": "parm-mix", "objectives": ["h"]}'
	mk 6 3 3 ', {"stage": "parm-mix", "objectives": ["h"], "weight": 0.5}, {"stage": "parm-mix", "objectives": ["s"], "weight": 0.5}'
	mk 7 0 5 ', {"stage": "parm-mix", "objectives": ["s"], "weight": 1}'
} > r.jsonl
H='h=sed "s/.*\"h\": *\([0-9.]*\).*/\1/"'
I='t=sed "s/^{.id.: *\([0-9]*\).*/\1/"'
S='s=sed "s/.*\"s\": *\([0-9.]*\).*/\1/"'

cat > want.tsv <<'TSV'
method	alpha	n	h	h_se	s	s_se	front
base	-	2	2	1	2	1	1
parm	0,1	1	0	0	6	0	1
parm	0.5,0.5	1	4	0	4	0	1
parm	1,0	1	6	0	0	0	1
genarm	0,1	1	0	0	5	0	1
genarm	0.5,0.5	1	3	0	3	0	1
genarm	1,0	1	5	0	0	0	1

method	points	front	hv	mip
base	1	1	4	-
parm	3	3	16	0.888889
genarm	3	3	9	0.722222
TSV
ok "TSV summary: means, standard errors, fronts, HV and MIP as computed by hand" \
	sh -c "parm-eval score --scorer '$H' --scorer '$S' r.jsonl > got.tsv && diff want.tsv got.tsv"
ok "--ref moves the hypervolume reference: from (-1,-1) parm's staircase is 2 + 20 + 7" \
	sh -c "parm-eval score --scorer '$H' --scorer '$S' --ref -1,-1 r.jsonl | grep -q '^parm	3	3	29	'"
ok "hypervolume 0 against the default reference: a hint to pass -R (issue 14), none with it" \
	sh -c "sed -n '3p;5p' r.jsonl > ends.jsonl &&
	parm-eval score --scorer '$H' --scorer '$S' ends.jsonl 2> hint > /dev/null &&
	grep -q \"^parm-eval: method 'parm' has hypervolume 0 .* -R sets a reference point\" hint &&
	parm-eval score --scorer '$H' --scorer '$S' --ref -1,-1 ends.jsonl 2> hint > /dev/null && [ ! -s hint ]"
ok "--json: one document with groups and methods" \
	sh -c "parm-eval score --json --scorer '$H' --scorer '$S' r.jsonl > got.json &&
	tr -d ' \n' < got.json | grep -q '\"method\":\"parm\",\"points\":3,\"front\":3,\"hv\":16.0' &&
	tr -d ' \n' < got.json | grep -q '\"method\":\"base\",\"alpha\":null,\"n\":2,\"mean\":\[2.0,2.0\],\"se\":\[1.0,1.0\]'"
ok "--records: one row per record, named file:line" \
	sh -c "parm-eval score --records --scorer '$H' --scorer '$S' r.jsonl > got &&
	[ \$(wc -l < got) -eq 9 ] && grep -q '^r.jsonl:3	0	6\$' got"
ok "--records --json: the records with their scores added" \
	sh -c "parm-eval score --records --json --scorer '$H' r.jsonl | sed -n 5p | grep -q '\"scores\": *{\"h\": *6.0}'"
ok "--method-field names the method" \
	sh -c "sed 's/\"id\"/\"m\": \"mine\", \"id\"/' r.jsonl > m.jsonl &&
	parm-eval score --method-field m --scorer '$H' --scorer '$S' m.jsonl | grep -c '^mine	' | grep -qx 5"
ok "--plot: the labels of coinciding points stack a line apart (issue 14)" \
	sh -c "sed -n 3p r.jsonl | sed 's/\"id\"/\"m\": \"a\", \"id\"/' > two.jsonl &&
	sed -n 3p r.jsonl | sed 's/\"id\"/\"m\": \"b\", \"id\"/' >> two.jsonl &&
	parm-eval score --method-field m --scorer '$H' --scorer '$S' --plot two.svg two.jsonl > /dev/null &&
	grep 'class=\"label\" fill=.*>0</text>' two.svg | sed 's/.* y=\"\([0-9.]*\)\".*/\1/' > ys &&
	[ \$(wc -l < ys) -eq 2 ] && [ \$(sort -u ys | wc -l) -eq 2 ] &&
	awk 'NR == 1 { a = \$1 } NR == 2 { d = a - \$1; exit !(d >= 11 || d <= -11) }' ys"
ok "--plot writes a well-formed SVG with the axes and the legend" \
	sh -c "parm-eval score --scorer '$H' --scorer '$S' --plot f.svg r.jsonl > /dev/null && [ ! -e f.svg.tmp ] &&
	{ if command -v xmllint >/dev/null; then xmllint --noout f.svg; else grep -q '</svg>' f.svg; fi; } &&
	grep -q '>genarm</text>' f.svg && grep -q 'class=\"axis\">h</text>' f.svg && grep -q '>0.5</text>' f.svg"
ok "three scores: pairwise panels (three axes pairs)" \
	sh -c "parm-eval score --scorer '$H' --scorer '$S' --scorer '$I' --plot f3.svg r.jsonl > /dev/null &&
	[ \$(grep -c 'class=\"axis\"' f3.svg) -eq 6 ]"
ok "a scorer that writes as it reads does not deadlock on a large input" \
	sh -c "awk 'BEGIN { for (i = 0; i < 20000; i++) printf \"{\\\"id\\\": %d, \\\"pad\\\": \\\"%0500d\\\"}\\n\", i, 0 }' > big.jsonl &&
	parm-eval score --records --scorer 'n=awk \"{ print length(\\\$0) }\"' big.jsonl | sed -n 2p | grep -q '	5[0-9][0-9]\$'"

# one-stage GenARM (parm-mix --arm a:0.5 --arm b:0.5 writes one stage with
# an "arms" array) groups exactly like the two chained stages of record 6
arms='{"stage": "parm-mix", "arms": [{"arm": "a.gguf", "objectives": ["h"], "pref": [1], "weight": 0.5, "merged": false}, {"arm": "b.gguf", "objectives": ["s"], "pref": [1], "weight": 0.5, "merged": false}]}'
ok "one-stage GenARM (an \"arms\" array) reads as the chained stages: same summary" \
	sh -c "sed '7s/\"chain\": .*/\"chain\": [$arms]}/' r.jsonl > one.jsonl && grep -q '\"arms\"' one.jsonl &&
	parm-eval score --scorer '$H' --scorer '$S' one.jsonl > got1.tsv && diff want.tsv got1.tsv"
ok "one-stage and chained GenARM records at the same alpha share one group" \
	sh -c "{ cat r.jsonl; sed -n 7p one.jsonl; } > both.jsonl &&
	parm-eval score --scorer '$H' --scorer '$S' both.jsonl | grep -q '^genarm	0.5,0.5	2	3	0	3	0	1\$'"

# one method, other setups: refused, not averaged as one
mk 0 1 3 ', {"stage": "parm-mix", "arm": "p1.gguf", "objectives": ["h", "s"], "pref": [1, 0], "weight": 1}' > setup.jsonl
mk 1 2 3 ', {"stage": "parm-mix", "arm": "p1.gguf", "objectives": ["h", "s"], "pref": [1, 0], "weight": 2}' > weight.jsonl
mk 2 2 3 ', {"stage": "parm-mix", "arm": "p2.gguf", "objectives": ["h", "s"], "pref": [0, 1], "weight": 1}' > arm.jsonl
printf '{"id": 3, "prompt": "p", "response": "r", "h": 1, "s": 1, "chain": [{"stage": "parm-logits", "model": "other.gguf"}]}\n' > base2.jsonl
printf '{"id": 4, "prompt": "p", "response": "r", "h": 1, "s": 1, "chain": [{"stage": "parm-logits", "model": "base.gguf"}]}\n' > base1.jsonl
fails "runs of one method at other guidance weights are not merged" \
	"^parm-eval: weight.jsonl:1: a 'parm' record made with guidance weight 2, earlier ones with 1: not one method" \
	parm-eval score --scorer "$H" --scorer "$S" setup.jsonl weight.jsonl
fails "runs of one method with other ARM files are not merged" \
	"^parm-eval: arm.jsonl:1: a 'parm' record made with the ARM p2.gguf, earlier ones with p1.gguf: not one method" \
	parm-eval score --scorer "$H" --scorer "$S" setup.jsonl arm.jsonl
fails "runs of the base with other models are not merged" \
	"^parm-eval: base2.jsonl:1: a 'base' record made with the base other.gguf, earlier ones with base.gguf" \
	parm-eval score --scorer "$H" --scorer "$S" base1.jsonl base2.jsonl
ok "--method-field separates them instead" sh -c '
	sed "s/^{/{\"m\": \"w1\", /" setup.jsonl > a.jsonl && sed "s/^{/{\"m\": \"w2\", /" weight.jsonl > b.jsonl &&
	parm-eval score --method-field m --scorer "$1" --scorer "$2" a.jsonl b.jsonl > /dev/null' sh "$H" "$S"

# scorer failures: one line naming the record, the scorer and its command
fails "scorer exits non-zero" '^parm-eval: r\.jsonl:1: scorer h \(exit 3\) exited with status 3' \
	parm-eval score --scorer 'h=exit 3' r.jsonl
fails "scorer prints fewer lines than records" \
	'^parm-eval: r\.jsonl:3: scorer h \(head -n 2 \| awk .*\) printed 2 numbers for 8 records' \
	parm-eval score --scorer "h=head -n 2 | awk '{print 1}'" r.jsonl
fails "scorer prints a non-number" "^parm-eval: r\\.jsonl:4: scorer h \\(awk .*\\) printed 'x', not a number" \
	parm-eval score --scorer "h=awk 'NR == 4 { print \"x\"; next } { print 1 }'" r.jsonl
fails "scorer prints inf" "^parm-eval: r\\.jsonl:1: scorer h .* printed 'inf', not a number" \
	parm-eval score --scorer "h=awk '{ print \"inf\" }'" r.jsonl
fails "scorer prints more lines than records" '^parm-eval: scorer h .* printed more lines than the 8 records \(the last is r\.jsonl:8\)' \
	parm-eval score --scorer "h=awk '{ print 1; print 2 }'" r.jsonl
fails "scorer killed by a signal" '^parm-eval: r\.jsonl:1: scorer h .* killed by signal 9' \
	parm-eval score --scorer 'h=kill -9 $$' r.jsonl
fails "second scorer fails: named" '^parm-eval: r\.jsonl:1: scorer s \(false\) exited with status 1' \
	parm-eval score --scorer "$H" --scorer 's=false' r.jsonl

# usage and input errors
fails "no scorer" '^parm-eval: score needs at least one --scorer' parm-eval score r.jsonl
fails "unknown mode" "^parm-eval: unknown mode 'frob'" parm-eval frob
fails "bad --scorer spec" "^parm-eval: --scorer: expected NAME=COMMAND" parm-eval score --scorer h r.jsonl
fails "repeated scorer name" "^parm-eval: scorer name 'h' given twice" parm-eval score --scorer h=a --scorer h=b r.jsonl
fails "bad --ref" "^parm-eval: --ref: expected 2 numbers" parm-eval score --scorer "$H" --scorer "$S" --ref 1 r.jsonl
fails "accuracy option in score mode" "^parm-eval: option '--grid' is for parm-eval accuracy" \
	parm-eval score --grid 3 --scorer "$H" r.jsonl
fails "--plot with one score" '^parm-eval: --plot: a plot needs 2 or more scores' \
	parm-eval score --scorer "$H" --plot x.svg r.jsonl
fails "missing results file" '^parm-eval: nope\.jsonl' parm-eval score --scorer "$H" nope.jsonl
printf '{"id": 1, "chain": [{"stage": "parm-mix", "objectives": ["a", "b"]}]}\n' > bad.jsonl
fails "PARM stage without pref: named with the record" '^parm-eval: bad\.jsonl:1: chain stage 0 .*pref' \
	parm-eval score --scorer 'h=echo 1' bad.jsonl
printf '{"id": 1, "chain": [{"stage": "parm-mix", "objectives": ["a", "b", "c"], "pref": [1, 0, 0]}]}\n' > bad2.jsonl
fails "chain objectives that match no score names" '^parm-eval: bad2\.jsonl:1: the chain.s objectives \(a,b,c\) do not match the scores. \(h\)' \
	parm-eval score --scorer 'h=echo 1' bad2.jsonl

# accuracy: an ARM from parm-train arm, when it exists
if [ -z "$fx" ]; then
	skip "no tokenizer fixtures (make test-fixtures)" "accuracy on pairs"
elif ! parm-train arm --help >/dev/null 2>&1; then
	skip "parm-train arm not built yet (tests/test_metrics checks accuracy counting)" "accuracy on pairs"
else
	parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 32 --layers 1 --heads 2 \
		--ctx 64 --seed 3 -o m.gguf 2>/dev/null
	for i in 1 2 3 4 5 6; do
		printf '{"prompt": "q%s", "response_0": "yes %s", "response_1": "no", "better_response_id": 0, "safer_response_id": 1}\n' $i $i
	done > pairs.jsonl
	ok "accuracy at e_i and a 3-point grid: a row per alpha, shares in [0, 1]" sh -c '
		parm-train arm --objective helpful=better_response_id --objective harmless=safer_response_id \
			--steps 1 --batch 2 -o a.gguf m.gguf pairs.jsonl >/dev/null 2>&1 &&
		parm-eval accuracy --grid 3 a.gguf pairs.jsonl > acc &&
		[ $(wc -l < acc) -eq 4 ] && head -1 acc | grep -q "^alpha	helpful	harmless$" &&
		awk "NR > 1 && (\$2 < 0 || \$2 > 1) { exit 1 }" acc'
	ok "accuracy: parm-train accuracy is the same command, same output" sh -c '
		parm-train accuracy --grid 3 a.gguf pairs.jsonl > same && cmp acc same'
	fails "accuracy: a template without {prompt}" "^parm-eval: --template: .*\{prompt\}" \
		parm-eval accuracy -T "{Prompt}:" a.gguf pairs.jsonl
	ok "accuracy: -T chat on a backbone without a chat template says so" sh -c '
		! parm-eval accuracy -T chat a.gguf pairs.jsonl 2> chat.err && cat chat.err >&2 &&
		[ $(wc -l < chat.err) -eq 1 ] && grep -q "^parm-eval: a.gguf: --template chat: .*chat_template" chat.err'
	fails "--overlong takes drop or truncate" "^parm-eval: --overlong: drop or truncate" \
		parm-eval accuracy --overlong cut a.gguf pairs.jsonl
fi
cd "$top" || exit 1
done_testing
