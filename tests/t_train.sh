#!/bin/sh
# t_train - parm-train lm and arm on tiny models and synthetic data made
# here: loss falls, held-out accuracy rises, a PARM on two conflicting
# objectives follows alpha, a killed run resumes to the same bytes, and
# every kind of bad input is one clear line with nothing written.
. tests/lib.sh
need_fixtures "training tests"
cd "$T" || exit 1
parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 32 --layers 1 \
	--heads 2 --ctx 64 --seed 3 -o m.gguf 2>init.err ||
	{ echo "not ok 1 - parm-train init"; cat init.err; exit 1; }

# Pairs whose responses differ only by a marker word, "good" or "bad"
# (one token each, so the untrained model has no length bias).  Field a
# prefers "good", field b prefers "bad": two conflicting objectives.
pairs() {  # pairs SEED COUNT
	awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed)
	split("the a my your one some big small red blue", w, " ")
	for (i = 0; i < n; i++) {
		p = w[int(rand() * 10) + 1] " " w[int(rand() * 10) + 1]
		f = w[int(rand() * 10) + 1]; x = rand() < 0.5
		printf "{\"prompt\":\"%s\",\"response_0\":\"%s %s\",\"response_1\":\"%s %s\",\"a\":%d,\"b\":%d}\n",
			p, x ? "good" : "bad", f, x ? "bad" : "good", f, x ? 0 : 1, x ? 1 : 0
	} }'
}
pairs 7 160 > train.jsonl
pairs 8 40 > held.jsonl
common="--template {prompt}: --batch 8 --lr 1e-2 --warmup 5 --beta 1 --seed 5"
AB="--objective A=a --objective B=b"

ok "GenARM (k = 1): loss falls, held-out accuracy rises" sh -c "
	parm-train arm $common --objective A=a --steps 20 --heldout 40 --eval-every 20 \
		--log-every 5 -o g.gguf m.gguf train.jsonl held.jsonl 2> log &&
	first=\$(grep '^step.* loss ' log | head -1 | awk '{ for (i = 1; i < NF; i++) if (\$i == \"loss\") print \$(i+1) }') &&
	last=\$(grep '^step.* loss ' log | tail -1 | awk '{ for (i = 1; i < NF; i++) if (\$i == \"loss\") print \$(i+1) }') &&
	a0=\$(grep '^step 0/' log | awk '{ for (i = 1; i < NF; i++) if (\$i == \"A\") print \$(i+1) }') &&
	a1=\$(grep '^step 20/' log | awk '{ for (i = 1; i < NF; i++) if (\$i == \"A\") print \$(i+1) }') &&
	echo \"loss \$first -> \$last, accuracy \$a0 -> \$a1\" >&2 &&
	awk -v f=\$first -v l=\$last -v a=\$a0 -v b=\$a1 'BEGIN { exit !(l < f && b > a && b >= 0.9) }'"

parm-train arm $common $AB --steps 40 --heldout 0 --log-every 100 \
	-o parm.gguf m.gguf train.jsonl 2>parm.log
parm-eval accuracy --template '{prompt}:' $AB --details --pref 0.5,0.5 parm.gguf held.jsonl \
	> acc 2>>parm.log
ok "PARM: at alpha = e_A it ranks held-out pairs by A" \
	awk '$1 == "1,0" && $2 >= 0.9 { f = 1 } END { exit !f }' acc
ok "PARM: at alpha = e_B it ranks held-out pairs by B" \
	awk '$1 == "0,1" && $3 >= 0.9 { f = 1 } END { exit !f }' acc
ok "PARM: alpha = (0.5, 0.5) lies in between (A's mean margin, --details)" sh -c '
	head -1 acc | grep -q "^alpha	A	B	A:pairs	B:pairs	A:margin	B:margin$" &&
	awk "NR > 1 && (\$4 != 40 || \$5 != 40) { exit 1 }" acc &&
	m1=$(awk "\$1 == \"1,0\" { print \$6 }" acc)
	mh=$(awk "\$1 == \"0.5,0.5\" { print \$6 }" acc)
	m0=$(awk "\$1 == \"0,1\" { print \$6 }" acc)
	echo "margins $m1 $mh $m0" >&2
	awk -v a=$m1 -v b=$mh -v c=$m0 "BEGIN { exit !(a > b && b > c) }"'
