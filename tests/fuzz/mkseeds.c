/* mkseeds.c - write the fuzz targets' seed corpora into DIR/TARGET/: small
 * files of every kind the tests make (GGUFs with every value and tensor
 * type, small vocabularies cut from the fixtures, an ARM for the harness's
 * backbone, checkpoints, streams, the fixtures' tokenizer test strings).
 * Hand-written seeds (JSONL, server replies) are in tests/fuzz/seeds/.
 * Usage: mkseeds DIR (run from the top of the checkout). */
#include "fuzz.h"
#include <parm/arm.h>
#include <parm/gguf.h>
#include <parm/stream.h>
#include <parm/trainer.h>
#include <parm/util.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *outdir;

static const char *seed_path(const char *target, const char *name)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/%s", outdir, target);
	mkdir(path, 0777);
	snprintf(path, sizeof path, "%s/%s/%s", outdir, target, name);
	return path;
}

static void write_seed(const char *target, const char *name, const void *p, size_t n)
{
	FILE *f = fopen(seed_path(target, name), "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f))
		parm_die("%s: %s", seed_path(target, name), strerror(errno));
}

/* ---- GGUF: every value type, arrays, every tensor type ---- */

static void gguf_sample(void)
{
	parm_gguf_writer *w = parm_gguf_w_new();
	uint8_t u8 = 250; int16_t i16 = -32000; int64_t i64 = -5000000000LL; double f64 = 2.5;
	int32_t ints[5] = { -1, 0, 1, 2, 3 };
	float floats[3] = { 0.5f, -1, 2 };
	const char *strs[3] = { "hello", "", "▁wörld" };
	parm_gguf_w_set_val(w, "v.u8", PARM_GGUF_U8, &u8);
	parm_gguf_w_set_val(w, "v.i16", PARM_GGUF_I16, &i16);
	parm_gguf_w_set_u32(w, "general.alignment", 32);
	parm_gguf_w_set_i32(w, "v.i32", -7);
	parm_gguf_w_set_f32(w, "v.f32", 0.25f);
	parm_gguf_w_set_bool(w, "v.bool", 1);
	parm_gguf_w_set_str(w, "v.str", "llama");
	parm_gguf_w_set_u64(w, "v.u64", 1ULL << 40);
	parm_gguf_w_set_val(w, "v.i64", PARM_GGUF_I64, &i64);
	parm_gguf_w_set_val(w, "v.f64", PARM_GGUF_F64, &f64);
	parm_gguf_w_set_arr(w, "a.i32", PARM_GGUF_I32, ints, 5);
	parm_gguf_w_set_arr(w, "a.f32", PARM_GGUF_F32, floats, 3);
	parm_gguf_w_set_arr_str(w, "a.str", strs, NULL, 3);
	static const enum parm_ggml_type types[] = { PARM_GGML_F32, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_Q8_0, PARM_GGML_Q4_0 };
	static const char *const names[] = { "f32", "f16", "bf16", "q8", "q4" };
	uint8_t data[2 * 34 * 2] = { 0 };
	for (int i = 0; i < 5; i++) {
		int64_t ne[2] = { types[i] == PARM_GGML_Q8_0 || types[i] == PARM_GGML_Q4_0 ? 32 : 4, 2 };
		parm_gguf_w_tensor(w, names[i], types[i], 2, ne, data);
	}
	if (parm_gguf_w_save(w, seed_path("gguf", "sample.gguf")) < 0)
		parm_die("%s", parm_error());
	parm_gguf_w_free(w);
}

/* ---- small vocabularies cut from the fixtures ---- */

static int in_vocab(const parm_gguf *g, const char *s, size_t len, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		const char *t;
		size_t tl;
		if (parm_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &t, &tl) == 0 && tl == len &&
		    !memcmp(t, s, len))
			return 1;
	}
	return 0;
}

/* The merges of g whose parts and result are all among the first n tokens. */
static void copy_merges(parm_gguf_writer *w, const parm_gguf *g, uint64_t n)
{
	enum parm_gguf_vtype et;
	uint64_t nm, kept = 0;
	if (parm_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm) < 0)
		return;
	const char **strs = parm_xcalloc(nm, sizeof *strs);
	for (uint64_t i = 0; i < nm && i < n; i++) {     /* merge i makes token 256 + i or so */
		const char *m, *sp;
		size_t ml;
		char joined[256];
		parm_gguf_arr_str(g, "tokenizer.ggml.merges", i, &m, &ml);
		if (!(sp = memchr(m, ' ', ml)) || ml >= sizeof joined)
			continue;
		size_t al = sp - m, bl = ml - al - 1;
		memcpy(joined, m, al);
		memcpy(joined + al, sp + 1, bl);
		if (in_vocab(g, m, al, n) && in_vocab(g, sp + 1, bl, n) && in_vocab(g, joined, al + bl, n))
			strs[kept++] = m;
	}
	parm_gguf_w_set_arr_str(w, "tokenizer.ggml.merges", strs, NULL, kept);
	free(strs);
}

