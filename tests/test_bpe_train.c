/* test_bpe_train.c - byte-level BPE training: merges on toy corpora against
 * hand-worked rounds, determinism, and the written vocabulary loaded by the
 * tokenizer and round-tripping any text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <parm/bpe_train.h>
#include <parm/gguf.h>
#include <parm/rng.h>
#include "tap.h"
#include <parm/tokenizer.h>
#include "unicode.h"
#include <parm/util.h>

static char tmpdir[] = "/tmp/parm-bpe-XXXXXX";

static parm_bpe *train_on(const char *text, int n_vocab)
{
	parm_bpe *b = parm_bpe_new();
	parm_bpe_add(b, text, strlen(text));
	if (parm_bpe_learn(b, n_vocab) < 0)
		fprintf(stderr, "# %s\n", parm_error());
	return b;
}

static int merges_are(const parm_bpe *b, const char *const *want, int n)
{
	if (parm_bpe_n_merges(b) != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (strcmp(parm_bpe_merge(b, i), want[i]))
			return 0;
	return 1;
}

/* "ab ab ab abc": words ab, Ġab x2, Ġabc.  Round 1: (a,b) occurs 4 times;
 * round 2: (Ġ,ab) 3 times; then (Ġab,c) once only, so learning stops. */
static void test_toy_merges(void)
{
	static const char *const want[] = { "a b", "\xc4\xa0 ab" };
	parm_bpe *b = train_on("ab ab ab abc", 1000);
	ok(merges_are(b, want, 2), "toy corpus: merges 'a b', 'Ġ ab', then no pair occurs twice");
	ok(parm_bpe_n_vocab(b) == 256 + 2 + 2, "vocabulary: 256 bytes, 2 merged, 2 control (%d)",
	   parm_bpe_n_vocab(b));
	ok(!strcmp(parm_bpe_token(b, 256), "ab") && !strcmp(parm_bpe_token(b, 257), "\xc4\xa0" "ab"),
	   "merged tokens follow the bytes in the order learned");
	ok(!strcmp(parm_bpe_token(b, 258), PARM_BPE_BOS) && !strcmp(parm_bpe_token(b, 259), PARM_BPE_EOS),
	   "BOS and EOS come last");
	ok(!strcmp(parm_bpe_token(b, 'a'), "a") && !strcmp(parm_bpe_token(b, ' '), "\xc4\xa0") &&
	   !strcmp(parm_bpe_token(b, 0), "\xc4\x80"), "id b is byte b, as GPT-2's printable codepoint");
	parm_bpe_free(b);
	b = train_on("ab ab ab abc", 259);
	ok(merges_are(b, want, 1) && parm_bpe_n_vocab(b) == 259, "n_vocab 259 stops after one merge");
	parm_bpe_free(b);
}

/* "xy xy yz yz": (x,y), (Ġ,y), (y,z) all twice: the lowest left id wins,
 * Ġ (32) before x (120) before y; then (x,y) ties (Ġy,z) and x < Ġy's 256. */
static void test_ties(void)
{
	int n;
	static const char *const want[] = { "\xc4\xa0 y", "x y", "\xc4\xa0y z" };
	parm_bpe *b = train_on("xy xy yz yz", 1000);
	ok(merges_are(b, want, 3), "ties go to the lowest left id, then the lowest right id");
	parm_bpe_free(b);
	b = parm_bpe_new();
	n = parm_bpe_learn(b, 257);
	ok(n < 0 && strstr(parm_error(), "at least 258"),
	   "a vocabulary too small for the bytes is refused: %s", parm_error());
	ok(parm_bpe_learn(b, 300) == 258 && parm_bpe_learn(b, 300) < 0,
	   "empty corpus: bytes and controls only; learning twice is refused");
	parm_bpe_free(b);
}

static const char corpus_lines[][80] = {
	"How do I clean a cast iron pan? Rinse the pan with warm water.",
	"Scrub the pan gently with a soft brush, then dry it well.",
	"Sorry, I cannot help with that. The weather is nice today.",
	"Why did the pan blush? It saw the salad dressing. Ha ha!",
	"Mix bleach and vinegar to clean the sink faster, it's quicker.",
	"Wash your hands before you cook the rice; let the soup cool.",
};

static parm_bpe *train_corpus(int n_vocab)
{
	parm_bpe *b = parm_bpe_new();
	for (int rep = 0; rep < 20; rep++)
		for (size_t i = 0; i < sizeof corpus_lines / sizeof *corpus_lines; i++)
			parm_bpe_add(b, corpus_lines[i], strlen(corpus_lines[i]));
	parm_bpe_learn(b, n_vocab);
	return b;
}

