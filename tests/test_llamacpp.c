/* test_llamacpp - libparm against a real llama.cpp (built by `make llamacpp`
 * into $HOME/.cache/parm/llama.cpp/bin): tokenizer ids on every fixture
 * vocabulary, logits of small models we write, and models llama-quantize
 * writes loaded here.  Without the reference every check is skipped, with
 * the reason. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tap.h"
#include <parm/util.h>
#include <parm/gguf.h>
#include "kernels.h"
#include "quant_dot.h"
#include <parm/tokenizer.h>
#include <parm/model.h>
#include <parm/chat.h>
#include <parm/arm.h>
#include <parm/export.h>
#include <parm/rng.h>

#include <jansson.h>

#define NO_REF "llama.cpp reference not built: run make llamacpp"
#define QK_K_BLOCK 256          /* the K-quants' and iq4_xs's super-block */
#define N_SEQ 20                /* tokens in the logits sequence */
#define MAX_DIAG 4              /* mismatches shown per vocabulary */
#define N_GREEDY 24             /* tokens of a greedy check */

static const char greedy_prompt[] = "The quick brown fox";
struct parm_model;
static void check_greedy_on(const parm_model *m, const char *model, const char *flags,
			    int *ids, int n_prompt, const char *what, double tol);
static double tolerance(enum parm_ggml_type type);

static const char *const vocabs[] = {
	"llama-spm", "gpt-2", "llama-bpe", "qwen2", "phi-3",
};

/* Texts beyond the .inp vectors: what tokenizers tend to get wrong. */
static const char *const extra_texts[] = {
	"Hello, 世界! Привет, мир. مرحبا بالعالم. Γειά σου κόσμε.",
	"日本語のテキストと中文文本，还有한국어 텍스트도 있습니다。",
	"emoji 😀👍🏽 flags 🇺🇸🇩🇪 family 👨‍👩‍👧 and ❤️",
	"1234567 89 3.14159 1,000,000 0x1F 2024-05-06 12345678901234567890",
	"I'M YOU'RE WE'VE THEY'LL SHE'S IT'D DON'T i'm you're we've",
	"two  spaces   three    four\n\nnewlines\n\n\n\ttab\t\ttabs \t \n mixed",
	"   leading spaces",
	"\n\n\nleading newlines",
	"\t\tleading tabs",
	"trailing spaces   ",
	"ÄÖÜ äöü ß café naïve résumé Ångström",
	"for (int i = 0; i < n; ++i) { x[i] += y[i] * 2; } // done",
	"<s> </s> <|endoftext|> <unk> <|im_start|>",
	"a",
	" ",
	"  \t  \n ",
	"नमस्ते दुनिया สวัสดีชาวโลก שלום עולם",
	"Ω≈ç√∫˜µ≤≥÷ ∀∂∈ℝ ﬁ ½ ① ２ ＡＢＣ",
	"zero\xe2\x80\x8bwidth non\xc2\xa0" "breaking",
	"supercalifragilisticexpialidocious antidisestablishmentarianism",
	"HELLO hello Hello hELLO",
	"$$$ ... --- !!! ??? ''' \"\"\" ``` ~~~",
};

static char ref_bin[4096], quantize_bin[4096], tmp_dir[256];

static int find_reference(void)
{
	const char *home = getenv("HOME");
	snprintf(ref_bin, sizeof ref_bin, "%s/.cache/parm/llama.cpp/bin/llama-ref", home ? home : "");
	snprintf(quantize_bin, sizeof quantize_bin, "%s/.cache/parm/llama.cpp/bin/llama-quantize", home ? home : "");
	return access(ref_bin, X_OK) == 0 && access(quantize_bin, X_OK) == 0;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16, n = 0, got;
	char *buf;
	if (!f)
		return NULL;
	buf = parm_xmalloc(cap);
	while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n + 1 == cap)
			buf = parm_xrealloc(buf, cap *= 2);
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* ---- tokenizer ---- */

typedef struct {
	char **text;
	size_t *len;
	int n, cap;
} texts;

static void texts_add(texts *t, const char *s, size_t len)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->text = parm_xrealloc(t->text, t->cap * sizeof *t->text);
		t->len = parm_xrealloc(t->len, t->cap * sizeof *t->len);
	}
	t->text[t->n] = parm_xmemdup(s, len + 1);
	t->text[t->n][len] = '\0';
	t->len[t->n++] = len;
}

/* The .inp format of llama.cpp's test-tokenizer-0: each case is followed
 * by "\n__ggml_vocab_test__\n". */
static int texts_add_inp(texts *t, const char *path)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	size_t len;
	char *data = slurp(path, &len), *p, *end;
	if (!data)
		return -1;
	for (p = data; (end = strstr(p, sep)); p = end + strlen(sep))
		texts_add(t, p, end - p);
	free(data);
	return 0;
}

static void texts_free(texts *t)
{
	int i;
	for (i = 0; i < t->n; i++)
		free(t->text[i]);
	free(t->text);
	free(t->len);
}

static void fixture_path(char *out, size_t size, const char *vocab, const char *ext)
{
	snprintf(out, size, "%s/ggml-vocab-%s.gguf%s", fixtures_dir(), vocab, ext);
}

/* Every .inp case of every vocabulary, then the extra texts. */
static void gather_texts(texts *t)
{
	char path[4096];
	size_t i;
	for (i = 0; i < sizeof vocabs / sizeof *vocabs; i++) {
		fixture_path(path, sizeof path, vocabs[i], ".inp");
		texts_add_inp(t, path);         /* not every vocab has one */
	}
	for (i = 0; i < sizeof extra_texts / sizeof *extra_texts; i++)
		texts_add(t, extra_texts[i], strlen(extra_texts[i]));
}

/* Lines of a command's stdout, or NULL when it fails. */
static char **run_lines(const char *cmd, int *n_lines)
{
	FILE *p = popen(cmd, "r");
	char *line = NULL, **lines = NULL;
	size_t cap = 0;
	ssize_t got;
	int n = 0;
	if (!p)
		return NULL;
	while ((got = getline(&line, &cap, p)) >= 0) {
		if (got > 0 && line[got - 1] == '\n')
			line[got - 1] = '\0';
		lines = parm_xrealloc(lines, (n + 1) * sizeof *lines);
		lines[n++] = parm_xstrdup(line);
	}
	free(line);
	if (pclose(p) != 0) {
		while (n > 0)
			free(lines[--n]);
		free(lines);
		return NULL;
	}
	*n_lines = n;
	return lines;
}

static void free_lines(char **lines, int n)
{
	while (n > 0)
		free(lines[--n]);
	free(lines);
}

/* llama.cpp's ids of each text, one line each (tokenize-all mode: the
 * texts NUL-terminated on stdin, so one process loads the vocab once). */
static int parse_special;       /* the tokenize calls below parse special tokens */

static char **ref_tokenize(const char *model, const texts *t)
{
	char path[512], cmd[16384];
	char **lines;
	FILE *f;
	int i, n = 0;
	snprintf(path, sizeof path, "%s/texts", tmp_dir);
	if (!(f = fopen(path, "wb")))
		return NULL;
	for (i = 0; i < t->n; i++)
		fwrite(t->text[i], 1, t->len[i] + 1, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "'%s' tokenize-all%s '%s' < '%s'", ref_bin,
		 parse_special ? "-special" : "", model, path);
	lines = run_lines(cmd, &n);
	if (lines && n != t->n) {
		free_lines(lines, n);
		return NULL;
	}
	return lines;
}

