# tests/lib.sh - TAP helpers for shell tests; sourced, run from the top dir.
# Tools are taken from tools/ of this tree.
PATH="$PWD/tools:$PATH"
export PATH
tap_n=0
tap_fail=0
T=$(mktemp -d "${TMPDIR:-/tmp}/parm-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

ok() {  # ok DESCRIPTION COMMAND...: passes when COMMAND succeeds
	desc=$1; shift
	tap_n=$((tap_n + 1))
	if ( "$@" ) >"$T/out" 2>"$T/err"; then
		echo "ok $tap_n - $desc"
	else
		echo "not ok $tap_n - $desc"
		sed 's/^/#   /' "$T/err" | head -20
		tap_fail=$((tap_fail + 1))
	fi
}

skip() {  # skip REASON DESCRIPTION
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $2 # SKIP $1"
}

# fails DESC REGEX COMMAND...: COMMAND must exit non-zero, print nothing on
# stdout, and print exactly one stderr line matching REGEX.
fails() {
	desc=$1; re=$2; shift 2
	tap_n=$((tap_n + 1))
	( "$@" ) >"$T/out" 2>"$T/err"
	rc=$?
	lines=$(wc -l < "$T/err")
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ ! -s "$T/out" ] && [ "$lines" -eq 1 ] &&
	   grep -Eq -- "$re" "$T/err"; then
		echo "ok $tap_n - $desc"
	else
		echo "not ok $tap_n - $desc (exit $rc, $lines stderr lines)"
		sed 's/^/#   /' "$T/err" | head -5
		tap_fail=$((tap_fail + 1))
	fi
}

fixtures_dir() {
	if [ -n "$PARM_FIXTURES" ]; then echo "$PARM_FIXTURES"
	elif [ -f ../shared/fixtures/vocab/README.md ]; then echo "$PWD/../shared/fixtures/vocab"
	elif [ -f "$HOME/.cache/parm/fixtures/README.md" ]; then echo "$HOME/.cache/parm/fixtures"
	fi
}

# need_fixtures WHAT: set $fx to the vocab fixtures' directory, or report
# WHAT as skipped (saying why) and end the test script.
need_fixtures() {
	fx=$(fixtures_dir)
	[ -n "$fx" ] && return
	skip "no tokenizer fixtures (make test-fixtures)" "$1"
	done_testing
	exit
}

done_testing() {
	echo "1..$tap_n"
	[ $tap_fail -eq 0 ]
}
