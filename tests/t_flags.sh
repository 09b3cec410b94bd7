#!/bin/sh
# t_flags.sh - one flag language (parm(7), OPTIONS): a short option means
# the same long one in every tool whose --help lists it, -V everywhere,
# and the letters that moved refuse their old meaning loudly.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
cd "$T" || exit 1

for tool in parm-logits parm-mix parm-sample parm-eval parm-train; do
	"$tool" --help | sed -n 's/^ *\(-[A-Za-z]\), \(--[a-z-]*\).*/\1 \2/p' |
		sed "s/\$/ $tool/"
done | sort -u > letters
ok "every tool's --help lists some short options" sh -c '[ $(wc -l < letters) -gt 30 ]'
ok "a short option means one long option across the tools" sh -c '
	awk "{ print \$1, \$2 }" letters | sort -u | awk "{ n[\$1]++ } END { for (l in n) if (n[l] > 1) { print l; bad = 1 } exit bad }"'
for tool in parm-logits parm-mix parm-sample parm-eval parm-train; do
	ok "$tool -V prints its version" sh -c "$tool -V | grep -q '^$tool [0-9]'"
done
ok "parm-train MODE -V too" sh -c 'parm-train arm -V | grep -q "^parm-train " &&
	parm-train init -V | grep -q "^parm-train " && parm-train vocab -V | grep -q "^parm-train "'
fails "parm-sample -t (temperature moved to --temp: -t is threads)" "^parm-sample: unknown option '-t'" \
	parm-sample -t 0
fails "parm-sample -p (top-p moved to --top-p: -p is pref)" "^parm-sample: unknown option '-p'" \
	parm-sample -p 0.9
fails "parm-eval -s (scorer moved to --scorer: -s is seed)" "^parm-eval: unknown option '-s'" \
	parm-eval score -s h=true r.jsonl
fails "parm-train init -t (type moved to --type: -t is threads)" "^parm-train: unknown option '-t'" \
	parm-train init -t f16
ok "parm-sample --temp, --temperature and --jsonl are taken" sh -c '
	parm-sample --temp 0 --temperature 0 --jsonl --top-p 1 --min-p 0 < /dev/null 2>&1 |
	grep -q "empty input"'
done_testing
