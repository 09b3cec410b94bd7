#!/bin/sh
# tests/run.sh - run every test program and script, count TAP lines, and
# end with "N passed, N failed" (and skips, each with its reason above).
#
# Everything runs once on the SIMD path the CPU picks by default; then the
# numerical tests run again on every other path the CPU has (PARM_SIMD,
# lib/simd.h), with OpenBLAS's kernels for a CPU of that kind
# (OPENBLAS_CORETYPE, even if the environment sets it: the default pass
# keeps that), so a result that depends on a CPU's rounding fails here
# and not only on another machine.
cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0 skipped=0
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT

# The tests whose results go through the vector kernels or sgemm.  Not
# test_llamacpp: most of its time is llama.cpp's side and the tokenizers,
# the same on every path, and our side of it is held to the plain-loop
# references by test_quant, test_kernels and test_model on every path.
numerical="tests/test_quant.c tests/test_quant_x8.c tests/test_kernels.c tests/test_backward.c
	tests/test_model.c tests/test_generate.c tests/test_train.c
	tests/test_trainer.c tests/test_pblora.c tests/test_mix.c tests/test_arm.c
	tests/test_qbackbone.c
	tests/t_pipeline.sh tests/t_mix.sh tests/t_train.sh tests/t_demo.sh tests/t_owndata.sh"

# run_test FILE LABEL: run one test, add up its TAP lines, print a line.
run_test() {
	case $1 in
	*.c) cmd=${1%.c} ;;
	*) cmd="sh $1" ;;
	esac
	name=$(basename "${1%.*}")$2
	t0=$(date +%s)
	$cmd >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	p=$(grep -c '^ok ' "$log" | tr -d ' ')
	s=$(grep -c '^ok .*# SKIP' "$log" | tr -d ' ')
	f=$(grep -c '^not ok ' "$log" | tr -d ' ')
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "$name: exited $rc without a failing check (crash?)" >>"$log"
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	printf '%-32s %3d passed, %d failed, %d skipped (%d s)\n' "$name" "$p" "$f" "$s" "$secs"
	grep -E '^not ok |# SKIP|^#|exited' "$log" | sed 's/^/    /'
}

# The path PARM_SIMD=$1 runs on (test_quant says; clamped to the CPU's).
simd_path() {
	PARM_SIMD=$1 tests/test_quant 2>/dev/null | sed -n 's/^# simd path \([a-z0-9]*\).*/\1/p'
}

# OpenBLAS's kernels on a CPU of each path's kind (Debian's OpenBLAS picks
# them at run time; a build that cannot ignores the variable).
blas_core() {
	case $1 in
	avx512) echo SkylakeX ;;
	avx2) echo Haswell ;;
	*) echo Prescott ;;
	esac
}

best=$(simd_path "")
unset PARM_SIMD
echo "== OpenBLAS kernels: ${OPENBLAS_CORETYPE:-chosen by OpenBLAS for this CPU} (OPENBLAS_CORETYPE)"
core_was=${OPENBLAS_CORETYPE-unset}
start=$(date +%s)
echo "== every test, on the default SIMD path: ${best:-unknown}"
for t in tests/test_*.c tests/t_*.sh; do
	[ -e "$t" ] && run_test "$t" ""
done
for path in avx512 avx2 portable; do
	[ "$path" = "$best" ] && continue
	if [ "$(simd_path $path)" != "$path" ]; then
		echo "== the $path path: skipped, this CPU cannot run it (its best is $best)"
		skipped=$((skipped + 1))
		continue
	fi
	core=$(blas_core $path)
	echo "== numerical tests on the $path path (PARM_SIMD=$path, OPENBLAS_CORETYPE=$core)"
	export PARM_SIMD=$path OPENBLAS_CORETYPE=$core
	for t in $numerical; do
		[ -e "$t" ] && run_test "$t" " [$path]"
	done
	unset PARM_SIMD OPENBLAS_CORETYPE
	[ "$core_was" != unset ] && export OPENBLAS_CORETYPE="$core_was"
done
echo "(make check's tests took $(($(date +%s) - start)) s)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
