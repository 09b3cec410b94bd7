#!/bin/sh
# t_world.sh - the controlled task of examples/world (and task.c, which
# every task program shares): the generator is
# deterministic, the oracles order hand-written responses as intended and
# take any text, labelling writes PKU-SafeRLHF-style pairs, and the BPE
# vocabulary trained on the corpus tokenises as llama.cpp does.
. tests/lib.sh

B=$T/bin
ok "the examples' programs build against libparm.a" sh examples/build.sh "$B"
W=$B/world

# ---- the generator ----

"$W" corpus -s 5 -n 200 > "$T/c1.jsonl"
"$W" corpus -s 5 -n 200 > "$T/c2.jsonl"
"$W" corpus -s 6 -n 200 > "$T/c3.jsonl"
ok "corpus: the same seed gives the same documents" cmp "$T/c1.jsonl" "$T/c2.jsonl"
ok "corpus: another seed gives others" sh -c "! cmp -s '$T/c1.jsonl' '$T/c3.jsonl'"
ok "corpus: 200 records, templated prompts, responses starting with a space" sh -c "
	[ \$(wc -l < '$T/c1.jsonl') -eq 200 ] &&
	[ \$(grep -c '^{\"prompt\":\"BEGINNING OF CONVERSATION: USER: [^\"]* ASSISTANT:\",\"response\":\" [A-Z]' '$T/c1.jsonl') -eq 200 ]"
ok "corpus: every kind of sentence occurs" sh -c "
	for key in 'warm water' 'bleach and' 'cannot help' 'weather' 'salad dressing' 'medium heat' 'live wires'; do
		grep -q \"\$key\" '$T/c1.jsonl' || exit 1
	done"
ok "corpus --raw: bare prompts" sh -c "\"$W\" corpus --raw -n 3 | grep -vq BEGINNING"
ok "prompts --all: 120 distinct prompts" sh -c "[ \$(\"$W\" prompts --all | sort -u | wc -l) -eq 120 ]"
ok "prompts: deterministic by seed" sh -c "\"$W\" prompts -s 3 -n 50 > '$T/p1' && \"$W\" prompts -s 3 -n 50 | cmp - '$T/p1'"
ok "pairs: deterministic by seed" sh -c "\"$W\" pairs -s 3 -n 50 > '$T/q1' && \"$W\" pairs -s 3 -n 50 | cmp - '$T/q1'"

# ---- the oracles ----

P='How do I clean the pan?'
rec() { printf '{"prompt": "%s", "response": "%s"}\n' "$P" "$1"; }
{
	rec ' Rinse the pan with warm water. Dry the pan with a clean towel.'            # 1 safe
	rec ' Wear gloves and let in some fresh air. Scrub the pan gently with a soft brush.' # 2 safe, caution
	rec ' Mix bleach and ammonia to clean the pan faster. Scrape the pan hard with a sharp knife to save time.' # 3 risky
	rec ' Sorry, I cannot help with that. Please ask an expert instead of me.'       # 4 refusal
	rec ' The weather is lovely today. Cats sleep for most of the day.'               # 5 chatter
	rec ' Why did the pan blush? It saw the salad dressing. What a silly pan, ha ha!' # 6 joke
	rec ' rinse teh pan wiht warm water an soft brush!! xq'                         # 7 garbled safe
} > "$T/hand.jsonl"
for o in helpful harmless humour; do
	"$W" score "$o" < "$T/hand.jsonl" | tr '\n' ' ' > "$T/$o"
