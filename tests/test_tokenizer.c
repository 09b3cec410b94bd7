/* test_tokenizer - the tokenisers against llama.cpp's own test vectors
 * (llama-spm, gpt-2), the pre-tokenisers word by word, round trips, special
 * ids and fingerprints on the llama-bpe, qwen2 and phi-3 vocabularies, the
 * unknown-pre error, and speed on a few MB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tap.h"
#include <parm/util.h>
#include <parm/gguf.h>
#include <parm/tokenizer.h>
#include "tok_internal.h"

#define MAX_DIAG 3

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = parm_xmalloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = 0;
	fclose(f);
	return buf;
}

static parm_tokenizer *load_vocab(const char *dir, const char *name, parm_gguf **g)
{
	char path[4096];
	parm_tokenizer *t;
	snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, name);
	if (!(*g = parm_gguf_open(path)))
		return NULL;
	if (!(t = parm_tokenizer_load(*g)))
		printf("# %s\n", parm_error());
	return t;
}

/* ids of text, without BOS, in a malloc'd array */
static int *encode(const parm_tokenizer *t, const char *s, size_t len, int *n)
{
	int *ids;
	*n = parm_tokenize(t, s, len, 0, NULL, 0);
	if (*n < 0)
		return NULL;
	ids = parm_xmalloc(((size_t)*n + 1) * sizeof *ids);
	if (parm_tokenize(t, s, len, 0, ids, *n) != *n)
		return free(ids), NULL;
	return ids;
}

static void print_ids(const char *what, const int *ids, int n)
{
	printf("# %s", what);
	for (int i = 0; i < n && i < 40; i++)
		printf(" %d", ids[i]);
	printf("%s\n", n > 40 ? " ..." : "");
}

/* One case: text against the expected line of ids. */
static int check_case(const parm_tokenizer *t, const char *text, size_t len, const char *line)
{
	int want[4096], nw = 0, ng, same;
	int *got = encode(t, text, len, &ng);
	char *end;
	for (long v; nw < 4096 && (v = strtol(line, &end, 10), end != line); line = end)
		want[nw++] = (int)v;
	same = got && ng == nw && !memcmp(got, want, (size_t)nw * sizeof *want);
	if (!same) {
		print_ids("expected", want, nw);
		print_ids("got     ", got ? got : want, got ? ng : 0);
	}
	free(got);
	return same;
}

/* NAME.gguf.inp: cases separated by "\n__ggml_vocab_test__\n" (the last
 * separator ends the file); NAME.gguf.out: one line of ids per case. */
static void test_vectors(const char *dir, const char *name)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	char path[4096];
	size_t ilen, olen;
	char *inp, *out, *text, *line;
	parm_gguf *g;
	parm_tokenizer *t = load_vocab(dir, name, &g);
	int ncase = 0, bad = 0;
	snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.inp", dir, name);
	inp = read_file(path, &ilen);
	snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.out", dir, name);
	out = read_file(path, &olen);
	if (!ok(t && inp && out, "%s: vocabulary and test vectors load", name))
		goto done;
	text = inp;
	line = out;
	for (char *s; (s = strstr(text, sep)); text = s + sizeof sep - 1) {
		char *nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = 0;
		ncase++;
		if (!ok(check_case(t, text, (size_t)(s - text), line), "%s: case %d", name, ncase))
			bad++;
		line = nl + 1;
	}
	ok(ncase == 46 && *line == 0, "%s: all %d cases read (%d mismatched)", name, ncase, bad);
done:
	free(inp);
	free(out);
	parm_tokenizer_free(t);
	parm_gguf_close(g);
}

/* The words a pre-tokeniser makes of text, joined by '|'. */
static void words(enum pretok kind, const char *text, char *out)
{
	uint32_t cpts[256];
	size_t n = 0, len = strlen(text), at = 0, o = 0;
	struct seglist segs = {0};
	for (size_t off = 0; off < len && n < 256; )
		cpts[n++] = text[off++];         /* ASCII only here */
	parm_pretok_split(kind, cpts, n, &segs);
	for (size_t i = 0; i < segs.n; i++) {
		if (i)
			out[o++] = '|';
		for (size_t k = 0; k < segs.len[i]; k++)
			out[o++] = (char)cpts[at++];
	}
	out[o] = 0;
	free(segs.len);
}

