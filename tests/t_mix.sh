#!/bin/sh
# t_mix - parm-mix in the pipe as a user types it (weak-to-strong: the
# base is dim 64 with 4 layers, the ARMs' backbone dim 32 with 2), and its
# bad inputs: one line naming parm-mix, non-zero exit, nothing on stdout.
# ARMs are made by tests/test_mix --make-arm (random adapters).
. tests/lib.sh
need_fixtures "parm-mix tests"
top=$PWD
mkarm="$top/tests/test_mix --make-arm"
cd "$T" || exit 1
init() {
	parm-train init --vocab "$1" --dim "$2" --layers "$3" --heads 4 --kv-heads 2 \
		--ctx 64 --seed "$4" -o "$5" 2>init.err || { cat init.err; exit 1; }
}
init "$fx/ggml-vocab-llama-spm.gguf" 64 4 3 base.gguf
init "$fx/ggml-vocab-llama-spm.gguf" 32 2 4 small.gguf
init "$fx/ggml-vocab-gpt-2.gguf" 32 2 5 gpt2.gguf
$mkarm small.gguf 2 q,k,v 7 parm.gguf && $mkarm small.gguf 1 q,v 8 arm1.gguf &&
	$mkarm small.gguf 3 all 9 parm3.gguf && $mkarm gpt2.gguf 1 q,v 10 gpt2arm.gguf ||
	{ echo "not ok 1 - make ARMs"; exit 1; }
printf 'Hello there\nHow do I boil an egg?\n\nThe end\n' > prompts.txt

ok "the pipe works exactly as typed, one line per prompt" sh -c '
	parm-logits base.gguf < prompts.txt | parm-mix --pref 0.5,0.5 parm.gguf | parm-sample > out &&
	[ $(wc -l < out) -eq 3 ]'
ok "greedy guidance changes the responses, and the preference matters" sh -c '
	parm-logits -n 8 base.gguf < prompts.txt | parm-sample --temp 0 > plain &&
	parm-logits -n 8 base.gguf < prompts.txt | parm-mix -w 3 --pref 1,0 parm.gguf | parm-sample --temp 0 > a &&
	parm-logits -n 8 base.gguf < prompts.txt | parm-mix -w 3 --pref 0,1 parm.gguf | parm-sample --temp 0 > b &&
	! cmp -s plain a && ! cmp -s a b'
ok "W = 0 gives the responses of the base alone" sh -c '
	parm-logits -n 8 base.gguf < prompts.txt | parm-sample --temp 0 > plain &&
	parm-logits -n 8 base.gguf < prompts.txt | parm-mix -w 0 --pref 1,0 parm.gguf | parm-sample --temp 0 > z &&
	cmp plain z'
ok "JSONL records the ARM, objectives, pref, weight and merged" sh -c '
	echo Hi | parm-logits -n 3 base.gguf | parm-mix --pref harmless=0.7,helpful=0.3 -w 0.5 parm.gguf |
	parm-sample --json > out &&
	grep -Eq "\"stage\": *\"parm-mix\", *\"arm\": *\"parm.gguf\", *\"objectives\": *\[\"helpful\", *\"harmless\"\], *\"pref\": *\[0\.(3|29)[0-9]*, *0\.(7|69)[0-9]*\], *\"weight\": *0.5, *\"merged\": *true" out'
ok "GenARM: two --arm in one stage, JSONL lists both" sh -c '
	echo Hi | parm-logits -n 3 base.gguf | parm-mix --arm arm1.gguf:0.5 --arm parm3.gguf:0.5:0.2,0.3,0.5 --no-merge |
	parm-sample --json > out && grep -q "\"arms\": *\[{\"arm\": *\"arm1.gguf\"" out &&
	grep -q "\"merged\": *false" out'
ok "GenARM: one stage and two chained stages give the same responses" sh -c '
	parm-logits -n 8 base.gguf < prompts.txt | parm-mix --arm arm1.gguf:1 --arm parm.gguf:2:0.5,0.5 |
	parm-sample --temp 0 > one &&
	parm-logits -n 8 base.gguf < prompts.txt | parm-mix arm1.gguf | parm-mix -w 2 --pref 0.5,0.5 parm.gguf |
	parm-sample --temp 0 > two && cmp one two'
ok "more sequences than the first KV cache: slots grow" sh -c '
	seq 1 20 | parm-logits -n 4 -b 16 base.gguf | parm-mix arm1.gguf | parm-sample --temp 0 > out &&
	[ $(wc -l < out) -eq 20 ]'
ok "the reader going away ends parm-mix quietly" sh -c '
	seq 1 12 | parm-logits -n 40 base.gguf | parm-mix arm1.gguf 2>err | head -c 100 > /dev/null;
	[ ! -s err ]'

ok "parm-mix into a file, no sampler: parm-logits says so after 5 s, then gives up (issue 14)" sh -c '
	PARM_STREAM_TIMEOUT=7 parm-logits -n 2 base.gguf < prompts.txt 2> w.err | parm-mix arm1.gguf > mixed.bin 2> m.err
	cat w.err m.err >&2; [ $(wc -l < w.err) -eq 2 ] && [ ! -s m.err ] &&
	grep -q "^parm-logits: no sampler has opened the feedback channel in 5 s" w.err'
if command -v script > /dev/null; then
	ok "parm-mix with a terminal on standard input, or output, says so and exits 1" sh -c '
		script -qec "parm-mix arm1.gguf" /dev/null > tty.out; rc=$?
		[ $rc -eq 1 ] && grep -q "^parm-mix: standard input is a terminal" tty.out &&
		script -qec "parm-logits -n 2 base.gguf < prompts.txt | parm-mix arm1.gguf" /dev/null > tty.out; rc=$?
		[ $rc -eq 1 ] && grep -q "^parm-mix: standard output is a terminal" tty.out'
