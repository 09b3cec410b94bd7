/* test_generate - the pipe `parm-logits | parm-sample` against greedy
 * decoding in one process through the library, and its reproducibility
 * across batch sizes and seeds. */
#include <parm/model.h>
#include <parm/sample.h>
#include "tap.h"
#include <parm/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prompts[] = {
	"The quick brown fox", "Once upon a time", "How do I boil an egg?",
	"1 2 3 4", "Héllo wörld", "A", "The end of the story is",
	"Why is the sky blue?", "Tell me a joke", "x y z",
};
#define N_PROMPTS (int)(sizeof prompts / sizeof *prompts)
#define MAX_TOKENS 12

/* Greedy decoding of one prompt, one sequence at a time. */
static void greedy_one(const parm_model *m, const char *prompt, char *out, size_t cap)
{
	int V = m->cfg.n_vocab, ids[512], slot = 0;
	int n = parm_tokenize(m->tok, prompt, strlen(prompt), 1, ids, 512);
	float *logits = parm_xmalloc((size_t)V * sizeof *logits);
	parm_kv *kv = parm_kv_new(m, 1, m->cfg.n_ctx);
	int slots[512] = {0};
	size_t len = 0;
	parm_forward(m, kv, n, ids, slots, NULL, logits);
	for (int t = 0; t < MAX_TOKENS; t++) {
		int tok = parm_argmax(logits, NULL, V);
		if (tok == parm_tok_eos(m->tok))
			break;
		size_t pl;
		const char *piece = parm_tok_piece(m->tok, tok, &pl);
		if (len + pl < cap)
			memcpy(out + len, piece, pl), len += pl;
		if (t + 1 < MAX_TOKENS)
			parm_forward(m, kv, 1, &tok, &slot, NULL, logits);
	}
	out[len] = '\0';
	parm_kv_free(kv);
	free(logits);
}

/* Run a shell pipeline with the prompts on stdin; return its stdout. */
static char *run(const char *dir, const char *cmd)
{
	char path[512], line[2048];
	snprintf(path, sizeof path, "%s/prompts.txt", dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < N_PROMPTS; i++)
		fprintf(f, "%s\n", prompts[i]);
	fclose(f);
	snprintf(line, sizeof line, "cd %s && PATH=%s/tools:$PATH; { %s; } < prompts.txt",
		 dir, getenv("PWD"), cmd);
	FILE *p = popen(line, "r");
	char *out = parm_xcalloc(1, 1 << 20);
	size_t n = fread(out, 1, (1 << 20) - 1, p);
	out[n] = '\0';
	int rc = pclose(p);
	if (rc != 0) {
		printf("# '%s' exited %d\n", cmd, rc);
		free(out);
		return NULL;
	}
	return out;
}

static void compare_greedy(const parm_model *m, const char *dir)
{
	char expect[1 << 16] = "", one[4096];
	for (int i = 0; i < N_PROMPTS; i++) {
		greedy_one(m, prompts[i], one, sizeof one);
		strcat(expect, one);
		strcat(expect, "\n");
	}
	char cmd[256];
	for (int batch = 1; batch <= 8; batch += 7) {
		snprintf(cmd, sizeof cmd, "parm-logits -n %d --batch %d model.gguf | parm-sample --temp 0",
			 MAX_TOKENS, batch);
		char *got = run(dir, cmd);
		ok(got && !strcmp(got, expect), "greedy pipe, batch %d, equals greedy in one process", batch);
		if (got && strcmp(got, expect))
			printf("# expected:\n%s# got:\n%s", expect, got);
		free(got);
	}
}

static void compare_sampled(const char *dir)
{
	const char *cmd = "parm-logits -n 12 --batch %d model.gguf | parm-sample --temp 1.5 -k 0 --top-p 1 --min-p 0 --seed %d";
	char c1[256], c2[256], c3[256];
	snprintf(c1, sizeof c1, cmd, 8, 7);
	snprintf(c2, sizeof c2, cmd, 3, 7);
	snprintf(c3, sizeof c3, cmd, 8, 8);
	char *a = run(dir, c1), *b = run(dir, c2), *c = run(dir, c3);
	ok(a && b && !strcmp(a, b), "same seed gives the same sampled text (batch 8 and 3)");
	ok(a && c && strcmp(a, c) != 0, "another seed gives other text");
	free(a), free(b), free(c);
}

/* A qwen2 model of the Phi-3 vocabulary whose output bias puts token
 * 32007 (<|end|>, an end-of-turn token, not EOS) far ahead: the pipe ends
 * every reply at once, its text empty, stop "eos". */
static void test_end_of_turn(const char *fx, const char *dir)
{
	char vocab[4200], plain[600], biased[600];
	snprintf(vocab, sizeof vocab, "%s/ggml-vocab-phi-3.gguf", fx);
	snprintf(plain, sizeof plain, "%s/qwen2.gguf", dir);
	snprintf(biased, sizeof biased, "%s/eot.gguf", dir);
	parm_gguf *v = parm_gguf_open(vocab), *g = NULL;
	parm_config cfg = {.dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .ff = 64,
			   .n_ctx = 64, .arch = PARM_ARCH_QWEN2};
	int rc = v && parm_model_init(plain, v, &cfg, PARM_GGML_F32, 5) == 0 && (g = parm_gguf_open(plain)) ? 0 : -1;
	if (rc == 0) {
		parm_gguf_writer *w = parm_gguf_w_new();
		parm_gguf_w_copy_file(w, g, NULL, NULL);
		int64_t V = 32064;
		float *bias = parm_xcalloc(V, sizeof *bias);
		bias[32007] = 100;
		parm_gguf_w_tensor(w, "output.bias", PARM_GGML_F32, 1, &V, bias);
		rc = parm_gguf_w_save(w, biased);
		parm_gguf_w_free(w);
		free(bias);
	}
	parm_gguf_close(g);
	parm_gguf_close(v);
	char *out = rc ? NULL : run(dir, "parm-logits -n 5 eot.gguf | parm-sample --temp 0 --json");
	ok(out && strstr(out, "\"response\":\"\",\"tokens\":[32007],\"stop\":\"eos\"") &&
	   !strstr(out, "\"stop\":\"length\""),
	   "the reply ends at an end-of-turn token (<|end|>), not at --max-tokens: %.160s",
	   out ? out : parm_error());
	free(out);
}

int main(void)
{
	const char *fx = fixtures_dir();
	char dir[] = "/tmp/parm-gen.XXXXXX", vocab[4200], model[600];
	if (!fx) {
		skip("no tokenizer fixtures (make test-fixtures)", "generation pipe");
		return tap_done();
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(vocab, sizeof vocab, "%s/ggml-vocab-llama-spm.gguf", fx);
	snprintf(model, sizeof model, "%s/model.gguf", dir);
	parm_gguf *v = parm_gguf_open(vocab);
	parm_config cfg = {.dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
			   .ff = 160, .n_ctx = 128, .rms_eps = 1e-5f, .rope_theta = 10000};
	int rc = v ? parm_model_init(model, v, &cfg, PARM_GGML_F32, 42) : -1;
	ok(rc == 0, "make a model (%s)", rc ? parm_error() : "ok");
	parm_model *m = rc == 0 ? parm_model_load(model) : NULL;
	if (m) {
		parm_set_threads(1);
		compare_greedy(m, dir);
		compare_sampled(dir);
		test_end_of_turn(fx, dir);
		parm_model_free(m);
	}
	parm_gguf_close(v);
	char rm[600];
	snprintf(rm, sizeof rm, "rm -rf %s", dir);
	if (system(rm) != 0)
		return 1;
	return tap_done();
}
