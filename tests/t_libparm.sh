#!/bin/sh
# t_libparm - libparm as a library others link (issue 16): one namespace in
# libparm.a, public headers that stand alone, and the example program of
# libparm(3) built against an installed copy through pkg-config, run at
# the end of a real pipe and held to parm-mix | parm-sample.
. tests/lib.sh
top=$PWD
fx=$(fixtures_dir)
prefix=$T/prefix

# (under make check-asan the compiler adds __odr_asan.NAME beside each
# global variable NAME: its own, not ours)
ok "libparm.a exports only parm_ and PARM_ names" sh -c '
	nm -g --defined-only libparm.a | awk "NF == 3 { print \$3 }" | sort -u > syms &&
	[ -s syms ] && ! grep -v "^parm_\|^PARM_\|^__odr_asan\.parm_" syms >&2'
ok "the tools include only the public headers, as <parm/NAME.h>" sh -c '
	! grep -n "^#include \"" tools/*.c >&2 && ! grep -n "^#include <parm/" tools/*.c |
	grep -v -e "<parm/[a-z_]*\.h>" >&2 &&
	for h in $(grep -ho "<parm/[a-z_]*\.h>" tools/*.c | tr -d "<>" | sort -u); do
		[ -f "include/$h" ] || { echo "$h is not public" >&2; exit 1; }; done'
ok "every name a public header declares starts with parm_ or PARM_ (macros, enumerators, tags, typedefs, functions)" sh -c '
	perl tests/public-names.pl include/parm.h include/parm/*.h > names && cat names >&2 && [ ! -s names ]'
ok "no public header includes a private one" sh -c '
	! grep -n "^#include \"" include/parm/*.h | grep -v "\"[a-z_]*\.h\"" >&2 &&
	for f in $(grep -ho "^#include \"[a-z_]*\.h\"" include/parm/*.h | cut -d\" -f2 | sort -u); do
		[ -f "include/parm/$f" ] || { echo "$f is private" >&2; exit 1; }; done'

ok "make install PREFIX=… puts the headers in PREFIX/include and libparm.pc beside libparm.a" sh -c '
	make -s install PREFIX="'"$prefix"'" > /dev/null &&
	[ -f "'"$prefix"'/include/parm.h" ] && [ -f "'"$prefix"'/include/parm/model.h" ] &&
	[ ! -e "'"$prefix"'/include/parm/kernels.h" ] && [ ! -e "'"$prefix"'/include/parm/quant_dot.h" ] &&
	[ -f "'"$prefix"'/lib/libparm.a" ] && [ -f "'"$prefix"'/share/man/man3/libparm.3" ]'
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
ok "pkg-config gives -I PREFIX/include" sh -c '
	[ "$(pkg-config --cflags-only-I libparm | tr " " "\n" | grep -c -- "-I'"$prefix"'/include\$")" -eq 1 ]'

# Each installed header alone, and <parm.h>, in a C11 program with every
# warning an error: nothing private, nothing missing, no stray names.
mkdir "$T/w" && cd "$T/w" || exit 1   # not $T: ok() keeps its out and err there
# (make check-asan adds the sanitizers libparm.a was built with)
cflags="$(pkg-config --cflags libparm) ${EXTRA_CFLAGS:-}"
libs="$(pkg-config --libs libparm) ${EXTRA_LDFLAGS:-}"
ok "each public header compiles alone from the installed copy (-std=c11 -Wall -Wextra -Werror)" sh -c '
	for h in "'"$prefix"'"/include/parm.h "'"$prefix"'"/include/parm/*.h; do
		n=${h#"'"$prefix"'/include/"}
		printf "#include <%s>\nint main(void) { return 0; }\n" "$n" > one.c
		cc -std=c11 -Wall -Wextra -Werror '"$cflags"' -c -o one.o one.c || { echo "$n" >&2; exit 1; }
	done'
ok "a program with libc's err.h warn() and <parm.h> links, each function its own" sh -c '
	cat > both.c <<-EOF
	#include <err.h>
	#include <parm.h>
	#include <string.h>
	int main(void)
	{
		parm_fail("%s", "libparm");
		warnx("%s", parm_error());
		return strcmp(parm_error(), "libparm") || parm_errcode() != PARM_EINPUT;
	}
	EOF
	cc -std=gnu11 -Wall -Werror -o both both.c '"$cflags $libs"' && ./both 2> out &&
	grep -q "^both: libparm\$" out'

# ggml, the obvious companion: its headers and <parm.h> in one program,
# linked with llama.cpp's libggml-base.a, each library reading one file.
ggml=$HOME/.cache/parm/llama.cpp
if [ ! -f "$ggml/build/ggml/src/libggml-base.a" ] || [ ! -f "$ggml/src/ggml/include/gguf.h" ]; then
	skip "llama.cpp reference not built: run make llamacpp" "<parm.h> beside ggml.h and gguf.h, linked with libggml-base.a"
else
	ok "<parm.h> beside ggml's ggml.h and gguf.h, linked with its libggml-base.a: both read one GGUF alike" sh -c '
		cat > ggml-too.c <<-EOF
		#include <ggml.h>
		#include <gguf.h>
		#include <parm.h>
		#include <stdio.h>
		int main(int argc, char **argv)
		{
			struct gguf_context *theirs = argc == 2 ? gguf_init_from_file(argv[1],
				(struct gguf_init_params){ .no_alloc = 1 }) : NULL;
			parm_gguf *ours = argc == 2 ? parm_gguf_open(argv[1]) : NULL;
			if (!theirs || !ours)
				return 1;
			printf("%lld %lld %s\\n%d %d %s\\n", (long long)gguf_get_n_tensors(theirs),
			       (long long)gguf_get_n_kv(theirs), ggml_type_name(GGML_TYPE_Q4_K),
			       parm_gguf_n_tensors(ours), parm_gguf_n_kv(ours),
			       parm_ggml_type_name(PARM_GGML_Q4_K));
			gguf_free(theirs);
			parm_gguf_close(ours);
			return 0;
		}
		EOF
		cc -std=c11 -Wall -Wextra -Werror -I"'"$ggml"'/src/ggml/include" -o ggml-too ggml-too.c \
			"'"$ggml"'/build/ggml/src/libggml-base.a" '"$cflags $libs"' -lstdc++ -lgomp &&
		parm-train init --vocab "'"$fx"'/ggml-vocab-gpt-2.gguf" --dim 32 --layers 1 --heads 2 \
			--kv-heads 1 --ctx 32 -o g.gguf 2> /dev/null &&
		./ggml-too g.gguf > both.out && cat both.out >&2 &&
		[ $(wc -l < both.out) -eq 2 ] && [ $(sort -u both.out | wc -l) -eq 1 ] && grep -q " q4_K\$" both.out'
fi

# The examples of libparm(3), as the page prints them: block N of EXAMPLES.
example() {
	awk -v want="$1" '/^\.Sh / { ex = $2 == "EXAMPLES" } ex && /^\.Bd -literal/ { n++; on = n == want; next }
	     /^\.Ed/ { on = 0 } on' "$top/man/libparm.3" | sed -e 's/\\e/\\/g' -e 's/\\&//g'
}
example 1 > continue.c
example 2 > guided.c
for prog in continue guided; do
	ok "the example $prog.c of libparm(3) builds against the installed library: cc \$(pkg-config --cflags --libs libparm)" \
		sh -c 'grep -q "^int main" '$prog'.c && cc -std=c11 -Wall -Wextra -Werror -o '$prog' '$prog'.c '"$cflags $libs"
done
ok "its errors come with their code: a missing ARM is PARM_ESYS" sh -c '
	! ./guided missing.gguf 1 < /dev/null 2> err && cat err >&2 &&
	grep -q "^guided: missing.gguf: .*(PARM_ESYS)\$" err'

if [ -z "$fx" ]; then
	skip "no llama.cpp vocab fixtures (run make fixtures)" "the example in a pipe picks what parm-mix | parm-sample --temp 0 picks"
else
	parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 --heads 4 \
		--kv-heads 2 --ctx 64 --seed 3 -o base.gguf 2> init.err &&
	parm-train init --vocab "$fx/ggml-vocab-llama-spm.gguf" --dim 32 --layers 2 --heads 4 \
		--kv-heads 2 --ctx 64 --seed 4 -o small.gguf 2>> init.err &&
	"$top/tests/test_mix" --make-arm small.gguf 2 q,k,v 7 arm.gguf > /dev/null 2>> init.err ||
		cat init.err
	printf 'Hello there\nHow do I boil an egg?\nThe end\n' > prompts.txt
	ok "continue.c prints what parm-logits | parm-sample --temp 0 prints for a prompt" sh -c '
		./continue base.gguf "How do I boil an egg?" 12 > mine &&
		echo "How do I boil an egg?" | parm-logits -n 12 base.gguf | parm-sample --temp 0 > theirs &&
		[ $(wc -c < mine) -gt 10 ] && cmp mine theirs'
	ok "the example at the end of a pipe picks, token for token, what parm-mix | parm-sample --temp 0 picks" sh -c '
		parm-logits -n 10 base.gguf < prompts.txt | ./guided arm.gguf 0.3,0.7 > picks &&
		sort -s -n -k1,1 picks > mine &&
		parm-logits -n 10 base.gguf < prompts.txt | parm-mix --pref 0.3,0.7 arm.gguf |
		parm-sample --temp 0 --json > theirs.jsonl &&
		/usr/bin/python3 -c "
import json, sys
for line in open(\"theirs.jsonl\"):
    r = json.loads(line)
    for t in r[\"tokens\"]:
        print(r[\"id\"], t)" > theirs &&
		[ $(wc -l < mine) -ge 12 ] && diff mine theirs >&2'
fi

cd "$top" || exit 1
ok "make uninstall PREFIX=… leaves no file behind" sh -c '
	make -s uninstall PREFIX="'"$prefix"'" > /dev/null && [ -z "$(find "'"$prefix"'" -type f)" ]'
done_testing
