/* pretok.c - llama.cpp's pre-tokenisers for byte-level BPE, written as
 * matchers over codepoints.  Each matcher returns where the word starting
 * at pos ends, trying the regex's alternatives in order exactly as
 * llama.cpp's unicode_regex_split_custom_gpt2 / _llama3 do (and as
 * std::regex does for qwen2's regex, which only differs from llama3's in
 * taking digits one at a time).  Positions outside the segment being split
 * have no flags and no codepoint, which is how \s+(?!\S) sees the end.
 */
#include <stdlib.h>
#include "tok_internal.h"
#include "unicode.h"
#include <parm/util.h>

#define OUTSIDE 0xffffffffu
#define SLN (UCP_SPACE | UCP_LETTER | UCP_NUMBER)

struct span {                           /* the segment [ini, end) of cpt */
	const uint32_t *cpt;
	size_t ini, end;
};

static uint32_t cp(const struct span *s, size_t pos)
{
	return pos >= s->ini && pos < s->end ? s->cpt[pos] : OUTSIDE;
}

static unsigned fl(const struct span *s, size_t pos)
{
	return pos >= s->ini && pos < s->end ? parm_ucp_flags(s->cpt[pos]) : 0;
}

static void seg_push(struct seglist *s, size_t len)
{
	if (!len)
		return;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->len = parm_xrealloc(s->len, s->cap * sizeof *s->len);
	}
	s->len[s->n++] = len;
}

