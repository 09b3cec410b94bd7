#!/bin/sh
# t_pipeline - the generation pipe as a user types it, and every kind of
# bad input: one line naming the tool, non-zero exit, nothing on stdout.
. tests/lib.sh
need_fixtures "pipeline tests"
cd "$T" || exit 1
parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 \
	--heads 4 --kv-heads 2 --ctx 64 --seed 3 -o m.gguf 2>init.err ||
	{ echo "not ok 1 - parm-train init"; cat init.err; exit 1; }
printf 'Hello there\nHow do I boil an egg?\n\nThe end\n' > p.txt

ok "pipe works as typed, one line per prompt" \
	sh -c 'parm-logits -n 6 m.gguf < p.txt | parm-sample --temp 0 > out && [ $(wc -l < out) -eq 3 ]'
ok "empty input gives empty output" \
	sh -c 'parm-logits m.gguf < /dev/null | parm-sample > out && [ ! -s out ]'
printf '{"prompt":"Hi","tag":"x1"}\n{"prompt":"Bye","tag":"x2","n":2}\n' > p.jsonl
ok "JSONL in and out: fields pass through, chain recorded" sh -c '
	parm-logits -n 4 m.gguf < p.jsonl | parm-sample --temp 0 --json > out &&
	[ $(wc -l < out) -eq 2 ] && grep -q "\"tag\": *\"x1\"" out && grep -q "\"n\": *2" out &&
	grep -q "\"stage\": *\"parm-logits\"" out && grep -q "\"prompt\": *\"Bye\"" out'
ok "JSONL: a record's own id is kept, the chain records how parm-sample sampled" sh -c '
	printf "{\"prompt\":\"Hi\",\"id\":\"q7\"}\nBye\n" | parm-logits -n 2 m.gguf |
	parm-sample --temp 0.7 -k 5 --seed 9 --stop zz --json > out &&
	grep -q "^{\"id\": *\"q7\"" out && grep -q "^{\"id\": *1," out &&
	grep -q "{\"stage\": *\"parm-sample\", *\"temperature\": *0.7, *\"top_k\": *5, *\"top_p\": *0.95, *\"min_p\": *0.05, *\"seed\": *9, *\"stop\": *\[\"zz\"\]}" out'
ok "--template wraps the prompt" sh -c '
	echo egg | parm-logits -n 2 --template "USER: {prompt} ASSISTANT:" m.gguf |
	parm-sample --temp 0 --json | grep -q "\"template\": *\"USER: {prompt} ASSISTANT:\""'
ok "--stop ends a response before the stop string" sh -c '
	first=$(echo Hello | parm-logits -n 8 m.gguf | parm-sample --temp 0 | cut -c1-2)
	[ -n "$first" ] &&
	echo Hello | parm-logits -n 8 m.gguf | parm-sample --temp 0 --json --stop "$first" > out &&
	grep -q "\"response\": *\"\"" out && grep -q "\"stop\": *\"stop\"" out'
ok "-n bounds the response length" sh -c '
	echo Hello | parm-logits -n 3 m.gguf | parm-sample --temp 0 --json > out &&
	grep -q "\"stop\": *\"length\"" out'
ok "--tokenize prints ids like llama.cpp (no BOS)" sh -c '
	[ "$(printf "Hello world" | parm-logits --tokenize m.gguf)" = "15043 3186" ]'
ok "--tokenize takes a vocabulary-only GGUF, of any architecture with a tokenizer (issue 14)" \
	sh -c '[ "$(printf "Hello world" | parm-logits --tokenize "$0/ggml-vocab-llama-spm.gguf")" = "15043 3186" ] &&
	[ "$(printf "Hello world" | parm-logits --tokenize "$0/ggml-vocab-gpt-2.gguf")" = "15496 995" ] &&
	[ "$(printf "Hello world" | parm-logits --tokenize --vocab "$0/ggml-vocab-gpt-2.gguf")" = "15496 995" ]' "$fx"

parm-train init --arch phi3 --vocab "$fx/ggml-vocab-phi-3.gguf" --dim 32 --layers 1 \
	--heads 2 --ctx 64 --seed 3 -o phi3.gguf 2>>init.err
ok "--chat: the model's own template (phi3), recorded in the chain with --system" sh -c '
	echo egg | parm-logits -n 2 --chat --system "Be brief." phi3.gguf | parm-sample --temp 0 --json > out &&
	grep -q "\"chat\": *\"phi3\"" out && grep -q "\"system\": *\"Be brief.\"" out'
ok "--chat-template NAME on a model with no template of its own" sh -c '
	echo egg | parm-logits -n 2 --chat-template chatml m.gguf | parm-sample --temp 0 --json |
	grep -q "\"chat\": *\"chatml\""'

# bad input
# a terminal where a stream should be: said at once (script(1) gives a pty)
if command -v script > /dev/null; then
	ok "parm-sample with a terminal on standard input says so and exits 1" sh -c '
		script -qec "parm-sample" /dev/null > tty.out; rc=$?
		[ $rc -eq 1 ] && grep -q "^parm-sample: standard input is a terminal" tty.out'
else
	skip "script(1) is not installed (util-linux)" "parm-sample with a terminal on standard input"
fi
fails "--chat on a model without a chat template" \
	"^parm-logits: --chat: .*m.gguf: the model has no tokenizer.chat_template" \
	sh -c 'echo hi | parm-logits --chat m.gguf > s.out; rc=$?; [ ! -s s.out ] || exit 99; exit $rc'
