#!/bin/sh
# t_faults - a pipe never hangs and never leaves files behind: a sampler
# that refuses the stream, a reader that leaves early, a stage dying
# mid-pipe, a byte flipped anywhere in the stream, a producer killed, a
# model truncated while mapped.  Every pipe runs under `timeout`, which only
# turns a hang into a failure: a healthy run ends in seconds on any machine.
. tests/lib.sh
need_fixtures "pipe fault tests"
top=$PWD
cd "$T" || exit 1
mkdir tmp
TMPDIR=$PWD/tmp
export TMPDIR
unset PARM_STREAM_TIMEOUT
GUARD=120
# Stages that are not ours, as scripts (each pipe stage must be one
# command: see pipe).  take N passes the first N bytes of stdin on, no
# more, holding nothing back (plain head -c keeps a stdio buffer, dd counts
# short reads as blocks).
take='stdbuf -o0 head -c'
printf '%s\n' "$take \"\$1\"; kill -KILL \$\$" > die-after.sh
printf '%s\n' "$take \"\$1\"; kill -KILL \$(cat pid); exec cat" > kill-producer-after.sh
printf '%s\n' "$take \"\$1\"; $take 1 | tr '\\000-\\377' '\\200-\\377\\000-\\177'; exec cat" > flip.sh
printf '%s\n' "$take 100; truncate -s 4096 \"\$1\"; exec cat" > truncate-after.sh
printf '%s\n' 'echo $$ > pid; exec "$@"' > pid.sh
init() {
	parm-train init --vocab "$1" --dim 32 --layers 2 --heads 4 --kv-heads 2 \
		--ctx 64 --seed "$2" -o "$3" 2>init.err || { cat init.err; exit 1; }
}
init "$fx/ggml-vocab-llama-spm.gguf" 3 base.gguf
init "$fx/ggml-vocab-gpt-2.gguf" 4 other.gguf
init "$fx/ggml-vocab-llama-spm.gguf" 5 small.gguf
"$top/tests/test_mix" --make-arm small.gguf 2 q,k,v 7 arm.gguf >/dev/null ||
	{ echo "not ok 1 - make an ARM"; exit 1; }
# a vocabulary of 300 tokens: a whole round then fits in the pipes' buffers,
# where a stage that stopped reading is not noticed by the one writing
(cd "$top" && sh examples/build.sh "$T/bin") >/dev/null &&
	for i in 1 2 3 4 5 6 7 8; do
		echo '{"text": "the cat sat on the mat; how do I boil an egg? hello there, the end"}'
	done > corpus.jsonl && parm-train vocab --size 300 -o v300.gguf corpus.jsonl >/dev/null 2>&1 &&
	init v300.gguf 6 tiny.gguf && init v300.gguf 8 tiny-small.gguf &&
	"$top/tests/test_mix" --make-arm tiny-small.gguf 2 q,v 9 tiny-arm.gguf >/dev/null ||
	{ echo "not ok 1 - a 300-token model and ARM"; exit 1; }
printf 'Hello there\nHow do I boil an egg?\nThe end\n' > prompts.txt
LOGITS="parm-logits -n 8 base.gguf < prompts.txt"
TINY="parm-logits -n 8 tiny.gguf < prompts.txt"
TINY_MIX="parm-mix --pref .5,.5 tiny-arm.gguf"
MIX="parm-mix --pref .5,.5 arm.gguf"

# pipe STAGE...: run STAGE1 | STAGE2 | ... under the guard; stage i's exit
# status goes to rc.i, its stderr to err.i; the last one's stdout to out.
# bash runs each stage as the command itself, as a user's shell does: a
# wrapper holding the pipe's other end would hide a stage's going.
pipe() {
	rm -f rc.* err.* out
	i=0 cmd=
	for s in "$@"; do
		i=$((i + 1))
		cmd="$cmd${cmd:+ | }$s 2>err.$i"
	done
	timeout $GUARD env ${STALL:+PARM_STREAM_TIMEOUT=$STALL} bash -c "$cmd > out
		s=(\${PIPESTATUS[@]}); for j in \${!s[@]}; do echo \${s[j]} > rc.\$((j + 1)); done"
}

# said_before N: a stage before N wrote to stderr
said_before() {
	j=1
	while [ $j -lt "$1" ]; do
		[ -s err.$j ] && return 0
		j=$((j + 1))
	done
	return 1
}

# failed_after N: stage N exited 1, with its one line, or quietly when a
# stage before it said why (it read that stage's abort record); a race
# between the abort and a closed feedback channel may give either
failed_after() {
	[ "$(cat rc.$1)" -eq 1 ] && { [ "$(wc -l < err.$1)" -eq 1 ] ||
		{ [ ! -s err.$1 ] && said_before "$1"; }; }
}

# stage N STATUS LINES: stage N exited with STATUS, LINES lines on stderr
stage() {
	[ "$(cat rc.$1 2>/dev/null)" = "$2" ] && [ "$(wc -l < err.$1)" -eq "$3" ] && return
	echo "stage $1: exit $(cat rc.$1 2>/dev/null), stderr:" >&2; cat err.$1 >&2
	return 1
}
# cat and the like die of SIGPIPE (141) when their reader has gone
not_ours() { [ "$(cat rc.$1)" -eq 141 ] && [ ! -s err.$1 ]; }
clean_tmp() { [ -z "$(ls tmp)" ] || { echo "left in TMPDIR: $(ls tmp)" >&2; false; }; }