ok "one accuracy command: parm-train accuracy prints what parm-eval accuracy prints (issue 14)" sh -c "
	parm-train accuracy -T '{prompt}:' $AB --details -p 0.5,0.5 parm.gguf held.jsonl > same &&
	cmp acc same && parm-train accuracy -j parm.gguf held.jsonl > j1 &&
	parm-eval accuracy -j parm.gguf held.jsonl > j2 && cmp j1 j2 && grep -q '\"margin\"' j1"
ok "PARM diagnostics: the held-out k x k matrix (objective@vertex) in the log and the ARM, |dW| parts" sh -c "
	parm-train arm $common $AB --steps 40 --heldout 40 --eval-every 40 --log-every 100 \
		-o diag.gguf m.gguf train.jsonl held.jsonl 2> log &&
	grep -q '^step 40/40.* A@A [0-9.]* B@A [0-9.]* A@B [0-9.]* B@B [0-9.]*' log &&
	grep -q '^parm-train: arm: |dW| agnostic [0-9.e-]* A [0-9.e-]* B [0-9.e-]*' log &&
	grep -a -q 'parm.train.heldout_accuracy' diag.gguf && grep -a -q 'parm.train.delta_norms' diag.gguf &&
	line=\$(grep '^step 40/40' log) && echo \"\$line\" >&2 &&
	echo \"\$line\" | awk '{ for (i = 1; i < NF; i++) v[\$i] = \$(i + 1) }
		END { exit !(v[\"A@A\"] >= 0.9 && v[\"B@B\"] >= 0.9 && v[\"A@B\"] <= 0.1 && v[\"B@A\"] <= 0.1) }'"
ok "accuracy without --template uses the ARM's own" sh -c "
	parm-eval accuracy --objective A=a --objective B=b parm.gguf held.jsonl > e1 &&
	parm-eval accuracy -T '{prompt}:' --objective A=a --objective B=b parm.gguf held.jsonl > e2 &&
	cmp e1 e2 && parm-eval accuracy -T 'X {prompt}' --objective A=a --objective B=b parm.gguf held.jsonl > e3 &&
	! cmp -s e1 e3"
ok "accuracy without --objective uses the fields the ARM learnt from" sh -c "
	parm-eval accuracy parm.gguf held.jsonl > lab3 &&
	parm-eval accuracy $AB parm.gguf held.jsonl > lab4 && cmp lab3 lab4 &&
	parm-eval accuracy g.gguf held.jsonl | head -1 | grep -q '^alpha	A$'"
# B's labels a coin (the line's parity): at e_B the ARM still ranks by A's
# marker word, which it learns to 1.0, so B's held-out accuracy is the
# share of the 60 held-out coins that agree with A (0.567, the split's, on
# every SIMD path), well within two standard errors (0.13) of chance.
ok "an objective ranked at chance at its vertex is named as unlearnt" sh -c "
	awk '{ sub(/\"b\":[01]/, \"\\\"b\\\":\" (NR % 2)); print }' train.jsonl > coin.jsonl &&
	parm-train arm $common $AB --steps 20 --heldout 60 --log-every 100 -o coin.gguf m.gguf coin.jsonl 2> log &&
	grep -q \"objective 'B' looks unlearnt: held-out accuracy 0.[45]\" log &&
	! grep -q \"objective 'A' looks unlearnt\" log"
ok "--dirichlet and --vertex change the alphas drawn, and the ARM records them" sh -c "
	parm-train arm $common $AB --steps 8 --heldout 0 --log-every 100 --vertex 0.5 \
		--dirichlet 2 -o vx.gguf m.gguf train.jsonl 2>/dev/null &&
	grep -a -q 'dirichlet 2 vertex 0.5' vx.gguf &&
	parm-train arm $common $AB --steps 8 --heldout 0 --log-every 100 \
		-o v0.gguf m.gguf train.jsonl 2>/dev/null &&
	grep -a -q 'dirichlet 0.5 vertex 0' v0.gguf && ! cmp -s vx.gguf v0.gguf"
ok "ARM provenance: steps, data, seed" sh -c "
	grep -a -q 'parm.train.steps' parm.gguf && grep -a -q 'train.jsonl' parm.gguf"

# The other architectures: a PARM trained on a qwen2 (biases), qwen3
# (q/k norms, head dim 24 against dim / heads 16) and phi3 (fused qkv and
# gate||up) backbone learns both objectives, and guides a llama base of the
# same vocabulary through the pipe, merged and unmerged alike.
parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 --heads 4 \
	--ctx 64 --seed 9 -o base.gguf 2>>init.err
printf 'the red\nmy blue\n' > prompts.txt
for arch in qwen2 qwen3 phi3; do
	hd=; [ $arch = qwen3 ] && hd="--head-dim 24"
	ok "$arch: init, a PARM ranks held-out pairs by A at e_A and by B at e_B" sh -c "
		parm-train init --arch $arch $hd --vocab '$fx/ggml-vocab-llama-spm.gguf' --dim 32 \
			--layers 1 --heads 2 --ctx 64 --seed 3 -o $arch.gguf &&
		parm-train arm $common $AB --steps 40 --heldout 0 --log-every 100 \
			-o $arch-parm.gguf $arch.gguf train.jsonl 2>$arch.log &&
		parm-eval accuracy --template '{prompt}:' $AB $arch-parm.gguf held.jsonl > a &&
		cat a >&2 &&
		awk '\$1 == \"1,0\" && \$2 >= 0.9 { f = 1 } END { exit !f }' a &&
		awk '\$1 == \"0,1\" && \$3 >= 0.9 { f = 1 } END { exit !f }' a"
	ok "$arch: the PARM guides a llama base through the pipe, merged as unmerged" sh -c "
		parm-logits -n 6 -T '{prompt}:' base.gguf < prompts.txt |
			parm-mix -w 2 --pref 0.3,0.7 --merge $arch-parm.gguf | parm-sample --temp 0 > merged &&
		parm-logits -n 6 -T '{prompt}:' base.gguf < prompts.txt |
			parm-mix -w 2 --pref 0.3,0.7 --no-merge $arch-parm.gguf | parm-sample --temp 0 > unmerged &&
		[ \$(wc -l < merged) -eq 2 ] && cmp merged unmerged"
done

# The ARM as reward model (parm-eval score --reward): beta * sum log pi over
# the response, the prompt laid out as the ARM learnt; the difference of
# two responses' rewards is the margin accuracy --details gives their pair.
printf '{"prompt":"the red","response_0":" good one","response_1":" bad one","a":0,"b":1}\n' > one.jsonl
printf '{"prompt":"the red","response":"%s","stop":"eos"}\n' " good one" " bad one" > recs.jsonl
reward_is_the_margin() {
	m=$(parm-eval accuracy --details parm.gguf one.jsonl | awk '$1 == "1,0" { print $6 }')
	parm-eval score -j --records --reward r=parm.gguf@1,0 recs.jsonl > r.jsonl || return 1
	d=$(sed 's/.*"scores":{"r":\([-0-9.e]*\)}.*/\1/' r.jsonl | awk 'NR == 1 { a = $1 } NR == 2 { print a - $1 }')
	echo "margin $m, rewards differ by $d" >&2
	awk -v m="$m" -v d="$d" 'BEGIN { e = m - d; if (e < 0) e = -e; a = m < 0 ? -m : m
		exit !(m != "" && d != "" && e <= 2e-5 * (1 + a)) }'
}
ok "score --reward: beta * sum log pi, two responses' rewards differ by their pair's margin" \
	reward_is_the_margin
ok "score --reward: laid out as the ARM learnt; another -T is used, and said (issue 14)" sh -c "
	parm-eval score --records --reward r=parm.gguf@1,0 recs.jsonl > d1 2> w0 && [ ! -s w0 ] &&
	parm-eval score --records --reward r=parm.gguf@1,0 -T '{prompt}:' recs.jsonl > d2 2> w1 &&
	cmp d1 d2 && [ ! -s w1 ] &&
	parm-eval score --records --reward r=parm.gguf@1,0 -T 'say {prompt}' recs.jsonl > d3 2> w2 &&
	! cmp -s d1 d3 && cat w2 >&2 && [ \$(wc -l < w2) -eq 1 ] &&
	grep -q \"^parm-eval: parm.gguf learnt from prompts laid out as '{prompt}:', but --template gives it 'say {prompt}'\$\" w2"
ok "accuracy: labels from other fields than the ARM learnt are used, and said (issue 14)" sh -c "
	parm-eval accuracy -O A=b -O B=a parm.gguf held.jsonl > x 2> w && cat w >&2 &&
	[ \$(wc -l < w) -eq 2 ] && grep -q '^parm-eval: parm.gguf learnt objective A from a, but --objective labels it by b\$' w &&
	parm-eval accuracy -O A=a -O B=b parm.gguf held.jsonl > x 2> w && [ ! -s w ]"

# --template chat: prompts as a user's turn in the backbone's own chat
# template (Phi-3's vocabulary carries one), special tokens parsed.
parm-train init --arch phi3 --vocab "$fx/ggml-vocab-phi-3.gguf" --dim 32 --layers 1 \
	--heads 2 --ctx 64 --seed 3 -o phi3chat.gguf 2>>init.err
ok "arm --template chat --system: trains, and the ARM records both" sh -c "
	parm-train arm --batch 8 --lr 1e-2 --warmup 1 --beta 1 $AB --template chat \
		--system 'Be brief.' --steps 3 --heldout 0 -o chat.gguf phi3chat.gguf train.jsonl 2>log &&
	grep -a -q 'parm.train.system' chat.gguf && grep -a -q 'Be brief.' chat.gguf && grep -a -q 'parm.train.template' chat.gguf"
ok "accuracy of a chat ARM: the recorded chat template and system by default" sh -c "
	parm-eval accuracy --details chat.gguf held.jsonl > c1 &&
	parm-eval accuracy --details -T chat --system 'Be brief.' chat.gguf held.jsonl > c2 && cmp c1 c2 &&
	parm-eval accuracy --details -T chat --system 'Be long.' chat.gguf held.jsonl > c3 && ! cmp -s c1 c3"
ok "parm-mix warns when the base's prompts are laid out otherwise than the ARM learnt (issue 14)" sh -c "
	parm-logits -n 2 base.gguf < prompts.txt | parm-mix --pref 0.5,0.5 parm.gguf 2> w1 |
		parm-sample --temp 0 > /dev/null && cat w1 >&2 && [ \$(wc -l < w1) -eq 1 ] &&
	grep -q \"^parm-mix: parm.gguf learnt from prompts laid out as '{prompt}:', but the base was given the prompt as it is (parm-logits -T '{prompt}:' lays them out alike)\$\" w1 &&
	parm-logits -n 2 -T '{prompt}:' base.gguf < prompts.txt | parm-mix --pref 0.5,0.5 parm.gguf 2> w2 |
		parm-sample --temp 0 > /dev/null && [ ! -s w2 ] &&
	parm-logits -n 2 -T 'Q: {prompt}' phi3chat.gguf < prompts.txt | parm-mix --pref 0.5,0.5 chat.gguf 2> w3 |
		parm-sample --temp 0 > /dev/null && cat w3 >&2 &&
	grep -q \"laid out as a user's turn of the chat template, but the base was given 'Q: {prompt}' (parm-logits --chat \" w3 &&
	parm-logits -n 2 --chat phi3chat.gguf < prompts.txt | parm-mix --pref 0.5,0.5 chat.gguf 2> w4 |
		parm-sample --temp 0 > /dev/null && [ ! -s w4 ]"
fails "arm --template chat on a backbone without a chat template" \
	'^parm-train: --template chat: .*m.gguf: the model has no tokenizer.chat_template' \
	parm-train arm $AB --template chat --steps 1 -o x.gguf m.gguf train.jsonl

# A frozen backbone as users download it: quantised by llama-quantize to
# Q4_K_M (q4_K and q6_K blocks; K-quants need rows of 256).  The ARM
# trains through dequantised tiles and guides the pipe, merged or not.
quantize=$HOME/.cache/parm/llama.cpp/bin/llama-quantize
arm_on_q4_k_m() {
	parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 256 --layers 1 \
		--heads 4 --kv-heads 2 --ff 512 --ctx 64 --seed 3 -o m256.gguf &&
	"$quantize" m256.gguf q4km.gguf Q4_K_M 2 >quantize.log 2>&1 &&
	parm-train arm $common --objective A=a --steps 20 --heldout 40 --eval-every 20 \
		-o gq.gguf q4km.gguf train.jsonl held.jsonl 2>qlog || return 1
	grep '^step 20/20' qlog >&2
	grep -q '^step 20/20.* A 1\.000' qlog || return 1
	for merge in --merge --no-merge; do
		echo 'the big' | parm-logits -n 4 -T '{prompt}:' q4km.gguf |
			parm-mix $merge gq.gguf | parm-sample --temp 0 -j > "out$merge" || return 1
	done
	# the chains differ ("merged"), the tokens must not
	sed 's/.*"tokens":\(\[[^]]*\]\).*/\1/' out--merge > tok--merge
	sed 's/.*"tokens":\(\[[^]]*\]\).*/\1/' out--no-merge > tok--no-merge
	cat tok--merge >&2
	grep -q '^\[[0-9]*,[0-9]*,[0-9]*,[0-9]*\]$' tok--merge && cmp tok--merge tok--no-merge &&
	echo 'the big' | parm-logits -n 4 -T '{prompt}:' q4km.gguf | parm-mix gq.gguf |
		parm-sample --temp 0 -j | grep -q '"merged":false'   # the default on blocks
}
if [ -x "$quantize" ]; then
	ok "GenARM on a Q4_K_M backbone learns, and guides the pipe merged and unmerged alike" \
		arm_on_q4_k_m
else
	skip "no llama-quantize in ~/.cache/parm (make llamacpp builds it)" \
		"GenARM on a Q4_K_M backbone"
fi

# SIGKILL at chosen steps (the trainer's test hook kills it right after the
# checkpoint of that step, so no race with the clock), each time --resume:
# the same bytes as a run never stopped.  Step 30 is the last: killed
# between the final checkpoint and the output.
run="parm-train arm $common $AB --steps 30 --heldout 20 --eval-every 10 --checkpoint-every 5"
ok "uninterrupted run" sh -c "$run -o full.gguf m.gguf train.jsonl 2>/dev/null"
resume=
for step in 5 10 20 30; do
	PARM_TEST_KILL_AFTER_CHECKPOINT=$step $run $resume -o r.gguf m.gguf train.jsonl 2>/dev/null
	rc=$?
	ok "killed after step $step's checkpoint: SIGKILL, a checkpoint, no output" sh -c "
		[ $rc -eq 137 ] && [ -s r.gguf.ckpt ] && [ ! -e r.gguf ] && [ ! -e r.gguf.tmp ]"
	resume=--resume
done
fails "--resume refuses a checkpoint made with other options" \
	'^parm-train: r\.gguf\.ckpt: made by a different run \(checkpoint lr=.*this run lr=' \
	sh -c "$run --lr 2e-2 --resume -o r.gguf m.gguf train.jsonl"
ok "--resume finishes it" sh -c "$run --resume -o r.gguf m.gguf train.jsonl 2>/dev/null"
ok "resumed run's ARM is byte-identical to the uninterrupted one" cmp full.gguf r.gguf
# parm-train export: the ARM as llama.cpp LoRA adapters (test_llamacpp
# holds them to our ARM on llama.cpp itself)
ok "export: k + 1 LoRA adapters, their paths on stdout in llama-server's order" sh -c "
	parm-train export -o lora.gguf parm.gguf > paths 2> export.err && cat export.err >&2 &&
	printf 'lora.agnostic.gguf\nlora.A.gguf\nlora.B.gguf\n' | cmp - paths &&
	for f in \$(cat paths); do grep -a -q 'adapter.lora.alpha' \$f || exit 1; done &&
	grep -q '^parm-train: export: 3 LoRA adapters of parm.gguf: serve with llama-server -m m.gguf' export.err"
ok "export --pref: one adapter merged at alpha" sh -c "
	parm-train export --pref 0.3,0.7 -o merged.gguf parm.gguf > paths 2>/dev/null &&
	echo merged.gguf | cmp - paths && grep -a -q 'parm.export.pref' merged.gguf"
fails "export: a preference of the wrong length" '^parm-train: --pref: ' \
	parm-train export --pref 0.2,0.3,0.5 -o x.gguf parm.gguf
fails "export: -o is required" '^parm-train: export: -o is required' parm-train export parm.gguf
ok "export: a fused backbone (phi3's attn_qkv) gets one pair per fused tensor" sh -c "
	parm-train export -o fused.gguf phi3-parm.gguf > paths 2>/dev/null && [ \$(wc -l < paths) -eq 3 ] &&
	grep -a -q 'blk.0.attn_qkv.weight.lora_a' fused.agnostic.gguf &&
	! grep -a -q 'blk.0.attn_q.weight' fused.agnostic.gguf"
# the official code's checkpoint format (peft save_pretrained): export,
# import, and export again gives the same bytes; the imported ARM scores
# as the original
ok "export --peft, import, export again: the same safetensors bytes and the same scores" sh -c "
	parm-train export --peft -o ck1 parm.gguf > /dev/null &&
	[ -s ck1/adapter_config.json ] && [ -s ck1/adapter_model.safetensors ] &&
	grep -q '\"peft_type\": \"PBLORA\"' ck1/adapter_config.json &&
	grep -a -q 'base_model.model.model.layers.0.self_attn.q_proj.pblora_B' ck1/adapter_model.safetensors &&
	parm-train import -O A=a -O B=b --beta 1 -T '{prompt}:' -o imported.gguf m.gguf ck1 &&
	parm-train export --peft -o ck2 imported.gguf > /dev/null &&
	cmp ck1/adapter_model.safetensors ck2/adapter_model.safetensors &&
	parm-eval accuracy --details -p 0.3,0.7 parm.gguf held.jsonl > s1 &&
	parm-eval accuracy --details -p 0.3,0.7 imported.gguf held.jsonl > s2 && cmp s1 s2"
fails "import: a checkpoint of another peft type" '^parm-train: ck3/adapter_config.json: peft_type is not PBLORA' \
	sh -c 'mkdir -p ck3 && cp ck1/* ck3/ && sed -i "s/PBLORA/LORA/" ck3/adapter_config.json &&
		parm-train import -o x.gguf m.gguf ck3'
fails "import: bias is refused by name" '^parm-train: ck4/adapter_config.json: bias other than "none"' \
	sh -c 'mkdir -p ck4 && cp ck1/* ck4/ && sed -i "s/\"bias\": \"none\"/\"bias\": \"all\"/" ck4/adapter_config.json &&
		parm-train import -o x.gguf m.gguf ck4'
fails "import: a checkpoint for another backbone (its shapes)" "^parm-train: ck1/adapter_model.safetensors: .*is not \[" \
	parm-train import -o x.gguf base.gguf ck1
fails "export --peft: a fused backbone is refused by name" '^parm-train: .*phi3.gguf: a backbone with fused projections' \
	parm-train export --peft -o ck5 phi3-parm.gguf
ok "a finished run, resumed or not, removes its checkpoint (issue 14)" sh -c "
	[ ! -e r.gguf.ckpt ] && [ ! -e full.gguf.ckpt ]"
fails "--resume with no checkpoint" '^parm-train: --resume: no checkpoint none\.ckpt' \
	sh -c "$run --resume -o none m.gguf train.jsonl"

ok "--embed-backbone: the ARM works without the backbone file" sh -c "
	parm-train arm $common --objective A=a --steps 2 --embed-backbone --heldout 0 \
		-o emb.gguf m.gguf train.jsonl 2>/dev/null &&
	mkdir e && mv emb.gguf e/ && cd e &&
	parm-eval accuracy --template '{prompt}:' --objective A=a emb.gguf ../held.jsonl > out &&
	[ \$(wc -l < out) -eq 2 ]"

# lm: next-token training on text and JSONL
for i in 1 2 3 4 5 6 7 8; do echo "the cat sat on the mat and the dog sat on the log"; done > c.txt
printf '{"prompt":"Q: two? A:","response":" two"}\n{"text":"hello world"}\n' > c.jsonl
ok "lm: loss falls and the model is written, same type" sh -c '
	parm-train lm --steps 12 --batch 4 --lr 3e-3 --warmup 2 --max-length 24 \
		--log-every 4 -o lm.gguf m.gguf c.txt c.jsonl 2> log &&
	first=$(grep "^step.* loss " log | head -1 | sed "s/.* loss \([0-9.]*\).*/\1/") &&
	last=$(grep "^step.* loss " log | tail -1 | sed "s/.* loss \([0-9.]*\).*/\1/") &&
	echo "loss $first -> $last" >&2 &&
	awk -v f=$first -v l=$last "BEGIN { exit !(l < f) }" &&
	[ $(wc -c < lm.gguf) -eq $(wc -c < m.gguf) ] &&
	echo the cat | parm-logits -n 3 lm.gguf | parm-sample --temp 0 > out && [ -s out ]'
ok "lm --type q8_0 writes a smaller model" sh -c '
	parm-train lm --steps 1 --batch 4 --max-length 24 --type q8_0 -o q8.gguf \
		m.gguf c.txt 2>/dev/null && [ $(wc -c < q8.gguf) -lt $(wc -c < m.gguf) ]'

# bad input: one line, non-zero exit, nothing written
{ head -3 train.jsonl; echo '{"prompt": broken'; head -2 held.jsonl; } > bad.jsonl
{ head -3 train.jsonl; echo '{"prompt":"x","response_0":"a","response_1":"b","a":0}'; } > nob.jsonl
fails "--strict: a malformed line names file and line" '^parm-train: .*bad\.jsonl:4' \
	parm-train arm $common $AB --strict --steps 1 -o x.gguf m.gguf bad.jsonl
ok "nothing written after the error" sh -c '[ ! -e x.gguf ] && [ ! -e x.gguf.tmp ]'
ok "without --strict the malformed line is skipped and reported" sh -c "
	parm-train arm $common $AB --steps 1 --heldout 0 -o y.gguf m.gguf bad.jsonl 2> log &&
	grep -q 'skipped 1 malformed record' log && grep -q 'bad.jsonl:4' log"
fails "a missing field names the objective and the field" '^parm-train: .*nob\.jsonl:4.*\bb\b' \
	parm-train arm $common $AB --strict --steps 1 -o x.gguf m.gguf nob.jsonl
fails "--vertex past 1" "^parm-train: --vertex" \
	parm-train arm $AB --vertex 1.5 -o x.gguf m.gguf train.jsonl
fails "--dirichlet is for arm" "^parm-train: unknown option '--dirichlet'" \
	parm-train accuracy --dirichlet 1 parm.gguf held.jsonl
fails "accuracy: an objective of the ARM without labels" "^parm-train: .*objective 'A' has no labels" \
	parm-train accuracy --objective C=a parm.gguf held.jsonl
fails "accuracy: alpha of the wrong length" '^parm-train: --pref: ' \
	parm-train accuracy $AB --pref 0.2,0.3,0.5 parm.gguf held.jsonl
fails "bad option value" '^parm-train: --lr' \
	parm-train arm --lr fast -o x.gguf m.gguf train.jsonl
fails "bad --overlong" '^parm-train: --overlong' \
	parm-train arm --overlong chop -o x.gguf m.gguf train.jsonl
fails "option of another mode" "^parm-train: .*unknown option '--type'" \
	parm-train arm --type f16 -o x.gguf m.gguf train.jsonl
fails "no -o" '^parm-train: .*-o' parm-train arm m.gguf train.jsonl
fails "missing backbone" '^parm-train: .*nosuch\.gguf' \
	parm-train arm --steps 1 -o x.gguf nosuch.gguf train.jsonl
ok "no output file after any of these" sh -c '[ ! -e x.gguf ]'

# Output paths are checked before any training: one line naming the path.
mkdir outdir
fails "-o a directory" '^parm-train: outdir: is a directory$' \
	parm-train arm $common $AB --steps 2 -o outdir m.gguf train.jsonl
fails "--checkpoint a directory" '^parm-train: outdir: is a directory$' \
	parm-train lm --steps 2 --checkpoint outdir -o x.gguf m.gguf c.txt
fails "-o in a missing directory" '^parm-train: nodir/x\.gguf: cannot write: nodir: No such file' \
	parm-train lm --steps 2 -o nodir/x.gguf m.gguf c.txt
fails "--checkpoint in a missing directory" '^parm-train: nodir/c: cannot write: nodir: No such file' \
	parm-train arm $common $AB --steps 2 --checkpoint nodir/c -o x.gguf m.gguf train.jsonl
mkdir ro && chmod 555 ro
if [ "$(id -u)" -eq 0 ]; then
	skip "running as root, which ignores permissions" "-o in a read-only directory"
else
	fails "-o in a read-only directory" '^parm-train: ro/x\.gguf: cannot write: ro: Permission denied' \
		parm-train arm $common $AB --steps 2 -o ro/x.gguf m.gguf train.jsonl
fi
ok "nothing written by any of these" sh -c '
	[ ! -e x.gguf ] && [ -z "$(ls -A outdir)" ] && [ -z "$(ls -A ro)" ]'

# A full filesystem (ENOSPC) and a read-only one (EROFS, which binds root
# too): small tmpfs mounts, so root and a mount that works are needed.
# The last line names the file, and no half-written file is left behind.
# fails_late DESC REGEX COMMAND...: like fails, but after training's
# progress lines: the error is the last stderr line, and said once.
fails_late() {
	desc=$1; re=$2; shift 2
	tap_n=$((tap_n + 1))
	( "$@" ) >"$T/out" 2>"$T/err"
	rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ ! -s "$T/out" ] &&
	   [ "$(grep -Ec -- "$re" "$T/err")" -eq 1 ] && tail -n 1 "$T/err" | grep -Eq -- "$re"; then
		echo "ok $tap_n - $desc"
	else
		echo "not ok $tap_n - $desc (exit $rc)"
		sed 's/^/#   /' "$T/err" | tail -n 5
		tap_fail=$((tap_fail + 1))
	fi
}
mkdir full rofs
if [ "$(id -u)" -ne 0 ]; then
	why="not root: no tmpfs to fill"
elif ! mount -t tmpfs -o size=1m parm-test-full full 2>/dev/null; then
	why="mount -t tmpfs is not permitted here"
elif ! mount -t tmpfs -o ro,size=1m parm-test-ro rofs 2>/dev/null; then
	umount full
	why="mount -t tmpfs -o ro is not permitted here"
fi
if [ -n "$why" ]; then
	for d in "lm: the model does not fit" "lm: the checkpoint does not fit" \
		"arm: an ARM with its backbone does not fit" "-o on a read-only filesystem"; do
		skip "$why" "ENOSPC/EROFS: $d"
	done
else
	trap 'umount "$T/full" "$T/rofs" 2>/dev/null; rm -rf "$T"' EXIT
	fails_late "ENOSPC: lm: the model does not fit" \
		'^parm-train: full/lm\.gguf(\.tmp)?: .*No space left on device' \
		parm-train lm --steps 1 --batch 4 --max-length 24 --checkpoint lm.ckpt \
		-o full/lm.gguf m.gguf c.txt
	ok "ENOSPC: no half-written model" sh -c '[ -z "$(ls -A full)" ]'
	fails_late "ENOSPC: lm: the checkpoint does not fit" \
		'^parm-train: full/lm\.ckpt(\.tmp)?: .*No space left on device' \
		parm-train lm --steps 1 --batch 4 --max-length 24 --checkpoint full/lm.ckpt \
		-o lm2.gguf m.gguf c.txt
	ok "ENOSPC: no half-written checkpoint, and no model" sh -c '
		[ -z "$(ls -A full)" ] && [ ! -e lm2.gguf ]'
	fails_late "ENOSPC: arm: an ARM with its backbone does not fit" \
		'^parm-train: full/e\.gguf(\.tmp)?: .*No space left on device' \
		parm-train arm $common --objective A=a --steps 2 --heldout 0 --embed-backbone \
		-o full/e.gguf m.gguf train.jsonl
	ok "ENOSPC: only the checkpoint is left, whole: it resumes elsewhere" sh -c "
		[ \"\$(ls -A full)\" = e.gguf.ckpt ] &&
		parm-train arm $common --objective A=a --steps 2 --heldout 0 --embed-backbone \
			--resume --checkpoint full/e.gguf.ckpt -o e.gguf m.gguf train.jsonl 2>/dev/null &&
		[ -s e.gguf ] && [ ! -e full/e.gguf.ckpt ]"
	fails "EROFS: -o on a read-only filesystem" '^parm-train: rofs/x\.gguf: cannot write: rofs: Read-only file system' \
		parm-train arm $common $AB --steps 2 -o rofs/x.gguf m.gguf train.jsonl
	umount full rofs
fi

# The same inputs and options give the same bytes, on any --threads: a
# model wide enough for OpenBLAS to split its sgemms over its threads
# (whose results change with their number) unless the kernels do it.
parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 \
	--heads 4 --ctx 128 --seed 4 -o w.gguf 2>/dev/null
for run in a.2 b.2 c.1 d.3; do
	parm-train arm $common $AB --template "Answer the user, who asks about {prompt}, as well as you can:" \
		--batch 16 --steps 4 --heldout 0 --threads ${run#?.} \
		--checkpoint-every 0 -o $run.gguf w.gguf train.jsonl 2>/dev/null
done
ok "parm-train arm twice: byte-identical ARMs" cmp a.2.gguf b.2.gguf
ok "parm-train arm on 1, 2 and 3 threads: byte-identical ARMs" \
	sh -c 'cmp a.2.gguf c.1.gguf && cmp a.2.gguf d.3.gguf'
tr -d '{}"' < train.jsonl > corpus.txt
for n in 1 2; do
	parm-train lm --batch 16 --steps 2 --max-length 64 --threads $n --checkpoint-every 0 \
		-o lm.$n.gguf w.gguf corpus.txt 2>/dev/null
done
ok "parm-train lm on 1 and 2 threads: byte-identical models" cmp lm.1.gguf lm.2.gguf
done_testing