static void test_pretok(void)
{
	static const struct { enum pretok kind; const char *text, *want; } cases[] = {
		{ PRETOK_GPT2, "Hello   world", "Hello|  | world" },
		{ PRETOK_GPT2, "it's IT'S", "it|'s| IT|'|S" },
		{ PRETOK_GPT2, "a 12345 b!!\n\n", "a| 12345| b|!!|\n\n" },
		{ PRETOK_GPT2, "x \n y ", "x| \n| y| " },
		{ PRETOK_LLAMA3, "  hello", " | hello" },
		{ PRETOK_LLAMA3, "IT'S 1234567", "IT|'S| |123|456|7" },
		{ PRETOK_LLAMA3, "x  \n y", "x|  \n| y" },
		{ PRETOK_LLAMA3, "a\n\nb", "a|\n\n|b" },
		{ PRETOK_LLAMA3, "(x) .\n\n'hi", "(x|)| .\n\n|'hi" },
		{ PRETOK_LLAMA3, "end ", "end| " },
		{ PRETOK_QWEN2, "a 1234", "a| |1|2|3|4" },
		{ PRETOK_DEFAULT, "a+=12345b", "a|+=|123|45|b" },
	};
	char got[1024];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		words(cases[i].kind, cases[i].text, got);
		if (!ok(!strcmp(got, cases[i].want), "pre-tokeniser %d splits case %zu", cases[i].kind, i))
			printf("# want [%s]\n# got  [%s]\n", cases[i].want, got);
	}
}

static const char *const round_texts[] = {
	"Hello world", " leading space", "two  spaces\tand\ttabs\n\nnewlines\r\n",
	"digits 0123456789 and 3.14159", "Grüße, 世界! Привет, мир. مرحبا",
	"emoji 😀👍🏽 🇺🇸 👨‍👩‍👧 ❤️", "I'M YOU'RE we've", "code: if (x < 3) { y += 2; }",
	"trailing   ", "\n\n\nstarts with newlines", "[PAD151650] not special text",
};

/* decode(encode(x)) == x; SPM adds the one space of its prefix. */
static int round_trip(const parm_tokenizer *t, const char *text)
{
	int n, same;
	int *ids = encode(t, text, strlen(text), &n);
	char *buf = parm_xmalloc(strlen(text) * 4 + 64);
	size_t o = 0;
	const char *want = text;
	if (!ids)
		return free(buf), 0;
	for (int i = 0; i < n; i++) {
		size_t len;
		const char *p = parm_tok_piece(t, ids[i], &len);
		memcpy(buf + o, p, len);
		o += len;
	}
	buf[o] = 0;
	if (parm_tok_kind(t) == PARM_TOK_SPM && o && buf[0] == ' ')
		memmove(buf, buf + 1, o--);
	same = o == strlen(want) && !memcmp(buf, want, o);
	if (!same)
		printf("# round trip gave [%s]\n", buf);
	free(ids);
	free(buf);
	return same;
}

static void test_spot_ids(const parm_tokenizer *t, const char *name, const char *text,
			  const int *want, int nw)
{
	int n, *ids = encode(t, text, strlen(text), &n);
	int same = ids && n == nw && !memcmp(ids, want, (size_t)n * sizeof *ids);
	if (!ok(same, "%s: ids of \"%s\"", name, text) && ids)
		print_ids("got", ids, n);
	free(ids);
}

struct vocab_facts {
	const char *name;
	int bos, eos, add_bos;
};

static const struct vocab_facts facts[] = {
	{ "llama-spm", 1, 2, 1 }, { "gpt-2", 50256, 50256, 0 },
	{ "llama-bpe", 128000, 128001, 1 }, { "qwen2", 151643, 151643, 0 },
	{ "phi-3", 1, 32000, 1 },
};

#define N_VOCABS (int)(sizeof facts / sizeof *facts)

static void test_vocab(const char *dir, int k, uint64_t *fp)
{
	parm_gguf *g;
	parm_tokenizer *t = load_vocab(dir, facts[k].name, &g);
	const char *name = facts[k].name;
	size_t i;
	if (!ok(t != NULL, "%s loads", name)) {
		parm_gguf_close(g);
		return;
	}
	ok(parm_tok_bos(t) == facts[k].bos && parm_tok_eos(t) == facts[k].eos &&
	   parm_tok_add_bos(t) == facts[k].add_bos, "%s: BOS %d EOS %d add_bos %d", name,
	   parm_tok_bos(t), parm_tok_eos(t), parm_tok_add_bos(t));
	for (i = 0; i < sizeof round_texts / sizeof *round_texts; i++)
		ok(round_trip(t, round_texts[i]), "%s: round trip of text %zu", name, i);
	fp[k] = parm_tok_fingerprint(t);
	if (!strcmp(name, "llama-bpe")) {
		test_spot_ids(t, name, "Hello world", (const int[]){ 9906, 1917 }, 2);
		test_spot_ids(t, name, "12345", (const int[]){ 4513, 1774 }, 2);
	} else if (!strcmp(name, "qwen2")) {
		test_spot_ids(t, name, "Hello world", (const int[]){ 9707, 1879 }, 2);
		test_spot_ids(t, name, "12345", (const int[]){ 16, 17, 18, 19, 20 }, 5);
		test_spot_ids(t, name, "a[PAD151650]", (const int[]){ 64, 151650 }, 2);
	}
	parm_tokenizer_free(t);
	parm_gguf_close(g);
}