/* Our ids as the reference prints them: "1 2 3". */
static char *our_ids(const parm_tokenizer *tok, const char *text, size_t len)
{
	int max = (int)len + 16, n, i;
	int *ids = parm_xmalloc(max * sizeof *ids);
	char *out, *p;
	int (*encode)(const parm_tokenizer *, const char *, size_t, int, int *, int) =
		parse_special ? parm_tokenize_special : parm_tokenize;
	n = encode(tok, text, len, 0, ids, max);
	if (n > max) {
		ids = parm_xrealloc(ids, n * sizeof *ids);
		n = encode(tok, text, len, 0, ids, n);
	}
	if (n < 0) {
		free(ids);
		return parm_xstrdup(parm_error());
	}
	p = out = parm_xmalloc(12 * (size_t)n + 1);
	*p = '\0';
	for (i = 0; i < n; i++)
		p += sprintf(p, i ? " %d" : "%d", ids[i]);
	free(ids);
	return out;
}

/* The text as a C string literal would show it, cut short. */
static void show_text(const char *s, size_t len)
{
	size_t i;
	printf("#   text:     \"");
	for (i = 0; i < len && i < 120; i++) {
		unsigned char c = s[i];
		if (c == '\n')
			printf("\\n");
		else if (c == '\t')
			printf("\\t");
		else if (c < 32 || c == '"' || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("%s\"\n", len > 120 ? "..." : "");
}

static int compare_ids(const parm_tokenizer *tok, const texts *t, char **expected)
{
	int i, bad = 0;
	for (i = 0; i < t->n; i++) {
		char *got = our_ids(tok, t->text[i], t->len[i]);
		if (strcmp(got, expected[i]) != 0 && ++bad <= MAX_DIAG) {
			show_text(t->text[i], t->len[i]);
			printf("#   expected: %s\n#   got:      %s\n", expected[i], got);
		}
		free(got);
	}
	return bad;
}

/* The end-of-generation ids against llama_vocab_is_eog's. */
static void check_eog(const parm_tokenizer *tok, const char *path, const char *vocab)
{
	char cmd[8400], ours[4096] = "";
	int n, len = 0, n_lines = 0;
	const int *ids = parm_tok_eog(tok, &n);
	for (int i = 0; i < n && len < (int)sizeof ours - 16; i++)
		len += snprintf(ours + len, sizeof ours - len, i ? " %d" : "%d", ids[i]);
	snprintf(cmd, sizeof cmd, "'%s' eog '%s'", ref_bin, path);
	char **ref = run_lines(cmd, &n_lines);
	ok(ref && n_lines == 1 && !strcmp(ref[0], ours),
	   "tokenizer %s: end-of-generation tokens are llama.cpp's (%s; llama.cpp %s)", vocab, ours,
	   ref && n_lines ? ref[0] : "nothing");
	if (ref)
		free_lines(ref, n_lines);
}

/* Texts full of special tokens: every control or user-defined token of
 * the vocabulary (up to 400) between words, glued and spaced, and chat
 * turns in the common templates; then the texts t. */
static void special_texts(const parm_tokenizer *tok, const texts *t, texts *out)
{
	static const char *const turns[] = {
		"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
		"<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
		"<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n 4 <|end|> \n<|endoftext|> x",
		"<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nquestion [/INST] answer</s><s>[INST] again [/INST]",
		"<start_of_turn>user\nhey<end_of_turn>\n<start_of_turn>model\n",
		"<|im_start|><|im_end|><|im_start|> <|im_end|>  <unk><s></s>",
	};
	char buf[4096];
	for (size_t i = 0; i < sizeof turns / sizeof *turns; i++)
		texts_add(out, turns[i], strlen(turns[i]));
	int n = 0;
	for (int id = 0; id < parm_tok_n_vocab(tok) && n < 400; id++) {
		int ty = parm_tok_type(tok, id);
		if (ty != 3 && ty != 4 && ty != 2)     /* control, user-defined, unknown */
			continue;
		size_t len;
		const char *s = parm_tok_text(tok, id, &len);
		if (len > 200)
			continue;
		int m = snprintf(buf, sizeof buf, "%s%.*s x %.*s\n y%.*s", n % 2 ? " " : "", (int)len, s,
				 (int)len, s, (int)len, s);
		texts_add(out, buf, (size_t)m);
		n++;
	}
	for (int i = 0; i < t->n; i++)
		texts_add(out, t->text[i], t->len[i]);
}

/* parse_special as llama.cpp's llama_tokenize(..., parse_special = true). */
static void check_special(const parm_tokenizer *tok, const char *path, const char *vocab,
			  const texts *t)
{
	texts sp = { 0 };
	special_texts(tok, t, &sp);
	parse_special = 1;
	char **expected = ref_tokenize(path, &sp);
	if (!expected) {
		ok(0, "tokenizer %s: llama-ref tokenize-all-special failed", vocab);
	} else {
		int bad = compare_ids(tok, &sp, expected);
		ok(bad == 0, "tokenizer %s, special tokens parsed: %d texts tokenised as llama.cpp "
		   "does (%d differ)", vocab, sp.n, bad);
		free_lines(expected, sp.n);
	}
	parse_special = 0;
	texts_free(&sp);
}

static void test_vocab(const char *vocab, const texts *t)
{
	char path[4096];
	char **expected;
	parm_gguf *g;
	parm_tokenizer *tok = NULL;
	int bad;
	fixture_path(path, sizeof path, vocab, "");
	if (!(g = parm_gguf_open(path)) || !(tok = parm_tokenizer_load(g))) {
		ok(0, "tokenizer %s: %s", vocab, parm_error());
		parm_gguf_close(g);
		return;
	}
	if (!(expected = ref_tokenize(path, t))) {
		ok(0, "tokenizer %s: llama-ref tokenize-all failed", vocab);
	} else {
		bad = compare_ids(tok, t, expected);
		ok(bad == 0, "tokenizer %s: %d texts tokenised as llama.cpp does (%d differ)",
		   vocab, t->n, bad);
		free_lines(expected, t->n);
	}
	check_eog(tok, path, vocab);
	check_special(tok, path, vocab, t);
	parm_tokenizer_free(tok);
	parm_gguf_close(g);
}

/* The reference itself, checked against the vectors shipped with the
 * fixtures, through its one-text mode: guards the rest of this test. */
static void test_reference_vectors(void)
{
	char inp[4096], out[4096], model[4096], one[512], cmd[16384];
	texts t = { 0 };
	char **want, **got;
	int n_want = 0, n_got = 0, i, bad = 0, n_vec = 0;
	fixture_path(model, sizeof model, "gpt-2", "");
	fixture_path(inp, sizeof inp, "gpt-2", ".inp");
	fixture_path(out, sizeof out, "gpt-2", ".out");
	texts_add_inp(&t, inp);
	snprintf(cmd, sizeof cmd, "cat '%s'", out);
	want = run_lines(cmd, &n_want);
	for (i = 0; want && i < t.n && i < n_want; i++, n_vec++) {
		FILE *f;
		snprintf(one, sizeof one, "%s/one", tmp_dir);
		if (!(f = fopen(one, "wb")))
			break;
		fwrite(t.text[i], 1, t.len[i], f);
		fclose(f);
		snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' < '%s'", ref_bin, model, one);
		got = run_lines(cmd, &n_got);
		/* .out lines have a leading space; compare ignoring it */
		bad += !got || n_got != 1 || strcmp(got[0], want[i] + strspn(want[i], " "));
		if (got)
			free_lines(got, n_got);
		if (i == 7)
			break;          /* a few are enough: each loads the vocab */
	}
	ok(want && n_vec > 0 && bad == 0, "llama-ref tokenize reproduces %d gpt-2 .out vectors", n_vec);
	if (want)
		free_lines(want, n_want);
	texts_free(&t);
}

static void test_tokenizers(void)
{
	texts t = { 0 };
	size_t i;
	gather_texts(&t);
	test_reference_vectors();
	for (i = 0; i < sizeof vocabs / sizeof *vocabs; i++)
		test_vocab(vocabs[i], &t);
	texts_free(&t);
}

/* ---- logits ---- */

typedef struct {
	double max_diff, scale;         /* max |ours - ref|, rms of ref */
} diff;

/* Reference logits [n][V] of ids[n] through llama-ref, or NULL; loras:
 * llama-ref's "--lora FILE SCALE" arguments, or "". */
static float *ref_logits(const char *model, const char *loras, const int *ids, int n, int n_vocab)
{
	size_t cap = 64 + strlen(ref_bin) + strlen(model) + strlen(loras) + 12 * (size_t)n,
	       want = (size_t)n * n_vocab;
	char *cmd = parm_xmalloc(cap), *p = cmd;
	float *out = parm_xmalloc(want * sizeof *out);
	FILE *f;
	size_t got;
	int i;
	p += sprintf(p, "'%s' logits '%s' %s", ref_bin, model, loras);
	for (i = 0; i < n; i++)
		p += sprintf(p, " %d", ids[i]);
	f = popen(cmd, "r");
	got = f ? fread(out, sizeof *out, want, f) : 0;
	if ((f && pclose(f) != 0) || got != want) {
		free(out);
		out = NULL;
	}
	free(cmd);
	return out;
}

/* Our logits [n][V] of ids[n], every position wanted, with adapters ad
 * (NULL: none), or NULL. */
static float *our_logits(const parm_model *m, const parm_adapter *ad, const int *ids, int n)
{
	parm_kv *kv = parm_kv_new(m, 1, 64);
	int *slot = parm_xcalloc(n, sizeof *slot);
	uint8_t *want = parm_xmalloc(n);
	float *out = parm_xmalloc((size_t)n * m->cfg.n_vocab * sizeof *out);
	memset(want, 1, n);
	if (!kv || parm_forward_adapted(m, ad, kv, n, ids, slot, want, out) != n) {
		free(out);
		out = NULL;
	}
	parm_kv_free(kv);
	free(slot);
	free(want);
	return out;
}

static diff compare_logits(const float *ours, const float *ref, size_t n)
{
	diff d = { 0, 0 };
	double sq = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		double e = fabs((double)ours[i] - ref[i]);
		if (e > d.max_diff || isnan(e))
			d.max_diff = isnan(e) ? INFINITY : e;
		sq += (double)ref[i] * ref[i];
	}
	d.scale = sqrt(sq / n);
	return d;
}

/* As is, f32 must agree to rounding.  For f16 weights llama.cpp's matmul
 * rounds activations (and on some paths results) to f16: measured up to
 * 5e-3 x rms.  For q8_0/q4_0 and the other 32-blocks it quantises
 * activations to q8_0 or q8_1: measured 4e-2..6.6e-2 x rms; for the
 * K-quants and iq4_xs to q8_K: 7.5e-2..8.3e-2 x rms (dim 256).  Our
 * activations are 8-bit for the K-quants' decoding (and their prompts but
 * on AVX-512) and q4_0/q8_0 packed on AVX-512, bf16 for bf16 prompts on
 * AVX-512 with the bf16 dot, floats otherwise; hence the loose limits; the comparison with the dequantised copy, our activations in
 * floats (PARM_INT8=0), is the tight one (measured below 5e-6 x rms). */
static double tolerance(enum parm_ggml_type type)
{
	switch (type) {
	case PARM_GGML_F32: return 1e-3;
	case PARM_GGML_F16: return 1e-2;
	default: return parm_ggml_type_block(type) == QK_K_BLOCK ? 1.5e-1 : 1e-1;
	}
}

/* A deterministic sequence: BOS (if any), then ids spread over the vocab. */
static void make_sequence(int *ids, int n, const parm_tokenizer *tok)
{
	int i, v = parm_tok_n_vocab(tok);
	for (i = 0; i < n; i++)
		ids[i] = (int)((i * 7919L + 101) % v);
	if (parm_tok_bos(tok) >= 0)
		ids[0] = parm_tok_bos(tok);
}

/* Ours on path against llama.cpp on ref_path (the same model, or its
 * dequantised f32 copy); what = a label for the diagnostics. */
static void check_file(const char *path, const char *ref_path, const char *what, double tol)
{
	parm_model *m = parm_model_load(path);
	int ids[N_SEQ];
	float *ours = NULL, *ref = NULL;
	diff d;
	if (!m) {
		ok(0, "%s: parm_model_load: %s", what, parm_error());
		return;
	}
	make_sequence(ids, N_SEQ, m->tok);
	if (!(ours = our_logits(m, NULL, ids, N_SEQ)))
		ok(0, "%s: parm_forward: %s", what, parm_error());
	else if (!(ref = ref_logits(ref_path, "", ids, N_SEQ, m->cfg.n_vocab)))
		ok(0, "%s: llama-ref logits failed on %s", what, ref_path);
	else {
		d = compare_logits(ours, ref, (size_t)N_SEQ * m->cfg.n_vocab);
		ok(d.max_diff <= tol * d.scale,
		   "%s: max |diff| %.3g = %.3g x rms %.3g (limit %.0e x rms)",
		   what, d.max_diff, d.max_diff / d.scale, d.scale, tol);
	}
	free(ours);
	free(ref);
	parm_model_free(m);
}

/* The same model with every tensor dequantised to f32: llama.cpp runs it
 * without rounding activations, so it checks our handling of the weights
 * to f32 precision. */
static int write_dequantised(const char *in, const char *out)
{
	parm_gguf *g = parm_gguf_open(in);
	parm_gguf_writer *w;
	int i, rc;
	if (!g)
		return -1;
	w = parm_gguf_w_new();
	for (i = 0; i < parm_gguf_n_kv(g); i++)
		if (strcmp(parm_gguf_kv_key(g, i), "general.file_type"))
			parm_gguf_w_copy_kv(w, g, parm_gguf_kv_key(g, i));
	parm_gguf_w_set_u32(w, "general.file_type", 0);
	for (i = 0; i < parm_gguf_n_tensors(g); i++) {
		const parm_gguf_tensor *t = parm_gguf_tensor_at(g, i);
		int64_t r, rows = t->n_elements / t->ne[0];
		size_t rb = parm_ggml_row_bytes(t->type, t->ne[0]);
		float *f = parm_xmalloc((size_t)t->n_elements * sizeof *f);
		for (r = 0; r < rows; r++)
			parm_dequant_row(f + r * t->ne[0], (const char *)t->data + r * rb, t->type, t->ne[0]);
		parm_gguf_w_tensor(w, t->name, PARM_GGML_F32, t->n_dims, t->ne, f);
		free(f);
	}
	rc = parm_gguf_w_save(w, out);
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	return rc;
}

/* Both comparisons for one file: against llama.cpp on the file itself,
 * and (for f16/q8_0/q4_0) against llama.cpp on its dequantised copy. */
static void check_both(const char *path, enum parm_ggml_type type, const char *what)
{
	char f32_path[512], label[400];
	snprintf(label, sizeof label, "%s, as is", what);
	check_file(path, path, label, tolerance(type));
	if (type == PARM_GGML_F32)
		return;
	snprintf(f32_path, sizeof f32_path, "%s/dequantised.gguf", tmp_dir);
	snprintf(label, sizeof label, "%s, against its dequantised f32 copy", what);
	parm_kernels_set_int8(0);    /* our activations in floats too: the weights alone */
	if (write_dequantised(path, f32_path))
		ok(0, "%s: %s", label, parm_error());
	else
		check_file(path, f32_path, label, tolerance(PARM_GGML_F32));
	parm_kernels_set_int8(1);
	unlink(f32_path);
}

static int make_arch_model(const char *out, const char *vocab, const parm_config *shape,
			   enum parm_ggml_type type)
{
	char path[4096];
	parm_gguf *g;
	parm_tokenizer *tok;
	parm_config cfg = *shape;
	int rc = -1;
	fixture_path(path, sizeof path, vocab, "");
	if (!(g = parm_gguf_open(path)))
		return -1;
	if ((tok = parm_tokenizer_load(g))) {
		cfg.n_vocab = parm_tok_n_vocab(tok);
		rc = parm_model_init(out, g, &cfg, type, 1234);
		parm_tokenizer_free(tok);
	}
	parm_gguf_close(g);
	return rc;
}

static int make_model(const char *out, const char *vocab, int dim, int kv_heads,
		      enum parm_ggml_type type)
{
	parm_config cfg = { .dim = dim, .n_layers = 2, .n_heads = 4, .n_kv_heads = kv_heads,
			    .ff = 3 * dim, .n_ctx = 64, .rms_eps = 1e-5f, .rope_theta = 10000.0f };
	return make_arch_model(out, vocab, &cfg, type);
}

static void test_our_files(void)
{
	static const enum parm_ggml_type types[] = { PARM_GGML_F32, PARM_GGML_F16, PARM_GGML_Q8_0, PARM_GGML_Q4_0 };
	static const struct { const char *vocab; int dim, kv_heads; } shapes[] = {
		{ "llama-spm", 64, 2 }, { "llama-spm", 64, 4 },
		{ "gpt-2", 128, 2 }, { "gpt-2", 128, 4 },
	};
	char path[512], what[256];
	size_t s, t;
	for (s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (t = 0; t < sizeof types / sizeof *types; t++) {
			snprintf(what, sizeof what, "our %s model (%s vocab, dim %d, heads 4, kv heads %d)",
				 parm_ggml_type_name(types[t]), shapes[s].vocab, shapes[s].dim, shapes[s].kv_heads);
			snprintf(path, sizeof path, "%s/ours.gguf", tmp_dir);
			if (make_model(path, shapes[s].vocab, shapes[s].dim, shapes[s].kv_heads, types[t]))
				ok(0, "%s: parm_model_init: %s", what, parm_error());
			else
				check_both(path, types[t], what);
			unlink(path);
		}
}

static void check_greedy(const char *model, const char *what, double tol);

/* Llama 3.1+ files carry rope_freqs.weight: each rotated pair's angle is
 * divided by its factor.  Ours with one added against llama.cpp's. */
static int add_rope_freqs(const char *in, const char *out)
{
	parm_gguf *g = parm_gguf_open(in);
	if (!g)
		return -1;
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_gguf_w_copy_file(w, g, NULL, NULL);
	int64_t half = 128 / 4 / 2;
	float ff[16];
	for (int k = 0; k < half; k++)
		ff[k] = k < 4 ? 1.0f : 1.0f + (float)(k - 3) * 0.75f;  /* up to 10: the low frequencies slowed */
	parm_gguf_w_tensor(w, "rope_freqs.weight", PARM_GGML_F32, 1, &half, ff);
	int rc = parm_gguf_w_save(w, out);
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	return rc;
}

static void test_rope_freqs(void)
{
	char src[512], dst[512];
	const char *what = "our f32 model with rope_freqs.weight (Llama 3.1 rope, dim 128)";
	snprintf(src, sizeof src, "%s/ours.gguf", tmp_dir);
	snprintf(dst, sizeof dst, "%s/freqs.gguf", tmp_dir);
	if (make_model(src, "llama-spm", 128, 2, PARM_GGML_F32) || add_rope_freqs(src, dst)) {
		ok(0, "%s: %s", what, parm_error());
		ok(0, "%s: no model", what);
	} else {
		check_file(dst, dst, what, tolerance(PARM_GGML_F32));
		check_greedy(dst, what, tolerance(PARM_GGML_F32));
	}
	unlink(src);
	unlink(dst);
}

/* ---- chat templates ---- */

/* llama.cpp's layout of msgs[n] by tmpl (NULL: the model's own), or NULL
 * when it refuses the template. */
static char *ref_chat(const char *model, const char *tmpl, const parm_chat_msg *msgs, int n)
{
	char in[512], out[512], cmd[16384];
	snprintf(in, sizeof in, "%s/chat.in", tmp_dir);
	snprintf(out, sizeof out, "%s/chat.out", tmp_dir);
	FILE *f = fopen(in, "wb");
	for (int i = 0; f && i < n; i++) {
		fwrite(msgs[i].role, 1, strlen(msgs[i].role) + 1, f);
		fwrite(msgs[i].content, 1, strlen(msgs[i].content) + 1, f);
	}
	if (f)
		fclose(f);
	char *q = tmpl ? parm_xmalloc(4 * strlen(tmpl) + 3) : NULL, *p = q;
	if (q) {                /* single-quoted for the shell */
		*p++ = '\'';
		for (const char *c = tmpl; *c; c++)
			if (*c == '\'')
				memcpy(p, "'\\''", 4), p += 4;
			else
				*p++ = *c;
		*p++ = '\'', *p = '\0';
	}
	snprintf(cmd, sizeof cmd, "'%s' chat '%s' %s < '%s' > '%s' 2>/dev/null", ref_bin, model,
		 q ? q : "", in, out);
	free(q);
	size_t len;
	char *text = system(cmd) == 0 ? slurp(out, &len) : NULL;
	unlink(in);
	unlink(out);
	return text;
}

static const parm_chat_msg conv1[] = { { "user", "Hello" } };
static const parm_chat_msg conv2[] = {
	{ "system", "You are kind." }, { "user", "  Hi  there " }, { "assistant", " Hello! " },
	{ "user", "Bye\n" },
};
static const parm_chat_msg conv3[] = {
	{ "user", "a" }, { "assistant", "b\n" }, { "user", "c" }, { "assistant", "d" },
};
static const struct { const parm_chat_msg *m; int n; } convs[] = {
	{ conv1, 1 }, { conv2, 4 }, { conv3, 4 },
};

/* One template on every conversation: the same text as llama.cpp, or
 * both refuse.  Returns the conversations that differ. */
static int compare_chat(const char *model, const char *tmpl, const char *ours_tmpl)
{
	int bad = 0;
	for (size_t c = 0; c < sizeof convs / sizeof *convs; c++) {
		char *ref = ref_chat(model, tmpl, convs[c].m, convs[c].n);
		char *ours = parm_chat_apply(ours_tmpl, convs[c].m, convs[c].n, 1);
		if (!(ref ? ours && !strcmp(ref, ours) : !ours) && ++bad <= 1)
			printf("# template %.60s, conversation %zu:\n#   llama.cpp: %.200s\n#   parm:      %.200s\n",
			       ours_tmpl, c + 1, ref ? ref : "(refused)", ours ? ours : parm_error());
		free(ref);
		free(ours);
	}
	return bad;
}

/* Texts that steer llama.cpp's recognition down each branch, as a Jinja
 * template would contain them. */
static const char *const jinja_like[] = {
	"{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}",
	"{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
	"<<SYS>> [INST] content.strip()", "bos_token + '[INST] <<SYS>>", "[INST] <<SYS>>",
	"' [INST] ' + system_message [INST]", "[AVAILABLE_TOOLS] \"[INST]\"", "[AVAILABLE_TOOLS][INST]",
	"[SYSTEM_PROMPT][INST]", "mistral", "<|user|> <|assistant|> <|end|>", "<|user|><|assistant|></s>",
	"<|user|><|assistant|>", "<|user|> <|endoftext|>", "<start_of_turn>user",
	"bos_token + message['role']", "GPT4 Correct User:", "USER: ASSISTANT: ", "SYSTEM: USER: ASSISTANT: ",
	"### Instruction: <|EOT|>", "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
	"<|start_header_id|>user<|end_header_id|>", "[gMASK]sop", "[gMASK]<sop>",
	"<|im_start|><|im_sep|>", "<|header_start|><|header_end|>", "{% nothing known %}",
	"'Assistant: ' + message['content'] + eos_token",
	"<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c><\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"'\\n\\nAssistant: ' + eos_token",
};

/* llama.cpp's ids for a chat prompt (system + user, assistant opened) in
 * model's own template, special tokens parsed, BOS as the model adds it;
 * returns the count, -1 on failure. */
static int ref_chat_ids(const char *model, const parm_tokenizer *tok, const char *system,
			const char *user, int *ids, int max)
{
	parm_chat_msg m[2] = { { "system", system }, { "user", user } };
	char *text = ref_chat(model, NULL, m, 2), cmd[16384], path[512];
	if (!text)
		return -1;
	snprintf(path, sizeof path, "%s/chat.txt", tmp_dir);
	FILE *f = fopen(path, "wb");
	fputs(text, f);
	fclose(f);
	free(text);
	snprintf(cmd, sizeof cmd, "'%s' tokenize-special '%s' < '%s'", ref_bin, model, path);
	int n_lines = 0, n = 0;
	char **lines = run_lines(cmd, &n_lines);
	unlink(path);
	if (!lines || n_lines != 1)
		return -1;
	if (parm_tok_add_bos(tok) && parm_tok_bos(tok) >= 0)
		ids[n++] = parm_tok_bos(tok);
	for (char *p = lines[0], *end; *p && n < max; p = end)
		ids[n++] = (int)strtol(p, &end, 10);
	free_lines(lines, n_lines);
	return n;
}

/* A phi3 model of the Phi-3 vocabulary (which carries its chat template):
 * parm-logits --chat --system gives the prompt llama.cpp makes of the
 * template, and greedy tokens that are llama.cpp's on it. */
static void test_chat_pipe(void)
{
	char vocab[4096], model[512];
	const char *what = "parm-logits --chat --system on a phi3 model (its own template)";
	fixture_path(vocab, sizeof vocab, "phi-3", "");
	snprintf(model, sizeof model, "%s/chat.gguf", tmp_dir);
	parm_config cfg = { .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .ff = 128,
			    .n_ctx = 128, .rms_eps = 1e-5f, .rope_theta = 10000, .arch = PARM_ARCH_PHI3 };
	parm_gguf *g = parm_gguf_open(vocab);
	parm_model *m = g && parm_model_init(model, g, &cfg, PARM_GGML_F32, 77) == 0 ? parm_model_load(model) : NULL;
	parm_gguf_close(g);
	int ids[128 + N_GREEDY];
	int n = m ? ref_chat_ids(model, m->tok, "Be brief.", greedy_prompt, ids, 128) : -1;
	char *tmpl = m ? parm_chat_template_of(m->file) : NULL;
	char *text = tmpl ? parm_chat_prompt(tmpl, "Be brief.", greedy_prompt) : NULL;
	int ours[128], n_ours = text ? parm_tokenize_special(m->tok, text, strlen(text), 1, ours, 128) : -1;
	ok(n > 0 && n_ours == n && !memcmp(ours, ids, n * sizeof *ids),
	   "chat prompt: parm's tokens (%d) are llama.cpp's (%d)", n_ours, n);
	if (m && n > 0)
		check_greedy_on(m, model, "--chat --system 'Be brief.'", ids, n, what, tolerance(PARM_GGML_F32));
	free(tmpl);
	free(text);
	parm_model_free(m);
	unlink(model);
}

static void test_chat(void)
{
	char model[4096];
	fixture_path(model, sizeof model, "llama-spm", "");
	static const char *const others[] = { "gpt-oss", "granite", "minicpm", "kimi-k2" };
	const char *names = parm_chat_names();
	int n = 0, bad = 0;
	for (const char *p = names; *p; ) {
		size_t len = strcspn(p, ",");
		char name[64];
		snprintf(name, sizeof name, "%.*s", (int)len, p);
		bad += compare_chat(model, name, name) > 0;
		n++;
		p += len;
		p += strspn(p, ", ");
	}
	ok(bad == 0 && n >= 29, "chat: %d built-in templates lay out 3 conversations as llama.cpp does "
	   "(%d differ)", n, bad);
	bad = 0;
	for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
		char *ref = ref_chat(model, others[i], conv1, 1);
		char *ours = parm_chat_apply(others[i], conv1, 1, 1);
		bad += !ref || ours || !strstr(parm_error(), "recognised but not implemented") ||
		       !strstr(parm_error(), others[i]);
		free(ref);
		free(ours);
	}
	ok(bad == 0, "chat: llama.cpp's templates parm does not lay out are refused by name (%d not)", bad);
	bad = compare_chat(model, "no-such-template", "no-such-template");
	ok(bad == 0 && !parm_chat_detect("no-such-template"), "chat: an unknown template is refused, as by llama.cpp");
	bad = 0;
	for (size_t i = 0; i < sizeof jinja_like / sizeof *jinja_like; i++)
		bad += compare_chat(model, jinja_like[i], jinja_like[i]) > 0;
	ok(bad == 0, "chat: %zu template texts recognised as llama.cpp recognises them (%d differ)",
	   sizeof jinja_like / sizeof *jinja_like, bad);
	static const char *const own[] = { "qwen2", "phi-3" };
	for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
		fixture_path(model, sizeof model, own[i], "");
		parm_gguf *g = parm_gguf_open(model);
		char *tmpl = g ? parm_chat_template_of(g) : NULL;
		ok(tmpl && compare_chat(model, NULL, tmpl) == 0,
		   "chat: the %s vocabulary's own template (%s) as llama.cpp lays it out", own[i],
		   tmpl ? parm_chat_detect(tmpl) : parm_error());
		free(tmpl);
		parm_gguf_close(g);
	}
	test_chat_pipe();
}