/* A vocabulary of the fixture's first n tokens (and their merges). */
static void small_vocab(const char *fixture, uint64_t n, const char *target, const char *name)
{
	parm_gguf *g = fuzz_open_fixture(fixture);
	parm_gguf_writer *w = parm_gguf_w_new();
	const char *strs[4096];
	float scores[4096];
	int32_t types[4096];
	for (int i = 0; i < parm_gguf_n_kv(g); i++) {
		const char *key = parm_gguf_kv_key(g, i);
		if (!strncmp(key, "tokenizer.", 10) && strcmp(key, "tokenizer.ggml.tokens") &&
		    strcmp(key, "tokenizer.ggml.scores") && strcmp(key, "tokenizer.ggml.token_type") &&
		    strcmp(key, "tokenizer.ggml.merges") && !strstr(key, "_token_id"))
			parm_gguf_w_copy_kv(w, g, key);
	}
	for (uint64_t i = 0; i < n; i++) {
		double s = 0;
		int64_t ty = 1;
		parm_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &strs[i], NULL);
		parm_gguf_arr_float(g, "tokenizer.ggml.scores", i, &s);
		parm_gguf_arr_int(g, "tokenizer.ggml.token_type", i, &ty);
		scores[i] = (float)s, types[i] = (int32_t)ty;
	}
	parm_gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, n);
	parm_gguf_w_set_arr(w, "tokenizer.ggml.scores", PARM_GGUF_F32, scores, n);
	parm_gguf_w_set_arr(w, "tokenizer.ggml.token_type", PARM_GGUF_I32, types, n);
	parm_gguf_w_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
	parm_gguf_w_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
	copy_merges(w, g, n);
	if (parm_gguf_w_save(w, seed_path(target, name)) < 0)
		parm_die("%s", parm_error());
	parm_gguf_w_free(w);
	parm_gguf_close(g);
}

/* ---- tokenizer texts: the fixtures' test strings, one per seed ---- */

static void test_strings(const char *fixture, const char *target, int selectors)
{
	char path[4096], name[64];
	const char *vocab = fuzz_fixture(fixture);
	snprintf(path, sizeof path, "%s.inp", vocab ? vocab : "");
	FILE *f = vocab ? fopen(path, "rb") : NULL;
	if (!f)
		return;
	static char text[1 << 20];
	size_t n = fread(text + 1, 1, sizeof text - 2, f);
	fclose(f);
	text[n + 1] = 0;
	int k = 0;
	for (char *s = text + 1, *e; *s; s = e + 21, k++) {
		if (!(e = strstr(s, "\n__ggml_vocab_test__\n")))
			break;
		for (int sel = 0; sel < (selectors ? selectors : 1); sel++) {
			snprintf(name, sizeof name, "inp%03d-%d", k, sel);
			s[-1] = (char)sel;
			write_seed(target, name, selectors ? s - 1 : s, (size_t)(e - s) + !!selectors);
		}
	}
}

/* ---- ARM: adapters for the harness's backbone, without tokenizer keys ---- */

/* An ARM's keys and tensors but its backbone's tokenizer (the fuzzed ARM
 * reader's backbone is fixed). */
static int no_tokenizer(void *ctx, const char *name, int is_tensor)
{
	return is_tensor || strncmp(name, "tokenizer.", 10);
}

static void arm_seed(const char *backbone, int k, unsigned targets, const char *name)
{
	parm_arm_options o;
	char tmp[] = "/tmp/parm-fuzz-arm.XXXXXX";
	parm_arm_default_options(&o);
	o.k = k, o.r1 = 2, o.r2 = 2, o.targets = targets;
	parm_arm *a = parm_arm_new(backbone, &o);
	close(mkstemp(tmp));
	if (!a || (parm_arm_set_info(a, "steps", "10"), parm_arm_save(a, tmp, 0)) < 0)
		parm_die("%s", parm_error());
	parm_gguf *g = parm_gguf_open(tmp);
	parm_gguf_writer *w = parm_gguf_w_new();
	if (g)
		parm_gguf_w_copy_file(w, g, no_tokenizer, NULL);
	parm_gguf_w_set_bool(w, "parm.backbone.embedded", 1);
	if (!g || parm_gguf_w_save(w, seed_path("arm", name)) < 0)
		parm_die("%s", parm_error());
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	parm_arm_free(a);
	unlink(tmp);
}

