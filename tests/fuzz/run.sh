#!/bin/sh
# tests/fuzz/run.sh SECONDS TARGET... - what `make fuzz` runs, from the top
# of the checkout, after building build/fuzz/TARGET and build/fuzz/mkseeds.
#
# For each target: replay its regression inputs (tests/fuzz/regress/TARGET),
# then fuzz for SECONDS from the corpus kept in build/fuzz/corpus/TARGET,
# seeded with the generated seeds (build/fuzz/seeds) and the committed ones
# (tests/fuzz/seeds).  A crash, a leak, a sanitizer report, an input that
# takes 25 s (generous: the machine may be busy) or one allocation over
# 2 GB is a finding: libFuzzer writes it to build/fuzz/findings/TARGET/.
# Prints per target the executions, executions per second and findings,
# appends them to build/fuzz/campaign.tsv, and exits non-zero when anything
# was found.
secs=${1:-60}
shift
B=build/fuzz
mkdir -p "$B/logs"
if [ ! -d "$B/seeds" ] || [ tests/fuzz/mkseeds.c -nt "$B/seeds" ]; then
	rm -rf "$B/seeds"
	"$B/mkseeds" "$B/seeds" || exit 1
fi
[ -f "$B/campaign.tsv" ] ||
	printf 'date\ttarget\tseconds\texecs\texec_per_s\tfindings\n' > "$B/campaign.tsv"
printf '%-12s %12s %10s %9s\n' target execs exec/s findings
found=0
for t in "$@"; do
	art="$B/findings/$t"
	log="$B/logs/$t.log"
	mkdir -p "$B/corpus/$t" "$art"
	before=$(ls "$art" | wc -l)
	if [ -n "$(ls tests/fuzz/regress/$t 2>/dev/null)" ]; then
		"$B/$t" -runs=1 tests/fuzz/regress/$t/* >"$B/logs/$t.regress.log" 2>&1 ||
			{ echo "$t: a regression input fails (see $B/logs/$t.regress.log)"; found=1; }
	fi
	set -- "$B/seeds/$t" tests/fuzz/seeds/$t
	dirs=
	for d in "$@"; do [ -d "$d" ] && dirs="$dirs $d"; done
	"$B/$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
		-malloc_limit_mb=2048 -timeout=25 -artifact_prefix="$art/" \
		"$B/corpus/$t" $dirs >"$log" 2>&1
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	n=$(( $(ls "$art" | wc -l) - before ))
	[ "$n" -gt 0 ] && found=1
	printf '%-12s %12s %10s %9s\n' "$t" "${execs:-?}" "${rate:-?}" "$n"
	[ "$n" -gt 0 ] && ls -t "$art" | head -n "$n" | sed "s|^|    $art/|"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%FT%T)" "$t" "$secs" "${execs:-0}" \
		"${rate:-0}" "$n" >> "$B/campaign.tsv"
done
exit $found