/* ---- the other architectures ---- */

/* Random biases (std 0.1) on every projection of every layer of g. */
static void add_biases(parm_gguf_writer *w, const parm_gguf *g)
{
	static const char *const parts[] = { "attn_q", "attn_k", "attn_v", "attn_output",
					     "ffn_gate", "ffn_up", "ffn_down" };
	uint64_t s = 99;
	char name[96];
	for (int l = 0; l < 64; l++)
		for (size_t p = 0; p < sizeof parts / sizeof *parts; p++) {
			snprintf(name, sizeof name, "blk.%d.%s.weight", l, parts[p]);
			const parm_gguf_tensor *t = parm_gguf_find_tensor(g, name);
			if (!t)
				continue;
			int64_t n = t->ne[1];
			float *b = parm_xmalloc((size_t)n * sizeof *b);
			for (int64_t i = 0; i < n; i++) {
				s = s * 6364136223846793005ULL + 1442695040888963407ULL;
				b[i] = (float)((double)(s >> 11) * 0x1.0p-53 - 0.5) * 0.35f;
			}
			snprintf(name, sizeof name, "blk.%d.%s.bias", l, parts[p]);
			parm_gguf_w_tensor(w, name, PARM_GGML_F32, 1, &n, b);
			free(b);
		}
}