else
	skip "script(1) is not installed (util-linux)" "parm-mix with a terminal"
fi

# a remote base sends sparse top-K steps: guided on the K, still sparse
if cc -std=c11 -O2 -Wall -D_GNU_SOURCE -o fault-server "$top/tests/fault-server.c" 2>cc.err; then
	./fault-server ok port ok.log & server=$!
	trap 'kill $server 2>/dev/null; rm -rf "$T"' EXIT
	i=0; while [ ! -s port ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	url=http://127.0.0.1:$(cat port)
	ok "remote base (sparse steps) through parm-mix: every prompt answered" sh -c "
		parm-logits --vocab base.gguf -n 3 --remote $url < prompts.txt | parm-mix -w 2 arm1.gguf |
		parm-sample --temp 0 > out && [ \$(wc -l < out) -eq 3 ]"
	ok "remote base: W = 0 gives the unguided responses" sh -c "
		parm-logits --vocab base.gguf -n 3 --remote $url < prompts.txt | parm-sample --temp 0 > plain &&
		parm-logits --vocab base.gguf -n 3 --remote $url < prompts.txt | parm-mix -w 0 arm1.gguf |
		parm-sample --temp 0 > z && cmp plain z"
else
	skip "fault-server does not build" "remote base through parm-mix"
fi

# bad input
# a recorded stream (a sampler must answer, or parm-logits waits for it)
echo Hello | parm-logits -n 3 base.gguf | tee good.stream | parm-sample > /dev/null
fails "unknown option" '^parm-mix: unknown option' parm-mix --frobnicate arm1.gguf
fails "no ARM" '^parm-mix: no ARM given' parm-mix
fails "--pref of the wrong length" "^parm-mix: .*preference.*" sh -c 'parm-mix --pref 0.5,0.3,0.2 parm.gguf < good.stream'
fails "--pref with a negative entry" "^parm-mix: .*preference.*" sh -c 'parm-mix --pref -0.5,1.5 parm.gguf < good.stream'
fails "--pref with an unknown name" "^parm-mix: .*(unknown|no objective).*kind" sh -c 'parm-mix --pref kind=1 parm.gguf < good.stream'
fails "k = 2 without --pref" '^parm-mix: .*needs a preference, e.g. --pref 0.5,0.5' sh -c 'parm-mix parm.gguf < good.stream'
fails "bad --arm" "^parm-mix: --arm 'arm1.gguf'" parm-mix --arm arm1.gguf
fails "bad --weight" '^parm-mix: --weight' parm-mix --weight x arm1.gguf
fails "missing ARM file" '^parm-mix: .*nope.gguf' sh -c 'parm-mix nope.gguf < good.stream'
fails "a model that is not an ARM" '^parm-mix: .*base.gguf' sh -c 'parm-mix base.gguf < good.stream'
fails "an ARM of another tokenizer: both sizes and fingerprints" \
	'^parm-mix: .*[0-9]+ tokens, fingerprint [0-9a-f]+.*gpt2arm.gguf.*50257 tokens, fingerprint [0-9a-f]+' \
	sh -c 'parm-mix gpt2arm.gguf < good.stream'
head -c $(($(wc -c < good.stream) * 2 / 3)) good.stream > short.stream
# (what was guided before the end has gone down the pipe already)
fails "stream ending early" '^parm-mix: .*unexpected end of stream' \
	sh -c 'parm-mix arm1.gguf < short.stream > s.out; rc=$?; [ -s s.out ] || exit 99; exit $rc'
fails "empty input" '^parm-mix: .*(unexpected end|empty)' sh -c 'parm-mix arm1.gguf < /dev/null'
printf 'garbage that is not msgpack \301\301' > junk.stream
fails "malformed stream" '^parm-mix: .*(malformed|not a parm stream)' sh -c 'parm-mix arm1.gguf < junk.stream'
# A failing stage says why; the stages after it leave without an error of
# their own (an abort record tells them), not "unexpected end of stream".
fails "parm-logits failing: its error alone, through parm-mix and parm-sample" \
	'^parm-logits: .*nope.gguf' sh -c 'echo hi | parm-logits nope.gguf | parm-mix arm1.gguf | parm-sample'
fails "parm-mix failing: its error alone" '^parm-mix: .*nope.gguf' \
	sh -c 'echo hi | parm-logits -n 4 base.gguf | parm-mix nope.gguf | parm-sample'
fails "an abort record read: parm-sample exits 1 quietly, parm-mix passes it on" '^parm-mix: .*nope.gguf' \
	sh -c 'echo hi | parm-logits -n 4 base.gguf | parm-mix nope.gguf | parm-mix arm1.gguf | parm-sample'
ok "next stage exiting early: parm-mix and parm-logits exit 0 quietly" sh -c '
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "prompt $i"; done > many.txt
	{ parm-logits -n 20 --batch 2 base.gguf < many.txt 2>err1; echo $? > rc1; } |
	{ parm-mix arm1.gguf 2>err2; echo $? > rc2; } |
	{ parm-sample --temp 0 2>err3; echo $? > rc3; } | head -n 1 > /dev/null
	[ "$(cat rc1) $(cat rc2) $(cat rc3)" = "0 0 0" ] && [ ! -s err1 ] && [ ! -s err2 ] && [ ! -s err3 ]'
ok "--help and --version" sh -c 'parm-mix --help | grep -q -- --no-merge && parm-mix --version | grep -q parm-mix'
done_testing