# 1. the sampler refuses the header (another vocabulary): it says why,
# the others end quietly, whatever is in the middle
refused() {
	pipe "${2:-$LOGITS}" "$1" "parm-sample -v other.gguf" &&
	stage 1 0 0 && { stage 2 0 0 || not_ours 2; } && stage 3 1 1 &&
	grep -q '^parm-sample: .*tokenizer' err.3 && clean_tmp
}
ok "sampler refuses the header behind parm-mix: one error, no hang" refused "$MIX"
ok "sampler refuses the header behind cat: one error, no hang" refused cat
ok "300 tokens, sampler refuses behind parm-mix: one error, no hang" refused "$TINY_MIX" "$TINY"
ok "300 tokens, sampler refuses behind cat: one error, no hang" refused cat "$TINY"
ok "300 tokens, sampler refuses behind tee: one error, no hang" refused "tee /dev/null" "$TINY"

# 2. the reader of the sampler leaves early: everyone exits 0 quietly
head_case() {
	pipe "${2:-$LOGITS}" "$1" "parm-sample" "head -n 1" &&
	stage 1 0 0 && stage 2 0 0 && stage 3 0 0 && stage 4 0 0 &&
	[ "$(wc -l < out)" -eq 1 ] && clean_tmp
}
ok "| head -n 1 after parm-mix: all exit 0, quietly" head_case "$MIX"
ok "| head -n 1 after cat: all exit 0, quietly" head_case cat
ok "300 tokens, | head -n 1 after parm-mix: all exit 0, quietly" head_case "$TINY_MIX" "$TINY"
ok "300 tokens, | head -n 1 after cat: all exit 0, quietly" head_case cat "$TINY"

# 3. a stage dies mid-pipe: the next says the stream ended early, the
# ones after it leave on its abort record, the ones before quietly
died() {
	pipe "$LOGITS" "sh die-after.sh $1" "$MIX" "parm-sample" &&
	stage 1 0 0 && [ "$(cat rc.2)" -eq 137 ] && stage 3 1 1 && failed_after 4 &&
	grep -q 'unexpected end of stream' err.3 && clean_tmp
}
for n in 100 5000 150000; do
	ok "a middle stage killed after $n bytes: the rest end" died $n
done
# kill the producer once round 2 is on its way: it was written after the
# sampler's choices for round 1, so after its hello, which removed the FIFO
first=$(sh -c "parm-logits -n 1 base.gguf < prompts.txt" | tee first.bin | parm-sample >/dev/null &&
	wc -c < first.bin)
died_first() {
	pipe "sh pid.sh $LOGITS" "sh kill-producer-after.sh $((first + 10))" "$MIX" "parm-sample" &&
	[ "$(cat rc.1)" -eq 137 ] && stage 3 1 1 && failed_after 4 && clean_tmp
}
ok "the producer killed (SIGKILL) mid-run: the rest end, nothing left in TMPDIR" died_first

# 4. a flipped byte anywhere: a clean error or a finished run, never a hang
# (a length made longer stalls a record: 3 s of silence then end it; a
# timeout that fires early under load only makes another clean error)
flipped() {
	STALL=3
	pipe "$LOGITS" "$MIX" "sh flip.sh $1" "parm-sample"
	rc=$? STALL=
	[ $rc -eq 0 ] || { echo "hung or failed: $rc" >&2; return 1; }
	for s in 1 2 3 4; do
		[ $s -eq 3 ] && not_ours 3 && continue
		rc=$(cat rc.$s) lines=$(wc -l < err.$s)
		{ [ "$rc" -lt 128 ] && [ "$lines" -le 1 ] && { [ "$rc" -eq 0 ] || [ "$lines" -eq 1 ]; }; } ||
			failed_after $s ||
			{ echo "stage $s: exit $rc, $lines lines:" >&2; cat err.$s >&2; return 1; }
	done
	clean_tmp
}
for off in 0 3 17 45 80 200 1000 20000 100000 140000 300000; do
	ok "byte $off flipped after parm-mix: clean error or done, never a hang" flipped $off
done

# 5. a model truncated while the producer has it mapped: one line, not a
# bare "Bus error", and no FIFO left behind
cp base.gguf trunc.gguf
truncated() {
	pipe "parm-logits -n 8 trunc.gguf < prompts.txt" "sh truncate-after.sh trunc.gguf" \
		"parm-sample" &&
	stage 1 1 1 && grep -q '^parm-logits: .*truncated.*SIGBUS' err.1 && clean_tmp
}
ok "model truncated while mapped: one line (SIGBUS), nothing left" truncated

# 6. under an address-space limit OpenBLAS's workers cannot map their
# buffers and retry for ever: the pipe still ends, done or with one line
# (or quietly after the stage before said why) (below about 60 MB OpenBLAS itself kills the process at load;
# a model is refused with a clear line where its buffers cannot fit)
limited() {
	pipe "sh -c 'ulimit -v $1; exec \"\$@\"' - $LOGITS" \
		"sh -c 'ulimit -v $1; exec parm-sample'" &&
	for s in 1 2; do
		rc=$(cat rc.$s) lines=$(wc -l < err.$s)
		{ [ "$rc" -eq 0 ] && [ "$lines" -eq 0 ]; } || failed_after $s ||
			{ echo "stage $s: exit $rc, $lines lines:" >&2; cat err.$s >&2; return 1; }
	done
}
for kb in 150000 1000000; do
	if [ -n "$PARM_SANITIZED" ]; then    # ASan reserves terabytes of address space
		skip "AddressSanitizer cannot run under ulimit -v" "under ulimit -v $kb the pipe ends"
	else
		ok "under ulimit -v $kb the pipe ends (done or one clear line), never hangs" limited $kb
	fi
done

done_testing