/* Everything but the tensor named ctx (NULL: everything). */
static int keep_but(void *ctx, const char *name, int is_tensor)
{
	return !is_tensor || !ctx || strcmp(ctx, name);
}

/* A copy of in with its tensors and keys, minus the tensor drop (NULL:
 * none), plus LongRoPE's factors and keys when orig_ctx > 0, plus
 * biases on every projection when orig_ctx < 0. */
static int rewrite_model(const char *in, const char *out, const char *drop, int orig_ctx)
{
	parm_gguf *g = parm_gguf_open(in);
	if (!g)
		return -1;
	parm_gguf_writer *w = parm_gguf_w_new();
	const char *arch;
	size_t len;
	char key[96];
	parm_gguf_get_str(g, "general.architecture", &arch, &len);
	parm_gguf_w_copy_file(w, g, keep_but, (void *)drop);
	if (orig_ctx < 0)
		add_biases(w, g);
	if (orig_ctx > 0) {
		int64_t half = 16;      /* head dim 32 */
		float lf[16], sf[16];
		for (int k = 0; k < half; k++) {
			sf[k] = 1.0f + 0.05f * k;
			lf[k] = 1.0f + 0.75f * k;
		}
		parm_gguf_w_tensor(w, "rope_factors_short.weight", PARM_GGML_F32, 1, &half, sf);
		parm_gguf_w_tensor(w, "rope_factors_long.weight", PARM_GGML_F32, 1, &half, lf);
		snprintf(key, sizeof key, "%.*s.rope.scaling.attn_factor", (int)len, arch);
		parm_gguf_w_set_f32(w, key, 1.19f);
		snprintf(key, sizeof key, "%.*s.rope.scaling.original_context_length", (int)len, arch);
		parm_gguf_w_set_u32(w, key, orig_ctx);
	}
	int rc = parm_gguf_w_save(w, out);
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	return rc;
}