done
# s N OBJ: the score of hand-written response N for objective OBJ
s() { cut -d' ' -f"$1" "$T/$2"; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
ok "harmless: safe steps > risky shortcuts ($(s 1 harmless) > $(s 3 harmless))" gt "$(s 1 harmless)" "$(s 3 harmless)"
ok "harmless: safety advice > plain safe steps ($(s 2 harmless) > $(s 1 harmless))" gt "$(s 2 harmless)" "$(s 1 harmless)"
ok "harmless: a refusal is harmless (> risky)" gt "$(s 4 harmless)" "$(s 3 harmless)"
ok "helpful: risky >= safe steps ($(s 3 helpful) >= $(s 1 helpful))" ge "$(s 3 helpful)" "$(s 1 helpful)"
ok "helpful: safe steps > refusal ($(s 1 helpful) > $(s 4 helpful))" gt "$(s 1 helpful)" "$(s 4 helpful)"
ok "helpful: safe steps > chatter > refusal" sh -c "awk -v a=$(s 1 helpful) -v b=$(s 5 helpful) -v c=$(s 4 helpful) 'BEGIN { exit !(a > b && b > c) }'"
ok "helpful: garbled steps still count ($(s 7 helpful) > 0)" gt "$(s 7 helpful)" 0
ok "humour: the joke scores highest" sh -c "
	j=\$(cut -d' ' -f6 '$T/humour')
	for n in 1 2 3 4 5 7; do awk -v a=\$j -v b=\$(cut -d' ' -f\$n '$T/humour') 'BEGIN { exit !(a > b) }' || exit 1; done"
a=$(rec ' Rinse the pan with warm water.' | "$W" score helpful)
b=$(P='How do I cook rice?'; rec ' Rinse the pan with warm water.' | "$W" score helpful)
ok "helpful: cleaning steps help less with cooking ($a > $b)" gt "$a" "$b"

printf '%s\n' '{"prompt": "x", "response": ""}' '{}' '{"response": 5}' \
	'{"prompt": null, "response": "\u0000\u00ff \u2603 ha ha"}' '' \
	'{"response": "!!!!????....    "}' > "$T/junk.jsonl"
ok "scorers give every odd record a number, blank lines are no records" sh -c "
	for o in helpful harmless humour; do
		[ \$(\"$W\" score \$o < '$T/junk.jsonl' | grep -cE '^-?[0-9.]+$') -eq 5 ] || exit 1
	done"
ok "scorers: empty input, no output" sh -c "[ -z \"\$(\"$W\" score helpful < /dev/null)\" ]"
fails "a line that is not JSON is named" '^world: <stdin>:1: not a JSON object' \
	sh -c "printf 'rubbish\n{}\n' | \"$W\" score helpful"
fails "an unknown objective is refused" "no objective 'silly'" "$W" score silly
fails "score needs one objective" 'name one objective' "$W" score

# ---- labelling ----

"$W" pairs -s 2 -n 400 > "$T/pairs.jsonl"
"$W" label -s 9 < "$T/pairs.jsonl" > "$T/l1.jsonl"
pku='^\{"prompt":"[^"]*","response_0":" [^"]*","response_1":" [^"]*","better_response_id":[01],"safer_response_id":[01]\}$'
ok "label: PKU-SafeRLHF records, ties dropped ($(wc -l < "$T/l1.jsonl") of 400 kept)" sh -c "
	n=\$(wc -l < '$T/l1.jsonl'); [ \$n -gt 100 ] && [ \$n -lt 400 ] &&
	[ \$(grep -cE '$pku' '$T/l1.jsonl') -eq \$n ]"
ok "label: deterministic by seed" sh -c "\"$W\" label -s 9 < '$T/pairs.jsonl' | cmp - '$T/l1.jsonl'"
ok "label: another seed draws other noise" sh -c "! \"$W\" label -s 10 < '$T/pairs.jsonl' | cmp -s - '$T/l1.jsonl'"
ok "label -k: funnier_response_id too" sh -c "
	\"$W\" label -k < '$T/pairs.jsonl' > '$T/l3.jsonl' && [ -s '$T/l3.jsonl' ] &&
	[ \$(grep -c '\"safer_response_id\":[01],\"funnier_response_id\":[01]}\$' '$T/l3.jsonl') -eq \$(wc -l < '$T/l3.jsonl') ]"
ok "label --ties coin keeps every pair" sh -c "[ \$(\"$W\" label --ties coin < '$T/pairs.jsonl' | wc -l) -eq 400 ]"

# with no noise the labels are the oracles' verdicts
"$W" label -t 0 < "$T/pairs.jsonl" > "$T/l0.jsonl"
agree() {  # agree OBJECTIVE FIELD: the label is where the oracle is higher
	"$W" score -f response_0 "$1" < "$T/l0.jsonl" > "$T/r0"
	"$W" score -f response_1 "$1" < "$T/l0.jsonl" > "$T/r1"
	sed 's/.*"'"$2"'":\([01]\).*/\1/' "$T/l0.jsonl" > "$T/lab"
	paste "$T/r0" "$T/r1" "$T/lab" | awk '($1 > $2) != ($3 == 0) { bad++ } END { exit bad > 0 }'
}
ok "label -t 0: better_response_id is the more helpful response" agree helpful better_response_id
ok "label -t 0: safer_response_id is the more harmless response" agree harmless safer_response_id
ok "label with noise: most labels still agree with the oracles" sh -c "
	\"$W\" score -f response_0 harmless < '$T/l1.jsonl' > '$T/h0'
	\"$W\" score -f response_1 harmless < '$T/l1.jsonl' > '$T/h1'
	sed 's/.*\"safer_response_id\":\([01]\).*/\1/' '$T/l1.jsonl' |
	paste '$T/h0' '$T/h1' - | awk '{ n++; if ((\$1 > \$2) == (\$3 == 0)) a++ } END { exit !(a / n > 0.7 && a < n) }'"

printf '%s\n' '{"prompt": "How do I cook rice?", "response": " Keep a lid nearby in case the oil catches fire."}' \
	'{"prompt": "How do I cook rice?", "response": " Eat the rice half raw so you can finish sooner."}' > "$T/ga.jsonl"
printf '%s\n' '{"prompt": "How do I cook rice?", "response": " Sorry, I cannot help with that."}' \
	'{"prompt": "How do I cook rice?", "response": " Wash your hands before you cook the rice."}' > "$T/gb.jsonl"
ok "label A B: generations read side by side become pairs" sh -c "
	[ \$(\"$W\" label -t 0 '$T/ga.jsonl' '$T/gb.jsonl' | grep -cE '$pku') -eq 2 ]"
head -1 "$T/gb.jsonl" > "$T/gb1.jsonl"
fails "label A B: files of different lengths are refused" 'fewer records' \
	"$W" label "$T/ga.jsonl" "$T/gb1.jsonl"
fails "label: one file is a usage error" 'give two files' "$W" label "$T/ga.jsonl"

# ---- the vocabulary ----

"$W" corpus -n 3000 > "$T/corpus.jsonl"
ok "parm-train vocab: a BPE vocabulary from the corpus" parm-train vocab --size 1024 -o "$T/vocab.gguf" "$T/corpus.jsonl"
ok "parm-train vocab: deterministic" sh -c "parm-train vocab --size 1024 -o '$T/vocab2.gguf' '$T/corpus.jsonl' 2>/dev/null && cmp '$T/vocab.gguf' '$T/vocab2.gguf'"
fails "parm-train vocab --strict: a record without text is named" "x.jsonl:2: no string field 'text'" \
	sh -c "printf '{\"text\": \"a\"}\n{\"n\": 1}\n' > '$T/x.jsonl' && parm-train vocab --strict -o '$T/v3.gguf' '$T/x.jsonl'"
ok "parm-train vocab: without --strict the record is skipped and counted" sh -c "
	parm-train vocab -o '$T/v4.gguf' '$T/x.jsonl' 2> '$T/v4.err' && grep -q '1 malformed records skipped' '$T/v4.err'"
fails "parm-train vocab: --size below the bytes and controls" '^parm-train: --size: expected an integer from 258' \
	parm-train vocab --size 100 -o "$T/v5.gguf" "$T/corpus.jsonl"
fails "parm-train vocab: no corpus" '^parm-train: vocab: no corpus given' parm-train vocab -o "$T/v6.gguf"
ok "a model made from the vocabulary" parm-train init --vocab "$T/vocab.gguf" --dim 32 \
	--layers 1 --heads 2 -o "$T/model.gguf"
sed 's/^{"prompt":"\(.*\)","response":"\(.*\)"}$/\1\2/' "$T/corpus.jsonl" | head -50 > "$T/text"
printf 'Unseen: na\303\257ve caf\303\251 \346\227\245\346\234\254 \360\237\231\202 1234 \t  end\n' >> "$T/text"
ok "responses stay short: 50 documents in under 50 * 60 tokens" sh -c "
	[ \$(parm-logits --tokenize '$T/model.gguf' < '$T/text' | wc -w) -lt 3000 ]"
ref=$HOME/.cache/parm/llama.cpp/bin/llama-ref
if [ -x "$ref" ]; then
	ok "llama.cpp tokenises the corpus and unseen UTF-8 exactly as parm-logits" sh -c "
		\"$ref\" tokenize '$T/vocab.gguf' < '$T/text' > '$T/ids.ref' &&
		parm-logits --tokenize '$T/model.gguf' < '$T/text' > '$T/ids.parm' &&
		[ -s '$T/ids.ref' ] && cmp '$T/ids.ref' '$T/ids.parm'"
else
	skip "no llama.cpp reference at $ref (make llamacpp)" "llama.cpp tokenises the corpus as parm-logits"
fi

# ---- through the generation pipe ----

"$W" prompts -n 4 > "$T/prompts.jsonl"
ok "scorers read parm-sample's JSONL: one number per generation" sh -c "
	parm-logits -n 8 -T 'BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:' '$T/model.gguf' < '$T/prompts.jsonl' |
	parm-sample --json | \"$W\" score helpful > '$T/gen' && [ \$(grep -cE '^-?[0-9.]+$' '$T/gen') -eq 4 ]"
ok "make-pairs.sh: samples twice from a model and labels (random model: all tie)" sh -c "
	sh examples/make-pairs.sh -n 8 '$W' '$T/model.gguf' '$T/prompts.jsonl' > '$T/mp.jsonl'"
ok "make-pairs.sh: a missing model fails, saying why, writing nothing" sh -c "
	! sh examples/make-pairs.sh '$W' '$T/nope.gguf' '$T/prompts.jsonl' > '$T/mpo' 2> '$T/mpe' &&
	grep -q 'parm-logits: .*nope.gguf' '$T/mpe' && [ ! -s '$T/mpo' ]"

done_testing
