#!/bin/sh
# t_remote - parm-logits --remote.  Faults against a loopback server that
# misbehaves on purpose (tests/fault-server.c); correctness against the real
# llama.cpp server serving a small f32 model (f32: the cached build has
# AMX off because its kernels crashed on q8_0), compared with running the
# same file locally.
. tests/lib.sh
need_fixtures "remote tests"
top=$PWD
server_bin="$HOME/.cache/parm/llama.cpp/bin/llama-server"
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

cd "$T" || exit 1
pkgs="msgpack libcurl jansson openblas libarchive"
cc -std=c11 -O2 -Wall -D_GNU_SOURCE -o fault-server "$top/tests/fault-server.c" &&
# shellcheck disable=SC2086 # EXTRA_*FLAGS: make check-asan's sanitizers, as libparm.a's
cc -std=c11 -O2 -Wall -D_GNU_SOURCE ${EXTRA_CFLAGS:-} -I"$top/include" -o rcmp "$top/tests/remote-compare.c" \
	"$top/libparm.a" $(pkg-config --libs $pkgs libcrypto 2>/dev/null || pkg-config --libs $pkgs) \
	-lm -pthread ${EXTRA_LDFLAGS:-} ||
	{ echo "not ok 1 - build the test helpers"; exit 1; }
parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 --heads 4 \
	--seed 3 -o m.gguf 2>init.err || { echo "not ok 1 - parm-train init"; cat init.err; exit 1; }
printf 'Hello there\nHow do I boil an egg?\nThe end\n' > p.txt