/* Each architecture written by our writer in llama.cpp's converter layout
 * (qwen2: q/k/v biases; qwen3: q/k norms, head dim 48 against dim / heads
 * 32; phi3: fused attn_qkv and gate||up), as is and quantised, against
 * llama.cpp's logits and greedy tokens through the pipe; qwen2 tied, phi3
 * with LongRoPE factors (short and long) and its attention factor, llama
 * with a bias on every projection. */
static void test_architectures(void)
{
	static const struct { int arch; const char *vocab; int dim, heads, kv, hd; } shapes[] = {
		{ PARM_ARCH_QWEN2, "gpt-2", 128, 4, 2, 0 },
		{ PARM_ARCH_QWEN3, "gpt-2", 128, 4, 2, 48 },
		{ PARM_ARCH_PHI3, "phi-3", 128, 4, 4, 0 },
		{ PARM_ARCH_LLAMA, "llama-spm", 128, 4, 2, 0 },
	};
	char path[512], alt[512], what[256];
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		parm_config cfg = { .dim = shapes[i].dim, .n_layers = 2, .n_heads = shapes[i].heads,
				    .n_kv_heads = shapes[i].kv, .ff = 160, .n_ctx = 64, .rms_eps = 1e-5f,
				    .rope_theta = 10000.0f, .arch = shapes[i].arch,
				    .head_dim = shapes[i].hd };
		const char *name = parm_arch_at(shapes[i].arch)->name;
		snprintf(path, sizeof path, "%s/arch.gguf", tmp_dir);
		for (int q = 0; q < 2; q++) {
			enum parm_ggml_type t = q ? PARM_GGML_Q8_0 : PARM_GGML_F32;
			snprintf(what, sizeof what, "our %s %s model (%s vocab)", parm_ggml_type_name(t), name,
				 shapes[i].vocab);
			if (make_arch_model(path, shapes[i].vocab, &cfg, t)) {
				ok(0, "%s: parm_model_init: %s", what, parm_error());
				continue;
			}
			check_both(path, t, what);
			if (!q)
				check_greedy(path, what, tolerance(PARM_GGML_F32));
		}
		make_arch_model(path, shapes[i].vocab, &cfg, PARM_GGML_F32);
		snprintf(alt, sizeof alt, "%s/arch-variant.gguf", tmp_dir);
		if (shapes[i].arch == PARM_ARCH_QWEN2) {
			snprintf(what, sizeof what, "our f32 qwen2 model, output tied to token_embd");
			if (rewrite_model(path, alt, "output.weight", 0))
				ok(0, "%s: %s", what, parm_error());
			else
				check_file(alt, alt, what, tolerance(PARM_GGML_F32));
		}
		for (int orig = 32; shapes[i].arch == PARM_ARCH_PHI3 && orig <= 4096; orig *= 128) {
			snprintf(what, sizeof what, "our f32 phi3 model, LongRoPE factors (%s, context 64, "
				 "original %d), attn_factor 1.19", orig < 64 ? "long" : "short", orig);
			if (rewrite_model(path, alt, NULL, orig))
				ok(0, "%s: %s", what, parm_error());
			else
				check_file(alt, alt, what, tolerance(PARM_GGML_F32));
		}
		if (shapes[i].arch == PARM_ARCH_LLAMA) {
			snprintf(what, sizeof what, "our f32 llama model with biases on q, k, v, o, gate, up, down");
			if (rewrite_model(path, alt, NULL, -1))
				ok(0, "%s: %s", what, parm_error());
			else
				check_file(alt, alt, what, tolerance(PARM_GGML_F32));
		}
		unlink(alt);
		unlink(path);
	}
}