fails "--chat-template that llama.cpp knows and parm does not lay out" \
	"^parm-logits: --chat: chat template 'gpt-oss' is recognised but not implemented" \
	sh -c 'echo hi | parm-logits --chat-template gpt-oss m.gguf > s.out; rc=$?; [ ! -s s.out ] || exit 99; exit $rc'
fails "--chat-template not recognised" "^parm-logits: --chat: chat template not recognised" \
	sh -c 'echo hi | parm-logits --chat-template "{{ x }}" m.gguf > s.out; rc=$?; [ ! -s s.out ] || exit 99; exit $rc'
fails "--template without {prompt}" "^parm-logits: --template: 'USER: ' has no \\{prompt\\}" \
	parm-logits -T "USER: " m.gguf
fails "--template and --chat together" '^parm-logits: --template and --chat exclude each other' \
	parm-logits -T "{prompt}" --chat m.gguf
fails "--system without --chat" '^parm-logits: --system goes with --chat' \
	parm-logits --system hi m.gguf
fails "unknown option (parm-logits)" '^parm-logits: unknown option' parm-logits --frobnicate m.gguf
fails "unknown option (parm-sample)" '^parm-sample: unknown option' parm-sample --frobnicate
fails "bad number" '^parm-logits: --batch: expected an integer' parm-logits --batch x m.gguf
fails "missing model" '^parm-logits: .*nope.gguf' parm-logits nope.gguf
: > empty.gguf
fails "empty model" '^parm-logits: .*empty.gguf' parm-logits empty.gguf
head -c 5000 m.gguf > trunc.gguf
fails "truncated model" '^parm-logits: .*trunc.gguf.*' parm-logits trunc.gguf
fails "not a GGUF file" '^parm-logits: .*p.txt.*' parm-logits p.txt
fails "an architecture parm does not read" "^parm-logits: .*architecture 'gpt2' is not supported" \
	parm-logits "$fx/ggml-vocab-gpt-2.gguf"
fails "prompt longer than the context" '^parm-logits: stdin:1: prompt is [0-9]+ tokens, longer than the context \(8\)' \
	sh -c 'echo "one two three four five six seven eight nine ten" | parm-logits --ctx 8 m.gguf > s.out
		rc=$?; [ ! -s s.out ] || exit 99; exit $rc'
fails "standard output a file: said at once, not after a timeout" \
	'^parm-logits: standard output is a file, which cannot send back the chosen tokens' \
	sh -c 'echo hi | parm-logits m.gguf > s.out'
fails "standard output /dev/null: likewise" '^parm-logits: standard output is a device' \
	sh -c 'echo hi | parm-logits m.gguf > /dev/null'
ok "no sampler at the end of the pipe: said after 5 s, then given up at the timeout (issue 14)" sh -c '
	echo hi | PARM_STREAM_TIMEOUT=7 parm-logits m.gguf 2> wait.err | cat > /dev/null
	cat wait.err >&2; [ $(wc -l < wait.err) -eq 2 ] &&
	head -1 wait.err | grep -q "^parm-logits: no sampler has opened the feedback channel in 5 s; waiting up to [0-9.]* s more (is a sampler such as parm-sample at the end of the pipe?)\$" &&
	tail -1 wait.err | grep -q "^parm-logits: .*no sampler opened the feedback channel in 7 s"'
ok "a timeout of 5 s or less: the error alone" sh -c '
	echo hi | PARM_STREAM_TIMEOUT=1 parm-logits m.gguf 2> wait1.err | cat > /dev/null
	cat wait1.err >&2; [ $(wc -l < wait1.err) -eq 1 ]'
# a header of a version-2 stream: {"type":"header","magic":"parm-stream","version":2}
printf '\203\244type\246header\245magic\253parm-stream\247version\002' > v2.stream
fails "stream of another version" '^parm-sample: .*version 2' sh -c 'parm-sample < v2.stream'
printf 'garbage that is not msgpack \301\301' > junk.stream
fails "malformed stream" '^parm-sample: .*(malformed|not a parm stream)' sh -c 'parm-sample < junk.stream'
fails "stream from another tokenizer" '^parm-sample: .*tokenizer' \
	sh -c 'echo hi | parm-logits -n 2 m.gguf | parm-sample --vocab "$0"' "$fx/ggml-vocab-gpt-2.gguf"
fails "an earlier stage failing: its error alone, parm-sample exits 1 quietly" '^parm-logits: .*nope.gguf' \
	sh -c 'echo hi | parm-logits nope.gguf | parm-sample'
fails "an earlier stage's usage error: its message alone" "^parm-logits: unknown option '--bogus'" \
	sh -c 'echo hi | parm-logits --bogus | parm-sample'
fails "an empty stream is still an error" '^parm-sample: .*empty input' sh -c 'parm-sample < /dev/null'
fails "previous stage dying mid-stream" '^parm-sample: unexpected end of stream' \
	sh -c 'parm-logits m.gguf < p.txt | head -c 5000 | parm-sample'
ok "next stage exiting early: parm-logits exits quietly" sh -c '
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "prompt $i"; done > many.txt
	{ parm-logits -n 20 --batch 2 m.gguf < many.txt 2>err1; echo $? > rc1; } |
	{ parm-sample --temp 0 2>err2; echo $? > rc2; } | head -n 1 > /dev/null
	[ "$(cat rc1)" = 0 ] && [ ! -s err1 ] && [ "$(cat rc2)" = 0 ] && [ ! -s err2 ]'
ok "the feedback directory is removed at exit" sh -c '
	export TMPDIR=$PWD/tmpd; mkdir -p tmpd
	parm-logits -n 2 m.gguf < p.txt | parm-sample > /dev/null && [ -z "$(ls tmpd)" ]'
done_testing
