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

# man_commands PAGE HEADER: the commands of the .Bd -literal blocks under
# HEADER (".Sh EXAMPLES", ".Ss Some title") of PAGE, one per line, a
# command that goes on over lines (ending in a backslash, | or &&) joined
# with \001 for newlines, roff escapes undone.  Lines that begin with "$ "
# are commands; the others are output shown to the reader.
man_commands() {
	awk -v hdr="$2" '
	/^\.S[hs] / { if ($0 == hdr) in_ex = 1
		      else if ($1 == ".Sh" || substr(hdr, 1, 3) == ".Ss") in_ex = 0
		      next }
	in_ex && /^\.Bd[ \t]+-literal/ { in_bd = 1; next }
	in_bd && /^\.Ed/ { in_bd = 0; next }
	!in_bd { next }
	cont { cmd = cmd "\n" $0; cont = /(\\e|\||&&)$/; if (!cont) print_cmd(); next }
	/^\$ / { cmd = substr($0, 3); cont = /(\\e|\||&&)$/; if (!cont) print_cmd() }
	function print_cmd() { gsub(/\n/, "\001", cmd); print cmd }
	' "$1" | sed -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' \
		-e 's/\\(ga/`/g' -e 's/\\(ti/~/g' -e 's/\\(ha/^/g' \
		-e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\e/\\/g'
}