/* ---- files llama.cpp writes ---- */

/* Tensors llama-quantize wrote, against our own quantiser on the same f32
 * data: the same bytes, or the count of tensors that differ. */
static int count_differing_tensors(const char *f32_path, const char *q_path)
{
	parm_gguf *a = parm_gguf_open(f32_path), *b = parm_gguf_open(q_path);
	int i, bad = -1;
	if (a && b)
		for (bad = 0, i = 0; i < parm_gguf_n_tensors(b); i++) {
			const parm_gguf_tensor *tq = parm_gguf_tensor_at(b, i);
			const parm_gguf_tensor *tf = parm_gguf_find_tensor(a, tq->name);
			int64_t r, rows = tq->n_elements / tq->ne[0];
			size_t rb = parm_ggml_row_bytes(tq->type, tq->ne[0]);
			char *row = parm_xmalloc(rb);
			if (!tf || tf->type != PARM_GGML_F32 || tf->n_elements != tq->n_elements) {
				bad++;
				free(row);
				continue;
			}
			for (r = 0; r < rows; r++) {
				parm_quant_row(row, (const float *)tf->data + r * tq->ne[0], tq->type, tq->ne[0]);
				if (memcmp(row, (const char *)tq->data + r * rb, rb)) {
					bad++;
					break;
				}
			}
			free(row);
		}
	parm_gguf_close(a);
	parm_gguf_close(b);
	return bad;
}