static void arm_seeds(void)
{
	char backbone[] = "/tmp/parm-fuzz-bb.XXXXXX";
	close(mkstemp(backbone));
	if (fuzz_make_backbone(backbone) < 0)
		parm_die("%s", parm_error());
	arm_seed(backbone, 1, PARM_TARGETS_DEFAULT, "genarm.gguf");
	arm_seed(backbone, 2, (1u << PARM_N_TARGETS) - 1, "parm-all-targets.gguf");
	arm_seed(backbone, 3, 1u << PARM_T_FFN_DOWN, "parm-k3-down.gguf");
	unlink(backbone);
}

/* ---- checkpoints ---- */

static void ckpt_seed(size_t n, const char *fp, const char *name)
{
	float p[64] = { 1, 2, 3 }, m[64] = { 0.5f }, v[64] = { 0.25f };
	parm_ckpt c = { .fingerprint = (char *)fp, .step = 3, .epoch = 1, .pos = 7, .rng = 9,
			.n_params = n, .params = p, .m = m, .v = v, .adam_step = 3 };
	if (parm_ckpt_save(seed_path("checkpoint", name), &c) < 0)
		parm_die("%s", parm_error());
}

/* ---- streams ---- */

static void stream_seed(int n_vocab, int rounds, const char *name)
{
	int fd = open(seed_path("stream", name), O_WRONLY | O_CREAT | O_TRUNC, 0666);
	parm_writer *w = parm_writer_new(fd);
	parm_header h = { .version = PARM_STREAM_VERSION, .n_vocab = n_vocab, .fingerprint = 42,
			  .bos = 1, .eos = 2, .feedback = "/tmp/parm-fuzz/feedback", .n_chain = 1 };
	char *chain[1] = { "{\"stage\":\"parm-logits\",\"model\":\"m.gguf\"}" };
	h.chain = chain;
	h.pieces = parm_xcalloc(n_vocab, sizeof *h.pieces);
	h.piece_len = parm_xcalloc(n_vocab, sizeof *h.piece_len);
	for (int i = 0; i < n_vocab; i++) {
		char buf[16];
		h.piece_len[i] = (uint32_t)snprintf(buf, sizeof buf, "p%d", i);
		h.pieces[i] = parm_xstrdup(buf);
	}
	int toks[3] = { 1, 5, 6 };
	float *dense = parm_xcalloc(n_vocab, sizeof *dense), sparse[3] = { -0.5f, -1, -2 };
	int32_t ids[3] = { 3, 4, 5 };
	parm_write_header(w, &h);
	parm_write_start(w, 0, "Hello", toks, 3, "{\"source\":\"fuzz\"}");
	parm_write_start(w, 1, "", toks, 1, NULL);
	for (int r = 0; r < rounds; r++) {
		parm_step s[2] = { { .seq = 0, .tok = r ? 7 : -1, .logits = dense },
				   { .seq = 1, .tok = -1, .sparse = 1, .k = 3, .logits = sparse, .ids = ids } };
		parm_write_round(w, 2, s, n_vocab);
	}
	parm_write_end(w, 0, 7, rounds, "length");
	parm_write_end(w, 1, 2, rounds, "eos");
	parm_write_fin(w);
	if (parm_flush(w) < 0)
		parm_die("%s", parm_error());
	parm_writer_free(w);
	close(fd);
	for (int i = 0; i < n_vocab; i++)
		free(h.pieces[i]);
	free(h.pieces);
	free(h.piece_len);
	free(dense);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		parm_die("usage: mkseeds DIR");
	outdir = argv[1];
	mkdir(outdir, 0777);
	gguf_sample();
	ckpt_seed(0, "", "empty.ckpt");
	ckpt_seed(5, "lr=0.1\nseed=3\n", "five.ckpt");
	ckpt_seed(64, "x=1\n", "sixtyfour.ckpt");
	stream_seed(8, 2, "small.stream");
	stream_seed(300, 1, "vocab300.stream");
	if (!fuzz_fixture("ggml-vocab-llama-spm.gguf") || !fuzz_fixture("ggml-vocab-gpt-2.gguf") ||
	    !fuzz_fixture("ggml-vocab-llama-bpe.gguf")) {
		fprintf(stderr, "mkseeds: no vocabulary fixtures: no tokenizer, vocabulary or ARM seeds\n");
		return 0;
	}
	small_vocab("ggml-vocab-llama-spm.gguf", 400, "gguf", "spm-400.gguf");
	small_vocab("ggml-vocab-gpt-2.gguf", 600, "gguf", "gpt2-600.gguf");
	small_vocab("ggml-vocab-llama-bpe.gguf", 600, "gguf", "llama-bpe-600.gguf");
	test_strings("ggml-vocab-llama-spm.gguf", "tok_spm", 0);
	test_strings("ggml-vocab-gpt-2.gguf", "tok_bpe", 3);
	arm_seeds();
	return 0;
}