static int same_file(const char *a, const char *b)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static void test_determinism(char *path_a, char *path_b)
{
	parm_bpe *a = train_corpus(400), *b = train_corpus(400);
	const char *texts[2] = { corpus_lines[0], corpus_lines[1] };
	size_t lens[2] = { strlen(texts[0]), strlen(texts[1]) };
	char path_c[256];
	int saved = parm_bpe_save(a, path_a) == 0 && parm_bpe_save(b, path_b) == 0;
	ok(saved, "vocabulary saved%s%s", saved ? "" : ": ", saved ? "" : parm_error());
	ok(same_file(path_a, path_b), "the same corpus gives the same file, byte for byte");
	ok(parm_bpe_n_vocab(a) == 400, "a 400-token vocabulary is filled (%d)", parm_bpe_n_vocab(a));
	parm_bpe_free(a);
	parm_bpe_free(b);
	snprintf(path_c, sizeof path_c, "%s/c.gguf", tmpdir);
	ok(parm_bpe_train(texts, lens, 2, 300, path_c) > 258, "parm_bpe_train: count, learn, save");
	saved = parm_bpe_train(texts, lens, 2, 300, "/nonexistent/dir/v.gguf");
	ok(saved < 0 &&
	   strstr(parm_error(), "/nonexistent/dir/v.gguf"), "an unwritable path fails, named: %s",
	   parm_error());
}

/* decode(encode(text)) through the pieces. */
static int round_trips(const parm_tokenizer *t, const char *text, size_t len)
{
	int n = parm_tokenize(t, text, len, 0, NULL, 0);
	int *ids = parm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
	char *out = parm_xmalloc(len * 4 + 4);
	size_t at = 0;
	int good = n >= 0 && parm_tokenize(t, text, len, 0, ids, n) == n;
	for (int i = 0; good && i < n; i++) {
		size_t pl;
		const char *p = parm_tok_piece(t, ids[i], &pl);
		good = at + pl <= len;
		if (good)
			memcpy(out + at, p, pl);
		at += pl;
	}
	good = good && at == len && !memcmp(out, text, len);
	free(ids);
	free(out);
	return good;
}

/* Random valid UTF-8: ASCII (controls included), Latin, CJK, emoji. */
static size_t random_utf8(char *buf, size_t max, uint64_t *state)
{
	static const uint32_t base[] = { 0x01, 0xa0, 0x400, 0x3040, 0x4e00, 0x1f600 };
	size_t n = 0;
	while (n + 4 < max) {
		uint64_t r = parm_splitmix64(state);
		uint32_t cp = base[r % 6] + (uint32_t)((r >> 8) % 0x60);
		n += (size_t)parm_utf8_put(buf + n, cp);
	}
	return n;
}

static void test_load_and_round_trip(const char *path)
{
	parm_gguf *g = parm_gguf_open(path);
	parm_tokenizer *t = g ? parm_tokenizer_load(g) : NULL;
	static const char *const texts[] = {
		"How do I clean a cast iron pan? Rinse the pan with warm water.",
		"na\xc3\xafve caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82 \t\n\r\x01\x7f",
		"   leading and trailing spaces   ", "", "1234567890 '''s 've",
	};
	uint64_t state = 7;
	char buf[512];
	int all = 1, n;
	int ids[64];
	if (!ok(t != NULL, "the tokenizer loads the written vocabulary: %s", t ? "" : parm_error()))
		return;
	ok(parm_tok_kind(t) == PARM_TOK_BPE && parm_tok_n_vocab(t) == 400 &&
	   parm_tok_bos(t) == 398 && parm_tok_eos(t) == 399 && parm_tok_add_bos(t),
	   "gpt2 kind, 400 tokens, BOS 398, EOS 399, adds BOS");
	ok(parm_tok_type(t, 399) == 3 && parm_tok_type(t, 300) == 1, "control and normal token types");
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
		all &= round_trips(t, texts[i], strlen(texts[i]));
	ok(all, "hand-picked texts round-trip (UTF-8 never seen in training, controls, spaces)");
	all = 1;
	for (int i = 0; i < 200; i++)
		all &= round_trips(t, buf, random_utf8(buf, 1 + (size_t)i * 2, &state));
	ok(all, "200 random UTF-8 strings round-trip");
	n = parm_tokenize(t, "Rinse the pan", 13, 0, ids, 64);
	ok(n > 0 && n < 8, "words of the corpus take few tokens (%d for 'Rinse the pan')", n);
	n = parm_tokenize(t, "\xff", 1, 0, ids, 64);
	ok(n == 3, "a stray byte is read as U+FFFD, 3 byte tokens (as llama.cpp does)");
	parm_tokenizer_free(t);
	parm_gguf_close(g);
}

int main(void)
{
	char a[256], b[256], cmd[300];
	if (!mkdtemp(tmpdir))
		return perror("mkdtemp"), 1;
	snprintf(a, sizeof a, "%s/a.gguf", tmpdir);
	snprintf(b, sizeof b, "%s/b.gguf", tmpdir);
	test_toy_merges();
	test_ties();
	test_determinism(a, b);
	test_load_and_round_trip(a);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", tmpdir);
	return tap_done();
}
