#!/bin/sh
# tests/t_man_examples.sh - the EXAMPLES of every manual page are tests.
#
# By convention each .Bd -literal block in a page's EXAMPLES section is a
# shell session: lines that begin with "$ " are commands (a command whose
# line ends in a backslash, | or && goes on over the next lines), every other line
# is output shown to the reader and is not checked.  All the commands of
# one page run in order as one script under set -e, in a fresh directory
# holding vocab.gguf (llama.cpp's llama-spm vocabulary) and prompts.txt.
. tests/lib.sh

# Run the commands of one page; on failure name the command and show
# what it printed on stderr (or, when nothing, the end of its stdout).
run_examples() {
	page=$1
	dir=$T/$(basename "$page")
	mkdir "$dir" && cp "$vocab" "$dir/vocab.gguf" || return 1
	printf '%s\n' 'The capital of France is' 'Once upon a time' \
		'Water boils at' > "$dir/prompts.txt"
	man_commands "$page" ".Sh EXAMPLES" > "$dir.cmds"
	{
		echo 'set -e'
		i=0
		while IFS= read -r cmd; do
			i=$((i + 1))
			echo "echo $i > \"$dir.at\""
			printf '%s\n' "$cmd" | tr '\001' '\n'
		done < "$dir.cmds"
		echo "echo 0 > \"$dir.at\""
	} > "$dir.sh"
	if (cd "$dir" && sh "$dir.sh") > "$dir.out" 2> "$dir.err"; then
		[ "$(cat "$dir.at")" = 0 ] && return 0
	fi
	at=$(cat "$dir.at" 2>/dev/null || echo 1)
	echo "$page: example command $at failed:" >&2
	sed -n "${at}p" "$dir.cmds" | tr '\001' '\n' | sed 's/^/  $ /' >&2
	if [ -s "$dir.err" ]; then tail -n 5 "$dir.err"; else tail -n 3 "$dir.out"; fi >&2
	return 1
}

fx=$(fixtures_dir)
vocab=$fx/ggml-vocab-llama-spm.gguf
for page in man/*.[1-9]; do
	[ -e "$page" ] || continue
	name=$(basename "$page")
	title="${name%.*}(${name##*.})"
	if [ -z "$(man_commands "$page" ".Sh EXAMPLES")" ]; then
		continue
	elif [ -z "$fx" ] || [ ! -f "$vocab" ]; then
		skip "no llama.cpp vocab fixtures (run make fixtures)" "man $title examples run"
	else
		ok "man $title examples run" run_examples "$page"
	fi
done
done_testing