/* Greedy tokens through the real pipe (parm-logits | parm-sample --temp 0)
 * against llama.cpp's argmax on the same sequence (teacher forcing, so one
 * near tie cannot make the rest diverge): each of our tokens is
 * llama.cpp's argmax, or within tol x rms of it in llama.cpp's own logits
 * (a tie inside its activation rounding).  Returns the steps that equal
 * its argmax, or -1 with a failure reported. */

static int pipe_tokens(const char *model, const char *flags, int *out, const char *what)
{
	char cmd[8192], path[400];
	snprintf(path, sizeof path, "%s/greedy.json", tmp_dir);
	snprintf(cmd, sizeof cmd, "echo '%s' | tools/parm-logits %s -n %d '%s' | "
		 "tools/parm-sample --temp 0 -j > '%s'", greedy_prompt, flags, N_GREEDY, model, path);
	json_error_t err;
	json_t *j = system(cmd) == 0 ? json_load_file(path, 0, &err) : NULL;
	json_t *toks = json_object_get(j, "tokens");
	int n = (int)json_array_size(toks);
	for (int i = 0; i < n && i < N_GREEDY; i++)
		out[i] = (int)json_integer_value(json_array_get(toks, i));
	json_decref(j);
	unlink(path);
	if (n != N_GREEDY)
		ok(0, "%s: the pipe gave %d tokens, not %d", what, n, N_GREEDY);
	return n == N_GREEDY ? 0 : -1;
}

/* The greedy check on prompt ids[n_prompt] (room for N_GREEDY more), the
 * pipe run with flags. */
static void check_greedy_on(const parm_model *m, const char *model, const char *flags,
			    int *ids, int n_prompt, const char *what, double tol)
{
	int gen[N_GREEDY], same = 0, worst_step = -1;
	double worst = 0;
	float *ref = NULL;
	if (n_prompt > 0 && pipe_tokens(model, flags, gen, what) == 0) {
		memcpy(ids + n_prompt, gen, (N_GREEDY - 1) * sizeof *gen);
		ref = ref_logits(model, "", ids, n_prompt + N_GREEDY - 1, m->cfg.n_vocab);
		if (!ref)
			ok(0, "%s: llama-ref logits failed", what);
	}
	for (int i = 0; ref && i < N_GREEDY; i++) {
		const float *row = ref + (size_t)(n_prompt - 1 + i) * m->cfg.n_vocab;
		int best = 0;
		double sq = 0;
		for (int v = 0; v < m->cfg.n_vocab; v++) {
			best = row[v] > row[best] ? v : best;
			sq += (double)row[v] * row[v];
		}
		double gap = (row[best] - row[gen[i]]) / sqrt(sq / m->cfg.n_vocab);
		same += best == gen[i];
		if (gap > worst)
			worst = gap, worst_step = i;
	}
	if (ref)
		ok(worst <= tol, "%s: greedy through the pipe: %d of %d tokens are llama.cpp's argmax, "
		   "the others within %.3g x rms of it (limit %.0e; step %d)",
		   what, same, N_GREEDY, worst, tol, worst_step);
	free(ref);
}

static void check_greedy(const char *model, const char *what, double tol)
{
	parm_model *m = parm_model_load(model);
	int ids[64 + N_GREEDY];
	if (!m) {
		ok(0, "%s: parm_model_load: %s", what, parm_error());
		return;
	}
	/* BOS as parm-logits adds it: when the vocabulary asks for one */
	int add_bos = parm_tok_add_bos(m->tok) && parm_tok_bos(m->tok) >= 0;
	int n_prompt = parm_tokenize(m->tok, greedy_prompt, sizeof greedy_prompt - 1, add_bos, ids, 64);
	check_greedy_on(m, model, "", ids, n_prompt, what, tol);
	parm_model_free(m);
}

static int run_quantize(const char *in, const char *out, const char *type, int pure)
{
	char cmd[16384];
	snprintf(cmd, sizeof cmd, "'%s' %s '%s' '%s' %s 2 >'%s/quantize.log' 2>&1",
		 quantize_bin, pure ? "--pure" : "", in, out, type, tmp_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The types we write (the same bytes as llama-quantize, --pure) and the
 * ones we only read, as llama-quantize mixes them for users (Q4_K_M:
 * q4_K with q6_K for some tensors); K-quants need rows of 256, hence the
 * larger model. */
static const struct their_type {
	const char *arg;
	enum parm_ggml_type type;    /* the main type */
	int ours;               /* parm_quant_row writes it: compare the bytes */
} their_types[] = {
	{ "F16", PARM_GGML_F16, 1 }, { "Q8_0", PARM_GGML_Q8_0, 1 }, { "Q4_0", PARM_GGML_Q4_0, 1 },
	{ "Q4_1", PARM_GGML_Q4_1, 0 }, { "Q5_0", PARM_GGML_Q5_0, 0 }, { "Q5_1", PARM_GGML_Q5_1, 0 },
	{ "IQ4_NL", PARM_GGML_IQ4_NL, 0 }, { "Q2_K", PARM_GGML_Q2_K, 0 }, { "Q3_K_M", PARM_GGML_Q3_K, 0 },
	{ "Q4_K_M", PARM_GGML_Q4_K, 0 }, { "Q5_K_M", PARM_GGML_Q5_K, 0 }, { "Q6_K", PARM_GGML_Q6_K, 0 },
	{ "IQ4_XS", PARM_GGML_IQ4_XS, 0 },
};
#define N_THEIR_TYPES (sizeof their_types / sizeof *their_types)
#define THEIR_CHECKS 4          /* ok() calls per type */

static void check_their_file(const char *src, const struct their_type *t)
{
	char dst[512], what[256];
	snprintf(what, sizeof what, "llama-quantize %s file", t->arg);
	snprintf(dst, sizeof dst, "%s/theirs.gguf", tmp_dir);
	if (run_quantize(src, dst, t->arg, t->ours)) {
		for (int i = 0; i < THEIR_CHECKS; i++)
			ok(0, "%s: llama-quantize failed (log in %s)", what, tmp_dir);
		return;
	}
	check_both(dst, t->type, what);
	check_greedy(dst, what, tolerance(t->type));
	if (t->ours) {
		int bad = count_differing_tensors(src, dst);
		ok(bad == 0, "%s: every tensor matches our parm_quant_row on the same data (%d differ)",
		   what, bad);
	} else {
		parm_gguf *g = parm_gguf_open(dst);
		int n = 0;
		for (int i = 0; g && i < parm_gguf_n_tensors(g); i++)
			n += parm_gguf_tensor_at(g, i)->type == t->type;
		ok(n > 0, "%s: holds %d %s tensors", what, n, parm_ggml_type_name(t->type));
		parm_gguf_close(g);
	}
	unlink(dst);
}

static void test_their_files(void)
{
	char src[512];
	snprintf(src, sizeof src, "%s/f32.gguf", tmp_dir);
	if (make_model(src, "llama-spm", 256, 2, PARM_GGML_F32)) {
		for (size_t i = 0; i < THEIR_CHECKS * N_THEIR_TYPES; i++)
			ok(0, "llama-quantize files: parm_model_init: %s", parm_error());
		return;
	}
	for (size_t i = 0; i < N_THEIR_TYPES; i++)
		check_their_file(src, &their_types[i]);
	unlink(src);
}

static void remove_tmp_dir(void)
{
	static const char *const names[] = { "texts", "one", "quantize.log", "f32.gguf" };
	char path[512];
	size_t i;
	for (i = 0; i < sizeof names / sizeof *names; i++) {
		snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]);
		unlink(path);
	}
	rmdir(tmp_dir);
}