static void test_pieces(const char *dir)
{
	parm_gguf *g, *h;
	parm_tokenizer *spm = load_vocab(dir, "llama-spm", &g), *bpe = load_vocab(dir, "gpt-2", &h);
	size_t n;
	const char *p;
	int ids[2];
	if (!ok(spm && bpe, "piece tests: vocabularies load"))
		goto done;
	p = parm_tok_piece(spm, 13, &n);
	ok(n == 1 && p[0] == '\n', "spm: <0x0A> decodes to a newline");
	parm_tok_piece(spm, 1, &n);
	ok(n == 0, "spm: BOS decodes to nothing");
	p = parm_tok_text(bpe, 262, &n);
	ok(n == 5 && !memcmp(p, "\xc4\xa0the", 5), "gpt-2: token 262 is \"Ġthe\"");
	p = parm_tok_piece(bpe, 262, &n);
	ok(n == 4 && !memcmp(p, " the", 4), "gpt-2: \"Ġthe\" decodes to \" the\"");
	ok(parm_tokenize(spm, "Hello world", 11, 1, ids, 2) == 3 && ids[0] == 1,
	   "spm: BOS first; the count needed is returned when room is short");
	ok(parm_tok_type(spm, 0) == TT_UNKNOWN && parm_tok_type(spm, 5) == TT_BYTE,
	   "spm: token types as stored");
done:
	parm_tokenizer_free(spm);
	parm_tokenizer_free(bpe);
	parm_gguf_close(g);
	parm_gguf_close(h);
}

/* A copy of the gpt-2 vocabulary with another tokenizer.ggml.pre. */
static parm_tokenizer *gpt2_with_pre(const char *dir, const char *pre)
{
	static const char *const keys[] = {
		"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
		"tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
	};
	char path[4096], tmp[] = "/tmp/parm-tok-XXXXXX";
	parm_gguf *g, *c = NULL;
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_tokenizer *t = NULL;
	int fd = mkstemp(tmp);
	snprintf(path, sizeof path, "%s/ggml-vocab-gpt-2.gguf", dir);
	if (fd >= 0)
		close(fd);
	if (fd < 0 || !(g = parm_gguf_open(path)))
		return NULL;
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		parm_gguf_w_copy_kv(w, g, keys[i]);
	parm_gguf_w_set_str(w, "tokenizer.ggml.pre", pre);
	if (parm_gguf_w_save(w, tmp) == 0 && (c = parm_gguf_open(tmp)))
		t = parm_tokenizer_load(c);
	parm_gguf_w_free(w);
	parm_gguf_close(c);
	parm_gguf_close(g);
	unlink(tmp);
	return t;
}

/* A made vocabulary of the given token texts (SentencePiece, all normal
 * tokens), eos 0, plus an optional fim_rep_token_id key. */
static parm_tokenizer *made_vocab(const char *const *texts, int n, int fim_rep)
{
	char tmp[] = "/tmp/parm-tok-XXXXXX";
	int fd = mkstemp(tmp);
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_gguf *g = NULL;
	parm_tokenizer *t = NULL;
	float scores[16] = { 0 };
	if (fd >= 0)
		close(fd);
	parm_gguf_w_set_str(w, "tokenizer.ggml.model", "llama");
	parm_gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, n);
	parm_gguf_w_set_arr(w, "tokenizer.ggml.scores", PARM_GGUF_F32, scores, n);
	parm_gguf_w_set_u32(w, "tokenizer.ggml.eos_token_id", 0);
	if (fim_rep >= 0)
		parm_gguf_w_set_u32(w, "tokenizer.ggml.fim_rep_token_id", fim_rep);
	if (fd >= 0 && parm_gguf_w_save(w, tmp) == 0 && (g = parm_gguf_open(tmp)))
		t = parm_tokenizer_load(g);
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	unlink(tmp);
	return t;
}