static uint32_t ascii_lower(uint32_t c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd: the length matched at pos, or 0.  The table
 * generator checks that only ASCII letters fold to these, so ASCII case
 * folding is llama.cpp's unicode_tolower here. */
static size_t contraction(const struct span *s, size_t pos, int fold)
{
	uint32_t a, b;
	if (cp(s, pos) != '\'' || pos + 1 >= s->end)
		return 0;
	a = fold ? ascii_lower(cp(s, pos + 1)) : cp(s, pos + 1);
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if (pos + 2 >= s->end)
		return 0;
	b = fold ? ascii_lower(cp(s, pos + 2)) : cp(s, pos + 2);
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	return 0;
}

static size_t run_of(const struct span *s, size_t pos, unsigned mask)
{
	while (fl(s, pos) & mask)
		pos++;
	return pos;
}

/* [^\s\p{L}\p{N}]+ : stops at the segment's end too */
static size_t run_other(const struct span *s, size_t pos)
{
	unsigned f;
	while ((f = fl(s, pos)) && !(f & SLN))
		pos++;
	return pos;
}

/* \s*[\r\n]+ (when newlines=1), then \s+(?!\S), then \s+, else one
 * codepoint that nothing matched. */
static size_t whitespace_end(const struct span *s, size_t pos, int newlines)
{
	size_t n = 0, last_nl = 0;
	while (fl(s, pos + n) & UCP_SPACE) {
		uint32_t c = cp(s, pos + n);
		if (c == '\r' || c == '\n')
			last_nl = pos + n + 1;
		n++;
	}
	if (newlines && last_nl)
		return last_nl;
	if (n > 1 && cp(s, pos + n) != OUTSIDE)
		return pos + n - 1;     /* leave the last space to the next word */
	return n ? pos + n : pos + 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t gpt2_word(const struct span *s, size_t pos)
{
	uint32_t c = cp(s, pos);
	unsigned f2 = c == ' ' ? fl(s, pos + 1) : fl(s, pos);
	size_t n = contraction(s, pos, 0), start = pos + (c == ' ');
	if (n)
		return pos + n;
	if (f2 & UCP_LETTER)
		return run_of(s, start, UCP_LETTER);
	if (f2 & UCP_NUMBER)
		return run_of(s, start, UCP_NUMBER);
	if (f2 && !(f2 & SLN))
		return run_other(s, start);
	return whitespace_end(s, pos, 0);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
 * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t llama3_word(const struct span *s, size_t pos, size_t max_digits)
{
	uint32_t c = cp(s, pos);
	unsigned f = fl(s, pos), f2;
	size_t n = contraction(s, pos, 1), end;
	if (n)
		return pos + n;
	if (c != '\r' && c != '\n' && !(f & UCP_NUMBER) &&
	    ((f & UCP_LETTER) || (fl(s, pos + 1) & UCP_LETTER)))
		return run_of(s, pos + 1, UCP_LETTER);
	if (f & UCP_NUMBER) {
		end = run_of(s, pos, UCP_NUMBER);
		return end - pos > max_digits ? pos + max_digits : end;
	}
	/* llama.cpp tests the flags of pos itself here, not of the codepoint
	 * after the optional space: a lone space at the end matches. */
	f2 = c == ' ' ? fl(s, pos + 1) : f;
	if (!(f2 & SLN) && f) {
		end = run_other(s, pos + (c == ' '));
		while (cp(s, end) == '\r' || cp(s, end) == '\n')
			end++;
		return end;
	}
	return whitespace_end(s, pos, 1);
}

/* The words of one segment, by one of the three big regexes. */
static void split_words(enum pretok kind, const struct span *s, struct seglist *out)
{
	size_t pos = s->ini, end;
	while (pos < s->end) {
		if (kind == PRETOK_GPT2)
			end = gpt2_word(s, pos);
		else
			end = llama3_word(s, pos, kind == PRETOK_QWEN2 ? 1 : 3);
		seg_push(out, end - pos);
		pos = end;
	}
}

/* [\p{P}\$\+<=>\^~\|]+ */
static int is_default_punct(uint32_t c)
{
	switch (c) {
	case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|':
		return 1;
	}
	return (parm_ucp_flags(c) & UCP_PUNCT) != 0;
}

static int is_number(uint32_t c) { return (parm_ucp_flags(c) & UCP_NUMBER) != 0; }

/* Split a segment into runs that match (each run one word) and the gaps
 * between them, as llama.cpp's std::regex fallback does for X+. */
static void split_runs(const struct span *s, int (*in_class)(uint32_t), struct seglist *out)
{
	size_t pos = s->ini;
	while (pos < s->end) {
		size_t end = pos;
		int match = in_class(s->cpt[pos]);
		while (end < s->end && in_class(s->cpt[end]) == match)
			end++;
		seg_push(out, end - pos);
		pos = end;
	}
}

/* [0-9][0-9][0-9]: the leftmost non-overlapping triples, gaps between. */
static void split_digit_triples(const struct span *s, struct seglist *out)
{
	size_t pos = s->ini, gap = s->ini;
	while (pos + 3 <= s->end) {
		int triple = 1;
		for (int k = 0; k < 3; k++)
			triple &= s->cpt[pos + k] >= '0' && s->cpt[pos + k] <= '9';
		if (!triple) {
			pos++;
			continue;
		}
		seg_push(out, pos - gap);
		seg_push(out, 3);
		pos += 3;
		gap = pos;
	}
	seg_push(out, s->end - gap);
}

enum stage { ST_PUNCT, ST_GPT2, ST_NUMBERS, ST_TRIPLES };

static void apply_stage(enum stage st, const uint32_t *cpts, struct seglist *segs)
{
	struct seglist out = {0};
	size_t start = 0;
	for (size_t i = 0; i < segs->n; i++) {
		struct span s = { cpts, start, start + segs->len[i] };
		if (st == ST_PUNCT)
			split_runs(&s, is_default_punct, &out);
		else if (st == ST_GPT2)
			split_words(PRETOK_GPT2, &s, &out);
		else if (st == ST_NUMBERS)
			split_runs(&s, is_number, &out);
		else
			split_digit_triples(&s, &out);
		start = s.end;
	}
	free(segs->len);
	*segs = out;
}

/* llama.cpp's "default" pre-tokeniser (a gpt2 vocabulary with no
 * tokenizer.ggml.pre, or "default") is four regexes in turn. */
static void split_default(const uint32_t *cpts, size_t n, struct seglist *out)
{
	struct seglist segs = {0};
	seg_push(&segs, n);
	apply_stage(ST_PUNCT, cpts, &segs);
	apply_stage(ST_GPT2, cpts, &segs);
	apply_stage(ST_NUMBERS, cpts, &segs);
	apply_stage(ST_TRIPLES, cpts, &segs);
	for (size_t i = 0; i < segs.n; i++)
		seg_push(out, segs.len[i]);
	free(segs.len);
}

void parm_pretok_split(enum pretok kind, const uint32_t *cpts, size_t n, struct seglist *out)
{
	struct span s = { cpts, 0, n };
	if (kind == PRETOK_DEFAULT)
		split_default(cpts, n, out);
	else
		split_words(kind, &s, out);
}
