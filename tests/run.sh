#!/bin/sh
# tests/run.sh - run every test program and script, count TAP lines, and
# end with "N passed, N failed" (and skips, each with its reason above).
cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0 skipped=0
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
for t in tests/test_*.c tests/t_*.sh; do
	[ -e "$t" ] || continue
	case $t in
	*.c) cmd=${t%.c} ;;
	*) cmd="sh $t" ;;
	esac
	name=$(basename "${t%.*}")
	$cmd >"$log" 2>&1
	rc=$?
	p=$(grep -c '^ok ' "$log" | tr -d ' ')
	s=$(grep -c '^ok .*# SKIP' "$log" | tr -d ' ')
	f=$(grep -c '^not ok ' "$log" | tr -d ' ')
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "$name: exited $rc without a failing check (crash?)" >>"$log"
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	printf '%-24s %3d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s"
	grep -E '^not ok |# SKIP|^#|exited' "$log" | sed 's/^/    /'
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