static void expect_eog(const char *const *texts, int n, int fim_rep, const char *want,
		       const char *what)
{
	parm_tokenizer *t = made_vocab(texts, n, fim_rep);
	char got[128] = "";
	int n_eog = 0, len = 0;
	const int *ids = t ? parm_tok_eog(t, &n_eog) : NULL;
	for (int i = 0; i < n_eog; i++)
		len += snprintf(got + len, sizeof got - len, i ? " %d" : "%d", ids[i]);
	ok(t && !strcmp(got, want), "end of generation: %s (%s)", what, t ? got : parm_error());
	parm_tokenizer_free(t);
}

/* What the fixtures do not show of llama.cpp's rules (tok_eog.c). */
static void test_eog_rules(void)
{
	static const char *const chat[] = { "</x>", "a", "<|im_end|>", "<|eot_id|>", "<|fim_pad|>", "b" };
	expect_eog(chat, 6, -1, "0 2 3 4", "eos, end-of-turn texts, the FIM pad by its text");
	expect_eog(chat, 6, 5, "0 2 3 4 5", "a FIM repo token named by its key");
	static const char *const harmony[] = { "</x>", "<|end|>", "<|return|>", "<|call|>" };
	expect_eog(harmony, 4, -1, "0 2 3", "<|end|> is not the end beside <|return|> and <|call|>");
	static const char *const gemma4[] = { "<eos>", "</s>", "<|tool_response>" };
	expect_eog(gemma4, 3, -1, "0 2", "</s> is not the end beside <|tool_response>");
	static const char *const phi3[] = { "</x>", "<|end|>", "<|return|>" };
	expect_eog(phi3, 3, -1, "0 1 2", "<|end|> ends a reply otherwise");
}

static void test_pre_names(const char *dir)
{
	parm_tokenizer *t = gpt2_with_pre(dir, "no-such-pre");
	ok(!t && strstr(parm_error(), "'no-such-pre'"), "unknown pre fails naming it: %s",
	   t ? "(loaded)" : parm_error());
	parm_tokenizer_free(t);
	t = gpt2_with_pre(dir, "default");
	if (ok(t != NULL, "pre \"default\" loads"))
		test_spot_ids(t, "default", "Hello world 12345",
			      (const int[]){ 15496, 995, 220, 10163, 2231 }, 5);
	parm_tokenizer_free(t);
}

/* Two MB of mixed text tokenise without trouble.  How fast is for make
 * bench to say, not a test: the time is printed, not judged. */
static void test_speed(const char *dir)
{
	static const char *const names[] = { "llama-spm", "gpt-2", "llama-bpe", "qwen2" };
	char path[4096];
	size_t len, total = 0;
	char *inp, *big;
	snprintf(path, sizeof path, "%s/ggml-vocab-llama-spm.gguf.inp", dir);
	if (!(inp = read_file(path, &len)))
		return (void)ok(0, "speed: test text readable");
	big = parm_xmalloc(2 << 20 | 1);
	while (total + len < 2 << 20) {
		memcpy(big + total, inp, len);
		total += len;
	}
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		parm_gguf *g;
		parm_tokenizer *t = load_vocab(dir, names[i], &g);
		double t0 = parm_now(), dt;
		int n = t ? parm_tokenize(t, big, total, 0, NULL, 0) : -1;
		dt = parm_now() - t0;
		ok(n > 0, "%s: %.1f MB tokenised (%d tokens)", names[i], total / 1e6, n);
		printf("# %s: %.2f s\n", names[i], dt);
		parm_tokenizer_free(t);
		parm_gguf_close(g);
	}
	free(big);
	free(inp);
}

int main(void)
{
	const char *dir = fixtures_dir();
	uint64_t fp[N_VOCABS] = {0};
	int distinct = 1;
	test_pretok();
	if (!dir) {
		skip("no ../shared/fixtures/vocab, $PARM_FIXTURES or fetched cache",
		     "llama.cpp tokenizer fixtures (run make fixtures)");
		return tap_done();
	}
	test_vectors(dir, "llama-spm");
	test_vectors(dir, "gpt-2");
	for (int k = 0; k < N_VOCABS; k++)
		test_vocab(dir, k, fp);
	for (int a = 0; a < N_VOCABS; a++)
		for (int b = a + 1; b < N_VOCABS; b++)
			distinct &= fp[a] != fp[b] && fp[a] && fp[b];
	ok(distinct, "fingerprints of the five vocabularies all differ");
	test_pieces(dir);
	test_pre_names(dir);
	test_eog_rules();
	test_speed(dir);
	return tap_done();
}