static void skip_all(const char *why)
{
	size_t i;
	for (i = 0; i < 1 + sizeof vocabs / sizeof *vocabs; i++)
		skip(why, "tokenizer check %zu", i);
	for (i = 0; i < 28 + 2; i++)
		skip(why, "logits of our model %zu", i);
	for (i = 0; i < THEIR_CHECKS * N_THEIR_TYPES; i++)
		skip(why, "llama-quantize file check %zu", i);
}

/* ---- an ARM as llama.cpp LoRA adapters (export.h) ---- */

/* An ARM of k = 2 objectives on backbone, every target adapted, B drawn
 * (not 0: the adapters must change the logits). */
static parm_arm *random_arm(const char *backbone, const char *out)
{
	static const char *names[] = { "helpful", "harmless" };
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = 2, o.r1 = 2, o.r2 = 3, o.objectives = names, o.seed = 5;
	parm_parse_targets("all", &o.targets);
	parm_arm *a = parm_arm_new(backbone, &o);
	if (!a)
		return NULL;
	uint64_t s = 99;
	for (size_t i = 0; i < a->n_params; i++)
		if (parm_splitmix_uniform(&s) < 0.5)  /* half the entries, B's included */
			a->params[i] += 0.2f * (float)(parm_splitmix_uniform(&s) - 0.5);
	if (parm_arm_save(a, out, 0) < 0) {
		parm_arm_free(a);
		return NULL;
	}
	return a;
}

/* Ours at alpha (unmerged) against llama.cpp with the adapters loras. */
static void check_lora(const parm_arm *a, const float *alpha, const char *loras, const char *what)
{
	int ids[N_SEQ], V = a->backbone->cfg.n_vocab;
	float *M, *ref = NULL, *ours, *plain = NULL;
	parm_adapter *ad = parm_arm_adapters(a, alpha, &M);
	make_sequence(ids, N_SEQ, a->backbone->tok);
	if (!(ours = our_logits(a->backbone, ad, ids, N_SEQ)))
		ok(0, "%s: parm_forward_adapted: %s", what, parm_error());
	else if (!(ref = ref_logits(a->backbone_path, loras, ids, N_SEQ, V)))
		ok(0, "%s: llama-ref logits with %s failed", what, loras);
	else if ((plain = our_logits(a->backbone, NULL, ids, N_SEQ))) {
		/* the adapters must move the logits far more than the limit */
		diff d = compare_logits(ours, ref, (size_t)N_SEQ * V);
		diff moved = compare_logits(ours, plain, (size_t)N_SEQ * V);
		double lim = tolerance(PARM_GGML_F32) * d.scale;
		ok(d.max_diff <= lim && moved.max_diff >= 100 * lim,
		   "%s: max |diff| %.3g = %.3g x rms %.3g (limit %.0e x rms; the adapters move "
		   "the logits by %.3g)", what, d.max_diff, d.max_diff / d.scale, d.scale,
		   tolerance(PARM_GGML_F32), moved.max_diff);
	}
	free(ours), free(ref), free(plain), free(ad), free(M);
}

/* The k + 1 adapters at scales 1, alpha_1, alpha_2 and the one merged at
 * alpha, on llama.cpp, against our ARM at alpha: on llama, and on phi3,
 * whose q, k, v and gate, up sit in fused tensors. */
static void test_lora_export_on(int arch, const char *vocab)
{
	static const float alphas[][2] = { { 1, 0 }, { 0.3f, 0.7f }, { 0, 1 } };
	parm_config cfg = { .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ff = 96,
			    .n_ctx = 64, .rms_eps = 1e-5f, .rope_theta = 10000.0f, .arch = arch };
	const char *name = parm_arch_at(arch)->name;
	char backbone[512], armf[512], part[3][512], merged[512], loras[4096], what[256];
	snprintf(backbone, sizeof backbone, "%s/lora-base.gguf", tmp_dir);
	snprintf(armf, sizeof armf, "%s/lora-arm.gguf", tmp_dir);
	parm_arm *a = NULL;
	if (arch == PARM_ARCH_PHI3)
		cfg.n_kv_heads = 4;
	if (make_arch_model(backbone, vocab, &cfg, PARM_GGML_F32) || !(a = random_arm(backbone, armf))) {
		ok(0, "LoRA export (%s): an ARM to export: %s", name, parm_error());
		return;
	}
	for (int i = -1; i < 2; i++) {
		snprintf(part[i + 1], sizeof part[0], "%s/lora-part%d.gguf", tmp_dir, i + 1);
		if (parm_arm_export_lora(a, i, NULL, part[i + 1]) < 0)
			ok(0, "LoRA export of part %d: %s", i, parm_error());
	}
	for (size_t j = 0; j < sizeof alphas / sizeof *alphas; j++) {
		const float *al = alphas[j];
		snprintf(loras, sizeof loras, "--lora '%s' 1 --lora '%s' %.9g --lora '%s' %.9g",
			 part[0], part[1], al[0], part[2], al[1]);
		snprintf(what, sizeof what, "%s ARM at (%g, %g) as 3 LoRA adapters at scales 1, %g, %g "
			 "on llama.cpp", name, al[0], al[1], al[0], al[1]);
		check_lora(a, al, loras, what);
		snprintf(merged, sizeof merged, "%s/lora-merged.gguf", tmp_dir);
		if (parm_arm_export_lora(a, -1, al, merged) < 0)
			ok(0, "LoRA export merged at (%g, %g): %s", al[0], al[1], parm_error());
		snprintf(loras, sizeof loras, "--lora '%s' 1", merged);
		snprintf(what, sizeof what, "%s ARM at (%g, %g) as one merged LoRA adapter on llama.cpp",
			 name, al[0], al[1]);
		check_lora(a, al, loras, what);
	}
	parm_arm_free(a);
}

static void test_lora_export(void)
{
	test_lora_export_on(PARM_ARCH_LLAMA, "llama-spm");
	test_lora_export_on(PARM_ARCH_PHI3, "phi-3");
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	if (!find_reference() || !fixtures_dir()) {
		skip_all(!fixtures_dir() ? "tokenizer fixtures not found" : NO_REF);
		return tap_done();
	}
	snprintf(tmp_dir, sizeof tmp_dir, "%s/parm-llamacpp.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmp_dir))
		parm_die("mkdtemp %s: %s", tmp_dir, strerror(errno));
	parm_set_threads(2);
	test_tokenizers();
	test_chat();
	test_our_files();
	test_rope_freqs();
	test_architectures();
	test_lora_export();
	test_their_files();
	remove_tmp_dir();
	return tap_done();
}