# fault-server MODE: start one, its port in $port, its request log in MODE.log
fault() {
	rm -f port
	./fault-server "$1" port "$1.log" & pids="$pids $!"
	i=0; while [ ! -s port ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	port=$(cat port)
}
# rl ARGS: parm-logits --vocab m.gguf ARGS < p.txt into a sampler; its
# stderr and exit status (the sampler's complaint about the cut stream and
# its stdout are dropped)
rl() {
	{ parm-logits --vocab m.gguf "$@" < p.txt 2>&3; echo $? > rc; } 3>&2 |
		parm-sample > /dev/null 2>&1
	return "$(cat rc)"
}

# port 1 on loopback: nobody listens there
fault ok; okport=$port
fails "server down: retried, then one line naming the URL" \
	"^parm-logits: http://127.0.0.1:1/v1/models: .*connect.*\(after 2 retries\)" \
	rl --retries 2 --remote http://127.0.0.1:1
ok "a working server: the pipe runs, every prompt answered" sh -c "
	parm-logits --vocab m.gguf -n 2 --remote http://127.0.0.1:$okport < p.txt | parm-sample --temp 0 > out &&
	[ \$(wc -l < out) -eq 3 ]"
fault slow
fails "server too slow: --timeout" "^parm-logits: http://127.0.0.1:$port/completion: .*[Tt]imed? ?out" \
	rl --timeout 1 --remote http://127.0.0.1:$port
fault 500
ok "500s then success: retries succeed" sh -c "
	parm-logits --vocab m.gguf -n 2 -b 1 --remote http://127.0.0.1:$port < p.txt | parm-sample --temp 0 > out &&
	[ \$(wc -l < out) -eq 3 ] && [ \$(grep -c /completion 500.log) -eq 8 ]"
fault 500
fails "500s and no retries left: the server's message" \
	"^parm-logits: http://127.0.0.1:$port/completion: HTTP 500: busy, try again" \
	rl -b 1 --retries 1 --remote http://127.0.0.1:$port
fault garbage
fails "garbage reply" "^parm-logits: http://127.0.0.1:$port/completion: malformed reply" \
	rl --remote http://127.0.0.1:$port
fault truncated
fails "truncated reply" "^parm-logits: http://127.0.0.1:$port/completion: truncated reply" \
	rl --remote http://127.0.0.1:$port
fault 400
fails "a 400 is shown, with the logprobs hint" \
	"^parm-logits: http://127.0.0.1:$port/completion: HTTP 400: Requested sample logprobs .*--max-logprobs" \
	rl -b 1 --remote http://127.0.0.1:$port
ok "a 400 is not retried" [ "$(grep -c /completion 400.log)" -eq 1 ]
fault tokenize
fails "a server that tokenises otherwise is refused" \
	"^parm-logits: http://127.0.0.1:$port: the server tokenises unlike m.gguf" \
	rl --remote http://127.0.0.1:$port
fails "--remote needs --vocab" '^parm-logits: --remote needs --vocab' \
	parm-logits --remote http://127.0.0.1:1
fails "--remote with a model file" '^parm-logits: --remote takes the place of a model' \
	parm-logits --remote http://127.0.0.1:1 --vocab m.gguf m.gguf
fails "--lora without --remote" '^parm-logits: --lora goes with --remote and the llamacpp API' \
	parm-logits --lora 1 m.gguf
fails "--lora with an empty entry" "^parm-logits: --lora: '1,,2': entry 2 is empty" \
	parm-logits --remote http://127.0.0.1:1 --vocab m.gguf --lora 1,,2
fails "--lora with the openai API" '^parm-logits: --lora goes with --remote and the llamacpp API' \
	parm-logits --remote http://127.0.0.1:1 --api openai --vocab m.gguf --lora 1
fails "--pref on a model that is not an ARM" '^parm-logits: .*m.gguf' \
	sh -c 'echo hi | parm-logits --pref 1 m.gguf > s.out'
fails "parm-mix --remote needs --vocab" '^parm-mix: --remote needs --vocab' \
	parm-mix --remote http://127.0.0.1:1
fails "parm-mix --vocab without --remote" '^parm-mix: --vocab goes with --remote' \
	parm-mix --vocab m.gguf m.gguf
fails "parm-mix --remote and an ARM file" '^parm-mix: --remote takes the place of an ARM file' \
	parm-mix --remote http://127.0.0.1:1 --vocab m.gguf m.gguf
fails "parm-mix --remote with --merge" '^parm-mix: --merge and --no-merge are for an ARM run here' \
	parm-mix --remote http://127.0.0.1:1 --vocab m.gguf --merge
fails "parm-mix --remote: a server down, named" '^parm-mix: http://127.0.0.1:1/v1/models: .*connect' \
	sh -c 'echo hi | parm-logits -n 2 m.gguf | parm-mix --retries 0 --remote http://127.0.0.1:1 --vocab m.gguf | parm-sample'
fails "--api other than llamacpp or openai" '^parm-logits: --api: expected llamacpp or openai' \
	parm-logits --remote http://127.0.0.1:1 --vocab m.gguf --api grpc
ok "the API key is sent as a bearer token and never printed" sh -c "
	PARM_API_KEY=sekrit-key-123 parm-logits --vocab m.gguf --retries 0 \
		--remote http://127.0.0.1:1 < p.txt > out 2> err; [ \$? -ne 0 ] &&
	! grep -q sekrit out err"

# TLS: a loopback openssl s_server with a self-signed certificate (its
# -www reply is an HTML page, so a passed handshake ends in "malformed reply")
if ! command -v openssl > /dev/null; then
	skip "no openssl command" "--cacert against a self-signed HTTPS server"
elif ! openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout tls.key -out tls.pem 2> tls.err; then
	echo "not ok $((tap_n + 1)) - make a self-signed certificate"; sed 's/^/#   /' tls.err
	tap_n=$((tap_n + 1)); tap_fail=$((tap_fail + 1))
else
	openssl s_server -accept 127.0.0.1:0 -cert tls.pem -key tls.key -www > tls.out 2>&1 &
	pids="$pids $!"
	i=0; while ! grep -q '^ACCEPT' tls.out && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	tport=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' tls.out)
	turl=https://127.0.0.1:$tport
	fails "a self-signed server is refused: TLS verification, with the --cacert hint" \
		"^parm-logits: $turl/v1/models: SSL certificate problem: self-signed certificate .*--cacert" \
		rl --retries 0 --remote "$turl"
	fails "--cacert with its certificate: the handshake passes (then the HTML reply is malformed)" \
		"^parm-logits: $turl/v1/models: malformed reply" \
		rl --retries 0 --cacert tls.pem --remote "$turl"
	fails "--cacert of an unreadable file" "^parm-logits: --cacert nope\\.pem: No such file" \
		rl --cacert nope.pem --remote "$turl"
	fails "--cacert of a file with no PEM certificate" "^parm-logits: --cacert tls\\.key: no PEM certificate" \
		rl --cacert tls.key --remote "$turl"
fi

# the real server
if [ ! -x "$server_bin" ]; then
	skip "llama.cpp reference not built: run make llamacpp" "remote against llama-server"
	done_testing; exit
fi
start_server() {  # [ARGS]: a free loopback port: try a few at random
	for try in 1 2 3 4 5; do
		sport=$(( 20000 + ($$ * 7 + try * 7919 + $(date +%N | sed 's/^0*//;s/^$/0/') / 1000) % 30000 ))
		"$server_bin" -m m.gguf "$@" --host 127.0.0.1 --port "$sport" -np 4 -c 2048 -t 2 \
			--alias "parm-test-$$-$try" --no-webui > server.log 2>&1 &
		spid=$!
		# the port may be someone else's: wait for our own model's name
		if ./rcmp wait "http://127.0.0.1:$sport/v1/models" 60 "parm-test-$$-$try"; then
			pids="$pids $spid"; salias=parm-test-$$-$try; return 0
		fi
		kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
	done
	return 1
}
if ! start_server; then
	echo "not ok $((tap_n + 1)) - llama-server starts"; sed 's/^/#   /' server.log | tail -5
	tap_n=$((tap_n + 1)); tap_fail=$((tap_fail + 1)); done_testing; exit
fi
url=http://127.0.0.1:$sport
ok "top-8 ids and log-probs from llama-server match the local model (1e-3)" sh -c "
	parm-logits -n 8 -b 2 m.gguf < p.txt | ./rcmp dump 8 > local.txt &&
	parm-logits -n 8 -b 2 -k 8 --remote $url --vocab m.gguf < p.txt | ./rcmp dump 8 > remote.txt &&
	./rcmp diff 1e-3 local.txt remote.txt >&2"
ok "the openai API (/v1/completions) gives the same" sh -c "
	parm-logits -n 8 -b 2 -k 8 --api openai --remote $url/v1 --vocab m.gguf < p.txt |
	./rcmp dump 8 > openai.txt && ./rcmp diff 1e-3 local.txt openai.txt >&2"
ok "greedy generation is the same remote and local" sh -c "
	parm-logits -n 12 m.gguf < p.txt | parm-sample --temp 0 > local.out &&
	parm-logits -n 12 -k 1 --remote $url --vocab m.gguf < p.txt | parm-sample --temp 0 > remote.out &&
	[ -s local.out ] && cmp local.out remote.out"
ok "provenance names the server, the API and the vocabulary" sh -c "
	echo hi | parm-logits -n 2 --remote $url --vocab m.gguf | parm-sample --temp 0 --json > j &&
	grep -q '\"remote\": *\"$url/completion\"' j && grep -q '\"api\": *\"llamacpp\"' j &&
	grep -q '\"vocab\": *\"m.gguf\"' j"
fails "a vocabulary other than the server's is refused" \
	"^parm-logits: $url: the server's vocabulary has [0-9]+ tokens" \
	sh -c 'parm-logits --remote "$0" --vocab "$1" < p.txt > s.out' "$url" "$fx/ggml-vocab-gpt-2.gguf"
if [ -x "$top/tools/parm-mix" ] && [ -x "$top/tests/test_mix" ]; then
	"$top/tests/test_mix" --make-arm m.gguf 2 q,v 7 parm.gguf > /dev/null 2>&1

	ok "parm-logits --pref runs the ARM itself, and the chain says so" sh -c "
		echo hi | parm-logits -n 2 --pref helpful=0.25,harmless=0.75 parm.gguf |
		parm-sample --temp 0 --json > j && grep -q '\"arm\": *\"parm.gguf\", *\"pref\": *\[0.25, *0.75\]' j"
	# the PARM served by an unmodified llama-server as its k + 1 exported
	# LoRA adapters, each alpha asked for per request (--lora 1,a1,a2)
	parm-train export -o lora.gguf parm.gguf > lora.paths 2> export.err
	# --cache-ram 0: its host-memory prompt cache is keyed by tokens alone,
	# and would give a request the KV cache computed at another alpha
	if start_server --cache-ram 0 $(sed 's/^/--lora /' lora.paths); then
		aurl=http://127.0.0.1:$sport
		for a in 1,0 0.3,0.7 0,1; do
			ok "the PARM at ($a) on llama-server as exported LoRA adapters: top-8 ids and log-probs match the local ARM (1e-3)" sh -c "
				parm-logits -n 8 -b 2 --pref $a parm.gguf < p.txt | ./rcmp dump 8 > arm-local.txt &&
				parm-logits -n 8 -b 2 -k 8 --remote $aurl --lora 1,$a --vocab m.gguf < p.txt |
				./rcmp dump 8 > arm-remote.txt && ./rcmp diff 1e-3 arm-local.txt arm-remote.txt >&2 &&
				! ./rcmp diff 1e-3 local.txt arm-local.txt 2>/dev/null"
		done
		ok "parm-mix --remote: the PARM on llama-server guides the pipe as the local ARM does" sh -c "
			parm-logits -n 8 m.gguf < p.txt | parm-mix --pref 0.3,0.7 parm.gguf |
			parm-sample --temp 0 > g-local.out &&
			parm-logits -n 8 m.gguf < p.txt |
			parm-mix --remote $aurl --vocab parm.gguf --pref helpful=0.3,harmless=0.7 |
			parm-sample --temp 0 > g-remote.out && cmp g-local.out g-remote.out &&
			parm-logits -n 8 m.gguf < p.txt | parm-sample --temp 0 > g-base.out &&
			! cmp -s g-base.out g-local.out"
		# the base's top 1000 hold the guided choice; with its top 40 the
		# remote ARM still matches a local ARM on the same candidates
		ok "base and ARM both on servers: the greedy text of the all-local pipe" sh -c "
			parm-logits -n 8 -k 1000 --remote $url --vocab m.gguf < p.txt |
			parm-mix --remote $aurl --vocab parm.gguf --pref 0.3,0.7 -w 2 |
			parm-sample --temp 0 > g-both.out &&
			parm-logits -n 8 m.gguf < p.txt | parm-mix -w 2 --pref 0.3,0.7 parm.gguf |
			parm-sample --temp 0 > g-all-local.out && cmp g-both.out g-all-local.out &&
			parm-logits -n 8 -k 40 --remote $url --vocab m.gguf < p.txt |
			parm-mix --remote $aurl --vocab parm.gguf --pref 0.3,0.7 -w 2 |
			parm-sample --temp 0 --json > g-both.jsonl &&
			parm-logits -n 8 -k 40 --remote $url --vocab m.gguf < p.txt |
			parm-mix --pref 0.3,0.7 -w 2 parm.gguf | parm-sample --temp 0 --json > g-rb.jsonl &&
			sed 's/.*\"response\":\(\"[^\"]*\"\).*/\1/' g-both.jsonl > t1 &&
			sed 's/.*\"response\":\(\"[^\"]*\"\).*/\1/' g-rb.jsonl > t2 && cmp t1 t2 &&
			grep -q '\"stage\":\"parm-mix\",\"remote\":\"$aurl/completion\",\"vocab\":\"parm.gguf\",\"objectives\":\[\"helpful\",\"harmless\"\],\"pref\":\[0.3,0.7\]' g-both.jsonl"
	else
		echo "not ok $((tap_n + 1)) - llama-server starts with the exported adapters"
		sed 's/^/#   /' server.log | tail -5; tap_n=$((tap_n + 1)); tap_fail=$((tap_fail + 1))
	fi
	# the openai path: a server of one adapter merged at alpha, asked
	# through its OpenAI-compatible /v1/completions by model name
	parm-train export --pref 0.3,0.7 -o merged.gguf parm.gguf > /dev/null 2>&1
	if start_server --lora merged.gguf; then
		murl=http://127.0.0.1:$sport/v1 malias=$salias
		ok "parm-mix --remote --api openai: one merged adapter served, the local ARM's greedy text" sh -c "
			parm-logits -n 8 m.gguf < p.txt | parm-mix --pref 0.3,0.7 parm.gguf |
			parm-sample --temp 0 > o-local.out &&
			parm-logits -n 8 m.gguf < p.txt |
			parm-mix --remote $murl --api openai --model $malias --vocab parm.gguf \
				--pref 0.3,0.7 | parm-sample --temp 0 > o-remote.out &&
			cmp o-local.out o-remote.out"
	else
		echo "not ok $((tap_n + 1)) - llama-server starts with the merged adapter"
		sed 's/^/#   /' server.log | tail -5; tap_n=$((tap_n + 1)); tap_fail=$((tap_fail + 1))
	fi
	ok "parm-logits --remote | parm-mix --pref | parm-sample" sh -c "
		parm-logits -n 6 --remote $url --vocab m.gguf < p.txt |
		parm-mix --pref 0.3,0.7 parm.gguf | parm-sample --temp 0 > mixed && [ \$(wc -l < mixed) -eq 3 ]"
else
	skip "tools/parm-mix or tests/test_mix not built yet" "parm-logits --remote | parm-mix | parm-sample"
fi
done_testing
